//! `sae-simulator`: a local SAE for tests and demos. See docs/simulator.md.

use std::io::Write as _;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context as _, bail};
use clap::{Parser, ValueEnum};
use sae_controller::simulator::{
    self, AccessKeySpec, DeletingView, ModelConfig, Seed, Simulator, SimulatorConfig, TimeForm,
    TimeStyle,
};
use tracing_subscriber::EnvFilter;

#[derive(Clone, Copy, Debug, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

/// A local stand-in for Alibaba Cloud SAE: verifies signatures like SAE, models apps and change
/// orders, and misbehaves on request (faults scripted through /_sim/faults or the seed file).
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    /// Address to listen on; port 0 picks a free port. The first line on stdout is
    /// `listening on http://ADDR`.
    #[arg(long, env = "SAE_SIM_LISTEN", default_value = "127.0.0.1:9300")]
    listen: String,

    /// JSON (or YAML, by extension .yaml/.yml) file with {"accessKeys", "apps", "faults"}.
    #[arg(long, env = "SAE_SIM_SEED")]
    seed: Option<PathBuf>,

    /// An accepted access key as ID:SECRET; repeatable. The environment variable takes a
    /// comma-separated list.
    #[arg(
        long = "access-key",
        env = "SAE_SIM_ACCESS_KEYS",
        value_delimiter = ',',
        hide_env_values = true
    )]
    access_keys: Vec<String>,

    /// How long a change order executes before it ends (fractions allowed).
    #[arg(long, default_value_t = 2.0)]
    change_order_seconds: f64,

    /// Calls per AccessKeyId per sliding minute, over all operations; 0 = unlimited.
    #[arg(long, default_value_t = 60)]
    requests_per_minute: u32,

    /// The quota of one AccessKeyId as ID=N, replacing --requests-per-minute for that key (0 =
    /// unlimited); repeatable.
    #[arg(long = "key-requests-per-minute", value_parser = key_quota)]
    key_requests_per_minute: Vec<(String, u32)>,

    /// Largest accepted difference between the request's date and the simulator's clock.
    #[arg(long, default_value_t = 900)]
    max_skew_seconds: u32,

    /// The fixed UTC offset CreateTime and FinishTime are written in: `UTC`, `+08:00`, `-05:00`…
    /// SAE writes no zone; its example reads like China Standard Time, hence the default.
    #[arg(long, default_value = "+08:00", value_parser = simulator::parse_offset)]
    create_time_zone: jiff::tz::Offset,

    /// How CreateTime and FinishTime are written: plain (`2020-12-17 21:06:45`), millis
    /// (`… 21:06:45.123`), iso8601 (`2020-12-17T21:06:45+08:00`, `…Z` in UTC), iso8601Local
    /// (`2020-12-17T21:06:45`, no zone), epochMillis (a JSON number of Unix milliseconds),
    /// epochMillisString (the same as a string) or epochSeconds (a JSON number of Unix seconds).
    #[arg(long, default_value = "plain", value_parser = str::parse::<TimeForm>)]
    create_time_format: TimeForm,

    /// Leave CoTypeCode out of ListChangeOrders rows.
    #[arg(long)]
    omit_co_type_code: bool,

    /// SAE's clock minus the real clock, in seconds (negative: SAE is behind). Moves CreateTime,
    /// the Date header, the signature date check and every timer.
    #[arg(long, default_value_t = 0.0, allow_negative_numbers = true)]
    clock_skew_seconds: f64,

    /// How DescribeApplicationInstances shows the instances of an executing CoDeleteInstances:
    /// terminating (InstanceContainerStatus `Terminating`), running, or hidden (not listed).
    #[arg(long, default_value = "terminating", value_parser = str::parse::<DeletingView>)]
    deleting_instances: DeletingView,

    /// ListChangeOrders leaves out a change order until this many seconds (SAE's clock) after its
    /// creation, in TotalSize and paging too (fractions allowed, at most 600): reads that lag.
    #[arg(long, default_value_t = 0.0)]
    list_lag_seconds: f64,

    /// DescribeChangeOrder answers a change order younger than this many seconds as it answers
    /// an unknown id (fractions allowed, at most 600).
    #[arg(long, default_value_t = 0.0)]
    describe_lag_seconds: f64,

    /// Every API-made change order stays 0 (preparing) this long before it executes, unless a
    /// slowStart fault scripts it (fractions allowed, at most 86400).
    #[arg(long, default_value_t = 0.0)]
    preparing_seconds: f64,

    /// Log line format on stderr; the level comes from RUST_LOG (default info).
    #[arg(long, value_enum, default_value = "text")]
    log_format: LogFormat,
}

fn key_quota(raw: &str) -> Result<(String, u32), String> {
    let (id, n) = raw
        .rsplit_once('=')
        .ok_or_else(|| format!("{raw:?} is not ID=N"))?;
    let n = n
        .trim()
        .parse()
        .map_err(|_| format!("{raw:?}: N must be a whole number >= 0"))?;
    match id.trim() {
        "" => Err(format!("{raw:?} names no AccessKeyId")),
        id => Ok((id.to_string(), n)),
    }
}

fn read_seed(path: &PathBuf) -> anyhow::Result<Seed> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading seed file {}", path.display()))?;
    let yaml = matches!(
        path.extension().and_then(|e| e.to_str()),
        Some("yaml" | "yml")
    );
    let seed = if yaml {
        serde_saphyr::from_str(&text).map_err(|e| anyhow::anyhow!("{e}"))
    } else {
        serde_json::from_str(&text).map_err(anyhow::Error::from)
    };
    seed.with_context(|| format!("parsing seed file {}", path.display()))
}

fn config(args: &Args) -> anyhow::Result<SimulatorConfig> {
    if !(args.change_order_seconds.is_finite() && args.change_order_seconds >= 0.0) {
        bail!("--change-order-seconds must be a number >= 0");
    }
    let access_keys = args
        .access_keys
        .iter()
        .filter(|pair| !pair.trim().is_empty())
        .map(|pair| AccessKeySpec::parse_pair(pair).map_err(anyhow::Error::msg))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let seed = args.seed.as_ref().map(read_seed).transpose()?;
    Ok(SimulatorConfig {
        model: ModelConfig {
            change_order_duration: jiff::SignedDuration::try_from_secs_f64(
                args.change_order_seconds,
            )?,
            requests_per_minute: args.requests_per_minute,
            max_skew: jiff::SignedDuration::from_secs(args.max_skew_seconds.into()),
            time_style: TimeStyle {
                zone: args.create_time_zone,
                form: args.create_time_format,
            },
            omit_co_type_code: args.omit_co_type_code,
            clock_skew: simulator::clock_skew_from_secs(args.clock_skew_seconds)
                .map_err(|e| anyhow::anyhow!("--clock-skew-seconds: {e}"))?,
            deleting_instances: args.deleting_instances,
            key_requests_per_minute: args.key_requests_per_minute.iter().cloned().collect(),
            list_lag: simulator::bounded_secs(
                args.list_lag_seconds,
                simulator::MAX_LAG_SECS,
                "--list-lag-seconds",
            )
            .map_err(anyhow::Error::msg)?,
            describe_lag: simulator::bounded_secs(
                args.describe_lag_seconds,
                simulator::MAX_LAG_SECS,
                "--describe-lag-seconds",
            )
            .map_err(anyhow::Error::msg)?,
            preparing_seconds: simulator::bounded_secs(
                args.preparing_seconds,
                simulator::MAX_PREPARING_SECS,
                "--preparing-seconds",
            )
            .map_err(anyhow::Error::msg)?,
        },
        access_keys,
        seed,
        ..SimulatorConfig::default()
    })
}

async fn shutdown_signal() {
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(term) => term,
                Err(_) => return std::future::pending().await,
            };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = tokio::signal::ctrl_c().await;
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    match args.log_format {
        LogFormat::Text => logs.init(),
        LogFormat::Json => logs.json().init(),
    }

    let sim = Arc::new(Simulator::new(config(&args)?)?);
    let listener = tokio::net::TcpListener::bind(&args.listen)
        .await
        .with_context(|| format!("binding {}", args.listen))?;
    let addr = listener.local_addr()?;
    // Tests read this line to learn the port; flush so they see it at once.
    let mut stdout = std::io::stdout();
    writeln!(stdout, "listening on http://{addr}")?;
    stdout.flush()?;
    tracing::info!(%addr, requests_per_minute = args.requests_per_minute, change_order_seconds = args.change_order_seconds, "sae-simulator ready");

    tokio::select! {
        _ = simulator::serve(listener, sim) => {}
        _ = shutdown_signal() => tracing::info!("shutting down"),
    }
    Ok(())
}
