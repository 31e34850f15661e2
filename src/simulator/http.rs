//! The HTTP face of the simulator: the accept loop (driven by hyper directly, so a connection can
//! be dropped on purpose), and the dispatch of each request to the admin API (`admin`), the ECS
//! metadata service (`super::metadata`) or SAE's API and STS (`api`), with SAE's `Date` on every
//! answer.
//!
//! Submodules: `wire` (a leaf: query and body decoding with their limits), `api` (signed SAE calls
//! and STS, each recorded in the ledger), `admin` (the unsigned `/_sim/` endpoints). They never
//! import this file; this file uses them. The model's rules live in `state`, not here: this layer
//! only translates between bytes and the model, and holds no Kubernetes types.

mod admin;
mod api;
mod wire;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::header::{CONTENT_TYPE, DATE};
use axum::http::{self, HeaderValue, Response, StatusCode};
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::{Notify, watch};

use super::api_error::ApiError;
use super::shared::{Outage, Simulator};
use super::times::http_date;
use api::{Reply, ReplyBody, new_request_id, process};

pub use wire::{MAX_BODY_BYTES, MAX_QUERY_BYTES};

const GARBAGE_BODY: &str = "<html><head><title>502 Bad Gateway</title></head><body><center>upstream hiccup</center></body></html>";

/// How long a connection in the middle of a request is given to finish it when the simulator goes
/// offline; then it is cut, answered or not. Long enough for the `POST /_sim/offline` that ordered
/// the outage to get its own answer out; short enough that a `slow` call is cut, as in a real
/// outage. Idle keep-alive connections are closed at once.
const OUTAGE_GRACE: Duration = Duration::from_millis(500);

/// Serves SAE's API and the admin API on `listener` until the task is dropped.
///
/// Each connection is driven by hyper directly (not `axum::serve`) so that an `ambiguous` fault
/// can close it mid-request: the client then sees the connection end with no response at all.
///
/// An outage ([`Simulator::go_offline`], `POST /_sim/offline`) closes the listener and every
/// connection; when it is over the same address is bound again and serving goes on with the same
/// simulator, so nothing of its state is lost.
pub async fn serve(listener: TcpListener, sim: Arc<Simulator>) {
    let addr = listener.local_addr();
    let mut outages = sim.outages();
    let mut listener = listener;
    loop {
        let outage = accept_until_outage(&listener, &sim, &mut outages).await;
        let addr = match &addr {
            Ok(addr) => *addr,
            Err(err) => {
                // Without the address the socket could not be reopened: keep serving instead.
                tracing::warn!(error = %err, "cannot go offline: the listening address is unknown");
                continue;
            }
        };
        // Closing the listening socket is what makes a connection attempt refused (RST) rather
        // than queued in a backlog nobody accepts from; connections already queued are reset too.
        drop(listener);
        sim.went_offline(outage.seq);
        tracing::info!(%addr, "offline");
        listener = reopen(addr, &sim, &mut outages, outage).await;
        tracing::info!(%addr, "online again");
    }
}

/// Accepts connections until an outage is ordered, and returns it.
async fn accept_until_outage(
    listener: &TcpListener,
    sim: &Arc<Simulator>,
    outages: &mut watch::Receiver<Option<Outage>>,
) -> Outage {
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            outage = next_outage(outages) => return outage,
        };
        let (stream, peer) = match accepted {
            Ok(conn) => conn,
            Err(err) => {
                // Typically out of file descriptors: wait instead of spinning.
                tracing::warn!(error = %err, "accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        // Subscribed before the task starts, so an outage ordered from here on reaches it.
        let outages = sim.outages();
        tokio::spawn(connection(sim.clone(), stream, peer, outages));
    }
}

/// Waits out an outage (and any ordered while it lasts), then binds `addr` again.
async fn reopen(
    addr: SocketAddr,
    sim: &Arc<Simulator>,
    outages: &mut watch::Receiver<Option<Outage>>,
    mut outage: Outage,
) -> TcpListener {
    loop {
        tokio::select! {
            _ = tokio::time::sleep_until(outage.until) => break,
            newer = next_outage(outages) => {
                // Already offline: the newer order only moves the end.
                outage = newer;
                sim.went_offline(outage.seq);
            }
        }
    }
    loop {
        match bind(addr) {
            Ok(listener) => return listener,
            Err(err) => {
                // E.g. someone else took the port meanwhile; try until it is free.
                tracing::warn!(%addr, error = %err, "cannot bind again after an outage; retrying");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

/// Binds `addr` with SO_REUSEADDR, so the connections the outage closed (in TIME_WAIT on this
/// side) do not keep the port from being bound again.
fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(1024)
}

/// The next outage ordered; never, once nobody can order one.
async fn next_outage(outages: &mut watch::Receiver<Option<Outage>>) -> Outage {
    loop {
        if outages.changed().await.is_err() {
            return std::future::pending().await;
        }
        if let Some(outage) = *outages.borrow_and_update() {
            return outage;
        }
    }
}

/// Serves one connection until it ends, a fault hangs up on it, or an outage closes it.
async fn connection(
    sim: Arc<Simulator>,
    stream: TcpStream,
    peer: SocketAddr,
    mut outages: watch::Receiver<Option<Outage>>,
) {
    // Accepted just as an outage began: close it unserved, like the rest.
    let offline = outages
        .borrow_and_update()
        .is_some_and(|o| o.until > tokio::time::Instant::now());
    if offline {
        return;
    }
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
    let mut conn = std::pin::pin!(conn);
    tokio::select! {
        result = conn.as_mut() => {
            if let Err(err) = result {
                tracing::debug!(%peer, error = %err, "connection ended with an error");
            }
        }
        // Dropping the connection future closes the socket without writing anything.
        _ = hang_up.notified() => tracing::debug!(%peer, "connection dropped on purpose"),
        _ = next_outage(&mut outages) => {
            // An idle keep-alive connection is closed at once, so a client's pooled connection
            // fails too and its next attempt is refused; one in the middle of a request gets
            // OUTAGE_GRACE to finish it (the answer to POST /_sim/offline leaves this way).
            conn.as_mut().graceful_shutdown();
            if tokio::time::timeout(OUTAGE_GRACE, conn.as_mut()).await.is_err() {
                tracing::debug!(%peer, "connection cut by the outage");
            }
        }
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
        return admin::admin(&sim, parts, body).await;
    }
    // The ECS instance metadata service (src/simulator/metadata.rs) shares the port.
    let header = |name: &str| {
        parts
            .headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let register = |key| sim.with_model(|model, _| model.upsert_access_key(key));
    if let Some(answer) = sim.metadata().handle(
        sim.now(),
        register,
        parts.method.as_str(),
        parts.uri.path(),
        header,
    ) {
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

#[cfg(test)]
mod tests;
