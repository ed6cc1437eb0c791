//! An invalid HTTPRoute is named (file, resource, field); proxies keep the last good
//! config; fixing the file heals it.

mod support;

use std::time::Duration;

use remora_tests::app::TestApp;
use remora_tests::harness::{http, wait_for, ControlPlane, Proxy, ProxySpec};
use support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invalid_route_is_reported_and_the_last_good_one_keeps_serving() {
    let root = tempfile::tempdir().unwrap();
    let config = config_dir(root.path());
    write_config(
        &config,
        "services.yaml",
        &services(&[
            ("web", 80, "http"),
            ("orders", 80, "http"),
            ("orders-v1", 80, "http"),
            ("orders-v2", 80, "http"),
        ]),
    );
    write_config(
        &config,
        "route.yaml",
        &split_route(
            "orders-split",
            "orders",
            &[("orders-v1", 100), ("orders-v2", 0)],
        ),
    );
    let cp = ControlPlane::start(&config).await.unwrap();
    let (web_app, v1_app, v2_app) = (
        TestApp::http("web"),
        TestApp::http("orders-v1"),
        TestApp::http("orders-v2"),
    );
    let web = Proxy::start(ProxySpec::new("web", cp.xds_addr, web_app.addr))
        .await
        .unwrap();
    let _v1 = Proxy::start(ProxySpec::new("orders-v1", cp.xds_addr, v1_app.addr))
        .await
        .unwrap();
    let _v2 = Proxy::start(ProxySpec::new("orders-v2", cp.xds_addr, v2_app.addr))
        .await
        .unwrap();
    wait_split(
        &web,
        Duration::from_secs(10),
        "orders",
        &[("orders-v1", 100), ("orders-v2", 0)],
    )
    .await;

    // A backend that does not exist.
    write_config(
        &config,
        "route.yaml",
        &split_route(
            "orders-split",
            "orders",
            &[("orders-v1", 50), ("orders-v3", 50)],
        ),
    );
    let named = wait_for(Duration::from_secs(5), || async {
        let logs = cp.logs();
        logs.contains("route.yaml")
            && logs.contains("HTTPRoute default/orders-split")
            && logs.contains("spec.rules[0].backendRefs[1]")
            && logs.contains("orders-v3")
    })
    .await;
    assert!(
        named.is_ok(),
        "the control plane did not name the problem:\n{}",
        cp.logs()
    );
    let status = cp.api_get("/api/v1/config").await.unwrap().json().unwrap();
    assert!(
        status["errors"]
            .to_string()
            .contains("spec.rules[0].backendRefs[1]"),
        "{status:#}"
    );

    // The proxies still route by the last good route.
    for _ in 0..20 {
        let reply = http::get_with_host(web.outbound, "orders", "/")
            .await
            .unwrap();
        assert_eq!(reply.status, 200, "{}", reply.text());
        assert_eq!(reply.header("x-backend"), Some("orders-v1"));
    }
    let dump = web.config_dump().await.unwrap();
    assert_eq!(routed_weight(&dump, "orders", "orders-v1"), 100, "{dump:#}");

    // Fixing the file heals it.
    write_config(
        &config,
        "route.yaml",
        &split_route(
            "orders-split",
            "orders",
            &[("orders-v1", 0), ("orders-v2", 100)],
        ),
    );
    wait_split(
        &web,
        CONVERGE,
        "orders",
        &[("orders-v1", 0), ("orders-v2", 100)],
    )
    .await;
    let reply = http::get_with_host(web.outbound, "orders", "/")
        .await
        .unwrap();
    assert_eq!(reply.header("x-backend"), Some("orders-v2"));
    let status = cp.api_get("/api/v1/config").await.unwrap().json().unwrap();
    assert_eq!(
        status["errors"].as_array().map(Vec::len),
        Some(0),
        "{status:#}"
    );
}
