//! How many instances of an app this controller deleted in the last 60 minutes, for
//! maxInstancesPerHour, read from the objects' statuses so that it survives restarts.
//!
//! What counts is every DeleteInstances request SAE accepted or may have accepted, in flight or
//! finished, whatever became of its change order afterwards (a failed one may still have removed
//! some instances): an object whose status records a `changeOrderId`; one in phase `Submitting`
//! (sent or about to be, answer not recorded yet); one `Failed` with reason `OutcomeUnknown` (its
//! answer was lost and never resolved). Each counts all its pinned instance ids at its
//! `lastAttemptTime`, which for an accepted request is the write-ahead time of that request (no
//! attempt follows an accepted one): the request reached SAE a little after, so the hour is
//! counted from slightly early, which errs on the side of counting. Refused attempts, dry runs and
//! `AlreadyDeleted` objects delete nothing and do not count.
//!
//! Objects that left the cache (finished ones) or the cluster (deleted ones) are counted from a
//! [`DeletionRecord`] the caller keeps of them for [`BUDGET_PERIOD`]: see the module docs of
//! [`super`] for what the controller must keep.

use jiff::{SignedDuration, Timestamp};

use crate::crd::{Phase, Reason, SaeInstanceDeletion};

/// The period maxInstancesPerHour counts over.
pub const BUDGET_PERIOD: SignedDuration = SignedDuration::from_secs(3600);

/// What one object's request did to an app, as far as the hourly budget is concerned.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeletionRecord {
    pub region_id: String,
    pub app_id: String,
    /// The instance ids the request named.
    pub instances: u32,
    /// The write-ahead time of the request (status.lastAttemptTime).
    pub at: Timestamp,
}

/// The record of `obj`'s request, if it counts against the hourly budget (see the module docs);
/// None for objects that deleted nothing, or have not yet sent anything.
pub fn deletion_record(obj: &SaeInstanceDeletion) -> Option<DeletionRecord> {
    let status = obj.status.as_ref()?;
    let pinned = obj.pinned();
    if pinned.dry_run {
        return None;
    }
    let at = status.last_attempt_time.as_ref()?.0;
    let may_have_deleted = status.change_order_id.is_some()
        || status.phase == Some(Phase::Submitting)
        || (status.phase == Some(Phase::Failed)
            && status.reason() == Some(Reason::OutcomeUnknown.as_str()));
    may_have_deleted.then(|| DeletionRecord {
        region_id: pinned.region_id.to_string(),
        app_id: pinned.app_id.to_string(),
        instances: u32::try_from(pinned.instance_ids.len()).unwrap_or(u32::MAX),
        at,
    })
}

/// Instances deleted on `region_id`/`app_id` within the [`BUDGET_PERIOD`] before `now`. A record
/// dated after `now` (another replica's clock ahead of ours) counts too. The caller passes each
/// object once (live objects and the records of those gone, without repeats).
pub fn count_recent<'a>(
    records: impl IntoIterator<Item = &'a DeletionRecord>,
    region_id: &str,
    app_id: &str,
    now: Timestamp,
) -> u32 {
    let since = now - BUDGET_PERIOD;
    records
        .into_iter()
        .filter(|r| r.app_id == app_id && r.region_id == region_id && r.at > since)
        .fold(0u32, |sum, r| sum.saturating_add(r.instances))
}

/// [`count_recent`] over objects' statuses (e.g. the controller's cache).
pub fn count_recent_objects<'a>(
    objects: impl IntoIterator<Item = &'a SaeInstanceDeletion>,
    region_id: &str,
    app_id: &str,
    now: Timestamp,
) -> u32 {
    let records: Vec<DeletionRecord> = objects.into_iter().filter_map(deletion_record).collect();
    count_recent(&records, region_id, app_id, now)
}
