//! The route's filters, in this order: the route's rate limit takes a token
//! (429, gRPC RESOURCE_EXHAUSTED, when none is left), the cluster's fault may
//! delay and/or abort the request, and the route's request header changes are
//! applied; its response header changes are applied to whatever comes back
//! from below (not to the filters' own answers).
//!
//! Not here: mirrors (`super::mirror`): a copy is made only of a request the
//! cluster admitted (`super::breaker`), which comes after these filters.

use std::future::Future;

use futures::future::{self, Either, FutureExt};
use http::Response;

use super::service::{Routed, Serve};
use crate::http::reply::{fault_abort, rate_limited};
use crate::http::ResponseBody;
use crate::resilience::fault::{Abort, Share};
use crate::upstream::{Cluster, ClusterStats};

pub struct FiltersLayer;

impl<S> tower::Layer<S> for FiltersLayer {
    type Service = Filters<S>;

    fn layer(&self, inner: S) -> Filters<S> {
        Filters { inner }
    }
}

pub struct Filters<S> {
    inner: S,
}

impl<'a, S> Serve<Routed<'a>> for Filters<S>
where
    S: for<'r> Serve<Routed<'r>, Response = Response<ResponseBody>>,
{
    type Response = Response<ResponseBody>;

    fn call(&self, mut routed: Routed<'a>) -> impl Future<Output = Response<ResponseBody>> + Send {
        let (policy, cluster) = (routed.policy, routed.cluster);
        let stats = &cluster.state.stats;
        if let Some(limit) = &policy.rate_limit {
            if !limit.allow() {
                ClusterStats::count(&stats.rate_limited);
                crate::telemetry::flag(|f| f.rate_limited = true);
                let grpc = crate::grpc::is_grpc(routed.req.headers());
                return Either::Left(future::ready(rate_limited(grpc)));
            }
        }
        let fault = cluster
            .fault
            .as_ref()
            .filter(|f| f.applies(routed.req.headers()));
        let injected = fault.map(|f| f.draw(|| rand::random_range(0..Share::MILLION)));
        let (delay, abort) = injected.map_or((None, None), |i| (i.delay, i.abort));
        if delay.is_some() || abort.is_some() {
            crate::telemetry::flag(|f| f.fault_injected = true);
        }
        if let Some(delay) = delay {
            ClusterStats::count(&stats.faults_delayed);
            tracing::debug!(cluster = %cluster.name, ?delay, "fault: delaying");
        } else if let Some(abort) = abort {
            return Either::Left(future::ready(aborted(cluster, abort)));
        }
        // The rest, after the fault's delay if there is one. Combinators rather
        // than an `async` block, which would keep the request twice in the
        // future (see `telemetry::observe`).
        let rest = move |()| match abort {
            Some(abort) => Either::Left(future::ready(aborted(cluster, abort))),
            None => {
                policy.request_headers.apply(routed.req.headers_mut());
                Either::Right(self.inner.call(routed).map(move |mut response| {
                    policy.response_headers.apply(response.headers_mut());
                    response
                }))
            }
        };
        Either::Right(match delay {
            None => Either::Left(rest(())),
            Some(delay) => Either::Right(tokio::time::sleep(delay).then(rest)),
        })
    }
}

/// The fault's answer in place of the cluster's.
fn aborted(cluster: &Cluster, abort: Abort) -> Response<ResponseBody> {
    ClusterStats::count(&cluster.state.stats.faults_aborted);
    tracing::debug!(cluster = %cluster.name, ?abort, "fault: aborting");
    fault_abort(abort)
}
