//! Guard rails: `SaeDeletionPolicy` objects say which SaeInstanceDeletion objects may delete, and
//! within which limits (issue #18).
//!
//! - `types`: the cluster-scoped CRD (`saedeletionpolicies.sae.ops.dev`, short name `saepol`).
//! - `decide`: [`PolicySet`] checks the policies once, then [`PolicySet::decide`] says, purely,
//!   whether one object may send now: [`Verdict::Admitted`], [`Verdict::NeedRunningCount`] (read
//!   SAE's instance list, decide again) or [`Verdict::Refused`] with the status reason, the
//!   policy, a message naming the limit and, for windows, when to decide again.
//! - `window`: maintenance windows on a zone's wall clock.
//! - `budget`: instances an app lost to this controller in the last 60 minutes, from statuses.
//! - `status`: [`policy_status`], the Ready condition the controller writes on each policy.
//!
//! # Rules chosen here (documented for users in the CRD's field docs)
//!
//! - No policy: everything is admitted, unless `--require-policy`. Any policy, valid or not:
//!   an object needs a valid policy that admits it, and every admitting policy's limits hold.
//! - Scope fields combine with AND; `namespaces` and `namespaceSelector` with OR between them.
//!   A set list must not be empty (the schema says minItems 1). An empty `namespaceSelector`
//!   (`{}`) matches every namespace, as everywhere in Kubernetes. When the namespace's labels are
//!   unknown, no selector matches it; the controller does not decide then: while any policy
//!   (valid or not) sets `namespaceSelector`, an object whose namespace is not in its cache is
//!   refused NotPermitted and checked again in a few seconds (deciding without the labels could
//!   skip a policy's limits, which fails open).
//! - Invalid policies (unknown zone, start not before end, malformed selector, empty list) admit
//!   nothing, and — to fail closed — refuse every object their scope may cover: a broken policy
//!   may have been meant to restrict, so it is not silently skipped. One whose scope clearly
//!   excludes the object does not get in its way.
//! - Windows: `[start, end)` on the zone's wall clock; `start < end`, `end` may be `24:00`; a
//!   window across midnight is two windows (Fri 22:00-24:00 + Sat 00:00-02:00). This keeps "which
//!   day does the window belong to" unambiguous and makes "start after end" a plain error, as the
//!   issue asks. Only the start of a send must be inside.
//! - minRunningInstances: only instances SAE lists as `Running` count (Pending, Starting, Failed,
//!   Terminating do not serve), and every named id counts as one that stops running
//!   (`running - ids`), which may over-count when some named instance is not Running: it errs on
//!   the safe side.
//!
//! # What the controller keeps for maxInstancesPerHour
//!
//! The count comes from [`deletion_record`] of every object that may have deleted in the hour.
//! Live objects are in the cache. `controller/finished.rs` (`Finished`) keeps a
//! [`DeletionRecord`] per uid of every object seen with one — live (as its events pass), finished
//! or deleted — for [`BUDGET_PERIOD`] after its `at`, so objects that leave the cache (finished,
//! deleted, or dropped by a watch re-list without a Delete event) still count; the live object's
//! status wins per uid. After a restart or failover the records of finished objects come back
//! from their statuses (the initial list); those of objects deleted before it do not (memory
//! only; docs/guarantees.md lists this residual).

mod budget;
mod decide;
mod status;
mod types;
mod window;

pub use budget::{
    BUDGET_PERIOD, DeletionRecord, count_recent, count_recent_objects, deletion_record,
};
pub use decide::{Facts, PolicySet, Refusal, RefusalReason, Subject, Verdict, validate};
pub use status::{policy_status, policy_status_needs_write};
pub use types::{
    CredentialsMode, Day, END_PATTERN, MaintenanceWindow, POLICY_CONDITION_READY, POLICY_CRD_FILE,
    POLICY_REASON_INVALID, POLICY_REASON_VALID, START_PATTERN, SaeDeletionPolicy,
    SaeDeletionPolicySpec, SaeDeletionPolicyStatus, policy_crd_yaml,
};

#[cfg(test)]
mod tests;
