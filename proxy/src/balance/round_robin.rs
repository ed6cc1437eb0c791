//! Weighted round robin (Envoy `ROUND_ROBIN`): a shared counter walks the
//! cumulative weights, so an endpoint of weight 2 gets two turns in a cycle.

use std::sync::atomic::{AtomicU64, Ordering};

use super::Candidate;

#[derive(Debug, Default)]
pub struct RoundRobin {
    /// Cumulative weights, ascending.
    cumulative: Vec<u64>,
}

impl RoundRobin {
    pub fn new<E: Candidate>(endpoints: &[E]) -> Self {
        let mut total = 0;
        let cumulative = endpoints
            .iter()
            .map(|e| {
                total += u64::from(e.weight().max(1));
                total
            })
            .collect();
        Self { cumulative }
    }

    /// The next endpoint in turn, passing over ejected ones while others remain.
    pub fn pick<'a, E: Candidate>(&self, endpoints: &'a [E], next: &AtomicU64) -> Option<&'a E> {
        let total = *self.cumulative.last()?;
        super::first_available((0..endpoints.len()).map(|_| {
            let turn = next.fetch_add(1, Ordering::Relaxed) % total;
            endpoints.get(self.cumulative.partition_point(|c| *c <= turn))
        }))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::upstream::{Endpoint, Transport, WeightedEndpoint};

    #[tokio::test]
    async fn turns_follow_the_weights() {
        let eps: Vec<_> = [(1, 2), (2, 1)]
            .into_iter()
            .map(|(port, weight)| WeightedEndpoint {
                endpoint: Arc::new(Endpoint::new(
                    ([127, 0, 0, 1], port).into(),
                    Transport::MeshH2,
                )),
                weight,
            })
            .collect();
        let rr = RoundRobin::new(&eps);
        let next = AtomicU64::new(0);
        let ports: Vec<u16> = (0..6)
            .map(|_| rr.pick(&eps, &next).unwrap().endpoint.addr().port())
            .collect();
        assert_eq!(ports, [1, 1, 2, 1, 1, 2]);
    }
}
