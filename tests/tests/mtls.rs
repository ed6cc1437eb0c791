//! With certificates, proxy-to-proxy traffic is mutually authenticated TLS 1.3 with
//! the expected identities, and the inbound listener refuses plaintext (STRICT)
//! and clients without a mesh certificate.

mod support;

use std::process::{Command, Stdio};
use std::time::Duration;

use remora_tests::app::TestApp;
use remora_tests::harness::{http, wait_for};
use support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxies_talk_mtls_with_the_expected_identities_and_refuse_plaintext() {
    let (root, cp) = control_plane_with(&[("web", 80, "http"), ("orders", 80, "http")], &[]).await;
    let (web_app, orders_app) = (TestApp::http("web"), TestApp::http("orders"));
    let web = meshed_proxy(&cp, root.path(), "web", &web_app).await;
    let orders = meshed_proxy(&cp, root.path(), "orders", &orders_app).await;
    wait_config(
        &web,
        Duration::from_secs(10),
        "an endpoint for orders",
        |d| endpoint_count(d, "orders") == 1,
    )
    .await;

    // app -> web's proxy -> mTLS -> orders' proxy -> app.
    let reply = http::get_with_host(web.outbound, "orders", "/")
        .await
        .unwrap();
    assert_eq!(reply.status, 200, "{}\n{}", reply.text(), web.logs());
    assert_eq!(reply.header("x-backend"), Some("orders"));
    assert_eq!(
        reply.header("x-seen-client-id"),
        Some("spiffe://cluster.local/ns/default/sa/web"),
        "the app learns the verified caller identity"
    );
    // Both ends of the hop are named by identity in the metrics.
    let web_metrics = web.admin_get("/metrics").await.unwrap().text();
    assert!(
        web_metrics
            .lines()
            .any(|l| l.starts_with("remora_requests_total{")
                && l.contains("destination_service=\"orders\"")
                && l.contains(
                    "destination_identity=\"spiffe://cluster.local/ns/default/sa/orders\""
                )),
        "{web_metrics}"
    );
    let orders_metrics = orders.admin_get("/metrics").await.unwrap().text();
    assert!(
        orders_metrics
            .lines()
            .any(|l| l.starts_with("remora_requests_total{")
                && l.contains("direction=\"inbound\"")
                && l.contains("source_identity=\"spiffe://cluster.local/ns/default/sa/web\"")),
        "{orders_metrics}"
    );
    // A caller cannot claim another identity by sending the header itself.
    let spoofed = http::send(
        web.outbound,
        ::http::Request::get("/")
            .header("host", "orders")
            .header(
                "remora-client-id",
                "spiffe://cluster.local/ns/default/sa/admin",
            )
            .body(Default::default())
            .unwrap(),
    )
    .await
    .unwrap();
    assert_eq!(
        spoofed.header("x-seen-client-id"),
        Some("spiffe://cluster.local/ns/default/sa/web")
    );
    let seen = wait_for(Duration::from_secs(5), || async {
        let logs = orders.logs();
        logs.contains("mTLS connection accepted")
            && logs.contains("peer_identity=\"spiffe://cluster.local/ns/default/sa/web\"")
            && logs.contains("TLSv1_3")
    })
    .await;
    assert!(
        seen.is_ok(),
        "the inbound proxy did not see web's identity over TLS 1.3:\n{}",
        orders.logs()
    );

    // A TLS client without a certificate: the server demands one.
    let bundle = root.path().join("bundle.pem");
    std::fs::write(
        &bundle,
        cp.api_get("/api/v1/trust-bundle").await.unwrap().text(),
    )
    .unwrap();
    let s_client = Command::new("openssl")
        .args(["s_client", "-tls1_3", "-connect"])
        .arg(orders.inbound.to_string())
        .arg("-CAfile")
        .arg(&bundle)
        .stdin(Stdio::null())
        .output()
        .expect("openssl (scripts/test installs it)");
    let out = format!(
        "{}{}",
        String::from_utf8_lossy(&s_client.stdout),
        String::from_utf8_lossy(&s_client.stderr)
    );
    assert!(out.contains("TLSv1.3"), "{out}");
    assert!(
        out.contains("Acceptable client certificate CA names"),
        "the server must ask for a client certificate:\n{out}"
    );
    let refused = wait_for(Duration::from_secs(5), || async {
        orders.logs().contains("mTLS handshake refused")
    })
    .await;
    assert!(refused.is_ok(), "{}", orders.logs());

    // Plaintext is refused (STRICT).
    let curl = Command::new("curl")
        .args(["-sS", "--max-time", "5", "-H", "Host: orders"])
        .arg(format!("http://{}/", orders.inbound))
        .output()
        .expect("curl (scripts/test installs it)");
    assert!(
        !curl.status.success(),
        "plaintext got through: {}",
        String::from_utf8_lossy(&curl.stdout)
    );
    assert!(
        orders.logs().contains("plaintext connection refused"),
        "{}",
        orders.logs()
    );
    assert_eq!(
        orders_app.requests(),
        2,
        "only the two mTLS requests reached the app"
    );
}
