//! What can go wrong when calling SAE, sorted by the one question that matters for a
//! non-idempotent call: could SAE have executed it?

use std::time::Duration;

use super::codes;

/// The three classes every failure falls into.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ErrorClass {
    /// SAE surely did not execute the call; sending it again later is safe.
    Retryable,
    /// SAE did not execute the call and never will for this input; do not send it again.
    Terminal,
    /// SAE may or may not have executed the call; only looking at SAE's state can tell.
    Ambiguous,
}

/// The class of an SAE error answer, from its code ([`super::codes`]) and HTTP status. 5xx is
/// Ambiguous whatever the code says, because the gateway may have forwarded the call before
/// failing; 429 comes from a proxy in front of SAE when it has no SAE code: refused, not executed.
pub fn classify(code: &str, http_status: u16) -> ErrorClass {
    if http_status >= 500 {
        ErrorClass::Ambiguous
    } else if http_status == 429 || codes::lookup(code).class == ErrorClass::Retryable {
        ErrorClass::Retryable
    } else {
        ErrorClass::Terminal
    }
}

/// Whether the code says SAE's quota was exceeded (the caller should slow down, not just retry).
pub fn is_throttling(code: &str) -> bool {
    codes::lookup(code).throttling
}

/// A failed SAE call. Messages say what was seen, never a credential.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SaeError {
    /// SAE answered with an error code.
    #[error("SAE {operation} failed with {code} (HTTP {http_status}): {message}{}", request_suffix(request_id.as_deref()))]
    Api {
        operation: &'static str,
        http_status: u16,
        code: String,
        message: String,
        request_id: Option<String>,
        /// The pause the answer asked for: `x-acs-retry-after` (milliseconds), else the older
        /// `x-ratelimit-user(-api)` headers' `TimeLeft` (milliseconds); at most two minutes
        /// (see `SaeClientConfig::max_retry_after`).
        retry_after: Option<Duration>,
    },
    /// The request never left this process or was refused before the connection was made
    /// (DNS, TCP connect, TLS handshake): SAE cannot have seen it.
    #[error("SAE {operation} not sent: cannot connect to {endpoint}: {detail}")]
    NotSent {
        operation: &'static str,
        endpoint: String,
        detail: String,
    },
    /// The request was (or may have been) sent but no usable answer came back: timeout,
    /// connection lost, a 5xx without an SAE error, a body that does not parse.
    #[error("SAE {operation} outcome unknown: {detail}")]
    NoAnswer {
        operation: &'static str,
        detail: String,
    },
    /// The request could not be built (for example a malformed endpoint); nothing was sent.
    #[error("SAE {operation} not sent: {detail}")]
    InvalidRequest {
        operation: &'static str,
        detail: String,
    },
}

/// " (RequestId …)" when there is one, for the end of a message.
pub(crate) fn request_suffix(request_id: Option<&str>) -> String {
    request_id
        .map(|id| format!(" (RequestId {id})"))
        .unwrap_or_default()
}

impl SaeError {
    pub fn class(&self) -> ErrorClass {
        match self {
            SaeError::Api {
                code, http_status, ..
            } => classify(code, *http_status),
            SaeError::NotSent { .. } => ErrorClass::Retryable,
            SaeError::NoAnswer { .. } => ErrorClass::Ambiguous,
            SaeError::InvalidRequest { .. } => ErrorClass::Terminal,
        }
    }

    /// SAE's error code, when SAE answered with one.
    pub fn code(&self) -> Option<&str> {
        match self {
            SaeError::Api { code, .. } => Some(code),
            _ => None,
        }
    }

    pub fn request_id(&self) -> Option<&str> {
        match self {
            SaeError::Api { request_id, .. } => request_id.as_deref(),
            _ => None,
        }
    }

    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            SaeError::Api { retry_after, .. } => *retry_after,
            _ => None,
        }
    }

    pub fn is_throttling(&self) -> bool {
        self.code().is_some_and(is_throttling)
    }
}

/// A request refused before sending (its input or endpoint is unusable).
pub(super) fn invalid(operation: &'static str, detail: &str) -> SaeError {
    SaeError::InvalidRequest {
        operation,
        detail: detail.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every code in the SAE reference, with the HTTP status SAE documents for it.
    #[test]
    fn every_documented_code_has_its_class() {
        use ErrorClass::*;
        let table: &[(&str, u16, ErrorClass)] = &[
            ("Application.ChangerOrderRunning", 400, Retryable),
            ("System.Upgrading", 400, Retryable),
            ("Application.InvalidStatus", 400, Retryable),
            ("Throttling", 400, Retryable),
            ("Throttling.User", 400, Retryable),
            ("Throttling.Api", 400, Retryable),
            ("InvalidApplication.NotFound", 400, Terminal),
            ("InvalidAppId.NotFound", 404, Terminal),
            ("InvalidParameter.NotEmpty", 400, Terminal),
            ("InvalidParameter.Obviously", 400, Terminal),
            ("InvalidParameter.WithMessage", 400, Terminal),
            ("NoComputeResourceQuota.Exceed", 400, Terminal),
            ("NoComputeResourceQuota.App.Exceed", 400, Terminal),
            ("NoComputeResourceQuota.User.Exceed", 400, Terminal),
            ("Application.NotDeployYet", 400, Terminal),
            ("user.indebt", 400, Terminal),
            ("SignatureDoesNotMatch", 400, Terminal),
            ("SignatureDoesNotMatch", 403, Terminal),
            ("InvalidAccessKeyId.NotFound", 400, Terminal),
            ("InvalidAccessKeyId.Inactive", 400, Terminal),
            ("InvalidTimeStamp.Expired", 400, Terminal),
            ("SignatureNonceUsed", 400, Terminal),
            ("SomethingNew.Undocumented", 409, Terminal),
            ("HTTP429", 429, Retryable),
            ("InvalidSecurityToken.Expired", 400, Retryable),
            ("InternalError", 500, Ambiguous),
            ("ServiceUnavailable", 503, Ambiguous),
            ("Application.ChangerOrderRunning", 502, Ambiguous),
        ];
        for (code, status, want) in table {
            assert_eq!(classify(code, *status), *want, "{code} HTTP {status}");
            let err = SaeError::Api {
                operation: "DeleteInstances",
                http_status: *status,
                code: code.to_string(),
                message: "m".into(),
                request_id: None,
                retry_after: None,
            };
            assert_eq!(err.class(), *want, "{code}");
        }
    }

    #[test]
    fn transport_failures_have_their_class() {
        let not_sent = SaeError::NotSent {
            operation: "DeleteInstances",
            endpoint: "x".into(),
            detail: "refused".into(),
        };
        assert_eq!(not_sent.class(), ErrorClass::Retryable);
        let lost = SaeError::NoAnswer {
            operation: "DeleteInstances",
            detail: "timed out".into(),
        };
        assert_eq!(lost.class(), ErrorClass::Ambiguous);
        assert!(lost.to_string().contains("timed out"));
        let bad = SaeError::InvalidRequest {
            operation: "DeleteInstances",
            detail: "bad url".into(),
        };
        assert_eq!(bad.class(), ErrorClass::Terminal);
    }
}
