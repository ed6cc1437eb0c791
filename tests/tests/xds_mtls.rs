//! The xDS stream runs over mTLS once a proxy holds its certificate: the control
//! plane knows each proxy's identity from its client certificate, presents its own
//! SPIFFE identity, and refuses a plaintext stream that claims an identity.

mod support;

use std::process::{Command, Stdio};
use std::time::Duration;

use remora_proto::xds::envoy::config::core::v3::Node;
use remora_proto::xds::envoy::service::discovery::v3::aggregated_discovery_service_client::AggregatedDiscoveryServiceClient;
use remora_proto::xds::envoy::service::discovery::v3::DiscoveryRequest;
use remora_proto::xds::google::protobuf::{value::Kind, Struct, Value};
use remora_tests::app::TestApp;
use remora_tests::harness::{wait_for, Proxy, ProxySpec};
use support::*;

const CONTROL_PLANE_ID: &str = "spiffe://cluster.local/ns/remora-system/sa/remora-control";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxies_with_certificates_talk_xds_over_mtls() {
    let (root, cp) = control_plane_with(&[("web", 80, "http"), ("orders", 80, "http")], &[]).await;
    let bundle = root.path().join("bundle.pem");
    std::fs::write(
        &bundle,
        cp.api_get("/api/v1/trust-bundle").await.unwrap().text(),
    )
    .unwrap();

    // web's bootstrap has the trust bundle: even its first certificate request
    // goes over TLS. orders' has none: only that first request is plaintext.
    let web_app = TestApp::http("web");
    let token = root.path().join("web.token");
    std::fs::write(&token, mint_token(&cp.data_dir(), "default", "web")).unwrap();
    let web = Proxy::start(
        ProxySpec::new("web", cp.xds_addr, web_app.addr)
            .token_file(&token)
            .trust_bundle_file(&bundle),
    )
    .await
    .unwrap();
    web.wait_ready(Duration::from_secs(10)).await.unwrap();
    let orders_app = TestApp::http("orders");
    let _orders = meshed_proxy(&cp, root.path(), "orders", &orders_app).await;

    let proxies = cp.proxies().await.unwrap();
    let by_service = |s: &str| {
        proxies
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["service"] == s)
            .cloned()
            .unwrap_or_else(|| panic!("no {s} in {proxies:#}"))
    };
    for (service, id) in [
        ("web", "spiffe://cluster.local/ns/default/sa/web"),
        ("orders", "spiffe://cluster.local/ns/default/sa/orders"),
    ] {
        let p = by_service(service);
        assert_eq!(p["transport"], "mtls", "{p:#}");
        assert_eq!(p["identity"], id, "{p:#}");
    }
    let logs = cp.logs();
    assert!(
        logs.contains("identity=spiffe://cluster.local/ns/default/sa/web transport=tls"),
        "web's first certificate request went over TLS:\n{logs}"
    );
    assert!(
        logs.contains("identity=spiffe://cluster.local/ns/default/sa/orders transport=plaintext"),
        "{logs}"
    );

    // The control plane presents its own SPIFFE id, chained to the trust bundle.
    let s_client = Command::new("openssl")
        .args(["s_client", "-tls1_3", "-showcerts", "-connect"])
        .arg(cp.xds_addr.to_string())
        .arg("-CAfile")
        .arg(&bundle)
        .stdin(Stdio::null())
        .output()
        .expect("openssl (scripts/test installs it)");
    let out = String::from_utf8_lossy(&s_client.stdout).into_owned();
    assert!(out.contains("Verify return code: 0 (ok)"), "{out}");
    let leaf = &out[out.find("-----BEGIN CERTIFICATE-----").unwrap()
        ..out.find("-----END CERTIFICATE-----").unwrap() + 25];
    let mut x509 = Command::new("openssl")
        .args(["x509", "-noout", "-ext", "subjectAltName"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    x509.stdin
        .take()
        .unwrap()
        .write_all(leaf.as_bytes())
        .unwrap();
    let san = String::from_utf8(x509.wait_with_output().unwrap().stdout).unwrap();
    assert!(san.contains(&format!("URI:{CONTROL_PLANE_ID}")), "{san}");
}

fn node(identity: &str, namespace: &str) -> Node {
    let text = |s: &str| Value {
        kind: Some(Kind::StringValue(s.to_owned())),
    };
    Node {
        id: "impostor".into(),
        metadata: Some(Struct {
            fields: [
                ("service", text("orders")),
                ("namespace", text(namespace)),
                ("inbound_address", text("127.0.0.1:9")),
                ("identity", text(identity)),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v))
            .collect(),
        }),
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plaintext_stream_cannot_claim_an_identity() {
    let (_root, cp) = control_plane_with(&[("orders", 80, "http")], &[]).await;
    let mut client = AggregatedDiscoveryServiceClient::connect(format!("http://{}", cp.xds_addr))
        .await
        .unwrap();
    let first = DiscoveryRequest {
        node: Some(node(
            "spiffe://cluster.local/ns/default/sa/orders",
            "default",
        )),
        type_url: remora_proto::type_url::CLUSTER.into(),
        ..Default::default()
    };
    let stream = client
        .stream_aggregated_resources(tokio_stream::StreamExt::chain(
            tokio_stream::iter([first]),
            tokio_stream::pending(),
        ))
        .await;
    let status = match stream {
        Err(status) => status,
        Ok(response) => response.into_inner().message().await.unwrap_err(),
    };
    assert_eq!(status.code(), tonic::Code::PermissionDenied, "{status:?}");
    assert!(
        status.message().contains("no client certificate"),
        "{status:?}"
    );
    // It never became an endpoint.
    let registered = wait_for(Duration::from_millis(500), || async {
        cp.proxies()
            .await
            .unwrap()
            .as_array()
            .is_some_and(|a| !a.is_empty())
    })
    .await;
    assert!(registered.is_err(), "{:#}", cp.proxies().await.unwrap());
    assert!(cp.logs().contains("proxy refused"), "{}", cp.logs());
}
