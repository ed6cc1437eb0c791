//! The connected proxies: who they are (from their Node), what each was sent and
//! ACKed, whether it is leaving, and what an operator should be warned about.
//! Those that front a Service are registered with endpoint discovery
//! ([`crate::endpoints`]) for as long as they are connected, unless the cluster
//! says who serves ([`Registry::without_self_registration`]).

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError};
use std::time::SystemTime;

use remora_proto::xds::envoy::config::core::v3::Node;
use remora_proto::xds::google::protobuf::value::Kind;
use tokio::sync::watch;

use super::refusals::Refusals;
use super::snapshot::{self, Snapshot};
use super::XdsPeer;
use crate::endpoints::{Discovery, Registration, Withdrawal};
use crate::escape::escape_control;
use crate::resources::{ObjectKey, DEFAULT_NAMESPACE};
use crate::translate::{MeshEndpoint, Origin, ResourceType};

/// The node metadata field through which a proxy says it is leaving (a bool,
/// or the string `"true"`).
pub const DRAINING: &str = "draining";

/// Whether `node` says its proxy is leaving the mesh.
pub fn is_draining(node: Option<&Node>) -> bool {
    node.and_then(|n| n.metadata.as_ref())
        .and_then(|m| m.fields.get(DRAINING))
        .is_some_and(|v| match &v.kind {
            Some(Kind::BoolValue(b)) => *b,
            Some(Kind::StringValue(s)) => s == "true",
            _ => false,
        })
}

/// What a proxy says about itself in `node` (see docs/architecture.md).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProxyIdentity {
    pub node_id: String,
    /// The Service this proxy fronts.
    pub service: Option<String>,
    pub namespace: String,
    /// Where other proxies reach its inbound listener.
    pub inbound_address: Option<SocketAddr>,
    /// The SPIFFE identity it serves with, which callers verify: the one its
    /// client certificate on the xDS stream proves (see `xds::server`).
    pub identity: Option<String>,
    /// How its xDS stream is carried: `mtls` or `plaintext`.
    pub transport: &'static str,
    /// Where its xDS connection comes from.
    pub remote: Option<SocketAddr>,
}

impl ProxyIdentity {
    /// Reads `node.id` and the string fields `service`, `namespace` and
    /// `inbound_address` of `node.metadata`. A malformed address is logged and
    /// ignored (the proxy still gets its config, it just receives no traffic).
    pub fn from_node(node: Option<&Node>) -> Self {
        let field = |key: &str| {
            node.and_then(|n| n.metadata.as_ref())
                .and_then(|m| m.fields.get(key))
                .and_then(|v| match &v.kind {
                    Some(Kind::StringValue(s)) if !s.is_empty() => Some(s.clone()),
                    _ => None,
                })
        };
        let node_id = node.map(|n| n.id.clone()).unwrap_or_default();
        let inbound_address = field("inbound_address").and_then(|a| match a.parse() {
            Ok(addr) => Some(addr),
            Err(_) => {
                tracing::warn!(node_id = %escape_control(&node_id), inbound_address = %escape_control(&a), "node metadata inbound_address is not ip:port; the proxy is not registered as an endpoint");
                None
            }
        });
        ProxyIdentity {
            service: field("service"),
            namespace: field("namespace").unwrap_or_else(|| DEFAULT_NAMESPACE.to_owned()),
            inbound_address,
            identity: field("identity"),
            transport: "plaintext",
            remote: None,
            node_id,
        }
    }

    /// The endpoint it registers: its inbound address for the Service it
    /// names, once both are known.
    pub fn endpoint(&self) -> Option<MeshEndpoint> {
        Some(MeshEndpoint {
            service: ObjectKey::new(self.namespace.clone(), self.service.clone()?),
            address: self.inbound_address?,
            node_id: self.node_id.clone(),
            identity: self.identity.clone(),
            peer: self.remote,
            origin: Origin::Registered,
        })
    }
}

/// A response the proxy rejected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Nack {
    pub version: String,
    pub nonce: String,
    pub message: String,
}

/// Where one resource type stands with one proxy.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TypeStatus {
    pub sent_version: Option<String>,
    pub acked_version: Option<String>,
    /// Cleared when a later response is ACKed.
    pub last_nack: Option<Nack>,
}

#[derive(Debug, Clone)]
pub struct ProxyStatus {
    pub identity: ProxyIdentity,
    pub connected_since: SystemTime,
    pub types: BTreeMap<ResourceType, TypeStatus>,
    /// It said it is leaving: it is no endpoint any more, and finishes what
    /// is in flight.
    pub draining: bool,
    /// What an operator should know about it (e.g. it names a Service that is
    /// not defined, so it gets no traffic).
    pub warnings: Vec<String>,
    /// The snapshot generation every type of its stream was last computed from
    /// (at least): with `types` ACKed, the proxy holds that generation or newer.
    pub generation: u64,
}

/// The connected proxies. Connecting or disconnecting one that fronts a Service
/// registers or removes its endpoint with discovery, which publishes the new
/// endpoints.
#[derive(Debug)]
pub struct Registry {
    proxies: Mutex<Proxies>,
    discovery: Arc<Discovery>,
    /// Proxies that front a Service become its endpoints (file mode); off
    /// when the cluster says who serves (Kubernetes).
    self_registration: bool,
    /// What the xDS port refused (streams, registrations, reports).
    pub refusals: Refusals,
}

#[derive(Debug, Default)]
struct Proxies {
    next_id: u64,
    by_id: BTreeMap<u64, ProxyStatus>,
}

impl Registry {
    /// A registry whose proxies' endpoints are published on `snapshots`.
    pub fn new(snapshots: watch::Sender<Snapshot>) -> Arc<Self> {
        let discovery = Discovery::new(move |endpoints| {
            snapshot::publish_endpoints(&snapshots, endpoints);
        });
        Self::with_discovery(discovery)
    }

    /// A registry that registers its proxies' endpoints with `discovery`.
    pub fn with_discovery(discovery: Arc<Discovery>) -> Arc<Self> {
        Arc::new(Registry {
            proxies: Mutex::new(Proxies::default()),
            discovery,
            self_registration: true,
            refusals: Refusals::default(),
        })
    }

    /// A registry whose proxies are listed but register no endpoint: the
    /// cluster feeds `discovery` (Kubernetes, where EndpointSlices say who
    /// serves). A proxy that says it is leaving still withdraws its own pod.
    pub fn without_self_registration(snapshots: watch::Sender<Snapshot>) -> Arc<Self> {
        let discovery = Discovery::new(move |endpoints| {
            snapshot::publish_endpoints(&snapshots, endpoints);
        });
        Arc::new(Registry {
            proxies: Mutex::new(Proxies::default()),
            discovery,
            self_registration: false,
            refusals: Refusals::default(),
        })
    }

    /// Whether connected proxies register their own endpoints (and so are
    /// checked by endpoint authority when they connect).
    pub fn registers_endpoints(&self) -> bool {
        self.self_registration
    }

    /// Endpoint discovery, which this registry feeds.
    pub fn discovery(&self) -> &Arc<Discovery> {
        &self.discovery
    }

    fn lock(&self) -> MutexGuard<'_, Proxies> {
        self.proxies.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Registers a proxy until the returned guard is dropped.
    pub fn connect(self: &Arc<Self>, identity: ProxyIdentity) -> Connection {
        self.connect_draining(identity, false)
    }

    /// Registers a proxy that may already be leaving (it reconnected during
    /// its drain): then it is never an endpoint, not even for a moment.
    pub fn connect_draining(
        self: &Arc<Self>,
        identity: ProxyIdentity,
        draining: bool,
    ) -> Connection {
        let endpoint = identity.endpoint().filter(|_| self.self_registration);
        // What a leaving proxy's pod is known by: the IP its connection comes
        // from and the identity its certificate proves.
        let leave = match (identity.remote, &identity.identity) {
            (Some(remote), Some(proven)) if !self.self_registration => {
                Some((remote.ip(), proven.clone()))
            }
            _ => None,
        };
        let id = {
            let mut proxies = self.lock();
            let id = proxies.next_id;
            proxies.next_id += 1;
            proxies.by_id.insert(
                id,
                ProxyStatus {
                    identity,
                    connected_since: SystemTime::now(),
                    types: BTreeMap::new(),
                    draining,
                    warnings: Vec::new(),
                    generation: 0,
                },
            );
            id
        };
        let registration = endpoint.map(|e| self.discovery.register(e, draining));
        let connection = Connection {
            registry: Arc::clone(self),
            id,
            registration,
            leave,
            withdrawal: OnceLock::new(),
        };
        if draining {
            connection.withdraw_pod();
        }
        connection
    }

    /// The connected proxy `node_id` whose xDS stream the same certificate
    /// proves (plaintext: a plaintext stream from the same IP). A report or any
    /// other call that names a node must come from that node.
    pub fn node_proven_by(&self, node_id: &str, peer: &XdsPeer) -> Option<ProxyIdentity> {
        let same_peer = |p: &ProxyIdentity| match (&peer.identity, &p.identity) {
            (Some(caller), Some(registered)) => caller == registered,
            (None, None) => {
                let ip = |a: Option<SocketAddr>| a.map(|a| a.ip());
                ip(peer.remote).is_some() && ip(peer.remote) == ip(p.remote)
            }
            _ => false,
        };
        self.lock()
            .by_id
            .values()
            .map(|s| &s.identity)
            .find(|p| p.node_id == node_id && same_peer(p))
            .cloned()
    }

    /// Every connected proxy, in connection order.
    pub fn proxies(&self) -> Vec<ProxyStatus> {
        self.lock().by_id.values().cloned().collect()
    }
}

/// A registered proxy; dropping it unregisters the proxy (and removes its
/// endpoint).
#[derive(Debug)]
pub struct Connection {
    registry: Arc<Registry>,
    id: u64,
    /// Its endpoint, for a proxy that fronts a Service.
    registration: Option<Registration>,
    /// Without self-registration: the IP and identity its pod's endpoint is
    /// withdrawn by when it leaves (`None`: it cannot prove either).
    leave: Option<(IpAddr, String)>,
    /// Its pod's endpoint withdrawn, once it said it is leaving.
    withdrawal: OnceLock<Withdrawal>,
}

impl Connection {
    pub fn update(&self, types: BTreeMap<ResourceType, TypeStatus>) {
        if let Some(status) = self.registry.lock().by_id.get_mut(&self.id) {
            status.types = types;
        }
    }

    /// The proxy is leaving: its endpoint is withdrawn at once (discovery
    /// publishes, and every stream pushes the change) while it stays
    /// connected. Returns whether it was not draining already.
    pub fn drain(&self) -> bool {
        let first = match self.registry.lock().by_id.get_mut(&self.id) {
            Some(status) => !std::mem::replace(&mut status.draining, true),
            None => false,
        };
        if let Some(registration) = &self.registration {
            registration.drain();
        }
        self.withdraw_pod();
        first
    }

    /// Withdraws the pod the cluster lists for this proxy (its IP and
    /// identity), once, for as long as it stays connected.
    fn withdraw_pod(&self) {
        let Some((ip, identity)) = &self.leave else {
            return;
        };
        self.withdrawal
            .get_or_init(|| self.registry.discovery.withdraw(*ip, identity.clone()));
    }

    /// Replaces what operators are warned about this proxy.
    pub fn set_warnings(&self, warnings: Vec<String>) {
        if let Some(status) = self.registry.lock().by_id.get_mut(&self.id) {
            status.warnings = warnings;
        }
    }

    /// Every type of the stream has been computed from `generation` or a later
    /// snapshot. Call after [`Connection::update`], so that a reader never pairs
    /// the new generation with the types from before.
    pub fn seen(&self, generation: u64) {
        if let Some(status) = self.registry.lock().by_id.get_mut(&self.id) {
            status.generation = generation;
        }
    }
}

impl Drop for Connection {
    fn drop(&mut self) {
        self.registry.lock().by_id.remove(&self.id);
        // `registration` is dropped next, which removes the endpoint, and
        // `withdrawal`, which gives its pod back to the cluster's word.
    }
}

#[cfg(test)]
mod tests {
    use remora_proto::xds::google::protobuf::{Struct, Value};

    use super::*;

    fn node(id: &str, fields: &[(&str, &str)]) -> Node {
        let fields = fields
            .iter()
            .map(|(k, v)| {
                let v = Value {
                    kind: Some(Kind::StringValue((*v).into())),
                };
                ((*k).to_owned(), v)
            })
            .collect();
        Node {
            id: id.into(),
            metadata: Some(Struct { fields }),
            ..Default::default()
        }
    }

    fn endpoints(rx: &watch::Receiver<Snapshot>) -> Vec<(String, String)> {
        rx.borrow()
            .endpoints
            .iter()
            .map(|e| (e.node_id.clone(), e.address.to_string()))
            .collect()
    }

    #[test]
    fn reads_identity_from_node_metadata() {
        let n = node(
            "a-1",
            &[("service", "orders"), ("inbound_address", "127.0.0.1:7002")],
        );
        let id = ProxyIdentity::from_node(Some(&n));
        assert_eq!(id.node_id, "a-1");
        assert_eq!(id.service.as_deref(), Some("orders"));
        assert_eq!(id.namespace, "default");
        assert_eq!(id.inbound_address, Some("127.0.0.1:7002".parse().unwrap()));
        let bad = node(
            "b",
            &[("service", "orders"), ("inbound_address", "nowhere")],
        );
        assert_eq!(ProxyIdentity::from_node(Some(&bad)).inbound_address, None);
        assert_eq!(ProxyIdentity::from_node(None).namespace, "default");
    }

    #[test]
    fn a_proxy_is_an_endpoint_while_connected() {
        let (tx, rx) = watch::channel(Snapshot::default());
        let registry = Registry::new(tx);
        let with_address = |id: &str, addr: &str| {
            ProxyIdentity::from_node(Some(&node(
                id,
                &[("service", "orders"), ("inbound_address", addr)],
            )))
        };
        let a = registry.connect(with_address("a", "127.0.0.1:7002"));
        let _client = registry.connect(ProxyIdentity::from_node(Some(&node("client", &[]))));
        assert_eq!(endpoints(&rx), [("a".into(), "127.0.0.1:7002".into())]);
        // The same address again (a reconnect): the newer one wins, no duplicate.
        let a2 = registry.connect(with_address("a-again", "127.0.0.1:7002"));
        assert_eq!(
            endpoints(&rx),
            [("a-again".into(), "127.0.0.1:7002".into())]
        );
        drop(a2);
        assert_eq!(endpoints(&rx), [("a".into(), "127.0.0.1:7002".into())]);
        drop(a);
        assert!(endpoints(&rx).is_empty());
        assert_eq!(registry.proxies().len(), 1);
    }

    fn orders(id: &str, addr: &str) -> ProxyIdentity {
        ProxyIdentity::from_node(Some(&node(
            id,
            &[("service", "orders"), ("inbound_address", addr)],
        )))
    }

    #[test]
    fn a_draining_proxy_stops_being_an_endpoint_at_once_and_stays_listed() {
        let (tx, mut rx) = watch::channel(Snapshot::default());
        let registry = Registry::new(tx);
        let a = registry.connect(orders("a", "127.0.0.1:7002"));
        let _b = registry.connect(orders("b", "127.0.0.1:7003"));
        rx.borrow_and_update();
        assert!(a.drain(), "the first leave");
        // Published with the leave itself: every stream wakes and pushes EDS.
        assert!(rx.has_changed().unwrap());
        assert_eq!(endpoints(&rx), [("b".into(), "127.0.0.1:7003".into())]);
        let listed = registry.proxies();
        assert_eq!(
            listed.len(),
            2,
            "it is still connected, finishing its requests"
        );
        assert!(listed
            .iter()
            .any(|p| p.identity.node_id == "a" && p.draining));
        assert!(!a.drain(), "a second leave changes nothing");
        drop(a);
        assert_eq!(endpoints(&rx), [("b".into(), "127.0.0.1:7003".into())]);
    }

    #[test]
    fn a_proxy_that_reconnects_draining_is_never_an_endpoint() {
        let (tx, mut rx) = watch::channel(Snapshot::default());
        let registry = Registry::new(tx);
        rx.borrow_and_update();
        let _a = registry.connect_draining(orders("a", "127.0.0.1:7002"), true);
        assert!(endpoints(&rx).is_empty());
        assert!(registry.proxies()[0].draining);
    }

    #[test]
    fn the_leave_flag_is_read_from_node_metadata() {
        let mut n = node("a", &[("service", "orders"), ("draining", "true")]);
        assert!(is_draining(Some(&n)));
        n.metadata.as_mut().unwrap().fields.insert(
            DRAINING.into(),
            Value {
                kind: Some(Kind::BoolValue(true)),
            },
        );
        assert!(is_draining(Some(&n)));
        n.metadata.as_mut().unwrap().fields.insert(
            DRAINING.into(),
            Value {
                kind: Some(Kind::BoolValue(false)),
            },
        );
        assert!(!is_draining(Some(&n)));
        assert!(!is_draining(Some(&node("b", &[("service", "orders")]))));
        assert!(!is_draining(None));
    }

    /// A proxy of orders as an mTLS stream proves it, from `remote`.
    fn proven(id: &str, remote: &str, account: &str) -> ProxyIdentity {
        let mut p = orders(id, "127.0.0.1:7002");
        p.remote = Some(remote.parse().unwrap());
        p.identity = Some(format!("spiffe://cluster.local/ns/default/sa/{account}"));
        p
    }

    fn pod(name: &str, address: &str) -> MeshEndpoint {
        MeshEndpoint {
            service: ObjectKey::new("default", "orders"),
            address: address.parse().unwrap(),
            node_id: format!("pod/default/{name}"),
            identity: Some("spiffe://cluster.local/ns/default/sa/orders".into()),
            peer: None,
            origin: Origin::Cluster,
        }
    }

    #[test]
    fn without_self_registration_proxies_are_listed_but_no_endpoints() {
        let (tx, rx) = watch::channel(Snapshot::default());
        let registry = Registry::without_self_registration(tx);
        assert!(!registry.registers_endpoints());
        let _a = registry.connect(proven("a", "10.0.0.2:40000", "orders"));
        assert!(endpoints(&rx).is_empty(), "the cluster says who serves");
        assert_eq!(registry.proxies().len(), 1);
        registry
            .discovery()
            .replace_feed(vec![pod("b", "10.0.0.3:7002")]);
        assert_eq!(
            endpoints(&rx),
            [("pod/default/b".into(), "10.0.0.3:7002".into())]
        );
    }

    #[test]
    fn without_self_registration_a_leaving_proxy_withdraws_its_pod() {
        let (tx, rx) = watch::channel(Snapshot::default());
        let registry = Registry::without_self_registration(tx);
        registry
            .discovery()
            .replace_feed(vec![pod("b", "10.0.0.2:7002"), pod("c", "10.0.0.3:7002")]);
        let b = registry.connect(proven("b", "10.0.0.2:40000", "orders"));
        assert_eq!(endpoints(&rx).len(), 2);
        assert!(b.drain());
        assert_eq!(
            endpoints(&rx),
            [("pod/default/c".into(), "10.0.0.3:7002".into())]
        );
        assert!(!b.drain(), "a second leave changes nothing");
        drop(b);
        assert_eq!(endpoints(&rx).len(), 2, "gone: the cluster's word again");
        // One that reconnects while leaving is withdrawn from the start.
        let _again = registry.connect_draining(proven("b", "10.0.0.2:40001", "orders"), true);
        assert_eq!(
            endpoints(&rx),
            [("pod/default/c".into(), "10.0.0.3:7002".into())]
        );
    }

    #[test]
    fn warnings_are_kept_per_proxy() {
        let (tx, _rx) = watch::channel(Snapshot::default());
        let registry = Registry::new(tx);
        let a = registry.connect(orders("a", "127.0.0.1:7002"));
        a.set_warnings(vec!["Service default/orders is not defined".into()]);
        assert_eq!(registry.proxies()[0].warnings.len(), 1);
        a.set_warnings(Vec::new());
        assert!(registry.proxies()[0].warnings.is_empty());
    }
}
