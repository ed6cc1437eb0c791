//! Power of two choices: sample two endpoints, take the one with the lower cost,
//! over its weight. Remora's default cost is the peak-EWMA latency estimate times
//! the requests in flight; Envoy's least-request cost is the requests in flight
//! alone. Endpoints ejected by outlier detection are passed over while others
//! remain.
//!
//! An endpoint with no latency sample yet (new, or back from ejection) costs
//! nothing while idle and more than any measured endpoint while its first
//! request is out (Finagle's rule): it is tried at once, one request at a time,
//! until it has answered once. A "fresh estimate" that merely looked fast would
//! lose to endpoints faster than it on a fast network and never get its probe.

use tokio::time::Instant;

use super::Candidate;

/// What "cheaper" means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cost {
    /// Latency estimate x (requests in flight + 1).
    PeakEwma,
    /// Requests in flight + 1.
    Requests,
}

/// Picks an endpoint, or `None` when there is none.
pub fn pick<E: Candidate>(endpoints: &[E], by: Cost) -> Option<&E> {
    let cheaper = |a, b| cheaper(a, b, by);
    match endpoints.len() {
        0 => None,
        // Ejecting the only endpoint would help nobody.
        1 => endpoints.first(),
        n => {
            let a = rand::random_range(0..n);
            let mut b = rand::random_range(0..n - 1);
            if b >= a {
                b += 1;
            }
            let (ea, eb) = (&endpoints[a], &endpoints[b]);
            let now = Instant::now();
            let available = |e: &E| !e.is_ejected(now);
            Some(match (available(ea), available(eb)) {
                (true, true) => cheaper(ea, eb),
                (true, false) => ea,
                (false, true) => eb,
                // Both ejected: any other that is not, else the cheaper of the two
                // (when everything is ejected, ejection is ignored).
                (false, false) => (0..n)
                    .map(|i| &endpoints[(a + i) % n])
                    .find(|e| available(e))
                    .unwrap_or_else(|| cheaper(ea, eb)),
            })
        }
    }
}

fn cheaper<'a, E: Candidate>(a: &'a E, b: &'a E, by: Cost) -> &'a E {
    if cost(a, by) <= cost(b, by) {
        a
    } else {
        b
    }
}

/// The cost of an endpoint with no latency sample and a request out.
const UNTRIED_BUSY: f64 = f64::MAX;

fn cost<E: Candidate>(e: &E, by: Cost) -> f64 {
    let in_flight = e.in_flight();
    let requests = f64::from(in_flight) + 1.0;
    let load = match by {
        Cost::PeakEwma => match e.latency_estimate() {
            estimate if estimate > 0.0 => estimate * requests,
            _ if in_flight == 0 => 0.0,
            _ => UNTRIED_BUSY,
        },
        Cost::Requests => requests,
    };
    load / f64::from(e.weight().max(1))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::upstream::{Endpoint, Transport, WeightedEndpoint};
    use std::sync::Arc;
    use std::time::Duration;

    fn endpoint(port: u16) -> WeightedEndpoint {
        WeightedEndpoint {
            endpoint: Arc::new(Endpoint::new(
                ([127, 0, 0, 1], port).into(),
                Transport::MeshH2,
            )),
            weight: 1,
        }
    }

    #[tokio::test(start_paused = true)]
    async fn prefers_the_faster_endpoint() {
        let eps = vec![endpoint(1), endpoint(2)];
        eps[0].endpoint.ewma().observe(Duration::from_millis(50));
        eps[1].endpoint.ewma().observe(Duration::from_millis(5));
        for _ in 0..100 {
            let chosen = pick(&eps, Cost::PeakEwma).unwrap();
            assert_eq!(chosen.endpoint.addr().port(), 2);
        }
    }

    #[tokio::test(start_paused = true)]
    async fn ejected_endpoints_are_passed_over() {
        use crate::upstream::OutlierConfig;
        let eps = vec![endpoint(1), endpoint(2), endpoint(3)];
        eps[1]
            .endpoint
            .outlier()
            .eject(&OutlierConfig::DEFAULT, tokio::time::Instant::now());
        for _ in 0..200 {
            assert_ne!(
                pick(&eps, Cost::PeakEwma).unwrap().endpoint.addr().port(),
                2
            );
        }
    }

    #[tokio::test(start_paused = true)]
    async fn an_untried_endpoint_gets_one_request_at_a_time_until_it_answers() {
        let eps = vec![endpoint(1), endpoint(2)];
        // The known one is fast; the untried one still gets the next request.
        eps[0].endpoint.ewma().observe(Duration::from_micros(100));
        assert_eq!(
            pick(&eps, Cost::PeakEwma).unwrap().endpoint.addr().port(),
            2
        );
        // While that request is out, nothing more goes to it.
        let first = eps[1].endpoint.start();
        let _busy = eps[0].endpoint.start();
        for _ in 0..50 {
            assert_eq!(
                pick(&eps, Cost::PeakEwma).unwrap().endpoint.addr().port(),
                1
            );
        }
        // Once it has answered, it competes on its latency.
        eps[1].endpoint.ewma().observe(Duration::from_micros(50));
        drop(first);
        assert_eq!(
            pick(&eps, Cost::PeakEwma).unwrap().endpoint.addr().port(),
            2
        );
    }

    #[test]
    fn empty_and_single() {
        assert!(pick::<WeightedEndpoint>(&[], Cost::PeakEwma).is_none());
        let one = vec![endpoint(9)];
        assert_eq!(
            pick(&one, Cost::Requests).unwrap().endpoint.addr().port(),
            9
        );
    }
}
