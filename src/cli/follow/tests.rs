use std::time::Duration;

use jiff::tz::TimeZone;

use super::*;
use crate::cli::test_objects::{fresh, time, with_status};

const QUEUED: &str = "waiting for app app-1: ns/first has a DeleteInstances request or change order in flight on it \
                      (SAE runs one change order per application at a time; objects take turns, oldest first)";

#[test]
fn each_transition_is_printed_once_with_its_elapsed_time() {
    let utc = TimeZone::UTC;
    let mut follower = Follower::default();
    let created = fresh("d", 0);
    let queued = with_status(
        created.clone(),
        Phase::Pending,
        Reason::WaitingForApplication,
        QUEUED,
        |_| {},
    );
    let sending = with_status(
        created.clone(),
        Phase::Submitting,
        Reason::Submitting,
        "sending",
        |s| s.attempts = Some(1),
    );
    let refused = with_status(
        created.clone(),
        Phase::Retrying,
        Reason::Retrying,
        "busy",
        |s| {
            s.attempts = Some(1);
            s.error_code = Some("Application.ChangerOrderRunning".into());
            s.request_id = Some("req-1".into());
            s.next_attempt_time = time(15);
        },
    );
    let sending2 = with_status(
        created.clone(),
        Phase::Submitting,
        Reason::Submitting,
        "sending",
        |s| s.attempts = Some(2),
    );
    let running = with_status(
        created.clone(),
        Phase::InProgress,
        Reason::WaitingForChangeOrder,
        "",
        |s| {
            s.attempts = Some(2);
            s.request_id = Some("req-2".into());
            s.change_order_id = Some("co-1".into());
            s.change_order_status = Some("Executing".into());
        },
    );
    let done = with_status(
        running.clone(),
        Phase::Succeeded,
        Reason::Succeeded,
        "deleted",
        |s| {
            s.change_order_status = Some("Succeeded".into());
        },
    );
    let seen: Vec<Option<String>> = [
        (&created, 0),
        (&queued, 1),
        (&queued, 2),
        (&sending, 5),
        (&refused, 6),
        (&refused, 7),
        (&sending2, 15),
        (&running, 16),
        (&done, 20),
    ]
    .into_iter()
    .map(|(o, secs)| follower.observe(o, Duration::from_secs(secs), &utc))
    .collect();
    let printed: Vec<&str> = seen.iter().flatten().map(String::as_str).collect();
    assert_eq!(
        printed,
        vec![
            "[     0s] created; waiting for the controller to pick it up",
            "[     1s] queued behind ns/first (SAE runs one change order per app)",
            "[     5s] sending DeleteInstances (attempt 1)",
            "[     6s] refused by SAE (Application.ChangerOrderRunning, RequestId req-1); retrying at 00:00:15",
            "[    15s] sending DeleteInstances (attempt 2)",
            "[    16s] sent (RequestId req-2); change order co-1 executing",
            "[    20s] succeeded (Succeeded); change order co-1 succeeded",
        ]
    );
}

#[test]
fn finds_whom_a_queued_object_waits_for() {
    assert_eq!(behind(QUEUED), Some("ns/first"));
    assert_eq!(
        behind("waiting for app a: ns/old was created earlier and goes first (…)"),
        Some("ns/old")
    );
    assert_eq!(behind("something else"), None);
}

#[test]
fn other_waits_say_why() {
    let utc = TimeZone::UTC;
    let o = fresh("d", 0);
    let lost = with_status(
        o.clone(),
        Phase::Submitting,
        Reason::OutcomeUnknown,
        "looking at change orders",
        |_| {},
    );
    assert!(transition(&lost, &utc).starts_with("answer lost; checking SAE"));
    let policy = with_status(
        o.clone(),
        Phase::Pending,
        Reason::OutsideMaintenanceWindow,
        "SaeDeletionPolicy \"night\" ...",
        |_| {},
    );
    assert!(transition(&policy, &utc).contains(
        "held by a deletion policy (OutsideMaintenanceWindow): SaeDeletionPolicy \"night\""
    ));
    let creds = with_status(
        o.clone(),
        Phase::Pending,
        Reason::CredentialsNotFound,
        "no Secret",
        |_| {},
    );
    assert_eq!(
        transition(&creds, &utc),
        "waiting for credentials: no Secret"
    );
    let unreachable = with_status(o, Phase::Retrying, Reason::SaeUnreachable, "", |s| {
        s.next_attempt_time = time(70)
    });
    assert_eq!(
        transition(&unreachable, &utc),
        "SAE unreachable, nothing sent; retrying at 00:01:10"
    );
}

#[test]
fn outcomes_map_to_exit_statuses() {
    let utc = TimeZone::UTC;
    let o = fresh("d", 0);
    assert_eq!(outcome(&o, Duration::ZERO), None);
    let ok = with_status(
        o.clone(),
        Phase::Succeeded,
        Reason::AlreadyDeleted,
        "gone already",
        |_| {},
    );
    assert_eq!(
        outcome(&ok, Duration::from_secs(3)),
        Some((
            EXIT_SUCCEEDED,
            vec!["d Succeeded (AlreadyDeleted) after 3s: gone already".into()]
        ))
    );
    let failed = with_status(
        o.clone(),
        Phase::Failed,
        Reason::ApplicationNotFound,
        "no such app",
        |_| {},
    );
    let (code, lines) = outcome(&failed, Duration::from_secs(2)).unwrap();
    assert_eq!(code, EXIT_FAILED);
    assert_eq!(
        lines[0],
        "d Failed (ApplicationNotFound) after 2s: no such app"
    );
    assert!(
        lines[1].starts_with("What to do: SAE does not know this app id"),
        "{lines:?}"
    );

    let lines = timeout_lines(&o, Duration::from_secs(30), &utc);
    assert!(
        lines[0].starts_with("timed out after 30s: d is still created"),
        "{lines:?}"
    );
    assert!(lines[1].contains("keeps going") && lines[1].contains("kubectl sae wait d"));
}

#[test]
fn the_live_line_names_the_object_and_the_time() {
    let o = fresh("d", 0);
    let line = live_line(&o, Duration::from_secs(65), &TimeZone::UTC, 80);
    assert_eq!(
        line,
        "d … created; waiting for the controller to pick it up [1m05s]"
    );
}

#[test]
fn the_live_line_fits_one_row_and_one_line() {
    let utc = TimeZone::UTC;
    let long = format!("{QUEUED}\nsecond line of the message\nthird");
    let queued = with_status(
        fresh("d", 0),
        Phase::Pending,
        Reason::WaitingForApplication,
        &long,
        |_| {},
    );
    for columns in [80, 40, 120, 300] {
        let line = live_line(&queued, Duration::from_secs(65), &utc, columns);
        assert!(!line.contains('\n'), "{line:?}");
        assert!(line.chars().count() < columns, "{columns}: {line:?}");
        assert!(line.ends_with(" [1m05s]"), "{line:?}");
        assert!(line.starts_with("d … "), "{line:?}");
    }
    assert!(live_line(&queued, Duration::from_secs(65), &utc, 80).contains("…"));
    // Too narrow for anything else: still one row.
    assert_eq!(
        live_line(&queued, Duration::from_secs(65), &utc, 5)
            .chars()
            .count(),
        4
    );
}

#[test]
fn the_width_is_columns_when_set_else_80() {
    assert_eq!(columns(Some("132")), 132);
    assert_eq!(columns(Some(" 40 ")), 40);
    assert_eq!(columns(None), 80);
    assert_eq!(columns(Some("wide")), 80);
    assert_eq!(columns(Some("0")), 80);
}
