//! The proxy as injected into a pod: its bootstrap only from environment
//! variables, its certificate for a service-account token the control plane
//! checks with a TokenReview (against the Kubernetes API server double), and
//! the classic sidecar's hooks `remora-proxy wait` and `remora-proxy drain`.

mod support;

use std::net::SocketAddr;
use std::process::{Command, Output};
use std::time::Duration;

use remora_tests::app::TestApp;
use remora_tests::harness::{bin_path, http, wait_for, ControlPlane, Process, START_TIMEOUT};
use remora_tests::kube::KubeDouble;
use serde::Deserialize;
use support::kube::set;
use support::*;

const WAIT: Duration = Duration::from_secs(15);

#[derive(Deserialize)]
struct Addresses {
    inbound: SocketAddr,
    admin: SocketAddr,
}

/// `remora-proxy` started with environment variables only, as injection runs
/// it: no bootstrap file, listeners on loopback port 0 so tests can run side
/// by side.
struct PodProxy {
    inbound: SocketAddr,
    admin: SocketAddr,
    process: Process,
}

/// A PEM the bootstrap accepts, for proxies that stop before using it.
const SOME_PEM: &str = "-----BEGIN CERTIFICATE-----\nMA==\n-----END CERTIFICATE-----\n";

/// The control plane's trust bundle, which every pod's proxy needs.
async fn trust_bundle(cp: &ControlPlane) -> String {
    cp.api_get("/api/v1/trust-bundle").await.unwrap().text()
}

/// The variables a pod's proxy gets, with the listeners moved to port 0.
fn pod_env(
    service: &str,
    namespace: &str,
    control_plane: SocketAddr,
    trust_bundle: &str,
) -> Vec<(String, String)> {
    [
        ("REMORA_BOOTSTRAP_FROM_ENV", "1".to_owned()),
        ("REMORA_SERVICE", service.to_owned()),
        ("POD_NAMESPACE", namespace.to_owned()),
        ("POD_NAME", format!("{service}-7f9c-x2")),
        ("POD_IP", "127.0.0.1".to_owned()),
        ("SERVICE_ACCOUNT", service.to_owned()),
        ("REMORA_CONTROL_PLANE", control_plane.to_string()),
        ("REMORA_TRUST_BUNDLE", trust_bundle.to_owned()),
        ("REMORA_INBOUND", "127.0.0.1:0".to_owned()),
        ("REMORA_OUTBOUND", "127.0.0.1:0".to_owned()),
        ("REMORA_ADMIN", "127.0.0.1:0".to_owned()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect()
}

/// The command, with nothing of the test's own environment that the proxy
/// reads (a stray `REMORA_BOOTSTRAP` would win).
fn proxy_command(env: &[(String, String)]) -> Command {
    let mut command = Command::new(bin_path("remora-proxy").unwrap());
    command.env_remove("REMORA_BOOTSTRAP");
    for (name, value) in env {
        command.env(name, value);
    }
    command
}

impl PodProxy {
    async fn start(env: &[(String, String)]) -> PodProxy {
        let dir = tempfile::Builder::new()
            .prefix("remora-pod-proxy-")
            .tempdir()
            .unwrap();
        let addresses_file = dir.path().join("addresses.json");
        let mut command = proxy_command(env);
        command.arg("--addresses-file").arg(&addresses_file);
        let mut process = Process::spawn("remora-proxy pod", command, dir).unwrap();
        let addresses: Addresses = process
            .wait_addresses(&addresses_file, START_TIMEOUT)
            .await
            .unwrap();
        PodProxy {
            inbound: addresses.inbound,
            admin: addresses.admin,
            process,
        }
    }

    async fn config_dump(&self) -> serde_json::Value {
        match http::get(self.admin, "/config_dump").await {
            Ok(reply) => reply.json().unwrap_or_default(),
            Err(_) => serde_json::Value::Null,
        }
    }

    async fn wait_ready(&self) {
        let ready = wait_for(WAIT, || async {
            http::get(self.admin, "/ready")
                .await
                .is_ok_and(|r| r.status == 200)
        })
        .await;
        assert!(ready.is_ok(), "not ready:\n{}", self.process.logs());
    }

    async fn wait_log(&self, text: &str) {
        let seen = wait_for(WAIT, || async { self.process.logs().contains(text) }).await;
        assert!(seen.is_ok(), "no `{text}` in:\n{}", self.process.logs());
    }
}

fn hook(args: &[&str]) -> Output {
    Command::new(bin_path("remora-proxy").unwrap())
        .args(args)
        .output()
        .unwrap()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_proxy_configured_only_by_environment_variables_joins_the_mesh() {
    let root = tempfile::tempdir().unwrap();
    let config = config_dir(root.path());
    write_config(&config, "services.yaml", WEB_AND_ORDERS);
    let cp = ControlPlane::start_secure(&config, &[]).await.unwrap();
    let bundle = trust_bundle(&cp).await;
    let token = root.path().join("orders.token");
    std::fs::write(&token, mint_token(&cp.data_dir(), "default", "orders")).unwrap();

    let orders_app = TestApp::http("orders");
    let mut env = pod_env("orders", "default", cp.xds_addr, &bundle);
    set(&mut env, "REMORA_APP", &orders_app.addr.to_string());
    set(&mut env, "REMORA_TOKEN_FILE", &token.display().to_string());
    let orders = PodProxy::start(&env).await;
    orders.wait_ready().await;
    let dump = orders.config_dump().await;
    assert_eq!(
        dump["certificate"]["identity"], "spiffe://cluster.local/ns/default/sa/orders",
        "{dump:#}"
    );

    // Another proxy reaches it at POD_IP and the port its inbound bound.
    let web_app = TestApp::http("web");
    let web = meshed_proxy(&cp, root.path(), "web", &web_app).await;
    let inbound = orders.inbound.to_string();
    wait_config(&web, WAIT, "orders at its advertised address", |d| {
        d["clusters"]
            .as_array()
            .into_iter()
            .flatten()
            .flat_map(|c| c["endpoints"].as_array().into_iter().flatten())
            .any(|e| e["address"].as_str() == Some(inbound.as_str()))
    })
    .await;
    let reply = http::get_with_host(web.outbound, "orders", "/")
        .await
        .unwrap();
    assert_eq!(reply.status, 200, "{}", reply.text());

    // Its node id is the pod's.
    let proxies = cp.proxies().await.unwrap().to_string();
    assert!(proxies.contains("orders-7f9c-x2.default"), "{proxies}");
}

#[test]
fn a_bad_variable_is_refused_naming_it() {
    let control_plane: SocketAddr = "127.0.0.1:1".parse().unwrap();
    for (variable, value) in [
        ("REMORA_SERVICE", "Orders"),
        ("POD_IP", "not-an-ip"),
        ("REMORA_OPAQUE_PORTS", "3306,mysql"),
        ("REMORA_CONTROL_PLANE", "remora"),
    ] {
        let mut env = pod_env("orders", "default", control_plane, SOME_PEM);
        set(&mut env, variable, value);
        let out = proxy_command(&env).output().unwrap();
        assert!(!out.status.success(), "{variable}={value} was accepted");
        let err = stderr(&out);
        assert!(
            err.contains(&format!("bootstrap from the environment: {variable}: ")),
            "{variable}={value}: {err}"
        );
    }
    let mut env = pod_env("orders", "default", control_plane, SOME_PEM);
    env.retain(|(k, _)| k != "REMORA_SERVICE");
    let out = proxy_command(&env).output().unwrap();
    assert!(
        stderr(&out).contains("REMORA_SERVICE: is required"),
        "{}",
        stderr(&out)
    );
    // No trust bundle: the token would go out before the control plane is
    // verified, so the proxy does not start.
    let mut env = pod_env("orders", "default", control_plane, SOME_PEM);
    env.retain(|(k, _)| k != "REMORA_TRUST_BUNDLE");
    let out = proxy_command(&env).output().unwrap();
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains(
            "REMORA_TRUST_BUNDLE or REMORA_TRUST_BUNDLE_FILE is required: the pod's token must \
             not cross the network before the control plane is verified"
        ),
        "{}",
        stderr(&out)
    );
    // Neither a file nor the environment: say how to give one.
    let out = proxy_command(&[]).output().unwrap();
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("REMORA_BOOTSTRAP_FROM_ENV=1"),
        "{}",
        stderr(&out)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_service_account_token_gets_a_certificate_through_token_review() {
    let double = KubeDouble::start();
    double.add_token(
        "eyJhbGciOiJSUzI1NiJ9.abc.c2ln",
        "shop",
        "orders",
        &["remora"],
    );
    double.add_token(
        "eyJhbGciOiJSUzI1NiJ9.vault.c2ln",
        "shop",
        "orders",
        &["vault"],
    );
    let root = tempfile::tempdir().unwrap();
    let cp = ControlPlane::start_kubernetes(root.path().join("config"), double.kubeconfig(), &[])
        .await
        .unwrap();
    let bundle = trust_bundle(&cp).await;
    let token_proxy = |name: &str, token: &str| {
        let file = root.path().join(name);
        std::fs::write(&file, token).unwrap();
        let mut env = pod_env("orders", "shop", cp.xds_addr, &bundle);
        set(&mut env, "REMORA_TOKEN_FILE", &file.display().to_string());
        env
    };

    let good = PodProxy::start(&token_proxy(
        "good.token",
        "eyJhbGciOiJSUzI1NiJ9.abc.c2ln\n",
    ))
    .await;
    let certified = wait_for(WAIT, || async {
        good.config_dump().await["certificate"]["identity"]
            == "spiffe://cluster.local/ns/shop/sa/orders"
    })
    .await;
    assert!(
        certified.is_ok(),
        "{:#}\n{}\ncontrol plane:\n{}",
        good.config_dump().await,
        good.process.logs(),
        cp.logs()
    );
    assert!(cp.logs().contains("certificate issued"), "{}", cp.logs());

    // A token projected for another audience, and one the cluster never issued.
    let vault = PodProxy::start(&token_proxy(
        "vault.token",
        "eyJhbGciOiJSUzI1NiJ9.vault.c2ln",
    ))
    .await;
    vault
        .wait_log("is invalid for the target audiences [\"remora\"]")
        .await;
    let unknown = PodProxy::start(&token_proxy(
        "unknown.token",
        "eyJhbGciOiJSUzI1NiJ9.nobody.c2ln",
    ))
    .await;
    unknown
        .wait_log("the service-account token is not authenticated")
        .await;
    for refused in [&vault, &unknown] {
        let ready = http::get(refused.admin, "/ready").await.unwrap();
        assert_eq!(ready.status, 503);
        assert!(ready.text().contains("certificate"), "{}", ready.text());
    }
    // A bootstrap token still works next to TokenReview (a VM joining).
    let vm_token = mint_token(&cp.data_dir(), "shop", "orders");
    let vm = PodProxy::start(&token_proxy("vm.token", &vm_token)).await;
    let certified = wait_for(WAIT, || async {
        vm.config_dump().await["certificate"]["identity"]
            == "spiffe://cluster.local/ns/shop/sa/orders"
    })
    .await;
    assert!(certified.is_ok(), "{}", vm.process.logs());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wait_times_out_naming_why_and_drain_makes_the_proxy_exit() {
    let (_root, cp) = control_plane_with(&[("orders", 80, "http")], &[]).await;
    let app = TestApp::http("orders");
    let mut env = pod_env("orders", "default", cp.xds_addr, &trust_bundle(&cp).await);
    set(&mut env, "REMORA_APP", &app.addr.to_string());
    // No token file: a proxy without an identity (the control plane allows it).
    set(&mut env, "REMORA_TOKEN_FILE", "/nonexistent/token");
    let mut proxy = PodProxy::start(&env).await;
    let admin = proxy.admin.to_string();

    // The control plane answers but the token cannot be read: never ready,
    // and `wait` says why at its timeout.
    let out = hook(&["wait", "--admin", &admin, "--timeout", "1s"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(err.contains("not ready after"), "{err}");
    assert!(err.contains("last answer: 503"), "{err}");

    // drain: the proxy leaves, finishes and exits; /live stops answering.
    let out = hook(&["drain", "--admin", &admin, "--timeout", "20s"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let exited = wait_for(Duration::from_secs(5), || {
        let done = proxy.process.exit_status().is_some();
        async move { done }
    })
    .await;
    assert!(exited.is_ok(), "{}", proxy.process.logs());
    assert!(http::get(proxy.admin, "/live").await.is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wait_exits_zero_once_the_proxy_is_ready() {
    let (_root, cp) = control_plane_with(&[("orders", 80, "http")], &[]).await;
    let app = TestApp::http("orders");
    let mut env = pod_env("orders", "default", cp.xds_addr, &trust_bundle(&cp).await);
    set(&mut env, "REMORA_APP", &app.addr.to_string());
    // A bootstrap token, so the proxy gets a certificate and becomes ready.
    let root = tempfile::tempdir().unwrap();
    let token = root.path().join("orders.token");
    std::fs::write(&token, mint_token(&cp.data_dir(), "default", "orders")).unwrap();
    set(&mut env, "REMORA_TOKEN_FILE", &token.display().to_string());
    let proxy = PodProxy::start(&env).await;
    let admin = proxy.admin.to_string();
    // Started right away, as the kubelet runs a postStart hook: it polls.
    let out =
        tokio::task::spawn_blocking(move || hook(&["wait", "--admin", &admin, "--timeout", "15s"]))
            .await
            .unwrap();
    assert!(
        out.status.success(),
        "{}\n{}",
        stderr(&out),
        proxy.process.logs()
    );
    let ready = http::get(proxy.admin, "/ready").await.unwrap();
    assert_eq!(ready.status, 200);
}

/// A control plane installed in another namespace (`remora install --namespace
/// mesh`) proves `.../ns/mesh/sa/remora-control`: proxies told that namespace
/// trust it, proxies expecting the default refuse it (they would otherwise
/// trust any workload certificate named remora-control elsewhere).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxies_verify_a_control_plane_in_its_own_namespace() {
    let double = KubeDouble::start();
    double.add_token(
        "eyJhbGciOiJSUzI1NiJ9.mesh.c2ln",
        "shop",
        "orders",
        &["remora"],
    );
    let root = tempfile::tempdir().unwrap();
    let cp = ControlPlane::start_kubernetes(
        root.path().join("config"),
        double.kubeconfig(),
        &["--namespace", "mesh"],
    )
    .await
    .unwrap();
    let bundle = trust_bundle(&cp).await;
    let file = root.path().join("mesh.token");
    std::fs::write(&file, "eyJhbGciOiJSUzI1NiJ9.mesh.c2ln").unwrap();
    let proxy_env = |namespace: Option<&str>| {
        let mut env = pod_env("orders", "shop", cp.xds_addr, &bundle);
        set(&mut env, "REMORA_TOKEN_FILE", &file.display().to_string());
        if let Some(ns) = namespace {
            set(&mut env, "REMORA_CONTROL_PLANE_NAMESPACE", ns);
        }
        env
    };

    let told = PodProxy::start(&proxy_env(Some("mesh"))).await;
    let certified = wait_for(WAIT, || async {
        told.config_dump().await["certificate"]["identity"]
            == "spiffe://cluster.local/ns/shop/sa/orders"
    })
    .await;
    assert!(
        certified.is_ok(),
        "{}\ncontrol plane:\n{}",
        told.process.logs(),
        cp.logs()
    );

    let untold = PodProxy::start(&proxy_env(None)).await;
    untold
        .wait_log("spiffe://cluster.local/ns/remora-system/sa/remora-control")
        .await;
    let ready = http::get(untold.admin, "/ready").await.unwrap();
    assert_eq!(ready.status, 503, "{}", ready.text());
}
