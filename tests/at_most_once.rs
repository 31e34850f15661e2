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
//! a lost answer is proven "not executed" 18 s after its write-ahead (1 s of rounding, the 5 s a
//! request may take to leave, the 2 s timeout and a 10 s margin). The crash and HA tests draw their
//! random choices from a seed they print; `SAE_TEST_SEED=N` replays one.
//!
//! A controller learns the zone of SAE's change-order times from SAE's answers about its own change
//! orders, and cannot resolve a lost answer before it knows it (see `support::audit::warm_up`). Tests
//! that put many objects on many apps at once rely on the ones answered normally to teach it; the
//! ones whose first event is a lost answer start with a warm-up deletion, and say so.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use jiff::{SignedDuration, Timestamp};
use serde_json::{Value, json};
use support::audit::{
    Planned, RESOLVE_AFTER, ambiguous_faults, assert_all_deleted_once, assert_succeeded_once,
    audit, audit_ledger, check_deadlines, check_outcomes, check_resolved, check_send_bound,
    kill_and_restart, phase_counts, plan, planned_app, seconds_between, seed, setup, warm_up,
};
use support::world::{
    AK, SK, Setup, World, app, fast_retry, is_terminal, reason, secret, strings, tail,
};

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
    let mut apps: Vec<Value> = cases
        .iter()
        .map(|(c, _)| app(&format!("app-{c}"), &["i-1", "i-2"]))
        .collect();
    apps.push(app("app-warm", &["i-1"]));
    let w = World::start_with("matrix", apps, setup("1")).await;
    // Most cases start with a lost answer; each must be resolved on its own merits, not thanks to
    // a neighbour that happened to be answered first: one deletion teaches the zone beforehand.
    let warm = warm_up(&w, "app-warm", "i-1").await;
    let planned: Vec<Planned> = cases
        .iter()
        .map(|(c, _)| Planned::new(c, &format!("app-{c}"), &["i-1"]))
        .collect();
    for ((_, faults), object) in cases.iter().zip(&planned) {
        w.fault(&object.app, faults.clone()).await;
    }
    w.apply_all(planned.iter().map(|p| p.doc(&w, fast_retry())).collect());

    let statuses = w.wait_all_terminal(Duration::from_secs(90)).await;
    let everything: Vec<Planned> = planned.iter().cloned().chain([warm]).collect();
    let audit = audit(&w, &everything).await;
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

// ---- Crash test under quota pressure ------------------------------------------------------------

/// Many objects at once, each on its own app, behind a client-side quota low enough that sends
/// queue for tens of seconds: the token comes first, then the write-ahead, the fence and the send,
/// so a crash can fall anywhere in that line. A share of the sends are executed and then lose
/// their answer, a share of the change orders fail (their instances stay, so a resend would be
/// accepted and the ledger would show it), and the controller is SIGKILLed several times.
///
/// The ones answered normally teach the controller the zone of SAE's times; the warm-up makes
/// that certain before the first lost answer, whatever the seed.
///
/// `zone` is what SAE writes CreateTime in (`--create-time-zone`); `learned` is what the warm-up
/// must record in `status.createTimeZone` for it. The controller is told nothing of it.
async fn crash_under_quota(label: &str, zone: &str, learned: &str) {
    const APPS: usize = 40;
    const KILLS: usize = 5;
    const DEADLINE: Duration = Duration::from_secs(150);
    let mut rng = fastrand::Rng::with_seed(seed(label));
    let app_ids: Vec<String> = (0..APPS).map(|a| format!("app-{a}")).collect();
    let mut apps: Vec<Value> = app_ids.iter().map(|a| planned_app(a, 1)).collect();
    apps.push(app("app-warm", &["i-1"]));
    // SAE's quota a bit above the controller's: the controller plans, SAE only backs it up.
    let mut simulator_args = strings(&[
        "--access-key",
        &format!("{AK}:{SK}"),
        "--change-order-seconds",
        "2",
        "--requests-per-minute",
        "120",
    ]);
    simulator_args.extend(strings(&["--create-time-zone", zone]));
    let quota = Setup {
        simulator_args,
        controller_args: strings(&[
            "--sae-timeout-seconds",
            "2",
            "--sae-requests-per-minute",
            "100",
        ]),
    };
    let mut w = World::start_with(label, apps, quota).await;
    let warm = warm_up(&w, "app-warm", "i-1").await;
    assert_eq!(
        w.status(&warm.name).await["createTimeZone"],
        learned,
        "the zone learned from SAE's times written in {zone}"
    );
    let mut failing = BTreeSet::new();
    for a in &app_ids {
        let mut faults = ambiguous_faults(3, 0.25, &mut rng);
        if rng.f64() < 0.2 {
            failing.insert(a.clone());
            faults.as_array_mut().unwrap().push(json!(
                { "kind": "changeOrderResult", "status": 3, "errorMessage": "instance stuck in draining (scripted)" }
            ));
        }
        w.fault(a, faults).await;
    }
    let planned = plan(label, &app_ids, 1, &mut rng);
    let mut spec = fast_retry();
    spec["activeDeadlineSeconds"] = json!(DEADLINE.as_secs());
    let started = Instant::now();
    w.apply_all(planned.iter().map(|p| p.doc(&w, spec.clone())).collect());

    let mut logs = String::new();
    // Spread over the queue of sends (about 25 s at this quota) and the polls and look-ups that
    // follow it.
    let kill_times =
        kill_and_restart(&mut w, &mut rng, KILLS, 2000..12000, started, &mut logs).await;
    let statuses = w
        .wait_all_terminal(DEADLINE + Duration::from_secs(30))
        .await;
    let took = started.elapsed();
    logs.push_str(&w.controller.logs());
    let everything: Vec<Planned> = planned.iter().cloned().chain([warm]).collect();
    let ledger = w.sim.ledger().await;
    let audit = audit_ledger(&ledger, &everything).unwrap_or_else(|breach| panic!("{breach}"));
    let failed_orders = ledger["deletions"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|d| d["finalStatus"].as_i64().is_some_and(|s| s != 2))
        .count();
    let throttled = ledger["requests"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| {
            r["code"]
                .as_str()
                .is_some_and(|c| c.starts_with("Throttling"))
        })
        .count();
    let not_sent = logs.matches("DeleteInstances not sent").count();
    println!(
        "{label}: {} objects on {APPS} apps in {:.0} s, by phase/reason {:?}; {} DeleteInstances sends, {} committed, \
         {} unanswered, {failed_orders} change orders failed ({} apps scripted to fail), {throttled} calls throttled \
         by SAE, {not_sent} sends withheld (logged); {KILLS} kills at {kill_times:?} s",
        planned.len(),
        took.as_secs_f64(),
        phase_counts(&statuses),
        audit.sends,
        audit.committed,
        audit.no_answer,
        failing.len(),
    );
    assert_eq!(statuses.len(), everything.len());
    assert!(
        audit.no_answer > 0,
        "no lost answer was exercised; try another seed"
    );
    let mut breaches: Vec<String> = vec![];
    if let Err(e) = check_outcomes(&ledger, &everything, &statuses, &audit) {
        breaches.push(e);
    }
    if let Err(e) = check_deadlines(&w, &statuses, DEADLINE, Duration::from_secs(3)).await {
        breaches.push(format!("terminal after the deadline:\n{e}"));
    }
    // Here nothing is unclear in the end: one object per app, no one else touching the apps, the
    // zone known. Each object must come out with what SAE did for it.
    for object in &planned {
        let status = &statuses[&object.name];
        let want = if failing.contains(&object.app) {
            ("Failed", "ChangeOrderFailed")
        } else {
            ("Succeeded", "Succeeded")
        };
        let got = (status["phase"].as_str().unwrap_or("-"), reason(status));
        if got != want {
            breaches.push(format!(
                "{}: {got:?}, expected {want:?}: {}",
                object.name, status["message"]
            ));
        }
    }
    assert!(
        breaches.is_empty(),
        "{label}:\n{}\n--- controller log tail ---\n{}",
        breaches.join("\n"),
        tail(&logs, 60)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_under_quota_pressure_never_sends_twice_and_reports_what_sae_did() {
    crash_under_quota("quota-crash", "+08:00", "+08:00").await;
}

/// The same with SAE writing CreateTime in UTC: nothing in the controller may assume China time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_under_quota_pressure_with_create_time_in_utc() {
    crash_under_quota("quota-crash-utc", "UTC", "+00:00").await;
}

// ---- Leader election -----------------------------------------------------------------------------

/// deploy/'s RBAC lets the controller hold one Lease, `sae-system/sae-controller`, so the tests
/// that elect a leader take turns with it. A Lease left by the previous test's (killed) leader
/// expires within its 15 s; each test allows for that wait.
static ONE_LEASE: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

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
    let _turn = ONE_LEASE.lock().await;
    let mut ha = setup("2");
    // The Lease deploy/ grants: sae-controller in sae-system, the only one the controller's
    // ServiceAccount may renew.
    let lease = "sae-controller";
    ha.controller_args.extend(strings(&[
        "--leader-elect",
        "--leader-election-namespace",
        "sae-system",
        // Long enough for the fence: a leader sends only while its Lease stays valid for the
        // controller's SEND_BOUND (5 s) more, and it renews `lease / 3 + 1` s before expiry, so a
        // lease of 12 s or less leaves part of every renewal cycle (4 s: all of it) unable to send.
        // 15 s is the default, and what deploy/ runs.
        "--leader-election-lease-seconds",
        "15",
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

/// A rollout of the default install with leader election: the new pod starts while the old one
/// works, both with the flags deploy/ gives them (`--leader-elect`, the Lease in `sae-system`,
/// its default 15 s), and the old one is then stopped the way the kubelet stops it: SIGTERM, and
/// SIGKILL after the Deployment's 30 s grace period. Sends queue on the quota, some answers are
/// lost, so the old leader leaves work at every stage.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rollout_with_leader_election_never_sends_twice_and_ends_everything() {
    const APPS: usize = 8;
    const PER_APP: usize = 3;
    const DEADLINE: Duration = Duration::from_secs(150);
    let mut rng = fastrand::Rng::with_seed(seed("rollout"));
    let app_ids: Vec<String> = (0..APPS).map(|a| format!("app-{a}")).collect();
    let apps: Vec<Value> = app_ids.iter().map(|a| planned_app(a, PER_APP)).collect();
    let _turn = ONE_LEASE.lock().await;
    let setup = Setup {
        simulator_args: strings(&[
            "--access-key",
            &format!("{AK}:{SK}"),
            "--change-order-seconds",
            "2",
            "--requests-per-minute",
            "120",
        ]),
        controller_args: strings(&[
            "--sae-timeout-seconds",
            "2",
            "--sae-requests-per-minute",
            "60",
            "--leader-elect",
            "--leader-election-namespace=sae-system",
        ]),
    };
    let mut w = World::start_with("rollout", apps, setup).await;
    assert!(
        w.controller
            .wait_for_log("became leader", Duration::from_secs(40)),
        "the first replica did not lead:\n{}",
        tail(&w.controller.logs(), 30)
    );
    // Many apps, each first send answered or not at random: the ones answered teach the zone.
    for a in &app_ids {
        w.fault(a, ambiguous_faults(PER_APP * 3, 0.2, &mut rng))
            .await;
    }
    let planned = plan("rollout", &app_ids, PER_APP, &mut rng);
    let mut spec = fast_retry();
    spec["activeDeadlineSeconds"] = json!(DEADLINE.as_secs());
    let started = Instant::now();
    w.apply_all(planned.iter().map(|p| p.doc(&w, spec.clone())).collect());

    // The new pod comes up while the old one works.
    tokio::time::sleep(Duration::from_millis(rng.u64(1000..3000))).await;
    let new = w.spawn_controller(&[], &[]);
    let deadline = Instant::now() + Duration::from_secs(60);
    while w.delete_requests_total().await < 6 {
        assert!(Instant::now() < deadline, "the old leader sent too little");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    tokio::time::sleep(Duration::from_millis(rng.u64(0..1500))).await;
    let open_at_stop = w
        .statuses()
        .await
        .values()
        .filter(|s| !is_terminal(s))
        .count();
    let stopping = Timestamp::now();
    let graceful = w.controller.terminate(Duration::from_secs(30));
    if !graceful {
        w.controller.kill();
    }
    let stopped_at = Timestamp::now();
    let old_log = w.controller.logs();
    assert!(
        new.wait_for_log("became leader", Duration::from_secs(40)),
        "the new replica did not take over:\n{}",
        tail(&new.logs(), 30)
    );
    let took_over = log_time(&new.logs(), "became leader").expect("time of `became leader`");

    let statuses = w
        .wait_all_terminal(DEADLINE + Duration::from_secs(30))
        .await;
    let new_log = new.logs();
    let ledger = w.sim.ledger().await;
    let audit = audit_ledger(&ledger, &planned).unwrap_or_else(|breach| panic!("{breach}"));
    let mut breaches: Vec<String> = vec![];
    let send_bound_checked = check_send_bound(&planned, &statuses, &audit).unwrap_or_else(|e| {
        breaches.push(format!("sent past SEND_BOUND:\n{e}"));
        0
    });
    println!(
        "rollout: {} objects in {:.0} s, by phase/reason {:?}; {open_at_stop} open when the old leader got SIGTERM; \
         it {} in {:.1} s; the new one led {:.1} s after that; {} sends, {} committed, {} unanswered; send bound \
         checked on {send_bound_checked} objects",
        planned.len(),
        started.elapsed().as_secs_f64(),
        phase_counts(&statuses),
        if graceful {
            "exited"
        } else {
            "was SIGKILLed after 30 s"
        },
        stopped_at.duration_since(stopping).as_secs_f64(),
        took_over.duration_since(stopped_at).as_secs_f64(),
        audit.sends,
        audit.committed,
        audit.no_answer,
    );
    assert!(
        open_at_stop > 0,
        "the old leader finished everything before it was stopped"
    );
    if let Err(e) = check_outcomes(&ledger, &planned, &statuses, &audit) {
        breaches.push(e);
    }
    if let Err(e) = check_resolved(&ledger, &planned, &statuses) {
        breaches.push(e);
    }
    if let Err(e) = check_deadlines(&w, &statuses, DEADLINE, Duration::from_secs(3)).await {
        breaches.push(format!("terminal after the deadline:\n{e}"));
    }
    // One actor at a time: the new replica sent nothing before it led, and SAE heard nothing
    // between the old one's end and the takeover.
    if new_log
        .find("sending DeleteInstances")
        .is_some_and(|at| at < new_log.find("became leader").unwrap())
    {
        breaches.push("the new replica sent before it led".into());
    }
    let grace = SignedDuration::from_millis(500);
    for request in ledger["requests"].as_array().unwrap() {
        let at: Timestamp = request["time"].as_str().unwrap().parse().unwrap();
        if at > stopped_at + grace && at < took_over - grace {
            breaches.push(format!(
                "SAE heard a request at {at}, after the old leader ended ({stopped_at}) and before the new one \
                 led ({took_over}): {request}"
            ));
        }
    }
    assert!(
        breaches.is_empty(),
        "rollout:\n{}\n--- old leader log tail ---\n{}\n--- new leader log tail ---\n{}",
        breaches.join("\n"),
        tail(&old_log, 40),
        tail(&new_log, 40)
    );
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

/// A send waits for its quota token before anything is written, and the object may be deleted
/// meanwhile: the token, when it comes, must not carry a DeleteInstances for it. Three objects
/// on three apps queue on one AccessKey at 12 calls per minute (a token every 5 s); the victim
/// comes after them, so it is certainly waiting when it is deleted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_object_deleted_while_its_send_waits_for_quota_is_never_sent() {
    let apps: Vec<Value> = ["app-a", "app-b", "app-c", "app-victim"]
        .iter()
        .map(|a| app(a, &["i-1", "i-2"]))
        .collect();
    let mut slow = setup("1");
    slow.controller_args = strings(&[
        "--sae-timeout-seconds",
        "2",
        "--sae-requests-per-minute",
        "12",
    ]);
    let w = World::start_with("quotadelete", apps, slow).await;
    let ahead: Vec<Planned> = ["a", "b", "c"]
        .iter()
        .map(|n| Planned::new(n, &format!("app-{n}"), &["i-1"]))
        .collect();
    w.apply_all(ahead.iter().map(|p| p.doc(&w, json!({}))).collect());
    let deadline = Instant::now() + Duration::from_secs(30);
    while w.delete_requests_total().await == 0 {
        assert!(Instant::now() < deadline, "nothing was sent");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Two sends are ahead of it, 5 s apart, then their polls: its token is 10 s or more away.
    let victim = Planned::new("victim", "app-victim", &["i-1", "i-2"]);
    w.apply_all(vec![victim.doc(&w, json!({}))]);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let before = w.delete_requests("app-victim").await;
    assert!(
        before.is_empty(),
        "the victim was sent before the test could delete it: {before:#?}"
    );
    let out = w.kubectl(&["delete", "saedel", "victim", "--wait=true", "--timeout=10s"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let statuses = w.wait_all_terminal(Duration::from_secs(90)).await;
    // Past the moment its token came (the objects ahead were sent, and polled, meanwhile), and a
    // few seconds more for anything late to arrive.
    tokio::time::sleep(Duration::from_secs(6)).await;
    let ledger = w.sim.ledger().await;
    let everything: Vec<Planned> = ahead.iter().cloned().chain([victim.clone()]).collect();
    let audit = audit_ledger(&ledger, &everything).unwrap_or_else(|breach| panic!("{breach}"));
    let logs = w.controller.logs();
    println!(
        "quota delete: {} sends for the objects ahead, {} for the deleted one; the controller logged the \
         withheld send: {}",
        audit.sends - audit.of("victim").all.len(),
        audit.of("victim").all.len(),
        logs.contains("object deleted while waiting for quota")
    );
    assert!(
        audit.of("victim").all.is_empty()
            && w.sim.admin_get("/_sim/apps/app-victim").await["groups"]
                .to_string()
                .contains("\"i-1\""),
        "a DeleteInstances was sent for an object deleted while it waited: {:#?}",
        audit.of("victim").all
    );
    for object in &ahead {
        assert_succeeded_once(
            &object.name,
            &statuses[&object.name],
            audit.of(&object.name),
        );
    }
}

// ---- Someone else's change orders -----------------------------------------------------------------

/// Someone deletes another instance of the same app in SAE's console inside the window of a lost
/// answer. ListChangeOrders names no instances, so the console's change order looks like the lost
/// attempt's; the instances tell them apart, and the object must never report Succeeded with the
/// console's change order while its own instances still run.
///
/// - `lost-unexecuted`: our DeleteInstances is answered 500 and not executed; a console
///   CoDeleteInstances of i-2 starts a second later and runs 3 s. Ours is proven not executed and
///   sent again.
/// - `lost-executed`: a console CoDeleteInstances of i-3 ran just before our send (inside the
///   window, which opens before the write-ahead to allow for SAE's clock); ours is executed and its
///   answer lost. Once ours is done, both are finished deletions and none of our instances runs, so
///   nothing SAE shows tells them apart: the object may adopt its own, or end `OutcomeUnknown` at
///   its deadline (what the controller does today); never Succeeded with the console's.
/// - `lost-restart`: as the first, with a console CoRestartInstances, which deletes nothing.
///
/// Every first event is a lost answer: the warm-up teaches the zone first (see `warm_up`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_console_deletion_in_the_window_of_a_lost_answer_is_never_taken_for_ours() {
    const DEADLINE: u64 = 60;
    let cases = ["lost-unexecuted", "lost-executed", "lost-restart"];
    let mut apps: Vec<Value> = cases
        .iter()
        .map(|c| app(&format!("app-{c}"), &["i-1", "i-2", "i-3"]))
        .collect();
    apps.push(app("app-warm", &["i-1"]));
    let w = World::start_with("console", apps, setup("2")).await;
    let warm = warm_up(&w, "app-warm", "i-1").await;
    let planned: Vec<Planned> = cases
        .iter()
        .map(|c| Planned::new(c, &format!("app-{c}"), &["i-1"]))
        .collect();
    let console = |app_id: String, body: Value| {
        let sim = &w.sim;
        async move {
            sim.admin_post(&format!("/_sim/apps/{app_id}/change-orders"), body)
                .await["changeOrderId"]
                .as_str()
                .expect("changeOrderId")
                .to_string()
        }
    };
    let mut console_orders: BTreeMap<&str, String> = BTreeMap::new();
    // lost-executed: the console's deletion is done just before ours is sent.
    let before = console(
        "app-lost-executed".into(),
        json!({ "coTypeCode": "CoDeleteInstances", "instanceIds": ["i-3"], "seconds": 0.5 }),
    )
    .await;
    console_orders.insert("lost-executed", before);
    tokio::time::sleep(Duration::from_secs(1)).await;
    w.fault(
        "app-lost-unexecuted",
        json!([{ "kind": "http500", "commit": false }]),
    )
    .await;
    w.fault(
        "app-lost-restart",
        json!([{ "kind": "http500", "commit": false }]),
    )
    .await;
    w.fault("app-lost-executed", json!([{ "kind": "ambiguous" }]))
        .await;
    let mut spec = fast_retry();
    spec["activeDeadlineSeconds"] = json!(DEADLINE);
    w.apply_all(planned.iter().map(|p| p.doc(&w, spec.clone())).collect());

    // The console's change orders of the other two, a second after the lost sends.
    let deadline = Instant::now() + Duration::from_secs(30);
    for (case, body) in [
        (
            "lost-unexecuted",
            json!({ "coTypeCode": "CoDeleteInstances", "instanceIds": ["i-2"], "afterSeconds": 1, "seconds": 3 }),
        ),
        (
            "lost-restart",
            json!({ "coTypeCode": "CoRestartInstances", "afterSeconds": 1, "seconds": 3 }),
        ),
    ] {
        let app_id = format!("app-{case}");
        while w.delete_requests(&app_id).await.is_empty() {
            assert!(Instant::now() < deadline, "{case}: nothing was sent");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        console_orders.insert(case, console(app_id, body).await);
    }

    // Watch every status until all are final: none may ever name a console change order.
    let give_up = Instant::now() + Duration::from_secs(DEADLINE + 10);
    let statuses = loop {
        let all = w.statuses().await;
        for (case, co) in &console_orders {
            assert_ne!(
                all[*case]["changeOrderId"],
                co.as_str(),
                "{case} named the console's change order: {:#}",
                all[*case]
            );
        }
        if all.values().all(is_terminal) {
            break all;
        }
        assert!(
            Instant::now() < give_up,
            "not all terminal: {all:#?}\n--- controller log tail ---\n{}",
            tail(&w.controller.logs(), 40)
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    let ledger = w.sim.ledger().await;
    let everything: Vec<Planned> = planned.iter().cloned().chain([warm]).collect();
    let audit = audit_ledger(&ledger, &everything).unwrap_or_else(|breach| panic!("{breach}"));
    println!(
        "console: {:?}; lost-executed ended {}/{}; {} sends, {} committed; console change orders \
         {console_orders:?}",
        phase_counts(&statuses),
        statuses["lost-executed"]["phase"],
        reason(&statuses["lost-executed"]),
        audit.sends,
        audit.committed
    );
    let mut breaches = vec![];
    if let Err(e) = check_outcomes(&ledger, &everything, &statuses, &audit) {
        breaches.push(e);
    }
    let (ambiguous, clear): (Vec<Planned>, Vec<Planned>) = planned
        .iter()
        .cloned()
        .partition(|p| p.name == "lost-executed");
    if let Err(e) = check_resolved(&ledger, &clear, &statuses) {
        breaches.push(e);
    }
    for object in &ambiguous {
        let status = &statuses[&object.name];
        let got = (status["phase"].as_str().unwrap_or("-"), reason(status));
        if ![("Succeeded", "Succeeded"), ("Failed", "OutcomeUnknown")].contains(&got) {
            breaches.push(format!("{}: {got:?}: {status:#}", object.name));
        }
    }
    for object in &planned {
        let sends = audit.of(&object.name).all.len();
        let want = if object.name == "lost-executed" { 1 } else { 2 };
        if sends != want {
            breaches.push(format!("{}: {sends} sends, expected {want}", object.name));
        }
        let groups =
            w.sim.admin_get(&format!("/_sim/apps/{}", object.app)).await["groups"].to_string();
        if groups.contains("\"i-1\"") {
            breaches.push(format!("{}: i-1 still runs: {groups}", object.name));
        }
    }
    assert!(
        breaches.is_empty(),
        "{}\n--- controller log tail ---\n{}",
        breaches.join("\n"),
        tail(&w.controller.logs(), 40)
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
        vec![app("app-hold", &["i-1", "i-2"]), app("app-warm", &["i-1"])],
        setup("1"),
    )
    .await;
    // The first controller is killed before it hears SAE about this object's change order, so
    // it is a deletion in the region that teaches it the zone of SAE's times (see `warm_up`).
    warm_up(&w, "app-warm", "i-1").await;
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
        .filter(|r| r["operation"] == "DeleteInstances" && r["params"]["AppId"] == "app-hold")
        .count();
    assert_eq!(sends, 1, "never sent again: {requests:#?}");
    assert!(
        requests
            .iter()
            .any(|r| r["operation"] == "ListChangeOrders"),
        "looked for its change order: {requests:#?}"
    );
}
