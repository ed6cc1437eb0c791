//! An endpoint for each attempt: the cluster's balancer picks one (P2C over
//! peak-EWMA latency or requests in flight, round robin, or the ring by the
//! request's hash key; ejected endpoints passed over), and learns how the
//! attempt went: a 5xx, a failed connect, a reset or a timeout (the attempt
//! dropped at its deadline) counts towards ejecting the endpoint (outlier
//! detection), anything else clears its record. A timed-out attempt also
//! counts its time as the endpoint's latency: without that a hung endpoint,
//! whose attempts never answer, would keep its old estimate and its traffic.
//!
//! Not here: the balancers (`crate::balance`) and ejection itself
//! (`Cluster::record_outcome`).

use std::future::Future;

use futures::future::{self, Either, FutureExt};
use http::StatusCode;
use tokio::time::Instant;

use super::endpoint::Sent;
use super::retry::Attempted;
use super::service::{Attempt, Picked, Serve};
use crate::http::reply::local;
use crate::upstream::{Cluster, ClusterStats, Endpoint, UpstreamError};

pub struct BalanceLayer;

impl<S> tower::Layer<S> for BalanceLayer {
    type Service = Balance<S>;

    fn layer(&self, inner: S) -> Balance<S> {
        Balance { inner }
    }
}

pub struct Balance<S> {
    inner: S,
}

impl<'a, S> Serve<Attempt<'a>> for Balance<S>
where
    S: for<'r> Serve<Picked<'r>, Response = Sent>,
{
    type Response = Attempted;

    fn call(&self, attempt: Attempt<'a>) -> impl Future<Output = Attempted> + Send {
        let cluster = attempt.cluster;
        let Some(chosen) = cluster.pick(attempt.hash) else {
            return Either::Left(future::ready(Ok(local(
                StatusCode::SERVICE_UNAVAILABLE,
                "no endpoints",
            ))));
        };
        let endpoint = &*chosen.endpoint;
        // Only an attempt with a deadline can time out: only then the clock.
        let watch = Unanswered {
            cluster,
            endpoint,
            deadline: attempt.deadline,
            started: attempt.deadline.map(|_| Instant::now()),
        };
        let picked = Picked { attempt, endpoint };
        Either::Right(self.inner.call(picked).map(move |sent| {
            watch.answered();
            match sent {
                // Nothing reached the endpoint: nothing to learn about it.
                Sent::Refused(response) => Ok(response),
                Sent::Exchanged(result) => {
                    if result
                        .as_ref()
                        .is_err_and(UpstreamError::is_connect_timeout)
                    {
                        ClusterStats::count(&cluster.state.stats.timeouts_connect);
                    }
                    let success = result.as_ref().is_ok_and(|r| !r.status().is_server_error());
                    if cluster.record_outcome(endpoint, success) {
                        crate::telemetry::flag(|f| f.ejected = true);
                    }
                    result
                }
            }
        }))
    }
}

/// An attempt on its way: dropped unanswered at or past its deadline, it timed
/// out, which counts as a failure of its endpoint and as a latency of the time
/// it waited. Dropped earlier (the caller went away) it says nothing.
struct Unanswered<'a> {
    cluster: &'a Cluster,
    endpoint: &'a Endpoint,
    deadline: Option<Instant>,
    started: Option<Instant>,
}

impl Unanswered<'_> {
    /// The attempt came back: nothing to do on drop (it holds only borrows).
    fn answered(self) {
        std::mem::forget(self);
    }
}

impl Drop for Unanswered<'_> {
    fn drop(&mut self) {
        let (Some(deadline), Some(started)) = (self.deadline, self.started) else {
            return;
        };
        if Instant::now() < deadline {
            return;
        }
        self.endpoint.ewma().observe(started.elapsed());
        if self.cluster.record_outcome(self.endpoint, false) {
            crate::telemetry::flag(|f| f.ejected = true);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use tower::Layer;

    use super::super::fake_tests::{answer, cluster, n, orders, request, Endpoints};
    use super::*;
    use crate::upstream::{Endpoint, OutlierConfig, RequestBody, Transport, WeightedEndpoint};

    fn attempt<'a>(
        parts: &'a http::request::Parts,
        authority: &'a http::uri::Authority,
        cluster: &'a crate::upstream::Cluster,
    ) -> Attempt<'a> {
        Attempt {
            parts,
            body: RequestBody::Empty,
            authority,
            cluster,
            hash: None,
            grpc: false,
            deadline: None,
        }
    }

    /// Below the balancer: an endpoint that never answers.
    struct Hanging;

    impl<'r> Serve<Picked<'r>> for &Hanging {
        type Response = Sent;

        async fn call(&self, _: Picked<'r>) -> Sent {
            std::future::pending().await
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_timed_out_attempt_counts_as_a_failure_and_its_wait_as_latency() {
        let endpoint = Arc::new(Endpoint::new(([127, 0, 0, 1], 9).into(), Transport::MeshH2));
        let mut cluster = cluster(vec![WeightedEndpoint {
            endpoint: endpoint.clone(),
            weight: 1,
        }]);
        cluster.outlier = Some(OutlierConfig {
            consecutive_failures: 2,
            ..OutlierConfig::DEFAULT
        });
        let (parts, authority) = (request().into_parts().0, orders());
        let balance = BalanceLayer.layer(&Hanging);
        let with_deadline = |at| Attempt {
            deadline: Some(at),
            ..attempt(&parts, &authority, &cluster)
        };

        // Given up before its deadline (the caller left): nothing learned.
        let at = tokio::time::Instant::now() + std::time::Duration::from_secs(5);
        let early = tokio::time::Instant::now() + std::time::Duration::from_secs(1);
        assert!(
            tokio::time::timeout_at(early, balance.call(with_deadline(at)))
                .await
                .is_err()
        );
        assert!(endpoint.ewma().is_unknown());

        // Dropped at its deadline: a failure, and a 1 s answer.
        let at = tokio::time::Instant::now() + std::time::Duration::from_secs(1);
        assert!(tokio::time::timeout_at(at, balance.call(with_deadline(at)))
            .await
            .is_err());
        assert!(
            (endpoint.ewma().get() - 1e9).abs() < 1e6,
            "{}",
            endpoint.ewma().get()
        );
        assert_eq!(n(&cluster.state.stats.ejections), 0);
        let at = tokio::time::Instant::now() + std::time::Duration::from_secs(1);
        let _ = tokio::time::timeout_at(at, balance.call(with_deadline(at))).await;
        assert_eq!(
            n(&cluster.state.stats.ejections),
            1,
            "the second in a row ejects"
        );
    }

    #[tokio::test]
    async fn a_cluster_without_endpoints_answers_503() {
        let (parts, authority, cluster) = (request().into_parts().0, orders(), cluster(vec![]));
        let endpoints = Endpoints(|| Sent::Exchanged(Ok(answer(200))));
        let balance = BalanceLayer.layer(&endpoints);
        let response = balance
            .call(attempt(&parts, &authority, &cluster))
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(response.headers()["remora-error"], "no endpoints");
    }

    #[tokio::test]
    async fn server_errors_eject_an_endpoint_and_the_proxys_own_answers_do_not() {
        let endpoint = Arc::new(Endpoint::new(([127, 0, 0, 1], 9).into(), Transport::MeshH2));
        let mut cluster = cluster(vec![WeightedEndpoint {
            endpoint: endpoint.clone(),
            weight: 1,
        }]);
        cluster.outlier = Some(OutlierConfig {
            consecutive_failures: 2,
            ..OutlierConfig::DEFAULT
        });
        let (parts, authority) = (request().into_parts().0, orders());
        let refused = Endpoints(|| Sent::Refused(answer(400)));
        let balance = BalanceLayer.layer(&refused);
        for _ in 0..3 {
            let _ = balance.call(attempt(&parts, &authority, &cluster)).await;
        }
        assert_eq!(n(&cluster.state.stats.ejections), 0);

        let failing = Endpoints(|| Sent::Exchanged(Ok(answer(503))));
        let balance = BalanceLayer.layer(&failing);
        for _ in 0..2 {
            let _ = balance.call(attempt(&parts, &authority, &cluster)).await;
        }
        assert_eq!(n(&cluster.state.stats.ejections), 1);
        assert!(endpoint.outlier().is_ejected(tokio::time::Instant::now()));
    }
}
