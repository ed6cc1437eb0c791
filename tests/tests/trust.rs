//! The trust model, tried as an attacker would (issue 10's findings 1-3): a
//! control plane run as an operator runs it (client certificates required),
//! web and orders with tokens, and impostors that try to become orders, read the
//! mesh's config, or forge its traffic reports.

mod support;

use std::time::Duration;

use remora_proto::telemetry::telemetry_client::TelemetryClient;
use remora_proto::telemetry::{Hop, HopReport};
use remora_proto::xds::envoy::service::discovery::v3::aggregated_discovery_service_client::AggregatedDiscoveryServiceClient;
use remora_proto::xds::envoy::service::discovery::v3::DiscoveryRequest;
use remora_tests::app::TestApp;
use remora_tests::harness::{http, wait_for, ControlPlane, Proxy, ProxySpec};
use support::*;

/// A raw ADS client without a certificate, as anyone on the network could run:
/// the status of its first answer.
async fn anonymous_ads(cp: &ControlPlane, fields: &[(&str, &str)]) -> tonic::Status {
    let mut client = AggregatedDiscoveryServiceClient::connect(format!("http://{}", cp.xds_addr))
        .await
        .unwrap();
    let request = DiscoveryRequest {
        node: Some(node("impostor-1", fields)),
        type_url: remora_proto::type_url::CLUSTER.to_owned(),
        ..Default::default()
    };
    let mut answers = client
        .stream_aggregated_resources(tokio_stream::iter([request]))
        .await
        .map(tonic::Response::into_inner);
    let first = match &mut answers {
        Ok(stream) => stream.message().await,
        Err(status) => Err(status.clone()),
    };
    match first {
        Err(status) => status,
        Ok(answer) => panic!("an anonymous ADS client was answered: {answer:?}"),
    }
}

async fn refusals(cp: &ControlPlane) -> serde_json::Value {
    cp.api_get("/api/v1/refusals")
        .await
        .unwrap()
        .json()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_impostor_never_becomes_an_endpoint_and_never_sees_a_request() {
    let mesh = SecureMesh::start().await;
    let dir = mesh.root.path();

    // 1. Our binary, no token, `service: orders`.
    let anonymous_app = TestApp::http("impostor-anonymous");
    let anonymous = Proxy::start(ProxySpec::new(
        "orders",
        mesh.cp.xds_addr,
        anonymous_app.addr,
    ))
    .await
    .unwrap();
    // 2. Our binary with web's token (so web's certificate), `service: orders`.
    let token = dir.join("stolen-web.token");
    std::fs::write(&token, mint_token(&mesh.cp.data_dir(), "default", "web")).unwrap();
    let stolen_app = TestApp::http("impostor-web-token");
    let stolen = Proxy::start(
        ProxySpec::new("orders", mesh.cp.xds_addr, stolen_app.addr)
            .token_file(&token)
            .extra("service_account: web\n"),
    )
    .await
    .unwrap();
    // 3. A raw ADS client, any address.
    let status = anonymous_ads(
        &mesh.cp,
        &[("service", "orders"), ("inbound_address", "127.0.0.1:1")],
    )
    .await;
    assert_eq!(status.code(), tonic::Code::PermissionDenied, "{status:?}");
    assert!(
        status.message().contains("client certificate"),
        "{status:?}"
    );

    // Each refusal is counted, named and explained.
    let counted = wait_for(Duration::from_secs(15), || async {
        let r = refusals(&mesh.cp).await;
        r["counts"]["no_certificate"].as_u64().unwrap_or(0) >= 2
            && r["counts"]["endpoint_authority"].as_u64().unwrap_or(0) >= 1
    })
    .await;
    let r = refusals(&mesh.cp).await;
    assert!(counted.is_ok(), "refusals: {r:#}");
    let authority = r["latest"]
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["reason"] == "endpoint_authority")
        .unwrap();
    let message = authority["message"].as_str().unwrap();
    assert!(
        message.contains("spiffe://cluster.local/ns/default/sa/web")
            && message.contains("default/orders"),
        "{message}"
    );
    assert!(
        mesh.cp.logs().contains("proxy refused"),
        "{}",
        mesh.cp.logs()
    );
    // Neither impostor got config, and each says why on /ready.
    for (p, why) in [
        (&anonymous, "client certificate"),
        (&stolen, "may not serve Service default/orders"),
    ] {
        let told = wait_for(Duration::from_secs(10), || async {
            let ready = p.admin_get("/ready").await.unwrap();
            ready.status == 503 && ready.text().contains(why)
        })
        .await;
        assert!(
            told.is_ok(),
            "{}",
            p.admin_get("/ready").await.unwrap().text()
        );
    }

    // Callers know one orders endpoint, the real one, and every request gets there.
    let proxies = mesh.cp.proxies().await.unwrap();
    let orders: Vec<_> = proxies
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["service"] == "orders")
        .collect();
    assert_eq!(orders.len(), 1, "{proxies:#}");
    assert_eq!(
        orders[0]["identity"],
        "spiffe://cluster.local/ns/default/sa/orders"
    );
    for _ in 0..100 {
        let reply = http::get_with_host(mesh.web.outbound, "orders", "/")
            .await
            .unwrap();
        assert_eq!(reply.status, 200, "{}", reply.text());
    }
    assert_eq!(mesh.orders_app.requests(), 100);
    assert_eq!(anonymous_app.requests() + stolen_app.requests(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn anonymous_clients_read_no_config_and_forge_no_telemetry() {
    let mesh = SecureMesh::start().await;

    // Reading: no certificate, no config, whatever namespace it names.
    for namespace in ["default", "kube-system"] {
        let status = anonymous_ads(&mesh.cp, &[("namespace", namespace)]).await;
        assert_eq!(status.code(), tonic::Code::PermissionDenied, "{status:?}");
    }

    // Forging: a report posing as web's proxy, claiming 5000 RPS at 1% success.
    let mut client = TelemetryClient::connect(format!("http://{}", mesh.cp.xds_addr))
        .await
        .unwrap();
    let web_node = mesh.web.config_dump().await.unwrap()["node_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let forged = HopReport {
        node_id: web_node.clone(),
        service: "web".into(),
        namespace: "default".into(),
        started_unix_ms: 1,
        bucket_bounds: vec![0.1],
        hops: vec![Hop {
            destination_service: "orders".into(),
            destination_namespace: "default".into(),
            requests: 1_000_000,
            failures: 990_000,
            duration_counts: vec![1_000_000, 0],
            overhead_counts: vec![1_000_000, 0],
            ..Default::default()
        }],
        ..Default::default()
    };
    let status = client.report(forged).await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::PermissionDenied, "{status:?}");
    let stat = mesh
        .cp
        .api_get("/api/v1/stat?window=30s")
        .await
        .unwrap()
        .json()
        .unwrap();
    let edges = stat["edges"].as_array().cloned().unwrap_or_default();
    assert!(
        edges
            .iter()
            .all(|e| e["requests_per_second"].as_f64().unwrap_or(0.0) < 100.0),
        "the forged report counted: {stat:#}"
    );
    let r = refusals(&mesh.cp).await;
    assert!(r["counts"]["telemetry"].as_u64().unwrap_or(0) >= 1, "{r:#}");
    assert!(
        r["counts"]["no_certificate"].as_u64().unwrap_or(0) >= 2,
        "{r:#}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_needs_an_admin_token_when_told_to() {
    let root = tempfile::tempdir().unwrap();
    let config = config_dir(root.path());
    write_config(&config, "services.yaml", WEB_AND_ORDERS);
    let cp = ControlPlane::start_secure(&config, &["--api-token-required"])
        .await
        .unwrap();
    let reply = cp.api_get("/api/v1/proxies").await.unwrap();
    assert_eq!(reply.status, 401, "{}", reply.text());
    assert!(reply.text().contains("remora token create --admin"));
    assert_eq!(cp.api_get("/live").await.unwrap().status, 200);
    assert_eq!(
        cp.api_get("/api/v1/trust-bundle").await.unwrap().status,
        200
    );

    let bearer = |token: &str| {
        ::http::Request::builder()
            .uri("/api/v1/config")
            .header("authorization", format!("Bearer {token}"))
            .body(http_body_util::Full::new(bytes::Bytes::new()))
            .unwrap()
    };
    let workload = mint_token(&cp.data_dir(), "default", "web");
    let reply = http::send(cp.api_addr, bearer(&workload)).await.unwrap();
    assert_eq!(reply.status, 403, "{}", reply.text());
    let admin = String::from_utf8(
        std::process::Command::new(remora_tests::harness::bin_path("remora").unwrap())
            .args(["token", "create", "--admin", "--data-dir"])
            .arg(cp.data_dir())
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap();
    let reply = http::send(cp.api_addr, bearer(admin.trim())).await.unwrap();
    assert_eq!(reply.status, 200, "{}", reply.text());

    // The CLI: refused with the server's reason without a token, served with one.
    let stat = |token: Option<&std::path::Path>| {
        let mut c = std::process::Command::new(remora_tests::harness::bin_path("remora").unwrap());
        c.args(["stat", "-o", "json", "--api", &cp.api_addr.to_string()]);
        if let Some(t) = token {
            c.arg("--token-file").arg(t);
        }
        c.output().unwrap()
    };
    let refused = stat(None);
    assert!(!refused.status.success());
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(
        stderr.contains("401") && stderr.contains("--admin"),
        "{stderr}"
    );
    let file = root.path().join("admin.token");
    std::fs::write(&file, &admin).unwrap();
    let served = stat(Some(&file));
    assert!(
        served.status.success(),
        "{}",
        String::from_utf8_lossy(&served.stderr)
    );
}
