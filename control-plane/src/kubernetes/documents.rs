//! The caches -> the documents the mesh validates, exactly as if they had been
//! read from YAML files: one document per object, its location naming the
//! object (`Service shop/orders`) where a file source names a file.
//!
//! Objects in a namespace being deleted are left out: their Services are on
//! their way out, and a route there would only report the Services gone.

use std::collections::BTreeSet;

use super::cache::Kinds;
use super::compact::ObjectRef;
use super::kinds::Watched;
use crate::problem::Problem;
use crate::source::{Document, Loaded};

/// Where an object's document "is": what a problem with it names.
pub fn location(kind: Watched, at: &ObjectRef) -> String {
    format!("{kind} {at}")
}

/// Every object of a document kind, in kind then name order.
pub fn documents(kinds: &Kinds) -> Loaded {
    let terminating: BTreeSet<&str> = kinds
        .get(&Watched::Namespace)
        .into_iter()
        .flatten()
        .filter(|(_, ns)| ns.object["terminating"].as_bool() == Some(true))
        .map(|(at, _)| at.name.as_str())
        .collect();
    let mut loaded = Loaded::default();
    for kind in Watched::ALL.into_iter().filter(|k| k.is_document()) {
        for (at, object) in kinds.get(&kind).into_iter().flatten() {
            if terminating.contains(at.namespace.as_str()) {
                continue;
            }
            let file = location(kind, at);
            match serde_yaml_ng::to_value(&object.object) {
                Ok(value) => loaded.documents.push(Document {
                    file,
                    index: 1,
                    value,
                }),
                // JSON always converts to YAML; reported rather than assumed.
                Err(e) => loaded.problems.push(Problem::in_file(
                    file,
                    format!("cannot read the object: {e}"),
                )),
            }
        }
    }
    loaded
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
        let compact = Compact {
            object,
            generation: None,
            status: None,
        };
        kinds.entry(kind).or_default().insert(at, compact);
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
}
