//! The `otel` feature end to end: the real controller binary, built with `--features otel`, sends its
//! reconcile spans to an OTLP/HTTP collector (a small stand-in here that keeps the request bodies).
//! OTLP/HTTP carries protobuf, whose strings are plain UTF-8 bytes, so the test looks for the names
//! and ids it expects in the bytes, and for the secret it must never find.

mod support;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::routing::post;
use serde_json::{Value, json};
use support::world::{SK, World, app};

/// Every body POSTed to `/v1/traces`.
type Received = Arc<Mutex<Vec<Vec<u8>>>>;

async fn collector() -> (String, Received) {
    let received = Received::default();
    let keep = received.clone();
    let app = Router::new().route(
        "/v1/traces",
        post(move |body: Bytes| {
            let keep = keep.clone();
            async move {
                keep.lock().unwrap().push(body.to_vec());
                ""
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (format!("http://{address}"), received)
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|w| w == needle.as_bytes())
}

/// A world whose controller exports traces to a fresh collector with `env` added, after one
/// object has been deleted; returns what the collector will have been sent (it keeps receiving).
struct Traced {
    w: World,
    received: Received,
    request_id: String,
    change_order: String,
}

async fn traced(prefix: &str, env: &[(&str, &str)]) -> Traced {
    let (endpoint, received) = collector().await;
    let mut w = World::start(prefix, vec![app("app-otel", &["i-1", "i-2"])]).await;
    w.controller.kill();
    let mut all_env = vec![
        ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.as_str()),
        ("OTEL_BSP_SCHEDULE_DELAY", "200"),
    ];
    all_env.extend_from_slice(env);
    w.controller = w.spawn_controller(&[], &all_env);
    w.create("traced", "app-otel", &["i-1"], json!({}));
    let status = w.wait_terminal("traced", Duration::from_secs(60)).await;
    assert_eq!(status["phase"], "Succeeded", "{status:#}");
    let sent = w.delete_requests("app-otel").await;
    assert_eq!(sent.len(), 1, "{sent:#?}");
    Traced {
        request_id: sent[0]["requestId"].as_str().expect("requestId").into(),
        change_order: status["changeOrderId"]
            .as_str()
            .expect("changeOrderId")
            .into(),
        w,
        received,
    }
}

impl Traced {
    /// Waits (up to 15 s) until `done` holds for the bodies received so far; returns them.
    async fn bodies_until(&self, done: impl Fn(&[Vec<u8>]) -> bool) -> Vec<Vec<u8>> {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let bodies = self.received.lock().unwrap().clone();
            if done(&bodies) || Instant::now() > deadline {
                return bodies;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spans_are_flushed_as_protobuf_at_shutdown_and_never_carry_the_secret() {
    // Batches every minute: what arrives comes from the flush at SIGTERM.
    let mut t = traced("otel-proto", &[("OTEL_BSP_SCHEDULE_DELAY", "60000")]).await;
    assert!(
        t.received.lock().unwrap().is_empty(),
        "nothing exported before the first batch is due"
    );
    assert!(
        t.w.controller.terminate(Duration::from_secs(20)),
        "the controller did not stop on SIGTERM"
    );
    let object = format!("{}/traced", t.w.ns);
    let wanted = [
        "sae-controller",
        "reconcile",
        object.as_str(),
        "app-otel",
        t.request_id.as_str(),
        t.change_order.as_str(),
    ];
    let all = t.received.lock().unwrap().concat();
    let missing: Vec<&&str> = wanted.iter().filter(|w| !contains(&all, w)).collect();
    let logs = t.w.controller.logs();
    assert!(
        missing.is_empty(),
        "not in the {} bytes flushed at shutdown: {missing:?}; controller log:\n{logs}",
        all.len()
    );
    assert!(!contains(&all, SK), "the AccessKey secret was exported");
    assert!(!logs.contains("panicked"), "{logs}");
}

/// The `reconcile` spans in OTLP/JSON bodies, each as (attributes by key, service.name).
fn reconcile_spans(bodies: &[Vec<u8>]) -> Vec<(BTreeMap<String, String>, String)> {
    let mut spans = vec![];
    for body in bodies {
        let Ok(doc) = serde_json::from_slice::<Value>(body) else {
            continue;
        };
        for resource in doc["resourceSpans"].as_array().into_iter().flatten() {
            let service = attributes(&resource["resource"]["attributes"])
                .remove("service.name")
                .unwrap_or_default();
            for scope in resource["scopeSpans"].as_array().into_iter().flatten() {
                for span in scope["spans"].as_array().into_iter().flatten() {
                    if span["name"] == "reconcile" {
                        spans.push((attributes(&span["attributes"]), service.clone()));
                    }
                }
            }
        }
    }
    spans
}

fn attributes(list: &Value) -> BTreeMap<String, String> {
    list.as_array()
        .into_iter()
        .flatten()
        .filter_map(|kv| {
            let value = kv["value"]["stringValue"].as_str()?;
            Some((kv["key"].as_str()?.to_string(), value.to_string()))
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sae_request_id_and_change_order_are_attributes_of_the_reconcile_span() {
    let t = traced("otel-json", &[("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json")]).await;
    let ours = |attrs: &BTreeMap<String, String>| {
        attrs.get("request_id") == Some(&t.request_id)
            && attrs.get("change_order_id") == Some(&t.change_order)
    };
    let bodies = t
        .bodies_until(|bodies| reconcile_spans(bodies).iter().any(|(a, _)| ours(a)))
        .await;
    let spans = reconcile_spans(&bodies);
    let found = spans.iter().find(|(a, _)| ours(a));
    assert!(
        found.is_some(),
        "no reconcile span with request_id {} and change_order_id {}: {spans:#?}; {} bodies; controller log:\n{}",
        t.request_id,
        t.change_order,
        bodies.len(),
        t.w.controller.logs()
    );
    let (attrs, service) = found.unwrap();
    assert_eq!(service, "sae-controller");
    assert_eq!(attrs.get("object"), Some(&format!("{}/traced", t.w.ns)));
    assert_eq!(attrs.get("app_id").map(String::as_str), Some("app-otel"));
}
