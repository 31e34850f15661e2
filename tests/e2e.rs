//! End to end: the real `sae-controller` binary, holding its ServiceAccount's identity (deploy/ RBAC),
//! against a real kube-apiserver + etcd, with `sae-simulator` as SAE. Each test has its own
//! [`World`](support::world::World): namespace, simulator and controller (`--namespace`), so tests run
//! side by side; what they assert comes from the objects' status and the simulator's ledger.

mod support;

use std::time::Duration;

use serde_json::{Value, json};
use support::world::{AK, SK, World, app, condition, fast_retry, reason};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn happy_path_deletes_once_and_reports_the_change_order() {
    let w = World::start("happy", vec![app("app-happy", &["i-1", "i-2", "i-3"])]).await;
    w.create("scale-in", "app-happy", &["i-1", "i-2"], json!({}));
    let s = w.wait_terminal("scale-in", Duration::from_secs(60)).await;

    assert_eq!(s["phase"], "Succeeded", "{s:#}");
    assert_eq!(reason(&s), "Succeeded");
    assert_eq!(s["attempts"], 1);
    assert_eq!(s["changeOrderStatus"], "Succeeded");
    let change_order = s["changeOrderId"]
        .as_str()
        .expect("changeOrderId")
        .to_string();
    assert!(
        s["requestId"].is_string() && s["completionTime"].is_string(),
        "{s:#}"
    );
    assert_eq!(
        (
            condition(&s, "Ready"),
            condition(&s, "Reconciling"),
            condition(&s, "Stalled")
        ),
        ("True".into(), "False".into(), "False".into())
    );

    // SAE's side: one DeleteInstances, with exactly the two ids, and they are gone.
    let sent = w.delete_requests("app-happy").await;
    assert_eq!(sent.len(), 1, "{sent:#?}");
    assert_eq!(sent[0]["params"]["InstanceIds"], "i-1,i-2");
    assert_eq!(sent[0]["changeOrderId"], change_order.as_str());
    let app_state = w.sim.admin_get("/_sim/apps/app-happy").await["groups"].to_string();
    assert!(
        !app_state.contains("\"i-1\"")
            && !app_state.contains("\"i-2\"")
            && app_state.contains("\"i-3\""),
        "{app_state}"
    );

    // What users do with kubectl works.
    let out = w.kubectl_wait_ready("scale-in", "10s");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let table = String::from_utf8_lossy(&w.kubectl(&["get", "saedel"]).stdout).into_owned();
    assert!(
        table.contains("APP") && table.contains("CHANGEORDER") && table.contains(&change_order),
        "{table}"
    );

    let reasons = w.event_reasons("scale-in").await;
    // A change order of 1 s is done by the first poll, so InProgress is never written on its own
    // (and has no Event); the outcome is recorded together with the change order id.
    for r in ["Submitting", "Succeeded"] {
        assert!(
            reasons.iter().any(|x| x == r),
            "event {r} missing: {reasons:?}"
        );
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
    assert!(
        w.event_reasons("busy")
            .await
            .iter()
            .any(|r| r == "Retrying")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn system_upgrading_window_is_waited_out() {
    let w = World::start("upgrading", vec![app("app-up", &["i-1"])]).await;
    w.fault("app-up", json!([{ "kind": "upgrading", "seconds": 3 }]))
        .await;
    w.create("up", "app-up", &["i-1"], fast_retry());
    let s = w.wait_terminal("up", Duration::from_secs(60)).await;
    assert_eq!(s["phase"], "Succeeded", "{s:#}");
    assert!(s["attempts"].as_i64().unwrap() >= 2, "{s:#}");
    assert_eq!(w.committed_deletes("app-up").await, 1);
    let codes: Vec<Value> = w
        .delete_requests("app-up")
        .await
        .iter()
        .map(|r| r["code"].clone())
        .collect();
    assert!(codes.contains(&json!("System.Upgrading")), "{codes:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn terminal_codes_fail_at_once_with_their_reason() {
    let w = World::start(
        "terminal",
        vec![
            app("app-q", &["i-1"]),
            app("app-nd", &["i-1"]),
            app("app-ip", &["i-1"]),
        ],
    )
    .await;
    w.fault(
        "app-q",
        json!([{ "kind": "error", "code": "NoComputeResourceQuota.Exceed", "times": 1 }]),
    )
    .await;
    w.fault(
        "app-nd",
        json!([{ "kind": "error", "code": "Application.NotDeployYet", "times": 1 }]),
    )
    .await;
    let cases = [
        (
            "unknown-app",
            "app-missing",
            "i-1",
            "ApplicationNotFound",
            "InvalidApplication.NotFound",
        ),
        (
            "unknown-instance",
            "app-ip",
            "i-404",
            "InvalidParameter",
            "InvalidParameter.WithMessage",
        ),
        (
            "quota",
            "app-q",
            "i-1",
            "QuotaExceeded",
            "NoComputeResourceQuota.Exceed",
        ),
        (
            "not-deployed",
            "app-nd",
            "i-1",
            "Rejected",
            "Application.NotDeployYet",
        ),
    ];
    for (name, app_id, id, _, _) in cases {
        // i-1 exists in every app: an id SAE rejects next to one that exists is a real InvalidParameter,
        // not "already gone".
        let ids: Vec<&str> = if id == "i-1" {
            vec![id]
        } else {
            vec!["i-1", id]
        };
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
        assert!(
            !s["message"].as_str().unwrap_or("").is_empty(),
            "{name}: message expected"
        );
        assert_eq!(w.delete_requests(app_id).await.len(), 1, "{name}");
        assert_eq!(w.committed_deletes(app_id).await, 0, "{name}");
    }
    assert!(
        w.status("unknown-instance").await["message"]
            .as_str()
            .unwrap()
            .contains("i-404")
    );
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
    assert_eq!(
        w.delete_requests("app-gone").await.len(),
        1,
        "one rejected send, no retry"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_secret_waits_without_calling_sae_and_heals_when_created() {
    let w = World::start("heal", vec![app("app-heal", &["i-1"])]).await;
    w.create(
        "heal",
        "app-heal",
        &["i-1"],
        json!({ "credentialsRef": { "name": "late-creds" } }),
    );
    let s = w
        .wait_for(
            "heal",
            "Pending/CredentialsNotFound",
            Duration::from_secs(30),
            |s| s["phase"] == "Pending" && reason(s) == "CredentialsNotFound",
        )
        .await;
    assert!(
        s["message"].as_str().unwrap().contains("late-creds"),
        "{s:#}"
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        w.sim.ledger().await["requests"].as_array().unwrap().len(),
        0,
        "no SAE call without credentials"
    );

    w.apply_secret(
        "late-creds",
        json!({ "accessKeyId": AK, "accessKeySecret": SK }),
    );
    let s = w.wait_terminal("heal", Duration::from_secs(90)).await;
    assert_eq!(s["phase"], "Succeeded", "{s:#}");
    assert_eq!(w.committed_deletes("app-heal").await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_secret_fails_as_authentication_failed_and_the_secret_appears_nowhere() {
    const WRONG: &str = "Wrong-Secret-Value-4711";
    let w = World::start("authn", vec![app("app-auth", &["i-1"])]).await;
    w.apply_secret(
        "bad-creds",
        json!({ "accessKeyId": AK, "accessKeySecret": WRONG }),
    );
    w.create(
        "authn",
        "app-auth",
        &["i-1"],
        json!({ "credentialsRef": { "name": "bad-creds" } }),
    );
    let s = w.wait_terminal("authn", Duration::from_secs(60)).await;
    assert_eq!(s["phase"], "Failed", "{s:#}");
    assert_eq!(reason(&s), "AuthenticationFailed", "{s:#}");
    assert_eq!(s["errorCode"], "SignatureDoesNotMatch");
    assert_eq!(w.committed_deletes("app-auth").await, 0);

    let object =
        String::from_utf8_lossy(&w.kubectl(&["get", "saedel", "authn", "-o", "yaml"]).stdout)
            .into_owned();
    let events = String::from_utf8_lossy(
        &w.kubectl(&["get", "events.events.k8s.io", "-o", "yaml"])
            .stdout,
    )
    .into_owned();
    let described =
        String::from_utf8_lossy(&w.kubectl(&["describe", "saedel", "authn"]).stdout).into_owned();
    let logs = w.controller.logs();
    assert!(object.contains("AuthenticationFailed") && !logs.is_empty());
    for (what, text) in [
        ("status", &object),
        ("events", &events),
        ("describe", &described),
        ("controller log", &logs),
    ] {
        assert!(!text.contains(WRONG), "the wrong secret leaked into {what}");
        assert!(
            !text.contains(SK),
            "the controller's secret leaked into {what}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_are_bounded_by_max_attempts() {
    let w = World::start("exhaust", vec![app("app-ex", &["i-1"])]).await;
    w.fault(
        "app-ex",
        json!([{ "kind": "error", "code": "Application.ChangerOrderRunning", "times": 10 }]),
    )
    .await;
    w.create(
        "exhaust",
        "app-ex",
        &["i-1"],
        json!({ "retry": { "maxAttempts": 2, "initialDelaySeconds": 1, "maxDelaySeconds": 1 } }),
    );
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
    assert!(
        s["message"]
            .as_str()
            .unwrap()
            .contains("instance stuck in draining"),
        "{s:#}"
    );
    assert_eq!(w.committed_deletes("app-cof").await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dry_run_checks_and_never_deletes() {
    let w = World::start("dryrun", vec![app("app-dry", &["i-1", "i-2"])]).await;
    w.create("dry", "app-dry", &["i-1"], json!({ "dryRun": true }));
    w.create(
        "dry-missing",
        "app-dry",
        &["i-1", "i-9"],
        json!({ "dryRun": true }),
    );
    let s = w.wait_terminal("dry", Duration::from_secs(60)).await;
    assert_eq!(s["phase"], "Succeeded", "{s:#}");
    assert_eq!(reason(&s), "DryRunSucceeded");
    let s = w
        .wait_terminal("dry-missing", Duration::from_secs(60))
        .await;
    assert_eq!(s["phase"], "Failed", "{s:#}");
    assert!(s["message"].as_str().unwrap().contains("i-9"), "{s:#}");
    assert_eq!(w.delete_requests("app-dry").await.len(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_during_backoff_neither_resets_nor_shortens_the_wait() {
    let mut w = World::start("restart", vec![app("app-rs", &["i-1"])]).await;
    w.fault(
        "app-rs",
        json!([{ "kind": "error", "code": "Application.ChangerOrderRunning", "times": 1 }]),
    )
    .await;
    w.create(
        "restart",
        "app-rs",
        &["i-1"],
        json!({ "retry": { "initialDelaySeconds": 8, "maxDelaySeconds": 8 } }),
    );
    let s = w
        .wait_for("restart", "Retrying", Duration::from_secs(30), |s| {
            s["phase"] == "Retrying"
        })
        .await;
    let next: jiff::Timestamp = s["nextAttemptTime"]
        .as_str()
        .expect("nextAttemptTime")
        .parse()
        .unwrap();
    w.controller.kill();
    w.restart_controller();

    let s = w.wait_terminal("restart", Duration::from_secs(60)).await;
    assert_eq!(s["phase"], "Succeeded", "{s:#}");
    assert_eq!(
        s["attempts"], 2,
        "the restart must not reset the attempt count"
    );
    let sent = w.delete_requests("app-rs").await;
    assert_eq!(sent.len(), 2, "{sent:#?}");
    let second: jiff::Timestamp = sent[1]["time"]
        .as_str()
        .expect("ledger time")
        .parse()
        .unwrap();
    // status times have one-second resolution; allow for that, not more.
    assert!(
        second >= next - jiff::SignedDuration::from_secs(1),
        "second attempt at {second} came before nextAttemptTime {next}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotated_secret_is_used_by_the_next_attempt_without_a_restart() {
    let w = World::start("rotate", vec![app("app-rot", &["i-1"])]).await;
    for (id, secret) in [
        ("LTAIoldKey", "old-secret-value"),
        ("LTAInewKey", "new-secret-value"),
    ] {
        w.sim
            .admin_post(
                "/_sim/access-keys",
                json!({ "accessKeyId": id, "accessKeySecret": secret }),
            )
            .await;
    }
    w.fault(
        "app-rot",
        json!([{ "kind": "error", "code": "Application.ChangerOrderRunning", "times": 1 }]),
    )
    .await;
    let rotating = |id: &str, value: &str| {
        w.apply_secret(
            "rotating",
            json!({ "accessKeyId": id, "accessKeySecret": value }),
        )
    };
    rotating("LTAIoldKey", "old-secret-value");
    w.create(
        "rotate",
        "app-rot",
        &["i-1"],
        json!({ "credentialsRef": { "name": "rotating" }, "retry": { "initialDelaySeconds": 4, "maxDelaySeconds": 4 } }),
    );
    w.wait_for("rotate", "Retrying", Duration::from_secs(30), |s| {
        s["phase"] == "Retrying"
    })
    .await;
    rotating("LTAInewKey", "new-secret-value");
    let s = w.wait_terminal("rotate", Duration::from_secs(60)).await;
    assert_eq!(s["phase"], "Succeeded", "{s:#}");
    let keys: Vec<Value> = w
        .delete_requests("app-rot")
        .await
        .iter()
        .map(|r| r["accessKeyId"].clone())
        .collect();
    assert_eq!(
        keys,
        [json!("LTAIoldKey"), json!("LTAInewKey")],
        "the second attempt signs with the rotated key"
    );
}
