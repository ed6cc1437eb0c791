//! Load balancing: which endpoint of a cluster an attempt goes to.
//!
//! - [`p2c`]: power of two choices, over peak-EWMA latency (Remora's default) or
//!   requests in flight (Envoy's least request);
//! - [`round_robin`]: weighted round robin;
//! - [`ring`]: consistent hashing on a request key (header or cookie);
//! - [`subset`]: the endpoints a cluster keeps when it may hold fewer
//!   connections than it has endpoints.
//!
//! Every balancer passes over endpoints that outlier detection ejected.

mod ewma;
pub mod p2c;
pub mod ring;
pub mod round_robin;
pub mod subset;

pub use ewma::PeakEwma;
pub use ring::{hash_key, Ring};
pub use round_robin::RoundRobin;

use std::net::SocketAddr;

use tokio::time::Instant;

/// What a balancer knows of an endpoint. Upstream endpoints implement it; the
/// balancers know nothing else of them.
pub trait Candidate {
    fn weight(&self) -> u32;
    fn addr(&self) -> SocketAddr;
    /// Passed over while others remain (outlier detection ejected it).
    fn is_ejected(&self, now: Instant) -> bool;
    fn in_flight(&self) -> u32;
    /// The peak-EWMA latency estimate in nanoseconds; zero when the endpoint has
    /// not answered yet (see [`p2c`]).
    fn latency_estimate(&self) -> f64;
}

/// A cluster's balancer, built when config compiles.
#[derive(Debug)]
pub enum Balancer {
    PeakEwma,
    LeastRequest,
    RoundRobin(RoundRobin),
    RingHash(Ring),
}

impl Balancer {
    /// Picks one of `endpoints`; `hash` is the request's key for consistent
    /// hashing (a request without one lands at random), `next` the round robin's
    /// turn counter.
    pub fn pick<'a, E: Candidate>(
        &self,
        endpoints: &'a [E],
        hash: Option<u64>,
        next: &std::sync::atomic::AtomicU64,
    ) -> Option<&'a E> {
        match self {
            Balancer::PeakEwma => p2c::pick(endpoints, p2c::Cost::PeakEwma),
            Balancer::LeastRequest => p2c::pick(endpoints, p2c::Cost::Requests),
            Balancer::RoundRobin(rr) => rr.pick(endpoints, next),
            Balancer::RingHash(ring) => ring.pick(endpoints, hash.unwrap_or_else(rand::random)),
        }
    }
}

/// The first candidate outlier detection has not ejected; with every one
/// ejected, the first (the traffic must go somewhere). A `None` candidate (an
/// index past the endpoints) ends the walk without a pick.
fn first_available<'a, E: Candidate>(
    candidates: impl Iterator<Item = Option<&'a E>>,
) -> Option<&'a E> {
    let now = Instant::now();
    let mut first = None;
    for e in candidates {
        let e = e?;
        if !e.is_ejected(now) {
            return Some(e);
        }
        first.get_or_insert(e);
    }
    first
}
