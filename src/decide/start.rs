//! A reconcile starts ([`Observation::Start`]): credentials, the app's turn, the write-ahead of
//! a new attempt, and picking up an attempt or a change order that is already in flight.

use super::*;

/// Whether a decision about `obj` now reads the policies' word (`Observation::Start.policy`):
/// only before a send (no phase yet, `Pending`, `Retrying`), and never for a dry run. Asking
/// costs a look at every watched object (the hourly count), so a reconcile asks only then.
pub fn asks_policies(obj: &SaeInstanceDeletion) -> bool {
    let before_send = matches!(
        obj.status.as_ref().and_then(|s| s.phase),
        None | Some(Phase::Pending) | Some(Phase::Retrying)
    );
    before_send && !obj.pinned().dry_run
}

impl Step<'_> {
    pub(super) fn start(
        &mut self,
        credentials: Result<(), String>,
        app: AppTurn,
        policy: PolicyCheck,
    ) -> Action {
        if self.past_deadline() {
            return self.fail_deadline();
        }
        match self.previous.phase {
            None | Some(Phase::Pending) | Some(Phase::Retrying) => {
                self.start_before_send(credentials, app, policy)
            }
            Some(Phase::Submitting) => self.start_submitting(credentials),
            Some(Phase::InProgress) => self.start_in_progress(credentials),
            Some(Phase::Succeeded) | Some(Phase::Failed) => Action::Done,
        }
    }

    pub(super) fn start_before_send(
        &mut self,
        credentials: Result<(), String>,
        app: AppTurn,
        policy: PolicyCheck,
    ) -> Action {
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
        if self.pinned.dry_run {
            if self.previous.phase.is_none() {
                let message = format!(
                    "dry run: checking that app {} has the {} listed instances",
                    self.app(),
                    self.pinned.instance_ids.len()
                );
                self.set(Phase::Pending, Reason::Pending, message);
            }
            return Action::CheckInstances;
        }
        // Before the app's turn: an object a policy refuses holds no place in the line, and its
        // status should say why it waits, not whom it waits for.
        if let PolicyCheck::Refused(refusal) = policy {
            return self.refused_by_policy(refusal);
        }
        let waiting_for = match app {
            AppTurn::Free => return self.submit(),
            AppTurn::Busy { holder } => {
                format!("{holder} has a DeleteInstances request or change order in flight on it")
            }
            AppTurn::Queued { ahead } => format!("{ahead} was created earlier and goes first"),
        };
        self.wait_for_application(waiting_for)
    }

    /// A deletion policy stands in the way: nothing is sent and nothing counts as an attempt;
    /// look again when a window opens, else later, the longer the object has waited (a quarter of
    /// its age, 30 s to 5 min: a DisruptionBudget check may cost an SAE listing each time; policy
    /// and namespace changes wake the object sooner). The message is the refusal's (it names the
    /// policy and the limit), so the same refusal again writes nothing.
    pub(super) fn refused_by_policy(&mut self, refusal: crate::policy::Refusal) -> Action {
        self.next.next_attempt_time = None;
        self.next.sae_unreachable_since = None;
        let again = refusal
            .retry_at
            .filter(|t| *t > self.now)
            .unwrap_or_else(|| {
                let age = self.now.duration_since(self.created);
                add(
                    self.now,
                    clamp(age / 4, MIN_POLICY_RECHECK, MAX_POLICY_RECHECK),
                )
            });
        let message = format!("DeleteInstances not sent: {}", refusal.message);
        self.set(Phase::Pending, refusal.reason.into(), message);
        Action::WaitUntil(again)
    }

    /// SAE would refuse a second change order on the app anyway; waiting here spends no quota and
    /// keeps the objects of one app in creation order.
    ///
    /// The message names what the object first waited for and is then left alone: rewriting it
    /// each time the app changes hands would cost every waiting object a status write per
    /// deletion ahead of it.
    pub(super) fn wait_for_application(&mut self, waiting_for: String) -> Action {
        self.next.next_attempt_time = None;
        // Waiting for the app is no longer waiting for SAE (the outage's gauge counts this field).
        self.next.sae_unreachable_since = None;
        let message = match (self.previous_reason(), self.previous.message.clone()) {
            (Some(Reason::WaitingForApplication), Some(kept)) => kept,
            _ => format!(
                "waiting for app {}: {waiting_for} (SAE runs one change order per application at a time; \
                 objects take turns, oldest first)",
                self.app()
            ),
        };
        self.set(Phase::Pending, Reason::WaitingForApplication, message);
        Action::WaitUntil(add(self.now, APP_RECHECK))
    }

    /// The write-ahead record of an attempt; the caller sends only once it is persisted.
    pub(super) fn submit(&mut self) -> Action {
        let attempt = self.record_attempt();
        let instance_ids = self.instance_ids();
        let message = format!(
            "sending DeleteInstances (attempt {attempt} of {}) for instances {} of app {}",
            self.obj.spec.retry.max_attempts,
            join(&instance_ids),
            self.app()
        );
        self.set(Phase::Submitting, Reason::Submitting, message);
        Action::SendDelete { instance_ids }
    }

    /// Counts a new attempt (a send, or a dry-run check) made now; returns its number. The first
    /// one records what every later one uses (app, region, ids, credentials, dry run).
    pub(super) fn record_attempt(&mut self) -> i32 {
        self.pinned.record(&mut self.next);
        let attempt = self.next.attempts() + 1;
        self.next.attempts = Some(attempt);
        self.next.last_attempt_time = Some(time(self.now));
        if self.next.start_time.is_none() {
            self.next.start_time = Some(time(self.now));
        }
        self.next.next_attempt_time = None;
        attempt
    }

    /// InProgress without a change order id cannot be written by this controller (the id is
    /// recorded together with the phase), so there is no attempt time to resolve against; hand it
    /// to a human rather than guess.
    pub(super) fn outcome_unknown(&mut self, why: String, since: &str) -> Action {
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

    pub(super) fn start_in_progress(&mut self, credentials: Result<(), String>) -> Action {
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

    pub(super) fn since_last_attempt(&self) -> String {
        self.next
            .last_attempt_time
            .as_ref()
            .map_or_else(|| "the object's creation".to_string(), |t| t.0.to_string())
    }

    /// Polls slow down as the change order ages: a deletion usually finishes in seconds, and a
    /// stuck one should not eat the account's API quota.
    pub(super) fn poll_interval(&self) -> SignedDuration {
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

    // ---- Lost answers (see the module docs) ---------------------------------------------------

    /// A reconcile found `Submitting`: the recorded attempt may have been sent, and its answer was
    /// never recorded (crash, lost status write), or it is already being resolved.
    pub(super) fn start_submitting(&mut self, credentials: Result<(), String>) -> Action {
        if self.previous_reason() != Some(Reason::OutcomeUnknown) {
            self.answer_lost("it was never recorded: controller restart or lost status write");
        }
        match credentials {
            Ok(()) => self.resolve_attempt(),
            Err(why) => {
                let message = format!(
                    "cannot check whether DeleteInstances attempt {} was executed: {why}",
                    self.next.attempts()
                );
                self.set(Phase::Submitting, Reason::OutcomeUnknown, message);
                Action::WaitUntil(add(self.now, self.resolve_interval()))
            }
        }
    }
}
