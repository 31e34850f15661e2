//! `kubectl sae`: the on-call engineer's way to ask for a deletion, follow it and understand it.
//!
//! This file is the I/O: flags (kubectl's conventions), the kube client, reads, creates and the
//! watch. What is printed and decided is in `sae_controller::cli` (pure, table-tested). The plugin
//! reads and creates SaeInstanceDeletion objects only: it never calls SAE and needs no credentials.

use std::collections::BTreeMap;
use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use clap::{CommandFactory, Parser, Subcommand, ValueEnum};
use futures::StreamExt;
use jiff::Timestamp;
use jiff::tz::TimeZone;
use k8s_openapi::api::core::v1::{Event, Namespace};
use kube::api::{ListParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, Config, ResourceExt};
use sae_controller::cli::{self, DeleteRequest, EXIT_ERROR, EXIT_TIMEOUT, EventRecord, Follower};
use sae_controller::crd::{Phase, SaeInstanceDeletion};
use sae_controller::policy::SaeDeletionPolicy;

/// Every write to stdout goes through [`emit`]: a closed pipe (`kubectl sae get -A | head`) ends
/// the program quietly with status 0, as other command-line tools do, instead of a panic (as
/// `println!` would) or an error. The crate forbids `unsafe`, so SIGPIPE is not reset; Rust
/// ignores it and the write returns `BrokenPipe`.
fn emit(written: std::io::Result<()>) -> std::io::Result<()> {
    match written {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => std::process::exit(0),
        other => other,
    }
}

/// `println!` through [`emit`] (`?` on other errors).
macro_rules! say {
    ($($arg:tt)*) => {
        emit(writeln!(std::io::stdout(), $($arg)*))?
    };
}

/// `print!` through [`emit`] (`?` on other errors).
macro_rules! say_part {
    ($($arg:tt)*) => {
        emit(write!(std::io::stdout(), $($arg)*))?
    };
}

const EXAMPLES: &str = "\
Examples:
  # Delete two instances now and follow until done (exit 0 Succeeded, 1 Failed, 2 timeout)
  kubectl sae delete --app 017f39b8-dfa4 --region cn-hangzhou checkout-7d9f-abcde checkout-7d9f-fghij --wait

  # What happened to it, step by step
  kubectl sae describe 017f39b8-dfa4-x7k2q

  # Every deletion by app, with its place in the app's line
  kubectl sae get -A

  # Would the deletion policies admit this now?
  kubectl sae check --app 017f39b8-dfa4 --region cn-hangzhou checkout-7d9f-abcde

Exit status: 0 Succeeded (check: admitted), 1 Failed (check: refused), 2 --timeout passed (the
object keeps going), 3 the request could not be made (bad input, no such object, API error).";

#[derive(Parser, Debug)]
#[command(
    name = "kubectl-sae",
    bin_name = "kubectl sae",
    version = sae_controller::version::LONG_VERSION,
    about = "Ask for SAE instance deletions, follow them and read their story (SaeInstanceDeletion objects)",
    after_help = EXAMPLES
)]
struct Cli {
    /// Path to the kubeconfig file (default: $KUBECONFIG, ~/.kube/config, or in-cluster).
    #[arg(long, global = true)]
    kubeconfig: Option<PathBuf>,
    /// The kubeconfig context to use.
    #[arg(long, global = true)]
    context: Option<String>,
    /// Namespace (default: the context's namespace, else "default").
    #[arg(short = 'n', long, global = true)]
    namespace: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Create a SaeInstanceDeletion and print its name; with --wait, follow it until it ends.
    #[command(after_help = "Examples:
  kubectl sae delete --app APP --region cn-hangzhou i-1 i-2 --wait --timeout 10m
  kubectl sae delete --app APP i-1 --credentials sae-key --deadline 30m --name scale-in-1
  kubectl sae delete --app APP i-1 --dry-run --wait      # only check the instances exist

The region defaults to $ALIBABA_CLOUD_REGION_ID. Input is checked with the CRD's rules before
anything is created.")]
    Delete(DeleteArgs),
    /// The story of one object: created, waits, attempts, change order, outcome, what to do.
    #[command(after_help = "Example:\n  kubectl sae describe scale-in-1 -n ops")]
    Describe { name: String },
    /// Objects grouped by app, with each one's place in the app's line.
    #[command(
        visible_alias = "ls",
        after_help = "Examples:\n  kubectl sae get\n  kubectl sae ls -A --app APP -o wide\n  kubectl sae get -o json"
    )]
    Get(GetArgs),
    /// Follow an existing object until it ends (as `delete --wait`).
    #[command(after_help = "Example:\n  kubectl sae wait scale-in-1 --timeout 5m")]
    Wait {
        name: String,
        /// Give up following after this long (30s, 5m, 1h); the object keeps going. Default: until it ends.
        #[arg(long, value_parser = cli::parse_duration)]
        timeout: Option<Duration>,
    },
    /// Would the deletion policies admit this deletion now, and if not, why. Creates nothing.
    #[command(
        after_help = "Example:\n  kubectl sae check --app APP --region cn-hangzhou i-1 i-2 --credentials sae-key"
    )]
    Check(CheckArgs),
    /// Print a shell completion script.
    #[command(
        after_help = "Example:\n  kubectl sae completion bash > /etc/bash_completion.d/kubectl-sae"
    )]
    Completion { shell: clap_complete::Shell },
}

#[derive(clap::Args, Debug)]
struct Target {
    /// SAE application id.
    #[arg(long = "app")]
    app_id: String,
    /// Alibaba Cloud region of the app.
    #[arg(long = "region", env = "ALIBABA_CLOUD_REGION_ID", default_value = "")]
    region_id: String,
    /// Instance ids to delete (1 to 100).
    #[arg(value_name = "ID")]
    instance_ids: Vec<String>,
    /// Secret (in the namespace) holding the AccessKey; default: the controller's own credentials.
    #[arg(long)]
    credentials: Option<String>,
}

#[derive(clap::Args, Debug)]
struct DeleteArgs {
    #[command(flatten)]
    target: Target,
    /// Only check that the app has these instances; delete nothing (spec.dryRun).
    #[arg(long)]
    dry_run: bool,
    /// Time allowed to reach a final phase (1m to 168h; spec.activeDeadlineSeconds, default 1h).
    #[arg(long, value_parser = cli::parse_duration)]
    deadline: Option<Duration>,
    /// Object name (default: generated from the app id).
    #[arg(long)]
    name: Option<String>,
    /// Follow the object until it ends.
    #[arg(long)]
    wait: bool,
    /// With --wait: give up following after this long; the object keeps going.
    #[arg(long, requires = "wait", value_parser = cli::parse_duration)]
    timeout: Option<Duration>,
}

#[derive(clap::Args, Debug)]
struct GetArgs {
    /// Only this app.
    #[arg(long)]
    app: Option<String>,
    /// Objects of every namespace.
    #[arg(short = 'A', long)]
    all_namespaces: bool,
    /// Output format.
    #[arg(short = 'o', long, value_enum)]
    output: Option<Output>,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum Output {
    Json,
    Yaml,
    Wide,
}

#[derive(clap::Args, Debug)]
struct CheckArgs {
    #[command(flatten)]
    target: Target,
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            // Help and version are not errors; every usage error is "could not ask" (3), so 2
            // keeps meaning "timed out".
            return ExitCode::from(if e.exit_code() == 0 {
                0
            } else {
                EXIT_ERROR as u8
            });
        }
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(EXIT_ERROR as u8);
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(code) => ExitCode::from(u8::try_from(code).unwrap_or(EXIT_ERROR as u8)),
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(EXIT_ERROR as u8)
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<i32> {
    if let Command::Completion { shell } = cli.command {
        // For the plugin's own executable, `kubectl-sae`; clap_complete panics on a failed write,
        // so the script is built in memory and written here (a closed pipe is an error, not a panic).
        let mut cmd = Cli::command().bin_name("kubectl-sae");
        let mut script = Vec::new();
        clap_complete::generate(shell, &mut cmd, "kubectl-sae", &mut script);
        emit(std::io::stdout().write_all(&script))?;
        return Ok(0);
    }
    // Bad input is refused before the API server is even contacted.
    let request = match &cli.command {
        Command::Delete(a) => Some(delete_request(&a.target, a)),
        Command::Check(a) => Some(check_request(&a.target)),
        _ => None,
    };
    if let Some(Err(problems)) = &request {
        eprintln!("error: nothing was created:\n{}", indent(problems));
        return Ok(EXIT_ERROR);
    }
    let (client, namespace) = connect(&cli).await?;
    let api: Api<SaeInstanceDeletion> = Api::namespaced(client.clone(), &namespace);
    let tz = TimeZone::system();
    match cli.command {
        Command::Delete(args) => {
            let request = request
                .and_then(Result::ok)
                .context("request checked above")?;
            let created = api
                .create(&PostParams::default(), &request.to_object(&namespace))
                .await
                .context("creating the SaeInstanceDeletion")?;
            let name = created.name_any();
            say!("{name}");
            // Which policy admits or refuses it, best-effort and on stderr (stdout stays the name).
            if !request.dry_run
                && let Ok(answer) = check(
                    &client,
                    &namespace,
                    &request,
                    created.metadata.uid.as_deref(),
                    &tz,
                )
                .await
                && let Some(first) = answer.lines.first()
            {
                eprintln!("policies: {first}");
            }
            if !args.wait {
                return Ok(0);
            }
            follow(&api, &name, args.timeout, &tz).await
        }
        Command::Wait { name, timeout } => follow(&api, &name, timeout, &tz).await,
        Command::Describe { name } => describe(&client, &api, &namespace, &name, &tz).await,
        Command::Get(args) => get(&client, &namespace, &args).await,
        Command::Check(_) => {
            let request = request
                .and_then(Result::ok)
                .context("request checked above")?;
            let answer = check(&client, &namespace, &request, None, &tz).await?;
            for line in &answer.lines {
                say!("{line}");
            }
            Ok(if answer.cannot_tell {
                eprintln!(
                    "error: cannot tell: the verdict depends on namespace {namespace}'s labels, which \
                     could not be read"
                );
                EXIT_ERROR
            } else if answer.admitted {
                0
            } else {
                cli::EXIT_FAILED
            })
        }
        Command::Completion { .. } => Ok(0),
    }
}

fn delete_request(target: &Target, args: &DeleteArgs) -> Result<DeleteRequest, String> {
    let request = DeleteRequest {
        dry_run: args.dry_run,
        deadline: args.deadline,
        name: args.name.clone(),
        ..check_request(target)?
    };
    request.validate().map(|()| request)
}

fn check_request(target: &Target) -> Result<DeleteRequest, String> {
    let request = DeleteRequest {
        app_id: target.app_id.clone(),
        region_id: target.region_id.clone(),
        instance_ids: target.instance_ids.clone(),
        credentials: target.credentials.clone(),
        ..Default::default()
    };
    request.validate().map(|()| request)
}

fn indent(text: &str) -> String {
    text.lines()
        .map(|l| format!("  - {l}"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// A client as kubectl would build it: --kubeconfig and --context, else $KUBECONFIG,
/// ~/.kube/config or the in-cluster ServiceAccount. Returns the namespace to use too.
async fn connect(cli: &Cli) -> anyhow::Result<(Client, String)> {
    let options = KubeConfigOptions {
        context: cli.context.clone(),
        ..Default::default()
    };
    let config = match &cli.kubeconfig {
        Some(path) => {
            let file = Kubeconfig::read_from(path)
                .with_context(|| format!("reading {}", path.display()))?;
            Config::from_custom_kubeconfig(file, &options).await?
        }
        None if cli.context.is_some() => Config::from_kubeconfig(&options).await?,
        None => Config::infer().await?,
    };
    let namespace = cli
        .namespace
        .clone()
        .unwrap_or_else(|| config.default_namespace.clone());
    Ok((Client::try_from(config)?, namespace))
}

/// Follows `name` until it ends or `timeout` passes: each transition once, and on a terminal a
/// live line redrawn in place every second.
async fn follow(
    api: &Api<SaeInstanceDeletion>,
    name: &str,
    timeout: Option<Duration>,
    tz: &TimeZone,
) -> anyhow::Result<i32> {
    let started = Instant::now();
    let tty = std::io::stdout().is_terminal();
    let width = cli::columns(std::env::var("COLUMNS").ok().as_deref());
    let mut latest = api
        .get(name)
        .await
        .with_context(|| format!("reading SaeInstanceDeletion {name}"))?;
    let mut follower = Follower::default();
    let config = watcher::Config::default().fields(&format!("metadata.name={name}"));
    let mut events = watcher(api.clone(), config).default_backoff().boxed();
    // Whether the watch's last (re-)list had the object.
    let mut listed = true;
    let give_up = tokio::time::sleep(timeout.unwrap_or(Duration::from_secs(366 * 86400)));
    tokio::pin!(give_up);
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        let elapsed = started.elapsed();
        if let Some(line) = follower.observe(&latest, elapsed, tz) {
            if tty {
                say_part!("\r\x1b[2K");
            }
            say!("{line}");
        }
        if let Some((code, lines)) = cli::outcome(&latest, elapsed) {
            if tty {
                say_part!("\r\x1b[2K");
            }
            for line in lines {
                say!("{line}");
            }
            return Ok(code);
        }
        if tty {
            say_part!("\r\x1b[2K{}", cli::live_line(&latest, elapsed, tz, width));
            emit(std::io::stdout().flush())?;
        }
        tokio::select! {
            event = events.next() => match event {
                Some(Ok(watcher::Event::Init)) => listed = false,
                Some(Ok(watcher::Event::InitApply(obj))) => {
                    listed = true;
                    latest = obj;
                }
                Some(Ok(watcher::Event::Apply(obj))) => latest = obj,
                // A (re-)list without the object: it was deleted while the watch was down.
                Some(Ok(watcher::Event::Delete(_))) => {
                    if tty { say!(); }
                    bail!("SaeInstanceDeletion {name}: the object was deleted while being followed");
                }
                Some(Ok(watcher::Event::InitDone)) if !listed => {
                    if tty { say!(); }
                    bail!("SaeInstanceDeletion {name}: the object was deleted while being followed");
                }
                Some(Ok(_)) => {}
                Some(Err(e)) => {
                    // The watcher retries with backoff, which helps a passing error only; these
                    // do not pass, and waiting on would hang without a word.
                    if let Some(why) = watch_refused(&e) {
                        if tty { say!(); }
                        bail!("cannot follow SaeInstanceDeletion {name}: {why} ({e})");
                    }
                }
                None => bail!("the watch of {name} ended"),
            },
            _ = tick.tick() => {}
            () = &mut give_up => {
                if tty { say_part!("\r\x1b[2K"); }
                for line in cli::timeout_lines(&latest, timeout.unwrap_or_default(), tz) {
                    say!("{line}");
                }
                return Ok(EXIT_TIMEOUT);
            }
        }
    }
}

/// Why a watch error means following cannot go on: the credentials are refused (401), the
/// user may not watch (403), or the resource is gone (404). None for errors worth retrying.
fn watch_refused(e: &watcher::Error) -> Option<&'static str> {
    let code = match e {
        watcher::Error::InitialListFailed(kube::Error::Api(s))
        | watcher::Error::WatchStartFailed(kube::Error::Api(s))
        | watcher::Error::WatchFailed(kube::Error::Api(s)) => s.code,
        watcher::Error::WatchError(s) => s.code,
        _ => return None,
    };
    match code {
        401 => Some("the API server refused the kubeconfig's credentials (401)"),
        403 => Some("you may not list or watch SaeInstanceDeletion objects here (403)"),
        404 => Some("the SaeInstanceDeletion resource was not found (404): is the CRD installed?"),
        _ => None,
    }
}

async fn describe(
    client: &Client,
    api: &Api<SaeInstanceDeletion>,
    namespace: &str,
    name: &str,
    tz: &TimeZone,
) -> anyhow::Result<i32> {
    let obj = api
        .get(name)
        .await
        .with_context(|| format!("reading SaeInstanceDeletion {name}"))?;
    let events = events_of(client, namespace, &obj)
        .await
        .unwrap_or_else(|e| {
            eprintln!("warning: could not read Events ({e}); the story comes from the status only");
            Vec::new()
        });
    let pinned = obj.pinned();
    let status = obj.status.clone().unwrap_or_default();
    let dash = |v: Option<&str>| v.unwrap_or("-").to_string();
    say!("Name:         {namespace}/{name}");
    say!("App:          {} ({})", pinned.app_id, pinned.region_id);
    say!("Instances:    {}", pinned.instance_ids.join(", "));
    say!(
        "Credentials:  {}",
        pinned
            .credentials_ref
            .map_or("the controller's own".into(), |c| format!(
                "Secret {}",
                c.name
            ))
    );
    say!(
        "Phase:        {} ({})",
        status.phase.map_or("-".into(), |p| p.to_string()),
        dash(status.reason())
    );
    say!(
        "ChangeOrder:  {} {}",
        dash(status.change_order_id.as_deref()),
        status.change_order_status.as_deref().unwrap_or("")
    );
    say!(
        "Attempts:     {} of at most {}",
        status.attempts(),
        obj.spec.retry.max_attempts
    );
    // Policies decide before the first send and before each retry; once sent, they no longer do.
    let undecided = matches!(status.phase, None | Some(Phase::Pending | Phase::Retrying));
    if undecided && !pinned.dry_run {
        let request = DeleteRequest {
            app_id: pinned.app_id.to_string(),
            region_id: pinned.region_id.to_string(),
            instance_ids: pinned.instance_ids.to_vec(),
            credentials: pinned.credentials_ref.map(|c| c.name.clone()),
            ..Default::default()
        };
        // The object itself is not one more deletion in the hourly count.
        if let Ok(answer) =
            check(client, namespace, &request, obj.metadata.uid.as_deref(), tz).await
            && let Some(first) = answer.lines.first()
        {
            say!("Policies now: {first}");
        }
    }
    say!("Timeline:");
    let steps = cli::timeline(&obj, &events, Timestamp::now(), tz);
    say_part!("{}", cli::render(&obj, &steps, tz));
    Ok(0)
}

/// The Events about `obj` (this uid: an older object of the same name is someone else's story).
async fn events_of(
    client: &Client,
    namespace: &str,
    obj: &SaeInstanceDeletion,
) -> anyhow::Result<Vec<EventRecord>> {
    let api: Api<Event> = Api::namespaced(client.clone(), namespace);
    let params = ListParams::default().fields(&format!("involvedObject.name={}", obj.name_any()));
    let uid = obj.metadata.uid.clone();
    let list = api.list(&params).await?;
    Ok(list
        .items
        .into_iter()
        .filter(|e| e.involved_object.uid == uid)
        .filter_map(|e| {
            let time = e
                .event_time
                .as_ref()
                .map(|t| t.0)
                .or_else(|| e.first_timestamp.as_ref().map(|t| t.0))
                .or_else(|| e.metadata.creation_timestamp.as_ref().map(|t| t.0))?;
            let count = e
                .series
                .as_ref()
                .and_then(|s| s.count)
                .or(e.count)
                .unwrap_or(1);
            let last_time = e
                .series
                .as_ref()
                .and_then(|s| s.last_observed_time.as_ref().map(|t| t.0))
                .or_else(|| e.last_timestamp.as_ref().map(|t| t.0));
            Some(EventRecord {
                time,
                reason: e.reason.unwrap_or_default(),
                note: e.message.unwrap_or_default(),
                count,
                last_time,
            })
        })
        .collect())
}

/// Every object the user may list: cluster-wide when allowed (objects of other namespaces share
/// an app's line), else the namespace's.
async fn all_objects(client: &Client, namespace: &str) -> anyhow::Result<Vec<SaeInstanceDeletion>> {
    let everywhere: Api<SaeInstanceDeletion> = Api::all(client.clone());
    match everywhere.list(&ListParams::default()).await {
        Ok(list) => Ok(list.items),
        Err(e) => {
            eprintln!(
                "note: cannot list SaeInstanceDeletion objects cluster-wide ({e}); using namespace \
                 {namespace} only, so objects of other namespaces (in an app's line or its hourly count) \
                 are not seen"
            );
            let here: Api<SaeInstanceDeletion> = Api::namespaced(client.clone(), namespace);
            Ok(here
                .list(&ListParams::default())
                .await
                .context("listing SaeInstanceDeletion objects")?
                .items)
        }
    }
}

async fn get(client: &Client, namespace: &str, args: &GetArgs) -> anyhow::Result<i32> {
    let objects = all_objects(client, namespace).await?;
    let groups = cli::group_by_app(
        &objects,
        |o| args.all_namespaces || o.metadata.namespace.as_deref() == Some(namespace),
        args.app.as_deref(),
        Timestamp::now(),
    );
    let doc = serde_json::json!({ "apps": groups });
    match args.output {
        Some(Output::Json) => say!("{}", serde_json::to_string_pretty(&doc)?),
        Some(Output::Yaml) => say_part!("{}", serde_saphyr::to_string(&doc)?),
        Some(Output::Wide) => {
            say_part!("{}", cli::render_table(&groups, true, args.all_namespaces))
        }
        None => say_part!("{}", cli::render_table(&groups, false, args.all_namespaces)),
    }
    Ok(0)
}

/// The policies' verdict on `request` now; `skip_uid`: an existing object left out of the hourly
/// count and the app's line (describe asks about the object itself).
async fn check(
    client: &Client,
    namespace: &str,
    request: &DeleteRequest,
    skip_uid: Option<&str>,
    tz: &TimeZone,
) -> anyhow::Result<cli::CheckAnswer> {
    let policies: Api<SaeDeletionPolicy> = Api::all(client.clone());
    let mut notes = Vec::new();
    let policies = match policies.list(&ListParams::default()).await {
        Ok(list) => list.items,
        Err(kube::Error::Api(s)) if s.code == 404 => {
            notes.push("(the SaeDeletionPolicy CRD is not installed: no policies)".to_string());
            Vec::new()
        }
        Err(e) => return Err(e).context("listing SaeDeletionPolicy objects"),
    };
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let labels: Option<BTreeMap<String, String>> = match namespaces.get(namespace).await {
        Ok(ns) => Some(ns.metadata.labels.unwrap_or_default()),
        Err(_) => {
            notes.push(format!("(could not read namespace {namespace}'s labels: a namespaceSelector is taken not to match)"));
            None
        }
    };
    let mut objects = all_objects(client, namespace).await?;
    if let Some(uid) = skip_uid {
        objects.retain(|o| o.metadata.uid.as_deref() != Some(uid));
    }
    let cluster = cli::Cluster {
        namespace,
        namespace_labels: labels.as_ref(),
        policies: &policies,
        objects: &objects,
    };
    let mut answer = cli::check(request, &cluster, Timestamp::now(), tz);
    answer.lines.extend(notes);
    Ok(answer)
}
