//! The watches: EndpointSlices, Pods and Services of every namespace, as facts,
//! the endpoints recomputed after each burst of changes and fed to discovery.
//!
//! `kube::runtime::watcher` resumes from the last resourceVersion, relists on
//! 410 Gone and asks for bookmarks; its errors are retried with the default
//! backoff while the facts (and the endpoints in force) stay as they were.

use std::sync::Arc;

use futures::stream::{self, BoxStream};
use futures::{FutureExt, StreamExt};
use k8s_openapi::api::core::v1::{Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::runtime::{watcher, WatchStreamExt};
use kube::Api;
use tokio::sync::watch;

use super::cache::{Change, KindCache};
use super::compute::{compute, Cluster};
use super::facts::{self, PodFacts, ServiceFacts, SliceFacts};
use super::warnings::Warnings;
use crate::endpoints::Discovery;
use crate::resources::ObjectKey;
use crate::signal::stopped;

/// One change of one kind, or a failed watch of a kind.
enum Update {
    Pod(Change<PodFacts>),
    Service(Change<ServiceFacts>),
    Slice(Change<SliceFacts>),
    Failed {
        kind: &'static str,
        error: watcher::Error,
    },
}

/// Everything known of the cluster.
#[derive(Debug, Default)]
struct Facts {
    pods: KindCache<PodFacts>,
    services: KindCache<ServiceFacts>,
    slices: KindCache<SliceFacts>,
}

impl Facts {
    /// Applies `update`; returns whether the facts changed.
    fn apply(&mut self, update: Update) -> bool {
        match update {
            Update::Pod(c) => self.pods.apply(c),
            Update::Service(c) => self.services.apply(c),
            Update::Slice(c) => self.slices.apply(c),
            Update::Failed { kind, error } => {
                tracing::warn!(kind, %error, "Kubernetes watch failed; retrying with backoff, the endpoints in force stay as they are");
                false
            }
        }
    }

    /// Every kind has been listed once: computing before would take a pod
    /// not listed yet for one that is not there.
    fn listed(&self) -> bool {
        self.pods.listed() && self.services.listed() && self.slices.listed()
    }

    fn cluster(&self) -> Cluster<'_> {
        Cluster {
            pods: self.pods.live(),
            services: self.services.live(),
            slices: self.slices.live(),
        }
    }
}

/// Watches the cluster behind `client` and feeds `discovery` the endpoints
/// its EndpointSlices give (identities in `trust_domain`), until `stop`
/// turns `true`.
pub async fn run(
    client: kube::Client,
    discovery: Arc<Discovery>,
    trust_domain: String,
    mut stop: watch::Receiver<bool>,
) {
    let streams: Vec<BoxStream<'static, Update>> = vec![
        kind(
            Api::<Pod>::all(client.clone()),
            "Pod",
            facts::pod,
            Update::Pod,
        ),
        kind(
            Api::<Service>::all(client.clone()),
            "Service",
            facts::service,
            Update::Service,
        ),
        kind(
            Api::<EndpointSlice>::all(client),
            "EndpointSlice",
            facts::slice,
            Update::Slice,
        ),
    ];
    let mut updates = stream::select_all(streams);
    let mut known = Facts::default();
    let mut warnings = Warnings::default();
    let mut fed_once = false;
    loop {
        let update = tokio::select! {
            update = updates.next() => update,
            _ = stopped(&mut stop) => break,
        };
        let Some(update) = update else {
            break;
        };
        let mut changed = known.apply(update);
        // A burst (a relist, a rollout) is computed once, not per object.
        while let Some(Some(more)) = updates.next().now_or_never() {
            changed |= known.apply(more);
        }
        if !changed || !known.listed() {
            continue;
        }
        let computed = compute(known.cluster(), &trust_domain);
        warnings.observe(&computed.skipped);
        if !fed_once {
            fed_once = true;
            tracing::info!(
                endpoints = computed.endpoints.len(),
                pods = known.pods.live().len(),
                services = known.services.live().len(),
                slices = known.slices.live().len(),
                "endpoints from EndpointSlices"
            );
        }
        discovery.replace_feed(computed.endpoints);
    }
    tracing::debug!("Kubernetes endpoint watches stopped");
}

/// A watch of every object of `api`'s kind, as the facts `extract` keeps,
/// wrapped by `wrap`.
fn kind<K, T>(
    api: Api<K>,
    name: &'static str,
    extract: fn(&K) -> Option<(ObjectKey, T)>,
    wrap: fn(Change<T>) -> Update,
) -> BoxStream<'static, Update>
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug + Send + 'static,
    T: Send + 'static,
{
    watcher::watcher(api, watcher::Config::default())
        .default_backoff()
        .filter_map(move |event| {
            let update = match event {
                Ok(event) => change(event, extract).map(wrap),
                Err(error) => Some(Update::Failed { kind: name, error }),
            };
            std::future::ready(update)
        })
        .boxed()
}

/// `event` as a change of the facts `extract` keeps; `None` for an object
/// without a namespace or name.
fn change<K, T>(
    event: watcher::Event<K>,
    extract: fn(&K) -> Option<(ObjectKey, T)>,
) -> Option<Change<T>> {
    Some(match event {
        watcher::Event::Init => Change::Init,
        watcher::Event::InitDone => Change::InitDone,
        watcher::Event::InitApply(object) => {
            let (key, f) = extract(&object)?;
            Change::InitApply(key, f)
        }
        watcher::Event::Apply(object) => {
            let (key, f) = extract(&object)?;
            Change::Apply(key, f)
        }
        watcher::Event::Delete(object) => Change::Delete(extract(&object)?.0),
    })
}
