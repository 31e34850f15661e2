//! The controller's SAE client against the in-process simulator: one test per outcome the client
//! must sort — success, Retryable, Terminal, Ambiguous — with the simulator's ledger as the
//! witness of what SAE actually executed.

use std::sync::Arc;
use std::time::{Duration, Instant};

use jiff::SignedDuration;
use sae_controller::sae::{Credentials, ErrorClass, SaeError, SignatureVersion};
use sae_controller::sae::{SaeClient, SaeClientConfig, no_gate};
use sae_controller::simulator::{
    AccessKeySpec, AppFaults, AppSpec, FaultSpec, GroupSpec, ModelConfig, Seed, Simulator,
    SimulatorConfig,
};
use serde_json::json;

const AK: &str = "AKclienttest";
const SECRET: &str = "client-test-secret";
const REGION: &str = "cn-hangzhou";

struct Harness {
    sim: Arc<Simulator>,
    endpoint: String,
}

fn creds() -> Credentials {
    Credentials::new(AK, SECRET, None)
}

fn app(app_id: &str, instances: &[&str]) -> AppSpec {
    AppSpec {
        app_id: app_id.into(),
        groups: vec![GroupSpec {
            group_id: format!("{app_id}-g1"),
            group_name: Some("default".into()),
            instance_ids: instances.iter().map(|s| s.to_string()).collect(),
        }],
    }
}

fn ids(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| s.to_string()).collect()
}

impl Harness {
    async fn start(requests_per_minute: u32) -> Self {
        let config = SimulatorConfig {
            model: ModelConfig {
                requests_per_minute,
                change_order_duration: SignedDuration::from_millis(300),
                ..ModelConfig::default()
            },
            seed: Some(Seed {
                access_keys: vec![AccessKeySpec::parse_pair(&format!("{AK}:{SECRET}")).unwrap()],
                apps: vec![app("app-1", &["i-a", "i-b", "i-c"])],
                faults: vec![],
            }),
            ..SimulatorConfig::default()
        };
        let sim = Arc::new(Simulator::new(config).unwrap());
        let addr = sae_controller::simulator::spawn(sim.clone()).await.unwrap();
        Harness {
            sim,
            endpoint: format!("http://{addr}"),
        }
    }

    fn client_with(&self, version: SignatureVersion, timeout: Duration) -> SaeClient {
        SaeClient::new(SaeClientConfig {
            endpoint: self.endpoint.clone(),
            signature_version: version,
            connect_timeout: Duration::from_secs(2),
            timeout,
            ..SaeClientConfig::default()
        })
        .unwrap()
    }

    fn client(&self) -> SaeClient {
        self.client_with(SignatureVersion::V1, Duration::from_secs(5))
    }

    fn faults(&self, app_id: &str, faults: serde_json::Value) {
        let faults: Vec<FaultSpec> = serde_json::from_value(faults).unwrap();
        self.sim
            .add_faults(AppFaults {
                app_id: app_id.into(),
                faults,
            })
            .unwrap();
    }

    fn committed_requests(&self) -> usize {
        self.sim
            .ledger()
            .requests
            .iter()
            .filter(|r| r.committed)
            .count()
    }
}

fn assert_api_error(err: &SaeError, code: &str, class: ErrorClass) {
    assert_eq!(err.code(), Some(code), "{err:?}");
    assert_eq!(err.class(), class, "{err:?}");
    assert!(
        err.request_id().is_some(),
        "the simulator names every request: {err:?}"
    );
    assert!(!format!("{err} {err:?}").contains(SECRET));
}

async fn wait_for_status(client: &SaeClient, co: &str, want: i64) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let order = client
            .describe_change_order(&creds(), REGION, co)
            .await
            .unwrap();
        if order.status == want {
            return;
        }
        assert!(order.status == 1, "unexpected status {}", order.status);
        assert!(
            Instant::now() < deadline,
            "change order {co} never reached {want}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn success_with_both_signature_versions() {
    let h = Harness::start(0).await;
    for (version, instance) in [(SignatureVersion::V1, "i-a"), (SignatureVersion::V3, "i-b")] {
        let client = h.client_with(version, Duration::from_secs(5));
        let accepted = client
            .delete_instances(&creds(), REGION, "app-1", &ids(&[instance]))
            .await
            .unwrap();
        assert!(!accepted.change_order_id.is_empty());
        assert!(accepted.request_id.is_some() && accepted.trace_id.is_some());

        let running = client
            .describe_change_order(&creds(), REGION, &accepted.change_order_id)
            .await
            .unwrap();
        assert_eq!(running.status, 1, "{version}");
        assert_eq!(running.co_type_code.as_deref(), Some("CoDeleteInstances"));
        assert_eq!(running.sub_status, Some(0));
        assert!(
            running
                .create_time
                .as_deref()
                .is_some_and(|t| t.len() == 19),
            "{running:?}"
        );
        wait_for_status(&client, &accepted.change_order_id, 2).await;

        let page = client
            .list_change_orders(&creds(), REGION, "app-1", Some("CoDeleteInstances"), 1, 10)
            .await
            .unwrap();
        assert_eq!(
            page.change_orders[0].change_order_id, accepted.change_order_id,
            "newest first"
        );
        assert_eq!(page.change_orders[0].status, 2);
        assert_eq!(page.current_page, 1);
    }
    let client = h.client();
    let groups = client
        .describe_application_groups(&creds(), REGION, "app-1")
        .await
        .unwrap();
    assert_eq!(groups.len(), 1);
    assert_eq!(groups[0].group_id, "app-1-g1");
    assert_eq!(groups[0].group_name.as_deref(), Some("default"));
    let page = client
        .describe_application_instances(&creds(), REGION, "app-1", "app-1-g1", 1, 10)
        .await
        .unwrap();
    assert_eq!((page.total, page.instance_ids.clone()), (1, ids(&["i-c"])));
    assert_eq!(
        client
            .list_all_instance_ids(&creds(), REGION, "app-1", no_gate)
            .await
            .unwrap()
            .unwrap(),
        ids(&["i-c"])
    );
    let page = client
        .list_change_orders(&creds(), REGION, "app-1", None, 1, 10)
        .await
        .unwrap();
    assert_eq!(page.total, 2);

    let ledger = h.sim.ledger();
    assert_eq!(ledger.deletions.len(), 2);
    assert!(ledger.deletions.iter().all(|d| d.final_status == Some(2)));
    assert!(
        ledger.requests.iter().all(|r| r.verified),
        "every client request verified"
    );
    let versions: Vec<_> = ledger
        .requests
        .iter()
        .filter(|r| r.committed)
        .map(|r| r.signature_version.clone().unwrap())
        .collect();
    assert_eq!(versions, ["v1", "v3"]);
}

#[tokio::test]
async fn list_all_instance_ids_pages_through_every_group() {
    let h = Harness::start(0).await;
    let many: Vec<String> = (0..120).map(|i| format!("i-{i:03}")).collect();
    let mut big = app("app-big", &[]);
    big.groups[0].instance_ids = many[..70].to_vec();
    big.groups.push(GroupSpec {
        group_id: "app-big-g2".into(),
        group_name: None,
        instance_ids: many[70..].to_vec(),
    });
    h.sim
        .apply_seed(Seed {
            apps: vec![big],
            ..Seed::default()
        })
        .unwrap();
    let all = h
        .client()
        .list_all_instance_ids(&creds(), REGION, "app-big", no_gate)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(all, many);
}

#[tokio::test]
async fn retryable_change_order_running() {
    let h = Harness::start(0).await;
    let client = h.client();
    client
        .delete_instances(&creds(), REGION, "app-1", &ids(&["i-a"]))
        .await
        .unwrap();
    let err = client
        .delete_instances(&creds(), REGION, "app-1", &ids(&["i-b"]))
        .await
        .unwrap_err();
    assert_api_error(
        &err,
        "Application.ChangerOrderRunning",
        ErrorClass::Retryable,
    );

    h.sim
        .apply_seed(Seed {
            apps: vec![app("app-2", &["i-x"])],
            ..Seed::default()
        })
        .unwrap();
    h.faults(
        "app-2",
        json!([{"kind": "error", "code": "Application.ChangerOrderRunning", "times": 2}]),
    );
    for _ in 0..2 {
        let err = client
            .delete_instances(&creds(), REGION, "app-2", &ids(&["i-x"]))
            .await
            .unwrap_err();
        assert_api_error(
            &err,
            "Application.ChangerOrderRunning",
            ErrorClass::Retryable,
        );
    }
    client
        .delete_instances(&creds(), REGION, "app-2", &ids(&["i-x"]))
        .await
        .unwrap();
    assert_eq!(h.committed_requests(), 2);
}

#[tokio::test]
async fn retryable_system_upgrading() {
    let h = Harness::start(0).await;
    h.faults("app-1", json!([{"kind": "upgrading", "seconds": 60}]));
    let err = h
        .client()
        .delete_instances(&creds(), REGION, "app-1", &ids(&["i-a"]))
        .await
        .unwrap_err();
    assert_api_error(&err, "System.Upgrading", ErrorClass::Retryable);
    // Reads still work while SAE upgrades.
    h.client()
        .describe_application_groups(&creds(), REGION, "app-1")
        .await
        .unwrap();
    assert_eq!(h.committed_requests(), 0);
}

#[tokio::test]
async fn retryable_throttling_carries_retry_after() {
    let h = Harness::start(2).await;
    let client = h.client();
    for _ in 0..2 {
        client
            .describe_application_groups(&creds(), REGION, "app-1")
            .await
            .unwrap();
    }
    let err = client
        .delete_instances(&creds(), REGION, "app-1", &ids(&["i-a"]))
        .await
        .unwrap_err();
    assert_api_error(&err, "Throttling.User", ErrorClass::Retryable);
    assert!(err.is_throttling());
    let wait = err.retry_after().expect("x-acs-retry-after is passed on");
    assert!(
        wait >= Duration::from_secs(1) && wait <= Duration::from_secs(60),
        "{wait:?}"
    );
    assert!(
        h.sim.ledger().deletions.is_empty(),
        "a throttled call executes nothing"
    );
}

#[tokio::test]
async fn terminal_unknown_app_wrong_secret_unknown_instance() {
    let h = Harness::start(0).await;
    let client = h.client();
    let err = client
        .delete_instances(&creds(), REGION, "app-missing", &ids(&["i-a"]))
        .await
        .unwrap_err();
    assert_api_error(&err, "InvalidApplication.NotFound", ErrorClass::Terminal);

    let err = client
        .list_change_orders(&creds(), REGION, "app-missing", None, 1, 10)
        .await
        .unwrap_err();
    assert_api_error(&err, "InvalidAppId.NotFound", ErrorClass::Terminal);

    for version in [SignatureVersion::V1, SignatureVersion::V3] {
        let wrong = Credentials::new(AK, "not-the-secret", None);
        let client = h.client_with(version, Duration::from_secs(5));
        let err = client
            .delete_instances(&wrong, REGION, "app-1", &ids(&["i-a"]))
            .await
            .unwrap_err();
        assert_api_error(&err, "SignatureDoesNotMatch", ErrorClass::Terminal);
        assert!(!format!("{err}").contains("not-the-secret"));
    }

    let err = client
        .delete_instances(&creds(), REGION, "app-1", &ids(&["i-a", "i-ghost"]))
        .await
        .unwrap_err();
    assert_api_error(&err, "InvalidParameter.WithMessage", ErrorClass::Terminal);
    assert!(err.to_string().contains("i-ghost"), "{err}");
    assert!(h.sim.ledger().deletions.is_empty());
}

#[tokio::test]
async fn ambiguous_dropped_connection_after_commit() {
    let h = Harness::start(0).await;
    h.faults("app-1", json!([{"kind": "ambiguous"}]));
    let client = h.client();
    let started = Instant::now();
    let err = client
        .delete_instances(&creds(), REGION, "app-1", &ids(&["i-a"]))
        .await
        .unwrap_err();
    assert!(matches!(err, SaeError::NoAnswer { .. }), "{err:?}");
    assert_eq!(err.class(), ErrorClass::Ambiguous);
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "a closed connection, not a timeout"
    );

    let ledger = h.sim.ledger();
    let deletes: Vec<_> = ledger
        .requests
        .iter()
        .filter(|r| r.operation == "DeleteInstances")
        .collect();
    assert_eq!(
        deletes.len(),
        1,
        "the client must not resend a non-idempotent call by itself"
    );
    let record = deletes[0];
    assert!(record.committed, "{record:?}");
    assert_eq!(record.code, "NoAnswer");
    // What the controller does next: find the change order the lost call created.
    let page = client
        .list_change_orders(&creds(), REGION, "app-1", Some("CoDeleteInstances"), 1, 10)
        .await
        .unwrap();
    assert_eq!(
        Some(&page.change_orders[0].change_order_id),
        record.change_order_id.as_ref()
    );
}

#[tokio::test]
async fn ambiguous_internal_error_with_and_without_commit() {
    let h = Harness::start(0).await;
    h.faults(
        "app-1",
        json!([{"kind": "http500", "commit": false}, {"kind": "http500", "commit": true}]),
    );
    let client = h.client();
    for committed in [false, true] {
        let err = client
            .delete_instances(&creds(), REGION, "app-1", &ids(&["i-a"]))
            .await
            .unwrap_err();
        assert_api_error(&err, "InternalError", ErrorClass::Ambiguous);
        assert!(
            matches!(
                err,
                SaeError::Api {
                    http_status: 500,
                    ..
                }
            ),
            "{err:?}"
        );
        assert_eq!(h.sim.ledger().deletions.len(), usize::from(committed));
        assert_eq!(h.committed_requests(), usize::from(committed));
    }
}

#[tokio::test]
async fn ambiguous_slow_answer_past_the_client_timeout() {
    let h = Harness::start(0).await;
    h.faults(
        "app-1",
        json!([{"kind": "slow", "millis": 1500, "commit": true}]),
    );
    let client = h.client_with(SignatureVersion::V3, Duration::from_millis(300));
    let err = client
        .delete_instances(&creds(), REGION, "app-1", &ids(&["i-a"]))
        .await
        .unwrap_err();
    assert!(matches!(err, SaeError::NoAnswer { .. }), "{err:?}");
    assert_eq!(err.class(), ErrorClass::Ambiguous);
    // The deletion happened although the client gave up.
    assert_eq!(h.sim.ledger().deletions.len(), 1);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let ledger = h.sim.ledger();
    let record = ledger
        .requests
        .iter()
        .find(|r| r.operation == "DeleteInstances")
        .unwrap();
    assert_eq!(
        (
            record.committed,
            record.fault.as_deref(),
            record.http_status
        ),
        (true, Some("slow"), 200)
    );
}

#[tokio::test]
async fn ambiguous_garbage_body() {
    let h = Harness::start(0).await;
    h.faults("app-1", json!([{"kind": "garbage", "commit": true}, {"kind": "garbage", "operation": "DescribeApplicationGroups"}]));
    let client = h.client();
    let err = client
        .delete_instances(&creds(), REGION, "app-1", &ids(&["i-a"]))
        .await
        .unwrap_err();
    assert!(matches!(err, SaeError::NoAnswer { .. }), "{err:?}");
    assert_eq!(err.class(), ErrorClass::Ambiguous);
    assert_eq!(h.committed_requests(), 1);
    let err = client
        .describe_application_groups(&creds(), REGION, "app-1")
        .await
        .unwrap_err();
    assert_eq!(err.class(), ErrorClass::Ambiguous, "{err:?}");
}
