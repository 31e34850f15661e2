//! sae-controller: deletes Alibaba Cloud SAE application instances, at most once, from Kubernetes objects.
//!
//! The crate is a pure core with I/O at the edges:
//! - [`cli`]: the pure parts of the `kubectl sae` plugin (parsing, checks, timelines, tables).
//! - [`sae`]: talking to SAE (signing, typed client, error classes); no Kubernetes types inside.
//! - [`crd`]: the `SaeInstanceDeletion` API types; `crds/` is generated from them.
//! - [`decide`]: the pure decision function at the centre of the controller.
//! - [`policy`]: `SaeDeletionPolicy` guard rails (which objects may delete, within which limits):
//!   the API type and its pure decision; not wired into the controller yet.
//! - [`steps`]: one reconcile: the loop from decisions to effects and back, shared with the tests.
//! - [`controller`]: the production side of the loop: the watch and cache, status writes, events,
//!   credentials, and SAE calls behind the quota: the [`steps::Effects`] that perform what `decide`
//!   chose.
//! - [`leader`]: the leader-Lease fence checked right before every DeleteInstances.
//! - [`metrics`]: the Prometheus metrics served on `/metrics` ([`ops_metrics`]: build, watch health,
//!   deadlines; [`metrics_text`]: the classic text format for scrapers that do not ask for
//!   OpenMetrics).
//! - [`version`]: the crate version and git commit of this build.
//! - [`quota`]: the per-AccessKey request budget every SAE call waits on.
//! - [`simulator`]: a local stand-in for SAE used by tests and `make demo`.
//! - `telemetry` (feature `otel`): OpenTelemetry traces over OTLP/HTTP.

pub mod cli;
pub mod controller;
pub mod crd;
pub mod decide;
#[cfg(test)]
pub(crate) mod fixtures;
pub mod leader;
pub mod metrics;
pub mod metrics_text;
pub mod ops_metrics;
pub mod policy;
pub mod quota;
pub mod sae;
pub mod simulator;
pub mod steps;
#[cfg(feature = "otel")]
pub mod telemetry;
pub mod version;
