//! The decision table: one row per (state, observation), each with the status, action and events it must produce.

use super::*;

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
            name: "start while Submitting (crash after write-ahead): look once SAE's lists settled, never resend",
            obj: submitting(),
            now: 40,
            observation: start(),
            phase: Submitting,
            reason: "OutcomeUnknown",
            attempts: 1,
            action: retry_in(66),
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
            name: "SAE unreachable (connection refused, nothing sent): Retrying, attempt taken back",
            obj: submitting(),
            now: 11,
            observation: Observation::DeleteResult(Err(SaeError::NotSent {
                operation: "DeleteInstances",
                endpoint: "sae.cn-hangzhou.aliyuncs.com".into(),
                detail: "connection refused".into(),
            })),
            phase: Retrying,
            reason: "SaeUnreachable",
            attempts: 0,
            action: retry_in(15),
            events: &[(true, "SaeUnreachable")],
            message: &[
                "SAE is unreachable since",
                "connection refused",
                "nothing was sent",
                "does not count against retry.maxAttempts",
            ],
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
            name: "ambiguous (5xx): Submitting/OutcomeUnknown, look once SAE's lists settled, never resend",
            obj: submitting(),
            now: 11,
            observation: Observation::DeleteResult(Err(api_error("InternalError", 500))),
            phase: Submitting,
            reason: "OutcomeUnknown",
            attempts: 1,
            action: retry_in(66),
            events: &[(true, "OutcomeUnknown")],
            message: &[
                "attempt 1 for app app-1 was lost",
                "InternalError",
                "req-err",
                "checking SAE's change orders",
            ],
        },
        Row {
            name: "ambiguous (no answer): look once SAE's lists settled",
            obj: submitting(),
            now: 11,
            observation: no_answer(),
            phase: Submitting,
            reason: "OutcomeUnknown",
            attempts: 1,
            action: retry_in(66),
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
    // The attempt was written ahead at t=10: its change order carries 10 - 10 - 1 s or later; the
    // list is read back a margin of 60 s further.
    let resolve = Action::ResolveAttempt {
        instance_ids: ids(&["i-1", "i-2"]),
        since: at(-1 - 60),
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
            now: 80,
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
            now: 80,
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
            now: 72,
            observation: evidence_terminating(vec![found("co-9", Some(11), 1)], both, &["i-1"]),
            phase: InProgress,
            reason: "WaitingForChangeOrder",
            attempts: 1,
            action: wait(102),
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
            now: 90,
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
            action: wait(114),
            events: &[],
            message: &[
                "cannot be told apart from others': co-b, co-a;",
                "nothing is sent again",
            ],
        },
        Row {
            name: "a: one in the window and one whose time cannot be read: keep looking",
            obj: unresolved(),
            now: 90,
            observation: evidence(
                vec![found("co-a", Some(0), 0), found("co-undated", None, 0)],
                both,
            ),
            phase: Submitting,
            reason: "OutcomeUnknown",
            attempts: 1,
            action: wait(114),
            events: &[],
            message: &["co-a, co-undated (its CreateTime cannot be read)"],
        },
        Row {
            name: "a: one in the window and a row without a type: keep looking",
            obj: unresolved(),
            now: 90,
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
            action: wait(114),
            events: &[],
            message: &["co-a, co-x (it names no change-order type)"],
        },
        Row {
            name: "a: an executing one while none of ours is terminating: not adopted, keep looking",
            obj: unresolved(),
            now: 90,
            observation: evidence(vec![found("co-9", Some(11), 1)], both),
            phase: Submitting,
            reason: "OutcomeUnknown",
            attempts: 1,
            action: wait(114),
            events: &[],
            message: &["co-9 (it is executing but none of instances i-1, i-2 is being terminated)"],
        },
        Row {
            name: "a: a succeeded one while one of ours still runs is someone else's: not ours, not executed",
            obj: unresolved(),
            now: 120,
            observation: evidence(vec![found("co-console", Some(12), 2)], &["i-1", "i-3"]),
            phase: Submitting,
            reason: "OutcomeUnknown",
            attempts: 1,
            action: wait(174),
            events: &[],
            message: &["instances i-2 of app app-1 are gone while i-1 still exist"],
        },
        Row {
            name: "a: one that ended before the window began (a console deletion just before ours): not ours",
            obj: unresolved(),
            now: 90,
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
            now: 120,
            observation: evidence(vec![found("co-console", Some(12), 2)], both),
            phase: Retrying,
            reason: "Retrying",
            attempts: 1,
            action: wait(124),
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
            now: 90,
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
            now: 90,
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
            now: 72,
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
            now: 72,
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
            now: 72,
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
            now: 116,
            observation: evidence(vec![found("co-late", Some(67), 1)], both),
            phase: Retrying,
            reason: "Retrying",
            attempts: 1,
            action: wait(120),
            events: &[(true, "Retrying")],
            message: &[
                "attempt 1 was not executed",
                "106 s after it was sent",
                "i-1, i-2 all still exist",
                "trying again at 2026-01-01T00:02:00Z",
            ],
        },
        Row {
            name: "c: proven not executed on the last allowed attempt: RetriesExhausted",
            obj: unresolved_with(one_attempt),
            now: 116,
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
            name: "d: a look that began before SAE's lists settled (t0 + 1 + 5 + 40 + 10): proves nothing, look then",
            obj: unresolved(),
            now: 60,
            observation: evidence(vec![found("co-old", Some(-11), 2)], both),
            phase: Submitting,
            reason: "OutcomeUnknown",
            attempts: 1,
            action: wait(66),
            events: &[],
            message: &[
                "from 2026-01-01T00:01:06Z on (SAE's lists may lag its writes by up to 10 s)",
            ],
        },
        // e. Some instances gone, no change order of ours.
        Row {
            name: "e: some ids gone without a change order of ours: keep checking",
            obj: unresolved(),
            now: 90,
            observation: evidence(vec![], &["i-2", "i-3"]),
            phase: Submitting,
            reason: "OutcomeUnknown",
            attempts: 1,
            action: wait(114),
            events: &[],
            message: &[
                "instances i-1 of app app-1 are gone while i-2 still exist",
                "something else is deleting them",
            ],
        },
        Row {
            name: "e: even after resolve_after: keep checking, at most every 2 minutes, never resend",
            obj: unresolved(),
            now: 200,
            observation: evidence(vec![], &["i-1"]),
            phase: Submitting,
            reason: "OutcomeUnknown",
            attempts: 1,
            action: wait(320),
            events: &[],
            message: &["instances i-2 of app app-1 are gone"],
        },
        // f. The evidence could not be read.
        Row {
            name: "f: evidence unreadable: keep checking, interval grows from 5 s",
            obj: unresolved(),
            now: 72,
            observation: Observation::ResolveResult(Err(api_error("Throttling.User", 400))),
            phase: Submitting,
            reason: "OutcomeUnknown",
            attempts: 1,
            action: wait(78),
            events: &[],
            message: &[
                "cannot check whether DeleteInstances attempt 1 was executed (checking again)",
                "Throttling.User",
            ],
        },
        Row {
            name: "f: evidence unreadable for long: at most every 2 minutes",
            obj: unresolved(),
            now: 200,
            observation: Observation::ResolveResult(Err(SaeError::NoAnswer {
                operation: "ListChangeOrders",
                detail: "timed out".into(),
            })),
            phase: Submitting,
            reason: "OutcomeUnknown",
            attempts: 1,
            action: wait(320),
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
    check_all(rows());
}

#[test]
fn every_recovery_transition_in_the_table() {
    check_all(recovery_rows());
}

/// Checks every row, and names each that failed (their assertions are printed as they fail).
fn check_all(rows: Vec<Row>) {
    let failed: Vec<&str> = rows
        .into_iter()
        .filter_map(|row| {
            let name = row.name;
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| check_row(row)))
                .err()
                .map(|_| name)
        })
        .collect();
    assert!(failed.is_empty(), "rows that failed: {failed:#?}");
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
