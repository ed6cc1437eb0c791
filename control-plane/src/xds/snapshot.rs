//! What every stream computes its resources from: the config in force and the
//! connected proxies, published on a `watch` channel. Streams translate it for their
//! proxy's namespace through a shared cache, so N proxies in one namespace cost one
//! translation per change.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use tokio::sync::watch;

use crate::problem::Problem;
use crate::resources::ObjectKey;
use crate::store::Store;
use crate::translate::{self, names, MeshEndpoint, Resources};

/// Every inbound listener's name starts so (see [`names::inbound`]).
const INBOUND_PREFIX: &str = "inbound|";

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

/// Translations of the latest snapshot, one per proxy namespace, and the view of
/// it each Service's proxies get.
#[derive(Debug)]
pub struct TranslationCache {
    trust_domain: String,
    by_namespace: Mutex<HashMap<String, Cached>>,
    by_service: Mutex<HashMap<(String, Option<String>), Cached>>,
}

/// A translation and the snapshot generation it was made from.
type Cached = (u64, Arc<Resources>);

impl TranslationCache {
    pub fn new(trust_domain: impl Into<String>) -> Self {
        Self {
            trust_domain: trust_domain.into(),
            by_namespace: Mutex::default(),
            by_service: Mutex::default(),
        }
    }

    /// What a proxy of `service` (`None`: a proxy that serves nothing) in
    /// `namespace` may read: its namespace's outbound config and its own
    /// Service's inbound listener only. Another Service's inbound listener holds
    /// that Service's authorization policy, which is none of this proxy's
    /// business.
    pub fn resources_for(
        &self,
        snapshot: &Snapshot,
        namespace: &str,
        service: Option<&str>,
    ) -> Arc<Resources> {
        // Keyed by Services that exist only, so names a proxy makes up cost nothing.
        let service = service.filter(|s| {
            snapshot
                .store
                .service(&ObjectKey::new(namespace, *s))
                .is_some()
        });
        let key = (namespace.to_owned(), service.map(str::to_owned));
        let mut cache = self
            .by_service
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some((generation, resources)) = cache.get(&key) {
            if *generation == snapshot.generation {
                return Arc::clone(resources);
            }
        }
        let all = self.resources(snapshot, namespace);
        let own = service.map(|s| names::inbound(&ObjectKey::new(namespace, s)));
        let mut scoped = (*all).clone();
        Arc::make_mut(&mut scoped.listeners)
            .retain(|name, _| !name.starts_with(INBOUND_PREFIX) || Some(name) == own.as_ref());
        let scoped = Arc::new(scoped);
        let newer_cached = cache
            .get(&key)
            .is_some_and(|(g, _)| *g > snapshot.generation);
        if !newer_cached {
            // Only the latest generation is worth keeping.
            cache.retain(|_, (g, _)| *g >= snapshot.generation);
            cache.insert(key, (snapshot.generation, Arc::clone(&scoped)));
        }
        scoped
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
            cache.retain(|_, (g, _)| *g >= snapshot.generation);
            cache.insert(
                namespace.to_owned(),
                (snapshot.generation, Arc::clone(&resources)),
            );
        }
        resources
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::parse;
    use crate::validate::validate;

    const TWO_SERVICES: &str = "apiVersion: v1\nkind: Service\nmetadata: {name: web}\n\
        spec:\n  ports: [{port: 80}]\n---\napiVersion: v1\nkind: Service\n\
        metadata: {name: orders}\nspec:\n  ports: [{port: 80}]\n";

    #[test]
    fn a_proxy_reads_its_own_inbound_listener_and_no_other() {
        let outcome = validate(&parse("s.yaml", TWO_SERVICES).documents);
        assert!(outcome.problems.is_empty(), "{:?}", outcome.problems);
        let snapshot = Snapshot {
            store: Arc::new(outcome.store),
            generation: 1,
            ..Default::default()
        };
        let cache = TranslationCache::new("cluster.local");
        let inbound = |service: Option<&str>| -> Vec<String> {
            let r = cache.resources_for(&snapshot, "default", service);
            r.listeners
                .keys()
                .filter(|n| n.starts_with(INBOUND_PREFIX))
                .cloned()
                .collect()
        };
        assert_eq!(
            inbound(Some("web")),
            ["inbound|web.default.svc.cluster.local"]
        );
        assert_eq!(
            inbound(Some("orders")),
            ["inbound|orders.default.svc.cluster.local"]
        );
        assert!(inbound(None).is_empty());
        // A name that is no Service gets nothing, and costs no cache entry.
        assert!(inbound(Some("made-up")).is_empty());
        // The outbound config is the same for all of them.
        let web = cache.resources_for(&snapshot, "default", Some("web"));
        let none = cache.resources_for(&snapshot, "default", None);
        assert_eq!(web.clusters, none.clusters);
        assert_eq!(web.routes, none.routes);
        // Shared, not copied: a thousand proxies of one namespace hold one
        // copy of its clusters, endpoints and routes.
        assert!(Arc::ptr_eq(&web.clusters, &none.clusters));
        assert!(Arc::ptr_eq(&web.endpoints, &none.endpoints));
        assert!(Arc::ptr_eq(&web.routes, &none.routes));
    }
}
