//! HTTP-level tests of sae-simulator, run in-process: signatures (both schemes), the gateway's
//! refusals, the model's answers, faults, garbage input and the admin API.

use std::io::{Read as _, Write as _};
use std::sync::Arc;
use std::time::Duration;

use jiff::{SignedDuration, Timestamp};
use sae_controller::sae::Credentials;
use sae_controller::sae::sign::{self, SignInput, SignatureVersion};
use sae_controller::simulator::{
    AccessKeySpec, AppSpec, GroupSpec, ManualClock, ModelConfig, Operation, Seed, Simulator,
    SimulatorConfig,
};
use serde_json::{Value, json};

const AK: &str = "AKsimtest";
const SECRET: &str = "simtest-secret-value";
const BOTH: [SignatureVersion; 2] = [SignatureVersion::V1, SignatureVersion::V3];

struct Harness {
    sim: Arc<Simulator>,
    clock: Arc<ManualClock>,
    base: String,
    host: String,
    http: reqwest::Client,
}

fn creds() -> Credentials {
    Credentials::new(AK, SECRET, None)
}

fn seed() -> Seed {
    Seed {
        access_keys: vec![AccessKeySpec::parse_pair(&format!("{AK}:{SECRET}")).unwrap()],
        apps: vec![AppSpec {
            app_id: "app-1".into(),
            groups: vec![GroupSpec {
                group_id: "g-1".into(),
                group_name: Some("web".into()),
                instance_ids: vec!["i-a".into(), "i-b".into(), "i-c".into()],
            }],
        }],
        faults: vec![],
    }
}

struct Reply {
    status: u16,
    headers: reqwest::header::HeaderMap,
    body: Value,
}

impl Reply {
    fn code(&self) -> &str {
        self.body["Code"].as_str().unwrap_or("<no Code>")
    }
}

impl Harness {
    async fn start(requests_per_minute: u32) -> Self {
        let clock = Arc::new(ManualClock::new("2025-03-01T12:00:00Z".parse().unwrap()));
        let config = SimulatorConfig {
            model: ModelConfig {
                requests_per_minute,
                ..ModelConfig::default()
            },
            seed: Some(seed()),
            clock: clock.clone(),
            ..SimulatorConfig::default()
        };
        let sim = Arc::new(Simulator::new(config).unwrap());
        let addr = sae_controller::simulator::spawn(sim.clone()).await.unwrap();
        Harness {
            sim,
            clock,
            base: format!("http://{addr}"),
            host: addr.to_string(),
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(10))
                .build()
                .unwrap(),
        }
    }

    /// A request signed exactly as the controller's client signs it.
    fn signed(
        &self,
        version: SignatureVersion,
        creds: &Credentials,
        op: Operation,
        query: &[(&str, &str)],
        now: Timestamp,
        nonce: &str,
    ) -> (String, Vec<(String, String)>) {
        let query: Vec<(String, String)> = query
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let input = SignInput {
            method: op.method(),
            host: &self.host,
            path: op.path(),
            query: &query,
            action: op.name(),
            api_version: "2019-05-06",
            body: b"",
            now,
            nonce,
        };
        let headers = sign::signed_headers(version, creds, &input);
        let url = format!("{}{}?{}", self.base, op.path(), sign::encode_query(&query));
        (url, headers)
    }

    async fn send_raw(&self, method: &str, url: &str, headers: &[(String, String)]) -> Reply {
        let mut req = self.http.request(method.parse().unwrap(), url);
        for (k, v) in headers {
            // reqwest writes Host from the URL, the same value that was signed.
            if k != "host" {
                req = req.header(k, v);
            }
        }
        let resp = req.send().await.expect("the simulator answers");
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let text = resp.text().await.unwrap();
        let body = serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"));
        Reply {
            status,
            headers,
            body,
        }
    }

    async fn call_as(
        &self,
        version: SignatureVersion,
        creds: &Credentials,
        op: Operation,
        query: &[(&str, &str)],
    ) -> Reply {
        let nonce = uuid::Uuid::new_v4().to_string();
        let (url, headers) = self.signed(version, creds, op, query, self.sim.now(), &nonce);
        self.send_raw(op.method(), &url, &headers).await
    }

    async fn call(
        &self,
        version: SignatureVersion,
        op: Operation,
        query: &[(&str, &str)],
    ) -> Reply {
        self.call_as(version, &creds(), op, query).await
    }

    async fn admin(&self, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        let mut req = self
            .http
            .request(method.parse().unwrap(), format!("{}{path}", self.base));
        if let Some(body) = body {
            req = req.body(body.to_string());
        }
        let resp = req.send().await.unwrap();
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap();
        (
            status,
            serde_json::from_str(&text)
                .unwrap_or_else(|e| panic!("admin answer not JSON ({e}): {text}")),
        )
    }

    async fn ledger(&self) -> Value {
        self.admin("GET", "/_sim/ledger", None).await.1
    }
}

fn assert_gateway_error(reply: &Reply, status: u16, code: &str) {
    assert_eq!(
        (reply.status, reply.code()),
        (status, code),
        "{}",
        reply.body
    );
    assert!(
        reply.body["RequestId"]
            .as_str()
            .is_some_and(|id| !id.is_empty()),
        "{}",
        reply.body
    );
    assert!(reply.body["Message"].as_str().is_some(), "{}", reply.body);
}

fn assert_sae_error(reply: &Reply, status: u16, code: &str) {
    assert_gateway_error(reply, status, code);
    assert_eq!(reply.body["ErrorCode"], code, "{}", reply.body);
    assert_eq!(reply.body["Success"], false, "{}", reply.body);
}

#[tokio::test]
async fn both_signature_schemes_are_verified_and_accepted() {
    let h = Harness::start(0).await;
    for version in BOTH {
        let reply = h
            .call(
                version,
                Operation::DescribeApplicationGroups,
                &[("AppId", "app-1")],
            )
            .await;
        assert_eq!(reply.status, 200, "{version}: {}", reply.body);
        assert_eq!(reply.body["Success"], true);
        assert_eq!(reply.body["Code"], "200");
        assert_eq!(
            reply.body["Data"],
            json!([{"GroupId": "g-1", "GroupName": "web", "GroupType": 0}])
        );
        assert!(reply.headers.contains_key("x-acs-request-id"));
    }
    let ledger = h.ledger().await;
    let versions: Vec<&str> = ledger["requests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["signatureVersion"].as_str().unwrap())
        .collect();
    assert_eq!(versions, ["v1", "v3"]);
    assert!(
        ledger["requests"]
            .as_array()
            .unwrap()
            .iter()
            .all(|r| r["verified"] == true)
    );
}

#[tokio::test]
async fn a_wrong_secret_or_unknown_key_is_refused() {
    let h = Harness::start(0).await;
    for version in BOTH {
        let wrong = Credentials::new(AK, "not-the-secret", None);
        let reply = h
            .call_as(
                version,
                &wrong,
                Operation::DescribeApplicationGroups,
                &[("AppId", "app-1")],
            )
            .await;
        assert_gateway_error(&reply, 400, "SignatureDoesNotMatch");
        let stranger = Credentials::new("AKnobody", SECRET, None);
        let reply = h
            .call_as(
                version,
                &stranger,
                Operation::DescribeApplicationGroups,
                &[("AppId", "app-1")],
            )
            .await;
        assert_gateway_error(&reply, 400, "InvalidAccessKeyId.NotFound");
    }
    let ledger = h.ledger().await;
    let requests = ledger["requests"].as_array().unwrap();
    assert_eq!(requests.len(), 4);
    assert!(
        requests
            .iter()
            .all(|r| r["verified"] == false && r["committed"] == false)
    );
    assert!(
        !ledger.to_string().contains(SECRET),
        "the ledger must not contain the secret"
    );
}

#[tokio::test]
async fn signed_parts_cannot_be_changed() {
    let h = Harness::start(0).await;
    for version in BOTH {
        let nonce = format!("tamper-{version}");
        let (url, headers) = h.signed(
            version,
            &creds(),
            Operation::DeleteInstances,
            &[("AppId", "app-1"), ("InstanceIds", "i-a")],
            h.sim.now(),
            &nonce,
        );
        let reply = h
            .send_raw("PUT", &url.replace("i-a", "i-b"), &headers)
            .await;
        assert_gateway_error(&reply, 400, "SignatureDoesNotMatch");
        let mut added = headers.clone();
        added.push(("x-acs-extra".into(), "sneaked".into()));
        let reply = h.send_raw("PUT", &url, &added).await;
        let want = if version == SignatureVersion::V1 {
            "SignatureDoesNotMatch"
        } else {
            "IncompleteSignature"
        };
        assert_gateway_error(&reply, 400, want);
    }
    // V3 binds the body through x-acs-content-sha256.
    let (url, headers) = h.signed(
        SignatureVersion::V3,
        &creds(),
        Operation::DeleteInstances,
        &[("AppId", "app-1"), ("InstanceIds", "i-a")],
        h.sim.now(),
        "body",
    );
    let mut req = h.http.put(&url).body("{\"x\":1}");
    for (k, v) in headers.iter().filter(|(k, _)| k != "host") {
        req = req.header(k, v);
    }
    let resp = req.send().await.unwrap();
    assert_eq!(resp.status(), 400);
    assert!(resp.text().await.unwrap().contains("SignatureDoesNotMatch"));
    assert!(h.ledger().await["deletions"].as_array().unwrap().is_empty());
}

#[tokio::test]
async fn dates_outside_the_skew_window_and_reused_nonces_are_refused() {
    let h = Harness::start(0).await;
    for version in BOTH {
        let stale = h.sim.now() - SignedDuration::from_mins(16);
        let (url, headers) = h.signed(
            version,
            &creds(),
            Operation::DescribeApplicationGroups,
            &[("AppId", "app-1")],
            stale,
            "n-stale",
        );
        assert_gateway_error(
            &h.send_raw("GET", &url, &headers).await,
            400,
            "InvalidTimeStamp.Expired",
        );
        let future = h.sim.now() + SignedDuration::from_mins(16);
        let (url, headers) = h.signed(
            version,
            &creds(),
            Operation::DescribeApplicationGroups,
            &[("AppId", "app-1")],
            future,
            "n-future",
        );
        assert_gateway_error(
            &h.send_raw("GET", &url, &headers).await,
            400,
            "InvalidTimeStamp.Expired",
        );

        let date_header = if version == SignatureVersion::V1 {
            "date"
        } else {
            "x-acs-date"
        };
        let (url, headers) = h.signed(
            version,
            &creds(),
            Operation::DescribeApplicationGroups,
            &[("AppId", "app-1")],
            h.sim.now(),
            "n-nodate",
        );
        let without: Vec<_> = headers
            .iter()
            .filter(|(k, _)| k != date_header)
            .cloned()
            .collect();
        let reply = h.send_raw("GET", &url, &without).await;
        // V3 names x-acs-date in SignedHeaders, but the time is checked before the signature.
        assert_gateway_error(&reply, 400, "InvalidTimeStamp.Format");

        let nonce = format!("n-reused-{version}");
        let (url, headers) = h.signed(
            version,
            &creds(),
            Operation::DescribeApplicationGroups,
            &[("AppId", "app-1")],
            h.sim.now(),
            &nonce,
        );
        assert_eq!(h.send_raw("GET", &url, &headers).await.status, 200);
        assert_gateway_error(
            &h.send_raw("GET", &url, &headers).await,
            400,
            "SignatureNonceUsed",
        );
    }
}

#[tokio::test]
async fn security_tokens_are_required_for_sts_keys() {
    let h = Harness::start(0).await;
    let key = json!({"accessKeyId": "STS.key", "accessKeySecret": "sts-secret", "securityToken": "the-token"});
    let (status, answer) = h.admin("POST", "/_sim/access-keys", Some(key)).await;
    assert_eq!((status, answer), (200, json!({"accessKeyId": "STS.key"})));
    for version in BOTH {
        let good = Credentials::new("STS.key", "sts-secret", Some("the-token".into()));
        assert_eq!(
            h.call_as(
                version,
                &good,
                Operation::DescribeApplicationGroups,
                &[("AppId", "app-1")]
            )
            .await
            .status,
            200
        );
        let other = Credentials::new("STS.key", "sts-secret", Some("another-token".into()));
        let reply = h
            .call_as(
                version,
                &other,
                Operation::DescribeApplicationGroups,
                &[("AppId", "app-1")],
            )
            .await;
        assert_gateway_error(&reply, 400, "InvalidSecurityToken.MismatchWithAccessKey");
    }
}

#[tokio::test]
async fn deletion_lifecycle_follows_the_clock() {
    let h = Harness::start(0).await;
    let v = SignatureVersion::V1;
    let reply = h
        .call(
            v,
            Operation::DeleteInstances,
            &[("AppId", "app-1"), ("InstanceIds", "i-a,i-b")],
        )
        .await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    let co = reply.body["Data"]["ChangeOrderId"]
        .as_str()
        .unwrap()
        .to_string();

    let running = h
        .call(
            v,
            Operation::DeleteInstances,
            &[("AppId", "app-1"), ("InstanceIds", "i-c")],
        )
        .await;
    assert_sae_error(&running, 400, "Application.ChangerOrderRunning");

    let described = h
        .call(v, Operation::DescribeChangeOrder, &[("ChangeOrderId", &co)])
        .await;
    let data = &described.body["Data"];
    assert_eq!(data["Status"], 1);
    assert_eq!(data["CoTypeCode"], "CoDeleteInstances");
    assert_eq!(data["AppId"], "app-1");
    assert_eq!(data["CreateTime"], "2025-03-01 20:00:00");
    assert_eq!(data["Pipelines"], json!([]));

    h.clock.advance(SignedDuration::from_secs(2));
    let described = h
        .call(v, Operation::DescribeChangeOrder, &[("ChangeOrderId", &co)])
        .await;
    assert_eq!(described.body["Data"]["Status"], 2);
    let instances = h
        .call(
            v,
            Operation::DescribeApplicationInstances,
            &[("AppId", "app-1"), ("GroupId", "g-1")],
        )
        .await;
    assert_eq!(
        instances.body["Data"],
        json!({"Instances": [{"InstanceId": "i-c", "GroupId": "g-1", "InstanceContainerStatus": "Running"}], "CurrentPage": 1, "PageSize": 10, "TotalSize": 1})
    );
    let list = h
        .call(
            v,
            Operation::ListChangeOrders,
            &[("AppId", "app-1"), ("CoType", "CoDeleteInstances")],
        )
        .await;
    assert_eq!(list.body["Data"]["TotalSize"], 1);
    assert_eq!(
        list.body["Data"]["ChangeOrderList"][0]["ChangeOrderId"],
        co.as_str()
    );
    assert_eq!(list.body["Data"]["ChangeOrderList"][0]["Status"], 2);

    let ledger = h.ledger().await;
    let deletions = ledger["deletions"].as_array().unwrap();
    assert_eq!(deletions.len(), 1);
    assert_eq!(deletions[0]["instanceIds"], json!(["i-a", "i-b"]));
    assert_eq!(deletions[0]["finalStatus"], 2);
    let committed: Vec<&Value> = ledger["requests"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["committed"] == true)
        .collect();
    assert_eq!(committed.len(), 1);
    assert_eq!(committed[0]["changeOrderId"], co.as_str());
    assert_eq!(
        committed[0]["params"],
        json!({"AppId": "app-1", "InstanceIds": "i-a,i-b"})
    );
    assert_eq!(committed[0]["code"], "OK");
    let refused = &ledger["requests"][1];
    assert_eq!(
        (refused["code"].as_str(), refused["httpStatus"].as_u64()),
        (Some("Application.ChangerOrderRunning"), Some(400))
    );
}

#[tokio::test]
async fn parameters_and_unknown_objects_get_sae_errors() {
    let h = Harness::start(0).await;
    let v = SignatureVersion::V3;
    let reply = h
        .call(v, Operation::DeleteInstances, &[("AppId", "app-1")])
        .await;
    assert_sae_error(&reply, 400, "InvalidParameter.NotEmpty");
    let reply = h
        .call(
            v,
            Operation::DeleteInstances,
            &[("AppId", ""), ("InstanceIds", "i-a")],
        )
        .await;
    assert_sae_error(&reply, 400, "InvalidParameter.NotEmpty");
    let reply = h
        .call(
            v,
            Operation::DeleteInstances,
            &[("AppId", "app-x"), ("InstanceIds", "i-a")],
        )
        .await;
    assert_sae_error(&reply, 400, "InvalidApplication.NotFound");
    let reply = h
        .call(
            v,
            Operation::DeleteInstances,
            &[("AppId", "app-1"), ("InstanceIds", "i-a,i-nope")],
        )
        .await;
    assert_sae_error(&reply, 400, "InvalidParameter.WithMessage");
    assert!(reply.body["Message"].as_str().unwrap().contains("i-nope"));
    let reply = h
        .call(v, Operation::ListChangeOrders, &[("AppId", "app-x")])
        .await;
    assert_sae_error(&reply, 404, "InvalidAppId.NotFound");
    let reply = h
        .call(
            v,
            Operation::DescribeChangeOrder,
            &[("ChangeOrderId", "co-unknown")],
        )
        .await;
    assert_sae_error(&reply, 400, "InvalidParameter.WithMessage");
    let reply = h
        .call(
            v,
            Operation::DescribeApplicationGroups,
            &[("AppId", "app-x")],
        )
        .await;
    assert_sae_error(&reply, 400, "InvalidApplication.NotFound");
    let reply = h
        .call(
            v,
            Operation::DescribeApplicationInstances,
            &[("AppId", "app-1"), ("GroupId", "g-x")],
        )
        .await;
    assert_sae_error(&reply, 400, "InvalidParameter.WithMessage");
    let reply = h
        .call(
            v,
            Operation::DescribeApplicationInstances,
            &[("AppId", "app-1"), ("GroupId", "g-1"), ("PageSize", "0")],
        )
        .await;
    assert_sae_error(&reply, 400, "InvalidParameter.WithMessage");
    assert!(h.ledger().await["deletions"].as_array().unwrap().is_empty());
}

#[tokio::test]
async fn the_quota_throttles_with_a_retry_after() {
    let h = Harness::start(2).await;
    let v = SignatureVersion::V1;
    for _ in 0..2 {
        assert_eq!(
            h.call(
                v,
                Operation::DescribeApplicationGroups,
                &[("AppId", "app-1")]
            )
            .await
            .status,
            200
        );
    }
    h.clock.advance(SignedDuration::from_secs(15));
    let reply = h
        .call(
            v,
            Operation::DescribeApplicationGroups,
            &[("AppId", "app-1")],
        )
        .await;
    assert_gateway_error(&reply, 400, "Throttling.User");
    // Milliseconds, as SAE means the header.
    assert_eq!(reply.headers.get("x-acs-retry-after").unwrap(), "45000");
    h.clock.advance(SignedDuration::from_millis(44_999));
    assert_gateway_error(
        &h.call(
            v,
            Operation::DescribeApplicationGroups,
            &[("AppId", "app-1")],
        )
        .await,
        400,
        "Throttling.User",
    );
    h.clock.advance(SignedDuration::from_millis(1));
    assert_eq!(
        h.call(
            v,
            Operation::DescribeApplicationGroups,
            &[("AppId", "app-1")]
        )
        .await
        .status,
        200
    );
}

#[tokio::test]
async fn a_key_switched_to_throttling_is_refused_every_call_until_switched_back() {
    let h = Harness::start(0).await;
    let v = SignatureVersion::V1;
    let groups = || {
        h.call(
            v,
            Operation::DescribeApplicationGroups,
            &[("AppId", "app-1")],
        )
    };
    assert_eq!(groups().await.status, 200);
    let (status, answer) = h
        .admin(
            "POST",
            "/_sim/throttle",
            Some(json!({"accessKeyId": AK, "retryAfterMillis": 1500})),
        )
        .await;
    assert_eq!((status, answer["throttled"].clone()), (200, json!(true)));
    for _ in 0..3 {
        let reply = groups().await;
        assert_gateway_error(&reply, 400, "Throttling.User");
        assert_eq!(reply.headers.get("x-acs-retry-after").unwrap(), "1500");
    }
    let (_, config) = h.admin("GET", "/_sim/config", None).await;
    assert_eq!(config["throttledAccessKeyIds"], json!([AK]));
    // Without a hint the refusal carries no header.
    h.admin("POST", "/_sim/throttle", Some(json!({"accessKeyId": AK})))
        .await;
    let reply = groups().await;
    assert_gateway_error(&reply, 400, "Throttling.User");
    assert!(reply.headers.get("x-acs-retry-after").is_none());
    h.admin(
        "POST",
        "/_sim/throttle",
        Some(json!({"accessKeyId": AK, "enabled": false})),
    )
    .await;
    assert_eq!(groups().await.status, 200);
    for bad in [
        json!({"accessKeyId": " "}),
        json!({"enabled": true}),
        json!({"accessKeyId": AK, "x": 1}),
    ] {
        assert_eq!(
            h.admin("POST", "/_sim/throttle", Some(bad.clone())).await.0,
            400,
            "{bad}"
        );
    }
}

#[tokio::test]
async fn an_error_fault_can_carry_a_retry_hint() {
    let h = Harness::start(0).await;
    let faults = json!({"appId": "app-1", "faults": [
        {"kind": "error", "code": "Throttling.User", "operation": "*", "retryAfterMillis": 1000}]});
    assert_eq!(h.admin("POST", "/_sim/faults", Some(faults)).await.0, 200);
    let v = SignatureVersion::V1;
    let reply = h
        .call(
            v,
            Operation::DescribeApplicationGroups,
            &[("AppId", "app-1")],
        )
        .await;
    assert_eq!(reply.status, 400);
    assert_eq!(reply.code(), "Throttling.User");
    assert_eq!(reply.headers.get("x-acs-retry-after").unwrap(), "1000");
    let reply = h
        .call(
            v,
            Operation::DescribeApplicationGroups,
            &[("AppId", "app-1")],
        )
        .await;
    assert_eq!(reply.status, 200, "the fault fired once");
}

/// Sends raw bytes and returns whatever the server wrote before closing (or timing out).
fn raw_exchange(addr: &str, bytes: &[u8]) -> String {
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(2)))
        .unwrap();
    stream.write_all(bytes).unwrap();
    let mut out = Vec::new();
    let _ = stream.read_to_end(&mut out);
    String::from_utf8_lossy(&out).into_owned()
}

#[tokio::test]
async fn garbage_requests_get_sae_style_errors_and_never_kill_the_simulator() {
    let h = Harness::start(0).await;
    let get = |path: &str| h.http.get(format!("{}{path}", h.base)).send();
    let read = |resp: reqwest::Response| async move {
        let status = resp.status().as_u16();
        let body: Value =
            serde_json::from_str(&resp.text().await.unwrap()).expect("SAE-style JSON");
        Reply {
            status,
            headers: Default::default(),
            body,
        }
    };

    assert_gateway_error(
        &read(get("/").await.unwrap()).await,
        404,
        "InvalidApi.NotFound",
    );
    assert_gateway_error(
        &read(get("/pop/v1/sam/app/nothing?AppId=1").await.unwrap()).await,
        404,
        "InvalidApi.NotFound",
    );
    let wrong_method = h
        .http
        .delete(format!("{}{}", h.base, Operation::DeleteInstances.path()))
        .send()
        .await
        .unwrap();
    assert_gateway_error(&read(wrong_method).await, 404, "InvalidApi.NotFound");
    let path = Operation::DescribeApplicationGroups.path();
    assert_gateway_error(
        &read(get(&format!("{path}?AppId=app-1")).await.unwrap()).await,
        400,
        "InvalidParameter.NotEmpty",
    );
    assert_gateway_error(
        &read(get(&format!("{path}?AppId=%zz")).await.unwrap()).await,
        400,
        "InvalidParameter",
    );
    assert_gateway_error(
        &read(get(&format!("{path}?AppId=%C3%28")).await.unwrap()).await,
        400,
        "InvalidParameter",
    );
    let huge = "x".repeat(20_000);
    assert_gateway_error(
        &read(get(&format!("{path}?AppId={huge}")).await.unwrap()).await,
        400,
        "InvalidParameter",
    );
    for auth in [
        "acs",
        "acs nocolon",
        "Basic dXNlcjpwYXNz",
        "ACS3-HMAC-SHA256 Credential=AK",
        "ACS3-HMAC-SHA256 ,,,==",
    ] {
        let resp = h
            .http
            .get(format!("{}{path}?AppId=app-1", h.base))
            .header("authorization", auth)
            .send()
            .await
            .unwrap();
        let reply = read(resp).await;
        assert_eq!(reply.status, 400, "{auth}: {}", reply.body);
        assert!(
            ["IncompleteSignature", "InvalidParameter.NotEmpty"].contains(&reply.code()),
            "{auth}: {}",
            reply.body
        );
    }
    let big_body = h
        .http
        .put(format!(
            "{}{}?AppId=app-1&InstanceIds=i-a",
            h.base,
            Operation::DeleteInstances.path()
        ))
        .body(vec![b'x'; 200_000])
        .send()
        .await
        .unwrap();
    assert_gateway_error(&read(big_body).await, 400, "InvalidParameter");

    let addr = h.host.clone();
    let answers = tokio::task::spawn_blocking(move || {
        [
            raw_exchange(&addr, b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03garbage-tls-hello\r\n\r\n"),
            raw_exchange(&addr, b"GET /pop/v1/sam/app/describeApplicationGroups?AppId=\xff\xfe HTTP/1.1\r\nHost: x\r\n\r\n"),
            raw_exchange(&addr, b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: nope\r\n\r\n"),
            raw_exchange(&addr, b"\r\n\r\n\r\n"),
        ]
    })
    .await
    .unwrap();
    for answer in &answers {
        assert!(
            !answer.starts_with("HTTP/1.1 2"),
            "garbage must not succeed: {answer}"
        );
    }
    // Whatever came in, the simulator is still serving.
    let (status, health) = h.admin("GET", "/_sim/healthz", None).await;
    assert_eq!((status, health), (200, json!({"status": "ok"})));
    assert_eq!(
        h.call(
            SignatureVersion::V1,
            Operation::DescribeApplicationGroups,
            &[("AppId", "app-1")]
        )
        .await
        .status,
        200
    );
    let ledger = h.ledger().await;
    assert!(
        ledger["requests"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["operation"] == "Unknown")
    );
}

#[tokio::test]
async fn admin_api_seeds_scripts_reports_and_resets() {
    let h = Harness::start(0).await;
    let apps = json!({"apps": [{"appId": "app-2", "groups": [{"groupId": "g-2", "instanceIds": ["i-x", "i-y"]}]}]});
    assert_eq!(
        h.admin("POST", "/_sim/apps", Some(apps)).await,
        (200, json!({"apps": ["app-2"]}))
    );
    let (status, view) = h.admin("GET", "/_sim/apps/app-2", None).await;
    assert_eq!(status, 200);
    assert_eq!(view["groups"][0]["instanceIds"], json!(["i-x", "i-y"]));
    assert_eq!(view["changeOrders"], json!([]));
    assert_eq!(h.admin("GET", "/_sim/apps/app-404", None).await.0, 404);

    let faults = json!({"appId": "app-2", "faults": [
        {"kind": "error", "code": "System.Upgrading", "times": 1},
        {"kind": "changeOrderResult", "status": 6, "errorMessage": "terminated by test"}
    ]});
    assert_eq!(
        h.admin("POST", "/_sim/faults", Some(faults)).await,
        (200, json!({"appId": "app-2", "added": 2}))
    );
    for bad in [
        json!({"appId": "app-2", "faults": [{"kind": "volcano"}]}),
        json!({"appId": "app-2", "faults": [{"kind": "error"}]}),
        json!({"appId": "app-404", "faults": []}),
        json!({"appId": "app-2", "faults": [{"kind": "changeOrderResult", "status": 4}]}),
    ] {
        let (status, answer) = h.admin("POST", "/_sim/faults", Some(bad.clone())).await;
        assert_eq!(status, 400, "{bad} -> {answer}");
        assert!(answer["error"].is_string());
    }
    assert_eq!(
        h.admin("POST", "/_sim/apps", Some(json!({"nope": 1})))
            .await
            .0,
        400
    );
    let (status, answer) = h
        .admin("POST", "/_sim/faults", Some(json!("not an object")))
        .await;
    assert_eq!(status, 400, "{answer}");
    assert_eq!(h.admin("GET", "/_sim/nothing", None).await.0, 404);

    let v = SignatureVersion::V3;
    let q = [("AppId", "app-2"), ("InstanceIds", "i-x")];
    assert_sae_error(
        &h.call(v, Operation::DeleteInstances, &q).await,
        400,
        "System.Upgrading",
    );
    let accepted = h.call(v, Operation::DeleteInstances, &q).await;
    let co = accepted.body["Data"]["ChangeOrderId"]
        .as_str()
        .unwrap()
        .to_string();
    h.clock.advance(SignedDuration::from_secs(3));
    let described = h
        .call(v, Operation::DescribeChangeOrder, &[("ChangeOrderId", &co)])
        .await;
    assert_eq!(described.body["Data"]["Status"], 6);
    assert_eq!(described.body["Data"]["ErrorMessage"], "terminated by test");
    let (_, view) = h.admin("GET", "/_sim/apps/app-2", None).await;
    assert_eq!(
        view["groups"][0]["instanceIds"],
        json!(["i-x", "i-y"]),
        "a failed change order keeps instances"
    );
    assert_eq!(view["changeOrders"][0]["status"], 6);
    assert_eq!(view["faults"], json!([]));

    let ledger = h.ledger().await;
    let requests = ledger["requests"].as_array().unwrap();
    assert_eq!(requests[0]["fault"], "error");
    assert_eq!(requests[0]["code"], "System.Upgrading");
    assert_eq!(requests[1]["committed"], true);
    assert_eq!(ledger["deletions"][0]["finalStatus"], 6);

    let (status, config) = h
        .admin(
            "POST",
            "/_sim/config",
            Some(json!({"requestsPerMinute": 5, "changeOrderSeconds": 0.5})),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(config["requestsPerMinute"], 5);
    assert_eq!(config["changeOrderSeconds"], 0.5);
    assert!(!config.to_string().contains(SECRET));

    assert_eq!(
        h.admin("POST", "/_sim/reset", None).await,
        (200, json!({"status": "reset"}))
    );
    let ledger = h.ledger().await;
    assert_eq!(ledger, json!({"requests": [], "deletions": []}));
    assert_eq!(h.admin("GET", "/_sim/apps/app-1", None).await.0, 404);
    // Keys survive a reset.
    let reply = h
        .call(
            v,
            Operation::DescribeApplicationGroups,
            &[("AppId", "app-1")],
        )
        .await;
    assert_sae_error(&reply, 400, "InvalidApplication.NotFound");
}

#[tokio::test]
async fn an_ambiguous_fault_commits_then_closes_the_connection_unanswered() {
    let h = Harness::start(0).await;
    let faults = json!({"appId": "app-1", "faults": [{"kind": "ambiguous"}]});
    assert_eq!(h.admin("POST", "/_sim/faults", Some(faults)).await.0, 200);
    let (url, headers) = h.signed(
        SignatureVersion::V1,
        &creds(),
        Operation::DeleteInstances,
        &[("AppId", "app-1"), ("InstanceIds", "i-a")],
        h.sim.now(),
        "amb",
    );
    let mut req = h.http.put(&url);
    for (k, v) in headers.iter().filter(|(k, _)| k != "host") {
        req = req.header(k, v);
    }
    let started = std::time::Instant::now();
    let err = req.send().await.expect_err("no answer must come back");
    assert!(
        !err.is_timeout(),
        "the connection is closed, not left hanging: {err:?}"
    );
    assert!(started.elapsed() < Duration::from_secs(5));
    let ledger = h.ledger().await;
    let record = &ledger["requests"][0];
    assert_eq!(
        (
            record["committed"].as_bool(),
            record["code"].as_str(),
            record["httpStatus"].as_u64()
        ),
        (Some(true), Some("NoAnswer"), Some(0))
    );
    assert_eq!(record["fault"], "ambiguous");
    assert_eq!(
        ledger["deletions"][0]["changeOrderId"],
        record["changeOrderId"]
    );
}

#[tokio::test]
async fn seeding_through_the_admin_api_takes_the_seed_file_shape() {
    // POST /_sim/seed takes what --seed reads.
    let h = Harness::start(0).await;
    let seed = json!({
        "accessKeys": [{"accessKeyId": "AK2", "accessKeySecret": "s2"}],
        "apps": [{"appId": "app-3", "groups": [{"groupId": "g", "instanceIds": ["i-1"]}]}],
        "faults": [{"appId": "app-3", "faults": [{"kind": "http500", "commit": true}]}]
    });
    let (status, answer) = h.admin("POST", "/_sim/seed", Some(seed)).await;
    assert_eq!(status, 200, "{answer}");
    let (_, view) = h.admin("GET", "/_sim/apps/app-3", None).await;
    assert_eq!(view["faults"][0]["kind"], "http500");
    assert_eq!(view["faults"][0]["remaining"], 1);
    let (status, _) = h
        .admin(
            "POST",
            "/_sim/seed",
            Some(json!({"apps": [], "extra": true})),
        )
        .await;
    assert_eq!(status, 400, "unknown seed fields are refused");
}
