//! An object from the API server -> the little the mesh keeps of it. Memory
//! grows with the mesh, not with the cluster: `managedFields`, the
//! last-applied annotation, `status` (except the part Remora writes, to compare
//! with) and every field the mesh does not read are dropped on arrival.

use std::sync::Arc;

use kube::api::DynamicObject;
use serde_json::{json, Map, Value};

use super::kinds::{Watched, SERVICE_NAME_LABEL};

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

/// An object's document as the validator reads it (YAML), made once when the
/// object arrives and shared: a reload clones the `Arc`, not the object. The
/// error, if JSON ever failed to convert, is reported as the object's problem.
pub type Yaml = Result<Arc<serde_yaml_ng::Value>, String>;

/// What is kept of one object.
#[derive(Debug, Clone, PartialEq)]
pub struct Compact {
    /// The object as the mesh reads it: apiVersion, kind, metadata (name,
    /// namespace, labels, annotations, generation) and the spec it reads. For
    /// a Namespace: `{"terminating": bool}`.
    pub object: Value,
    /// The document the mesh validates: `object` as YAML, an HTTPRoute's
    /// parentRefs narrowed to its Services ([`service_parents`]).
    pub document: Yaml,
    /// Whether the object is the mesh's: false for an HTTPRoute with no
    /// Service among its parents (a Gateway's route, another controller's).
    pub is_mesh: bool,
    /// `metadata.generation`, for `observedGeneration`.
    pub generation: Option<i64>,
    /// `metadata.resourceVersion`: a status write names it, so that it fails
    /// (409) rather than overwrite what another controller wrote meanwhile.
    pub resource_version: Option<String>,
    /// The part of the status Remora writes, as the API server has it
    /// (`parents` of an HTTPRoute, `conditions` of Remora's kinds): a status
    /// is written only when it differs.
    pub status: Option<Value>,
}

impl Compact {
    /// `object` kept, its document made once; no resourceVersion yet.
    pub fn new(object: Value, generation: Option<i64>, status: Option<Value>) -> Compact {
        let is_route = object["kind"].as_str() == Some(Watched::HttpRoute.kind());
        let services = service_parents(&object);
        let is_mesh = !is_route || !services.is_empty();
        let document = if is_route && is_mesh {
            yaml(&narrowed(&object, &services))
        } else {
            yaml(&object)
        };
        Compact {
            object,
            document,
            is_mesh,
            generation,
            resource_version: None,
            status,
        }
    }
}

fn yaml(object: &Value) -> Yaml {
    serde_yaml_ng::to_value(object)
        .map(Arc::new)
        .map_err(|e| e.to_string())
}

/// Whether a parentRef names a Service: `kind: Service` in the core group
/// (`group` absent, `""` or `core`, as the validator accepts). Any other
/// parent (a `Gateway`, the Gateway API's default kind) is another
/// controller's.
pub fn is_service_parent(parent: &Value) -> bool {
    let core = match parent.get("group") {
        None | Some(Value::Null) => true,
        Some(group) => matches!(group.as_str(), Some("" | "core")),
    };
    core && parent["kind"].as_str() == Some("Service")
}

/// The positions in `spec.parentRefs` of the parents that are Services: the
/// mesh's document holds only these, in this order, so a problem's
/// `spec.parentRefs[j]` is the object's `spec.parentRefs[services[j]]`.
pub fn service_parents(object: &Value) -> Vec<usize> {
    object["spec"]["parentRefs"]
        .as_array()
        .into_iter()
        .flatten()
        .enumerate()
        .filter(|(_, p)| is_service_parent(p))
        .map(|(i, _)| i)
        .collect()
}

/// `route` with only the parentRefs at `services`: a route that is also
/// attached to a Gateway is the mesh's for its Services, and the Gateway's
/// parent is not the mesh's to judge.
fn narrowed(route: &Value, services: &[usize]) -> Value {
    let Some(refs) = route["spec"]["parentRefs"].as_array() else {
        return route.clone();
    };
    if refs.len() == services.len() {
        return route.clone();
    }
    let mut route = route.clone();
    let kept = services.iter().filter_map(|&i| refs.get(i).cloned());
    route["spec"]["parentRefs"] = Value::Array(kept.collect());
    route
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
    if kind == Watched::EndpointSlice {
        let slice = slice_ports(meta.labels.as_ref(), &object.data);
        return Some((at, Compact::new(slice, None, None)));
    }
    if kind == Watched::Namespace {
        let phase = object.data.pointer("/status/phase").and_then(Value::as_str);
        let terminating = meta.deletion_timestamp.is_some() || phase == Some("Terminating");
        return Some((
            at,
            Compact::new(json!({ "terminating": terminating }), None, None),
        ));
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
    let mut compact = Compact::new(Value::Object(document), meta.generation, status);
    compact.resource_version.clone_from(&meta.resource_version);
    Some((at, compact))
}

/// What is kept of an EndpointSlice: its Service (the label) and what each
/// of its ports resolved to (`[{name, port}]`, `""` for an unnamed port),
/// which is all a Service's named `targetPort` needs. Its endpoints,
/// annotations and generation change with every pod and are dropped, so a
/// slice changes (and the config reloads) only when a port number may.
fn slice_ports(labels: Option<&std::collections::BTreeMap<String, String>>, data: &Value) -> Value {
    let service = labels.and_then(|l| l.get(SERVICE_NAME_LABEL)).cloned();
    let ports: Vec<Value> = data
        .get("ports")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|p| {
            let port = p.get("port")?.as_u64()?;
            let name = p.get("name").and_then(Value::as_str).unwrap_or_default();
            Some(json!({"name": name, "port": port}))
        })
        .collect();
    json!({"service": service, "ports": ports})
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

    fn route_with(parent_refs: Value) -> Compact {
        let route = object(json!({
            "apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute",
            "metadata": {"name": "r", "namespace": "shop", "resourceVersion": "12"},
            "spec": {"parentRefs": parent_refs, "rules": []},
        }));
        compact(Watched::HttpRoute, &route).unwrap().1
    }

    #[test]
    fn a_route_of_a_gateway_only_is_not_the_meshs() {
        // `kind` omitted is a Gateway (the Gateway API's default).
        for refs in [
            json!([{"name": "public"}]),
            json!([{"group": "gateway.networking.k8s.io", "kind": "Gateway", "name": "gw"}]),
            json!([{"group": "example.com", "kind": "Service", "name": "orders"}]),
            json!([]),
        ] {
            assert!(!route_with(refs.clone()).is_mesh, "{refs}");
        }
        for refs in [
            json!([{"kind": "Service", "name": "orders"}]),
            json!([{"group": "", "kind": "Service", "name": "orders"}]),
            json!([{"group": "core", "kind": "Service", "name": "orders"}]),
        ] {
            assert!(route_with(refs.clone()).is_mesh, "{refs}");
        }
    }

    #[test]
    fn a_route_of_a_gateway_and_a_service_is_validated_with_its_service_only() {
        let route = route_with(json!([
            {"kind": "Gateway", "name": "gw"},
            {"group": "", "kind": "Service", "name": "orders"},
        ]));
        assert!(route.is_mesh);
        assert_eq!(service_parents(&route.object), [1]);
        let document = route.document.unwrap();
        let refs = document["spec"]["parentRefs"].as_sequence().unwrap();
        assert_eq!(refs.len(), 1);
        assert_eq!(refs[0]["name"].as_str(), Some("orders"));
        // The object itself, which status is planned from, keeps both.
        assert_eq!(
            route.object["spec"]["parentRefs"].as_array().map(Vec::len),
            Some(2)
        );
    }

    #[test]
    fn the_document_is_the_object_as_yaml_and_the_resource_version_is_kept() {
        let route = route_with(json!([{"kind": "Service", "name": "orders"}]));
        assert_eq!(route.resource_version.as_deref(), Some("12"));
        let document = route.document.clone().unwrap();
        assert_eq!(*document, serde_yaml_ng::to_value(&route.object).unwrap());
        assert!(route.object["metadata"].get("resourceVersion").is_none());
    }

    #[test]
    fn a_slice_keeps_its_service_and_port_numbers_and_nothing_that_changes_with_pods() {
        let slice = |generation: i64, ip: &str| {
            object(json!({
                "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
                "metadata": {
                    "name": "orders-abc", "namespace": "shop", "generation": generation,
                    "labels": {"kubernetes.io/service-name": "orders", "app": "orders"},
                    "annotations": {"endpoints.kubernetes.io/last-change-trigger-time": ip},
                },
                "addressType": "IPv4",
                "endpoints": [{"addresses": [ip]}],
                "ports": [{"name": "redis", "port": 16379, "protocol": "TCP"},
                          {"port": 8080, "protocol": "TCP"}, {"name": "broken"}],
            }))
        };
        let (at, first) = compact(Watched::EndpointSlice, &slice(1, "10.0.0.1")).unwrap();
        assert_eq!(at.to_string(), "shop/orders-abc");
        assert_eq!(
            first.object,
            json!({"service": "orders",
                   "ports": [{"name": "redis", "port": 16379}, {"name": "", "port": 8080}]})
        );
        let (_, moved) = compact(Watched::EndpointSlice, &slice(2, "10.0.0.2")).unwrap();
        assert_eq!(moved.object, first.object, "a pod came and went: no change");
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
