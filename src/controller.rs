//! The Kubernetes wiring around [`crate::decide::decide`]: watch objects, look up credentials, write
//! status, publish events, call SAE. Every choice is made by `decide`; this module only carries
//! observations in and actions out.
//!
//! Two rules keep the I/O honest:
//! - Every status write is a PUT carrying the resourceVersion the decision was made from, so a
//!   decision taken on a stale cache can never land (the API server answers 409 and we start over).
//! - DeleteInstances is sent only after the write that records the attempt (`Submitting`) succeeded.
//!
//! One write may wait: the status recording SAE's acceptance is held for the first change-order
//! poll (about a second) and written with its result ([`Action::FirstPoll`]); until then the API
//! server shows the attempt as `Submitting`, which a restart resolves by adoption.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use backon::{ExponentialBuilder, Retryable as _};
use futures::StreamExt;
use jiff::{SignedDuration, Timestamp};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, PostParams};
use kube::runtime::controller::{Action as Requeue, Config as ControllerConfig, Controller};
use kube::runtime::events::{Event as KubeEvent, EventType, Recorder, Reporter};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{WatchStreamExt, predicates, watcher};
use kube::{Client, Resource, ResourceExt};
use tracing::{Instrument, info, info_span, warn};

use crate::crd::{Phase, SaeInstanceDeletion, SaeInstanceDeletionStatus};
use crate::decide::{
    AppTurn, Clock, Event, Evidence, FoundChangeOrder, SEND_BOUND, app_turn, holds_app,
    list_covers, object_key, queue_order, shares_app, waits_in_line,
};
use crate::metrics::Metrics;
use crate::quota::{Priority, QuotaPlanner};
use crate::sae::time::{CreateTimeZone, parse_sae_time};
use crate::sae::{
    AppInstances, ChangeOrder, Credentials, DeleteAccepted, RrsaProvider, SaeClient, SaeError,
};
use crate::steps::{self, Effects, Outcome, Token};

/// The name under which the controller writes status and publishes events.
pub const CONTROLLER_NAME: &str = "sae-controller";

/// Fallback requeue when the API server refused a status write for being stale: the watch event for
/// the newer version normally arrives first.
const CONFLICT_REQUEUE: Duration = Duration::from_secs(2);

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
}

/// The controller's own credentials, used for objects without `spec.credentialsRef`. RRSA wins
/// over an AccessKey in the environment (see docs/credentials.md).
#[derive(Clone, Debug, Default)]
pub enum DefaultCredentials {
    #[default]
    None,
    /// `ALIBABA_CLOUD_ACCESS_KEY_ID` / `_SECRET` (/ `_SECURITY_TOKEN`).
    Static(Credentials),
    /// STS credentials from the pod's OIDC token, cached and refreshed.
    Rrsa(RrsaProvider),
    /// The SDKs' chain (environment, RRSA, mounted Secret, credentials file, ECS RAM role), see
    /// [`crate::sae::chain`].
    Chain(crate::sae::CredentialChain),
}

impl From<Option<Credentials>> for DefaultCredentials {
    fn from(credentials: Option<Credentials>) -> Self {
        credentials.map_or(Self::None, Self::Static)
    }
}

impl DefaultCredentials {
    /// Credentials to sign with; errors are messages for the object's status.
    pub async fn get(&self) -> Result<Credentials, String> {
        match self {
            Self::Static(credentials) => Ok(credentials.clone()),
            Self::Rrsa(provider) => provider.credentials().await.map_err(|why| format!("RRSA: {why}")),
            Self::Chain(chain) => chain.credentials().await,
            Self::None => Err("spec.credentialsRef is not set and the controller has no credentials of its own: \
                 set credentialsRef to a Secret with keys accessKeyId and accessKeySecret, or give the controller \
                 RRSA (ALIBABA_CLOUD_ROLE_ARN, ALIBABA_CLOUD_OIDC_PROVIDER_ARN, ALIBABA_CLOUD_OIDC_TOKEN_FILE) or \
                 ALIBABA_CLOUD_ACCESS_KEY_ID / ALIBABA_CLOUD_ACCESS_KEY_SECRET"
                .to_string()),
        }
    }
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
    /// Reconciles doing work at once. A reconcile waiting for a quota token gives its slot back,
    /// so one paused or busy AccessKey cannot hold up the objects of any other.
    slots: Arc<tokio::sync::Semaphore>,
    /// The last look at each app for lost attempts, so that one look serves every object
    /// resolving on that app at about the same time (after a restart, say).
    looks: std::sync::Mutex<HashMap<LookKey, Arc<tokio::sync::Mutex<Option<Look>>>>>,
}

/// (region, app, AccessKey ID): a look made with one key is not shown to another.
type LookKey = (String, String, String);

/// What one look at an app for lost attempts saw.
#[derive(Clone)]
struct Look {
    taken: Instant,
    /// How far back the change-order list was read.
    since: Timestamp,
    /// Rows that may be deletions, before anyone's claims are taken out.
    change_orders: Vec<FoundChangeOrder>,
    complete: bool,
    instances: AppInstances,
}

/// A look this recent serves another object of the same app.
const LOOK_SHARED_FOR: Duration = Duration::from_secs(2);

/// Finished objects, kept out of the cache: a terminal object is never touched again, so all that
/// is left to know of it is its change order (so that a lost answer of another object is never
/// matched to it) and its phase (for the `sae_objects` gauge). A few dozen bytes instead of the
/// whole object.
#[derive(Clone, Default)]
pub struct Finished {
    by_uid: Arc<std::sync::Mutex<FinishedByUid>>,
}

/// What is kept of objects that are finished or gone.
#[derive(Default)]
struct FinishedByUid {
    /// Object uid → (final phase, change order id).
    finished: HashMap<String, (Phase, Option<String>)>,
    /// Change orders of deleted objects, oldest first: still never another object's to adopt.
    tombstones: std::collections::VecDeque<(Instant, String)>,
    /// Uids of objects deleted while not finished: an attempt of theirs is not sent.
    deleted: std::collections::VecDeque<(Instant, String)>,
    /// Region → the zone SAE writes change-order times in, as finished objects learned it.
    zones: HashMap<String, String>,
}

/// How long the change order of a deleted object, or a deleted uid, is remembered: longer than
/// any window a lost answer is searched in, and than any send can wait.
const TOMBSTONE_AGE: Duration = Duration::from_secs(24 * 3600);
/// At most this many of each are remembered (the oldest go first).
const TOMBSTONE_CAPACITY: usize = 10_000;

fn remember(list: &mut std::collections::VecDeque<(Instant, String)>, value: String) {
    while list
        .front()
        .is_some_and(|(t, _)| t.elapsed() > TOMBSTONE_AGE || list.len() >= TOMBSTONE_CAPACITY)
    {
        list.pop_front();
    }
    list.push_back((Instant::now(), value));
}

impl Finished {
    fn lock(&self) -> std::sync::MutexGuard<'_, FinishedByUid> {
        self.by_uid.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn record(&self, obj: &SaeInstanceDeletion) {
        let Some(status) = &obj.status else { return };
        if let Some(phase) = status.phase {
            let mut kept = self.lock();
            kept.finished.insert(
                obj.uid().unwrap_or_default(),
                (phase, status.change_order_id.clone()),
            );
            if let Some(zone) = &status.create_time_zone {
                kept.zones
                    .insert(obj.pinned().region_id.to_string(), zone.clone());
            }
        }
    }

    /// The object is gone from the API server: its change order stays remembered as someone's.
    fn deleted(&self, obj: &SaeInstanceDeletion) {
        let mut kept = self.lock();
        let uid = obj.uid().unwrap_or_default();
        let change_order = kept
            .finished
            .remove(&uid)
            .and_then(|(_, co)| co)
            .or_else(|| obj.status.as_ref().and_then(|s| s.change_order_id.clone()));
        if let Some(co) = change_order {
            remember(&mut kept.tombstones, co);
        }
        if !is_terminal(obj) {
            remember(&mut kept.deleted, uid);
        }
    }

    fn was_deleted(&self, obj: &SaeInstanceDeletion) -> bool {
        let uid = obj.uid().unwrap_or_default();
        self.lock().deleted.iter().any(|(_, d)| *d == uid)
    }

    fn change_order_ids(&self) -> Vec<String> {
        let kept = self.lock();
        kept.finished
            .values()
            .filter_map(|(_, co)| co.clone())
            .chain(kept.tombstones.iter().map(|(_, co)| co.clone()))
            .collect()
    }

    fn zone(&self, region: &str) -> Option<String> {
        self.lock().zones.get(region).cloned()
    }

    fn count_by_phase(&self) -> Vec<(&'static str, i64)> {
        let mut counts: std::collections::BTreeMap<&'static str, i64> = Default::default();
        for (phase, _) in self.lock().finished.values() {
            *counts.entry(phase.as_str()).or_default() += 1;
        }
        counts.into_iter().collect()
    }

    /// Passes a watch event on to the cache, unless it is about a finished object: that one is
    /// recorded here and removed from (or never put into) the cache.
    pub fn keep_live_only(
        &self,
        event: Result<watcher::Event<SaeInstanceDeletion>, watcher::Error>,
    ) -> Option<Result<watcher::Event<SaeInstanceDeletion>, watcher::Error>> {
        use watcher::Event;
        match event {
            Ok(Event::Apply(obj)) if is_terminal(&obj) => {
                self.record(&obj);
                Some(Ok(Event::Delete(obj)))
            }
            Ok(Event::InitApply(obj)) if is_terminal(&obj) => {
                self.record(&obj);
                None
            }
            Ok(Event::Delete(obj)) => {
                self.deleted(&obj);
                Some(Ok(Event::Delete(obj)))
            }
            other => Some(other),
        }
    }
}

/// How soon an object whose send could not confirm the leader lease is looked at again.
const LEASE_RECHECK: Duration = Duration::from_secs(2);

/// Reconciles doing work (not waiting for quota) at once.
const RECONCILE_CONCURRENCY: usize = 64;
/// Pages of ListChangeOrders one look at a lost attempt may read (50 rows each).
const MAX_CHANGE_ORDER_PAGES: u32 = 10;
const CHANGE_ORDER_PAGE_SIZE: u32 = 50;

/// How long a claim outlives the cache not (yet) showing its holder on the app.
const CLAIM_GRACE: Duration = Duration::from_secs(10);

fn app_key(obj: &SaeInstanceDeletion) -> (String, String) {
    let pinned = obj.pinned();
    (pinned.region_id.to_string(), pinned.app_id.to_string())
}

impl Context {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        client: Client,
        sae: SaeClient,
        default_credentials: impl Into<DefaultCredentials>,
        settings: Settings,
        metrics: Metrics,
        fence: Option<LeaderFence>,
        store: Store<SaeInstanceDeletion>,
    ) -> Self {
        let default_credentials = default_credentials.into();
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
            slots: Arc::new(tokio::sync::Semaphore::new(RECONCILE_CONCURRENCY)),
            looks: Default::default(),
        }
    }

    /// Takes `obj`'s app for an attempt; false while another object holds it.
    fn claim_app(&self, obj: &SaeInstanceDeletion) -> bool {
        let me = obj.uid().unwrap_or_default();
        let mut claims = self.claims.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((holder, since)) = claims.get(&app_key(obj))
            && *holder != me
            && self.claim_is_live(holder, *since)
        {
            return false;
        }
        claims.insert(app_key(obj), (me, Instant::now()));
        true
    }

    fn claim_is_live(&self, holder: &str, since: Instant) -> bool {
        let cached = self
            .store
            .state()
            .into_iter()
            .find(|o| o.uid().as_deref() == Some(holder));
        match cached {
            Some(o) if holds_app(&o) => true,
            Some(o) if is_terminal(&o) => false,
            // Not in the cache (yet, or deleted), or the cache has not caught up with the write.
            _ => since.elapsed() < CLAIM_GRACE,
        }
    }

    fn release_app(&self, obj: &SaeInstanceDeletion) {
        let me = obj.uid().unwrap_or_default();
        let mut claims = self.claims.lock().unwrap_or_else(|e| e.into_inner());
        if claims
            .get(&app_key(obj))
            .is_some_and(|(holder, _)| *holder == me)
        {
            claims.remove(&app_key(obj));
        }
    }

    /// Plans every SAE call into `requests_per_minute` per AccessKey (0: no client-side limit).
    pub fn with_quota(mut self, requests_per_minute: u32) -> Self {
        self.quota = QuotaPlanner::new(requests_per_minute, Some(self.metrics.clone()));
        self
    }

    /// When `released` has just let go of its app, reconcile the object next in line at once
    /// instead of letting it find out at its next periodic check. The wake waits (briefly) until
    /// the cache shows the release, or the next object would still see the app as busy.
    fn wake_next_in_line(&self, released: &SaeInstanceDeletion) {
        let Some(wake) = self.wake.clone() else {
            return;
        };
        let store = self.store.clone();
        let released = released.clone();
        tokio::spawn(async move {
            let key = ObjectRef::from_obj(&released);
            for _ in 0..50 {
                let seen = store
                    .get(&key)
                    .and_then(|o| o.metadata.resource_version.clone());
                if seen.is_none() || seen == released.metadata.resource_version {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            let next = store
                .state()
                .into_iter()
                .filter(|o| shares_app(o, &released) && waits_in_line(o))
                .min_by(|a, b| queue_order(a).cmp(&queue_order(b)));
            if let Some(next) = next {
                let _ = wake.unbounded_send(ObjectRef::from_obj(&*next));
            }
        });
    }

    /// The lease is still ours for longer than the request takes to leave (when leading is on).
    async fn may_send(&self) -> bool {
        match &self.fence {
            None => true,
            Some(fence) => fence.confirm().await,
        }
    }

    /// Takes a token of this AccessKey's quota, by priority, without holding a reconcile slot
    /// while it waits, and not past the object's deadline.
    async fn token(
        &self,
        slot: &mut Slot,
        creds: &Credentials,
        priority: Priority,
    ) -> Result<(), Error> {
        slot.until_token(self.quota.acquire(creds.access_key_id(), priority))
            .await
    }

    /// Runs one SAE request: a token of its AccessKey's quota first (by priority; the slot is
    /// given back while waiting), then the call, through [`Self::measured`].
    async fn with_token<T>(
        &self,
        slot: &mut Slot,
        creds: &Credentials,
        priority: Priority,
        call: impl Future<Output = Result<T, SaeError>>,
    ) -> Result<Result<T, SaeError>, Error> {
        self.token(slot, creds, priority).await?;
        Ok(self.measured(creds, call).await)
    }

    /// Runs one SAE request whose quota token was already taken, pausing the key's bucket when
    /// SAE says it is throttling. (Its metrics are recorded by the client's observer.)
    async fn measured<T>(
        &self,
        creds: &Credentials,
        call: impl Future<Output = Result<T, SaeError>>,
    ) -> Result<T, SaeError> {
        let result = call.await;
        self.quota.note_result(creds.access_key_id(), &result);
        result
    }

    async fn instances(
        &self,
        slot: &mut Slot,
        creds: &Credentials,
        priority: Priority,
        region: &str,
        app: &str,
    ) -> Result<Result<AppInstances, SaeError>, Error> {
        // One quota token per HTTP request of the listing (groups, then each page), the slot
        // given back while each one waits. The gate runs once per request, one after the other;
        // the lock only lends it the slot (an async closure borrowing it would not be Send). A
        // token refused (the deadline came) ends the listing; nothing more is sent.
        let slot = tokio::sync::Mutex::new(slot);
        let gate = || async {
            let mut slot = slot.lock().await;
            self.token(&mut slot, creds, priority).await
        };
        // The client's observer records each request of the listing under its own operation.
        let listed = self
            .sae
            .list_all_instances(creds, region, app, gate)
            .await?;
        self.quota.note_result(creds.access_key_id(), &listed);
        Ok(listed)
    }

    async fn instance_ids(
        &self,
        slot: &mut Slot,
        creds: &Credentials,
        priority: Priority,
        region: &str,
        app: &str,
    ) -> Result<Result<Vec<String>, SaeError>, Error> {
        Ok(self
            .instances(slot, creds, priority, region, app)
            .await?
            .map(|all| all.ids))
    }

    /// What is known of the zone of SAE's change-order times in `region`: the operator's word,
    /// else what this object or any other learned (the most recent attempt's, live objects
    /// first), else unknown.
    fn zone_for(&self, obj: &SaeInstanceDeletion) -> CreateTimeZone {
        if let Some(offset) = self.settings.create_time_offset {
            return CreateTimeZone::Offset(offset);
        }
        let region = obj.pinned().region_id;
        let learned = |o: &SaeInstanceDeletion| {
            let status = o.status.as_ref()?;
            let zone = status.create_time_zone.as_deref()?;
            Some((
                status.last_attempt_time.as_ref().map(|t| t.0),
                zone.to_string(),
            ))
        };
        let cached = self.store.state();
        let live = std::iter::once(obj)
            .chain(cached.iter().map(|o| &**o))
            .filter(|o| o.pinned().region_id == region)
            .filter_map(learned)
            .max()
            .map(|(_, zone)| zone);
        live.or_else(|| self.finished.zone(region))
            .map_or(CreateTimeZone::Unknown, |z| CreateTimeZone::from_status(&z))
    }

    /// What SAE shows about a lost attempt: the app's change orders that may be deletions, back to
    /// `since`, that no other object has claimed, and the instances the app still has. One look
    /// at an app serves every object resolving there within [`LOOK_SHARED_FOR`].
    async fn evidence(
        &self,
        slot: &mut Slot,
        creds: &Credentials,
        obj: &SaeInstanceDeletion,
        since: Timestamp,
    ) -> Result<Result<Evidence, SaeError>, Error> {
        let key = (
            obj.pinned().region_id.to_string(),
            obj.pinned().app_id.to_string(),
            creds.access_key_id().to_string(),
        );
        let shared = {
            let mut looks = self.looks.lock().unwrap_or_else(|e| e.into_inner());
            looks.retain(|_, look| {
                look.try_lock().map_or(true, |l| {
                    l.as_ref()
                        .is_some_and(|l| l.taken.elapsed() < LOOK_SHARED_FOR)
                })
            });
            looks.entry(key).or_default().clone()
        };
        // Waiting here means another object of the app is looking right now: its look serves us.
        let mut last = slot.released(shared.lock()).await;
        let zone = self.zone_for(obj);
        let fresh = last
            .as_ref()
            .filter(|l| l.taken.elapsed() < LOOK_SHARED_FOR && l.since <= since)
            .cloned();
        let look = match fresh {
            Some(look) => look,
            None => match self.look(slot, creds, obj, since, zone).await? {
                Ok(look) => {
                    *last = Some(look.clone());
                    look
                }
                Err(err) => return Ok(Err(err)),
            },
        };
        drop(last);
        let mut claimed: HashSet<String> = self
            .store
            .state()
            .iter()
            .filter(|o| o.uid() != obj.uid())
            .filter_map(|o| o.status.as_ref()?.change_order_id.clone())
            .collect();
        claimed.extend(self.finished.change_order_ids());
        Ok(Ok(Evidence {
            change_orders: look
                .change_orders
                .into_iter()
                .filter(|co| !claimed.contains(&co.change_order_id))
                .collect(),
            complete: look.complete,
            existing_instance_ids: look.instances.ids,
            terminating_instance_ids: look.instances.terminating,
            zone,
        }))
    }

    /// One look at an app: ListChangeOrders (newest first) until a row is surely older than
    /// `since`, at most [`MAX_CHANGE_ORDER_PAGES`] pages, then its instances. A token per request.
    async fn look(
        &self,
        slot: &mut Slot,
        creds: &Credentials,
        obj: &SaeInstanceDeletion,
        since: Timestamp,
        zone: CreateTimeZone,
    ) -> Result<Result<Look, SaeError>, Error> {
        let (region, app) = (obj.pinned().region_id, obj.pinned().app_id);
        let mut change_orders = vec![];
        // Every row in SAE's order, other types and others' included: what the list covers.
        let mut listed = vec![];
        let mut complete = false;
        // While the zone is unknown nothing can be proven absent, so reading further back than the
        // newest page would only spend quota.
        let pages = if zone.is_known() {
            MAX_CHANGE_ORDER_PAGES
        } else {
            1
        };
        for page_number in 1..=pages {
            let page = self
                .with_token(
                    slot,
                    creds,
                    Priority::Resolve,
                    self.sae.list_change_orders(
                        creds,
                        region,
                        app,
                        Some("CoDeleteInstances"),
                        page_number,
                        CHANGE_ORDER_PAGE_SIZE,
                    ),
                )
                .await?;
            let page = match page {
                Ok(page) => page,
                Err(err) => return Ok(Err(err)),
            };
            let rows = page.change_orders.len();
            for co in page.change_orders {
                let found = FoundChangeOrder {
                    created: co.create_time.as_deref().and_then(parse_sae_time),
                    finished: co.finish_time.as_deref().and_then(parse_sae_time),
                    typed: co.co_type_code.is_some(),
                    change_order_id: co.change_order_id,
                    status: co.status,
                };
                listed.push(found.clone());
                // Rows of another type are not deletions; rows without a type may be.
                if co
                    .co_type_code
                    .as_deref()
                    .is_none_or(|t| t == "CoDeleteInstances")
                {
                    change_orders.push(found);
                }
            }
            // Rows received, not pages times the size asked for: SAE may serve smaller pages.
            let seen = listed.len() as u64;
            if list_covers(&listed, since, zone) || rows == 0 || seen >= page.total {
                complete = true;
                break;
            }
        }
        let instances = match self
            .instances(slot, creds, Priority::Resolve, region, app)
            .await?
        {
            Ok(instances) => instances,
            Err(err) => return Ok(Err(err)),
        };
        Ok(Ok(Look {
            taken: Instant::now(),
            since,
            change_orders,
            complete,
            instances,
        }))
    }

    fn observe_terminal(&self, obj: &SaeInstanceDeletion) {
        let Some(status) = &obj.status else { return };
        let outcome = format!(
            "{}/{}",
            status.phase.map(Phase::as_str).unwrap_or(""),
            status.reason().unwrap_or("")
        );
        let age = obj
            .metadata
            .creation_timestamp
            .as_ref()
            .and_then(|t| Duration::try_from(Timestamp::now().duration_since(t.0)).ok())
            .unwrap_or_default();
        self.metrics.observe_terminal(&outcome, age);
    }

    /// Credentials for one object: its `credentialsRef` Secret when set (then the controller's own
    /// RRSA or environment credentials are never used), else those. The Secret is read fresh by
    /// every reconcile that may call SAE, so a rotated or newly created one is used by the next
    /// attempt. Errors are messages for the status (never a value).
    async fn credentials_for(&self, obj: &SaeInstanceDeletion) -> Result<Credentials, String> {
        let namespace = obj.namespace().unwrap_or_default();
        let Some(reference) = obj.pinned().credentials_ref else {
            return self.default_credentials.get().await;
        };
        let secrets: Api<Secret> = Api::namespaced(self.client.clone(), &namespace);
        match secrets.get_opt(&reference.name).await {
            Ok(Some(secret)) => credentials_from_secret(&secret, &namespace),
            Ok(None) => Err(format!(
                "Secret {namespace}/{} not found: create it with keys accessKeyId and accessKeySecret \
                 (and securityToken for STS credentials)",
                reference.name
            )),
            Err(kube::Error::Api(status)) if status.code == 403 => Err(format!(
                "the controller may not read Secret {namespace}/{}: grant its ServiceAccount `get` on secrets",
                reference.name
            )),
            Err(err) => Err(format!(
                "cannot read Secret {namespace}/{}: {err}",
                reference.name
            )),
        }
    }
}

/// Reads `accessKeyId`, `accessKeySecret` and the optional `securityToken` from a Secret. Values are
/// trimmed (a trailing newline from `echo` is the common mistake); errors name keys, never values.
pub fn credentials_from_secret(secret: &Secret, namespace: &str) -> Result<Credentials, String> {
    let name = secret.metadata.name.as_deref().unwrap_or_default();
    let read = |key: &str| -> Result<Option<String>, String> {
        let from_data = secret
            .data
            .as_ref()
            .and_then(|d| d.get(key))
            .map(|v| v.0.clone());
        let from_string = secret
            .string_data
            .as_ref()
            .and_then(|d| d.get(key))
            .map(|v| v.clone().into_bytes());
        match from_data.or(from_string) {
            None => Ok(None),
            Some(bytes) => {
                let text = String::from_utf8(bytes).map_err(|_| {
                    format!("Secret {namespace}/{name} key {key} is not UTF-8 text")
                })?;
                let text = text.trim().to_string();
                Ok((!text.is_empty()).then_some(text))
            }
        }
    };
    let missing = |key: &str| {
        format!(
            "Secret {namespace}/{name} has no non-empty key {key}: it needs accessKeyId and accessKeySecret"
        )
    };
    let id = read("accessKeyId")?.ok_or_else(|| missing("accessKeyId"))?;
    let secret_value = read("accessKeySecret")?.ok_or_else(|| missing("accessKeySecret"))?;
    Ok(Credentials::new(id, secret_value, read("securityToken")?))
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

enum Written {
    Ok(Box<SaeInstanceDeletion>),
    /// Someone changed the object since we read it; the decision is void.
    Conflict,
}

/// PUTs the status with the resourceVersion it was decided from. Transient API errors are retried
/// a few times (backon); a 409 is returned as `Conflict`, never retried.
async fn write_status(ctx: &Context, obj: &SaeInstanceDeletion) -> Result<Written, Error> {
    let api: Api<SaeInstanceDeletion> =
        Api::namespaced(ctx.client.clone(), &obj.namespace().unwrap_or_default());
    let object = object_key(obj);
    let attempt = || async {
        api.replace_status(&obj.name_any(), &PostParams::default(), obj)
            .await
    };
    let result = attempt
        .retry(ExponentialBuilder::default().with_min_delay(Duration::from_millis(200)).with_max_times(4))
        .when(|e| !matches!(e, kube::Error::Api(s) if s.code == 409 || s.code == 404 || s.code == 403 || s.code == 422))
        .await;
    match result {
        Ok(updated) => Ok(Written::Ok(Box::new(updated))),
        Err(kube::Error::Api(s)) if s.code == 409 => Ok(Written::Conflict),
        Err(source) => Err(Error::StatusWrite { object, source }),
    }
}

async fn publish(ctx: &Context, obj: &SaeInstanceDeletion, event: &Event) {
    let ev = KubeEvent {
        type_: if event.warning {
            EventType::Warning
        } else {
            EventType::Normal
        },
        reason: event.reason.clone(),
        note: Some(event.note.chars().take(1000).collect()),
        action: "Reconcile".into(),
        secondary: None,
    };
    if let Err(err) = ctx.recorder.publish(&ev, &obj.object_ref(&())).await {
        // An event is a courtesy to the user; failing to publish one must not stop the work.
        warn!(error = %err, reason = %event.reason, "could not publish event");
    }
}

fn is_terminal(obj: &SaeInstanceDeletion) -> bool {
    obj.status.as_ref().is_some_and(|s| s.is_terminal())
}

/// Requeue delay until `t`, at least a short moment so a clock at the boundary cannot spin.
fn until(t: Timestamp) -> Duration {
    let d = t.duration_since(Timestamp::now());
    Duration::try_from(d)
        .unwrap_or_default()
        .max(Duration::from_millis(200))
}

/// A reconcile's place among those doing work at once ([`Context::slots`]), and the object's
/// deadline, which no wait for quota may pass.
struct Slot {
    slots: Arc<tokio::sync::Semaphore>,
    permit: Option<tokio::sync::OwnedSemaphorePermit>,
    deadline: Option<tokio::time::Instant>,
}

impl Slot {
    async fn take(slots: Arc<tokio::sync::Semaphore>, obj: &SaeInstanceDeletion) -> Self {
        let permit = slots.clone().acquire_owned().await.ok();
        let deadline = obj
            .metadata
            .creation_timestamp
            .as_ref()
            .and_then(|created| {
                let deadline = created
                    .0
                    .checked_add(SignedDuration::from_secs(
                        obj.spec.active_deadline_seconds.into(),
                    ))
                    .ok()?;
                let left = Duration::try_from(deadline.duration_since(Timestamp::now()))
                    .unwrap_or_default();
                tokio::time::Instant::now().checked_add(left)
            });
        Self {
            slots,
            permit,
            deadline,
        }
    }

    /// Waits for `wait` without holding the slot, then takes one again.
    async fn released<F: Future>(&mut self, wait: F) -> F::Output {
        self.permit = None;
        let out = wait.await;
        self.permit = self.slots.clone().acquire_owned().await.ok();
        out
    }

    /// Waits for a quota token like [`Self::released`], but not past the object's deadline:
    /// then the reconcile ends (`Error::QuotaPastDeadline`) and the next one ends the object.
    async fn until_token<F: Future>(&mut self, wait: F) -> Result<F::Output, Error> {
        let Some(deadline) = self.deadline else {
            return Ok(self.released(wait).await);
        };
        self.released(tokio::time::timeout_at(deadline, wait))
            .await
            .map_err(|_| Error::QuotaPastDeadline)
    }
}

async fn reconcile(obj: Arc<SaeInstanceDeletion>, ctx: Arc<Context>) -> Result<Requeue, Error> {
    // A terminal object is never touched again: no Secret read, no SAE call, no write.
    if is_terminal(&obj) {
        return Ok(Requeue::await_change());
    }
    let slot = Slot::take(ctx.slots.clone(), &obj).await;
    let span = info_span!(
        "reconcile",
        object = %object_key(&obj),
        app_id = %obj.pinned().app_id,
        change_order_id = obj.status.as_ref().and_then(|s| s.change_order_id.as_deref()).unwrap_or(""),
        request_id = obj.status.as_ref().and_then(|s| s.request_id.as_deref()).unwrap_or(""),
    );
    // Boxed: the steps' future is large, and the runner holds one reconcile future per object it
    // has scheduled; terminal objects (the vast majority, after a while) never allocate it.
    match Box::pin(reconcile_steps((*obj).clone(), ctx, slot).instrument(span)).await {
        // The deadline came while waiting for quota: the next reconcile ends the object.
        Err(Error::QuotaPastDeadline) => Ok(Requeue::requeue(Duration::from_millis(200))),
        other => other,
    }
}

/// The controller's [`Effects`]: one reconcile's view of the API server, the quota and SAE.
struct Reconciler<'a> {
    ctx: &'a Context,
    slot: Slot,
    /// Read by [`Effects::read_credentials`]; `None` until then (or when not needed).
    credentials: Option<Result<Credentials, String>>,
    /// A poll's quota token that did not come by its `write_by`, still in line.
    pending_token: Option<std::pin::Pin<Box<dyn Future<Output = ()> + Send + 'a>>>,
}

impl Reconciler<'_> {
    fn creds(&self) -> Result<Credentials, Error> {
        self.credentials
            .as_ref()
            .and_then(|read| read.as_ref().ok())
            .cloned()
            .ok_or_else(|| Error::Internal("an SAE call was decided without credentials".into()))
    }

    fn region_app(obj: &SaeInstanceDeletion) -> (String, String) {
        let pinned = obj.pinned();
        (pinned.region_id.to_string(), pinned.app_id.to_string())
    }
}

impl Effects for Reconciler<'_> {
    type Error = Error;

    fn clock(&mut self) -> Clock {
        Clock {
            now: Timestamp::now(),
            jitter: fastrand::f64(),
            resolve_after: self.ctx.settings.resolve_after,
        }
    }

    fn app_turn(&self, obj: &SaeInstanceDeletion) -> AppTurn {
        app_turn(&self.ctx.store.state(), obj)
    }

    async fn read_credentials(&mut self, obj: &SaeInstanceDeletion) -> Result<(), String> {
        let read = self.ctx.credentials_for(obj).await;
        let usable = read.as_ref().map(|_| ()).map_err(Clone::clone);
        self.credentials = Some(read);
        usable
    }

    async fn token(&mut self, _: &SaeInstanceDeletion, priority: Priority) -> Result<(), Error> {
        let creds = self.creds()?;
        self.ctx.token(&mut self.slot, &creds, priority).await
    }

    async fn token_by(
        &mut self,
        _: &SaeInstanceDeletion,
        priority: Priority,
        by: Timestamp,
    ) -> Result<bool, Error> {
        let creds = self.creds()?;
        let quota = &self.ctx.quota;
        let key = creds.access_key_id().to_string();
        // Boxed and kept, so that writing the status meanwhile keeps its place in the line.
        let mut token = Box::pin(async move { quota.acquire(&key, priority).await });
        let in_time = self
            .slot
            .released(tokio::time::timeout(until(by), &mut token))
            .await
            .is_ok();
        if !in_time {
            self.pending_token = Some(token);
        }
        Ok(in_time)
    }

    async fn rest_of_token(&mut self) -> Result<(), Error> {
        match self.pending_token.take() {
            Some(token) => self.slot.until_token(token).await,
            None => Ok(()),
        }
    }

    async fn sleep_until(&mut self, t: Timestamp) {
        self.slot.released(tokio::time::sleep(until(t))).await;
    }

    fn newer(&self, obj: &SaeInstanceDeletion) -> Option<SaeInstanceDeletion> {
        self.ctx
            .store
            .get(&ObjectRef::from_obj(obj))
            .filter(|newer| newer.metadata.resource_version != obj.metadata.resource_version)
            .map(|newer| (*newer).clone())
    }

    fn was_deleted(&self, obj: &SaeInstanceDeletion) -> bool {
        self.ctx.finished.was_deleted(obj)
    }

    async fn may_send(&mut self) -> bool {
        self.ctx.may_send().await
    }

    fn claim_app(&mut self, obj: &SaeInstanceDeletion) -> bool {
        self.ctx.claim_app(obj)
    }

    fn release_app(&mut self, obj: &SaeInstanceDeletion) {
        self.ctx.release_app(obj)
    }

    async fn write_status(
        &mut self,
        obj: &mut SaeInstanceDeletion,
        status: SaeInstanceDeletionStatus,
    ) -> Result<bool, Error> {
        record(self.ctx, obj, status).await
    }

    async fn publish(&mut self, obj: &SaeInstanceDeletion, event: &Event) {
        publish(self.ctx, obj, event).await
    }

    async fn delete_instances(
        &mut self,
        obj: &SaeInstanceDeletion,
        instance_ids: &[String],
    ) -> Result<Result<DeleteAccepted, SaeError>, Error> {
        let creds = self.creds()?;
        let (region, app) = Self::region_app(obj);
        info!(
            instances = instance_ids.len(),
            attempt = obj.status.as_ref().map(|s| s.attempts()).unwrap_or(0),
            "sending DeleteInstances"
        );
        let result = self
            .ctx
            .measured(
                &creds,
                self.ctx
                    .sae
                    .delete_instances(&creds, &region, &app, instance_ids),
            )
            .await;
        // On the reconcile span, so later log lines and the trace carry them too.
        let span = tracing::Span::current();
        match &result {
            Ok(ok) => {
                span.record("change_order_id", ok.change_order_id.as_str());
                if let Some(request_id) = &ok.request_id {
                    span.record("request_id", request_id.as_str());
                }
                info!(change_order_id = %ok.change_order_id, request_id = ok.request_id.as_deref().unwrap_or(""), "DeleteInstances accepted")
            }
            Err(err) => {
                if let Some(request_id) = err.request_id() {
                    span.record("request_id", request_id);
                }
                warn!(error = %err, class = ?err.class(), "DeleteInstances failed")
            }
        }
        Ok(result)
    }

    async fn describe_change_order(
        &mut self,
        obj: &SaeInstanceDeletion,
        change_order_id: &str,
        token: Token,
    ) -> Result<Result<ChangeOrder, SaeError>, Error> {
        let creds = self.creds()?;
        let (region, _) = Self::region_app(obj);
        if token == Token::Take {
            self.ctx
                .token(&mut self.slot, &creds, Priority::Poll)
                .await?;
        }
        Ok(self
            .ctx
            .measured(
                &creds,
                self.ctx
                    .sae
                    .describe_change_order(&creds, &region, change_order_id),
            )
            .await)
    }

    async fn instance_ids(
        &mut self,
        obj: &SaeInstanceDeletion,
        priority: Priority,
    ) -> Result<Result<Vec<String>, SaeError>, Error> {
        let creds = self.creds()?;
        let (region, app) = Self::region_app(obj);
        self.ctx
            .instance_ids(&mut self.slot, &creds, priority, &region, &app)
            .await
    }

    async fn evidence(
        &mut self,
        obj: &SaeInstanceDeletion,
        since: Timestamp,
    ) -> Result<Result<Evidence, SaeError>, Error> {
        let creds = self.creds()?;
        let evidence = self
            .ctx
            .evidence(&mut self.slot, &creds, obj, since)
            .await?;
        match &evidence {
            Ok(e) => info!(
                change_orders = e.change_orders.len(),
                complete = e.complete,
                instances = e.existing_instance_ids.len(),
                zone = ?e.zone,
                "looked for the outcome of a lost attempt"
            ),
            Err(err) => {
                warn!(error = %err, "could not look for the outcome of a lost attempt")
            }
        }
        Ok(evidence)
    }
}

async fn reconcile_steps(
    obj: SaeInstanceDeletion,
    ctx: Arc<Context>,
    slot: Slot,
) -> Result<Requeue, Error> {
    let mut fx = Reconciler {
        ctx: &ctx,
        slot,
        credentials: None,
        pending_token: None,
    };
    Ok(match steps::reconcile(obj, &mut fx).await? {
        Outcome::Done | Outcome::Deleted => Requeue::await_change(),
        Outcome::WaitUntil(t) => Requeue::requeue(until(t)),
        Outcome::Conflicted => conflicted(),
        Outcome::LeaseUnconfirmed => {
            // A replica that lost its lease exits and the leader takes over; one that could not
            // confirm it (the API server slow or away) looks again soon: nothing else would wake
            // this object (the watch reacts to spec changes only), and the queue behind it would
            // wait for it.
            warn!(
                "cannot confirm the leader lease: DeleteInstances not sent; trying again shortly"
            );
            Requeue::requeue(LEASE_RECHECK)
        }
        // Another object just started on this app and the cache does not show it yet.
        Outcome::AppClaimed | Outcome::OutOfRounds => Requeue::requeue(Duration::from_secs(1)),
    })
}

/// A status write answered 409: the decision is void; start over from a fresh read.
fn conflicted() -> Requeue {
    info!("status write conflicted: the object changed meanwhile; re-reading");
    Requeue::requeue(CONFLICT_REQUEUE)
}

/// Writes `status` for `obj` and makes `obj` the stored result; false when the write conflicted
/// (the decision is void and the object must be re-read). Keeps the app claim in step: an attempt
/// that was not recorded releases the app, and an object that stops holding it wakes the next.
async fn record(
    ctx: &Context,
    obj: &mut SaeInstanceDeletion,
    status: SaeInstanceDeletionStatus,
) -> Result<bool, Error> {
    let mut next = obj.clone();
    next.status = Some(status);
    let held_app = holds_app(obj);
    let written = write_status(ctx, &next).await;
    if !matches!(written, Ok(Written::Ok(_))) && !held_app {
        // The attempt was not recorded, so it will not be sent: let the app go.
        ctx.release_app(obj);
    }
    match written? {
        Written::Ok(updated) => {
            *obj = *updated;
            if held_app && !holds_app(obj) {
                ctx.release_app(obj);
                ctx.wake_next_in_line(obj);
            }
        }
        Written::Conflict => return Ok(false),
    }
    let Some(status) = &obj.status else {
        return Ok(true);
    };
    info!(
        phase = status.phase.map(Phase::as_str).unwrap_or(""),
        reason = status.reason().unwrap_or(""),
        attempts = status.attempts(),
        request_id = status.request_id.as_deref().unwrap_or(""),
        change_order_id = status.change_order_id.as_deref().unwrap_or(""),
        "status updated"
    );
    if status.is_terminal() {
        ctx.observe_terminal(obj);
    }
    Ok(true)
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

/// Confirms, right before each DeleteInstances, that this replica still holds the leader Lease:
/// the lease manager's own view, and a fresh read of the Lease from the API server (holder is us
/// and the lease stays unexpired for at least [`SEND_BOUND`]). A replica that cannot confirm
/// sends nothing.
pub struct LeaderFence {
    pub leading: tokio::sync::watch::Receiver<bool>,
    pub leases: Api<Lease>,
    pub lease_name: String,
    pub identity: String,
}

impl LeaderFence {
    pub async fn confirm(&self) -> bool {
        if !*self.leading.borrow() {
            return false;
        }
        let lease = match self.leases.get(&self.lease_name).await {
            Ok(lease) => lease,
            Err(err) => {
                warn!(error = %err, "cannot read the leader Lease; not sending");
                return false;
            }
        };
        let Some(spec) = lease.spec else { return false };
        let holder_is_us = spec.holder_identity.as_deref() == Some(self.identity.as_str());
        let expires = spec.renew_time.map(|t| t.0).and_then(|renewed| {
            renewed
                .checked_add(SignedDuration::from_secs(i64::from(
                    spec.lease_duration_seconds.unwrap_or(0),
                )))
                .ok()
        });
        // Unexpired for longer than the request can take to leave: a replica that cannot renew
        // stops sending before any other can take the lease over (it never relies on the lease
        // manager noticing first).
        let needed = Timestamp::now().checked_add(SEND_BOUND).ok();
        holder_is_us && expires.zip(needed).is_some_and(|(e, n)| e > n)
    }
}

/// Whether the watch on SaeInstanceDeletion objects is making progress, for `/healthz`: it is
/// unhealthy once its errors have gone on, without a single success, for longer than `tolerance`.
/// An idle watch (no events at all) is healthy.
#[derive(Clone)]
pub struct WatchHealth {
    failing_since: Arc<std::sync::Mutex<Option<Instant>>>,
    tolerance: Duration,
}

impl WatchHealth {
    pub fn new(tolerance: Duration) -> Self {
        Self {
            failing_since: Arc::default(),
            tolerance,
        }
    }

    fn record(&self, ok: bool) {
        let mut since = self.failing_since.lock().unwrap_or_else(|e| e.into_inner());
        match (ok, *since) {
            (true, _) => *since = None,
            (false, None) => *since = Some(Instant::now()),
            (false, Some(_)) => {}
        }
    }

    pub fn healthy(&self) -> bool {
        let since = self.failing_since.lock().unwrap_or_else(|e| e.into_inner());
        since.is_none_or(|t| t.elapsed() < self.tolerance)
    }
}

/// Runs the controller until the process is asked to stop. `ready` is set once the object cache
/// has synced (for `/readyz`).
#[allow(clippy::too_many_arguments)]
pub async fn run(
    client: Client,
    sae: SaeClient,
    default_credentials: impl Into<DefaultCredentials>,
    settings: Settings,
    metrics: Metrics,
    fence: Option<LeaderFence>,
    ready: Arc<AtomicBool>,
    health: WatchHealth,
    requests_per_minute: u32,
) {
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
        .inspect(move |event| watch_health.record(event.is_ok()))
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
        }
    });
    let (wake, woken) = futures::channel::mpsc::unbounded();
    let mut ctx = Context::new(
        client,
        sae,
        default_credentials,
        settings,
        metrics,
        fence,
        store,
    )
    .with_quota(requests_per_minute);
    ctx.wake = Some(wake);
    ctx.finished = finished;
    let ctx = Arc::new(ctx);
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

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::ByteString;
    use std::collections::BTreeMap;

    fn secret(data: &[(&str, &str)]) -> Secret {
        let mut s = Secret::default();
        s.metadata.name = Some("creds".into());
        s.data = Some(
            data.iter()
                .map(|(k, v)| (k.to_string(), ByteString(v.as_bytes().to_vec())))
                .collect::<BTreeMap<_, _>>(),
        );
        s
    }

    #[test]
    fn the_cache_keeps_what_decisions_read_and_drops_the_rest() {
        use crate::crd::{RetryPolicy, SaeInstanceDeletionSpec, SaeInstanceDeletionStatus};
        let spec = SaeInstanceDeletionSpec {
            region_id: "cn-hangzhou".into(),
            app_id: "app".into(),
            instance_ids: vec!["i-1".into()],
            credentials_ref: None,
            retry: RetryPolicy::default(),
            active_deadline_seconds: 3600,
            wait_for_completion: true,
            dry_run: false,
        };
        let mut obj = SaeInstanceDeletion::new("x", spec);
        obj.metadata.labels = Some([("a".to_string(), "b".to_string())].into());
        obj.metadata.annotations = Some([("big".to_string(), "x".repeat(10_000))].into());
        obj.status = Some(SaeInstanceDeletionStatus {
            phase: Some(Phase::InProgress),
            change_order_id: Some("co-1".into()),
            message: Some("following".into()),
            ..Default::default()
        });
        let mut running = obj.clone();
        slim_for_cache(&mut running);
        assert!(!is_terminal(&running));
        assert_eq!(running.metadata.annotations, None);
        assert_eq!(running.metadata.labels, None);
        assert_eq!(
            running.status, obj.status,
            "a live object keeps its whole status"
        );
        assert_eq!(running.spec, obj.spec);

        // A finished object never reaches the cache: only its phase and change order are kept.
        use kube::runtime::watcher::Event;
        let finished = Finished::default();
        let mut done = obj.clone();
        done.metadata.uid = Some("uid-done".into());
        done.status.as_mut().unwrap().phase = Some(Phase::Succeeded);
        assert!(
            finished
                .keep_live_only(Ok(Event::InitApply(done.clone())))
                .is_none()
        );
        assert!(matches!(
            finished.keep_live_only(Ok(Event::Apply(done.clone()))),
            Some(Ok(Event::Delete(_)))
        ));
        assert!(matches!(
            finished.keep_live_only(Ok(Event::Apply(running.clone()))),
            Some(Ok(Event::Apply(_)))
        ));
        assert_eq!(finished.change_order_ids(), ["co-1"]);
        assert_eq!(finished.count_by_phase(), [("Succeeded", 1)]);
        finished.keep_live_only(Ok(Event::Delete(done.clone())));
        assert!(
            finished.count_by_phase().is_empty(),
            "a deleted object is forgotten"
        );
        assert_eq!(
            finished.change_order_ids(),
            ["co-1"],
            "but its change order stays someone's: never adopted by another object"
        );
        assert!(
            !finished.was_deleted(&done),
            "it had finished: nothing of it was waiting"
        );
        let mut live = running.clone();
        live.metadata.uid = Some("uid-live".into());
        assert!(!finished.was_deleted(&live));
        finished.keep_live_only(Ok(Event::Delete(live.clone())));
        assert!(
            finished.was_deleted(&live),
            "an attempt of a deleted live object is not sent"
        );
    }

    fn deadline_in(seconds: i64) -> SaeInstanceDeletion {
        let spec = crate::crd::SaeInstanceDeletionSpec {
            region_id: "cn-hangzhou".into(),
            app_id: "app".into(),
            instance_ids: vec!["i-1".into()],
            credentials_ref: None,
            retry: Default::default(),
            active_deadline_seconds: 3600,
            wait_for_completion: true,
            dry_run: false,
        };
        let mut obj = SaeInstanceDeletion::new("x", spec);
        let created = Timestamp::now() - SignedDuration::from_secs(3600 - seconds);
        obj.metadata.creation_timestamp = Some(
            k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(created),
        );
        obj
    }

    /// One AccessKey's empty bucket must not stall the objects of another: a reconcile waiting for
    /// a token gives its slot back, and takes one again once the token came.
    #[tokio::test(start_paused = true)]
    async fn a_wait_for_quota_holds_no_reconcile_slot() {
        let slots = Arc::new(tokio::sync::Semaphore::new(1));
        let quota = QuotaPlanner::new(60, None);
        // Key A has spent its burst: its next token is a second away.
        quota.acquire("A", Priority::Delete).await;
        let mut waiting = Slot::take(slots.clone(), &deadline_in(600)).await;
        assert_eq!(slots.available_permits(), 0);
        let wait = waiting.until_token(quota.acquire("A", Priority::Delete));
        tokio::pin!(wait);
        assert!(futures::poll!(&mut wait).is_pending());
        assert_eq!(
            slots.available_permits(),
            1,
            "the waiting reconcile gave its slot back"
        );
        // Another key's reconcile takes the slot and its token at once.
        let other = Slot::take(slots.clone(), &deadline_in(600)).await;
        quota.acquire("B", Priority::Delete).await;
        drop(other);
        assert!(wait.await.is_ok());
        assert_eq!(
            slots.available_permits(),
            0,
            "the slot is held again for the call"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_wait_for_quota_ends_at_the_deadline() {
        let slots = Arc::new(tokio::sync::Semaphore::new(4));
        let quota = QuotaPlanner::new(60, None);
        quota.pause("A", Duration::from_secs(120));
        let mut slot = Slot::take(slots.clone(), &deadline_in(30)).await;
        let started = tokio::time::Instant::now();
        let waited = slot.until_token(quota.acquire("A", Priority::Delete)).await;
        assert!(matches!(waited, Err(Error::QuotaPastDeadline)));
        let took = started.elapsed();
        assert!(
            took <= Duration::from_secs(31) && took >= Duration::from_secs(29),
            "{took:?}"
        );
        // An object already past its deadline does not wait at all.
        let mut late = Slot::take(slots, &deadline_in(-5)).await;
        assert!(
            late.until_token(quota.acquire("A", Priority::Delete))
                .await
                .is_err()
        );
    }

    #[test]
    fn tombstones_are_bounded() {
        let mut list = std::collections::VecDeque::new();
        for i in 0..TOMBSTONE_CAPACITY + 5 {
            remember(&mut list, format!("co-{i}"));
        }
        assert_eq!(list.len(), TOMBSTONE_CAPACITY);
        assert_eq!(
            list.front().map(|(_, co)| co.as_str()),
            Some("co-5"),
            "the oldest go first"
        );
    }

    #[test]
    fn secret_with_both_keys_gives_trimmed_credentials() {
        let c = credentials_from_secret(
            &secret(&[("accessKeyId", "AK\n"), ("accessKeySecret", "SK\n")]),
            "ns",
        )
        .unwrap();
        assert_eq!(
            (c.access_key_id(), c.access_key_secret(), c.security_token()),
            ("AK", "SK", None)
        );
        let c = credentials_from_secret(
            &secret(&[
                ("accessKeyId", "STS.x"),
                ("accessKeySecret", "SK"),
                ("securityToken", "tok"),
            ]),
            "ns",
        )
        .unwrap();
        assert_eq!(c.security_token(), Some("tok"));
    }

    #[test]
    fn incomplete_secret_names_the_missing_key_and_never_a_value() {
        let err =
            credentials_from_secret(&secret(&[("accessKeyId", "AK-VALUE")]), "ns").unwrap_err();
        assert!(
            err.contains("ns/creds") && err.contains("accessKeySecret"),
            "{err}"
        );
        assert!(!err.contains("AK-VALUE"), "{err}");
        let err = credentials_from_secret(
            &secret(&[("accessKeyId", "AK"), ("accessKeySecret", "   ")]),
            "ns",
        )
        .unwrap_err();
        assert!(err.contains("accessKeySecret"), "{err}");
        let mut bad = secret(&[("accessKeySecret", "SK-VALUE")]);
        bad.data
            .as_mut()
            .unwrap()
            .insert("accessKeyId".into(), ByteString(vec![0xff, 0xfe]));
        let err = credentials_from_secret(&bad, "ns").unwrap_err();
        assert!(
            err.contains("not UTF-8") && !err.contains("SK-VALUE"),
            "{err}"
        );
    }
}

/// The reconciler against a fake kube-apiserver (tower-test) and an in-process SAE simulator:
/// the two orderings that make DeleteInstances at-most-once, checked where no real API server can
/// be made to fail on cue. The simulator's ledger is the witness of what reached SAE.
#[cfg(test)]
mod fake_api_tests {
    use super::*;
    use std::collections::VecDeque;
    use std::sync::Mutex;

    use crate::decide::{Observation, decide};

    use http::{Method, Request, Response};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
    use kube::client::Body;
    use kube::runtime::reflector;
    use serde_json::{Value, json};

    use crate::crd::{RetryPolicy, SaeInstanceDeletionSpec, SaeInstanceDeletionStatus};
    use crate::sae::SaeClientConfig;
    use crate::simulator::{
        self, AccessKeySpec, AppSpec, GroupSpec, ModelConfig, Seed, Simulator, SimulatorConfig,
    };

    const NAMESPACE: &str = "ns";
    const NAME: &str = "del";
    const APP: &str = "app-1";
    const STATUS_PATH: &str =
        "/apis/sae.ops.dev/v1alpha1/namespaces/ns/saeinstancedeletions/del/status";
    const EVENTS_PATH: &str = "/apis/events.k8s.io/v1/namespaces/ns/events";

    /// How the fake answers one status PUT.
    #[derive(Clone, Copy, Debug)]
    enum Answer {
        /// Stores the object with a new resourceVersion and returns it.
        Store,
        /// 409: someone else changed the object since it was read.
        Conflict,
        /// 500: the API server could not write it.
        Fail,
    }

    /// What the fake API server saw, shared with the test.
    #[derive(Default)]
    struct Seen {
        /// Every status PUT body, in order, whatever the answer.
        status_puts: Vec<SaeInstanceDeletionStatus>,
        /// The object as last stored (what a re-read would return).
        stored: Option<SaeInstanceDeletion>,
        events: usize,
        unexpected: Vec<String>,
    }

    struct FakeApi {
        seen: Arc<Mutex<Seen>>,
        client: Client,
    }

    impl FakeApi {
        /// Status PUTs get `script` in order, then `Store`. Event creates succeed. Anything else
        /// is answered 404 and recorded as unexpected.
        fn start(script: Vec<Answer>) -> Self {
            let (service, mut handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
            let seen = Arc::new(Mutex::new(Seen::default()));
            let shared = seen.clone();
            let mut script = VecDeque::from(script);
            tokio::spawn(async move {
                let mut version = 100;
                while let Some((request, reply)) = handle.next_request().await {
                    let (parts, body) = request.into_parts();
                    let body = body.collect_bytes().await.expect("request body");
                    let (code, answer) = match (&parts.method, parts.uri.path()) {
                        (&Method::PUT, STATUS_PATH) => {
                            let mut obj: SaeInstanceDeletion =
                                serde_json::from_slice(&body).expect("status PUT body");
                            let mut seen = shared.lock().unwrap();
                            seen.status_puts
                                .push(obj.status.clone().unwrap_or_default());
                            match script.pop_front().unwrap_or(Answer::Store) {
                                Answer::Store => {
                                    version += 1;
                                    obj.metadata.resource_version = Some(version.to_string());
                                    seen.stored = Some(obj.clone());
                                    (200, serde_json::to_value(&obj).unwrap())
                                }
                                Answer::Conflict => (409, api_status(409, "Conflict")),
                                Answer::Fail => (500, api_status(500, "InternalError")),
                            }
                        }
                        (&Method::POST, EVENTS_PATH) => {
                            shared.lock().unwrap().events += 1;
                            (201, serde_json::from_slice(&body).expect("event body"))
                        }
                        (method, path) => {
                            shared
                                .lock()
                                .unwrap()
                                .unexpected
                                .push(format!("{method} {path}"));
                            (404, api_status(404, "NotFound"))
                        }
                    };
                    let response = Response::builder()
                        .status(code)
                        .header("content-type", "application/json")
                        .body(Body::from(serde_json::to_vec(&answer).unwrap()))
                        .unwrap();
                    reply.send_response(response);
                }
            });
            Self {
                seen,
                client: Client::new(service, "default"),
            }
        }

        fn seen<R>(&self, f: impl FnOnce(&Seen) -> R) -> R {
            f(&self.seen.lock().unwrap())
        }
    }

    fn api_status(code: u16, reason: &str) -> Value {
        json!({
            "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
            "message": format!("fake API server says {reason}"), "reason": reason, "code": code,
        })
    }

    /// An SAE simulator with one app (i-1, i-2), no quota, and change orders that finish at once.
    async fn sae() -> (Arc<Simulator>, SaeClient) {
        sae_with(SignedDuration::ZERO).await
    }

    async fn sae_with(change_order_duration: SignedDuration) -> (Arc<Simulator>, SaeClient) {
        let config = SimulatorConfig {
            model: ModelConfig {
                change_order_duration,
                requests_per_minute: 0,
                ..ModelConfig::default()
            },
            access_keys: vec![AccessKeySpec::parse_pair("AK:SK").unwrap()],
            seed: Some(Seed {
                apps: vec![AppSpec {
                    app_id: APP.into(),
                    groups: vec![GroupSpec {
                        group_id: "g-1".into(),
                        group_name: None,
                        instance_ids: vec!["i-1".into(), "i-2".into()],
                    }],
                }],
                ..Seed::default()
            }),
            ..SimulatorConfig::default()
        };
        let sim = Arc::new(Simulator::new(config).unwrap());
        let addr = simulator::spawn(sim.clone()).await.unwrap();
        let client = SaeClient::new(SaeClientConfig {
            endpoint: format!("http://{addr}"),
            timeout: Duration::from_secs(2),
            ..SaeClientConfig::default()
        })
        .unwrap();
        (sim, client)
    }

    fn context(
        client: Client,
        sae: SaeClient,
    ) -> (Arc<Context>, reflector::store::Writer<SaeInstanceDeletion>) {
        let (store, writer) = reflector::store();
        let settings = Settings {
            namespace: Some(NAMESPACE.into()),
            resolve_after: SignedDuration::from_secs(12),
            create_time_offset: Some(jiff::tz::Offset::constant(8)),
        };
        let credentials = Some(Credentials::new("AK", "SK", None));
        let ctx = Context::new(
            client,
            sae,
            credentials,
            settings,
            Metrics::new(),
            None,
            store,
        );
        (Arc::new(ctx), writer)
    }

    /// Two objects of one app: the second cannot start while the first's claim is fresh, even
    /// though the cache (empty here) does not show the first on the app yet.
    #[tokio::test]
    async fn an_app_claim_covers_the_moment_before_the_cache_shows_the_attempt() {
        let (service, _handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
        let (_sim, sae) = sae().await;
        let (ctx, _writer) = context(Client::new(service, "default"), sae);
        let first = new_object();
        let mut second = new_object();
        second.metadata.name = Some("other".into());
        second.metadata.uid = Some("uid-2".into());
        assert!(ctx.claim_app(&first));
        assert!(ctx.claim_app(&first), "a holder may claim again (a retry)");
        assert!(!ctx.claim_app(&second), "the app is taken");
        ctx.release_app(&second);
        assert!(!ctx.claim_app(&second), "only the holder releases");
        ctx.release_app(&first);
        assert!(ctx.claim_app(&second));
    }

    fn new_object() -> SaeInstanceDeletion {
        let mut obj = SaeInstanceDeletion::new(
            NAME,
            SaeInstanceDeletionSpec {
                region_id: "cn-hangzhou".into(),
                app_id: APP.into(),
                instance_ids: vec!["i-1".into()],
                credentials_ref: None,
                retry: RetryPolicy::default(),
                active_deadline_seconds: 3600,
                wait_for_completion: true,
                dry_run: false,
            },
        );
        obj.metadata.namespace = Some(NAMESPACE.into());
        obj.metadata.uid = Some("uid-1".into());
        obj.metadata.resource_version = Some("1".into());
        obj.metadata.creation_timestamp = Some(Time(Timestamp::now()));
        obj
    }

    fn delete_requests(sim: &Simulator) -> Vec<crate::simulator::RequestRecord> {
        sim.ledger()
            .requests
            .into_iter()
            .filter(|r| r.operation == "DeleteInstances")
            .collect()
    }

    /// After a restart, every object in `Submitting` resolves at once: one look at an app must
    /// serve all of them, not cost each its own ListChangeOrders and instance listing.
    #[tokio::test]
    async fn one_look_at_an_app_serves_every_object_resolving_there() {
        let (service, _handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
        let (sim, sae) = sae().await;
        let (ctx, _writer) = context(Client::new(service, "default"), sae);
        let first = new_object();
        let mut second = new_object();
        second.metadata.name = Some("other".into());
        second.metadata.uid = Some("uid-2".into());
        let creds = Credentials::new("AK", "SK", None);
        let since = Timestamp::now() - SignedDuration::from_secs(20);
        for obj in [&first, &second, &first] {
            let mut slot = Slot::take(ctx.slots.clone(), obj).await;
            let evidence = ctx
                .evidence(&mut slot, &creds, obj, since)
                .await
                .unwrap()
                .unwrap();
            assert!(evidence.complete);
            assert_eq!(evidence.existing_instance_ids, ["i-1", "i-2"]);
        }
        let count = |op: &str| {
            sim.ledger()
                .requests
                .iter()
                .filter(|r| r.operation == op)
                .count()
        };
        assert_eq!(count("ListChangeOrders"), 1);
        assert_eq!(count("DescribeApplicationGroups"), 1);
        // A look that reached back less far does not serve an older attempt.
        let older = since - SignedDuration::from_secs(60);
        let mut slot = Slot::take(ctx.slots.clone(), &second).await;
        ctx.evidence(&mut slot, &creds, &second, older)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(count("ListChangeOrders"), 2);
    }

    /// A change order executing for our ids shows them terminating: the evidence that lets an
    /// executing change order be adopted as ours.
    #[tokio::test]
    async fn a_look_shows_which_instances_are_being_terminated() {
        let (service, _handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
        let (_sim, sae) = sae_with(SignedDuration::from_secs(60)).await;
        let creds = Credentials::new("AK", "SK", None);
        let sent = sae
            .delete_instances(&creds, "cn-hangzhou", APP, &["i-1".to_string()])
            .await
            .unwrap();
        let (ctx, _writer) = context(Client::new(service, "default"), sae);
        let obj = new_object();
        let mut slot = Slot::take(ctx.slots.clone(), &obj).await;
        let since = Timestamp::now() - SignedDuration::from_secs(20);
        let evidence = ctx
            .evidence(&mut slot, &creds, &obj, since)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(evidence.terminating_instance_ids, ["i-1"]);
        assert_eq!(evidence.existing_instance_ids, ["i-1", "i-2"]);
        let ids: Vec<&str> = evidence
            .change_orders
            .iter()
            .map(|c| c.change_order_id.as_str())
            .collect();
        assert_eq!(ids, [sent.change_order_id.as_str()]);
        assert!(evidence.change_orders[0].typed);
        assert_eq!(
            evidence.zone,
            CreateTimeZone::Offset(jiff::tz::Offset::constant(8)),
            "as the settings state"
        );
    }

    #[tokio::test]
    async fn a_conflict_on_the_write_ahead_sends_nothing() {
        let (sim, sae) = sae().await;
        let api = FakeApi::start(vec![Answer::Conflict]);
        let (ctx, _writer) = context(api.client.clone(), sae);

        let result = reconcile(Arc::new(new_object()), ctx).await;

        assert!(
            result.is_ok(),
            "a conflict is not an error, the object is re-read: {result:?}"
        );
        api.seen(|seen| {
            assert_eq!(
                seen.status_puts.len(),
                1,
                "one write-ahead attempt, not retried on 409"
            );
            assert_eq!(seen.status_puts[0].phase, Some(Phase::Submitting));
            assert!(seen.unexpected.is_empty(), "{:?}", seen.unexpected);
        });
        assert!(
            sim.ledger().requests.is_empty(),
            "no SAE call of any kind: {:?}",
            sim.ledger().requests
        );
    }

    #[tokio::test]
    async fn a_write_ahead_that_keeps_failing_sends_nothing() {
        let (sim, sae) = sae().await;
        let api = FakeApi::start(vec![Answer::Fail; 10]);
        let (ctx, _writer) = context(api.client.clone(), sae);

        let result = reconcile(Arc::new(new_object()), ctx).await;

        assert!(
            matches!(result, Err(Error::StatusWrite { .. })),
            "{result:?}"
        );
        api.seen(|seen| {
            assert!(seen.status_puts.len() > 1, "a 500 is retried a few times");
            assert!(
                seen.status_puts
                    .iter()
                    .all(|s| s.phase == Some(Phase::Submitting))
            );
        });
        assert!(
            sim.ledger().requests.is_empty(),
            "{:?}",
            sim.ledger().requests
        );
    }

    #[tokio::test]
    async fn a_lost_status_write_after_sae_accepted_is_resolved_by_adopting_never_by_resending() {
        let (sim, sae) = sae().await;
        // The write-ahead lands; every write of the accepted result fails (the client's retries
        // included), as if the API server went away right after SAE answered.
        let mut script = vec![Answer::Store];
        script.extend([Answer::Fail; 5]);
        let api = FakeApi::start(script);
        let (ctx, _writer) = context(api.client.clone(), sae);

        let first = reconcile(Arc::new(new_object()), ctx.clone()).await;

        assert!(matches!(first, Err(Error::StatusWrite { .. })), "{first:?}");
        let sent = delete_requests(&sim);
        assert_eq!(sent.len(), 1, "{sent:?}");
        assert!(sent[0].committed, "SAE executed it");
        let change_order = sent[0]
            .change_order_id
            .clone()
            .expect("change order of the accepted send");
        let stored = api.seen(|seen| {
            let last = seen.status_puts.last().unwrap();
            assert_eq!(
                last.phase,
                Some(Phase::Succeeded),
                "the write that was lost: the first poll's outcome with the change order"
            );
            assert_eq!(last.change_order_id.as_deref(), Some(change_order.as_str()));
            seen.stored.clone().expect("the write-ahead was stored")
        });
        let stored_status = stored.status.clone().unwrap();
        assert_eq!(
            stored_status.phase,
            Some(Phase::Submitting),
            "the API server still has the write-ahead"
        );
        assert_eq!(stored_status.change_order_id, None);

        // The next reconcile sees only what the API server kept: an attempt with no answer.
        let second = reconcile(Arc::new(stored), ctx).await;

        assert!(second.is_ok(), "{second:?}");
        assert_eq!(delete_requests(&sim).len(), 1, "never sent again");
        let operations: Vec<String> = sim
            .ledger()
            .requests
            .iter()
            .map(|r| r.operation.clone())
            .collect();
        assert!(
            operations.iter().any(|o| o == "ListChangeOrders"),
            "looked for its change order: {operations:?}"
        );
        api.seen(|seen| {
            let last = seen.stored.as_ref().and_then(|o| o.status.clone()).unwrap();
            assert_eq!(
                last.change_order_id.as_deref(),
                Some(change_order.as_str()),
                "{last:?}"
            );
            assert_eq!(last.phase, Some(Phase::Succeeded), "{last:?}");
            assert_eq!(
                last.attempts,
                Some(1),
                "the lost answer is not a new attempt"
            );
            assert!(
                seen.status_puts
                    .iter()
                    .any(|s| s.reason() == Some(crate::crd::Reason::OutcomeUnknown.as_str())),
                "the lost answer was recorded before SAE was asked"
            );
            assert!(seen.events > 0, "events were published");
            assert!(seen.unexpected.is_empty(), "{:?}", seen.unexpected);
        });
    }

    /// What the object's status went through, as (phase, reason) per PUT.
    fn written(api: &FakeApi) -> Vec<(Option<Phase>, Option<String>, Option<String>)> {
        api.seen(|seen| {
            seen.status_puts
                .iter()
                .map(|s| {
                    (
                        s.phase,
                        s.reason().map(String::from),
                        s.change_order_id.clone(),
                    )
                })
                .collect()
        })
    }

    fn polls(sim: &Simulator) -> usize {
        sim.ledger()
            .requests
            .iter()
            .filter(|r| r.operation == "DescribeChangeOrder")
            .count()
    }

    /// The writes of an attempt whose change order id was written before the change order ended.
    fn submitted_then_in_progress(
        change_order: Option<String>,
    ) -> Vec<(Option<Phase>, Option<String>, Option<String>)> {
        vec![
            (Some(Phase::Submitting), Some("Submitting".into()), None),
            (
                Some(Phase::InProgress),
                Some("WaitingForChangeOrder".into()),
                change_order,
            ),
        ]
    }

    #[tokio::test]
    async fn a_change_order_done_by_the_first_poll_is_recorded_with_its_outcome_in_one_write() {
        let (sim, sae) = sae().await;
        let api = FakeApi::start(vec![]);
        let (ctx, _writer) = context(api.client.clone(), sae);

        let result = reconcile(Arc::new(new_object()), ctx).await;

        assert!(result.is_ok(), "{result:?}");
        let change_order = delete_requests(&sim)[0].change_order_id.clone();
        assert_eq!(
            written(&api),
            vec![
                (Some(Phase::Submitting), Some("Submitting".into()), None),
                (
                    Some(Phase::Succeeded),
                    Some("Succeeded".into()),
                    change_order
                ),
            ],
            "write-ahead, then the outcome with the change order: no InProgress in between"
        );
        api.seen(|seen| assert_eq!(seen.events, 2, "one event per written transition"));
    }

    #[tokio::test]
    async fn a_change_order_still_running_at_the_first_poll_is_recorded_before_it_ends() {
        let (sim, sae) = sae_with(SignedDuration::from_secs(30)).await;
        let api = FakeApi::start(vec![]);
        let (ctx, _writer) = context(api.client.clone(), sae);

        let result = reconcile(Arc::new(new_object()), ctx).await;

        assert!(result.is_ok(), "{result:?}");
        let change_order = delete_requests(&sim)[0].change_order_id.clone();
        assert!(change_order.is_some());
        assert_eq!(written(&api), submitted_then_in_progress(change_order));
        assert_eq!(polls(&sim), 1, "the first poll came before the write");
        api.seen(|seen| assert_eq!(seen.events, 2));
    }

    #[tokio::test]
    async fn a_first_poll_held_up_by_the_quota_writes_the_change_order_first() {
        let (sim, sae) = sae().await;
        let api = FakeApi::start(vec![]);
        let (ctx, _writer) = context(api.client.clone(), sae);
        // 12 calls a minute, one every 5 s: DeleteInstances takes the first token, and the poll's
        // comes 5 s later, after the hold (1 + 3 s) is over.
        let ctx = Arc::new(Arc::into_inner(ctx).unwrap().with_quota(12));

        let result = reconcile(Arc::new(new_object()), ctx).await;

        assert!(result.is_ok(), "{result:?}");
        let change_order = delete_requests(&sim)[0].change_order_id.clone();
        let mut expected = submitted_then_in_progress(change_order.clone());
        expected.push((
            Some(Phase::Succeeded),
            Some("Succeeded".into()),
            change_order,
        ));
        assert_eq!(
            written(&api),
            expected,
            "the id is written while the poll waits for quota, then the poll's outcome"
        );
        assert_eq!(polls(&sim), 1);
        api.seen(|seen| assert_eq!(seen.events, 3));
    }

    /// `name` on APP in Pending/WaitingForApplication, reading its AccessKey from Secret "creds".
    fn waiting_object(name: &str) -> SaeInstanceDeletion {
        let mut obj = new_object();
        obj.metadata.name = Some(name.into());
        obj.metadata.uid = Some(format!("uid-{name}"));
        obj.spec.credentials_ref = Some(crate::crd::CredentialsRef {
            name: "creds".into(),
        });
        let clock = Clock {
            now: Timestamp::now(),
            jitter: 0.5,
            resolve_after: SignedDuration::from_secs(12),
        };
        let busy = Observation::Start {
            credentials: Ok(()),
            app: AppTurn::Busy {
                holder: "ns/holder".into(),
            },
        };
        obj.status = Some(decide(&obj, &clock, busy).status);
        obj
    }

    #[tokio::test]
    async fn an_object_waiting_on_a_busy_app_reads_no_secret_until_its_turn() {
        let (sim, sae) = sae().await;
        let api = FakeApi::start(vec![]);
        let (ctx, mut writer) = context(api.client.clone(), sae);
        let mut holder = new_object();
        holder.metadata.name = Some("holder".into());
        holder.metadata.uid = Some("uid-holder".into());
        holder.status = Some(SaeInstanceDeletionStatus {
            phase: Some(Phase::InProgress),
            change_order_id: Some("co-1".into()),
            ..SaeInstanceDeletionStatus::default()
        });
        writer.apply_watcher_event(&watcher::Event::Apply(holder));
        let waiting = waiting_object(NAME);
        assert_eq!(
            waiting.status.as_ref().unwrap().reason(),
            Some("WaitingForApplication")
        );

        let result = reconcile(Arc::new(waiting.clone()), ctx.clone()).await;

        assert!(result.is_ok(), "{result:?}");
        api.seen(|seen| {
            assert!(
                seen.unexpected.is_empty(),
                "no Secret read: {:?}",
                seen.unexpected
            );
        });
        assert!(sim.ledger().requests.is_empty());

        // Its turn: now the Secret is read (this fake has none, so it ends up missing).
        writer.apply_watcher_event(&watcher::Event::Delete(
            ctx.store.state()[0].as_ref().clone(),
        ));
        let result = reconcile(Arc::new(waiting), ctx).await;

        assert!(result.is_ok(), "{result:?}");
        api.seen(|seen| {
            assert_eq!(
                seen.unexpected,
                vec!["GET /api/v1/namespaces/ns/secrets/creds".to_string()]
            );
        });
        assert!(sim.ledger().requests.is_empty());
    }
}
