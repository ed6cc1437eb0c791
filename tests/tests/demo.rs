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
