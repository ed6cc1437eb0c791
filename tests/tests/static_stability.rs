//! Static stability across a restart: a proxy keeps its last accepted config and
//! its certificate in its state dir (bootstrap `state_dir`). Restarted while the
//! control plane is down it serves from them at once, over mTLS, and says so on
//! `/ready` and `/config_dump`; when the control plane is back it converges. A
//! damaged state file is reported and the proxy starts as it would without one.

mod support;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use remora_tests::app::TestApp;
use remora_tests::harness::{http, wait_for, ControlPlane, Proxy, ProxySpec};
use support::*;

const WEB_IDENTITY: &str = "spiffe://cluster.local/ns/default/sa/web";

/// A route on orders that tags each request, to see a change arrive.
const TAGGING_ROUTE: &str = "
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: orders, namespace: default}
spec:
  parentRefs: [{kind: Service, name: orders}]
  rules:
  - backendRefs: [{name: orders, port: 80}]
    filters:
    - type: RequestHeaderModifier
      requestHeaderModifier:
        set: [{name: x-test-phase, value: after-restart}]
";

fn state_dir(root: &Path, service: &str) -> PathBuf {
    root.join(format!("state-{service}"))
}

/// Bootstrap YAML naming `dir` as the state dir (quoted: a temporary path may
/// hold anything).
fn state_dir_yaml(dir: &Path) -> String {
    format!(
        "state_dir: {}\n",
        serde_json::Value::from(dir.to_string_lossy().into_owned())
    )
}

/// A proxy for `service` with a token for the account named like it, the mesh's
/// trust bundle (`root/bundle.pem`) and a state dir under `root`.
fn meshed_spec(cp: &ControlPlane, root: &Path, service: &str, app: &TestApp) -> ProxySpec {
    let token = root.join(format!("{service}.token"));
    std::fs::write(&token, mint_token(&cp.data_dir(), "default", service)).unwrap();
    ProxySpec::new(service, cp.xds_addr, app.addr)
        .token_file(&token)
        .trust_bundle_file(&root.join("bundle.pem"))
        .extra(&state_dir_yaml(&state_dir(root, service)))
}

/// Kills `proxy` and starts it again with the same bootstrap on the same
/// addresses (its callers' saved endpoints point there).
async fn restart(proxy: &mut Proxy) -> Proxy {
    let spec = proxy
        .spec
        .clone()
        .listen(proxy.outbound, proxy.inbound, proxy.admin);
    proxy.kill();
    Proxy::start(spec).await.unwrap()
}

/// Waits until `proxy`'s state dir holds the config it serves.
async fn wait_saved(proxy: &Proxy) {
    wait_config(
        proxy,
        Duration::from_secs(10),
        "its config saved in the state dir",
        |d| {
            d["versions"].as_object().is_some_and(|v| !v.is_empty())
                && d["state"]["saved"]["versions"] == d["versions"]
        },
    )
    .await;
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .permissions()
        .mode()
        & 0o7777
}

/// A request from web's app to orders; the reply says who orders' proxy
/// verified the caller to be.
async fn call_orders(web: &Proxy) -> http::HttpReply {
    http::get_with_host(web.outbound, "orders", "/")
        .await
        .unwrap_or_else(|e| panic!("web -> orders: {e:#}\n{}", web.logs()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_mesh_serves_over_mtls_from_its_state_dir_while_the_control_plane_is_down() {
    let root = tempfile::tempdir().unwrap();
    let config = config_dir(root.path());
    write_config(&config, "services.yaml", WEB_AND_ORDERS);
    let mut cp = ControlPlane::start_secure(&config, &[]).await.unwrap();
    let (xds_port, api_port) = (cp.xds_addr.port(), cp.api_addr.port());
    std::fs::write(
        root.path().join("bundle.pem"),
        cp.api_get("/api/v1/trust-bundle").await.unwrap().text(),
    )
    .unwrap();
    let (web_app, orders_app) = (TestApp::http("web"), TestApp::http("orders"));
    let mut orders = Proxy::start(meshed_spec(&cp, root.path(), "orders", &orders_app))
        .await
        .unwrap();
    let mut web = Proxy::start(meshed_spec(&cp, root.path(), "web", &web_app))
        .await
        .unwrap();
    web.wait_ready(Duration::from_secs(10)).await.unwrap();
    orders.wait_ready(Duration::from_secs(10)).await.unwrap();
    wait_config(&web, Duration::from_secs(10), "orders' endpoint", |d| {
        endpoint_count(d, "orders") == 1
    })
    .await;
    let reply = call_orders(&web).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    let dump = web.config_dump().await.unwrap();
    assert_eq!(dump["source"], "control_plane", "{dump:#}");

    // What each proxy keeps: the config it serves and its certificate, private.
    for proxy in [&web, &orders] {
        wait_saved(proxy).await;
        let dir = state_dir(root.path(), &proxy.spec.service);
        let certificate = dir.join("certificate.json");
        let saved = wait_for(Duration::from_secs(10), || async { certificate.exists() }).await;
        assert!(saved.is_ok(), "no {}", certificate.display());
        assert_eq!(mode(&dir), 0o700);
        assert_eq!(mode(&certificate), 0o600);
        assert_eq!(mode(&dir.join("config.state")), 0o600);
    }

    // The control plane goes away; both proxies restart without it.
    cp.kill();
    let mut orders = restart(&mut orders).await;
    let mut web = restart(&mut web).await;
    for proxy in [&web, &orders] {
        proxy.wait_ready(Duration::from_secs(5)).await.unwrap();
        let ready = proxy.admin_get("/ready").await.unwrap();
        assert_eq!(ready.status, 200);
        assert_eq!(
            ready.text(),
            "ready (config from state dir, not connected to the control plane)\n"
        );
        let dump = proxy.config_dump().await.unwrap();
        assert_eq!(dump["source"], "state_dir", "{dump:#}");
        assert_eq!(dump["state"]["source"], "state_dir", "{dump:#}");
        assert!(
            dump["state"]["restored"]["versions"]
                .as_object()
                .is_some_and(|v| !v.is_empty()),
            "{dump:#}"
        );
        assert!(dump["state"]["restored"]["saved_unix"].as_u64() > Some(0));
        assert_eq!(dump["xds"]["connected"], false, "{dump:#}");
        // The certificate is the saved one: no control plane issued a new one.
        assert_eq!(dump["certificate"]["generation"], 1, "{dump:#}");
        assert!(
            proxy
                .logs()
                .contains("certificate restored from the state dir"),
            "{}",
            proxy.logs()
        );
    }

    // Traffic flows at once, over mTLS: orders' proxy verified web's certificate.
    let reply = call_orders(&web).await;
    assert_eq!(reply.status, 200, "{}\n{}", reply.text(), web.logs());
    assert_eq!(reply.header("x-backend"), Some("orders"));
    assert_eq!(reply.header("x-seen-client-id"), Some(WEB_IDENTITY));
    let orders_metrics = orders.admin_get("/metrics").await.unwrap().text();
    assert!(
        orders_metrics
            .lines()
            .any(|l| l.starts_with("remora_requests_total{")
                && l.contains("direction=\"inbound\"")
                && l.contains(&format!("source_identity=\"{WEB_IDENTITY}\""))),
        "{orders_metrics}"
    );

    // The control plane comes back where it was, with its CA: the proxies
    // reconnect, take its config and apply the next change.
    let cp = ControlPlane::start_on(&config, xds_port, api_port)
        .await
        .unwrap();
    for proxy in [&web, &orders] {
        wait_config(
            proxy,
            Duration::from_secs(15),
            "config from the control plane",
            |d| d["source"] == "control_plane" && d["xds"]["connected"] == true,
        )
        .await;
        let ready = proxy.admin_get("/ready").await.unwrap();
        assert_eq!((ready.status, ready.text()), (200, "ready\n".to_owned()));
    }
    write_config(&config, "route.yaml", TAGGING_ROUTE);
    let tagged = wait_for(Duration::from_secs(15), || async {
        http::get_with_host(web.outbound, "orders", "/")
            .await
            .is_ok_and(|r| r.status == 200 && r.header("x-echo-phase") == Some("after-restart"))
    })
    .await;
    assert!(
        tagged.is_ok(),
        "the route change never applied\nweb:\n{}\ncontrol plane:\n{}",
        web.logs(),
        cp.logs()
    );
    // And the state dir follows: a restart now would start from the new config.
    wait_saved(&web).await;
    let reply = call_orders(&web).await;
    assert_eq!(reply.header("x-seen-client-id"), Some(WEB_IDENTITY));
    web.kill();
    orders.kill();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_damaged_state_file_is_reported_and_the_proxy_starts_as_without_state() {
    let root = tempfile::tempdir().unwrap();
    let config = config_dir(root.path());
    write_config(
        &config,
        "services.yaml",
        &services(&[("web", 80, "http"), ("orders", 80, "http")]),
    );
    let mut cp = ControlPlane::start(&config).await.unwrap();
    let (xds_port, api_port) = (cp.xds_addr.port(), cp.api_addr.port());
    let app = TestApp::http("web");
    let dir = state_dir(root.path(), "web");
    let spec = ProxySpec::new("web", cp.xds_addr, app.addr).extra(&state_dir_yaml(&dir));
    let mut web = Proxy::start(spec).await.unwrap();
    web.wait_ready(Duration::from_secs(10)).await.unwrap();
    wait_saved(&web).await;

    // The control plane is down and a byte of the saved config goes bad.
    cp.kill();
    let file = dir.join("config.state");
    let mut bytes = std::fs::read(&file).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0xff;
    std::fs::write(&file, bytes).unwrap();
    let mut web = restart(&mut web).await;

    // The proxy says what is wrong with which file...
    let logged = wait_for(Duration::from_secs(5), || async {
        web.logs().contains("ignoring the config in the state dir")
    })
    .await;
    assert!(logged.is_ok(), "{}", web.logs());
    let logs = web.logs();
    assert!(logs.contains("config.state"), "{logs}");
    assert!(logs.contains("the checksum does not match"), "{logs}");
    // ...and runs as without state: no config until the control plane answers.
    let ready = web.admin_get("/ready").await.unwrap();
    assert_eq!(ready.status, 503, "{}", ready.text());
    let dump = web.config_dump().await.unwrap();
    assert_eq!(dump["source"], serde_json::Value::Null, "{dump:#}");
    assert!(
        dump["state"]["load_error"]
            .as_str()
            .is_some_and(|e| e.contains("checksum")),
        "{dump:#}"
    );

    let _cp = ControlPlane::start_on(&config, xds_port, api_port)
        .await
        .unwrap();
    web.wait_ready(Duration::from_secs(15)).await.unwrap();
    let dump = web.config_dump().await.unwrap();
    assert_eq!(dump["source"], "control_plane", "{dump:#}");
    // The next accepted config replaces the damaged file.
    wait_saved(&web).await;
    web.kill();
}
