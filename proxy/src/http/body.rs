//! Responses are either an upstream's streaming body or a small local reply.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use http_body_util::{Either, Full};
use hyper::body::Incoming;
use tokio::time::Sleep;

use crate::telemetry::{Finish, FinishOnEnd};
use crate::upstream::{ActiveRequest, InFlight};

pub type ResponseBody = Either<Tracked, Full<Bytes>>;

impl FinishOnEnd for ResponseBody {
    fn finish_on_end(&mut self, finish: Finish) {
        match self {
            Either::Left(body) => body.finish_on_end(finish),
            Either::Right(full) => {
                let sent = Body::size_hint(full).exact().unwrap_or(0);
                finish.done(sent);
            }
        }
    }
}

/// An upstream body that keeps its request counted as in flight until the body is
/// finished or dropped, so long streams weigh on the balancer as they should.
pub struct Tracked {
    inner: Incoming,
    _in_flight: Option<InFlight>,
    /// The request's place under its cluster's concurrency limit.
    _active: Option<ActiveRequest>,
    /// The stream idle timeout: how long the body may go without a frame, and
    /// the timer (re-armed on every frame).
    idle: Option<(Duration, Pin<Box<Sleep>>)>,
    /// The access log line and span finished when the body ends or is dropped,
    /// and the bytes sent so far.
    finish: Option<Box<Finish>>,
    sent: u64,
}

impl Drop for Tracked {
    fn drop(&mut self) {
        if let Some(finish) = self.finish.take() {
            finish.done(self.sent);
        }
    }
}

/// The body stalled for longer than the stream idle timeout.
#[derive(Debug, thiserror::Error)]
#[error("stream idle timeout: no data for {0:?}")]
pub struct StreamIdle(Duration);

type BoxError = Box<dyn std::error::Error + Send + Sync>;

impl Tracked {
    pub fn new(inner: Incoming, in_flight: Option<InFlight>) -> Self {
        Self {
            inner,
            _in_flight: in_flight,
            _active: None,
            idle: None,
            finish: None,
            sent: 0,
        }
    }

    /// Finishes the request's log line and span when the body ends, with the
    /// bytes sent.
    pub fn finish_on_end(&mut self, finish: Finish) {
        self.finish = Some(Box::new(finish));
    }

    /// Ends the body with an error when it goes `timeout` without a frame.
    pub fn idle_timeout(&mut self, timeout: Duration) {
        self.idle = Some((timeout, Box::pin(tokio::time::sleep(timeout))));
    }

    /// Keeps `active` counted until the body ends.
    pub fn hold(&mut self, active: ActiveRequest) {
        self._active = Some(active);
    }
}

impl Body for Tracked {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(None) => {
                self._in_flight = None;
                self._active = None;
                self.idle = None;
                if let Some(finish) = self.finish.take() {
                    finish.done(self.sent);
                }
            }
            Poll::Ready(Some(frame)) => {
                if let Some(data) = frame.as_ref().ok().and_then(|f| f.data_ref()) {
                    self.sent += data.len() as u64;
                }
                if let Some((timeout, timer)) = &mut self.idle {
                    let at = tokio::time::Instant::now() + *timeout;
                    timer.as_mut().reset(at);
                }
            }
            Poll::Pending => {
                if let Some((timeout, timer)) = &mut self.idle {
                    if timer.as_mut().poll(cx).is_ready() {
                        let timeout = *timeout;
                        self.idle = None;
                        tracing::debug!(?timeout, "stream idle timeout");
                        return Poll::Ready(Some(Err(Box::new(StreamIdle(timeout)))));
                    }
                }
            }
        }
        polled.map(|f| f.map(|r| r.map_err(Into::into)))
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
