//! `sae-simulator`: a local stand-in for Alibaba Cloud SAE, for tests and `make demo`.
//!
//! It serves the five SAE operations the controller uses, at SAE's paths, and checks every request
//! the way SAE's gateway does: the `Authorization` header (ROA v1 or V3) is recomputed from what was
//! received and compared, the date must be within the skew window, a nonce may be used only once,
//! an STS key needs its token, and each access key has a per-minute quota. Behind that sits a small
//! model of SAE (apps, groups, instances, one change order per app at a time) plus scripted faults
//! and a ledger of every request and every executed deletion. `docs/simulator.md` is the user guide.
//!
//! Using it in-process (what the Rust tests do):
//! ```no_run
//! # async fn demo() -> std::io::Result<()> {
//! use std::sync::Arc;
//! use sae_controller::simulator::{Simulator, SimulatorConfig, AccessKeySpec, spawn};
//! let config = SimulatorConfig {
//!     access_keys: vec![AccessKeySpec::parse_pair("AK:SECRET").unwrap()],
//!     ..SimulatorConfig::default()
//! };
//! let sim = Arc::new(Simulator::new(config).unwrap());
//! let addr = spawn(sim.clone()).await?; // or `serve(listener, sim)` on a listener of your own
//! let ledger = sim.ledger();
//! # let _ = (addr, ledger); Ok(()) }
//! ```
//!
//! Choices where SAE's documentation leaves room:
//! - The quota is a sliding 60-second window per AccessKeyId; throttled calls are not counted.
//! - `CreateTime` is rendered in UTC+08:00 (China Standard Time), without a zone, like SAE's
//!   example; `createTimeZone` / `createTimeFormat` choose any other offset and form, so tests can
//!   show the controller copes with each (SAE documents neither).
//! - A running CoDeleteInstances lists its instances as `Terminating`; a failed one puts them back.
//!   Both are settings or faults, since SAE documents neither.
//! - An unknown `ChangeOrderId` is `InvalidParameter.WithMessage` (HTTP 400).
//! - Routing comes first (unknown path or method: 404 `InvalidApi.NotFound`), then authentication,
//!   then quota, then the operation. A request without a nonce is accepted (ROA v1 does not require
//!   one); a nonce, when sent, may not repeat within the skew window.
//! - `POST /` is STS: `Action=AssumeRoleWithOIDC` (query or form) exchanges a token registered
//!   through `/_sim/oidc` for a fresh `STS.` key that SAE calls can sign with until it expires.
//! - `/latest/...` is the ECS instance metadata service: a RAM role attached through
//!   `/_sim/ecs-role` hands out `STS.` keys to a caller with an IMDSv2 session token
//!   ([`metadata`]).
//! - Authentication, quota and routing errors have the POP gateway's body
//!   (`RequestId, HostId, Code, Message`); SAE's own errors add `ErrorCode`, `Success:false`, `TraceId`.

mod api_error;
mod auth;
mod change_order;
mod http;
mod ledger;
pub mod metadata;
mod routing;
mod seed;
mod state;
mod times;

use std::sync::{Arc, Mutex};

use jiff::Timestamp;

pub use api_error::ApiError;
pub use auth::{
    Authorization, ReceivedRequest, constant_time_eq, parse_authorization, verify_signature,
};
pub use change_order::{ChangeOrderSource, ConsoleChangeOrderSpec, DeletingView, co_type_name};
pub use http::{MAX_BODY_BYTES, MAX_QUERY_BYTES, serve, spawn};
pub use ledger::{
    DeletionRecord, Ledger, RepeatedDeletion, RequestRecord, repeated_deletions, sae_time,
};
pub use routing::Operation;
pub use seed::{
    AccessKeySpec, AppFaults, AppSpec, FaultSpec, GroupSpec, OidcTokenSpec, Seed, StsIssued,
};
pub use state::{CallPlan, Model, ModelConfig, Outcome, Success};
pub use times::{TimeForm, TimeStyle, http_date, offset_name, parse_offset};

/// Where the simulator reads the time. One clock for everything lazy (change orders, quota,
/// nonces, skew), so a test can move time by hand. SAE's clock is this plus the configured
/// `clock_skew` ([`Simulator::now`]).
pub trait Clock: Send + Sync + 'static {
    fn now(&self) -> Timestamp;
}

/// The real clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        Timestamp::now()
    }
}

/// A clock that moves only when told to.
#[derive(Debug)]
pub struct ManualClock(Mutex<Timestamp>);

impl ManualClock {
    pub fn new(start: Timestamp) -> Self {
        Self(Mutex::new(start))
    }

    pub fn set(&self, t: Timestamp) {
        *self.0.lock().unwrap_or_else(|e| e.into_inner()) = t;
    }

    pub fn advance(&self, by: jiff::SignedDuration) {
        let mut t = self.0.lock().unwrap_or_else(|e| e.into_inner());
        *t = t.saturating_add(by).unwrap_or(*t);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Timestamp {
        *self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Everything the simulator is started with.
#[derive(Clone)]
pub struct SimulatorConfig {
    pub model: ModelConfig,
    pub access_keys: Vec<AccessKeySpec>,
    pub seed: Option<Seed>,
    pub clock: Arc<dyn Clock>,
}

impl Default for SimulatorConfig {
    fn default() -> Self {
        Self {
            model: ModelConfig::default(),
            access_keys: Vec::new(),
            seed: None,
            clock: Arc::new(SystemClock),
        }
    }
}

/// The largest clock skew accepted, either way: ten years.
pub const MAX_CLOCK_SKEW_SECS: f64 = 10.0 * 365.0 * 86_400.0;

/// A clock skew in seconds (negative: SAE's clock is behind), as the flag and admin API take it.
pub fn clock_skew_from_secs(secs: f64) -> Result<jiff::SignedDuration, String> {
    if !(secs.is_finite() && secs.abs() <= MAX_CLOCK_SKEW_SECS) {
        return Err(format!(
            "clockSkewSeconds must be a number of seconds within ±{MAX_CLOCK_SKEW_SECS}, got {secs}"
        ));
    }
    jiff::SignedDuration::try_from_secs_f64(secs).map_err(|e| e.to_string())
}

fn sae_clock(clock: Timestamp, config: &ModelConfig) -> Timestamp {
    clock.saturating_add(config.clock_skew).unwrap_or(clock)
}

/// A configuration or seed the simulator cannot use.
#[derive(Debug, thiserror::Error)]
#[error("simulator configuration: {0}")]
pub struct ConfigError(pub String);

/// The shared state behind every connection.
pub struct Simulator {
    model: Mutex<Model>,
    clock: Arc<dyn Clock>,
    /// The ECS instance metadata service (RAM role credentials), see [`metadata`].
    metadata: metadata::MetadataService,
}

impl Simulator {
    pub fn new(config: SimulatorConfig) -> Result<Self, ConfigError> {
        let now = sae_clock(config.clock.now(), &config.model);
        let mut model = Model::new(config.model);
        for key in config.access_keys {
            model.upsert_access_key(key).map_err(ConfigError)?;
        }
        if let Some(seed) = config.seed {
            model.apply_seed(seed, now).map_err(ConfigError)?;
        }
        Ok(Self {
            model: Mutex::new(model),
            clock: config.clock,
            metadata: metadata::MetadataService::default(),
        })
    }

    pub fn metadata(&self) -> &metadata::MetadataService {
        &self.metadata
    }

    /// SAE's clock: the simulator's clock plus the configured skew. Everything the simulator
    /// reports or checks (CreateTime, the `Date` header, signature dates, change order timers, the
    /// ledger's times) reads this.
    pub fn now(&self) -> Timestamp {
        self.with_model(|_, now| now)
    }

    /// Runs `f` on the model with SAE's current time, under the lock (never held across an await).
    pub fn with_model<R>(&self, f: impl FnOnce(&mut Model, Timestamp) -> R) -> R {
        // A panic elsewhere must not take the simulator down with it.
        let mut model = self.model.lock().unwrap_or_else(|e| e.into_inner());
        let now = sae_clock(self.clock.now(), model.config());
        f(&mut model, now)
    }

    /// Schedules a change order made in SAE's console on `app_id` (see
    /// [`Model::schedule_console_change_order`]); returns its id.
    pub fn console_change_order(
        &self,
        app_id: &str,
        spec: &ConsoleChangeOrderSpec,
    ) -> Result<String, ConfigError> {
        self.with_model(|model, now| model.schedule_console_change_order(app_id, spec, now))
            .map_err(ConfigError)
    }

    pub fn ledger(&self) -> Ledger {
        self.with_model(|model, now| model.ledger(now))
    }

    pub fn apply_seed(&self, seed: Seed) -> Result<(), ConfigError> {
        self.with_model(|model, now| model.apply_seed(seed, now))
            .map_err(ConfigError)
    }

    /// Lets the simulated STS accept `spec.token` in `AssumeRoleWithOIDC` (see docs/simulator.md).
    pub fn register_oidc_token(&self, spec: OidcTokenSpec) -> Result<(), ConfigError> {
        self.with_model(|model, _| model.register_oidc_token(spec))
            .map_err(ConfigError)
    }

    pub fn add_faults(&self, faults: AppFaults) -> Result<(), ConfigError> {
        self.with_model(|model, now| model.add_faults(faults, now))
            .map_err(ConfigError)
    }
}
