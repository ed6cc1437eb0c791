//! The caches -> the documents the mesh validates, exactly as if they had been
//! read from YAML files: one document per object, its location naming the
//! object (`Service shop/orders`) where a file source names a file.
//!
//! Objects in a namespace being deleted are left out: their Services are on
//! their way out, and a route there would only report the Services gone. So
//! are HTTPRoutes with no Service among their parents: a Gateway's routes are
//! its controller's, not the mesh's to judge.
//!
//! Each document was converted to YAML once, when its object arrived
//! ([`super::compact::Compact::document`]): under the caches' lock, which the
//! watches need, a reload only clones `Arc`s, the EndpointSlices' too
//! ([`picked`]); the documents are made after
//! ([`documents_of`]), a Service's `targetPort`s made numbers on the way
//! ([`super::target_ports`]).

use std::collections::BTreeSet;

use super::cache::Kinds;
use super::compact::{ObjectRef, Yaml};
use super::kinds::Watched;
use super::target_ports::{self, PickedSlice, Warned};
use crate::problem::Problem;
use crate::source::{Document, Loaded};

/// Where an object's document "is": what a problem with it names.
pub fn location(kind: Watched, at: &ObjectRef) -> String {
    format!("{kind} {at}")
}

/// What a reload takes out of the caches: the objects the mesh reads, and the
/// EndpointSlices their Services' named target ports resolve against.
#[derive(Debug)]
pub struct Picked {
    objects: Vec<PickedObject>,
    slices: Vec<PickedSlice>,
}

/// One object the mesh reads, as taken out of the caches.
#[derive(Debug)]
struct PickedObject {
    kind: Watched,
    at: ObjectRef,
    document: Yaml,
}

/// Every object of a document kind that the mesh reads, in kind then name
/// order, and the slices. Cheap: meant to run under the caches' lock.
pub fn picked(kinds: &Kinds) -> Picked {
    let terminating: BTreeSet<&str> = kinds
        .get(&Watched::Namespace)
        .into_iter()
        .flatten()
        .filter(|(_, ns)| ns.object["terminating"].as_bool() == Some(true))
        .map(|(at, _)| at.name.as_str())
        .collect();
    let mut objects = Vec::new();
    for kind in Watched::ALL.into_iter().filter(|k| k.is_document()) {
        for (at, object) in kinds.get(&kind).into_iter().flatten() {
            if !object.is_mesh || terminating.contains(at.namespace.as_str()) {
                continue;
            }
            objects.push(PickedObject {
                kind,
                at: at.clone(),
                document: object.document.clone(),
            });
        }
    }
    Picked {
        objects,
        slices: target_ports::picked_slices(kinds),
    }
}

/// The documents of `picked`, outside the lock; `targetPort` names left
/// unresolved are told to `warned`.
pub fn documents_of(picked: Picked, warned: &Warned) -> Loaded {
    let mut loaded = Loaded::default();
    let mut unresolved = BTreeSet::new();
    let mut by_service = target_ports::slice_ports(&picked.slices);
    for PickedObject { kind, at, document } in picked.objects {
        let file = location(kind, &at);
        match document {
            Ok(value) => {
                let mut value = (*value).clone();
                if kind == Watched::Service {
                    let ports = by_service.remove(&at).unwrap_or_default();
                    unresolved.extend(target_ports::resolve(&mut value, &at, &ports));
                }
                loaded.documents.push(Document {
                    file,
                    index: 1,
                    value,
                });
            }
            // JSON always converts to YAML; reported rather than assumed.
            Err(e) => loaded.problems.push(Problem::in_file(
                file,
                format!("cannot read the object: {e}"),
            )),
        }
    }
    warned.observe(unresolved);
    loaded
}

/// Every object of a document kind that the mesh reads, in kind then name
/// order (the source takes [`picked`] under the lock and makes the documents
/// after).
#[cfg(test)]
pub fn documents(kinds: &Kinds) -> Loaded {
    documents_of(picked(kinds), &Warned::default())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kubernetes::compact::Compact;
    use serde_json::json;

    fn put(kinds: &mut Kinds, kind: Watched, ns: &str, name: &str, object: serde_json::Value) {
        let at = ObjectRef {
            namespace: ns.into(),
            name: name.into(),
        };
        kinds
            .entry(kind)
            .or_default()
            .insert(at, Compact::new(object, None, None));
    }

    fn service(ns: &str, name: &str) -> serde_json::Value {
        json!({"apiVersion": "v1", "kind": "Service",
               "metadata": {"name": name, "namespace": ns},
               "spec": {"ports": [{"port": 80}]}})
    }

    #[test]
    fn objects_become_documents_named_by_the_object_and_validate_like_files() {
        let mut kinds = Kinds::new();
        put(
            &mut kinds,
            Watched::Service,
            "shop",
            "orders",
            service("shop", "orders"),
        );
        put(
            &mut kinds,
            Watched::HttpRoute,
            "shop",
            "split",
            json!({
            "apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute",
            "metadata": {"name": "split", "namespace": "shop", "generation": 1},
            "spec": {"parentRefs": [{"kind": "Service", "name": "orders", "port": 80}],
                     "rules": [{"backendRefs": [{"name": "nowhere", "port": 80}]}]}}),
        );
        let loaded = documents(&kinds);
        let files: Vec<&str> = loaded.documents.iter().map(|d| d.file.as_str()).collect();
        assert_eq!(files, ["Service shop/orders", "HTTPRoute shop/split"]);
        assert_eq!(
            loaded.documents[0].value["spec"]["ports"][0]["port"].as_u64(),
            Some(80)
        );

        let outcome = crate::validate::validate_loaded(&loaded);
        assert_eq!(outcome.store.services().count(), 1);
        let [problem] = outcome.problems.as_slice() else {
            panic!("{:?}", outcome.problems);
        };
        assert_eq!(problem.file, "HTTPRoute shop/split");
        assert_eq!(
            problem.field.as_deref(),
            Some("spec.rules[0].backendRefs[0].name")
        );
    }

    #[test]
    fn target_ports_are_numbers_by_kubernetes_rules_and_names_are_resolved_from_slices() {
        let mut kinds = Kinds::new();
        put(
            &mut kinds,
            Watched::Service,
            "shop",
            "orders",
            json!({"apiVersion": "v1", "kind": "Service",
                   "metadata": {"name": "orders", "namespace": "shop"},
                   "spec": {"ports": [
                       {"name": "api", "port": 80, "targetPort": 8080},
                       {"name": "admin", "port": 81},
                       {"name": "redis", "port": 6379, "targetPort": "redis", "appProtocol": "redis"},
                       {"name": "metrics", "port": 9090, "targetPort": "metrics"}]}}),
        );
        // Slices as `compact` keeps them; one of another namespace's orders.
        put(
            &mut kinds,
            Watched::EndpointSlice,
            "shop",
            "orders-abc",
            json!({"service": "orders", "ports": [{"name": "redis", "port": 16379}]}),
        );
        put(
            &mut kinds,
            Watched::EndpointSlice,
            "other",
            "orders-xyz",
            json!({"service": "orders", "ports": [{"name": "metrics", "port": 9100}]}),
        );
        let loaded = documents(&kinds);
        let files: Vec<&str> = loaded.documents.iter().map(|d| d.file.as_str()).collect();
        assert_eq!(files, ["Service shop/orders"], "a slice is no document");
        let outcome = crate::validate::validate_loaded(&loaded);
        assert!(outcome.problems.is_empty(), "{:?}", outcome.problems);
        let orders = outcome
            .store
            .service(&crate::resources::ObjectKey::new("shop", "orders"))
            .unwrap();
        let targets: Vec<Option<u16>> = orders.ports.iter().map(|p| p.target_port).collect();
        assert_eq!(
            targets,
            [Some(8080), Some(81), Some(16379), None],
            "a number, the port itself, a resolved name, an unresolved one"
        );
    }

    #[test]
    fn objects_in_a_namespace_being_deleted_are_dropped() {
        let mut kinds = Kinds::new();
        put(
            &mut kinds,
            Watched::Namespace,
            "",
            "old",
            json!({"terminating": true}),
        );
        put(
            &mut kinds,
            Watched::Namespace,
            "",
            "shop",
            json!({"terminating": false}),
        );
        put(
            &mut kinds,
            Watched::Service,
            "old",
            "orders",
            service("old", "orders"),
        );
        put(
            &mut kinds,
            Watched::Service,
            "shop",
            "orders",
            service("shop", "orders"),
        );
        let loaded = documents(&kinds);
        let files: Vec<&str> = loaded.documents.iter().map(|d| d.file.as_str()).collect();
        assert_eq!(files, ["Service shop/orders"]);
    }

    #[test]
    fn a_route_with_no_service_parent_is_not_a_document() {
        let mut kinds = Kinds::new();
        put(
            &mut kinds,
            Watched::HttpRoute,
            "shop",
            "north-south",
            json!({
            "apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute",
            "metadata": {"name": "north-south", "namespace": "shop"},
            "spec": {"parentRefs": [{"name": "public-gateway"}],
                     "rules": [{"backendRefs": [{"name": "web", "port": 80}]}]}}),
        );
        let loaded = documents(&kinds);
        assert!(loaded.documents.is_empty(), "{loaded:?}");
        let outcome = crate::validate::validate_loaded(&loaded);
        assert!(outcome.problems.is_empty(), "{:?}", outcome.problems);
    }
}
