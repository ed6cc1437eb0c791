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

/// The two pods and what runs in them: the control plane and the server's
/// apps in the server's namespace, a proxy in each.
struct Pods {
    client_ns: Netns,
    server_ns: Netns,
    client: Proxy,
    server: Proxy,
    server_ip: String,
    server_ip6: String,
    _cp: ControlPlane,
    _apps: Vec<Started>,
    _root: tempfile::TempDir,
    _site: tempfile::TempDir,
}

/// The server pod's ports, as `backend` declares them (one cluster IP).
const BACKEND_PORTS: &str = "[{name: http, port: 80, appProtocol: http}, \
    {name: redis, port: 6379, appProtocol: redis}, {name: mqtt, port: 1883, appProtocol: mqtt}, \
    {name: nats, port: 4222, appProtocol: nats}, {name: db, port: 3306, appProtocol: mysql}, \
    {name: grpc, port: 50051, appProtocol: grpc}]";

impl Pods {
    /// Both pods with their init rules and proxies, the server's apps started
    /// by `apps` (in the server's namespace; `site` is a folder they may use),
    /// and the client's proxy holding the server's endpoints. `None` (after a
    /// loud SKIPPED) when this machine cannot make namespaces.
    async fn start(
        server_init: &[&str],
        apps: impl FnOnce(&Netns, &Path) -> Vec<Started>,
    ) -> Option<Pods> {
        let (client_ns, server_ns) = match (Netns::create("client"), Netns::create("server")) {
            (Ok(c), Ok(s)) => (c, s),
            (Err(why), _) | (_, Err(why)) => {
                skip(&why);
                return None;
            }
        };
        // Joined by a veth pair on a /24 of their own.
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let subnet = 100 + (std::process::id() as usize * 7 + n) % 150;
        let (client_ip, server_ip) = (format!("10.{subnet}.{n}.1"), format!("10.{subnet}.{n}.2"));
        let tag = format!("{}{n}", std::process::id() % 100_000);
        let (veth_c, veth_s) = (format!("rc{tag}"), format!("rs{tag}"));
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
        // IPv6 too (no duplicate address detection: usable at once).
        let (client_ip6, server_ip6) = (
            format!("fd00:{subnet}:{n}::1"),
            format!("fd00:{subnet}:{n}::2"),
        );
        client_ns.run(
            "ip",
            &[
                "-6",
                "addr",
                "add",
                &format!("{client_ip6}/64"),
                "dev",
                &veth_c,
                "nodad",
            ],
        );
        server_ns.run(
            "ip",
            &[
                "-6",
                "addr",
                "add",
                &format!("{server_ip6}/64"),
                "dev",
                &veth_s,
                "nodad",
            ],
        );

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
                 spec:\n  clusterIP: {CLUSTER_IP}\n  ports: {BACKEND_PORTS}\n"
            ),
        );
        let cp = ControlPlane::start_wrapped(
            &config,
            &server_ns.wrapper(false),
            server_ip.parse().unwrap(),
        )
        .await
        .unwrap();
        let xds_port = cp.xds_addr.port().to_string();
        let proxy_bin = bin_path("remora-proxy").unwrap();
        client_ns.run(path(&proxy_bin), &["init"]);
        let mut skip_inbound = xds_port.clone();
        for extra in server_init {
            skip_inbound.push(',');
            skip_inbound.push_str(extra);
        }
        server_ns.run(
            path(&proxy_bin),
            &[
                "init",
                "--ipv6",
                "false",
                "--skip-inbound-ports",
                &skip_inbound,
            ],
        );
        let site = tempfile::tempdir().unwrap();
        readable(site.path(), 0o755);
        let started = apps(&server_ns, site.path());

        let token = |service: &str| {
            let file = root.path().join(format!("{service}.token"));
            std::fs::write(&file, mint_token(&cp.data_dir(), "default", service)).unwrap();
            readable(&file, 0o644);
            file
        };
        let spec = |service: &str, ns: &Netns, ip: &str| {
            ProxySpec::new(service, cp.xds_addr, "127.0.0.1:8080".parse().unwrap())
                .token_file(&token(service))
                .wrapper(&ns.wrapper(true))
                .listen(
                    "127.0.0.1:7001".parse().unwrap(),
                    format!("{ip}:7002").parse().unwrap(),
                    "127.0.0.1:7900".parse().unwrap(),
                )
        };
        let server = Proxy::start(spec("backend", &server_ns, &server_ip))
            .await
            .unwrap();
        server_ns.wait_ready(&server).await;
        let client = Proxy::start(spec("client", &client_ns, &client_ip))
            .await
            .unwrap();
        client_ns.wait_ready(&client).await;
        let ports = BACKEND_PORTS.matches("port:").count();
        let has_endpoints = wait_for(Duration::from_secs(15), || async {
            let dump = client_ns.admin("/config_dump");
            serde_json::from_str::<serde_json::Value>(&dump)
                .is_ok_and(|d| support::endpoint_count(&d, "backend") >= ports)
        })
        .await;
        assert!(has_endpoints.is_ok(), "{}", client_ns.admin("/config_dump"));
        Some(Pods {
            client_ns,
            server_ns,
            client,
            server,
            server_ip,
            server_ip6,
            _cp: cp,
            _apps: started,
            _root: root,
            _site: site,
        })
    }

    /// The server's proxy's metrics must count an inbound TCP connection on
    /// `port` from the client's SPIFFE id.
    fn assert_inbound_tcp_from_client(&self, port: u16) {
        let metrics = self.server_ns.admin("/metrics");
        let series = format!(
            r#"remora_tcp_hop_connections_opened_total{{direction="inbound",destination=":{port}",peer_identity="{WEB}"}}"#
        );
        assert!(
            metrics.contains(&series),
            "no {series} in:\n{metrics}\nserver:\n{}",
            self.server.logs()
        );
    }
}

fn spawn(ns: &Netns, program: &str, args: &[&str]) -> Started {
    Started(
        ns.command(program, args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {program}: {e}")),
    )
}

#[tokio::test]
async fn apps_reach_a_service_by_its_cluster_ip_through_the_mesh() {
    let Some(pods) = Pods::start(&[], |ns, site| {
        std::fs::write(site.join("index.html"), "hello from backend").unwrap();
        vec![
            spawn(
                ns,
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
            ),
            spawn(
                ns,
                "python3",
                &[
                    "-m",
                    "http.server",
                    "8080",
                    "--bind",
                    "127.0.0.1",
                    "--directory",
                    path(site),
                ],
            ),
        ]
    })
    .await
    else {
        return;
    };
    let client_ns = &pods.client_ns;

    // HTTP by the Service's plain address: curl knows nothing of the mesh.
    let body = wait_output(
        client_ns,
        "curl",
        &["-s", "--max-time", "10", &format!("http://{CLUSTER_IP}/")],
        |o| o.contains("hello from backend"),
    )
    .await;
    assert!(
        body.contains("hello from backend"),
        "{body}\nclient:\n{}",
        pods.client.logs()
    );

    // Redis by the same cluster IP, as opaque TCP over mTLS.
    let set = wait_output(
        client_ns,
        "redis-cli",
        &["-h", CLUSTER_IP, "-p", "6379", "SET", "mesh", "transparent"],
        |o| o.trim() == "OK",
    )
    .await;
    assert_eq!(set.trim(), "OK", "{}", pods.client.logs());
    let get = client_ns.run(
        "redis-cli",
        &["-h", CLUSTER_IP, "-p", "6379", "GET", "mesh"],
    );
    assert_eq!(get.trim(), "transparent");

    // The server's proxy names the client's SPIFFE id for both.
    pods.assert_inbound_tcp_from_client(6379);
    assert!(pods.server_ns.admin("/metrics").contains(WEB));
    let client_metrics = client_ns.admin("/metrics");
    assert!(
        client_metrics.contains(
            r#"remora_protocol_detect_total{direction="outbound",port="6379",outcome="skipped"}"#
        ),
        "{client_metrics}"
    );

    // Plaintext straight to the server pod's Redis port (as the proxy's uid, so
    // not redirected on the way out) is redirected inbound and refused: the
    // Service is STRICT.
    let direct = client_ns.output(
        "setpriv",
        &[
            &format!("--reuid={PROXY_UID}"),
            "redis-cli",
            "-h",
            &pods.server_ip,
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

    // The app dialling the server pod itself (an endpoint's address, as for a
    // headless Service) is carried over the mesh to that endpoint.
    let by_pod = client_ns.run(
        "redis-cli",
        &["-h", &pods.server_ip, "-p", "6379", "GET", "mesh"],
    );
    assert_eq!(by_pod.trim(), "transparent", "{}", pods.client.logs());
}

/// Runs `program` in `ns` until its output satisfies `ok` (the first calls may
/// race the config), for at most 10 s; the last output.
async fn wait_output(
    ns: &Netns,
    program: &str,
    args: &[&str],
    ok: impl Fn(&str) -> bool,
) -> String {
    let mut last = String::new();
    for _ in 0..50 {
        let out = ns.output(program, args);
        last = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        if ok(&last) {
            return last;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    last
}

fn path(p: &Path) -> &str {
    p.to_str().expect("UTF-8 path")
}

#[tokio::test]
async fn mqtt_nats_mariadb_and_grpc_streams_by_cluster_ip() {
    let grpc_script =
        std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("scripts/grpc_streams.py");
    let Some(pods) = Pods::start(&[], |ns, site| {
        let data = site.join("mariadb");
        ns.run(
            "mariadb-install-db",
            &[
                "--no-defaults",
                &format!("--datadir={}", path(&data)),
                "--user=root",
                "--auth-root-authentication-method=normal",
            ],
        );
        vec![
            spawn(ns, "mosquitto", &["-p", "1883"]),
            spawn(ns, "nats-server", &["-a", "127.0.0.1", "-p", "4222"]),
            spawn(
                ns,
                "mariadbd",
                &[
                    "--no-defaults",
                    &format!("--datadir={}", path(&data)),
                    &format!("--socket={}", path(&site.join("mariadb.sock"))),
                    &format!("--pid-file={}", path(&site.join("mariadb.pid"))),
                    "--port=3306",
                    "--bind-address=127.0.0.1",
                    "--user=root",
                    "--skip-log-bin",
                ],
            ),
            // The proxy's HTTP app (bootstrap `app`): Service port 50051 targets it.
            spawn(ns, "python3", &[path(&grpc_script), "serve", "8080"]),
        ]
    })
    .await
    else {
        return;
    };
    let ns = &pods.client_ns;

    // MQTT: a retained message published and read back through the mesh.
    let published = wait_output(
        ns,
        "mosquitto_pub",
        &[
            "-h",
            CLUSTER_IP,
            "-p",
            "1883",
            "-t",
            "mesh/greeting",
            "-m",
            "hello mqtt",
            "-r",
        ],
        |o| o.trim().is_empty(),
    )
    .await;
    assert!(published.trim().is_empty(), "mosquitto_pub: {published}");
    let got = ns.run(
        "mosquitto_sub",
        &[
            "-h",
            CLUSTER_IP,
            "-p",
            "1883",
            "-t",
            "mesh/greeting",
            "-C",
            "1",
            "-W",
            "10",
        ],
    );
    assert_eq!(got.trim(), "hello mqtt");
    pods.assert_inbound_tcp_from_client(1883);

    // NATS (server-first: the server speaks first) with a client from PyPI.
    let nats = r#"
import asyncio, nats
async def main():
    nc = await nats.connect("nats://10.96.0.10:4222", connect_timeout=5)
    sub = await nc.subscribe("mesh")
    await nc.publish("mesh", b"hello nats")
    msg = await sub.next_msg(timeout=5)
    print(msg.data.decode())
    await nc.close()
asyncio.run(main())
"#;
    let got = wait_output(ns, "python3", &["-c", nats], |o| o.contains("hello nats")).await;
    assert_eq!(got.trim(), "hello nats");
    pods.assert_inbound_tcp_from_client(4222);

    // MySQL protocol (server-first) on its declared port: no detection wait.
    let got = wait_output(
        ns,
        "mariadb",
        &[
            "-h",
            CLUSTER_IP,
            "-P",
            "3306",
            "-u",
            "root",
            "--connect-timeout=10",
            "-N",
            "-e",
            "select 6*7",
        ],
        |o| o.trim() == "42",
    )
    .await;
    assert_eq!(got.trim(), "42", "{}", pods.client.logs());
    pods.assert_inbound_tcp_from_client(3306);
    let logs = pods.client.logs();
    let db_line = logs
        .lines()
        .find(|l| l.contains(r#""protocol":"tcp""#) && l.contains("backend.default:3306"))
        .unwrap_or_else(|| panic!("no access log line for 3306:\n{logs}"));
    assert!(db_line.contains(r#""detected":"declared""#), "{db_line}");

    // gRPC client streaming and bidirectional streaming, by cluster IP.
    let got = wait_output(
        ns,
        "python3",
        &[path(&grpc_script), "call", &format!("{CLUSTER_IP}:50051")],
        |o| o.contains("chat"),
    )
    .await;
    assert!(
        got.contains("collect a,b,c"),
        "{got}\n{}",
        pods.client.logs()
    );
    assert!(got.contains("chat echo:1 echo:2 echo:3"), "{got}");
    assert!(pods.server_ns.admin("/metrics").contains(WEB));
}

#[tokio::test]
async fn a_server_first_protocol_on_an_undeclared_port_waits_only_the_detection_timeout() {
    // A greeting server on the server pod, outside the mesh (its port is not
    // redirected there): from the client, an address no Service has, so it is
    // passed through after detection gives up.
    let greeter = r#"
import socket
s = socket.create_server(("", 2525), family=socket.AF_INET6, dualstack_ipv6=True)
while True:
    c, _ = s.accept(); c.sendall(b"220 greeter ESMTP\r\n"); c.close()
"#;
    let Some(pods) = Pods::start(&["2525"], |ns, _| {
        vec![spawn(ns, "python3", &["-c", greeter])]
    })
    .await
    else {
        return;
    };
    let target = format!("{}:2525", pods.server_ip);
    let got = wait_output(&pods.client_ns, "python3", &["-c", &format!(
        "import socket; s = socket.create_connection(('{}', 2525), timeout=10); print(s.recv(100).decode().strip())",
        pods.server_ip
    )], |o| o.contains("220 greeter")).await;
    assert!(got.contains("220 greeter"), "{got}\n{}", pods.client.logs());
    let metrics = pods.client_ns.admin("/metrics");
    assert!(
        metrics.contains(
            r#"remora_protocol_detect_total{direction="outbound",port="2525",outcome="timeout"}"#
        ),
        "{metrics}"
    );
    assert_logged_timeout(&pods.client, &target).await;

    // The same over IPv6: redirected to the proxy's [::1]:7001 twin listener.
    let got = wait_output(
        &pods.client_ns,
        "python3",
        &[
            "-c",
            &format!(
                "import socket; s = socket.create_connection(('{}', 2525), timeout=10); print(s.recv(100).decode().strip())",
                pods.server_ip6
            ),
        ],
        |o| o.contains("220 greeter"),
    )
    .await;
    assert!(got.contains("220 greeter"), "{got}\n{}", pods.client.logs());
    let ip6: std::net::IpAddr = pods.server_ip6.parse().unwrap();
    let target6 = std::net::SocketAddr::new(ip6, 2525).to_string();
    assert_logged_timeout(&pods.client, &target6).await;
}

/// Waits for the access-log line of a connection to `target` carried as opaque
/// TCP after the detection timeout (lines are written when a connection ends).
async fn assert_logged_timeout(proxy: &Proxy, target: &str) {
    let logged = wait_for(Duration::from_secs(5), || async {
        proxy
            .logs()
            .lines()
            .any(|l| l.contains(r#""opaque_reason":"timeout""#) && l.contains(target))
    })
    .await;
    assert!(
        logged.is_ok(),
        "no timeout line for {target}:\n{}",
        proxy.logs()
    );
}
