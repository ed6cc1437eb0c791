//! What every stream computes its resources from: the config in force and the
//! connected proxies, published on a `watch` channel. Streams translate it for their
//! proxy's namespace through a shared cache, so N proxies in one namespace cost one
//! translation per change.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use tokio::sync::watch;

use crate::problem::Problem;
use crate::store::Store;
use crate::translate::{self, MeshEndpoint, Resources};

#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    /// Increases with every change of the resources or endpoints.
    pub generation: u64,
    /// How many times the config was (re)loaded, changed or not.
    pub loads: u64,
    pub store: Arc<Store>,
    /// The problems found in the config that produced `store`.
    pub problems: Arc<[Problem]>,
    /// Connected proxies that serve a Service, sorted.
    pub endpoints: Arc<[MeshEndpoint]>,
}

/// Publishes a freshly loaded config; returns whether it differs from the one in
/// force. Streams are woken either way (they find nothing to send when nothing
/// changed; the translation cache makes that cheap).
pub fn publish_config(tx: &watch::Sender<Snapshot>, store: Store, problems: Vec<Problem>) -> bool {
    let mut changed = false;
    tx.send_modify(|s| {
        s.loads += 1;
        if *s.store != store || *s.problems != *problems {
            s.store = Arc::new(store);
            s.problems = problems.into();
            s.generation += 1;
            changed = true;
        }
    });
    changed
}

/// Replaces the endpoints; returns whether anything changed.
pub fn publish_endpoints(tx: &watch::Sender<Snapshot>, endpoints: Vec<MeshEndpoint>) -> bool {
    tx.send_if_modified(|s| {
        if *s.endpoints == *endpoints {
            return false;
        }
        s.endpoints = endpoints.into();
        s.generation += 1;
        true
    })
}

/// Translations of the latest snapshot, one per proxy namespace.
#[derive(Debug)]
pub struct TranslationCache {
    trust_domain: String,
    by_namespace: Mutex<HashMap<String, (u64, Arc<Resources>)>>,
}

impl TranslationCache {
    pub fn new(trust_domain: impl Into<String>) -> Self {
        Self {
            trust_domain: trust_domain.into(),
            by_namespace: Mutex::default(),
        }
    }

    pub fn resources(&self, snapshot: &Snapshot, namespace: &str) -> Arc<Resources> {
        let mut cache = self
            .by_namespace
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let cached = cache.get(namespace);
        if let Some((generation, resources)) = cached {
            if *generation == snapshot.generation {
                return Arc::clone(resources);
            }
        }
        let newer_cached = cached.is_some_and(|(g, _)| *g > snapshot.generation);
        let resources = Arc::new(translate::translate(
            &snapshot.store,
            &snapshot.endpoints,
            namespace,
            &self.trust_domain,
        ));
        if !newer_cached {
            cache.insert(
                namespace.to_owned(),
                (snapshot.generation, Arc::clone(&resources)),
            );
        }
        resources
    }
}
