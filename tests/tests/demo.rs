//! `remora demo` runs to completion on its own, exits 0 and leaves nothing behind.

use std::time::Duration;

use remora_tests::harness::bin_path;

#[test]
fn demo_runs_to_completion() {
    let remora = bin_path("remora").unwrap();
    let mut child = std::process::Command::new(remora)
        .args(["demo", "--step-seconds", "1"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(90);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            panic!("remora demo did not finish within 90 s");
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let output = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        status.success(),
        "exit {status}\nstdout:\n{stdout}\nstderr:\n{stderr}"
    );
    assert!(stdout.contains("step 5/5"), "{stdout}");
    assert!(stdout.contains("orders-v2 100%"), "{stdout}");
    assert!(stdout.contains("no failed request"), "{stdout}");

    // Nothing it started is still running.
    let pids: Vec<u32> = stdout
        .split("(pid ")
        .skip(1)
        .filter_map(|rest| rest.split(')').next()?.parse().ok())
        .collect();
    assert_eq!(
        pids.len(),
        4,
        "the demo names the pids of its 4 processes: {stdout}"
    );
    for pid in pids {
        let alive = std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .map(|stat| !stat.contains(") Z "))
            .unwrap_or(false);
        assert!(
            !alive,
            "process {pid} is still running after the demo exited"
        );
    }
}

#[test]
fn sigterm_stops_the_demo_and_everything_it_started() {
    use std::io::BufRead;
    let remora = bin_path("remora").unwrap();
    let mut child = std::process::Command::new(remora)
        .args(["demo", "--forever", "--step-seconds", "1"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut lines = std::io::BufReader::new(stdout).lines();
    let mut seen = String::new();
    for line in lines.by_ref() {
        let line = line.unwrap();
        seen.push_str(&line);
        seen.push('\n');
        if line.contains("keeps running") {
            break;
        }
    }
    let pids: Vec<u32> = seen
        .split("(pid ")
        .skip(1)
        .filter_map(|rest| rest.split(')').next()?.parse().ok())
        .collect();
    assert_eq!(pids.len(), 4, "{seen}");
    let term = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(term.success());
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while child.try_wait().unwrap().is_none() {
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            panic!("remora demo did not stop on SIGTERM");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    // Killed children are reaped by init once the demo is gone: give it a moment.
    let gone = |pid: u32| {
        std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .map(|stat| stat.contains(") Z "))
            .unwrap_or(true)
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !pids.iter().all(|p| gone(*p)) && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    for pid in pids {
        assert!(
            gone(pid),
            "process {pid} still runs after the demo got SIGTERM"
        );
    }
}

/// Every `http://HOST:PORT/PATH` in `text`, as an address and a path.
fn urls(text: &str) -> Vec<(std::net::SocketAddr, String)> {
    text.split_whitespace()
        .filter_map(|word| word.strip_prefix("http://"))
        .filter_map(|rest| {
            let (addr, path) = rest.split_once('/').unwrap_or((rest, ""));
            Some((addr.parse().ok()?, format!("/{path}")))
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_prints_the_dashboard_and_the_urls_readme_promises_and_they_answer() {
    use std::io::BufRead;
    let remora = bin_path("remora").unwrap();
    let mut child = std::process::Command::new(remora)
        .args(["demo", "--forever", "--step-seconds", "1"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let seen = tokio::task::spawn_blocking(move || {
        let mut seen = String::new();
        for line in std::io::BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            seen.push_str(&line);
            seen.push('\n');
            if line.contains("keeps running") {
                break;
            }
        }
        seen
    });
    let seen = tokio::time::timeout(Duration::from_secs(90), seen).await;
    let checked = async {
        let seen = seen.expect("the demo never said it keeps running").unwrap();
        let dashboard = seen
            .lines()
            .find(|l| l.contains("Open the dashboard"))
            .unwrap_or_else(|| panic!("no dashboard line:\n{seen}"));
        assert_eq!(urls(dashboard).len(), 1, "{dashboard}");
        let all = urls(&seen);
        let paths: Vec<&str> = all.iter().map(|(_, p)| p.as_str()).collect();
        // What README's demo section promises.
        assert_eq!(
            paths.iter().filter(|p| **p == "/config_dump").count(),
            3,
            "each proxy's /config_dump:\n{seen}"
        );
        assert!(paths.contains(&"/api/v1/proxies"), "{seen}");
        assert!(paths.contains(&"/"), "the dashboard:\n{seen}");
        for (addr, path) in &all {
            let reply = remora_tests::harness::http::get(*addr, path).await.unwrap();
            assert_eq!(reply.status, 200, "http://{addr}{path}: {}", reply.text());
        }
    };
    let outcome = futures::FutureExt::catch_unwind(std::panic::AssertUnwindSafe(checked)).await;
    let _ = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let _ = child.wait();
    if let Err(panic) = outcome {
        std::panic::resume_unwind(panic);
    }
}
