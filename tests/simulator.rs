//! HTTP-level tests of sae-simulator, run in-process: signatures (both schemes), the gateway's
//! refusals, the model's answers, faults, garbage input and the admin API; and the binary's flags
//! for what SAE leaves undocumented (time zone and form, clock skew, the instance view).

mod support;

use std::io::{Read as _, Write as _};
use std::sync::Arc;
use std::time::Duration;

use jiff::{SignedDuration, Timestamp};
use sae_controller::sae::Credentials;
use sae_controller::sae::sign::{self, SignInput, SignatureVersion};
use sae_controller::simulator::{
    AccessKeySpec, AppSpec, Clock, GroupSpec, ManualClock, ModelConfig, Operation, Seed, Simulator,
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
        sign_request(&self.host, version, creds, op, query, now, nonce)
    }

    async fn send_raw(&self, method: &str, url: &str, headers: &[(String, String)]) -> Reply {
        send_signed(&self.http, method, url, headers).await
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

/// A request to the simulator at `host`, signed as the controller's client signs it.
fn sign_request(
    host: &str,
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
        host,
        path: op.path(),
        query: &query,
        action: op.name(),
        api_version: "2019-05-06",
        body: b"",
        now,
        nonce,
    };
    let headers = sign::signed_headers(version, creds, &input);
    let url = format!("http://{host}{}?{}", op.path(), sign::encode_query(&query));
    (url, headers)
}

async fn send_signed(
    http: &reqwest::Client,
    method: &str,
    url: &str,
    headers: &[(String, String)],
) -> Reply {
    let mut req = http.request(method.parse().unwrap(), url);
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
    assert_eq!(
        ledger,
        json!({"requests": [], "deletions": [], "repeatedDeletions": []})
    );
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

// ---- Variants of what SAE leaves undocumented: the simulator must be able to show each. ----

impl Harness {
    async fn ok(&self, op: Operation, query: &[(&str, &str)]) -> Value {
        let reply = self.call(SignatureVersion::V3, op, query).await;
        assert_eq!(reply.status, 200, "{op:?} {query:?}: {}", reply.body);
        reply.body["Data"].clone()
    }

    /// An accepted DeleteInstances on app-1; its change order id.
    async fn delete(&self, ids: &str) -> String {
        let data = self
            .ok(
                Operation::DeleteInstances,
                &[("AppId", "app-1"), ("InstanceIds", ids)],
            )
            .await;
        data["ChangeOrderId"].as_str().unwrap().to_string()
    }

    async fn describe(&self, co: &str) -> Value {
        self.ok(Operation::DescribeChangeOrder, &[("ChangeOrderId", co)])
            .await
    }

    async fn rows(&self) -> Vec<Value> {
        let data = self
            .ok(Operation::ListChangeOrders, &[("AppId", "app-1")])
            .await;
        data["ChangeOrderList"].as_array().unwrap().clone()
    }

    /// app-1's instances as DescribeApplicationInstances lists them: `id:status`.
    async fn instances(&self) -> Vec<String> {
        let data = self
            .ok(
                Operation::DescribeApplicationInstances,
                &[("AppId", "app-1"), ("GroupId", "g-1")],
            )
            .await;
        let rows = data["Instances"].as_array().unwrap();
        assert_eq!(data["TotalSize"], rows.len(), "{data}");
        rows.iter()
            .map(|r| {
                format!(
                    "{}:{}",
                    r["InstanceId"].as_str().unwrap(),
                    r["InstanceContainerStatus"].as_str().unwrap()
                )
            })
            .collect()
    }

    async fn configure(&self, settings: Value) -> Value {
        let (status, config) = self.admin("POST", "/_sim/config", Some(settings)).await;
        assert_eq!(status, 200, "{config}");
        config
    }

    fn advance(&self, secs: i64) {
        self.clock.advance(SignedDuration::from_secs(secs));
    }
}

#[tokio::test]
async fn create_time_zone_and_form_are_settable_at_runtime() {
    let h = Harness::start(0).await;
    // 12:00:00.250 UTC, so the millisecond forms show something.
    h.clock.advance(SignedDuration::from_millis(250));
    let co = h.delete("i-a").await;
    h.advance(2);
    // The default: SAE's documented example shape, in UTC+08:00.
    assert_eq!(h.describe(&co).await["CreateTime"], "2025-03-01 20:00:00");
    let row = &h.rows().await[0];
    assert_eq!(row["CreateTime"], "2025-03-01 20:00:00");
    assert_eq!(row["FinishTime"], "2025-03-01 20:00:02");
    assert_eq!(row["CoTypeCode"], "CoDeleteInstances");

    let cases = [
        (
            "UTC",
            "plain",
            json!("2025-03-01 12:00:00"),
            json!("2025-03-01 12:00:02"),
        ),
        (
            "-05:00",
            "millis",
            json!("2025-03-01 07:00:00.250"),
            json!("2025-03-01 07:00:02.250"),
        ),
        (
            "UTC",
            "iso8601",
            json!("2025-03-01T12:00:00Z"),
            json!("2025-03-01T12:00:02Z"),
        ),
        (
            "+08:00",
            "iso8601",
            json!("2025-03-01T20:00:00+08:00"),
            json!("2025-03-01T20:00:02+08:00"),
        ),
        (
            "+08:00",
            "epochMillis",
            json!(1_740_830_400_250_i64),
            json!(1_740_830_402_250_i64),
        ),
        (
            "UTC",
            "epochMillisString",
            json!("1740830400250"),
            json!("1740830402250"),
        ),
        (
            "-05:00",
            "iso8601Local",
            json!("2025-03-01T07:00:00"),
            json!("2025-03-01T07:00:02"),
        ),
        (
            "UTC",
            "epochSeconds",
            json!(1_740_830_400_i64),
            json!(1_740_830_402_i64),
        ),
    ];
    for (zone, form, created, finished) in cases {
        let config = h
            .configure(json!({"createTimeZone": zone, "createTimeFormat": form}))
            .await;
        assert_eq!(config["createTimeFormat"], form);
        assert_eq!(
            h.describe(&co).await["CreateTime"],
            created,
            "{zone} {form}"
        );
        let row = &h.rows().await[0];
        assert_eq!(row["CreateTime"], created, "{zone} {form}");
        assert_eq!(row["FinishTime"], finished, "{zone} {form}");
    }
    assert_eq!(
        h.configure(json!({"createTimeZone": "-05:00"})).await["createTimeZone"],
        "-05:00"
    );

    // Real rows may lack CoTypeCode; DescribeChangeOrder keeps it.
    let config = h.configure(json!({"omitCoTypeCode": true})).await;
    assert_eq!(config["omitCoTypeCode"], true);
    let row = &h.rows().await[0];
    assert!(row.get("CoTypeCode").is_none(), "{row}");
    assert_eq!(row["CoType"], "Delete Instances");
    assert_eq!(h.describe(&co).await["CoTypeCode"], "CoDeleteInstances");
    // The CoType filter still works on the server's side.
    let filtered = h
        .ok(
            Operation::ListChangeOrders,
            &[("AppId", "app-1"), ("CoType", "CoDeleteInstances")],
        )
        .await;
    assert_eq!(filtered["TotalSize"], 1);

    for bad in [
        json!({"createTimeZone": "Asia/Shanghai"}),
        json!({"createTimeZone": "+25:00"}),
        json!({"createTimeFormat": "rfc2822"}),
        json!({"clockSkewSeconds": 1e12}),
        json!({"deletingInstances": "gone"}),
    ] {
        let (status, answer) = h.admin("POST", "/_sim/config", Some(bad.clone())).await;
        assert_eq!(status, 400, "{bad} -> {answer}");
    }
}

fn date_header(reply: &Reply) -> Timestamp {
    let raw = reply
        .headers
        .get("date")
        .expect("every answer has a Date header")
        .to_str()
        .unwrap();
    jiff::fmt::rfc2822::parse(raw)
        .unwrap_or_else(|e| panic!("Date {raw:?}: {e}"))
        .timestamp()
}

#[tokio::test]
async fn every_answer_is_dated_by_saes_clock_which_a_skew_moves() {
    let h = Harness::start(0).await;
    let start: Timestamp = "2025-03-01T12:00:00Z".parse().unwrap();
    let reply = h
        .call(
            SignatureVersion::V1,
            Operation::DescribeApplicationGroups,
            &[("AppId", "app-1")],
        )
        .await;
    // The manual clock, not the machine's: hyper's own Date would say today.
    assert_eq!(
        reply.headers["date"].to_str().unwrap(),
        "Sat, 01 Mar 2025 12:00:00 GMT"
    );
    let refused = h
        .call(
            SignatureVersion::V1,
            Operation::DescribeApplicationGroups,
            &[("AppId", "app-x")],
        )
        .await;
    assert_eq!(date_header(&refused), start);
    let admin = h
        .http
        .get(format!("{}/_sim/healthz", h.base))
        .send()
        .await
        .unwrap();
    assert_eq!(
        admin.headers()["date"].to_str().unwrap(),
        "Sat, 01 Mar 2025 12:00:00 GMT"
    );

    // SAE's clock one hour ahead of the caller's.
    let config = h.configure(json!({"clockSkewSeconds": 3600})).await;
    assert_eq!(config["clockSkewSeconds"], 3600.0);
    assert_eq!(config["now"], "2025-03-01T13:00:00Z");
    assert_eq!(h.sim.now(), start + SignedDuration::from_hours(1));
    // A caller whose clock is an hour behind SAE's is refused, by either scheme.
    for version in BOTH {
        let (url, headers) = h.signed(
            version,
            &creds(),
            Operation::DescribeApplicationGroups,
            &[("AppId", "app-1")],
            h.clock.now(),
            &format!("behind-{version}"),
        );
        let reply = h.send_raw("GET", &url, &headers).await;
        assert_gateway_error(&reply, 400, "InvalidTimeStamp.Expired");
        assert_eq!(date_header(&reply), start + SignedDuration::from_hours(1));
    }
    // One that signs by SAE's clock (the Date it was just shown) is accepted, and the change order
    // it makes is created on SAE's clock.
    let co = h.delete("i-a").await;
    assert_eq!(h.describe(&co).await["CreateTime"], "2025-03-01 21:00:00");
    // Within --max-skew-seconds either way is still fine: SAE 10 minutes behind.
    h.configure(json!({"clockSkewSeconds": -600})).await;
    let (url, headers) = h.signed(
        SignatureVersion::V3,
        &creds(),
        Operation::DescribeApplicationGroups,
        &[("AppId", "app-1")],
        h.clock.now(),
        "slightly-behind",
    );
    let reply = h.send_raw("GET", &url, &headers).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(date_header(&reply), start - SignedDuration::from_mins(10));
    let ledger = h.ledger().await;
    assert_eq!(
        ledger["deletions"][0]["time"], "2025-03-01T13:00:00Z",
        "the ledger is kept in SAE's time"
    );
}

#[tokio::test]
async fn a_failed_change_order_restores_its_instances_so_a_resend_is_accepted() {
    let h = Harness::start(0).await;
    let faults = json!({"appId": "app-1", "faults": [
        {"kind": "changeOrderResult", "status": 3, "errorMessage": "boom"},
        {"kind": "changeOrderResult", "status": 10, "removedInstances": 1},
    ]});
    assert_eq!(h.admin("POST", "/_sim/faults", Some(faults)).await.0, 200);
    let first = h.delete("i-a,i-b").await;
    // While it executes, its instances say they are terminating; the others run.
    assert_eq!(
        h.instances().await,
        ["i-a:Terminating", "i-b:Terminating", "i-c:Running"]
    );
    h.advance(2);
    assert_eq!(h.describe(&first).await["Status"], 3);
    assert_eq!(
        h.instances().await,
        ["i-a:Running", "i-b:Running", "i-c:Running"],
        "a failed change order puts its instances back"
    );
    // So the same deletion sent again is accepted: the at-most-once breach tests must catch.
    let second = h.delete("i-a,i-b").await;
    h.advance(2);
    assert_eq!(h.describe(&second).await["Status"], 10);
    assert_eq!(
        h.instances().await,
        ["i-b:Running", "i-c:Running"],
        "removedInstances: 1 takes the first instance anyway"
    );
    let third = h.delete("i-b").await;
    h.advance(2);
    assert_eq!(h.describe(&third).await["Status"], 2);
    assert_eq!(h.instances().await, ["i-c:Running"]);

    let ledger = h.ledger().await;
    let finals: Vec<&Value> = ledger["deletions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| &d["finalStatus"])
        .collect();
    assert_eq!(finals, [&json!(3), &json!(10), &json!(2)]);
    assert!(
        ledger["deletions"]
            .as_array()
            .unwrap()
            .iter()
            .all(|d| d["source"] == "api")
    );
    assert_eq!(
        ledger["repeatedDeletions"],
        json!([
            {"appId": "app-1", "instanceId": "i-a", "changeOrderIds": [first, second]},
            {"appId": "app-1", "instanceId": "i-b", "changeOrderIds": [first, second, third]},
        ])
    );
    // The same from Rust.
    let repeated = h.sim.ledger().repeated_deletions;
    assert_eq!(repeated.len(), 2);
    assert_eq!(repeated[1].change_order_ids, [first, second, third]);
}

#[tokio::test]
async fn instances_being_deleted_can_look_terminating_running_or_absent() {
    let h = Harness::start(0).await;
    for (view, during) in [
        (
            "terminating",
            vec!["i-a:Terminating", "i-b:Running", "i-c:Running"],
        ),
        ("running", vec!["i-a:Running", "i-b:Running", "i-c:Running"]),
        ("hidden", vec!["i-b:Running", "i-c:Running"]),
    ] {
        let config = h.configure(json!({"deletingInstances": view})).await;
        assert_eq!(config["deletingInstances"], view);
        let faults =
            json!({"appId": "app-1", "faults": [{"kind": "changeOrderResult", "status": 6}]});
        assert_eq!(h.admin("POST", "/_sim/faults", Some(faults)).await.0, 200);
        h.delete("i-a").await;
        assert_eq!(h.instances().await, during, "{view}");
        h.advance(2);
        assert_eq!(
            h.instances().await,
            ["i-a:Running", "i-b:Running", "i-c:Running"],
            "{view}: terminated, so restored"
        );
    }
}

#[tokio::test]
async fn console_change_orders_occupy_the_app_and_are_no_api_deletion() {
    let h = Harness::start(0).await;
    let console = |body: Value| h.admin("POST", "/_sim/apps/app-1/change-orders", Some(body));
    let (status, made) = console(json!({"instanceIds": ["i-a"], "seconds": 10})).await;
    assert_eq!(status, 200, "{made}");
    let co = made["changeOrderId"].as_str().unwrap().to_string();
    // It holds the app: an API deletion is refused as SAE refuses a second change order.
    let refused = h
        .call(
            SignatureVersion::V3,
            Operation::DeleteInstances,
            &[("AppId", "app-1"), ("InstanceIds", "i-b")],
        )
        .await;
    assert_sae_error(&refused, 400, "Application.ChangerOrderRunning");
    let data = h.describe(&co).await;
    assert_eq!(
        (data["Status"].as_i64(), data["CoTypeCode"].as_str()),
        (Some(1), Some("CoDeleteInstances"))
    );
    assert_eq!(
        h.instances().await,
        ["i-a:Terminating", "i-b:Running", "i-c:Running"]
    );
    let row = &h.rows().await[0];
    assert_eq!(row["Source"], "console");
    h.advance(10);
    assert_eq!(h.instances().await, ["i-b:Running", "i-c:Running"]);

    // Another type, later, failing: it occupies the app and deletes nothing.
    let (status, made) = console(json!({
        "coTypeCode": "CoRestartInstances", "instanceIds": ["i-b"], "afterSeconds": 5,
        "seconds": 3, "status": 3, "errorMessage": "restart failed"
    }))
    .await;
    assert_eq!(status, 200, "{made}");
    let restart = made["changeOrderId"].as_str().unwrap().to_string();
    // Not made yet: unknown to the API, listed as scheduled by the admin view.
    assert_sae_error(
        &h.call(
            SignatureVersion::V3,
            Operation::DescribeChangeOrder,
            &[("ChangeOrderId", &restart)],
        )
        .await,
        400,
        "InvalidParameter.WithMessage",
    );
    let (_, view) = h.admin("GET", "/_sim/apps/app-1", None).await;
    assert_eq!(
        view["scheduledChangeOrders"][0]["changeOrderId"],
        restart.as_str()
    );
    h.advance(5);
    let data = h.describe(&restart).await;
    assert_eq!(data["Status"], 1);
    assert_eq!(data["CoType"], "Batch Restart Instances");
    assert_eq!(h.instances().await, ["i-b:Running", "i-c:Running"]);
    assert_sae_error(
        &h.call(
            SignatureVersion::V3,
            Operation::DeleteInstances,
            &[("AppId", "app-1"), ("InstanceIds", "i-b")],
        )
        .await,
        400,
        "Application.ChangerOrderRunning",
    );
    h.advance(3);
    let data = h.describe(&restart).await;
    assert_eq!(
        (data["Status"].as_i64(), data["ErrorMessage"].as_str()),
        (Some(3), Some("restart failed"))
    );
    // A CoType filter sees each type apart.
    let restarts = h
        .ok(
            Operation::ListChangeOrders,
            &[("AppId", "app-1"), ("CoType", "CoRestartInstances")],
        )
        .await;
    assert_eq!(restarts["TotalSize"], 1);

    // The fault form (and so the seed's `faults`): a console CoDeploy queued behind an API deletion.
    let api = h.delete("i-b").await;
    let faults = json!({"appId": "app-1", "faults": [{"kind": "consoleChangeOrder", "coTypeCode": "CoDeploy", "seconds": 4}]});
    assert_eq!(
        h.admin("POST", "/_sim/faults", Some(faults)).await,
        (200, json!({"appId": "app-1", "added": 1}))
    );
    h.advance(2);
    assert_eq!(h.describe(&api).await["Status"], 2);
    let rows = h.rows().await;
    assert_eq!(rows[0]["CoTypeCode"], "CoDeploy");
    assert_eq!(rows[0]["Status"], 1);
    assert_eq!(
        rows[0]["CreateTime"], rows[1]["FinishTime"],
        "made as the API one ended"
    );

    let ledger = h.ledger().await;
    let deletions = ledger["deletions"].as_array().unwrap();
    let sources: Vec<(&str, &str)> = deletions
        .iter()
        .map(|d| {
            (
                d["changeOrderId"].as_str().unwrap(),
                d["source"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(sources, [(co.as_str(), "console"), (api.as_str(), "api")]);
    assert!(
        ledger["requests"]
            .as_array()
            .unwrap()
            .iter()
            .all(|r| r["changeOrderId"] != co.as_str()),
        "no request made the console's change order"
    );
    assert_eq!(ledger["repeatedDeletions"], json!([]));

    for (path, bad, want) in [
        (
            "/_sim/apps/app-404/change-orders",
            json!({"instanceIds": ["i-c"]}),
            404,
        ),
        (
            "/_sim/apps/app-1/change-orders",
            json!({"instanceIds": ["i-gone"]}),
            400,
        ),
        (
            "/_sim/apps/app-1/change-orders",
            json!({"instanceIds": ["i-a"]}),
            400,
        ),
        ("/_sim/apps/app-1/change-orders", json!({}), 400),
        (
            "/_sim/apps/app-1/change-orders",
            json!({"coTypeCode": "Reboot"}),
            400,
        ),
        (
            "/_sim/apps/app-1/change-orders",
            json!({"instanceIds": ["i-c"], "status": 1}),
            400,
        ),
        (
            "/_sim/apps/app-1/change-orders",
            json!({"instanceIds": ["i-c"], "at": "2000-01-01T00:00:00Z"}),
            400,
        ),
        (
            "/_sim/apps/app-1/change-orders",
            json!({"instanceIds": ["i-c"], "tpyo": 1}),
            400,
        ),
        (
            "/_sim/apps//change-orders",
            json!({"instanceIds": ["i-c"]}),
            404,
        ),
        (
            "/_sim/apps/change-orders",
            json!({"instanceIds": ["i-c"]}),
            404,
        ),
    ] {
        let (status, answer) = h.admin("POST", path, Some(bad.clone())).await;
        assert_eq!(status, want, "{path} {bad} -> {answer}");
    }
}

#[tokio::test]
async fn slow_starting_change_orders_wait_for_approval_then_prepare() {
    let h = Harness::start(0).await;
    let faults = json!({"appId": "app-1", "faults": [
        {"kind": "slowStart", "approvalSeconds": 5, "preparingSeconds": 10}
    ]});
    assert_eq!(h.admin("POST", "/_sim/faults", Some(faults)).await.0, 200);
    let co = h.delete("i-a").await;
    let mut seen = Vec::new();
    for step in [0, 4, 1, 9, 1, 1] {
        h.advance(step);
        let status = h.describe(&co).await["Status"].as_i64().unwrap();
        let list_status = h.rows().await[0]["Status"].as_i64().unwrap();
        assert_eq!(status, list_status);
        seen.push((status, h.instances().await[0].clone()));
    }
    let want = [
        (11, "i-a:Running"),
        (11, "i-a:Running"),
        (0, "i-a:Running"),
        (0, "i-a:Running"),
        (1, "i-a:Terminating"),
        (1, "i-a:Terminating"),
    ];
    assert_eq!(
        seen,
        want.map(|(s, i)| (s, i.to_string())),
        "approval, then preparing, then executing"
    );
    // Neither running nor done, yet it holds the app all along.
    h.advance(2);
    assert_eq!(h.describe(&co).await["Status"], 2);
    // The fault was for one change order: the next starts at once.
    let next = h.delete("i-b").await;
    assert_eq!(h.describe(&next).await["Status"], 1);

    let (status, _) = h
        .admin(
            "POST",
            "/_sim/faults",
            Some(json!({"appId": "app-1", "faults": [{"kind": "slowStart"}]})),
        )
        .await;
    assert_eq!(status, 400, "a slowStart without any wait is refused");
}

/// Whether two instants are within five minutes of each other (for a real clock against a
/// process's clock; the skews tested are hours).
fn close(a: Timestamp, b: Timestamp) -> bool {
    a.duration_since(b).abs() < SignedDuration::from_mins(5)
}

#[tokio::test]
async fn the_binary_takes_every_variant_as_a_flag_and_switches_at_runtime() {
    let key = format!("{AK}:{SECRET}");
    let sim = support::Simulator::spawn(&[
        "--access-key",
        &key,
        "--create-time-zone",
        "UTC",
        "--create-time-format",
        "iso8601",
        "--omit-co-type-code",
        "--clock-skew-seconds",
        "-7200",
        "--deleting-instances",
        "hidden",
        "--change-order-seconds",
        "600",
        "--requests-per-minute",
        "0",
        "--access-key",
        "AKnoisy:noisy-secret",
        "--key-requests-per-minute",
        "AKnoisy=1",
    ]);
    let config = sim.admin_get("/_sim/config").await;
    assert_eq!(
        (
            &config["createTimeZone"],
            &config["createTimeFormat"],
            &config["omitCoTypeCode"],
            &config["clockSkewSeconds"],
            &config["deletingInstances"],
        ),
        (
            &json!("+00:00"),
            &json!("iso8601"),
            &json!(true),
            &json!(-7200.0),
            &json!("hidden")
        )
    );
    sim.admin_post(
        "/_sim/apps",
        json!({"apps": [
            {"appId": "app-1", "groups": [{"groupId": "g-1", "instanceIds": ["i-a", "i-b"]}]},
            {"appId": "app-2", "groups": [{"groupId": "g-2", "instanceIds": ["i-x"]}]},
        ]}),
    )
    .await;
    let host = sim.url().strip_prefix("http://").unwrap().to_string();
    let http = reqwest::Client::new();
    let sae_now = || Timestamp::now() - SignedDuration::from_hours(2);
    let call = |op: Operation, query: Vec<(&'static str, String)>, now: Timestamp| {
        let (host, http) = (host.clone(), http.clone());
        async move {
            let query: Vec<(&str, &str)> = query.iter().map(|(k, v)| (*k, v.as_str())).collect();
            let nonce = uuid::Uuid::new_v4().to_string();
            let (url, headers) = sign_request(
                &host,
                SignatureVersion::V3,
                &creds(),
                op,
                &query,
                now,
                &nonce,
            );
            send_signed(&http, op.method(), &url, &headers).await
        }
    };
    let app = |id: &str| vec![("AppId", id.to_string())];

    // SAE's clock is two hours behind this machine's: a request signed by it is refused.
    let refused = call(
        Operation::DescribeApplicationGroups,
        app("app-1"),
        Timestamp::now(),
    )
    .await;
    assert_gateway_error(&refused, 400, "InvalidTimeStamp.Expired");
    assert!(
        close(date_header(&refused), sae_now()),
        "{:?}",
        refused.headers
    );

    let mut delete = app("app-1");
    delete.push(("InstanceIds", "i-a".into()));
    let accepted = call(Operation::DeleteInstances, delete, sae_now()).await;
    assert_eq!(accepted.status, 200, "{}", accepted.body);
    let co = accepted.body["Data"]["ChangeOrderId"]
        .as_str()
        .unwrap()
        .to_string();

    let list = call(Operation::ListChangeOrders, app("app-1"), sae_now()).await;
    let row = &list.body["Data"]["ChangeOrderList"][0];
    assert!(row.get("CoTypeCode").is_none(), "{row}");
    let created = row["CreateTime"].as_str().unwrap();
    assert!(created.ends_with('Z') && created.contains('T'), "{created}");
    assert!(close(created.parse().unwrap(), sae_now()), "{created}");

    let mut instances = app("app-1");
    instances.push(("GroupId", "g-1".into()));
    let listed = call(
        Operation::DescribeApplicationInstances,
        instances,
        sae_now(),
    )
    .await;
    assert_eq!(
        listed.body["Data"]["Instances"],
        json!([{"InstanceId": "i-b", "GroupId": "g-1", "InstanceContainerStatus": "Running"}]),
        "i-a is being deleted, and hidden"
    );

    // Switched at runtime through the admin API.
    let config = sim
        .admin_post(
            "/_sim/config",
            json!({"createTimeFormat": "epochMillis", "omitCoTypeCode": false, "clockSkewSeconds": 0}),
        )
        .await;
    assert_eq!(config["clockSkewSeconds"], 0.0);
    let described = call(
        Operation::DescribeChangeOrder,
        vec![("ChangeOrderId", co.clone())],
        Timestamp::now(),
    )
    .await;
    assert_eq!(described.status, 200, "{}", described.body);
    let millis = described.body["Data"]["CreateTime"]
        .as_i64()
        .expect("epochMillis is a JSON number");
    assert!(close(
        Timestamp::from_millisecond(millis).unwrap(),
        sae_now()
    ));
    assert!(close(date_header(&described), Timestamp::now()));

    // A console change order through the binary's admin API.
    let made = sim
        .admin_post(
            "/_sim/apps/app-2/change-orders",
            json!({"instanceIds": ["i-x"], "seconds": 0, "status": 6}),
        )
        .await;
    let console = made["changeOrderId"].as_str().unwrap();
    let list = call(Operation::ListChangeOrders, app("app-2"), Timestamp::now()).await;
    let row = &list.body["Data"]["ChangeOrderList"][0];
    assert_eq!(
        (
            &row["ChangeOrderId"],
            &row["Status"],
            &row["Source"],
            &row["CoTypeCode"]
        ),
        (
            &json!(console),
            &json!(6),
            &json!("console"),
            &json!("CoDeleteInstances")
        )
    );
    let ledger = sim.ledger().await;
    assert_eq!(ledger["deletions"][1]["source"], "console");

    // One noisy tenant with a quota of its own while the others run free.
    let noisy = Credentials::new("AKnoisy", "noisy-secret", None);
    let groups_as = |creds: Credentials| {
        let (host, http) = (host.clone(), http.clone());
        async move {
            let nonce = uuid::Uuid::new_v4().to_string();
            let op = Operation::DescribeApplicationGroups;
            let (url, headers) = sign_request(
                &host,
                SignatureVersion::V1,
                &creds,
                op,
                &[("AppId", "app-1")],
                Timestamp::now(),
                &nonce,
            );
            send_signed(&http, op.method(), &url, &headers).await
        }
    };
    assert_eq!(
        sim.admin_get("/_sim/config").await["keyRequestsPerMinute"],
        json!({"AKnoisy": 1})
    );
    assert_eq!(groups_as(noisy.clone()).await.status, 200);
    assert_gateway_error(&groups_as(noisy.clone()).await, 400, "Throttling.User");
    for _ in 0..3 {
        assert_eq!(groups_as(creds()).await.status, 200);
    }
    let config = sim
        .admin_post(
            "/_sim/config",
            json!({"keyRequestsPerMinute": {"AKnoisy": null}}),
        )
        .await;
    assert_eq!(config["keyRequestsPerMinute"], json!({}));
    assert_eq!(groups_as(noisy).await.status, 200);
}

/// A DescribeChangeOrder of `co` on app-1 that must be refused as for an unknown id, compared
/// with the answer for an id that never existed.
async fn assert_describe_not_found(h: &Harness, co: &str) {
    let hidden = h
        .call(
            SignatureVersion::V3,
            Operation::DescribeChangeOrder,
            &[("ChangeOrderId", co)],
        )
        .await;
    let unknown = "11111111-2222-3333-4444-555555555555";
    let never = h
        .call(
            SignatureVersion::V3,
            Operation::DescribeChangeOrder,
            &[("ChangeOrderId", unknown)],
        )
        .await;
    assert_sae_error(&hidden, 400, "InvalidParameter.WithMessage");
    assert_eq!(hidden.status, never.status);
    assert_eq!(hidden.code(), never.code());
    assert_eq!(
        hidden.body["Message"].as_str().unwrap(),
        never.body["Message"].as_str().unwrap().replace(unknown, co)
    );
}

#[tokio::test]
async fn reads_lag_their_writes_as_set_in_process_or_at_runtime() {
    let h = Harness::start(0).await;
    // In process: the list lags 3 s, DescribeChangeOrder 2 s, and change orders prepare 1 s.
    h.sim.with_model(|m, _| {
        let config = m.config_mut();
        config.list_lag = SignedDuration::from_secs(3);
        config.describe_lag = SignedDuration::from_secs(2);
        config.preparing_seconds = SignedDuration::from_secs(1);
    });
    let config = h.admin("GET", "/_sim/config", None).await.1;
    assert_eq!(
        (
            &config["listLagSeconds"],
            &config["describeLagSeconds"],
            &config["preparingSeconds"]
        ),
        (&json!(3.0), &json!(2.0), &json!(1.0))
    );
    let co = h.delete("i-a").await;
    // Committed (the ledger has it, the app is busy), yet neither read shows it.
    assert_eq!(h.ledger().await["deletions"][0]["changeOrderId"], co);
    assert_describe_not_found(&h, &co).await;
    assert_eq!(h.rows().await, Vec::<Value>::new());
    let list = h
        .ok(Operation::ListChangeOrders, &[("AppId", "app-1")])
        .await;
    assert_eq!(list["TotalSize"], 0);
    assert_sae_error(
        &h.call(
            SignatureVersion::V3,
            Operation::DeleteInstances,
            &[("AppId", "app-1"), ("InstanceIds", "i-b")],
        )
        .await,
        400,
        "Application.ChangerOrderRunning",
    );
    assert_eq!(h.instances().await[0], "i-a:Running", "still preparing");
    h.advance(2);
    assert_eq!(h.describe(&co).await["Status"], 1);
    assert_eq!(h.rows().await, Vec::<Value>::new());
    h.advance(1);
    // Visible in the list with its status now: it ended at 1 + 2 s.
    let rows = h.rows().await;
    assert_eq!(
        (&rows[0]["ChangeOrderId"], &rows[0]["Status"]),
        (&json!(co), &json!(2))
    );

    // At runtime, fractions allowed: the list lags 1.5 s, Describe not at all, preparing 4 s.
    let config = h
        .configure(json!({"listLagSeconds": 1.5, "describeLagSeconds": 0, "preparingSeconds": 4}))
        .await;
    assert_eq!(
        (
            &config["listLagSeconds"],
            &config["describeLagSeconds"],
            &config["preparingSeconds"]
        ),
        (&json!(1.5), &json!(0.0), &json!(4.0))
    );
    let second = h.delete("i-b").await;
    assert_eq!(h.describe(&second).await["Status"], 0);
    assert_eq!(h.rows().await.len(), 1, "only the first");
    h.clock.advance(SignedDuration::from_millis(1500));
    let rows = h.rows().await;
    assert_eq!(
        (&rows[0]["ChangeOrderId"], &rows[0]["Status"]),
        (&json!(second), &json!(0))
    );
    h.clock.advance(SignedDuration::from_millis(2500));
    assert_eq!(h.describe(&second).await["Status"], 1);
    assert_eq!(h.instances().await, ["i-b:Terminating", "i-c:Running"]);
    h.advance(2);
    assert_eq!(h.describe(&second).await["Status"], 2);
    assert_eq!(h.instances().await, ["i-c:Running"]);
    let ledger = h.ledger().await;
    assert_eq!(ledger["deletions"].as_array().unwrap().len(), 2);
    assert_eq!(ledger["repeatedDeletions"], json!([]));

    for bad in [
        json!({"listLagSeconds": -1}),
        json!({"listLagSeconds": 601}),
        json!({"describeLagSeconds": "soon"}),
        json!({"describeLagSeconds": 1e9}),
        json!({"preparingSeconds": -0.5}),
        json!({"preparingSeconds": 1e9}),
    ] {
        let (status, answer) = h.admin("POST", "/_sim/config", Some(bad.clone())).await;
        assert_eq!(status, 400, "{bad} -> {answer}");
    }
}

/// Whether a TCP connection to `addr` is refused (not accepted, not timed out).
fn connect_refused(addr: &str) -> bool {
    let addr: std::net::SocketAddr = addr.parse().unwrap();
    match std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(2)) {
        Ok(_) => false,
        Err(e) => {
            assert_eq!(
                e.kind(),
                std::io::ErrorKind::ConnectionRefused,
                "refused, not {e}"
            );
            true
        }
    }
}

#[tokio::test]
async fn an_outage_refuses_connections_then_serves_the_same_state() {
    let h = Harness::start(0).await;
    let co = h.delete("i-a").await;
    // A raw keep-alive connection, open and idle when the outage starts (tokio's socket: this
    // test's runtime also runs the simulator, so a blocking read would stall it).
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let mut idle = tokio::net::TcpStream::connect(&h.host).await.unwrap();
    idle.write_all(format!("GET /_sim/healthz HTTP/1.1\r\nHost: {}\r\n\r\n", h.host).as_bytes())
        .await
        .unwrap();
    let mut first = [0u8; 512];
    let n = idle.read(&mut first).await.unwrap();
    assert!(String::from_utf8_lossy(&first[..n]).starts_with("HTTP/1.1 200"));

    for bad in [
        json!({"seconds": 0}),
        json!({"seconds": -1}),
        json!({"seconds": 3601}),
        json!({}),
    ] {
        let (status, answer) = h.admin("POST", "/_sim/offline", Some(bad.clone())).await;
        assert_eq!(status, 400, "{bad} -> {answer}");
    }
    let (status, answer) = h
        .admin("POST", "/_sim/offline", Some(json!({"seconds": 1})))
        .await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["offlineUntil"], "2025-03-01T12:00:01Z");

    // Offline: connecting is refused at once, and the idle pooled connection was closed.
    assert!(connect_refused(&h.host));
    // Closed by the simulator: end of stream (or a reset), not an open socket waiting.
    let mut rest = Vec::new();
    let closed = tokio::time::timeout(Duration::from_secs(2), idle.read_to_end(&mut rest)).await;
    assert!(closed.is_ok(), "the idle connection was left open");
    assert!(rest.is_empty(), "{}", String::from_utf8_lossy(&rest));
    let err = h
        .http
        .get(format!("{}/_sim/healthz", h.base))
        .send()
        .await
        .expect_err("no answer while offline");
    assert!(err.is_connect() || err.is_request(), "{err:?}");

    // Back on the same address, with everything it knew.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while connect_refused(&h.host) {
        assert!(std::time::Instant::now() < deadline, "never came back");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(h.describe(&co).await["Status"], 1);
    assert_eq!(h.rows().await[0]["ChangeOrderId"], co);
    h.advance(2);
    assert_eq!(h.instances().await, ["i-b:Running", "i-c:Running"]);
    let ledger = h.ledger().await;
    assert_eq!(ledger["deletions"][0]["changeOrderId"], co);
    assert_eq!(ledger["deletions"][0]["finalStatus"], 2);
    assert_eq!(
        ledger["requests"][0]["operation"], "DeleteInstances",
        "the ledger from before the outage is kept"
    );
}

#[tokio::test]
async fn the_binary_takes_the_lags_and_preparing_as_flags_and_can_go_offline() {
    let key = format!("{AK}:{SECRET}");
    let sim = support::Simulator::spawn(&[
        "--access-key",
        &key,
        "--requests-per-minute",
        "0",
        "--list-lag-seconds",
        "600",
        "--describe-lag-seconds",
        "599.5",
        "--preparing-seconds",
        "600",
    ]);
    let config = sim.admin_get("/_sim/config").await;
    assert_eq!(
        (
            &config["listLagSeconds"],
            &config["describeLagSeconds"],
            &config["preparingSeconds"]
        ),
        (&json!(600.0), &json!(599.5), &json!(600.0))
    );
    sim.admin_post(
        "/_sim/apps",
        json!({"apps": [{"appId": "app-1", "groups": [{"groupId": "g-1", "instanceIds": ["i-a"]}]}]}),
    )
    .await;
    let host = sim.url().strip_prefix("http://").unwrap().to_string();
    let http = reqwest::Client::new();
    let call = |op: Operation, query: Vec<(&'static str, String)>| {
        let (host, http) = (host.clone(), http.clone());
        async move {
            let query: Vec<(&str, &str)> = query.iter().map(|(k, v)| (*k, v.as_str())).collect();
            let nonce = uuid::Uuid::new_v4().to_string();
            let (url, headers) = sign_request(
                &host,
                SignatureVersion::V1,
                &creds(),
                op,
                &query,
                Timestamp::now(),
                &nonce,
            );
            send_signed(&http, op.method(), &url, &headers).await
        }
    };
    let app = || vec![("AppId", "app-1".to_string())];
    let mut delete = app();
    delete.push(("InstanceIds", "i-a".into()));
    let accepted = call(Operation::DeleteInstances, delete).await;
    assert_eq!(accepted.status, 200, "{}", accepted.body);
    let co = accepted.body["Data"]["ChangeOrderId"]
        .as_str()
        .unwrap()
        .to_string();
    let describe = || {
        call(
            Operation::DescribeChangeOrder,
            vec![("ChangeOrderId", co.clone())],
        )
    };
    assert_sae_error(&describe().await, 400, "InvalidParameter.WithMessage");
    let list = call(Operation::ListChangeOrders, app()).await;
    assert_eq!(list.body["Data"]["TotalSize"], 0, "{}", list.body);

    // The lags switched off at runtime: both reads show it, preparing for ten minutes.
    sim.admin_post(
        "/_sim/config",
        json!({"listLagSeconds": 0, "describeLagSeconds": 0}),
    )
    .await;
    assert_eq!(describe().await.body["Data"]["Status"], 0);

    // An outage of the binary's own listener; afterwards the same change order is there.
    let answer = sim
        .admin_post("/_sim/offline", json!({"seconds": 0.5}))
        .await;
    assert_eq!(answer["offlineSeconds"], 0.5);
    assert!(connect_refused(&host));
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while connect_refused(&host) {
        assert!(std::time::Instant::now() < deadline, "never came back");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let list = call(Operation::ListChangeOrders, app()).await;
    assert_eq!(
        list.body["Data"]["ChangeOrderList"][0]["ChangeOrderId"], co,
        "{}",
        list.body
    );
    assert_eq!(list.body["Data"]["ChangeOrderList"][0]["Status"], 0);
}
