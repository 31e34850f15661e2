//! The simulator binary against Alibaba Cloud's official Python SDK for SAE.
//!
//! If requests that the official SDK signs (ROA v1 and V3) are accepted, and refused when signed
//! with a wrong secret, the simulator verifies signatures as SAE does; the controller's own client
//! is then tested against a faithful gateway.
//!
//! Needs the venv made by `.ci/setup-python.sh` (or `SAE_SDK_PYTHON` naming a python that has the
//! SDK). Without it the test fails, never skips.

use std::io::{BufRead as _, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::Value;

const AK: &str = "AKsdkcompat";
const SECRET: &str = "sdk-compat-secret-9f2c";

/// A running simulator process, killed when dropped.
struct SimProcess {
    child: Child,
    endpoint: String,
    stderr_path: PathBuf,
    _dir: tempfile::TempDir,
}

impl Drop for SimProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl SimProcess {
    fn start(seed_name: &str, seed: &str, args: &[&str], envs: &[(&str, &str)]) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let seed_path = dir.path().join(seed_name);
        std::fs::write(&seed_path, seed).unwrap();
        let stderr_path = dir.path().join("simulator.log");
        let mut child = Command::new(env!("CARGO_BIN_EXE_sae-simulator"))
            .args(["--listen", "127.0.0.1:0", "--seed"])
            .arg(&seed_path)
            .args(args)
            .envs(envs.iter().copied())
            .env_remove("SAE_SIM_ACCESS_KEYS")
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&stderr_path).unwrap())
            .spawn()
            .expect("start sae-simulator");
        let mut first = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut first)
            .unwrap();
        let endpoint = match first.trim().strip_prefix("listening on ") {
            Some(endpoint) => endpoint.to_string(),
            None => {
                let _ = child.kill();
                let log = std::fs::read_to_string(&stderr_path).unwrap_or_default();
                panic!("sae-simulator did not start: stdout {first:?}, stderr:\n{log}");
            }
        };
        SimProcess {
            child,
            endpoint,
            stderr_path,
            _dir: dir,
        }
    }

    async fn get(&self, path: &str) -> Value {
        let resp = reqwest::get(format!("{}{path}", self.endpoint))
            .await
            .unwrap();
        assert!(resp.status().is_success(), "{path}: {}", resp.status());
        serde_json::from_str(&resp.text().await.unwrap()).unwrap()
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.stderr_path).unwrap_or_default()
    }
}

fn sdk_python() -> PathBuf {
    if let Some(python) = std::env::var_os("SAE_SDK_PYTHON") {
        return PathBuf::from(python);
    }
    let cache = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".cache")))
        .expect("HOME or XDG_CACHE_HOME must be set");
    let python = cache.join("sae-controller/venv/bin/python");
    assert!(
        python.exists(),
        "no Python with the SAE SDK at {}: run .ci/setup-python.sh (or set SAE_SDK_PYTHON)",
        python.display()
    );
    python
}

#[tokio::test]
async fn official_python_sdk_is_accepted_with_the_right_secret_and_refused_with_a_wrong_one() {
    let python = sdk_python();
    let seed = serde_json::json!({
        "accessKeys": [{"accessKeyId": AK, "accessKeySecret": SECRET}],
        "apps": [{"appId": "app-sdk", "groups": [{"groupId": "g-1", "instanceIds": ["i-1", "i-2", "i-3"]}]}]
    });
    // Short change orders: the script waits for the first to end before the second deletion.
    let sim = SimProcess::start(
        "seed.json",
        &seed.to_string(),
        &["--change-order-seconds", "0.3"],
        &[],
    );
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/sdk/check_sdk.py");
    let output = tokio::task::spawn_blocking({
        let endpoint = sim.endpoint.clone();
        move || {
            Command::new(&python)
                .args([script, &endpoint, AK, SECRET, "app-sdk", "i-1,i-2"])
                .output()
        }
    })
    .await
    .unwrap()
    .expect("run check_sdk.py");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "check_sdk.py failed ({}):\n{stdout}\n{stderr}\nsimulator log:\n{}",
        output.status,
        sim.log()
    );
    assert!(stdout.contains("all SDK checks passed"), "{stdout}");

    let ledger = sim.get("/_sim/ledger").await;
    let requests = ledger["requests"].as_array().unwrap();
    for version in ["v1", "v3"] {
        let deletes: Vec<&Value> = requests
            .iter()
            .filter(|r| r["operation"] == "DeleteInstances" && r["signatureVersion"] == version)
            .collect();
        let accepted: Vec<&&Value> = deletes
            .iter()
            .filter(|r| r["verified"] == true && r["committed"] == true)
            .collect();
        let refused: Vec<&&Value> = deletes
            .iter()
            .filter(|r| r["verified"] == false && r["code"] == "SignatureDoesNotMatch")
            .collect();
        assert_eq!(
            (accepted.len(), refused.len(), deletes.len()),
            (1, 1, 2),
            "{version}: {deletes:?}"
        );
        assert!(
            requests
                .iter()
                .any(|r| r["operation"] == "DescribeChangeOrder"
                    && r["signatureVersion"] == version
                    && r["verified"] == true),
            "{version}: the SDK's DescribeChangeOrder was verified"
        );
    }
    let deletions = ledger["deletions"].as_array().unwrap();
    let deleted: Vec<&Value> = deletions.iter().map(|d| &d["instanceIds"][0]).collect();
    assert_eq!(deleted, ["i-1", "i-2"]);
    assert!(deletions.iter().all(|d| d["finalStatus"] == 2));
    let apps = sim.get("/_sim/apps/app-sdk").await;
    assert_eq!(apps["groups"][0]["instanceIds"], serde_json::json!(["i-3"]));

    let log = sim.log();
    assert!(
        log.contains("DeleteInstances"),
        "one log line per request:\n{log}"
    );
    assert!(
        !log.contains(SECRET),
        "the secret leaked into the simulator log"
    );
    assert!(
        !ledger.to_string().contains(SECRET),
        "the secret leaked into the ledger"
    );
}

#[tokio::test]
async fn binary_reads_a_yaml_seed_flags_and_environment() {
    let seed = "\
accessKeys:
  - accessKeyId: AKyaml
    accessKeySecret: yaml-secret
apps:
  - appId: app-yaml
    groups:
      - groupId: g-y
        instanceIds: [i-y1, i-y2]
faults:
  - appId: app-yaml
    faults:
      - kind: upgrading
        seconds: 30
";
    let sim = SimProcess::start(
        "seed.yaml",
        seed,
        &[
            "--requests-per-minute",
            "7",
            "--access-key",
            "AKflag:flag-secret",
            "--log-format",
            "json",
        ],
        &[("SAE_SIM_LISTEN", "ignored-because-the-flag-wins:1")],
    );
    let config = sim.get("/_sim/config").await;
    assert_eq!(config["requestsPerMinute"], 7);
    assert_eq!(config["maxSkewSeconds"], 900);
    assert_eq!(config["changeOrderSeconds"], 2.0);
    assert_eq!(
        config["accessKeyIds"],
        serde_json::json!(["AKflag", "AKyaml"])
    );
    let text = config.to_string();
    assert!(
        !text.contains("yaml-secret") && !text.contains("flag-secret"),
        "{text}"
    );
    let app = sim.get("/_sim/apps/app-yaml").await;
    assert_eq!(
        app["groups"][0]["instanceIds"],
        serde_json::json!(["i-y1", "i-y2"])
    );
    assert_eq!(app["faults"][0]["kind"], "upgrading");

    // An unsigned call is refused and logged as one JSON line.
    let resp = reqwest::get(format!(
        "{}/pop/v1/sam/app/describeApplicationGroups?AppId=app-yaml",
        sim.endpoint
    ))
    .await
    .unwrap();
    assert_eq!(resp.status(), 400);
    tokio::time::sleep(Duration::from_millis(100)).await;
    let log = sim.log();
    let line = log
        .lines()
        .find(|l| l.contains("describeApplicationGroups"))
        .unwrap_or_else(|| panic!("no log line:\n{log}"));
    let parsed: Value =
        serde_json::from_str(line).unwrap_or_else(|e| panic!("not a JSON log line ({e}): {line}"));
    assert_eq!(parsed["fields"]["code"], "InvalidParameter.NotEmpty");
}

#[test]
fn binary_refuses_a_broken_seed_with_a_clear_message() {
    let dir = tempfile::tempdir().unwrap();
    let seed = dir.path().join("seed.json");
    std::fs::write(
        &seed,
        r#"{"apps": [{"appId": "a", "groups": [{"groupId": "g", "instanceIds": ["i", "i"]}]}]}"#,
    )
    .unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_sae-simulator"))
        .args(["--listen", "127.0.0.1:0", "--seed"])
        .arg(&seed)
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("appears twice"), "{stderr}");
}
