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
}

/// Which side of the retry cycle an Event is on.
fn cycle_side(reason: &str) -> Option<usize> {
    match reason.parse::<Reason>().ok()? {
        Reason::Submitting => Some(0),
        Reason::Retrying | Reason::SaeUnreachable => Some(1),
        _ => None,
    }
}

fn unfold(e: &EventRecord) -> Vec<Occurrence> {
    let n = usize::try_from(e.count.max(1)).unwrap_or(1);
    (0..n)
        .map(|i| Occurrence {
            at: if i == 0 {
                Some(e.time)
            } else if i + 1 == n {
                e.last_time
            } else {
                None
            },
            reason: e.reason.clone(),
            note: e.note.clone(),
            repeat: i > 0,
        })
        .collect()
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
    for (i, o) in others.into_iter().enumerate() {
        // Unfolded series of other reasons keep their own order after their first time.
        let key = o.at.unwrap_or(Timestamp::MIN);
        keyed.push((key, offset + i, o));
    }
    // At equal times a cycle step stays before a later-listed event (its index is lower).
    keyed.sort_by(|a, b| a.0.cmp(&b.0).then(a.1.cmp(&b.1)));
    keyed.into_iter().map(|(_, _, o)| o).collect()
}
