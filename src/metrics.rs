//! Prometheus metrics for `/metrics`, in the OpenMetrics text format.
//!
//! Every metric carries the `sae_` prefix and, where it has one, its unit in the name. Labels are
//! bounded sets: SAE operation names, SAE error codes (plus a few transport classes), phases,
//! outcomes and AccessKeys. An AccessKey is named by [`AccessKeyLabel`], a short digest of its ID,
//! never by the ID itself: a Secret's `accessKeyId` can be any length, and the value must stay
//! short. At most [`MAX_ACCESS_KEY_SERIES`] keys have a series at a time, and the quota planner
//! removes a key's series when it forgets the key. The secret and the STS token never reach this
//! module.

use std::collections::{BTreeSet, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::{Registry, Unit};

use crate::sae::{Operation, RequestObserver, SaeError};

/// The `Content-Type` of [`Metrics::encode`]'s output.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// The `code` label for a call SAE answered successfully.
pub const CODE_OK: &str = "OK";

/// Longest label value kept from an SAE answer. Documented SAE codes are far shorter; the cap only
/// guards the label set against an unexpected body.
const MAX_CODE_LEN: usize = 64;

/// Most AccessKeys with a `sae_quota_tokens` series at once; further keys are not reported until
/// a series is removed.
pub const MAX_ACCESS_KEY_SERIES: usize = 1024;

/// How metrics name an AccessKey: `ak-` and the first 8 hex digits of the SHA-256 of its ID, e.g.
/// `ak-1f0c39a2` (`printf %s "$ACCESS_KEY_ID" | sha256sum | cut -c1-8` gives the digits). Stable
/// across restarts and replicas, 11 characters whatever the ID, and it reveals nothing of the ID
/// beyond what a guess could confirm. Two keys sharing a label (one chance in about four billion
/// per pair) share a series.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct AccessKeyLabel(String);

impl AccessKeyLabel {
    pub fn of(access_key_id: &str) -> Self {
        use sha2::{Digest, Sha256};
        let digest = Sha256::digest(access_key_id.as_bytes());
        Self(format!("ak-{}", hex::encode(&digest[..4])))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for AccessKeyLabel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// The `code` label for the outcome of one SAE call: `OK`, SAE's own error code, or the transport
/// class when SAE gave no code (`NotSent`, `NoAnswer`, `InvalidRequest`).
pub fn sae_result_code<T>(result: &Result<T, SaeError>) -> &str {
    sae_outcome_code(result.as_ref().map(|_| ()))
}

/// [`sae_result_code`] of an outcome as the SAE client's [`RequestObserver`] reports it.
pub fn sae_outcome_code(outcome: Result<(), &SaeError>) -> &str {
    match outcome {
        Ok(()) => CODE_OK,
        Err(SaeError::Api { code, .. }) => code,
        Err(SaeError::NotSent { .. }) => "NotSent",
        Err(SaeError::NoAnswer { .. }) => "NoAnswer",
        Err(SaeError::InvalidRequest { .. }) => "InvalidRequest",
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    operation: String,
    code: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OperationLabels {
    operation: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct AccessKeyLabels {
    /// An [`AccessKeyLabel`], not the ID (the label name predates the digest).
    access_key_id: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PhaseLabels {
    phase: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabels {
    outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabels {
    kind: String,
}

type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

/// SAE calls run from a few milliseconds up to the client timeout (30 s by default).
fn request_duration_histogram() -> Histogram {
    // 5 ms .. ~41 s
    Histogram::new(exponential_buckets(0.005, 2.0, 14))
}

/// Waiting for a quota token is usually instant; a long wait means the key is saturated.
fn quota_wait_histogram() -> Histogram {
    // 1 ms .. ~65 s
    Histogram::new(exponential_buckets(0.001, 4.0, 9))
}

/// A deletion ends within seconds when SAE is idle, but can wait out change orders or upgrades
/// for hours.
fn deletion_duration_histogram() -> Histogram {
    Histogram::new([
        1.0, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1200.0, 1800.0, 3600.0, 7200.0, 21600.0,
        86400.0,
    ])
}

struct Inner {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    request_duration: HistogramFamily<OperationLabels>,
    quota_tokens: Family<AccessKeyLabels, Gauge<f64, std::sync::atomic::AtomicU64>>,
    /// Keys with a `quota_tokens` series, to cap their number.
    quota_token_keys: Mutex<HashSet<AccessKeyLabel>>,
    quota_wait: Histogram,
    objects: Family<PhaseLabels, Gauge>,
    /// Phases reported so far, so a phase that drops out of a later report reads 0 instead of
    /// keeping its last count.
    reported_phases: Mutex<BTreeSet<String>>,
    deletion_duration: HistogramFamily<OutcomeLabels>,
    reconcile_errors: Family<KindLabels, Counter>,
    reconciles: Counter,
    leader: Gauge,
    /// Build, watch health and deadline metrics (src/ops_metrics.rs).
    ops: crate::ops_metrics::OpsMetrics,
}

/// The controller's metrics. Cloning is cheap and every clone records into the same registry.
#[derive(Clone)]
pub struct Metrics {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// A fresh registry with every metric registered. `sae_leader` starts at 1, which is right when
    /// no leader election is configured; with election, call `set_leader(false)` before campaigning.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("sae");

        let requests = Family::<RequestLabels, Counter>::default();
        registry.register(
            "requests",
            "SAE API calls by operation and result code",
            requests.clone(),
        );

        let request_duration: HistogramFamily<OperationLabels> =
            Family::new_with_constructor(request_duration_histogram);
        registry.register_with_unit(
            "request_duration",
            "Time from sending an SAE API call to its answer or failure",
            Unit::Seconds,
            request_duration.clone(),
        );

        let quota_tokens =
            Family::<AccessKeyLabels, Gauge<f64, std::sync::atomic::AtomicU64>>::default();
        registry.register(
            "quota_tokens",
            "Tokens left in the client-side SAE request budget per AccessKey ID",
            quota_tokens.clone(),
        );

        let quota_wait = quota_wait_histogram();
        registry.register_with_unit(
            "quota_wait",
            "Time an SAE call waited for a request token",
            Unit::Seconds,
            quota_wait.clone(),
        );

        let objects = Family::<PhaseLabels, Gauge>::default();
        registry.register(
            "objects",
            "SaeInstanceDeletion objects by status phase",
            objects.clone(),
        );

        let deletion_duration: HistogramFamily<OutcomeLabels> =
            Family::new_with_constructor(deletion_duration_histogram);
        registry.register_with_unit(
            "deletion_duration",
            "Time from an object's creation to its terminal phase, by outcome",
            Unit::Seconds,
            deletion_duration.clone(),
        );

        let reconcile_errors = Family::<KindLabels, Counter>::default();
        registry.register(
            "reconcile_errors",
            "Reconciliations that ended in an error, by kind",
            reconcile_errors.clone(),
        );

        let reconciles = Counter::default();
        registry.register("reconcile", "Reconciliations run", reconciles.clone());

        let leader = Gauge::default();
        leader.set(1);
        registry.register(
            "leader",
            "1 when this replica acts (it holds the lease, or no election is configured), 0 on standby",
            leader.clone(),
        );

        let ops = crate::ops_metrics::OpsMetrics::register(&mut registry);

        Self {
            inner: Arc::new(Inner {
                registry,
                requests,
                request_duration,
                quota_tokens,
                quota_token_keys: Mutex::new(HashSet::new()),
                quota_wait,
                objects,
                reported_phases: Mutex::new(BTreeSet::new()),
                deletion_duration,
                reconcile_errors,
                reconciles,
                leader,
                ops,
            }),
        }
    }

    /// The build, watch-health and deadline metrics.
    pub fn ops(&self) -> &crate::ops_metrics::OpsMetrics {
        &self.inner.ops
    }

    /// Records one SAE call. `code` is [`CODE_OK`], SAE's error code or a transport class; see
    /// [`sae_result_code`] to derive it from a call's result.
    pub fn observe_sae_call(&self, operation: Operation, code: &str, elapsed: Duration) {
        let code = truncate(code, MAX_CODE_LEN);
        self.inner
            .requests
            .get_or_create(&RequestLabels {
                operation: operation.name().to_owned(),
                code: code.to_owned(),
            })
            .inc();
        self.inner
            .request_duration
            .get_or_create(&OperationLabels {
                operation: operation.name().to_owned(),
            })
            .observe(elapsed.as_secs_f64());
    }

    /// [`Self::observe_sae_call`] straight from a call's result.
    pub fn observe_sae_result<T>(
        &self,
        operation: Operation,
        result: &Result<T, SaeError>,
        elapsed: Duration,
    ) {
        self.observe_sae_call(operation, sae_result_code(result), elapsed);
    }

    /// An observer for [`crate::sae::SaeClient::with_observer`] that records every SAE request
    /// the client makes into `sae_requests_total` and `sae_request_duration_seconds`, each page of
    /// an instance listing under its own operation.
    pub fn sae_request_observer(&self) -> RequestObserver {
        let metrics = self.clone();
        Arc::new(move |operation, outcome, elapsed| {
            metrics.observe_sae_call(operation, sae_outcome_code(outcome), elapsed);
        })
    }

    /// Tokens currently left in the request budget of one AccessKey. A key beyond
    /// [`MAX_ACCESS_KEY_SERIES`] is not reported.
    pub fn set_quota_tokens(&self, key: &AccessKeyLabel, tokens: f64) {
        {
            let mut keys = self
                .inner
                .quota_token_keys
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            if !keys.contains(key) {
                if keys.len() >= MAX_ACCESS_KEY_SERIES {
                    return;
                }
                keys.insert(key.clone());
            }
        }
        self.inner
            .quota_tokens
            .get_or_create(&AccessKeyLabels {
                access_key_id: key.as_str().to_owned(),
            })
            .set(tokens);
    }

    /// Removes a key's `quota_tokens` series (the planner forgot the key).
    pub fn forget_quota_tokens(&self, key: &AccessKeyLabel) {
        let mut keys = self
            .inner
            .quota_token_keys
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if keys.remove(key) {
            self.inner.quota_tokens.remove(&AccessKeyLabels {
                access_key_id: key.as_str().to_owned(),
            });
        }
    }

    /// How long one SAE call waited for a request token.
    pub fn observe_quota_wait(&self, waited: Duration) {
        self.inner.quota_wait.observe(waited.as_secs_f64());
    }

    /// Replaces the per-phase object counts. Phases reported before but missing now are set to 0.
    pub fn set_objects_by_phase(&self, counts: &[(&str, i64)]) {
        let mut reported = self
            .inner
            .reported_phases
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        for phase in reported.iter() {
            if !counts.iter().any(|(p, _)| p == phase) {
                self.inner
                    .objects
                    .get_or_create(&PhaseLabels {
                        phase: phase.clone(),
                    })
                    .set(0);
            }
        }
        for (phase, count) in counts {
            self.inner
                .objects
                .get_or_create(&PhaseLabels {
                    phase: (*phase).to_owned(),
                })
                .set(*count);
            reported.insert((*phase).to_owned());
        }
    }

    /// An object reached a terminal phase `age` after its creation. `outcome` is the phase, or
    /// phase/reason (e.g. `Failed/ApplicationNotFound`).
    pub fn observe_terminal(&self, outcome: &str, age: Duration) {
        self.inner
            .deletion_duration
            .get_or_create(&OutcomeLabels {
                outcome: outcome.to_owned(),
            })
            .observe(age.as_secs_f64());
    }

    /// One reconciliation ended in an error of this kind.
    pub fn reconcile_error(&self, kind: &str) {
        self.inner
            .reconcile_errors
            .get_or_create(&KindLabels {
                kind: kind.to_owned(),
            })
            .inc();
    }

    /// One reconciliation ran (whatever its result).
    pub fn reconciled(&self) {
        self.inner.reconciles.inc();
    }

    /// Whether this replica acts: it holds the lease, or runs without leader election.
    pub fn set_leader(&self, leading: bool) {
        self.inner.leader.set(i64::from(leading));
    }

    /// The whole registry in the OpenMetrics text format, `# EOF` included.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail; an error here could only come from a label encoder,
        // and ours are plain strings.
        prometheus_client::encoding::text::encode(&mut out, &self.inner.registry)
            .expect("encoding metrics into a String");
        out
    }
}

/// Cuts `s` to at most `max` bytes on a character boundary.
fn truncate(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sae::Credentials;

    /// The value of the sample `name{labels}` in an OpenMetrics text, labels given in their
    /// encoded order (`a="x",b="y"`), or without braces when `labels` is empty.
    fn sample(text: &str, name: &str, labels: &str) -> Option<f64> {
        let key = if labels.is_empty() {
            name.to_owned()
        } else {
            format!("{name}{{{labels}}}")
        };
        text.lines().find_map(|line| {
            let (series, value) = line.rsplit_once(' ')?;
            (series == key).then(|| value.parse().expect("sample value is a number"))
        })
    }

    #[test]
    fn every_metric_is_declared_with_prefix_type_and_unit() {
        let metrics = Metrics::new();
        // A labelled family shows up from its first series on; the unlabelled ones from the start.
        let fresh = metrics.encode();
        assert!(fresh.contains("# TYPE sae_leader gauge"), "{fresh}");
        assert!(
            !fresh.contains("sae_requests"),
            "an unused family has no series: {fresh}"
        );

        metrics.observe_sae_call(
            Operation::DeleteInstances,
            CODE_OK,
            Duration::from_millis(5),
        );
        metrics.set_quota_tokens(&AccessKeyLabel::of("LTAI5tKeyId"), 1.0);
        metrics.set_objects_by_phase(&[("Pending", 1)]);
        metrics.observe_terminal("Succeeded", Duration::from_secs(1));
        metrics.reconcile_error("Kube");
        let text = metrics.encode();
        for declaration in [
            "# TYPE sae_requests counter",
            "# TYPE sae_request_duration_seconds histogram",
            "# UNIT sae_request_duration_seconds seconds",
            "# TYPE sae_quota_tokens gauge",
            "# TYPE sae_quota_wait_seconds histogram",
            "# UNIT sae_quota_wait_seconds seconds",
            "# TYPE sae_objects gauge",
            "# TYPE sae_deletion_duration_seconds histogram",
            "# UNIT sae_deletion_duration_seconds seconds",
            "# TYPE sae_reconcile_errors counter",
            "# TYPE sae_reconcile counter",
            "# TYPE sae_leader gauge",
        ] {
            assert!(
                text.contains(declaration),
                "missing {declaration:?} in:\n{text}"
            );
        }
        assert!(
            text.ends_with("# EOF\n"),
            "OpenMetrics text must end with # EOF:\n{text}"
        );
        assert_eq!(
            sample(&text, "sae_leader", ""),
            Some(1.0),
            "no election configured means leading"
        );
        assert_eq!(sample(&text, "sae_reconcile_total", ""), Some(0.0));
    }

    #[test]
    fn sae_calls_count_by_operation_and_code_and_time_by_operation() {
        let metrics = Metrics::new();
        metrics.observe_sae_call(
            Operation::DeleteInstances,
            CODE_OK,
            Duration::from_millis(120),
        );
        // What the SAE client's observer reports lands in the same series.
        let observer = metrics.sae_request_observer();
        observer(
            Operation::DescribeApplicationInstances,
            Ok(()),
            Duration::from_millis(3),
        );
        metrics.observe_sae_call(
            Operation::DeleteInstances,
            "Application.ChangerOrderRunning",
            Duration::from_millis(80),
        );
        metrics.observe_sae_call(
            Operation::DeleteInstances,
            "Application.ChangerOrderRunning",
            Duration::from_millis(90),
        );
        metrics.observe_sae_result::<()>(
            Operation::DescribeChangeOrder,
            &Err(SaeError::NoAnswer {
                operation: "DescribeChangeOrder",
                detail: "timed out".into(),
            }),
            Duration::from_secs(30),
        );
        metrics.observe_sae_result(
            Operation::DescribeChangeOrder,
            &Err::<(), _>(SaeError::NotSent {
                operation: "DescribeChangeOrder",
                endpoint: "https://sae.example".into(),
                detail: "connection refused".into(),
            }),
            Duration::from_millis(1),
        );
        let text = metrics.encode();

        let count = |labels: &str| sample(&text, "sae_requests_total", labels);
        assert_eq!(count(r#"operation="DeleteInstances",code="OK""#), Some(1.0));
        assert_eq!(
            count(r#"operation="DescribeApplicationInstances",code="OK""#),
            Some(1.0)
        );
        assert_eq!(
            count(r#"operation="DeleteInstances",code="Application.ChangerOrderRunning""#),
            Some(2.0)
        );
        assert_eq!(
            count(r#"operation="DescribeChangeOrder",code="NoAnswer""#),
            Some(1.0)
        );
        assert_eq!(
            count(r#"operation="DescribeChangeOrder",code="NotSent""#),
            Some(1.0)
        );

        let duration = |suffix: &str, labels: &str| {
            sample(
                &text,
                &format!("sae_request_duration_seconds{suffix}"),
                labels,
            )
        };
        assert_eq!(
            duration("_count", r#"operation="DescribeApplicationInstances""#),
            Some(1.0)
        );
        assert_eq!(
            duration("_count", r#"operation="DeleteInstances""#),
            Some(3.0)
        );
        let sum = duration("_sum", r#"operation="DeleteInstances""#)
            .expect("sum of DeleteInstances durations");
        assert!((sum - 0.29).abs() < 1e-9, "sum {sum}");
        // 80, 90 and 120 ms all fall at or below the 0.16 s bucket, none at or below 0.04 s.
        assert_eq!(
            duration("_bucket", r#"le="0.16",operation="DeleteInstances""#),
            Some(3.0)
        );
        assert_eq!(
            duration("_bucket", r#"le="0.04",operation="DeleteInstances""#),
            Some(0.0)
        );
        assert_eq!(
            duration("_count", r#"operation="DescribeChangeOrder""#),
            Some(2.0)
        );
    }

    #[test]
    fn result_code_covers_every_error_variant() {
        let api = SaeError::Api {
            operation: "DeleteInstances",
            http_status: 400,
            code: "InvalidApplication.NotFound".into(),
            message: "no such app".into(),
            request_id: Some("req-1".into()),
            retry_after: None,
        };
        assert_eq!(
            sae_result_code(&Err::<(), _>(api)),
            "InvalidApplication.NotFound"
        );
        assert_eq!(sae_result_code(&Ok::<_, SaeError>(())), "OK");
        let invalid = SaeError::InvalidRequest {
            operation: "DeleteInstances",
            detail: "bad endpoint".into(),
        };
        assert_eq!(sae_result_code(&Err::<(), _>(invalid)), "InvalidRequest");
    }

    #[test]
    fn an_oversized_code_is_cut_before_it_becomes_a_label() {
        let metrics = Metrics::new();
        let long = "X".repeat(500);
        metrics.observe_sae_call(Operation::DeleteInstances, &long, Duration::ZERO);
        let text = metrics.encode();
        let cut = "X".repeat(MAX_CODE_LEN);
        assert_eq!(
            sample(
                &text,
                "sae_requests_total",
                &format!(r#"operation="DeleteInstances",code="{cut}""#)
            ),
            Some(1.0)
        );
        assert!(!text.contains(&"X".repeat(MAX_CODE_LEN + 1)));
    }

    #[test]
    fn quota_metrics_name_the_key_by_a_digest_and_never_carry_the_secret() {
        let credentials = Credentials::new(
            "LTAI5tExampleKeyId",
            "very-secret-value",
            Some("sts-token-value".into()),
        );
        let metrics = Metrics::new();
        let label = AccessKeyLabel::of(credentials.access_key_id());
        metrics.set_quota_tokens(&label, 7.5);
        metrics.set_quota_tokens(&label, 3.25);
        metrics.observe_quota_wait(Duration::from_millis(250));
        metrics.observe_quota_wait(Duration::ZERO);
        let text = metrics.encode();

        assert_eq!(
            sample(
                &text,
                "sae_quota_tokens",
                &format!(r#"access_key_id="{label}""#)
            ),
            Some(3.25)
        );
        assert_eq!(sample(&text, "sae_quota_wait_seconds_count", ""), Some(2.0));
        assert_eq!(sample(&text, "sae_quota_wait_seconds_sum", ""), Some(0.25));
        assert!(!text.contains("LTAI5tExampleKeyId"), "raw id:\n{text}");
        assert!(
            !text.contains("very-secret-value"),
            "secret leaked:\n{text}"
        );
        assert!(!text.contains("sts-token-value"), "token leaked:\n{text}");
        assert!(!format!("{metrics:?}").contains("secret"));
    }

    #[test]
    fn access_key_labels_are_short_stable_digests() {
        // SHA-256("abc") starts ba7816bf (FIPS 180-2, appendix B.1).
        assert_eq!(AccessKeyLabel::of("abc").as_str(), "ak-ba7816bf");
        assert_eq!(AccessKeyLabel::of("abc"), AccessKeyLabel::of("abc"));
        assert_ne!(AccessKeyLabel::of("abc"), AccessKeyLabel::of("abd"));
        let huge = "L".repeat(1 << 20);
        let label = AccessKeyLabel::of(&huge);
        assert_eq!(label.as_str().len(), 11);
        assert!(label.as_str().starts_with("ak-"));
        assert!(label.as_str()[3..].bytes().all(|b| b.is_ascii_hexdigit()));
        assert_eq!(AccessKeyLabel::of("").as_str().len(), 11);
    }

    #[test]
    fn quota_series_are_capped_and_removed_when_forgotten() {
        let metrics = Metrics::new();
        let labels: Vec<AccessKeyLabel> = (0..MAX_ACCESS_KEY_SERIES + 10)
            .map(|i| AccessKeyLabel::of(&format!("STS.rotated-{i}")))
            .collect();
        for label in &labels {
            metrics.set_quota_tokens(label, 1.0);
        }
        let series = |text: &str| {
            text.lines()
                .filter(|l| l.starts_with("sae_quota_tokens{"))
                .count()
        };
        assert_eq!(series(&metrics.encode()), MAX_ACCESS_KEY_SERIES);
        let beyond = &labels[MAX_ACCESS_KEY_SERIES];
        let has = |text: &str, label: &AccessKeyLabel| {
            sample(
                text,
                "sae_quota_tokens",
                &format!(r#"access_key_id="{label}""#),
            )
            .is_some()
        };
        assert!(
            !has(&metrics.encode(), beyond),
            "over the cap: not reported"
        );

        // Forgetting one makes room; forgetting twice or an unknown key is harmless.
        metrics.forget_quota_tokens(&labels[0]);
        metrics.forget_quota_tokens(&labels[0]);
        metrics.forget_quota_tokens(beyond);
        let text = metrics.encode();
        assert!(!has(&text, &labels[0]));
        assert_eq!(series(&text), MAX_ACCESS_KEY_SERIES - 1);
        metrics.set_quota_tokens(beyond, 2.0);
        assert!(has(&metrics.encode(), beyond));
        assert_eq!(series(&metrics.encode()), MAX_ACCESS_KEY_SERIES);
    }

    #[test]
    fn object_counts_replace_the_previous_report() {
        let metrics = Metrics::new();
        metrics.set_objects_by_phase(&[("Pending", 2), ("InProgress", 1), ("Succeeded", 4)]);
        metrics.set_objects_by_phase(&[("Succeeded", 6), ("Failed", 1)]);
        let text = metrics.encode();
        let objects = |phase: &str| sample(&text, "sae_objects", &format!(r#"phase="{phase}""#));
        assert_eq!(objects("Succeeded"), Some(6.0));
        assert_eq!(objects("Failed"), Some(1.0));
        assert_eq!(
            objects("Pending"),
            Some(0.0),
            "a phase no longer reported must read 0"
        );
        assert_eq!(objects("InProgress"), Some(0.0));
    }

    #[test]
    fn terminal_outcomes_reconciles_errors_and_leadership_are_recorded() {
        let metrics = Metrics::new();
        metrics.observe_terminal("Succeeded", Duration::from_secs(42));
        metrics.observe_terminal("Failed/ApplicationNotFound", Duration::from_secs(3));
        metrics.observe_terminal("Succeeded", Duration::from_secs(700));
        metrics.reconciled();
        metrics.reconciled();
        metrics.reconciled();
        metrics.reconcile_error("Kube");
        metrics.reconcile_error("Kube");
        metrics.reconcile_error("MissingSecret");
        metrics.set_leader(false);
        let clone = metrics.clone();
        clone.reconciled();
        let text = metrics.encode();

        let deletion = |suffix: &str, labels: &str| {
            sample(
                &text,
                &format!("sae_deletion_duration_seconds{suffix}"),
                labels,
            )
        };
        assert_eq!(deletion("_count", r#"outcome="Succeeded""#), Some(2.0));
        assert_eq!(deletion("_sum", r#"outcome="Succeeded""#), Some(742.0));
        assert_eq!(
            deletion("_bucket", r#"le="60.0",outcome="Succeeded""#),
            Some(1.0)
        );
        assert_eq!(
            deletion("_bucket", r#"le="+Inf",outcome="Succeeded""#),
            Some(2.0)
        );
        assert_eq!(
            deletion("_count", r#"outcome="Failed/ApplicationNotFound""#),
            Some(1.0)
        );

        assert_eq!(
            sample(&text, "sae_reconcile_total", ""),
            Some(4.0),
            "clones share the registry"
        );
        assert_eq!(
            sample(&text, "sae_reconcile_errors_total", r#"kind="Kube""#),
            Some(2.0)
        );
        assert_eq!(
            sample(
                &text,
                "sae_reconcile_errors_total",
                r#"kind="MissingSecret""#
            ),
            Some(1.0)
        );
        assert_eq!(sample(&text, "sae_leader", ""), Some(0.0));
        metrics.set_leader(true);
        assert_eq!(sample(&metrics.encode(), "sae_leader", ""), Some(1.0));
    }
}
