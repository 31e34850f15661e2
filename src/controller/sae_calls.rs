//! SAE requests as the controller makes them: behind the leader fence (for DeleteInstances) and a
//! quota token of the AccessKey's bucket, with the result recorded in the metrics and fed back to
//! the quota planner (a throttling answer pauses the bucket).
//!
//! Two ways to run a call: [`Context::take_token_and_call`] takes the token first;
//! [`Context::call_with_token_taken`] is for a call whose token the reconcile loop already took.
//! What to call and when is decided elsewhere; the wire format is [`crate::sae`]'s.

use super::slot::Slot;
use super::{Context, Error};
use crate::quota::Priority;
use crate::sae::{AppInstances, Credentials, SaeError};

impl Context {
    /// The lease is still ours for longer than the request takes to leave (when leading is on).
    pub(super) async fn may_send(&self) -> bool {
        match &self.fence {
            None => true,
            Some(fence) => fence.confirm().await,
        }
    }

    /// Takes a token of this AccessKey's quota, by priority, without holding a reconcile slot
    /// while it waits, and not past the object's deadline.
    pub(super) async fn take_token(
        &self,
        slot: &mut Slot,
        creds: &Credentials,
        priority: Priority,
    ) -> Result<(), Error> {
        slot.until_token(self.quota.acquire(creds.access_key_id(), priority))
            .await
    }

    /// Runs one SAE request: a token of its AccessKey's quota first (by priority; the slot is
    /// given back while waiting), then the call, through [`Self::call_with_token_taken`].
    pub(super) async fn take_token_and_call<T>(
        &self,
        slot: &mut Slot,
        creds: &Credentials,
        priority: Priority,
        call: impl Future<Output = Result<T, SaeError>>,
    ) -> Result<Result<T, SaeError>, Error> {
        self.take_token(slot, creds, priority).await?;
        Ok(self.call_with_token_taken(creds, call).await)
    }

    /// Runs one SAE request whose quota token was already taken, pausing the key's bucket when
    /// SAE says it is throttling. (Its metrics are recorded by the client's observer.)
    pub(super) async fn call_with_token_taken<T>(
        &self,
        creds: &Credentials,
        call: impl Future<Output = Result<T, SaeError>>,
    ) -> Result<T, SaeError> {
        let result = call.await;
        self.quota.note_result(creds.access_key_id(), &result);
        result
    }

    pub(super) async fn instances(
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
            self.take_token(&mut slot, creds, priority).await
        };
        // The client's observer records each request of the listing under its own operation.
        let listed = self
            .sae
            .list_all_instances(creds, region, app, gate)
            .await?;
        self.quota.note_result(creds.access_key_id(), &listed);
        Ok(listed)
    }

    pub(super) async fn instance_ids(
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
}
