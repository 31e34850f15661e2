//! The pure decision function at the centre of the controller.
//!
//! [`decide`] looks at an object, the time, and one observation (a reconcile starting, or the
//! result of the SAE call it asked for) and returns the status to write, the next action and the
//! events to publish. It performs no I/O and reads no clock or random source, so every transition
//! is a table test (see the tests at the bottom).
//!
//! The status's phase says where a deletion stands, and the caller persists it before acting:
//! `Submitting` is written *before* DeleteInstances is sent (write-ahead), so a crash between the
//! send and the recording of its result is visible as "Submitting at the start of a reconcile" and
//! is never mistaken for "not sent yet".

use std::collections::BTreeSet;
use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBuilder};
use jiff::{SignedDuration, Timestamp};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

use crate::crd::{
    CONDITION_READY, CONDITION_RECONCILING, CONDITION_STALLED, EVENT_SPEC_CHANGE_IGNORED, Phase,
    Reason, RetryPolicy, SaeInstanceDeletion, SaeInstanceDeletionStatus, change_order_status_name,
};
use crate::sae::error::{ErrorClass, SaeError};

pub use crate::sae::client::{ChangeOrder, DeleteAccepted};

/// The outside world's inputs that are not part of the object, drawn by the caller.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Clock {
    pub now: Timestamp,
    /// Uniform in [0, 1), drawn by the caller, for jitter.
    pub jitter: f64,
}

/// What happened since the last decision.
#[derive(Clone, Debug, PartialEq)]
pub enum Observation {
    /// A reconcile starts; no SAE call has been made in it yet. Err = why no usable credentials
    /// (message names the Secret/keys, never values).
    Start {
        credentials: Result<(), String>,
    },
    DeleteResult(Result<DeleteAccepted, SaeError>),
    ChangeOrderResult(Result<ChangeOrder, SaeError>),
    /// Dry run: the instance ids that exist in the app (all groups).
    DryRunResult(Result<Vec<String>, SaeError>),
}

/// What the caller does next.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// Send DeleteInstances with exactly these ids. The caller MUST first persist `Decision.status`
    /// with a resourceVersion precondition (write-ahead) and send only if that write succeeded.
    SendDelete {
        instance_ids: Vec<String>,
    },
    PollChangeOrder {
        change_order_id: String,
    },
    /// Dry run: list the app's instances.
    CheckInstances,
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
const MAX_POLL_INTERVAL: SignedDuration = SignedDuration::from_secs(30);
const MIN_CREDENTIALS_RECHECK: SignedDuration = SignedDuration::from_secs(2);
const MAX_CREDENTIALS_RECHECK: SignedDuration = SignedDuration::from_secs(60);

/// Decides the next step for `obj` given `observation`. See the module docs for the contract.
pub fn decide(obj: &SaeInstanceDeletion, clock: &Clock, observation: Observation) -> Decision {
    let current = obj.status.clone().unwrap_or_default();
    if current.is_terminal() {
        return Decision {
            status: current,
            action: Action::Done,
            events: vec![],
        };
    }
    let mut step = Step::new(obj, clock, current);
    step.notice_ignored_spec_change();
    let action = match observation {
        Observation::Start { credentials } => step.start(credentials),
        Observation::DeleteResult(result) => step.after_delete(result),
        Observation::ChangeOrderResult(result) => step.after_poll(result),
        Observation::DryRunResult(result) => step.after_check(result),
    };
    step.finish(action)
}

/// The delay before the attempt following attempt number `attempts` (1-based):
/// `initialDelay * 2^(attempts-1)` capped at `maxDelay`, then "equal jitter" (between half and
/// all of it, placed by `jitter`), and never shorter than a `retry_after` SAE asked for.
///
/// The exponential part comes from backon: the `backoff` crate is unmaintained
/// (RUSTSEC-2025-0012) and kube-rs itself moved to backon. backon's own jitter is left off
/// because it draws from a random source; here the caller supplies the randomness so the result
/// is reproducible in tests.
pub fn backoff_delay(
    policy: &RetryPolicy,
    attempts: i32,
    jitter: f64,
    retry_after: Option<Duration>,
) -> Duration {
    let initial = Duration::from_secs(policy.initial_delay_seconds.max(1) as u64);
    let max = Duration::from_secs(policy.max_delay_seconds.max(1) as u64);
    let index = attempts.max(1) as usize - 1;
    let full = ExponentialBuilder::default()
        .with_min_delay(initial)
        .with_max_delay(max)
        .with_factor(2.0)
        .without_max_times()
        .build()
        .nth(index)
        .unwrap_or(max)
        // backon hands out the first delay unchecked, even when it exceeds the cap.
        .min(max);
    let jittered = full.mul_f64(0.5 + 0.5 * jitter.clamp(0.0, 1.0));
    retry_after.map_or(jittered, |asked| asked.max(jittered))
}

/// The reason a Terminal SAE error code maps to.
pub fn terminal_reason(code: Option<&str>) -> Reason {
    let Some(code) = code else {
        return Reason::Rejected;
    };
    let family = |prefix: &str| code == prefix || code.starts_with(&format!("{prefix}."));
    if code == "InvalidApplication.NotFound" || code == "InvalidAppId.NotFound" {
        Reason::ApplicationNotFound
    } else if family("InvalidParameter") {
        Reason::InvalidParameter
    } else if family("NoComputeResourceQuota") {
        Reason::QuotaExceeded
    } else if code == "SignatureDoesNotMatch"
        || code == "SignatureNonceUsed"
        || family("InvalidAccessKeyId")
        || family("InvalidTimeStamp")
    {
        Reason::AuthenticationFailed
    } else {
        Reason::Rejected
    }
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

/// One decision in the making.
struct Step<'a> {
    obj: &'a SaeInstanceDeletion,
    now: Timestamp,
    jitter: f64,
    created: Timestamp,
    deadline: Timestamp,
    previous: SaeInstanceDeletionStatus,
    next: SaeInstanceDeletionStatus,
    /// The reason for `next.phase`; None keeps the previous one.
    reason: Option<Reason>,
    events: Vec<Event>,
}

impl<'a> Step<'a> {
    fn new(
        obj: &'a SaeInstanceDeletion,
        clock: &Clock,
        current: SaeInstanceDeletionStatus,
    ) -> Self {
        let created = obj
            .metadata
            .creation_timestamp
            .as_ref()
            .or(current.start_time.as_ref())
            .map_or(clock.now, |t| t.0);
        let deadline = add(
            created,
            SignedDuration::from_secs(obj.spec.active_deadline_seconds.into()),
        );
        Self {
            obj,
            now: clock.now,
            jitter: clock.jitter,
            created,
            deadline,
            next: current.clone(),
            previous: current,
            reason: None,
            events: vec![],
        }
    }

    fn set(&mut self, phase: Phase, reason: Reason, message: String) {
        self.next.phase = Some(phase);
        self.next.message = Some(message);
        self.reason = Some(reason);
    }

    fn app(&self) -> &str {
        &self.obj.spec.app_id
    }

    fn namespace(&self) -> &str {
        self.obj.metadata.namespace.as_deref().unwrap_or("default")
    }

    /// The ids every attempt sends: those recorded by the first attempt, else the spec's.
    fn instance_ids(&self) -> Vec<String> {
        self.next
            .instance_ids
            .clone()
            .unwrap_or_else(|| self.obj.spec.instance_ids.clone())
    }

    fn past_deadline(&self) -> bool {
        self.now >= self.deadline
    }

    /// Where the credentials come from, for messages that tell a human what to fix.
    fn credentials_source(&self) -> String {
        match &self.obj.spec.credentials_ref {
            Some(r) => format!("Secret {}/{}", self.namespace(), r.name),
            None => "the controller's own credentials (ALIBABA_CLOUD_ACCESS_KEY_ID / ALIBABA_CLOUD_ACCESS_KEY_SECRET)"
                .to_string(),
        }
    }

    // ---- Observation::Start -------------------------------------------------------------------

    fn start(&mut self, credentials: Result<(), String>) -> Action {
        if self.past_deadline() {
            return self.fail_deadline();
        }
        match self.previous.phase {
            None | Some(Phase::Pending) | Some(Phase::Retrying) => {
                self.start_before_send(credentials)
            }
            Some(Phase::Submitting) => self.send_outcome_lost(),
            Some(Phase::InProgress) => self.start_in_progress(credentials),
            Some(Phase::Succeeded) | Some(Phase::Failed) => Action::Done,
        }
    }

    fn start_before_send(&mut self, credentials: Result<(), String>) -> Action {
        // Honour a scheduled backoff even across controller restarts: it lives in the status.
        if let Some(not_before) = self.previous.next_attempt_time.as_ref().map(|t| t.0)
            && self.now < not_before
        {
            return Action::WaitUntil(not_before);
        }
        if let Err(why) = credentials {
            let message = format!("cannot call SAE: {why}");
            self.set(Phase::Pending, Reason::CredentialsNotFound, message);
            // Nothing notifies us when a Secret appears; look again, less often as time passes.
            let age = self.now.duration_since(self.created);
            let recheck = clamp(age / 2, MIN_CREDENTIALS_RECHECK, MAX_CREDENTIALS_RECHECK);
            return Action::WaitUntil(add(self.now, recheck));
        }
        if self.next.attempts() >= self.obj.spec.retry.max_attempts.max(1) {
            return self.retries_exhausted(None);
        }
        if self.obj.spec.dry_run {
            if self.previous.phase.is_none() {
                let message = format!(
                    "dry run: checking that app {} has the {} listed instances",
                    self.app(),
                    self.obj.spec.instance_ids.len()
                );
                self.set(Phase::Pending, Reason::Pending, message);
            }
            return Action::CheckInstances;
        }
        self.submit()
    }

    /// The write-ahead record of an attempt; the caller sends only once it is persisted.
    fn submit(&mut self) -> Action {
        let instance_ids = self.instance_ids();
        let attempt = self.next.attempts() + 1;
        self.next.instance_ids = Some(instance_ids.clone());
        self.next.attempts = Some(attempt);
        self.next.last_attempt_time = Some(time(self.now));
        if self.next.start_time.is_none() {
            self.next.start_time = Some(time(self.now));
        }
        self.next.next_attempt_time = None;
        let message = format!(
            "sending DeleteInstances (attempt {attempt} of {}) for instances {} of app {}",
            self.obj.spec.retry.max_attempts,
            join(&instance_ids),
            self.app()
        );
        self.set(Phase::Submitting, Reason::Submitting, message);
        Action::SendDelete { instance_ids }
    }

    /// A reconcile found `Submitting`: a DeleteInstances request may have been sent, but its
    /// result was never recorded (crash, lost status write). Sending again could delete twice.
    fn send_outcome_lost(&mut self) -> Action {
        let since = self
            .next
            .last_attempt_time
            .as_ref()
            .map_or_else(|| "its last attempt".to_string(), |t| t.0.to_string());
        let why = format!(
            "DeleteInstances attempt {} for app {} may have been sent, but its result was never recorded \
             (controller restart or lost status write)",
            self.next.attempts(),
            self.app()
        );
        self.outcome_unknown(why, &since)
    }

    /// The one place an unknown DeleteInstances outcome ends up. Today it fails the object with
    /// instructions for a human; resolving it automatically (looking for the change order in SAE)
    /// will return a "resolve" action from here instead.
    fn outcome_unknown(&mut self, why: String, since: &str) -> Action {
        let message = format!(
            "{why}. It may or may not have been executed, so it is not sent again. Check in the SAE console \
             (or with ListChangeOrders for app {} since {since}) for a change order deleting instances, and \
             whether instances {} still exist, before creating a new SaeInstanceDeletion.",
            self.app(),
            join(&self.instance_ids()),
        );
        self.set(Phase::Failed, Reason::OutcomeUnknown, message);
        Action::Done
    }

    fn start_in_progress(&mut self, credentials: Result<(), String>) -> Action {
        let Some(change_order_id) = self.next.change_order_id.clone() else {
            // InProgress is only written together with a change order id; without one there is
            // nothing to follow, and the deletion may well have happened.
            let since = self.since_last_attempt();
            return self.outcome_unknown(
                "the status says InProgress but records no change order".into(),
                &since,
            );
        };
        if let Err(why) = credentials {
            self.next.message = Some(format!(
                "cannot check change order {change_order_id}: {why}"
            ));
            return Action::WaitUntil(add(self.now, self.poll_interval()));
        }
        let first_poll = self
            .next
            .last_attempt_time
            .as_ref()
            .map_or(self.now, |t| add(t.0, FIRST_POLL_AFTER));
        if self.now < first_poll {
            return Action::WaitUntil(first_poll);
        }
        Action::PollChangeOrder { change_order_id }
    }

    fn since_last_attempt(&self) -> String {
        self.next
            .last_attempt_time
            .as_ref()
            .map_or_else(|| "the object's creation".to_string(), |t| t.0.to_string())
    }

    /// Polls slow down as the change order ages: a deletion usually finishes in seconds, and a
    /// stuck one should not eat the account's API quota.
    fn poll_interval(&self) -> SignedDuration {
        let sent = self
            .next
            .last_attempt_time
            .as_ref()
            .map_or(self.now, |t| t.0);
        clamp(
            self.now.duration_since(sent) / 2,
            FIRST_POLL_AFTER,
            MAX_POLL_INTERVAL,
        )
    }

    // ---- Observation::DeleteResult ------------------------------------------------------------

    fn after_delete(&mut self, result: Result<DeleteAccepted, SaeError>) -> Action {
        let accepted = match result {
            Ok(accepted) => accepted,
            Err(err) => return self.after_sae_error(err),
        };
        let id = accepted.change_order_id.clone();
        // Recorded at once: from here on the deletion is SAE's, whatever happens to us.
        self.next.change_order_id = Some(id.clone());
        self.next.request_id = accepted.request_id.clone().or(self.next.request_id.take());
        self.next.trace_id = accepted.trace_id.clone().or(self.next.trace_id.take());
        self.next.error_code = None;
        self.next.next_attempt_time = None;
        let count = self.instance_ids().len();
        if self.obj.spec.wait_for_completion {
            let message = format!(
                "SAE accepted DeleteInstances for {count} instances of app {}; waiting for change order {id}",
                self.app()
            );
            self.set(Phase::InProgress, Reason::WaitingForChangeOrder, message);
            Action::WaitUntil(add(self.now, FIRST_POLL_AFTER))
        } else {
            let message = format!(
                "SAE accepted DeleteInstances for {count} instances of app {} as change order {id}; \
                 not following it (waitForCompletion is false): see the SAE console for its result",
                self.app()
            );
            self.set(Phase::Succeeded, Reason::Succeeded, message);
            Action::Done
        }
    }

    /// A failed DeleteInstances request or dry-run check, by what SAE can have done with it.
    fn after_sae_error(&mut self, err: SaeError) -> Action {
        if let Some(request_id) = err.request_id() {
            self.next.request_id = Some(request_id.to_string());
        }
        self.next.error_code = err.code().map(str::to_string);
        match err.class() {
            ErrorClass::Retryable => self.retry_later(&err),
            // Listing instances changes nothing in SAE, so an unanswered check is simply repeated.
            ErrorClass::Ambiguous if self.obj.spec.dry_run => self.retry_later(&err),
            ErrorClass::Ambiguous => {
                let why = format!(
                    "DeleteInstances attempt {} got no usable answer ({err})",
                    self.next.attempts()
                );
                let since = self.since_last_attempt();
                self.outcome_unknown(why, &since)
            }
            ErrorClass::Terminal => self.refused(&err),
        }
    }

    fn retry_later(&mut self, err: &SaeError) -> Action {
        let attempts = self.next.attempts();
        let max = self.obj.spec.retry.max_attempts.max(1);
        if attempts >= max {
            return self.retries_exhausted(Some(err));
        }
        let delay = backoff_delay(
            &self.obj.spec.retry,
            attempts,
            self.jitter,
            err.retry_after(),
        );
        let not_before = ceil_second(add(self.now, signed(delay)));
        self.next.next_attempt_time = Some(Time(not_before));
        let what = if self.obj.spec.dry_run {
            "the dry-run check"
        } else {
            "DeleteInstances"
        };
        let executed = if self.obj.spec.dry_run {
            ""
        } else {
            " without executing it"
        };
        let message = format!(
            "SAE refused {what}{executed} (attempt {attempts} of {max}): {err}; trying again at {not_before}"
        );
        self.set(Phase::Retrying, Reason::Retrying, message);
        Action::WaitUntil(not_before)
    }

    fn retries_exhausted(&mut self, last: Option<&SaeError>) -> Action {
        let attempts = self.next.attempts();
        let last = last.map_or_else(
            || {
                self.next
                    .error_code
                    .clone()
                    .map(|c| format!(" (last error {c})"))
                    .unwrap_or_default()
            },
            |e| format!(" (last: {e})"),
        );
        let message = if self.obj.spec.dry_run {
            format!(
                "the dry-run check of app {} failed {attempts} times{last}",
                self.app()
            )
        } else {
            format!(
                "SAE refused all {attempts} DeleteInstances attempts without executing any{last}; no instance was \
                 deleted. Create a new SaeInstanceDeletion (with a larger retry.maxAttempts) once app {} accepts changes",
                self.app()
            )
        };
        self.set(Phase::Failed, Reason::RetriesExhausted, message);
        Action::Done
    }

    fn refused(&mut self, err: &SaeError) -> Action {
        let reason = terminal_reason(err.code());
        let spec = &self.obj.spec;
        let advice = match reason {
            Reason::ApplicationNotFound => format!(
                "SAE has no application {} in region {}: check spec.appId and spec.regionId and create a new object",
                spec.app_id, spec.region_id
            ),
            Reason::InvalidParameter => format!(
                "SAE rejected the request as invalid: check that instances {} belong to app {}",
                join(&self.instance_ids()),
                spec.app_id
            ),
            Reason::QuotaExceeded => {
                "SAE refused the change for lack of compute resource quota".to_string()
            }
            Reason::AuthenticationFailed
                if err
                    .code()
                    .is_some_and(|c| c.starts_with("InvalidTimeStamp")) =>
            {
                "SAE rejected the request's timestamp: check the clock of the controller's host"
                    .to_string()
            }
            Reason::AuthenticationFailed => {
                format!(
                    "SAE rejected the credentials: check the AccessKey in {}",
                    self.credentials_source()
                )
            }
            _ => "SAE refused the request and will not accept it as it is".to_string(),
        };
        let message = format!("{advice} ({err})");
        self.set(Phase::Failed, reason, message);
        Action::Done
    }

    // ---- Observation::ChangeOrderResult -------------------------------------------------------

    fn after_poll(&mut self, result: Result<ChangeOrder, SaeError>) -> Action {
        let id = self.next.change_order_id.clone().unwrap_or_default();
        let order = match result {
            Ok(order) => order,
            Err(err) => {
                // Whatever the class: reading a change order changes nothing, so keep following it
                // until the deadline. The message omits the RequestId so repeats cause no write.
                self.next.message = Some(format!(
                    "cannot read change order {id} (retrying): {}",
                    stable_error_text(&err)
                ));
                return Action::WaitUntil(add(self.now, self.poll_interval()));
            }
        };
        let id = if id.is_empty() {
            order.change_order_id.clone()
        } else {
            id
        };
        self.next.change_order_status = Some(change_order_status_name(order.status));
        let instances = join(&self.instance_ids());
        match order.status {
            2 => {
                self.next.request_id = order.request_id.clone().or(self.next.request_id.take());
                let message = format!(
                    "change order {id} finished: instances {instances} of app {} deleted",
                    self.app()
                );
                self.set(Phase::Succeeded, Reason::Succeeded, message);
                Action::Done
            }
            3 | 6 | 10 => {
                self.next.request_id = order.request_id.clone().or(self.next.request_id.take());
                let sae_says = order
                    .error_message
                    .as_deref()
                    .filter(|m| !m.is_empty())
                    .unwrap_or("no error message");
                let message = format!(
                    "change order {id} ended {}: {sae_says}. Some instances may have been deleted: check change \
                     order {id} in the SAE console",
                    change_order_status_name(order.status)
                );
                self.set(Phase::Failed, Reason::ChangeOrderFailed, message);
                Action::Done
            }
            status => {
                let state = match (status, order.sub_status) {
                    (1, Some(1)) => {
                        "is executing with an exception: it may need a manual rollback in the SAE console".to_string()
                    }
                    (8, _) => "is waiting for a manual batch release in the SAE console".to_string(),
                    (11, _) => "is waiting for approval in the SAE console".to_string(),
                    _ => format!("is {}", change_order_status_name(status)),
                };
                let message = format!("change order {id} deleting instances {instances} {state}");
                self.set(Phase::InProgress, Reason::WaitingForChangeOrder, message);
                Action::WaitUntil(add(self.now, self.poll_interval()))
            }
        }
    }

    // ---- Observation::DryRunResult ------------------------------------------------------------

    fn after_check(&mut self, result: Result<Vec<String>, SaeError>) -> Action {
        self.next.attempts = Some(self.next.attempts() + 1);
        self.next.last_attempt_time = Some(time(self.now));
        if self.next.start_time.is_none() {
            self.next.start_time = Some(time(self.now));
        }
        self.next.next_attempt_time = None;
        let existing = match result {
            Ok(ids) => ids.into_iter().collect::<BTreeSet<_>>(),
            Err(err) => return self.after_sae_error(err),
        };
        self.next.error_code = None;
        let wanted = &self.obj.spec.instance_ids;
        let missing: Vec<String> = wanted
            .iter()
            .filter(|id| !existing.contains(*id))
            .cloned()
            .collect();
        if missing.is_empty() {
            let message = format!(
                "dry run: would delete {} instances of app {}: {} (nothing was deleted)",
                wanted.len(),
                self.app(),
                join(wanted)
            );
            self.set(Phase::Succeeded, Reason::DryRunSucceeded, message);
        } else {
            let message = format!(
                "dry run: app {} has no instances {} ({} of {} listed are missing); fix spec.instanceIds in a new object",
                self.app(),
                join(&missing),
                missing.len(),
                wanted.len()
            );
            self.set(Phase::Failed, Reason::InvalidParameter, message);
        }
        Action::Done
    }

    // ---- Deadline, spec edits, bookkeeping ----------------------------------------------------

    fn fail_deadline(&mut self) -> Action {
        let status = &self.next;
        if status.phase == Some(Phase::Submitting) {
            return self.send_outcome_lost();
        }
        let what = match status.phase {
            Some(Phase::InProgress) => {
                let id = status.change_order_id.as_deref().unwrap_or("?");
                let last = status
                    .change_order_status
                    .as_deref()
                    .unwrap_or("not read yet");
                format!(
                    "change order {id} was not finished (last status {last}); it may still finish: check change \
                     order {id} in the SAE console"
                )
            }
            Some(Phase::Retrying) if self.obj.spec.dry_run => {
                format!(
                    "the dry-run check was still failing after {} tries",
                    status.attempts()
                )
            }
            Some(Phase::Retrying) => format!(
                "SAE was still refusing DeleteInstances ({} attempts, last error {}); none was executed",
                status.attempts(),
                status.error_code.as_deref().unwrap_or("unknown")
            ),
            _ if self.obj.spec.dry_run => "the dry-run check had not completed".to_string(),
            _ => {
                let pending = match status.message.as_deref() {
                    Some(m) if self.previous_reason() == Some(Reason::CredentialsNotFound) => {
                        format!(" ({m})")
                    }
                    _ => String::new(),
                };
                format!("DeleteInstances had not been sent{pending}; no instance was deleted")
            }
        };
        let message = format!(
            "activeDeadlineSeconds ({} s) passed while {what}",
            self.obj.spec.active_deadline_seconds
        );
        self.set(Phase::Failed, Reason::DeadlineExceeded, message);
        Action::Done
    }

    fn previous_reason(&self) -> Option<Reason> {
        self.previous.reason().and_then(|r| r.parse().ok())
    }

    /// Clusters without CEL let users edit the spec. The ids recorded by the first attempt stay
    /// authoritative (a second, different DeleteInstances could delete instances twice over);
    /// say so once per edit.
    fn notice_ignored_spec_change(&mut self) {
        let (Some(generation), Some(observed)) = (
            self.obj.metadata.generation,
            self.previous.observed_generation,
        ) else {
            return;
        };
        let Some(recorded) = &self.previous.instance_ids else {
            return;
        };
        let spec_ids: BTreeSet<&String> = self.obj.spec.instance_ids.iter().collect();
        let recorded_ids: BTreeSet<&String> = recorded.iter().collect();
        if self.previous.attempts() > 0 && generation > observed && spec_ids != recorded_ids {
            self.events.push(Event {
                warning: true,
                reason: EVENT_SPEC_CHANGE_IGNORED.to_string(),
                note: format!(
                    "spec.instanceIds changed after the first DeleteInstances attempt; still using the recorded ids \
                     {} (create a new SaeInstanceDeletion to delete other instances)",
                    join(recorded)
                ),
            });
        }
    }

    fn finish(mut self, action: Action) -> Decision {
        if !self.next.is_terminal() && action != Action::Done && self.past_deadline() {
            // Results that arrive after the deadline are recorded first (above), then end it.
            self.fail_deadline();
            return self.finish(Action::Done);
        }
        let action = match action {
            Action::WaitUntil(t) => Action::WaitUntil(t.min(self.deadline)),
            other => other,
        };
        self.next.observed_generation = self.obj.metadata.generation;
        if self.next.is_terminal() {
            self.next.completion_time = Some(time(self.now));
            self.next.next_attempt_time = None;
        }
        let reason = self
            .reason
            .map(|r| r.as_str().to_string())
            .or_else(|| self.previous.reason().map(String::from));
        if let (Some(phase), Some(reason)) = (self.next.phase, reason) {
            self.update_conditions(phase, &reason);
            let before = (self.previous.phase, self.previous.reason());
            if before != (Some(phase), Some(reason.as_str())) {
                let event = self.transition_event(phase, reason);
                self.events.push(event);
            }
        }
        Decision {
            status: self.next,
            action,
            events: self.events,
        }
    }

    fn update_conditions(&mut self, phase: Phase, reason: &str) {
        let message = self.next.message.clone().unwrap_or_default();
        let wanted = [
            (CONDITION_READY, phase == Phase::Succeeded),
            (CONDITION_RECONCILING, !phase.is_terminal()),
            (CONDITION_STALLED, phase == Phase::Failed),
        ];
        let conditions = wanted
            .into_iter()
            .map(|(type_, holds)| {
                let status = if holds { "True" } else { "False" };
                // lastTransitionTime marks a flip of this condition's status, not any update.
                let since = self
                    .previous
                    .condition(type_)
                    .filter(|c| c.status == status)
                    .map_or_else(|| time(self.now), |c| c.last_transition_time.clone());
                Condition {
                    type_: type_.to_string(),
                    status: status.to_string(),
                    reason: reason.to_string(),
                    message: message.clone(),
                    observed_generation: self.obj.metadata.generation,
                    last_transition_time: since,
                }
            })
            .collect();
        self.next.conditions = conditions;
    }

    fn transition_event(&self, phase: Phase, reason: String) -> Event {
        let warning = matches!(phase, Phase::Failed | Phase::Retrying)
            || reason == Reason::CredentialsNotFound.as_str();
        let message = self.next.message.clone().unwrap_or_default();
        // Before an answer arrives, the ids in the status belong to an earlier attempt and would
        // mislead; afterwards they are what a human quotes to support.
        let answered = !matches!(phase, Phase::Pending | Phase::Submitting);
        let mut known = vec![];
        let mut mention = |label: &str, value: Option<&String>| {
            if answered
                && let Some(value) = value
                && !message.contains(value.as_str())
            {
                known.push(format!("{label} {value}"));
            }
        };
        mention("ChangeOrderId", self.next.change_order_id.as_ref());
        mention("RequestId", self.next.request_id.as_ref());
        mention("error code", self.next.error_code.as_ref());
        let note = if known.is_empty() {
            message
        } else {
            format!("{message} [{}]", known.join(", "))
        };
        Event {
            warning,
            reason,
            note,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::{CredentialsRef, SaeInstanceDeletionSpec};

    // ---- Builders -----------------------------------------------------------------------------

    /// Every object in these tests is created at T0 = 2026-01-01T00:00:00Z; `at(s)` is T0 + s.
    fn at(seconds: i64) -> Timestamp {
        add(
            "2026-01-01T00:00:00Z".parse().unwrap(),
            SignedDuration::from_secs(seconds),
        )
    }

    fn spec() -> SaeInstanceDeletionSpec {
        SaeInstanceDeletionSpec {
            region_id: "cn-hangzhou".into(),
            app_id: "app-1".into(),
            instance_ids: vec!["i-1".into(), "i-2".into()],
            credentials_ref: Some(CredentialsRef {
                name: "sae-creds".into(),
            }),
            retry: RetryPolicy::default(),
            active_deadline_seconds: 3600,
            wait_for_completion: true,
            dry_run: false,
        }
    }

    fn object_with(
        spec: SaeInstanceDeletionSpec,
        status: Option<SaeInstanceDeletionStatus>,
    ) -> SaeInstanceDeletion {
        let mut obj = SaeInstanceDeletion::new("del", spec);
        obj.metadata.namespace = Some("ns".into());
        obj.metadata.generation = Some(1);
        obj.metadata.creation_timestamp = Some(Time(at(0)));
        obj.status = status;
        obj
    }

    fn fresh() -> SaeInstanceDeletion {
        object_with(spec(), None)
    }

    fn dry() -> SaeInstanceDeletion {
        object_with(
            SaeInstanceDeletionSpec {
                dry_run: true,
                ..spec()
            },
            None,
        )
    }

    fn clock(seconds: i64) -> Clock {
        Clock {
            now: at(seconds),
            jitter: 0.5,
        }
    }

    fn start() -> Observation {
        Observation::Start {
            credentials: Ok(()),
        }
    }

    fn no_credentials() -> Observation {
        Observation::Start {
            credentials: Err(
                "Secret ns/sae-creds not found: create it with keys accessKeyId and accessKeySecret".into(),
            ),
        }
    }

    fn api_error(code: &str, http_status: u16) -> SaeError {
        SaeError::Api {
            operation: "DeleteInstances",
            http_status,
            code: code.into(),
            message: format!("sae says {code}"),
            request_id: Some("req-err".into()),
            retry_after: None,
        }
    }

    fn accepted() -> Observation {
        Observation::DeleteResult(Ok(DeleteAccepted {
            change_order_id: "co-1".into(),
            request_id: Some("req-ok".into()),
            trace_id: Some("trace-1".into()),
        }))
    }

    fn refused(code: &str) -> Observation {
        Observation::DeleteResult(Err(api_error(code, 400)))
    }

    fn order(status: i64) -> ChangeOrder {
        ChangeOrder {
            change_order_id: "co-1".into(),
            status,
            sub_status: None,
            co_type_code: Some("CoDeleteInstances".into()),
            error_message: Some("batch 1 failed: instance busy".into()),
            create_time: Some("2026-01-01 08:00:11".into()),
            request_id: Some(format!("req-poll-{status}")),
        }
    }

    fn polled(status: i64) -> Observation {
        Observation::ChangeOrderResult(Ok(order(status)))
    }

    /// Applies a decision the way the caller does: the object now carries the decided status.
    /// The status goes through JSON, as it would through the API server.
    fn apply(obj: &SaeInstanceDeletion, decision: &Decision) -> SaeInstanceDeletion {
        let mut next = obj.clone();
        let json = serde_json::to_value(&decision.status).unwrap();
        next.status = Some(serde_json::from_value(json).unwrap());
        next
    }

    fn step(
        obj: &SaeInstanceDeletion,
        seconds: i64,
        observation: Observation,
    ) -> SaeInstanceDeletion {
        apply(obj, &decide(obj, &clock(seconds), observation))
    }

    /// Pending for lack of credentials, decided at t=10.
    fn pending_credentials() -> SaeInstanceDeletion {
        step(&fresh(), 10, no_credentials())
    }

    /// Attempt 1 written ahead at t=10.
    fn submitting() -> SaeInstanceDeletion {
        step(&fresh(), 10, start())
    }

    /// Attempt 1 refused (app busy) at t=11; next attempt not before t=15 (5 s · 0.75 jitter).
    fn retrying() -> SaeInstanceDeletion {
        step(
            &submitting(),
            11,
            refused("Application.ChangerOrderRunning"),
        )
    }

    /// Attempt 1 accepted at t=11 as change order co-1.
    fn in_progress() -> SaeInstanceDeletion {
        step(&submitting(), 11, accepted())
    }

    fn succeeded() -> SaeInstanceDeletion {
        step(&in_progress(), 20, polled(2))
    }

    fn failed() -> SaeInstanceDeletion {
        step(&in_progress(), 20, polled(3))
    }

    fn status(obj: &SaeInstanceDeletion) -> &SaeInstanceDeletionStatus {
        obj.status.as_ref().unwrap()
    }

    fn ids(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    // ---- The table ----------------------------------------------------------------------------

    struct Row {
        name: &'static str,
        obj: SaeInstanceDeletion,
        now: i64,
        observation: Observation,
        phase: Phase,
        reason: &'static str,
        attempts: i32,
        action: Action,
        /// (warning, reason) of each event, in order.
        events: &'static [(bool, &'static str)],
        /// Substrings the status message must contain.
        message: &'static [&'static str],
    }

    fn rows() -> Vec<Row> {
        use Phase::*;
        let send = Action::SendDelete {
            instance_ids: ids(&["i-1", "i-2"]),
        };
        let poll = Action::PollChangeOrder {
            change_order_id: "co-1".into(),
        };
        let retry_in = |secs: i64| Action::WaitUntil(at(secs));
        vec![
            // Rule 3: a reconcile starts before anything was sent.
            Row {
                name: "fresh object: write-ahead attempt 1 and send",
                obj: fresh(),
                now: 10,
                observation: start(),
                phase: Submitting,
                reason: "Submitting",
                attempts: 1,
                action: send.clone(),
                events: &[(false, "Submitting")],
                message: &["attempt 1 of 10", "i-1, i-2", "app-1"],
            },
            Row {
                name: "no credentials: Pending, recheck after age/2 (at least 2 s)",
                obj: fresh(),
                now: 10,
                observation: no_credentials(),
                phase: Pending,
                reason: "CredentialsNotFound",
                attempts: 0,
                action: Action::WaitUntil(at(15)),
                events: &[(true, "CredentialsNotFound")],
                message: &[
                    "Secret ns/sae-creds not found",
                    "accessKeyId and accessKeySecret",
                ],
            },
            Row {
                name: "no credentials for long: recheck at most every 60 s",
                obj: pending_credentials(),
                now: 1000,
                observation: no_credentials(),
                phase: Pending,
                reason: "CredentialsNotFound",
                attempts: 0,
                action: Action::WaitUntil(at(1060)),
                events: &[],
                message: &["Secret ns/sae-creds"],
            },
            Row {
                name: "credentials fixed: the next start sends",
                obj: pending_credentials(),
                now: 30,
                observation: start(),
                phase: Submitting,
                reason: "Submitting",
                attempts: 1,
                action: send.clone(),
                events: &[(false, "Submitting")],
                message: &["attempt 1"],
            },
            Row {
                name: "dry run: check the instances, Pending",
                obj: dry(),
                now: 10,
                observation: start(),
                phase: Pending,
                reason: "Pending",
                attempts: 0,
                action: Action::CheckInstances,
                events: &[(false, "Pending")],
                message: &["dry run", "app-1"],
            },
            Row {
                name: "dry run without credentials: Pending for credentials",
                obj: dry(),
                now: 10,
                observation: no_credentials(),
                phase: Pending,
                reason: "CredentialsNotFound",
                attempts: 0,
                action: Action::WaitUntil(at(15)),
                events: &[(true, "CredentialsNotFound")],
                message: &["Secret ns/sae-creds"],
            },
            Row {
                name: "retrying before nextAttemptTime: wait for it (restart-safe backoff)",
                obj: retrying(),
                now: 12,
                observation: start(),
                phase: Retrying,
                reason: "Retrying",
                attempts: 1,
                action: retry_in(15),
                events: &[],
                message: &["Application.ChangerOrderRunning"],
            },
            Row {
                name: "retrying, backoff over: attempt 2 with the recorded ids",
                obj: retrying(),
                now: 15,
                observation: start(),
                phase: Submitting,
                reason: "Submitting",
                attempts: 2,
                action: send.clone(),
                events: &[(false, "Submitting")],
                message: &["attempt 2 of 10"],
            },
            Row {
                name: "retrying, backoff over, credentials gone: Pending for credentials",
                obj: retrying(),
                now: 16,
                observation: no_credentials(),
                phase: Pending,
                reason: "CredentialsNotFound",
                attempts: 1,
                action: Action::WaitUntil(at(24)),
                events: &[(true, "CredentialsNotFound")],
                message: &["Secret ns/sae-creds"],
            },
            // Rule 4: a send whose result was never recorded.
            Row {
                name: "start while Submitting: outcome unknown, never resend",
                obj: submitting(),
                now: 40,
                observation: start(),
                phase: Failed,
                reason: "OutcomeUnknown",
                attempts: 1,
                action: Action::Done,
                events: &[(true, "OutcomeUnknown")],
                message: &[
                    "ListChangeOrders for app app-1 since 2026-01-01T00:00:10Z",
                    "i-1, i-2",
                    "not sent again",
                ],
            },
            // Rule 5: accepted.
            Row {
                name: "accepted, waiting for completion: InProgress, first poll 1 s later",
                obj: submitting(),
                now: 11,
                observation: accepted(),
                phase: InProgress,
                reason: "WaitingForChangeOrder",
                attempts: 1,
                action: Action::WaitUntil(at(12)),
                events: &[(false, "WaitingForChangeOrder")],
                message: &["co-1", "2 instances of app app-1"],
            },
            Row {
                name: "accepted, not waiting: Succeeded at once",
                obj: object_with(
                    SaeInstanceDeletionSpec {
                        wait_for_completion: false,
                        ..spec()
                    },
                    submitting().status,
                ),
                now: 11,
                observation: accepted(),
                phase: Succeeded,
                reason: "Succeeded",
                attempts: 1,
                action: Action::Done,
                events: &[(false, "Succeeded")],
                message: &["co-1", "waitForCompletion is false"],
            },
            // Rule 6: refused or failed, by class.
            Row {
                name: "retryable (app busy): Retrying",
                obj: submitting(),
                now: 11,
                observation: refused("Application.ChangerOrderRunning"),
                phase: Retrying,
                reason: "Retrying",
                attempts: 1,
                action: retry_in(15),
                events: &[(true, "Retrying")],
                message: &[
                    "Application.ChangerOrderRunning",
                    "without executing it",
                    "attempt 1 of 10",
                    "req-err",
                ],
            },
            Row {
                name: "retryable (system upgrading): Retrying",
                obj: submitting(),
                now: 11,
                observation: refused("System.Upgrading"),
                phase: Retrying,
                reason: "Retrying",
                attempts: 1,
                action: retry_in(15),
                events: &[(true, "Retrying")],
                message: &["System.Upgrading"],
            },
            Row {
                name: "retryable (throttled): Retrying",
                obj: submitting(),
                now: 11,
                observation: refused("Throttling.User"),
                phase: Retrying,
                reason: "Retrying",
                attempts: 1,
                action: retry_in(15),
                events: &[(true, "Retrying")],
                message: &["Throttling.User"],
            },
            Row {
                name: "retryable (connection refused, nothing sent): Retrying",
                obj: submitting(),
                now: 11,
                observation: Observation::DeleteResult(Err(SaeError::NotSent {
                    operation: "DeleteInstances",
                    endpoint: "sae.cn-hangzhou.aliyuncs.com".into(),
                    detail: "connection refused".into(),
                })),
                phase: Retrying,
                reason: "Retrying",
                attempts: 1,
                action: retry_in(15),
                events: &[(true, "Retrying")],
                message: &["connection refused"],
            },
            Row {
                name: "retryable on the last allowed attempt: RetriesExhausted",
                obj: object_with(
                    SaeInstanceDeletionSpec {
                        retry: RetryPolicy {
                            max_attempts: 1,
                            ..RetryPolicy::default()
                        },
                        ..spec()
                    },
                    submitting().status,
                ),
                now: 11,
                observation: refused("Application.ChangerOrderRunning"),
                phase: Failed,
                reason: "RetriesExhausted",
                attempts: 1,
                action: Action::Done,
                events: &[(true, "RetriesExhausted")],
                message: &[
                    "all 1 DeleteInstances attempts",
                    "no instance was deleted",
                    "Application.ChangerOrderRunning",
                ],
            },
            Row {
                name: "terminal code: Failed with the mapped reason",
                obj: submitting(),
                now: 11,
                observation: refused("InvalidApplication.NotFound"),
                phase: Failed,
                reason: "ApplicationNotFound",
                attempts: 1,
                action: Action::Done,
                events: &[(true, "ApplicationNotFound")],
                message: &["no application app-1 in region cn-hangzhou", "req-err"],
            },
            Row {
                name: "terminal without a code (request not buildable): Rejected",
                obj: submitting(),
                now: 11,
                observation: Observation::DeleteResult(Err(SaeError::InvalidRequest {
                    operation: "DeleteInstances",
                    detail: "bad endpoint".into(),
                })),
                phase: Failed,
                reason: "Rejected",
                attempts: 1,
                action: Action::Done,
                events: &[(true, "Rejected")],
                message: &["bad endpoint"],
            },
            Row {
                name: "ambiguous (5xx): OutcomeUnknown, never resend",
                obj: submitting(),
                now: 11,
                observation: Observation::DeleteResult(Err(api_error("InternalError", 500))),
                phase: Failed,
                reason: "OutcomeUnknown",
                attempts: 1,
                action: Action::Done,
                events: &[(true, "OutcomeUnknown")],
                message: &["InternalError", "ListChangeOrders", "i-1, i-2"],
            },
            Row {
                name: "ambiguous (no answer): OutcomeUnknown",
                obj: submitting(),
                now: 11,
                observation: Observation::DeleteResult(Err(SaeError::NoAnswer {
                    operation: "DeleteInstances",
                    detail: "timed out".into(),
                })),
                phase: Failed,
                reason: "OutcomeUnknown",
                attempts: 1,
                action: Action::Done,
                events: &[(true, "OutcomeUnknown")],
                message: &["timed out"],
            },
            // Rule 8: following the change order.
            Row {
                name: "in progress, under 1 s since the send: wait for the first poll",
                obj: in_progress(),
                now: 10,
                observation: start(),
                phase: InProgress,
                reason: "WaitingForChangeOrder",
                attempts: 1,
                action: Action::WaitUntil(at(11)),
                events: &[],
                message: &["co-1"],
            },
            Row {
                name: "in progress: poll",
                obj: in_progress(),
                now: 12,
                observation: start(),
                phase: InProgress,
                reason: "WaitingForChangeOrder",
                attempts: 1,
                action: poll.clone(),
                events: &[],
                message: &["co-1"],
            },
            Row {
                name: "in progress without credentials: keep waiting, say why",
                obj: in_progress(),
                now: 50,
                observation: no_credentials(),
                phase: InProgress,
                reason: "WaitingForChangeOrder",
                attempts: 1,
                action: Action::WaitUntil(at(70)),
                events: &[],
                message: &["cannot check change order co-1", "Secret ns/sae-creds"],
            },
            Row {
                name: "change order unreadable: stay, poll again later",
                obj: in_progress(),
                now: 100,
                observation: Observation::ChangeOrderResult(Err(api_error("Throttling.User", 400))),
                phase: InProgress,
                reason: "WaitingForChangeOrder",
                attempts: 1,
                action: Action::WaitUntil(at(130)),
                events: &[],
                message: &["cannot read change order co-1", "Throttling.User"],
            },
            Row {
                name: "change order unreadable (terminal class): still only the deadline ends it",
                obj: in_progress(),
                now: 12,
                observation: Observation::ChangeOrderResult(Err(api_error(
                    "InvalidAppId.NotFound",
                    404,
                ))),
                phase: InProgress,
                reason: "WaitingForChangeOrder",
                attempts: 1,
                action: Action::WaitUntil(at(13)),
                events: &[],
                message: &["InvalidAppId.NotFound"],
            },
            // Rule 9: dry run results.
            Row {
                name: "dry run, all instances exist: DryRunSucceeded",
                obj: step(&dry(), 10, start()),
                now: 11,
                observation: Observation::DryRunResult(Ok(ids(&["i-0", "i-2", "i-1"]))),
                phase: Succeeded,
                reason: "DryRunSucceeded",
                attempts: 1,
                action: Action::Done,
                events: &[(false, "DryRunSucceeded")],
                message: &[
                    "would delete 2 instances of app app-1",
                    "nothing was deleted",
                ],
            },
            Row {
                name: "dry run, an instance is missing: InvalidParameter naming it",
                obj: step(&dry(), 10, start()),
                now: 11,
                observation: Observation::DryRunResult(Ok(ids(&["i-1", "i-9"]))),
                phase: Failed,
                reason: "InvalidParameter",
                attempts: 1,
                action: Action::Done,
                events: &[(true, "InvalidParameter")],
                message: &["no instances i-2", "1 of 2"],
            },
            Row {
                name: "dry run, app not found: ApplicationNotFound",
                obj: step(&dry(), 10, start()),
                now: 11,
                observation: Observation::DryRunResult(Err(api_error(
                    "InvalidAppId.NotFound",
                    404,
                ))),
                phase: Failed,
                reason: "ApplicationNotFound",
                attempts: 1,
                action: Action::Done,
                events: &[(true, "ApplicationNotFound")],
                message: &["app-1"],
            },
            Row {
                name: "dry run, bad credentials: AuthenticationFailed",
                obj: step(&dry(), 10, start()),
                now: 11,
                observation: Observation::DryRunResult(Err(api_error(
                    "SignatureDoesNotMatch",
                    400,
                ))),
                phase: Failed,
                reason: "AuthenticationFailed",
                attempts: 1,
                action: Action::Done,
                events: &[(true, "AuthenticationFailed")],
                message: &["Secret ns/sae-creds"],
            },
            Row {
                name: "dry run, throttled: Retrying with backoff",
                obj: step(&dry(), 10, start()),
                now: 11,
                observation: Observation::DryRunResult(Err(api_error("Throttling.User", 400))),
                phase: Retrying,
                reason: "Retrying",
                attempts: 1,
                action: retry_in(15),
                events: &[(true, "Retrying")],
                message: &["dry-run check", "Throttling.User"],
            },
            Row {
                name: "dry run, no answer: Retrying (a read is safe to repeat)",
                obj: step(&dry(), 10, start()),
                now: 11,
                observation: Observation::DryRunResult(Err(api_error("ServiceUnavailable", 503))),
                phase: Retrying,
                reason: "Retrying",
                attempts: 1,
                action: retry_in(15),
                events: &[(true, "Retrying")],
                message: &["ServiceUnavailable"],
            },
            Row {
                name: "dry run retrying, backoff over: check again, never send",
                obj: step(
                    &step(&dry(), 10, start()),
                    11,
                    Observation::DryRunResult(Err(api_error("Throttling", 400))),
                ),
                now: 15,
                observation: start(),
                phase: Retrying,
                reason: "Retrying",
                attempts: 1,
                action: Action::CheckInstances,
                events: &[],
                message: &["Throttling"],
            },
            Row {
                name: "dry run out of attempts: RetriesExhausted",
                obj: step(
                    &step(
                        &object_with(
                            SaeInstanceDeletionSpec {
                                dry_run: true,
                                retry: RetryPolicy {
                                    max_attempts: 1,
                                    ..RetryPolicy::default()
                                },
                                ..spec()
                            },
                            None,
                        ),
                        10,
                        start(),
                    ),
                    11,
                    start(),
                ),
                now: 12,
                observation: Observation::DryRunResult(Err(api_error("Throttling", 400))),
                phase: Failed,
                reason: "RetriesExhausted",
                attempts: 1,
                action: Action::Done,
                events: &[(true, "RetriesExhausted")],
                message: &["dry-run check", "failed 1 times"],
            },
            // Rule 2: the deadline.
            Row {
                name: "deadline before anything was sent: DeadlineExceeded",
                obj: fresh(),
                now: 3600,
                observation: start(),
                phase: Failed,
                reason: "DeadlineExceeded",
                attempts: 0,
                action: Action::Done,
                events: &[(true, "DeadlineExceeded")],
                message: &[
                    "activeDeadlineSeconds (3600 s)",
                    "had not been sent",
                    "no instance was deleted",
                ],
            },
            Row {
                name: "deadline while waiting for credentials: says so",
                obj: pending_credentials(),
                now: 3601,
                observation: no_credentials(),
                phase: Failed,
                reason: "DeadlineExceeded",
                attempts: 0,
                action: Action::Done,
                events: &[(true, "DeadlineExceeded")],
                message: &["had not been sent", "Secret ns/sae-creds not found"],
            },
            Row {
                name: "deadline while retrying: names the last error",
                obj: retrying(),
                now: 3600,
                observation: start(),
                phase: Failed,
                reason: "DeadlineExceeded",
                attempts: 1,
                action: Action::Done,
                events: &[(true, "DeadlineExceeded")],
                message: &[
                    "still refusing",
                    "Application.ChangerOrderRunning",
                    "none was executed",
                ],
            },
            Row {
                name: "deadline while the change order runs: names it",
                obj: step(&in_progress(), 20, polled(1)),
                now: 3700,
                observation: start(),
                phase: Failed,
                reason: "DeadlineExceeded",
                attempts: 1,
                action: Action::Done,
                events: &[(true, "DeadlineExceeded")],
                message: &[
                    "check change order co-1 in the SAE console",
                    "last status Executing",
                ],
            },
            Row {
                name: "deadline while Submitting: OutcomeUnknown, not DeadlineExceeded",
                obj: submitting(),
                now: 3600,
                observation: start(),
                phase: Failed,
                reason: "OutcomeUnknown",
                attempts: 1,
                action: Action::Done,
                events: &[(true, "OutcomeUnknown")],
                message: &["ListChangeOrders"],
            },
            Row {
                name: "acceptance arriving after the deadline: recorded, then DeadlineExceeded",
                obj: submitting(),
                now: 3600,
                observation: accepted(),
                phase: Failed,
                reason: "DeadlineExceeded",
                attempts: 1,
                action: Action::Done,
                events: &[(true, "DeadlineExceeded")],
                message: &["check change order co-1 in the SAE console"],
            },
            Row {
                name: "poll failing past the deadline: DeadlineExceeded",
                obj: in_progress(),
                now: 3600,
                observation: Observation::ChangeOrderResult(Err(api_error("Throttling.User", 400))),
                phase: Failed,
                reason: "DeadlineExceeded",
                attempts: 1,
                action: Action::Done,
                events: &[(true, "DeadlineExceeded")],
                message: &["change order co-1"],
            },
            Row {
                name: "dry run past the deadline: DeadlineExceeded",
                obj: step(&dry(), 10, start()),
                now: 3600,
                observation: start(),
                phase: Failed,
                reason: "DeadlineExceeded",
                attempts: 0,
                action: Action::Done,
                events: &[(true, "DeadlineExceeded")],
                message: &["dry-run check had not completed"],
            },
        ]
    }

    #[test]
    fn every_transition_in_the_table() {
        for row in rows() {
            let name = row.name;
            let before = row.obj.status.clone();
            let d = decide(&row.obj, &clock(row.now), row.observation);
            let s = &d.status;
            assert_eq!(s.phase, Some(row.phase), "{name}: {s:#?}");
            assert_eq!(s.reason(), Some(row.reason), "{name}");
            assert_eq!(s.attempts(), row.attempts, "{name}");
            assert_eq!(d.action, row.action, "{name}");
            let events: Vec<(bool, &str)> = d
                .events
                .iter()
                .map(|e| (e.warning, e.reason.as_str()))
                .collect();
            assert_eq!(events, row.events, "{name}: {:#?}", d.events);
            let message = s.message.as_deref().unwrap_or_default();
            for part in row.message {
                assert!(
                    message.contains(part),
                    "{name}: message {message:?} lacks {part:?}"
                );
            }
            // Rule 11 holds on every row.
            assert_eq!(s.observed_generation, Some(1), "{name}");
            assert_eq!(
                s.completion_time.is_some(),
                row.phase.is_terminal(),
                "{name}"
            );
            assert_eq!(s.conditions.len(), 3, "{name}");
            for c in &s.conditions {
                assert_eq!(
                    (c.reason.as_str(), c.message.as_str()),
                    (row.reason, message),
                    "{name}: {c:?}"
                );
                assert_eq!(c.observed_generation, Some(1), "{name}");
            }
            // No event without a visible change, and never a send in a dry run.
            if d.events.is_empty() {
                assert_eq!(s.phase, before.as_ref().and_then(|b| b.phase), "{name}");
            }
            if row.obj.spec.dry_run {
                assert!(!matches!(d.action, Action::SendDelete { .. }), "{name}");
            }
        }
    }

    // ---- Rule 1: terminal ---------------------------------------------------------------------

    #[test]
    fn terminal_objects_are_never_touched() {
        let observations = [
            start(),
            no_credentials(),
            accepted(),
            refused("Throttling"),
            polled(1),
            polled(3),
            Observation::DryRunResult(Ok(vec![])),
        ];
        let mut deadline_failed = fresh();
        deadline_failed = step(&deadline_failed, 4000, start());
        for obj in [succeeded(), failed(), deadline_failed] {
            for now in [20, 100_000] {
                for observation in observations.clone() {
                    let d = decide(&obj, &clock(now), observation.clone());
                    assert_eq!(Some(&d.status), obj.status.as_ref(), "{observation:?}");
                    assert_eq!(d.action, Action::Done);
                    assert!(d.events.is_empty());
                }
            }
        }
        assert_eq!(status(&succeeded()).phase, Some(Phase::Succeeded));
        assert_eq!(status(&failed()).phase, Some(Phase::Failed));
    }

    // ---- Rule 3: write-ahead ------------------------------------------------------------------

    #[test]
    fn write_ahead_records_the_attempt_before_the_send() {
        let s = status(&submitting()).clone();
        assert_eq!(s.phase, Some(Phase::Submitting));
        assert_eq!(s.attempts, Some(1));
        assert_eq!(s.instance_ids, Some(ids(&["i-1", "i-2"])));
        assert_eq!(s.start_time, Some(Time(at(10))));
        assert_eq!(s.last_attempt_time, Some(Time(at(10))));
        assert_eq!(s.next_attempt_time, None);

        // The second attempt keeps startTime, moves lastAttemptTime, clears nextAttemptTime.
        let retry = retrying();
        assert_eq!(status(&retry).next_attempt_time, Some(Time(at(15))));
        let d = decide(&retry, &clock(16), start());
        assert_eq!(d.status.attempts, Some(2));
        assert_eq!(d.status.start_time, Some(Time(at(10))));
        assert_eq!(d.status.last_attempt_time, Some(Time(at(16))));
        assert_eq!(d.status.next_attempt_time, None);
        assert_eq!(
            d.status.error_code.as_deref(),
            Some("Application.ChangerOrderRunning")
        );
    }

    #[test]
    fn stored_times_survive_the_api_server_and_cause_no_rewrites() {
        // A clock with sub-second precision must not make the decided status differ from what
        // comes back from the API server (which keeps whole seconds).
        let obj = fresh();
        let now = Clock {
            now: add(at(10), SignedDuration::from_millis(750)),
            jitter: 0.3,
        };
        let d = decide(&obj, &now, start());
        let round_tripped: SaeInstanceDeletionStatus =
            serde_json::from_value(serde_json::to_value(&d.status).unwrap()).unwrap();
        assert_eq!(round_tripped, d.status);
        // nextAttemptTime rounds up: waking at it never acts early.
        let retry = decide(&apply(&obj, &d), &now, refused("Throttling"));
        let next = retry.status.next_attempt_time.clone().unwrap().0;
        assert_eq!(next.subsec_nanosecond(), 0);
        assert!(
            next >= add(now.now, SignedDuration::from_millis(2500)),
            "{next}"
        );
    }

    #[test]
    fn a_stable_state_decides_the_same_status_again() {
        // The caller writes only when the status differs: repeated reconciles must not churn.
        for (obj, now, observation) in [
            (pending_credentials(), 20, no_credentials()),
            (retrying(), 12, start()),
            (in_progress(), 12, start()),
            (step(&dry(), 10, start()), 11, start()),
        ] {
            let d = decide(&obj, &clock(now), observation);
            assert_eq!(Some(&d.status), obj.status.as_ref());
            assert!(d.events.is_empty());
        }
    }

    // ---- Rules 6 and 9: error codes -----------------------------------------------------------

    #[test]
    fn every_terminal_code_maps_to_its_reason() {
        let table = [
            ("InvalidApplication.NotFound", "ApplicationNotFound"),
            ("InvalidAppId.NotFound", "ApplicationNotFound"),
            ("InvalidParameter.NotEmpty", "InvalidParameter"),
            ("InvalidParameter.Obviously", "InvalidParameter"),
            ("InvalidParameter.WithMessage", "InvalidParameter"),
            ("NoComputeResourceQuota.Exceed", "QuotaExceeded"),
            ("NoComputeResourceQuota.App.Exceed", "QuotaExceeded"),
            ("NoComputeResourceQuota.User.Exceed", "QuotaExceeded"),
            ("SignatureDoesNotMatch", "AuthenticationFailed"),
            ("InvalidAccessKeyId.NotFound", "AuthenticationFailed"),
            ("InvalidAccessKeyId.Inactive", "AuthenticationFailed"),
            ("InvalidTimeStamp.Expired", "AuthenticationFailed"),
            ("SignatureNonceUsed", "AuthenticationFailed"),
            ("Application.NotDeployYet", "Rejected"),
            ("user.indebt", "Rejected"),
            ("InvalidParameterX", "Rejected"),
            ("SomethingNew.Undocumented", "Rejected"),
        ];
        for (code, reason) in table {
            let d = decide(&submitting(), &clock(11), refused(code));
            assert_eq!(d.status.phase, Some(Phase::Failed), "{code}");
            assert_eq!(d.status.reason(), Some(reason), "{code}");
            assert_eq!(d.status.error_code.as_deref(), Some(code));
            assert_eq!(d.status.request_id.as_deref(), Some("req-err"));
            assert_eq!(d.action, Action::Done);
            let event = &d.events[0];
            assert!(
                event.warning && event.note.contains(code) && event.note.contains("req-err"),
                "{event:?}"
            );
        }
    }

    #[test]
    fn authentication_failures_say_what_to_check() {
        let d = decide(
            &submitting(),
            &clock(11),
            refused("InvalidAccessKeyId.NotFound"),
        );
        assert!(
            d.status
                .message
                .unwrap()
                .contains("check the AccessKey in Secret ns/sae-creds")
        );

        let own = object_with(
            SaeInstanceDeletionSpec {
                credentials_ref: None,
                ..spec()
            },
            submitting().status,
        );
        let d = decide(&own, &clock(11), refused("SignatureDoesNotMatch"));
        assert!(
            d.status
                .message
                .unwrap()
                .contains("ALIBABA_CLOUD_ACCESS_KEY_ID")
        );

        let d = decide(
            &submitting(),
            &clock(11),
            refused("InvalidTimeStamp.Expired"),
        );
        assert!(d.status.message.unwrap().contains("clock"));
    }

    #[test]
    fn retrying_counts_attempts_until_exhausted() {
        let mut obj = object_with(
            SaeInstanceDeletionSpec {
                retry: RetryPolicy {
                    max_attempts: 3,
                    ..RetryPolicy::default()
                },
                ..spec()
            },
            None,
        );
        let mut now = 10;
        let mut sent = vec![];
        loop {
            let d = decide(&obj, &clock(now), start());
            match &d.action {
                Action::SendDelete { instance_ids } => sent.push(instance_ids.clone()),
                Action::WaitUntil(t) => {
                    now = t.as_second() - at(0).as_second();
                    continue;
                }
                other => panic!("unexpected {other:?}"),
            }
            obj = apply(&obj, &d);
            let d = decide(
                &obj,
                &clock(now),
                refused("Application.ChangerOrderRunning"),
            );
            obj = apply(&obj, &d);
            if d.action == Action::Done {
                break;
            }
        }
        assert_eq!(sent.len(), 3, "maxAttempts counts every send");
        assert!(sent.iter().all(|s| s == &ids(&["i-1", "i-2"])));
        assert_eq!(status(&obj).reason(), Some("RetriesExhausted"));
        assert_eq!(status(&obj).attempts, Some(3));
        assert_eq!(status(&obj).next_attempt_time, None);
    }

    #[test]
    fn retry_after_from_sae_is_honoured_but_capped_by_the_deadline() {
        let mut err = api_error("Throttling.User", 400);
        if let SaeError::Api { retry_after, .. } = &mut err {
            *retry_after = Some(Duration::from_secs(60));
        }
        let d = decide(
            &submitting(),
            &clock(11),
            Observation::DeleteResult(Err(err.clone())),
        );
        assert_eq!(d.status.next_attempt_time, Some(Time(at(71))));
        assert_eq!(d.action, Action::WaitUntil(at(71)));

        // Near the deadline the wait ends at the deadline, where the object fails.
        let late = step(&fresh(), 3580, start());
        let d = decide(&late, &clock(3581), Observation::DeleteResult(Err(err)));
        assert_eq!(d.status.next_attempt_time, Some(Time(at(3641))));
        assert_eq!(d.action, Action::WaitUntil(at(3600)));
        let d = decide(&apply(&late, &d), &clock(3600), start());
        assert_eq!(d.status.reason(), Some("DeadlineExceeded"));
    }

    // ---- Rule 7: backoff ----------------------------------------------------------------------

    #[test]
    fn backoff_doubles_caps_and_jitters_deterministically() {
        let policy = RetryPolicy::default(); // 5 s, capped at 300 s
        let secs = |attempts, jitter, retry_after: Option<u64>| {
            backoff_delay(
                &policy,
                attempts,
                jitter,
                retry_after.map(Duration::from_secs),
            )
            .as_secs_f64()
        };
        // Equal jitter: half the delay at jitter 0, all of it at jitter 1.
        assert_eq!(secs(1, 0.0, None), 2.5);
        assert_eq!(secs(1, 1.0, None), 5.0);
        assert_eq!(secs(1, 0.5, None), 3.75);
        assert_eq!(secs(2, 1.0, None), 10.0);
        assert_eq!(secs(3, 1.0, None), 20.0);
        assert_eq!(secs(6, 1.0, None), 160.0);
        assert_eq!(secs(7, 1.0, None), 300.0);
        assert_eq!(secs(100, 1.0, None), 300.0);
        assert_eq!(secs(100, 0.0, None), 150.0);
        // Out-of-range inputs stay sane.
        assert_eq!(secs(0, 1.0, None), 5.0);
        assert_eq!(secs(1, 7.0, None), 5.0);
        // SAE's retry-after wins when longer, never when shorter.
        assert_eq!(secs(1, 0.0, Some(60)), 60.0);
        assert_eq!(secs(3, 1.0, Some(1)), 20.0);
        // An initial delay above the cap is capped too.
        let odd = RetryPolicy {
            max_attempts: 3,
            initial_delay_seconds: 500,
            max_delay_seconds: 300,
        };
        assert_eq!(backoff_delay(&odd, 1, 1.0, None), Duration::from_secs(300));
    }

    // ---- Rule 8: change order statuses --------------------------------------------------------

    #[test]
    fn every_change_order_status() {
        use Phase::*;
        // (status, phase, reason, changeOrderStatus, message part)
        let table: [(i64, Phase, &str, &str, &str); 11] = [
            (
                0,
                InProgress,
                "WaitingForChangeOrder",
                "Preparing",
                "is Preparing",
            ),
            (
                1,
                InProgress,
                "WaitingForChangeOrder",
                "Executing",
                "is Executing",
            ),
            (
                2,
                Succeeded,
                "Succeeded",
                "Succeeded",
                "i-1, i-2 of app app-1 deleted",
            ),
            (
                3,
                Failed,
                "ChangeOrderFailed",
                "Failed",
                "batch 1 failed: instance busy",
            ),
            (
                6,
                Failed,
                "ChangeOrderFailed",
                "Terminated",
                "ended Terminated",
            ),
            (
                8,
                InProgress,
                "WaitingForChangeOrder",
                "WaitingManualRelease",
                "waiting for a manual batch release in the SAE console",
            ),
            (
                9,
                InProgress,
                "WaitingForChangeOrder",
                "WaitingAutoRelease",
                "is WaitingAutoRelease",
            ),
            (
                10,
                Failed,
                "ChangeOrderFailed",
                "SystemFailure",
                "check change order co-1 in the SAE console",
            ),
            (
                11,
                InProgress,
                "WaitingForChangeOrder",
                "PendingApproval",
                "waiting for approval",
            ),
            (
                12,
                InProgress,
                "WaitingForChangeOrder",
                "Approved",
                "is Approved",
            ),
            (
                7,
                InProgress,
                "WaitingForChangeOrder",
                "Unknown(7)",
                "is Unknown(7)",
            ),
        ];
        for (code, phase, reason, name, part) in table {
            let d = decide(&in_progress(), &clock(100), polled(code));
            let s = &d.status;
            assert_eq!(
                (s.phase, s.reason()),
                (Some(phase), Some(reason)),
                "status {code}"
            );
            assert_eq!(
                s.change_order_status.as_deref(),
                Some(name),
                "status {code}"
            );
            assert!(
                s.message.as_deref().unwrap().contains(part),
                "status {code}: {:?}",
                s.message
            );
            if phase.is_terminal() {
                assert_eq!(d.action, Action::Done);
                assert_eq!(
                    s.request_id,
                    Some(format!("req-poll-{code}")),
                    "the final answer's RequestId is kept"
                );
                assert_eq!(d.events.len(), 1);
                assert_eq!(d.events[0].warning, phase == Failed);
            } else {
                // Poll interval: half the change order's age (90 s), at most 30 s.
                assert_eq!(d.action, Action::WaitUntil(at(130)), "status {code}");
                assert_eq!(
                    s.request_id.as_deref(),
                    Some("req-ok"),
                    "polls do not churn the RequestId"
                );
                assert!(d.events.is_empty(), "status {code}: {:?}", d.events);
            }
        }
    }

    #[test]
    fn executing_with_an_exception_asks_for_a_human() {
        let mut stuck = order(1);
        stuck.sub_status = Some(1);
        let d = decide(
            &in_progress(),
            &clock(20),
            Observation::ChangeOrderResult(Ok(stuck)),
        );
        assert_eq!(d.status.phase, Some(Phase::InProgress));
        assert!(d.status.message.unwrap().contains("manual rollback"));
    }

    #[test]
    fn polls_write_only_when_something_visible_changes() {
        let executing = step(&in_progress(), 20, polled(1));
        let again = decide(&executing, &clock(40), polled(1));
        assert_eq!(
            Some(&again.status),
            executing.status.as_ref(),
            "same change order status: no write"
        );
        let moved = decide(&executing, &clock(40), polled(9));
        assert_ne!(Some(&moved.status), executing.status.as_ref());

        // The same failure twice (different RequestIds) gives the same message: no write.
        let failing = step(
            &executing,
            50,
            Observation::ChangeOrderResult(Err(api_error("Throttling.User", 400))),
        );
        let mut other = api_error("Throttling.User", 400);
        if let SaeError::Api { request_id, .. } = &mut other {
            *request_id = Some("req-other".into());
        }
        let d = decide(
            &failing,
            &clock(60),
            Observation::ChangeOrderResult(Err(other)),
        );
        assert_eq!(Some(&d.status), failing.status.as_ref());
        // A good answer afterwards replaces the error message.
        let d = decide(&failing, &clock(70), polled(1));
        assert!(!d.status.message.unwrap().contains("cannot read"));
    }

    #[test]
    fn polling_slows_down_with_age() {
        // Sent at t=10: interval = clamp(age / 2, 1 s, 30 s).
        for (now, next) in [(11, 12), (14, 16), (30, 40), (70, 100), (500, 530)] {
            let d = decide(&in_progress(), &clock(now), polled(1));
            assert_eq!(d.action, Action::WaitUntil(at(next)), "now {now}");
        }
    }

    // ---- Rule 10: spec edits ------------------------------------------------------------------

    #[test]
    fn instance_ids_edited_after_the_first_attempt_are_ignored_with_one_warning() {
        let mut edited = retrying();
        edited.spec.instance_ids = ids(&["i-1", "i-3"]);
        edited.metadata.generation = Some(2);
        let d = decide(&edited, &clock(15), start());
        assert_eq!(
            d.action,
            Action::SendDelete {
                instance_ids: ids(&["i-1", "i-2"])
            }
        );
        assert_eq!(d.status.observed_generation, Some(2));
        assert!(
            d.status
                .conditions
                .iter()
                .all(|c| c.observed_generation == Some(2))
        );
        let warnings: Vec<&Event> = d
            .events
            .iter()
            .filter(|e| e.reason == EVENT_SPEC_CHANGE_IGNORED)
            .collect();
        assert_eq!(warnings.len(), 1, "{:?}", d.events);
        assert!(
            warnings[0].warning && warnings[0].note.contains("i-1, i-2"),
            "{:?}",
            warnings[0]
        );

        // Once observed, no further warning.
        let after = apply(&edited, &d);
        let d = decide(&after, &clock(16), refused("Throttling"));
        assert!(
            d.events
                .iter()
                .all(|e| e.reason != EVENT_SPEC_CHANGE_IGNORED)
        );

        // A new generation with the same ids (another field, or a reorder) warns about nothing.
        let mut reordered = retrying();
        reordered.spec.instance_ids = ids(&["i-2", "i-1"]);
        reordered.metadata.generation = Some(2);
        let d = decide(&reordered, &clock(12), start());
        assert!(d.events.is_empty(), "{:?}", d.events);
        assert_eq!(d.status.observed_generation, Some(2));
    }

    #[test]
    fn instance_ids_edited_before_the_first_attempt_are_used() {
        let mut edited = pending_credentials();
        edited.spec.instance_ids = ids(&["i-7"]);
        edited.metadata.generation = Some(2);
        let d = decide(&edited, &clock(30), start());
        assert_eq!(
            d.action,
            Action::SendDelete {
                instance_ids: ids(&["i-7"])
            }
        );
        assert!(
            d.events
                .iter()
                .all(|e| e.reason != EVENT_SPEC_CHANGE_IGNORED)
        );
        assert_eq!(d.status.observed_generation, Some(2));
    }

    // ---- Rules 11 and 12: conditions and events -----------------------------------------------

    #[test]
    fn conditions_follow_the_phase_and_keep_their_transition_times() {
        let cond = |s: &SaeInstanceDeletionStatus, t: &str| {
            let c = s.condition(t).unwrap();
            (c.status.clone(), c.last_transition_time.0)
        };
        let pending = pending_credentials(); // t=10
        let s = status(&pending);
        assert_eq!(cond(s, CONDITION_READY), ("False".into(), at(10)));
        assert_eq!(cond(s, CONDITION_RECONCILING), ("True".into(), at(10)));
        assert_eq!(cond(s, CONDITION_STALLED), ("False".into(), at(10)));

        let sending = step(&pending, 30, start());
        let s = status(&sending);
        assert_eq!(
            cond(s, CONDITION_RECONCILING),
            ("True".into(), at(10)),
            "no flip, time kept"
        );
        assert_eq!(
            s.condition(CONDITION_RECONCILING).unwrap().reason,
            "Submitting",
            "reason updated"
        );

        let done = step(&sending, 40, refused("user.indebt"));
        let s = status(&done);
        assert_eq!(cond(s, CONDITION_READY), ("False".into(), at(10)));
        assert_eq!(cond(s, CONDITION_RECONCILING), ("False".into(), at(40)));
        assert_eq!(cond(s, CONDITION_STALLED), ("True".into(), at(40)));
        assert_eq!(s.completion_time, Some(Time(at(40))));

        let ok = succeeded(); // t=20
        let s = status(&ok);
        assert_eq!(cond(s, CONDITION_READY), ("True".into(), at(20)));
        assert_eq!(cond(s, CONDITION_RECONCILING), ("False".into(), at(20)));
        assert_eq!(cond(s, CONDITION_STALLED), ("False".into(), at(10)));
        assert_eq!(s.completion_time, Some(Time(at(20))));
    }

    #[test]
    fn a_whole_deletion_tells_its_story_in_events() {
        let mut obj = fresh();
        let mut story = vec![];
        for (now, observation) in [
            (10, no_credentials()),
            (20, no_credentials()),
            (30, start()),
            (31, refused("Application.ChangerOrderRunning")),
            (40, start()),
            (41, accepted()),
            (43, start()),
            (43, polled(1)),
            (50, start()),
            (50, polled(1)),
            (60, start()),
            (60, polled(2)),
        ] {
            let d = decide(&obj, &clock(now), observation);
            story.extend(
                d.events
                    .iter()
                    .map(|e| (e.warning, e.reason.clone(), e.note.clone())),
            );
            obj = apply(&obj, &d);
        }
        let reasons: Vec<(bool, &str)> = story.iter().map(|(w, r, _)| (*w, r.as_str())).collect();
        assert_eq!(
            reasons,
            vec![
                (true, "CredentialsNotFound"),
                (false, "Submitting"),
                (true, "Retrying"),
                (false, "Submitting"),
                (false, "WaitingForChangeOrder"),
                (false, "Succeeded"),
            ]
        );
        let note = |reason: &str| {
            story
                .iter()
                .rev()
                .find(|(_, r, _)| r == reason)
                .unwrap()
                .2
                .clone()
        };
        assert!(
            !note("Submitting").contains("req-err"),
            "{}",
            note("Submitting")
        );
        assert!(note("Retrying").contains("Application.ChangerOrderRunning"));
        assert!(note("Retrying").contains("req-err"));
        assert!(note("WaitingForChangeOrder").contains("co-1"));
        assert!(note("WaitingForChangeOrder").contains("req-ok"));
        assert!(note("Succeeded").contains("co-1"));
        let s = status(&obj);
        assert_eq!(s.phase, Some(Phase::Succeeded));
        assert_eq!(s.attempts, Some(2));
        assert_eq!(s.trace_id.as_deref(), Some("trace-1"));
        assert_eq!(
            s.error_code, None,
            "a later success clears the refused attempt's code"
        );
        assert_eq!(s.change_order_status.as_deref(), Some("Succeeded"));
    }

    #[test]
    fn in_progress_without_a_change_order_is_not_resent() {
        let mut broken = in_progress();
        broken.status.as_mut().unwrap().change_order_id = None;
        let d = decide(&broken, &clock(20), start());
        assert_eq!(
            (d.status.phase, d.status.reason()),
            (Some(Phase::Failed), Some("OutcomeUnknown"))
        );
        assert_eq!(d.action, Action::Done);
    }

    #[test]
    fn an_object_without_creation_time_or_generation_still_decides() {
        let mut obj = fresh();
        obj.metadata.creation_timestamp = None;
        obj.metadata.generation = None;
        let d = decide(&obj, &clock(10), start());
        assert_eq!(d.status.phase, Some(Phase::Submitting));
        assert_eq!(d.status.observed_generation, None);
    }
}
