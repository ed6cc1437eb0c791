//! A request goes app -> proxy -> proxy -> app and back, over HTTP/1.1 and gRPC.

mod support;

use std::time::Duration;

use remora_proto::demo::EchoRequest;
use remora_tests::app::{echo_client, TestApp};
use remora_tests::harness::{http, Proxy, ProxySpec};
use support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http1_and_grpc_cross_two_proxies() {
    let (_root, cp) = control_plane_with(
        &[
            ("web", 80, "http"),
            ("orders", 80, "http"),
            ("echo", 50051, "grpc"),
        ],
        &[],
    )
    .await;
    let web_app = TestApp::http("web");
    let orders_app = TestApp::http("orders");
    let echo_app = TestApp::grpc("echo");
    let web = Proxy::start(ProxySpec::new("web", cp.xds_addr, web_app.addr))
        .await
        .unwrap();
    let orders = Proxy::start(ProxySpec::new("orders", cp.xds_addr, orders_app.addr))
        .await
        .unwrap();
    let echo = Proxy::start(ProxySpec::new("echo", cp.xds_addr, echo_app.addr))
        .await
        .unwrap();
    web.wait_ready(Duration::from_secs(10)).await.unwrap();
    wait_config(
        &web,
        Duration::from_secs(10),
        "endpoints for orders and echo",
        |d| endpoint_count(d, "orders") == 1 && endpoint_count(d, "echo") == 1,
    )
    .await;
    // The endpoints web's proxy uses are the other proxies' inbound listeners.
    let dump = web.config_dump().await.unwrap();
    let text = dump.to_string();
    assert!(text.contains(&orders.inbound.to_string()), "{dump:#}");
    assert!(text.contains(&echo.inbound.to_string()), "{dump:#}");

    // HTTP/1.1: carried over HTTP/2 between the proxies, restored for the app.
    let reply = http::get_with_host(web.outbound, "orders", "/hello")
        .await
        .unwrap();
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(reply.header("x-backend"), Some("orders"));
    assert_eq!(reply.header("x-seen-version"), Some("HTTP/1.1"));
    assert_eq!(reply.header("x-seen-host"), Some("orders"));
    assert_eq!(orders_app.requests(), 1);

    // The fully qualified name with its port reaches the same service.
    let reply = http::get_with_host(web.outbound, "orders.default.svc.cluster.local:80", "/")
        .await
        .unwrap();
    assert_eq!(reply.header("x-backend"), Some("orders"));

    // An unknown service is answered by the proxy itself, saying why.
    let reply = http::get_with_host(web.outbound, "nowhere", "/")
        .await
        .unwrap();
    assert_eq!(reply.status, 404);
    assert!(reply.header("remora-error").is_some());

    // gRPC unary and server streaming.
    let mut client = echo_client(web.outbound, "echo:50051").await.unwrap();
    let reply = client
        .say(EchoRequest {
            message: "hi".into(),
            count: 0,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(reply.message, "hi");
    assert_eq!(reply.backend, "echo");
    let mut stream = client
        .say_many(EchoRequest {
            message: "many".into(),
            count: 5,
        })
        .await
        .unwrap()
        .into_inner();
    let mut sequences = Vec::new();
    while let Some(reply) = stream.message().await.unwrap() {
        assert_eq!(reply.backend, "echo");
        sequences.push(reply.sequence);
    }
    assert_eq!(sequences, vec![0, 1, 2, 3, 4]);
    drop((web, orders, echo, cp));
}
