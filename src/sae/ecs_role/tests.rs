//! Tests of the ECS RAM role provider against the simulator's metadata service.

use super::*;
use crate::fixtures::HandClock;
use crate::simulator::{Simulator, SimulatorConfig, spawn};

async fn simulator() -> (Arc<Simulator>, String) {
    let sim = Arc::new(Simulator::new(SimulatorConfig::default()).unwrap());
    let addr = spawn(sim.clone()).await.unwrap();
    (sim, format!("http://{addr}"))
}

fn issued(sim: &Simulator) -> u64 {
    sim.metadata().view()["issued"].as_u64().unwrap()
}

#[tokio::test]
async fn fetches_with_a_session_token_and_caches_until_near_expiry() {
    let (sim, url) = simulator().await;
    sim.metadata()
        .attach_role(serde_json::from_value(serde_json::json!({"roleName": "node-role"})).unwrap())
        .unwrap();
    let clock = HandClock::starting_at(Timestamp::now());
    // No role name configured: the provider asks the service which one is attached.
    let provider = EcsRoleProvider::new(&url, None, Duration::from_secs(5))
        .unwrap()
        .with_clock(clock.reader());
    let first = provider.credentials().await.unwrap();
    assert!(first.access_key_id().starts_with("STS."), "{first:?}");
    assert!(first.security_token().is_some());
    assert_eq!(provider.credentials().await.unwrap(), first, "cached");
    assert_eq!(issued(&sim), 1);
    // Within the refresh margin of the one-hour Expiration: a new set.
    clock.set(Timestamp::now() + SignedDuration::from_secs(3600 - 200));
    let second = provider.credentials().await.unwrap();
    assert_ne!(second.access_key_id(), first.access_key_id());
    assert_eq!(issued(&sim), 2);
    // Neither the secret nor the token shows in Debug.
    let shown = format!("{provider:?} {second:?}");
    assert!(!shown.contains(second.access_key_secret()), "{shown}");
    assert!(!shown.contains(second.security_token().unwrap()), "{shown}");
}

#[tokio::test]
async fn no_role_attached_or_a_wrong_name_is_a_clear_error() {
    let (sim, url) = simulator().await;
    let provider =
        EcsRoleProvider::new(&url, Some("node-role".into()), Duration::from_secs(5)).unwrap();
    let err = provider.credentials().await.unwrap_err();
    assert!(
        err.contains("HTTP 404") && err.contains("no RAM role"),
        "{err}"
    );
    sim.metadata()
        .attach_role(serde_json::from_value(serde_json::json!({"roleName": "other"})).unwrap())
        .unwrap();
    // The failure is remembered for a few seconds; a fresh provider asks again.
    let provider =
        EcsRoleProvider::new(&url, Some("node-role".into()), Duration::from_secs(5)).unwrap();
    let err = provider.credentials().await.unwrap_err();
    assert!(err.contains("no such role"), "{err}");
}

#[tokio::test]
async fn the_service_refuses_a_read_without_a_session_token() {
    let (sim, url) = simulator().await;
    sim.metadata()
        .attach_role(serde_json::from_value(serde_json::json!({"roleName": "node-role"})).unwrap())
        .unwrap();
    let answer = reqwest::get(format!("{url}{CREDENTIALS_PATH}node-role"))
        .await
        .unwrap();
    assert_eq!(answer.status().as_u16(), 401);
    assert_eq!(issued(&sim), 0);
}

#[test]
fn a_document_without_success_or_with_a_past_expiration_is_refused_without_quoting_it() {
    let now: Timestamp = "2025-01-01T00:00:00Z".parse().unwrap();
    let doc = |code: &str, exp: &str| {
        serde_json::json!({"Code": code, "AccessKeyId": "STS.a", "AccessKeySecret": "s3cr3t",
                           "SecurityToken": "t0ken", "Expiration": exp})
        .to_string()
    };
    for (body, want) in [
        (doc("Failed", "2025-01-01T01:00:00Z"), "Code"),
        (doc("Success", "2024-12-31T23:00:00Z"), "expired"),
        ("not json".to_owned(), "not the expected JSON"),
    ] {
        let err = interpret(&body, "r", now).err().expect("refused");
        assert!(err.contains(want), "{err}");
        assert!(!err.contains("s3cr3t") && !err.contains("t0ken"), "{err}");
    }
    let ok = interpret(&doc("Success", "2025-01-01T01:00:00Z"), "r", now)
        .ok()
        .unwrap();
    assert_eq!(ok.refresh_at, "2025-01-01T00:55:00Z".parse().unwrap());
}
