//! Tests of the metrics: declared names, types and units, labels (digests, caps), and what is recorded.

use super::*;
use crate::sae::Credentials;

/// The value of the sample `name{labels}` in an OpenMetrics text, labels given in their
/// encoded order (`a="x",b="y"`), or without braces when `labels` is empty.
fn sample(text: &str, name: &str, labels: &str) -> Option<f64> {
    let key = if labels.is_empty() {
        name.to_owned()
    } else {
        format!("{name}{{{labels}}}")
    };
    text.lines().find_map(|line| {
        let (series, value) = line.rsplit_once(' ')?;
        (series == key).then(|| value.parse().expect("sample value is a number"))
    })
}

#[test]
fn every_metric_is_declared_with_prefix_type_and_unit() {
    let metrics = Metrics::new();
    // A labelled family shows up from its first series on; the unlabelled ones from the start.
    let fresh = metrics.encode();
    assert!(fresh.contains("# TYPE sae_leader gauge"), "{fresh}");
    assert!(
        !fresh.contains("sae_requests"),
        "an unused family has no series: {fresh}"
    );

    metrics.observe_sae_call(
        Operation::DeleteInstances,
        CODE_OK,
        Duration::from_millis(5),
    );
    metrics.set_quota_tokens(&AccessKeyLabel::of("LTAI5tKeyId"), 1.0);
    metrics.set_objects_by_phase(&[("Pending", 1)]);
    metrics.observe_terminal("Succeeded", Duration::from_secs(1));
    metrics.reconcile_error("Kube");
    let text = metrics.encode();
    for declaration in [
        "# TYPE sae_requests counter",
        "# TYPE sae_request_duration_seconds histogram",
        "# UNIT sae_request_duration_seconds seconds",
        "# TYPE sae_quota_tokens gauge",
        "# TYPE sae_quota_wait_seconds histogram",
        "# UNIT sae_quota_wait_seconds seconds",
        "# TYPE sae_objects gauge",
        "# TYPE sae_deletion_duration_seconds histogram",
        "# UNIT sae_deletion_duration_seconds seconds",
        "# TYPE sae_reconcile_errors counter",
        "# TYPE sae_reconcile counter",
        "# TYPE sae_leader gauge",
        "# TYPE sae_unreachable_objects gauge",
    ] {
        assert!(
            text.contains(declaration),
            "missing {declaration:?} in:\n{text}"
        );
    }
    assert!(
        text.ends_with("# EOF\n"),
        "OpenMetrics text must end with # EOF:\n{text}"
    );
    assert_eq!(
        sample(&text, "sae_leader", ""),
        Some(1.0),
        "no election configured means leading"
    );
    assert_eq!(sample(&text, "sae_reconcile_total", ""), Some(0.0));
}

#[test]
fn sae_calls_count_by_operation_and_code_and_time_by_operation() {
    let metrics = Metrics::new();
    metrics.observe_sae_call(
        Operation::DeleteInstances,
        CODE_OK,
        Duration::from_millis(120),
    );
    // What the SAE client's observer reports lands in the same series.
    let observer = metrics.sae_request_observer();
    observer(
        Operation::DescribeApplicationInstances,
        Ok(()),
        Duration::from_millis(3),
    );
    metrics.observe_sae_call(
        Operation::DeleteInstances,
        "Application.ChangerOrderRunning",
        Duration::from_millis(80),
    );
    metrics.observe_sae_call(
        Operation::DeleteInstances,
        "Application.ChangerOrderRunning",
        Duration::from_millis(90),
    );
    metrics.observe_sae_result::<()>(
        Operation::DescribeChangeOrder,
        &Err(SaeError::NoAnswer {
            operation: "DescribeChangeOrder",
            detail: "timed out".into(),
        }),
        Duration::from_secs(30),
    );
    metrics.observe_sae_result(
        Operation::DescribeChangeOrder,
        &Err::<(), _>(SaeError::NotSent {
            operation: "DescribeChangeOrder",
            endpoint: "https://sae.example".into(),
            detail: "connection refused".into(),
        }),
        Duration::from_millis(1),
    );
    let text = metrics.encode();

    let count = |labels: &str| sample(&text, "sae_requests_total", labels);
    assert_eq!(count(r#"operation="DeleteInstances",code="OK""#), Some(1.0));
    assert_eq!(
        count(r#"operation="DescribeApplicationInstances",code="OK""#),
        Some(1.0)
    );
    assert_eq!(
        count(r#"operation="DeleteInstances",code="Application.ChangerOrderRunning""#),
        Some(2.0)
    );
    assert_eq!(
        count(r#"operation="DescribeChangeOrder",code="NoAnswer""#),
        Some(1.0)
    );
    assert_eq!(
        count(r#"operation="DescribeChangeOrder",code="NotSent""#),
        Some(1.0)
    );

    let duration = |suffix: &str, labels: &str| {
        sample(
            &text,
            &format!("sae_request_duration_seconds{suffix}"),
            labels,
        )
    };
    assert_eq!(
        duration("_count", r#"operation="DescribeApplicationInstances""#),
        Some(1.0)
    );
    assert_eq!(
        duration("_count", r#"operation="DeleteInstances""#),
        Some(3.0)
    );
    let sum = duration("_sum", r#"operation="DeleteInstances""#)
        .expect("sum of DeleteInstances durations");
    assert!((sum - 0.29).abs() < 1e-9, "sum {sum}");
    // 80, 90 and 120 ms all fall at or below the 0.16 s bucket, none at or below 0.04 s.
    assert_eq!(
        duration("_bucket", r#"le="0.16",operation="DeleteInstances""#),
        Some(3.0)
    );
    assert_eq!(
        duration("_bucket", r#"le="0.04",operation="DeleteInstances""#),
        Some(0.0)
    );
    assert_eq!(
        duration("_count", r#"operation="DescribeChangeOrder""#),
        Some(2.0)
    );
}

#[test]
fn result_code_covers_every_error_variant() {
    let api = SaeError::Api {
        operation: "DeleteInstances",
        http_status: 400,
        code: "InvalidApplication.NotFound".into(),
        message: "no such app".into(),
        request_id: Some("req-1".into()),
        retry_after: None,
    };
    assert_eq!(
        sae_result_code(&Err::<(), _>(api)),
        "InvalidApplication.NotFound"
    );
    assert_eq!(sae_result_code(&Ok::<_, SaeError>(())), "OK");
    let invalid = SaeError::InvalidRequest {
        operation: "DeleteInstances",
        detail: "bad endpoint".into(),
    };
    assert_eq!(sae_result_code(&Err::<(), _>(invalid)), "InvalidRequest");
}

#[test]
fn an_oversized_code_is_cut_before_it_becomes_a_label() {
    let metrics = Metrics::new();
    let long = "X".repeat(500);
    metrics.observe_sae_call(Operation::DeleteInstances, &long, Duration::ZERO);
    let text = metrics.encode();
    let cut = "X".repeat(MAX_CODE_LEN);
    assert_eq!(
        sample(
            &text,
            "sae_requests_total",
            &format!(r#"operation="DeleteInstances",code="{cut}""#)
        ),
        Some(1.0)
    );
    assert!(!text.contains(&"X".repeat(MAX_CODE_LEN + 1)));
}

#[test]
fn quota_metrics_name_the_key_by_a_digest_and_never_carry_the_secret() {
    let credentials = Credentials::new(
        "LTAI5tExampleKeyId",
        "very-secret-value",
        Some("sts-token-value".into()),
    );
    let metrics = Metrics::new();
    let label = AccessKeyLabel::of(credentials.access_key_id());
    metrics.set_quota_tokens(&label, 7.5);
    metrics.set_quota_tokens(&label, 3.25);
    metrics.observe_quota_wait(Duration::from_millis(250));
    metrics.observe_quota_wait(Duration::ZERO);
    let text = metrics.encode();

    assert_eq!(
        sample(
            &text,
            "sae_quota_tokens",
            &format!(r#"access_key_id="{label}""#)
        ),
        Some(3.25)
    );
    assert_eq!(sample(&text, "sae_quota_wait_seconds_count", ""), Some(2.0));
    assert_eq!(sample(&text, "sae_quota_wait_seconds_sum", ""), Some(0.25));
    assert!(!text.contains("LTAI5tExampleKeyId"), "raw id:\n{text}");
    assert!(
        !text.contains("very-secret-value"),
        "secret leaked:\n{text}"
    );
    assert!(!text.contains("sts-token-value"), "token leaked:\n{text}");
    assert!(!format!("{metrics:?}").contains("secret"));
}

#[test]
fn access_key_labels_are_short_stable_digests() {
    // SHA-256("abc") starts ba7816bf (FIPS 180-2, appendix B.1).
    assert_eq!(AccessKeyLabel::of("abc").as_str(), "ak-ba7816bf");
    assert_eq!(AccessKeyLabel::of("abc"), AccessKeyLabel::of("abc"));
    assert_ne!(AccessKeyLabel::of("abc"), AccessKeyLabel::of("abd"));
    let huge = "L".repeat(1 << 20);
    let label = AccessKeyLabel::of(&huge);
    assert_eq!(label.as_str().len(), 11);
    assert!(label.as_str().starts_with("ak-"));
    assert!(label.as_str()[3..].bytes().all(|b| b.is_ascii_hexdigit()));
    assert_eq!(AccessKeyLabel::of("").as_str().len(), 11);
}

#[test]
fn quota_series_are_capped_and_removed_when_forgotten() {
    let metrics = Metrics::new();
    let labels: Vec<AccessKeyLabel> = (0..MAX_ACCESS_KEY_SERIES + 10)
        .map(|i| AccessKeyLabel::of(&format!("STS.rotated-{i}")))
        .collect();
    for label in &labels {
        metrics.set_quota_tokens(label, 1.0);
    }
    let series = |text: &str| {
        text.lines()
            .filter(|l| l.starts_with("sae_quota_tokens{"))
            .count()
    };
    assert_eq!(series(&metrics.encode()), MAX_ACCESS_KEY_SERIES);
    let beyond = &labels[MAX_ACCESS_KEY_SERIES];
    let has = |text: &str, label: &AccessKeyLabel| {
        sample(
            text,
            "sae_quota_tokens",
            &format!(r#"access_key_id="{label}""#),
        )
        .is_some()
    };
    assert!(
        !has(&metrics.encode(), beyond),
        "over the cap: not reported"
    );

    // Forgetting one makes room; forgetting twice or an unknown key is harmless.
    metrics.forget_quota_tokens(&labels[0]);
    metrics.forget_quota_tokens(&labels[0]);
    metrics.forget_quota_tokens(beyond);
    let text = metrics.encode();
    assert!(!has(&text, &labels[0]));
    assert_eq!(series(&text), MAX_ACCESS_KEY_SERIES - 1);
    metrics.set_quota_tokens(beyond, 2.0);
    assert!(has(&metrics.encode(), beyond));
    assert_eq!(series(&metrics.encode()), MAX_ACCESS_KEY_SERIES);
}

#[test]
fn object_counts_replace_the_previous_report() {
    let metrics = Metrics::new();
    metrics.set_objects_by_phase(&[("Pending", 2), ("InProgress", 1), ("Succeeded", 4)]);
    metrics.set_objects_by_phase(&[("Succeeded", 6), ("Failed", 1)]);
    let text = metrics.encode();
    let objects = |phase: &str| sample(&text, "sae_objects", &format!(r#"phase="{phase}""#));
    assert_eq!(objects("Succeeded"), Some(6.0));
    assert_eq!(objects("Failed"), Some(1.0));
    assert_eq!(
        objects("Pending"),
        Some(0.0),
        "a phase no longer reported must read 0"
    );
    assert_eq!(objects("InProgress"), Some(0.0));
}

#[test]
fn objects_waiting_on_an_unreachable_sae_are_counted() {
    use crate::crd::{Phase, SaeInstanceDeletionStatus};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
    let metrics = Metrics::new();
    assert_eq!(
        sample(&metrics.encode(), "sae_unreachable_objects", ""),
        Some(0.0),
        "there from the start, so an alert sees 0 rather than nothing"
    );
    let since = Some(Time(jiff::Timestamp::UNIX_EPOCH));
    let statuses = [
        (Phase::Retrying, since.clone(), true),
        // The next try is being sent: still waiting on the outage.
        (Phase::Submitting, since.clone(), true),
        (Phase::Retrying, None, false),
        // Ended at its deadline while SAE was unreachable: no longer waiting.
        (Phase::Failed, since, false),
    ];
    for (phase, sae_unreachable_since, waits) in &statuses {
        let status = SaeInstanceDeletionStatus {
            phase: Some(*phase),
            sae_unreachable_since: sae_unreachable_since.clone(),
            ..Default::default()
        };
        assert_eq!(status.waits_on_unreachable_sae(), *waits, "{status:?}");
    }
    metrics.set_unreachable_objects(2);
    assert_eq!(
        sample(&metrics.encode(), "sae_unreachable_objects", ""),
        Some(2.0)
    );
}

#[test]
fn terminal_outcomes_reconciles_errors_and_leadership_are_recorded() {
    let metrics = Metrics::new();
    metrics.observe_terminal("Succeeded", Duration::from_secs(42));
    metrics.observe_terminal("Failed/ApplicationNotFound", Duration::from_secs(3));
    metrics.observe_terminal("Succeeded", Duration::from_secs(700));
    metrics.reconciled();
    metrics.reconciled();
    metrics.reconciled();
    metrics.reconcile_error("Kube");
    metrics.reconcile_error("Kube");
    metrics.reconcile_error("MissingSecret");
    metrics.set_leader(false);
    let clone = metrics.clone();
    clone.reconciled();
    let text = metrics.encode();

    let deletion = |suffix: &str, labels: &str| {
        sample(
            &text,
            &format!("sae_deletion_duration_seconds{suffix}"),
            labels,
        )
    };
    assert_eq!(deletion("_count", r#"outcome="Succeeded""#), Some(2.0));
    assert_eq!(deletion("_sum", r#"outcome="Succeeded""#), Some(742.0));
    assert_eq!(
        deletion("_bucket", r#"le="60.0",outcome="Succeeded""#),
        Some(1.0)
    );
    assert_eq!(
        deletion("_bucket", r#"le="+Inf",outcome="Succeeded""#),
        Some(2.0)
    );
    assert_eq!(
        deletion("_count", r#"outcome="Failed/ApplicationNotFound""#),
        Some(1.0)
    );

    assert_eq!(
        sample(&text, "sae_reconcile_total", ""),
        Some(4.0),
        "clones share the registry"
    );
    assert_eq!(
        sample(&text, "sae_reconcile_errors_total", r#"kind="Kube""#),
        Some(2.0)
    );
    assert_eq!(
        sample(
            &text,
            "sae_reconcile_errors_total",
            r#"kind="MissingSecret""#
        ),
        Some(1.0)
    );
    assert_eq!(sample(&text, "sae_leader", ""), Some(0.0));
    metrics.set_leader(true);
    assert_eq!(sample(&metrics.encode(), "sae_leader", ""), Some(1.0));
}
