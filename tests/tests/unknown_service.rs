//! A proxy that names a Service the control plane does not know connects, gets
//! its outbound config, and never receives traffic. Both sides say so: the
//! control plane logs a warning and lists it under the proxy's `warnings` in
//! `/api/v1/proxies` (what `remora status` shows), and the proxy logs that no
//! inbound listener came for its Service and says it on `/ready` and in
//! `/config_dump`. Defining the Service clears both; removing it warns again.

mod support;

use std::time::Duration;

use remora_tests::app::TestApp;
use remora_tests::harness::{wait_for, wait_for_some, Proxy, ProxySpec};
use support::*;

/// The `warnings` the control plane lists for node `node_id`, once it lists it.
async fn warnings(cp: &remora_tests::harness::ControlPlane, node_id: &str) -> Option<Vec<String>> {
    let proxies = cp.proxies().await.ok()?;
    let proxy = proxies
        .as_array()?
        .iter()
        .find(|p| p["node_id"] == node_id)?;
    let list = proxy["warnings"].as_array()?;
    Some(
        list.iter()
            .filter_map(|w| w.as_str().map(str::to_owned))
            .collect(),
    )
}

async fn ready_text(proxy: &Proxy) -> Option<String> {
    let reply = proxy.admin_get("/ready").await.ok()?;
    (reply.status == 200).then(|| reply.text())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_proxy_naming_an_unknown_service_is_warned_about_on_both_sides() {
    let (root, cp) = control_plane_with(&[("web", 80, "http")], &[]).await;
    let config = config_dir(root.path());
    let (web_app, ghost_app) = (TestApp::http("web"), TestApp::http("ghost"));
    let web = Proxy::start(ProxySpec::new("web", cp.xds_addr, web_app.addr).node_id("web-1"))
        .await
        .unwrap();
    let ghost =
        Proxy::start(ProxySpec::new("ghost", cp.xds_addr, ghost_app.addr).node_id("ghost-1"))
            .await
            .unwrap();
    web.wait_ready(Duration::from_secs(10)).await.unwrap();
    // Ready: its outbound config works. But it says why nothing comes in.
    let ready = wait_for_some(Duration::from_secs(10), || async {
        ready_text(&ghost).await.filter(|t| t.contains("warning:"))
    })
    .await;
    let ready = match ready {
        Ok(text) => text,
        Err(e) => panic!("/ready never warned: {e}\n{}", ghost.logs()),
    };
    assert!(ready.contains("default/ghost"), "{ready}");
    let dump = ghost.config_dump().await.unwrap();
    assert!(
        dump["xds"]["service_warning"]
            .as_str()
            .is_some_and(|w| w.contains("default/ghost")),
        "{dump:#}"
    );
    assert!(
        ghost
            .logs()
            .contains("the control plane sent no inbound listener for this proxy's Service"),
        "{}",
        ghost.logs()
    );

    // The control plane lists it, and logged it.
    let listed = wait_for_some(Duration::from_secs(5), || async {
        warnings(&cp, "ghost-1").await.filter(|w| !w.is_empty())
    })
    .await
    .unwrap_or_else(|e| panic!("no warning for ghost-1 in /api/v1/proxies: {e}"));
    assert!(
        listed[0].contains("Service default/ghost is not defined"),
        "{listed:?}"
    );
    assert_eq!(
        warnings(&cp, "web-1").await,
        Some(Vec::new()),
        "web is fine"
    );
    assert!(
        cp.logs()
            .contains("proxy names a Service the control plane does not know"),
        "{}",
        cp.logs()
    );

    // Defined: no warning on either side.
    write_config(
        &config,
        "services.yaml",
        &services(&[("web", 80, "http"), ("ghost", 80, "http")]),
    );
    let cleared = wait_for(Duration::from_secs(10), || async {
        warnings(&cp, "ghost-1").await == Some(Vec::new())
            && ready_text(&ghost).await.as_deref() == Some("ready\n")
    })
    .await;
    assert!(cleared.is_ok(), "warnings stayed:\n{}", ghost.logs());

    // Removed again: warned again.
    write_config(&config, "services.yaml", &services(&[("web", 80, "http")]));
    let again = wait_for(Duration::from_secs(10), || async {
        warnings(&cp, "ghost-1")
            .await
            .is_some_and(|w| !w.is_empty())
    })
    .await;
    assert!(again.is_ok(), "{}", cp.logs());
    assert!(
        cp.logs()
            .contains("the Service this proxy names was removed"),
        "{}",
        cp.logs()
    );
}
