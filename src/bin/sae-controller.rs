//! The sae-controller binary: runs the controller, or prints its CRDs (`sae-controller crd`,
//! `sae-controller crd --policy`).

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::Context as _;
use axum::Router;
use axum::http::StatusCode;
use axum::http::header::CONTENT_TYPE;
use axum::routing::get;
use clap::{Parser, Subcommand, ValueEnum};
use sae_controller::controller::{self, DefaultCredentials, LeaderFence, Settings, WatchHealth};
use sae_controller::leader::lease_grace;
use sae_controller::metrics::{self, Metrics};
use sae_controller::metrics_text;
use sae_controller::sae::credentials_file::{ProfileFile, SecretDir};
use sae_controller::sae::ecs_role::{self, EcsRoleProvider};
use sae_controller::sae::{
    CredentialChain, Credentials, RrsaConfig, RrsaProvider, SaeClient, SaeClientConfig,
    SignatureVersion,
};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::Layer as _;
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;

#[derive(Parser, Debug)]
#[command(
    name = "sae-controller",
    version = sae_controller::version::LONG_VERSION,
    about = "Deletes Alibaba Cloud SAE instances, at most once, from SaeInstanceDeletion objects"
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    run: RunArgs,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Print the SaeInstanceDeletion CustomResourceDefinition as YAML (with --policy, the
    /// SaeDeletionPolicy one).
    Crd {
        /// Print the SaeDeletionPolicy CustomResourceDefinition instead.
        #[arg(long)]
        policy: bool,
    },
}

#[derive(clap::Args, Debug)]
struct RunArgs {
    /// SAE endpoint; `{regionId}` is replaced by the object's region (status.regionId once recorded).
    #[arg(
        long,
        env = "SAE_ENDPOINT",
        default_value = "https://sae.{regionId}.aliyuncs.com"
    )]
    sae_endpoint: String,
    /// Request signature scheme: v1 (ROA HMAC-SHA1) or v3 (ACS3-HMAC-SHA256).
    #[arg(long, default_value = "v1", value_parser = parse_signature_version)]
    signature_version: SignatureVersion,
    /// Seconds allowed for one SAE call, connect included.
    #[arg(long, default_value_t = 30)]
    sae_timeout_seconds: u64,
    /// Seconds SAE's lists (ListChangeOrders, the instance listing) may lag its writes: a lost
    /// answer is concluded only from a look this long after SAE's last moment to act on it.
    #[arg(long, default_value_t = sae_controller::decide::SETTLE.as_secs().unsigned_abs(), value_parser = clap::value_parser!(u64).range(0..=600))]
    sae_read_settle_seconds: u64,
    /// Watch only this namespace (default: all namespaces).
    #[arg(long, env = "WATCH_NAMESPACE")]
    namespace: Option<String>,
    /// Address for Prometheus metrics (`/metrics`); port 0 takes any free port (logged at start).
    #[arg(long, default_value = "0.0.0.0:8080")]
    metrics_bind_address: SocketAddr,
    /// Address for the `/healthz` and `/readyz` probes; port 0 takes any free port (logged at start).
    #[arg(long, default_value = "0.0.0.0:8081")]
    health_probe_bind_address: SocketAddr,
    /// Log line format.
    #[arg(long, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
    /// SAE calls per minute per AccessKey this controller allows itself (SAE's own quota is about
    /// 60 for all SAE APIs of an account together); 0 turns client-side planning off.
    #[arg(long, default_value_t = 60)]
    sae_requests_per_minute: u32,
    /// Longest pause a throttling answer's retry hint (`x-acs-retry-after`, in milliseconds) may
    /// impose on an AccessKey, in seconds: 1 to 120 (the official SDKs' own ceiling).
    #[arg(long, default_value_t = 120, value_parser = clap::value_parser!(u64).range(1..=120))]
    sae_max_retry_after_seconds: u64,
    /// Admit nothing while no SaeDeletionPolicy exists (by default, no policy admits everything).
    /// With policies in the cluster this changes nothing: an object needs one that admits it.
    #[arg(long)]
    require_policy: bool,
    /// Elect one active replica through a Lease; the others stand by.
    #[arg(long)]
    leader_elect: bool,
    /// Namespace of the leader Lease (default: the pod's namespace, else sae-system).
    #[arg(long, env = "POD_NAMESPACE")]
    leader_election_namespace: Option<String>,
    /// Name of the leader Lease.
    #[arg(long, default_value = "sae-controller")]
    leader_election_lease_name: String,
    /// Seconds a leader's Lease lasts without renewal; a standby takes over after that.
    #[arg(long, default_value_t = 15)]
    leader_election_lease_seconds: u64,
    /// UTC offset in which SAE writes change-order CreateTime (it names no zone), if you know it
    /// for certain. Unset (the default), the controller learns it per region from SAE's answers
    /// about the change orders it creates, and records it in status.
    #[arg(long, value_parser = parse_offset)]
    sae_create_time_offset: Option<jiff::tz::Offset>,
    /// STS endpoint for RRSA's AssumeRoleWithOIDC (a URL, or a host name for https). Used only when
    /// ALIBABA_CLOUD_ROLE_ARN, ALIBABA_CLOUD_OIDC_PROVIDER_ARN and ALIBABA_CLOUD_OIDC_TOKEN_FILE are set.
    #[arg(long, env = "ALIBABA_CLOUD_STS_ENDPOINT", default_value = sae_controller::sae::rrsa::DEFAULT_STS_ENDPOINT)]
    sts_endpoint: String,
    /// A mounted Secret with the controller's default credentials, one file per key (accessKeyId,
    /// accessKeySecret, optional securityToken); read again on every use, so a rotated Secret is
    /// picked up without a restart. Used after the environment and RRSA.
    #[arg(long, env = "SAE_CREDENTIALS_DIR")]
    credentials_dir: Option<std::path::PathBuf>,
    /// The ECS instance metadata service, for the RAM role (ALIBABA_CLOUD_ECS_METADATA or an
    /// ecs_ram_role profile).
    #[arg(long, env = "SAE_ECS_METADATA_ENDPOINT", default_value = ecs_role::DEFAULT_ENDPOINT)]
    ecs_metadata_endpoint: String,
}

impl RunArgs {
    /// The time one SAE (or STS) call may take; at least a second.
    fn sae_timeout(&self) -> Duration {
        Duration::from_secs(self.sae_timeout_seconds.max(1))
    }
}

/// The controller's own credentials: the SDKs' chain (see `sae_controller::sae::chain`).
fn default_credentials(args: &RunArgs) -> anyhow::Result<DefaultCredentials> {
    let environment = Credentials::from_env();
    let rrsa = match RrsaConfig::from_env(Some(args.sts_endpoint.clone())) {
        Some(config) => Some(
            RrsaProvider::new(config, Duration::from_secs(5), args.sae_timeout())
                .map_err(|why| anyhow::anyhow!(why))
                .context("configuring RRSA")?,
        ),
        None => None,
    };
    if environment.is_some() && rrsa.is_some() {
        tracing::warn!(
            "both ALIBABA_CLOUD_ACCESS_KEY_ID and RRSA are set: using the environment AccessKey, as the SDKs do"
        );
    }
    let ecs = match std::env::var(ecs_role::ENV_ROLE_NAME)
        .ok()
        .filter(|r| !r.trim().is_empty())
    {
        Some(_) if ecs_role::disabled_by_env() => None,
        Some(role) => Some(
            EcsRoleProvider::new(&args.ecs_metadata_endpoint, Some(role), args.sae_timeout())
                .map_err(|why| anyhow::anyhow!(why))
                .context("configuring the ECS RAM role")?,
        ),
        None => None,
    };
    let chain = CredentialChain::default()
        .with_environment(environment)
        .with_rrsa(rrsa)
        .with_secret_dir(args.credentials_dir.clone().map(SecretDir::new))
        .with_profile_file(ProfileFile::from_env())
        .with_ecs(ecs, args.ecs_metadata_endpoint.clone(), args.sae_timeout());
    Ok(if chain.is_empty() {
        DefaultCredentials::None
    } else {
        DefaultCredentials::Chain(chain)
    })
}

fn parse_offset(s: &str) -> Result<jiff::tz::Offset, String> {
    sae_controller::sae::time::parse_offset(s)
        .ok_or_else(|| format!("{s:?} is not a UTC offset like +08:00"))
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum LogFormat {
    Json,
    Text,
}

fn parse_signature_version(s: &str) -> Result<SignatureVersion, String> {
    s.parse()
}

/// What must be flushed before the process exits: the trace exporter's queue (feature `otel`).
struct Telemetry {
    #[cfg(feature = "otel")]
    traces: Option<opentelemetry_sdk::trace::SdkTracerProvider>,
}

impl Telemetry {
    fn shutdown(self) {
        #[cfg(feature = "otel")]
        if let Some(provider) = self.traces
            && let Err(err) = provider.shutdown()
        {
            tracing::warn!(error = %err, "could not flush traces");
        }
    }
}

fn init_logging(format: LogFormat) -> anyhow::Result<Telemetry> {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let logs = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
    let logs = match format {
        LogFormat::Json => logs.json().flatten_event(true).boxed(),
        LogFormat::Text => logs.boxed(),
    };
    #[cfg(feature = "otel")]
    let (traces, provider) = match sae_controller::telemetry::otlp_layer()
        .context("configuring the OpenTelemetry exporter")?
    {
        Some((layer, provider)) => (Some(layer), Some(provider)),
        None => (None, None),
    };
    #[cfg(not(feature = "otel"))]
    let traces = tracing_subscriber::layer::Identity::new();
    tracing_subscriber::registry()
        .with(traces)
        .with(filter)
        .with(logs)
        .init();
    Ok(Telemetry {
        #[cfg(feature = "otel")]
        traces: provider,
    })
}

async fn serve_probes(
    listener: tokio::net::TcpListener,
    ready: Arc<AtomicBool>,
    health: WatchHealth,
) -> anyhow::Result<()> {
    let app = Router::new()
        .route(
            "/healthz",
            get(move || {
                let health = health.clone();
                async move {
                    if health.healthy() {
                        (StatusCode::OK, "ok")
                    } else {
                        (StatusCode::SERVICE_UNAVAILABLE, "watch failing")
                    }
                }
            }),
        )
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
    axum::serve(listener, app).await?;
    Ok(())
}

async fn serve_metrics(
    listener: tokio::net::TcpListener,
    metrics: Metrics,
    health: WatchHealth,
) -> anyhow::Result<()> {
    let app = Router::new().route(
        "/metrics",
        get(move |headers: axum::http::HeaderMap| {
            let metrics = metrics.clone();
            let health = health.clone();
            async move {
                // Read at scrape time, so the gauge says exactly what /healthz would say now.
                metrics.ops().set_watch_healthy(health.healthy());
                let accept = headers
                    .get(axum::http::header::ACCEPT)
                    .and_then(|v| v.to_str().ok());
                let openmetrics = metrics.encode();
                if metrics_text::wants_openmetrics(accept) {
                    ([(CONTENT_TYPE, metrics::CONTENT_TYPE)], openmetrics)
                } else {
                    (
                        [(CONTENT_TYPE, metrics_text::TEXT_CONTENT_TYPE)],
                        metrics_text::openmetrics_to_text(&openmetrics),
                    )
                }
            }
        }),
    );
    axum::serve(listener, app).await?;
    Ok(())
}

/// Binds now, so a taken port stops the start with a clear error. Port 0 picks a free port; the
/// log line below says which one.
async fn bind(
    addr: SocketAddr,
    what: &str,
) -> anyhow::Result<(tokio::net::TcpListener, SocketAddr)> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("binding the {what} address {addr}"))?;
    let bound = listener.local_addr()?;
    Ok((listener, bound))
}

/// Waits until this replica holds the leader Lease; returns the fence that guards every send.
/// Losing the lease later ends the process: a fresh start re-reads everything from the API server
/// and the recorded attempts, which is the one path we trust after a split.
async fn become_leader(
    client: &kube::Client,
    args: &RunArgs,
    metrics: &Metrics,
) -> anyhow::Result<LeaderFence> {
    let namespace = args
        .leader_election_namespace
        .clone()
        .unwrap_or_else(|| "sae-system".into());
    let identity = std::env::var("POD_NAME")
        .ok()
        .filter(|n| !n.is_empty())
        .unwrap_or_else(|| format!("sae-controller-{}", uuid::Uuid::new_v4().simple()));
    let seconds = args.leader_election_lease_seconds;
    let grace = lease_grace(seconds)?;
    let manager = kube_lease_manager::LeaseManagerBuilder::new(
        client.clone(),
        &args.leader_election_lease_name,
    )
    .with_namespace(&namespace)
    .with_identity(&identity)
    .with_field_manager(&identity)
    .with_duration(seconds)
    .with_grace(grace)
    .build()
    .await
    .context("setting up leader election")?;
    let (mut leading, _task) = manager.watch().await;
    tracing::info!(%identity, lease = %args.leader_election_lease_name, %namespace, "waiting to become leader");
    metrics.set_leader(false);
    while !*leading.borrow_and_update() {
        leading.changed().await.context("leader election stopped")?;
    }
    tracing::info!(%identity, "became leader");
    metrics.set_leader(true);
    let mut watch = leading.clone();
    tokio::spawn(async move {
        while watch.changed().await.is_ok() {
            if !*watch.borrow_and_update() {
                break;
            }
        }
        tracing::error!("lost the leader Lease; exiting so a fresh start can take over cleanly");
        std::process::exit(1);
    });
    Ok(LeaderFence {
        leading,
        leases: kube::Api::namespaced(client.clone(), &namespace),
        lease_name: args.leader_election_lease_name.clone(),
        identity,
    })
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    if let Some(Command::Crd { policy }) = cli.command {
        if policy {
            print!("{}", sae_controller::policy::policy_crd_yaml());
        } else {
            print!("{}", sae_controller::crd::crd_yaml());
        }
        return Ok(());
    }
    let args = cli.run;
    let telemetry = init_logging(args.log_format)?;

    let sae = SaeClient::new(SaeClientConfig {
        endpoint: args.sae_endpoint.clone(),
        signature_version: args.signature_version,
        timeout: args.sae_timeout(),
        max_retry_after: Duration::from_secs(args.sae_max_retry_after_seconds),
        ..SaeClientConfig::default()
    })
    .context("configuring the SAE client")?;
    let client = kube::Client::try_default()
        .await
        .context("connecting to Kubernetes (kubeconfig or in-cluster)")?;
    let default_credentials = default_credentials(&args)?;
    let credentials_source = match &default_credentials {
        DefaultCredentials::None => "<none>".to_string(),
        DefaultCredentials::Static(c) => format!("environment AccessKey {}", c.access_key_id()),
        DefaultCredentials::Rrsa(p) => format!(
            "RRSA role {} via {}",
            p.config().role_arn,
            p.config().sts_endpoint
        ),
        DefaultCredentials::Chain(chain) => chain.describe(),
    };
    if let DefaultCredentials::Chain(chain) = &default_credentials
        && let Some(provider) = chain.rrsa()
    {
        // Exchange once now so a broken RRSA setup shows in the log at start, not at the first object.
        let provider = provider.clone();
        tokio::spawn(async move {
            if let Err(why) = provider.credentials().await {
                tracing::warn!(error = %why, "RRSA credentials are not available yet");
            }
        });
    }
    tracing::info!(
        version = sae_controller::version::VERSION,
        commit = sae_controller::version::COMMIT,
        endpoint = %args.sae_endpoint,
        signature_version = %args.signature_version,
        namespace = args.namespace.as_deref().unwrap_or("<all>"),
        default_credentials = %credentials_source,
        "starting sae-controller"
    );
    let ready = Arc::new(AtomicBool::new(false));
    let metrics = Metrics::new();
    metrics.set_leader(!args.leader_elect);
    let health = WatchHealth::new(Duration::from_secs(120));
    let (probe_listener, probe_address) = bind(args.health_probe_bind_address, "probe").await?;
    let (metrics_listener, metrics_address) = bind(args.metrics_bind_address, "metrics").await?;
    tracing::info!(%probe_address, %metrics_address, "serving /healthz, /readyz and /metrics");
    let probes = tokio::spawn(serve_probes(probe_listener, ready.clone(), health.clone()));
    let metrics_server = tokio::spawn(serve_metrics(
        metrics_listener,
        metrics.clone(),
        health.clone(),
    ));
    let fence = if args.leader_elect {
        // Standby replicas are ready (they serve probes) but do not watch or act.
        ready.store(true, Ordering::SeqCst);
        let fence = tokio::select! {
            fence = become_leader(&client, &args, &metrics) => Some(fence?),
            _ = tokio::signal::ctrl_c() => return Ok(()),
        };
        ready.store(false, Ordering::SeqCst);
        fence
    } else {
        None
    };
    let settings = Settings {
        namespace: args.namespace.clone(),
        // SAE may still act on a request until the client gives up on it; allow a margin on top.
        resolve_after: jiff::SignedDuration::try_from(args.sae_timeout())?
            + jiff::SignedDuration::from_secs(10),
        create_time_offset: args.sae_create_time_offset,
        settle: jiff::SignedDuration::from_secs(args.sae_read_settle_seconds as i64),
        require_policy: args.require_policy,
    };
    let services = controller::Services {
        client,
        sae,
        default_credentials,
        metrics,
        fence,
    };
    tokio::select! {
        _ = controller::run(services, settings, ready, health, args.sae_requests_per_minute) => {}
        r = probes => r??,
        r = metrics_server => r??,
    }
    tracing::info!("stopped");
    telemetry.shutdown();
    Ok(())
}
