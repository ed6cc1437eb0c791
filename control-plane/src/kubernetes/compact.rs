//! An object from the API server -> the little the mesh keeps of it. Memory
//! grows with the mesh, not with the cluster: `managedFields`, the
//! last-applied annotation, `status` (except the part Remora writes, to compare
//! with) and every field the mesh does not read are dropped on arrival.

use kube::api::DynamicObject;
use serde_json::{json, Map, Value};

use super::kinds::Watched;

/// `kubectl apply` keeps the whole manifest here: as large as the object.
const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";

/// The fields of a Service's `spec` the mesh reads.
const SERVICE_SPEC: &[&str] = &["ports", "clusterIP", "selector"];

/// `namespace/name` of an object; cluster-scoped objects have an empty
/// namespace.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ObjectRef {
    pub namespace: String,
    pub name: String,
}

impl std::fmt::Display for ObjectRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.namespace.is_empty() {
            f.write_str(&self.name)
        } else {
            write!(f, "{}/{}", self.namespace, self.name)
        }
    }
}

/// What is kept of one object.
#[derive(Debug, Clone, PartialEq)]
pub struct Compact {
    /// The document the mesh validates: apiVersion, kind, metadata (name,
    /// namespace, labels, annotations, generation) and the spec it reads. For
    /// a Namespace: `{"terminating": bool}`.
    pub object: Value,
    /// `metadata.generation`, for `observedGeneration`.
    pub generation: Option<i64>,
    /// The part of the status Remora writes, as the API server has it
    /// (`parents` of an HTTPRoute, `conditions` of Remora's kinds): a status
    /// is written only when it differs.
    pub status: Option<Value>,
}

/// The compact form of `object`, or `None` for an object without a name.
pub fn compact(kind: Watched, object: &DynamicObject) -> Option<(ObjectRef, Compact)> {
    let meta = &object.metadata;
    let name = meta.name.clone()?;
    let namespace = meta.namespace.clone().unwrap_or_default();
    let at = ObjectRef {
        namespace: namespace.clone(),
        name: name.clone(),
    };
    if kind == Watched::Namespace {
        let phase = object.data.pointer("/status/phase").and_then(Value::as_str);
        let terminating = meta.deletion_timestamp.is_some() || phase == Some("Terminating");
        let compact = Compact {
            object: json!({ "terminating": terminating }),
            generation: None,
            status: None,
        };
        return Some((at, compact));
    }
    let mut metadata = Map::new();
    metadata.insert("name".into(), Value::String(name));
    if !namespace.is_empty() {
        metadata.insert("namespace".into(), Value::String(namespace));
    }
    if let Some(labels) = meta.labels.as_ref().filter(|l| !l.is_empty()) {
        metadata.insert("labels".into(), json!(labels));
    }
    if let Some(annotations) = &meta.annotations {
        let kept: Map<String, Value> = annotations
            .iter()
            .filter(|(k, _)| k.as_str() != LAST_APPLIED)
            .map(|(k, v)| (k.clone(), Value::String(v.clone())))
            .collect();
        if !kept.is_empty() {
            metadata.insert("annotations".into(), Value::Object(kept));
        }
    }
    if let Some(generation) = meta.generation {
        metadata.insert("generation".into(), json!(generation));
    }
    let spec = match (kind, object.data.get("spec")) {
        (_, None) => None,
        (Watched::Service, Some(Value::Object(spec))) => Some(Value::Object(
            SERVICE_SPEC
                .iter()
                .filter_map(|f| spec.get(*f).map(|v| ((*f).to_owned(), v.clone())))
                .collect(),
        )),
        (_, Some(spec)) => Some(spec.clone()),
    };
    let mut document = Map::new();
    document.insert("apiVersion".into(), Value::String(kind.api_version()));
    document.insert("kind".into(), Value::String(kind.kind().to_owned()));
    document.insert("metadata".into(), Value::Object(metadata));
    if let Some(spec) = spec {
        document.insert("spec".into(), spec);
    }
    let status = match kind {
        Watched::HttpRoute => object.data.pointer("/status/parents").cloned(),
        k if k.has_status() => object.data.pointer("/status/conditions").cloned(),
        _ => None,
    };
    let compact = Compact {
        object: Value::Object(document),
        generation: meta.generation,
        status,
    };
    Some((at, compact))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn object(value: Value) -> DynamicObject {
        serde_json::from_value(value).unwrap()
    }

    #[test]
    fn a_service_keeps_what_the_mesh_reads_and_nothing_else() {
        let service = object(json!({
            "apiVersion": "v1", "kind": "Service",
            "metadata": {
                "name": "orders", "namespace": "shop", "uid": "u-1",
                "resourceVersion": "7", "generation": 2,
                "labels": {"app": "orders"},
                "annotations": {LAST_APPLIED: "{...huge...}", "remora.io/x": "y"},
                "managedFields": [{"manager": "kubectl"}],
            },
            "spec": {
                "ports": [{"port": 80, "targetPort": 8080}],
                "clusterIP": "10.0.0.7", "selector": {"app": "orders"},
                "type": "ClusterIP", "sessionAffinity": "None",
            },
            "status": {"loadBalancer": {}},
        }));
        let (at, compact) = compact(Watched::Service, &service).unwrap();
        assert_eq!(at.to_string(), "shop/orders");
        assert_eq!(
            compact.object,
            json!({
                "apiVersion": "v1", "kind": "Service",
                "metadata": {
                    "name": "orders", "namespace": "shop", "generation": 2,
                    "labels": {"app": "orders"},
                    "annotations": {"remora.io/x": "y"},
                },
                "spec": {
                    "ports": [{"port": 80, "targetPort": 8080}],
                    "clusterIP": "10.0.0.7", "selector": {"app": "orders"},
                },
            })
        );
        assert_eq!(compact.status, None);
    }

    #[test]
    fn a_route_keeps_its_spec_and_only_the_status_parents() {
        let route = object(json!({
            "apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute",
            "metadata": {"name": "r", "namespace": "shop", "generation": 3,
                         "managedFields": [{"manager": "kubectl"}]},
            "spec": {"parentRefs": [{"kind": "Service", "name": "orders"}], "rules": []},
            "status": {"parents": [{"controllerName": "other"}], "extra": 1},
        }));
        let (_, compact) = compact(Watched::HttpRoute, &route).unwrap();
        assert_eq!(compact.object["spec"]["rules"], json!([]));
        assert!(compact.object.get("status").is_none());
        assert!(compact.object["metadata"].get("managedFields").is_none());
        assert_eq!(compact.status, Some(json!([{"controllerName": "other"}])));
        assert_eq!(compact.generation, Some(3));
    }

    #[test]
    fn a_namespace_is_whether_it_is_being_deleted() {
        let ns = object(json!({
            "apiVersion": "v1", "kind": "Namespace",
            "metadata": {"name": "shop"}, "status": {"phase": "Terminating"},
        }));
        let (at, compact) = compact(Watched::Namespace, &ns).unwrap();
        assert_eq!(at.to_string(), "shop");
        assert_eq!(compact.object, json!({"terminating": true}));
    }
}
