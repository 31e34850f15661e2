//! What the SAE client's unit tests share: test credentials, a scripted HTTP server that logs
//! what it saw, and clients pointed at it. Test-only; nothing in production may use it.

pub(super) use std::net::SocketAddr;
pub(super) use std::sync::atomic::{AtomicUsize, Ordering};
pub(super) use std::sync::{Arc, Mutex};
pub(super) use std::time::Duration;

pub(super) use axum::Router;
pub(super) use axum::body::{Body, Bytes};
pub(super) use axum::extract::Request;
pub(super) use axum::response::Response;
pub(super) use futures::StreamExt;
pub(super) use percent_encoding::percent_decode_str;
pub(super) use reqwest::header::HeaderMap;
pub(super) use tokio::io::{AsyncReadExt, AsyncWriteExt};

pub(super) use super::client::RequestObserver;
pub(super) use super::envelope::{Secrets, interpret};
pub(super) use std::collections::HashSet;
pub(super) use std::time::Instant;

pub(super) use reqwest::header::{HeaderName, HeaderValue};

pub(super) use super::client::API_VERSION;
pub(super) use super::envelope::EXCERPT_CHARS;
pub(super) use super::listing::{MAX_INSTANCE_PAGES, no_gate};
pub(super) use super::model::{
    ApplicationGroup, ChangeOrderDetail, ChangeOrderPage, ChangeOrderSummary, DeleteAccepted,
    InstancePage,
};
pub(super) use super::sign::SignInput;
pub(super) use super::throttle_hint::{MAX_RETRY_AFTER, RETRY_AFTER_HEADER, retry_after};
pub(super) use super::{
    Credentials, ErrorClass, Operation, SaeClient, SaeClientConfig, SaeError, SignatureVersion,
    sign,
};

pub(super) const AK: &str = "LTAItestkeyid";
pub(super) const SECRET: &str = "sk-Very-Secret-Value-0123456789";
pub(super) const TOKEN: &str = "sts-Token-Value-abcdefghijklmnop";

pub(super) fn creds() -> Credentials {
    Credentials::new(AK, SECRET, None)
}

pub(super) fn sts_creds() -> Credentials {
    Credentials::new("STS.tempkeyid", SECRET, Some(TOKEN.to_string()))
}

/// What a scripted server saw of one request.
#[derive(Clone, Debug)]
pub(super) struct Seen {
    pub(super) method: String,
    pub(super) path: String,
    pub(super) raw_query: String,
    pub(super) headers: Vec<(String, String)>,
}

impl Seen {
    pub(super) fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    pub(super) fn decoded_query(&self) -> Vec<(String, String)> {
        if self.raw_query.is_empty() {
            return Vec::new();
        }
        self.raw_query
            .split('&')
            .map(|p| {
                let (k, v) = p.split_once('=').unwrap_or((p, ""));
                let decode = |s: &str| percent_decode_str(s).decode_utf8().unwrap().into_owned();
                (decode(k), decode(v))
            })
            .collect()
    }
}

pub(super) type Log = Arc<Mutex<Vec<Seen>>>;

pub(super) fn record(log: &Log, req: &Request) {
    let headers = req
        .headers()
        .iter()
        .map(|(k, v)| {
            (
                k.as_str().to_string(),
                v.to_str().unwrap_or("<binary>").to_string(),
            )
        })
        .collect();
    log.lock().unwrap().push(Seen {
        method: req.method().to_string(),
        path: req.uri().path().to_string(),
        raw_query: req.uri().query().unwrap_or("").to_string(),
        headers,
    });
}

pub(super) async fn serve(router: Router) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    addr
}

/// A server answering every request with the same status, headers and body, and logging requests.
pub(super) async fn canned(
    status: u16,
    headers: &[(&'static str, &'static str)],
    body: impl Into<String>,
) -> (SocketAddr, Log) {
    let log: Log = Arc::default();
    let body: String = body.into();
    let headers = headers.to_vec();
    let seen = log.clone();
    let router = Router::new().fallback(move |req: Request| {
        let (body, headers, seen) = (body.clone(), headers.clone(), seen.clone());
        async move {
            record(&seen, &req);
            let mut resp = Response::builder().status(status);
            for (k, v) in headers {
                resp = resp.header(k, v);
            }
            resp.body(Body::from(body)).unwrap()
        }
    });
    (serve(router).await, log)
}

pub(super) fn client_for(addr: SocketAddr) -> SaeClient {
    client_with(addr, |_| {})
}

pub(super) fn client_with(
    addr: SocketAddr,
    adjust: impl FnOnce(&mut SaeClientConfig),
) -> SaeClient {
    let mut config = SaeClientConfig {
        endpoint: format!("http://{addr}"),
        ..SaeClientConfig::default()
    };
    adjust(&mut config);
    SaeClient::new(config).unwrap()
}

pub(super) fn ids(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| s.to_string()).collect()
}

pub(super) async fn delete_via(addr: SocketAddr) -> Result<DeleteAccepted, SaeError> {
    client_for(addr)
        .delete_instances(&creds(), "cn-hangzhou", "app-1", &ids(&["a", "b"]))
        .await
}

pub(super) fn assert_ambiguous(
    result: Result<impl std::fmt::Debug, SaeError>,
    detail_has: &str,
) -> SaeError {
    let err = result.expect_err("expected an error");
    assert!(matches!(err, SaeError::NoAnswer { .. }), "{err:?}");
    assert_eq!(err.class(), ErrorClass::Ambiguous);
    assert!(err.to_string().contains(detail_has), "{err}");
    err
}
