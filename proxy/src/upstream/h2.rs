//! One shared HTTP/2 connection to an endpoint, made on first use and remade when it
//! closes. Requests multiplex over it; a single connect is in progress at a time.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwapOption;
use http::{Request, Response};
use hyper::body::Incoming;
use hyper::client::conn::http2::{self, SendRequest};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::net::TcpStream;

use rustls::pki_types::ServerName;
use tokio_rustls::TlsConnector;

use super::RequestBody;
use super::{OriginClient, UpstreamError};
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
    connect_timeout: Duration,
    tls: Option<TlsTarget>,
    current: ArcSwapOption<SendRequest<RequestBody>>,
    connecting: tokio::sync::Mutex<()>,
}

impl H2Connection {
    pub fn new(addr: SocketAddr, tls: Option<TlsTarget>, connect_timeout: Duration) -> Self {
        Self {
            addr,
            connect_timeout,
            tls,
            current: ArcSwapOption::empty(),
            connecting: tokio::sync::Mutex::new(()),
        }
    }

    pub async fn send(
        &self,
        req: Request<RequestBody>,
    ) -> Result<Response<Incoming>, UpstreamError> {
        let mut sender = self.sender().await?;
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
        self.current.store(Some(Arc::new(sender.clone())));
        Ok(sender)
    }

    fn live(&self) -> Option<SendRequest<RequestBody>> {
        let guard = self.current.load();
        guard
            .as_ref()
            .filter(|s| !s.is_closed())
            .map(|s| SendRequest::clone(s))
    }

    async fn connect(&self) -> Result<SendRequest<RequestBody>, UpstreamError> {
        let addr = self.addr;
        let stream = tokio::time::timeout(self.connect_timeout, TcpStream::connect(addr))
            .await
            .map_err(|_| UpstreamError::ConnectTimeout { addr })?
            .map_err(|source| UpstreamError::Connect { addr, source })?;
        let _ = stream.set_nodelay(true);
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
