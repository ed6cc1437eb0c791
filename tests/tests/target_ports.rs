//! A Service port's `targetPort` through the mesh, in file mode over mTLS:
//! `orders` serves two HTTP ports on two app listeners and an opaque port on a
//! third, none of them its proxy's bootstrap `app`, and web's caller reaches
//! each by the Service port it uses. A mesh peer that asks orders' proxy for a
//! port the Service does not serve over HTTP is refused, with the reason.

mod support;

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http_body_util::Full;
use remora_tests::app::TestApp;
use remora_tests::harness::{http, ControlPlane, Proxy};
use support::{
    config_dir, echo_peer, echoes, endpoint_count, leaf, mesh_issuer, meshed_proxy, meshed_spec,
    wait_config, write_config,
};

const WAIT: Duration = Duration::from_secs(10);
const WEB: &str = "spiffe://cluster.local/ns/default/sa/web";

/// web, and orders with ports 80 and 81 (HTTP) and 6379 (redis), each to its
/// own app port, and 82 (HTTP) without a target: to orders' bootstrap `app`.
fn services(api: u16, admin: u16, cache: u16) -> String {
    format!(
        "apiVersion: v1\nkind: Service\nmetadata: {{name: web, namespace: default}}\n\
         spec:\n  ports: [{{port: 80, appProtocol: http}}]\n---\n\
         apiVersion: v1\nkind: Service\nmetadata: {{name: orders, namespace: default}}\n\
         spec:\n  ports: [{{name: api, port: 80, targetPort: {api}}}, \
         {{name: admin, port: 81, targetPort: {admin}}}, \
         {{name: cache, port: 6379, targetPort: {cache}, appProtocol: redis}}, \
         {{name: plain, port: 82}}]\n"
    )
}

/// The target ports of `service`'s clusters in a proxy's config dump.
fn cluster_targets(dump: &serde_json::Value, service: &str) -> Vec<u64> {
    let cluster = format!("|{service}.");
    let mut targets: Vec<u64> = dump["clusters"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|c| c["name"].as_str().is_some_and(|n| n.contains(&cluster)))
        .filter_map(|c| c["target_port"].as_u64())
        .collect();
    targets.sort_unstable();
    targets
}

/// orders behind its proxy over mTLS, and web's proxy calling it (HTTP by
/// name, port 6379 on a local `upstreams` port). Fields drop in order: the
/// processes before the apps and their folder.
struct Mesh {
    web: Proxy,
    orders: Proxy,
    cp: ControlPlane,
    /// orders' bootstrap `app`: where a request that names no port goes.
    app: TestApp,
    /// Port 80's target.
    api: TestApp,
    /// Port 81's target.
    admin: TestApp,
    /// Port 6379's target: an echo server.
    cache: SocketAddr,
    _web_app: TestApp,
    root: tempfile::TempDir,
}

impl Mesh {
    async fn start() -> Mesh {
        let root = tempfile::tempdir().unwrap();
        let config = config_dir(root.path());
        let app = TestApp::http("orders-app");
        let api = TestApp::http("orders-api");
        let admin = TestApp::http("orders-admin");
        let cache = echo_peer().await;
        let (api_port, admin_port) = (api.addr.port(), admin.addr.port());
        write_config(
            &config,
            "services.yaml",
            &services(api_port, admin_port, cache.port()),
        );
        let cp = ControlPlane::start_secure(&config, &[]).await.unwrap();
        // Its app is on loopback like the three targets: they are reached at
        // the app's IP and their own ports.
        let orders = meshed_proxy(&cp, root.path(), "orders", &app).await;
        let web_app = TestApp::http("web");
        let web = Proxy::start(
            meshed_spec(&cp, root.path(), "web", &web_app)
                .extra("upstreams: [{service: orders, port: 6379, listen: \"127.0.0.1:0\"}]\n"),
        )
        .await
        .unwrap();
        web.wait_ready(WAIT).await.unwrap();
        let mut targets = vec![
            u64::from(api_port),
            u64::from(admin_port),
            u64::from(cache.port()),
        ];
        targets.sort_unstable();
        wait_config(&web, WAIT, "orders' endpoint and target ports", |d| {
            endpoint_count(d, "orders") == 4 && cluster_targets(d, "orders") == targets
        })
        .await;
        let mut http_ports = vec![api_port, admin_port];
        http_ports.sort_unstable();
        wait_config(&orders, WAIT, "the HTTP target ports", |d| {
            d["inbound"]["http_ports"] == serde_json::json!(http_ports)
        })
        .await;
        Mesh {
            web,
            orders,
            cp,
            app,
            api,
            admin,
            cache,
            _web_app: web_app,
            root,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_service_port_reaches_the_app_port_behind_it() {
    let mesh = Mesh::start().await;
    for (host, backend) in [
        ("orders", "orders-api"),
        ("orders:80", "orders-api"),
        ("orders:81", "orders-admin"),
    ] {
        let reply = http::get_with_host(mesh.web.outbound, host, "/")
            .await
            .unwrap();
        assert_eq!(reply.status, 200, "{host}: {}", reply.text());
        assert_eq!(reply.header("x-backend"), Some(backend), "{host}");
    }

    // The calling app cannot pick another port for itself: a request to
    // `host` naming the admin port's target as its own.
    let asking_for_admin = |host: &'static str| {
        let request = ::http::Request::get("/")
            .header("host", host)
            .header("remora-target-port", mesh.admin.addr.port().to_string())
            .body(Full::new(Bytes::new()))
            .unwrap();
        http::send(mesh.web.outbound, request)
    };
    let reply = asking_for_admin("orders:80").await.unwrap();
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(reply.header("x-backend"), Some("orders-api"));

    // Nor on a port without a target, whose requests name no port: the
    // header the app wrote is removed, not carried to the peer.
    let before = mesh.app.requests();
    let reply = asking_for_admin("orders:82").await.unwrap();
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(reply.header("x-backend"), Some("orders-app"));
    assert_eq!(mesh.app.requests(), before + 1);

    // Opaque TCP: the transport header names the port's target.
    echoes(mesh.web.upstreams[0], b"to the cache port's target").await;

    assert!(mesh.api.requests() >= 3 && mesh.admin.requests() >= 1);
    assert_eq!(
        mesh.app.requests(),
        before + 1,
        "only port 82 fell back to the app"
    );
}

/// One request over mesh mTLS to `target` as a peer holding `cert`, with
/// `remora-target-port: <port>` when given: the status, `remora-error` and
/// the body.
fn as_mesh_peer(
    dir: &Path,
    target: SocketAddr,
    cert: &(String, String),
    port: Option<&str>,
) -> (u16, Option<String>, String) {
    let (cert_file, key_file) = (dir.join("peer.pem"), dir.join("peer.key"));
    let (head_file, body_file) = (dir.join("peer.head"), dir.join("peer.body"));
    std::fs::write(&cert_file, &cert.0).unwrap();
    std::fs::write(&key_file, &cert.1).unwrap();
    let mut curl = Command::new("curl");
    curl.args(["-sS", "--max-time", "5", "--http2", "--tlsv1.3", "-k"])
        .args(["-w", "%{http_code}"])
        .arg("--cert")
        .arg(&cert_file)
        .arg("--key")
        .arg(&key_file)
        .arg("-D")
        .arg(&head_file)
        .arg("-o")
        .arg(&body_file);
    if let Some(port) = port {
        curl.arg("-H").arg(format!("remora-target-port: {port}"));
    }
    let out = curl
        .arg(format!("https://{target}/"))
        .stdin(Stdio::null())
        .output()
        .expect("curl (scripts/test installs it)");
    let status = String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse::<u16>()
        .unwrap_or_else(|_| panic!("curl: {}", String::from_utf8_lossy(&out.stderr)));
    let head = std::fs::read_to_string(&head_file).unwrap_or_default();
    let error = head
        .lines()
        .find_map(|l| l.strip_prefix("remora-error:"))
        .map(|v| v.trim().to_owned());
    let body = std::fs::read_to_string(&body_file).unwrap_or_default();
    (status, error, body)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mesh_peer_reaches_only_the_services_http_ports_and_is_told_why_otherwise() {
    let mesh = Mesh::start().await;
    let in_an_hour = SystemTime::now() + Duration::from_secs(3600);
    let web = leaf(&mesh_issuer(&mesh.cp), WEB, in_an_hour);
    let (dir, inbound) = (mesh.root.path(), mesh.orders.inbound);

    // A port the Service does not declare: the app's host may serve it, the
    // mesh does not.
    let reason = "port 22 is not an HTTP port of this Service";
    let (status, error, body) = as_mesh_peer(dir, inbound, &web, Some("22"));
    assert_eq!(status, 404, "{body}");
    assert_eq!(error.as_deref(), Some(reason));
    assert_eq!(body.trim(), reason);
    // Nor the opaque port's target, which takes opaque TCP only.
    let cache = mesh.cache.port().to_string();
    let (status, error, _) = as_mesh_peer(dir, inbound, &web, Some(&cache));
    assert_eq!(status, 404);
    let expected = format!("port {cache} is not an HTTP port of this Service");
    assert_eq!(error.as_deref(), Some(expected.as_str()));

    // A declared one reaches its target; none at all (an older peer), the app.
    let admin = mesh.admin.addr.port().to_string();
    let (status, _, body) = as_mesh_peer(dir, inbound, &web, Some(&admin));
    assert_eq!((status, body.trim()), (200, "orders-admin"));
    let (status, _, body) = as_mesh_peer(dir, inbound, &web, None);
    assert_eq!((status, body.trim()), (200, "orders-app"));

    let dump = mesh.orders.config_dump().await.unwrap();
    assert_eq!(
        dump["inbound"]["requests_for_unknown_ports"], 2,
        "{:#}",
        dump["inbound"]
    );
}
