//! The per-app queue: which object may start a DeleteInstances attempt on an app, decided from the
//! statuses of all watched objects (so it is rebuilt after a restart and agrees across replicas).
//!
//! SAE runs one change order per application at a time and refuses a second with
//! `Application.ChangerOrderRunning`. So an object whose app is held by another (an attempt in
//! flight or a change order running) waits, and objects waiting for one app take turns oldest
//! first. Pure functions of the objects: no I/O, no clock.

use std::sync::Arc;

use jiff::Timestamp;
use kube::ResourceExt;

use super::AppTurn;
use crate::crd::{Phase, Reason, SaeInstanceDeletion};

/// Already in line for its app (it had credentials when it joined).
pub fn waits_for_app(obj: &SaeInstanceDeletion) -> bool {
    obj.status.as_ref().is_some_and(|s| {
        s.phase == Some(Phase::Pending)
            && s.reason() == Some(Reason::WaitingForApplication.as_str())
    })
}

/// Whether a reconcile must read `obj`'s credentials before deciding. An object already waiting
/// its turn on an app that is not free decides nothing that calls SAE before then, so its Secret
/// is read when it may send, not at every re-check of the line (a long queue would read it every
/// few seconds per object).
pub fn needs_credentials(obj: &SaeInstanceDeletion, app: &AppTurn) -> bool {
    *app == AppTurn::Free || !waits_for_app(obj)
}

/// Whether `obj` may start an attempt on its app now, from the statuses of all watched objects:
/// another object with an attempt in flight or a change order running holds the app; otherwise
/// the oldest waiting object goes first (creation time, then namespace/name, the same order in
/// every replica and after every restart). Objects that cannot act (no credentials) and dry runs
/// hold no place in line.
pub fn app_turn(objects: &[Arc<SaeInstanceDeletion>], me: &SaeInstanceDeletion) -> AppTurn {
    let mine = queue_order(me);
    let others = objects.iter().filter(|o| shares_app(o, me));
    let mut ahead: Option<&SaeInstanceDeletion> = None;
    for other in others {
        if holds_app(other) {
            return AppTurn::Busy {
                holder: object_key(other),
            };
        }
        if waits_in_line(other)
            && queue_order(other) < mine
            && ahead.is_none_or(|a| queue_order(other) < queue_order(a))
        {
            ahead = Some(other);
        }
    }
    ahead.map_or(AppTurn::Free, |a| AppTurn::Queued {
        ahead: object_key(a),
    })
}

/// Another object (not `me`, not a dry run) deleting instances of `me`'s app. App, region and dry
/// run are those the objects' first attempts recorded: an edited spec does not move an attempt in
/// flight to another app.
pub fn shares_app(other: &SaeInstanceDeletion, me: &SaeInstanceDeletion) -> bool {
    // Cheapest tests first: this runs for every cached object on each look at the queue.
    let same_object = || {
        other.metadata.uid == me.metadata.uid
            && other.metadata.namespace == me.metadata.namespace
            && other.metadata.name == me.metadata.name
    };
    let (theirs, mine) = (other.pinned(), me.pinned());
    !theirs.dry_run
        && theirs.app_id == mine.app_id
        && theirs.region_id == mine.region_id
        && !same_object()
}

/// Not started yet, or waiting to try again, and able to act (credentials found, no deletion
/// policy refusing it): such an object holds its place in line. Finished objects, those waiting
/// for credentials and those a policy refuses do not: they could hold up the app for good.
pub fn waits_in_line(obj: &SaeInstanceDeletion) -> bool {
    let Some(status) = &obj.status else {
        return true;
    };
    let reason = status.reason().and_then(|r| r.parse::<Reason>().ok());
    matches!(
        status.phase,
        None | Some(Phase::Pending) | Some(Phase::Retrying)
    ) && reason != Some(Reason::CredentialsNotFound)
        && !reason.is_some_and(Reason::is_policy_refusal)
}

/// The order objects of one app take turns in: creation time, then namespace/name — the same in
/// every replica and after every restart.
pub fn queue_order(obj: &SaeInstanceDeletion) -> (Option<Timestamp>, Option<&str>, Option<&str>) {
    (
        obj.metadata.creation_timestamp.as_ref().map(|t| t.0),
        obj.metadata.namespace.as_deref(),
        obj.metadata.name.as_deref(),
    )
}

/// "namespace/name", as logs, spans and status messages name an object.
pub fn object_key(obj: &SaeInstanceDeletion) -> String {
    format!("{}/{}", obj.namespace().unwrap_or_default(), obj.name_any())
}

/// An attempt in flight or a change order running: the object has its app to itself.
pub fn holds_app(obj: &SaeInstanceDeletion) -> bool {
    matches!(
        obj.status.as_ref().and_then(|s| s.phase),
        Some(Phase::Submitting | Phase::InProgress)
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::{SaeInstanceDeletionSpec, SaeInstanceDeletionStatus};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

    /// An object named `name` on `app`, created `created` seconds after T0, in `phase`/`reason`.
    fn obj(
        name: &str,
        app: &str,
        created: i64,
        phase: Option<Phase>,
        reason: Option<Reason>,
    ) -> Arc<SaeInstanceDeletion> {
        let spec = SaeInstanceDeletionSpec {
            region_id: "cn-hangzhou".into(),
            app_id: app.into(),
            instance_ids: vec!["i-1".into()],
            credentials_ref: None,
            retry: Default::default(),
            active_deadline_seconds: 3600,
            wait_for_completion: true,
            dry_run: false,
        };
        let mut o = SaeInstanceDeletion::new(name, spec);
        o.metadata.namespace = Some("ns".into());
        o.metadata.uid = Some(format!("uid-{name}"));
        let t0: Timestamp = "2026-01-01T00:00:00Z".parse().unwrap();
        o.metadata.creation_timestamp = Some(Time(t0 + jiff::SignedDuration::from_secs(created)));
        o.status = phase.map(|phase| {
            let mut s = SaeInstanceDeletionStatus {
                phase: Some(phase),
                ..Default::default()
            };
            if let Some(reason) = reason {
                s.conditions = vec![k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition {
                    type_: crate::crd::CONDITION_RECONCILING.into(),
                    status: "False".into(),
                    reason: reason.as_str().into(),
                    message: String::new(),
                    observed_generation: None,
                    last_transition_time: Time(t0),
                }];
            }
            s
        });
        Arc::new(o)
    }

    #[test]
    fn whose_turn_it_is() {
        use Phase::*;
        let me = obj("me", "app", 10, None, None);
        let free = AppTurn::Free;
        let busy = |h: &str| AppTurn::Busy {
            holder: format!("ns/{h}"),
        };
        let queued = |a: &str| AppTurn::Queued {
            ahead: format!("ns/{a}"),
        };
        let cases: Vec<(&str, Vec<Arc<SaeInstanceDeletion>>, AppTurn)> = vec![
            ("alone", vec![me.clone()], free.clone()),
            (
                "another app in flight",
                vec![obj("x", "other", 0, Some(Submitting), None)],
                free.clone(),
            ),
            (
                "an attempt in flight holds the app",
                vec![obj("x", "app", 20, Some(Submitting), None)],
                busy("x"),
            ),
            (
                "a running change order holds the app",
                vec![obj("x", "app", 20, Some(InProgress), None)],
                busy("x"),
            ),
            (
                "an older new object goes first",
                vec![obj("x", "app", 5, None, None)],
                queued("x"),
            ),
            (
                "an older retrying object goes first",
                vec![obj("x", "app", 5, Some(Retrying), None)],
                queued("x"),
            ),
            (
                "a younger one waits behind me",
                vec![obj("x", "app", 15, None, None)],
                free.clone(),
            ),
            (
                "finished objects hold nothing",
                vec![
                    obj("x", "app", 5, Some(Succeeded), None),
                    obj("y", "app", 6, Some(Failed), None),
                ],
                free.clone(),
            ),
            (
                "an older one without credentials holds no place",
                vec![obj(
                    "x",
                    "app",
                    5,
                    Some(Pending),
                    Some(Reason::CredentialsNotFound),
                )],
                free.clone(),
            ),
            (
                "the oldest of several ahead is named",
                vec![
                    obj("b", "app", 7, None, None),
                    obj("a", "app", 3, None, None),
                ],
                queued("a"),
            ),
            (
                "a holder wins over a queue",
                vec![
                    obj("a", "app", 3, None, None),
                    obj("h", "app", 30, Some(InProgress), None),
                ],
                busy("h"),
            ),
        ];
        for (name, objects, want) in cases {
            assert_eq!(app_turn(&objects, &me), want, "{name}");
        }
        // Dry runs neither hold the app nor queue.
        let mut dry = (*obj("d", "app", 1, Some(Submitting), None)).clone();
        dry.spec.dry_run = true;
        assert_eq!(app_turn(&[Arc::new(dry)], &me), AppTurn::Free);
        // What the first attempts recorded counts, not an edited spec: an attempt in flight on
        // "app" still holds it, and a recorded dry run still holds nothing.
        let recorded = |o: &SaeInstanceDeletion| {
            let mut o = o.clone();
            let mut status = o.status.clone().unwrap_or_default();
            o.pinned().record(&mut status);
            o.status = Some(status);
            o
        };
        let mut moved = recorded(&obj("m", "app", 1, Some(Submitting), None));
        moved.spec.app_id = "other".into();
        assert_eq!(app_turn(&[Arc::new(moved)], &me), busy("m"));
        let mut dry = (*obj("d", "app", 1, Some(Submitting), None)).clone();
        dry.spec.dry_run = true;
        let mut dry = recorded(&dry);
        dry.spec.dry_run = false;
        assert_eq!(app_turn(&[Arc::new(dry)], &me), AppTurn::Free);
        let mut me_moved = recorded(&me);
        me_moved.spec.app_id = "other".into();
        let holder = obj("x", "app", 20, Some(InProgress), None);
        assert_eq!(app_turn(&[holder], &me_moved), busy("x"));
        // Ties on creation time go by namespace/name, the same in every replica.
        let twin = obj("a-twin", "app", 10, None, None);
        assert_eq!(app_turn(&[twin], &me), queued("a-twin"));
    }

    #[test]
    fn credentials_are_read_only_when_they_can_be_used() {
        let waiting = obj(
            "w",
            "a",
            0,
            Some(Phase::Pending),
            Some(Reason::WaitingForApplication),
        );
        let busy = AppTurn::Busy {
            holder: "ns/h".into(),
        };
        let queued = AppTurn::Queued {
            ahead: "ns/a".into(),
        };
        assert!(
            !needs_credentials(&waiting, &busy),
            "waiting on a busy app: not read"
        );
        assert!(
            !needs_credentials(&waiting, &queued),
            "waiting behind another: not read"
        );
        assert!(
            needs_credentials(&waiting, &AppTurn::Free),
            "its turn: read"
        );
        let new = obj("n", "a", 0, None, None);
        assert!(
            needs_credentials(&new, &busy),
            "a new object reads them once, to join the line"
        );
        let resolving = obj("r", "a", 0, Some(Phase::Submitting), None);
        assert!(needs_credentials(&resolving, &busy));
    }

    #[test]
    fn who_waits_and_who_holds() {
        use Phase::*;
        assert!(holds_app(&obj("x", "a", 0, Some(Submitting), None)));
        assert!(holds_app(&obj("x", "a", 0, Some(InProgress), None)));
        assert!(!holds_app(&obj("x", "a", 0, Some(Pending), None)));
        assert!(waits_for_app(&obj(
            "x",
            "a",
            0,
            Some(Pending),
            Some(Reason::WaitingForApplication)
        )));
        assert!(!waits_for_app(&obj(
            "x",
            "a",
            0,
            Some(Pending),
            Some(Reason::Pending)
        )));
        assert!(waits_in_line(&obj("x", "a", 0, None, None)));
        assert!(!waits_in_line(&obj("x", "a", 0, Some(Submitting), None)));
    }
}
