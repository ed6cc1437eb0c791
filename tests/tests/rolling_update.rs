//! Drain without a dropped request. A SIGTERMed proxy tells the control plane
//! it is leaving (its endpoint is withdrawn and callers get the change at once),
//! keeps serving inbound for the propagation window, then closes inbound and
//! finishes what is in flight, its outbound working to the end.
//!
//! - A rolling update of `orders` under steady load, five times in a row (start
//!   the new instance, wait until the caller has it, SIGTERM the old proxy, stop
//!   the old app once its proxy has exited, as Kubernetes does with a native
//!   sidecar): not one failed request.
//! - A slow request in flight when the proxy gets SIGTERM completes, and the
//!   app's own call through the proxy's outbound, made after inbound closed,
//!   works; HTTP/1 responses during the drain say `Connection: close`.

mod support;

use std::process::ExitStatus;
use std::time::Duration;

use remora_tests::app::TestApp;
use remora_tests::harness::{http, wait_for, wait_for_some, ControlPlane, Proxy, ProxySpec};
use remora_tests::load::{Load, LoadSpec};
use support::*;

const RATE: f64 = 100.0;
const ROUNDS: usize = 5;

/// What the drain logs, in order: the timeline an operator measures.
const TIMELINE: [&str; 5] = [
    "drain: leaving the mesh",
    "drain: leave sent to the control plane",
    "drain: propagation window over",
    "drain: inbound done",
    "drain: exit",
];

/// `kill -TERM pid`, as the kubelet stops a container.
fn sigterm(proxy: &Proxy) {
    let status = std::process::Command::new("kill")
        .args(["-TERM", &proxy.pid().to_string()])
        .status()
        .unwrap();
    assert!(status.success(), "kill -TERM {} failed", proxy.pid());
}

async fn wait_exit(proxy: &mut Proxy, timeout: Duration) -> ExitStatus {
    let exited = wait_for_some(timeout, || {
        let status = proxy.exit_status();
        async move { status }
    })
    .await;
    match exited {
        Ok(status) => status,
        Err(e) => panic!("the proxy did not exit: {e}\n{}", proxy.logs()),
    }
}

/// The drain's log lines, in order.
fn timeline(logs: &str) -> String {
    logs.lines()
        .filter(|l| l.contains("drain: "))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Each step of [`TIMELINE`] is logged, in that order.
fn assert_timeline(logs: &str) {
    let mut from = 0;
    for step in TIMELINE {
        match logs[from..].find(step) {
            Some(at) => from += at + step.len(),
            None => panic!("no `{step}` (in order) in the drain's log:\n{logs}"),
        }
    }
}

/// One version of orders: its app and its proxy, ready.
struct Instance {
    app: TestApp,
    proxy: Proxy,
}

async fn instance(cp: &ControlPlane, n: usize) -> Instance {
    let app = TestApp::http(&format!("orders-{n}"));
    let spec = ProxySpec::new("orders", cp.xds_addr, app.addr).node_id(&format!("orders-{n}"));
    let proxy = Proxy::start(spec).await.unwrap();
    proxy.wait_ready(Duration::from_secs(10)).await.unwrap();
    Instance { app, proxy }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_rolling_updates_under_load_fail_no_request() {
    let (_root, cp) = control_plane_with(&[("web", 80, "http"), ("orders", 80, "http")], &[]).await;
    let web_app = TestApp::http("web");
    let web = Proxy::start(ProxySpec::new("web", cp.xds_addr, web_app.addr))
        .await
        .unwrap();
    let mut current = instance(&cp, 0).await;
    wait_config(&web, Duration::from_secs(10), "orders' endpoint", |d| {
        endpoint_count(d, "orders") == 1
    })
    .await;

    let load = Load::start(LoadSpec::rate(web.outbound, "orders", RATE).connections(4));
    let mut first_timeline = None;
    for round in 1..=ROUNDS {
        let next = instance(&cp, round).await;
        wait_config(
            &web,
            Duration::from_secs(10),
            &format!("orders-{round} as a second endpoint"),
            |d| endpoint_count(d, "orders") == 2,
        )
        .await;
        let Instance {
            app: old_app,
            proxy: mut old,
        } = current;
        sigterm(&old);
        let status = wait_exit(&mut old, Duration::from_secs(40)).await;
        assert!(status.success(), "{status}:\n{}", old.logs());
        // The app stops only once its proxy is gone (a native sidecar outlives
        // its app on the way up and on the way down).
        drop(old_app);
        let logs = old.logs();
        assert_timeline(&logs);
        first_timeline.get_or_insert_with(|| timeline(&logs));
        wait_config(
            &web,
            Duration::from_secs(5),
            "orders' one endpoint left",
            |d| endpoint_count(d, "orders") == 1,
        )
        .await;
        current = next;
    }
    let report = load.stop().await;

    assert_no_errors(&report);
    assert!(
        report.total as f64 > RATE * ROUNDS as f64,
        "only {} requests were sent",
        report.total
    );
    for n in 0..=ROUNDS {
        let name = format!("orders-{n}");
        assert!(
            report.share_of(&name, ..) > 0.0,
            "{name} served nothing: the update did not move traffic"
        );
    }
    drop(current);
    eprintln!(
        "drain timeline of the first update:\n{}",
        first_timeline.unwrap_or_default()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_draining_proxy_finishes_a_slow_request_and_its_outbound_keeps_working() {
    let (_root, cp) = control_plane_with(
        &[
            ("web", 80, "http"),
            ("orders", 80, "http"),
            ("payments", 80, "http"),
        ],
        &[],
    )
    .await;
    let (web_app, orders_app, payments_app) = (
        TestApp::http("web"),
        TestApp::http("orders"),
        TestApp::http("payments"),
    );
    let web = Proxy::start(ProxySpec::new("web", cp.xds_addr, web_app.addr))
        .await
        .unwrap();
    let mut orders = Proxy::start(
        ProxySpec::new("orders", cp.xds_addr, orders_app.addr)
            .extra("drain: {propagation_ms: 2000, timeout_ms: 20000}\n"),
    )
    .await
    .unwrap();
    let _payments = Proxy::start(ProxySpec::new("payments", cp.xds_addr, payments_app.addr))
        .await
        .unwrap();
    wait_config(&web, Duration::from_secs(10), "orders' endpoint", |d| {
        endpoint_count(d, "orders") == 1
    })
    .await;
    wait_config(
        &orders,
        Duration::from_secs(10),
        "payments' endpoint",
        |d| endpoint_count(d, "payments") == 1,
    )
    .await;
    // orders waits 3 s on every request, then calls payments through its own
    // proxy: after the 2 s window, when its inbound is closed.
    orders_app.set_delay(Duration::from_millis(3000));
    orders_app.set_next(orders.outbound, "payments");

    let slow = tokio::spawn(http::get_with_host(web.outbound, "orders", "/slow"));
    let arrived = wait_for(Duration::from_secs(5), || async {
        orders_app.requests() == 1
    })
    .await;
    assert!(arrived.is_ok(), "the request never reached orders");
    sigterm(&orders);

    let draining = wait_for(Duration::from_secs(5), || async {
        orders
            .admin_get("/ready")
            .await
            .is_ok_and(|r| r.status == 503 && r.text().contains("draining"))
    })
    .await;
    assert!(
        draining.is_ok(),
        "/ready never said draining:\n{}",
        orders.logs()
    );
    // In the window a client outside the mesh (HTTP/1, straight to inbound)
    // is still served, and told to close its connection.
    let direct = {
        let inbound = orders.inbound;
        tokio::spawn(http::get_with_host(inbound, "orders", "/direct"))
    };
    // The caller has been told: orders is no endpoint any more.
    wait_config(&web, Duration::from_secs(5), "orders withdrawn", |d| {
        endpoint_count(d, "orders") == 0
    })
    .await;
    // After the window inbound accepts nothing new...
    let closed = wait_for(Duration::from_secs(10), || async {
        tokio::net::TcpStream::connect(orders.inbound)
            .await
            .is_err()
    })
    .await;
    assert!(closed.is_ok(), "inbound still accepts:\n{}", orders.logs());

    // ...and what was in flight completes, the app's outbound call included.
    let reply = slow.await.unwrap().unwrap();
    assert_eq!(reply.status, 200, "{}\n{}", reply.text(), orders.logs());
    assert_eq!(reply.header("x-backend"), Some("orders"));
    assert_eq!(reply.header("x-next-status"), Some("200"));
    let direct = direct.await.unwrap().unwrap();
    assert_eq!(direct.status, 200, "{}", direct.text());
    assert_eq!(direct.header("connection"), Some("close"));
    assert_eq!(payments_app.requests(), 2);

    let status = wait_exit(&mut orders, Duration::from_secs(25)).await;
    assert!(status.success(), "{status}:\n{}", orders.logs());
    let logs = orders.logs();
    assert_timeline(&logs);
    // The calls to payments went out after inbound had closed.
    let closed_at = logs.find("drain: propagation window over").unwrap();
    let called_at = logs
        .lines()
        .filter(|l| l.contains("\"direction\":\"outbound\"") && l.contains("payments"))
        .filter_map(|l| logs.find(l))
        .min();
    assert!(
        called_at.is_some_and(|at| at > closed_at),
        "no outbound call to payments after inbound closed:\n{logs}"
    );
    assert!(
        logs.contains("drain: this proxy's endpoint is withdrawn"),
        "{logs}"
    );
}
