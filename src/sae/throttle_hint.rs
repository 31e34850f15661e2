//! Reading a throttling answer's "retry after" hint: `x-acs-retry-after`, else the older
//! `x-ratelimit-user(-api)` headers' `TimeLeft`, both in milliseconds, capped at two minutes.
//!
//! Pure: headers in, a duration out. It may depend on `reqwest`'s header types, nothing else of
//! the client.

use std::time::Duration;

use reqwest::header::HeaderMap;

/// SAE's throttling hint, in milliseconds (as the official SDKs read it).
pub(super) const RETRY_AFTER_HEADER: &str = "x-acs-retry-after";
/// Older gateways' throttling hints: `Limit:..,Remain:..,TimeLeft:<ms>,Reset:..`.
const RATE_LIMIT_HEADERS: [&str; 2] = ["x-ratelimit-user-api", "x-ratelimit-user"];
/// The longest pause an answer can ask for: the official SDKs never wait longer than two minutes
/// before retrying a throttled call, whatever the header says.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(120);

/// The pause a throttling answer asks for, as the official SDKs read it: `x-acs-retry-after` in
/// milliseconds, else the larger `TimeLeft` (also milliseconds) of the older `x-ratelimit-user-api`
/// and `x-ratelimit-user` headers. Only positive integers count; anything else (absent, empty,
/// `0`, negative, fractional, text) is no hint at all. The result is cut to `cap` (itself at most
/// [`MAX_RETRY_AFTER`]), so no header can stop a key for longer than two minutes.
pub(super) fn retry_after(headers: &HeaderMap, cap: Duration) -> Option<Duration> {
    let text = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let millis = text(RETRY_AFTER_HEADER)
        .and_then(positive_millis)
        .or_else(|| {
            RATE_LIMIT_HEADERS
                .iter()
                .filter_map(|name| text(name).and_then(time_left))
                .max()
        })?;
    Some(Duration::from_millis(millis).min(cap.min(MAX_RETRY_AFTER)))
}

/// A positive integer count of milliseconds. Digits beyond `u64` saturate (they can only mean
/// "long", and the cap applies anyway).
pub(super) fn positive_millis(value: &str) -> Option<u64> {
    let digits = value.trim();
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let millis = digits.parse::<u64>().unwrap_or(u64::MAX);
    (millis > 0).then_some(millis)
}

/// `TimeLeft` of a `Key:Value,Key:Value` rate-limit header.
pub(super) fn time_left(value: &str) -> Option<u64> {
    value.split(',').find_map(|pair| {
        let (key, value) = pair.split_once(':')?;
        (key.trim() == "TimeLeft")
            .then(|| positive_millis(value))
            .flatten()
    })
}

#[cfg(test)]
mod tests;
