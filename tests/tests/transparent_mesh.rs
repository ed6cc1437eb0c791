//! Transparent mode as in a pod: two network namespaces joined by a veth pair,
//! a client "pod" and a server "pod", each with its proxy running as its own
//! uid behind the rules `remora-proxy init` installs. The apps know nothing of
//! the mesh: the client calls a Service's cluster IP with curl and redis-cli,
//! iptables hands the connections to its proxy, which recovers the original
//! destination and carries them over mTLS to the server's proxy, which hands
//! them to its app. Plaintext to the server's pod IP is refused (STRICT).
//!
//! Needs root, `ip`, iptables, setpriv, redis and python3 (scripts/test installs
//! them). Without root it prints a loud SKIPPED block and passes, unless
//! `REMORA_TESTS_REQUIRE_NETNS=1`.

mod support;

use std::io::Write;
use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use remora_tests::harness::{bin_path, wait_for, ControlPlane, Proxy, ProxySpec};
use support::{config_dir, mint_token, write_config};

const REQUIRE_ENV: &str = "REMORA_TESTS_REQUIRE_NETNS";
/// The proxies' own uid: `init` leaves its connections alone.
const PROXY_UID: &str = "1337";
const CLUSTER_IP: &str = "10.96.0.10";
const WEB: &str = "spiffe://cluster.local/ns/default/sa/client";

/// A network namespace of our own, deleted on drop.
struct Netns {
    name: String,
}

impl Netns {
    fn create(role: &str) -> Result<Netns, String> {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let name = format!(
            "remora-{role}-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        let out = Command::new("ip")
            .args(["netns", "add", &name])
            .output()
            .map_err(|e| format!("cannot run `ip`: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "`ip netns add` failed (not root?): {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        let ns = Netns { name };
        ns.run("ip", &["link", "set", "lo", "up"]);
        Ok(ns)
    }

    fn command(&self, program: &str, args: &[&str]) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.name, program]).args(args);
        c
    }

    fn output(&self, program: &str, args: &[&str]) -> Output {
        self.command(program, args).output().unwrap()
    }

    /// Runs and asserts success; stdout.
    fn run(&self, program: &str, args: &[&str]) -> String {
        let out = self.output(program, args);
        assert!(
            out.status.success(),
            "{program} {args:?} in {} failed:\n{}{}",
            self.name,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// `ip netns exec NAME` (and `setpriv` as the proxy's uid when `as_proxy`).
    fn wrapper(&self, as_proxy: bool) -> Vec<String> {
        let mut w: Vec<String> = ["ip", "netns", "exec", &self.name]
            .iter()
            .map(|s| s.to_string())
            .collect();
        if as_proxy {
            w.extend(
                [
                    "setpriv",
                    &format!("--reuid={PROXY_UID}"),
                    &format!("--regid={PROXY_UID}"),
                    "--clear-groups",
                ]
                .iter()
                .map(|s| s.to_string()),
            );
        }
        w
    }

    /// A GET on the proxy's admin port, from inside the namespace.
    fn admin(&self, path: &str) -> String {
        let url = format!("http://127.0.0.1:7900{path}");
        String::from_utf8_lossy(&self.output("curl", &["-s", "--max-time", "5", &url]).stdout)
            .into_owned()
    }

    /// Waits until the proxy in this namespace answers `/ready` with 200.
    async fn wait_ready(&self, proxy: &Proxy) {
        let ready = wait_for(Duration::from_secs(15), || async {
            let out = self.output(
                "curl",
                &[
                    "-s",
                    "-o",
                    "/dev/null",
                    "-w",
                    "%{http_code}",
                    "http://127.0.0.1:7900/ready",
                ],
            );
            String::from_utf8_lossy(&out.stdout) == "200"
        })
        .await;
        assert!(
            ready.is_ok(),
            "proxy in {} not ready:\n{}",
            self.name,
            proxy.logs()
        );
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "delete", &self.name])
            .status();
    }
}

/// A process started in a namespace, killed (by pid) when dropped.
struct Started(Child);

impl Drop for Started {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn skip(why: &str) {
    if std::env::var_os(REQUIRE_ENV).is_some() {
        panic!("{REQUIRE_ENV} is set but {why}");
    }
    let bar = "!".repeat(78);
    let _ = writeln!(
        std::io::stderr(),
        "\n{bar}\n!! SKIPPED: {why}.\n!! Transparent mode through the mesh was NOT tested \
         (run as root with iproute2 and iptables).\n{bar}\n"
    );
}

fn readable(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

#[tokio::test]
async fn apps_reach_a_service_by_its_cluster_ip_through_the_mesh() {
    let (client_ns, server_ns) = match (Netns::create("client"), Netns::create("server")) {
        (Ok(c), Ok(s)) => (c, s),
        (Err(why), _) | (_, Err(why)) => return skip(&why),
    };
    // The two pods, joined by a veth pair on a /24 of their own.
    let subnet = 100 + (std::process::id() % 100);
    let (client_ip, server_ip) = (format!("10.{subnet}.0.1"), format!("10.{subnet}.0.2"));
    let (veth_c, veth_s) = (
        format!("rc{}", std::process::id() % 100_000),
        format!("rs{}", std::process::id() % 100_000),
    );
    client_ns.run(
        "ip",
        &[
            "link",
            "add",
            &veth_c,
            "type",
            "veth",
            "peer",
            "name",
            &veth_s,
            "netns",
            &server_ns.name,
        ],
    );
    client_ns.run(
        "ip",
        &["addr", "add", &format!("{client_ip}/24"), "dev", &veth_c],
    );
    client_ns.run("ip", &["link", "set", &veth_c, "up"]);
    client_ns.run("ip", &["route", "add", "default", "via", &server_ip]);
    server_ns.run(
        "ip",
        &["addr", "add", &format!("{server_ip}/24"), "dev", &veth_s],
    );
    server_ns.run("ip", &["link", "set", &veth_s, "up"]);

    // The control plane runs in the server's namespace; `backend` serves HTTP
    // on 80 and Redis on 6379 behind one cluster IP.
    let root = tempfile::tempdir().unwrap();
    readable(root.path(), 0o755);
    let config = config_dir(root.path());
    write_config(
        &config,
        "services.yaml",
        &format!(
            "apiVersion: v1\nkind: Service\nmetadata: {{name: client, namespace: default}}\n\
             spec:\n  ports: [{{port: 80, appProtocol: http}}]\n---\n\
             apiVersion: v1\nkind: Service\nmetadata: {{name: backend, namespace: default}}\n\
             spec:\n  clusterIP: {CLUSTER_IP}\n  ports: [{{name: http, port: 80, appProtocol: http}}, \
             {{name: redis, port: 6379, appProtocol: redis}}]\n"
        ),
    );
    let server_ip_addr: IpAddr = server_ip.parse().unwrap();
    let cp = ControlPlane::start_wrapped(&config, &server_ns.wrapper(false), server_ip_addr)
        .await
        .unwrap();
    let xds_port = cp.xds_addr.port().to_string();

    // Each pod's init step, then its app and its proxy (as uid 1337).
    client_ns.run(
        path(&bin_path("remora-proxy").unwrap()),
        &["init", "--ipv6", "false"],
    );
    server_ns.run(
        path(&bin_path("remora-proxy").unwrap()),
        &["init", "--ipv6", "false", "--skip-inbound-ports", &xds_port],
    );
    let _redis = Started(
        server_ns
            .command(
                "redis-server",
                &[
                    "--bind",
                    "127.0.0.1",
                    "--port",
                    "6379",
                    "--save",
                    "",
                    "--appendonly",
                    "no",
                ],
            )
            .stdout(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let site = tempfile::tempdir().unwrap();
    std::fs::write(site.path().join("index.html"), "hello from backend").unwrap();
    let _http_app = Started(
        server_ns
            .command(
                "python3",
                &[
                    "-m",
                    "http.server",
                    "8080",
                    "--bind",
                    "127.0.0.1",
                    "--directory",
                    path(site.path()),
                ],
            )
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let token = |service: &str| {
        let file = root.path().join(format!("{service}.token"));
        std::fs::write(&file, mint_token(&cp.data_dir(), "default", service)).unwrap();
        readable(&file, 0o644);
        file
    };
    let listen = |ip: &str| -> [SocketAddr; 3] {
        [
            "127.0.0.1:7001".parse().unwrap(),
            format!("{ip}:7002").parse().unwrap(),
            "127.0.0.1:7900".parse().unwrap(),
        ]
    };
    let spec = |service: &str, ns: &Netns, ip: &str, app: &str| {
        let [o, i, a] = listen(ip);
        ProxySpec::new(service, cp.xds_addr, app.parse().unwrap())
            .token_file(&token(service))
            .wrapper(&ns.wrapper(true))
            .listen(o, i, a)
    };
    let server = Proxy::start(spec("backend", &server_ns, &server_ip, "127.0.0.1:8080"))
        .await
        .unwrap();
    server_ns.wait_ready(&server).await;
    let client = Proxy::start(spec("client", &client_ns, &client_ip, "127.0.0.1:8080"))
        .await
        .unwrap();
    client_ns.wait_ready(&client).await;
    let has_endpoints = wait_for(Duration::from_secs(15), || async {
        let dump = client_ns.admin("/config_dump");
        serde_json::from_str::<serde_json::Value>(&dump)
            .is_ok_and(|d| support::endpoint_count(&d, "backend") >= 2)
    })
    .await;
    assert!(has_endpoints.is_ok(), "{}", client_ns.admin("/config_dump"));

    // HTTP by the Service's plain address: curl knows nothing of the mesh.
    let body = client_ns.run(
        "curl",
        &["-s", "--max-time", "10", &format!("http://{CLUSTER_IP}/")],
    );
    assert!(
        body.contains("hello from backend"),
        "{body}\nclient:\n{}",
        client.logs()
    );

    // Redis by the same cluster IP, as opaque TCP over mTLS.
    let redis_cli = |args: &[&str]| {
        let mut argv = vec!["-h", CLUSTER_IP, "-p", "6379"];
        argv.extend_from_slice(args);
        client_ns.output("redis-cli", &argv)
    };
    let set = redis_cli(&["SET", "mesh", "transparent"]);
    assert_eq!(
        String::from_utf8_lossy(&set.stdout).trim(),
        "OK",
        "{}",
        client.logs()
    );
    let get = redis_cli(&["GET", "mesh"]);
    assert_eq!(String::from_utf8_lossy(&get.stdout).trim(), "transparent");

    // The server's proxy names the client's SPIFFE id for both.
    let metrics = server_ns.admin("/metrics");
    assert!(
        metrics.contains(&format!(r#"remora_tcp_hop_connections_opened_total{{direction="inbound",destination=":6379",peer_identity="{WEB}"}}"#)),
        "{metrics}"
    );
    assert!(metrics.contains(WEB), "{metrics}");
    let client_metrics = client_ns.admin("/metrics");
    assert!(
        client_metrics.contains(
            r#"remora_protocol_detect_total{direction="outbound",port="6379",outcome="skipped"}"#
        ),
        "{client_metrics}"
    );

    // Plaintext straight to the server pod's Redis port (no mesh on the way:
    // from the server's own namespace, as root, so not redirected outbound) is
    // redirected inbound and refused: the Service is STRICT.
    let direct = client_ns.output(
        "setpriv",
        &[
            &format!("--reuid={PROXY_UID}"),
            "redis-cli",
            "-h",
            &server_ip,
            "-p",
            "6379",
            "PING",
        ],
    );
    assert_ne!(
        String::from_utf8_lossy(&direct.stdout).trim(),
        "PONG",
        "plaintext reached the app"
    );
    drop(cp);
}

fn path(p: &Path) -> &str {
    p.to_str().expect("UTF-8 path")
}
