//! One scenario's world: a fresh namespace on the shared control plane, an `sae-simulator` and an
//! `sae-controller` watching only that namespace (`--namespace`), so scenarios run side by side.
//!
//! What a test asserts comes from two independent witnesses: the objects' status as the API server
//! stores it ([`World::status`], [`World::statuses`]), and the simulator's ledger of every request
//! SAE received ([`World::delete_requests`], [`World::ledger_requests`]).
//!
//! [`World::start`] is the default setup (key [`AK`]:[`SK`], one-second change orders, controller
//! flags left at their defaults); [`World::start_with`] takes a [`Setup`] with other flags.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use kube::Api;
use kube::api::ListParams;
use sae_controller::crd::SaeInstanceDeletion;
use serde_json::{Value, json};

use super::{ControlPlane, Controller, Simulator};

/// The access key the simulator accepts and the controller holds (from its environment).
pub const AK: &str = "LTAIe2eAccessKey";
pub const SK: &str = "e2e-Secret-Value-never-printed";
pub const REGION: &str = "cn-hangzhou";

const FAST_RETRY: &str = r#"{"retry": {"initialDelaySeconds": 1, "maxDelaySeconds": 2}}"#;

/// How a world's processes are started.
#[derive(Clone, Debug)]
pub struct Setup {
    /// `sae-simulator` arguments (the harness adds `--listen`).
    pub simulator_args: Vec<String>,
    /// `sae-controller` arguments after `--namespace NS --sae-endpoint URL`.
    pub controller_args: Vec<String>,
}

impl Default for Setup {
    fn default() -> Self {
        Self {
            simulator_args: strings(&[
                "--access-key",
                &format!("{AK}:{SK}"),
                "--change-order-seconds",
                "1",
            ]),
            controller_args: Vec::new(),
        }
    }
}

/// Owned copies of string slices, for [`Setup`].
pub fn strings(args: &[&str]) -> Vec<String> {
    args.iter().map(|a| a.to_string()).collect()
}

/// One scenario's world: a namespace, an SAE simulator and a controller watching that namespace.
pub struct World {
    pub cp: &'static ControlPlane,
    pub ns: String,
    pub sim: Simulator,
    pub controller: Controller,
    pub api: Api<SaeInstanceDeletion>,
    pub setup: Setup,
}

/// An app for `POST /_sim/apps`: one group holding `instances`.
pub fn app(app_id: &str, instances: &[&str]) -> Value {
    json!({ "appId": app_id, "groups": [{ "groupId": format!("{app_id}-group"), "instanceIds": instances }] })
}

impl World {
    pub async fn start(prefix: &str, apps: Vec<Value>) -> World {
        World::start_with(prefix, apps, Setup::default()).await
    }

    pub async fn start_with(prefix: &str, apps: Vec<Value>, setup: Setup) -> World {
        let cp = ControlPlane::shared();
        let ns = cp.create_namespace(prefix);
        let sim_args: Vec<&str> = setup.simulator_args.iter().map(String::as_str).collect();
        let sim = Simulator::spawn(&sim_args);
        if !apps.is_empty() {
            sim.admin_post("/_sim/apps", json!({ "apps": apps })).await;
        }
        let controller = spawn_controller(cp, &ns, &sim, &setup, &[], &[]);
        let api = Api::namespaced(cp.admin_client().await, &ns);
        World {
            cp,
            ns,
            sim,
            controller,
            api,
            setup,
        }
    }

    /// Replaces the controller with a fresh process (the old one is SIGKILLed first if running).
    pub fn restart_controller(&mut self) {
        self.controller.kill();
        self.controller = spawn_controller(self.cp, &self.ns, &self.sim, &self.setup, &[], &[]);
    }

    /// One more controller process for this world, with the setup's flags plus `extra_args` and
    /// `extra_env` (e.g. a second replica for leader election).
    pub fn spawn_controller(&self, extra_args: &[&str], extra_env: &[(&str, &str)]) -> Controller {
        spawn_controller(
            self.cp,
            &self.ns,
            &self.sim,
            &self.setup,
            extra_args,
            extra_env,
        )
    }

    pub async fn fault(&self, app_id: &str, faults: Value) {
        self.sim
            .admin_post("/_sim/faults", json!({ "appId": app_id, "faults": faults }))
            .await;
    }

    /// The object document [`World::create`] applies.
    pub fn object(&self, name: &str, app_id: &str, ids: &[&str], extra_spec: Value) -> Value {
        let mut spec = json!({ "regionId": REGION, "appId": app_id, "instanceIds": ids });
        if let (Some(spec), Value::Object(extra)) = (spec.as_object_mut(), extra_spec) {
            spec.extend(extra);
        }
        json!({
            "apiVersion": "sae.ops.dev/v1alpha1",
            "kind": "SaeInstanceDeletion",
            "metadata": { "name": name },
            "spec": spec,
        })
    }

    /// Creates an object with kubectl, as a user would.
    pub fn create(&self, name: &str, app_id: &str, ids: &[&str], extra_spec: Value) {
        let doc = self.object(name, app_id, ids, extra_spec);
        self.kubectl_stdin(&["apply", "-f", "-"], &doc.to_string());
    }

    /// Applies many documents in one kubectl call (a `List`), so they appear at nearly the same time.
    pub fn apply_all(&self, docs: Vec<Value>) {
        let list = json!({ "apiVersion": "v1", "kind": "List", "items": docs });
        self.kubectl_stdin(&["apply", "-f", "-"], &list.to_string());
    }

    pub fn kubectl_stdin(&self, args: &[&str], input: &str) -> String {
        let mut full = vec!["-n", self.ns.as_str()];
        full.extend_from_slice(args);
        let out = self.cp.kubectl_stdin(&full, input);
        assert!(
            out.status.success(),
            "kubectl {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Applies a Secret `name` with `string_data` in the world's namespace, as a user would.
    pub fn apply_secret(&self, name: &str, string_data: Value) {
        self.kubectl_stdin(
            &["apply", "-f", "-"],
            &secret(name, string_data).to_string(),
        );
    }

    /// `kubectl wait --for=condition=Ready saedel/NAME`, as a script or pipeline waits.
    pub fn kubectl_wait_ready(&self, name: &str, timeout: &str) -> std::process::Output {
        self.kubectl(&[
            "wait",
            "--for=condition=Ready",
            &format!("saedel/{name}"),
            &format!("--timeout={timeout}"),
        ])
    }

    pub fn kubectl(&self, args: &[&str]) -> std::process::Output {
        let mut full = vec!["-n", self.ns.as_str()];
        full.extend_from_slice(args);
        self.cp.kubectl(&full)
    }

    pub async fn status(&self, name: &str) -> Value {
        let obj = self.api.get(name).await.expect("get object");
        serde_json::to_value(obj.status).unwrap()
    }

    /// Every object of the namespace: name → status (`Null` before the first status write).
    pub async fn statuses(&self) -> BTreeMap<String, Value> {
        let list = self
            .api
            .list(&ListParams::default())
            .await
            .expect("list objects");
        list.items
            .into_iter()
            .map(|o| {
                let name = o.metadata.name.clone().unwrap_or_default();
                (name, serde_json::to_value(o.status).unwrap())
            })
            .collect()
    }

    /// Waits until `done(status)` holds; on timeout fails with the status and the controller log.
    pub async fn wait_for(
        &self,
        name: &str,
        what: &str,
        timeout: Duration,
        done: impl Fn(&Value) -> bool,
    ) -> Value {
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

    pub async fn wait_terminal(&self, name: &str, timeout: Duration) -> Value {
        self.wait_for(name, "terminal", timeout, is_terminal).await
    }

    /// Waits until every object of the namespace is terminal; returns name → status. On timeout
    /// fails naming the objects that are not, with the controller log.
    pub async fn wait_all_terminal(&self, timeout: Duration) -> BTreeMap<String, Value> {
        let start = Instant::now();
        loop {
            let all = self.statuses().await;
            let open: Vec<String> = all
                .iter()
                .filter(|(_, s)| !is_terminal(s))
                .map(|(n, s)| format!("{n}: {}/{}", s["phase"], reason(s)))
                .collect();
            if open.is_empty() {
                return all;
            }
            if start.elapsed() > timeout {
                panic!(
                    "{} objects not terminal after {timeout:?}: {open:#?}\n--- controller log tail ---\n{}",
                    open.len(),
                    tail(&self.controller.logs(), 60)
                );
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }

    /// Every SAE request the simulator received, in order.
    pub async fn ledger_requests(&self) -> Vec<Value> {
        let ledger = self.sim.ledger().await;
        ledger["requests"]
            .as_array()
            .expect("ledger.requests")
            .clone()
    }

    /// DeleteInstances requests SAE received for an app, in order.
    pub async fn delete_requests(&self, app_id: &str) -> Vec<Value> {
        self.ledger_requests()
            .await
            .into_iter()
            .filter(|r| r["operation"] == "DeleteInstances" && r["params"]["AppId"] == app_id)
            .collect()
    }

    /// DeleteInstances requests SAE received, for every app.
    pub async fn delete_requests_total(&self) -> usize {
        self.ledger_requests()
            .await
            .iter()
            .filter(|r| r["operation"] == "DeleteInstances")
            .count()
    }

    pub async fn committed_deletes(&self, app_id: &str) -> usize {
        self.delete_requests(app_id)
            .await
            .iter()
            .filter(|r| r["committed"] == true)
            .count()
    }

    pub async fn event_reasons(&self, name: &str) -> Vec<String> {
        let events: Api<k8s_openapi::api::events::v1::Event> =
            Api::namespaced(self.cp.admin_client().await, &self.ns);
        let list = events
            .list(&ListParams::default())
            .await
            .expect("list events");
        list.items
            .into_iter()
            .filter(|e| e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(name))
            .filter_map(|e| e.reason)
            .collect()
    }
}

fn spawn_controller(
    cp: &ControlPlane,
    ns: &str,
    sim: &Simulator,
    setup: &Setup,
    extra_args: &[&str],
    extra_env: &[(&str, &str)],
) -> Controller {
    let mut args = vec!["--namespace", ns, "--sae-endpoint", sim.url()];
    args.extend(setup.controller_args.iter().map(String::as_str));
    args.extend_from_slice(extra_args);
    let mut env = vec![
        ("ALIBABA_CLOUD_ACCESS_KEY_ID", AK),
        ("ALIBABA_CLOUD_ACCESS_KEY_SECRET", SK),
        ("RUST_LOG", "info,sae_controller=debug"),
    ];
    env.extend_from_slice(extra_env);
    Controller::spawn(cp.controller_kubeconfig(), &args, &env)
}

/// A Secret document holding `string_data`.
pub fn secret(name: &str, string_data: Value) -> Value {
    json!({ "apiVersion": "v1", "kind": "Secret", "metadata": { "name": name }, "stringData": string_data })
}

pub fn is_terminal(status: &Value) -> bool {
    matches!(status["phase"].as_str(), Some("Succeeded" | "Failed"))
}

pub fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// The Ready condition's reason ("" when there is none).
pub fn reason(status: &Value) -> &str {
    status["conditions"]
        .as_array()
        .and_then(|c| c.iter().find(|c| c["type"] == "Ready"))
        .and_then(|c| c["reason"].as_str())
        .unwrap_or("")
}

/// A condition's status ("True"/"False", "" when absent).
pub fn condition(status: &Value, type_: &str) -> String {
    status["conditions"]
        .as_array()
        .and_then(|c| c.iter().find(|c| c["type"] == type_))
        .and_then(|c| c["status"].as_str())
        .unwrap_or("")
        .to_string()
}

/// `spec.retry` with one- to two-second backoff.
pub fn fast_retry() -> Value {
    serde_json::from_str(FAST_RETRY).unwrap()
}
