//! Kubernetes mode end to end, as pods in a cluster meet it: `remora install`
//! applied, the control plane reading the cluster and serving the admission
//! webhook, a namespace opted in, and pods written by a user (no sidecar)
//! created with the real kubectl against the API server double. The double
//! calls the webhook, which injects the proxy; each proxy is then started
//! from what was stored (its container's environment with the downward API
//! resolved from the pod, its args, the projected token's audience), gets a
//! certificate through TokenReview, and the pods call each other over mTLS.
//! The route's status, `remora check --kubernetes` and `remora stat` agree;
//! a pod being deleted gets no new requests.
//!
//! Nothing the real path produces is made by hand; the test only stands in
//! for what a cluster's other parts do (the kubelet's pod status and token,
//! the EndpointSlice controller's slices) and moves the proxies' listeners
//! to loopback ports.

mod support;

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use remora_tests::app::TestApp;
use remora_tests::harness::{
    bin_path, http, wait_for, wait_for_some, ControlPlane, Process, START_TIMEOUT,
};
use remora_tests::kube::KubeDouble;
use serde::Deserialize;
use serde_json::Value;
use support::kube::{
    assert_control_plane_requests_allowed, endpoint_slice, install, ip, namespace, pod_running,
    set, set_endpoint_conditions, wait_ca_bundles, wait_route_condition, Conditions,
};

const WAIT: Duration = Duration::from_secs(20);
const NS: &str = "shop";
/// The EndpointSlice of orders, as the EndpointSlice controller names one.
const ORDERS_SLICE: &str = "orders-7xk2p";

/// orders' account, the Services and the route, as a user applies them.
const SHOP: &str = "\
apiVersion: v1
kind: ServiceAccount
metadata: {name: orders, namespace: shop}
---
apiVersion: v1
kind: Service
metadata: {name: web, namespace: shop}
spec:
  selector: {app: web}
  ports: [{name: http, port: 80, targetPort: 8080, appProtocol: http}]
---
apiVersion: v1
kind: Service
metadata: {name: orders, namespace: shop}
spec:
  selector: {app: orders}
  ports: [{name: http, port: 80, targetPort: 8080, appProtocol: http}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: orders, namespace: shop}
spec:
  parentRefs: [{group: \"\", kind: Service, name: orders, port: 80}]
  rules:
  - backendRefs: [{name: orders, port: 80}]
";

/// A pod as a user writes it: no sidecar, no annotation.
fn user_pod(name: &str, app: &str, service_account: Option<&str>) -> String {
    let account = service_account
        .map(|sa| format!("  serviceAccountName: {sa}\n"))
        .unwrap_or_default();
    format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\n  namespace: {NS}\n  \
         labels: {{app: {app}}}\nspec:\n{account}  containers:\n  - name: {app}\n    \
         image: example/{app}:1\n    ports: [{{containerPort: 8080}}]\n"
    )
}

#[derive(Deserialize)]
struct Addresses {
    inbound: SocketAddr,
    outbound: SocketAddr,
    admin: SocketAddr,
}

/// One pod: its app and the proxy run as its injected container would run.
struct Pod {
    name: String,
    ip: IpAddr,
    service_account: String,
    app: TestApp,
    inbound: SocketAddr,
    outbound: SocketAddr,
    admin: SocketAddr,
    process: Process,
}

/// The stored pod's `remora-proxy` container (a native sidecar is an init
/// container).
fn proxy_container(pod: &Value) -> &Value {
    ["initContainers", "containers"]
        .iter()
        .flat_map(|list| pod["spec"][list].as_array().into_iter().flatten())
        .find(|c| c["name"] == "remora-proxy")
        .unwrap_or_else(|| panic!("no remora-proxy container in the stored pod: {pod:#}"))
}

/// A `fieldRef` as the kubelet resolves it (`status.podIP` -> the pod's IP).
fn field(pod: &Value, path: &str) -> String {
    let value = path.split('.').fold(pod, |v, key| &v[key]);
    value
        .as_str()
        .unwrap_or_else(|| panic!("fieldRef {path} is {value} in {pod:#}"))
        .to_owned()
}

/// The container's environment: literal values, and the downward API's
/// fields read from `pod`.
fn environment(pod: &Value, container: &Value) -> Vec<(String, String)> {
    container["env"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|e| {
            let name = e["name"].as_str().unwrap_or_default().to_owned();
            let value = match (&e["value"], &e["valueFrom"]["fieldRef"]["fieldPath"]) {
                (Value::String(v), _) => v.clone(),
                (_, Value::String(path)) => field(pod, path),
                _ => panic!("env {name}: neither a value nor a fieldRef: {e}"),
            };
            (name, value)
        })
        .collect()
}

fn get(env: &[(String, String)], name: &str) -> Option<String> {
    env.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone())
}

/// The projected service-account token the container mounts: (the file the
/// kubelet writes in the container, its audience).
fn projected_token(pod: &Value, container: &Value) -> (String, String) {
    let volumes = pod["spec"]["volumes"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    container["volumeMounts"]
        .as_array()
        .into_iter()
        .flatten()
        .find_map(|mount| {
            let volume = volumes.iter().find(|v| v["name"] == mount["name"])?;
            let source = volume["projected"]["sources"]
                .as_array()?
                .iter()
                .find_map(|s| s.get("serviceAccountToken"))?;
            Some((
                format!(
                    "{}/{}",
                    mount["mountPath"].as_str()?,
                    source["path"].as_str()?
                ),
                source["audience"].as_str()?.to_owned(),
            ))
        })
        .unwrap_or_else(|| panic!("no projected service-account token mounted: {pod:#}"))
}

/// A token the double's TokenReview knows, different for every run.
fn random_token(name: &str) -> String {
    use std::hash::{BuildHasher, Hasher};
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write(name.as_bytes());
    // Shaped as a JWT (three base64url parts), as the control plane checks
    // before it asks for a review.
    format!(
        "eyJhbGciOiJSUzI1NiJ9.{}{:016x}.c2ln",
        name.replace('.', "-"),
        hasher.finish()
    )
}

impl Pod {
    /// Plays the kubelet for pod `name`, stored (and injected) already: its
    /// IP in the status, its projected token registered with the double, its
    /// proxy container run with the stored environment and args.
    async fn start(
        double: &KubeDouble,
        cp: &ControlPlane,
        root: &Path,
        name: &str,
        ip: IpAddr,
    ) -> Pod {
        pod_running(double, NS, name, ip);
        let text = double.kubectl_ok(&["get", "pod", name, "-n", NS, "-o", "json"]);
        let pod: Value = serde_json::from_str(&text).unwrap();
        let container = proxy_container(&pod);
        let mut env = environment(&pod, container);

        // Where the proxy reads its token is where the kubelet projects it,
        // for the audience the control plane's TokenReview asks for.
        let (token_path, audience) = projected_token(&pod, container);
        assert_eq!(audience, "remora", "{pod:#}");
        let read_from = get(&env, "REMORA_TOKEN_FILE")
            .unwrap_or_else(|| "/var/run/secrets/remora/token".to_owned());
        assert_eq!(read_from, token_path, "the proxy reads its token elsewhere");
        let service_account = field(&pod, "spec.serviceAccountName");
        let token = random_token(name);
        double.add_token(&token, NS, &service_account, &[audience.as_str()]);
        let token_dir = root.join(name);
        std::fs::create_dir_all(&token_dir).unwrap();
        let token_file = token_dir.join("token");
        std::fs::write(&token_file, &token).unwrap();

        // The proxy trusts the mesh's CA from its first request.
        let bundle = cp.api_get("/api/v1/trust-bundle").await.unwrap().text();
        assert_eq!(
            get(&env, "REMORA_TRUST_BUNDLE").as_deref(),
            Some(bundle.as_str()),
            "the injected trust bundle is not the mesh's"
        );

        // Only what a test must change: the control plane's address (in a
        // cluster, its Service's name), listeners on the pod's IP with ports
        // the system picks, the token's file, the app (which a pod serves on
        // its containerPort 8080, the Services' targetPort, and the test on a
        // port the system picks).
        let app = TestApp::http(name);
        let any = SocketAddr::new(ip, 0).to_string();
        set(&mut env, "REMORA_CONTROL_PLANE", &cp.xds_addr.to_string());
        set(&mut env, "REMORA_INBOUND", &any);
        set(&mut env, "REMORA_OUTBOUND", &any);
        set(&mut env, "REMORA_ADMIN", &any);
        set(
            &mut env,
            "REMORA_TOKEN_FILE",
            &token_file.display().to_string(),
        );
        set(&mut env, "REMORA_APP", &app.addr.to_string());
        set(&mut env, "REMORA_APP_PORTS", &format!("8080={}", app.addr));

        let dir = tempfile::Builder::new()
            .prefix(&format!("remora-pod-{name}-"))
            .tempdir()
            .unwrap();
        let addresses_file = dir.path().join("addresses.json");
        let args: Vec<&str> = container["args"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect();
        let mut command = Command::new(bin_path("remora-proxy").unwrap());
        // A container's environment is its spec's, nothing of the test's.
        command
            .env_clear()
            .envs(env.iter().map(|(k, v)| (k, v)))
            .env(
                "RUST_LOG",
                std::env::var("RUST_LOG").unwrap_or_else(|_| "info".to_owned()),
            )
            .args(&args)
            .arg("--addresses-file")
            .arg(&addresses_file);
        let mut process = Process::spawn(&format!("remora-proxy {name}"), command, dir).unwrap();
        let bound: Addresses = process
            .wait_addresses(&addresses_file, START_TIMEOUT)
            .await
            .unwrap();
        Pod {
            name: name.to_owned(),
            ip,
            service_account,
            app,
            inbound: bound.inbound,
            outbound: bound.outbound,
            admin: bound.admin,
            process,
        }
    }

    fn identity(&self) -> String {
        format!("spiffe://cluster.local/ns/{NS}/sa/{}", self.service_account)
    }

    async fn config_dump(&self) -> Value {
        match http::get(self.admin, "/config_dump").await {
            Ok(reply) => reply.json().unwrap_or_default(),
            Err(_) => Value::Null,
        }
    }

    /// Waits until its config dump satisfies `check`.
    async fn wait_config(&self, what: &str, check: impl Fn(&Value) -> bool) {
        let ok = wait_for(WAIT, || async { check(&self.config_dump().await) }).await;
        assert!(
            ok.is_ok(),
            "{} never got {what}: {:#}\n{}",
            self.name,
            self.config_dump().await,
            self.process.logs()
        );
    }

    /// What kubectl annotate writes: the port its inbound listener bound.
    fn annotate_inbound_port(&self, double: &KubeDouble) {
        // In a cluster every proxy's inbound listener is 0.0.0.0:7002 in its
        // own network namespace, the port the control plane assumes without
        // the annotation. Here the pods share the host's loopback, so each
        // proxy bound a port of its own, which the annotation says.
        let port = format!("remora.io/inbound-port={}", self.inbound.port());
        double.kubectl_ok(&["annotate", "pod", &self.name, "-n", NS, &port]);
    }
}

/// orders' endpoints as the control plane lists them: node ids.
async fn orders_endpoints(cp: &ControlPlane) -> Vec<String> {
    let view = cp
        .api_get("/api/v1/endpoints")
        .await
        .unwrap()
        .json()
        .unwrap();
    view["endpoints"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|e| e["service"] == "orders" && e["namespace"] == NS)
        .filter_map(|e| e["node_id"].as_str().map(str::to_owned))
        .collect()
}

async fn wait_orders_endpoints(cp: &ControlPlane, expected: &[&str]) {
    let mut expected: Vec<String> = expected.iter().map(|p| format!("pod/{NS}/{p}")).collect();
    expected.sort();
    let found = wait_for(WAIT, || async {
        let mut now = orders_endpoints(cp).await;
        now.sort();
        now == expected
    })
    .await;
    assert!(
        found.is_ok(),
        "orders' endpoints never became {expected:?}: {:?}",
        orders_endpoints(cp).await
    );
}

/// How many endpoints `dump` holds for orders' clusters.
fn orders_endpoint_count(dump: &Value) -> usize {
    support::endpoint_count(dump, "orders")
}

fn remora(args: &[&str]) -> std::process::Output {
    Command::new(bin_path("remora").unwrap())
        .args(args)
        .env_remove("REMORA_API_TOKEN_FILE")
        .env_remove("REMORA_API_ADDR")
        .output()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pods_written_by_a_user_are_injected_and_call_each_other_over_mtls() {
    // The cluster, the control plane in it, and Remora installed.
    let double = KubeDouble::start();
    namespace(&double, NS, true);
    double.kubectl_stdin(&["apply", "-f", "-"], SHOP);
    let root = tempfile::tempdir().unwrap();
    let cp = ControlPlane::start_kubernetes_secure(
        root.path().join("config"),
        double.kubeconfig(),
        &[
            "--webhook-addr",
            "127.0.0.1:0",
            "--webhook-server-name",
            "127.0.0.1",
        ],
    )
    .await
    .unwrap();
    let webhook = cp.webhook_addr.expect("the webhook's address is written");
    install(&double, webhook);
    wait_ca_bundles(&double, WAIT).await;

    // The user's pods; the API server has them injected on the way in.
    for (name, app, account) in [
        ("orders-1", "orders", Some("orders")),
        ("web-1", "web", None),
        ("orders-2", "orders", Some("orders")),
    ] {
        double.kubectl_stdin(&["apply", "-f", "-"], &user_pod(name, app, account));
    }
    let pod = double.kubectl_ok(&["get", "pod", "orders-1", "-n", NS, "-o", "json"]);
    let pod: Value = serde_json::from_str(&pod).unwrap();
    // The control plane the proxies are told to dial is the Service
    // `remora install` made, on a port it has.
    // (A literal value: the pod has no IP yet to resolve the rest with.)
    let dial = proxy_container(&pod)["env"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|e| e["name"] == "REMORA_CONTROL_PLANE")
        .and_then(|e| e["value"].as_str())
        .unwrap_or_else(|| panic!("no REMORA_CONTROL_PLANE value: {pod:#}"))
        .to_owned();
    let (host, port) = dial.rsplit_once(':').unwrap();
    let (service, rest) = host.split_once('.').unwrap();
    let service_ns = rest.trim_end_matches(".svc");
    let installed = double.kubectl_ok(&["get", "service", service, "-n", service_ns, "-o", "json"]);
    let installed: Value = serde_json::from_str(&installed).unwrap();
    assert!(
        installed["spec"]["ports"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|p| p["port"].as_u64().map(|p| p.to_string()).as_deref() == Some(port)),
        "REMORA_CONTROL_PLANE={dial}, but the installed Service is {installed:#}"
    );

    let orders1 = Pod::start(&double, &cp, root.path(), "orders-1", ip(2)).await;
    let web = Pod::start(&double, &cp, root.path(), "web-1", ip(3)).await;
    let orders2 = Pod::start(&double, &cp, root.path(), "orders-2", ip(4)).await;
    assert_eq!(
        web.service_account, "default",
        "what the API server defaults"
    );

    // Each proxy holds a certificate for its pod's service account, and the
    // control plane sees it connected over mTLS with that identity.
    for pod in [&orders1, &web, &orders2] {
        let identity = pod.identity();
        pod.wait_config(&format!("a certificate for {identity}"), |d| {
            d["certificate"]["identity"] == identity.as_str()
        })
        .await;
    }
    let proxies = wait_for_some(WAIT, || async {
        let list = cp.proxies().await.ok()?;
        let all = [&orders1, &web, &orders2].iter().all(|pod| {
            list.as_array().into_iter().flatten().any(|p| {
                p["node_id"] == format!("{}.{NS}", pod.name).as_str()
                    && p["identity"] == pod.identity().as_str()
                    && p["transport"] == "mtls"
            })
        });
        all.then_some(list)
    })
    .await;
    let proxies = match proxies {
        Ok(list) => list,
        Err(e) => panic!("{e}: {:#}", cp.proxies().await.unwrap_or_default()),
    };
    for proxy in proxies.as_array().into_iter().flatten() {
        assert_eq!(proxy["warnings"], serde_json::json!([]), "{proxy:#}");
    }

    // What the cluster says about orders' pods.
    orders1.annotate_inbound_port(&double);
    orders2.annotate_inbound_port(&double);
    double.kubectl_stdin(
        &["apply", "-f", "-"],
        &endpoint_slice(
            NS,
            ORDERS_SLICE,
            "orders",
            8080,
            &[("orders-1", orders1.ip), ("orders-2", orders2.ip)],
        ),
    );
    wait_orders_endpoints(&cp, &["orders-1", "orders-2"]).await;
    web.wait_config("orders' two endpoints", |d| orders_endpoint_count(d) == 2)
        .await;

    // web calls orders by its name in the namespace; both pods answer, each
    // seeing web's identity (their proxies verified its certificate).
    let answered = std::sync::Mutex::new(BTreeMap::new());
    let reached = wait_for(WAIT, || async {
        let reply = http::get_with_host(web.outbound, "orders.shop", "/")
            .await
            .unwrap();
        assert_eq!(
            reply.status,
            200,
            "{}\n{}",
            reply.text(),
            web.process.logs()
        );
        let backend = reply.header("x-backend").unwrap_or_default().to_owned();
        let seen = reply
            .header("x-seen-client-id")
            .unwrap_or_default()
            .to_owned();
        let mut answered = answered.lock().unwrap();
        answered.insert(backend, seen);
        answered.len() == 2
    })
    .await;
    let answered = answered.into_inner().unwrap();
    assert!(reached.is_ok(), "only {answered:?} answered");
    for backend in ["orders-1", "orders-2"] {
        assert_eq!(
            answered.get(backend).map(String::as_str),
            Some(web.identity().as_str()),
            "{answered:?}"
        );
    }

    // The route is accepted, by Remora.
    let accepted = wait_route_condition(&double, NS, "orders", "Accepted", "True", WAIT).await;
    assert_eq!(accepted["reason"], "Accepted", "{accepted}");

    // `remora check --kubernetes` names no pod without a proxy (the
    // installation's own items fail here: no control plane pod runs).
    let kubeconfig = double.kubeconfig().to_str().unwrap().to_owned();
    let check = remora(&["check", "--kubernetes", "--kubeconfig", &kubeconfig]);
    let report = String::from_utf8_lossy(&check.stdout).into_owned();
    assert!(
        matches!(check.status.code(), Some(0 | 1)),
        "{report}\n{}",
        String::from_utf8_lossy(&check.stderr)
    );
    assert!(
        !report
            .lines()
            .any(|l| l.starts_with("FAIL") && l.contains(&format!("pod {NS}/"))),
        "{report}"
    );
    assert!(
        report
            .lines()
            .any(|l| l.starts_with("OK    pods: all 3 pod(s)")),
        "{report}"
    );

    // `remora stat` shows the hop once the proxies have reported (every 2 s
    // by default; no variable sets the interval in a pod).
    let api = cp.api_addr.to_string();
    let edge = wait_for_some(WAIT, || async {
        let out = remora(&["stat", "--api", &api, "-n", NS, "-o", "json"]);
        let view: Value = serde_json::from_slice(&out.stdout).ok()?;
        view["edges"]
            .as_array()?
            .iter()
            .find(|e| {
                e["source"]["service"] == "web"
                    && e["destination"]["service"] == "orders"
                    && e["destination"]["namespace"] == NS
            })
            .cloned()
    })
    .await
    .unwrap_or_else(|e| panic!("no web -> orders edge: {e}"));
    assert!(edge["requests"].as_u64() >= Some(2), "{edge:#}");

    // orders-1 is deleted: the API server marks it terminating, the
    // EndpointSlice controller says so. It gets no new request.
    double.kubectl_ok(&[
        "delete",
        "pod",
        "orders-1",
        "-n",
        NS,
        "--grace-period=30",
        "--wait=false",
    ]);
    set_endpoint_conditions(
        &double,
        NS,
        ORDERS_SLICE,
        0,
        Conditions {
            ready: false,
            serving: true,
            terminating: true,
        },
    );
    wait_orders_endpoints(&cp, &["orders-2"]).await;
    web.wait_config("orders-1 withdrawn", |d| orders_endpoint_count(d) == 1)
        .await;
    let before = (orders1.app.requests(), orders2.app.requests());
    for _ in 0..20 {
        let reply = http::get_with_host(web.outbound, "orders.shop", "/")
            .await
            .unwrap();
        assert_eq!(reply.status, 200, "{}", reply.text());
        assert_eq!(reply.header("x-backend"), Some("orders-2"));
    }
    assert_eq!(
        orders1.app.requests(),
        before.0,
        "the terminating pod got new requests"
    );
    assert_eq!(orders2.app.requests(), before.1 + 20);

    // Everything the control plane asked the API server for along the way
    // (watches, status, TokenReviews, its CA Secret, the webhook's caBundle)
    // is allowed by the RBAC `remora install` grants it.
    assert_control_plane_requests_allowed(&double);
}
