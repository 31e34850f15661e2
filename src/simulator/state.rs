//! The simulator's pure model of SAE: access keys, quota, nonces, apps, change orders, scripted
//! faults and the ledger. Nothing here reads a clock or does I/O: every call takes `now`, so unit
//! tests drive time by hand and the HTTP layer passes the real clock.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::fmt;
use std::time::Duration;

use jiff::{SignedDuration, Timestamp};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::auth::{self, Authorization, ReceivedRequest};
use super::change_order::{
    self, CO_DELETE_INSTANCES, ChangeOrder, ChangeOrderSource, ConsoleChangeOrderSpec,
    DeletingView, Scheduled, Script,
};
use super::times::TimeStyle;

/// Ledger lists keep at most this many entries each, dropping the oldest.
pub const LEDGER_CAPACITY: usize = 100_000;
/// At most this many nonces are remembered; past it the oldest are forgotten early.
pub const NONCE_CAPACITY: usize = 100_000;
/// Finished change orders beyond this count are forgotten, oldest first.
pub const CHANGE_ORDER_CAPACITY: usize = 100_000;
/// The quota window: SAE counts calls per minute.
pub const QUOTA_WINDOW: SignedDuration = SignedDuration::from_secs(60);
/// The largest page a paged operation accepts.
pub const MAX_PAGE_SIZE: u32 = 100;

/// The SAE operations the simulator serves: the controller's own list, so both spell each
/// operation's name, method and path the same way.
pub use crate::sae::Operation;

/// The operation at `method` + `path`; an unknown pair is `InvalidApi.NotFound` (404), as a
/// gateway answers an API it cannot route.
pub fn route(method: &str, path: &str) -> Result<Operation, ApiError> {
    match Operation::ALL.into_iter().find(|op| op.path() == path) {
        Some(op) if op.method() == method => Ok(op),
        Some(op) => Err(ApiError::gateway(
            "InvalidApi.NotFound",
            format!(
                "{} is served with {}, not {method}.",
                op.path(),
                op.method()
            ),
        )),
        None => Err(ApiError::gateway(
            "InvalidApi.NotFound",
            "Specified api is not found, please check your url and method.",
        )),
    }
}

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

    fn with_status(mut self, status: u16) -> Self {
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
fn throttling_user() -> ApiError {
    ApiError::gateway(
        "Throttling.User",
        "Request was denied due to user flow control.",
    )
}

fn not_empty(name: &str) -> ApiError {
    ApiError::sae(
        "InvalidParameter.NotEmpty",
        format!("The parameter {name} is required."),
    )
}

fn with_message(message: impl Into<String>) -> ApiError {
    ApiError::sae("InvalidParameter.WithMessage", message)
}

/// Query parameters, first occurrence wins; a blank value counts as absent.
#[derive(Clone, Copy, Debug)]
pub struct Params<'a>(pub &'a [(String, String)]);

impl<'a> Params<'a> {
    pub fn get(&self, name: &str) -> Option<&'a str> {
        self.0
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.trim())
            .filter(|v| !v.is_empty())
    }

    fn required(&self, name: &str) -> Result<&'a str, ApiError> {
        self.get(name).ok_or_else(|| not_empty(name))
    }

    fn number(&self, name: &str, default: u32, max: u32) -> Result<u32, ApiError> {
        match self.get(name) {
            None => Ok(default),
            Some(raw) => match raw.parse::<u32>() {
                Ok(n) if (1..=max).contains(&n) => Ok(n),
                _ => Err(with_message(format!(
                    "The parameter {name} must be an integer from 1 to {max}, got {raw:?}."
                ))),
            },
        }
    }

    fn page(&self) -> Result<(u32, u32), ApiError> {
        Ok((
            self.number("CurrentPage", 1, u32::MAX)?,
            self.number("PageSize", 10, MAX_PAGE_SIZE)?,
        ))
    }
}

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
const STS_DEFAULT_DURATION_SECONDS: u32 = 3600;
/// Issued STS keys are forgotten this long after they expire (until then they answer
/// `InvalidSecurityToken.Expired`, after that `InvalidAccessKeyId.NotFound`).
const STS_KEY_RETENTION: SignedDuration = SignedDuration::from_hours(1);

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

fn one() -> u32 {
    1
}

fn is_zero(n: &u32) -> bool {
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

    fn operation(&self) -> Option<&str> {
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

    fn times(&self) -> u32 {
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
    fn shapes_change_orders(&self) -> bool {
        matches!(
            self,
            FaultSpec::ChangeOrderResult { .. }
                | FaultSpec::SlowStart { .. }
                | FaultSpec::ConsoleChangeOrder(_)
        )
    }

    fn matches(&self, op: Operation) -> bool {
        match self.operation() {
            _ if self.shapes_change_orders() => false,
            None => op == Operation::DeleteInstances,
            Some("*") => true,
            Some(name) => name == op.name(),
        }
    }

    fn validate(&self) -> Result<(), String> {
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

/// One request as the ledger keeps it. Params are the query; no header (hence no credential) is kept.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct RequestRecord {
    pub time: Timestamp,
    pub request_id: String,
    /// The key id the request claimed, verified or not (see `verified`).
    pub access_key_id: Option<String>,
    /// `v1` or `v3` when the Authorization header parsed.
    pub signature_version: Option<String>,
    /// Whether the signature (and token, date, nonce) checked out.
    pub verified: bool,
    /// The operation name, or `Unknown` for a request that matched none.
    pub operation: String,
    pub method: String,
    pub path: String,
    pub params: BTreeMap<String, String>,
    /// 0 when the connection was closed without an answer.
    pub http_status: u16,
    /// `OK` or the error code; `NoAnswer` for a dropped connection, `Garbage` for a non-JSON body.
    pub code: String,
    /// Whether this call executed a deletion.
    pub committed: bool,
    pub change_order_id: Option<String>,
    /// The kind of scripted fault that shaped the answer.
    pub fault: Option<String>,
}

/// One executed deletion and how its change order ended.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct DeletionRecord {
    pub app_id: String,
    pub change_order_id: String,
    pub instance_ids: Vec<String>,
    pub time: Timestamp,
    /// `api` (an accepted DeleteInstances) or `console` (made in SAE's console, by no AccessKey).
    pub source: ChangeOrderSource,
    /// None while the change order runs.
    pub final_status: Option<i64>,
    pub finished_time: Option<Timestamp>,
}

/// An instance named by more than one accepted DeleteInstances call (console deletions are not
/// counted): what an at-most-once controller must never cause.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct RepeatedDeletion {
    pub app_id: String,
    pub instance_id: String,
    /// Oldest first.
    pub change_order_ids: Vec<String>,
}

#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Ledger {
    pub requests: Vec<RequestRecord>,
    pub deletions: Vec<DeletionRecord>,
    /// Derived from `deletions`: every instance that more than one API deletion named.
    pub repeated_deletions: Vec<RepeatedDeletion>,
}

/// The instances that API deletions named more than once, in the order of their first deletion.
pub fn repeated_deletions<'a>(
    deletions: impl IntoIterator<Item = &'a DeletionRecord>,
) -> Vec<RepeatedDeletion> {
    let mut seen: Vec<RepeatedDeletion> = Vec::new();
    let mut index: HashMap<(&str, &str), usize> = HashMap::new();
    for d in deletions
        .into_iter()
        .filter(|d| d.source == ChangeOrderSource::Api)
    {
        for id in &d.instance_ids {
            let slot = *index.entry((&d.app_id, id)).or_insert_with(|| {
                seen.push(RepeatedDeletion {
                    app_id: d.app_id.clone(),
                    instance_id: id.clone(),
                    change_order_ids: Vec::new(),
                });
                seen.len() - 1
            });
            seen[slot].change_order_ids.push(d.change_order_id.clone());
        }
    }
    seen.retain(|r| r.change_order_ids.len() > 1);
    seen
}

/// SAE's `CreateTime` as documented: `YYYY-MM-DD HH:MM:SS` in UTC+08:00, no zone written (the
/// default [`TimeStyle`]; the simulator's `createTimeZone`/`createTimeFormat` choose others).
pub fn sae_time(t: Timestamp) -> String {
    match TimeStyle::default().render(t) {
        Value::String(s) => s,
        other => other.to_string(),
    }
}

/// A successful operation: its `Data`, and the change order it created, if any.
#[derive(Clone, Debug, PartialEq)]
pub struct Success {
    pub data: Value,
    pub committed: Option<String>,
}

pub type Outcome = Result<Success, ApiError>;

fn committed_of(outcome: &Outcome) -> Option<String> {
    outcome.as_ref().ok().and_then(|s| s.committed.clone())
}

/// What the HTTP layer must do with a call.
#[derive(Clone, Debug, PartialEq)]
pub enum CallPlan {
    /// Answer normally (`fault` names an `error`/`upgrading` fault that produced the error).
    Answer {
        outcome: Outcome,
        fault: Option<&'static str>,
    },
    /// HTTP 500 `InternalError`.
    InternalError { committed: Option<String> },
    /// Close the connection without a word.
    DropConnection { committed: Option<String> },
    /// HTTP 200 with a non-JSON body.
    Garbage { committed: Option<String> },
    /// Wait, then answer this (already executed) outcome.
    Delayed { delay: Duration, outcome: Outcome },
    /// Wait, then call [`Model::execute`] and answer its outcome.
    ExecuteAfter { delay: Duration },
}

/// Simulator settings that the model needs.
#[derive(Clone, Debug)]
pub struct ModelConfig {
    pub change_order_duration: SignedDuration,
    /// 0 means unlimited.
    pub requests_per_minute: u32,
    pub max_skew: SignedDuration,
    /// How `CreateTime` and `FinishTime` are written (default: `plain` in +08:00).
    pub time_style: TimeStyle,
    /// Leave `CoTypeCode` out of ListChangeOrders rows (real rows may lack it).
    pub omit_co_type_code: bool,
    /// SAE's clock minus the simulator's clock. The model never reads a clock; the simulator adds
    /// this to its clock before handing the model `now`, so it moves CreateTime, the `Date` header,
    /// the signature date check and every timer alike.
    pub clock_skew: SignedDuration,
    /// How DescribeApplicationInstances shows instances a CoDeleteInstances is removing.
    pub deleting_instances: DeletingView,
    /// Per-AccessKeyId quotas that replace `requests_per_minute` for those keys (0 = unlimited),
    /// e.g. to throttle one noisy tenant while the others run free.
    pub key_requests_per_minute: BTreeMap<String, u32>,
}

impl Default for ModelConfig {
    fn default() -> Self {
        Self {
            change_order_duration: SignedDuration::from_secs(2),
            requests_per_minute: 60,
            max_skew: SignedDuration::from_mins(15),
            time_style: TimeStyle::default(),
            omit_co_type_code: false,
            clock_skew: SignedDuration::ZERO,
            deleting_instances: DeletingView::default(),
            key_requests_per_minute: BTreeMap::new(),
        }
    }
}

/// Nonces seen within the skew window, per access key. Bounded: past [`NONCE_CAPACITY`] the
/// oldest are forgotten, which only weakens replay detection for very old requests.
#[derive(Default, Debug)]
struct NonceCache {
    seen: HashSet<String>,
    order: VecDeque<(Timestamp, String)>,
}

impl NonceCache {
    fn check_and_remember(&mut self, key: String, now: Timestamp, window: SignedDuration) -> bool {
        while let Some((t, k)) = self.order.front() {
            if now.duration_since(*t) > window || self.order.len() >= NONCE_CAPACITY {
                self.seen.remove(k);
                self.order.pop_front();
            } else {
                break;
            }
        }
        if !self.seen.insert(key.clone()) {
            return false;
        }
        self.order.push_back((now, key));
        true
    }
}

#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct Group {
    group_id: String,
    group_name: String,
    instance_ids: Vec<String>,
}

/// The whole simulated SAE.
#[derive(Debug)]
pub struct Model {
    config: ModelConfig,
    access_keys: HashMap<String, AccessKeySpec>,
    /// When each STS key issued by `assume_role_with_oidc` expires.
    sts_expirations: HashMap<String, Timestamp>,
    oidc_tokens: Vec<OidcTokenSpec>,
    apps: BTreeMap<String, Vec<Group>>,
    /// Oldest first.
    change_orders: Vec<ChangeOrder>,
    /// Console change orders not made yet (their time has not come, or their app is busy).
    scheduled: Vec<Scheduled>,
    faults: HashMap<String, Vec<PendingFault>>,
    quota: HashMap<String, VecDeque<Timestamp>>,
    /// Keys refused every call with `Throttling.User` (and this `x-acs-retry-after`, if any).
    throttled: HashMap<String, Option<u64>>,
    nonces: NonceCache,
    requests: VecDeque<RequestRecord>,
    deletions: VecDeque<DeletionRecord>,
}

fn push_bounded<T>(list: &mut VecDeque<T>, item: T) {
    if list.len() >= LEDGER_CAPACITY {
        list.pop_front();
    }
    list.push_back(item);
}

impl Model {
    pub fn new(config: ModelConfig) -> Self {
        Self {
            config,
            access_keys: HashMap::new(),
            sts_expirations: HashMap::new(),
            oidc_tokens: Vec::new(),
            apps: BTreeMap::new(),
            change_orders: Vec::new(),
            scheduled: Vec::new(),
            faults: HashMap::new(),
            quota: HashMap::new(),
            throttled: HashMap::new(),
            nonces: NonceCache::default(),
            requests: VecDeque::new(),
            deletions: VecDeque::new(),
        }
    }

    pub fn config(&self) -> &ModelConfig {
        &self.config
    }

    pub fn config_mut(&mut self) -> &mut ModelConfig {
        &mut self.config
    }

    /// Switches `Throttling.User` on (`Some(retry hint in milliseconds, if any)`) or off
    /// (`None`) for every call signed with this key, whatever its quota use.
    pub fn set_throttle(&mut self, access_key_id: &str, throttle: Option<Option<u64>>) {
        match throttle {
            Some(retry_after_millis) => {
                self.throttled
                    .insert(access_key_id.to_string(), retry_after_millis);
            }
            None => {
                self.throttled.remove(access_key_id);
            }
        }
    }

    /// Keys switched to throttling, sorted.
    pub fn throttled_access_key_ids(&self) -> Vec<String> {
        let mut ids: Vec<String> = self.throttled.keys().cloned().collect();
        ids.sort();
        ids
    }

    /// Forgets apps, change orders, faults, throttle switches, the ledger, nonces and quota use; keeps access keys
    /// (issued STS keys included), OIDC tokens and settings.
    pub fn reset(&mut self) {
        *self = Self {
            access_keys: std::mem::take(&mut self.access_keys),
            sts_expirations: std::mem::take(&mut self.sts_expirations),
            oidc_tokens: std::mem::take(&mut self.oidc_tokens),
            ..Self::new(self.config.clone())
        };
    }

    pub fn upsert_access_key(&mut self, key: AccessKeySpec) -> Result<(), String> {
        if key.access_key_id.trim().is_empty() || key.access_key_secret.is_empty() {
            return Err("accessKeyId and accessKeySecret must not be empty".into());
        }
        let key = AccessKeySpec {
            security_token: key.security_token.filter(|t| !t.is_empty()),
            ..key
        };
        self.sts_expirations.remove(&key.access_key_id);
        self.access_keys.insert(key.access_key_id.clone(), key);
        Ok(())
    }

    /// Adds an OIDC token STS accepts, or replaces the role restriction of a known one.
    pub fn register_oidc_token(&mut self, spec: OidcTokenSpec) -> Result<(), String> {
        if spec.token.trim().is_empty() {
            return Err("token must not be empty".into());
        }
        let spec = OidcTokenSpec {
            token: spec.token.trim().to_string(),
            role_arn: spec.role_arn.filter(|r| !r.trim().is_empty()),
        };
        self.oidc_tokens.retain(|t| t.token != spec.token);
        self.oidc_tokens.push(spec);
        Ok(())
    }

    /// STS `AssumeRoleWithOIDC`: checks the parameters and the token, then issues a fresh STS key
    /// (`STS.` id, secret, security token) that SAE calls may sign with until `Expiration`.
    /// The secret and token carry recognisable prefixes (`simSTSsecret`, `CAISsimSTStoken`) so tests
    /// can search logs for them.
    pub fn assume_role_with_oidc(
        &mut self,
        params: &[(String, String)],
        now: Timestamp,
    ) -> Result<StsIssued, ApiError> {
        let params = Params(params);
        let missing = |name: &str| {
            ApiError::gateway(
                "MissingParameter",
                format!(
                    "The input parameter \"{name}\" that is mandatory for processing this request is not supplied."
                ),
            )
        };
        let role_arn = params.get("RoleArn").ok_or_else(|| missing("RoleArn"))?;
        params
            .get("OIDCProviderArn")
            .ok_or_else(|| missing("OIDCProviderArn"))?;
        let token = params
            .get("OIDCToken")
            .ok_or_else(|| missing("OIDCToken"))?;
        let duration = match params.get("DurationSeconds") {
            None => STS_DEFAULT_DURATION_SECONDS,
            Some(raw) => raw
                .parse::<u32>()
                .ok()
                .filter(|d| (STS_MIN_DURATION_SECONDS..=STS_MAX_DURATION_SECONDS).contains(d))
                .ok_or_else(|| {
                    ApiError::gateway(
                        "InvalidParameter.DurationSeconds",
                        format!(
                            "DurationSeconds must be an integer from {STS_MIN_DURATION_SECONDS} to {STS_MAX_DURATION_SECONDS}, got {raw:?}."
                        ),
                    )
                })?,
        };
        let session = params
            .get("RoleSessionName")
            .map(str::to_string)
            .unwrap_or_else(|| {
                format!(
                    "session-{}",
                    &uuid::Uuid::new_v4().simple().to_string()[..8]
                )
            });
        // Compared in constant time: the simulator checks credentials the way a gateway should.
        let known = self
            .oidc_tokens
            .iter()
            .find(|t| auth::constant_time_eq(t.token.as_bytes(), token.as_bytes()))
            .ok_or_else(|| {
                ApiError::gateway(
                    "InvalidParameter.OIDCToken",
                    "The OIDC token is invalid or was not registered with the simulator.",
                )
            })?;
        if let Some(allowed) = known.role_arn.as_deref()
            && allowed != role_arn
        {
            return Err(ApiError::gateway(
                "AuthenticationFail.NoPermission",
                format!("The OIDC token may not assume the role {role_arn}."),
            ));
        }

        // Forget long-expired STS keys so a long run does not accumulate them.
        let stale: Vec<String> = self
            .sts_expirations
            .iter()
            .filter(|(_, expires)| now.duration_since(**expires) > STS_KEY_RETENTION)
            .map(|(id, _)| id.clone())
            .collect();
        for id in stale {
            self.sts_expirations.remove(&id);
            self.access_keys.remove(&id);
        }

        let access_key_id = format!("STS.{}", uuid::Uuid::new_v4().simple());
        let secret = format!("simSTSsecret{}", uuid::Uuid::new_v4().simple());
        let security_token = format!(
            "CAISsimSTStoken{}{}",
            uuid::Uuid::new_v4().simple(),
            uuid::Uuid::new_v4().simple()
        );
        let expiration = now
            .saturating_add(SignedDuration::from_secs(duration.into()))
            .unwrap_or(now);
        self.access_keys.insert(
            access_key_id.clone(),
            AccessKeySpec {
                access_key_id: access_key_id.clone(),
                access_key_secret: secret.clone(),
                security_token: Some(security_token.clone()),
            },
        );
        self.sts_expirations
            .insert(access_key_id.clone(), expiration);
        let body = json!({
            "AssumedRoleUser": {
                "AssumedRoleId": format!("3{}:{session}", &uuid::Uuid::new_v4().simple().to_string()[..16]),
                "Arn": format!("{role_arn}/{session}"),
            },
            "Credentials": {
                "AccessKeyId": access_key_id,
                "AccessKeySecret": secret,
                "SecurityToken": security_token,
                "Expiration": expiration.strftime("%Y-%m-%dT%H:%M:%SZ").to_string(),
            },
        });
        Ok(StsIssued {
            access_key_id,
            body,
        })
    }

    pub fn access_key_ids(&self) -> Vec<String> {
        let mut ids: Vec<String> = self.access_keys.keys().cloned().collect();
        ids.sort();
        ids
    }

    /// Creates the app or replaces its groups; its change orders and faults stay.
    pub fn upsert_app(&mut self, spec: AppSpec, now: Timestamp) -> Result<(), String> {
        self.advance(now);
        if spec.app_id.trim().is_empty() {
            return Err("appId must not be empty".into());
        }
        let mut seen = HashSet::new();
        let mut groups = Vec::new();
        for g in spec.groups {
            if g.group_id.trim().is_empty() {
                return Err(format!("app {}: groupId must not be empty", spec.app_id));
            }
            for id in &g.instance_ids {
                if id.trim().is_empty() || id.contains(',') {
                    return Err(format!(
                        "app {}: instance id {id:?} is empty or contains a comma",
                        spec.app_id
                    ));
                }
                if !seen.insert(id.clone()) {
                    return Err(format!("app {}: instance {id} appears twice", spec.app_id));
                }
            }
            groups.push(Group {
                group_name: g
                    .group_name
                    .unwrap_or_else(|| format!("{}-group", g.group_id)),
                group_id: g.group_id,
                instance_ids: g.instance_ids,
            });
        }
        self.apps.insert(spec.app_id, groups);
        Ok(())
    }

    pub fn has_app(&self, app_id: &str) -> bool {
        self.apps.contains_key(app_id)
    }

    /// Appends faults to an existing app's script; `consoleChangeOrder` faults are scheduled at
    /// once instead. Nothing is added unless every fault is valid.
    pub fn add_faults(&mut self, app_faults: AppFaults, now: Timestamp) -> Result<(), String> {
        if !self.apps.contains_key(&app_faults.app_id) {
            return Err(format!(
                "unknown app {:?}: create it before scripting faults",
                app_faults.app_id
            ));
        }
        let app_id = app_faults.app_id;
        for f in &app_faults.faults {
            f.validate()?;
            if let FaultSpec::ConsoleChangeOrder(spec) = f {
                self.check_console_change_order(&app_id, spec, now)?;
            }
        }
        for spec in app_faults.faults {
            let until = match &spec {
                FaultSpec::Upgrading { seconds, .. } => Some(
                    now.saturating_add(
                        SignedDuration::try_from_secs_f64(*seconds).map_err(|e| e.to_string())?,
                    )
                    .map_err(|e| e.to_string())?,
                ),
                FaultSpec::ConsoleChangeOrder(spec) => {
                    self.schedule_console_change_order(&app_id, spec, now)?;
                    continue;
                }
                _ => None,
            };
            self.faults
                .entry(app_id.clone())
                .or_default()
                .push(PendingFault {
                    remaining: spec.times(),
                    spec,
                    until,
                });
        }
        Ok(())
    }

    /// Validates a console change order for `app_id` and returns when it is to be made.
    fn check_console_change_order(
        &self,
        app_id: &str,
        spec: &ConsoleChangeOrderSpec,
        now: Timestamp,
    ) -> Result<Timestamp, String> {
        let groups = self
            .apps
            .get(app_id)
            .ok_or_else(|| format!("unknown app {app_id:?}"))?;
        let at = spec.validate(now)?;
        let mut seen = HashSet::new();
        for id in &spec.instance_ids {
            if !seen.insert(id.as_str()) {
                return Err(format!("instance {id} appears twice"));
            }
            if !groups.iter().any(|g| g.instance_ids.contains(id)) {
                return Err(format!(
                    "instance {id:?} does not belong to application {app_id}"
                ));
            }
        }
        Ok(at)
    }

    /// Schedules a change order made in SAE's console, by no AccessKey: it is made at its time, or
    /// as soon as the app's running change order has ended, whichever is later (SAE runs one
    /// change order per app). Returns its id; it is unknown to SAE's API until it is made.
    pub fn schedule_console_change_order(
        &mut self,
        app_id: &str,
        spec: &ConsoleChangeOrderSpec,
        now: Timestamp,
    ) -> Result<String, String> {
        self.advance(now);
        let at = self.check_console_change_order(app_id, spec, now)?;
        let id = uuid::Uuid::new_v4().to_string();
        self.scheduled.push(Scheduled {
            id: id.clone(),
            app_id: app_id.to_string(),
            at,
            spec: ConsoleChangeOrderSpec {
                co_type_code: spec.co_type_code.trim().to_string(),
                ..spec.clone()
            },
        });
        // One made "now" is visible at once.
        self.advance(now);
        Ok(id)
    }

    pub fn apply_seed(&mut self, seed: Seed, now: Timestamp) -> Result<(), String> {
        for key in seed.access_keys {
            self.upsert_access_key(key)?;
        }
        for app in seed.apps {
            self.upsert_app(app, now)?;
        }
        for faults in seed.faults {
            self.add_faults(faults, now)?;
        }
        Ok(())
    }

    /// Checks key, date, signature, security token and nonce, in that order.
    pub fn authenticate(
        &mut self,
        auth: &Authorization,
        req: &ReceivedRequest<'_>,
        now: Timestamp,
    ) -> Result<(), ApiError> {
        let ak = auth.access_key_id();
        let key = self.access_keys.get(ak).ok_or_else(|| {
            ApiError::gateway(
                "InvalidAccessKeyId.NotFound",
                "Specified access key is not found.",
            )
        })?;
        let claimed = auth::request_time(auth, req)?;
        auth::check_skew(claimed, now, self.config.max_skew)?;
        auth::verify_signature(auth, &key.access_key_secret, req)?;
        let sent_token = req.header("x-acs-security-token").unwrap_or("");
        let token_ok = match key.security_token.as_deref() {
            Some(want) => auth::constant_time_eq(want.as_bytes(), sent_token.as_bytes()),
            None => sent_token.is_empty(),
        };
        if !token_ok {
            return Err(ApiError::gateway(
                "InvalidSecurityToken.MismatchWithAccessKey",
                "The security token does not belong to this access key.",
            ));
        }
        if self
            .sts_expirations
            .get(ak)
            .is_some_and(|expires| now >= *expires)
        {
            return Err(ApiError::gateway(
                "InvalidSecurityToken.Expired",
                "Specified SecurityToken is expired.",
            ));
        }
        if let Some(nonce) = req.header("x-acs-signature-nonce") {
            let window = self.config.max_skew;
            if !self
                .nonces
                .check_and_remember(format!("{ak}\n{nonce}"), now, window)
            {
                return Err(ApiError::gateway(
                    "SignatureNonceUsed",
                    "Specified signature nonce was used already.",
                ));
            }
        }
        Ok(())
    }

    /// Counts the call against the key's quota (sliding 60 s window), or refuses it with
    /// `Throttling.User` and the milliseconds until the oldest counted call leaves the window. A
    /// key switched to throttling ([`Model::set_throttle`]) is refused every call.
    pub fn admit(&mut self, access_key_id: &str, now: Timestamp) -> Result<(), ApiError> {
        if let Some(retry_after_millis) = self.throttled.get(access_key_id) {
            let mut err = throttling_user();
            err.retry_after_millis = *retry_after_millis;
            return Err(err);
        }
        let limit = self
            .config
            .key_requests_per_minute
            .get(access_key_id)
            .copied()
            .unwrap_or(self.config.requests_per_minute) as usize;
        if limit == 0 {
            return Ok(());
        }
        let calls = self.quota.entry(access_key_id.to_string()).or_default();
        while calls
            .front()
            .is_some_and(|t| now.duration_since(*t) >= QUOTA_WINDOW)
        {
            calls.pop_front();
        }
        if calls.len() >= limit {
            let frees_in = QUOTA_WINDOW - now.duration_since(calls[0]);
            let mut err = throttling_user();
            err.retry_after_millis = Some(frees_in.as_millis().max(1) as u64);
            return Err(err);
        }
        calls.push_back(now);
        Ok(())
    }

    /// Brings the model to `now`: ends the change orders whose time is up (a successful
    /// CoDeleteInstances removes its instances then, a failed one only its `removedInstances`) and
    /// makes the console change orders whose time has come, once their app is free. Repeats until
    /// nothing changes, since one that ends can free its app for a queued one that also ends.
    fn advance(&mut self, now: Timestamp) {
        loop {
            let mut changed = false;
            for i in 0..self.change_orders.len() {
                let co = &self.change_orders[i];
                if !co.finished && co.ends <= now {
                    self.finish(i);
                    changed = true;
                }
            }
            let due = self
                .scheduled
                .iter()
                .enumerate()
                .filter(|(_, s)| s.at <= now && self.running_change_order(&s.app_id).is_none())
                .min_by_key(|(_, s)| s.at)
                .map(|(pos, _)| pos);
            if let Some(pos) = due {
                let scheduled = self.scheduled.remove(pos);
                self.make_console_change_order(scheduled);
                changed = true;
            }
            if !changed {
                break;
            }
        }
        if self.change_orders.len() > CHANGE_ORDER_CAPACITY
            && let Some(pos) = self.change_orders.iter().position(|co| co.finished)
        {
            self.change_orders.remove(pos);
        }
    }

    fn finish(&mut self, i: usize) {
        let co = &mut self.change_orders[i];
        co.finished = true;
        let co = &self.change_orders[i];
        if co.deletes_instances()
            && let Some(groups) = self.apps.get_mut(&co.app_id)
        {
            let gone = co.removes();
            for g in groups.iter_mut() {
                g.instance_ids.retain(|id| !gone.contains(id));
            }
        }
        if let Some(rec) = self
            .deletions
            .iter_mut()
            .rev()
            .find(|d| d.change_order_id == co.id)
        {
            rec.final_status = Some(co.final_status);
            rec.finished_time = Some(co.ends);
        }
    }

    /// The app's change order that has not ended, if any.
    fn running_change_order(&self, app_id: &str) -> Option<&ChangeOrder> {
        self.change_orders
            .iter()
            .find(|co| co.app_id == app_id && !co.finished)
    }

    /// Makes a due console change order, at its time or when the app's last one ended.
    fn make_console_change_order(&mut self, s: Scheduled) {
        let freed = self
            .change_orders
            .iter()
            .filter(|co| co.app_id == s.app_id)
            .map(|co| co.ends)
            .max();
        let created = freed.map_or(s.at, |freed| freed.max(s.at));
        let spec = s.spec;
        // Validated when scheduled.
        let duration = |v, what| change_order::seconds(v, what).unwrap_or_default();
        let script = Script {
            approval: duration(spec.approval_seconds, "approvalSeconds"),
            preparing: duration(spec.preparing_seconds, "preparingSeconds"),
            executing: match spec.seconds {
                Some(_) => duration(spec.seconds, "seconds"),
                None => self.config.change_order_duration,
            },
            final_status: spec.status.unwrap_or(2),
            error_message: spec
                .error_message
                .clone()
                .unwrap_or_else(|| match spec.status {
                    Some(2) | None => String::new(),
                    Some(status) => format!("Change order ended with status {status} (console)."),
                }),
            removed_instances: spec.removed_instances as usize,
        };
        self.push_change_order(ChangeOrder::new(
            s.id,
            s.app_id,
            spec.co_type_code,
            ChangeOrderSource::Console,
            spec.instance_ids,
            created,
            script,
        ));
    }

    /// Records a new change order (and its deletion, for a CoDeleteInstances).
    fn push_change_order(&mut self, co: ChangeOrder) {
        if co.deletes_instances() {
            push_bounded(
                &mut self.deletions,
                DeletionRecord {
                    app_id: co.app_id.clone(),
                    change_order_id: co.id.clone(),
                    instance_ids: co.instance_ids.clone(),
                    time: co.created,
                    source: co.source,
                    final_status: None,
                    finished_time: None,
                },
            );
        }
        self.change_orders.push(co);
    }

    fn app_exists(&self, app_id: &str) -> Result<(), ApiError> {
        if self.apps.contains_key(app_id) {
            Ok(())
        } else {
            Err(ApiError::sae(
                "InvalidApplication.NotFound",
                format!("The application {app_id} does not exist."),
            ))
        }
    }

    fn change_order(&self, id: &str) -> Result<&ChangeOrder, ApiError> {
        self.change_orders
            .iter()
            .find(|co| co.id == id)
            .ok_or_else(|| with_message(format!("The change order {id} does not exist.")))
    }

    /// Validates what can be validated without executing and names the app whose faults apply.
    fn precheck(&self, op: Operation, params: Params<'_>) -> Result<String, ApiError> {
        match op {
            Operation::DescribeChangeOrder => {
                let id = params.required("ChangeOrderId")?;
                Ok(self.change_order(id)?.app_id.clone())
            }
            Operation::ListChangeOrders => {
                let app_id = params.required("AppId")?;
                params.page()?;
                if !self.apps.contains_key(app_id) {
                    return Err(ApiError::sae(
                        "InvalidAppId.NotFound",
                        format!("The application {app_id} does not exist."),
                    ));
                }
                Ok(app_id.to_string())
            }
            Operation::DeleteInstances => {
                let app_id = params.required("AppId")?;
                params.required("InstanceIds")?;
                self.app_exists(app_id)?;
                Ok(app_id.to_string())
            }
            Operation::DescribeApplicationGroups => {
                let app_id = params.required("AppId")?;
                self.app_exists(app_id)?;
                Ok(app_id.to_string())
            }
            Operation::DescribeApplicationInstances => {
                let app_id = params.required("AppId")?;
                params.required("GroupId")?;
                params.page()?;
                self.app_exists(app_id)?;
                Ok(app_id.to_string())
            }
        }
    }

    /// Takes one use of the first pending fault of `app_id` that matches `op`.
    fn take_fault(&mut self, app_id: &str, op: Operation, now: Timestamp) -> Option<FaultSpec> {
        let list = self.faults.get_mut(app_id)?;
        list.retain(|f| f.until.is_none_or(|until| now < until));
        let pos = list.iter().position(|f| f.spec.matches(op))?;
        let fault = &mut list[pos];
        let spec = fault.spec.clone();
        if fault.until.is_none() {
            fault.remaining -= 1;
            if fault.remaining == 0 {
                list.remove(pos);
            }
        }
        Some(spec)
    }

    /// Decides how to answer one authenticated, admitted call, applying the app's faults.
    pub fn call(&mut self, op: Operation, query: &[(String, String)], now: Timestamp) -> CallPlan {
        self.advance(now);
        let app_id = match self.precheck(op, Params(query)) {
            Ok(app_id) => app_id,
            Err(e) => {
                return CallPlan::Answer {
                    outcome: Err(e),
                    fault: None,
                };
            }
        };
        // Checked and advanced above; only the faults list changed since.
        let params = Params(query);
        let Some(fault) = self.take_fault(&app_id, op, now) else {
            return CallPlan::Answer {
                outcome: self.run(op, params, now),
                fault: None,
            };
        };
        let mut run = |commit: bool| {
            if commit {
                committed_of(&self.run(op, params, now))
            } else {
                None
            }
        };
        match fault {
            FaultSpec::Error {
                code,
                http_status,
                message,
                retry_after_millis,
                ..
            } => {
                let message =
                    message.unwrap_or_else(|| format!("Scripted {code} from the simulator."));
                let mut err = ApiError::sae(&code, message);
                if let Some(status) = http_status {
                    err = err.with_status(status);
                }
                err.retry_after_millis = retry_after_millis;
                CallPlan::Answer {
                    outcome: Err(err),
                    fault: Some("error"),
                }
            }
            FaultSpec::Upgrading { .. } => CallPlan::Answer {
                outcome: Err(ApiError::sae(
                    "System.Upgrading",
                    "The system is being upgraded. Please try again later.",
                )),
                fault: Some("upgrading"),
            },
            FaultSpec::Http500 { commit, .. } => CallPlan::InternalError {
                committed: run(commit),
            },
            FaultSpec::Ambiguous { .. } => CallPlan::DropConnection {
                committed: run(true),
            },
            FaultSpec::Garbage { commit, .. } => CallPlan::Garbage {
                committed: run(commit),
            },
            FaultSpec::Slow {
                millis,
                commit: true,
                ..
            } => CallPlan::Delayed {
                delay: Duration::from_millis(millis),
                outcome: self.run(op, params, now),
            },
            FaultSpec::Slow {
                millis,
                commit: false,
                ..
            } => CallPlan::ExecuteAfter {
                delay: Duration::from_millis(millis),
            },
            FaultSpec::ChangeOrderResult { .. }
            | FaultSpec::SlowStart { .. }
            | FaultSpec::ConsoleChangeOrder(_) => {
                unreachable!("faults that shape change orders never match a call")
            }
        }
    }

    /// Runs the operation as SAE would, without faults.
    pub fn execute(
        &mut self,
        op: Operation,
        query: &[(String, String)],
        now: Timestamp,
    ) -> Outcome {
        self.advance(now);
        let params = Params(query);
        self.precheck(op, params)?;
        self.run(op, params, now)
    }

    /// [`Model::execute`] once the state is advanced to `now` and the call prechecked.
    fn run(&mut self, op: Operation, params: Params<'_>, now: Timestamp) -> Outcome {
        let style = self.config.time_style;
        let data = match op {
            Operation::DeleteInstances => return self.delete_instances(params, now),
            Operation::DescribeChangeOrder => self
                .change_order(params.required("ChangeOrderId")?)?
                .describe(now, &style),
            Operation::ListChangeOrders => {
                let app_id = params.required("AppId")?;
                let co_type = params.get("CoType");
                let (page, size) = params.page()?;
                let matching: Vec<&ChangeOrder> = self
                    .change_orders
                    .iter()
                    .rev()
                    .filter(|co| {
                        co.app_id == app_id && co_type.is_none_or(|t| t == co.co_type_code)
                    })
                    .collect();
                let total = matching.len();
                // Only the requested page is rendered.
                let list: Vec<Value> = matching
                    .into_iter()
                    .skip(skip(page, size))
                    .take(size as usize)
                    .map(|co| co.list_row(now, &style, self.config.omit_co_type_code))
                    .collect();
                json!({"ChangeOrderList": list, "CurrentPage": page, "PageSize": size, "TotalSize": total})
            }
            Operation::DescribeApplicationGroups => {
                let groups = &self.apps[params.required("AppId")?];
                Value::Array(
                    groups
                        .iter()
                        .map(|g| json!({"GroupId": g.group_id, "GroupName": g.group_name, "GroupType": 0}))
                        .collect(),
                )
            }
            Operation::DescribeApplicationInstances => {
                let app_id = params.required("AppId")?;
                let group_id = params.required("GroupId")?;
                let (page, size) = params.page()?;
                let group = self.apps[app_id]
                    .iter()
                    .find(|g| g.group_id == group_id)
                    .ok_or_else(|| {
                        with_message(format!(
                            "The group {group_id} does not belong to application {app_id}."
                        ))
                    })?;
                let deleting: HashSet<&str> = self
                    .running_change_order(app_id)
                    .filter(|co| co.is_deleting(now))
                    .map(|co| co.instance_ids.iter().map(String::as_str).collect())
                    .unwrap_or_default();
                let view = self.config.deleting_instances;
                let shown: Vec<(&str, &str)> = group
                    .instance_ids
                    .iter()
                    .map(|id| {
                        let status = match (deleting.contains(id.as_str()), view) {
                            (false, _) | (true, DeletingView::Running) => "Running",
                            (true, DeletingView::Terminating) => "Terminating",
                            (true, DeletingView::Hidden) => "",
                        };
                        (id.as_str(), status)
                    })
                    .filter(|(_, status)| !status.is_empty())
                    .collect();
                let rows: Vec<Value> = shown
                    .iter()
                    .skip(skip(page, size))
                    .take(size as usize)
                    .map(|(id, status)| json!({"InstanceId": id, "GroupId": group_id, "InstanceContainerStatus": status}))
                    .collect();
                json!({"Instances": rows, "CurrentPage": page, "PageSize": size, "TotalSize": shown.len()})
            }
        };
        Ok(Success {
            data,
            committed: None,
        })
    }

    fn delete_instances(&mut self, params: Params<'_>, now: Timestamp) -> Outcome {
        let app_id = params.required("AppId")?.to_string();
        let mut ids: Vec<String> = Vec::new();
        for id in params
            .required("InstanceIds")?
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
        {
            if !ids.iter().any(|known| known == id) {
                ids.push(id.to_string());
            }
        }
        if ids.is_empty() {
            return Err(not_empty("InstanceIds"));
        }
        if let Some(running) = self.running_change_order(&app_id) {
            return Err(ApiError::sae(
                "Application.ChangerOrderRunning",
                format!(
                    "The application has a change order in progress ({}). Please try again later.",
                    running.id
                ),
            ));
        }
        let groups = &self.apps[&app_id];
        if let Some(missing) = ids
            .iter()
            .find(|id| !groups.iter().any(|g| g.instance_ids.contains(id)))
        {
            return Err(with_message(format!(
                "The instance {missing} does not belong to application {app_id}."
            )));
        }
        let script = self.script_for_api_change_order(&app_id);
        let id = uuid::Uuid::new_v4().to_string();
        self.push_change_order(ChangeOrder::new(
            id.clone(),
            app_id,
            CO_DELETE_INSTANCES.to_string(),
            ChangeOrderSource::Api,
            ids,
            now,
            script,
        ));
        // A zero-length change order is done as soon as it exists.
        self.advance(now);
        Ok(Success {
            data: json!({"ChangeOrderId": id}),
            committed: Some(id),
        })
    }

    /// The phases and end of the app's next API-made change order, from its pending
    /// `slowStart` and `changeOrderResult` faults (each use takes one of their `times`).
    fn script_for_api_change_order(&mut self, app_id: &str) -> Script {
        let mut script = Script {
            approval: SignedDuration::ZERO,
            preparing: SignedDuration::ZERO,
            executing: self.config.change_order_duration,
            final_status: 2,
            error_message: String::new(),
            removed_instances: 0,
        };
        let Some(list) = self.faults.get_mut(app_id) else {
            return script;
        };
        let mut take = |wanted: fn(&FaultSpec) -> bool| {
            let pos = list.iter().position(|f| wanted(&f.spec))?;
            let spec = list[pos].spec.clone();
            list[pos].remaining -= 1;
            if list[pos].remaining == 0 {
                list.remove(pos);
            }
            Some(spec)
        };
        if let Some(FaultSpec::ChangeOrderResult {
            status,
            error_message,
            removed_instances,
            ..
        }) = take(|f| matches!(f, FaultSpec::ChangeOrderResult { .. }))
        {
            script.final_status = status;
            script.error_message = error_message
                .unwrap_or_else(|| format!("Change order ended with status {status} (scripted)."));
            script.removed_instances = removed_instances as usize;
        }
        if let Some(FaultSpec::SlowStart {
            preparing_seconds,
            approval_seconds,
            ..
        }) = take(|f| matches!(f, FaultSpec::SlowStart { .. }))
        {
            // Validated when added.
            let d = |s| SignedDuration::try_from_secs_f64(s).unwrap_or_default();
            script.approval = d(approval_seconds);
            script.preparing = d(preparing_seconds);
        }
        script
    }

    pub fn record_request(&mut self, record: RequestRecord) {
        push_bounded(&mut self.requests, record);
    }

    pub fn ledger(&mut self, now: Timestamp) -> Ledger {
        self.advance(now);
        Ledger {
            requests: self.requests.iter().cloned().collect(),
            deletions: self.deletions.iter().cloned().collect(),
            repeated_deletions: repeated_deletions(&self.deletions),
        }
    }

    /// The admin view of one app: groups, change orders (newest first), console change orders
    /// not made yet, and pending faults.
    pub fn app_view(&mut self, app_id: &str, now: Timestamp) -> Option<Value> {
        self.advance(now);
        let groups = self.apps.get(app_id)?;
        let style = self.config.time_style;
        let change_orders: Vec<Value> = self
            .change_orders
            .iter()
            .rev()
            .filter(|co| co.app_id == app_id)
            .map(|co| co.admin_view(now, &style))
            .collect();
        let scheduled: Vec<Value> = self
            .scheduled
            .iter()
            .filter(|s| s.app_id == app_id)
            .map(|s| json!({"changeOrderId": s.id, "at": s.at, "spec": s.spec}))
            .collect();
        let faults = self.faults.get(app_id).cloned().unwrap_or_default();
        Some(json!({
            "appId": app_id,
            "groups": groups,
            "changeOrders": change_orders,
            "scheduledChangeOrders": scheduled,
            "faults": faults,
        }))
    }
}

fn skip(page: u32, size: u32) -> usize {
    (page as usize - 1).saturating_mul(size as usize)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sae::Credentials;
    use crate::sae::sign::{self, SignInput, SignatureVersion};

    fn t0() -> Timestamp {
        "2024-05-01T10:00:00Z".parse().unwrap()
    }

    fn secs(s: i64) -> SignedDuration {
        SignedDuration::from_secs(s)
    }

    fn q(items: &[(&str, &str)]) -> Vec<(String, String)> {
        items
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn model() -> Model {
        let mut m = Model::new(ModelConfig::default());
        m.upsert_app(
            AppSpec {
                app_id: "app-1".into(),
                groups: vec![GroupSpec {
                    group_id: "g-1".into(),
                    group_name: None,
                    instance_ids: vec!["i-a".into(), "i-b".into(), "i-c".into()],
                }],
            },
            t0(),
        )
        .unwrap();
        m
    }

    fn delete(m: &mut Model, ids: &str, now: Timestamp) -> Outcome {
        m.execute(
            Operation::DeleteInstances,
            &q(&[("AppId", "app-1"), ("InstanceIds", ids)]),
            now,
        )
    }

    fn status(m: &mut Model, co: &str, now: Timestamp) -> i64 {
        let data = m
            .execute(
                Operation::DescribeChangeOrder,
                &q(&[("ChangeOrderId", co)]),
                now,
            )
            .unwrap()
            .data;
        data["Status"].as_i64().unwrap()
    }

    fn instances(m: &mut Model, now: Timestamp) -> Vec<String> {
        let data = m
            .execute(
                Operation::DescribeApplicationInstances,
                &q(&[("AppId", "app-1"), ("GroupId", "g-1")]),
                now,
            )
            .unwrap()
            .data;
        data["Instances"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i["InstanceId"].as_str().unwrap().to_string())
            .collect()
    }

    fn faults(m: &mut Model, json: Value) {
        let faults: Vec<FaultSpec> = serde_json::from_value(json).unwrap();
        m.add_faults(
            AppFaults {
                app_id: "app-1".into(),
                faults,
            },
            t0(),
        )
        .unwrap();
    }

    #[test]
    fn change_order_runs_then_succeeds_and_removes_instances() {
        let mut m = model();
        let co = delete(&mut m, "i-a,i-b", t0()).unwrap().committed.unwrap();
        assert_eq!(status(&mut m, &co, t0() + secs(1)), 1);
        assert_eq!(instances(&mut m, t0() + secs(1)), ["i-a", "i-b", "i-c"]);
        assert_eq!(status(&mut m, &co, t0() + secs(2)), 2);
        assert_eq!(instances(&mut m, t0() + secs(2)), ["i-c"]);
        let ledger = m.ledger(t0() + secs(3));
        assert_eq!(ledger.deletions.len(), 1);
        assert_eq!(ledger.deletions[0].final_status, Some(2));
        assert_eq!(ledger.deletions[0].instance_ids, ["i-a", "i-b"]);
    }

    #[test]
    fn one_change_order_per_app() {
        let mut m = model();
        delete(&mut m, "i-a", t0()).unwrap();
        let err = delete(&mut m, "i-b", t0() + secs(1)).unwrap_err();
        assert_eq!(err.code, "Application.ChangerOrderRunning");
        assert_eq!(err.http_status, 400);
        assert!(delete(&mut m, "i-b", t0() + secs(2)).is_ok());
    }

    #[test]
    fn deletion_validates_params_app_and_instances() {
        let mut m = model();
        let err = m
            .execute(Operation::DeleteInstances, &q(&[("AppId", "app-1")]), t0())
            .unwrap_err();
        assert_eq!(err.code, "InvalidParameter.NotEmpty");
        let err = m.execute(
            Operation::DeleteInstances,
            &q(&[("AppId", "nope"), ("InstanceIds", "i-a")]),
            t0(),
        );
        assert_eq!(err.unwrap_err().code, "InvalidApplication.NotFound");
        let err = delete(&mut m, "i-a,i-zzz", t0()).unwrap_err();
        assert_eq!(err.code, "InvalidParameter.WithMessage");
        assert!(err.message.contains("i-zzz"), "{}", err.message);
        assert_eq!(
            delete(&mut m, " , ", t0()).unwrap_err().code,
            "InvalidParameter.NotEmpty"
        );
        let err = m
            .execute(Operation::ListChangeOrders, &q(&[("AppId", "nope")]), t0())
            .unwrap_err();
        assert_eq!(
            (err.code.as_str(), err.http_status),
            ("InvalidAppId.NotFound", 404)
        );
        let err = m
            .execute(
                Operation::DescribeChangeOrder,
                &q(&[("ChangeOrderId", "x")]),
                t0(),
            )
            .unwrap_err();
        assert_eq!(err.code, "InvalidParameter.WithMessage");
        assert!(m.ledger(t0()).deletions.is_empty());
    }

    #[test]
    fn list_change_orders_is_newest_first_and_paged() {
        let mut m = model();
        let first = delete(&mut m, "i-a", t0()).unwrap().committed.unwrap();
        let second = delete(&mut m, "i-b", t0() + secs(5))
            .unwrap()
            .committed
            .unwrap();
        let list = |m: &mut Model, extra: &[(&str, &str)]| {
            let mut query = q(&[("AppId", "app-1")]);
            query.extend(q(extra));
            m.execute(Operation::ListChangeOrders, &query, t0() + secs(6))
                .unwrap()
                .data
        };
        let data = list(&mut m, &[]);
        assert_eq!(data["TotalSize"], 2);
        assert_eq!(data["ChangeOrderList"][0]["ChangeOrderId"], second.as_str());
        assert_eq!(data["ChangeOrderList"][0]["Status"], 1);
        assert_eq!(data["ChangeOrderList"][1]["ChangeOrderId"], first.as_str());
        assert_eq!(data["ChangeOrderList"][1]["Status"], 2);
        assert_eq!(
            data["ChangeOrderList"][1]["CreateTime"],
            "2024-05-01 18:00:00"
        );
        let page2 = list(&mut m, &[("CurrentPage", "2"), ("PageSize", "1")]);
        assert_eq!(page2["ChangeOrderList"][0]["ChangeOrderId"], first.as_str());
        assert_eq!(
            list(&mut m, &[("CoType", "CoDeploy")])["ChangeOrderList"],
            json!([])
        );
        let err = m.execute(
            Operation::ListChangeOrders,
            &q(&[("AppId", "app-1"), ("PageSize", "x")]),
            t0(),
        );
        assert_eq!(err.unwrap_err().code, "InvalidParameter.WithMessage");
    }

    #[test]
    fn a_throttled_key_is_refused_whatever_its_quota_until_switched_off_or_reset() {
        let mut m = model();
        m.config_mut().requests_per_minute = 0;
        m.set_throttle("ak", Some(Some(1000)));
        let err = m.admit("ak", t0()).unwrap_err();
        assert_eq!(
            (err.code.as_str(), err.retry_after_millis, err.gateway),
            ("Throttling.User", Some(1000), true)
        );
        m.admit("other", t0()).unwrap();
        m.set_throttle("ak", Some(None));
        assert_eq!(m.admit("ak", t0()).unwrap_err().retry_after_millis, None);
        assert_eq!(m.throttled_access_key_ids(), ["ak"]);
        m.set_throttle("ak", None);
        m.admit("ak", t0()).unwrap();
        m.set_throttle("ak", Some(None));
        m.reset();
        m.admit("ak", t0()).unwrap();
    }

    #[test]
    fn quota_slides_and_tells_when_a_slot_frees() {
        let mut m = model();
        m.config_mut().requests_per_minute = 2;
        m.admit("ak", t0()).unwrap();
        m.admit("ak", t0() + secs(10)).unwrap();
        let err = m.admit("ak", t0() + secs(20)).unwrap_err();
        assert_eq!(err.code, "Throttling.User");
        assert_eq!(err.retry_after_millis, Some(40_000), "milliseconds");
        m.admit("other", t0() + secs(20)).unwrap();
        // A key of its own quota: "noisy" gets one call a minute, "free" none at all.
        m.config_mut()
            .key_requests_per_minute
            .extend([("noisy".to_string(), 1), ("free".to_string(), 0)]);
        m.admit("noisy", t0() + secs(20)).unwrap();
        assert!(m.admit("noisy", t0() + secs(21)).is_err());
        for _ in 0..10 {
            m.admit("free", t0() + secs(21)).unwrap();
        }
        // The throttled call did not count: one slot frees at t0+60.
        m.admit("ak", t0() + secs(60)).unwrap();
        assert!(m.admit("ak", t0() + secs(61)).is_err());
        m.config_mut().requests_per_minute = 0;
        for _ in 0..1000 {
            m.admit("ak", t0() + secs(61)).unwrap();
        }
    }

    #[test]
    fn nonces_are_refused_within_the_window_and_bounded() {
        let mut cache = NonceCache::default();
        let w = SignedDuration::from_mins(15);
        assert!(cache.check_and_remember("n1".into(), t0(), w));
        assert!(!cache.check_and_remember("n1".into(), t0() + secs(899), w));
        assert!(cache.check_and_remember("n1".into(), t0() + secs(2000), w));
        for i in 0..NONCE_CAPACITY + 10 {
            cache.check_and_remember(format!("x{i}"), t0() + secs(2000), w);
        }
        assert!(cache.order.len() <= NONCE_CAPACITY && cache.seen.len() == cache.order.len());
    }

    #[test]
    fn error_faults_fire_n_times_on_their_operation_only() {
        let mut m = model();
        faults(
            &mut m,
            json!([{"kind": "error", "code": "Application.ChangerOrderRunning", "times": 2}]),
        );
        let groups = q(&[("AppId", "app-1")]);
        assert!(matches!(
            m.call(Operation::DescribeApplicationGroups, &groups, t0()),
            CallPlan::Answer {
                outcome: Ok(_),
                fault: None
            }
        ));
        let call = q(&[("AppId", "app-1"), ("InstanceIds", "i-a")]);
        for _ in 0..2 {
            match m.call(Operation::DeleteInstances, &call, t0()) {
                CallPlan::Answer {
                    outcome: Err(e),
                    fault: Some("error"),
                } => {
                    assert_eq!(e.code, "Application.ChangerOrderRunning")
                }
                other => panic!("{other:?}"),
            }
        }
        assert!(matches!(
            m.call(Operation::DeleteInstances, &call, t0()),
            CallPlan::Answer { outcome: Ok(_), .. }
        ));
    }

    #[test]
    fn upgrading_window_ends() {
        let mut m = model();
        faults(&mut m, json!([{"kind": "upgrading", "seconds": 20}]));
        let call = q(&[("AppId", "app-1"), ("InstanceIds", "i-a")]);
        for at in [0, 5, 19] {
            match m.call(Operation::DeleteInstances, &call, t0() + secs(at)) {
                CallPlan::Answer {
                    outcome: Err(e), ..
                } => assert_eq!(e.code, "System.Upgrading"),
                other => panic!("{other:?}"),
            }
        }
        assert!(matches!(
            m.call(Operation::DeleteInstances, &call, t0() + secs(20)),
            CallPlan::Answer { outcome: Ok(_), .. }
        ));
    }

    #[test]
    fn committing_faults_execute_and_others_do_not() {
        let mut m = model();
        faults(
            &mut m,
            json!([
                {"kind": "http500", "commit": false},
                {"kind": "http500", "commit": true},
                {"kind": "ambiguous"},
                {"kind": "garbage", "commit": true},
                {"kind": "slow", "millis": 1500, "commit": true},
                {"kind": "slow", "millis": 10},
            ]),
        );
        let call = |i: &str| q(&[("AppId", "app-1"), ("InstanceIds", i)]);
        assert_eq!(
            m.call(Operation::DeleteInstances, &call("i-a"), t0()),
            CallPlan::InternalError { committed: None }
        );
        let CallPlan::InternalError { committed: Some(_) } =
            m.call(Operation::DeleteInstances, &call("i-a"), t0())
        else {
            panic!("http500 commit:true must execute")
        };
        let CallPlan::DropConnection { committed: Some(_) } =
            m.call(Operation::DeleteInstances, &call("i-b"), t0() + secs(2))
        else {
            panic!("ambiguous must execute")
        };
        let CallPlan::Garbage { committed: Some(_) } =
            m.call(Operation::DeleteInstances, &call("i-c"), t0() + secs(4))
        else {
            panic!("garbage commit:true must execute")
        };
        m.upsert_app(
            AppSpec {
                app_id: "app-1".into(),
                groups: vec![GroupSpec {
                    group_id: "g-1".into(),
                    group_name: None,
                    instance_ids: vec!["i-d".into()],
                }],
            },
            t0() + secs(6),
        )
        .unwrap();
        match m.call(Operation::DeleteInstances, &call("i-d"), t0() + secs(6)) {
            CallPlan::Delayed {
                delay,
                outcome: Ok(s),
            } => {
                assert_eq!(delay, Duration::from_millis(1500));
                assert!(s.committed.is_some());
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(
            m.call(Operation::DeleteInstances, &call("i-d"), t0() + secs(8)),
            CallPlan::ExecuteAfter {
                delay: Duration::from_millis(10)
            }
        );
        assert_eq!(m.ledger(t0() + secs(10)).deletions.len(), 4);
    }

    #[test]
    fn scripted_change_order_result_keeps_instances() {
        let mut m = model();
        faults(
            &mut m,
            json!([{"kind": "changeOrderResult", "status": 3, "errorMessage": "boom"}]),
        );
        let co = delete(&mut m, "i-a", t0()).unwrap().committed.unwrap();
        assert_eq!(status(&mut m, &co, t0() + secs(1)), 1);
        let data = m
            .execute(
                Operation::DescribeChangeOrder,
                &q(&[("ChangeOrderId", &co)]),
                t0() + secs(3),
            )
            .unwrap()
            .data;
        assert_eq!(data["Status"], 3);
        assert_eq!(data["ErrorMessage"], "boom");
        assert_eq!(instances(&mut m, t0() + secs(3)), ["i-a", "i-b", "i-c"]);
        let next = delete(&mut m, "i-a", t0() + secs(3))
            .unwrap()
            .committed
            .unwrap();
        assert_eq!(status(&mut m, &next, t0() + secs(5)), 2);
    }

    #[test]
    fn fault_specs_are_validated() {
        let mut m = model();
        for bad in [
            json!([{"kind": "error", "code": "X", "operation": "Nope"}]),
            json!([{"kind": "changeOrderResult", "status": 2}]),
            json!([{"kind": "http500", "times": 0}]),
            json!([{"kind": "upgrading", "seconds": -1}]),
        ] {
            let faults: Vec<FaultSpec> = serde_json::from_value(bad.clone()).unwrap();
            assert!(
                m.add_faults(
                    AppFaults {
                        app_id: "app-1".into(),
                        faults
                    },
                    t0()
                )
                .is_err(),
                "{bad}"
            );
        }
        assert!(
            serde_json::from_value::<FaultSpec>(json!({"kind": "http500", "tims": 2})).is_err()
        );
        assert!(serde_json::from_value::<FaultSpec>(json!({"kind": "meteor"})).is_err());
        let unknown_app = AppFaults {
            app_id: "nope".into(),
            faults: vec![],
        };
        assert!(m.add_faults(unknown_app, t0()).is_err());
    }

    fn signed(
        version: SignatureVersion,
        secret: &str,
        now: Timestamp,
        nonce: &str,
    ) -> (Authorization, Vec<(String, String)>) {
        let creds = Credentials::new("AK1", secret, None);
        let query = q(&[("AppId", "app-1")]);
        let input = SignInput {
            method: "GET",
            host: "127.0.0.1:9300",
            path: Operation::DescribeApplicationGroups.path(),
            query: &query,
            action: "DescribeApplicationGroups",
            api_version: "2019-05-06",
            body: b"",
            now,
            nonce,
        };
        let headers = sign::signed_headers(version, &creds, &input);
        let auth = headers
            .iter()
            .find(|(k, _)| k == "authorization")
            .map(|(_, v)| v.as_str());
        (auth::parse_authorization(auth).unwrap(), headers)
    }

    fn authenticate(
        m: &mut Model,
        signed: &(Authorization, Vec<(String, String)>),
        now: Timestamp,
    ) -> Result<(), ApiError> {
        let query = q(&[("AppId", "app-1")]);
        let req = ReceivedRequest {
            method: "GET",
            path: Operation::DescribeApplicationGroups.path(),
            query: &query,
            headers: &signed.1,
            body: b"",
        };
        m.authenticate(&signed.0, &req, now)
    }

    #[test]
    fn authentication_checks_key_date_signature_and_nonce() {
        for version in [SignatureVersion::V1, SignatureVersion::V3] {
            let mut m = model();
            let unknown = signed(version, "s3cret", t0(), "n0");
            assert_eq!(
                authenticate(&mut m, &unknown, t0()).unwrap_err().code,
                "InvalidAccessKeyId.NotFound"
            );
            m.upsert_access_key(AccessKeySpec::parse_pair("AK1:s3cret").unwrap())
                .unwrap();
            let good = signed(version, "s3cret", t0(), "n1");
            authenticate(&mut m, &good, t0() + secs(30)).unwrap();
            assert_eq!(
                authenticate(&mut m, &good, t0() + secs(31))
                    .unwrap_err()
                    .code,
                "SignatureNonceUsed"
            );
            let wrong = signed(version, "guess", t0(), "n2");
            assert_eq!(
                authenticate(&mut m, &wrong, t0()).unwrap_err().code,
                "SignatureDoesNotMatch"
            );
            // A refused request does not burn its nonce.
            authenticate(&mut m, &signed(version, "s3cret", t0(), "n2"), t0()).unwrap();
            let old = signed(version, "s3cret", t0(), "n3");
            let err = authenticate(&mut m, &old, t0() + secs(16 * 60)).unwrap_err();
            assert_eq!(err.code, "InvalidTimeStamp.Expired", "{version}");
        }
    }

    #[test]
    fn security_token_must_match_the_key() {
        let mut m = model();
        m.upsert_access_key(AccessKeySpec {
            access_key_id: "AK1".into(),
            access_key_secret: "s3cret".into(),
            security_token: Some("tok".into()),
        })
        .unwrap();
        let no_token = signed(SignatureVersion::V3, "s3cret", t0(), "n1");
        let err = authenticate(&mut m, &no_token, t0()).unwrap_err();
        assert_eq!(err.code, "InvalidSecurityToken.MismatchWithAccessKey");
        for (version, nonce) in [(SignatureVersion::V1, "n2"), (SignatureVersion::V3, "n3")] {
            let creds = Credentials::new("AK1", "s3cret", Some("tok".into()));
            let query = q(&[("AppId", "app-1")]);
            let input = SignInput {
                method: "GET",
                host: "h",
                path: Operation::DescribeApplicationGroups.path(),
                query: &query,
                action: "DescribeApplicationGroups",
                api_version: "2019-05-06",
                body: b"",
                now: t0(),
                nonce,
            };
            let headers = sign::signed_headers(version, &creds, &input);
            let auth = auth::parse_authorization(
                headers
                    .iter()
                    .find(|(k, _)| k == "authorization")
                    .map(|(_, v)| v.as_str()),
            )
            .unwrap();
            authenticate(&mut m, &(auth, headers), t0()).unwrap();
        }
    }

    #[test]
    fn reset_keeps_keys_only() {
        let mut m = model();
        m.upsert_access_key(AccessKeySpec::parse_pair("AK1:s").unwrap())
            .unwrap();
        delete(&mut m, "i-a", t0()).unwrap();
        m.reset();
        assert_eq!(m.access_key_ids(), ["AK1"]);
        assert!(m.app_view("app-1", t0()).is_none());
        assert!(m.ledger(t0()).deletions.is_empty());
    }

    #[test]
    fn access_key_debug_is_redacted() {
        let key = AccessKeySpec {
            access_key_id: "AK1".into(),
            access_key_secret: "topsecret".into(),
            security_token: Some("tok123".into()),
        };
        let shown = format!("{key:?}");
        assert!(
            shown.contains("AK1") && !shown.contains("topsecret") && !shown.contains("tok123"),
            "{shown}"
        );
    }

    fn console(m: &mut Model, spec: Value, now: Timestamp) -> Result<String, String> {
        let spec: ConsoleChangeOrderSpec = serde_json::from_value(spec).unwrap();
        m.schedule_console_change_order("app-1", &spec, now)
    }

    fn rows(m: &mut Model, now: Timestamp) -> Vec<Value> {
        let data = m
            .execute(Operation::ListChangeOrders, &q(&[("AppId", "app-1")]), now)
            .unwrap()
            .data;
        data["ChangeOrderList"].as_array().unwrap().clone()
    }

    #[test]
    fn console_change_orders_queue_behind_the_running_one_and_chain() {
        let mut m = model();
        // API deletion t0..t0+2; console deploy due at t0+1 waits until t0+2 and runs 3 s; a
        // console deletion due at t0+1 too waits for that, until t0+5, and runs 2 s.
        let api = delete(&mut m, "i-a", t0()).unwrap().committed.unwrap();
        let deploy = console(
            &mut m,
            json!({"coTypeCode": "CoDeploy", "afterSeconds": 1, "seconds": 3}),
            t0(),
        )
        .unwrap();
        let removal = console(
            &mut m,
            json!({"instanceIds": ["i-b"], "at": "2024-05-01T10:00:01Z"}),
            t0(),
        )
        .unwrap();
        // Nothing is looked at until t0+10: the model catches up in one go.
        let rows = rows(&mut m, t0() + secs(10));
        let seen: Vec<(&str, i64, &str, Option<&str>)> = rows
            .iter()
            .map(|r| {
                (
                    r["ChangeOrderId"].as_str().unwrap(),
                    r["Status"].as_i64().unwrap(),
                    r["CreateTime"].as_str().unwrap(),
                    r["FinishTime"].as_str(),
                )
            })
            .collect();
        assert_eq!(
            seen,
            [
                (
                    removal.as_str(),
                    2,
                    "2024-05-01 18:00:05",
                    Some("2024-05-01 18:00:07")
                ),
                (
                    deploy.as_str(),
                    2,
                    "2024-05-01 18:00:02",
                    Some("2024-05-01 18:00:05")
                ),
                (
                    api.as_str(),
                    2,
                    "2024-05-01 18:00:00",
                    Some("2024-05-01 18:00:02")
                ),
            ]
        );
        assert_eq!(instances(&mut m, t0() + secs(10)), ["i-c"]);
        let ledger = m.ledger(t0() + secs(10));
        let sources: Vec<ChangeOrderSource> = ledger.deletions.iter().map(|d| d.source).collect();
        assert_eq!(
            sources,
            [ChangeOrderSource::Api, ChangeOrderSource::Console]
        );
        assert_eq!(ledger.deletions[1].time, t0() + secs(5));
        assert!(
            ledger.requests.is_empty(),
            "the model records no request for the console"
        );
    }

    #[test]
    fn a_console_change_order_due_now_occupies_the_app_at_once() {
        let mut m = model();
        let co = console(&mut m, json!({"instanceIds": ["i-a"], "seconds": 0}), t0()).unwrap();
        assert_eq!(
            status(&mut m, &co, t0()),
            2,
            "zero seconds: done as it is made"
        );
        assert_eq!(instances(&mut m, t0()), ["i-b", "i-c"]);
        console(
            &mut m,
            json!({"coTypeCode": "CoRestartInstances", "approvalSeconds": 5}),
            t0(),
        )
        .unwrap();
        let err = delete(&mut m, "i-b", t0() + secs(4)).unwrap_err();
        assert_eq!(err.code, "Application.ChangerOrderRunning");
        assert_eq!(rows(&mut m, t0() + secs(4))[0]["Status"], 11);
        // Faults script API change orders only: this one ends as its spec says.
        faults(&mut m, json!([{"kind": "changeOrderResult", "status": 3}]));
        console(
            &mut m,
            json!({"coTypeCode": "CoDeploy", "seconds": 0}),
            t0() + secs(8),
        )
        .unwrap();
        assert_eq!(rows(&mut m, t0() + secs(8))[0]["Status"], 2);
        assert!(
            console(&mut m, json!({"instanceIds": ["i-a"]}), t0() + secs(8))
                .unwrap_err()
                .contains("i-a")
        );
        assert!(
            m.schedule_console_change_order(
                "nope",
                &serde_json::from_value(json!({"coTypeCode": "CoDeploy"})).unwrap(),
                t0()
            )
            .is_err()
        );
    }

    #[test]
    fn slow_start_and_result_faults_script_api_change_orders() {
        let mut m = model();
        faults(
            &mut m,
            json!([
                {"kind": "slowStart", "preparingSeconds": 3, "times": 2},
                {"kind": "changeOrderResult", "status": 6, "removedInstances": 5},
            ]),
        );
        let co = delete(&mut m, "i-a,i-b", t0()).unwrap().committed.unwrap();
        assert_eq!(
            [0, 2, 3, 4].map(|s| status(&mut m, &co, t0() + secs(s))),
            [0, 0, 1, 1]
        );
        assert_eq!(status(&mut m, &co, t0() + secs(5)), 6);
        assert_eq!(
            instances(&mut m, t0() + secs(5)),
            ["i-c"],
            "removedInstances beyond the count takes all"
        );
        let next = delete(&mut m, "i-c", t0() + secs(5))
            .unwrap()
            .committed
            .unwrap();
        assert_eq!(
            status(&mut m, &next, t0() + secs(7)),
            0,
            "the second slow start"
        );
        assert_eq!(status(&mut m, &next, t0() + secs(10)), 2);
        let view = m.app_view("app-1", t0() + secs(10)).unwrap();
        assert_eq!(view["faults"], json!([]));
    }

    #[test]
    fn repeated_deletions_name_instances_api_deletions_shared() {
        let d = |co: &str, ids: &[&str], source| DeletionRecord {
            app_id: "app-1".into(),
            change_order_id: co.into(),
            instance_ids: ids.iter().map(|i| i.to_string()).collect(),
            time: t0(),
            source,
            final_status: Some(3),
            finished_time: None,
        };
        let other_app = DeletionRecord {
            app_id: "app-2".into(),
            ..d("co-5", &["i-a"], ChangeOrderSource::Api)
        };
        let ledger = [
            d("co-1", &["i-a", "i-b"], ChangeOrderSource::Api),
            d("co-2", &["i-b"], ChangeOrderSource::Console),
            d("co-3", &["i-c"], ChangeOrderSource::Api),
            d("co-4", &["i-b", "i-a"], ChangeOrderSource::Api),
            other_app,
        ];
        let repeated = repeated_deletions(&ledger);
        let seen: Vec<(&str, Vec<&str>)> = repeated
            .iter()
            .map(|r| {
                (
                    r.instance_id.as_str(),
                    r.change_order_ids.iter().map(String::as_str).collect(),
                )
            })
            .collect();
        assert_eq!(
            seen,
            [("i-a", vec!["co-1", "co-4"]), ("i-b", vec!["co-1", "co-4"])]
        );
    }

    #[test]
    fn time_style_and_co_type_code_follow_the_config() {
        let mut m = model();
        delete(&mut m, "i-a", t0()).unwrap();
        m.config_mut().time_style = TimeStyle {
            zone: jiff::tz::Offset::UTC,
            form: crate::simulator::TimeForm::Iso8601,
        };
        m.config_mut().omit_co_type_code = true;
        let row = &rows(&mut m, t0() + secs(1))[0];
        assert_eq!(row["CreateTime"], "2024-05-01T10:00:00Z");
        assert!(row.get("CoTypeCode").is_none() && row.get("FinishTime").is_none());
        m.config_mut().deleting_instances = DeletingView::Hidden;
        assert_eq!(instances(&mut m, t0() + secs(1)), ["i-b", "i-c"]);
        assert_eq!(instances(&mut m, t0() + secs(2)), ["i-b", "i-c"]);
    }
}
