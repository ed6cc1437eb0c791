//! Reading a request body: at most [`MAX_BODY_BYTES`], within [`BODY_TIMEOUT`]
//! for the API ([`read`]), or within other [`Limits`] ([`read_within`]: the
//! admission webhook's reviews). Only writes read their bodies; every other
//! request's body is ignored.

use std::time::Duration;

use bytes::Bytes;
use http::{header, HeaderMap, StatusCode};
use http_body_util::{BodyExt, LengthLimitError, Limited};

/// The largest body taken: as large as the largest config file read.
pub const MAX_BODY_BYTES: usize = crate::source::MAX_FILE_BYTES as usize;
/// A client gets this long to send the whole body.
pub const BODY_TIMEOUT: Duration = Duration::from_secs(30);

/// How much a body may hold and how long it may take to arrive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub max_bytes: usize,
    pub timeout: Duration,
}

/// The API's: [`MAX_BODY_BYTES`] within [`BODY_TIMEOUT`].
pub const API_LIMITS: Limits = Limits {
    max_bytes: MAX_BODY_BYTES,
    timeout: BODY_TIMEOUT,
};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BodyError {
    #[error("the request body is over the limit of {limit} bytes")]
    TooLarge { limit: usize },
    #[error("the request body did not arrive within {after:?}")]
    Timeout { after: Duration },
    #[error("the request body could not be read: {0}")]
    Read(String),
}

impl BodyError {
    pub fn status(&self) -> StatusCode {
        match self {
            BodyError::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            BodyError::Timeout { .. } => StatusCode::REQUEST_TIMEOUT,
            BodyError::Read(_) => StatusCode::BAD_REQUEST,
        }
    }
}

/// The whole body within the API's limits.
pub async fn read<B>(headers: &HeaderMap, body: B) -> Result<Bytes, BodyError>
where
    B: hyper::body::Body,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    read_within(headers, body, API_LIMITS).await
}

/// The whole body within `limits`. A `Content-Length` over the limit is
/// refused before a byte is read.
pub async fn read_within<B>(
    headers: &HeaderMap,
    body: B,
    limits: Limits,
) -> Result<Bytes, BodyError>
where
    B: hyper::body::Body,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let too_large = BodyError::TooLarge {
        limit: limits.max_bytes,
    };
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limits.max_bytes as u64) {
        return Err(too_large);
    }
    let collected = Limited::new(body, limits.max_bytes).collect();
    match tokio::time::timeout(limits.timeout, collected).await {
        Err(_) => Err(BodyError::Timeout {
            after: limits.timeout,
        }),
        Ok(Err(e)) if e.downcast_ref::<LengthLimitError>().is_some() => Err(too_large),
        Ok(Err(e)) => Err(BodyError::Read(e.to_string())),
        Ok(Ok(collected)) => Ok(collected.to_bytes()),
    }
}

#[cfg(test)]
mod tests {
    use std::convert::Infallible;

    use http_body_util::{Full, StreamBody};

    use super::*;

    #[tokio::test]
    async fn a_body_within_the_limit_is_read() {
        let body = Full::new(Bytes::from_static(b"kind: Service\n"));
        let read = read(&HeaderMap::new(), body).await.unwrap();
        assert_eq!(&read[..], b"kind: Service\n");
    }

    #[tokio::test]
    async fn a_body_over_the_limit_is_refused_declared_or_not() {
        let big = Full::new(Bytes::from(vec![b'a'; MAX_BODY_BYTES + 1]));
        assert_eq!(
            read(&HeaderMap::new(), big).await,
            Err(BodyError::TooLarge {
                limit: MAX_BODY_BYTES
            })
        );
        let mut headers = HeaderMap::new();
        headers.insert(header::CONTENT_LENGTH, "999999999".parse().unwrap());
        let small = Full::new(Bytes::from_static(b"a"));
        let err = read(&headers, small).await.unwrap_err();
        assert_eq!(
            err,
            BodyError::TooLarge {
                limit: MAX_BODY_BYTES
            }
        );
        assert_eq!(err.status(), StatusCode::PAYLOAD_TOO_LARGE);
    }

    #[tokio::test(start_paused = true)]
    async fn a_body_that_never_ends_times_out() {
        let frames = futures::stream::pending::<Result<hyper::body::Frame<Bytes>, Infallible>>();
        let err = read(&HeaderMap::new(), StreamBody::new(frames))
            .await
            .unwrap_err();
        assert_eq!(
            err,
            BodyError::Timeout {
                after: BODY_TIMEOUT
            }
        );
        assert_eq!(err.status(), StatusCode::REQUEST_TIMEOUT);
    }
}
