//! The `SaeInstanceDeletion` API (`sae.ops.dev/v1alpha1`).
//!
//! Names here are a public contract: users, scripts and GitOps repositories spell them. The CRD in
//! `crds/` is generated from these types (see [`crd_yaml`]); doc comments become `kubectl explain`.
//!
//! Plain types and their own small rules (defaults, pinned values, conditions): no I/O, and nothing
//! of the rest of the crate, so every other module may use them. Tests live in `crd/tests.rs`.

use std::fmt;
use std::str::FromStr;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::{CustomResource, CustomResourceExt, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Which instances of which SAE application to delete, and how patiently.
///
/// The controller sends DeleteInstances at most once per object (it repeats the request only while
/// SAE says it did not execute it), then follows the change order SAE created and reports the
/// outcome in `status`. The spec cannot be changed after creation: create a new object instead.
// Several printer columns share `type_ = "string"`; clippy reads that as a repeated attribute.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "sae.ops.dev",
    version = "v1alpha1",
    kind = "SaeInstanceDeletion",
    plural = "saeinstancedeletions",
    singular = "saeinstancedeletion",
    namespaced,
    status = "SaeInstanceDeletionStatus",
    shortname = "saedel",
    category = "sae",
    derive = "PartialEq",
    cel,
    doc = "SaeInstanceDeletion deletes chosen instances of an Alibaba Cloud SAE application, at most once, and reports the outcome in its status.",
    printcolumn(
        name = "App",
        type_ = "string",
        json_path = ".spec.appId",
        description = "SAE application id"
    ),
    printcolumn(
        name = "Instances",
        type_ = "string",
        json_path = ".spec.instanceIds",
        description = "Instances to delete"
    ),
    printcolumn(
        name = "Phase",
        type_ = "string",
        json_path = ".status.phase",
        description = "Where the deletion stands"
    ),
    printcolumn(
        name = "ChangeOrder",
        type_ = "string",
        json_path = ".status.changeOrderId",
        description = "SAE change order created by DeleteInstances"
    ),
    printcolumn(
        name = "Attempts",
        type_ = "integer",
        json_path = ".status.attempts",
        description = "DeleteInstances requests sent"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[x_kube(validation = Rule::new("self == oldSelf").message("spec is immutable"))]
#[serde(rename_all = "camelCase")]
pub struct SaeInstanceDeletionSpec {
    /// Alibaba Cloud region of the application, for example `cn-hangzhou`. Required. Selects the
    /// endpoint `sae.<regionId>.aliyuncs.com`.
    #[schemars(pattern(r"^[a-z]{2,}(-[a-z0-9]+)+$"))]
    pub region_id: String,

    /// SAE application id (the AppId shown in the SAE console). Required, 1 to 64 characters.
    #[schemars(length(min = 1, max = 64))]
    pub app_id: String,

    /// Ids of the instances to delete. Required, 1 to 100 distinct ids, each 1 to 128 characters
    /// without commas or whitespace. All of them are sent in one DeleteInstances request.
    #[schemars(
        length(min = 1, max = 100),
        inner(length(min = 1, max = 128), pattern(r"^[^,\s]+$")),
        extend("x-kubernetes-list-type" = "set")
    )]
    pub instance_ids: Vec<String>,

    /// The Secret holding the Alibaba Cloud AccessKey to call SAE with. Optional: when absent the
    /// controller uses its own credentials (from its environment).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credentials_ref: Option<CredentialsRef>,

    /// How DeleteInstances is retried while SAE refuses it without executing it (for example
    /// while another change order runs on the application). Defaults apply field by field.
    #[serde(default)]
    #[schemars(extend("default" = {}))]
    pub retry: RetryPolicy,

    /// Seconds from the object's creation within which the deletion must reach a final phase;
    /// after that it is marked Failed with reason DeadlineExceeded (a change order already running
    /// in SAE is not stopped). Default 3600, between 60 and 604800 (7 days).
    #[serde(default = "default_active_deadline_seconds")]
    #[schemars(range(min = 60, max = 604800))]
    pub active_deadline_seconds: i32,

    /// Whether to follow SAE's change order until it finishes before reporting Succeeded. When
    /// false, the object succeeds as soon as SAE accepts the request. Default true.
    #[serde(default = "default_true")]
    pub wait_for_completion: bool,

    /// When true, only check that the application exists and has every listed instance, report
    /// the result, and never send DeleteInstances. Default false.
    #[serde(default)]
    pub dry_run: bool,
}

/// A reference to a Secret in the object's own namespace.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CredentialsRef {
    /// Name of a Secret in the same namespace as this object, with keys `accessKeyId` and
    /// `accessKeySecret`, and `securityToken` for STS credentials. Read again on every attempt,
    /// so fixing or rotating the Secret takes effect without recreating this object.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
}

/// Retry policy for DeleteInstances requests SAE refused without executing them.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RetryPolicy {
    /// Most DeleteInstances requests to send, refused ones included. Default 10, between 1 and
    /// 100. When every one was refused, the object fails with reason RetriesExhausted. A request
    /// that never reached SAE (connection refused, DNS, TLS handshake: SAE is unreachable) is not
    /// counted: it is tried again with backoff until activeDeadlineSeconds (reason SaeUnreachable).
    #[serde(default = "default_max_attempts")]
    #[schemars(range(min = 1, max = 100))]
    pub max_attempts: i32,

    /// Wait in seconds before the second request; each further wait doubles, up to
    /// maxDelaySeconds, and is randomised between half and all of that. Default 5, between 1 and
    /// 3600. A longer wait requested by SAE (throttling) is honoured.
    #[serde(default = "default_initial_delay_seconds")]
    #[schemars(range(min = 1, max = 3600))]
    pub initial_delay_seconds: i32,

    /// Longest wait in seconds between two requests. Default 300, between 1 and 86400.
    #[serde(default = "default_max_delay_seconds")]
    #[schemars(range(min = 1, max = 86400))]
    pub max_delay_seconds: i32,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: default_max_attempts(),
            initial_delay_seconds: default_initial_delay_seconds(),
            max_delay_seconds: default_max_delay_seconds(),
        }
    }
}

fn default_true() -> bool {
    true
}
fn default_active_deadline_seconds() -> i32 {
    3600
}
fn default_max_attempts() -> i32 {
    10
}
fn default_initial_delay_seconds() -> i32 {
    5
}
fn default_max_delay_seconds() -> i32 {
    300
}

/// What the controller has done and seen. Written only by the controller.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SaeInstanceDeletionStatus {
    /// Where the deletion stands (see [`Phase`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<Phase>,

    /// The metadata.generation this status was written for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,

    /// DeleteInstances requests sent so far (dry run: checks made), refused ones included;
    /// requests that could not reach SAE are not counted (see saeUnreachableSince).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attempts: Option<i32>,

    /// The instance ids recorded by the first attempt. Every later attempt sends exactly these,
    /// whatever the spec says by then.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instance_ids: Option<Vec<String>>,

    /// The spec.appId recorded by the first attempt (dry run: check). Every later attempt, and
    /// every look at SAE for the outcome of one, uses this app, whatever the spec says by then.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub app_id: Option<String>,

    /// The spec.regionId recorded by the first attempt (dry run: check). Every later attempt, and
    /// every look at SAE for the outcome of one, uses this region, whatever the spec says by then.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region_id: Option<String>,

    /// The spec.credentialsRef recorded by the first attempt (dry run: check): the name of the
    /// Secret every later attempt, and every look at SAE for the outcome of one, reads its
    /// AccessKey from, whatever the spec says by then (the Secret's contents are read fresh each
    /// time). Absent although appId is set: the first attempt used the controller's own
    /// credentials, and so do the later ones.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credentials_ref: Option<CredentialsRef>,

    /// The spec.dryRun recorded by the first attempt (dry run: check). Every later attempt
    /// follows it, whatever the spec says by then: an object that started as a dry run never
    /// sends DeleteInstances.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dry_run: Option<bool>,

    /// Id of the change order SAE created for the deletion; look it up in the SAE console.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub change_order_id: Option<String>,

    /// RequestId of the last SAE answer that mattered; quote it to Alibaba Cloud support.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,

    /// TraceId SAE returned with the accepted DeleteInstances request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trace_id: Option<String>,

    /// Last seen status of the change order: Preparing, Executing, Succeeded, Failed, Terminated,
    /// WaitingManualRelease, WaitingAutoRelease, SystemFailure, PendingApproval, Approved, or
    /// Unknown(N) for a value SAE has not documented.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub change_order_status: Option<String>,

    /// SAE error code of the last refused or failed request, for example
    /// Application.ChangerOrderRunning.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_code: Option<String>,

    /// Human-readable explanation of the current phase and what to do about it, if anything.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,

    /// When the first DeleteInstances request (dry run: check) was made.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_time: Option<Time>,

    /// When the last DeleteInstances request (dry run: check) was made.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_attempt_time: Option<Time>,

    /// Not before this time will the next request be sent (phase Retrying).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_attempt_time: Option<Time>,

    /// When the object reached Succeeded or Failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completion_time: Option<Time>,

    /// Since when SAE has been unreachable for this object: its requests could not be sent at all
    /// (connection refused, DNS, TLS handshake), so SAE cannot have seen them. Such requests do not
    /// count against retry.maxAttempts; they are tried again with backoff (reason
    /// SaeUnreachable) until activeDeadlineSeconds. Removed as soon as SAE answers anything; kept
    /// on an object that reached its deadline while SAE was still unreachable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sae_unreachable_since: Option<Time>,

    /// The zone SAE writes change-order times in for this object's region, learned from SAE's
    /// own answer about this object's change order (`+08:00`-style, or `named` when SAE's times
    /// carry their zone). The controller reads it back from every object after a restart, so
    /// that a lost answer is searched for in the right window; it never guesses a zone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub create_time_zone: Option<String>,

    /// Ready (True once Succeeded), Reconciling (True until a final phase), Stalled (True when
    /// Failed). All three carry the current reason and message.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,
}

/// The spec fields every attempt depends on, as the object's attempts use them: the values the
/// first attempt recorded in the status, else (nothing sent or checked yet) the spec's. Where an
/// API server does not enforce the spec's immutability (no CEL before Kubernetes 1.25), an edit
/// made after the first attempt must not redirect the later ones: ids recorded for one app would
/// be sent to another, or a dry run would turn into a real deletion. Decisions, SAE calls, Secret
/// reads and the per-app queue all read these fields from here, never from `spec`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Pinned<'a> {
    pub region_id: &'a str,
    pub app_id: &'a str,
    pub instance_ids: &'a [String],
    /// None: the controller's own credentials.
    pub credentials_ref: Option<&'a CredentialsRef>,
    pub dry_run: bool,
}

impl SaeInstanceDeletion {
    /// The values every attempt of this object uses; see [`Pinned`].
    pub fn pinned(&self) -> Pinned<'_> {
        let spec = &self.spec;
        let Some(status) = &self.status else {
            return Pinned {
                region_id: &spec.region_id,
                app_id: &spec.app_id,
                instance_ids: &spec.instance_ids,
                credentials_ref: spec.credentials_ref.as_ref(),
                dry_run: spec.dry_run,
            };
        };
        // A status written before these fields existed records only instanceIds; an absent
        // credentialsRef means "own credentials" only next to a recorded appId.
        let credentials_ref = if status.app_id.is_some() {
            status.credentials_ref.as_ref()
        } else {
            spec.credentials_ref.as_ref()
        };
        Pinned {
            region_id: status.region_id.as_deref().unwrap_or(&spec.region_id),
            app_id: status.app_id.as_deref().unwrap_or(&spec.app_id),
            instance_ids: status.instance_ids.as_deref().unwrap_or(&spec.instance_ids),
            credentials_ref,
            dry_run: status.dry_run.unwrap_or(spec.dry_run),
        }
    }
}

impl Pinned<'_> {
    /// Records these values in `status`, where every later attempt finds them. The first attempt
    /// does this; later ones write the same values again.
    pub fn record(&self, status: &mut SaeInstanceDeletionStatus) {
        status.instance_ids = Some(self.instance_ids.to_vec());
        status.app_id = Some(self.app_id.to_string());
        status.region_id = Some(self.region_id.to_string());
        status.credentials_ref = self.credentials_ref.cloned();
        status.dry_run = Some(self.dry_run);
    }
}

impl SaeInstanceDeletionStatus {
    /// Succeeded or Failed: the controller never touches the object again.
    pub fn is_terminal(&self) -> bool {
        self.phase.is_some_and(Phase::is_terminal)
    }

    pub fn condition(&self, type_: &str) -> Option<&Condition> {
        self.conditions.iter().find(|c| c.type_ == type_)
    }

    /// The current reason, which every condition carries.
    pub fn reason(&self) -> Option<&str> {
        self.condition(CONDITION_RECONCILING)
            .map(|c| c.reason.as_str())
    }

    /// DeleteInstances requests sent so far (0 when none).
    pub fn attempts(&self) -> i32 {
        self.attempts.unwrap_or(0)
    }

    /// Unfinished, and its last request could not reach SAE (`saeUnreachableSince`): what the
    /// `sae_unreachable_objects` gauge counts.
    pub fn waits_on_unreachable_sae(&self) -> bool {
        !self.is_terminal() && self.sae_unreachable_since.is_some()
    }
}

/// Where the deletion stands: Pending (nothing sent yet), Submitting (a DeleteInstances request
/// is being sent), Retrying (SAE refused it without executing it, or could not be reached;
/// another will be sent),
/// InProgress (SAE accepted it; its change order is running), Succeeded or Failed (final; see the
/// conditions' reason).
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, JsonSchema)]
pub enum Phase {
    /// No request is in flight: nothing has been sent yet (waiting for credentials, or a dry-run
    /// check), or the next attempt waits for the application's turn (reason
    /// WaitingForApplication); any earlier attempt was refused without being executed.
    Pending,
    /// A DeleteInstances request is being sent; its outcome is not recorded yet. With reason
    /// OutcomeUnknown its answer was lost, and SAE's change orders and instances are being checked
    /// to learn whether it was executed; it is not sent again meanwhile.
    Submitting,
    /// SAE refused the last request without executing it, or (reason SaeUnreachable) the request
    /// could not reach SAE at all; another will be sent.
    Retrying,
    /// SAE accepted the request; its change order is being followed.
    InProgress,
    /// Final: the instances were deleted (or, for a dry run, would be deletable), or were already
    /// gone before this object's request (reason AlreadyDeleted).
    Succeeded,
    /// Final: the deletion failed, was refused, or its outcome is unknown; see the reason.
    Failed,
}

impl Phase {
    pub fn is_terminal(self) -> bool {
        matches!(self, Phase::Succeeded | Phase::Failed)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Pending => "Pending",
            Phase::Submitting => "Submitting",
            Phase::Retrying => "Retrying",
            Phase::InProgress => "InProgress",
            Phase::Succeeded => "Succeeded",
            Phase::Failed => "Failed",
        }
    }
}

impl fmt::Display for Phase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Condition types the controller maintains (kstatus conventions).
pub const CONDITION_READY: &str = "Ready";
pub const CONDITION_RECONCILING: &str = "Reconciling";
pub const CONDITION_STALLED: &str = "Stalled";

/// Event reason for an edit of a field the first attempt recorded (instanceIds, appId, regionId,
/// credentialsRef, dryRun) made after that attempt (clusters without CEL).
pub const EVENT_SPEC_CHANGE_IGNORED: &str = "SpecChangeIgnored";

/// Why the object is in its phase; used as condition and event reason.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Reason {
    Pending,
    Submitting,
    Retrying,
    WaitingForChangeOrder,
    /// Another object holds the application (SAE runs one change order per application), or an
    /// older one waits for it first.
    WaitingForApplication,
    Succeeded,
    /// None of the instances existed any more, and no request of this object deleted them.
    AlreadyDeleted,
    DryRunSucceeded,
    ApplicationNotFound,
    InvalidParameter,
    QuotaExceeded,
    RetriesExhausted,
    DeadlineExceeded,
    ChangeOrderFailed,
    CredentialsNotFound,
    AuthenticationFailed,
    /// The answer to a DeleteInstances request was lost. In phase Submitting SAE is being checked
    /// for its traces; in phase Failed the deadline came first and a human must check.
    OutcomeUnknown,
    /// Any other SAE error code that says the request will never be accepted.
    Rejected,
    /// The last request could not reach SAE (connection refused, DNS, TLS handshake), so SAE
    /// cannot have seen it: it is tried again with backoff until the deadline and does not count
    /// against retry.maxAttempts. `status.saeUnreachableSince` says since when.
    SaeUnreachable,
    /// No SaeDeletionPolicy admits the object (namespace, app, region, credentials), it names more
    /// instances than an admitting policy allows in one object, or a policy that may apply to it
    /// is invalid. Nothing is sent; re-checked when policies or namespaces change.
    NotPermitted,
    /// An admitting policy's minRunningInstances or maxInstancesPerHour would be broken by this
    /// deletion now. Nothing is sent; re-checked until the deadline.
    DisruptionBudget,
    /// An admitting policy's maintenance windows are all closed. Nothing is sent; the object is
    /// looked at again when a window opens.
    OutsideMaintenanceWindow,
}

impl Reason {
    /// The reasons a deletion policy refuses with (phase Pending; Failed at the deadline).
    pub fn is_policy_refusal(self) -> bool {
        matches!(
            self,
            Reason::NotPermitted | Reason::DisruptionBudget | Reason::OutsideMaintenanceWindow
        )
    }
}

/// How the status names each reason a deletion policy refuses for ([`crate::policy`]).
impl From<crate::policy::RefusalReason> for Reason {
    fn from(reason: crate::policy::RefusalReason) -> Self {
        use crate::policy::RefusalReason;
        match reason {
            RefusalReason::NotPermitted => Reason::NotPermitted,
            RefusalReason::DisruptionBudget => Reason::DisruptionBudget,
            RefusalReason::OutsideMaintenanceWindow => Reason::OutsideMaintenanceWindow,
        }
    }
}

/// How the status names each kind of refusal SAE's codes mean ([`crate::sae::codes`]).
impl From<crate::sae::codes::Refusal> for Reason {
    fn from(refusal: crate::sae::codes::Refusal) -> Self {
        use crate::sae::codes::Refusal;
        match refusal {
            Refusal::ApplicationNotFound => Reason::ApplicationNotFound,
            Refusal::InvalidParameter => Reason::InvalidParameter,
            Refusal::QuotaExceeded => Reason::QuotaExceeded,
            Refusal::AuthenticationFailed => Reason::AuthenticationFailed,
            Refusal::Rejected => Reason::Rejected,
        }
    }
}

impl Reason {
    pub const ALL: [Reason; 22] = [
        Reason::Pending,
        Reason::Submitting,
        Reason::Retrying,
        Reason::WaitingForChangeOrder,
        Reason::WaitingForApplication,
        Reason::Succeeded,
        Reason::AlreadyDeleted,
        Reason::DryRunSucceeded,
        Reason::ApplicationNotFound,
        Reason::InvalidParameter,
        Reason::QuotaExceeded,
        Reason::RetriesExhausted,
        Reason::DeadlineExceeded,
        Reason::ChangeOrderFailed,
        Reason::CredentialsNotFound,
        Reason::AuthenticationFailed,
        Reason::OutcomeUnknown,
        Reason::Rejected,
        Reason::SaeUnreachable,
        Reason::NotPermitted,
        Reason::DisruptionBudget,
        Reason::OutsideMaintenanceWindow,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Pending => "Pending",
            Reason::Submitting => "Submitting",
            Reason::Retrying => "Retrying",
            Reason::WaitingForChangeOrder => "WaitingForChangeOrder",
            Reason::WaitingForApplication => "WaitingForApplication",
            Reason::Succeeded => "Succeeded",
            Reason::AlreadyDeleted => "AlreadyDeleted",
            Reason::DryRunSucceeded => "DryRunSucceeded",
            Reason::ApplicationNotFound => "ApplicationNotFound",
            Reason::InvalidParameter => "InvalidParameter",
            Reason::QuotaExceeded => "QuotaExceeded",
            Reason::RetriesExhausted => "RetriesExhausted",
            Reason::DeadlineExceeded => "DeadlineExceeded",
            Reason::ChangeOrderFailed => "ChangeOrderFailed",
            Reason::CredentialsNotFound => "CredentialsNotFound",
            Reason::AuthenticationFailed => "AuthenticationFailed",
            Reason::OutcomeUnknown => "OutcomeUnknown",
            Reason::Rejected => "Rejected",
            Reason::SaeUnreachable => "SaeUnreachable",
            Reason::NotPermitted => "NotPermitted",
            Reason::DisruptionBudget => "DisruptionBudget",
            Reason::OutsideMaintenanceWindow => "OutsideMaintenanceWindow",
        }
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Reason {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Reason::ALL
            .into_iter()
            .find(|r| r.as_str() == s)
            .ok_or_else(|| format!("unknown reason {s:?}"))
    }
}

/// Path of the generated CRD, relative to the repository root.
pub const CRD_FILE: &str = "crds/saeinstancedeletions.sae.ops.dev.yaml";

/// The CRD as YAML, exactly as stored in [`CRD_FILE`] (`sae-controller crd` prints it).
pub fn crd_yaml() -> String {
    let body = serde_saphyr::to_string(&SaeInstanceDeletion::crd())
        .expect("a CRD always serializes to YAML");
    format!(
        "# Generated from src/crd.rs; do not edit. Regenerate with `sae-controller crd > {CRD_FILE}`\n\
         # (or `UPDATE_CRDS=1 cargo test --lib crd::`).\n{body}"
    )
}

#[cfg(test)]
mod tests;
