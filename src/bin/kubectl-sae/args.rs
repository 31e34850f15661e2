//! The plugin's flags and arguments, in kubectl's conventions, and the request they make.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, Subcommand, ValueEnum};
use sae_controller::cli::{self, DeleteRequest};

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
pub(crate) struct Cli {
    /// Path to the kubeconfig file (default: $KUBECONFIG, ~/.kube/config, or in-cluster).
    #[arg(long, global = true)]
    pub(crate) kubeconfig: Option<PathBuf>,
    /// The kubeconfig context to use.
    #[arg(long, global = true)]
    pub(crate) context: Option<String>,
    /// Namespace (default: the context's namespace, else "default").
    #[arg(short = 'n', long, global = true)]
    pub(crate) namespace: Option<String>,
    #[command(subcommand)]
    pub(crate) command: Command,
}

#[derive(Subcommand, Debug)]
pub(crate) enum Command {
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
pub(crate) struct Target {
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
pub(crate) struct DeleteArgs {
    #[command(flatten)]
    pub(crate) target: Target,
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
    pub(crate) wait: bool,
    /// With --wait: give up following after this long; the object keeps going.
    #[arg(long, requires = "wait", value_parser = cli::parse_duration)]
    pub(crate) timeout: Option<Duration>,
}

#[derive(clap::Args, Debug)]
pub(crate) struct GetArgs {
    /// Only this app.
    #[arg(long)]
    pub(crate) app: Option<String>,
    /// Objects of every namespace.
    #[arg(short = 'A', long)]
    pub(crate) all_namespaces: bool,
    /// Output format.
    #[arg(short = 'o', long, value_enum)]
    pub(crate) output: Option<Output>,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
pub(crate) enum Output {
    Json,
    Yaml,
    Wide,
}

#[derive(clap::Args, Debug)]
pub(crate) struct CheckArgs {
    #[command(flatten)]
    pub(crate) target: Target,
}

pub(crate) fn delete_request(target: &Target, args: &DeleteArgs) -> Result<DeleteRequest, String> {
    let request = DeleteRequest {
        dry_run: args.dry_run,
        deadline: args.deadline,
        name: args.name.clone(),
        ..check_request(target)?
    };
    request.validate().map(|()| request)
}

pub(crate) fn check_request(target: &Target) -> Result<DeleteRequest, String> {
    let request = DeleteRequest {
        app_id: target.app_id.clone(),
        region_id: target.region_id.clone(),
        instance_ids: target.instance_ids.clone(),
        credentials: target.credentials.clone(),
        ..Default::default()
    };
    request.validate().map(|()| request)
}
