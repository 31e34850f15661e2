//! Tests of the quota planner: buckets, priorities, pauses, with tokio's paused clock.

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
            first >= planner.interval() && first <= planner.interval() + Duration::from_millis(1),
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
async fn the_classes_take_turns_and_each_class_is_first_come_first_served() {
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
            "resolve-a",
            "poll-a",
            "delete-b",
            "resolve-b",
            "poll-b",
            "delete-c"
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
async fn a_poll_waits_one_turn_while_deletes_keep_coming() {
    let planner = QuotaPlanner::new(60, None);
    drain_burst(&planner, KEY).await;
    let start = Instant::now();
    let log = Arc::new(StdMutex::new(Vec::new()));
    let poll = spawn_waiter(&planner, KEY, Priority::Poll, "poll".into(), start, &log);
    settle().await;
    // A new delete arrives every second, half a second before each token: under strict priority
    // the poll would get nothing until the deletes stop; taking turns, it gets the second token.
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
    let order: Vec<&str> = log.iter().map(|(l, _)| l.as_str()).collect();
    assert_eq!(order, ["d0", "poll", "d1", "d2", "d3", "d4"]);
    let times: Vec<u64> = log.iter().map(|(_, t)| t.as_secs()).collect();
    assert_eq!(times, [1, 2, 3, 4, 5, 6], "one token per second: {log:?}");
}

/// Looks for lost answers arriving faster than tokens (the livelock of issue 17: every token went
/// to looks that could not conclude) still leave every other token to the polls that end objects.
#[tokio::test(start_paused = true)]
async fn resolves_that_keep_coming_take_at_most_every_other_token_from_waiting_polls() {
    let planner = QuotaPlanner::new(60, None);
    drain_burst(&planner, KEY).await;
    let start = Instant::now();
    let log = Arc::new(StdMutex::new(Vec::new()));
    let mut tasks = Vec::new();
    for i in 0..10 {
        tasks.push(spawn_waiter(
            &planner,
            KEY,
            Priority::Poll,
            format!("p{i}"),
            start,
            &log,
        ));
    }
    for i in 0..30 {
        tasks.push(spawn_waiter(
            &planner,
            KEY,
            Priority::Resolve,
            format!("r{i}"),
            start,
            &log,
        ));
    }
    settle().await;
    for task in tasks {
        task.await.unwrap();
    }
    let log = log.lock().unwrap().clone();
    let polls_done = log.iter().position(|(l, _)| l == "p9").unwrap();
    assert_eq!(polls_done, 19, "ten polls within twenty tokens: {log:?}");
}

/// The rule of `turns.rs` on any mix of arrivals, departures (a waiter giving up) and tokens: a
/// class that waits is passed over at most once per other class before it is served, and each
/// class is served in arrival order. Seeded, so a failure repeats.
#[test]
fn any_mix_of_waiting_work_serves_every_class_within_two_tokens() {
    let classes = [Priority::Delete, Priority::Resolve, Priority::Poll];
    for seed in 0..500 {
        let mut rng = fastrand::Rng::with_seed(seed);
        let mut line: BTreeMap<Ticket, ()> = BTreeMap::new();
        let mut turn = classes[rng.usize(0..3)];
        let mut arrival = 0u64;
        // Tokens handed to other classes since each class was last served or started waiting.
        let mut passed: HashMap<Priority, u32> = HashMap::new();
        let mut last_served: HashMap<Priority, u64> = HashMap::new();
        for _ in 0..400 {
            match rng.u8(0..10) {
                0..=3 => {
                    let class = classes[rng.usize(0..3)];
                    if !line.keys().any(|t| t.0 == class) {
                        passed.insert(class, 0);
                    }
                    line.insert((class, arrival), ());
                    arrival += 1;
                }
                4 if !line.is_empty() => {
                    let gone = *line.keys().nth(rng.usize(0..line.len())).unwrap();
                    line.remove(&gone);
                }
                _ => {
                    let Some(ticket) = turns::first(&line, turn) else {
                        continue;
                    };
                    line.remove(&ticket);
                    turn = turns::after(ticket.0);
                    let class = ticket.0;
                    assert!(
                        last_served.get(&class).is_none_or(|a| *a < ticket.1),
                        "seed {seed}: {class:?} out of arrival order"
                    );
                    last_served.insert(class, ticket.1);
                    passed.insert(class, 0);
                    for other in classes.iter().filter(|c| **c != class) {
                        if line.keys().any(|t| t.0 == *other) {
                            let n = passed.entry(*other).or_insert(0);
                            *n += 1;
                            assert!(*n <= 2, "seed {seed}: {other:?} passed over {n} times");
                        }
                    }
                }
            }
        }
    }
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
