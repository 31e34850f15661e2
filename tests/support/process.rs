//! Child processes that cannot outlive the test binary.
//!
//! A `static` is never dropped, and a test binary killed with SIGKILL runs no destructor at all, so a
//! child's lifetime cannot hang on Rust's `Drop`. Every process started here gets a tiny `sh` watchdog
//! in its own process group (so Ctrl-C on the terminal does not kill the watchdog before it has done its
//! job): it polls the test process and the child, and once the test process is gone it stops the
//! child (SIGTERM, then SIGKILL after a grace period).

use std::net::TcpListener;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// How long a child gets after SIGTERM before the watchdog sends SIGKILL.
const GRACE_SECONDS: u32 = 5;

/// Starts `command` in its own process group with a watchdog that ends it when the test process ends.
pub fn spawn_guarded(command: &mut Command, what: &str) -> Child {
    let child = command
        .stdin(Stdio::null())
        .process_group(0)
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {what} ({:?}): {e}", command.get_program()));
    watch(child.id(), what);
    child
}

fn watch(child_pid: u32, what: &str) {
    let test_pid = std::process::id();
    // The loop also ends when the child is gone (reaped), so a finished child leaves no watchdog behind.
    let script = format!(
        "while kill -0 {test_pid} 2>/dev/null && kill -0 {child_pid} 2>/dev/null; do sleep 0.5; done
         kill -0 {child_pid} 2>/dev/null || exit 0
         kill -TERM {child_pid} 2>/dev/null
         i=0
         while [ $i -lt {ticks} ] && kill -0 {child_pid} 2>/dev/null; do sleep 0.5; i=$((i+1)); done
         kill -KILL {child_pid} 2>/dev/null
         exit 0",
        ticks = GRACE_SECONDS * 2,
    );
    spawn_sh(&script).unwrap_or_else(|e| panic!("cannot start the watchdog for {what}: {e}"));
}

/// Removes `paths` once the test process and every pid in `pids` are gone (bounded: processes that
/// linger as unreaped zombies must not keep the cleaner alive forever).
pub fn remove_after_exit(paths: &[&Path], pids: &[u32]) {
    let test_pid = std::process::id();
    let alive = std::iter::once(test_pid)
        .chain(pids.iter().copied())
        .map(|p| format!("kill -0 {p} 2>/dev/null"))
        .collect::<Vec<_>>()
        .join(" || ");
    let quoted = paths
        .iter()
        .map(|p| shell_quote(&p.to_string_lossy()))
        .collect::<Vec<_>>()
        .join(" ");
    let script = format!(
        "while kill -0 {test_pid} 2>/dev/null; do sleep 0.5; done
         i=0
         while [ $i -lt 60 ] && {{ {alive}; }}; do sleep 0.5; i=$((i+1)); done
         rm -rf {quoted}"
    );
    if let Err(e) = spawn_sh(&script) {
        eprintln!("cannot start the cleaner of {quoted}: {e}");
    }
}

/// Starts a detached `sh -c script`; a thread reaps it so finished watchdogs leave no zombies.
fn spawn_sh(script: &str) -> std::io::Result<()> {
    let mut child = Command::new("sh")
        .arg("-c")
        .arg(script)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0)
        .spawn()?;
    std::thread::spawn(move || child.wait());
    Ok(())
}

/// Sends `signal` (e.g. "TERM") to a pid with the `kill` utility (no libc binding needed).
pub fn send_signal(pid: u32, signal: &str) {
    let _ = Command::new("kill")
        .arg(format!("-{signal}"))
        .arg(pid.to_string())
        .status();
}

/// Waits for `child` to exit, at most `timeout`; true if it did.
pub fn wait_timeout(child: &mut Child, timeout: Duration) -> bool {
    let deadline = std::time::Instant::now() + timeout;
    loop {
        match child.try_wait() {
            Ok(Some(_)) => return true,
            Ok(None) if std::time::Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(50))
            }
            _ => return false,
        }
    }
}

/// A loopback port that was free a moment ago, for servers that cannot bind port 0 and report it
/// (etcd, kube-apiserver). It is taken from below the kernel's ephemeral range (32768 and up by
/// default), where outgoing connections and `:0` binds get their ports, so nothing else running
/// here is likely to take it before the server binds it.
pub fn free_port() -> u16 {
    use std::hash::{BuildHasher as _, Hasher as _};
    const FIRST: u16 = 20000;
    const COUNT: u16 = 12000;
    // A fresh random start for each call, so parallel callers do not walk the same ports.
    let start = std::collections::hash_map::RandomState::new()
        .build_hasher()
        .finish();
    (0..COUNT)
        .map(|i| FIRST + ((start % u64::from(COUNT)) as u16 + i) % COUNT)
        .find(|&port| TcpListener::bind(("127.0.0.1", port)).is_ok())
        .expect("no free loopback port between 20000 and 32000")
}

/// The last `lines` lines of a log file, for panic messages.
pub fn tail(path: &Path, lines: usize) -> String {
    match std::fs::read(path) {
        Ok(bytes) => {
            let text = String::from_utf8_lossy(&bytes);
            let all: Vec<&str> = text.lines().collect();
            all[all.len().saturating_sub(lines)..].join("\n")
        }
        Err(e) => format!("<cannot read {}: {e}>", path.display()),
    }
}

/// Finds an executable by name on PATH.
pub fn which(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|p| is_executable(p))
}

pub fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::metadata(path)
        .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}

fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}
