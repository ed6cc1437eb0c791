//! The inbound listener's connections: mesh mTLS (or plaintext while PERMISSIVE),
//! then HTTP to the app, or opaque TCP to one of the app's declared TCP ports.
//!
//! A peer proxy asks for opaque TCP with ALPN `remora-tcp/1` and names the app
//! port in the transport header; a redirected plaintext connection (transparent
//! mode) names it by its original destination port. Either way the port must be
//! the app port behind one of the Service's TCP ports (its `targetPort`, else
//! the port), and the caller must be authorized for it: a caller cannot reach
//! any other port of the app's host. HTTP goes to the app port the request
//! asks for (`http::target_port`), which needs the original destination too.

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::io::{AsyncRead, AsyncWrite};
use tokio_util::either::Either;

use super::listener::{Accepted, Connections};
use super::Context;
use crate::detect::{self, Direction, Prefixed, Protocol};
use crate::http::{accept, ConnectionInfo, HttpServer, Inbound, MeshAccept, PeerIdentity};
use crate::tcp::carry::{self, Facts};
use crate::tcp::{header, Socket};
use crate::telemetry::tcp_hop::TcpHopKey;
use crate::tls::ALPN_TCP;

pub struct InboundConnections {
    pub context: Arc<Context>,
    pub http: HttpServer<Inbound>,
    /// `None`: the proxy has no certificate, everything is plaintext.
    pub mesh: Option<Arc<MeshAccept>>,
}

impl Connections for InboundConnections {
    async fn serve(self: Arc<Self>, accepted: Accepted) {
        let Accepted {
            stream,
            peer,
            local,
            watcher,
        } = accepted;
        let original = crate::transparent::original_dst(stream.get_ref())
            .ok()
            .flatten()
            .filter(|dst| *dst != local);
        let Some((io, identity)) = accept(stream, peer, self.mesh.as_deref()).await else {
            return;
        };
        let io = match io {
            Either::Right(tls) if tls.get_ref().1.alpn_protocol() == Some(ALPN_TCP) => {
                return self.mesh_tcp(tls, identity, peer).await;
            }
            io => io,
        };
        let plaintext = matches!(io, Either::Left(_));
        // Plaintext: a redirected connection to a declared TCP port, or a peer
        // proxy without a certificate naming the port in the header.
        if plaintext {
            if let Some(port) = original.map(|o| o.port()).filter(|p| self.is_tcp_port(*p)) {
                self.context
                    .detect
                    .stats
                    .record(Direction::Inbound, port, "skipped");
                let facts = Facts {
                    detected: "declared",
                    opaque_reason: "declared",
                    original_destination: original,
                    ..Default::default()
                };
                return self.to_app(io, port, None, facts).await;
            }
        }
        let io = if plaintext {
            match self.plaintext_header(io, peer).await {
                Plain::Http(io) => io,
                Plain::Tcp(io, port) => {
                    let facts = Facts {
                        detected: "opaque",
                        opaque_reason: "mesh",
                        original_destination: original,
                        ..Default::default()
                    };
                    return self.to_app(io, port, None, facts).await;
                }
                Plain::Failed => return,
            }
        } else {
            Prefixed::new(Default::default(), io)
        };
        let info = ConnectionInfo {
            identity,
            plaintext: plaintext && self.mesh.is_some(),
            default_authority: None,
            // A plaintext HTTP caller is taken to the app port it dialled.
            original_destination: original,
        };
        self.http.serve_connection(io, peer, info, watcher).await
    }
}

impl InboundConnections {
    fn is_tcp_port(&self, port: u16) -> bool {
        let snapshot = self.context.snapshot.load();
        snapshot
            .inbound
            .as_ref()
            .is_some_and(|p| p.tcp.contains_key(&port))
    }

    /// On a plaintext connection, a peer proxy without a certificate sends the
    /// transport header first; anything else is HTTP, with the bytes read
    /// replayed.
    async fn plaintext_header<T: AsyncRead + AsyncWrite + Unpin>(
        &self,
        io: T,
        peer: SocketAddr,
    ) -> Plain<T> {
        let detected = match detect::detect(io, self.context.detect.timeout).await {
            Ok(d) => d,
            Err(error) => {
                tracing::debug!(%peer, %error, "inbound connection failed during detection");
                return Plain::Failed;
            }
        };
        let header = detected
            .io
            .prefix()
            .get(..header::LEN)
            .and_then(|h| header::decode(h.try_into().ok()?).ok());
        match (&detected.protocol, header) {
            (Protocol::Opaque(_), Some(port)) => {
                let (prefix, io) = detected.io.into_parts();
                Plain::Tcp(Prefixed::new(prefix.slice(header::LEN..), io), port)
            }
            _ => Plain::Http(detected.io),
        }
    }

    /// A peer proxy's opaque TCP over mTLS: the header, then the app port.
    async fn mesh_tcp<T: AsyncRead + AsyncWrite + Unpin + Socket>(
        &self,
        mut tls: T,
        identity: Option<PeerIdentity>,
        peer: SocketAddr,
    ) {
        let port = match header::read(&mut tls, self.context.detect.timeout.max(HEADER_TIMEOUT))
            .await
        {
            Ok(port) => port,
            Err(error) => {
                tracing::warn!(%peer, %error, "opaque TCP connection refused: bad transport header");
                return;
            }
        };
        let facts = Facts {
            detected: "mesh",
            opaque_reason: "mesh",
            ..Default::default()
        };
        self.to_app(tls, port, identity.as_ref().map(|i| i.id.as_ref()), facts)
            .await
    }

    /// Checks the port and the caller, then carries the connection to the app.
    async fn to_app<T: AsyncRead + AsyncWrite + Unpin + Socket>(
        &self,
        io: T,
        port: u16,
        identity: Option<&str>,
        facts: Facts,
    ) {
        let ctx = &self.context;
        let key = TcpHopKey {
            direction: "inbound",
            destination: format!(":{port}"),
            peer_identity: identity.unwrap_or_default().to_owned(),
        };
        let mut idle = crate::compile::DEFAULT_TCP_IDLE_TIMEOUT;
        let decision = {
            let snapshot = ctx.snapshot.load();
            match snapshot.inbound.as_ref().and_then(|p| p.tcp.get(&port)) {
                None => Err((
                    "no_destination",
                    format!("port {port} is not a TCP port of this Service"),
                )),
                Some(tcp) => {
                    idle = tcp.idle_timeout;
                    let authorization = match (identity, &tcp.plaintext) {
                        (Some(_), _) => Some(&tcp.mtls),
                        (None, Some(plaintext)) => Some(plaintext),
                        (None, None) => None,
                    };
                    match authorization {
                        None => Err(("denied", "plaintext is refused (STRICT)".to_owned())),
                        Some(a) => a
                            .check_connection(identity)
                            .map_err(|denied| ("denied", denied.reason())),
                    }
                }
            }
        };
        if let Err((end, why)) = decision {
            tracing::info!(port, peer_identity = identity.unwrap_or("none"), reason = %why, "opaque TCP connection refused");
            if end == "denied" {
                ctx.inbound_stats
                    .tcp_denied
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
            return carry::refused(&ctx.metrics, key, facts, end, why);
        }
        let app = ctx
            .app_ports
            .get(&port)
            .copied()
            .unwrap_or(SocketAddr::new(ctx.app_ip, port));
        if ctx.own_listeners.contains(app) {
            let why = format!("port {port} is one of the proxy's own listeners");
            tracing::warn!(
                port,
                peer_identity = identity.unwrap_or("none"),
                "opaque TCP connection refused: the Service's port is the proxy's own"
            );
            return carry::refused(&ctx.metrics, key, facts, "no_destination", why);
        }
        carry::to_address(io, app, key, ctx.connect_timeout, idle, &ctx.metrics, facts).await
    }
}

/// What a plaintext inbound connection turned out to be.
enum Plain<T> {
    Http(Prefixed<T>),
    /// A peer proxy's opaque TCP for this app port (header consumed).
    Tcp(Prefixed<T>, u16),
    Failed,
}

/// A peer proxy sends the header right after the handshake.
const HEADER_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);
