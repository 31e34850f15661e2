//! `make bench`: rough throughput figures for signing and for client→simulator round trips.
//!
//! Run with `cargo run --release --example bench_sae`. Prints a table; asserts nothing about
//! speed. Every loop is bounded by both a count and a time, and traffic stays on loopback.

use std::sync::Arc;
use std::time::{Duration, Instant};

use jiff::Timestamp;
use sae_controller::sae::client::{SaeClient, SaeClientConfig};
use sae_controller::sae::sign::{self, SignInput};
use sae_controller::sae::{Credentials, SignatureVersion};
use sae_controller::simulator::{
    self, AccessKeySpec, AppSpec, GroupSpec, ModelConfig, Operation, ReceivedRequest, Seed,
    Simulator, SimulatorConfig,
};

const AK: &str = "AKbench";
const SECRET: &str = "bench-secret";
const MAX_ITERATIONS: u64 = 2_000_000;

struct Row {
    what: String,
    count: u64,
    elapsed: Duration,
}

/// Runs `step` until `budget` is spent or MAX_ITERATIONS is reached.
fn timed(budget: Duration, mut step: impl FnMut(u64)) -> (u64, Duration) {
    let started = Instant::now();
    let mut n = 0;
    while n < MAX_ITERATIONS && started.elapsed() < budget {
        step(n);
        n += 1;
    }
    (n, started.elapsed())
}

fn sign_and_verify(version: SignatureVersion, n: u64) {
    let creds = Credentials::new(AK, SECRET, None);
    let query = vec![("ChangeOrderId".to_string(), format!("co-{n}"))];
    let nonce = format!("nonce-{n}");
    let op = Operation::DescribeChangeOrder;
    let input = SignInput {
        method: op.method(),
        host: "127.0.0.1:9300",
        path: op.path(),
        query: &query,
        action: op.name(),
        api_version: "2019-05-06",
        body: b"",
        now: Timestamp::now(),
        nonce: &nonce,
    };
    let headers = sign::signed_headers(version, &creds, &input);
    let authorization = headers
        .iter()
        .find(|(k, _)| k == "authorization")
        .map(|(_, v)| v.as_str());
    let auth = simulator::parse_authorization(authorization).expect("parses");
    let received = ReceivedRequest {
        method: op.method(),
        path: op.path(),
        query: &query,
        headers: &headers,
        body: b"",
    };
    simulator::verify_signature(&auth, SECRET, &received).expect("verifies");
}

async fn round_trips(
    client: &SaeClient,
    co: &str,
    in_flight: usize,
    budget: Duration,
) -> (u64, Duration) {
    let creds = Credentials::new(AK, SECRET, None);
    let started = Instant::now();
    let per_worker = MAX_ITERATIONS / in_flight as u64;
    let workers = (0..in_flight).map(|_| {
        let (client, creds, co) = (client.clone(), creds.clone(), co.to_string());
        tokio::spawn(async move {
            let mut done = 0u64;
            while done < per_worker && started.elapsed() < budget {
                client
                    .describe_change_order(&creds, "cn-hangzhou", &co)
                    .await
                    .expect("round trip");
                done += 1;
            }
            done
        })
    });
    let mut total = 0;
    for worker in workers.collect::<Vec<_>>() {
        total += worker.await.expect("worker");
    }
    (total, started.elapsed())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut rows = Vec::new();
    for version in [SignatureVersion::V1, SignatureVersion::V3] {
        let (count, elapsed) = timed(Duration::from_secs(1), |n| sign_and_verify(version, n));
        rows.push(Row {
            what: format!("sign + verify, {version} (pure functions)"),
            count,
            elapsed,
        });
    }

    let sim = Arc::new(Simulator::new(SimulatorConfig {
        model: ModelConfig {
            requests_per_minute: 0,
            ..ModelConfig::default()
        },
        seed: Some(Seed {
            access_keys: vec![
                AccessKeySpec::parse_pair(&format!("{AK}:{SECRET}")).map_err(anyhow::Error::msg)?,
            ],
            apps: vec![AppSpec {
                app_id: "app-bench".into(),
                groups: vec![GroupSpec {
                    group_id: "g".into(),
                    group_name: None,
                    instance_ids: vec!["i-1".into()],
                }],
            }],
            faults: vec![],
        }),
        ..SimulatorConfig::default()
    })?);
    let addr = simulator::spawn(sim).await?;
    for version in [SignatureVersion::V1, SignatureVersion::V3] {
        let client = SaeClient::new(SaeClientConfig {
            endpoint: format!("http://{addr}"),
            signature_version: version,
            ..SaeClientConfig::default()
        })?;
        let creds = Credentials::new(AK, SECRET, None);
        let co = match client
            .delete_instances(&creds, "cn-hangzhou", "app-bench", &["i-1".to_string()])
            .await
        {
            Ok(accepted) => accepted.change_order_id,
            // The second scheme finds the instance already gone; any existing change order will do.
            Err(_) => client
                .list_change_orders(&creds, "cn-hangzhou", "app-bench", None, 1, 1)
                .await?
                .change_orders[0]
                .change_order_id
                .clone(),
        };
        for in_flight in [1, 8] {
            let (count, elapsed) =
                round_trips(&client, &co, in_flight, Duration::from_secs(2)).await;
            rows.push(Row {
                what: format!("DescribeChangeOrder round trip, {version}, {in_flight} in flight"),
                count,
                elapsed,
            });
        }
    }

    println!(
        "{:<52} {:>10} {:>12} {:>12}",
        "measure", "count", "per second", "wall / op"
    );
    for row in rows {
        let secs = row.elapsed.as_secs_f64();
        let rate = row.count as f64 / secs;
        // With several in flight this is wall time per completed call, not latency.
        let per_op_us = secs * 1e6 / row.count.max(1) as f64;
        println!(
            "{:<52} {:>10} {:>12.0} {:>10.1}µs",
            row.what, row.count, rate, per_op_us
        );
    }
    println!(
        "(loopback, in-process simulator, quota off; figures vary with the machine and the build profile)"
    );
    Ok(())
}
