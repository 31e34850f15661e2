//! Following a change order: every status SAE reports and where it leaves the object.

use super::*;

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
