//! Static stability: with the control plane gone traffic keeps flowing on the last
//! config; when it comes back the proxies reconnect and converge to the files.

mod support;

use std::time::Duration;

use remora_tests::harness::ControlPlane;
use remora_tests::load::{Load, LoadSpec};
use support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn traffic_survives_a_control_plane_restart_and_converges_after() {
    let mut mesh = SplitMesh::start(100, 0).await;
    let (xds_port, api_port) = (mesh.cp.xds_addr.port(), mesh.cp.api_addr.port());

    let started = tokio::time::Instant::now();
    let load = Load::start(LoadSpec::rate(mesh.web.outbound, "orders", 200.0).connections(4));
    mesh.cp.kill();
    // While it is away, the policy changes on disk.
    mesh.set_split(0, 100);
    tokio::time::sleep(Duration::from_secs(3)).await;
    let down_until = started.elapsed();
    let dump = mesh.web.config_dump().await.unwrap();
    assert_eq!(dump["xds"]["connected"], false, "{dump:#}");

    mesh.cp = ControlPlane::start_on(&mesh.config, xds_port, api_port)
        .await
        .unwrap();
    mesh.wait_split(Duration::from_secs(15), 0, 100).await;
    let converged = started.elapsed();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let report = load.stop().await;

    let outage = report.window(Duration::ZERO..down_until);
    assert!(
        outage.total > 400,
        "only {} requests during the outage",
        outage.total
    );
    assert_eq!(
        report.share_of("orders-v1", Duration::ZERO..down_until),
        1.0,
        "the last config kept routing to v1"
    );
    assert_no_errors(&report);
    let after = converged + Duration::from_millis(200)..report.duration;
    assert!(
        report.share_of("orders-v2", after) > 0.99,
        "after convergence v2 gets the traffic"
    );
    // Each proxy retries on its own backoff (grown over the outage's failed
    // attempts), so the last may come back after web converged.
    let reconnected = remora_tests::harness::wait_for(Duration::from_secs(15), || async {
        let proxies = mesh.cp.proxies().await;
        proxies.is_ok_and(|p| p.as_array().map(Vec::len) == Some(3))
    })
    .await;
    assert!(
        reconnected.is_ok(),
        "all proxies reconnected: {:#}",
        mesh.cp.proxies().await.unwrap()
    );
}

/// A control plane stopped with SIGTERM closes every stream; each closed stream
/// unregisters its proxy, and that must not reach the proxies still connected
/// as endpoint removals: they keep serving (and would keep in their state dirs)
/// the mesh as it was.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_control_plane_stopped_with_sigterm_takes_no_endpoint_away() {
    let mut mesh = SplitMesh::start(50, 50).await;
    // web's stream is the newest, so the others may close before it does.
    let spec = mesh.web.spec.clone();
    mesh.web.kill();
    mesh.web = remora_tests::harness::Proxy::start(spec).await.unwrap();
    wait_config(
        &mesh.web,
        Duration::from_secs(10),
        "endpoints for both versions",
        |d| endpoint_count(d, "orders-v1") == 1 && endpoint_count(d, "orders-v2") == 1,
    )
    .await;
    let (xds_port, api_port) = (mesh.cp.xds_addr.port(), mesh.cp.api_addr.port());
    let load = Load::start(LoadSpec::rate(mesh.web.outbound, "orders", 100.0).connections(2));
    // The order in which streams close varies: a few rounds.
    for round in 0..4 {
        // Every proxy has a stream to close.
        let all_connected = remora_tests::harness::wait_for(Duration::from_secs(15), || async {
            mesh.cp
                .proxies()
                .await
                .is_ok_and(|p| p.as_array().map(Vec::len) == Some(3))
        })
        .await;
        assert!(
            all_connected.is_ok(),
            "round {round}: not every proxy reconnected"
        );
        let status = mesh.cp.terminate();
        assert!(
            status.is_some_and(|s| s.success()),
            "the control plane exits 0 on SIGTERM: {status:?}\n{}",
            mesh.cp.logs()
        );
        // Once web's stream has ended, whatever came on it has been applied.
        wait_config(
            &mesh.web,
            Duration::from_secs(10),
            "web's stream ended",
            |d| d["xds"]["connected"] == false,
        )
        .await;
        let dump = mesh.web.config_dump().await.unwrap();
        for service in ["orders-v1", "orders-v2"] {
            assert_eq!(
                endpoint_count(&dump, service),
                1,
                "round {round}, {service}: {dump:#}\ncontrol plane:\n{}\nweb:\n{}",
                mesh.cp.logs(),
                mesh.web.logs()
            );
        }
        mesh.cp = ControlPlane::start_on(&mesh.config, xds_port, api_port)
            .await
            .unwrap();
        wait_config(&mesh.web, Duration::from_secs(15), "web reconnected", |d| {
            d["xds"]["connected"] == true
        })
        .await;
    }
    let report = load.stop().await;
    assert_no_errors(&report);
}
