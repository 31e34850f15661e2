//! The running simulator ([`Simulator`]): the model behind a lock, the clock it reads, the ECS
//! metadata service, and what it is started with ([`SimulatorConfig`]). Every connection shares
//! one; tests hold it to script faults and read the ledger.
//!
//! Depends on `state`, `seed`, `ledger`, `metadata`, `change_order` and `clock`; not on `http`,
//! which depends on it.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use jiff::Timestamp;
use tokio::sync::watch;

use super::change_order::ConsoleChangeOrderSpec;
use super::clock::{Clock, SystemClock};
use super::ledger::Ledger;
use super::metadata;
use super::seed::{AccessKeySpec, AppFaults, OidcTokenSpec, Seed};
use super::state::{Model, ModelConfig};

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

fn sae_clock(clock: Timestamp, config: &ModelConfig) -> Timestamp {
    clock.saturating_add(config.clock_skew).unwrap_or(clock)
}

/// A configuration or seed the simulator cannot use.
#[derive(Debug, thiserror::Error)]
#[error("simulator configuration: {0}")]
pub struct ConfigError(pub String);

/// The longest outage `POST /_sim/offline` accepts: one hour.
pub const MAX_OFFLINE_SECS: f64 = 3600.0;

/// An order to stop serving: the accept loops close their listening sockets (so connecting is
/// refused) and every open connection is closed, until `until` on the machine's monotonic clock.
/// A socket cannot be reopened lazily when someone next looks, so unlike everything else the
/// outage runs on real time, not on the simulator's (possibly manual) clock.
#[derive(Clone, Copy, Debug)]
pub struct Outage {
    /// Counts outages, so an accept loop can say which one it has carried out.
    pub seq: u64,
    pub until: tokio::time::Instant,
}

/// The shared state behind every connection.
pub struct Simulator {
    model: Mutex<Model>,
    clock: Arc<dyn Clock>,
    /// The ECS instance metadata service (RAM role credentials), see [`metadata`].
    metadata: metadata::MetadataService,
    /// The latest outage ordered; accept loops and connections watch it.
    outages: watch::Sender<Option<Outage>>,
    /// The latest outage an accept loop has gone offline for (its listener is closed).
    outage_done: watch::Sender<u64>,
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
            outages: watch::Sender::new(None),
            outage_done: watch::Sender::new(0),
        })
    }

    /// Takes SAE offline for `duration` of real time: every [`serve`](crate::simulator::serve)
    /// loop of this simulator closes its listening socket, so connecting is refused (not left
    /// hanging), and closes its connections (idle ones at once, busy ones after a short grace);
    /// then it binds the same address again and serves as before. Nothing of the model changes:
    /// apps, change orders and the ledger are all there afterwards.
    ///
    /// Returns once a serve loop has closed its listener, so a caller that connects right after
    /// is refused; `false` if none did within a second (nothing is serving this simulator).
    pub async fn go_offline(&self, duration: Duration) -> bool {
        let mut done = self.outage_done.subscribe();
        let mut seq = 0;
        self.outages.send_modify(|outage| {
            seq = outage.map_or(0, |o| o.seq) + 1;
            *outage = Some(Outage {
                seq,
                until: tokio::time::Instant::now() + duration,
            });
        });
        tokio::time::timeout(Duration::from_secs(1), done.wait_for(|&d| d >= seq))
            .await
            .is_ok_and(|r| r.is_ok())
    }

    /// Watches the outages ordered from now on (accept loops and connections).
    pub(crate) fn outages(&self) -> watch::Receiver<Option<Outage>> {
        self.outages.subscribe()
    }

    /// An accept loop reports that it has closed its listener for outage `seq`.
    pub(crate) fn went_offline(&self, seq: u64) {
        self.outage_done.send_if_modified(|done| {
            let newer = seq > *done;
            if newer {
                *done = seq;
            }
            newer
        });
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
