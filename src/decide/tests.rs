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
    }
}

fn start() -> Observation {
    start_with(AppTurn::Free)
}

fn start_with(app: AppTurn) -> Observation {
    Observation::Start {
        credentials: Ok(()),
        app,
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

// ---- The table ----------------------------------------------------------------------------

struct Row {
    name: &'static str,
    obj: SaeInstanceDeletion,
    now: i64,
    observation: Observation,
    phase: Phase,
    reason: &'static str,
    attempts: i32,
    action: Action,
    /// (warning, reason) of each event, in order.
    events: &'static [(bool, &'static str)],
    /// Substrings the status message must contain.
    message: &'static [&'static str],
}

fn rows() -> Vec<Row> {
    use Phase::*;
    let send = Action::SendDelete {
        instance_ids: ids(&["i-1", "i-2"]),
    };
    let poll = Action::PollChangeOrder {
        change_order_id: "co-1".into(),
    };
    let retry_in = |secs: i64| Action::WaitUntil(at(secs));
    let first_poll = |secs: i64, write_by: i64| Action::FirstPoll {
        change_order_id: "co-1".into(),
        at: at(secs),
        write_by: at(write_by),
    };
    // The attempt was written ahead at t=10: its change order carries 10 - 10 - 1 s or later.
    let resolve = Action::ResolveAttempt {
        instance_ids: ids(&["i-1", "i-2"]),
        since: at(-1),
    };
    vec![
        // A reconcile starts before anything was sent: the write-ahead comes first.
        Row {
            name: "fresh object: write-ahead attempt 1 and send",
            obj: fresh(),
            now: 10,
            observation: start(),
            phase: Submitting,
            reason: "Submitting",
            attempts: 1,
            action: send.clone(),
            events: &[(false, "Submitting")],
            message: &["attempt 1 of 10", "i-1, i-2", "app-1"],
        },
        Row {
            name: "no credentials: Pending, recheck after age/2 (at least 2 s)",
            obj: fresh(),
            now: 10,
            observation: no_credentials(),
            phase: Pending,
            reason: "CredentialsNotFound",
            attempts: 0,
            action: Action::WaitUntil(at(15)),
            events: &[(true, "CredentialsNotFound")],
            message: &[
                "Secret ns/sae-creds not found",
                "accessKeyId and accessKeySecret",
            ],
        },
        Row {
            name: "no credentials for long: recheck at most every 60 s",
            obj: pending_credentials(),
            now: 1000,
            observation: no_credentials(),
            phase: Pending,
            reason: "CredentialsNotFound",
            attempts: 0,
            action: Action::WaitUntil(at(1060)),
            events: &[],
            message: &["Secret ns/sae-creds"],
        },
        Row {
            name: "credentials fixed: the next start sends",
            obj: pending_credentials(),
            now: 30,
            observation: start(),
            phase: Submitting,
            reason: "Submitting",
            attempts: 1,
            action: send.clone(),
            events: &[(false, "Submitting")],
            message: &["attempt 1"],
        },
        Row {
            name: "dry run: check the instances, Pending",
            obj: dry(),
            now: 10,
            observation: start(),
            phase: Pending,
            reason: "Pending",
            attempts: 0,
            action: Action::CheckInstances,
            events: &[(false, "Pending")],
            message: &["dry run", "app-1"],
        },
        Row {
            name: "dry run without credentials: Pending for credentials",
            obj: dry(),
            now: 10,
            observation: no_credentials(),
            phase: Pending,
            reason: "CredentialsNotFound",
            attempts: 0,
            action: Action::WaitUntil(at(15)),
            events: &[(true, "CredentialsNotFound")],
            message: &["Secret ns/sae-creds"],
        },
        Row {
            name: "retrying before nextAttemptTime: wait for it (restart-safe backoff)",
            obj: retrying(),
            now: 12,
            observation: start(),
            phase: Retrying,
            reason: "Retrying",
            attempts: 1,
            action: retry_in(15),
            events: &[],
            message: &["Application.ChangerOrderRunning"],
        },
        Row {
            name: "retrying, backoff over: attempt 2 with the recorded ids",
            obj: retrying(),
            now: 15,
            observation: start(),
            phase: Submitting,
            reason: "Submitting",
            attempts: 2,
            action: send.clone(),
            events: &[(false, "Submitting")],
            message: &["attempt 2 of 10"],
        },
        Row {
            name: "retrying, backoff over, credentials gone: Pending for credentials",
            obj: retrying(),
            now: 16,
            observation: no_credentials(),
            phase: Pending,
            reason: "CredentialsNotFound",
            attempts: 1,
            action: Action::WaitUntil(at(24)),
            events: &[(true, "CredentialsNotFound")],
            message: &["Secret ns/sae-creds"],
        },
        // A send whose result was never recorded is resolved, never resent.
        Row {
            name: "start while Submitting (crash after write-ahead): resolve, never resend",
            obj: submitting(),
            now: 40,
            observation: start(),
            phase: Submitting,
            reason: "OutcomeUnknown",
            attempts: 1,
            action: resolve.clone(),
            events: &[(true, "OutcomeUnknown")],
            message: &[
                "attempt 1 for app app-1 was lost",
                "never recorded",
                "checking SAE's change orders",
            ],
        },
        // Accepted.
        Row {
            name: "accepted, waiting for completion: InProgress, first poll 1 s later, held up to 3 s more",
            obj: submitting(),
            now: 11,
            observation: accepted(),
            phase: InProgress,
            reason: "WaitingForChangeOrder",
            attempts: 1,
            action: first_poll(12, 15),
            events: &[(false, "WaitingForChangeOrder")],
            message: &["co-1", "2 instances of app app-1"],
        },
        Row {
            name: "accepted a second before the deadline: the first poll and the hold end at the deadline",
            obj: submitting(),
            now: 3599,
            observation: accepted(),
            phase: InProgress,
            reason: "WaitingForChangeOrder",
            attempts: 1,
            action: first_poll(3600, 3600),
            events: &[(false, "WaitingForChangeOrder")],
            message: &["co-1"],
        },
        Row {
            name: "accepted, not waiting: Succeeded at once",
            obj: object_with(
                SaeInstanceDeletionSpec {
                    wait_for_completion: false,
                    ..spec()
                },
                submitting().status,
            ),
            now: 11,
            observation: accepted(),
            phase: Succeeded,
            reason: "Succeeded",
            attempts: 1,
            action: Action::Done,
            events: &[(false, "Succeeded")],
            message: &["co-1", "waitForCompletion is false"],
        },
        // Refused or failed, by the class of SAE's code.
        Row {
            name: "retryable (app busy): Retrying",
            obj: submitting(),
            now: 11,
            observation: refused("Application.ChangerOrderRunning"),
            phase: Retrying,
            reason: "Retrying",
            attempts: 1,
            action: retry_in(15),
            events: &[(true, "Retrying")],
            message: &[
                "Application.ChangerOrderRunning",
                "without executing it",
                "attempt 1 of 10",
                "req-err",
            ],
        },
        Row {
            name: "retryable (system upgrading): Retrying",
            obj: submitting(),
            now: 11,
            observation: refused("System.Upgrading"),
            phase: Retrying,
            reason: "Retrying",
            attempts: 1,
            action: retry_in(15),
            events: &[(true, "Retrying")],
            message: &["System.Upgrading"],
        },
        Row {
            name: "retryable (throttled): Retrying",
            obj: submitting(),
            now: 11,
            observation: refused("Throttling.User"),
            phase: Retrying,
            reason: "Retrying",
            attempts: 1,
            action: retry_in(15),
            events: &[(true, "Retrying")],
            message: &["Throttling.User"],
        },
        Row {
            name: "retryable (connection refused, nothing sent): Retrying",
            obj: submitting(),
            now: 11,
            observation: Observation::DeleteResult(Err(SaeError::NotSent {
                operation: "DeleteInstances",
                endpoint: "sae.cn-hangzhou.aliyuncs.com".into(),
                detail: "connection refused".into(),
            })),
            phase: Retrying,
            reason: "Retrying",
            attempts: 1,
            action: retry_in(15),
            events: &[(true, "Retrying")],
            message: &["connection refused"],
        },
        Row {
            name: "retryable on the last allowed attempt: RetriesExhausted",
            obj: object_with(
                SaeInstanceDeletionSpec {
                    retry: RetryPolicy {
                        max_attempts: 1,
                        ..RetryPolicy::default()
                    },
                    ..spec()
                },
                submitting().status,
            ),
            now: 11,
            observation: refused("Application.ChangerOrderRunning"),
            phase: Failed,
            reason: "RetriesExhausted",
            attempts: 1,
            action: Action::Done,
            events: &[(true, "RetriesExhausted")],
            message: &[
                "all 1 DeleteInstances attempts",
                "no instance was deleted",
                "Application.ChangerOrderRunning",
            ],
        },
        Row {
            name: "terminal code: Failed with the mapped reason",
            obj: submitting(),
            now: 11,
            observation: refused("InvalidApplication.NotFound"),
            phase: Failed,
            reason: "ApplicationNotFound",
            attempts: 1,
            action: Action::Done,
            events: &[(true, "ApplicationNotFound")],
            message: &["no application app-1 in region cn-hangzhou", "req-err"],
        },
        Row {
            name: "terminal without a code (request not buildable): Rejected",
            obj: submitting(),
            now: 11,
            observation: Observation::DeleteResult(Err(SaeError::InvalidRequest {
                operation: "DeleteInstances",
                detail: "bad endpoint".into(),
            })),
            phase: Failed,
            reason: "Rejected",
            attempts: 1,
            action: Action::Done,
            events: &[(true, "Rejected")],
            message: &["bad endpoint"],
        },
        Row {
            name: "ambiguous (5xx): Submitting/OutcomeUnknown, resolve at once, never resend",
            obj: submitting(),
            now: 11,
            observation: Observation::DeleteResult(Err(api_error("InternalError", 500))),
            phase: Submitting,
            reason: "OutcomeUnknown",
            attempts: 1,
            action: resolve.clone(),
            events: &[(true, "OutcomeUnknown")],
            message: &[
                "attempt 1 for app app-1 was lost",
                "InternalError",
                "req-err",
                "checking SAE's change orders",
            ],
        },
        Row {
            name: "ambiguous (no answer): resolve",
            obj: submitting(),
            now: 11,
            observation: no_answer(),
            phase: Submitting,
            reason: "OutcomeUnknown",
            attempts: 1,
            action: resolve.clone(),
            events: &[(true, "OutcomeUnknown")],
            message: &["timed out", "was lost"],
        },
        // Following the change order.
        Row {
            name: "in progress, under 1 s since the send: wait for the first poll",
            obj: in_progress(),
            now: 10,
            observation: start(),
            phase: InProgress,
            reason: "WaitingForChangeOrder",
            attempts: 1,
            action: Action::WaitUntil(at(11)),
            events: &[],
            message: &["co-1"],
        },
        Row {
            name: "in progress: poll",
            obj: in_progress(),
            now: 12,
            observation: start(),
            phase: InProgress,
            reason: "WaitingForChangeOrder",
            attempts: 1,
            action: poll.clone(),
            events: &[],
            message: &["co-1"],
        },
        Row {
            name: "in progress without credentials: keep waiting, say why",
            obj: in_progress(),
            now: 50,
            observation: no_credentials(),
            phase: InProgress,
            reason: "WaitingForChangeOrder",
            attempts: 1,
            action: Action::WaitUntil(at(70)),
            events: &[],
            message: &["cannot check change order co-1", "Secret ns/sae-creds"],
        },
        Row {
            name: "change order unreadable: stay, poll again later",
            obj: in_progress(),
            now: 100,
            observation: Observation::ChangeOrderResult(Err(api_error("Throttling.User", 400))),
            phase: InProgress,
            reason: "WaitingForChangeOrder",
            attempts: 1,
            action: Action::WaitUntil(at(130)),
            events: &[],
            message: &["cannot read change order co-1", "Throttling.User"],
        },
        Row {
            name: "change order unreadable (terminal class): still only the deadline ends it",
            obj: in_progress(),
            now: 12,
            observation: Observation::ChangeOrderResult(Err(api_error(
                "InvalidAppId.NotFound",
                404,
            ))),
            phase: InProgress,
            reason: "WaitingForChangeOrder",
            attempts: 1,
            action: Action::WaitUntil(at(13)),
            events: &[],
            message: &["InvalidAppId.NotFound"],
        },
        // Dry run results.
        Row {
            name: "dry run, all instances exist: DryRunSucceeded",
            obj: step(&dry(), 10, start()),
            now: 11,
            observation: Observation::DryRunResult(Ok(ids(&["i-0", "i-2", "i-1"]))),
            phase: Succeeded,
            reason: "DryRunSucceeded",
            attempts: 1,
            action: Action::Done,
            events: &[(false, "DryRunSucceeded")],
            message: &[
                "would delete 2 instances of app app-1",
                "nothing was deleted",
            ],
        },
        Row {
            name: "dry run, an instance is missing: InvalidParameter naming it",
            obj: step(&dry(), 10, start()),
            now: 11,
            observation: Observation::DryRunResult(Ok(ids(&["i-1", "i-9"]))),
            phase: Failed,
            reason: "InvalidParameter",
            attempts: 1,
            action: Action::Done,
            events: &[(true, "InvalidParameter")],
            message: &["no instances i-2", "1 of 2"],
        },
        Row {
            name: "dry run, app not found: ApplicationNotFound",
            obj: step(&dry(), 10, start()),
            now: 11,
            observation: Observation::DryRunResult(Err(api_error("InvalidAppId.NotFound", 404))),
            phase: Failed,
            reason: "ApplicationNotFound",
            attempts: 1,
            action: Action::Done,
            events: &[(true, "ApplicationNotFound")],
            message: &["app-1"],
        },
        Row {
            name: "dry run, bad credentials: AuthenticationFailed",
            obj: step(&dry(), 10, start()),
            now: 11,
            observation: Observation::DryRunResult(Err(api_error("SignatureDoesNotMatch", 400))),
            phase: Failed,
            reason: "AuthenticationFailed",
            attempts: 1,
            action: Action::Done,
            events: &[(true, "AuthenticationFailed")],
            message: &["Secret ns/sae-creds"],
        },
        Row {
            name: "dry run, throttled: Retrying with backoff",
            obj: step(&dry(), 10, start()),
            now: 11,
            observation: Observation::DryRunResult(Err(api_error("Throttling.User", 400))),
            phase: Retrying,
            reason: "Retrying",
            attempts: 1,
            action: retry_in(15),
            events: &[(true, "Retrying")],
            message: &["dry-run check", "Throttling.User"],
        },
        Row {
            name: "dry run, no answer: Retrying (a read is safe to repeat)",
            obj: step(&dry(), 10, start()),
            now: 11,
            observation: Observation::DryRunResult(Err(api_error("ServiceUnavailable", 503))),
            phase: Retrying,
            reason: "Retrying",
            attempts: 1,
            action: retry_in(15),
            events: &[(true, "Retrying")],
            message: &["ServiceUnavailable"],
        },
        Row {
            name: "dry run retrying, backoff over: check again, never send",
            obj: step(
                &step(&dry(), 10, start()),
                11,
                Observation::DryRunResult(Err(api_error("Throttling", 400))),
            ),
            now: 15,
            observation: start(),
            phase: Retrying,
            reason: "Retrying",
            attempts: 1,
            action: Action::CheckInstances,
            events: &[],
            message: &["Throttling"],
        },
        Row {
            name: "dry run out of attempts: RetriesExhausted",
            obj: step(
                &step(
                    &object_with(
                        SaeInstanceDeletionSpec {
                            dry_run: true,
                            retry: RetryPolicy {
                                max_attempts: 1,
                                ..RetryPolicy::default()
                            },
                            ..spec()
                        },
                        None,
                    ),
                    10,
                    start(),
                ),
                11,
                start(),
            ),
            now: 12,
            observation: Observation::DryRunResult(Err(api_error("Throttling", 400))),
            phase: Failed,
            reason: "RetriesExhausted",
            attempts: 1,
            action: Action::Done,
            events: &[(true, "RetriesExhausted")],
            message: &["dry-run check", "failed 1 times"],
        },
        // The deadline.
        Row {
            name: "deadline before anything was sent: DeadlineExceeded",
            obj: fresh(),
            now: 3600,
            observation: start(),
            phase: Failed,
            reason: "DeadlineExceeded",
            attempts: 0,
            action: Action::Done,
            events: &[(true, "DeadlineExceeded")],
            message: &[
                "activeDeadlineSeconds (3600 s)",
                "had not been sent",
                "no instance was deleted",
            ],
        },
        Row {
            name: "deadline while waiting for credentials: says so",
            obj: pending_credentials(),
            now: 3601,
            observation: no_credentials(),
            phase: Failed,
            reason: "DeadlineExceeded",
            attempts: 0,
            action: Action::Done,
            events: &[(true, "DeadlineExceeded")],
            message: &["had not been sent", "Secret ns/sae-creds not found"],
        },
        Row {
            name: "deadline while retrying: names the last error",
            obj: retrying(),
            now: 3600,
            observation: start(),
            phase: Failed,
            reason: "DeadlineExceeded",
            attempts: 1,
            action: Action::Done,
            events: &[(true, "DeadlineExceeded")],
            message: &[
                "still refusing",
                "Application.ChangerOrderRunning",
                "none was executed",
            ],
        },
        Row {
            name: "deadline while the change order runs: names it",
            obj: step(&in_progress(), 20, polled(1)),
            now: 3700,
            observation: start(),
            phase: Failed,
            reason: "DeadlineExceeded",
            attempts: 1,
            action: Action::Done,
            events: &[(true, "DeadlineExceeded")],
            message: &[
                "check change order co-1 in the SAE console",
                "last status Preparing or Executing",
            ],
        },
        Row {
            name: "deadline while Submitting: OutcomeUnknown, not DeadlineExceeded",
            obj: submitting(),
            now: 3600,
            observation: start(),
            phase: Failed,
            reason: "OutcomeUnknown",
            attempts: 1,
            action: Action::Done,
            events: &[(true, "OutcomeUnknown")],
            message: &[
                "change orders of app app-1 created since 2026-01-01T00:00:10Z",
                "i-1, i-2",
                "not sent again",
            ],
        },
        Row {
            name: "acceptance arriving after the deadline: recorded, then DeadlineExceeded",
            obj: submitting(),
            now: 3600,
            observation: accepted(),
            phase: Failed,
            reason: "DeadlineExceeded",
            attempts: 1,
            action: Action::Done,
            events: &[(true, "DeadlineExceeded")],
            message: &["check change order co-1 in the SAE console"],
        },
        Row {
            name: "poll failing past the deadline: DeadlineExceeded",
            obj: in_progress(),
            now: 3600,
            observation: Observation::ChangeOrderResult(Err(api_error("Throttling.User", 400))),
            phase: Failed,
            reason: "DeadlineExceeded",
            attempts: 1,
            action: Action::Done,
            events: &[(true, "DeadlineExceeded")],
            message: &["change order co-1"],
        },
        Row {
            name: "dry run past the deadline: DeadlineExceeded",
            obj: step(&dry(), 10, start()),
            now: 3600,
            observation: start(),
            phase: Failed,
            reason: "DeadlineExceeded",
            attempts: 0,
            action: Action::Done,
            events: &[(true, "DeadlineExceeded")],
            message: &["dry-run check had not completed"],
        },
    ]
}

/// Rows for lost answers (rules a-g), "already gone" and the per-app queue. `unresolved()`
/// wrote attempt 1 ahead at t0 = 10; SAE may act on it until t0 + 40 = 50; change orders
/// created in [0, 60] can be its.
fn recovery_rows() -> Vec<Row> {
    use Phase::*;
    let send = Action::SendDelete {
        instance_ids: ids(&["i-1", "i-2"]),
    };
    // The attempt was written ahead at t=10: its change order carries 10 - 10 - 1 s or later.
    let resolve = Action::ResolveAttempt {
        instance_ids: ids(&["i-1", "i-2"]),
        since: at(-1),
    };
    let both = &["i-1", "i-2", "i-3"][..];
    let wait = |secs: i64| Action::WaitUntil(at(secs));
    let no_wait = SaeInstanceDeletionSpec {
        wait_for_completion: false,
        ..spec()
    };
    let one_attempt = SaeInstanceDeletionSpec {
        retry: RetryPolicy {
            max_attempts: 1,
            ..RetryPolicy::default()
        },
        ..spec()
    };
    vec![
        // Starting while the answer is unknown.
        Row {
            name: "start while resolving: resolve again, no write, no event",
            obj: unresolved(),
            now: 20,
            observation: start(),
            phase: Submitting,
            reason: "OutcomeUnknown",
            attempts: 1,
            action: resolve.clone(),
            events: &[],
            message: &["was lost (SAE DeleteInstances outcome unknown: timed out)"],
        },
        Row {
            name: "start while resolving, app busy: the queue does not matter, resolve",
            obj: unresolved(),
            now: 20,
            observation: start_with(busy()),
            phase: Submitting,
            reason: "OutcomeUnknown",
            attempts: 1,
            action: resolve.clone(),
            events: &[],
            message: &["was lost"],
        },
        Row {
            name: "start while Submitting without credentials: cannot resolve yet, look again",
            obj: submitting(),
            now: 20,
            observation: no_credentials(),
            phase: Submitting,
            reason: "OutcomeUnknown",
            attempts: 1,
            action: wait(25),
            events: &[(true, "OutcomeUnknown")],
            message: &[
                "cannot check whether DeleteInstances attempt 1 was executed",
                "Secret ns/sae-creds not found",
            ],
        },
        // a. A change order from the attempt's window: adopt it.
        Row {
            name: "a: a change order in the window, one of ours terminating: adopted, InProgress, polled as usual",
            obj: unresolved(),
            now: 12,
            observation: evidence_terminating(vec![found("co-9", Some(11), 1)], both, &["i-1"]),
            phase: InProgress,
            reason: "WaitingForChangeOrder",
            attempts: 1,
            action: wait(13),
            events: &[(false, "WaitingForChangeOrder")],
            message: &[
                "adopted change order co-9 (created 2026-01-01T00:00:11Z) for DeleteInstances attempt 1 \
                 whose answer was lost",
                "is Executing",
            ],
        },
        Row {
            name: "a: two that could be ours: never a guess, keep looking and name them",
            obj: unresolved(),
            now: 30,
            observation: evidence(
                vec![
                    found("co-late", Some(67), 1),
                    found("co-b", Some(20), 0),
                    found("co-a", Some(0), 0),
                    found("co-old", Some(-2), 2),
                ],
                both,
            ),
            phase: Submitting,
            reason: "OutcomeUnknown",
            attempts: 1,
            action: wait(40),
            events: &[],
            message: &[
                "cannot be told apart from others': co-b, co-a;",
                "nothing is sent again",
            ],
        },
        Row {
            name: "a: one in the window and one whose time cannot be read: keep looking",
            obj: unresolved(),
            now: 30,
            observation: evidence(
                vec![found("co-a", Some(0), 0), found("co-undated", None, 0)],
                both,
            ),
            phase: Submitting,
            reason: "OutcomeUnknown",
            attempts: 1,
            action: wait(40),
            events: &[],
            message: &["co-a, co-undated (its CreateTime cannot be read)"],
        },
        Row {
            name: "a: one in the window and a row without a type: keep looking",
            obj: unresolved(),
            now: 30,
            observation: evidence(
                vec![
                    found("co-a", Some(0), 0),
                    FoundChangeOrder {
                        typed: false,
                        ..found("co-x", Some(12), 0)
                    },
                ],
                both,
            ),
            phase: Submitting,
            reason: "OutcomeUnknown",
            attempts: 1,
            action: wait(40),
            events: &[],
            message: &["co-a, co-x (it names no change-order type)"],
        },
        Row {
            name: "a: an executing one while none of ours is terminating: not adopted, keep looking",
            obj: unresolved(),
            now: 30,
            observation: evidence(vec![found("co-9", Some(11), 1)], both),
            phase: Submitting,
            reason: "OutcomeUnknown",
            attempts: 1,
            action: wait(40),
            events: &[],
            message: &["co-9 (it is executing but none of instances i-1, i-2 is being terminated)"],
        },
        Row {
            name: "a: a succeeded one while one of ours still runs is someone else's: not ours, not executed",
            obj: unresolved(),
            now: 60,
            observation: evidence(vec![found("co-console", Some(12), 2)], &["i-1", "i-3"]),
            phase: Submitting,
            reason: "OutcomeUnknown",
            attempts: 1,
            action: wait(85),
            events: &[],
            message: &["instances i-2 of app app-1 are gone while i-1 still exist"],
        },
        Row {
            name: "a: one that ended before the window began (a console deletion just before ours): not ours",
            obj: unresolved(),
            now: 30,
            observation: evidence(
                vec![
                    FoundChangeOrder {
                        finished: Some(SaeTime::Absolute(at(-2))),
                        ..found("co-console", Some(-1), 2)
                    },
                    found("co-9", Some(11), 2),
                ],
                &[],
            ),
            phase: Succeeded,
            reason: "Succeeded",
            attempts: 1,
            action: Action::Done,
            events: &[(false, "Succeeded")],
            message: &["adopted change order co-9"],
        },
        Row {
            name: "a: a succeeded one while all of ours still run: someone else's; proven not executed",
            obj: unresolved(),
            now: 60,
            observation: evidence(vec![found("co-console", Some(12), 2)], both),
            phase: Retrying,
            reason: "Retrying",
            attempts: 1,
            action: wait(64),
            events: &[(true, "Retrying")],
            message: &["attempt 1 was not executed"],
        },
        Row {
            name: "a: the latest moment that can still be the attempt's (t0 + 1 + send bound + resolve_after + slack)",
            obj: unresolved(),
            now: 70,
            observation: evidence(vec![found("co-9", Some(66), 0)], both),
            phase: InProgress,
            reason: "WaitingForChangeOrder",
            attempts: 1,
            action: wait(100),
            events: &[(false, "WaitingForChangeOrder")],
            message: &["adopted change order co-9", "is Preparing"],
        },
        Row {
            name: "a: adopted order already succeeded: Succeeded at once",
            obj: unresolved(),
            now: 30,
            observation: evidence(vec![found("co-9", Some(11), 2)], &[]),
            phase: Succeeded,
            reason: "Succeeded",
            attempts: 1,
            action: Action::Done,
            events: &[(false, "Succeeded")],
            message: &[
                "adopted change order co-9",
                "finished: instances i-1, i-2 of app app-1 deleted",
            ],
        },
        Row {
            name: "a: adopted order already failed: ChangeOrderFailed at once",
            obj: unresolved(),
            now: 30,
            observation: evidence(vec![found("co-9", Some(11), 3)], both),
            phase: Failed,
            reason: "ChangeOrderFailed",
            attempts: 1,
            action: Action::Done,
            events: &[(true, "ChangeOrderFailed")],
            message: &[
                "adopted change order co-9",
                "ended Failed",
                "check change order co-9 in the SAE console",
            ],
        },
        Row {
            name: "a: adopted, not waiting for completion: Succeeded",
            obj: unresolved_with(no_wait.clone()),
            now: 12,
            observation: evidence(vec![found("co-9", Some(11), 0)], both),
            phase: Succeeded,
            reason: "Succeeded",
            attempts: 1,
            action: Action::Done,
            events: &[(false, "Succeeded")],
            message: &["adopted change order co-9", "waitForCompletion is false"],
        },
        Row {
            name: "a: adopted order failed, not waiting for completion: still Failed",
            obj: unresolved_with(no_wait),
            now: 12,
            observation: evidence(vec![found("co-9", Some(11), 10)], both),
            phase: Failed,
            reason: "ChangeOrderFailed",
            attempts: 1,
            action: Action::Done,
            events: &[(true, "ChangeOrderFailed")],
            message: &["co-9 ended SystemFailure"],
        },
        // b. Nothing of ours in SAE, and the instances are gone.
        Row {
            name: "b: no change order of ours, none of the ids exists: AlreadyDeleted",
            obj: unresolved(),
            now: 12,
            observation: evidence(vec![found("co-old", Some(-30), 2)], &["i-9"]),
            phase: Succeeded,
            reason: "AlreadyDeleted",
            attempts: 1,
            action: Action::Done,
            events: &[(false, "AlreadyDeleted")],
            message: &[
                "none of instances i-1, i-2 exists in app app-1",
                "removed by something else",
                "nothing is left to delete",
            ],
        },
        // c. Proven not executed: a refused attempt.
        Row {
            name: "c: no change order in the window, all ids exist, its last moment passed: Retrying with backoff",
            obj: unresolved(),
            now: 56,
            observation: evidence(vec![found("co-late", Some(67), 1)], both),
            phase: Retrying,
            reason: "Retrying",
            attempts: 1,
            action: wait(60),
            events: &[(true, "Retrying")],
            message: &[
                "attempt 1 was not executed",
                "46 s after it was sent",
                "i-1, i-2 all still exist",
                "trying again at 2026-01-01T00:01:00Z",
            ],
        },
        Row {
            name: "c: proven not executed on the last allowed attempt: RetriesExhausted",
            obj: unresolved_with(one_attempt),
            now: 56,
            observation: evidence(vec![], both),
            phase: Failed,
            reason: "RetriesExhausted",
            attempts: 1,
            action: Action::Done,
            events: &[(true, "RetriesExhausted")],
            message: &["all 1 DeleteInstances attempts", "no instance was deleted"],
        },
        // d. Too early to tell.
        Row {
            name: "d: no change order yet, all ids exist, too early: wait for its last moment (t0 + 1 + 5 + 40)",
            obj: unresolved(),
            now: 20,
            observation: evidence(vec![found("co-old", Some(-11), 2)], both),
            phase: Submitting,
            reason: "OutcomeUnknown",
            attempts: 1,
            action: wait(56),
            events: &[],
            message: &[
                "no change order from it yet",
                "if none appears by 2026-01-01T00:00:56Z",
            ],
        },
        // e. Some instances gone, no change order of ours.
        Row {
            name: "e: some ids gone without a change order of ours: keep checking",
            obj: unresolved(),
            now: 30,
            observation: evidence(vec![], &["i-2", "i-3"]),
            phase: Submitting,
            reason: "OutcomeUnknown",
            attempts: 1,
            action: wait(40),
            events: &[],
            message: &[
                "instances i-1 of app app-1 are gone while i-2 still exist",
                "something else is deleting them",
            ],
        },
        Row {
            name: "e: even after resolve_after: keep checking, at most every 30 s, never resend",
            obj: unresolved(),
            now: 200,
            observation: evidence(vec![], &["i-1"]),
            phase: Submitting,
            reason: "OutcomeUnknown",
            attempts: 1,
            action: wait(230),
            events: &[],
            message: &["instances i-2 of app app-1 are gone"],
        },
        // f. The evidence could not be read.
        Row {
            name: "f: evidence unreadable: keep checking, interval grows from 2 s",
            obj: unresolved(),
            now: 12,
            observation: Observation::ResolveResult(Err(api_error("Throttling.User", 400))),
            phase: Submitting,
            reason: "OutcomeUnknown",
            attempts: 1,
            action: wait(14),
            events: &[],
            message: &[
                "cannot check whether DeleteInstances attempt 1 was executed (checking again)",
                "Throttling.User",
            ],
        },
        Row {
            name: "f: evidence unreadable for long: at most every 30 s",
            obj: unresolved(),
            now: 200,
            observation: Observation::ResolveResult(Err(SaeError::NoAnswer {
                operation: "ListChangeOrders",
                detail: "timed out".into(),
            })),
            phase: Submitting,
            reason: "OutcomeUnknown",
            attempts: 1,
            action: wait(230),
            events: &[],
            message: &["timed out"],
        },
        // g. The deadline while unresolved.
        Row {
            name: "g: deadline while resolving: Failed OutcomeUnknown with what to check",
            obj: unresolved(),
            now: 3600,
            observation: start(),
            phase: Failed,
            reason: "OutcomeUnknown",
            attempts: 1,
            action: Action::Done,
            events: &[(true, "OutcomeUnknown")],
            message: &[
                "activeDeadlineSeconds (3600 s) passed",
                "List the change orders of app app-1 created since 2026-01-01T00:00:10Z in the SAE console",
                "if one deleted instances i-1, i-2, the deletion happened; otherwise nothing was deleted",
            ],
        },
        Row {
            name: "g: inconclusive evidence arriving at the deadline: Failed OutcomeUnknown",
            obj: unresolved(),
            now: 3600,
            observation: evidence(vec![], &["i-2"]),
            phase: Failed,
            reason: "OutcomeUnknown",
            attempts: 1,
            action: Action::Done,
            events: &[(true, "OutcomeUnknown")],
            message: &["List the change orders of app app-1"],
        },
        Row {
            name: "g: a lost answer at the deadline: Failed OutcomeUnknown, no resolve",
            obj: submitting(),
            now: 3600,
            observation: no_answer(),
            phase: Failed,
            reason: "OutcomeUnknown",
            attempts: 1,
            action: Action::Done,
            events: &[(true, "OutcomeUnknown")],
            message: &["otherwise nothing was deleted"],
        },
        Row {
            name: "g: adopted at the deadline: recorded, then DeadlineExceeded naming it",
            obj: unresolved(),
            now: 3600,
            observation: evidence_terminating(vec![found("co-9", Some(11), 1)], both, &["i-1"]),
            phase: Failed,
            reason: "DeadlineExceeded",
            attempts: 1,
            action: Action::Done,
            events: &[(true, "DeadlineExceeded")],
            message: &["check change order co-9 in the SAE console"],
        },
        Row {
            name: "g: already deleted at the deadline: still AlreadyDeleted",
            obj: unresolved(),
            now: 3600,
            observation: evidence(vec![], &[]),
            phase: Succeeded,
            reason: "AlreadyDeleted",
            attempts: 1,
            action: Action::Done,
            events: &[(false, "AlreadyDeleted")],
            message: &["none of instances i-1, i-2 exists"],
        },
        // Already gone.
        Row {
            name: "gone: InvalidParameter: check the app's instances first, status untouched",
            obj: submitting(),
            now: 11,
            observation: refused("InvalidParameter.WithMessage"),
            phase: Submitting,
            reason: "Submitting",
            attempts: 1,
            action: Action::CheckGone {
                rejection: api_error("InvalidParameter.WithMessage", 400),
            },
            events: &[],
            message: &["sending DeleteInstances (attempt 1 of 10)"],
        },
        Row {
            name: "gone: none of the ids exists: AlreadyDeleted",
            obj: submitting(),
            now: 11,
            observation: gone_check("InvalidParameter.WithMessage", Ok(&["i-7"])),
            phase: Succeeded,
            reason: "AlreadyDeleted",
            attempts: 1,
            action: Action::Done,
            events: &[(false, "AlreadyDeleted")],
            message: &[
                "SAE rejected DeleteInstances (InvalidParameter.WithMessage)",
                "none of instances i-1, i-2 exists in app app-1",
                "nothing is left to delete",
            ],
        },
        Row {
            name: "gone: some ids missing: InvalidParameter naming them",
            obj: submitting(),
            now: 11,
            observation: gone_check("InvalidParameter.Obviously", Ok(&["i-1", "i-7"])),
            phase: Failed,
            reason: "InvalidParameter",
            attempts: 1,
            action: Action::Done,
            events: &[(true, "InvalidParameter")],
            message: &[
                "instances i-2 do not exist in app app-1 (the others do)",
                "InvalidParameter.Obviously",
                "req-err",
            ],
        },
        Row {
            name: "gone: all ids exist: InvalidParameter as before",
            obj: submitting(),
            now: 11,
            observation: gone_check("InvalidParameter.NotEmpty", Ok(&["i-1", "i-2"])),
            phase: Failed,
            reason: "InvalidParameter",
            attempts: 1,
            action: Action::Done,
            events: &[(true, "InvalidParameter")],
            message: &["check that instances i-1, i-2 belong to app app-1"],
        },
        Row {
            name: "gone: instances not listable: InvalidParameter, says which are missing is unknown",
            obj: submitting(),
            now: 11,
            observation: gone_check(
                "InvalidParameter.NotEmpty",
                Err(api_error("Throttling.User", 400)),
            ),
            phase: Failed,
            reason: "InvalidParameter",
            attempts: 1,
            action: Action::Done,
            events: &[(true, "InvalidParameter")],
            message: &["which of them are missing is unknown", "Throttling.User"],
        },
        Row {
            name: "gone: InvalidParameter at the deadline: no check, InvalidParameter",
            obj: submitting(),
            now: 3600,
            observation: refused("InvalidParameter.NotEmpty"),
            phase: Failed,
            reason: "InvalidParameter",
            attempts: 1,
            action: Action::Done,
            events: &[(true, "InvalidParameter")],
            message: &["InvalidParameter.NotEmpty"],
        },
        // The per-app queue.
        Row {
            name: "queue: fresh object, app busy: Pending/WaitingForApplication, no SAE call",
            obj: fresh(),
            now: 10,
            observation: start_with(busy()),
            phase: Pending,
            reason: "WaitingForApplication",
            attempts: 0,
            action: wait(15),
            events: &[(false, "WaitingForApplication")],
            message: &[
                "waiting for app app-1",
                "ns/other has a DeleteInstances request or change order in flight on it",
            ],
        },
        Row {
            name: "queue: fresh object, an older one waits: Pending/WaitingForApplication",
            obj: fresh(),
            now: 10,
            observation: start_with(queued()),
            phase: Pending,
            reason: "WaitingForApplication",
            attempts: 0,
            action: wait(15),
            events: &[(false, "WaitingForApplication")],
            message: &["ns/older was created earlier and goes first"],
        },
        Row {
            name: "queue: Pending (credentials fixed), app busy: WaitingForApplication",
            obj: pending_credentials(),
            now: 30,
            observation: start_with(busy()),
            phase: Pending,
            reason: "WaitingForApplication",
            attempts: 0,
            action: wait(35),
            events: &[(false, "WaitingForApplication")],
            message: &["ns/other"],
        },
        Row {
            name: "queue: still busy: same status, look again in 5 s",
            obj: waiting_for_app(),
            now: 16,
            observation: start_with(busy()),
            phase: Pending,
            reason: "WaitingForApplication",
            attempts: 1,
            action: wait(21),
            events: &[],
            message: &["ns/other"],
        },
        Row {
            name: "queue: Retrying, backoff over, app busy: Pending/WaitingForApplication",
            obj: retrying(),
            now: 15,
            observation: start_with(busy()),
            phase: Pending,
            reason: "WaitingForApplication",
            attempts: 1,
            action: wait(20),
            events: &[(false, "WaitingForApplication")],
            message: &["ns/other"],
        },
        Row {
            name: "queue: Retrying before its backoff ends: the backoff comes first",
            obj: retrying(),
            now: 12,
            observation: start_with(queued()),
            phase: Retrying,
            reason: "Retrying",
            attempts: 1,
            action: wait(15),
            events: &[],
            message: &["Application.ChangerOrderRunning"],
        },
        Row {
            name: "queue: the app is free again: write-ahead the next attempt",
            obj: waiting_for_app(),
            now: 20,
            observation: start(),
            phase: Submitting,
            reason: "Submitting",
            attempts: 2,
            action: send.clone(),
            events: &[(false, "Submitting")],
            message: &["attempt 2 of 10"],
        },
        Row {
            name: "queue: first attempt once the app is free",
            obj: step(&fresh(), 10, start_with(queued())),
            now: 15,
            observation: start(),
            phase: Submitting,
            reason: "Submitting",
            attempts: 1,
            action: send,
            events: &[(false, "Submitting")],
            message: &["attempt 1 of 10"],
        },
        Row {
            name: "queue: dry runs ignore it (read-only)",
            obj: dry(),
            now: 10,
            observation: start_with(busy()),
            phase: Pending,
            reason: "Pending",
            attempts: 0,
            action: Action::CheckInstances,
            events: &[(false, "Pending")],
            message: &["dry run"],
        },
        Row {
            name: "queue: a retrying dry run ignores it too",
            obj: step(
                &step(&dry(), 10, start()),
                11,
                Observation::DryRunResult(Err(api_error("Throttling", 400))),
            ),
            now: 15,
            observation: start_with(queued()),
            phase: Retrying,
            reason: "Retrying",
            attempts: 1,
            action: Action::CheckInstances,
            events: &[],
            message: &["Throttling"],
        },
        Row {
            name: "queue: deadline while waiting for the app: says so and that nothing ran",
            obj: waiting_for_app(),
            now: 3600,
            observation: start_with(busy()),
            phase: Failed,
            reason: "DeadlineExceeded",
            attempts: 1,
            action: Action::Done,
            events: &[(true, "DeadlineExceeded")],
            message: &[
                "passed while waiting for app app-1: ns/other",
                "none of its 1 DeleteInstances attempts was executed",
                "no instance was deleted",
            ],
        },
    ]
}

#[test]
fn every_transition_in_the_table() {
    for row in rows() {
        check_row(row);
    }
}

#[test]
fn every_recovery_transition_in_the_table() {
    for row in recovery_rows() {
        check_row(row);
    }
}

fn check_row(row: Row) {
    let name = row.name;
    let before = row.obj.status.clone();
    let d = decide(&row.obj, &inputs_at(row.now), row.observation);
    let s = &d.status;
    assert_eq!(s.phase, Some(row.phase), "{name}: {s:#?}");
    assert_eq!(s.reason(), Some(row.reason), "{name}");
    assert_eq!(s.attempts(), row.attempts, "{name}");
    assert_eq!(d.action, row.action, "{name}");
    let events: Vec<(bool, &str)> = d
        .events
        .iter()
        .map(|e| (e.warning, e.reason.as_str()))
        .collect();
    assert_eq!(events, row.events, "{name}: {:#?}", d.events);
    let message = s.message.as_deref().unwrap_or_default();
    for part in row.message {
        assert!(
            message.contains(part),
            "{name}: message {message:?} lacks {part:?}"
        );
    }
    // On every row: observedGeneration is set and completionTime agrees with the phase.
    assert_eq!(s.observed_generation, Some(1), "{name}");
    assert_eq!(
        s.completion_time.is_some(),
        row.phase.is_terminal(),
        "{name}"
    );
    assert_eq!(s.conditions.len(), 3, "{name}");
    for c in &s.conditions {
        assert_eq!(
            (c.reason.as_str(), c.message.as_str()),
            (row.reason, message),
            "{name}: {c:?}"
        );
        assert_eq!(c.observed_generation, Some(1), "{name}");
    }
    // No event without a visible change, and never a send in a dry run.
    if d.events.is_empty() {
        assert_eq!(s.phase, before.as_ref().and_then(|b| b.phase), "{name}");
    }
    if row.obj.spec.dry_run {
        assert!(!matches!(d.action, Action::SendDelete { .. }), "{name}");
    }
    // A possibly executed attempt is never followed by a send in the same decision.
    if before.as_ref().and_then(|b| b.phase) == Some(Phase::Submitting) {
        assert!(!matches!(d.action, Action::SendDelete { .. }), "{name}");
    }
    // The gone check is asked for without a status write.
    if matches!(d.action, Action::CheckGone { .. }) {
        assert_eq!(Some(s), before.as_ref(), "{name}");
    }
}

// ---- A terminal object is never touched again -----------------------------------------------

#[test]
fn terminal_objects_are_never_touched() {
    let observations = [
        start(),
        no_credentials(),
        accepted(),
        refused("Throttling"),
        polled(1),
        polled(3),
        Observation::DryRunResult(Ok(vec![])),
        start_with(busy()),
        no_answer(),
        evidence(vec![found("co-9", Some(11), 1)], &[]),
        gone_check("InvalidParameter.NotEmpty", Ok(&[])),
    ];
    let mut deadline_failed = fresh();
    deadline_failed = step(&deadline_failed, 4000, start());
    for obj in [succeeded(), failed(), deadline_failed] {
        for now in [20, 100_000] {
            for observation in observations.clone() {
                let d = decide(&obj, &inputs_at(now), observation.clone());
                assert_eq!(Some(&d.status), obj.status.as_ref(), "{observation:?}");
                assert_eq!(d.action, Action::Done);
                assert!(d.events.is_empty());
            }
        }
    }
    assert_eq!(status(&succeeded()).phase, Some(Phase::Succeeded));
    assert_eq!(status(&failed()).phase, Some(Phase::Failed));
}

// ---- The write-ahead comes before every send -------------------------------------------------

#[test]
fn write_ahead_records_the_attempt_before_the_send() {
    let s = status(&submitting()).clone();
    assert_eq!(s.phase, Some(Phase::Submitting));
    assert_eq!(s.attempts, Some(1));
    assert_eq!(s.instance_ids, Some(ids(&["i-1", "i-2"])));
    assert_eq!(s.start_time, Some(Time(at(10))));
    assert_eq!(s.last_attempt_time, Some(Time(at(10))));
    assert_eq!(s.next_attempt_time, None);

    // The second attempt keeps startTime, moves lastAttemptTime, clears nextAttemptTime.
    let retry = retrying();
    assert_eq!(status(&retry).next_attempt_time, Some(Time(at(15))));
    let d = decide(&retry, &inputs_at(16), start());
    assert_eq!(d.status.attempts, Some(2));
    assert_eq!(d.status.start_time, Some(Time(at(10))));
    assert_eq!(d.status.last_attempt_time, Some(Time(at(16))));
    assert_eq!(d.status.next_attempt_time, None);
    assert_eq!(
        d.status.error_code.as_deref(),
        Some("Application.ChangerOrderRunning")
    );
}

#[test]
fn stored_times_survive_the_api_server_and_cause_no_rewrites() {
    // A clock with sub-second precision must not make the decided status differ from what
    // comes back from the API server (which keeps whole seconds).
    let obj = fresh();
    let now = Inputs {
        now: add(at(10), SignedDuration::from_millis(750)),
        jitter: 0.3,
        resolve_after: SignedDuration::from_secs(RESOLVE_AFTER),
    };
    let d = decide(&obj, &now, start());
    let round_tripped: SaeInstanceDeletionStatus =
        serde_json::from_value(serde_json::to_value(&d.status).unwrap()).unwrap();
    assert_eq!(round_tripped, d.status);
    // nextAttemptTime rounds up: waking at it never acts early.
    let retry = decide(&apply(&obj, &d), &now, refused("Throttling"));
    let next = retry.status.next_attempt_time.clone().unwrap().0;
    assert_eq!(next.subsec_nanosecond(), 0);
    assert!(
        next >= add(now.now, SignedDuration::from_millis(2500)),
        "{next}"
    );
}

#[test]
fn a_stable_state_decides_the_same_status_again() {
    // The caller writes only when the status differs: repeated reconciles must not churn.
    for (obj, now, observation) in [
        (pending_credentials(), 20, no_credentials()),
        (retrying(), 12, start()),
        (in_progress(), 12, start()),
        (step(&dry(), 10, start()), 11, start()),
        (unresolved(), 20, start()),
        (waiting_for_app(), 16, start_with(busy())),
    ] {
        let d = decide(&obj, &inputs_at(now), observation);
        assert_eq!(Some(&d.status), obj.status.as_ref());
        assert!(d.events.is_empty());
    }
}

// ---- SAE's error codes: retried, refused, failed ---------------------------------------------

#[test]
fn every_terminal_code_maps_to_its_reason() {
    let table = [
        ("InvalidApplication.NotFound", "ApplicationNotFound"),
        ("InvalidAppId.NotFound", "ApplicationNotFound"),
        ("InvalidParameter.NotEmpty", "InvalidParameter"),
        ("InvalidParameter.Obviously", "InvalidParameter"),
        ("InvalidParameter.WithMessage", "InvalidParameter"),
        ("NoComputeResourceQuota.Exceed", "QuotaExceeded"),
        ("NoComputeResourceQuota.App.Exceed", "QuotaExceeded"),
        ("NoComputeResourceQuota.User.Exceed", "QuotaExceeded"),
        ("SignatureDoesNotMatch", "AuthenticationFailed"),
        ("InvalidAccessKeyId.NotFound", "AuthenticationFailed"),
        ("InvalidAccessKeyId.Inactive", "AuthenticationFailed"),
        ("InvalidTimeStamp.Expired", "AuthenticationFailed"),
        ("SignatureNonceUsed", "AuthenticationFailed"),
        ("Application.NotDeployYet", "Rejected"),
        ("user.indebt", "Rejected"),
        ("InvalidParameterX", "Rejected"),
        ("SomethingNew.Undocumented", "Rejected"),
    ];
    for (code, reason) in table {
        let mut d = decide(&submitting(), &inputs_at(11), refused(code));
        if let Action::CheckGone { rejection } = d.action {
            // InvalidParameter first asks whether the instances are gone; here they all exist.
            assert_eq!(reason, "InvalidParameter", "{code}");
            let existing = Ok(ids(&["i-1", "i-2"]));
            let observation = Observation::GoneCheck {
                rejection,
                existing,
            };
            d = decide(&submitting(), &inputs_at(11), observation);
        }
        assert_eq!(d.status.phase, Some(Phase::Failed), "{code}");
        assert_eq!(d.status.reason(), Some(reason), "{code}");
        assert_eq!(d.status.error_code.as_deref(), Some(code));
        assert_eq!(d.status.request_id.as_deref(), Some("req-err"));
        assert_eq!(d.action, Action::Done);
        let event = &d.events[0];
        assert!(
            event.warning && event.note.contains(code) && event.note.contains("req-err"),
            "{event:?}"
        );
    }
}

#[test]
fn authentication_failures_say_what_to_check() {
    let d = decide(
        &submitting(),
        &inputs_at(11),
        refused("InvalidAccessKeyId.NotFound"),
    );
    assert!(
        d.status
            .message
            .unwrap()
            .contains("check the AccessKey in Secret ns/sae-creds")
    );

    let own = submitting_with(SaeInstanceDeletionSpec {
        credentials_ref: None,
        ..spec()
    });
    let d = decide(&own, &inputs_at(11), refused("SignatureDoesNotMatch"));
    assert!(
        d.status
            .message
            .unwrap()
            .contains("ALIBABA_CLOUD_ACCESS_KEY_ID")
    );

    let d = decide(
        &submitting(),
        &inputs_at(11),
        refused("InvalidTimeStamp.Expired"),
    );
    assert!(d.status.message.unwrap().contains("clock"));
}

#[test]
fn retrying_counts_attempts_until_exhausted() {
    let mut obj = object_with(
        SaeInstanceDeletionSpec {
            retry: RetryPolicy {
                max_attempts: 3,
                ..RetryPolicy::default()
            },
            ..spec()
        },
        None,
    );
    let mut now = 10;
    let mut sent = vec![];
    loop {
        let d = decide(&obj, &inputs_at(now), start());
        match &d.action {
            Action::SendDelete { instance_ids } => sent.push(instance_ids.clone()),
            Action::WaitUntil(t) => {
                now = t.as_second() - at(0).as_second();
                continue;
            }
            other => panic!("unexpected {other:?}"),
        }
        obj = apply(&obj, &d);
        let d = decide(
            &obj,
            &inputs_at(now),
            refused("Application.ChangerOrderRunning"),
        );
        obj = apply(&obj, &d);
        if d.action == Action::Done {
            break;
        }
    }
    assert_eq!(sent.len(), 3, "maxAttempts counts every send");
    assert!(sent.iter().all(|s| s == &ids(&["i-1", "i-2"])));
    assert_eq!(status(&obj).reason(), Some("RetriesExhausted"));
    assert_eq!(status(&obj).attempts, Some(3));
    assert_eq!(status(&obj).next_attempt_time, None);
}

#[test]
fn retry_after_from_sae_is_honoured_but_capped_by_the_deadline() {
    let mut err = api_error("Throttling.User", 400);
    if let SaeError::Api { retry_after, .. } = &mut err {
        *retry_after = Some(Duration::from_secs(60));
    }
    let d = decide(
        &submitting(),
        &inputs_at(11),
        Observation::DeleteResult(Err(err.clone())),
    );
    assert_eq!(d.status.next_attempt_time, Some(Time(at(71))));
    assert_eq!(d.action, Action::WaitUntil(at(71)));

    // Near the deadline the wait ends at the deadline, where the object fails.
    let late = step(&fresh(), 3580, start());
    let d = decide(&late, &inputs_at(3581), Observation::DeleteResult(Err(err)));
    assert_eq!(d.status.next_attempt_time, Some(Time(at(3641))));
    assert_eq!(d.action, Action::WaitUntil(at(3600)));
    let d = decide(&apply(&late, &d), &inputs_at(3600), start());
    assert_eq!(d.status.reason(), Some("DeadlineExceeded"));
}

// ---- Backoff between attempts ----------------------------------------------------------------

#[test]
fn backoff_doubles_caps_and_jitters_deterministically() {
    let policy = RetryPolicy::default(); // 5 s, capped at 300 s
    let secs = |attempts, jitter, retry_after: Option<u64>| {
        backoff_delay(
            &policy,
            attempts,
            jitter,
            retry_after.map(Duration::from_secs),
        )
        .as_secs_f64()
    };
    // Equal jitter: half the delay at jitter 0, all of it at jitter 1.
    assert_eq!(secs(1, 0.0, None), 2.5);
    assert_eq!(secs(1, 1.0, None), 5.0);
    assert_eq!(secs(1, 0.5, None), 3.75);
    assert_eq!(secs(2, 1.0, None), 10.0);
    assert_eq!(secs(3, 1.0, None), 20.0);
    assert_eq!(secs(6, 1.0, None), 160.0);
    assert_eq!(secs(7, 1.0, None), 300.0);
    assert_eq!(secs(100, 1.0, None), 300.0);
    assert_eq!(secs(100, 0.0, None), 150.0);
    // Out-of-range inputs stay sane.
    assert_eq!(secs(0, 1.0, None), 5.0);
    assert_eq!(secs(1, 7.0, None), 5.0);
    // SAE's retry-after wins when longer, never when shorter.
    assert_eq!(secs(1, 0.0, Some(60)), 60.0);
    assert_eq!(secs(3, 1.0, Some(1)), 20.0);
    // An initial delay above the cap is capped too.
    let odd = RetryPolicy {
        max_attempts: 3,
        initial_delay_seconds: 500,
        max_delay_seconds: 300,
    };
    assert_eq!(backoff_delay(&odd, 1, 1.0, None), Duration::from_secs(300));
}

// ---- Change-order statuses -------------------------------------------------------------------

#[test]
fn every_change_order_status() {
    use Phase::*;
    // (status, phase, reason, changeOrderStatus, message part)
    let table: [(i64, Phase, &str, &str, &str); 11] = [
        (
            0,
            InProgress,
            "WaitingForChangeOrder",
            "Preparing",
            "is Preparing",
        ),
        (
            1,
            InProgress,
            "WaitingForChangeOrder",
            "Executing",
            "is Executing",
        ),
        (
            2,
            Succeeded,
            "Succeeded",
            "Succeeded",
            "i-1, i-2 of app app-1 deleted",
        ),
        (
            3,
            Failed,
            "ChangeOrderFailed",
            "Failed",
            "batch 1 failed: instance busy",
        ),
        (
            6,
            Failed,
            "ChangeOrderFailed",
            "Terminated",
            "ended Terminated",
        ),
        (
            8,
            InProgress,
            "WaitingForChangeOrder",
            "WaitingManualRelease",
            "waiting for a manual batch release in the SAE console",
        ),
        (
            9,
            InProgress,
            "WaitingForChangeOrder",
            "WaitingAutoRelease",
            "is WaitingAutoRelease",
        ),
        (
            10,
            Failed,
            "ChangeOrderFailed",
            "SystemFailure",
            "check change order co-1 in the SAE console",
        ),
        (
            11,
            InProgress,
            "WaitingForChangeOrder",
            "PendingApproval",
            "waiting for approval",
        ),
        (
            12,
            InProgress,
            "WaitingForChangeOrder",
            "Approved",
            "is Approved",
        ),
        (
            7,
            InProgress,
            "WaitingForChangeOrder",
            "Unknown(7)",
            "is Unknown(7)",
        ),
    ];
    for (code, phase, reason, name, part) in table {
        let d = decide(&in_progress(), &inputs_at(100), polled(code));
        let s = &d.status;
        assert_eq!(
            (s.phase, s.reason()),
            (Some(phase), Some(reason)),
            "status {code}"
        );
        // Preparing and Executing are not recorded (InProgress says as much, and each would
        // cost a status write); every other status is.
        let recorded = if matches!(code, 0 | 1) {
            None
        } else {
            Some(name)
        };
        assert_eq!(s.change_order_status.as_deref(), recorded, "status {code}");
        assert!(
            s.message.as_deref().unwrap().contains(part),
            "status {code}: {:?}",
            s.message
        );
        if phase.is_terminal() {
            assert_eq!(d.action, Action::Done);
            assert_eq!(
                s.request_id,
                Some(format!("req-poll-{code}")),
                "the final answer's RequestId is kept"
            );
            assert_eq!(d.events.len(), 1);
            assert_eq!(d.events[0].warning, phase == Failed);
        } else {
            // Poll interval: half the change order's age (90 s), at most 30 s.
            assert_eq!(d.action, Action::WaitUntil(at(130)), "status {code}");
            assert_eq!(
                s.request_id.as_deref(),
                Some("req-ok"),
                "polls do not churn the RequestId"
            );
            assert!(d.events.is_empty(), "status {code}: {:?}", d.events);
        }
    }
}

#[test]
fn executing_with_an_exception_asks_for_a_human() {
    let mut stuck = order(1);
    stuck.sub_status = Some(1);
    let d = decide(
        &in_progress(),
        &inputs_at(20),
        Observation::ChangeOrderResult(Ok(stuck)),
    );
    assert_eq!(d.status.phase, Some(Phase::InProgress));
    assert!(d.status.message.unwrap().contains("manual rollback"));
}

#[test]
fn polls_write_only_when_something_visible_changes() {
    let executing = step(&in_progress(), 20, polled(1));
    let again = decide(&executing, &inputs_at(40), polled(1));
    assert_eq!(
        Some(&again.status),
        executing.status.as_ref(),
        "same change order status: no write"
    );
    let moved = decide(&executing, &inputs_at(40), polled(9));
    assert_ne!(Some(&moved.status), executing.status.as_ref());

    // The same failure twice (different RequestIds) gives the same message: no write.
    let failing = step(
        &executing,
        50,
        Observation::ChangeOrderResult(Err(api_error("Throttling.User", 400))),
    );
    let mut other = api_error("Throttling.User", 400);
    if let SaeError::Api { request_id, .. } = &mut other {
        *request_id = Some("req-other".into());
    }
    let d = decide(
        &failing,
        &inputs_at(60),
        Observation::ChangeOrderResult(Err(other)),
    );
    assert_eq!(Some(&d.status), failing.status.as_ref());
    // A good answer afterwards replaces the error message.
    let d = decide(&failing, &inputs_at(70), polled(1));
    assert!(!d.status.message.unwrap().contains("cannot read"));
}

#[test]
fn polling_slows_down_with_age() {
    // Sent at t=10: interval = clamp(age / 2, 1 s, 30 s).
    for (now, next) in [(11, 12), (14, 16), (30, 40), (70, 100), (500, 530)] {
        let d = decide(&in_progress(), &inputs_at(now), polled(1));
        assert_eq!(d.action, Action::WaitUntil(at(next)), "now {now}");
    }
}

// ---- Spec edits after the first attempt are ignored, and said so -------------------------------

#[test]
fn instance_ids_edited_after_the_first_attempt_are_ignored_with_one_warning() {
    let mut edited = retrying();
    edited.spec.instance_ids = ids(&["i-1", "i-3"]);
    edited.metadata.generation = Some(2);
    let d = decide(&edited, &inputs_at(15), start());
    assert_eq!(
        d.action,
        Action::SendDelete {
            instance_ids: ids(&["i-1", "i-2"])
        }
    );
    assert_eq!(d.status.observed_generation, Some(2));
    assert!(
        d.status
            .conditions
            .iter()
            .all(|c| c.observed_generation == Some(2))
    );
    let warnings: Vec<&Event> = d
        .events
        .iter()
        .filter(|e| e.reason == EVENT_SPEC_CHANGE_IGNORED)
        .collect();
    assert_eq!(warnings.len(), 1, "{:?}", d.events);
    assert!(
        warnings[0].warning && warnings[0].note.contains("i-1, i-2"),
        "{:?}",
        warnings[0]
    );

    // Once observed, no further warning.
    let after = apply(&edited, &d);
    let d = decide(&after, &inputs_at(16), refused("Throttling"));
    assert!(
        d.events
            .iter()
            .all(|e| e.reason != EVENT_SPEC_CHANGE_IGNORED)
    );

    // A new generation with the same ids (another field, or a reorder) warns about nothing.
    let mut reordered = retrying();
    reordered.spec.instance_ids = ids(&["i-2", "i-1"]);
    reordered.metadata.generation = Some(2);
    let d = decide(&reordered, &inputs_at(12), start());
    assert!(d.events.is_empty(), "{:?}", d.events);
    assert_eq!(d.status.observed_generation, Some(2));
}

#[test]
fn instance_ids_edited_before_the_first_attempt_are_used() {
    let mut edited = pending_credentials();
    edited.spec.instance_ids = ids(&["i-7"]);
    edited.metadata.generation = Some(2);
    let d = decide(&edited, &inputs_at(30), start());
    assert_eq!(
        d.action,
        Action::SendDelete {
            instance_ids: ids(&["i-7"])
        }
    );
    assert!(
        d.events
            .iter()
            .all(|e| e.reason != EVENT_SPEC_CHANGE_IGNORED)
    );
    assert_eq!(d.status.observed_generation, Some(2));
}

/// One edit of a field the first attempt records.
struct PinnedEdit {
    field: &'static str,
    edit: fn(&mut SaeInstanceDeletionSpec),
    /// How the warning names the value still in use.
    recorded: &'static str,
    /// A refusal whose message shows the value used, with what it says for the recorded value
    /// and for the edited one (empty: nothing to check).
    refusal: &'static str,
    with_recorded: &'static str,
    with_edited: &'static str,
}

fn pinned_edits() -> Vec<PinnedEdit> {
    vec![
        PinnedEdit {
            field: "instanceIds",
            edit: |s| s.instance_ids = ids(&["i-1", "i-3"]),
            recorded: "instanceIds i-1, i-2",
            refusal: "InvalidApplication.NotFound",
            with_recorded: "",
            with_edited: "",
        },
        PinnedEdit {
            field: "appId",
            edit: |s| s.app_id = "app-2".into(),
            recorded: "appId app-1",
            refusal: "InvalidApplication.NotFound",
            with_recorded: "no application app-1 in region cn-hangzhou",
            with_edited: "no application app-2 in region cn-hangzhou",
        },
        PinnedEdit {
            field: "regionId",
            edit: |s| s.region_id = "cn-shanghai".into(),
            recorded: "regionId cn-hangzhou",
            refusal: "InvalidApplication.NotFound",
            with_recorded: "no application app-1 in region cn-hangzhou",
            with_edited: "no application app-1 in region cn-shanghai",
        },
        PinnedEdit {
            field: "credentialsRef",
            edit: |s| {
                s.credentials_ref = Some(CredentialsRef {
                    name: "other-creds".into(),
                })
            },
            recorded: "credentialsRef Secret sae-creds",
            refusal: "InvalidAccessKeyId.NotFound",
            with_recorded: "the AccessKey in Secret ns/sae-creds",
            with_edited: "the AccessKey in Secret ns/other-creds",
        },
        PinnedEdit {
            field: "credentialsRef",
            edit: |s| s.credentials_ref = None,
            recorded: "credentialsRef Secret sae-creds",
            refusal: "InvalidAccessKeyId.NotFound",
            with_recorded: "the AccessKey in Secret ns/sae-creds",
            with_edited: "the controller's own credentials",
        },
        PinnedEdit {
            field: "dryRun",
            edit: |s| s.dry_run = true,
            recorded: "dryRun false",
            refusal: "",
            with_recorded: "",
            with_edited: "",
        },
    ]
}

/// What a start that may act asks for, given the values the object uses.
fn first_step_of(pinned: Pinned<'_>) -> Action {
    if pinned.dry_run {
        Action::CheckInstances
    } else {
        Action::SendDelete {
            instance_ids: pinned.instance_ids.to_vec(),
        }
    }
}

fn spec_change_warnings(d: &Decision) -> Vec<&Event> {
    d.events
        .iter()
        .filter(|e| e.reason == EVENT_SPEC_CHANGE_IGNORED)
        .collect()
}

#[test]
fn pinned_fields_edited_after_the_first_attempt_are_ignored_with_one_warning() {
    const FIELDS: [&str; 5] = [
        "instanceIds",
        "appId",
        "regionId",
        "credentialsRef",
        "dryRun",
    ];
    for row in pinned_edits() {
        let name = format!("{} edited after attempt 1", row.field);
        let original = retrying();
        let mut edited = original.clone();
        (row.edit)(&mut edited.spec);
        edited.metadata.generation = Some(2);

        // The next attempt uses, and keeps recording, what attempt 1 recorded.
        let d = decide(&edited, &inputs_at(15), start());
        assert_eq!(d.action, first_step_of(original.pinned()), "{name}");
        let after = apply(&edited, &d);
        assert_eq!(after.pinned(), original.pinned(), "{name}");
        assert_eq!(d.status.observed_generation, Some(2), "{name}");

        let warnings = spec_change_warnings(&d);
        assert_eq!(warnings.len(), 1, "{name}: {:?}", d.events);
        let note = &warnings[0].note;
        assert!(warnings[0].warning, "{name}");
        assert!(
            note.contains(&format!("spec.{}", row.field)) && note.contains(row.recorded),
            "{name}: {note}"
        );
        for other in FIELDS.iter().filter(|f| **f != row.field) {
            assert!(!note.contains(&format!("spec.{other}")), "{name}: {note}");
        }
        assert!(!note.contains("accessKeySecret"), "{name}: {note}");

        // Once observed, no further warning; messages name the recorded values.
        let code = if row.refusal.is_empty() {
            "Throttling"
        } else {
            row.refusal
        };
        let d = decide(&after, &inputs_at(16), refused(code));
        assert!(
            spec_change_warnings(&d).is_empty(),
            "{name}: {:?}",
            d.events
        );
        let message = d.status.message.clone().unwrap_or_default();
        assert!(message.contains(row.with_recorded), "{name}: {message}");
        if !row.with_edited.is_empty() && row.with_edited != row.with_recorded {
            assert!(!message.contains(row.with_edited), "{name}: {message}");
        }
    }
}

#[test]
fn pinned_fields_edited_before_the_first_attempt_are_used() {
    for row in pinned_edits() {
        let name = format!("{} edited before attempt 1", row.field);
        let mut edited = pending_credentials();
        (row.edit)(&mut edited.spec);
        edited.metadata.generation = Some(2);
        let new_values = object_with(edited.spec.clone(), None);

        let d = decide(&edited, &inputs_at(30), start());
        assert_eq!(d.action, first_step_of(new_values.pinned()), "{name}");
        assert!(
            spec_change_warnings(&d).is_empty(),
            "{name}: {:?}",
            d.events
        );
        let after = apply(&edited, &d);
        assert_eq!(after.pinned(), new_values.pinned(), "{name}");
        // Recorded with the send: a later edit back would be ignored.
        if !new_values.pinned().dry_run {
            assert_eq!(
                status(&after).app_id.as_deref(),
                Some(new_values.pinned().app_id),
                "{name}"
            );
        }

        if !row.refusal.is_empty() {
            let d = decide(&after, &inputs_at(31), refused(row.refusal));
            let message = d.status.message.clone().unwrap_or_default();
            assert!(message.contains(row.with_edited), "{name}: {message}");
        }
    }
}

#[test]
fn several_pinned_fields_edited_at_once_get_one_warning_naming_each() {
    let mut edited = retrying();
    edited.spec.app_id = "app-2".into();
    edited.spec.region_id = "cn-shanghai".into();
    edited.spec.credentials_ref = None;
    edited.metadata.generation = Some(2);
    let d = decide(&edited, &inputs_at(15), start());
    let warnings = spec_change_warnings(&d);
    assert_eq!(warnings.len(), 1, "{:?}", d.events);
    let note = &warnings[0].note;
    for part in [
        "spec.appId, spec.regionId, spec.credentialsRef changed after the first DeleteInstances attempt",
        "appId app-1; regionId cn-hangzhou; credentialsRef Secret sae-creds",
    ] {
        assert!(note.contains(part), "{note}");
    }
    assert!(
        d.status
            .message
            .as_deref()
            .unwrap_or_default()
            .contains("of app app-1")
    );

    // A further edit (a new generation) that still differs warns once more.
    let mut again = apply(&edited, &d);
    again.spec.app_id = "app-3".into();
    again.metadata.generation = Some(3);
    let d = decide(&again, &inputs_at(16), refused("Throttling"));
    assert_eq!(spec_change_warnings(&d).len(), 1, "{:?}", d.events);
}

#[test]
fn a_dry_run_edited_into_a_real_deletion_after_its_first_check_stays_a_dry_run() {
    let checked = step(
        &step(&dry(), 10, start()),
        11,
        Observation::DryRunResult(Err(api_error("Throttling", 400))),
    );
    assert_eq!(status(&checked).dry_run, Some(true));
    let mut edited = checked.clone();
    edited.spec.dry_run = false;
    edited.metadata.generation = Some(2);

    let d = decide(&edited, &inputs_at(15), start());
    assert_eq!(d.action, Action::CheckInstances);
    let warnings = spec_change_warnings(&d);
    assert_eq!(warnings.len(), 1, "{:?}", d.events);
    assert!(
        warnings[0]
            .note
            .contains("spec.dryRun changed after the first dry-run check")
            && warnings[0].note.contains("dryRun true"),
        "{:?}",
        warnings[0]
    );

    // Every later step stays a dry run: an unanswered check is repeated, never resolved as a
    // lost DeleteInstances, and a good answer ends it as a dry run.
    let after = apply(&edited, &d);
    let d = decide(
        &after,
        &inputs_at(16),
        Observation::DryRunResult(Err(api_error("ServiceUnavailable", 503))),
    );
    assert_eq!(d.status.phase, Some(Phase::Retrying));
    let d = decide(
        &after,
        &inputs_at(16),
        Observation::DryRunResult(Ok(ids(&["i-1", "i-2"]))),
    );
    assert_eq!(d.status.reason(), Some("DryRunSucceeded"));
    assert!(spec_change_warnings(&d).is_empty());

    // Before its first check (here: waiting for credentials), the edit is simply the spec.
    let mut early = step(&dry(), 10, no_credentials());
    early.spec.dry_run = false;
    early.metadata.generation = Some(2);
    let d = decide(&early, &inputs_at(30), start());
    assert!(
        matches!(d.action, Action::SendDelete { .. }),
        "{:?}",
        d.action
    );
    assert!(spec_change_warnings(&d).is_empty(), "{:?}", d.events);
}

// ---- Conditions and events --------------------------------------------------------------------

#[test]
fn conditions_follow_the_phase_and_keep_their_transition_times() {
    let cond = |s: &SaeInstanceDeletionStatus, t: &str| {
        let c = s.condition(t).unwrap();
        (c.status.clone(), c.last_transition_time.0)
    };
    let pending = pending_credentials(); // t=10
    let s = status(&pending);
    assert_eq!(cond(s, CONDITION_READY), ("False".into(), at(10)));
    assert_eq!(cond(s, CONDITION_RECONCILING), ("True".into(), at(10)));
    assert_eq!(cond(s, CONDITION_STALLED), ("False".into(), at(10)));

    let sending = step(&pending, 30, start());
    let s = status(&sending);
    assert_eq!(
        cond(s, CONDITION_RECONCILING),
        ("True".into(), at(10)),
        "no flip, time kept"
    );
    assert_eq!(
        s.condition(CONDITION_RECONCILING).unwrap().reason,
        "Submitting",
        "reason updated"
    );

    let done = step(&sending, 40, refused("user.indebt"));
    let s = status(&done);
    assert_eq!(cond(s, CONDITION_READY), ("False".into(), at(10)));
    assert_eq!(cond(s, CONDITION_RECONCILING), ("False".into(), at(40)));
    assert_eq!(cond(s, CONDITION_STALLED), ("True".into(), at(40)));
    assert_eq!(s.completion_time, Some(Time(at(40))));

    let ok = succeeded(); // t=20
    let s = status(&ok);
    assert_eq!(cond(s, CONDITION_READY), ("True".into(), at(20)));
    assert_eq!(cond(s, CONDITION_RECONCILING), ("False".into(), at(20)));
    assert_eq!(cond(s, CONDITION_STALLED), ("False".into(), at(10)));
    assert_eq!(s.completion_time, Some(Time(at(20))));
}

#[test]
fn a_whole_deletion_tells_its_story_in_events() {
    let mut obj = fresh();
    let mut story = vec![];
    for (now, observation) in [
        (10, no_credentials()),
        (20, no_credentials()),
        (30, start()),
        (31, refused("Application.ChangerOrderRunning")),
        (40, start()),
        (41, accepted()),
        (43, start()),
        (43, polled(1)),
        (50, start()),
        (50, polled(1)),
        (60, start()),
        (60, polled(2)),
    ] {
        let d = decide(&obj, &inputs_at(now), observation);
        story.extend(
            d.events
                .iter()
                .map(|e| (e.warning, e.reason.clone(), e.note.clone())),
        );
        obj = apply(&obj, &d);
    }
    let reasons: Vec<(bool, &str)> = story.iter().map(|(w, r, _)| (*w, r.as_str())).collect();
    assert_eq!(
        reasons,
        vec![
            (true, "CredentialsNotFound"),
            (false, "Submitting"),
            (true, "Retrying"),
            (false, "Submitting"),
            (false, "WaitingForChangeOrder"),
            (false, "Succeeded"),
        ]
    );
    let note = |reason: &str| {
        story
            .iter()
            .rev()
            .find(|(_, r, _)| r == reason)
            .unwrap()
            .2
            .clone()
    };
    assert!(
        !note("Submitting").contains("req-err"),
        "{}",
        note("Submitting")
    );
    assert!(note("Retrying").contains("Application.ChangerOrderRunning"));
    assert!(note("Retrying").contains("req-err"));
    assert!(note("WaitingForChangeOrder").contains("co-1"));
    assert!(note("WaitingForChangeOrder").contains("req-ok"));
    assert!(note("Succeeded").contains("co-1"));
    let s = status(&obj);
    assert_eq!(s.phase, Some(Phase::Succeeded));
    assert_eq!(s.attempts, Some(2));
    assert_eq!(s.trace_id.as_deref(), Some("trace-1"));
    assert_eq!(
        s.error_code, None,
        "a later success clears the refused attempt's code"
    );
    assert_eq!(s.change_order_status.as_deref(), Some("Succeeded"));
}

#[test]
fn in_progress_without_a_change_order_is_not_resent() {
    let mut broken = in_progress();
    broken.status.as_mut().unwrap().change_order_id = None;
    let d = decide(&broken, &inputs_at(20), start());
    assert_eq!(
        (d.status.phase, d.status.reason()),
        (Some(Phase::Failed), Some("OutcomeUnknown"))
    );
    assert_eq!(d.action, Action::Done);
}

#[test]
fn an_object_without_creation_time_or_generation_still_decides() {
    let mut obj = fresh();
    obj.metadata.creation_timestamp = None;
    obj.metadata.generation = None;
    let d = decide(&obj, &inputs_at(10), start());
    assert_eq!(d.status.phase, Some(Phase::Submitting));
    assert_eq!(d.status.observed_generation, None);
}

// ---- Lost answers, already gone, the queue: details beyond the table ----------------------

#[test]
fn adopting_records_the_change_order_and_polls_it_next() {
    let d = decide(
        &unresolved(),
        &inputs_at(12),
        evidence_terminating(vec![found("co-9", Some(11), 1)], &["i-1", "i-2"], &["i-2"]),
    );
    let s = &d.status;
    assert_eq!(s.change_order_id.as_deref(), Some("co-9"));
    assert_eq!(
        s.change_order_status, None,
        "a running order is not recorded step by step"
    );
    assert_eq!(
        s.error_code, None,
        "the lost answer's error no longer applies"
    );
    assert_eq!(s.attempts, Some(1));
    assert!(d.events[0].note.contains("co-9"), "{:?}", d.events);
    let adopted = apply(&unresolved(), &d);
    let d = decide(&adopted, &inputs_at(13), start());
    assert_eq!(
        d.action,
        Action::PollChangeOrder {
            change_order_id: "co-9".into()
        }
    );
    let d = decide(&adopted, &inputs_at(13), polled(2));
    assert_eq!(d.status.reason(), Some("Succeeded"));
}

#[test]
fn a_lost_answer_keeps_its_request_id_and_code_for_support() {
    let d = decide(
        &submitting(),
        &inputs_at(11),
        Observation::DeleteResult(Err(api_error("InternalError", 500))),
    );
    assert_eq!(d.status.request_id.as_deref(), Some("req-err"));
    assert_eq!(d.status.error_code.as_deref(), Some("InternalError"));
    assert_eq!(d.status.next_attempt_time, None);
}

#[test]
fn resolving_writes_nothing_while_nothing_changes() {
    // Each resolve ends in a decision whose status equals what the caller already stored, so
    // repeated looks cost SAE calls but no status writes (and no reconcile loop on our writes).
    let cases = [
        (evidence(vec![], &["i-1", "i-2"]), 20, 30),
        (evidence(vec![], &["i-2"]), 30, 60),
        (
            Observation::ResolveResult(Err(api_error("Throttling.User", 400))),
            30,
            60,
        ),
    ];
    for (observation, first, later) in cases {
        let once = step(&unresolved(), first, observation.clone());
        let restarted = decide(&once, &inputs_at(later), start());
        assert_eq!(
            Some(&restarted.status),
            once.status.as_ref(),
            "{observation:?}"
        );
        assert!(
            matches!(restarted.action, Action::ResolveAttempt { .. }),
            "{observation:?}"
        );
        let mut repeated = observation.clone();
        if let Observation::ResolveResult(Err(SaeError::Api { request_id, .. })) = &mut repeated {
            *request_id = Some("req-other".into());
        }
        let again = decide(&once, &inputs_at(later), repeated);
        assert_eq!(Some(&again.status), once.status.as_ref(), "{observation:?}");
        assert!(again.events.is_empty());
    }
}

#[test]
fn the_proof_time_is_rounded_up_and_follows_resolve_after() {
    let late = Inputs {
        resolve_after: SignedDuration::from_millis(30_500),
        ..inputs_at(20)
    };
    // Written ahead at 10 (to the second), sent by 10 + 1 + 5, acted on by SAE by + 30.5.
    let d = decide(&unresolved(), &late, evidence(vec![], &["i-1", "i-2"]));
    assert_eq!(d.action, Action::WaitUntil(at(47)));
    // One second before it: still waiting; at it: not executed.
    let at_46 = Inputs {
        now: at(46),
        ..late
    };
    let d = decide(&unresolved(), &at_46, evidence(vec![], &["i-1", "i-2"]));
    assert_eq!(d.status.phase, Some(Phase::Submitting));
    let at_47 = Inputs {
        now: at(47),
        ..late
    };
    let d = decide(&unresolved(), &at_47, evidence(vec![], &["i-1", "i-2"]));
    assert_eq!(d.status.phase, Some(Phase::Retrying));
    // The window for adoption moves with resolve_after too: up to 46.5 + 10 s.
    let d = decide(
        &unresolved(),
        &at_47,
        evidence(vec![found("co-9", Some(56), 0)], &["i-1", "i-2"]),
    );
    assert_eq!(d.status.change_order_id.as_deref(), Some("co-9"));
    let d = decide(
        &unresolved(),
        &at_47,
        evidence(vec![found("co-9", Some(57), 0)], &["i-1", "i-2"]),
    );
    assert_eq!(d.status.change_order_id, None);
    // And it starts one second plus the slack before the write-ahead.
    let d = decide(
        &unresolved(),
        &at_47,
        evidence(vec![found("co-9", Some(-1), 0)], &["i-1", "i-2"]),
    );
    assert_eq!(d.status.change_order_id.as_deref(), Some("co-9"));
    let d = decide(
        &unresolved(),
        &at_47,
        evidence(vec![found("co-9", Some(-2), 0)], &["i-1", "i-2"]),
    );
    assert_eq!(d.status.change_order_id, None);
}

/// The first poll of our own change order (sent at 10, accepted at 11, polled at 12).
fn first_polled(create_time: &str) -> (SaeInstanceDeletion, Decision) {
    let sent = step(&submitting(), 11, accepted());
    let mut co = order(1);
    co.create_time = Some(create_time.into());
    let d = decide(
        &sent,
        &inputs_at(12),
        Observation::ChangeOrderResult(Ok(co)),
    );
    (sent, d)
}

#[test]
fn the_zone_is_learned_from_the_first_poll_of_our_own_change_order() {
    // T0 is 00:00 UTC; our change order was created at about 00:00:11 UTC.
    for (written, zone) in [
        ("2026-01-01 08:00:11", Some("+08:00")),
        ("2026-01-01 00:00:11", Some("+00:00")),
        ("2025-12-31 19:00:10.250", Some("-05:00")),
        ("2026-01-01T05:45:12", Some("+05:45")),
        ("2026-01-01T00:00:11Z", Some("named")),
        ("1767225611000", Some("named")),
        // Not a time we can place near the send: nothing learned, nothing guessed.
        ("2026-01-01 08:07:41", None),
        ("2026-01-03 00:00:11", None),
        ("soon", None),
    ] {
        let (_, d) = first_polled(written);
        assert_eq!(d.status.create_time_zone.as_deref(), zone, "{written}");
        assert_eq!(d.status.phase, Some(Phase::InProgress), "{written}");
    }
}

#[test]
fn a_poll_long_after_the_send_teaches_no_zone() {
    let sent = step(&submitting(), 11, accepted());
    let mut co = order(1);
    co.create_time = Some("2026-01-01 08:00:11".into());
    let d = decide(
        &sent,
        &inputs_at(10 + 299),
        Observation::ChangeOrderResult(Ok(co.clone())),
    );
    assert_eq!(
        d.status.create_time_zone.as_deref(),
        Some("+08:00"),
        "a later poll still teaches"
    );
    let d = decide(
        &sent,
        &inputs_at(10 + 301),
        Observation::ChangeOrderResult(Ok(co)),
    );
    assert_eq!(
        d.status.create_time_zone, None,
        "too long after the send to place it"
    );
}

fn civil_row(id: &str, text: &str, status: i64) -> FoundChangeOrder {
    FoundChangeOrder {
        change_order_id: id.into(),
        created: Some(SaeTime::Civil(text.parse().unwrap())),
        finished: None,
        status,
        typed: true,
    }
}

fn evidence_in(
    zone: CreateTimeZone,
    orders: Vec<FoundChangeOrder>,
    existing: &[&str],
) -> Observation {
    let Observation::ResolveResult(Ok(mut e)) = evidence(orders, existing) else {
        unreachable!()
    };
    e.zone = zone;
    Observation::ResolveResult(Ok(e))
}

#[test]
fn an_unknown_zone_never_proves_anything_absent() {
    let unknown = CreateTimeZone::Unknown;
    let both = &["i-1", "i-2"];
    // Long past the last moment, nothing listed, instances all there: still not "not executed".
    let d = decide(
        &unresolved(),
        &inputs_at(200),
        evidence_in(unknown, vec![], both),
    );
    assert_eq!(d.status.phase, Some(Phase::Submitting));
    assert!(
        d.status
            .message
            .as_deref()
            .unwrap()
            .contains("zone SAE writes change-order times in")
    );
    // Nor "already deleted" when the instances are gone.
    let d = decide(
        &unresolved(),
        &inputs_at(200),
        evidence_in(unknown, vec![], &[]),
    );
    assert_eq!(d.status.phase, Some(Phase::Submitting));
    // A zone-less row that could be ours in some zone is never adopted...
    let row = civil_row("co-9", "2026-01-01 08:00:11", 2);
    let d = decide(
        &unresolved(),
        &inputs_at(200),
        evidence_in(unknown, vec![row.clone()], &[]),
    );
    assert_eq!(d.status.change_order_id, None);
    assert!(
        d.status
            .message
            .as_deref()
            .unwrap()
            .contains("co-9 (its CreateTime names no zone")
    );
    // ...but once the zone is known it is placed and adopted.
    let known = CreateTimeZone::Offset(jiff::tz::Offset::constant(8));
    let d = decide(
        &unresolved(),
        &inputs_at(200),
        evidence_in(known, vec![row], &[]),
    );
    assert_eq!(d.status.change_order_id.as_deref(), Some("co-9"));
    assert_eq!(d.status.phase, Some(Phase::Succeeded));
    // In the wrong zone the same row is far outside the window: ours is not there, and
    // with all instances present after the last moment that proves "not executed".
    let d = decide(
        &unresolved(),
        &inputs_at(200),
        evidence_in(
            CreateTimeZone::Offset(jiff::tz::Offset::UTC),
            vec![civil_row("co-9", "2026-01-01 08:00:11", 0)],
            both,
        ),
    );
    assert_eq!(d.status.phase, Some(Phase::Retrying));
    // A row two days old is outside the window in every zone and blocks nothing.
    let old = civil_row("co-old", "2025-12-30 08:00:11", 2);
    let d = decide(
        &unresolved(),
        &inputs_at(200),
        evidence_in(unknown, vec![old], both),
    );
    assert!(!d.status.message.as_deref().unwrap().contains("co-old"));
}

#[test]
fn an_incomplete_list_proves_nothing_absent() {
    let Observation::ResolveResult(Ok(mut e)) = evidence(vec![], &["i-1", "i-2"]) else {
        unreachable!()
    };
    e.complete = false;
    let d = decide(
        &unresolved(),
        &inputs_at(200),
        Observation::ResolveResult(Ok(e)),
    );
    assert_eq!(d.status.phase, Some(Phase::Submitting));
    assert!(
        d.status
            .message
            .as_deref()
            .unwrap()
            .contains("did not reach back to")
    );
}

#[test]
fn the_list_is_read_back_past_the_window_start_in_every_zone() {
    let since = at(-1);
    let absolute = |s| found("co", Some(s), 2);
    let zone = CreateTimeZone::Named;
    assert!(
        listed_past(&absolute(-12), since, zone),
        "more than the slack before"
    );
    assert!(
        !listed_past(&absolute(-11), since, zone),
        "within the slack: could still be ours"
    );
    assert!(
        !listed_past(&found("co", None, 2), since, zone),
        "an unreadable time never is"
    );
    let civil = civil_row("co", "2026-01-01 08:00:00", 2);
    assert!(listed_past(
        &civil,
        since,
        CreateTimeZone::Offset(jiff::tz::Offset::constant(9))
    ));
    assert!(!listed_past(
        &civil,
        since,
        CreateTimeZone::Offset(jiff::tz::Offset::constant(8))
    ));
    assert!(
        !listed_past(&civil, since, CreateTimeZone::Unknown),
        "in some zone it is later"
    );
    let day_before = civil_row("co", "2025-12-30 12:00:00", 2);
    assert!(listed_past(&day_before, since, CreateTimeZone::Unknown));
}

#[test]
fn a_list_covers_the_window_only_when_read_newest_first_past_its_start() {
    let since = at(-1);
    let zone = CreateTimeZone::Named;
    let row = |s| found("co", Some(s), 2);
    assert!(list_covers(&[row(30), row(5), row(-20)], since, zone));
    assert!(
        !list_covers(&[row(30), row(5)], since, zone),
        "not back far enough"
    );
    assert!(
        !list_covers(&[row(-20), row(30)], since, zone),
        "oldest first: an old row first says nothing of the newer ones after it"
    );
    assert!(
        !list_covers(&[row(5), row(30), row(-20)], since, zone),
        "out of order before the old row: more may follow"
    );
    assert!(list_covers(
        &[row(30), found("co-x", None, 2), row(-20)],
        since,
        zone
    ));
}

#[test]
fn an_attempt_that_was_not_sent_is_taken_back_and_started_over() {
    let obj = submitting();
    assert_eq!(status(&obj).attempts, Some(1));
    let d = decide(
        &obj,
        &inputs_at(16),
        Observation::NotSent {
            why: "the lease could not be confirmed".into(),
        },
    );
    assert_eq!(d.status.phase, Some(Phase::Pending));
    assert_eq!(d.status.attempts, Some(0));
    assert_eq!(d.action, Action::WaitUntil(at(17)));
    assert!(
        d.status
            .message
            .as_deref()
            .unwrap()
            .contains("was not sent: the lease could not be confirmed")
    );
    // The next start writes a new attempt ahead, numbered 1 again.
    let d = decide(&apply(&obj, &d), &inputs_at(17), start());
    assert!(matches!(d.action, Action::SendDelete { .. }));
    assert_eq!(d.status.attempts, Some(1));
    assert_eq!(d.status.last_attempt_time, Some(Time(at(17))));
}

#[test]
fn proven_not_executed_retries_through_the_queue() {
    let retry = step(&unresolved(), 56, evidence(vec![], &["i-1", "i-2"]));
    assert_eq!(status(&retry).next_attempt_time, Some(Time(at(60))));
    // Backoff over but the app is busy: wait for it, no send.
    let waiting = step(&retry, 60, start_with(busy()));
    assert_eq!(status(&waiting).reason(), Some("WaitingForApplication"));
    assert_eq!(status(&waiting).next_attempt_time, None);
    let d = decide(&waiting, &inputs_at(60), start());
    assert_eq!(
        d.action,
        Action::SendDelete {
            instance_ids: ids(&["i-1", "i-2"])
        }
    );
    assert_eq!(d.status.attempts, Some(2));
    assert_eq!(d.status.last_attempt_time, Some(Time(at(60))));
}

#[test]
fn a_crash_during_the_gone_check_reaches_the_same_conclusion() {
    let obj = submitting();
    let d = decide(&obj, &inputs_at(11), refused("InvalidParameter.NotEmpty"));
    assert!(matches!(d.action, Action::CheckGone { .. }));
    assert_eq!(Some(&d.status), obj.status.as_ref(), "nothing to write");
    // The process dies here; the next reconcile finds Submitting and resolves it instead.
    let d = decide(&obj, &inputs_at(30), start());
    assert!(matches!(d.action, Action::ResolveAttempt { .. }));
    let d = decide(&apply(&obj, &d), &inputs_at(30), evidence(vec![], &["i-8"]));
    assert_eq!(d.status.reason(), Some("AlreadyDeleted"));
}

#[test]
fn waiting_for_the_app_keeps_the_error_of_the_refused_attempt() {
    let waiting = waiting_for_app();
    let s = status(&waiting);
    assert_eq!(s.phase, Some(Phase::Pending));
    assert_eq!(s.attempts, Some(1));
    assert_eq!(
        s.error_code.as_deref(),
        Some("Application.ChangerOrderRunning")
    );
    assert_eq!(s.next_attempt_time, None);
}

// ---- SAE's code table and the CRD's reasons ----------------------------------------------------

#[test]
fn every_refusal_of_the_code_table_is_a_reason_of_the_same_name() {
    use crate::sae::codes::{CODES, UNLISTED};
    for info in CODES.iter().chain([&UNLISTED]) {
        let reason = Reason::from(info.refusal);
        assert_eq!(reason.as_str(), format!("{:?}", info.refusal));
        assert!(Reason::ALL.contains(&reason));
    }
}
