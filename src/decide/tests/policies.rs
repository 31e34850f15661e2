//! Deletion policies in the decisions: a refusal sends nothing, counts nothing, holds no place in
//! the app's line, says which policy and limit, comes back when a window opens, and ends the
//! object with the same reason at its deadline. (The rules themselves: `src/policy/tests.rs`.)

use super::*;
use crate::policy::{Refusal, RefusalReason};

fn refusal(reason: RefusalReason, retry_at: Option<i64>) -> PolicyCheck {
    PolicyCheck::Refused(Refusal {
        reason,
        policy: Some("team-a".into()),
        message: "policy team-a allows at most 1 instance per deletion; this object names 2".into(),
        retry_at: retry_at.map(at),
    })
}

fn start_refused(check: PolicyCheck) -> Observation {
    Observation::Start {
        credentials: Ok(()),
        app: AppTurn::Free,
        policy: check,
    }
}

#[test]
fn a_refused_object_sends_nothing_counts_nothing_and_says_which_policy() {
    for (reason, name) in [
        (RefusalReason::NotPermitted, "NotPermitted"),
        (RefusalReason::DisruptionBudget, "DisruptionBudget"),
        (
            RefusalReason::OutsideMaintenanceWindow,
            "OutsideMaintenanceWindow",
        ),
    ] {
        let d = decide(
            &fresh(),
            &inputs_at(10),
            start_refused(refusal(reason, None)),
        );
        let s = &d.status;
        assert_eq!((s.phase, s.reason()), (Some(Phase::Pending), Some(name)));
        assert_eq!(s.attempts(), 0, "{name}: a refusal is never an attempt");
        assert_eq!(s.last_attempt_time, None);
        assert_eq!(
            d.action,
            Action::WaitUntil(at(40)),
            "{name}: looked at again in 30 s"
        );
        let message = s.message.as_deref().unwrap();
        assert!(
            message.starts_with("DeleteInstances not sent: policy team-a allows at most 1"),
            "{message}"
        );
        assert_eq!(
            d.events.len(),
            1,
            "{name}: one event per refusal transition"
        );
        assert!(d.events[0].warning && d.events[0].reason == name);
        // The same refusal again writes nothing and tells nothing new.
        let again = decide(
            &apply(&fresh(), &d),
            &inputs_at(40),
            start_refused(refusal(reason, None)),
        );
        assert_eq!(again.status, d.status);
        assert!(again.events.is_empty());
    }
}

#[test]
fn a_long_refused_object_looks_again_less_often() {
    // A quarter of the object's age, 30 s to 5 min: each look at a minRunningInstances policy
    // costs an SAE listing. The message stays the same, so no look writes the status.
    let first = decide(
        &fresh(),
        &inputs_at(10),
        start_refused(refusal(RefusalReason::DisruptionBudget, None)),
    );
    let refused = apply(&fresh(), &first);
    for (now, next) in [(10, 40), (200, 250), (400, 500), (1200, 1500), (2000, 2300)] {
        let d = decide(
            &refused,
            &inputs_at(now),
            start_refused(refusal(RefusalReason::DisruptionBudget, None)),
        );
        assert_eq!(d.action, Action::WaitUntil(at(next)), "at {now} s");
        assert_eq!(d.status, refused.status.clone().unwrap(), "at {now} s");
    }
}

#[test]
fn a_window_that_opens_later_is_when_the_object_looks_again() {
    let d = decide(
        &fresh(),
        &inputs_at(10),
        start_refused(refusal(RefusalReason::OutsideMaintenanceWindow, Some(3600))),
    );
    assert_eq!(d.action, Action::WaitUntil(at(3600)));
    // Capped at the deadline like every wait.
    let d = decide(
        &fresh(),
        &inputs_at(10),
        start_refused(refusal(
            RefusalReason::OutsideMaintenanceWindow,
            Some(999_999),
        )),
    );
    assert_eq!(
        d.action,
        Action::WaitUntil(at(3600)),
        "activeDeadlineSeconds is 3600"
    );
}

#[test]
fn once_admitted_the_object_is_sent_and_at_the_deadline_a_refusal_fails_with_its_reason() {
    let refused = step(
        &fresh(),
        10,
        start_refused(refusal(RefusalReason::DisruptionBudget, None)),
    );
    // Admitted later (the budget freed up): the write-ahead of attempt 1.
    let d = decide(&refused, &inputs_at(40), start());
    assert!(matches!(d.action, Action::SendDelete { .. }));
    assert_eq!(d.status.attempts, Some(1));
    // Still refused at the deadline: Failed with the same reason, saying nothing was deleted.
    let d = decide(
        &refused,
        &inputs_at(3600),
        start_refused(refusal(RefusalReason::DisruptionBudget, None)),
    );
    let s = &d.status;
    assert_eq!(
        (s.phase, s.reason()),
        (Some(Phase::Failed), Some("DisruptionBudget"))
    );
    let message = s.message.as_deref().unwrap();
    assert!(
        message.contains(
            "passed while a deletion policy refused it: DeleteInstances not sent: policy team-a"
        ) && message.ends_with("no instance was deleted"),
        "{message}"
    );
    assert_eq!(d.action, Action::Done);
}

#[test]
fn a_refused_object_holds_no_place_in_its_app_s_line() {
    let refused = step(
        &fresh(),
        10,
        start_refused(refusal(RefusalReason::NotPermitted, None)),
    );
    assert!(
        !waits_in_line(&refused),
        "it could hold up the app for good"
    );
    assert!(waits_in_line(&fresh()));
    // While refused, whose turn it is does not matter: the refusal is what it waits for.
    let d = decide(
        &refused,
        &inputs_at(40),
        Observation::Start {
            credentials: Ok(()),
            app: busy(),
            policy: refusal(RefusalReason::NotPermitted, None),
        },
    );
    assert_eq!(d.status.reason(), Some("NotPermitted"));
}

#[test]
fn dry_runs_are_not_refused_by_policies() {
    let d = decide(
        &dry(),
        &inputs_at(10),
        start_refused(refusal(RefusalReason::NotPermitted, None)),
    );
    assert_eq!(d.action, Action::CheckInstances);
}

#[test]
fn a_refusal_after_a_refused_attempt_keeps_the_attempt_count() {
    // Attempt 1 was refused by SAE (busy); its backoff ran out; now a policy refuses: the
    // attempt SAE refused still counts, the policy's refusal does not.
    let d = decide(
        &retrying(),
        &inputs_at(3000),
        start_refused(refusal(RefusalReason::OutsideMaintenanceWindow, None)),
    );
    assert_eq!(d.status.attempts(), 1);
    assert_eq!(d.status.reason(), Some("OutsideMaintenanceWindow"));
    assert_eq!(d.status.next_attempt_time, None);
}

/// A reconcile asks the policies only when the decision reads their word: for every other object
/// a refusal and an admission decide the same, so not asking changes nothing.
#[test]
fn the_policies_are_asked_exactly_where_their_word_changes_the_decision() {
    let refused = || start_refused(refusal(RefusalReason::NotPermitted, None));
    let admitted = || start_refused(PolicyCheck::Admitted);
    for (name, obj, asked) in [
        ("new", fresh(), true),
        ("retrying", retrying(), true),
        ("pending without credentials", pending_credentials(), true),
        ("dry run", dry(), false),
        ("submitting", submitting(), false),
        ("lost answer", unresolved(), false),
        ("in progress", in_progress(), false),
        ("succeeded", succeeded(), false),
        ("failed", failed(), false),
    ] {
        assert_eq!(asks_policies(&obj), asked, "{name}");
        // After any backoff, so that a waiting object decides too.
        let now = inputs_at(40);
        let same = decide(&obj, &now, refused()) == decide(&obj, &now, admitted());
        assert_eq!(same, !asked, "{name}: the policies' word matters: {asked}");
    }
}
