//! The RAM role of the ECS instance the controller runs on, from the instance metadata service:
//! a session token first (IMDSv2: `PUT /latest/api/token`), then, with it, the role name (unless
//! configured) and the role's STS credentials. The credentials are cached and fetched again before
//! they expire, the way [`super::rrsa`] does for RRSA.
//!
//! Opt-in only (`ALIBABA_CLOUD_ECS_METADATA=<role name>`, or a credentials-file profile of type
//! `ecs_ram_role`): on a Kubernetes node the metadata service hands any pod the *node's* role, and a
//! controller that silently picked that up would act with an authority nobody granted it.
//!
//! There is no IMDSv1 fallback: a token is always fetched, so an instance with the hardened mode on
//! works, and a request forged through a confused proxy (which cannot PUT with the header) does not.
//! Requests never go through an HTTP proxy and never follow redirects.
//!
//! Shares the HTTP helpers of [`super::client`]; no Kubernetes types. Tests (against the
//! simulator's metadata service) live in `ecs_role/tests.rs`.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use jiff::{SignedDuration, Timestamp};
use reqwest::Url;
use serde::Deserialize;

use super::Credentials;
use super::transport::{BodyProblem, USER_AGENT_VALUE, error_chain, read_bounded};

pub const ENV_ROLE_NAME: &str = "ALIBABA_CLOUD_ECS_METADATA";
pub const ENV_DISABLED: &str = "ALIBABA_CLOUD_ECS_METADATA_DISABLED";
/// The metadata service every ECS instance reaches.
pub const DEFAULT_ENDPOINT: &str = "http://100.100.100.200";
/// The session token's lifetime we ask for (the service's maximum, six hours).
pub const TOKEN_TTL_SECONDS: u32 = 21_600;
const TOKEN_TTL_HEADER: &str = "X-aliyun-ecs-metadata-token-ttl-seconds";
const TOKEN_HEADER: &str = "X-aliyun-ecs-metadata-token";
const CREDENTIALS_PATH: &str = "/latest/meta-data/ram/security-credentials/";
const MAX_ANSWER_BYTES: usize = 16 * 1024;
/// Refresh this long before `Expiration` (the service rotates credentials well before).
const REFRESH_MARGIN: SignedDuration = SignedDuration::from_secs(300);
/// Cached credentials with less than this left are not used even when a refresh fails.
const MIN_REMAINING: SignedDuration = SignedDuration::from_secs(60);
/// After a failed fetch, callers get the same error for this long instead of a new request each.
const FAILURE_BACKOFF: SignedDuration = SignedDuration::from_secs(5);

/// Whether `ALIBABA_CLOUD_ECS_METADATA_DISABLED=true` turns the ECS role off.
pub fn disabled_by_env() -> bool {
    std::env::var(ENV_DISABLED).is_ok_and(|v| v.trim().eq_ignore_ascii_case("true"))
}

#[derive(Clone)]
struct Issued {
    credentials: Credentials,
    expiration: Timestamp,
    refresh_at: Timestamp,
}

#[derive(Default)]
struct Cache {
    issued: Option<Issued>,
    last_failure: Option<(Timestamp, String)>,
}

struct Shared {
    endpoint: Url,
    role_name: Option<String>,
    http: reqwest::Client,
    cache: tokio::sync::Mutex<Cache>,
}

type NowFn = Arc<dyn Fn() -> Timestamp + Send + Sync>;

/// The instance's RAM role credentials. Cloning shares the cache.
#[derive(Clone)]
pub struct EcsRoleProvider {
    shared: Arc<Shared>,
    now: NowFn,
}

impl fmt::Debug for EcsRoleProvider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EcsRoleProvider")
            .field("endpoint", &self.shared.endpoint.as_str())
            .field("role_name", &self.shared.role_name)
            .finish_non_exhaustive()
    }
}

impl EcsRoleProvider {
    /// `role_name`: `None` asks the service which role is attached. Nothing is sent yet.
    pub fn new(
        endpoint: &str,
        role_name: Option<String>,
        timeout: Duration,
    ) -> Result<Self, String> {
        let endpoint = Url::parse(endpoint)
            .ok()
            .filter(|u| matches!(u.scheme(), "http" | "https") && u.host().is_some())
            .ok_or_else(|| {
                format!("the ECS metadata endpoint {endpoint:?} is not an http(s) URL")
            })?;
        let role_name = role_name
            .map(|r| r.trim().to_owned())
            .filter(|r| !r.is_empty());
        if let Some(role) = &role_name
            && role.contains(['/', '?', '#'])
        {
            return Err(format!("the ECS RAM role name {role:?} is not a role name"));
        }
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .no_proxy()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| {
                format!(
                    "cannot build the HTTP client for the ECS metadata service: {}",
                    error_chain(&e)
                )
            })?;
        Ok(Self {
            shared: Arc::new(Shared {
                endpoint,
                role_name,
                http,
                cache: tokio::sync::Mutex::new(Cache::default()),
            }),
            now: Arc::new(Timestamp::now),
        })
    }

    /// Replaces the clock that decides when to refresh; for tests.
    pub fn with_clock(mut self, now: impl Fn() -> Timestamp + Send + Sync + 'static) -> Self {
        self.now = Arc::new(now);
        self
    }

    /// What the start-up log line says about this source.
    pub fn describe(&self) -> String {
        format!(
            "ECS RAM role {} via {}",
            self.shared.role_name.as_deref().unwrap_or("<attached>"),
            self.shared.endpoint
        )
    }

    /// The cached credentials, fetched again within [`REFRESH_MARGIN`] of their `Expiration`.
    /// Concurrent callers share one fetch. Errors are messages fit for an object's status.
    pub async fn credentials(&self) -> Result<Credentials, String> {
        let mut cache = self.shared.cache.lock().await;
        let now = (self.now)();
        let still_valid = |cache: &Cache| {
            cache
                .issued
                .as_ref()
                .filter(|i| i.expiration.duration_since(now) >= MIN_REMAINING)
                .map(|i| i.credentials.clone())
        };
        if let Some(issued) = &cache.issued
            && now < issued.refresh_at
        {
            return Ok(issued.credentials.clone());
        }
        if let Some((failed_at, why)) = &cache.last_failure
            && now.duration_since(*failed_at) < FAILURE_BACKOFF
        {
            return still_valid(&cache).ok_or_else(|| why.clone());
        }
        match self.fetch(now).await {
            Ok(issued) => {
                tracing::info!(
                    access_key_id = %issued.credentials.access_key_id(),
                    expiration = %issued.expiration,
                    "obtained the ECS RAM role's STS credentials from the metadata service"
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
                        tracing::warn!(error = %why, "refreshing the ECS RAM role credentials failed; using the cached ones until they expire");
                        Ok(credentials)
                    }
                    None => Err(why),
                }
            }
        }
    }

    async fn fetch(&self, now: Timestamp) -> Result<Issued, String> {
        let token = self.session_token().await?;
        let role = match &self.shared.role_name {
            Some(role) => role.clone(),
            None => {
                let listed = self.get_text(CREDENTIALS_PATH, &token).await?;
                let role = listed.lines().next().unwrap_or("").trim().to_owned();
                if role.is_empty() || role.contains(['/', '?', '#']) {
                    return Err("the ECS metadata service names no RAM role for this instance: attach one, or set ALIBABA_CLOUD_ECS_METADATA".into());
                }
                role
            }
        };
        let body = self
            .get_text(&format!("{CREDENTIALS_PATH}{role}"), &token)
            .await?;
        interpret(&body, &role, now)
    }

    async fn session_token(&self) -> Result<String, String> {
        let url = self.url("/latest/api/token")?;
        let response = self
            .shared
            .http
            .put(url)
            .header(TOKEN_TTL_HEADER, TOKEN_TTL_SECONDS.to_string())
            .header(reqwest::header::USER_AGENT, USER_AGENT_VALUE)
            .send()
            .await
            .map_err(|e| {
                format!(
                    "the ECS metadata service at {} cannot be reached for a token: {}",
                    self.shared.endpoint,
                    error_chain(&e)
                )
            })?;
        let status = response.status();
        let body = self.read(response).await?;
        if !status.is_success() {
            return Err(format!(
                "the ECS metadata service refused a session token (HTTP {})",
                status.as_u16()
            ));
        }
        let token = String::from_utf8(body)
            .map_err(|_| "the ECS metadata token is not text".to_owned())?
            .trim()
            .to_owned();
        if token.is_empty() {
            return Err("the ECS metadata service answered an empty token".into());
        }
        Ok(token)
    }

    async fn get_text(&self, path: &str, token: &str) -> Result<String, String> {
        let url = self.url(path)?;
        let response = self
            .shared
            .http
            .get(url)
            .header(TOKEN_HEADER, token)
            .header(reqwest::header::USER_AGENT, USER_AGENT_VALUE)
            .send()
            .await
            .map_err(|e| {
                format!(
                    "the ECS metadata service at {} failed: {}",
                    self.shared.endpoint,
                    error_chain(&e)
                )
            })?;
        let status = response.status();
        let body = self.read(response).await?;
        if !status.is_success() {
            // The body of an error is the service's own short text, never credentials.
            let excerpt: String = String::from_utf8_lossy(&body)
                .replace(['\n', '\r'], " ")
                .chars()
                .take(120)
                .collect();
            return Err(format!(
                "the ECS metadata service answered HTTP {} for {path}: {excerpt}",
                status.as_u16()
            ));
        }
        String::from_utf8(body)
            .map_err(|_| format!("the ECS metadata answer for {path} is not text"))
    }

    fn url(&self, path: &str) -> Result<Url, String> {
        self.shared
            .endpoint
            .join(path)
            .map_err(|e| format!("cannot build the metadata URL for {path}: {e}"))
    }

    async fn read(&self, response: reqwest::Response) -> Result<Vec<u8>, String> {
        read_bounded(response, MAX_ANSWER_BYTES)
            .await
            .map_err(|problem| match problem {
                BodyProblem::TooLarge => {
                    format!("the ECS metadata answer is larger than {MAX_ANSWER_BYTES} bytes")
                }
                BodyProblem::Failed(e) => {
                    format!("reading the ECS metadata answer: {}", error_chain(&e))
                }
            })
    }
}

/// The role credentials document. No `Debug`: it holds the secret.
#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct RoleCredentials {
    code: Option<String>,
    access_key_id: Option<String>,
    access_key_secret: Option<String>,
    security_token: Option<String>,
    expiration: Option<String>,
}

/// Reads the credentials document; errors never quote it (it holds the secret).
fn interpret(body: &str, role: &str, now: Timestamp) -> Result<Issued, String> {
    let doc: RoleCredentials = serde_json::from_str(body).map_err(|_| {
        format!("the ECS metadata credentials of role {role} are not the expected JSON")
    })?;
    if doc.code.as_deref() != Some("Success") {
        return Err(format!(
            "the ECS metadata service has no credentials for role {role} (Code {:?})",
            doc.code.as_deref().unwrap_or("missing")
        ));
    }
    let non_empty = |v: Option<String>, what: &str| {
        v.filter(|v| !v.trim().is_empty())
            .ok_or_else(|| format!("the ECS metadata credentials of role {role} lack {what}"))
    };
    let access_key_id = non_empty(doc.access_key_id, "AccessKeyId")?;
    let secret = non_empty(doc.access_key_secret, "AccessKeySecret")?;
    let token = non_empty(doc.security_token, "SecurityToken")?;
    let expiration: Timestamp = non_empty(doc.expiration, "Expiration")?
        .parse()
        .map_err(|_| {
            format!("the ECS metadata credentials of role {role} have an unreadable Expiration")
        })?;
    if expiration <= now {
        return Err(format!(
            "the ECS metadata credentials of role {role} expired at {expiration}; check the instance clock"
        ));
    }
    Ok(Issued {
        credentials: Credentials::new(access_key_id, secret, Some(token)),
        expiration,
        refresh_at: super::rrsa::refresh_at(now, expiration, REFRESH_MARGIN),
    })
}

#[cfg(test)]
mod tests;
