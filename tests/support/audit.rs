//! The ledger's witness for the at-most-once suites (tests/at_most_once.rs, tests/outage.rs):
//! objects as planned, an audit of every DeleteInstances SAE received against guarantees 1 and 2,
//! and the assertions and seeded random plans the crash tests share.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use jiff::Timestamp;
use serde_json::{Value, json};

use super::world::{AK, SK, Setup, World, app, reason, strings};

/// How long after a send the controller may still take an unanswered DeleteInstances for executed:
/// `--sae-timeout-seconds` (2) plus the controller's 10 s margin.
pub const RESOLVE_AFTER: Duration = Duration::from_secs(12);

/// How long after its write-ahead (`lastAttemptTime`, kept to the second) a request may still leave
/// the controller (its `SEND_BOUND`). A lost attempt is proven not executed only once
/// `lastAttemptTime + 1 s + SEND_BOUND + RESOLVE_AFTER` has passed.
pub const SEND_BOUND: Duration = Duration::from_secs(5);

/// The setup of every world here: no quota, change orders of `change_order_seconds`, a 2 s SAE
/// client timeout.
pub fn setup(change_order_seconds: &str) -> Setup {
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
pub struct Planned {
    pub name: String,
    pub app: String,
    pub ids: Vec<String>,
}

impl Planned {
    pub fn new(name: &str, app: &str, ids: &[&str]) -> Self {
        Self {
            name: name.into(),
            app: app.into(),
            ids: strings(ids),
        }
    }

    pub fn doc(&self, w: &World, extra_spec: Value) -> Value {
        let ids: Vec<&str> = self.ids.iter().map(String::as_str).collect();
        w.object(&self.name, &self.app, &ids, extra_spec)
    }
}

/// What the ledger shows one object sent.
#[derive(Debug, Default)]
pub struct Sends {
    /// Its DeleteInstances requests, in order.
    pub all: Vec<Value>,
    /// Those SAE executed.
    pub committed: Vec<Value>,
}

/// Guarantees 1 and 2 as read from the ledger, plus counts for the report.
#[derive(Debug, Default)]
pub struct Audit {
    pub by_object: BTreeMap<String, Sends>,
    pub sends: usize,
    pub committed: usize,
    /// DeleteInstances answered by dropping the connection.
    pub no_answer: usize,
    /// DeleteInstances answered `Application.ChangerOrderRunning`.
    pub change_order_running: usize,
}

impl Audit {
    pub fn of(&self, name: &str) -> &Sends {
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
pub async fn audit(w: &World, planned: &[Planned]) -> Audit {
    audit_ledger(&w.sim.ledger().await, planned).unwrap_or_else(|breach| panic!("{breach}"))
}

/// [`audit`] on a ledger document (`GET /_sim/ledger`); Err describes the first breach found.
pub fn audit_ledger(ledger: &Value, planned: &[Planned]) -> Result<Audit, String> {
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
        .iter()
        // Deletions made in SAE's console (by the test) are no one's request.
        .filter(|d| d["source"] != "console")
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
/// once the resolve window has passed (proof that it was not executed). The ledger shows when a
/// request arrived, not when its write-ahead was made: a request may leave up to [`SEND_BOUND`]
/// after it, so `RESOLVE_AFTER` is all the gap between two sends must show.
pub fn assert_succeeded_once(name: &str, status: &Value, sends: &Sends) {
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
pub fn seconds_between(from: &Value, to: &Value) -> f64 {
    let from: Timestamp = from
        .as_str()
        .expect("a time")
        .parse()
        .expect("RFC 3339 time");
    let to: Timestamp = to.as_str().expect("a time").parse().expect("RFC 3339 time");
    to.duration_since(from).as_secs_f64()
}

/// The seed for this run's random choices: `SAE_TEST_SEED`, else the clock.
pub fn seed(test: &str) -> u64 {
    let seed = std::env::var("SAE_TEST_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| Timestamp::now().as_nanosecond() as u64);
    println!("{test}: seed {seed} (replay with SAE_TEST_SEED={seed})");
    seed
}

/// `count` objects per app, each naming 1–2 instances of its app, disjoint within the app.
pub fn plan(prefix: &str, apps: &[String], count: usize, rng: &mut fastrand::Rng) -> Vec<Planned> {
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
pub fn planned_app(app_id: &str, count: usize) -> Value {
    let ids: Vec<String> = (0..count * 2).map(|i| format!("i-{i}")).collect();
    let ids: Vec<&str> = ids.iter().map(String::as_str).collect();
    app(app_id, &ids)
}

/// DeleteInstances faults for one app: each of its next `calls` sends has probability `p` of being
/// executed and then answered by a dropped connection; the others pass unharmed (a zero-delay
/// `slow` fault, which answers exactly as without a fault).
pub fn ambiguous_faults(calls: usize, p: f64, rng: &mut fastrand::Rng) -> Value {
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
pub async fn assert_all_deleted_once(
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

pub fn phase_counts(statuses: &BTreeMap<String, Value>) -> BTreeMap<String, usize> {
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

/// A controller that has never seen SAE answer about one of its own change orders in a region does
/// not know the zone SAE writes change-order times in there, so it can neither adopt a change order
/// for a lost answer nor prove that one was not executed (it keeps looking, and ends
/// `OutcomeUnknown` at the deadline). A test whose first event is a lost answer, and that is about
/// resolving it, first lets one deletion in the same region go through: this object, on an app of
/// its own (`app_id` must hold `instance`), which must end Succeeded with `status.createTimeZone`
/// recorded. That is the behaviour under test, not a workaround: the zone is learned from SAE, and
/// kept in status across restarts. Returns the object, for the audit.
pub async fn warm_up(w: &World, app_id: &str, instance: &str) -> Planned {
    let warm = Planned::new(&format!("warm-up-{app_id}"), app_id, &[instance]);
    w.apply_all(vec![warm.doc(w, json!({}))]);
    let status = w.wait_terminal(&warm.name, Duration::from_secs(60)).await;
    assert_eq!(
        (status["phase"].as_str(), reason(&status)),
        (Some("Succeeded"), "Succeeded"),
        "the warm-up deletion: {status:#}"
    );
    assert!(
        status["createTimeZone"].is_string(),
        "the warm-up deletion taught the controller no zone: {status:#}"
    );
    warm
}

/// The ledger's executed deletion of exactly `object`'s instances, if SAE executed one.
pub fn deletion_of<'a>(ledger: &'a Value, object: &Planned) -> Option<&'a Value> {
    let wanted: BTreeSet<&str> = object.ids.iter().map(String::as_str).collect();
    ledger["deletions"].as_array()?.iter().find(|d| {
        d["appId"] == object.app.as_str()
            && d["source"].as_str().is_none_or(|s| s == "api")
            && d["instanceIds"].as_array().is_some_and(|ids| {
                ids.iter()
                    .filter_map(Value::as_str)
                    .collect::<BTreeSet<_>>()
                    == wanted
            })
    })
}

/// What each final status claims, checked against SAE's own record of what it executed:
/// - `Succeeded`/`Succeeded` names the change order that deleted this object's instances, and that
///   change order ended with status 2;
/// - `Failed`/`ChangeOrderFailed` names the change order SAE executed for it, which did not end 2;
/// - no send after the committed one (a resend after a commit is what a failed change order,
///   whose instances stay, would accept);
/// - a reason that claims nothing about SAE (`OutcomeUnknown`, `DeadlineExceeded`, ...) is fine.
///   `AlreadyDeleted` is not, when nothing but the controller deletes: its instances went by its own
///   change order, which it then failed to name.
///
/// Err lists every breach.
pub fn check_outcomes(
    ledger: &Value,
    planned: &[Planned],
    statuses: &BTreeMap<String, Value>,
    audit: &Audit,
) -> Result<(), String> {
    let mut breaches = vec![];
    // The simulator's own witness: instances that more than one API deletion named.
    if let Some(repeated) = ledger["repeatedDeletions"].as_array()
        && !repeated.is_empty()
    {
        breaches.push(format!("instances deleted twice: {repeated:#?}"));
    }
    for object in planned {
        let name = &object.name;
        let Some(status) = statuses.get(name) else {
            breaches.push(format!("{name}: vanished"));
            continue;
        };
        let sends = audit.of(name);
        if let Some(first) = sends.committed.first()
            && sends.all.last() != Some(first)
        {
            breaches.push(format!(
                "{name}: sent again after SAE executed a send: {:#?}",
                sends.all
            ));
        }
        let deletion = deletion_of(ledger, object);
        let named = status["changeOrderId"].as_str();
        let executed = deletion.and_then(|d| d["changeOrderId"].as_str());
        let final_status = deletion.and_then(|d| d["finalStatus"].as_i64());
        match (status["phase"].as_str().unwrap_or("-"), reason(status)) {
            ("Succeeded", "Succeeded") => {
                if named.is_none() || named != executed || final_status != Some(2) {
                    breaches.push(format!(
                        "{name}: Succeeded naming change order {named:?}, but SAE's deletion of its instances \
                         is {deletion:?}"
                    ));
                }
            }
            ("Failed", "ChangeOrderFailed") => {
                if named.is_none() || named != executed || final_status == Some(2) {
                    breaches.push(format!(
                        "{name}: ChangeOrderFailed naming {named:?}, but SAE's deletion of its instances is \
                         {deletion:?}"
                    ));
                }
            }
            ("Succeeded", "AlreadyDeleted") => breaches.push(format!(
                "{name}: AlreadyDeleted, though only the controller deleted anything (SAE's deletion of \
                 its instances: {deletion:?})"
            )),
            ("Succeeded" | "Failed", _) => {}
            (phase, why) => breaches.push(format!("{name}: not terminal: {phase}/{why}")),
        }
    }
    if breaches.is_empty() {
        Ok(())
    } else {
        Err(breaches.join("\n"))
    }
}

/// Every object of `statuses` was terminal by `creationTimestamp + deadline` (plus `slack`: status
/// times have one-second resolution and the last reconcile needs a moment). Err names the late ones.
pub async fn check_deadlines(
    w: &World,
    statuses: &BTreeMap<String, Value>,
    deadline: Duration,
    slack: Duration,
) -> Result<(), String> {
    let objects = w.api.list(&Default::default()).await.expect("list objects");
    let mut late = vec![];
    for obj in objects.items {
        let name = obj.metadata.name.clone().unwrap_or_default();
        let Some(status) = statuses.get(&name) else {
            continue;
        };
        let created = obj
            .metadata
            .creation_timestamp
            .expect("creationTimestamp")
            .0;
        let completed: Option<Timestamp> = status["completionTime"]
            .as_str()
            .and_then(|t| t.parse().ok());
        let limit = created + jiff::SignedDuration::try_from(deadline + slack).unwrap();
        match completed {
            Some(t) if t <= limit => {}
            other => late.push(format!("{name}: created {created}, completed {other:?}")),
        }
    }
    if late.is_empty() {
        Ok(())
    } else {
        Err(late.join("\n"))
    }
}

/// Where nothing is left unclear (no one but the controller touches the apps, the zone is known,
/// nothing hit its deadline), each object must come out with exactly what SAE did for it:
/// `Succeeded` when its deletion ended with status 2, `Failed`/`ChangeOrderFailed` when it ended
/// otherwise. An object without an executed deletion is a breach too. Err lists every breach.
pub fn check_resolved(
    ledger: &Value,
    planned: &[Planned],
    statuses: &BTreeMap<String, Value>,
) -> Result<(), String> {
    let mut breaches = vec![];
    for object in planned {
        let status = statuses.get(&object.name).unwrap_or(&Value::Null);
        let got = (status["phase"].as_str().unwrap_or("-"), reason(status));
        let want = match deletion_of(ledger, object).map(|d| d["finalStatus"].as_i64()) {
            Some(Some(2)) => ("Succeeded", "Succeeded"),
            Some(Some(_)) => ("Failed", "ChangeOrderFailed"),
            Some(None) => ("(a final phase)", "its change order never ended"),
            None => ("(a final phase)", "SAE executed no deletion for it"),
        };
        if got != want {
            breaches.push(format!(
                "{}: {got:?}, but SAE's record calls for {want:?}: {}",
                object.name, status["message"]
            ));
        }
    }
    if breaches.is_empty() {
        Ok(())
    } else {
        Err(breaches.join("\n"))
    }
}

/// A DeleteInstances leaves within `SEND_BOUND` of its write-ahead, or not at all. Seen from the
/// ledger: where every recorded attempt of an object was sent (`status.attempts` equals its sends;
/// an attempt written ahead and never sent, or withheld and taken back, breaks the equality and
/// the check says nothing), its last send arrived no later than `lastAttemptTime` (rounded down to
/// the second) + 1 s + [`SEND_BOUND`]. Err names the late ones.
pub fn check_send_bound(
    planned: &[Planned],
    statuses: &BTreeMap<String, Value>,
    audit: &Audit,
) -> Result<usize, String> {
    let mut checked = 0;
    let mut late = vec![];
    for object in planned {
        let (Some(status), Some(last)) = (
            statuses.get(&object.name),
            audit.of(&object.name).all.last(),
        ) else {
            continue;
        };
        let sends = audit.of(&object.name).all.len() as u64;
        if status["attempts"].as_u64() != Some(sends) || status["lastAttemptTime"].is_null() {
            continue;
        }
        checked += 1;
        let gap = seconds_between(&status["lastAttemptTime"], &last["time"]);
        if gap > 1.0 + SEND_BOUND.as_secs_f64() {
            late.push(format!(
                "{}: sent {gap:.1} s after its write-ahead at {}",
                object.name, status["lastAttemptTime"]
            ));
        }
    }
    if late.is_empty() {
        Ok(checked)
    } else {
        Err(late.join("\n"))
    }
}

/// SIGKILLs the controller `kills` times, each after a pause drawn from `pause` (ms), and starts
/// a new one up to a second later; the killed processes' logs go to `logs`. Returns when each
/// kill came, in seconds since `started`, for the report.
pub async fn kill_and_restart(
    w: &mut World,
    rng: &mut fastrand::Rng,
    kills: usize,
    pause: std::ops::Range<u64>,
    started: std::time::Instant,
    logs: &mut String,
) -> Vec<String> {
    let mut kill_times = Vec::new();
    for _ in 0..kills {
        tokio::time::sleep(Duration::from_millis(rng.u64(pause.clone()))).await;
        logs.push_str(&w.controller.logs());
        w.controller.kill();
        kill_times.push(format!("{:.1}", started.elapsed().as_secs_f64()));
        tokio::time::sleep(Duration::from_millis(rng.u64(0..1000))).await;
        w.restart_controller();
    }
    kill_times
}
