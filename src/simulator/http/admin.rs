//! The unsigned admin API under `/_sim/`: apps, faults, access keys, throttle switches, OIDC
//! tokens, the ECS role, seeds, console change orders, settings, the ledger and reset. Answers
//! never contain a secret or a token.
//!
//! Uses `wire` to read bodies and the model's admin methods; it never answers an SAE operation.

use std::collections::BTreeMap;

use axum::body::Body;
use axum::http::header::CONTENT_TYPE;
use axum::http::request::Parts;
use axum::http::{HeaderValue, Response, StatusCode};
use hyper::body::Incoming;
use serde::Deserialize;
use serde_json::{Value, json};

use super::wire::read_body;
use crate::simulator::change_order::{ConsoleChangeOrderSpec, DeletingView};
use crate::simulator::clock::{MAX_LAG_SECS, MAX_PREPARING_SECS};
use crate::simulator::seed::{AccessKeySpec, AppFaults, AppSpec, OidcTokenSpec, Seed};
use crate::simulator::shared::{MAX_OFFLINE_SECS, Simulator};
use crate::simulator::times::{TimeForm, offset_name, parse_offset};

/// Largest admin request body (seeding thousands of instances fits).
pub const MAX_ADMIN_BODY_BYTES: usize = 8 * 1024 * 1024;

fn admin_json(status: StatusCode, value: Value) -> Response<Body> {
    let mut resp = Response::new(Body::from(value.to_string()));
    *resp.status_mut() = status;
    resp.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    resp
}

fn admin_error(status: StatusCode, message: impl Into<String>) -> Response<Body> {
    admin_json(status, json!({"error": message.into()}))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct AppsBody {
    apps: Vec<AppSpec>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct ConfigBody {
    requests_per_minute: Option<u32>,
    change_order_seconds: Option<f64>,
    max_skew_seconds: Option<u64>,
    create_time_zone: Option<String>,
    create_time_format: Option<TimeForm>,
    omit_co_type_code: Option<bool>,
    clock_skew_seconds: Option<f64>,
    deleting_instances: Option<DeletingView>,
    /// Sets (a number) or clears (null) the quota of single AccessKeyIds.
    key_requests_per_minute: Option<BTreeMap<String, Option<u32>>>,
    list_lag_seconds: Option<f64>,
    describe_lag_seconds: Option<f64>,
    preparing_seconds: Option<f64>,
}

/// `POST /_sim/offline`: close the port for this many seconds (fractions allowed).
#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct OfflineBody {
    seconds: f64,
}

/// `POST /_sim/throttle`: refuse (or stop refusing) every call of one key with `Throttling.User`.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct ThrottleBody {
    access_key_id: String,
    #[serde(default = "yes")]
    enabled: bool,
    /// Sent as `x-acs-retry-after` with each refusal.
    retry_after_millis: Option<u64>,
}

fn yes() -> bool {
    true
}

fn config_view(sim: &Simulator) -> Value {
    sim.with_model(|model, now| {
        let c = model.config();
        json!({
            "requestsPerMinute": c.requests_per_minute,
            "changeOrderSeconds": c.change_order_duration.as_secs_f64(),
            "maxSkewSeconds": c.max_skew.as_secs(),
            "createTimeZone": offset_name(c.time_style.zone),
            "createTimeFormat": c.time_style.form,
            "omitCoTypeCode": c.omit_co_type_code,
            "clockSkewSeconds": c.clock_skew.as_secs_f64(),
            "deletingInstances": c.deleting_instances,
            "keyRequestsPerMinute": c.key_requests_per_minute,
            "listLagSeconds": c.list_lag.as_secs_f64(),
            "describeLagSeconds": c.describe_lag.as_secs_f64(),
            "preparingSeconds": c.preparing_seconds.as_secs_f64(),
            "now": now,
            "accessKeyIds": model.access_key_ids(),
            "throttledAccessKeyIds": model.throttled_access_key_ids(),
        })
    })
}

/// The unsigned admin API. Answers never contain a secret or a token.
pub(super) async fn admin(sim: &Simulator, parts: Parts, body: Incoming) -> Response<Body> {
    let method = parts.method.as_str();
    let path = parts.uri.path().trim_end_matches('/');
    let body = match read_body(body, &parts.headers, MAX_ADMIN_BODY_BYTES).await {
        Ok(body) => body,
        Err(message) => return admin_error(StatusCode::PAYLOAD_TOO_LARGE, message),
    };
    fn parse<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, String> {
        serde_json::from_slice(body).map_err(|e| format!("invalid JSON body: {e}"))
    }
    let bad_request = |message: String| admin_error(StatusCode::BAD_REQUEST, message);
    tracing::debug!(method, path, "admin call");
    let console_app = path
        .strip_prefix("/_sim/apps/")
        .and_then(|rest| rest.strip_suffix(CHANGE_ORDERS))
        .filter(|app| !app.is_empty())
        .map(decode_app_id);
    match (method, path) {
        ("GET", "/_sim/healthz") => admin_json(StatusCode::OK, json!({"status": "ok"})),
        ("POST", "/_sim/apps") => match parse::<AppsBody>(&body) {
            Err(message) => bad_request(message),
            Ok(AppsBody { apps }) => {
                let ids: Vec<String> = apps.iter().map(|a| a.app_id.clone()).collect();
                match sim.with_model(|model, now| {
                    apps.into_iter()
                        .try_for_each(|app| model.upsert_app(app, now))
                }) {
                    Ok(()) => admin_json(StatusCode::OK, json!({"apps": ids})),
                    Err(message) => bad_request(message),
                }
            }
        },
        ("POST", "/_sim/faults") => match parse::<AppFaults>(&body) {
            Err(message) => bad_request(message),
            Ok(faults) => {
                let (app_id, added) = (faults.app_id.clone(), faults.faults.len());
                match sim.with_model(|model, now| model.add_faults(faults, now)) {
                    Ok(()) => admin_json(StatusCode::OK, json!({"appId": app_id, "added": added})),
                    Err(message) => bad_request(message),
                }
            }
        },
        ("POST", "/_sim/access-keys") => match parse::<AccessKeySpec>(&body) {
            Err(message) => bad_request(message),
            Ok(key) => {
                let id = key.access_key_id.clone();
                match sim.with_model(|model, _| model.upsert_access_key(key)) {
                    Ok(()) => admin_json(StatusCode::OK, json!({"accessKeyId": id})),
                    Err(message) => bad_request(message),
                }
            }
        },
        ("POST", "/_sim/throttle") => match parse::<ThrottleBody>(&body) {
            Err(message) => bad_request(message),
            Ok(t) if t.access_key_id.trim().is_empty() => {
                bad_request("accessKeyId must not be empty".into())
            }
            Ok(t) => {
                let throttle = t.enabled.then_some(t.retry_after_millis);
                sim.with_model(|model, _| model.set_throttle(&t.access_key_id, throttle));
                admin_json(
                    StatusCode::OK,
                    json!({"accessKeyId": t.access_key_id, "throttled": t.enabled}),
                )
            }
        },
        ("POST", "/_sim/oidc") => match parse::<OidcTokenSpec>(&body) {
            Err(message) => bad_request(message),
            Ok(spec) => {
                let role_arn = spec.role_arn.clone();
                match sim.with_model(|model, _| model.register_oidc_token(spec)) {
                    Ok(()) => admin_json(
                        StatusCode::OK,
                        json!({"registered": true, "roleArn": role_arn}),
                    ),
                    Err(message) => bad_request(message),
                }
            }
        },
        ("POST", "/_sim/ecs-role") => match parse::<crate::simulator::metadata::RoleSpec>(&body) {
            Err(message) => bad_request(message),
            Ok(spec) => match sim.metadata().attach_role(spec) {
                Ok(view) => admin_json(StatusCode::OK, view),
                Err(message) => bad_request(message),
            },
        },
        ("GET", "/_sim/ecs-role") => admin_json(StatusCode::OK, sim.metadata().view()),
        ("POST", "/_sim/seed") => match parse::<Seed>(&body) {
            Err(message) => bad_request(message),
            Ok(seed) => match sim.with_model(|model, now| model.apply_seed(seed, now)) {
                Ok(()) => admin_json(StatusCode::OK, json!({"status": "seeded"})),
                Err(message) => bad_request(message),
            },
        },
        ("GET", "/_sim/ledger") => admin_json(
            StatusCode::OK,
            serde_json::to_value(sim.ledger()).unwrap_or_else(|e| json!({"error": e.to_string()})),
        ),
        ("POST", "/_sim/offline") => match parse::<OfflineBody>(&body) {
            Err(message) => bad_request(message),
            Ok(OfflineBody { seconds }) => match offline_duration(seconds) {
                Err(message) => bad_request(message),
                Ok(duration) => {
                    // The outage runs on real time; `offlineUntil` says when it ends on SAE's
                    // clock as it reads now, for logs and for tests that do not move it meanwhile.
                    let until = sim
                        .now()
                        .checked_add(jiff::SignedDuration::try_from(duration).unwrap_or_default())
                        .ok();
                    // By the time this answer is written the listener is closed; the answer
                    // leaves on this connection, which is closed right after it.
                    if sim.go_offline(duration).await {
                        admin_json(
                            StatusCode::OK,
                            json!({"offlineSeconds": seconds, "offlineUntil": until}),
                        )
                    } else {
                        admin_error(
                            StatusCode::SERVICE_UNAVAILABLE,
                            "no accept loop closed its listener",
                        )
                    }
                }
            },
        },
        ("POST", "/_sim/reset") => {
            sim.with_model(|model, _| model.reset());
            admin_json(StatusCode::OK, json!({"status": "reset"}))
        }
        ("GET", "/_sim/config") => admin_json(StatusCode::OK, config_view(sim)),
        ("POST", "/_sim/config") => match parse::<ConfigBody>(&body) {
            Err(message) => bad_request(message),
            Ok(update) => match apply_config(sim, update) {
                Ok(()) => admin_json(StatusCode::OK, config_view(sim)),
                Err(message) => bad_request(message),
            },
        },
        ("POST", _) if console_app.is_some() => {
            let app_id = console_app.unwrap_or_default();
            match parse::<ConsoleChangeOrderSpec>(&body) {
                Err(message) => bad_request(message),
                Ok(spec) => match sim.with_model(|model, now| {
                    if !model.has_app(&app_id) {
                        return Err(None);
                    }
                    model
                        .schedule_console_change_order(&app_id, &spec, now)
                        .map_err(Some)
                }) {
                    Ok(id) => admin_json(
                        StatusCode::OK,
                        json!({"appId": app_id, "changeOrderId": id}),
                    ),
                    Err(None) => {
                        admin_error(StatusCode::NOT_FOUND, format!("unknown app {app_id:?}"))
                    }
                    Err(Some(message)) => bad_request(message),
                },
            }
        }
        ("GET", p) if p.starts_with("/_sim/apps/") => {
            let app_id = decode_app_id(&p["/_sim/apps/".len()..]);
            match sim.with_model(|model, now| model.app_view(&app_id, now)) {
                Some(view) => admin_json(StatusCode::OK, view),
                None => admin_error(StatusCode::NOT_FOUND, format!("unknown app {app_id:?}")),
            }
        }
        _ => admin_error(
            StatusCode::NOT_FOUND,
            format!("no admin endpoint {method} {path}"),
        ),
    }
}

fn offline_duration(seconds: f64) -> Result<std::time::Duration, String> {
    if !(seconds.is_finite() && seconds > 0.0 && seconds <= MAX_OFFLINE_SECS) {
        return Err(format!(
            "seconds must be a number above 0 and at most {MAX_OFFLINE_SECS}, got {seconds}"
        ));
    }
    Ok(std::time::Duration::from_secs_f64(seconds))
}

/// `POST /_sim/apps/{appId}/change-orders`: a change order made in SAE's console.
const CHANGE_ORDERS: &str = "/change-orders";

fn decode_app_id(raw: &str) -> String {
    percent_encoding::percent_decode_str(raw)
        .decode_utf8_lossy()
        .into_owned()
}

fn apply_config(sim: &Simulator, update: ConfigBody) -> Result<(), String> {
    let duration = match update.change_order_seconds {
        Some(secs) if !(secs.is_finite() && secs >= 0.0) => {
            return Err("changeOrderSeconds must be >= 0".into());
        }
        Some(secs) => {
            Some(jiff::SignedDuration::try_from_secs_f64(secs).map_err(|e| e.to_string())?)
        }
        None => None,
    };
    let zone = update
        .create_time_zone
        .as_deref()
        .map(parse_offset)
        .transpose()?;
    let skew = update
        .clock_skew_seconds
        .map(crate::simulator::clock_skew_from_secs)
        .transpose()?;
    let bounded = |value: Option<f64>, max, what| {
        value
            .map(|secs| crate::simulator::bounded_secs(secs, max, what))
            .transpose()
    };
    let list_lag = bounded(update.list_lag_seconds, MAX_LAG_SECS, "listLagSeconds")?;
    let describe_lag = bounded(
        update.describe_lag_seconds,
        MAX_LAG_SECS,
        "describeLagSeconds",
    )?;
    let preparing = bounded(
        update.preparing_seconds,
        MAX_PREPARING_SECS,
        "preparingSeconds",
    )?;
    sim.with_model(|model, _| {
        let config = model.config_mut();
        if let Some(lag) = list_lag {
            config.list_lag = lag;
        }
        if let Some(lag) = describe_lag {
            config.describe_lag = lag;
        }
        if let Some(preparing) = preparing {
            config.preparing_seconds = preparing;
        }
        if let Some(rpm) = update.requests_per_minute {
            config.requests_per_minute = rpm;
        }
        if let Some(duration) = duration {
            config.change_order_duration = duration;
        }
        if let Some(skew) = update.max_skew_seconds {
            config.max_skew = jiff::SignedDuration::from_secs(skew.min(i64::MAX as u64) as i64);
        }
        if let Some(zone) = zone {
            config.time_style.zone = zone;
        }
        if let Some(form) = update.create_time_format {
            config.time_style.form = form;
        }
        if let Some(omit) = update.omit_co_type_code {
            config.omit_co_type_code = omit;
        }
        if let Some(skew) = skew {
            config.clock_skew = skew;
        }
        if let Some(view) = update.deleting_instances {
            config.deleting_instances = view;
        }
        for (key, limit) in update.key_requests_per_minute.into_iter().flatten() {
            match limit {
                Some(limit) => config.key_requests_per_minute.insert(key, limit),
                None => config.key_requests_per_minute.remove(&key),
            };
        }
    });
    Ok(())
}
