//! The HTTP face of the simulator: an accept loop that can drop a connection on purpose, SAE's API,
//! and the unsigned admin API under `/_sim/`.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use axum::body::Body;
use axum::http::header::{CONTENT_LENGTH, CONTENT_TYPE, DATE};
use axum::http::request::Parts;
use axum::http::{self, HeaderValue, Response, StatusCode};
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::sync::Notify;

use super::Simulator;
use super::api_error::ApiError;
use super::auth::{self, ReceivedRequest};
use super::change_order::{ConsoleChangeOrderSpec, DeletingView};
use super::ledger::RequestRecord;
use super::routing::{Params, route};
use super::seed::{AccessKeySpec, AppFaults, AppSpec, OidcTokenSpec, Seed};
use super::state::{CallPlan, Outcome};
use super::times::{TimeForm, http_date, offset_name, parse_offset};

/// Longest query string accepted; SAE's are a few hundred bytes.
pub const MAX_QUERY_BYTES: usize = 16 * 1024;
/// Largest SAE request body accepted (SAE's ROA calls have none).
pub const MAX_BODY_BYTES: usize = 64 * 1024;
/// Largest admin request body (seeding thousands of instances fits).
pub const MAX_ADMIN_BODY_BYTES: usize = 8 * 1024 * 1024;

const GARBAGE_BODY: &str = "<html><head><title>502 Bad Gateway</title></head><body><center>upstream hiccup</center></body></html>";

/// Serves SAE's API and the admin API on `listener` until the task is dropped.
///
/// Each connection is driven by hyper directly (not `axum::serve`) so that an `ambiguous` fault
/// can close it mid-request: the client then sees the connection end with no response at all.
pub async fn serve(listener: TcpListener, sim: Arc<Simulator>) {
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(conn) => conn,
            Err(err) => {
                // Typically out of file descriptors: wait instead of spinning.
                tracing::warn!(error = %err, "accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                continue;
            }
        };
        let sim = sim.clone();
        tokio::spawn(async move {
            let hang_up = Arc::new(Notify::new());
            let service = {
                let hang_up = hang_up.clone();
                hyper::service::service_fn(move |req| {
                    let (sim, hang_up) = (sim.clone(), hang_up.clone());
                    async move { Ok::<_, Infallible>(handle(sim, req, hang_up).await) }
                })
            };
            // hyper would date answers by the machine's clock; `handle` dates them by SAE's.
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .auto_date_header(false)
                .serve_connection(TokioIo::new(stream), service);
            tokio::select! {
                result = conn => {
                    if let Err(err) = result {
                        tracing::debug!(%peer, error = %err, "connection ended with an error");
                    }
                }
                // Dropping the connection future closes the socket without writing anything.
                _ = hang_up.notified() => tracing::debug!(%peer, "connection dropped on purpose"),
            }
        });
    }
}

/// Binds `127.0.0.1:0`, serves on a background task and returns the bound address.
pub async fn spawn(sim: Arc<Simulator>) -> std::io::Result<SocketAddr> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(serve(listener, sim));
    Ok(addr)
}

/// Every answer carries a `Date` of SAE's clock (the simulator's clock plus its skew), taken when
/// the answer is ready, so a test can skew SAE's clock and the client sees it.
async fn handle(
    sim: Arc<Simulator>,
    req: http::Request<Incoming>,
    hang_up: Arc<Notify>,
) -> Response<Body> {
    let mut resp = answer(sim.clone(), req, hang_up).await;
    if let Ok(date) = HeaderValue::from_str(&http_date(sim.now())) {
        resp.headers_mut().insert(DATE, date);
    }
    resp
}

async fn answer(
    sim: Arc<Simulator>,
    req: http::Request<Incoming>,
    hang_up: Arc<Notify>,
) -> Response<Body> {
    let (parts, body) = req.into_parts();
    if parts.uri.path() == "/_sim" || parts.uri.path().starts_with("/_sim/") {
        return admin(&sim, parts, body).await;
    }
    // The ECS instance metadata service (src/simulator/metadata.rs) shares the port.
    let header = |name: &str| {
        parts
            .headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    if let Some(answer) =
        sim.metadata()
            .handle(&sim, parts.method.as_str(), parts.uri.path(), header)
    {
        let mut resp = Response::new(Body::from(answer.body));
        *resp.status_mut() = answer.status;
        resp.headers_mut().insert(
            CONTENT_TYPE,
            HeaderValue::from_static(if answer.json {
                "application/json"
            } else {
                "text/plain"
            }),
        );
        return resp;
    }
    // Run on its own task so that a client hanging up cannot cancel a call half-way: what SAE
    // starts, it finishes, and the ledger always gets its line.
    let reply = match tokio::spawn(process(sim, parts, body)).await {
        Ok(reply) => reply,
        Err(err) => {
            tracing::error!(error = %err, "request task failed");
            Reply::error(
                new_request_id(),
                &ApiError::gateway("InternalError", "The simulator failed."),
            )
        }
    };
    match reply.body {
        ReplyBody::Hang => {
            hang_up.notify_one();
            std::future::pending().await
        }
        ReplyBody::Json(value) => {
            let mut resp = Response::new(Body::from(value.to_string()));
            *resp.status_mut() =
                StatusCode::from_u16(reply.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            let headers = resp.headers_mut();
            headers.insert(
                CONTENT_TYPE,
                HeaderValue::from_static("application/json;charset=utf-8"),
            );
            if let Ok(v) = HeaderValue::from_str(&reply.request_id) {
                headers.insert("x-acs-request-id", v);
            }
            if let Some(millis) = reply.retry_after_millis {
                // Milliseconds, as SAE's gateway and the official SDKs mean it.
                headers.insert("x-acs-retry-after", HeaderValue::from(millis));
            }
            resp
        }
        ReplyBody::Garbage => {
            let mut resp = Response::new(Body::from(GARBAGE_BODY));
            resp.headers_mut()
                .insert(CONTENT_TYPE, HeaderValue::from_static("text/html"));
            resp
        }
    }
}

enum ReplyBody {
    Json(Value),
    Garbage,
    /// Close the connection without answering.
    Hang,
}

struct Reply {
    status: u16,
    code: String,
    request_id: String,
    retry_after_millis: Option<u64>,
    body: ReplyBody,
}

impl Reply {
    fn success(request_id: String, data: Value) -> Self {
        let body = json!({
            "RequestId": request_id,
            "TraceId": new_trace_id(),
            "Code": "200",
            "Message": "success",
            "Success": true,
            "Data": data,
        });
        Reply {
            status: 200,
            code: "OK".into(),
            request_id,
            retry_after_millis: None,
            body: ReplyBody::Json(body),
        }
    }

    fn error(request_id: String, err: &ApiError) -> Self {
        let body = if err.gateway {
            json!({"RequestId": request_id, "HostId": "sae-simulator", "Code": err.code, "Message": err.message})
        } else {
            json!({
                "RequestId": request_id,
                "TraceId": new_trace_id(),
                "Code": err.code,
                "ErrorCode": err.code,
                "Message": err.message,
                "Success": false,
            })
        };
        Reply {
            status: err.http_status,
            code: err.code.clone(),
            request_id,
            retry_after_millis: err.retry_after_millis,
            body: ReplyBody::Json(body),
        }
    }

    fn outcome(request_id: String, outcome: &Outcome) -> Self {
        match outcome {
            Ok(success) => Reply::success(request_id, success.data.clone()),
            Err(err) => Reply::error(request_id, err),
        }
    }
}

fn new_request_id() -> String {
    uuid::Uuid::new_v4().to_string().to_ascii_uppercase()
}

fn new_trace_id() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

/// Handles one SAE call end to end, records it in the ledger and logs one line.
async fn process(sim: Arc<Simulator>, parts: Parts, body: Incoming) -> Reply {
    let started = Instant::now();
    let mut record = RequestRecord {
        time: sim.now(),
        request_id: new_request_id(),
        access_key_id: None,
        signature_version: None,
        verified: false,
        operation: "Unknown".into(),
        method: parts.method.as_str().to_string(),
        path: parts.uri.path().to_string(),
        params: BTreeMap::new(),
        http_status: 0,
        code: String::new(),
        committed: false,
        change_order_id: None,
        fault: None,
    };
    let reply = match call(&sim, &parts, body, &mut record).await {
        Ok(reply) => reply,
        Err(err) => Reply::error(record.request_id.clone(), &err),
    };
    record.http_status = if matches!(reply.body, ReplyBody::Hang) {
        0
    } else {
        reply.status
    };
    record.code = match reply.body {
        ReplyBody::Hang => "NoAnswer".into(),
        ReplyBody::Garbage => "Garbage".into(),
        ReplyBody::Json(_) => reply.code.clone(),
    };
    tracing::info!(
        request_id = %record.request_id,
        method = %record.method,
        path = %record.path,
        operation = %record.operation,
        access_key_id = record.access_key_id.as_deref().unwrap_or("-"),
        status = record.http_status,
        code = %record.code,
        committed = record.committed,
        change_order_id = record.change_order_id.as_deref().unwrap_or("-"),
        fault = record.fault.as_deref().unwrap_or("-"),
        elapsed_ms = started.elapsed().as_millis() as u64,
        "sae call"
    );
    sim.with_model(|model, _| model.record_request(record));
    reply
}

fn malformed(message: impl Into<String>) -> ApiError {
    ApiError::gateway("InvalidParameter", message)
}

/// Percent-decodes one query component; `+` is a space as in HTML forms. Refuses a `%` not followed
/// by two hex digits and bytes that are not UTF-8.
fn decode_component(raw: &str) -> Result<String, ApiError> {
    let bytes = raw.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = bytes
                    .get(i + 1..i + 3)
                    .and_then(|h| std::str::from_utf8(h).ok());
                let byte = hex
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
                    .ok_or_else(|| {
                        malformed("The request contains a malformed percent-encoding.")
                    })?;
                out.push(byte);
                i += 2;
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8(out)
        .map_err(|_| malformed("The request contains percent-encoded bytes that are not UTF-8."))
}

fn decode_query(raw: &str) -> Result<Vec<(String, String)>, ApiError> {
    if raw.len() > MAX_QUERY_BYTES {
        return Err(malformed(format!(
            "The query string is longer than {MAX_QUERY_BYTES} bytes."
        )));
    }
    decode_pairs(raw)
}

/// `k=v&k2=v2`, as in a query string or an `application/x-www-form-urlencoded` body.
fn decode_pairs(raw: &str) -> Result<Vec<(String, String)>, ApiError> {
    raw.split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            Ok((decode_component(k)?, decode_component(v)?))
        })
        .collect()
}

async fn read_body(
    body: Incoming,
    headers: &http::HeaderMap,
    limit: usize,
) -> Result<axum::body::Bytes, String> {
    let declared = headers
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|len| len > limit as u64) {
        return Err(format!("The request body is larger than {limit} bytes."));
    }
    axum::body::to_bytes(Body::new(body), limit)
        .await
        .map_err(|_| format!("The request body could not be read or is larger than {limit} bytes."))
}

async fn call(
    sim: &Simulator,
    parts: &Parts,
    body: Incoming,
    record: &mut RequestRecord,
) -> Result<Reply, ApiError> {
    let query = decode_query(parts.uri.query().unwrap_or(""))?;
    record_params(record, &query);
    // `+` is literal in a path, unlike in a query.
    let path = percent_encoding::percent_decode_str(parts.uri.path())
        .decode_utf8()
        .map_err(|_| malformed("The path is not valid UTF-8."))?
        .into_owned();
    record.path = path.clone();
    if parts.method == http::Method::POST && path == "/" {
        return sts_call(sim, parts, body, query, record).await;
    }
    let op = route(parts.method.as_str(), &path)?;
    record.operation = op.name().into();
    let body = read_body(body, &parts.headers, MAX_BODY_BYTES)
        .await
        .map_err(malformed)?;
    let headers: Vec<(String, String)> = parts
        .headers
        .iter()
        .map(|(k, v)| {
            (
                k.as_str().to_string(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .collect();
    let authorization = parts
        .headers
        .get(http::header::AUTHORIZATION)
        .map(|v| String::from_utf8_lossy(v.as_bytes()));
    let authorization = auth::parse_authorization(authorization.as_deref())?;
    record.access_key_id = Some(authorization.access_key_id().to_string());
    record.signature_version = Some(authorization.version().to_string());
    let received = ReceivedRequest {
        method: parts.method.as_str(),
        path: &path,
        query: &query,
        headers: &headers,
        body: &body,
    };

    let plan = sim.with_model(|model, now| {
        model.authenticate(&authorization, &received, now)?;
        record.verified = true;
        model.admit(authorization.access_key_id(), now)?;
        Ok::<_, ApiError>(model.call(op, &query, now))
    })?;

    let request_id = record.request_id.clone();
    let mut commit = |committed: Option<String>| {
        record.committed = committed.is_some();
        record.change_order_id = committed;
    };
    let reply = match plan {
        CallPlan::Answer { outcome, fault } => {
            record.fault = fault.map(str::to_string);
            commit(outcome.as_ref().ok().and_then(|s| s.committed.clone()));
            Reply::outcome(request_id, &outcome)
        }
        CallPlan::InternalError { committed } => {
            record.fault = Some("http500".into());
            commit(committed);
            Reply::error(
                request_id,
                &ApiError::gateway(
                    "InternalError",
                    "The request processing has failed due to some unknown error.",
                ),
            )
        }
        CallPlan::DropConnection { committed } => {
            record.fault = Some("ambiguous".into());
            commit(committed);
            Reply {
                status: 0,
                code: String::new(),
                request_id,
                retry_after_millis: None,
                body: ReplyBody::Hang,
            }
        }
        CallPlan::Garbage { committed } => {
            record.fault = Some("garbage".into());
            commit(committed);
            Reply {
                status: 200,
                code: String::new(),
                request_id,
                retry_after_millis: None,
                body: ReplyBody::Garbage,
            }
        }
        CallPlan::Delayed { delay, outcome } => {
            record.fault = Some("slow".into());
            commit(outcome.as_ref().ok().and_then(|s| s.committed.clone()));
            tokio::time::sleep(delay).await;
            Reply::outcome(request_id, &outcome)
        }
        CallPlan::ExecuteAfter { delay } => {
            record.fault = Some("slow".into());
            tokio::time::sleep(delay).await;
            let outcome = sim.with_model(|model, now| model.execute(op, &query, now));
            commit(outcome.as_ref().ok().and_then(|s| s.committed.clone()));
            Reply::outcome(request_id, &outcome)
        }
    };
    Ok(reply)
}

/// Parameters that are credentials: never kept in the ledger.
const SECRET_PARAMS: &[&str] = &["OIDCToken"];

fn record_params(record: &mut RequestRecord, params: &[(String, String)]) {
    for (k, v) in params {
        if !SECRET_PARAMS.contains(&k.as_str()) {
            record.params.entry(k.clone()).or_insert_with(|| v.clone());
        }
    }
}

/// STS on the same listener: `POST /` with `Action=AssumeRoleWithOIDC`, parameters in the query
/// or the form body. Unsigned, like the real call: the OIDC token is the proof. No quota applies
/// (STS is not SAE). The ledger line carries the issued key id and never the token.
async fn sts_call(
    sim: &Simulator,
    parts: &Parts,
    body: Incoming,
    mut params: Vec<(String, String)>,
    record: &mut RequestRecord,
) -> Result<Reply, ApiError> {
    let body = read_body(body, &parts.headers, MAX_BODY_BYTES)
        .await
        .map_err(malformed)?;
    let form =
        std::str::from_utf8(&body).map_err(|_| malformed("The request body is not UTF-8 text."))?;
    let form = decode_pairs(form)?;
    record_params(record, &form);
    params.extend(form);
    match Params(&params).get("Action") {
        Some("AssumeRoleWithOIDC") => {}
        Some(other) => {
            return Err(ApiError::gateway(
                "InvalidAction.NotFound",
                format!(
                    "Specified api {other} is not found; this STS serves AssumeRoleWithOIDC only."
                ),
            ));
        }
        None => {
            return Err(ApiError::gateway(
                "InvalidApi.NotFound",
                "Specified api is not found, please check your url and method.",
            ));
        }
    }
    record.operation = "AssumeRoleWithOIDC".into();
    let issued = sim.with_model(|model, now| model.assume_role_with_oidc(&params, now))?;
    record.verified = true;
    record.access_key_id = Some(issued.access_key_id);
    let request_id = record.request_id.clone();
    let mut answer = issued.body;
    answer["RequestId"] = Value::String(request_id.clone());
    Ok(Reply {
        status: 200,
        code: "OK".into(),
        request_id,
        retry_after_millis: None,
        body: ReplyBody::Json(answer),
    })
}

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
            "now": now,
            "accessKeyIds": model.access_key_ids(),
            "throttledAccessKeyIds": model.throttled_access_key_ids(),
        })
    })
}

/// The unsigned admin API. Answers never contain a secret or a token.
async fn admin(sim: &Simulator, parts: Parts, body: Incoming) -> Response<Body> {
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
        ("POST", "/_sim/ecs-role") => match parse::<super::metadata::RoleSpec>(&body) {
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
        .map(super::clock_skew_from_secs)
        .transpose()?;
    sim.with_model(|model, _| {
        let config = model.config_mut();
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_decoding_is_strict_about_escapes() {
        assert_eq!(
            decode_query("AppId=a&InstanceIds=i-1%2Ci-2&Empty=&Flag&x=a+b").unwrap(),
            vec![
                ("AppId".to_string(), "a".to_string()),
                ("InstanceIds".into(), "i-1,i-2".into()),
                ("Empty".into(), "".into()),
                ("Flag".into(), "".into()),
                ("x".into(), "a b".into()),
            ]
        );
        assert_eq!(decode_query("%E4%B8%AD=1").unwrap()[0].0, "中");
        for bad in ["a=%zz", "a=%4", "a=%", "a=%ff%fe"] {
            assert_eq!(
                decode_query(bad).unwrap_err().code,
                "InvalidParameter",
                "{bad}"
            );
        }
        assert!(decode_query(&"a".repeat(MAX_QUERY_BYTES + 1)).is_err());
    }
}
