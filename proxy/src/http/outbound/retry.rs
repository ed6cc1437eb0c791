//! The attempts of one request: the first, and on a failure the route's retry
//! policy names (a status or `grpc-status`, a connect failure, a reset, a
//! per-try timeout) another after a fully jittered exponential backoff, while
//! retries are left, the body can be replayed (it ended within 64 KiB), the
//! cluster's retry budget allows it and the request's deadline is not past.
//! Otherwise the last failure is the answer, as it is.
//!
//! Only a body that may be sent again (or mirrored) is recorded as it streams;
//! each attempt goes down as its own [`Attempt`], so the balancer picks again.
//! A route without a retry policy makes one attempt.

use std::future::Future;

use http::Response;
use http_body::Body;
use tokio::time::{timeout_at, Instant};

use super::service::{Attempt, Routed, Serve};
use crate::http::reply::{timed_out, upstream_failure, TimeoutKind};
use crate::http::ResponseBody;
use crate::resilience::retry::REPLAY_LIMIT;
use crate::upstream::{ClusterStats, Recorded, RequestBody, UpstreamError};

/// What an attempt comes back with: an answer, or why there is none.
pub type Attempted = Result<Response<ResponseBody>, UpstreamError>;

pub struct RetryLayer;

impl<S> tower::Layer<S> for RetryLayer {
    type Service = Retry<S>;

    fn layer(&self, inner: S) -> Retry<S> {
        Retry { inner }
    }
}

pub struct Retry<S> {
    inner: S,
}

/// Why an attempt did not give a response to return as it is.
enum Failure {
    /// A response the retry policy retries (a 503, a retried gRPC status, ...).
    Response(Response<ResponseBody>),
    Error(UpstreamError),
    PerTryTimeout,
}

impl Failure {
    fn into_response(self, grpc: bool) -> Response<ResponseBody> {
        match self {
            Failure::Response(r) => r,
            Failure::Error(e) => upstream_failure(&e),
            Failure::PerTryTimeout => timed_out(TimeoutKind::PerTry, grpc),
        }
    }
}

impl<'a, S> Serve<Routed<'a>> for Retry<S>
where
    S: for<'r> Serve<Attempt<'r>, Response = Attempted>,
{
    type Response = Response<ResponseBody>;

    fn call(&self, routed: Routed<'a>) -> impl Future<Output = Response<ResponseBody>> + Send {
        let Routed {
            req,
            authority,
            policy,
            cluster,
            hash,
            grpc,
            deadline,
        } = routed;
        let (parts, body) = req.into_parts();
        // An `async` block over the request's pieces, not an `async fn`, which
        // would keep the whole `Routed` besides them.
        async move {
            let attempt = |body, at| Attempt {
                parts: &parts,
                body,
                authority: &authority,
                cluster,
                hash,
                grpc,
                deadline: at,
            };
            let Some(retry) = &policy.retry else {
                // One attempt, as the body came (recorded only for a mirror).
                let at = deadline.map(|d| d.at);
                let sent = self.inner.call(attempt(body, at)).await;
                return sent.unwrap_or_else(|e| upstream_failure(&e));
            };

            let stats = &cluster.state.stats;
            let budget = &cluster.state.budget;
            budget.deposit(&cluster.retry_budget, Instant::now());
            // Only a body that may be sent again (or mirrored) is kept: a mirror's
            // recording serves the retries too.
            let (first, recording) = match body {
                RequestBody::Recording(body, r) => {
                    let kept = r.clone();
                    (RequestBody::Recording(body, r), Some(kept))
                }
                RequestBody::Streaming(body) if retry.retries > 0 && !body.is_end_stream() => {
                    let r = Recorded::new(REPLAY_LIMIT);
                    (RequestBody::Recording(body, r.clone()), Some(r))
                }
                body if retry.retries == 0 => (body, None),
                // It has ended: there is nothing left to send.
                _ => (RequestBody::Empty, None),
            };
            let mut next_body = Some(first);
            let mut retries = 0;
            loop {
                let body = next_body.take().unwrap_or(RequestBody::Empty);
                let per_try = retry.per_try_timeout.map(|t| Instant::now() + t);
                let attempt_deadline = match (per_try, deadline) {
                    (Some(p), Some(d)) => Some(p.min(d.at)),
                    (p, d) => p.or(d.map(|d| d.at)),
                };
                // Each branch makes its attempt in the await itself: a future
                // bound to a local is kept twice in this block's state (see
                // `telemetry::observe`).
                let outcome = match attempt_deadline {
                    None => Ok(self.inner.call(attempt(body, None)).await),
                    Some(at) => timeout_at(at, self.inner.call(attempt(body, Some(at)))).await,
                };
                let failure = match outcome {
                    Ok(Ok(response))
                        if !retry.retries_response(response.status(), response.headers()) =>
                    {
                        return response;
                    }
                    Ok(Ok(response)) => Failure::Response(response),
                    Ok(Err(error)) if retry.retries_error(error.is_connect()) => {
                        Failure::Error(error)
                    }
                    Ok(Err(error)) => return upstream_failure(&error),
                    Err(_) => match deadline {
                        // The request's own deadline came first: no more attempts.
                        Some(d) if Instant::now() >= d.at => return d.expired(stats, grpc),
                        _ => {
                            ClusterStats::count(&stats.timeouts_per_try);
                            if !retry.retries_timeout() {
                                return timed_out(TimeoutKind::PerTry, grpc);
                            }
                            Failure::PerTryTimeout
                        }
                    },
                };
                if retries >= retry.retries {
                    return failure.into_response(grpc);
                }
                next_body = match &recording {
                    None => Some(RequestBody::Empty),
                    Some(r) => Recorded::replay(r).map(RequestBody::Replay),
                };
                if next_body.is_none() {
                    ClusterStats::count(&stats.retry_body_not_replayable);
                    tracing::debug!(cluster = %cluster.name, "not retried: the request body was too large or still streaming to replay");
                    return failure.into_response(grpc);
                }
                if !budget.try_withdraw(&cluster.retry_budget, Instant::now()) {
                    ClusterStats::count(&stats.retry_budget_exhausted);
                    tracing::debug!(cluster = %cluster.name, "not retried: the retry budget is spent");
                    return failure.into_response(grpc);
                }
                retries += 1;
                let backoff = retry.backoff(retries, rand::random());
                let wake = Instant::now() + backoff;
                // Backing off is waiting by design, not the proxy's overhead.
                let backing_off = Instant::now();
                if let Some(d) = deadline.filter(|d| d.at <= wake) {
                    tokio::time::sleep_until(d.at).await;
                    crate::telemetry::add_waiting_time(backing_off.elapsed());
                    return d.expired(stats, grpc);
                }
                drop(failure);
                tokio::time::sleep_until(wake).await;
                crate::telemetry::add_waiting_time(backing_off.elapsed());
                ClusterStats::count(&stats.retries);
                crate::telemetry::note(|f| f.retries.set(f.retries.get() + 1));
                tracing::debug!(cluster = %cluster.name, retry = retries, ?backoff, "retrying");
            }
        }
    }
}
