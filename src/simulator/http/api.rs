//! SAE's API and STS as served over HTTP: one signed call end to end (decode, route,
//! authenticate, admit, let the model plan the answer, apply the fault's delay or hang-up), its
//! ledger line and log line, and the reply bodies in the POP gateway's and SAE's shapes.
//!
//! Uses `wire` for decoding and the model (`state`) for every decision; nothing here decides what
//! SAE would do.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use axum::http::{self, request::Parts};
use hyper::body::Incoming;
use serde_json::{Value, json};

use super::wire::{MAX_BODY_BYTES, decode_pairs, decode_query, malformed, read_body};
use crate::simulator::api_error::ApiError;
use crate::simulator::auth::{self, ReceivedRequest};
use crate::simulator::ledger::RequestRecord;
use crate::simulator::routing::{Params, route};
use crate::simulator::shared::Simulator;
use crate::simulator::state::{CallPlan, Outcome};

pub(super) enum ReplyBody {
    Json(Value),
    Garbage,
    /// Close the connection without answering.
    Hang,
}

pub(super) struct Reply {
    pub(super) status: u16,
    pub(super) code: String,
    pub(super) request_id: String,
    pub(super) retry_after_millis: Option<u64>,
    pub(super) body: ReplyBody,
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

    pub(super) fn error(request_id: String, err: &ApiError) -> Self {
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

pub(super) fn new_request_id() -> String {
    uuid::Uuid::new_v4().to_string().to_ascii_uppercase()
}

fn new_trace_id() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

/// Handles one SAE call end to end, records it in the ledger and logs one line.
pub(super) async fn process(sim: Arc<Simulator>, parts: Parts, body: Incoming) -> Reply {
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
