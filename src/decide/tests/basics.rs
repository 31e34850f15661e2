//! A terminal object is never touched again, the write-ahead comes before every send, and the backoff between attempts.

use super::*;

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
        settle: SETTLE,
        sae: Default::default(),
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
