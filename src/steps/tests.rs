//! The loop under test: the stories of one object against an in-memory SAE, run through the very
//! [`reconcile`] the controller runs, with [`Effects`] that move a clock instead of waiting.

use jiff::Timestamp;

use super::*;
use crate::crd::{Phase, SaeInstanceDeletion, SaeInstanceDeletionStatus};
use crate::decide::tests::{api_error, at, found, fresh, ids, inputs_at, status, submitting};
use crate::decide::{AppTurn, Event, Evidence, FoundChangeOrder, Inputs, PolicyCheck};
use crate::sae::time::{CreateTimeZone, SaeTime};
use crate::sae::{ChangeOrderDetail, DeleteAccepted, SaeError};

/// How one DeleteInstances send fares.
#[derive(Clone, Copy, Debug)]
enum Fate {
    Answered,
    /// Timed out before SAE saw it.
    LostBeforeSae,
    /// SAE executed it, the answer never arrived.
    LostAfterSae,
    /// The answer never arrived and SAE executes it 20 s later (inside resolve_after).
    ExecutedLate,
    /// Refused: another change order runs.
    AppBusy,
    /// 5xx from the gateway, SAE did not execute it.
    GatewayErrorBeforeSae,
    /// SAE unreachable: the connection was refused, nothing was sent.
    Unreachable,
}

/// Just enough of SAE's side of one app for the stories. A change order it opens finishes at
/// once.
struct FakeSae {
    instances: Vec<String>,
    orders: Vec<FoundChangeOrder>,
    fates: Vec<Fate>,
    executed: usize,
    /// Sends SAE will still execute: (when, ids).
    in_flight: Vec<(i64, Vec<String>)>,
    /// Seconds after its creation a change order first shows in the list (SAE's reads lag).
    list_lag: i64,
    /// Another object's change orders on the app, each listed as nobody's until the second
    /// that object records it (then the caller takes it out of the evidence).
    others: Vec<(FoundChangeOrder, i64)>,
}

impl FakeSae {
    fn new(instances: &[&str], fates: &[Fate]) -> Self {
        Self {
            instances: ids(instances),
            orders: vec![],
            fates: fates.to_vec(),
            executed: 0,
            in_flight: vec![],
            list_lag: 0,
            others: vec![],
        }
    }

    /// Lets SAE execute what was due by `now`.
    fn tick(&mut self, now: i64) {
        let (due, later) = self.in_flight.drain(..).partition(|(t, _)| *t <= now);
        self.in_flight = later;
        for (t, ids) in due {
            let _ = self.execute(&ids, t);
        }
    }

    fn execute(&mut self, ids: &[String], now: i64) -> Result<String, SaeError> {
        if ids.iter().any(|id| !self.instances.contains(id)) {
            return Err(api_error("InvalidParameter.WithMessage", 400));
        }
        self.executed += 1;
        let id = format!("co-{}", self.executed);
        self.instances.retain(|i| !ids.contains(i));
        self.orders.insert(0, found(&id, Some(now), 2));
        Ok(id)
    }

    fn delete(&mut self, ids: &[String], now: i64) -> Result<DeleteAccepted, SaeError> {
        let fate = if self.fates.is_empty() {
            Fate::Answered
        } else {
            self.fates.remove(0)
        };
        let lost = SaeError::NoAnswer {
            operation: "DeleteInstances",
            detail: "timed out".into(),
        };
        match fate {
            Fate::LostBeforeSae => return Err(lost),
            Fate::GatewayErrorBeforeSae => return Err(api_error("ServiceUnavailable", 503)),
            Fate::AppBusy => return Err(api_error("Application.ChangerOrderRunning", 400)),
            Fate::Unreachable => {
                return Err(SaeError::NotSent {
                    operation: "DeleteInstances",
                    endpoint: "https://sae.cn-hangzhou.aliyuncs.com".into(),
                    detail: "tcp connect error: Connection refused (os error 111)".into(),
                });
            }
            Fate::ExecutedLate => {
                self.in_flight.push((now + 20, ids.to_vec()));
                return Err(lost);
            }
            Fate::Answered | Fate::LostAfterSae => {}
        }
        let id = self.execute(ids, now)?;
        match fate {
            Fate::LostAfterSae => Err(lost),
            _ => Ok(DeleteAccepted {
                change_order_id: id,
                request_id: Some("req-ok".into()),
                trace_id: None,
            }),
        }
    }

    fn describe(&self, id: &str) -> Result<ChangeOrderDetail, SaeError> {
        let found = self.orders.iter().find(|o| o.change_order_id == id);
        Ok(ChangeOrderDetail {
            change_order_id: id.into(),
            status: found.map_or(0, |o| o.status),
            sub_status: None,
            co_type_code: Some("CoDeleteInstances".into()),
            error_message: None,
            create_time: None,
            request_id: Some("req-poll".into()),
        })
    }

    fn evidence(&self, now: i64) -> Evidence {
        let shown = |o: &&FoundChangeOrder| match o.created {
            Some(SaeTime::Absolute(t)) => t.as_second() + self.list_lag <= at(now).as_second(),
            _ => true,
        };
        let unclaimed = self
            .others
            .iter()
            .filter(|(_, claimed_at)| now < *claimed_at)
            .map(|(o, _)| o);
        Evidence {
            change_orders: self
                .orders
                .iter()
                .chain(unclaimed)
                .filter(shown)
                .cloned()
                .collect(),
            complete: true,
            existing_instance_ids: self.instances.clone(),
            terminating_instance_ids: vec![],
            zone: CreateTimeZone::Named,
            zone_learned: CreateTimeZone::Named,
            looked_at: at(now),
            since: Timestamp::MIN,
        }
    }
}

/// The world one reconcile sees: the fake SAE, a clock in seconds after T0 that only moves when
/// something waits, and the adversities a test arranges.
struct World<'s> {
    sae: &'s mut FakeSae,
    now: i64,
    /// What was done, in order: "token" (for a send), "write", "send", "poll", "resolve",
    /// "check-gone", "wait".
    trail: Vec<&'static str>,
    events: Vec<Event>,
    /// How long each status write takes, in seconds (a slow API server).
    write_takes: i64,
    /// How many more times the leader lease can be confirmed.
    lease_confirmations: u32,
    /// The object is deleted from the API server while its send token is awaited.
    deleted_while_waiting: bool,
    deleted: bool,
    /// The first poll's token does not come by its `write_by` (a busy quota).
    first_poll_token_late: bool,
    /// The object as the API server last stored it.
    stored: Option<SaeInstanceDeletion>,
    /// What the deletion policies say, and the checks made, in order.
    policy: PolicyCheck,
    /// What the full check (after the send's token) says, when it differs from the quick one.
    full_policy: Option<PolicyCheck>,
    policy_checks: Vec<PolicyStage>,
}

impl<'s> World<'s> {
    fn new(sae: &'s mut FakeSae, now: i64) -> Self {
        Self {
            sae,
            now,
            trail: vec![],
            events: vec![],
            write_takes: 0,
            lease_confirmations: u32::MAX,
            deleted_while_waiting: false,
            deleted: false,
            first_poll_token_late: false,
            stored: None,
            policy: PolicyCheck::Admitted,
            full_policy: None,
            policy_checks: vec![],
        }
    }

    fn wait_until(&mut self, t: Timestamp) {
        self.now = self.now.max(t.as_second() - at(0).as_second());
        self.sae.tick(self.now);
    }
}

impl Effects for World<'_> {
    type Error = std::convert::Infallible;

    fn now(&mut self) -> Timestamp {
        at(self.now)
    }

    fn inputs(&mut self, _: &SaeInstanceDeletion) -> Inputs {
        inputs_at(self.now)
    }

    fn app_turn(&self, _: &SaeInstanceDeletion) -> AppTurn {
        AppTurn::Free
    }

    async fn policy(
        &mut self,
        _: &SaeInstanceDeletion,
        stage: PolicyStage,
    ) -> Result<PolicyCheck, Self::Error> {
        self.policy_checks.push(stage);
        Ok(match (stage, &self.full_policy) {
            (PolicyStage::Full, Some(full)) => full.clone(),
            _ => self.policy.clone(),
        })
    }

    async fn read_credentials(&mut self, _: &SaeInstanceDeletion) -> Result<(), String> {
        Ok(())
    }

    async fn token(
        &mut self,
        _: &SaeInstanceDeletion,
        priority: Priority,
    ) -> Result<(), Self::Error> {
        if priority == Priority::Delete {
            self.trail.push("token");
            self.deleted |= self.deleted_while_waiting;
        }
        Ok(())
    }

    async fn token_by(
        &mut self,
        _: &SaeInstanceDeletion,
        _: Priority,
        _: Timestamp,
    ) -> Result<bool, Self::Error> {
        Ok(!self.first_poll_token_late)
    }

    async fn rest_of_token(&mut self) -> Result<(), Self::Error> {
        Ok(())
    }

    async fn sleep_until(&mut self, t: Timestamp) {
        self.trail.push("wait");
        self.wait_until(t);
    }

    fn newer(&self, _: &SaeInstanceDeletion) -> Option<SaeInstanceDeletion> {
        None
    }

    fn was_deleted(&self, _: &SaeInstanceDeletion) -> bool {
        self.deleted
    }

    async fn may_send(&mut self) -> bool {
        let confirmed = self.lease_confirmations > 0;
        self.lease_confirmations = self.lease_confirmations.saturating_sub(1);
        confirmed
    }

    fn claim_app(&mut self, _: &SaeInstanceDeletion) -> bool {
        true
    }

    fn release_app(&mut self, _: &SaeInstanceDeletion) {}

    async fn write_status(
        &mut self,
        obj: &mut SaeInstanceDeletion,
        status: SaeInstanceDeletionStatus,
    ) -> Result<bool, Self::Error> {
        self.trail.push("write");
        self.now += self.write_takes;
        *obj = stored_with(obj, status);
        self.stored = Some(obj.clone());
        Ok(true)
    }

    async fn publish(&mut self, _: &SaeInstanceDeletion, event: &Event) {
        self.events.push(event.clone());
    }

    async fn delete_instances(
        &mut self,
        _: &SaeInstanceDeletion,
        instance_ids: &[String],
    ) -> Result<Result<DeleteAccepted, SaeError>, Self::Error> {
        self.trail.push("send");
        self.sae.tick(self.now);
        Ok(self.sae.delete(instance_ids, self.now))
    }

    async fn describe_change_order(
        &mut self,
        _: &SaeInstanceDeletion,
        change_order_id: &str,
        _: Token,
    ) -> Result<Result<ChangeOrderDetail, SaeError>, Self::Error> {
        self.trail.push("poll");
        self.sae.tick(self.now);
        Ok(self.sae.describe(change_order_id))
    }

    async fn instance_ids(
        &mut self,
        _: &SaeInstanceDeletion,
        priority: Priority,
    ) -> Result<Result<Vec<String>, SaeError>, Self::Error> {
        assert_eq!(priority, Priority::Resolve, "not a dry run");
        self.trail.push("check-gone");
        self.sae.tick(self.now);
        Ok(Ok(self.sae.instances.clone()))
    }

    async fn evidence(
        &mut self,
        _: &SaeInstanceDeletion,
        _: Timestamp,
    ) -> Result<Result<Evidence, SaeError>, Self::Error> {
        self.trail.push("resolve");
        self.sae.tick(self.now);
        Ok(Ok(self.sae.evidence(self.now)))
    }
}

/// Runs one reconcile to its end (the effects here never wait for real).
fn reconcile_once(obj: SaeInstanceDeletion, world: &mut World<'_>) -> Outcome {
    let outcome = futures::executor::block_on(reconcile(obj, world));
    match outcome {
        Ok(outcome) => outcome,
        Err(never) => match never {},
    }
}

/// Runs reconciles the way the controller schedules them (again after each wait) until the
/// object is final. Returns it and the SAE calls and waits, in order.
fn drive(
    obj: SaeInstanceDeletion,
    sae: &mut FakeSae,
    now: i64,
) -> (SaeInstanceDeletion, Vec<&'static str>) {
    let mut world = World::new(sae, now);
    let (obj, trail) = drive_in(obj, &mut world);
    let calls_and_waits = trail
        .into_iter()
        .filter(|s| !matches!(*s, "write" | "token"));
    (obj, calls_and_waits.collect())
}

/// Like [`drive`] in a world the test set up; the trail keeps the writes.
fn drive_in(
    mut obj: SaeInstanceDeletion,
    world: &mut World<'_>,
) -> (SaeInstanceDeletion, Vec<&'static str>) {
    for _ in 0..100 {
        let outcome = reconcile_once(obj.clone(), world);
        // What the API server stored is what the next reconcile reads.
        obj = world.stored.clone().unwrap_or(obj);
        match outcome {
            Outcome::WaitUntil(t) => {
                world.trail.push("wait");
                world.wait_until(t);
            }
            Outcome::Done | Outcome::Deleted => return (obj, world.trail.clone()),
            other => panic!("unexpected {other:?} after {:?}", world.trail),
        }
    }
    panic!("no final phase after 100 reconciles: {:?}", world.trail);
}

/// `obj` with `status`, as the API server would store it (through JSON).
fn stored_with(
    obj: &SaeInstanceDeletion,
    status: SaeInstanceDeletionStatus,
) -> SaeInstanceDeletion {
    let mut next = obj.clone();
    let json = serde_json::to_value(&status).unwrap();
    next.status = Some(serde_json::from_value(json).unwrap());
    next
}

#[test]
fn story_a_lost_answer_proven_not_executed_is_sent_once_more() {
    let mut sae = FakeSae::new(&["i-1", "i-2", "i-3"], &[Fate::LostBeforeSae]);
    let (obj, trail) = drive(fresh(), &mut sae, 10);
    assert_eq!(
        trail,
        vec![
            "send",    // t=10, answer lost
            "wait",    // no look before SAE's last moment to act and its lists settled
            "resolve", // nothing: not executed
            "wait",    // backoff
            "send",    // attempt 2, accepted
            "wait", "poll",
        ]
    );
    let s = status(&obj);
    assert_eq!(
        (s.phase, s.reason()),
        (Some(Phase::Succeeded), Some("Succeeded"))
    );
    assert_eq!(s.attempts, Some(2));
    assert_eq!(s.change_order_id.as_deref(), Some("co-1"));
    assert_eq!(sae.executed, 1, "at most one accepted DeleteInstances");
    assert_eq!(sae.instances, ids(&["i-3"]));
}

#[test]
fn story_a_lost_answer_executed_by_sae_is_adopted_not_resent() {
    let mut sae = FakeSae::new(&["i-1", "i-2"], &[Fate::LostAfterSae]);
    let (obj, trail) = drive(fresh(), &mut sae, 10);
    // One look, once SAE's lists had time to show what it did.
    assert_eq!(trail, vec!["send", "wait", "resolve"]);
    let s = status(&obj);
    assert_eq!(
        (s.phase, s.reason()),
        (Some(Phase::Succeeded), Some("Succeeded"))
    );
    assert_eq!(s.attempts, Some(1));
    assert_eq!(s.change_order_id.as_deref(), Some("co-1"));
    assert_eq!(sae.executed, 1);
}

/// SAE's list shows a change order only 8 s after it was created: the look that would have come
/// 2 s after the lost answer would have found the instances gone and no change order, and ended
/// the object `AlreadyDeleted` without the change order that deleted them.
#[test]
fn story_a_lagging_list_never_hides_the_change_order_of_a_lost_answer() {
    let mut sae = FakeSae::new(&["i-1", "i-2"], &[Fate::LostAfterSae]);
    sae.list_lag = 8;
    let (obj, trail) = drive(fresh(), &mut sae, 10);
    assert_eq!(trail, vec!["send", "wait", "resolve"]);
    let s = status(&obj);
    assert_eq!(
        (s.phase, s.reason()),
        (Some(Phase::Succeeded), Some("Succeeded"))
    );
    assert_eq!(s.change_order_id.as_deref(), Some("co-1"));
    assert_eq!(sae.executed, 1);
}

/// The neighbour of issue 17: another object's change order on the app (it deleted i-9, and that
/// object records it only at 80, after a restart) is listed as nobody's, and ours shows 8 s late.
/// A look before ours showed would find exactly one candidate, the neighbour's, and adopt it.
#[test]
fn story_a_neighbour_s_change_order_is_never_taken_while_ours_is_not_listed_yet() {
    let mut sae = FakeSae::new(&["i-1", "i-2"], &[Fate::LostAfterSae]);
    sae.list_lag = 8;
    sae.others.push((found("co-neighbour", Some(7), 2), 80));
    let (obj, trail) = drive(fresh(), &mut sae, 10);
    // At 66 both are listed: never a guess; once the neighbour's is recorded, ours is adopted.
    assert_eq!(trail.first(), Some(&"send"));
    assert_eq!(trail.last(), Some(&"resolve"));
    assert!(
        trail.iter().filter(|s| **s == "resolve").count() >= 2,
        "{trail:?}"
    );
    let s = status(&obj);
    assert_eq!(
        (s.phase, s.reason()),
        (Some(Phase::Succeeded), Some("Succeeded"))
    );
    assert_eq!(
        s.change_order_id.as_deref(),
        Some("co-1"),
        "its own, not the neighbour's"
    );
    assert_eq!(sae.executed, 1);
}

#[test]
fn story_an_attempt_sae_executes_late_is_found_not_resent() {
    let mut sae = FakeSae::new(&["i-1", "i-2"], &[Fate::ExecutedLate]);
    let (obj, trail) = drive(fresh(), &mut sae, 10);
    // No look while SAE may still act; then SAE's change order from t=30 is there.
    assert_eq!(trail, vec!["send", "wait", "resolve"]);
    let s = status(&obj);
    assert_eq!(
        (s.phase, s.reason()),
        (Some(Phase::Succeeded), Some("Succeeded"))
    );
    assert_eq!(s.change_order_id.as_deref(), Some("co-1"));
    assert_eq!(sae.executed, 1);
}

#[test]
fn story_a_crash_after_the_write_ahead_sends_at_most_once() {
    // The process died after writing attempt 1 ahead; the send happened or it did not.
    for sent_before_crash in [false, true] {
        let mut sae = FakeSae::new(&["i-1", "i-2"], &[]);
        if sent_before_crash {
            sae.delete(&ids(&["i-1", "i-2"]), 10).unwrap();
        }
        let (obj, _) = drive(submitting(), &mut sae, 30);
        let s = status(&obj);
        assert_eq!(s.phase, Some(Phase::Succeeded), "sent {sent_before_crash}");
        assert_eq!(sae.executed, 1, "sent {sent_before_crash}");
        assert_eq!(s.attempts, Some(if sent_before_crash { 1 } else { 2 }));
    }
}

#[test]
fn every_mix_of_lost_and_refused_sends_deletes_exactly_once() {
    use Fate::*;
    let fates = [
        Answered,
        LostBeforeSae,
        LostAfterSae,
        ExecutedLate,
        AppBusy,
        GatewayErrorBeforeSae,
        Unreachable,
    ];
    for first in fates {
        for second in fates {
            for third in fates {
                let plan = [first, second, third];
                let mut sae = FakeSae::new(&["i-1", "i-2"], &plan);
                let (obj, trail) = drive(fresh(), &mut sae, 10);
                let s = status(&obj);
                assert_eq!(sae.executed, 1, "{plan:?}: {trail:?}");
                assert_eq!(s.phase, Some(Phase::Succeeded), "{plan:?}: {s:#?}");
                assert_eq!(s.reason(), Some("Succeeded"), "{plan:?}");
                assert!(sae.instances.is_empty(), "{plan:?}");
            }
        }
    }
}

#[test]
fn story_an_outage_longer_than_max_attempts_backoffs_then_back_executes_once() {
    // maxAttempts 2, and SAE unreachable for eight sends (about two minutes of backoff): none of
    // them counts, so the ninth send is still attempt 1, and SAE executes it.
    let mut obj = fresh();
    obj.spec.retry.max_attempts = 2;
    let mut sae = FakeSae::new(&["i-1", "i-2"], &[Fate::Unreachable; 8]);
    let mut world = World::new(&mut sae, 10);
    let (obj, trail) = drive_in(obj, &mut world);
    let sends = trail.iter().filter(|s| **s == "send").count();
    let now = world.now;
    let unreachable_written = world
        .events
        .iter()
        .filter(|e| e.reason == "SaeUnreachable")
        .count();
    assert_eq!(sends, 9, "{trail:?}");
    assert_eq!(unreachable_written, 8, "{:?}", world.events);
    assert!(now > 100, "the outage lasted beyond two backoffs: t={now}");
    let s = status(&obj);
    assert_eq!(
        (s.phase, s.reason()),
        (Some(Phase::Succeeded), Some("Succeeded")),
        "{s:#?}"
    );
    assert_eq!(s.attempts, Some(1));
    assert_eq!(s.sae_unreachable_since, None);
    assert_eq!(sae.executed, 1);
    assert!(sae.instances.is_empty());
}

#[test]
fn story_instances_already_gone_succeed_without_deleting_anything() {
    use Fate::*;
    // A re-applied object for instances an earlier one removed: rejected, checked, done.
    for first in [Answered, LostBeforeSae, AppBusy, GatewayErrorBeforeSae] {
        let mut sae = FakeSae::new(&["i-3"], &[first]);
        let (obj, trail) = drive(fresh(), &mut sae, 10);
        let s = status(&obj);
        assert_eq!(
            (s.phase, s.reason()),
            (Some(Phase::Succeeded), Some("AlreadyDeleted")),
            "{first:?}: {trail:?}"
        );
        assert_eq!(sae.executed, 0, "{first:?}");
    }
    let mut sae = FakeSae::new(&["i-3"], &[]);
    let (_, trail) = drive(fresh(), &mut sae, 10);
    assert_eq!(
        trail,
        vec!["send", "check-gone"],
        "one extra call, only here"
    );
}

// ---- The order of the steps the proof rests on ------------------------------------------------

#[test]
fn a_send_takes_its_token_then_writes_ahead_then_sends() {
    let mut sae = FakeSae::new(&["i-1", "i-2"], &[]);
    let mut world = World::new(&mut sae, 10);
    let (obj, trail) = drive_in(fresh(), &mut world);
    assert_eq!(
        trail,
        vec!["token", "write", "send", "wait", "poll", "write"],
        "the accepted status is held for the first poll and written with its result"
    );
    assert_eq!(status(&obj).phase, Some(Phase::Succeeded));
    assert_eq!(sae.executed, 1);
}

#[test]
fn a_write_ahead_that_lands_too_late_is_not_sent_and_the_attempt_is_taken_back() {
    let mut sae = FakeSae::new(&["i-1", "i-2"], &[]);
    let mut world = World::new(&mut sae, 10);
    world.write_takes = SEND_BOUND.as_secs() + 1;
    let outcome = reconcile_once(fresh(), &mut world);
    let trail = world.trail.clone();
    let stored = world.stored.clone().expect("written");
    assert_eq!(trail, vec!["token", "write", "write"], "{outcome:?}");
    let s = status(&stored);
    assert_eq!(s.phase, Some(Phase::Pending), "{s:#?}");
    assert_eq!(
        s.attempts(),
        0,
        "the attempt that never left is not counted"
    );
    assert_eq!(sae.executed, 0);
}

#[test]
fn a_lease_lost_after_the_write_ahead_sends_nothing() {
    let mut sae = FakeSae::new(&["i-1", "i-2"], &[]);
    let mut world = World::new(&mut sae, 10);
    // Confirmed for the write-ahead, then lost: the check right before the bytes leave refuses.
    world.lease_confirmations = 1;
    reconcile_once(fresh(), &mut world);
    assert_eq!(world.trail, vec!["token", "write", "write"]);
    let stored = world.stored.clone().expect("written");
    assert_eq!(status(&stored).phase, Some(Phase::Pending));
    assert_eq!(sae.executed, 0);
}

#[test]
fn a_lease_that_cannot_be_confirmed_writes_nothing() {
    let mut sae = FakeSae::new(&["i-1", "i-2"], &[]);
    let mut world = World::new(&mut sae, 10);
    world.lease_confirmations = 0;
    assert_eq!(
        reconcile_once(fresh(), &mut world),
        Outcome::LeaseUnconfirmed
    );
    assert_eq!(world.trail, vec!["token"]);
    assert!(world.stored.is_none(), "no write-ahead");
}

#[test]
fn an_object_deleted_while_its_token_is_awaited_is_not_sent() {
    let mut sae = FakeSae::new(&["i-1", "i-2"], &[]);
    let mut world = World::new(&mut sae, 10);
    world.deleted_while_waiting = true;
    assert_eq!(reconcile_once(fresh(), &mut world), Outcome::Deleted);
    assert_eq!(world.trail, vec!["token"]);
    assert_eq!(sae.executed, 0);
}

#[test]
fn a_first_poll_whose_token_is_late_writes_the_change_order_before_polling() {
    let mut sae = FakeSae::new(&["i-1", "i-2"], &[]);
    let mut world = World::new(&mut sae, 10);
    world.first_poll_token_late = true;
    let (obj, trail) = drive_in(fresh(), &mut world);
    assert_eq!(
        trail,
        vec!["token", "write", "send", "wait", "write", "poll", "write"],
        "the held status (with the change order id) is written before the poll waits on"
    );
    assert_eq!(status(&obj).phase, Some(Phase::Succeeded));
    let held_events = world
        .events
        .iter()
        .filter(|e| e.reason == "InProgress")
        .count();
    assert!(held_events <= 1, "{:?}", world.events);
    assert_eq!(sae.executed, 1);
}

/// The policies' full check comes after the send's token and before the write-ahead: a window
/// that closed, or an app that lost instances, while the token was awaited stops the send, and
/// nothing was written ahead, so nothing is to be resolved.
#[test]
fn the_policies_are_checked_after_the_token_and_before_the_write_ahead() {
    let mut sae = FakeSae::new(&["i-1", "i-2"], &[]);
    let mut world = World::new(&mut sae, 10);
    let outcome = reconcile_once(fresh(), &mut world);
    assert_eq!(outcome, Outcome::Done);
    assert_eq!(world.policy_checks, [PolicyStage::Quick, PolicyStage::Full]);
    assert_eq!(world.trail[..3], ["token", "write", "send"]);

    let mut sae = FakeSae::new(&["i-1", "i-2"], &[]);
    let mut world = World::new(&mut sae, 10);
    world.full_policy = Some(PolicyCheck::Refused(crate::policy::Refusal {
        reason: crate::policy::RefusalReason::DisruptionBudget,
        policy: Some("keep-two".into()),
        message: "policy keep-two keeps 2 instances of app app-1 running; 1 would be left".into(),
        retry_at: None,
    }));
    let outcome = reconcile_once(fresh(), &mut world);
    assert!(matches!(outcome, Outcome::WaitUntil(_)), "{outcome:?}");
    assert_eq!(
        world.trail,
        ["token", "write"],
        "no write-ahead and no send; the one write is the refusal: {:?}",
        world.trail
    );
    let s = status(world.stored.as_ref().unwrap());
    assert_eq!(
        (s.phase, s.reason(), s.attempts()),
        (Some(Phase::Pending), Some("DisruptionBudget"), 0)
    );
    assert_eq!(world.sae.executed, 0);
}
