//! Services without a proxy are reached with ordinary TLS when their Service says
//! so: the proxy verifies the server's DNS name against the Service's roots (or
//! the system's), sends it as SNI and Host, and refuses a server that does not
//! prove it.

mod support;

use std::net::SocketAddr;
use std::time::Duration;

use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
use remora_tests::app::TestApp;
use remora_tests::harness::{http, wait_for, ControlPlane, Proxy, ProxySpec};
use support::*;

const NAME: &str = "payments.example.test";

/// A CA and a server certificate for `NAME`, as PEM: (ca, cert, key).
fn origin_certificates() -> (String, String, String) {
    let ca_key = KeyPair::generate().unwrap();
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca_cert = ca.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca, ca_key);
    let key = KeyPair::generate().unwrap();
    let leaf = CertificateParams::new(vec![NAME.to_owned()])
        .unwrap()
        .signed_by(&key, &issuer)
        .unwrap();
    (ca_cert.pem(), leaf.pem(), key.serialize_pem())
}

/// `openssl s_server -WWW`: an HTTPS server (HTTP/1.0) serving files from `dir`.
async fn https_server(
    dir: &std::path::Path,
    cert: &str,
    key: &str,
) -> (tokio::process::Child, SocketAddr) {
    std::fs::write(dir.join("origin.pem"), cert).unwrap();
    std::fs::write(dir.join("origin.key"), key).unwrap();
    std::fs::write(dir.join("hello.txt"), "hello over tls\n").unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let server = tokio::process::Command::new("openssl")
        .args([
            "s_server",
            "-WWW",
            "-accept",
            &port.to_string(),
            "-cert",
            "origin.pem",
            "-key",
            "origin.key",
        ])
        .current_dir(dir)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("openssl (scripts/test installs it)");
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let up = wait_for(Duration::from_secs(5), || async {
        tokio::net::TcpStream::connect(addr).await.is_ok()
    })
    .await;
    assert!(up.is_ok(), "openssl s_server did not start");
    (server, addr)
}

fn origin_service(name: &str, addr: SocketAddr, server_name: &str, ca: Option<&str>) -> String {
    let ca = ca
        .map(|pem| {
            let indented: String = pem.lines().map(|l| format!("      {l}\n")).collect();
            format!("    caCertificates: |\n{indented}")
        })
        .unwrap_or_default();
    format!(
        "apiVersion: v1\nkind: Service\nmetadata: {{name: {name}, namespace: default, annotations: {{remora.io/allow-unauthenticated-endpoints: \"true\"}}}}\n\
         spec:\n  ports: [{{port: 443}}]\n  endpoints: [{{address: 127.0.0.1, port: {}}}]\n\
         \x20 tls:\n    serverName: {server_name}\n{ca}",
        addr.port()
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unmeshed_services_are_reached_over_verified_tls() {
    let root = tempfile::tempdir().unwrap();
    let (ca, cert, key) = origin_certificates();
    let (_server, origin) = https_server(root.path(), &cert, &key).await;
    let config = config_dir(root.path());
    let docs = [
        service("web", 80, "http"),
        origin_service("payments", origin, NAME, Some(&ca)),
        origin_service("wrong-name", origin, "other.example.test", Some(&ca)),
        origin_service("system-roots", origin, NAME, None),
    ];
    write_config(&config, "services.yaml", &docs.join("---\n"));
    let cp = ControlPlane::start(&config).await.unwrap();
    let problems = cp.api_get("/api/v1/config").await.unwrap().json().unwrap();
    assert_eq!(problems["errors"], serde_json::json!([]), "{problems:#}");
    let app = TestApp::http("web");
    let web = Proxy::start(ProxySpec::new("web", cp.xds_addr, app.addr))
        .await
        .unwrap();
    web.wait_ready(Duration::from_secs(10)).await.unwrap();
    wait_config(&web, Duration::from_secs(10), "the origin endpoints", |d| {
        endpoint_count(d, "payments") == 1 && endpoint_count(d, "system-roots") == 1
    })
    .await;

    let reply = http::get_with_host(web.outbound, "payments", "/hello.txt")
        .await
        .unwrap();
    assert_eq!(reply.status, 200, "{}\n{}", reply.text(), web.logs());
    assert_eq!(reply.text(), "hello over tls\n");

    // A certificate for another name, or from a CA the proxy does not trust: no
    // request is sent.
    for (service, reason) in [
        ("wrong-name", "not valid for name"),
        ("system-roots", "UnknownIssuer"),
    ] {
        let reply = http::get_with_host(web.outbound, service, "/hello.txt")
            .await
            .unwrap();
        assert_eq!(reply.status, 503, "{service}: {}", reply.text());
        assert_eq!(
            reply.header("remora-error"),
            Some("upstream connect failed")
        );
        let logged = wait_for(Duration::from_secs(5), || async {
            web.logs()
                .lines()
                .any(|l| l.contains("TLS to origin failed") && l.contains(reason))
        })
        .await;
        assert!(
            logged.is_ok(),
            "{service}: no log line with {reason}:\n{}",
            web.logs()
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_tls_block_is_reported_by_field() {
    let root = tempfile::tempdir().unwrap();
    let config = config_dir(root.path());
    let text = "apiVersion: v1\nkind: Service\nmetadata: {name: payments}\n\
                spec:\n  ports: [{port: 443}]\n  tls: {serverName: 'not a name', caCertificates: 'nope'}\n";
    write_config(&config, "services.yaml", text);
    let cp = ControlPlane::start(&config).await.unwrap();
    let view = cp.api_get("/api/v1/config").await.unwrap().json().unwrap();
    let fields: Vec<_> = view["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["field"].as_str().unwrap_or_default().to_owned())
        .collect();
    assert_eq!(
        fields,
        ["spec.tls.serverName", "spec.tls.caCertificates"],
        "{view:#}"
    );
}
