//! End to end for the `kubectl sae` plugin: the real binary, with the admin kubeconfig, against a
//! real kube-apiserver + etcd, the `sae-controller` binary and `sae-simulator` as SAE (one
//! [`World`] per test). What the plugin prints and its exit status are asserted, and the cluster
//! is checked independently (objects and their statuses) where the plugin claims something.

mod support;

use std::process::{Command, Output, Stdio};
use std::time::Duration;

use serde_json::{Value, json};
use support::world::{REGION, Setup, World, app, fast_retry, strings};

/// Runs the plugin in the world's namespace as the cluster admin, stdout piped (not a terminal).
async fn plugin(w: &World, args: &[&str]) -> Output {
    plugin_as(w, w.cp.admin_kubeconfig(), args).await
}

/// [`plugin`] with another identity's kubeconfig.
async fn plugin_as(w: &World, kubeconfig: &std::path::Path, args: &[&str]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_kubectl-sae"));
    cmd.arg("--kubeconfig")
        .arg(kubeconfig)
        .args(["-n", &w.ns])
        .args(args)
        .stdin(Stdio::null());
    tokio::task::spawn_blocking(move || cmd.output().expect("run kubectl-sae"))
        .await
        .unwrap()
}

/// Runs the plugin inside a pseudo-terminal (Python's pty module), so it sees a terminal.
async fn plugin_on_a_terminal(w: &World, args: &[&str]) -> Output {
    const SPAWN: &str =
        "import os, pty, sys; sys.exit(os.waitstatus_to_exitcode(pty.spawn(sys.argv[1:])))";
    let mut cmd = Command::new("python3");
    cmd.args([
        "-c",
        SPAWN,
        env!("CARGO_BIN_EXE_kubectl-sae"),
        "--kubeconfig",
    ])
    .arg(w.cp.admin_kubeconfig())
    .args(["-n", &w.ns])
    .args(args)
    .stdin(Stdio::null());
    tokio::task::spawn_blocking(move || {
        cmd.output()
            .expect("python3 is needed for the pseudo-terminal test (.ci/run installs it)")
    })
    .await
    .unwrap()
}

fn text(out: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn code(out: &Output) -> i32 {
    out.status.code().expect("exited, not killed")
}

/// Every needle appears in `haystack`, in this order.
fn assert_in_order(haystack: &str, needles: &[&str]) {
    let mut from = 0;
    for needle in needles {
        match haystack[from..].find(needle) {
            Some(i) => from += i + needle.len(),
            None => {
                panic!("{needle:?} missing (or out of order) after byte {from} in:\n{haystack}")
            }
        }
    }
}

/// `kubectl sae … | head`: the reader goes away before the plugin is done writing. The plugin
/// stops quietly with status 0 (no panic, no error), as other command-line tools do. The read end
/// is closed before the plugin starts, so every write fails with a closed pipe.
#[test]
fn a_closed_pipe_ends_the_output_quietly_with_status_0() {
    for args in [&["completion", "bash"][..], &["--help"][..]] {
        let (reader, writer) = std::io::pipe().expect("a pipe");
        drop(reader);
        let out = Command::new(env!("CARGO_BIN_EXE_kubectl-sae"))
            .args(args)
            .stdin(Stdio::null())
            .stdout(writer)
            .stderr(Stdio::piped())
            .output()
            .expect("run kubectl-sae");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
        assert_eq!(out.status.code(), Some(0), "{args:?}: {stderr}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delete_wait_succeeds_with_exit_0_and_plain_lines_when_piped() {
    let w = World::start("cli-ok", vec![app("app-ok", &["i-1", "i-2", "i-3"])]).await;
    let out = plugin(
        &w,
        &[
            "delete",
            "--app",
            "app-ok",
            "--region",
            REGION,
            "i-1",
            "i-2",
            "--wait",
            "--timeout",
            "60s",
        ],
    )
    .await;
    let (stdout, stderr) = text(&out);
    assert_eq!(code(&out), 0, "{stdout}\n{stderr}");
    let name = stdout.lines().next().unwrap().to_string();
    assert!(
        name.starts_with("app-ok-"),
        "generated name first: {stdout}"
    );
    assert_in_order(
        &stdout,
        &[
            "sending DeleteInstances (attempt 1)",
            "succeeded (Succeeded)",
            &format!("{name} Succeeded (Succeeded) after"),
        ],
    );
    // Piped: no live line, no terminal control, each transition once.
    assert!(
        !stdout.contains('\r') && !stdout.contains('\x1b'),
        "{stdout:?}"
    );
    let lines: Vec<&str> = stdout.lines().collect();
    let mut unique = lines.clone();
    unique.dedup();
    assert_eq!(lines, unique, "a transition printed twice");
    // The cluster agrees.
    let s = w.status(&name).await;
    assert_eq!(s["phase"], "Succeeded", "{s:#}");
    assert_eq!(w.committed_deletes("app-ok").await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delete_wait_to_a_failure_exits_1_with_the_reason_and_what_to_do() {
    let w = World::start("cli-fail", vec![app("app-real", &["i-1"])]).await;
    let out = plugin(
        &w,
        &[
            "delete",
            "--app",
            "app-missing",
            "--region",
            REGION,
            "i-1",
            "--name",
            "nope",
            "--wait",
        ],
    )
    .await;
    let (stdout, stderr) = text(&out);
    assert_eq!(code(&out), 1, "{stdout}\n{stderr}");
    assert!(
        stdout.contains("nope Failed (ApplicationNotFound)"),
        "{stdout}"
    );
    assert!(
        stdout.contains("What to do: SAE does not know this app id"),
        "{stdout}"
    );

    let described = plugin(&w, &["describe", "nope"]).await;
    let (story, _) = text(&described);
    assert_eq!(code(&described), 0);
    assert_in_order(
        &story,
        &[
            "Phase:        Failed (ApplicationNotFound)",
            "Timeline:",
            "created",
            "attempt 1",
            "outcome: Failed (ApplicationNotFound)",
            "what to do:",
        ],
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_is_refused_before_anything_is_created() {
    let w = World::start("cli-bad", vec![]).await;
    let cases: Vec<Vec<&str>> = vec![
        vec!["delete", "--app", "a", "--region", REGION],
        vec!["delete", "--app", "a", "--region", "Hangzhou", "i-1"],
        vec!["delete", "--app", "a", "--region", REGION, "i-1", "i-1"],
        vec!["delete", "--app", "a", "--region", REGION, "i-1,i-2"],
        vec![
            "delete",
            "--app",
            "a",
            "--region",
            REGION,
            "i-1",
            "--deadline",
            "30s",
        ],
        vec![
            "delete",
            "--app",
            "a",
            "--region",
            REGION,
            "i-1",
            "--deadline",
            "5",
        ],
        vec![
            "delete",
            "--app",
            "a",
            "--region",
            REGION,
            "i-1",
            "--name",
            "Not_A_Name",
        ],
        vec![
            "delete",
            "--app",
            "a",
            "--region",
            REGION,
            "i-1",
            "--timeout",
            "5s",
        ],
        vec!["check", "--app", "", "--region", REGION, "i-1"],
    ];
    for args in cases {
        let out = plugin(&w, &args).await;
        let (stdout, stderr) = text(&out);
        assert_eq!(code(&out), 3, "{args:?}: {stdout}\n{stderr}");
        assert!(stdout.is_empty(), "{args:?} printed a name: {stdout}");
        assert!(stderr.contains("error"), "{args:?}: {stderr}");
    }
    assert!(w.statuses().await.is_empty(), "an object was created");
    let ids: Vec<String> = (0..101).map(|i| format!("i-{i}")).collect();
    let mut args = vec!["delete", "--app", "a", "--region", REGION];
    args.extend(ids.iter().map(String::as_str));
    let out = plugin(&w, &args).await;
    assert_eq!(code(&out), 3);
    assert!(text(&out).1.contains("at most 100"), "{:?}", text(&out));
    assert!(w.statuses().await.is_empty(), "an object was created");
}

/// Slow change orders: a timeout (exit 2), the line of an app in `get`, and the live line on a
/// terminal.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_change_orders_time_out_queue_up_and_show_a_live_line_on_a_terminal() {
    let setup = Setup {
        simulator_args: strings(&[
            "--access-key",
            &format!("{}:{}", support::world::AK, support::world::SK),
            "--change-order-seconds",
            "40",
        ]),
        ..Setup::default()
    };
    let w = World::start_with(
        "cli-slow",
        vec![app("app-a", &["a-1", "a-2"]), app("app-b", &["b-1"])],
        setup,
    )
    .await;

    let out = plugin(
        &w,
        &[
            "delete",
            "--app",
            "app-a",
            "--region",
            REGION,
            "a-1",
            "--name",
            "a-first",
            "--wait",
            "--timeout",
            "4s",
        ],
    )
    .await;
    let (stdout, stderr) = text(&out);
    assert_eq!(code(&out), 2, "{stdout}\n{stderr}");
    assert!(
        stdout.contains("timed out after 4s: a-first is still"),
        "{stdout}"
    );
    assert!(stdout.contains("The object keeps going"), "{stdout}");
    let s = w
        .wait_for("a-first", "InProgress", Duration::from_secs(30), |s| {
            s["phase"] == "InProgress"
        })
        .await;
    assert!(s["changeOrderId"].is_string(), "{s:#}");

    for (name, app_id, id) in [("a-second", "app-a", "a-2"), ("b-only", "app-b", "b-1")] {
        let out = plugin(
            &w,
            &[
                "delete", "--app", app_id, "--region", REGION, id, "--name", name,
            ],
        )
        .await;
        assert_eq!(code(&out), 0, "{:?}", text(&out));
        assert_eq!(text(&out).0.trim(), name);
    }
    w.wait_for("a-second", "queued", Duration::from_secs(30), |s| {
        s["phase"] == "Pending"
    })
    .await;
    w.wait_for("b-only", "InProgress", Duration::from_secs(30), |s| {
        s["phase"] == "InProgress"
    })
    .await;

    let out = plugin(&w, &["get"]).await;
    let (table, _) = text(&out);
    assert_eq!(code(&out), 0);
    assert_in_order(
        &table,
        &[
            "NAME",
            "PLACE",
            "APP app-a (cn-hangzhou)",
            "a-first",
            "holds app",
            "InProgress",
            "a-second",
            "1",
            "Pending",
            "APP app-b (cn-hangzhou)",
            "b-only",
            "holds app",
        ],
    );
    let out = plugin(&w, &["ls", "--app", "app-a", "-o", "json"]).await;
    let doc: Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(doc["apps"].as_array().unwrap().len(), 1, "{doc:#}");
    let places: Vec<(&str, &str)> = doc["apps"][0]["objects"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| (o["name"].as_str().unwrap(), o["place"].as_str().unwrap()))
        .collect();
    assert_eq!(places, vec![("a-first", "holds app"), ("a-second", "1")]);
    let (wide, _) = text(&plugin(&w, &["get", "-o", "wide"]).await);
    assert!(
        wide.contains("REASON") && wide.contains("WaitingForApplication"),
        "{wide}"
    );

    // On a terminal: the live line redrawn in place, then the timeout.
    let out = plugin_on_a_terminal(&w, &["wait", "a-second", "--timeout", "3s"]).await;
    let (screen, stderr) = text(&out);
    assert_eq!(code(&out), 2, "{screen:?}\n{stderr}");
    assert!(
        screen.contains("\r\x1b[2Ka-second … queued behind"),
        "{screen:?}"
    );
    assert!(
        screen.matches("\r\x1b[2K").count() >= 3,
        "redrawn in place: {screen:?}"
    );
    assert!(screen.contains("timed out after 3s"), "{screen:?}");
    // Piped, the same wait prints plain lines only.
    let (plain, _) = text(&plugin(&w, &["wait", "a-second", "--timeout", "2s"]).await);
    assert!(
        !plain.contains('\r') && !plain.contains('\x1b'),
        "{plain:?}"
    );
    assert!(plain.contains("queued behind"), "{plain}");
}

/// A lost answer on the first object, the second queued behind it and refused twice: describe
/// names each step in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn describe_tells_a_lost_answer_a_wait_in_line_and_retries_in_order() {
    let setup = Setup {
        simulator_args: strings(&[
            "--access-key",
            &format!("{}:{}", support::world::AK, support::world::SK),
            "--change-order-seconds",
            "3",
        ]),
        // The zone SAE writes change-order times in is stated, so the lost answer can be looked
        // for at once (otherwise the controller learns it from an answered deletion first), and
        // lists are trusted after 2 s instead of 10.
        controller_args: strings(&[
            "--sae-create-time-offset",
            "+08:00",
            "--sae-read-settle-seconds",
            "2",
            "--sae-timeout-seconds",
            "2",
        ]),
    };
    let w = World::start_with("cli-story", vec![app("app-s", &["i-1", "i-2"])], setup).await;
    w.fault(
        "app-s",
        json!([
            { "kind": "ambiguous", "times": 1 },
            { "kind": "error", "code": "Application.ChangerOrderRunning", "times": 2 }
        ]),
    )
    .await;
    // Fast retries so the refusals pass quickly; the spec's retry block is not a plugin flag, so
    // the first object comes from the plugin and the second from kubectl with fast_retry.
    let out = plugin(
        &w,
        &[
            "delete", "--app", "app-s", "--region", REGION, "i-1", "--name", "first",
        ],
    )
    .await;
    assert_eq!(code(&out), 0, "{:?}", text(&out));
    w.wait_for("first", "sent", Duration::from_secs(30), |s| {
        s["attempts"] == 1
    })
    .await;
    w.create("second", "app-s", &["i-2"], fast_retry());

    let out = plugin(&w, &["wait", "second", "--timeout", "120s"]).await;
    let (followed, stderr) = text(&out);
    assert_eq!(code(&out), 0, "{followed}\n{stderr}");
    assert_in_order(
        &followed,
        &[
            "queued behind",
            "refused by SAE (Application.ChangerOrderRunning",
            "succeeded",
        ],
    );
    w.wait_terminal("first", Duration::from_secs(60)).await;

    let (first, _) = text(&plugin(&w, &["describe", "first"]).await);
    assert_in_order(
        &first,
        &[
            "Timeline:",
            "created",
            "attempt 1",
            "answer lost",
            "checked until",
            "outcome: Succeeded",
        ],
    );
    let (second, _) = text(&plugin(&w, &["describe", "second"]).await);
    let behind = format!("waited for the app behind {}/first", w.ns);
    assert_in_order(
        &second,
        &[
            "Timeline:",
            "created",
            &behind,
            "attempt 1",
            "SAE refused it without executing it",
            "attempt 2",
            "SAE refused it without executing it",
            "attempt 3",
            "change order",
            "outcome: Succeeded",
        ],
    );
    assert_eq!(w.committed_deletes("app-s").await, 2);
}

/// A world whose change orders take 60 s, and the plugin's answer to creating object `name`
/// deleting `instance` of `app_id` there (the object stays unfinished for a minute).
async fn slow_world(prefix: &str, app_id: &str, instance: &str, name: &str) -> (World, Output) {
    let setup = Setup {
        simulator_args: strings(&[
            "--access-key",
            &format!("{}:{}", support::world::AK, support::world::SK),
            "--change-order-seconds",
            "60",
        ]),
        ..Setup::default()
    };
    let w = World::start_with(prefix, vec![app(app_id, &[instance])], setup).await;
    let out = plugin(
        &w,
        &[
            "delete", "--app", app_id, "--region", REGION, instance, "--name", name,
        ],
    )
    .await;
    (w, out)
}

/// The object is deleted while `wait` follows it: the plugin says so and exits 3 promptly,
/// instead of waiting for an object that will never end.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wait_ends_with_exit_3_when_the_object_is_deleted() {
    let (w, out) = slow_world("cli-gone", "app-g", "g-1", "gone").await;
    let (stdout, stderr) = text(&out);
    assert_eq!(code(&out), 0, "{stdout}\n{stderr}");
    assert_eq!(stdout.trim(), "gone");
    // Which policy admits it, on stderr (stdout stays the name alone).
    assert!(
        stderr.contains("policies: no SaeDeletionPolicy exists: admitted unless"),
        "{stderr}"
    );
    let started = std::time::Instant::now();
    let (out, deleted) = tokio::join!(plugin(&w, &["wait", "gone", "--timeout", "90s"]), async {
        tokio::time::sleep(Duration::from_secs(3)).await;
        w.kubectl(&["delete", "saedel", "gone"])
    });
    assert!(deleted.status.success(), "{deleted:?}");
    let (stdout, stderr) = text(&out);
    assert_eq!(code(&out), 3, "{stdout}\n{stderr}");
    assert!(stderr.contains("the object was deleted"), "{stderr}");
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "took {:?}",
        started.elapsed()
    );
}

/// A person who may read objects but not watch them (user `test-oncall`, first with `get` only,
/// then with `get` and `list`): `kubectl sae wait` cannot follow, and says so with exit 3 at once
/// (the refused initial list, then the refused watch itself), instead of waiting on a watch that
/// the API server will refuse forever (the watcher would retry it without a word).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wait_without_watch_permission_exits_3_at_once_saying_why() {
    let (w, out) = slow_world("cli-nowatch", "app-w", "w-1", "slow").await;
    assert_eq!(code(&out), 0, "{:?}", text(&out));

    for (verbs, proof) in [
        (&["get"][..], &["get", "saedel", "slow"][..]),
        (&["get", "list"][..], &["get", "saedel"][..]),
    ] {
        let role = json!({
            "apiVersion": "v1",
            "kind": "List",
            "items": [
                {
                    "apiVersion": "rbac.authorization.k8s.io/v1",
                    "kind": "Role",
                    "metadata": { "name": "oncall-no-watch", "namespace": w.ns },
                    "rules": [{
                        "apiGroups": ["sae.ops.dev"],
                        "resources": ["saeinstancedeletions"],
                        "verbs": verbs,
                    }],
                },
                {
                    "apiVersion": "rbac.authorization.k8s.io/v1",
                    "kind": "RoleBinding",
                    "metadata": { "name": "oncall-no-watch", "namespace": w.ns },
                    "roleRef": { "apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "oncall-no-watch" },
                    "subjects": [{ "apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": support::ONCALL_USER }],
                },
            ],
        });
        let applied = w.cp.kubectl_stdin(&["apply", "-f", "-"], &role.to_string());
        assert!(applied.status.success(), "{applied:?}");
        // The grant reaches the authorizer within a moment: wait until it shows.
        let start = std::time::Instant::now();
        let mut proof_args = proof.to_vec();
        proof_args.extend(["-n", &w.ns]);
        while !w
            .cp
            .kubectl_as(w.cp.oncall_kubeconfig(), &proof_args)
            .status
            .success()
        {
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "the Role with {verbs:?} never took effect"
            );
            tokio::time::sleep(Duration::from_millis(300)).await;
        }

        let started = std::time::Instant::now();
        let out = plugin_as(
            &w,
            w.cp.oncall_kubeconfig(),
            &["wait", "slow", "--timeout", "45s"],
        )
        .await;
        let (stdout, stderr) = text(&out);
        assert_eq!(code(&out), 3, "{verbs:?}: {stdout}\n{stderr}");
        assert!(
            stderr.contains("cannot follow SaeInstanceDeletion slow")
                && stderr
                    .contains("you may not list or watch SaeInstanceDeletion objects here (403)"),
            "{verbs:?}: {stderr}"
        );
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "{verbs:?}: took {:?}: a refused watch must end the wait, not the --timeout",
            started.elapsed()
        );
    }
    // `describe` needs no watch: the same person reads the story.
    let described = plugin_as(&w, w.cp.oncall_kubeconfig(), &["describe", "slow"]).await;
    let (story, stderr) = text(&described);
    assert_eq!(code(&described), 0, "{story}\n{stderr}");
    assert!(
        story.contains("Name:") && story.contains("app-w"),
        "{story}"
    );
}
