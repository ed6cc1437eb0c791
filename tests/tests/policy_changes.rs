//! Traffic policy as configuration: each change reaches the proxies within 2 s
//! without dropping a request under load; idle timeouts close what sits idle.

mod support;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use remora_tests::app::TestApp;
use remora_tests::harness::{http, wait_for, Proxy, ProxySpec};
use remora_tests::load::{Load, LoadSpec};
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn policy_changes_apply_within_2s_without_dropping_requests() {
    let m = WebOrders::start(
        vec![TestApp::http("orders-a"), TestApp::http("orders-b")],
        &[],
    )
    .await;
    let (web, config) = (&m.web, &m.config);
    let load = Load::start(LoadSpec::rate(web.outbound, "orders", 200.0).connections(4));
    let steps = [
        "  loadBalancer: {type: RoundRobin}\n  retry: {on: [5xx], attempts: 2, budget: {percent: 50}}\n",
        "  loadBalancer:\n    type: ConsistentHash\n    consistentHash: {header: x-user}\n  timeouts: {request: 5s, connect: 500ms}\n",
        "  outlierDetection: {consecutiveFailures: 5}\n  connectionLimits: {maxRequests: 1000}\n  rateLimit: {inbound: {requestsPerSecond: 10000}}\n",
    ];
    for step in steps {
        let before = web.config_dump().await.unwrap()["versions"].clone();
        let written = Instant::now();
        write_config(config, "policy.yaml", &traffic_policy("orders", step));
        wait_config(web, CONVERGE, "the new policy", |d| d["versions"] != before).await;
        eprintln!("policy applied after {:?}", written.elapsed());
        answered_after_change(&load).await;
    }
    std::fs::remove_file(config.join("policy.yaml")).unwrap();
    answered_after_change(&load).await;
    let report = load.stop().await;
    assert!(report.total > 500, "{} requests", report.total);
    assert_eq!(
        report.errors, 0,
        "no request dropped while the policy changed"
    );
}

/// Waits until the load has 100 more answers, so each policy is in force while
/// requests flow.
async fn answered_after_change(load: &Load) {
    let mark = load.elapsed();
    let flowed = wait_for(Duration::from_secs(5), || async {
        load.snapshot_since(mark).len() >= 100
    })
    .await;
    assert!(flowed.is_ok(), "the load stalled after a policy change");
}

/// A tiny HTTP/1.1 server: counts connections; answers `ok`, or (when `stall`)
/// sends the headers and part of the body, then nothing.
async fn raw_server(stall: bool) -> (SocketAddr, Arc<AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let connections = Arc::new(AtomicUsize::new(0));
    let counted = connections.clone();
    tokio::spawn(async move {
        loop {
            let Ok((mut stream, _)) = listener.accept().await else {
                return;
            };
            counted.fetch_add(1, Ordering::Relaxed);
            tokio::spawn(async move {
                let mut buf = vec![0u8; 4096];
                let mut seen = Vec::new();
                loop {
                    let Ok(n) = stream.read(&mut buf).await else {
                        return;
                    };
                    if n == 0 {
                        return;
                    }
                    seen.extend_from_slice(&buf[..n]);
                    while let Some(end) = seen.windows(4).position(|w| w == b"\r\n\r\n") {
                        seen.drain(..end + 4);
                        let answer: &[u8] = if stall {
                            b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\npartial"
                        } else {
                            b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok"
                        };
                        if stream.write_all(answer).await.is_err() {
                            return;
                        }
                        if stall {
                            tokio::time::sleep(Duration::from_secs(60)).await;
                        }
                    }
                }
            });
        }
    });
    (addr, connections)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connections_are_closed_and_stalled_responses_cut() {
    let (quiet, connections) = raw_server(false).await;
    let (stalling, _) = raw_server(true).await;
    let root = tempfile::tempdir().unwrap();
    let config = config_dir(root.path());
    let service = |name: &str, addr: SocketAddr| {
        format!(
            "apiVersion: v1\nkind: Service\nmetadata: {{name: {name}, namespace: default, annotations: {{remora.io/allow-unauthenticated-endpoints: \"true\"}}}}\n\
             spec:\n  ports: [{{port: 80}}]\n  endpoints: [{{address: 127.0.0.1, port: {}}}]\n",
            addr.port()
        )
    };
    let docs = [
        support::service("web", 80, "http"),
        service("quiet", quiet),
        service("stalling", stalling),
        "apiVersion: policy.remora.dev/v1alpha1\nkind: TrafficPolicy\nmetadata: {name: quiet}\n\
         spec:\n  targetRef: {kind: Service, name: quiet}\n  timeouts: {idle: 300ms}\n"
            .to_owned(),
        "apiVersion: policy.remora.dev/v1alpha1\nkind: TrafficPolicy\nmetadata: {name: stalling}\n\
         spec:\n  targetRef: {kind: Service, name: stalling}\n  timeouts: {streamIdle: 300ms}\n"
            .to_owned(),
    ];
    write_config(&config, "services.yaml", &docs.join("---\n"));
    let cp = checked_control_plane(&config).await;
    let app = TestApp::http("web");
    let web = Proxy::start(ProxySpec::new("web", cp.xds_addr, app.addr))
        .await
        .unwrap();
    web.wait_ready(Duration::from_secs(10)).await.unwrap();

    // Two requests close together share a connection; after the idle timeout
    // the next one needs a new connection.
    for _ in 0..2 {
        assert_eq!(
            http::get_with_host(web.outbound, "quiet", "/")
                .await
                .unwrap()
                .status,
            200
        );
    }
    assert_eq!(connections.load(Ordering::Relaxed), 1);
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(
        http::get_with_host(web.outbound, "quiet", "/")
            .await
            .unwrap()
            .status,
        200
    );
    assert_eq!(
        connections.load(Ordering::Relaxed),
        2,
        "the idle connection was closed"
    );

    // A response that stops sending is cut after the stream idle timeout.
    let started = Instant::now();
    let result = http::get_with_host(web.outbound, "stalling", "/").await;
    assert!(
        result.is_err(),
        "a stalled body cannot complete: {:?}",
        result.map(|r| r.status)
    );
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "cut after {:?}",
        started.elapsed()
    );
}
