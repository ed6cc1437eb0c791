//! What a proxy tells about the traffic it carries.
//!
//! - [`histogram`]: latency histograms with buckets fine enough for sub-millisecond
//!   hops;
//! - [`hop`]: the series of one hop (a route's backend, or the callers of the
//!   inbound side), resolved when config compiles and kept across config changes,
//!   so the request path only bumps atomics;
//! - [`render`]: the Prometheus text format (`/metrics` is rendered by the admin side);
//! - [`tcp`]: connections and bytes, counted on every socket;
//! - [`tcp_hop`]: opaque TCP connections per hop (bytes each way, durations);
//! - [`request_id`]: `x-request-id`, made where a request enters the mesh;
//! - [`access_log`]: one JSON line per request;
//! - [`trace`]: a span per hop, W3C/B3 context, OTLP export;
//! - [`report`]: the hops' counters, sent to the control plane for `remora stat`.
//!
//! A request's span and log line start at [`arrive`] and end with its response
//! body ([`Finish`]); what is learned in between goes into a task-local slot
//! ([`observe`]).
//!
//! Label values come from config (services, routes, clusters) or from verified
//! identities, never from request paths or hosts, so cardinality stays bounded.

pub mod access_log;
pub mod histogram;
pub mod hop;
pub mod render;
pub mod report;
pub mod request_id;
pub mod tcp;
pub mod tcp_hop;
pub mod trace;

pub use histogram::Histogram;
pub use hop::{HopStats, Metrics, StatusCounts};

use std::cell::Cell;
use std::sync::Arc;
use std::time::Duration;

/// The wall clock, since the Unix epoch (zero before it), for timestamps that
/// leave the process: log lines, spans, reports.
pub fn since_epoch() -> Duration {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
}

/// What the request path learns about one request while it handles it, for its
/// metrics and access log line.
#[derive(Debug, Default)]
pub struct Facts {
    /// Nanoseconds spent waiting on the upstream (summed over attempts), so the
    /// proxy's own time is the rest.
    pub upstream_ns: Cell<u64>,
    /// Nanoseconds the request waited by design rather than for work: the
    /// backoff between retries. Not the proxy's overhead either.
    pub waited_ns: Cell<u64>,
    pub retries: Cell<u32>,
    /// The endpoint of the last attempt.
    pub endpoint: Cell<Option<std::net::SocketAddr>>,
    pub flags: Cell<access_log::Flags>,
}

/// A copy of the facts once the request is answered.
#[derive(Debug, Clone, Copy, Default)]
pub struct Learned {
    pub upstream: Duration,
    /// Backoff between retries (see [`Facts::waited_ns`]).
    pub waited: Duration,
    pub retries: u32,
    pub endpoint: Option<std::net::SocketAddr>,
    pub flags: access_log::Flags,
}

tokio::task_local! {
    static FACTS: Facts;
}

/// Runs `f` (the handling of one request) while collecting its facts. No
/// allocation: they live in the task-local slot.
///
/// A combinator, not an `async fn` or block: those keep a future they are given
/// twice (as an argument or capture, and as what they await), doubling the size
/// of every request's future, which hyper moves whole when it stores it.
pub fn observe<F: std::future::Future>(
    f: F,
) -> impl std::future::Future<Output = (F::Output, Learned)> {
    use futures::FutureExt;
    // The closure runs inside the scope's poll, where the slot is set.
    FACTS.scope(
        Facts::default(),
        f.map(|out| {
            let learned = FACTS.with(|facts| Learned {
                upstream: Duration::from_nanos(facts.upstream_ns.get()),
                waited: Duration::from_nanos(facts.waited_ns.get()),
                retries: facts.retries.get(),
                endpoint: facts.endpoint.get(),
                flags: facts.flags.get(),
            });
            (out, learned)
        }),
    )
}

/// Records something about the current request (outside one: nothing).
pub fn note(f: impl FnOnce(&Facts)) {
    let _ = FACTS.try_with(f);
}

/// Adds upstream waiting time to the current request.
pub fn add_upstream_time(d: Duration) {
    note(|f| f.upstream_ns.set(f.upstream_ns.get() + d.as_nanos() as u64));
}

/// Adds time the current request waited by design (a retry's backoff).
pub fn add_waiting_time(d: Duration) {
    note(|f| f.waited_ns.set(f.waited_ns.get() + d.as_nanos() as u64));
}

impl Learned {
    /// The time a request answered after `elapsed` spent in the proxy itself:
    /// neither waiting on its upstream (every attempt, cut short or not) nor
    /// backing off between retries.
    pub fn overhead(&self, elapsed: Duration) -> Duration {
        elapsed
            .saturating_sub(self.upstream)
            .saturating_sub(self.waited)
    }
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
    pub trace_id: String,
    pub bytes_received: u64,
}

impl RequestMeta {
    /// `trace_id`: the trace this proxy's span belongs to, if it started one;
    /// else the one the request carries, if any.
    pub fn of(
        req: &http::Request<hyper::body::Incoming>,
        trace_id: Option<trace::TraceId>,
    ) -> Self {
        let header = |name: &http::HeaderName| {
            req.headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_owned()
        };
        Self {
            start_unix_ms: since_epoch().as_millis() as u64,
            method: req.method().to_string(),
            authority: req
                .uri()
                .authority()
                .map(|a| a.to_string())
                .unwrap_or_else(|| header(&http::header::HOST)),
            path: req.uri().path().to_owned(),
            request_id: header(&request_id::REQUEST_ID),
            trace_id: trace_id
                .or_else(|| trace::context::extract(req.headers()).map(|p| p.trace_id))
                .map(|t| trace::context::hex(&t))
                .unwrap_or_default(),
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
            trace_id: self.trace_id,
            method: self.method,
            authority: self.authority,
            path: self.path,
            route: route.to_owned(),
            backend: backend.to_owned(),
            endpoint: learned.endpoint.map(|e| e.to_string()).unwrap_or_default(),
            status: response.status().as_u16(),
            grpc_status: crate::grpc::grpc_status(response.headers()),
            peer_identity: peer_identity.to_owned(),
            retries: learned.retries,
            flags,
            bytes_received: self.bytes_received,
            bytes_sent: 0,
        }
    }
}

/// A response body that can carry a [`Finish`] to its end. The request path's
/// body implements it; telemetry does not need to know that body.
pub trait FinishOnEnd {
    /// Keeps `finish` until the body ends, or does it now when the body is a
    /// reply the proxy made itself (its size known).
    fn finish_on_end(&mut self, finish: Finish);
}

/// What is done when a response ends: its access log line written and its
/// span finished, both with the bytes sent.
#[derive(Debug)]
pub struct Finish {
    entry: access_log::Entry,
    log: Option<Arc<access_log::AccessLog>>,
    span: Option<(Arc<trace::Tracer>, trace::Started)>,
}

impl Finish {
    pub fn done(self, bytes_sent: u64) {
        let mut entry = self.entry;
        entry.bytes_sent = bytes_sent;
        if let Some(log) = &self.log {
            log.write(&entry);
        }
        if let Some((tracer, started)) = self.span {
            tracer.finish(started, entry);
        }
    }
}

/// What the request path keeps from a request's arrival for its span and its
/// access log line.
#[derive(Debug)]
pub struct Arrival {
    span: Option<trace::Started>,
    /// Only when the request is logged or its span recorded.
    meta: Option<RequestMeta>,
}

/// Where a request enters a proxy: it gets an id if it has none, and this
/// hop's span, whose context it carries on.
pub fn arrive(metrics: &Metrics, req: &mut http::Request<hyper::body::Incoming>) -> Arrival {
    request_id::ensure(req.headers_mut());
    let span = metrics.tracer.as_ref().map(|t| t.start(req.headers_mut()));
    let wanted = metrics.access_log.is_some() || span.is_some_and(|s| s.sampled);
    let meta = wanted.then(|| RequestMeta::of(req, span.map(|s| s.trace_id)));
    Arrival { span, meta }
}

impl Arrival {
    /// Attaches the line and span to the response body (finished when it
    /// ends), or finishes them now for a reply the proxy made itself.
    pub fn finish<B: FinishOnEnd>(
        self,
        metrics: &Metrics,
        response: &mut http::Response<B>,
        hop: Hop<'_>,
        elapsed: Duration,
        learned: &Learned,
    ) {
        let Some(meta) = self.meta else { return };
        let span = metrics
            .tracer
            .clone()
            .zip(self.span)
            .filter(|(_, started)| started.sampled);
        let finish = Finish {
            entry: meta.entry(hop, response, elapsed, learned),
            log: metrics.access_log.clone(),
            span,
        };
        response.body_mut().finish_on_end(finish);
    }
}
