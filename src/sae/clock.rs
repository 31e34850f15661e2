//! SAE's clock against ours, per region, measured from the `Date` header of its answers.
//!
//! Change-order times (`CreateTime`) come from SAE's clock, the attempt times they are compared
//! with from ours. Instead of assuming the two agree, every quick answer of SAE's (one that names
//! its RequestId, and came back within [`MAX_ROUND_TRIP`]) is a sample: SAE wrote its `Date`
//! somewhere between the moment the request left and the moment the answer arrived, truncated to
//! the second, so the difference is known to within that round trip plus a second. Slow answers
//! are no samples: a server writes `Date` when it answers, not when the request arrived, so a slow
//! one would read as a clock that runs ahead. The estimate is the median of a region's last
//! [`SAMPLES`] samples, so one odd answer moves nothing; with fewer than three it is given only
//! when two agree.
//!
//! No Kubernetes types; the controller reads [`SaeClocks::offset`] for its decisions.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use jiff::{SignedDuration, Timestamp};

/// Samples kept per region; the estimate is their median.
pub const SAMPLES: usize = 5;
/// The slowest answer that is still a sample: its error is at most this plus a second.
pub const MAX_ROUND_TRIP: SignedDuration = SignedDuration::from_secs(2);
/// Two samples agree when this close; a lone sample is no estimate.
const AGREE: SignedDuration = SignedDuration::from_secs(2);
/// Regions remembered. A region is named by an object's spec, so a bad spec must not grow this
/// without bound; past it, the region heard from least recently goes.
const MAX_REGIONS: usize = 256;

/// The clock offsets of every region heard from. Cloning shares them.
#[derive(Clone, Debug, Default)]
pub struct SaeClocks {
    regions: Arc<Mutex<HashMap<String, Region>>>,
}

#[derive(Debug, Default)]
struct Region {
    samples: VecDeque<SignedDuration>,
    /// For forgetting the least recently heard region first.
    last_heard: Option<Timestamp>,
}

impl SaeClocks {
    /// Notes one answer from `region` whose `Date` header read `date`: the request left at `sent`
    /// and the answer arrived at `received`, both by our clock.
    pub fn record(&self, region: &str, date: Timestamp, sent: Timestamp, received: Timestamp) {
        let Some(sample) = sample(date, sent, received) else {
            return;
        };
        let mut regions = self.lock();
        if !regions.contains_key(region) && regions.len() >= MAX_REGIONS {
            let oldest = regions
                .iter()
                .min_by_key(|(_, r)| r.last_heard)
                .map(|(name, _)| name.clone());
            if let Some(oldest) = oldest {
                regions.remove(&oldest);
            }
        }
        let entry = regions.entry(region.to_string()).or_default();
        if entry.samples.len() == SAMPLES {
            entry.samples.pop_front();
        }
        entry.samples.push_back(sample);
        entry.last_heard = Some(received);
    }

    /// SAE's clock minus ours in `region`: the median of its recent samples when there are three
    /// or more, the lower of two that agree, else None (not measured yet).
    pub fn offset(&self, region: &str) -> Option<SignedDuration> {
        let regions = self.lock();
        let samples = &regions.get(region)?.samples;
        match samples.len() {
            0 | 1 => None,
            2 if (samples[0] - samples[1]).abs() > AGREE => None,
            _ => median(samples.iter().copied()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Region>> {
        // Plain data: a panicking holder leaves nothing half-done.
        self.regions.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The offset one answer shows: SAE's time when it wrote the answer is in `[date, date + 1 s)`,
/// and that moment lies in `[sent, received]` by our clock; the middle of both. None for an
/// answer that arrived before it left (a clock step) or slower than [`MAX_ROUND_TRIP`].
fn sample(date: Timestamp, sent: Timestamp, received: Timestamp) -> Option<SignedDuration> {
    let round_trip = received.duration_since(sent);
    if round_trip.is_negative() || round_trip > MAX_ROUND_TRIP {
        return None;
    }
    let sae = date.checked_add(SignedDuration::from_millis(500)).ok()?;
    let ours = sent.checked_add(round_trip / 2).ok()?;
    Some(sae.duration_since(ours))
}

/// The median of `values` (the lower middle one of an even count); None when empty.
fn median(values: impl Iterator<Item = SignedDuration>) -> Option<SignedDuration> {
    let mut sorted: Vec<SignedDuration> = values.collect();
    sorted.sort();
    let middle = sorted.len().checked_sub(1)? / 2;
    sorted.get(middle).copied()
}

/// Reads an HTTP `Date` header (RFC 1123, `Sun, 06 Nov 1994 08:49:37 GMT`).
pub fn parse_http_date(text: &str) -> Option<Timestamp> {
    jiff::fmt::rfc2822::DateTimeParser::new()
        .parse_timestamp(text.trim())
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(seconds: i64) -> Timestamp {
        Timestamp::from_second(1_800_000_000 + seconds).unwrap()
    }

    fn ms(millis: i64) -> SignedDuration {
        SignedDuration::from_millis(millis)
    }

    #[test]
    fn answers_show_the_offset_to_within_their_round_trip_and_a_second() {
        for skew in [-40, 40] {
            let clocks = SaeClocks::default();
            assert_eq!(clocks.offset("cn-hangzhou"), None);
            // SAE `skew` s off: it writes T+skew for an answer we get at T (sent 0.2 s before).
            let sent = at(0).checked_sub(ms(200)).unwrap();
            clocks.record("cn-hangzhou", at(skew), sent, at(0));
            assert_eq!(
                clocks.offset("cn-hangzhou"),
                None,
                "one answer is no estimate"
            );
            clocks.record("cn-hangzhou", at(skew + 1), at(1), at(1));
            let offset = clocks.offset("cn-hangzhou").unwrap();
            let want = SignedDuration::from_secs(skew);
            assert!((offset - want).abs() <= ms(600), "{skew}: {offset:?}");
            assert_eq!(clocks.offset("cn-beijing"), None, "regions are separate");
        }
        // Two that disagree: neither is trusted until a third tells.
        let clocks = SaeClocks::default();
        clocks.record("r", at(0), at(0), at(0));
        clocks.record("r", at(60), at(1), at(1));
        assert_eq!(clocks.offset("r"), None);
        clocks.record("r", at(2), at(2), at(2));
        assert_eq!(clocks.offset("r"), Some(ms(500)));
    }

    #[test]
    fn a_slow_answer_is_no_sample() {
        // A gateway that answers after 25 s writes its Date then: read as the middle of the
        // round trip it would show a clock 12.5 s ahead.
        let clocks = SaeClocks::default();
        for i in 0..5 {
            clocks.record("r", at(i * 100 + 25), at(i * 100), at(i * 100 + 25));
        }
        assert_eq!(clocks.offset("r"), None);
    }

    #[test]
    fn one_odd_answer_among_five_moves_nothing() {
        let clocks = SaeClocks::default();
        for i in 0..5 {
            let date = if i == 2 { at(i - 3600) } else { at(i + 40) };
            clocks.record("r", date, at(i), at(i));
        }
        assert_eq!(
            clocks.offset("r"),
            Some(SignedDuration::from_millis(40_500))
        );
        // Newer samples replace the oldest: the clock was corrected.
        for i in 10..15 {
            clocks.record("r", at(i), at(i), at(i));
        }
        assert_eq!(clocks.offset("r"), Some(ms(500)));
    }

    #[test]
    fn absurd_round_trips_are_not_samples_and_regions_are_bounded() {
        let clocks = SaeClocks::default();
        clocks.record("r", at(0), at(10), at(0));
        clocks.record("r", at(0), at(0), at(3600));
        clocks.record("r", at(0), at(0), at(0));
        clocks.record("r", at(0), at(0), at(0));
        assert_eq!(
            clocks.lock()["r"].samples.len(),
            2,
            "only the two quick answers count"
        );
        for i in 0..(MAX_REGIONS as i64 + 10) {
            clocks.record(&format!("r-{i}"), at(i), at(i), at(i));
            clocks.record(&format!("r-{i}"), at(i), at(i), at(i));
        }
        assert_eq!(clocks.lock().len(), MAX_REGIONS);
        assert_eq!(
            clocks.offset("r-0"),
            None,
            "the least recently heard went first"
        );
        assert!(clocks.offset(&format!("r-{}", MAX_REGIONS + 9)).is_some());
    }

    #[test]
    fn http_dates_are_read_as_sae_writes_them() {
        assert_eq!(
            parse_http_date("Sun, 06 Dec 2026 15:00:00 GMT"),
            Some("2026-12-06T15:00:00Z".parse().unwrap())
        );
        assert_eq!(parse_http_date("yesterday"), None);
    }
}
