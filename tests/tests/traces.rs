//! Traces: one request through three services (web -> orders -> payments) keeps
//! one trace id and one request id on every hop, and each proxy hop sends one
//! span over OTLP/gRPC to the collector, linked to the hop before it. The
//! caller's sampling decision holds, and B3 context is continued.

mod support;

use std::time::Duration;

use remora_tests::app::TestApp;
use remora_tests::harness::{http, wait_for, OtlpReceiver, Proxy, ProxySpec, ReceivedSpan};
use support::*;

struct Chain {
    web: Proxy,
    orders: Proxy,
    payments: Proxy,
    collector: OtlpReceiver,
    _apps: Vec<TestApp>,
    _cp: remora_tests::harness::ControlPlane,
    _root: tempfile::TempDir,
}

async fn chain() -> Chain {
    let (root, cp) = control_plane_with(
        &[
            ("web", 80, "http"),
            ("orders", 80, "http"),
            ("payments", 80, "http"),
        ],
        &[],
    )
    .await;
    let collector = OtlpReceiver::start().await.unwrap();
    // Every new trace is sampled, so the first request is recorded without a
    // decision from the client.
    let tracing = format!(
        "tracing:\n  collector: {}\n  sample_rate: 1.0\n",
        collector.url()
    );
    let apps = vec![
        TestApp::http("web"),
        TestApp::http("orders"),
        TestApp::http("payments"),
    ];
    let start = |service: &str, app: &TestApp| {
        Proxy::start(ProxySpec::new(service, cp.xds_addr, app.addr).extra(&tracing))
    };
    let web = start("web", &apps[0]).await.unwrap();
    let orders = start("orders", &apps[1]).await.unwrap();
    let payments = start("payments", &apps[2]).await.unwrap();
    apps[0].set_next(web.outbound, "orders");
    apps[1].set_next(orders.outbound, "payments");
    for (proxy, next) in [(&web, "orders"), (&orders, "payments")] {
        wait_config(proxy, Duration::from_secs(10), next, |d| {
            endpoint_count(d, next) == 1
        })
        .await;
    }
    Chain {
        web,
        orders,
        payments,
        collector,
        _apps: apps,
        _cp: cp,
        _root: root,
    }
}

impl Chain {
    /// Sends a request into web (as a client outside the mesh would) with these
    /// headers; it must go through all three services.
    async fn send(&self, headers: &[(&str, &str)]) -> http::HttpReply {
        let mut request = hyper::Request::get("/checkout").header("host", "web");
        for (k, v) in headers {
            request = request.header(*k, *v);
        }
        let reply = http::send(self.web.inbound, request.body(Default::default()).unwrap())
            .await
            .unwrap();
        assert_eq!(reply.status, 200, "{reply:?}");
        assert_eq!(reply.header("x-next-status"), Some("200"), "{reply:?}");
        reply
    }

    /// The five spans of a trace, once all have arrived.
    async fn trace(&self, trace_id: &str) -> Vec<ReceivedSpan> {
        let of_trace = || {
            self.collector
                .spans()
                .into_iter()
                .filter(|s| s.trace_id() == trace_id)
                .collect::<Vec<_>>()
        };
        let arrived = wait_for(Duration::from_secs(10), || async { of_trace().len() >= 5 }).await;
        assert!(
            arrived.is_ok(),
            "spans of {trace_id}: {:#?}\nall: {:#?}\nweb logs:\n{}",
            of_trace(),
            self.collector.spans(),
            self.web.logs()
        );
        of_trace()
    }
}

/// The span of `service` on `side` (SERVER: inbound, CLIENT: outbound).
fn span<'a>(spans: &'a [ReceivedSpan], service: &str, direction: &str) -> &'a ReceivedSpan {
    let found: Vec<_> = spans
        .iter()
        .filter(|s| {
            s.service == service && s.attribute("remora.direction").as_deref() == Some(direction)
        })
        .collect();
    assert_eq!(found.len(), 1, "{service} {direction}: {spans:#?}");
    found[0]
}

/// Checks the five hops link up: web in -> web out -> orders in -> orders out ->
/// payments in, each the parent of the next, all with one request id.
fn assert_linked(spans: &[ReceivedSpan], root_parent: &str) {
    use remora_proto::otlp::trace::v1::span::SpanKind;
    assert_eq!(spans.len(), 5, "one span per hop: {spans:#?}");
    let hops = [
        span(spans, "web", "inbound"),
        span(spans, "web", "outbound"),
        span(spans, "orders", "inbound"),
        span(spans, "orders", "outbound"),
        span(spans, "payments", "inbound"),
    ];
    assert_eq!(hops[0].parent_span_id(), root_parent, "{:#?}", hops[0]);
    for pair in hops.windows(2) {
        assert_eq!(
            pair[1].parent_span_id(),
            pair[0].span_id(),
            "{:#?} should be the child of {:#?}",
            pair[1],
            pair[0]
        );
    }
    let request_id = hops[0].attribute("remora.request_id").unwrap();
    assert_eq!(request_id.len(), 36, "made at the edge");
    for (i, hop) in hops.iter().enumerate() {
        assert_eq!(hop.attribute("remora.request_id"), Some(request_id.clone()));
        assert_eq!(
            hop.attribute("http.response.status_code").as_deref(),
            Some("200")
        );
        let kind = if i % 2 == 0 {
            SpanKind::Server
        } else {
            SpanKind::Client
        };
        assert_eq!(hop.span.kind, kind as i32, "{hop:#?}");
        assert!(hop.span.end_time_unix_nano >= hop.span.start_time_unix_nano);
    }
    for client in [hops[1], hops[3]] {
        assert!(client.attribute("remora.route").is_some(), "{client:#?}");
        assert!(client.attribute("remora.backend").is_some(), "{client:#?}");
        assert_eq!(client.attribute("remora.retries").as_deref(), Some("0"));
    }
}

fn access_log_trace_ids(proxy: &Proxy) -> Vec<String> {
    proxy
        .logs()
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter_map(|l| l["trace_id"].as_str().map(str::to_owned))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_request_through_three_services_is_one_linked_trace() {
    let c = chain().await;

    // A new trace: web's inbound proxy starts it.
    let reply = c.send(&[]).await;
    let traceparent = reply.header("x-seen-traceparent").unwrap().to_owned();
    let trace_id = traceparent.split('-').nth(1).unwrap().to_owned();
    let spans = c.trace(&trace_id).await;
    assert_linked(&spans, "");
    assert!(
        traceparent.ends_with(&format!("{}-01", span(&spans, "web", "inbound").span_id())),
        "the app sees its proxy's span as the parent: {traceparent}"
    );
    let logged = wait_for(Duration::from_secs(5), || async {
        access_log_trace_ids(&c.payments).contains(&trace_id)
    })
    .await;
    assert!(logged.is_ok(), "{}", c.payments.logs());

    // The client's W3C context, not sampled: continued, but no spans.
    let unsampled = "0af7651916cd43dd8448eb211c80319c";
    c.send(&[(
        "traceparent",
        &format!("00-{unsampled}-b7ad6b7169203331-00"),
    )])
    .await;

    // B3 from the client, sampled: the trace and the parent are the client's.
    let b3_trace = "463ac35c9f6413ad48485a3953bb6124";
    c.send(&[
        ("x-b3-traceid", b3_trace),
        ("x-b3-spanid", "a2fb4a1d1a96d312"),
        ("x-b3-sampled", "1"),
    ])
    .await;
    let spans = c.trace(b3_trace).await;
    assert_linked(&spans, "a2fb4a1d1a96d312");

    // By now the unsampled request's hops are all logged, with its trace id, and
    // sent no span.
    for proxy in [&c.web, &c.orders, &c.payments] {
        let logged = wait_for(Duration::from_secs(5), || async {
            access_log_trace_ids(proxy).contains(&unsampled.to_owned())
        })
        .await;
        assert!(logged.is_ok(), "{}", proxy.logs());
    }
    assert!(
        c.collector
            .spans()
            .iter()
            .all(|s| s.trace_id() != unsampled),
        "an unsampled trace sent spans"
    );
    // The collector answers after it keeps the spans: wait for web to count them.
    let counted = wait_for(Duration::from_secs(5), || async {
        http::get(c.web.admin, "/metrics").await.is_ok_and(|m| {
            String::from_utf8_lossy(&m.body).contains("remora_trace_spans_exported_total 4")
        })
    })
    .await;
    assert!(counted.is_ok(), "web sent two spans for each sampled trace");
}

/// A proxy asked to stop sends the spans it still holds and writes the access
/// log lines it still holds before it exits: a request answered just before the
/// shutdown is neither untraced nor unlogged.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spans_and_log_lines_held_at_shutdown_are_not_lost() {
    let (root, cp) = control_plane_with(&[("web", 80, "http")], &[]).await;
    let collector = OtlpReceiver::start().await.unwrap();
    let log = root.path().join("access.log");
    let app = TestApp::http("web");
    // The exporter sends every second, so without the flush at shutdown the
    // span would still be queued when the process ends.
    let extra = format!(
        "access_log: {}\ntracing:\n  collector: {}\n  sample_rate: 1.0\n",
        serde_json::Value::from(log.to_string_lossy().into_owned()),
        collector.url()
    );
    let mut web = Proxy::start(ProxySpec::new("web", cp.xds_addr, app.addr).extra(&extra))
        .await
        .unwrap();
    let request = hyper::Request::get("/last")
        .header("host", "web")
        .body(Default::default())
        .unwrap();
    let reply = http::send(web.inbound, request).await.unwrap();
    assert_eq!(reply.status, 200);
    let request_id = reply.header("x-seen-request-id").unwrap().to_owned();
    let asked = web.admin_post("/shutdown").await.unwrap();
    assert_eq!(asked.status, 200, "{asked:?}");
    let exited = wait_for(Duration::from_secs(15), || {
        let exited = web.exit_status().is_some();
        async move { exited }
    })
    .await;
    assert!(exited.is_ok(), "the proxy did not stop:\n{}", web.logs());

    let spans = collector.spans();
    assert!(
        spans
            .iter()
            .any(|s| s.attribute("remora.request_id").as_deref() == Some(&request_id)),
        "the last request's span was lost: {spans:#?}\n{}",
        web.logs()
    );
    let lines = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(
        lines.contains(&request_id),
        "the last request's log line was lost:\n{lines}"
    );
}
