//! The project's own binaries, run as child processes the way a user would run them.

use std::fs::{File, OpenOptions};
use std::io::{BufRead as _, BufReader, Write as _};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use super::process::{send_signal, spawn_guarded, tail, wait_timeout};

const STARTUP_TIMEOUT: Duration = Duration::from_secs(30);
const LOG_TAIL_LINES: usize = 80;

/// A log directory that survives a failing test: on a panic the path and the log's tail are printed
/// and the directory is kept; otherwise it is removed.
struct LogDir {
    dir: Option<tempfile::TempDir>,
    log: PathBuf,
    what: &'static str,
}

impl LogDir {
    fn new(what: &'static str) -> Self {
        let dir = tempfile::Builder::new()
            .prefix(&format!("{what}-"))
            .tempdir()
            .unwrap_or_else(|e| panic!("creating a log dir for {what}: {e}"));
        let log = dir.path().join(format!("{what}.log"));
        Self {
            dir: Some(dir),
            log,
            what,
        }
    }

    /// A handle for the child's stdout/stderr. Append mode, so several writers interleave by line
    /// instead of overwriting each other.
    fn writer(&self) -> File {
        OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap_or_else(|e| panic!("opening {}: {e}", self.log.display()))
    }

    fn read(&self) -> String {
        std::fs::read(&self.log)
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default()
    }
}

impl Drop for LogDir {
    fn drop(&mut self) {
        if std::thread::panicking()
            && let Some(dir) = self.dir.take()
        {
            let kept = dir.keep();
            eprintln!(
                "--- {} log kept at {} (last {LOG_TAIL_LINES} lines) ---\n{}\n--- end of {} log ---",
                self.what,
                kept.display(),
                tail(&self.log, LOG_TAIL_LINES),
                self.what
            );
        }
    }
}

/// `sae-simulator` listening on a free loopback port.
pub struct Simulator {
    child: Child,
    url: String,
    http: reqwest::Client,
    logs: LogDir,
}

impl Simulator {
    /// Runs `sae-simulator --listen 127.0.0.1:0 ARGS` and waits for its `listening on http://ADDR` line.
    pub fn spawn(args: &[&str]) -> Simulator {
        Simulator::spawn_listening("127.0.0.1:0", args)
    }

    /// Runs `sae-simulator --listen LISTEN ARGS`: with the [`Simulator::addr`] of one that was
    /// [`Simulator::kill`]ed, a simulator back on the same port (its state is new: pass a `--seed`).
    pub fn spawn_listening(listen: &str, args: &[&str]) -> Simulator {
        let logs = LogDir::new("sae-simulator");
        let mut child = spawn_guarded(
            Command::new(env!("CARGO_BIN_EXE_sae-simulator"))
                .args(["--listen", listen])
                .args(args)
                .env_remove("SAE_SIM_ACCESS_KEYS")
                .env("NO_COLOR", "1")
                .stdout(Stdio::piped())
                .stderr(logs.writer()),
            "sae-simulator",
        );
        // The first stdout line is the address; the rest is copied into the log so the pipe never fills.
        let stdout = child.stdout.take().expect("piped stdout");
        let mut log = logs.writer();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut lines = BufReader::new(stdout).lines();
            let first = lines.next().and_then(Result::ok);
            let _ = tx.send(first);
            for line in lines.map_while(Result::ok) {
                let _ = writeln!(log, "{line}");
            }
        });
        let first = rx.recv_timeout(STARTUP_TIMEOUT).ok().flatten();
        let url = first
            .as_deref()
            .and_then(|l| l.trim().strip_prefix("listening on "))
            .map(str::to_owned);
        let Some(url) = url.filter(|u| u.starts_with("http://")) else {
            let exited = child.try_wait().ok().flatten();
            let _ = child.kill();
            let _ = child.wait();
            let state = exited.map_or("still running".to_owned(), |s| format!("exited: {s}"));
            panic!(
                "sae-simulator did not print `listening on http://ADDR` first (got {first:?}, {state}); \
                 its log:\n{}",
                tail(&logs.log, LOG_TAIL_LINES)
            );
        };
        Simulator {
            child,
            url,
            http: reqwest::Client::new(),
            logs,
        }
    }

    /// `http://127.0.0.1:PORT`, to use as the controller's SAE endpoint.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// `127.0.0.1:PORT`, for [`Simulator::spawn_listening`].
    pub fn addr(&self) -> &str {
        self.url.trim_start_matches("http://")
    }

    /// SIGKILLs the simulator and waits for it: from then on its port refuses connections, which
    /// is what a client sees of an unreachable SAE (nothing can have been sent).
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// POSTs JSON to the admin API (e.g. `/_sim/apps`); panics unless 2xx; returns the JSON answer
    /// (`Null` for an empty body, a JSON string for a body that is not JSON).
    pub async fn admin_post(&self, path: &str, body: serde_json::Value) -> serde_json::Value {
        let request = self.http.post(format!("{}{path}", self.url)).json(&body);
        self.admin_call("POST", path, request).await
    }

    /// GETs an admin path (e.g. `/_sim/ledger`); panics unless 2xx; returns the JSON answer.
    pub async fn admin_get(&self, path: &str) -> serde_json::Value {
        let request = self.http.get(format!("{}{path}", self.url));
        self.admin_call("GET", path, request).await
    }

    /// The simulator's ledger of requests and deletions.
    pub async fn ledger(&self) -> serde_json::Value {
        self.admin_get("/_sim/ledger").await
    }

    async fn admin_call(
        &self,
        method: &str,
        path: &str,
        request: reqwest::RequestBuilder,
    ) -> serde_json::Value {
        let response = request
            .timeout(Duration::from_secs(10))
            .send()
            .await
            .unwrap_or_else(|e| panic!("{method} {path} on the simulator: {e}"));
        let status = response.status();
        let text = response
            .text()
            .await
            .unwrap_or_else(|e| panic!("{method} {path}: reading the body: {e}"));
        assert!(
            status.is_success(),
            "{method} {path} on the simulator answered {status}: {text}"
        );
        if text.trim().is_empty() {
            return serde_json::Value::Null;
        }
        serde_json::from_str(&text).unwrap_or(serde_json::Value::String(text))
    }

    pub fn logs(&self) -> String {
        self.logs.read()
    }

    pub fn log_path(&self) -> &Path {
        &self.logs.log
    }
}

impl Drop for Simulator {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A running `sae-controller` process; killed (SIGKILL) on drop.
pub struct Controller {
    child: Child,
    /// Whether the harness set the probe / metrics address (port 0, read back from the log).
    harness_probe_port: bool,
    harness_metrics_port: bool,
    logs: LogDir,
}

impl Controller {
    /// Runs `sae-controller ARGS` with `KUBECONFIG=kubeconfig` and the extra `env`. Inherited
    /// `ALIBABA_CLOUD_*`, `SAE_ENDPOINT`, `WATCH_NAMESPACE` and `KUBECONFIG` are removed first so a
    /// developer's shell cannot change a test. Unless ARGS set them, the metrics and probe servers get
    /// port 0 on loopback: the controller binds any free port and logs it, so parallel tests neither
    /// collide on the defaults nor race another process for a port picked in advance. stdout and
    /// stderr go to a log file ([`Controller::logs`]).
    pub fn spawn(kubeconfig: &Path, args: &[&str], env: &[(&str, &str)]) -> Controller {
        let logs = LogDir::new("sae-controller");
        let mut command = Command::new(env!("CARGO_BIN_EXE_sae-controller"));
        for (key, _) in std::env::vars_os() {
            if key.to_string_lossy().starts_with("ALIBABA_CLOUD_") {
                command.env_remove(&key);
            }
        }
        command
            .env_remove("SAE_ENDPOINT")
            .env_remove("WATCH_NAMESPACE")
            .env("KUBECONFIG", kubeconfig);
        // Plain text logs: tracing-subscriber writes colour codes even into a file otherwise.
        command.env("NO_COLOR", "1");
        if std::env::var_os("RUST_LOG").is_none() {
            command.env("RUST_LOG", "info,sae_controller=debug");
        }
        command.envs(env.iter().copied());

        let mut all_args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
        let harness_probe_port = bind_any_port(&mut all_args, "--health-probe-bind-address");
        let harness_metrics_port = bind_any_port(&mut all_args, "--metrics-bind-address");
        command
            .args(&all_args)
            .stdout(logs.writer())
            .stderr(logs.writer());

        let child = spawn_guarded(&mut command, "sae-controller");
        Controller {
            child,
            harness_probe_port,
            harness_metrics_port,
            logs,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGKILL, as a crash would: no shutdown code runs. Waits until the process is gone.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM (graceful shutdown); true if the process exited within `timeout`.
    pub fn terminate(&mut self, timeout: Duration) -> bool {
        if matches!(self.child.try_wait(), Ok(Some(_))) {
            return true;
        }
        send_signal(self.child.id(), "TERM");
        wait_timeout(&mut self.child, timeout)
    }

    /// True while the process has not exited.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Everything the controller printed so far (stdout and stderr).
    pub fn logs(&self) -> String {
        self.logs.read()
    }

    pub fn log_path(&self) -> &Path {
        &self.logs.log
    }

    /// Polls the log until it contains `needle`; true if it did within `timeout`.
    pub fn wait_for_log(&self, needle: &str, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            if self.logs().contains(needle) {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// `http://ADDR` of the `/healthz` and `/readyz` server, when the harness chose the address;
    /// waits for the start-up line that names the port.
    pub fn probe_url(&self) -> Option<String> {
        self.harness_probe_port
            .then(|| self.bound_url("probe_address"))
    }

    /// `http://ADDR` of the `/metrics` server, when the harness chose the address.
    pub fn metrics_url(&self) -> Option<String> {
        self.harness_metrics_port
            .then(|| self.bound_url("metrics_address"))
    }

    /// Reads `FIELD=ADDR` (text logs) or `"FIELD":"ADDR"` (JSON logs) from the start-up line.
    fn bound_url(&self, field: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let logs = self.logs();
            if let Some(address) = logs.find(field).map(|at| {
                logs[at + field.len()..]
                    .trim_start_matches(['=', '"', ':'])
                    .split(|c: char| !(c.is_ascii_digit() || c == '.' || c == ':'))
                    .next()
                    .unwrap_or_default()
                    .to_string()
            }) {
                return format!("http://{address}");
            }
            assert!(
                Instant::now() < deadline,
                "the controller never logged its {field}:\n{}",
                tail(&self.logs.log, 40)
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Controller {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Adds `FLAG=127.0.0.1:0` unless `args` already set FLAG; true when it did.
fn bind_any_port(args: &mut Vec<String>, flag: &str) -> bool {
    let given = args
        .iter()
        .any(|a| a == flag || a.starts_with(&format!("{flag}=")));
    if !given {
        args.push(format!("{flag}=127.0.0.1:0"));
    }
    !given
}
