//! Per-edge golden signals over a window, from the proxies' cumulative reports.
//!
//! For each proxy the window's traffic is the difference between its latest
//! report and the last one taken before the window began (or zero, for a proxy
//! that started inside the window). An edge `SRC -> DST` is what the source's
//! proxies saw on their outbound side, summed over replicas, routes and
//! backends: its rate, success rate (5xx and gRPC failures fail) and latency
//! percentiles. Its mesh overhead is the mean time spent in the source's
//! outbound proxy plus the mean time in the destination's inbound proxy.

use std::collections::{BTreeMap, HashMap};

use remora_proto::telemetry::{Hop, HopReport};
use serde::{Deserialize, Serialize};

use super::store::NodeReports;

/// Which edges to show: those touching this namespace and/or service.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    pub namespace: Option<String>,
    pub service: Option<String>,
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
    pub edges: Vec<Edge>,
}

/// Counters of one hop over the window.
#[derive(Debug, Clone, Default)]
struct Delta {
    requests: u64,
    failures: u64,
    duration: Vec<u64>,
    overhead_count: u64,
    overhead_sum: f64,
}

impl Delta {
    fn add(&mut self, other: &Delta) {
        self.requests += other.requests;
        self.failures += other.failures;
        if self.duration.len() < other.duration.len() {
            self.duration.resize(other.duration.len(), 0);
        }
        for (a, b) in self.duration.iter_mut().zip(&other.duration) {
            *a += b;
        }
        self.overhead_count += other.overhead_count;
        self.overhead_sum += other.overhead_sum;
    }
}

type HopKey = (
    String,
    String,
    String,
    String,
    String,
    String,
    String,
    String,
);

fn key(h: &Hop) -> HopKey {
    (
        h.direction.clone(),
        h.source_service.clone(),
        h.source_namespace.clone(),
        h.source_identity.clone(),
        h.destination_service.clone(),
        h.destination_namespace.clone(),
        h.route.clone(),
        h.backend.clone(),
    )
}

fn sub(a: &[u64], b: &[u64]) -> Vec<u64> {
    a.iter()
        .enumerate()
        .map(|(i, x)| x.saturating_sub(b.get(i).copied().unwrap_or(0)))
        .collect()
}

fn delta(latest: &Hop, base: Option<&Hop>) -> Delta {
    // Counters that went down belong to a new series (its hop was removed and
    // made again): all of it is in the window.
    let base = base.filter(|b| b.requests <= latest.requests);
    let zero = Hop::default();
    let b = base.unwrap_or(&zero);
    Delta {
        requests: latest.requests - b.requests,
        failures: latest.failures.saturating_sub(b.failures),
        duration: sub(&latest.duration_counts, &b.duration_counts),
        overhead_count: latest
            .overhead_counts
            .iter()
            .sum::<u64>()
            .saturating_sub(b.overhead_counts.iter().sum()),
        overhead_sum: (latest.overhead_sum_seconds - b.overhead_sum_seconds).max(0.0),
    }
}

/// One proxy's traffic over the window: its latest report, its hops' deltas and
/// the seconds they cover.
type Window<'a> = (&'a HopReport, Vec<(Hop, Delta)>, f64);

/// `None` when the proxy's latest report is older than the window.
fn window(node: &NodeReports, now_ms: u64, window_ms: u64) -> Option<Window<'_>> {
    let latest = node.reports.back()?;
    let start = now_ms.saturating_sub(window_ms);
    if latest.taken_unix_ms < start {
        return None;
    }
    let base = node
        .reports
        .iter()
        .rev()
        .find(|r| r.taken_unix_ms <= latest.taken_unix_ms.saturating_sub(window_ms));
    let (base_hops, since) = match base {
        Some(b) => (
            b.hops.iter().map(|h| (key(h), h)).collect(),
            b.taken_unix_ms,
        ),
        None if latest.started_unix_ms >= start => (HashMap::new(), latest.started_unix_ms),
        // Reports before the window were lost: the oldest kept stands in.
        None => {
            let oldest = node.reports.front()?;
            (
                oldest.hops.iter().map(|h| (key(h), h)).collect(),
                oldest.taken_unix_ms,
            )
        }
    };
    let seconds = latest.taken_unix_ms.saturating_sub(since) as f64 / 1000.0;
    let hops = latest
        .hops
        .iter()
        .map(|h| (h.clone(), delta(h, base_hops.get(&key(h)).copied())))
        .collect();
    Some((latest, hops, seconds))
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

#[derive(Default)]
struct EdgeSum {
    delta: Delta,
    rate: f64,
    proxies: usize,
}

/// The edges of the mesh over the last `window_ms`, sorted by source then
/// destination.
pub fn edges(nodes: &[NodeReports], now_ms: u64, window_ms: u64, filter: &Filter) -> StatView {
    let mut bounds: Vec<f64> = Vec::new();
    let mut outbound: BTreeMap<(ServiceRef, ServiceRef), EdgeSum> = BTreeMap::new();
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
        let mut per_edge: BTreeMap<(ServiceRef, ServiceRef), Delta> = BTreeMap::new();
        for (hop, d) in hops {
            if hop.direction == "outbound" {
                let source = ServiceRef {
                    service: latest.service.clone(),
                    namespace: latest.namespace.clone(),
                };
                let destination = ServiceRef {
                    service: hop.destination_service.clone(),
                    namespace: hop.destination_namespace.clone(),
                };
                per_edge.entry((source, destination)).or_default().add(&d);
            } else {
                let destination = ServiceRef {
                    service: latest.service.clone(),
                    namespace: latest.namespace.clone(),
                };
                inbound
                    .entry(destination)
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
    let mean_ms = |d: &Delta| {
        if d.overhead_count == 0 {
            0.0
        } else {
            d.overhead_sum / d.overhead_count as f64 * 1e3
        }
    };
    let mut edges = Vec::new();
    for ((source, destination), sum) in outbound {
        let touches = |r: &ServiceRef| {
            filter
                .namespace
                .as_ref()
                .is_none_or(|ns| &r.namespace == ns)
                && filter.service.as_ref().is_none_or(|s| &r.service == s)
        };
        let d = &sum.delta;
        // Hops exist for every route a proxy has; only traffic makes an edge.
        if d.requests == 0 || !(touches(&source) || touches(&destination)) {
            continue;
        }
        // The destination's callers that are this source, by identity; when
        // nobody has an identity (plaintext), all its callers.
        let callers = inbound.get(&destination);
        let mut theirs = Delta::default();
        if let Some(callers) = callers {
            for (identity, c) in callers {
                if identities.get(identity.as_str()) == Some(&source) {
                    theirs.add(c);
                }
            }
            if theirs.overhead_count == 0 {
                if let Some(c) = callers.get("unauthenticated") {
                    theirs.add(c);
                }
            }
        }
        let outbound_overhead_ms = mean_ms(d);
        let inbound_overhead_ms = mean_ms(&theirs);
        let ms = |q| quantile(&bounds, &d.duration, q) * 1e3;
        edges.push(Edge {
            requests: d.requests,
            failures: d.failures,
            requests_per_second: sum.rate,
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
            proxies: sum.proxies,
            source,
            destination,
        });
    }
    StatView {
        window_seconds: window_ms as f64 / 1000.0,
        edges,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
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
