//! What an SRE who runs Argo CD, Flux and Prometheus expects, checked against the real binary on a
//! real API server: kubectl verbs and columns, `kubectl explain`, `kubectl wait`, a controller that
//! writes nothing but status, Prometheus metrics, probes, and JSON logs that name the object.

mod support;

use std::time::Duration;

use serde_json::{Value, json};
use support::world::{Setup, World, app, strings};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_and_gitops_tools_see_what_they_expect() {
    let w = World::start("kubectl", vec![app("app-k", &["i-1", "i-2"])]).await;
    let mut doc = w.object("gitops", "app-k", &["i-1"], json!({}));
    doc["metadata"]["labels"] = json!({ "app.kubernetes.io/managed-by": "argocd" });
    doc["metadata"]["annotations"] = json!({ "team": "checkout" });
    w.kubectl_stdin(&["apply", "-f", "-"], &doc.to_string());
    let out = w.kubectl_wait_ready("gitops", "60s");
    assert!(
        out.status.success(),
        "kubectl wait: {}",
        String::from_utf8_lossy(&out.stderr)
    );

    let table = stdout(w.kubectl(&["get", "saedel"]));
    let header: Vec<&str> = table
        .lines()
        .next()
        .unwrap_or("")
        .split_whitespace()
        .collect();
    assert_eq!(
        header,
        [
            "NAME",
            "APP",
            "INSTANCES",
            "PHASE",
            "CHANGEORDER",
            "ATTEMPTS",
            "AGE"
        ],
        "{table}"
    );
    assert!(table.contains("Succeeded"), "{table}");
    let by_category = stdout(w.kubectl(&["get", "sae"]));
    assert!(
        by_category.contains("gitops"),
        "`kubectl get sae` (category): {by_category}"
    );

    let explained = stdout(w.kubectl(&["explain", "saeinstancedeletion.spec.retry"]));
    for word in ["maxAttempts", "initialDelaySeconds", "maxDelaySeconds"] {
        assert!(
            explained.contains(word),
            "kubectl explain lacks {word}: {explained}"
        );
    }
    let explained = stdout(w.kubectl(&["explain", "saeinstancedeletion.status.phase"]));
    assert!(
        explained.len() > 80,
        "status.phase has a description: {explained}"
    );

    // GitOps sees no drift: spec, labels and annotations are as applied, and every field the
    // controller manages lies under status.
    let obj: Value = serde_json::from_str(&stdout(w.kubectl(&[
        "get",
        "saedel",
        "gitops",
        "-o",
        "json",
        "--show-managed-fields",
    ])))
    .unwrap();
    assert_eq!(
        obj["metadata"]["generation"], 1,
        "the spec was never written"
    );
    assert_eq!(obj["metadata"]["labels"], doc["metadata"]["labels"]);
    assert_eq!(obj["metadata"]["annotations"]["team"], "checkout");
    let spec = &obj["spec"];
    assert_eq!(
        (spec["appId"].as_str(), spec["instanceIds"].clone()),
        (Some("app-k"), json!(["i-1"]))
    );
    for entry in obj["metadata"]["managedFields"]
        .as_array()
        .expect("managedFields")
    {
        let manager = entry["manager"].as_str().unwrap_or("");
        if manager.starts_with("kubectl") {
            continue;
        }
        let fields: Vec<&String> = entry["fieldsV1"]
            .as_object()
            .map(|f| f.keys().collect())
            .unwrap_or_default();
        assert!(
            fields.iter().all(|f| *f == "f:status"),
            "manager {manager} owns more than status: {fields:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_probes_and_json_logs() {
    let setup = Setup {
        controller_args: strings(&["--log-format", "json"]),
        ..Setup::default()
    };
    let w = World::start_with("observe", vec![app("app-obs", &["i-1"])], setup).await;
    w.create("observed", "app-obs", &["i-1"], json!({}));
    let s = w.wait_terminal("observed", Duration::from_secs(60)).await;
    assert_eq!(s["phase"], "Succeeded", "{s:#}");
    let change_order = s["changeOrderId"].as_str().unwrap().to_string();

    let http = reqwest::Client::new();
    let probe = w.controller.probe_url().expect("probe url");
    for path in ["/healthz", "/readyz"] {
        let answer = http
            .get(format!("{probe}{path}"))
            .send()
            .await
            .expect("probe");
        assert!(answer.status().is_success(), "{path}: {}", answer.status());
    }
    let metrics_url = w.controller.metrics_url().expect("metrics url");
    let metrics = http
        .get(format!("{metrics_url}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for line in [
        r#"sae_requests_total{operation="DeleteInstances",code="OK"} 1"#,
        "sae_leader 1",
        r#"sae_deletion_duration_seconds_count{outcome="Succeeded/Succeeded"} 1"#,
    ] {
        assert!(
            metrics.lines().any(|l| l.starts_with(line)),
            "metrics lack `{line}`:\n{metrics}"
        );
    }
    assert!(
        metrics.contains("sae_request_duration_seconds_bucket"),
        "{metrics}"
    );
    assert!(metrics.contains("sae_reconcile_total"), "{metrics}");

    // Every line is JSON; the lines about the object name it, its app and its change order.
    let logs = w.controller.logs();
    let lines: Vec<Value> = logs
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    let object = format!("{}/observed", w.ns);
    let about_object: Vec<&Value> = lines
        .iter()
        .filter(|l| l.to_string().contains(&object))
        .collect();
    assert!(
        !about_object.is_empty(),
        "no log line names {object}:\n{logs}"
    );
    assert!(
        about_object
            .iter()
            .all(|l| l.to_string().contains("app-obs")),
        "every line about the object names its app"
    );
    assert!(
        about_object
            .iter()
            .any(|l| l.to_string().contains(&change_order)),
        "a line names the change order"
    );
}

fn stdout(out: std::process::Output) -> String {
    assert!(
        out.status.success(),
        "kubectl failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}
