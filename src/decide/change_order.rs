//! Following a change order ([`Action::PollChangeOrder`], [`Action::FirstPoll`]): its status
//! read into the object's, the zone of `CreateTime` learned from the attempt's own change order,
//! a send taken back ([`Observation::NotSent`]), and the dry run's instance check.

use super::*;

impl Step<'_> {
    /// A change order of this object's attempt was created between its write-ahead and now, so
    /// shortly after the send its CreateTime teaches the zone SAE writes times in. (An adopted
    /// change order teaches the same: a zone-less time is only ever adopted once the zone is
    /// known, and then it agrees with it.)
    pub(super) fn learn_zone(&mut self, order: &ChangeOrderDetail) {
        let Some(created) = order.create_time.as_deref().and_then(parse_sae_time) else {
            return;
        };
        let sent = self.attempt_time();
        let span = self.now.duration_since(sent);
        if span.is_negative() || span > LEARN_ZONE_WITHIN {
            return;
        }
        let zone = match created {
            SaeTime::Absolute(_) => CreateTimeZone::Named,
            civil => {
                // The change order was created in [sent, now] by our clock; SAE wrote that
                // moment by its own clock, which runs `sae.offset` ahead of ours.
                let middle = self.on_sae_clock(add(sent, span / 2));
                let Some((offset, rest)) = civil.offset_at(middle) else {
                    return;
                };
                // What the offset leaves over is the error of the measured clock offset plus at
                // most half the span; more than that means the time is not what we take it for.
                if rest.abs() > span / 2 + CREATE_TIME_SLACK {
                    return;
                }
                CreateTimeZone::Offset(offset)
            }
        };
        self.next.create_time_zone = zone.to_status();
    }

    /// The recorded attempt never left: it is taken back (not counted) and the object starts
    /// over, through the queue, at once.
    pub(super) fn not_sent(&mut self, why: String) -> Action {
        let attempt = self.next.attempts();
        self.next.attempts = Some((attempt - 1).max(0));
        let message = format!(
            "DeleteInstances attempt {attempt} for app {} was not sent: {why}; it will be tried again",
            self.app()
        );
        self.set(Phase::Pending, Reason::Pending, message);
        Action::WaitUntil(add(self.now, FIRST_POLL_AFTER))
    }

    pub(super) fn after_poll(&mut self, result: Result<ChangeOrderDetail, SaeError>) -> Action {
        let id = self.next.change_order_id.clone().unwrap_or_default();
        if let Ok(order) = &result {
            self.learn_zone(order);
        }
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
        self.apply_change_order_status(
            &id,
            ChangeOrderStatus::from_code(order.status),
            order.sub_status,
            order.error_message.as_deref(),
            order.request_id,
        )
    }

    /// Where a change order's status leaves the object. `request_id` is that of the answer that
    /// reported it (kept when final).
    pub(super) fn apply_change_order_status(
        &mut self,
        id: &str,
        status: ChangeOrderStatus,
        sub_status: Option<i64>,
        error_message: Option<&str>,
        request_id: Option<String>,
    ) -> Action {
        // Preparing/Executing add nothing to what InProgress already says; recording them would
        // cost one more status write per deletion (the happy path is meant to take three).
        if !(status.is_preparing_or_executing() && self.next.change_order_status.is_none()) {
            self.next.change_order_status = Some(status.name());
        }
        let instances = join(&self.instance_ids());
        match status {
            ChangeOrderStatus::Succeeded => {
                self.next.request_id = request_id.or(self.next.request_id.take());
                let message = format!(
                    "change order {id} finished: instances {instances} of app {} deleted",
                    self.app()
                );
                self.set(Phase::Succeeded, Reason::Succeeded, message);
                Action::Done
            }
            status if status.ended_without_deleting() => {
                self.next.request_id = request_id.or(self.next.request_id.take());
                let sae_says = error_message
                    .filter(|m| !m.is_empty())
                    .unwrap_or("no error message");
                let message = format!(
                    "change order {id} ended {}: {sae_says}. Some instances may have been deleted: check change \
                     order {id} in the SAE console",
                    status.name()
                );
                self.set(Phase::Failed, Reason::ChangeOrderFailed, message);
                Action::Done
            }
            status => {
                let state = match (status, sub_status) {
                    (ChangeOrderStatus::Executing, Some(1)) => {
                        "is executing with an exception: it may need a manual rollback in the SAE console".to_string()
                    }
                    (ChangeOrderStatus::WaitingManualRelease, _) => "is waiting for a manual batch release in the SAE console".to_string(),
                    (ChangeOrderStatus::PendingApproval, _) => "is waiting for approval in the SAE console".to_string(),
                    _ => format!("is {}", status.name()),
                };
                let message = format!("change order {id} deleting instances {instances} {state}");
                self.set(Phase::InProgress, Reason::WaitingForChangeOrder, message);
                Action::WaitUntil(add(self.now, self.poll_interval()))
            }
        }
    }

    // ---- Observation::DryRunResult ------------------------------------------------------------

    pub(super) fn after_check(&mut self, result: Result<Vec<String>, SaeError>) -> Action {
        self.record_attempt();
        let existing = match result {
            Ok(ids) => ids.into_iter().collect::<BTreeSet<_>>(),
            Err(err) => return self.after_sae_error(err),
        };
        self.next.error_code = None;
        let wanted = self.pinned.instance_ids;
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
}
