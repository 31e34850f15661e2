//! What `--wait` prints while it follows one object: each transition once, with the time since
//! the plugin started following, a live line for terminals, and the outcome with its exit status.
//!
//! Pure: the caller brings the object as the watch delivered it and the elapsed time.

use std::time::Duration;

use jiff::tz::TimeZone;

use super::{advice, format_duration};
use crate::crd::{Phase, Reason, SaeInstanceDeletion, SaeInstanceDeletionStatus};

/// Exit status of `delete --wait` and `wait`: the object Succeeded.
pub const EXIT_SUCCEEDED: i32 = 0;
/// The object Failed; its reason and what to do were printed.
pub const EXIT_FAILED: i32 = 1;
/// `--timeout` passed first; the object keeps going.
pub const EXIT_TIMEOUT: i32 = 2;
/// Nothing was followed: bad input, no such object, the API server refused or is unreachable.
/// Not 1 or 2, so a script can tell "the deletion failed" from "the plugin could not ask".
pub const EXIT_ERROR: i32 = 3;

/// What makes two observations the same transition: a status rewritten with the same phase,
/// reason, attempt and change-order state is not news.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Key {
    phase: Option<Phase>,
    reason: Option<String>,
    attempts: i32,
    change_order: Option<(String, Option<String>)>,
}

fn key(status: Option<&SaeInstanceDeletionStatus>) -> Key {
    Key {
        phase: status.and_then(|s| s.phase),
        reason: status.and_then(|s| s.reason()).map(String::from),
        attempts: status.map_or(0, |s| s.attempts()),
        change_order: status.and_then(|s| {
            s.change_order_id
                .clone()
                .map(|id| (id, s.change_order_status.clone()))
        }),
    }
}

/// Remembers the last transition printed.
#[derive(Debug, Default)]
pub struct Follower {
    last: Option<Key>,
}

impl Follower {
    /// The line to print for this observation, or None when it shows nothing new.
    pub fn observe(
        &mut self,
        obj: &SaeInstanceDeletion,
        elapsed: Duration,
        tz: &TimeZone,
    ) -> Option<String> {
        let now = key(obj.status.as_ref());
        if self.last.as_ref() == Some(&now) {
            return None;
        }
        self.last = Some(now);
        Some(format!(
            "[{:>7}] {}",
            format_duration(elapsed),
            transition(obj, tz)
        ))
    }
}

/// One line saying where the object stands, in the on-call engineer's words.
pub fn transition(obj: &SaeInstanceDeletion, tz: &TimeZone) -> String {
    let Some(s) = obj.status.as_ref().filter(|s| s.phase.is_some()) else {
        return "created; waiting for the controller to pick it up".into();
    };
    let message = s.message.as_deref().unwrap_or_default();
    let reason = s.reason().and_then(|r| r.parse::<Reason>().ok());
    let request_id = s
        .request_id
        .as_deref()
        .map(|r| format!("RequestId {r}"))
        .unwrap_or_else(|| "no RequestId".into());
    let change_order = || {
        let id = s.change_order_id.as_deref().unwrap_or("(no id)");
        let st = s.change_order_status.as_deref().unwrap_or("pending");
        format!("change order {id} {}", st.to_lowercase())
    };
    match (s.phase.unwrap_or(Phase::Pending), reason) {
        (Phase::Pending, Some(Reason::WaitingForApplication)) => match behind(message) {
            Some(who) => format!("queued behind {who} (SAE runs one change order per app)"),
            None => format!("queued: {message}"),
        },
        (Phase::Pending, Some(Reason::CredentialsNotFound)) => {
            format!("waiting for credentials: {message}")
        }
        (Phase::Pending, Some(r)) if r.is_policy_refusal() => {
            format!("held by a deletion policy ({r}): {message}")
        }
        (Phase::Pending, _) => format!("pending: {message}"),
        (Phase::Submitting, Some(Reason::OutcomeUnknown)) => {
            format!("answer lost; checking SAE for what happened: {message}")
        }
        (Phase::Submitting, _) => {
            format!("sending DeleteInstances (attempt {})", s.attempts().max(1))
        }
        (Phase::Retrying, Some(Reason::SaeUnreachable)) => format!(
            "SAE unreachable, nothing sent; retrying at {}",
            at(s.next_attempt_time.as_ref(), tz)
        ),
        (Phase::Retrying, _) => format!(
            "refused by SAE ({}, {request_id}); retrying at {}",
            s.error_code.as_deref().unwrap_or("no error code"),
            at(s.next_attempt_time.as_ref(), tz)
        ),
        (Phase::InProgress, _) => format!("sent ({request_id}); {}", change_order()),
        (Phase::Succeeded, r) => {
            let why = r.map_or("Succeeded".into(), |r| r.to_string());
            match &s.change_order_id {
                Some(_) => format!("succeeded ({why}); {}", change_order()),
                None => format!("succeeded ({why}): {message}"),
            }
        }
        (Phase::Failed, r) => format!(
            "failed: {}",
            r.map_or("(no reason)".into(), |r| r.to_string())
        ),
    }
}

/// The object a waiting object is behind, from the message the controller writes
/// ("waiting for app APP: NS/NAME has a DeleteInstances request ..." or "... NS/NAME was created
/// earlier and goes first ...").
pub fn behind(message: &str) -> Option<&str> {
    let rest = message.strip_prefix("waiting for app ")?;
    let (_, after) = rest.split_once(": ")?;
    let who = after.split_whitespace().next()?;
    who.contains('/').then_some(who)
}

/// A status time in the reader's zone, `HH:MM:SS`.
pub fn at(
    t: Option<&k8s_openapi::apimachinery::pkg::apis::meta::v1::Time>,
    tz: &TimeZone,
) -> String {
    t.map_or_else(
        || "an unknown time".into(),
        |t| t.0.to_zoned(tz.clone()).strftime("%H:%M:%S").to_string(),
    )
}

/// The live line for a terminal: the transition, the elapsed time and a spinner-free count.
/// It is redrawn in place with `\r` and "clear line", which only reach the cursor's row, so it
/// must fit one row: it is cut to `columns - 1` characters (the elapsed time kept) and takes only
/// the first line of a multi-line status message.
pub fn live_line(
    obj: &SaeInstanceDeletion,
    elapsed: Duration,
    tz: &TimeZone,
    columns: usize,
) -> String {
    let name = obj.metadata.name.as_deref().unwrap_or_default();
    let transition = transition(obj, tz);
    let what = transition.lines().next().unwrap_or_default();
    let head = format!("{name} … {what}");
    let tail = format!(" [{}]", format_duration(elapsed));
    let max = columns.saturating_sub(1).max(1);
    let (head_len, tail_len) = (head.chars().count(), tail.chars().count());
    if head_len + tail_len <= max {
        return format!("{head}{tail}");
    }
    if tail_len + 1 < max {
        let keep = max - tail_len - 1;
        return format!("{}…{tail}", head.chars().take(keep).collect::<String>());
    }
    format!("{head}{tail}").chars().take(max).collect()
}

/// The terminal's width for the live line: `$COLUMNS` when set to a number, else 80.
pub fn columns(env: Option<&str>) -> usize {
    env.and_then(|c| c.trim().parse::<usize>().ok())
        .filter(|&c| c > 0)
        .unwrap_or(80)
}

/// The end of a follow: exit status and the lines to print. None while the object goes on.
pub fn outcome(obj: &SaeInstanceDeletion, elapsed: Duration) -> Option<(i32, Vec<String>)> {
    let s = obj.status.as_ref().filter(|s| s.is_terminal())?;
    let name = obj.metadata.name.as_deref().unwrap_or_default();
    let reason_text = s.reason().unwrap_or("(no reason)");
    let message = s.message.as_deref().unwrap_or_default();
    let took = format_duration(elapsed);
    if s.phase == Some(Phase::Succeeded) {
        return Some((
            EXIT_SUCCEEDED,
            vec![format!(
                "{name} Succeeded ({reason_text}) after {took}: {message}"
            )],
        ));
    }
    let mut lines = vec![format!(
        "{name} Failed ({reason_text}) after {took}: {message}"
    )];
    if let Some(advice) = reason_text.parse().ok().and_then(advice) {
        lines.push(format!("What to do: {advice}"));
    }
    Some((EXIT_FAILED, lines))
}

/// What to say when `--timeout` passes first.
pub fn timeout_lines(obj: &SaeInstanceDeletion, timeout: Duration, tz: &TimeZone) -> Vec<String> {
    let name = obj.metadata.name.as_deref().unwrap_or_default();
    vec![
        format!(
            "timed out after {}: {name} is still {}",
            format_duration(timeout),
            transition(obj, tz)
        ),
        format!(
            "The object keeps going: the controller finishes it by its deadline. Follow it with \
             `kubectl sae wait {name}` or read it with `kubectl sae describe {name}`."
        ),
    ]
}

#[cfg(test)]
mod tests;
