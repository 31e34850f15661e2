//! A lost answer: what SAE's change-order list and instance list prove about an attempt whose
//! answer never came ([`Action::ResolveAttempt`]), and about a rejected one whose instances may
//! already be gone ([`Action::CheckGone`]). Adopts a change order only on evidence; never sends.

use super::*;

/// Whether `orders`, every row read so far in the order SAE listed them (whole pages), surely
/// hold every change order created since `since`: one of them is surely older than `since`, and
/// all of them came newest first. SAE documents no order for ListChangeOrders, so the order is
/// checked, not assumed; a list in any other order covers the window only once read to its end.
pub fn list_covers(orders: &[FoundChangeOrder], since: Timestamp, zone: CreateTimeZone) -> bool {
    let times: Vec<Timestamp> = orders
        .iter()
        .filter_map(|o| o.created)
        .filter_map(|t| {
            zone.instant(t)
                .or_else(|| t.bounds().map(|(earliest, _)| earliest))
        })
        .collect();
    let newest_first = times.windows(2).all(|pair| pair[0] >= pair[1]);
    newest_first && orders.iter().any(|o| listed_past(o, since, zone))
}

/// Whether `order` was surely created before `since`, so that a list (newest first) that has
/// reached it holds every change order created since. An unreadable time is never "surely".
pub fn listed_past(order: &FoundChangeOrder, since: Timestamp, zone: CreateTimeZone) -> bool {
    let Some(created) = order.created else {
        return false;
    };
    let latest = match zone.instant(created) {
        Some(t) => Some(t),
        None => created.bounds().map(|(_, latest)| latest),
    };
    latest.is_some_and(|t| add(t, CREATE_TIME_SLACK) < since)
}

/// How a listed change order relates to a lost attempt.
pub(super) enum Fit {
    /// Proven not the attempt's: outside its window, or contradicted by the instances.
    Outside,
    /// In the window, and everything SAE shows agrees with it being the attempt's.
    Candidate,
    /// Could be the attempt's, but cannot be shown to be: the reason.
    Unclear(String),
}

impl Step<'_> {
    /// Records that the answer to the current attempt is missing; the attempt may have been
    /// executed, so it is not sent again before SAE's state says otherwise.
    pub(super) fn answer_lost(&mut self, cause: &str) {
        let message = format!(
            "the answer to DeleteInstances attempt {} for app {} was lost ({cause}); checking SAE's change orders \
             and instances from {} on (SAE's lists may lag its writes by up to {} s) to learn whether it was \
             executed before anything is sent again",
            self.next.attempts(),
            self.app(),
            self.settled_at(),
            self.settle.as_secs()
        );
        self.set(Phase::Submitting, Reason::OutcomeUnknown, message);
    }

    /// The next step for an attempt whose answer is lost: wait until a look can conclude, else
    /// look. A look before [`Self::settled_at`] could not conclude anything (SAE may still act, or
    /// its lists may not show it yet), and neither can one while SAE's times carry no zone and the
    /// zone is unknown: neither is worth a token.
    pub(super) fn resolve_attempt(&mut self) -> Action {
        let settled = self.settled_at();
        if self.now < settled {
            return Action::WaitUntil(settled);
        }
        if !self.sae.zone.is_known() && self.sae.zoneless_times {
            let message = format!(
                "the answer to DeleteInstances attempt {} was lost; SAE writes change-order times without a zone \
                 and the zone for region {} is not known yet, so SAE's list cannot show which change order is \
                 whose; it is learned from SAE's answer about any change order this controller creates there \
                 (or set --sae-create-time-offset); nothing is sent again before SAE's state tells",
                self.next.attempts(),
                self.pinned.region_id
            );
            self.set(Phase::Submitting, Reason::OutcomeUnknown, message);
            return Action::WaitUntil(add(self.now, ZONE_RECHECK));
        }
        Action::ResolveAttempt {
            instance_ids: self.instance_ids(),
            // Read back a margin further than the window needs, so that the look still covers
            // it when the measured clock offset moves a little meanwhile.
            since: self
                .window_on_sae_clock()
                .0
                .checked_sub(LIST_MARGIN)
                .unwrap_or(Timestamp::MIN),
        }
    }

    /// `t` (our clock) as SAE's clock shows it: what a change order created at `t` carries.
    pub(super) fn on_sae_clock(&self, t: Timestamp) -> Timestamp {
        add(t, self.sae.offset)
    }

    /// The window as SAE's clock writes it: shifted by the measured offset, and joined with the
    /// unshifted window, so that a measurement gone wrong can only widen it (more is unclear or a
    /// candidate), never move it off the attempt's change order (which would prove "not executed").
    pub(super) fn window_on_sae_clock(&self) -> (Timestamp, Timestamp) {
        let (from, until) = self.window();
        (
            from.min(self.on_sae_clock(from)),
            until.max(self.on_sae_clock(until)),
        )
    }

    /// From here on a look can conclude: SAE can no longer act on the attempt, and its lists had
    /// the settle time ([`SETTLE`] by default) to show what it did.
    pub(super) fn settled_at(&self) -> Timestamp {
        ceil_second(add(self.last_moment(), self.settle))
    }

    /// When the unresolved attempt was written ahead: its send came after this.
    pub(super) fn attempt_time(&self) -> Timestamp {
        self.next
            .last_attempt_time
            .as_ref()
            .map_or(self.created, |t| t.0)
    }

    /// The latest moment SAE can have acted on the attempt: its request left by
    /// `lastAttemptTime` (rounded down to the second) plus [`SEND_BOUND`], and SAE may act on it
    /// until `resolve_after` after that.
    pub(super) fn last_moment(&self) -> Timestamp {
        add(
            add(
                add(self.attempt_time(), RECORDED_TIME_RESOLUTION),
                SEND_BOUND,
            ),
            self.resolve_after,
        )
    }

    /// The CreateTimes a change order of the attempt can carry: from the write-ahead to the
    /// last moment SAE can act, widened by the clock slack, and by one second more at the start
    /// because SAE truncates CreateTime to the second.
    pub(super) fn window(&self) -> (Timestamp, Timestamp) {
        let from = self
            .attempt_time()
            .checked_sub(CREATE_TIME_SLACK + RECORDED_TIME_RESOLUTION)
            .unwrap_or(Timestamp::MIN);
        (from, add(self.last_moment(), CREATE_TIME_SLACK))
    }

    /// Each look costs several SAE calls: after one that could not conclude, look less often the
    /// longer it takes (about doubling), spread by the jitter so that apps do not look in step.
    pub(super) fn resolve_interval(&self) -> SignedDuration {
        let waited = clamp(
            self.now.duration_since(self.settled_at()),
            MIN_RESOLVE_INTERVAL,
            MAX_RESOLVE_INTERVAL,
        );
        waited.mul_f64(0.75 + self.jitter / 2.0)
    }

    /// Still looking: say why (once per reason; the same evidence again writes nothing).
    pub(super) fn keep_looking(&mut self, why: String) -> Action {
        let message = format!(
            "the answer to DeleteInstances attempt {} was lost; {why}; nothing is sent again before SAE's \
             state tells; checking again",
            self.next.attempts()
        );
        self.set(Phase::Submitting, Reason::OutcomeUnknown, message);
        Action::WaitUntil(add(self.now, self.resolve_interval()))
    }

    pub(super) fn after_resolve(&mut self, result: Result<Evidence, SaeError>) -> Action {
        let attempt = self.next.attempts();
        let evidence = match result {
            Ok(evidence) => evidence,
            Err(err) => {
                // Without the RequestId, so that the same failure again causes no status write.
                let message = format!(
                    "cannot check whether DeleteInstances attempt {attempt} was executed (checking again): {}",
                    stable_error_text(&err)
                );
                self.set(Phase::Submitting, Reason::OutcomeUnknown, message);
                return Action::WaitUntil(add(self.now, self.resolve_interval()));
            }
        };
        // A look shared with another object may have begun before this attempt's lists settled,
        // or (when the measured clock offset moved meanwhile) not reach back far enough.
        let settled = self.settled_at();
        if evidence.looked_at < settled || evidence.since > self.window_on_sae_clock().0 {
            return Action::WaitUntil(settled.max(add(self.now, EARLY_LOOK_RETRY)));
        }
        // Times that name their zone teach it as well as a poll does (it is the region's).
        if self.next.create_time_zone.is_none() {
            self.next.create_time_zone = evidence.zone_learned.to_status();
        }
        let mut candidates = vec![];
        let mut unclear = vec![];
        for order in &evidence.change_orders {
            match self.fit(order, &evidence) {
                Fit::Outside => {}
                Fit::Candidate => candidates.push(order),
                Fit::Unclear(why) => unclear.push(format!("{} ({why})", order.change_order_id)),
            }
        }
        if let ([only], []) = (candidates.as_slice(), unclear.as_slice()) {
            let created = only.created.and_then(|t| evidence.zone.instant(t));
            return self.adopt((*only).clone(), created);
        }
        if !candidates.is_empty() || !unclear.is_empty() {
            let mut named: Vec<String> = candidates
                .iter()
                .map(|o| o.change_order_id.clone())
                .collect();
            named.extend(unclear);
            return self.keep_looking(format!(
                "change orders of app {} that could be its own cannot be told apart from others': {}",
                self.app(),
                named.join(", ")
            ));
        }
        // Nothing in SAE's list can be ours (every row that could be was placed: an unknown zone
        // leaves its rows unclear, above). That proves something only if the list covered the
        // whole window.
        if !evidence.complete {
            return self.keep_looking(format!(
                "SAE's change-order list for app {} did not reach back to {} (SAE's clock)",
                self.app(),
                self.window_on_sae_clock().0
            ));
        }
        let existing: BTreeSet<&String> = evidence.existing_instance_ids.iter().collect();
        let (present, missing): (Vec<String>, Vec<String>) = self
            .instance_ids()
            .into_iter()
            .partition(|id| existing.contains(id));
        if present.is_empty() {
            return self.already_deleted(format!(
                "none of instances {} exists in app {} any more, and SAE lists no change order from \
                 DeleteInstances attempt {attempt}: they were removed by something else",
                join(&missing),
                self.app()
            ));
        }
        if !missing.is_empty() {
            let message = format!(
                "the answer to DeleteInstances attempt {attempt} was lost; SAE lists no change order from it, \
                 but instances {} of app {} are gone while {} still exist: something else is deleting them; \
                 checking again",
                join(&missing),
                self.app(),
                join(&present)
            );
            self.set(Phase::Submitting, Reason::OutcomeUnknown, message);
            return Action::WaitUntil(add(self.now, self.resolve_interval()));
        }
        // The look began after the settle time, which is after SAE's last moment to act on the
        // attempt: it can no longer act on it, and it did not.
        self.not_executed()
    }

    /// How one listed change order relates to the lost attempt, by its time and by what the
    /// instances show. Only a proof excludes a change order; anything short of it keeps it.
    pub(super) fn fit(&self, order: &FoundChangeOrder, evidence: &Evidence) -> Fit {
        // SAE writes its own clock's times: compare them with the window as that clock shows it.
        let (from, until) = self.window_on_sae_clock();
        let Some(created) = order.created else {
            return Fit::Unclear("its CreateTime cannot be read".into());
        };
        // A change order that had ended before the attempt's window began is someone else's.
        let ended_before = order
            .finished
            .and_then(|t| evidence.zone.instant(t))
            .is_some_and(|t| t < from);
        match evidence.zone.instant(created) {
            Some(_) if ended_before => return Fit::Outside,
            Some(t) if t < from || until < t => return Fit::Outside,
            Some(_) => {}
            None => {
                let overlaps = created
                    .bounds()
                    .is_some_and(|(earliest, latest)| earliest <= until && from <= latest);
                return if overlaps {
                    Fit::Unclear(
                        "its CreateTime names no zone and the zone is not known yet".into(),
                    )
                } else {
                    Fit::Outside
                };
            }
        }
        if !order.typed {
            return Fit::Unclear("it names no change-order type".into());
        }
        let ours = self.instance_ids();
        let existing: BTreeSet<&String> = evidence.existing_instance_ids.iter().collect();
        let terminating: BTreeSet<&String> = evidence.terminating_instance_ids.iter().collect();
        let running_on = ours
            .iter()
            .any(|id| existing.contains(id) && !terminating.contains(id));
        let touched = ours
            .iter()
            .any(|id| !existing.contains(id) || terminating.contains(id));
        match ChangeOrderStatus::from_code(order.status) {
            // A finished deletion of our ids leaves none of them running, so this one deleted
            // others.
            ChangeOrderStatus::Succeeded if running_on => Fit::Outside,
            // Ours would be terminating some of our ids by now, or have removed them.
            ChangeOrderStatus::Executing if !touched => Fit::Unclear(format!(
                "it is executing but none of instances {} is being terminated",
                join(&ours)
            )),
            _ => Fit::Candidate,
        }
    }
    /// The lost attempt was accepted after all: from here on it is followed like any other.
    /// A status that is already final is mapped at once (no extra DescribeChangeOrder call);
    /// otherwise the next poll follows it.
    pub(super) fn adopt(&mut self, order: FoundChangeOrder, created: Option<Timestamp>) -> Action {
        let id = order.change_order_id;
        let created = created.map_or_else(String::new, |t| t.to_string());
        let adopted = format!(
            "adopted change order {id} (created {created}) for DeleteInstances attempt {} whose answer was lost",
            self.next.attempts()
        );
        self.next.change_order_id = Some(id.clone());
        self.next.error_code = None;
        self.next.next_attempt_time = None;
        let status = ChangeOrderStatus::from_code(order.status);
        if !self.obj.spec.wait_for_completion && !status.is_final() {
            self.next.change_order_status = Some(status.name());
            let message = format!(
                "{adopted}; not following it (waitForCompletion is false): see the SAE console for its result"
            );
            self.set(Phase::Succeeded, Reason::Succeeded, message);
            return Action::Done;
        }
        let action = self.apply_change_order_status(&id, status, None, None, None);
        let followed = self.next.message.take().unwrap_or_default();
        self.next.message = Some(format!("{adopted}; {followed}"));
        action
    }

    /// Proven not executed: the attempt counts as one SAE refused. It goes through Retrying
    /// (with backoff) rather than straight to a new write-ahead because only a start knows whose
    /// turn the app is, and because a lost answer usually means SAE was struggling.
    pub(super) fn not_executed(&mut self) -> Action {
        let waited = self.now.duration_since(self.attempt_time()).as_secs();
        let why = format!(
            "DeleteInstances attempt {} was not executed: {waited} s after it was sent, SAE lists no change \
             order from it and instances {} all still exist",
            self.next.attempts(),
            join(&self.instance_ids())
        );
        self.schedule_retry(why, None, None)
    }

    pub(super) fn already_deleted(&mut self, why: String) -> Action {
        self.next.error_code = None;
        self.next.next_attempt_time = None;
        let message = format!("{why}; nothing is left to delete");
        self.set(Phase::Succeeded, Reason::AlreadyDeleted, message);
        Action::Done
    }

    /// Whether a rejection should first be checked for "the instances are already gone".
    pub(super) fn worth_checking_gone(&self, err: &SaeError) -> bool {
        !self.pinned.dry_run
            && !self.past_deadline()
            && err.class() == ErrorClass::Terminal
            && terminal_reason(err.code()) == Reason::InvalidParameter
    }

    pub(super) fn after_gone_check(
        &mut self,
        rejection: SaeError,
        existing: Result<Vec<String>, SaeError>,
    ) -> Action {
        self.record_error(&rejection);
        let ids = self.instance_ids();
        let existing = match existing {
            Ok(existing) => existing.into_iter().collect::<BTreeSet<_>>(),
            Err(err) => {
                let detail = format!(
                    "which of them are missing is unknown: listing the app's instances failed: {}",
                    stable_error_text(&err)
                );
                return self.refused_with(&rejection, Some(detail));
            }
        };
        let missing: Vec<String> = ids
            .iter()
            .filter(|id| !existing.contains(*id))
            .cloned()
            .collect();
        if !ids.is_empty() && missing.len() == ids.len() {
            return self.already_deleted(format!(
                "SAE rejected DeleteInstances ({}) because none of instances {} exists in app {} any more: they \
                 were removed before this object's request",
                rejection.code().unwrap_or("invalid parameter"),
                join(&ids),
                self.app()
            ));
        }
        let detail = (!missing.is_empty()).then(|| {
            format!(
                "instances {} do not exist in app {} (the others do)",
                join(&missing),
                self.app()
            )
        });
        self.refused_with(&rejection, detail)
    }

    // ---- Observation::DeleteResult ------------------------------------------------------------
}
