//! Deletion policies end to end (issue #18): cluster-scoped `SaeDeletionPolicy` objects say which
//! SaeInstanceDeletion objects may delete, and within which limits. The real `sae-controller`
//! binary with its ServiceAccount's RBAC, a real kube-apiserver v1.20.2 + etcd, `sae-simulator`
//! as SAE.
//!
//! One row of the table per test: scope by namespace name and by namespace label; default
//! deny once any policy exists, healing when a policy later admits; `--require-policy` with no
//! policy at all; size refused without an SAE call and `Failed` at the deadline; the minimum of
//! Running instances counted right before the send; the hourly budget; credentials; windows; an
//! invalid policy admitting nothing. Each test says what a refusal looks like from two
//! independent witnesses: the object's status as the API server stores it (phase `Pending`, the
//! reason, a message naming the policy and the limit, no attempt counted), and the simulator's
//! ledger (no DeleteInstances naming a refused object's instances, ever).
//!
//! Policies are cluster-scoped, and every controller of this test binary (one per [`World`]) sees
//! every policy on the binary's one API server (each test binary has its own). So the tests here
//! take turns ([`POLICY_TURN`]), start by deleting any policy left over, and delete theirs when
//! they end, even when they fail ([`Policies`]). Each policy is also scoped to the test's own
//! namespaces where the row allows it.
//!
//! Every test prints one line of counts (`policies: <test>: ...`) for the closing notes.

mod support;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use support::world::{AK, SK, Setup, World, app, condition, reason, strings, tail};
use support::{ControlPlane, Controller};

/// Policies are cluster-scoped: one test at a time may have any.
static POLICY_TURN: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

const POLICY_CRD: &str = "saedeletionpolicies.sae.ops.dev";
/// Every policy a test here creates carries this label, so a test can remove all of them.
const TEST_LABEL: &str = "sae-test";
const TEST_LABEL_VALUE: &str = "policies";

const TERMINAL: Duration = Duration::from_secs(60);
/// A refused object is looked at again every 30 s, sooner when a policy or namespace changes.
const HEAL: Duration = Duration::from_secs(75);

// ---- Policies -------------------------------------------------------------------------------------

/// The policies of one test: created with [`Policies::apply`], all deleted on drop (a failing
/// test too), so the next test starts with none.
struct Policies {
    cp: &'static ControlPlane,
    created: Vec<String>,
}

impl Policies {
    /// Waits for the policy CRD, and deletes any policy an earlier test left.
    fn new() -> Policies {
        let cp = ControlPlane::shared();
        let wait = cp.kubectl(&[
            "wait",
            "--for=condition=Established",
            &format!("crd/{POLICY_CRD}"),
            "--timeout=60s",
        ]);
        assert!(
            wait.status.success(),
            "CRD {POLICY_CRD} is not installed by deploy/ (or not Established): {}",
            String::from_utf8_lossy(&wait.stderr)
        );
        delete_test_policies(cp);
        Policies {
            cp,
            created: Vec::new(),
        }
    }

    /// Creates or replaces the policy `name` with `spec`, as a platform admin would (kubectl).
    fn apply(&mut self, name: &str, spec: Value) {
        let doc = json!({
            "apiVersion": "sae.ops.dev/v1alpha1",
            "kind": "SaeDeletionPolicy",
            "metadata": { "name": name, "labels": { TEST_LABEL: TEST_LABEL_VALUE } },
            "spec": spec,
        });
        let out = self
            .cp
            .kubectl_stdin(&["apply", "-f", "-"], &doc.to_string());
        assert!(
            out.status.success(),
            "kubectl apply of policy {name} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        if !self.created.iter().any(|n| n == name) {
            self.created.push(name.to_string());
        }
    }

    /// The policy as the API server stores it.
    fn get(&self, name: &str) -> Value {
        let out = self
            .cp
            .kubectl_ok(&["get", "saedeletionpolicy", name, "-o", "json"]);
        serde_json::from_str(&out).expect("kubectl -o json")
    }

    /// Waits until the controller wrote the policy's Ready condition with `status` for its current
    /// generation; returns the condition. This also says a controller has seen the policy.
    async fn wait_ready(&self, name: &str, status: &str) -> Value {
        let start = Instant::now();
        loop {
            let p = self.get(name);
            let generation = p["metadata"]["generation"].clone();
            let ready = p["status"]["conditions"]
                .as_array()
                .and_then(|c| c.iter().find(|c| c["type"] == "Ready"))
                .cloned();
            if let Some(ready) = ready
                && ready["status"] == status
                && (p["status"]["observedGeneration"] == generation
                    || ready["observedGeneration"] == generation)
            {
                return ready;
            }
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "policy {name}: no Ready={status} for generation {generation} after 30 s: {:#}",
                p["status"]
            );
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// Applies and waits for Ready=True.
    async fn apply_ready(&mut self, name: &str, spec: Value) {
        self.apply(name, spec);
        self.wait_ready(name, "True").await;
    }
}

impl Drop for Policies {
    fn drop(&mut self) {
        delete_test_policies(self.cp);
    }
}

fn delete_test_policies(cp: &ControlPlane) {
    let out = cp.kubectl(&[
        "delete",
        "saedeletionpolicies",
        "-l",
        &format!("{TEST_LABEL}={TEST_LABEL_VALUE}"),
        "--ignore-not-found",
        "--wait=true",
    ]);
    if !out.status.success() {
        eprintln!(
            "deleting the test's policies failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

// ---- Worlds and witnesses ---------------------------------------------------------------------------

/// A world with the default setup plus `controller_args`, its controller ready (object cache
/// synced), so a policy created next is seen by a running controller's watch.
async fn world(prefix: &str, apps: Vec<Value>, controller_args: &[&str]) -> World {
    world_with(prefix, apps, controller_args, &[]).await
}

async fn world_with(
    prefix: &str,
    apps: Vec<Value>,
    controller_args: &[&str],
    simulator_args: &[&str],
) -> World {
    let mut setup = Setup {
        controller_args: strings(controller_args),
        ..Setup::default()
    };
    if !simulator_args.is_empty() {
        let key = format!("{AK}:{SK}");
        let mut args = vec!["--access-key", key.as_str()];
        args.extend_from_slice(simulator_args);
        setup.simulator_args = strings(&args);
    }
    let w = World::start_with(prefix, apps, setup).await;
    wait_controller_ready(&w.controller).await;
    w
}

async fn wait_controller_ready(controller: &Controller) {
    let url = format!(
        "{}/readyz",
        controller
            .probe_url()
            .expect("the harness chose the probe port")
    );
    let start = Instant::now();
    loop {
        if let Ok(r) = reqwest::get(&url).await
            && r.status().is_success()
        {
            return;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "the controller was not ready within 30 s:\n{}",
            tail(&controller.logs(), 40)
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Waits until `name` is refused by a policy: phase Pending, `want` as reason, the message saying
/// nothing was sent, no attempt counted. Returns the status.
async fn wait_refused(w: &World, name: &str, want: &str) -> Value {
    let s = w
        .wait_for(name, &format!("Pending/{want}"), HEAL, |s| {
            s["phase"] == "Pending" && reason(s) == want
        })
        .await;
    assert_refused_status(name, &s, want);
    s
}

fn assert_refused_status(name: &str, s: &Value, want: &str) {
    let message = s["message"].as_str().unwrap_or_default();
    assert!(
        message.starts_with("DeleteInstances not sent: "),
        "{name}: the message must say nothing was sent: {s:#}"
    );
    assert!(
        s["attempts"].is_null() || s["attempts"] == 0,
        "{name}: a refusal is never an attempt: {s:#}"
    );
    assert_eq!(reason(s), want, "{name}: {s:#}");
    // kstatus: still working on it, not stalled while it may yet be admitted.
    assert_eq!(condition(s, "Ready"), "False", "{name}: {s:#}");
}

/// DeleteInstances requests SAE received for `app_id` that name any of `ids`.
async fn sends_naming(w: &World, app_id: &str, ids: &[&str]) -> usize {
    w.delete_requests(app_id)
        .await
        .iter()
        .filter(|r| {
            r["params"]["InstanceIds"]
                .as_str()
                .unwrap_or_default()
                .split(',')
                .any(|id| ids.contains(&id))
        })
        .count()
}

/// Every SAE request (any operation) naming `app_id`.
async fn requests_for_app(w: &World, app_id: &str) -> usize {
    w.ledger_requests()
        .await
        .iter()
        .filter(|r| r["params"]["AppId"] == app_id)
        .count()
}

async fn assert_never_sent(w: &World, name: &str, app_id: &str, ids: &[&str]) {
    let sent = sends_naming(w, app_id, ids).await;
    assert_eq!(
        sent,
        0,
        "{name} was refused by a policy, yet SAE received {sent} DeleteInstances naming {ids:?}: {:#?}",
        w.delete_requests(app_id).await
    );
}

async fn assert_succeeded(w: &World, name: &str) -> Value {
    let s = w.wait_terminal(name, TERMINAL).await;
    assert_eq!(s["phase"], "Succeeded", "{name}: {s:#}");
    assert_eq!(reason(&s), "Succeeded", "{name}: {s:#}");
    s
}

/// One line of counts for the closing notes.
async fn report(test: &str, worlds: &[&World], refused: usize) {
    let mut objects = 0;
    let mut sends = 0;
    let mut committed = 0;
    for w in worlds {
        objects += w.statuses().await.len();
        let requests = w.ledger_requests().await;
        let deletes: Vec<&Value> = requests
            .iter()
            .filter(|r| r["operation"] == "DeleteInstances")
            .collect();
        sends += deletes.len();
        committed += deletes.iter().filter(|r| r["committed"] == true).count();
    }
    println!(
        "policies: {test}: {objects} objects, {refused} refused by a policy (0 DeleteInstances for them), \
         {sends} DeleteInstances sent in all, {committed} committed"
    );
}

/// The day of the week jiff names, as a policy writes it.
fn day(weekday: jiff::civil::Weekday) -> &'static str {
    use jiff::civil::Weekday::*;
    match weekday {
        Monday => "Mon",
        Tuesday => "Tue",
        Wednesday => "Wed",
        Thursday => "Thu",
        Friday => "Fri",
        Saturday => "Sat",
        Sunday => "Sun",
    }
}

// ---- The rows of the table --------------------------------------------------------------------------

/// Scope: `namespaces` admits by name, `namespaceSelector` by the Namespace's labels, and a
/// namespace that matches neither is refused `NotPermitted` until a label makes it match.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scope_by_namespace_name_and_by_namespace_label() {
    let _turn = POLICY_TURN.lock().await;
    let mut policies = Policies::new();
    let named = world("pol-by-name", vec![app("app-scope", &["i-1", "i-2"])], &[]).await;
    let labelled = world("pol-by-label", vec![app("app-scope", &["i-1", "i-2"])], &[]).await;
    // A label value no other namespace carries.
    let token = labelled.ns.clone();

    policies
        .apply_ready(
            "scope-by-name",
            json!({ "namespaces": [named.ns], "appIds": ["app-scope"] }),
        )
        .await;
    policies
        .apply_ready(
            "scope-by-label",
            json!({
                "namespaceSelector": { "matchLabels": { "sae-policies-test": token } },
                "appIds": ["app-scope"],
            }),
        )
        .await;

    // Named: admitted.
    named.create("by-name", "app-scope", &["i-1"], json!({}));
    assert_succeeded(&named, "by-name").await;
    // Not named, not labelled (yet): refused, nothing sent.
    labelled.create("by-label", "app-scope", &["i-1"], json!({}));
    let s = wait_refused(&labelled, "by-label", "NotPermitted").await;
    let message = s["message"].as_str().unwrap();
    assert!(
        message.contains("no SaeDeletionPolicy admits")
            && message.contains(&format!("namespace {}", labelled.ns)),
        "{s:#}"
    );
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_never_sent(&labelled, "by-label", "app-scope", &["i-1"]).await;
    assert_eq!(
        requests_for_app(&labelled, "app-scope").await,
        0,
        "no SAE call at all"
    );

    // The namespace gets the label: the waiting object is admitted by the selector.
    let label = format!("sae-policies-test={token}");
    labelled
        .cp
        .kubectl_ok(&["label", "namespace", &labelled.ns, &label]);
    let healed = Instant::now();
    assert_succeeded(&labelled, "by-label").await;
    println!(
        "policies: scope: the labelled namespace's object was admitted {:?} after the label",
        healed.elapsed()
    );
    assert_eq!(sends_naming(&labelled, "app-scope", &["i-1"]).await, 1);
    assert_eq!(named.committed_deletes("app-scope").await, 1);

    report(
        "scope_by_namespace_name_and_by_namespace_label",
        &[&named, &labelled],
        1,
    )
    .await;
}

/// No policy: admitted as before policies. Once any policy exists (here one for another
/// namespace), an object no policy admits is refused `NotPermitted` and sends nothing; a policy
/// created later that admits it heals it without a new object.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn default_deny_once_any_policy_exists_and_healing_when_one_admits() {
    let _turn = POLICY_TURN.lock().await;
    let mut policies = Policies::new();
    let w = world(
        "pol-deny",
        vec![app("app-deny", &["i-1", "i-2", "i-3"])],
        &[],
    )
    .await;

    // No policy at all: admitted.
    w.create("before-any-policy", "app-deny", &["i-1"], json!({}));
    assert_succeeded(&w, "before-any-policy").await;

    // A policy for someone else: now nothing here is admitted.
    policies
        .apply_ready(
            "someone-else",
            json!({ "namespaces": ["not-this-namespace"] }),
        )
        .await;
    w.create("denied", "app-deny", &["i-2"], json!({}));
    let s = wait_refused(&w, "denied", "NotPermitted").await;
    let message = s["message"].as_str().unwrap();
    assert!(
        message.contains("no SaeDeletionPolicy admits namespace")
            && message.contains("someone-else"),
        "the message names why the existing policy does not admit it: {s:#}"
    );
    tokio::time::sleep(Duration::from_secs(5)).await;
    let still = w.status("denied").await;
    assert_eq!(still["phase"], "Pending", "{still:#}");
    assert_never_sent(&w, "denied", "app-deny", &["i-2"]).await;
    let events = w.event_reasons("denied").await;
    assert!(
        events.iter().any(|r| r == "NotPermitted"),
        "an Event says why it waits: {events:?}"
    );

    // A policy that admits it: the same object goes, once.
    let created = Instant::now();
    policies
        .apply_ready("this-namespace", json!({ "namespaces": [w.ns] }))
        .await;
    let s = assert_succeeded(&w, "denied").await;
    println!(
        "policies: default deny: healed {:?} after the admitting policy was created",
        created.elapsed()
    );
    assert_eq!(s["attempts"], 1, "{s:#}");
    assert_eq!(sends_naming(&w, "app-deny", &["i-2"]).await, 1);
    assert_eq!(w.committed_deletes("app-deny").await, 2);

    report(
        "default_deny_once_any_policy_exists_and_healing_when_one_admits",
        &[&w],
        1,
    )
    .await;
}

/// `--require-policy`: even with no policy in the cluster nothing is admitted; the first policy
/// that admits the object heals it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn require_policy_denies_while_no_policy_exists() {
    let _turn = POLICY_TURN.lock().await;
    let mut policies = Policies::new();
    let w = world(
        "pol-require",
        vec![app("app-req", &["i-1"])],
        &["--require-policy"],
    )
    .await;

    w.create("needs-a-policy", "app-req", &["i-1"], json!({}));
    let s = wait_refused(&w, "needs-a-policy", "NotPermitted").await;
    assert!(
        s["message"].as_str().unwrap().contains("--require-policy"),
        "{s:#}"
    );
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_never_sent(&w, "needs-a-policy", "app-req", &["i-1"]).await;
    assert_eq!(requests_for_app(&w, "app-req").await, 0);

    policies
        .apply_ready(
            "require-admits",
            json!({ "namespaces": [w.ns], "appIds": ["app-req"] }),
        )
        .await;
    assert_succeeded(&w, "needs-a-policy").await;
    assert_eq!(w.committed_deletes("app-req").await, 1);

    report("require_policy_denies_while_no_policy_exists", &[&w], 1).await;
}

/// maxInstancesPerDeletion: an object naming more is refused `NotPermitted` before any SAE call
/// (the app sees no request at all), and ends `Failed` with the same reason at its
/// activeDeadlineSeconds; one within the limit goes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn size_is_refused_without_an_sae_call_and_fails_at_the_deadline() {
    let _turn = POLICY_TURN.lock().await;
    let mut policies = Policies::new();
    let w = world(
        "pol-size",
        vec![
            app("app-size", &["i-1", "i-2", "i-3"]),
            app("app-fits", &["i-1", "i-2", "i-3"]),
        ],
        &[],
    )
    .await;
    policies
        .apply_ready(
            "size-two",
            json!({ "namespaces": [w.ns], "maxInstancesPerDeletion": 2 }),
        )
        .await;

    let created = Instant::now();
    w.create(
        "too-big",
        "app-size",
        &["i-1", "i-2", "i-3"],
        json!({ "activeDeadlineSeconds": 60 }),
    );
    w.create("fits", "app-fits", &["i-1", "i-2"], json!({}));

    let s = wait_refused(&w, "too-big", "NotPermitted").await;
    let message = s["message"].as_str().unwrap();
    assert!(
        message.contains("size-two")
            && message.contains("maxInstancesPerDeletion")
            && message.contains("at most 2"),
        "the message names the policy and the limit: {s:#}"
    );
    assert_succeeded(&w, "fits").await;

    // The deadline: Failed, same reason, no attempt, and SAE never heard of the app.
    let s = w
        .wait_for("too-big", "Failed", Duration::from_secs(100), |s| {
            s["phase"] == "Failed"
        })
        .await;
    let failed_after = created.elapsed();
    assert_eq!(reason(&s), "NotPermitted", "{s:#}");
    assert_eq!(condition(&s, "Stalled"), "True", "{s:#}");
    assert!(
        s["attempts"].is_null() || s["attempts"] == 0,
        "no attempt counted: {s:#}"
    );
    let message = s["message"].as_str().unwrap();
    assert!(
        message.contains("activeDeadlineSeconds") && message.contains("maxInstancesPerDeletion"),
        "{s:#}"
    );
    assert!(
        failed_after >= Duration::from_secs(55) && failed_after <= Duration::from_secs(95),
        "Failed {failed_after:?} after creation, deadline 60 s"
    );
    assert_never_sent(&w, "too-big", "app-size", &["i-1", "i-2", "i-3"]).await;
    assert_eq!(
        requests_for_app(&w, "app-size").await,
        0,
        "a size refusal needs no SAE call"
    );
    assert_eq!(w.committed_deletes("app-fits").await, 1);
    println!(
        "policies: size: too-big Failed/NotPermitted {failed_after:?} after creation (deadline 60 s)"
    );

    report(
        "size_is_refused_without_an_sae_call_and_fails_at_the_deadline",
        &[&w],
        1,
    )
    .await;
}

/// minRunningInstances is counted from SAE's instance list right before each send. The app has
/// 4 instances, the policy keeps 2. A deletes i-1 (4 → 3). B names i-2 and waits behind A: when
/// B was created, deleting i-2 would have left 2. While B waits, someone deletes i-3 in the
/// console (a change order made the moment A's ends): when B's turn comes SAE lists 2 Running,
/// B would leave 1, so B is refused `DisruptionBudget` and its DeleteInstances never goes out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn min_running_is_counted_right_before_the_send() {
    let _turn = POLICY_TURN.lock().await;
    let mut policies = Policies::new();
    // A's change order takes 6 s, so B surely waits behind it.
    let w = world_with(
        "pol-min",
        vec![app("app-min", &["i-1", "i-2", "i-3", "i-4"])],
        &[],
        &["--change-order-seconds", "6"],
    )
    .await;
    policies
        .apply_ready(
            "keep-two",
            json!({ "namespaces": [w.ns], "minRunningInstances": 2 }),
        )
        .await;

    w.create("a", "app-min", &["i-1"], json!({}));
    w.wait_for("a", "sent (changeOrderId)", Duration::from_secs(30), |s| {
        s["changeOrderId"].is_string()
    })
    .await;
    w.create("b", "app-min", &["i-2"], json!({}));
    let s = w
        .wait_for(
            "b",
            "Pending/WaitingForApplication",
            Duration::from_secs(30),
            |s| s["phase"] == "Pending" && reason(s) == "WaitingForApplication",
        )
        .await;
    assert!(s["attempts"].is_null() || s["attempts"] == 0, "{s:#}");
    // The console deletion, made (and done at once) the moment A's change order ends.
    let console = w
        .sim
        .admin_post(
            "/_sim/apps/app-min/change-orders",
            json!({ "coTypeCode": "CoDeleteInstances", "instanceIds": ["i-3"], "seconds": 0 }),
        )
        .await;
    assert!(console["changeOrderId"].is_string(), "{console:#}");

    assert_succeeded(&w, "a").await;
    let s = wait_refused(&w, "b", "DisruptionBudget").await;
    let message = s["message"].as_str().unwrap();
    assert!(
        message.contains("keep-two")
            && message.contains("minRunningInstances")
            && message.contains("SAE lists 2 Running")
            && message.contains("would leave 1"),
        "the message names the policy, the limit and what SAE listed: {s:#}"
    );
    // B keeps waiting (it is looked at again), and still nothing goes out for it.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let s = w.status("b").await;
    assert_eq!(s["phase"], "Pending", "{s:#}");
    assert_never_sent(&w, "b", "app-min", &["i-2"]).await;
    assert_eq!(w.delete_requests("app-min").await.len(), 1, "A's send only");

    // SAE's side: i-1 by A, i-3 by the console, i-2 and i-4 still there.
    let ledger = w.sim.ledger().await;
    let deletions: Vec<(String, String)> = ledger["deletions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            (
                d["source"].as_str().unwrap_or("").to_string(),
                d["instanceIds"].to_string(),
            )
        })
        .collect();
    assert_eq!(
        deletions,
        vec![
            ("api".to_string(), json!(["i-1"]).to_string()),
            ("console".to_string(), json!(["i-3"]).to_string())
        ]
    );
    let groups = w.sim.admin_get("/_sim/apps/app-min").await["groups"].to_string();
    assert!(
        groups.contains("\"i-2\"") && groups.contains("\"i-4\""),
        "{groups}"
    );
    // The list was read for the checks: A's and B's full checks each listed the instances.
    let listed = w
        .ledger_requests()
        .await
        .iter()
        .filter(|r| r["operation"] == "DescribeApplicationInstances")
        .count();
    assert!(
        listed >= 2,
        "the minimum is counted from SAE's list: {listed} lists"
    );

    report("min_running_is_counted_right_before_the_send", &[&w], 1).await;
}

/// maxInstancesPerHour counts, per app, every instance this controller deleted in the last 60
/// minutes, including those of objects deleted since; another app has its own count.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hourly_budget_counts_the_last_hour_per_app() {
    let _turn = POLICY_TURN.lock().await;
    let mut policies = Policies::new();
    let w = world(
        "pol-hour",
        vec![
            app("app-hour", &["i-1", "i-2", "i-3", "i-4", "i-5"]),
            app("app-other", &["j-1"]),
        ],
        &[],
    )
    .await;
    policies
        .apply_ready(
            "three-an-hour",
            json!({ "namespaces": [w.ns], "maxInstancesPerHour": 3 }),
        )
        .await;

    w.create("h1", "app-hour", &["i-1", "i-2"], json!({}));
    assert_succeeded(&w, "h1").await;
    w.create("h2", "app-hour", &["i-3"], json!({}));
    assert_succeeded(&w, "h2").await;
    // 3 deleted in the hour: one more is over the budget.
    w.create("h3", "app-hour", &["i-4"], json!({}));
    let s = wait_refused(&w, "h3", "DisruptionBudget").await;
    let message = s["message"].as_str().unwrap();
    assert!(
        message.contains("three-an-hour")
            && message.contains("maxInstancesPerHour")
            && message.contains("3 were in the last 60 minutes"),
        "{s:#}"
    );
    // Another app on the same policy has its own budget.
    w.create("other-app", "app-other", &["j-1"], json!({}));
    assert_succeeded(&w, "other-app").await;

    // Deleting the object that deleted two does not give them back.
    w.kubectl(&["delete", "saedel", "h1", "--wait=true"]);
    w.create("h4", "app-hour", &["i-5"], json!({}));
    let s = wait_refused(&w, "h4", "DisruptionBudget").await;
    assert!(
        s["message"]
            .as_str()
            .unwrap()
            .contains("3 were in the last 60 minutes"),
        "the deleted object's two still count: {s:#}"
    );
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_never_sent(&w, "h3", "app-hour", &["i-4"]).await;
    assert_never_sent(&w, "h4", "app-hour", &["i-5"]).await;
    assert_eq!(w.delete_requests("app-hour").await.len(), 2);
    assert_eq!(w.committed_deletes("app-hour").await, 2);

    report("hourly_budget_counts_the_last_hour_per_app", &[&w], 2).await;
}

/// credentials: SecretOnly admits only objects naming a credentialsRef, ControllerOnly only those
/// that do not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credentials_secret_only_and_controller_only() {
    let _turn = POLICY_TURN.lock().await;
    let mut policies = Policies::new();
    let w = world(
        "pol-creds",
        vec![
            app("app-secret", &["i-1", "i-2"]),
            app("app-ctrl", &["i-1", "i-2"]),
        ],
        &[],
    )
    .await;
    w.apply_secret(
        "team-creds",
        json!({ "accessKeyId": AK, "accessKeySecret": SK }),
    );
    policies
        .apply_ready(
            "secret-only",
            json!({ "namespaces": [w.ns], "appIds": ["app-secret"], "credentials": "SecretOnly" }),
        )
        .await;
    policies
        .apply_ready(
            "controller-only",
            json!({ "namespaces": [w.ns], "appIds": ["app-ctrl"], "credentials": "ControllerOnly" }),
        )
        .await;
    let with_secret = json!({ "credentialsRef": { "name": "team-creds" } });

    w.create("secret-ok", "app-secret", &["i-1"], with_secret.clone());
    w.create("secret-missing", "app-secret", &["i-2"], json!({}));
    w.create("ctrl-ok", "app-ctrl", &["i-1"], json!({}));
    w.create("ctrl-with-secret", "app-ctrl", &["i-2"], with_secret);

    assert_succeeded(&w, "secret-ok").await;
    assert_succeeded(&w, "ctrl-ok").await;
    let s = wait_refused(&w, "secret-missing", "NotPermitted").await;
    assert!(
        s["message"].as_str().unwrap().contains("SecretOnly"),
        "{s:#}"
    );
    let s = wait_refused(&w, "ctrl-with-secret", "NotPermitted").await;
    assert!(
        s["message"].as_str().unwrap().contains("ControllerOnly"),
        "{s:#}"
    );
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_never_sent(&w, "secret-missing", "app-secret", &["i-2"]).await;
    assert_never_sent(&w, "ctrl-with-secret", "app-ctrl", &["i-2"]).await;
    assert_eq!(w.committed_deletes("app-secret").await, 1);
    assert_eq!(w.committed_deletes("app-ctrl").await, 1);

    report("credentials_secret_only_and_controller_only", &[&w], 2).await;
}

/// windows: a window on another day refuses `OutsideMaintenanceWindow` (saying when the next one
/// opens); a window around now, in a zone other than the machine's, admits.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn window_on_another_day_refuses_and_one_around_now_admits() {
    let _turn = POLICY_TURN.lock().await;
    let mut policies = Policies::new();
    let w = world(
        "pol-window",
        vec![app("app-closed", &["i-1"]), app("app-open", &["i-1"])],
        &[],
    )
    .await;

    // Closed: all of a day three days from today (UTC), so never today.
    let now = jiff::Timestamp::now();
    let other_day = now.in_tz("UTC").unwrap().date().weekday().wrapping_add(3);
    // Open: from the last full hour to two hours later, on today's date in a zone whose wall clock
    // is far enough from midnight that the window cannot need to cross it.
    let (zone, local) = [
        "Asia/Shanghai",
        "America/New_York",
        "Asia/Kolkata",
        "Europe/Berlin",
        "UTC",
    ]
    .into_iter()
    .map(|z| (z, now.in_tz(z).unwrap()))
    .find(|(_, t)| (1..=21).contains(&t.hour()))
    .expect("some zone's hour is within 1..=21");
    let start = format!("{:02}:00", local.hour());
    let end = format!("{:02}:00", local.hour() + 2);
    println!(
        "policies: windows: closed on {} (UTC), open {} {start}-{end} {zone} (now {local})",
        day(other_day),
        day(local.weekday())
    );
    policies
        .apply_ready(
            "closed-today",
            json!({
                "namespaces": [w.ns], "appIds": ["app-closed"],
                "windows": [{ "days": [day(other_day)], "start": "00:00", "end": "24:00", "timeZone": "UTC" }],
            }),
        )
        .await;
    policies
        .apply_ready(
            "open-now",
            json!({
                "namespaces": [w.ns], "appIds": ["app-open"],
                "windows": [{ "days": [day(local.weekday())], "start": start, "end": end, "timeZone": zone }],
            }),
        )
        .await;

    w.create("closed", "app-closed", &["i-1"], json!({}));
    w.create("open", "app-open", &["i-1"], json!({}));
    assert_succeeded(&w, "open").await;
    let s = wait_refused(&w, "closed", "OutsideMaintenanceWindow").await;
    let message = s["message"].as_str().unwrap();
    assert!(
        message.contains("closed-today")
            && message.contains(day(other_day))
            && message.contains("next chance"),
        "the message names the policy, its window and when it opens: {s:#}"
    );
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_never_sent(&w, "closed", "app-closed", &["i-1"]).await;
    assert_eq!(requests_for_app(&w, "app-closed").await, 0);
    assert_eq!(w.committed_deletes("app-open").await, 1);

    report(
        "window_on_another_day_refuses_and_one_around_now_admits",
        &[&w],
        1,
    )
    .await;
}

/// An invalid policy (a time zone that does not exist; a window ending before it starts) shows
/// Ready=False/Invalid, and admits nothing: an object in its scope is refused `NotPermitted` even
/// though a valid policy admits it; fixed, the policy turns Ready and the object goes.
/// `kubectl get saepol` prints the policies' columns.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_policy_admits_nothing_until_fixed() {
    let _turn = POLICY_TURN.lock().await;
    let mut policies = Policies::new();
    let w = world("pol-invalid", vec![app("app-inv", &["i-1"])], &[]).await;

    policies
        .apply_ready("admits-all-here", json!({ "namespaces": [w.ns] }))
        .await;
    let mars = json!({
        "namespaces": [w.ns],
        "windows": [{ "days": ["Mon"], "start": "00:00", "end": "24:00", "timeZone": "Mars/Olympus" }],
    });
    policies.apply("mars-time", mars);
    let ready = policies.wait_ready("mars-time", "False").await;
    assert_eq!(ready["reason"], "Invalid", "{ready:#}");
    assert!(
        ready["message"]
            .as_str()
            .unwrap_or("")
            .contains("Mars/Olympus"),
        "{ready:#}"
    );
    // Another mistake a schema cannot catch: start after end (across midnight is two windows).
    policies.apply(
        "backwards",
        json!({
            "namespaces": ["not-this-namespace"],
            "windows": [{ "days": ["Fri"], "start": "22:00", "end": "02:00", "timeZone": "UTC" }],
        }),
    );
    let ready = policies.wait_ready("backwards", "False").await;
    assert_eq!(ready["reason"], "Invalid", "{ready:#}");

    // What an admin sees.
    let table = policies.cp.kubectl_ok(&["get", "saepol"]);
    let header = table.lines().next().unwrap_or_default();
    for column in [
        "NAME",
        "NAMESPACES",
        "APPS",
        "REGIONS",
        "CREDENTIALS",
        "PERDELETION",
        "MINRUNNING",
        "PERHOUR",
        "READY",
        "AGE",
    ] {
        assert!(header.contains(column), "column {column} missing: {table}");
    }
    let mars_row = table
        .lines()
        .find(|l| l.starts_with("mars-time "))
        .unwrap_or_default();
    assert!(mars_row.contains("False"), "{table}");
    let wide = policies.cp.kubectl_ok(&["get", "saepol", "-o", "wide"]);
    assert!(
        wide.lines().next().unwrap_or_default().contains("WINDOWS")
            && wide.lines().next().unwrap_or_default().contains("SELECTOR"),
        "{wide}"
    );
    println!("policies: kubectl get saepol:\n{table}");

    // Its scope covers the object: nothing is admitted, whatever the valid policy says.
    w.create("blocked", "app-inv", &["i-1"], json!({}));
    let s = wait_refused(&w, "blocked", "NotPermitted").await;
    let message = s["message"].as_str().unwrap();
    assert!(
        message.contains("mars-time") && message.contains("invalid"),
        "the message names the invalid policy: {s:#}"
    );
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_never_sent(&w, "blocked", "app-inv", &["i-1"]).await;
    assert_eq!(requests_for_app(&w, "app-inv").await, 0);

    // Fixed (every day, all day, UTC): Ready again, and the object goes.
    policies.apply(
        "mars-time",
        json!({
            "namespaces": [w.ns],
            "windows": [{ "days": ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"],
                          "start": "00:00", "end": "24:00", "timeZone": "UTC" }],
        }),
    );
    let ready = policies.wait_ready("mars-time", "True").await;
    assert_eq!(ready["reason"], "Valid", "{ready:#}");
    assert_succeeded(&w, "blocked").await;
    assert_eq!(w.committed_deletes("app-inv").await, 1);

    report("invalid_policy_admits_nothing_until_fixed", &[&w], 1).await;
}

/// deploy/samples/deletion-policy.yaml is accepted by the API server's schema and valid by the
/// controller's own rules; it stays out of deploy/samples' kustomization (applied with the
/// samples, it would refuse them).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sample_policy_is_accepted_and_valid() {
    let _turn = POLICY_TURN.lock().await;
    let policies = Policies::new();
    let cp = policies.cp;
    let out = cp.kubectl_ok(&[
        "apply",
        "--dry-run=server",
        "-o",
        "json",
        "-f",
        "deploy/samples/deletion-policy.yaml",
    ]);
    let stored: sae_controller::policy::SaeDeletionPolicy =
        serde_json::from_str(&out).expect("the sample as the API server would store it");
    sae_controller::policy::validate(&stored)
        .unwrap_or_else(|why| panic!("the sample policy is invalid: {why}"));
    let spec = &stored.spec;
    assert_eq!(spec.max_instances_per_deletion, Some(2));
    assert_eq!(spec.min_running_instances, Some(2));
    assert_eq!(spec.max_instances_per_hour, Some(10));
    let windows = spec.windows.as_ref().expect("the sample has windows");
    assert!(windows.iter().all(|w| w.time_zone == "Asia/Shanghai"));
    let days: BTreeSet<String> = windows
        .iter()
        .flat_map(|w| w.days.iter().map(|d| format!("{d:?}")))
        .collect();
    assert!(
        !days.contains("Sat") && !days.contains("Sun"),
        "weekdays: {days:?}"
    );

    let samples = cp.kubectl_ok(&["kustomize", "deploy/samples"]);
    assert!(
        !samples.contains("kind: SaeDeletionPolicy"),
        "the sample policy must not be applied with the samples: {samples}"
    );
}

/// `kubectl sae check` as a person with less than admin rights (user `test-oncall`): while the
/// namespace's labels cannot be read and a policy selects namespaces by label, the plugin says it
/// cannot tell and exits 3, never "admitted" or "refused" on a guess; once it may read them, the
/// verdict follows the label (exit 1 refused without it, exit 0 admitted with it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plugin_check_cannot_tell_without_the_namespace_labels_and_follows_them_once_readable() {
    let _turn = POLICY_TURN.lock().await;
    let mut policies = Policies::new();
    let cp = policies.cp;
    let ns = cp.create_namespace("pol-cli-check");
    policies.apply(
        "cli-by-label",
        json!({
            "namespaceSelector": { "matchLabels": { "sae-policies-test": ns } },
            "appIds": ["app-cli"],
        }),
    );
    let role = format!("sae-test-oncall-{ns}");
    let _cleanup = ClusterGrant {
        cp,
        name: role.clone(),
    };
    let grant = |rules: Value| {
        let docs = json!({
            "apiVersion": "v1",
            "kind": "List",
            "items": [
                {
                    "apiVersion": "rbac.authorization.k8s.io/v1",
                    "kind": "ClusterRole",
                    "metadata": { "name": role, "labels": { TEST_LABEL: TEST_LABEL_VALUE } },
                    "rules": rules,
                },
                {
                    "apiVersion": "rbac.authorization.k8s.io/v1",
                    "kind": "ClusterRoleBinding",
                    "metadata": { "name": role, "labels": { TEST_LABEL: TEST_LABEL_VALUE } },
                    "roleRef": { "apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": role },
                    "subjects": [{ "apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": support::ONCALL_USER }],
                },
            ],
        });
        let out = cp.kubectl_stdin(&["apply", "-f", "-"], &docs.to_string());
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    let read_deletions_and_policies = json!([{
        "apiGroups": ["sae.ops.dev"],
        "resources": ["saeinstancedeletions", "saedeletionpolicies"],
        "verbs": ["get", "list"],
    }]);
    // Asks until the answer is `want` (exit status, a line in stdout). RBAC changes reach the
    // authorizer within a moment, so until then the one answer the previous grant gives is
    // accepted (`interim`: its exit status and a line in stdout, "" for an empty stdout), for at
    // most 20 s; any other answer fails at once.
    let check = |want: (i32, &'static str), interim: Option<(i32, &'static str)>| {
        let ns = ns.clone();
        async move {
            let start = Instant::now();
            loop {
                let out = std::process::Command::new(env!("CARGO_BIN_EXE_kubectl-sae"))
                    .arg("--kubeconfig")
                    .arg(cp.oncall_kubeconfig())
                    .args(["-n", &ns, "check", "--app", "app-cli", "--region"])
                    .arg(support::world::REGION)
                    .arg("i-1")
                    .stdin(std::process::Stdio::null())
                    .output()
                    .expect("run kubectl-sae");
                let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
                let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
                let is = |(code, line): (i32, &str)| {
                    out.status.code() == Some(code)
                        && if line.is_empty() {
                            stdout.is_empty()
                        } else {
                            stdout.contains(line)
                        }
                };
                if is(want) {
                    return (stdout, stderr);
                }
                assert!(
                    interim.is_some_and(is) && start.elapsed() < Duration::from_secs(20),
                    "want {want:?} (or, for at most 20 s, {interim:?}), got exit {:?}:\n{stdout}\n{stderr}",
                    out.status.code()
                );
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
    };

    // Policies and deletions readable, the Namespace not: cannot tell, exit 3.
    grant(read_deletions_and_policies.clone());
    // Before the grant takes effect the policies cannot be listed: an error, nothing on stdout.
    let (stdout, stderr) = check((3, "cannot tell"), Some((3, ""))).await;
    assert!(
        stdout.contains(&format!("namespace {ns}'s labels could not be read")),
        "{stdout}"
    );
    assert!(stderr.contains("error: cannot tell"), "{stderr}");

    // The Namespace readable, not labelled: refused, exit 1.
    let mut with_namespaces = read_deletions_and_policies.as_array().unwrap().clone();
    with_namespaces
        .push(json!({ "apiGroups": [""], "resources": ["namespaces"], "verbs": ["get"] }));
    grant(Value::Array(with_namespaces));
    let (stdout, _) = check((1, "refused (NotPermitted"), Some((3, "cannot tell"))).await;
    assert!(!stdout.contains("cannot tell"), "{stdout}");

    // Labelled: admitted by the selector's policy, exit 0.
    cp.kubectl_ok(&[
        "label",
        "namespace",
        &ns,
        &format!("sae-policies-test={ns}"),
    ]);
    check((0, "admitted by SaeDeletionPolicy \"cli-by-label\""), None).await;
}

/// Deletes a test's ClusterRole and ClusterRoleBinding of one name when dropped, a failing test's
/// too.
struct ClusterGrant {
    cp: &'static ControlPlane,
    name: String,
}

impl Drop for ClusterGrant {
    fn drop(&mut self) {
        for kind in ["clusterrolebinding", "clusterrole"] {
            self.cp
                .kubectl(&["delete", kind, &self.name, "--ignore-not-found"]);
        }
    }
}
