//! The sae-controller binary: runs the controller, or prints its CRD (`sae-controller crd`).

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::Context as _;
use axum::Router;
use axum::http::StatusCode;
use axum::routing::get;
use clap::{Parser, Subcommand, ValueEnum};
use sae_controller::controller::{self, Context};
use sae_controller::sae::{Credentials, SaeClient, SaeClientConfig, SignatureVersion};
use tracing_subscriber::EnvFilter;

#[derive(Parser, Debug)]
#[command(name = "sae-controller", version, about = "Deletes Alibaba Cloud SAE instances, at most once, from SaeInstanceDeletion objects")]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    run: RunArgs,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Print the SaeInstanceDeletion CustomResourceDefinition as YAML.
    Crd,
}

#[derive(clap::Args, Debug)]
struct RunArgs {
    /// SAE endpoint; `{regionId}` is replaced by the object's spec.regionId.
    #[arg(long, env = "SAE_ENDPOINT", default_value = "https://sae.{regionId}.aliyuncs.com")]
    sae_endpoint: String,
    /// Request signature scheme: v1 (ROA HMAC-SHA1) or v3 (ACS3-HMAC-SHA256).
    #[arg(long, default_value = "v1", value_parser = parse_signature_version)]
    signature_version: SignatureVersion,
    /// Seconds allowed for one SAE call, connect included.
    #[arg(long, default_value_t = 30)]
    sae_timeout_seconds: u64,
    /// Watch only this namespace (default: all namespaces).
    #[arg(long, env = "WATCH_NAMESPACE")]
    namespace: Option<String>,
    /// Address for Prometheus metrics (`/metrics`).
    #[arg(long, default_value = "0.0.0.0:8080")]
    metrics_bind_address: SocketAddr,
    /// Address for the `/healthz` and `/readyz` probes.
    #[arg(long, default_value = "0.0.0.0:8081")]
    health_probe_bind_address: SocketAddr,
    /// Log line format.
    #[arg(long, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum LogFormat {
    Json,
    Text,
}

fn parse_signature_version(s: &str) -> Result<SignatureVersion, String> {
    s.parse()
}

fn init_logging(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    match format {
        LogFormat::Json => builder.json().flatten_event(true).init(),
        LogFormat::Text => builder.init(),
    }
}

async fn serve_probes(addr: SocketAddr, ready: Arc<AtomicBool>) -> anyhow::Result<()> {
    let app = Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route(
            "/readyz",
            get(move || {
                let ready = ready.clone();
                async move {
                    if ready.load(Ordering::SeqCst) {
                        (StatusCode::OK, "ok")
                    } else {
                        (StatusCode::SERVICE_UNAVAILABLE, "cache not synced")
                    }
                }
            }),
        );
    let listener = tokio::net::TcpListener::bind(addr).await.with_context(|| format!("binding {addr}"))?;
    axum::serve(listener, app).await?;
    Ok(())
}

async fn serve_metrics(addr: SocketAddr) -> anyhow::Result<()> {
    let app = Router::new().route("/metrics", get(|| async { "" }));
    let listener = tokio::net::TcpListener::bind(addr).await.with_context(|| format!("binding {addr}"))?;
    axum::serve(listener, app).await?;
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    if let Some(Command::Crd) = cli.command {
        print!("{}", sae_controller::crd::crd_yaml());
        return Ok(());
    }
    let args = cli.run;
    init_logging(args.log_format);

    let sae = SaeClient::new(SaeClientConfig {
        endpoint: args.sae_endpoint.clone(),
        signature_version: args.signature_version,
        timeout: Duration::from_secs(args.sae_timeout_seconds.max(1)),
        ..SaeClientConfig::default()
    })
    .context("configuring the SAE client")?;
    let client = kube::Client::try_default().await.context("connecting to Kubernetes (kubeconfig or in-cluster)")?;
    let default_credentials = Credentials::from_env();
    tracing::info!(
        endpoint = %args.sae_endpoint,
        signature_version = %args.signature_version,
        namespace = args.namespace.as_deref().unwrap_or("<all>"),
        default_credentials = default_credentials.as_ref().map(|c| c.access_key_id().to_string()).unwrap_or_else(|| "<none>".into()),
        "starting sae-controller"
    );
    let ready = Arc::new(AtomicBool::new(false));
    let probes = tokio::spawn(serve_probes(args.health_probe_bind_address, ready.clone()));
    let metrics = tokio::spawn(serve_metrics(args.metrics_bind_address));
    let ctx = Arc::new(Context::new(client, sae, default_credentials));
    tokio::select! {
        _ = controller::run(ctx, args.namespace, ready) => {}
        r = probes => r??,
        r = metrics => r??,
    }
    tracing::info!("stopped");
    Ok(())
}
