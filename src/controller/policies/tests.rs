//! The policy check as the controller runs it: the caches it reads, the SAE listing it makes only
//! at the full stage, and the hourly count from kept records.

use std::sync::Arc;

use http::{Request, Response};
use kube::Client;
use kube::client::Body;
use kube::runtime::reflector;
use kube::runtime::watcher::Event;

use super::super::slot::Slot;
use super::super::tests::{NAMESPACE, context, new_object, sae};
use super::*;
use crate::crd::{Phase, SaeInstanceDeletionStatus};
use crate::policy::SaeDeletionPolicySpec;

fn policy(name: &str, spec: SaeDeletionPolicySpec) -> SaeDeletionPolicy {
    SaeDeletionPolicy::new(name, spec)
}

/// A context whose policy cache holds `policies`, with `--require-policy` as given.
fn with_policies(
    ctx: &mut Arc<Context>,
    policies: Vec<SaeDeletionPolicy>,
    require_policy: bool,
) -> reflector::store::Writer<SaeDeletionPolicy> {
    let (store, mut writer) = reflector::store();
    for p in policies {
        writer.apply_watcher_event(&Event::Apply(p));
    }
    let ctx = Arc::get_mut(ctx).expect("a fresh context");
    ctx.policy_caches = PolicyCaches::new(store, reflector::store().0);
    ctx.settings.require_policy = require_policy;
    writer
}

fn list_requests(sim: &crate::simulator::Simulator) -> usize {
    sim.ledger()
        .requests
        .iter()
        .filter(|r| r.operation != "DeleteInstances")
        .count()
}

async fn check(ctx: &Context, obj: &SaeInstanceDeletion, stage: PolicyStage) -> PolicyCheck {
    let mut slot = Slot::take(ctx.slots.clone(), obj).await;
    let creds = Credentials::new("AK", "SK", None);
    ctx.policy_check(&mut slot, Some(&creds), obj, stage)
        .await
        .expect("no Kubernetes error")
}

fn refused(check: &PolicyCheck) -> Option<RefusalReason> {
    match check {
        PolicyCheck::Refused(r) => Some(r.reason),
        PolicyCheck::Admitted => None,
    }
}

#[tokio::test]
async fn no_policy_admits_unless_one_is_required() {
    let (service, _handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    let (_sim, sae_client) = sae().await;
    let (mut ctx, _objects) = context(Client::new(service, "default"), sae_client);
    let obj = new_object();
    assert_eq!(
        check(&ctx, &obj, PolicyStage::Quick).await,
        PolicyCheck::Admitted
    );
    let _policies = with_policies(&mut ctx, vec![], true);
    assert_eq!(
        refused(&check(&ctx, &obj, PolicyStage::Quick).await),
        Some(RefusalReason::NotPermitted)
    );
}

#[tokio::test]
async fn a_policy_for_another_namespace_refuses_without_calling_sae() {
    let (service, _handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    let (sim, sae_client) = sae().await;
    let (mut ctx, _objects) = context(Client::new(service, "default"), sae_client);
    let spec = SaeDeletionPolicySpec {
        namespaces: Some(vec!["elsewhere".into()]),
        min_running_instances: Some(0),
        ..Default::default()
    };
    let _policies = with_policies(&mut ctx, vec![policy("team-b", spec)], false);
    let obj = new_object();
    for stage in [PolicyStage::Quick, PolicyStage::Full] {
        assert_eq!(
            refused(&check(&ctx, &obj, stage).await),
            Some(RefusalReason::NotPermitted)
        );
    }
    assert_eq!(
        list_requests(&sim),
        0,
        "a refusal by scope costs no SAE call"
    );
}

#[tokio::test]
async fn min_running_instances_lists_the_app_only_at_the_full_stage() {
    let (service, _handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    let (sim, sae_client) = sae().await;
    let (mut ctx, _objects) = context(Client::new(service, "default"), sae_client);
    // The app has two Running instances; the object names one.
    let keep = |n| SaeDeletionPolicySpec {
        namespaces: Some(vec![NAMESPACE.into()]),
        min_running_instances: Some(n),
        ..Default::default()
    };
    let _policies = with_policies(&mut ctx, vec![policy("keep-two", keep(2))], false);
    let obj = new_object();
    assert_eq!(
        check(&ctx, &obj, PolicyStage::Quick).await,
        PolicyCheck::Admitted,
        "no SAE call before the send's token: the full check decides"
    );
    assert_eq!(list_requests(&sim), 0);
    assert_eq!(
        refused(&check(&ctx, &obj, PolicyStage::Full).await),
        Some(RefusalReason::DisruptionBudget),
        "2 running - 1 named < 2"
    );
    assert!(
        list_requests(&sim) > 0,
        "the full check read the instance list"
    );

    let (service, _handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    let (_sim, sae_client) = sae().await;
    let (mut ctx, _objects) = context(Client::new(service, "default"), sae_client);
    let _policies = with_policies(&mut ctx, vec![policy("keep-one", keep(1))], false);
    assert_eq!(
        check(&ctx, &obj, PolicyStage::Full).await,
        PolicyCheck::Admitted
    );
}

#[tokio::test]
async fn the_hourly_budget_counts_what_finished_and_deleted_objects_did() {
    let (service, _handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    let (_sim, sae_client) = sae().await;
    let (mut ctx, _objects) = context(Client::new(service, "default"), sae_client);
    let spec = SaeDeletionPolicySpec {
        max_instances_per_hour: Some(2),
        ..Default::default()
    };
    let _policies = with_policies(&mut ctx, vec![policy("two-an-hour", spec)], false);
    let obj = new_object();
    assert_eq!(
        check(&ctx, &obj, PolicyStage::Quick).await,
        PolicyCheck::Admitted
    );

    // Two objects of the same app deleted one instance each ten minutes ago: one finished (kept
    // out of the cache), one deleted from the cluster while in flight.
    let done = |uid: &str, phase| {
        let mut o = new_object();
        o.metadata.uid = Some(uid.into());
        o.status = Some(SaeInstanceDeletionStatus {
            phase: Some(phase),
            change_order_id: Some(format!("co-{uid}")),
            last_attempt_time: Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
                Timestamp::now() - jiff::SignedDuration::from_mins(10),
            )),
            ..Default::default()
        });
        o
    };
    ctx.finished
        .keep_live_only(Ok(Event::Apply(done("u-a", Phase::Succeeded))));
    ctx.finished
        .keep_live_only(Ok(Event::Delete(done("u-b", Phase::InProgress))));
    assert_eq!(
        refused(&check(&ctx, &obj, PolicyStage::Quick).await),
        Some(RefusalReason::DisruptionBudget),
        "2 deleted in the hour + 1 named > 2"
    );
}

#[tokio::test]
async fn unknown_namespace_labels_refuse_briefly_while_a_policy_selects_by_label() {
    let (service, _handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    let (sim, sae_client) = sae().await;
    let (mut ctx, _objects) = context(Client::new(service, "default"), sae_client);
    let obj = new_object();
    // By name only: the unknown labels do not matter.
    let by_name = SaeDeletionPolicySpec {
        namespaces: Some(vec![NAMESPACE.into()]),
        ..Default::default()
    };
    let _policies = with_policies(&mut ctx, vec![policy("by-name", by_name.clone())], false);
    assert_eq!(
        check(&ctx, &obj, PolicyStage::Quick).await,
        PolicyCheck::Admitted
    );
    // Another policy selects by label (and limits): the object's namespace is not in the cache.
    let by_label = SaeDeletionPolicySpec {
        namespace_selector: Some(Default::default()),
        max_instances_per_hour: Some(1),
        ..Default::default()
    };
    let _policies = with_policies(
        &mut ctx,
        vec![policy("by-name", by_name), policy("by-label", by_label)],
        false,
    );
    let before = Timestamp::now();
    let PolicyCheck::Refused(refusal) = check(&ctx, &obj, PolicyStage::Full).await else {
        panic!("the unknown labels must not admit");
    };
    assert_eq!(refusal.reason, RefusalReason::NotPermitted);
    assert_eq!(refusal.policy.as_deref(), Some("by-label"));
    assert!(
        refusal.message.contains(&format!(
            "the labels of namespace {NAMESPACE} are not known yet"
        )),
        "{}",
        refusal.message
    );
    let retry = refusal.retry_at.expect("a short retry");
    assert!(retry > before && retry <= Timestamp::now() + UNKNOWN_LABELS_RECHECK);
    assert_eq!(list_requests(&sim), 0, "refused before any SAE call");
    // An invalid policy selecting by label counts as well.
    let broken = SaeDeletionPolicySpec {
        namespace_selector: Some(Default::default()),
        app_ids: Some(vec![]),
        ..Default::default()
    };
    let _policies = with_policies(&mut ctx, vec![policy("broken", broken)], false);
    let PolicyCheck::Refused(refusal) = check(&ctx, &obj, PolicyStage::Quick).await else {
        panic!("an invalid policy selecting by label must not let the object through");
    };
    assert!(
        refusal.message.contains("are not known yet"),
        "{}",
        refusal.message
    );
}

#[test]
fn only_instances_listed_running_count_for_min_running_instances() {
    let ids = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    // Five listed: one Running, one Running but also Terminating (a later page), one Pending,
    // one Failed, one without a status. Only the first is Running.
    let all = AppInstances {
        ids: ids(&["i-1", "i-2", "i-3", "i-4", "i-5"]),
        terminating: ids(&["i-2"]),
        running: ids(&["i-1", "i-2"]),
    };
    assert_eq!(running_instances(&all), 1);
    assert_eq!(running_instances(&AppInstances::default()), 0);
    let all = AppInstances {
        ids: ids(&["i-1", "i-2"]),
        terminating: vec![],
        running: ids(&["i-1", "i-2"]),
    };
    assert_eq!(running_instances(&all), 2);
}

#[test]
fn only_spec_changes_new_and_gone_policies_wake_refused_objects() {
    let generation = |p: &SaeDeletionPolicy| format!("{:?}", p.metadata.generation);
    let mut seen = HashMap::new();
    let mut p = policy("p", SaeDeletionPolicySpec::default());
    p.metadata.generation = Some(1);
    assert!(!changes(&mut seen, &Event::Init, generation));
    assert!(!changes(
        &mut seen,
        &Event::InitApply(p.clone()),
        generation
    ));
    assert!(
        changes(&mut seen, &Event::InitDone, generation),
        "a fresh list"
    );
    assert!(
        !changes(&mut seen, &Event::Apply(p.clone()), generation),
        "our own status write leaves the generation alone"
    );
    p.metadata.generation = Some(2);
    assert!(
        changes(&mut seen, &Event::Apply(p.clone()), generation),
        "a spec edit"
    );
    let mut q = policy("q", SaeDeletionPolicySpec::default());
    q.metadata.generation = Some(1);
    assert!(
        changes(&mut seen, &Event::Apply(q), generation),
        "a new policy"
    );
    assert!(
        changes(&mut seen, &Event::Delete(p), generation),
        "a policy gone"
    );
}
