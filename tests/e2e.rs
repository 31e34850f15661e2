//! End to end: the real `sae-controller` binary, holding its ServiceAccount's identity (deploy/ RBAC),
//! against a real kube-apiserver + etcd, with `sae-simulator` as SAE. Each test has its own namespace,
//! simulator and controller (`--namespace`), so tests run side by side.
//!
//! What a test asserts comes from two independent witnesses: the object's status as the API server
//! stores it, and the simulator's ledger of every request SAE received.

mod support;

use std::time::{Duration, Instant};

use kube::Api;
use kube::api::ListParams;
use sae_controller::crd::SaeInstanceDeletion;
use serde_json::{Value, json};
use support::{ControlPlane, Controller, Simulator};

const AK: &str = "LTAIe2eAccessKey";
const SK: &str = "e2e-Secret-Value-never-printed";
const REGION: &str = "cn-hangzhou";

/// One scenario's world: a namespace, an SAE simulator and a controller watching that namespace.
struct World {
    cp: &'static ControlPlane,
    ns: String,
    sim: Simulator,
    controller: Controller,
    api: Api<SaeInstanceDeletion>,
}

fn app(app_id: &str, instances: &[&str]) -> Value {
    json!({ "appId": app_id, "groups": [{ "groupId": format!("{app_id}-group"), "instanceIds": instances }] })
}

impl World {
    async fn start(prefix: &str, apps: Vec<Value>) -> World {
        let cp = ControlPlane::shared();
        let ns = cp.create_namespace(prefix);
        let sim = Simulator::spawn(&["--access-key", &format!("{AK}:{SK}"), "--change-order-seconds", "1"]);
        sim.admin_post("/_sim/apps", json!({ "apps": apps })).await;
        let controller = spawn_controller(cp, &ns, &sim);
        let api = Api::namespaced(cp.admin_client().await, &ns);
        World { cp, ns, sim, controller, api }
    }

    fn restart_controller(&mut self) {
        self.controller = spawn_controller(self.cp, &self.ns, &self.sim);
    }

    async fn fault(&self, app_id: &str, faults: Value) {
        self.sim.admin_post("/_sim/faults", json!({ "appId": app_id, "faults": faults })).await;
    }

    /// Creates an object with kubectl, as a user would.
    fn create(&self, name: &str, app_id: &str, ids: &[&str], extra_spec: Value) {
        let mut spec = json!({ "regionId": REGION, "appId": app_id, "instanceIds": ids });
        if let (Some(spec), Value::Object(extra)) = (spec.as_object_mut(), extra_spec) {
            spec.extend(extra);
        }
        let doc = json!({
            "apiVersion": "sae.ops.dev/v1alpha1",
            "kind": "SaeInstanceDeletion",
            "metadata": { "name": name },
            "spec": spec,
        });
        self.kubectl_stdin(&["apply", "-f", "-"], &doc.to_string());
    }

    fn kubectl_stdin(&self, args: &[&str], input: &str) -> String {
        let mut full = vec!["-n", self.ns.as_str()];
        full.extend_from_slice(args);
        let out = self.cp.kubectl_stdin(&full, input);
        assert!(out.status.success(), "kubectl {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn kubectl(&self, args: &[&str]) -> std::process::Output {
        let mut full = vec!["-n", self.ns.as_str()];
        full.extend_from_slice(args);
        self.cp.kubectl(&full)
    }

    async fn status(&self, name: &str) -> Value {
        let obj = self.api.get(name).await.expect("get object");
        serde_json::to_value(obj.status).unwrap()
    }

    /// Waits until `done(status)` holds; on timeout fails with the status and the controller log.
    async fn wait_for(&self, name: &str, what: &str, timeout: Duration, done: impl Fn(&Value) -> bool) -> Value {
        let start = Instant::now();
        loop {
            let status = self.status(name).await;
            if done(&status) {
                return status;
            }
            if start.elapsed() > timeout {
                panic!(
                    "{name}: not {what} after {timeout:?}; status: {status:#}\n--- controller log tail ---\n{}",
                    tail(&self.controller.logs(), 40)
                );
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    async fn wait_terminal(&self, name: &str, timeout: Duration) -> Value {
        self.wait_for(name, "terminal", timeout, |s| matches!(s["phase"].as_str(), Some("Succeeded" | "Failed")))
            .await
    }

    /// DeleteInstances requests SAE received for an app, in order.
    async fn delete_requests(&self, app_id: &str) -> Vec<Value> {
        let ledger = self.sim.ledger().await;
        ledger["requests"]
            .as_array()
            .expect("ledger.requests")
            .iter()
            .filter(|r| r["operation"] == "DeleteInstances" && r["params"]["AppId"] == app_id)
            .cloned()
            .collect()
    }

    async fn committed_deletes(&self, app_id: &str) -> usize {
        self.delete_requests(app_id).await.iter().filter(|r| r["committed"] == true).count()
    }

    async fn event_reasons(&self, name: &str) -> Vec<String> {
        let events: Api<k8s_openapi::api::events::v1::Event> = Api::namespaced(self.cp.admin_client().await, &self.ns);
        let list = events.list(&ListParams::default()).await.expect("list events");
        list.items
            .into_iter()
            .filter(|e| e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(name))
            .filter_map(|e| e.reason)
            .collect()
    }
}

fn spawn_controller(cp: &ControlPlane, ns: &str, sim: &Simulator) -> Controller {
    Controller::spawn(
        cp.controller_kubeconfig(),
        &["--namespace", ns, "--sae-endpoint", sim.url()],
        &[
            ("ALIBABA_CLOUD_ACCESS_KEY_ID", AK),
            ("ALIBABA_CLOUD_ACCESS_KEY_SECRET", SK),
            ("RUST_LOG", "info,sae_controller=debug"),
        ],
    )
}

fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

fn reason(status: &Value) -> &str {
    status["conditions"]
        .as_array()
        .and_then(|c| c.iter().find(|c| c["type"] == "Ready"))
        .and_then(|c| c["reason"].as_str())
        .unwrap_or("")
}

fn condition(status: &Value, type_: &str) -> String {
    status["conditions"]
        .as_array()
        .and_then(|c| c.iter().find(|c| c["type"] == type_))
        .and_then(|c| c["status"].as_str())
        .unwrap_or("")
        .to_string()
}

const FAST_RETRY: &str = r#"{"retry": {"initialDelaySeconds": 1, "maxDelaySeconds": 2}}"#;

fn fast_retry() -> Value {
    serde_json::from_str(FAST_RETRY).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn happy_path_deletes_once_and_reports_the_change_order() {
    let w = World::start("happy", vec![app("app-happy", &["i-1", "i-2", "i-3"])]).await;
    w.create("scale-in", "app-happy", &["i-1", "i-2"], json!({}));
    let s = w.wait_terminal("scale-in", Duration::from_secs(60)).await;

    assert_eq!(s["phase"], "Succeeded", "{s:#}");
    assert_eq!(reason(&s), "Succeeded");
    assert_eq!(s["attempts"], 1);
    assert_eq!(s["changeOrderStatus"], "Succeeded");
    let change_order = s["changeOrderId"].as_str().expect("changeOrderId").to_string();
    assert!(s["requestId"].is_string() && s["completionTime"].is_string(), "{s:#}");
    assert_eq!((condition(&s, "Ready"), condition(&s, "Reconciling"), condition(&s, "Stalled")), ("True".into(), "False".into(), "False".into()));

    // SAE's side: one DeleteInstances, with exactly the two ids, and they are gone.
    let sent = w.delete_requests("app-happy").await;
    assert_eq!(sent.len(), 1, "{sent:#?}");
    assert_eq!(sent[0]["params"]["InstanceIds"], "i-1,i-2");
    assert_eq!(sent[0]["changeOrderId"], change_order.as_str());
    let app_state = w.sim.admin_get("/_sim/apps/app-happy").await["groups"].to_string();
    assert!(!app_state.contains("\"i-1\"") && !app_state.contains("\"i-2\"") && app_state.contains("\"i-3\""), "{app_state}");

    // What users do with kubectl works.
    let out = w.kubectl(&["wait", "--for=condition=Ready", "saedel/scale-in", "--timeout=10s"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let table = String::from_utf8_lossy(&w.kubectl(&["get", "saedel"]).stdout).into_owned();
    assert!(table.contains("APP") && table.contains("CHANGEORDER") && table.contains(&change_order), "{table}");

    let reasons = w.event_reasons("scale-in").await;
    for r in ["Submitting", "WaitingForChangeOrder", "Succeeded"] {
        assert!(reasons.iter().any(|x| x == r), "event {r} missing: {reasons:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn change_order_running_three_times_then_accepted_takes_four_attempts() {
    let w = World::start("busy", vec![app("app-busy", &["i-1"])]).await;
    w.fault("app-busy", json!([{ "kind": "error", "code": "Application.ChangerOrderRunning", "times": 3, "operation": "DeleteInstances" }])).await;
    w.create("busy", "app-busy", &["i-1"], fast_retry());
    let s = w.wait_terminal("busy", Duration::from_secs(60)).await;
    assert_eq!(s["phase"], "Succeeded", "{s:#}");
    assert_eq!(s["attempts"], 4);
    let sent = w.delete_requests("app-busy").await;
    assert_eq!(sent.len(), 4, "{sent:#?}");
    assert_eq!(w.committed_deletes("app-busy").await, 1);
    assert!(w.event_reasons("busy").await.iter().any(|r| r == "Retrying"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn system_upgrading_window_is_waited_out() {
    let w = World::start("upgrading", vec![app("app-up", &["i-1"])]).await;
    w.fault("app-up", json!([{ "kind": "upgrading", "seconds": 3 }])).await;
    w.create("up", "app-up", &["i-1"], fast_retry());
    let s = w.wait_terminal("up", Duration::from_secs(60)).await;
    assert_eq!(s["phase"], "Succeeded", "{s:#}");
    assert!(s["attempts"].as_i64().unwrap() >= 2, "{s:#}");
    assert_eq!(w.committed_deletes("app-up").await, 1);
    let codes: Vec<Value> = w.delete_requests("app-up").await.iter().map(|r| r["code"].clone()).collect();
    assert!(codes.contains(&json!("System.Upgrading")), "{codes:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn terminal_codes_fail_at_once_with_their_reason() {
    let w = World::start(
        "terminal",
        vec![app("app-q", &["i-1"]), app("app-nd", &["i-1"]), app("app-ip", &["i-1"])],
    )
    .await;
    w.fault("app-q", json!([{ "kind": "error", "code": "NoComputeResourceQuota.Exceed", "times": 1 }])).await;
    w.fault("app-nd", json!([{ "kind": "error", "code": "Application.NotDeployYet", "times": 1 }])).await;
    let cases = [
        ("unknown-app", "app-missing", "i-1", "ApplicationNotFound", "InvalidApplication.NotFound"),
        ("unknown-instance", "app-ip", "i-404", "InvalidParameter", "InvalidParameter.WithMessage"),
        ("quota", "app-q", "i-1", "QuotaExceeded", "NoComputeResourceQuota.Exceed"),
        ("not-deployed", "app-nd", "i-1", "Rejected", "Application.NotDeployYet"),
    ];
    for (name, app_id, id, _, _) in cases {
        // i-1 exists in every app: an id SAE rejects next to one that exists is a real InvalidParameter,
        // not "already gone".
        let ids: Vec<&str> = if id == "i-1" { vec![id] } else { vec!["i-1", id] };
        w.create(name, app_id, &ids, fast_retry());
    }
    for (name, app_id, _, want_reason, want_code) in cases {
        let s = w.wait_terminal(name, Duration::from_secs(60)).await;
        assert_eq!(s["phase"], "Failed", "{name}: {s:#}");
        assert_eq!(reason(&s), want_reason, "{name}: {s:#}");
        assert_eq!(condition(&s, "Stalled"), "True", "{name}");
        assert_eq!(s["attempts"], 1, "{name}: no retry after a terminal code");
        if !want_code.is_empty() {
            assert_eq!(s["errorCode"], want_code, "{name}");
        }
        assert!(!s["message"].as_str().unwrap_or("").is_empty(), "{name}: message expected");
        assert_eq!(w.delete_requests(app_id).await.len(), 1, "{name}");
        assert_eq!(w.committed_deletes(app_id).await, 0, "{name}");
    }
    assert!(w.status("unknown-instance").await["message"].as_str().unwrap().contains("i-404"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn instances_already_gone_end_already_deleted_without_a_deletion() {
    let w = World::start("gone", vec![app("app-gone", &["i-1"])]).await;
    // As when GitOps re-creates an object that succeeded long ago: its instances no longer exist.
    w.create("gone", "app-gone", &["i-old-1", "i-old-2"], json!({}));
    let s = w.wait_terminal("gone", Duration::from_secs(60)).await;
    assert_eq!(s["phase"], "Succeeded", "{s:#}");
    assert_eq!(reason(&s), "AlreadyDeleted");
    assert_eq!(w.committed_deletes("app-gone").await, 0);
    assert_eq!(w.delete_requests("app-gone").await.len(), 1, "one rejected send, no retry");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_secret_waits_without_calling_sae_and_heals_when_created() {
    let w = World::start("heal", vec![app("app-heal", &["i-1"])]).await;
    w.create("heal", "app-heal", &["i-1"], json!({ "credentialsRef": { "name": "late-creds" } }));
    let s = w
        .wait_for("heal", "Pending/CredentialsNotFound", Duration::from_secs(30), |s| {
            s["phase"] == "Pending" && reason(s) == "CredentialsNotFound"
        })
        .await;
    assert!(s["message"].as_str().unwrap().contains("late-creds"), "{s:#}");
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(w.sim.ledger().await["requests"].as_array().unwrap().len(), 0, "no SAE call without credentials");

    let secret = json!({
        "apiVersion": "v1", "kind": "Secret", "metadata": { "name": "late-creds" },
        "stringData": { "accessKeyId": AK, "accessKeySecret": SK },
    });
    w.kubectl_stdin(&["apply", "-f", "-"], &secret.to_string());
    let s = w.wait_terminal("heal", Duration::from_secs(90)).await;
    assert_eq!(s["phase"], "Succeeded", "{s:#}");
    assert_eq!(w.committed_deletes("app-heal").await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_secret_fails_as_authentication_failed_and_the_secret_appears_nowhere() {
    const WRONG: &str = "Wrong-Secret-Value-4711";
    let w = World::start("authn", vec![app("app-auth", &["i-1"])]).await;
    let secret = json!({
        "apiVersion": "v1", "kind": "Secret", "metadata": { "name": "bad-creds" },
        "stringData": { "accessKeyId": AK, "accessKeySecret": WRONG },
    });
    w.kubectl_stdin(&["apply", "-f", "-"], &secret.to_string());
    w.create("authn", "app-auth", &["i-1"], json!({ "credentialsRef": { "name": "bad-creds" } }));
    let s = w.wait_terminal("authn", Duration::from_secs(60)).await;
    assert_eq!(s["phase"], "Failed", "{s:#}");
    assert_eq!(reason(&s), "AuthenticationFailed", "{s:#}");
    assert_eq!(s["errorCode"], "SignatureDoesNotMatch");
    assert_eq!(w.committed_deletes("app-auth").await, 0);

    let object = String::from_utf8_lossy(&w.kubectl(&["get", "saedel", "authn", "-o", "yaml"]).stdout).into_owned();
    let events = String::from_utf8_lossy(&w.kubectl(&["get", "events.events.k8s.io", "-o", "yaml"]).stdout).into_owned();
    let described = String::from_utf8_lossy(&w.kubectl(&["describe", "saedel", "authn"]).stdout).into_owned();
    let logs = w.controller.logs();
    assert!(object.contains("AuthenticationFailed") && !logs.is_empty());
    for (what, text) in [("status", &object), ("events", &events), ("describe", &described), ("controller log", &logs)] {
        assert!(!text.contains(WRONG), "the wrong secret leaked into {what}");
        assert!(!text.contains(SK), "the controller's secret leaked into {what}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_are_bounded_by_max_attempts() {
    let w = World::start("exhaust", vec![app("app-ex", &["i-1"])]).await;
    w.fault("app-ex", json!([{ "kind": "error", "code": "Application.ChangerOrderRunning", "times": 10 }])).await;
    w.create("exhaust", "app-ex", &["i-1"], json!({ "retry": { "maxAttempts": 2, "initialDelaySeconds": 1, "maxDelaySeconds": 1 } }));
    let s = w.wait_terminal("exhaust", Duration::from_secs(60)).await;
    assert_eq!(s["phase"], "Failed", "{s:#}");
    assert_eq!(reason(&s), "RetriesExhausted");
    assert_eq!(s["attempts"], 2);
    assert_eq!(s["errorCode"], "Application.ChangerOrderRunning");
    assert_eq!(w.delete_requests("app-ex").await.len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_change_order_fails_the_object() {
    let w = World::start("cofail", vec![app("app-cof", &["i-1"])]).await;
    w.fault("app-cof", json!([{ "kind": "changeOrderResult", "status": 3, "times": 1, "errorMessage": "instance stuck in draining" }])).await;
    w.create("cofail", "app-cof", &["i-1"], json!({}));
    let s = w.wait_terminal("cofail", Duration::from_secs(60)).await;
    assert_eq!(s["phase"], "Failed", "{s:#}");
    assert_eq!(reason(&s), "ChangeOrderFailed");
    assert_eq!(s["changeOrderStatus"], "Failed");
    assert!(s["message"].as_str().unwrap().contains("instance stuck in draining"), "{s:#}");
    assert_eq!(w.committed_deletes("app-cof").await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dry_run_checks_and_never_deletes() {
    let w = World::start("dryrun", vec![app("app-dry", &["i-1", "i-2"])]).await;
    w.create("dry", "app-dry", &["i-1"], json!({ "dryRun": true }));
    w.create("dry-missing", "app-dry", &["i-1", "i-9"], json!({ "dryRun": true }));
    let s = w.wait_terminal("dry", Duration::from_secs(60)).await;
    assert_eq!(s["phase"], "Succeeded", "{s:#}");
    assert_eq!(reason(&s), "DryRunSucceeded");
    let s = w.wait_terminal("dry-missing", Duration::from_secs(60)).await;
    assert_eq!(s["phase"], "Failed", "{s:#}");
    assert!(s["message"].as_str().unwrap().contains("i-9"), "{s:#}");
    assert_eq!(w.delete_requests("app-dry").await.len(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_during_backoff_neither_resets_nor_shortens_the_wait() {
    let mut w = World::start("restart", vec![app("app-rs", &["i-1"])]).await;
    w.fault("app-rs", json!([{ "kind": "error", "code": "Application.ChangerOrderRunning", "times": 1 }])).await;
    w.create("restart", "app-rs", &["i-1"], json!({ "retry": { "initialDelaySeconds": 8, "maxDelaySeconds": 8 } }));
    let s = w
        .wait_for("restart", "Retrying", Duration::from_secs(30), |s| s["phase"] == "Retrying")
        .await;
    let next: jiff::Timestamp = s["nextAttemptTime"].as_str().expect("nextAttemptTime").parse().unwrap();
    w.controller.kill();
    w.restart_controller();

    let s = w.wait_terminal("restart", Duration::from_secs(60)).await;
    assert_eq!(s["phase"], "Succeeded", "{s:#}");
    assert_eq!(s["attempts"], 2, "the restart must not reset the attempt count");
    let sent = w.delete_requests("app-rs").await;
    assert_eq!(sent.len(), 2, "{sent:#?}");
    let second: jiff::Timestamp = sent[1]["time"].as_str().expect("ledger time").parse().unwrap();
    // status times have one-second resolution; allow for that, not more.
    assert!(
        second >= next - jiff::SignedDuration::from_secs(1),
        "second attempt at {second} came before nextAttemptTime {next}"
    );
}
