//! One upstream address with its balancer state and its connection.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, Ordering::Relaxed};
use std::sync::Arc;

use http::{Request, Response};
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;

use crate::telemetry::tcp::{CountedConnector, TcpCounters, TCP};

use super::origin::OriginConnector;
use super::RequestBody;
use super::{H2Connection, Outlier, TlsTarget};
use crate::balance::PeakEwma;

/// How a request reaches this endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Transport {
    /// Another Remora proxy: HTTP/2 (the app's HTTP/1 is restored on the far side).
    MeshH2,
    /// A plain HTTP/1.1 server.
    PlainH1,
    /// A plain HTTP/2 (h2c) server.
    PlainH2,
    /// An HTTP/1.1 server outside the mesh, over ordinary TLS.
    TlsH1,
    /// An HTTP/2 server outside the mesh, over ordinary TLS.
    TlsH2,
}

#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    #[error("connect to {addr} failed: {source}")]
    Connect {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("connect to {addr} timed out")]
    ConnectTimeout { addr: SocketAddr },
    #[error("TLS with {addr} failed: {source}")]
    Tls {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("no workload certificate yet for mTLS to {addr}")]
    NoCertificate { addr: SocketAddr },
    #[error("HTTP/2 handshake with {addr} failed: {source}")]
    Handshake {
        addr: SocketAddr,
        source: hyper::Error,
    },
    #[error("request to {addr} failed: {source}")]
    Request {
        addr: SocketAddr,
        source: hyper::Error,
    },
    #[error("request to {addr} failed: {source}")]
    Http1 {
        addr: SocketAddr,
        source: hyper_util::client::legacy::Error,
    },
}

impl UpstreamError {
    /// True when connecting took longer than the connect timeout.
    pub fn is_connect_timeout(&self) -> bool {
        match self {
            Self::ConnectTimeout { .. } => true,
            Self::Http1 { source, .. } if source.is_connect() => {
                let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(source);
                while let Some(e) = cause {
                    if let Some(io) = e.downcast_ref::<std::io::Error>() {
                        if io.kind() == std::io::ErrorKind::TimedOut {
                            return true;
                        }
                    }
                    cause = e.source();
                }
                false
            }
            _ => false,
        }
    }

    /// True when nothing reached the upstream (so the request was never seen there).
    pub fn is_connect(&self) -> bool {
        match self {
            Self::Connect { .. }
            | Self::ConnectTimeout { .. }
            | Self::Tls { .. }
            | Self::NoCertificate { .. }
            | Self::Handshake { .. } => true,
            Self::Http1 { source, .. } => source.is_connect(),
            Self::Request { .. } => false,
        }
    }
}

enum Connection {
    H2(H2Connection),
    // Boxed: the pool handle is large and most endpoints are HTTP/2.
    H1(Box<Client<CountedConnector, RequestBody>>),
    TlsH1(Box<Client<OriginConnector, RequestBody>>),
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Connection::H2(_) => "h2",
            Connection::H1(_) => "http/1.1",
            Connection::TlsH1(_) => "http/1.1 over TLS",
        })
    }
}

#[derive(Debug)]
pub struct Endpoint {
    addr: SocketAddr,
    /// `addr` as an authority, made once: HTTP/1 request URIs carry it.
    authority: http::uri::Authority,
    transport: Transport,
    /// For servers outside the mesh reached over TLS: the authority requests
    /// carry (their server name).
    origin_authority: Option<http::uri::Authority>,
    ewma: PeakEwma,
    in_flight: Arc<AtomicU32>,
    outlier: Outlier,
    connection: Connection,
    /// The SPIFFE id a meshed endpoint announced while this proxy has no
    /// certificate to prove itself with: it is reached in plaintext all the
    /// same (a PERMISSIVE peer accepts that), and a failure is explained.
    unproven_to: Option<Arc<str>>,
}

impl Endpoint {
    /// An endpoint of the local app (its connections count as inbound), with its
    /// own connection (HTTP/2) or a fresh HTTP/1 pool.
    pub fn new(addr: SocketAddr, transport: Transport) -> Self {
        let counters = &TCP.inbound_dst;
        Self::with_http1_pool(
            addr,
            transport,
            || super::registry::http1_client(super::ConnectionTimeouts::DEFAULT, counters),
            None,
            super::ConnectionTimeouts::DEFAULT,
            counters,
        )
    }

    /// `http1` makes the HTTP/1.1 pool, asked for only by HTTP/1 endpoints; `tls`:
    /// for meshed endpoints, the mTLS settings to reach them with.
    pub(super) fn with_http1_pool(
        addr: SocketAddr,
        transport: Transport,
        http1: impl FnOnce() -> Client<CountedConnector, RequestBody>,
        tls: Option<TlsTarget>,
        timeouts: super::ConnectionTimeouts,
        counters: &'static TcpCounters,
    ) -> Self {
        let origin = match &tls {
            Some(TlsTarget::Origin(origin)) => Some(origin.clone()),
            _ => None,
        };
        let connection = match (transport, &origin) {
            (Transport::TlsH1, Some(origin)) => Connection::TlsH1(Box::new(
                super::registry::origin_client(origin.clone(), timeouts),
            )),
            (Transport::PlainH1 | Transport::TlsH1, _) => Connection::H1(Box::new(http1())),
            (Transport::MeshH2 | Transport::PlainH2 | Transport::TlsH2, _) => {
                Connection::H2(H2Connection::new(addr, tls, timeouts, counters))
            }
        };
        let authority = http::uri::Authority::try_from(addr.to_string())
            .expect("a socket address is a valid authority");
        Self {
            addr,
            authority,
            transport,
            origin_authority: origin.map(|o| o.authority(addr.port())),
            ewma: PeakEwma::new(),
            in_flight: Arc::new(AtomicU32::new(0)),
            outlier: Outlier::default(),
            connection,
            unproven_to: None,
        }
    }

    /// Marks a meshed endpoint that announced `identity` but that this proxy,
    /// having no certificate, reaches in plaintext.
    pub(super) fn reached_without_certificate(mut self, identity: Option<Arc<str>>) -> Self {
        self.unproven_to = identity;
        self
    }

    /// The identity this endpoint announced, when this proxy has no
    /// certificate and so talks to it in plaintext (a STRICT peer refuses).
    pub fn reached_without_certificate_to(&self) -> Option<&str> {
        self.unproven_to.as_deref()
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn authority(&self) -> &http::uri::Authority {
        &self.authority
    }

    pub fn transport(&self) -> Transport {
        self.transport
    }

    /// The authority requests to a server outside the mesh carry (its TLS
    /// server name), if this is one.
    pub fn origin_authority(&self) -> Option<&http::uri::Authority> {
        self.origin_authority.as_ref()
    }

    /// How to open a connection of its own to this endpoint (opaque TCP): the
    /// connect timeout, and the mTLS it must verify when it is a meshed proxy.
    pub fn connect_settings(&self) -> (std::time::Duration, Option<&TlsTarget>) {
        match &self.connection {
            Connection::H2(conn) => (conn.connect_timeout(), conn.tls()),
            _ => (super::ConnectionTimeouts::DEFAULT.connect, None),
        }
    }

    pub fn outlier(&self) -> &Outlier {
        &self.outlier
    }

    pub fn ewma(&self) -> &PeakEwma {
        &self.ewma
    }

    pub fn in_flight(&self) -> u32 {
        self.in_flight.load(Relaxed)
    }

    /// Counts a request in flight until the returned guard drops (with the response
    /// body, so a long stream keeps counting).
    pub fn start(&self) -> InFlight {
        self.in_flight.fetch_add(1, Relaxed);
        InFlight(self.in_flight.clone())
    }

    /// Sends a request already shaped for this endpoint's transport: for HTTP/2 the
    /// URI carries the authority to present; for HTTP/1 the URI's authority is this
    /// endpoint's address and `Host` carries the authority.
    pub async fn send(
        &self,
        req: Request<RequestBody>,
    ) -> Result<Response<Incoming>, UpstreamError> {
        match &self.connection {
            Connection::H2(conn) => conn.send(req).await,
            Connection::H1(client) => {
                client
                    .request(req)
                    .await
                    .map_err(|source| UpstreamError::Http1 {
                        addr: self.addr,
                        source,
                    })
            }
            Connection::TlsH1(client) => {
                client
                    .request(req)
                    .await
                    .map_err(|source| UpstreamError::Http1 {
                        addr: self.addr,
                        source,
                    })
            }
        }
    }
}

/// Decrements an endpoint's in-flight count on drop.
#[derive(Debug)]
pub struct InFlight(Arc<AtomicU32>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Relaxed);
    }
}
