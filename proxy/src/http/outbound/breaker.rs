//! The cluster's circuit breakers for requests (`upstream::breaker`): every
//! request the filters let through takes a place among the cluster's requests
//! in progress (`max_requests`, and for HTTP/1.1 servers `max_connections`)
//! and holds it until its response body ends, retries included. With no
//! place free it waits in line when the cluster allows a line
//! (`max_pending_requests`), until a place frees or its deadline passes (504);
//! otherwise, or with the line full, it gets 503 at once, with `remora-error`
//! naming the limit, its value and the Service and `remora-overloaded` the
//! limit alone, and the cluster counts it by limit.
//!
//! Below the filters, so a rate-limited or aborted request never takes a place
//! and a fault's delay never holds one.

use std::future::Future;

use futures::future::{self, Either, FutureExt};
use http::{HeaderName, HeaderValue, Response, StatusCode};

use tokio::time::{timeout_at, Instant};

use super::deadline::Deadline;
use super::service::{Routed, Serve};
use crate::http::reply::explained;
use crate::http::ResponseBody;
use crate::upstream::{ActiveRequest, Cluster, ClusterStats, Limit};

/// Names the limit that refused a request (`max_requests`, `max_connections`,
/// `max_pending_requests`), for clients that act on it.
pub const OVERLOADED_HEADER: HeaderName = HeaderName::from_static("remora-overloaded");

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

    fn call(&self, mut routed: Routed<'a>) -> impl Future<Output = Response<ResponseBody>> + Send {
        let cluster = routed.cluster;
        let stats = &cluster.state.stats;
        ClusterStats::count(&stats.requests);
        if let Some(active) = cluster.state.admit(cluster.concurrency) {
            return Either::Left(self.inner.call(routed).map(move |r| held(r, active)));
        }
        let (Some(full), Some(line)) = (cluster.concurrency, cluster.limits.max_pending_requests)
        else {
            // No line to wait in: refused by the limit that is full.
            let by = cluster.concurrency.map_or(Limit::MaxRequests, |c| c.by);
            return Either::Right(Either::Left(future::ready(overflow(cluster, by))));
        };
        // The slow path: in line, for no longer than the request's deadline,
        // which the timeout layer below then keeps (waiting counts against it).
        let grpc = crate::grpc::is_grpc(routed.req.headers());
        let deadline = Deadline::of(routed.policy, routed.req.headers(), grpc, Instant::now());
        routed.deadline = deadline;
        Either::Right(Either::Right(async move {
            let waited = cluster.state.wait_for_place(full.limit, line);
            let placed = match deadline {
                None => waited.await,
                Some(d) => match timeout_at(d.at, waited).await {
                    Ok(placed) => placed,
                    Err(_) => return d.expired(stats, grpc),
                },
            };
            match placed {
                Ok(active) => held(self.inner.call(routed).await, active),
                Err(limit) => overflow(cluster, limit),
            }
        }))
    }
}

/// The request keeps its place until its body ends; a reply the proxy made
/// itself ends now, and with it the request.
fn held(mut response: Response<ResponseBody>, active: ActiveRequest) -> Response<ResponseBody> {
    if let http_body_util::Either::Left(body) = response.body_mut() {
        body.hold(active);
    }
    response
}

/// 503 naming the limit, its value and the Service, counted by limit.
fn overflow(cluster: &Cluster, limit: Limit) -> Response<ResponseBody> {
    cluster.state.stats.overflowed(limit);
    crate::telemetry::flag(|f| f.overflow = true);
    let reason = cluster.overflow_reason(limit);
    tracing::debug!(cluster = %cluster.name, limit = limit.label(), "refused: {reason}");
    let mut response = explained(StatusCode::SERVICE_UNAVAILABLE, reason, "overflow");
    response
        .headers_mut()
        .insert(OVERLOADED_HEADER, HeaderValue::from_static(limit.label()));
    response
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use tower::Layer;

    use super::super::fake_tests::{cluster, n, orders, request, App};
    use super::*;
    use crate::snapshot::RoutePolicy;
    use crate::upstream::{Concurrency, Limits};

    fn limited(max_requests: u32, max_pending_requests: Option<u32>) -> Cluster {
        let mut c = cluster(vec![]);
        c.limits = Limits {
            max_requests: Some(max_requests),
            max_pending_requests,
            ..Limits::default()
        };
        c.concurrency = Some(Concurrency {
            limit: max_requests,
            by: Limit::MaxRequests,
        });
        c
    }

    #[tokio::test]
    async fn over_the_limit_a_request_is_refused_at_once() {
        let app = App::answering(200, Duration::ZERO);
        let cluster = limited(1, None);
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
            "overflow: orders.default: maxRequests (1) reached"
        );
        assert_eq!(second.headers()["remora-overloaded"], "max_requests");
        assert_eq!(first.await.status(), StatusCode::OK);
        let third = breaker
            .call(Routed::new(request(), orders(), &policy, &cluster))
            .await;
        assert_eq!(third.status(), StatusCode::OK, "the place is free again");
        let stats = &cluster.state.stats;
        assert_eq!(n(&stats.requests), 3);
        assert_eq!(n(&stats.overflow), 1);
        assert_eq!(n(&stats.overflow_max_requests), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn a_line_waits_for_places_and_the_rest_is_refused_by_the_line() {
        let app = App::answering(200, Duration::from_secs(1));
        let cluster = limited(2, Some(3));
        let policy = RoutePolicy::default();
        let breaker = BreakerLayer.layer(&app);
        let started = Instant::now();
        let calls = (0..8).map(|_| {
            let call = breaker.call(Routed::new(request(), orders(), &policy, &cluster));
            async move {
                let response = call.await;
                (response.status(), started.elapsed())
            }
        });
        let answers = futures::future::join_all(calls).await;
        let ok: Vec<Duration> = answers
            .iter()
            .filter(|(s, _)| *s == StatusCode::OK)
            .map(|(_, at)| *at)
            .collect();
        let refused: Vec<Duration> = answers
            .iter()
            .filter(|(s, _)| *s == StatusCode::SERVICE_UNAVAILABLE)
            .map(|(_, at)| *at)
            .collect();
        // Two in progress, three in line (served in the next two rounds), three refused.
        assert_eq!((ok.len(), refused.len()), (5, 3), "{answers:?}");
        assert!(refused.iter().all(|at| at.is_zero()), "refused at once");
        assert_eq!(ok.iter().max(), Some(&Duration::from_secs(3)));
        let stats = &cluster.state.stats;
        assert_eq!(n(&stats.overflow_max_pending_requests), 3);
        assert_eq!(n(&stats.overflow), 3);
        assert_eq!(cluster.state.breaker.waiting(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn a_request_in_line_gives_up_at_its_deadline() {
        let app = App::answering(200, Duration::from_secs(10));
        let cluster = limited(1, Some(5));
        let policy = RoutePolicy {
            timeout: Some(Duration::from_secs(2)),
            ..RoutePolicy::default()
        };
        let breaker = BreakerLayer.layer(&app);
        let first = breaker.call(Routed::new(request(), orders(), &policy, &cluster));
        let second = breaker.call(Routed::new(request(), orders(), &policy, &cluster));
        let (first, second) = futures::future::join(first, second).await;
        // The stand-in below has no timeout layer: the first takes its 10 s.
        assert_eq!(first.status(), StatusCode::OK);
        assert_eq!(second.status(), StatusCode::GATEWAY_TIMEOUT);
        assert_eq!(second.headers()["remora-error"], "request timeout");
        assert_eq!(n(&cluster.state.stats.timeouts_request), 1);
        // The place the waiter never got is still there for the next.
        assert_eq!(cluster.state.breaker.waiting(), 0);
    }
}
