//! An IO that replays bytes already read from it: detection consumes the first
//! bytes of a connection, and whatever serves it next (the HTTP server, a TLS
//! acceptor, the TCP forwarder) must read them as if nothing had happened.
//!
//! Writes pass straight through; only reads see the prefix.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Buf, Bytes};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// `prefix` is read first, then `io`.
#[derive(Debug)]
pub struct Prefixed<T> {
    prefix: Bytes,
    io: T,
}

impl<T> Prefixed<T> {
    pub fn new(prefix: Bytes, io: T) -> Self {
        Self { prefix, io }
    }

    /// The part of the prefix not yet read, and the IO.
    pub fn into_parts(self) -> (Bytes, T) {
        (self.prefix, self.io)
    }

    pub fn get_ref(&self) -> &T {
        &self.io
    }

    /// The prefix not yet read: what a caller that does not read through this
    /// IO would otherwise lose.
    pub fn prefix(&self) -> &Bytes {
        &self.prefix
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Prefixed<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.prefix.is_empty() {
            return Pin::new(&mut this.io).poll_read(cx, buf);
        }
        // Never mixes prefix and fresh bytes in one read: the prefix is already
        // here, so the read completes without touching the IO.
        let n = this.prefix.len().min(buf.remaining());
        buf.put_slice(&this.prefix[..n]);
        this.prefix.advance(n);
        Poll::Ready(Ok(()))
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Prefixed<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn reads_the_prefix_then_the_io() {
        let (mut peer, io) = tokio::io::duplex(64);
        let mut prefixed = Prefixed::new(Bytes::from_static(b"GET / "), io);
        peer.write_all(b"HTTP/1.1\r\n").await.unwrap();
        drop(peer);
        let mut all = Vec::new();
        prefixed.read_to_end(&mut all).await.unwrap();
        assert_eq!(all, b"GET / HTTP/1.1\r\n");
    }

    #[tokio::test]
    async fn a_small_read_takes_the_prefix_in_pieces() {
        let (_peer, io) = tokio::io::duplex(64);
        let mut prefixed = Prefixed::new(Bytes::from_static(b"abcde"), io);
        let mut two = [0u8; 2];
        prefixed.read_exact(&mut two).await.unwrap();
        assert_eq!(&two, b"ab");
        assert_eq!(&prefixed.prefix()[..], b"cde");
        let (rest, _io) = prefixed.into_parts();
        assert_eq!(&rest[..], b"cde");
    }

    #[tokio::test]
    async fn writes_and_shutdown_pass_through() {
        let (mut peer, io) = tokio::io::duplex(64);
        let mut prefixed = Prefixed::new(Bytes::from_static(b"unread"), io);
        prefixed.write_all(b"reply").await.unwrap();
        let slices = [io::IoSlice::new(b" and"), io::IoSlice::new(b" more")];
        let n = prefixed.write_vectored(&slices).await.unwrap();
        assert!(n > 0);
        prefixed.shutdown().await.unwrap();
        assert_eq!(
            prefixed.is_write_vectored(),
            prefixed.get_ref().is_write_vectored()
        );
        let mut all = Vec::new();
        peer.read_to_end(&mut all).await.unwrap();
        assert!(all.starts_with(b"reply and"), "{all:?}");
    }
}
