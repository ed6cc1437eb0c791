//! Opaque TCP per hop: connections, refusals, bytes each way and how long
//! connections lasted, by direction, the Service port (outbound) or app port
//! (inbound), and the peer's verified identity. A connection looks its hop up
//! once, when it starts; then it only bumps atomics.
//!
//! Labels come from config (Service ports) and verified identities, and at most
//! [`MAX_HOPS`] sets are kept (the rest share one), so a hostile client cannot
//! grow the table.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use super::render::{header, histogram, labels, sample};
use super::Histogram;

/// Label sets kept at most; past that, new ones are counted under `other`.
pub const MAX_HOPS: usize = 4096;

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct TcpHopKey {
    /// `outbound` or `inbound`.
    pub direction: &'static str,
    /// `redis.default:6379`, `passthrough`, or an inbound app port (`:6379`).
    pub destination: String,
    /// The caller's (inbound) or server's (outbound) verified SPIFFE id, or empty.
    pub peer_identity: String,
}

#[derive(Debug, Default)]
pub struct TcpHop {
    pub opened: AtomicU64,
    pub closed: AtomicU64,
    /// Refused by authorization (the connection was closed at once).
    pub denied: AtomicU64,
    /// No endpoint could be reached (every attempt failed or timed out).
    pub connect_failures: AtomicU64,
    pub bytes_sent: AtomicU64,
    pub bytes_received: AtomicU64,
    pub duration: Histogram,
}

impl TcpHop {
    pub fn count(c: &AtomicU64) {
        c.fetch_add(1, Relaxed);
    }

    /// A connection ended after `lasted`, having moved these bytes.
    pub fn finish(&self, sent: u64, received: u64, lasted: Duration) {
        self.bytes_sent.fetch_add(sent, Relaxed);
        self.bytes_received.fetch_add(received, Relaxed);
        self.closed.fetch_add(1, Relaxed);
        self.duration.observe(lasted);
    }
}

#[derive(Debug, Default)]
pub struct TcpHops {
    hops: Mutex<BTreeMap<TcpHopKey, Arc<TcpHop>>>,
}

impl TcpHops {
    pub fn hop(&self, key: TcpHopKey) -> Arc<TcpHop> {
        let mut hops = self.hops.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(hop) = hops.get(&key) {
            return hop.clone();
        }
        let key = if hops.len() >= MAX_HOPS {
            TcpHopKey {
                direction: key.direction,
                destination: "other".into(),
                peer_identity: String::new(),
            }
        } else {
            key
        };
        hops.entry(key).or_default().clone()
    }

    /// The `remora_tcp_hop_*` families in the Prometheus text format.
    pub fn render(&self, out: &mut String) {
        let hops: Vec<(TcpHopKey, Arc<TcpHop>)> = self
            .hops
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        if hops.is_empty() {
            return;
        }
        type Pick = fn(&TcpHop) -> u64;
        let counters: [(&str, &str, Pick); 6] = [
            (
                "remora_tcp_hop_connections_opened_total",
                "Opaque TCP connections carried, by hop.",
                |h| h.opened.load(Relaxed),
            ),
            (
                "remora_tcp_hop_connections_closed_total",
                "Opaque TCP connections ended, by hop.",
                |h| h.closed.load(Relaxed),
            ),
            (
                "remora_tcp_hop_connections_denied_total",
                "Opaque TCP connections refused by authorization policy, by hop.",
                |h| h.denied.load(Relaxed),
            ),
            (
                "remora_tcp_hop_connect_failures_total",
                "Opaque TCP connections closed because no endpoint could be reached, by hop.",
                |h| h.connect_failures.load(Relaxed),
            ),
            (
                "remora_tcp_hop_sent_bytes_total",
                "Bytes from the client to the server, by hop.",
                |h| h.bytes_sent.load(Relaxed),
            ),
            (
                "remora_tcp_hop_received_bytes_total",
                "Bytes from the server to the client, by hop.",
                |h| h.bytes_received.load(Relaxed),
            ),
        ];
        let label = |k: &TcpHopKey| {
            labels(&[
                ("direction", k.direction.to_owned()),
                ("destination", k.destination.clone()),
                ("peer_identity", k.peer_identity.clone()),
            ])
        };
        for (name, help, pick) in counters {
            header(out, name, "counter", help);
            for (k, h) in &hops {
                sample(out, name, &label(k), pick(h));
            }
        }
        let name = "remora_tcp_hop_connection_duration_seconds";
        header(
            out,
            name,
            "histogram",
            "How long opaque TCP connections lasted, by hop.",
        );
        for (k, h) in &hops {
            histogram(out, name, &label(k), &h.duration);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(destination: &str) -> TcpHopKey {
        TcpHopKey {
            direction: "outbound",
            destination: destination.into(),
            peer_identity: String::new(),
        }
    }

    #[test]
    fn the_same_labels_share_a_hop_and_the_table_is_bounded() {
        let hops = TcpHops::default();
        let a = hops.hop(key("redis.default:6379"));
        assert!(Arc::ptr_eq(&a, &hops.hop(key("redis.default:6379"))));
        for i in 0..MAX_HOPS + 10 {
            hops.hop(key(&format!("s{i}.default:1")));
        }
        assert_eq!(hops.hops.lock().unwrap().len(), MAX_HOPS + 1);
    }

    #[test]
    fn renders_counters_and_durations() {
        let hops = TcpHops::default();
        let h = hops.hop(key("redis.default:6379"));
        TcpHop::count(&h.opened);
        h.finish(10, 20, Duration::from_millis(5));
        let mut out = String::new();
        hops.render(&mut out);
        assert!(out.contains(r#"remora_tcp_hop_sent_bytes_total{direction="outbound",destination="redis.default:6379",peer_identity=""} 10"#), "{out}");
        assert!(
            out.contains("remora_tcp_hop_received_bytes_total{"),
            "{out}"
        );
        assert!(
            out.contains("remora_tcp_hop_connection_duration_seconds_bucket{"),
            "{out}"
        );
    }
}
