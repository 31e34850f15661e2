//! The simulator's pure model of SAE ([`Model`]): the struct with every piece of simulated state,
//! its settings ([`ModelConfig`]), what a call comes to ([`Outcome`], [`CallPlan`]), and the
//! lifecycle that touches all of it (new, reset, seed, ledger). Nothing in this tree reads a clock
//! or does I/O: every call takes `now`, so unit tests drive time by hand and the HTTP layer passes
//! SAE's clock.
//!
//! The behaviour is split by concern into `impl Model` blocks in the submodules:
//! - `gateway`: access keys, the signature/token/nonce checks and the per-key quota;
//! - `sts`: OIDC tokens and `AssumeRoleWithOIDC`;
//! - `apps`: apps and groups, scripted faults, console change orders waiting to be made;
//! - `change_orders`: how time moves change orders on and what ending one does;
//! - `operations`: the five SAE operations, with faults applied;
//! - `nonces`: the bounded nonce cache (a leaf; it knows nothing of `Model`).
//!
//! The submodules may use what this file defines; this file uses none of them but `nonces`, so the
//! tree has no import cycle. Inputs come from `seed`, records go to `ledger`, errors are
//! `api_error`, parameters `routing`. Nothing here may depend on `http`, on Kubernetes types, or on
//! the controller's view of SAE (`crate::sae::codes`, `crate::decide`): the simulator is the
//! independent witness the controller is tested against.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::time::Duration;

use jiff::{SignedDuration, Timestamp};
use serde::Serialize;
use serde_json::Value;

use super::api_error::ApiError;
use super::change_order::{ChangeOrder, DeletingView, Scheduled};
use super::ledger::{DeletionRecord, Ledger, RequestRecord, repeated_deletions};
use super::seed::{AccessKeySpec, OidcTokenSpec, PendingFault, Seed};
use super::times::TimeStyle;

mod apps;
mod change_orders;
mod gateway;
mod nonces;
mod operations;
mod sts;

use nonces::NonceCache;

/// Ledger lists keep at most this many entries each, dropping the oldest.
pub const LEDGER_CAPACITY: usize = 100_000;
/// A successful operation: its `Data`, and the change order it created, if any.
#[derive(Clone, Debug, PartialEq)]
pub struct Success {
    pub data: Value,
    pub committed: Option<String>,
}

pub type Outcome = Result<Success, ApiError>;

/// What the HTTP layer must do with a call.
#[derive(Clone, Debug, PartialEq)]
pub enum CallPlan {
    /// Answer normally (`fault` names an `error`/`upgrading` fault that produced the error).
    Answer {
        outcome: Outcome,
        fault: Option<&'static str>,
    },
    /// HTTP 500 `InternalError`.
    InternalError { committed: Option<String> },
    /// Close the connection without a word.
    DropConnection { committed: Option<String> },
    /// HTTP 200 with a non-JSON body.
    Garbage { committed: Option<String> },
    /// Wait, then answer this (already executed) outcome.
    Delayed { delay: Duration, outcome: Outcome },
    /// Wait, then call [`Model::execute`] and answer its outcome.
    ExecuteAfter { delay: Duration },
}

/// Simulator settings that the model needs.
#[derive(Clone, Debug)]
pub struct ModelConfig {
    pub change_order_duration: SignedDuration,
    /// 0 means unlimited.
    pub requests_per_minute: u32,
    pub max_skew: SignedDuration,
    /// How `CreateTime` and `FinishTime` are written (default: `plain` in +08:00).
    pub time_style: TimeStyle,
    /// Leave `CoTypeCode` out of ListChangeOrders rows (real rows may lack it).
    pub omit_co_type_code: bool,
    /// SAE's clock minus the simulator's clock. The model never reads a clock; the simulator adds
    /// this to its clock before handing the model `now`, so it moves CreateTime, the `Date` header,
    /// the signature date check and every timer alike.
    pub clock_skew: SignedDuration,
    /// How DescribeApplicationInstances shows instances a CoDeleteInstances is removing.
    pub deleting_instances: DeletingView,
    /// Per-AccessKeyId quotas that replace `requests_per_minute` for those keys (0 = unlimited),
    /// e.g. to throttle one noisy tenant while the others run free.
    pub key_requests_per_minute: BTreeMap<String, u32>,
    /// How long after its creation (SAE's clock) a change order starts to appear in
    /// ListChangeOrders. SAE promises no read-after-write consistency, so a controller must not
    /// take an empty list right after a DeleteInstances as proof that nothing was made.
    pub list_lag: SignedDuration,
    /// How long after its creation DescribeChangeOrder still answers as for an unknown id.
    pub describe_lag: SignedDuration,
    /// How long every API-made change order stays 0 (preparing) before it executes, unless a
    /// `slowStart` fault scripts that change order's phases instead.
    pub preparing_seconds: SignedDuration,
}

impl Default for ModelConfig {
    fn default() -> Self {
        Self {
            change_order_duration: SignedDuration::from_secs(2),
            requests_per_minute: 60,
            max_skew: SignedDuration::from_mins(15),
            time_style: TimeStyle::default(),
            omit_co_type_code: false,
            clock_skew: SignedDuration::ZERO,
            deleting_instances: DeletingView::default(),
            key_requests_per_minute: BTreeMap::new(),
            list_lag: SignedDuration::ZERO,
            describe_lag: SignedDuration::ZERO,
            preparing_seconds: SignedDuration::ZERO,
        }
    }
}

#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct Group {
    group_id: String,
    group_name: String,
    instance_ids: Vec<String>,
}

/// The whole simulated SAE.
#[derive(Debug)]
pub struct Model {
    config: ModelConfig,
    access_keys: HashMap<String, AccessKeySpec>,
    /// When each STS key issued by `assume_role_with_oidc` expires.
    sts_expirations: HashMap<String, Timestamp>,
    oidc_tokens: Vec<OidcTokenSpec>,
    apps: BTreeMap<String, Vec<Group>>,
    /// Oldest first.
    change_orders: Vec<ChangeOrder>,
    /// Console change orders not made yet (their time has not come, or their app is busy).
    scheduled: Vec<Scheduled>,
    faults: HashMap<String, Vec<PendingFault>>,
    quota: HashMap<String, VecDeque<Timestamp>>,
    /// Keys refused every call with `Throttling.User` (and this `x-acs-retry-after`, if any).
    throttled: HashMap<String, Option<u64>>,
    nonces: NonceCache,
    requests: VecDeque<RequestRecord>,
    deletions: VecDeque<DeletionRecord>,
}

fn push_bounded<T>(list: &mut VecDeque<T>, item: T) {
    if list.len() >= LEDGER_CAPACITY {
        list.pop_front();
    }
    list.push_back(item);
}

impl Model {
    pub fn new(config: ModelConfig) -> Self {
        Self {
            config,
            access_keys: HashMap::new(),
            sts_expirations: HashMap::new(),
            oidc_tokens: Vec::new(),
            apps: BTreeMap::new(),
            change_orders: Vec::new(),
            scheduled: Vec::new(),
            faults: HashMap::new(),
            quota: HashMap::new(),
            throttled: HashMap::new(),
            nonces: NonceCache::default(),
            requests: VecDeque::new(),
            deletions: VecDeque::new(),
        }
    }

    pub fn config(&self) -> &ModelConfig {
        &self.config
    }

    pub fn config_mut(&mut self) -> &mut ModelConfig {
        &mut self.config
    }

    /// Forgets apps, change orders, faults, throttle switches, the ledger, nonces and quota use; keeps access keys
    /// (issued STS keys included), OIDC tokens and settings.
    pub fn reset(&mut self) {
        *self = Self {
            access_keys: std::mem::take(&mut self.access_keys),
            sts_expirations: std::mem::take(&mut self.sts_expirations),
            oidc_tokens: std::mem::take(&mut self.oidc_tokens),
            ..Self::new(self.config.clone())
        };
    }

    pub fn apply_seed(&mut self, seed: Seed, now: Timestamp) -> Result<(), String> {
        for key in seed.access_keys {
            self.upsert_access_key(key)?;
        }
        for app in seed.apps {
            self.upsert_app(app, now)?;
        }
        for faults in seed.faults {
            self.add_faults(faults, now)?;
        }
        Ok(())
    }

    pub fn record_request(&mut self, record: RequestRecord) {
        push_bounded(&mut self.requests, record);
    }

    pub fn ledger(&mut self, now: Timestamp) -> Ledger {
        self.advance(now);
        Ledger {
            requests: self.requests.iter().cloned().collect(),
            deletions: self.deletions.iter().cloned().collect(),
            repeated_deletions: repeated_deletions(&self.deletions),
        }
    }
}

#[cfg(test)]
mod tests;
