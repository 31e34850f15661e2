//! Lost answers, instances already gone and the per-app queue: the cases beyond the table.

use super::*;

// ---- Lost answers, already gone, the queue: details beyond the table ----------------------

#[test]
fn adopting_records_the_change_order_and_polls_it_next() {
    let d = decide(
        &unresolved(),
        &inputs_at(70),
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
    let d = decide(&adopted, &inputs_at(71), start());
    assert_eq!(
        d.action,
        Action::PollChangeOrder {
            change_order_id: "co-9".into()
        }
    );
    let d = decide(&adopted, &inputs_at(71), polled(2));
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
        (
            evidence(vec![found("co-7", None, 1)], &["i-1", "i-2"]),
            70,
            80,
        ),
        (evidence(vec![], &["i-2"]), 80, 110),
        (
            Observation::ResolveResult(Err(api_error("Throttling.User", 400))),
            80,
            110,
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
fn the_settle_time_is_rounded_up_and_follows_resolve_after() {
    let late = Inputs {
        resolve_after: SignedDuration::from_millis(30_500),
        ..inputs_at(20)
    };
    // Written ahead at 10 (to the second), sent by 10 + 1 + 5, acted on by SAE by + 30.5: from
    // 47 on SAE can no longer act, and from 57 its lists had the settle time to show it. A look
    // before that proves nothing, whatever it shows.
    let d = decide(&unresolved(), &late, evidence(vec![], &["i-1", "i-2"]));
    assert_eq!(d.action, Action::WaitUntil(at(57)));
    let d = decide(&unresolved(), &late, start());
    assert_eq!(d.action, Action::WaitUntil(at(57)), "no look before then");
    let at_56 = Inputs {
        now: at(56),
        ..late
    };
    let d = decide(&unresolved(), &at_56, evidence(vec![], &["i-1", "i-2"]));
    assert_eq!(d.status.phase, Some(Phase::Submitting));
    let at_57 = Inputs {
        now: at(57),
        ..late
    };
    let d = decide(&unresolved(), &at_57, start());
    assert!(matches!(d.action, Action::ResolveAttempt { .. }));
    let d = decide(&unresolved(), &at_57, evidence(vec![], &["i-1", "i-2"]));
    assert_eq!(d.status.phase, Some(Phase::Retrying));
    // A look shared with another object that began before 57 proves nothing either.
    let Observation::ResolveResult(Ok(mut early)) = evidence(vec![], &["i-1", "i-2"]) else {
        unreachable!()
    };
    early.looked_at = at(56);
    let d = decide(&unresolved(), &at_57, Observation::ResolveResult(Ok(early)));
    assert_eq!(d.status.phase, Some(Phase::Submitting));
    assert_eq!(d.action, Action::WaitUntil(at(58)));
    // The window for adoption moves with resolve_after too: up to 46.5 + 10 s.
    let d = decide(
        &unresolved(),
        &at_57,
        evidence(vec![found("co-9", Some(56), 0)], &["i-1", "i-2"]),
    );
    assert_eq!(d.status.change_order_id.as_deref(), Some("co-9"));
    let d = decide(
        &unresolved(),
        &at_57,
        evidence(vec![found("co-9", Some(57), 0)], &["i-1", "i-2"]),
    );
    assert_eq!(d.status.change_order_id, None);
    // And it starts one second plus the slack before the write-ahead.
    let d = decide(
        &unresolved(),
        &at_57,
        evidence(vec![found("co-9", Some(-1), 0)], &["i-1", "i-2"]),
    );
    assert_eq!(d.status.change_order_id.as_deref(), Some("co-9"));
    let d = decide(
        &unresolved(),
        &at_57,
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
fn an_unknown_zone_proves_nothing_while_a_row_could_be_ours() {
    let unknown = CreateTimeZone::Unknown;
    let both = &["i-1", "i-2"];
    // Long past the last moment, nothing listed at all, instances all there: nothing in the list
    // could be ours whatever the zone, so the attempt was not executed.
    let d = decide(
        &unresolved(),
        &inputs_at(200),
        evidence_in(unknown, vec![], both),
    );
    assert_eq!(d.status.phase, Some(Phase::Retrying));
    // But a zone-less row within a day of the window could be ours in some zone: no conclusion,
    // neither "not executed" nor "already deleted".
    for existing in [&both[..], &[]] {
        let d = decide(
            &unresolved(),
            &inputs_at(200),
            evidence_in(
                unknown,
                vec![civil_row("co-9", "2026-01-01 08:00:11", 0)],
                existing,
            ),
        );
        assert_eq!(d.status.phase, Some(Phase::Submitting));
    }
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
    let retry = step(&unresolved(), 66, evidence(vec![], &["i-1", "i-2"]));
    assert_eq!(status(&retry).next_attempt_time, Some(Time(at(70))));
    // Backoff over but the app is busy: wait for it, no send.
    let waiting = step(&retry, 70, start_with(busy()));
    assert_eq!(status(&waiting).reason(), Some("WaitingForApplication"));
    assert_eq!(status(&waiting).next_attempt_time, None);
    let d = decide(&waiting, &inputs_at(70), start());
    assert_eq!(
        d.action,
        Action::SendDelete {
            instance_ids: ids(&["i-1", "i-2"])
        }
    );
    assert_eq!(d.status.attempts, Some(2));
    assert_eq!(d.status.last_attempt_time, Some(Time(at(70))));
}

#[test]
fn a_crash_during_the_gone_check_reaches_the_same_conclusion() {
    let obj = submitting();
    let d = decide(&obj, &inputs_at(11), refused("InvalidParameter.NotEmpty"));
    assert!(matches!(d.action, Action::CheckGone { .. }));
    assert_eq!(Some(&d.status), obj.status.as_ref(), "nothing to write");
    // The process dies here; the next reconcile finds Submitting and resolves it instead.
    let d = decide(&obj, &inputs_at(30), start());
    assert_eq!(
        d.action,
        Action::WaitUntil(at(66)),
        "no look before SAE's lists settle"
    );
    let d = decide(&apply(&obj, &d), &inputs_at(66), start());
    assert!(matches!(d.action, Action::ResolveAttempt { .. }));
    let d = decide(&apply(&obj, &d), &inputs_at(66), evidence(vec![], &["i-8"]));
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

/// Inputs at `seconds` with SAE's clock `offset` seconds off ours and what is known of its zone.
fn inputs_with_sae(seconds: i64, offset: i64, zone: CreateTimeZone, zoneless: bool) -> Inputs {
    Inputs {
        sae: SaeClock {
            offset: SignedDuration::from_secs(offset),
            zone,
            zoneless_times: zoneless,
        },
        ..inputs_at(seconds)
    }
}

#[test]
fn sae_s_clock_offset_is_measured_not_assumed_for_the_zone_and_the_window() {
    let china = CreateTimeZone::Offset(jiff::tz::Offset::constant(8));
    // SAE's clock runs 40 s behind ours: our change order, created at our 11, carries 07:59:31.
    let sent = step(&submitting(), 11, accepted());
    let mut co = order(1);
    co.create_time = Some("2026-01-01 07:59:31".into());
    let poll = Observation::ChangeOrderResult(Ok(co));
    let unmeasured = decide(&sent, &inputs_at(12), poll.clone());
    assert_eq!(
        unmeasured.status.create_time_zone, None,
        "40 s off is more than the slack: nothing learned"
    );
    let measured = decide(
        &sent,
        &inputs_with_sae(12, -40, CreateTimeZone::Unknown, true),
        poll,
    );
    assert_eq!(measured.status.create_time_zone.as_deref(), Some("+08:00"));

    // A lost answer whose change order SAE created at our 11 (its -29): outside the window on our
    // clock, so without the offset the attempt would look "not executed" and be sent again.
    let row = found("co-9", Some(11 - 40), 0);
    let blind = decide(
        &unresolved(),
        &inputs_with_sae(70, 0, china, true),
        evidence(vec![row.clone()], &["i-1", "i-2"]),
    );
    assert_eq!(
        blind.status.phase,
        Some(Phase::Retrying),
        "what the offset prevents"
    );
    let seen = decide(
        &unresolved(),
        &inputs_with_sae(70, -40, china, true),
        evidence(vec![row], &["i-1", "i-2"]),
    );
    assert_eq!(seen.status.change_order_id.as_deref(), Some("co-9"));
    // The list is read back to the window's start as SAE's clock shows it, and a margin more.
    let look = decide(
        &unresolved(),
        &inputs_with_sae(70, -40, china, true),
        start(),
    );
    assert_eq!(
        look.action,
        Action::ResolveAttempt {
            instance_ids: ids(&["i-1", "i-2"]),
            since: at(-1 - 40 - 60),
        }
    );
}

#[test]
fn a_wrong_clock_offset_only_widens_the_window() {
    let china = CreateTimeZone::Offset(jiff::tz::Offset::constant(8));
    // SAE's clock agrees with ours, but the measurement says it runs 40 s ahead (say, after a
    // run of answers that were slow in a way the samples could not see). The change order of
    // the lost attempt, created at 11, must still be found: never "not executed".
    let ours = found("co-9", Some(11), 0);
    let d = decide(
        &unresolved(),
        &inputs_with_sae(70, 40, china, true),
        evidence(vec![ours], &["i-1", "i-2"]),
    );
    assert_eq!(d.status.change_order_id.as_deref(), Some("co-9"));
    // And a look that does not reach back to the window as measured now proves nothing.
    let Observation::ResolveResult(Ok(mut short)) = evidence(vec![], &["i-1", "i-2"]) else {
        unreachable!()
    };
    short.since = at(0);
    let d = decide(
        &unresolved(),
        &inputs_with_sae(70, -40, china, true),
        Observation::ResolveResult(Ok(short)),
    );
    assert_eq!(d.status.phase, Some(Phase::Submitting));
    assert_eq!(d.action, Action::WaitUntil(at(71)));
}

#[test]
fn no_look_is_made_while_sae_s_times_carry_no_zone_and_the_zone_is_unknown() {
    let obj = unresolved();
    // Zone-less times and no zone: no look can place a row, so none is made; the cache is
    // looked at again in 10 s (no SAE call).
    let d = decide(
        &obj,
        &inputs_with_sae(70, 0, CreateTimeZone::Unknown, true),
        start(),
    );
    assert_eq!(d.action, Action::WaitUntil(at(80)));
    assert_eq!(d.status.phase, Some(Phase::Submitting));
    let message = d.status.message.as_deref().unwrap();
    assert!(
        message.contains("zone for region cn-hangzhou is not known yet"),
        "{message}"
    );
    assert_eq!(d.events, vec![], "still the same phase and reason");
    // The same again writes nothing new.
    let again = decide(
        &apply(&obj, &d),
        &inputs_with_sae(80, 0, CreateTimeZone::Unknown, true),
        start(),
    );
    assert_eq!(again.status, d.status);
    // Before any time was seen a look may show how SAE writes them; once the zone is known it
    // can place them.
    for sae in [
        inputs_with_sae(70, 0, CreateTimeZone::Unknown, false),
        inputs_with_sae(70, 0, CreateTimeZone::Named, true),
    ] {
        let d = decide(&obj, &sae, start());
        assert!(matches!(d.action, Action::ResolveAttempt { .. }), "{sae:?}");
    }
    // A look records the zone it placed times in, so this object teaches it after a restart.
    let d = decide(&obj, &inputs_at(70), evidence(vec![], &["i-1", "i-2"]));
    assert_eq!(d.status.create_time_zone.as_deref(), Some("named"));
}
