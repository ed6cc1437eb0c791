//! One recorded response, and questions asked of a list of them.

use std::sync::Arc;
use std::time::Duration;

/// One response (or failure) seen by the load generator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sample {
    /// When the response completed, since the load started.
    pub at: Duration,
    /// The HTTP status; 0 for a transport error (refused, reset, timed out).
    pub status: u16,
    /// The `x-backend` response header, if any.
    pub backend: Option<Arc<str>>,
    /// From when the request was due (or sent; see the module docs) to the end of
    /// the response body.
    pub latency: Duration,
}

impl Sample {
    /// A transport error or a status outside 2xx and 3xx.
    pub fn is_error(&self) -> bool {
        !(200..400).contains(&self.status)
    }

    /// Whether `x-backend` named `backend`.
    pub fn served_by(&self, backend: &str) -> bool {
        self.backend.as_deref() == Some(backend)
    }
}

/// How many samples are errors ([`Sample::is_error`]).
pub fn count_errors(samples: &[Sample]) -> usize {
    samples.iter().filter(|s| s.is_error()).count()
}

/// The fraction (0.0 to 1.0) of `samples` served by `backend`; errors count in the
/// denominator. 0.0 when there are no samples.
pub fn share_of(samples: &[Sample], backend: &str) -> f64 {
    if samples.is_empty() {
        return 0.0;
    }
    let served = samples.iter().filter(|s| s.served_by(backend)).count();
    served as f64 / samples.len() as f64
}

#[cfg(test)]
pub(crate) fn sample(at_ms: u64, status: u16, backend: Option<&str>, latency_ms: u64) -> Sample {
    Sample {
        at: Duration::from_millis(at_ms),
        status,
        backend: backend.map(Arc::from),
        latency: Duration::from_millis(latency_ms),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transport_errors_and_4xx_5xx_are_errors() {
        assert!(sample(0, 0, None, 1).is_error());
        assert!(sample(0, 404, None, 1).is_error());
        assert!(sample(0, 503, None, 1).is_error());
        assert!(!sample(0, 200, None, 1).is_error());
        assert!(!sample(0, 302, None, 1).is_error());
    }

    #[test]
    fn share_counts_errors_in_the_denominator() {
        let samples = vec![
            sample(0, 200, Some("a"), 1),
            sample(1, 200, Some("b"), 1),
            sample(2, 200, Some("a"), 1),
            sample(3, 0, None, 1),
        ];
        assert_eq!(share_of(&samples, "a"), 0.5);
        assert_eq!(share_of(&samples, "b"), 0.25);
        assert_eq!(share_of(&samples, "c"), 0.0);
        assert_eq!(share_of(&[], "a"), 0.0);
        assert_eq!(count_errors(&samples), 1);
    }
}
