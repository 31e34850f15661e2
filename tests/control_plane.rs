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

/// `kubectl auth can-i ARGS --as USER`, asked by the admin (a SubjectAccessReview through the real
/// RBAC authorizer): true for "yes".
fn can_i(cp: &ControlPlane, user: &str, args: &[&str]) -> bool {
    let mut full = vec!["auth", "can-i"];
    full.extend_from_slice(args);
    full.extend_from_slice(&["--as", user]);
    let out = cp.kubectl(&full);
    let answer = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    match answer.as_str() {
        "yes" => true,
        "no" => false,
        _ => panic!(
            "kubectl auth can-i {} gave {answer:?}: {}",
            full.join(" "),
            stderr(&out)
        ),
    }
}

/// One row of an RBAC matrix: `kubectl auth can-i` arguments, the answer they must get, and why.
struct Can(&'static str, bool, &'static str);

/// Asks every row as `user`. Rows name `{home}`, the namespace the controller runs in (its Lease's),
/// `{ns}`, a namespace with objects it serves, and `{other}`, one it must not reach (when confined).
/// Fails listing every wrong answer; prints the matrix as a Markdown table.
fn assert_matrix(cp: &ControlPlane, user: &str, home: &str, ns: &str, rows: &[Can]) {
    let mut wrong = Vec::new();
    let mut table = String::from("| kubectl auth can-i | expected | why |\n|---|---|---|\n");
    for Can(args, allowed, why) in rows {
        let args = args
            .replace("{home}", home)
            .replace("{ns}", ns)
            .replace("{other}", "team-a");
        let words: Vec<&str> = args.split_whitespace().collect();
        let got = can_i(cp, user, &words);
        table.push_str(&format!(
            "| `{args}` | {} | {why} |\n",
            if *allowed { "yes" } else { "no" }
        ));
        if got != *allowed {
            wrong.push(format!(
                "`{args}`: expected {}, got {} ({why})",
                if *allowed { "yes" } else { "no" },
                if got { "yes" } else { "no" }
            ));
        }
    }
    println!("RBAC of {user}:\n{table}");
    assert!(
        wrong.is_empty(),
        "RBAC of {user} is off:\n{}",
        wrong.join("\n")
    );
}

/// What the controller needs (allowed) and the must-not list (denied). `cluster_wide`: the base's ClusterRole (objects and Secrets in every
/// namespace) rather than the single-namespace overlay's Role.
fn matrix(cluster_wide: bool) -> Vec<Can> {
    let mut rows = vec![
        Can(
            "get saeinstancedeletions.sae.ops.dev -n {ns}",
            true,
            "reads its objects",
        ),
        Can(
            "list saeinstancedeletions.sae.ops.dev -n {ns}",
            true,
            "the watch lists",
        ),
        Can(
            "watch saeinstancedeletions.sae.ops.dev -n {ns}",
            true,
            "the watch",
        ),
        Can(
            "update saeinstancedeletions.sae.ops.dev --subresource=status -n {ns}",
            true,
            "writes status",
        ),
        Can(
            "patch saeinstancedeletions.sae.ops.dev --subresource=status -n {ns}",
            true,
            "writes status",
        ),
        Can("get secrets -n {ns}", true, "the Secret an object names"),
        // Deletion policies (cluster-scoped): read all, write their status, never their spec.
        Can(
            "get saedeletionpolicies.sae.ops.dev",
            true,
            "reads the deletion policies",
        ),
        Can(
            "list saedeletionpolicies.sae.ops.dev",
            true,
            "the policy watch lists",
        ),
        Can(
            "watch saedeletionpolicies.sae.ops.dev",
            true,
            "the policy watch",
        ),
        Can(
            "patch saedeletionpolicies.sae.ops.dev --subresource=status",
            true,
            "writes each policy's Ready condition",
        ),
        Can(
            "update saedeletionpolicies.sae.ops.dev --subresource=status",
            false,
            "the status is written with a merge patch only",
        ),
        Can(
            "get saedeletionpolicies.sae.ops.dev --subresource=status",
            false,
            "the status is read from the watch",
        ),
        Can(
            "create saedeletionpolicies.sae.ops.dev",
            false,
            "policies are the administrator's",
        ),
        Can(
            "update saedeletionpolicies.sae.ops.dev",
            false,
            "must not change a policy's spec",
        ),
        Can(
            "patch saedeletionpolicies.sae.ops.dev",
            false,
            "must not change a policy's spec",
        ),
        Can(
            "delete saedeletionpolicies.sae.ops.dev",
            false,
            "must not delete a policy",
        ),
        // Namespaces: their labels, for a policy's namespaceSelector; watched always, because a
        // selector may appear at any time and a late watch would decide on an empty cache.
        Can(
            "get namespaces/{ns}",
            false,
            "labels come from the watch; no single get",
        ),
        Can("list namespaces", true, "the namespace watch lists"),
        Can("watch namespaces", true, "the namespace watch"),
        Can(
            "create events.events.k8s.io -n {ns}",
            true,
            "publishes Events",
        ),
        Can("patch events.events.k8s.io -n {ns}", true, "Event series"),
        Can(
            "create leases.coordination.k8s.io -n {home}",
            true,
            "creates its Lease when missing; RBAC cannot limit create by name",
        ),
        Can(
            "get leases.coordination.k8s.io/sae-controller -n {home}",
            true,
            "reads its Lease",
        ),
        Can(
            "update leases.coordination.k8s.io/sae-controller -n {home}",
            true,
            "renews its Lease",
        ),
        Can(
            "patch leases.coordination.k8s.io/sae-controller -n {home}",
            true,
            "renews / takes over its Lease",
        ),
        // Secrets: one named Secret at a time, never enumerated or changed.
        Can("list secrets -n {ns}", false, "must not enumerate Secrets"),
        Can("watch secrets -n {ns}", false, "must not enumerate Secrets"),
        Can("list secrets -A", false, "must not enumerate Secrets"),
        Can("create secrets -n {ns}", false, "never writes Secrets"),
        Can("update secrets -n {ns}", false, "never writes Secrets"),
        Can("delete secrets -n {ns}", false, "never writes Secrets"),
        // The spec is the user's: never edited, created or deleted.
        Can(
            "update saeinstancedeletions.sae.ops.dev -n {ns}",
            false,
            "must not change a spec",
        ),
        Can(
            "patch saeinstancedeletions.sae.ops.dev -n {ns}",
            false,
            "must not change a spec",
        ),
        Can(
            "create saeinstancedeletions.sae.ops.dev -n {ns}",
            false,
            "must not create deletions",
        ),
        Can(
            "create saeinstancedeletions.sae.ops.dev -n {home}",
            false,
            "must not create deletions",
        ),
        Can(
            "delete saeinstancedeletions.sae.ops.dev -n {ns}",
            false,
            "must not delete deletions",
        ),
        Can(
            "deletecollection saeinstancedeletions.sae.ops.dev -n {ns}",
            false,
            "must not delete deletions",
        ),
        // Leases: its own only.
        Can(
            "update leases.coordination.k8s.io -n {home}",
            false,
            "not every Lease of its namespace",
        ),
        Can(
            "get leases.coordination.k8s.io/other -n {home}",
            false,
            "another Lease",
        ),
        Can(
            "update leases.coordination.k8s.io/other -n {home}",
            false,
            "another Lease",
        ),
        Can(
            "patch leases.coordination.k8s.io/other -n {home}",
            false,
            "another Lease",
        ),
        Can(
            "delete leases.coordination.k8s.io/sae-controller -n {home}",
            false,
            "the library never deletes",
        ),
        Can(
            "list leases.coordination.k8s.io -n {home}",
            false,
            "not used",
        ),
        Can(
            "watch leases.coordination.k8s.io -n {home}",
            false,
            "not used",
        ),
        Can(
            "create leases.coordination.k8s.io -n kube-system",
            false,
            "kube-system's Leases (scheduler, controller-manager)",
        ),
        Can(
            "patch leases.coordination.k8s.io/kube-scheduler -n kube-system",
            false,
            "kube-system's Leases",
        ),
        Can(
            "update leases.coordination.k8s.io/sae-controller -n kube-system",
            false,
            "its Lease name elsewhere",
        ),
        Can(
            "create leases.coordination.k8s.io -n {other}",
            false,
            "other namespaces' Leases",
        ),
        Can(
            "patch leases.coordination.k8s.io/sae-controller -n {other}",
            false,
            "other namespaces' Leases",
        ),
        // Nothing in other API groups, or of other kinds.
        Can("get pods -n {ns}", false, "core group"),
        Can("list pods -A", false, "core group"),
        Can("get configmaps -n {ns}", false, "core group"),
        Can("get serviceaccounts -n {ns}", false, "core group"),
        Can(
            "create events -n {ns}",
            false,
            "core/v1 events: it uses events.k8s.io",
        ),
        Can("get nodes", false, "core group"),
        Can("create namespaces", false, "core group"),
        Can("update namespaces/{ns}", false, "never changes a namespace"),
        Can("patch namespaces/{ns}", false, "never changes a namespace"),
        Can("delete namespaces/{ns}", false, "never changes a namespace"),
        Can("get deployments.apps -n {home}", false, "apps group"),
        Can(
            "get customresourcedefinitions.apiextensions.k8s.io",
            false,
            "apiextensions group",
        ),
        Can(
            "get roles.rbac.authorization.k8s.io -n {home}",
            false,
            "rbac group",
        ),
        Can(
            "bind clusterroles.rbac.authorization.k8s.io",
            false,
            "no privilege escalation",
        ),
        Can(
            "escalate roles.rbac.authorization.k8s.io -n {home}",
            false,
            "no privilege escalation",
        ),
        Can("impersonate users", false, "no impersonation"),
        Can(
            "create serviceaccounts/token -n {home}",
            false,
            "no tokens for other identities",
        ),
    ];
    if cluster_wide {
        rows.extend([
            Can(
                "list saeinstancedeletions.sae.ops.dev -A",
                true,
                "watches all namespaces",
            ),
            Can(
                "get secrets -n {other}",
                true,
                "credentialsRef in any namespace",
            ),
        ]);
    } else {
        rows.extend([
            Can(
                "list saeinstancedeletions.sae.ops.dev -A",
                false,
                "sees one namespace only",
            ),
            Can(
                "list saeinstancedeletions.sae.ops.dev -n {other}",
                false,
                "sees one namespace only",
            ),
            Can(
                "get secrets -n {other}",
                false,
                "reads Secrets of its namespace only",
            ),
            Can(
                "update saeinstancedeletions.sae.ops.dev --subresource=status -n {other}",
                false,
                "its namespace only",
            ),
        ]);
    }
    rows
}

#[test]
fn controller_identity_has_exactly_the_rbac_of_deploy() {
    let cp = ControlPlane::shared();
    assert_matrix(cp, CONTROLLER_USER, "sae-system", "team-b", &matrix(true));

    // And the controller asking for itself (SelfSubjectAccessReview), with its own token.
    let out = cp.kubectl_as(
        cp.controller_kubeconfig(),
        &[
            "auth",
            "can-i",
            "patch",
            "leases.coordination.k8s.io/sae-controller",
            "-n",
            "sae-system",
        ],
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "yes",
        "{}",
        stderr(&out)
    );
    let out = cp.kubectl_as(
        cp.controller_kubeconfig(),
        &["auth", "can-i", "list", "secrets", "-A"],
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "no",
        "{}",
        stderr(&out)
    );
}

#[test]
fn single_namespace_overlay_confines_the_controller_to_its_namespace() {
    let cp = ControlPlane::shared();
    let out = cp.kubectl(&[
        "apply",
        "--validate=false",
        "-k",
        "deploy/overlays/single-namespace",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let mut rows = matrix(false);
    rows.extend([
        Can(
            "create leases.coordination.k8s.io -n sae-system",
            false,
            "the base install's namespace",
        ),
        Can(
            "patch leases.coordination.k8s.io/sae-controller -n sae-system",
            false,
            "the base install's Lease",
        ),
        Can(
            "get secrets -n sae-system",
            false,
            "the base install's namespace",
        ),
    ]);
    assert_matrix(
        cp,
        "system:serviceaccount:sae-team-a:sae-controller",
        "sae-team-a",
        "sae-team-a",
        &rows,
    );
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
    assert!(args.contains(&"--leader-elect"), "{args:?}");
    // Default credentials come from the optional Secret as files, never as environment variables.
    let env = c["env"].as_array().unwrap();
    assert!(
        env.iter()
            .all(|e| e["valueFrom"].get("secretKeyRef").is_none()),
        "a Secret in the environment: {env:?}"
    );
    let mount = c["volumeMounts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["name"] == "credentials")
        .expect("the credentials volume is mounted");
    assert_eq!(mount["readOnly"], true);
    assert!(
        mount.get("subPath").is_none(),
        "a subPath mount is never updated"
    );
    assert!(
        args.contains(
            &format!("--credentials-dir={}", mount["mountPath"].as_str().unwrap()).as_str()
        ),
        "{args:?}"
    );
    let volume = pod["volumes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["name"] == "credentials")
        .expect("the credentials volume");
    assert_eq!(volume["secret"]["secretName"], "sae-controller-credentials");
    assert_eq!(volume["secret"]["optional"], true);
    assert_eq!(volume["secret"]["defaultMode"], 0o440);
    assert_eq!(pod["securityContext"]["fsGroup"], 65532, "the files' group");
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
