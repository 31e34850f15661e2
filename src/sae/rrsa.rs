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
//!
//! Shares the HTTP helpers of [`super::client`] and the signing of [`super::sign`]; no Kubernetes
//! types. Tests (against a fake STS) live in `rrsa/tests.rs`.

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
mod tests;
