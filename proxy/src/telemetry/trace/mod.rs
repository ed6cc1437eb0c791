//! Distributed traces: each hop through a proxy is one span.
//!
//! - [`context`]: the trace context in headers (W3C `traceparent`, B3 on input);
//! - `export`: spans sent over OTLP/gRPC to the configured collector.
//!
//! A request's span starts when it arrives: the caller's context (if any) is its
//! parent, and the request leaves with this span as the parent of the next hop.
//! The caller's sampling decision is kept; a new trace is sampled at the
//! configured rate. Sampled spans end when the response body ends and wait in a
//! bounded queue for the exporter; without a collector there is no tracer, and
//! headers pass through untouched.

pub mod context;
mod export;

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Mutex, PoisonError};

use http::HeaderMap;

pub use context::{Parent, SpanId, TraceId};
pub use export::{Collector, Exporter};

use super::access_log::Entry;

/// Spans waiting for the exporter at most; beyond it they are dropped and counted.
const MAX_QUEUED: usize = 2048;
/// A full batch wakes the exporter before its timer does.
const BATCH: usize = 512;

/// How a proxy traces (bootstrap `tracing`).
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    /// The OTLP/gRPC collector, e.g. `http://127.0.0.1:4317`.
    pub collector: http::Uri,
    /// The share of new traces (no sampling decision from the caller) recorded.
    pub sample_rate: f64,
}

/// This hop's span, from the request's arrival.
#[derive(Debug, Clone, Copy)]
pub struct Started {
    pub trace_id: TraceId,
    pub span_id: SpanId,
    pub parent: Option<SpanId>,
    pub sampled: bool,
    pub start_unix_ns: u64,
}

/// A finished span, as the request path hands it over: converted to OTLP by the
/// exporter, off the request path.
#[derive(Debug)]
struct Finished {
    started: Started,
    end_unix_ns: u64,
    entry: Entry,
}

#[derive(Debug, Default)]
pub struct TraceStats {
    pub exported: AtomicU64,
    pub dropped_queue_full: AtomicU64,
    pub dropped_export_failed: AtomicU64,
}

#[derive(Debug)]
pub struct Tracer {
    sample_per_million: u32,
    queue: Mutex<Vec<Finished>>,
    wake: tokio::sync::Notify,
    pub stats: TraceStats,
}

impl Tracer {
    fn new(sample_rate: f64) -> Self {
        Self {
            sample_per_million: (sample_rate.clamp(0.0, 1.0) * 1e6).round() as u32,
            queue: Mutex::new(Vec::new()),
            wake: tokio::sync::Notify::new(),
            stats: TraceStats::default(),
        }
    }

    /// Starts this hop's span for a request and makes it the parent of the next
    /// hop. A trace this proxy starts and does not sample still gets a
    /// `traceparent` (flag 00), so later hops keep the decision and the id.
    pub fn start(&self, headers: &mut HeaderMap) -> Started {
        let parent = context::extract(headers);
        let sampled = match parent.and_then(|p| p.sampled) {
            Some(decision) => decision,
            None => rand::random_range(0..1_000_000) < self.sample_per_million,
        };
        let trace_id = parent.map_or_else(random_id, |p| p.trace_id);
        let span_id = random_id();
        context::inject(headers, &trace_id, &span_id, sampled);
        Started {
            trace_id,
            span_id,
            parent: parent.map(|p| p.span_id),
            sampled,
            start_unix_ns: unix_ns(),
        }
    }

    /// Queues a sampled span; never blocks on the exporter.
    pub fn finish(&self, started: Started, entry: Entry) {
        if !started.sampled {
            return;
        }
        let span = Finished {
            started,
            end_unix_ns: unix_ns(),
            entry,
        };
        let mut queue = self.queue.lock().unwrap_or_else(PoisonError::into_inner);
        if queue.len() >= MAX_QUEUED {
            self.stats.dropped_queue_full.fetch_add(1, Relaxed);
            return;
        }
        queue.push(span);
        if queue.len() == BATCH {
            self.wake.notify_one();
        }
    }

    fn take(&self) -> Vec<Finished> {
        std::mem::take(&mut *self.queue.lock().unwrap_or_else(PoisonError::into_inner))
    }
}

/// A random id; all zeroes is invalid in W3C and B3.
fn random_id<const N: usize>() -> [u8; N]
where
    [u8; N]: Default,
    rand::distr::StandardUniform: rand::distr::Distribution<[u8; N]>,
{
    loop {
        let id: [u8; N] = rand::random();
        if id != <[u8; N]>::default() {
            return id;
        }
    }
}

fn unix_ns() -> u64 {
    super::since_epoch().as_nanos() as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_callers_decision_wins_and_new_traces_follow_the_rate() {
        let never = Tracer::new(0.0);
        let mut h = HeaderMap::new();
        let s = never.start(&mut h);
        assert!(!s.sampled);
        assert_eq!(s.parent, None);
        let tp = h["traceparent"].to_str().unwrap().to_owned();
        assert!(tp.ends_with("-00"), "{tp}");

        let always = Tracer::new(1.0);
        let next = always.start(&mut h);
        assert!(!next.sampled, "the caller said no");
        assert_eq!(next.trace_id, s.trace_id);
        assert_eq!(next.parent, Some(s.span_id));

        let mut fresh = HeaderMap::new();
        assert!(always.start(&mut fresh).sampled);
        let mut h = HeaderMap::new();
        h.insert(
            "traceparent",
            http::HeaderValue::from_static(
                "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            ),
        );
        assert!(never.start(&mut h).sampled, "the caller said yes");
    }

    #[test]
    fn the_queue_is_bounded() {
        let t = Tracer::new(1.0);
        let mut h = HeaderMap::new();
        let s = t.start(&mut h);
        for _ in 0..MAX_QUEUED + 10 {
            t.finish(s, Entry::default());
        }
        assert_eq!(t.take().len(), MAX_QUEUED);
        assert_eq!(t.stats.dropped_queue_full.load(Relaxed), 10);
        let unsampled = Started {
            sampled: false,
            ..s
        };
        t.finish(unsampled, Entry::default());
        assert!(t.take().is_empty());
    }
}
