//! Proxyless gRPC: a client using gRPC's own xDS support (grpcio from PyPI, no
//! Remora proxy) takes Listener, RouteConfiguration, Clusters and endpoints
//! from the control plane and calls two plain gRPC servers directly. The
//! HTTPRoute's 80/20 split holds over 1,000 calls; the route file rewritten
//! while calls run moves the split with no failed call; gRPC NACKs nothing.
//!
//! The control plane runs as an operator runs it (no
//! `--allow-plaintext-proxies`): the client connects over mTLS with a
//! certificate from `remora certificate create`, named in its bootstrap's
//! `tls` channel credentials, and gRPC checks the control plane's certificate
//! by the host it dialled (`127.0.0.1`, then `localhost`). A client without a
//! certificate, in plaintext or over TLS, is refused and counted.
//!
//! Needs python3 with grpcio (scripts/test installs it).

mod support;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use remora_tests::harness::{bin_path, wait_for, wait_for_some, ControlPlane, Process};
use support::{config_dir, split_route, write_config};

const TARGET: &str = "xds:///orders.default.svc.cluster.local:80";
const NODE_ID: &str = "orders-client";
/// The identity `remora certificate create` gives the client.
const IDENTITY: &str = "spiffe://cluster.local/ns/default/sa/orders-client";
/// Calls in each measured window.
const CALLS: usize = 1000;
/// How far a measured share may be from the configured one: 5 points is about
/// four standard deviations over 1,000 calls at 20%.
const TOLERANCE: f64 = 0.05;
/// A sliding window this long, with the new split's share well over the old
/// one's, marks where the client started to follow a change.
const WINDOW: usize = 200;
/// Enough for the xDS exchange and for thousands of calls on a slow machine.
const WAIT: Duration = Duration::from_secs(90);

fn script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("scripts/xds_grpc_client.py")
}

/// A plain gRPC server answering `name`, and the port it listens on.
async fn server(name: &str) -> (Process, u16) {
    let mut command = Command::new("python3");
    command.arg(script()).args(["serve", name]);
    let dir = tempfile::tempdir().unwrap();
    let process = Process::spawn(name, command, dir).unwrap();
    let port = wait_for_some(Duration::from_secs(20), || async {
        process
            .logs()
            .lines()
            .find_map(|l| l.strip_prefix("serving ")?.trim().parse::<u16>().ok())
    })
    .await
    .unwrap_or_else(|e| panic!("{name} did not start ({e}):\n{}", process.logs()));
    (process, port)
}

/// orders (the Service the client calls) and orders-v1/v2, whose static
/// endpoints are the two servers.
fn services(v1: u16, v2: u16) -> String {
    let service = |name: &str, endpoint: Option<u16>| {
        let endpoints = endpoint
            .map(|p| format!("  endpoints: [{{address: 127.0.0.1, port: {p}}}]\n"))
            .unwrap_or_default();
        format!(
            "apiVersion: v1\nkind: Service\nmetadata: {{name: {name}, namespace: default}}\n\
             spec:\n  ports: [{{port: 80, appProtocol: grpc}}]\n{endpoints}"
        )
    };
    [
        service("orders", None),
        service("orders-v1", Some(v1)),
        service("orders-v2", Some(v2)),
    ]
    .join("---\n")
}

fn write_split(config: &Path, v1: u32, v2: u32) {
    write_config(
        config,
        "route.yaml",
        &split_route("orders", "orders", &[("orders-v1", v1), ("orders-v2", v2)]),
    );
}

/// The files `remora certificate create` wrote.
struct ClientCertificate {
    cert: PathBuf,
    key: PathBuf,
    ca: PathBuf,
}

/// Runs the real `remora certificate create` against the control plane's
/// data directory, as an operator would, for the client's identity.
fn create_certificate(cp: &ControlPlane, out_dir: &Path) -> ClientCertificate {
    let out = Command::new(bin_path("remora").unwrap())
        .args(["certificate", "create", "--data-dir"])
        .arg(cp.data_dir())
        .args([
            "--namespace",
            "default",
            "--service-account",
            "orders-client",
        ])
        .arg("--out-dir")
        .arg(out_dir)
        .args(["--ttl", "1h"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "remora certificate create failed: {stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let dir = std::fs::canonicalize(out_dir).unwrap();
    let files = ClientCertificate {
        cert: dir.join("cert.pem"),
        key: dir.join("key.pem"),
        ca: dir.join("ca.pem"),
    };
    assert!(stdout.contains(IDENTITY), "it says the identity: {stdout}");
    for file in [&files.cert, &files.key, &files.ca] {
        assert!(
            stdout.contains(&file.display().to_string()),
            "it says where {} is: {stdout}",
            file.display()
        );
    }
    let mode = std::fs::metadata(&files.key).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600, "the key is private");
    files
}

/// gRPC's xDS bootstrap (gRFC A27): the control plane at `server_uri` with
/// `channel_creds`, and a node that names its namespace as Remora proxies do.
fn write_bootstrap(
    dir: &Path,
    name: &str,
    node_id: &str,
    server_uri: &str,
    channel_creds: serde_json::Value,
) -> PathBuf {
    let file = dir.join(format!("{name}.json"));
    let json = serde_json::json!({
        "xds_servers": [{
            "server_uri": server_uri,
            "channel_creds": [channel_creds],
            "server_features": ["xds_v3"],
        }],
        "node": {
            "id": node_id,
            "cluster": node_id,
            "metadata": {"namespace": "default"},
        },
    });
    std::fs::write(&file, json.to_string()).unwrap();
    file
}

/// gRPC's `tls` channel credentials (gRFC A65) with the client's certificate.
fn mtls_creds(cert: &ClientCertificate) -> serde_json::Value {
    serde_json::json!({"type": "tls", "config": {
        "ca_certificate_file": cert.ca,
        "certificate_file": cert.cert,
        "private_key_file": cert.key,
    }})
}

/// The xDS client, calling `target` until killed, with gRPC's xDS trace on.
fn start_client(bootstrap: &Path, target: &str) -> Process {
    start_client_waiting(bootstrap, target, None)
}

/// As [`start_client`], giving up after `first_call` seconds when no config
/// comes.
fn start_client_waiting(bootstrap: &Path, target: &str, first_call: Option<u32>) -> Process {
    let mut command = Command::new("python3");
    command
        .arg(script())
        .args(["run", target])
        .args(first_call.map(|s| s.to_string()))
        .env("GRPC_XDS_BOOTSTRAP", bootstrap)
        .env("GRPC_TRACE", "xds_client")
        .env("GRPC_VERBOSITY", "debug");
    Process::spawn("grpc client", command, tempfile::tempdir().unwrap()).unwrap()
}

/// The client's calls so far: `Ok(server)` or `Err(code and details)`.
fn calls(client: &Process) -> Vec<Result<String, String>> {
    client
        .logs()
        .lines()
        .filter_map(|l| {
            if let Some(server) = l.strip_prefix("rpc ok ") {
                Some(Ok(server.trim().to_owned()))
            } else {
                l.strip_prefix("rpc fail ").map(|e| Err(e.to_owned()))
            }
        })
        .collect()
}

/// Waits until the client has made `n` calls and returns them all.
async fn at_least(client: &Process, n: usize) -> Vec<Result<String, String>> {
    let got = wait_for_some(WAIT, || async {
        let made = calls(client);
        (made.len() >= n).then_some(made)
    })
    .await;
    got.unwrap_or_else(|e| {
        panic!(
            "the client made {} of {n} calls ({e}); its log:\n{}",
            calls(client).len(),
            client.logs()
        )
    })
}

/// How many of `calls` `server` answered.
fn count(calls: &[Result<String, String>], server: &str) -> usize {
    calls
        .iter()
        .filter(|c| matches!(c, Ok(s) if s == server))
        .count()
}

fn share_of(calls: &[Result<String, String>], server: &str) -> f64 {
    count(calls, server) as f64 / calls.len() as f64
}

/// The first call from `from` on where a window of `WINDOW` calls gives
/// orders-v2 at least `share`: where the client follows the new split.
async fn converged(client: &Process, from: usize, share: f64) -> usize {
    let deadline = tokio::time::Instant::now() + WAIT;
    let mut checked = from;
    loop {
        let all = at_least(client, checked + WINDOW).await;
        for start in checked..=all.len() - WINDOW {
            if share_of(&all[start..start + WINDOW], "orders-v2") >= share {
                return start;
            }
        }
        checked = all.len() - WINDOW + 1;
        assert!(
            tokio::time::Instant::now() < deadline,
            "the client never followed the new split within {WAIT:?}; its log:\n{}",
            client.logs()
        );
    }
}

fn assert_no_failure(calls: &[Result<String, String>], client: &Process) {
    let failed: Vec<_> = calls.iter().filter_map(|c| c.as_ref().err()).collect();
    assert!(
        failed.is_empty(),
        "{} of {} calls failed, first: {:?}; the client's log:\n{}",
        failed.len(),
        calls.len(),
        failed.first(),
        client.logs()
    );
}

/// gRPC logs every rejected response ("will NACK") whatever the trace
/// settings; the control plane records the last NACK of each type per client.
async fn assert_no_nack(cp: &ControlPlane, client: &Process) {
    let logs = client.logs();
    for bad in ["will NACK", "error parsing ADS response"] {
        assert!(!logs.contains(bad), "the gRPC client said {bad:?}:\n{logs}");
    }
    assert!(
        logs.contains("received ADS response"),
        "no xDS trace in the client's log:\n{logs}"
    );
    let proxies = cp.proxies().await.unwrap();
    let me = proxies
        .as_array()
        .and_then(|list| list.iter().find(|p| p["node_id"] == NODE_ID))
        .unwrap_or_else(|| panic!("{NODE_ID} not in {proxies:#}"));
    assert_eq!(me["transport"], "mtls", "{me:#}");
    assert_eq!(me["identity"], IDENTITY, "{me:#}");
    assert!(me.get("warning").is_none(), "{me:#}");
    let types = me["types"].as_object().expect("types by type URL");
    assert_eq!(
        types.len(),
        4,
        "the client asked for all four types: {me:#}"
    );
    for (type_url, status) in types {
        assert!(status["last_nack"].is_null(), "{type_url}: {status:#}");
        assert!(!status["acked_version"].is_null(), "{type_url}: {status:#}");
    }
}

#[tokio::test]
async fn grpc_xds_client_follows_a_split_and_its_hot_changes_without_a_failed_call() {
    let root = tempfile::tempdir().unwrap();
    let config = config_dir(root.path());
    let (_v1, v1_port) = server("orders-v1").await;
    let (_v2, v2_port) = server("orders-v2").await;
    write_config(&config, "services.yaml", &services(v1_port, v2_port));
    write_split(&config, 80, 20);
    let cp = ControlPlane::start_secure(&config, &[]).await.unwrap();
    let cert = create_certificate(&cp, &root.path().join("grpc-certs"));
    let bootstrap = write_bootstrap(
        root.path(),
        "grpc-bootstrap",
        NODE_ID,
        &cp.xds_addr.to_string(),
        mtls_creds(&cert),
    );
    let client = start_client(&bootstrap, TARGET);

    // 80/20 over the first 1,000 calls (the first one waited for the config).
    let first = at_least(&client, CALLS).await;
    assert_no_failure(&first, &client);
    let v2 = share_of(&first[..CALLS], "orders-v2");
    assert!(
        (v2 - 0.2).abs() <= TOLERANCE,
        "orders-v2 got {:.1}% of {CALLS} calls, configured 20%",
        v2 * 100.0
    );

    // Hot change to 20/80 while the calls go on.
    let written = calls(&client).len();
    write_split(&config, 20, 80);
    let start = converged(&client, written, 0.6).await + WINDOW;
    let after = at_least(&client, start + CALLS).await;
    let v2 = share_of(&after[start..start + CALLS], "orders-v2");
    assert!(
        (v2 - 0.8).abs() <= TOLERANCE,
        "after the change orders-v2 got {:.1}% of {CALLS} calls, configured 80%",
        v2 * 100.0
    );

    // 0/100: orders-v1 leaves the route (gRPC drops its cluster).
    let written = after.len();
    write_split(&config, 0, 100);
    let start = converged(&client, written, 1.0).await + WINDOW;
    let last = at_least(&client, start + CALLS / 2).await;
    assert_eq!(
        count(&last[start..], "orders-v1"),
        0,
        "orders-v1 still got calls after the split moved away from it"
    );

    assert_no_failure(&last, &client);
    assert_no_nack(&cp, &client).await;

    // The short name works too from the Service's namespace; this client
    // dials the control plane as `localhost`, also in its certificate.
    let localhost = write_bootstrap(
        root.path(),
        "grpc-bootstrap-localhost",
        "orders-client-2",
        &format!("localhost:{}", cp.xds_addr.port()),
        mtls_creds(&cert),
    );
    let short = start_client(&localhost, "xds:///orders:80");
    let short_calls = at_least(&short, 20).await;
    assert_no_failure(&short_calls, &short);
    assert_eq!(count(&short_calls, "orders-v1"), 0);
}

#[tokio::test]
async fn a_grpc_xds_client_without_a_certificate_is_refused_and_counted() {
    let root = tempfile::tempdir().unwrap();
    let config = config_dir(root.path());
    write_config(&config, "services.yaml", &services(1, 2));
    let cp = ControlPlane::start_secure(&config, &[]).await.unwrap();
    let bundle = root.path().join("ca.pem");
    std::fs::write(
        &bundle,
        cp.api_get("/api/v1/trust-bundle").await.unwrap().text(),
    )
    .unwrap();
    let xds = cp.xds_addr.to_string();
    // In plaintext, and over TLS that verifies the control plane but presents
    // no certificate of its own.
    let plaintext = write_bootstrap(
        root.path(),
        "plaintext",
        "plaintext-client",
        &xds,
        serde_json::json!({"type": "insecure"}),
    );
    let tls_only = write_bootstrap(
        root.path(),
        "tls-only",
        "tls-client",
        &xds,
        serde_json::json!({"type": "tls", "config": {"ca_certificate_file": bundle}}),
    );
    let clients = [
        start_client_waiting(&plaintext, TARGET, Some(5)),
        start_client_waiting(&tls_only, TARGET, Some(5)),
    ];

    for client in &clients {
        let failed = wait_for(WAIT, || async { client.logs().contains("rpc fail") }).await;
        let logs = client.logs();
        assert!(failed.is_ok(), "the call never ended:\n{logs}");
        assert!(
            !logs.contains("rpc ok"),
            "a client without a certificate got config:\n{logs}"
        );
        assert!(
            logs.contains("requires a client certificate"),
            "gRPC logs why the control plane refused it:\n{logs}"
        );
    }
    let counted = wait_for_some(Duration::from_secs(10), || async {
        let refusals = cp.api_get("/api/v1/refusals").await.ok()?.json().ok()?;
        let n = refusals["counts"]["no_certificate"].as_u64()?;
        (n >= 2).then_some(refusals)
    })
    .await;
    let refusals = counted
        .unwrap_or_else(|e| panic!("two no_certificate refusals expected ({e}): {}", cp.logs()));
    assert!(
        refusals["latest"]
            .as_array()
            .unwrap()
            .iter()
            .all(|r| r["reason"] == "no_certificate"),
        "{refusals:#}"
    );
    let proxies = cp.proxies().await.unwrap();
    assert_eq!(proxies.as_array().map(Vec::len), Some(0), "{proxies:#}");
}

#[test]
fn certificate_create_refuses_a_data_directory_without_a_ca_and_makes_none() {
    let dir = tempfile::tempdir().unwrap();
    let wrong = dir.path().join("typo");
    let out_dir = dir.path().join("certs");
    let out = Command::new(bin_path("remora").unwrap())
        .args(["certificate", "create", "--data-dir"])
        .arg(&wrong)
        .args([
            "--namespace",
            "default",
            "--service-account",
            "orders-client",
        ])
        .arg("--out-dir")
        .arg(&out_dir)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(&wrong.display().to_string()) && stderr.contains("no CA"),
        "the error names the directory: {stderr}"
    );
    assert!(!wrong.exists(), "no CA was made");
    assert!(!out_dir.exists(), "nothing was written");
}
