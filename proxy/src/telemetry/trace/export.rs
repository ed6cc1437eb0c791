//! The exporter: a task that takes the queued spans every second (or when a
//! batch is full) and sends them to the collector with OTLP/gRPC `Export`.
//! A collector that is down costs the batch, counted, and nothing else: the
//! queue stays bounded and the request path never waits. [`Exporter::flush`]
//! sends what is queued when the proxy stops.

use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Weak};
use std::time::Duration;

use remora_proto::otlp::collector::trace::v1::trace_service_client::TraceServiceClient;
use remora_proto::otlp::collector::trace::v1::ExportTraceServiceRequest;
use remora_proto::otlp::common::v1::{any_value, AnyValue, InstrumentationScope, KeyValue};
use remora_proto::otlp::resource::v1::Resource;
use remora_proto::otlp::trace::v1::{span, status, ResourceSpans, ScopeSpans, Span, Status};

use super::{Finished, Settings, Tracer};

const EXPORT_EVERY: Duration = Duration::from_secs(1);
const EXPORT_TIMEOUT: Duration = Duration::from_secs(5);

/// Who the spans come from (the OTLP resource).
#[derive(Debug, Clone)]
pub struct Collector {
    pub service: String,
    pub namespace: String,
    pub node_id: String,
}

/// The running exporter, to flush at shutdown.
#[derive(Debug)]
pub struct Exporter {
    flush: tokio::sync::mpsc::Sender<tokio::sync::oneshot::Sender<()>>,
}

impl Exporter {
    /// Sends the spans still queued, waiting at most `timeout`; the exporter
    /// stops after it.
    pub async fn flush(self, timeout: Duration) {
        let (done, sent) = tokio::sync::oneshot::channel();
        if self.flush.send(done).await.is_ok() {
            let _ = tokio::time::timeout(timeout, sent).await;
        }
    }
}

impl Collector {
    /// The tracer, with its exporter running until the tracer is dropped or
    /// the exporter flushed.
    pub fn start(self, settings: &Settings) -> (Arc<Tracer>, Exporter) {
        let tracer = Arc::new(Tracer::new(settings.sample_rate));
        let channel = tonic::transport::Endpoint::from(settings.collector.clone())
            .timeout(EXPORT_TIMEOUT)
            .connect_lazy();
        let client = TraceServiceClient::new(channel);
        let (flush, flushes) = tokio::sync::mpsc::channel(1);
        tokio::spawn(self.run(Arc::downgrade(&tracer), client, flushes));
        (tracer, Exporter { flush })
    }

    async fn run(
        self,
        tracer: Weak<Tracer>,
        mut client: TraceServiceClient<tonic::transport::Channel>,
        mut flushes: tokio::sync::mpsc::Receiver<tokio::sync::oneshot::Sender<()>>,
    ) {
        let resource = Resource {
            attributes: vec![
                text("service.name", &self.service),
                text("service.namespace", &self.namespace),
                text("service.instance.id", &self.node_id),
            ],
            ..Default::default()
        };
        loop {
            let Some(t) = tracer.upgrade() else { return };
            // A full batch wakes us early; the timer bounds a span's wait; a
            // flush is the last round.
            let last = tokio::select! {
                _ = tokio::time::timeout(EXPORT_EVERY, t.wake.notified()) => None,
                Some(done) = flushes.recv() => Some(done),
            };
            drop(t);
            let Some(t) = tracer.upgrade() else { return };
            let batch = t.take();
            if batch.is_empty() {
                if let Some(done) = last {
                    let _ = done.send(());
                    return;
                }
                continue;
            }
            let n = batch.len() as u64;
            let request = ExportTraceServiceRequest {
                resource_spans: vec![ResourceSpans {
                    resource: Some(resource.clone()),
                    scope_spans: vec![ScopeSpans {
                        scope: Some(InstrumentationScope {
                            name: "remora-proxy".into(),
                            version: env!("CARGO_PKG_VERSION").into(),
                            ..Default::default()
                        }),
                        spans: batch.into_iter().map(to_otlp).collect(),
                        schema_url: String::new(),
                    }],
                    schema_url: String::new(),
                }],
            };
            match client.export(request).await {
                Ok(_) => {
                    t.stats.exported.fetch_add(n, Relaxed);
                }
                Err(status) => {
                    t.stats.dropped_export_failed.fetch_add(n, Relaxed);
                    tracing::warn!(spans = n, error = %status.message(), code = ?status.code(), "span export failed");
                }
            }
            if let Some(done) = last {
                let _ = done.send(());
                return;
            }
        }
    }
}

fn to_otlp(f: Finished) -> Span {
    let e = &f.entry;
    let outbound = e.direction == "outbound";
    let name = match (outbound, e.route.is_empty()) {
        (true, false) => format!("outbound {}", e.route),
        (true, true) => format!("outbound {}", e.authority),
        (false, _) => format!("inbound {}", e.authority),
    };
    let mut attributes = vec![
        text("remora.direction", e.direction),
        text("http.request.method", &e.method),
        text("server.address", &e.authority),
        text("url.path", &e.path),
        int("http.response.status_code", i64::from(e.status)),
        text("remora.request_id", &e.request_id),
        int("remora.retries", i64::from(e.retries)),
    ];
    for (key, value) in [
        ("remora.route", &e.route),
        ("remora.backend", &e.backend),
        ("network.peer.address", &e.endpoint),
        ("remora.peer_identity", &e.peer_identity),
    ] {
        if !value.is_empty() {
            attributes.push(text(key, value));
        }
    }
    if let Some(code) = e.grpc_status {
        attributes.push(int("rpc.grpc.status_code", i64::from(code)));
    }
    let error = e.status >= 500;
    Span {
        trace_id: f.started.trace_id.to_vec(),
        span_id: f.started.span_id.to_vec(),
        parent_span_id: f.started.parent.map(|p| p.to_vec()).unwrap_or_default(),
        name,
        kind: if outbound {
            span::SpanKind::Client
        } else {
            span::SpanKind::Server
        } as i32,
        start_time_unix_nano: f.started.start_unix_ns,
        end_time_unix_nano: f.end_unix_ns.max(f.started.start_unix_ns),
        attributes,
        status: Some(Status {
            message: String::new(),
            code: if error {
                status::StatusCode::Error
            } else {
                status::StatusCode::Unset
            } as i32,
        }),
        ..Default::default()
    }
}

fn text(key: &str, value: &str) -> KeyValue {
    KeyValue {
        key: key.to_owned(),
        key_strindex: 0,
        value: Some(AnyValue {
            value: Some(any_value::Value::StringValue(value.to_owned())),
        }),
    }
}

fn int(key: &str, value: i64) -> KeyValue {
    KeyValue {
        key: key.to_owned(),
        key_strindex: 0,
        value: Some(AnyValue {
            value: Some(any_value::Value::IntValue(value)),
        }),
    }
}
