//! `HTTPRoute` (gateway.networking.k8s.io/v1) attached to Services (the GAMMA mesh
//! profile): matches and weighted backends.

use std::time::Duration;

use super::ObjectKey;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpRoute {
    pub key: ObjectKey,
    pub parents: Vec<ParentRef>,
    pub rules: Vec<Rule>,
}

/// The Service (and optionally one of its ports) a route applies to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParentRef {
    pub service: ObjectKey,
    /// `None`: every port of the Service.
    pub port: Option<u16>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    /// Never empty: an absent `matches` is one match on `PathPrefix /`.
    pub matches: Vec<RouteMatch>,
    pub backends: Vec<Backend>,
    pub timeouts: Timeouts,
    pub retry: Option<Retry>,
    pub filters: RuleFilters,
}

/// A rule's `filters`: header changes and request mirrors.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RuleFilters {
    pub request_headers: HeaderModifier,
    pub response_headers: HeaderModifier,
    pub mirrors: Vec<Mirror>,
}

/// `RequestHeaderModifier` / `ResponseHeaderModifier`; names lower-cased.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HeaderModifier {
    pub set: Vec<(String, String)>,
    pub add: Vec<(String, String)>,
    pub remove: Vec<String>,
}

impl HeaderModifier {
    pub fn is_empty(&self) -> bool {
        self.set.is_empty() && self.add.is_empty() && self.remove.is_empty()
    }
}

/// `RequestMirror`: a copy of the share of requests goes to the backend; its
/// answer is ignored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mirror {
    pub backend: Backend,
    /// Share of requests mirrored, in millionths.
    pub share: u32,
}

/// `timeouts` (Gateway API): `None` leaves it to a TrafficPolicy or the default
/// (none); zero disables.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Timeouts {
    /// The whole request, retries included.
    pub request: Option<Duration>,
    /// Each attempt at a backend.
    pub backend_request: Option<Duration>,
}

/// `retry` (Gateway API, GEP-1731): retried on connection failures and the codes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Retry {
    pub codes: Vec<u16>,
    /// Retries after the first attempt.
    pub attempts: u32,
    pub backoff: Option<Duration>,
}

/// One entry of `matches`: every condition must hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteMatch {
    pub path: PathMatch,
    /// Header names are lower-cased (HTTP header names are case-insensitive).
    pub headers: Vec<HeaderMatch>,
    /// An HTTP method in upper case (`GET`, `POST`, ...).
    pub method: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PathMatch {
    Exact(String),
    /// Element-wise prefix: `/foo` matches `/foo` and `/foo/bar`, not `/foobar`.
    /// Stored without a trailing slash, except for `/` itself.
    Prefix(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeaderMatch {
    pub name: String,
    pub value: String,
}

/// A weighted reference to a Service port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Backend {
    pub service: ObjectKey,
    /// `None`: the Service's only port.
    pub port: Option<u16>,
    pub weight: u32,
}

impl HttpRoute {
    /// Whether this route applies to `port` of `service`.
    pub fn attaches_to(&self, service: &ObjectKey, port: u16) -> bool {
        self.parents
            .iter()
            .any(|p| &p.service == service && p.port.is_none_or(|p| p == port))
    }
}
