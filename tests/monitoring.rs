//! deploy/monitoring checked with Prometheus' own tool, `promtool` (Debian package `prometheus`,
//! installed by .ci/run; `PROMTOOL` may name another binary):
//! - the PrometheusRule's rules pass `promtool check rules`, and its unit tests
//!   (deploy/monitoring/tests/alerts.test.yaml) pass `promtool test rules`, with a case that fires and
//!   one that does not for every alert;
//! - every alert has a summary and a runbook section in docs/operations.md;
//! - every query of the Grafana dashboard passes `promtool check rules` (as a recording rule);
//! - end to end: the real controller's `/metrics` passes `promtool check metrics`, and every metric
//!   the rules and the dashboard use is in it.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write as _;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::{Value, json};
use support::world::app;
use support::{ControlPlane, Controller, World};

/// Metrics the rules may use that the controller does not serve: Prometheus' own per-target series.
const PROMETHEUS_METRICS: &[&str] = &["up"];

fn repo() -> &'static Path {
    ControlPlane::repo_root()
}

fn promtool() -> String {
    std::env::var("PROMTOOL").unwrap_or_else(|_| "promtool".to_owned())
}

/// Runs promtool; fails the test with its output unless it succeeds. `input` goes to stdin.
fn run_promtool(args: &[&str], dir: &Path, input: Option<&str>) -> String {
    let mut child = Command::new(promtool())
        .args(args)
        .current_dir(dir)
        .stdin(if input.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| {
            panic!(
                "cannot run {} ({e}); install it with `apt-get install prometheus` (.ci/run does)",
                promtool()
            )
        });
    if let Some(input) = input {
        child
            .stdin
            .take()
            .expect("piped stdin")
            .write_all(input.as_bytes())
            .expect("writing to promtool");
    }
    let out = child.wait_with_output().expect("waiting for promtool");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "promtool {args:?} failed ({}):\n{text}",
        out.status
    );
    text
}

/// `kubectl kustomize` of the monitoring overlay, as JSON values.
fn rendered_monitoring() -> Vec<Value> {
    let kubectl = std::env::var("KUBECTL").unwrap_or_else(|_| "kubectl".to_owned());
    let out = Command::new(&kubectl)
        .args(["kustomize", "deploy/overlays/monitoring"])
        .current_dir(repo())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {kubectl}: {e}"));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).expect("UTF-8");
    text.split("\n---\n")
        .map(|doc| serde_saphyr::from_str(doc).unwrap_or_else(|e| panic!("{e}: {doc}")))
        .collect()
}

fn prometheus_rule() -> Value {
    rendered_monitoring()
        .into_iter()
        .find(|o| o["kind"] == "PrometheusRule")
        .expect("the monitoring overlay renders a PrometheusRule")
}

fn alerts(rule: &Value) -> Vec<&Value> {
    rule["spec"]["groups"]
        .as_array()
        .expect("groups")
        .iter()
        .flat_map(|g| g["rules"].as_array().expect("rules").iter())
        .filter(|r| r.get("alert").is_some())
        .collect()
}

/// A temp dir holding `rules.yaml`: the PrometheusRule's spec, the plain rule file promtool reads.
fn rules_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("temp dir");
    // JSON is YAML, and promtool reads either.
    let spec = serde_json::to_string_pretty(&prometheus_rule()["spec"]).expect("JSON");
    std::fs::write(dir.path().join("rules.yaml"), spec).expect("writing rules.yaml");
    dir
}

#[test]
fn alert_rules_pass_promtool_check_rules() {
    let dir = rules_dir();
    let out = run_promtool(&["check", "rules", "rules.yaml"], dir.path(), None);
    let count = alerts(&prometheus_rule()).len();
    assert!(
        out.contains(&format!("SUCCESS: {count} rules found")),
        "{out}"
    );
}

#[test]
fn every_alert_fires_and_stays_quiet_in_promtool_unit_tests() {
    let tests_file = repo().join("deploy/monitoring/tests/alerts.test.yaml");
    let tests_text = std::fs::read_to_string(&tests_file).expect("reading the alert tests");
    let dir = rules_dir();
    std::fs::write(dir.path().join("alerts.test.yaml"), &tests_text).expect("copying the tests");
    let out = run_promtool(&["test", "rules", "alerts.test.yaml"], dir.path(), None);
    assert!(out.contains("SUCCESS"), "{out}");

    // Which alerts are seen firing, and which seen quiet, in some case.
    let tests: Value = serde_saphyr::from_str(&tests_text).expect("parsing the alert tests");
    let mut fires = BTreeSet::new();
    let mut quiet = BTreeSet::new();
    for case in tests["tests"].as_array().expect("tests") {
        for check in case["alert_rule_test"].as_array().into_iter().flatten() {
            let name = check["alertname"].as_str().expect("alertname").to_owned();
            let expected = check["exp_alerts"].as_array().map_or(0, Vec::len);
            if expected > 0 {
                fires.insert(name);
            } else {
                quiet.insert(name);
            }
        }
    }
    let rule = prometheus_rule();
    let names: BTreeSet<String> = alerts(&rule)
        .iter()
        .map(|a| a["alert"].as_str().unwrap().to_owned())
        .collect();
    let never_fired: Vec<_> = names.difference(&fires).collect();
    let never_quiet: Vec<_> = names.difference(&quiet).collect();
    let unknown: Vec<_> = fires
        .union(&quiet)
        .filter(|n| !names.contains(*n))
        .collect();
    assert!(
        never_fired.is_empty() && never_quiet.is_empty() && unknown.is_empty(),
        "untested: never fires {never_fired:?}, never quiet {never_quiet:?}; tests of unknown alerts {unknown:?}"
    );
}

/// GitHub's anchor for a Markdown heading: lower case, punctuation dropped, spaces to dashes.
fn anchor(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter_map(|c| match c {
            ' ' => Some('-'),
            c if c.is_alphanumeric() || c == '-' || c == '_' => Some(c),
            _ => None,
        })
        .collect()
}

#[test]
fn every_alert_has_a_summary_and_a_runbook_section() {
    let operations =
        std::fs::read_to_string(repo().join("docs/operations.md")).expect("operations.md");
    let anchors: BTreeSet<String> = operations
        .lines()
        .filter_map(|l| l.strip_prefix('#'))
        .map(|l| anchor(l.trim_start_matches('#')))
        .collect();
    let rule = prometheus_rule();
    let mut wrong = Vec::new();
    for alert in alerts(&rule) {
        let name = alert["alert"].as_str().unwrap();
        let annotations = &alert["annotations"];
        if annotations["summary"].as_str().is_none_or(str::is_empty) {
            wrong.push(format!("{name}: no summary"));
        }
        if alert["labels"]["severity"].as_str().is_none() {
            wrong.push(format!("{name}: no severity label"));
        }
        let expected = format!("docs/operations.md#{}", name.to_lowercase());
        if annotations["runbook_url"] != expected.as_str() {
            wrong.push(format!(
                "{name}: runbook_url {} is not {expected}",
                annotations["runbook_url"]
            ));
        }
        if !anchors.contains(&name.to_lowercase()) {
            wrong.push(format!(
                "{name}: docs/operations.md has no heading `{name}`"
            ));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

fn dashboard() -> Value {
    let path = repo().join("deploy/monitoring/sae-controller-dashboard.json");
    serde_json::from_str(&std::fs::read_to_string(&path).expect("reading the dashboard"))
        .expect("the dashboard is JSON")
}

/// Every PromQL query of the dashboard, with Grafana's `$__rate_interval` as a fixed range.
fn dashboard_queries() -> Vec<(String, String)> {
    let dashboard = dashboard();
    let mut queries = Vec::new();
    for panel in dashboard["panels"].as_array().expect("panels") {
        let title = panel["title"].as_str().expect("every panel has a title");
        let targets = panel["targets"]
            .as_array()
            .expect("every panel has queries");
        assert!(!targets.is_empty(), "panel {title:?} has no query");
        for target in targets {
            let expr = target["expr"].as_str().expect("a PromQL expr").to_owned();
            let expr = expr.replace("$__rate_interval", "5m");
            assert!(
                !expr.contains('$'),
                "{title:?}: a Grafana variable the test does not know: {expr}"
            );
            queries.push((title.to_owned(), expr));
        }
    }
    queries
}

#[test]
fn dashboard_queries_pass_promtool() {
    let queries = dashboard_queries();
    // The panels the issue asks for, by what they show.
    let all = queries
        .iter()
        .map(|(_, q)| q.as_str())
        .collect::<Vec<_>>()
        .join("\n");
    for metric in [
        "sae_objects",
        "sae_deletion_duration_seconds_bucket",
        "sae_requests_total",
        "sae_quota_tokens",
        "sae_quota_wait_seconds_bucket",
        "sae_leader",
    ] {
        assert!(all.contains(metric), "no panel shows {metric}");
    }
    let rules = json!({"groups": [{
        "name": "dashboard",
        "rules": queries.iter().enumerate().map(|(i, (_, expr))| json!({
            "record": format!("dashboard:query_{i}"),
            "expr": expr,
        })).collect::<Vec<_>>(),
    }]});
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::write(dir.path().join("dashboard.yaml"), rules.to_string()).expect("writing");
    let out = run_promtool(&["check", "rules", "dashboard.yaml"], dir.path(), None);
    assert!(
        out.contains(&format!("SUCCESS: {} rules found", queries.len())),
        "{out}"
    );
}

/// The metric names a PromQL expression selects. Enough PromQL for our own expressions: strings and
/// label matchers are skipped, as are names followed by `(` (functions, aggregations), keywords, and
/// the label lists after by/without/on/ignoring/group_left/group_right.
fn metric_names(expr: &str) -> BTreeSet<String> {
    // Aggregations may be followed by `by (...)` rather than `(`, so they are listed too.
    const KEYWORDS: &[&str] = &[
        "and",
        "or",
        "unless",
        "offset",
        "bool",
        "inf",
        "nan",
        "sum",
        "min",
        "max",
        "avg",
        "group",
        "count",
        "count_values",
        "stddev",
        "stdvar",
        "topk",
        "bottomk",
        "quantile",
    ];
    const LABEL_LISTS: &[&str] = &[
        "by",
        "without",
        "on",
        "ignoring",
        "group_left",
        "group_right",
    ];
    let mut names = BTreeSet::new();
    let chars: Vec<char> = expr.chars().collect();
    let mut i = 0;
    let mut skip_list = false;
    while i < chars.len() {
        let c = chars[i];
        if c == '"' || c == '\'' {
            i += 1;
            while i < chars.len() && chars[i] != c {
                i += if chars[i] == '\\' { 2 } else { 1 };
            }
            i += 1;
        } else if c == '{' || c == '[' || (c == '(' && skip_list) {
            let close = match c {
                '{' => '}',
                '[' => ']',
                _ => ')',
            };
            skip_list = false;
            while i < chars.len() && chars[i] != close {
                i += 1;
            }
            i += 1;
        } else if c.is_ascii_digit() || c == '.' {
            // A number or a duration (5m, 1h30m, 0.5, 1e3): not a name.
            while i < chars.len() && (chars[i].is_ascii_alphanumeric() || chars[i] == '.') {
                i += 1;
            }
        } else if c.is_ascii_alphabetic() || c == '_' || c == ':' {
            let start = i;
            while i < chars.len()
                && (chars[i].is_ascii_alphanumeric() || chars[i] == '_' || chars[i] == ':')
            {
                i += 1;
            }
            let word: String = chars[start..i].iter().collect();
            let next = chars[i..].iter().find(|c| !c.is_whitespace());
            if LABEL_LISTS.contains(&word.as_str()) {
                skip_list = true;
            } else if next != Some(&'(') && !KEYWORDS.contains(&word.to_lowercase().as_str()) {
                names.insert(word);
            }
        } else {
            i += 1;
        }
    }
    names
}

#[test]
fn metric_names_are_read_from_promql() {
    let names = metric_names(
        r#"histogram_quantile(0.9, sum by (le, operation) (rate(sae_x_bucket{job="a", code!="OK"}[5m]))) > 0.5
           or sum without (pod) (sae_y offset 1h) unless on(pod) group_left(version) sae_z{a=~"x|y"} > bool 1e3"#,
    );
    assert_eq!(
        names,
        BTreeSet::from(["sae_x_bucket", "sae_y", "sae_z"].map(String::from))
    );
}

/// Every metric name the rules and the dashboard select, with where it is used.
fn used_metric_names() -> BTreeMap<String, String> {
    let mut used = BTreeMap::new();
    let rule = prometheus_rule();
    for alert in alerts(&rule) {
        for name in metric_names(alert["expr"].as_str().expect("expr")) {
            used.insert(name, format!("alert {}", alert["alert"]));
        }
    }
    for (title, expr) in dashboard_queries() {
        for name in metric_names(&expr) {
            used.insert(name, format!("dashboard panel {title:?}"));
        }
    }
    used
}

/// Sample names in an exposition (`name{labels} value` or `name value`), comments skipped.
fn sample_names(exposition: &str) -> BTreeSet<String> {
    exposition
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .filter_map(|l| l.split(['{', ' ']).next())
        .map(str::to_owned)
        .collect()
}

/// The sample names the `# TYPE` lines of a classic-format exposition declare.
fn declared_names(exposition: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for line in exposition.lines() {
        let Some((name, kind)) = line
            .strip_prefix("# TYPE ")
            .and_then(|rest| rest.split_once(' '))
        else {
            continue;
        };
        match kind {
            "histogram" => {
                names.extend(["_bucket", "_sum", "_count"].map(|s| format!("{name}{s}")))
            }
            "summary" => names.extend(["", "_sum", "_count"].map(|s| format!("{name}{s}"))),
            _ => {
                names.insert(name.to_owned());
            }
        }
    }
    names
}

/// GETs a controller's `/metrics`; `accept` as the scraper sends it.
async fn scrape(controller: &Controller, accept: Option<&str>) -> reqwest::Response {
    let url = format!("{}/metrics", controller.metrics_url().expect("metrics url"));
    let mut request = reqwest::Client::new().get(url);
    if let Some(accept) = accept {
        request = request.header("accept", accept);
    }
    request.send().await.expect("scraping /metrics")
}

/// Scrapes (classic format) until `want` is a line prefix of the output, for at most 60 s.
async fn scrape_until(controller: &Controller, want: &str) -> String {
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let text = scrape(controller, None).await.text().await.expect("body");
        if text.lines().any(|l| l.starts_with(want)) {
            return text;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no `{want}` in /metrics:\n{text}\n{}",
            controller.logs()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// A kubeconfig for an identity that may read SaeInstanceDeletion objects in `w.ns` but not write
/// their status: the admin impersonating a ServiceAccount bound to such a Role.
fn status_denied_kubeconfig(w: &World) -> std::path::PathBuf {
    let user = format!("system:serviceaccount:{}:status-denied", w.ns);
    let rbac = json!({"apiVersion": "v1", "kind": "List", "items": [
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
         "metadata": {"name": "status-denied", "namespace": w.ns},
         "rules": [
            {"apiGroups": ["sae.ops.dev"], "resources": ["saeinstancedeletions"], "verbs": ["get", "list", "watch"]},
            {"apiGroups": ["events.k8s.io"], "resources": ["events"], "verbs": ["create", "patch"]},
         ]},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
         "metadata": {"name": "status-denied", "namespace": w.ns},
         "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "status-denied"},
         "subjects": [{"kind": "User", "apiGroup": "rbac.authorization.k8s.io", "name": user}]},
        // The controller reads the deletion policies and namespaces before it reconciles
        // anything: what every install grants (deploy/), cluster-wide.
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
         "metadata": {"name": format!("{}-status-denied-policies", w.ns)},
         "rules": [
            {"apiGroups": ["sae.ops.dev"], "resources": ["saedeletionpolicies"], "verbs": ["get", "list", "watch"]},
            {"apiGroups": [""], "resources": ["namespaces"], "verbs": ["get", "list", "watch"]},
         ]},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
         "metadata": {"name": format!("{}-status-denied-policies", w.ns)},
         "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": format!("{}-status-denied-policies", w.ns)},
         "subjects": [{"kind": "User", "apiGroup": "rbac.authorization.k8s.io", "name": user}]},
    ]});
    w.kubectl_stdin(&["apply", "-f", "-"], &rbac.to_string());
    let admin = std::fs::read_to_string(w.cp.admin_kubeconfig()).expect("admin kubeconfig");
    let token_line = admin
        .lines()
        .find(|l| l.trim_start().starts_with("token:"))
        .expect("the admin kubeconfig has a token");
    let indent = &token_line[..token_line.len() - token_line.trim_start().len()];
    let impersonating = admin.replace(token_line, &format!("{token_line}\n{indent}as: {user}"));
    let path =
        w.cp.dir()
            .join(format!("{}-status-denied.kubeconfig", w.ns));
    std::fs::write(&path, impersonating).expect("writing the kubeconfig");
    path
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_controllers_metrics_pass_promtool_and_hold_every_metric_the_alerts_use() {
    let mut w = World::start("monitoring", vec![app("app-mon", &["i-1", "i-2"])]).await;
    w.create("scraped", "app-mon", &["i-1"], json!({}));
    let status = w.wait_terminal("scraped", Duration::from_secs(60)).await;
    assert_eq!(status["phase"], "Succeeded", "{status:#}");
    // One that fails, so the failure outcomes exist too.
    w.create("missing", "no-such-app", &["i-9"], json!({}));
    let status = w.wait_terminal("missing", Duration::from_secs(60)).await;
    assert_eq!(status["phase"], "Failed", "{status:#}");
    // The phase gauge is refreshed every 10 s.
    let healthy = scrape_until(&w.controller, r#"sae_objects{phase="Failed"} 1"#).await;

    // The build it reports is the one `--version` names.
    let version = Command::new(env!("CARGO_BIN_EXE_sae-controller"))
        .arg("--version")
        .output()
        .expect("sae-controller --version");
    let version = String::from_utf8_lossy(&version.stdout).trim().to_owned();
    let (number, commit) = version
        .strip_prefix("sae-controller ")
        .and_then(|v| v.strip_suffix(')'))
        .and_then(|v| v.split_once(" (commit "))
        .unwrap_or_else(|| panic!("unexpected --version: {version}"));
    let build_info = format!(r#"sae_build_info{{version="{number}",commit="{commit}"}} 1"#);
    assert!(
        healthy.lines().any(|l| l == build_info),
        "no `{build_info}` in /metrics:\n{healthy}"
    );
    // The deletion policies' metrics exist before any refusal: every reason at 0, so a rate or
    // an alert reads 0 rather than nothing.
    for reason in [
        "NotPermitted",
        "DisruptionBudget",
        "OutsideMaintenanceWindow",
    ] {
        let line = format!(r#"sae_policy_refusals_total{{reason="{reason}"}} 0"#);
        assert!(
            healthy.lines().any(|l| l == line),
            "no `{line}` in /metrics:\n{healthy}"
        );
    }
    assert!(
        healthy
            .lines()
            .any(|l| l == r#"sae_policies{ready="false"} 0"#),
        "no sae_policies gauge in /metrics:\n{healthy}"
    );

    // The same scrape as Prometheus asks for it: OpenMetrics, with the same samples.
    let openmetrics = scrape(
        &w.controller,
        Some("application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5"),
    )
    .await;
    let content_type = openmetrics.headers()["content-type"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        content_type.starts_with("application/openmetrics-text"),
        "{content_type}"
    );
    let openmetrics = openmetrics.text().await.expect("body");
    assert!(openmetrics.ends_with("# EOF\n"), "{openmetrics}");
    assert_eq!(
        sample_names(&openmetrics),
        sample_names(&healthy),
        "the two formats carry different samples"
    );

    // A reconcile error, so that family is in an output too: a second controller on this
    // namespace whose identity may read the objects but not write their status. It never sends
    // anything: the status write that records an attempt comes before the attempt.
    w.controller.kill();
    let mut broken = Controller::spawn(
        &status_denied_kubeconfig(&w),
        &["--namespace", &w.ns, "--sae-endpoint", w.sim.url()],
        &[
            ("ALIBABA_CLOUD_ACCESS_KEY_ID", support::world::AK),
            ("ALIBABA_CLOUD_ACCESS_KEY_SECRET", support::world::SK),
        ],
    );
    w.create("unwritable", "app-mon", &["i-2"], json!({}));
    let failing = scrape_until(
        &broken,
        r#"sae_reconcile_errors_total{kind="status_write"}"#,
    )
    .await;
    broken.kill();
    assert_eq!(
        w.delete_requests("app-mon").await.len(),
        1,
        "only `scraped` was sent"
    );

    // promtool reads the classic text format, which is what a scrape without an OpenMetrics Accept
    // header (curl, promtool itself) gets.
    let dir = tempfile::tempdir().expect("temp dir");
    let mut served = BTreeSet::new();
    for exposition in [&healthy, &failing] {
        run_promtool(&["check", "metrics"], dir.path(), Some(exposition));
        // A labelled family has no sample until its first event, but is declared all the same.
        served.extend(sample_names(exposition));
        served.extend(declared_names(exposition));
    }
    let missing: Vec<String> = used_metric_names()
        .into_iter()
        .filter(|(name, _)| !served.contains(name) && !PROMETHEUS_METRICS.contains(&name.as_str()))
        .map(|(name, used_by)| format!("{name} (used by {used_by})"))
        .collect();
    assert!(
        missing.is_empty(),
        "metrics used but not served by the controller:\n{}\n\nserved:\n{healthy}\n{failing}",
        missing.join("\n")
    );
}
