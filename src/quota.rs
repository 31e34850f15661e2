//! Client-side planning of SAE's API quota: one token bucket per AccessKey ID, with priorities.
//!
//! SAE allows about 60 calls per minute per account, every operation counted together, and answers
//! `Throttling.User` beyond that. Calls refused for throttling still cost a round trip and, worse,
//! delay the deletions users wait for. So every SAE call first takes a token from its key's bucket
//! here, and a throttling answer pauses that bucket instead of letting callers spin.
//!
//! # The bucket
//! A bucket holds at most `burst` tokens (a second's allowance, at least one) and gains tokens
//! continuously at a rate that keeps any 60 s window at or under `requests_per_minute`, burst
//! included (`requests_per_minute - burst + 1` per minute). It is kept as a "theoretical arrival
//! time" (the generic cell rate algorithm): the instant at which the bucket would be empty again.
//! That is pure `Instant` arithmetic with integer nanoseconds, so waits are exact and a paused tokio
//! clock reproduces them to the tick.
//!
//! # Who goes first
//! Waiters of one key are served strictly by ([`Priority`], arrival): a waiting `Delete` is handed
//! the next token before any `Resolve`, and a `Resolve` before any `Poll`; within a class the
//! order is first come, first served, so no waiter starves behind its peers. A lower class does
//! starve while higher classes keep the bucket saturated, and that is intended: deletions are what
//! users wait for, and a poll that comes late only learns a change order's end a bit later.
//!
//! # Pauses
//! [`QuotaPlanner::pause`] holds every token of a key until the pause ends (SAE's
//! `x-acs-retry-after`, or a default after a bare `Throttling*`). When it ends, one call may go at
//! once and the rest follow at the steady rate: the tokens that would have piled up meanwhile are
//! dropped, because SAE just said the account's window is full.
//!
//! Only `tokio::time` is read, never the system clock.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;

use crate::metrics::Metrics;
use crate::sae::SaeError;

/// How long a key pauses after a `Throttling*` answer that named no `x-acs-retry-after`.
pub const DEFAULT_THROTTLE_PAUSE: Duration = Duration::from_secs(5);

/// What an SAE call is for, which decides who gets the next token. Declared from most to least
/// urgent; the derived order is the service order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Priority {
    /// A DeleteInstances waiting to be sent to an idle app: the call users wait for.
    Delete,
    /// Reads that decide the fate of an attempt whose answer was lost, or of a rejected one
    /// (ListChangeOrders, ListInstances after a rejection).
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
    buckets: Mutex<HashMap<String, Bucket>>,
}

/// A place in a bucket's line: priority first, then arrival.
type Ticket = (Priority, u64);

struct Bucket {
    /// When the bucket would be empty again if nothing more were taken (it is full whenever this
    /// is not in the future).
    empty_at: Instant,
    paused_until: Option<Instant>,
    /// Waiters in service order; the first one is the only one that watches the clock, the others
    /// sleep until they are woken as the new first.
    line: BTreeMap<Ticket, Arc<Notify>>,
    next_arrival: u64,
}

impl Bucket {
    fn new(now: Instant) -> Self {
        Self {
            empty_at: now,
            paused_until: None,
            line: BTreeMap::new(),
            next_arrival: 0,
        }
    }

    /// The earliest instant at which a token may be taken.
    fn ready_at(&self, inner: &Inner, now: Instant) -> Instant {
        // `empty_at - tolerance` could fall before the clock's origin; compare on the other side.
        let by_rate = match self.empty_at.checked_duration_since(now + inner.tolerance) {
            Some(ahead) => now + ahead,
            None => now,
        };
        self.paused_until.map_or(by_rate, |p| p.max(by_rate))
    }

    fn take(&mut self, inner: &Inner, now: Instant) {
        self.empty_at = self.empty_at.max(now) + inner.interval;
        if self.paused_until.is_some_and(|p| p <= now) {
            self.paused_until = None;
        }
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

    fn wake_first(&self) {
        if let Some(first) = self.line.values().next() {
            // notify_one keeps a permit when the waiter is not listening yet, so no wake-up is lost.
            first.notify_one();
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
                // SAE counts calls per minute, perhaps over a sliding window. A bucket that starts
                // full allows `burst` + (calls refilled in 60 s) - 1 in the first minute, so the
                // refill rate leaves room for the burst: no 60 s window ever sees more than `rpm`.
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
                buckets: Mutex::new(HashMap::new()),
            }),
        }
    }

    /// How many calls may go at once after a quiet spell.
    pub fn burst(&self) -> u32 {
        self.inner.burst
    }

    /// Waits for a token of this AccessKey ID's bucket. Waiters go by priority, then arrival.
    /// Dropping the future gives up the place in line and hands nothing out.
    pub async fn acquire(&self, access_key_id: &str, priority: Priority) {
        let started = Instant::now();
        let notify = Arc::new(Notify::new());
        let ticket = {
            let mut buckets = self.lock();
            let now = Instant::now();
            let bucket = buckets
                .entry(access_key_id.to_owned())
                .or_insert_with(|| Bucket::new(now));
            if bucket.line.is_empty() && bucket.ready_at(&self.inner, now) <= now {
                bucket.take(&self.inner, now);
                self.report_tokens(access_key_id, bucket, now);
                return;
            }
            let ticket = (priority, bucket.next_arrival);
            bucket.next_arrival += 1;
            bucket.line.insert(ticket, notify.clone());
            ticket
        };
        let place = Place {
            planner: self,
            access_key_id,
            ticket,
            served: false,
        };
        place.wait(&notify).await;
        if let Some(metrics) = &self.inner.metrics {
            metrics.observe_quota_wait(started.elapsed());
        }
    }

    /// Holds every token of this AccessKey ID for `for_` (SAE answered `Throttling*` or sent
    /// `x-acs-retry-after`). Overlapping pauses end at the latest end. When the pause is over, one
    /// call goes at once and the rest at the steady rate.
    pub fn pause(&self, access_key_id: &str, for_: Duration) {
        let mut buckets = self.lock();
        let now = Instant::now();
        let bucket = buckets
            .entry(access_key_id.to_owned())
            .or_insert_with(|| Bucket::new(now));
        let until = now + for_;
        bucket.paused_until = Some(bucket.paused_until.map_or(until, |p| p.max(until)));
        // Empty the bucket as of the pause's end, save the one token that may go then.
        bucket.empty_at = bucket.empty_at.max(until + self.inner.tolerance);
        // The first waiter may be sleeping towards an earlier instant; it re-reads the bucket then
        // and sleeps on, so no wake-up is needed here.
        self.report_tokens(access_key_id, bucket, now);
    }

    /// Pauses the key when `result` is a throttling answer: for SAE's `x-acs-retry-after` when it
    /// sent one, else [`DEFAULT_THROTTLE_PAUSE`]. Returns whether it paused.
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

    /// Tokens this key could spend right now (the configured burst for a key never used; 0 while
    /// paused). Unlimited planners report infinity.
    pub fn tokens(&self, access_key_id: &str) -> f64 {
        let buckets = self.lock();
        match buckets.get(access_key_id) {
            Some(bucket) => bucket.tokens(&self.inner, Instant::now()),
            None if self.inner.interval.is_zero() => f64::INFINITY,
            None => f64::from(self.inner.burst),
        }
    }

    /// How many calls wait for a token of this key.
    pub fn waiting(&self, access_key_id: &str) -> usize {
        self.lock().get(access_key_id).map_or(0, |b| b.line.len())
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<String, Bucket>> {
        // The map holds no invariant a panicking holder could have broken halfway.
        self.inner.buckets.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn report_tokens(&self, access_key_id: &str, bucket: &Bucket, now: Instant) {
        if let Some(metrics) = &self.inner.metrics
            && !self.inner.interval.is_zero()
        {
            metrics.set_quota_tokens(access_key_id, bucket.tokens(&self.inner, now));
        }
    }
}

/// A waiter's place in its bucket's line; leaving it (served or cancelled) wakes the next first.
struct Place<'a> {
    planner: &'a QuotaPlanner,
    access_key_id: &'a str,
    ticket: Ticket,
    served: bool,
}

impl Place<'_> {
    async fn wait(mut self, notify: &Notify) {
        loop {
            let wake_at = {
                let mut buckets = self.planner.lock();
                let now = Instant::now();
                let inner = &self.planner.inner;
                let bucket = buckets
                    .get_mut(self.access_key_id)
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
                        self.planner.report_tokens(self.access_key_id, bucket, now);
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
        let mut buckets = self.planner.lock();
        if let Some(bucket) = buckets.get_mut(self.access_key_id) {
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

    async fn drain_burst(planner: &QuotaPlanner, key: &str) {
        let start = Instant::now();
        for _ in 0..planner.burst() {
            planner.acquire(key, Priority::Poll).await;
        }
        assert_eq!(since(start), Duration::ZERO, "the burst is free");
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
            let interval = Duration::from_nanos(60_000_000_000 / u64::from(rpm - burst + 1));
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
        let start = Instant::now();
        // key-b still has its whole burst and no pause.
        drain_burst(&planner, "key-b").await;
        planner.acquire("key-b", Priority::Poll).await;
        assert_eq!(since(start), Duration::from_secs(1));
        assert_eq!(planner.tokens("key-c"), 1.0, "a key never used is full");
        let start = Instant::now();
        planner.acquire("key-a", Priority::Delete).await;
        assert_eq!(
            since(start),
            Duration::from_secs(59),
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
        let interval: f64 = 60.0 / 591.0;
        // After one interval's wait and a second of refill (capped at 10), one token is spent.
        let tokens = sample(&format!("sae_quota_tokens{{access_key_id=\"{KEY}\"}}")).unwrap();
        let expected = (1.0 / interval).min(10.0) - 1.0;
        assert!((tokens - expected).abs() < 0.01, "{tokens} vs {expected}");
        assert_eq!(
            sample("sae_quota_wait_seconds_count"),
            Some(1.0),
            "only the call that waited is observed"
        );
        let waited = sample("sae_quota_wait_seconds_sum").unwrap();
        assert!((waited - interval).abs() < 0.002, "{waited}");
    }
}
