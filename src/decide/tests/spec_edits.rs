//! Spec edits after the first attempt are ignored (the pinned values are used), and said so once.

use super::*;

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
