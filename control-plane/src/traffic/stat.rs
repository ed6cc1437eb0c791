//! Per-edge golden signals over a window, from the proxies' cumulative reports.
//!
//! For each proxy the window's traffic is what [`super::window`] takes from its
//! reports. An edge `SRC -> DST` is what the source's proxies saw on their
//! outbound side, summed over replicas, routes and backends: its rate, success
//! rate (5xx, gRPC failures and authorization denials fail) and latency
//! percentiles. Its mesh overhead is the mean time spent in the source's
//! outbound proxy plus the mean time in the destination's inbound proxy.
//!
//! When the app called a Service whose route sends its requests to other
//! Services (a split of `orders` to `orders-v1` and `orders-v2`), each
//! backend's edge names that Service as its `parent`, and the view also has
//! the parent's own edge (`SRC -> orders`), summed over its backends.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use serde::{Deserialize, Serialize};

use super::store::NodeReports;
use super::window::{window, Delta};

/// Which edges to show: those touching this namespace and/or service.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    pub namespace: Option<String>,
    pub service: Option<String>,
}

impl Filter {
    /// Whether `r` is a service this filter asks for.
    pub fn matches(&self, r: &ServiceRef) -> bool {
        self.namespace.as_ref().is_none_or(|ns| &r.namespace == ns)
            && self.service.as_ref().is_none_or(|s| &r.service == s)
    }
}

/// A service by name and namespace.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct ServiceRef {
    pub service: String,
    pub namespace: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Edge {
    pub source: ServiceRef,
    pub destination: ServiceRef,
    /// The Service the source's app called, when its route sent the requests
    /// on to `destination` (a backend of a split); `None` when the app called
    /// `destination` itself.
    #[serde(default)]
    pub parent: Option<ServiceRef>,
    pub requests: u64,
    pub failures: u64,
    pub requests_per_second: f64,
    /// Answers that were not failures, of all answers (1 with no traffic).
    pub success_rate: f64,
    pub latency_ms_p50: f64,
    pub latency_ms_p95: f64,
    pub latency_ms_p99: f64,
    /// Mean time a request spent in the two proxies of this hop (outbound plus
    /// inbound), in milliseconds; the inbound part is missing (0) when the
    /// destination's proxies have not reported.
    pub overhead_ms: f64,
    pub outbound_overhead_ms: f64,
    pub inbound_overhead_ms: f64,
    /// Source proxies that reported traffic on this edge.
    pub proxies: usize,
}

/// The answer of `/api/v1/stat`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StatView {
    pub window_seconds: f64,
    /// Proxy to proxy: each source and the Service that answered.
    pub edges: Vec<Edge>,
    /// Each source and a Service whose route sent its requests to other
    /// Services, summed over those backends (their edges are in `edges`, with
    /// `parent` naming this Service).
    #[serde(default)]
    pub parents: Vec<Edge>,
}

/// The value below which a share `q` of the counts fall, interpolated inside
/// its bucket; the last finite bound for the +Inf bucket.
pub fn quantile(bounds: &[f64], counts: &[u64], q: f64) -> f64 {
    let total: u64 = counts.iter().sum();
    if total == 0 {
        return 0.0;
    }
    let rank = q * total as f64;
    let mut seen = 0u64;
    for (i, n) in counts.iter().enumerate() {
        let before = seen as f64;
        seen += n;
        if seen as f64 >= rank && *n > 0 {
            let Some(upper) = bounds.get(i) else {
                return bounds.last().copied().unwrap_or(0.0);
            };
            let lower = if i == 0 { 0.0 } else { bounds[i - 1] };
            return lower + (upper - lower) * ((rank - before) / *n as f64).clamp(0.0, 1.0);
        }
    }
    bounds.last().copied().unwrap_or(0.0)
}

/// An edge's traffic: the source side's counters, rate and proxies, and the
/// destination side's overhead for this source's requests.
#[derive(Default)]
struct EdgeSum {
    delta: Delta,
    rate: f64,
    proxies: usize,
    inbound: Delta,
}

impl EdgeSum {
    fn add(&mut self, other: &EdgeSum) {
        self.delta.add(&other.delta);
        self.rate += other.rate;
        // The same source proxies carry every backend of a parent.
        self.proxies = self.proxies.max(other.proxies);
        self.inbound.add(&other.inbound);
    }

    fn edge(
        &self,
        bounds: &[f64],
        source: ServiceRef,
        destination: ServiceRef,
        parent: Option<ServiceRef>,
    ) -> Edge {
        let d = &self.delta;
        let outbound_overhead_ms = d.mean_overhead_ms();
        let inbound_overhead_ms = self.inbound.mean_overhead_ms();
        let ms = |q| quantile(bounds, &d.duration, q) * 1e3;
        Edge {
            source,
            destination,
            parent,
            requests: d.requests,
            failures: d.failures,
            requests_per_second: self.rate,
            success_rate: if d.requests == 0 {
                1.0
            } else {
                (d.requests - d.failures.min(d.requests)) as f64 / d.requests as f64
            },
            latency_ms_p50: ms(0.5),
            latency_ms_p95: ms(0.95),
            latency_ms_p99: ms(0.99),
            overhead_ms: outbound_overhead_ms + inbound_overhead_ms,
            outbound_overhead_ms,
            inbound_overhead_ms,
            proxies: self.proxies,
        }
    }
}

/// Source, destination, and the Service the app called (its route's parent;
/// `None` when unknown).
type EdgeKey = (ServiceRef, ServiceRef, Option<ServiceRef>);

/// The edges of the mesh over the last `window_ms`, sorted by source then
/// destination, and the edges to parents of routes sending to other Services.
pub fn edges(nodes: &[NodeReports], now_ms: u64, window_ms: u64, filter: &Filter) -> StatView {
    let mut bounds: Vec<f64> = Vec::new();
    let mut outbound: BTreeMap<EdgeKey, EdgeSum> = BTreeMap::new();
    // Destination -> caller (identity, or "unauthenticated") -> overhead.
    let mut inbound: HashMap<ServiceRef, HashMap<String, Delta>> = HashMap::new();
    let identities: HashMap<&str, ServiceRef> = nodes
        .iter()
        .filter_map(|n| {
            let r = n.reports.back()?;
            Some((
                n.identity.as_deref()?,
                ServiceRef {
                    service: r.service.clone(),
                    namespace: r.namespace.clone(),
                },
            ))
        })
        .collect();
    for node in nodes {
        let Some((latest, hops, seconds)) = window(node, now_ms, window_ms) else {
            continue;
        };
        if bounds.is_empty() {
            bounds = latest.bucket_bounds.clone();
        }
        let this = ServiceRef {
            service: latest.service.clone(),
            namespace: latest.namespace.clone(),
        };
        let mut per_edge: BTreeMap<EdgeKey, Delta> = BTreeMap::new();
        for (hop, d) in hops {
            if hop.direction == "outbound" {
                let destination = ServiceRef {
                    service: hop.destination_service.clone(),
                    namespace: hop.destination_namespace.clone(),
                };
                let parent = (!hop.parent_service.is_empty()).then(|| ServiceRef {
                    service: hop.parent_service.clone(),
                    namespace: hop.parent_namespace.clone(),
                });
                per_edge
                    .entry((this.clone(), destination, parent))
                    .or_default()
                    .add(&d);
            } else {
                inbound
                    .entry(this.clone())
                    .or_default()
                    .entry(hop.source_identity.clone())
                    .or_default()
                    .add(&d);
            }
        }
        for (k, d) in per_edge {
            let sum = outbound.entry(k).or_default();
            if seconds > 0.0 {
                sum.rate += d.requests as f64 / seconds;
            }
            if d.requests > 0 {
                sum.proxies += 1;
            }
            sum.delta.add(&d);
        }
    }
    // Hops exist for every route a proxy has; only traffic makes an edge.
    outbound.retain(|_, sum| sum.delta.requests > 0);
    for ((source, destination, _), sum) in outbound.iter_mut() {
        // The destination's callers that are this source, by identity; when
        // nobody has an identity (plaintext), all its callers.
        let Some(callers) = inbound.get(destination) else {
            continue;
        };
        for (identity, c) in callers {
            if identities.get(identity.as_str()) == Some(source) {
                sum.inbound.add(c);
            }
        }
        if sum.inbound.overhead_count == 0 {
            if let Some(c) = callers.get("unauthenticated") {
                sum.inbound.add(c);
            }
        }
    }
    let routed = routed_parents(outbound.keys());
    let mut edges: BTreeMap<EdgeKey, EdgeSum> = BTreeMap::new();
    let mut parents: BTreeMap<(ServiceRef, ServiceRef), EdgeSum> = BTreeMap::new();
    for ((source, destination, parent), sum) in outbound {
        // A parent that is the destination itself, in a route that sends
        // nowhere else, is just the edge.
        let parent = parent.filter(|p| routed.contains(&(source.clone(), p.clone())));
        if let Some(p) = &parent {
            parents
                .entry((source.clone(), p.clone()))
                .or_default()
                .add(&sum);
        }
        edges
            .entry((source, destination, parent))
            .or_default()
            .add(&sum);
    }
    let edges = edges
        .into_iter()
        .filter(|((s, d, p), _)| {
            filter.matches(s) || filter.matches(d) || p.as_ref().is_some_and(|p| filter.matches(p))
        })
        .map(|((s, d, p), sum)| sum.edge(&bounds, s, d, p))
        .collect();
    let parents = parents
        .into_iter()
        .filter(|((s, p), _)| filter.matches(s) || filter.matches(p))
        .map(|((s, p), sum)| sum.edge(&bounds, s, p, None))
        .collect();
    StatView {
        window_seconds: window_ms as f64 / 1000.0,
        edges,
        parents,
    }
}

/// `(source, parent)` pairs whose route sent requests to a Service other than
/// the parent itself.
fn routed_parents<'a>(
    keys: impl Iterator<Item = &'a EdgeKey>,
) -> BTreeSet<(ServiceRef, ServiceRef)> {
    keys.filter_map(|(source, destination, parent)| {
        parent
            .as_ref()
            .filter(|p| *p != destination)
            .map(|p| (source.clone(), p.clone()))
    })
    .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use remora_proto::telemetry::{Hop, HopReport};
    use std::collections::VecDeque;

    const BOUNDS: [f64; 3] = [0.001, 0.01, 0.1];

    fn hop(direction: &str, dst: &str, identity: &str, requests: u64, failures: u64) -> Hop {
        Hop {
            direction: direction.into(),
            destination_service: dst.into(),
            destination_namespace: "default".into(),
            source_identity: identity.into(),
            requests,
            failures,
            // Every request took between 1 and 10 ms; 0.1 ms of it in the proxy.
            duration_counts: vec![0, requests, 0, 0],
            duration_sum_seconds: requests as f64 * 0.005,
            overhead_counts: vec![requests, 0, 0, 0],
            overhead_sum_seconds: requests as f64 * 0.0001,
            ..Default::default()
        }
    }

    fn report(service: &str, started: u64, taken: u64, hops: Vec<Hop>) -> HopReport {
        HopReport {
            node_id: format!("{service}-1"),
            service: service.into(),
            namespace: "default".into(),
            started_unix_ms: started,
            taken_unix_ms: taken,
            bucket_bounds: BOUNDS.to_vec(),
            hops,
            ejected: Vec::new(),
        }
    }

    fn node(identity: &str, reports: Vec<HopReport>) -> NodeReports {
        NodeReports {
            identity: Some(identity.into()),
            reports: VecDeque::from(reports),
        }
    }

    #[test]
    fn an_edge_is_the_difference_over_the_window() {
        let web = node(
            "spiffe://td/ns/default/sa/web",
            vec![
                report(
                    "web",
                    0,
                    50_000,
                    vec![hop("outbound", "orders", "", 5_000, 10)],
                ),
                report(
                    "web",
                    0,
                    60_000,
                    vec![hop("outbound", "orders", "", 6_000, 110)],
                ),
            ],
        );
        let orders = node(
            "spiffe://td/ns/default/sa/orders",
            vec![report(
                "orders",
                55_000,
                60_000,
                vec![hop(
                    "inbound",
                    "orders",
                    "spiffe://td/ns/default/sa/web",
                    500,
                    0,
                )],
            )],
        );
        let view = edges(&[web, orders], 60_500, 10_000, &Filter::default());
        assert_eq!(view.edges.len(), 1, "{view:#?}");
        let e = &view.edges[0];
        assert_eq!(e.source.service, "web");
        assert_eq!(e.destination.service, "orders");
        assert_eq!(e.requests, 1000);
        assert!((e.requests_per_second - 100.0).abs() < 1e-9);
        assert!((e.success_rate - 0.9).abs() < 1e-9);
        assert!(e.latency_ms_p50 > 1.0 && e.latency_ms_p50 <= 10.0, "{e:?}");
        assert!((e.outbound_overhead_ms - 0.1).abs() < 1e-9);
        assert!((e.inbound_overhead_ms - 0.1).abs() < 1e-9, "{e:?}");

        let none = edges(
            &[],
            60_500,
            10_000,
            &Filter {
                service: Some("nobody".into()),
                ..Default::default()
            },
        );
        assert!(none.edges.is_empty());
    }

    /// web's outbound hop to `backend` of a route whose parent is `parent`.
    fn routed(parent: &str, backend: &str, requests: u64, failures: u64) -> Hop {
        Hop {
            parent_service: parent.into(),
            parent_namespace: "default".into(),
            ..hop("outbound", backend, "", requests, failures)
        }
    }

    fn split(v1: (u64, u64), v2: (u64, u64)) -> Vec<NodeReports> {
        let web = node(
            "spiffe://td/ns/default/sa/web",
            vec![
                report("web", 0, 50_000, vec![]),
                report(
                    "web",
                    0,
                    60_000,
                    vec![
                        routed("orders", "orders-v1", v1.0, v1.1),
                        routed("orders", "orders-v2", v2.0, v2.1),
                        // web calling payments itself: its own parent.
                        routed("payments", "payments", 100, 0),
                    ],
                ),
            ],
        );
        vec![web]
    }

    fn names(edges: &[Edge]) -> Vec<String> {
        edges
            .iter()
            .map(|e| {
                let via = e
                    .parent
                    .as_ref()
                    .map_or(String::new(), |p| format!("{} -> ", p.service));
                format!("{} -> {via}{}", e.source.service, e.destination.service)
            })
            .collect()
    }

    #[test]
    fn a_split_shows_the_parents_edge_and_its_backends() {
        let nodes = split((900, 0), (100, 50));
        let orders = Filter {
            service: Some("orders".into()),
            ..Default::default()
        };
        let view = edges(&nodes, 60_500, 10_000, &orders);
        assert_eq!(
            names(&view.edges),
            ["web -> orders -> orders-v1", "web -> orders -> orders-v2"]
        );
        assert_eq!(names(&view.parents), ["web -> orders"]);
        let parent = &view.parents[0];
        assert_eq!(parent.requests, 1000);
        assert!((parent.requests_per_second - 100.0).abs() < 1e-9);
        assert!((parent.success_rate - 0.95).abs() < 1e-9);
        assert_eq!(parent.proxies, 1);

        let all = edges(&nodes, 60_500, 10_000, &Filter::default());
        assert_eq!(
            names(&all.edges),
            [
                "web -> orders -> orders-v1",
                "web -> orders -> orders-v2",
                "web -> payments"
            ],
            "a Service called directly has no parent"
        );
        let backend = Filter {
            service: Some("orders-v2".into()),
            ..Default::default()
        };
        let view = edges(&nodes, 60_500, 10_000, &backend);
        assert_eq!(names(&view.edges), ["web -> orders -> orders-v2"]);
        assert!(view.parents.is_empty());
    }

    #[test]
    fn quantiles_interpolate_inside_a_bucket() {
        assert_eq!(quantile(&BOUNDS, &[0, 0, 0, 0], 0.5), 0.0);
        let q = quantile(&BOUNDS, &[0, 10, 0, 0], 0.5);
        assert!((q - 0.0055).abs() < 1e-9, "{q}");
        assert_eq!(
            quantile(&BOUNDS, &[0, 0, 0, 5], 0.99),
            0.1,
            "+Inf: the last bound"
        );
    }
}
