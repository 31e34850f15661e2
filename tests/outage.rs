//! The API server stops in the middle of a run and comes back: nothing is sent twice, every object
//! ends, and each ends with what SAE did for it.
//!
//! kube-apiserver is stopped with SIGSTOP for 20 s (see `ControlPlane::stop_apiserver` for why
//! that kind of outage). It is shared by every test of a test binary, so these tests live in a
//! binary of their own and take turns.

mod support;

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use support::audit::{
    Planned, ambiguous_faults, audit_ledger, check_deadlines, check_outcomes, check_resolved,
    check_send_bound, phase_counts, plan, planned_app, seed, warm_up,
};
use support::world::{AK, SK, Setup, World, app, fast_retry, is_terminal, strings, tail};

/// One outage at a time: a stopped API server stops every world of this binary.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

const OUTAGE: Duration = Duration::from_secs(20);
const DEADLINE: Duration = Duration::from_secs(150);

/// 36 objects on 12 apps (three each, so the per-app queue is in play), a quota that spreads the
/// sends over half a minute, lost answers, two apps whose next change order fails; the API server
/// stops once a few sends have gone out. `leader_elect`: the controller runs with leader election
/// as deploy/ does (its one Lease, 15 s), so the outage outlasts the Lease; a replica that exits
/// is started again, as the kubelet would.
async fn outage(label: &str, leader_elect: bool) {
    let _turn = ONE_AT_A_TIME.lock().await;
    const APPS: usize = 12;
    const PER_APP: usize = 3;
    let mut rng = fastrand::Rng::with_seed(seed(label));
    let app_ids: Vec<String> = (0..APPS).map(|a| format!("app-{a}")).collect();
    let mut apps: Vec<Value> = app_ids.iter().map(|a| planned_app(a, PER_APP)).collect();
    apps.push(app("app-warm", &["i-1"]));
    let mut controller_args = strings(&[
        "--sae-timeout-seconds",
        "2",
        "--sae-requests-per-minute",
        "100",
    ]);
    if leader_elect {
        // deploy/'s flags and its one Lease (sae-system/sae-controller); no other test of this
        // binary elects a leader.
        controller_args.extend(strings(&[
            "--leader-elect",
            "--leader-election-namespace",
            "sae-system",
        ]));
    }
    let setup = Setup {
        simulator_args: strings(&[
            "--access-key",
            &format!("{AK}:{SK}"),
            "--change-order-seconds",
            "2",
            "--requests-per-minute",
            "120",
        ]),
        controller_args,
    };
    let mut w = World::start_with(label, apps, setup).await;
    // Lost answers come early here; the zone must be known before (see `warm_up`).
    let warm = warm_up(&w, "app-warm", "i-1").await;
    for a in &app_ids {
        w.fault(a, ambiguous_faults(PER_APP * 3, 0.2, &mut rng))
            .await;
    }
    for a in rng.choose_multiple(app_ids.iter(), 2) {
        w.fault(
            a,
            json!([{ "kind": "changeOrderResult", "status": 3, "errorMessage": "scripted failure" }]),
        )
        .await;
    }
    let planned = plan(label, &app_ids, PER_APP, &mut rng);
    let mut spec = fast_retry();
    spec["activeDeadlineSeconds"] = json!(DEADLINE.as_secs());
    let started = Instant::now();
    w.apply_all(planned.iter().map(|p| p.doc(&w, spec.clone())).collect());

    // Mid-run: a few sends out, most still to come.
    let aim = Instant::now() + Duration::from_secs(60);
    while w.delete_requests_total().await < 4 {
        assert!(Instant::now() < aim, "the controller sent too little");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_millis(rng.u64(0..2000))).await;
    let before = w.ledger_requests().await.len();
    let stopped_at = started.elapsed();
    let stopped = w.cp.stop_apiserver();
    tokio::time::sleep(OUTAGE).await;
    let during: Vec<Value> = w.ledger_requests().await.split_off(before);
    stopped.resume();

    // The kubelet's part: a replica that exited (it lost its Lease) is started again.
    let mut logs = String::new();
    let mut restarts = 0;
    let statuses = loop {
        if !w.controller.is_running() {
            restarts += 1;
            logs.push_str(&w.controller.logs());
            w.restart_controller();
        }
        let all = w.statuses().await;
        if all.values().all(is_terminal) {
            break all;
        }
        assert!(
            started.elapsed() < DEADLINE + Duration::from_secs(30),
            "{label}: not all terminal: {:?}\n--- controller log tail ---\n{}",
            phase_counts(&all),
            tail(&w.controller.logs(), 60)
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    let took = started.elapsed();
    logs.push_str(&w.controller.logs());
    let everything: Vec<Planned> = planned.iter().cloned().chain([warm]).collect();
    let ledger = w.sim.ledger().await;
    let audit = audit_ledger(&ledger, &everything).unwrap_or_else(|breach| panic!("{breach}"));
    let sends_during = during
        .iter()
        .filter(|r| r["operation"] == "DeleteInstances")
        .count();
    let failed_orders = ledger["deletions"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|d| d["finalStatus"].as_i64().is_some_and(|s| s != 2))
        .count();
    let withheld = logs.matches("DeleteInstances not sent").count();
    let mut breaches: Vec<String> = vec![];
    let send_bound_checked = match check_send_bound(&everything, &statuses, &audit) {
        Ok(n) => n,
        Err(e) => {
            breaches.push(format!("sent past SEND_BOUND:\n{e}"));
            0
        }
    };
    println!(
        "{label}: {} objects in {:.0} s, by phase/reason {:?}; API server stopped at {:.1} s for {} s, \
         meanwhile SAE got {} requests ({sends_during} DeleteInstances); {} sends, {} committed, {} unanswered, \
         {failed_orders} change orders failed; {withheld} sends withheld (logged); {restarts} restarts; \
         send bound checked on {send_bound_checked} objects",
        planned.len(),
        took.as_secs_f64(),
        phase_counts(&statuses),
        stopped_at.as_secs_f64(),
        OUTAGE.as_secs(),
        during.len(),
        audit.sends,
        audit.committed,
        audit.no_answer,
    );
    if let Err(e) = check_outcomes(&ledger, &everything, &statuses, &audit) {
        breaches.push(e);
    }
    if let Err(e) = check_resolved(&ledger, &planned, &statuses) {
        breaches.push(e);
    }
    if let Err(e) = check_deadlines(&w, &statuses, DEADLINE, Duration::from_secs(3)).await {
        breaches.push(format!("terminal after the deadline:\n{e}"));
    }
    assert!(
        breaches.is_empty(),
        "{label}:\n{}\n--- controller log tail ---\n{}",
        breaches.join("\n"),
        tail(&logs, 60)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_api_server_neither_duplicates_nor_strands_anything() {
    outage("outage", false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_api_server_with_leader_election_neither_duplicates_nor_strands_anything() {
    outage("outage-leader", true).await;
}
