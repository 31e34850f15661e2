//! How time moves change orders on: [`Model::advance`] ends those whose time is up (and removes
//! the instances a CoDeleteInstances deleted), makes console change orders whose time has come, and
//! keeps the one-change-order-per-app rule; plus the script of the next API-made change order,
//! read from the app's `slowStart` / `changeOrderResult` faults.
//!
//! The change order's own phases and rendering live in `change_order`; this is only the model's
//! bookkeeping of them.

use jiff::{SignedDuration, Timestamp};

use super::{Model, push_bounded};
use crate::simulator::api_error::{ApiError, with_message};
use crate::simulator::change_order::{self, ChangeOrder, ChangeOrderSource, Scheduled, Script};
use crate::simulator::ledger::DeletionRecord;
use crate::simulator::seed::FaultSpec;

/// Finished change orders beyond this count are forgotten, oldest first.
pub const CHANGE_ORDER_CAPACITY: usize = 100_000;

impl Model {
    /// Brings the model to `now`: ends the change orders whose time is up (a successful
    /// CoDeleteInstances removes its instances then, a failed one only its `removedInstances`) and
    /// makes the console change orders whose time has come, once their app is free. Repeats until
    /// nothing changes, since one that ends can free its app for a queued one that also ends.
    pub(super) fn advance(&mut self, now: Timestamp) {
        loop {
            let mut changed = false;
            for i in 0..self.change_orders.len() {
                let co = &self.change_orders[i];
                if !co.finished && co.ends <= now {
                    self.finish(i);
                    changed = true;
                }
            }
            let due = self
                .scheduled
                .iter()
                .enumerate()
                .filter(|(_, s)| s.at <= now && self.running_change_order(&s.app_id).is_none())
                .min_by_key(|(_, s)| s.at)
                .map(|(pos, _)| pos);
            if let Some(pos) = due {
                let scheduled = self.scheduled.remove(pos);
                self.make_console_change_order(scheduled);
                changed = true;
            }
            if !changed {
                break;
            }
        }
        if self.change_orders.len() > CHANGE_ORDER_CAPACITY
            && let Some(pos) = self.change_orders.iter().position(|co| co.finished)
        {
            self.change_orders.remove(pos);
        }
    }

    fn finish(&mut self, i: usize) {
        let co = &mut self.change_orders[i];
        co.finished = true;
        let co = &self.change_orders[i];
        if co.deletes_instances()
            && let Some(groups) = self.apps.get_mut(&co.app_id)
        {
            let gone = co.removes();
            for g in groups.iter_mut() {
                g.instance_ids.retain(|id| !gone.contains(id));
            }
        }
        if let Some(rec) = self
            .deletions
            .iter_mut()
            .rev()
            .find(|d| d.change_order_id == co.id)
        {
            rec.final_status = Some(co.final_status);
            rec.finished_time = Some(co.ends);
        }
    }

    /// The app's change order that has not ended, if any.
    pub(super) fn running_change_order(&self, app_id: &str) -> Option<&ChangeOrder> {
        self.change_orders
            .iter()
            .find(|co| co.app_id == app_id && !co.finished)
    }

    /// Makes a due console change order, at its time or when the app's last one ended.
    fn make_console_change_order(&mut self, s: Scheduled) {
        let freed = self
            .change_orders
            .iter()
            .filter(|co| co.app_id == s.app_id)
            .map(|co| co.ends)
            .max();
        let created = freed.map_or(s.at, |freed| freed.max(s.at));
        let spec = s.spec;
        // Validated when scheduled.
        let duration = |v, what| change_order::seconds(v, what).unwrap_or_default();
        let script = Script {
            approval: duration(spec.approval_seconds, "approvalSeconds"),
            preparing: duration(spec.preparing_seconds, "preparingSeconds"),
            executing: match spec.seconds {
                Some(_) => duration(spec.seconds, "seconds"),
                None => self.config.change_order_duration,
            },
            final_status: spec.status.unwrap_or(2),
            error_message: spec
                .error_message
                .clone()
                .unwrap_or_else(|| match spec.status {
                    Some(2) | None => String::new(),
                    Some(status) => format!("Change order ended with status {status} (console)."),
                }),
            removed_instances: spec.removed_instances as usize,
        };
        self.push_change_order(ChangeOrder::new(
            s.id,
            s.app_id,
            spec.co_type_code,
            ChangeOrderSource::Console,
            spec.instance_ids,
            created,
            script,
        ));
    }

    /// Records a new change order (and its deletion, for a CoDeleteInstances).
    pub(super) fn push_change_order(&mut self, co: ChangeOrder) {
        if co.deletes_instances() {
            push_bounded(
                &mut self.deletions,
                DeletionRecord {
                    app_id: co.app_id.clone(),
                    change_order_id: co.id.clone(),
                    instance_ids: co.instance_ids.clone(),
                    time: co.created,
                    source: co.source,
                    final_status: None,
                    finished_time: None,
                },
            );
        }
        self.change_orders.push(co);
    }

    /// The change order DescribeChangeOrder shows for `id` at `now`. One younger than
    /// `describe_lag` is not found yet: the same error, word for word, as an id that never
    /// existed, since a lagging read store cannot tell the two apart either.
    pub(super) fn described_change_order(
        &self,
        id: &str,
        now: Timestamp,
    ) -> Result<&ChangeOrder, ApiError> {
        let lag = self.config.describe_lag;
        self.change_orders
            .iter()
            .find(|co| co.id == id && co.visible_after(lag, now))
            .ok_or_else(|| with_message(format!("The change order {id} does not exist.")))
    }

    /// The phases and end of the app's next API-made change order, from its pending
    /// `slowStart` and `changeOrderResult` faults (each use takes one of their `times`).
    pub(super) fn script_for_api_change_order(&mut self, app_id: &str) -> Script {
        // `preparing_seconds` is the default for every API-made change order; a `slowStart`
        // fault, taken below, replaces both waits for the change order it applies to.
        let mut script = Script {
            approval: SignedDuration::ZERO,
            preparing: self.config.preparing_seconds,
            executing: self.config.change_order_duration,
            final_status: 2,
            error_message: String::new(),
            removed_instances: 0,
        };
        let Some(list) = self.faults.get_mut(app_id) else {
            return script;
        };
        let mut take = |wanted: fn(&FaultSpec) -> bool| {
            let pos = list.iter().position(|f| wanted(&f.spec))?;
            let spec = list[pos].spec.clone();
            list[pos].remaining -= 1;
            if list[pos].remaining == 0 {
                list.remove(pos);
            }
            Some(spec)
        };
        if let Some(FaultSpec::ChangeOrderResult {
            status,
            error_message,
            removed_instances,
            ..
        }) = take(|f| matches!(f, FaultSpec::ChangeOrderResult { .. }))
        {
            script.final_status = status;
            script.error_message = error_message
                .unwrap_or_else(|| format!("Change order ended with status {status} (scripted)."));
            script.removed_instances = removed_instances as usize;
        }
        if let Some(FaultSpec::SlowStart {
            preparing_seconds,
            approval_seconds,
            ..
        }) = take(|f| matches!(f, FaultSpec::SlowStart { .. }))
        {
            // Validated when added.
            let d = |s| SignedDuration::try_from_secs_f64(s).unwrap_or_default();
            script.approval = d(approval_seconds);
            script.preparing = d(preparing_seconds);
        }
        script
    }
}
