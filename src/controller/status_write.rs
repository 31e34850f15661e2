//! Writing to the API server: the status PUT guarded by the resourceVersion it was decided from
//! ([`put_status`]), what the controller does after each write ([`write_status_and_track`]: the
//! app claim, waking the next object, logs, the terminal metric), and events ([`publish`]).
//!
//! No SAE calls, and no decisions: the status written is the one `decide` produced.

use std::time::Duration;

use backon::{ExponentialBuilder, Retryable as _};
use jiff::Timestamp;
use kube::api::{Api, PostParams};
use kube::runtime::events::{Event as KubeEvent, EventType};
use kube::{Resource, ResourceExt};
use tracing::{info, warn};

use super::{Context, Error};
use crate::crd::{Phase, Reason, SaeInstanceDeletion, SaeInstanceDeletionStatus};
use crate::decide::{Event, holds_app, object_key};

pub(super) enum Written {
    Stored(Box<SaeInstanceDeletion>),
    /// Someone changed the object since we read it; the decision is void.
    Conflict,
}

/// PUTs the status with the resourceVersion it was decided from. Transient API errors are retried
/// a few times (backon); a 409 is returned as `Conflict`, never retried.
pub(super) async fn put_status(ctx: &Context, obj: &SaeInstanceDeletion) -> Result<Written, Error> {
    let api: Api<SaeInstanceDeletion> =
        Api::namespaced(ctx.client.clone(), &obj.namespace().unwrap_or_default());
    let object = object_key(obj);
    let attempt = || async {
        api.replace_status(&obj.name_any(), &PostParams::default(), obj)
            .await
    };
    let result = attempt
        .retry(ExponentialBuilder::default().with_min_delay(Duration::from_millis(200)).with_max_times(4))
        .when(|e| !matches!(e, kube::Error::Api(s) if s.code == 409 || s.code == 404 || s.code == 403 || s.code == 422))
        .await;
    match result {
        Ok(updated) => Ok(Written::Stored(Box::new(updated))),
        Err(kube::Error::Api(s)) if s.code == 409 => Ok(Written::Conflict),
        Err(source) => Err(Error::StatusWrite { object, source }),
    }
}

pub(super) async fn publish(ctx: &Context, obj: &SaeInstanceDeletion, event: &Event) {
    let ev = KubeEvent {
        type_: if event.warning {
            EventType::Warning
        } else {
            EventType::Normal
        },
        reason: event.reason.clone(),
        note: Some(event.note.chars().take(1000).collect()),
        action: "Reconcile".into(),
        secondary: None,
    };
    if let Err(err) = ctx.recorder.publish(&ev, &obj.object_ref(&())).await {
        // An event is a courtesy to the user; failing to publish one must not stop the work.
        warn!(error = %err, reason = %event.reason, "could not publish event");
    }
}

/// Writes `status` for `obj` and makes `obj` the stored result; false when the write conflicted
/// (the decision is void and the object must be re-read). Keeps the app claim in step: an attempt
/// that was not recorded releases the app, and an object that stops holding it wakes the next.
pub(super) async fn write_status_and_track(
    ctx: &Context,
    obj: &mut SaeInstanceDeletion,
    status: SaeInstanceDeletionStatus,
) -> Result<bool, Error> {
    let mut next = obj.clone();
    next.status = Some(status);
    let held_app = holds_app(obj);
    let refusal = newly_refused(obj.status.as_ref(), next.status.as_ref());
    let written = put_status(ctx, &next).await;
    if !matches!(written, Ok(Written::Stored(_))) && !held_app {
        // The attempt was not recorded, so it will not be sent: let the app go.
        ctx.release_app(obj);
    }
    match written? {
        Written::Stored(updated) => {
            *obj = *updated;
            if let Some(reason) = refusal {
                ctx.metrics.policy_refusal(reason.as_str());
            }
            if held_app && !holds_app(obj) {
                ctx.release_app(obj);
                ctx.wake_next_in_line(obj);
            }
        }
        Written::Conflict => return Ok(false),
    }
    let Some(status) = &obj.status else {
        return Ok(true);
    };
    info!(
        phase = status.phase.map(Phase::as_str).unwrap_or(""),
        reason = status.reason().unwrap_or(""),
        attempts = status.attempts(),
        request_id = status.request_id.as_deref().unwrap_or(""),
        change_order_id = status.change_order_id.as_deref().unwrap_or(""),
        "status updated"
    );
    if status.is_terminal() {
        ctx.observe_terminal(obj);
    }
    Ok(true)
}

/// The policy refusal `next` turns to, when `previous` did not already wait on that same one:
/// a refusal is counted once when it starts, not at every check that finds it still holds.
fn newly_refused(
    previous: Option<&SaeInstanceDeletionStatus>,
    next: Option<&SaeInstanceDeletionStatus>,
) -> Option<Reason> {
    let reason = |s: Option<&SaeInstanceDeletionStatus>| {
        s.and_then(|s| s.reason())
            .and_then(|r| r.parse::<Reason>().ok())
    };
    let now = reason(next).filter(|r| r.is_policy_refusal())?;
    let still_pending = next.is_some_and(|s| !s.is_terminal());
    (still_pending && reason(previous) != Some(now)).then_some(now)
}

impl Context {
    pub(super) fn observe_terminal(&self, obj: &SaeInstanceDeletion) {
        let Some(status) = &obj.status else { return };
        let outcome = format!(
            "{}/{}",
            status.phase.map(Phase::as_str).unwrap_or(""),
            status.reason().unwrap_or("")
        );
        let age = obj
            .metadata
            .creation_timestamp
            .as_ref()
            .and_then(|t| Duration::try_from(Timestamp::now().duration_since(t.0)).ok())
            .unwrap_or_default();
        self.metrics.observe_terminal(&outcome, age);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(phase: Phase, reason: Reason) -> SaeInstanceDeletionStatus {
        SaeInstanceDeletionStatus {
            phase: Some(phase),
            conditions: vec![k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition {
                type_: crate::crd::CONDITION_RECONCILING.into(),
                status: "True".into(),
                reason: reason.as_str().into(),
                message: String::new(),
                last_transition_time: k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
                    Timestamp::now(),
                ),
                observed_generation: None,
            }],
            ..Default::default()
        }
    }

    #[test]
    fn a_refusal_counts_when_it_starts_not_when_it_still_holds() {
        let pending = |r| status(Phase::Pending, r);
        let window = Reason::OutsideMaintenanceWindow;
        let budget = Reason::DisruptionBudget;
        assert_eq!(newly_refused(None, Some(&pending(window))), Some(window));
        assert_eq!(
            newly_refused(
                Some(&pending(Reason::WaitingForApplication)),
                Some(&pending(window))
            ),
            Some(window)
        );
        assert_eq!(
            newly_refused(Some(&pending(window)), Some(&pending(window))),
            None
        );
        assert_eq!(
            newly_refused(Some(&pending(window)), Some(&pending(budget))),
            Some(budget),
            "another reason is another refusal"
        );
        assert_eq!(
            newly_refused(Some(&pending(window)), Some(&status(Phase::Failed, window))),
            None,
            "failing at the deadline is not a new refusal"
        );
    }
}
