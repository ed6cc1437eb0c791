//! Under continuous load, rewriting the HTTPRoute moves the split with no failed
//! request, and the observed share follows within 2 s of each write.

mod support;

use std::time::Duration;

use remora_tests::app::TestApp;
use remora_tests::harness::{ControlPlane, Proxy, ProxySpec};
use remora_tests::load::{Load, LoadSpec};
use support::*;

const RATE: f64 = 250.0;
/// How long each split is measured, after the 2 s allowed for convergence.
const MEASURE: Duration = Duration::from_secs(3);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn split_moves_within_two_seconds_without_errors() {
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
    wait_config(&web, Duration::from_secs(10), "endpoints for v2", |d| {
        endpoint_count(d, "orders-v2") == 1
    })
    .await;

    let started = tokio::time::Instant::now();
    let load = Load::start(LoadSpec::rate(web.outbound, "orders", RATE).connections(8));
    tokio::time::sleep(MEASURE).await;
    let mut windows = vec![(Duration::ZERO, MEASURE, 0.0)];
    for (v1, v2) in [(50, 50), (0, 100)] {
        let written = started.elapsed();
        write_config(&config, "route.yaml", &route(v1, v2));
        tokio::time::sleep(CONVERGE + MEASURE).await;
        windows.push((
            written + CONVERGE,
            written + CONVERGE + MEASURE,
            f64::from(v2) / 100.0,
        ));
    }
    let report = load.stop().await;

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
    assert!(
        report.total as f64 > RATE * 10.0,
        "only {} requests were sent",
        report.total
    );
    for (from, to, expected) in windows {
        let window = report.window(from..to);
        let share = report.share_of("orders-v2", from..to);
        assert!(
            window.total > 300,
            "window {from:?}..{to:?} has only {} samples",
            window.total
        );
        assert!(
            (share - expected).abs() <= 0.05,
            "window {from:?}..{to:?}: orders-v2 got {:.1}% of {} requests, configured {:.0}%",
            share * 100.0,
            window.total,
            expected * 100.0
        );
    }
}
