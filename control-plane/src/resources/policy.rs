//! Remora's own policy kinds, for what the Gateway API lacks: the mesh TLS mode of a
//! namespace or Service (`MeshTLS`) and who may call a Service
//! (`AuthorizationPolicy`).

use std::fmt;

use super::ObjectKey;

/// What a policy applies to. Policies attach within their own namespace.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum PolicyTarget {
    /// Every Service of the policy's namespace (`targetRef` absent).
    Namespace,
    Service(ObjectKey),
    /// The requests that match this HTTPRoute's matches, on the Services it is
    /// attached to in the policy's namespace.
    HttpRoute(ObjectKey),
}

/// `MeshTLS`: whether a Service's inbound listener accepts plaintext.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MeshTls {
    pub key: ObjectKey,
    /// `Namespace` or `Service` (never an HTTPRoute: TLS is per connection).
    pub target: PolicyTarget,
    pub mode: TlsMode,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TlsMode {
    /// Only mTLS from mesh peers (the default).
    #[default]
    Strict,
    /// mTLS or plaintext; plaintext connections are counted.
    Permissive,
}

impl TlsMode {
    pub fn parse(value: &str) -> Option<TlsMode> {
        match value {
            "STRICT" => Some(TlsMode::Strict),
            "PERMISSIVE" => Some(TlsMode::Permissive),
            _ => None,
        }
    }
}

impl fmt::Display for TlsMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            TlsMode::Strict => "STRICT",
            TlsMode::Permissive => "PERMISSIVE",
        })
    }
}

/// `AuthorizationPolicy`: which callers may reach a Service (or some of its routes).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthorizationPolicy {
    pub key: ObjectKey,
    /// `Service` or `HttpRoute`.
    pub target: PolicyTarget,
    pub action: AuthorizationAction,
    /// A request the policy applies to matches it if it matches any rule.
    pub rules: Vec<AuthorizationRule>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthorizationAction {
    Allow,
    Deny,
}

/// Matches when the caller matches `from` and the request matches `to`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct AuthorizationRule {
    /// Empty: any caller, authenticated or not (PERMISSIVE plaintext included).
    pub from: Vec<Caller>,
    /// Empty: any path.
    pub paths: Vec<Pattern>,
    /// Upper case; empty: any method.
    pub methods: Vec<String>,
}

impl AuthorizationRule {
    /// Whether the rule names request attributes (paths, methods) that only HTTP
    /// has: an opaque TCP connection has none of them.
    pub fn needs_http(&self) -> bool {
        !self.paths.is_empty() || !self.methods.is_empty()
    }
}

/// Who a rule names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Caller {
    /// A SPIFFE id, exact or with one `*` at either end; `*` alone is any
    /// authenticated peer.
    Identity(Pattern),
    /// Every identity of a namespace (`*`: any authenticated peer).
    Namespace(String),
}

/// A string with at most one `*`, at the start or at the end.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Pattern {
    Any,
    Exact(String),
    Prefix(String),
    Suffix(String),
}

impl Pattern {
    /// `None` when the `*` is elsewhere or appears twice.
    pub fn parse(value: &str) -> Option<Pattern> {
        if value == "*" {
            return Some(Pattern::Any);
        }
        match value.matches('*').count() {
            0 => Some(Pattern::Exact(value.to_owned())),
            1 if value.ends_with('*') => Some(Pattern::Prefix(value[..value.len() - 1].to_owned())),
            1 if value.starts_with('*') => Some(Pattern::Suffix(value[1..].to_owned())),
            _ => None,
        }
    }
}

/// `TrafficPolicy`: the resilience settings the Gateway API lacks, for a Service
/// (its routes' defaults and its cluster) or one HTTPRoute (its rules' defaults).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrafficPolicy {
    pub key: ObjectKey,
    /// `Service` or `HttpRoute`.
    pub target: PolicyTarget,
    pub timeouts: PolicyTimeouts,
    pub retry: Option<PolicyRetry>,
    /// Service targets only.
    pub outlier_detection: Option<OutlierDetection>,
    /// Service targets only.
    pub limits: ConnectionLimits,
    /// Service targets only.
    pub load_balancer: LoadBalancer,
    /// Service targets only: injected into requests to the Service.
    pub faults: Option<Faults>,
    /// Service targets only.
    pub rate_limit: RateLimits,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Faults {
    /// `(HTTP status or gRPC code, share in millionths)`.
    pub abort: Option<(FaultAbort, u32)>,
    pub delay: Option<(std::time::Duration, u32)>,
    /// `(name, exact value)`: only requests with all of them.
    pub headers: Vec<(String, String)>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FaultAbort {
    Http(u16),
    Grpc(u32),
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RateLimits {
    /// What the Service's proxies accept, over all their callers.
    pub inbound: Option<TokenBucket>,
    /// What each caller's proxy sends to the Service.
    pub outbound: Option<TokenBucket>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TokenBucket {
    pub requests_per_second: u32,
    pub burst: u32,
}

/// How a Service's endpoints share its requests.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum LoadBalancer {
    /// Power of two choices over latency x requests in flight.
    #[default]
    PeakEwma,
    /// Power of two choices over requests in flight.
    LeastRequest,
    RoundRobin,
    ConsistentHash {
        key: HashKey,
        minimum_ring_size: Option<u32>,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HashKey {
    Header(String),
    Cookie {
        name: String,
        ttl: Option<std::time::Duration>,
        path: Option<String>,
    },
}

/// Ejects an endpoint after consecutive failures (5xx, connect failures, resets).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OutlierDetection {
    pub consecutive_failures: u32,
    pub base_ejection_time: std::time::Duration,
    pub max_ejection_time: Option<std::time::Duration>,
    pub max_ejection_percent: u32,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ConnectionLimits {
    pub max_connections: Option<u32>,
    pub max_pending_requests: Option<u32>,
    pub max_requests: Option<u32>,
}

impl ConnectionLimits {
    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PolicyTimeouts {
    pub request: Option<std::time::Duration>,
    pub per_try: Option<std::time::Duration>,
    /// Service targets only: connecting to an endpoint.
    pub connect: Option<std::time::Duration>,
    /// Service targets only: an upstream connection with no request for this
    /// long is closed.
    pub idle: Option<std::time::Duration>,
    /// A response that goes this long without data is cut.
    pub stream_idle: Option<std::time::Duration>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyRetry {
    /// Retries after the first attempt.
    pub attempts: u32,
    /// Envoy `retry_on` conditions: `connect-failure`, `reset`, `5xx`,
    /// `gateway-error`.
    pub on: Vec<String>,
    pub codes: Vec<u16>,
    /// Envoy's names: `cancelled`, `deadline-exceeded`, `internal`,
    /// `resource-exhausted`, `unavailable`.
    pub grpc_codes: Vec<String>,
    pub backoff: Option<(std::time::Duration, std::time::Duration)>,
    /// Service targets only.
    pub budget: Option<RetryBudget>,
}

/// Retries may add `percent` of the requests plus `min_per_second`, over 10 s.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryBudget {
    pub percent: u32,
    pub min_per_second: u32,
}
