//! The kstatus conditions and the events that go with each transition.

use super::*;

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
