use jiff::tz::TimeZone;

use super::*;
use crate::cli::test_objects::{at, fresh, time, with_status};

fn event(secs: i64, reason: &str, note: &str) -> EventRecord {
    EventRecord {
        time: at(secs),
        reason: reason.into(),
        note: note.into(),
        count: 1,
        last_time: None,
    }
}

/// The first word(s) of each step, to assert the order of the story.
fn heads(steps: &[Step]) -> Vec<String> {
    steps
        .iter()
        .map(|s| s.text.split([':', '(']).next().unwrap().trim().to_string())
        .collect()
}

#[test]
fn tells_a_queued_retried_lost_and_succeeded_deletion_in_order() {
    let obj = with_status(
        fresh("d", 0),
        Phase::Succeeded,
        Reason::Succeeded,
        "deleted i-1, i-2",
        |s| {
            s.attempts = Some(2);
            s.change_order_id = Some("co-9".into());
            s.change_order_status = Some("Succeeded".into());
            s.request_id = Some("req-2".into());
            s.start_time = time(10);
            s.last_attempt_time = time(20);
            s.completion_time = time(50);
        },
    );
    let events = vec![
        // Out of order on purpose: the API server lists by name, not by time.
        event(
            20,
            "Submitting",
            "sending DeleteInstances (attempt 2 of 10) for instances i-1, i-2 of app app-1",
        ),
        event(
            1,
            "WaitingForApplication",
            "waiting for app app-1: ns/first has a DeleteInstances request or change order in flight on it",
        ),
        event(
            10,
            "Submitting",
            "sending DeleteInstances (attempt 1 of 10) for instances i-1, i-2 of app app-1",
        ),
        event(
            11,
            "Retrying",
            "SAE refused [RequestId req-1, error code Application.ChangerOrderRunning]",
        ),
        event(
            21,
            "OutcomeUnknown",
            "the answer was lost; looking at app app-1's change orders",
        ),
        event(
            30,
            "WaitingForChangeOrder",
            "change order co-9 found [ChangeOrderId co-9]",
        ),
        event(50, "Succeeded", "deleted i-1, i-2"),
    ];
    let steps = timeline(&obj, &events, at(60), &TimeZone::UTC);
    assert_eq!(
        heads(&steps),
        vec![
            "created",
            "waited for the app behind ns/first",
            "attempt 1",
            "SAE refused it without executing it",
            "attempt 2",
            "answer lost",
            "SAE accepted it; change order running",
            "succeeded",
            "change order co-9",
            "outcome",
        ]
    );
    let text = |i: usize| steps[i].text.clone();
    assert!(
        text(0).contains(
            "delete 2 instance(s) of app app-1 in cn-hangzhou; deadline 2026-01-01 01:00:00"
        ),
        "{}",
        text(0)
    );
    assert!(
        text(1).contains("(9s)"),
        "waited from 1 s to the first attempt at 10 s: {}",
        text(1)
    );
    assert!(text(3).contains("req-1"), "{}", text(3));
    assert!(
        text(5).contains("checked until 2026-01-01 01:00:00"),
        "{}",
        text(5)
    );
    assert_eq!(
        text(8),
        "change order co-9: Succeeded, ran 30s (RequestId req-2)"
    );
    assert_eq!(
        text(9),
        "outcome: Succeeded (Succeeded) after 50s: deleted i-1, i-2"
    );

    let printed = render(&obj, &steps, &TimeZone::UTC);
    assert!(
        printed.contains("00:00:10  +10s       attempt 1"),
        "{printed}"
    );
}

#[test]
fn a_failure_ends_with_what_to_do() {
    let obj = with_status(
        fresh("d", 0),
        Phase::Failed,
        Reason::ApplicationNotFound,
        "SAE: no app",
        |s| {
            s.completion_time = time(3);
            s.attempts = Some(1);
        },
    );
    let events = vec![
        event(1, "Submitting", "sending"),
        event(3, "ApplicationNotFound", "SAE: no app"),
    ];
    let steps = timeline(&obj, &events, at(10), &TimeZone::UTC);
    assert_eq!(
        heads(&steps),
        vec![
            "created",
            "attempt 1",
            "ApplicationNotFound",
            "outcome",
            "what to do"
        ]
    );
    assert!(
        steps[4].text.contains("check --app and --region"),
        "{:?}",
        steps[4]
    );
}

#[test]
fn a_lost_answer_being_resolved_says_what_is_checked_and_until_when() {
    let obj = with_status(
        fresh("d", 0),
        Phase::Submitting,
        Reason::OutcomeUnknown,
        "looking",
        |s| {
            s.attempts = Some(1);
        },
    );
    let events = vec![
        event(1, "Submitting", "sending"),
        event(2, "OutcomeUnknown", "looking"),
    ];
    let steps = timeline(&obj, &events, at(12), &TimeZone::UTC);
    assert_eq!(
        heads(&steps),
        vec!["created", "attempt 1", "answer lost", "now"]
    );
    assert!(
        steps[2].text.contains("change orders and instance list")
            && steps[2].text.contains("(10s)"),
        "{:?}",
        steps[2]
    );
    assert!(
        steps[3]
            .text
            .contains("looked for in SAE until 2026-01-01 01:00:00"),
        "{:?}",
        steps[3]
    );
}

#[test]
fn a_policy_refusal_names_the_policy() {
    let note =
        "DeleteInstances not sent: SaeDeletionPolicy \"weekend\" allows sends only in its windows";
    let obj = with_status(
        fresh("d", 0),
        Phase::Pending,
        Reason::OutsideMaintenanceWindow,
        note,
        |_| {},
    );
    let steps = timeline(
        &obj,
        &[event(1, "OutsideMaintenanceWindow", note)],
        at(5),
        &TimeZone::UTC,
    );
    assert!(
        steps[1]
            .text
            .starts_with("held by a deletion policy (OutsideMaintenanceWindow) (4s)"),
        "{:?}",
        steps[1]
    );
    assert!(steps[1].text.contains("\"weekend\""));
}

#[test]
fn without_events_the_status_times_tell_the_attempts() {
    let obj = with_status(
        fresh("d", 0),
        Phase::Retrying,
        Reason::Retrying,
        "busy",
        |s| {
            s.attempts = Some(3);
            s.start_time = time(1);
            s.last_attempt_time = time(30);
            s.next_attempt_time = time(40);
        },
    );
    let steps = timeline(&obj, &[], at(35), &TimeZone::UTC);
    assert_eq!(
        heads(&steps),
        vec![
            "created",
            "no Events found",
            "attempt 1 sent",
            "attempt 3 sent",
            "now"
        ]
    );
    assert!(
        steps[4]
            .text
            .contains("next attempt at 2026-01-01 00:00:40"),
        "{:?}",
        steps[4]
    );
    assert!(
        timeline(&fresh("new", 0), &[], at(1), &TimeZone::UTC)[1]
            .text
            .starts_with("no status yet")
    );
}

#[test]
fn a_retry_loop_folded_into_series_is_told_attempt_by_attempt() {
    let obj = with_status(
        fresh("d", 0),
        Phase::Succeeded,
        Reason::Succeeded,
        "deleted",
        |s| {
            s.attempts = Some(3);
            s.completion_time = time(30);
        },
    );
    // What kube's recorder leaves: the first note and time of each reason, a count and the last time.
    let series = |first: i64, last: i64, reason: &str, note: &str, count: i32| EventRecord {
        time: at(first),
        reason: reason.into(),
        note: note.into(),
        count,
        last_time: Some(at(last)),
    };
    let events = vec![
        series(10, 17, "Submitting", "sending (attempt 1 of 10)", 3),
        series(11, 13, "Retrying", "refused (attempt 1 of 10)", 2),
        event(
            1,
            "WaitingForApplication",
            "waiting for app app-1: ns/a has a DeleteInstances request",
        ),
        event(18, "WaitingForChangeOrder", "accepted"),
        event(30, "Succeeded", "deleted"),
    ];
    let steps = timeline(&obj, &events, at(40), &TimeZone::UTC);
    assert_eq!(
        heads(&steps),
        vec![
            "created",
            "waited for the app behind ns/a",
            "attempt 1",
            "SAE refused it without executing it",
            "attempt 2",
            "SAE refused it without executing it",
            "attempt 3",
            "SAE accepted it; change order running",
            "succeeded",
            "outcome",
        ]
    );
    // The middle attempt has no time of its own and does not repeat the first one's note.
    assert_eq!(steps[4].at, None);
    assert!(steps[4].text.contains("again"), "{:?}", steps[4]);
    assert_eq!(steps[5].at, Some(at(13)));
    assert_eq!(steps[6].at, Some(at(17)));
}

#[test]
fn a_huge_series_is_told_as_first_gap_and_last() {
    let obj = fresh("d", 0);
    let events = vec![EventRecord {
        time: at(10),
        reason: "Submitting".into(),
        note: "sending".into(),
        count: i32::MAX,
        last_time: Some(at(20)),
    }];
    let steps = timeline(&obj, &events, at(40), &TimeZone::UTC);
    let texts: Vec<&str> = steps.iter().map(|s| s.text.as_str()).collect();
    let first = texts
        .iter()
        .position(|t| t.starts_with("attempt 1:"))
        .unwrap_or_else(|| panic!("{texts:#?}"));
    assert_eq!(texts[first + 1], "… 2147483645 more Submitting …");
    assert!(
        texts[first + 2].starts_with("attempt 2147483647:"),
        "{texts:#?}"
    );
}
