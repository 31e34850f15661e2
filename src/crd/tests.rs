//! Tests of the API types: the generated CRD and its schema rules, defaults, pinned values.

use super::*;
use serde_json::{Value, json};

fn crd_json() -> Value {
    serde_json::to_value(SaeInstanceDeletion::crd()).unwrap()
}

fn schema() -> Value {
    crd_json()["spec"]["versions"][0]["schema"]["openAPIV3Schema"].clone()
}

fn spec_schema() -> Value {
    schema()["properties"]["spec"].clone()
}

fn sample() -> SaeInstanceDeletion {
    crate::fixtures::object("del", "ns", crate::fixtures::t0())
}

/// Writes the CRD file when `UPDATE_CRDS=1`, otherwise fails if it is stale.
#[test]
fn crd_file_matches_the_types() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(CRD_FILE);
    let want = crd_yaml();
    if std::env::var("UPDATE_CRDS").as_deref() == Ok("1") {
        std::fs::write(&path, &want).unwrap();
    }
    let have = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        have == want,
        "{CRD_FILE} is stale or missing: regenerate it with `UPDATE_CRDS=1 cargo test --lib crd::` \
         (or `cargo run -- crd > {CRD_FILE}`) and commit the result"
    );
}

#[test]
fn crd_yaml_parses_back_to_the_same_crd() {
    let parsed: Value = serde_saphyr::from_str(&crd_yaml()).unwrap();
    assert_eq!(parsed, crd_json());
}

#[test]
fn kustomization_lists_the_crd() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("crds/kustomization.yaml");
    let text = std::fs::read_to_string(path).unwrap();
    let file_name = CRD_FILE.trim_start_matches("crds/");
    assert!(
        text.lines().any(|l| l.trim() == format!("- {file_name}")),
        "{text}"
    );
}

#[test]
fn names_and_scope() {
    let crd = crd_json();
    assert_eq!(crd["metadata"]["name"], "saeinstancedeletions.sae.ops.dev");
    assert_eq!(crd["spec"]["group"], "sae.ops.dev");
    assert_eq!(crd["spec"]["scope"], "Namespaced");
    let names = &crd["spec"]["names"];
    assert_eq!(names["kind"], "SaeInstanceDeletion");
    assert_eq!(names["plural"], "saeinstancedeletions");
    assert_eq!(names["shortNames"], json!(["saedel"]));
    assert_eq!(names["categories"], json!(["sae"]));
    let version = &crd["spec"]["versions"][0];
    assert_eq!(version["name"], "v1alpha1");
    assert_eq!(version["subresources"]["status"], json!({}));
}

#[test]
fn printer_columns_in_order() {
    let crd = crd_json();
    let columns = crd["spec"]["versions"][0]["additionalPrinterColumns"]
        .as_array()
        .unwrap();
    let got: Vec<(&str, &str, &str)> = columns
        .iter()
        .map(|c| {
            (
                c["name"].as_str().unwrap(),
                c["type"].as_str().unwrap(),
                c["jsonPath"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        got,
        vec![
            ("App", "string", ".spec.appId"),
            ("Instances", "string", ".spec.instanceIds"),
            ("Phase", "string", ".status.phase"),
            ("ChangeOrder", "string", ".status.changeOrderId"),
            ("Attempts", "integer", ".status.attempts"),
            ("Age", "date", ".metadata.creationTimestamp"),
        ]
    );
}

#[test]
fn spec_rules_are_in_the_schema() {
    let spec = spec_schema();
    let props = &spec["properties"];
    let mut required: Vec<&str> = spec["required"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    required.sort();
    assert_eq!(required, vec!["appId", "instanceIds", "regionId"]);

    assert_eq!(props["regionId"]["pattern"], r"^[a-z]{2,}(-[a-z0-9]+)+$");
    assert_eq!(
        (&props["appId"]["minLength"], &props["appId"]["maxLength"]),
        (&json!(1), &json!(64))
    );

    let ids = &props["instanceIds"];
    assert_eq!(
        (&ids["minItems"], &ids["maxItems"]),
        (&json!(1), &json!(100))
    );
    assert_eq!(ids["x-kubernetes-list-type"], "set");
    assert_eq!(ids["items"]["pattern"], r"^[^,\s]+$");
    assert_eq!(
        (&ids["items"]["minLength"], &ids["items"]["maxLength"]),
        (&json!(1), &json!(128))
    );

    // schemars writes numeric bounds as floats (60.0); the API server reads both alike.
    let range = |node: &Value| (node["minimum"].as_f64(), node["maximum"].as_f64());
    assert_eq!(
        range(&props["activeDeadlineSeconds"]),
        (Some(60.0), Some(604800.0))
    );
    let retry = &props["retry"]["properties"];
    assert_eq!(range(&retry["maxAttempts"]), (Some(1.0), Some(100.0)));
    assert_eq!(
        range(&retry["initialDelaySeconds"]),
        (Some(1.0), Some(3600.0))
    );
    assert_eq!(range(&retry["maxDelaySeconds"]), (Some(1.0), Some(86400.0)));
    assert_eq!(props["credentialsRef"]["required"], json!(["name"]));
}

#[test]
fn defaults_are_in_the_schema() {
    let props = spec_schema()["properties"].clone();
    assert_eq!(props["retry"]["default"], json!({}));
    let retry = &props["retry"]["properties"];
    assert_eq!(retry["maxAttempts"]["default"], 10);
    assert_eq!(retry["initialDelaySeconds"]["default"], 5);
    assert_eq!(retry["maxDelaySeconds"]["default"], 300);
    assert_eq!(props["activeDeadlineSeconds"]["default"], 3600);
    assert_eq!(props["waitForCompletion"]["default"], true);
    assert_eq!(props["dryRun"]["default"], false);
}

#[test]
fn minimal_object_deserializes_with_the_defaults() {
    let obj: SaeInstanceDeletion = serde_json::from_value(json!({
        "apiVersion": "sae.ops.dev/v1alpha1",
        "kind": "SaeInstanceDeletion",
        "metadata": {"name": "x", "namespace": "ns"},
        "spec": {"regionId": "cn-hangzhou", "appId": "a", "instanceIds": ["i-1"]}
    }))
    .unwrap();
    assert_eq!(
        obj.spec.retry,
        RetryPolicy {
            max_attempts: 10,
            initial_delay_seconds: 5,
            max_delay_seconds: 300
        }
    );
    assert_eq!(obj.spec.active_deadline_seconds, 3600);
    assert!(
        obj.spec.wait_for_completion && !obj.spec.dry_run && obj.spec.credentials_ref.is_none()
    );
    assert!(obj.status.is_none());
}

#[test]
fn status_schema_lists_the_phases_and_fields() {
    let status = schema()["properties"]["status"].clone();
    let text = status.to_string();
    for phase in [
        "Pending",
        "Submitting",
        "Retrying",
        "InProgress",
        "Succeeded",
        "Failed",
    ] {
        assert!(
            status["properties"]["phase"]["enum"]
                .as_array()
                .unwrap()
                .contains(&json!(phase)),
            "{phase}"
        );
    }
    for field in [
        "observedGeneration",
        "attempts",
        "instanceIds",
        "appId",
        "regionId",
        "credentialsRef",
        "dryRun",
        "changeOrderId",
        "requestId",
        "traceId",
        "changeOrderStatus",
        "errorCode",
        "message",
        "startTime",
        "lastAttemptTime",
        "nextAttemptTime",
        "completionTime",
        "conditions",
    ] {
        assert!(
            status["properties"].get(field).is_some(),
            "status.{field} missing in {text}"
        );
    }
    assert!(
        status.get("required").is_none(),
        "every status field is optional: {text}"
    );
}

#[test]
fn every_field_is_documented() {
    fn walk(path: &str, node: &Value, missing: &mut Vec<String>) {
        if let Some(props) = node.get("properties").and_then(Value::as_object) {
            for (name, child) in props {
                let here = format!("{path}.{name}");
                if child
                    .get("description")
                    .and_then(Value::as_str)
                    .is_none_or(str::is_empty)
                {
                    missing.push(here.clone());
                }
                // Condition is k8s's own type; its docs come from k8s-openapi.
                if name != "conditions" {
                    walk(&here, child, missing);
                }
            }
        }
    }
    let schema = schema();
    let mut missing = vec![];
    walk("", &schema["properties"]["spec"], &mut missing);
    walk("", &schema["properties"]["status"], &mut missing);
    assert!(
        missing.is_empty(),
        "fields without a description: {missing:?}"
    );
}

#[test]
fn spec_is_immutable_by_cel() {
    let rules = spec_schema()["x-kubernetes-validations"].clone();
    assert_eq!(
        rules,
        json!([{"rule": "self == oldSelf", "message": "spec is immutable"}])
    );

    let old = sample();
    assert!(old.validate_cel().is_ok());
    assert!(
        old.clone().validate_cel_update(&old).is_ok(),
        "same spec must be accepted"
    );

    let mut changed = old.clone();
    changed.spec.instance_ids.push("i-3".into());
    let err = changed.validate_cel_update(&old).unwrap_err();
    assert!(err.to_string().contains("spec is immutable"), "{err}");

    let mut deadline = old.clone();
    deadline.spec.active_deadline_seconds = 7200;
    assert!(deadline.validate_cel_update(&old).is_err());

    // Status and metadata stay writable.
    let mut with_status = old.clone();
    with_status.status = Some(SaeInstanceDeletionStatus {
        phase: Some(Phase::Pending),
        ..Default::default()
    });
    with_status.metadata.labels = Some([("a".to_string(), "b".to_string())].into());
    assert!(with_status.validate_cel_update(&old).is_ok());
}

#[test]
fn pinned_values_are_the_recorded_ones_else_the_spec() {
    let mut obj = sample();
    let spec_view = Pinned {
        region_id: "cn-hangzhou",
        app_id: "app-1",
        instance_ids: &["i-1".to_string(), "i-2".to_string()],
        credentials_ref: obj.spec.credentials_ref.as_ref(),
        dry_run: false,
    };
    assert_eq!(obj.pinned(), spec_view, "nothing recorded: the spec");
    obj.status = Some(SaeInstanceDeletionStatus {
        phase: Some(Phase::Pending),
        ..Default::default()
    });
    assert_eq!(
        obj.pinned(),
        spec_view,
        "a status without records: the spec"
    );

    // Recorded, then the spec is edited: the records win, field by field.
    let mut status = SaeInstanceDeletionStatus::default();
    obj.pinned().record(&mut status);
    let recorded = obj.clone();
    obj.status = Some(status);
    obj.spec = SaeInstanceDeletionSpec {
        region_id: "cn-shanghai".into(),
        app_id: "app-2".into(),
        instance_ids: vec!["i-9".into()],
        credentials_ref: None,
        dry_run: true,
        ..obj.spec.clone()
    };
    assert_eq!(obj.pinned(), recorded.pinned());

    // Own credentials recorded (no credentialsRef next to appId) stay own credentials.
    let mut own = sample();
    own.spec.credentials_ref = None;
    let mut status = SaeInstanceDeletionStatus::default();
    own.pinned().record(&mut status);
    assert_eq!(status.credentials_ref, None);
    own.status = Some(status);
    own.spec.credentials_ref = Some(CredentialsRef {
        name: "other".into(),
    });
    assert_eq!(own.pinned().credentials_ref, None);

    // A status from before these fields existed pins only the ids.
    let mut legacy = sample();
    legacy.status = Some(SaeInstanceDeletionStatus {
        attempts: Some(1),
        instance_ids: Some(vec!["i-1".into()]),
        ..Default::default()
    });
    legacy.spec.app_id = "app-2".into();
    legacy.spec.credentials_ref = None;
    let view = legacy.pinned();
    assert_eq!(
        (view.instance_ids, view.app_id, view.credentials_ref),
        (&["i-1".to_string()][..], "app-2", None)
    );
}

#[test]
fn recorded_values_serialize_next_to_the_ids() {
    let mut status = SaeInstanceDeletionStatus::default();
    sample().pinned().record(&mut status);
    assert_eq!(
        serde_json::to_value(&status).unwrap(),
        json!({
            "instanceIds": ["i-1", "i-2"],
            "appId": "app-1",
            "regionId": "cn-hangzhou",
            "credentialsRef": {"name": "sae-creds"},
            "dryRun": false
        })
    );
}

#[test]
fn reasons_round_trip_through_their_names() {
    for reason in Reason::ALL {
        assert_eq!(reason.as_str().parse::<Reason>(), Ok(reason));
        assert_eq!(reason.to_string(), format!("{reason:?}"));
    }
    assert!("Nope".parse::<Reason>().is_err());
}

#[test]
fn status_serializes_camel_case_and_sparse() {
    let status = SaeInstanceDeletionStatus {
        phase: Some(Phase::InProgress),
        change_order_id: Some("co-1".into()),
        attempts: Some(1),
        ..Default::default()
    };
    assert_eq!(
        serde_json::to_value(&status).unwrap(),
        json!({"phase": "InProgress", "changeOrderId": "co-1", "attempts": 1})
    );
    assert!(status.reason().is_none() && !status.is_terminal());
}
