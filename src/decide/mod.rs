//! The pure decision function at the centre of the controller.
//!
//! [`decide`] looks at an object, the time, and one observation (a reconcile starting, or the
//! result of the SAE call it asked for) and returns the status to write, the next action and the
//! events to publish. It performs no I/O and reads no clock or random source, so every transition
//! is a table test (`decide/tests/`; the stories of whole objects run through the same loop as
//! the controller in `steps`).
//!
//! Where things live: the types and [`decide`] itself here; `start` (a reconcile starts:
//! credentials, the app's turn, the write-ahead), `retry` (DeleteInstances' answer, backoff,
//! error classes), `resolve` (lost answers and already-gone instances), `change_order`
//! (following a change order, learning the zone of its times), `step` (the status being built,
//! its conditions, events and the deadline) and `queue` (whose turn it is on an app). Nothing in
//! this module performs I/O or reads a clock; it may use `crd` and `sae`'s plain types, never the
//! controller.
//!
//! The status's phase says where a deletion stands, and the caller persists it before acting:
//! `Submitting` is written *before* DeleteInstances is sent (write-ahead), so a crash between the
//! send and the recording of its result is visible as "Submitting at the start of a reconcile" and
//! is never mistaken for "not sent yet".
//!
//! # Lost answers
//!
//! DeleteInstances has no idempotency token, so a request whose answer was lost (timeout, 5xx,
//! crash after the write-ahead) is never simply sent again. The object stays `Submitting` with
//! reason `OutcomeUnknown` and asks the caller to gather evidence ([`Action::ResolveAttempt`]):
//! the app's CoDeleteInstances change orders back past the attempt's window, and its instances
//! (which exist, which are terminating). With `t` the write-ahead time, the request left before
//! `t + SEND_BOUND` ([`SEND_BOUND`], enforced by the caller) and SAE may act on it until the
//! client's timeout has passed, so its change order was created in a window computed from those
//! bounds, the recorded time's resolution and a slack, on SAE's clock as measured from its
//! answers ([`SaeClock::offset`]; the window joins the shifted and the unshifted one, so a wrong
//! measurement only widens it). docs/guarantees.md shows the arithmetic.
//!
//! SAE's lists may lag its writes, so no look is asked for before the settle time after SAE's last
//! moment to act ([`Inputs::settle`], [`SETTLE`] by default), and a look that began earlier (one
//! shared with another object) proves nothing. Nor is a look asked for while the last one at the
//! app listed zone-less times and the zone is unknown ([`SaeClock::zoneless_times`]): it could not
//! place them either. After a look that could not conclude, the next comes later and later (up to
//! two minutes). Each listed row is placed against the window ([`resolve`]):
//!
//! - outside it, or contradicted by the instances (succeeded while one of ours still runs;
//!   running while none of ours is terminating): not ours;
//! - inside it and agreeing with the instances: a candidate; a time that cannot be read, a row
//!   without a type, a zone-less time while the zone is unknown: unclear;
//! - exactly one candidate and nothing unclear: adopted and followed like an accepted request;
//! - nothing that could be ours and the list read past the window: not executed; the attempt
//!   counts as refused and is retried after backoff. Still present instances alone prove nothing
//!   (a failed change order puts them back);
//! - none of the recorded instances exists and nothing could be ours: `AlreadyDeleted`;
//! - anything else: look again later; at the deadline `Failed`/`OutcomeUnknown`, with what a
//!   human must check. Nothing is ever sent from here.
//!
//! # Already gone
//!
//! SAE answers a DeleteInstances naming an instance the app does not have with a Terminal
//! `InvalidParameter.*` code. Only then does the controller list the app's instances
//! ([`Action::CheckGone`]): if none of the recorded ids exists, the goal is met and the object
//! succeeds with `AlreadyDeleted`. Checking only after such a rejection costs no extra call on the
//! happy path, and it is exactly where a GitOps re-apply of an already finished deletion (a new
//! object for instances an earlier one removed) ends up on its first attempt. The status is left
//! untouched until the answer is in, so a crash in between is resolved by the lost-answer path.
//!
//! # One change order per app
//!
//! SAE runs one change order per application at a time and refuses others with
//! `Application.ChangerOrderRunning`. The caller tells every start whose turn it is
//! ([`AppTurn`], computed from all objects' statuses, so it survives restarts); an object that
//! would write ahead a new attempt while another holds the app, or while an older one waits for
//! it, waits in `Pending`/`WaitingForApplication` without calling SAE. Dry runs only read and
//! ignore the queue.

use std::collections::BTreeSet;
use std::time::Duration;

mod change_order;
mod queue;
mod resolve;
mod retry;
mod start;
mod step;

pub use resolve::{list_covers, listed_past};
pub use retry::{backoff_delay, terminal_reason};
pub use start::asks_policies;
use step::Step;

pub use queue::{
    app_turn, holds_app, needs_credentials, object_key, queue_order, shares_app, waits_for_app,
    waits_in_line,
};

use backon::{BackoffBuilder, ExponentialBuilder};
use jiff::{SignedDuration, Timestamp};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

use crate::crd::{
    CONDITION_READY, CONDITION_RECONCILING, CONDITION_STALLED, EVENT_SPEC_CHANGE_IGNORED, Phase,
    Pinned, Reason, RetryPolicy, SaeInstanceDeletion, SaeInstanceDeletionStatus,
};
use crate::sae::ChangeOrderStatus;
use crate::sae::codes::{self, AdviceContext};
use crate::sae::error::{ErrorClass, SaeError};
use crate::sae::time::{CreateTimeZone, SaeTime, parse_sae_time};

pub use crate::sae::client::{ChangeOrderDetail, DeleteAccepted};

/// What a decision reads besides the object and the observation, drawn by the caller: the time,
/// a random number for jitter, and a setting of the client. (Not a clock: [`decide`] reads none.)
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Inputs {
    pub now: Timestamp,
    /// Uniform in [0, 1), drawn by the caller, for jitter.
    pub jitter: f64,
    /// How long after a DeleteInstances send SAE may still act on it: the SAE client's total
    /// timeout plus a margin. After that, an attempt without a change order was not executed.
    pub resolve_after: SignedDuration,
    /// How long SAE's lists may lag its writes ([`SETTLE`] unless the operator says otherwise).
    pub settle: SignedDuration,
    /// What the caller knows of SAE's clock in the object's region.
    pub sae: SaeClock,
}

/// What is known of SAE's clock in one region, from SAE's own answers.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SaeClock {
    /// SAE's clock minus ours, measured from the `Date` of its answers (zero until measured).
    /// Change-order times are SAE's clock: the window of a lost answer and the zone learned from a
    /// change order are corrected by it, so only [`CREATE_TIME_SLACK`] of error is left to allow.
    pub offset: SignedDuration,
    /// The zone SAE writes change-order times in, as far as known.
    pub zone: CreateTimeZone,
    /// The last look at the object's app listed change orders whose times carry no zone, while
    /// the zone was unknown: such rows are unclear, so another look cannot conclude either and
    /// none is made (a look that cannot conclude is not worth a token) until the zone is learned.
    pub zoneless_times: bool,
}

/// Whether this object may start a DeleteInstances attempt on its app now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AppTurn {
    /// No other object of this controller is using the app, and none is ahead in line.
    Free,
    /// Another object has an attempt in flight or a running change order on the same app.
    Busy {
        /// "namespace/name" of that object.
        holder: String,
    },
    /// Older objects on the same app wait first (FIFO by creation time).
    Queued {
        /// "namespace/name" of the object ahead.
        ahead: String,
    },
}

/// What the deletion policies (`SaeDeletionPolicy`, [`crate::policy`]) say about this object
/// sending now, as the caller found them. Dry runs never delete and are not checked.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum PolicyCheck {
    /// No policy stands in the way (or none exists and none is required).
    #[default]
    Admitted,
    /// Refused: the object waits in `Pending` with the refusal's reason, sends nothing, and ends
    /// `Failed` with the same reason at its deadline. A refusal is never an attempt.
    Refused(crate::policy::Refusal),
}

/// What SAE shows about an attempt whose answer was lost.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Evidence {
    /// The app's change orders that may be deletions (`CoDeleteInstances`, and rows that name no
    /// type), newest first, back to the `since` of [`Action::ResolveAttempt`], minus those that
    /// other SaeInstanceDeletion objects (live, finished or recently deleted) recorded as theirs.
    pub change_orders: Vec<FoundChangeOrder>,
    /// Whether the list reaches back to `since` (false: the pages ran out before it, see
    /// [`listed_past`]); an incomplete list proves nothing absent.
    pub complete: bool,
    /// Every instance id the app has now (all groups).
    pub existing_instance_ids: Vec<String>,
    /// Those of them SAE reports as being terminated.
    pub terminating_instance_ids: Vec<String>,
    /// What is known of the zone SAE writes change-order times in, for this region.
    pub zone: CreateTimeZone,
    /// The zone this look itself showed (`Named`, when its times name their zone), else Unknown.
    /// Only this is recorded in the status: a zone merely known from elsewhere (another object, the
    /// operator's flag) is not this object's to teach.
    pub zone_learned: CreateTimeZone,
    /// When the look began (our clock). Only a look that began the settle time
    /// ([`Inputs::settle`]) after SAE's last moment to act on the attempt can prove anything:
    /// SAE's lists may lag its writes.
    pub looked_at: Timestamp,
    /// How far back (SAE's clock) the list was to be read: `complete` is about this.
    pub since: Timestamp,
}

/// One row of ListChangeOrders.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FoundChangeOrder {
    pub change_order_id: String,
    /// SAE's CreateTime as read; None when it could not be read (then it could be any time).
    pub created: Option<SaeTime>,
    /// SAE's FinishTime, when the row has one that could be read.
    pub finished: Option<SaeTime>,
    pub status: i64,
    /// False when the row named no `CoTypeCode`: never adopted, since it may be something else,
    /// and never ignored, since it may be ours.
    pub typed: bool,
}

/// What happened since the last decision.
#[derive(Clone, Debug, PartialEq)]
pub enum Observation {
    /// A reconcile starts; no SAE call has been made in it yet. Err = why no usable credentials
    /// (message names the Secret/keys, never values).
    Start {
        credentials: Result<(), String>,
        app: AppTurn,
        /// The policies' word. Before the send's quota token it is a check without SAE calls;
        /// right before the write-ahead, the full one (with the app's instance list when a policy
        /// sets minRunningInstances).
        policy: PolicyCheck,
    },
    DeleteResult(Result<DeleteAccepted, SaeError>),
    ChangeOrderResult(Result<ChangeOrderDetail, SaeError>),
    /// The DeleteInstances of [`Action::SendDelete`] was not sent after all: it could not leave
    /// within [`SEND_BOUND`] of its write-ahead, the lease could not be confirmed, or the object was
    /// deleted meanwhile. `why` says which.
    NotSent {
        why: String,
    },
    /// Dry run: the instance ids that exist in the app (all groups).
    DryRunResult(Result<Vec<String>, SaeError>),
    /// Answer to [`Action::ResolveAttempt`].
    ResolveResult(Result<Evidence, SaeError>),
    /// Answer to [`Action::CheckGone`]: the rejection it carried, and the app's instance ids.
    GoneCheck {
        rejection: SaeError,
        existing: Result<Vec<String>, SaeError>,
    },
}

/// What the caller does next.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// Send DeleteInstances with exactly these ids. The caller MUST hold a quota token before it
    /// decides this (so no wait lies between the write-ahead and the send), persist
    /// `Decision.status` with a resourceVersion precondition (write-ahead), and send only if that
    /// write succeeded and the request can leave before `status.lastAttemptTime + SEND_BOUND`;
    /// otherwise it answers [`Observation::NotSent`].
    SendDelete {
        instance_ids: Vec<String>,
    },
    PollChangeOrder {
        change_order_id: String,
    },
    /// SAE just accepted the attempt: poll its change order at `at`, in the same reconcile.
    /// `Decision.status` (which now records the change order id) may be held back and written
    /// together with what that poll brings, so a change order that is already done by then costs
    /// one status write instead of two. If no quota token comes by `write_by`, the caller writes
    /// the status first and polls later. A crash while it is held leaves the attempt `Submitting`
    /// in the API server, and the lost-answer path adopts the change order from SAE's list.
    FirstPoll {
        change_order_id: String,
        at: Timestamp,
        write_by: Timestamp,
    },
    /// Dry run: list the app's instances.
    CheckInstances,
    /// The answer to the recorded attempt was lost: list the app's CoDeleteInstances change
    /// orders (newest first, page by page back to `since`; drop those other objects recorded as
    /// theirs) and all of its instance ids, and answer with [`Observation::ResolveResult`]. Never
    /// send anything.
    ResolveAttempt {
        instance_ids: Vec<String>,
        /// List back at least to here: the earliest instant the attempt's change order can carry.
        since: Timestamp,
    },
    /// SAE rejected DeleteInstances as invalid: list the app's instance ids (all groups) and
    /// answer with [`Observation::GoneCheck`], passing `rejection` back. The status is unchanged,
    /// so nothing needs writing first.
    CheckGone {
        rejection: SaeError,
    },
    /// Nothing to do until then (capped at the deadline).
    WaitUntil(Timestamp),
    /// Terminal: never touch the object again.
    Done,
}

/// A Kubernetes event to publish about the object.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Event {
    pub warning: bool,
    pub reason: String,
    pub note: String,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Decision {
    pub status: SaeInstanceDeletionStatus,
    pub action: Action,
    pub events: Vec<Event>,
}

/// SAE needs a moment to register a new change order; polling sooner only costs quota (60 calls
/// per minute per account, shared by every SAE API).
const FIRST_POLL_AFTER: SignedDuration = SignedDuration::from_secs(1);
/// How long past the first poll's time a new change order's id may stay unwritten while the poll
/// waits for quota: users look for the id in `kubectl get`.
const FIRST_POLL_HOLD: SignedDuration = SignedDuration::from_secs(3);
const MAX_POLL_INTERVAL: SignedDuration = SignedDuration::from_secs(30);
/// The longest a DeleteInstances may take to leave this process after the moment its write-ahead
/// records (`lastAttemptTime`). The caller checks it right before the bytes leave and sends
/// nothing past it; the search window for a lost answer is built on it (docs/guarantees.md).
pub const SEND_BOUND: SignedDuration = SignedDuration::from_secs(5);
/// `lastAttemptTime` is stored to the second, rounded down: the decision was made up to this
/// much later than it says.
const RECORDED_TIME_RESOLUTION: SignedDuration = SignedDuration::from_secs(1);
/// A first poll later than this after the send teaches nothing about the zone: the change order
/// could have been created anywhere in too long a span.
const LEARN_ZONE_WITHIN: SignedDuration = SignedDuration::from_mins(5);
const MIN_CREDENTIALS_RECHECK: SignedDuration = SignedDuration::from_secs(2);
const MAX_CREDENTIALS_RECHECK: SignedDuration = SignedDuration::from_secs(60);
/// A change order's CreateTime has one-second resolution and comes from SAE's clock, the attempt
/// time from ours; this much either side still counts as "created by that attempt". It covers what
/// the measured clock offset ([`SaeClock::offset`]) cannot see: the measurement's own error, and
/// the clocks of two replicas when one wrote the attempt and the other looks.
const CREATE_TIME_SLACK: SignedDuration = SignedDuration::from_secs(10);
/// How long SAE's lists (ListChangeOrders, the instance listing, DescribeChangeOrder) may lag its
/// writes. SAE documents no read-after-write consistency; a change order that does not show yet
/// would look like "not executed", and a neighbour's that does would look like "exactly one
/// candidate". So a lost answer is concluded only from a look that began this long after the last
/// moment SAE can have acted on the attempt (docs/guarantees.md, "settle time"). The default of
/// `--sae-read-settle-seconds`, handed to decisions as [`Inputs::settle`].
pub const SETTLE: SignedDuration = SignedDuration::from_secs(10);
/// Looking for a lost attempt's traces costs several calls (change orders, groups, instances):
/// after a look that could not conclude, the next waits longer, up to the maximum.
const MIN_RESOLVE_INTERVAL: SignedDuration = SignedDuration::from_secs(5);
const MAX_RESOLVE_INTERVAL: SignedDuration = SignedDuration::from_secs(120);
/// While no look can conclude because the zone of SAE's times is unknown: how often to see
/// whether another object taught it (a look at the cache, no SAE call).
const ZONE_RECHECK: SignedDuration = SignedDuration::from_secs(10);
/// How much further back than the window's start a look reads SAE's list: the window is on SAE's
/// clock as measured when the look is asked for, and the measurement may move a little before the
/// look is judged (a look that does not reach the window as then measured proves nothing).
const LIST_MARGIN: SignedDuration = SignedDuration::from_secs(60);
/// After a look shared with another object that began too early to prove anything for this one:
/// how soon to look again (a fresh look, since shared ones are shared only briefly).
const EARLY_LOOK_RETRY: SignedDuration = SignedDuration::from_secs(1);
/// How often an object refused by a policy without a known reopening time looks again (a look at
/// the cache; policy and namespace changes wake it sooner): a quarter of its age, within these
/// bounds. A minRunningInstances check spends an SAE listing each time, so an object refused for
/// long must not spend one every 30 s.
const MIN_POLICY_RECHECK: SignedDuration = SignedDuration::from_secs(30);
const MAX_POLICY_RECHECK: SignedDuration = SignedDuration::from_mins(5);
/// Waiting for the app costs no SAE call, only a look at other objects' statuses.
const APP_RECHECK: SignedDuration = SignedDuration::from_secs(5);

/// Decides the next step for `obj` given `observation`. See the module docs for the contract.
pub fn decide(obj: &SaeInstanceDeletion, inputs: &Inputs, observation: Observation) -> Decision {
    let current = obj.status.clone().unwrap_or_default();
    if current.is_terminal() {
        return Decision {
            status: current,
            action: Action::Done,
            events: vec![],
        };
    }
    let mut step = Step::new(obj, inputs, current);
    step.notice_ignored_spec_change();
    let action = match observation {
        Observation::Start {
            credentials,
            app,
            policy,
        } => step.start(credentials, app, policy),
        Observation::DeleteResult(result) => step.after_delete(result),
        Observation::ChangeOrderResult(result) => step.after_poll(result),
        Observation::NotSent { why } => step.not_sent(why),
        Observation::DryRunResult(result) => step.after_check(result),
        Observation::ResolveResult(result) => step.after_resolve(result),
        Observation::GoneCheck {
            rejection,
            existing,
        } => step.after_gone_check(rejection, existing),
    };
    step.finish(action)
}

/// Records are stored to the second because that is all a Kubernetes `Time` keeps on the wire;
/// storing more would make the in-memory status differ from what the API server returns.
fn floor_second(t: Timestamp) -> Timestamp {
    Timestamp::from_second(t.as_second()).unwrap_or(t)
}

/// "Not before" times are rounded up so that waking at the stored time never acts early.
fn ceil_second(t: Timestamp) -> Timestamp {
    let floor = floor_second(t);
    if floor == t {
        t
    } else {
        add(floor, SignedDuration::from_secs(1))
    }
}

fn add(t: Timestamp, d: SignedDuration) -> Timestamp {
    t.checked_add(d).unwrap_or(Timestamp::MAX)
}

fn signed(d: Duration) -> SignedDuration {
    SignedDuration::try_from(d).unwrap_or(SignedDuration::MAX)
}

fn clamp(d: SignedDuration, lo: SignedDuration, hi: SignedDuration) -> SignedDuration {
    d.max(lo).min(hi)
}

fn time(t: Timestamp) -> Time {
    Time(floor_second(t))
}

fn join(ids: &[String]) -> String {
    ids.join(", ")
}

/// An SAE error for a message that is written repeatedly: code and SAE's text without the
/// per-request RequestId, so that the same failure gives the same message (and no status write).
fn stable_error_text(err: &SaeError) -> String {
    match err {
        SaeError::Api {
            code,
            message,
            http_status,
            ..
        } => format!("{code} (HTTP {http_status}): {message}"),
        other => other.to_string(),
    }
}

#[cfg(test)]
pub(crate) mod tests;
