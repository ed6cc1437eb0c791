//! Load balancing: which endpoint of a cluster an attempt goes to.
//!
//! - [`p2c`]: power of two choices, over peak-EWMA latency (Remora's default) or
//!   requests in flight (Envoy's least request);
//! - [`round_robin`]: weighted round robin;
//! - [`ring`]: consistent hashing on a request key (header or cookie).
//!
//! Every balancer passes over endpoints that outlier detection ejected.

mod ewma;
pub mod p2c;
pub mod ring;
pub mod round_robin;

pub use ewma::PeakEwma;
pub use ring::{hash_key, Ring};
pub use round_robin::RoundRobin;

use crate::upstream::{Cluster, WeightedEndpoint};

/// A cluster's balancer, built when config compiles.
#[derive(Debug)]
pub enum Balancer {
    PeakEwma,
    LeastRequest,
    RoundRobin(RoundRobin),
    RingHash(Ring),
}

/// Picks an endpoint of `cluster`; `hash` is the request's key for consistent
/// hashing (a request without one lands at random).
pub fn pick(cluster: &Cluster, hash: Option<u64>) -> Option<&WeightedEndpoint> {
    let endpoints = &cluster.endpoints;
    match &cluster.balancer {
        Balancer::PeakEwma => p2c::pick(endpoints, p2c::Cost::PeakEwma),
        Balancer::LeastRequest => p2c::pick(endpoints, p2c::Cost::Requests),
        Balancer::RoundRobin(rr) => rr.pick(endpoints, &cluster.state.round_robin),
        Balancer::RingHash(ring) => ring.pick(endpoints, hash.unwrap_or_else(rand::random)),
    }
}

/// The first candidate outlier detection has not ejected; with every one
/// ejected, the first (the traffic must go somewhere). A `None` candidate (an
/// index past the endpoints) ends the walk without a pick.
fn first_available<'a>(
    candidates: impl Iterator<Item = Option<&'a WeightedEndpoint>>,
) -> Option<&'a WeightedEndpoint> {
    let now = tokio::time::Instant::now();
    let mut first = None;
    for e in candidates {
        let e = e?;
        if !e.endpoint.outlier().is_ejected(now) {
            return Some(e);
        }
        first.get_or_insert(e);
    }
    first
}
