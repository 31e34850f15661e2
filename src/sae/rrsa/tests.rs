//! Tests of the RRSA provider against a fake STS on a local port, with a clock moved by hand.

use std::collections::HashMap;
use std::sync::Mutex;

use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use axum::{Form, Router};
use serde_json::{Value, json};

use super::*;
use crate::fixtures::HandClock;

const OIDC_TOKEN: &str = "eyJhbGciOiJSUzI1NiJ9.oidc-token-first.sig";
const STS_SECRET_PREFIX: &str = "stsSecret-";
const STS_TOKEN_PREFIX: &str = "CAISstsToken-";

fn t0() -> Timestamp {
    "2026-11-26T09:00:00Z".parse().unwrap()
}

/// What the fake STS received in one call.
#[derive(Clone, Debug)]
struct Seen {
    query: HashMap<String, String>,
    form: HashMap<String, String>,
    content_type: String,
}

/// How the fake STS answers: `None` = issue credentials valid for `lifetime`.
struct FakeSts {
    clock: HandClock,
    seen: Mutex<Vec<Seen>>,
    lifetime: Mutex<SignedDuration>,
    answer: Mutex<Option<(u16, String)>>,
}

async fn sts_handler(
    State(fake): State<Arc<FakeSts>>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
    Form(form): Form<HashMap<String, String>>,
) -> (StatusCode, String) {
    let n = {
        let mut seen = fake.seen.lock().unwrap();
        seen.push(Seen {
            query,
            form,
            content_type: headers
                .get("content-type")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_string(),
        });
        seen.len()
    };
    if let Some((status, body)) = fake.answer.lock().unwrap().clone() {
        return (StatusCode::from_u16(status).unwrap(), body);
    }
    let expiration = fake.clock.now() + *fake.lifetime.lock().unwrap();
    let body = json!({
        "RequestId": format!("req-{n}"),
        "AssumedRoleUser": {"Arn": "acs:ram::1:role/r/s", "AssumedRoleId": "3:s"},
        "Credentials": {
            "AccessKeyId": format!("STS.key{n}"),
            "AccessKeySecret": format!("{STS_SECRET_PREFIX}{n}"),
            "SecurityToken": format!("{STS_TOKEN_PREFIX}{n}"),
            "Expiration": expiration.strftime("%Y-%m-%dT%H:%M:%SZ").to_string(),
        }
    });
    (StatusCode::OK, body.to_string())
}

struct Setup {
    fake: Arc<FakeSts>,
    clock: HandClock,
    provider: RrsaProvider,
    token_file: tempfile::NamedTempFile,
}

impl Setup {
    async fn start() -> Self {
        let clock = HandClock::starting_at(t0());
        let fake = Arc::new(FakeSts {
            clock: clock.clone(),
            seen: Mutex::new(Vec::new()),
            lifetime: Mutex::new(SignedDuration::from_secs(3600)),
            answer: Mutex::new(None),
        });
        let app = Router::new()
            .route("/", post(sts_handler))
            .with_state(fake.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        let token_file = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(token_file.path(), format!("{OIDC_TOKEN}\n")).unwrap();
        let config = RrsaConfig {
            role_arn: "acs:ram::123:role/sae-controller".into(),
            oidc_provider_arn: "acs:ram::123:oidc-provider/ack-rrsa-c1".into(),
            token_file: token_file.path().to_path_buf(),
            session_name: "test-session".into(),
            sts_endpoint: format!("http://{addr}"),
            duration_seconds: DEFAULT_DURATION_SECONDS,
        };
        let provider = RrsaProvider::new(config, Duration::from_secs(2), Duration::from_secs(5))
            .unwrap()
            .with_clock(clock.reader());
        Setup {
            fake,
            clock,
            provider,
            token_file,
        }
    }

    fn calls(&self) -> Vec<Seen> {
        self.fake.seen.lock().unwrap().clone()
    }

    fn answer(&self, status: u16, body: Value) {
        *self.fake.answer.lock().unwrap() = Some((status, body.to_string()));
    }
}

#[tokio::test]
async fn exchange_sends_the_documented_request_and_returns_sts_credentials() {
    let s = Setup::start().await;
    let creds = s.provider.credentials().await.unwrap();
    assert_eq!(creds.access_key_id(), "STS.key1");
    assert_eq!(creds.access_key_secret(), "stsSecret-1");
    assert_eq!(creds.security_token(), Some("CAISstsToken-1"));

    let calls = s.calls();
    assert_eq!(calls.len(), 1);
    let seen = &calls[0];
    assert_eq!(seen.query["Action"], "AssumeRoleWithOIDC");
    assert_eq!(seen.query["Version"], "2015-04-01");
    assert_eq!(seen.query["Format"], "JSON");
    assert_eq!(seen.query["Timestamp"], "2026-11-26T09:00:00Z");
    assert!(
        !seen.query.contains_key("OIDCToken"),
        "the token belongs in the body"
    );
    assert_eq!(seen.content_type, "application/x-www-form-urlencoded");
    assert_eq!(seen.form["RoleArn"], "acs:ram::123:role/sae-controller");
    assert_eq!(
        seen.form["OIDCProviderArn"],
        "acs:ram::123:oidc-provider/ack-rrsa-c1"
    );
    // Trailing newline trimmed; '.' and ':' survive the form encoding round trip.
    assert_eq!(seen.form["OIDCToken"], OIDC_TOKEN);
    assert_eq!(seen.form["RoleSessionName"], "test-session");
    assert_eq!(seen.form["DurationSeconds"], "3600");
}

#[tokio::test]
async fn many_callers_share_one_exchange() {
    let s = Setup::start().await;
    let all =
        futures::future::join_all((0..20).map(|_| s.provider.clone().credentials_owned())).await;
    for creds in &all {
        assert_eq!(creds.as_ref().unwrap().access_key_id(), "STS.key1");
    }
    for _ in 0..5 {
        s.provider.credentials().await.unwrap();
    }
    assert_eq!(s.calls().len(), 1);
}

impl RrsaProvider {
    async fn credentials_owned(self) -> Result<Credentials, String> {
        self.credentials().await
    }
}

#[tokio::test]
async fn refreshes_within_the_margin_and_rereads_the_token_file() {
    let s = Setup::start().await;
    assert_eq!(
        s.provider.credentials().await.unwrap().access_key_id(),
        "STS.key1"
    );
    let expiration = t0() + SignedDuration::from_secs(3600);

    // ACK rotates the token in place; the next exchange must present the new one.
    std::fs::write(s.token_file.path(), "rotated-token").unwrap();
    s.clock.set(expiration - SignedDuration::from_secs(181));
    assert_eq!(
        s.provider.credentials().await.unwrap().access_key_id(),
        "STS.key1"
    );
    assert_eq!(s.calls().len(), 1, "still outside the 180 s margin");

    s.clock.set(expiration - SignedDuration::from_secs(179));
    assert_eq!(
        s.provider.credentials().await.unwrap().access_key_id(),
        "STS.key2"
    );
    let calls = s.calls();
    assert_eq!(calls.len(), 2);
    assert_eq!(calls[0].form["OIDCToken"], OIDC_TOKEN);
    assert_eq!(calls[1].form["OIDCToken"], "rotated-token");
    assert_eq!(calls[1].query["Timestamp"], "2026-11-26T09:57:01Z");
}

#[tokio::test]
async fn refresh_margin_is_configurable() {
    let mut s = Setup::start().await;
    s.provider = s.provider.with_refresh_margin(Duration::from_secs(600));
    s.provider.credentials().await.unwrap();
    s.clock.set(t0() + SignedDuration::from_secs(3600 - 599));
    assert_eq!(
        s.provider.credentials().await.unwrap().access_key_id(),
        "STS.key2"
    );
}

#[tokio::test]
async fn short_lived_answers_are_not_refreshed_on_every_call() {
    let s = Setup::start().await;
    // Shorter than the margin: reuse until half-way instead of exchanging on each call.
    *s.fake.lifetime.lock().unwrap() = SignedDuration::from_secs(100);
    s.provider.credentials().await.unwrap();
    s.clock.set(t0() + SignedDuration::from_secs(49));
    s.provider.credentials().await.unwrap();
    assert_eq!(s.calls().len(), 1);
    s.clock.set(t0() + SignedDuration::from_secs(50));
    assert_eq!(
        s.provider.credentials().await.unwrap().access_key_id(),
        "STS.key2"
    );
}

#[tokio::test]
async fn sts_error_answer_gives_a_clear_message_without_the_token() {
    let s = Setup::start().await;
    s.answer(
        400,
        json!({
            "RequestId": "REQ-42",
            "HostId": "sts.aliyuncs.com",
            "Code": "InvalidParameter.OIDCToken",
            "Message": format!("The OIDC token {OIDC_TOKEN} is expired."),
        }),
    );
    let err = s.provider.credentials().await.unwrap_err();
    assert!(err.contains("InvalidParameter.OIDCToken"), "{err}");
    assert!(err.contains("HTTP 400"), "{err}");
    assert!(err.contains("RequestId REQ-42"), "{err}");
    assert!(err.contains("ALIBABA_CLOUD_ROLE_ARN"), "{err}");
    assert!(err.contains("<redacted>"), "{err}");
    assert!(!err.contains(OIDC_TOKEN), "token leaked: {err}");

    s.answer(502, json!(format!("<html>bad gateway {OIDC_TOKEN}</html>")));
    s.clock.set(t0() + SignedDuration::from_secs(10));
    let err = s.provider.credentials().await.unwrap_err();
    assert!(
        err.contains("HTTP 502") && err.contains("not a JSON object"),
        "{err}"
    );
    assert!(!err.contains(OIDC_TOKEN), "token leaked: {err}");
}

#[tokio::test]
async fn failures_are_not_retried_at_once_and_cached_credentials_outlive_a_failed_refresh() {
    let s = Setup::start().await;
    s.provider.credentials().await.unwrap();
    s.answer(
        503,
        json!({"Code": "ServiceUnavailable", "Message": "try later"}),
    );
    let expiration = t0() + SignedDuration::from_secs(3600);

    // Inside the margin, STS down: the still-valid key keeps working.
    s.clock.set(expiration - SignedDuration::from_secs(100));
    assert_eq!(
        s.provider.credentials().await.unwrap().access_key_id(),
        "STS.key1"
    );
    assert_eq!(s.calls().len(), 2);
    // Within the backoff nobody asks STS again.
    s.clock.set(expiration - SignedDuration::from_secs(98));
    assert_eq!(
        s.provider.credentials().await.unwrap().access_key_id(),
        "STS.key1"
    );
    assert_eq!(s.calls().len(), 2);

    // With less than a minute left the key is no longer handed out: the failure is reported.
    s.clock.set(expiration - SignedDuration::from_secs(59));
    let err = s.provider.credentials().await.unwrap_err();
    assert!(err.contains("ServiceUnavailable"), "{err}");
    assert_eq!(s.calls().len(), 3);
    s.clock.set(expiration - SignedDuration::from_secs(57));
    assert_eq!(s.provider.credentials().await.unwrap_err(), err);
    assert_eq!(s.calls().len(), 3);

    // STS recovers: after the backoff a fresh exchange succeeds.
    *s.fake.answer.lock().unwrap() = None;
    s.clock.set(expiration - SignedDuration::from_secs(50));
    assert_eq!(
        s.provider.credentials().await.unwrap().access_key_id(),
        "STS.key4"
    );
}

#[tokio::test]
async fn missing_or_empty_token_file_names_the_path_and_sends_nothing() {
    let s = Setup::start().await;
    let path = s.token_file.path().to_path_buf();
    std::fs::write(&path, " \n").unwrap();
    let err = s.provider.credentials().await.unwrap_err();
    assert!(
        err.contains(&path.display().to_string()) && err.contains("empty"),
        "{err}"
    );

    std::fs::remove_file(&path).unwrap();
    s.clock.set(t0() + SignedDuration::from_secs(10));
    let err = s.provider.credentials().await.unwrap_err();
    assert!(err.contains(&path.display().to_string()), "{err}");
    assert!(err.contains("ALIBABA_CLOUD_OIDC_TOKEN_FILE"), "{err}");
    assert!(s.calls().is_empty());
}

#[tokio::test]
async fn unusable_success_answers_are_errors_that_quote_no_secret() {
    let s = Setup::start().await;
    let cases = [
        (json!({"RequestId": "r1"}), "without Credentials"),
        (
            json!({"Credentials": {"AccessKeyId": "STS.x", "AccessKeySecret": "stsSecret-x", "Expiration": "2030-01-01T00:00:00Z"}}),
            "Credentials.SecurityToken",
        ),
        (
            json!({"Credentials": {"AccessKeyId": "STS.x", "AccessKeySecret": "stsSecret-x", "SecurityToken": "CAISstsToken-x", "Expiration": "tomorrow stsSecret-x"}}),
            "not an RFC 3339 time",
        ),
        (
            json!({"Credentials": {"AccessKeyId": "STS.x", "AccessKeySecret": "stsSecret-x", "SecurityToken": "CAISstsToken-x", "Expiration": "2020-01-01T00:00:00Z"}}),
            "check this machine's clock",
        ),
        (json!("stsSecret-x in a string"), "not a JSON object"),
    ];
    for (i, (body, want)) in cases.into_iter().enumerate() {
        s.answer(200, body);
        s.clock.set(t0() + SignedDuration::from_secs(10 * i as i64));
        let err = s.provider.credentials().await.unwrap_err();
        assert!(err.contains(want), "case {i}: {err}");
        assert!(
            !err.contains(STS_SECRET_PREFIX) && !err.contains(STS_TOKEN_PREFIX),
            "case {i}: {err}"
        );
    }
    // Not JSON at all.
    *s.fake.answer.lock().unwrap() = Some((200, "AccessKeySecret=stsSecret-x".into()));
    s.clock.set(t0() + SignedDuration::from_secs(100));
    let err = s.provider.credentials().await.unwrap_err();
    assert!(
        err.contains("not a JSON object") && !err.contains(STS_SECRET_PREFIX),
        "{err}"
    );
}

#[tokio::test]
async fn unreachable_sts_is_a_clear_error() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let token_file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(token_file.path(), OIDC_TOKEN).unwrap();
    let config = RrsaConfig {
        role_arn: "r".into(),
        oidc_provider_arn: "p".into(),
        token_file: token_file.path().to_path_buf(),
        session_name: "s".into(),
        sts_endpoint: format!("http://{addr}"),
        duration_seconds: 900,
    };
    let provider =
        RrsaProvider::new(config, Duration::from_secs(2), Duration::from_secs(5)).unwrap();
    let err = provider.credentials().await.unwrap_err();
    assert!(
        err.contains("STS AssumeRoleWithOIDC") && err.contains(&addr.to_string()),
        "{err}"
    );
    assert!(!err.contains(OIDC_TOKEN), "{err}");
}

#[tokio::test]
async fn debug_never_shows_a_secret() {
    let s = Setup::start().await;
    let creds = s.provider.credentials().await.unwrap();
    for shown in [
        format!("{:?}", s.provider),
        format!("{:#?}", s.provider),
        format!("{creds:?}"),
        creds.to_string(),
    ] {
        assert!(!shown.contains(OIDC_TOKEN), "{shown}");
        assert!(
            !shown.contains(STS_SECRET_PREFIX) && !shown.contains(STS_TOKEN_PREFIX),
            "{shown}"
        );
    }
    assert!(format!("{:?}", s.provider).contains("acs:ram::123:role/sae-controller"));
}

#[test]
fn config_from_env_needs_all_three_variables() {
    let env = |pairs: &'static [(&'static str, &'static str)]| {
        move |name: &str| {
            pairs
                .iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| v.to_string())
        }
    };
    let full: &'static [(&'static str, &'static str)] = &[
        (ENV_ROLE_ARN, "acs:ram::1:role/r"),
        (ENV_OIDC_PROVIDER_ARN, "acs:ram::1:oidc-provider/p"),
        (
            ENV_OIDC_TOKEN_FILE,
            "/var/run/secrets/ack.alibabacloud.com/rrsa-tokens/token",
        ),
    ];
    let config = RrsaConfig::from_lookup(None, env(full)).unwrap();
    assert_eq!(
        config,
        RrsaConfig {
            role_arn: "acs:ram::1:role/r".into(),
            oidc_provider_arn: "acs:ram::1:oidc-provider/p".into(),
            token_file: "/var/run/secrets/ack.alibabacloud.com/rrsa-tokens/token".into(),
            session_name: DEFAULT_SESSION_NAME.into(),
            sts_endpoint: DEFAULT_STS_ENDPOINT.into(),
            duration_seconds: 3600,
        }
    );
    let named: &'static [(&'static str, &'static str)] = &[
        (ENV_ROLE_ARN, "r"),
        (ENV_OIDC_PROVIDER_ARN, "p"),
        (ENV_OIDC_TOKEN_FILE, "/t"),
        (ENV_ROLE_SESSION_NAME, "custom"),
    ];
    let config = RrsaConfig::from_lookup(Some("http://127.0.0.1:9".into()), env(named)).unwrap();
    assert_eq!(
        (config.session_name.as_str(), config.sts_endpoint.as_str()),
        ("custom", "http://127.0.0.1:9")
    );
    assert!(RrsaConfig::from_lookup(None, env(&full[..2])).is_none());
    assert!(
        RrsaConfig::from_lookup(
            None,
            env(&[
                (ENV_ROLE_ARN, "r"),
                (ENV_OIDC_PROVIDER_ARN, " "),
                (ENV_OIDC_TOKEN_FILE, "/t")
            ])
        )
        .is_none()
    );
    assert!(RrsaConfig::from_lookup(None, env(&[])).is_none());
}

#[test]
fn endpoints_take_a_bare_host_and_refuse_nonsense() {
    assert_eq!(
        endpoint_url("sts.cn-hangzhou.aliyuncs.com")
            .unwrap()
            .as_str(),
        "https://sts.cn-hangzhou.aliyuncs.com/"
    );
    assert_eq!(
        endpoint_url("http://127.0.0.1:9300").unwrap().as_str(),
        "http://127.0.0.1:9300/"
    );
    for bad in ["ftp://x", "http://", "https://a b"] {
        assert!(endpoint_url(bad).is_err(), "{bad}");
    }
    let config = RrsaConfig {
        role_arn: "r".into(),
        oidc_provider_arn: "p".into(),
        token_file: "/t".into(),
        session_name: "s".into(),
        sts_endpoint: DEFAULT_STS_ENDPOINT.into(),
        duration_seconds: 899,
    };
    let err =
        RrsaProvider::new(config, Duration::from_secs(1), Duration::from_secs(1)).unwrap_err();
    assert!(err.contains("900"), "{err}");
}
