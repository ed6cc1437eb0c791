//! Accepts connections and serves HTTP/1.1 and HTTP/2 (prior knowledge) on them until
//! shutdown, then lets in-flight requests finish.

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use http::{HeaderValue, Request, Response};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use std::net::SocketAddr;

use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;
use tokio_util::either::Either;

use super::ResponseBody;
use crate::tls::{peer_identity, TlsContext};
use crate::upstream::{CONNECTION_WINDOW, STREAM_WINDOW};

/// Something that answers requests; implemented by the inbound and outbound handlers.
pub trait Handler: Send + Sync + 'static {
    fn handle(
        self: Arc<Self>,
        req: Request<Incoming>,
    ) -> impl Future<Output = Response<ResponseBody>> + Send + 'static;
}

/// How long a client gets to finish a TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

type Io = Either<TcpStream, TlsStream<TcpStream>>;

/// The verified identity of the connection's peer, in every request's extensions
/// (mTLS connections only). The header form is made once per connection, not per
/// request.
#[derive(Debug, Clone)]
pub struct PeerIdentity {
    pub id: Arc<str>,
    pub header: Option<HeaderValue>,
}

impl PeerIdentity {
    fn new(id: String) -> Self {
        let header = HeaderValue::from_str(&id).ok();
        Self {
            id: id.into(),
            header,
        }
    }
}

/// Serves until `shutdown` resolves, then drains for at most `drain`. With `tls`
/// every connection must be mTLS (STRICT): plaintext is refused.
pub async fn serve<H: Handler>(
    listener: TcpListener,
    handler: Arc<H>,
    tls: Option<Arc<TlsContext>>,
    shutdown: impl Future<Output = ()>,
    drain: Duration,
) {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(Duration::from_secs(30));
    builder
        .http2()
        .timer(TokioTimer::new())
        .initial_stream_window_size(STREAM_WINDOW)
        .initial_connection_window_size(CONNECTION_WINDOW)
        .max_concurrent_streams(1024);
    let graceful = GracefulShutdown::new();
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(error) => {
                    // Out of file descriptors and the like: back off briefly, keep serving.
                    tracing::warn!(%error, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        let (handler, tls, builder) = (handler.clone(), tls.clone(), builder.clone());
        let watcher = graceful.watcher();
        tokio::spawn(async move {
            let Some((io, identity)) = accept(stream, peer, tls.as_deref()).await else {
                return;
            };
            let service = service_fn(move |mut req: Request<Incoming>| {
                let handler = handler.clone();
                if let Some(peer) = &identity {
                    req.extensions_mut().insert(peer.clone());
                }
                async move { Ok::<_, Infallible>(handler.handle(req).await) }
            });
            let connection = builder
                .serve_connection(TokioIo::new(io), service)
                .into_owned();
            if let Err(error) = watcher.watch(connection).await {
                tracing::debug!(%peer, %error, "connection ended with an error");
            }
        });
    }
    drop(listener);
    if tokio::time::timeout(drain, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("connections still open after the drain period");
    }
}

/// Plaintext as it is, or (with `tls`) an mTLS handshake and the peer's identity;
/// `None` drops the connection.
async fn accept(
    stream: TcpStream,
    peer: SocketAddr,
    tls: Option<&TlsContext>,
) -> Option<(Io, Option<PeerIdentity>)> {
    let Some(tls) = tls else {
        return Some((Either::Left(stream), None));
    };
    let mut first = [0u8; 1];
    match tokio::time::timeout(HANDSHAKE_TIMEOUT, stream.peek(&mut first)).await {
        Ok(Ok(1)) => {}
        _ => return None,
    }
    // Every TLS connection starts with a handshake record (content type 22).
    if first[0] != 0x16 {
        tracing::warn!(%peer, "plaintext connection refused: this proxy requires mTLS (STRICT)");
        return None;
    }
    let Some(config) = tls.server_config() else {
        tracing::warn!(%peer, "mTLS connection refused: no workload certificate yet");
        return None;
    };
    match tokio::time::timeout(HANDSHAKE_TIMEOUT, TlsAcceptor::from(config).accept(stream)).await {
        Ok(Ok(stream)) => {
            let (_, conn) = stream.get_ref();
            let identity = peer_identity(conn);
            tracing::info!(
                %peer,
                peer_identity = identity.as_deref().unwrap_or("none"),
                version = ?conn.protocol_version(),
                alpn = ?conn.alpn_protocol().map(String::from_utf8_lossy),
                "mTLS connection accepted"
            );
            Some((Either::Right(stream), identity.map(PeerIdentity::new)))
        }
        Ok(Err(error)) => {
            tracing::warn!(%peer, %error, "mTLS handshake refused");
            None
        }
        Err(_) => {
            tracing::warn!(%peer, "mTLS handshake timed out");
            None
        }
    }
}
