//! Test support: a real etcd + kube-apiserver v1.20.2 (RBAC on) and the project's binaries.
//!
//! Include it from an integration test with `mod support;`.
//!
//! # Control plane
//! - [`ControlPlane::shared()`] starts, on first use, ONE etcd + kube-apiserver for the whole test
//!   binary and installs `deploy/` into it with the real kubectl (`kubectl apply --validate=false -k
//!   deploy/`), then waits for both CRDs to be Established. Every later call returns the same instance.
//!   Each test should work in its own namespace: [`ControlPlane::create_namespace`].
//! - Identities: [`ControlPlane::admin_kubeconfig`] (group `system:masters`) and
//!   [`ControlPlane::controller_kubeconfig`] (user `system:serviceaccount:sae-system:sae-controller`
//!   with the ServiceAccount groups), so the controller runs with exactly the RBAC of `deploy/`;
//!   [`ControlPlane::oncall_kubeconfig`] (user `test-oncall`, allowed nothing on this project's
//!   resources until a test binds it a role: a person with less than admin rights).
//! - kubectl as admin: [`ControlPlane::kubectl`] (raw `Output`), [`ControlPlane::kubectl_ok`] (asserts
//!   success, returns stdout), [`ControlPlane::kubectl_stdin`] (feeds stdin);
//!   [`ControlPlane::kubectl_as`] with any kubeconfig.
//! - kube clients: [`ControlPlane::admin_client`], [`ControlPlane::controller_client`] (async).
//! - An outage: [`ControlPlane::stop_apiserver`] (SIGSTOP until the guard resumes it; only for a
//!   test binary of its own, tests/outage.rs).
//!
//! Binaries are looked up in `$KUBEBUILDER_ASSETS` (envtest convention: `etcd`, `kube-apiserver`,
//! `kubectl`), else in `${XDG_CACHE_HOME:-$HOME/.cache}/sae-controller/control-plane-v1.20.2/bin`,
//! which `.ci/install-control-plane.sh` fills; kubectl may also come from PATH. Missing binaries are a
//! test FAILURE (a panic naming that script), never a silent skip.
//!
//! Processes cannot outlive the test binary, even when it panics or is SIGKILLed: each has a watchdog
//! (see `process.rs`). Files live in a fresh temp dir (`sae-cp-*`, etcd's data in /dev/shm when there is
//! one), removed after the test binary exits unless `SAE_TEST_KEEP_DIRS=1`; a failed start keeps it and
//! names it in the panic, together with the tail of the apiserver log.
//!
//! # Project binaries
//! - [`Simulator::spawn`] runs `sae-simulator --listen 127.0.0.1:0 ARGS`; [`Simulator::url`],
//!   [`Simulator::admin_post`], [`Simulator::admin_get`] (async, JSON), [`Simulator::logs`].
//! - [`Controller::spawn`] runs `sae-controller ARGS` with `KUBECONFIG` set (and free ports for its
//!   metrics/probe servers unless ARGS name them); [`Controller::kill`] (SIGKILL, for crash tests),
//!   [`Controller::terminate`] (SIGTERM), [`Controller::logs`]; killed on drop. A test that panics keeps
//!   the logs and prints their tail.
//!
//! # Scenario worlds
//! [`world::World`] bundles a namespace, a simulator and a controller for one scenario, with helpers
//! to create objects, inject faults, wait for phases and read the ledger (see its module docs).
//!
//! The harness blocks (std::process, sleeps) instead of spawning tasks: each `#[tokio::test]` has its own
//! runtime, and a task bound to the first test's runtime would die with that test.
#![allow(dead_code)] // each test binary uses a different part of this module

pub mod audit;
mod binaries;
mod process;
pub mod world;

#[allow(unused_imports)] // re-exports for the test binaries that use them
pub use binaries::{Controller, Simulator};
#[allow(unused_imports)]
pub use process::free_port;
#[allow(unused_imports)]
pub use world::{Setup, World};

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use process::{is_executable, spawn_guarded, tail, which};

/// The ServiceAccount the controller runs as in `deploy/`.
pub const CONTROLLER_NAMESPACE: &str = "sae-system";
pub const CONTROLLER_USER: &str = "system:serviceaccount:sae-system:sae-controller";
/// A person with no permissions on this project's resources: tests grant exactly what they mean to.
pub const ONCALL_USER: &str = "test-oncall";
pub const CRD_NAME: &str = "saeinstancedeletions.sae.ops.dev";
/// The deletion policies' CRD, installed with the other one from `crds/`.
pub const POLICY_CRD_NAME: &str = "saedeletionpolicies.sae.ops.dev";

const READY_TIMEOUT: Duration = Duration::from_secs(60);
const APISERVER_LOG: &str = "kube-apiserver.log";
const ETCD_LOG: &str = "etcd.log";

/// One etcd + kube-apiserver, shared by all tests of a test binary.
pub struct ControlPlane {
    dir: PathBuf,
    server: String,
    kubectl: PathBuf,
    admin_kubeconfig: PathBuf,
    controller_kubeconfig: PathBuf,
    oncall_kubeconfig: PathBuf,
    // Held so the processes stay referenced; they are stopped by their watchdogs, not by Drop.
    _etcd: Child,
    _apiserver: Child,
}

static SHARED: OnceLock<Result<ControlPlane, String>> = OnceLock::new();

/// kube-apiserver stopped by [`ControlPlane::stop_apiserver`]; continued by [`Self::resume`] or
/// on drop, so a failing test never leaves it stopped for the next one.
pub struct StoppedApiserver {
    pid: Option<u32>,
}

impl StoppedApiserver {
    pub fn resume(mut self) {
        self.cont();
    }

    fn cont(&mut self) {
        if let Some(pid) = self.pid.take() {
            process::send_signal(pid, "CONT");
        }
    }
}

impl Drop for StoppedApiserver {
    fn drop(&mut self) {
        self.cont();
    }
}

impl ControlPlane {
    /// The control plane of this test binary, started on first use. A failed start is remembered, so
    /// every test reports the same cause instead of each trying (and timing out) again.
    pub fn shared() -> &'static ControlPlane {
        match SHARED.get_or_init(ControlPlane::start) {
            Ok(cp) => cp,
            Err(why) => panic!("the test control plane did not start:\n{why}"),
        }
    }

    pub fn admin_kubeconfig(&self) -> &Path {
        &self.admin_kubeconfig
    }

    pub fn controller_kubeconfig(&self) -> &Path {
        &self.controller_kubeconfig
    }

    /// User [`ONCALL_USER`]: authenticated, allowed nothing on this project's resources until a
    /// test binds it a role.
    pub fn oncall_kubeconfig(&self) -> &Path {
        &self.oncall_kubeconfig
    }

    /// `https://127.0.0.1:PORT` (self-signed certificate).
    pub fn server_url(&self) -> &str {
        &self.server
    }

    /// Stops kube-apiserver with SIGSTOP until the returned guard is resumed or dropped (SIGCONT).
    ///
    /// A stopped server is the harder outage for a client: its port stays open and connections
    /// are accepted by the kernel, but nothing is answered, so every request hangs until the
    /// client's own timeout or the server's return, and a request that reached etcd just before
    /// the stop gets its answer only afterwards. It also needs nothing to come back: same process,
    /// etcd data, port and certificates, so the kubeconfigs stay valid. Every test of the test
    /// binary shares this server, so only a test binary of its own may stop it, one test at a
    /// time (tests/outage.rs).
    pub fn stop_apiserver(&self) -> StoppedApiserver {
        let pid = self._apiserver.id();
        process::send_signal(pid, "STOP");
        StoppedApiserver { pid: Some(pid) }
    }

    /// The work dir holding kubeconfigs and logs.
    /// The process ids of etcd and kube-apiserver (for the benchmark's CPU accounting).
    pub fn pids(&self) -> (u32, u32) {
        (self._etcd.id(), self._apiserver.id())
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The repository root (where `deploy/` and `crds/` are).
    pub fn repo_root() -> &'static Path {
        Path::new(env!("CARGO_MANIFEST_DIR"))
    }

    /// kubectl as admin, from the repository root.
    pub fn kubectl(&self, args: &[&str]) -> Output {
        self.kubectl_as(&self.admin_kubeconfig, args)
    }

    /// kubectl with the given kubeconfig, from the repository root.
    pub fn kubectl_as(&self, kubeconfig: &Path, args: &[&str]) -> Output {
        self.kubectl_command(kubeconfig, args)
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", self.kubectl.display()))
    }

    /// kubectl as admin with `input` on stdin (e.g. `-f -`).
    pub fn kubectl_stdin(&self, args: &[&str], input: &str) -> Output {
        use std::io::Write as _;
        let mut child = self
            .kubectl_command(&self.admin_kubeconfig, args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", self.kubectl.display()));
        let mut stdin = child.stdin.take().expect("piped stdin");
        // Written from a thread so a kubectl that answers before reading everything cannot deadlock us.
        let input = input.to_owned();
        let writer = std::thread::spawn(move || {
            let _ = stdin.write_all(input.as_bytes());
        });
        let output = child.wait_with_output().expect("waiting for kubectl");
        let _ = writer.join();
        output
    }

    /// kubectl as admin; panics (with stderr) unless it succeeds; returns stdout.
    pub fn kubectl_ok(&self, args: &[&str]) -> String {
        let out = self.kubectl(args);
        assert!(
            out.status.success(),
            "kubectl {} failed ({}):\nstdout: {}\nstderr: {}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).expect("kubectl stdout is UTF-8")
    }

    fn kubectl_command(&self, kubeconfig: &Path, args: &[&str]) -> Command {
        let mut cmd = Command::new(&self.kubectl);
        cmd.env("KUBECONFIG", kubeconfig)
            .current_dir(Self::repo_root())
            .args(args);
        cmd
    }

    /// A kube client authenticated as admin.
    pub async fn admin_client(&self) -> kube::Client {
        client_from(&self.admin_kubeconfig).await
    }

    /// A kube client authenticated as the controller's ServiceAccount (RBAC of `deploy/` applies).
    pub async fn controller_client(&self) -> kube::Client {
        client_from(&self.controller_kubeconfig).await
    }

    /// Creates a namespace with a unique name starting with `prefix` and returns the name.
    pub fn create_namespace(&self, prefix: &str) -> String {
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        let clean: String = prefix
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() {
                    c.to_ascii_lowercase()
                } else {
                    '-'
                }
            })
            .take(40)
            .collect();
        let clean = clean.trim_matches('-');
        let clean = if clean.is_empty() { "test" } else { clean };
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let suffix = &uuid::Uuid::new_v4().simple().to_string()[..6];
        let name = format!("{clean}-{n}-{suffix}");
        self.kubectl_ok(&["create", "namespace", &name]);
        name
    }

    fn start() -> Result<ControlPlane, String> {
        let bin = assets_dir();
        let etcd_bin = bin.join("etcd");
        let apiserver_bin = bin.join("kube-apiserver");
        for b in [&etcd_bin, &apiserver_bin] {
            if !is_executable(b) {
                return Err(format!(
                    "{} is missing: run .ci/install-control-plane.sh (it builds kube-apiserver v1.20.2 \
                     and links etcd into {}), or point KUBEBUILDER_ASSETS at a folder with etcd, \
                     kube-apiserver and kubectl",
                    b.display(),
                    bin.display()
                ));
            }
        }
        let kubectl = Some(bin.join("kubectl"))
            .filter(|p| is_executable(p))
            .or_else(|| which("kubectl"))
            .ok_or_else(|| {
                format!(
                    "kubectl not found in {} nor on PATH: run .ci/install-control-plane.sh",
                    bin.display()
                )
            })?;

        let dir = tempfile::Builder::new()
            .prefix("sae-cp-")
            .tempdir()
            .map_err(|e| format!("creating a temp dir: {e}"))?
            .keep();
        // etcd fsyncs every write; on tmpfs that costs nothing, on a busy disk it slows the apiserver.
        let etcd_data = match Path::new("/dev/shm").is_dir() {
            true => tempfile::Builder::new()
                .prefix("sae-cp-etcd-")
                .tempdir_in("/dev/shm")
                .map(|d| d.keep()),
            false => Ok(dir.join("etcd-data")),
        }
        .map_err(|e| format!("creating etcd's data dir: {e}"))?;
        let keep = std::env::var_os("SAE_TEST_KEEP_DIRS").is_some_and(|v| v == "1");

        let fail = |what: String, log: &str| -> String {
            format!(
                "{what}\nwork dir (kept): {}\n--- last lines of {log} ---\n{}",
                dir.display(),
                tail(&dir.join(log), 40)
            )
        };

        // Service-account signing keys: the apiserver refuses to start without them.
        let openssl = Command::new("openssl")
            .args([
                "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=sa",
            ])
            .args(["-keyout", "sa.key", "-out", "sa.crt"])
            .current_dir(&dir)
            .stdin(Stdio::null())
            .output()
            .map_err(|e| format!("running openssl (apt-get install openssl): {e}"))?;
        if !openssl.status.success() {
            return Err(format!(
                "openssl failed: {}",
                String::from_utf8_lossy(&openssl.stderr)
            ));
        }

        let admin_token = uuid::Uuid::new_v4().simple().to_string();
        let controller_token = uuid::Uuid::new_v4().simple().to_string();
        let oncall_token = uuid::Uuid::new_v4().simple().to_string();
        let tokens = format!(
            "{admin_token},test-admin,test-admin,\"system:masters\"\n\
             {controller_token},{CONTROLLER_USER},sae-controller-uid,\
             \"system:serviceaccounts,system:serviceaccounts:{CONTROLLER_NAMESPACE}\"\n\
             {oncall_token},{ONCALL_USER},test-oncall-uid\n"
        );
        write(&dir.join("tokens.csv"), &tokens)?;

        let etcd_port = free_port();
        let etcd_peer_port = free_port();
        let api_port = free_port();
        let etcd_url = format!("http://127.0.0.1:{etcd_port}");
        let peer_url = format!("http://127.0.0.1:{etcd_peer_port}");
        let server = format!("https://127.0.0.1:{api_port}");
        let admin_kubeconfig = dir.join("admin.kubeconfig");
        let controller_kubeconfig = dir.join("controller.kubeconfig");
        let oncall_kubeconfig = dir.join("oncall.kubeconfig");
        write(
            &oncall_kubeconfig,
            &kubeconfig(&server, ONCALL_USER, &oncall_token),
        )?;
        write(
            &admin_kubeconfig,
            &kubeconfig(&server, "test-admin", &admin_token),
        )?;
        write(
            &controller_kubeconfig,
            &kubeconfig(&server, "sae-controller", &controller_token),
        )?;
        // Everything that can fail is done before the first process starts, so an early return
        // never leaves a process behind.
        let (etcd_out, etcd_err) = log_files(&dir.join(ETCD_LOG))?;
        let (api_out, api_err) = log_files(&dir.join(APISERVER_LOG))?;

        let etcd = spawn_guarded(
            Command::new(&etcd_bin)
                .arg("--data-dir")
                .arg(&etcd_data)
                .args([
                    "--listen-client-urls",
                    &etcd_url,
                    "--advertise-client-urls",
                    &etcd_url,
                ])
                .args([
                    "--listen-peer-urls",
                    &peer_url,
                    "--initial-advertise-peer-urls",
                    &peer_url,
                ])
                .args(["--initial-cluster", &format!("default={peer_url}")])
                .stdout(etcd_out)
                .stderr(etcd_err),
            "etcd",
        );

        let cert_dir = dir.join("certs");
        let apiserver = spawn_guarded(
            Command::new(&apiserver_bin)
                .arg(format!("--etcd-servers={etcd_url}"))
                .args([
                    "--bind-address=127.0.0.1",
                    &format!("--secure-port={api_port}"),
                ])
                .arg(format!("--cert-dir={}", cert_dir.display()))
                .arg(format!(
                    "--token-auth-file={}",
                    dir.join("tokens.csv").display()
                ))
                .arg("--authorization-mode=RBAC")
                .arg("--service-account-issuer=https://kubernetes.default.svc")
                .arg(format!(
                    "--service-account-key-file={}",
                    dir.join("sa.crt").display()
                ))
                .arg(format!(
                    "--service-account-signing-key-file={}",
                    dir.join("sa.key").display()
                ))
                .arg("--service-cluster-ip-range=10.0.0.0/24")
                .stdout(api_out)
                .stderr(api_err),
            "kube-apiserver",
        );

        let mut cp = ControlPlane {
            dir: dir.clone(),
            server,
            kubectl,
            admin_kubeconfig,
            controller_kubeconfig,
            oncall_kubeconfig,
            _etcd: etcd,
            _apiserver: apiserver,
        };
        let pids = [cp._etcd.id(), cp._apiserver.id()];
        let started = cp.wait_ready().and_then(|()| cp.install_deploy());
        match (&started, keep) {
            (Ok(()), false) => process::remove_after_exit(&[&dir, &etcd_data], &pids),
            // A failed start keeps the logs for the developer; etcd's data is no help and costs memory.
            _ => process::remove_after_exit(&[&etcd_data], &pids),
        }
        if let Err(e) = started {
            // Stop both now rather than at exit: a later test must not find a half-started cluster.
            for child in [&mut cp._etcd, &mut cp._apiserver] {
                let _ = child.kill();
                let _ = child.wait();
            }
            return Err(fail(e, APISERVER_LOG));
        }
        Ok(cp)
    }

    fn wait_ready(&mut self) -> Result<(), String> {
        let started = Instant::now();
        let mut last = String::new();
        while started.elapsed() < READY_TIMEOUT {
            for (name, child) in [
                ("etcd", &mut self._etcd),
                ("kube-apiserver", &mut self._apiserver),
            ] {
                if let Ok(Some(status)) = child.try_wait() {
                    return Err(format!(
                        "{name} exited early ({status}); see {name}.log in the work dir"
                    ));
                }
            }
            let out = self.kubectl(&["get", "--raw", "/readyz"]);
            if out.status.success() {
                return Ok(());
            }
            last = String::from_utf8_lossy(&out.stderr).trim().to_owned();
            std::thread::sleep(Duration::from_millis(250));
        }
        Err(format!(
            "kube-apiserver was not ready within {READY_TIMEOUT:?}; last /readyz answer: {last}"
        ))
    }

    /// Installs `deploy/` the way a user would. The Deployment never runs (no scheduler, no kubelet);
    /// applying it still proves the manifests are accepted.
    fn install_deploy(&self) -> Result<(), String> {
        let apply = self.kubectl(&["apply", "--validate=false", "-k", "deploy/"]);
        if !apply.status.success() {
            return Err(format!(
                "kubectl apply --validate=false -k deploy/ failed:\n{}{}",
                String::from_utf8_lossy(&apply.stdout),
                String::from_utf8_lossy(&apply.stderr)
            ));
        }
        // Both CRDs: the controller lists deletion policies before it reconciles anything.
        for crd in [CRD_NAME, POLICY_CRD_NAME] {
            let wait = self.kubectl(&[
                "wait",
                "--for=condition=Established",
                &format!("crd/{crd}"),
                "--timeout=60s",
            ]);
            if !wait.status.success() {
                return Err(format!(
                    "CRD {crd} not Established: {}",
                    String::from_utf8_lossy(&wait.stderr)
                ));
            }
        }
        Ok(())
    }
}

fn assets_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("KUBEBUILDER_ASSETS").filter(|d| !d.is_empty()) {
        return PathBuf::from(dir);
    }
    let cache = std::env::var_os("XDG_CACHE_HOME")
        .filter(|d| !d.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .expect("neither KUBEBUILDER_ASSETS, XDG_CACHE_HOME nor HOME is set");
    cache.join("sae-controller/control-plane-v1.20.2/bin")
}

fn kubeconfig(server: &str, user: &str, token: &str) -> String {
    format!(
        "apiVersion: v1
kind: Config
clusters:
- name: test
  cluster:
    server: {server}
    insecure-skip-tls-verify: true
users:
- name: {user}
  user:
    token: {token}
contexts:
- name: test
  context:
    cluster: test
    user: {user}
    namespace: default
current-context: test
"
    )
}

async fn client_from(path: &Path) -> kube::Client {
    let kubeconfig = kube::config::Kubeconfig::read_from(path)
        .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    let config = kube::Config::from_custom_kubeconfig(
        kubeconfig,
        &kube::config::KubeConfigOptions::default(),
    )
    .await
    .unwrap_or_else(|e| panic!("loading {}: {e}", path.display()));
    kube::Client::try_from(config)
        .unwrap_or_else(|e| panic!("building a client from {}: {e}", path.display()))
}

fn write(path: &Path, text: &str) -> Result<(), String> {
    std::fs::write(path, text).map_err(|e| format!("writing {}: {e}", path.display()))
}

/// Two handles on one new log file, for a child's stdout and stderr.
fn log_files(path: &Path) -> Result<(std::fs::File, std::fs::File), String> {
    let file =
        std::fs::File::create(path).map_err(|e| format!("creating {}: {e}", path.display()))?;
    let second = file
        .try_clone()
        .map_err(|e| format!("opening {}: {e}", path.display()))?;
    Ok((file, second))
}
