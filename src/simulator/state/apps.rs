//! The admin side of apps: creating them and their groups, scripting their faults, scheduling
//! change orders made in SAE's console, and the admin view of one app.
//!
//! Validates what it is given (from `seed`) and leaves the running of change orders to
//! `change_orders`; no SAE operation is answered here.

use std::collections::HashSet;

use jiff::{SignedDuration, Timestamp};
use serde_json::{Value, json};

use super::{Group, Model};
use crate::simulator::change_order::{ConsoleChangeOrderSpec, Scheduled};
use crate::simulator::seed::{AppFaults, AppSpec, FaultSpec, PendingFault};

impl Model {
    /// Creates the app or replaces its groups; its change orders and faults stay.
    pub fn upsert_app(&mut self, spec: AppSpec, now: Timestamp) -> Result<(), String> {
        self.advance(now);
        if spec.app_id.trim().is_empty() {
            return Err("appId must not be empty".into());
        }
        let mut seen = HashSet::new();
        let mut groups = Vec::new();
        for g in spec.groups {
            if g.group_id.trim().is_empty() {
                return Err(format!("app {}: groupId must not be empty", spec.app_id));
            }
            for id in &g.instance_ids {
                if id.trim().is_empty() || id.contains(',') {
                    return Err(format!(
                        "app {}: instance id {id:?} is empty or contains a comma",
                        spec.app_id
                    ));
                }
                if !seen.insert(id.clone()) {
                    return Err(format!("app {}: instance {id} appears twice", spec.app_id));
                }
            }
            groups.push(Group {
                group_name: g
                    .group_name
                    .unwrap_or_else(|| format!("{}-group", g.group_id)),
                group_id: g.group_id,
                instance_ids: g.instance_ids,
            });
        }
        self.apps.insert(spec.app_id, groups);
        Ok(())
    }

    pub fn has_app(&self, app_id: &str) -> bool {
        self.apps.contains_key(app_id)
    }

    /// Appends faults to an existing app's script; `consoleChangeOrder` faults are scheduled at
    /// once instead. Nothing is added unless every fault is valid.
    pub fn add_faults(&mut self, app_faults: AppFaults, now: Timestamp) -> Result<(), String> {
        if !self.apps.contains_key(&app_faults.app_id) {
            return Err(format!(
                "unknown app {:?}: create it before scripting faults",
                app_faults.app_id
            ));
        }
        let app_id = app_faults.app_id;
        for f in &app_faults.faults {
            f.validate()?;
            if let FaultSpec::ConsoleChangeOrder(spec) = f {
                self.check_console_change_order(&app_id, spec, now)?;
            }
        }
        for spec in app_faults.faults {
            let until = match &spec {
                FaultSpec::Upgrading { seconds, .. } => Some(
                    now.saturating_add(
                        SignedDuration::try_from_secs_f64(*seconds).map_err(|e| e.to_string())?,
                    )
                    .map_err(|e| e.to_string())?,
                ),
                FaultSpec::ConsoleChangeOrder(spec) => {
                    self.schedule_console_change_order(&app_id, spec, now)?;
                    continue;
                }
                _ => None,
            };
            self.faults
                .entry(app_id.clone())
                .or_default()
                .push(PendingFault {
                    remaining: spec.times(),
                    spec,
                    until,
                });
        }
        Ok(())
    }

    /// Validates a console change order for `app_id` and returns when it is to be made.
    fn check_console_change_order(
        &self,
        app_id: &str,
        spec: &ConsoleChangeOrderSpec,
        now: Timestamp,
    ) -> Result<Timestamp, String> {
        let groups = self
            .apps
            .get(app_id)
            .ok_or_else(|| format!("unknown app {app_id:?}"))?;
        let at = spec.validate(now)?;
        let mut seen = HashSet::new();
        for id in &spec.instance_ids {
            if !seen.insert(id.as_str()) {
                return Err(format!("instance {id} appears twice"));
            }
            if !groups.iter().any(|g| g.instance_ids.contains(id)) {
                return Err(format!(
                    "instance {id:?} does not belong to application {app_id}"
                ));
            }
        }
        Ok(at)
    }

    /// Schedules a change order made in SAE's console, by no AccessKey: it is made at its time, or
    /// as soon as the app's running change order has ended, whichever is later (SAE runs one
    /// change order per app). Returns its id; it is unknown to SAE's API until it is made.
    pub fn schedule_console_change_order(
        &mut self,
        app_id: &str,
        spec: &ConsoleChangeOrderSpec,
        now: Timestamp,
    ) -> Result<String, String> {
        self.advance(now);
        let at = self.check_console_change_order(app_id, spec, now)?;
        let id = uuid::Uuid::new_v4().to_string();
        self.scheduled.push(Scheduled {
            id: id.clone(),
            app_id: app_id.to_string(),
            at,
            spec: ConsoleChangeOrderSpec {
                co_type_code: spec.co_type_code.trim().to_string(),
                ..spec.clone()
            },
        });
        // One made "now" is visible at once.
        self.advance(now);
        Ok(id)
    }

    /// The admin view of one app: groups, change orders (newest first), console change orders
    /// not made yet, and pending faults.
    pub fn app_view(&mut self, app_id: &str, now: Timestamp) -> Option<Value> {
        self.advance(now);
        let groups = self.apps.get(app_id)?;
        let style = self.config.time_style;
        let change_orders: Vec<Value> = self
            .change_orders
            .iter()
            .rev()
            .filter(|co| co.app_id == app_id)
            .map(|co| co.admin_view(now, &style))
            .collect();
        let scheduled: Vec<Value> = self
            .scheduled
            .iter()
            .filter(|s| s.app_id == app_id)
            .map(|s| json!({"changeOrderId": s.id, "at": s.at, "spec": s.spec}))
            .collect();
        let faults = self.faults.get(app_id).cloned().unwrap_or_default();
        Some(json!({
            "appId": app_id,
            "groups": groups,
            "changeOrders": change_orders,
            "scheduledChangeOrders": scheduled,
            "faults": faults,
        }))
    }
}
