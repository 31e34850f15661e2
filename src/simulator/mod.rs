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
//! - Reads agree with writes at once unless told otherwise: SAE promises no read-after-write
//!   consistency, so `list_lag` / `describe_lag` hide young change orders from ListChangeOrders /
//!   DescribeChangeOrder (only the reads: the change order holds its app and is in the ledger from
//!   its creation). An outage (`POST /_sim/offline`) closes the socket so connecting is refused.
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
//!
//! ## Modules
//!
//! The map, leaves first. Each module's own docs say what it may depend on; none imports this
//! file's items, and no two import each other.
//!
//! - `api_error`, `times`, `clock`: leaves (error answers; time formats; clocks and skew bounds).
//! - `routing`: operation by method and path, query parameters. `auth`: signature checks.
//! - `change_order`: one change order's phases and rendering. `seed`: what the simulator is given.
//! - `ledger`: what it records. `metadata`: the ECS instance metadata service.
//! - `state`: the pure model ([`Model`]), its behaviour by concern in `state/`.
//! - `shared`: the running [`Simulator`] (model behind a lock, clock, metadata service).
//! - `http`: the accept loop and dispatch; `http/api` SAE's API and STS, `http/admin` `/_sim/`,
//!   `http/wire` decoding.
//!
//! None holds a Kubernetes type. The simulator may use `crate::sae` for signing and the list of
//! operations, but keeps its own knowledge of SAE's behaviour: it is the independent witness the
//! controller is tested against, so it never imports `crate::sae::codes` or the controller's
//! decision code (`crate::decide`, `crate::controller`).

mod api_error;
mod auth;
mod change_order;
mod clock;
mod http;
mod ledger;
pub mod metadata;
mod routing;
mod seed;
mod shared;
mod state;
mod times;

pub use api_error::ApiError;
pub use auth::{
    Authorization, ReceivedRequest, constant_time_eq, parse_authorization, verify_signature,
};
pub use change_order::{ChangeOrderSource, ConsoleChangeOrderSpec, DeletingView, co_type_name};
pub use clock::{
    Clock, MAX_CLOCK_SKEW_SECS, MAX_LAG_SECS, MAX_PREPARING_SECS, ManualClock, SystemClock,
    bounded_secs, clock_skew_from_secs,
};
pub use http::{MAX_BODY_BYTES, MAX_QUERY_BYTES, serve, spawn};
pub use ledger::{
    DeletionRecord, Ledger, RepeatedDeletion, RequestRecord, repeated_deletions, sae_time,
};
pub use routing::Operation;
pub use seed::{
    AccessKeySpec, AppFaults, AppSpec, FaultSpec, GroupSpec, OidcTokenSpec, Seed, StsIssued,
};
pub use shared::{ConfigError, MAX_OFFLINE_SECS, Simulator, SimulatorConfig};
pub use state::{CallPlan, Model, ModelConfig, Outcome, Success};
pub use times::{TimeForm, TimeStyle, http_date, offset_name, parse_offset};
