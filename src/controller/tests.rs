//! The reconciler against a fake kube-apiserver (tower-test) and an in-process SAE simulator:
//! the two orderings that make DeleteInstances at-most-once, checked where no real API server can
//! be made to fail on cue. The simulator's ledger is the witness of what reached SAE.

use std::collections::VecDeque;
use std::sync::Mutex;

use http::{Method, Request, Response};
use kube::client::Body;
use kube::runtime::reflector;
use serde_json::{Value, json};

use super::effects::reconcile;
use super::slot::Slot;
use super::*;
use crate::crd::{SaeInstanceDeletionSpec, SaeInstanceDeletionStatus};
use crate::decide::{AppTurn, Inputs, Observation, decide};
use crate::fixtures;
use crate::sae::time::CreateTimeZone;
use crate::sae::{Credentials, SaeClientConfig};
use crate::simulator::{
    self, AccessKeySpec, AppSpec, GroupSpec, ModelConfig, Seed, Simulator, SimulatorConfig,
};

pub(super) const NAMESPACE: &str = "ns";
const NAME: &str = "del";
const APP: &str = "app-1";
const STATUS_PATH: &str =
    "/apis/sae.ops.dev/v1alpha1/namespaces/ns/saeinstancedeletions/del/status";
const EVENTS_PATH: &str = "/apis/events.k8s.io/v1/namespaces/ns/events";

/// How the fake answers one status PUT.
#[derive(Clone, Copy, Debug)]
enum Answer {
    /// Stores the object with a new resourceVersion and returns it.
    Store,
    /// 409: someone else changed the object since it was read.
    Conflict,
    /// 500: the API server could not write it.
    Fail,
}

/// What the fake API server saw, shared with the test.
#[derive(Default)]
struct Seen {
    /// Every status PUT body, in order, whatever the answer.
    status_puts: Vec<SaeInstanceDeletionStatus>,
    /// The object as last stored (what a re-read would return).
    stored: Option<SaeInstanceDeletion>,
    events: usize,
    unexpected: Vec<String>,
}

struct FakeApi {
    seen: Arc<Mutex<Seen>>,
    client: Client,
}

impl FakeApi {
    /// Status PUTs get `script` in order, then `Store`. Event creates succeed. Anything else
    /// is answered 404 and recorded as unexpected.
    fn start(script: Vec<Answer>) -> Self {
        let (service, mut handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
        let seen = Arc::new(Mutex::new(Seen::default()));
        let shared = seen.clone();
        let mut script = VecDeque::from(script);
        tokio::spawn(async move {
            let mut version = 100;
            while let Some((request, reply)) = handle.next_request().await {
                let (parts, body) = request.into_parts();
                let body = body.collect_bytes().await.expect("request body");
                let (code, answer) = match (&parts.method, parts.uri.path()) {
                    (&Method::PUT, STATUS_PATH) => {
                        let mut obj: SaeInstanceDeletion =
                            serde_json::from_slice(&body).expect("status PUT body");
                        let mut seen = shared.lock().unwrap();
                        seen.status_puts
                            .push(obj.status.clone().unwrap_or_default());
                        match script.pop_front().unwrap_or(Answer::Store) {
                            Answer::Store => {
                                version += 1;
                                obj.metadata.resource_version = Some(version.to_string());
                                seen.stored = Some(obj.clone());
                                (200, serde_json::to_value(&obj).unwrap())
                            }
                            Answer::Conflict => (409, api_status(409, "Conflict")),
                            Answer::Fail => (500, api_status(500, "InternalError")),
                        }
                    }
                    (&Method::POST, EVENTS_PATH) => {
                        shared.lock().unwrap().events += 1;
                        (201, serde_json::from_slice(&body).expect("event body"))
                    }
                    (method, path) => {
                        shared
                            .lock()
                            .unwrap()
                            .unexpected
                            .push(format!("{method} {path}"));
                        (404, api_status(404, "NotFound"))
                    }
                };
                let response = Response::builder()
                    .status(code)
                    .header("content-type", "application/json")
                    .body(Body::from(serde_json::to_vec(&answer).unwrap()))
                    .unwrap();
                reply.send_response(response);
            }
        });
        Self {
            seen,
            client: Client::new(service, "default"),
        }
    }

    fn seen<R>(&self, f: impl FnOnce(&Seen) -> R) -> R {
        f(&self.seen.lock().unwrap())
    }
}

fn api_status(code: u16, reason: &str) -> Value {
    json!({
        "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
        "message": format!("fake API server says {reason}"), "reason": reason, "code": code,
    })
}

/// An SAE simulator with one app (i-1, i-2), no quota, and change orders that finish at once.
pub(super) async fn sae() -> (Arc<Simulator>, SaeClient) {
    sae_with(SignedDuration::ZERO).await
}

async fn sae_with(change_order_duration: SignedDuration) -> (Arc<Simulator>, SaeClient) {
    let config = SimulatorConfig {
        model: ModelConfig {
            change_order_duration,
            requests_per_minute: 0,
            ..ModelConfig::default()
        },
        access_keys: vec![AccessKeySpec::parse_pair("AK:SK").unwrap()],
        seed: Some(Seed {
            apps: vec![AppSpec {
                app_id: APP.into(),
                groups: vec![GroupSpec {
                    group_id: "g-1".into(),
                    group_name: None,
                    instance_ids: vec!["i-1".into(), "i-2".into()],
                }],
            }],
            ..Seed::default()
        }),
        ..SimulatorConfig::default()
    };
    let sim = Arc::new(Simulator::new(config).unwrap());
    let addr = simulator::spawn(sim.clone()).await.unwrap();
    let client = SaeClient::new(SaeClientConfig {
        endpoint: format!("http://{addr}"),
        timeout: Duration::from_secs(2),
        ..SaeClientConfig::default()
    })
    .unwrap();
    (sim, client)
}

pub(super) fn context(
    client: Client,
    sae: SaeClient,
) -> (Arc<Context>, reflector::store::Writer<SaeInstanceDeletion>) {
    context_with(
        client,
        sae,
        SignedDuration::from_secs(12),
        crate::decide::SETTLE,
    )
}

/// [`context`] with SAE's time to act on a send (`resolve_after`) and its lists' lag (`settle`).
fn context_with(
    client: Client,
    sae: SaeClient,
    resolve_after: SignedDuration,
    settle: SignedDuration,
) -> (Arc<Context>, reflector::store::Writer<SaeInstanceDeletion>) {
    let (store, writer) = reflector::store();
    let settings = Settings {
        namespace: Some(NAMESPACE.into()),
        resolve_after,
        create_time_offset: Some(jiff::tz::Offset::constant(8)),
        settle,
        require_policy: false,
    };
    let credentials = Some(Credentials::new("AK", "SK", None));
    let services = Services {
        client,
        sae,
        default_credentials: credentials.into(),
        metrics: Metrics::new(),
        fence: None,
    };
    let ctx = Context::new(services, settings, store);
    (Arc::new(ctx), writer)
}

/// Two objects of one app: the second cannot start while the first's claim is fresh, even
/// though the cache (empty here) does not show the first on the app yet.
#[tokio::test]
async fn an_app_claim_covers_the_moment_before_the_cache_shows_the_attempt() {
    let (service, _handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    let (_sim, sae) = sae().await;
    let (ctx, _writer) = context(Client::new(service, "default"), sae);
    let first = new_object();
    let mut second = new_object();
    second.metadata.name = Some("other".into());
    second.metadata.uid = Some("uid-2".into());
    assert!(ctx.claim_app(&first));
    assert!(ctx.claim_app(&first), "a holder may claim again (a retry)");
    assert!(!ctx.claim_app(&second), "the app is taken");
    ctx.release_app(&second);
    assert!(!ctx.claim_app(&second), "only the holder releases");
    ctx.release_app(&first);
    assert!(ctx.claim_app(&second));
}

pub(super) fn new_object() -> SaeInstanceDeletion {
    let spec = SaeInstanceDeletionSpec {
        instance_ids: vec!["i-1".into()],
        credentials_ref: None,
        ..fixtures::spec()
    };
    let mut obj = fixtures::object_with(NAME, NAMESPACE, Timestamp::now(), spec);
    obj.metadata.uid = Some("uid-1".into());
    obj.metadata.resource_version = Some("1".into());
    obj
}

fn delete_requests(sim: &Simulator) -> Vec<crate::simulator::RequestRecord> {
    sim.ledger()
        .requests
        .into_iter()
        .filter(|r| r.operation == "DeleteInstances")
        .collect()
}

/// After a restart, every object in `Submitting` resolves at once: one look at an app must
/// serve all of them, not cost each its own ListChangeOrders and instance listing.
#[tokio::test]
async fn one_look_at_an_app_serves_every_object_resolving_there() {
    let (service, _handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    let (sim, sae) = sae().await;
    let (ctx, _writer) = context(Client::new(service, "default"), sae);
    let first = new_object();
    let mut second = new_object();
    second.metadata.name = Some("other".into());
    second.metadata.uid = Some("uid-2".into());
    let creds = Credentials::new("AK", "SK", None);
    let since = Timestamp::now() - SignedDuration::from_secs(20);
    for obj in [&first, &second, &first] {
        let mut slot = Slot::take(ctx.slots.clone(), obj).await;
        let evidence = ctx
            .evidence(&mut slot, &creds, obj, since)
            .await
            .unwrap()
            .unwrap();
        assert!(evidence.complete);
        assert_eq!(evidence.existing_instance_ids, ["i-1", "i-2"]);
    }
    let count = |op: &str| {
        sim.ledger()
            .requests
            .iter()
            .filter(|r| r.operation == op)
            .count()
    };
    assert_eq!(count("ListChangeOrders"), 1);
    assert_eq!(count("DescribeApplicationGroups"), 1);
    // A look that reached back less far does not serve an older attempt.
    let older = since - SignedDuration::from_secs(60);
    let mut slot = Slot::take(ctx.slots.clone(), &second).await;
    ctx.evidence(&mut slot, &creds, &second, older)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(count("ListChangeOrders"), 2);
}

/// A change order executing for our ids shows them terminating: the evidence that lets an
/// executing change order be adopted as ours.
#[tokio::test]
async fn a_look_shows_which_instances_are_being_terminated() {
    let (service, _handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    let (_sim, sae) = sae_with(SignedDuration::from_secs(60)).await;
    let creds = Credentials::new("AK", "SK", None);
    let sent = sae
        .delete_instances(&creds, "cn-hangzhou", APP, &["i-1".to_string()])
        .await
        .unwrap();
    let (ctx, _writer) = context(Client::new(service, "default"), sae);
    let obj = new_object();
    let mut slot = Slot::take(ctx.slots.clone(), &obj).await;
    let since = Timestamp::now() - SignedDuration::from_secs(20);
    let evidence = ctx
        .evidence(&mut slot, &creds, &obj, since)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(evidence.terminating_instance_ids, ["i-1"]);
    assert_eq!(evidence.existing_instance_ids, ["i-1", "i-2"]);
    let ids: Vec<&str> = evidence
        .change_orders
        .iter()
        .map(|c| c.change_order_id.as_str())
        .collect();
    assert_eq!(ids, [sent.change_order_id.as_str()]);
    assert!(evidence.change_orders[0].typed);
    assert_eq!(
        evidence.zone,
        CreateTimeZone::Offset(jiff::tz::Offset::constant(8)),
        "as the settings state"
    );
}

#[tokio::test]
async fn a_conflict_on_the_write_ahead_sends_nothing() {
    let (sim, sae) = sae().await;
    let api = FakeApi::start(vec![Answer::Conflict]);
    let (ctx, _writer) = context(api.client.clone(), sae);

    let result = reconcile(Arc::new(new_object()), ctx).await;

    assert!(
        result.is_ok(),
        "a conflict is not an error, the object is re-read: {result:?}"
    );
    api.seen(|seen| {
        assert_eq!(
            seen.status_puts.len(),
            1,
            "one write-ahead attempt, not retried on 409"
        );
        assert_eq!(seen.status_puts[0].phase, Some(Phase::Submitting));
        assert!(seen.unexpected.is_empty(), "{:?}", seen.unexpected);
    });
    assert!(
        sim.ledger().requests.is_empty(),
        "no SAE call of any kind: {:?}",
        sim.ledger().requests
    );
}

#[tokio::test]
async fn a_write_ahead_that_keeps_failing_sends_nothing() {
    let (sim, sae) = sae().await;
    let api = FakeApi::start(vec![Answer::Fail; 10]);
    let (ctx, _writer) = context(api.client.clone(), sae);

    let result = reconcile(Arc::new(new_object()), ctx).await;

    assert!(
        matches!(result, Err(Error::StatusWrite { .. })),
        "{result:?}"
    );
    api.seen(|seen| {
        assert!(seen.status_puts.len() > 1, "a 500 is retried a few times");
        assert!(
            seen.status_puts
                .iter()
                .all(|s| s.phase == Some(Phase::Submitting))
        );
    });
    assert!(
        sim.ledger().requests.is_empty(),
        "{:?}",
        sim.ledger().requests
    );
}

#[tokio::test]
async fn a_lost_status_write_after_sae_accepted_is_resolved_by_adopting_never_by_resending() {
    let (sim, sae) = sae().await;
    // The write-ahead lands; every write of the accepted result fails (the client's retries
    // included), as if the API server went away right after SAE answered.
    let mut script = vec![Answer::Store];
    script.extend([Answer::Fail; 5]);
    let api = FakeApi::start(script);
    // SAE acts on a send at once here, and its lists do not lag: the look can come 6 s after
    // the write-ahead (the second it is recorded to, and SEND_BOUND).
    let (ctx, _writer) = context_with(
        api.client.clone(),
        sae,
        SignedDuration::ZERO,
        SignedDuration::ZERO,
    );

    let first = reconcile(Arc::new(new_object()), ctx.clone()).await;

    assert!(matches!(first, Err(Error::StatusWrite { .. })), "{first:?}");
    let sent = delete_requests(&sim);
    assert_eq!(sent.len(), 1, "{sent:?}");
    assert!(sent[0].committed, "SAE executed it");
    let change_order = sent[0]
        .change_order_id
        .clone()
        .expect("change order of the accepted send");
    let stored = api.seen(|seen| {
        let last = seen.status_puts.last().unwrap();
        assert_eq!(
            last.phase,
            Some(Phase::Succeeded),
            "the write that was lost: the first poll's outcome with the change order"
        );
        assert_eq!(last.change_order_id.as_deref(), Some(change_order.as_str()));
        seen.stored.clone().expect("the write-ahead was stored")
    });
    let stored_status = stored.status.clone().unwrap();
    assert_eq!(
        stored_status.phase,
        Some(Phase::Submitting),
        "the API server still has the write-ahead"
    );
    assert_eq!(stored_status.change_order_id, None);

    // The next reconcile sees only what the API server kept: an attempt with no answer. It says
    // so, and looks at SAE once a look can conclude.
    let second = reconcile(Arc::new(stored), ctx.clone()).await;
    assert!(second.is_ok(), "{second:?}");
    tokio::time::sleep(Duration::from_secs(7)).await;
    let stored = api.seen(|seen| seen.stored.clone().expect("the lost answer was recorded"));
    let third = reconcile(Arc::new(stored), ctx).await;

    assert!(third.is_ok(), "{third:?}");
    assert_eq!(delete_requests(&sim).len(), 1, "never sent again");
    let operations: Vec<String> = sim
        .ledger()
        .requests
        .iter()
        .map(|r| r.operation.clone())
        .collect();
    assert!(
        operations.iter().any(|o| o == "ListChangeOrders"),
        "looked for its change order: {operations:?}"
    );
    api.seen(|seen| {
        let last = seen.stored.as_ref().and_then(|o| o.status.clone()).unwrap();
        assert_eq!(
            last.change_order_id.as_deref(),
            Some(change_order.as_str()),
            "{last:?}"
        );
        assert_eq!(last.phase, Some(Phase::Succeeded), "{last:?}");
        assert_eq!(
            last.attempts,
            Some(1),
            "the lost answer is not a new attempt"
        );
        assert!(
            seen.status_puts
                .iter()
                .any(|s| s.reason() == Some(crate::crd::Reason::OutcomeUnknown.as_str())),
            "the lost answer was recorded before SAE was asked"
        );
        assert!(seen.events > 0, "events were published");
        assert!(seen.unexpected.is_empty(), "{:?}", seen.unexpected);
    });
}

/// What the object's status went through, as (phase, reason) per PUT.
fn written(api: &FakeApi) -> Vec<(Option<Phase>, Option<String>, Option<String>)> {
    api.seen(|seen| {
        seen.status_puts
            .iter()
            .map(|s| {
                (
                    s.phase,
                    s.reason().map(String::from),
                    s.change_order_id.clone(),
                )
            })
            .collect()
    })
}

fn polls(sim: &Simulator) -> usize {
    sim.ledger()
        .requests
        .iter()
        .filter(|r| r.operation == "DescribeChangeOrder")
        .count()
}

/// The writes of an attempt whose change order id was written before the change order ended.
fn submitted_then_in_progress(
    change_order: Option<String>,
) -> Vec<(Option<Phase>, Option<String>, Option<String>)> {
    vec![
        (Some(Phase::Submitting), Some("Submitting".into()), None),
        (
            Some(Phase::InProgress),
            Some("WaitingForChangeOrder".into()),
            change_order,
        ),
    ]
}

#[tokio::test]
async fn a_change_order_done_by_the_first_poll_is_recorded_with_its_outcome_in_one_write() {
    let (sim, sae) = sae().await;
    let api = FakeApi::start(vec![]);
    let (ctx, _writer) = context(api.client.clone(), sae);

    let result = reconcile(Arc::new(new_object()), ctx).await;

    assert!(result.is_ok(), "{result:?}");
    let change_order = delete_requests(&sim)[0].change_order_id.clone();
    assert_eq!(
        written(&api),
        vec![
            (Some(Phase::Submitting), Some("Submitting".into()), None),
            (
                Some(Phase::Succeeded),
                Some("Succeeded".into()),
                change_order
            ),
        ],
        "write-ahead, then the outcome with the change order: no InProgress in between"
    );
    api.seen(|seen| assert_eq!(seen.events, 2, "one event per written transition"));
}

#[tokio::test]
async fn a_change_order_still_running_at_the_first_poll_is_recorded_before_it_ends() {
    let (sim, sae) = sae_with(SignedDuration::from_secs(30)).await;
    let api = FakeApi::start(vec![]);
    let (ctx, _writer) = context(api.client.clone(), sae);

    let result = reconcile(Arc::new(new_object()), ctx).await;

    assert!(result.is_ok(), "{result:?}");
    let change_order = delete_requests(&sim)[0].change_order_id.clone();
    assert!(change_order.is_some());
    assert_eq!(written(&api), submitted_then_in_progress(change_order));
    assert_eq!(polls(&sim), 1, "the first poll came before the write");
    api.seen(|seen| assert_eq!(seen.events, 2));
}

#[tokio::test]
async fn a_first_poll_held_up_by_the_quota_writes_the_change_order_first() {
    let (sim, sae) = sae().await;
    let api = FakeApi::start(vec![]);
    let (ctx, _writer) = context(api.client.clone(), sae);
    // 12 calls a minute, one every 5 s: DeleteInstances takes the first token, and the poll's
    // comes 5 s later, after the hold (1 + 3 s) is over.
    let ctx = Arc::new(Arc::into_inner(ctx).unwrap().with_quota(12));

    let result = reconcile(Arc::new(new_object()), ctx).await;

    assert!(result.is_ok(), "{result:?}");
    let change_order = delete_requests(&sim)[0].change_order_id.clone();
    let mut expected = submitted_then_in_progress(change_order.clone());
    expected.push((
        Some(Phase::Succeeded),
        Some("Succeeded".into()),
        change_order,
    ));
    assert_eq!(
        written(&api),
        expected,
        "the id is written while the poll waits for quota, then the poll's outcome"
    );
    assert_eq!(polls(&sim), 1);
    api.seen(|seen| assert_eq!(seen.events, 3));
}

/// `name` on APP in Pending/WaitingForApplication, reading its AccessKey from Secret "creds".
fn waiting_object(name: &str) -> SaeInstanceDeletion {
    let mut obj = new_object();
    obj.metadata.name = Some(name.into());
    obj.metadata.uid = Some(format!("uid-{name}"));
    obj.spec.credentials_ref = Some(crate::crd::CredentialsRef {
        name: "creds".into(),
    });
    let inputs = Inputs {
        now: Timestamp::now(),
        jitter: 0.5,
        resolve_after: SignedDuration::from_secs(12),
        settle: crate::decide::SETTLE,
        sae: Default::default(),
    };
    let busy = Observation::Start {
        policy: Default::default(),
        credentials: Ok(()),
        app: AppTurn::Busy {
            holder: "ns/holder".into(),
        },
    };
    obj.status = Some(decide(&obj, &inputs, busy).status);
    obj
}

#[tokio::test]
async fn an_object_waiting_on_a_busy_app_reads_no_secret_until_its_turn() {
    let (sim, sae) = sae().await;
    let api = FakeApi::start(vec![]);
    let (ctx, mut writer) = context(api.client.clone(), sae);
    let mut holder = new_object();
    holder.metadata.name = Some("holder".into());
    holder.metadata.uid = Some("uid-holder".into());
    holder.status = Some(SaeInstanceDeletionStatus {
        phase: Some(Phase::InProgress),
        change_order_id: Some("co-1".into()),
        ..SaeInstanceDeletionStatus::default()
    });
    writer.apply_watcher_event(&watcher::Event::Apply(holder));
    let waiting = waiting_object(NAME);
    assert_eq!(
        waiting.status.as_ref().unwrap().reason(),
        Some("WaitingForApplication")
    );

    let result = reconcile(Arc::new(waiting.clone()), ctx.clone()).await;

    assert!(result.is_ok(), "{result:?}");
    api.seen(|seen| {
        assert!(
            seen.unexpected.is_empty(),
            "no Secret read: {:?}",
            seen.unexpected
        );
    });
    assert!(sim.ledger().requests.is_empty());

    // Its turn: now the Secret is read (this fake has none, so it ends up missing).
    writer.apply_watcher_event(&watcher::Event::Delete(
        ctx.store.state()[0].as_ref().clone(),
    ));
    let result = reconcile(Arc::new(waiting), ctx).await;

    assert!(result.is_ok(), "{result:?}");
    api.seen(|seen| {
        assert_eq!(
            seen.unexpected,
            vec!["GET /api/v1/namespaces/ns/secrets/creds".to_string()]
        );
    });
    assert!(sim.ledger().requests.is_empty());
}
