//! Operating the mesh with the real `remora` binary against a running control
//! plane and proxies: `apply` (with `--wait`, `--dry-run`, refusals that change
//! nothing), `get`, `delete`, `status` and its exit code, and writes that need
//! the admin token even on loopback.

mod support;

use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::Duration;

use remora_proto::type_url::CLUSTER;
use remora_proto::xds::envoy::service::discovery::v3::aggregated_discovery_service_client::AggregatedDiscoveryServiceClient;
use remora_proto::xds::envoy::service::discovery::v3::{DiscoveryRequest, DiscoveryResponse};
use remora_proto::xds::google::rpc;
use remora_tests::app::TestApp;
use remora_tests::harness::{bin_path, http, wait_for, ControlPlane};
use support::*;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

/// Runs `remora ARGS` (no token from the environment unless given).
async fn remora(args: &[&str]) -> Output {
    tokio::process::Command::new(bin_path("remora").unwrap())
        .args(args)
        .env_remove("REMORA_API_TOKEN_FILE")
        .env_remove("REMORA_API_ADDR")
        .output()
        .await
        .unwrap()
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn code(out: &Output) -> Option<i32> {
    out.status.code()
}

/// Fails showing the command's output unless it exited with `expected`.
fn expect(out: &Output, expected: i32, what: &str) {
    assert_eq!(
        code(out),
        Some(expected),
        "{what}: exit {:?}\nstdout:\n{}\nstderr:\n{}",
        out.status,
        stdout(out),
        stderr(out)
    );
}

/// An admin token for the control plane, in a file.
fn admin_token(cp: &ControlPlane, dir: &Path) -> PathBuf {
    let out = std::process::Command::new(bin_path("remora").unwrap())
        .args(["token", "create", "--admin", "--ttl", "1h", "--data-dir"])
        .arg(cp.data_dir())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let file = dir.join("admin.token");
    std::fs::write(&file, &out.stdout).unwrap();
    file
}

/// Every file of `dir` with its contents, to compare before and after.
fn contents(dir: &Path) -> Vec<(String, String)> {
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .map(|p| {
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            (name, std::fs::read_to_string(&p).unwrap_or_default())
        })
        .collect();
    files.sort();
    files
}

fn write(dir: &Path, name: &str, text: &str) -> String {
    std::fs::create_dir_all(dir).unwrap();
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path.display().to_string()
}

async fn generation(cp: &ControlPlane) -> u64 {
    let status = cp.api_get("/api/v1/status").await.unwrap().json().unwrap();
    status["generation"].as_u64().unwrap()
}

/// The demo prints the API as a URL; every command takes it.
fn url(cp: &ControlPlane) -> String {
    format!("http://{}", cp.api_addr)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apply_wait_get_and_delete_through_the_control_plane() {
    let mesh = SecureMesh::start().await;
    let api = url(&mesh.cp);
    let api = api.as_str();
    let token = admin_token(&mesh.cp, mesh.root.path());
    let token = token.to_str().unwrap();
    let mine = mesh.root.path().join("mine");
    write(&mine, "payments.yaml", &service("payments", 80, "http"));
    write(
        &mine,
        "route.yaml",
        &split_route(
            "orders-split",
            "orders",
            &[("orders", 90), ("payments", 10)],
        ),
    );

    // A Service and an HTTPRoute, applied together; --wait returns once every
    // proxy has ACKed them, so web's proxy holds them at that moment.
    let out = remora(&[
        "apply",
        "-f",
        mine.to_str().unwrap(),
        "--wait",
        "--timeout",
        "30s",
        "--api",
        api,
        "--token-file",
        token,
    ])
    .await;
    expect(&out, 0, "apply --wait");
    let printed = stdout(&out);
    assert!(printed.contains("service/payments created"), "{printed}");
    assert!(
        printed.contains("httproute/orders-split created"),
        "{printed}"
    );
    assert!(printed.contains("proxies hold generation"), "{printed}");
    let dump = mesh.web.config_dump().await.unwrap();
    assert_eq!(routed_weight(&dump, "orders", "payments"), 10, "{dump:#}");
    assert_eq!(routed_weight(&dump, "orders", "orders"), 90, "{dump:#}");
    // The files stay the source of truth: one per resource in the config directory.
    let config = mesh.cp.config_dir.clone();
    assert!(config.join("service-default-payments.yaml").exists());
    assert!(config.join("httproute-default-orders-split.yaml").exists());

    // Applying the same again changes nothing.
    let out = remora(&[
        "apply",
        "-f",
        mine.to_str().unwrap(),
        "--api",
        api,
        "--token-file",
        token,
    ])
    .await;
    expect(&out, 0, "apply again");
    assert!(
        stdout(&out).contains("httproute/orders-split unchanged"),
        "{}",
        stdout(&out)
    );

    // get: the resources as written, proxies, endpoints.
    let out = remora(&[
        "get",
        "httproute",
        "orders-split",
        "-o",
        "yaml",
        "--api",
        api,
    ])
    .await;
    expect(&out, 0, "get httproute -o yaml");
    assert!(
        stdout(&out).contains("name: orders-split"),
        "{}",
        stdout(&out)
    );
    assert!(stdout(&out).contains("weight: 10"), "{}", stdout(&out));
    let out = remora(&["get", "svc", "-o", "json", "--api", api]).await;
    expect(&out, 0, "get svc -o json");
    let services: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let names: Vec<&str> = services
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|s| s["name"].as_str())
        .collect();
    assert_eq!(names, ["orders", "payments", "web"], "{services:#}");
    let out = remora(&["get", "svc", "nosuch", "--api", api]).await;
    expect(&out, 1, "get a Service that does not exist");
    let out = remora(&["get", "proxies", "--api", api]).await;
    expect(&out, 0, "get proxies");
    assert!(stdout(&out).contains("default/web"), "{}", stdout(&out));
    let out = remora(&["get", "endpoints", "orders", "--api", api]).await;
    expect(&out, 0, "get endpoints");
    assert!(
        stdout(&out).contains(&mesh.orders.inbound.to_string()),
        "{}",
        stdout(&out)
    );

    // --dry-run validates and changes nothing.
    let before = (contents(&config), generation(&mesh.cp).await);
    let even = write(
        &mine,
        "even.yaml",
        &split_route(
            "orders-split",
            "orders",
            &[("orders", 50), ("payments", 50)],
        ),
    );
    let out = remora(&[
        "apply",
        "-f",
        even.as_str(),
        "--dry-run",
        "--api",
        api,
        "--token-file",
        token,
    ])
    .await;
    expect(&out, 0, "apply --dry-run");
    assert!(
        stdout(&out).contains("httproute/orders-split configured (dry run)"),
        "{}",
        stdout(&out)
    );
    assert_eq!((contents(&config), generation(&mesh.cp).await), before);

    // An invalid apply names file, resource and field, and changes nothing.
    let bad = write(
        &mine,
        "bad-route.yaml",
        &split_route(
            "orders-split",
            "orders",
            &[("orders", 50), ("orders-v3", 50)],
        ),
    );
    let out = remora(&[
        "apply",
        "-f",
        bad.as_str(),
        "--api",
        api,
        "--token-file",
        token,
    ])
    .await;
    expect(&out, 1, "an invalid apply");
    let problems = stderr(&out);
    for part in [
        "bad-route.yaml",
        "HTTPRoute default/orders-split",
        "spec.rules[0].backendRefs[1].name",
        "orders-v3",
    ] {
        assert!(problems.contains(part), "{part} not in:\n{problems}");
    }
    assert_eq!((contents(&config), generation(&mesh.cp).await), before);
    let dump = mesh.web.config_dump().await.unwrap();
    assert_eq!(routed_weight(&dump, "orders", "payments"), 10, "{dump:#}");

    // A delete that would break the route is refused; in order, both go.
    let out = remora(&[
        "delete",
        "service",
        "payments",
        "--api",
        api,
        "--token-file",
        token,
    ])
    .await;
    expect(&out, 1, "deleting a Service a route uses");
    assert!(stderr(&out).contains("orders-split"), "{}", stderr(&out));
    let route = mine.join("route.yaml");
    let out = remora(&[
        "delete",
        "-f",
        route.to_str().unwrap(),
        "--api",
        api,
        "--token-file",
        token,
    ])
    .await;
    expect(&out, 0, "delete -f route.yaml");
    assert!(
        stdout(&out).contains("httproute \"orders-split\" deleted"),
        "{}",
        stdout(&out)
    );
    let out = remora(&[
        "delete",
        "svc/payments",
        "--api",
        api,
        "--token-file",
        token,
    ])
    .await;
    expect(&out, 0, "delete svc/payments");
    assert!(!config.join("service-default-payments.yaml").exists());
    assert!(!config.join("httproute-default-orders-split.yaml").exists());
    let out = remora(&[
        "delete",
        "svc",
        "payments",
        "--api",
        api,
        "--token-file",
        token,
    ])
    .await;
    expect(&out, 1, "deleting what is gone");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_shows_every_proxy_and_exits_zero_when_all_are_current() {
    let mesh = SecureMesh::start().await;
    let api = url(&mesh.cp);
    let api = api.as_str();
    // Both proxies have ACKed everything once they are ready and know each other.
    let settled = wait_for(Duration::from_secs(10), || async {
        code(&remora(&["status", "--api", api]).await) == Some(0)
    })
    .await;
    let out = remora(&["status", "--api", api]).await;
    assert!(
        settled.is_ok(),
        "status never exited 0:\n{}{}",
        stdout(&out),
        stderr(&out)
    );
    let table = stdout(&out);
    for column in [
        "PROXY",
        "SERVICE",
        "IDENTITY",
        "ADDRESS",
        "CDS",
        "EDS",
        "LDS",
        "RDS",
        "CURRENT",
        "CERT EXPIRES",
    ] {
        assert!(table.contains(column), "{column} not in:\n{table}");
    }

    let out = remora(&["status", "-o", "json", "--api", api]).await;
    expect(&out, 0, "status -o json");
    let status: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let proxies = status["proxies"].as_array().unwrap();
    assert_eq!(proxies.len(), 2, "{status:#}");
    for p in proxies {
        let service = p["service"].as_str().unwrap();
        assert_eq!(
            p["identity"],
            format!("spiffe://cluster.local/ns/default/sa/{service}"),
            "{p:#}"
        );
        assert!(p["inbound_address"].is_string(), "{p:#}");
        for label in ["CDS", "LDS"] {
            assert!(p["xds"][label]["acked_version"].is_string(), "{p:#}");
            assert_eq!(p["xds"][label]["in_sync"], true, "{p:#}");
            assert!(p["xds"][label]["nack"].is_null(), "{p:#}");
        }
        assert_eq!(p["current"], true, "{p:#}");
        assert_eq!(p["nacking"], false, "{p:#}");
        assert!(p["certificate"]["not_after"].is_string(), "{p:#}");
        assert!(
            p["certificate"]["expires_in_seconds"].as_i64() > Some(3600),
            "{p:#}"
        );
    }

    // stat takes the URL form too.
    let out = remora(&["stat", "--api", api]).await;
    expect(&out, 0, "stat --api http://...");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_needs_the_admin_token_even_on_loopback() {
    let mesh = SecureMesh::start().await;
    let api = url(&mesh.cp);
    let api = api.as_str();
    let mine = mesh.root.path().join("mine");
    let file = write(&mine, "payments.yaml", &service("payments", 80, "http"));
    let before = contents(&mesh.cp.config_dir);

    let out = remora(&["apply", "-f", file.as_str(), "--api", api]).await;
    expect(&out, 1, "apply without a token");
    assert!(stderr(&out).contains("401"), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("remora token create --admin"),
        "{}",
        stderr(&out)
    );

    let workload = mine.join("web.token");
    std::fs::write(&workload, mint_token(&mesh.cp.data_dir(), "default", "web")).unwrap();
    let out = remora(&[
        "apply",
        "-f",
        file.as_str(),
        "--api",
        api,
        "--token-file",
        workload.to_str().unwrap(),
    ])
    .await;
    expect(&out, 1, "apply with a workload's token");
    assert!(stderr(&out).contains("403"), "{}", stderr(&out));
    let out = remora(&["delete", "svc", "orders", "--api", api]).await;
    expect(&out, 1, "delete without a token");

    assert_eq!(contents(&mesh.cp.config_dir), before);
    // Reads stay open on loopback.
    expect(
        &remora(&["get", "svc", "--api", api]).await,
        0,
        "get without a token",
    );
    // And the control plane unreachable is exit 3.
    let out = remora(&["status", "--api", "127.0.0.1:1"]).await;
    expect(&out, 3, "status with nothing listening");
}

/// A raw ADS client in namespace default that takes the first Clusters and
/// rejects every later push.
struct Stubborn {
    requests: mpsc::Sender<DiscoveryRequest>,
    responses: tonic::Streaming<DiscoveryResponse>,
}

impl Stubborn {
    async fn connect(cp: &ControlPlane) -> Stubborn {
        let mut client =
            AggregatedDiscoveryServiceClient::connect(format!("http://{}", cp.xds_addr))
                .await
                .unwrap();
        let (requests, rx) = mpsc::channel(8);
        let responses = client
            .stream_aggregated_resources(ReceiverStream::new(rx))
            .await
            .unwrap()
            .into_inner();
        let mut stubborn = Stubborn {
            requests,
            responses,
        };
        let first = DiscoveryRequest {
            node: Some(node("stubborn", &[("namespace", "default")])),
            type_url: CLUSTER.into(),
            ..Default::default()
        };
        stubborn.requests.send(first).await.unwrap();
        let clusters = stubborn.next().await;
        stubborn
            .requests
            .send(DiscoveryRequest {
                type_url: CLUSTER.into(),
                version_info: clusters.version_info.clone(),
                response_nonce: clusters.nonce.clone(),
                ..Default::default()
            })
            .await
            .unwrap();
        stubborn
    }

    async fn next(&mut self) -> DiscoveryResponse {
        tokio::time::timeout(Duration::from_secs(10), self.responses.message())
            .await
            .expect("a response in time")
            .unwrap()
            .unwrap()
    }

    async fn reject(&mut self, r: &DiscoveryResponse, message: &str) {
        let nack = DiscoveryRequest {
            type_url: r.type_url.clone(),
            response_nonce: r.nonce.clone(),
            error_detail: Some(rpc::Status {
                code: 3,
                message: message.to_owned(),
                details: Vec::new(),
            }),
            ..Default::default()
        };
        self.requests.send(nack).await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wait_and_status_name_a_proxy_that_nacks() {
    let root = tempfile::tempdir().unwrap();
    let config = config_dir(root.path());
    write_config(&config, "services.yaml", &service("orders", 80, "http"));
    let cp = ControlPlane::start(&config).await.unwrap();
    let api = url(&cp);
    let api = api.as_str();
    let token = admin_token(&cp, root.path());
    let mut stubborn = Stubborn::connect(&cp).await;

    let file = write(
        &root.path().join("mine"),
        "payments.yaml",
        &service("payments", 80, "http"),
    );
    let apply = tokio::spawn({
        let api = api.to_owned();
        let token = token.to_str().unwrap().to_owned();
        async move {
            remora(&[
                "apply",
                "-f",
                file.as_str(),
                "--wait",
                "--timeout",
                "20s",
                "--api",
                api.as_str(),
                "--token-file",
                token.as_str(),
            ])
            .await
        }
    });
    let pushed = stubborn.next().await;
    assert!(
        pushed.resources.len() == 2,
        "the push holds orders and payments: {pushed:?}"
    );
    let message = "cluster payments: not for me";
    stubborn.reject(&pushed, message).await;

    let out = apply.await.unwrap();
    expect(&out, 1, "apply --wait with a proxy that NACKs");
    let said = stderr(&out);
    assert!(
        said.contains("stubborn") && said.contains("CDS") && said.contains(message),
        "{said}"
    );
    assert!(
        stdout(&out).contains("service/payments created"),
        "{}",
        stdout(&out)
    );

    let out = remora(&["status", "-o", "json", "--api", api]).await;
    expect(&out, 1, "status with a proxy that NACKs");
    let status: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let p = status["proxies"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["node_id"] == "stubborn")
        .unwrap_or_else(|| panic!("{status:#}"));
    assert_eq!(p["nacking"], true, "{p:#}");
    assert_eq!(p["current"], false, "{p:#}");
    assert_eq!(p["xds"]["CDS"]["nack"]["message"], message, "{p:#}");
    let out = remora(&["status", "--api", api]).await;
    expect(&out, 1, "status (table) with a proxy that NACKs");
    assert!(
        stdout(&out).contains(&format!("stubborn: CDS NACK: {message}")),
        "{}",
        stdout(&out)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_endpoints_marks_the_ones_a_proxy_ejected() {
    let apps = vec![TestApp::http("orders-0"), TestApp::http("orders-1")];
    let m = WebOrders::start(
        apps,
        &[(
            "policy.yaml",
            traffic_policy(
                "orders",
                "  outlierDetection: {consecutiveFailures: 3, baseEjectionTime: 60s, maxEjectionPercent: 50}\n",
            ),
        )],
    )
    .await;
    m.apps[0].set_failures(100.0, 503, tonic::Code::Unavailable);
    let mut sent = 0;
    while m.orders_stats().await["ejections"] == 0 {
        http::get_with_host(m.web.outbound, "orders", "/")
            .await
            .unwrap();
        sent += 1;
        assert!(sent < 500, "never ejected: {:#}", m.orders_stats().await);
    }
    let web_node = m.web.config_dump().await.unwrap()["node_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let bad = m.orders[0].inbound.to_string();
    let api = url(&m.cp);
    let api = api.as_str();

    // The next traffic report (every 2 s) carries it.
    let marked = wait_for(Duration::from_secs(10), || async {
        let out = remora(&["get", "endpoints", "orders", "-o", "json", "--api", api]).await;
        let endpoints: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
        endpoints.as_array().into_iter().flatten().any(|e| {
            e["address"] == bad.as_str()
                && e["ejected_by"]
                    .as_array()
                    .is_some_and(|by| by.iter().any(|n| n == web_node.as_str()))
        })
    })
    .await;
    let out = remora(&["get", "endpoints", "orders", "--api", api]).await;
    assert!(marked.is_ok(), "never marked ejected:\n{}", stdout(&out));
    let table = stdout(&out);
    let row = table.lines().find(|l| l.contains(&bad)).unwrap();
    assert!(row.contains(&format!("yes (by {web_node})")), "{table}");
    let healthy = m.orders[1].inbound.to_string();
    let row = table.lines().find(|l| l.contains(&healthy)).unwrap();
    assert!(row.trim_end().ends_with('-'), "{table}");
}
