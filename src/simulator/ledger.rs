//! The simulator's ledger: every request it answered and every deletion it committed, for tests
//! that prove at most once ([`repeated_deletions`]), and SAE's time format.
//!
//! Records only; no model state, no I/O. Depends on `change_order` and `times` only.

use std::collections::{BTreeMap, HashMap};

use jiff::Timestamp;
use serde::Serialize;
use serde_json::Value;

use super::change_order::ChangeOrderSource;
use super::times::TimeStyle;

/// One request as the ledger keeps it. Params are the query; no header (hence no credential) is kept.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct RequestRecord {
    pub time: Timestamp,
    pub request_id: String,
    /// The key id the request claimed, verified or not (see `verified`).
    pub access_key_id: Option<String>,
    /// `v1` or `v3` when the Authorization header parsed.
    pub signature_version: Option<String>,
    /// Whether the signature (and token, date, nonce) checked out.
    pub verified: bool,
    /// The operation name, or `Unknown` for a request that matched none.
    pub operation: String,
    pub method: String,
    pub path: String,
    pub params: BTreeMap<String, String>,
    /// 0 when the connection was closed without an answer.
    pub http_status: u16,
    /// `OK` or the error code; `NoAnswer` for a dropped connection, `Garbage` for a non-JSON body.
    pub code: String,
    /// Whether this call executed a deletion.
    pub committed: bool,
    pub change_order_id: Option<String>,
    /// The kind of scripted fault that shaped the answer.
    pub fault: Option<String>,
}

/// One executed deletion and how its change order ended.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct DeletionRecord {
    pub app_id: String,
    pub change_order_id: String,
    pub instance_ids: Vec<String>,
    pub time: Timestamp,
    /// `api` (an accepted DeleteInstances) or `console` (made in SAE's console, by no AccessKey).
    pub source: ChangeOrderSource,
    /// None while the change order runs.
    pub final_status: Option<i64>,
    pub finished_time: Option<Timestamp>,
}

/// An instance named by more than one accepted DeleteInstances call (console deletions are not
/// counted): what an at-most-once controller must never cause.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct RepeatedDeletion {
    pub app_id: String,
    pub instance_id: String,
    /// Oldest first.
    pub change_order_ids: Vec<String>,
}

#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Ledger {
    pub requests: Vec<RequestRecord>,
    pub deletions: Vec<DeletionRecord>,
    /// Derived from `deletions`: every instance that more than one API deletion named.
    pub repeated_deletions: Vec<RepeatedDeletion>,
}

/// The instances that API deletions named more than once, in the order of their first deletion.
pub fn repeated_deletions<'a>(
    deletions: impl IntoIterator<Item = &'a DeletionRecord>,
) -> Vec<RepeatedDeletion> {
    let mut seen: Vec<RepeatedDeletion> = Vec::new();
    let mut index: HashMap<(&str, &str), usize> = HashMap::new();
    for d in deletions
        .into_iter()
        .filter(|d| d.source == ChangeOrderSource::Api)
    {
        for id in &d.instance_ids {
            let slot = *index.entry((&d.app_id, id)).or_insert_with(|| {
                seen.push(RepeatedDeletion {
                    app_id: d.app_id.clone(),
                    instance_id: id.clone(),
                    change_order_ids: Vec::new(),
                });
                seen.len() - 1
            });
            seen[slot].change_order_ids.push(d.change_order_id.clone());
        }
    }
    seen.retain(|r| r.change_order_ids.len() > 1);
    seen
}

/// SAE's `CreateTime` as documented: `YYYY-MM-DD HH:MM:SS` in UTC+08:00, no zone written (the
/// default [`TimeStyle`]; the simulator's `createTimeZone`/`createTimeFormat` choose others).
pub fn sae_time(t: Timestamp) -> String {
    match TimeStyle::default().render(t) {
        Value::String(s) => s,
        other => other.to_string(),
    }
}
