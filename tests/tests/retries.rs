//! Retries and the retry budget, end to end, against a test upstream that fails on
//! purpose: retries turn most failures into successes, replay small bodies intact,
//! never replay large ones, and can never add more than the budget allows.

mod support;

use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use remora_tests::app::TestApp;
use remora_tests::harness::http;
use remora_tests::load::{Load, LoadSpec};
use support::*;

/// An HTTPRoute on `orders` (to itself) whose one rule carries `extra` (YAML at
/// the rule's indentation, e.g. `retry: {codes: [503]}`).
pub fn orders_route(extra: &str) -> String {
    format!(
        "apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\n\
         metadata: {{name: orders, namespace: default}}\n\
         spec:\n  parentRefs: [{{kind: Service, name: orders}}]\n\
         \x20 rules:\n  - backendRefs: [{{name: orders, port: 80}}]\n    {extra}\n"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_retries_turn_30_percent_failures_into_99_percent_success() {
    let app = TestApp::http("orders");
    app.set_failures(30.0, 503, tonic::Code::Unavailable);
    let m = WebOrders::start(
        vec![app],
        &[
            (
                "route.yaml",
                orders_route("retry: {codes: [503], attempts: 2, backoff: 5ms}"),
            ),
            // Room for the retries 30% failures need (about 43% of requests).
            (
                "policy.yaml",
                traffic_policy(
                    "orders",
                    "  retry:\n    budget: {percent: 60, minRetriesPerSecond: 10}\n",
                ),
            ),
        ],
    )
    .await;
    // One connection: the app fails 3 of every 10 requests it sees, evenly, so
    // a retry succeeds when it is the app's next request. With several
    // connections interleaving on a loaded machine, a retry could land on the
    // next failing slot (28 of 1000 failed once in a full-suite run).
    let load = Load::start(
        LoadSpec::rate(m.web.outbound, "orders", 200.0)
            .connections(1)
            .duration(Duration::from_secs(5)),
    );
    let report = load.wait().await;
    let success = 1.0 - report.errors as f64 / report.total as f64;
    let stats = m.orders_stats().await;
    assert!(
        success >= 0.99,
        "{} of {} failed; stats {stats:#}",
        report.errors,
        report.total
    );
    assert!(
        stats["retries"].as_u64() > Some(report.total as u64 / 5),
        "{stats:#}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_budget_caps_retries_when_everything_fails() {
    let app = TestApp::http("orders");
    app.set_failures(100.0, 503, tonic::Code::Unavailable);
    let m = WebOrders::start(
        vec![app],
        &[(
            "policy.yaml",
            traffic_policy(
                "orders",
                "  retry:\n    on: [5xx]\n    attempts: 3\n    backoff: {base: 1ms}\n    \
                 budget: {percent: 20, minRetriesPerSecond: 1}\n",
            ),
        )],
    )
    .await;
    // All within one 10 s window: retries <= 20% of requests + 1/s x 10 s.
    let load = Load::start(
        LoadSpec::rate(m.web.outbound, "orders", 100.0)
            .connections(4)
            .duration(Duration::from_secs(9)),
    );
    let report = load.wait().await;
    let requests = report.total as f64;
    let retries = m.apps[0].requests() as f64 - requests;
    let stats = m.orders_stats().await;
    assert_eq!(report.errors, report.total, "everything fails");
    assert!(
        retries <= 0.2 * requests + 10.0,
        "{retries} retries for {requests} requests; stats {stats:#}"
    );
    assert!(
        retries >= 0.15 * requests,
        "the budget is used: {retries} for {requests}"
    );
    assert!(
        stats["retry_budget_exhausted"].as_u64() > Some(0),
        "{stats:#}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn small_bodies_are_replayed_intact_and_large_ones_are_never_retried() {
    let app = TestApp::http("orders");
    let m = WebOrders::start(
        vec![app],
        &[(
            "route.yaml",
            orders_route("retry: {codes: [503], attempts: 2, backoff: 1ms}"),
        )],
    )
    .await;
    let post = |body: Bytes| {
        ::http::Request::post("/orders")
            .header("host", "orders")
            .body(Full::new(body))
            .unwrap()
    };

    // Every other request fails: each POST needs its retry, with the same body.
    m.apps[0].set_failures(50.0, 503, tonic::Code::Unavailable);
    for i in 0..6 {
        let body = Bytes::from(format!("order {i}: {}", "x".repeat(2000)));
        let reply = http::send(m.web.outbound, post(body.clone()))
            .await
            .unwrap();
        assert_eq!(reply.status, 200, "{}", reply.text());
        assert_eq!(reply.body, body, "the retried body arrives intact");
    }
    assert!(m.orders_stats().await["retries"].as_u64() >= Some(3));

    // Everything fails: a small body is tried 3 times, a large one once.
    m.apps[0].set_failures(100.0, 503, tonic::Code::Unavailable);
    let before = m.apps[0].requests();
    let reply = http::send(m.web.outbound, post(Bytes::from(vec![b'a'; 1000])))
        .await
        .unwrap();
    assert_eq!(reply.status, 503);
    assert_eq!(m.apps[0].requests() - before, 3);
    let before = m.apps[0].requests();
    let reply = http::send(m.web.outbound, post(Bytes::from(vec![b'b'; 200 * 1024])))
        .await
        .unwrap();
    assert_eq!(reply.status, 503);
    assert_eq!(
        m.apps[0].requests() - before,
        1,
        "a 200 KiB body is not replayed"
    );
    assert_eq!(m.orders_stats().await["retry_body_not_replayable"], 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_calls_are_retried_on_listed_status_codes() {
    let app = TestApp::grpc("grpc-orders");
    app.set_failures(30.0, 503, tonic::Code::Unavailable);
    let m = WebOrders::start(
        vec![app],
        &[(
            "policy.yaml",
            traffic_policy(
                "orders",
                "  retry:\n    grpcCodes: [UNAVAILABLE]\n    attempts: 2\n    \
                 backoff: {base: 1ms}\n    budget: {percent: 100, minRetriesPerSecond: 10}\n",
            ),
        )],
    )
    .await;
    echo_calls_succeed(m.web.outbound, "orders", 50).await;
    assert!(m.apps[0].requests() > 50, "the failed calls were retried");
}
