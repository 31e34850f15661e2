//! Prometheus metrics for `/metrics`, in the OpenMetrics text format.
//!
//! Every metric carries the `sae_` prefix and, where it has one, its unit in the name. Labels are
//! bounded sets: SAE operation names, SAE error codes (plus a few transport classes), phases,
//! outcomes and AccessKeys. An AccessKey is named by [`AccessKeyLabel`], a short digest of its ID,
//! never by the ID itself: a Secret's `accessKeyId` can be any length, and the value must stay
//! short. At most [`MAX_ACCESS_KEY_SERIES`] keys have a series at a time, and the quota planner
//! removes a key's series when it forgets the key. The secret and the STS token never reach this
//! module.
//!
//! Depends on [`crate::sae`] only to name an error's code, and registers the operational metrics of
//! [`crate::ops_metrics`] alongside; no Kubernetes client, no I/O beyond rendering the text. Tests
//! live in `metrics/tests.rs`.

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
struct ReasonLabels {
    reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReadyLabels {
    ready: String,
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
    unreachable_objects: Gauge,
    leader: Gauge,
    policy_refusals: Family<ReasonLabels, Counter>,
    policies: Family<ReadyLabels, Gauge>,
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

        // The requests themselves are `sae_requests_total{code="NotSent"}`; this says how many
        // deletions wait on them, which an alert can hold for minutes (the sends thin out as the
        // outage lasts, so a rate would flicker).
        let unreachable_objects = Gauge::default();
        registry.register(
            "unreachable_objects",
            "Unfinished SaeInstanceDeletion objects whose last request could not reach SAE (status.saeUnreachableSince set)",
            unreachable_objects.clone(),
        );

        let leader = Gauge::default();
        leader.set(1);
        registry.register(
            "leader",
            "1 when this replica acts (it holds the lease, or no election is configured), 0 on standby",
            leader.clone(),
        );

        // Counted when an object's status turns to a refusal (or from one refusal to another),
        // not on every check that refuses again. Every reason starts at 0 so a rate reads 0, not
        // absent.
        let policy_refusals = Family::<ReasonLabels, Counter>::default();
        for reason in crate::crd::Reason::ALL
            .iter()
            .filter(|r| r.is_policy_refusal())
        {
            let _ = policy_refusals.get_or_create(&ReasonLabels {
                reason: reason.as_str().to_owned(),
            });
        }
        registry.register(
            "policy_refusals",
            "SaeInstanceDeletion objects a deletion policy began to refuse, by status reason",
            policy_refusals.clone(),
        );

        let policies = Family::<ReadyLabels, Gauge>::default();
        for ready in ["true", "false"] {
            let _ = policies.get_or_create(&ReadyLabels {
                ready: ready.to_owned(),
            });
        }
        registry.register(
            "policies",
            "SaeDeletionPolicy objects by readiness (false: invalid, it admits nothing)",
            policies.clone(),
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
                unreachable_objects,
                leader,
                policy_refusals,
                policies,
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

    /// How many unfinished objects wait on an unreachable SAE
    /// ([`crate::crd::SaeInstanceDeletionStatus::waits_on_unreachable_sae`]).
    pub fn set_unreachable_objects(&self, count: i64) {
        self.inner.unreachable_objects.set(count);
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

    /// An object's status turned to this policy refusal reason.
    pub fn policy_refusal(&self, reason: &str) {
        self.inner
            .policy_refusals
            .get_or_create(&ReasonLabels {
                reason: reason.to_owned(),
            })
            .inc();
    }

    /// The policies in the cluster: `ready` valid ones, `invalid` ones (which admit nothing).
    pub fn set_policies(&self, ready: i64, invalid: i64) {
        for (label, count) in [("true", ready), ("false", invalid)] {
            self.inner
                .policies
                .get_or_create(&ReadyLabels {
                    ready: label.to_owned(),
                })
                .set(count);
        }
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
mod tests;
