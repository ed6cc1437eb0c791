//! Per-hop metrics in the Prometheus text format, served on the admin port at
//! `/metrics`.
//!
//! - [`histogram`]: latency histograms with buckets fine enough for sub-millisecond
//!   hops;
//! - [`hop`]: the series of one hop (a route's backend, or the callers of the
//!   inbound side), resolved when config compiles and kept across config changes,
//!   so the request path only bumps atomics;
//! - [`render`]: the text exposition.
//!
//! Label values come from config (services, routes, clusters) or from verified
//! identities, never from request paths or hosts, so cardinality stays bounded.

pub mod access_log;
pub mod exposition;
pub mod histogram;
pub mod hop;
pub mod render;
pub mod request_id;

pub use histogram::Histogram;
pub use hop::{HopStats, Metrics, StatusCounts};

use std::cell::Cell;
use std::sync::Arc;
use std::time::Duration;

/// What the request path learns about one request while it handles it, for its
/// metrics and access log line.
#[derive(Debug, Default)]
pub struct Facts {
    /// Nanoseconds spent waiting on the upstream (summed over attempts), so the
    /// proxy's own time is the rest.
    pub upstream_ns: Cell<u64>,
    pub retries: Cell<u32>,
    /// The endpoint of the last attempt.
    pub endpoint: Cell<Option<std::net::SocketAddr>>,
    pub flags: Cell<access_log::Flags>,
}

/// A copy of the facts once the request is answered.
#[derive(Debug, Clone, Copy, Default)]
pub struct Learned {
    pub upstream: Duration,
    pub retries: u32,
    pub endpoint: Option<std::net::SocketAddr>,
    pub flags: access_log::Flags,
}

tokio::task_local! {
    static FACTS: Facts;
}

/// Runs `f` (the handling of one request) while collecting its facts. No
/// allocation: they live in the task-local slot.
pub async fn observe<F: std::future::Future>(f: F) -> (F::Output, Learned) {
    FACTS
        .scope(Facts::default(), async {
            let out = f.await;
            let learned = FACTS.with(|facts| Learned {
                upstream: Duration::from_nanos(facts.upstream_ns.get()),
                retries: facts.retries.get(),
                endpoint: facts.endpoint.get(),
                flags: facts.flags.get(),
            });
            (out, learned)
        })
        .await
}

/// Records something about the current request (outside one: nothing).
pub fn note(f: impl FnOnce(&Facts)) {
    let _ = FACTS.try_with(f);
}

/// Adds upstream waiting time to the current request.
pub fn add_upstream_time(d: Duration) {
    note(|f| f.upstream_ns.set(f.upstream_ns.get() + d.as_nanos() as u64));
}

/// Sets a flag of the current request.
pub fn flag(set: impl FnOnce(&mut access_log::Flags)) {
    note(|f| {
        let mut flags = f.flags.get();
        set(&mut flags);
        f.flags.set(flags);
    });
}

/// Where a request went, for its access log line.
#[derive(Debug, Clone, Copy)]
pub struct Hop<'a> {
    pub direction: &'static str,
    pub route: &'a str,
    pub backend: &'a str,
    pub peer_identity: &'a str,
}

/// What an access log line needs of a request, taken before it is handled.
#[derive(Debug, Clone, Default)]
pub struct RequestMeta {
    pub start_unix_ms: u64,
    pub method: String,
    pub authority: String,
    pub path: String,
    pub request_id: String,
    pub bytes_received: u64,
}

impl RequestMeta {
    pub fn of(req: &http::Request<hyper::body::Incoming>) -> Self {
        let header = |name: &http::HeaderName| {
            req.headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_owned()
        };
        Self {
            start_unix_ms: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as u64),
            method: req.method().to_string(),
            authority: req
                .uri()
                .authority()
                .map(|a| a.to_string())
                .unwrap_or_else(|| header(&http::header::HOST)),
            path: req.uri().path().to_owned(),
            request_id: header(&request_id::REQUEST_ID),
            bytes_received: header(&http::header::CONTENT_LENGTH).parse().unwrap_or(0),
        }
    }

    /// The line for this request, answered with `response` after `elapsed`.
    pub fn entry<B>(
        self,
        hop: Hop<'_>,
        response: &http::Response<B>,
        elapsed: Duration,
        learned: &Learned,
    ) -> access_log::Entry {
        let Hop {
            direction,
            route,
            backend,
            peer_identity,
        } = hop;
        let mut flags = learned.flags;
        flags.retried = learned.retries > 0;
        access_log::Entry {
            start_unix_ms: self.start_unix_ms,
            duration_ms: elapsed.as_secs_f64() * 1e3,
            upstream_ms: learned.upstream.as_secs_f64() * 1e3,
            direction,
            request_id: self.request_id,
            trace_id: String::new(),
            method: self.method,
            authority: self.authority,
            path: self.path,
            route: route.to_owned(),
            backend: backend.to_owned(),
            endpoint: learned.endpoint.map(|e| e.to_string()).unwrap_or_default(),
            status: response.status().as_u16(),
            grpc_status: crate::http::grpc_status(response.headers()),
            peer_identity: peer_identity.to_owned(),
            retries: learned.retries,
            flags,
            bytes_received: self.bytes_received,
            bytes_sent: 0,
        }
    }
}

/// Attaches the line to the response body (written when it ends), or writes it
/// now for a reply the proxy made itself.
pub fn log_response(
    log: &Option<Arc<access_log::AccessLog>>,
    response: &mut http::Response<crate::http::ResponseBody>,
    entry: impl FnOnce() -> access_log::Entry,
) {
    let Some(log) = log.as_ref().filter(|l| l.enabled()) else {
        return;
    };
    let entry = entry();
    match response.body_mut() {
        http_body_util::Either::Left(body) => body.log_on_end(log.clone(), entry),
        http_body_util::Either::Right(full) => {
            let mut entry = entry;
            entry.bytes_sent = http_body::Body::size_hint(full).exact().unwrap_or(0);
            log.write(&entry);
        }
    }
}
