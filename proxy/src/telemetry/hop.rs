//! The series of each hop, held by [`Metrics`] (one per proxy) and handed to the
//! request path when config compiles.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError, Weak};

use super::Histogram;

/// Responses counted by HTTP status and gRPC status (-1: none). A hop sees a
/// handful of distinct pairs, so a short list under a lock taken once per
/// response is enough.
#[derive(Debug, Default)]
pub struct StatusCounts {
    entries: Mutex<Vec<(u16, i32, u64)>>,
}

impl StatusCounts {
    pub fn count(&self, status: u16, grpc: Option<u32>) {
        let grpc = grpc.map_or(-1, |g| g.min(99) as i32);
        let mut e = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        match e.iter_mut().find(|(s, g, _)| *s == status && *g == grpc) {
            Some(entry) => entry.2 += 1,
            None => e.push((status, grpc, 1)),
        }
    }

    pub fn snapshot(&self) -> Vec<(u16, i32, u64)> {
        let mut e = self
            .entries
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
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
}

/// Every hop of a proxy, by its labels; entries go when no snapshot uses them.
#[derive(Debug, Default)]
pub struct Metrics {
    hops: Mutex<BTreeMap<Labels, Weak<HopStats>>>,
    /// Time spent in the proxy itself (not waiting for the upstream), per
    /// direction.
    pub overhead_outbound: Histogram,
    pub overhead_inbound: Histogram,
    pub inbound_callers: Mutex<BTreeMap<String, Arc<HopStats>>>,
    /// This proxy's own labels (`source_*` outbound, `destination_*` inbound).
    pub service: String,
    pub namespace: String,
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
        let hop = Arc::new(HopStats {
            labels: labels.clone(),
            responses: StatusCounts::default(),
            duration: Histogram::default(),
        });
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
        let id = identity.unwrap_or("unauthenticated");
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
                Arc::new(HopStats {
                    labels: l,
                    responses: StatusCounts::default(),
                    duration: Histogram::default(),
                })
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
