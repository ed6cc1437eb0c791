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
