//! Reading a review: at most [`MAX_REVIEW_BYTES`], within [`BODY_TIMEOUT`].
//! The API server sends one pod per review, far below the cap; anything
//! larger is refused before it is parsed.

use std::time::Duration;

use bytes::Bytes;
use http::{header, HeaderMap};

/// The largest review read: a pod is a few KiB, and etcd stores no object
/// over 1.5 MiB, so a review (the object and a little around it) of a pod
/// the API server could store fits with room to spare.
pub const MAX_REVIEW_BYTES: usize = 2 * 1024 * 1024;
/// A client gets this long to send the whole body (the API server's default
/// webhook timeout is 10 s).
pub const BODY_TIMEOUT: Duration = Duration::from_secs(10);

pub use crate::api::body::BodyError;

const REVIEW_LIMITS: crate::api::body::Limits = crate::api::body::Limits {
    max_bytes: MAX_REVIEW_BYTES,
    timeout: BODY_TIMEOUT,
};

/// The whole review, within [`MAX_REVIEW_BYTES`] and [`BODY_TIMEOUT`].
pub async fn read<B>(headers: &HeaderMap, body: B) -> Result<Bytes, BodyError>
where
    B: hyper::body::Body,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    crate::api::body::read_within(headers, body, REVIEW_LIMITS).await
}

/// `application/json`, with or without parameters (`; charset=utf-8`).
pub fn is_json(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("application/json"))
}

#[cfg(test)]
mod tests {
    use std::convert::Infallible;

    use http_body_util::{Full, StreamBody};

    use http::StatusCode;

    use super::*;

    #[tokio::test]
    async fn a_review_of_the_largest_object_etcd_stores_is_read() {
        let etcd_object_limit = 1536 * 1024;
        let review = Full::new(Bytes::from(vec![b' '; etcd_object_limit + 64 * 1024]));
        assert!(read(&HeaderMap::new(), review).await.is_ok());
    }

    #[tokio::test]
    async fn a_body_over_the_limit_is_refused_declared_or_not() {
        let big = Full::new(Bytes::from(vec![b'a'; MAX_REVIEW_BYTES + 1]));
        assert_eq!(
            read(&HeaderMap::new(), big).await,
            Err(BodyError::TooLarge {
                limit: MAX_REVIEW_BYTES
            })
        );
        let mut headers = HeaderMap::new();
        headers.insert(header::CONTENT_LENGTH, "999999999".parse().unwrap());
        let small = Full::new(Bytes::from_static(b"{}"));
        let err = read(&headers, small).await.unwrap_err();
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
    }

    #[test]
    fn only_json_is_taken() {
        let with = |value: &str| {
            let mut headers = HeaderMap::new();
            headers.insert(header::CONTENT_TYPE, value.parse().unwrap());
            is_json(&headers)
        };
        assert!(with("application/json"));
        assert!(with("application/json; charset=utf-8"));
        assert!(!with("text/plain"));
        assert!(!with("application/yaml"));
        assert!(!is_json(&HeaderMap::new()));
    }
}
