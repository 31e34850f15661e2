//! The `SaeDeletionPolicy` API (`sae.ops.dev/v1alpha1`, cluster-scoped).
//!
//! Names here are a public contract, like those of [`crate::crd`]: cluster administrators write
//! them. Doc comments become `kubectl explain saedeletionpolicy.spec`; the CRD in
//! [`POLICY_CRD_FILE`] is generated from these types and a test keeps the two equal.
//!
//! The OpenAPI schema says what it can (minimums, the `HH:MM` pattern, the enums, non-empty
//! lists): API servers as old as 1.20 enforce that, and they have no CEL. What a schema cannot
//! say (a time zone that does not exist, a window that ends before it starts, a malformed
//! selector) is checked by [`super::validate`], reported in the policy's status, and makes the
//! policy admit nothing.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, LabelSelector};
use kube::{CustomResource, CustomResourceExt};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Which SaeInstanceDeletion objects may delete instances, and within which limits.
///
/// While no policy exists, every object is admitted (unless the controller runs with
/// --require-policy). Once one exists, an object is sent to SAE only if at least one valid policy
/// admits it (every scope field the policy sets matches), and then the limits of every policy that
/// admits it hold. A refused object waits in phase Pending (reason NotPermitted, DisruptionBudget
/// or OutsideMaintenanceWindow) and never counts an attempt. A policy the controller finds invalid
/// (see status.conditions) admits nothing.
// Several printer columns share `type_ = "string"`; clippy reads that as a repeated attribute.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[kube(
    group = "sae.ops.dev",
    version = "v1alpha1",
    kind = "SaeDeletionPolicy",
    plural = "saedeletionpolicies",
    singular = "saedeletionpolicy",
    status = "SaeDeletionPolicyStatus",
    shortname = "saepol",
    category = "sae",
    derive = "PartialEq",
    doc = "SaeDeletionPolicy says which SaeInstanceDeletion objects may delete SAE instances (namespaces, apps, regions, credentials) and within which limits (size, instances kept running, instances per hour, maintenance windows).",
    printcolumn(
        name = "Namespaces",
        type_ = "string",
        json_path = ".spec.namespaces",
        description = "Namespaces admitted by name (namespaceSelector may admit more)"
    ),
    printcolumn(
        name = "Apps",
        type_ = "string",
        json_path = ".spec.appIds",
        description = "SAE application ids admitted; empty: any"
    ),
    printcolumn(
        name = "Regions",
        type_ = "string",
        json_path = ".spec.regionIds",
        description = "Region ids admitted; empty: any"
    ),
    printcolumn(
        name = "Credentials",
        type_ = "string",
        json_path = ".spec.credentials",
        description = "Any, SecretOnly or ControllerOnly"
    ),
    printcolumn(
        name = "PerDeletion",
        type_ = "integer",
        json_path = ".spec.maxInstancesPerDeletion",
        description = "Most instance ids one object may name"
    ),
    printcolumn(
        name = "MinRunning",
        type_ = "integer",
        json_path = ".spec.minRunningInstances",
        description = "Running instances the app keeps after a deletion"
    ),
    printcolumn(
        name = "PerHour",
        type_ = "integer",
        json_path = ".spec.maxInstancesPerHour",
        description = "Most instances deleted on one app in any 60 minutes"
    ),
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].status",
        description = "False: the policy is invalid and admits nothing (see its message)"
    ),
    printcolumn(
        name = "Selector",
        type_ = "string",
        json_path = ".spec.namespaceSelector",
        description = "Namespaces admitted by label",
        priority = 1
    ),
    printcolumn(
        name = "Windows",
        type_ = "string",
        json_path = ".spec.windows",
        description = "Maintenance windows a send must start in",
        priority = 1
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct SaeDeletionPolicySpec {
    /// Names of the namespaces whose SaeInstanceDeletion objects this policy admits. When
    /// namespaceSelector is set too, a namespace matching either one is admitted. Unset (and no
    /// namespaceSelector): every namespace. At least one name when set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(
        length(min = 1),
        inner(length(min = 1, max = 63)),
        extend("x-kubernetes-list-type" = "set")
    )]
    pub namespaces: Option<Vec<String>>,

    /// Labels of the Namespace objects whose SaeInstanceDeletion objects this policy admits
    /// (matchLabels and matchExpressions with In, NotIn, Exists, DoesNotExist, as everywhere in
    /// Kubernetes; an empty selector matches every namespace). When namespaces is set too, a
    /// namespace matching either one is admitted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace_selector: Option<LabelSelector>,

    /// SAE application ids this policy admits. Unset: every application. At least one when set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(
        length(min = 1),
        inner(length(min = 1, max = 64)),
        extend("x-kubernetes-list-type" = "set")
    )]
    pub app_ids: Option<Vec<String>>,

    /// Alibaba Cloud region ids this policy admits, for example `cn-hangzhou`. Unset: every
    /// region. At least one when set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(
        length(min = 1),
        inner(pattern(r"^[a-z]{2,}(-[a-z0-9]+)+$")),
        extend("x-kubernetes-list-type" = "set")
    )]
    pub region_ids: Option<Vec<String>>,

    /// Which credentials an admitted object may use: Any (default), SecretOnly (the object must
    /// name spec.credentialsRef, so it deletes with its own namespace's AccessKey) or
    /// ControllerOnly (it must not: it deletes with the controller's own credentials).
    #[serde(default)]
    #[schemars(extend("default" = "Any"))]
    pub credentials: CredentialsMode,

    /// Most instance ids one SaeInstanceDeletion object may name. At least 1. Unset: no limit
    /// beyond the object's own (100).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 2147483647))]
    pub max_instances_per_deletion: Option<i32>,

    /// Instances of the application that must still be Running after the deletion, counted from
    /// SAE's instance list right before each send (every instance the object names counts as
    /// one that stops running). At least 0. Unset: no such limit (and no extra SAE call).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 2147483647))]
    pub min_running_instances: Option<i32>,

    /// Most instances of one application this controller deletes in any 60 minutes, counting
    /// every request SAE accepted (or may have accepted: an answer that was lost) in that time,
    /// finished or not, including those of objects deleted since. At least 1. Unset: no limit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 2147483647))]
    pub max_instances_per_hour: Option<i32>,

    /// Maintenance windows: a DeleteInstances request starts only inside one of them (it may
    /// finish after the window closes). Unset: any time. At least one when set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1))]
    pub windows: Option<Vec<MaintenanceWindow>>,
}

/// Which credentials an admitted object may use.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, Hash, JsonSchema)]
pub enum CredentialsMode {
    /// The object may name a Secret or use the controller's own credentials.
    #[default]
    Any,
    /// The object must name spec.credentialsRef (a Secret in its namespace).
    SecretOnly,
    /// The object must not name spec.credentialsRef: the controller's own credentials are used.
    ControllerOnly,
}

/// Pattern of a window's start: `HH:MM`, 00:00 to 23:59.
pub const START_PATTERN: &str = r"^([01][0-9]|2[0-3]):[0-5][0-9]$";
/// Pattern of a window's end: `HH:MM`, 00:01 to 24:00 (24:00 is the end of the day).
pub const END_PATTERN: &str = r"^(([01][0-9]|2[0-3]):[0-5][0-9]|24:00)$";

/// Days and wall-clock times, in one time zone, in which a request may start.
///
/// A window is read on the zone's wall clock: from start (included) to end (excluded) on each of
/// its days. start must be before end, so a window never crosses midnight: write one that does
/// as two windows, e.g. Fri 22:00-24:00 and Sat 00:00-02:00. On a day the clocks change, the
/// window lasts as long as the wall clock says (a window inside the skipped hour does not open
/// that day; one covering the repeated hour lasts an hour longer).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct MaintenanceWindow {
    /// Days of the week, in timeZone, on which the window opens: Mon, Tue, Wed, Thu, Fri, Sat,
    /// Sun. At least one.
    #[schemars(length(min = 1, max = 7), extend("x-kubernetes-list-type" = "set"))]
    pub days: Vec<Day>,

    /// Wall-clock time in timeZone at which the window opens, `HH:MM` from 00:00 to 23:59.
    #[schemars(pattern(START_PATTERN))]
    pub start: String,

    /// Wall-clock time in timeZone at which the window closes, `HH:MM` up to 24:00 (the end of
    /// the day). Must be after start: a window across midnight is written as two windows.
    #[schemars(pattern(END_PATTERN))]
    pub end: String,

    /// IANA time zone the days and times are read in, for example `Asia/Shanghai`,
    /// `America/New_York` or `UTC`. A name the controller does not know makes the policy invalid.
    #[schemars(length(min = 1))]
    pub time_zone: String,
}

/// A day of the week.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, JsonSchema)]
pub enum Day {
    Mon,
    Tue,
    Wed,
    Thu,
    Fri,
    Sat,
    Sun,
}

impl Day {
    pub fn weekday(self) -> jiff::civil::Weekday {
        use jiff::civil::Weekday;
        match self {
            Day::Mon => Weekday::Monday,
            Day::Tue => Weekday::Tuesday,
            Day::Wed => Weekday::Wednesday,
            Day::Thu => Weekday::Thursday,
            Day::Fri => Weekday::Friday,
            Day::Sat => Weekday::Saturday,
            Day::Sun => Weekday::Sunday,
        }
    }
}

/// What the controller found of the policy. Written only by the controller.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SaeDeletionPolicyStatus {
    /// The metadata.generation this status was written for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,

    /// Ready: True (reason Valid) when the controller applies the policy; False (reason Invalid)
    /// when it cannot, with the message saying what is wrong. An invalid policy admits nothing.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,
}

/// Condition type of a policy's status.
pub const POLICY_CONDITION_READY: &str = "Ready";
/// Reason of the Ready condition of a policy the controller applies.
pub const POLICY_REASON_VALID: &str = "Valid";
/// Reason of the Ready condition (False) of a policy the controller cannot apply.
pub const POLICY_REASON_INVALID: &str = "Invalid";

/// Path of the generated policy CRD, relative to the repository root.
pub const POLICY_CRD_FILE: &str = "crds/saedeletionpolicies.sae.ops.dev.yaml";

/// The policy CRD as YAML, exactly as stored in [`POLICY_CRD_FILE`].
pub fn policy_crd_yaml() -> String {
    let body = serde_saphyr::to_string(&SaeDeletionPolicy::crd())
        .expect("a CRD always serializes to YAML");
    format!(
        "# Generated from src/policy/types.rs; do not edit. Regenerate with\n\
         # `UPDATE_CRDS=1 cargo test --lib policy::`.\n{body}"
    )
}
