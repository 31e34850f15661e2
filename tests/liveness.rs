//! The other half of the promise: every object ends, and its status tells the truth, when the
//! quota is short, SAE's lists lag its writes, or SAE's clock is off ours. Real binaries (a
//! kube-apiserver + etcd, `sae-controller`, `sae-simulator`), the simulator's ledger as witness.
//!
//! - Quota pressure: many objects on many apps at once behind a quota that needs minutes for all
//!   their calls, lost answers, failing change orders, SIGKILLs, and no warm-up: the zone of SAE's
//!   times must be learned while looks for lost answers compete with the polls that teach it.
//!   (Strict priority for those looks once starved every poll: a livelock.) The full size
//!   (80 objects, 60 calls a minute; 20 % and 40 % of the answers lost) is `full_size_quota_pressure*`,
//!   ignored by `make test` and run by `make liveness`.
//! - Lagging lists: ListChangeOrders and DescribeChangeOrder show a change order seconds late and
//!   change orders prepare before they execute; crashes then must neither adopt a neighbour's
//!   change order nor take an own deletion for `AlreadyDeleted`.
//! - A skewed SAE clock, 40 s ahead and behind: lost answers (executed, and not) resolve long before
//!   the deadline and the objects queued behind them go on.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use support::audit::{
    Planned, ambiguous_faults, audit_ledger, check_deadlines, check_outcomes, check_resolved,
    deletion_of, kill_and_restart, phase_counts, plan, planned_app, seed, setup,
};
use support::world::{AK, SK, Setup, World, fast_retry, reason, strings, tail};

/// One run under quota pressure.
struct Pressure {
    label: &'static str,
    apps: usize,
    /// The controller's `--sae-requests-per-minute` (the simulator allows a little more).
    per_minute: u32,
    lost: f64,
    failing: f64,
    change_order_seconds: &'static str,
    kills: usize,
    /// Every object must be terminal this long after creation; the deadline is far beyond.
    finish_within: Duration,
}

/// Calls per SAE operation, from the ledger.
fn calls_by_operation(ledger: &Value) -> BTreeMap<String, usize> {
    let mut calls = BTreeMap::new();
    for r in ledger["requests"].as_array().into_iter().flatten() {
        let op = r["operation"].as_str().unwrap_or("?").to_string();
        *calls.entry(op).or_default() += 1;
    }
    calls
}

/// What every final status claims, against SAE's ledger: no one else touches these apps and no
/// object reaches its deadline, so each must say exactly what SAE did for it (`Succeeded` naming
/// the change order that deleted its instances, `ChangeOrderFailed` naming the one that failed;
/// never `Failed` for a deletion SAE executed, never `AlreadyDeleted`), and nothing is sent again
/// after a commit.
fn truth_breaches(
    ledger: &Value,
    planned: &[Planned],
    statuses: &BTreeMap<String, Value>,
    audit: &support::audit::Audit,
) -> Vec<String> {
    [
        check_outcomes(ledger, planned, statuses, audit),
        check_resolved(ledger, planned, statuses),
    ]
    .into_iter()
    .filter_map(Result::err)
    .collect()
}

/// The setup of the lag and skew worlds: no quota, 1 s change orders, a 2 s SAE client timeout,
/// and `simulator_extra` for the simulator.
fn setup_with(simulator_extra: &[&str]) -> Setup {
    let mut setup = setup("1");
    setup.simulator_args.extend(strings(simulator_extra));
    setup
}

async fn quota_pressure(shape: Pressure) {
    let Pressure {
        label,
        apps,
        per_minute,
        lost,
        failing: failing_share,
        change_order_seconds,
        kills,
        finish_within,
    } = shape;
    let mut rng = fastrand::Rng::with_seed(seed(label));
    let app_ids: Vec<String> = (0..apps).map(|a| format!("app-{a}")).collect();
    let world_apps: Vec<Value> = app_ids.iter().map(|a| planned_app(a, 1)).collect();
    let sim_quota = (per_minute + per_minute / 10).to_string();
    let setup = Setup {
        // CreateTime in UTC, written without a zone: the controller must learn it, and nothing
        // teaches it before the first polls of answered sends.
        simulator_args: strings(&[
            "--access-key",
            &format!("{AK}:{SK}"),
            "--change-order-seconds",
            change_order_seconds,
            "--requests-per-minute",
            &sim_quota,
            "--create-time-zone",
            "UTC",
        ]),
        controller_args: strings(&[
            "--sae-timeout-seconds",
            "2",
            "--sae-requests-per-minute",
            &per_minute.to_string(),
        ]),
    };
    let mut w = World::start_with(label, world_apps, setup).await;
    let mut failing = BTreeSet::new();
    for a in &app_ids {
        let mut faults = ambiguous_faults(1, lost, &mut rng);
        if rng.f64() < failing_share {
            failing.insert(a.clone());
            faults.as_array_mut().unwrap().push(json!(
                { "kind": "changeOrderResult", "status": 3, "errorMessage": "instance stuck in draining (scripted)" }
            ));
        }
        w.fault(a, faults).await;
    }
    let planned = plan(label, &app_ids, 1, &mut rng);
    let mut spec = fast_retry();
    // Far beyond `finish_within`: an object that ends must end because SAE's state was learned,
    // not because its deadline came.
    spec["activeDeadlineSeconds"] = json!(3600);
    let started = Instant::now();
    w.apply_all(planned.iter().map(|p| p.doc(&w, spec.clone())).collect());

    let mut logs = String::new();
    // Early, while sends queue for tokens and the first lost answers are being looked at.
    let kill_times =
        kill_and_restart(&mut w, &mut rng, kills, 2000..10_000, started, &mut logs).await;
    let statuses = w
        .wait_all_terminal(finish_within.saturating_sub(started.elapsed()))
        .await;
    let took = started.elapsed();
    logs.push_str(&w.controller.logs());
    let ledger = w.sim.ledger().await;
    let audit = audit_ledger(&ledger, &planned).unwrap_or_else(|breach| panic!("{breach}"));
    let resends = planned
        .iter()
        .filter(|p| {
            let sends = audit.of(&p.name);
            sends
                .committed
                .first()
                .is_some_and(|c| sends.all.last() != Some(c))
        })
        .count();
    let calls = calls_by_operation(&ledger);
    println!(
        "{label}: {} objects on {apps} apps at {per_minute} calls/min, all terminal in {:.0} s, by phase/reason \
         {:?}; {} DeleteInstances sends, {} committed, {} unanswered, {} resends after a commit, {} apps scripted \
         to fail their change order; SAE calls {calls:?} ({} in all); {kills} kills at {kill_times:?} s",
        planned.len(),
        took.as_secs_f64(),
        phase_counts(&statuses),
        audit.sends,
        audit.committed,
        audit.no_answer,
        resends,
        failing.len(),
        calls.values().sum::<usize>(),
    );
    assert!(
        audit.no_answer > 0,
        "no lost answer was exercised; try another seed"
    );
    let mut breaches: Vec<String> = vec![];
    // A look that cannot conclude is not worth a token: about one look per object whose answer
    // was lost (an answer lost to a kill counts too). Looks that repeat because they cannot
    // place SAE's times are what starved the polls.
    let mut lost_objects = 0;
    for p in &planned {
        if w.event_reasons(&p.name)
            .await
            .iter()
            .any(|r| r == "OutcomeUnknown")
        {
            lost_objects += 1;
        }
    }
    let looks = calls.get("ListChangeOrders").copied().unwrap_or(0);
    println!(
        "{label}: {looks} looks (ListChangeOrders) for {lost_objects} objects whose answer was lost"
    );
    if looks * 2 > lost_objects * 3 + 4 {
        breaches.push(format!(
            "{looks} looks for {lost_objects} lost answers: looks that could not conclude spent the quota"
        ));
    }
    breaches.extend(truth_breaches(&ledger, &planned, &statuses, &audit));
    assert!(
        breaches.is_empty(),
        "{label}:\n{}\n--- controller log tail ---\n{}",
        breaches.join("\n"),
        tail(&logs, 60)
    );
}

/// At a size CI affords, the pressure of issue 17's livelock: 36 objects need at least 72 calls
/// (two minutes of the 36 a minute the controller allows itself), nearly a third of the sends
/// lose their answer after SAE executed them (more looks than tokens, were looks allowed to take
/// them all), a fifth of the change orders fail, three SIGKILLs come early, and the zone of SAE's
/// times is not known at the start.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn under_quota_pressure_every_object_ends_with_what_sae_did() {
    quota_pressure(Pressure {
        label: "liveness-quota",
        apps: 36,
        per_minute: 36,
        lost: 0.3,
        failing: 0.2,
        change_order_seconds: "2",
        kills: 3,
        finish_within: Duration::from_secs(420),
    })
    .await;
}

/// The full size of issue 17: 80 objects on 80 apps, 60 calls a minute, 20 % lost answers, 20 %
/// failing change orders, 20 s change orders, 5 SIGKILLs in the first minute: all 80 terminal
/// within 6 minutes (their calls take about 4.5 minutes of quota). `make liveness` runs it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "about 6 minutes; run by `make liveness`"]
async fn full_size_quota_pressure() {
    quota_pressure(Pressure {
        label: "liveness-full",
        apps: 80,
        per_minute: 60,
        lost: 0.2,
        failing: 0.2,
        change_order_seconds: "20",
        kills: 5,
        finish_within: Duration::from_secs(360),
    })
    .await;
}

/// The same with twice the loss: 40 % of the first sends lose their answer after SAE executed
/// them (about 40 lost answers with the kills). Under strict priority this is where the old
/// controller never ended a single object: every token went to looks that could not place SAE's
/// times, and no DescribeChangeOrder was ever sent. `make liveness` runs it too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "about 6 minutes; run by `make liveness`"]
async fn full_size_quota_pressure_with_heavier_loss() {
    quota_pressure(Pressure {
        label: "liveness-full-40",
        apps: 80,
        per_minute: 60,
        lost: 0.4,
        failing: 0.2,
        change_order_seconds: "20",
        kills: 5,
        finish_within: Duration::from_secs(480),
    })
    .await;
}

// ---- Lagging lists --------------------------------------------------------------------------------

/// The crash test of tests/at_most_once.rs with an SAE whose reads lag its writes: ListChangeOrders
/// shows a change order 8 s after it was created, DescribeChangeOrder answers "not found" for 3 s,
/// and every change order prepares for 1 s before it executes (1 s). 50 objects on 10 apps, a
/// fifth of the sends lose their answer (SAE executed them), 30 % of the change orders fail (their
/// instances stay: a resend would be accepted), and 8 SIGKILLs, each aimed at a moment when an
/// object has just been sent: after the restart it is `Submitting` while its change order has
/// already deleted its instances but is not listed yet. A look then would find nothing of its own
/// and take the deletion for someone else's (`AlreadyDeleted`), or find a neighbour's change order
/// and adopt it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lagging_lists_never_make_a_status_lie() {
    const APPS: usize = 10;
    const PER_APP: usize = 5;
    const KILLS: usize = 8;
    let label = "liveness-lag";
    let mut rng = fastrand::Rng::with_seed(seed(label));
    let app_ids: Vec<String> = (0..APPS).map(|a| format!("app-{a}")).collect();
    let apps: Vec<Value> = app_ids.iter().map(|a| planned_app(a, PER_APP)).collect();
    let setup = setup_with(&[
        "--list-lag-seconds",
        "8",
        "--describe-lag-seconds",
        "3",
        "--preparing-seconds",
        "1",
    ]);
    let mut w = World::start_with(label, apps, setup).await;
    for a in &app_ids {
        let mut faults = ambiguous_faults(PER_APP * 2, 0.2, &mut rng);
        for _ in 0..PER_APP {
            if rng.f64() < 0.3 {
                faults.as_array_mut().unwrap().push(json!(
                    { "kind": "changeOrderResult", "status": 3, "errorMessage": "scripted failure" }
                ));
            }
        }
        w.fault(a, faults).await;
    }
    let planned = plan(label, &app_ids, PER_APP, &mut rng);
    let mut spec = fast_retry();
    spec["activeDeadlineSeconds"] = json!(3600);
    w.apply_all(planned.iter().map(|p| p.doc(&w, spec.clone())).collect());
    let mut logs = String::new();
    // A send in flight: written ahead, its answer not recorded yet.
    let sending = |statuses: BTreeMap<String, Value>| {
        statuses
            .values()
            .any(|s| s["phase"] == "Submitting" && reason(s) != "OutcomeUnknown")
    };
    for _ in 0..KILLS {
        tokio::time::sleep(Duration::from_millis(rng.u64(500..3000))).await;
        let aim = Instant::now() + Duration::from_secs(10);
        while Instant::now() < aim && !sending(w.statuses().await) {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        tokio::time::sleep(Duration::from_millis(rng.u64(0..600))).await;
        logs.push_str(&w.controller.logs());
        w.controller.kill();
        tokio::time::sleep(Duration::from_millis(rng.u64(0..500))).await;
        w.restart_controller();
    }
    let statuses = w.wait_all_terminal(Duration::from_secs(400)).await;
    logs.push_str(&w.controller.logs());
    let ledger = w.sim.ledger().await;
    let audit = audit_ledger(&ledger, &planned).unwrap_or_else(|breach| panic!("{breach}"));
    let wrong: Vec<&str> = planned
        .iter()
        .filter(|p| {
            let named = statuses[&p.name]["changeOrderId"].as_str();
            let executed = deletion_of(&ledger, p).and_then(|d| d["changeOrderId"].as_str());
            named.is_some() && named != executed
        })
        .map(|p| p.name.as_str())
        .collect();
    let already: usize = statuses
        .values()
        .filter(|s| reason(s) == "AlreadyDeleted")
        .count();
    println!(
        "{label}: {} objects by phase/reason {:?}; {} sends, {} committed, {} unanswered; {} naming a change \
         order not theirs, {already} AlreadyDeleted",
        planned.len(),
        phase_counts(&statuses),
        audit.sends,
        audit.committed,
        audit.no_answer,
        wrong.len()
    );
    assert!(
        audit.no_answer > 0,
        "no lost answer was exercised; try another seed"
    );
    let breaches = truth_breaches(&ledger, &planned, &statuses, &audit);
    assert!(
        breaches.is_empty(),
        "{label}:\n{}\n--- controller log tail ---\n{}",
        breaches.join("\n"),
        tail(&logs, 60)
    );
}

// ---- A skewed SAE clock -----------------------------------------------------------------------------

/// SAE's clock `skew` seconds off ours. On app-lost, the first send is executed and its answer
/// lost; on app-unsent, the first send gets an HTTP 500 and was not executed; app-ok teaches the
/// zone. Two more objects wait behind each. The lost answers must resolve well before the
/// deadline (it is 240 s; resolving takes about 30 s), and everything queued behind them go on.
async fn skewed(label: &str, skew: &str) {
    let setup = setup_with(&["--clock-skew-seconds", skew]);
    let apps = ["app-ok", "app-lost", "app-unsent"];
    let world_apps: Vec<Value> = apps.iter().map(|a| planned_app(a, 3)).collect();
    let w = World::start_with(label, world_apps, setup).await;
    w.fault("app-lost", json!([{ "kind": "ambiguous" }])).await;
    w.fault(
        "app-unsent",
        json!([{ "kind": "http500", "commit": false }]),
    )
    .await;
    let mut spec = fast_retry();
    spec["activeDeadlineSeconds"] = json!(240);
    // The zone is taught first, as the quota test shows it is learned without help.
    let ok = Planned::new("ok-0", "app-ok", &["i-0"]);
    w.apply_all(vec![ok.doc(&w, spec.clone())]);
    w.wait_terminal("ok-0", Duration::from_secs(60)).await;
    let mut planned = vec![ok];
    for a in &apps[1..] {
        for i in 0..3 {
            planned.push(Planned::new(&format!("{a}-{i}"), a, &[&format!("i-{i}")]));
        }
    }
    let started = Instant::now();
    for p in &planned[1..] {
        w.apply_all(vec![p.doc(&w, spec.clone())]);
        // Oldest first on each app: in creation order.
        tokio::time::sleep(Duration::from_millis(1100)).await;
    }
    let statuses = w.wait_all_terminal(Duration::from_secs(200)).await;
    let took = started.elapsed();
    let ledger = w.sim.ledger().await;
    let audit = audit_ledger(&ledger, &planned).unwrap_or_else(|breach| panic!("{breach}"));
    println!(
        "{label}: SAE's clock {skew} s off; {} objects terminal in {:.0} s, by phase/reason {:?}; {} sends, {} \
         committed, {} unanswered; zones recorded {:?}",
        planned.len(),
        took.as_secs_f64(),
        phase_counts(&statuses),
        audit.sends,
        audit.committed,
        audit.no_answer,
        statuses
            .values()
            .filter_map(|s| s["createTimeZone"].as_str())
            .collect::<BTreeSet<_>>()
    );
    let mut breaches = truth_breaches(&ledger, &planned, &statuses, &audit);
    if let Err(e) = check_deadlines(&w, &statuses, Duration::from_secs(120), Duration::ZERO).await {
        breaches.push(format!("not resolved well before the deadline:\n{e}"));
    }
    assert!(breaches.is_empty(), "{label}:\n{}", breaches.join("\n"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lost_answers_resolve_with_sae_s_clock_40_s_behind() {
    skewed("liveness-behind", "-40").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lost_answers_resolve_with_sae_s_clock_40_s_ahead() {
    skewed("liveness-ahead", "40").await;
}
