//! Fault injection for chaos testing (Envoy `envoy.filters.http.fault`): delay
//! and/or abort a share of the requests, optionally only those with given headers.

use std::time::Duration;

use http::HeaderMap;

use crate::matchers::HeaderMatch;

#[derive(Debug)]
pub struct Fault {
    pub delay: Option<(Duration, Share)>,
    pub abort: Option<(Abort, Share)>,
    /// All must match for the fault to apply.
    pub headers: Vec<HeaderMatch>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Abort {
    Http(u16),
    Grpc(u32),
}

/// A share of requests, in millionths.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Share(pub u32);

impl Share {
    pub const MILLION: u32 = 1_000_000;

    /// Whether a request falls in the share; `draw` is uniform in [0, 1e6).
    pub fn includes(self, draw: u32) -> bool {
        draw < self.0
    }
}

/// What the fault decided for one request.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Injected {
    pub delay: Option<Duration>,
    pub abort: Option<Abort>,
}

impl Fault {
    pub fn applies(&self, headers: &HeaderMap) -> bool {
        self.headers.iter().all(|h| h.matches(headers))
    }

    /// Draws whether this request is delayed and/or aborted.
    pub fn draw(&self, mut draw: impl FnMut() -> u32) -> Injected {
        Injected {
            delay: self
                .delay
                .filter(|(_, share)| share.includes(draw()))
                .map(|(d, _)| d),
            abort: self
                .abort
                .filter(|(_, share)| share.includes(draw()))
                .map(|(a, _)| a),
        }
    }
}
