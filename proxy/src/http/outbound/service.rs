//! What every layer of the outbound stack has in common: the [`Serve`] trait,
//! and the two shapes a request takes on the way down ([`Routed`] above the
//! retry layer, [`Attempt`] and then [`Picked`] below it).
//!
//! `Serve` is tower's `Service` with two changes the hot path needs:
//!
//! - `call` takes `&self` and returns `impl Future`, which may borrow the layer
//!   and the request. A request carries plain references into the snapshot it
//!   loaded (its route's policy, its cluster) rather than `Arc` clones, and the
//!   retry layer calls the layer below once per attempt without cloning it.
//!   tower's `Service::Future` is a named type: without boxing, every layer
//!   would need a hand-written future; here a layer is an `async fn` or a
//!   combinator over the one below, and nothing is allocated per request.
//! - No `poll_ready`: every layer is always ready. The one wait for capacity
//!   is the breaker's line, which a cluster asks for (`max_pending_requests`)
//!   and which is bounded; without it a full cluster answers 503 at once.
//!
//! The layers are still `tower::Layer`s, stacked with `tower::ServiceBuilder`.

use std::future::Future;

use http::request::Parts;
use http::uri::Authority;
use http::Request;
use tokio::time::Instant;

use super::deadline::Deadline;
use crate::snapshot::RoutePolicy;
use crate::upstream::{Cluster, Endpoint, RequestBody};

/// One layer of the outbound request path (see the module doc).
pub trait Serve<Req>: Send + Sync {
    type Response;

    fn call(&self, req: Req) -> impl Future<Output = Self::Response> + Send;
}

/// A request the route layer has routed: the request itself, and what the
/// layers read on the way down. Some fields are filled in by a layer below
/// routing; each says which.
pub struct Routed<'a> {
    pub req: Request<RequestBody>,
    /// The authority the request was routed by: what the endpoint is told,
    /// and what a mirrored copy is addressed to.
    pub authority: Authority,
    pub policy: &'a RoutePolicy,
    pub cluster: &'a Cluster,
    /// The request's key for consistent hashing (the hash layer).
    pub hash: Option<u64>,
    /// Whether it is a gRPC call, as the headers say once the filters have
    /// changed them (the timeout layer).
    pub grpc: bool,
    /// The request's deadline (the timeout layer).
    pub deadline: Option<Deadline>,
}

impl<'a> Routed<'a> {
    pub fn new(
        req: Request<RequestBody>,
        authority: Authority,
        policy: &'a RoutePolicy,
        cluster: &'a Cluster,
    ) -> Self {
        Self {
            req,
            authority,
            policy,
            cluster,
            hash: None,
            grpc: false,
            deadline: None,
        }
    }
}

/// One attempt of a request, as the retry layer hands it to the balancer: the
/// request's head (each attempt sends a copy) and this attempt's body.
pub struct Attempt<'a> {
    pub parts: &'a Parts,
    pub body: RequestBody,
    pub authority: &'a Authority,
    pub cluster: &'a Cluster,
    pub hash: Option<u64>,
    pub grpc: bool,
    /// When this attempt times out: its per-try timeout or the request's
    /// deadline, whichever comes first. A gRPC attempt tells the next hop.
    pub deadline: Option<Instant>,
}

/// An attempt and the endpoint the balancer picked for it.
pub struct Picked<'a> {
    pub attempt: Attempt<'a>,
    pub endpoint: &'a Endpoint,
}
