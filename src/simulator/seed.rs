//! What the simulator is given: access keys, OIDC tokens for STS, apps and groups, scripted
//! faults, and the seed file that bundles them; with their validation.
//!
//! Specs only: no model state, no clock, no I/O. Depends on `change_order` (console change order
//! specs) and `routing` (operation names) only.

use std::fmt;

use jiff::{SignedDuration, Timestamp};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::change_order::{self, ConsoleChangeOrderSpec};
use super::routing::Operation;

/// An access key the simulator accepts. Debug never shows the secret or the token.
#[derive(Clone, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AccessKeySpec {
    pub access_key_id: String,
    pub access_key_secret: String,
    #[serde(default)]
    pub security_token: Option<String>,
}

impl fmt::Debug for AccessKeySpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        crate::sae::credentials::debug_access_key(
            f,
            "AccessKeySpec",
            &self.access_key_id,
            self.security_token.is_some(),
        )
    }
}

impl AccessKeySpec {
    /// Parses `ID:SECRET` (the secret may itself contain `:`).
    pub fn parse_pair(pair: &str) -> Result<Self, String> {
        match pair.trim().split_once(':') {
            Some((id, secret)) if !id.is_empty() && !secret.is_empty() => Ok(Self {
                access_key_id: id.to_string(),
                access_key_secret: secret.to_string(),
                security_token: None,
            }),
            _ => Err("an access key must be given as ID:SECRET".to_string()),
        }
    }
}

/// An OIDC token the simulated STS accepts, standing in for the token ACK projects into a pod.
/// With `role_arn` the token may assume only that role. Debug never shows the token.
#[derive(Clone, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct OidcTokenSpec {
    pub token: String,
    #[serde(default)]
    pub role_arn: Option<String>,
}

impl fmt::Debug for OidcTokenSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OidcTokenSpec")
            .field("token", &"<redacted>")
            .field("role_arn", &self.role_arn)
            .finish()
    }
}

/// STS credentials issued by [`Model::assume_role_with_oidc`]: the answer's body and the new key id.
#[derive(Clone, Debug, PartialEq)]
pub struct StsIssued {
    pub access_key_id: String,
    pub body: Value,
}

/// STS's session limits for `AssumeRoleWithOIDC`, in seconds.
pub const STS_MIN_DURATION_SECONDS: u32 = 900;
pub const STS_MAX_DURATION_SECONDS: u32 = 43_200;
pub(super) const STS_DEFAULT_DURATION_SECONDS: u32 = 3600;
/// Issued STS keys are forgotten this long after they expire (until then they answer
/// `InvalidSecurityToken.Expired`, after that `InvalidAccessKeyId.NotFound`).
pub(super) const STS_KEY_RETENTION: SignedDuration = SignedDuration::from_hours(1);

#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct GroupSpec {
    pub group_id: String,
    #[serde(default)]
    pub group_name: Option<String>,
    #[serde(default)]
    pub instance_ids: Vec<String>,
}

#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AppSpec {
    pub app_id: String,
    #[serde(default)]
    pub groups: Vec<GroupSpec>,
}

pub(super) fn one() -> u32 {
    1
}

pub(super) fn is_zero(n: &u32) -> bool {
    *n == 0
}

/// A scripted misbehaviour for one app. `operation` defaults to `DeleteInstances`; `"*"` means any.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(tag = "kind", rename_all = "camelCase", deny_unknown_fields)]
pub enum FaultSpec {
    /// The next `times` matching calls answer `code` (HTTP status by the code's convention).
    #[serde(rename_all = "camelCase")]
    Error {
        code: String,
        #[serde(default = "one")]
        times: u32,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        operation: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        http_status: Option<u16>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        message: Option<String>,
        /// Sent as `x-acs-retry-after` (milliseconds) with the error.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        retry_after_millis: Option<u64>,
    },
    /// `System.Upgrading` for matching calls during `seconds` from when the fault is added.
    #[serde(rename_all = "camelCase")]
    Upgrading {
        seconds: f64,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        operation: Option<String>,
    },
    /// HTTP 500 `InternalError`, after executing the call if `commit`.
    #[serde(rename = "http500", rename_all = "camelCase")]
    Http500 {
        #[serde(default = "one")]
        times: u32,
        #[serde(default)]
        commit: bool,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        operation: Option<String>,
    },
    /// Execute the call, then close the connection without answering.
    #[serde(rename_all = "camelCase")]
    Ambiguous {
        #[serde(default = "one")]
        times: u32,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        operation: Option<String>,
    },
    /// Answer after `millis`. With `commit` the call executes at once and the answer waits; without,
    /// the call executes only when the delay is over (whether or not the client still listens).
    #[serde(rename_all = "camelCase")]
    Slow {
        millis: u64,
        #[serde(default = "one")]
        times: u32,
        #[serde(default)]
        commit: bool,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        operation: Option<String>,
    },
    /// The next `times` change orders made through the API end with `status` (3, 6 or 10). Their
    /// instances come back, except the first `removedInstances` of them, which are gone anyway.
    #[serde(rename_all = "camelCase")]
    ChangeOrderResult {
        status: i64,
        #[serde(default = "one")]
        times: u32,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        error_message: Option<String>,
        #[serde(default, skip_serializing_if = "is_zero")]
        removed_instances: u32,
    },
    /// The next `times` change orders made through the API wait before they execute: status 11
    /// (pending approval) for `approvalSeconds`, then status 0 (preparing) for `preparingSeconds`.
    #[serde(rename_all = "camelCase")]
    SlowStart {
        #[serde(default = "one")]
        times: u32,
        #[serde(default)]
        preparing_seconds: f64,
        #[serde(default)]
        approval_seconds: f64,
    },
    /// Someone makes a change order in SAE's console (see [`ConsoleChangeOrderSpec`]); it is
    /// scheduled when the fault is added and is never a pending fault.
    ConsoleChangeOrder(ConsoleChangeOrderSpec),
    /// HTTP 200 with a body that is not JSON, after executing the call if `commit`.
    #[serde(rename_all = "camelCase")]
    Garbage {
        #[serde(default = "one")]
        times: u32,
        #[serde(default)]
        commit: bool,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        operation: Option<String>,
    },
}

impl FaultSpec {
    pub fn kind(&self) -> &'static str {
        match self {
            FaultSpec::Error { .. } => "error",
            FaultSpec::Upgrading { .. } => "upgrading",
            FaultSpec::Http500 { .. } => "http500",
            FaultSpec::Ambiguous { .. } => "ambiguous",
            FaultSpec::Slow { .. } => "slow",
            FaultSpec::ChangeOrderResult { .. } => "changeOrderResult",
            FaultSpec::Garbage { .. } => "garbage",
            FaultSpec::SlowStart { .. } => "slowStart",
            FaultSpec::ConsoleChangeOrder(_) => "consoleChangeOrder",
        }
    }

    pub(super) fn operation(&self) -> Option<&str> {
        match self {
            FaultSpec::Error { operation, .. }
            | FaultSpec::Upgrading { operation, .. }
            | FaultSpec::Http500 { operation, .. }
            | FaultSpec::Ambiguous { operation, .. }
            | FaultSpec::Slow { operation, .. }
            | FaultSpec::Garbage { operation, .. } => operation.as_deref(),
            FaultSpec::ChangeOrderResult { .. }
            | FaultSpec::SlowStart { .. }
            | FaultSpec::ConsoleChangeOrder(_) => None,
        }
    }

    pub(super) fn times(&self) -> u32 {
        match self {
            FaultSpec::Error { times, .. }
            | FaultSpec::Http500 { times, .. }
            | FaultSpec::Ambiguous { times, .. }
            | FaultSpec::Slow { times, .. }
            | FaultSpec::ChangeOrderResult { times, .. }
            | FaultSpec::SlowStart { times, .. }
            | FaultSpec::Garbage { times, .. } => *times,
            FaultSpec::Upgrading { .. } | FaultSpec::ConsoleChangeOrder(_) => 1,
        }
    }

    /// Faults that shape change orders, not calls.
    pub(super) fn shapes_change_orders(&self) -> bool {
        matches!(
            self,
            FaultSpec::ChangeOrderResult { .. }
                | FaultSpec::SlowStart { .. }
                | FaultSpec::ConsoleChangeOrder(_)
        )
    }

    pub(super) fn matches(&self, op: Operation) -> bool {
        match self.operation() {
            _ if self.shapes_change_orders() => false,
            None => op == Operation::DeleteInstances,
            Some("*") => true,
            Some(name) => name == op.name(),
        }
    }

    pub(super) fn validate(&self) -> Result<(), String> {
        if let Some(name) = self.operation()
            && name != "*"
            && Operation::from_name(name).is_none()
        {
            return Err(format!(
                "unknown operation {name:?} in a {} fault",
                self.kind()
            ));
        }
        if self.times() == 0 {
            return Err(format!("a {} fault needs times >= 1", self.kind()));
        }
        match self {
            FaultSpec::Error {
                code, http_status, ..
            } => {
                if code.trim().is_empty() {
                    return Err("an error fault needs a code".into());
                }
                if http_status.is_some_and(|s| !(100..=599).contains(&s)) {
                    return Err("httpStatus must be between 100 and 599".into());
                }
            }
            FaultSpec::Upgrading { seconds, .. } if !(seconds.is_finite() && *seconds > 0.0) => {
                return Err("an upgrading fault needs seconds > 0".into());
            }
            FaultSpec::ChangeOrderResult { status, .. } if ![3, 6, 10].contains(status) => {
                return Err(format!(
                    "a changeOrderResult fault ends with status 3, 6 or 10, not {status}"
                ));
            }
            FaultSpec::SlowStart {
                preparing_seconds,
                approval_seconds,
                ..
            } => {
                change_order::seconds(Some(*preparing_seconds), "preparingSeconds")?;
                change_order::seconds(Some(*approval_seconds), "approvalSeconds")?;
                if *preparing_seconds == 0.0 && *approval_seconds == 0.0 {
                    return Err(
                        "a slowStart fault needs preparingSeconds or approvalSeconds > 0".into(),
                    );
                }
            }
            _ => {}
        }
        Ok(())
    }
}

/// `{"appId", "faults": [..]}`: the body of `POST /_sim/faults` and an entry of the seed's `faults`.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AppFaults {
    pub app_id: String,
    pub faults: Vec<FaultSpec>,
}

/// A fault waiting to fire, with what is left of it.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PendingFault {
    #[serde(flatten)]
    pub spec: FaultSpec,
    pub remaining: u32,
    /// End of an `upgrading` window.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub until: Option<Timestamp>,
}

/// The seed file: `{"accessKeys": [..], "apps": [..], "faults": [{"appId", "faults": [..]}]}`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Seed {
    #[serde(default)]
    pub access_keys: Vec<AccessKeySpec>,
    #[serde(default)]
    pub apps: Vec<AppSpec>,
    #[serde(default)]
    pub faults: Vec<AppFaults>,
}
