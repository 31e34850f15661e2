//! The five SAE operations as the model answers them: [`Model::call`] decides how an admitted
//! call is answered once the app's scripted faults are applied, [`Model::execute`] runs one as SAE
//! would, without faults.
//!
//! What SAE does is written here from SAE's documentation and observed answers, not taken from the
//! controller: this is the behaviour the controller is tested against.

use std::collections::HashSet;
use std::time::Duration;

use jiff::Timestamp;
use serde_json::{Value, json};

use super::{CallPlan, Model, Outcome, Success};
use crate::simulator::api_error::{ApiError, not_empty, with_message};
use crate::simulator::change_order::{
    CO_DELETE_INSTANCES, ChangeOrder, ChangeOrderSource, DeletingView,
};
use crate::simulator::routing::{Operation, Params};
use crate::simulator::seed::FaultSpec;

impl Model {
    /// Validates what can be validated without executing and names the app whose faults apply.
    fn precheck(
        &self,
        op: Operation,
        params: Params<'_>,
        now: Timestamp,
    ) -> Result<String, ApiError> {
        match op {
            Operation::DescribeChangeOrder => {
                // A change order still hidden by `describe_lag` is unknown here, so no fault of
                // its app is used up by the call, exactly as for an id that never existed.
                let id = params.required("ChangeOrderId")?;
                Ok(self.described_change_order(id, now)?.app_id.clone())
            }
            Operation::ListChangeOrders => {
                let app_id = params.required("AppId")?;
                params.page()?;
                if !self.apps.contains_key(app_id) {
                    return Err(ApiError::sae(
                        "InvalidAppId.NotFound",
                        format!("The application {app_id} does not exist."),
                    ));
                }
                Ok(app_id.to_string())
            }
            Operation::DeleteInstances => {
                let app_id = params.required("AppId")?;
                params.required("InstanceIds")?;
                self.app_exists(app_id)?;
                Ok(app_id.to_string())
            }
            Operation::DescribeApplicationGroups => {
                let app_id = params.required("AppId")?;
                self.app_exists(app_id)?;
                Ok(app_id.to_string())
            }
            Operation::DescribeApplicationInstances => {
                let app_id = params.required("AppId")?;
                params.required("GroupId")?;
                params.page()?;
                self.app_exists(app_id)?;
                Ok(app_id.to_string())
            }
        }
    }

    fn app_exists(&self, app_id: &str) -> Result<(), ApiError> {
        if self.apps.contains_key(app_id) {
            Ok(())
        } else {
            Err(ApiError::sae(
                "InvalidApplication.NotFound",
                format!("The application {app_id} does not exist."),
            ))
        }
    }

    /// Takes one use of the first pending fault of `app_id` that matches `op`.
    fn take_fault(&mut self, app_id: &str, op: Operation, now: Timestamp) -> Option<FaultSpec> {
        let list = self.faults.get_mut(app_id)?;
        list.retain(|f| f.until.is_none_or(|until| now < until));
        let pos = list.iter().position(|f| f.spec.matches(op))?;
        let fault = &mut list[pos];
        let spec = fault.spec.clone();
        if fault.until.is_none() {
            fault.remaining -= 1;
            if fault.remaining == 0 {
                list.remove(pos);
            }
        }
        Some(spec)
    }

    /// Decides how to answer one authenticated, admitted call, applying the app's faults.
    pub fn call(&mut self, op: Operation, query: &[(String, String)], now: Timestamp) -> CallPlan {
        self.advance(now);
        let app_id = match self.precheck(op, Params(query), now) {
            Ok(app_id) => app_id,
            Err(e) => {
                return CallPlan::Answer {
                    outcome: Err(e),
                    fault: None,
                };
            }
        };
        // Checked and advanced above; only the faults list changed since.
        let params = Params(query);
        let Some(fault) = self.take_fault(&app_id, op, now) else {
            return CallPlan::Answer {
                outcome: self.run(op, params, now),
                fault: None,
            };
        };
        let mut run = |commit: bool| {
            if commit {
                committed_of(&self.run(op, params, now))
            } else {
                None
            }
        };
        match fault {
            FaultSpec::Error {
                code,
                http_status,
                message,
                retry_after_millis,
                ..
            } => {
                let message =
                    message.unwrap_or_else(|| format!("Scripted {code} from the simulator."));
                let mut err = ApiError::sae(&code, message);
                if let Some(status) = http_status {
                    err = err.with_status(status);
                }
                err.retry_after_millis = retry_after_millis;
                CallPlan::Answer {
                    outcome: Err(err),
                    fault: Some("error"),
                }
            }
            FaultSpec::Upgrading { .. } => CallPlan::Answer {
                outcome: Err(ApiError::sae(
                    "System.Upgrading",
                    "The system is being upgraded. Please try again later.",
                )),
                fault: Some("upgrading"),
            },
            FaultSpec::Http500 { commit, .. } => CallPlan::InternalError {
                committed: run(commit),
            },
            FaultSpec::Ambiguous { .. } => CallPlan::DropConnection {
                committed: run(true),
            },
            FaultSpec::Garbage { commit, .. } => CallPlan::Garbage {
                committed: run(commit),
            },
            FaultSpec::Slow {
                millis,
                commit: true,
                ..
            } => CallPlan::Delayed {
                delay: Duration::from_millis(millis),
                outcome: self.run(op, params, now),
            },
            FaultSpec::Slow {
                millis,
                commit: false,
                ..
            } => CallPlan::ExecuteAfter {
                delay: Duration::from_millis(millis),
            },
            FaultSpec::ChangeOrderResult { .. }
            | FaultSpec::SlowStart { .. }
            | FaultSpec::ConsoleChangeOrder(_) => {
                unreachable!("faults that shape change orders never match a call")
            }
        }
    }

    /// Runs the operation as SAE would, without faults.
    pub fn execute(
        &mut self,
        op: Operation,
        query: &[(String, String)],
        now: Timestamp,
    ) -> Outcome {
        self.advance(now);
        let params = Params(query);
        self.precheck(op, params, now)?;
        self.run(op, params, now)
    }

    /// [`Model::execute`] once the state is advanced to `now` and the call prechecked.
    fn run(&mut self, op: Operation, params: Params<'_>, now: Timestamp) -> Outcome {
        let style = self.config.time_style;
        let data = match op {
            Operation::DeleteInstances => return self.delete_instances(params, now),
            Operation::DescribeChangeOrder => self
                .described_change_order(params.required("ChangeOrderId")?, now)?
                .describe(now, &style),
            Operation::ListChangeOrders => {
                let app_id = params.required("AppId")?;
                let co_type = params.get("CoType");
                let (page, size) = params.page()?;
                // Rows still hidden by `list_lag` are left out before counting and paging, so
                // `TotalSize` and the pages agree with what the list shows.
                let lag = self.config.list_lag;
                let matching: Vec<&ChangeOrder> = self
                    .change_orders
                    .iter()
                    .rev()
                    .filter(|co| {
                        co.app_id == app_id
                            && co_type.is_none_or(|t| t == co.co_type_code)
                            && co.visible_after(lag, now)
                    })
                    .collect();
                let total = matching.len();
                // Only the requested page is rendered.
                let list: Vec<Value> = matching
                    .into_iter()
                    .skip(skip(page, size))
                    .take(size as usize)
                    .map(|co| co.list_row(now, &style, self.config.omit_co_type_code))
                    .collect();
                json!({"ChangeOrderList": list, "CurrentPage": page, "PageSize": size, "TotalSize": total})
            }
            Operation::DescribeApplicationGroups => {
                let groups = &self.apps[params.required("AppId")?];
                Value::Array(
                    groups
                        .iter()
                        .map(|g| json!({"GroupId": g.group_id, "GroupName": g.group_name, "GroupType": 0}))
                        .collect(),
                )
            }
            Operation::DescribeApplicationInstances => {
                let app_id = params.required("AppId")?;
                let group_id = params.required("GroupId")?;
                let (page, size) = params.page()?;
                let group = self.apps[app_id]
                    .iter()
                    .find(|g| g.group_id == group_id)
                    .ok_or_else(|| {
                        with_message(format!(
                            "The group {group_id} does not belong to application {app_id}."
                        ))
                    })?;
                let deleting: HashSet<&str> = self
                    .running_change_order(app_id)
                    .filter(|co| co.is_deleting(now))
                    .map(|co| co.instance_ids.iter().map(String::as_str).collect())
                    .unwrap_or_default();
                let view = self.config.deleting_instances;
                let shown: Vec<(&str, &str)> = group
                    .instance_ids
                    .iter()
                    .map(|id| {
                        let status = match (deleting.contains(id.as_str()), view) {
                            (false, _) | (true, DeletingView::Running) => "Running",
                            (true, DeletingView::Terminating) => "Terminating",
                            (true, DeletingView::Hidden) => "",
                        };
                        (id.as_str(), status)
                    })
                    .filter(|(_, status)| !status.is_empty())
                    .collect();
                let rows: Vec<Value> = shown
                    .iter()
                    .skip(skip(page, size))
                    .take(size as usize)
                    .map(|(id, status)| json!({"InstanceId": id, "GroupId": group_id, "InstanceContainerStatus": status}))
                    .collect();
                json!({"Instances": rows, "CurrentPage": page, "PageSize": size, "TotalSize": shown.len()})
            }
        };
        Ok(Success {
            data,
            committed: None,
        })
    }

    fn delete_instances(&mut self, params: Params<'_>, now: Timestamp) -> Outcome {
        let app_id = params.required("AppId")?.to_string();
        let mut ids: Vec<String> = Vec::new();
        for id in params
            .required("InstanceIds")?
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
        {
            if !ids.iter().any(|known| known == id) {
                ids.push(id.to_string());
            }
        }
        if ids.is_empty() {
            return Err(not_empty("InstanceIds"));
        }
        if let Some(running) = self.running_change_order(&app_id) {
            return Err(ApiError::sae(
                "Application.ChangerOrderRunning",
                format!(
                    "The application has a change order in progress ({}). Please try again later.",
                    running.id
                ),
            ));
        }
        let groups = &self.apps[&app_id];
        if let Some(missing) = ids
            .iter()
            .find(|id| !groups.iter().any(|g| g.instance_ids.contains(id)))
        {
            return Err(with_message(format!(
                "The instance {missing} does not belong to application {app_id}."
            )));
        }
        let script = self.script_for_api_change_order(&app_id);
        let id = uuid::Uuid::new_v4().to_string();
        self.push_change_order(ChangeOrder::new(
            id.clone(),
            app_id,
            CO_DELETE_INSTANCES.to_string(),
            ChangeOrderSource::Api,
            ids,
            now,
            script,
        ));
        // A zero-length change order is done as soon as it exists.
        self.advance(now);
        Ok(Success {
            data: json!({"ChangeOrderId": id}),
            committed: Some(id),
        })
    }
}

fn committed_of(outcome: &Outcome) -> Option<String> {
    outcome.as_ref().ok().and_then(|s| s.committed.clone())
}

fn skip(page: u32, size: u32) -> usize {
    (page as usize - 1).saturating_mul(size as usize)
}
