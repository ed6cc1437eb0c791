//! The accept loop every data listener runs: a connection cap, TCP counters,
//! one task per connection, and a drain on shutdown (HTTP connections finish
//! their requests and close; opaque ones get the drain period to end).

use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use hyper_util::server::graceful::{GracefulShutdown, Watcher};
use tokio::net::{TcpListener, TcpStream};

use crate::http::ListenerLimits;
use crate::telemetry::tcp::{Counted, TcpCounters};
use remora_net::Slots;

/// A connection as the listener hands it over.
pub struct Accepted {
    pub stream: Counted<TcpStream>,
    pub peer: SocketAddr,
    /// Where the listener is bound (a redirected connection's original
    /// destination differs).
    pub local: SocketAddr,
    /// Watches an HTTP connection for graceful shutdown.
    pub watcher: Watcher,
}

/// What serves the connections of one listener.
pub trait Connections: Send + Sync + 'static {
    fn serve(self: Arc<Self>, accepted: Accepted) -> impl Future<Output = ()> + Send + 'static;
}

/// How often the drain looks whether every connection has ended.
const DRAIN_POLL: Duration = Duration::from_millis(20);

/// Serves until `shutdown` resolves, then drains for at most `drain`. Over
/// `limits.max_connections`, a new connection is closed at once (counted in
/// `counters.refused`), so the process keeps descriptors for the rest.
pub async fn serve<C: Connections>(
    listener: TcpListener,
    connections: Arc<C>,
    counters: &'static TcpCounters,
    limits: ListenerLimits,
    shutdown: impl Future<Output = ()>,
    drain: Duration,
) {
    let graceful = GracefulShutdown::new();
    let slots = Slots::new(limits.max_connections);
    let local = listener.local_addr().ok();
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
        let Some(slot) = slots.take() else {
            // Closed at once: a client that holds connections open cannot take
            // the process's descriptors, and the refusal is visible.
            counters.refused.fetch_add(1, Ordering::Relaxed);
            tracing::debug!(%peer, limit = limits.max_connections, "connection refused: listener at its connection limit");
            drop(stream);
            continue;
        };
        let _ = stream.set_nodelay(true);
        let accepted = Accepted {
            local: local.unwrap_or(peer),
            stream: Counted::new(stream, counters),
            peer,
            watcher: graceful.watcher(),
        };
        let connections = connections.clone();
        tokio::spawn(async move {
            let _slot = slot;
            connections.serve(accepted).await;
        });
    }
    drop(listener);
    let drained = async {
        graceful.shutdown().await;
        // Opaque connections have no graceful close: they end on their own.
        while slots.open() > 0 {
            tokio::time::sleep(DRAIN_POLL).await;
        }
    };
    if tokio::time::timeout(drain, drained).await.is_err() {
        tracing::warn!(
            open = slots.open(),
            "connections still open after the drain period"
        );
    }
}

/// The IPv6 twin of a loopback or wildcard IPv4 listener on a fixed port
/// (`[::1]:7001` for `127.0.0.1:7001`, `[::]:7002` for `0.0.0.0:7002`, IPv6
/// only), so connections iptables redirects over IPv6 have somewhere to go.
/// `None` for port 0, other addresses, or a host without IPv6.
pub fn ipv6_twin(v4: std::net::SocketAddr) -> Option<TcpListener> {
    use std::net::{IpAddr, Ipv6Addr};
    let ip = match v4.ip() {
        IpAddr::V4(ip) if v4.port() != 0 && ip.is_loopback() => Ipv6Addr::LOCALHOST,
        IpAddr::V4(ip) if v4.port() != 0 && ip.is_unspecified() => Ipv6Addr::UNSPECIFIED,
        _ => return None,
    };
    let addr = std::net::SocketAddr::new(IpAddr::V6(ip), v4.port());
    let bound = (|| {
        let socket = socket2::Socket::new(socket2::Domain::IPV6, socket2::Type::STREAM, None)?;
        socket.set_only_v6(true)?;
        socket.set_reuse_address(true)?;
        socket.set_nonblocking(true)?;
        socket.bind(&addr.into())?;
        socket.listen(1024)?;
        TcpListener::from_std(socket.into())
    })();
    match bound {
        Ok(listener) => Some(listener),
        Err(error) => {
            tracing::debug!(%addr, %error, "no IPv6 twin listener (no IPv6 here?)");
            None
        }
    }
}
