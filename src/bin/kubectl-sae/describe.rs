//! `kubectl sae describe`: one object's story from its status and its Events, and, while it has
//! not been sent, the policies' verdict on it now.

use std::io::Write;

use anyhow::Context as _;
use jiff::Timestamp;
use jiff::tz::TimeZone;
use k8s_openapi::api::core::v1::Event;
use kube::api::ListParams;
use kube::{Api, Client, ResourceExt};
use sae_controller::cli::{self, DeleteRequest, EventRecord};
use sae_controller::crd::{Phase, SaeInstanceDeletion};

use crate::{emit, reads};

pub(crate) async fn describe(
    client: &Client,
    api: &Api<SaeInstanceDeletion>,
    namespace: &str,
    name: &str,
    tz: &TimeZone,
) -> anyhow::Result<i32> {
    let obj = api
        .get(name)
        .await
        .with_context(|| format!("reading SaeInstanceDeletion {name}"))?;
    let events = events_of(client, namespace, &obj)
        .await
        .unwrap_or_else(|e| {
            eprintln!("warning: could not read Events ({e}); the story comes from the status only");
            Vec::new()
        });
    let pinned = obj.pinned();
    let status = obj.status.clone().unwrap_or_default();
    let dash = |v: Option<&str>| v.unwrap_or("-").to_string();
    say!("Name:         {namespace}/{name}");
    say!("App:          {} ({})", pinned.app_id, pinned.region_id);
    say!("Instances:    {}", pinned.instance_ids.join(", "));
    say!(
        "Credentials:  {}",
        pinned
            .credentials_ref
            .map_or("the controller's own".into(), |c| format!(
                "Secret {}",
                c.name
            ))
    );
    say!(
        "Phase:        {} ({})",
        status.phase.map_or("-".into(), |p| p.to_string()),
        dash(status.reason())
    );
    say!(
        "ChangeOrder:  {} {}",
        dash(status.change_order_id.as_deref()),
        status.change_order_status.as_deref().unwrap_or("")
    );
    say!(
        "Attempts:     {} of at most {}",
        status.attempts(),
        obj.spec.retry.max_attempts
    );
    // Policies decide before the first send and before each retry; once sent, they no longer do.
    let undecided = matches!(status.phase, None | Some(Phase::Pending | Phase::Retrying));
    if undecided && !pinned.dry_run {
        let request = DeleteRequest {
            app_id: pinned.app_id.to_string(),
            region_id: pinned.region_id.to_string(),
            instance_ids: pinned.instance_ids.to_vec(),
            credentials: pinned.credentials_ref.map(|c| c.name.clone()),
            ..Default::default()
        };
        // The object itself is not one more deletion in the hourly count.
        if let Ok(answer) =
            reads::check(client, namespace, &request, obj.metadata.uid.as_deref(), tz).await
            && let Some(first) = answer.lines.first()
        {
            say!("Policies now: {first}");
        }
    }
    say!("Timeline:");
    let steps = cli::timeline(&obj, &events, Timestamp::now(), tz);
    say_part!("{}", cli::render(&obj, &steps, tz));
    Ok(0)
}

/// The Events about `obj` (this uid: an older object of the same name is someone else's story).
async fn events_of(
    client: &Client,
    namespace: &str,
    obj: &SaeInstanceDeletion,
) -> anyhow::Result<Vec<EventRecord>> {
    let api: Api<Event> = Api::namespaced(client.clone(), namespace);
    let params = ListParams::default().fields(&format!("involvedObject.name={}", obj.name_any()));
    let uid = obj.metadata.uid.clone();
    let list = api.list(&params).await?;
    Ok(list
        .items
        .into_iter()
        .filter(|e| e.involved_object.uid == uid)
        .filter_map(|e| {
            let time = e
                .event_time
                .as_ref()
                .map(|t| t.0)
                .or_else(|| e.first_timestamp.as_ref().map(|t| t.0))
                .or_else(|| e.metadata.creation_timestamp.as_ref().map(|t| t.0))?;
            let count = e
                .series
                .as_ref()
                .and_then(|s| s.count)
                .or(e.count)
                .unwrap_or(1);
            let last_time = e
                .series
                .as_ref()
                .and_then(|s| s.last_observed_time.as_ref().map(|t| t.0))
                .or_else(|| e.last_timestamp.as_ref().map(|t| t.0));
            Some(EventRecord {
                time,
                reason: e.reason.unwrap_or_default(),
                note: e.message.unwrap_or_default(),
                count,
                last_time,
            })
        })
        .collect())
}
