//! The admin port's controls: the log filter changes at run time, and
//! `POST /shutdown` stops the proxy as SIGTERM does (both only from localhost,
//! which is where these tests call from).

mod support;

use std::time::Duration;

use remora_tests::app::TestApp;
use remora_tests::harness::{http, wait_for};
use support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_log_filter_changes_and_shutdown_stops_the_proxy() {
    let mut m = WebOrders::start(vec![TestApp::http("orders")], &[]).await;
    let bad = m.web.admin_post("/logging?level=loud").await.unwrap();
    assert_eq!(bad.status, 400, "{}", bad.text());
    assert!(bad.text().contains("not a log filter"), "{}", bad.text());

    assert!(!m.web.logs().contains(" DEBUG "), "info by default");
    let ok = m.web.admin_post("/logging?level=debug").await.unwrap();
    assert_eq!(ok.status, 200, "{}", ok.text());
    http::get_with_host(m.web.outbound, "orders", "/")
        .await
        .unwrap();
    let debug = wait_for(Duration::from_secs(5), || async {
        m.web.logs().contains(" DEBUG ")
    })
    .await;
    assert!(debug.is_ok(), "{}", m.web.logs());

    let reply = m.web.admin_post("/shutdown").await.unwrap();
    assert_eq!(reply.status, 200);
    let web = &mut m.web;
    let mut exited = None;
    let _ = wait_for(Duration::from_secs(5), || {
        exited = web.exit_status();
        let done = exited.is_some();
        async move { done }
    })
    .await;
    assert!(
        exited.is_some_and(|s| s.success()),
        "still running:\n{}",
        web.logs()
    );
    assert!(web.logs().contains("shutdown asked on the admin port"));
}
