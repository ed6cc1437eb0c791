//! Defaults that protect, end to end. With no TrafficPolicy, a replica that
//! answers 500 at once draws little traffic (outlier detection is on by
//! default, though the balancer prefers fast endpoints) and gets it back once
//! it recovers. A TrafficPolicy's `connectionLimits` hold for every kind of
//! endpoint: a plain HTTP/1.1 server, an h2c server, peer proxies over mTLS,
//! opaque TCP. What is over a limit is refused at once with 503 naming the
//! limit (`remora-overloaded`, `remora-error`) and counted by limit.

mod support;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::sync::Arc;
use std::time::Duration;

use remora_tests::app::TestApp;
use remora_tests::harness::{http, wait_for, ControlPlane, Proxy, ProxySpec};
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::Instant;

/// The `circuit_breakers` of `proxy`'s cluster for `service` in a config dump.
fn breakers(dump: &serde_json::Value, service: &str) -> serde_json::Value {
    let cluster = format!("|{service}.");
    dump["clusters"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|c| c["name"].as_str().is_some_and(|n| n.contains(&cluster)))
        .map(|c| c["circuit_breakers"].clone())
        .unwrap_or_default()
}

/// `remora_upstream_overflow_total` of `service`'s cluster for `limit`.
async fn overflow_metric(proxy: &Proxy, service: &str, limit: &str) -> f64 {
    let text = proxy.admin_get("/metrics").await.unwrap().text();
    let cluster = format!("|{service}.");
    let label = format!("limit=\"{limit}\"");
    text.lines()
        .filter(|l| l.starts_with("remora_upstream_overflow_total{"))
        .find(|l| l.contains(&cluster) && l.contains(&label))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
        .unwrap_or_else(|| panic!("no overflow sample for {service}, {limit}:\n{text}"))
}

/// One answer of a burst: its status, what the proxy said, and when it came.
#[derive(Debug)]
struct Answer {
    status: u16,
    overloaded: Option<String>,
    error: Option<String>,
    at: Instant,
}

/// `n` GETs to `host` through `proxy`'s outbound listener, all at once.
async fn burst(proxy: SocketAddr, host: &str, n: usize) -> Vec<Answer> {
    let tasks: Vec<_> = (0..n)
        .map(|_| {
            let host = host.to_owned();
            tokio::spawn(async move {
                let r = http::get_with_host(proxy, &host, "/").await.unwrap();
                Answer {
                    status: r.status,
                    overloaded: r.header("remora-overloaded").map(str::to_owned),
                    error: r.header("remora-error").map(str::to_owned),
                    at: Instant::now(),
                }
            })
        })
        .collect();
    let mut answers = Vec::with_capacity(n);
    for task in tasks {
        answers.push(task.await.unwrap());
    }
    answers
}

/// Exactly `served` answers are 200; every other is 503 refused by `limit`
/// with the Service and the value named, and came back before any served one
/// (refused at once, not after waiting for the slow app).
fn assert_refused(answers: &[Answer], served: usize, limit: &str, reason: &str) {
    let (ok, refused): (Vec<&Answer>, Vec<&Answer>) = answers.iter().partition(|a| a.status == 200);
    assert_eq!(ok.len(), served, "{answers:#?}");
    for a in &refused {
        assert_eq!(a.status, 503, "{a:?}");
        assert_eq!(a.overloaded.as_deref(), Some(limit), "{a:?}");
        assert_eq!(a.error.as_deref(), Some(reason), "{a:?}");
    }
    let last_refusal = refused.iter().map(|a| a.at).max();
    let first_served = ok.iter().map(|a| a.at).min();
    if let (Some(last_refusal), Some(first_served)) = (last_refusal, first_served) {
        assert!(
            last_refusal < first_served,
            "a refusal waited for a slow answer"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_failing_fast_gets_little_traffic_and_gets_it_back_once_it_recovers() {
    // No TrafficPolicy at all, and so no retries.
    let apps = vec![TestApp::http("orders-0"), TestApp::http("orders-1")];
    let m = WebOrders::start(apps, &[]).await;
    let (bad, good) = (&m.apps[0], &m.apps[1]);
    bad.set_failures(100.0, 500, tonic::Code::Internal);
    let get = || http::get_with_host(m.web.outbound, "orders", "/");

    const N: u64 = 400;
    let mut failed = 0;
    for _ in 0..N {
        if get().await.unwrap().status != 200 {
            failed += 1;
        }
    }
    let to_bad = bad.requests();
    assert_eq!(to_bad + good.requests(), N, "one attempt per request");
    // It answers faster than the healthy one, and without protection it drew
    // most requests.
    assert!(
        to_bad * 10 <= N,
        "the failing replica got {to_bad} of {N} requests"
    );
    assert!(failed * 20 <= N, "{failed} of {N} requests failed");
    // Five failures in a row eject it. (On a loaded machine the balancer may
    // have kept away from it before that: its first answers, slowed by the
    // connection set-up, looked slower than the healthy one's.)
    let stats = m.orders_stats().await;
    if to_bad >= 5 {
        assert!(stats["ejections"].as_u64() >= Some(1), "{stats:#}");
    }

    // It recovers: once its ejection is over (30 s the first time), its next
    // request is a probe, which succeeds, and it is back in the rotation. No
    // sleep: until then the requests go to the healthy one.
    bad.set_failures(0.0, 500, tonic::Code::Internal);
    let before = bad.requests();
    let back = wait_for(Duration::from_secs(100), || async {
        assert_eq!(get().await.unwrap().status, 200);
        bad.requests() >= before + 3
    })
    .await;
    assert!(
        back.is_ok(),
        "the recovered replica got {} requests",
        bad.requests() - before
    );
}

/// web and `n` orders endpoints (each behind its own proxy), all over mTLS on
/// a control plane that requires client certificates.
struct SecureOrders {
    root: tempfile::TempDir,
    _cp: ControlPlane,
    web: Proxy,
    _orders: Vec<Proxy>,
    apps: Vec<TestApp>,
    _web_app: TestApp,
}

impl SecureOrders {
    async fn start(n: usize) -> SecureOrders {
        let root = tempfile::tempdir().unwrap();
        let config = config_dir(root.path());
        write_config(&config, "services.yaml", WEB_AND_ORDERS);
        let cp = ControlPlane::start_secure(&config, &[]).await.unwrap();
        let web_app = TestApp::http("web");
        let web = meshed_proxy(&cp, root.path(), "web", &web_app).await;
        let mut orders = Vec::new();
        let mut apps = Vec::new();
        for i in 0..n {
            let app = TestApp::http(&format!("orders-{i}"));
            orders.push(meshed_proxy(&cp, root.path(), "orders", &app).await);
            apps.push(app);
        }
        wait_config(
            &web,
            Duration::from_secs(10),
            "every orders endpoint",
            |d| endpoint_count(d, "orders") == n,
        )
        .await;
        SecureOrders {
            root,
            _cp: cp,
            web,
            _orders: orders,
            apps,
            _web_app: web_app,
        }
    }

    /// Puts `body` in force as orders' TrafficPolicy and waits until web's
    /// proxy has `check` true of the cluster's circuit breakers.
    async fn policy(&self, body: &str, check: impl Fn(&serde_json::Value) -> bool) {
        let config = config_dir(self.root.path());
        write_config(&config, "policy.yaml", &traffic_policy("orders", body));
        wait_config(&self.web, Duration::from_secs(10), body, |d| {
            check(&breakers(d, "orders"))
        })
        .await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_mtls_requests_wait_in_a_bounded_line_and_the_rest_are_refused() {
    let m = SecureOrders::start(1).await;
    m.policy(
        "  connectionLimits: {maxRequests: 5, maxPendingRequests: 5}\n",
        |b| b["max_pending_requests"] == 5,
    )
    .await;
    let app = &m.apps[0];
    app.set_delay(Duration::from_millis(1500));

    // Five in progress, five in line (served once the first five are done),
    // forty refused.
    let answers = burst(m.web.outbound, "orders", 50).await;
    assert_refused(
        &answers,
        10,
        "max_pending_requests",
        "overflow: orders.default: maxPendingRequests (5) reached",
    );
    assert_eq!(app.requests(), 10);
    let stats = cluster_stats(&m.web, "orders").await;
    assert_eq!(stats["overflow_max_pending_requests"], 40, "{stats:#}");
    assert_eq!(
        overflow_metric(&m.web, "orders", "max_pending_requests").await,
        40.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_mtls_max_connections_keeps_the_caller_on_that_many_endpoints() {
    let m = SecureOrders::start(3).await;
    // One shared HTTP/2 connection per endpoint: the cluster keeps one endpoint.
    m.policy("  connectionLimits: {maxConnections: 1}\n", |b| {
        b["max_connections"] == 1
    })
    .await;
    wait_config(&m.web, Duration::from_secs(10), "a subset of one", |d| {
        endpoint_count(d, "orders") == 1
    })
    .await;
    let answers = burst(m.web.outbound, "orders", 60).await;
    assert!(answers.iter().all(|a| a.status == 200), "{answers:#?}");
    let used: Vec<u64> = m.apps.iter().map(TestApp::requests).collect();
    assert_eq!(used.iter().sum::<u64>(), 60);
    assert_eq!(
        used.iter().filter(|n| **n > 0).count(),
        1,
        "one endpoint, one connection: {used:?}"
    );
}

/// web (no certificate) calling Services with static endpoints outside the
/// mesh; `docs` are the Services and policies besides web.
struct Plain {
    root: tempfile::TempDir,
    _cp: ControlPlane,
    web: Proxy,
    _web_app: TestApp,
}

impl Plain {
    async fn start(docs: &[String]) -> Plain {
        let root = tempfile::tempdir().unwrap();
        let config = config_dir(root.path());
        let mut all = vec![service("web", 80, "http")];
        all.extend(docs.iter().cloned());
        write_config(&config, "services.yaml", &all.join("---\n"));
        let cp = checked_control_plane(&config).await;
        let web_app = TestApp::http("web");
        let web = Proxy::start(ProxySpec::new("web", cp.xds_addr, web_app.addr))
            .await
            .unwrap();
        web.wait_ready(Duration::from_secs(10)).await.unwrap();
        Plain {
            root,
            _cp: cp,
            web,
            _web_app: web_app,
        }
    }

    fn config(&self) -> PathBuf {
        config_dir(self.root.path())
    }
}

/// A Service outside the mesh, served by `addrs` on port 80.
fn static_service(name: &str, app_protocol: &str, addrs: &[SocketAddr]) -> String {
    let endpoints: Vec<String> = addrs
        .iter()
        .map(|a| format!("{{address: 127.0.0.1, port: {}}}", a.port()))
        .collect();
    format!(
        "apiVersion: v1\nkind: Service\nmetadata: {{name: {name}, namespace: default}}\n\
         spec:\n  ports: [{{port: 80, appProtocol: {app_protocol}}}]\n  endpoints: [{}]\n",
        endpoints.join(", ")
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plain_http1_server_gets_at_most_max_connections_and_a_line_waits_for_them() {
    let app = TestApp::http("legacy");
    app.set_delay(Duration::from_millis(1500));
    let m = Plain::start(&[static_service("legacy", "http", &[app.addr])]).await;
    let policy = |body: &str| {
        write_config(&m.config(), "policy.yaml", &traffic_policy("legacy", body));
    };
    policy("  connectionLimits: {maxConnections: 3}\n");
    wait_config(&m.web, Duration::from_secs(10), "legacy's limit", |d| {
        endpoint_count(d, "legacy") == 1 && breakers(d, "legacy")["max_connections"] == 3
    })
    .await;

    // Each request holds one of the three connections; no line: the rest are
    // refused at once.
    let answers = burst(m.web.outbound, "legacy", 20).await;
    assert_refused(
        &answers,
        3,
        "max_connections",
        "overflow: legacy.default: maxConnections (3) reached",
    );
    assert_eq!(app.requests(), 3);
    assert_eq!(
        cluster_stats(&m.web, "legacy").await["overflow_max_connections"],
        17
    );
    assert_eq!(
        overflow_metric(&m.web, "legacy", "max_connections").await,
        17.0
    );

    // With a line of three: three more wait for a connection and are served.
    policy("  connectionLimits: {maxConnections: 3, maxPendingRequests: 3}\n");
    wait_config(&m.web, Duration::from_secs(10), "legacy's line", |d| {
        breakers(d, "legacy")["max_pending_requests"] == 3
    })
    .await;
    let answers = burst(m.web.outbound, "legacy", 20).await;
    assert_refused(
        &answers,
        6,
        "max_pending_requests",
        "overflow: legacy.default: maxPendingRequests (3) reached",
    );
    assert_eq!(app.requests(), 3 + 6);
    assert_eq!(
        overflow_metric(&m.web, "legacy", "max_pending_requests").await,
        14.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_h2c_cluster_holds_no_more_connections_than_max_connections() {
    let apps: Vec<TestApp> = (0..3)
        .map(|i| TestApp::grpc(&format!("echo-{i}")))
        .collect();
    let addrs: Vec<SocketAddr> = apps.iter().map(|a| a.addr).collect();
    let m = Plain::start(&[static_service("echo", "grpc", &addrs)]).await;
    wait_config(
        &m.web,
        Duration::from_secs(10),
        "echo's three endpoints",
        |d| endpoint_count(d, "echo") == 3,
    )
    .await;
    write_config(
        &m.config(),
        "policy.yaml",
        &traffic_policy("echo", "  connectionLimits: {maxConnections: 1}\n"),
    );
    wait_config(&m.web, Duration::from_secs(10), "a subset of one", |d| {
        breakers(d, "echo")["max_connections"] == 1 && endpoint_count(d, "echo") == 1
    })
    .await;

    echo_calls_succeed(m.web.outbound, "echo", 30).await;
    let used: Vec<u64> = apps.iter().map(TestApp::requests).collect();
    assert_eq!(
        used.iter().filter(|n| **n > 0).count(),
        1,
        "one endpoint, one connection: {used:?}"
    );
}

/// Writes "ping" and reads it back within 5 s: whether `c` is carried.
async fn echoes(c: &mut TcpStream) -> bool {
    if c.write_all(b"ping").await.is_err() {
        return false;
    }
    let mut buf = [0u8; 4];
    let read = tokio::time::timeout(Duration::from_secs(5), c.read_exact(&mut buf)).await;
    matches!(read, Ok(Ok(_))) && &buf == b"ping"
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn opaque_tcp_connections_over_max_connections_are_refused() {
    // An echo server that counts the connections it gets.
    let server = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let server_addr = server.local_addr().unwrap();
    let accepted = Arc::new(AtomicUsize::new(0));
    let counted = accepted.clone();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = server.accept().await {
            counted.fetch_add(1, SeqCst);
            tokio::spawn(async move {
                let mut buf = [0u8; 64];
                while let Ok(n) = s.read(&mut buf).await {
                    if n == 0 || s.write_all(&buf[..n]).await.is_err() {
                        break;
                    }
                }
            });
        }
    });
    let root = tempfile::tempdir().unwrap();
    let config = config_dir(root.path());
    let docs = [
        service("web", 80, "http"),
        service("counter", 7000, "tcp"),
        traffic_policy("counter", "  connectionLimits: {maxConnections: 2}\n"),
    ];
    write_config(&config, "services.yaml", &docs.join("---\n"));
    let cp = ControlPlane::start_secure(&config, &[]).await.unwrap();
    let web_app = TestApp::http("web");
    let token = |service: &str| {
        let path = root.path().join(format!("{service}.token"));
        std::fs::write(&path, mint_token(&cp.data_dir(), "default", service)).unwrap();
        path
    };
    let server_proxy = Proxy::start(
        ProxySpec::new("counter", cp.xds_addr, web_app.addr)
            .token_file(&token("counter"))
            .extra(&format!("app_ports: {{7000: \"{server_addr}\"}}\n")),
    )
    .await
    .unwrap();
    server_proxy
        .wait_ready(Duration::from_secs(10))
        .await
        .unwrap();
    let web = Proxy::start(
        ProxySpec::new("web", cp.xds_addr, web_app.addr)
            .token_file(&token("web"))
            .extra("upstreams: [{service: counter, port: 7000, listen: \"127.0.0.1:0\"}]\n"),
    )
    .await
    .unwrap();
    web.wait_ready(Duration::from_secs(10)).await.unwrap();
    wait_config(
        &web,
        Duration::from_secs(10),
        "counter's endpoint and limit",
        |d| endpoint_count(d, "counter") == 1 && breakers(d, "counter")["max_connections"] == 2,
    )
    .await;
    let upstream = web.upstreams[0];

    // Two connections are carried and stay open.
    let mut held = Vec::new();
    for i in 0..2 {
        let mut c = TcpStream::connect(upstream).await.unwrap();
        assert!(echoes(&mut c).await, "connection {i} is carried");
        held.push(c);
    }
    // Three more are over the limit: closed, never reaching the server.
    for i in 2..5 {
        let mut c = TcpStream::connect(upstream).await.unwrap();
        assert!(!echoes(&mut c).await, "connection {i} is over the limit");
    }
    assert_eq!(accepted.load(SeqCst), 2);
    let stats = cluster_stats(&web, "counter").await;
    assert_eq!(stats["overflow_max_connections"], 3, "{stats:#}");
    assert_eq!(
        overflow_metric(&web, "counter", "max_connections").await,
        3.0
    );

    // One ends: its place is free for the next.
    drop(held.pop());
    let back = wait_for(Duration::from_secs(10), || async {
        match TcpStream::connect(upstream).await {
            Ok(mut c) => echoes(&mut c).await,
            Err(_) => false,
        }
    })
    .await;
    assert!(back.is_ok(), "a connection ended, yet none is carried");
}
