//! The kube client and the reads behind `get` and `check`.

use std::collections::BTreeMap;
use std::io::Write;

use anyhow::Context as _;
use jiff::Timestamp;
use jiff::tz::TimeZone;
use k8s_openapi::api::core::v1::Namespace;
use kube::api::ListParams;
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Api, Client, Config};
use sae_controller::cli::{self, DeleteRequest};
use sae_controller::crd::SaeInstanceDeletion;
use sae_controller::policy::SaeDeletionPolicy;

use crate::args::{Cli, GetArgs, Output};
use crate::emit;

/// A client as kubectl would build it: --kubeconfig and --context, else $KUBECONFIG,
/// ~/.kube/config or the in-cluster ServiceAccount. Returns the namespace to use too.
pub(crate) async fn connect(cli: &Cli) -> anyhow::Result<(Client, String)> {
    let options = KubeConfigOptions {
        context: cli.context.clone(),
        ..Default::default()
    };
    let config = match &cli.kubeconfig {
        Some(path) => {
            let file = Kubeconfig::read_from(path)
                .with_context(|| format!("reading {}", path.display()))?;
            Config::from_custom_kubeconfig(file, &options).await?
        }
        None if cli.context.is_some() => Config::from_kubeconfig(&options).await?,
        None => Config::infer().await?,
    };
    let namespace = cli
        .namespace
        .clone()
        .unwrap_or_else(|| config.default_namespace.clone());
    Ok((Client::try_from(config)?, namespace))
}

/// Every object the user may list: cluster-wide when allowed (objects of other namespaces share
/// an app's line), else the namespace's.
async fn all_objects(client: &Client, namespace: &str) -> anyhow::Result<Vec<SaeInstanceDeletion>> {
    let everywhere: Api<SaeInstanceDeletion> = Api::all(client.clone());
    match everywhere.list(&ListParams::default()).await {
        Ok(list) => Ok(list.items),
        Err(e) => {
            eprintln!(
                "note: cannot list SaeInstanceDeletion objects cluster-wide ({e}); using namespace \
                 {namespace} only, so objects of other namespaces (in an app's line or its hourly count) \
                 are not seen"
            );
            let here: Api<SaeInstanceDeletion> = Api::namespaced(client.clone(), namespace);
            Ok(here
                .list(&ListParams::default())
                .await
                .context("listing SaeInstanceDeletion objects")?
                .items)
        }
    }
}

pub(crate) async fn get(client: &Client, namespace: &str, args: &GetArgs) -> anyhow::Result<i32> {
    let objects = all_objects(client, namespace).await?;
    let groups = cli::group_by_app(
        &objects,
        |o| args.all_namespaces || o.metadata.namespace.as_deref() == Some(namespace),
        args.app.as_deref(),
        Timestamp::now(),
    );
    let doc = serde_json::json!({ "apps": groups });
    match args.output {
        Some(Output::Json) => say!("{}", serde_json::to_string_pretty(&doc)?),
        Some(Output::Yaml) => say_part!("{}", serde_saphyr::to_string(&doc)?),
        Some(Output::Wide) => {
            say_part!("{}", cli::render_table(&groups, true, args.all_namespaces))
        }
        None => say_part!("{}", cli::render_table(&groups, false, args.all_namespaces)),
    }
    Ok(0)
}

/// The policies' verdict on `request` now; `skip_uid`: an existing object left out of the hourly
/// count and the app's line (describe asks about the object itself).
pub(crate) async fn check(
    client: &Client,
    namespace: &str,
    request: &DeleteRequest,
    skip_uid: Option<&str>,
    tz: &TimeZone,
) -> anyhow::Result<cli::CheckAnswer> {
    let policies: Api<SaeDeletionPolicy> = Api::all(client.clone());
    let mut notes = Vec::new();
    let policies = match policies.list(&ListParams::default()).await {
        Ok(list) => list.items,
        Err(kube::Error::Api(s)) if s.code == 404 => {
            notes.push("(the SaeDeletionPolicy CRD is not installed: no policies)".to_string());
            Vec::new()
        }
        Err(e) => return Err(e).context("listing SaeDeletionPolicy objects"),
    };
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let labels: Option<BTreeMap<String, String>> = match namespaces.get(namespace).await {
        Ok(ns) => Some(ns.metadata.labels.unwrap_or_default()),
        Err(_) => {
            notes.push(format!("(could not read namespace {namespace}'s labels: a namespaceSelector is taken not to match)"));
            None
        }
    };
    let mut objects = all_objects(client, namespace).await?;
    if let Some(uid) = skip_uid {
        objects.retain(|o| o.metadata.uid.as_deref() != Some(uid));
    }
    let cluster = cli::Cluster {
        namespace,
        namespace_labels: labels.as_ref(),
        policies: &policies,
        objects: &objects,
    };
    let mut answer = cli::check(request, &cluster, Timestamp::now(), tz);
    answer.lines.extend(notes);
    Ok(answer)
}
