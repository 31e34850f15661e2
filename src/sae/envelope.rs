//! Reading SAE's answer envelope: which HTTP status and body is a success, an SAE error (with its
//! code, message, RequestId and retry hint) or no usable answer at all; the typed field readers
//! the operations use on `Data`; and the redaction that keeps credentials out of every message.
//!
//! Pure (bytes in, `Envelope` or `SaeError` out); no HTTP client, no operation-specific fields.

use std::time::Duration;

use serde_json::{Map, Value};

use super::error::request_suffix;
use super::{Credentials, SaeError};

/// How much of an unexpected body goes into an error message.
pub(super) const EXCERPT_CHARS: usize = 200;
/// Longest SAE `Message` kept in an error; status messages should stay readable.
const MESSAGE_CHARS: usize = 500;

/// A successful SAE envelope, kept whole so each operation picks its own `Data` fields.
#[derive(Debug)]
pub(super) struct Envelope {
    pub(super) body: Map<String, Value>,
    pub(super) http_status: u16,
    pub(super) request_id: Option<String>,
    pub(super) trace_id: Option<String>,
    /// Start of the body, cleaned, for the error if `Data` turns out unusable.
    pub(super) excerpt: String,
}

/// What must never reach an error message, in case a server echoes it back.
pub(super) struct Secrets<'a> {
    pub(super) values: Vec<&'a str>,
}

impl<'a> Secrets<'a> {
    pub(super) fn of(creds: &'a Credentials) -> Self {
        let values = [Some(creds.access_key_secret()), creds.security_token()]
            .into_iter()
            .flatten()
            .filter(|s| !s.is_empty())
            .collect();
        Self { values }
    }

    /// Server-provided text made safe for an error: secrets redacted (before cutting, so no
    /// prefix of one survives), one line, at most `max_chars` characters.
    pub(super) fn clean(&self, text: &str, max_chars: usize) -> String {
        let mut text = text.to_string();
        for secret in &self.values {
            if text.contains(secret) {
                text = text.replace(secret, "<redacted>");
            }
        }
        let one_line: String = text
            .chars()
            .map(|c| if c.is_control() { ' ' } else { c })
            .collect::<String>()
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ");
        let mut chars = one_line.chars();
        let mut out: String = chars.by_ref().take(max_chars).collect();
        if chars.next().is_some() {
            out.push('…');
        }
        out
    }

    pub(super) fn excerpt(&self, body: &[u8]) -> String {
        if body.is_empty() {
            return "empty body".to_string();
        }
        // Enough bytes for the excerpt and any secret that straddles its end.
        let head = &body[..body.len().min(4096)];
        format!(
            "body: {}",
            self.clean(&String::from_utf8_lossy(head), EXCERPT_CHARS)
        )
    }
}

/// Sorts an HTTP answer into a usable envelope or an error. Pure, so every branch is testable.
pub(super) fn interpret(
    operation: &'static str,
    http_status: u16,
    retry_after: Option<Duration>,
    header_request_id: Option<String>,
    body: &[u8],
    secrets: &Secrets<'_>,
) -> Result<Envelope, SaeError> {
    let excerpt = secrets.excerpt(body);
    let is_success = (200..300).contains(&http_status);
    let Some(Value::Object(object)) = serde_json::from_slice::<Value>(body).ok() else {
        return Err(if (400..500).contains(&http_status) {
            // A 4xx refused the call before SAE ran it, even when a proxy wrote the body.
            SaeError::Api {
                operation,
                http_status,
                code: format!("HTTP{http_status}"),
                message: format!("answer is not an SAE JSON object; {excerpt}"),
                request_id: header_request_id.map(|id| secrets.clean(&id, EXCERPT_CHARS)),
                retry_after,
            }
        } else {
            SaeError::NoAnswer {
                operation,
                detail: format!("HTTP {http_status} answer is not an SAE JSON object; {excerpt}"),
            }
        });
    };

    let request_id = text_field(&object, "RequestId")
        .or(header_request_id)
        .map(|id| secrets.clean(&id, EXCERPT_CHARS));
    let code = error_code(&object);
    let success_flag = bool_field(&object, "Success");
    let message = || {
        text_field(&object, "Message")
            .or_else(|| text_field(&object, "ErrorMessage"))
            .map(|m| secrets.clean(&m, MESSAGE_CHARS))
            .unwrap_or_else(|| excerpt.clone())
    };
    let api_error = |code: String| SaeError::Api {
        operation,
        http_status,
        code: secrets.clean(&code, EXCERPT_CHARS),
        message: message(),
        request_id: request_id.clone(),
        retry_after,
    };

    if is_success {
        if success_flag == Some(false) {
            // Without a code we cannot tell a refusal from anything else.
            return Err(match code {
                Some(code) => api_error(code),
                None => SaeError::NoAnswer {
                    operation,
                    detail: format!(
                        "HTTP {http_status} answer says Success false but gives no error code; {excerpt}"
                    ),
                },
            });
        }
        let trace_id = text_field(&object, "TraceId").map(|id| secrets.clean(&id, EXCERPT_CHARS));
        return Ok(Envelope {
            body: object,
            http_status,
            request_id,
            trace_id,
            excerpt,
        });
    }
    match code {
        Some(code) => Err(api_error(code)),
        None if (400..500).contains(&http_status) => Err(api_error(format!("HTTP{http_status}"))),
        // 5xx and 3xx without SAE's word on it: the call may have run.
        None => Err(SaeError::NoAnswer {
            operation,
            detail: format!("HTTP {http_status} answer carries no SAE error code; {excerpt}"),
        }),
    }
}

/// SAE's error code: `Code` unless it is only an HTTP-like number, then `ErrorCode`.
pub(super) fn error_code(object: &Map<String, Value>) -> Option<String> {
    let meaningful = |s: String| {
        let s = s.trim().to_string();
        (!s.is_empty() && !s.bytes().all(|b| b.is_ascii_digit())).then_some(s)
    };
    text_field(object, "Code")
        .and_then(meaningful)
        .or_else(|| text_field(object, "ErrorCode").and_then(meaningful))
}

pub(super) fn data_object<'a>(
    operation: &'static str,
    envelope: &'a Envelope,
) -> Result<&'a Map<String, Value>, SaeError> {
    envelope
        .body
        .get("Data")
        .and_then(Value::as_object)
        .ok_or_else(|| unusable(operation, envelope, "Data is missing or not an object"))
}

/// The rows of a paged answer. A missing or null list is an empty page only when SAE's total agrees.
pub(super) fn page_rows<'a>(
    operation: &'static str,
    envelope: &Envelope,
    data: &'a Map<String, Value>,
    list_name: &str,
) -> Result<&'a [Value], SaeError> {
    match data.get(list_name) {
        Some(Value::Array(rows)) => Ok(rows),
        None | Some(Value::Null) if uint_field(data, "TotalSize").unwrap_or(0) == 0 => Ok(&[]),
        _ => Err(unusable(
            operation,
            envelope,
            &format!("Data.{list_name} is missing or not a list"),
        )),
    }
}

pub(super) fn unusable(operation: &'static str, envelope: &Envelope, what: &str) -> SaeError {
    SaeError::NoAnswer {
        operation,
        detail: format!(
            "HTTP {} answer is not usable: {what}; {}{}",
            envelope.http_status,
            envelope.excerpt,
            request_suffix(envelope.request_id.as_deref())
        ),
    }
}

/// A string or number field as text; SAE is inconsistent about which it sends.
pub(super) fn text_field(object: &Map<String, Value>, name: &str) -> Option<String> {
    match object.get(name)? {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// A text field that must carry something to count as present.
pub(super) fn id_field(object: &Map<String, Value>, name: &str) -> Option<String> {
    text_field(object, name).filter(|s| !s.trim().is_empty())
}

pub(super) fn int_field(object: &Map<String, Value>, name: &str) -> Option<i64> {
    match object.get(name)? {
        Value::Number(n) => n.as_i64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

pub(super) fn uint_field(object: &Map<String, Value>, name: &str) -> Option<u64> {
    int_field(object, name).and_then(|n| u64::try_from(n).ok())
}

pub(super) fn u32_field(object: &Map<String, Value>, name: &str) -> Option<u32> {
    int_field(object, name).and_then(|n| u32::try_from(n).ok())
}

pub(super) fn bool_field(object: &Map<String, Value>, name: &str) -> Option<bool> {
    match object.get(name)? {
        Value::Bool(b) => Some(*b),
        Value::String(s) if s.eq_ignore_ascii_case("true") => Some(true),
        Value::String(s) if s.eq_ignore_ascii_case("false") => Some(false),
        _ => None,
    }
}

#[cfg(test)]
mod tests;
