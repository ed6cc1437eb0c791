//! Timeouts, end to end: each fires on time (within 100 ms of its setting, taking
//! the best of three tries against a noisy machine), answers 504 (gRPC:
//! DEADLINE_EXCEEDED) and says which timeout it was; a gRPC deadline reaches the
//! next hop as what is left of it.

mod support;

use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::Full;
use remora_tests::app::TestApp;
use remora_tests::harness::{http, Proxy, ProxySpec};
use support::*;

fn orders_route(rule_extra: &str) -> String {
    format!(
        "apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\n\
         metadata: {{name: orders, namespace: default}}\n\
         spec:\n  parentRefs: [{{kind: Service, name: orders}}]\n\
         \x20 rules:\n  - matches: [{{path: {{value: /slow}}}}]\n    backendRefs: [{{name: orders, port: 80}}]\n    \
         timeouts: {{request: 300ms}}\n  \
         - matches: [{{path: {{value: /per-try}}}}]\n    backendRefs: [{{name: orders, port: 80}}]\n    \
         timeouts: {{request: 2s, backendRequest: 200ms}}\n  \
         - backendRefs: [{{name: orders, port: 80}}]\n{rule_extra}"
    )
}

/// The fastest of three tries of `request`, with its last reply.
async fn best_of_three(
    proxy: &Proxy,
    request: impl Fn() -> ::http::Request<Full<Bytes>>,
) -> (Duration, http::HttpReply) {
    let mut best = Duration::MAX;
    let mut last = None;
    for _ in 0..3 {
        let started = Instant::now();
        let reply = http::send(proxy.outbound, request()).await.unwrap();
        best = best.min(started.elapsed());
        last = Some(reply);
    }
    (best, last.unwrap())
}

fn get(path: &str) -> impl Fn() -> ::http::Request<Full<Bytes>> + '_ {
    move || {
        ::http::Request::get(path)
            .header("host", "orders")
            .body(Full::new(Bytes::new()))
            .unwrap()
    }
}

fn within(elapsed: Duration, setting: Duration) -> bool {
    elapsed >= setting && elapsed < setting + Duration::from_millis(100)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_timeout_fires_on_time_and_says_which() {
    let m = WebOrders::start(
        vec![TestApp::http("orders")],
        &[("route.yaml", orders_route(""))],
    )
    .await;
    let (web, app) = (&m.web, &m.apps[0]);
    app.set_delay(Duration::from_secs(1));

    let (elapsed, reply) = best_of_three(web, get("/slow")).await;
    assert_eq!(reply.status, 504, "{}", reply.text());
    assert_eq!(reply.header("remora-error"), Some("request timeout"));
    assert!(
        within(elapsed, Duration::from_millis(300)),
        "request timeout after {elapsed:?}"
    );

    let (elapsed, reply) = best_of_three(web, get("/per-try")).await;
    assert_eq!(reply.status, 504, "{}", reply.text());
    assert_eq!(reply.header("remora-error"), Some("per-try timeout"));
    assert!(
        within(elapsed, Duration::from_millis(200)),
        "per-try timeout after {elapsed:?}"
    );

    // A gRPC client's deadline (250 ms) is shorter than any route timeout here.
    let grpc = || {
        ::http::Request::post("http://orders/remora.demo.v1.Echo/Say")
            .version(::http::Version::HTTP_2)
            .header("content-type", "application/grpc")
            .header("te", "trailers")
            .header("grpc-timeout", "250m")
            .body(Full::new(Bytes::new()))
            .unwrap()
    };
    let (elapsed, reply) = best_of_three(web, grpc).await;
    assert_eq!(reply.status, 200, "gRPC errors travel in grpc-status");
    assert_eq!(reply.header("grpc-status"), Some("4"), "DEADLINE_EXCEEDED");
    assert_eq!(reply.header("remora-error"), Some("grpc deadline exceeded"));
    assert!(
        within(elapsed, Duration::from_millis(250)),
        "gRPC deadline after {elapsed:?}"
    );

    // With time to spare, the next hop is told what is left of the deadline.
    app.set_delay(Duration::ZERO);
    let reply = http::send(web.outbound, grpc()).await.unwrap();
    let seen = reply
        .header("x-seen-grpc-timeout")
        .expect("grpc-timeout reached the app");
    let left = parse_grpc_timeout(seen);
    assert!(
        left <= Duration::from_millis(250) && left > Duration::from_millis(150),
        "the app was given {seen}"
    );

    let stats = m.orders_stats().await;
    assert!(stats["timeouts_request"].as_u64() >= Some(6), "{stats:#}");
    assert!(stats["timeouts_per_try"].as_u64() >= Some(3), "{stats:#}");
}

fn parse_grpc_timeout(text: &str) -> Duration {
    let (n, unit) = text.split_at(text.len() - 1);
    let n: u64 = n.parse().unwrap();
    match unit {
        "m" => Duration::from_millis(n),
        "u" => Duration::from_micros(n),
        "n" => Duration::from_nanos(n),
        "S" => Duration::from_secs(n),
        other => panic!("unit {other}"),
    }
}

/// A listener whose accept queue is full: the kernel drops further SYNs, so a
/// connect to it hangs (on loopback, without leaving the machine).
async fn black_hole() -> (SocketAddr, Vec<tokio::net::TcpStream>) {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let listener = socket.listen(0).unwrap();
    let addr = listener.local_addr().unwrap();
    let mut fillers = Vec::new();
    for _ in 0..8 {
        match tokio::time::timeout(
            Duration::from_millis(200),
            tokio::net::TcpStream::connect(addr),
        )
        .await
        {
            Ok(Ok(s)) => fillers.push(s),
            _ => break,
        }
    }
    std::mem::forget(listener); // never accepts; closed when the test process ends
    (addr, fillers)
}

use std::net::SocketAddr;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_connect_timeout_fires_on_time() {
    let (hole, _fillers) = black_hole().await;
    let root = tempfile::tempdir().unwrap();
    let config = config_dir(root.path());
    let docs = [
        service("web", 80, "http"),
        format!(
            "apiVersion: v1\nkind: Service\nmetadata: {{name: hole, namespace: default, annotations: {{remora.io/allow-unauthenticated-endpoints: \"true\"}}}}\n\
             spec:\n  ports: [{{port: 80}}]\n  endpoints: [{{address: 127.0.0.1, port: {}}}]\n",
            hole.port()
        ),
        "apiVersion: policy.remora.dev/v1alpha1\nkind: TrafficPolicy\nmetadata: {name: hole}\n\
         spec:\n  targetRef: {kind: Service, name: hole}\n  timeouts: {connect: 250ms}\n"
            .to_owned(),
    ];
    write_config(&config, "services.yaml", &docs.join("---\n"));
    let cp = checked_control_plane(&config).await;
    let app = TestApp::http("web");
    let web = Proxy::start(ProxySpec::new("web", cp.xds_addr, app.addr))
        .await
        .unwrap();
    web.wait_ready(Duration::from_secs(10)).await.unwrap();
    let (elapsed, reply) = best_of_three(&web, || {
        ::http::Request::get("/")
            .header("host", "hole")
            .body(Full::new(Bytes::new()))
            .unwrap()
    })
    .await;
    assert_eq!(reply.status, 504, "{}", reply.text());
    assert_eq!(reply.header("remora-error"), Some("connect timeout"));
    assert!(
        within(elapsed, Duration::from_millis(250)),
        "connect timeout after {elapsed:?}"
    );
}
