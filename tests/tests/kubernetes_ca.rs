//! The control plane's CA in Kubernetes mode outlives the control plane: it is
//! kept in the Secret `remora-ca` of the control plane's namespace (on the
//! API server double), so a control plane started again with an empty data
//! directory has the same CA, and a proxy that trusts the first one's bundle
//! (as an injected pod carries it inline) reconnects to it with its
//! certificate. A broken Secret stops the start, naming it and the key.

use std::process::Command;
use std::time::Duration;

use remora_tests::app::TestApp;
use remora_tests::harness::{bin_path, wait_for, ControlPlane, Proxy, ProxySpec};
use remora_tests::kube::KubeDouble;

const SECRET_PATH: &str = "/api/v1/namespaces/remora-system/secrets/remora-ca";
const SECRET: &str = "remora-system/remora-ca";
const IDENTITY: &str = "spiffe://cluster.local/ns/shop/sa/orders";
const NODE_ID: &str = "orders-ca-test.shop";
const WAIT: Duration = Duration::from_secs(20);

/// `remora check --kubernetes` against the double: its line about the Secret.
fn check_line(double: &KubeDouble) -> String {
    let out = Command::new(bin_path("remora").unwrap())
        .args(["check", "--kubernetes", "--kubeconfig"])
        .arg(double.kubeconfig())
        .output()
        .unwrap();
    let report = String::from_utf8_lossy(&out.stdout).into_owned();
    report
        .lines()
        .find(|l| l.contains(&format!("secret {SECRET}:")))
        .unwrap_or_else(|| {
            panic!(
                "no line about the Secret:\n{report}\n{}",
                String::from_utf8_lossy(&out.stderr)
            )
        })
        .to_owned()
}

/// The Secret's `ca.crt`, decoded by kubectl itself.
fn secret_cert(double: &KubeDouble) -> String {
    double.kubectl_ok(&[
        "get",
        "secret",
        "remora-ca",
        "-n",
        "remora-system",
        "-o",
        r#"go-template={{index .data "ca.crt" | base64decode}}"#,
    ])
}

async fn trust_bundle(cp: &ControlPlane) -> String {
    let reply = cp.api_get("/api/v1/trust-bundle").await.unwrap();
    assert_eq!(reply.status, 200, "{}", reply.text());
    reply.text()
}

/// Whether `cp` serves our proxy over mTLS with its identity.
async fn serves_proxy_over_mtls(cp: &ControlPlane) -> bool {
    let Ok(proxies) = cp.proxies().await else {
        return false;
    };
    proxies
        .as_array()
        .into_iter()
        .flatten()
        .any(|p| p["node_id"] == NODE_ID && p["transport"] == "mtls" && p["identity"] == IDENTITY)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_control_plane_started_again_with_an_empty_data_dir_keeps_the_ca() {
    let double = KubeDouble::start();
    double.add_token(
        "eyJhbGciOiJSUzI1NiJ9.orders.c2ln",
        "shop",
        "orders",
        &["remora"],
    );
    let line = check_line(&double);
    assert!(
        line.starts_with("WARN") && line.contains("made by the control plane at first start"),
        "{line}"
    );

    // The first start makes the CA and keeps it in the Secret.
    let first_root = tempfile::tempdir().unwrap();
    let mut first =
        ControlPlane::start_kubernetes(first_root.path().join("config"), double.kubeconfig(), &[])
            .await
            .unwrap();
    let bundle = trust_bundle(&first).await;
    let secret = double.get_json(SECRET_PATH);
    assert_eq!(secret["type"], "Opaque", "{secret:#}");
    assert_eq!(
        secret["metadata"]["labels"]["app.kubernetes.io/part-of"], "remora",
        "{secret:#}"
    );
    assert!(secret["data"]["ca.key"].is_string(), "{secret:#}");
    assert_eq!(secret_cert(&double), bundle);
    let line = check_line(&double);
    assert!(line.starts_with("OK"), "{line}");

    // A proxy gets its certificate from the first, verifying it with the
    // first's bundle (as an injected pod has it, inline, from its creation).
    let bundle_file = first_root.path().join("ca.pem");
    std::fs::write(&bundle_file, &bundle).unwrap();
    let token_file = first_root.path().join("orders.token");
    std::fs::write(&token_file, "eyJhbGciOiJSUzI1NiJ9.orders.c2ln").unwrap();
    let app = TestApp::http("orders");
    let proxy = Proxy::start(
        ProxySpec::new("orders", first.xds_addr, app.addr)
            .namespace("shop")
            .node_id(NODE_ID)
            .token_file(&token_file)
            .trust_bundle_file(&bundle_file),
    )
    .await
    .unwrap();
    let connected = wait_for(WAIT, || serves_proxy_over_mtls(&first)).await;
    assert!(
        connected.is_ok(),
        "{:#}\n{}\ncontrol plane:\n{}",
        first.proxies().await.unwrap_or_default(),
        proxy.logs(),
        first.logs()
    );

    // Stopped, and started again where the proxy expects it, with a new,
    // empty data directory (a new pod's emptyDir).
    let (xds_port, api_port) = (first.xds_addr.port(), first.api_addr.port());
    first.terminate();
    let second_root = tempfile::tempdir().unwrap();
    let second = ControlPlane::start_kubernetes_on(
        second_root.path().join("config"),
        double.kubeconfig(),
        xds_port,
        api_port,
        &[],
    )
    .await
    .unwrap();
    assert_ne!(second.data_dir(), first.data_dir());
    assert_eq!(trust_bundle(&second).await, bundle, "the same CA");
    assert!(
        second.logs().contains("using the CA kept in the Secret"),
        "{}",
        second.logs()
    );

    // The proxy reconnects with the bundle and certificate it has.
    let reconnected = wait_for(WAIT, || serves_proxy_over_mtls(&second)).await;
    assert!(
        reconnected.is_ok(),
        "{:#}\nproxy:\n{}\ncontrol plane:\n{}",
        second.proxies().await.unwrap_or_default(),
        proxy.logs(),
        second.logs()
    );
    let dump = proxy.config_dump().await.unwrap();
    assert_eq!(dump["certificate"]["identity"], IDENTITY, "{dump:#}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broken_ca_secret_stops_the_control_plane_naming_the_secret_and_the_key() {
    let double = KubeDouble::start();
    let root = tempfile::tempdir().unwrap();
    let mut first =
        ControlPlane::start_kubernetes(root.path().join("one/config"), double.kubeconfig(), &[])
            .await
            .unwrap();
    first.terminate();

    // "not a key", base64.
    double.kubectl_ok(&[
        "patch",
        "secret",
        "remora-ca",
        "-n",
        "remora-system",
        "--type=merge",
        "-p",
        r#"{"data":{"ca.key":"bm90IGEga2V5"}}"#,
    ]);
    let refused =
        ControlPlane::start_kubernetes(root.path().join("two/config"), double.kubeconfig(), &[])
            .await;
    let error = format!("{:#}", refused.err().expect("started with a broken CA key"));
    assert!(error.contains("exit status: 1"), "{error}");
    assert!(
        error.contains(SECRET) && error.contains("data key ca.key"),
        "{error}"
    );
    // Left as it was: never overwritten with a new CA.
    let secret = double.get_json(SECRET_PATH);
    assert_eq!(secret["data"]["ca.key"], "bm90IGEga2V5", "{secret:#}");
    let line = check_line(&double);
    assert!(
        line.starts_with("FAIL") && line.contains("ca.key"),
        "{line}"
    );

    // A key missing altogether is named too.
    double.kubectl_ok(&[
        "patch",
        "secret",
        "remora-ca",
        "-n",
        "remora-system",
        "--type=merge",
        "-p",
        r#"{"data":{"ca.crt":null}}"#,
    ]);
    let refused =
        ControlPlane::start_kubernetes(root.path().join("three/config"), double.kubeconfig(), &[])
            .await;
    let error = format!("{:#}", refused.err().expect("started without ca.crt"));
    assert!(
        error.contains(SECRET) && error.contains("no data key ca.crt"),
        "{error}"
    );
}
