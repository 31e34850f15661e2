//! The pure parts of the `kubectl sae` plugin (`src/bin/kubectl-sae/` does the I/O):
//!
//! - `duration`: durations as kubectl writes them (`30s`, `5m`, `1h30m`) and elapsed times.
//! - `request`: `delete`/`check` input checked with the CRD schema's rules, and the object to
//!   create (generateName when no name).
//! - `follow`: what `--wait` prints: each transition once with its elapsed time, the live line
//!   for a terminal, the outcome and the exit statuses.
//! - `timeline`: `describe`'s story of an object from its status and Events.
//! - `listing`: `get`'s objects grouped by app with their place in the app's line.
//! - `check`: whether the deletion policies would admit a deletion now, and why not.
//! - `series`: Event series unfolded into single steps, in the controller's order.
//! - `advice`: what to do about each reason.
//!
//! No I/O and no clock here: callers bring the objects, Events, time and time zone.

mod advice;
mod check;
mod duration;
mod follow;
mod listing;
mod request;
mod series;
#[cfg(test)]
mod test_objects;
mod timeline;

pub use advice::advice;
pub use check::{CheckAnswer, Cluster, check};
pub use duration::{format_between, format_duration, parse_duration};
pub use follow::{
    EXIT_ERROR, EXIT_FAILED, EXIT_SUCCEEDED, EXIT_TIMEOUT, Follower, behind, columns, live_line,
    outcome, timeout_lines, transition,
};
pub use listing::{AppGroup, Row, group_by_app, render_table};
pub use request::{DeleteRequest, generate_name, is_object_name, is_region};
pub use timeline::{EventRecord, Step, clock, render, timeline};
