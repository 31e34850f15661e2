//! Objects in given states for the plugin's unit tests (compiled for tests only).

use jiff::{SignedDuration, Timestamp};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

use crate::crd::{Phase, Reason, SaeInstanceDeletion, SaeInstanceDeletionStatus};
use crate::fixtures::{object, t0};

/// `t0` plus `secs` seconds.
pub fn at(secs: i64) -> Timestamp {
    t0() + SignedDuration::from_secs(secs)
}

/// `ns/name` on app-1, created `created` seconds after t0, with no status.
pub fn fresh(name: &str, created: i64) -> SaeInstanceDeletion {
    object(name, "ns", at(created))
}

/// `obj` with phase, reason and message, and whatever `edit` adds to the status.
pub fn with_status(
    mut obj: SaeInstanceDeletion,
    phase: Phase,
    reason: Reason,
    message: &str,
    edit: impl FnOnce(&mut SaeInstanceDeletionStatus),
) -> SaeInstanceDeletion {
    let mut status = obj.status.take().unwrap_or_default();
    status.phase = Some(phase);
    status.message = Some(message.into());
    status.conditions = vec![Condition {
        type_: crate::crd::CONDITION_RECONCILING.into(),
        status: if phase.is_terminal() { "False" } else { "True" }.into(),
        reason: reason.as_str().into(),
        message: message.into(),
        observed_generation: None,
        last_transition_time: Time(t0()),
    }];
    edit(&mut status);
    obj.status = Some(status);
    obj
}

pub fn time(secs: i64) -> Option<Time> {
    Some(Time(at(secs)))
}
