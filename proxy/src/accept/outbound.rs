//! The outbound listener's connections: where was the app going, and how is it
//! carried. A connection the app addressed to the proxy itself (explicit mode,
//! `HTTP_PROXY`) is HTTP. One that iptables redirected (transparent mode) goes by
//! its original destination: a Service's cluster IP and port is carried as that
//! port declares (HTTP, or opaque TCP to the Service's endpoints); any other
//! address is passed through to where it was going, or refused.

use std::net::SocketAddr;
use std::sync::Arc;

use super::listener::{Accepted, Connections};
use super::Context;
use crate::detect::{self, Direction, OpaqueReason, Protocol};
use crate::http::{ConnectionInfo, HttpServer, Outbound};
use crate::tcp::carry::{self, Facts};
use crate::telemetry::tcp_hop::TcpHopKey;

pub struct OutboundConnections {
    pub context: Arc<Context>,
    pub http: Arc<HttpServer<Outbound>>,
}

impl Connections for OutboundConnections {
    async fn serve(self: Arc<Self>, accepted: Accepted) {
        let original = match crate::transparent::original_dst(accepted.stream.get_ref()) {
            Ok(Some(dst)) if dst != accepted.local => Some(dst),
            Ok(_) => None,
            Err(error) => {
                tracing::debug!(peer = %accepted.peer, %error, "cannot read the original destination");
                None
            }
        };
        match original {
            None => {
                let Accepted {
                    stream,
                    peer,
                    watcher,
                    ..
                } = accepted;
                self.http
                    .serve_connection(stream, peer, ConnectionInfo::default(), watcher)
                    .await
            }
            Some(dst) => self.transparent(accepted, dst).await,
        }
    }
}

impl OutboundConnections {
    async fn transparent(&self, accepted: Accepted, dst: SocketAddr) {
        let ctx = &self.context;
        let snapshot = ctx.snapshot.load_full();
        // A Service's cluster IP, else one of its endpoints dialled directly
        // (that endpoint is the one reached, for opaque TCP).
        let (destination, pinned) = match snapshot.destinations.by_address.get(&dst) {
            Some(d) => (d.clone(), None),
            None => match snapshot.destinations.by_endpoint.get(&dst) {
                Some(Some((d, endpoint))) => (d.clone(), Some(endpoint.clone())),
                _ => return self.passthrough(accepted, dst).await,
            },
        };
        super::to_destination(
            ctx,
            &self.http,
            accepted,
            snapshot,
            destination,
            pinned,
            Some(dst),
        )
        .await
    }

    /// An address outside the mesh: detect for the record (which ports carry
    /// what), then carry the bytes to where the app was going, unless the
    /// bootstrap says to refuse.
    async fn passthrough(&self, accepted: Accepted, dst: SocketAddr) {
        let ctx = &self.context;
        let key = TcpHopKey {
            direction: "outbound",
            destination: "passthrough".into(),
            peer_identity: String::new(),
        };
        if !ctx.passthrough {
            let facts = Facts {
                original_destination: Some(dst),
                ..Default::default()
            };
            tracing::info!(peer = %accepted.peer, %dst, "connection refused: its destination is no Service of the mesh (transparent.passthrough is off)");
            return carry::refused(
                &ctx.metrics,
                key,
                facts,
                "no_destination",
                format!("{dst} is no Service of the mesh"),
            );
        }
        let accepted_at = tokio::time::Instant::now();
        let (protocol, io) = if ctx.detect.opaque_ports.contains(dst.port()) {
            ctx.detect
                .stats
                .record(Direction::Outbound, dst.port(), "skipped");
            (
                Protocol::Opaque(OpaqueReason::Declared),
                detect::Prefixed::new(Default::default(), accepted.stream),
            )
        } else {
            match detect::detect(accepted.stream, ctx.detect.timeout).await {
                Ok(d) => {
                    ctx.detect
                        .stats
                        .record(Direction::Outbound, dst.port(), d.protocol.label());
                    (d.protocol, d.io)
                }
                Err(error) => {
                    tracing::debug!(peer = %accepted.peer, %error, "connection failed during detection");
                    return;
                }
            }
        };
        let facts = Facts {
            accepted: Some(accepted_at),
            ..Facts::of(&protocol, Some(dst))
        };
        carry::to_address(
            io,
            dst,
            key,
            ctx.connect_timeout,
            ctx.passthrough_idle,
            &ctx.metrics,
            facts,
        )
        .await
    }
}
