//! Load balancing, end to end, over three `orders` endpoints: P2C over peak-EWMA
//! latency steers away from a slow endpoint; round robin takes turns; consistent
//! hashing keeps a key on one endpoint and moves few keys when one is added.

mod support;

use std::collections::HashMap;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use remora_tests::app::TestApp;
use remora_tests::harness::http;
use remora_tests::load::{Load, LoadSpec};
use support::*;

async fn mesh(n: usize, policy: Option<&str>) -> WebOrders {
    let apps = (0..n)
        .map(|i| TestApp::http(&format!("orders-{i}")))
        .collect();
    let files: Vec<_> = policy
        .map(|p| ("policy.yaml", traffic_policy("orders", p)))
        .into_iter()
        .collect();
    WebOrders::start(apps, &files).await
}

async fn backend_for(m: &WebOrders, key: &str) -> String {
    let request = ::http::Request::get("/")
        .header("host", "orders")
        .header("x-user", key)
        .body(Full::new(Bytes::new()))
        .unwrap();
    let reply = http::send(m.web.outbound, request).await.unwrap();
    assert_eq!(reply.status, 200);
    reply.header("x-backend").unwrap().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peak_ewma_sends_most_traffic_away_from_a_slow_endpoint() {
    let m = mesh(3, None).await;
    m.apps[0].set_delay(Duration::from_millis(30));
    for app in &m.apps[1..] {
        app.set_delay(Duration::from_millis(3));
    }
    let report = Load::start(
        LoadSpec::rate(m.web.outbound, "orders", 100.0)
            .connections(8)
            .duration(Duration::from_secs(4)),
    )
    .wait()
    .await;
    assert_eq!(report.errors, 0);
    let slow = m.apps[0].requests() as f64 / report.total as f64;
    assert!(
        slow < 0.15,
        "the 10x slower endpoint got {:.0}% of requests",
        slow * 100.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn round_robin_takes_turns() {
    let m = mesh(3, Some("  loadBalancer: {type: RoundRobin}\n")).await;
    for _ in 0..300 {
        assert_eq!(
            http::get_with_host(m.web.outbound, "orders", "/")
                .await
                .unwrap()
                .status,
            200
        );
    }
    let counts: Vec<u64> = m.apps.iter().map(TestApp::requests).collect();
    assert_eq!(counts, [100, 100, 100]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consistent_hashing_keeps_keys_in_place() {
    let mut m = mesh(
        3,
        Some("  loadBalancer:\n    type: ConsistentHash\n    consistentHash: {header: x-user}\n"),
    )
    .await;
    let keys: Vec<String> = (0..50).map(|k| format!("user-{k}")).collect();
    let mut placed = HashMap::new();
    // 1000 requests: every key always on the same endpoint.
    for round in 0..20 {
        for key in &keys {
            let backend = backend_for(&m, key).await;
            let first = placed.entry(key.clone()).or_insert_with(|| backend.clone());
            assert_eq!(*first, backend, "{key} moved in round {round}");
        }
    }
    let spread: std::collections::HashSet<_> = placed.values().collect();
    assert_eq!(spread.len(), 3, "keys are spread over every endpoint");

    m.add(TestApp::http("orders-3")).await;
    let mut moved = 0;
    for key in &keys {
        let backend = backend_for(&m, key).await;
        if backend != placed[key] {
            assert_eq!(
                backend, "orders-3",
                "{key} may only move to the new endpoint"
            );
            moved += 1;
        }
    }
    assert!(
        moved <= 20,
        "{moved} of 50 keys moved (a quarter is the ideal)"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hash_cookie_is_set_once_and_then_sticks() {
    let m = mesh(
        3,
        Some("  loadBalancer:\n    type: ConsistentHash\n    consistentHash: {cookie: {name: session, ttl: 1h}}\n"),
    )
    .await;
    let first = http::get_with_host(m.web.outbound, "orders", "/")
        .await
        .unwrap();
    let cookie = first
        .header("set-cookie")
        .expect("a new session cookie")
        .to_owned();
    assert!(
        cookie.starts_with("session=") && cookie.contains("Max-Age=3600"),
        "{cookie}"
    );
    let pair = cookie.split(';').next().unwrap().to_owned();
    let backend = first.header("x-backend").unwrap().to_owned();
    for _ in 0..50 {
        let request = ::http::Request::get("/")
            .header("host", "orders")
            .header("cookie", &pair)
            .body(Full::new(Bytes::new()))
            .unwrap();
        let reply = http::send(m.web.outbound, request).await.unwrap();
        assert_eq!(reply.header("x-backend"), Some(backend.as_str()));
        assert!(reply.header("set-cookie").is_none(), "set only once");
    }
}
