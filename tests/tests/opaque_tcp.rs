//! Opaque TCP through the mesh in explicit mode: the client's proxy listens on a
//! local port for a Service port (bootstrap `upstreams`), carries the bytes over
//! mesh mTLS to the server's proxy, which checks the caller and hands them to
//! its app. Real Redis with redis-cli, a scripted Kafka peer, a server-first
//! protocol, and clients that misbehave.

mod support;

use std::net::SocketAddr;
use std::process::Command;
use std::time::Duration;

use remora_tests::harness::{wait_for, ControlPlane, Proxy, ProxySpec};
use support::{config_dir, echo_peer, echoes, mint_token, wait_config, write_config};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const WEB: &str = "spiffe://cluster.local/ns/default/sa/web";

/// `web` (HTTP) and a TCP Service `name` on `port`, on a control plane that
/// requires client certificates; `name`'s proxy hands connections to
/// `app_addr`; `web`'s proxy listens for `name:port` on an upstream port.
struct TcpMesh {
    root: tempfile::TempDir,
    cp: ControlPlane,
    web: Proxy,
    server: Proxy,
    _web_app: remora_tests::app::TestApp,
}

impl TcpMesh {
    async fn start(name: &str, port: u16, app_protocol: &str, app_addr: SocketAddr) -> Self {
        Self::start_with(name, port, app_protocol, app_addr, "").await
    }

    async fn start_with(
        name: &str,
        port: u16,
        app_protocol: &str,
        app_addr: SocketAddr,
        more_config: &str,
    ) -> Self {
        let root = tempfile::tempdir().unwrap();
        let config = config_dir(root.path());
        let services = format!(
            "apiVersion: v1\nkind: Service\nmetadata: {{name: web, namespace: default}}\n\
             spec:\n  ports: [{{port: 80, appProtocol: http}}]\n---\n\
             apiVersion: v1\nkind: Service\nmetadata: {{name: {name}, namespace: default}}\n\
             spec:\n  ports: [{{port: {port}, appProtocol: {app_protocol}}}]\n{more_config}"
        );
        write_config(&config, "services.yaml", &services);
        let cp = ControlPlane::start_secure(&config, &[]).await.unwrap();
        let web_app = remora_tests::app::TestApp::http("web");
        let token = |service: &str| {
            let path = root.path().join(format!("{service}.token"));
            std::fs::write(&path, mint_token(&cp.data_dir(), "default", service)).unwrap();
            path
        };
        let server = Proxy::start(
            ProxySpec::new(name, cp.xds_addr, web_app.addr)
                .token_file(&token(name))
                .extra(&format!("app_ports: {{{port}: \"{app_addr}\"}}\n")),
        )
        .await
        .unwrap();
        server.wait_ready(Duration::from_secs(10)).await.unwrap();
        let web = Proxy::start(
            ProxySpec::new("web", cp.xds_addr, web_app.addr)
                .token_file(&token("web"))
                .extra(&format!(
                    "upstreams: [{{service: {name}, port: {port}, listen: \"127.0.0.1:0\"}}]\n"
                )),
        )
        .await
        .unwrap();
        web.wait_ready(Duration::from_secs(10)).await.unwrap();
        wait_config(
            &web,
            Duration::from_secs(10),
            "the TCP Service's endpoint",
            |d| support::endpoint_count(d, name) == 1,
        )
        .await;
        Self {
            root,
            cp,
            web,
            server,
            _web_app: web_app,
        }
    }

    /// Where web's app connects for the TCP Service.
    fn upstream(&self) -> SocketAddr {
        self.web.upstreams[0]
    }
}

/// A port nothing listens on now, for servers that cannot bind port 0 and say
/// which port they got.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `redis-server` on loopback, stopped (by pid) when dropped.
struct Redis {
    child: std::process::Child,
    port: u16,
}

impl Redis {
    async fn start() -> Redis {
        let port = free_port();
        let child = Command::new("redis-server")
            .args(["--bind", "127.0.0.1", "--port", &port.to_string()])
            .args(["--save", "", "--appendonly", "no", "--protected-mode", "no"])
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("redis-server (scripts/test installs it)");
        let redis = Redis { child, port };
        let up = wait_for(Duration::from_secs(10), || async {
            redis_cli(redis.addr(), &["PING"]).is_ok_and(|out| out == "PONG")
        })
        .await;
        assert!(up.is_ok(), "redis-server did not start on {port}");
        redis
    }

    fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `redis-cli` against `addr`; its output, trimmed, or its error output.
fn redis_cli(addr: SocketAddr, args: &[&str]) -> Result<String, String> {
    let out = Command::new("redis-cli")
        .args(["-h", &addr.ip().to_string(), "-p", &addr.port().to_string()])
        .args(args)
        .output()
        .map_err(|e| e.to_string())?;
    let stdout = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    if out.status.success() && !stdout.starts_with("Could not connect") && !stdout.contains("Error")
    {
        Ok(stdout)
    } else {
        Err(format!("{stdout} {}", String::from_utf8_lossy(&out.stderr)))
    }
}

async fn metrics(proxy: &Proxy) -> String {
    proxy.admin_get("/metrics").await.unwrap().text()
}

/// The value of the first sample of `family` whose labels contain `labels`.
fn sample(text: &str, family: &str, labels: &str) -> Option<f64> {
    text.lines()
        .filter(|l| l.starts_with(family) && l[family.len()..].starts_with('{'))
        .find(|l| l.contains(labels))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
}

#[tokio::test]
async fn redis_through_the_mesh_over_mtls() {
    let redis = Redis::start().await;
    let mesh = TcpMesh::start("redis", 6379, "redis", redis.addr()).await;
    let upstream = mesh.upstream();
    // Both proxies show what they carry as TCP.
    let dump = mesh.web.config_dump().await.unwrap();
    let names = &dump["destinations"]["by_name"];
    let redis_port = names
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["name"] == "redis.default:6379")
        .unwrap_or_else(|| panic!("{names:#}"));
    assert_eq!(redis_port["app_protocol"], "redis");
    assert!(
        redis_port["carry"]["opaque"]["cluster"].is_string(),
        "{redis_port}"
    );
    let server = mesh.server.config_dump().await.unwrap();
    assert_eq!(
        server["inbound"]["tcp_ports"][0]["port"], 6379,
        "{server:#}"
    );

    assert_eq!(
        redis_cli(upstream, &["SET", "greeting", "hello mesh"]).unwrap(),
        "OK"
    );
    assert_eq!(
        redis_cli(upstream, &["GET", "greeting"]).unwrap(),
        "hello mesh"
    );
    // A pipeline of many commands in one connection.
    let script: String = (0..200)
        .map(|i| format!("INCR counter{}\n", i % 3))
        .collect();
    let mut cli = Command::new("redis-cli")
        .args(["-h", "127.0.0.1", "-p", &upstream.port().to_string()])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    cli.stdin
        .take()
        .unwrap()
        .write_all(script.as_bytes())
        .unwrap();
    let out = cli.wait_with_output().unwrap();
    let replies: Vec<_> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_owned)
        .collect();
    assert_eq!(replies.len(), 200, "{replies:?}");
    assert_eq!(redis_cli(redis.addr(), &["GET", "counter0"]).unwrap(), "67");

    // The server's proxy names the caller's verified identity.
    let server_metrics = metrics(&mesh.server).await;
    let inbound = format!(r#"direction="inbound",destination=":6379",peer_identity="{WEB}""#);
    assert!(
        sample(
            &server_metrics,
            "remora_tcp_hop_connections_opened_total",
            &inbound
        )
        .unwrap_or(0.0)
            >= 3.0,
        "{server_metrics}"
    );
    assert!(
        sample(&server_metrics, "remora_tcp_hop_sent_bytes_total", &inbound).unwrap_or(0.0) > 0.0
    );
    // The client's proxy: its hop, and one access-log line per connection.
    let web_metrics = metrics(&mesh.web).await;
    let outbound = r#"direction="outbound",destination="redis.default:6379",peer_identity="spiffe://cluster.local/ns/default/sa/redis""#;
    assert!(
        sample(
            &web_metrics,
            "remora_tcp_hop_received_bytes_total",
            outbound
        )
        .unwrap_or(0.0)
            > 0.0,
        "{web_metrics}"
    );
    let logged = wait_for(Duration::from_secs(5), || async {
        mesh.web
            .logs()
            .lines()
            .filter(|l| l.contains(r#""protocol":"tcp""#))
            .count()
            >= 3
    })
    .await;
    assert!(logged.is_ok(), "{}", mesh.web.logs());
    let line = mesh
        .web
        .logs()
        .lines()
        .find(|l| l.contains(r#""protocol":"tcp""#))
        .unwrap()
        .to_owned();
    let line: serde_json::Value = serde_json::from_str(&line).unwrap();
    assert_eq!(line["destination"], "redis.default:6379");
    assert_eq!(line["app_protocol"], "redis");
    assert_eq!(line["detected"], "declared");
    assert_eq!(line["end"], "closed");
    assert!(line["bytes_received"].as_u64().unwrap() > 0);
    drop(mesh.root);
}

#[tokio::test]
async fn authorization_policy_closes_denied_tcp_connections() {
    let redis = Redis::start().await;
    let mesh = TcpMesh::start("redis", 6379, "redis", redis.addr()).await;
    assert_eq!(redis_cli(mesh.upstream(), &["PING"]).unwrap(), "PONG");
    let config = config_dir(mesh.root.path());
    // A DENY with a path still denies TCP by caller (deny more, never less).
    write_config(
        &config,
        "deny.yaml",
        &format!(
            "apiVersion: policy.remora.dev/v1alpha1\nkind: AuthorizationPolicy\n\
             metadata: {{name: no-web, namespace: default}}\n\
             spec:\n  targetRef: {{kind: Service, name: redis}}\n  action: DENY\n  rules:\n\
             \x20 - from: {{identities: [\"{WEB}\"]}}\n    to: {{paths: [\"/admin\"]}}\n"
        ),
    );
    let denied = wait_for(Duration::from_secs(10), || async {
        redis_cli(mesh.upstream(), &["PING"]).is_err()
    })
    .await;
    assert!(
        denied.is_ok(),
        "still allowed; server logs:\n{}",
        mesh.server.logs()
    );
    let text = metrics(&mesh.server).await;
    let inbound = format!(r#"direction="inbound",destination=":6379",peer_identity="{WEB}""#);
    assert!(
        sample(&text, "remora_tcp_hop_connections_denied_total", &inbound).unwrap_or(0.0) >= 1.0,
        "{text}"
    );
    std::fs::remove_file(config.join("deny.yaml")).unwrap();
    let allowed = wait_for(Duration::from_secs(10), || async {
        redis_cli(mesh.upstream(), &["PING"]).is_ok_and(|o| o == "PONG")
    })
    .await;
    assert!(allowed.is_ok());
    let _ = &mesh.cp;
}

/// A scripted Kafka broker: answers each request frame (4-byte length, then
/// api key, version, correlation id) with an ApiVersions-shaped response that
/// echoes the correlation id.
async fn kafka_peer() -> (SocketAddr, tokio::task::JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = listener.accept().await else {
                return;
            };
            tokio::spawn(async move {
                loop {
                    let Ok(len) = s.read_i32().await else { return };
                    let mut body = vec![0u8; len.max(0) as usize];
                    if s.read_exact(&mut body).await.is_err() || body.len() < 8 {
                        return;
                    }
                    let correlation = &body[4..8];
                    // ApiVersions v0 response: correlation id, error 0, one api
                    // (key 18, versions 0..3).
                    let mut resp = Vec::new();
                    resp.extend_from_slice(correlation);
                    resp.extend_from_slice(&[0, 0, 0, 0, 0, 1, 0, 18, 0, 0, 0, 3]);
                    let mut frame = (resp.len() as i32).to_be_bytes().to_vec();
                    frame.extend_from_slice(&resp);
                    if s.write_all(&frame).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    (addr, task)
}

#[tokio::test]
async fn kafka_wire_protocol_as_opaque_tcp_on_9092() {
    let (broker, _task) = kafka_peer().await;
    let mesh = TcpMesh::start("kafka", 9092, "kafka", broker).await;
    let mut client = TcpStream::connect(mesh.upstream()).await.unwrap();
    for correlation in [42i32, 43, 44] {
        // ApiVersions v0: api key 18, version 0, correlation id, client id.
        let mut body = vec![0, 18, 0, 0];
        body.extend_from_slice(&correlation.to_be_bytes());
        let client_id = b"remora-test";
        body.extend_from_slice(&(client_id.len() as i16).to_be_bytes());
        body.extend_from_slice(client_id);
        let mut frame = (body.len() as i32).to_be_bytes().to_vec();
        frame.extend_from_slice(&body);
        client.write_all(&frame).await.unwrap();
        let len = client.read_i32().await.unwrap();
        let mut resp = vec![0u8; len as usize];
        client.read_exact(&mut resp).await.unwrap();
        assert_eq!(&resp[0..4], &correlation.to_be_bytes());
        assert_eq!(&resp[10..12], &[0, 18], "api key 18 listed");
    }
}

/// A server-first peer (as MySQL, SMTP, NATS): it greets on connect.
async fn greeting_peer(greeting: &'static [u8]) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            tokio::spawn(async move {
                let _ = s.write_all(greeting).await;
                let mut buf = [0u8; 1024];
                while let Ok(n) = s.read(&mut buf).await {
                    if n == 0 || s.write_all(&buf[..n]).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    addr
}

#[tokio::test]
async fn a_server_first_protocol_on_its_declared_port_is_not_held_for_detection() {
    let greeting: &[u8] = b"\x4a\x00\x00\x00\x0a10.11.19-MariaDB\x00";
    let server = greeting_peer(greeting).await;
    let mesh = TcpMesh::start("db", 3306, "mysql", server).await;
    let mut client = TcpStream::connect(mesh.upstream()).await.unwrap();
    let mut got = vec![0u8; greeting.len()];
    client.read_exact(&mut got).await.unwrap();
    assert_eq!(got, greeting);
    drop(client);
    // The log says the port was declared: no detection ran.
    let logged = wait_for(Duration::from_secs(5), || async {
        mesh.web
            .logs()
            .lines()
            .any(|l| l.contains(r#""protocol":"tcp""#) && l.contains(r#""detected":"declared""#))
    })
    .await;
    assert!(logged.is_ok(), "{}", mesh.web.logs());
}

#[tokio::test]
async fn misbehaving_clients_get_their_own_outcome_and_disturb_nobody() {
    let mesh = TcpMesh::start("echo", 7777, "tcp", echo_peer().await).await;
    let upstream = mesh.upstream();

    // Garbage is carried as it is.
    let garbage: Vec<u8> = (0..50_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    echoes(upstream, &garbage).await;

    // 1,000 idle connections are held in bounded memory, and the next client
    // is still served.
    let before = rss_kib(mesh.web.pid());
    let mut idle_clients = Vec::new();
    for _ in 0..1000 {
        idle_clients.push(TcpStream::connect(upstream).await.unwrap());
    }
    // Every one of them is through to the server (a round trip on the last).
    let last = idle_clients.last_mut().unwrap();
    last.write_all(b"x").await.unwrap();
    last.read_exact(&mut [0u8; 1]).await.unwrap();
    echoes(upstream, b"still here").await;
    let after = rss_kib(mesh.web.pid());
    let per_connection = after.saturating_sub(before) / 1000;
    eprintln!("web's proxy: {before} KiB, then {after} KiB with 1,000 idle opaque connections ({per_connection} KiB each)");
    assert!(
        per_connection < 64,
        "{per_connection} KiB per idle connection ({before} -> {after} KiB)"
    );
    drop(idle_clients);

    // A reset from the server reaches the client as a reset, after what was sent.
    let mut r = TcpStream::connect(upstream).await.unwrap();
    r.write_all(b"RESET please").await.unwrap();
    let mut got = Vec::new();
    let mut chunk = [0u8; 64];
    let outcome = loop {
        match r.read(&mut chunk).await {
            Ok(0) => break Ok(()),
            Ok(n) => got.extend_from_slice(&chunk[..n]),
            Err(e) => break Err(e.kind()),
        }
    };
    assert_eq!(
        outcome,
        Err(std::io::ErrorKind::ConnectionReset),
        "got {:?}",
        String::from_utf8_lossy(&got)
    );

    // And the next client is served as if none of it happened.
    echoes(upstream, b"done").await;
}

#[tokio::test]
async fn a_client_that_sends_nothing_is_closed_after_the_idle_timeout() {
    let idle = "---\napiVersion: policy.remora.dev/v1alpha1\nkind: TrafficPolicy\n\
                metadata: {name: echo-idle, namespace: default}\n\
                spec:\n  targetRef: {kind: Service, name: echo}\n  timeouts: {idle: 1s}\n";
    let mesh = TcpMesh::start_with("echo", 7777, "tcp", echo_peer().await, idle).await;
    let mut quiet = TcpStream::connect(mesh.upstream()).await.unwrap();
    let ended = tokio::time::timeout(Duration::from_secs(20), quiet.read(&mut [0u8; 8])).await;
    assert!(
        matches!(ended, Ok(Ok(0)) | Ok(Err(_))),
        "idle connection not closed: {ended:?}"
    );
    // Both proxies of the hop apply the Service's idle timeout, and either
    // may reach it first (the other then sees the connection end).
    let idle = r#""end":"idle_timeout""#;
    let logged = wait_for(Duration::from_secs(5), || async {
        mesh.web.logs().contains(idle) || mesh.server.logs().contains(idle)
    })
    .await;
    assert!(
        logged.is_ok(),
        "{}\n{}",
        mesh.web.logs(),
        mesh.server.logs()
    );
}

/// Resident memory of a process, in KiB.
fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap()
}

/// `rabbitmq-server` on loopback ports of its own (AMQP, distribution, epmd),
/// with its files in a folder of its own; stopped with `rabbitmqctl stop`, and
/// the epmd started for it by its pid, when dropped.
struct RabbitMq {
    dir: tempfile::TempDir,
    child: std::process::Child,
    /// Started here rather than by the broker (which would leave it running as
    /// a daemon of its own): stopped by its pid.
    epmd: std::process::Child,
    env: Vec<(String, String)>,
    node: String,
    port: u16,
}

impl RabbitMq {
    fn start() -> RabbitMq {
        let dir = tempfile::tempdir().unwrap();
        for sub in ["mnesia", "log"] {
            std::fs::create_dir_all(dir.path().join(sub)).unwrap();
        }
        std::fs::write(dir.path().join("enabled_plugins"), "[].\n").unwrap();
        // The server runs as the `rabbitmq` user: it must own its folder.
        let chown = Command::new("chown")
            .args(["-R", "rabbitmq:rabbitmq"])
            .arg(dir.path())
            .status()
            .unwrap();
        assert!(
            chown.success(),
            "chown rabbitmq (is rabbitmq-server installed?)"
        );
        let port = free_port();
        let epmd_port = free_port();
        let epmd = Command::new("epmd")
            .args(["-address", "127.0.0.1", "-port", &epmd_port.to_string()])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("epmd (installed with rabbitmq-server)");
        let node = format!("remora{}x{port}@localhost", std::process::id());
        let d = |sub: &str| dir.path().join(sub).to_string_lossy().into_owned();
        let env: Vec<(String, String)> = [
            ("RABBITMQ_NODE_PORT", port.to_string()),
            ("RABBITMQ_NODE_IP_ADDRESS", "127.0.0.1".to_owned()),
            ("RABBITMQ_DIST_PORT", free_port().to_string()),
            ("ERL_EPMD_PORT", epmd_port.to_string()),
            ("RABBITMQ_NODENAME", node.clone()),
            ("RABBITMQ_MNESIA_BASE", d("mnesia")),
            ("RABBITMQ_LOG_BASE", d("log")),
            ("RABBITMQ_PID_FILE", d("rabbitmq.pid")),
            ("RABBITMQ_ENABLED_PLUGINS_FILE", d("enabled_plugins")),
            ("RABBITMQ_CONFIG_FILE", d("rabbitmq")),
            ("HOME", d("")),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
        let child = Command::new("rabbitmq-server")
            .envs(env.iter().map(|(k, v)| (k, v)))
            .stdout(std::fs::File::create(dir.path().join("out.log")).unwrap())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("rabbitmq-server (scripts/test installs it)");
        RabbitMq {
            dir,
            child,
            epmd,
            env,
            node,
            port,
        }
    }

    fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }
}

impl Drop for RabbitMq {
    fn drop(&mut self) {
        let envs = || self.env.iter().map(|(k, v)| (k, v));
        let _ = Command::new("rabbitmqctl")
            .args(["-n", &self.node, "stop"])
            .envs(envs())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status();
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = self.epmd.kill();
        let _ = self.epmd.wait();
        let _ = &self.dir;
    }
}

/// Publishes a message to a queue through `addr` and gets it back (pika).
fn amqp_round_trip(addr: SocketAddr) -> Result<String, String> {
    let script = format!(
        "import pika\n\
         c = pika.BlockingConnection(pika.ConnectionParameters('127.0.0.1', {port}, connection_attempts=1, socket_timeout=5))\n\
         ch = c.channel()\n\
         ch.queue_declare(queue='mesh')\n\
         ch.basic_publish(exchange='', routing_key='mesh', body=b'hello amqp')\n\
         for _ in range(50):\n\
         \x20   m = ch.basic_get(queue='mesh', auto_ack=True)\n\
         \x20   if m[0] is not None:\n\
         \x20       print(m[2].decode()); break\n\
         c.close()\n",
        port = addr.port()
    );
    let out = Command::new("python3")
        .args(["-c", &script])
        .output()
        .map_err(|e| e.to_string())?;
    let stdout = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    if out.status.success() {
        Ok(stdout)
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

#[tokio::test]
async fn rabbitmq_through_the_mesh_over_mtls() {
    let rabbit = RabbitMq::start();
    let up = wait_for(Duration::from_secs(90), || async {
        amqp_round_trip(rabbit.addr()).is_ok()
    })
    .await;
    assert!(
        up.is_ok(),
        "rabbitmq-server did not start: {}",
        std::fs::read_to_string(rabbit.dir.path().join("out.log")).unwrap_or_default()
    );
    let mesh = TcpMesh::start("rabbitmq", 5672, "amqp", rabbit.addr()).await;
    assert_eq!(amqp_round_trip(mesh.upstream()).unwrap(), "hello amqp");
    let text = metrics(&mesh.server).await;
    let inbound = format!(r#"direction="inbound",destination=":5672",peer_identity="{WEB}""#);
    assert!(
        sample(&text, "remora_tcp_hop_connections_opened_total", &inbound).unwrap_or(0.0) >= 1.0,
        "{text}"
    );
}

#[tokio::test]
async fn connect_through_the_outbound_listener_tunnels_to_an_opaque_port() {
    let redis = Redis::start().await;
    let mesh = TcpMesh::start("redis", 6379, "redis", redis.addr()).await;
    let mut c = TcpStream::connect(mesh.web.outbound).await.unwrap();
    c.write_all(b"CONNECT redis.default:6379 HTTP/1.1\r\nHost: redis.default:6379\r\n\r\n")
        .await
        .unwrap();
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        let mut byte = [0u8; 1];
        assert_eq!(c.read(&mut byte).await.unwrap(), 1, "{head:?}");
        head.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&head);
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    c.write_all(b"PING\r\n").await.unwrap();
    let mut pong = [0u8; 7];
    c.read_exact(&mut pong).await.unwrap();
    assert_eq!(&pong, b"+PONG\r\n");

    // An unknown Service, and an HTTP port, are refused with a reason.
    for (target, status) in [("nowhere.default:6379", "404"), ("web.default:80", "405")] {
        let mut c = TcpStream::connect(mesh.web.outbound).await.unwrap();
        c.write_all(format!("CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n\r\n").as_bytes())
            .await
            .unwrap();
        let mut buf = vec![0u8; 256];
        let n = c.read(&mut buf).await.unwrap();
        let reply = String::from_utf8_lossy(&buf[..n]);
        assert!(
            reply.starts_with(&format!("HTTP/1.1 {status}")),
            "{target}: {reply}"
        );
    }
}

#[tokio::test]
async fn a_half_closed_client_still_gets_its_reply() {
    // A server that reads until the client is done sending, then answers.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let server = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut got = Vec::new();
                if s.read_to_end(&mut got).await.is_ok() {
                    let _ = s
                        .write_all(format!("got {} bytes", got.len()).as_bytes())
                        .await;
                }
            });
        }
    });
    let mesh = TcpMesh::start("counter", 7000, "tcp", server).await;
    let mut c = TcpStream::connect(mesh.upstream()).await.unwrap();
    c.write_all(&[7u8; 100_000]).await.unwrap();
    c.shutdown().await.unwrap();
    let mut reply = String::new();
    c.read_to_string(&mut reply).await.unwrap();
    assert_eq!(reply, "got 100000 bytes");
}

#[tokio::test]
async fn connections_fail_over_to_a_live_endpoint_and_the_dead_one_is_ejected() {
    let redis = Redis::start().await;
    let policy = "---\napiVersion: policy.remora.dev/v1alpha1\nkind: TrafficPolicy\n\
                  metadata: {name: redis, namespace: default}\n\
                  spec:\n  targetRef: {kind: Service, name: redis}\n\
                  \x20 timeouts: {connect: 300ms}\n\
                  \x20 outlierDetection: {consecutiveFailures: 2, baseEjectionTime: 30s, maxEjectionPercent: 50}\n";
    let mesh = TcpMesh::start_with("redis", 6379, "redis", redis.addr(), policy).await;
    // A second endpoint of the Service, then the first one dies.
    let token = mesh.root.path().join("redis.token");
    let app = mesh.server.spec.app;
    let second = Proxy::start(
        ProxySpec::new("redis", mesh.cp.xds_addr, app)
            .token_file(&token)
            .extra(&format!("app_ports: {{6379: \"{}\"}}\n", redis.addr())),
    )
    .await
    .unwrap();
    second.wait_ready(Duration::from_secs(10)).await.unwrap();
    wait_config(&mesh.web, Duration::from_secs(10), "both endpoints", |d| {
        support::endpoint_count(d, "redis") == 2
    })
    .await;
    // The first one hangs (stopped: connections are accepted by the kernel and
    // never answered) while its xDS stream stays registered.
    let stopped = Command::new("kill")
        .args(["-STOP", &mesh.server.pid().to_string()])
        .status()
        .unwrap();
    assert!(stopped.success());
    // Every connection still works: a failed connect moves to the other one.
    for i in 0..20 {
        let out = redis_cli(mesh.web.upstreams[0], &["PING"]);
        assert_eq!(out.as_deref(), Ok("PONG"), "connection {i}");
    }
    let text = metrics(&mesh.web).await;
    assert!(
        sample(&text, "remora_ejections_total", "redis").unwrap_or(0.0) >= 1.0,
        "{text}"
    );
    drop(second);
    // SIGKILL ends a stopped process too (Proxy's drop).
}

/// A workload certificate for `account`, signed with the control plane's CA
/// by openssl (as a peer that holds a real mesh identity would have).
fn workload_cert(cp: &ControlPlane, dir: &std::path::Path, account: &str) -> (String, String) {
    let (key, csr, crt, ext) = (
        dir.join(format!("{account}.key")),
        dir.join(format!("{account}.csr")),
        dir.join(format!("{account}.crt")),
        dir.join(format!("{account}.ext")),
    );
    let s = |p: &std::path::Path| p.to_string_lossy().into_owned();
    let ok = Command::new("openssl")
        .args([
            "req",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
        ])
        .args([
            "-subj",
            &format!("/CN={account}"),
            "-keyout",
            &s(&key),
            "-out",
            &s(&csr),
        ])
        .output()
        .unwrap();
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    std::fs::write(
        &ext,
        format!(
            "subjectAltName=URI:spiffe://cluster.local/ns/default/sa/{account}\n\
             extendedKeyUsage=serverAuth,clientAuth\n"
        ),
    )
    .unwrap();
    let data = cp.data_dir();
    let ok = Command::new("openssl")
        .args([
            "x509",
            "-req",
            "-in",
            &s(&csr),
            "-days",
            "1",
            "-CAcreateserial",
        ])
        .args([
            "-CA",
            &s(&data.join("ca.crt")),
            "-CAkey",
            &s(&data.join("ca.key")),
        ])
        .args(["-extfile", &s(&ext), "-out", &s(&crt)])
        .output()
        .unwrap();
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    (s(&crt), s(&key))
}

/// Speaks opaque TCP to `inbound` as a peer proxy would (mTLS, ALPN
/// remora-tcp/1, the port header), sends `payload`; what came back.
fn as_peer(inbound: SocketAddr, cert: &(String, String), port: u16, payload: &[u8]) -> String {
    use std::io::Write;
    let mut child = Command::new("openssl")
        .args([
            "s_client",
            "-quiet",
            "-nocommands",
            "-no_ign_eof",
            "-alpn",
            "remora-tcp/1",
        ])
        .args([
            "-connect",
            &inbound.to_string(),
            "-cert",
            &cert.0,
            "-key",
            &cert.1,
        ])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut input = b"RMT1".to_vec();
    input.extend_from_slice(&port.to_be_bytes());
    input.extend_from_slice(payload);
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(&input).unwrap();
    // Half a second for the answer, then end the input (s_client quits).
    std::thread::sleep(Duration::from_millis(500));
    drop(stdin);
    let out = child.wait_with_output().unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[tokio::test]
async fn a_peer_with_a_mesh_identity_reaches_only_the_declared_tcp_ports() {
    let redis = Redis::start().await;
    let mesh = TcpMesh::start("redis", 6379, "redis", redis.addr()).await;
    let cert = workload_cert(&mesh.cp, mesh.root.path(), "web");
    // The declared port: a real peer's view (the positive control).
    let pong = as_peer(mesh.server.inbound, &cert, 6379, b"PING\r\n");
    assert!(
        pong.contains("+PONG"),
        "got {pong:?}\n{}",
        mesh.server.logs()
    );
    // Any other port of the app's host (the proxy's own admin, the HTTP app,
    // Redis on its real port): refused before anything is reached.
    for port in [mesh.server.admin.port(), redis.port, 22] {
        let got = as_peer(
            mesh.server.inbound,
            &cert,
            port,
            b"GET /ready HTTP/1.0\r\n\r\nPING\r\n",
        );
        assert!(got.is_empty(), "port {port} answered {got:?}");
    }
    let logged = wait_for(Duration::from_secs(5), || async {
        mesh.server
            .logs()
            .matches(r#""end":"no_destination""#)
            .count()
            >= 3
    })
    .await;
    assert!(logged.is_ok(), "{}", mesh.server.logs());
}

#[tokio::test]
async fn an_upstream_port_for_an_http_service_carries_its_requests() {
    // `web` calls the HTTP Service `orders` (no cluster IP) through a local
    // port: requests with any Host go to orders.
    let root = tempfile::tempdir().unwrap();
    let config = config_dir(root.path());
    write_config(&config, "services.yaml", support::WEB_AND_ORDERS);
    let cp = ControlPlane::start_secure(&config, &[]).await.unwrap();
    let (web_app, orders_app) = (
        remora_tests::app::TestApp::http("web"),
        remora_tests::app::TestApp::http("orders"),
    );
    let orders = support::meshed_proxy(&cp, root.path(), "orders", &orders_app).await;
    let token = root.path().join("web.token");
    std::fs::write(&token, mint_token(&cp.data_dir(), "default", "web")).unwrap();
    let web = Proxy::start(
        ProxySpec::new("web", cp.xds_addr, web_app.addr)
            .token_file(&token)
            .extra("upstreams: [{service: orders, port: 80, listen: \"127.0.0.1:0\"}]\n"),
    )
    .await
    .unwrap();
    web.wait_ready(Duration::from_secs(10)).await.unwrap();
    wait_config(&web, Duration::from_secs(10), "orders' endpoint", |d| {
        support::endpoint_count(d, "orders") == 1
    })
    .await;
    let reply = remora_tests::harness::http::get_with_host(web.upstreams[0], "localhost", "/hello")
        .await
        .unwrap();
    assert_eq!(reply.status, 200, "{}\n{}", reply.text(), web.logs());
    assert_eq!(orders_app.requests(), 1);
    drop(orders);
}
