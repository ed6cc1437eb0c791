//! A proxy with a bootstrap token gets its workload certificate from the control
//! plane, is ready only once it has one, and renews it before it expires.

mod support;

use std::time::Duration;

use remora_tests::app::TestApp;
use remora_tests::harness::{wait_for, Proxy, ProxySpec};
use support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_proxy_gets_its_certificate_and_renews_it() {
    // Short-lived certificates, so several renewals happen within the test.
    let (root, cp) = control_plane_with(&[("orders", 80, "http")], &["--cert-ttl", "4s"]).await;
    let token_file = root.path().join("orders.token");
    std::fs::write(&token_file, mint_token(&cp.data_dir(), "default", "orders")).unwrap();
    let app = TestApp::http("orders");
    let proxy =
        Proxy::start(ProxySpec::new("orders", cp.xds_addr, app.addr).token_file(&token_file))
            .await
            .unwrap();
    proxy.wait_ready(Duration::from_secs(10)).await.unwrap();
    let dump = proxy.config_dump().await.unwrap();
    assert_eq!(
        dump["certificate"]["identity"], "spiffe://cluster.local/ns/default/sa/orders",
        "{dump:#}"
    );

    // Renewed at ~70% of 4 s: a third certificate within ~6 s.
    let renewed = wait_for(Duration::from_secs(12), || async {
        let dump = proxy.config_dump().await.unwrap_or_default();
        dump["certificate"]["generation"].as_u64().unwrap_or(0) >= 3
    })
    .await;
    assert!(
        renewed.is_ok(),
        "no renewals: {:#}\n{}",
        proxy.config_dump().await.unwrap(),
        proxy.logs()
    );
    assert!(cp.logs().contains("certificate issued"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_proxy_whose_token_is_refused_is_not_ready_and_says_why() {
    let (root, cp) = control_plane_with(&[("orders", 80, "http")], &[]).await;
    // A token for another service account.
    let token_file = root.path().join("payments.token");
    std::fs::write(
        &token_file,
        mint_token(&cp.data_dir(), "default", "payments"),
    )
    .unwrap();
    let app = TestApp::http("orders");
    let proxy =
        Proxy::start(ProxySpec::new("orders", cp.xds_addr, app.addr).token_file(&token_file))
            .await
            .unwrap();
    let refused = wait_for(Duration::from_secs(10), || async {
        proxy
            .logs()
            .contains("the token grants spiffe://cluster.local/ns/default/sa/payments")
    })
    .await;
    assert!(refused.is_ok(), "{}", proxy.logs());
    let ready = proxy.admin_get("/ready").await.unwrap();
    assert_eq!(ready.status, 503);
    assert!(ready.text().contains("certificate"), "{}", ready.text());
}
