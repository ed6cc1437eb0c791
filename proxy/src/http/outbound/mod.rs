//! Outbound: the app's request, down a stack of small layers, one concern each.
//!
//! ```text
//! Outbound (Handler)  request limits (431/414/413), the snapshot, CONNECT,
//!                     the hop's metrics, span and access log
//!   route             virtual host by authority, first matching route, weighted split
//!   filters           rate limit, fault (delay, abort), request/response headers
//!   breaker           the cluster's circuit breakers: a place among its requests,
//!                     or its line, or 503 overflow naming the limit
//!   mirror            a copy to each mirror cluster once the answer is in
//!   hash              the request's key for consistent hashing (and its cookie)
//!   timeout           the request deadline (route timeout or grpc-timeout); stream idle
//!   retry             attempts: per-try timeouts, budget, backoff, body replay
//!   balance           an endpoint per attempt; its outcome for outlier detection
//!   endpoint          the attempt shaped for the endpoint's transport, and sent
//! ```
//!
//! Above `retry` a layer sees a request once ([`service::Routed`]); below it,
//! once per attempt ([`service::Attempt`]). The order is the behaviour: the
//! filters come before the concurrency limit, so a refused or aborted request
//! never takes a place and a fault's delay holds none; only an admitted request
//! is mirrored or gets a hash cookie; the deadline covers every attempt and
//! backoff; each attempt picks its endpoint again. See [`service`] for why the
//! layers implement [`service::Serve`] rather than `tower::Service`.

mod balance;
mod breaker;
mod deadline;
mod endpoint;
mod filters;
mod hash;
mod mirror;
mod retry;
mod route;
mod service;
mod timeout;
mod upgrade;

#[cfg(test)]
mod fake_tests;
#[cfg(test)]
mod filters_tests;
#[cfg(test)]
mod retry_tests;
#[cfg(test)]
mod route_tests;
#[cfg(test)]
mod timeout_tests;

use std::sync::Arc;

use arc_swap::ArcSwap;
use http::{Method, Request, Response, StatusCode};
use hyper::body::Incoming;
use tokio::time::Instant;
use tower::ServiceBuilder;

use super::reply::local;
use super::server::Handler;
use super::ResponseBody;
use crate::snapshot::Snapshot;
use crate::telemetry::{HopStats, Metrics};
use crate::upstream::RequestBody;

pub(crate) use hash::hash_key;
use service::Serve;

/// The layers, outermost first.
type Stack = route::Route<
    filters::Filters<
        upgrade::Upgrade<
            breaker::Breaker<
                mirror::Mirror<
                    hash::Hash<timeout::Timeout<retry::Retry<balance::Balance<endpoint::Client>>>>,
                >,
            >,
        >,
    >,
>;

fn stack() -> Stack {
    ServiceBuilder::new()
        .layer(route::RouteLayer)
        .layer(filters::FiltersLayer)
        .layer(upgrade::UpgradeLayer)
        .layer(breaker::BreakerLayer)
        .layer(mirror::MirrorLayer)
        .layer(hash::HashLayer)
        .layer(timeout::TimeoutLayer)
        .layer(retry::RetryLayer)
        .layer(balance::BalanceLayer)
        .service(endpoint::Client)
}

pub struct Outbound {
    snapshot: Arc<ArcSwap<Snapshot>>,
    metrics: Arc<Metrics>,
    limits: crate::limits::Limits,
    stack: Stack,
}

impl Outbound {
    pub fn new(snapshot: Arc<ArcSwap<Snapshot>>, metrics: Arc<Metrics>) -> Self {
        Self {
            snapshot,
            metrics,
            limits: crate::limits::Limits::default(),
            stack: stack(),
        }
    }

    /// The request limits enforced before routing (see [`super::limits`]): the
    /// app's oversized request is answered here, never sent to a peer.
    pub fn with_limits(mut self, limits: crate::limits::Limits) -> Self {
        self.limits = limits;
        self
    }

    /// Routes a request and records its hop: the answer, the time to it, and the
    /// time spent in the proxy itself.
    async fn handle_request(&self, mut req: Request<Incoming>) -> Response<ResponseBody> {
        let started = Instant::now();
        let arrival = crate::telemetry::arrive(&self.metrics, &mut req);
        let ((mut response, hop), learned) = crate::telemetry::observe(self.route(req)).await;
        let elapsed = started.elapsed();
        if let Some(hop) = &hop {
            let grpc = super::grpc_status(response.headers());
            hop.responses.count(response.status().as_u16(), grpc);
            if denied_by_peer(&response) {
                hop.denied
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
            hop.duration.observe(elapsed);
            hop.overhead.observe(learned.overhead(elapsed));
        }
        let (route, backend) = hop
            .as_ref()
            .map_or(("", ""), |h| (h.label("route"), h.label("backend")));
        let hop = crate::telemetry::Hop {
            direction: "outbound",
            route,
            backend,
            peer_identity: "",
        };
        arrival.finish(&self.metrics, &mut response, hop, elapsed, &learned);
        response
    }

    /// Everything before the stack: the limits, the snapshot (loaded once and
    /// held until the answer), and `CONNECT`, which becomes a tunnel. A
    /// `remora-target-port` the app sent is removed: only this proxy names the
    /// port a peer is asked for (the endpoint layer, from the cluster).
    async fn route(
        &self,
        mut req: Request<Incoming>,
    ) -> (Response<ResponseBody>, Option<Arc<HopStats>>) {
        if let Some(refused) = super::limits::refuse(&req, &self.limits) {
            return (refused, None);
        }
        req.headers_mut().remove(super::TARGET_PORT);
        let snapshot = self.snapshot.load_full();
        if req.method() == Method::CONNECT {
            let namespace = &self.metrics.namespace;
            return (
                super::connect::tunnel(req, &snapshot, &self.metrics, namespace),
                None,
            );
        }
        let Some(table) = &snapshot.outbound else {
            return (
                local(StatusCode::SERVICE_UNAVAILABLE, "no configuration yet"),
                None,
            );
        };
        self.stack
            .call((table, req.map(RequestBody::Streaming)))
            .await
    }
}

/// Whether the answer is the destination proxy's authorization denial (its
/// 403 carries `remora-error`; an app's own 403 does not), which the hop counts
/// as a failure.
fn denied_by_peer(response: &Response<ResponseBody>) -> bool {
    response.status() == StatusCode::FORBIDDEN
        && response.headers().contains_key(super::ERROR_HEADER)
}

impl Handler for Outbound {
    async fn handle(self: Arc<Self>, req: Request<Incoming>) -> Response<ResponseBody> {
        self.handle_request(req).await
    }
}
