//! What is kept of objects that left the cache: finished objects (their phase and change order)
//! and deleted ones (tombstones of their change orders, and the uids of those deleted before they
//! finished). The watch stream passes through [`Finished::keep_live_only`] on its way to the cache.
//!
//! It also keeps, for maxInstancesPerHour, a [`DeletionRecord`] of every object seen with one
//! (live, finished or deleted), by uid, for [`BUDGET_PERIOD`] after the request. Live objects are
//! recorded as they pass, not only when they finish or are deleted: a watch that re-lists after a
//! break drops objects deleted meanwhile from the cache without a Delete event, and their
//! requests of the last hour must still count. (The live cache still wins per uid.)
//!
//! Residual gap: this is memory only. Finished objects come back after a restart or failover from
//! their statuses (the initial list); objects deleted from the cluster before it do not, so their
//! requests of the last hour are then not counted. Closing that needs a record that outlives the
//! object (e.g. a ConfigMap), a change of its own; docs/guarantees.md says so.
//!
//! Plain bookkeeping: no API calls, no SAE calls.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use jiff::Timestamp;
use kube::ResourceExt;
use kube::runtime::watcher;

use super::is_terminal;
use crate::crd::{Phase, SaeInstanceDeletion};
use crate::policy::{BUDGET_PERIOD, DeletionRecord, deletion_record};

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
    tombstones: VecDeque<(Instant, String)>,
    /// Uids of objects deleted while not finished: an attempt of theirs is not sent.
    deleted: VecDeque<(Instant, String)>,
    /// Region → the zone SAE writes change-order times in, as finished objects learned it.
    zones: HashMap<String, String>,
    /// Object uid → what its request did to its app, for objects that finished or were deleted,
    /// until [`BUDGET_PERIOD`] after the request (then it no longer counts).
    deletions: HashMap<String, DeletionRecord>,
}

/// How long the change order of a deleted object, or a deleted uid, is remembered: longer than
/// any window a lost answer is searched in, and than any send can wait.
const TOMBSTONE_AGE: Duration = Duration::from_secs(24 * 3600);
/// At most this many of each are remembered (the oldest go first).
const TOMBSTONE_CAPACITY: usize = 10_000;

fn push_bounded(list: &mut VecDeque<(Instant, String)>, value: String) {
    while list
        .front()
        .is_some_and(|(t, _)| t.elapsed() > TOMBSTONE_AGE || list.len() >= TOMBSTONE_CAPACITY)
    {
        list.pop_front();
    }
    list.push_back((Instant::now(), value));
}

/// New records between two sweeps of expired ones (a sweep is linear in what is kept).
const RECORD_SWEEP_EVERY: usize = 256;

impl FinishedByUid {
    /// Keeps `record` for the object `uid` (a newer one of the same object replaces it), and
    /// now and then forgets those past [`BUDGET_PERIOD`], which never count again.
    fn record(&mut self, uid: String, record: DeletionRecord) {
        if self.deletions.insert(uid, record).is_none()
            && self.deletions.len().is_multiple_of(RECORD_SWEEP_EVERY)
        {
            let since = Timestamp::now() - BUDGET_PERIOD;
            self.deletions.retain(|_, r| r.at > since);
        }
    }
}

impl Finished {
    fn lock(&self) -> std::sync::MutexGuard<'_, FinishedByUid> {
        self.by_uid.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(super) fn remember_finished(&self, obj: &SaeInstanceDeletion) {
        let Some(status) = &obj.status else { return };
        if let Some(phase) = status.phase {
            let mut kept = self.lock();
            if let Some(record) = deletion_record(obj) {
                kept.record(obj.uid().unwrap_or_default(), record);
            }
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

    /// Keeps the object's [`DeletionRecord`] for the hourly count; forgets a kept one when the
    /// object no longer has one (an attempt found not sent: its status is the newer word).
    pub(super) fn remember_deletion(&self, obj: &SaeInstanceDeletion) {
        let uid = obj.uid().unwrap_or_default();
        match deletion_record(obj) {
            Some(record) => self.lock().record(uid, record),
            None => {
                self.lock().deletions.remove(&uid);
            }
        }
    }

    /// The object is gone from the API server: its change order stays remembered as someone's.
    pub(super) fn deleted(&self, obj: &SaeInstanceDeletion) {
        let mut kept = self.lock();
        let uid = obj.uid().unwrap_or_default();
        // Its request still counts for the hour after it, object or not.
        if let Some(record) = deletion_record(obj) {
            kept.record(uid.clone(), record);
        }
        let change_order = kept
            .finished
            .remove(&uid)
            .and_then(|(_, co)| co)
            .or_else(|| obj.status.as_ref().and_then(|s| s.change_order_id.clone()));
        if let Some(co) = change_order {
            push_bounded(&mut kept.tombstones, co);
        }
        if !is_terminal(obj) {
            push_bounded(&mut kept.deleted, uid);
        }
    }

    pub(super) fn was_deleted(&self, obj: &SaeInstanceDeletion) -> bool {
        let uid = obj.uid().unwrap_or_default();
        self.lock().deleted.iter().any(|(_, d)| *d == uid)
    }

    pub(super) fn change_order_ids(&self) -> Vec<String> {
        let kept = self.lock();
        kept.finished
            .values()
            .filter_map(|(_, co)| co.clone())
            .chain(kept.tombstones.iter().map(|(_, co)| co.clone()))
            .collect()
    }

    /// Records of requests within [`BUDGET_PERIOD`] before `now` (or dated after it), by object
    /// uid; older ones are dropped here, since they never count again.
    pub(super) fn deletion_records(&self, now: Timestamp) -> HashMap<String, DeletionRecord> {
        let since = now - BUDGET_PERIOD;
        let mut kept = self.lock();
        kept.deletions.retain(|_, r| r.at > since);
        kept.deletions.clone()
    }

    pub(super) fn zone(&self, region: &str) -> Option<String> {
        self.lock().zones.get(region).cloned()
    }

    pub(super) fn count_by_phase(&self) -> Vec<(&'static str, i64)> {
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
                self.remember_finished(&obj);
                Some(Ok(Event::Delete(obj)))
            }
            Ok(Event::InitApply(obj)) if is_terminal(&obj) => {
                self.remember_finished(&obj);
                None
            }
            Ok(Event::Delete(obj)) => {
                self.deleted(&obj);
                Some(Ok(Event::Delete(obj)))
            }
            // A live object's request is kept too, in case the object leaves the cache unseen
            // (deleted while the watch was re-listing: no Delete event for it).
            Ok(Event::Apply(obj)) => {
                self.remember_deletion(&obj);
                Some(Ok(Event::Apply(obj)))
            }
            Ok(Event::InitApply(obj)) => {
                self.remember_deletion(&obj);
                Some(Ok(Event::InitApply(obj)))
            }
            other => Some(other),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::controller::slim_for_cache;
    use crate::crd::SaeInstanceDeletionStatus;
    use crate::fixtures;

    #[test]
    fn the_cache_keeps_what_decisions_read_and_drops_the_rest() {
        let mut obj = fixtures::object("x", "ns", fixtures::t0());
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

    #[test]
    fn records_of_live_objects_outlive_a_relist_that_drops_them() {
        use kube::runtime::watcher::Event;
        let finished = Finished::default();
        let sent = Timestamp::now() - jiff::SignedDuration::from_mins(10);
        let mut live = fixtures::object("x", "ns", fixtures::t0());
        live.metadata.uid = Some("uid-live".into());
        live.status = Some(SaeInstanceDeletionStatus {
            phase: Some(Phase::InProgress),
            change_order_id: Some("co-1".into()),
            last_attempt_time: Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(sent)),
            ..Default::default()
        });
        let mut waiting = live.clone();
        waiting.metadata.uid = Some("uid-waiting".into());
        waiting.status = None;
        for event in [
            Event::InitApply(live.clone()),
            Event::Apply(waiting.clone()),
        ] {
            assert!(finished.keep_live_only(Ok(event)).is_some(), "live: cached");
        }
        // The object is deleted while the watch re-lists: no Delete event, only a new list
        // without it. Its request still counts for the hour after it.
        finished.keep_live_only(Ok(Event::Init));
        finished.keep_live_only(Ok(Event::InitDone));
        let records = finished.deletion_records(Timestamp::now());
        assert_eq!(records.keys().collect::<Vec<_>>(), ["uid-live"]);
        assert_eq!(records["uid-live"].at, sent);
        // And no longer than that.
        assert!(
            finished
                .deletion_records(sent + BUDGET_PERIOD + jiff::SignedDuration::from_secs(1))
                .is_empty()
        );
    }

    #[test]
    fn tombstones_are_bounded() {
        let mut list = std::collections::VecDeque::new();
        for i in 0..TOMBSTONE_CAPACITY + 5 {
            push_bounded(&mut list, format!("co-{i}"));
        }
        assert_eq!(list.len(), TOMBSTONE_CAPACITY);
        assert_eq!(
            list.front().map(|(_, co)| co.as_str()),
            Some("co-5"),
            "the oldest go first"
        );
    }
}
