//! The attempts of one outbound request: pick an endpoint, send, and on a failure
//! the route's retry policy retries, within the request's deadline, the per-try
//! timeout, the cluster's retry budget, and only with a body that can be replayed.
//!
//! The deadline is the route's timeout, or a gRPC client's `grpc-timeout` when
//! shorter (capped as the route says); it covers every attempt and backoff, until
//! the response headers. A gRPC request carries what is left of it to the next hop.

use std::sync::Arc;

use http::uri::Authority;
use http::{header, HeaderMap, HeaderValue, Request, Response, StatusCode};
use http_body::Body;
use http_body_util::Either;
use hyper::body::Incoming;
use tokio::time::{timeout_at, Instant};

use super::outbound::{send_to, shape, upstream_failure};
use super::reply::{local, timed_out, TimeoutKind};
use super::{is_grpc, ResponseBody};
use crate::balance::hash_key as hash_key_bytes;
use crate::resilience::deadline::{format_grpc_timeout, parse_grpc_timeout};
use crate::resilience::retry::REPLAY_LIMIT;
use crate::snapshot::{HashPolicy, RoutePolicy};
use crate::upstream::{Cluster, ClusterStats, Recorded, RequestBody, UpstreamError};

const GRPC_TIMEOUT: &str = "grpc-timeout";

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

/// Sends a request to `cluster` under its concurrency limit: over it, 503 at
/// once; within it, the request counts until its response body ends.
pub async fn send(
    cluster: &Arc<Cluster>,
    policy: &RoutePolicy,
    req: Request<Incoming>,
    authority: Authority,
    mirrors: Vec<Arc<Cluster>>,
) -> Response<ResponseBody> {
    let stats = &cluster.state.stats;
    ClusterStats::count(&stats.requests);
    let limit = cluster.concurrency_limit;
    let Some(active) = cluster.state.admit(limit) else {
        ClusterStats::count(&stats.overflow);
        crate::telemetry::flag(|f| f.overflow = true);
        tracing::debug!(cluster = %cluster.name, ?limit, "refused: too many concurrent requests");
        return local(
            StatusCode::SERVICE_UNAVAILABLE,
            "overflow: too many concurrent requests",
        );
    };
    let (hash, new_cookie) = hash_key(policy.hash.as_ref(), req.headers());
    let mirror = (!mirrors.is_empty()).then(|| {
        let mut head = Request::new(());
        *head.method_mut() = req.method().clone();
        *head.uri_mut() = req.uri().clone();
        *head.version_mut() = req.version();
        *head.headers_mut() = req.headers().clone();
        (
            head.into_parts().0,
            Recorded::new(REPLAY_LIMIT),
            req.body().is_end_stream(),
        )
    });
    let recording = mirror.as_ref().map(|(_, r, _)| r.clone());
    let mut response = attempts(cluster, policy, req, authority.clone(), hash, recording).await;
    if let Some((head, recorded, empty)) = mirror {
        super::mirror::spawn(mirrors, head, recorded, empty, authority);
    }
    if let Either::Left(body) = response.body_mut() {
        body.hold(active);
        if let Some(idle) = policy.stream_idle {
            body.idle_timeout(idle);
        }
    }
    if let Some(cookie) = new_cookie {
        response.headers_mut().append(header::SET_COOKIE, cookie);
    }
    response
}

/// The request's key for consistent hashing, and the cookie to set when the key
/// is a cookie the request did not have yet.
pub(crate) fn hash_key(
    policy: Option<&HashPolicy>,
    headers: &HeaderMap,
) -> (Option<u64>, Option<HeaderValue>) {
    match policy {
        None => (None, None),
        Some(HashPolicy::Header(name)) => (
            headers.get(name).map(|v| hash_key_bytes(v.as_bytes())),
            None,
        ),
        Some(HashPolicy::Cookie { name, ttl, path }) => {
            let found = headers
                .get_all(header::COOKIE)
                .iter()
                .filter_map(|v| v.to_str().ok())
                .flat_map(|v| v.split(';'))
                .filter_map(|pair| pair.trim().split_once('='))
                .find(|(n, _)| n == name)
                .map(|(_, value)| value.to_owned());
            match (found, ttl) {
                (Some(value), _) => (Some(hash_key_bytes(value.as_bytes())), None),
                (None, Some(ttl)) => {
                    let value = format!("{:016x}", rand::random::<u64>());
                    let cookie = format!(
                        "{name}={value}; Max-Age={}; Path={path}; HttpOnly",
                        ttl.as_secs()
                    );
                    (
                        Some(hash_key_bytes(value.as_bytes())),
                        HeaderValue::from_str(&cookie).ok(),
                    )
                }
                (None, None) => (None, None),
            }
        }
    }
}

/// `mirror_recording`: when the request is mirrored, the body is recorded there
/// (its copy is sent once the real request has its answer).
async fn attempts(
    cluster: &Arc<Cluster>,
    policy: &RoutePolicy,
    req: Request<Incoming>,
    authority: Authority,
    hash: Option<u64>,
    mirror_recording: Option<Arc<std::sync::Mutex<Recorded>>>,
) -> Response<ResponseBody> {
    let stats = &cluster.state.stats;
    let started = Instant::now();
    let grpc = is_grpc(req.headers());
    let deadline = deadline(policy, req.headers(), grpc, started);
    let (mut parts, body) = req.into_parts();
    super::headers::strip_hop_by_hop(&mut parts.headers);

    let Some(retry) = &policy.retry else {
        // One attempt: no body is kept.
        let body = match mirror_recording {
            Some(r) if !body.is_end_stream() => RequestBody::Recording(body, r),
            _ => RequestBody::Streaming(body),
        };
        // Each branch makes its attempt in the await itself: a future bound to
        // a local is kept twice in this function's state (see
        // `telemetry::observe`).
        let at = deadline.map(|(d, _)| d);
        return match deadline {
            None => attempt(cluster, &parts, body, &authority, grpc, at, hash)
                .await
                .unwrap_or_else(|e| upstream_failure(&e)),
            Some((at, kind)) => match timeout_at(
                at,
                attempt(cluster, &parts, body, &authority, grpc, Some(at), hash),
            )
            .await
            {
                Ok(result) => result.unwrap_or_else(|e| upstream_failure(&e)),
                Err(_) => {
                    count_timeout(stats, kind);
                    timed_out(kind, grpc)
                }
            },
        };
    };

    cluster.state.budget.deposit(&cluster.retry_budget, started);
    // Only a body that may be sent again (or mirrored) is kept.
    let recording = match mirror_recording {
        Some(r) if !body.is_end_stream() => Some(r),
        _ => (retry.retries > 0 && !body.is_end_stream()).then(|| Recorded::new(REPLAY_LIMIT)),
    };
    let mut next_body = Some(match &recording {
        Some(r) => RequestBody::Recording(body, r.clone()),
        None if retry.retries == 0 => RequestBody::Streaming(body),
        None => RequestBody::Empty,
    });
    let mut retries = 0;
    loop {
        let body = match next_body.take() {
            Some(b) => b,
            None => RequestBody::empty(),
        };
        let per_try = retry.per_try_timeout.map(|t| Instant::now() + t);
        let attempt_deadline = match (per_try, deadline) {
            (Some(p), Some((d, _))) => Some(p.min(d)),
            (p, d) => p.or(d.map(|(d, _)| d)),
        };
        let outcome = match attempt_deadline {
            None => Ok(attempt(cluster, &parts, body, &authority, grpc, None, hash).await),
            Some(at) => {
                timeout_at(
                    at,
                    attempt(cluster, &parts, body, &authority, grpc, Some(at), hash),
                )
                .await
            }
        };
        let failure = match outcome {
            Ok(Ok(response)) if !retry.retries_response(response.status(), response.headers()) => {
                return response;
            }
            Ok(Ok(response)) => Failure::Response(response),
            Ok(Err(error)) if retry.retries_error(error.is_connect()) => Failure::Error(error),
            Ok(Err(error)) => return upstream_failure(&error),
            Err(_) => match deadline {
                // The request's own deadline came first: no more attempts.
                Some((at, kind)) if Instant::now() >= at => {
                    count_timeout(stats, kind);
                    return timed_out(kind, grpc);
                }
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
        if !cluster
            .state
            .budget
            .try_withdraw(&cluster.retry_budget, Instant::now())
        {
            ClusterStats::count(&stats.retry_budget_exhausted);
            tracing::debug!(cluster = %cluster.name, "not retried: the retry budget is spent");
            return failure.into_response(grpc);
        }
        retries += 1;
        let backoff = retry.backoff(retries, rand::random());
        let wake = Instant::now() + backoff;
        if let Some((at, kind)) = deadline.filter(|(at, _)| *at <= wake) {
            tokio::time::sleep_until(at).await;
            count_timeout(stats, kind);
            return timed_out(kind, grpc);
        }
        drop(failure);
        tokio::time::sleep_until(wake).await;
        ClusterStats::count(&stats.retries);
        crate::telemetry::note(|f| f.retries.set(f.retries.get() + 1));
        tracing::debug!(cluster = %cluster.name, retry = retries, ?backoff, "retrying");
    }
}

/// One attempt at a fresh endpoint, with the request rebuilt from `parts`.
async fn attempt(
    cluster: &Cluster,
    parts: &http::request::Parts,
    body: RequestBody,
    authority: &Authority,
    grpc: bool,
    deadline: Option<Instant>,
    hash: Option<u64>,
) -> Result<Response<ResponseBody>, UpstreamError> {
    let Some(chosen) = cluster.pick(hash) else {
        return Ok(local(StatusCode::SERVICE_UNAVAILABLE, "no endpoints"));
    };
    let endpoint = &chosen.endpoint;
    let mut req = Request::new(body);
    *req.method_mut() = parts.method.clone();
    *req.uri_mut() = parts.uri.clone();
    *req.version_mut() = parts.version;
    *req.headers_mut() = parts.headers.clone();
    let (mut p, body) = req.into_parts();
    if shape(endpoint, &mut p, authority, parts.version).is_err() {
        return Ok(local(StatusCode::BAD_REQUEST, "invalid request target"));
    }
    if let (true, Some(at)) = (grpc, deadline) {
        let left = at.saturating_duration_since(Instant::now());
        p.headers.insert(GRPC_TIMEOUT, format_grpc_timeout(left));
    }
    let result = send_to(endpoint, Request::from_parts(p, body), parts.version).await;
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

/// The request's deadline and which timeout it is.
fn deadline(
    policy: &RoutePolicy,
    headers: &HeaderMap,
    grpc: bool,
    now: Instant,
) -> Option<(Instant, TimeoutKind)> {
    let route = policy.timeout.map(|t| (now + t, TimeoutKind::Request));
    let client = policy
        .grpc_timeout
        .filter(|_| grpc)
        .and_then(|cap| {
            let asked = parse_grpc_timeout(headers.get(GRPC_TIMEOUT)?)?;
            Some(cap.map_or(asked, |c| asked.min(c)))
        })
        .map(|t| (now + t, TimeoutKind::GrpcDeadline));
    match (route, client) {
        (Some(r), Some(c)) => Some(if c.0 < r.0 { c } else { r }),
        (r, c) => r.or(c),
    }
}

fn count_timeout(stats: &ClusterStats, kind: TimeoutKind) {
    crate::telemetry::flag(|f| f.timed_out = true);
    match kind {
        TimeoutKind::PerTry => ClusterStats::count(&stats.timeouts_per_try),
        TimeoutKind::Request | TimeoutKind::GrpcDeadline => {
            ClusterStats::count(&stats.timeouts_request)
        }
    }
}
