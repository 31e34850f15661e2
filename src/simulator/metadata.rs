//! The ECS instance metadata service, the part that hands an instance's RAM role credentials out:
//!
//! - `PUT /latest/api/token` with `X-aliyun-ecs-metadata-token-ttl-seconds: 1..=21600` answers a
//!   session token (IMDSv2);
//! - `GET /latest/meta-data/ram/security-credentials/` answers the role name,
//! - `GET /latest/meta-data/ram/security-credentials/<role>` the role's STS credentials as JSON
//!   (`AccessKeyId`, `AccessKeySecret`, `SecurityToken`, `Expiration`, `LastUpdated`, `Code`);
//!
//! both GETs only with a valid token in `X-aliyun-ecs-metadata-token` (the hardened mode, IMDSv1
//! off). `POST /_sim/ecs-role` `{"roleName": "...", "durationSeconds": 3600}` attaches a role to
//! the simulated instance; every credentials read then issues a fresh `STS.` key that the SAE side
//! of the simulator accepts. No role attached: 404, as on an instance without one.
//!
//! Depends on `seed` (the key it issues) and `auth` (constant-time compare) only; it does not know
//! the model or the [`Simulator`](super::Simulator): the HTTP layer hands it SAE's time and a
//! callback that registers each issued key.

use std::collections::HashMap;
use std::sync::Mutex;

use axum::http::StatusCode;
use jiff::{SignedDuration, Timestamp};
use serde::Deserialize;
use serde_json::json;

use super::auth::constant_time_eq;
use super::seed::AccessKeySpec;

pub const TOKEN_PATH: &str = "/latest/api/token";
pub const CREDENTIALS_PATH: &str = "/latest/meta-data/ram/security-credentials/";
pub const TOKEN_TTL_HEADER: &str = "x-aliyun-ecs-metadata-token-ttl-seconds";
pub const TOKEN_HEADER: &str = "x-aliyun-ecs-metadata-token";
const MAX_TOKEN_TTL_SECONDS: u64 = 21_600;
/// Live session tokens at most (expired ones are dropped first), so a token loop cannot grow memory.
const MAX_TOKENS: usize = 10_000;

/// The role attached to the simulated instance, and the session tokens handed out.
#[derive(Default)]
pub struct MetadataService {
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    role: Option<RoleSpec>,
    tokens: HashMap<String, Timestamp>,
    /// How many credential sets were issued (for tests: a refresh shows as a new one).
    issued: u64,
}

/// `POST /_sim/ecs-role`.
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RoleSpec {
    pub role_name: String,
    /// Lifetime of each issued credential set; default 3600.
    #[serde(default = "default_duration")]
    pub duration_seconds: u32,
}

fn default_duration() -> u32 {
    3600
}

/// An answer: status, content type, body.
pub struct Answer {
    pub status: StatusCode,
    pub json: bool,
    pub body: String,
}

fn text(status: StatusCode, body: impl Into<String>) -> Answer {
    Answer {
        status,
        json: false,
        body: body.into(),
    }
}

impl MetadataService {
    /// Attaches (or replaces) the instance's role.
    pub fn attach_role(&self, spec: RoleSpec) -> Result<serde_json::Value, String> {
        let name = spec.role_name.trim();
        if name.is_empty() || name.contains('/') {
            return Err("roleName must be a non-empty name without '/'".into());
        }
        if !(900..=43_200).contains(&spec.duration_seconds) {
            return Err("durationSeconds must be from 900 to 43200".into());
        }
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let view = json!({"roleName": name, "durationSeconds": spec.duration_seconds, "issued": state.issued});
        state.role = Some(RoleSpec {
            role_name: name.to_owned(),
            ..spec
        });
        Ok(view)
    }

    /// The view `GET /_sim/ecs-role` answers: the role and how many credential sets were issued.
    pub fn view(&self) -> serde_json::Value {
        let state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        json!({
            "roleName": state.role.as_ref().map(|r| r.role_name.clone()),
            "issued": state.issued,
        })
    }

    /// Answers a metadata request, or `None` when `path` is not a metadata path. `now` is SAE's
    /// clock; `register` makes an issued key known to the SAE side (the caller owns the model, so
    /// this service need not know it).
    pub fn handle(
        &self,
        now: Timestamp,
        register: impl FnOnce(AccessKeySpec) -> Result<(), String>,
        method: &str,
        path: &str,
        header: impl Fn(&str) -> Option<String>,
    ) -> Option<Answer> {
        if path == TOKEN_PATH {
            return Some(self.token(method, header(TOKEN_TTL_HEADER), now));
        }
        let rest = path.strip_prefix(CREDENTIALS_PATH)?;
        if method != "GET" {
            return Some(text(StatusCode::METHOD_NOT_ALLOWED, "method not allowed"));
        }
        if !self.token_valid(header(TOKEN_HEADER).as_deref(), now) {
            // IMDSv1 is off: no valid session token, no answer.
            return Some(text(
                StatusCode::UNAUTHORIZED,
                "a valid metadata token is required",
            ));
        }
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let Some(role) = state.role.clone() else {
            return Some(text(
                StatusCode::NOT_FOUND,
                "no RAM role is attached to this instance",
            ));
        };
        if rest.is_empty() {
            return Some(text(StatusCode::OK, role.role_name));
        }
        if rest != role.role_name {
            return Some(text(StatusCode::NOT_FOUND, "no such role"));
        }
        state.issued += 1;
        drop(state);
        Some(self.issue(register, &role, now))
    }

    fn token(&self, method: &str, ttl: Option<String>, now: Timestamp) -> Answer {
        if method != "PUT" {
            return text(StatusCode::METHOD_NOT_ALLOWED, "the token is issued by PUT");
        }
        let Some(ttl) = ttl
            .and_then(|t| t.trim().parse::<u64>().ok())
            .filter(|t| (1..=MAX_TOKEN_TTL_SECONDS).contains(t))
        else {
            return text(
                StatusCode::BAD_REQUEST,
                format!("{TOKEN_TTL_HEADER} must be 1 to {MAX_TOKEN_TTL_SECONDS}"),
            );
        };
        let token = format!("simIMDS{}", uuid::Uuid::new_v4().simple());
        let expires = now
            .saturating_add(SignedDuration::from_secs(ttl as i64))
            .unwrap_or(now);
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        state.tokens.retain(|_, until| *until > now);
        if state.tokens.len() >= MAX_TOKENS {
            return text(StatusCode::TOO_MANY_REQUESTS, "too many metadata tokens");
        }
        state.tokens.insert(token.clone(), expires);
        text(StatusCode::OK, token)
    }

    fn token_valid(&self, token: Option<&str>, now: Timestamp) -> bool {
        let Some(token) = token else { return false };
        let state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        state
            .tokens
            .iter()
            .any(|(t, until)| *until > now && constant_time_eq(t.as_bytes(), token.as_bytes()))
    }

    fn issue(
        &self,
        register: impl FnOnce(AccessKeySpec) -> Result<(), String>,
        role: &RoleSpec,
        now: Timestamp,
    ) -> Answer {
        let access_key_id = format!("STS.ecs{}", uuid::Uuid::new_v4().simple());
        let secret = format!("simECSsecret{}", uuid::Uuid::new_v4().simple());
        let token = format!(
            "CAISsimECStoken{}{}",
            uuid::Uuid::new_v4().simple(),
            uuid::Uuid::new_v4().simple()
        );
        let key = AccessKeySpec {
            access_key_id: access_key_id.clone(),
            access_key_secret: secret.clone(),
            security_token: Some(token.clone()),
        };
        if let Err(why) = register(key) {
            return text(StatusCode::INTERNAL_SERVER_ERROR, why);
        }
        let expiration = now
            .saturating_add(SignedDuration::from_secs(role.duration_seconds.into()))
            .unwrap_or(now);
        let stamp = |t: Timestamp| t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string();
        tracing::info!(%access_key_id, role = %role.role_name, "issued ECS RAM role credentials");
        Answer {
            status: StatusCode::OK,
            json: true,
            body: json!({
                "AccessKeyId": access_key_id,
                "AccessKeySecret": secret,
                "SecurityToken": token,
                "Expiration": stamp(expiration),
                "LastUpdated": stamp(now),
                "Code": "Success",
            })
            .to_string(),
        }
    }
}
