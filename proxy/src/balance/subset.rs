//! A fixed-size subset of a cluster's endpoints, for a cluster that may hold
//! fewer connections than it has endpoints while each endpoint is reached over
//! one shared connection (HTTP/2): balancing over the subset alone keeps the
//! connections within the limit with nothing to count per request.
//!
//! Rendezvous hashing with a seed drawn once per process: each proxy keeps the
//! endpoints whose hash ranks highest for its own seed, so different callers
//! take different subsets and together spread over every endpoint
//! (deterministic subsetting, Finagle's aperture), and a change to the
//! endpoints replaces only what it must (an endpoint keeps its rank).

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::net::SocketAddr;
use std::sync::OnceLock;

use super::Candidate;

/// At most `size` of `endpoints` (all of them when there are no more), in
/// their order.
pub fn subset<E: Candidate>(endpoints: Vec<E>, size: usize) -> Vec<E> {
    static SEED: OnceLock<u64> = OnceLock::new();
    subset_with(endpoints, size, *SEED.get_or_init(rand::random))
}

fn subset_with<E: Candidate>(endpoints: Vec<E>, size: usize, seed: u64) -> Vec<E> {
    if endpoints.len() <= size {
        return endpoints;
    }
    let mut ranked: Vec<(u64, usize)> = endpoints
        .iter()
        .enumerate()
        .map(|(i, e)| (rank(seed, e.addr()), i))
        .collect();
    ranked.sort_unstable_by(|a, b| b.cmp(a));
    let mut keep = vec![false; endpoints.len()];
    for (_, i) in ranked.into_iter().take(size) {
        keep[i] = true;
    }
    endpoints
        .into_iter()
        .zip(keep)
        .filter_map(|(e, kept)| kept.then_some(e))
        .collect()
}

fn rank(seed: u64, addr: SocketAddr) -> u64 {
    let mut h = DefaultHasher::new();
    seed.hash(&mut h);
    addr.hash(&mut h);
    h.finish()
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::upstream::{Endpoint, Transport, WeightedEndpoint};

    fn endpoints(ports: impl IntoIterator<Item = u16>) -> Vec<WeightedEndpoint> {
        ports
            .into_iter()
            .map(|port| WeightedEndpoint {
                endpoint: Arc::new(Endpoint::new(
                    ([127, 0, 0, 1], port).into(),
                    Transport::MeshH2,
                )),
                weight: 1,
            })
            .collect()
    }

    fn ports(eps: &[WeightedEndpoint]) -> Vec<u16> {
        eps.iter().map(|e| e.endpoint.addr().port()).collect()
    }

    #[tokio::test]
    async fn keeps_at_most_the_size_and_the_same_ones_each_time() {
        let all = ports(&endpoints(1..=10));
        let two = ports(&subset_with(endpoints(1..=10), 2, 7));
        assert_eq!(two.len(), 2);
        assert!(two.iter().all(|p| all.contains(p)));
        assert_eq!(ports(&subset_with(endpoints(1..=10), 2, 7)), two);
        assert_eq!(ports(&subset_with(endpoints(1..=3), 5, 7)), [1, 2, 3]);
    }

    #[tokio::test]
    async fn an_added_endpoint_replaces_at_most_one() {
        let before = ports(&subset_with(endpoints(1..=10), 3, 11));
        let after = ports(&subset_with(endpoints(1..=11), 3, 11));
        let kept = after.iter().filter(|p| before.contains(p)).count();
        assert!(kept >= 2, "{before:?} -> {after:?}");
    }

    #[tokio::test]
    async fn callers_with_other_seeds_spread_over_every_endpoint() {
        let mut chosen = [0u32; 10];
        for seed in 0..200 {
            for port in ports(&subset_with(endpoints(1..=10), 2, seed)) {
                chosen[port as usize - 1] += 1;
            }
        }
        assert!(chosen.iter().all(|n| *n > 10), "{chosen:?}");
    }
}
