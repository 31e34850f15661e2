//! A decision in the making ([`Step`]): the object it is about, the status it changes, and
//! how it ends: the deadline, the conditions and the events that go with a transition.
//! Nothing here chooses between paths; the other files of `decide/` do, through these helpers.

use super::*;

/// One decision in the making.
pub(super) struct Step<'a> {
    pub(super) obj: &'a SaeInstanceDeletion,
    /// What every attempt uses of app, region, ids, credentials and dry run: read these here,
    /// never from `obj.spec` (see [`Pinned`]).
    pub(super) pinned: Pinned<'a>,
    pub(super) now: Timestamp,
    pub(super) jitter: f64,
    pub(super) resolve_after: SignedDuration,
    pub(super) settle: SignedDuration,
    /// SAE's clock in the object's region, as far as known.
    pub(super) sae: SaeClock,
    pub(super) created: Timestamp,
    pub(super) deadline: Timestamp,
    pub(super) previous: SaeInstanceDeletionStatus,
    pub(super) next: SaeInstanceDeletionStatus,
    /// The reason for `next.phase`; None keeps the previous one.
    pub(super) reason: Option<Reason>,
    pub(super) events: Vec<Event>,
}

impl<'a> Step<'a> {
    pub(super) fn new(
        obj: &'a SaeInstanceDeletion,
        inputs: &Inputs,
        current: SaeInstanceDeletionStatus,
    ) -> Self {
        let created = obj
            .metadata
            .creation_timestamp
            .as_ref()
            .or(current.start_time.as_ref())
            .map_or(inputs.now, |t| t.0);
        let deadline = add(
            created,
            SignedDuration::from_secs(obj.spec.active_deadline_seconds.into()),
        );
        Self {
            obj,
            pinned: obj.pinned(),
            now: inputs.now,
            jitter: inputs.jitter,
            resolve_after: inputs.resolve_after,
            settle: inputs.settle,
            sae: inputs.sae,
            created,
            deadline,
            next: current.clone(),
            previous: current,
            reason: None,
            events: vec![],
        }
    }

    pub(super) fn set(&mut self, phase: Phase, reason: Reason, message: String) {
        self.next.phase = Some(phase);
        self.next.message = Some(message);
        self.reason = Some(reason);
    }

    pub(super) fn app(&self) -> &str {
        self.pinned.app_id
    }

    pub(super) fn namespace(&self) -> &str {
        self.obj.metadata.namespace.as_deref().unwrap_or("default")
    }

    /// The ids every attempt sends: those recorded by the first attempt, else the spec's.
    pub(super) fn instance_ids(&self) -> Vec<String> {
        self.pinned.instance_ids.to_vec()
    }

    pub(super) fn past_deadline(&self) -> bool {
        self.now >= self.deadline
    }

    /// Where the credentials come from, for messages that tell a human what to fix.
    pub(super) fn credentials_source(&self) -> String {
        match self.pinned.credentials_ref {
            Some(r) => format!("Secret {}/{}", self.namespace(), r.name),
            None => {
                "the controller's own credentials (its RRSA role, or ALIBABA_CLOUD_ACCESS_KEY_ID / \
                     ALIBABA_CLOUD_ACCESS_KEY_SECRET)"
                    .to_string()
            }
        }
    }
}

impl Step<'_> {
    pub(super) fn fail_deadline(&mut self) -> Action {
        let status = &self.next;
        if status.phase == Some(Phase::Submitting) {
            return self.unresolved_at_deadline();
        }
        // Refused by a deletion policy until the end: Failed with the same reason, and why.
        if status.phase == Some(Phase::Pending)
            && let Some(reason) = self.previous_reason().filter(|r| r.is_policy_refusal())
        {
            let refused = status.message.clone().unwrap_or_default();
            let message = format!(
                "activeDeadlineSeconds ({} s) passed while a deletion policy refused it: {refused}; no \
                 instance was deleted",
                self.obj.spec.active_deadline_seconds
            );
            self.set(Phase::Failed, reason, message);
            return Action::Done;
        }
        let what = match status.phase {
            Some(Phase::InProgress) => {
                let id = status.change_order_id.as_deref().unwrap_or("?");
                let last = status
                    .change_order_status
                    .as_deref()
                    .unwrap_or("Preparing or Executing");
                format!(
                    "change order {id} was not finished (last status {last}); it may still finish: check change \
                     order {id} in the SAE console"
                )
            }
            Some(Phase::Retrying) if status.sae_unreachable_since.is_some() => {
                let since = status
                    .sae_unreachable_since
                    .as_ref()
                    .map_or_else(|| "?".to_string(), |t| t.0.to_string());
                let what = if self.pinned.dry_run {
                    "the dry-run check"
                } else {
                    "DeleteInstances"
                };
                // Attempts SAE did answer before the outage were refused or proven not executed.
                let tries = if self.pinned.dry_run {
                    "checks"
                } else {
                    "attempts"
                };
                let earlier = match status.attempts() {
                    0 => String::new(),
                    n => format!(" ({tries} before that: {n}, none executed)"),
                };
                format!(
                    "SAE was unreachable since {since}: {what} could not be sent since then, so nothing was \
                     sent to SAE{earlier}; no instance was deleted"
                )
            }
            Some(Phase::Retrying) if self.pinned.dry_run => {
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
            _ if self.pinned.dry_run => "the dry-run check had not completed".to_string(),
            _ => {
                // Pending after attempts: each was refused or proven not executed.
                let sent = match status.attempts() {
                    0 => "DeleteInstances had not been sent".to_string(),
                    n => format!("none of its {n} DeleteInstances attempts was executed"),
                };
                match status.message.as_deref() {
                    Some(m) if self.previous_reason() == Some(Reason::WaitingForApplication) => {
                        format!("{m}; {sent}; no instance was deleted")
                    }
                    Some(m) if self.previous_reason() == Some(Reason::CredentialsNotFound) => {
                        format!("{sent} ({m}); no instance was deleted")
                    }
                    _ => format!("{sent}; no instance was deleted"),
                }
            }
        };
        let message = format!(
            "activeDeadlineSeconds ({} s) passed while {what}",
            self.obj.spec.active_deadline_seconds
        );
        self.set(Phase::Failed, Reason::DeadlineExceeded, message);
        Action::Done
    }

    /// The deadline came before SAE's state told whether the attempt was executed. Sending now
    /// could delete twice, so a human decides, with what to look for.
    pub(super) fn unresolved_at_deadline(&mut self) -> Action {
        let since = self.attempt_time();
        let message = format!(
            "activeDeadlineSeconds ({} s) passed before it was known whether DeleteInstances attempt {} was \
             executed; it is not sent again. List the change orders of app {} created since {since} in the SAE \
             console: if one deleted instances {}, the deletion happened; otherwise nothing was deleted",
            self.obj.spec.active_deadline_seconds,
            self.next.attempts(),
            self.app(),
            join(&self.instance_ids())
        );
        self.set(Phase::Failed, Reason::OutcomeUnknown, message);
        Action::Done
    }

    pub(super) fn previous_reason(&self) -> Option<Reason> {
        self.previous.reason().and_then(|r| r.parse().ok())
    }

    /// Clusters without CEL let users edit the spec. What the first attempt recorded stays
    /// authoritative: a second, different DeleteInstances could delete instances twice over, ids
    /// sent to another app or region would be reported as already gone while they still exist,
    /// and a dry run must not become a deletion. Say so once per edit (generation), naming the
    /// fields and the values still in use.
    pub(super) fn notice_ignored_spec_change(&mut self) {
        let (Some(generation), Some(observed)) = (
            self.obj.metadata.generation,
            self.previous.observed_generation,
        ) else {
            return;
        };
        if self.previous.attempts() == 0 || generation <= observed {
            return;
        }
        let (pinned, spec) = (self.pinned, &self.obj.spec);
        let mut ignored: Vec<(&str, String)> = vec![];
        let recorded_ids: BTreeSet<&String> = pinned.instance_ids.iter().collect();
        if recorded_ids != spec.instance_ids.iter().collect() {
            ignored.push(("instanceIds", join(pinned.instance_ids)));
        }
        if pinned.app_id != spec.app_id {
            ignored.push(("appId", pinned.app_id.to_string()));
        }
        if pinned.region_id != spec.region_id {
            ignored.push(("regionId", pinned.region_id.to_string()));
        }
        if pinned.credentials_ref != spec.credentials_ref.as_ref() {
            // A Secret's name only, never its contents.
            let recorded = match pinned.credentials_ref {
                Some(r) => format!("Secret {}", r.name),
                None => "none (the controller's own credentials)".to_string(),
            };
            ignored.push(("credentialsRef", recorded));
        }
        if pinned.dry_run != spec.dry_run {
            ignored.push(("dryRun", pinned.dry_run.to_string()));
        }
        if ignored.is_empty() {
            return;
        }
        let fields: Vec<String> = ignored.iter().map(|(f, _)| format!("spec.{f}")).collect();
        let values: Vec<String> = ignored.iter().map(|(f, v)| format!("{f} {v}")).collect();
        let first = if pinned.dry_run {
            "dry-run check"
        } else {
            "DeleteInstances attempt"
        };
        self.events.push(Event {
            warning: true,
            reason: EVENT_SPEC_CHANGE_IGNORED.to_string(),
            note: format!(
                "{} changed after the first {first}; every attempt keeps what that one recorded: {} (create a \
                 new SaeInstanceDeletion to change them)",
                fields.join(", "),
                values.join("; ")
            ),
        });
    }

    pub(super) fn finish(mut self, action: Action) -> Decision {
        if !self.next.is_terminal() && action != Action::Done && self.past_deadline() {
            // Results that arrive after the deadline are recorded first (above), then end it.
            self.fail_deadline();
            return self.finish(Action::Done);
        }
        let action = match action {
            Action::WaitUntil(t) => Action::WaitUntil(t.min(self.deadline)),
            Action::FirstPoll {
                change_order_id,
                at,
                write_by,
            } => Action::FirstPoll {
                change_order_id,
                at: at.min(self.deadline),
                write_by: write_by.min(self.deadline),
            },
            other => other,
        };
        self.next.observed_generation = self.obj.metadata.generation;
        if self.next.is_terminal() {
            self.next.completion_time = Some(time(self.now));
            self.next.next_attempt_time = None;
            // Kept only where it explains the end: a deadline that came while SAE was unreachable.
            // Any other end came from an answer of SAE (a dry run's check, say).
            if self.reason != Some(Reason::DeadlineExceeded) {
                self.next.sae_unreachable_since = None;
            }
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

    pub(super) fn update_conditions(&mut self, phase: Phase, reason: &str) {
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

    pub(super) fn transition_event(&self, phase: Phase, reason: String) -> Event {
        let warning = matches!(phase, Phase::Failed | Phase::Retrying)
            || reason
                .parse::<Reason>()
                .is_ok_and(Reason::is_policy_refusal)
            || reason == Reason::CredentialsNotFound.as_str()
            || reason == Reason::OutcomeUnknown.as_str();
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
