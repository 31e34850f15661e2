//! Proves the test harness and the manifests in deploy/ against a real kube-apiserver v1.20.2:
//! the server answers, the CRD is installed and Established, RBAC really limits the controller's
//! identity to what deploy/ grants, the samples are accepted and invalid specs are refused by the
//! API server's schema validation.

mod support;

use k8s_openapi::api::core::v1::{Pod, Secret};
use kube::api::{Api, ApiResource, DeleteParams, DynamicObject, GroupVersionKind, ListParams};
use serde_json::{Value, json};
use support::{CONTROLLER_USER, CRD_NAME, ControlPlane};

fn saedel_resource() -> ApiResource {
    ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("sae.ops.dev", "v1alpha1", "SaeInstanceDeletion"),
        "saeinstancedeletions",
    )
}

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[tokio::test]
async fn api_server_answers_as_admin() {
    let cp = ControlPlane::shared();
    let version: Value =
        serde_json::from_str(&cp.kubectl_ok(&["get", "--raw", "/version"])).unwrap();
    assert_eq!(
        version["gitVersion"], "v1.20.2",
        "unexpected server version: {version}"
    );

    let client = cp.admin_client().await;
    let namespaces: Api<k8s_openapi::api::core::v1::Namespace> = Api::all(client.clone());
    let names: Vec<String> = namespaces
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter_map(|n| n.metadata.name)
        .collect();
    assert!(
        names.iter().any(|n| n == "sae-system"),
        "deploy/ should have created sae-system: {names:?}"
    );

    let ns = cp.create_namespace("Smoke_Test");
    assert!(
        ns.starts_with("smoke-test-"),
        "namespace name is not DNS-safe: {ns}"
    );
    let second = cp.create_namespace("Smoke_Test");
    assert_ne!(ns, second, "namespace names must be unique");
    // The admin can create and read objects of the CRD in it.
    let api: Api<DynamicObject> = Api::namespaced_with(client, &ns, &saedel_resource());
    let obj: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "sae.ops.dev/v1alpha1", "kind": "SaeInstanceDeletion",
        "metadata": {"name": "smoke"},
        "spec": {"regionId": "cn-hangzhou", "appId": "demo-app", "instanceIds": ["i-1"]}
    }))
    .unwrap();
    api.create(&Default::default(), &obj)
        .await
        .expect("admin creates a SaeInstanceDeletion");
    let got = api.get("smoke").await.unwrap();
    // Defaults come from the schema, filled by the API server.
    assert_eq!(
        got.data["spec"]["dryRun"],
        json!(false),
        "schema defaults not applied: {:?}",
        got.data
    );
    assert_eq!(
        got.data["spec"]["activeDeadlineSeconds"],
        json!(3600),
        "{:?}",
        got.data
    );
    assert_eq!(
        got.data["spec"]["retry"]["maxAttempts"],
        json!(10),
        "{:?}",
        got.data
    );
}

#[test]
fn crd_is_established_with_short_name() {
    let cp = ControlPlane::shared();
    let crd: Value =
        serde_json::from_str(&cp.kubectl_ok(&["get", "crd", CRD_NAME, "-o", "json"])).unwrap();
    let names = &crd["spec"]["names"];
    assert_eq!(names["kind"], "SaeInstanceDeletion");
    assert_eq!(names["shortNames"], json!(["saedel"]), "{names}");
    assert_eq!(crd["spec"]["scope"], "Namespaced");
    let established = crd["status"]["conditions"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|c| c["type"] == "Established" && c["status"] == "True");
    assert!(established, "CRD not Established: {}", crd["status"]);
    // The short name resolves through discovery, as users will type it.
    let out = cp.kubectl(&["get", "saedel", "--all-namespaces"]);
    assert!(
        out.status.success(),
        "kubectl get saedel failed: {}",
        stderr(&out)
    );
}

/// `kubectl auth can-i` as the controller itself (SelfSubjectAccessReview): true for "yes".
fn controller_can(cp: &ControlPlane, args: &[&str]) -> bool {
    let mut full = vec!["auth", "can-i"];
    full.extend_from_slice(args);
    let out = cp.kubectl_as(cp.controller_kubeconfig(), &full);
    let answer = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    match answer.as_str() {
        "yes" => true,
        "no" => false,
        _ => panic!(
            "kubectl auth can-i {} gave {answer:?}: {}",
            args.join(" "),
            stderr(&out)
        ),
    }
}

#[test]
fn controller_identity_has_exactly_the_rbac_of_deploy() {
    let cp = ControlPlane::shared();
    let who = cp.kubectl_as(
        cp.controller_kubeconfig(),
        &["auth", "can-i", "--list", "-n", "default"],
    );
    assert!(who.status.success(), "{}", stderr(&who));

    let allowed: &[&[&str]] = &[
        &["get", "saeinstancedeletions.sae.ops.dev", "-A"],
        &["list", "saeinstancedeletions.sae.ops.dev", "-A"],
        &["watch", "saeinstancedeletions.sae.ops.dev", "-A"],
        &[
            "get",
            "saeinstancedeletions.sae.ops.dev",
            "--subresource=status",
            "-n",
            "team-a",
        ],
        &[
            "update",
            "saeinstancedeletions.sae.ops.dev",
            "--subresource=status",
            "-n",
            "team-a",
        ],
        &[
            "patch",
            "saeinstancedeletions.sae.ops.dev",
            "--subresource=status",
            "-n",
            "team-a",
        ],
        &["get", "secrets", "-n", "team-a"],
        &["create", "events.events.k8s.io", "-n", "team-a"],
        &["patch", "events.events.k8s.io", "-n", "team-a"],
        &["get", "leases.coordination.k8s.io", "-n", "sae-system"],
        &["create", "leases.coordination.k8s.io", "-n", "sae-system"],
        &["update", "leases.coordination.k8s.io", "-n", "sae-system"],
        &["patch", "leases.coordination.k8s.io", "-n", "sae-system"],
    ];
    let denied: &[&[&str]] = &[
        // The spec is the user's: the controller never edits, creates or deletes objects.
        &["update", "saeinstancedeletions.sae.ops.dev", "-n", "team-a"],
        &["patch", "saeinstancedeletions.sae.ops.dev", "-n", "team-a"],
        &["create", "saeinstancedeletions.sae.ops.dev", "-n", "team-a"],
        &["delete", "saeinstancedeletions.sae.ops.dev", "-n", "team-a"],
        // Secrets: one named Secret at a time, never enumerated or changed.
        &["list", "secrets", "-n", "team-a"],
        &["watch", "secrets", "-n", "team-a"],
        &["delete", "secrets", "-n", "team-a"],
        &["update", "secrets", "-n", "team-a"],
        &["list", "pods", "-A"],
        &["get", "configmaps", "-n", "team-a"],
        &["create", "events", "-n", "team-a"], // core/v1 events: the controller uses events.k8s.io
        &["delete", "leases.coordination.k8s.io", "-n", "sae-system"],
        &["list", "leases.coordination.k8s.io", "-n", "sae-system"],
        &["create", "namespaces"],
    ];
    let mut wrong = Vec::new();
    for args in allowed {
        if !controller_can(cp, args) {
            wrong.push(format!("should be allowed: {}", args.join(" ")));
        }
    }
    for args in denied {
        if controller_can(cp, args) {
            wrong.push(format!("should be FORBIDDEN: {}", args.join(" ")));
        }
    }
    assert!(
        wrong.is_empty(),
        "RBAC of {CONTROLLER_USER} is off:\n{}",
        wrong.join("\n")
    );

    // And as the admin asking on the controller's behalf (impersonation, i.e. the authorizer itself).
    let out = cp.kubectl(&["auth", "can-i", "list", "pods", "--as", CONTROLLER_USER]);
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "no");
}

#[tokio::test]
async fn controller_requests_are_authorised_by_rbac() {
    let cp = ControlPlane::shared();
    let ns = cp.create_namespace("rbac");
    let client = cp.controller_client().await;

    let saedels: Api<DynamicObject> = Api::namespaced_with(client.clone(), &ns, &saedel_resource());
    saedels
        .list(&ListParams::default())
        .await
        .expect("the controller may list saeinstancedeletions");
    let missing = saedels.get("nope").await.expect_err("no such object");
    assert!(
        matches!(&missing, kube::Error::Api(s) if s.code == 404),
        "get is allowed, so 404: {missing:?}"
    );

    // A Secret it may read (get), but neither list nor delete.
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &ns);
    let err = secrets.get("nope").await.expect_err("no such secret");
    assert!(
        matches!(&err, kube::Error::Api(s) if s.code == 404),
        "get secrets is allowed: {err:?}"
    );
    let err = secrets
        .list(&ListParams::default())
        .await
        .expect_err("list secrets must be forbidden");
    assert!(
        matches!(&err, kube::Error::Api(s) if s.code == 403),
        "{err:?}"
    );
    let err = secrets
        .delete("nope", &DeleteParams::default())
        .await
        .expect_err("delete must be forbidden");
    assert!(
        matches!(&err, kube::Error::Api(s) if s.code == 403),
        "{err:?}"
    );

    let pods: Api<Pod> = Api::all(client);
    let err = pods
        .list(&ListParams::default())
        .await
        .expect_err("listing pods must be forbidden");
    match &err {
        kube::Error::Api(s) => {
            assert_eq!(s.code, 403, "{s:?}");
            assert!(
                s.message.contains(CONTROLLER_USER),
                "403 names the user: {}",
                s.message
            );
        }
        other => panic!("expected 403, got {other:?}"),
    }
}

#[test]
fn deployment_is_installed_locked_down() {
    let cp = ControlPlane::shared();
    let dep: Value = serde_json::from_str(&cp.kubectl_ok(&[
        "get",
        "deployment",
        "sae-controller",
        "-n",
        "sae-system",
        "-o",
        "json",
    ]))
    .unwrap();
    let pod = &dep["spec"]["template"]["spec"];
    assert_eq!(dep["spec"]["replicas"], 1);
    assert_eq!(pod["serviceAccountName"], "sae-controller");
    assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
    assert_eq!(pod["securityContext"]["runAsUser"], 65532);
    assert_eq!(
        pod["securityContext"]["seccompProfile"]["type"],
        "RuntimeDefault"
    );
    let c = &pod["containers"][0];
    assert_eq!(
        c["image"],
        format!("sae-controller:{}", env!("CARGO_PKG_VERSION"))
    );
    assert_eq!(c["securityContext"]["readOnlyRootFilesystem"], true);
    assert_eq!(c["securityContext"]["allowPrivilegeEscalation"], false);
    assert_eq!(c["securityContext"]["capabilities"]["drop"], json!(["ALL"]));
    assert_eq!(c["livenessProbe"]["httpGet"]["path"], "/healthz");
    assert_eq!(c["readinessProbe"]["httpGet"]["path"], "/readyz");
    assert!(
        c["resources"]["limits"]["memory"].is_string(),
        "memory limit: {}",
        c["resources"]
    );
    assert!(
        c["resources"]["requests"]["cpu"].is_string(),
        "cpu request: {}",
        c["resources"]
    );
    let args: Vec<&str> = c["args"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert!(
        args.contains(&"--health-probe-bind-address=0.0.0.0:8081"),
        "{args:?}"
    );
    let env = c["env"].as_array().unwrap();
    for var in [
        "ALIBABA_CLOUD_ACCESS_KEY_ID",
        "ALIBABA_CLOUD_ACCESS_KEY_SECRET",
    ] {
        let e = env
            .iter()
            .find(|e| e["name"] == var)
            .unwrap_or_else(|| panic!("{var} missing"));
        let secret_ref = &e["valueFrom"]["secretKeyRef"];
        assert_eq!(secret_ref["name"], "sae-controller-credentials", "{e}");
        assert_eq!(secret_ref["optional"], true, "{e}");
    }
}

#[test]
fn kustomizations_build() {
    let cp = ControlPlane::shared();
    let base = cp.kubectl_ok(&["kustomize", "deploy/"]);
    for kind in [
        "kind: CustomResourceDefinition",
        "kind: Namespace",
        "kind: ServiceAccount",
        "kind: ClusterRole\n",
        "kind: ClusterRoleBinding",
        "kind: Deployment",
    ] {
        assert!(
            base.contains(kind),
            "kubectl kustomize deploy/ lacks {kind:?}"
        );
    }
    let samples = cp.kubectl_ok(&["kustomize", "deploy/samples"]);
    assert_eq!(
        samples.matches("kind: SaeInstanceDeletion").count(),
        4,
        "{samples}"
    );
    assert_eq!(samples.matches("kind: Secret").count(), 1, "{samples}");
}

#[test]
fn samples_are_accepted_by_the_api_server() {
    let cp = ControlPlane::shared();
    let ns = cp.create_namespace("samples");
    let out = cp.kubectl_ok(&[
        "apply",
        "--dry-run=server",
        "--validate=false",
        "-k",
        "deploy/samples",
        "-n",
        &ns,
    ]);
    for name in [
        "demo-app-scale-in",
        "demo-app-own-credentials",
        "demo-app-dry-run",
        "no-such-app",
    ] {
        let line = format!("saeinstancedeletion.sae.ops.dev/{name} created (server dry run)");
        assert!(out.contains(&line), "missing {line:?} in:\n{out}");
    }
    assert!(
        out.contains("secret/sae-credentials-example created (server dry run)"),
        "{out}"
    );
}

fn valid_spec() -> Value {
    json!({
        "regionId": "cn-hangzhou",
        "appId": "demo-app",
        "instanceIds": ["demo-app-instance-1", "demo-app-instance-2"],
    })
}

/// Creates (server-side dry run) an object with `spec`; returns kubectl's output.
fn dry_run_create(cp: &ControlPlane, ns: &str, name: &str, spec: Value) -> std::process::Output {
    let obj = json!({
        "apiVersion": "sae.ops.dev/v1alpha1",
        "kind": "SaeInstanceDeletion",
        "metadata": {"name": name, "namespace": ns},
        "spec": spec,
    });
    // --validate=false: the verdict must come from the API server's schema, not from kubectl.
    cp.kubectl_stdin(
        &["create", "--dry-run=server", "--validate=false", "-f", "-"],
        &obj.to_string(),
    )
}

#[test]
fn invalid_specs_are_rejected_by_the_api_server() {
    let cp = ControlPlane::shared();
    let ns = cp.create_namespace("invalid");

    // The control case: the same request with a valid spec passes, so rejections below are about the field.
    let ok = dry_run_create(cp, &ns, "valid", valid_spec());
    assert!(
        ok.status.success(),
        "a valid spec was refused: {}",
        stderr(&ok)
    );

    let with = |path: &[&str], value: Value| {
        let mut spec = valid_spec();
        let mut at = &mut spec;
        for key in &path[..path.len() - 1] {
            at = at
                .as_object_mut()
                .unwrap()
                .entry(key.to_string())
                .or_insert_with(|| json!({}));
        }
        at[path[path.len() - 1]] = value;
        spec
    };
    let many: Vec<String> = (0..101).map(|i| format!("i-{i}")).collect();
    let cases: Vec<(&str, Value, &[&str])> = vec![
        (
            "bad-region",
            with(&["regionId"], json!("Hangzhou")),
            &["spec.regionId", "should match"],
        ),
        (
            "no-ids",
            with(&["instanceIds"], json!([])),
            &["spec.instanceIds", "at least 1 items"],
        ),
        (
            "too-many-ids",
            with(&["instanceIds"], json!(many)),
            &["spec.instanceIds", "at most 100 items"],
        ),
        (
            "duplicate-ids",
            with(&["instanceIds"], json!(["i-1", "i-1"])),
            &["spec.instanceIds[1]", "Duplicate value"],
        ),
        (
            "comma-in-id",
            with(&["instanceIds"], json!(["i-1,i-2"])),
            &["spec.instanceIds", "should match", "i-1,i-2"],
        ),
        (
            "short-deadline",
            with(&["activeDeadlineSeconds"], json!(10)),
            &["spec.activeDeadlineSeconds", "greater than or equal to 60"],
        ),
        (
            "zero-attempts",
            with(&["retry", "maxAttempts"], json!(0)),
            &["spec.retry.maxAttempts", "greater than or equal to 1"],
        ),
    ];
    let mut wrong = Vec::new();
    for (name, spec, expected) in cases {
        let out = dry_run_create(cp, &ns, name, spec);
        let err = stderr(&out);
        if out.status.success() {
            wrong.push(format!("{name}: ACCEPTED, should be rejected"));
        } else if !err.contains("is invalid") || !expected.iter().all(|e| err.contains(e)) {
            wrong.push(format!(
                "{name}: rejected, but stderr lacks \"is invalid\" + {expected:?}: {}",
                err.trim()
            ));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

#[tokio::test]
async fn simulator_helper_finds_the_address_and_reaches_the_admin_api() {
    let sim = support::Simulator::spawn(&[]);
    let url = sim.url().to_owned();
    assert!(url.starts_with("http://127.0.0.1:"), "{url}");
    // Any 2xx answer is fine here: the point is that the helper found the port the binary bound.
    sim.admin_get("/_sim/healthz").await;
    let ledger = sim.ledger().await;
    assert!(
        ledger.is_object(),
        "ledger should be a JSON object: {ledger}"
    );
    drop(sim);
    let refused = reqwest::Client::new()
        .get(format!("{url}/_sim/healthz"))
        .send()
        .await;
    assert!(refused.is_err(), "the simulator must be gone after drop");
}

#[tokio::test]
async fn controller_helper_runs_the_binary_as_its_service_account() {
    let cp = ControlPlane::shared();
    let ns = cp.create_namespace("ctl");
    // No object exists in `ns`, so SAE is never called: a closed port is endpoint enough.
    let mut controller = support::Controller::spawn(
        cp.controller_kubeconfig(),
        &["--namespace", &ns],
        &[("SAE_ENDPOINT", "http://127.0.0.1:9")],
    );
    // Ready means its list+watch of saeinstancedeletions succeeded under deploy/'s RBAC.
    let ready = format!(
        "{}/readyz",
        controller
            .probe_url()
            .expect("the harness chose the probe port")
    );
    let http = reqwest::Client::new();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        match http.get(&ready).send().await {
            Ok(r) if r.status().is_success() => break,
            _ if std::time::Instant::now() < deadline && controller.is_running() => {
                tokio::time::sleep(std::time::Duration::from_millis(200)).await
            }
            other => panic!(
                "controller never served {ready} ({other:?}); logs:\n{}",
                controller.logs()
            ),
        }
    }
    assert!(
        !controller.logs().is_empty(),
        "controller output is captured"
    );
    controller.kill();
    assert!(!controller.is_running(), "kill() must stop the process");
}

#[test]
fn a_taken_metrics_port_stops_the_start_with_an_error_naming_it() {
    let cp = ControlPlane::shared();
    let ns = cp.create_namespace("port");
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let address = taken.local_addr().expect("address").to_string();
    let mut controller = support::Controller::spawn(
        cp.controller_kubeconfig(),
        &["--namespace", &ns, "--metrics-bind-address", &address],
        &[("SAE_ENDPOINT", "http://127.0.0.1:9")],
    );
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while controller.is_running() {
        assert!(
            std::time::Instant::now() < deadline,
            "the controller kept running without its metrics port:\n{}",
            controller.logs()
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let logs = controller.logs();
    assert!(
        logs.contains(&format!("binding the metrics address {address}")),
        "{logs}"
    );
}
