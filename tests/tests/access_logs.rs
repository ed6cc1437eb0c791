//! Access logs: one JSON line per request on each hop, with the request id, the
//! route, backend and endpoint, the status, the bytes and the flags that say what
//! the mesh did (here: retried, rate limited).

mod support;

use std::time::Duration;

use remora_tests::app::TestApp;
use remora_tests::harness::{http, wait_for, Proxy};
use support::*;

fn lines(proxy: &Proxy) -> Vec<serde_json::Value> {
    proxy
        .logs()
        .lines()
        .filter(|l| l.starts_with('{'))
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_request_gets_a_json_line_with_ids_and_flags() {
    let app = TestApp::http("orders");
    app.set_failures(50.0, 503, tonic::Code::Unavailable);
    let policy =
        "  retry: {on: [5xx], attempts: 2, backoff: {base: 1ms}, budget: {percent: 100}}\n  \
                  rateLimit: {outbound: {requestsPerSecond: 1, burst: 2}}\n";
    let m = WebOrders::start(
        vec![app],
        &[("policy.yaml", traffic_policy("orders", policy))],
    )
    .await;
    let mut statuses = Vec::new();
    for _ in 0..4 {
        statuses.push(
            http::get_with_host(m.web.outbound, "orders", "/orders/7")
                .await
                .unwrap()
                .status,
        );
    }
    assert_eq!(
        statuses.iter().filter(|s| **s == 429).count(),
        2,
        "{statuses:?}"
    );

    let written = wait_for(Duration::from_secs(5), || async {
        lines(&m.web).len() >= 4
    })
    .await;
    assert!(written.is_ok(), "{}", m.web.logs());
    let outbound = lines(&m.web);
    let ok: Vec<_> = outbound.iter().filter(|l| l["status"] == 200).collect();
    assert_eq!(ok.len(), 2, "{outbound:#?}");
    for line in &ok {
        assert_eq!(line["direction"], "outbound");
        assert_eq!(line["method"], "GET");
        assert_eq!(line["path"], "/orders/7");
        assert_eq!(
            line["backend"],
            "outbound|80||orders.default.svc.cluster.local"
        );
        assert!(line["route"].as_str().is_some_and(|r| !r.is_empty()));
        assert!(line["endpoint"]
            .as_str()
            .is_some_and(|e| e.starts_with("127.0.0.1:")));
        assert_eq!(line["request_id"].as_str().map(str::len), Some(36));
        assert!(line["bytes_sent"].as_u64() > Some(0));
        assert!(line["duration_ms"].as_f64() >= line["upstream_ms"].as_f64());
    }
    // Every other request to orders fails once: the successes were retried.
    assert!(
        ok.iter()
            .any(|l| l["flags"]["retried"] == true && l["retries"] == 1),
        "{ok:#?}"
    );
    let limited: Vec<_> = outbound.iter().filter(|l| l["status"] == 429).collect();
    assert!(
        limited.iter().all(|l| l["flags"]["rate_limited"] == true),
        "{limited:#?}"
    );

    // The inbound side logs the same request ids. Its lines are written as each
    // request ends, so wait for all of them rather than for the first.
    let inbound_ids = || {
        lines(&m.orders[0])
            .iter()
            .map(|l| l["request_id"].clone())
            .collect::<Vec<_>>()
    };
    let inbound = wait_for(Duration::from_secs(5), || {
        let ids = inbound_ids();
        let all = ok.iter().all(|l| ids.contains(&l["request_id"]));
        async move { all }
    })
    .await;
    assert!(inbound.is_ok(), "{:?}", inbound_ids());
}
