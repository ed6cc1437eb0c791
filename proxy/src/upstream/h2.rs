//! One shared HTTP/2 connection to an endpoint, made on first use and remade when it
//! closes. Requests multiplex over it; a single connect is in progress at a time.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use tokio::time::Instant;

use arc_swap::ArcSwapOption;
use http::{Request, Response};
use hyper::body::Incoming;
use hyper::client::conn::http2::{self, SendRequest};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::net::TcpStream;

use rustls::pki_types::ServerName;
use tokio_rustls::TlsConnector;

use super::RequestBody;
use super::{ConnectionTimeouts, OriginClient, UpstreamError};
use crate::telemetry::tcp::{Counted, TcpCounters};
use crate::tls::TlsContext;

/// Flow-control windows between proxies: large and fixed, so a request rarely waits
/// for a WINDOW_UPDATE and no BDP pings are sent (adaptive windows cost a ping per
/// estimate on every connection).
pub const STREAM_WINDOW: u32 = 1024 * 1024;
pub const CONNECTION_WINDOW: u32 = 4 * 1024 * 1024;

/// Where a TLS connection must end.
#[derive(Clone)]
pub enum TlsTarget {
    /// A proxy presenting `expected`, over mesh mTLS.
    Mesh {
        context: Arc<TlsContext>,
        expected: Arc<str>,
    },
    /// A server outside the mesh, over ordinary TLS.
    Origin(Arc<OriginClient>),
}

pub struct H2Connection {
    addr: SocketAddr,
    timeouts: ConnectionTimeouts,
    /// When a request last went out, in ms since `idle_base()`.
    last_used: Arc<AtomicU64>,
    tls: Option<TlsTarget>,
    current: Arc<ArcSwapOption<SendRequest<RequestBody>>>,
    connecting: tokio::sync::Mutex<()>,
    counters: &'static TcpCounters,
}

impl H2Connection {
    pub fn new(
        addr: SocketAddr,
        tls: Option<TlsTarget>,
        timeouts: ConnectionTimeouts,
        counters: &'static TcpCounters,
    ) -> Self {
        Self {
            counters,
            addr,
            timeouts,
            last_used: Arc::new(AtomicU64::new(0)),
            tls,
            current: Arc::new(ArcSwapOption::empty()),
            connecting: tokio::sync::Mutex::new(()),
        }
    }

    pub async fn send(
        &self,
        req: Request<RequestBody>,
    ) -> Result<Response<Incoming>, UpstreamError> {
        // The connection is made rarely, and its future (a TLS handshake among
        // it) is tens of KB: boxed, so the future of every request stays small
        // and cheap to move.
        let mut sender = match self.live() {
            Some(s) => s,
            None => Box::pin(self.sender()).await?,
        };
        sender
            .send_request(req)
            .await
            .map_err(|source| UpstreamError::Request {
                addr: self.addr,
                source,
            })
    }

    async fn sender(&self) -> Result<SendRequest<RequestBody>, UpstreamError> {
        if let Some(s) = self.live() {
            return Ok(s);
        }
        let _connecting = self.connecting.lock().await;
        if let Some(s) = self.live() {
            return Ok(s);
        }
        let sender = self.connect().await?;
        let stored = Arc::new(sender.clone());
        self.current.store(Some(stored.clone()));
        self.watch_idle(stored);
        Ok(sender)
    }

    /// Lets go of the connection once it has carried no request for the idle
    /// timeout: with the last handle gone and no stream open, hyper closes it.
    fn watch_idle(&self, sender: Arc<SendRequest<RequestBody>>) {
        let (idle, last_used, addr) = (self.timeouts.idle, self.last_used.clone(), self.addr);
        // A new connection counts as used now.
        last_used.store(now_ms(), Ordering::Relaxed);
        let current = Arc::downgrade(&sender);
        drop(sender);
        // The slot, to clear it; held weakly so a dropped endpoint ends the task.
        let slot = Arc::downgrade(&self.slot());
        tokio::spawn(async move {
            loop {
                let since = Duration::from_millis(
                    now_ms().saturating_sub(last_used.load(Ordering::Relaxed)),
                );
                if since < idle {
                    tokio::time::sleep(idle - since).await;
                    continue;
                }
                let (Some(slot), Some(current)) = (slot.upgrade(), current.upgrade()) else {
                    return;
                };
                // Only this connection's handle; a newer one is watched by its own task.
                let _ = slot.compare_and_swap(&Some(current), None);
                tracing::debug!(%addr, ?idle, "upstream connection idle: closing");
                return;
            }
        });
    }

    fn slot(&self) -> Arc<ArcSwapOption<SendRequest<RequestBody>>> {
        self.current.clone()
    }

    fn live(&self) -> Option<SendRequest<RequestBody>> {
        let guard = self.current.load();
        guard
            .as_ref()
            .filter(|s| !s.is_closed())
            .map(|s| SendRequest::clone(s))
    }

    pub fn connect_timeout(&self) -> std::time::Duration {
        self.timeouts.connect
    }

    pub fn tls(&self) -> Option<&TlsTarget> {
        self.tls.as_ref()
    }

    async fn connect(&self) -> Result<SendRequest<RequestBody>, UpstreamError> {
        let addr = self.addr;
        let stream = tokio::time::timeout(self.timeouts.connect, TcpStream::connect(addr))
            .await
            .map_err(|_| UpstreamError::ConnectTimeout { addr })?
            .map_err(|source| UpstreamError::Connect { addr, source })?;
        let _ = stream.set_nodelay(true);
        let stream = Counted::new(stream, self.counters);
        let Some(tls) = &self.tls else {
            return handshake(addr, TokioIo::new(stream)).await;
        };
        let (context, expected) = match tls {
            TlsTarget::Mesh { context, expected } => (context, expected),
            TlsTarget::Origin(origin) => {
                let stream = origin
                    .connect(stream)
                    .await
                    .map_err(|source| UpstreamError::Tls { addr, source })?;
                return handshake(addr, TokioIo::new(stream)).await;
            }
        };
        let config = context
            .client_config(expected)
            .ok_or(UpstreamError::NoCertificate { addr })?;
        let server_name = ServerName::IpAddress(addr.ip().into());
        let stream = TlsConnector::from(config)
            .connect(server_name, stream)
            .await
            .map_err(|source| {
                // A peer that fails verification is a security event, not noise.
                tracing::warn!(%addr, %expected, error = %source, "mTLS to upstream failed");
                UpstreamError::Tls { addr, source }
            })?;
        handshake(addr, TokioIo::new(stream)).await
    }
}

async fn handshake<T>(addr: SocketAddr, io: T) -> Result<SendRequest<RequestBody>, UpstreamError>
where
    T: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let (sender, connection) = http2::Builder::new(TokioExecutor::new())
        .timer(TokioTimer::new())
        .initial_stream_window_size(STREAM_WINDOW)
        .initial_connection_window_size(CONNECTION_WINDOW)
        .handshake(io)
        .await
        .map_err(|source| UpstreamError::Handshake { addr, source })?;
    tokio::spawn(async move {
        if let Err(error) = connection.await {
            tracing::debug!(%addr, %error, "upstream HTTP/2 connection ended");
        }
    });
    tracing::debug!(%addr, "upstream HTTP/2 connection established");
    Ok(sender)
}

/// Milliseconds since the first use in this process (a clock for idle checks).
fn now_ms() -> u64 {
    static BASE: OnceLock<Instant> = OnceLock::new();
    BASE.get_or_init(Instant::now).elapsed().as_millis() as u64
}
