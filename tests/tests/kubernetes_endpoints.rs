//! In Kubernetes mode a Service's endpoints are what its EndpointSlices say,
//! checked against the cluster's own facts: pods and a slice created with the
//! real kubectl against the API server double reach a caller's proxy as
//! endpoints with their pods' service accounts as identities, and real
//! proxies serve them over mTLS. A pod the Service does not select is no
//! endpoint, nor one running as an account the Service's explicit
//! `remora.io/service-accounts` does not list; an endpoint turning
//! terminating gets no new requests; a restarted control plane sends no
//! endpoints before it has listed the cluster's.

mod support;

use std::collections::BTreeSet;
use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::time::Duration;

use remora_tests::app::TestApp;
use remora_tests::harness::{http, wait_for, wait_for_some, ControlPlane, Proxy, ProxySpec};
use remora_tests::kube::KubeDouble;
use remora_tests::load::{Load, LoadSpec};
use support::kube::{endpoint_slice, ip, pod_running, set_endpoint_conditions, Conditions};
use support::{assert_no_errors, endpoint_count, mint_token, wait_config};

const WAIT: Duration = Duration::from_secs(30);

/// web and orders, each selecting the pods labelled `app: <name>`, with no
/// `remora.io/service-accounts`: any account of a selected pod serves.
const SERVICES: &str = "\
apiVersion: v1
kind: Service
metadata: {name: orders, namespace: default}
spec:
  selector: {app: orders}
  ports: [{name: http, port: 80, targetPort: 8080, appProtocol: http}]
---
apiVersion: v1
kind: Service
metadata: {name: web, namespace: default}
spec:
  selector: {app: web}
  ports: [{name: http, port: 80, targetPort: 8080, appProtocol: http}]
";

/// A cluster on the double, a control plane reading it, and web's proxy
/// (the caller, with a certificate for web's account).
/// Fields drop in order: the processes before the API server and their files.
struct Cluster {
    web: Proxy,
    _web_app: TestApp,
    cp: ControlPlane,
    double: KubeDouble,
    root: tempfile::TempDir,
}

/// One pod: its app, its proxy (inbound on the pod's IP) and its name.
struct Backend {
    pod: String,
    app: TestApp,
    proxy: Proxy,
}

impl Cluster {
    async fn start() -> Cluster {
        Self::start_on(KubeDouble::start(), &[]).await
    }

    /// On `double`, the control plane started with `args`.
    async fn start_on(double: KubeDouble, args: &[&str]) -> Cluster {
        double.kubectl_stdin(&["apply", "-f", "-"], SERVICES);
        let root = tempfile::tempdir().unwrap();
        let cp =
            ControlPlane::start_kubernetes(root.path().join("config"), double.kubeconfig(), args)
                .await
                .unwrap();
        let web_app = TestApp::http("web");
        let token = token_file(&cp, root.path(), "web");
        let web = Proxy::start(ProxySpec::new("web", cp.xds_addr, web_app.addr).token_file(&token))
            .await
            .unwrap();
        web.wait_ready(WAIT).await.unwrap();
        Cluster {
            web,
            _web_app: web_app,
            cp,
            double,
            root,
        }
    }

    /// A pod `name` of account `sa` labelled `app: <app>` at `ip`, with a real
    /// proxy whose inbound listener is bound there (the pod's inbound port is
    /// the one it got), created with kubectl and given its IP as the kubelet
    /// would (status subresource).
    async fn pod(&self, name: &str, sa: &str, app: &str, ip: IpAddr) -> Backend {
        let backend = TestApp::http(name);
        let token = token_file(&self.cp, self.root.path(), sa);
        let any = |ip: IpAddr| SocketAddr::new(ip, 0);
        let loopback = IpAddr::from([127, 0, 0, 1]);
        // The app serves the Service's targetPort 8080, here on the port the
        // system picked.
        let spec = ProxySpec::new("orders", self.cp.xds_addr, backend.addr)
            .node_id(name)
            .extra(&format!(
                "service_account: {sa}\napp_ports: {{8080: \"{}\"}}\n",
                backend.addr
            ))
            .token_file(&token)
            .listen(any(loopback), any(ip), any(loopback));
        let proxy = Proxy::start(spec).await.unwrap();
        proxy.wait_ready(WAIT).await.unwrap();
        let port = proxy.inbound.port();
        self.double.kubectl_stdin(
            &["apply", "-f", "-"],
            &format!(
                "apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\n  namespace: default\n  \
                 labels: {{app: {app}}}\n  annotations:\n    remora.io/injected: \"test\"\n    \
                 remora.io/inbound-port: \"{port}\"\nspec:\n  serviceAccountName: {sa}\n  \
                 containers: [{{name: app, image: example/app}}]\n"
            ),
        );
        pod_running(&self.double, "default", name, ip);
        Backend {
            pod: name.to_owned(),
            app: backend,
            proxy,
        }
    }

    /// The EndpointSlice of orders listing `pods` (name, IP), all ready.
    fn slice(&self, pods: &[(&str, IpAddr)]) {
        self.double.kubectl_stdin(
            &["apply", "-f", "-"],
            &endpoint_slice("default", "orders-x1", "orders", 8080, pods),
        );
    }

    /// orders' endpoints as the control plane's API lists them: (node id,
    /// address, identity, source).
    async fn orders_endpoints(&self) -> BTreeSet<(String, String, String, String)> {
        let reply = self.cp.api_get("/api/v1/endpoints").await.unwrap();
        assert_eq!(reply.status, 200, "{}", reply.text());
        let view = reply.json().unwrap();
        view["endpoints"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|e| e["service"] == "orders" && e["namespace"] == "default")
            .map(|e| {
                let s = |k: &str| e[k].as_str().unwrap_or_default().to_owned();
                (s("node_id"), s("address"), s("identity"), s("source"))
            })
            .collect()
    }

    /// Waits until orders' endpoints are exactly `expected`.
    async fn wait_orders_endpoints(&self, expected: &BTreeSet<(String, String, String, String)>) {
        let got = wait_for_some(WAIT, || async {
            let now = self.orders_endpoints().await;
            (now == *expected).then_some(now)
        })
        .await;
        if got.is_err() {
            panic!(
                "orders' endpoints never became {expected:#?}; now {:#?}\ncontrol plane:\n{}",
                self.orders_endpoints().await,
                self.cp.logs()
            );
        }
        // The control plane's view comes first; web's proxy ACKs the
        // assignment a moment later, and a call in between finds none.
        wait_config(&self.web, WAIT, "orders' endpoints at web", |d| {
            endpoint_count(d, "orders") == expected.len()
        })
        .await;
    }

    /// Calls orders through web's proxy until every backend in `names` has
    /// answered, every call succeeding.
    async fn reach_all(&self, names: &[&str]) {
        let wanted: BTreeSet<String> = names.iter().map(|n| (*n).to_owned()).collect();
        let seen = std::sync::Mutex::new(BTreeSet::new());
        let reached = wait_for(WAIT, || async {
            let reply = http::get_with_host(self.web.outbound, "orders", "/")
                .await
                .unwrap();
            assert_eq!(reply.status, 200, "{}\n{}", reply.text(), self.web.logs());
            let mut seen = seen.lock().unwrap();
            seen.insert(reply.header("x-backend").unwrap_or_default().to_owned());
            wanted.is_subset(&seen)
        })
        .await;
        assert!(
            reached.is_ok(),
            "web reached only {:?} of {wanted:?}\n{}",
            seen.lock().unwrap(),
            self.web.logs()
        );
    }
}

fn token_file(cp: &ControlPlane, dir: &Path, sa: &str) -> std::path::PathBuf {
    let path = dir.join(format!("{sa}.token"));
    std::fs::write(&path, mint_token(&cp.data_dir(), "default", sa)).unwrap();
    path
}

fn endpoint(b: &Backend, sa: &str) -> (String, String, String, String) {
    (
        format!("pod/default/{}", b.pod),
        b.proxy.inbound.to_string(),
        format!("spiffe://cluster.local/ns/default/sa/{sa}"),
        "endpointslice".to_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pods_the_service_selects_serve_it_with_their_service_accounts() {
    let c = Cluster::start().await;
    let a = c.pod("orders-a", "orders", "orders", ip(2)).await;
    // Another account than the Service's name: the cluster vouches for it.
    let canary = c
        .pod("orders-canary", "orders-canary", "orders", ip(3))
        .await;
    // Listed in the slice, injected, its IP right, but not selected.
    let intruder = c.pod("intruder", "orders", "web", ip(4)).await;
    c.slice(&[
        ("orders-a", ip(2)),
        ("orders-canary", ip(3)),
        ("intruder", ip(4)),
    ]);

    let expected = BTreeSet::from([endpoint(&a, "orders"), endpoint(&canary, "orders-canary")]);
    c.wait_orders_endpoints(&expected).await;
    wait_config(&c.web, WAIT, "orders' two endpoints", |d| {
        endpoint_count(d, "orders") == 2
    })
    .await;

    // Both answer over mTLS, each proving the identity the cluster gave it
    // (web's proxy checks it on every connection).
    c.reach_all(&["orders-a", "orders-canary"]).await;
    let reply = wait_for_some(WAIT, || async {
        http::get_with_host(c.web.outbound, "orders", "/")
            .await
            .ok()
            .filter(|r| r.header("x-backend") == Some("orders-canary"))
    })
    .await
    .unwrap();
    assert_eq!(
        reply.header("x-seen-client-id"),
        Some("spiffe://cluster.local/ns/default/sa/web"),
        "the canary's proxy verified web's certificate"
    );
    let metrics = c.web.admin_get("/metrics").await.unwrap().text();
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("remora_requests_total{")
                // The cluster's identities of orders (a label per cluster).
                && l.contains("spiffe://cluster.local/ns/default/sa/orders-canary")),
        "{metrics}"
    );
    assert_eq!(intruder.app.requests(), 0, "the unselected pod got traffic");
    let warned = wait_for(WAIT, || async {
        c.cp.logs().lines().any(|l| {
            l.contains("not a mesh endpoint of its Service") && l.contains("default/intruder")
        })
    })
    .await;
    assert!(
        warned.is_ok(),
        "the skipped pod is named in a warning:\n{}",
        c.cp.logs()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_endpoint_turning_terminating_gets_no_new_requests() {
    let c = Cluster::start().await;
    let a = c.pod("orders-a", "orders", "orders", ip(2)).await;
    let b = c.pod("orders-b", "orders", "orders", ip(3)).await;
    c.slice(&[("orders-a", ip(2)), ("orders-b", ip(3))]);
    c.wait_orders_endpoints(&BTreeSet::from([
        endpoint(&a, "orders"),
        endpoint(&b, "orders"),
    ]))
    .await;
    c.reach_all(&["orders-a", "orders-b"]).await;

    // The kubelet marks orders-b terminating (it still serves what it has).
    let terminating = |serving| Conditions {
        ready: false,
        serving,
        terminating: true,
    };
    set_endpoint_conditions(&c.double, "default", "orders-x1", 1, terminating(true));
    c.wait_orders_endpoints(&BTreeSet::from([endpoint(&a, "orders")]))
        .await;
    wait_config(&c.web, WAIT, "orders-b withdrawn", |d| {
        endpoint_count(d, "orders") == 1
    })
    .await;

    let b_before = b.app.requests();
    let a_before = a.app.requests();
    for _ in 0..40 {
        let reply = http::get_with_host(c.web.outbound, "orders", "/")
            .await
            .unwrap();
        assert_eq!(reply.status, 200, "{}\n{}", reply.text(), c.web.logs());
        assert_eq!(reply.header("x-backend"), Some("orders-a"));
    }
    assert_eq!(
        b.app.requests(),
        b_before,
        "the terminating pod got new requests"
    );
    assert_eq!(a.app.requests(), a_before + 40);

    // orders-a goes too: with no ready endpoint left, the serving and
    // terminating ones answer (as kube-proxy does), so orders-b is back.
    set_endpoint_conditions(&c.double, "default", "orders-x1", 0, terminating(false));
    c.wait_orders_endpoints(&BTreeSet::from([endpoint(&b, "orders")]))
        .await;
    wait_for(WAIT, || async {
        http::get_with_host(c.web.outbound, "orders", "/")
            .await
            .is_ok_and(|r| r.header("x-backend") == Some("orders-b"))
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_service_that_lists_its_accounts_is_served_only_by_pods_running_as_one() {
    let c = Cluster::start().await;
    c.double.kubectl_ok(&[
        "annotate",
        "service",
        "orders",
        "-n",
        "default",
        "remora.io/service-accounts=orders",
    ]);
    let a = c.pod("orders-a", "orders", "orders", ip(2)).await;
    // Anyone who may create pods here can label one `app: orders`, and run
    // it under an account of their own.
    let intruder = c.pod("intruder", "intruder", "orders", ip(4)).await;
    c.slice(&[("orders-a", ip(2)), ("intruder", ip(4))]);

    c.wait_orders_endpoints(&BTreeSet::from([endpoint(&a, "orders")]))
        .await;
    c.reach_all(&["orders-a"]).await;
    for _ in 0..20 {
        let reply = http::get_with_host(c.web.outbound, "orders", "/")
            .await
            .unwrap();
        assert_eq!(reply.status, 200, "{}\n{}", reply.text(), c.web.logs());
        assert_eq!(reply.header("x-backend"), Some("orders-a"));
    }
    assert_eq!(intruder.app.requests(), 0, "the intruder got traffic");
    let warned = wait_for(WAIT, || async {
        c.cp.logs().lines().any(|l| {
            l.contains("not a mesh endpoint of its Service")
                && l.contains("default/intruder")
                && l.contains("default/orders")
                && l.contains("service account intruder")
        })
    })
    .await;
    assert!(
        warned.is_ok(),
        "the refusal names the pod, its account and the Service:\n{}",
        c.cp.logs()
    );
}

/// A control plane restarted in a cluster lists pods, Services and slices
/// before it knows any endpoint; a proxy reconnecting before that keeps the
/// endpoints it has (however short the reconnect grace: here none) rather
/// than be sent an empty set. Many pods make the lists take a while.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_control_plane_keeps_the_callers_endpoints_until_it_has_listed_the_cluster() {
    let double = KubeDouble::start_with(&["--preload-services", "100", "--preload-pods", "5000"]);
    let grace = ["--reconnect-grace", "0"];
    let mut c = Cluster::start_on(double, &grace).await;
    let a = c.pod("orders-a", "orders", "orders", ip(2)).await;
    c.slice(&[("orders-a", ip(2))]);
    c.wait_orders_endpoints(&BTreeSet::from([endpoint(&a, "orders")]))
        .await;
    wait_config(&c.web, WAIT, "orders' endpoint", |d| {
        endpoint_count(d, "orders") == 1
    })
    .await;

    let load = Load::start(LoadSpec::rate(c.web.outbound, "orders", 50.0).connections(2));
    let (xds_port, api_port) = (c.cp.xds_addr.port(), c.cp.api_addr.port());
    c.cp.kill();
    wait_config(&c.web, WAIT, "web's stream ended", |d| {
        d["xds"]["connected"] == false
    })
    .await;
    c.cp = ControlPlane::start_kubernetes_on(
        c.root.path().join("config"),
        c.double.kubeconfig(),
        xds_port,
        api_port,
        &grace,
    )
    .await
    .unwrap();
    wait_config(&c.web, WAIT, "web reconnected", |d| {
        d["xds"]["connected"] == true
    })
    .await;
    // The new control plane has listed the cluster and fed its endpoints.
    c.wait_orders_endpoints(&BTreeSet::from([endpoint(&a, "orders")]))
        .await;
    wait_config(&c.web, WAIT, "orders' endpoint after the restart", |d| {
        endpoint_count(d, "orders") == 1
    })
    .await;
    let report = load.stop().await;
    assert_no_errors(&report);
}
