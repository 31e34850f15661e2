//! End to end: SAE throttling one AccessKey, as a throttling gateway does it (issue 10).
//!
//! `x-acs-retry-after` is in milliseconds: `1000` pauses the key for a second, not for a thousand
//! seconds, and a pause of one key holds up no object of another key. Witnesses are the simulator's
//! ledger (when each request arrived, with which key, and what it was answered) and the objects'
//! status. The bounds on gaps are generous behaviour checks (a second versus a quarter of an hour),
//! not performance figures.

mod support;

use std::time::Duration;

use jiff::Timestamp;
use serde_json::{Value, json};
use support::world::{AK, SK, Setup, World, app, fast_retry, reason, strings};

/// The second tenant's key: objects name it through a Secret (`credentialsRef`).
const AK_B: &str = "LTAIe2eSecondTenantKey";
const SK_B: &str = "e2e-Second-Secret-never-printed";

fn two_key_setup(controller_args: &[&str]) -> Setup {
    Setup {
        simulator_args: strings(&[
            "--access-key",
            &format!("{AK}:{SK}"),
            "--access-key",
            &format!("{AK_B}:{SK_B}"),
            "--change-order-seconds",
            "1",
        ]),
        controller_args: strings(controller_args),
    }
}

/// A Throttling.User answer for the app's next DeleteInstances, with this retry hint.
fn throttle_next_delete(retry_after_millis: u64) -> Value {
    json!([{ "kind": "error", "code": "Throttling.User", "retryAfterMillis": retry_after_millis }])
}

/// `spec` extras: fast retries, and key B's Secret when `key_b`.
fn spec(key_b: bool) -> Value {
    let mut spec = fast_retry();
    if key_b {
        spec["credentialsRef"] = json!({ "name": "tenant-b" });
    }
    spec
}

fn time_of(request: &Value) -> Timestamp {
    request["time"]
        .as_str()
        .and_then(|t| t.parse().ok())
        .unwrap_or_else(|| panic!("a ledger time: {request}"))
}

fn seconds_between(earlier: &Value, later: &Value) -> f64 {
    time_of(later)
        .duration_since(time_of(earlier))
        .as_secs_f64()
}

/// The app's DeleteInstances requests as (code, request), in arrival order.
async fn deletes(w: &World, app_id: &str) -> Vec<(String, Value)> {
    w.delete_requests(app_id)
        .await
        .into_iter()
        .map(|r| (r["code"].as_str().unwrap_or("").to_string(), r))
        .collect()
}

async fn wait_until_throttled(w: &World, app_id: &str, throttled: usize) {
    let start = std::time::Instant::now();
    loop {
        let seen = deletes(w, app_id)
            .await
            .iter()
            .filter(|(code, _)| code == "Throttling.User")
            .count();
        if seen >= throttled {
            return;
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "{app_id}: no Throttling.User answer seen; ledger: {:#?}",
            deletes(w, app_id).await
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_one_second_retry_hint_pauses_one_key_for_a_second_and_no_other_key() {
    let w = World::start_with(
        "throttle",
        vec![
            app("app-a", &["i-a1", "i-a2"]),
            app("app-b", &["i-b1", "i-b2"]),
        ],
        two_key_setup(&[]),
    )
    .await;
    w.apply_secret(
        "tenant-b",
        json!({ "accessKeyId": AK_B, "accessKeySecret": SK_B }),
    );

    // 1. Key A's first DeleteInstances is throttled with `x-acs-retry-after: 1000`.
    w.fault("app-a", throttle_next_delete(1000)).await;
    w.create("a1", "app-a", &["i-a1"], spec(false));
    w.create("b1", "app-b", &["i-b1"], spec(true));
    for name in ["a1", "b1"] {
        let s = w.wait_terminal(name, Duration::from_secs(60)).await;
        assert_eq!(s["phase"], "Succeeded", "{name}: {s:#}");
        assert_eq!(reason(&s), "Succeeded", "{name}: {s:#}");
    }
    let a = deletes(&w, "app-a").await;
    let codes: Vec<&str> = a.iter().map(|(c, _)| c.as_str()).collect();
    assert_eq!(codes, ["Throttling.User", "OK"], "{a:#?}");
    assert!(a.iter().all(|(_, r)| r["accessKeyId"] == AK));
    let gap = seconds_between(&a[0].1, &a[1].1);
    assert!(
        (0.9..30.0).contains(&gap),
        "key A retried {gap:.1} s after a 1000 ms hint: it should wait about a second, \
         not 1000 seconds and not zero"
    );
    let b = deletes(&w, "app-b").await;
    assert_eq!(b.len(), 1, "{b:#?}");
    assert_eq!(
        (b[0].0.as_str(), &b[0].1["accessKeyId"]),
        ("OK", &json!(AK_B))
    );

    // 2. A 20 s hint for key A; key B's object, created while A is paused, goes through first.
    w.fault("app-a", throttle_next_delete(20_000)).await;
    w.create("a2", "app-a", &["i-a2"], spec(false));
    wait_until_throttled(&w, "app-a", 2).await;
    w.create("b2", "app-b", &["i-b2"], spec(true));
    for name in ["a2", "b2"] {
        let s = w.wait_terminal(name, Duration::from_secs(90)).await;
        assert_eq!(s["phase"], "Succeeded", "{name}: {s:#}");
    }
    let a = deletes(&w, "app-a").await;
    let codes: Vec<&str> = a.iter().map(|(c, _)| c.as_str()).collect();
    assert_eq!(
        codes,
        ["Throttling.User", "OK", "Throttling.User", "OK"],
        "{a:#?}"
    );
    let (throttled, retried) = (&a[2].1, &a[3].1);
    let gap = seconds_between(throttled, retried);
    assert!(
        (19.5..60.0).contains(&gap),
        "key A retried {gap:.1} s after a 20000 ms hint"
    );
    let b = deletes(&w, "app-b").await;
    assert_eq!(b.len(), 2, "{b:#?}");
    let b2 = &b[1].1;
    assert_eq!(b2["code"], "OK");
    assert!(
        time_of(b2) < time_of(retried),
        "key B's deletion ({}) waited for key A's pause to end ({})",
        b2["time"],
        retried["time"]
    );
    // Nothing signed with key B was ever throttled.
    let ledger = w.ledger_requests().await;
    assert!(
        ledger
            .iter()
            .filter(|r| r["accessKeyId"] == AK_B)
            .all(|r| r["code"] != "Throttling.User"),
        "{ledger:#?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lower_retry_cap_shortens_a_long_hint() {
    let w = World::start_with(
        "throttle-cap",
        vec![app("app-cap", &["i-1"])],
        two_key_setup(&["--sae-max-retry-after-seconds", "3"]),
    )
    .await;
    // Ten minutes asked (beyond even SAE's own two-minute ceiling); the controller waits 3 s.
    w.fault("app-cap", throttle_next_delete(600_000)).await;
    w.create("capped", "app-cap", &["i-1"], spec(false));
    let s = w.wait_terminal("capped", Duration::from_secs(60)).await;
    assert_eq!(s["phase"], "Succeeded", "{s:#}");
    let d = deletes(&w, "app-cap").await;
    assert_eq!(d.len(), 2, "{d:#?}");
    let gap = seconds_between(&d[0].1, &d[1].1);
    assert!((2.5..30.0).contains(&gap), "retried after {gap:.1} s");
}

#[test]
fn a_retry_cap_above_two_minutes_is_refused_at_start() {
    for bad in ["121", "0", "-1", "soon"] {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_sae-controller"))
            .arg(format!("--sae-max-retry-after-seconds={bad}"))
            .output()
            .expect("running sae-controller");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{bad}: accepted");
        assert!(
            stderr.contains("--sae-max-retry-after-seconds"),
            "{bad}: {stderr}"
        );
    }
    let help = std::process::Command::new(env!("CARGO_BIN_EXE_sae-controller"))
        .arg("--help")
        .output()
        .expect("running sae-controller --help");
    assert!(String::from_utf8_lossy(&help.stdout).contains("--sae-max-retry-after-seconds"));
}
