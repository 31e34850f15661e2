//! `kubectl sae check`: would this deletion be admitted now, and if not, why — from the cluster's
//! SaeDeletionPolicy objects and SaeInstanceDeletion statuses, with the controller's own rules
//! ([`PolicySet::decide`], [`app_turn`]), creating nothing and calling no SAE.
//!
//! What cannot be answered without SAE is said, not guessed: a policy's minRunningInstances needs
//! the app's running instance count, which the controller reads right before it sends.

use std::collections::BTreeMap;
use std::sync::Arc;

use jiff::Timestamp;
use jiff::tz::TimeZone;

use super::DeleteRequest;
use super::timeline::clock;
use crate::crd::SaeInstanceDeletion;
use crate::decide::{AppTurn, app_turn};
use crate::policy::{Facts, PolicySet, SaeDeletionPolicy, Subject, Verdict, count_recent_objects};

/// The answer: whether the policies admit the request now, and the lines that say why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CheckAnswer {
    pub admitted: bool,
    pub lines: Vec<String>,
    /// The verdict hangs on a namespaceSelector and the namespace's labels could not be read:
    /// the answer cannot be told (the plugin exits 3). `admitted` is then what it would be if
    /// no selector matched.
    pub cannot_tell: bool,
}

/// What the plugin read from the cluster for the check.
pub struct Cluster<'a> {
    pub namespace: &'a str,
    /// The namespace's labels; None when the plugin may not read them (then a namespaceSelector
    /// matches nothing, as in the controller when it does not know the namespace).
    pub namespace_labels: Option<&'a BTreeMap<String, String>>,
    pub policies: &'a [SaeDeletionPolicy],
    /// Every SaeInstanceDeletion the plugin could read (the hourly budget and the app's line).
    pub objects: &'a [SaeInstanceDeletion],
}

/// Checks `request` as the controller would if it were created at `now`.
pub fn check(
    request: &DeleteRequest,
    cluster: &Cluster<'_>,
    now: Timestamp,
    tz: &TimeZone,
) -> CheckAnswer {
    let set = PolicySet::new(cluster.policies);
    let subject = Subject {
        namespace: cluster.namespace,
        namespace_labels: cluster.namespace_labels,
        app_id: &request.app_id,
        region_id: &request.region_id,
        uses_secret: request.credentials.is_some(),
        instances: u32::try_from(request.instance_ids.len()).unwrap_or(u32::MAX),
    };
    let facts = Facts {
        now,
        deleted_last_hour: count_recent_objects(
            cluster.objects,
            &request.region_id,
            &request.app_id,
            now,
        ),
        running: None,
        // The plugin cannot see the controller's flags; the no-policy answer says what changes.
        require_policy: false,
    };
    let mut lines = Vec::new();
    let admitted = match set.decide(&subject, &facts) {
        Verdict::Admitted { by } if by.is_empty() => {
            lines.push(
                "no SaeDeletionPolicy exists: admitted unless the controller runs with --require-policy"
                    .to_string(),
            );
            true
        }
        Verdict::Admitted { by } => {
            lines.push(format!("admitted by {}", names(&by)));
            true
        }
        Verdict::NeedRunningCount { policies } => {
            lines.push(format!(
                "admitted by every rule that can be checked here; {} also set minRunningInstances, which would need \
                 SAE's instance count at send time (the controller reads it right before sending and refuses with \
                 DisruptionBudget if too few would be left)",
                names(&policies)
            ));
            true
        }
        Verdict::Refused(refusal) => {
            let by = refusal.policy.as_deref().map_or_else(
                || "no policy admits it".to_string(),
                |p| format!("policy {p:?}"),
            );
            lines.push(format!(
                "refused ({}, {by}): {}",
                refusal.reason.as_str(),
                refusal.message
            ));
            if let Some(t) = refusal.retry_at {
                lines.push(format!(
                    "a maintenance window opens at {}; created now, it would be sent then",
                    clock(t, tz)
                ));
            }
            false
        }
    };
    if facts.deleted_last_hour > 0 {
        lines.push(format!(
            "instances this controller deleted (or may have) on the app in the last hour: {}",
            facts.deleted_last_hour
        ));
    }
    lines.push(queue_line(request, cluster, now));
    let cannot_tell = cluster.namespace_labels.is_none()
        && cluster
            .policies
            .iter()
            .any(|p| p.spec.namespace_selector.is_some());
    if cannot_tell {
        lines.insert(
            0,
            format!(
                "cannot tell: a SaeDeletionPolicy selects namespaces by label and namespace {}'s labels \
                 could not be read (the answer below takes no selector to match)",
                cluster.namespace
            ),
        );
    }
    CheckAnswer {
        admitted,
        lines,
        cannot_tell,
    }
}

fn names(policies: &[String]) -> String {
    let quoted: Vec<String> = policies.iter().map(|p| format!("{p:?}")).collect();
    format!("SaeDeletionPolicy {}", quoted.join(", "))
}

/// Whether the app is free, from the other objects' statuses, for an object created now.
fn queue_line(request: &DeleteRequest, cluster: &Cluster<'_>, now: Timestamp) -> String {
    if request.dry_run {
        return "a dry run takes no turn on the app".into();
    }
    let mut me = request.to_object(cluster.namespace);
    me.metadata.name = Some(request.name.clone().unwrap_or_else(|| "(new)".into()));
    me.metadata.creation_timestamp =
        Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(now));
    let others: Vec<Arc<SaeInstanceDeletion>> =
        cluster.objects.iter().cloned().map(Arc::new).collect();
    match app_turn(&others, &me) {
        AppTurn::Free => format!("app {}: free, nothing ahead in line", request.app_id),
        AppTurn::Busy { holder } => format!(
            "app {}: would wait; {holder} holds it (an attempt or change order running)",
            request.app_id
        ),
        AppTurn::Queued { ahead } => format!(
            "app {}: would wait in line behind {ahead} and any older waiting objects",
            request.app_id
        ),
    }
}

#[cfg(test)]
mod tests;
