//! `remora stat`: the control plane's view of every hop, from what the proxies
//! report. A known load (100 req/s, one answer in ten a 503) shows as a 90%
//! success rate at 100 requests per second on the web -> orders edge, in the
//! table, in JSON and under `--watch`. A split Service shows its own edge and
//! its backends' (a backend at weight 0 kept for the window); an unknown one is
//! an error; a denial by authorization is a failure; `--watch` ends quietly
//! when its reader goes and writes no control codes to a file; an error is said
//! once.

mod support;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use remora_tests::app::TestApp;
use remora_tests::harness::{bin_path, Proxy, ProxySpec};
use remora_tests::load::{Load, LoadSpec};
use support::*;

fn stat(api: std::net::SocketAddr, args: &[&str]) -> String {
    let out = Command::new(bin_path("remora").unwrap())
        .arg("stat")
        .args(["--api", &api.to_string()])
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "remora stat {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stat_shows_the_success_rate_and_rate_of_a_known_load() {
    let (_root, cp) = control_plane_with(&[("web", 80, "http"), ("orders", 80, "http")], &[]).await;
    let web_app = TestApp::http("web");
    let orders_app = TestApp::http("orders");
    orders_app.set_failures(10.0, 503, tonic::Code::Unavailable);
    // Reports every half second, so a short window holds several.
    let often = "report_interval_ms: 500\n";
    let web = Proxy::start(ProxySpec::new("web", cp.xds_addr, web_app.addr).extra(often))
        .await
        .unwrap();
    let _orders = Proxy::start(ProxySpec::new("orders", cp.xds_addr, orders_app.addr).extra(often))
        .await
        .unwrap();
    wait_config(&web, Duration::from_secs(10), "orders", |d| {
        endpoint_count(d, "orders") == 1
    })
    .await;

    let started = Instant::now();
    let load = Load::start(
        LoadSpec::rate(web.outbound, "orders", 100.0)
            .connections(4)
            .duration(Duration::from_secs(7)),
    );
    // A 3 s window that lies wholly inside the load.
    tokio::time::sleep_until((started + Duration::from_millis(4500)).into()).await;
    let json = stat(cp.api_addr, &["--window", "3s", "-o", "json", "orders"]);
    let table = stat(cp.api_addr, &["--window", "3s", "--namespace", "default"]);
    let report = load.wait().await;

    let view: serde_json::Value = serde_json::from_str(&json).unwrap();
    let edges = view["edges"].as_array().unwrap();
    assert_eq!(edges.len(), 1, "{json}");
    let edge = &edges[0];
    assert_eq!(edge["source"]["service"], "web");
    assert_eq!(edge["destination"]["service"], "orders");
    // The app fails exactly one request in ten.
    let success = edge["success_rate"].as_f64().unwrap();
    assert!((success - 0.9).abs() < 0.01, "{json}");
    let achieved = report.total as f64 / report.duration.as_secs_f64();
    let rps = edge["requests_per_second"].as_f64().unwrap();
    assert!(
        (rps - achieved).abs() < achieved * 0.05,
        "stat says {rps:.1} req/s, the load ran at {achieved:.1}: {json}"
    );
    assert!(edge["latency_ms_p50"].as_f64() > Some(0.0), "{json}");
    assert!(edge["latency_ms_p99"].as_f64() >= edge["latency_ms_p50"].as_f64());
    assert!(edge["overhead_ms"].as_f64() > Some(0.0), "{json}");
    assert!(edge["inbound_overhead_ms"].as_f64() > Some(0.0), "{json}");

    let mut lines = table.lines();
    let header = lines.next().unwrap();
    for column in [
        "SRC -> DST",
        "SUCCESS",
        "RPS",
        "P50",
        "P95",
        "P99",
        "OVERHEAD",
    ] {
        assert!(header.contains(column), "{table}");
    }
    let row = lines.next().unwrap();
    assert!(row.starts_with("web.default -> orders.default"), "{table}");
    let success: f64 = row
        .split_whitespace()
        .find_map(|c| c.strip_suffix('%'))
        .and_then(|p| p.parse().ok())
        .unwrap();
    assert!((success - 90.0).abs() < 1.0, "{table}");

    // --watch redraws until interrupted.
    let mut watch = Command::new(bin_path("remora").unwrap())
        .args(["stat", "--watch", "--api", &cp.api_addr.to_string()])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = watch.stdout.take().unwrap();
    let screens = tokio::task::spawn_blocking(move || {
        BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
            .filter(|l| l.contains("SRC -> DST"))
            .take(2)
            .count()
    });
    let screens = tokio::time::timeout(Duration::from_secs(10), screens).await;
    watch.kill().unwrap();
    watch.wait().unwrap();
    assert_eq!(screens.unwrap().unwrap(), 2, "two screens from --watch");
}

/// `remora stat ARGS` against `api`: its exit status, stdout and stderr.
fn stat_run(api: std::net::SocketAddr, args: &[&str]) -> std::process::Output {
    Command::new(bin_path("remora").unwrap())
        .arg("stat")
        .args(["--api", &api.to_string()])
        .args(args)
        .output()
        .unwrap()
}

/// Polls `remora stat -o json ARGS` until `check` holds; the last view.
async fn wait_view(
    api: std::net::SocketAddr,
    args: &[&str],
    what: &str,
    check: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    let mut json: Vec<&str> = vec!["-o", "json"];
    json.extend_from_slice(args);
    let view = || serde_json::from_str::<serde_json::Value>(&stat(api, &json)).unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let v = view();
        if check(&v) {
            return v;
        }
        assert!(Instant::now() < deadline, "never {what}: {v:#}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// The edge `source -> destination` of `list` (`edges` or `parents`).
fn find<'a>(
    view: &'a serde_json::Value,
    list: &str,
    source: &str,
    destination: &str,
) -> Option<&'a serde_json::Value> {
    view[list]
        .as_array()?
        .iter()
        .find(|e| e["source"]["service"] == source && e["destination"]["service"] == destination)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stat_of_a_split_service_shows_its_edge_and_its_backends_even_at_weight_zero() {
    let mesh = SplitMesh::start(50, 50).await;
    let api = mesh.cp.api_addr;
    let load = Load::start(LoadSpec::rate(mesh.web.outbound, "orders", 100.0).connections(4));
    let view = wait_view(api, &["orders"], "both backends of orders", |v| {
        find(v, "edges", "web", "orders-v1").is_some()
            && find(v, "edges", "web", "orders-v2").is_some()
            && find(v, "parents", "web", "orders").is_some()
    })
    .await;
    let parent = find(&view, "parents", "web", "orders").unwrap();
    let backends: u64 = ["orders-v1", "orders-v2"]
        .iter()
        .map(|b| {
            find(&view, "edges", "web", b).unwrap()["requests"]
                .as_u64()
                .unwrap()
        })
        .sum();
    assert_eq!(parent["requests"].as_u64(), Some(backends), "{view:#}");
    for backend in ["orders-v1", "orders-v2"] {
        let edge = find(&view, "edges", "web", backend).unwrap();
        assert_eq!(edge["parent"]["service"], "orders", "{view:#}");
    }
    let table = stat(api, &["orders"]);
    for line in [
        "web.default -> orders.default ",
        "web.default -> orders.default -> orders-v1.default",
        "web.default -> orders.default -> orders-v2.default",
    ] {
        assert!(table.contains(line), "{line}:\n{table}");
    }

    // orders-v2's weight goes to 0: its proxy-side series goes with it, but
    // what it carried stays in the window.
    mesh.set_split(100, 0);
    mesh.wait_split(Duration::from_secs(10), 100, 0).await;
    // Past the proxies' next report (every 2 s), which no longer has it.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let view = wait_view(api, &["orders", "--window", "60s"], "a view", |_| true).await;
    let zero = find(&view, "edges", "web", "orders-v2");
    assert!(
        zero.is_some_and(|e| e["requests"].as_u64() > Some(0)),
        "orders-v2 at weight 0 lost its edge inside the window: {view:#}"
    );
    let _ = load.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stat_of_an_unknown_service_says_so_and_fails() {
    let (_root, cp) = control_plane_with(&[("web", 80, "http"), ("orders", 80, "http")], &[]).await;
    let out = stat_run(cp.api_addr, &["nosuch"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("unknown service `nosuch`"), "{stderr}");
    assert!(
        stderr.contains("orders.default"),
        "names what exists: {stderr}"
    );
    let known = stat_run(cp.api_addr, &["orders"]);
    assert!(
        known.status.success(),
        "a known Service without traffic is fine"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_denied_by_authorization_counts_as_a_failure() {
    let (root, cp) = control_plane_with(&[("web", 80, "http"), ("orders", 80, "http")], &[]).await;
    let config = config_dir(root.path());
    write_config(
        &config,
        "deny.yaml",
        "apiVersion: policy.remora.dev/v1alpha1\nkind: AuthorizationPolicy\n\
         metadata: {name: no-admin, namespace: default}\n\
         spec:\n  targetRef: {kind: Service, name: orders}\n  action: DENY\n  rules:\n\
         \x20 - to: {paths: [\"/admin\"]}\n",
    );
    let (web_app, orders_app) = (TestApp::http("web"), TestApp::http("orders"));
    let often = "report_interval_ms: 500\n";
    let mut proxies = Vec::new();
    for (service, app) in [("web", &web_app), ("orders", &orders_app)] {
        let token = root.path().join(format!("{service}.token"));
        std::fs::write(&token, mint_token(&cp.data_dir(), "default", service)).unwrap();
        let spec = ProxySpec::new(service, cp.xds_addr, app.addr)
            .token_file(&token)
            .extra(often);
        let proxy = Proxy::start(spec).await.unwrap();
        proxy.wait_ready(Duration::from_secs(10)).await.unwrap();
        proxies.push(proxy);
    }
    let web = &proxies[0];
    wait_config(web, Duration::from_secs(10), "orders", |d| {
        endpoint_count(d, "orders") == 1
    })
    .await;
    let denied = remora_tests::harness::wait_for(Duration::from_secs(5), || async {
        remora_tests::harness::http::get_with_host(web.outbound, "orders", "/admin")
            .await
            .is_ok_and(|r| r.status == 403)
    })
    .await;
    assert!(denied.is_ok(), "the DENY policy never applied");

    let report = Load::start(
        LoadSpec::rate(web.outbound, "orders", 50.0)
            .path("/admin")
            .duration(Duration::from_secs(2)),
    )
    .wait()
    .await;
    let total = report.total as u64;
    assert!(total > 0);
    assert_eq!(
        report.samples.iter().filter(|s| s.status == 403).count(),
        report.total
    );
    let view = wait_view(cp.api_addr, &["orders"], "the denied requests", |v| {
        find(v, "edges", "web", "orders").is_some_and(|e| e["requests"].as_u64() >= Some(total))
    })
    .await;
    let edge = find(&view, "edges", "web", "orders").unwrap();
    assert!(
        edge["success_rate"].as_f64().unwrap() < 0.01,
        "every request was denied: {view:#}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_stops_quietly_when_its_reader_goes_and_writes_no_control_codes_to_a_file() {
    let (_root, cp) = control_plane_with(&[("web", 80, "http")], &[]).await;
    let api = cp.api_addr.to_string();

    // `remora stat --watch | head -1`.
    let mut watch = Command::new(bin_path("remora").unwrap())
        .args(["stat", "--watch", "--api", &api])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = watch.stdout.take().unwrap();
    let first = tokio::task::spawn_blocking(move || {
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line).map(|_| line)
        // The reader (and the pipe's read end) is dropped here.
    })
    .await
    .unwrap()
    .unwrap();
    assert!(first.contains("SRC -> DST"), "{first:?}");
    let exited = tokio::task::spawn_blocking(move || {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(status) = watch.try_wait().unwrap() {
                let mut stderr = String::new();
                let _ =
                    std::io::Read::read_to_string(&mut watch.stderr.take().unwrap(), &mut stderr);
                return Some((status, stderr));
            }
            if Instant::now() > deadline {
                let _ = watch.kill();
                let _ = watch.wait();
                return None;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    })
    .await
    .unwrap();
    let (status, stderr) = exited.expect("--watch kept running after its reader left");
    assert!(status.success(), "{status}: {stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");

    // `remora stat --watch > file`.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("stat.txt");
    let mut watch = Command::new(bin_path("remora").unwrap())
        .args(["stat", "--watch", "--api", &api])
        .stdout(std::fs::File::create(&path).unwrap())
        .spawn()
        .unwrap();
    let screens = remora_tests::harness::wait_for(Duration::from_secs(10), || async {
        std::fs::read_to_string(&path).is_ok_and(|t| t.matches("SRC -> DST").count() >= 2)
    })
    .await;
    watch.kill().unwrap();
    watch.wait().unwrap();
    assert!(screens.is_ok(), "two screens from --watch");
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(!text.contains('\x1b'), "control codes in a file: {text:?}");
}

#[test]
fn an_unreachable_control_plane_is_said_once() {
    // A port nothing listens on: bound, then let go.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let out = stat_run(port, &[]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{stderr}");
    assert_eq!(
        stderr.to_lowercase().matches("connection refused").count(),
        1,
        "{stderr}"
    );
}
