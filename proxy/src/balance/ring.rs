//! Consistent hashing (Envoy `RING_HASH`): each endpoint owns points on a ring in
//! proportion to its weight; a request's hash takes the first point at or after it.
//! Adding an endpoint moves only the keys that land on its new points.

use std::hash::{Hash, Hasher};

use super::Candidate;

/// Points per unit of weight. A fixed count keeps every endpoint's points where
/// they are when endpoints come and go, so only the keys that land on a new
/// endpoint's points move (Envoy's default `minimum_ring_size` of 1024 would
/// change every endpoint's share of points with the endpoint count).
pub const POINTS_PER_WEIGHT: usize = 256;
/// Upper bound on points, whatever the config asks (memory per cluster).
pub const MAX_RING_SIZE: usize = 8 * 1024 * 1024;

#[derive(Debug, Default)]
pub struct Ring {
    /// `(point, endpoint index)`, sorted by point.
    points: Vec<(u64, u32)>,
}

/// The hash of a request's key (a header value, a cookie).
pub fn hash_key(key: &[u8]) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    key.hash(&mut h);
    h.finish()
}

impl Ring {
    /// `POINTS_PER_WEIGHT` points per unit of weight, more when `minimum` points
    /// in all are asked for. Points are hashed from the endpoint's address, so
    /// each keeps its points whatever else changes.
    pub fn new<E: Candidate>(endpoints: &[E], minimum: Option<usize>) -> Self {
        Self::within(endpoints, minimum, MAX_RING_SIZE)
    }

    /// At most about `max_points` points (one more per endpoint at worst).
    fn within<E: Candidate>(endpoints: &[E], minimum: Option<usize>, max_points: usize) -> Self {
        let total: u64 = endpoints.iter().map(|e| u64::from(e.weight().max(1))).sum();
        if total == 0 {
            return Self::default();
        }
        let per_weight = match minimum {
            Some(min) => (min.min(max_points) as u64).div_ceil(total).max(1),
            None => POINTS_PER_WEIGHT as u64,
        };
        // A weight from xDS is any u32: at 256 points each, one huge weight
        // would be billions of points (found reading the code while adding the
        // fuzz targets). Past MAX_RING_SIZE, shares shrink in proportion.
        let wanted = u128::from(per_weight) * u128::from(total);
        let budget = max_points as u128;
        let mut points = Vec::new();
        for (i, e) in endpoints.iter().enumerate() {
            let weight = u128::from(e.weight().max(1));
            let share = if wanted <= budget {
                per_weight * weight as u64
            } else {
                (u128::from(per_weight) * weight * budget / wanted).max(1) as u64
            };
            let addr = e.addr().to_string();
            for n in 0..share {
                points.push((hash_key(format!("{addr}_{n}").as_bytes()), i as u32));
            }
        }
        points.sort_unstable();
        Self { points }
    }

    /// The endpoint for `hash`: the owner of the first point at or after it,
    /// passing over ejected endpoints while others remain.
    pub fn pick<'a, E: Candidate>(&self, endpoints: &'a [E], hash: u64) -> Option<&'a E> {
        if self.points.is_empty() {
            return None;
        }
        let start = self.points.partition_point(|(p, _)| *p < hash);
        let n = self.points.len();
        // Walk at most the whole ring once.
        super::first_available((0..n).map(|k| {
            let (_, i) = self.points[(start + k) % n];
            endpoints.get(i as usize)
        }))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::upstream::{Endpoint, Transport, WeightedEndpoint};

    fn endpoints(n: u16) -> Vec<WeightedEndpoint> {
        (1..=n)
            .map(|port| WeightedEndpoint {
                endpoint: Arc::new(Endpoint::new(
                    ([127, 0, 0, 1], port).into(),
                    Transport::MeshH2,
                )),
                weight: 1,
            })
            .collect()
    }

    #[tokio::test]
    async fn a_huge_weight_is_held_to_the_ring_size() {
        let mut e = endpoints(2);
        e[0].weight = u32::MAX;
        const MAX: usize = 10_000;
        let ring = Ring::within(&e, None, MAX);
        assert!(ring.points.len() <= MAX + e.len(), "{}", ring.points.len());
        // The light endpoint keeps at least one point.
        assert!(ring.points.iter().any(|(_, i)| *i == 1));
        let ring = Ring::within(&e, Some(usize::MAX), MAX);
        assert!(ring.points.len() <= MAX + e.len(), "{}", ring.points.len());
    }

    #[tokio::test]
    async fn keys_stay_put_and_few_move_when_an_endpoint_is_added() {
        let three = endpoints(3);
        let ring = Ring::new(&three, None);
        let four = endpoints(4);
        let bigger = Ring::new(&four, None);
        let mut moved = 0;
        let mut per_endpoint = [0; 3];
        for key in 0..1000 {
            let h = hash_key(format!("user-{key}").as_bytes());
            let a = ring.pick(&three, h).unwrap().endpoint.addr();
            assert_eq!(ring.pick(&three, h).unwrap().endpoint.addr(), a, "stable");
            per_endpoint[a.port() as usize - 1] += 1;
            if bigger.pick(&four, h).unwrap().endpoint.addr() != a {
                moved += 1;
            }
        }
        // About a quarter move, all to the new endpoint.
        assert!((150..=350).contains(&moved), "{moved} of 1000 moved");
        for key in 0..1000 {
            let h = hash_key(format!("user-{key}").as_bytes());
            let before = ring.pick(&three, h).unwrap().endpoint.addr();
            let after = bigger.pick(&four, h).unwrap().endpoint.addr();
            assert!(after == before || after.port() == 4);
        }
        assert!(per_endpoint.iter().all(|n| *n > 200), "{per_endpoint:?}");
    }
}
