//! The tonic service: one task per ADS stream, driving a [`StreamState`] with the
//! client's requests and the snapshot channel's changes.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use remora_proto::xds::envoy::service::discovery::v3::aggregated_discovery_service_server::{
    AggregatedDiscoveryService, AggregatedDiscoveryServiceServer,
};
use remora_proto::xds::envoy::service::discovery::v3::{
    DeltaDiscoveryRequest, DeltaDiscoveryResponse, DiscoveryRequest, DiscoveryResponse,
};
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tokio::time::Instant;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

use remora_proto::xds::envoy::config::core::v3::Node;

use super::refusals::Reason;
use super::registry::{self, Connection, ProxyIdentity, Registry};
use super::service_watch::ServiceWatch;
use super::snapshot::{Snapshot, TranslationCache};
use super::stream::StreamState;
use super::XdsPeer;
use crate::ca::SpiffeId;
use crate::endpoints;
use crate::escape::escape_control as escape;
use crate::signal::stopped;

/// Responses a stream may queue before its task waits for the client.
const RESPONSE_BUFFER: usize = 16;

/// The ADS service. Cheap to clone into tonic.
#[derive(Debug, Clone)]
pub struct AdsServer {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    snapshots: watch::Receiver<Snapshot>,
    registry: Arc<Registry>,
    cache: TranslationCache,
    shutdown: watch::Receiver<bool>,
    /// Random per process, so nonces never repeat across restarts either.
    nonce_prefix: String,
    next_stream: AtomicU64,
    /// Until then, proxies that reconnect (they already hold config) get no
    /// endpoints: the other proxies have not all re-registered yet.
    reconnect_grace_until: Instant,
    /// Kubernetes: turns `true` once the cluster's endpoints are fed. Until
    /// then no stream gets endpoints: the set is empty or partial, and a
    /// proxy reconnecting to a restarted control plane would lose its own.
    cluster_fed: Option<watch::Receiver<bool>>,
    trust_domain: String,
    /// Streams without a client certificate are served (`--allow-plaintext-proxies`).
    allow_plaintext: bool,
}

/// How long after start a reconnecting proxy's endpoints are held back by default:
/// the proxies' reconnect backoff is capped at 5 s, so by then every proxy that was
/// connected before has come back.
pub const DEFAULT_RECONNECT_GRACE: Duration = Duration::from_secs(6);

impl AdsServer {
    /// `shutdown` turning `true` ends every stream (with UNAVAILABLE, so clients
    /// reconnect elsewhere or later).
    pub fn new(
        snapshots: watch::Receiver<Snapshot>,
        registry: Arc<Registry>,
        shutdown: watch::Receiver<bool>,
        reconnect_grace: Duration,
        trust_domain: &str,
    ) -> Self {
        AdsServer {
            inner: Arc::new(Inner {
                snapshots,
                registry,
                cache: TranslationCache::new(trust_domain),
                shutdown,
                nonce_prefix: format!("{:08x}", rand::random::<u32>()),
                next_stream: AtomicU64::new(0),
                reconnect_grace_until: Instant::now() + reconnect_grace,
                cluster_fed: None,
                trust_domain: trust_domain.to_owned(),
                allow_plaintext: false,
            }),
        }
    }

    /// Serves streams without a client certificate too (local experiments only:
    /// anyone who reaches the port then reads the config of the namespace it
    /// names). Call before serving.
    pub fn allow_plaintext(mut self, allow: bool) -> Self {
        if let Some(inner) = Arc::get_mut(&mut self.inner) {
            inner.allow_plaintext = allow;
        }
        self
    }

    /// Holds every stream's endpoints until `fed` turns `true` (the
    /// cluster's first endpoint feed; `None`: nothing to wait for). Call
    /// before serving.
    pub fn hold_endpoints_until(mut self, fed: Option<watch::Receiver<bool>>) -> Self {
        if let Some(inner) = Arc::get_mut(&mut self.inner) {
            inner.cluster_fed = fed;
        }
        self
    }

    pub fn into_service(self) -> AggregatedDiscoveryServiceServer<Self> {
        AggregatedDiscoveryServiceServer::new(self)
    }
}

#[tonic::async_trait]
impl AggregatedDiscoveryService for AdsServer {
    type StreamAggregatedResourcesStream = ReceiverStream<Result<DiscoveryResponse, Status>>;
    type DeltaAggregatedResourcesStream =
        tokio_stream::Empty<Result<DeltaDiscoveryResponse, Status>>;

    async fn stream_aggregated_resources(
        &self,
        request: Request<Streaming<DiscoveryRequest>>,
    ) -> Result<Response<Self::StreamAggregatedResourcesStream>, Status> {
        let (tx, rx) = mpsc::channel(RESPONSE_BUFFER);
        let stream_id = self.inner.next_stream.fetch_add(1, Ordering::Relaxed);
        let inner = Arc::clone(&self.inner);
        let peer = request
            .extensions()
            .get::<XdsPeer>()
            .cloned()
            .unwrap_or_default();
        tokio::spawn(async move { inner.serve(stream_id, peer, request.into_inner(), tx).await });
        Ok(Response::new(ReceiverStream::new(rx)))
    }

    async fn delta_aggregated_resources(
        &self,
        _request: Request<Streaming<DeltaDiscoveryRequest>>,
    ) -> Result<Response<Self::DeltaAggregatedResourcesStream>, Status> {
        Err(Status::unimplemented(
            "Remora serves state-of-the-world ADS (StreamAggregatedResources) only",
        ))
    }
}

type Responses = mpsc::Sender<Result<DiscoveryResponse, Status>>;

/// What woke the stream up.
enum Event {
    Request(Box<DiscoveryRequest>),
    Changed,
    ReleaseEndpoints,
    Closed,
    Shutdown,
}

impl Inner {
    async fn serve(
        &self,
        stream_id: u64,
        peer: XdsPeer,
        mut requests: Streaming<DiscoveryRequest>,
        tx: Responses,
    ) {
        let mut shutdown = self.shutdown.clone();
        let first = tokio::select! {
            first = requests.message() => first,
            _ = stopped(&mut shutdown) => return,
        };
        let first = match first {
            Ok(Some(first)) => first,
            Ok(None) => return,
            Err(status) => {
                tracing::debug!(%status, "ADS stream failed before its first request");
                return;
            }
        };
        // A proxy that sends a version already holds config from before a restart.
        let reconnecting = !first.version_info.is_empty();
        let mut hold = Hold::new(
            (reconnecting && Instant::now() < self.reconnect_grace_until)
                .then_some(self.reconnect_grace_until),
            self.cluster_fed.clone(),
        );
        let mut identity = ProxyIdentity::from_node(first.node.as_ref());
        let checked = authenticate(&mut identity, &peer, self.allow_plaintext)
            .and_then(|()| self.authorize_endpoint(&identity));
        if let Err((reason, status)) = checked {
            tracing::warn!(node_id = %escape(&identity.node_id), remote = ?peer.remote, transport = peer.transport(), reason = reason.as_str(), message = %escape(status.message()), "proxy refused");
            self.registry
                .refusals
                .record(reason, peer.remote, status.message());
            let _ = tx.send(Err(status)).await;
            return;
        }
        let node_id = identity.node_id.clone();
        let namespace = identity.namespace.clone();
        let service = identity.service.clone();
        // A proxy that reconnects while it leaves is never an endpoint again.
        let draining = registry::is_draining(first.node.as_ref());
        let mut services = ServiceWatch::new(&identity);
        tracing::info!(
            node_id = %escape(&identity.node_id),
            service = %escape(identity.service.as_deref().unwrap_or("")),
            namespace = %identity.namespace,
            inbound_address = ?identity.inbound_address,
            identity = identity.identity.as_deref().unwrap_or(""),
            transport = peer.transport(),
            draining,
            "proxy connected"
        );
        let mut snapshots = self.snapshots.clone();
        // Every type this stream answers from now on is computed from this
        // snapshot or a later one (`remora status`, `apply --wait`).
        let mut generation = snapshots.borrow_and_update().generation;
        let connection = self.registry.connect_draining(identity, draining);
        let mut state = StreamState::new(
            node_id.clone(),
            format!("{}-{stream_id}", self.nonce_prefix),
        );
        if hold.grace() {
            tracing::info!(node_id = %escape(&node_id), "proxy reconnected during the grace period: its endpoints stay as they are until the other proxies are back");
        }
        if hold.feed() {
            tracing::info!(node_id = %escape(&node_id), "the cluster's endpoints are not listed yet: the proxy's endpoints stay as they are until they are");
        }
        if hold.holding() {
            state.hold_endpoints();
        }

        let mut event = Event::Request(Box::new(first));
        loop {
            let responses = match event {
                Event::Request(req) => {
                    if let Some(node) = &req.node {
                        leave_if_asked(node, &node_id, &connection);
                    }
                    // `borrow`, not `borrow_and_update`: a request answers its own
                    // type only, so a change it sees must still wake the
                    // `Changed` branch, which pushes every other type it touched.
                    // (Consuming it here lost endpoint pushes: a proxy that
                    // registered while another's ACK was being handled never
                    // reached that other proxy.)
                    let snapshot = snapshots.borrow().clone();
                    watch_service(&mut services, &snapshot, &connection);
                    let resources =
                        self.cache
                            .resources_for(&snapshot, &namespace, service.as_deref());
                    state.on_request(&req, &resources)
                }
                Event::Changed => {
                    let snapshot = snapshots.borrow_and_update().clone();
                    watch_service(&mut services, &snapshot, &connection);
                    generation = snapshot.generation;
                    let resources =
                        self.cache
                            .resources_for(&snapshot, &namespace, service.as_deref());
                    state.on_change(&resources)
                }
                Event::ReleaseEndpoints => {
                    let snapshot = snapshots.borrow_and_update().clone();
                    watch_service(&mut services, &snapshot, &connection);
                    generation = snapshot.generation;
                    let resources =
                        self.cache
                            .resources_for(&snapshot, &namespace, service.as_deref());
                    state.release_endpoints(&resources)
                }
                Event::Closed => break,
                Event::Shutdown => {
                    let status = Status::unavailable("control plane shutting down");
                    let _ = tx.send(Err(status)).await;
                    break;
                }
            };
            // Checked after the snapshot was read: a snapshot that already
            // holds a removal made by a stream closing for the shutdown was read
            // after the flag was set, so it is never sent.
            if *shutdown.borrow() {
                let status = Status::unavailable("control plane shutting down");
                let _ = tx.send(Err(status)).await;
                break;
            }
            for response in responses {
                if tx.send(Ok(response)).await.is_err() {
                    break;
                }
            }
            connection.update(state.status());
            connection.seen(generation);
            event = tokio::select! {
                // Shutdown first: the streams that close then unregister their
                // proxies, and that must not reach the streams still open as
                // endpoint removals (their proxies would serve, and keep in
                // their state dirs, a mesh without those endpoints while the
                // control plane is away).
                biased;
                _ = stopped(&mut shutdown) => Event::Shutdown,
                req = requests.message() => match req {
                    Ok(Some(req)) => Event::Request(Box::new(req)),
                    Ok(None) => Event::Closed,
                    Err(status) => {
                        tracing::debug!(node_id = %escape(&node_id), %status, "ADS stream error");
                        Event::Closed
                    }
                },
                changed = snapshots.changed() => match changed {
                    Ok(()) => Event::Changed,
                    Err(_) => Event::Shutdown,
                },
                () = hold.released() => Event::ReleaseEndpoints,
            };
            if tx.is_closed() {
                break;
            }
        }
        tracing::info!(node_id = %escape(&node_id), "proxy disconnected");
    }
}

impl Inner {
    /// Endpoint authority (see [`crate::endpoints::admit`]) against the
    /// Service as it is now. A Service not defined yet admits nobody yet: the
    /// proxy is served (and warned about), and translation checks its endpoint
    /// once the Service appears.
    fn authorize_endpoint(&self, identity: &ProxyIdentity) -> Result<(), Refusal> {
        // Without self-registration the proxy becomes no endpoint: the
        // cluster's facts say who serves (`kubernetes::endpoints`).
        let Some(endpoint) = identity
            .endpoint()
            .filter(|_| self.registry.registers_endpoints())
        else {
            return Ok(());
        };
        let store = self.snapshots.borrow().store.clone();
        endpoints::admit(&store, &self.trust_domain, &endpoint)
            .map(drop)
            .map_err(|e| {
                (
                    Reason::EndpointAuthority,
                    Status::permission_denied(e.to_string()),
                )
            })
    }
}

/// What a later request's `node` asks of its stream's proxy.
#[derive(Debug, PartialEq, Eq)]
enum Leave {
    /// Nothing (the node as before, as Envoy sends it on every request).
    No,
    /// Its proxy is leaving: withdraw its endpoint.
    Yes,
    /// It names another node: a proxy withdraws only itself, on its own
    /// (authenticated) stream.
    OtherNode,
}

fn leave_asked(node: &Node, node_id: &str) -> Leave {
    if !registry::is_draining(Some(node)) {
        Leave::No
    } else if node.id != node_id {
        Leave::OtherNode
    } else {
        Leave::Yes
    }
}

/// The leave signal: a request whose node metadata says `draining: true`
/// withdraws the stream's own endpoint at once (see docs/architecture.md).
fn leave_if_asked(node: &Node, node_id: &str, connection: &Connection) {
    match leave_asked(node, node_id) {
        Leave::No => {}
        Leave::OtherNode => {
            tracing::warn!(node_id = %escape(node_id), named = %escape(&node.id), "a request names another node as leaving: ignored (a proxy withdraws only itself)");
        }
        Leave::Yes => {
            if connection.drain() {
                tracing::info!(node_id = %escape(node_id), "proxy leaving: its endpoint is withdrawn and the change pushed to every stream");
            }
        }
    }
}

/// Warns (log and registry) when the Service the proxy names is not defined.
fn watch_service(services: &mut ServiceWatch, snapshot: &Snapshot, connection: &Connection) {
    if let Some(warnings) = services.observe(&snapshot.store) {
        connection.set_warnings(warnings);
    }
}

type Refusal = (Reason, Status);

/// The identity a proxy serves with (which callers will verify) must be the one its
/// client certificate proves, and its namespace the certificate's: a proxy cannot
/// register endpoints for another identity or namespace. A stream without a
/// certificate is refused unless plaintext proxies are allowed, and may not claim
/// an identity at all.
fn authenticate(
    identity: &mut ProxyIdentity,
    peer: &XdsPeer,
    allow_plaintext: bool,
) -> Result<(), Refusal> {
    identity.remote = peer.remote;
    let denied = |reason, message: String| (reason, Status::permission_denied(message));
    let Some(proven) = &peer.identity else {
        if let Some(declared) = &identity.identity {
            return Err(denied(Reason::IdentityMismatch, format!(
                "node metadata declares identity {declared}, but the connection has no client certificate: a proxy with an identity connects over mTLS"
            )));
        }
        if !allow_plaintext {
            return Err(denied(Reason::NoCertificate, NO_CERTIFICATE.to_owned()));
        }
        return Ok(());
    };
    if let Some(declared) = identity.identity.as_ref().filter(|d| *d != proven) {
        return Err(denied(
            Reason::IdentityMismatch,
            format!("node metadata declares identity {declared}, but the client certificate is {proven}"),
        ));
    }
    let id: SpiffeId = proven
        .parse()
        .map_err(|e: crate::ca::InvalidSpiffeId| denied(Reason::IdentityMismatch, e.to_string()))?;
    if id.namespace != identity.namespace {
        return Err(denied(Reason::IdentityMismatch, format!(
            "node metadata says namespace {}, but the client certificate {proven} is for namespace {}",
            identity.namespace, id.namespace
        )));
    }
    identity.identity = Some(proven.clone());
    identity.transport = peer.transport();
    Ok(())
}

/// What a stream without a client certificate is told.
pub const NO_CERTIFICATE: &str = "this control plane requires a client certificate (mTLS) for xDS: give the proxy a bootstrap token (remora token create), a proxyless gRPC client a certificate (remora certificate create), or start the control plane with --allow-plaintext-proxies for local experiments";

/// Why a stream's endpoints are held back: the reconnect grace, the
/// cluster's first feed, or both. Released once every reason is over.
#[derive(Debug)]
struct Hold {
    /// The reconnect grace's end, for a proxy that reconnected within it.
    until: Option<Instant>,
    /// The cluster's first feed, while not done.
    feed: Option<watch::Receiver<bool>>,
    /// Something was held, and not released yet.
    held: bool,
}

impl Hold {
    fn new(until: Option<Instant>, feed: Option<watch::Receiver<bool>>) -> Self {
        let feed = feed.filter(|fed| !*fed.borrow());
        let held = until.is_some() || feed.is_some();
        Hold { until, feed, held }
    }

    fn grace(&self) -> bool {
        self.until.is_some()
    }

    fn feed(&self) -> bool {
        self.feed.is_some()
    }

    fn holding(&self) -> bool {
        self.held
    }

    /// Resolves once, when the last reason to hold is over; pending forever
    /// when nothing is held (any more). Cancel-safe: what is over stays over.
    async fn released(&mut self) {
        if !self.held {
            return std::future::pending().await;
        }
        if let Some(until) = self.until {
            tokio::time::sleep_until(until).await;
            self.until = None;
        }
        if let Some(feed) = &mut self.feed {
            // The sender gone without a feed (the watch ended: the control
            // plane is stopping): keep holding rather than send what is
            // not the cluster's.
            if feed.wait_for(|fed| *fed).await.is_err() {
                return std::future::pending().await;
            }
            self.feed = None;
        }
        self.held = false;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn proxy(namespace: &str, declared: Option<&str>) -> ProxyIdentity {
        ProxyIdentity {
            node_id: "n".into(),
            service: Some("orders".into()),
            namespace: namespace.into(),
            inbound_address: None,
            identity: declared.map(str::to_owned),
            transport: "plaintext",
            remote: None,
        }
    }

    fn mtls(id: &str) -> XdsPeer {
        XdsPeer {
            remote: None,
            identity: Some(id.into()),
            tls: true,
        }
    }

    const ORDERS: &str = "spiffe://cluster.local/ns/shop/sa/orders";

    fn node(id: &str, draining: bool) -> Node {
        use remora_proto::xds::google::protobuf::{value::Kind, Struct, Value};
        let flag = Value {
            kind: Some(Kind::BoolValue(draining)),
        };
        Node {
            id: id.into(),
            metadata: Some(Struct {
                fields: [(registry::DRAINING.to_owned(), flag)]
                    .into_iter()
                    .collect(),
            }),
            ..Default::default()
        }
    }

    #[test]
    fn a_proxy_withdraws_only_itself() {
        assert_eq!(leave_asked(&node("orders-1", true), "orders-1"), Leave::Yes);
        assert_eq!(leave_asked(&node("orders-1", false), "orders-1"), Leave::No);
        assert_eq!(
            leave_asked(&node("orders-2", true), "orders-1"),
            Leave::OtherNode
        );
    }

    #[test]
    fn a_leave_on_a_stream_withdraws_that_streams_endpoint_only() {
        let (tx, rx) = tokio::sync::watch::channel(Snapshot::default());
        let registry = Registry::new(tx);
        let mut one = proxy("default", None);
        one.node_id = "orders-1".into();
        one.inbound_address = Some("127.0.0.1:7002".parse().unwrap());
        let mut two = one.clone();
        two.node_id = "orders-2".into();
        two.inbound_address = Some("127.0.0.1:7003".parse().unwrap());
        let first = registry.connect(one);
        let _second = registry.connect(two);
        assert_eq!(rx.borrow().endpoints.len(), 2);
        // orders-1's stream carries a leave naming orders-2: nothing changes.
        leave_if_asked(&node("orders-2", true), "orders-1", &first);
        assert_eq!(rx.borrow().endpoints.len(), 2);
        leave_if_asked(&node("orders-1", true), "orders-1", &first);
        let left: Vec<_> = rx
            .borrow()
            .endpoints
            .iter()
            .map(|e| e.node_id.clone())
            .collect();
        assert_eq!(left, ["orders-2"]);
    }

    /// Whether `hold` is released within `wait` (paused time: at once).
    async fn released_within(hold: &mut Hold, wait: Duration) -> bool {
        tokio::time::timeout(wait, hold.released()).await.is_ok()
    }

    #[tokio::test(start_paused = true)]
    async fn endpoints_are_held_until_the_clusters_first_feed() {
        let (fed, rx) = watch::channel(false);
        let mut hold = Hold::new(None, Some(rx));
        assert!(hold.holding() && hold.feed() && !hold.grace());
        // However long the lists take (longer than any reconnect grace).
        assert!(!released_within(&mut hold, Duration::from_secs(60)).await);
        fed.send_replace(true);
        assert!(released_within(&mut hold, Duration::from_secs(1)).await);
        assert!(!hold.holding());
        assert!(
            !released_within(&mut hold, Duration::from_secs(60)).await,
            "released once"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_feed_done_before_the_stream_holds_nothing() {
        let (_fed, rx) = watch::channel(true);
        let mut hold = Hold::new(None, Some(rx));
        assert!(!hold.holding());
        assert!(!released_within(&mut hold, Duration::from_secs(60)).await);
        assert!(!Hold::new(None, None).holding(), "file mode, no grace");
    }

    #[tokio::test(start_paused = true)]
    async fn with_the_grace_and_the_feed_both_must_be_over() {
        let (fed, rx) = watch::channel(false);
        let until = Instant::now() + Duration::from_secs(6);
        let mut hold = Hold::new(Some(until), Some(rx));
        assert!(hold.grace() && hold.feed());
        assert!(
            !released_within(&mut hold, Duration::from_secs(10)).await,
            "the grace is over, the feed is not"
        );
        fed.send_replace(true);
        assert!(released_within(&mut hold, Duration::from_secs(1)).await);

        // The feed first, then the grace.
        let (_fed, rx) = watch::channel(true);
        let until = Instant::now() + Duration::from_secs(6);
        let mut hold = Hold::new(Some(until), Some(rx));
        assert!(hold.holding() && !hold.feed());
        assert!(!released_within(&mut hold, Duration::from_secs(5)).await);
        assert!(released_within(&mut hold, Duration::from_secs(2)).await);
    }

    #[tokio::test(start_paused = true)]
    async fn a_feed_that_never_comes_keeps_holding() {
        let (fed, rx) = watch::channel(false);
        let mut hold = Hold::new(None, Some(rx));
        drop(fed);
        assert!(!released_within(&mut hold, Duration::from_secs(60)).await);
    }

    #[test]
    fn the_certificate_decides_the_identity() {
        let mut p = proxy("shop", None);
        authenticate(&mut p, &mtls(ORDERS), false).unwrap();
        assert_eq!(p.identity.as_deref(), Some(ORDERS));
        assert_eq!(p.transport, "mtls");

        let mut p = proxy("shop", Some(ORDERS));
        authenticate(&mut p, &mtls(ORDERS), false).unwrap();
    }

    #[test]
    fn a_declared_identity_or_namespace_must_match_the_certificate() {
        let other = "spiffe://cluster.local/ns/shop/sa/payments";
        let (_, e) =
            authenticate(&mut proxy("shop", Some(other)), &mtls(ORDERS), false).unwrap_err();
        assert_eq!(e.code(), tonic::Code::PermissionDenied);
        assert!(e.message().contains(other) && e.message().contains(ORDERS));
        let (_, e) = authenticate(&mut proxy("bank", None), &mtls(ORDERS), false).unwrap_err();
        assert!(e.message().contains("namespace bank"), "{e:?}");
    }

    #[test]
    fn without_a_certificate_no_identity() {
        authenticate(&mut proxy("shop", None), &XdsPeer::default(), true).unwrap();
        let (reason, e) =
            authenticate(&mut proxy("shop", Some(ORDERS)), &XdsPeer::default(), true).unwrap_err();
        assert_eq!(reason, Reason::IdentityMismatch);
        assert!(e.message().contains("no client certificate"), "{e:?}");
    }

    #[test]
    fn without_a_certificate_nothing_unless_plaintext_is_allowed() {
        let (reason, e) =
            authenticate(&mut proxy("shop", None), &XdsPeer::default(), false).unwrap_err();
        assert_eq!(reason, Reason::NoCertificate);
        assert_eq!(e.code(), tonic::Code::PermissionDenied);
        assert!(e.message().contains("--allow-plaintext-proxies"), "{e:?}");
    }
}
