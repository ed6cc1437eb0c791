//! Per-hop metrics in the Prometheus text format, served on the admin port at
//! `/metrics`.
//!
//! - [`histogram`]: latency histograms with buckets fine enough for sub-millisecond
//!   hops;
//! - [`hop`]: the series of one hop (a route's backend, or the callers of the
//!   inbound side), resolved when config compiles and kept across config changes,
//!   so the request path only bumps atomics;
//! - [`render`]: the text exposition.
//!
//! Label values come from config (services, routes, clusters) or from verified
//! identities, never from request paths or hosts, so cardinality stays bounded.

pub mod exposition;
pub mod histogram;
pub mod hop;
pub mod render;
pub mod request_id;

pub use histogram::Histogram;
pub use hop::{HopStats, Metrics, StatusCounts};

use std::cell::Cell;
use std::time::Duration;

tokio::task_local! {
    /// Nanoseconds the current request spent waiting on its upstream (summed over
    /// attempts), so the proxy's own time is the rest.
    static UPSTREAM_NS: Cell<u64>;
}

/// Runs `f` while counting the time it waits on upstreams; returns its output
/// and that time. No allocation: the counter lives in the task-local slot.
pub async fn timing_upstream<F: std::future::Future>(f: F) -> (F::Output, Duration) {
    UPSTREAM_NS
        .scope(Cell::new(0), async {
            let out = f.await;
            let ns = UPSTREAM_NS.with(Cell::get);
            (out, Duration::from_nanos(ns))
        })
        .await
}

/// Adds upstream waiting time to the current request (outside one: nothing).
pub fn add_upstream_time(d: Duration) {
    let _ = UPSTREAM_NS.try_with(|c| c.set(c.get() + d.as_nanos() as u64));
}

/// The gRPC status of a trailers-only response, for metrics.
pub fn grpc_status(headers: &http::HeaderMap) -> Option<u32> {
    headers.get("grpc-status")?.to_str().ok()?.parse().ok()
}
