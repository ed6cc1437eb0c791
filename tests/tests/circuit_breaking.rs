//! Circuit breaking, end to end: outlier detection ejects a failing endpoint and
//! takes it back once it recovers; a concurrency limit fails the excess fast
//! instead of queueing it.

mod support;

use std::time::{Duration, Instant};

use remora_tests::app::TestApp;
use remora_tests::harness::{http, wait_for, ControlPlane, Proxy, ProxySpec};
use support::*;

fn orders_policy(body: &str) -> String {
    format!(
        "apiVersion: policy.remora.dev/v1alpha1\nkind: TrafficPolicy\n\
         metadata: {{name: orders, namespace: default}}\n\
         spec:\n  targetRef: {{kind: Service, name: orders}}\n{body}"
    )
}

async fn orders_stats(web: &Proxy) -> serde_json::Value {
    let dump = web.config_dump().await.unwrap();
    dump["clusters"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"].as_str().is_some_and(|n| n.contains("|orders.")))
        .map(|c| c["stats"].clone())
        .unwrap()
}

struct Mesh {
    _root: tempfile::TempDir,
    _cp: ControlPlane,
    web: Proxy,
    apps: Vec<TestApp>,
    _proxies: Vec<Proxy>,
    _web_app: TestApp,
}

async fn mesh(orders: usize, policy: &str) -> Mesh {
    let root = tempfile::tempdir().unwrap();
    let config = config_dir(root.path());
    write_config(
        &config,
        "services.yaml",
        &services(&[("web", 80, "http"), ("orders", 80, "http")]),
    );
    write_config(&config, "policy.yaml", &orders_policy(policy));
    let cp = ControlPlane::start(&config).await.unwrap();
    let view = cp.api_get("/api/v1/config").await.unwrap().json().unwrap();
    assert_eq!(view["errors"], serde_json::json!([]), "{view:#}");
    let web_app = TestApp::http("web");
    let web = Proxy::start(ProxySpec::new("web", cp.xds_addr, web_app.addr))
        .await
        .unwrap();
    let mut apps = Vec::new();
    let mut proxies = Vec::new();
    for i in 0..orders {
        let app = TestApp::http(&format!("orders-{i}"));
        let spec = ProxySpec::new("orders", cp.xds_addr, app.addr).node_id(&format!("orders-{i}"));
        proxies.push(Proxy::start(spec).await.unwrap());
        apps.push(app);
    }
    wait_config(
        &web,
        Duration::from_secs(10),
        "every orders endpoint",
        |d| endpoint_count(d, "orders") == orders,
    )
    .await;
    Mesh {
        _root: root,
        _cp: cp,
        web,
        apps,
        _proxies: proxies,
        _web_app: web_app,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_endpoint_is_ejected_and_comes_back_after_it_recovers() {
    let m = mesh(
        3,
        "  outlierDetection: {consecutiveFailures: 3, baseEjectionTime: 1s, maxEjectionPercent: 50}\n",
    )
    .await;
    let bad = &m.apps[0];
    bad.set_failures(100.0, 503, tonic::Code::Unavailable);
    let get = || http::get_with_host(m.web.outbound, "orders", "/");

    // Until the ejection: it takes at most 10 requests to the bad endpoint.
    let mut sent = 0;
    while orders_stats(&m.web).await["ejections"] == 0 {
        get().await.unwrap();
        sent += 1;
        assert!(
            sent < 500,
            "never ejected: {:#}",
            orders_stats(&m.web).await
        );
    }
    assert!(
        bad.requests() <= 10,
        "ejected after {} requests to it",
        bad.requests()
    );

    // While it is out, every request goes to the healthy two.
    let before = bad.requests();
    for _ in 0..50 {
        assert_eq!(get().await.unwrap().status, 200);
    }
    assert_eq!(bad.requests(), before, "no traffic to an ejected endpoint");

    // It recovers: after the ejection time a probe succeeds and it is back.
    bad.set_failures(0.0, 503, tonic::Code::Unavailable);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let back = wait_for(Duration::from_secs(5), || async {
        get().await.unwrap();
        bad.requests() >= before + 3
    })
    .await;
    assert!(
        back.is_ok(),
        "the recovered endpoint got {} requests",
        bad.requests() - before
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_the_concurrency_limit_requests_fail_fast() {
    let m = mesh(1, "  connectionLimits: {maxRequests: 10}\n").await;
    m.apps[0].set_delay(Duration::from_millis(1500));
    let started = Instant::now();
    let requests = (0..50).map(|_| {
        let web = m.web.outbound;
        tokio::spawn(async move {
            let r = http::get_with_host(web, "orders", "/").await.unwrap();
            (
                r.status,
                r.header("remora-error").map(str::to_owned),
                started.elapsed(),
            )
        })
    });
    let mut ok = 0;
    let mut refused = Vec::new();
    for r in requests.collect::<Vec<_>>() {
        match r.await.unwrap() {
            (200, _, _) => ok += 1,
            (503, Some(reason), after) if reason.starts_with("overflow") => refused.push(after),
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!((ok, refused.len()), (10, 40));
    let slowest_refusal = refused.iter().max().unwrap();
    assert!(
        *slowest_refusal < Duration::from_millis(1000),
        "refusals must not wait for the slow requests: {slowest_refusal:?}"
    );
    assert_eq!(orders_stats(&m.web).await["overflow"], 40);
}
