//! Fixtures shared by the end-to-end tests: config files and convergence checks.
#![allow(dead_code)]

pub mod kube;

use std::path::{Path, PathBuf};
use std::time::Duration;

use remora_tests::harness::{wait_for, Proxy};

/// How long a proxy may take to apply a config change; the issue asks for 2 s.
pub const CONVERGE: Duration = Duration::from_secs(2);

/// Writes a config file atomically (write, then rename), as an editor or
/// `kubectl`-like tool would, so the watcher never sees half a file.
pub fn write_config(dir: &Path, name: &str, text: &str) {
    std::fs::create_dir_all(dir).unwrap();
    let tmp = dir.join(format!(".{name}.tmp"));
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, dir.join(name)).unwrap();
}

/// web and orders as a user writes them, without annotations: each is served only
/// by the service account named like it (endpoint authority's default).
pub const WEB_AND_ORDERS: &str =
    "apiVersion: v1\nkind: Service\nmetadata: {name: web, namespace: default}\n\
spec:\n  ports: [{port: 80, appProtocol: http}]\n---\n\
apiVersion: v1\nkind: Service\nmetadata: {name: orders, namespace: default}\n\
spec:\n  ports: [{port: 80, appProtocol: http}]\n";

/// web and orders (WEB_AND_ORDERS) on a control plane run as an operator runs
/// it (client certificates required), each proxy with a token for the account
/// named like its Service, web already knowing orders' one endpoint.
pub struct SecureMesh {
    pub root: tempfile::TempDir,
    pub cp: remora_tests::harness::ControlPlane,
    pub web: Proxy,
    pub orders: Proxy,
    pub web_app: remora_tests::app::TestApp,
    pub orders_app: remora_tests::app::TestApp,
}

impl SecureMesh {
    pub async fn start() -> SecureMesh {
        use remora_tests::app::TestApp;
        let root = tempfile::tempdir().unwrap();
        let config = config_dir(root.path());
        write_config(&config, "services.yaml", WEB_AND_ORDERS);
        let cp = remora_tests::harness::ControlPlane::start_secure(&config, &[])
            .await
            .unwrap();
        let (web_app, orders_app) = (TestApp::http("web"), TestApp::http("orders"));
        let web = meshed_proxy(&cp, root.path(), "web", &web_app).await;
        let orders = meshed_proxy(&cp, root.path(), "orders", &orders_app).await;
        wait_config(&web, Duration::from_secs(10), "orders' one endpoint", |d| {
            endpoint_count(d, "orders") == 1
        })
        .await;
        SecureMesh {
            root,
            cp,
            web,
            orders,
            web_app,
            orders_app,
        }
    }
}

/// A node as a proxy (or a raw ADS client) announces itself: `metadata` as
/// string fields.
pub fn node(
    id: &str,
    metadata: &[(&str, &str)],
) -> remora_proto::xds::envoy::config::core::v3::Node {
    use remora_proto::xds::google::protobuf::{value::Kind, Struct, Value};
    let fields = metadata
        .iter()
        .map(|(k, v)| {
            let value = Value {
                kind: Some(Kind::StringValue((*v).to_owned())),
            };
            ((*k).to_owned(), value)
        })
        .collect();
    remora_proto::xds::envoy::config::core::v3::Node {
        id: id.to_owned(),
        metadata: Some(Struct { fields }),
        ..Default::default()
    }
}

pub fn service(name: &str, port: u16, app_protocol: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Service\nmetadata: {{name: {name}, namespace: default, annotations: {{remora.io/allow-unauthenticated-endpoints: \"true\"}}}}\n\
         spec:\n  ports: [{{port: {port}, appProtocol: {app_protocol}}}]\n"
    )
}

pub fn services(list: &[(&str, u16, &str)]) -> String {
    list.iter()
        .map(|(n, p, a)| service(n, *p, a))
        .collect::<Vec<_>>()
        .join("---\n")
}

/// An HTTPRoute on Service `parent` splitting between `(backend, weight)`s.
pub fn split_route(name: &str, parent: &str, backends: &[(&str, u32)]) -> String {
    let refs: String = backends
        .iter()
        .map(|(b, w)| format!("    - {{name: {b}, port: 80, weight: {w}}}\n"))
        .collect();
    format!(
        "apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\n\
         metadata: {{name: {name}, namespace: default}}\n\
         spec:\n  parentRefs: [{{group: \"\", kind: Service, name: {parent}, port: 80}}]\n\
         \x20 rules:\n  - backendRefs:\n{refs}"
    )
}

/// The weight `proxy` currently routes to clusters of `service`, summed over the
/// routes of virtual hosts whose name contains `/<vhost>:`.
pub fn routed_weight(dump: &serde_json::Value, vhost: &str, service: &str) -> u64 {
    let vhost = format!("/{vhost}:");
    let cluster = format!("{service}.");
    dump["routes"]["virtual_hosts"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|vh| vh["name"].as_str().is_some_and(|n| n.contains(&vhost)))
        .flat_map(|vh| vh["routes"].as_array().into_iter().flatten())
        .flat_map(|r| r["targets"].as_array().into_iter().flatten())
        .filter(|t| t["cluster"].as_str().is_some_and(|c| c.contains(&cluster)))
        .filter_map(|t| t["weight"].as_u64())
        .sum()
}

/// How many endpoints `proxy` holds for clusters of `service`.
pub fn endpoint_count(dump: &serde_json::Value, service: &str) -> usize {
    let cluster = format!("|{service}.");
    dump["clusters"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|c| c["name"].as_str().is_some_and(|n| n.contains(&cluster)))
        .map(|c| c["endpoints"].as_array().map_or(0, Vec::len))
        .sum()
}

/// Waits until `proxy`'s config satisfies `check`, failing with its config dump.
pub async fn wait_config(
    proxy: &Proxy,
    timeout: Duration,
    what: &str,
    check: impl Fn(&serde_json::Value) -> bool,
) {
    let ok = wait_for(timeout, || async {
        proxy
            .config_dump()
            .await
            .map(|d| check(&d))
            .unwrap_or(false)
    })
    .await;
    if ok.is_err() {
        let dump = proxy.config_dump().await.ok();
        panic!(
            "proxy {} never got {what} within {timeout:?}; config dump: {dump:#?}\nlogs:\n{}",
            proxy.spec.service,
            proxy.logs()
        );
    }
}

/// Waits until `proxy` routes `vhost` by exactly these weights, with endpoints for
/// every backend that has weight.
pub async fn wait_split(proxy: &Proxy, timeout: Duration, vhost: &str, split: &[(&str, u32)]) {
    wait_config(proxy, timeout, &format!("the split {split:?}"), |d| {
        let total: u64 = split.iter().map(|(s, _)| routed_weight(d, vhost, s)).sum();
        let wanted: u64 = split.iter().map(|(_, w)| u64::from(*w)).sum();
        total > 0
            && split.iter().all(|(s, w)| {
                routed_weight(d, vhost, s) * wanted == u64::from(*w) * total
                    && (*w == 0 || endpoint_count(d, s) > 0)
            })
    })
    .await;
}

pub fn config_dir(root: &Path) -> PathBuf {
    root.join("config")
}

/// The tests' standard mesh: `web` calls `orders`, which an HTTPRoute
/// (`orders-split`) splits between `orders-v1` and `orders-v2`; each app runs
/// behind its own proxy.
pub struct SplitMesh {
    pub config: PathBuf,
    pub cp: remora_tests::harness::ControlPlane,
    pub web: Proxy,
    pub v1: Proxy,
    pub v2: Proxy,
    _apps: [remora_tests::app::TestApp; 3],
    _root: tempfile::TempDir,
}

impl SplitMesh {
    /// Starts everything with the split at `v1`/`v2` and waits until web's proxy
    /// routes by it, with endpoints for both versions.
    pub async fn start(v1: u32, v2: u32) -> SplitMesh {
        use remora_tests::app::TestApp;
        use remora_tests::harness::{ControlPlane, ProxySpec};
        let root = tempfile::tempdir().unwrap();
        let config = config_dir(root.path());
        write_config(
            &config,
            "services.yaml",
            &services(&[
                ("web", 80, "http"),
                ("orders", 80, "http"),
                ("orders-v1", 80, "http"),
                ("orders-v2", 80, "http"),
            ]),
        );
        write_config(
            &config,
            "route.yaml",
            &Self::route(&[("orders-v1", v1), ("orders-v2", v2)]),
        );
        let cp = ControlPlane::start(&config).await.unwrap();
        let apps = [
            TestApp::http("web"),
            TestApp::http("orders-v1"),
            TestApp::http("orders-v2"),
        ];
        let web = Proxy::start(ProxySpec::new("web", cp.xds_addr, apps[0].addr))
            .await
            .unwrap();
        let v1_proxy = Proxy::start(ProxySpec::new("orders-v1", cp.xds_addr, apps[1].addr))
            .await
            .unwrap();
        let v2_proxy = Proxy::start(ProxySpec::new("orders-v2", cp.xds_addr, apps[2].addr))
            .await
            .unwrap();
        let mesh = SplitMesh {
            config,
            cp,
            web,
            v1: v1_proxy,
            v2: v2_proxy,
            _apps: apps,
            _root: root,
        };
        mesh.wait_split(Duration::from_secs(10), v1, v2).await;
        wait_config(
            &mesh.web,
            Duration::from_secs(10),
            "endpoints for both versions",
            |d| endpoint_count(d, "orders-v1") == 1 && endpoint_count(d, "orders-v2") == 1,
        )
        .await;
        mesh
    }

    /// The HTTPRoute `orders-split` with these backends and weights.
    pub fn route(backends: &[(&str, u32)]) -> String {
        split_route("orders-split", "orders", backends)
    }

    /// Rewrites the route file with this split.
    pub fn set_split(&self, v1: u32, v2: u32) {
        self.write_route(&[("orders-v1", v1), ("orders-v2", v2)]);
    }

    pub fn write_route(&self, backends: &[(&str, u32)]) {
        write_config(&self.config, "route.yaml", &Self::route(backends));
    }

    /// Waits until web's proxy routes `orders` by this split.
    pub async fn wait_split(&self, timeout: Duration, v1: u32, v2: u32) {
        wait_split(
            &self.web,
            timeout,
            "orders",
            &[("orders-v1", v1), ("orders-v2", v2)],
        )
        .await;
    }
}

/// Mints a bootstrap token with the real CLI (`remora token create`).
pub fn mint_token(data_dir: &Path, namespace: &str, service_account: &str) -> String {
    let out = std::process::Command::new(remora_tests::harness::bin_path("remora").unwrap())
        .arg("token")
        .arg("create")
        .arg("--data-dir")
        .arg(data_dir)
        .args([
            "--namespace",
            namespace,
            "--service-account",
            service_account,
            "--ttl",
            "1h",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

/// The spec of a proxy for `service` (namespace default) in front of `app`,
/// with a token (written in `dir`) for the service account of the same name.
pub fn meshed_spec(
    cp: &remora_tests::harness::ControlPlane,
    dir: &Path,
    service: &str,
    app: &remora_tests::app::TestApp,
) -> remora_tests::harness::ProxySpec {
    let token = dir.join(format!("{service}.token"));
    std::fs::write(&token, mint_token(&cp.data_dir(), "default", service)).unwrap();
    remora_tests::harness::ProxySpec::new(service, cp.xds_addr, app.addr).token_file(&token)
}

/// Starts a proxy of [`meshed_spec`], and waits until it holds a certificate
/// and config.
pub async fn meshed_proxy(
    cp: &remora_tests::harness::ControlPlane,
    dir: &Path,
    service: &str,
    app: &remora_tests::app::TestApp,
) -> Proxy {
    let proxy = Proxy::start(meshed_spec(cp, dir, service, app))
        .await
        .unwrap();
    proxy.wait_ready(Duration::from_secs(10)).await.unwrap();
    proxy
}

/// Fails with the first few failed requests if there was any.
pub fn assert_no_errors(report: &remora_tests::load::Report) {
    let failed: Vec<_> = report
        .samples
        .iter()
        .filter(|s| s.is_error())
        .take(5)
        .collect();
    assert_eq!(report.errors, 0, "failed requests: {failed:?}");
}

/// A temporary folder with a config directory holding these Services, and a
/// control plane started on it with `args`.
pub async fn control_plane_with(
    list: &[(&str, u16, &str)],
    args: &[&str],
) -> (tempfile::TempDir, remora_tests::harness::ControlPlane) {
    let root = tempfile::tempdir().unwrap();
    let config = config_dir(root.path());
    write_config(&config, "services.yaml", &services(list));
    let cp = remora_tests::harness::ControlPlane::start_with(&config, args)
        .await
        .unwrap();
    (root, cp)
}

/// A TrafficPolicy (namespace default) on Service `service`, `body` being YAML at
/// the level of `spec` (indented two spaces), e.g. `"  retry: {attempts: 2}\n"`.
pub fn traffic_policy(service: &str, body: &str) -> String {
    format!(
        "apiVersion: policy.remora.dev/v1alpha1\nkind: TrafficPolicy\n\
         metadata: {{name: {service}, namespace: default}}\n\
         spec:\n  targetRef: {{kind: Service, name: {service}}}\n{body}"
    )
}

/// Starts a control plane on `config` and checks that every resource there is
/// valid (a test whose config was rejected would test nothing).
pub async fn checked_control_plane(config: &Path) -> remora_tests::harness::ControlPlane {
    let cp = remora_tests::harness::ControlPlane::start(config)
        .await
        .unwrap();
    let view = cp.api_get("/api/v1/config").await.unwrap().json().unwrap();
    assert_eq!(view["errors"], serde_json::json!([]), "{view:#}");
    cp
}

/// `proxy`'s counters for the cluster(s) of `service` (the first port's).
pub async fn cluster_stats(proxy: &Proxy, service: &str) -> serde_json::Value {
    let dump = proxy.config_dump().await.unwrap();
    let cluster = format!("|{service}.");
    dump["clusters"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|c| c["name"].as_str().is_some_and(|n| n.contains(&cluster)))
        .map(|c| c["stats"].clone())
        .unwrap_or_else(|| panic!("no cluster for {service} in {dump:#}"))
}

/// `web` calling `orders`, served by `n` apps each behind its own proxy (no
/// certificates), with the config files given written beside `services.yaml`.
pub struct WebOrders {
    pub config: PathBuf,
    pub cp: remora_tests::harness::ControlPlane,
    pub web: Proxy,
    pub orders: Vec<Proxy>,
    pub apps: Vec<remora_tests::app::TestApp>,
    _web_app: remora_tests::app::TestApp,
    _root: tempfile::TempDir,
}

impl WebOrders {
    /// `apps` serve orders (`appProtocol` grpc if the first is a gRPC app named
    /// `grpc-*`, else http).
    pub async fn start(
        apps: Vec<remora_tests::app::TestApp>,
        files: &[(&str, String)],
    ) -> WebOrders {
        use remora_tests::harness::ProxySpec;
        let root = tempfile::tempdir().unwrap();
        let config = config_dir(root.path());
        let protocol = if apps.first().is_some_and(|a| a.name.starts_with("grpc")) {
            "grpc"
        } else {
            "http"
        };
        write_config(
            &config,
            "services.yaml",
            &services(&[("web", 80, "http"), ("orders", 80, protocol)]),
        );
        for (name, text) in files {
            write_config(&config, name, text);
        }
        let cp = checked_control_plane(&config).await;
        let web_app = remora_tests::app::TestApp::http("web");
        let web = Proxy::start(ProxySpec::new("web", cp.xds_addr, web_app.addr))
            .await
            .unwrap();
        let mut mesh = WebOrders {
            config,
            cp,
            web,
            orders: Vec::new(),
            apps: Vec::new(),
            _web_app: web_app,
            _root: root,
        };
        for app in apps {
            mesh.add(app).await;
        }
        mesh
    }

    /// One more orders endpoint; waits until web's proxy has it.
    pub async fn add(&mut self, app: remora_tests::app::TestApp) {
        use remora_tests::harness::ProxySpec;
        let node = format!("orders-{}", self.apps.len());
        let spec = ProxySpec::new("orders", self.cp.xds_addr, app.addr).node_id(&node);
        self.orders.push(Proxy::start(spec).await.unwrap());
        self.apps.push(app);
        let n = self.apps.len();
        wait_config(
            &self.web,
            Duration::from_secs(10),
            "every orders endpoint",
            |d| endpoint_count(d, "orders") == n,
        )
        .await;
    }

    pub async fn orders_stats(&self) -> serde_json::Value {
        cluster_stats(&self.web, "orders").await
    }
}

/// Makes `n` echo calls to `service` through the proxy's outbound listener,
/// each of which must succeed.
pub async fn echo_calls_succeed(outbound: std::net::SocketAddr, service: &str, n: usize) {
    let mut client = remora_tests::app::echo_client(outbound, service)
        .await
        .unwrap();
    for i in 0..n {
        let reply = client
            .say(remora_proto::demo::EchoRequest {
                message: format!("call {i}"),
                count: 0,
            })
            .await;
        assert!(reply.is_ok(), "call {i}: {reply:?}");
    }
}

/// The control plane's own CA, read from its data directory, to sign test
/// leaves (a mesh peer's certificate without a proxy).
pub fn mesh_issuer(
    cp: &remora_tests::harness::ControlPlane,
) -> rcgen::Issuer<'static, rcgen::KeyPair> {
    let read = |name: &str| std::fs::read_to_string(cp.data_dir().join(name)).unwrap();
    let key = rcgen::KeyPair::from_pem(&read("ca.key")).unwrap();
    rcgen::Issuer::from_ca_cert_pem(&read("ca.crt"), key).unwrap()
}

/// A leaf for `uri` signed by `issuer`, valid until `not_after`; (cert, key) PEM.
pub fn leaf(
    issuer: &rcgen::Issuer<'_, rcgen::KeyPair>,
    uri: &str,
    not_after: std::time::SystemTime,
) -> (String, String) {
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::default();
    params.subject_alt_names = vec![rcgen::SanType::URI(uri.try_into().unwrap())];
    params.not_before =
        (std::time::SystemTime::now().min(not_after) - Duration::from_secs(3600)).into();
    params.not_after = not_after.into();
    (
        params.signed_by(&key, issuer).unwrap().pem(),
        key.serialize_pem(),
    )
}

/// An echo server on loopback that, for a client whose first bytes are
/// "RESET", sends part of a reply and resets the connection.
pub async fn echo_peer() -> std::net::SocketAddr {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let echo = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = vec![0u8; 64 * 1024];
                while let Ok(n) = s.read(&mut buf).await {
                    if n == 0 {
                        return;
                    }
                    if buf[..n].starts_with(b"RESET") {
                        let _ = s.write_all(b"partial").await;
                        s.set_zero_linger().unwrap();
                        return;
                    }
                    if s.write_all(&buf[..n]).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    echo
}

/// Sends `message` to `upstream` on a new connection and checks it comes back.
pub async fn echoes(upstream: std::net::SocketAddr, message: &[u8]) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut c = tokio::net::TcpStream::connect(upstream).await.unwrap();
    c.write_all(message).await.unwrap();
    let mut back = vec![0u8; message.len()];
    c.read_exact(&mut back).await.unwrap();
    assert_eq!(back, message);
}
