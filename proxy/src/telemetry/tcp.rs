//! TCP connections and bytes, per direction and peer: `src` connections are the
//! ones a listener accepted, `dst` the ones the proxy opened (to another proxy,
//! a server, or the local app). Bytes are counted on the wire, under TLS.
//!
//! The counters are process-wide: every connection bumps one of four sets, so
//! a read or write costs one relaxed atomic add.

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

#[derive(Debug, Default)]
pub struct TcpCounters {
    pub opened: AtomicU64,
    pub closed: AtomicU64,
    pub read_bytes: AtomicU64,
    pub written_bytes: AtomicU64,
    /// Accepted and closed at once: the listener was at its connection limit.
    pub refused: AtomicU64,
}

impl TcpCounters {
    pub const fn new() -> Self {
        Self {
            opened: AtomicU64::new(0),
            closed: AtomicU64::new(0),
            read_bytes: AtomicU64::new(0),
            written_bytes: AtomicU64::new(0),
            refused: AtomicU64::new(0),
        }
    }
}

/// `(direction, peer)` -> counters.
pub struct TcpMetrics {
    pub inbound_src: TcpCounters,
    pub inbound_dst: TcpCounters,
    pub outbound_src: TcpCounters,
    pub outbound_dst: TcpCounters,
}

/// The admin listener's connections: counted so every accepted connection has a
/// set, but not rendered (scrapes would count themselves).
pub static ADMIN: TcpCounters = TcpCounters::new();

pub static TCP: TcpMetrics = TcpMetrics {
    inbound_src: TcpCounters::new(),
    inbound_dst: TcpCounters::new(),
    outbound_src: TcpCounters::new(),
    outbound_dst: TcpCounters::new(),
};

impl TcpMetrics {
    pub fn all(&self) -> [(&'static str, &'static str, &TcpCounters); 4] {
        [
            ("inbound", "src", &self.inbound_src),
            ("inbound", "dst", &self.inbound_dst),
            ("outbound", "src", &self.outbound_src),
            ("outbound", "dst", &self.outbound_dst),
        ]
    }
}

/// A connection counted as open until dropped, with its bytes.
#[derive(Debug)]
pub struct Counted<T> {
    inner: T,
    counters: &'static TcpCounters,
}

impl<T> Counted<T> {
    pub fn new(inner: T, counters: &'static TcpCounters) -> Self {
        counters.opened.fetch_add(1, Relaxed);
        Self { inner, counters }
    }

    pub fn get_ref(&self) -> &T {
        &self.inner
    }
}

impl<T> Drop for Counted<T> {
    fn drop(&mut self) {
        self.counters.closed.fetch_add(1, Relaxed);
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Counted<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        let n = buf.filled().len().saturating_sub(before);
        if n > 0 {
            self.counters.read_bytes.fetch_add(n as u64, Relaxed);
        }
        polled
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Counted<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write(cx, buf);
        if let Poll::Ready(Ok(n)) = polled {
            self.counters.written_bytes.fetch_add(n as u64, Relaxed);
        }
        polled
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if let Poll::Ready(Ok(n)) = polled {
            self.counters.written_bytes.fetch_add(n as u64, Relaxed);
        }
        polled
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

impl<T: hyper_util::client::legacy::connect::Connection>
    hyper_util::client::legacy::connect::Connection for Counted<T>
{
    fn connected(&self) -> hyper_util::client::legacy::connect::Connected {
        self.inner.connected()
    }
}

/// The HTTP/1.1 pools' connector: TCP as `HttpConnector` makes it, counted.
#[derive(Clone)]
pub struct CountedConnector {
    pub http: hyper_util::client::legacy::connect::HttpConnector,
    pub counters: &'static TcpCounters,
}

type Connecting = Pin<
    Box<
        dyn std::future::Future<
                Output = io::Result<hyper_util::rt::TokioIo<Counted<tokio::net::TcpStream>>>,
            > + Send,
    >,
>;

impl tower::Service<http::Uri> for CountedConnector {
    type Response = hyper_util::rt::TokioIo<Counted<tokio::net::TcpStream>>;
    type Error = io::Error;
    type Future = Connecting;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        tower::Service::<http::Uri>::poll_ready(&mut self.http, cx).map_err(io::Error::other)
    }

    fn call(&mut self, uri: http::Uri) -> Self::Future {
        let connecting = tower::Service::call(&mut self.http, uri);
        let counters = self.counters;
        Box::pin(async move {
            let tcp = connecting.await.map_err(io::Error::other)?.into_inner();
            Ok(hyper_util::rt::TokioIo::new(Counted::new(tcp, counters)))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn bytes_and_lifetimes_are_counted() {
        static C: TcpCounters = TcpCounters::new();
        let (a, mut b) = tokio::io::duplex(64);
        let mut a = Counted::new(a, &C);
        a.write_all(b"hello").await.unwrap();
        b.write_all(b"hi").await.unwrap();
        let mut buf = [0; 2];
        a.read_exact(&mut buf).await.unwrap();
        assert_eq!(C.opened.load(Relaxed), 1);
        assert_eq!(C.closed.load(Relaxed), 0);
        drop(a);
        assert_eq!(C.closed.load(Relaxed), 1);
        assert_eq!(C.written_bytes.load(Relaxed), 5);
        assert_eq!(C.read_bytes.load(Relaxed), 2);
    }
}
