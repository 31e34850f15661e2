//! Table tests of the deletion policies: the CRD, scope, limits, windows, the strictest of
//! several policies, invalid policies, and the hourly count from statuses.

use std::collections::BTreeMap;

use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{
    LabelSelector, LabelSelectorRequirement, Time,
};
use kube::CustomResourceExt;
use serde_json::{Value, json};

use super::*;
use crate::crd::{Phase, SaeInstanceDeletionStatus};
use crate::fixtures;

// ---- builders -----------------------------------------------------------------------------------

fn ts(s: &str) -> Timestamp {
    s.parse().unwrap()
}

fn policy(name: &str, edit: impl FnOnce(&mut SaeDeletionPolicySpec)) -> SaeDeletionPolicy {
    let mut spec = SaeDeletionPolicySpec::default();
    edit(&mut spec);
    SaeDeletionPolicy::new(name, spec)
}

fn strings(items: &[&str]) -> Option<Vec<String>> {
    Some(items.iter().map(|s| s.to_string()).collect())
}

fn window(days: &[Day], start: &str, end: &str, zone: &str) -> MaintenanceWindow {
    MaintenanceWindow {
        days: days.to_vec(),
        start: start.into(),
        end: end.into(),
        time_zone: zone.into(),
    }
}

fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn expr(key: &str, op: &str, values: &[&str]) -> LabelSelectorRequirement {
    LabelSelectorRequirement {
        key: key.into(),
        operator: op.into(),
        values: if values.is_empty() {
            None
        } else {
            strings(values)
        },
    }
}

/// The object the tests ask about: namespace team-a (labels unknown), app-1 in cn-hangzhou, with
/// a Secret, two instances.
fn subject() -> Subject<'static> {
    Subject {
        namespace: "team-a",
        namespace_labels: None,
        app_id: "app-1",
        region_id: "cn-hangzhou",
        uses_secret: true,
        instances: 2,
    }
}

/// 2026-01-01 is a Thursday; 00:00 UTC is Thu 08:00 in Shanghai and Wed 19:00 in New York.
fn facts() -> Facts {
    Facts {
        now: fixtures::t0(),
        deleted_last_hour: 0,
        running: None,
        require_policy: false,
    }
}

fn decide(policies: &[SaeDeletionPolicy], s: &Subject<'_>, f: &Facts) -> Verdict {
    PolicySet::new(policies).decide(s, f)
}

/// The verdict in one line, for tables: `Admitted[a,b]`, `NeedRunningCount[a]`,
/// `Reason(policy)`.
fn short(v: &Verdict) -> String {
    match v {
        Verdict::Admitted { by } => format!("Admitted[{}]", by.join(",")),
        Verdict::NeedRunningCount { policies } => {
            format!("NeedRunningCount[{}]", policies.join(","))
        }
        Verdict::Refused(r) => format!(
            "{}({})",
            r.reason.as_str(),
            r.policy.as_deref().unwrap_or("-")
        ),
    }
}

fn refusal(v: Verdict) -> Refusal {
    match v {
        Verdict::Refused(r) => r,
        other => panic!("expected a refusal, got {other:?}"),
    }
}

// ---- no policy, default deny -------------------------------------------------------------------

#[test]
fn no_policy_admits_everything_unless_required() {
    assert_eq!(short(&decide(&[], &subject(), &facts())), "Admitted[]");
    let required = Facts {
        require_policy: true,
        ..facts()
    };
    let r = refusal(decide(&[], &subject(), &required));
    assert_eq!((r.reason, r.policy), (RefusalReason::NotPermitted, None));
    assert!(r.message.contains("--require-policy"), "{}", r.message);
}

#[test]
fn once_a_policy_exists_an_object_no_policy_admits_is_refused() {
    let other = policy("others", |s| s.namespaces = strings(&["team-b"]));
    let r = refusal(decide(&[other], &subject(), &facts()));
    assert_eq!(
        (r.reason, r.policy.as_deref()),
        (RefusalReason::NotPermitted, None)
    );
    assert!(
        r.message
            .contains("no SaeDeletionPolicy admits namespace team-a")
            && r.message.contains("others: namespace team-a not admitted"),
        "{}",
        r.message
    );
    // An empty spec admits everything (and limits nothing).
    let open = policy("open", |_| {});
    assert_eq!(
        short(&decide(&[open], &subject(), &facts())),
        "Admitted[open]"
    );
}

// ---- scope ---------------------------------------------------------------------------------------

#[test]
fn scope_by_namespace_app_region_and_credentials() {
    let secret = subject();
    let own = Subject {
        uses_secret: false,
        ..subject()
    };
    type Edit = fn(&mut SaeDeletionPolicySpec);
    let cases: [(&str, Edit, &Subject<'_>, bool); 12] = [
        (
            "namespace listed",
            |s| s.namespaces = strings(&["x", "team-a"]),
            &secret,
            true,
        ),
        (
            "namespace not listed",
            |s| s.namespaces = strings(&["team-b"]),
            &secret,
            false,
        ),
        (
            "app listed",
            |s| s.app_ids = strings(&["app-1"]),
            &secret,
            true,
        ),
        (
            "app not listed",
            |s| s.app_ids = strings(&["app-2"]),
            &secret,
            false,
        ),
        (
            "region listed",
            |s| s.region_ids = strings(&["cn-hangzhou"]),
            &secret,
            true,
        ),
        (
            "region not listed",
            |s| s.region_ids = strings(&["cn-beijing"]),
            &secret,
            false,
        ),
        (
            "credentials Any, Secret",
            |s| s.credentials = CredentialsMode::Any,
            &secret,
            true,
        ),
        (
            "credentials Any, own",
            |s| s.credentials = CredentialsMode::Any,
            &own,
            true,
        ),
        (
            "SecretOnly, Secret",
            |s| s.credentials = CredentialsMode::SecretOnly,
            &secret,
            true,
        ),
        (
            "SecretOnly, own",
            |s| s.credentials = CredentialsMode::SecretOnly,
            &own,
            false,
        ),
        (
            "ControllerOnly, own",
            |s| s.credentials = CredentialsMode::ControllerOnly,
            &own,
            true,
        ),
        (
            "ControllerOnly, Secret",
            |s| s.credentials = CredentialsMode::ControllerOnly,
            &secret,
            false,
        ),
    ];
    for (name, edit, s, admitted) in cases {
        let v = decide(&[policy("p", edit)], s, &facts());
        let want = if admitted {
            "Admitted[p]"
        } else {
            "NotPermitted(-)"
        };
        assert_eq!(short(&v), want, "{name}");
    }
    // Every scope field set must match (AND).
    let all = policy("all", |s| {
        s.namespaces = strings(&["team-a"]);
        s.app_ids = strings(&["app-1"]);
        s.region_ids = strings(&["cn-beijing"]);
    });
    let r = refusal(decide(&[all], &secret, &facts()));
    assert!(
        r.message.contains("region cn-hangzhou not admitted"),
        "{}",
        r.message
    );
}

#[test]
fn scope_by_namespace_labels() {
    let prod = labels(&[("env", "prod"), ("team", "a")]);
    let dev = labels(&[("env", "dev")]);
    let none = labels(&[]);
    let selector = |labels: Option<BTreeMap<String, String>>,
                    exprs: Vec<LabelSelectorRequirement>| {
        LabelSelector {
            match_labels: labels,
            match_expressions: if exprs.is_empty() { None } else { Some(exprs) },
        }
    };
    let cases: Vec<(&str, LabelSelector, &BTreeMap<String, String>, bool)> = vec![
        (
            "matchLabels match",
            selector(Some(labels(&[("env", "prod")])), vec![]),
            &prod,
            true,
        ),
        (
            "matchLabels differ",
            selector(Some(labels(&[("env", "prod")])), vec![]),
            &dev,
            false,
        ),
        (
            "matchLabels missing key",
            selector(Some(labels(&[("env", "prod")])), vec![]),
            &none,
            false,
        ),
        (
            "In match",
            selector(None, vec![expr("env", "In", &["prod", "staging"])]),
            &prod,
            true,
        ),
        (
            "In differ",
            selector(None, vec![expr("env", "In", &["prod"])]),
            &dev,
            false,
        ),
        (
            "In missing key",
            selector(None, vec![expr("env", "In", &["prod"])]),
            &none,
            false,
        ),
        (
            "NotIn match",
            selector(None, vec![expr("env", "NotIn", &["prod"])]),
            &dev,
            true,
        ),
        (
            "NotIn missing key",
            selector(None, vec![expr("env", "NotIn", &["prod"])]),
            &none,
            true,
        ),
        (
            "NotIn differ",
            selector(None, vec![expr("env", "NotIn", &["prod"])]),
            &prod,
            false,
        ),
        (
            "Exists",
            selector(None, vec![expr("team", "Exists", &[])]),
            &prod,
            true,
        ),
        (
            "Exists missing",
            selector(None, vec![expr("team", "Exists", &[])]),
            &dev,
            false,
        ),
        (
            "DoesNotExist",
            selector(None, vec![expr("team", "DoesNotExist", &[])]),
            &dev,
            true,
        ),
        (
            "DoesNotExist present",
            selector(None, vec![expr("team", "DoesNotExist", &[])]),
            &prod,
            false,
        ),
        (
            "labels AND expressions",
            selector(
                Some(labels(&[("env", "prod")])),
                vec![expr("team", "In", &["b"])],
            ),
            &prod,
            false,
        ),
        (
            "empty selector matches all",
            selector(None, vec![]),
            &none,
            true,
        ),
    ];
    for (name, sel, ns_labels, admitted) in cases {
        let p = policy("p", |s| s.namespace_selector = Some(sel.clone()));
        let s = Subject {
            namespace_labels: Some(ns_labels),
            ..subject()
        };
        let want = if admitted {
            "Admitted[p]"
        } else {
            "NotPermitted(-)"
        };
        assert_eq!(short(&decide(&[p], &s, &facts())), want, "{name}");
    }

    // namespaces OR namespaceSelector.
    let either = policy("p", |s| {
        s.namespaces = strings(&["team-z"]);
        s.namespace_selector = Some(selector(Some(labels(&[("env", "prod")])), vec![]));
    });
    for (ns, ns_labels, want) in [
        ("team-a", &prod, "Admitted[p]"),
        ("team-z", &dev, "Admitted[p]"),
        ("team-a", &dev, "NotPermitted(-)"),
    ] {
        let s = Subject {
            namespace: ns,
            namespace_labels: Some(ns_labels),
            ..subject()
        };
        assert_eq!(
            short(&decide(std::slice::from_ref(&either), &s, &facts())),
            want,
            "{ns} {ns_labels:?}"
        );
    }

    // Labels not known yet: no selector matches, a listed name still does.
    let unknown = subject();
    let r = refusal(decide(
        &[policy("p", |s| {
            s.namespace_selector = Some(selector(None, vec![]))
        })],
        &unknown,
        &facts(),
    ));
    assert!(
        r.message.contains("labels are not known yet"),
        "{}",
        r.message
    );
    let s = Subject {
        namespace: "team-z",
        ..subject()
    };
    assert_eq!(short(&decide(&[either], &s, &facts())), "Admitted[p]");
}

// ---- limits --------------------------------------------------------------------------------------

#[test]
fn size_limit() {
    for (max, instances, want) in [
        (2, 2, "Admitted[p]"),
        (2, 3, "NotPermitted(p)"),
        (1, 1, "Admitted[p]"),
    ] {
        let p = policy("p", |s| s.max_instances_per_deletion = Some(max));
        let s = Subject {
            instances,
            ..subject()
        };
        let v = decide(&[p], &s, &facts());
        assert_eq!(short(&v), want, "max {max}, {instances} ids");
        if let Verdict::Refused(r) = v {
            assert!(
                r.message.contains("\"p\" allows at most 2 instance ids")
                    && r.message.contains("maxInstancesPerDeletion")
                    && r.message.contains("names 3"),
                "{}",
                r.message
            );
        }
    }
}

#[test]
fn min_running_instances() {
    let p = policy("keep", |s| s.min_running_instances = Some(3));
    // Asked for the running count only once everything else passed.
    assert_eq!(
        short(&decide(std::slice::from_ref(&p), &subject(), &facts())),
        "NeedRunningCount[keep]"
    );
    for (running, want) in [
        (5, "Admitted[keep]"),         // 5 - 2 = 3 >= 3
        (4, "DisruptionBudget(keep)"), // 4 - 2 = 2 < 3
        (1, "DisruptionBudget(keep)"), // fewer Running than named: 0 left
    ] {
        let f = Facts {
            running: Some(running),
            ..facts()
        };
        let v = decide(std::slice::from_ref(&p), &subject(), &f);
        assert_eq!(short(&v), want, "running {running}");
        if let Verdict::Refused(r) = v {
            assert!(
                r.message
                    .contains("keeps at least 3 instances of app app-1 Running")
                    && r.message.contains("minRunningInstances")
                    && r.message.contains(&format!("SAE lists {running} Running")),
                "{}",
                r.message
            );
        }
    }
    // Zero: nothing must stay Running, even when the object names more than SAE lists.
    let zero = policy("zero", |s| s.min_running_instances = Some(0));
    let f = Facts {
        running: Some(0),
        ..facts()
    };
    assert_eq!(short(&decide(&[zero], &subject(), &f)), "Admitted[zero]");
}

#[test]
fn max_instances_per_hour() {
    let p = policy("hourly", |s| s.max_instances_per_hour = Some(5));
    for (deleted, instances, want) in [
        (0, 2, "Admitted[hourly]"),
        (3, 2, "Admitted[hourly]"),
        (4, 2, "DisruptionBudget(hourly)"),
        (0, 6, "DisruptionBudget(hourly)"),
    ] {
        let s = Subject {
            instances,
            ..subject()
        };
        let f = Facts {
            deleted_last_hour: deleted,
            ..facts()
        };
        let v = decide(std::slice::from_ref(&p), &s, &f);
        assert_eq!(short(&v), want, "{deleted} deleted, {instances} named");
        if let Verdict::Refused(r) = v {
            assert!(
                r.message.contains("at most 5 instances of app app-1")
                    && r.message.contains("maxInstancesPerHour"),
                "{}",
                r.message
            );
            assert_eq!(
                r.message.contains("can never be sent"),
                instances > 5,
                "{}",
                r.message
            );
        }
    }
}

#[test]
fn the_strictest_of_several_admitting_policies_binds() {
    let loose = policy("a-loose", |s| {
        s.max_instances_per_deletion = Some(10);
        s.max_instances_per_hour = Some(100);
        s.min_running_instances = Some(1);
    });
    let strict = policy("b-strict", |s| {
        s.app_ids = strings(&["app-1"]);
        s.max_instances_per_deletion = Some(2);
        s.max_instances_per_hour = Some(4);
        s.min_running_instances = Some(5);
    });
    // A policy that does not admit the object sets no limit on it.
    let elsewhere = policy("c-elsewhere", |s| {
        s.app_ids = strings(&["app-2"]);
        s.max_instances_per_deletion = Some(1);
    });
    let all = [loose, strict, elsewhere];
    let three = Subject {
        instances: 3,
        ..subject()
    };
    assert_eq!(
        short(&decide(&all, &three, &facts())),
        "NotPermitted(b-strict)"
    );
    let busy = Facts {
        deleted_last_hour: 3,
        ..facts()
    };
    assert_eq!(
        short(&decide(&all, &subject(), &busy)),
        "DisruptionBudget(b-strict)"
    );
    assert_eq!(
        short(&decide(&all, &subject(), &facts())),
        "NeedRunningCount[a-loose,b-strict]"
    );
    let f = Facts {
        running: Some(6),
        ..facts()
    };
    assert_eq!(
        short(&decide(&all, &subject(), &f)),
        "DisruptionBudget(b-strict)"
    );
    let f = Facts {
        running: Some(7),
        ..facts()
    };
    assert_eq!(
        short(&decide(&all, &subject(), &f)),
        "Admitted[a-loose,b-strict]"
    );
}

#[test]
fn cheap_rules_are_reported_before_costly_ones() {
    // Size before windows before the hourly budget before the Running count.
    let p = policy("p", |s| {
        s.max_instances_per_deletion = Some(1);
        s.windows = Some(vec![window(&[Day::Fri], "00:00", "01:00", "UTC")]);
        s.max_instances_per_hour = Some(1);
        s.min_running_instances = Some(100);
    });
    let many = Facts {
        deleted_last_hour: 5,
        running: Some(0),
        ..facts()
    };
    assert_eq!(
        short(&decide(std::slice::from_ref(&p), &subject(), &many)),
        "NotPermitted(p)"
    );
    let one = Subject {
        instances: 1,
        ..subject()
    };
    assert_eq!(
        short(&decide(std::slice::from_ref(&p), &one, &many)),
        "OutsideMaintenanceWindow(p)"
    );
    let friday = Facts {
        now: ts("2026-01-02T00:30:00Z"),
        ..many
    };
    assert_eq!(
        short(&decide(std::slice::from_ref(&p), &one, &friday)),
        "DisruptionBudget(p)"
    );
    let quiet = Facts {
        deleted_last_hour: 0,
        ..friday
    };
    let r = refusal(decide(&[p], &one, &quiet));
    assert!(r.message.contains("minRunningInstances"), "{}", r.message);
}

// ---- windows -------------------------------------------------------------------------------------

/// (window, now, open?, next opening when closed)
#[test]
fn windows_in_zones_and_days() {
    use Day::*;
    let cases: Vec<(&str, MaintenanceWindow, &str, Option<&str>)> = vec![
        // 2026-01-01T00:30Z is Thu 08:30 in Shanghai, Wed 19:30 in New York.
        (
            "Shanghai, inside",
            window(&[Thu], "08:00", "09:00", "Asia/Shanghai"),
            "2026-01-01T00:30:00Z",
            None,
        ),
        (
            "Shanghai, after",
            window(&[Thu], "08:00", "09:00", "Asia/Shanghai"),
            "2026-01-01T01:00:00Z",
            Some("2026-01-08T00:00:00Z"),
        ),
        (
            "Shanghai, before",
            window(&[Thu], "08:00", "09:00", "Asia/Shanghai"),
            "2025-12-31T23:59:00Z",
            Some("2026-01-01T00:00:00Z"),
        ),
        (
            "New York, inside",
            window(&[Wed], "19:00", "20:00", "America/New_York"),
            "2026-01-01T00:30:00Z",
            None,
        ),
        (
            "New York's Thursday is later",
            window(&[Thu], "19:00", "20:00", "America/New_York"),
            "2026-01-01T00:30:00Z",
            Some("2026-01-02T00:00:00Z"),
        ),
        (
            "UTC, another day",
            window(&[Sat, Sun], "00:00", "24:00", "UTC"),
            "2026-01-01T00:30:00Z",
            Some("2026-01-03T00:00:00Z"),
        ),
        (
            "UTC, end of day",
            window(&[Thu], "23:00", "24:00", "UTC"),
            "2026-01-01T23:59:59Z",
            None,
        ),
        (
            "end excluded",
            window(&[Thu], "00:00", "00:30", "UTC"),
            "2026-01-01T00:30:00Z",
            Some("2026-01-08T00:00:00Z"),
        ),
        // New York, 2026-03-08: 02:00 EST jumps to 03:00 EDT at 07:00Z.
        (
            "DST gap: window inside the skipped hour does not open that day",
            window(&[Sun], "02:00", "03:00", "America/New_York"),
            "2026-03-08T06:00:00Z",
            Some("2026-03-15T06:00:00Z"),
        ),
        (
            "DST gap: opens when the clock jumps",
            window(&[Sun], "02:30", "04:00", "America/New_York"),
            "2026-03-08T06:00:00Z",
            Some("2026-03-08T07:00:00Z"),
        ),
        (
            "DST gap: open after the jump",
            window(&[Sun], "02:30", "04:00", "America/New_York"),
            "2026-03-08T07:00:00Z",
            None,
        ),
        // New York, 2026-11-01: 02:00 EDT falls back to 01:00 EST at 06:00Z; 01:xx happens twice.
        (
            "DST fold: opens at the first 01:00",
            window(&[Sun], "01:00", "02:00", "America/New_York"),
            "2026-11-01T04:00:00Z",
            Some("2026-11-01T05:00:00Z"),
        ),
        (
            "DST fold: still open in the repeated hour",
            window(&[Sun], "01:00", "02:00", "America/New_York"),
            "2026-11-01T06:59:00Z",
            None,
        ),
        (
            "DST fold: closed at 02:00 EST",
            window(&[Sun], "01:00", "02:00", "America/New_York"),
            "2026-11-01T07:00:00Z",
            Some("2026-11-08T06:00:00Z"),
        ),
    ];
    for (name, w, now, next) in cases {
        let p = policy("w", |s| s.windows = Some(vec![w]));
        let f = Facts {
            now: ts(now),
            ..facts()
        };
        let v = decide(&[p], &subject(), &f);
        match next {
            None => assert_eq!(short(&v), "Admitted[w]", "{name}"),
            Some(next) => {
                let r = refusal(v);
                assert_eq!(r.reason, RefusalReason::OutsideMaintenanceWindow, "{name}");
                assert_eq!(r.retry_at, Some(ts(next)), "{name}: {}", r.message);
                assert!(
                    r.message
                        .contains("\"w\" lets a deletion start only inside its windows"),
                    "{name}: {}",
                    r.message
                );
            }
        }
    }
}

#[test]
fn windows_across_midnight_are_two_windows() {
    use Day::*;
    let p = policy("night", |s| {
        s.windows = Some(vec![
            window(&[Thu], "22:00", "24:00", "UTC"),
            window(&[Fri], "00:00", "02:00", "UTC"),
        ])
    });
    for (now, open) in [
        ("2026-01-01T21:59:00Z", false),
        ("2026-01-01T22:00:00Z", true),
        ("2026-01-01T23:59:59Z", true),
        ("2026-01-02T00:00:00Z", true),
        ("2026-01-02T01:59:00Z", true),
        ("2026-01-02T02:00:00Z", false),
    ] {
        let f = Facts {
            now: ts(now),
            ..facts()
        };
        let v = decide(std::slice::from_ref(&p), &subject(), &f);
        assert_eq!(matches!(v, Verdict::Admitted { .. }), open, "{now}: {v:?}");
    }
    // Written as one window, it is invalid: start after end.
    let one = policy("one", |s| {
        s.windows = Some(vec![window(&[Thu], "22:00", "02:00", "UTC")])
    });
    let err = validate(&one).unwrap_err();
    assert!(
        err.contains("start must be before end") && err.contains("two windows"),
        "{err}"
    );
}

#[test]
fn every_admitting_policy_needs_an_open_window() {
    use Day::*;
    let a = policy("a", |s| {
        s.windows = Some(vec![window(&[Thu], "00:00", "01:00", "UTC")])
    });
    let b = policy("b", |s| {
        s.windows = Some(vec![window(&[Thu], "00:30", "02:00", "UTC")])
    });
    let at = |now: &str| Facts {
        now: ts(now),
        ..facts()
    };
    let r = refusal(decide(
        &[a.clone(), b.clone()],
        &subject(),
        &at("2026-01-01T00:10:00Z"),
    ));
    assert_eq!(r.policy.as_deref(), Some("b"));
    assert_eq!(
        r.retry_at,
        Some(ts("2026-01-01T00:30:00Z")),
        "when both are open"
    );
    assert_eq!(
        short(&decide(
            &[a.clone(), b],
            &subject(),
            &at("2026-01-01T00:45:00Z")
        )),
        "Admitted[a,b]"
    );
    // Windows that never meet: no time to come back at, and the message says why.
    let c = policy("c", |s| {
        s.windows = Some(vec![window(&[Thu], "02:00", "03:00", "UTC")])
    });
    let r = refusal(decide(&[a, c], &subject(), &at("2026-01-01T00:10:00Z")));
    assert_eq!((r.policy.as_deref(), r.retry_at), (Some("c"), None));
    assert!(r.message.contains("do not meet"), "{}", r.message);
}

#[test]
fn the_bundled_time_zone_database_is_compiled_in() {
    // The static image has no /usr/share/zoneinfo: jiff falls back to this copy.
    let bundled = jiff::tz::TimeZoneDatabase::bundled();
    for zone in ["Asia/Shanghai", "America/New_York", "Europe/Berlin", "UTC"] {
        assert!(
            bundled.get(zone).is_ok(),
            "{zone} missing from the bundled database"
        );
    }
}

// ---- invalid policies ----------------------------------------------------------------------------

#[test]
fn invalid_policies_are_reported_and_admit_nothing() {
    use Day::*;
    type Edit = fn(&mut SaeDeletionPolicySpec);
    let cases: [(&str, Edit, &str); 9] = [
        (
            "unknown zone",
            |s| s.windows = Some(vec![window(&[Mon], "01:00", "02:00", "Mars/Olympus")]),
            "unknown time zone \"Mars/Olympus\"",
        ),
        (
            "start after end",
            |s| s.windows = Some(vec![window(&[Mon], "03:00", "02:00", "UTC")]),
            "start must be before end",
        ),
        (
            "start equals end",
            |s| s.windows = Some(vec![window(&[Mon], "02:00", "02:00", "UTC")]),
            "start must be before end",
        ),
        (
            "bad time",
            |s| s.windows = Some(vec![window(&[Mon], "2:00", "04:00", "UTC")]),
            "is not HH:MM",
        ),
        (
            "no days",
            |s| s.windows = Some(vec![window(&[], "01:00", "02:00", "UTC")]),
            "days is empty",
        ),
        (
            "no windows",
            |s| s.windows = Some(vec![]),
            "windows is empty",
        ),
        (
            "empty namespaces",
            |s| s.namespaces = Some(vec![]),
            "namespaces is empty",
        ),
        (
            "In without values",
            |s| {
                s.namespace_selector = Some(LabelSelector {
                    match_expressions: Some(vec![expr("env", "In", &[])]),
                    match_labels: None,
                })
            },
            "needs at least one value",
        ),
        (
            "negative minimum",
            |s| s.min_running_instances = Some(-1),
            "at least 0",
        ),
    ];
    let good = policy("good", |_| {});
    for (name, edit, want) in cases {
        let bad = policy("bad", edit);
        let err = validate(&bad).unwrap_err();
        assert!(err.contains(want), "{name}: {err}");
        // Fail closed: a broken policy that may apply to the object stops it, even when a valid
        // one admits it.
        let v = decide(&[good.clone(), bad], &subject(), &facts());
        assert!(matches!(v, Verdict::Refused(_)), "{name}: {v:?}");
        let r = refusal(v);
        assert_eq!(
            (r.reason, r.policy.as_deref()),
            (RefusalReason::NotPermitted, Some("bad")),
            "{name}"
        );
        assert!(
            r.message.contains("SaeDeletionPolicy \"bad\"") && r.message.contains(want),
            "{name}: {}",
            r.message
        );
    }
    assert_eq!(validate(&good), Ok(()));

    // One whose scope clearly excludes the object is out of its way...
    let elsewhere = policy("elsewhere", |s| {
        s.namespaces = strings(&["team-b"]);
        s.windows = Some(vec![window(&[Mon], "01:00", "02:00", "Nowhere/Zone")]);
    });
    assert_eq!(
        short(&decide(&[good, elsewhere.clone()], &subject(), &facts())),
        "Admitted[good]"
    );
    // ...but it still counts as a policy: with nothing else, the object is refused, and the
    // message lists the broken one.
    let r = refusal(decide(&[elsewhere], &subject(), &facts()));
    assert_eq!((r.reason, r.policy), (RefusalReason::NotPermitted, None));
    assert!(
        r.message
            .contains("invalid policies admit nothing: elsewhere"),
        "{}",
        r.message
    );

    // A malformed selector cannot be evaluated: the policy may apply, so it refuses.
    let malformed = policy("malformed", |s| {
        s.namespace_selector = Some(LabelSelector {
            match_expressions: Some(vec![expr("env", "Near", &["x"])]),
            match_labels: None,
        })
    });
    let r = refusal(decide(&[malformed], &subject(), &facts()));
    assert_eq!(r.policy.as_deref(), Some("malformed"));
    assert!(r.message.contains("unknown operator"), "{}", r.message);
}

// ---- the hourly count from statuses --------------------------------------------------------------

#[test]
fn instances_deleted_in_the_last_hour() {
    let now = ts("2026-01-01T12:00:00Z");
    let object = |name: &str, app: &str, edit: &dyn Fn(&mut SaeInstanceDeletionStatus)| {
        let mut spec = fixtures::spec();
        spec.app_id = app.into();
        let mut obj = fixtures::object_with(name, "ns", fixtures::t0(), spec);
        let mut status = SaeInstanceDeletionStatus {
            attempts: Some(1),
            last_attempt_time: Some(Time(ts("2026-01-01T11:30:00Z"))),
            ..Default::default()
        };
        obj.pinned().record(&mut status);
        edit(&mut status);
        obj.status = Some(status);
        obj
    };
    let reason = |status: &mut SaeInstanceDeletionStatus, phase: Phase, reason: &str| {
        status.phase = Some(phase);
        status.conditions = vec![k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition {
            type_: crate::crd::CONDITION_RECONCILING.into(),
            reason: reason.into(),
            status: "False".into(),
            message: String::new(),
            last_transition_time: Time(now),
            observed_generation: None,
        }];
    };
    // (what, object, counts?)
    let cases: Vec<(&str, _, bool)> = vec![
        (
            "accepted, in progress",
            object("a", "app-1", &|s| {
                s.phase = Some(Phase::InProgress);
                s.change_order_id = Some("co".into());
            }),
            true,
        ),
        (
            "accepted, succeeded",
            object("b", "app-1", &|s| {
                reason(s, Phase::Succeeded, "Succeeded");
                s.change_order_id = Some("co".into());
            }),
            true,
        ),
        (
            "accepted, change order failed",
            object("c", "app-1", &|s| {
                reason(s, Phase::Failed, "ChangeOrderFailed");
                s.change_order_id = Some("co".into());
            }),
            true,
        ),
        (
            "in flight",
            object("d", "app-1", &|s| s.phase = Some(Phase::Submitting)),
            true,
        ),
        (
            "answer lost for good",
            object("e", "app-1", &|s| {
                reason(s, Phase::Failed, "OutcomeUnknown")
            }),
            true,
        ),
        (
            "refused, retrying",
            object("f", "app-1", &|s| s.phase = Some(Phase::Retrying)),
            false,
        ),
        (
            "refused for good",
            object("g", "app-1", &|s| {
                reason(s, Phase::Failed, "RetriesExhausted")
            }),
            false,
        ),
        (
            "already deleted",
            object("h", "app-1", &|s| {
                reason(s, Phase::Succeeded, "AlreadyDeleted")
            }),
            false,
        ),
        (
            "dry run",
            object("i", "app-1", &|s| {
                s.dry_run = Some(true);
                s.change_order_id = Some("co".into());
            }),
            false,
        ),
        (
            "over an hour ago",
            object("j", "app-1", &|s| {
                s.change_order_id = Some("co".into());
                s.last_attempt_time = Some(Time(ts("2026-01-01T11:00:00Z")));
            }),
            false,
        ),
        (
            "just inside the hour",
            object("k", "app-1", &|s| {
                s.change_order_id = Some("co".into());
                s.last_attempt_time = Some(Time(ts("2026-01-01T11:00:01Z")));
            }),
            true,
        ),
        (
            "another app",
            object("l", "app-2", &|s| s.change_order_id = Some("co".into())),
            false,
        ),
        (
            "nothing sent",
            {
                let mut o = fixtures::object("m", "ns", fixtures::t0());
                o.status = Some(SaeInstanceDeletionStatus::default());
                o
            },
            false,
        ),
    ];
    let mut want = 0;
    for (what, obj, counts) in &cases {
        let one = count_recent_objects([obj], "cn-hangzhou", "app-1", now);
        assert_eq!(one, if *counts { 2 } else { 0 }, "{what}");
        want += one;
    }
    let all: Vec<_> = cases.iter().map(|(_, o, _)| o.clone()).collect();
    assert_eq!(
        count_recent_objects(&all, "cn-hangzhou", "app-1", now),
        want
    );
    assert_eq!(want, 2 * 6);

    // Records kept of objects that are gone count the same way.
    let records = [
        DeletionRecord {
            region_id: "cn-hangzhou".into(),
            app_id: "app-1".into(),
            instances: 3,
            at: ts("2026-01-01T11:59:00Z"),
        },
        DeletionRecord {
            region_id: "cn-beijing".into(),
            app_id: "app-1".into(),
            instances: 7,
            at: ts("2026-01-01T11:59:00Z"),
        },
    ];
    assert_eq!(count_recent(&records, "cn-hangzhou", "app-1", now), 3);
}

// ---- the CRD -------------------------------------------------------------------------------------

fn crd_json() -> Value {
    serde_json::to_value(SaeDeletionPolicy::crd()).unwrap()
}

fn spec_schema() -> Value {
    crd_json()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"].clone()
}

/// Writes the CRD file when `UPDATE_CRDS=1`, otherwise fails if it is stale.
#[test]
fn crd_file_matches_the_types() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(POLICY_CRD_FILE);
    let want = policy_crd_yaml();
    if std::env::var("UPDATE_CRDS").as_deref() == Ok("1") {
        std::fs::write(&path, &want).unwrap();
    }
    let have = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        have == want,
        "{POLICY_CRD_FILE} is stale or missing: regenerate it with `UPDATE_CRDS=1 cargo test --lib policy::` \
         and commit the result"
    );
    let parsed: Value = serde_saphyr::from_str(&want).unwrap();
    assert_eq!(parsed, crd_json());
}

#[test]
fn names_and_scope() {
    let crd = crd_json();
    assert_eq!(crd["metadata"]["name"], "saedeletionpolicies.sae.ops.dev");
    assert_eq!(crd["spec"]["group"], "sae.ops.dev");
    assert_eq!(crd["spec"]["scope"], "Cluster");
    let names = &crd["spec"]["names"];
    assert_eq!(names["kind"], "SaeDeletionPolicy");
    assert_eq!(names["plural"], "saedeletionpolicies");
    assert_eq!(names["shortNames"], json!(["saepol"]));
    assert_eq!(names["categories"], json!(["sae"]));
    let version = &crd["spec"]["versions"][0];
    let deletion = serde_json::to_value(crate::crd::SaeInstanceDeletion::crd()).unwrap();
    assert_eq!(version["name"], deletion["spec"]["versions"][0]["name"]);
    assert_eq!(version["subresources"]["status"], json!({}));
    // No CEL: API servers as old as 1.20 must take the CRD as it is.
    assert!(
        !serde_json::to_string(&crd)
            .unwrap()
            .contains("x-kubernetes-validations")
    );
}

#[test]
fn printer_columns_show_scope_and_limits() {
    let crd = crd_json();
    let columns = crd["spec"]["versions"][0]["additionalPrinterColumns"]
        .as_array()
        .unwrap();
    let got: Vec<(&str, &str, i64)> = columns
        .iter()
        .map(|c| {
            (
                c["name"].as_str().unwrap(),
                c["jsonPath"].as_str().unwrap(),
                c["priority"].as_i64().unwrap_or(0),
            )
        })
        .collect();
    assert_eq!(
        got,
        vec![
            ("Namespaces", ".spec.namespaces", 0),
            ("Apps", ".spec.appIds", 0),
            ("Regions", ".spec.regionIds", 0),
            ("Credentials", ".spec.credentials", 0),
            ("PerDeletion", ".spec.maxInstancesPerDeletion", 0),
            ("MinRunning", ".spec.minRunningInstances", 0),
            ("PerHour", ".spec.maxInstancesPerHour", 0),
            (
                "Ready",
                ".status.conditions[?(@.type==\"Ready\")].status",
                0
            ),
            ("Selector", ".spec.namespaceSelector", 1),
            ("Windows", ".spec.windows", 1),
            ("Age", ".metadata.creationTimestamp", 0),
        ]
    );
}

#[test]
fn schema_says_what_it_can() {
    let spec = spec_schema();
    let props = &spec["properties"];
    assert!(
        spec.get("required").is_none(),
        "every spec field is optional"
    );
    let mut fields: Vec<&str> = props
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    fields.sort();
    assert_eq!(
        fields,
        [
            "appIds",
            "credentials",
            "maxInstancesPerDeletion",
            "maxInstancesPerHour",
            "minRunningInstances",
            "namespaceSelector",
            "namespaces",
            "regionIds",
            "windows"
        ]
    );
    assert_eq!(
        props["maxInstancesPerDeletion"]["minimum"].as_f64(),
        Some(1.0)
    );
    assert_eq!(props["maxInstancesPerHour"]["minimum"].as_f64(), Some(1.0));
    assert_eq!(props["minRunningInstances"]["minimum"].as_f64(), Some(0.0));
    // The fields are int32: a larger number must be refused by the API server, not accepted there
    // and then fail to decode in the controller (which would drop the whole policy from its cache).
    for field in [
        "maxInstancesPerDeletion",
        "minRunningInstances",
        "maxInstancesPerHour",
    ] {
        assert_eq!(
            props[field]["maximum"].as_f64(),
            Some(2147483647.0),
            "{field}"
        );
    }
    assert_eq!(
        props["credentials"]["enum"],
        json!(["Any", "SecretOnly", "ControllerOnly"])
    );
    assert_eq!(props["credentials"]["default"], "Any");
    for list in ["namespaces", "appIds", "regionIds", "windows"] {
        assert_eq!(props[list]["minItems"].as_f64(), Some(1.0), "{list}");
    }
    let window = &props["windows"]["items"];
    let mut required: Vec<&str> = window["required"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    required.sort();
    assert_eq!(required, ["days", "end", "start", "timeZone"]);
    let w = &window["properties"];
    assert_eq!(
        w["days"]["items"]["enum"],
        json!(["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"])
    );
    assert_eq!(w["start"]["pattern"], START_PATTERN);
    assert_eq!(w["end"]["pattern"], END_PATTERN);
}

/// `kubectl explain` documents every field: each property, at every depth, has a description.
#[test]
fn every_field_is_documented() {
    fn walk(path: &str, schema: &Value, missing: &mut Vec<String>) {
        if let Some(props) = schema["properties"].as_object() {
            for (name, sub) in props {
                let here = format!("{path}.{name}");
                if sub["description"].as_str().is_none_or(str::is_empty) {
                    missing.push(here.clone());
                }
                walk(&here, sub, missing);
            }
        }
        if schema["items"].is_object() {
            walk(&format!("{path}[]"), &schema["items"], missing);
        }
    }
    let root = &crd_json()["spec"]["versions"][0]["schema"]["openAPIV3Schema"];
    let mut missing = Vec::new();
    walk("", &root["properties"]["spec"], &mut missing);
    walk("status", &root["properties"]["status"], &mut missing);
    assert!(
        missing.is_empty(),
        "fields without a description: {missing:?}"
    );
}

#[test]
fn the_patterns_agree_with_the_controller_check() {
    // What the schema accepts, the controller's check accepts, and the other way round.
    for (start, end, ok) in [
        ("00:00", "24:00", true),
        ("23:59", "24:00", true),
        ("09:00", "17:30", true),
        ("24:00", "24:00", false),
        ("09:00", "24:01", false),
        ("9:00", "17:00", false),
    ] {
        let p = policy("p", |s| {
            s.windows = Some(vec![window(&[Day::Mon], start, end, "UTC")])
        });
        assert_eq!(validate(&p).is_ok(), ok, "{start}-{end}");
    }
}

#[test]
fn the_status_is_written_once_per_generation() {
    let mut p = policy("p", |_| {});
    p.metadata.generation = Some(2);
    assert!(policy_status_needs_write(&p), "no status yet");
    p.status = Some(SaeDeletionPolicyStatus {
        observed_generation: Some(2),
        conditions: vec![],
    });
    assert!(policy_status_needs_write(&p), "no Ready condition");
    p.status = Some(policy_status(&p, fixtures::t0()));
    assert!(
        !policy_status_needs_write(&p),
        "written for this generation"
    );
    // Another install (say an older version) wrote the opposite for this generation: left alone,
    // so that the two do not patch each other forever.
    let ready = &mut p.status.as_mut().unwrap().conditions[0];
    ready.status = "False".into();
    ready.reason = "Invalid".into();
    assert!(!policy_status_needs_write(&p));
    // A spec edit (new generation): written again.
    p.metadata.generation = Some(3);
    assert!(policy_status_needs_write(&p));
}

#[test]
fn the_status_says_whether_the_policy_applies() {
    let t1 = ts("2026-01-01T01:00:00Z");
    let mut p = policy("p", |s| {
        s.windows = Some(vec![window(&[Day::Mon], "03:00", "02:00", "UTC")])
    });
    p.metadata.generation = Some(2);
    let invalid = policy_status(&p, fixtures::t0());
    let ready = &invalid.conditions[0];
    assert_eq!(invalid.observed_generation, Some(2));
    assert_eq!(
        (
            ready.type_.as_str(),
            ready.status.as_str(),
            ready.reason.as_str()
        ),
        ("Ready", "False", "Invalid")
    );
    assert!(
        ready.message.contains("admits nothing")
            && ready.message.contains("start must be before end")
    );

    // Unchanged: the transition time stays, so the caller has nothing to write.
    p.status = Some(invalid.clone());
    assert_eq!(policy_status(&p, t1), invalid);

    // Fixed: Ready True from now on.
    p.spec.windows = Some(vec![window(&[Day::Mon], "01:00", "02:00", "UTC")]);
    p.metadata.generation = Some(3);
    let valid = policy_status(&p, t1);
    let ready = &valid.conditions[0];
    assert_eq!(
        (
            ready.status.as_str(),
            ready.reason.as_str(),
            ready.last_transition_time.0,
            ready.observed_generation
        ),
        ("True", "Valid", t1, Some(3))
    );
}
