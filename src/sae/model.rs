//! What SAE's answers mean to sae-controller: one plain struct per answer (an accepted deletion,
//! a change order, a page of change orders or instances, an app's groups and instances).
//!
//! Data only: nothing here parses JSON, does I/O, or knows about HTTP or Kubernetes.

/// SAE accepted a `DeleteInstances` call and opened a change order for it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeleteAccepted {
    pub change_order_id: String,
    pub request_id: Option<String>,
    pub trace_id: Option<String>,
}

/// One change order as `DescribeChangeOrder` reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChangeOrderDetail {
    pub change_order_id: String,
    pub status: i64,
    pub sub_status: Option<i64>,
    pub co_type_code: Option<String>,
    pub error_message: Option<String>,
    pub create_time: Option<String>,
    pub request_id: Option<String>,
}

/// One row of `ListChangeOrders`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChangeOrderSummary {
    pub change_order_id: String,
    pub status: i64,
    pub co_type_code: Option<String>,
    pub create_time: Option<String>,
    /// When it ended, once it has (SAE's `FinishTime`, same forms as `CreateTime`).
    pub finish_time: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChangeOrderPage {
    pub total: u64,
    pub current_page: u32,
    pub page_size: u32,
    pub change_orders: Vec<ChangeOrderSummary>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApplicationGroup {
    pub group_id: String,
    pub group_name: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InstancePage {
    pub total: u64,
    pub current_page: u32,
    pub page_size: u32,
    pub instance_ids: Vec<String>,
    /// Those of them SAE reports as being terminated (`InstanceContainerStatus: Terminating`).
    pub terminating: Vec<String>,
    /// Those of them SAE reports as Running (`InstanceContainerStatus: Running`); Pending,
    /// Starting, Failed, ... and rows without a status are in neither list.
    pub running: Vec<String>,
}

/// Every instance of an app (all groups), which of them are being terminated and which are
/// Running.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AppInstances {
    pub ids: Vec<String>,
    pub terminating: Vec<String>,
    /// Those SAE lists as `InstanceContainerStatus: Running`, each once.
    pub running: Vec<String>,
}
