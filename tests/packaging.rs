//! The packaging around the binary: the Argo CD health check (run with a real Lua interpreter),
//! the kustomize base and overlays (built with the real `kubectl kustomize`), the optional
//! examples, and the Dockerfile's static build.
//!
//! Needs `kubectl` (>= 1.27, for kustomize v5) and `lua5.4` on PATH, or `KUBECTL` / `LUA` naming
//! them. A missing tool fails the test with the command that installs it.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::{Value, json};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn read(relative: &str) -> String {
    let path = repo().join(relative);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

/// Runs a tool, failing the test with `install_hint` when it is not there at all.
fn run(program: &str, args: &[&str], install_hint: &str) -> String {
    let output = Command::new(program)
        .args(args)
        .current_dir(repo())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {program} ({e}); {install_hint}"));
    assert!(
        output.status.success(),
        "{program} {args:?} failed ({}):\n{}{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).expect("tool output is UTF-8")
}

// ---------------------------------------------------------------------------------------------
// Argo CD health check

fn lua() -> String {
    std::env::var("LUA").unwrap_or_else(|_| "lua5.4".to_owned())
}

/// A JSON value as a Lua table constructor, the way Argo CD hands a resource to a health script
/// (JSON null becomes an absent field).
fn lua_literal(value: &Value) -> String {
    match value {
        Value::Null => "nil".to_owned(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::String(s) => {
            let mut quoted = String::from("\"");
            for c in s.chars() {
                match c {
                    '\\' => quoted.push_str("\\\\"),
                    '"' => quoted.push_str("\\\""),
                    '\n' => quoted.push_str("\\n"),
                    '\r' => quoted.push_str("\\r"),
                    c => quoted.push(c),
                }
            }
            quoted.push('"');
            quoted
        }
        Value::Array(items) => format!(
            "{{{}}}",
            items.iter().map(lua_literal).collect::<Vec<_>>().join(", ")
        ),
        Value::Object(fields) => format!(
            "{{{}}}",
            fields
                .iter()
                .map(|(k, v)| format!(
                    "[{}] = {}",
                    lua_literal(&Value::String(k.clone())),
                    lua_literal(v)
                ))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

/// Runs `script` as Argo CD would, with `obj` set, and returns (status, message).
fn health_of(script: &Path, object: &Value) -> (String, String) {
    let dir = tempfile::tempdir().expect("temp dir");
    let harness = dir.path().join("harness.lua");
    let body = format!(
        "obj = {}\nlocal hs = dofile({})\nio.write(tostring(hs.status), \"\\n\", tostring(hs.message), \"\\n\")\n",
        lua_literal(object),
        lua_literal(&Value::String(script.display().to_string())),
    );
    std::fs::write(&harness, body).expect("writing the harness");
    let out = run(
        &lua(),
        &[harness.to_str().expect("UTF-8 path")],
        "apt-get install lua5.4",
    );
    let mut lines = out.lines();
    let status = lines.next().expect("a status line").to_owned();
    let message = lines.next().expect("a message line").to_owned();
    (status, message)
}

fn deletion(status: Option<Value>) -> Value {
    let mut object = json!({
        "apiVersion": "sae.ops.dev/v1alpha1",
        "kind": "SaeInstanceDeletion",
        "metadata": {"name": "scale-in", "namespace": "team-a", "generation": 1},
        "spec": {"regionId": "cn-hangzhou", "appId": "app-1", "instanceIds": ["i-1"]},
    });
    if let Some(status) = status {
        object["status"] = status;
    }
    object
}

fn with_reason(phase: &str, reason: &str, message: &str) -> Value {
    json!({
        "phase": phase,
        "observedGeneration": 1,
        "message": message,
        "conditions": [
            {"type": "Ready", "status": if phase == "Succeeded" { "True" } else { "False" }, "reason": reason, "message": message},
            {"type": "Reconciling", "status": "False", "reason": reason, "message": message},
        ],
    })
}

#[test]
fn argocd_health_follows_the_phase() {
    let script = repo().join("deploy/argocd/health.lua");
    let cases: Vec<(Value, &str, &str)> = vec![
        (
            deletion(Some(with_reason(
                "Succeeded",
                "Deleted",
                "2 instances deleted by change order co-1",
            ))),
            "Healthy",
            "Deleted: 2 instances deleted by change order co-1",
        ),
        (
            deletion(Some(with_reason(
                "Failed",
                "ApplicationNotFound",
                "SAE has no application app-1",
            ))),
            "Degraded",
            "ApplicationNotFound: SAE has no application app-1",
        ),
        (
            // A status without conditions still yields its message.
            deletion(Some(
                json!({"phase": "Failed", "message": "change order co-9 failed"}),
            )),
            "Degraded",
            "change order co-9 failed",
        ),
        (
            deletion(Some(json!({"phase": "Failed"}))),
            "Degraded",
            "Deletion failed",
        ),
        (
            deletion(Some(with_reason(
                "InProgress",
                "ChangeOrderRunning",
                "change order co-1 is Executing",
            ))),
            "Progressing",
            "InProgress: ChangeOrderRunning: change order co-1 is Executing",
        ),
        (
            deletion(Some(with_reason(
                "Retrying",
                "ChangeOrderRunning",
                "another change order is running",
            ))),
            "Progressing",
            "Retrying: ChangeOrderRunning: another change order is running",
        ),
        (
            deletion(Some(json!({"phase": "Pending"}))),
            "Progressing",
            "Pending: deletion under way",
        ),
        (
            deletion(Some(json!({"phase": "Submitting"}))),
            "Progressing",
            "Submitting: deletion under way",
        ),
        (
            deletion(None),
            "Progressing",
            "Waiting for the controller to pick up the deletion",
        ),
        (
            deletion(Some(json!({}))),
            "Progressing",
            "Waiting for the controller to pick up the deletion",
        ),
    ];
    for (object, want_status, want_message) in cases {
        let (status, message) = health_of(&script, &object);
        assert_eq!(
            (status.as_str(), message.as_str()),
            (want_status, want_message),
            "for status {}",
            object["status"]
        );
    }
}

#[test]
fn argocd_health_waits_for_a_new_generation_unless_final() {
    let script = repo().join("deploy/argocd/health.lua");
    let mut stale = deletion(Some(json!({"phase": "Retrying", "observedGeneration": 1})));
    stale["metadata"]["generation"] = json!(2);
    let (status, message) = health_of(&script, &stale);
    assert_eq!(status, "Progressing");
    assert!(message.contains("generation 2"), "{message}");

    // Final phases are final: the controller never writes the status again.
    let mut done = deletion(Some(json!({"phase": "Succeeded", "observedGeneration": 1})));
    done["metadata"]["generation"] = json!(2);
    assert_eq!(health_of(&script, &done).0, "Healthy");
}

#[test]
fn argocd_cm_patch_carries_the_same_script() {
    let patch: Value =
        serde_saphyr::from_str(&read("deploy/argocd/argocd-cm-patch.yaml")).expect("patch is YAML");
    assert_eq!(patch["kind"], "ConfigMap");
    assert_eq!(patch["metadata"]["name"], "argocd-cm");
    let embedded = patch["data"]["resource.customizations.health.sae.ops.dev_SaeInstanceDeletion"]
        .as_str()
        .expect("the health customization key for group sae.ops.dev, kind SaeInstanceDeletion");
    assert_eq!(
        embedded,
        read("deploy/argocd/health.lua"),
        "argocd-cm-patch.yaml is out of date with health.lua"
    );
}

// ---------------------------------------------------------------------------------------------
// kustomize

fn kustomize(dir: &str) -> Vec<Value> {
    let kubectl = std::env::var("KUBECTL").unwrap_or_else(|_| "kubectl".to_owned());
    let yaml = run(
        &kubectl,
        &["kustomize", dir],
        "install kubectl >= 1.27 (kustomize v5)",
    );
    serde_saphyr::from_multiple(&yaml)
        .unwrap_or_else(|e| panic!("kubectl kustomize {dir} printed invalid YAML: {e}"))
}

fn kinds(objects: &[Value]) -> Vec<&str> {
    objects
        .iter()
        .map(|o| o["kind"].as_str().expect("every object has a kind"))
        .collect()
}

fn one<'a>(objects: &'a [Value], kind: &str) -> &'a Value {
    let found: Vec<&Value> = objects.iter().filter(|o| o["kind"] == kind).collect();
    assert_eq!(
        found.len(),
        1,
        "expected one {kind}, got {:?}",
        kinds(objects)
    );
    found[0]
}

/// Both CRDs come with every install: the deletions' and the deletion policies'.
fn assert_both_crds(objects: &[Value]) {
    let names: BTreeSet<&str> = objects
        .iter()
        .filter(|o| o["kind"] == "CustomResourceDefinition")
        .filter_map(|o| o["metadata"]["name"].as_str())
        .collect();
    assert_eq!(
        names,
        BTreeSet::from([
            "saedeletionpolicies.sae.ops.dev",
            "saeinstancedeletions.sae.ops.dev"
        ]),
        "the CRDs of an install"
    );
}

fn container(deployment: &Value) -> &Value {
    &deployment["spec"]["template"]["spec"]["containers"][0]
}

fn args(deployment: &Value) -> Vec<&str> {
    container(deployment)["args"]
        .as_array()
        .expect("container args")
        .iter()
        .map(|a| a.as_str().expect("string arg"))
        .collect()
}

fn is_namespaced(kind: &str) -> bool {
    !matches!(
        kind,
        "Namespace" | "CustomResourceDefinition" | "ClusterRole" | "ClusterRoleBinding"
    )
}

fn named<'a>(objects: &'a [Value], kind: &str, name: &str) -> &'a Value {
    objects
        .iter()
        .find(|o| o["kind"] == kind && o["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("no {kind} {name} in {:?}", kinds(objects)))
}

/// Every (Cluster)RoleBinding binds the controller's ServiceAccount, in the namespace it runs in.
fn assert_bindings_name_the_service_account(objects: &[Value]) {
    let account = one(objects, "ServiceAccount");
    let expected = json!([{
        "kind": "ServiceAccount",
        "name": account["metadata"]["name"],
        "namespace": account["metadata"]["namespace"],
    }]);
    for binding in objects
        .iter()
        .filter(|o| o["kind"] == "RoleBinding" || o["kind"] == "ClusterRoleBinding")
    {
        assert_eq!(
            binding["subjects"], expected,
            "{} {}",
            binding["kind"], binding["metadata"]["name"]
        );
    }
}

/// The RBAC every install grants on Leases: only the leader-election Role, in the controller's
/// namespace, naming one Lease for everything but create.
fn assert_lease_rights_are_one_named_lease(dir: &str, objects: &[Value]) {
    let deployment = one(objects, "Deployment");
    for object in objects
        .iter()
        .filter(|o| o["kind"] == "Role" || o["kind"] == "ClusterRole")
    {
        let lease_rules: Vec<&Value> = object["rules"]
            .as_array()
            .expect("rules")
            .iter()
            .filter(|r| r["apiGroups"] == json!(["coordination.k8s.io"]))
            .collect();
        if object["metadata"]["name"] != "sae-controller-leader-election" {
            assert!(
                lease_rules.is_empty(),
                "{dir}: {} {} grants lease rights",
                object["kind"],
                object["metadata"]["name"]
            );
            continue;
        }
        assert_eq!(object["kind"], "Role", "{dir}");
        assert_eq!(
            object["metadata"]["namespace"], deployment["metadata"]["namespace"],
            "{dir}: the Lease lives with the controller"
        );
        assert_eq!(
            lease_rules,
            vec![
                &json!({"apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "verbs": ["create"]}),
                &json!({"apiGroups": ["coordination.k8s.io"], "resources": ["leases"],
                        "resourceNames": ["sae-controller"], "verbs": ["get", "update", "patch"]}),
            ],
            "{dir}"
        );
    }
    let args = args(deployment);
    assert!(args.contains(&"--leader-elect"), "{dir}: {args:?}");
    assert!(
        !args
            .iter()
            .any(|a| a.starts_with("--leader-election-lease-name")
                || a.starts_with("--leader-election-namespace")),
        "{dir}: another Lease than the one the Role names: {args:?}"
    );
    let env = container(deployment)["env"].as_array().expect("env");
    for (var, field) in [
        ("POD_NAME", "metadata.name"),
        ("POD_NAMESPACE", "metadata.namespace"),
    ] {
        let e = env
            .iter()
            .find(|e| e["name"] == var)
            .unwrap_or_else(|| panic!("{dir}: {var} missing"));
        assert_eq!(e["valueFrom"]["fieldRef"]["fieldPath"], field, "{dir}");
    }
}

#[test]
fn every_install_elects_a_leader_with_one_named_lease() {
    for dir in [
        "deploy/",
        "deploy/overlays/ha",
        "deploy/overlays/single-namespace",
        "deploy/overlays/monitoring",
    ] {
        let objects = kustomize(dir);
        assert_lease_rights_are_one_named_lease(dir, &objects);
        assert_bindings_name_the_service_account(&objects);
    }
}

#[test]
fn base_builds_with_cluster_wide_rbac() {
    let base = kustomize("deploy/");
    assert_both_crds(&base);
    for kind in [
        "Namespace",
        "ServiceAccount",
        "ClusterRole",
        "ClusterRoleBinding",
        "Deployment",
    ] {
        one(&base, kind);
    }
    let deployment = one(&base, "Deployment");
    assert_eq!(deployment["metadata"]["namespace"], "sae-system");
    assert!(
        !args(deployment)
            .iter()
            .any(|a| a.starts_with("--namespace")),
        "the base watches all namespaces"
    );
}

#[test]
fn single_namespace_overlay_grants_a_role_in_its_own_namespace_only() {
    let objects = kustomize("deploy/overlays/single-namespace");
    let kinds = kinds(&objects);
    assert!(
        !objects
            .iter()
            .any(|o| o["kind"] == "ClusterRole" && o["metadata"]["name"] == "sae-controller"),
        "the base's cluster-wide ClusterRole is replaced: {kinds:?}"
    );
    let role = named(&objects, "Role", "sae-controller");
    let binding = named(&objects, "RoleBinding", "sae-controller");
    let deployment = one(&objects, "Deployment");
    let namespace = one(&objects, "Namespace")["metadata"]["name"]
        .as_str()
        .expect("namespace name");
    assert_ne!(
        namespace, "sae-system",
        "the overlay picks its own namespace"
    );

    for object in objects
        .iter()
        .filter(|o| is_namespaced(o["kind"].as_str().unwrap()))
    {
        assert_eq!(
            object["metadata"]["namespace"], namespace,
            "{} {} is elsewhere",
            object["kind"], object["metadata"]["name"]
        );
    }
    assert_eq!(
        binding["roleRef"],
        json!({"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": role["metadata"]["name"]})
    );
    assert_eq!(
        binding["subjects"],
        json!([{"kind": "ServiceAccount", "name": deployment["spec"]["template"]["spec"]["serviceAccountName"], "namespace": namespace}])
    );

    // Same permissions as the base grants cluster-wide, so the two cannot drift apart: the Role
    // holds those on namespaced kinds, the policies' ClusterRole those on cluster-scoped ones
    // (deletion policies and namespaces, which a Role cannot grant).
    let base = kustomize("deploy/");
    let policies = named(
        &objects,
        "ClusterRole",
        &format!("sae-controller-policies-{namespace}"),
    );
    let mut split: Vec<Value> = role["rules"].as_array().expect("Role rules").clone();
    split.extend(
        policies["rules"]
            .as_array()
            .expect("ClusterRole rules")
            .clone(),
    );
    assert_eq!(
        Value::Array(split),
        one(&base, "ClusterRole")["rules"],
        "Role + policies ClusterRole rules differ from the base ClusterRole's"
    );
    for rule in policies["rules"].as_array().unwrap() {
        for resource in rule["resources"].as_array().unwrap() {
            assert!(
                [
                    "saedeletionpolicies",
                    "saedeletionpolicies/status",
                    "namespaces"
                ]
                .contains(&resource.as_str().unwrap()),
                "only cluster-scoped kinds in the ClusterRole: {resource}"
            );
        }
    }
    let policies_binding = one(&objects, "ClusterRoleBinding");
    assert_eq!(
        policies_binding["metadata"]["name"],
        format!("sae-controller-policies-{namespace}"),
        "named after its namespace, so installs side by side keep their own binding"
    );
    assert_eq!(
        policies_binding["roleRef"],
        json!({"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": format!("sae-controller-policies-{namespace}")}),
        "the ClusterRole is named after its namespace too: deleting one install (kubectl delete -k) \
         does not take it from the others"
    );
    assert_eq!(
        policies_binding["subjects"],
        json!([{"kind": "ServiceAccount", "name": deployment["spec"]["template"]["spec"]["serviceAccountName"], "namespace": namespace}])
    );
    // The leader-election Role came along unchanged, bound to this namespace's ServiceAccount.
    assert_eq!(
        named(&objects, "Role", "sae-controller-leader-election")["rules"],
        named(&base, "Role", "sae-controller-leader-election")["rules"]
    );
    assert_bindings_name_the_service_account(&objects);

    // The controller watches the namespace it runs in, taken from the Downward API.
    assert!(
        args(deployment).contains(&"--namespace=$(POD_NAMESPACE)"),
        "{:?}",
        args(deployment)
    );
    let env = container(deployment)["env"].as_array().expect("env");
    let pod_namespace = env
        .iter()
        .find(|e| e["name"] == "POD_NAMESPACE")
        .expect("POD_NAMESPACE env, for $(POD_NAMESPACE)");
    assert_eq!(
        pod_namespace["valueFrom"]["fieldRef"]["fieldPath"],
        "metadata.namespace"
    );
    // The CRDs still come along (cluster-scoped, installed once).
    assert_both_crds(&objects);
}

#[test]
fn ha_overlay_runs_two_replicas_with_leader_election_and_a_budget() {
    let objects = kustomize("deploy/overlays/ha");
    let deployment = one(&objects, "Deployment");
    assert_eq!(deployment["spec"]["replicas"], 2);
    let args = args(deployment);
    // From the base, once: clap refuses a flag given twice.
    assert_eq!(
        args.iter()
            .filter(|a| a.starts_with("--leader-elect"))
            .count(),
        1,
        "{args:?}"
    );
    one(&objects, "ClusterRole");
    named(&objects, "Role", "sae-controller-leader-election");
    assert_bindings_name_the_service_account(&objects);

    let pdb = one(&objects, "PodDisruptionBudget");
    assert_eq!(pdb["spec"]["minAvailable"], 1);
    assert_eq!(
        pdb["metadata"]["namespace"],
        deployment["metadata"]["namespace"]
    );
    assert_selects_pods(&pdb["spec"]["selector"]["matchLabels"], deployment);
}

/// Every label of `selector` is on the Deployment's pod template.
fn assert_selects_pods(selector: &Value, deployment: &Value) {
    let pod_labels = &deployment["spec"]["template"]["metadata"]["labels"];
    let selector = selector.as_object().expect("matchLabels");
    assert!(!selector.is_empty());
    for (key, value) in selector {
        assert_eq!(
            &pod_labels[key], value,
            "pod template lacks {key}={value}: {pod_labels}"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Optional examples

fn example(file: &str) -> Value {
    serde_saphyr::from_str(&read(&format!("deploy/examples/{file}")))
        .unwrap_or_else(|e| panic!("{file}: {e}"))
}

fn ports(rules: &Value) -> BTreeSet<i64> {
    rules
        .as_array()
        .expect("rules")
        .iter()
        .flat_map(|rule| {
            rule["ports"]
                .as_array()
                .expect("every rule names its ports")
                .iter()
        })
        .map(|p| p["port"].as_i64().expect("numeric port"))
        .collect()
}

#[test]
fn example_network_policy_opens_only_what_the_controller_uses() {
    let base = kustomize("deploy/");
    let deployment = one(&base, "Deployment");
    let policy = example("networkpolicy.yaml");
    assert_eq!(policy["kind"], "NetworkPolicy");
    assert_eq!(
        policy["metadata"]["namespace"],
        deployment["metadata"]["namespace"]
    );
    assert_selects_pods(&policy["spec"]["podSelector"]["matchLabels"], deployment);
    assert_eq!(policy["spec"]["policyTypes"], json!(["Ingress", "Egress"]));

    let container_ports: BTreeSet<i64> = container(deployment)["ports"]
        .as_array()
        .expect("container ports")
        .iter()
        .map(|p| p["containerPort"].as_i64().unwrap())
        .collect();
    assert_eq!(
        ports(&policy["spec"]["ingress"]),
        container_ports,
        "ingress must be the metrics and probe ports"
    );
    assert_eq!(
        ports(&policy["spec"]["egress"]),
        BTreeSet::from([53, 443, 6443]),
        "egress: DNS and HTTPS only"
    );
}

#[test]
fn monitoring_service_monitor_scrapes_the_metrics_port() {
    let rendered = kustomize("deploy/overlays/monitoring");
    let deployment = one(&rendered, "Deployment");
    let service = one(&rendered, "Service");
    let monitor = one(&rendered, "ServiceMonitor");
    for kind in ["Service", "ServiceMonitor", "PrometheusRule", "ConfigMap"] {
        assert_eq!(
            one(&rendered, kind)["metadata"]["namespace"],
            deployment["metadata"]["namespace"],
            "{kind} lives with the controller"
        );
    }
    let dashboard = one(&rendered, "ConfigMap");
    assert_eq!(dashboard["metadata"]["labels"]["grafana_dashboard"], "1");
    assert_eq!(
        dashboard["data"]["sae-controller-dashboard.json"],
        read("deploy/monitoring/sae-controller-dashboard.json").as_str()
    );
    // The base alone stays free of Prometheus Operator kinds.
    let base = kustomize("deploy/");
    for kind in ["ServiceMonitor", "PrometheusRule"] {
        assert!(!kinds(&base).contains(&kind), "the base renders a {kind}");
    }

    assert_selects_pods(&service["spec"]["selector"], deployment);
    let service_port = &service["spec"]["ports"][0];
    let named_port = container(deployment)["ports"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == service_port["targetPort"])
        .unwrap_or_else(|| panic!("no container port named {}", service_port["targetPort"]));
    assert_eq!(named_port["containerPort"], service_port["port"]);
    assert!(
        args(deployment).contains(
            &format!(
                "--metrics-bind-address=0.0.0.0:{}",
                named_port["containerPort"]
            )
            .as_str()
        ),
        "the metrics port is where the controller serves /metrics"
    );

    assert_eq!(monitor["apiVersion"], "monitoring.coreos.com/v1");
    // No namespaceSelector: the operator looks in the ServiceMonitor's own namespace, so an overlay
    // that moves the controller moves the scrape with it.
    assert!(
        monitor["spec"].get("namespaceSelector").is_none(),
        "{monitor}"
    );
    // The alerts select the job Prometheus names after the Service.
    let rule = one(&rendered, "PrometheusRule").to_string();
    assert!(
        rule.contains(&format!(
            r#"job=\"{}\""#,
            service["metadata"]["name"].as_str().unwrap()
        )),
        "the alerts select another job than the Service's name"
    );
    for (key, value) in monitor["spec"]["selector"]["matchLabels"]
        .as_object()
        .expect("matchLabels")
    {
        assert_eq!(
            &service["metadata"]["labels"][key], value,
            "Service lacks label {key}"
        );
    }
    let endpoint = &monitor["spec"]["endpoints"][0];
    assert_eq!(endpoint["port"], service_port["name"]);
    assert_eq!(endpoint["path"], "/metrics");
}

// ---------------------------------------------------------------------------------------------
// Dockerfile and the static build

#[test]
fn dockerfile_ships_the_checked_static_binary_as_nonroot() {
    let dockerfile = read("Dockerfile");
    let stages: Vec<&str> = dockerfile
        .lines()
        .filter(|l| l.starts_with("FROM "))
        .collect();
    assert_eq!(stages.len(), 2, "builder and runtime stages: {stages:?}");
    assert!(
        stages[1].contains("distroless/static") || stages[1] == "FROM scratch",
        "{}",
        stages[1]
    );
    assert!(
        dockerfile.contains("hack/check-static.sh"),
        "the image must be built by the script `make static-check` runs"
    );
    let instructions: Vec<&str> = dockerfile.lines().filter(|l| !l.starts_with('#')).collect();
    assert!(
        instructions.contains(&"USER 65532:65532"),
        "runs as the nonroot user the Deployment expects"
    );
    assert!(instructions.contains(&r#"ENTRYPOINT ["/sae-controller"]"#));

    let ignored: Vec<String> = read(".dockerignore").lines().map(str::to_owned).collect();
    for path in ["/target", "/.git"] {
        assert!(
            ignored.iter().any(|l| l == path),
            ".dockerignore must exclude {path}"
        );
    }
    // The script runs in the builder: it must be executable and valid shell.
    let script = repo().join("hack/check-static.sh");
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(&script).expect("script").permissions(),
    );
    assert!(mode & 0o111 != 0, "hack/check-static.sh is not executable");
    run("bash", &["-n", "hack/check-static.sh"], "bash is required");
}

// ---------------------------------------------------------------------------------------------
// The version installed

const VERSION: &str = env!("CARGO_PKG_VERSION");

#[test]
fn every_install_runs_the_image_of_the_crate_version() {
    for dir in [
        "deploy/",
        "deploy/overlays/ha",
        "deploy/overlays/single-namespace",
        "deploy/overlays/monitoring",
    ] {
        let objects = kustomize(dir);
        let deployment = one(&objects, "Deployment");
        let image = container(deployment)["image"].as_str().expect("image");
        assert_eq!(
            image.rsplit_once(':').map(|(_, tag)| tag),
            Some(VERSION),
            "{dir}: the image tag is the crate version"
        );
        assert_eq!(
            deployment["metadata"]["labels"]["app.kubernetes.io/version"], VERSION,
            "{dir}: Deployment label"
        );
        assert_eq!(
            deployment["spec"]["template"]["metadata"]["labels"]["app.kubernetes.io/version"],
            VERSION,
            "{dir}: pod label"
        );
        assert!(
            !deployment["spec"]["selector"]["matchLabels"]
                .as_object()
                .unwrap()
                .contains_key("app.kubernetes.io/version"),
            "{dir}: a version in the selector would make every upgrade a new Deployment"
        );
    }
    // `make image` tags with the same version, and passes the commit into the build.
    assert_eq!(
        run("make", &["-s", "version"], "make is required").trim(),
        VERSION
    );
    let makefile = read("Makefile");
    let image = makefile
        .split("\nimage:")
        .nth(1)
        .expect("a make image target");
    assert!(image.contains("-t $(IMAGE):$(VERSION)"), "{image}");
    assert!(
        image.contains("SAE_CONTROLLER_GIT_COMMIT=")
            && read("Dockerfile").contains("ARG SAE_CONTROLLER_GIT_COMMIT"),
        "the commit reaches the Docker build"
    );
}

/// The commit the binary should report: HEAD of this checkout, or `unknown` outside git.
fn expected_commit() -> String {
    Command::new("git")
        .args(["rev-parse", "HEAD"])
        .current_dir(repo())
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_else(|| "unknown".to_owned())
}

#[test]
fn version_flag_names_the_crate_version_and_the_commit() {
    let out = run(
        env!("CARGO_BIN_EXE_sae-controller"),
        &["--version"],
        "built by cargo",
    );
    assert_eq!(
        out.trim(),
        format!("sae-controller {VERSION} (commit {})", expected_commit())
    );
}
