//! The xDS protocol as a proxy sees it: the real `remora` binary, driven by a raw
//! ADS client. Each test starts its own control plane on free ports.
//!
//! Needs the binary: `cargo build --bins` first. The harness prints the control
//! plane's log when a test fails.

mod support;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use remora_proto::prost::Message;
use remora_proto::type_url::{CLUSTER, ENDPOINT, LISTENER, ROUTE};
use remora_proto::xds::envoy::config::cluster::v3::Cluster;
use remora_proto::xds::envoy::config::core::v3::socket_address::PortSpecifier;
use remora_proto::xds::envoy::config::core::v3::{address, Node};
use remora_proto::xds::envoy::config::endpoint::v3::{lb_endpoint, ClusterLoadAssignment};
use remora_proto::xds::envoy::service::discovery::v3::aggregated_discovery_service_client::AggregatedDiscoveryServiceClient;
use remora_proto::xds::envoy::service::discovery::v3::{
    DeltaDiscoveryRequest, DiscoveryRequest, DiscoveryResponse,
};
use remora_proto::xds::google::rpc;
use remora_tests::harness;
use serde_json::Value as Json;
use support::node;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

/// How long to wait for something that should happen.
const WAIT: Duration = Duration::from_secs(5);

const SERVICES: &str = "
apiVersion: v1
kind: Service
metadata: {name: orders}
spec:
  ports: [{name: http, port: 80}]
---
apiVersion: v1
kind: Service
metadata:
  name: orders-v1
  # Its endpoints in these tests are raw ADS clients without certificates.
  annotations: {remora.io/allow-unauthenticated-endpoints: 'true'}
spec:
  ports: [{port: 80}]
";

const PAYMENTS: &str = "
apiVersion: v1
kind: Service
metadata: {name: payments}
spec:
  ports: [{port: 8080, appProtocol: grpc}]
";

const ORDERS: &str = "outbound|80||orders.default.svc.cluster.local";
const ORDERS_V1: &str = "outbound|80||orders-v1.default.svc.cluster.local";
const PAYMENTS_CLUSTER: &str = "outbound|8080||payments.default.svc.cluster.local";

// ---------------------------------------------------------------------------
// The control plane process (the harness's), with its own config directory

struct ControlPlane {
    process: harness::ControlPlane,
    xds: SocketAddr,
    _dir: tempfile::TempDir,
}

impl ControlPlane {
    async fn start(files: &[(&str, &str)]) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let config = dir.path().join("config");
        std::fs::create_dir(&config).expect("config dir");
        for (name, text) in files {
            std::fs::write(config.join(name), text).expect("write config");
        }
        let process = harness::ControlPlane::start(&config)
            .await
            .expect("start remora control");
        ControlPlane {
            xds: process.xds_addr,
            process,
            _dir: dir,
        }
    }

    fn config_file(&self, name: &str) -> PathBuf {
        self.process.config_dir.join(name)
    }

    async fn get(&self, path: &str) -> Json {
        let reply = tokio::time::timeout(WAIT, self.process.api_get(path))
            .await
            .expect("API answers in time")
            .expect("API request");
        assert_eq!(reply.status, 200, "GET {path}");
        reply.json().expect("API returns JSON")
    }

    /// Waits until the config directory has been read more than `loads` times.
    async fn wait_for_reload(&self, loads: u64) {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            if self.get("/api/v1/config").await["loads"].as_u64() > Some(loads) {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "config was not reloaded"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    async fn proxy(&self, node_id: &str) -> Proxy {
        Proxy::connect(self.xds, node(node_id, &[])).await
    }
}

// ---------------------------------------------------------------------------
// A raw ADS client

/// One ADS stream, as a proxy would hold it.
struct Proxy {
    requests: mpsc::Sender<DiscoveryRequest>,
    responses: tonic::Streaming<DiscoveryResponse>,
    node: Option<Node>,
}

impl Proxy {
    async fn connect(xds: SocketAddr, node: Node) -> Self {
        let mut client = AggregatedDiscoveryServiceClient::connect(format!("http://{xds}"))
            .await
            .expect("connect to xDS");
        let (requests, rx) = mpsc::channel(16);
        let responses = client
            .stream_aggregated_resources(ReceiverStream::new(rx))
            .await
            .expect("open ADS stream")
            .into_inner();
        Proxy {
            requests,
            responses,
            node: Some(node),
        }
    }

    async fn send(&mut self, mut request: DiscoveryRequest) {
        // Like Envoy: the node goes in the first request only.
        request.node = self.node.take();
        self.requests.send(request).await.expect("stream open");
    }

    /// Subscribes (initial request, no nonce).
    async fn subscribe(&mut self, type_url: &str, names: &[&str]) {
        self.send(request(type_url, names, "", "")).await;
    }

    async fn ack(&mut self, r: &DiscoveryResponse, names: &[&str]) {
        self.send(request(&r.type_url, names, &r.version_info, &r.nonce))
            .await;
    }

    async fn nack(&mut self, r: &DiscoveryResponse, names: &[&str], message: &str) {
        let mut req = request(&r.type_url, names, "", &r.nonce);
        req.error_detail = Some(rpc::Status {
            code: 3,
            message: message.to_owned(),
            details: Vec::new(),
        });
        self.send(req).await;
    }

    async fn recv(&mut self) -> DiscoveryResponse {
        tokio::time::timeout(WAIT, self.responses.message())
            .await
            .expect("a response in time")
            .expect("stream healthy")
            .expect("stream open")
    }

    /// The next response, which must be of `type_url`.
    async fn expect(&mut self, type_url: &str) -> DiscoveryResponse {
        let r = self.recv().await;
        assert_eq!(r.type_url, type_url, "unexpected response {}", describe(&r));
        r
    }

    /// Subscribes to `type_url` and ACKs the answer.
    async fn sync(&mut self, type_url: &str, names: &[&str]) -> DiscoveryResponse {
        self.subscribe(type_url, names).await;
        let r = self.expect(type_url).await;
        self.ack(&r, names).await;
        r
    }
}

fn request(type_url: &str, names: &[&str], version: &str, nonce: &str) -> DiscoveryRequest {
    DiscoveryRequest {
        type_url: type_url.to_owned(),
        resource_names: names.iter().map(|n| (*n).to_owned()).collect(),
        version_info: version.to_owned(),
        response_nonce: nonce.to_owned(),
        ..Default::default()
    }
}

fn describe(r: &DiscoveryResponse) -> String {
    format!(
        "{} version {} nonce {} ({} resources)",
        r.type_url,
        r.version_info,
        r.nonce,
        r.resources.len()
    )
}

fn cluster_names(r: &DiscoveryResponse) -> Vec<String> {
    r.resources
        .iter()
        .map(|any| {
            Cluster::decode(any.value.as_slice())
                .expect("a Cluster")
                .name
        })
        .collect()
}

/// The endpoint addresses of the one assignment in `r`.
fn endpoint_addresses(r: &DiscoveryResponse) -> Vec<String> {
    let [any] = r.resources.as_slice() else {
        panic!("expected one assignment: {}", describe(r));
    };
    let cla = ClusterLoadAssignment::decode(any.value.as_slice()).expect("a ClusterLoadAssignment");
    cla.endpoints
        .iter()
        .flat_map(|l| &l.lb_endpoints)
        .filter_map(|lb| match &lb.host_identifier {
            Some(lb_endpoint::HostIdentifier::Endpoint(e)) => {
                match e.address.as_ref()?.address.as_ref()? {
                    address::Address::SocketAddress(s) => Some(format!(
                        "{}:{}",
                        s.address,
                        match s.port_specifier {
                            Some(PortSpecifier::PortValue(p)) => p,
                            _ => 0,
                        }
                    )),
                    _ => None,
                }
            }
            _ => None,
        })
        .collect()
}

/// The status of `node_id` for `type_url` in `GET /api/v1/proxies`.
async fn proxy_status(cp: &ControlPlane, node_id: &str, type_url: &str) -> Json {
    let proxies = cp.get("/api/v1/proxies").await;
    let proxy = proxies
        .as_array()
        .and_then(|list| list.iter().find(|p| p["node_id"] == node_id))
        .unwrap_or_else(|| panic!("{node_id} not in {proxies}"));
    proxy["types"][type_url].clone()
}

// ---------------------------------------------------------------------------
// The protocol

#[tokio::test]
async fn responses_carry_versions_and_nonces_and_an_ack_is_not_answered() {
    let cp = ControlPlane::start(&[("services.yaml", SERVICES)]).await;
    let mut proxy = cp.proxy("client-1").await;

    proxy.subscribe(CLUSTER, &[]).await;
    let clusters = proxy.expect(CLUSTER).await;
    assert!(!clusters.version_info.is_empty());
    assert!(!clusters.nonce.is_empty());
    assert_eq!(cluster_names(&clusters), [ORDERS_V1, ORDERS]);

    proxy.subscribe(LISTENER, &[]).await;
    let listeners = proxy.expect(LISTENER).await;
    assert_ne!(
        listeners.nonce, clusters.nonce,
        "nonces are unique per response"
    );

    proxy.ack(&clusters, &[]).await;
    proxy.ack(&listeners, &[]).await;
    // Responses come in request order: had an ACK been answered, that answer
    // would arrive before this one.
    proxy.subscribe(ROUTE, &["outbound"]).await;
    proxy.expect(ROUTE).await;

    let status = proxy_status(&cp, "client-1", CLUSTER).await;
    assert_eq!(status["acked_version"], clusters.version_info.as_str());
    assert_eq!(status["sent_version"], clusters.version_info.as_str());
    assert_eq!(status["last_nack"], Json::Null);
}

#[tokio::test]
async fn a_nack_is_recorded_and_the_version_is_not_resent() {
    let cp = ControlPlane::start(&[("services.yaml", SERVICES)]).await;
    let mut proxy = cp.proxy("client-1").await;

    proxy.subscribe(CLUSTER, &[]).await;
    let clusters = proxy.expect(CLUSTER).await;
    proxy
        .nack(
            &clusters,
            &[],
            "Cluster outbound|80||orders: lb_policy: not supported",
        )
        .await;
    proxy.subscribe(LISTENER, &[]).await;
    proxy.expect(LISTENER).await;

    let status = proxy_status(&cp, "client-1", CLUSTER).await;
    assert_eq!(status["acked_version"], Json::Null);
    assert_eq!(status["sent_version"], clusters.version_info.as_str());
    assert_eq!(
        status["last_nack"]["version"],
        clusters.version_info.as_str()
    );
    assert_eq!(status["last_nack"]["nonce"], clusters.nonce.as_str());
    assert_eq!(
        status["last_nack"]["message"],
        "Cluster outbound|80||orders: lb_policy: not supported"
    );
}

#[tokio::test]
async fn touching_a_file_without_changing_it_sends_nothing() {
    let cp = ControlPlane::start(&[("services.yaml", SERVICES)]).await;
    let mut proxy = cp.proxy("client-1").await;
    proxy.sync(CLUSTER, &[]).await;
    proxy.sync(LISTENER, &[]).await;

    let loads = cp.get("/api/v1/config").await["loads"]
        .as_u64()
        .unwrap_or_default();
    std::fs::write(cp.config_file("services.yaml"), SERVICES).expect("rewrite");
    cp.wait_for_reload(loads).await;

    proxy.subscribe(ROUTE, &["outbound"]).await;
    proxy.expect(ROUTE).await;
}

#[tokio::test]
async fn changing_a_file_pushes_a_new_version() {
    let cp = ControlPlane::start(&[("services.yaml", SERVICES)]).await;
    let mut proxy = cp.proxy("client-1").await;
    let before = proxy.sync(CLUSTER, &[]).await;

    std::fs::write(cp.config_file("payments.yaml"), PAYMENTS).expect("write");
    let after = proxy.expect(CLUSTER).await;
    assert_ne!(after.version_info, before.version_info);
    assert_ne!(after.nonce, before.nonce);
    assert_eq!(cluster_names(&after), [PAYMENTS_CLUSTER, ORDERS_V1, ORDERS]);
    proxy.ack(&after, &[]).await;

    let status = {
        proxy.subscribe(LISTENER, &[]).await;
        proxy.expect(LISTENER).await;
        proxy_status(&cp, "client-1", CLUSTER).await
    };
    assert_eq!(status["acked_version"], after.version_info.as_str());
}

#[tokio::test]
async fn deleting_a_service_removes_its_cluster() {
    let cp = ControlPlane::start(&[("services.yaml", SERVICES), ("payments.yaml", PAYMENTS)]).await;
    let mut proxy = cp.proxy("client-1").await;
    let before = proxy.sync(CLUSTER, &[]).await;
    assert!(cluster_names(&before).contains(&PAYMENTS_CLUSTER.to_owned()));

    std::fs::remove_file(cp.config_file("payments.yaml")).expect("remove");
    let after = proxy.expect(CLUSTER).await;
    assert_eq!(cluster_names(&after), [ORDERS_V1, ORDERS]);
}

#[tokio::test]
async fn a_change_is_pushed_make_before_break() {
    let route_to = |backend: &str| {
        format!(
            "
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {{name: orders}}
spec:
  parentRefs: [{{kind: Service, name: orders}}]
  rules: [{{backendRefs: [{{name: {backend}}}]}}]
"
        )
    };
    let before = format!("{SERVICES}{}", route_to("orders-v1"));
    let cp = ControlPlane::start(&[("mesh.yaml", &before)]).await;
    let mut proxy = cp.proxy("client-1").await;
    proxy.sync(CLUSTER, &[]).await;
    proxy.sync(ENDPOINT, &[ORDERS]).await;
    proxy.sync(LISTENER, &[]).await;
    proxy.sync(ROUTE, &["outbound"]).await;

    // orders-v1 goes away and the route moves to payments, in one atomic write.
    let after = format!(
        "{}---{PAYMENTS}{}",
        SERVICES.split("---").next().unwrap_or_default(),
        route_to("payments")
    );
    let tmp = cp.config_file("mesh.yaml.tmp");
    std::fs::write(&tmp, after).expect("write");
    std::fs::rename(&tmp, cp.config_file("mesh.yaml")).expect("rename");

    let both = proxy.expect(CLUSTER).await;
    assert_eq!(cluster_names(&both), [PAYMENTS_CLUSTER, ORDERS_V1, ORDERS]);
    proxy.expect(LISTENER).await;
    proxy.expect(ROUTE).await;
    let only_new = proxy.expect(CLUSTER).await;
    assert_eq!(cluster_names(&only_new), [PAYMENTS_CLUSTER, ORDERS]);
}

#[tokio::test]
async fn a_connected_proxy_is_an_endpoint_of_its_service_until_it_leaves() {
    let cp = ControlPlane::start(&[("services.yaml", SERVICES)]).await;
    let mut client = cp.proxy("client-1").await;
    client.sync(CLUSTER, &[]).await;
    let empty = client.sync(ENDPOINT, &[ORDERS_V1]).await;
    assert!(endpoint_addresses(&empty).is_empty());

    let server_node = node(
        "orders-v1-0",
        &[
            ("service", "orders-v1"),
            ("namespace", "default"),
            ("inbound_address", "127.0.0.1:17002"),
        ],
    );
    let mut server = Proxy::connect(cp.xds, server_node).await;
    server.sync(CLUSTER, &[]).await;

    let joined = client.expect(ENDPOINT).await;
    assert_eq!(endpoint_addresses(&joined), ["127.0.0.1:17002"]);
    client.ack(&joined, &[ORDERS_V1]).await;

    drop(server);
    let left = client.expect(ENDPOINT).await;
    assert!(endpoint_addresses(&left).is_empty());
}

#[tokio::test]
async fn named_subscriptions_get_only_what_they_name() {
    let cp = ControlPlane::start(&[("services.yaml", SERVICES)]).await;
    let mut proxy = cp.proxy("client-1").await;
    proxy.subscribe(ENDPOINT, &[ORDERS]).await;
    let first = proxy.expect(ENDPOINT).await;
    assert_eq!(first.resources.len(), 1);
    // A new subscription is answered with the new set.
    proxy
        .send(request(
            ENDPOINT,
            &[ORDERS, ORDERS_V1],
            &first.version_info,
            &first.nonce,
        ))
        .await;
    let second = proxy.expect(ENDPOINT).await;
    assert_eq!(second.resources.len(), 2);

    // gRPC asks for listeners by name.
    proxy
        .subscribe(LISTENER, &["orders.default.svc.cluster.local:80"])
        .await;
    assert_eq!(proxy.expect(LISTENER).await.resources.len(), 1);
}

#[tokio::test]
async fn versions_are_the_same_after_a_restart() {
    let first = ControlPlane::start(&[("services.yaml", SERVICES)]).await;
    let second = ControlPlane::start(&[("services.yaml", SERVICES)]).await;
    let mut a = first.proxy("a").await;
    let mut b = second.proxy("b").await;
    for type_url in [CLUSTER, LISTENER] {
        a.subscribe(type_url, &[]).await;
        b.subscribe(type_url, &[]).await;
        assert_eq!(
            a.expect(type_url).await.version_info,
            b.expect(type_url).await.version_info
        );
    }
}

#[tokio::test]
async fn invalid_resources_are_reported_and_the_rest_is_served() {
    let bad_route = "
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: orders}
spec:
  parentRefs: [{kind: Service, name: orders}]
  rules: [{backendRefs: [{name: orders-v3, port: 80}]}]
";
    let cp = ControlPlane::start(&[("services.yaml", SERVICES), ("routes.yaml", bad_route)]).await;
    let config = cp.get("/api/v1/config").await;
    assert_eq!(config["resources"]["Service"], 2);
    assert_eq!(config["resources"]["HTTPRoute"], 0);
    let error = &config["errors"][0];
    assert_eq!(error["kind"], "HTTPRoute");
    assert_eq!(error["name"], "orders");
    assert_eq!(error["field"], "spec.rules[0].backendRefs[0].name");
    assert_eq!(error["message"], "Service \"orders-v3\" does not exist");

    let mut proxy = cp.proxy("client-1").await;
    proxy.subscribe(CLUSTER, &[]).await;
    assert_eq!(
        cluster_names(&proxy.expect(CLUSTER).await),
        [ORDERS_V1, ORDERS]
    );
}

#[tokio::test]
async fn delta_xds_is_unimplemented() {
    let cp = ControlPlane::start(&[("services.yaml", SERVICES)]).await;
    let mut client = AggregatedDiscoveryServiceClient::connect(format!("http://{}", cp.xds))
        .await
        .expect("connect");
    let requests = tokio_stream::iter([DeltaDiscoveryRequest::default()]);
    let status = client
        .delta_aggregated_resources(requests)
        .await
        .expect_err("delta is not served");
    assert_eq!(status.code(), tonic::Code::Unimplemented);
}
