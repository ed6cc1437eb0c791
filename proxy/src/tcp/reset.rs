//! Passing a reset on. When one side of a forwarded connection was reset, the
//! other side should see a reset too, not a clean end-of-stream: a client must
//! not take a truncated reply for a complete one.
//!
//! `SO_LINGER` with a zero timeout makes closing the socket send RST instead of
//! FIN, discarding anything unsent. tokio deprecates `set_linger` (a non-zero
//! linger blocks the thread on drop) and, since 1.50, offers `set_zero_linger`,
//! which cannot block: that is the one used here, so no `socket2` dependency.

use tokio::net::TcpStream;
use tokio_util::either::Either;

use crate::detect::Prefixed;
use crate::telemetry::tcp::Counted;

/// An IO with a TCP socket underneath (plain, counted, replayed or TLS), so a
/// reset can be passed on whatever is layered over the socket.
pub trait Socket {
    /// Closing it will send RST (see [`reset_on_drop`]).
    fn reset_on_drop(&self);
}

impl Socket for TcpStream {
    fn reset_on_drop(&self) {
        reset_on_drop(self)
    }
}

impl<T: Socket> Socket for Counted<T> {
    fn reset_on_drop(&self) {
        self.get_ref().reset_on_drop()
    }
}

impl<T: Socket> Socket for Prefixed<T> {
    fn reset_on_drop(&self) {
        self.get_ref().reset_on_drop()
    }
}

impl<T: Socket> Socket for tokio_rustls::server::TlsStream<T> {
    fn reset_on_drop(&self) {
        self.get_ref().0.reset_on_drop()
    }
}

impl<T: Socket> Socket for tokio_rustls::client::TlsStream<T> {
    fn reset_on_drop(&self) {
        self.get_ref().0.reset_on_drop()
    }
}

impl<A: Socket, B: Socket> Socket for Either<A, B> {
    fn reset_on_drop(&self) {
        match self {
            Either::Left(a) => a.reset_on_drop(),
            Either::Right(b) => b.reset_on_drop(),
        }
    }
}

/// A tunnel an HTTP server handed over (`CONNECT`): its socket is hyper's, so a
/// reset reaches the client as a close.
pub struct Tunnel<T>(pub T);

impl<T> Socket for Tunnel<T> {
    fn reset_on_drop(&self) {}
}

impl<T: tokio::io::AsyncRead + Unpin> tokio::io::AsyncRead for Tunnel<T> {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl<T: tokio::io::AsyncWrite + Unpin> tokio::io::AsyncWrite for Tunnel<T> {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::pin::Pin::new(&mut self.0).poll_write(cx, buf)
    }

    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.0).poll_shutdown(cx)
    }
}

/// Makes dropping `stream` reset the connection. If the option cannot be set,
/// the peer sees an ordinary close: worth a log line, not an error to handle.
pub fn reset_on_drop(stream: &TcpStream) {
    if let Err(e) = stream.set_zero_linger() {
        tracing::debug!(error = %e, "SO_LINGER 0 not set; the peer will see a close, not a reset");
    }
}

#[cfg(test)]
mod tests {
    use std::io;

    use tokio::io::AsyncReadExt;
    use tokio::net::TcpListener;

    use super::*;

    async fn connected() -> (TcpStream, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (client, accepted) = tokio::join!(TcpStream::connect(addr), listener.accept());
        (client.unwrap(), accepted.unwrap().0)
    }

    #[tokio::test]
    async fn the_peer_reads_a_reset_after_the_drop() {
        let (client, mut accepted) = connected().await;
        reset_on_drop(&client);
        drop(client);
        let mut buf = [0u8; 8];
        let err = accepted.read(&mut buf).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::ConnectionReset);
    }

    #[tokio::test]
    async fn without_it_the_peer_reads_end_of_stream() {
        let (client, mut accepted) = connected().await;
        drop(client);
        let mut buf = [0u8; 8];
        assert_eq!(accepted.read(&mut buf).await.unwrap(), 0);
    }
}
