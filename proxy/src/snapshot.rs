//! The compiled, immutable configuration the request path reads. One `Snapshot` is
//! published at a time with arc-swap; a request loads it once and keeps it.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::Arc;

use http::{HeaderName, HeaderValue, Method};

use std::time::Duration;

pub use crate::matchers::{HeaderMatch, HeaderValueMatch, PathMatch};

use crate::authz::Authorization;
use crate::resilience::rate_limit::Limiter;
use crate::resilience::RetryPolicy;
use crate::telemetry::HopStats;
use crate::upstream::{Cluster, Endpoint};

/// Accepted xDS versions, by type URL.
pub type Versions = BTreeMap<&'static str, String>;

#[derive(Debug, Default)]
pub struct Snapshot {
    pub versions: Versions,
    pub clusters: HashMap<Arc<str>, Arc<Cluster>>,
    /// The outbound route table, once a listener and its routes have arrived.
    pub outbound: Option<RouteTable>,
    /// How the inbound listener accepts connections and authorizes requests; until
    /// the control plane sends it, STRICT with no authorization policy.
    pub inbound: Option<InboundPolicy>,
    /// Where a connection goes by its original destination or Service port (the
    /// outbound listener's filter chains after the first).
    pub destinations: Destinations,
}

impl Snapshot {
    /// The endpoints outlier detection has ejected at `now`, by cluster: what
    /// the proxy reports to the control plane (`remora get endpoints`).
    pub fn ejected_endpoints(
        &self,
        now: tokio::time::Instant,
    ) -> Vec<remora_proto::telemetry::EjectedEndpoint> {
        let mut out: Vec<_> = self
            .clusters
            .values()
            .flat_map(|c| {
                c.endpoints
                    .iter()
                    .filter(move |e| e.endpoint.outlier().is_ejected(now))
                    .map(move |e| remora_proto::telemetry::EjectedEndpoint {
                        cluster: c.name.to_string(),
                        service: c.destination.0.clone(),
                        namespace: c.destination.1.clone(),
                        address: e.endpoint.addr().to_string(),
                    })
            })
            .collect();
        out.sort_by(|a, b| (&a.cluster, &a.address).cmp(&(&b.cluster, &b.address)));
        out
    }
}

/// The Service ports a connection can be for, from the outbound listener.
#[derive(Debug, Default, Clone)]
pub struct Destinations {
    /// By a Service's `clusterIP:port` (transparent mode).
    pub by_address: HashMap<SocketAddr, Arc<Destination>>,
    /// By `name.namespace:port` (the bootstrap's `upstreams`).
    pub by_name: HashMap<String, Arc<Destination>>,
    /// By an endpoint's IP and a port of its Service (an app that dials a pod
    /// directly): the Service port, and the endpoint it must reach. `None`
    /// where two Services' endpoints share the address (nothing is guessed).
    pub by_endpoint: HashMap<SocketAddr, Option<PinnedDestination>>,
}

/// A Service port and the one endpoint of it a connection must reach.
pub type PinnedDestination = (Arc<Destination>, Arc<Endpoint>);

impl Destinations {
    /// `redis.default:6379`
    pub fn key(service: &str, namespace: &str, port: u16) -> String {
        format!("{service}.{namespace}:{port}")
    }
}

/// One Service port and how its traffic is carried.
#[derive(Debug)]
pub struct Destination {
    pub service: String,
    pub namespace: String,
    pub port: u16,
    /// The `appProtocol` as declared (`redis`, `tcp`, `http`, ...), for logs.
    pub app_protocol: String,
    pub carry: Carry,
}

#[derive(Debug)]
pub enum Carry {
    /// Opaque TCP to the cluster's endpoints; closed after `idle_timeout`
    /// without a byte either way.
    Opaque {
        cluster: Arc<str>,
        idle_timeout: Duration,
    },
    /// Through the HTTP path, routed as a request to this authority would be.
    Http { authority: Arc<str> },
}

/// The compiled inbound listener.
#[derive(Debug)]
pub struct InboundPolicy {
    pub name: String,
    /// For connections that completed mTLS.
    pub mtls: Authorization,
    /// `Some` when plaintext connections are accepted too (PERMISSIVE).
    pub plaintext: Option<Authorization>,
    /// The Service's local rate limit, over every caller.
    pub rate_limit: Option<Limiter>,
    /// The app ports that take opaque TCP from the mesh, and who may connect.
    pub tcp: HashMap<u16, TcpPort>,
    /// The app ports behind the Service's HTTP ports (`metadata.remora.http_ports`
    /// of the HTTP chains): the only ones a mesh peer may ask for with
    /// `remora-target-port`, and those a redirected plaintext request is taken
    /// to by its original destination port. Empty: every request to `app`.
    pub http_ports: std::collections::BTreeSet<u16>,
}

/// An app port carried as opaque TCP, as the inbound listener declares it.
#[derive(Debug)]
pub struct TcpPort {
    pub mtls: Authorization,
    /// `Some` when plaintext connections are taken too (PERMISSIVE).
    pub plaintext: Option<Authorization>,
    /// Closed after this long without a byte either way.
    pub idle_timeout: Duration,
}

impl InboundPolicy {
    pub fn mode(&self) -> &'static str {
        if self.plaintext.is_some() {
            "PERMISSIVE"
        } else {
            "STRICT"
        }
    }
}

impl Snapshot {
    /// Ready to route: the outbound listener and its route table are in place.
    pub fn is_ready(&self) -> bool {
        self.outbound.is_some()
    }
}

#[derive(Debug)]
pub struct RouteTable {
    pub name: String,
    /// Shared with the next snapshot when neither the virtual host nor the
    /// clusters it points at change (an endpoint update recompiles only the
    /// virtual hosts that send to the cluster whose endpoints changed).
    pub virtual_hosts: Vec<Arc<VirtualHost>>,
    /// Exact domains (lowercase) to the index of their virtual host.
    pub exact: HashMap<Box<str>, usize>,
    /// Suffix wildcards like `*.example.com`, stored as `.example.com`.
    pub suffixes: Vec<(Box<str>, usize)>,
    /// The `*` virtual host, if any.
    pub any: Option<usize>,
}

impl RouteTable {
    /// The virtual host for an authority (`host` or `host:port`), following Envoy's
    /// rules: exact first, then suffix wildcards, then `*`.
    pub fn virtual_host(&self, authority: &str) -> Option<&VirtualHost> {
        let index = self.lookup(authority).or_else(|| {
            // `orders:80` may be listed without its port.
            let host = authority.rsplit_once(':').map(|(h, _)| h)?;
            self.lookup(host)
        });
        index
            .or(self.any)
            .and_then(|i| self.virtual_hosts.get(i))
            .map(|vh| &**vh)
    }

    fn lookup(&self, authority: &str) -> Option<usize> {
        let found = if authority.bytes().any(|b| b.is_ascii_uppercase()) {
            self.exact.get(authority.to_ascii_lowercase().as_str())
        } else {
            self.exact.get(authority)
        };
        found.copied().or_else(|| {
            self.suffixes
                .iter()
                .find(|(suffix, _)| authority.ends_with(&**suffix))
                .map(|(_, i)| *i)
        })
    }
}

#[derive(Debug)]
pub struct VirtualHost {
    pub name: String,
    pub routes: Vec<Route>,
}

impl VirtualHost {
    pub fn route(&self, method: &Method, path: &str, headers: &http::HeaderMap) -> Option<&Route> {
        self.routes
            .iter()
            .find(|r| r.matcher.matches(method, path, headers))
    }
}

#[derive(Debug)]
pub struct Route {
    pub name: Arc<str>,
    pub matcher: RouteMatch,
    pub action: RouteAction,
    pub policy: RoutePolicy,
    /// The metrics of each target of the split, in the same order.
    pub hops: Vec<Option<Arc<HopStats>>>,
}

/// Timeouts and retries of a route (Envoy `RouteAction` `timeout`, `retry_policy`,
/// `max_stream_duration`).
#[derive(Debug, Default)]
pub struct RoutePolicy {
    /// The whole request, retries included, until the response headers; `None`
    /// disables it.
    pub timeout: Option<Duration>,
    pub retry: Option<RetryPolicy>,
    /// `Some`: a gRPC client's `grpc-timeout` is honoured, capped at the inner
    /// value if there is one.
    pub grpc_timeout: Option<Option<Duration>>,
    /// The key consistent hashing uses (Envoy `hash_policy`).
    pub hash: Option<HashPolicy>,
    /// How long a response body may go without data (Envoy route `idle_timeout`).
    pub stream_idle: Option<Duration>,
    /// The local rate limit of requests on this route (per-route config).
    pub rate_limit: Option<Limiter>,
    pub request_headers: HeaderMods,
    pub response_headers: HeaderMods,
    /// Clusters a copy of the request goes to (its answer ignored), with the share
    /// of requests in millionths.
    pub mirrors: Vec<(Target, u32)>,
}

/// Header changes (Envoy `*_headers_to_add` / `*_headers_to_remove`).
#[derive(Debug, Default)]
pub struct HeaderMods {
    pub set: Vec<(HeaderName, HeaderValue)>,
    pub add: Vec<(HeaderName, HeaderValue)>,
    pub remove: Vec<HeaderName>,
}

impl HeaderMods {
    pub fn is_empty(&self) -> bool {
        self.set.is_empty() && self.add.is_empty() && self.remove.is_empty()
    }

    pub fn apply(&self, headers: &mut http::HeaderMap) {
        for name in &self.remove {
            headers.remove(name);
        }
        for (name, value) in &self.set {
            headers.insert(name.clone(), value.clone());
        }
        for (name, value) in &self.add {
            headers.append(name.clone(), value.clone());
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HashPolicy {
    Header(HeaderName),
    /// A cookie; without one, a request gets a new random one (set on the
    /// response) when `ttl` is given.
    Cookie {
        name: String,
        ttl: Option<Duration>,
        path: String,
    },
}

#[derive(Debug)]
pub struct RouteMatch {
    pub path: PathMatch,
    pub method: Option<Method>,
    pub headers: Vec<HeaderMatch>,
}

impl RouteMatch {
    pub fn matches(&self, method: &Method, path: &str, headers: &http::HeaderMap) -> bool {
        self.path.matches(path)
            && self.method.as_ref().is_none_or(|m| m == method)
            && self.headers.iter().all(|h| h.matches(headers))
    }
}

#[derive(Debug)]
pub enum RouteAction {
    /// Split across clusters by weight; the cumulative weights are precomputed.
    Split(WeightedClusters),
}

#[derive(Debug)]
pub struct WeightedClusters {
    /// `(cumulative weight, target)`, ascending; zero-weight targets are dropped.
    pub targets: Vec<(u32, Target)>,
    pub total: u32,
}

impl WeightedClusters {
    /// Picks a target; `draw` is uniform in `0..total`.
    pub fn pick(&self, draw: u32) -> Option<&Target> {
        self.pick_index(draw).map(|i| &self.targets[i].1)
    }

    pub fn pick_index(&self, draw: u32) -> Option<usize> {
        self.targets
            .iter()
            .position(|(cumulative, _)| draw < *cumulative)
    }
}

/// A route's destination, resolved when config compiles.
#[derive(Debug, Clone)]
pub enum Target {
    Cluster(Arc<Cluster>),
    /// Named by a route but not (yet) known: requests get 503.
    Missing(Arc<str>),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segment_prefix_stops_at_a_slash() {
        let m = PathMatch::SegmentPrefix("/api".into());
        assert!(m.matches("/api"));
        assert!(m.matches("/api/v1"));
        assert!(!m.matches("/apis"));
    }

    #[test]
    fn weighted_pick_follows_the_cumulative_weights() {
        let missing = |n: &str| Target::Missing(n.into());
        let w = WeightedClusters {
            targets: vec![(30, missing("a")), (100, missing("b"))],
            total: 100,
        };
        let name = |t: &Target| match t {
            Target::Missing(n) => n.to_string(),
            Target::Cluster(c) => c.name.to_string(),
        };
        assert_eq!(name(w.pick(0).unwrap()), "a");
        assert_eq!(name(w.pick(29).unwrap()), "a");
        assert_eq!(name(w.pick(30).unwrap()), "b");
        assert_eq!(name(w.pick(99).unwrap()), "b");
    }
}
