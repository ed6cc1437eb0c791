//! Fault injection and local rate limits, end to end: the share of aborted
//! requests lands where the policy says, a delay adds itself (only to requests
//! with the chaos header), and at twice the limit about half the requests get 429.

mod support;

use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::Full;
use remora_tests::app::TestApp;
use remora_tests::harness::{http, wait_for};
use remora_tests::load::{Load, LoadSpec};
use support::*;

async fn mesh(policy: &str) -> WebOrders {
    let files = [("policy.yaml", traffic_policy("orders", policy))];
    WebOrders::start(vec![TestApp::http("orders")], &files).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aborts_land_on_the_configured_share() {
    let m = mesh("  faults:\n    abort: {status: 503, percent: 10}\n").await;
    let report = Load::start(
        LoadSpec::max(m.web.outbound, "orders")
            .connections(8)
            .duration(Duration::from_secs(30)),
    );
    // Stop once 2000 requests are in.
    let _ = wait_for(Duration::from_secs(30), || async {
        report.snapshot_since(Duration::ZERO).len() >= 2000
    })
    .await;
    let report = report.stop().await;
    let samples = &report.samples[..2000.min(report.samples.len())];
    assert_eq!(samples.len(), 2000);
    let aborted = samples.iter().filter(|s| s.status == 503).count();
    let others = samples
        .iter()
        .filter(|s| s.status != 503 && s.status != 200)
        .count();
    assert_eq!(others, 0);
    assert!(
        (160..=240).contains(&aborted),
        "{aborted} of 2000 aborted (8-12% expected)"
    );
    assert_eq!(
        m.apps[0].requests(),
        report.samples.iter().filter(|s| s.status == 200).count() as u64
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delay_adds_itself_to_matching_requests_only() {
    let m = mesh(
        "  faults:\n    delay: {duration: 300ms, percent: 100}\n    headers: [{name: x-chaos, value: \"on\"}]\n",
    )
    .await;
    let request = |chaos: bool| {
        let mut r = ::http::Request::get("/").header("host", "orders");
        if chaos {
            r = r.header("x-chaos", "on");
        }
        r.body(Full::new(Bytes::new())).unwrap()
    };
    let started = Instant::now();
    assert_eq!(
        http::send(m.web.outbound, request(true))
            .await
            .unwrap()
            .status,
        200
    );
    let delayed = started.elapsed();
    let started = Instant::now();
    assert_eq!(
        http::send(m.web.outbound, request(false))
            .await
            .unwrap()
            .status,
        200
    );
    let plain = started.elapsed();
    assert!(
        delayed >= Duration::from_millis(300),
        "delayed by {delayed:?}"
    );
    assert!(
        plain < Duration::from_millis(300),
        "an unmarked request took {plain:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn at_twice_the_inbound_limit_about_half_are_refused() {
    let m = mesh("  rateLimit:\n    inbound: {requestsPerSecond: 50, burst: 10}\n").await;
    let report = Load::start(
        LoadSpec::rate(m.web.outbound, "orders", 100.0)
            .connections(4)
            .duration(Duration::from_secs(5)),
    )
    .wait()
    .await;
    let limited = report.samples.iter().filter(|s| s.status == 429).count();
    let share = limited as f64 / report.total as f64;
    assert!(
        (0.4..=0.6).contains(&share),
        "{limited} of {} got 429",
        report.total
    );
    let dump = m.orders[0].config_dump().await.unwrap();
    assert_eq!(dump["inbound"]["rate_limited"], limited, "{dump:#}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outbound_limit_refuses_before_the_request_leaves() {
    let m = mesh("  rateLimit:\n    outbound: {requestsPerSecond: 1, burst: 5}\n").await;
    let mut statuses = Vec::new();
    for _ in 0..20 {
        statuses.push(
            http::get_with_host(m.web.outbound, "orders", "/")
                .await
                .unwrap()
                .status,
        );
    }
    let ok = statuses.iter().filter(|s| **s == 200).count();
    assert!((5..=7).contains(&ok), "{statuses:?}");
    assert_eq!(statuses.iter().filter(|s| **s == 429).count(), 20 - ok);
    assert_eq!(
        m.apps[0].requests(),
        ok as u64,
        "refused requests never reach orders"
    );
}
