//! The Kubernetes wiring around [`crate::decide::decide`]: watch objects, look up credentials, write
//! status, publish events, call SAE. Every choice is made by `decide`; this module only carries
//! observations in and actions out.
//!
//! Two rules keep the I/O honest:
//! - Every status write is a PUT carrying the resourceVersion the decision was made from, so a
//!   decision taken on a stale cache can never land (the API server answers 409 and we start over).
//! - DeleteInstances is sent only after the write that records the attempt (`Submitting`) succeeded.

use std::sync::Arc;
use std::time::Duration;

use backon::{ExponentialBuilder, Retryable as _};
use futures::StreamExt;
use jiff::Timestamp;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, PostParams};
use kube::runtime::controller::{Action as Requeue, Controller};
use kube::runtime::events::{Event as KubeEvent, EventType, Recorder, Reporter};
use kube::runtime::watcher;
use kube::{Client, Resource, ResourceExt};
use tracing::{Instrument, info, info_span, warn};

use crate::crd::SaeInstanceDeletion;
use crate::decide::{Action, Clock, Observation, decide};
use crate::sae::{Credentials, SaeClient};

/// The name under which the controller writes status and publishes events.
pub const CONTROLLER_NAME: &str = "sae-controller";

/// Fallback requeue when the API server refused a status write for being stale: the watch event for
/// the newer version normally arrives first.
const CONFLICT_REQUEUE: Duration = Duration::from_secs(2);

/// What the reconciler needs, shared by all reconciles.
pub struct Context {
    pub client: Client,
    pub sae: SaeClient,
    pub recorder: Recorder,
    /// Credentials from the controller's environment, used when an object names no Secret.
    pub default_credentials: Option<Credentials>,
}

impl Context {
    pub fn new(client: Client, sae: SaeClient, default_credentials: Option<Credentials>) -> Self {
        let reporter = Reporter {
            controller: CONTROLLER_NAME.into(),
            instance: std::env::var("POD_NAME").ok(),
        };
        Self { recorder: Recorder::new(client.clone(), reporter), client, sae, default_credentials }
    }

    /// Credentials for one object, read fresh on every reconcile so a rotated or newly created
    /// Secret is used by the next attempt. Errors are messages for the status (never a value).
    async fn credentials_for(&self, obj: &SaeInstanceDeletion) -> Result<Credentials, String> {
        let namespace = obj.namespace().unwrap_or_default();
        let Some(reference) = &obj.spec.credentials_ref else {
            return self.default_credentials.clone().ok_or_else(|| {
                "spec.credentialsRef is not set and the controller has no default credentials \
                 (ALIBABA_CLOUD_ACCESS_KEY_ID / ALIBABA_CLOUD_ACCESS_KEY_SECRET): set credentialsRef \
                 to a Secret with keys accessKeyId and accessKeySecret"
                    .to_string()
            });
        };
        let secrets: Api<Secret> = Api::namespaced(self.client.clone(), &namespace);
        match secrets.get_opt(&reference.name).await {
            Ok(Some(secret)) => credentials_from_secret(&secret, &namespace),
            Ok(None) => Err(format!(
                "Secret {namespace}/{} not found: create it with keys accessKeyId and accessKeySecret \
                 (and securityToken for STS credentials)",
                reference.name
            )),
            Err(kube::Error::Api(status)) if status.code == 403 => Err(format!(
                "the controller may not read Secret {namespace}/{}: grant its ServiceAccount `get` on secrets",
                reference.name
            )),
            Err(err) => Err(format!("cannot read Secret {namespace}/{}: {err}", reference.name)),
        }
    }
}

/// Reads `accessKeyId`, `accessKeySecret` and the optional `securityToken` from a Secret. Values are
/// trimmed (a trailing newline from `echo` is the common mistake); errors name keys, never values.
pub fn credentials_from_secret(secret: &Secret, namespace: &str) -> Result<Credentials, String> {
    let name = secret.metadata.name.as_deref().unwrap_or_default();
    let read = |key: &str| -> Result<Option<String>, String> {
        let from_data = secret.data.as_ref().and_then(|d| d.get(key)).map(|v| v.0.clone());
        let from_string = secret.string_data.as_ref().and_then(|d| d.get(key)).map(|v| v.clone().into_bytes());
        match from_data.or(from_string) {
            None => Ok(None),
            Some(bytes) => {
                let text = String::from_utf8(bytes)
                    .map_err(|_| format!("Secret {namespace}/{name} key {key} is not UTF-8 text"))?;
                let text = text.trim().to_string();
                Ok((!text.is_empty()).then_some(text))
            }
        }
    };
    let missing = |key: &str| {
        format!("Secret {namespace}/{name} has no non-empty key {key}: it needs accessKeyId and accessKeySecret")
    };
    let id = read("accessKeyId")?.ok_or_else(|| missing("accessKeyId"))?;
    let secret_value = read("accessKeySecret")?.ok_or_else(|| missing("accessKeySecret"))?;
    Ok(Credentials::new(id, secret_value, read("securityToken")?))
}

/// Failures of the Kubernetes side of a reconcile; SAE failures are observations, not errors.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("writing status of {object}: {source}")]
    StatusWrite { object: String, source: kube::Error },
    #[error("internal: {0}")]
    Internal(String),
}

enum Written {
    Ok(SaeInstanceDeletion),
    /// Someone changed the object since we read it; the decision is void.
    Conflict,
}

/// PUTs the status with the resourceVersion it was decided from. Transient API errors are retried
/// a few times (backon); a 409 is returned as `Conflict`, never retried.
async fn write_status(ctx: &Context, obj: &SaeInstanceDeletion) -> Result<Written, Error> {
    let api: Api<SaeInstanceDeletion> = Api::namespaced(ctx.client.clone(), &obj.namespace().unwrap_or_default());
    let object = format!("{}/{}", obj.namespace().unwrap_or_default(), obj.name_any());
    let attempt = || async { api.replace_status(&obj.name_any(), &PostParams::default(), obj).await };
    let result = attempt
        .retry(ExponentialBuilder::default().with_min_delay(Duration::from_millis(200)).with_max_times(4))
        .when(|e| !matches!(e, kube::Error::Api(s) if s.code == 409 || s.code == 404 || s.code == 403 || s.code == 422))
        .await;
    match result {
        Ok(updated) => Ok(Written::Ok(updated)),
        Err(kube::Error::Api(s)) if s.code == 409 => Ok(Written::Conflict),
        Err(source) => Err(Error::StatusWrite { object, source }),
    }
}

async fn publish(ctx: &Context, obj: &SaeInstanceDeletion, event: &crate::decide::Event) {
    let ev = KubeEvent {
        type_: if event.warning { EventType::Warning } else { EventType::Normal },
        reason: event.reason.clone(),
        note: Some(event.note.chars().take(1000).collect()),
        action: "Reconcile".into(),
        secondary: None,
    };
    if let Err(err) = ctx.recorder.publish(&ev, &obj.object_ref(&())).await {
        // An event is a courtesy to the user; failing to publish one must not stop the work.
        warn!(error = %err, reason = %event.reason, "could not publish event");
    }
}

fn is_terminal(obj: &SaeInstanceDeletion) -> bool {
    obj.status.as_ref().is_some_and(|s| s.is_terminal())
}

/// Requeue delay until `t`, at least a short moment so a clock at the boundary cannot spin.
fn until(t: Timestamp) -> Duration {
    let d = t.duration_since(Timestamp::now());
    Duration::try_from(d).unwrap_or_default().max(Duration::from_millis(200))
}

async fn reconcile(obj: Arc<SaeInstanceDeletion>, ctx: Arc<Context>) -> Result<Requeue, Error> {
    // A terminal object is never touched again: no Secret read, no SAE call, no write.
    if is_terminal(&obj) {
        return Ok(Requeue::await_change());
    }
    let span = info_span!(
        "reconcile",
        object = %format!("{}/{}", obj.namespace().unwrap_or_default(), obj.name_any()),
        app_id = %obj.spec.app_id,
    );
    reconcile_steps((*obj).clone(), ctx).instrument(span).await
}

async fn reconcile_steps(mut obj: SaeInstanceDeletion, ctx: Arc<Context>) -> Result<Requeue, Error> {
    let credentials = ctx.credentials_for(&obj).await;
    let mut observation = Observation::Start { credentials: credentials.as_ref().map(|_| ()).map_err(Clone::clone) };
    // A decision leads to at most one SAE call; a handful of rounds covers send → accepted → first wait.
    for _ in 0..6 {
        let clock = Clock { now: Timestamp::now(), jitter: fastrand::f64() };
        let decision = decide(&obj, &clock, observation);
        if obj.status.as_ref() != Some(&decision.status) {
            let mut next = obj.clone();
            next.status = Some(decision.status.clone());
            match write_status(&ctx, &next).await? {
                Written::Ok(updated) => obj = updated,
                Written::Conflict => {
                    info!("status write conflicted: the object changed meanwhile; re-reading");
                    return Ok(Requeue::requeue(CONFLICT_REQUEUE));
                }
            }
            let status = &decision.status;
            info!(
                phase = ?status.phase,
                attempts = status.attempts,
                request_id = status.request_id.as_deref().unwrap_or(""),
                change_order_id = status.change_order_id.as_deref().unwrap_or(""),
                "status updated"
            );
        }
        for event in &decision.events {
            publish(&ctx, &obj, event).await;
        }
        let spec = &obj.spec;
        observation = match decision.action {
            Action::Done => return Ok(Requeue::await_change()),
            Action::WaitUntil(t) => return Ok(Requeue::requeue(until(t))),
            Action::SendDelete { instance_ids } => {
                let creds = credentials.as_ref().map_err(|_| Error::Internal("send decided without credentials".into()))?;
                info!(instances = instance_ids.len(), "sending DeleteInstances");
                let result = ctx.sae.delete_instances(creds, &spec.region_id, &spec.app_id, &instance_ids).await;
                match &result {
                    Ok(ok) => info!(change_order_id = %ok.change_order_id, request_id = ok.request_id.as_deref().unwrap_or(""), "DeleteInstances accepted"),
                    Err(err) => warn!(error = %err, class = ?err.class(), "DeleteInstances failed"),
                }
                Observation::DeleteResult(result)
            }
            Action::PollChangeOrder { change_order_id } => {
                let creds = credentials.as_ref().map_err(|_| Error::Internal("poll decided without credentials".into()))?;
                Observation::ChangeOrderResult(ctx.sae.describe_change_order(creds, &spec.region_id, &change_order_id).await)
            }
            Action::CheckInstances => {
                let creds = credentials.as_ref().map_err(|_| Error::Internal("check decided without credentials".into()))?;
                Observation::DryRunResult(ctx.sae.list_all_instance_ids(creds, &spec.region_id, &spec.app_id).await)
            }
        };
    }
    // Not reached in practice; come back soon rather than loop here.
    Ok(Requeue::requeue(Duration::from_secs(1)))
}

fn error_policy(obj: Arc<SaeInstanceDeletion>, err: &Error, _ctx: Arc<Context>) -> Requeue {
    warn!(object = %obj.name_any(), error = %err, "reconcile failed; retrying");
    Requeue::requeue(Duration::from_secs(5))
}

/// Runs the controller until the process is asked to stop. `ready` is set once the object cache
/// has synced (for `/readyz`).
pub async fn run(ctx: Arc<Context>, namespace: Option<String>, ready: Arc<std::sync::atomic::AtomicBool>) {
    let api: Api<SaeInstanceDeletion> = match &namespace {
        Some(ns) => Api::namespaced(ctx.client.clone(), ns),
        None => Api::all(ctx.client.clone()),
    };
    let controller = Controller::new(api, watcher::Config::default().any_semantic());
    let store = controller.store();
    tokio::spawn(async move {
        // The store's readiness future keeps a single waker and the controller's own runner waits
        // on it too, so a one-off wait here may never be woken: ask again until it answers.
        loop {
            if let Ok(Ok(())) = tokio::time::timeout(Duration::from_millis(500), store.wait_until_ready()).await {
                ready.store(true, std::sync::atomic::Ordering::SeqCst);
                break;
            }
        }
    });
    controller
        .shutdown_on_signal()
        .run(reconcile, error_policy, ctx)
        .for_each(|result| async move {
            if let Err(err) = result {
                warn!(error = %err, "controller event");
            }
        })
        .await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::ByteString;
    use std::collections::BTreeMap;

    fn secret(data: &[(&str, &str)]) -> Secret {
        let mut s = Secret::default();
        s.metadata.name = Some("creds".into());
        s.data = Some(data.iter().map(|(k, v)| (k.to_string(), ByteString(v.as_bytes().to_vec()))).collect::<BTreeMap<_, _>>());
        s
    }

    #[test]
    fn secret_with_both_keys_gives_trimmed_credentials() {
        let c = credentials_from_secret(&secret(&[("accessKeyId", "AK\n"), ("accessKeySecret", "SK\n")]), "ns").unwrap();
        assert_eq!((c.access_key_id(), c.access_key_secret(), c.security_token()), ("AK", "SK", None));
        let c = credentials_from_secret(
            &secret(&[("accessKeyId", "STS.x"), ("accessKeySecret", "SK"), ("securityToken", "tok")]),
            "ns",
        )
        .unwrap();
        assert_eq!(c.security_token(), Some("tok"));
    }

    #[test]
    fn incomplete_secret_names_the_missing_key_and_never_a_value() {
        let err = credentials_from_secret(&secret(&[("accessKeyId", "AK-VALUE")]), "ns").unwrap_err();
        assert!(err.contains("ns/creds") && err.contains("accessKeySecret"), "{err}");
        assert!(!err.contains("AK-VALUE"), "{err}");
        let err = credentials_from_secret(&secret(&[("accessKeyId", "AK"), ("accessKeySecret", "   ")]), "ns").unwrap_err();
        assert!(err.contains("accessKeySecret"), "{err}");
        let mut bad = secret(&[("accessKeySecret", "SK-VALUE")]);
        bad.data.as_mut().unwrap().insert("accessKeyId".into(), ByteString(vec![0xff, 0xfe]));
        let err = credentials_from_secret(&bad, "ns").unwrap_err();
        assert!(err.contains("not UTF-8") && !err.contains("SK-VALUE"), "{err}");
    }
}
