//! The rough edges a new user hit, each as the user met it: a caller without a
//! certificate is told why an mTLS Service refuses it; `remora trust-bundle`
//! with a wrong `--data-dir` makes no CA; a proxy given another mesh's trust
//! bundle says so; a bootstrap's relative files are found beside it and `app`
//! may be `localhost:PORT`; the admin port lists its endpoints and pretty-prints
//! its config dump.

mod support;

use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use remora_tests::app::TestApp;
use remora_tests::harness::{bin_path, http, wait_for, Process, Proxy, ProxySpec};
use serde::Deserialize;
use support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_caller_without_certificate_is_told_that_the_service_requires_mtls() {
    let (root, cp) = control_plane_with(&[("web", 80, "http"), ("orders", 80, "http")], &[]).await;
    let (web_app, orders_app) = (TestApp::http("web"), TestApp::http("orders"));
    // orders has a token (so STRICT mTLS inbound); web has none.
    let _orders = meshed_proxy(&cp, root.path(), "orders", &orders_app).await;
    let web = Proxy::start(ProxySpec::new("web", cp.xds_addr, web_app.addr))
        .await
        .unwrap();
    web.wait_ready(Duration::from_secs(10)).await.unwrap();
    wait_config(&web, Duration::from_secs(10), "orders' endpoint", |d| {
        endpoint_count(d, "orders") == 1
    })
    .await;

    let reply = http::get_with_host(web.outbound, "orders", "/")
        .await
        .unwrap();
    assert_eq!(reply.status, 502, "{}", reply.text());
    let body = reply.text();
    assert!(
        body.contains("orders requires mTLS; this proxy has no certificate"),
        "the caller says why: {body}"
    );
    assert!(
        body.contains("token_file") && body.contains("PERMISSIVE"),
        "and what to do: {body}"
    );
    assert_eq!(
        reply
            .header("remora-error")
            .map(|h| h.contains("requires mTLS")),
        Some(true)
    );

    // PERMISSIVE, as the answer suggests: the same caller gets through.
    write_config(
        &config_dir(root.path()),
        "tls.yaml",
        "apiVersion: policy.remora.dev/v1alpha1\nkind: MeshTLS\n\
         metadata: {name: orders-permissive, namespace: default}\n\
         spec:\n  targetRef: {kind: Service, name: orders}\n  mode: PERMISSIVE\n",
    );
    let through = wait_for(Duration::from_secs(10), || async {
        http::get_with_host(web.outbound, "orders", "/")
            .await
            .is_ok_and(|r| r.status == 200)
    })
    .await;
    assert!(
        through.is_ok(),
        "PERMISSIVE never let the plaintext caller in"
    );
}

#[test]
fn trust_bundle_refuses_a_data_directory_without_a_ca() {
    let dir = tempfile::tempdir().unwrap();
    let wrong = dir.path().join("typo");
    let out = Command::new(bin_path("remora").unwrap())
        .arg("trust-bundle")
        .arg("--data-dir")
        .arg(&wrong)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(out.stdout.is_empty(), "no bundle printed");
    assert!(
        stderr.contains(&wrong.display().to_string()) && stderr.contains("no CA"),
        "the error names the directory: {stderr}"
    );
    assert!(
        !wrong.join("ca.key").exists() && !wrong.join("ca.crt").exists(),
        "no CA was made"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_proxy_given_another_meshs_trust_bundle_says_so() {
    let root = tempfile::tempdir().unwrap();
    let config = config_dir(root.path());
    write_config(&config, "services.yaml", WEB_AND_ORDERS);
    let cp = remora_tests::harness::ControlPlane::start_secure(&config, &[])
        .await
        .unwrap();
    let token = root.path().join("web.token");
    std::fs::write(&token, mint_token(&cp.data_dir(), "default", "web")).unwrap();
    // A root of some other CA.
    let other = rcgen::generate_simple_self_signed(vec!["other-mesh".to_owned()]).unwrap();
    let bundle = root.path().join("other-ca.pem");
    std::fs::write(&bundle, other.cert.pem()).unwrap();
    let app = TestApp::http("web");
    let web = Proxy::start(
        ProxySpec::new("web", cp.xds_addr, app.addr)
            .token_file(&token)
            .trust_bundle_file(&bundle),
    )
    .await
    .unwrap();
    let expected = format!(
        "did not verify against trust_bundle_file {}",
        bundle.display()
    );
    let said = wait_for(Duration::from_secs(10), || async {
        web.logs().contains(&expected)
    })
    .await;
    let logs = web.logs();
    assert!(said.is_ok(), "never said `{expected}`:\n{logs}");
    assert!(!logs.contains("transport error"), "{logs}");
    assert!(
        web.admin_get("/ready").await.unwrap().status != 200,
        "no certificate, not ready"
    );
}

/// What `remora-proxy --addresses-file` writes.
#[derive(Debug, Deserialize)]
struct Addresses {
    admin: SocketAddr,
}

/// Runs `remora-proxy --bootstrap FILE` from the root directory (`/`), so only
/// the bootstrap's own folder can explain finding what it names.
async fn proxy_elsewhere(folder: tempfile::TempDir, bootstrap: &Path) -> (Process, Addresses) {
    let addresses = folder.path().join("addresses.json");
    let mut command = Command::new(bin_path("remora-proxy").unwrap());
    command
        .current_dir("/")
        .arg("--bootstrap")
        .arg(bootstrap)
        .arg("--addresses-file")
        .arg(&addresses);
    let mut process = Process::spawn("remora-proxy orders", command, folder).unwrap();
    let bound: Addresses = process
        .wait_addresses(&addresses, Duration::from_secs(10))
        .await
        .unwrap();
    (process, bound)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bootstraps_relative_files_are_beside_it_and_its_app_may_be_localhost() {
    let root = tempfile::tempdir().unwrap();
    let config = config_dir(root.path());
    write_config(&config, "services.yaml", WEB_AND_ORDERS);
    let cp = remora_tests::harness::ControlPlane::start_secure(&config, &[])
        .await
        .unwrap();
    let orders_app = TestApp::http("orders");
    // orders' bootstrap names its token and trust bundle relative to itself.
    let folder = tempfile::tempdir().unwrap();
    std::fs::write(
        folder.path().join("orders.token"),
        mint_token(&cp.data_dir(), "default", "orders"),
    )
    .unwrap();
    let bundle = cp.api_get("/api/v1/trust-bundle").await.unwrap().text();
    std::fs::write(folder.path().join("ca.pem"), bundle).unwrap();
    let bootstrap = folder.path().join("orders.yaml");
    std::fs::write(
        &bootstrap,
        format!(
            "service: orders\ncontrol_plane: {}\napp: localhost:{}\n\
             outbound: 127.0.0.1:0\ninbound: 127.0.0.1:0\nadmin: localhost:0\n\
             token_file: orders.token\ntrust_bundle_file: ca.pem\n",
            cp.xds_addr,
            orders_app.addr.port()
        ),
    )
    .unwrap();
    let (orders, bound) = proxy_elsewhere(folder, &bootstrap).await;
    let ready = wait_for(Duration::from_secs(10), || async {
        http::get(bound.admin, "/ready")
            .await
            .is_ok_and(|r| r.status == 200)
    })
    .await;
    assert!(
        ready.is_ok(),
        "orders never got its certificate and config:\n{}",
        orders.logs()
    );
    assert!(
        !orders.logs().contains("in plaintext"),
        "the first request went over TLS, with the trust bundle found beside the bootstrap"
    );

    // web reaches orders' app at localhost:PORT through orders' proxy.
    let web_app = TestApp::http("web");
    let web = meshed_proxy(&cp, root.path(), "web", &web_app).await;
    wait_config(&web, Duration::from_secs(10), "orders' endpoint", |d| {
        endpoint_count(d, "orders") == 1
    })
    .await;
    let reply = http::get_with_host(web.outbound, "orders", "/")
        .await
        .unwrap();
    assert_eq!(reply.status, 200, "{}\n{}", reply.text(), orders.logs());
    assert_eq!(orders_app.requests(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_port_lists_its_endpoints_and_pretty_prints_its_config() {
    let (_root, cp) = control_plane_with(&[("web", 80, "http")], &[]).await;
    let app = TestApp::http("web");
    let web = Proxy::start(ProxySpec::new("web", cp.xds_addr, app.addr))
        .await
        .unwrap();
    web.wait_ready(Duration::from_secs(10)).await.unwrap();
    let index = web.admin_get("/").await.unwrap();
    assert_eq!(index.status, 200);
    let page = index.text();
    for endpoint in ["/live", "/ready", "/config_dump", "/metrics", "/shutdown"] {
        assert!(page.contains(endpoint), "{endpoint} missing:\n{page}");
    }
    let dump = web.admin_get("/config_dump").await.unwrap().text();
    assert!(dump.contains("\n  \"clusters\""), "pretty: {dump}");
    let parsed: serde_json::Value = serde_json::from_str(&dump).unwrap();
    assert!(parsed["ready"].as_bool().unwrap());
}
