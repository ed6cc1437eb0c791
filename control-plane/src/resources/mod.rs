//! The resources users write (Kubernetes-shaped YAML), as typed values.
//!
//! These types hold what has been decoded and checked by [`crate::validate`]; they
//! are not a serde mirror of the YAML (the decoder reports every problem with its
//! field path instead of stopping at the first one).

mod httproute;
mod policy;
mod service;

use std::fmt;

pub use httproute::{
    Backend, HeaderMatch, HeaderModifier, HttpRoute, Mirror, ParentRef, PathMatch, Retry,
    RouteMatch, Rule, RuleFilters, Timeouts,
};
pub use policy::{
    AuthorizationAction, AuthorizationPolicy, AuthorizationRule, Caller, ConnectionLimits,
    FaultAbort, Faults, HashKey, LoadBalancer, MeshTls, OutlierDetection, Pattern, PolicyRetry,
    PolicyTarget, PolicyTimeouts, RateLimits, RetryBudget, TlsMode, TokenBucket, TrafficPolicy,
};
pub use service::{
    AppProtocol, EndpointAuthority, OpaqueProtocol, OriginTls, Service, ServicePort, StaticEndpoint,
};

/// The namespace every resource without `metadata.namespace` belongs to.
pub const DEFAULT_NAMESPACE: &str = "default";

/// The kinds of resource Remora reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Kind {
    Service,
    HttpRoute,
    MeshTls,
    AuthorizationPolicy,
    TrafficPolicy,
}

/// The API group and version of Remora's own kinds.
pub const POLICY_API_VERSION: &str = "policy.remora.dev/v1alpha1";

impl Kind {
    pub const ALL: [Kind; 5] = [
        Kind::Service,
        Kind::HttpRoute,
        Kind::MeshTls,
        Kind::AuthorizationPolicy,
        Kind::TrafficPolicy,
    ];

    /// The name as written in `kind:`.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Service => "Service",
            Kind::HttpRoute => "HTTPRoute",
            Kind::MeshTls => "MeshTLS",
            Kind::AuthorizationPolicy => "AuthorizationPolicy",
            Kind::TrafficPolicy => "TrafficPolicy",
        }
    }

    /// The plural, for counts.
    pub fn plural(self) -> &'static str {
        match self {
            Kind::Service => "Services",
            Kind::HttpRoute => "HTTPRoutes",
            Kind::MeshTls => "MeshTLS policies",
            Kind::AuthorizationPolicy => "AuthorizationPolicies",
            Kind::TrafficPolicy => "TrafficPolicies",
        }
    }

    /// The `apiVersion` values accepted for this kind; the first is the preferred one.
    pub fn api_versions(self) -> &'static [&'static str] {
        match self {
            Kind::Service => &["v1"],
            Kind::HttpRoute => &[
                "gateway.networking.k8s.io/v1",
                "gateway.networking.k8s.io/v1beta1",
            ],
            Kind::MeshTls | Kind::AuthorizationPolicy | Kind::TrafficPolicy => {
                &[POLICY_API_VERSION]
            }
        }
    }

    pub fn from_name(kind: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.as_str() == kind)
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A resource's namespace and name; ordered by namespace, then name.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ObjectKey {
    pub namespace: String,
    pub name: String,
}

impl ObjectKey {
    pub fn new(namespace: impl Into<String>, name: impl Into<String>) -> Self {
        ObjectKey {
            namespace: namespace.into(),
            name: name.into(),
        }
    }
}

impl fmt::Display for ObjectKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}
