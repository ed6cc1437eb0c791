//! A real Prometheus server (Debian's) scrapes two busy proxies every second.
//! For a known load its `sum(rate(...))` of the hop matches the load generator's
//! own rate within 5%, and its error counts equal the failures the app injected,
//! exactly, on both sides of the hop.

mod support;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use remora_tests::app::TestApp;
use remora_tests::harness::{wait_for, PrometheusServer};
use remora_tests::load::{Load, LoadSpec};
use support::*;

const HOP: &str = "direction=\"outbound\",source_service=\"web\",destination_service=\"orders\"";
const INBOUND: &str = "direction=\"inbound\",destination_service=\"orders\"";

fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_sees_the_rate_and_the_exact_errors_of_a_known_load() {
    let app = TestApp::http("orders");
    // One request in ten fails, evenly spread.
    app.set_failures(10.0, 503, tonic::Code::Unavailable);
    let m = WebOrders::start(vec![app], &[]).await;
    let prometheus = PrometheusServer::start(&[m.web.admin, m.orders[0].admin])
        .await
        .unwrap();

    let load_started = unix_now();
    let report = Load::start(
        LoadSpec::rate(m.web.outbound, "orders", 200.0)
            .connections(4)
            .duration(Duration::from_secs(14)),
    )
    .wait()
    .await;

    // The rate over 8 s ending 12 s into the load, against the completions the
    // load generator counted in that same span.
    let (from, to) = (4.0, 12.0);
    let rate = prometheus
        .value(
            &format!("sum(rate(remora_requests_total{{{HOP}}}[8s]))"),
            Some(load_started + to),
        )
        .await
        .unwrap();
    let completed = report
        .samples
        .iter()
        .filter(|s| (from..to).contains(&s.at.as_secs_f64()))
        .count();
    let generated = completed as f64 / (to - from);
    assert!(
        (rate - generated).abs() <= generated * 0.05,
        "Prometheus: {rate:.1} req/s; the load generator: {generated:.1} req/s"
    );

    // Once the last scrape after the load is in, every request is counted, and
    // the errors are exactly the injected failures.
    let total = report.total as f64;
    let caught_up = wait_for(Duration::from_secs(10), || async {
        for side in [HOP, INBOUND] {
            let seen = prometheus
                .value(&format!("sum(remora_requests_total{{{side}}})"), None)
                .await;
            if !seen.is_ok_and(|v| v == total) {
                return false;
            }
        }
        true
    })
    .await;
    assert!(
        caught_up.is_ok(),
        "Prometheus never saw all {total} requests:\n{}",
        prometheus.logs()
    );
    let failed = report.samples.iter().filter(|s| s.status == 503).count() as f64;
    let injected = (m.apps[0].requests() / 10) as f64;
    assert_eq!(failed, injected, "the load saw every injected failure");
    for side in [HOP, INBOUND] {
        let errors = prometheus
            .value(
                &format!("sum(remora_requests_total{{{side},status_code=\"503\"}})"),
                None,
            )
            .await
            .unwrap();
        assert_eq!(errors, injected, "503s on {side}");
        let errors = prometheus
            .value(
                &format!("sum(remora_requests_total{{{side},status_code=~\"5..\"}})"),
                None,
            )
            .await
            .unwrap();
        assert_eq!(errors, injected, "no other 5xx on {side}");
    }
}
