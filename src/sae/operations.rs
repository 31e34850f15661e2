//! The five SAE operations as `SaeClient` methods: each checks its input, builds its query, and
//! reads its answer's `Data` into a [`super::model`] type. A `Data` that does not say what the
//! operation needs is `NoAnswer`, never a guess.
//!
//! Sending and envelope sorting are `client`'s and `envelope`'s; this module only knows each
//! operation's parameters and fields.

use serde_json::Value;

use super::client::Call;
use super::envelope::{
    data_object, id_field, int_field, page_rows, text_field, u32_field, uint_field, unusable,
};
use super::error::invalid;
use super::model::{
    ApplicationGroup, ChangeOrderDetail, ChangeOrderPage, ChangeOrderSummary, DeleteAccepted,
    InstancePage,
};
use super::{Credentials, Operation, SaeClient, SaeError};

impl SaeClient {
    /// Asks SAE to delete the given instances. Not idempotent: SAE has no token to recognise a
    /// repeat, so a `NoAnswer` here must be resolved by looking at SAE, never by sending again.
    pub async fn delete_instances(
        &self,
        creds: &Credentials,
        region_id: &str,
        app_id: &str,
        instance_ids: &[String],
    ) -> Result<DeleteAccepted, SaeError> {
        self.observed(Operation::DeleteInstances, async {
            const OPERATION: &str = Operation::DeleteInstances.name();
            require_value(OPERATION, "AppId", app_id)?;
            if instance_ids.is_empty() {
                return Err(invalid(OPERATION, "no instance ids given"));
            }
            for id in instance_ids {
                // SAE splits the list on commas, so a comma inside an id would name other instances.
                if id.trim().is_empty() || id.contains(',') {
                    return Err(invalid(
                        OPERATION,
                        "an instance id is empty or contains a comma",
                    ));
                }
            }
            let call = Call {
                operation: Operation::DeleteInstances,
                query: vec![
                    pair("AppId", app_id),
                    pair("InstanceIds", &instance_ids.join(",")),
                ],
                subject: app_id,
            };
            let envelope = self.call(creds, region_id, call).await?;
            let data = data_object(OPERATION, &envelope)?;
            let change_order_id = id_field(data, "ChangeOrderId")
                .ok_or_else(|| unusable(OPERATION, &envelope, "Data.ChangeOrderId is missing"))?;
            Ok(DeleteAccepted {
                change_order_id,
                request_id: envelope.request_id,
                trace_id: envelope.trace_id,
            })
        })
        .await
    }

    pub async fn describe_change_order(
        &self,
        creds: &Credentials,
        region_id: &str,
        change_order_id: &str,
    ) -> Result<ChangeOrderDetail, SaeError> {
        self.observed(Operation::DescribeChangeOrder, async {
            const OPERATION: &str = Operation::DescribeChangeOrder.name();
            require_value(OPERATION, "ChangeOrderId", change_order_id)?;
            let call = Call {
                operation: Operation::DescribeChangeOrder,
                query: vec![pair("ChangeOrderId", change_order_id)],
                subject: change_order_id,
            };
            let envelope = self.call(creds, region_id, call).await?;
            let data = data_object(OPERATION, &envelope)?;
            let status = int_field(data, "Status").ok_or_else(|| {
                unusable(
                    OPERATION,
                    &envelope,
                    "Data.Status is missing or not a number",
                )
            })?;
            Ok(ChangeOrderDetail {
                // We know which one we asked for; an answer that omits the id still describes it.
                change_order_id: id_field(data, "ChangeOrderId")
                    .unwrap_or_else(|| change_order_id.to_string()),
                status,
                sub_status: int_field(data, "SubStatus"),
                co_type_code: id_field(data, "CoTypeCode"),
                error_message: id_field(data, "ErrorMessage"),
                create_time: id_field(data, "CreateTime"),
                request_id: envelope.request_id.clone(),
            })
        })
        .await
    }

    pub async fn list_change_orders(
        &self,
        creds: &Credentials,
        region_id: &str,
        app_id: &str,
        co_type: Option<&str>,
        current_page: u32,
        page_size: u32,
    ) -> Result<ChangeOrderPage, SaeError> {
        self.observed(Operation::ListChangeOrders, async {
            const OPERATION: &str = Operation::ListChangeOrders.name();
            require_value(OPERATION, "AppId", app_id)?;
            let mut query = vec![
                pair("AppId", app_id),
                pair("CurrentPage", &current_page.to_string()),
                pair("PageSize", &page_size.to_string()),
            ];
            if let Some(co_type) = co_type {
                query.push(pair("CoType", co_type));
            }
            let call = Call {
                operation: Operation::ListChangeOrders,
                query,
                subject: app_id,
            };
            let envelope = self.call(creds, region_id, call).await?;
            let data = data_object(OPERATION, &envelope)?;
            let rows = page_rows(OPERATION, &envelope, data, "ChangeOrderList")?;
            let mut change_orders = Vec::with_capacity(rows.len());
            for row in rows {
                let row = row.as_object().ok_or_else(|| {
                    unusable(
                        OPERATION,
                        &envelope,
                        "a ChangeOrderList row is not an object",
                    )
                })?;
                let (Some(change_order_id), Some(status)) =
                    (id_field(row, "ChangeOrderId"), int_field(row, "Status"))
                else {
                    return Err(unusable(
                        OPERATION,
                        &envelope,
                        "a ChangeOrderList row lacks ChangeOrderId or Status",
                    ));
                };
                change_orders.push(ChangeOrderSummary {
                    change_order_id,
                    status,
                    co_type_code: id_field(row, "CoTypeCode"),
                    create_time: id_field(row, "CreateTime"),
                    finish_time: id_field(row, "FinishTime"),
                });
            }
            Ok(ChangeOrderPage {
                total: uint_field(data, "TotalSize").unwrap_or(change_orders.len() as u64),
                current_page: u32_field(data, "CurrentPage").unwrap_or(current_page),
                page_size: u32_field(data, "PageSize").unwrap_or(page_size),
                change_orders,
            })
        })
        .await
    }

    pub async fn describe_application_groups(
        &self,
        creds: &Credentials,
        region_id: &str,
        app_id: &str,
    ) -> Result<Vec<ApplicationGroup>, SaeError> {
        self.observed(Operation::DescribeApplicationGroups, async {
            const OPERATION: &str = Operation::DescribeApplicationGroups.name();
            require_value(OPERATION, "AppId", app_id)?;
            let call = Call {
                operation: Operation::DescribeApplicationGroups,
                query: vec![pair("AppId", app_id)],
                subject: app_id,
            };
            let envelope = self.call(creds, region_id, call).await?;
            let rows = envelope
                .body
                .get("Data")
                .and_then(Value::as_array)
                .ok_or_else(|| unusable(OPERATION, &envelope, "Data is missing or not a list"))?;
            rows.iter()
                .map(|row| {
                    let row = row.as_object();
                    let group_id = row.and_then(|r| id_field(r, "GroupId"));
                    match group_id {
                        Some(group_id) => Ok(ApplicationGroup {
                            group_id,
                            group_name: row.and_then(|r| id_field(r, "GroupName")),
                        }),
                        None => Err(unusable(OPERATION, &envelope, "a group lacks GroupId")),
                    }
                })
                .collect()
        })
        .await
    }

    pub async fn describe_application_instances(
        &self,
        creds: &Credentials,
        region_id: &str,
        app_id: &str,
        group_id: &str,
        current_page: u32,
        page_size: u32,
    ) -> Result<InstancePage, SaeError> {
        self.observed(Operation::DescribeApplicationInstances, async {
            const OPERATION: &str = Operation::DescribeApplicationInstances.name();
            require_value(OPERATION, "AppId", app_id)?;
            require_value(OPERATION, "GroupId", group_id)?;
            let call = Call {
                operation: Operation::DescribeApplicationInstances,
                query: vec![
                    pair("AppId", app_id),
                    pair("GroupId", group_id),
                    pair("CurrentPage", &current_page.to_string()),
                    pair("PageSize", &page_size.to_string()),
                ],
                subject: app_id,
            };
            let envelope = self.call(creds, region_id, call).await?;
            let data = data_object(OPERATION, &envelope)?;
            let rows = page_rows(OPERATION, &envelope, data, "Instances")?;
            let instance_ids = rows
                .iter()
                .map(|row| {
                    row.as_object()
                        .and_then(|r| id_field(r, "InstanceId"))
                        .ok_or_else(|| {
                            unusable(OPERATION, &envelope, "an instance lacks InstanceId")
                        })
                })
                .collect::<Result<Vec<_>, _>>()?;
            // SAE documents Running, Terminating, Pending, Failed, ... for InstanceContainerStatus;
            // "being removed" matters to finding our change order, "Running" to
            // minRunningInstances (Pending, Starting, Failed, ... serve nothing yet).
            let with_status = |wanted: &str| -> Vec<String> {
                rows.iter()
                    .filter_map(|row| {
                        let row = row.as_object()?;
                        let status = text_field(row, "InstanceContainerStatus")?;
                        status
                            .trim()
                            .eq_ignore_ascii_case(wanted)
                            .then(|| id_field(row, "InstanceId"))?
                    })
                    .collect()
            };
            let terminating = with_status("Terminating");
            let running = with_status("Running");
            Ok(InstancePage {
                total: uint_field(data, "TotalSize").unwrap_or(instance_ids.len() as u64),
                current_page: u32_field(data, "CurrentPage").unwrap_or(current_page),
                page_size: u32_field(data, "PageSize").unwrap_or(page_size),
                instance_ids,
                terminating,
                running,
            })
        })
        .await
    }
}

pub(super) fn pair(name: &str, value: &str) -> (String, String) {
    (name.to_string(), value.to_string())
}

pub(super) fn require_value(
    operation: &'static str,
    name: &str,
    value: &str,
) -> Result<(), SaeError> {
    if value.trim().is_empty() {
        Err(invalid(operation, &format!("{name} is empty")))
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod tests;
