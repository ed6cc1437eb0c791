//! One misbehaving client hurts only itself (issue 10's findings 4 and 5): an
//! oversized request is answered by the proxy it entered and never touches the
//! HTTP/2 connection other requests share, and a client that hoards idle
//! connections cannot starve the proxy's other listeners.

mod support;

use std::process::Stdio;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use remora_tests::app::TestApp;
use remora_tests::harness::{bin_path, http, wait_for, ControlPlane, Proxy, ProxySpec};
use remora_tests::load::{Load, LoadSpec};
use support::*;

fn request(path: &str, header: Option<(&str, String)>) -> ::http::Request<Full<Bytes>> {
    let mut b = ::http::Request::builder()
        .uri(path)
        .header("host", "orders");
    if let Some((name, value)) = header {
        b = b.header(name, value);
    }
    b.body(Full::new(Bytes::new())).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_requests_are_refused_at_the_edge_and_innocent_traffic_sees_no_error() {
    let mesh = SecureMesh::start().await;
    let (web, orders_app) = (&mesh.web, &mesh.orders_app);

    // Innocent callers share web's one HTTP/2 connection to orders' proxy.
    let load = Load::start(
        LoadSpec::rate(web.outbound, "orders", 200.0)
            .connections(4)
            .duration(Duration::from_secs(4)),
    );
    let mut refused = 0;
    for round in 0..20 {
        for (size, status) in [(70_000, 431), (40_000, 431), (20_000, 200)] {
            let value = "x".repeat(size);
            let reply = http::send(web.outbound, request("/", Some(("x-big", value))))
                .await
                .unwrap();
            assert_eq!(
                reply.status,
                status,
                "round {round}, {size} bytes: {}",
                reply.text()
            );
            if status == 431 {
                assert_eq!(
                    reply.header("remora-error"),
                    Some("request headers too large")
                );
                refused += 1;
            }
        }
        let long = format!("/{}", "p".repeat(40_000));
        let reply = http::send(web.outbound, request(&long, None))
            .await
            .unwrap();
        assert_eq!(reply.status, 414, "{}", reply.text());
        // Spread over the innocent load's 4 s, so its requests are in flight
        // on the shared connection while the oversized ones arrive.
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(refused, 40);
    let report = load.wait().await;
    assert!(
        report.samples.len() > 500,
        "{} requests",
        report.samples.len()
    );
    assert_no_errors(&report);
    // The refused requests never left web's proxy: orders' app saw the load
    // and the 20 requests within the limit, nothing else.
    assert_eq!(orders_app.requests(), report.samples.len() as u64 + 20);
}

/// `remora-load idle`: `connections` TCP connections held open, silent.
async fn hoard(target: std::net::SocketAddr, connections: u32) -> tokio::process::Child {
    let mut child = tokio::process::Command::new(bin_path("remora-load").unwrap())
        .args(["idle", "--target", &target.to_string(), "--hold", "60"])
        .args(["--connections", &connections.to_string()])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut lines = tokio::io::AsyncBufReadExt::lines(tokio::io::BufReader::new(stdout));
    let line = tokio::time::timeout(Duration::from_secs(60), lines.next_line())
        .await
        .expect("remora-load idle opened its connections within 60 s")
        .unwrap()
        .unwrap_or_default();
    assert!(line.starts_with("opened"), "{line}");
    child
}

fn counter(metrics: &str, name: &str, labels: &str) -> u64 {
    metrics
        .lines()
        .find(|l| l.starts_with(&format!("{name}{{")) && l.contains(labels))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse::<f64>().ok())
        .map_or(0, |v| v as u64)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_thousand_idle_connections_do_not_starve_the_proxy() {
    let root = tempfile::tempdir().unwrap();
    let config = config_dir(root.path());
    write_config(
        &config,
        "services.yaml",
        &services(&[("web", 80, "http"), ("orders", 80, "http")]),
    );
    let cp = ControlPlane::start(&config).await.unwrap();
    let (web_app, orders_app) = (TestApp::http("web"), TestApp::http("orders"));
    let web = Proxy::start(ProxySpec::new("web", cp.xds_addr, web_app.addr))
        .await
        .unwrap();
    // orders' proxy gets the hoarder on its outbound listener; its descriptor
    // limit is this machine's (the default connection limit follows it).
    let orders = Proxy::start(
        ProxySpec::new("orders", cp.xds_addr, orders_app.addr)
            .extra("limits: {idle_timeout_ms: 3000}\n"),
    )
    .await
    .unwrap();
    for p in [&web, &orders] {
        p.wait_ready(Duration::from_secs(10)).await.unwrap();
    }
    wait_config(&web, Duration::from_secs(10), "orders' endpoint", |d| {
        endpoint_count(d, "orders") == 1
    })
    .await;

    // Two processes (a process has fewer descriptors than that), 10,000 each.
    let hoarders = [
        hoard(orders.outbound, 10_000).await,
        hoard(orders.outbound, 10_000).await,
    ];

    // The admin port answers, and other services still reach orders' app
    // through its inbound listener.
    let ready = orders.admin_get("/ready").await.unwrap();
    assert_eq!(ready.status, 200, "{}", ready.text());
    for _ in 0..20 {
        let reply = http::get_with_host(web.outbound, "orders", "/")
            .await
            .unwrap();
        assert_eq!(reply.status, 200, "{}", reply.text());
    }
    let metrics = orders.admin_get("/metrics").await.unwrap().text();
    let refused = counter(
        &metrics,
        "remora_tcp_connections_refused_total",
        "direction=\"outbound\"",
    );
    assert!(refused > 0, "the listener refused nothing:\n{metrics}");
    assert!(
        !orders.logs().contains("Too many open files"),
        "the proxy ran out of descriptors"
    );

    // Idle ones are closed after the idle timeout: the listener serves again.
    let freed = wait_for(Duration::from_secs(20), || async {
        let m = orders
            .admin_get("/metrics")
            .await
            .map(|r| r.text())
            .unwrap_or_default();
        counter(
            &m,
            "remora_tcp_connections_open",
            "direction=\"outbound\",peer=\"src\"",
        ) <= 1
    })
    .await;
    assert!(freed.is_ok(), "idle connections were not closed");
    let reply = http::get_with_host(orders.outbound, "web", "/")
        .await
        .unwrap();
    assert_eq!(reply.status, 200, "{}", reply.text());
    drop(hoarders);
}
