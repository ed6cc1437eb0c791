//! The watches: EndpointSlices, Pods and Services of every namespace, as facts,
//! the endpoints recomputed after each burst of changes (`burst`) and fed to
//! discovery.
//!
//! `kube::runtime::watcher` resumes from the last resourceVersion, relists on
//! 410 Gone and asks for bookmarks; its errors are retried with the default
//! backoff while the facts (and the endpoints in force) stay as they were,
//! and are told once (`health`).
//!
//! The watch starts with the control plane, before it serves: until every
//! kind has been listed once there is nothing to compute from, and the xDS
//! server holds endpoints back ([`EndpointWatch::ready`]) so that a proxy
//! reconnecting to a restarted control plane keeps the endpoints it has
//! rather than get an empty or partial set.

use std::sync::Arc;

use futures::stream::{self, BoxStream};
use futures::StreamExt;
use k8s_openapi::api::core::v1::{Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::runtime::{watcher, WatchStreamExt};
use kube::Api;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::burst::{self, End};
use super::cache::{Change, KindCache};
use super::compute::{compute, Cluster};
use super::facts::{self, PodFacts, ServiceFacts, SliceFacts};
use super::health::Health;
use super::warnings::Warnings;
use crate::endpoints::{Discovery, Feed};
use crate::resources::ObjectKey;
use crate::signal::stopped;

/// One change of one kind, or a failed watch of a kind.
enum Update {
    Pod(Change<PodFacts>),
    Service(Change<ServiceFacts>),
    Slice(Change<SliceFacts>),
    Failed {
        kind: &'static str,
        resource: &'static str,
        error: watcher::Error,
    },
}

/// Everything known of the cluster, and how its watches fare.
#[derive(Debug, Default)]
struct Facts {
    pods: KindCache<PodFacts>,
    services: KindCache<ServiceFacts>,
    slices: KindCache<SliceFacts>,
    health: Health,
}

impl Facts {
    /// Applies `update`; returns whether the facts changed.
    fn apply(&mut self, update: Update) -> bool {
        match update {
            Update::Pod(c) => {
                self.health.ok("Pod");
                self.pods.apply(c)
            }
            Update::Service(c) => {
                self.health.ok("Service");
                self.services.apply(c)
            }
            Update::Slice(c) => {
                self.health.ok("EndpointSlice");
                self.slices.apply(c)
            }
            Update::Failed {
                kind,
                resource,
                error,
            } => {
                self.health.failed(kind, resource, &error);
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

/// The endpoint watch, running.
#[derive(Debug)]
pub struct EndpointWatch {
    ready: watch::Receiver<bool>,
    task: JoinHandle<()>,
}

impl EndpointWatch {
    /// Turns `true` once the cluster's endpoints have been fed to discovery
    /// (every kind listed): until then, the endpoints there are not the
    /// cluster's.
    pub fn ready(&self) -> watch::Receiver<bool> {
        self.ready.clone()
    }

    /// Waits for the watch to end (after `stop` turned `true`).
    pub async fn stopped(self) {
        let _ = self.task.await;
    }
}

/// Starts watching the cluster behind `client`, feeding `discovery` the
/// endpoints its EndpointSlices give (identities in `trust_domain`), until
/// `stop` turns `true` (or its sender is gone).
pub fn spawn(
    client: kube::Client,
    discovery: Arc<Discovery>,
    trust_domain: String,
    stop: watch::Receiver<bool>,
) -> EndpointWatch {
    let (fed, ready) = watch::channel(false);
    let task = tokio::spawn(run(client, discovery, trust_domain, stop, fed));
    EndpointWatch { ready, task }
}

/// The watch itself: `fed` turns `true` with the first feed.
async fn run(
    client: kube::Client,
    discovery: Arc<Discovery>,
    trust_domain: String,
    mut stop: watch::Receiver<bool>,
    fed: watch::Sender<bool>,
) {
    let streams: Vec<BoxStream<'static, Update>> = vec![
        kind(
            Api::<Pod>::all(client.clone()),
            ("Pod", "pods"),
            facts::pod,
            Update::Pod,
        ),
        kind(
            Api::<Service>::all(client.clone()),
            ("Service", "services"),
            facts::service,
            Update::Service,
        ),
        kind(
            Api::<EndpointSlice>::all(client),
            ("EndpointSlice", "endpointslices"),
            facts::slice,
            Update::Slice,
        ),
    ];
    let mut updates = stream::select_all(streams);
    let mut known = Facts::default();
    let mut warnings = Warnings::default();
    loop {
        let first = tokio::select! {
            update = updates.next() => update,
            () = stopped(&mut stop) => break,
        };
        let Some(first) = first else {
            break;
        };
        let mut changed = known.apply(first);
        // A burst (a relist, a rollout) is computed once, not per object.
        let end = tokio::select! {
            end = burst::gather(&mut updates, |more| changed |= known.apply(more)) => end,
            () = stopped(&mut stop) => break,
        };
        if changed && known.listed() {
            let computed = compute(known.cluster(), &trust_domain);
            warnings.observe(&computed.skipped);
            if !*fed.borrow() {
                tracing::info!(
                    endpoints = computed.endpoints.len(),
                    pods = known.pods.live().len(),
                    services = known.services.live().len(),
                    slices = known.slices.live().len(),
                    "endpoints from EndpointSlices"
                );
            }
            discovery.replace_feed(Feed {
                endpoints: computed.endpoints,
                aliases: computed.aliases,
            });
            fed.send_if_modified(|done| !std::mem::replace(done, true));
        }
        if end == End::Closed {
            break;
        }
    }
    tracing::debug!("Kubernetes endpoint watches stopped");
}

/// A watch of every object of `api`'s kind (`(kind, resource)`: its name and
/// plural, for what is logged), as the facts `extract` keeps, wrapped by
/// `wrap`.
fn kind<K, T>(
    api: Api<K>,
    (name, resource): (&'static str, &'static str),
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
                Err(error) => Some(Update::Failed {
                    kind: name,
                    resource,
                    error,
                }),
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
