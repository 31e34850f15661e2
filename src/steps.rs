//! One reconcile, step by step: the loop that turns each decision's [`Action`] into a call and the
//! call's answer into the next [`Observation`], until a decision says to stop or to wait.
//!
//! The loop is shared: the controller runs it with [`Effects`] that talk to the API server, the
//! quota and SAE; the decision tests run it with an in-memory SAE. So the order of the steps that
//! the at-most-once proof rests on (token first, then the deletion policies' check, then
//! write-ahead, then fence, then send; a held
//! status written before its poll waits for quota) is the same code in both, and a test of the
//! story of an object is a test of what production does.
//!
//! What the loop may not do: decide (that is [`decide`]), or touch the world except through
//! [`Effects`].

use jiff::Timestamp;
use tracing::{info, warn};

use crate::crd::{SaeInstanceDeletion, SaeInstanceDeletionStatus};
use crate::decide::{
    Action, AppTurn, Event, Evidence, Inputs, Observation, PolicyCheck, SEND_BOUND, asks_policies,
    decide, needs_credentials,
};
use crate::quota::Priority;
use crate::sae::{ChangeOrderDetail, DeleteAccepted, SaeError};

/// Each decision leads to at most one SAE step; a handful of rounds covers token → send →
/// accepted → first wait, or resolve → adopt → poll.
const ROUNDS: usize = 10;

/// How a reconcile ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Nothing more to do until the object changes (terminal, or waiting for its app's turn).
    Done,
    /// Nothing to do until then.
    WaitUntil(Timestamp),
    /// A status write was refused as stale: the decision is void; re-read and start over.
    Conflicted,
    /// The leader lease could not be confirmed before a write-ahead: nothing was sent or written.
    LeaseUnconfirmed,
    /// Another object just claimed the app and the cache does not show it yet.
    AppClaimed,
    /// The object was deleted before its DeleteInstances left: nothing was sent.
    Deleted,
    /// More rounds than any story needs; come back soon rather than loop here.
    OutOfRounds,
}

/// How far a policy check goes (see [`Effects::policy`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PolicyStage {
    /// Before the send's quota token: no SAE call.
    Quick,
    /// After it, right before the write-ahead: everything, SAE's instance list included.
    Full,
}

/// Whether the quota token for a change-order poll is still to be taken.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Token {
    /// Take one (by [`Priority::Poll`]) before the request.
    Take,
    /// Already taken ([`Effects::token_by`] / [`Effects::rest_of_token`]).
    Taken,
}

/// Everything a reconcile does to the world. Each SAE method answers `Ok(SAE's answer)` or
/// `Err(Self::Error)` when the step could not be made at all (no credentials were read, the
/// object's deadline passed while waiting for quota).
#[allow(async_fn_in_trait)] // used with concrete types only; no Send bound is needed on the trait
pub trait Effects {
    type Error;

    /// The time, and nothing else (cheap: it is read right before a send).
    fn now(&mut self) -> Timestamp;
    /// The time, the random draw, the settings and what is known of SAE's clock in `obj`'s
    /// region, for the next decision about `obj`.
    fn inputs(&mut self, obj: &SaeInstanceDeletion) -> Inputs;
    /// Whether `obj` may start an attempt on its app, from every watched object.
    fn app_turn(&self, obj: &SaeInstanceDeletion) -> AppTurn;
    /// What the deletion policies say about `obj` sending now. [`PolicyStage::Quick`] makes no SAE
    /// call (a policy that needs the app's Running instances admits for now);
    /// [`PolicyStage::Full`], right before the write-ahead, lists the app's instances when a
    /// policy needs them (a token per request).
    async fn policy(
        &mut self,
        obj: &SaeInstanceDeletion,
        stage: PolicyStage,
    ) -> Result<PolicyCheck, Self::Error>;
    /// Reads `obj`'s credentials for the SAE calls of this reconcile; `Err` says why they are not
    /// usable (names the Secret and keys, never a value).
    async fn read_credentials(&mut self, obj: &SaeInstanceDeletion) -> Result<(), String>;
    /// Waits for a quota token of `obj`'s AccessKey.
    async fn token(
        &mut self,
        obj: &SaeInstanceDeletion,
        priority: Priority,
    ) -> Result<(), Self::Error>;
    /// Waits for a quota token until `by`: true if it came. If not, the place in line is kept and
    /// [`Self::rest_of_token`] waits for it.
    async fn token_by(
        &mut self,
        obj: &SaeInstanceDeletion,
        priority: Priority,
        by: Timestamp,
    ) -> Result<bool, Self::Error>;
    /// Waits for the token [`Self::token_by`] did not get in time.
    async fn rest_of_token(&mut self) -> Result<(), Self::Error>;
    /// Sleeps until `t`.
    async fn sleep_until(&mut self, t: Timestamp);
    /// A newer version of `obj` than this one, if the watch has seen one.
    fn newer(&self, obj: &SaeInstanceDeletion) -> Option<SaeInstanceDeletion>;
    /// Whether `obj` has been deleted from the API server.
    fn was_deleted(&self, obj: &SaeInstanceDeletion) -> bool;
    /// Whether this replica may send now: it holds the leader lease for longer than a request
    /// takes to leave (always true without leader election).
    async fn may_send(&mut self) -> bool;
    /// Claims `obj`'s app for an attempt; false if another object just did.
    fn claim_app(&mut self, obj: &SaeInstanceDeletion) -> bool;
    /// Gives up the claim of [`Self::claim_app`].
    fn release_app(&mut self, obj: &SaeInstanceDeletion);
    /// Writes `status` with `obj`'s resourceVersion as precondition and makes `obj` what the API
    /// server stored; false when it was stale (the decision is void).
    async fn write_status(
        &mut self,
        obj: &mut SaeInstanceDeletion,
        status: SaeInstanceDeletionStatus,
    ) -> Result<bool, Self::Error>;
    /// Publishes an event about `obj` (best effort).
    async fn publish(&mut self, obj: &SaeInstanceDeletion, event: &Event);
    /// Sends DeleteInstances for `instance_ids` (the token is already taken).
    async fn delete_instances(
        &mut self,
        obj: &SaeInstanceDeletion,
        instance_ids: &[String],
    ) -> Result<Result<DeleteAccepted, SaeError>, Self::Error>;
    /// DescribeChangeOrder.
    async fn describe_change_order(
        &mut self,
        obj: &SaeInstanceDeletion,
        change_order_id: &str,
        token: Token,
    ) -> Result<Result<ChangeOrderDetail, SaeError>, Self::Error>;
    /// Every instance id of `obj`'s app, one token per request.
    async fn instance_ids(
        &mut self,
        obj: &SaeInstanceDeletion,
        priority: Priority,
    ) -> Result<Result<Vec<String>, SaeError>, Self::Error>;
    /// What SAE shows about a lost attempt of `obj`, back to `since`.
    async fn evidence(
        &mut self,
        obj: &SaeInstanceDeletion,
        since: Timestamp,
    ) -> Result<Result<Evidence, SaeError>, Self::Error>;
}

/// Runs one reconcile of `obj`: decide, perform, observe, until a decision stops or waits.
pub async fn reconcile<E: Effects>(
    mut obj: SaeInstanceDeletion,
    fx: &mut E,
) -> Result<Outcome, E::Error> {
    let app = fx.app_turn(&obj);
    let credentials = if needs_credentials(&obj, &app) {
        fx.read_credentials(&obj).await
    } else {
        Ok(())
    };
    let start = |app: AppTurn, policy: PolicyCheck| Observation::Start {
        credentials: credentials.clone(),
        app,
        policy,
    };
    let policy = if credentials.is_ok() && asks_policies(&obj) {
        fx.policy(&obj, PolicyStage::Quick).await?
    } else {
        PolicyCheck::Admitted
    };
    let mut observation = start(app, policy);
    // A status decided but not written yet (Action::FirstPoll), with the events of that decision.
    // `obj` carries it in memory; its resourceVersion is still the one the write-ahead got.
    let mut held: Option<Vec<Event>> = None;
    // Whether this reconcile holds a quota token for a DeleteInstances.
    let mut send_token = false;
    for _ in 0..ROUNDS {
        let decision = decide(&obj, &fx.inputs(&obj), observation);
        if let Action::SendDelete { .. } = decision.action {
            if !send_token {
                // Token first: the wait for quota may be long, and it must not lie between the
                // write-ahead and the send. Then decide again on what is true after the wait.
                fx.token(&obj, Priority::Delete).await?;
                send_token = true;
                if fx.was_deleted(&obj) {
                    info!("object deleted while waiting for quota: nothing sent");
                    return Ok(Outcome::Deleted);
                }
                if let Some(newer) = fx.newer(&obj) {
                    obj = newer;
                }
                // The policies' full word, right before the write-ahead: a window may have closed
                // or the app lost instances while the token was awaited.
                let policy = fx.policy(&obj, PolicyStage::Full).await?;
                observation = start(fx.app_turn(&obj), policy);
                continue;
            }
            if !fx.may_send().await {
                // Sends nothing and writes nothing: the caller looks again soon.
                return Ok(Outcome::LeaseUnconfirmed);
            }
            if !fx.claim_app(&obj) {
                return Ok(Outcome::AppClaimed);
            }
        }
        if let Action::FirstPoll { .. } = decision.action {
            obj.status = Some(decision.status);
            held = Some(decision.events);
        } else {
            // A held status was never written, whether or not this decision changes it.
            let unwritten = held.is_some();
            let events = match held.take() {
                Some(held_events) => events_after_held(
                    obj.status.as_ref(),
                    held_events,
                    decision.events,
                    &decision.status,
                ),
                None => decision.events,
            };
            if (unwritten || obj.status.as_ref() != Some(&decision.status))
                && !fx.write_status(&mut obj, decision.status).await?
            {
                return Ok(Outcome::Conflicted);
            }
            for event in &events {
                fx.publish(&obj, event).await;
            }
        }
        observation = match decision.action {
            Action::Done => return Ok(Outcome::Done),
            Action::WaitUntil(t) => return Ok(Outcome::WaitUntil(t)),
            Action::SendDelete { instance_ids } => {
                send_token = false;
                // Fencing, second half: after the token and the write-ahead, right before the
                // bytes leave, the lease must still be ours and the object still wanted.
                if fx.was_deleted(&obj) {
                    fx.release_app(&obj);
                    info!("object deleted after its write-ahead: DeleteInstances not sent");
                    return Ok(Outcome::Deleted);
                }
                // Either way the attempt is taken back in the status (if the API server takes the
                // write: a replica that is no leader any more meets the new leader's writes as a
                // conflict), so it is neither stranded in Submitting nor resolved at length.
                let why = if !fx.may_send().await {
                    Some("this replica could not confirm it holds the leader lease".to_string())
                } else if !within_send_bound(&obj, fx.now()) {
                    Some(format!(
                        "it could not leave within {} s of its write-ahead (slow API server?)",
                        SEND_BOUND.as_secs()
                    ))
                } else {
                    None
                };
                if let Some(why) = why {
                    warn!(%why, "DeleteInstances not sent");
                    observation = Observation::NotSent { why };
                    continue;
                }
                Observation::DeleteResult(fx.delete_instances(&obj, &instance_ids).await?)
            }
            Action::PollChangeOrder { change_order_id } => Observation::ChangeOrderResult(
                fx.describe_change_order(&obj, &change_order_id, Token::Take)
                    .await?,
            ),
            Action::FirstPoll {
                change_order_id,
                at,
                write_by,
            } => {
                fx.sleep_until(at).await;
                if !fx.token_by(&obj, Priority::Poll, write_by).await? {
                    // The quota is busy: record the change order now, poll when a token comes.
                    let status = obj.status.clone().unwrap_or_default();
                    if !fx.write_status(&mut obj, status).await? {
                        return Ok(Outcome::Conflicted);
                    }
                    for event in held.take().unwrap_or_default() {
                        fx.publish(&obj, &event).await;
                    }
                    fx.rest_of_token().await?;
                }
                Observation::ChangeOrderResult(
                    fx.describe_change_order(&obj, &change_order_id, Token::Taken)
                        .await?,
                )
            }
            Action::CheckInstances => {
                Observation::DryRunResult(fx.instance_ids(&obj, Priority::Poll).await?)
            }
            Action::ResolveAttempt { since, .. } => {
                Observation::ResolveResult(fx.evidence(&obj, since).await?)
            }
            Action::CheckGone { rejection } => Observation::GoneCheck {
                rejection,
                existing: fx.instance_ids(&obj, Priority::Resolve).await?,
            },
        };
    }
    Ok(Outcome::OutOfRounds)
}

/// Whether the write-ahead recorded in `obj` is recent enough for its request to leave at `now`.
fn within_send_bound(obj: &SaeInstanceDeletion, now: Timestamp) -> bool {
    let Some(recorded) = obj
        .status
        .as_ref()
        .and_then(|s| s.last_attempt_time.as_ref())
    else {
        return false;
    };
    recorded
        .0
        .checked_add(SEND_BOUND)
        .is_ok_and(|latest| now < latest)
}

/// The events to publish when a status held back by [`Action::FirstPoll`] is written, or replaced
/// before it was written, by the next decision's `status`. When the poll moved the object on, the
/// held transition's event is dropped (the next one names the change order); anything else the
/// held decision had to say is kept, before the new decision's events.
pub fn events_after_held(
    held: Option<&SaeInstanceDeletionStatus>,
    held_events: Vec<Event>,
    events: Vec<Event>,
    status: &SaeInstanceDeletionStatus,
) -> Vec<Event> {
    let state = |s: &SaeInstanceDeletionStatus| (s.phase, s.reason().map(String::from));
    let held_state = held.map(state);
    let superseded = held_state.as_ref() != Some(&state(status));
    let held_reason = held_state.and_then(|(_, reason)| reason);
    held_events
        .into_iter()
        .filter(|e| !(superseded && Some(&e.reason) == held_reason.as_ref()))
        .chain(events)
        .collect()
}

#[cfg(test)]
mod tests;
