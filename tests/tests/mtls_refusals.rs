//! What mTLS refuses, each with a log line saying why: a client certificate from
//! another CA, an expired one, and a server presenting another identity than the
//! one announced for it (no request reaches it). And certificates rotate under
//! load without a failed request.

mod support;

use std::process::{Command, Stdio};
use std::time::{Duration, SystemTime};

use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
use remora_tests::app::TestApp;
use remora_tests::harness::{http, wait_for, Proxy, ProxySpec};
use remora_tests::load::{Load, LoadSpec};
use support::*;

const WEB: &str = "spiffe://cluster.local/ns/default/sa/web";

fn s_client(
    dir: &std::path::Path,
    target: std::net::SocketAddr,
    cert: &(String, String),
) -> String {
    std::fs::write(dir.join("c.pem"), &cert.0).unwrap();
    std::fs::write(dir.join("k.pem"), &cert.1).unwrap();
    let out = Command::new("openssl")
        .args(["s_client", "-tls1_3", "-connect"])
        .arg(target.to_string())
        .arg("-cert")
        .arg(dir.join("c.pem"))
        .arg("-key")
        .arg(dir.join("k.pem"))
        .stdin(Stdio::null())
        .output()
        .expect("openssl (scripts/test installs it)");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_certificates_from_another_ca_or_expired_are_refused() {
    let (root, cp) = control_plane_with(&[("orders", 80, "http")], &[]).await;
    let app = TestApp::http("orders");
    let orders = meshed_proxy(&cp, root.path(), "orders", &app).await;
    let in_a_day = SystemTime::now() + Duration::from_secs(86_400);

    // Another CA, with a name that looks right.
    let other_key = KeyPair::generate().unwrap();
    let mut other = CertificateParams::default();
    other.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let other = Issuer::new(other, other_key);
    s_client(root.path(), orders.inbound, &leaf(&other, WEB, in_a_day));
    let refused = wait_for(Duration::from_secs(5), || async {
        let logs = orders.logs();
        logs.contains("mTLS handshake refused") && logs.contains("UnknownIssuer")
    })
    .await;
    assert!(refused.is_ok(), "{}", orders.logs());

    // The mesh CA, but expired.
    let mesh = mesh_issuer(&cp);
    s_client(
        root.path(),
        orders.inbound,
        &leaf(&mesh, WEB, SystemTime::now() - Duration::from_secs(60)),
    );
    let refused = wait_for(Duration::from_secs(5), || async {
        let logs = orders.logs().to_lowercase();
        logs.contains("invalid peer certificate") && logs.contains("expired")
    })
    .await;
    assert!(refused.is_ok(), "{}", orders.logs());
    assert_eq!(app.requests(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_with_another_identity_is_refused_before_any_request() {
    let (root, cp) = control_plane_with(&[("web", 80, "http"), ("orders", 80, "http")], &[]).await;
    let web_app = TestApp::http("web");
    let web = meshed_proxy(&cp, root.path(), "web", &web_app).await;

    // An impostor: registers as orders (identity .../sa/orders) but its TLS server
    // presents a mesh certificate for .../sa/payments.
    let mesh = mesh_issuer(&cp);
    let (cert, key) = leaf(
        &mesh,
        "spiffe://cluster.local/ns/default/sa/payments",
        SystemTime::now() + Duration::from_secs(3600),
    );
    std::fs::write(root.path().join("impostor.pem"), cert).unwrap();
    std::fs::write(root.path().join("impostor.key"), key).unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut server = tokio::process::Command::new("openssl")
        .args(["s_server", "-tls1_3", "-accept", &port.to_string(), "-cert"])
        .arg(root.path().join("impostor.pem"))
        .arg("-key")
        .arg(root.path().join("impostor.key"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let listening = wait_for(Duration::from_secs(5), || async {
        tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_ok()
    })
    .await;
    assert!(listening.is_ok(), "openssl s_server did not start");
    // It holds orders' credentials for the control plane (the xDS stream is mTLS,
    // so the announced identity is orders'), but tells callers to dial the
    // openssl server.
    let token = root.path().join("impostor.token");
    std::fs::write(&token, mint_token(&cp.data_dir(), "default", "orders")).unwrap();
    let impostor_app = TestApp::http("orders");
    let _impostor = Proxy::start(
        ProxySpec::new("orders", cp.xds_addr, impostor_app.addr)
            .token_file(&token)
            .advertise(([127, 0, 0, 1], port).into()),
    )
    .await
    .unwrap();
    wait_config(
        &web,
        Duration::from_secs(10),
        "the impostor as an orders endpoint",
        |d| endpoint_count(d, "orders") == 1,
    )
    .await;

    let reply = http::get_with_host(web.outbound, "orders", "/")
        .await
        .unwrap();
    assert_eq!(reply.status, 503, "{}", reply.text());
    assert_eq!(
        reply.header("remora-error"),
        Some("upstream connect failed")
    );
    let refused = wait_for(Duration::from_secs(5), || async {
        let logs = web.logs();
        logs.contains("mTLS to upstream failed")
            && logs.contains("WrongIdentity")
            && logs.contains("presented: \"spiffe://cluster.local/ns/default/sa/payments\"")
    })
    .await;
    assert!(refused.is_ok(), "{}", web.logs());
    let _ = server.start_kill();
    let out = server.wait_with_output().await.unwrap();
    let served = String::from_utf8_lossy(&out.stdout);
    assert!(
        !served.contains("GET /"),
        "a request reached the impostor: {served}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certificates_rotate_under_load_without_a_failed_request() {
    let (root, cp) = control_plane_with(
        &[("web", 80, "http"), ("orders", 80, "http")],
        &["--cert-ttl", "3s"],
    )
    .await;
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

    let load = Load::start(LoadSpec::rate(web.outbound, "orders", 200.0).connections(4));
    let rotated = wait_for(Duration::from_secs(20), || async {
        let generation =
            |d: serde_json::Value| d["certificate"]["generation"].as_u64().unwrap_or(0);
        generation(web.config_dump().await.unwrap_or_default()) >= 4
            && generation(orders.config_dump().await.unwrap_or_default()) >= 4
    })
    .await;
    let report = load.stop().await;
    assert!(
        rotated.is_ok(),
        "certificates did not rotate three times:\n{}",
        web.logs()
    );
    assert_no_errors(&report);
    assert!(report.total > 1000, "only {} requests", report.total);
}
