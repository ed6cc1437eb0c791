//! Carries one opaque TCP connection end to end, whichever way it came: to a
//! Service's endpoints (outbound), to the local app (inbound, after the mesh
//! checked the caller), or straight to an address outside the mesh
//! (passthrough). Each counts its hop and writes one access-log line.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::time::Instant;

use super::connect::{connect, dial, ConnectError};
use super::reset::Socket;
use super::{forward, End};
use crate::detect::{OpaqueReason, Protocol};
use crate::telemetry::access_log::TcpEntry;
use crate::telemetry::tcp::TCP;
use crate::telemetry::tcp_hop::{TcpHop, TcpHopKey};
use crate::telemetry::{since_epoch, Metrics};
use crate::upstream::{Cluster, Endpoint};

/// What is known of a connection before it is carried, for its log line.
#[derive(Debug, Default, Clone)]
pub struct Facts {
    /// What detection saw and why the connection is opaque.
    pub detected: &'static str,
    pub opaque_reason: &'static str,
    pub original_destination: Option<SocketAddr>,
    pub sni: Option<String>,
    pub app_protocol: String,
    /// When the connection was accepted, if before this hop began (detection
    /// waited): the log line's duration counts from there.
    pub accepted: Option<Instant>,
}

impl Facts {
    /// What detection found, as the log line tells it.
    pub fn of(protocol: &Protocol, original_destination: Option<SocketAddr>) -> Self {
        let (detected, opaque_reason, sni) = match protocol {
            Protocol::Opaque(OpaqueReason::Declared) => ("declared", "declared", None),
            Protocol::Opaque(reason) => (protocol.label(), reason.reason(), None),
            // TLS from the app is its own business: carried as it is.
            Protocol::Tls { sni } => ("tls", "tls", sni.clone()),
            // HTTP to an address outside the mesh is passed through untouched.
            Protocol::Http1 | Protocol::H2 => (protocol.label(), "passthrough", None),
        };
        Self {
            detected,
            opaque_reason,
            original_destination,
            sni,
            app_protocol: String::new(),
            accepted: None,
        }
    }
}

/// One connection's hop and log line, finished whatever happens.
struct Record<'a> {
    metrics: &'a Metrics,
    hop: Arc<TcpHop>,
    entry: TcpEntry,
    started: Instant,
}

impl<'a> Record<'a> {
    fn start(metrics: &'a Metrics, key: TcpHopKey, facts: Facts) -> Self {
        let hop = metrics.tcp.hop(key.clone());
        TcpHop::count(&hop.opened);
        let started = facts.accepted.unwrap_or_else(Instant::now);
        let entry = TcpEntry {
            start_unix_ms: since_epoch().as_millis() as u64,
            direction: key.direction,
            protocol: "tcp",
            detected: facts.detected,
            opaque_reason: facts.opaque_reason,
            destination: key.destination,
            app_protocol: facts.app_protocol,
            original_destination: facts
                .original_destination
                .map(|a| a.to_string())
                .unwrap_or_default(),
            sni: facts.sni.unwrap_or_default(),
            peer_identity: key.peer_identity,
            ..Default::default()
        };
        Self {
            metrics,
            hop,
            entry,
            started,
        }
    }

    fn finish(mut self, sent: u64, received: u64, end: &'static str, error: String) {
        let lasted = self.started.elapsed();
        self.hop.finish(sent, received, lasted);
        self.entry.duration_ms = lasted.as_secs_f64() * 1e3;
        self.entry.bytes_sent = sent;
        self.entry.bytes_received = received;
        self.entry.end = end;
        self.entry.error = error;
        if let Some(log) = &self.metrics.access_log {
            log.write(&self.entry);
        }
    }
}

/// Forwards, then passes a reset on: a client whose server was reset sees a
/// reset (not a clean end it could take for a complete reply), and the other
/// way round.
async fn forward_passing_resets<C, S>(
    mut client: C,
    mut server: S,
    idle: Duration,
) -> super::Forwarded
where
    C: AsyncRead + AsyncWrite + Unpin + Socket,
    S: AsyncRead + AsyncWrite + Unpin + Socket,
{
    let done = forward(&mut client, &mut server, idle).await;
    match done.end {
        End::ServerReset(_) => client.reset_on_drop(),
        End::ClientReset(_) => server.reset_on_drop(),
        End::Closed | End::IdleTimeout => {}
    }
    done
}

fn end_label(end: End) -> (&'static str, String) {
    match end {
        End::ClientReset(kind) => (end.label(), format!("{kind}")),
        End::ServerReset(kind) => (end.label(), format!("{kind}")),
        _ => (end.label(), String::new()),
    }
}

/// Outbound: to one of `cluster`'s endpoints (mesh mTLS to a peer proxy, which
/// gets the app port in the transport header: the cluster's target port, else
/// `port`), then bytes both ways.
#[allow(clippy::too_many_arguments)]
pub async fn to_cluster<C>(
    client: C,
    cluster: &Cluster,
    pinned: Option<&Endpoint>,
    destination: String,
    port: u16,
    idle: Duration,
    metrics: &Metrics,
    facts: Facts,
) where
    C: AsyncRead + AsyncWrite + Unpin + Socket,
{
    let started = Instant::now();
    let connected = connect(cluster, port, pinned).await;
    let identity = match &connected {
        Ok(c) => c.peer_identity.as_deref().unwrap_or_default().to_owned(),
        Err(_) => String::new(),
    };
    let key = TcpHopKey {
        direction: "outbound",
        destination,
        peer_identity: identity,
    };
    let facts = Facts {
        accepted: Some(facts.accepted.unwrap_or(started)),
        ..facts
    };
    let mut record = Record::start(metrics, key, facts);
    match connected {
        Ok(server) => {
            record.entry.endpoint = server.endpoint.to_string();
            // Its place under the cluster's max_connections, until the end.
            let _place = server.place;
            let done = forward_passing_resets(client, server.io, idle).await;
            let (end, error) = end_label(done.end);
            record.finish(done.sent, done.received, end, error);
        }
        Err(error @ ConnectError::Overflow { .. }) => {
            tracing::debug!(cluster = %cluster.name, %error, "opaque TCP connection refused");
            record.finish(0, 0, "overflow", error.to_string());
        }
        Err(error) => {
            TcpHop::count(&record.hop.connect_failures);
            tracing::info!(cluster = %cluster.name, %error, "opaque TCP connection closed: no endpoint reachable");
            record.finish(0, 0, "connect_failed", error.to_string());
        }
    }
}

/// Inbound and passthrough: to `addr` in plaintext (the local app, or an
/// address outside the mesh), then bytes both ways.
#[allow(clippy::too_many_arguments)]
pub async fn to_address<C>(
    client: C,
    addr: SocketAddr,
    key: TcpHopKey,
    connect_timeout: Duration,
    idle: Duration,
    metrics: &Metrics,
    facts: Facts,
) where
    C: AsyncRead + AsyncWrite + Unpin + Socket,
{
    let mut record = Record::start(metrics, key, facts);
    record.entry.endpoint = addr.to_string();
    // The local app counts as inbound; an address outside the mesh as outbound.
    let counters = match record.entry.direction {
        "inbound" => &TCP.inbound_dst,
        _ => &TCP.outbound_dst,
    };
    match dial(addr, connect_timeout, counters).await {
        Ok(server) => {
            let done = forward_passing_resets(client, server, idle).await;
            let (end, error) = end_label(done.end);
            record.finish(done.sent, done.received, end, error);
        }
        Err(error @ (ConnectError::Io { .. } | ConnectError::Timeout { .. })) => {
            TcpHop::count(&record.hop.connect_failures);
            tracing::info!(%addr, %error, "opaque TCP connection closed: cannot reach its destination");
            record.finish(0, 0, "connect_failed", error.to_string());
        }
        Err(error) => record.finish(0, 0, "connect_failed", error.to_string()),
    }
}

/// A connection refused before it was carried (authorization, no destination):
/// counted and logged, then dropped by the caller.
pub fn refused(metrics: &Metrics, key: TcpHopKey, facts: Facts, end: &'static str, why: String) {
    let record = Record::start(metrics, key, facts);
    if end == "denied" {
        TcpHop::count(&record.hop.denied);
    }
    record.finish(0, 0, end, why);
}
