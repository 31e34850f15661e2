//! RRSA (RAM Roles for Service Accounts) on ACK: the pod's projected OIDC token is exchanged with
//! STS `AssumeRoleWithOIDC` for short-lived credentials, which are cached and refreshed before they
//! expire.
//!
//! Two values here are secrets: the OIDC token (anyone holding it can assume the role until it
//! expires) and the STS AccessKeySecret/SecurityToken it buys. Neither is logged, kept in an error
//! message or shown by `Debug`; errors name files, fields and STS codes only.
//!
//! The token file is read again for every exchange because ACK rotates it in place; caching its
//! content would eventually present an expired token.

use super::sign;
use super::transport::{BodyProblem, USER_AGENT_VALUE, error_chain, read_bounded};
use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use jiff::{SignedDuration, Timestamp};
use reqwest::Url;
use reqwest::header::{ACCEPT, CONTENT_TYPE, USER_AGENT};
use serde::Deserialize;

use super::Credentials;

pub const ENV_ROLE_ARN: &str = "ALIBABA_CLOUD_ROLE_ARN";
pub const ENV_OIDC_PROVIDER_ARN: &str = "ALIBABA_CLOUD_OIDC_PROVIDER_ARN";
pub const ENV_OIDC_TOKEN_FILE: &str = "ALIBABA_CLOUD_OIDC_TOKEN_FILE";
pub const ENV_ROLE_SESSION_NAME: &str = "ALIBABA_CLOUD_ROLE_SESSION_NAME";

pub const DEFAULT_STS_ENDPOINT: &str = "https://sts.aliyuncs.com";
pub const DEFAULT_SESSION_NAME: &str = "sae-controller";
pub const DEFAULT_DURATION_SECONDS: u32 = 3600;
/// STS refuses shorter sessions.
pub const MIN_DURATION_SECONDS: u32 = 900;
/// Refresh this long before `Expiration`, as Alibaba's credential libraries do: enough for a call
/// signed just before the refresh to reach SAE while the key is still valid.
pub const REFRESH_MARGIN: Duration = Duration::from_secs(180);
/// After a failed exchange, callers get the cached answer for this long instead of each asking STS
/// again: every reconcile needs credentials, and an STS outage should not become a request storm.
pub const FAILURE_BACKOFF: Duration = Duration::from_secs(5);
/// After a failed refresh, cached credentials are still handed out while at least this much of
/// their life remains: longer than one SAE call may take, so no call arrives with an expired key.
pub const MIN_REMAINING: Duration = Duration::from_secs(60);

const STS_API_VERSION: &str = "2015-04-01";
const MAX_ANSWER_BYTES: usize = 64 * 1024;
const EXCERPT_CHARS: usize = 200;

/// Where the RRSA exchange goes and what it asks for. Holds no secret: the token stays in its file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RrsaConfig {
    pub role_arn: String,
    pub oidc_provider_arn: String,
    pub token_file: PathBuf,
    pub session_name: String,
    /// `https://sts.aliyuncs.com` by default; a bare host gets `https://`.
    pub sts_endpoint: String,
    pub duration_seconds: u32,
}

impl RrsaConfig {
    /// Reads `ALIBABA_CLOUD_ROLE_ARN`, `ALIBABA_CLOUD_OIDC_PROVIDER_ARN`,
    /// `ALIBABA_CLOUD_OIDC_TOKEN_FILE` (all three needed) and the optional
    /// `ALIBABA_CLOUD_ROLE_SESSION_NAME`. `None` when RRSA is not configured; a partial setup is
    /// logged as a warning naming the missing variables, since it is almost always a mistake.
    pub fn from_env(sts_endpoint: Option<String>) -> Option<Self> {
        Self::from_lookup(sts_endpoint, |name| std::env::var(name).ok())
    }

    fn from_lookup(
        sts_endpoint: Option<String>,
        lookup: impl Fn(&str) -> Option<String>,
    ) -> Option<Self> {
        let var = |name: &str| {
            lookup(name)
                .map(|v| v.trim().to_string())
                .filter(|v| !v.is_empty())
        };
        let required = [ENV_ROLE_ARN, ENV_OIDC_PROVIDER_ARN, ENV_OIDC_TOKEN_FILE];
        let values: Vec<Option<String>> = required.iter().map(|name| var(name)).collect();
        let missing: Vec<&str> = required
            .iter()
            .zip(&values)
            .filter(|(_, v)| v.is_none())
            .map(|(name, _)| *name)
            .collect();
        if !missing.is_empty() {
            if missing.len() < required.len() {
                tracing::warn!(
                    missing = %missing.join(", "),
                    "RRSA is only partly configured and will not be used: set all of \
                     ALIBABA_CLOUD_ROLE_ARN, ALIBABA_CLOUD_OIDC_PROVIDER_ARN and ALIBABA_CLOUD_OIDC_TOKEN_FILE"
                );
            }
            return None;
        }
        let mut values = values.into_iter().flatten();
        let (role_arn, oidc_provider_arn, token_file) =
            (values.next()?, values.next()?, values.next()?);
        Some(Self {
            role_arn,
            oidc_provider_arn,
            token_file: PathBuf::from(token_file),
            session_name: var(ENV_ROLE_SESSION_NAME)
                .unwrap_or_else(|| DEFAULT_SESSION_NAME.to_string()),
            sts_endpoint: sts_endpoint
                .map(|e| e.trim().to_string())
                .filter(|e| !e.is_empty())
                .unwrap_or_else(|| DEFAULT_STS_ENDPOINT.to_string()),
            duration_seconds: DEFAULT_DURATION_SECONDS,
        })
    }
}

/// The STS endpoint as a URL: a bare host (the form Alibaba's libraries take) gets `https://`.
fn endpoint_url(endpoint: &str) -> Result<Url, String> {
    let endpoint = endpoint.trim();
    let with_scheme = if endpoint.contains("://") {
        endpoint.to_string()
    } else {
        format!("https://{endpoint}")
    };
    let mut url = Url::parse(&with_scheme)
        .map_err(|e| format!("the STS endpoint {endpoint:?} is not a valid URL: {e}"))?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
        return Err(format!(
            "the STS endpoint {endpoint:?} must be an http(s) URL or a host name"
        ));
    }
    url.set_query(None);
    url.set_fragment(None);
    Ok(url)
}

type NowFn = Arc<dyn Fn() -> Timestamp + Send + Sync>;

/// STS credentials as issued, with when to ask again.
#[derive(Clone)]
struct Issued {
    credentials: Credentials,
    expiration: Timestamp,
    refresh_at: Timestamp,
}

#[derive(Default)]
struct Cache {
    issued: Option<Issued>,
    /// When the last exchange failed, and why (a message safe to show).
    last_failure: Option<(Timestamp, String)>,
}

struct Shared {
    config: RrsaConfig,
    url: Url,
    http: reqwest::Client,
    /// Held across the exchange, so concurrent callers wait for one exchange and then share it.
    cache: tokio::sync::Mutex<Cache>,
}

/// Credentials obtained through RRSA. Cloning shares the cache and the HTTP client.
#[derive(Clone)]
pub struct RrsaProvider {
    shared: Arc<Shared>,
    now: NowFn,
    refresh_margin: SignedDuration,
}

impl fmt::Debug for RrsaProvider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let c = &self.shared.config;
        f.debug_struct("RrsaProvider")
            .field("role_arn", &c.role_arn)
            .field("oidc_provider_arn", &c.oidc_provider_arn)
            .field("token_file", &c.token_file)
            .field("session_name", &c.session_name)
            .field("sts_endpoint", &self.shared.url.as_str())
            .finish_non_exhaustive()
    }
}

impl RrsaProvider {
    /// Checks the configuration and builds the HTTP client; nothing is sent or read yet.
    pub fn new(
        config: RrsaConfig,
        connect_timeout: Duration,
        timeout: Duration,
    ) -> Result<Self, String> {
        let url = endpoint_url(&config.sts_endpoint)?;
        if config.duration_seconds < MIN_DURATION_SECONDS {
            return Err(format!(
                "the RRSA session duration must be at least {MIN_DURATION_SECONDS} s (STS refuses less), got {}",
                config.duration_seconds
            ));
        }
        for (what, value) in [
            (ENV_ROLE_ARN, &config.role_arn),
            (ENV_OIDC_PROVIDER_ARN, &config.oidc_provider_arn),
            ("the role session name", &config.session_name),
        ] {
            if value.trim().is_empty() {
                return Err(format!("RRSA needs {what} to be non-empty"));
            }
        }
        let http = reqwest::Client::builder()
            .connect_timeout(connect_timeout)
            .timeout(timeout)
            // The form carries the OIDC token: it goes to the configured host or nowhere.
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| format!("cannot build the HTTP client for STS: {}", error_chain(&e)))?;
        Ok(Self {
            shared: Arc::new(Shared {
                config,
                url,
                http,
                cache: tokio::sync::Mutex::new(Cache::default()),
            }),
            now: Arc::new(Timestamp::now),
            refresh_margin: SignedDuration::from_secs(REFRESH_MARGIN.as_secs() as i64),
        })
    }

    /// Replaces the clock that decides when to refresh (and stamps `Timestamp`); for tests.
    pub fn with_clock(mut self, now: impl Fn() -> Timestamp + Send + Sync + 'static) -> Self {
        self.now = Arc::new(now);
        self
    }

    /// Replaces [`REFRESH_MARGIN`]; for tests.
    pub fn with_refresh_margin(mut self, margin: Duration) -> Self {
        self.refresh_margin = SignedDuration::try_from(margin).unwrap_or(self.refresh_margin);
        self
    }

    pub fn config(&self) -> &RrsaConfig {
        &self.shared.config
    }

    /// The cached STS credentials, exchanging the OIDC token (re-reading its file) when there are
    /// none or they are within the refresh margin of `Expiration`. Concurrent callers share one
    /// exchange. If a refresh fails while the cached credentials have at least [`MIN_REMAINING`]
    /// left, those are returned and the failure is logged. Errors are messages fit for an
    /// object's status.
    pub async fn credentials(&self) -> Result<Credentials, String> {
        let mut cache = self.shared.cache.lock().await;
        let now = (self.now)();
        let min_remaining = SignedDuration::from_secs(MIN_REMAINING.as_secs() as i64);
        let still_valid = |cache: &Cache| {
            cache
                .issued
                .as_ref()
                .filter(|i| i.expiration.duration_since(now) >= min_remaining)
                .map(|i| i.credentials.clone())
        };
        if let Some(issued) = &cache.issued
            && now < issued.refresh_at
        {
            return Ok(issued.credentials.clone());
        }
        if let Some((failed_at, why)) = &cache.last_failure
            && now.duration_since(*failed_at)
                < SignedDuration::from_secs(FAILURE_BACKOFF.as_secs() as i64)
        {
            return still_valid(&cache).ok_or_else(|| why.clone());
        }
        match self.exchange(now).await {
            Ok(issued) => {
                tracing::info!(
                    access_key_id = %issued.credentials.access_key_id(),
                    expiration = %issued.expiration,
                    role_arn = %self.shared.config.role_arn,
                    "obtained STS credentials through RRSA (AssumeRoleWithOIDC)"
                );
                let credentials = issued.credentials.clone();
                cache.issued = Some(issued);
                cache.last_failure = None;
                Ok(credentials)
            }
            Err(why) => {
                cache.last_failure = Some((now, why.clone()));
                match still_valid(&cache) {
                    Some(credentials) => {
                        tracing::warn!(error = %why, "refreshing RRSA credentials failed; using the cached ones until they expire");
                        Ok(credentials)
                    }
                    None => Err(why),
                }
            }
        }
    }

    async fn exchange(&self, now: Timestamp) -> Result<Issued, String> {
        let config = &self.shared.config;
        let path = &config.token_file;
        let raw = tokio::fs::read(path).await.map_err(|e| {
            format!(
                "cannot read the RRSA OIDC token file {} ({ENV_OIDC_TOKEN_FILE}): {e}",
                path.display()
            )
        })?;
        let token = String::from_utf8(raw).map_err(|_| {
            format!(
                "the RRSA OIDC token file {} is not UTF-8 text",
                path.display()
            )
        })?;
        // A token is one line of base64url; surrounding whitespace comes from editors and `echo`.
        let token = token.trim();
        if token.is_empty() {
            return Err(format!(
                "the RRSA OIDC token file {} is empty",
                path.display()
            ));
        }

        let mut url = self.shared.url.clone();
        url.query_pairs_mut()
            .append_pair("Action", "AssumeRoleWithOIDC")
            .append_pair("Version", STS_API_VERSION)
            .append_pair("Format", "JSON")
            .append_pair("Timestamp", &sign::iso_date(now));
        let duration = config.duration_seconds.to_string();
        let form: Vec<String> = [
            ("RoleArn", config.role_arn.as_str()),
            ("OIDCProviderArn", config.oidc_provider_arn.as_str()),
            ("OIDCToken", token),
            ("RoleSessionName", config.session_name.as_str()),
            ("DurationSeconds", duration.as_str()),
        ]
        .iter()
        // Form values escaped as RFC 3986 does: every form decoder reads that back unchanged.
        .map(|(k, v)| format!("{k}={}", sign::encode_rfc3986(v)))
        .collect();

        let endpoint = self.shared.url.as_str();
        let response = self
            .shared
            .http
            .post(url)
            .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
            .header(ACCEPT, "application/json")
            .header(USER_AGENT, USER_AGENT_VALUE)
            .body(form.join("&"))
            .send()
            .await
            .map_err(|e| {
                format!(
                    "STS AssumeRoleWithOIDC at {endpoint} failed: {}",
                    error_chain(&e)
                )
            })?;
        let status = response.status().as_u16();
        let body = read_limited(response)
            .await
            .map_err(|why| format!("STS AssumeRoleWithOIDC at {endpoint}: {why}"))?;
        interpret(status, &body, token, now, self.refresh_margin)
    }
}

/// The fields of an STS answer we read. No `Debug`: it may hold the secret.
#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct StsAnswer {
    request_id: Option<String>,
    code: Option<serde_json::Value>,
    message: Option<String>,
    credentials: Option<StsCredentials>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct StsCredentials {
    access_key_id: Option<String>,
    access_key_secret: Option<String>,
    security_token: Option<String>,
    expiration: Option<String>,
}

/// Turns STS's answer into credentials or a message that shows neither the token nor a secret.
fn interpret(
    status: u16,
    body: &[u8],
    token: &str,
    now: Timestamp,
    margin: SignedDuration,
) -> Result<Issued, String> {
    let parsed: Option<StsAnswer> = serde_json::from_slice(body).ok();
    let request_suffix = |answer: &StsAnswer| {
        answer
            .request_id
            .as_deref()
            .map(|id| format!(" (RequestId {})", clean(id, &[token])))
            .unwrap_or_default()
    };
    if !(200..300).contains(&status) {
        return Err(match parsed {
            Some(answer) => {
                let code = match &answer.code {
                    Some(serde_json::Value::String(s)) => s.clone(),
                    Some(other) => other.to_string(),
                    None => "no error code".to_string(),
                };
                format!(
                    "STS AssumeRoleWithOIDC refused with {} (HTTP {status}): {}{}; check {ENV_ROLE_ARN}, \
                     {ENV_OIDC_PROVIDER_ARN} and the role's trust policy for this ServiceAccount",
                    clean(&code, &[token]),
                    clean(answer.message.as_deref().unwrap_or("no message"), &[token]),
                    request_suffix(&answer)
                )
            }
            None => format!(
                "STS AssumeRoleWithOIDC answered HTTP {status} with a body that is not a JSON object: {}",
                clean(&String::from_utf8_lossy(body), &[token])
            ),
        });
    }
    // A 2xx body may hold the secret in a shape we did not expect, so none of it is quoted.
    let Some(answer) = parsed else {
        return Err(format!(
            "STS AssumeRoleWithOIDC answered HTTP {status} with a body that is not a JSON object"
        ));
    };
    let suffix = request_suffix(&answer);
    let Some(creds) = answer.credentials else {
        return Err(format!(
            "STS AssumeRoleWithOIDC answered HTTP {status} without Credentials{suffix}"
        ));
    };
    let field = |value: Option<String>, name: &str| {
        value.filter(|v| !v.trim().is_empty()).ok_or_else(|| {
            format!("STS AssumeRoleWithOIDC answered without Credentials.{name}{suffix}")
        })
    };
    let access_key_id = field(creds.access_key_id, "AccessKeyId")?;
    let access_key_secret = field(creds.access_key_secret, "AccessKeySecret")?;
    let security_token = field(creds.security_token, "SecurityToken")?;
    let expiration_text = field(creds.expiration, "Expiration")?;
    let expiration: Timestamp = expiration_text.trim().parse().map_err(|_| {
        format!(
            "STS AssumeRoleWithOIDC answered an Expiration that is not an RFC 3339 time: {}{suffix}",
            clean(&expiration_text, &[token, &access_key_secret, &security_token])
        )
    })?;
    if expiration <= now {
        return Err(format!(
            "STS AssumeRoleWithOIDC answered credentials that expired at {expiration}, before now ({now}): \
             check this machine's clock{suffix}"
        ));
    }
    Ok(Issued {
        credentials: Credentials::new(access_key_id, access_key_secret, Some(security_token)),
        expiration,
        refresh_at: refresh_at(now, expiration, margin),
    })
}

/// When to ask again: `margin` before `expiration`, but never at once for credentials that live
/// less than the margin (then half-way), so a short-lived answer does not cause an exchange per call.
pub(super) fn refresh_at(
    now: Timestamp,
    expiration: Timestamp,
    margin: SignedDuration,
) -> Timestamp {
    let lifetime = expiration.duration_since(now);
    let ahead = if lifetime > margin {
        margin
    } else {
        lifetime / 2
    };
    expiration.checked_sub(ahead).unwrap_or(expiration)
}

async fn read_limited(response: reqwest::Response) -> Result<Vec<u8>, String> {
    read_bounded(response, MAX_ANSWER_BYTES)
        .await
        .map_err(|problem| match problem {
            BodyProblem::TooLarge => format!("the answer is larger than {MAX_ANSWER_BYTES} bytes"),
            BodyProblem::Failed(e) => format!("reading the answer: {}", error_chain(&e)),
        })
}

/// One line, at most [`EXCERPT_CHARS`] characters, with every secret replaced.
fn clean(text: &str, secrets: &[&str]) -> String {
    let mut text = text.replace(['\n', '\r'], " ");
    for secret in secrets.iter().filter(|s| !s.is_empty()) {
        text = text.replace(secret, "<redacted>");
    }
    if text.chars().count() > EXCERPT_CHARS {
        text = text.chars().take(EXCERPT_CHARS).collect::<String>() + "…";
    }
    text
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::sync::Mutex;

    use axum::extract::{Query, State};
    use axum::http::{HeaderMap, StatusCode};
    use axum::routing::post;
    use axum::{Form, Router};
    use serde_json::{Value, json};

    use super::*;

    const OIDC_TOKEN: &str = "eyJhbGciOiJSUzI1NiJ9.oidc-token-first.sig";
    const STS_SECRET_PREFIX: &str = "stsSecret-";
    const STS_TOKEN_PREFIX: &str = "CAISstsToken-";

    fn t0() -> Timestamp {
        "2026-11-26T09:00:00Z".parse().unwrap()
    }

    /// A clock the test moves by hand, shared by the provider and the fake STS.
    #[derive(Clone)]
    struct TestClock(Arc<Mutex<Timestamp>>);

    impl TestClock {
        fn new() -> Self {
            Self(Arc::new(Mutex::new(t0())))
        }
        fn now(&self) -> Timestamp {
            *self.0.lock().unwrap()
        }
        fn set(&self, t: Timestamp) {
            *self.0.lock().unwrap() = t;
        }
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
        clock: TestClock,
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
        clock: TestClock,
        provider: RrsaProvider,
        token_file: tempfile::NamedTempFile,
    }

    impl Setup {
        async fn start() -> Self {
            let clock = TestClock::new();
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
            let provider =
                RrsaProvider::new(config, Duration::from_secs(2), Duration::from_secs(5))
                    .unwrap()
                    .with_clock({
                        let clock = clock.clone();
                        move || clock.now()
                    });
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
            futures::future::join_all((0..20).map(|_| s.provider.clone().credentials_owned()))
                .await;
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
        let config =
            RrsaConfig::from_lookup(Some("http://127.0.0.1:9".into()), env(named)).unwrap();
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
}
