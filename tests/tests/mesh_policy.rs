//! Mesh TLS mode and authorization policy, end to end: a policy file changes what a
//! running proxy accepts within 2 s, without restarting anything.

mod support;

use std::process::Command;
use std::time::{Duration, Instant};

use remora_tests::app::TestApp;
use remora_tests::harness::{http, wait_for, Proxy};
use support::*;

const WEB: &str = "spiffe://cluster.local/ns/default/sa/web";

fn mesh_tls(name: &str, target: Option<&str>, mode: &str) -> String {
    let target = target
        .map(|t| format!("  targetRef: {{kind: Service, name: {t}}}\n"))
        .unwrap_or_default();
    format!(
        "apiVersion: policy.remora.dev/v1alpha1\nkind: MeshTLS\n\
         metadata: {{name: {name}, namespace: default}}\nspec:\n{target}  mode: {mode}\n"
    )
}

fn curl_plaintext(proxy: &Proxy) -> std::process::Output {
    Command::new("curl")
        .args(["-sS", "--max-time", "5", "-H", "Host: orders"])
        .arg(format!("http://{}/", proxy.inbound))
        .output()
        .expect("curl (scripts/test installs it)")
}

async fn wait_mode(proxy: &Proxy, mode: &str) -> Duration {
    let start = Instant::now();
    wait_config(proxy, CONVERGE, &format!("inbound mode {mode}"), |d| {
        d["inbound"]["tls_mode"] == mode
    })
    .await;
    start.elapsed()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn permissive_accepts_and_counts_plaintext_and_strict_refuses_it() {
    let (root, cp) = control_plane_with(&[("web", 80, "http"), ("orders", 80, "http")], &[]).await;
    let config = config_dir(root.path());
    let (web_app, orders_app) = (TestApp::http("web"), TestApp::http("orders"));
    let web = meshed_proxy(&cp, root.path(), "web", &web_app).await;
    let orders = meshed_proxy(&cp, root.path(), "orders", &orders_app).await;
    wait_mode(&orders, "STRICT").await;
    assert!(
        !curl_plaintext(&orders).status.success(),
        "STRICT by default"
    );

    write_config(
        &config,
        "tls.yaml",
        &mesh_tls("orders-permissive", Some("orders"), "PERMISSIVE"),
    );
    wait_mode(&orders, "PERMISSIVE").await;
    let curl = curl_plaintext(&orders);
    let body = String::from_utf8_lossy(&curl.stdout);
    assert!(
        curl.status.success() && body.contains("orders"),
        "PERMISSIVE: {body}\n{}",
        orders.logs()
    );
    let dump = orders.config_dump().await.unwrap();
    assert_eq!(
        dump["inbound"]["plaintext_connections_accepted"], 1,
        "{dump:#}"
    );
    assert!(dump["inbound"]["plaintext_connections_refused"].as_u64() >= Some(1));

    // mTLS still works, and the mesh peer is still identified.
    wait_config(
        &web,
        Duration::from_secs(10),
        "an endpoint for orders",
        |d| endpoint_count(d, "orders") == 1,
    )
    .await;
    let reply = http::get_with_host(web.outbound, "orders", "/")
        .await
        .unwrap();
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(reply.header("x-seen-client-id"), Some(WEB));

    // A namespace-wide STRICT does not override the Service's own PERMISSIVE...
    write_config(
        &config,
        "tls-ns.yaml",
        &mesh_tls("namespace-strict", None, "STRICT"),
    );
    // Once the control plane holds both policies and orders has acknowledged all
    // it was sent, orders is still PERMISSIVE.
    let settled = wait_for(CONVERGE, || async {
        let view = cp.api_get("/api/v1/config").await.unwrap().json().unwrap();
        let proxies = cp.proxies().await.unwrap();
        view["resources"]["MeshTLS"] == 2
            && proxies.as_array().unwrap().iter().all(|p| {
                p["types"]
                    .as_object()
                    .unwrap()
                    .values()
                    .all(|t| t["acked_version"] == t["sent_version"])
            })
    })
    .await;
    assert!(settled.is_ok(), "{:#}", cp.proxies().await.unwrap());
    assert_eq!(
        orders.config_dump().await.unwrap()["inbound"]["tls_mode"],
        "PERMISSIVE"
    );
    // ...until the Service's policy goes.
    std::fs::remove_file(config.join("tls.yaml")).unwrap();
    wait_mode(&orders, "STRICT").await;
    assert!(!curl_plaintext(&orders).status.success(), "STRICT again");
}

fn policy(name: &str, action: &str, rules: &str) -> String {
    format!(
        "apiVersion: policy.remora.dev/v1alpha1\nkind: AuthorizationPolicy\n\
         metadata: {{name: {name}, namespace: default}}\n\
         spec:\n  targetRef: {{kind: Service, name: orders}}\n  action: {action}\n  rules:\n{rules}"
    )
}

/// Polls `path` through `proxy` until it answers `status`; returns how long that
/// took.
async fn wait_status(proxy: &Proxy, path: &str, status: u16) -> Duration {
    let start = Instant::now();
    let ok = wait_for(CONVERGE, || async {
        http::get_with_host(proxy.outbound, "orders", path)
            .await
            .is_ok_and(|r| r.status == status)
    })
    .await;
    let last = http::get_with_host(proxy.outbound, "orders", path).await;
    assert!(
        ok.is_ok(),
        "{} never got {status} for {path} within {CONVERGE:?}; last: {:?}\n{}",
        proxy.spec.service,
        last.map(|r| (r.status, r.text())),
        proxy.logs()
    );
    start.elapsed()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn authorization_allows_and_denies_by_identity_and_path_and_follows_edits() {
    let (root, cp) = control_plane_with(
        &[
            ("web", 80, "http"),
            ("reports", 80, "http"),
            ("orders", 80, "http"),
        ],
        &[],
    )
    .await;
    let config = config_dir(root.path());
    let apps = [
        TestApp::http("web"),
        TestApp::http("reports"),
        TestApp::http("orders"),
    ];
    let web = meshed_proxy(&cp, root.path(), "web", &apps[0]).await;
    let reports = meshed_proxy(&cp, root.path(), "reports", &apps[1]).await;
    let orders = meshed_proxy(&cp, root.path(), "orders", &apps[2]).await;
    for p in [&web, &reports] {
        wait_config(p, Duration::from_secs(10), "an endpoint for orders", |d| {
            endpoint_count(d, "orders") == 1
        })
        .await;
    }
    // No policy: any authenticated mesh peer.
    wait_status(&reports, "/", 200).await;
    wait_status(&web, "/", 200).await;

    // Only web may call orders.
    write_config(
        &config,
        "allow.yaml",
        &policy(
            "web-only",
            "ALLOW",
            &format!("  - from: {{identities: [\"{WEB}\"]}}\n"),
        ),
    );
    let took = wait_status(&reports, "/", 403).await;
    let denied = http::get_with_host(reports.outbound, "orders", "/")
        .await
        .unwrap();
    assert!(
        denied
            .text()
            .contains("no authorization policy allows this caller"),
        "{}",
        denied.text()
    );
    assert!(denied.header("remora-error").is_some());
    assert_eq!(
        http::get_with_host(web.outbound, "orders", "/")
            .await
            .unwrap()
            .status,
        200
    );
    eprintln!("ALLOW policy in force after {took:?}");

    // Nobody may reach /admin, whatever ALLOW says; the rest still works for web.
    write_config(
        &config,
        "deny.yaml",
        &policy(
            "no-admin",
            "DENY",
            "  - to: {paths: [\"/admin\", \"/admin/*\"]}\n",
        ),
    );
    wait_status(&web, "/admin/users", 403).await;
    let reached = apps[2].requests();
    let denied = http::get_with_host(web.outbound, "orders", "/admin")
        .await
        .unwrap();
    assert_eq!(denied.status, 403);
    assert_eq!(
        apps[2].requests(),
        reached,
        "a denied request never reaches the app"
    );
    assert!(
        denied
            .text()
            .contains("denied by authorization policy default/no-admin/rules[0]"),
        "{}",
        denied.text()
    );
    assert_eq!(
        http::get_with_host(web.outbound, "orders", "/orders/1")
            .await
            .unwrap()
            .status,
        200
    );

    // Widen the ALLOW to the whole namespace, for GETs only.
    write_config(
        &config,
        "allow.yaml",
        &policy(
            "web-only",
            "ALLOW",
            "  - from: {namespaces: [default]}\n    to: {methods: [GET]}\n",
        ),
    );
    let took = wait_status(&reports, "/", 200).await;
    eprintln!("widened ALLOW policy in force after {took:?}");
    let post = http::send(
        reports.outbound,
        ::http::Request::post("/")
            .header("host", "orders")
            .body(Default::default())
            .unwrap(),
    )
    .await
    .unwrap();
    assert_eq!(post.status, 403, "only GET is allowed");

    let dump = orders.config_dump().await.unwrap();
    assert!(
        dump["inbound"]["requests_denied"].as_u64() >= Some(4),
        "{dump:#}"
    );
    assert!(
        orders.logs().contains("request denied"),
        "{}",
        orders.logs()
    );
}
