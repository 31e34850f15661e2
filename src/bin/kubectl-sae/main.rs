//! `kubectl sae`: the on-call engineer's way to ask for a deletion, follow it and understand it.
//!
//! This binary is the I/O: flags (`args`, kubectl's conventions), the create and the exit
//! status (here), the kube client and the reads (`reads`), the watch (`follow`) and the story
//! (`describe`). What is printed and decided is in `sae_controller::cli` (pure, table-tested).
//! The plugin reads and creates SaeInstanceDeletion objects only: it never calls SAE and needs no
//! credentials.

use std::io::Write;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{CommandFactory, Parser};
use jiff::tz::TimeZone;
use kube::api::PostParams;
use kube::{Api, ResourceExt};
use sae_controller::cli::{self, EXIT_ERROR};
use sae_controller::crd::SaeInstanceDeletion;

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

mod args;
mod describe;
mod follow;
mod reads;

use args::{Cli, Command, check_request, delete_request};

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
    let (client, namespace) = reads::connect(&cli).await?;
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
                && let Ok(answer) = reads::check(
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
            follow::follow(&api, &name, args.timeout, &tz).await
        }
        Command::Wait { name, timeout } => follow::follow(&api, &name, timeout, &tz).await,
        Command::Describe { name } => {
            describe::describe(&client, &api, &namespace, &name, &tz).await
        }
        Command::Get(args) => reads::get(&client, &namespace, &args).await,
        Command::Check(_) => {
            let request = request
                .and_then(Result::ok)
                .context("request checked above")?;
            let answer = reads::check(&client, &namespace, &request, None, &tz).await?;
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

fn indent(text: &str) -> String {
    text.lines()
        .map(|l| format!("  - {l}"))
        .collect::<Vec<_>>()
        .join("\n")
}
