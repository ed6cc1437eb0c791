//! One proxy's traffic over a window: for each hop, the difference between
//! what it last reported inside the window and what it had reported by the
//! window's start (zero for a proxy that started inside it).
//!
//! A hop is taken as last reported inside the window, not only from the latest
//! report: a hop that left the proxy's config (its backend's weight set to 0,
//! its route removed) stops being reported at once, yet what it carried until
//! then is still the window's traffic.

use std::collections::HashMap;

use remora_proto::telemetry::{Hop, HopReport};

use super::store::NodeReports;

/// Counters of one hop over the window.
#[derive(Debug, Clone, Default)]
pub struct Delta {
    pub requests: u64,
    pub failures: u64,
    pub duration: Vec<u64>,
    pub overhead_count: u64,
    pub overhead_sum: f64,
}

impl Delta {
    pub fn add(&mut self, other: &Delta) {
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

    /// The mean time in the proxy, in milliseconds (0 without samples).
    pub fn mean_overhead_ms(&self) -> f64 {
        if self.overhead_count == 0 {
            0.0
        } else {
            self.overhead_sum / self.overhead_count as f64 * 1e3
        }
    }
}

/// What tells one hop's series from another's.
type HopKey = [String; 10];

fn key(h: &Hop) -> HopKey {
    [
        h.direction.clone(),
        h.source_service.clone(),
        h.source_namespace.clone(),
        h.source_identity.clone(),
        h.destination_service.clone(),
        h.destination_namespace.clone(),
        h.route.clone(),
        h.backend.clone(),
        h.parent_service.clone(),
        h.parent_namespace.clone(),
    ]
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
pub type Window<'a> = (&'a HopReport, Vec<(Hop, Delta)>, f64);

/// `None` when the proxy's latest report is older than the window.
pub fn window(node: &NodeReports, now_ms: u64, window_ms: u64) -> Option<Window<'_>> {
    let latest = node.reports.back()?;
    let start = now_ms.saturating_sub(window_ms);
    if latest.taken_unix_ms < start {
        return None;
    }
    let cutoff = latest.taken_unix_ms.saturating_sub(window_ms);
    // The base: the last report taken before the window began; the reports
    // after it are the window's.
    let (base, since, first) = match node.reports.iter().rposition(|r| r.taken_unix_ms <= cutoff) {
        Some(i) => (Some(&node.reports[i]), node.reports[i].taken_unix_ms, i + 1),
        None if latest.started_unix_ms >= start => (None, latest.started_unix_ms, 0),
        // Reports before the window were lost: the oldest kept stands in.
        None => {
            let oldest = node.reports.front()?;
            (Some(oldest), oldest.taken_unix_ms, 1)
        }
    };
    let base_hops: HashMap<HopKey, &Hop> = base
        .map(|b| b.hops.iter().map(|h| (key(h), h)).collect())
        .unwrap_or_default();
    // Newest first: the first time a hop is seen is its last report.
    let mut last: HashMap<HopKey, &Hop> = HashMap::new();
    for report in node.reports.iter().skip(first).rev() {
        for h in &report.hops {
            last.entry(key(h)).or_insert(h);
        }
    }
    let seconds = latest.taken_unix_ms.saturating_sub(since) as f64 / 1000.0;
    let hops = last
        .into_iter()
        .map(|(k, h)| (h.clone(), delta(h, base_hops.get(&k).copied())))
        .collect();
    Some((latest, hops, seconds))
}

#[cfg(test)]
mod tests {
    use std::collections::VecDeque;

    use super::*;

    fn hop(backend: &str, requests: u64) -> Hop {
        Hop {
            direction: "outbound".into(),
            destination_service: backend.into(),
            backend: backend.into(),
            requests,
            duration_counts: vec![requests, 0],
            overhead_counts: vec![requests, 0],
            ..Default::default()
        }
    }

    fn report(taken: u64, hops: Vec<Hop>) -> HopReport {
        HopReport {
            node_id: "web-1".into(),
            service: "web".into(),
            namespace: "default".into(),
            started_unix_ms: 0,
            taken_unix_ms: taken,
            bucket_bounds: vec![0.1],
            hops,
            ejected: Vec::new(),
        }
    }

    fn requests(w: &Window<'_>, backend: &str) -> u64 {
        w.1.iter()
            .filter(|(h, _)| h.backend == backend)
            .map(|(_, d)| d.requests)
            .sum()
    }

    #[test]
    fn a_hop_gone_from_the_latest_report_keeps_its_traffic_for_the_window() {
        let node = NodeReports {
            identity: None,
            reports: VecDeque::from(vec![
                report(10_000, vec![hop("orders-v1", 100), hop("orders-v2", 100)]),
                report(20_000, vec![hop("orders-v1", 150), hop("orders-v2", 130)]),
                // orders-v2's weight went to 0: its hop is no longer reported.
                report(30_000, vec![hop("orders-v1", 200)]),
            ]),
        };
        let w = window(&node, 30_000, 20_000).unwrap();
        assert_eq!(requests(&w, "orders-v1"), 100);
        assert_eq!(requests(&w, "orders-v2"), 30, "kept for the window");
        assert_eq!(w.2, 20.0);
        // Once the window no longer reaches back to it, the hop is gone.
        let later = window(&node, 30_000, 5_000).unwrap();
        assert_eq!(requests(&later, "orders-v2"), 0);
    }

    #[test]
    fn a_proxy_started_inside_the_window_counts_from_zero() {
        let mut first = report(25_000, vec![hop("orders", 40)]);
        first.started_unix_ms = 24_000;
        let node = NodeReports {
            identity: None,
            reports: VecDeque::from(vec![first]),
        };
        let w = window(&node, 30_000, 10_000).unwrap();
        assert_eq!(requests(&w, "orders"), 40);
        assert_eq!(w.2, 1.0);
        assert!(window(&node, 60_000, 10_000).is_none(), "too old");
    }
}
