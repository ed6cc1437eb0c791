//! Copying an opaque TCP connection both ways until it ends, with half-close: when
//! one side finishes sending, the other side's write half is shut down and the
//! other direction carries on (a client that half-closes still gets its reply).
//!
//! It ends when both directions have, on the first error of either side, or when
//! no byte has moved either way for the idle timeout. The byte counts and which
//! side failed are known in every case, for the access log and the metrics.
//!
//! The idle timer is cheap: IO only bumps a counter; one timer wakes a few times
//! per period and compares the counter with what it saw last.

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Instant;

/// The idle timer wakes this many times per idle period, so a connection closes
/// between `idle` and `idle * (1 + 1/CHECKS_PER_PERIOD)` after its last byte.
const CHECKS_PER_PERIOD: u32 = 4;

/// A floor on the timer period, so a tiny idle timeout cannot make it spin.
const MIN_CHECK: Duration = Duration::from_millis(1);

/// What a forwarded connection did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Forwarded {
    /// Bytes written to the server (client -> server).
    pub sent: u64,
    /// Bytes written to the client (server -> client).
    pub received: u64,
    pub end: End,
}

/// How a forwarded connection ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum End {
    /// Both directions reached end-of-stream.
    Closed,
    /// No byte moved either way for the idle timeout.
    IdleTimeout,
    /// Reading from or writing to the client failed.
    ClientReset(io::ErrorKind),
    /// Reading from or writing to the server failed.
    ServerReset(io::ErrorKind),
}

impl End {
    /// For the access log.
    pub fn label(self) -> &'static str {
        match self {
            End::Closed => "closed",
            End::IdleTimeout => "idle_timeout",
            End::ClientReset(_) => "client_reset",
            End::ServerReset(_) => "server_reset",
        }
    }
}

/// Copies `client` <-> `server` until both directions end, either side fails,
/// or nothing moves for `idle`.
pub async fn forward<A, B>(client: A, server: B, idle: Duration) -> Forwarded
where
    A: AsyncRead + AsyncWrite + Unpin,
    B: AsyncRead + AsyncWrite + Unpin,
{
    let moved = AtomicU64::new(0);
    let mut client = Tallied::new(client, &moved);
    let mut server = Tallied::new(server, &moved);
    let copy = super::buffers::copy_bidirectional(&mut client, &mut server);
    // `None`: the idle timer won. The copy (and its borrows) end with the select.
    let copied = tokio::select! {
        biased;
        copied = copy => Some(copied),
        () = idle_for(&moved, idle) => None,
    };
    let end = match copied {
        None => End::IdleTimeout,
        Some(Ok(_)) => End::Closed,
        Some(Err(e)) => blame(&client, &server, &e),
    };
    let forwarded = Forwarded {
        sent: server.written,
        received: client.written,
        end,
    };
    tracing::debug!(
        sent = forwarded.sent,
        received = forwarded.received,
        end = ?forwarded.end,
        "forward ended"
    );
    forwarded
}

/// The side whose IO failed first; the copy stops on the first error, so at most
/// one has.
fn blame<A, B>(client: &Tallied<'_, A>, server: &Tallied<'_, B>, e: &io::Error) -> End {
    match (client.error, server.error) {
        (Some(kind), _) => End::ClientReset(kind),
        (None, Some(kind)) => End::ServerReset(kind),
        // Not from either IO (the copy has no errors of its own today).
        (None, None) => End::ClientReset(e.kind()),
    }
}

/// Resolves once `moved` has not changed for `idle`. One timer, reset a few
/// times per period: never per read or write.
async fn idle_for(moved: &AtomicU64, idle: Duration) {
    let check = (idle / CHECKS_PER_PERIOD).max(MIN_CHECK);
    let mut seen = moved.load(Relaxed);
    // When the timer last saw bytes move: within one check of the last byte.
    let mut quiet_since = Instant::now();
    let timer = tokio::time::sleep(check.min(idle));
    tokio::pin!(timer);
    loop {
        timer.as_mut().await;
        let now = Instant::now();
        let current = moved.load(Relaxed);
        if current != seen {
            seen = current;
            quiet_since = now;
        } else if now.duration_since(quiet_since) >= idle {
            return;
        }
        // The next check, or the moment the quiet period reaches `idle`.
        timer
            .as_mut()
            .reset(after(now, check).min(after(quiet_since, idle)));
    }
}

/// `at + d`, or decades on if that overflows: an idle timeout too long to
/// represent never fires (rather than panicking).
fn after(at: Instant, d: Duration) -> Instant {
    const FAR: Duration = Duration::from_secs(30 * 365 * 24 * 3600);
    at.checked_add(d)
        .unwrap_or_else(|| at.checked_add(FAR).unwrap_or(at))
}

/// One side of the copy: counts the bytes written to it and bumps the shared
/// activity counter on every byte in or out; remembers its first error.
struct Tallied<'a, T> {
    io: T,
    moved: &'a AtomicU64,
    written: u64,
    error: Option<io::ErrorKind>,
}

impl<'a, T> Tallied<'a, T> {
    fn new(io: T, moved: &'a AtomicU64) -> Self {
        Self {
            io,
            moved,
            written: 0,
            error: None,
        }
    }

    fn note<R>(&mut self, polled: Poll<io::Result<R>>) -> Poll<io::Result<R>> {
        if let (Poll::Ready(Err(e)), None) = (&polled, self.error) {
            self.error = Some(e.kind());
        }
        polled
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Tallied<'_, T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let polled = Pin::new(&mut this.io).poll_read(cx, buf);
        let n = buf.filled().len().saturating_sub(before);
        if n > 0 {
            this.moved.fetch_add(n as u64, Relaxed);
        }
        this.note(polled)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Tallied<'_, T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.io).poll_write(cx, buf);
        if let Poll::Ready(Ok(n)) = polled {
            this.written += n as u64;
            this.moved.fetch_add(n as u64, Relaxed);
        }
        this.note(polled)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.io).poll_flush(cx);
        this.note(polled)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.io).poll_shutdown(cx);
        this.note(polled)
    }
}
