//! Connects an opaque TCP connection to one endpoint of a cluster: plain TCP to
//! a server outside the mesh, or mesh mTLS to a peer proxy (checking its SPIFFE
//! id, offering ALPN `remora-tcp/1`) followed by the transport header naming
//! the app port. Tries other endpoints when one cannot be reached, and tells
//! outlier detection how each attempt went. A cluster with `max_connections`
//! carries at most that many at once: the next is refused before any connect.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::ServerName;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;
use tokio_util::either::Either;

use crate::telemetry::tcp::{Counted, TcpCounters, TCP};
use crate::tls::ALPN_TCP;
use crate::upstream::{Cluster, Endpoint, Limit, OpenConnection, TlsTarget, Transport};

/// The server side of a carried connection.
pub type ServerIo = Either<Counted<TcpStream>, TlsStream<Counted<TcpStream>>>;

/// Endpoints tried at most for one connection.
const MAX_ATTEMPTS: usize = 3;

#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error("cluster {0} has no endpoint")]
    NoEndpoint(Arc<str>),
    #[error("connect to {addr} timed out")]
    Timeout { addr: SocketAddr },
    #[error("connect to {addr} failed: {source}")]
    Io {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("no workload certificate yet for mTLS to {addr}")]
    NoCertificate { addr: SocketAddr },
    #[error("mTLS with {addr} failed: {source}")]
    Tls {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("TLS to {addr} is not mesh mTLS (a server outside the mesh cannot take opaque TCP over TLS)")]
    Origin { addr: SocketAddr },
    /// The cluster carries as many connections as its `max_connections`.
    #[error("{reason}")]
    Overflow { reason: String },
}

/// A connection made: to which endpoint, and who it proved to be.
pub struct Connected {
    pub io: ServerIo,
    pub endpoint: SocketAddr,
    pub peer_identity: Option<Arc<str>>,
    /// Its place among the cluster's connections (with `max_connections`),
    /// given back when this is dropped: keep it for as long as the bytes flow.
    pub place: Option<OpenConnection>,
}

/// Balances over `cluster`'s endpoints, connecting to the first that answers
/// (at most [`MAX_ATTEMPTS`], each a different pick when there are several);
/// or to `pinned` alone, when the app dialled that endpoint itself. A peer
/// proxy is told the app port: the cluster's target port, else `port` (the
/// Service port).
pub async fn connect(
    cluster: &Cluster,
    port: u16,
    pinned: Option<&Endpoint>,
) -> Result<Connected, ConnectError> {
    let port = cluster.target_port.as_ref().map_or(port, |t| t.port);
    let place = match cluster.limits.max_connections {
        None => None,
        Some(limit) => match cluster.state.open_connection(limit) {
            Some(place) => Some(place),
            None => {
                cluster.state.stats.overflowed(Limit::MaxConnections);
                let reason = cluster.overflow_reason(Limit::MaxConnections);
                return Err(ConnectError::Overflow { reason });
            }
        },
    };
    let mut connected = connect_any(cluster, port, pinned).await?;
    connected.place = place;
    Ok(connected)
}

async fn connect_any(
    cluster: &Cluster,
    port: u16,
    pinned: Option<&Endpoint>,
) -> Result<Connected, ConnectError> {
    if let Some(endpoint) = pinned {
        let result = connect_endpoint(endpoint, port).await;
        cluster.record_outcome(endpoint, result.is_ok());
        return result;
    }
    let mut last = None;
    let mut tried: Vec<SocketAddr> = Vec::with_capacity(MAX_ATTEMPTS);
    for _ in 0..MAX_ATTEMPTS.min(cluster.endpoints.len().max(1)) {
        let Some(chosen) = pick_untried(cluster, &tried) else {
            break;
        };
        let endpoint = &chosen.endpoint;
        tried.push(endpoint.addr());
        let result = connect_endpoint(endpoint, port).await;
        cluster.record_outcome(endpoint, result.is_ok());
        match result {
            Ok(connected) => return Ok(connected),
            Err(error) => {
                tracing::debug!(cluster = %cluster.name, endpoint = %endpoint.addr(), %error, "TCP connect attempt failed");
                last = Some(error);
            }
        }
    }
    Err(last.unwrap_or_else(|| ConnectError::NoEndpoint(cluster.name.clone())))
}

fn pick_untried<'a>(
    cluster: &'a Cluster,
    tried: &[SocketAddr],
) -> Option<&'a crate::upstream::WeightedEndpoint> {
    // A few draws find an untried endpoint among several; then walk them.
    for _ in 0..4 {
        let e = cluster.pick(None)?;
        if !tried.contains(&e.endpoint.addr()) {
            return Some(e);
        }
    }
    cluster
        .endpoints
        .iter()
        .find(|e| !tried.contains(&e.endpoint.addr()))
}

async fn connect_endpoint(endpoint: &Endpoint, port: u16) -> Result<Connected, ConnectError> {
    let addr = endpoint.addr();
    let (timeout, tls) = endpoint.connect_settings();
    let stream = dial(addr, timeout, &TCP.outbound_dst).await?;
    match tls {
        None => {
            let mut stream = stream;
            // A peer proxy without mTLS (this proxy has no certificate, the
            // peer's Service is PERMISSIVE) still needs the app port.
            if endpoint.transport() == Transport::MeshH2 {
                stream
                    .write_all(&super::header::encode(port))
                    .await
                    .map_err(|source| ConnectError::Io { addr, source })?;
            }
            Ok(Connected {
                io: Either::Left(stream),
                endpoint: addr,
                peer_identity: None,
                place: None,
            })
        }
        Some(TlsTarget::Origin(_)) => Err(ConnectError::Origin { addr }),
        Some(TlsTarget::Mesh { context, expected }) => {
            let config = context
                .client_config_for(expected, ALPN_TCP)
                .ok_or(ConnectError::NoCertificate { addr })?;
            let server_name = ServerName::IpAddress(addr.ip().into());
            let handshake = TlsConnector::from(config).connect(server_name, stream);
            let mut tls = tokio::time::timeout(timeout.max(HANDSHAKE_MIN), handshake)
                .await
                .map_err(|_| ConnectError::Timeout { addr })?
                .map_err(|source| {
                    tracing::warn!(%addr, %expected, error = %source, "mTLS to upstream failed");
                    ConnectError::Tls { addr, source }
                })?;
            // Sent at once, not with the app's first bytes: with a server-first
            // protocol the far proxy must reach the app before anyone speaks.
            tls.write_all(&super::header::encode(port))
                .await
                .map_err(|source| ConnectError::Tls { addr, source })?;
            Ok(Connected {
                io: Either::Right(tls),
                endpoint: addr,
                peer_identity: Some(expected.clone()),
                place: None,
            })
        }
    }
}

/// A handshake gets at least this long, however short the connect timeout.
const HANDSHAKE_MIN: Duration = Duration::from_secs(1);

/// A plain TCP connection, within `timeout`, counted in `counters` (the
/// outbound or inbound side's connections the proxy opened).
pub async fn dial(
    addr: SocketAddr,
    timeout: Duration,
    counters: &'static TcpCounters,
) -> Result<Counted<TcpStream>, ConnectError> {
    let stream = tokio::time::timeout(timeout, TcpStream::connect(addr))
        .await
        .map_err(|_| ConnectError::Timeout { addr })?
        .map_err(|source| ConnectError::Io { addr, source })?;
    let _ = stream.set_nodelay(true);
    Ok(Counted::new(stream, counters))
}
