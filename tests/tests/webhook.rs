//! The admission webhook as the API server meets it: `remora control
//! --webhook-addr` serves HTTPS with a certificate from the mesh CA, answers
//! an AdmissionReview with a JSONPatch that injects the sidecar, refuses
//! plain HTTP, a client that checks another host name, and an oversized
//! body; lets no one address hold all its connections; and, against the API server double driven by the real `kubectl`,
//! writes its CA into the `remora-injector` configuration, after which a pod
//! created in an opted-in namespace comes out with the proxy, others do not,
//! and a pod with a bad annotation is refused with the reason.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

mod support;

use remora_tests::harness::{bin_path, Process, START_TIMEOUT};
use remora_tests::kube::KubeDouble;
use serde::Deserialize;
use serde_json::{json, Value};
use support::kube::{namespace, wait_ca_bundles};

/// The name `remora-webhook.<namespace>.svc` the certificate carries by default.
const SERVICE_NAME: &str = "remora-webhook.remora-system.svc";

#[derive(Debug, Deserialize)]
struct Addresses {
    webhook: SocketAddr,
}

/// `remora control` with the webhook on 127.0.0.1:0, and where it is.
struct Webhook {
    addr: SocketAddr,
    /// The mesh CA's trust bundle (PEM) in a file, for `curl --cacert`.
    ca_file: PathBuf,
    ca_pem: String,
    process: Process,
}

async fn start(root: &Path, source: &[&str], extra: &[&str]) -> Webhook {
    let dir = tempfile::Builder::new()
        .prefix("remora-webhook-")
        .tempdir()
        .unwrap();
    let addresses = dir.path().join("addresses.json");
    let data_dir = root.join("data");
    let mut command = Command::new(bin_path("remora").unwrap());
    command
        .arg("control")
        .args(source)
        .arg("--data-dir")
        .arg(&data_dir)
        .args(["--xds-addr", "127.0.0.1:0", "--api-addr", "127.0.0.1:0"])
        .args(["--webhook-addr", "127.0.0.1:0"])
        .arg("--addresses-file")
        .arg(&addresses)
        .args(extra)
        .env_remove("POD_NAMESPACE");
    let mut process = Process::spawn("remora control", command, dir).unwrap();
    let bound: Addresses = process
        .wait_addresses(&addresses, START_TIMEOUT)
        .await
        .unwrap();
    let bundle = Command::new(bin_path("remora").unwrap())
        .arg("trust-bundle")
        .arg("--data-dir")
        .arg(&data_dir)
        .output()
        .unwrap();
    let ca_pem = String::from_utf8(ok(bundle)).unwrap();
    let ca_file = root.join("ca.pem");
    std::fs::write(&ca_file, &ca_pem).unwrap();
    Webhook {
        addr: bound.webhook,
        ca_file,
        ca_pem,
        process,
    }
}

fn ok(out: Output) -> Vec<u8> {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// A ReplicaSet's pod being created in `namespace`, as the API server sends it.
fn review(namespace: &str) -> Value {
    json!({
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": "3f2d6c1e-8a51-4f0e-b7d2-0c9e8f7a6b5d",
            "kind": {"group": "", "version": "v1", "kind": "Pod"},
            "resource": {"group": "", "version": "v1", "resource": "pods"},
            "requestKind": {"group": "", "version": "v1", "kind": "Pod"},
            "requestResource": {"group": "", "version": "v1", "resource": "pods"},
            "name": "",
            "namespace": namespace,
            "operation": "CREATE",
            "userInfo": {"username": "system:serviceaccount:kube-system:replicaset-controller",
                         "groups": ["system:serviceaccounts", "system:authenticated"]},
            "object": {
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": {"generateName": "orders-5f7b9-", "namespace": namespace,
                             "labels": {"app": "orders"}},
                "spec": {"containers": [{"name": "orders", "image": "example/orders:1",
                                         "ports": [{"containerPort": 8080}]}],
                         "serviceAccountName": "orders"}
            },
            "oldObject": null,
            "dryRun": false,
            "options": {"apiVersion": "meta.k8s.io/v1", "kind": "CreateOptions"}
        }
    })
}

/// `curl` POSTing `body` (a file) to `https://HOST:PORT/inject`, HOST
/// resolved to 127.0.0.1; the output ends with the HTTP status on its own line.
fn curl(hook: &Webhook, host: &str, body: &Path, extra: &[&str]) -> Output {
    let port = hook.addr.port();
    Command::new("curl")
        .args(["-sS", "--max-time", "20", "-w", "\n%{http_code}"])
        .arg("--cacert")
        .arg(&hook.ca_file)
        .args(["--resolve", &format!("{host}:{port}:127.0.0.1")])
        .args(["-H", "Content-Type: application/json"])
        .args(extra)
        .arg("--data-binary")
        .arg(format!("@{}", body.display()))
        .arg(format!("https://{host}:{port}/inject"))
        .output()
        .unwrap()
}

/// The body and the status of a curl that succeeded.
fn answer(out: Output) -> (u16, String) {
    let text = String::from_utf8(ok(out)).unwrap();
    let (body, status) = text.rsplit_once('\n').unwrap();
    (status.trim().parse().unwrap(), body.to_owned())
}

fn base64_decode(text: &str) -> Vec<u8> {
    let mut child = Command::new("base64")
        .arg("-d")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    ok(child.wait_with_output().unwrap())
}

#[tokio::test]
async fn the_webhook_answers_a_review_over_tls_with_a_patch_that_injects() {
    let root = tempfile::tempdir().unwrap();
    let config = root.path().join("config");
    std::fs::create_dir_all(&config).unwrap();
    let config_arg = config.to_str().unwrap().to_owned();
    let hook = start(root.path(), &["--config-dir", &config_arg], &[]).await;
    let body = root.path().join("review.json");
    std::fs::write(&body, review("shop").to_string()).unwrap();

    let (status, text) = answer(curl(&hook, SERVICE_NAME, &body, &[]));
    assert_eq!(status, 200, "{text}\n{}", hook.process.logs());
    let answered: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(answered["apiVersion"], "admission.k8s.io/v1");
    assert_eq!(answered["kind"], "AdmissionReview");
    let response = &answered["response"];
    assert_eq!(response["uid"], "3f2d6c1e-8a51-4f0e-b7d2-0c9e8f7a6b5d");
    assert_eq!(response["allowed"], true);
    assert_eq!(response["patchType"], "JSONPatch");
    let patch: Value =
        serde_json::from_slice(&base64_decode(response["patch"].as_str().unwrap())).unwrap();
    let inits = patch
        .as_array()
        .unwrap()
        .iter()
        .find(|op| op["path"] == "/spec/initContainers")
        .unwrap_or_else(|| panic!("no initContainers in {patch}"));
    assert_eq!(inits["op"], "add");
    let names: Vec<&str> = inits["value"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["remora-init", "remora-proxy"], "{patch}");

    // The control plane's own namespace: allowed, no patch.
    std::fs::write(&body, review("remora-system").to_string()).unwrap();
    let (status, text) = answer(curl(&hook, SERVICE_NAME, &body, &[]));
    assert_eq!(status, 200, "{text}");
    let response = &serde_json::from_str::<Value>(&text).unwrap()["response"];
    assert_eq!(response["allowed"], true);
    assert!(response.get("patch").is_none(), "{response}");

    // Plain HTTP to the port gets no answer.
    let plain = Command::new("curl")
        .args([
            "-sS",
            "--max-time",
            "10",
            "-H",
            "Content-Type: application/json",
        ])
        .args(["--data-binary", "{}"])
        .arg(format!("http://127.0.0.1:{}/inject", hook.addr.port()))
        .output()
        .unwrap();
    assert!(
        !plain.status.success(),
        "plain HTTP was answered: {plain:?}"
    );

    // A client that dialled another name does not accept the certificate.
    let wrong = curl(&hook, "other.example.com", &body, &[]);
    assert_eq!(
        wrong.status.code(),
        Some(60),
        "curl: {}",
        String::from_utf8_lossy(&wrong.stderr)
    );

    // Over 2 MiB (etcd stores no object over 1.5 MiB): 413, before the
    // body is read (curl waits for 100-continue).
    let big = root.path().join("big.json");
    std::fs::write(&big, vec![b' '; 3 * 1024 * 1024]).unwrap();
    let (status, text) = answer(curl(
        &hook,
        SERVICE_NAME,
        &big,
        &["-H", "Expect: 100-continue"],
    ));
    assert_eq!(status, 413, "{text}");

    // Not JSON: 400 with the reason.
    std::fs::write(&body, "not a review").unwrap();
    let (status, text) = answer(curl(&hook, SERVICE_NAME, &body, &[]));
    assert_eq!(status, 400, "{text}");
    assert!(text.contains("not JSON"), "{text}");
}

/// How many connections one address may hold open (the webhook's limit).
const CONNECTIONS_PER_ADDRESS: usize = 16;

#[tokio::test]
async fn one_address_cannot_take_every_connection_of_the_webhook() {
    let root = tempfile::tempdir().unwrap();
    let config = root.path().join("config");
    std::fs::create_dir_all(&config).unwrap();
    let config_arg = config.to_str().unwrap().to_owned();
    let hook = start(root.path(), &["--config-dir", &config_arg], &[]).await;
    let body = root.path().join("review.json");
    std::fs::write(&body, review("shop").to_string()).unwrap();

    // Connections from 127.0.0.1 that never start their TLS handshake (the
    // webhook waits 10 s for one), up to the limit.
    let idle: Vec<std::net::TcpStream> = (0..CONNECTIONS_PER_ADDRESS)
        .map(|_| std::net::TcpStream::connect(hook.addr).unwrap())
        .collect();
    // Accepted after them, one more from the same address is closed at once.
    let refused = curl(&hook, SERVICE_NAME, &body, &[]);
    assert!(
        !refused.status.success(),
        "served past the limit: {}\n{}",
        String::from_utf8_lossy(&refused.stdout),
        hook.process.logs()
    );
    // Another address (127.0.0.2 is loopback too) is served all along.
    let other = curl(&hook, SERVICE_NAME, &body, &["--interface", "127.0.0.2"]);
    let (status, text) = answer(other);
    assert_eq!(status, 200, "{text}");
    assert!(
        hook.process
            .logs()
            .contains("this address is at its connection limit"),
        "{}",
        hook.process.logs()
    );

    // Closed, they give the address its connections back.
    drop(idle);
    let mut served = false;
    for _ in 0..50 {
        let out = curl(&hook, SERVICE_NAME, &body, &[]);
        if out.status.success() {
            served = answer(out).0 == 200;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(served, "{}", hook.process.logs());
}

const WEBHOOK_CONFIGURATION: &str = r#"apiVersion: admissionregistration.k8s.io/v1
kind: MutatingWebhookConfiguration
metadata:
  name: remora-injector
webhooks:
  - name: inject.remora.io
    admissionReviewVersions: ["v1"]
    sideEffects: None
    failurePolicy: Fail
    timeoutSeconds: 10
    clientConfig:
      url: https://127.0.0.1:PORT/inject
    namespaceSelector:
      matchLabels:
        remora.io/inject: enabled
    rules:
      - operations: ["CREATE"]
        apiGroups: [""]
        apiVersions: ["v1"]
        resources: ["pods"]
"#;

fn pod(namespace: &str, name: &str, annotations: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\n  namespace: {namespace}\n  annotations: {{{annotations}}}\nspec:\n  containers:\n    - name: app\n      image: example/app:1\n"
    )
}

fn init_containers(double: &KubeDouble, namespace: &str, name: &str) -> Vec<String> {
    let text = double.kubectl_ok(&["get", "pod", name, "-n", namespace, "-o", "json"]);
    let pod: Value = serde_json::from_str(&text).unwrap();
    pod["spec"]["initContainers"]
        .as_array()
        .map(|list| {
            list.iter()
                .filter_map(|c| c["name"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test]
async fn the_api_server_injects_pods_of_opted_in_namespaces_through_the_webhook() {
    let root = tempfile::tempdir().unwrap();
    let double = KubeDouble::start();
    // remora-system is opted in too, so the webhook itself must refuse to
    // touch the control plane's namespace.
    for (name, opted_in) in [("shop", true), ("other", false), ("remora-system", true)] {
        namespace(&double, name, opted_in);
    }
    let kubeconfig = double.kubeconfig().to_str().unwrap().to_owned();
    let hook = start(
        root.path(),
        &["--kubernetes", "--kubeconfig", &kubeconfig],
        &["--webhook-server-name", "127.0.0.1"],
    )
    .await;
    let config = WEBHOOK_CONFIGURATION.replace("PORT", &hook.addr.port().to_string());
    double.kubectl_stdin(&["apply", "-f", "-"], &config);

    // The control plane writes its CA into the configuration.
    let bundles = wait_ca_bundles(&double, Duration::from_secs(20)).await;
    let written = base64_decode(&bundles[0]);
    assert_eq!(String::from_utf8(written).unwrap(), hook.ca_pem);

    double.kubectl_stdin(&["create", "-f", "-"], &pod("shop", "web", ""));
    assert_eq!(
        init_containers(&double, "shop", "web"),
        ["remora-init", "remora-proxy"],
        "{}",
        hook.process.logs()
    );
    double.kubectl_stdin(&["create", "-f", "-"], &pod("other", "web", ""));
    assert!(init_containers(&double, "other", "web").is_empty());
    double.kubectl_stdin(&["create", "-f", "-"], &pod("remora-system", "web", ""));
    assert!(init_containers(&double, "remora-system", "web").is_empty());
    double.kubectl_stdin(
        &["create", "-f", "-"],
        &pod("shop", "opted-out", "remora.io/inject: disabled"),
    );
    assert!(init_containers(&double, "shop", "opted-out").is_empty());

    // A bad annotation: refused, with the reason in kubectl's error.
    let bad = root.path().join("bad.yaml");
    std::fs::write(
        &bad,
        pod("shop", "bad", "remora.io/skip-inbound-ports: \"22,ssh\""),
    )
    .unwrap();
    let out = double.kubectl(&["create", "-f", bad.to_str().unwrap()]);
    assert!(!out.status.success(), "the bad pod was created");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("denied the request"), "{stderr}");
    assert!(stderr.contains("remora.io/skip-inbound-ports"), "{stderr}");
    assert!(stderr.contains("`ssh`"), "{stderr}");
    let logs = hook.process.logs();
    assert!(logs.contains("pod injected"), "{logs}");
    assert!(logs.contains("pod refused"), "{logs}");
}
