//! A reconcile's place among those doing work at once ([`super::Context`]'s semaphore), given back
//! while the reconcile waits (for quota, a shared look or a timer) so that one paused AccessKey
//! cannot hold up the objects of another, and the object's deadline, which no wait for quota may
//! pass.
//!
//! Only tokio primitives: no API or SAE calls.

use std::sync::Arc;
use std::time::Duration;

use jiff::{SignedDuration, Timestamp};

use super::Error;
use crate::crd::SaeInstanceDeletion;

/// A reconcile's place among those doing work at once ([`Context::slots`]), and the object's
/// deadline, which no wait for quota may pass.
pub(super) struct Slot {
    slots: Arc<tokio::sync::Semaphore>,
    permit: Option<tokio::sync::OwnedSemaphorePermit>,
    deadline: Option<tokio::time::Instant>,
}

impl Slot {
    pub(super) async fn take(
        slots: Arc<tokio::sync::Semaphore>,
        obj: &SaeInstanceDeletion,
    ) -> Self {
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
    pub(super) async fn released<F: Future>(&mut self, wait: F) -> F::Output {
        self.permit = None;
        let out = wait.await;
        self.permit = self.slots.clone().acquire_owned().await.ok();
        out
    }

    /// Waits for a quota token like [`Self::released`], but not past the object's deadline:
    /// then the reconcile ends (`Error::QuotaPastDeadline`) and the next one ends the object.
    pub(super) async fn until_token<F: Future>(&mut self, wait: F) -> Result<F::Output, Error> {
        let Some(deadline) = self.deadline else {
            return Ok(self.released(wait).await);
        };
        self.released(tokio::time::timeout_at(deadline, wait))
            .await
            .map_err(|_| Error::QuotaPastDeadline)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::quota::{Priority, QuotaPlanner};

    /// An object whose deadline is `seconds` from now.
    fn deadline_in(seconds: i64) -> SaeInstanceDeletion {
        let created = Timestamp::now() - SignedDuration::from_secs(3600 - seconds);
        crate::fixtures::object("x", "ns", created)
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
}
