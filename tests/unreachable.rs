//! SAE unreachable is not a refusal: the real controller against a real API server, with the SAE
//! simulator killed (its port refuses connections, so nothing can have been sent) for far longer
//! than an object's `retry.maxAttempts` backoffs would take, then started again on the same port.
//! The object waits in `Retrying`/`SaeUnreachable` with `saeUnreachableSince` meanwhile (read from
//! the API server), spends no attempt, and succeeds with one DeleteInstances once SAE is back.

mod support;

use std::time::{Duration, Instant};

use serde_json::json;
use support::Simulator;
use support::world::{World, app, is_terminal, reason};

/// Longer than the two one-to-two-second backoffs `maxAttempts: 2` allows, many times over.
const OUTAGE: Duration = Duration::from_secs(15);

/// The value of the unlabelled sample `name` in a `/metrics` text.
fn sample(text: &str, name: &str) -> Option<f64> {
    text.lines().find_map(|line| {
        let (series, value) = line.rsplit_once(' ')?;
        (series == name).then(|| value.parse().ok()).flatten()
    })
}

/// The value of `sae_requests_total{operation="DeleteInstances",code=CODE}` (0 when absent).
fn delete_requests(text: &str, code: &str) -> f64 {
    let series = format!(r#"sae_requests_total{{operation="DeleteInstances",code="{code}"}}"#);
    sample(text, &series).unwrap_or(0.0)
}

async fn metrics(w: &World) -> String {
    let url = format!(
        "{}/metrics",
        w.controller.metrics_url().expect("metrics url")
    );
    reqwest::get(url)
        .await
        .expect("scraping /metrics")
        .text()
        .await
        .expect("metrics body")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sae_unreachable_spends_no_attempts_and_the_deletion_happens_once_when_it_is_back() {
    let apps = vec![app("app-down", &["i-1", "i-2"])];
    let mut w = World::start("unreachable", apps.clone()).await;
    // A restarted simulator starts empty: the seed gives it the app before its first request.
    let seed_dir = tempfile::tempdir().expect("a temp dir");
    let seed = seed_dir.path().join("seed.json");
    std::fs::write(&seed, json!({ "apps": apps }).to_string()).expect("writing the seed");
    let addr = w.sim.addr().to_owned();
    w.sim.kill();

    let retry =
        json!({ "retry": { "maxAttempts": 2, "initialDelaySeconds": 1, "maxDelaySeconds": 2 } });
    w.create("down", "app-down", &["i-1"], retry);
    let first = w
        .wait_for(
            "down",
            "waiting on an unreachable SAE",
            Duration::from_secs(60),
            |s| reason(s) == "SaeUnreachable",
        )
        .await;
    let down_since = Instant::now();
    assert_eq!(first["phase"], "Retrying", "{first:#}");
    let since = first["saeUnreachableSince"].clone();
    assert!(since.is_string(), "{first:#}");
    let message = first["message"].as_str().unwrap_or_default();
    for part in [
        "SAE is unreachable since",
        "Connection refused",
        "nothing was sent",
        "does not count against retry.maxAttempts",
    ] {
        assert!(message.contains(part), "{part:?} missing in {message}");
    }
    assert!(!message.contains("SAE refused"), "{message}");

    // Down far longer than two backoffs: the object never fails, never counts an attempt, and
    // keeps the start of the outage.
    let mut samples = 0;
    while down_since.elapsed() < OUTAGE {
        let s = w.status("down").await;
        assert!(!is_terminal(&s), "ended while SAE was unreachable: {s:#}");
        assert!(s["attempts"].as_i64().unwrap_or(0) <= 1, "{s:#}");
        if reason(&s) == "SaeUnreachable" {
            assert_eq!(s["phase"], "Retrying", "{s:#}");
            assert_eq!(s["attempts"].as_i64().unwrap_or(0), 0, "{s:#}");
            assert_eq!(s["saeUnreachableSince"], since, "{s:#}");
            samples += 1;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert!(samples > 0);
    let text = metrics(&w).await;
    let not_sent = delete_requests(&text, "NotSent");
    assert!(
        not_sent > 2.0,
        "more sends than maxAttempts could not reach SAE: {not_sent}"
    );
    assert_eq!(
        sample(&text, "sae_unreachable_objects"),
        Some(1.0),
        "the gauge the SaeUnreachable alert reads"
    );

    // SAE back on the same port.
    let args: Vec<String> = w
        .setup
        .simulator_args
        .iter()
        .cloned()
        .chain(["--seed".to_owned(), seed.display().to_string()])
        .collect();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    w.sim = Simulator::spawn_listening(&addr, &args);
    let s = w.wait_terminal("down", Duration::from_secs(60)).await;
    assert_eq!(s["phase"], "Succeeded", "{s:#}");
    assert_eq!(reason(&s), "Succeeded", "{s:#}");
    assert_eq!(s["attempts"], 1, "only the send SAE answered counts: {s:#}");
    assert!(s.get("saeUnreachableSince").is_none(), "{s:#}");
    let sent = w.delete_requests("app-down").await;
    assert_eq!(sent.len(), 1, "{sent:#?}");
    assert_eq!(sent[0]["params"]["InstanceIds"], "i-1");
    assert_eq!(w.committed_deletes("app-down").await, 1);
    assert!(
        w.event_reasons("down")
            .await
            .iter()
            .any(|r| r == "SaeUnreachable")
    );
    println!(
        "outage {:?}: {not_sent} DeleteInstances sends could not reach SAE (maxAttempts 2), then 1 sent, 1 committed",
        OUTAGE
    );
}
