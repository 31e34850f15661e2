//! Whether the policies let one object send DeleteInstances now, and if not, why and until when.
//!
//! [`PolicySet::new`] checks every policy once (when policies change); [`PolicySet::decide`] is
//! pure: the caller brings the time, the instances this controller deleted on the app in the last
//! hour, and (only when asked for) the app's Running instance count.

use std::collections::BTreeMap;

use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use kube::ResourceExt;

use super::types::{CredentialsMode, SaeDeletionPolicy, SaeDeletionPolicySpec};
use super::window::{Window, any_open, next_all_open};

/// What the policies need to know of the object about to send.
#[derive(Clone, Copy, Debug)]
pub struct Subject<'a> {
    pub namespace: &'a str,
    /// Labels of the object's Namespace; None when the controller does not know the namespace
    /// (not in its cache yet): then no namespaceSelector matches it (fail closed), while
    /// `namespaces` still does.
    pub namespace_labels: Option<&'a BTreeMap<String, String>>,
    pub app_id: &'a str,
    pub region_id: &'a str,
    /// The object names spec.credentialsRef (as pinned by its first attempt).
    pub uses_secret: bool,
    /// Instance ids the object names (as pinned by its first attempt).
    pub instances: u32,
}

/// What the caller measured for this decision.
#[derive(Clone, Copy, Debug)]
pub struct Facts {
    pub now: Timestamp,
    /// Instances this controller deleted (or may have: lost answers) on the same app in the 60
    /// minutes before `now`: see [`super::count_recent`].
    pub deleted_last_hour: u32,
    /// Running instances of the app in SAE's instance list, read right before this send. None
    /// until [`Verdict::NeedRunningCount`] asked for it.
    pub running: Option<u32>,
    /// The controller runs with `--require-policy`: no policy at all means nothing is admitted.
    pub require_policy: bool,
}

/// The status reason of a refusal (the names are part of the API).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RefusalReason {
    /// No policy admits the object (scope, credentials), or it names more instances than one
    /// admits in one object, or a policy that may apply to it is invalid.
    NotPermitted,
    /// minRunningInstances or maxInstancesPerHour would be broken.
    DisruptionBudget,
    /// A policy's maintenance windows are all closed.
    OutsideMaintenanceWindow,
}

impl RefusalReason {
    pub fn as_str(self) -> &'static str {
        match self {
            RefusalReason::NotPermitted => "NotPermitted",
            RefusalReason::DisruptionBudget => "DisruptionBudget",
            RefusalReason::OutsideMaintenanceWindow => "OutsideMaintenanceWindow",
        }
    }
}

/// Why an object may not send now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refusal {
    pub reason: RefusalReason,
    /// The policy whose rule refused; None when no policy exists (`--require-policy`) or none
    /// admits the object.
    pub policy: Option<String>,
    /// For the status: names the policy and the limit.
    pub message: String,
    /// When a window opens in which every window-restricted policy admitting the object is
    /// open (OutsideMaintenanceWindow only): decide again then. None otherwise, or when the
    /// windows never meet within a week.
    pub retry_at: Option<Timestamp>,
}

/// The outcome of [`PolicySet::decide`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Send. `by`: the policies that admitted the object, by name (empty when none exists).
    Admitted { by: Vec<String> },
    /// Every other rule passed; these admitting policies set minRunningInstances: read the app's
    /// instance list and decide again with [`Facts::running`].
    NeedRunningCount { policies: Vec<String> },
    /// Do not send; the object stays Pending with this reason (Failed at its deadline).
    Refused(Refusal),
}

/// One policy as the controller uses it: checked, zones loaded.
#[derive(Clone, Debug)]
struct Checked {
    name: String,
    spec: SaeDeletionPolicySpec,
    windows: Vec<Window>,
}

/// All policies in the cluster, each checked once.
#[derive(Clone, Debug, Default)]
pub struct PolicySet {
    /// Valid policies, by name.
    valid: Vec<Checked>,
    /// Invalid ones, by name: (name, spec, what is wrong).
    invalid: Vec<(String, SaeDeletionPolicySpec, String)>,
}

/// Checks a policy as [`PolicySet::new`] does: Err says what is wrong, for its status. An
/// invalid policy admits nothing.
pub fn validate(policy: &SaeDeletionPolicy) -> Result<(), String> {
    check(&policy.spec).map(|_| ())
}

fn check(spec: &SaeDeletionPolicySpec) -> Result<Vec<Window>, String> {
    // The schema says the same with minItems; an empty list that got past it would read as
    // "nothing matches", which nobody means: say so instead.
    for (field, list) in [
        ("namespaces", spec.namespaces.as_ref()),
        ("appIds", spec.app_ids.as_ref()),
        ("regionIds", spec.region_ids.as_ref()),
    ] {
        if list.is_some_and(|l| l.is_empty()) {
            return Err(format!(
                "{field} is empty: it would admit nothing; leave it out to admit every one"
            ));
        }
    }
    if let Some(selector) = &spec.namespace_selector {
        check_selector(selector)?;
    }
    for (field, value, min) in [
        (
            "maxInstancesPerDeletion",
            spec.max_instances_per_deletion,
            1,
        ),
        ("minRunningInstances", spec.min_running_instances, 0),
        ("maxInstancesPerHour", spec.max_instances_per_hour, 1),
    ] {
        if let Some(v) = value
            && v < min
        {
            return Err(format!("{field} is {v}; it must be at least {min}"));
        }
    }
    let Some(windows) = &spec.windows else {
        return Ok(Vec::new());
    };
    if windows.is_empty() {
        return Err(
            "windows is empty: no request could ever start; leave it out to allow any time".into(),
        );
    }
    windows.iter().map(Window::parse).collect()
}

/// The rules Kubernetes itself applies to a LabelSelector.
fn check_selector(selector: &LabelSelector) -> Result<(), String> {
    for req in selector.match_expressions.iter().flatten() {
        let values = req.values.as_deref().unwrap_or_default();
        match req.operator.as_str() {
            "In" | "NotIn" if values.is_empty() => {
                return Err(format!(
                    "namespaceSelector: {} {} needs at least one value",
                    req.key, req.operator
                ));
            }
            "Exists" | "DoesNotExist" if !values.is_empty() => {
                return Err(format!(
                    "namespaceSelector: {} {} takes no values",
                    req.key, req.operator
                ));
            }
            "In" | "NotIn" | "Exists" | "DoesNotExist" => {}
            other => {
                return Err(format!(
                    "namespaceSelector: unknown operator {other:?} (In, NotIn, Exists, DoesNotExist)"
                ));
            }
        }
    }
    Ok(())
}

fn selector_matches(selector: &LabelSelector, labels: &BTreeMap<String, String>) -> bool {
    let labels_match = selector
        .match_labels
        .iter()
        .flatten()
        .all(|(k, v)| labels.get(k) == Some(v));
    labels_match
        && selector.match_expressions.iter().flatten().all(|req| {
            let values = req.values.as_deref().unwrap_or_default();
            let value = labels.get(&req.key);
            match req.operator.as_str() {
                "In" => value.is_some_and(|v| values.contains(v)),
                "NotIn" => value.is_none_or(|v| !values.contains(v)),
                "Exists" => value.is_some(),
                "DoesNotExist" => value.is_none(),
                // Unknown operators make the policy invalid before it gets here; never match.
                _ => false,
            }
        })
}

/// Why a policy's scope does not cover the subject (for messages), or None when it does.
fn scope_miss(spec: &SaeDeletionPolicySpec, s: &Subject<'_>) -> Option<String> {
    scope_miss_as(spec, s, false)
}

/// Like [`scope_miss`]; `lenient` (for invalid policies, to fail closed): a namespaceSelector
/// that cannot be evaluated (malformed, or the namespace's labels unknown) counts as matching.
fn scope_miss_as(spec: &SaeDeletionPolicySpec, s: &Subject<'_>, lenient: bool) -> Option<String> {
    // An empty list admits nothing; for an invalid policy it cannot be read as a restriction
    // either, so it is read as unset.
    let listed = |list: &Option<Vec<String>>, value: &str| {
        list.as_ref()
            .filter(|l| !(lenient && l.is_empty()))
            .map(|l| l.iter().any(|v| v == value))
    };
    let by_name = listed(&spec.namespaces, s.namespace);
    let by_label = spec
        .namespace_selector
        .as_ref()
        .map(|sel| match s.namespace_labels {
            _ if lenient && check_selector(sel).is_err() => true,
            Some(labels) => selector_matches(sel, labels),
            None => lenient,
        });
    let namespace_ok = match (by_name, by_label) {
        (None, None) => true,
        (a, b) => a == Some(true) || b == Some(true),
    };
    if !namespace_ok {
        let unknown = if by_label.is_some() && s.namespace_labels.is_none() {
            " (its labels are not known yet)"
        } else {
            ""
        };
        return Some(format!("namespace {}{unknown} not admitted", s.namespace));
    }
    if listed(&spec.app_ids, s.app_id) == Some(false) {
        return Some(format!("app {} not admitted", s.app_id));
    }
    if listed(&spec.region_ids, s.region_id) == Some(false) {
        return Some(format!("region {} not admitted", s.region_id));
    }
    match (spec.credentials, s.uses_secret) {
        (CredentialsMode::SecretOnly, false) => {
            Some("credentials SecretOnly, but the object names no credentialsRef".into())
        }
        (CredentialsMode::ControllerOnly, true) => {
            Some("credentials ControllerOnly, but the object names a credentialsRef".into())
        }
        _ => None,
    }
}

/// At most this many policies are named in one message; the rest are counted.
const NAMED_IN_MESSAGE: usize = 3;

fn quote(name: &str) -> String {
    format!("SaeDeletionPolicy {name:?}")
}

impl PolicySet {
    /// Checks every policy (looking up the zones of their windows). Call it when policies change.
    pub fn new<'a>(policies: impl IntoIterator<Item = &'a SaeDeletionPolicy>) -> Self {
        let mut set = PolicySet::default();
        for p in policies {
            let name = p.name_any();
            match check(&p.spec) {
                Ok(windows) => set.valid.push(Checked {
                    name,
                    spec: p.spec.clone(),
                    windows,
                }),
                Err(why) => set.invalid.push((name, p.spec.clone(), why)),
            }
        }
        set.valid.sort_by(|a, b| a.name.cmp(&b.name));
        set.invalid.sort_by(|a, b| a.0.cmp(&b.0));
        set
    }

    /// The first policy (valid or invalid, by name) that sets `namespaceSelector`: while a
    /// namespace's labels are not known, no decision about an object in it can be trusted.
    pub fn selecting_by_label(&self) -> Option<&str> {
        let valid = self
            .valid
            .iter()
            .filter(|c| c.spec.namespace_selector.is_some())
            .map(|c| c.name.as_str());
        let invalid = self
            .invalid
            .iter()
            .filter(|(_, spec, _)| spec.namespace_selector.is_some())
            .map(|(name, _, _)| name.as_str());
        valid.chain(invalid).min()
    }

    pub fn is_empty(&self) -> bool {
        self.valid.is_empty() && self.invalid.is_empty()
    }

    /// Whether the object may send now. Checks, in this order: a policy exists or none is
    /// required; no invalid policy may apply; some policy admits (scope); size; windows;
    /// instances per hour; instances left Running (last, as only it needs an SAE call). The
    /// first rule broken is the one reported; of several admitting policies the strictest limit
    /// binds and is named.
    pub fn decide(&self, s: &Subject<'_>, facts: &Facts) -> Verdict {
        if self.is_empty() {
            if facts.require_policy {
                return refuse(
                    RefusalReason::NotPermitted,
                    None,
                    "no SaeDeletionPolicy exists and the controller runs with --require-policy: \
                     create one that admits this object"
                        .into(),
                );
            }
            return Verdict::Admitted { by: Vec::new() };
        }

        // Fail closed: an invalid policy cannot say what it would allow, so an object it may
        // apply to is not sent. Its scope is read as written; only a policy whose scope clearly
        // excludes the object is out of the way.
        if let Some((name, _, why)) = self
            .invalid
            .iter()
            .find(|(_, spec, _)| scope_miss_as(spec, s, true).is_none())
        {
            return refuse(
                RefusalReason::NotPermitted,
                Some(name),
                format!(
                    "{} applies to this object but is invalid, so it admits nothing until fixed: {why}",
                    quote(name)
                ),
            );
        }

        let admitting: Vec<&Checked> = self
            .valid
            .iter()
            .filter(|p| scope_miss(&p.spec, s).is_none())
            .collect();
        if admitting.is_empty() {
            return refuse(RefusalReason::NotPermitted, None, self.nobody_admits(s));
        }

        // 1. Size: a fact of the object, no waiting helps.
        if let Some(p) = strictest(
            &admitting,
            |spec| spec.max_instances_per_deletion,
            Strict::Lowest,
        ) {
            let max = p.spec.max_instances_per_deletion.unwrap_or_default();
            if i64::from(s.instances) > i64::from(max) {
                return refuse(
                    RefusalReason::NotPermitted,
                    Some(&p.name),
                    format!(
                        "{} allows at most {max} instance ids in one object (maxInstancesPerDeletion); \
                         this one names {}: split it into smaller objects",
                        quote(&p.name),
                        s.instances
                    ),
                );
            }
        }

        // 2. Windows: every admitting policy that has windows must have one open.
        if let Some(closed) = admitting
            .iter()
            .find(|p| !p.windows.is_empty() && !any_open(&p.windows, facts.now))
        {
            let lists: Vec<&[Window]> = admitting
                .iter()
                .filter(|p| !p.windows.is_empty())
                .map(|p| p.windows.as_slice())
                .collect();
            let retry_at = next_all_open(&lists, facts.now);
            let labels: Vec<&str> = closed.windows.iter().map(Window::label).collect();
            let next = match retry_at {
                Some(t) => format!("; next chance {t}"),
                None if lists.len() > 1 => {
                    "; the windows of the policies admitting it do not meet within a week".into()
                }
                None => String::new(),
            };
            return Verdict::Refused(Refusal {
                reason: RefusalReason::OutsideMaintenanceWindow,
                policy: Some(closed.name.clone()),
                message: format!(
                    "{} lets a deletion start only inside its windows ({}){next}",
                    quote(&closed.name),
                    labels.join("; ")
                ),
                retry_at,
            });
        }

        // 3. Instances per hour on this app.
        if let Some(p) = strictest(
            &admitting,
            |spec| spec.max_instances_per_hour,
            Strict::Lowest,
        ) {
            let max = p.spec.max_instances_per_hour.unwrap_or_default();
            let after = i64::from(facts.deleted_last_hour) + i64::from(s.instances);
            if after > i64::from(max) {
                let never = if i64::from(s.instances) > i64::from(max) {
                    ": this object alone names more, so it can never be sent; split it"
                } else {
                    ""
                };
                return refuse(
                    RefusalReason::DisruptionBudget,
                    Some(&p.name),
                    format!(
                        "{} allows at most {max} instances of app {} to be deleted in any 60 minutes \
                         (maxInstancesPerHour); {} were in the last 60 minutes and this object names {}{never}",
                        quote(&p.name),
                        s.app_id,
                        facts.deleted_last_hour,
                        s.instances
                    ),
                );
            }
        }

        // 4. Instances left Running: last, because it costs an SAE call to know.
        if let Some(p) = strictest(
            &admitting,
            |spec| spec.min_running_instances,
            Strict::Highest,
        ) {
            let Some(running) = facts.running else {
                return Verdict::NeedRunningCount {
                    policies: admitting
                        .iter()
                        .filter(|p| p.spec.min_running_instances.is_some())
                        .map(|p| p.name.clone())
                        .collect(),
                };
            };
            let min = p.spec.min_running_instances.unwrap_or_default();
            // Every named id counts as a Running one that stops; never fewer than none left.
            let left = (i64::from(running) - i64::from(s.instances)).max(0);
            if left < i64::from(min) {
                return refuse(
                    RefusalReason::DisruptionBudget,
                    Some(&p.name),
                    format!(
                        "{} keeps at least {min} instances of app {} Running (minRunningInstances); \
                         SAE lists {running} Running and this object names {}, which would leave {}",
                        quote(&p.name),
                        s.app_id,
                        s.instances,
                        left
                    ),
                );
            }
        }

        Verdict::Admitted {
            by: admitting.iter().map(|p| p.name.clone()).collect(),
        }
    }

    fn nobody_admits(&self, s: &Subject<'_>) -> String {
        let credentials = if s.uses_secret {
            "a credentialsRef"
        } else {
            "the controller's credentials"
        };
        let mut why: Vec<String> = self
            .valid
            .iter()
            .take(NAMED_IN_MESSAGE)
            .filter_map(|p| scope_miss(&p.spec, s).map(|miss| format!("{}: {miss}", p.name)))
            .collect();
        if self.valid.len() > NAMED_IN_MESSAGE {
            why.push(format!("{} more", self.valid.len() - NAMED_IN_MESSAGE));
        }
        let mut message = format!(
            "no SaeDeletionPolicy admits namespace {}, app {}, region {} with {credentials}",
            s.namespace, s.app_id, s.region_id
        );
        if !why.is_empty() {
            message.push_str(&format!(" ({})", why.join("; ")));
        }
        if !self.invalid.is_empty() {
            let names: Vec<&str> = self
                .invalid
                .iter()
                .take(NAMED_IN_MESSAGE)
                .map(|(n, _, _)| n.as_str())
                .collect();
            message.push_str(&format!(
                "; invalid policies admit nothing: {}",
                names.join(", ")
            ));
        }
        message
    }
}

fn refuse(reason: RefusalReason, policy: Option<&str>, message: String) -> Verdict {
    Verdict::Refused(Refusal {
        reason,
        policy: policy.map(str::to_string),
        message,
        retry_at: None,
    })
}

#[derive(Clone, Copy)]
enum Strict {
    Lowest,
    Highest,
}

/// Of the admitting policies that set a limit, the strictest (by name on a tie): if it holds,
/// every other does, and a refusal names the policy that binds.
fn strictest<'a>(
    admitting: &[&'a Checked],
    limit: impl Fn(&SaeDeletionPolicySpec) -> Option<i32>,
    strict: Strict,
) -> Option<&'a Checked> {
    let mut best: Option<(&'a Checked, i32)> = None;
    for p in admitting {
        let Some(v) = limit(&p.spec) else { continue };
        let better = match (best, strict) {
            (None, _) => true,
            (Some((_, b)), Strict::Lowest) => v < b,
            (Some((_, b)), Strict::Highest) => v > b,
        };
        if better {
            best = Some((p, v));
        }
    }
    best.map(|(p, _)| p)
}
