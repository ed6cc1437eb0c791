//! What load to generate, against what.

use std::net::SocketAddr;
use std::time::Duration;

/// How requests are paced.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum LoadMode {
    /// Open loop: this many requests per second in total, spread evenly over the
    /// connections and over time.
    Rate(f64),
    /// Closed loop: every connection sends its next request as soon as the previous
    /// response is complete.
    Max,
}

/// A load to run: `GET path` with `Host: host` to `target`.
#[derive(Debug, Clone)]
pub struct LoadSpec {
    /// Where connections go (an app, or a proxy's outbound listener).
    pub target: SocketAddr,
    /// The `Host` header (the service name when `target` is a proxy).
    pub host: String,
    /// The request path (and query).
    pub path: String,
    /// Fixed rate or max.
    pub mode: LoadMode,
    /// Keep-alive connections, each with one request in flight.
    pub connections: usize,
    /// Stop scheduling after this long; `None` runs until [`super::Load::stop`].
    pub duration: Option<Duration>,
    /// A request not complete within this is recorded as a transport error and its
    /// connection replaced.
    pub timeout: Duration,
}

impl LoadSpec {
    /// `rate` requests per second in total, over 4 connections, until stopped.
    pub fn rate(target: SocketAddr, host: &str, rate: f64) -> Self {
        Self::new(target, host, LoadMode::Rate(rate))
    }

    /// As fast as responses come back, over 4 connections, until stopped.
    pub fn max(target: SocketAddr, host: &str) -> Self {
        Self::new(target, host, LoadMode::Max)
    }

    fn new(target: SocketAddr, host: &str, mode: LoadMode) -> Self {
        Self {
            target,
            host: host.to_owned(),
            path: "/".to_owned(),
            mode,
            connections: 4,
            duration: None,
            timeout: Duration::from_secs(5),
        }
    }

    /// The request path (default `/`).
    pub fn path(mut self, path: &str) -> Self {
        self.path = path.to_owned();
        self
    }

    /// How many keep-alive connections (default 4).
    pub fn connections(mut self, connections: usize) -> Self {
        self.connections = connections;
        self
    }

    /// Stop on its own after this long (default: run until stopped).
    pub fn duration(mut self, duration: Duration) -> Self {
        self.duration = Some(duration);
        self
    }

    /// Per-request timeout (default 5 s).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }
}

/// When request `k` of connection `connection` is due, after the start, at a total
/// `rate` over `connections` connections: the connections take turns, so the whole
/// load is evenly spaced at `1 / rate`.
pub(crate) fn due_offset(connection: usize, k: u64, connections: usize, rate: f64) -> Duration {
    let index = connection as f64 + k as f64 * connections as f64;
    Duration::from_secs_f64(index / rate)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connections_take_turns_so_the_total_is_evenly_spaced() {
        // 1000 req/s over 4 connections: one request every ms overall.
        let mut all: Vec<Duration> = (0..4)
            .flat_map(|c| (0..3).map(move |k| due_offset(c, k, 4, 1000.0)))
            .collect();
        all.sort();
        let expected: Vec<Duration> = (0..12).map(Duration::from_millis).collect();
        for (got, want) in all.iter().zip(&expected) {
            let diff = got.abs_diff(*want);
            assert!(diff < Duration::from_nanos(10), "{got:?} vs {want:?}");
        }
        // Each connection alone sends every 4 ms.
        let due = due_offset(1, 2, 4, 1000.0);
        assert!(due.abs_diff(Duration::from_millis(9)) < Duration::from_nanos(10));
    }
}
