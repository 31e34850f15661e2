//! SAE's answer to DeleteInstances, and what its errors lead to: accepted, retried after backoff,
//! refused for good, the attempts used up, or SAE unreachable.
//!
//! # SAE unreachable
//!
//! `retry.maxAttempts` counts requests SAE answered. A request that could not reach SAE at all
//! ([`SaeError::NotSent`]: connection refused, DNS, TLS handshake) is not one of them: SAE cannot
//! have seen it, so it is taken back like a write-ahead that never left (the at-most-once record
//! is unaffected: nothing was delivered), the object waits in `Retrying`/`SaeUnreachable` with
//! `status.saeUnreachableSince`, and tries again after [`unreachable_delay`] until its deadline.
//! An outage therefore costs time, never attempts, and ends an object only at its deadline, with a
//! message that says SAE was unreachable, not that it refused. The field is removed by the first
//! answer SAE gives, whatever it says.

use super::*;

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

/// The wait before trying again a request that could not reach SAE, which has been unreachable
/// for `down_for`: as long as the outage so far (so the waits roughly double, as the backoff of
/// refusals does), at least `initialDelay` and at most `maxDelay`, with the same "equal jitter" as
/// [`backoff_delay`]. It does not grow with attempts, since none are counted: a long outage is
/// probed every `maxDelay` at most, and the object goes on soon after SAE is back.
pub(super) fn unreachable_delay(
    policy: &RetryPolicy,
    down_for: SignedDuration,
    jitter: f64,
) -> Duration {
    let initial = Duration::from_secs(policy.initial_delay_seconds.max(1) as u64);
    let max = Duration::from_secs(policy.max_delay_seconds.max(1) as u64);
    let down_for = Duration::try_from(down_for).unwrap_or(Duration::ZERO);
    let full = down_for.clamp(initial.min(max), max);
    full.mul_f64(0.5 + 0.5 * jitter.clamp(0.0, 1.0))
}

/// The reason a Terminal SAE error code maps to ([`codes`]); no code at all is `Rejected`.
pub fn terminal_reason(code: Option<&str>) -> Reason {
    code.map_or(Reason::Rejected, |code| codes::lookup(code).refusal.into())
}

impl Step<'_> {
    pub(super) fn after_delete(&mut self, result: Result<DeleteAccepted, SaeError>) -> Action {
        let accepted = match result {
            Ok(accepted) => accepted,
            // Left unrecorded until the check answers: a crash meanwhile is resolved from SAE's
            // state by the lost-answer path, which reaches the same conclusion.
            Err(err) if self.worth_checking_gone(&err) => {
                return Action::CheckGone { rejection: err };
            }
            // It notices whether SAE answered.
            Err(err) => return self.after_sae_error(err),
        };
        self.notice_reachability(None);
        let id = accepted.change_order_id.clone();
        // From here on the deletion is SAE's, whatever happens to us. The id is recorded with
        // the first poll's result (see Action::FirstPoll), or alone if that poll is held up.
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
            let at = add(self.now, FIRST_POLL_AFTER);
            Action::FirstPoll {
                change_order_id: id,
                at,
                write_by: add(at, FIRST_POLL_HOLD),
            }
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
    pub(super) fn record_error(&mut self, err: &SaeError) {
        if let Some(request_id) = err.request_id() {
            self.next.request_id = Some(request_id.to_string());
        }
        self.next.error_code = err.code().map(str::to_string);
    }

    pub(super) fn after_sae_error(&mut self, err: SaeError) -> Action {
        self.notice_reachability(Some(&err));
        if let SaeError::NotSent { .. } = err {
            return self.unreachable(&err);
        }
        self.record_error(&err);
        match err.class() {
            ErrorClass::Retryable => self.retry_later(&err),
            // Listing instances changes nothing in SAE, so an unanswered check is simply repeated.
            ErrorClass::Ambiguous if self.pinned.dry_run => self.retry_later(&err),
            ErrorClass::Ambiguous => {
                self.answer_lost(&err.to_string());
                self.resolve_attempt()
            }
            ErrorClass::Terminal => self.refused(&err),
        }
    }

    /// Any answer from SAE, even a refusal or a lost one that may have reached it, ends an outage:
    /// only a request that surely never reached SAE keeps `saeUnreachableSince`.
    pub(super) fn notice_reachability(&mut self, err: Option<&SaeError>) {
        if !matches!(err, Some(SaeError::NotSent { .. })) {
            self.next.sae_unreachable_since = None;
        }
    }

    /// The request (a DeleteInstances written ahead, or a dry-run check) could not reach SAE: see
    /// the module docs. Its attempt is taken back and it is tried again after
    /// [`unreachable_delay`], until the deadline ([`Step::fail_deadline`] says SAE was unreachable).
    pub(super) fn unreachable(&mut self, err: &SaeError) -> Action {
        self.next.attempts = Some((self.next.attempts() - 1).max(0));
        // No SAE code: the recorded one belongs to an earlier answer and would be misread as the
        // cause; the RequestId of that answer stays, it is still the last one SAE gave.
        self.next.error_code = None;
        let since = self
            .next
            .sae_unreachable_since
            .as_ref()
            .map_or_else(|| floor_second(self.now), |t| t.0);
        self.next.sae_unreachable_since = Some(Time(since));
        let delay = unreachable_delay(
            &self.obj.spec.retry,
            self.now.duration_since(since),
            self.jitter,
        );
        let not_before = ceil_second(add(self.now, signed(delay)));
        self.next.next_attempt_time = Some(Time(not_before));
        let what = if self.pinned.dry_run {
            "the dry-run check"
        } else {
            "DeleteInstances"
        };
        // Without a RequestId (there is none: SAE never answered), the same outage gives the same
        // words; only the time of the next try changes.
        let message = format!(
            "SAE is unreachable since {since} ({}); nothing was sent, so this does not count against \
             retry.maxAttempts ({} of {} used); {what} is tried again at {not_before}",
            stable_error_text(err),
            self.next.attempts(),
            self.obj.spec.retry.max_attempts.max(1)
        );
        self.set(Phase::Retrying, Reason::SaeUnreachable, message);
        Action::WaitUntil(not_before)
    }

    pub(super) fn retry_later(&mut self, err: &SaeError) -> Action {
        let what = if self.pinned.dry_run {
            "the dry-run check"
        } else {
            "DeleteInstances without executing it"
        };
        let why = format!(
            "SAE refused {what} (attempt {} of {}): {err}",
            self.next.attempts(),
            self.obj.spec.retry.max_attempts.max(1)
        );
        self.schedule_retry(why, err.retry_after(), Some(err))
    }

    /// Retrying after backoff, or RetriesExhausted when no attempt is left. `last` is the error to
    /// name in the latter case (None: the recorded error code).
    pub(super) fn schedule_retry(
        &mut self,
        why: String,
        retry_after: Option<Duration>,
        last: Option<&SaeError>,
    ) -> Action {
        let attempts = self.next.attempts();
        if attempts >= self.obj.spec.retry.max_attempts.max(1) {
            return self.retries_exhausted(last);
        }
        let delay = backoff_delay(&self.obj.spec.retry, attempts, self.jitter, retry_after);
        let not_before = ceil_second(add(self.now, signed(delay)));
        self.next.next_attempt_time = Some(Time(not_before));
        let message = format!("{why}; trying again at {not_before}");
        self.set(Phase::Retrying, Reason::Retrying, message);
        Action::WaitUntil(not_before)
    }

    pub(super) fn retries_exhausted(&mut self, last: Option<&SaeError>) -> Action {
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
        let message = if self.pinned.dry_run {
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

    pub(super) fn refused(&mut self, err: &SaeError) -> Action {
        self.refused_with(err, None)
    }

    /// `detail`: what else is known about the rejection, added to the advice.
    pub(super) fn refused_with(&mut self, err: &SaeError, detail: Option<String>) -> Action {
        let info = err.code().map_or(&codes::UNLISTED, codes::lookup);
        let reason = Reason::from(info.refusal);
        let advice = info.advice(&AdviceContext {
            app: self.pinned.app_id,
            region: self.pinned.region_id,
            instances: &join(&self.instance_ids()),
            credentials: &self.credentials_source(),
        });
        let message = match detail {
            Some(detail) => format!("{advice}; {detail} ({err})"),
            None => format!("{advice} ({err})"),
        };
        self.set(Phase::Failed, reason, message);
        Action::Done
    }

    // ---- Observation::ChangeOrderResult -------------------------------------------------------
}
