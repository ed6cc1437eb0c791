//! Copy buffers held only while bytes move. An opaque connection that is
//! waiting (most of them, most of the time: pooled database connections, idle
//! clients) holds no buffer; one is taken from a small per-thread pool for each
//! read and given back as soon as what was read has been written, so memory
//! follows the traffic rather than the connection count (HAProxy does the same).
//!
//! The rest is tokio's `copy_bidirectional`, with that change: each direction
//! reads, writes what it read, flushes when the reader has nothing more for
//! now, and on end-of-stream shuts the writer down (half-close).

use std::cell::RefCell;
use std::future::poll_fn;
use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Per direction: large enough for bulk transfers (a TLS record's worth).
pub const BUFFER: usize = 16 * 1024;
/// Buffers kept for reuse per thread, at most (beyond that they are freed).
const POOLED: usize = 32;

type Buffer = Box<[u8]>;

thread_local! {
    static POOL: RefCell<Vec<Buffer>> = const { RefCell::new(Vec::new()) };
}

fn take() -> Buffer {
    POOL.with(|p| p.borrow_mut().pop())
        .unwrap_or_else(|| vec![0u8; BUFFER].into_boxed_slice())
}

fn give(buf: Buffer) {
    POOL.with(|p| {
        let mut pool = p.borrow_mut();
        if pool.len() < POOLED {
            pool.push(buf);
        }
    });
}

/// One direction of the copy.
#[derive(Default)]
struct OneWay {
    /// What was read and not yet written (`pos..cap`); `None` while empty.
    buf: Option<Buffer>,
    pos: usize,
    cap: usize,
    read_done: bool,
    need_flush: bool,
    shut_down: bool,
    copied: u64,
}

impl OneWay {
    /// Copies until the reader ends and the writer is shut down.
    fn poll_transfer<R, W>(
        &mut self,
        cx: &mut Context<'_>,
        mut r: Pin<&mut R>,
        mut w: Pin<&mut W>,
    ) -> Poll<io::Result<u64>>
    where
        R: AsyncRead + ?Sized,
        W: AsyncWrite + ?Sized,
    {
        loop {
            if self.shut_down {
                return Poll::Ready(Ok(self.copied));
            }
            if self.pos == self.cap && !self.read_done {
                let mut buf = self.buf.take().unwrap_or_else(take);
                let mut read = ReadBuf::new(&mut buf);
                match r.as_mut().poll_read(cx, &mut read) {
                    Poll::Pending => {
                        // Nothing to move now: the buffer goes back, and what
                        // was written goes out.
                        give(buf);
                        if self.need_flush {
                            ready!(w.as_mut().poll_flush(cx))?;
                            self.need_flush = false;
                        }
                        return Poll::Pending;
                    }
                    Poll::Ready(Err(e)) => {
                        give(buf);
                        return Poll::Ready(Err(e));
                    }
                    Poll::Ready(Ok(())) => {
                        let n = read.filled().len();
                        if n == 0 {
                            self.read_done = true;
                            give(buf);
                        } else {
                            (self.pos, self.cap) = (0, n);
                            self.buf = Some(buf);
                        }
                    }
                }
            }
            while self.pos < self.cap {
                let Some(buf) = &self.buf else { break };
                let n = ready!(w.as_mut().poll_write(cx, &buf[self.pos..self.cap]))?;
                if n == 0 {
                    return Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::WriteZero,
                        "write zero bytes into writer",
                    )));
                }
                self.pos += n;
                self.copied += n as u64;
                self.need_flush = true;
            }
            if self.pos == self.cap {
                if let Some(buf) = self.buf.take() {
                    give(buf);
                }
                (self.pos, self.cap) = (0, 0);
            }
            if self.read_done {
                if self.need_flush {
                    ready!(w.as_mut().poll_flush(cx))?;
                    self.need_flush = false;
                }
                ready!(w.as_mut().poll_shutdown(cx))?;
                self.shut_down = true;
            }
        }
    }
}

/// Copies `a` <-> `b` until both directions have ended (each shutting down
/// its writer when its reader ends) or one fails; the bytes each way
/// (a to b, b to a).
pub async fn copy_bidirectional<A, B>(a: &mut A, b: &mut B) -> io::Result<(u64, u64)>
where
    A: AsyncRead + AsyncWrite + Unpin + ?Sized,
    B: AsyncRead + AsyncWrite + Unpin + ?Sized,
{
    let (mut a_to_b, mut b_to_a) = (OneWay::default(), OneWay::default());
    let (mut a_done, mut b_done) = (None, None);
    poll_fn(|cx| {
        if a_done.is_none() {
            if let Poll::Ready(r) = a_to_b.poll_transfer(cx, Pin::new(&mut *a), Pin::new(&mut *b)) {
                a_done = Some(r?);
            }
        }
        if b_done.is_none() {
            if let Poll::Ready(r) = b_to_a.poll_transfer(cx, Pin::new(&mut *b), Pin::new(&mut *a)) {
                b_done = Some(r?);
            }
        }
        match (a_done, b_done) {
            (Some(x), Some(y)) => Poll::Ready(Ok((x, y))),
            _ => Poll::Pending,
        }
    })
    .await
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    #[tokio::test]
    async fn copies_both_ways_and_holds_no_buffer_while_waiting() {
        let (mut client, mut a) = tokio::io::duplex(64);
        let (mut b, mut server) = tokio::io::duplex(64);
        let copy = tokio::spawn(async move { copy_bidirectional(&mut a, &mut b).await });
        let mut got = vec![0u8; 100_000];
        let data = [1u8; 100_000];
        let (sent, read) = tokio::join!(client.write_all(&data), server.read_exact(&mut got));
        sent.unwrap();
        read.unwrap();
        assert!(got.iter().all(|b| *b == 1));
        server.write_all(b"reply").await.unwrap();
        let mut reply = [0u8; 5];
        client.read_exact(&mut reply).await.unwrap();
        assert_eq!(&reply, b"reply");
        // Both ends half-close: the copy ends with the counts.
        client.shutdown().await.unwrap();
        assert_eq!(server.read(&mut [0u8; 1]).await.unwrap(), 0);
        server.shutdown().await.unwrap();
        let (ab, ba) = copy.await.unwrap().unwrap();
        assert_eq!((ab, ba), (100_000, 5));
    }

    #[test]
    fn the_pool_keeps_a_bounded_number_of_buffers() {
        for _ in 0..POOLED + 10 {
            give(vec![0u8; BUFFER].into_boxed_slice());
        }
        assert_eq!(POOL.with(|p| p.borrow().len()), POOLED);
    }
}
