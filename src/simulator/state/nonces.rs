//! The nonces seen within the skew window ([`NonceCache`]), so a signed request cannot be replayed.
//!
//! A leaf: it depends on no other simulator module and knows nothing of the model that owns it.

use std::collections::{HashSet, VecDeque};

use jiff::{SignedDuration, Timestamp};

/// At most this many nonces are remembered; past it the oldest are forgotten early.
pub const NONCE_CAPACITY: usize = 100_000;

/// Nonces seen within the skew window, per access key. Bounded: past [`NONCE_CAPACITY`] the
/// oldest are forgotten, which only weakens replay detection for very old requests.
#[derive(Default, Debug)]
pub(super) struct NonceCache {
    pub(super) seen: HashSet<String>,
    pub(super) order: VecDeque<(Timestamp, String)>,
}

impl NonceCache {
    pub(super) fn check_and_remember(
        &mut self,
        key: String,
        now: Timestamp,
        window: SignedDuration,
    ) -> bool {
        while let Some((t, k)) = self.order.front() {
            if now.duration_since(*t) > window || self.order.len() >= NONCE_CAPACITY {
                self.seen.remove(k);
                self.order.pop_front();
            } else {
                break;
            }
        }
        if !self.seen.insert(key.clone()) {
            return false;
        }
        self.order.push_back((now, key));
        true
    }
}
