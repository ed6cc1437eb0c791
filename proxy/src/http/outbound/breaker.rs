//! The cluster's concurrency limit (Envoy's circuit breakers `max_requests`,
//! and `max_connections` for HTTP/1.1 servers): every request the filters let
//! through is counted; over the limit it gets 503 `overflow` at once (Remora
//! never queues), within it the request holds its place until its response
//! body ends, retries included.
//!
//! Below the filters, so a rate-limited or aborted request never takes a place
//! and a fault's delay never holds one.

use std::future::Future;

use futures::future::{self, Either, FutureExt};
use http::{Response, StatusCode};

use super::service::{Routed, Serve};
use crate::http::reply::local;
use crate::http::ResponseBody;
use crate::upstream::ClusterStats;

pub struct BreakerLayer;

impl<S> tower::Layer<S> for BreakerLayer {
    type Service = Breaker<S>;

    fn layer(&self, inner: S) -> Breaker<S> {
        Breaker { inner }
    }
}

pub struct Breaker<S> {
    inner: S,
}

impl<'a, S> Serve<Routed<'a>> for Breaker<S>
where
    S: for<'r> Serve<Routed<'r>, Response = Response<ResponseBody>>,
{
    type Response = Response<ResponseBody>;

    fn call(&self, routed: Routed<'a>) -> impl Future<Output = Response<ResponseBody>> + Send {
        let cluster = routed.cluster;
        let stats = &cluster.state.stats;
        ClusterStats::count(&stats.requests);
        let limit = cluster.concurrency_limit;
        let Some(active) = cluster.state.admit(limit) else {
            ClusterStats::count(&stats.overflow);
            crate::telemetry::flag(|f| f.overflow = true);
            tracing::debug!(cluster = %cluster.name, ?limit, "refused: too many concurrent requests");
            return Either::Left(future::ready(local(
                StatusCode::SERVICE_UNAVAILABLE,
                "overflow: too many concurrent requests",
            )));
        };
        Either::Right(self.inner.call(routed).map(move |mut response| {
            // A reply the proxy made itself ends now, and with it the request.
            if let http_body_util::Either::Left(body) = response.body_mut() {
                body.hold(active);
            }
            response
        }))
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use tower::Layer;

    use super::super::fake_tests::{cluster, n, orders, request, App};
    use super::*;
    use crate::snapshot::RoutePolicy;

    #[tokio::test]
    async fn over_the_limit_a_request_is_refused_at_once() {
        let app = App::answering(200, Duration::ZERO);
        let mut cluster = cluster(vec![]);
        cluster.concurrency_limit = Some(1);
        let policy = RoutePolicy::default();
        let breaker = BreakerLayer.layer(&app);
        // Admitted when called: it holds the one place until it is done.
        let first = breaker.call(Routed::new(request(), orders(), &policy, &cluster));
        let second = breaker
            .call(Routed::new(request(), orders(), &policy, &cluster))
            .await;
        assert_eq!(second.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(
            second.headers()["remora-error"],
            "overflow: too many concurrent requests"
        );
        assert_eq!(first.await.status(), StatusCode::OK);
        let third = breaker
            .call(Routed::new(request(), orders(), &policy, &cluster))
            .await;
        assert_eq!(third.status(), StatusCode::OK, "the place is free again");
        assert_eq!(n(&cluster.state.stats.requests), 3);
        assert_eq!(n(&cluster.state.stats.overflow), 1);
    }
}
