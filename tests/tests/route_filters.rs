//! HTTPRoute filters, end to end: header modifiers change what the backend and the
//! client see; a mirror gets a copy of every request and never delays or fails the
//! real one.

mod support;

use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::Full;
use remora_tests::app::TestApp;
use remora_tests::harness::{http, wait_for, ControlPlane, Proxy, ProxySpec};
use support::*;

const ROUTE: &str = "
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: orders, namespace: default}
spec:
  parentRefs: [{kind: Service, name: orders}]
  rules:
  - backendRefs: [{name: orders, port: 80}]
    filters:
    - type: RequestHeaderModifier
      requestHeaderModifier:
        set: [{name: x-test-env, value: prod}]
        add: [{name: x-test-tag, value: mesh}]
        remove: [x-test-secret]
    - type: ResponseHeaderModifier
      responseHeaderModifier:
        set: [{name: x-served-by, value: remora}]
        remove: [x-seen-version]
    - type: RequestMirror
      requestMirror:
        backendRef: {name: shadow, port: 80}
";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn headers_are_modified_and_requests_mirrored_without_delay() {
    let root = tempfile::tempdir().unwrap();
    let config = config_dir(root.path());
    write_config(
        &config,
        "services.yaml",
        &services(&[
            ("web", 80, "http"),
            ("orders", 80, "http"),
            ("shadow", 80, "http"),
        ]),
    );
    write_config(&config, "route.yaml", ROUTE);
    let cp = ControlPlane::start(&config).await.unwrap();
    let view = cp.api_get("/api/v1/config").await.unwrap().json().unwrap();
    assert_eq!(view["errors"], serde_json::json!([]), "{view:#}");
    let apps = [
        TestApp::http("web"),
        TestApp::http("orders"),
        TestApp::http("shadow"),
    ];
    let web = Proxy::start(ProxySpec::new("web", cp.xds_addr, apps[0].addr))
        .await
        .unwrap();
    let _orders = Proxy::start(ProxySpec::new("orders", cp.xds_addr, apps[1].addr))
        .await
        .unwrap();
    let _shadow = Proxy::start(ProxySpec::new("shadow", cp.xds_addr, apps[2].addr))
        .await
        .unwrap();
    wait_config(
        &web,
        Duration::from_secs(10),
        "orders and shadow endpoints",
        |d| endpoint_count(d, "orders") == 1 && endpoint_count(d, "shadow") == 1,
    )
    .await;

    let request = || {
        ::http::Request::post("/orders")
            .header("host", "orders")
            .header("x-test-env", "dev")
            .header("x-test-tag", "app")
            .header("x-test-secret", "hunter2")
            .body(Full::new(Bytes::from_static(b"{\"item\": 1}")))
            .unwrap()
    };
    let reply = http::send(web.outbound, request()).await.unwrap();
    assert_eq!(reply.status, 200);
    assert_eq!(reply.header("x-echo-env"), Some("prod"), "set overwrites");
    let tags: Vec<_> = reply
        .headers
        .get_all("x-echo-tag")
        .iter()
        .map(|v| v.to_str().unwrap())
        .collect();
    assert_eq!(tags, ["app", "mesh"], "add appends");
    assert!(
        reply.header("x-echo-secret").is_none(),
        "removed before it left"
    );
    assert_eq!(reply.header("x-served-by"), Some("remora"));
    assert!(reply.header("x-seen-version").is_none());
    assert_eq!(reply.body, Bytes::from_static(b"{\"item\": 1}"));

    // Every request is mirrored (the copy's answer is dropped).
    for _ in 0..9 {
        http::send(web.outbound, request()).await.unwrap();
    }
    let mirrored = wait_for(Duration::from_secs(5), || async {
        apps[2].requests() == 10
    })
    .await;
    assert!(mirrored.is_ok(), "shadow saw {} of 10", apps[2].requests());
    assert_eq!(apps[1].requests(), 10);

    // A mirror that hangs neither slows nor fails the real requests.
    apps[2].set_delay(Duration::from_secs(3));
    let started = Instant::now();
    for _ in 0..5 {
        assert_eq!(
            http::send(web.outbound, request()).await.unwrap().status,
            200
        );
    }
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "took {:?}",
        started.elapsed()
    );
    apps[2].set_reset(true);
    for _ in 0..5 {
        assert_eq!(
            http::send(web.outbound, request()).await.unwrap().status,
            200
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_request_carries_one_request_id_across_hops() {
    let m = WebOrders::start(vec![TestApp::http("orders")], &[]).await;
    let first = http::get_with_host(m.web.outbound, "orders", "/")
        .await
        .unwrap();
    let made = first
        .header("x-seen-request-id")
        .expect("an id was made")
        .to_owned();
    assert_eq!(made.len(), 36, "a UUID: {made}");
    let second = http::get_with_host(m.web.outbound, "orders", "/")
        .await
        .unwrap();
    assert_ne!(
        second.header("x-seen-request-id"),
        Some(made.as_str()),
        "one per request"
    );
    let request = ::http::Request::get("/")
        .header("host", "orders")
        .header("x-request-id", "checkout-42")
        .body(Full::new(Bytes::new()))
        .unwrap();
    let kept = http::send(m.web.outbound, request).await.unwrap();
    assert_eq!(
        kept.header("x-seen-request-id"),
        Some("checkout-42"),
        "passed on as it came"
    );
}
