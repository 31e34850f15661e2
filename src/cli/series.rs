//! Events back into single steps, in order.
//!
//! kube's event recorder folds Events of the same reason on one object into a series: one Event
//! with the first occurrence's note and time, a count, and the time of the last one. A retry loop
//! (Submitting, Retrying, Submitting, …) thus arrives as two Events with counts. Here each series
//! is unfolded into its occurrences — the first and last with their times, those between without
//! — and the send/refusal cycle is put back in the only order the controller can produce:
//! attempt, refusal, attempt, refusal, …

use jiff::Timestamp;

use super::EventRecord;
use crate::crd::Reason;

/// One occurrence of an Event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Occurrence {
    /// None for the middle of a series: the recorder keeps no time for it.
    pub at: Option<Timestamp>,
    pub reason: String,
    /// The series' note (that of its first occurrence).
    pub note: String,
    /// Not the first of its series: the note describes an earlier occurrence.
    pub repeat: bool,
    /// Above zero: not one occurrence but this many, left out between a long series' first and
    /// last (`count` comes from the API and may be anything up to `i32::MAX`).
    pub more: u64,
}

/// A series longer than this is told as its first occurrence, "… N more …" and its last.
pub const MAX_UNFOLDED: u64 = 10;

/// Which side of the retry cycle an Event is on.
fn cycle_side(reason: &str) -> Option<usize> {
    match reason.parse::<Reason>().ok()? {
        Reason::Submitting => Some(0),
        Reason::Retrying | Reason::SaeUnreachable => Some(1),
        _ => None,
    }
}

fn unfold(e: &EventRecord) -> Vec<Occurrence> {
    let n = u64::try_from(e.count.max(1)).unwrap_or(1);
    let one = |at: Option<Timestamp>, repeat: bool, more: u64| Occurrence {
        at,
        reason: e.reason.clone(),
        note: e.note.clone(),
        repeat,
        more,
    };
    if n == 1 {
        return vec![one(Some(e.time), false, 0)];
    }
    let mut all = vec![one(Some(e.time), false, 0)];
    if n > MAX_UNFOLDED {
        all.push(one(None, true, n - 2));
    } else {
        all.extend((2..n).map(|_| one(None, true, 0)));
    }
    all.push(one(e.last_time, true, 0));
    all
}

/// Every occurrence, oldest first.
pub fn occurrences(events: &[EventRecord]) -> Vec<Occurrence> {
    let mut sorted = events.to_vec();
    sorted.sort_by_key(|e| e.time);
    let mut sides: [Vec<Occurrence>; 2] = [Vec::new(), Vec::new()];
    let mut others = Vec::new();
    for e in &sorted {
        match cycle_side(&e.reason) {
            Some(side) => sides[side].extend(unfold(e)),
            None => others.extend(unfold(e)),
        }
    }
    // Sends and refusals alternate, starting with a send.
    let [sends, refusals] = sides;
    let mut cycle = Vec::new();
    let (mut s, mut r) = (sends.into_iter(), refusals.into_iter());
    loop {
        let (a, b) = (s.next(), r.next());
        if a.is_none() && b.is_none() {
            break;
        }
        cycle.extend(a);
        cycle.extend(b);
    }
    // Each cycle step sorts at its own time, or right after the step before it.
    let mut keyed: Vec<(Timestamp, usize, Occurrence)> = Vec::new();
    let mut last = Timestamp::MIN;
    for (i, o) in cycle.into_iter().enumerate() {
        last = o.at.map_or(last, |t| t.max(last));
        keyed.push((last, i, o));
    }
    let offset = keyed.len();
    // A series of another reason keeps its own order: an occurrence without a time of its own
    // sorts right after the one before it (its first always has a time).
    let mut previous = Timestamp::MIN;
    for (i, o) in others.into_iter().enumerate() {
        let key = match (o.at, o.repeat) {
            (Some(t), _) => t,
            (None, true) => previous,
            (None, false) => Timestamp::MIN,
        };
        previous = key;
        keyed.push((key, offset + i, o));
    }
    // At equal times a cycle step stays before a later-listed event (its index is lower).
    keyed.sort_by(|a, b| a.0.cmp(&b.0).then(a.1.cmp(&b.1)));
    keyed.into_iter().map(|(_, _, o)| o).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: i64) -> Timestamp {
        Timestamp::from_second(1_700_000_000 + s).unwrap()
    }

    fn record(time: i64, reason: &str, count: i32, last: Option<i64>) -> EventRecord {
        EventRecord {
            time: at(time),
            reason: reason.into(),
            note: format!("{reason} note"),
            count,
            last_time: last.map(at),
        }
    }

    fn reasons(o: &[Occurrence]) -> Vec<(&str, Option<Timestamp>, bool)> {
        o.iter()
            .map(|o| (o.reason.as_str(), o.at, o.repeat))
            .collect()
    }

    #[test]
    fn the_middle_of_a_series_of_another_reason_stays_after_its_first_occurrence() {
        // WaitingForApplication three times (10, ?, 30); something else happened at 5 and 20.
        let events = vec![
            record(5, "Pending", 1, None),
            record(10, "WaitingForApplication", 3, Some(30)),
            record(20, "CredentialsNotFound", 1, None),
        ];
        assert_eq!(
            reasons(&occurrences(&events)),
            vec![
                ("Pending", Some(at(5)), false),
                ("WaitingForApplication", Some(at(10)), false),
                ("WaitingForApplication", None, true),
                ("CredentialsNotFound", Some(at(20)), false),
                ("WaitingForApplication", Some(at(30)), true),
            ]
        );
    }

    #[test]
    fn a_last_occurrence_without_its_time_stays_after_the_first() {
        let events = vec![
            record(5, "Pending", 1, None),
            record(10, "WaitingForApplication", 2, None),
        ];
        assert_eq!(
            reasons(&occurrences(&events)),
            vec![
                ("Pending", Some(at(5)), false),
                ("WaitingForApplication", Some(at(10)), false),
                ("WaitingForApplication", None, true),
            ]
        );
    }

    #[test]
    fn a_huge_count_is_the_first_a_gap_and_the_last_not_one_entry_per_count() {
        let events = vec![
            record(10, "Submitting", i32::MAX, Some(90)),
            record(11, "Retrying", i32::MAX - 1, Some(95)),
            record(12, "WaitingForApplication", i32::MAX, Some(50)),
        ];
        let all = occurrences(&events);
        assert_eq!(all.len(), 9, "{all:#?}");
        let more: Vec<u64> = all.iter().map(|o| o.more).collect();
        let max = u64::try_from(i32::MAX).unwrap();
        assert_eq!(
            more,
            vec![0, 0, max - 2, max - 3, 0, max - 2, 0, 0, 0],
            "{all:#?}"
        );
        let order: Vec<&str> = all.iter().map(|o| o.reason.as_str()).collect();
        assert_eq!(
            order,
            vec![
                "Submitting",
                "Retrying",
                "Submitting",
                "Retrying",
                "WaitingForApplication",
                "WaitingForApplication",
                "WaitingForApplication",
                "Submitting",
                "Retrying",
            ]
        );
        assert_eq!(all[7].at, Some(at(90)));
        assert_eq!(all[8].at, Some(at(95)));
    }

    #[test]
    fn up_to_the_cap_a_series_is_unfolded_one_by_one() {
        let all = occurrences(&[record(10, "WaitingForApplication", 10, Some(20))]);
        assert_eq!(all.len(), 10);
        assert!(all.iter().all(|o| o.more == 0));
        let all = occurrences(&[record(10, "WaitingForApplication", 11, Some(20))]);
        assert_eq!(all.len(), 3);
        assert_eq!(all[1].more, 9);
    }
}
