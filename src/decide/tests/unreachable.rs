//! SAE unreachable: a request that never reached SAE (connection refused, DNS, TLS handshake) is
//! not an attempt SAE refused. It is taken back, retried with backoff until the deadline, and the
//! status says since when SAE is unreachable (`saeUnreachableSince`), never that SAE refused.

use super::*;
use crate::decide::retry::unreachable_delay;

fn not_sent_error() -> SaeError {
    SaeError::NotSent {
        operation: "DeleteInstances",
        endpoint: "https://sae.cn-hangzhou.aliyuncs.com".into(),
        detail: "tcp connect error: Connection refused (os error 111)".into(),
    }
}

fn unreachable() -> Observation {
    Observation::DeleteResult(Err(not_sent_error()))
}

fn with_max_attempts(max_attempts: i32) -> SaeInstanceDeletion {
    object_with(
        SaeInstanceDeletionSpec {
            retry: RetryPolicy {
                max_attempts,
                ..RetryPolicy::default()
            },
            ..spec()
        },
        None,
    )
}

/// SAE unreachable for attempt 1, written ahead at t=10, at t=11.
fn down() -> SaeInstanceDeletion {
    step(&submitting(), 11, unreachable())
}

/// What each send meets, in order.
#[derive(Clone, Copy, Debug)]
enum Meets {
    Unreachable,
    Busy,
    Accepted,
}

/// Runs `obj` from `now` through its sends (one second per send), its waits and its polls until
/// it is final. Returns it and the waits between sends, in seconds.
fn run(
    mut obj: SaeInstanceDeletion,
    mut now: i64,
    sends: &[Meets],
) -> (SaeInstanceDeletion, Vec<i64>) {
    let mut sends = sends.iter().copied();
    let mut waits = vec![];
    for _ in 0..200 {
        let d = decide(&obj, &inputs_at(now), start());
        obj = apply(&obj, &d);
        match d.action {
            Action::SendDelete { .. } => {}
            Action::WaitUntil(t) => {
                now = t.as_second() - at(0).as_second();
                continue;
            }
            Action::Done => return (obj, waits),
            other => panic!("unexpected {other:?}"),
        }
        now += 1;
        let observation = match sends.next().expect("a planned send") {
            Meets::Unreachable => unreachable(),
            Meets::Busy => refused("Application.ChangerOrderRunning"),
            Meets::Accepted => accepted(),
        };
        let d = decide(&obj, &inputs_at(now), observation);
        obj = apply(&obj, &d);
        match d.action {
            Action::WaitUntil(t) => {
                let next = t.as_second() - at(0).as_second();
                waits.push(next - now);
                now = next;
            }
            Action::FirstPoll { at: poll_at, .. } => {
                now = poll_at.as_second() - at(0).as_second();
                let d = decide(&obj, &inputs_at(now), polled(2));
                return (apply(&obj, &d), waits);
            }
            Action::Done => return (obj, waits),
            other => panic!("unexpected {other:?}"),
        }
    }
    panic!("no final phase: {:#?}", obj.status);
}

#[test]
fn a_send_that_cannot_reach_sae_is_taken_back_and_says_sae_is_unreachable() {
    let d = decide(&submitting(), &inputs_at(11), unreachable());
    let s = &d.status;
    assert_eq!(
        (s.phase, s.reason()),
        (Some(Phase::Retrying), Some("SaeUnreachable"))
    );
    assert_eq!(s.attempts, Some(0), "nothing reached SAE: not an attempt");
    assert_eq!(s.sae_unreachable_since, Some(Time(at(11))));
    assert_eq!(s.error_code, None);
    // The first wait is the initial delay (5 s), jittered (0.75): t=11 + 3.75, rounded up.
    assert_eq!(s.next_attempt_time, Some(Time(at(15))));
    assert_eq!(d.action, Action::WaitUntil(at(15)));
    let message = s.message.as_deref().unwrap();
    for part in [
        "SAE is unreachable since 2026-01-01T00:00:11Z",
        "cannot connect to https://sae.cn-hangzhou.aliyuncs.com",
        "Connection refused",
        "nothing was sent",
        "does not count against retry.maxAttempts (0 of 10 used)",
        "DeleteInstances is tried again at 2026-01-01T00:00:15Z",
    ] {
        assert!(message.contains(part), "{part:?} missing in {message}");
    }
    assert!(!message.contains("SAE refused"), "{message}");
    assert_eq!(d.events.len(), 1, "{:?}", d.events);
    assert!(d.events[0].warning && d.events[0].reason == "SaeUnreachable");
    assert!(!d.events[0].note.contains("error code"), "{:?}", d.events);
    // Every condition carries the reason.
    assert!(s.conditions.iter().all(|c| c.reason == "SaeUnreachable"));
}

#[test]
fn the_outage_keeps_its_start_and_the_waits_grow_with_it_up_to_max_delay() {
    // The backoff over, the next start writes attempt 1 ahead again (the taken-back one).
    let d = decide(&down(), &inputs_at(15), start());
    assert_eq!(d.status.attempts, Some(1));
    assert_eq!(d.status.phase, Some(Phase::Submitting));
    assert_eq!(
        d.status.sae_unreachable_since,
        Some(Time(at(11))),
        "a send does not end the outage; only an answer does"
    );
    let again = apply(&down(), &d);
    let d = decide(&again, &inputs_at(21), unreachable());
    assert_eq!(d.status.sae_unreachable_since, Some(Time(at(11))));
    assert_eq!(d.status.attempts, Some(0));
    // Down for 10 s: wait 10 s · 0.75, from t=21.
    assert_eq!(d.action, Action::WaitUntil(at(29)));
    assert!(
        d.status
            .message
            .as_deref()
            .unwrap()
            .contains("unreachable since 2026-01-01T00:00:11Z")
    );

    let policy = RetryPolicy::default();
    let secs = |d: Duration| d.as_secs_f64();
    assert_eq!(
        secs(unreachable_delay(&policy, SignedDuration::ZERO, 1.0)),
        5.0
    );
    assert_eq!(
        secs(unreachable_delay(
            &policy,
            SignedDuration::from_secs(40),
            1.0
        )),
        40.0
    );
    assert_eq!(
        secs(unreachable_delay(
            &policy,
            SignedDuration::from_secs(40),
            0.0
        )),
        20.0,
        "jittered between half and all, as the refusals' backoff"
    );
    assert_eq!(
        secs(unreachable_delay(
            &policy,
            SignedDuration::from_hours(5),
            1.0
        )),
        300.0,
        "never more than maxDelaySeconds"
    );
}

#[test]
fn five_unreachable_sends_with_max_attempts_5_then_success_is_one_attempt() {
    use Meets::*;
    let plan = [
        Unreachable,
        Unreachable,
        Unreachable,
        Unreachable,
        Unreachable,
        Accepted,
    ];
    let (obj, waits) = run(with_max_attempts(5), 10, &plan);
    let s = status(&obj);
    assert_eq!(
        (s.phase, s.reason()),
        (Some(Phase::Succeeded), Some("Succeeded")),
        "{s:#?}"
    );
    assert_eq!(s.attempts, Some(1));
    assert_eq!(s.sae_unreachable_since, None, "SAE answered");
    assert_eq!(s.change_order_id.as_deref(), Some("co-1"));
    // 5 s, then the outage's length so far (5, 10, 19, 35 s), each · 0.75 jitter and rounded
    // up to the second: the waits grow as the refusals' backoff does.
    assert_eq!(waits, vec![4, 4, 8, 15, 27]);
}

#[test]
fn an_outage_longer_than_every_backoff_ends_only_at_the_deadline() {
    let obj = with_max_attempts(2);
    let plan = [Meets::Unreachable; 100];
    let (obj, waits) = run(obj, 10, &plan);
    let s = status(&obj);
    assert_eq!(
        (s.phase, s.reason()),
        (Some(Phase::Failed), Some("DeadlineExceeded")),
        "{s:#?}"
    );
    assert!(waits.len() > 2, "more sends than maxAttempts: {waits:?}");
    assert!(waits.iter().all(|w| *w <= 300), "{waits:?}");
    assert_eq!(s.attempts, Some(0));
    assert_eq!(
        s.sae_unreachable_since,
        Some(Time(at(11))),
        "kept: it explains the end"
    );
    assert_eq!(s.next_attempt_time, None);
    let message = s.message.as_deref().unwrap();
    for part in [
        "activeDeadlineSeconds (3600 s) passed while SAE was unreachable since 2026-01-01T00:00:11Z",
        "nothing was sent to SAE",
        "no instance was deleted",
    ] {
        assert!(message.contains(part), "{part:?} missing in {message}");
    }
    assert!(!message.contains("refused"), "{message}");
}

#[test]
fn mixed_outages_and_refusals_count_only_the_refusals() {
    use Meets::*;
    let plan = [Busy, Unreachable, Unreachable, Busy, Unreachable, Busy];
    let (obj, _) = run(with_max_attempts(3), 10, &plan);
    let s = status(&obj);
    assert_eq!(
        (s.phase, s.reason()),
        (Some(Phase::Failed), Some("RetriesExhausted")),
        "{s:#?}"
    );
    assert_eq!(s.attempts, Some(3), "six sends, three of them answered");
    assert_eq!(s.sae_unreachable_since, None);
    let message = s.message.as_deref().unwrap();
    assert!(
        message.contains("all 3 DeleteInstances attempts"),
        "{message}"
    );
    assert!(
        message.contains("Application.ChangerOrderRunning"),
        "{message}"
    );

    // The same with one more attempt allowed: the fourth answer accepts.
    let plan = [
        Busy,
        Unreachable,
        Busy,
        Unreachable,
        Busy,
        Unreachable,
        Accepted,
    ];
    let (obj, _) = run(with_max_attempts(4), 10, &plan);
    let s = status(&obj);
    assert_eq!(s.phase, Some(Phase::Succeeded), "{s:#?}");
    assert_eq!(s.attempts, Some(4));
}

#[test]
fn any_answer_ends_the_outage() {
    // Refused: counted, the refusal's backoff, no longer "unreachable".
    let again = step(&down(), 15, start());
    let d = decide(
        &again,
        &inputs_at(16),
        refused("Application.ChangerOrderRunning"),
    );
    assert_eq!(
        (d.status.phase, d.status.reason()),
        (Some(Phase::Retrying), Some("Retrying"))
    );
    assert_eq!(d.status.attempts, Some(1));
    assert_eq!(d.status.sae_unreachable_since, None);
    assert!(d.events.iter().any(|e| e.reason == "Retrying"));

    // An answer lost on its way back may have reached SAE: resolved as usual, not "unreachable".
    let d = decide(&again, &inputs_at(16), no_answer());
    assert_eq!(
        (d.status.phase, d.status.reason()),
        (Some(Phase::Submitting), Some("OutcomeUnknown"))
    );
    assert_eq!(d.status.attempts, Some(1));
    assert_eq!(d.status.sae_unreachable_since, None);

    // Accepted.
    let d = decide(&again, &inputs_at(16), accepted());
    assert_eq!(d.status.phase, Some(Phase::InProgress));
    assert_eq!(d.status.sae_unreachable_since, None);
}

#[test]
fn unreachable_at_the_deadline_says_so_and_names_earlier_refusals() {
    // Refused once, then unreachable close to the deadline: the wait ends at the deadline.
    let late = step(&fresh(), 3570, start());
    let late = step(&late, 3571, refused("Application.ChangerOrderRunning"));
    let late = step(&late, 3580, start());
    let d = decide(&late, &inputs_at(3599), unreachable());
    assert_eq!(d.status.reason(), Some("SaeUnreachable"));
    assert_eq!(d.action, Action::WaitUntil(at(3600)));
    let d = decide(&apply(&late, &d), &inputs_at(3600), start());
    let s = &d.status;
    assert_eq!(
        (s.phase, s.reason()),
        (Some(Phase::Failed), Some("DeadlineExceeded"))
    );
    assert_eq!(s.sae_unreachable_since, Some(Time(at(3599))));
    let message = s.message.as_deref().unwrap();
    assert!(
        message.contains("SAE was unreachable since 2026-01-01T00:59:59Z")
            && message.contains("(attempts before that: 1, none executed)"),
        "{message}"
    );

    // A send that fails to connect after the deadline is recorded, then the object ends.
    let late = step(&fresh(), 3590, start());
    let d = decide(&late, &inputs_at(3601), unreachable());
    assert_eq!(
        (d.status.phase, d.status.reason()),
        (Some(Phase::Failed), Some("DeadlineExceeded"))
    );
    assert_eq!(d.status.attempts, Some(0));
    assert!(
        d.status
            .message
            .as_deref()
            .unwrap()
            .contains("SAE was unreachable since 2026-01-01T01:00:01Z"),
        "{:?}",
        d.status.message
    );
}

#[test]
fn a_dry_run_check_that_cannot_reach_sae_is_not_counted_either() {
    let checking = step(&dry(), 10, start());
    let observation = Observation::DryRunResult(Err(not_sent_error()));
    let d = decide(&checking, &inputs_at(11), observation);
    let s = &d.status;
    assert_eq!(
        (s.phase, s.reason()),
        (Some(Phase::Retrying), Some("SaeUnreachable"))
    );
    assert_eq!(s.attempts, Some(0));
    assert_eq!(s.sae_unreachable_since, Some(Time(at(11))));
    let message = s.message.as_deref().unwrap();
    assert!(
        message.contains("the dry-run check is tried again") && !message.contains("SAE refused"),
        "{message}"
    );

    // SAE back: the check succeeds and the field goes.
    let down = apply(&checking, &d);
    let d = decide(&down, &inputs_at(15), start());
    assert_eq!(d.action, Action::CheckInstances);
    let d = decide(
        &apply(&down, &d),
        &inputs_at(15),
        Observation::DryRunResult(Ok(ids(&["i-1", "i-2"]))),
    );
    assert_eq!(d.status.reason(), Some("DryRunSucceeded"));
    assert_eq!(d.status.attempts, Some(1));
    assert_eq!(d.status.sae_unreachable_since, None);
}
