use jiff::tz::TimeZone;

use super::*;
use crate::cli::test_objects::{at, fresh, with_status};
use crate::crd::{Phase, Reason};
use crate::policy::SaeDeletionPolicySpec;

fn request() -> DeleteRequest {
    DeleteRequest {
        app_id: "app-1".into(),
        region_id: "cn-hangzhou".into(),
        instance_ids: vec!["i-1".into(), "i-2".into()],
        ..Default::default()
    }
}

fn policy(name: &str, edit: impl FnOnce(&mut SaeDeletionPolicySpec)) -> SaeDeletionPolicy {
    let mut spec: SaeDeletionPolicySpec = serde_json::from_str("{}").unwrap();
    edit(&mut spec);
    SaeDeletionPolicy::new(name, spec)
}

fn ask(policies: &[SaeDeletionPolicy], objects: &[SaeInstanceDeletion]) -> CheckAnswer {
    let cluster = Cluster {
        namespace: "ns",
        namespace_labels: None,
        policies,
        objects,
    };
    check(&request(), &cluster, at(100), &TimeZone::UTC)
}

#[test]
fn without_policies_everything_is_admitted_and_the_flag_is_named() {
    let answer = ask(&[], &[]);
    assert!(answer.admitted);
    assert_eq!(
        answer.lines[0],
        "no SaeDeletionPolicy exists: admitted unless the controller runs with --require-policy"
    );
    assert!(!answer.cannot_tell);
    assert_eq!(answer.lines[1], "app app-1: free, nothing ahead in line");
}

#[test]
fn names_the_admitting_policy_or_why_none_does() {
    let open = policy("team-a", |s| s.app_ids = Some(vec!["app-1".into()]));
    let answer = ask(&[open], &[]);
    assert!(answer.admitted);
    assert_eq!(answer.lines[0], "admitted by SaeDeletionPolicy \"team-a\"");

    let small = policy("small", |s| s.max_instances_per_deletion = Some(1));
    let answer = ask(&[small], &[]);
    assert!(!answer.admitted);
    assert!(
        answer.lines[0].starts_with("refused (NotPermitted, policy \"small\")"),
        "{answer:?}"
    );

    let elsewhere = policy("other-app", |s| s.app_ids = Some(vec!["app-2".into()]));
    let answer = ask(&[elsewhere], &[]);
    assert!(!answer.admitted);
    assert!(
        answer.lines[0].starts_with("refused (NotPermitted, no policy admits it)"),
        "{answer:?}"
    );
}

#[test]
fn a_running_count_is_said_to_need_sae() {
    let floor = policy("floor", |s| s.min_running_instances = Some(2));
    let answer = ask(&[floor], &[]);
    assert!(answer.admitted);
    assert!(
        answer.lines[0].contains("would need SAE's instance count at send time"),
        "{answer:?}"
    );
}

#[test]
fn the_hourly_budget_counts_the_cluster_s_deletions() {
    let hourly = policy("hourly", |s| s.max_instances_per_hour = Some(3));
    let earlier = with_status(
        fresh("earlier", 0),
        Phase::Succeeded,
        Reason::Succeeded,
        "",
        |s| {
            s.change_order_id = Some("co".into());
            s.last_attempt_time = crate::cli::test_objects::time(10);
        },
    );
    let answer = ask(&[hourly], &[earlier]);
    assert!(!answer.admitted, "2 deleted + 2 asked > 3: {answer:?}");
    assert!(
        answer.lines[0].starts_with("refused (DisruptionBudget, policy \"hourly\")"),
        "{answer:?}"
    );
    assert!(
        answer
            .lines
            .iter()
            .any(|l| l.ends_with("in the last hour: 2")),
        "{answer:?}"
    );
}

#[test]
fn says_whether_the_app_is_busy() {
    let running = with_status(
        fresh("running", 0),
        Phase::InProgress,
        Reason::WaitingForChangeOrder,
        "",
        |_| {},
    );
    let answer = ask(&[], &[running]);
    assert_eq!(
        answer.lines[1],
        "app app-1: would wait; ns/running holds it (an attempt or change order running)"
    );
    let waiting = fresh("waiting", 0);
    let answer = ask(&[], &[waiting]);
    assert!(answer.lines[1].contains("behind ns/waiting"), "{answer:?}");
}

#[test]
fn a_namespace_selector_with_unreadable_labels_cannot_be_told() {
    let by_label = policy("prod", |s| {
        s.namespace_selector =
            Some(serde_json::from_str(r#"{"matchLabels":{"env":"prod"}}"#).unwrap())
    });
    let answer = ask(std::slice::from_ref(&by_label), &[]);
    assert!(answer.cannot_tell, "{answer:?}");
    assert!(answer.lines[0].starts_with("cannot tell:"), "{answer:?}");

    // With the labels read, the selector is evaluated and the answer is told.
    let labels = BTreeMap::from([("env".to_string(), "prod".to_string())]);
    let cluster = Cluster {
        namespace: "ns",
        namespace_labels: Some(&labels),
        policies: std::slice::from_ref(&by_label),
        objects: &[],
    };
    let answer = check(&request(), &cluster, at(100), &TimeZone::UTC);
    assert!(!answer.cannot_tell && answer.admitted, "{answer:?}");

    // Unreadable labels do not matter when no policy selects by label.
    let plain = policy("plain", |s| s.app_ids = Some(vec!["app-1".into()]));
    assert!(!ask(&[plain], &[]).cannot_tell);
}
