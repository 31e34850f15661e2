//! One attempt per SAE application at a time, within this process: an object claims its app
//! before its write-ahead and lets it go when it stops holding the app, and the next object in
//! line ([`crate::decide::queue_order`]) is woken at once rather than at its next periodic check.
//!
//! The rule of whose turn it is lives in `decide`; this file only covers the moment before the
//! cache shows a write-ahead. No API or SAE calls.

use std::time::{Duration, Instant};

use kube::ResourceExt;
use kube::runtime::reflector::ObjectRef;

use super::{Context, is_terminal};
use crate::crd::SaeInstanceDeletion;
use crate::decide::{holds_app, queue_order, shares_app, waits_in_line};

/// How long a claim outlives the cache not (yet) showing its holder on the app.
const CLAIM_GRACE: Duration = Duration::from_secs(10);

fn app_key(obj: &SaeInstanceDeletion) -> (String, String) {
    let pinned = obj.pinned();
    (pinned.region_id.to_string(), pinned.app_id.to_string())
}

impl Context {
    /// Takes `obj`'s app for an attempt; false while another object holds it.
    pub(super) fn claim_app(&self, obj: &SaeInstanceDeletion) -> bool {
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

    pub(super) fn release_app(&self, obj: &SaeInstanceDeletion) {
        let me = obj.uid().unwrap_or_default();
        let mut claims = self.claims.lock().unwrap_or_else(|e| e.into_inner());
        if claims
            .get(&app_key(obj))
            .is_some_and(|(holder, _)| *holder == me)
        {
            claims.remove(&app_key(obj));
        }
    }

    /// When `released` has just let go of its app, reconcile the object next in line at once
    /// instead of letting it find out at its next periodic check. The wake waits (briefly) until
    /// the cache shows the release, or the next object would still see the app as busy.
    pub(super) fn wake_next_in_line(&self, released: &SaeInstanceDeletion) {
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
}
