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
//! Waiters of one key are served strictly by ([`Priority`], arrival): a waiting `Delete` is handed
//! the next token before any `Resolve`, and a `Resolve` before any `Poll`; within a class the
//! order is first come, first served, so no waiter starves behind its peers. A lower class does
//! starve while higher classes keep the bucket saturated, and that is intended: deletions are what
//! users wait for, and a poll that comes late only learns a change order's end a bit later.
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

/// What an SAE call is for, which decides who gets the next token. Declared from most to least
/// urgent; the derived order is the service order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Priority {
    /// A DeleteInstances waiting to be sent to an idle app: the call users wait for.
    Delete,
    /// Reads that decide the fate of an attempt whose answer was lost, or of a rejected one
    /// (ListChangeOrders, the instance listing after a rejection).
    Resolve,
    /// Following a change order, and dry-run reads: deferred when tokens are short.
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

    fn wake_first(&self) {
        if let Some(first) = self.line.values().next() {
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
                if bucket.line.keys().next() != Some(&self.ticket) {
                    None
                } else {
                    let ready = bucket.ready_at(inner, now);
                    if ready <= now {
                        bucket.take(inner, now);
                        bucket.line.remove(&self.ticket);
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
            let was_first = bucket.line.keys().next() == Some(&self.ticket);
            bucket.line.remove(&self.ticket);
            if was_first {
                bucket.wake_first();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex as StdMutex;

    const KEY: &str = "LTAI5tQuotaKey";

    /// Lets spawned tasks run until they block, without moving the paused clock.
    async fn settle() {
        for _ in 0..20 {
            tokio::task::yield_now().await;
        }
    }

    fn since(start: Instant) -> Duration {
        Instant::now() - start
    }

    /// Spawns a waiter that records (label, virtual time served) in `log` once it has its token.
    fn spawn_waiter(
        planner: &QuotaPlanner,
        key: &'static str,
        priority: Priority,
        label: String,
        start: Instant,
        log: &Arc<StdMutex<Vec<(String, Duration)>>>,
    ) -> tokio::task::JoinHandle<()> {
        let planner = planner.clone();
        let log = log.clone();
        tokio::spawn(async move {
            planner.acquire(key, priority).await;
            log.lock().unwrap().push((label, since(start)));
        })
    }

    /// Lets the key's bucket fill up, then takes its whole burst (free), leaving it empty.
    async fn drain_burst(planner: &QuotaPlanner, key: &str) {
        // The first call creates the bucket, which starts spent.
        planner.acquire(key, Priority::Poll).await;
        tokio::time::sleep(planner.interval() * planner.burst()).await;
        let start = Instant::now();
        for _ in 0..planner.burst() {
            planner.acquire(key, Priority::Poll).await;
        }
        assert_eq!(since(start), Duration::ZERO, "a full burst is free");
    }

    /// Every call in any half-open 60 s window starting at a call: at most `limit`. Returns the
    /// largest count seen.
    fn busiest_minute(calls: &[Instant], limit: u32) -> usize {
        let mut calls = calls.to_vec();
        calls.sort();
        let mut busiest = 0;
        let mut end = 0;
        for (i, start) in calls.iter().enumerate() {
            while end < calls.len() && calls[end] < *start + Duration::from_secs(60) {
                end += 1;
            }
            busiest = busiest.max(end - i);
        }
        assert!(
            busiest <= limit as usize,
            "{busiest} calls within one minute, limit {limit}"
        );
        busiest
    }

    /// Takes tokens as fast as they come until `until`, recording when each was served.
    async fn greedy(planner: &QuotaPlanner, key: &str, until: Instant) -> Vec<Instant> {
        let mut served = Vec::new();
        while Instant::now() < until {
            planner.acquire(key, Priority::Delete).await;
            served.push(Instant::now());
        }
        served
    }

    #[test]
    fn waiting_for_a_token_can_move_between_threads() {
        // The controller's reconcilers run on a multi-threaded runtime.
        fn assert_send<T: Send>(_: &T) {}
        let planner = QuotaPlanner::new(60, None);
        assert_send(&planner.acquire(KEY, Priority::Poll));
    }

    #[tokio::test(start_paused = true)]
    async fn a_virtual_minute_serves_the_limit_within_one_burst() {
        for rpm in [60, 120, 600, 7] {
            let planner = QuotaPlanner::new(rpm, None);
            let burst = planner.burst();
            assert_eq!(burst, (rpm / 60).max(1));
            let interval = Duration::from_nanos(60_000_000_000 / u64::from(rpm - burst + 1));
            assert_eq!(planner.interval(), interval);
            // A new key starts spent; once full, a minute serves at most the limit.
            planner.acquire(KEY, Priority::Poll).await;
            tokio::time::sleep(interval * burst).await;
            let start = Instant::now();
            let mut served_at = Vec::new();
            while since(start) < Duration::from_secs(60) {
                planner.acquire(KEY, Priority::Poll).await;
                served_at.push(since(start));
            }
            // The call that ended the loop was served at or after the minute mark.
            let in_minute = served_at
                .iter()
                .filter(|t| **t < Duration::from_secs(60))
                .count() as u32;
            // Never more than the limit in the first minute (the burst included), and not
            // much less either.
            assert!(
                (rpm.saturating_sub(burst + 1)..=rpm).contains(&in_minute),
                "rpm {rpm}: {in_minute} calls in a minute"
            );
            // After the burst the spacing is the steady interval, within the timer's 1 ms tick.
            for pair in served_at[burst as usize..].windows(2) {
                let gap = pair[1] - pair[0];
                assert!(
                    gap + Duration::from_millis(1) >= interval
                        && gap <= interval + Duration::from_millis(1),
                    "rpm {rpm}: gap {gap:?}"
                );
            }
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_new_key_starts_spent_its_first_token_one_interval_away() {
        for rpm in [60, 600, 12_000] {
            let planner = QuotaPlanner::new(rpm, None);
            assert_eq!(
                planner.tokens(KEY),
                0.0,
                "no bucket yet: it would start spent"
            );
            let start = Instant::now();
            let served = greedy(&planner, KEY, start + Duration::from_secs(60)).await;
            let first = served[0] - start;
            assert!(
                first >= planner.interval()
                    && first <= planner.interval() + Duration::from_millis(1),
                "rpm {rpm}: first token after {first:?}"
            );
            // The cost of starting spent: the burst, once. The first minute serves rpm - burst.
            let in_minute = served
                .iter()
                .filter(|t| **t - start < Duration::from_secs(60))
                .count() as u32;
            let want = rpm - planner.burst();
            assert!(
                in_minute <= want && in_minute + 1 + rpm / 1000 >= want,
                "rpm {rpm}: {in_minute} in the first minute, about {want} expected"
            );
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_restart_adds_no_burst_to_what_the_predecessor_sent() {
        for rpm in [60, 600] {
            // The predecessor had a full bucket and spent all of it right before it stopped, the
            // worst case for the minute that follows.
            let before = QuotaPlanner::new(rpm, None);
            let mut calls = Vec::new();
            before.acquire(KEY, Priority::Delete).await;
            calls.push(Instant::now());
            tokio::time::sleep(Duration::from_secs(300)).await;
            for _ in 0..before.burst() {
                before.acquire(KEY, Priority::Delete).await;
                calls.push(Instant::now());
            }
            // A moment later its successor starts and takes everything it is given.
            tokio::time::sleep(Duration::from_millis(3)).await;
            let after = QuotaPlanner::new(rpm, None);
            let restart = Instant::now();
            calls.extend(greedy(&after, KEY, restart + Duration::from_secs(120)).await);
            let busiest = busiest_minute(&calls, rpm);
            // Tight, not merely under: the limit is used, just never exceeded.
            assert!(busiest + 2 >= rpm as usize, "rpm {rpm}: busiest {busiest}");

            // A predecessor that ran saturated for minutes, stopped mid-interval.
            let before = QuotaPlanner::new(rpm, None);
            let start = Instant::now();
            let mut calls = greedy(&before, KEY, start + Duration::from_secs(150)).await;
            tokio::time::sleep(before.interval() / 3).await;
            let after = QuotaPlanner::new(rpm, None);
            let restart = Instant::now();
            calls.extend(greedy(&after, KEY, restart + Duration::from_secs(120)).await);
            busiest_minute(&calls, rpm);
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_delete_arriving_after_five_queued_polls_is_served_first() {
        let planner = QuotaPlanner::new(60, None);
        drain_burst(&planner, KEY).await;
        let start = Instant::now();
        let log = Arc::new(StdMutex::new(Vec::new()));
        let mut tasks = Vec::new();
        for i in 0..5 {
            tasks.push(spawn_waiter(
                &planner,
                KEY,
                Priority::Poll,
                format!("poll-{i}"),
                start,
                &log,
            ));
            settle().await;
        }
        assert_eq!(planner.waiting(KEY), 5);
        tasks.push(spawn_waiter(
            &planner,
            KEY,
            Priority::Delete,
            "delete".into(),
            start,
            &log,
        ));
        settle().await;
        for task in tasks {
            task.await.unwrap();
        }
        let log = log.lock().unwrap().clone();
        let order: Vec<&str> = log.iter().map(|(l, _)| l.as_str()).collect();
        assert_eq!(
            order,
            ["delete", "poll-0", "poll-1", "poll-2", "poll-3", "poll-4"]
        );
        let times: Vec<u64> = log.iter().map(|(_, t)| t.as_secs()).collect();
        assert_eq!(times, [1, 2, 3, 4, 5, 6], "one token per second: {log:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn priorities_order_the_line_and_each_class_is_first_come_first_served() {
        let planner = QuotaPlanner::new(60, None);
        drain_burst(&planner, KEY).await;
        let start = Instant::now();
        let log = Arc::new(StdMutex::new(Vec::new()));
        let arrivals = [
            (Priority::Poll, "poll-a"),
            (Priority::Delete, "delete-a"),
            (Priority::Resolve, "resolve-a"),
            (Priority::Delete, "delete-b"),
            (Priority::Poll, "poll-b"),
            (Priority::Resolve, "resolve-b"),
            (Priority::Delete, "delete-c"),
        ];
        let mut tasks = Vec::new();
        for (priority, label) in arrivals {
            tasks.push(spawn_waiter(
                &planner,
                KEY,
                priority,
                label.into(),
                start,
                &log,
            ));
            settle().await;
        }
        for task in tasks {
            task.await.unwrap();
        }
        let order: Vec<String> = log.lock().unwrap().iter().map(|(l, _)| l.clone()).collect();
        assert_eq!(
            order,
            [
                "delete-a",
                "delete-b",
                "delete-c",
                "resolve-a",
                "resolve-b",
                "poll-a",
                "poll-b"
            ]
        );
    }

    #[tokio::test(start_paused = true)]
    async fn many_waiters_of_one_class_are_served_in_arrival_order() {
        let planner = QuotaPlanner::new(600, None);
        drain_burst(&planner, KEY).await;
        let start = Instant::now();
        let log = Arc::new(StdMutex::new(Vec::new()));
        let mut tasks = Vec::new();
        for i in 0..50 {
            tasks.push(spawn_waiter(
                &planner,
                KEY,
                Priority::Delete,
                format!("{i:02}"),
                start,
                &log,
            ));
            settle().await;
        }
        for task in tasks {
            task.await.unwrap();
        }
        let log = log.lock().unwrap().clone();
        let order: Vec<String> = log.iter().map(|(l, _)| l.clone()).collect();
        let expected: Vec<String> = (0..50).map(|i| format!("{i:02}")).collect();
        assert_eq!(order, expected);
        // 600 per minute with a burst of 10: after the burst, one every 60 s / 591 (~101.5 ms).
        let last = log[49].1;
        assert!(
            last >= Duration::from_millis(4000) && last <= Duration::from_millis(5100),
            "{last:?}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_pause_holds_every_token_until_it_ends_then_service_resumes_at_the_rate() {
        let planner = QuotaPlanner::new(60, None);
        // The bucket is full, yet nothing goes while paused.
        planner.acquire(KEY, Priority::Delete).await;
        let start = Instant::now();
        planner.pause(KEY, Duration::from_secs(30));
        assert_eq!(planner.tokens(KEY), 0.0);
        let log = Arc::new(StdMutex::new(Vec::new()));
        let queued: Vec<_> = (0..3)
            .map(|i| {
                spawn_waiter(
                    &planner,
                    KEY,
                    Priority::Delete,
                    format!("d{i}"),
                    start,
                    &log,
                )
            })
            .collect();
        settle().await;
        tokio::time::sleep(Duration::from_millis(29_999)).await;
        assert!(log.lock().unwrap().is_empty(), "served during the pause");
        assert_eq!(planner.waiting(KEY), 3);
        for task in queued {
            task.await.unwrap();
        }
        let times: Vec<Duration> = log.lock().unwrap().iter().map(|(_, t)| *t).collect();
        assert_eq!(
            times,
            [30, 31, 32].map(Duration::from_secs),
            "one at the pause's end, then the steady rate, no burst"
        );

        // A shorter pause inside a longer one does not cut it short.
        let start = Instant::now();
        planner.pause(KEY, Duration::from_secs(10));
        planner.pause(KEY, Duration::from_secs(2));
        planner.acquire(KEY, Priority::Delete).await;
        assert_eq!(since(start), Duration::from_secs(10));
    }

    #[tokio::test(start_paused = true)]
    async fn a_pause_arriving_while_a_waiter_sleeps_delays_it() {
        let planner = QuotaPlanner::new(60, None);
        drain_burst(&planner, KEY).await;
        let start = Instant::now();
        let log = Arc::new(StdMutex::new(Vec::new()));
        let waiter = spawn_waiter(&planner, KEY, Priority::Poll, "p".into(), start, &log);
        settle().await;
        tokio::time::sleep(Duration::from_millis(500)).await;
        planner.pause(KEY, Duration::from_secs(20));
        waiter.await.unwrap();
        assert_eq!(log.lock().unwrap()[0].1, Duration::from_millis(20_500));
    }

    #[tokio::test(start_paused = true)]
    async fn separate_keys_have_separate_buckets() {
        let planner = QuotaPlanner::new(60, None);
        drain_burst(&planner, "key-a").await;
        planner.pause("key-a", Duration::from_secs(60));
        let paused = Instant::now();
        // key-b has its own bucket: it starts spent and fills at its own rate, paused or not.
        drain_burst(&planner, "key-b").await;
        assert_eq!(since(paused), Duration::from_secs(2));
        let start = Instant::now();
        planner.acquire("key-b", Priority::Poll).await;
        assert_eq!(since(start), Duration::from_secs(1));
        assert_eq!(
            planner.tokens("key-c"),
            0.0,
            "a key never used would start spent"
        );
        planner.acquire("key-a", Priority::Delete).await;
        assert_eq!(
            since(paused),
            Duration::from_secs(60),
            "key-a's pause still holds"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn unlimited_never_waits_but_honours_a_pause() {
        let planner = QuotaPlanner::new(0, None);
        let start = Instant::now();
        for i in 0..10_000 {
            let priority = [Priority::Poll, Priority::Delete, Priority::Resolve][i % 3];
            planner.acquire(KEY, priority).await;
        }
        assert_eq!(since(start), Duration::ZERO);
        assert_eq!(planner.tokens(KEY), f64::INFINITY);
        assert_eq!(planner.waiting(KEY), 0);

        planner.pause(KEY, Duration::from_secs(3));
        assert_eq!(planner.tokens(KEY), 0.0);
        planner.acquire(KEY, Priority::Delete).await;
        planner.acquire(KEY, Priority::Delete).await;
        assert_eq!(since(start), Duration::from_secs(3));
    }

    #[tokio::test(start_paused = true)]
    async fn a_waiter_that_gives_up_passes_its_turn_on() {
        let planner = QuotaPlanner::new(60, None);
        drain_burst(&planner, KEY).await;
        let start = Instant::now();
        let log = Arc::new(StdMutex::new(Vec::new()));
        let impatient = {
            let planner = planner.clone();
            tokio::spawn(async move {
                tokio::time::timeout(
                    Duration::from_millis(300),
                    planner.acquire(KEY, Priority::Delete),
                )
                .await
                .is_ok()
            })
        };
        settle().await;
        let patient = spawn_waiter(&planner, KEY, Priority::Poll, "p".into(), start, &log);
        settle().await;
        assert!(!impatient.await.unwrap(), "the timeout fired first");
        patient.await.unwrap();
        // The abandoned place took no token: the poll gets the one due at 1 s.
        assert_eq!(log.lock().unwrap()[0].1, Duration::from_secs(1));
        assert_eq!(planner.waiting(KEY), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn polls_starve_only_while_deletes_saturate_the_bucket() {
        let planner = QuotaPlanner::new(60, None);
        drain_burst(&planner, KEY).await;
        let start = Instant::now();
        let log = Arc::new(StdMutex::new(Vec::new()));
        let poll = spawn_waiter(&planner, KEY, Priority::Poll, "poll".into(), start, &log);
        settle().await;
        // A new delete arrives every second, half a second before each token: the poll, though
        // first in line, gets nothing until the deletes stop.
        tokio::time::sleep(Duration::from_millis(500)).await;
        let mut deletes = Vec::new();
        for i in 0..5 {
            deletes.push(spawn_waiter(
                &planner,
                KEY,
                Priority::Delete,
                format!("d{i}"),
                start,
                &log,
            ));
            settle().await;
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        for d in deletes {
            d.await.unwrap();
        }
        poll.await.unwrap();
        let log = log.lock().unwrap().clone();
        let expected: Vec<(String, Duration)> = (0..5)
            .map(|i| (format!("d{i}"), Duration::from_secs(i + 1)))
            .chain([("poll".to_string(), Duration::from_secs(6))])
            .collect();
        assert_eq!(log, expected);
    }

    #[tokio::test(start_paused = true)]
    async fn throttling_answers_pause_the_key_for_sae_s_retry_after() {
        let planner = QuotaPlanner::new(60, None);
        let throttled = |retry_after| {
            Err::<(), _>(SaeError::Api {
                operation: "DescribeChangeOrder",
                http_status: 400,
                code: "Throttling.User".into(),
                message: "Request was denied due to user flow control.".into(),
                request_id: None,
                retry_after,
            })
        };
        let start = Instant::now();
        assert!(planner.note_result(KEY, &throttled(Some(Duration::from_secs(7)))));
        planner.acquire(KEY, Priority::Poll).await;
        assert_eq!(since(start), Duration::from_secs(7));

        let start = Instant::now();
        assert!(planner.note_result(KEY, &throttled(None)));
        planner.acquire(KEY, Priority::Poll).await;
        assert_eq!(since(start), DEFAULT_THROTTLE_PAUSE);

        let busy = Err::<(), _>(SaeError::Api {
            operation: "DeleteInstances",
            http_status: 400,
            code: "Application.ChangerOrderRunning".into(),
            message: "busy".into(),
            request_id: None,
            retry_after: None,
        });
        assert!(!planner.note_result(KEY, &busy));
        assert!(!planner.note_result(KEY, &Ok(())));
    }

    #[tokio::test(start_paused = true)]
    async fn tokens_and_waits_are_reported_to_the_metrics() {
        let metrics = Metrics::new();
        // 600 per minute: a burst of 10, then one every 60 s / 591.
        let planner = QuotaPlanner::new(600, Some(metrics.clone()));
        let interval: f64 = 60.0 / 591.0;
        planner.acquire(KEY, Priority::Delete).await; // a new key: waits one interval
        tokio::time::sleep(planner.interval() * 10).await; // full again
        for _ in 0..10 {
            planner.acquire(KEY, Priority::Delete).await;
        }
        planner.acquire(KEY, Priority::Delete).await; // waits one interval
        tokio::time::sleep(Duration::from_secs(1)).await;
        planner.acquire(KEY, Priority::Delete).await; // free again: tokens grew back
        let text = metrics.encode();
        let sample = |series: &str| -> Option<f64> {
            text.lines().find_map(|l| {
                let (s, v) = l.rsplit_once(' ')?;
                (s == series).then(|| v.parse().unwrap())
            })
        };
        // After one interval's wait and a second of refill (capped at 10), one token is spent.
        let label = AccessKeyLabel::of(KEY);
        let tokens = sample(&format!("sae_quota_tokens{{access_key_id=\"{label}\"}}")).unwrap();
        let expected = (1.0 / interval).min(10.0) - 1.0;
        assert!((tokens - expected).abs() < 0.01, "{tokens} vs {expected}");
        assert!(!text.contains(KEY), "the raw key id is no label:\n{text}");
        assert_eq!(
            sample("sae_quota_wait_seconds_count"),
            Some(2.0),
            "only the calls that waited are observed"
        );
        let waited = sample("sae_quota_wait_seconds_sum").unwrap();
        assert!((waited - 2.0 * interval).abs() < 0.004, "{waited}");
    }

    #[tokio::test(start_paused = true)]
    async fn a_pause_near_instant_overflow_is_cut_to_the_cap() {
        let planner = QuotaPlanner::new(60, None);
        let now = Instant::now();
        // The saturating addition itself: no panic, and never earlier than asked when it fits.
        assert!(later(now, Duration::MAX) > later(now, Duration::from_secs(86_400 * 365)));
        assert_eq!(
            later(now, Duration::from_secs(5)),
            now + Duration::from_secs(5)
        );
        for huge in [
            Duration::MAX,
            Duration::from_secs(u64::MAX),
            Duration::from_millis(u64::MAX),
            Duration::from_secs(u64::MAX / 2),
        ] {
            let start = Instant::now();
            planner.pause(KEY, huge);
            assert_eq!(planner.tokens(KEY), 0.0);
            planner.acquire(KEY, Priority::Delete).await;
            assert_eq!(since(start), MAX_PAUSE, "{huge:?}");
        }
        // Through a throttling answer too.
        let throttled = Err::<(), _>(SaeError::Api {
            operation: "DeleteInstances",
            http_status: 400,
            code: "Throttling.User".into(),
            message: "Request was denied due to user flow control.".into(),
            request_id: None,
            retry_after: Some(Duration::MAX),
        });
        let start = Instant::now();
        assert!(planner.note_result(KEY, &throttled));
        planner.acquire(KEY, Priority::Delete).await;
        assert_eq!(since(start), MAX_PAUSE);
        // An unlimited planner caps it as well.
        let unlimited = QuotaPlanner::new(0, None);
        let start = Instant::now();
        unlimited.pause(KEY, Duration::MAX);
        unlimited.acquire(KEY, Priority::Delete).await;
        assert_eq!(since(start), MAX_PAUSE);
    }

    #[tokio::test(start_paused = true)]
    async fn a_key_throttled_without_end_does_not_slow_another() {
        // Key B alone: the reference.
        let alone = QuotaPlanner::new(60, None);
        let start = Instant::now();
        let reference: Vec<Duration> = greedy(&alone, "key-b", start + Duration::from_secs(30))
            .await
            .iter()
            .map(|t| *t - start)
            .collect();

        // Key B beside key A, which has 50 waiters and is paused again every 2 s.
        let planner = QuotaPlanner::new(60, None);
        let log = Arc::new(StdMutex::new(Vec::new()));
        let start = Instant::now();
        let waiters: Vec<_> = (0..50)
            .map(|i| {
                spawn_waiter(
                    &planner,
                    "key-a",
                    [Priority::Delete, Priority::Poll][i % 2],
                    format!("a{i}"),
                    start,
                    &log,
                )
            })
            .collect();
        let throttler = {
            let planner = planner.clone();
            tokio::spawn(async move {
                loop {
                    planner.pause("key-a", Duration::from_secs(5));
                    tokio::time::sleep(Duration::from_secs(2)).await;
                }
            })
        };
        settle().await;
        let beside: Vec<Duration> = greedy(&planner, "key-b", start + Duration::from_secs(30))
            .await
            .iter()
            .map(|t| *t - start)
            .collect();
        assert_eq!(beside, reference, "key B is served exactly as when alone");
        assert!(log.lock().unwrap().is_empty(), "key A never got a token");
        assert_eq!(planner.waiting("key-a"), 50);
        throttler.abort();
        for waiter in waiters {
            waiter.await.unwrap();
        }
        assert_eq!(log.lock().unwrap().len(), 50, "key A resumes once unpaused");
    }

    #[tokio::test(start_paused = true)]
    async fn idle_keys_are_forgotten_with_their_series_but_never_with_waiters() {
        let metrics = Metrics::new();
        let planner = QuotaPlanner::new(60, Some(metrics.clone()));
        let series = |id: &str| {
            let needle = format!("access_key_id=\"{}\"", AccessKeyLabel::of(id));
            metrics.encode().contains(&needle)
        };
        // An RRSA refresh every few minutes: each STS key is used a little, then never again.
        for i in 0..5 {
            planner
                .acquire(&format!("STS.key-{i}"), Priority::Poll)
                .await;
            tokio::time::sleep(Duration::from_secs(120)).await;
        }
        // A key whose waiter waits longer than the expiry: paused again and again.
        let log = Arc::new(StdMutex::new(Vec::new()));
        let stuck = spawn_waiter(
            &planner,
            "STS.stuck",
            Priority::Poll,
            "stuck".into(),
            Instant::now(),
            &log,
        );
        settle().await;
        assert!(series("STS.key-0"));
        for _ in 0..5 {
            planner.pause("STS.stuck", MAX_PAUSE);
            tokio::time::sleep(Duration::from_secs(100)).await;
        }
        // At 1,100 s: the keys unused for 15 minutes are gone, the others and the stuck one stay.
        planner.acquire("STS.current", Priority::Poll).await;
        assert!(!series("STS.key-0") && !series("STS.key-1"));
        assert!(series("STS.key-2") && series("STS.key-4"));
        assert_eq!(planner.keys(), 5, "key-2, key-3, key-4, stuck, current");
        assert_eq!(planner.waiting("STS.stuck"), 1);

        // Much later only the stuck key (still waiting) and the one in use remain.
        for _ in 0..12 {
            planner.pause("STS.stuck", MAX_PAUSE);
            tokio::time::sleep(Duration::from_secs(100)).await;
            planner.acquire("STS.current", Priority::Poll).await;
        }
        assert_eq!(planner.keys(), 2);
        assert!(series("STS.stuck") && series("STS.current"));
        assert!(!series("STS.key-4"));
        stuck.await.unwrap();
        assert_eq!(log.lock().unwrap().len(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn past_the_cap_the_least_recently_used_keys_go_first_but_not_paused_ones() {
        // 6,000 per minute: a new key's first token is 10 ms away, so filling the map is quick.
        let planner = QuotaPlanner::new(6000, None);
        planner.pause("paused", MAX_PAUSE);
        for i in 0..MAX_BUCKETS + 20 {
            planner.acquire(&format!("key-{i}"), Priority::Poll).await;
        }
        assert_eq!(planner.keys(), MAX_BUCKETS);
        // The paused key stayed (forgetting it would end its pause); the oldest others went.
        let start = Instant::now();
        planner.acquire("paused", Priority::Delete).await;
        assert!(
            since(start) > Duration::from_secs(100),
            "the pause still holds"
        );
        // A forgotten key comes back spent: one interval, no burst.
        let start = Instant::now();
        planner.acquire("key-0", Priority::Delete).await;
        let waited = since(start);
        assert!(
            waited >= planner.interval() && waited <= planner.interval() + Duration::from_millis(1),
            "{waited:?}"
        );
        assert!(planner.tokens("key-0") < 1.0, "no burst");
    }
}
