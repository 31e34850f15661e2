//! The bytes of a request: percent-decoding of query strings and form bodies (strict about
//! escapes and UTF-8) and reading a body within a size limit, with the limits SAE's requests keep.
//!
//! A leaf of `http`: it depends only on `api_error` and knows nothing of the model or of routes.

use axum::body::Body;
use axum::http::{self, header::CONTENT_LENGTH};
use hyper::body::Incoming;

use crate::simulator::api_error::ApiError;

/// Longest query string accepted; SAE's are a few hundred bytes.
pub const MAX_QUERY_BYTES: usize = 16 * 1024;
/// Largest SAE request body accepted (SAE's ROA calls have none).
pub const MAX_BODY_BYTES: usize = 64 * 1024;

pub(super) fn malformed(message: impl Into<String>) -> ApiError {
    ApiError::gateway("InvalidParameter", message)
}

/// Percent-decodes one query component; `+` is a space as in HTML forms. Refuses a `%` not followed
/// by two hex digits and bytes that are not UTF-8.
fn decode_component(raw: &str) -> Result<String, ApiError> {
    let bytes = raw.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = bytes
                    .get(i + 1..i + 3)
                    .and_then(|h| std::str::from_utf8(h).ok());
                let byte = hex
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
                    .ok_or_else(|| {
                        malformed("The request contains a malformed percent-encoding.")
                    })?;
                out.push(byte);
                i += 2;
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8(out)
        .map_err(|_| malformed("The request contains percent-encoded bytes that are not UTF-8."))
}

pub(super) fn decode_query(raw: &str) -> Result<Vec<(String, String)>, ApiError> {
    if raw.len() > MAX_QUERY_BYTES {
        return Err(malformed(format!(
            "The query string is longer than {MAX_QUERY_BYTES} bytes."
        )));
    }
    decode_pairs(raw)
}

/// `k=v&k2=v2`, as in a query string or an `application/x-www-form-urlencoded` body.
pub(super) fn decode_pairs(raw: &str) -> Result<Vec<(String, String)>, ApiError> {
    raw.split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            Ok((decode_component(k)?, decode_component(v)?))
        })
        .collect()
}

pub(super) async fn read_body(
    body: Incoming,
    headers: &http::HeaderMap,
    limit: usize,
) -> Result<axum::body::Bytes, String> {
    let declared = headers
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|len| len > limit as u64) {
        return Err(format!("The request body is larger than {limit} bytes."));
    }
    axum::body::to_bytes(Body::new(body), limit)
        .await
        .map_err(|_| format!("The request body could not be read or is larger than {limit} bytes."))
}
