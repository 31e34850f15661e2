//! Client-side planning of SAE's API quota: one token bucket per AccessKey ID, with priorities.
//!
//! SAE allows about 60 calls per minute per account, every operation counted together, and answers
//! `Throttling.User` beyond that. Calls refused for throttling still cost a round trip and, worse,
//! delay the deletions users wait for. So every SAE request first takes a token from its key's
//! bucket here (one token per HTTP request), and a throttling answer pauses that bucket instead of
//! letting callers spin.
//!
//! # The bucket
//! A bucket holds at most `burst` tokens (a second's allowance, at least one) and gains tokens
//! continuously at a rate that keeps any 60 s window at or under `requests_per_minute`, burst
//! included (`requests_per_minute - burst + 1` per minute). It is kept as a "theoretical arrival
//! time" (the generic cell rate algorithm): the instant at which the bucket would be empty again.
//! That is pure `Instant` arithmetic with integer nanoseconds, so waits are exact and a paused tokio
//! clock reproduces them to the tick. Every addition to an instant saturates instead of
//! overflowing, and a pause is never longer than [`MAX_PAUSE`].
//!
//! # A new bucket starts spent
//! SAE counts a key's calls over the last minute, whoever made them: the controller that ran
//! before a restart (or the leader before a failover) may have used the whole allowance seconds
//! ago. So a bucket is born empty, as it would be right after a call that left the bucket
//! saturated: its first token comes one interval after it is created, and the burst only builds up
//! from there. Any sequence of calls that obeyed the same rate before the restart, followed by what
//! the new bucket allows, obeys the rate as a whole (the new state is at least as strict as any
//! state the old bucket can have been in), so no 60 s window sees more than `requests_per_minute`
//! across a restart either. The price is small and paid once per key: its first call waits one
//! interval (1 s at 60 per minute), and its first minute serves `requests_per_minute - burst`
//! calls instead of `requests_per_minute`. A predecessor that ran with a higher limit, or another
//! client using the same key, is not covered; SAE's `Throttling.User` then pauses the key.
//!
//! # Who goes first
//! Waiters of one key take turns by class ([`Priority`]): after a token goes to one class, the
//! next goes to the next class in the rotation `Delete → Resolve → Poll → Delete …` that has a
//! waiter, and within a class the order is first come, first served (`turns.rs`). So while a
//! class waits, at most two tokens go to others before it is served (one per other class), and
//! no class can keep another out: not deletions (which users wait for), and not the looks for
//! lost answers, whose share of a key's tokens is at most a half while another class waits and a
//! third while both do. Strict priority was tried first and failed under pressure: looks for lost
//! answers that could not conclude took every token, and the polls that would have ended the
//! objects (and taught the zone the looks needed) never ran.
//!
//! # Keys are independent
//! Each key has its own bucket, line and timers. The one lock over the map of buckets is held
//! only for a few arithmetic steps and never across an await, so a key that is throttled without
//! end (its waiters sleeping through pause after pause) costs the other keys nothing.
//!
//! # Pauses
//! [`QuotaPlanner::pause`] holds every token of a key until the pause ends (SAE's retry hint, or a
//! default after a bare `Throttling*`). When it ends, one call may go at once and the rest follow
//! at the steady rate: the tokens that would have piled up meanwhile are dropped, because SAE just
//! said the account's window is full.
//!
//! # Bounded memory
//! Buckets are keyed by the SHA-256 of the AccessKey ID, so an absurdly long ID costs 32 bytes, and
//! metrics name a key by a short digest (see [`AccessKeyLabel`]). A bucket unused for
//! [`IDLE_EXPIRY`] is forgotten with its metric series (RRSA brings a new STS key every hour; the
//! planner looks for such buckets when it is called, at most once a minute), and past
//! [`MAX_BUCKETS`] the least recently used buckets go first. Only buckets that nobody waits on
//! and that are no stricter than a new bucket may go, so forgetting one never loosens the rate: it
//! comes back spent.
//!
//! Only `tokio::time` is read, never the system clock.
//!
//! Depends on [`crate::sae`] only for the outcome of a call (to notice throttling, and its longest
//! retry hint) and on [`crate::metrics`] to report; no Kubernetes types, and no SAE calls of its
//! own. Tests live in `quota/tests.rs`.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use sha2::{Digest, Sha256};
use tokio::sync::Notify;
use tokio::time::Instant;

use crate::metrics::{AccessKeyLabel, Metrics};
use crate::sae::SaeError;
use crate::sae::throttle_hint::MAX_RETRY_AFTER;

/// How long a key pauses after a `Throttling*` answer that named no retry time.
pub const DEFAULT_THROTTLE_PAUSE: Duration = Duration::from_secs(5);
/// The longest pause; longer asks are cut to it (the official SDKs never wait longer either).
pub const MAX_PAUSE: Duration = MAX_RETRY_AFTER;
/// A bucket unused this long (and nobody waiting on it) is forgotten.
pub const IDLE_EXPIRY: Duration = Duration::from_secs(15 * 60);
/// Buckets kept before the least recently used are forgotten to make room (only those that may go;
/// buckets with waiters stay, so the map can hold more while that many calls wait).
pub const MAX_BUCKETS: usize = 1024;
/// How often idle buckets are looked for (on the next call after this much time).
const SWEEP_INTERVAL: Duration = Duration::from_secs(60);

/// What an SAE call is for: the classes that take turns for tokens (see the module docs). Declared
/// in the order of the rotation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Priority {
    /// A DeleteInstances waiting to be sent to an idle app: the call users wait for.
    Delete,
    /// Reads that decide the fate of an attempt whose answer was lost, or of a rejected one
    /// (ListChangeOrders, the instance listing after a rejection).
    Resolve,
    /// Following a change order (the polls that end objects and teach the zone), and dry-run reads.
    Poll,
}

/// The quota planner of one controller. Cloning is cheap; clones share every bucket.
#[derive(Clone)]
pub struct QuotaPlanner {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for QuotaPlanner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QuotaPlanner")
            .field("requests_per_minute", &self.inner.requests_per_minute)
            .field("burst", &self.inner.burst)
            .finish_non_exhaustive()
    }
}

struct Inner {
    requests_per_minute: u32,
    /// Time one token takes to grow back; zero when unlimited.
    interval: Duration,
    burst: u32,
    /// How far ahead of now the theoretical arrival time may run while a call is still allowed:
    /// `burst - 1` intervals.
    tolerance: Duration,
    metrics: Option<Metrics>,
    state: Mutex<State>,
}

/// A bucket's key: the SHA-256 of the AccessKey ID.
type KeyDigest = [u8; 32];

fn digest(access_key_id: &str) -> KeyDigest {
    Sha256::digest(access_key_id.as_bytes()).into()
}

struct State {
    buckets: HashMap<KeyDigest, Bucket>,
    /// When idle buckets are looked for next.
    next_sweep: Option<Instant>,
}

/// A place in a bucket's line: priority first, then arrival.
type Ticket = (Priority, u64);

/// `at + by`, or the latest instant that can be represented when that overflows.
fn later(at: Instant, by: Duration) -> Instant {
    let mut by = by;
    loop {
        match at.checked_add(by) {
            Some(t) => return t,
            // Halving converges: `at + 0` always exists.
            None => by /= 2,
        }
    }
}

struct Bucket {
    /// How metrics name this key.
    label: AccessKeyLabel,
    /// When the bucket would be empty again if nothing more were taken (it is full whenever this
    /// is not in the future).
    empty_at: Instant,
    paused_until: Option<Instant>,
    /// Waiters in service order; the first one is the only one that watches the clock, the others
    /// sleep until they are woken as the new first.
    line: BTreeMap<Ticket, Arc<Notify>>,
    /// The class whose turn it is next (see [`turns`]).
    turn: Priority,
    next_arrival: u64,
    /// The last time a caller asked for a token or paused the key.
    last_used: Instant,
}

impl Bucket {
    /// A bucket as right after a call that left it saturated (see the module docs).
    fn new(inner: &Inner, label: AccessKeyLabel, now: Instant) -> Self {
        Self {
            label,
            empty_at: inner.spent_empty_at(now),
            paused_until: None,
            line: BTreeMap::new(),
            turn: Priority::Delete,
            next_arrival: 0,
            last_used: now,
        }
    }

    /// The earliest instant at which a token may be taken.
    fn ready_at(&self, inner: &Inner, now: Instant) -> Instant {
        // `empty_at - tolerance` could fall before the clock's origin; compare on the other side.
        let by_rate = match self
            .empty_at
            .checked_duration_since(later(now, inner.tolerance))
        {
            Some(ahead) => later(now, ahead),
            None => now,
        };
        self.paused_until.map_or(by_rate, |p| p.max(by_rate))
    }

    fn take(&mut self, inner: &Inner, now: Instant) {
        self.empty_at = later(self.empty_at.max(now), inner.interval);
        if self.paused_until.is_some_and(|p| p <= now) {
            self.paused_until = None;
        }
        self.last_used = now;
    }

    fn tokens(&self, inner: &Inner, now: Instant) -> f64 {
        if self.paused_until.is_some_and(|p| p > now) {
            return 0.0;
        }
        if inner.interval.is_zero() {
            return f64::INFINITY;
        }
        let owed = self.empty_at.saturating_duration_since(now);
        let owed_tokens = owed.as_secs_f64() / inner.interval.as_secs_f64();
        (f64::from(inner.burst) - owed_tokens).max(0.0)
    }

    /// Whether forgetting this bucket changes nothing a caller could notice except by waiting
    /// longer: nobody waits on it, and a new bucket would be at least as strict.
    fn may_forget(&self, inner: &Inner, now: Instant) -> bool {
        self.line.is_empty()
            && self.paused_until.is_none_or(|p| p <= now)
            && self.empty_at <= inner.spent_empty_at(now)
    }

    /// The waiter the next token goes to: the oldest of the class whose turn it is.
    fn first(&self) -> Option<Ticket> {
        turns::first(&self.line, self.turn)
    }

    /// Hands the next token to `ticket`'s waiter and moves the turn past its class.
    fn serve(&mut self, ticket: Ticket) {
        self.line.remove(&ticket);
        self.turn = turns::after(ticket.0);
    }

    fn wake_first(&self) {
        if let Some(first) = self.first().and_then(|t| self.line.get(&t)) {
            // notify_one keeps a permit when the waiter is not listening yet, so no wake-up is lost.
            first.notify_one();
        }
    }
}

impl Inner {
    /// `empty_at` of a bucket that is empty right now: its next token is one interval away.
    fn spent_empty_at(&self, now: Instant) -> Instant {
        later(later(now, self.tolerance), self.interval)
    }

    fn report_tokens(&self, bucket: &Bucket, now: Instant) {
        if let Some(metrics) = &self.metrics
            && !self.interval.is_zero()
        {
            metrics.set_quota_tokens(&bucket.label, bucket.tokens(self, now));
        }
    }

    /// The bucket of this key, created (spent) when there is none. Looks for idle buckets first
    /// when it is time, or when a new bucket would exceed [`MAX_BUCKETS`].
    fn bucket<'s>(
        &self,
        state: &'s mut State,
        key: KeyDigest,
        access_key_id: &str,
        now: Instant,
    ) -> &'s mut Bucket {
        let creating = !state.buckets.contains_key(&key);
        if state.next_sweep.is_none_or(|t| t <= now) {
            self.sweep(state, now);
        }
        if creating {
            self.make_room(state, now);
        }
        let bucket = state
            .buckets
            .entry(key)
            .or_insert_with(|| Bucket::new(self, AccessKeyLabel::of(access_key_id), now));
        bucket.last_used = now;
        bucket
    }

    /// Forgets the buckets unused for [`IDLE_EXPIRY`] that may go.
    fn sweep(&self, state: &mut State, now: Instant) {
        state.next_sweep = Some(later(now, SWEEP_INTERVAL));
        state.buckets.retain(|_, bucket| {
            let keep = now.saturating_duration_since(bucket.last_used) < IDLE_EXPIRY
                || !bucket.may_forget(self, now);
            if !keep {
                self.forget_series(bucket);
            }
            keep
        });
    }

    /// Below [`MAX_BUCKETS`] again by forgetting the least recently used buckets that may go.
    fn make_room(&self, state: &mut State, now: Instant) {
        while state.buckets.len() >= MAX_BUCKETS {
            let oldest = state
                .buckets
                .iter()
                .filter(|(_, b)| b.may_forget(self, now))
                .min_by_key(|(_, b)| b.last_used)
                .map(|(key, _)| *key);
            let Some(key) = oldest else {
                // Everyone is waiting or paused: those buckets must stay.
                return;
            };
            if let Some(bucket) = state.buckets.remove(&key) {
                self.forget_series(&bucket);
            }
        }
    }

    fn forget_series(&self, bucket: &Bucket) {
        if let Some(metrics) = &self.metrics {
            metrics.forget_quota_tokens(&bucket.label);
        }
    }
}

impl QuotaPlanner {
    /// A planner allowing `requests_per_minute` calls per AccessKey ID (0: no client-side limit;
    /// pauses from SAE are still honoured). Token counts and waits go to `metrics` when given.
    pub fn new(requests_per_minute: u32, metrics: Option<Metrics>) -> Self {
        let (interval, burst) = match requests_per_minute {
            0 => (Duration::ZERO, 1),
            rpm => {
                // SAE counts calls per minute, perhaps over a sliding window. A full bucket allows
                // `burst` + (calls refilled in 60 s) - 1 in a minute, so the refill rate leaves room
                // for the burst: no 60 s window ever sees more than `rpm`.
                let burst = (rpm / 60).max(1);
                let refilled_per_minute = u64::from(rpm - burst + 1);
                (
                    Duration::from_nanos(60_000_000_000 / refilled_per_minute),
                    burst,
                )
            }
        };
        Self {
            inner: Arc::new(Inner {
                requests_per_minute,
                interval,
                burst,
                tolerance: interval * (burst - 1),
                metrics,
                state: Mutex::new(State {
                    buckets: HashMap::new(),
                    next_sweep: None,
                }),
            }),
        }
    }

    /// How many calls may go at once after a quiet spell.
    pub fn burst(&self) -> u32 {
        self.inner.burst
    }

    /// The time one token takes to grow back (zero when unlimited).
    pub fn interval(&self) -> Duration {
        self.inner.interval
    }

    /// Waits for a token of this AccessKey ID's bucket. Waiters go by priority, then arrival.
    /// Dropping the future gives up the place in line and hands nothing out.
    pub async fn acquire(&self, access_key_id: &str, priority: Priority) {
        let started = Instant::now();
        let key = digest(access_key_id);
        let notify = Arc::new(Notify::new());
        let ticket = {
            let mut state = self.lock();
            let now = Instant::now();
            let inner = &*self.inner;
            let bucket = inner.bucket(&mut state, key, access_key_id, now);
            if bucket.line.is_empty() && bucket.ready_at(inner, now) <= now {
                bucket.take(inner, now);
                inner.report_tokens(bucket, now);
                return;
            }
            let ticket = (priority, bucket.next_arrival);
            bucket.next_arrival += 1;
            bucket.line.insert(ticket, notify.clone());
            ticket
        };
        let place = Place {
            planner: self,
            key,
            ticket,
            served: false,
        };
        place.wait(&notify).await;
        if let Some(metrics) = &self.inner.metrics {
            metrics.observe_quota_wait(started.elapsed());
        }
    }

    /// Holds every token of this AccessKey ID for `for_` (SAE answered `Throttling*` or sent a
    /// retry hint), at most [`MAX_PAUSE`]. Overlapping pauses end at the latest end. When the pause
    /// is over, one call goes at once and the rest at the steady rate.
    pub fn pause(&self, access_key_id: &str, for_: Duration) {
        let key = digest(access_key_id);
        let mut state = self.lock();
        let now = Instant::now();
        let inner = &*self.inner;
        let bucket = inner.bucket(&mut state, key, access_key_id, now);
        let until = later(now, for_.min(MAX_PAUSE));
        bucket.paused_until = Some(bucket.paused_until.map_or(until, |p| p.max(until)));
        // Empty the bucket as of the pause's end, save the one token that may go then.
        bucket.empty_at = bucket.empty_at.max(later(until, inner.tolerance));
        // The first waiter may be sleeping towards an earlier instant; it re-reads the bucket then
        // and sleeps on, so no wake-up is needed here.
        inner.report_tokens(bucket, now);
    }

    /// Pauses the key when `result` is a throttling answer: for SAE's retry hint when it sent
    /// one, else [`DEFAULT_THROTTLE_PAUSE`]. Returns whether it paused.
    pub fn note_result<T>(&self, access_key_id: &str, result: &Result<T, SaeError>) -> bool {
        match result {
            Err(err) if err.is_throttling() => {
                let pause = err.retry_after().unwrap_or(DEFAULT_THROTTLE_PAUSE);
                self.pause(access_key_id, pause);
                true
            }
            _ => false,
        }
    }

    /// Tokens this key could spend right now (0 while paused, and for a key without a bucket,
    /// because a new bucket starts spent). Unlimited planners report infinity.
    pub fn tokens(&self, access_key_id: &str) -> f64 {
        let state = self.lock();
        match state.buckets.get(&digest(access_key_id)) {
            Some(bucket) => bucket.tokens(&self.inner, Instant::now()),
            None if self.inner.interval.is_zero() => f64::INFINITY,
            None => 0.0,
        }
    }

    /// How many calls wait for a token of this key.
    pub fn waiting(&self, access_key_id: &str) -> usize {
        self.lock()
            .buckets
            .get(&digest(access_key_id))
            .map_or(0, |b| b.line.len())
    }

    /// How many keys have a bucket right now.
    pub fn keys(&self) -> usize {
        self.lock().buckets.len()
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // The map holds no invariant a panicking holder could have broken halfway.
        self.inner.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// A waiter's place in its bucket's line; leaving it (served or cancelled) wakes the next first.
struct Place<'a> {
    planner: &'a QuotaPlanner,
    key: KeyDigest,
    ticket: Ticket,
    served: bool,
}

impl Place<'_> {
    async fn wait(mut self, notify: &Notify) {
        loop {
            let wake_at = {
                let mut state = self.planner.lock();
                let now = Instant::now();
                let inner = &*self.planner.inner;
                let bucket = state
                    .buckets
                    .get_mut(&self.key)
                    .expect("a bucket with waiters is never removed");
                if bucket.first() != Some(self.ticket) {
                    None
                } else {
                    let ready = bucket.ready_at(inner, now);
                    if ready <= now {
                        bucket.take(inner, now);
                        bucket.serve(self.ticket);
                        self.served = true;
                        bucket.wake_first();
                        inner.report_tokens(bucket, now);
                        return;
                    }
                    Some(ready)
                }
            };
            match wake_at {
                None => notify.notified().await,
                Some(at) => {
                    tokio::select! {
                        _ = tokio::time::sleep_until(at) => {}
                        // A pause or a new first waiter may change the plan; look again.
                        _ = notify.notified() => {}
                    }
                }
            }
        }
    }
}

impl Drop for Place<'_> {
    fn drop(&mut self) {
        if self.served {
            return;
        }
        let mut state = self.planner.lock();
        if let Some(bucket) = state.buckets.get_mut(&self.key) {
            let was_first = bucket.first() == Some(self.ticket);
            bucket.line.remove(&self.ticket);
            if was_first {
                bucket.wake_first();
            }
        }
    }
}

mod turns;

#[cfg(test)]
mod tests;
