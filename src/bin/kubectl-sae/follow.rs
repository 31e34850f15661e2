//! Following one object until it ends: the watch, the live line, the exit status.

use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use futures::StreamExt;
use jiff::tz::TimeZone;
use kube::Api;
use kube::runtime::{WatchStreamExt, watcher};
use sae_controller::cli::{self, EXIT_TIMEOUT, Follower};
use sae_controller::crd::SaeInstanceDeletion;

use crate::emit;

/// Follows `name` until it ends or `timeout` passes: each transition once, and on a terminal a
/// live line redrawn in place every second.
pub(crate) async fn follow(
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
