//! `remora inject` as a user runs it: the real binary rewrites manifests on
//! stdout, injecting twice equals injecting once, `--uninject` gives the input
//! back (the app's probes included), a bad annotation is refused naming the
//! object, with nothing printed, and the trust bundle is required.

use std::process::{Command, Output};

use remora_tests::harness::{bin_path, run_with_stdin};

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
      containers:
      - name: app
        image: example/orders:1
        ports: [{name: http, containerPort: 8080}]
        livenessProbe: {httpGet: {path: /healthz, port: http}, periodSeconds: 3}
---
apiVersion: v1
kind: ConfigMap
metadata: {name: settings, namespace: shop}
data: {a: b}
"#;

fn remora(args: &[&str], stdin: &str) -> Output {
    run_with_stdin(Command::new(bin_path("remora").unwrap()).args(args), stdin)
}

/// A trust bundle file, as `remora trust-bundle` prints one (injection only
/// checks that it holds a certificate).
fn bundle() -> (tempfile::TempDir, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bundle.pem");
    std::fs::write(
        &path,
        "-----BEGIN CERTIFICATE-----\nMA==\n-----END CERTIFICATE-----\n",
    )
    .unwrap();
    let path = path.display().to_string();
    (dir, path)
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
    let (_dir, bundle) = bundle();
    let inject = ["inject", "--trust-bundle", bundle.as_str(), "-f", "-"];
    let once = text(&remora(&inject, MANIFESTS));
    assert!(once.contains("name: remora-proxy"), "{once}");
    assert!(
        once.contains("restartPolicy: Always"),
        "a native sidecar: {once}"
    );
    assert!(once.contains("NET_ADMIN"), "{once}");
    assert!(once.contains("REMORA_TRUST_BUNDLE"), "{once}");
    assert!(
        once.contains("path: /app-health/app/livez") && once.contains("REMORA_APP_PROBES"),
        "the app's probe goes to the proxy: {once}"
    );
    assert!(
        once.contains("kind: ConfigMap"),
        "other kinds pass through: {once}"
    );
    let twice = text(&remora(&inject, &once));
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
    let (_dir, bundle) = bundle();
    let out = remora(&["inject", "--trust-bundle", &bundle, "-f", "-"], &bad);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(out.stdout.is_empty(), "nothing printed on an error");
    assert!(
        stderr.contains("shop/orders") && stderr.contains("remora.io/skip-inbound-ports"),
        "{stderr}"
    );
}

#[test]
fn the_trust_bundle_is_required_to_inject_not_to_uninject() {
    let out = remora(&["inject", "-f", "-"], MANIFESTS);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "a usage error: {stderr}");
    assert!(stderr.contains("--trust-bundle"), "{stderr}");
    assert!(out.stdout.is_empty());
    // Its help says where to get one.
    let help = text(&remora(&["inject", "--help"], ""));
    assert!(help.contains("remora trust-bundle --data-dir"), "{help}");
    // Taking the sidecar out needs none.
    let out = remora(&["inject", "--uninject", "-f", "-"], MANIFESTS);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
