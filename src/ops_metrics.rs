//! The metrics an operator alerts on that are about the controller rather than about SAE calls:
//! which build runs (`sae_build_info`), whether the watch works (`sae_watch_healthy`), and how much
//! of its deadline the most delayed unfinished object has used (`sae_deadline_used_ratio`).
//! Registered into the one registry of [`crate::metrics::Metrics`]; reached through
//! [`crate::metrics::Metrics::ops`].

use std::sync::atomic::AtomicU64;

use jiff::Timestamp;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use crate::crd::SaeInstanceDeletion;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BuildLabels {
    version: String,
    commit: String,
}

/// See the module docs.
#[derive(Clone, Debug)]
pub struct OpsMetrics {
    watch_healthy: Gauge,
    deadline_used: Gauge<f64, AtomicU64>,
}

impl OpsMetrics {
    /// Registers the three metrics; `sae_build_info` is set once here, the others start healthy / 0.
    pub(crate) fn register(registry: &mut Registry) -> Self {
        let build_info = Family::<BuildLabels, Gauge>::default();
        build_info
            .get_or_create(&BuildLabels {
                version: crate::version::VERSION.to_owned(),
                commit: crate::version::COMMIT.to_owned(),
            })
            .set(1);
        registry.register(
            "build_info",
            "Always 1; the labels name the version and git commit of the running binary",
            build_info,
        );

        let watch_healthy = Gauge::default();
        watch_healthy.set(1);
        registry.register(
            "watch_healthy",
            "0 once the watch on SaeInstanceDeletion objects has failed for longer than its tolerance (what /healthz reports), else 1",
            watch_healthy.clone(),
        );

        let deadline_used = Gauge::<f64, AtomicU64>::default();
        registry.register(
            "deadline_used_ratio",
            "The largest share of activeDeadlineSeconds used by an unfinished object, 0 when none is open",
            deadline_used.clone(),
        );
        Self {
            watch_healthy,
            deadline_used,
        }
    }

    pub fn set_watch_healthy(&self, healthy: bool) {
        self.watch_healthy.set(i64::from(healthy));
    }

    /// Sets `sae_deadline_used_ratio` from the unfinished objects in `objects`.
    pub fn set_deadline_used<'a>(
        &self,
        objects: impl IntoIterator<Item = &'a SaeInstanceDeletion>,
        now: Timestamp,
    ) {
        let most = objects
            .into_iter()
            .filter_map(|obj| deadline_used(obj, now))
            .fold(0.0, f64::max);
        self.deadline_used.set(most);
    }
}

/// The share of its `activeDeadlineSeconds` an unfinished object has used, counted from its
/// creation as the deadline itself is; `None` for a finished object or one without a creation time.
pub fn deadline_used(obj: &SaeInstanceDeletion, now: Timestamp) -> Option<f64> {
    if obj.status.as_ref().is_some_and(|s| s.is_terminal()) {
        return None;
    }
    let created = obj.metadata.creation_timestamp.as_ref()?.0;
    let deadline = f64::from(obj.spec.active_deadline_seconds.max(1));
    let age = now.duration_since(created).as_secs_f64().max(0.0);
    Some(age / deadline)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::{Phase, SaeInstanceDeletionSpec, SaeInstanceDeletionStatus};
    use crate::metrics::Metrics;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

    fn object(created: Option<&str>, deadline: i32, phase: Option<Phase>) -> SaeInstanceDeletion {
        let mut obj = SaeInstanceDeletion::new(
            "x",
            SaeInstanceDeletionSpec {
                active_deadline_seconds: deadline,
                ..serde_json::from_value(serde_json::json!({
                    "regionId": "cn-hangzhou", "appId": "app", "instanceIds": ["i-1"]
                }))
                .unwrap()
            },
        );
        obj.metadata.creation_timestamp = created.map(|t| Time(t.parse().unwrap()));
        obj.status = phase.map(|phase| SaeInstanceDeletionStatus {
            phase: Some(phase),
            ..Default::default()
        });
        obj
    }

    fn value(text: &str, name: &str) -> Option<String> {
        text.lines()
            .find_map(|l| l.strip_prefix(&format!("{name} ")))
            .map(str::to_owned)
    }

    #[test]
    fn deadline_share_counts_unfinished_objects_only() {
        let now: Timestamp = "2025-01-01T01:00:00Z".parse().unwrap();
        let open = object(Some("2025-01-01T00:30:00Z"), 3600, Some(Phase::InProgress));
        assert_eq!(deadline_used(&open, now), Some(0.5));
        let new = object(Some("2025-01-01T00:45:00Z"), 3600, None);
        assert_eq!(deadline_used(&new, now), Some(0.25));
        let done = object(Some("2025-01-01T00:00:00Z"), 60, Some(Phase::Failed));
        assert_eq!(deadline_used(&done, now), None);
        assert_eq!(deadline_used(&object(None, 60, None), now), None);
        // A clock behind the API server's gives 0, not a negative share.
        let future = object(Some("2025-01-01T02:00:00Z"), 3600, None);
        assert_eq!(deadline_used(&future, now), Some(0.0));

        let metrics = Metrics::new();
        metrics.ops().set_deadline_used([&open, &new, &done], now);
        assert_eq!(
            value(&metrics.encode(), "sae_deadline_used_ratio").as_deref(),
            Some("0.5")
        );
        metrics.ops().set_deadline_used([&done], now);
        assert_eq!(
            value(&metrics.encode(), "sae_deadline_used_ratio").as_deref(),
            Some("0.0")
        );
    }

    #[test]
    fn build_info_and_watch_health_are_exposed() {
        let metrics = Metrics::new();
        let text = metrics.encode();
        let build = format!(
            r#"sae_build_info{{version="{}",commit="{}"}}"#,
            crate::version::VERSION,
            crate::version::COMMIT
        );
        assert_eq!(value(&text, &build).as_deref(), Some("1"), "{text}");
        assert_eq!(value(&text, "sae_watch_healthy").as_deref(), Some("1"));
        metrics.ops().set_watch_healthy(false);
        assert_eq!(
            value(&metrics.encode(), "sae_watch_healthy").as_deref(),
            Some("0")
        );
    }
}
