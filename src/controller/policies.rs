//! The deletion policies as the controller applies them to one object: the policies and
//! namespaces it watches, the hourly count from the statuses it has, and the app's Running
//! instances from SAE when a policy needs them. The rules themselves are pure (`crate::policy`).
//!
//! Also here: the watches on policies and namespaces ([`watch_policies`], [`watch_namespaces`]),
//! which keep their caches, write each policy's status, and wake the objects a policy refused
//! when something they were refused for may have changed.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use futures::StreamExt;
use jiff::Timestamp;
use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Api, Patch, PatchParams};
use kube::core::PartialObjectMeta;
use kube::runtime::events::{Event as KubeEvent, EventType, Recorder};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Resource, ResourceExt};
use tracing::{info, warn};

use super::slot::Slot;
use super::{CONTROLLER_NAME, Context, Error, is_terminal};
use crate::crd::{Reason, SaeInstanceDeletion};
use crate::decide::PolicyCheck;
use crate::metrics::Metrics;
use crate::policy::{
    DeletionRecord, Facts, POLICY_CONDITION_READY, PolicySet, Refusal, RefusalReason,
    SaeDeletionPolicy, Subject, Verdict, count_recent, deletion_record, policy_status,
    policy_status_needs_write,
};
use crate::quota::Priority;
use crate::sae::{AppInstances, Credentials};
use crate::steps::PolicyStage;

/// How soon an object is checked again while its namespace's labels are not known (the namespace
/// watch usually catches up within a second or two; its change also wakes refused objects).
const UNKNOWN_LABELS_RECHECK: jiff::SignedDuration = jiff::SignedDuration::from_secs(5);

/// The caches the policy check reads, and the [`PolicySet`] built from the policies' last state.
#[derive(Clone)]
pub struct PolicyCaches {
    pub policies: Store<SaeDeletionPolicy>,
    pub namespaces: Store<PartialObjectMeta<Namespace>>,
    /// Bumped on every change of the policy cache: the checked set is rebuilt only then.
    version: Arc<AtomicU64>,
    checked: Arc<std::sync::Mutex<(u64, Arc<PolicySet>)>>,
}

impl Default for PolicyCaches {
    /// Empty caches that never fill (no watch writes them): no policy, no namespace known. For
    /// contexts made without [`super::run`], such as unit tests.
    fn default() -> Self {
        Self::new(reflector::store().0, reflector::store().0)
    }
}

impl PolicyCaches {
    pub fn new(
        policies: Store<SaeDeletionPolicy>,
        namespaces: Store<PartialObjectMeta<Namespace>>,
    ) -> Self {
        Self {
            policies,
            namespaces,
            version: Arc::new(AtomicU64::new(1)),
            checked: Arc::new(std::sync::Mutex::new((0, Arc::new(PolicySet::default())))),
        }
    }

    /// The policies as last seen, each checked once per change of the cache (a time zone
    /// lookup per window is the costly part, and policies change rarely).
    fn set(&self) -> Arc<PolicySet> {
        let version = self.version.load(Ordering::SeqCst);
        let mut checked = self.checked.lock().unwrap_or_else(|e| e.into_inner());
        if checked.0 != version {
            let policies = self.policies.state();
            *checked = (
                version,
                Arc::new(PolicySet::new(policies.iter().map(|p| &**p))),
            );
        }
        checked.1.clone()
    }

    fn changed(&self) {
        self.version.fetch_add(1, Ordering::SeqCst);
    }

    /// The labels of namespace `name`, None while it is not in the cache.
    fn namespace_labels(&self, name: &str) -> Option<BTreeMap<String, String>> {
        self.namespaces
            .get(&ObjectRef::new(name))
            .map(|ns| ns.metadata.labels.clone().unwrap_or_default())
    }
}

impl Context {
    /// What the deletion policies say about `obj` sending now. Dry runs never delete and are not
    /// checked. At [`PolicyStage::Quick`] no SAE call is made: a policy that needs the app's
    /// Running instances admits for now, and the full check after the send's token decides.
    pub(super) async fn policy_check(
        &self,
        slot: &mut Slot,
        creds: Option<&Credentials>,
        obj: &SaeInstanceDeletion,
        stage: PolicyStage,
    ) -> Result<PolicyCheck, Error> {
        let pinned = obj.pinned();
        if pinned.dry_run {
            return Ok(PolicyCheck::Admitted);
        }
        let set = self.policy_caches.set();
        let namespace = obj.namespace().unwrap_or_default();
        let labels = self.policy_caches.namespace_labels(&namespace);
        let subject = Subject {
            namespace: &namespace,
            namespace_labels: labels.as_ref(),
            app_id: pinned.app_id,
            region_id: pinned.region_id,
            uses_secret: pinned.credentials_ref.is_some(),
            instances: u32::try_from(pinned.instance_ids.len()).unwrap_or(u32::MAX),
        };
        let now = Timestamp::now();
        // Unknown labels (a namespace not in the cache yet) would match no selector: a policy
        // that admits by label would not admit, but one whose limits bind by label would not bind
        // either, which fails open. Wait for the namespace instead, briefly.
        if labels.is_none()
            && let Some(selecting) = set.selecting_by_label()
        {
            return Ok(PolicyCheck::Refused(Refusal {
                reason: RefusalReason::NotPermitted,
                policy: Some(selecting.to_string()),
                message: format!(
                    "the labels of namespace {namespace} are not known yet (a policy selects \
                     namespaces by label); checking again"
                ),
                retry_at: Some(now + UNKNOWN_LABELS_RECHECK),
            }));
        }
        // The hourly count looks at every watched object; with no policy nothing reads it.
        let mut facts = Facts {
            now,
            deleted_last_hour: if set.is_empty() {
                0
            } else {
                self.deleted_last_hour(pinned.region_id, pinned.app_id, now)
            },
            running: None,
            require_policy: self.settings.require_policy,
        };
        let policies = match set.decide(&subject, &facts) {
            Verdict::Admitted { .. } => return Ok(PolicyCheck::Admitted),
            Verdict::Refused(refusal) => return Ok(PolicyCheck::Refused(refusal)),
            Verdict::NeedRunningCount { policies } => policies,
        };
        let (PolicyStage::Full, Some(creds)) = (stage, creds) else {
            return Ok(PolicyCheck::Admitted);
        };
        // Counted in the quota like any call, at the send's priority: this read is part of it.
        let listed = self
            .instances(
                slot,
                creds,
                Priority::Delete,
                pinned.region_id,
                pinned.app_id,
            )
            .await?;
        let running = match listed {
            Ok(all) => running_instances(&all),
            Err(err) => {
                // Fail closed: without the count, minRunningInstances cannot be shown to hold.
                // The object waits (Pending/DisruptionBudget) and is checked again shortly.
                warn!(error = %err, "could not list the app's instances for minRunningInstances");
                return Ok(PolicyCheck::Refused(Refusal {
                    reason: RefusalReason::DisruptionBudget,
                    policy: policies.first().cloned(),
                    message: format!(
                        "the app's Running instances could not be read from SAE for the \
                         minRunningInstances of policy {} ({}); trying again shortly",
                        policies.join(", "),
                        err.code().unwrap_or("no answer")
                    ),
                    retry_at: None,
                }));
            }
        };
        // The listing took time (pages, quota waits): decide with the clock and the hourly count
        // as they are now, not as they were before it (a window may have closed, another object
        // may have finished a deletion on the app meanwhile).
        let now = Timestamp::now();
        facts.now = now;
        facts.deleted_last_hour = self.deleted_last_hour(pinned.region_id, pinned.app_id, now);
        facts.running = Some(running);
        Ok(match set.decide(&subject, &facts) {
            Verdict::Refused(refusal) => PolicyCheck::Refused(refusal),
            // NeedRunningCount again cannot happen with the count given; admit as decide would.
            Verdict::Admitted { .. } | Verdict::NeedRunningCount { .. } => PolicyCheck::Admitted,
        })
    }

    /// Instances this controller deleted (or may have) on the app within the budget period:
    /// live objects from the cache, and what [`super::Finished`] kept of every object seen with a
    /// record (finished, deleted, or dropped from the cache by a re-list without a Delete event).
    /// Each uid once: a live object's status wins over a kept record.
    fn deleted_last_hour(&self, region: &str, app: &str, now: Timestamp) -> u32 {
        let mut records: HashMap<String, DeletionRecord> = self.finished.deletion_records(now);
        // The live object's status is the newest word on its request, record or none.
        for obj in self.store.state() {
            let uid = obj.uid().unwrap_or_default();
            match deletion_record(&obj) {
                Some(record) => records.insert(uid, record),
                None => records.remove(&uid),
            };
        }
        count_recent(records.values(), region, app, now)
    }
}

/// How many of the app's instances count as Running for minRunningInstances: only those SAE
/// lists with `InstanceContainerStatus: Running`. Pending, Starting, Failed, Terminating and rows
/// without a status serve nothing, so counting them would let a deletion leave fewer Running
/// instances than the policy keeps. (The decision then subtracts every id the object names,
/// Running or not.)
fn running_instances(all: &AppInstances) -> u32 {
    let running = all
        .running
        .iter()
        .filter(|id| all.ids.contains(id) && !all.terminating.contains(id))
        .count();
    u32::try_from(running).unwrap_or(u32::MAX)
}

/// Whether a watch event changes what a policy decision could read: a new, changed (by `key`)
/// or deleted object, or a fresh list. `seen` remembers each object's last key, so that status
/// writes (ours, on policies) and unrelated metadata changes (on namespaces) wake nobody.
fn changes<K: Resource>(
    seen: &mut HashMap<String, String>,
    event: &watcher::Event<K>,
    key: impl Fn(&K) -> String,
) -> bool {
    match event {
        watcher::Event::Apply(obj) | watcher::Event::InitApply(obj) => {
            let now = key(obj);
            seen.insert(obj.name_any(), now.clone()) != Some(now)
                && matches!(event, watcher::Event::Apply(_))
        }
        watcher::Event::Delete(obj) => {
            seen.remove(&obj.name_any());
            true
        }
        watcher::Event::Init => false,
        watcher::Event::InitDone => true,
    }
}

/// Wakes every unfinished object that waits on a policy refusal: what it was refused for may
/// have changed. Objects refused for other reasons, or not refused, are not touched.
fn wake_refused(
    objects: &Store<SaeInstanceDeletion>,
    wake: &futures::channel::mpsc::UnboundedSender<ObjectRef<SaeInstanceDeletion>>,
) {
    let mut woken = 0;
    for obj in objects.state() {
        let refused = obj
            .status
            .as_ref()
            .and_then(|s| s.reason())
            .and_then(|r| r.parse::<Reason>().ok())
            .is_some_and(Reason::is_policy_refusal);
        if refused && !is_terminal(&obj) {
            let _ = wake.unbounded_send(ObjectRef::from_obj(&*obj));
            woken += 1;
        }
    }
    if woken > 0 {
        info!(
            objects = woken,
            "policies or namespaces changed: checking refused objects again"
        );
    }
}

/// What the policy and namespace watches need besides their own caches.
pub(super) struct Watching {
    pub client: kube::Client,
    pub objects: Store<SaeInstanceDeletion>,
    pub wake: futures::channel::mpsc::UnboundedSender<ObjectRef<SaeInstanceDeletion>>,
    pub metrics: Metrics,
    pub recorder: Recorder,
}

/// Watches the policies (cluster-scoped) into `writer`, writes each one's status once per
/// generation (what [`policy_status`] says), and wakes refused objects when a spec changes.
/// Runs only where [`super::run`] runs, that is on the leader when leader election is on.
pub(super) async fn watch_policies(
    caches: PolicyCaches,
    writer: reflector::store::Writer<SaeDeletionPolicy>,
    watching: Watching,
) {
    let api: Api<SaeDeletionPolicy> = Api::all(watching.client.clone());
    let mut seen = HashMap::new();
    let mut events = watcher(api.clone(), watcher::Config::default())
        .default_backoff()
        .reflect(writer)
        .boxed();
    while let Some(event) = events.next().await {
        let event = match event {
            Ok(event) => event,
            Err(err) => {
                warn!(error = %err, "watching SaeDeletionPolicy objects failed; retrying");
                continue;
            }
        };
        caches.changed();
        let generation = |p: &SaeDeletionPolicy| format!("{:?}", p.metadata.generation);
        if changes(&mut seen, &event, generation) {
            wake_refused(&watching.objects, &watching.wake);
        }
        if let watcher::Event::Apply(policy) | watcher::Event::InitApply(policy) = &event {
            write_policy_status(&api, &watching.recorder, policy).await;
        }
        report_policies(&caches, &watching.metrics);
    }
}

fn report_policies(caches: &PolicyCaches, metrics: &Metrics) {
    let (mut ready, mut invalid) = (0, 0);
    for policy in caches.policies.state() {
        match crate::policy::validate(&policy) {
            Ok(()) => ready += 1,
            Err(_) => invalid += 1,
        }
    }
    metrics.set_policies(ready, invalid);
}

/// Writes the policy's Ready condition when none was written for the policy's generation yet (a
/// merge patch of the status subresource). An invalid policy also gets a Warning Event when it becomes invalid.
async fn write_policy_status(
    api: &Api<SaeDeletionPolicy>,
    recorder: &Recorder,
    policy: &SaeDeletionPolicy,
) {
    // Once per generation (see policy_status_needs_write): installs that disagree do not
    // ping-pong the status between them.
    if !policy_status_needs_write(policy) {
        return;
    }
    let status = policy_status(policy, Timestamp::now());
    if policy.status.as_ref() == Some(&status) {
        return;
    }
    let patch = Patch::Merge(serde_json::json!({ "status": status }));
    let params = PatchParams::default();
    if let Err(err) = api.patch_status(&policy.name_any(), &params, &patch).await {
        warn!(policy = %policy.name_any(), error = %err, "could not write the policy's status");
        return;
    }
    let ready = status
        .conditions
        .iter()
        .find(|c| c.type_ == POLICY_CONDITION_READY);
    let was_invalid = policy.status.as_ref().is_some_and(|s| {
        s.conditions
            .iter()
            .any(|c| c.type_ == POLICY_CONDITION_READY && c.status == "False")
    });
    if let Some(ready) = ready.filter(|c| c.status == "False" && !was_invalid) {
        warn!(policy = %policy.name_any(), message = %ready.message, "invalid deletion policy");
        let event = KubeEvent {
            type_: EventType::Warning,
            reason: ready.reason.clone(),
            note: Some(ready.message.chars().take(1000).collect()),
            action: "Validate".into(),
            secondary: None,
        };
        // A courtesy: a controller confined to one namespace may not publish outside it.
        if let Err(err) = recorder.publish(&event, &policy.object_ref(&())).await {
            warn!(error = %err, controller = CONTROLLER_NAME, "could not publish the policy's event");
        }
    }
}

/// Watches namespaces' metadata (labels, for namespaceSelector) into `writer`, and wakes refused
/// objects when a namespace's labels change, or one appears or goes. With `only`, the one
/// namespace a confined controller serves (a field selector: no other is read).
pub(super) async fn watch_namespaces(
    writer: reflector::store::Writer<PartialObjectMeta<Namespace>>,
    only: Option<String>,
    watching: Watching,
) {
    // Metadata only: an Api of PartialObjectMeta makes metadata-only requests.
    let api: Api<PartialObjectMeta<Namespace>> = Api::all(watching.client.clone());
    let mut config = watcher::Config::default();
    if let Some(name) = &only {
        config = config.fields(&format!("metadata.name={name}"));
    }
    let mut seen = HashMap::new();
    let mut events = watcher(api, config)
        .default_backoff()
        .reflect(writer)
        .boxed();
    while let Some(event) = events.next().await {
        match event {
            Ok(event) => {
                let labels =
                    |ns: &PartialObjectMeta<Namespace>| format!("{:?}", ns.metadata.labels);
                if changes(&mut seen, &event, labels) {
                    wake_refused(&watching.objects, &watching.wake);
                }
            }
            Err(err) => warn!(error = %err, "watching Namespaces failed; retrying"),
        }
    }
}

/// Waits until both caches hold their first full list: before that, "no policy" would only mean
/// "not read yet", and admitting on it would fail open.
pub(super) async fn wait_for_caches(caches: &PolicyCaches) {
    wait_until_ready("SaeDeletionPolicy", &caches.policies).await;
    wait_until_ready("Namespace", &caches.namespaces).await;
}

async fn wait_until_ready<K>(kind: &str, store: &Store<K>)
where
    K: kube::Resource + Clone + 'static,
    K::DynamicType: Eq + std::hash::Hash + Clone,
{
    // As for the object cache (see `run`): the readiness future keeps one waker; ask again until
    // it answers.
    let mut waited = 0u32;
    loop {
        if let Ok(Ok(())) =
            tokio::time::timeout(Duration::from_millis(500), store.wait_until_ready()).await
        {
            return;
        }
        waited += 1;
        if waited.is_multiple_of(60) {
            warn!(
                kind,
                "still waiting for the first list; no object is reconciled until then. After an \
                 upgrade: apply crds/ (the SaeDeletionPolicy CRD) and deploy/'s RBAC (policies, \
                 their status, namespaces) before the new controller"
            );
        }
    }
}

#[cfg(test)]
mod tests;
