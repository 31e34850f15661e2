//! RRSA end to end: the simulator's STS (`AssumeRoleWithOIDC`), the controller's `RrsaProvider`
//! against it, and the real `sae-controller` binary holding no AccessKey, only an OIDC token file.
//!
//! The simulator issues STS secrets and tokens with recognisable prefixes (`simSTSsecret`,
//! `CAISsimSTStoken`), so "no secret leaked" is checked by searching for those prefixes, without
//! the test ever needing to see an issued secret.

mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use jiff::{SignedDuration, Timestamp};
use sae_controller::sae::rrsa::{DEFAULT_DURATION_SECONDS, RrsaConfig, RrsaProvider};
use sae_controller::sae::{Credentials, SaeClient, SaeClientConfig, SaeError};
use sae_controller::simulator::{
    AppSpec, GroupSpec, ManualClock, ModelConfig, OidcTokenSpec, Seed, Simulator, SimulatorConfig,
};
use serde_json::{Value, json};
use support::{ControlPlane, Controller};

const ROLE_ARN: &str = "acs:ram::1234567890:role/sae-controller";
const PROVIDER_ARN: &str = "acs:ram::1234567890:oidc-provider/ack-rrsa-c0ffee";
const OIDC_TOKEN: &str =
    "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJzYWUtY29udHJvbGxlciJ9.rrsa-test-signature";
const STS_SECRET_PREFIX: &str = "simSTSsecret";
const STS_TOKEN_PREFIX: &str = "CAISsimSTStoken";
const REGION: &str = "cn-hangzhou";

/// Fails if `text` shows the OIDC token or anything the simulated STS issued as a secret.
fn assert_no_secret(what: &str, text: &str) {
    for secret in [OIDC_TOKEN, STS_SECRET_PREFIX, STS_TOKEN_PREFIX] {
        assert!(
            !text.contains(secret),
            "{what} shows a secret ({secret}):\n{text}"
        );
    }
}

// ---- in-process: the simulator's STS and the provider ----------------------------------------

struct InProcess {
    sim: Arc<Simulator>,
    clock: Arc<ManualClock>,
    base: String,
    token_file: tempfile::NamedTempFile,
    http: reqwest::Client,
}

impl InProcess {
    async fn start() -> Self {
        // Real time, so the SAE client's Date header agrees with the simulator; a wide skew window
        // lets the test move the simulator's clock hours ahead.
        let clock = Arc::new(ManualClock::new(Timestamp::now()));
        let config = SimulatorConfig {
            model: ModelConfig {
                requests_per_minute: 0,
                max_skew: SignedDuration::from_hours(24 * 7),
                ..ModelConfig::default()
            },
            seed: Some(Seed {
                apps: vec![AppSpec {
                    app_id: "app-1".into(),
                    groups: vec![GroupSpec {
                        group_id: "g-1".into(),
                        group_name: None,
                        instance_ids: vec!["i-a".into()],
                    }],
                }],
                ..Seed::default()
            }),
            clock: clock.clone(),
            ..SimulatorConfig::default()
        };
        let sim = Arc::new(Simulator::new(config).unwrap());
        sim.register_oidc_token(OidcTokenSpec {
            token: OIDC_TOKEN.into(),
            role_arn: Some(ROLE_ARN.into()),
        })
        .unwrap();
        let addr = sae_controller::simulator::spawn(sim.clone()).await.unwrap();
        let token_file = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(token_file.path(), OIDC_TOKEN).unwrap();
        InProcess {
            sim,
            clock,
            base: format!("http://{addr}"),
            token_file,
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(10))
                .build()
                .unwrap(),
        }
    }

    fn provider(&self) -> RrsaProvider {
        let config = RrsaConfig {
            role_arn: ROLE_ARN.into(),
            oidc_provider_arn: PROVIDER_ARN.into(),
            token_file: self.token_file.path().to_path_buf(),
            session_name: "rrsa-test".into(),
            sts_endpoint: self.base.clone(),
            duration_seconds: DEFAULT_DURATION_SECONDS,
        };
        let clock = self.clock.clone();
        RrsaProvider::new(config, Duration::from_secs(2), Duration::from_secs(10))
            .unwrap()
            .with_clock(move || sae_controller::simulator::Clock::now(&*clock))
    }

    fn sae(&self) -> SaeClient {
        SaeClient::new(SaeClientConfig {
            endpoint: self.base.clone(),
            ..SaeClientConfig::default()
        })
        .unwrap()
    }

    /// POSTs a form to the STS endpoint; returns (HTTP status, JSON body, raw text).
    async fn sts(&self, query: &str, form: &[(&str, &str)]) -> (u16, Value, String) {
        let body: Vec<String> = form
            .iter()
            .map(|(k, v)| {
                format!(
                    "{k}={}",
                    percent_encoding::utf8_percent_encode(v, percent_encoding::NON_ALPHANUMERIC)
                )
            })
            .collect();
        let resp = self
            .http
            .post(format!("{}/?{query}", self.base))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body.join("&"))
            .send()
            .await
            .unwrap();
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap();
        let json = serde_json::from_str(&text).unwrap_or(Value::Null);
        (status, json, text)
    }

    fn ledger_json(&self) -> Value {
        serde_json::to_value(self.sim.ledger()).unwrap()
    }
}

const QUERY: &str =
    "Action=AssumeRoleWithOIDC&Version=2015-04-01&Format=JSON&Timestamp=2026-01-01T00%3A00%3A00Z";

fn good_form() -> Vec<(&'static str, &'static str)> {
    vec![
        ("RoleArn", ROLE_ARN),
        ("OIDCProviderArn", PROVIDER_ARN),
        ("OIDCToken", OIDC_TOKEN),
        ("RoleSessionName", "s1"),
    ]
}

#[tokio::test]
async fn issued_sts_key_signs_sae_calls_and_the_ledger_keeps_no_token() {
    let w = InProcess::start().await;
    let provider = w.provider();
    let creds = provider.credentials().await.unwrap();
    assert!(creds.access_key_id().starts_with("STS."), "{creds:?}");
    assert!(
        creds
            .security_token()
            .is_some_and(|t| t.starts_with(STS_TOKEN_PREFIX))
    );

    let groups = w
        .sae()
        .describe_application_groups(&creds, REGION, "app-1")
        .await
        .unwrap();
    assert_eq!(groups[0].group_id, "g-1");

    let ledger = w.ledger_json();
    let requests = ledger["requests"].as_array().unwrap();
    assert_eq!(requests.len(), 2, "{ledger:#}");
    let exchange = &requests[0];
    assert_eq!(exchange["operation"], "AssumeRoleWithOIDC");
    assert_eq!(exchange["code"], "OK");
    assert_eq!(exchange["verified"], true);
    assert_eq!(exchange["accessKeyId"], creds.access_key_id());
    assert_eq!(exchange["params"]["RoleArn"], ROLE_ARN);
    assert_eq!(exchange["params"]["Action"], "AssumeRoleWithOIDC");
    assert_eq!(exchange["params"]["DurationSeconds"], "3600");
    assert!(
        exchange["params"].get("OIDCToken").is_none(),
        "{exchange:#}"
    );
    let call = &requests[1];
    assert_eq!(call["operation"], "DescribeApplicationGroups");
    assert_eq!(
        (call["accessKeyId"].as_str(), call["verified"].as_bool()),
        (Some(creds.access_key_id()), Some(true))
    );
    assert_no_secret("the ledger", &ledger.to_string());
}

#[tokio::test]
async fn expired_sts_key_is_refused_and_the_provider_refreshes_before_expiry() {
    let w = InProcess::start().await;
    let provider = w.provider();
    let sae = w.sae();
    let first = provider.credentials().await.unwrap();
    let issued_at = w.sim.now();

    // 181 s before expiry the cached key is still served; 179 s before, a new one is fetched.
    w.clock
        .set(issued_at + SignedDuration::from_secs(3600 - 181));
    assert_eq!(provider.credentials().await.unwrap(), first);
    w.clock
        .set(issued_at + SignedDuration::from_secs(3600 - 179));
    let second = provider.credentials().await.unwrap();
    assert_ne!(second.access_key_id(), first.access_key_id());

    // Past its Expiration, SAE refuses the first key; the refreshed one works.
    w.clock.set(issued_at + SignedDuration::from_secs(3600));
    let err = sae
        .describe_application_groups(&first, REGION, "app-1")
        .await
        .unwrap_err();
    assert!(
        matches!(&err, SaeError::Api { code, .. } if code == "InvalidSecurityToken.Expired"),
        "{err}"
    );
    sae.describe_application_groups(&second, REGION, "app-1")
        .await
        .unwrap();

    // A forged token for a real STS key is refused as before.
    let forged = Credentials::new(
        second.access_key_id(),
        second.access_key_secret(),
        Some("CAISforged".into()),
    );
    let err = sae
        .describe_application_groups(&forged, REGION, "app-1")
        .await
        .unwrap_err();
    assert_eq!(
        err.code(),
        Some("InvalidSecurityToken.MismatchWithAccessKey"),
        "{err}"
    );
}

#[tokio::test]
async fn sts_checks_parameters_token_role_and_duration() {
    let w = InProcess::start().await;
    let (status, ok, _) = w.sts(QUERY, &good_form()).await;
    assert_eq!(status, 200, "{ok:#}");
    let expiration: Timestamp = ok["Credentials"]["Expiration"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(expiration.as_second(), w.sim.now().as_second() + 3600);
    assert!(
        ok["RequestId"].is_string()
            && ok["AssumedRoleUser"]["Arn"]
                .as_str()
                .unwrap()
                .starts_with(ROLE_ARN)
    );

    let without = |name: &str| -> Vec<(&'static str, &'static str)> {
        good_form()
            .into_iter()
            .filter(|(k, _)| *k != name)
            .collect()
    };
    for name in ["RoleArn", "OIDCProviderArn", "OIDCToken"] {
        let (status, body, _) = w.sts(QUERY, &without(name)).await;
        assert_eq!(
            (status, body["Code"].as_str()),
            (400, Some("MissingParameter")),
            "{name}: {body:#}"
        );
        assert!(body["Message"].as_str().unwrap().contains(name), "{body:#}");
    }

    let mut unknown = without("OIDCToken");
    unknown.push(("OIDCToken", "not-a-registered-token"));
    let (status, body, text) = w.sts(QUERY, &unknown).await;
    assert_eq!(
        (status, body["Code"].as_str()),
        (400, Some("InvalidParameter.OIDCToken")),
        "{body:#}"
    );
    assert!(
        !text.contains("not-a-registered-token"),
        "the answer echoes the token: {text}"
    );

    let mut other_role = without("RoleArn");
    other_role.push(("RoleArn", "acs:ram::1234567890:role/admin"));
    let (_, body, _) = w.sts(QUERY, &other_role).await;
    assert_eq!(body["Code"], "AuthenticationFail.NoPermission", "{body:#}");

    for bad in ["899", "43201", "soon"] {
        let mut form = good_form();
        form.push(("DurationSeconds", bad));
        let (_, body, _) = w.sts(QUERY, &form).await;
        assert_eq!(
            body["Code"], "InvalidParameter.DurationSeconds",
            "{bad}: {body:#}"
        );
    }

    // Everything in the query works too; another Action or none is not STS's.
    let all_in_query = format!(
        "{QUERY}&RoleArn={}&OIDCProviderArn={}&OIDCToken={OIDC_TOKEN}&DurationSeconds=900",
        ROLE_ARN.replace(':', "%3A").replace('/', "%2F"),
        PROVIDER_ARN.replace(':', "%3A").replace('/', "%2F"),
    );
    let (status, body, _) = w.sts(&all_in_query, &[]).await;
    assert_eq!(status, 200, "{body:#}");
    let (status, body, _) = w.sts("Action=AssumeRole", &good_form()).await;
    assert_eq!(
        (status, body["Code"].as_str()),
        (404, Some("InvalidAction.NotFound")),
        "{body:#}"
    );
    let (status, body, _) = w.sts("", &[]).await;
    assert_eq!(
        (status, body["Code"].as_str()),
        (404, Some("InvalidApi.NotFound")),
        "{body:#}"
    );

    let ledger = w.ledger_json();
    let exchanges: Vec<&Value> = ledger["requests"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["operation"] == "AssumeRoleWithOIDC")
        .collect();
    assert_eq!(exchanges.len(), 2 + 3 + 1 + 1 + 3, "{ledger:#}");
    assert_eq!(
        exchanges.iter().filter(|r| r["verified"] == true).count(),
        2
    );
    assert_no_secret("the ledger", &ledger.to_string());
    assert!(!ledger.to_string().contains("not-a-registered-token"));
}

#[tokio::test]
async fn admin_api_registers_tokens_without_echoing_them() {
    let w = InProcess::start().await;
    let post = |body: Value| {
        let http = w.http.clone();
        let url = format!("{}/_sim/oidc", w.base);
        async move {
            let resp = http.post(url).json(&body).send().await.unwrap();
            (resp.status().as_u16(), resp.text().await.unwrap())
        }
    };
    let (status, text) = post(json!({"token": "second-token-value"})).await;
    assert_eq!(status, 200, "{text}");
    assert!(!text.contains("second-token-value"), "{text}");
    // Without roleArn the token may assume any role.
    let mut form = good_form();
    form.retain(|(k, _)| *k != "OIDCToken" && *k != "RoleArn");
    form.push(("OIDCToken", "second-token-value"));
    form.push(("RoleArn", "acs:ram::1:role/any"));
    let (status, body, _) = w.sts(QUERY, &form).await;
    assert_eq!(status, 200, "{body:#}");

    for bad in [
        json!({"token": "  "}),
        json!({"token": "t", "extra": 1}),
        json!({"roleArn": "r"}),
    ] {
        let (status, text) = post(bad.clone()).await;
        assert_eq!(status, 400, "{bad}: {text}");
    }
}

#[tokio::test]
async fn provider_reports_a_refused_token_without_showing_it() {
    let w = InProcess::start().await;
    std::fs::write(w.token_file.path(), "eyJunregistered.token.value").unwrap();
    let err = w.provider().credentials().await.unwrap_err();
    assert!(
        err.contains("InvalidParameter.OIDCToken") && err.contains("HTTP 400"),
        "{err}"
    );
    assert!(!err.contains("eyJunregistered.token.value"), "{err}");
}

#[tokio::test]
async fn default_credentials_follow_their_source() {
    use sae_controller::controller::DefaultCredentials;

    let why = DefaultCredentials::None.get().await.unwrap_err();
    for hint in [
        "credentialsRef",
        "ALIBABA_CLOUD_ROLE_ARN",
        "ALIBABA_CLOUD_OIDC_TOKEN_FILE",
        "ALIBABA_CLOUD_ACCESS_KEY_ID",
    ] {
        assert!(why.contains(hint), "{hint} missing from: {why}");
    }
    let fixed = Credentials::new("LTAIfixed", "fixed-secret", None);
    assert_eq!(
        DefaultCredentials::from(Some(fixed.clone()))
            .get()
            .await
            .unwrap(),
        fixed
    );
    assert!(matches!(
        DefaultCredentials::from(None),
        DefaultCredentials::None
    ));

    let w = InProcess::start().await;
    let rrsa = DefaultCredentials::Rrsa(w.provider());
    let first = rrsa.get().await.unwrap();
    assert!(first.access_key_id().starts_with("STS."));
    assert_eq!(rrsa.get().await.unwrap(), first, "cached between calls");
    assert_no_secret("Debug of DefaultCredentials", &format!("{rrsa:?}"));

    std::fs::remove_file(w.token_file.path()).unwrap();
    let broken = DefaultCredentials::Rrsa(w.provider());
    let why = broken.get().await.unwrap_err();
    assert!(
        why.starts_with("RRSA: ") && why.contains(&w.token_file.path().display().to_string()),
        "{why}"
    );
}

// ---- the real controller with RRSA only -------------------------------------------------------

struct RrsaWorld {
    cp: &'static ControlPlane,
    ns: String,
    sim: support::Simulator,
    controller: Controller,
    _token_dir: tempfile::TempDir,
}

impl RrsaWorld {
    /// A simulator that knows `registered` as an OIDC token (and no AccessKey at all), and a
    /// controller whose only credentials are RRSA env vars pointing at a token file holding `OIDC_TOKEN`.
    async fn start(prefix: &str, registered: &str) -> RrsaWorld {
        let cp = ControlPlane::shared();
        let ns = cp.create_namespace(prefix);
        let sim = support::Simulator::spawn(&["--change-order-seconds", "1"]);
        sim.admin_post(
            "/_sim/apps",
            json!({"apps": [{"appId": "app-rrsa", "groups": [{"groupId": "g", "instanceIds": ["i-1", "i-2"]}]}]}),
        )
        .await;
        sim.admin_post(
            "/_sim/oidc",
            json!({"token": registered, "roleArn": ROLE_ARN}),
        )
        .await;
        let token_dir = tempfile::tempdir().unwrap();
        let token_file = token_dir.path().join("token");
        std::fs::write(&token_file, OIDC_TOKEN).unwrap();
        let token_file = token_file.to_str().unwrap().to_string();
        let controller = Controller::spawn(
            cp.controller_kubeconfig(),
            &[
                "--namespace",
                &ns,
                "--sae-endpoint",
                sim.url(),
                "--sts-endpoint",
                sim.url(),
            ],
            &[
                ("ALIBABA_CLOUD_ROLE_ARN", ROLE_ARN),
                ("ALIBABA_CLOUD_OIDC_PROVIDER_ARN", PROVIDER_ARN),
                ("ALIBABA_CLOUD_OIDC_TOKEN_FILE", &token_file),
                ("ALIBABA_CLOUD_ROLE_SESSION_NAME", "e2e-rrsa"),
                // The most verbose level the controller has: secrets must not show even here.
                ("RUST_LOG", "debug"),
            ],
        );
        RrsaWorld {
            cp,
            ns,
            sim,
            controller,
            _token_dir: token_dir,
        }
    }

    fn create(&self, name: &str, ids: &[&str], extra_spec: Value) {
        let mut spec = json!({"regionId": REGION, "appId": "app-rrsa", "instanceIds": ids});
        if let (Some(spec), Value::Object(extra)) = (spec.as_object_mut(), extra_spec) {
            spec.extend(extra);
        }
        let doc = json!({
            "apiVersion": "sae.ops.dev/v1alpha1",
            "kind": "SaeInstanceDeletion",
            "metadata": {"name": name},
            "spec": spec,
        });
        let out = self
            .cp
            .kubectl_stdin(&["-n", &self.ns, "apply", "-f", "-"], &doc.to_string());
        assert!(
            out.status.success(),
            "kubectl apply: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    fn object_json(&self, name: &str) -> String {
        self.cp.kubectl_ok(&[
            "-n",
            &self.ns,
            "get",
            "saeinstancedeletion",
            name,
            "-o",
            "json",
        ])
    }

    fn status(&self, name: &str) -> Value {
        serde_json::from_str::<Value>(&self.object_json(name)).unwrap()["status"].clone()
    }

    async fn wait_for(&self, name: &str, what: &str, done: impl Fn(&Value) -> bool) -> Value {
        let started = Instant::now();
        loop {
            let status = self.status(name);
            if done(&status) {
                return status;
            }
            if started.elapsed() > Duration::from_secs(60) {
                let logs = self.controller.logs();
                let tail: Vec<&str> = logs.lines().rev().take(40).collect();
                panic!(
                    "{name}: not {what} after 60 s; status: {status:#}\n--- controller log tail ---\n{}",
                    tail.into_iter().rev().collect::<Vec<_>>().join("\n")
                );
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    async fn requests(&self, operation: &str) -> Vec<Value> {
        let ledger = self.sim.ledger().await;
        ledger["requests"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|r| r["operation"] == operation)
            .cloned()
            .collect()
    }

    /// Logs of both processes, the object and the namespace's events.
    fn everything_shown(&self, name: &str) -> Vec<(&'static str, String)> {
        vec![
            ("the controller log", self.controller.logs()),
            ("the simulator log", self.sim.logs()),
            ("the object", self.object_json(name)),
            (
                "the events",
                self.cp
                    .kubectl_ok(&["-n", &self.ns, "get", "events", "-o", "json"]),
            ),
        ]
    }
}

fn ready_reason(status: &Value) -> &str {
    status["conditions"]
        .as_array()
        .and_then(|c| c.iter().find(|c| c["type"] == "Ready"))
        .and_then(|c| c["reason"].as_str())
        .unwrap_or("")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn controller_with_only_rrsa_deletes_with_an_sts_key_and_leaks_nothing() {
    let w = RrsaWorld::start("rrsa", OIDC_TOKEN).await;
    w.create("by-rrsa", &["i-1"], json!({}));
    let status = w
        .wait_for("by-rrsa", "Succeeded", |s| {
            matches!(s["phase"].as_str(), Some("Succeeded" | "Failed"))
        })
        .await;
    assert_eq!(status["phase"], "Succeeded", "{status:#}");

    let exchanges = w.requests("AssumeRoleWithOIDC").await;
    assert!(!exchanges.is_empty());
    assert!(
        exchanges
            .iter()
            .all(|r| r["verified"] == true && r["params"]["RoleSessionName"] == "e2e-rrsa"),
        "{exchanges:#?}"
    );
    let issued: Vec<&str> = exchanges
        .iter()
        .filter_map(|r| r["accessKeyId"].as_str())
        .collect();
    let deletes = w.requests("DeleteInstances").await;
    assert_eq!(deletes.len(), 1, "{deletes:#?}");
    let signer = deletes[0]["accessKeyId"].as_str().unwrap();
    assert!(
        signer.starts_with("STS.") && issued.contains(&signer),
        "signed by {signer}, issued {issued:?}"
    );
    assert_eq!(deletes[0]["verified"], true);
    assert_eq!(deletes[0]["committed"], true);
    // One exchange serves every call: the key is cached, not fetched per request.
    let sae_calls = w.sim.ledger().await["requests"].as_array().unwrap().len() - exchanges.len();
    assert!(
        exchanges.len() == 1 && sae_calls >= 2,
        "{} exchanges for {sae_calls} SAE calls",
        exchanges.len()
    );

    // credentialsRef wins: with it set, RRSA is not used even though it works.
    w.create(
        "by-secret",
        &["i-2"],
        json!({"credentialsRef": {"name": "no-such-secret"}}),
    );
    let status = w
        .wait_for("by-secret", "CredentialsNotFound", |s| {
            ready_reason(s) == "CredentialsNotFound"
        })
        .await;
    assert_eq!(status["phase"], "Pending", "{status:#}");
    assert!(status.to_string().contains("no-such-secret"), "{status:#}");
    assert_eq!(w.requests("DeleteInstances").await.len(), 1);

    for (what, text) in w.everything_shown("by-rrsa") {
        assert_no_secret(what, &text);
    }
    assert!(
        w.controller.logs().contains("RRSA role"),
        "the start line names the credential source"
    );
    // The log searched above is the real one: it shows the exchange, by key id only.
    let logs = w.controller.logs();
    assert!(
        logs.contains("obtained STS credentials through RRSA") && logs.contains(signer),
        "{logs}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_rrsa_token_leaves_the_object_pending_with_an_actionable_message() {
    let w = RrsaWorld::start("rrsa-refused", "some-other-token").await;
    w.create("refused", &["i-1"], json!({}));
    let status = w
        .wait_for("refused", "CredentialsNotFound", |s| {
            ready_reason(s) == "CredentialsNotFound"
        })
        .await;
    assert_eq!(status["phase"], "Pending", "{status:#}");
    let shown = status.to_string();
    assert!(
        shown.contains("RRSA") && shown.contains("InvalidParameter.OIDCToken"),
        "{status:#}"
    );
    assert!(w.requests("DeleteInstances").await.is_empty());
    for (what, text) in w.everything_shown("refused") {
        assert_no_secret(what, &text);
    }
}
