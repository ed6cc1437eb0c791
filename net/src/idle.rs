//! Closing idle connections: a connection with no request in flight and no byte
//! read or written for a whole idle timeout reads end-of-stream, so the HTTP
//! server closes it as if the client had, and whatever a client left open
//! gives its descriptor back.
//!
//! Cheap on the request path: a read or write sets a flag in the connection's
//! own wrapper, a request bumps a per-connection counter, and the timer is
//! polled and reset once per timeout period, not per byte or per read.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

/// Requests in flight on one connection, shared by its IO and its service.
#[derive(Debug, Default)]
pub struct Activity {
    in_flight: AtomicUsize,
}

impl Activity {
    /// Counts a request until the guard is dropped (its response headers are out;
    /// the body's bytes count as activity themselves).
    pub fn request(self: &Arc<Self>) -> InFlight {
        self.in_flight.fetch_add(1, Relaxed);
        InFlight(Arc::clone(self))
    }
}

#[derive(Debug)]
pub struct InFlight(Arc<Activity>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Relaxed);
    }
}

/// An IO that reads end-of-stream once it has been idle for `timeout`.
#[derive(Debug)]
pub struct IdleTimeout<T> {
    io: T,
    timeout: Duration,
    timer: Pin<Box<Sleep>>,
    touched: bool,
    /// The timer has this task's waker for the current period.
    armed: bool,
    expired: bool,
    activity: Arc<Activity>,
}

impl<T> IdleTimeout<T> {
    pub fn new(io: T, timeout: Duration, activity: Arc<Activity>) -> Self {
        Self {
            io,
            timeout,
            timer: Box::pin(tokio::time::sleep(timeout)),
            touched: false,
            armed: false,
            expired: false,
            activity,
        }
    }

    /// Whether the connection has been idle for a whole period. The timer is
    /// polled (which registers this task's waker) once per period; in between, a
    /// read that would wait only reads whether it has fired: polling a timer on
    /// every read costs the task's cooperative budget and made busy connections
    /// yield more often (measured: several percent of CPU per request).
    fn poll_expired(&mut self, cx: &mut Context<'_>) -> bool {
        if self.armed && !self.timer.is_elapsed() {
            return false;
        }
        loop {
            // Outside the budget: a timer refused for want of budget would not
            // be registered, and an idle connection never closed.
            let mut timer = tokio::task::unconstrained(self.timer.as_mut());
            match Pin::new(&mut timer).poll(cx) {
                Poll::Pending => {
                    self.armed = true;
                    return false;
                }
                Poll::Ready(()) if !self.touched && self.activity.in_flight.load(Relaxed) == 0 => {
                    self.expired = true;
                    return true;
                }
                Poll::Ready(()) => {
                    self.touched = false;
                    self.armed = false;
                    self.timer.as_mut().reset(Instant::now() + self.timeout);
                }
            }
        }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for IdleTimeout<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.expired {
            return Poll::Ready(Ok(()));
        }
        let before = buf.filled().len();
        match Pin::new(&mut this.io).poll_read(cx, buf) {
            // The timer is looked at only when there is nothing to read, so a
            // busy connection never touches it.
            Poll::Pending if this.poll_expired(cx) => {
                tracing::debug!(timeout = ?this.timeout, "idle connection closed");
                Poll::Ready(Ok(()))
            }
            Poll::Pending => Poll::Pending,
            ready => {
                if buf.filled().len() > before {
                    this.touched = true;
                }
                ready
            }
        }
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for IdleTimeout<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.io).poll_write(cx, buf);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            this.touched = true;
        }
        polled
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.io).poll_write_vectored(cx, bufs);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            this.touched = true;
        }
        polled
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

    const TIMEOUT: Duration = Duration::from_secs(10);

    #[tokio::test(start_paused = true)]
    async fn an_idle_connection_reads_end_of_stream_after_the_timeout() {
        let (client, server) = tokio::io::duplex(64);
        let mut io = IdleTimeout::new(server, TIMEOUT, Arc::default());
        let started = Instant::now();
        let mut buf = [0u8; 8];
        assert_eq!(io.read(&mut buf).await.unwrap(), 0);
        assert!(started.elapsed() >= TIMEOUT);
        assert!(started.elapsed() < TIMEOUT * 2);
        drop(client);
    }

    #[tokio::test(start_paused = true)]
    async fn bytes_keep_it_open() {
        let (mut client, server) = tokio::io::duplex(64);
        let mut io = IdleTimeout::new(server, TIMEOUT, Arc::default());
        let started = Instant::now();
        let writer = tokio::spawn(async move {
            for _ in 0..5 {
                tokio::time::sleep(TIMEOUT / 2).await;
                client.write_all(b"x").await.unwrap();
            }
            client
        });
        let mut buf = [0u8; 8];
        for _ in 0..5 {
            assert_eq!(io.read(&mut buf).await.unwrap(), 1);
        }
        let _client = writer.await.unwrap();
        assert_eq!(io.read(&mut buf).await.unwrap(), 0);
        // Closed one to two periods after the last byte, not before it.
        assert!(started.elapsed() >= TIMEOUT / 2 * 5 + TIMEOUT);
    }

    #[tokio::test(start_paused = true)]
    async fn a_request_in_flight_keeps_it_open() {
        let (_client, server) = tokio::io::duplex(64);
        let activity = Arc::<Activity>::default();
        let mut io = IdleTimeout::new(server, TIMEOUT, activity.clone());
        let request = activity.request();
        let mut buf = [0u8; 8];
        let read = tokio::time::timeout(TIMEOUT * 5, io.read(&mut buf)).await;
        assert!(read.is_err(), "closed while a request was in flight");
        drop(request);
        assert_eq!(io.read(&mut buf).await.unwrap(), 0);
    }
}
