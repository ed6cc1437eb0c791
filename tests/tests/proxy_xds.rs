//! The proxy's side of xDS, driven by a scripted ADS server: it ACKs what it accepts,
//! NACKs an invalid resource naming it and the field, keeps routing by its previous
//! config, and takes the next valid update.

mod support;

use std::net::SocketAddr;
use std::pin::Pin;
use std::time::Duration;

use remora_control::source::parse;
use remora_control::translate::{translate, ResourceType, Resources};
use remora_control::validate::validate_loaded;
use remora_proto::prost::{Message, Name};
use remora_proto::xds::envoy::config::route::v3::{route_match::PathSpecifier, RouteConfiguration};
use remora_proto::xds::envoy::r#type::matcher::v3::RegexMatcher;
use remora_proto::xds::envoy::service::discovery::v3::aggregated_discovery_service_server::{
    AggregatedDiscoveryService, AggregatedDiscoveryServiceServer,
};
use remora_proto::xds::envoy::service::discovery::v3::{
    DeltaDiscoveryRequest, DeltaDiscoveryResponse, DiscoveryRequest, DiscoveryResponse,
};
use remora_proto::xds::google::protobuf::Any;
use remora_tests::app::TestApp;
use remora_tests::harness::{http, Proxy, ProxySpec};
use tokio::sync::mpsc;
use tokio_stream::wrappers::{ReceiverStream, TcpListenerStream};
use tokio_stream::Stream;
use tonic::{Request, Response, Status, Streaming};

/// One ADS stream, handed to the test: what the proxy sends, and a way to answer.
struct AdsStream {
    requests: Streaming<DiscoveryRequest>,
    responses: mpsc::Sender<Result<DiscoveryResponse, Status>>,
}

struct Scripted {
    streams: mpsc::Sender<AdsStream>,
}

type Responses = Pin<Box<dyn Stream<Item = Result<DiscoveryResponse, Status>> + Send>>;

#[tonic::async_trait]
impl AggregatedDiscoveryService for Scripted {
    type StreamAggregatedResourcesStream = Responses;
    type DeltaAggregatedResourcesStream =
        Pin<Box<dyn Stream<Item = Result<DeltaDiscoveryResponse, Status>> + Send>>;

    async fn stream_aggregated_resources(
        &self,
        request: Request<Streaming<DiscoveryRequest>>,
    ) -> Result<Response<Responses>, Status> {
        let (tx, rx) = mpsc::channel(16);
        let _ = self
            .streams
            .send(AdsStream {
                requests: request.into_inner(),
                responses: tx,
            })
            .await;
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn delta_aggregated_resources(
        &self,
        _: Request<Streaming<DeltaDiscoveryRequest>>,
    ) -> Result<Response<Self::DeltaAggregatedResourcesStream>, Status> {
        Err(Status::unimplemented("delta"))
    }
}

async fn scripted_server() -> (SocketAddr, mpsc::Receiver<AdsStream>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = mpsc::channel(4);
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(AggregatedDiscoveryServiceServer::new(Scripted {
                streams: tx,
            }))
            .serve_with_incoming(TcpListenerStream::new(listener)),
    );
    (addr, rx)
}

/// Answers the proxy's requests from `resources`, one response per type and
/// version, and reports what the proxy says back.
struct Driver {
    stream: AdsStream,
    nonce: u64,
}

impl Driver {
    async fn next(&mut self) -> DiscoveryRequest {
        tokio::time::timeout(Duration::from_secs(5), self.stream.requests.message())
            .await
            .expect("the proxy said nothing for 5 s")
            .unwrap()
            .expect("the proxy closed the stream")
    }

    async fn send(&mut self, t: ResourceType, version: &str, resources: Vec<Any>) -> String {
        self.nonce += 1;
        let nonce = format!("n{}", self.nonce);
        let response = DiscoveryResponse {
            version_info: version.into(),
            resources,
            type_url: t.type_url().into(),
            nonce: nonce.clone(),
            ..Default::default()
        };
        self.stream.responses.send(Ok(response)).await.unwrap();
        nonce
    }

    /// Serves requests until every type has been answered once and ACKed.
    async fn converge(&mut self, resources: &Resources, version: &str) {
        let mut acked = std::collections::BTreeSet::new();
        while acked.len() < 4 {
            let req = self.next().await;
            let t = ResourceType::from_type_url(&req.type_url).unwrap();
            assert!(req.error_detail.is_none(), "unexpected NACK: {req:?}");
            if req.version_info == version && !req.response_nonce.is_empty() {
                acked.insert(t);
                continue;
            }
            let all = resources.get(t);
            let selected: Vec<Any> = if req.resource_names.is_empty() {
                all.values().cloned().collect()
            } else {
                req.resource_names
                    .iter()
                    .filter_map(|n| all.get(n).cloned())
                    .collect()
            };
            self.send(t, version, selected).await;
        }
    }
}

const CONFIG: &str = "
apiVersion: v1
kind: Service
metadata: {name: orders, namespace: default}
spec:
  ports: [{port: 80, appProtocol: http}]
  endpoints: [{address: 127.0.0.1, port: PORT}]
";

fn any<M: Message + Name>(m: &M) -> Any {
    Any {
        type_url: M::type_url(),
        value: m.encode_to_vec(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invalid_route_is_nacked_by_name_and_field_and_the_old_config_stays() {
    let app = TestApp::http("orders");
    let (xds, mut streams) = scripted_server().await;
    let web_app = TestApp::http("web");
    let proxy = Proxy::start(ProxySpec::new("web", xds, web_app.addr))
        .await
        .unwrap();
    let stream = tokio::time::timeout(Duration::from_secs(10), streams.recv())
        .await
        .unwrap()
        .unwrap();
    let mut driver = Driver { stream, nonce: 0 };

    let loaded = parse(
        "config.yaml",
        &CONFIG.replace("PORT", &app.addr.port().to_string()),
    );
    let outcome = validate_loaded(&loaded);
    assert!(outcome.problems.is_empty(), "{:?}", outcome.problems);
    let resources = translate(&outcome.store, &[], "default", "cluster.local");
    driver.converge(&resources, "v1").await;
    proxy.wait_ready(Duration::from_secs(5)).await.unwrap();
    let reply = http::get_with_host(proxy.outbound, "orders", "/")
        .await
        .unwrap();
    assert_eq!(
        reply.header("x-backend"),
        Some("orders"),
        "{}",
        reply.text()
    );

    // A route configuration with a regex path, which the proxy does not support.
    // The proxy's own route configuration (the others, named `host:port`, are
    // for gRPC's xDS client).
    let route_name = resources
        .routes
        .keys()
        .find(|name| !name.contains(':'))
        .unwrap()
        .clone();
    let mut bad =
        RouteConfiguration::decode(resources.routes[&route_name].value.as_slice()).unwrap();
    bad.virtual_hosts[0].routes[0]
        .r#match
        .as_mut()
        .unwrap()
        .path_specifier = Some(PathSpecifier::SafeRegex(RegexMatcher {
        regex: "/.*".into(),
        ..Default::default()
    }));
    let nonce = driver
        .send(ResourceType::Route, "v2", vec![any(&bad)])
        .await;
    let nack = driver.next().await;
    assert_eq!(nack.response_nonce, nonce);
    assert_eq!(
        nack.version_info, "v1",
        "a NACK carries the version still in use"
    );
    let message = nack.error_detail.expect("a NACK").message;
    assert!(
        message.contains(&format!("RouteConfiguration \"{route_name}\"")),
        "{message}"
    );
    assert!(
        message.contains("virtual_hosts[0].routes[0].match.path_specifier"),
        "{message}"
    );

    // The old config keeps routing, and the admin endpoint shows the rejection.
    let reply = http::get_with_host(proxy.outbound, "orders", "/")
        .await
        .unwrap();
    assert_eq!(reply.status, 200);
    let dump = proxy.config_dump().await.unwrap();
    assert_eq!(
        dump["versions"][ResourceType::Route.type_url()],
        "v1",
        "{dump:#}"
    );
    let nack_shown = dump["xds"]["types"][ResourceType::Route.type_url()]["last_nack"]
        .as_str()
        .unwrap_or("");
    assert!(nack_shown.contains("path_specifier"), "{dump:#}");

    // The next valid update is taken and ACKed.
    let nonce = driver
        .send(
            ResourceType::Route,
            "v3",
            vec![resources.routes[&route_name].clone()],
        )
        .await;
    let ack = driver.next().await;
    assert_eq!(
        (ack.response_nonce.as_str(), ack.version_info.as_str()),
        (nonce.as_str(), "v3")
    );
    assert!(ack.error_detail.is_none());
}
