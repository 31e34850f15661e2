//! The controller's own credentials from each source of the chain, end to end: the real binary
//! against the real API server and the simulator (SAE, and the ECS metadata service). Each test
//! proves which key signed the DeleteInstances from the simulator's ledger, and that no secret of
//! that source reached the controller's log. The environment source is what every other e2e test
//! uses; RRSA is tests/rrsa.rs.

mod support;

use std::path::Path;
use std::time::Duration;

use serde_json::{Value, json};
use support::Controller;
use support::world::{World, app};

const KEY_A: (&str, &str) = ("LTAIchainKeyA", "chain-secret-A-never-printed");
const KEY_B: (&str, &str) = ("LTAIchainKeyB", "chain-secret-B-never-printed");

/// A world whose simulator knows keys A and B, with the world's own controller replaced by one
/// that has only the credentials `env` and `args` give it (`{sim}` in an argument is the
/// simulator's URL; HOME is an empty temp dir, so no developer's ~/.alibabacloud/credentials is
/// read).
async fn world(prefix: &str, args: &[&str], env: &[(&str, &str)]) -> (World, tempfile::TempDir) {
    let mut setup = support::Setup::default();
    for (id, secret) in [KEY_A, KEY_B] {
        setup
            .simulator_args
            .extend(["--access-key".to_owned(), format!("{id}:{secret}")]);
    }
    let mut w =
        World::start_with(prefix, vec![app("app-cred", &["i-1", "i-2", "i-3"])], setup).await;
    w.controller.kill();
    let home = tempfile::tempdir().expect("temp HOME");
    let sim = w.sim.url().to_owned();
    let args: Vec<String> = args.iter().map(|a| a.replace("{sim}", &sim)).collect();
    let mut all_args = vec!["--namespace", w.ns.as_str(), "--sae-endpoint", sim.as_str()];
    all_args.extend(args.iter().map(String::as_str));
    let home_path = home.path().to_str().unwrap().to_owned();
    let mut all_env = vec![("HOME", home_path.as_str())];
    all_env.extend_from_slice(env);
    w.controller = Controller::spawn(w.cp.controller_kubeconfig(), &all_args, &all_env);
    (w, home)
}

/// Deletes one instance and returns the key id that signed its DeleteInstances.
async fn delete_one(w: &World, name: &str, instance: &str) -> String {
    w.create(name, "app-cred", &[instance], json!({}));
    let status = w.wait_terminal(name, Duration::from_secs(60)).await;
    assert_eq!(
        status["phase"],
        "Succeeded",
        "{status:#}\n{}",
        w.controller.logs()
    );
    let requests: Vec<Value> = w
        .delete_requests("app-cred")
        .await
        .into_iter()
        .filter(|r| r["params"].to_string().contains(instance))
        .collect();
    assert_eq!(requests.len(), 1, "{requests:#?}");
    assert_eq!(requests[0]["verified"], true, "{:#}", requests[0]);
    requests[0]["accessKeyId"]
        .as_str()
        .expect("a key id")
        .to_owned()
}

fn assert_never_logged(w: &World, secrets: &[&str]) {
    let logs = w.controller.logs();
    for secret in secrets {
        assert!(!logs.contains(secret), "{secret:?} in the controller's log");
    }
}

/// Writes `files` into `dir` the way the kubelet updates a Secret volume: into a fresh
/// `..<timestamp>` directory, then one atomic rename of the `..data` symlink; the visible files are
/// symlinks through `..data`.
fn kubelet_write(dir: &Path, generation: u32, files: &[(&str, &str)]) {
    let version = format!("..2026_{generation:04}");
    std::fs::create_dir(dir.join(&version)).unwrap();
    for (name, value) in files {
        std::fs::write(dir.join(&version).join(name), value).unwrap();
    }
    let staged = dir.join("..data_tmp");
    let _ = std::fs::remove_file(&staged);
    std::os::unix::fs::symlink(&version, &staged).unwrap();
    std::fs::rename(&staged, dir.join("..data")).unwrap();
    for (name, _) in files {
        let link = dir.join(name);
        if std::fs::symlink_metadata(&link).is_err() {
            std::os::unix::fs::symlink(Path::new("..data").join(name), &link).unwrap();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mounted_secret_is_read_again_when_the_kubelet_rotates_it() {
    let secret_dir = tempfile::tempdir().unwrap();
    let dir_arg = format!("--credentials-dir={}", secret_dir.path().display());
    // The optional Secret does not exist yet: the volume is empty.
    let (w, _home) = world("cred-dir", &[&dir_arg], &[]).await;
    w.create("early", "app-cred", &["i-3"], json!({}));
    let status = w
        .wait_for(
            "early",
            "waiting for credentials",
            Duration::from_secs(60),
            |s| support::world::reason(s) == "CredentialsNotFound",
        )
        .await;
    assert!(
        status
            .to_string()
            .contains(&secret_dir.path().display().to_string()),
        "the message names the mount: {status:#}"
    );

    kubelet_write(
        secret_dir.path(),
        1,
        &[("accessKeyId", KEY_A.0), ("accessKeySecret", KEY_A.1)],
    );
    assert_eq!(delete_one(&w, "first", "i-1").await, KEY_A.0);
    // The waiting object picks the Secret up by itself.
    let early = w.wait_terminal("early", Duration::from_secs(90)).await;
    assert_eq!(early["phase"], "Succeeded", "{early:#}");

    // Rotation: B replaces A in the Secret, and A is revoked at SAE. No restart.
    kubelet_write(
        secret_dir.path(),
        2,
        &[("accessKeyId", KEY_B.0), ("accessKeySecret", KEY_B.1)],
    );
    w.sim
        .admin_post(
            "/_sim/access-keys",
            json!({"accessKeyId": KEY_A.0, "accessKeySecret": "revoked-secret"}),
        )
        .await;
    assert_eq!(delete_one(&w, "second", "i-2").await, KEY_B.0);
    assert!(
        w.controller
            .logs()
            .contains("the controller's default credentials changed"),
        "the rotation is logged"
    );
    assert_never_logged(&w, &[KEY_A.1, KEY_B.1]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_profile_of_the_credentials_file_is_used_and_re_read() {
    let files = tempfile::tempdir().unwrap();
    let path = files.path().join("credentials");
    let write = |team: (&str, &str)| {
        std::fs::write(
            &path,
            format!(
                "[default]\ntype = access_key\naccess_key_id = LTAIunknownToSae\naccess_key_secret = nope\n\n\
                 [team]\ntype = access_key\naccess_key_id = {}\naccess_key_secret = {}\n",
                team.0, team.1
            ),
        )
        .unwrap();
    };
    write(KEY_B);
    let file = path.to_str().unwrap().to_owned();
    let (w, _home) = world(
        "cred-file",
        &[],
        &[
            ("ALIBABA_CLOUD_CREDENTIALS_FILE", file.as_str()),
            ("ALIBABA_CLOUD_PROFILE", "team"),
        ],
    )
    .await;
    assert_eq!(delete_one(&w, "first", "i-1").await, KEY_B.0);
    // The file changes: the next call signs with what it says now.
    write(KEY_A);
    assert_eq!(delete_one(&w, "second", "i-2").await, KEY_A.0);
    assert_never_logged(&w, &[KEY_A.1, KEY_B.1, "nope"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_environment_comes_before_the_mounted_secret() {
    let secret_dir = tempfile::tempdir().unwrap();
    kubelet_write(
        secret_dir.path(),
        1,
        &[("accessKeyId", KEY_B.0), ("accessKeySecret", KEY_B.1)],
    );
    let dir_arg = format!("--credentials-dir={}", secret_dir.path().display());
    let (w, _home) = world(
        "cred-order",
        &[&dir_arg],
        &[
            ("ALIBABA_CLOUD_ACCESS_KEY_ID", KEY_A.0),
            ("ALIBABA_CLOUD_ACCESS_KEY_SECRET", KEY_A.1),
        ],
    )
    .await;
    assert_eq!(delete_one(&w, "first", "i-1").await, KEY_A.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_ecs_ram_role_comes_from_the_metadata_service_with_a_session_token() {
    let (w, _home) = world(
        "cred-ecs",
        &["--ecs-metadata-endpoint={sim}"],
        &[("ALIBABA_CLOUD_ECS_METADATA", "sae-node-role")],
    )
    .await;
    // Attached after the start: the role is read at the first use, not before.
    w.sim
        .admin_post("/_sim/ecs-role", json!({"roleName": "sae-node-role"}))
        .await;
    let key = delete_one(&w, "first", "i-1").await;
    assert!(key.starts_with("STS.ecs"), "signed with {key}");
    // Cached: a second deletion uses the same STS key without a new metadata read.
    assert_eq!(delete_one(&w, "second", "i-2").await, key);
    let role = w.sim.admin_get("/_sim/ecs-role").await;
    assert_eq!(role["issued"], 1, "{role}");
    // The simulator's secrets and tokens carry these prefixes; none may reach the log.
    assert_never_logged(&w, &["simECSsecret", "CAISsimECStoken", "simIMDS"]);
    assert!(
        w.controller.logs().contains("ECS RAM role sae-node-role"),
        "the start-up line names the source"
    );
}
