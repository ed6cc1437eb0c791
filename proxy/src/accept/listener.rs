//! The accept loop every data listener runs: a connection cap, TCP counters,
//! one task per connection, and a drain on shutdown (the listener closes at
//! once; HTTP/1 connections close after the response in flight, HTTP/2 ones get
//! GOAWAY and finish their streams; opaque ones get until the drain's deadline
//! to end).

use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use hyper_util::server::graceful::{GracefulShutdown, Watcher};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::Instant;

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

/// Serves until `stop` resolves with the time by which the drain must be over,
/// then stops accepting and drains until every connection has ended or that
/// time has come. Returns how many connections were still open then (0: all
/// ended). Over `limits.max_connections`, a new connection is closed at once
/// (counted in `counters.refused`), so the process keeps descriptors for the
/// rest.
pub async fn serve<C: Connections>(
    listener: TcpListener,
    connections: Arc<C>,
    counters: &'static TcpCounters,
    limits: ListenerLimits,
    stop: impl Future<Output = Instant>,
) -> usize {
    let graceful = GracefulShutdown::new();
    let slots = Slots::new(limits.max_connections);
    let local = listener.local_addr().ok();
    tokio::pin!(stop);
    let deadline = loop {
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
            deadline = &mut stop => break deadline,
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
    };
    // Closed now: a new connection is refused by the kernel, so a caller that
    // still tries this address fails fast and picks another endpoint.
    drop(listener);
    let drained = async {
        graceful.shutdown().await;
        // Opaque connections have no graceful close: they end on their own.
        while slots.open() > 0 {
            tokio::time::sleep(DRAIN_POLL).await;
        }
    };
    if tokio::time::timeout_at(deadline, drained).await.is_err() {
        let open = slots.open();
        tracing::warn!(
            listener = ?local,
            open,
            "connections still open at the drain's deadline"
        );
        return open;
    }
    0
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

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicUsize;

    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;
    use crate::telemetry::tcp::TcpCounters;

    /// Echoes one message per connection, counting the connections it served.
    struct Echo(AtomicUsize);

    impl Connections for Echo {
        async fn serve(self: Arc<Self>, mut a: Accepted) {
            self.0.fetch_add(1, Ordering::Relaxed);
            let mut buf = [0u8; 16];
            if let Ok(n) = a.stream.read(&mut buf).await {
                let _ = a.stream.write_all(&buf[..n]).await;
            }
            // Hold the connection (and its slot) until the client goes.
            let _ = a.stream.read(&mut buf).await;
        }
    }

    fn limits(max_connections: usize) -> ListenerLimits {
        ListenerLimits {
            max_connections,
            idle_timeout: Duration::from_secs(60),
            max_header_list_size: 64 * 1024,
        }
    }

    #[tokio::test]
    async fn over_the_cap_a_connection_is_closed_at_once_and_counted() {
        static COUNTERS: TcpCounters = TcpCounters::new();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let echo = Arc::new(Echo(AtomicUsize::new(0)));
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let served = tokio::spawn(serve(listener, echo.clone(), &COUNTERS, limits(1), async {
            let _ = stopped.await;
            Instant::now() + Duration::from_secs(1)
        }));
        let mut first = TcpStream::connect(addr).await.unwrap();
        first.write_all(b"hi").await.unwrap();
        let mut buf = [0u8; 2];
        first.read_exact(&mut buf).await.unwrap();
        // The one slot is taken: the next connection reads end-of-stream.
        let mut second = TcpStream::connect(addr).await.unwrap();
        let n = second.read(&mut [0u8; 4]).await.unwrap_or(0);
        assert_eq!(n, 0);
        assert_eq!(COUNTERS.refused.load(Ordering::Relaxed), 1);
        assert_eq!(echo.0.load(Ordering::Relaxed), 1);
        // Once the first goes, its slot is free again.
        drop(first);
        let mut third = loop {
            let mut c = TcpStream::connect(addr).await.unwrap();
            c.write_all(b"ok").await.unwrap();
            let mut buf = [0u8; 2];
            if c.read_exact(&mut buf).await.is_ok() {
                break c;
            }
            tokio::task::yield_now().await;
        };
        third.shutdown().await.unwrap();
        let _ = stop.send(());
        served.await.unwrap();
    }

    /// Answers every request, once `release` is notified when `hold` is set,
    /// telling `arrived` first.
    struct Slow {
        hold: bool,
        arrived: tokio::sync::Notify,
        release: tokio::sync::Notify,
    }

    impl crate::http::Handler for Slow {
        #[allow(clippy::manual_async_fn)] // the trait's signature, spelled out
        fn handle(
            self: Arc<Self>,
            _req: http::Request<hyper::body::Incoming>,
        ) -> impl Future<Output = http::Response<crate::http::ResponseBody>> + Send + 'static
        {
            async move {
                self.arrived.notify_one();
                if self.hold {
                    self.release.notified().await;
                }
                http::Response::new(http_body_util::Either::Right(http_body_util::Full::new(
                    bytes::Bytes::from_static(b"done"),
                )))
            }
        }
    }

    /// An HTTP listener that drains with `drain` (HTTP/1 closing from
    /// `Leaving`), stopping when it reaches `ClosingInbound`.
    async fn http_listener(
        drain: Arc<crate::drain::Drain>,
        hold: bool,
    ) -> (SocketAddr, Arc<Slow>, tokio::task::JoinHandle<usize>) {
        use crate::drain::Phase;
        static COUNTERS: TcpCounters = TcpCounters::new();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let slow = Arc::new(Slow {
            hold,
            arrived: tokio::sync::Notify::new(),
            release: tokio::sync::Notify::new(),
        });
        let server = crate::http::HttpServer::new(slow.clone(), limits(8))
            .with_drain(drain.clone(), Phase::Leaving);
        let served = tokio::spawn(serve(
            listener,
            Arc::new(crate::accept::HttpOnly(server)),
            &COUNTERS,
            limits(8),
            async move { drain.reached(Phase::ClosingInbound).await },
        ));
        (addr, slow, served)
    }

    /// Whether connections to `addr` come to be refused (the accept loop sees
    /// the stop on its next turn).
    async fn refused(addr: SocketAddr) -> bool {
        for _ in 0..250 {
            if TcpStream::connect(addr).await.is_err() {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        false
    }

    async fn h1_get(addr: SocketAddr) -> http::Response<hyper::body::Incoming> {
        let stream = TcpStream::connect(addr).await.unwrap();
        let (mut sender, conn) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
                .await
                .unwrap();
        tokio::spawn(conn);
        let req = http::Request::get("/")
            .header("host", "orders")
            .body(http_body_util::Empty::<bytes::Bytes>::new())
            .unwrap();
        sender.send_request(req).await.unwrap()
    }

    #[tokio::test]
    async fn while_draining_http1_responses_say_connection_close() {
        let drain = Arc::new(crate::drain::Drain::default());
        let (addr, _slow, served) = http_listener(drain.clone(), false).await;
        let before = h1_get(addr).await;
        assert_eq!(before.status(), 200);
        assert_eq!(before.headers().get(http::header::CONNECTION), None);
        // Leaving: still accepted and served, but each connection closes
        // after its response.
        drain.begin(Duration::from_secs(30));
        let during = h1_get(addr).await;
        assert_eq!(during.status(), 200);
        assert_eq!(
            during.headers().get(http::header::CONNECTION).unwrap(),
            "close"
        );
        drain.advance(crate::drain::Phase::ClosingInbound);
        assert_eq!(served.await.unwrap(), 0, "every connection ended");
    }

    #[tokio::test]
    async fn an_h2_request_in_flight_finishes_after_the_listener_closed() {
        let drain = Arc::new(crate::drain::Drain::default());
        let (addr, slow, served) = http_listener(drain.clone(), true).await;
        let stream = TcpStream::connect(addr).await.unwrap();
        let (mut sender, conn) = hyper::client::conn::http2::handshake(
            hyper_util::rt::TokioExecutor::new(),
            hyper_util::rt::TokioIo::new(stream),
        )
        .await
        .unwrap();
        let conn = tokio::spawn(conn);
        let req = http::Request::get("http://orders/")
            .body(http_body_util::Empty::<bytes::Bytes>::new())
            .unwrap();
        let response = tokio::spawn(sender.send_request(req));
        slow.arrived.notified().await;
        drain.begin(Duration::from_secs(30));
        drain.advance(crate::drain::Phase::ClosingInbound);
        // The listener is closed: new connections are refused.
        assert!(refused(addr).await, "the listener still accepts");
        // The request in flight is answered on its connection...
        slow.release.notify_one();
        let response = response.await.unwrap().unwrap();
        assert_eq!(response.status(), 200);
        // ...which then ends (GOAWAY, then close), so the drain ends too.
        assert_eq!(served.await.unwrap(), 0);
        let _ = conn.await;
    }

    #[test]
    fn only_loopback_and_wildcard_listeners_on_fixed_ports_get_an_ipv6_twin() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let _guard = rt.enter();
        assert!(ipv6_twin("127.0.0.1:0".parse().unwrap()).is_none());
        assert!(ipv6_twin("10.0.0.1:7001".parse().unwrap()).is_none());
    }
}
