//! Whose turn it is for a key's next token: the classes of [`Priority`] take turns, each class
//! first come, first served. Pure functions over the line, so the rule is tested on its own
//! (`quota/tests.rs` checks the bound on any mix of arrivals and departures).

use std::collections::BTreeMap;

use super::{Priority, Ticket};

/// The rotation, in the order the classes take turns.
const ROTATION: [Priority; 3] = [Priority::Delete, Priority::Resolve, Priority::Poll];

/// The class after `class` in the rotation: whose turn it is once `class` was served.
pub(super) fn after(class: Priority) -> Priority {
    let at = ROTATION.iter().position(|c| *c == class).unwrap_or(0);
    ROTATION[(at + 1) % ROTATION.len()]
}

/// The waiter the next token goes to: the oldest waiter of the first class, counting from `turn`
/// round the rotation, that has one.
pub(super) fn first<V>(line: &BTreeMap<Ticket, V>, turn: Priority) -> Option<Ticket> {
    let start = ROTATION.iter().position(|c| *c == turn).unwrap_or(0);
    (0..ROTATION.len())
        .map(|step| ROTATION[(start + step) % ROTATION.len()])
        .find_map(|class| {
            line.range((class, 0)..=(class, u64::MAX))
                .next()
                .map(|(ticket, _)| *ticket)
        })
}
