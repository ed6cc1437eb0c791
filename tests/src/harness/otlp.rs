//! A trace collector for tests: the OTLP/gRPC `TraceService` (the generated
//! server, so it speaks the real wire format) on 127.0.0.1:0, keeping every span
//! with the service that sent it.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};

use anyhow::{Context, Result};
use remora_proto::otlp::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use remora_proto::otlp::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use remora_proto::otlp::common::v1::{any_value, KeyValue};
use remora_proto::otlp::trace::v1::Span;
use tokio::task::JoinHandle;

/// One received span, with the `service.name` of its resource.
#[derive(Debug, Clone)]
pub struct ReceivedSpan {
    pub service: String,
    pub span: Span,
}

impl ReceivedSpan {
    pub fn trace_id(&self) -> String {
        hex(&self.span.trace_id)
    }
    pub fn span_id(&self) -> String {
        hex(&self.span.span_id)
    }
    pub fn parent_span_id(&self) -> String {
        hex(&self.span.parent_span_id)
    }
    /// A string or integer attribute, as text.
    pub fn attribute(&self, key: &str) -> Option<String> {
        attribute(&self.span.attributes, key)
    }
}

/// Stops when dropped.
pub struct OtlpReceiver {
    pub addr: SocketAddr,
    kept: Arc<Kept>,
    task: JoinHandle<()>,
}

/// Spans kept (up to `limit`) and how many arrived in all.
#[derive(Default)]
struct Kept {
    spans: Mutex<Vec<ReceivedSpan>>,
    received: std::sync::atomic::AtomicU64,
    limit: usize,
}

struct Keep(Arc<Kept>);

#[tonic::async_trait]
impl TraceService for Keep {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        let mut kept = self.0.spans.lock().unwrap_or_else(PoisonError::into_inner);
        for resource_spans in request.into_inner().resource_spans {
            let service = resource_spans
                .resource
                .as_ref()
                .and_then(|r| attribute(&r.attributes, "service.name"))
                .unwrap_or_default();
            for scope in resource_spans.scope_spans {
                for span in scope.spans {
                    self.0
                        .received
                        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    if kept.len() >= self.0.limit {
                        continue;
                    }
                    kept.push(ReceivedSpan {
                        service: service.clone(),
                        span,
                    });
                }
            }
        }
        Ok(tonic::Response::new(ExportTraceServiceResponse::default()))
    }
}

impl OtlpReceiver {
    /// Keeps every span it receives.
    pub async fn start() -> Result<Self> {
        Self::keeping("127.0.0.1:0".parse()?, usize::MAX).await
    }

    /// Listens on `listen`; keeps the first `limit` spans and counts the rest
    /// (a sink for benchmarks keeps none).
    pub async fn keeping(listen: SocketAddr, limit: usize) -> Result<Self> {
        let listener = tokio::net::TcpListener::bind(listen)
            .await
            .context("cannot bind the OTLP receiver")?;
        let addr = listener.local_addr()?;
        let kept = Arc::new(Kept {
            limit,
            ..Default::default()
        });
        let service = TraceServiceServer::new(Keep(kept.clone()));
        let task = tokio::spawn(async move {
            let incoming = tokio_stream::wrappers::TcpListenerStream::new(listener);
            if let Err(e) = tonic::transport::Server::builder()
                .add_service(service)
                .serve_with_incoming(incoming)
                .await
            {
                tracing::warn!(error = %e, "OTLP receiver stopped");
            }
        });
        Ok(Self { addr, kept, task })
    }

    /// `http://127.0.0.1:<port>`, for a bootstrap's `tracing.collector`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// How many spans arrived, kept or not.
    pub fn received(&self) -> u64 {
        self.kept
            .received
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    pub fn spans(&self) -> Vec<ReceivedSpan> {
        self.kept
            .spans
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

impl Drop for OtlpReceiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn attribute(attributes: &[KeyValue], key: &str) -> Option<String> {
    let value = attributes.iter().find(|kv| kv.key == key)?.value.as_ref()?;
    match value.value.as_ref()? {
        any_value::Value::StringValue(s) => Some(s.clone()),
        any_value::Value::IntValue(i) => Some(i.to_string()),
        any_value::Value::BoolValue(b) => Some(b.to_string()),
        _ => None,
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
