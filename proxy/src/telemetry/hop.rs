//! The series of each hop, held by [`Metrics`] (one per proxy) and handed to the
//! request path when config compiles.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, PoisonError, Weak};

use super::Histogram;

/// Slots for distinct (status, gRPC status) pairs counted without a lock; a hop
/// rarely sees more.
const SLOTS: usize = 8;

/// Responses counted by HTTP status and gRPC status (-1: none): lock-free slots
/// claimed by compare-and-swap, and a locked list for the rare extra pairs.
#[derive(Debug, Default)]
pub struct StatusCounts {
    /// `(key, count)`; key 0 is a free slot, else `status << 8 | (grpc + 1)`.
    slots: [(AtomicU32, AtomicU64); SLOTS],
    overflow: Mutex<Vec<(u16, i32, u64)>>,
}

impl StatusCounts {
    pub fn count(&self, status: u16, grpc: Option<u32>) {
        let grpc = grpc.map_or(-1, |g| g.min(99) as i32);
        let key = (u32::from(status) << 8) | (grpc + 1) as u32;
        for (k, n) in &self.slots {
            let current = k.load(Relaxed);
            // A free slot is claimed; losing that race to the same key is fine.
            let claimed = current == 0
                && match k.compare_exchange(0, key, Relaxed, Relaxed) {
                    Ok(_) => true,
                    Err(winner) => winner == key,
                };
            if current == key || claimed {
                n.fetch_add(1, Relaxed);
                return;
            }
        }
        let mut e = self.overflow.lock().unwrap_or_else(PoisonError::into_inner);
        match e.iter_mut().find(|(s, g, _)| *s == status && *g == grpc) {
            Some(entry) => entry.2 += 1,
            None => e.push((status, grpc, 1)),
        }
    }

    pub fn snapshot(&self) -> Vec<(u16, i32, u64)> {
        let mut e = self
            .overflow
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        for (k, n) in &self.slots {
            let key = k.load(Relaxed);
            if key != 0 {
                e.push(((key >> 8) as u16, (key & 0xff) as i32 - 1, n.load(Relaxed)));
            }
        }
        e.sort_unstable();
        e
    }
}

/// `(name, value)` label pairs.
pub type Labels = Vec<(&'static str, String)>;

/// One hop's labels and series.
#[derive(Debug)]
pub struct HopStats {
    /// `(name, value)` label pairs, fixed when the hop is made.
    pub labels: Labels,
    pub responses: StatusCounts,
    /// From the request's arrival to the end of its response headers.
    pub duration: Histogram,
    /// The part of `duration` spent in the proxy itself (not waiting on the
    /// upstream or the app).
    pub overhead: Histogram,
    /// Answers that were the destination proxy's authorization denial (403
    /// with `remora-error`): failures of the hop, though not 5xx.
    pub denied: AtomicU64,
}

/// Every hop of a proxy, by its labels; entries go when no snapshot uses them.
#[derive(Debug, Default)]
pub struct Metrics {
    hops: Mutex<BTreeMap<Labels, Weak<HopStats>>>,
    pub inbound_callers: Mutex<BTreeMap<String, Arc<HopStats>>>,
    /// This proxy's own labels (`source_*` outbound, `destination_*` inbound).
    pub service: String,
    pub namespace: String,
    /// The hop of callers without a verified identity, made on first use.
    unauthenticated: std::sync::OnceLock<Arc<HopStats>>,
    /// Where access log lines go; `None`: nowhere.
    pub access_log: Option<Arc<super::access_log::AccessLog>>,
    /// Records a span per request; `None` without a collector.
    pub tracer: Option<Arc<super::trace::Tracer>>,
    /// Opaque TCP connections per hop.
    pub tcp: super::tcp_hop::TcpHops,
    /// Bootstrap `metrics: off`: no hop is counted (for measuring what metrics
    /// cost); `/metrics` still shows the rest.
    pub off: bool,
}

/// Inbound callers tracked by identity, at most; the rest are counted together.
const MAX_CALLERS: usize = 1000;

impl Metrics {
    pub fn new(service: &str, namespace: &str) -> Self {
        Self {
            service: service.to_owned(),
            namespace: namespace.to_owned(),
            ..Default::default()
        }
    }

    /// The live hop with these labels, or a new one.
    pub fn hop(&self, labels: Labels) -> Arc<HopStats> {
        let mut hops = self.hops.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(h) = hops.get(&labels).and_then(Weak::upgrade) {
            return h;
        }
        hops.retain(|_, w| w.strong_count() > 0);
        let hop = Arc::new(HopStats::new(labels.clone()));
        hops.insert(labels, Arc::downgrade(&hop));
        hop
    }

    /// Every live hop, in label order.
    pub fn hops(&self) -> Vec<Arc<HopStats>> {
        self.hops
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .values()
            .filter_map(Weak::upgrade)
            .collect()
    }

    /// The inbound hop of a caller (its verified identity, or `unauthenticated`).
    /// Identities come from certificates the mesh CA issued, so they are bounded;
    /// past a cap they are counted as `other`.
    pub fn inbound_caller(&self, identity: Option<&str>) -> Arc<HopStats> {
        let Some(id) = identity else {
            return self
                .unauthenticated
                .get_or_init(|| self.caller_hop("unauthenticated"))
                .clone();
        };
        self.caller_hop(id)
    }

    fn caller_hop(&self, id: &str) -> Arc<HopStats> {
        let mut callers = self
            .inbound_callers
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(h) = callers.get(id) {
            return h.clone();
        }
        let id = if callers.len() >= MAX_CALLERS {
            "other"
        } else {
            id
        };
        callers
            .entry(id.to_owned())
            .or_insert_with(|| {
                let l = vec![
                    ("direction", "inbound".to_owned()),
                    ("destination_service", self.service.clone()),
                    ("destination_namespace", self.namespace.clone()),
                    ("source_identity", id.to_owned()),
                ];
                Arc::new(HopStats::new(l))
            })
            .clone()
    }

    pub fn inbound(&self) -> Vec<Arc<HopStats>> {
        self.inbound_callers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .values()
            .cloned()
            .collect()
    }
}

impl HopStats {
    pub fn new(labels: Labels) -> Self {
        Self {
            labels,
            responses: StatusCounts::default(),
            duration: Histogram::default(),
            overhead: Histogram::default(),
            denied: AtomicU64::new(0),
        }
    }

    /// Answers and failures (5xx, or a gRPC status other than OK, as Linkerd
    /// counts them, and authorization denials: a caller refused by policy did
    /// not get what it asked for).
    pub fn requests_and_failures(&self) -> (u64, u64) {
        let (all, failed) =
            self.responses
                .snapshot()
                .iter()
                .fold((0, 0), |(all, failed), (status, grpc, n)| {
                    let failure = *status >= 500 || *grpc > 0;
                    (all + n, failed + if failure { *n } else { 0 })
                });
        (all, failed + self.denied.load(Relaxed))
    }

    /// A label's value, or "".
    pub fn label(&self, name: &str) -> &str {
        self.labels
            .iter()
            .find(|(k, _)| *k == name)
            .map_or("", |(_, v)| v.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_are_counted_with_and_without_free_slots() {
        let s = StatusCounts::default();
        for status in 200..212 {
            s.count(status, None);
        }
        s.count(200, None);
        s.count(200, Some(14));
        let snap = s.snapshot();
        assert!(snap.contains(&(200, -1, 2)));
        assert!(snap.contains(&(200, 14, 1)));
        assert!(snap.contains(&(211, -1, 1)), "past the slots: {snap:?}");
        assert_eq!(snap.iter().map(|e| e.2).sum::<u64>(), 14);
    }

    #[test]
    fn authorization_denials_are_failures() {
        let hop = HopStats::new(Vec::new());
        hop.responses.count(200, None);
        hop.responses.count(403, None);
        hop.responses.count(403, None);
        // One of the two 403s was the destination proxy's denial.
        hop.denied.fetch_add(1, Relaxed);
        assert_eq!(hop.requests_and_failures(), (3, 1));
    }
}
