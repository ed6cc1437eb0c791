//! Accepts connections and serves HTTP/1.1 and HTTP/2 (prior knowledge) on them until
//! shutdown, then lets in-flight requests finish. While the proxy drains, HTTP/1
//! responses say `Connection: close`, so clients do not send another request on
//! a connection about to close (hyper alone would just close it after the
//! response).

use std::convert::Infallible;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use http::{header, HeaderValue, Method, Request, Response, StatusCode, Version};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;

use std::net::SocketAddr;

use tokio::net::TcpStream;
use tokio_rustls::server::TlsStream;

use crate::telemetry::tcp::Counted;
use tokio_rustls::TlsAcceptor;
use tokio_util::either::Either;

use super::ResponseBody;
use crate::drain::{Drain, Phase};
use crate::snapshot::Snapshot;
use crate::telemetry::HopStats;
use crate::tls::{peer_identity, TlsContext};
use crate::upstream::{CONNECTION_WINDOW, STREAM_WINDOW};
use remora_net::{Activity, IdleTimeout};

/// Something that answers requests; implemented by the inbound and outbound handlers.
pub trait Handler: Send + Sync + 'static {
    fn handle(
        self: Arc<Self>,
        req: Request<Incoming>,
    ) -> impl Future<Output = Response<ResponseBody>> + Send + 'static;
}

/// How long a client gets to finish a TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

type Io = Either<Counted<TcpStream>, TlsStream<Counted<TcpStream>>>;

/// How the mesh inbound listener accepts connections: mTLS always, plaintext only
/// while the inbound policy is PERMISSIVE (checked per connection, so a change of
/// mode applies to the next one).
pub struct MeshAccept {
    pub tls: Arc<TlsContext>,
    pub snapshot: Arc<arc_swap::ArcSwap<Snapshot>>,
    pub stats: Arc<InboundStats>,
}

/// Connections the inbound listener took and refused, by transport, and requests
/// authorization denied.
#[derive(Debug, Default)]
pub struct InboundStats {
    pub mtls_accepted: AtomicU64,
    pub mtls_refused: AtomicU64,
    pub plaintext_accepted: AtomicU64,
    pub plaintext_refused: AtomicU64,
    pub requests_denied: AtomicU64,
    pub rate_limited: AtomicU64,
    /// Requests refused for naming an app port that is not one of the
    /// Service's HTTP ports (`remora-target-port`).
    pub unknown_ports: AtomicU64,
    /// Opaque TCP connections refused by authorization.
    pub tcp_denied: AtomicU64,
}

impl InboundStats {
    pub fn to_json(&self) -> serde_json::Value {
        let n = |c: &AtomicU64| c.load(Ordering::Relaxed);
        serde_json::json!({
            "mtls_connections_accepted": n(&self.mtls_accepted),
            "mtls_connections_refused": n(&self.mtls_refused),
            "plaintext_connections_accepted": n(&self.plaintext_accepted),
            "plaintext_connections_refused": n(&self.plaintext_refused),
            "requests_denied": n(&self.requests_denied),
            "rate_limited": n(&self.rate_limited),
            "requests_for_unknown_ports": n(&self.unknown_ports),
            "tcp_connections_denied": n(&self.tcp_denied),
        })
    }
}

fn count(c: &AtomicU64) {
    c.fetch_add(1, Ordering::Relaxed);
}

/// The peer address of the connection, in every request's extensions.
#[derive(Debug, Clone, Copy)]
pub struct Remote(pub SocketAddr);

/// In the extensions of requests that arrived in plaintext on the mesh inbound
/// listener (PERMISSIVE).
#[derive(Debug, Clone, Copy)]
pub struct Plaintext;

/// Where a redirected connection was going (transparent mode), in its
/// requests' extensions.
#[derive(Debug, Clone, Copy)]
pub struct OriginalDestination(pub SocketAddr);

/// The verified identity of the connection's peer, in every request's extensions
/// (mTLS connections only). The header form is made once per connection, not per
/// request.
#[derive(Debug, Clone)]
pub struct PeerIdentity {
    pub id: Arc<str>,
    pub header: Option<HeaderValue>,
    /// The caller's metrics, resolved on the connection's first request and
    /// shared by the rest.
    pub hop: Arc<OnceLock<Arc<HopStats>>>,
}

impl PeerIdentity {
    fn new(id: String) -> Self {
        let header = HeaderValue::from_str(&id).ok();
        Self {
            id: id.into(),
            header,
            hop: Arc::default(),
        }
    }
}

/// How many connections a listener holds and how long one may idle.
#[derive(Debug, Clone, Copy)]
pub struct ListenerLimits {
    pub max_connections: usize,
    pub idle_timeout: Duration,
    /// The HTTP/2 header list this listener accepts: twice the request header
    /// limit, so a request the calling proxy let through, with the headers it
    /// adds, always fits and never costs the shared connection.
    pub max_header_list_size: u32,
}

impl ListenerLimits {
    /// The data listeners' limits.
    pub fn data(limits: &crate::limits::Limits) -> Self {
        Self {
            max_connections: limits.max_connections,
            idle_timeout: limits.idle_timeout,
            max_header_list_size: header_list_size(limits),
        }
    }

    /// The admin listener's: few connections, kept apart from the data
    /// listeners' so `/ready` answers while they are full.
    pub fn admin(limits: &crate::limits::Limits) -> Self {
        Self {
            max_connections: limits.admin_max_connections,
            idle_timeout: limits.idle_timeout.min(ADMIN_IDLE_TIMEOUT),
            max_header_list_size: header_list_size(limits),
        }
    }
}

fn header_list_size(limits: &crate::limits::Limits) -> u32 {
    u32::try_from(limits.max_request_header_bytes.saturating_mul(2)).unwrap_or(u32::MAX)
}

/// Scrapers and probes reconnect cheaply.
const ADMIN_IDLE_TIMEOUT: Duration = Duration::from_secs(60);

/// Serves HTTP/1.1 and HTTP/2 (prior knowledge) on connections the accept path
/// hands it, each watched for graceful shutdown.
pub struct HttpServer<H> {
    builder: auto::Builder<TokioExecutor>,
    handler: Arc<H>,
    idle_timeout: Duration,
    /// From this phase of the drain on, HTTP/1 responses close their connection.
    closing: Option<(Arc<Drain>, Phase)>,
}

/// What the accept path learned of a connection before HTTP: who the peer is,
/// how it came in, and (transparent mode) the Service its address belongs to.
#[derive(Debug, Clone, Default)]
pub struct ConnectionInfo {
    pub identity: Option<PeerIdentity>,
    /// Plaintext on the mesh inbound listener (PERMISSIVE).
    pub plaintext: bool,
    /// A request whose `Host` names no known Service goes to this authority
    /// (the Service whose cluster IP the app dialled).
    pub default_authority: Option<Arc<str>>,
    /// Where the connection was going before a redirect sent it here.
    pub original_destination: Option<SocketAddr>,
}

/// The authority of the Service whose cluster IP the connection was for, in
/// the requests' extensions (transparent mode).
#[derive(Debug, Clone)]
pub struct DefaultAuthority(pub Arc<str>);

impl<H: Handler> HttpServer<H> {
    pub fn new(handler: Arc<H>, limits: ListenerLimits) -> Self {
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
            .max_header_list_size(limits.max_header_list_size)
            .max_concurrent_streams(1024)
            // Upgrades (WebSocket) between proxies ride extended CONNECT.
            .enable_connect_protocol();
        Self {
            builder,
            handler,
            idle_timeout: limits.idle_timeout,
            closing: None,
        }
    }

    /// How long an HTTP/1 client gets to send a request's headers (30 s
    /// unless set): the admin port gives callers off loopback less.
    pub fn with_header_read_timeout(mut self, timeout: Duration) -> Self {
        self.builder.http1().header_read_timeout(timeout);
        self
    }

    /// From `from` on (see [`crate::drain`]), every HTTP/1 response carries
    /// `Connection: close` and its connection closes after it.
    pub fn with_drain(mut self, drain: Arc<Drain>, from: Phase) -> Self {
        self.closing = Some((drain, from));
        self
    }

    /// Serves one connection until it ends or shutdown has drained it.
    pub async fn serve_connection<I>(
        &self,
        io: I,
        peer: SocketAddr,
        info: ConnectionInfo,
        watcher: hyper_util::server::graceful::Watcher,
    ) where
        I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    {
        let activity = Arc::<Activity>::default();
        let io = IdleTimeout::new(io, self.idle_timeout, activity.clone());
        let handler = self.handler.clone();
        let ConnectionInfo {
            identity,
            plaintext,
            default_authority,
            original_destination,
        } = info;
        let original_destination = original_destination.map(OriginalDestination);
        let default_authority = default_authority.map(DefaultAuthority);
        let closing = self.closing.clone();
        let service = service_fn(move |mut req: Request<Incoming>| {
            let handler = handler.clone();
            // Upgrades and CONNECT tunnels keep their connection.
            // Looked at before cloning: most requests (HTTP/2 between proxies)
            // never close their connection this way.
            let may_close = ((req.version() == Version::HTTP_11
                || req.version() == Version::HTTP_10)
                && req.method() != Method::CONNECT)
                .then(|| closing.clone())
                .flatten();
            if let Some(peer) = &identity {
                req.extensions_mut().insert(peer.clone());
            }
            if plaintext {
                req.extensions_mut().insert(Plaintext);
            }
            if let Some(authority) = &default_authority {
                req.extensions_mut().insert(authority.clone());
            }
            if let Some(original) = original_destination {
                req.extensions_mut().insert(original);
            }
            req.extensions_mut().insert(Remote(peer));
            let in_flight = activity.request();
            // A combinator: an async block would hold the handler's future
            // twice (see `telemetry::observe`).
            futures::FutureExt::map(handler.handle(req), move |mut response| {
                drop(in_flight);
                if let Some((drain, from)) = &may_close {
                    if drain.phase() >= *from
                        && response.status() != StatusCode::SWITCHING_PROTOCOLS
                    {
                        response
                            .headers_mut()
                            .insert(header::CONNECTION, HeaderValue::from_static("close"));
                    }
                }
                Ok::<_, Infallible>(response)
            })
        });
        let connection = self
            .builder
            .serve_connection_with_upgrades(TokioIo::new(io), service)
            .into_owned();
        if let Err(error) = watcher.watch(connection).await {
            tracing::debug!(%peer, %error, "connection ended with an error");
        }
    }
}

/// Plaintext as it is, or (with `mesh`) an mTLS handshake and the peer's identity;
/// `None` drops the connection.
pub async fn accept(
    stream: Counted<TcpStream>,
    peer: SocketAddr,
    mesh: Option<&MeshAccept>,
) -> Option<(Io, Option<PeerIdentity>)> {
    let Some(mesh) = mesh else {
        return Some((Either::Left(stream), None));
    };
    let tls = &mesh.tls;
    let mut first = [0u8; 1];
    match tokio::time::timeout(HANDSHAKE_TIMEOUT, stream.get_ref().peek(&mut first)).await {
        Ok(Ok(1)) => {}
        _ => return None,
    }
    // Every TLS connection starts with a handshake record (content type 22).
    if first[0] != 0x16 {
        let snapshot = mesh.snapshot.load();
        let policy = snapshot.inbound.as_ref();
        if policy.is_some_and(|p| p.plaintext.is_some()) {
            count(&mesh.stats.plaintext_accepted);
            tracing::debug!(%peer, "plaintext connection accepted (PERMISSIVE)");
            return Some((Either::Left(stream), None));
        }
        count(&mesh.stats.plaintext_refused);
        tracing::warn!(%peer, listener = policy.map_or("", |p| p.name.as_str()), "plaintext connection refused: this proxy requires mTLS (STRICT)");
        return None;
    }
    let Some(config) = tls.server_config() else {
        count(&mesh.stats.mtls_refused);
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
            count(&mesh.stats.mtls_accepted);
            Some((Either::Right(stream), identity.map(PeerIdentity::new)))
        }
        Ok(Err(error)) => {
            count(&mesh.stats.mtls_refused);
            tracing::warn!(%peer, %error, "mTLS handshake refused");
            None
        }
        Err(_) => {
            count(&mesh.stats.mtls_refused);
            tracing::warn!(%peer, "mTLS handshake timed out");
            None
        }
    }
}
