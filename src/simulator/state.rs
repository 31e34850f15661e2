//! The simulator's pure model of SAE ([`Model`]): access keys with their quota and nonces, STS,
//! apps and their change orders, scripted faults, and what each call does to them. Nothing here
//! reads a clock or does I/O: every call takes `now`, so unit tests drive time by hand and the
//! HTTP layer passes the real clock.
//!
//! What it is given lives in `seed`, what it records in `ledger`, its error answers in
//! `api_error`, routing and query parameters in `routing`. It may not depend on `http`.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::time::Duration;

use jiff::{SignedDuration, Timestamp};
use serde::Serialize;
use serde_json::{Value, json};

use super::api_error::*;
use super::auth::{self, Authorization, ReceivedRequest};
use super::change_order::{
    self, CO_DELETE_INSTANCES, ChangeOrder, ChangeOrderSource, ConsoleChangeOrderSpec,
    DeletingView, Scheduled, Script,
};
use super::ledger::*;
use super::routing::*;
use super::seed::*;
use super::times::TimeStyle;

/// Ledger lists keep at most this many entries each, dropping the oldest.
pub const LEDGER_CAPACITY: usize = 100_000;
/// At most this many nonces are remembered; past it the oldest are forgotten early.
pub const NONCE_CAPACITY: usize = 100_000;
/// Finished change orders beyond this count are forgotten, oldest first.
pub const CHANGE_ORDER_CAPACITY: usize = 100_000;
/// The quota window: SAE counts calls per minute.
pub const QUOTA_WINDOW: SignedDuration = SignedDuration::from_secs(60);

/// A successful operation: its `Data`, and the change order it created, if any.
#[derive(Clone, Debug, PartialEq)]
pub struct Success {
    pub data: Value,
    pub committed: Option<String>,
}

pub type Outcome = Result<Success, ApiError>;

fn committed_of(outcome: &Outcome) -> Option<String> {
    outcome.as_ref().ok().and_then(|s| s.committed.clone())
}

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
        }
    }
}

/// Nonces seen within the skew window, per access key. Bounded: past [`NONCE_CAPACITY`] the
/// oldest are forgotten, which only weakens replay detection for very old requests.
#[derive(Default, Debug)]
struct NonceCache {
    seen: HashSet<String>,
    order: VecDeque<(Timestamp, String)>,
}

impl NonceCache {
    fn check_and_remember(&mut self, key: String, now: Timestamp, window: SignedDuration) -> bool {
        while let Some((t, k)) = self.order.front() {
            if now.duration_since(*t) > window || self.order.len() >= NONCE_CAPACITY {
                self.seen.remove(k);
                self.order.pop_front();
            } else {
                break;
            }
        }
        if !self.seen.insert(key.clone()) {
            return false;
        }
        self.order.push_back((now, key));
        true
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

    /// Switches `Throttling.User` on (`Some(retry hint in milliseconds, if any)`) or off
    /// (`None`) for every call signed with this key, whatever its quota use.
    pub fn set_throttle(&mut self, access_key_id: &str, throttle: Option<Option<u64>>) {
        match throttle {
            Some(retry_after_millis) => {
                self.throttled
                    .insert(access_key_id.to_string(), retry_after_millis);
            }
            None => {
                self.throttled.remove(access_key_id);
            }
        }
    }

    /// Keys switched to throttling, sorted.
    pub fn throttled_access_key_ids(&self) -> Vec<String> {
        let mut ids: Vec<String> = self.throttled.keys().cloned().collect();
        ids.sort();
        ids
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

    pub fn upsert_access_key(&mut self, key: AccessKeySpec) -> Result<(), String> {
        if key.access_key_id.trim().is_empty() || key.access_key_secret.is_empty() {
            return Err("accessKeyId and accessKeySecret must not be empty".into());
        }
        let key = AccessKeySpec {
            security_token: key.security_token.filter(|t| !t.is_empty()),
            ..key
        };
        self.sts_expirations.remove(&key.access_key_id);
        self.access_keys.insert(key.access_key_id.clone(), key);
        Ok(())
    }

    /// Adds an OIDC token STS accepts, or replaces the role restriction of a known one.
    pub fn register_oidc_token(&mut self, spec: OidcTokenSpec) -> Result<(), String> {
        if spec.token.trim().is_empty() {
            return Err("token must not be empty".into());
        }
        let spec = OidcTokenSpec {
            token: spec.token.trim().to_string(),
            role_arn: spec.role_arn.filter(|r| !r.trim().is_empty()),
        };
        self.oidc_tokens.retain(|t| t.token != spec.token);
        self.oidc_tokens.push(spec);
        Ok(())
    }

    /// STS `AssumeRoleWithOIDC`: checks the parameters and the token, then issues a fresh STS key
    /// (`STS.` id, secret, security token) that SAE calls may sign with until `Expiration`.
    /// The secret and token carry recognisable prefixes (`simSTSsecret`, `CAISsimSTStoken`) so tests
    /// can search logs for them.
    pub fn assume_role_with_oidc(
        &mut self,
        params: &[(String, String)],
        now: Timestamp,
    ) -> Result<StsIssued, ApiError> {
        let params = Params(params);
        let missing = |name: &str| {
            ApiError::gateway(
                "MissingParameter",
                format!(
                    "The input parameter \"{name}\" that is mandatory for processing this request is not supplied."
                ),
            )
        };
        let role_arn = params.get("RoleArn").ok_or_else(|| missing("RoleArn"))?;
        params
            .get("OIDCProviderArn")
            .ok_or_else(|| missing("OIDCProviderArn"))?;
        let token = params
            .get("OIDCToken")
            .ok_or_else(|| missing("OIDCToken"))?;
        let duration = match params.get("DurationSeconds") {
            None => STS_DEFAULT_DURATION_SECONDS,
            Some(raw) => raw
                .parse::<u32>()
                .ok()
                .filter(|d| (STS_MIN_DURATION_SECONDS..=STS_MAX_DURATION_SECONDS).contains(d))
                .ok_or_else(|| {
                    ApiError::gateway(
                        "InvalidParameter.DurationSeconds",
                        format!(
                            "DurationSeconds must be an integer from {STS_MIN_DURATION_SECONDS} to {STS_MAX_DURATION_SECONDS}, got {raw:?}."
                        ),
                    )
                })?,
        };
        let session = params
            .get("RoleSessionName")
            .map(str::to_string)
            .unwrap_or_else(|| {
                format!(
                    "session-{}",
                    &uuid::Uuid::new_v4().simple().to_string()[..8]
                )
            });
        // Compared in constant time: the simulator checks credentials the way a gateway should.
        let known = self
            .oidc_tokens
            .iter()
            .find(|t| auth::constant_time_eq(t.token.as_bytes(), token.as_bytes()))
            .ok_or_else(|| {
                ApiError::gateway(
                    "InvalidParameter.OIDCToken",
                    "The OIDC token is invalid or was not registered with the simulator.",
                )
            })?;
        if let Some(allowed) = known.role_arn.as_deref()
            && allowed != role_arn
        {
            return Err(ApiError::gateway(
                "AuthenticationFail.NoPermission",
                format!("The OIDC token may not assume the role {role_arn}."),
            ));
        }

        // Forget long-expired STS keys so a long run does not accumulate them.
        let stale: Vec<String> = self
            .sts_expirations
            .iter()
            .filter(|(_, expires)| now.duration_since(**expires) > STS_KEY_RETENTION)
            .map(|(id, _)| id.clone())
            .collect();
        for id in stale {
            self.sts_expirations.remove(&id);
            self.access_keys.remove(&id);
        }

        let access_key_id = format!("STS.{}", uuid::Uuid::new_v4().simple());
        let secret = format!("simSTSsecret{}", uuid::Uuid::new_v4().simple());
        let security_token = format!(
            "CAISsimSTStoken{}{}",
            uuid::Uuid::new_v4().simple(),
            uuid::Uuid::new_v4().simple()
        );
        let expiration = now
            .saturating_add(SignedDuration::from_secs(duration.into()))
            .unwrap_or(now);
        self.access_keys.insert(
            access_key_id.clone(),
            AccessKeySpec {
                access_key_id: access_key_id.clone(),
                access_key_secret: secret.clone(),
                security_token: Some(security_token.clone()),
            },
        );
        self.sts_expirations
            .insert(access_key_id.clone(), expiration);
        let body = json!({
            "AssumedRoleUser": {
                "AssumedRoleId": format!("3{}:{session}", &uuid::Uuid::new_v4().simple().to_string()[..16]),
                "Arn": format!("{role_arn}/{session}"),
            },
            "Credentials": {
                "AccessKeyId": access_key_id,
                "AccessKeySecret": secret,
                "SecurityToken": security_token,
                "Expiration": expiration.strftime("%Y-%m-%dT%H:%M:%SZ").to_string(),
            },
        });
        Ok(StsIssued {
            access_key_id,
            body,
        })
    }

    pub fn access_key_ids(&self) -> Vec<String> {
        let mut ids: Vec<String> = self.access_keys.keys().cloned().collect();
        ids.sort();
        ids
    }

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

    /// Checks key, date, signature, security token and nonce, in that order.
    pub fn authenticate(
        &mut self,
        auth: &Authorization,
        req: &ReceivedRequest<'_>,
        now: Timestamp,
    ) -> Result<(), ApiError> {
        let ak = auth.access_key_id();
        let key = self.access_keys.get(ak).ok_or_else(|| {
            ApiError::gateway(
                "InvalidAccessKeyId.NotFound",
                "Specified access key is not found.",
            )
        })?;
        let claimed = auth::request_time(auth, req)?;
        auth::check_skew(claimed, now, self.config.max_skew)?;
        auth::verify_signature(auth, &key.access_key_secret, req)?;
        let sent_token = req.header("x-acs-security-token").unwrap_or("");
        let token_ok = match key.security_token.as_deref() {
            Some(want) => auth::constant_time_eq(want.as_bytes(), sent_token.as_bytes()),
            None => sent_token.is_empty(),
        };
        if !token_ok {
            return Err(ApiError::gateway(
                "InvalidSecurityToken.MismatchWithAccessKey",
                "The security token does not belong to this access key.",
            ));
        }
        if self
            .sts_expirations
            .get(ak)
            .is_some_and(|expires| now >= *expires)
        {
            return Err(ApiError::gateway(
                "InvalidSecurityToken.Expired",
                "Specified SecurityToken is expired.",
            ));
        }
        if let Some(nonce) = req.header("x-acs-signature-nonce") {
            let window = self.config.max_skew;
            if !self
                .nonces
                .check_and_remember(format!("{ak}\n{nonce}"), now, window)
            {
                return Err(ApiError::gateway(
                    "SignatureNonceUsed",
                    "Specified signature nonce was used already.",
                ));
            }
        }
        Ok(())
    }

    /// Counts the call against the key's quota (sliding 60 s window), or refuses it with
    /// `Throttling.User` and the milliseconds until the oldest counted call leaves the window. A
    /// key switched to throttling ([`Model::set_throttle`]) is refused every call.
    pub fn admit(&mut self, access_key_id: &str, now: Timestamp) -> Result<(), ApiError> {
        if let Some(retry_after_millis) = self.throttled.get(access_key_id) {
            let mut err = throttling_user();
            err.retry_after_millis = *retry_after_millis;
            return Err(err);
        }
        let limit = self
            .config
            .key_requests_per_minute
            .get(access_key_id)
            .copied()
            .unwrap_or(self.config.requests_per_minute) as usize;
        if limit == 0 {
            return Ok(());
        }
        let calls = self.quota.entry(access_key_id.to_string()).or_default();
        while calls
            .front()
            .is_some_and(|t| now.duration_since(*t) >= QUOTA_WINDOW)
        {
            calls.pop_front();
        }
        if calls.len() >= limit {
            let frees_in = QUOTA_WINDOW - now.duration_since(calls[0]);
            let mut err = throttling_user();
            err.retry_after_millis = Some(frees_in.as_millis().max(1) as u64);
            return Err(err);
        }
        calls.push_back(now);
        Ok(())
    }

    /// Brings the model to `now`: ends the change orders whose time is up (a successful
    /// CoDeleteInstances removes its instances then, a failed one only its `removedInstances`) and
    /// makes the console change orders whose time has come, once their app is free. Repeats until
    /// nothing changes, since one that ends can free its app for a queued one that also ends.
    fn advance(&mut self, now: Timestamp) {
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
    fn running_change_order(&self, app_id: &str) -> Option<&ChangeOrder> {
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
    fn push_change_order(&mut self, co: ChangeOrder) {
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

    fn change_order(&self, id: &str) -> Result<&ChangeOrder, ApiError> {
        self.change_orders
            .iter()
            .find(|co| co.id == id)
            .ok_or_else(|| with_message(format!("The change order {id} does not exist.")))
    }

    /// Validates what can be validated without executing and names the app whose faults apply.
    fn precheck(&self, op: Operation, params: Params<'_>) -> Result<String, ApiError> {
        match op {
            Operation::DescribeChangeOrder => {
                let id = params.required("ChangeOrderId")?;
                Ok(self.change_order(id)?.app_id.clone())
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
        let app_id = match self.precheck(op, Params(query)) {
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
        self.precheck(op, params)?;
        self.run(op, params, now)
    }

    /// [`Model::execute`] once the state is advanced to `now` and the call prechecked.
    fn run(&mut self, op: Operation, params: Params<'_>, now: Timestamp) -> Outcome {
        let style = self.config.time_style;
        let data = match op {
            Operation::DeleteInstances => return self.delete_instances(params, now),
            Operation::DescribeChangeOrder => self
                .change_order(params.required("ChangeOrderId")?)?
                .describe(now, &style),
            Operation::ListChangeOrders => {
                let app_id = params.required("AppId")?;
                let co_type = params.get("CoType");
                let (page, size) = params.page()?;
                let matching: Vec<&ChangeOrder> = self
                    .change_orders
                    .iter()
                    .rev()
                    .filter(|co| {
                        co.app_id == app_id && co_type.is_none_or(|t| t == co.co_type_code)
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

    /// The phases and end of the app's next API-made change order, from its pending
    /// `slowStart` and `changeOrderResult` faults (each use takes one of their `times`).
    fn script_for_api_change_order(&mut self, app_id: &str) -> Script {
        let mut script = Script {
            approval: SignedDuration::ZERO,
            preparing: SignedDuration::ZERO,
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

fn skip(page: u32, size: u32) -> usize {
    (page as usize - 1).saturating_mul(size as usize)
}

#[cfg(test)]
mod tests;
