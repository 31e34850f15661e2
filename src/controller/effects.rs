//! One reconcile of one object: [`reconcile`] takes a [`Slot`] and runs [`steps::reconcile`] with
//! the `Reconciler`, the production [`Effects`]: the cache, the quota, the status writes, the
//! events and the SAE calls of [`super::Context`]. Each method performs one step the loop asks for
//! and reports back; none of them decides anything.
//!
//! May use every sibling module; none of them uses this one except `mod.rs` (for `run`).

use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;
use kube::runtime::controller::Action as Requeue;
use kube::runtime::reflector::ObjectRef;
use tracing::{Instrument, info, info_span, warn};

use super::slot::Slot;
use super::status_write::{publish, write_status_and_track};
use super::{Context, Error, is_terminal, until};
use crate::crd::{SaeInstanceDeletion, SaeInstanceDeletionStatus};
use crate::decide::{AppTurn, Event, Evidence, Inputs, PolicyCheck, app_turn, object_key};
use crate::quota::Priority;
use crate::sae::{ChangeOrderDetail, Credentials, DeleteAccepted, SaeError};
use crate::steps::{self, Effects, Outcome, PolicyStage, Token};

/// Fallback requeue when the API server refused a status write for being stale: the watch event for
/// the newer version normally arrives first.
const CONFLICT_REQUEUE: Duration = Duration::from_secs(2);

/// How soon an object whose send could not confirm the leader lease is looked at again.
const LEASE_RECHECK: Duration = Duration::from_secs(2);

pub(super) async fn reconcile(
    obj: Arc<SaeInstanceDeletion>,
    ctx: Arc<Context>,
) -> Result<Requeue, Error> {
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

    fn now(&mut self) -> Timestamp {
        Timestamp::now()
    }

    fn inputs(&mut self, obj: &SaeInstanceDeletion) -> Inputs {
        Inputs {
            now: Timestamp::now(),
            jitter: fastrand::f64(),
            resolve_after: self.ctx.settings.resolve_after,
            settle: self.ctx.settings.settle,
            sae: self.ctx.sae_clock(obj),
        }
    }

    fn app_turn(&self, obj: &SaeInstanceDeletion) -> AppTurn {
        app_turn(&self.ctx.store.state(), obj)
    }

    async fn policy(
        &mut self,
        obj: &SaeInstanceDeletion,
        stage: PolicyStage,
    ) -> Result<PolicyCheck, Error> {
        // Only the full check may call SAE, and only after a send's token, when credentials were
        // read; a quick one needs none.
        let creds = match stage {
            PolicyStage::Quick => None,
            PolicyStage::Full => Some(self.creds()?),
        };
        self.ctx
            .policy_check(&mut self.slot, creds.as_ref(), obj, stage)
            .await
    }

    async fn read_credentials(&mut self, obj: &SaeInstanceDeletion) -> Result<(), String> {
        let read = self.ctx.credentials_for(obj).await;
        let usable = read.as_ref().map(|_| ()).map_err(Clone::clone);
        self.credentials = Some(read);
        usable
    }

    async fn token(&mut self, _: &SaeInstanceDeletion, priority: Priority) -> Result<(), Error> {
        let creds = self.creds()?;
        self.ctx.take_token(&mut self.slot, &creds, priority).await
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
        write_status_and_track(self.ctx, obj, status).await
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
            .call_with_token_taken(
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
    ) -> Result<Result<ChangeOrderDetail, SaeError>, Error> {
        let creds = self.creds()?;
        let (region, _) = Self::region_app(obj);
        if token == Token::Take {
            self.ctx
                .take_token(&mut self.slot, &creds, Priority::Poll)
                .await?;
        }
        Ok(self
            .ctx
            .call_with_token_taken(
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
