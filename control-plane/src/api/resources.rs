//! `GET /api/v1/resources` (the resources in force, as their documents were
//! written) and `GET /api/v1/endpoints` (every Service's endpoints, with the
//! ones proxies have ejected marked).

use std::collections::BTreeMap;
use std::net::SocketAddr;

use serde::Serialize;

use super::kinds;
use super::query::decode;
use crate::resources::Kind;
use crate::traffic::store::NodeReports;
use crate::xds::Snapshot;

/// Filters of both views: `kind` (resources only), `namespace`, `name`
/// (`service` is the endpoints' name for it).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Filter {
    pub kind: Option<Kind>,
    pub namespace: Option<String>,
    pub name: Option<String>,
}

impl Filter {
    /// `kind=svc&namespace=shop&name=orders` (`service=` is `name=`).
    pub fn parse(query: &str, with_kind: bool) -> Result<Filter, String> {
        let mut f = Filter::default();
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            let v = decode(v);
            match k {
                _ if v.is_empty() => {}
                "kind" if with_kind => {
                    f.kind = Some(
                        kinds::parse(&v)
                            .ok_or_else(|| format!("unknown kind `{v}` ({})", kinds::KNOWN))?,
                    )
                }
                "namespace" => f.namespace = Some(v),
                "name" | "service" => f.name = Some(v),
                other => return Err(format!("unknown parameter `{other}`")),
            }
        }
        Ok(f)
    }

    fn admits(&self, namespace: &str, name: &str) -> bool {
        self.namespace.as_deref().is_none_or(|n| n == namespace)
            && self.name.as_deref().is_none_or(|n| n == name)
    }
}

/// `GET /api/v1/resources`
#[derive(Debug, Serialize)]
pub struct ResourcesView<'a> {
    /// The snapshot generation they are from.
    pub generation: u64,
    pub items: Vec<ResourceView<'a>>,
}

#[derive(Debug, Serialize)]
pub struct ResourceView<'a> {
    pub kind: &'static str,
    pub namespace: &'a str,
    pub name: &'a str,
    /// Where the source keeps it (a file).
    pub location: Option<&'a str>,
    /// The document as written (for a resource whose last valid version stays
    /// in force, that version).
    pub document: serde_json::Value,
}

pub fn resources<'a>(snapshot: &'a Snapshot, filter: &Filter) -> ResourcesView<'a> {
    let store = &snapshot.store;
    let items = store
        .ids()
        .into_iter()
        .filter(|(kind, key)| {
            filter.kind.is_none_or(|k| k == *kind) && filter.admits(&key.namespace, &key.name)
        })
        .map(|(kind, key)| ResourceView {
            kind: kind.as_str(),
            namespace: &key.namespace,
            name: &key.name,
            location: store.origin(kind, key),
            document: store
                .document(kind, key)
                .and_then(|d| serde_json::to_value(&**d).ok())
                .unwrap_or_default(),
        })
        .collect();
    ResourcesView {
        generation: snapshot.generation,
        items,
    }
}

/// How recent a proxy's report must be for its ejections to count: a few
/// report intervals (2 s by default).
pub const EJECTIONS_FRESH_MS: u64 = 30_000;

/// `GET /api/v1/endpoints`
#[derive(Debug, Serialize)]
pub struct EndpointsView {
    pub endpoints: Vec<EndpointView>,
}

#[derive(Debug, Serialize)]
pub struct EndpointView {
    pub namespace: String,
    pub service: String,
    pub address: String,
    /// `proxy`: a connected proxy registered for the Service; `endpointslice`:
    /// a pod the cluster lists for it; `static`: the Service's `spec.endpoints`.
    pub source: &'static str,
    pub node_id: Option<String>,
    pub identity: Option<String>,
    /// Static endpoints: the Service port it serves.
    pub service_port: Option<u16>,
    /// The proxies whose outlier detection has it ejected now (as their latest
    /// reports say).
    pub ejected_by: Vec<String>,
}

/// Every endpoint the config and the connected proxies give, with `nodes`'
/// latest reports (taken within [`EJECTIONS_FRESH_MS`] of `now_ms`) marking
/// the ejected ones.
pub fn endpoints(
    snapshot: &Snapshot,
    nodes: &[NodeReports],
    now_ms: u64,
    filter: &Filter,
) -> EndpointsView {
    // (namespace, service, address) -> the proxies that eject it.
    let mut ejected: BTreeMap<(String, String, String), Vec<String>> = BTreeMap::new();
    for node in nodes {
        let Some(report) = node.reports.back() else {
            continue;
        };
        if report.taken_unix_ms.saturating_add(EJECTIONS_FRESH_MS) < now_ms {
            continue;
        }
        for e in &report.ejected {
            let by = ejected
                .entry((e.namespace.clone(), e.service.clone(), e.address.clone()))
                .or_default();
            if !by.contains(&report.node_id) {
                by.push(report.node_id.clone());
            }
        }
    }
    let mut ejected_by = |namespace: &str, service: &str, address: &str| {
        ejected
            .remove(&(namespace.to_owned(), service.to_owned(), address.to_owned()))
            .unwrap_or_default()
    };
    let mut out = Vec::new();
    for e in snapshot.endpoints.iter() {
        let (namespace, service) = (&e.service.namespace, &e.service.name);
        if !filter.admits(namespace, service) {
            continue;
        }
        let address = e.address.to_string();
        out.push(EndpointView {
            ejected_by: ejected_by(namespace, service, &address),
            namespace: namespace.clone(),
            service: service.clone(),
            address,
            source: match e.origin {
                crate::translate::Origin::Registered => "proxy",
                crate::translate::Origin::Cluster => "endpointslice",
            },
            node_id: Some(e.node_id.clone()),
            identity: e.identity.clone(),
            service_port: None,
        });
    }
    for service in snapshot.store.services() {
        let (namespace, name) = (&service.key.namespace, &service.key.name);
        if !filter.admits(namespace, name) {
            continue;
        }
        for e in &service.endpoints {
            let address = SocketAddr::new(e.address, e.port).to_string();
            out.push(EndpointView {
                ejected_by: ejected_by(namespace, name, &address),
                namespace: namespace.clone(),
                service: name.clone(),
                address,
                source: "static",
                node_id: None,
                identity: None,
                service_port: Some(e.service_port),
            });
        }
    }
    out.sort_by(|a, b| {
        (&a.namespace, &a.service, &a.address).cmp(&(&b.namespace, &b.service, &b.address))
    });
    EndpointsView { endpoints: out }
}

#[cfg(test)]
mod tests {
    use std::collections::VecDeque;
    use std::sync::Arc;

    use remora_proto::telemetry::{EjectedEndpoint, HopReport};

    use super::*;
    use crate::resources::ObjectKey;
    use crate::translate::MeshEndpoint;

    fn snapshot() -> Snapshot {
        let outcome = crate::validate::validate(
            &crate::source::parse(
                "s.yaml",
                "apiVersion: v1\nkind: Service\nmetadata: {name: orders}\nspec:\n  ports: [{port: 80}]\n  endpoints: [{address: 10.0.0.9, port: 8080}]\n",
            )
            .documents,
        );
        assert!(outcome.problems.is_empty(), "{:?}", outcome.problems);
        let endpoint = |node: &str, addr: &str| MeshEndpoint {
            service: ObjectKey::new("default", "orders"),
            address: addr.parse().unwrap(),
            node_id: node.into(),
            identity: None,
            peer: None,
            origin: crate::translate::Origin::Registered,
        };
        Snapshot {
            generation: 3,
            store: Arc::new(outcome.store),
            endpoints: vec![
                endpoint("orders-1", "127.0.0.1:7002"),
                endpoint("orders-2", "127.0.0.1:7003"),
            ]
            .into(),
            ..Default::default()
        }
    }

    fn report(node: &str, taken: u64, ejected: &[&str]) -> NodeReports {
        NodeReports {
            identity: None,
            reports: VecDeque::from([HopReport {
                node_id: node.into(),
                taken_unix_ms: taken,
                ejected: ejected
                    .iter()
                    .map(|a| EjectedEndpoint {
                        cluster: "outbound|80||orders.default.svc.cluster.local".into(),
                        service: "orders".into(),
                        namespace: "default".into(),
                        address: (*a).into(),
                    })
                    .collect(),
                ..Default::default()
            }]),
        }
    }

    #[test]
    fn endpoints_are_marked_ejected_by_the_proxies_that_eject_them() {
        let nodes = [
            report("web-1", 100_000, &["127.0.0.1:7003"]),
            report("web-2", 100_000, &["127.0.0.1:7003", "10.0.0.9:8080"]),
            // Too old to count.
            report("web-3", 1_000, &["127.0.0.1:7002"]),
        ];
        let view = endpoints(&snapshot(), &nodes, 101_000, &Filter::default());
        let rows: Vec<_> = view
            .endpoints
            .iter()
            .map(|e| (e.address.as_str(), e.source, e.ejected_by.join(",")))
            .collect();
        assert_eq!(
            rows,
            [
                ("10.0.0.9:8080", "static", "web-2".to_owned()),
                ("127.0.0.1:7002", "proxy", String::new()),
                ("127.0.0.1:7003", "proxy", "web-1,web-2".to_owned()),
            ]
        );
        let only = Filter::parse("namespace=shop", false).unwrap();
        assert!(endpoints(&snapshot(), &nodes, 101_000, &only)
            .endpoints
            .is_empty());
    }

    #[test]
    fn resources_are_listed_by_kind_and_filtered() {
        let snapshot = snapshot();
        let all = resources(&snapshot, &Filter::default());
        assert_eq!(all.items.len(), 1);
        assert_eq!(all.generation, 3);
        let none = Filter::parse("kind=httproutes", true).unwrap();
        assert!(resources(&snapshot, &none).items.is_empty());
        assert!(Filter::parse("kind=pods", true).is_err());
        assert!(
            Filter::parse("kind=svc", false).is_err(),
            "endpoints take no kind"
        );
    }
}
