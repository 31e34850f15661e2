//! The simulator's error answers ([`ApiError`]): a code, a message and an HTTP status, shaped as
//! the POP gateway or SAE itself would answer, and the default status for each code.
//!
//! A leaf: it depends on no other simulator module, so `auth` and `state` can both use it.

/// An error answer. `gateway` errors (authentication, quota, routing) have the POP gateway's body
/// shape (`RequestId, HostId, Code, Message`); the others SAE's (`Code, ErrorCode, Success:false`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApiError {
    pub http_status: u16,
    pub code: String,
    pub message: String,
    pub gateway: bool,
    /// Milliseconds, sent as `x-acs-retry-after`.
    pub retry_after_millis: Option<u64>,
}

impl ApiError {
    pub fn sae(code: &str, message: impl Into<String>) -> Self {
        Self {
            http_status: default_http_status(code),
            code: code.to_string(),
            message: message.into(),
            gateway: false,
            retry_after_millis: None,
        }
    }

    pub fn gateway(code: &str, message: impl Into<String>) -> Self {
        Self {
            gateway: true,
            ..Self::sae(code, message)
        }
    }

    pub(super) fn with_status(mut self, status: u16) -> Self {
        self.http_status = status;
        self
    }
}

/// The HTTP status SAE uses for a code: 400 unless the code documents otherwise.
pub fn default_http_status(code: &str) -> u16 {
    match code {
        "InvalidAppId.NotFound" | "InvalidApi.NotFound" | "InvalidAction.NotFound" => 404,
        "InternalError" => 500,
        "ServiceUnavailable" => 503,
        _ => 400,
    }
}

/// The gateway's answer to a call over the account's quota.
pub(super) fn throttling_user() -> ApiError {
    ApiError::gateway(
        "Throttling.User",
        "Request was denied due to user flow control.",
    )
}

pub(super) fn not_empty(name: &str) -> ApiError {
    ApiError::sae(
        "InvalidParameter.NotEmpty",
        format!("The parameter {name} is required."),
    )
}

pub(super) fn with_message(message: impl Into<String>) -> ApiError {
    ApiError::sae("InvalidParameter.WithMessage", message)
}
