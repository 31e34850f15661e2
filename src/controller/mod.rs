//! The production side of the reconcile loop: the watch on `SaeInstanceDeletion` objects, the
//! shared [`Context`], and the [`crate::steps::Effects`] that carry [`crate::decide`]'s choices out to the
//! API server, the quota planner and SAE. Every choice is made by `decide`; the code here performs
//! it and reports back what happened.
//!
//! Two rules keep the I/O honest:
//! - Every status write is a PUT carrying the resourceVersion the decision was made from, so a
//!   decision taken on a stale cache can never land (the API server answers 409 and we start over).
//! - DeleteInstances is sent only after the write that records the attempt (`Submitting`) succeeded.
//!
//! One write may wait: the status recording SAE's acceptance is held for the first change-order
//! poll (about a second) and written with its result ([`crate::decide::Action::FirstPoll`]); until
//! then the API server shows the attempt as `Submitting`, which a restart resolves by adoption.
//!
//! Where things live:
//! - this file: [`Settings`], [`Context`], [`Error`] and [`run`] (the watch, the cache and the
//!   kube-runtime controller around [`effects::reconcile`]);
//! - [`effects`]: one reconcile, and the `Reconciler` that implements [`crate::steps::Effects`];
//! - [`slot`]: a reconcile's place among those doing work, given back while it waits;
//! - [`sae_calls`]: SAE requests behind the quota and the leader fence, with their metrics;
//! - [`look`]: the shared look at an app that resolves a lost answer;
//! - [`claims`]: one attempt per app at a time, and waking the next object in line;
//! - [`status_write`]: the guarded status PUT, what follows it, and events;
//! - [`credentials`]: whose AccessKey signs an object's calls;
//! - [`finished`]: what is kept of finished and deleted objects outside the cache;
//! - [`policies`]: the deletion policies applied to one object, and the policy and namespace
//!   watches (policy status, waking refused objects);
//! - [`watch_health`]: whether the watch makes progress, for `/healthz`.
//!
//! Nothing here decides: a rule about phases, reasons or when to send belongs in `decide`. SAE's
//! wire format belongs in [`crate::sae`]; the lease in [`crate::leader`].

mod claims;
mod credentials;
mod effects;
mod finished;
mod look;
mod policies;
mod sae_calls;
mod slot;
mod status_write;
#[cfg(test)]
mod tests;
mod watch_health;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use futures::StreamExt;
use jiff::{SignedDuration, Timestamp};
use kube::api::Api;
use kube::runtime::controller::{Action as Requeue, Config as ControllerConfig, Controller};
use kube::runtime::events::{Recorder, Reporter};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{WatchStreamExt, predicates, watcher};
use kube::{Client, ResourceExt};
use tracing::warn;

use crate::crd::{Phase, SaeInstanceDeletion};
pub use crate::leader::LeaderFence;
use crate::metrics::Metrics;
use crate::quota::QuotaPlanner;
use crate::sae::SaeClient;
pub use credentials::{DefaultCredentials, credentials_from_secret};
use effects::reconcile;
pub use finished::Finished;
use look::{Look, LookKey};
pub use policies::PolicyCaches;
pub use watch_health::WatchHealth;

/// The name under which the controller writes status and publishes events.
pub const CONTROLLER_NAME: &str = "sae-controller";

/// How the controller is set up; everything here comes from flags.
#[derive(Clone, Debug)]
pub struct Settings {
    /// Watch only this namespace (None: all).
    pub namespace: Option<String>,
    /// How long after a send SAE may still act on it: the client's total timeout plus a margin.
    pub resolve_after: SignedDuration,
    /// The UTC offset SAE's zone-less `CreateTime` is written in, when the operator states it
    /// (`--sae-create-time-offset`). None: learned from SAE's answers (see `decide`).
    pub create_time_offset: Option<jiff::tz::Offset>,
    /// How long SAE's lists may lag its writes (`--sae-read-settle-seconds`; see `decide::SETTLE`).
    pub settle: SignedDuration,
    /// With no SaeDeletionPolicy in the cluster, admit nothing (`--require-policy`).
    pub require_policy: bool,
}

/// What the reconciler needs, shared by all reconciles.
pub struct Context {
    pub client: Client,
    pub sae: SaeClient,
    pub recorder: Recorder,
    /// The controller's own credentials (RRSA or environment), used when an object names no Secret.
    pub default_credentials: DefaultCredentials,
    pub settings: Settings,
    pub metrics: Metrics,
    /// Present when leader election is on: checked right before every DeleteInstances.
    pub fence: Option<LeaderFence>,
    /// Every watched object as last seen: the per-app queue and the change orders other objects
    /// own are read from here, so both survive a restart.
    store: Store<SaeInstanceDeletion>,
    /// Every SAE call takes a token of its AccessKey's bucket first (unlimited unless set).
    quota: QuotaPlanner,
    /// Reconciles the next object in line when one releases its app (set by [`run`]).
    wake: Option<futures::channel::mpsc::UnboundedSender<ObjectRef<SaeInstanceDeletion>>>,
    /// Apps this process has started an attempt on, by (region, app): (object uid, since). The
    /// cache shows a write-ahead only a moment after it is made; a claim covers that moment, so
    /// two objects of one app never both see it free.
    claims: std::sync::Mutex<HashMap<(String, String), (String, Instant)>>,
    /// Finished objects, which the cache does not hold (set by [`run`]).
    finished: Finished,
    /// The deletion policies and the namespaces' labels (set by [`run`]; empty otherwise).
    policy_caches: policies::PolicyCaches,
    /// Reconciles doing work at once. A reconcile waiting for a quota token gives its slot back,
    /// so one paused or busy AccessKey cannot hold up the objects of any other.
    slots: Arc<tokio::sync::Semaphore>,
    /// The last look at each app for lost attempts, so that one look serves every object
    /// resolving on that app at about the same time (after a restart, say).
    looks: std::sync::Mutex<HashMap<LookKey, Arc<tokio::sync::Mutex<Option<Look>>>>>,
    /// (region, app) whose last look listed change orders with zone-less times while the zone was
    /// unknown: no look there can conclude until it is learned (see `look.rs`).
    zoneless_apps: std::sync::Mutex<std::collections::HashSet<(String, String)>>,
}

/// Reconciles doing work (not waiting for quota) at once.
const RECONCILE_CONCURRENCY: usize = 64;

/// What the controller talks to and reports through, made by the binary (or a test).
pub struct Services {
    pub client: Client,
    pub sae: SaeClient,
    /// Used when an object names no Secret.
    pub default_credentials: DefaultCredentials,
    pub metrics: Metrics,
    /// Present when leader election is on.
    pub fence: Option<LeaderFence>,
}

impl Context {
    pub fn new(services: Services, settings: Settings, store: Store<SaeInstanceDeletion>) -> Self {
        let Services {
            client,
            sae,
            default_credentials,
            metrics,
            fence,
        } = services;
        let reporter = Reporter {
            controller: CONTROLLER_NAME.into(),
            instance: std::env::var("POD_NAME").ok(),
        };
        Self {
            recorder: Recorder::new(client.clone(), reporter),
            client,
            // Every SAE request is counted where it is made, each page of a listing under its own
            // operation.
            sae: sae.with_observer(metrics.sae_request_observer()),
            default_credentials,
            settings,
            metrics,
            fence,
            store,
            quota: QuotaPlanner::new(0, None),
            wake: None,
            claims: Default::default(),
            finished: Finished::default(),
            policy_caches: Default::default(),
            slots: Arc::new(tokio::sync::Semaphore::new(RECONCILE_CONCURRENCY)),
            looks: Default::default(),
            zoneless_apps: Default::default(),
        }
    }

    /// Plans every SAE call into `requests_per_minute` per AccessKey (0: no client-side limit).
    pub fn with_quota(mut self, requests_per_minute: u32) -> Self {
        self.quota = QuotaPlanner::new(requests_per_minute, Some(self.metrics.clone()));
        self
    }
}

/// Failures of the Kubernetes side of a reconcile; SAE failures are observations, not errors.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("writing status of {object}: {source}")]
    StatusWrite { object: String, source: kube::Error },
    #[error("internal: {0}")]
    Internal(String),
    /// The object's deadline came while it waited for a quota token (handled in `reconcile`).
    #[error("the deadline passed while waiting for SAE quota")]
    QuotaPastDeadline,
}

pub(super) fn is_terminal(obj: &SaeInstanceDeletion) -> bool {
    obj.status.as_ref().is_some_and(|s| s.is_terminal())
}

/// Requeue delay until `t`, at least a short moment so a clock at the boundary cannot spin.
pub(super) fn until(t: Timestamp) -> Duration {
    let d = t.duration_since(Timestamp::now());
    Duration::try_from(d)
        .unwrap_or_default()
        .max(Duration::from_millis(200))
}

/// Cuts an object down to what decisions read before it enters the cache: managedFields, labels
/// and annotations can be most of an object's size. Safe because a status PUT takes only `status`
/// from what we send (the API server copies everything else from the stored object).
pub fn slim_for_cache(obj: &mut SaeInstanceDeletion) {
    obj.metadata.managed_fields = None;
    obj.metadata.annotations = None;
    obj.metadata.labels = None;
}

fn error_policy(obj: Arc<SaeInstanceDeletion>, err: &Error, ctx: Arc<Context>) -> Requeue {
    warn!(object = %obj.name_any(), error = %err, "reconcile failed; retrying");
    ctx.metrics.reconcile_error(match err {
        Error::StatusWrite { .. } => "status_write",
        Error::Internal(_) => "internal",
        Error::QuotaPastDeadline => "quota_past_deadline",
    });
    Requeue::requeue(Duration::from_secs(5))
}

/// Runs the controller until the process is asked to stop. `ready` is set once the object cache
/// has synced (for `/readyz`).
pub async fn run(
    services: Services,
    settings: Settings,
    ready: Arc<AtomicBool>,
    health: WatchHealth,
    requests_per_minute: u32,
) {
    let (client, metrics) = (services.client.clone(), services.metrics.clone());
    let api: Api<SaeInstanceDeletion> = match &settings.namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    };
    let (store, writer) = reflector::store();
    let finished = Finished::default();
    let keep = finished.clone();
    let watch_health = health.clone();
    // The initial list is paged (500 objects a page). `any_semantic` would let the API server
    // answer from its watch cache, which ignores paging: one response holding every object, the
    // largest allocation this process would ever make.
    let stream = watcher(api, watcher::Config::default().page_size(500))
        .default_backoff()
        .inspect(move |event| watch_health.note_event(event.is_ok()))
        .filter_map(move |event| std::future::ready(keep.keep_live_only(event)))
        .modify(slim_for_cache)
        .reflect(writer)
        .touched_objects()
        // Only new objects and spec edits start a reconcile. Our own status writes do not: the
        // reconcile that wrote one carries on (or has scheduled its next step), and an extra
        // reconcile would only read a cache that may not show that write yet.
        .predicate_filter(predicates::generation, Default::default());
    let controller = Controller::for_stream(stream, store.clone());
    let watched = store.clone();
    tokio::spawn(async move {
        // The store's readiness future keeps a single waker and the controller's own runner waits
        // on it too, so a one-off wait here may never be woken: ask again until it answers.
        loop {
            if let Ok(Ok(())) =
                tokio::time::timeout(Duration::from_millis(500), watched.wait_until_ready()).await
            {
                ready.store(true, Ordering::SeqCst);
                break;
            }
        }
    });
    let gauge_store = store.clone();
    let gauge_finished = finished.clone();
    let gauge_metrics = metrics.clone();
    tokio::spawn(async move {
        // Objects by phase, from the cache: no API calls.
        loop {
            tokio::time::sleep(Duration::from_secs(10)).await;
            let mut counts: std::collections::BTreeMap<&'static str, i64> =
                std::collections::BTreeMap::new();
            for obj in gauge_store.state() {
                let phase = obj
                    .status
                    .as_ref()
                    .and_then(|s| s.phase)
                    .map(Phase::as_str)
                    .unwrap_or("New");
                *counts.entry(phase).or_default() += 1;
            }
            for (phase, count) in gauge_finished.count_by_phase() {
                *counts.entry(phase).or_default() += count;
            }
            gauge_metrics.set_objects_by_phase(&counts.into_iter().collect::<Vec<_>>());
            // Finished objects are not cached, and only unfinished ones count here.
            let cached = gauge_store.state();
            gauge_metrics
                .ops()
                .set_deadline_used(cached.iter().map(|o| &**o), Timestamp::now());
            let unreachable = cached
                .iter()
                .filter(|o| {
                    o.status
                        .as_ref()
                        .is_some_and(|s| s.waits_on_unreachable_sae())
                })
                .count();
            gauge_metrics.set_unreachable_objects(i64::try_from(unreachable).unwrap_or(i64::MAX));
        }
    });
    let (wake, woken) = futures::channel::mpsc::unbounded();
    // The policies (cluster-scoped, whatever --namespace says: they bind every object) and the
    // namespaces' labels (for namespaceSelector; only the served namespace when confined). Both
    // are watched always, not only once a policy uses a selector: a watch started late would
    // decide on a cache that is not filled yet.
    let (policy_store, policy_writer) = reflector::store();
    let (namespace_store, namespace_writer) = reflector::store();
    let caches = PolicyCaches::new(policy_store, namespace_store);
    let watching = || policies::Watching {
        client: client.clone(),
        objects: store.clone(),
        wake: wake.clone(),
        metrics: metrics.clone(),
        recorder: Recorder::new(
            client.clone(),
            Reporter {
                controller: CONTROLLER_NAME.into(),
                instance: std::env::var("POD_NAME").ok(),
            },
        ),
    };
    tokio::spawn(policies::watch_policies(
        caches.clone(),
        policy_writer,
        watching(),
    ));
    tokio::spawn(policies::watch_namespaces(
        namespace_writer,
        settings.namespace.clone(),
        watching(),
    ));
    let mut ctx = Context::new(services, settings, store).with_quota(requests_per_minute);
    ctx.wake = Some(wake);
    ctx.finished = finished;
    ctx.policy_caches = caches.clone();
    let ctx = Arc::new(ctx);
    // No object is decided on before the policies and namespaces are known: "no policy" read
    // from an empty cache would admit what a policy refuses.
    policies::wait_for_caches(&caches).await;
    controller
        // Reconciles wait on SAE's quota, not on CPU: a bounded number in flight keeps memory flat
        // when thousands of objects are scheduled at once (a restart, a bulk apply).
        // (0: unbounded here; `Context::slots` bounds the reconciles doing work, and a reconcile
        // waiting for quota holds no slot.)
        .with_config(ControllerConfig::default().concurrency(0))
        .reconcile_on(woken)
        .shutdown_on_signal()
        .run(reconcile, error_policy, ctx.clone())
        .for_each(|result| {
            let ctx = ctx.clone();
            async move {
                match result {
                    Ok(_) => ctx.metrics.reconciled(),
                    // A requeued object that finished meanwhile is no longer cached: expected.
                    Err(kube::runtime::controller::Error::ObjectNotFound(obj)) => {
                        tracing::debug!(object = %obj, "finished object not reconciled again")
                    }
                    Err(err) => warn!(error = %err, "controller event"),
                }
            }
        })
        .await;
}
