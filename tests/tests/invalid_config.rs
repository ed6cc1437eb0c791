//! An invalid HTTPRoute is named (file, resource, field); proxies keep the last good
//! config; fixing the file heals it.

mod support;

use std::time::Duration;

use remora_tests::harness::{http, wait_for};
use support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invalid_route_is_reported_and_the_last_good_one_keeps_serving() {
    let mesh = SplitMesh::start(100, 0).await;
    let (cp, web) = (&mesh.cp, &mesh.web);

    // A backend that does not exist.
    mesh.write_route(&[("orders-v1", 50), ("orders-v3", 50)]);
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
    let errors = status["errors"].to_string();
    assert!(
        errors.contains("spec.rules[0].backendRefs[1]"),
        "{status:#}"
    );
    assert!(
        errors.contains("the last valid version stays in force"),
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
    mesh.set_split(0, 100);
    mesh.wait_split(CONVERGE, 0, 100).await;
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
