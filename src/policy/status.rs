//! The status the controller writes on a policy: whether it applies it, and if not, why.

use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

use super::decide::validate;
use super::types::{
    POLICY_CONDITION_READY, POLICY_REASON_INVALID, POLICY_REASON_VALID, SaeDeletionPolicy,
    SaeDeletionPolicyStatus,
};

/// The status `policy` should have at `now`: Ready True/Valid, or False/Invalid with what is
/// wrong. The transition time is kept while the condition's status stays the same, so writing
/// this again changes nothing (the caller writes only when it differs from the current status).
pub fn policy_status(policy: &SaeDeletionPolicy, now: Timestamp) -> SaeDeletionPolicyStatus {
    let (status, reason, message) = match validate(policy) {
        Ok(()) => (
            "True",
            POLICY_REASON_VALID,
            "the controller applies this policy".to_string(),
        ),
        Err(why) => (
            "False",
            POLICY_REASON_INVALID,
            format!("this policy admits nothing until fixed: {why}"),
        ),
    };
    let previous = policy.status.as_ref().and_then(|s| {
        s.conditions
            .iter()
            .find(|c| c.type_ == POLICY_CONDITION_READY)
    });
    let last_transition_time = previous
        .filter(|c| c.status == status)
        .map_or(Time(now), |c| c.last_transition_time.clone());
    SaeDeletionPolicyStatus {
        observed_generation: policy.metadata.generation,
        conditions: vec![Condition {
            type_: POLICY_CONDITION_READY.into(),
            status: status.into(),
            reason: reason.into(),
            message,
            last_transition_time,
            observed_generation: policy.metadata.generation,
        }],
    }
}

/// Whether the controller should write [`policy_status`] on `policy`: only when its status has
/// no Ready condition, or was written for another generation than the policy's. A status already
/// written for this generation is left alone even when this controller would say something else:
/// two installs (different versions, or one confined to a namespace beside a cluster-wide one)
/// that disagree would otherwise patch each other's status forever, each patch waking the other's
/// watch. The first word on a generation stands; a spec edit asks again.
pub fn policy_status_needs_write(policy: &SaeDeletionPolicy) -> bool {
    let Some(status) = &policy.status else {
        return true;
    };
    let has_ready = status
        .conditions
        .iter()
        .any(|c| c.type_ == POLICY_CONDITION_READY);
    !has_ready || status.observed_generation != policy.metadata.generation
}
