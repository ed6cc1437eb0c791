//! Static stability: with the control plane gone traffic keeps flowing on the last
//! config; when it comes back the proxies reconnect and converge to the files.

mod support;

use std::time::Duration;

use remora_tests::app::TestApp;
use remora_tests::harness::{ControlPlane, Proxy, ProxySpec};
use remora_tests::load::{Load, LoadSpec};
use support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn traffic_survives_a_control_plane_restart_and_converges_after() {
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
    let route = |v1, v2| {
        split_route(
            "orders-split",
            "orders",
            &[("orders-v1", v1), ("orders-v2", v2)],
        )
    };
    write_config(&config, "route.yaml", &route(100, 0));
    let mut cp = ControlPlane::start(&config).await.unwrap();
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
    wait_config(&web, Duration::from_secs(10), "endpoints for v2", |d| {
        endpoint_count(d, "orders-v2") == 1
    })
    .await;
    let (xds_port, api_port) = (cp.xds_addr.port(), cp.api_addr.port());

    let started = tokio::time::Instant::now();
    let load = Load::start(LoadSpec::rate(web.outbound, "orders", 200.0).connections(4));
    cp.kill();
    // While it is away, the policy changes on disk.
    write_config(&config, "route.yaml", &route(0, 100));
    tokio::time::sleep(Duration::from_secs(3)).await;
    let down_until = started.elapsed();
    assert!(web.config_dump().await.unwrap()["xds"]["connected"] == false);

    let cp = ControlPlane::start_on(&config, xds_port, api_port)
        .await
        .unwrap();
    wait_split(
        &web,
        Duration::from_secs(15),
        "orders",
        &[("orders-v1", 0), ("orders-v2", 100)],
    )
    .await;
    let converged = started.elapsed();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let report = load.stop().await;

    let outage = report.window(Duration::ZERO..down_until);
    assert!(
        outage.total > 400,
        "only {} requests during the outage",
        outage.total
    );
    assert_eq!(
        report.share_of("orders-v1", Duration::ZERO..down_until),
        1.0,
        "the last config kept routing to v1"
    );
    assert_eq!(
        report.errors,
        0,
        "failed requests: {:?}",
        report
            .samples
            .iter()
            .filter(|s| s.is_error())
            .take(5)
            .collect::<Vec<_>>()
    );
    let after = converged + Duration::from_millis(200)..report.duration;
    assert!(
        report.share_of("orders-v2", after.clone()) > 0.99,
        "after convergence v2 gets the traffic"
    );
    let proxies = cp.proxies().await.unwrap();
    assert_eq!(
        proxies.as_array().map(Vec::len),
        Some(3),
        "all proxies reconnected: {proxies:#}"
    );
}
