//! The decision table and the cases beyond it: every transition of [`decide`], one observation
//! at a time, on objects built here (the builders are shared with `steps`' tests).

use super::*;
use crate::crd::{CredentialsRef, SaeInstanceDeletionSpec};
use crate::fixtures::{self, spec};

// ---- Builders -----------------------------------------------------------------------------

/// Every object in these tests is created at T0 (2026-01-01T00:00:00Z, [`fixtures::t0`]);
/// `at(s)` is T0 + s.
pub(crate) fn at(seconds: i64) -> Timestamp {
    add(fixtures::t0(), SignedDuration::from_secs(seconds))
}

/// The shared object `ns/del` at generation 1 with `spec` and `status`.
fn object_with(
    spec: SaeInstanceDeletionSpec,
    status: Option<SaeInstanceDeletionStatus>,
) -> SaeInstanceDeletion {
    let mut obj = fixtures::object_with("del", "ns", at(0), spec);
    obj.metadata.generation = Some(1);
    obj.status = status;
    obj
}

pub(crate) fn fresh() -> SaeInstanceDeletion {
    object_with(spec(), None)
}

fn dry() -> SaeInstanceDeletion {
    object_with(
        SaeInstanceDeletionSpec {
            dry_run: true,
            ..spec()
        },
        None,
    )
}

/// SAE may still act on a send up to 40 s later (client timeout plus margin).
const RESOLVE_AFTER: i64 = 40;

pub(crate) fn inputs_at(seconds: i64) -> Inputs {
    Inputs {
        now: at(seconds),
        jitter: 0.5,
        resolve_after: SignedDuration::from_secs(RESOLVE_AFTER),
        settle: SETTLE,
        sae: SaeClock::default(),
    }
}

/// When [`evidence`] says a look began: at the time of the decision it is handed to (see
/// [`decide`]), unless a test sets another.
const LOOKED_NOW: Timestamp = Timestamp::UNIX_EPOCH;

/// [`super::decide`], with a look built here taken to have begun at the decision's time, as the
/// controller's looks do (it decides right after).
pub(crate) fn decide(
    obj: &SaeInstanceDeletion,
    inputs: &Inputs,
    observation: Observation,
) -> Decision {
    let observation = match observation {
        Observation::ResolveResult(Ok(mut e)) => {
            if e.looked_at == LOOKED_NOW {
                e.looked_at = inputs.now;
            }
            Observation::ResolveResult(Ok(e))
        }
        other => other,
    };
    super::decide(obj, inputs, observation)
}

fn start() -> Observation {
    start_with(AppTurn::Free)
}

fn start_with(app: AppTurn) -> Observation {
    Observation::Start {
        credentials: Ok(()),
        app,
        policy: PolicyCheck::Admitted,
    }
}

fn busy() -> AppTurn {
    AppTurn::Busy {
        holder: "ns/other".into(),
    }
}

fn queued() -> AppTurn {
    AppTurn::Queued {
        ahead: "ns/older".into(),
    }
}

fn no_credentials() -> Observation {
    Observation::Start {
        credentials: Err(
            "Secret ns/sae-creds not found: create it with keys accessKeyId and accessKeySecret"
                .into(),
        ),
        app: AppTurn::Free,
        policy: PolicyCheck::Admitted,
    }
}

fn no_answer() -> Observation {
    Observation::DeleteResult(Err(SaeError::NoAnswer {
        operation: "DeleteInstances",
        detail: "timed out".into(),
    }))
}

/// A change order row as the caller hands it over: created at T0 + `created` seconds.
pub(crate) fn found(id: &str, created: Option<i64>, status: i64) -> FoundChangeOrder {
    FoundChangeOrder {
        change_order_id: id.into(),
        created: created.map(|s| SaeTime::Absolute(at(s))),
        finished: None,
        status,
        typed: true,
    }
}

/// What SAE shows, with a complete list and a known zone.
fn evidence(orders: Vec<FoundChangeOrder>, existing: &[&str]) -> Observation {
    Observation::ResolveResult(Ok(Evidence {
        change_orders: orders,
        complete: true,
        existing_instance_ids: ids(existing),
        terminating_instance_ids: vec![],
        zone: CreateTimeZone::Named,
        zone_learned: CreateTimeZone::Named,
        looked_at: LOOKED_NOW,
        since: Timestamp::MIN,
    }))
}

/// Like [`evidence`], with some of the existing instances being terminated.
fn evidence_terminating(
    orders: Vec<FoundChangeOrder>,
    existing: &[&str],
    terminating: &[&str],
) -> Observation {
    let Observation::ResolveResult(Ok(mut e)) = evidence(orders, existing) else {
        unreachable!()
    };
    e.terminating_instance_ids = ids(terminating);
    Observation::ResolveResult(Ok(e))
}

fn gone_check(code: &str, existing: Result<&[&str], SaeError>) -> Observation {
    Observation::GoneCheck {
        rejection: api_error(code, 400),
        existing: existing.map(ids),
    }
}

pub(crate) fn api_error(code: &str, http_status: u16) -> SaeError {
    SaeError::Api {
        operation: "DeleteInstances",
        http_status,
        code: code.into(),
        message: format!("sae says {code}"),
        request_id: Some("req-err".into()),
        retry_after: None,
    }
}

fn accepted() -> Observation {
    Observation::DeleteResult(Ok(DeleteAccepted {
        change_order_id: "co-1".into(),
        request_id: Some("req-ok".into()),
        trace_id: Some("trace-1".into()),
    }))
}

fn refused(code: &str) -> Observation {
    Observation::DeleteResult(Err(api_error(code, 400)))
}

fn order(status: i64) -> ChangeOrderDetail {
    ChangeOrderDetail {
        change_order_id: "co-1".into(),
        status,
        sub_status: None,
        co_type_code: Some("CoDeleteInstances".into()),
        error_message: Some("batch 1 failed: instance busy".into()),
        create_time: Some("2026-01-01 08:00:11".into()),
        request_id: Some(format!("req-poll-{status}")),
    }
}

fn polled(status: i64) -> Observation {
    Observation::ChangeOrderResult(Ok(order(status)))
}

/// Applies a decision the way the caller does: the object now carries the decided status.
/// The status goes through JSON, as it would through the API server.
pub(crate) fn apply(obj: &SaeInstanceDeletion, decision: &Decision) -> SaeInstanceDeletion {
    let mut next = obj.clone();
    let json = serde_json::to_value(&decision.status).unwrap();
    next.status = Some(serde_json::from_value(json).unwrap());
    next
}

fn step(obj: &SaeInstanceDeletion, seconds: i64, observation: Observation) -> SaeInstanceDeletion {
    apply(obj, &decide(obj, &inputs_at(seconds), observation))
}

/// Pending for lack of credentials, decided at t=10.
fn pending_credentials() -> SaeInstanceDeletion {
    step(&fresh(), 10, no_credentials())
}

/// Attempt 1 written ahead at t=10.
pub(crate) fn submitting() -> SaeInstanceDeletion {
    step(&fresh(), 10, start())
}

/// Attempt 1 refused (app busy) at t=11; next attempt not before t=15 (5 s · 0.75 jitter).
fn retrying() -> SaeInstanceDeletion {
    step(
        &submitting(),
        11,
        refused("Application.ChangerOrderRunning"),
    )
}

/// Attempt 1 accepted at t=11 as change order co-1.
fn in_progress() -> SaeInstanceDeletion {
    step(&submitting(), 11, accepted())
}

fn succeeded() -> SaeInstanceDeletion {
    step(&in_progress(), 20, polled(2))
}

fn failed() -> SaeInstanceDeletion {
    step(&in_progress(), 20, polled(3))
}

/// Attempt 1 (written ahead at t=10) lost its answer at t=11; being resolved.
fn unresolved() -> SaeInstanceDeletion {
    step(&submitting(), 11, no_answer())
}

/// Like `submitting()`, with other spec settings.
fn submitting_with(spec: SaeInstanceDeletionSpec) -> SaeInstanceDeletion {
    step(&object_with(spec, None), 10, start())
}

fn unresolved_with(spec: SaeInstanceDeletionSpec) -> SaeInstanceDeletion {
    step(&submitting_with(spec), 11, no_answer())
}

/// Retrying, then its backoff ran out while the app was busy (t=15).
fn waiting_for_app() -> SaeInstanceDeletion {
    step(&retrying(), 15, start_with(busy()))
}

pub(crate) fn status(obj: &SaeInstanceDeletion) -> &SaeInstanceDeletionStatus {
    obj.status.as_ref().unwrap()
}

pub(crate) fn ids(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

mod basics;
mod change_orders;
mod conditions_events;
mod errors;
mod lost_answers;
mod policies;
mod spec_edits;
mod table;
mod unreachable;
