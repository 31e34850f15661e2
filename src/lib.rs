//! sae-controller: deletes Alibaba Cloud SAE application instances, at most once, from Kubernetes objects.
//!
//! The crate is a pure core with I/O at the edges:
//! - [`sae`]: talking to SAE (signing, typed client, error classes); no Kubernetes types inside.
//! - [`crd`]: the `SaeInstanceDeletion` API types; `crds/` is generated from them.
//! - [`decide`]: the pure decision function at the centre of the controller.
//! - [`steps`]: one reconcile: the loop from decisions to effects and back, shared with the tests.
//! - [`controller`]: the Kubernetes wiring around `decide`: the [`steps::Effects`] of production.
//! - [`metrics`]: the Prometheus metrics served on `/metrics` ([`ops_metrics`]: build, watch health,
//!   deadlines; [`metrics_text`]: the classic text format for scrapers that do not ask for
//!   OpenMetrics).
//! - [`version`]: the crate version and git commit of this build.
//! - [`quota`]: the per-AccessKey request budget every SAE call waits on.
//! - [`simulator`]: a local stand-in for SAE used by tests and `make demo`.
//! - `telemetry` (feature `otel`): OpenTelemetry traces over OTLP/HTTP.

pub mod controller;
pub mod crd;
pub mod decide;
pub mod metrics;
pub mod metrics_text;
pub mod ops_metrics;
pub mod quota;
pub mod sae;
pub mod simulator;
pub mod steps;
#[cfg(feature = "otel")]
pub mod telemetry;
pub mod version;
