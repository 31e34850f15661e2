//! The simulator's change orders: who made one, the phases it goes through (pending approval,
//! preparing, executing, ended), how SAE's answers show it, and console-made change orders.
//! Pure data and rendering; the model (`state/change_orders.rs`) decides when they start and end.
//!
//! Depends on `times` only. The phases and status numbers are the simulator's own reading of SAE's
//! documentation, not the controller's (`crate::sae` is not used here).

use std::fmt;
use std::str::FromStr;

use jiff::{SignedDuration, Timestamp};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::times::TimeStyle;

/// The change order type the controller makes.
pub const CO_DELETE_INSTANCES: &str = "CoDeleteInstances";

/// Final statuses a scripted change order may end with.
pub const FINAL_STATUSES: [i64; 4] = [2, 3, 6, 10];

/// Who made a change order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum ChangeOrderSource {
    /// An accepted DeleteInstances call, signed by some AccessKey.
    Api,
    /// Someone in SAE's console (`POST /_sim/apps/{appId}/change-orders` or a
    /// `consoleChangeOrder` fault): no AccessKey, no request in the ledger.
    Console,
}

/// How DescribeApplicationInstances shows the instances of a CoDeleteInstances while it executes
/// (status 1). SAE does not document it; each choice is plausible, so tests can try them all.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum DeletingView {
    /// Listed with `InstanceContainerStatus: "Terminating"` (a value SAE documents).
    #[default]
    Terminating,
    /// Listed as `Running` until the change order ends.
    Running,
    /// Not listed at all (and not counted in `TotalSize`) until the change order ends; they come
    /// back if it fails and restores them.
    Hidden,
}

impl DeletingView {
    pub const ALL: [DeletingView; 3] = [
        DeletingView::Terminating,
        DeletingView::Running,
        DeletingView::Hidden,
    ];

    pub fn name(self) -> &'static str {
        match self {
            DeletingView::Terminating => "terminating",
            DeletingView::Running => "running",
            DeletingView::Hidden => "hidden",
        }
    }
}

impl fmt::Display for DeletingView {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for DeletingView {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        DeletingView::ALL
            .into_iter()
            .find(|v| v.name() == s.trim())
            .ok_or_else(|| {
                format!("unknown instance view {s:?}; one of terminating, running, hidden")
            })
    }
}

/// SAE's `CoType`, the human-readable name of a `CoTypeCode`.
pub fn co_type_name(code: &str) -> String {
    match code {
        CO_DELETE_INSTANCES => "Delete Instances".into(),
        "CoRestartInstances" => "Batch Restart Instances".into(),
        "CoDeploy" => "Deploy Application".into(),
        "CoRestartApplication" => "Restart Application".into(),
        "CoScaleIn" => "Scale In".into(),
        "CoScaleOut" => "Scale Out".into(),
        other => other.strip_prefix("Co").unwrap_or(other).to_string(),
    }
}

fn default_co_type() -> String {
    CO_DELETE_INSTANCES.to_string()
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

/// A change order made in SAE's console rather than through the API: the body of
/// `POST /_sim/apps/{appId}/change-orders`, and (with `"kind": "consoleChangeOrder"`) a fault.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ConsoleChangeOrderSpec {
    /// `CoDeleteInstances` (the default) deletes `instanceIds`; any other `Co…` code (e.g.
    /// `CoRestartInstances`, `CoDeploy`) only occupies the app while it runs.
    #[serde(default = "default_co_type")]
    pub co_type_code: String,
    #[serde(default)]
    pub instance_ids: Vec<String>,
    /// When it is made (SAE's clock, RFC 3339); not before now. Default: now.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub at: Option<Timestamp>,
    /// Or: this many seconds from now.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after_seconds: Option<f64>,
    /// How long it executes (status 1); default `changeOrderSeconds`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seconds: Option<f64>,
    /// Status 11 (pending approval) for this long before anything else.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approval_seconds: Option<f64>,
    /// Status 0 (preparing) for this long before it executes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preparing_seconds: Option<f64>,
    /// The status it ends with: 2 (default), 3, 6 or 10.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_message: Option<String>,
    /// When it fails: how many of its instances (first ones first) are gone anyway.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub removed_instances: u32,
}

/// A non-negative, finite number of seconds as a duration; `what` names it in the error.
pub fn seconds(value: Option<f64>, what: &str) -> Result<SignedDuration, String> {
    match value {
        None => Ok(SignedDuration::ZERO),
        Some(s) if s.is_finite() && s >= 0.0 => {
            SignedDuration::try_from_secs_f64(s).map_err(|e| format!("{what}: {e}"))
        }
        Some(s) => Err(format!("{what} must be a number >= 0, got {s}")),
    }
}

impl ConsoleChangeOrderSpec {
    /// Checks what can be checked without the app; returns when it is made.
    pub fn validate(&self, now: Timestamp) -> Result<Timestamp, String> {
        let code = self.co_type_code.trim();
        if !(code.len() > 2
            && code.len() <= 64
            && code.starts_with("Co")
            && code.bytes().all(|b| b.is_ascii_alphanumeric()))
        {
            return Err(format!(
                "coTypeCode {code:?} is not a change order type like CoDeleteInstances"
            ));
        }
        if code == CO_DELETE_INSTANCES && self.instance_ids.is_empty() {
            return Err("a console CoDeleteInstances needs instanceIds".into());
        }
        if let Some(status) = self.status
            && !FINAL_STATUSES.contains(&status)
        {
            return Err(format!(
                "a change order ends with status 2, 3, 6 or 10, not {status}"
            ));
        }
        for (value, what) in [
            (self.seconds, "seconds"),
            (self.approval_seconds, "approvalSeconds"),
            (self.preparing_seconds, "preparingSeconds"),
        ] {
            seconds(value, what)?;
        }
        let at = match (self.at, self.after_seconds) {
            (Some(_), Some(_)) => return Err("give at or afterSeconds, not both".into()),
            (Some(at), None) if at < now => {
                return Err(format!("at {at} is before SAE's clock ({now})"));
            }
            (Some(at), None) => at,
            (None, after) => now
                .checked_add(seconds(after, "afterSeconds")?)
                .map_err(|e| format!("afterSeconds: {e}"))?,
        };
        Ok(at)
    }
}

/// A console change order waiting for its time (and for its app to be free).
#[derive(Clone, Debug)]
pub struct Scheduled {
    pub id: String,
    pub app_id: String,
    pub at: Timestamp,
    pub spec: ConsoleChangeOrderSpec,
}

/// How long a change order waits in each phase, and how it ends.
#[derive(Clone, Debug, PartialEq)]
pub struct Script {
    pub approval: SignedDuration,
    pub preparing: SignedDuration,
    pub executing: SignedDuration,
    pub final_status: i64,
    pub error_message: String,
    /// Of a failed CoDeleteInstances: how many of its instances are gone anyway.
    pub removed_instances: usize,
}

#[derive(Clone, Debug)]
pub struct ChangeOrder {
    pub id: String,
    pub app_id: String,
    pub co_type_code: String,
    pub source: ChangeOrderSource,
    pub instance_ids: Vec<String>,
    pub created: Timestamp,
    /// Status 11 until then.
    pub approved: Timestamp,
    /// Status 0 until then, 1 after.
    pub executing_from: Timestamp,
    /// When it reaches `final_status`.
    pub ends: Timestamp,
    pub final_status: i64,
    pub error_message: String,
    pub removed_instances: usize,
    /// Set by the model once `ends` has passed (and the instances were dealt with).
    pub finished: bool,
}

fn after(t: Timestamp, d: SignedDuration) -> Timestamp {
    t.saturating_add(d).unwrap_or(t)
}

impl ChangeOrder {
    pub fn new(
        id: String,
        app_id: String,
        co_type_code: String,
        source: ChangeOrderSource,
        instance_ids: Vec<String>,
        created: Timestamp,
        script: Script,
    ) -> Self {
        let approved = after(created, script.approval);
        let executing_from = after(approved, script.preparing);
        Self {
            id,
            app_id,
            co_type_code,
            source,
            instance_ids,
            created,
            approved,
            executing_from,
            ends: after(executing_from, script.executing),
            final_status: script.final_status,
            error_message: script.error_message,
            removed_instances: script.removed_instances,
            finished: false,
        }
    }

    pub fn deletes_instances(&self) -> bool {
        self.co_type_code == CO_DELETE_INSTANCES
    }

    /// 11 (pending approval), 0 (preparing), 1 (executing), then the final status.
    pub fn status(&self, now: Timestamp) -> i64 {
        if self.finished {
            self.final_status
        } else if now < self.approved {
            11
        } else if now < self.executing_from {
            0
        } else {
            1
        }
    }

    /// Whether a read that lags its writes by `lag` shows it at `now`: from `lag` after its
    /// creation on. Only what reads show depends on this; the change order exists (it holds its
    /// app, runs its phases, is in the ledger) from its creation.
    pub fn visible_after(&self, lag: SignedDuration, now: Timestamp) -> bool {
        after(self.created, lag) <= now
    }

    /// Whether its instances are being removed right now.
    pub fn is_deleting(&self, now: Timestamp) -> bool {
        self.deletes_instances() && self.status(now) == 1
    }

    /// The instances it takes away for good when it ends.
    pub fn removes(&self) -> &[String] {
        let n = if self.final_status == 2 {
            self.instance_ids.len()
        } else {
            self.removed_instances.min(self.instance_ids.len())
        };
        &self.instance_ids[..n]
    }

    fn error_message(&self) -> &str {
        if self.finished {
            &self.error_message
        } else {
            ""
        }
    }

    /// DescribeChangeOrder's `Data`.
    pub fn describe(&self, now: Timestamp, style: &TimeStyle) -> Value {
        json!({
            "ChangeOrderId": self.id,
            "Status": self.status(now),
            "SubStatus": 0,
            "CoType": co_type_name(&self.co_type_code),
            "CoTypeCode": self.co_type_code,
            "ErrorMessage": self.error_message(),
            "CreateTime": style.render(self.created),
            "AppId": self.app_id,
            "Description": "",
            "Pipelines": [],
        })
    }

    /// A ListChangeOrders row. `FinishTime` once it ended; `Source: "console"` on console-made
    /// ones (SAE's documented example value; what it writes for API-made ones is not documented,
    /// so those carry none).
    pub fn list_row(&self, now: Timestamp, style: &TimeStyle, omit_co_type_code: bool) -> Value {
        let mut row = json!({
            "ChangeOrderId": self.id,
            "Status": self.status(now),
            "CoType": co_type_name(&self.co_type_code),
            "CreateTime": style.render(self.created),
            "AppId": self.app_id,
        });
        if !omit_co_type_code {
            row["CoTypeCode"] = Value::from(self.co_type_code.as_str());
        }
        if self.finished {
            row["FinishTime"] = style.render(self.ends);
        }
        if self.source == ChangeOrderSource::Console {
            row["Source"] = Value::from("console");
        }
        row
    }

    /// The admin view (`GET /_sim/apps/{appId}`).
    pub fn admin_view(&self, now: Timestamp, style: &TimeStyle) -> Value {
        json!({
            "changeOrderId": self.id,
            "status": self.status(now),
            "coTypeCode": self.co_type_code,
            "source": self.source,
            "instanceIds": self.instance_ids,
            "createTime": style.render(self.created),
            "executingFrom": self.executing_from,
            "ends": self.ends,
            "errorMessage": self.error_message(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t0() -> Timestamp {
        "2024-05-01T10:00:00Z".parse().unwrap()
    }

    fn secs(s: i64) -> SignedDuration {
        SignedDuration::from_secs(s)
    }

    #[test]
    fn phases_follow_the_script() {
        let script = Script {
            approval: secs(3),
            preparing: secs(5),
            executing: secs(2),
            final_status: 3,
            error_message: "boom".into(),
            removed_instances: 1,
        };
        let mut co = ChangeOrder::new(
            "co".into(),
            "app".into(),
            CO_DELETE_INSTANCES.into(),
            ChangeOrderSource::Api,
            vec!["i-a".into(), "i-b".into()],
            t0(),
            script,
        );
        let at = |s| t0() + secs(s);
        assert_eq!(
            [0, 2, 3, 7, 8, 9].map(|s| co.status(at(s))),
            [11, 11, 0, 0, 1, 1]
        );
        assert!(!co.is_deleting(at(7)) && co.is_deleting(at(8)));
        assert_eq!(co.ends, at(10));
        co.finished = true;
        assert_eq!(co.status(at(10)), 3);
        assert_eq!(co.removes(), ["i-a"]);
        co.final_status = 2;
        assert_eq!(co.removes(), ["i-a", "i-b"]);
    }

    #[test]
    fn console_specs_are_checked() {
        let spec = |v: Value| serde_json::from_value::<ConsoleChangeOrderSpec>(v).unwrap();
        assert_eq!(
            spec(json!({"instanceIds": ["i-1"]})).validate(t0()),
            Ok(t0())
        );
        assert_eq!(
            spec(json!({"instanceIds": ["i-1"], "afterSeconds": 1.5})).validate(t0()),
            Ok(t0() + SignedDuration::from_millis(1500))
        );
        assert_eq!(
            spec(json!({"coTypeCode": "CoDeploy"})).validate(t0()),
            Ok(t0())
        );
        for bad in [
            json!({}),
            json!({"coTypeCode": "Deploy"}),
            json!({"coTypeCode": "Co"}),
            json!({"coTypeCode": "CoDe ploy"}),
            json!({"instanceIds": ["i-1"], "status": 1}),
            json!({"instanceIds": ["i-1"], "seconds": -1}),
            json!({"instanceIds": ["i-1"], "at": "2024-05-01T09:59:59Z"}),
            json!({"instanceIds": ["i-1"], "at": "2024-05-01T10:00:00Z", "afterSeconds": 1}),
        ] {
            assert!(spec(bad.clone()).validate(t0()).is_err(), "{bad}");
        }
        assert!(
            serde_json::from_value::<ConsoleChangeOrderSpec>(json!({"instanceIdz": []})).is_err()
        );
    }

    #[test]
    fn rows_name_their_type_source_and_finish() {
        let mut co = ChangeOrder::new(
            "co".into(),
            "app".into(),
            "CoRestartInstances".into(),
            ChangeOrderSource::Console,
            vec![],
            t0(),
            Script {
                approval: SignedDuration::ZERO,
                preparing: SignedDuration::ZERO,
                executing: secs(2),
                final_status: 2,
                error_message: String::new(),
                removed_instances: 0,
            },
        );
        let style = TimeStyle::default();
        let row = co.list_row(t0(), &style, false);
        assert_eq!(row["CoTypeCode"], "CoRestartInstances");
        assert_eq!(row["Source"], "console");
        assert!(row.get("FinishTime").is_none());
        co.finished = true;
        let row = co.list_row(t0() + secs(2), &style, true);
        assert!(row.get("CoTypeCode").is_none());
        assert_eq!(row["CoType"], "Batch Restart Instances");
        assert_eq!(row["FinishTime"], "2024-05-01 18:00:02");
        assert!(!co.deletes_instances());
    }
}
