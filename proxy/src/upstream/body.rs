//! The body of a request sent upstream: streamed as it arrives, or replayed from a
//! recording for a retry.
//!
//! A request that may be retried is recorded while it streams (up to a limit): the
//! recording is a second reference to the same `Bytes`, not a copy. Once the body
//! has ended within the limit, a retry replays it; a body larger than the limit is
//! never replayed (the recording is dropped as soon as it overflows).

use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};

use bytes::Bytes;
use http::HeaderMap;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;

pub enum RequestBody {
    /// Streamed as it arrives, not kept.
    Streaming(Incoming),
    /// Streamed as it arrives and recorded for a retry.
    Recording(Incoming, Arc<Mutex<Recorded>>),
    /// A recording played back.
    Replay(Replay),
    Empty,
}

/// What a recording holds so far.
#[derive(Debug, Default)]
pub struct Recorded {
    chunks: Vec<Bytes>,
    trailers: Option<HeaderMap>,
    size: usize,
    limit: usize,
    ended: bool,
    overflowed: bool,
}

impl Recorded {
    pub fn new(limit: usize) -> Arc<Mutex<Self>> {
        Arc::new(Mutex::new(Self {
            limit,
            ..Default::default()
        }))
    }

    /// A replay of the whole body, if it ended within the limit.
    pub fn replay(recording: &Mutex<Self>) -> Option<Replay> {
        let r = recording.lock().unwrap_or_else(PoisonError::into_inner);
        (r.ended && !r.overflowed).then(|| Replay {
            chunks: r.chunks.iter().cloned().collect(),
            trailers: r.trailers.clone(),
        })
    }

    fn record(&mut self, frame: &Frame<Bytes>) {
        if self.overflowed {
            return;
        }
        if let Some(data) = frame.data_ref() {
            self.size += data.len();
            if self.size > self.limit {
                self.overflowed = true;
                self.chunks = Vec::new();
                return;
            }
            self.chunks.push(data.clone());
        } else if let Some(trailers) = frame.trailers_ref() {
            self.trailers = Some(trailers.clone());
        }
    }
}

#[derive(Clone)]
pub struct Replay {
    chunks: VecDeque<Bytes>,
    trailers: Option<HeaderMap>,
}

impl RequestBody {
    /// A body that ends at once, for requests that have none.
    pub fn empty() -> Self {
        RequestBody::Empty
    }
}

impl Body for RequestBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        match self.get_mut() {
            RequestBody::Streaming(inner) => Pin::new(inner).poll_frame(cx),
            RequestBody::Recording(inner, recording) => {
                let polled = Pin::new(&mut *inner).poll_frame(cx);
                let ended = match &polled {
                    Poll::Ready(Some(Ok(_))) => inner.is_end_stream(),
                    Poll::Ready(None) => true,
                    _ => false,
                };
                if let Poll::Ready(Some(Ok(frame))) = &polled {
                    let mut r = recording.lock().unwrap_or_else(PoisonError::into_inner);
                    r.record(frame);
                    // hyper stops polling once the body says it has ended.
                    r.ended |= ended;
                } else if ended {
                    recording
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .ended = true;
                }
                polled
            }
            RequestBody::Replay(replay) => Poll::Ready(match replay.chunks.pop_front() {
                Some(data) => Some(Ok(Frame::data(data))),
                None => replay.trailers.take().map(|t| Ok(Frame::trailers(t))),
            }),
            RequestBody::Empty => Poll::Ready(None),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            RequestBody::Streaming(inner) | RequestBody::Recording(inner, _) => {
                inner.is_end_stream()
            }
            RequestBody::Replay(r) => r.chunks.is_empty() && r.trailers.is_none(),
            RequestBody::Empty => true,
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            RequestBody::Streaming(inner) | RequestBody::Recording(inner, _) => inner.size_hint(),
            RequestBody::Replay(r) => {
                SizeHint::with_exact(r.chunks.iter().map(|c| c.len() as u64).sum())
            }
            RequestBody::Empty => SizeHint::with_exact(0),
        }
    }
}
