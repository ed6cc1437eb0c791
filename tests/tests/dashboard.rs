//! The dashboard: the control plane's API port serves a page that shows the
//! running demo's services as a graph with its edges and their golden signals,
//! and each service's proxies. Loaded in headless Chromium (Debian's `chromium`;
//! `scripts/test` installs it): the rendered DOM must hold every service and
//! edge, and a screenshot is kept in `target/artifacts/dashboard.png`.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use remora_tests::harness::{bin_path, http, wait_for};

/// `remora demo` kept running (one step, orders split 50/50), stopped with
/// SIGINT (as Ctrl-C) when dropped.
struct Demo {
    child: Child,
    api: Option<SocketAddr>,
}

impl Demo {
    fn start() -> Demo {
        let mut child = Command::new(bin_path("remora").unwrap())
            .args(["demo", "--forever", "--steps", "50", "--step-seconds", "1"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        // Lines come through a channel, so a demo that goes quiet fails the
        // test at the deadline instead of hanging it. The thread keeps draining
        // stdout so the demo never blocks on a full pipe.
        let stdout = child.stdout.take().unwrap();
        let (lines, received) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = lines.send(line);
            }
        });
        let mut api = None;
        let deadline = Instant::now() + Duration::from_secs(90);
        let mut demo = Demo { child, api: None };
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let Ok(line) = received.recv_timeout(left) else {
                panic!("the demo did not say its mesh keeps running within 90 s");
            };
            if let Some(rest) = line.split("API http://").nth(1) {
                api = rest.split_whitespace().next().and_then(|a| a.parse().ok());
            }
            if line.contains("keeps running") {
                break;
            }
        }
        demo.api = Some(api.expect("the demo prints its API address"));
        demo
    }
}

impl Drop for Demo {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-INT", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Headless Chromium as the machine's probe starts it: no sandbox (root), no
/// background connections (the network is closed), a fresh profile.
fn chromium(profile: &Path, args: &[&str]) -> std::process::Output {
    let out = Command::new("chromium")
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--window-size=1280,900",
            // Time for the page's first fetches and drawing.
            "--virtual-time-budget=5000",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(args)
        .output()
        .expect("chromium (Debian's package; scripts/test installs it)");
    assert!(
        out.status.success(),
        "chromium {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn artifacts() -> PathBuf {
    // CARGO_TARGET_TMPDIR is <target>/tmp.
    let target = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .unwrap()
        .to_owned();
    let dir = target.join("artifacts");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_shows_the_demos_services_and_edges() {
    let demo = tokio::task::spawn_blocking(Demo::start).await.unwrap();
    let api = demo.api.unwrap();
    // Both halves of the split carry traffic once the proxies have reported.
    let both = wait_for(Duration::from_secs(20), || async {
        http::get(api, "/api/v1/stat?window=30s")
            .await
            .ok()
            .and_then(|r| serde_json::from_slice::<serde_json::Value>(&r.body).ok())
            .is_some_and(|v| v["edges"].as_array().is_some_and(|e| e.len() == 2))
    })
    .await;
    assert!(
        both.is_ok(),
        "the demo's two edges never showed in /api/v1/stat"
    );

    let page = http::get(api, "/").await.unwrap();
    assert_eq!(page.status, 200);
    assert!(page
        .header("content-type")
        .is_some_and(|t| t.starts_with("text/html")));
    let html = String::from_utf8_lossy(&page.body);
    assert!(
        !html.contains("src=\"http") && !html.contains("href=\"http"),
        "the page loads nothing from elsewhere"
    );

    let profile = tempfile::tempdir().unwrap();
    let url = format!("http://{api}/dashboard");
    let dom = tokio::task::spawn_blocking({
        let profile = profile.path().to_owned();
        let url = url.clone();
        move || chromium(&profile, &["--dump-dom", &url])
    })
    .await
    .unwrap();
    let dom = String::from_utf8_lossy(&dom.stdout).into_owned();
    assert!(
        dom.contains("data-ready=\"true\""),
        "the page never drew:\n{dom}"
    );
    for service in ["web", "orders-v1", "orders-v2"] {
        assert!(
            dom.contains(&format!("data-service=\"{service}.default\"")),
            "service {service} missing:\n{dom}"
        );
    }
    for destination in ["orders-v1", "orders-v2"] {
        let edge =
            format!("data-source=\"web.default\" data-destination=\"{destination}.default\"");
        assert!(
            dom.contains(&edge),
            "edge web -> {destination} missing:\n{dom}"
        );
    }
    assert!(
        dom.contains(" rps · "),
        "edges are labelled with their rate:\n{dom}"
    );
    assert_eq!(
        dom.matches("class=\"proxy-row\"").count(),
        3,
        "one row per proxy:\n{dom}"
    );
    assert!(dom.contains("in sync"), "NACK state shown:\n{dom}");

    let screenshot = artifacts().join("dashboard.png");
    let _ = std::fs::remove_file(&screenshot);
    tokio::task::spawn_blocking({
        let profile = profile.path().to_owned();
        let arg = format!("--screenshot={}", screenshot.display());
        move || chromium(&profile, &[&arg, &url])
    })
    .await
    .unwrap();
    let png = std::fs::read(&screenshot).unwrap();
    assert!(
        png.starts_with(b"\x89PNG"),
        "not a PNG: {}",
        screenshot.display()
    );
    assert!(
        png.len() > 10_000,
        "a blank screenshot? {} bytes",
        png.len()
    );
    drop(demo);
}
