//! Endpoints live here across snapshots: a new snapshot asks for the endpoint at an
//! address and gets the same object (with its connection and latency estimate) for
//! as long as any snapshot still uses it.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, Weak};

use hyper_util::client::legacy::{connect::HttpConnector, Client};

use crate::telemetry::tcp::{CountedConnector, TcpCounters, TCP};
use hyper_util::rt::{TokioExecutor, TokioTimer};

use super::origin::OriginConnector;
use super::RequestBody;
use super::{
    ClusterState, ConnectionTimeouts, Endpoint, OriginClient, OriginTls, TlsTarget, Transport,
};
use crate::resilience::rate_limit::{BucketConfig, TokenBucket};
use crate::telemetry::Metrics;
use crate::tls::TlsContext;

/// Who an endpoint is, beyond its address: what its TLS must verify.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum PeerKey {
    Mesh(Arc<str>),
    Origin(OriginTls),
}

type Key = (SocketAddr, Transport, Option<PeerKey>, ConnectionTimeouts);

/// What a connection to an endpoint must verify.
#[derive(Debug, Clone, Copy)]
pub enum Peer<'a> {
    /// Plaintext.
    None,
    /// A meshed proxy announced with this SPIFFE id.
    Mesh(&'a str),
    /// A server outside the mesh reached over ordinary TLS.
    Origin(&'a Arc<OriginClient>),
}

pub struct EndpointRegistry {
    endpoints: Mutex<HashMap<Key, Weak<Endpoint>>>,
    clusters: Mutex<HashMap<String, Weak<ClusterState>>>,
    buckets: Mutex<HashMap<String, Weak<TokenBucket>>>,
    /// Every hop's metrics (see `telemetry`).
    metrics: Arc<Metrics>,
    http1: Client<CountedConnector, RequestBody>,
    /// This proxy's mTLS, when it has an identity.
    tls: Option<Arc<TlsContext>>,
}

impl Default for EndpointRegistry {
    fn default() -> Self {
        Self::new(None)
    }
}

impl EndpointRegistry {
    pub fn new(tls: Option<Arc<TlsContext>>) -> Self {
        Self::with_metrics(tls, Arc::default())
    }

    pub fn with_metrics(tls: Option<Arc<TlsContext>>, metrics: Arc<Metrics>) -> Self {
        Self {
            metrics,
            endpoints: Mutex::new(HashMap::new()),
            clusters: Mutex::new(HashMap::new()),
            buckets: Mutex::new(HashMap::new()),
            http1: http1_client(ConnectionTimeouts::DEFAULT, &TCP.outbound_dst),
            tls,
        }
    }

    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// The live state of a cluster, or a new one: a config change keeps a
    /// cluster's retry budget and counters.
    pub fn cluster_state(&self, name: &str) -> Arc<ClusterState> {
        let mut map = self
            .clusters
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(existing) = map.get(name).and_then(Weak::upgrade) {
            return existing;
        }
        map.retain(|_, weak| weak.strong_count() > 0);
        let state = Arc::new(ClusterState::default());
        map.insert(name.to_owned(), Arc::downgrade(&state));
        state
    }

    /// The live token bucket of a rate limit (by its `stat_prefix`), or a new,
    /// full one: a config change does not refill a bucket.
    pub fn bucket(&self, key: &str, config: &BucketConfig) -> Arc<TokenBucket> {
        let mut map = self
            .buckets
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(existing) = map.get(key).and_then(Weak::upgrade) {
            return existing;
        }
        map.retain(|_, weak| weak.strong_count() > 0);
        let bucket = Arc::new(TokenBucket::new(config, tokio::time::Instant::now()));
        map.insert(key.to_owned(), Arc::downgrade(&bucket));
        bucket
    }

    /// The live endpoint for this address, transport and announced identity, or a
    /// new one. A meshed endpoint with an identity is reached over mTLS when this
    /// proxy has a certificate. Endpoints with different connect timeouts are
    /// different endpoints. Only called when config compiles, never per request.
    pub fn endpoint(
        &self,
        addr: SocketAddr,
        transport: Transport,
        peer: Peer<'_>,
        timeouts: ConnectionTimeouts,
    ) -> Arc<Endpoint> {
        let peer_key = match peer {
            Peer::None => None,
            Peer::Mesh(id) => Some(PeerKey::Mesh(Arc::from(id))),
            Peer::Origin(origin) => Some(PeerKey::Origin(origin.tls.clone())),
        };
        let key = (addr, transport, peer_key.clone(), timeouts);
        let mut map = self
            .endpoints
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(existing) = map.get(&key).and_then(Weak::upgrade) {
            return existing;
        }
        map.retain(|_, weak| weak.strong_count() > 0);
        // A proxy without a certificate still reaches an mTLS peer, in
        // plaintext: PERMISSIVE peers accept it, STRICT ones refuse and the
        // caller says why.
        let unproven = match (&self.tls, transport, &peer_key) {
            (None, Transport::MeshH2, Some(PeerKey::Mesh(expected))) => Some(expected.clone()),
            _ => None,
        };
        let tls = match (&self.tls, transport, peer_key, peer) {
            (Some(context), Transport::MeshH2, Some(PeerKey::Mesh(expected)), _) => {
                Some(TlsTarget::Mesh {
                    context: context.clone(),
                    expected,
                })
            }
            (_, Transport::TlsH1 | Transport::TlsH2, _, Peer::Origin(origin)) => {
                Some(TlsTarget::Origin(origin.clone()))
            }
            _ => None,
        };
        // Plain HTTP/1 endpoints share one pool, unless their cluster sets its own
        // connect timeout.
        let endpoint = Endpoint::with_http1_pool(
            addr,
            transport,
            || {
                if timeouts == ConnectionTimeouts::DEFAULT {
                    self.http1.clone()
                } else {
                    http1_client(timeouts, &TCP.outbound_dst)
                }
            },
            tls,
            timeouts,
            &TCP.outbound_dst,
        );
        let endpoint = Arc::new(endpoint.reached_without_certificate(unproven));
        map.insert(key, Arc::downgrade(&endpoint));
        endpoint
    }
}

/// An HTTP/1.1 keep-alive pool over TLS to one server outside the mesh.
pub(crate) fn origin_client(
    origin: Arc<OriginClient>,
    timeouts: ConnectionTimeouts,
) -> Client<OriginConnector, RequestBody> {
    let mut http = HttpConnector::new();
    http.set_nodelay(true);
    http.set_connect_timeout(Some(timeouts.connect));
    Client::builder(TokioExecutor::new())
        .timer(TokioTimer::new())
        .pool_timer(TokioTimer::new())
        .pool_idle_timeout(timeouts.idle)
        .pool_max_idle_per_host(256)
        .build(OriginConnector { http, origin })
}

/// The HTTP/1.1 keep-alive pool used for plain endpoints and the local app.
pub(crate) fn http1_client(
    timeouts: ConnectionTimeouts,
    counters: &'static TcpCounters,
) -> Client<CountedConnector, RequestBody> {
    let mut http = HttpConnector::new();
    http.set_nodelay(true);
    http.set_connect_timeout(Some(timeouts.connect));
    let connector = CountedConnector { http, counters };
    Client::builder(TokioExecutor::new())
        .timer(TokioTimer::new())
        .pool_timer(TokioTimer::new())
        .pool_idle_timeout(timeouts.idle)
        .pool_max_idle_per_host(256)
        .build(connector)
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: ConnectionTimeouts = ConnectionTimeouts::DEFAULT;

    #[tokio::test]
    async fn the_same_address_gets_the_same_endpoint_while_in_use() {
        let registry = EndpointRegistry::new(None);
        let addr: SocketAddr = "127.0.0.1:9".parse().unwrap();
        let a = registry.endpoint(addr, Transport::MeshH2, Peer::None, T);
        let b = registry.endpoint(addr, Transport::MeshH2, Peer::None, T);
        assert!(Arc::ptr_eq(&a, &b));
        let plain = registry.endpoint(addr, Transport::PlainH1, Peer::None, T);
        assert!(!Arc::ptr_eq(&a, &plain));
        let weak = Arc::downgrade(&a);
        drop((a, b));
        assert!(weak.upgrade().is_none(), "unused endpoints are released");
    }

    #[tokio::test]
    async fn a_proxy_without_certificate_marks_the_mtls_peers_it_reaches_in_plaintext() {
        let registry = EndpointRegistry::new(None);
        let addr: SocketAddr = "127.0.0.1:9".parse().unwrap();
        let orders = "spiffe://cluster.local/ns/default/sa/orders";
        let announced = registry.endpoint(addr, Transport::MeshH2, Peer::Mesh(orders), T);
        assert_eq!(announced.reached_without_certificate_to(), Some(orders));
        assert!(announced.connect_settings().1.is_none(), "plaintext");
        let anonymous = registry.endpoint(addr, Transport::MeshH2, Peer::None, T);
        assert_eq!(anonymous.reached_without_certificate_to(), None);
    }
}
