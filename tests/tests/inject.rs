//! `remora inject` as a user runs it: the real binary rewrites manifests on
//! stdout, injecting twice equals injecting once, `--uninject` gives the input
//! back, and a bad annotation is refused naming the object, with nothing printed.

use std::io::Write;
use std::process::{Command, Output, Stdio};

use remora_tests::harness::bin_path;

const MANIFESTS: &str = r#"apiVersion: apps/v1
kind: Deployment
metadata: {name: orders, namespace: shop}
spec:
  selector: {matchLabels: {app: orders}}
  template:
    metadata:
      labels: {app: orders}
      annotations: {remora.io/skip-inbound-ports: "22"}
    spec:
      containers: [{name: app, image: example/orders:1}]
---
apiVersion: v1
kind: ConfigMap
metadata: {name: settings, namespace: shop}
data: {a: b}
"#;

fn remora(args: &[&str], stdin: &str) -> Output {
    let mut child = Command::new(bin_path("remora").unwrap())
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

fn text(out: &Output) -> String {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout.clone()).unwrap()
}

#[test]
fn inject_is_idempotent_and_uninject_gives_the_manifests_back() {
    let once = text(&remora(&["inject", "-f", "-"], MANIFESTS));
    assert!(once.contains("name: remora-proxy"), "{once}");
    assert!(
        once.contains("restartPolicy: Always"),
        "a native sidecar: {once}"
    );
    assert!(once.contains("NET_ADMIN"), "{once}");
    assert!(
        once.contains("kind: ConfigMap"),
        "other kinds pass through: {once}"
    );
    let twice = text(&remora(&["inject", "-f", "-"], &once));
    assert_eq!(once, twice, "injecting twice equals injecting once");

    let back = text(&remora(&["inject", "--uninject", "-f", "-"], &once));
    let documents = |t: &str| -> Vec<serde_json::Value> {
        t.split("\n---\n")
            .filter(|d| !d.trim().is_empty() && d.trim() != "---")
            .map(|d| serde_yaml_ng::from_str(d).unwrap())
            .collect()
    };
    assert_eq!(documents(&back), documents(MANIFESTS));
}

#[test]
fn a_bad_annotation_is_refused_naming_the_object_and_nothing_is_printed() {
    let bad = MANIFESTS.replace(
        "remora.io/skip-inbound-ports: \"22\"",
        "remora.io/skip-inbound-ports: \"ssh\"",
    );
    let out = remora(&["inject", "-f", "-"], &bad);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(out.stdout.is_empty(), "nothing printed on an error");
    assert!(
        stderr.contains("shop/orders") && stderr.contains("remora.io/skip-inbound-ports"),
        "{stderr}"
    );
}
