//! Responses are either an upstream's streaming body or a small local reply.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use http_body_util::{Either, Full};
use hyper::body::Incoming;

use crate::upstream::{ActiveRequest, InFlight};

pub type ResponseBody = Either<Tracked, Full<Bytes>>;

/// An upstream body that keeps its request counted as in flight until the body is
/// finished or dropped, so long streams weigh on the balancer as they should.
pub struct Tracked {
    inner: Incoming,
    _in_flight: Option<InFlight>,
    /// The request's place under its cluster's concurrency limit.
    _active: Option<ActiveRequest>,
}

impl Tracked {
    pub fn new(inner: Incoming, in_flight: Option<InFlight>) -> Self {
        Self {
            inner,
            _in_flight: in_flight,
            _active: None,
        }
    }

    /// Keeps `active` counted until the body ends.
    pub fn hold(&mut self, active: ActiveRequest) {
        self._active = Some(active);
    }
}

impl Body for Tracked {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        if let Poll::Ready(None) = polled {
            self._in_flight = None;
            self._active = None;
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
