//! The request's deadline: the route's timeout, or a gRPC client's
//! `grpc-timeout` when shorter (capped as the route says). It covers every
//! attempt and backoff, until the response headers; when it passes the request
//! gets 504 (gRPC: DEADLINE_EXCEEDED) with `remora-error` naming the timeout.
//! After the headers, the route's stream idle timeout watches the body.
//!
//! The deadline travels down with the request: the retry layer starts no
//! attempt or backoff past it, and each gRPC attempt tells the next hop what
//! is left of it.

use std::future::Future;

use futures::future::{Either, FutureExt};
use http::Response;
use tokio::time::{timeout_at, Instant};

use super::deadline::Deadline;
use super::service::{Routed, Serve};
use crate::http::ResponseBody;

pub struct TimeoutLayer;

impl<S> tower::Layer<S> for TimeoutLayer {
    type Service = Timeout<S>;

    fn layer(&self, inner: S) -> Timeout<S> {
        Timeout { inner }
    }
}

pub struct Timeout<S> {
    inner: S,
}

impl<'a, S> Serve<Routed<'a>> for Timeout<S>
where
    S: for<'r> Serve<Routed<'r>, Response = Response<ResponseBody>>,
{
    type Response = Response<ResponseBody>;

    fn call(&self, mut routed: Routed<'a>) -> impl Future<Output = Response<ResponseBody>> + Send {
        let grpc = crate::grpc::is_grpc(routed.req.headers());
        // A request that waited in line for its cluster already has one.
        let deadline = routed
            .deadline
            .or_else(|| Deadline::of(routed.policy, routed.req.headers(), grpc, Instant::now()));
        routed.grpc = grpc;
        routed.deadline = deadline;
        let (stats, stream_idle) = (&routed.cluster.state.stats, routed.policy.stream_idle);
        let answered = match deadline {
            None => Either::Left(self.inner.call(routed)),
            Some(deadline) => {
                Either::Right(timeout_at(deadline.at, self.inner.call(routed)).map(
                    move |answered| answered.unwrap_or_else(|_| deadline.expired(stats, grpc)),
                ))
            }
        };
        answered.map(move |mut response| {
            if let (http_body_util::Either::Left(body), Some(idle)) =
                (response.body_mut(), stream_idle)
            {
                body.idle_timeout(idle);
            }
            response
        })
    }
}
