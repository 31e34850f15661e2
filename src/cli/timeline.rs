//! `kubectl sae describe`: an object's story, told from its status and its Events.
//!
//! The controller publishes one Event per change of phase or reason, whose note is the status
//! message of that moment (with ChangeOrderId, RequestId and error code once SAE answered). So the
//! Events, in order, are the steps; the status adds what they cannot say: how long each wait
//! lasted, the change order's state, the outcome and what to do. Events expire (about an hour by
//! default); without them the story comes from the status's times alone, and says so.

use jiff::Timestamp;
use jiff::tz::TimeZone;

use super::{advice, follow::behind, format_between};
use crate::crd::{Phase, Reason, SaeInstanceDeletion};

/// One Event about the object, as the binary read it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EventRecord {
    pub time: Timestamp,
    pub reason: String,
    pub note: String,
    /// How many times the same Event was recorded (an Event series), and when the last was.
    pub count: i32,
    pub last_time: Option<Timestamp>,
}

/// An occurrence as the match below reads it.
struct Shown<'a> {
    reason: &'a str,
    note: String,
}

/// One step of the story.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Step {
    pub at: Option<Timestamp>,
    pub text: String,
}

/// The steps of `obj`'s story, oldest first, ending with where it stands (and, for a failure,
/// what to do). `now` measures waits that have not ended.
pub fn timeline(
    obj: &SaeInstanceDeletion,
    events: &[EventRecord],
    now: Timestamp,
    tz: &TimeZone,
) -> Vec<Step> {
    let created = obj.metadata.creation_timestamp.as_ref().map(|t| t.0);
    let pinned = obj.pinned();
    let deadline = created
        .map(|c| c + jiff::SignedDuration::from_secs(obj.spec.active_deadline_seconds.into()));
    let mut steps = vec![Step {
        at: created,
        text: format!(
            "created: delete {} instance(s) of app {} in {}{}; deadline {}",
            pinned.instance_ids.len(),
            pinned.app_id,
            pinned.region_id,
            if pinned.dry_run {
                " (dry run: check only)"
            } else {
                ""
            },
            deadline.map_or("unknown".into(), |d| clock(d, tz)),
        ),
    }];
    let status = obj.status.clone().unwrap_or_default();

    let sorted = super::series::occurrences(events);
    let mut attempt = 0;
    for (i, e) in sorted.iter().enumerate() {
        let next = match sorted.get(i + 1) {
            Some(n) => n.at,
            None if status.is_terminal() => status.completion_time.as_ref().map(|t| t.0),
            None => Some(now),
        };
        let lasted = match (e.at, next) {
            (Some(from), Some(to)) => format!(" ({})", format_between(from, to)),
            _ => String::new(),
        };
        let reason = e.reason.parse::<Reason>().ok();
        if e.more > 0 {
            // A long series' middle, told as one line (not one per occurrence).
            if reason == Some(Reason::Submitting) {
                attempt += e.more;
            }
            steps.push(Step {
                at: None,
                text: format!("… {} more {} …", e.more, e.reason),
            });
            continue;
        }
        let terminal_event = i + 1 == sorted.len() && status.is_terminal();
        // A repeat of a series carries the first occurrence's note, which would mislead.
        let note = if e.repeat {
            "(again; the Event series keeps only the first note)".to_string()
        } else {
            e.note.clone()
        };
        let at = e.at;
        let e = Shown {
            reason: &e.reason,
            note,
        };
        let text = match reason {
            Some(Reason::WaitingForApplication) => match behind(&e.note) {
                Some(who) => format!("waited for the app behind {who}{lasted}: {}", e.note),
                None => format!("waited for the app{lasted}: {}", e.note),
            },
            Some(Reason::Submitting) => {
                attempt += 1;
                format!("attempt {attempt}: {}", e.note)
            }
            Some(Reason::Retrying) => {
                format!("SAE refused it without executing it{lasted}: {}", e.note)
            }
            Some(Reason::SaeUnreachable) => {
                format!("SAE unreachable, nothing sent{lasted}: {}", e.note)
            }
            Some(Reason::OutcomeUnknown) if !terminal_event => format!(
                "answer lost: SAE's change orders and instance list are checked to learn whether it was executed \
                 (not sent again; checked until {}){lasted}: {}",
                deadline.map_or("the deadline".into(), |d| clock(d, tz)),
                e.note
            ),
            Some(Reason::WaitingForChangeOrder) => {
                format!("SAE accepted it; change order running{lasted}: {}", e.note)
            }
            Some(Reason::CredentialsNotFound) => {
                format!("waited for credentials{lasted}: {}", e.note)
            }
            Some(r) if r.is_policy_refusal() => {
                format!("held by a deletion policy ({r}){lasted}: {}", e.note)
            }
            Some(r @ (Reason::Succeeded | Reason::AlreadyDeleted | Reason::DryRunSucceeded)) => {
                format!("succeeded ({r}): {}", e.note)
            }
            Some(Reason::Pending) => format!("accepted by the controller: {}", e.note),
            _ => format!("{}: {}", e.reason, e.note),
        };
        steps.push(Step { at, text });
    }
    if sorted.is_empty() {
        steps.extend(from_status_times(obj));
    }
    steps.extend(change_order(obj, now));
    steps.extend(standing(obj, now, deadline, tz));
    steps
}

/// Without Events: the attempts the status's times show.
fn from_status_times(obj: &SaeInstanceDeletion) -> Vec<Step> {
    let Some(s) = &obj.status else {
        return vec![Step {
            at: None,
            text: "no status yet: the controller has not looked at it".into(),
        }];
    };
    let mut steps = vec![Step {
        at: None,
        text: "no Events found (they expire after about an hour): the steps below come from the status only".into(),
    }];
    if let Some(t) = &s.start_time {
        steps.push(Step {
            at: Some(t.0),
            text: "attempt 1 sent".into(),
        });
    }
    if s.attempts() > 1
        && let Some(t) = &s.last_attempt_time
    {
        steps.push(Step {
            at: Some(t.0),
            text: format!("attempt {} sent (the last)", s.attempts()),
        });
    }
    steps
}

/// The change order: id, state and how long it ran (from the accepted attempt).
fn change_order(obj: &SaeInstanceDeletion, now: Timestamp) -> Option<Step> {
    let s = obj.status.as_ref()?;
    let id = s.change_order_id.as_deref()?;
    let from = s.last_attempt_time.as_ref().map(|t| t.0);
    let to = s.completion_time.as_ref().map_or(now, |t| t.0);
    let verb = if s.is_terminal() {
        "ran"
    } else {
        "running for"
    };
    let lasted = from
        .map(|f| format!(", {verb} {}", format_between(f, to)))
        .unwrap_or_default();
    Some(Step {
        at: s.completion_time.as_ref().map(|t| t.0),
        text: format!(
            "change order {id}: {}{lasted} (RequestId {})",
            s.change_order_status
                .as_deref()
                .unwrap_or("status not read yet"),
            s.request_id.as_deref().unwrap_or("unknown")
        ),
    })
}

/// Where the object stands now: the outcome and what to do, or what it waits for and until when.
fn standing(
    obj: &SaeInstanceDeletion,
    now: Timestamp,
    deadline: Option<Timestamp>,
    tz: &TimeZone,
) -> Vec<Step> {
    let Some(s) = &obj.status else {
        return vec![];
    };
    let Some(phase) = s.phase else {
        return vec![];
    };
    let reason_text = s.reason().unwrap_or("(no reason)");
    let reason = reason_text.parse::<Reason>().ok();
    let message = s.message.as_deref().unwrap_or_default();
    let created = obj.metadata.creation_timestamp.as_ref().map(|t| t.0);
    let mut steps = Vec::new();
    if phase.is_terminal() {
        let end = s.completion_time.as_ref().map(|t| t.0);
        let took = match (created, end) {
            (Some(c), Some(e)) => format!(" after {}", format_between(c, e)),
            _ => String::new(),
        };
        steps.push(Step {
            at: end,
            text: format!("outcome: {phase} ({reason_text}){took}: {message}"),
        });
        if phase == Phase::Failed
            && let Some(advice) = reason.and_then(advice)
        {
            steps.push(Step {
                at: None,
                text: format!("what to do: {advice}"),
            });
        }
        return steps;
    }
    let mut text = format!("now: {phase} ({reason_text}), {} attempt(s)", s.attempts());
    if let Some(next) = &s.next_attempt_time {
        text.push_str(&format!("; next attempt at {}", clock(next.0, tz)));
    }
    if reason == Some(Reason::OutcomeUnknown) {
        text.push_str(&format!(
            "; the lost answer is looked for in SAE until {} — if it is still unknown then, the object fails \
             with OutcomeUnknown and a human must check",
            deadline.map_or("the deadline".into(), |d| clock(d, tz))
        ));
    } else if let Some(d) = deadline {
        text.push_str(&format!(
            "; deadline {} (in {})",
            clock(d, tz),
            format_between(now, d)
        ));
    }
    steps.push(Step {
        at: Some(now),
        text,
    });
    steps
}

/// `YYYY-MM-DD HH:MM:SS` in the reader's zone.
pub fn clock(t: Timestamp, tz: &TimeZone) -> String {
    t.to_zoned(tz.clone())
        .strftime("%Y-%m-%d %H:%M:%S")
        .to_string()
}

/// The steps as printed: time (in the reader's zone), time since creation, text.
pub fn render(obj: &SaeInstanceDeletion, steps: &[Step], tz: &TimeZone) -> String {
    let created = obj.metadata.creation_timestamp.as_ref().map(|t| t.0);
    let mut out = String::new();
    for step in steps {
        let (when, since) = match (step.at, created) {
            (Some(at), Some(c)) => (
                at.to_zoned(tz.clone()).strftime("%H:%M:%S").to_string(),
                format!("+{}", format_between(c, at)),
            ),
            (Some(at), None) => (
                at.to_zoned(tz.clone()).strftime("%H:%M:%S").to_string(),
                String::new(),
            ),
            _ => (String::new(), String::new()),
        };
        out.push_str(&format!("  {when:<8}  {since:<9}  {}\n", step.text));
    }
    out
}

#[cfg(test)]
mod tests;
