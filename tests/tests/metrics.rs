//! `/metrics` of busy proxies: Prometheus' own `promtool` accepts it, and the
//! per-hop counts match what the load generator saw.

mod support;

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;

use remora_tests::app::TestApp;
use remora_tests::load::{Load, LoadSpec};
use support::*;

fn promtool_check(text: &str) -> String {
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool (Debian's prometheus package; scripts/test installs it)");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool refused the metrics:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The value of the series whose line starts with `prefix` and contains every
/// one of `labels`, summed.
fn value(text: &str, prefix: &str, labels: &[&str]) -> f64 {
    text.lines()
        .filter(|l| l.starts_with(prefix) && labels.iter().all(|x| l.contains(x)))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn busy_proxies_expose_promtool_clean_per_hop_metrics() {
    let app = TestApp::http("orders");
    app.set_failures(10.0, 503, tonic::Code::Unavailable);
    let m = WebOrders::start(vec![app], &[]).await;
    let report = Load::start(
        LoadSpec::rate(m.web.outbound, "orders", 200.0)
            .connections(4)
            .duration(Duration::from_secs(3)),
    )
    .wait()
    .await;
    let failed = report.samples.iter().filter(|s| s.status == 503).count() as f64;
    let ok = report.samples.iter().filter(|s| s.status == 200).count() as f64;
    assert_eq!(failed + ok, report.total as f64);

    for proxy in [&m.web, &m.orders[0]] {
        let reply = proxy.admin_get("/metrics").await.unwrap();
        assert_eq!(reply.status, 200);
        assert!(reply
            .header("content-type")
            .unwrap()
            .starts_with("text/plain; version=0.0.4"));
        promtool_check(&reply.text());
    }

    let web = m.web.admin_get("/metrics").await.unwrap().text();
    let hop = [
        "direction=\"outbound\"",
        "source_service=\"web\"",
        "destination_service=\"orders\"",
        "backend=\"outbound|80||orders.default.svc.cluster.local\"",
    ];
    let with = |extra: &'static str| hop.iter().copied().chain([extra]).collect::<Vec<_>>();
    assert_eq!(
        value(&web, "remora_requests_total{", &with("status_code=\"200\"")),
        ok,
        "{web}"
    );
    assert_eq!(
        value(&web, "remora_requests_total{", &with("status_code=\"503\"")),
        failed
    );
    assert_eq!(
        value(&web, "remora_request_duration_seconds_count{", &hop),
        report.total as f64
    );
    assert!(
        value(
            &web,
            "remora_proxy_overhead_seconds_count{",
            &["direction=\"outbound\""]
        ) >= report.total as f64
    );
    // Sub-millisecond buckets exist for the proxy's own time.
    assert!(web.lines().any(|l| l
        .starts_with("remora_proxy_overhead_seconds_bucket{direction=\"outbound\",")
        && l.contains("le=\"0.0001\"")));
    assert!(web.contains(
        "remora_xds_config_info{type_url=\"type.googleapis.com/envoy.config.cluster.v3.Cluster\""
    ));

    // TCP: the load's four connections were accepted by web's outbound listener,
    // which reached orders' proxy over one HTTP/2 connection; every request and
    // answer crossed both (at least its request line or status line did).
    let tcp = |text: &str, family: &str, direction: &str, peer: &str| {
        let labels = format!("{{direction=\"{direction}\",peer=\"{peer}\"}}");
        value(text, &format!("remora_tcp_{family}{labels}"), &[])
    };
    assert!(
        tcp(&web, "connections_opened_total", "outbound", "src") >= 4.0,
        "{web}"
    );
    assert_eq!(
        tcp(&web, "connections_opened_total", "outbound", "dst"),
        1.0,
        "{web}"
    );
    assert_eq!(
        tcp(&web, "connections_open", "outbound", "dst"),
        1.0,
        "{web}"
    );
    let requests = report.total as f64;
    assert!(tcp(&web, "read_bytes_total", "outbound", "src") >= requests * 16.0);
    assert!(tcp(&web, "write_bytes_total", "outbound", "src") >= requests * 17.0);
    assert!(tcp(&web, "write_bytes_total", "outbound", "dst") > 0.0);

    let orders = m.orders[0].admin_get("/metrics").await.unwrap().text();
    assert!(
        tcp(&orders, "connections_opened_total", "inbound", "src") >= 1.0,
        "{orders}"
    );
    assert!(
        tcp(&orders, "connections_opened_total", "inbound", "dst") >= 1.0,
        "{orders}"
    );
    // What web wrote to orders is what orders read (within a late flow-control
    // frame or two).
    let (wrote, read) = (
        tcp(&web, "write_bytes_total", "outbound", "dst"),
        tcp(&orders, "read_bytes_total", "inbound", "src"),
    );
    assert!((wrote - read).abs() <= wrote / 100.0, "{wrote} vs {read}");
    let inbound = ["direction=\"inbound\"", "destination_service=\"orders\""];
    assert_eq!(
        value(&orders, "remora_requests_total{", &inbound),
        report.total as f64,
        "{orders}"
    );
}
