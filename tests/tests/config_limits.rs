//! Hostile config files are contained: a deeply nested file is refused before it
//! is parsed (by `remora check` and by the control plane alike), a new file cannot
//! take over a resource already in force, and names cannot forge log lines.

mod support;

use std::process::Command;
use std::time::Duration;

use remora_tests::harness::{bin_path, wait_for, wait_for_some, ControlPlane, Process};
use support::*;

/// Far more than `remora check` needs: the file is refused in milliseconds, where
/// parsing it took minutes. A bound on the process, not a timing assertion.
const CHECK_TIMEOUT: Duration = Duration::from_secs(20);

/// `GET /api/v1/config`, once its errors hold one that `matches`.
async fn config_with_error(
    cp: &ControlPlane,
    matches: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    let found = wait_for_some(Duration::from_secs(5), || async {
        let status = cp.api_get("/api/v1/config").await.ok()?.json().ok()?;
        let listed = status["errors"].as_array()?.iter().any(&matches);
        listed.then_some(status)
    })
    .await;
    match found {
        Ok(status) => status,
        Err(e) => panic!(
            "the expected problem was not listed ({e}); config: {:#}\nlogs:\n{}",
            cp.api_get("/api/v1/config")
                .await
                .and_then(|r| r.json())
                .unwrap_or_default(),
            cp.logs()
        ),
    }
}

#[tokio::test]
async fn check_refuses_a_file_nested_100000_deep_and_names_the_depth_limit() {
    let root = tempfile::tempdir().unwrap();
    let dir = config_dir(root.path());
    write_config(&dir, "services.yaml", &service("web", 80, "http"));
    let depth = 100_000;
    let nested = format!("{}{}\n", "[".repeat(depth), "]".repeat(depth));
    write_config(&dir, "deep.yaml", &nested);

    let mut command = Command::new(bin_path("remora").unwrap());
    command.arg("check").arg("-f").arg(dir.as_path());
    let log_dir = tempfile::tempdir().unwrap();
    let mut check = Process::spawn("remora check", command, log_dir).unwrap();
    let exited = wait_for(CHECK_TIMEOUT, || {
        let done = check.exit_status().is_some();
        async move { done }
    })
    .await;
    assert!(
        exited.is_ok(),
        "remora check did not finish within {CHECK_TIMEOUT:?} on a file nested {depth} deep:\n{}",
        check.logs_tail()
    );
    let status = check.exit_status().unwrap();
    let out = check.logs();
    assert_eq!(status.code(), Some(1), "{out}");
    let problem = out
        .lines()
        .find(|l| l.contains("deep.yaml"))
        .unwrap_or_else(|| panic!("deep.yaml is not named:\n{out}"));
    assert!(problem.contains("depth limit"), "{out}");
    assert!(problem.contains("64"), "{out}");
    // The other file still loads.
    assert!(
        out.contains("1 problem (1 Service, 0 HTTPRoutes valid)"),
        "{out}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_file_cannot_take_over_a_service_already_in_force() {
    let root = tempfile::tempdir().unwrap();
    let dir = config_dir(root.path());
    write_config(&dir, "web.yaml", &service("web", 80, "http"));
    let cp = ControlPlane::start(&dir).await.unwrap();

    // A newcomer that sorts first redefines web with another port.
    write_config(&dir, "0-impostor.yaml", &service("web", 81, "http"));
    let is_duplicate = |e: &serde_json::Value| {
        e["message"]
            .as_str()
            .is_some_and(|m| m.starts_with("duplicate:"))
    };
    let status = config_with_error(&cp, is_duplicate).await;

    let errors = status["errors"].as_array().unwrap();
    assert_eq!(
        errors.len(),
        1,
        "only the newcomer has a problem: {status:#}"
    );
    let problem = &errors[0];
    assert!(
        problem["file"]
            .as_str()
            .is_some_and(|f| f.ends_with("0-impostor.yaml")),
        "{status:#}"
    );
    assert_eq!(problem["name"], "web", "{status:#}");
    let message = problem["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("web.yaml"),
        "names the file in force: {status:#}"
    );
    assert!(message.contains("in force"), "{status:#}");
    assert_eq!(status["resources"]["Service"], 1, "{status:#}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn names_with_control_characters_do_not_forge_log_lines() {
    let root = tempfile::tempdir().unwrap();
    let dir = config_dir(root.path());
    write_config(&dir, "web.yaml", &service("web", 80, "http"));
    let cp = ControlPlane::start(&dir).await.unwrap();

    let forged = "apiVersion: v1\nkind: Service\n\
                  metadata: {name: \"a\\nFAKE LOG LINE\\u001b[31m\"}\n\
                  spec: {ports: [{port: 80}]}\n";
    write_config(&dir, "forged.yaml", forged);
    let forged_name = |e: &serde_json::Value| {
        e["name"]
            .as_str()
            .is_some_and(|n| n.contains("FAKE LOG LINE"))
    };
    config_with_error(&cp, forged_name).await;
    // The log is written before the config is published; wait for its line.
    let logged = wait_for(Duration::from_secs(5), || async {
        cp.logs().contains("forged.yaml")
    })
    .await;
    assert!(logged.is_ok(), "{}", cp.logs());

    let logs = cp.logs();
    assert!(
        !logs.lines().any(|l| l.starts_with("FAKE LOG LINE")),
        "a name started a log line:\n{logs}"
    );
    assert!(
        !logs.contains('\u{1b}'),
        "an escape code reached the log:\n{logs:?}"
    );
    assert!(logs.contains("a\\nFAKE LOG LINE\\u{1b}[31m"), "{logs}");
}
