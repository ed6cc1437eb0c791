//! `remora stat`: the control plane's view of every hop, from what the proxies
//! report. A known load (100 req/s, one answer in ten a 503) shows as a 90%
//! success rate at 100 requests per second on the web -> orders edge, in the
//! table, in JSON and under `--watch`.

mod support;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use remora_tests::app::TestApp;
use remora_tests::harness::{bin_path, Proxy, ProxySpec};
use remora_tests::load::{Load, LoadSpec};
use support::*;

fn stat(api: std::net::SocketAddr, args: &[&str]) -> String {
    let out = Command::new(bin_path("remora").unwrap())
        .arg("stat")
        .args(["--api", &api.to_string()])
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "remora stat {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stat_shows_the_success_rate_and_rate_of_a_known_load() {
    let (_root, cp) = control_plane_with(&[("web", 80, "http"), ("orders", 80, "http")], &[]).await;
    let web_app = TestApp::http("web");
    let orders_app = TestApp::http("orders");
    orders_app.set_failures(10.0, 503, tonic::Code::Unavailable);
    // Reports every half second, so a short window holds several.
    let often = "report_interval_ms: 500\n";
    let web = Proxy::start(ProxySpec::new("web", cp.xds_addr, web_app.addr).extra(often))
        .await
        .unwrap();
    let _orders = Proxy::start(ProxySpec::new("orders", cp.xds_addr, orders_app.addr).extra(often))
        .await
        .unwrap();
    wait_config(&web, Duration::from_secs(10), "orders", |d| {
        endpoint_count(d, "orders") == 1
    })
    .await;

    let started = Instant::now();
    let load = Load::start(
        LoadSpec::rate(web.outbound, "orders", 100.0)
            .connections(4)
            .duration(Duration::from_secs(7)),
    );
    // A 3 s window that lies wholly inside the load.
    tokio::time::sleep_until((started + Duration::from_millis(4500)).into()).await;
    let json = stat(cp.api_addr, &["--window", "3s", "-o", "json", "orders"]);
    let table = stat(cp.api_addr, &["--window", "3s", "--namespace", "default"]);
    let report = load.wait().await;

    let view: serde_json::Value = serde_json::from_str(&json).unwrap();
    let edges = view["edges"].as_array().unwrap();
    assert_eq!(edges.len(), 1, "{json}");
    let edge = &edges[0];
    assert_eq!(edge["source"]["service"], "web");
    assert_eq!(edge["destination"]["service"], "orders");
    // The app fails exactly one request in ten.
    let success = edge["success_rate"].as_f64().unwrap();
    assert!((success - 0.9).abs() < 0.01, "{json}");
    let achieved = report.total as f64 / report.duration.as_secs_f64();
    let rps = edge["requests_per_second"].as_f64().unwrap();
    assert!(
        (rps - achieved).abs() < achieved * 0.05,
        "stat says {rps:.1} req/s, the load ran at {achieved:.1}: {json}"
    );
    assert!(edge["latency_ms_p50"].as_f64() > Some(0.0), "{json}");
    assert!(edge["latency_ms_p99"].as_f64() >= edge["latency_ms_p50"].as_f64());
    assert!(edge["overhead_ms"].as_f64() > Some(0.0), "{json}");
    assert!(edge["inbound_overhead_ms"].as_f64() > Some(0.0), "{json}");

    let mut lines = table.lines();
    let header = lines.next().unwrap();
    for column in [
        "SRC -> DST",
        "SUCCESS",
        "RPS",
        "P50",
        "P95",
        "P99",
        "OVERHEAD",
    ] {
        assert!(header.contains(column), "{table}");
    }
    let row = lines.next().unwrap();
    assert!(row.starts_with("web.default -> orders.default"), "{table}");
    let success: f64 = row
        .split_whitespace()
        .find_map(|c| c.strip_suffix('%'))
        .and_then(|p| p.parse().ok())
        .unwrap();
    assert!((success - 90.0).abs() < 1.0, "{table}");

    // --watch redraws until interrupted.
    let mut watch = Command::new(bin_path("remora").unwrap())
        .args(["stat", "--watch", "--api", &cp.api_addr.to_string()])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = watch.stdout.take().unwrap();
    let screens = tokio::task::spawn_blocking(move || {
        BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
            .filter(|l| l.contains("SRC -> DST"))
            .take(2)
            .count()
    });
    let screens = tokio::time::timeout(Duration::from_secs(10), screens).await;
    watch.kill().unwrap();
    watch.wait().unwrap();
    assert_eq!(screens.unwrap().unwrap(), 2, "two screens from --watch");
}
