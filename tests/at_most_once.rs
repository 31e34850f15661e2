//! The controller's promises, each proven by a test that can fail, against the real binaries (a
//! kube-apiserver + etcd, `sae-controller`, `sae-simulator`):
//!
//! 1. At most one accepted (committed) DeleteInstances per object, whatever fails when.
//! 2. No instance outside an object's `spec.instanceIds` is ever named in a DeleteInstances call.
//! 3. Every object reaches a terminal phase by its `activeDeadlineSeconds`.
//! 4. Deleting an object never undoes anything and is never blocked by SAE (no finalizers).
//!
//! Guarantees 1 and 2 are checked by [`audit`] on the simulator's ledger, which records every request
//! SAE received and every deletion it executed, independently of what the controller reports.
//!
//! Time is kept short on purpose: the simulator has no quota (`--requests-per-minute 0`) and short
//! change orders, and the controller gives up on an SAE call after 2 s (`--sae-timeout-seconds 2`), so
//! a lost answer is proven "not executed" 12 s after its send. The crash and HA tests draw their
//! random choices from a seed they print; `SAE_TEST_SEED=N` replays one.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use jiff::{SignedDuration, Timestamp};
use serde_json::{Value, json};
use support::world::{
    AK, SK, Setup, World, app, fast_retry, is_terminal, reason, secret, strings, tail,
};

/// How long after a send the controller may still take an unanswered DeleteInstances for executed:
/// `--sae-timeout-seconds` (2) plus the controller's 10 s margin.
const RESOLVE_AFTER: Duration = Duration::from_secs(12);

/// The setup of every world here: no quota, change orders of `change_order_seconds`, a 2 s SAE
/// client timeout.
fn setup(change_order_seconds: &str) -> Setup {
    Setup {
        simulator_args: strings(&[
            "--access-key",
            &format!("{AK}:{SK}"),
            "--change-order-seconds",
            change_order_seconds,
            "--requests-per-minute",
            "0",
        ]),
        controller_args: strings(&[
            "--sae-timeout-seconds",
            "2",
            "--sae-requests-per-minute",
            "0",
        ]),
    }
}

/// An object as the test created it.
#[derive(Clone, Debug)]
struct Planned {
    name: String,
    app: String,
    ids: Vec<String>,
}

impl Planned {
    fn new(name: &str, app: &str, ids: &[&str]) -> Self {
        Self {
            name: name.into(),
            app: app.into(),
            ids: strings(ids),
        }
    }

    fn doc(&self, w: &World, extra_spec: Value) -> Value {
        let ids: Vec<&str> = self.ids.iter().map(String::as_str).collect();
        w.object(&self.name, &self.app, &ids, extra_spec)
    }
}

/// What the ledger shows one object sent.
#[derive(Debug, Default)]
struct Sends {
    /// Its DeleteInstances requests, in order.
    all: Vec<Value>,
    /// Those SAE executed.
    committed: Vec<Value>,
}

/// Guarantees 1 and 2 as read from the ledger, plus counts for the report.
#[derive(Debug, Default)]
struct Audit {
    by_object: BTreeMap<String, Sends>,
    sends: usize,
    committed: usize,
    /// DeleteInstances answered by dropping the connection.
    no_answer: usize,
    /// DeleteInstances answered `Application.ChangerOrderRunning`.
    change_order_running: usize,
}

impl Audit {
    fn of(&self, name: &str) -> &Sends {
        static NONE: Sends = Sends {
            all: Vec::new(),
            committed: Vec::new(),
        };
        self.by_object.get(name).unwrap_or(&NONE)
    }
}

/// Reads the ledger and panics on any breach of guarantee 1 or 2. Requests are attributed to the
/// object whose spec names their first instance of their app, so the objects of one app must name
/// disjoint instances.
async fn audit(w: &World, planned: &[Planned]) -> Audit {
    audit_ledger(&w.sim.ledger().await, planned).unwrap_or_else(|breach| panic!("{breach}"))
}

/// [`audit`] on a ledger document (`GET /_sim/ledger`); Err describes the first breach found.
fn audit_ledger(ledger: &Value, planned: &[Planned]) -> Result<Audit, String> {
    let owner = |app: &str, id: &str| {
        planned
            .iter()
            .find(|p| p.app == app && p.ids.iter().any(|i| i == id))
    };
    // Guarantee 2: every id belongs to the one object the call is attributed to.
    let attribute = |app: &str, ids: &[&str], what: &Value| -> Result<&Planned, String> {
        let object = owner(app, ids[0]).ok_or_else(|| {
            format!("guarantee 2 broken: {ids:?} of app {app} named for no object: {what:#}")
        })?;
        match ids.iter().find(|id| !object.ids.iter().any(|i| i == *id)) {
            Some(id) => Err(format!(
                "guarantee 2 broken: {id} named for {}, outside its spec.instanceIds {:?}: {what:#}",
                object.name, object.ids
            )),
            None => Ok(object),
        }
    };
    let mut audit = Audit::default();
    let requests = ledger["requests"]
        .as_array()
        .ok_or("ledger without requests")?;
    for request in requests
        .iter()
        .filter(|r| r["operation"] == "DeleteInstances")
    {
        let app = request["params"]["AppId"].as_str().unwrap_or_default();
        let ids: Vec<&str> = request["params"]["InstanceIds"]
            .as_str()
            .unwrap_or_default()
            .split(',')
            .collect();
        let object = attribute(app, &ids, request)?;
        let sends = audit.by_object.entry(object.name.clone()).or_default();
        sends.all.push(request.clone());
        audit.sends += 1;
        if request["committed"] == true {
            sends.committed.push(request.clone());
            audit.committed += 1;
        }
        if request["code"] == "NoAnswer" {
            audit.no_answer += 1;
        }
        if request["code"] == "Application.ChangerOrderRunning" {
            audit.change_order_running += 1;
        }
    }
    // The executed deletions are a second witness of the same two guarantees.
    let mut executed: BTreeMap<String, usize> = BTreeMap::new();
    for deletion in ledger["deletions"]
        .as_array()
        .ok_or("ledger without deletions")?
    {
        let app = deletion["appId"].as_str().unwrap_or_default();
        let ids: Vec<&str> = deletion["instanceIds"]
            .as_array()
            .map(|ids| ids.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        let object = attribute(app, &ids, deletion)?;
        *executed.entry(object.name.clone()).or_default() += 1;
    }
    // Guarantee 1.
    for object in planned {
        let sends = audit.of(&object.name);
        let deletions = executed.get(&object.name).copied().unwrap_or(0);
        if sends.committed.len() > 1 || deletions > 1 {
            return Err(format!(
                "guarantee 1 broken: {} had {} DeleteInstances executed ({deletions} deletions): {:#?}",
                object.name,
                sends.committed.len(),
                sends.committed
            ));
        }
        if deletions != sends.committed.len() {
            return Err(format!(
                "{}: the ledger's requests and deletions disagree",
                object.name
            ));
        }
    }
    Ok(audit)
}

/// Succeeded because of its own one executed request, which was its last send, and the status
/// names that request's change order. A send whose answer was lost is followed by another only
/// once the resolve window has passed (proof that it was not executed).
fn assert_succeeded_once(name: &str, status: &Value, sends: &Sends) {
    assert_eq!(
        (status["phase"].as_str(), reason(status)),
        (Some("Succeeded"), "Succeeded"),
        "{name}: {status:#}"
    );
    assert_eq!(sends.committed.len(), 1, "{name}: {:#?}", sends.all);
    assert_eq!(
        sends.all.last(),
        sends.committed.first(),
        "{name}: sent again after SAE executed a send: {:#?}",
        sends.all
    );
    assert_eq!(
        status["changeOrderId"], sends.committed[0]["changeOrderId"],
        "{name}: the status must name the change order SAE created for it"
    );
    for pair in sends.all.windows(2) {
        let lost = pair[0]["code"] == "NoAnswer"
            || pair[0]["code"] == "Garbage"
            || pair[0]["httpStatus"].as_u64().is_some_and(|s| s >= 500)
            || pair[0]["fault"] == "slow";
        let gap = seconds_between(&pair[0]["time"], &pair[1]["time"]);
        assert!(
            !lost || gap >= RESOLVE_AFTER.as_secs_f64() - 1.0,
            "{name}: resent {gap:.1} s after a send whose answer was lost, before it could be proven not executed"
        );
    }
}

/// Seconds between two ledger/status times.
fn seconds_between(from: &Value, to: &Value) -> f64 {
    let from: Timestamp = from
        .as_str()
        .expect("a time")
        .parse()
        .expect("RFC 3339 time");
    let to: Timestamp = to.as_str().expect("a time").parse().expect("RFC 3339 time");
    to.duration_since(from).as_secs_f64()
}

/// The seed for this run's random choices: `SAE_TEST_SEED`, else the clock.
fn seed(test: &str) -> u64 {
    let seed = std::env::var("SAE_TEST_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| Timestamp::now().as_nanosecond() as u64);
    println!("{test}: seed {seed} (replay with SAE_TEST_SEED={seed})");
    seed
}

/// `count` objects per app, each naming 1–2 instances of its app, disjoint within the app.
fn plan(prefix: &str, apps: &[String], count: usize, rng: &mut fastrand::Rng) -> Vec<Planned> {
    let mut planned = Vec::new();
    for app in apps {
        let mut free: Vec<usize> = (0..count * 2).collect();
        rng.shuffle(&mut free);
        for k in 0..count {
            let n = if rng.f64() < 0.5 { 1 } else { 2 };
            let ids = free.drain(..n).map(|i| format!("i-{i}")).collect();
            planned.push(Planned {
                name: format!("{prefix}-{app}-{k}"),
                app: app.clone(),
                ids,
            });
        }
    }
    planned
}

/// The app for `plan(.., count, ..)`: instances i-0 .. i-(2*count - 1).
fn planned_app(app_id: &str, count: usize) -> Value {
    let ids: Vec<String> = (0..count * 2).map(|i| format!("i-{i}")).collect();
    let ids: Vec<&str> = ids.iter().map(String::as_str).collect();
    app(app_id, &ids)
}

/// DeleteInstances faults for one app: each of its next `calls` sends has probability `p` of being
/// executed and then answered by a dropped connection; the others pass unharmed (a zero-delay
/// `slow` fault, which answers exactly as without a fault).
fn ambiguous_faults(calls: usize, p: f64, rng: &mut fastrand::Rng) -> Value {
    let faults: Vec<Value> = (0..calls)
        .map(|_| {
            if rng.f64() < p {
                json!({ "kind": "ambiguous" })
            } else {
                json!({ "kind": "slow", "millis": 0, "commit": true })
            }
        })
        .collect();
    Value::Array(faults)
}

/// Every planned object Succeeded with exactly one executed send of its own; of each app's
/// `instances` (i-0 .. i-(instances-1)) exactly those no object named are left.
async fn assert_all_deleted_once(
    w: &World,
    planned: &[Planned],
    statuses: &BTreeMap<String, Value>,
    audit: &Audit,
    instances: usize,
) {
    for object in planned {
        let status = statuses
            .get(&object.name)
            .unwrap_or_else(|| panic!("{} vanished", object.name));
        assert_succeeded_once(&object.name, status, audit.of(&object.name));
    }
    let apps: BTreeSet<&str> = planned.iter().map(|p| p.app.as_str()).collect();
    for app_id in apps {
        let state = w.sim.admin_get(&format!("/_sim/apps/{app_id}")).await;
        let left: BTreeSet<String> = state["groups"]
            .as_array()
            .expect("groups")
            .iter()
            .flat_map(|g| g["instanceIds"].as_array().cloned().unwrap_or_default())
            .filter_map(|v| v.as_str().map(str::to_string))
            .collect();
        let named: BTreeSet<String> = planned
            .iter()
            .filter(|p| p.app == app_id)
            .flat_map(|p| p.ids.clone())
            .collect();
        let untouched: BTreeSet<String> = (0..instances)
            .map(|i| format!("i-{i}"))
            .filter(|id| !named.contains(id))
            .collect();
        assert_eq!(left, untouched, "{app_id}: instances left");
    }
}

fn phase_counts(statuses: &BTreeMap<String, Value>) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    for status in statuses.values() {
        let key = format!(
            "{}/{}",
            status["phase"].as_str().unwrap_or("-"),
            reason(status)
        );
        *counts.entry(key).or_default() += 1;
    }
    counts
}

// ---- The checker itself ---------------------------------------------------------------------------

/// The audit must be able to fail: fed a ledger that breaks guarantee 1 or 2, it names the breach.
#[test]
fn the_ledger_audit_catches_both_breaches() {
    let planned = vec![
        Planned::new("a", "app-x", &["i-1", "i-2"]),
        Planned::new("b", "app-x", &["i-3"]),
    ];
    let send = |ids: &str, committed: bool| {
        json!({ "operation": "DeleteInstances", "params": { "AppId": "app-x", "InstanceIds": ids },
                "committed": committed, "code": if committed { "OK" } else { "NoAnswer" } })
    };
    let deletion = |ids: &[&str]| json!({ "appId": "app-x", "instanceIds": ids });
    let breach = |ledger: Value| audit_ledger(&ledger, &planned).err().unwrap_or_default();

    let fine = json!({
        "requests": [send("i-1,i-2", false), send("i-1,i-2", true), send("i-3", true)],
        "deletions": [deletion(&["i-1", "i-2"]), deletion(&["i-3"])],
    });
    let audit = audit_ledger(&fine, &planned).unwrap();
    assert_eq!((audit.sends, audit.committed, audit.no_answer), (3, 2, 1));
    assert_eq!(audit.of("a").all.len(), 2);

    let twice = json!({
        "requests": [send("i-1,i-2", true), send("i-1,i-2", true)],
        "deletions": [deletion(&["i-1", "i-2"]), deletion(&["i-1", "i-2"])],
    });
    assert!(
        breach(twice).contains("guarantee 1"),
        "two executed sends for one object must be caught"
    );
    let foreign = json!({ "requests": [send("i-1,i-3", false)], "deletions": [] });
    assert!(
        breach(foreign).contains("guarantee 2"),
        "an id of another object must be caught"
    );
    let unknown = json!({ "requests": [send("i-9", false)], "deletions": [] });
    assert!(
        breach(unknown).contains("guarantee 2"),
        "an id no object named must be caught"
    );
    let executed_beyond = json!({ "requests": [], "deletions": [deletion(&["i-3", "i-4"])] });
    assert!(
        breach(executed_beyond).contains("guarantee 2"),
        "a deletion beyond the spec must be caught"
    );
}

// ---- Fault matrix --------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fault_matrix_never_executes_a_deletion_twice() {
    // Each case on its own app, all at once in one world.
    let cases: Vec<(&str, Value)> = vec![
        // SAE executed it, then the connection dropped without an answer.
        ("ambiguous", json!([{ "kind": "ambiguous" }])),
        (
            "http500-commit",
            json!([{ "kind": "http500", "commit": true }]),
        ),
        (
            "http500-nocommit",
            json!([{ "kind": "http500", "commit": false }]),
        ),
        (
            "garbage-commit",
            json!([{ "kind": "garbage", "commit": true }]),
        ),
        // Executed at once, answered after the client gave up.
        (
            "slow-commit",
            json!([{ "kind": "slow", "millis": 4000, "commit": true }]),
        ),
        // Executed only after the client gave up, still inside the resolve window.
        (
            "slow-late",
            json!([{ "kind": "slow", "millis": 5000, "commit": false }]),
        ),
        (
            "poll-error",
            json!([{ "kind": "error", "code": "InternalError", "times": 3, "operation": "DescribeChangeOrder" }]),
        ),
        (
            "poll-garbage",
            json!([{ "kind": "garbage", "times": 2, "operation": "DescribeChangeOrder" }]),
        ),
    ];
    let apps: Vec<Value> = cases
        .iter()
        .map(|(c, _)| app(&format!("app-{c}"), &["i-1", "i-2"]))
        .collect();
    let w = World::start_with("matrix", apps, setup("1")).await;
    let planned: Vec<Planned> = cases
        .iter()
        .map(|(c, _)| Planned::new(c, &format!("app-{c}"), &["i-1"]))
        .collect();
    for ((_, faults), object) in cases.iter().zip(&planned) {
        w.fault(&object.app, faults.clone()).await;
    }
    w.apply_all(planned.iter().map(|p| p.doc(&w, fast_retry())).collect());

    let statuses = w.wait_all_terminal(Duration::from_secs(90)).await;
    let audit = audit(&w, &planned).await;
    for object in &planned {
        let name = object.name.as_str();
        let status = &statuses[name];
        let sends = audit.of(name);
        assert_succeeded_once(name, status, sends);
        // The sent instance is gone, the other one stays.
        let state =
            w.sim.admin_get(&format!("/_sim/apps/{}", object.app)).await["groups"].to_string();
        assert!(
            !state.contains("\"i-1\"") && state.contains("\"i-2\""),
            "{name}: {state}"
        );
        if name == "http500-nocommit" {
            // Not executed: proven only once the resolve window had passed, then sent once more.
            assert_eq!(status["attempts"], 2, "{name}: {status:#}");
            assert_eq!(sends.all.len(), 2, "{name}: {:#?}", sends.all);
            assert_eq!(sends.all[0]["committed"], false);
            assert_eq!(sends.all[1]["committed"], true);
            let gap = seconds_between(&sends.all[0]["time"], &sends.all[1]["time"]);
            assert!(
                gap >= RESOLVE_AFTER.as_secs_f64() - 1.0,
                "{name}: resent {gap:.1} s after the lost send, before it could be proven not executed"
            );
        } else {
            assert_eq!(status["attempts"], 1, "{name}: {status:#}");
            assert_eq!(sends.all.len(), 1, "{name}: sent again: {:#?}", sends.all);
        }
    }
    // The poll faults really fired, and were ridden out.
    let requests = w.ledger_requests().await;
    let poll_codes: Vec<&str> = requests
        .iter()
        .filter(|r| r["operation"] == "DescribeChangeOrder" && !r["fault"].is_null())
        .filter_map(|r| r["code"].as_str())
        .collect();
    assert_eq!(
        poll_codes.iter().filter(|c| **c == "InternalError").count(),
        3,
        "{poll_codes:?}"
    );
    assert_eq!(
        poll_codes.iter().filter(|c| **c == "Garbage").count(),
        2,
        "{poll_codes:?}"
    );
    println!(
        "fault matrix: {} objects, {} sends, {} committed, {} unanswered",
        planned.len(),
        audit.sends,
        audit.committed,
        audit.no_answer
    );
}

// ---- Guarantee 3: deadlines ----------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_object_is_terminal_by_its_deadline_whatever_sae_does() {
    const DEADLINE: i64 = 60;
    // How late a final status may be written: status times have one-second resolution and the
    // last reconcile needs a moment.
    const SLACK: i64 = 3;
    let cases: Vec<(&str, Value, &str, &str)> = vec![
        (
            "always-busy",
            json!([{ "kind": "error", "code": "Application.ChangerOrderRunning", "times": 1000 }]),
            "Failed",
            "DeadlineExceeded",
        ),
        (
            "upgrading",
            json!([{ "kind": "upgrading", "seconds": 600 }]),
            "Failed",
            "DeadlineExceeded",
        ),
        // Accepted, but its change order can never be read.
        (
            "unreadable-order",
            json!([{ "kind": "error", "code": "InternalError", "times": 1000, "operation": "DescribeChangeOrder" }]),
            "Failed",
            "DeadlineExceeded",
        ),
        // The answer was lost and SAE's change orders can never be listed: it must not be sent
        // again, and must still end.
        (
            "unresolvable",
            json!([
                { "kind": "http500", "commit": false },
                { "kind": "error", "code": "InternalError", "times": 1000, "operation": "ListChangeOrders" },
            ]),
            "Failed",
            "OutcomeUnknown",
        ),
    ];
    let apps: Vec<Value> = cases
        .iter()
        .map(|(c, ..)| app(&format!("app-{c}"), &["i-1"]))
        .collect();
    let w = World::start_with("deadline", apps, setup("1")).await;
    let planned: Vec<Planned> = cases
        .iter()
        .map(|(c, ..)| Planned::new(c, &format!("app-{c}"), &["i-1"]))
        .collect();
    for ((_, faults, ..), object) in cases.iter().zip(&planned) {
        w.fault(&object.app, faults.clone()).await;
    }
    let spec = json!({
        "activeDeadlineSeconds": DEADLINE,
        "retry": { "maxAttempts": 100, "initialDelaySeconds": 2, "maxDelaySeconds": 4 },
    });
    w.apply_all(planned.iter().map(|p| p.doc(&w, spec.clone())).collect());

    let statuses = w
        .wait_all_terminal(Duration::from_secs((DEADLINE + 30) as u64))
        .await;
    let audit = audit(&w, &planned).await;
    for ((name, _, phase, want_reason), object) in cases.iter().zip(&planned) {
        let status = &statuses[*name];
        assert_eq!(
            (status["phase"].as_str(), reason(status)),
            (Some(*phase), *want_reason),
            "{name}: {status:#}"
        );
        let created = w
            .api
            .get(name)
            .await
            .unwrap()
            .metadata
            .creation_timestamp
            .unwrap()
            .0;
        let completed: Timestamp = status["completionTime"]
            .as_str()
            .expect("completionTime")
            .parse()
            .unwrap();
        let late = completed.duration_since(created) - SignedDuration::from_secs(DEADLINE);
        println!("{name}: final {late:#} after its deadline");
        assert!(
            late <= SignedDuration::from_secs(SLACK),
            "{name}: terminal {late:#} after its deadline (created {created}, completed {completed})"
        );
        assert!(
            late >= SignedDuration::from_secs(-1),
            "{name}: gave up {late:#} before its deadline"
        );
        let sends = audit.of(&object.name);
        match *name {
            "unreadable-order" => {
                assert_eq!((sends.all.len(), sends.committed.len()), (1, 1), "{name}")
            }
            "unresolvable" => assert_eq!(
                (sends.all.len(), sends.committed.len()),
                (1, 0),
                "{name}: never resent"
            ),
            _ => assert!(
                sends.all.len() >= 2 && sends.committed.is_empty(),
                "{name}: {:#?}",
                sends.all
            ),
        }
    }
}

// ---- Crash test ---------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_at_random_moments_never_duplicates_a_deletion() {
    const APPS: usize = 10;
    const PER_APP: usize = 5;
    const KILLS: usize = 5;
    let mut rng = fastrand::Rng::with_seed(seed("crash"));
    let app_ids: Vec<String> = (0..APPS).map(|a| format!("app-{a}")).collect();
    let apps: Vec<Value> = app_ids.iter().map(|a| planned_app(a, PER_APP)).collect();
    let mut w = World::start_with("crash", apps, setup("2")).await;
    for a in &app_ids {
        w.fault(a, ambiguous_faults(PER_APP * 3, 0.2, &mut rng))
            .await;
    }
    let planned = plan("crash", &app_ids, PER_APP, &mut rng);
    w.apply_all(planned.iter().map(|p| p.doc(&w, fast_retry())).collect());

    let mut logs = String::new();
    let mut in_flight = Vec::new();
    let in_flight_now = |statuses: BTreeMap<String, Value>| {
        statuses
            .values()
            .filter(|s| matches!(s["phase"].as_str(), Some("Submitting" | "InProgress")))
            .count()
    };
    for _ in 0..KILLS {
        tokio::time::sleep(Duration::from_millis(rng.u64(1000..4000))).await;
        // Aim at work in flight rather than at a controller still starting up: wait (a little)
        // for an object being sent or followed, then a random moment more.
        let aim = Instant::now() + Duration::from_secs(10);
        while Instant::now() < aim && in_flight_now(w.statuses().await) == 0 {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        tokio::time::sleep(Duration::from_millis(rng.u64(0..500))).await;
        logs.push_str(&w.controller.logs());
        w.controller.kill();
        // What was in flight at the moment of the kill, for the report.
        in_flight.push(in_flight_now(w.statuses().await));
        tokio::time::sleep(Duration::from_millis(rng.u64(0..1000))).await;
        w.restart_controller();
    }
    let statuses = w.wait_all_terminal(Duration::from_secs(150)).await;
    logs.push_str(&w.controller.logs());
    let audit = audit(&w, &planned).await;
    let counts = phase_counts(&statuses);
    let sending = logs.matches("sending DeleteInstances").count();
    println!(
        "crash: {} objects by phase/reason {counts:?}; {} DeleteInstances sends, {} committed, {} unanswered; \
         {KILLS} kills, objects Submitting/InProgress at each: {in_flight:?}; {sending} sends logged by the \
         controllers",
        statuses.len(),
        audit.sends,
        audit.committed,
        audit.no_answer
    );
    assert_eq!(statuses.len(), planned.len());
    assert!(
        audit.no_answer > 0,
        "no ambiguous answer was exercised; try another seed"
    );
    assert_all_deleted_once(&w, &planned, &statuses, &audit, PER_APP * 2).await;
    if audit.sends > planned.len() {
        println!(
            "crash: {} resends, each after its earlier send was proven not executed",
            audit.sends - planned.len()
        );
    }
}

// ---- Leader election -----------------------------------------------------------------------------

/// The time at the start of the first log line containing `needle`.
fn log_time(log: &str, needle: &str) -> Option<Timestamp> {
    let line = log.lines().find(|l| l.contains(needle))?;
    line.split_whitespace().next()?.parse().ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_standby_takes_over_without_duplicating_anything() {
    const APPS: usize = 5;
    const PER_APP: usize = 4;
    let mut rng = fastrand::Rng::with_seed(seed("ha"));
    let app_ids: Vec<String> = (0..APPS).map(|a| format!("app-{a}")).collect();
    let apps: Vec<Value> = app_ids.iter().map(|a| planned_app(a, PER_APP)).collect();
    let mut ha = setup("2");
    // The Lease deploy/ grants: sae-controller in sae-system, the only one the controller's
    // ServiceAccount may renew (no other test of this binary elects a leader).
    let lease = "sae-controller";
    ha.controller_args.extend(strings(&[
        "--leader-elect",
        "--leader-election-namespace",
        "sae-system",
        "--leader-election-lease-seconds",
        "4",
    ]));
    let mut w = World::start_with("ha", apps, ha).await;
    let mut second = w.spawn_controller(&[], &[]);
    let deadline = Instant::now() + Duration::from_secs(30);
    let first_leads = loop {
        if w.controller.logs().contains("became leader") {
            break true;
        }
        if second.logs().contains("became leader") {
            break false;
        }
        assert!(Instant::now() < deadline, "no replica became leader");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    for a in &app_ids {
        w.fault(a, ambiguous_faults(PER_APP * 3, 0.2, &mut rng))
            .await;
    }
    let planned = plan("ha", &app_ids, PER_APP, &mut rng);
    w.apply_all(planned.iter().map(|p| p.doc(&w, fast_retry())).collect());

    // Mid-flight: some sends done, most objects still open.
    let deadline = Instant::now() + Duration::from_secs(60);
    // Only count sends here: a ledger read mid-flight can fall between a deletion being executed
    // and its request's line being written, which the full audit (at the end) would call a
    // disagreement.
    while w.delete_requests_total().await < 6 {
        assert!(Instant::now() < deadline, "the leader sent too little");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let holder = w.cp.kubectl_ok(&[
        "-n",
        "sae-system",
        "get",
        "lease",
        lease,
        "-o",
        "jsonpath={.spec.holderIdentity}",
    ]);
    let leader = if first_leads {
        &mut w.controller
    } else {
        &mut second
    };
    let leader_log = leader.logs();
    assert!(
        !holder.is_empty() && leader_log.contains(&holder),
        "the Lease names {holder:?}, not the replica that logged `became leader`"
    );
    leader.kill();
    let killed_at = Timestamp::now();
    let standby = if first_leads { &second } else { &w.controller };
    let open_at_kill = w
        .statuses()
        .await
        .values()
        .filter(|s| !is_terminal(s))
        .count();

    assert!(
        standby.wait_for_log("became leader", Duration::from_secs(30)),
        "the standby did not take over:\n{}",
        tail(&standby.logs(), 30)
    );
    let took_over =
        log_time(&standby.logs(), "became leader").expect("timestamp of `became leader`");

    let statuses = w.wait_all_terminal(Duration::from_secs(120)).await;
    let standby_log = standby.logs();
    let audit = audit(&w, &planned).await;
    println!(
        "ha: {} objects by phase/reason {:?}; {open_at_kill} open when the leader was killed; took over {:.1} s \
         after the kill; {} sends, {} committed, {} unanswered",
        statuses.len(),
        phase_counts(&statuses),
        took_over.duration_since(killed_at).as_secs_f64(),
        audit.sends,
        audit.committed,
        audit.no_answer
    );
    assert!(
        open_at_kill > 0,
        "the leader finished everything before it was killed"
    );
    assert_all_deleted_once(&w, &planned, &statuses, &audit, PER_APP * 2).await;

    // The standby sent nothing before it led: in its own log, and in SAE's ledger no request
    // arrived between the leader's death and the takeover.
    let first_send = standby_log.find("sending DeleteInstances");
    let became = standby_log.find("became leader").unwrap();
    assert!(
        first_send.is_none_or(|at| at > became),
        "the standby sent before it led"
    );
    assert!(
        leader_log.contains("sending DeleteInstances"),
        "the first leader did send"
    );
    let grace = SignedDuration::from_millis(500);
    for request in w.ledger_requests().await {
        let at: Timestamp = request["time"].as_str().unwrap().parse().unwrap();
        assert!(
            at <= killed_at + grace || at >= took_over - grace,
            "an SAE request arrived at {at}, after the leader died ({killed_at}) and before the standby led ({took_over}): {request:#}"
        );
    }
}

// ---- Contention -----------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_objects_on_one_app_take_turns_without_a_single_refusal() {
    const COUNT: usize = 10;
    let ids: Vec<String> = (0..COUNT).map(|i| format!("i-{i}")).collect();
    let id_refs: Vec<&str> = ids.iter().map(String::as_str).collect();
    let w = World::start_with("contention", vec![app("app-one", &id_refs)], setup("0.5")).await;
    let planned: Vec<Planned> = (0..COUNT)
        .map(|i| Planned::new(&format!("one-{i}"), "app-one", &[ids[i].as_str()]))
        .collect();
    w.apply_all(planned.iter().map(|p| p.doc(&w, fast_retry())).collect());

    let started = Instant::now();
    let statuses = w.wait_all_terminal(Duration::from_secs(150)).await;
    let audit = audit(&w, &planned).await;
    println!(
        "contention: {COUNT} objects done in {:.0} s; {} sends, {} refused with ChangerOrderRunning",
        started.elapsed().as_secs_f64(),
        audit.sends,
        audit.change_order_running
    );
    assert_eq!(
        audit.change_order_running, 0,
        "the per-app queue let two change orders collide"
    );
    assert_eq!(audit.sends, COUNT, "one send per object");
    assert_all_deleted_once(&w, &planned, &statuses, &audit, COUNT).await;
}

// ---- Security -------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sts_credentials_work_and_appear_nowhere() {
    const STS_ID: &str = "STS.h7TemporaryKeyId";
    const STS_SECRET: &str = "sts-Secret-Value-7f3a9c";
    const STS_TOKEN: &str = "sts-Token-Value-CAISzz91q";
    const WRONG_TOKEN: &str = "sts-Token-Wrong-Value-4c1d";
    let w = World::start_with(
        "security",
        vec![app("app-sts", &["i-1", "i-2"])],
        setup("0.5"),
    )
    .await;
    w.sim
        .admin_post(
            "/_sim/access-keys",
            json!({ "accessKeyId": STS_ID, "accessKeySecret": STS_SECRET, "securityToken": STS_TOKEN }),
        )
        .await;
    for (name, token) in [("sts-creds", STS_TOKEN), ("sts-wrong-token", WRONG_TOKEN)] {
        w.apply_secret(
            name,
            json!({ "accessKeyId": STS_ID, "accessKeySecret": STS_SECRET, "securityToken": token }),
        );
    }
    w.create(
        "sts",
        "app-sts",
        &["i-1"],
        json!({ "credentialsRef": { "name": "sts-creds" } }),
    );
    w.create(
        "sts-wrong",
        "app-sts",
        &["i-2"],
        json!({ "credentialsRef": { "name": "sts-wrong-token" }, "retry": { "maxAttempts": 1 } }),
    );

    let s = w.wait_terminal("sts", Duration::from_secs(60)).await;
    assert_eq!(
        (s["phase"].as_str(), reason(&s)),
        (Some("Succeeded"), "Succeeded"),
        "{s:#}"
    );
    let wrong = w.wait_terminal("sts-wrong", Duration::from_secs(60)).await;
    assert_eq!(
        wrong["phase"], "Failed",
        "a wrong token must not pass: {wrong:#}"
    );
    let sent = w.delete_requests("app-sts").await;
    let accepted: Vec<&Value> = sent.iter().filter(|r| r["committed"] == true).collect();
    assert_eq!(accepted.len(), 1, "{sent:#?}");
    assert_eq!(
        (
            accepted[0]["accessKeyId"].as_str(),
            accepted[0]["verified"].as_bool()
        ),
        (Some(STS_ID), Some(true))
    );

    let text = |args: &[&str]| {
        let out = w.kubectl(args);
        assert!(
            out.status.success(),
            "kubectl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let objects = text(&["get", "saedel", "-o", "yaml"]);
    let events = text(&["get", "events.events.k8s.io", "-o", "yaml"]);
    let described = text(&["describe", "saedel"]);
    let logs = w.controller.logs();
    let sim_logs = w.sim.logs();
    assert!(
        objects.contains("sts-wrong")
            && events.contains("Succeeded")
            && logs.contains("DeleteInstances"),
        "the witnesses are not empty"
    );
    for (what, haystack) in [
        ("objects", &objects),
        ("events", &events),
        ("describe", &described),
        ("controller log", &logs),
        ("simulator log", &sim_logs),
    ] {
        for (secret, value) in [
            ("STS secret", STS_SECRET),
            ("STS token", STS_TOKEN),
            ("wrong token", WRONG_TOKEN),
            ("controller secret", SK),
        ] {
            assert!(
                !haystack.contains(value),
                "the {secret} leaked into the {what}"
            );
        }
    }
}

// ---- Bad input ------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_gets_a_clear_condition_and_no_hot_loop() {
    let apps = ["app-half", "app-empty", "app-elsewhere"]
        .map(|a| app(a, &["i-1"]))
        .to_vec();
    let w = World::start_with("badinput", apps, setup("0.5")).await;
    let other_ns = w.cp.create_namespace("badinput-other");
    w.apply_secret("half", json!({ "accessKeyId": AK }));
    w.apply_secret("empty", json!({ "accessKeyId": "", "accessKeySecret": "" }));
    let elsewhere = secret(
        "elsewhere",
        json!({ "accessKeyId": AK, "accessKeySecret": SK }),
    );
    let out = w.cp.kubectl_stdin(
        &["-n", &other_ns, "apply", "-f", "-"],
        &elsewhere.to_string(),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let pending = [
        ("half", "app-half", "accessKeySecret"),
        ("empty", "app-empty", "accessKeyId"),
        ("elsewhere", "app-elsewhere", "not found"),
    ];
    for (name, app_id, _) in pending {
        w.create(
            name,
            app_id,
            &["i-1"],
            json!({ "credentialsRef": { "name": name } }),
        );
    }
    w.create("unknown-app", "app-missing", &["i-1"], fast_retry());

    for (name, _, says) in pending {
        let s = w
            .wait_for(
                name,
                "Pending/CredentialsNotFound",
                Duration::from_secs(30),
                |s| s["phase"] == "Pending" && reason(s) == "CredentialsNotFound",
            )
            .await;
        let message = s["message"].as_str().unwrap_or_default();
        assert!(
            message.contains(&format!("{}/{name}", w.ns)) && message.contains(says),
            "{name}: the message must name the Secret in the object's namespace and the problem: {message}"
        );
    }
    let s = w
        .wait_terminal("unknown-app", Duration::from_secs(30))
        .await;
    assert_eq!(
        (s["phase"].as_str(), reason(&s)),
        (Some("Failed"), "ApplicationNotFound"),
        "{s:#}"
    );

    // Over a quiet spell: no SAE call and no status write for any of them.
    let versions =
        |objects: Vec<sae_controller::crd::SaeInstanceDeletion>| -> BTreeMap<String, String> {
            objects
                .into_iter()
                .map(|o| {
                    (
                        o.metadata.name.unwrap_or_default(),
                        o.metadata.resource_version.unwrap_or_default(),
                    )
                })
                .collect()
        };
    let list = || async { w.api.list(&Default::default()).await.expect("list").items };
    let before = versions(list().await);
    let calls_before = w.ledger_requests().await.len();
    tokio::time::sleep(Duration::from_secs(5)).await;
    let after = versions(list().await);
    let requests = w.ledger_requests().await;
    assert_eq!(
        before, after,
        "objects were rewritten while nothing changed"
    );
    assert_eq!(
        requests.len(),
        calls_before,
        "SAE was called while nothing changed"
    );
    let for_app = |app_id: &str| {
        requests
            .iter()
            .filter(|r| r["params"]["AppId"] == app_id)
            .count()
    };
    for (name, app_id, _) in pending {
        assert_eq!(
            for_app(app_id),
            0,
            "{name}: SAE called without usable credentials"
        );
    }
    assert_eq!(for_app("app-missing"), 1, "unknown app: exactly one call");
    assert_eq!(requests.len(), 1, "{requests:#?}");
}

// ---- Guarantee 4: deleting an object --------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_an_object_mid_flight_is_immediate_and_undoes_nothing() {
    let apps = vec![
        app("app-running", &["i-1", "i-2"]),
        app("app-stuck", &["i-1"]),
    ];
    let w = World::start_with("objdelete", apps, setup("8")).await;
    // Its answer is lost and SAE cannot be asked about it: stuck in Submitting until the deadline.
    w.fault(
        "app-stuck",
        json!([
            { "kind": "http500", "commit": false },
            { "kind": "error", "code": "InternalError", "times": 1000, "operation": "ListChangeOrders" },
        ]),
    )
    .await;
    w.create("running", "app-running", &["i-1"], json!({}));
    w.create("stuck", "app-stuck", &["i-1"], json!({}));
    let running = w
        .wait_for("running", "InProgress", Duration::from_secs(30), |s| {
            s["phase"] == "InProgress"
        })
        .await;
    w.wait_for(
        "stuck",
        "Submitting/OutcomeUnknown",
        Duration::from_secs(30),
        |s| s["phase"] == "Submitting" && reason(s) == "OutcomeUnknown",
    )
    .await;
    let change_order = running["changeOrderId"]
        .as_str()
        .expect("changeOrderId")
        .to_string();

    for name in ["running", "stuck"] {
        let obj = w.api.get(name).await.unwrap();
        assert!(
            obj.metadata.finalizers.as_ref().is_none_or(Vec::is_empty),
            "{name} has finalizers: {:?}",
            obj.metadata.finalizers
        );
        let started = Instant::now();
        let out = w.kubectl(&["delete", "saedel", name, "--wait=true", "--timeout=10s"]);
        assert!(
            out.status.success(),
            "{name}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let took = started.elapsed();
        assert!(
            took < Duration::from_secs(5),
            "{name}: deletion took {took:?}"
        );
        assert!(
            w.api.get_opt(name).await.unwrap().is_none(),
            "{name} still exists"
        );
    }
    let deleted_at = Timestamp::now();

    // SAE's change order is not cancelled: it completes and the instance goes.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let ledger = w.sim.ledger().await;
        let done = ledger["deletions"]
            .as_array()
            .unwrap()
            .iter()
            .any(|d| d["changeOrderId"] == change_order.as_str() && d["finalStatus"] == 2);
        if done {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "change order {change_order} did not complete: {ledger:#}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let groups = w.sim.admin_get("/_sim/apps/app-running").await["groups"].to_string();
    assert!(
        !groups.contains("\"i-1\"") && groups.contains("\"i-2\""),
        "{groups}"
    );
    // And nothing else is sent: a moment for anything queued to show up, then the ledger.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let requests = w.ledger_requests().await;
    for app_id in ["app-running", "app-stuck"] {
        let sends = requests
            .iter()
            .filter(|r| r["operation"] == "DeleteInstances" && r["params"]["AppId"] == app_id)
            .count();
        assert_eq!(sends, 1, "{app_id}: {requests:#?}");
    }
    let grace = SignedDuration::from_secs(1);
    let late: Vec<&Value> = requests
        .iter()
        .filter(|r| r["time"].as_str().unwrap().parse::<Timestamp>().unwrap() > deleted_at + grace)
        .collect();
    assert!(
        late.is_empty(),
        "SAE was called after the objects were deleted: {late:#?}"
    );
}

/// The status that records SAE's acceptance is held for the first change-order poll (about a
/// second, longer when the poll is slow) and written with its result. A controller killed in that
/// window leaves the attempt `Submitting` in the API server: the next one adopts the change order
/// from SAE's list and never sends again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_while_the_change_order_id_is_held_is_resolved_by_adoption() {
    let mut w = World::start_with(
        "holdcrash",
        vec![app("app-hold", &["i-1", "i-2"])],
        setup("1"),
    )
    .await;
    // The first poll hangs until the client gives up (2 s): the window is at least 3 s long.
    w.fault(
        "app-hold",
        json!([{ "kind": "slow", "millis": 20000, "commit": true, "operation": "DescribeChangeOrder" }]),
    )
    .await;
    w.create("held", "app-hold", &["i-1"], json!({}));
    let deadline = Instant::now() + Duration::from_secs(30);
    while w.committed_deletes("app-hold").await == 0 {
        assert!(
            Instant::now() < deadline,
            "DeleteInstances was not executed"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    w.controller.kill();
    let at_kill = w.status("held").await;
    assert_eq!(
        (at_kill["phase"].as_str(), at_kill["changeOrderId"].as_str()),
        (Some("Submitting"), None),
        "killed inside the hold: SAE executed the attempt, the API server has only its write-ahead: {at_kill:#}"
    );
    let sent = w.delete_requests("app-hold").await;
    let change_order = sent[0]["changeOrderId"]
        .as_str()
        .expect("changeOrderId")
        .to_string();

    w.restart_controller();
    let status = w.wait_terminal("held", Duration::from_secs(60)).await;

    assert_eq!(status["phase"], "Succeeded", "{status:#}");
    assert_eq!(status["changeOrderId"], change_order.as_str(), "{status:#}");
    assert_eq!(status["attempts"], 1, "{status:#}");
    let requests = w.ledger_requests().await;
    let sends = requests
        .iter()
        .filter(|r| r["operation"] == "DeleteInstances")
        .count();
    assert_eq!(sends, 1, "never sent again: {requests:#?}");
    assert!(
        requests
            .iter()
            .any(|r| r["operation"] == "ListChangeOrders"),
        "looked for its change order: {requests:#?}"
    );
}
