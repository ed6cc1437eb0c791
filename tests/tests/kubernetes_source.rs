//! `remora control --kubernetes` against the API server double, driven by the
//! real kubectl: Services and HTTPRoutes applied with kubectl reach a proxy;
//! problems come back as status (`ResolvedRefs`, `Accepted`) with the text
//! `remora check` prints; a Gateway's routes are left to their controller, and
//! other controllers' entries in a mesh route's status survive Remora's
//! writes; watches resume, relist after 410 Gone and use bookmarks; an API
//! server outage keeps the config served; writes through `remora apply` are
//! refused with a pointer to kubectl.

mod support;

use std::path::Path;
use std::process::Output;
use std::time::Duration;

use remora_tests::app::TestApp;
use remora_tests::harness::{bin_path, wait_for, wait_for_some, ControlPlane, Proxy, ProxySpec};
use remora_tests::kube::KubeDouble;
use support::kube::{wait_route_condition, CONTROLLER_NAME};
use support::{routed_weight, split_route, wait_config};

const WAIT: Duration = Duration::from_secs(30);

fn services(names: &[&str]) -> String {
    names
        .iter()
        .map(|n| {
            format!(
                "apiVersion: v1\nkind: Service\nmetadata:\n  name: {n}\n  namespace: default\n  \
                 annotations: {{remora.io/allow-unauthenticated-endpoints: \"true\"}}\n\
                 spec:\n  selector: {{app: {n}}}\n  ports: [{{name: http, port: 80, targetPort: 8080}}]\n"
            )
        })
        .collect::<Vec<_>>()
        .join("---\n")
}

/// Waits until HTTPRoute `route` (namespace default) has condition `kind`
/// with `status`.
async fn wait_condition(
    double: &KubeDouble,
    route: &str,
    kind: &str,
    status: &str,
) -> serde_json::Value {
    wait_route_condition(double, "default", route, kind, status, WAIT).await
}

/// A control plane on the double, and web's plaintext proxy holding the
/// orders route.
async fn mesh(double: &KubeDouble, root: &Path) -> (ControlPlane, TestApp, Proxy) {
    double.kubectl_stdin(
        &["apply", "-f", "-"],
        &services(&["web", "orders", "orders-v2"]),
    );
    double.kubectl_stdin(
        &["apply", "-f", "-"],
        &split_route("orders", "orders", &[("orders", 90), ("orders-v2", 10)]),
    );
    let cp = ControlPlane::start_kubernetes(root.join("config"), double.kubeconfig(), &[])
        .await
        .unwrap();
    let app = TestApp::http("web");
    let web = Proxy::start(ProxySpec::new("web", cp.xds_addr, app.addr))
        .await
        .unwrap();
    wait_config(&web, WAIT, "the orders route from the cluster", |d| {
        routed_weight(d, "orders", "orders") == 90
    })
    .await;
    (cp, app, web)
}

fn remora(args: &[&str]) -> Output {
    std::process::Command::new(bin_path("remora").unwrap())
        .args(args)
        .env_remove("REMORA_API_TOKEN_FILE")
        .env_remove("REMORA_API_ADDR")
        .output()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_changes_reach_the_proxy_and_problems_come_back_as_status() {
    let double = KubeDouble::start();
    let root = tempfile::tempdir().unwrap();
    let (cp, _app, web) = mesh(&double, root.path()).await;

    // A change with kubectl reaches the proxy.
    double.kubectl_stdin(
        &["apply", "-f", "-"],
        &split_route("orders", "orders", &[("orders", 50), ("orders-v2", 50)]),
    );
    wait_config(&web, WAIT, "the split applied with kubectl", |d| {
        routed_weight(d, "orders", "orders-v2") == 50
    })
    .await;
    let ok = wait_condition(&double, "orders", "ResolvedRefs", "True").await;
    assert_eq!(ok["reason"], "ResolvedRefs");

    // A bad backend: ResolvedRefs=False, with what `remora check` prints.
    let broken = split_route("broken", "web", &[("nowhere", 100)]);
    double.kubectl_stdin(&["apply", "-f", "-"], &broken);
    let condition = wait_condition(&double, "broken", "ResolvedRefs", "False").await;
    assert_eq!(condition["reason"], "BackendNotFound");
    let message = condition["message"].as_str().unwrap_or_default().to_owned();
    let file = root.path().join("check.yaml");
    std::fs::write(&file, format!("{}---\n{broken}", services(&["web"]))).unwrap();
    let check = remora(&["check", "-f", file.to_str().unwrap()]);
    let printed = format!(
        "{}{}",
        String::from_utf8_lossy(&check.stdout),
        String::from_utf8_lossy(&check.stderr)
    );
    assert!(
        message.contains("nowhere") && printed.contains(&message),
        "status message {message:?} is not what remora check prints:\n{printed}"
    );
    let generation = double
        .get_json("/apis/gateway.networking.k8s.io/v1/namespaces/default/httproutes/broken")
        ["metadata"]["generation"]
        .clone();
    assert_eq!(condition["observedGeneration"], generation);

    // Fixed: the backend appears, the condition turns True.
    double.kubectl_stdin(&["apply", "-f", "-"], &services(&["nowhere"]));
    let fixed = wait_condition(&double, "broken", "ResolvedRefs", "True").await;
    assert_eq!(fixed["reason"], "ResolvedRefs");

    // A TrafficPolicy with a bad field is not accepted.
    let policy = "apiVersion: policy.remora.dev/v1alpha1\nkind: TrafficPolicy\n\
                  metadata: {name: orders, namespace: default}\n\
                  spec:\n  targetRef: {kind: Service, name: orders}\n  bogus: 1\n";
    double.kubectl_stdin(&["apply", "-f", "-"], policy);
    let accepted = wait_for_some(WAIT, || async {
        let text = double.kubectl_ok(&[
            "get",
            "trafficpolicies.policy.remora.dev",
            "orders",
            "-n",
            "default",
            "-o",
            "json",
        ]);
        let object: serde_json::Value = serde_json::from_str(&text).ok()?;
        object["status"]["conditions"]
            .as_array()?
            .iter()
            .find(|c| c["type"] == "Accepted" && c["status"] == "False")
            .cloned()
    })
    .await
    .expect("the TrafficPolicy never got Accepted=False");
    assert_eq!(accepted["reason"], "Invalid");
    assert!(
        accepted["message"]
            .as_str()
            .is_some_and(|m| m.contains("bogus")),
        "{accepted}"
    );

    // Writes through remora are refused: the cluster is changed with kubectl.
    let token = remora(&[
        "token",
        "create",
        "--admin",
        "--ttl",
        "1h",
        "--data-dir",
        cp.data_dir().to_str().unwrap(),
    ]);
    assert!(
        token.status.success(),
        "{}",
        String::from_utf8_lossy(&token.stderr)
    );
    let token_file = root.path().join("admin.token");
    std::fs::write(&token_file, &token.stdout).unwrap();
    let manifest = root.path().join("more.yaml");
    std::fs::write(&manifest, services(&["extra"])).unwrap();
    let api = format!("http://{}", cp.api_addr);
    let out = remora(&[
        "apply",
        "-f",
        manifest.to_str().unwrap(),
        "--api",
        &api,
        "--token-file",
        token_file.to_str().unwrap(),
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "remora apply was accepted");
    assert!(
        stderr.contains("kubectl") && stderr.contains("409"),
        "{stderr}"
    );
}

/// A route of a Gateway (north-south): `kind` omitted in its parentRef is
/// the Gateway API's default, `Gateway`.
const GATEWAY_ROUTE: &str = "apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\n\
    metadata: {name: north-south, namespace: default}\n\
    spec:\n  parentRefs: [{name: public-gateway}]\n  \
    rules:\n  - backendRefs: [{name: web, port: 80}]\n";

/// HTTPRoute `name`'s `status.parents`.
fn route_parents(double: &KubeDouble, name: &str) -> Vec<serde_json::Value> {
    let path = format!("/apis/gateway.networking.k8s.io/v1/namespaces/default/httproutes/{name}");
    double.get_json(&path)["status"]["parents"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gateways_route_is_left_alone_and_other_controllers_entries_survive_our_writes() {
    let double = KubeDouble::start();
    let root = tempfile::tempdir().unwrap();
    double.kubectl_stdin(
        &["apply", "-f", "-"],
        &services(&["web", "orders", "orders-v2"]),
    );
    double.kubectl_stdin(&["apply", "-f", "-"], GATEWAY_ROUTE);
    double.kubectl_stdin(
        &["apply", "-f", "-"],
        &split_route("orders", "orders", &[("orders", 90), ("orders-v2", 10)]),
    );
    let cp = ControlPlane::start_kubernetes(root.path().join("config"), double.kubeconfig(), &[])
        .await
        .unwrap();

    // The first status round covers both routes (north-south first, in name
    // order): once orders has its status, north-south was seen.
    wait_condition(&double, "orders", "Accepted", "True").await;
    let theirs = route_parents(&double, "north-south");
    assert!(
        theirs
            .iter()
            .all(|p| p["controllerName"] != CONTROLLER_NAME),
        "a Gateway's route got Remora's status: {theirs:#?}"
    );
    assert!(
        !cp.logs().contains("HTTPRoute default/north-south"),
        "a Gateway's route was reported as a problem:\n{}",
        cp.logs()
    );

    // A Gateway controller adds its entry to the mesh route (an atomic
    // append) just as a change makes Remora write its own: whichever lands
    // first, Remora's write does not drop it (a write planned before it is
    // refused as stale and planned again).
    double.kubectl_stdin(
        &["apply", "-f", "-"],
        &split_route("orders", "orders", &[("orders", 50), ("nowhere", 50)]),
    );
    let entry = serde_json::json!({
        "parentRef": {"name": "public-gateway"},
        "controllerName": "example.com/gateway",
        "conditions": [{"type": "Accepted", "status": "True", "reason": "Accepted",
                        "message": "", "lastTransitionTime": "2025-01-01T00:00:00Z"}],
    });
    let append = serde_json::json!([{"op": "add", "path": "/status/parents/-", "value": entry}]);
    double.kubectl_ok(&[
        "patch",
        "httproute",
        "orders",
        "-n",
        "default",
        "--subresource=status",
        "--type=json",
        "-p",
        &append.to_string(),
    ]);
    let resolved = wait_condition(&double, "orders", "ResolvedRefs", "False").await;
    assert_eq!(resolved["reason"], "BackendNotFound");
    let parents = route_parents(&double, "orders");
    assert!(
        parents.contains(&entry),
        "the Gateway controller's entry was dropped: {parents:#?}"
    );
    assert_eq!(
        parents
            .iter()
            .filter(|p| p["controllerName"] == CONTROLLER_NAME)
            .count(),
        1,
        "{parents:#?}"
    );
}

/// The double's requests for `resource` (`httproutes`).
fn requests(double: &KubeDouble, resource: &str) -> Vec<serde_json::Value> {
    let all = double.get_json("/_double/requests");
    all.as_array()
        .into_iter()
        .flatten()
        .filter(|r| {
            r["method"] == "GET"
                && r["path"]
                    .as_str()
                    .is_some_and(|p| p.ends_with(&format!("/{resource}")))
        })
        .cloned()
        .collect()
}

/// What the control plane logs when a watch loses the API server.
const LOST: &str = "lost the API server; serving the last config";

/// The resources the control plane watches: the source's kinds and the
/// endpoints' (Services by both).
const WATCHED: [&str; 8] = [
    "namespaces",
    "services",
    "httproutes",
    "meshtlses",
    "authorizationpolicies",
    "trafficpolicies",
    "endpointslices",
    "pods",
];

fn is_watch(request: &serde_json::Value) -> bool {
    matches!(request["params"]["watch"].as_str(), Some("true" | "1"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watches_relist_after_410_and_the_config_outlives_an_api_server_outage() {
    let double = KubeDouble::start();
    let root = tempfile::tempdir().unwrap();
    let (cp, _app, web) = mesh(&double, root.path()).await;

    // Every resourceVersion becomes too old: the watches relist, and a change
    // made afterwards still arrives.
    double.compact();
    double.kubectl_stdin(
        &["apply", "-f", "-"],
        &split_route("orders", "orders", &[("orders", 70), ("orders-v2", 30)]),
    );
    wait_config(&web, WAIT, "the change after a compaction", |d| {
        routed_weight(d, "orders", "orders-v2") == 30
    })
    .await;
    // Every watched kind was watched, with bookmarks, from a resourceVersion.
    for resource in WATCHED {
        let watches: Vec<_> = requests(&double, resource)
            .into_iter()
            .filter(is_watch)
            .collect();
        assert!(!watches.is_empty(), "{resource} was never watched");
        assert!(
            watches
                .iter()
                .all(|w| w["params"]["allowWatchBookmarks"] == "true"),
            "{resource}: {watches:#?}"
        );
        assert!(
            watches.iter().all(|w| w["params"]["resourceVersion"]
                .as_str()
                .is_some_and(|v| !v.is_empty())),
            "every watch of {resource} resumes from a resourceVersion: {watches:#?}"
        );
    }
    let routes = requests(&double, "httproutes");
    let lists = routes.iter().filter(|r| !is_watch(r)).count();
    assert!(lists >= 2, "no relist after 410 Gone: {routes:#?}");

    // The API server goes away: once the control plane knows, the proxy
    // still has its config and the control plane keeps serving.
    let lost = |cp: &ControlPlane| cp.logs().matches(LOST).count();
    let before = lost(&cp);
    double.stop();
    wait_for(WAIT, || {
        let now = lost(&cp);
        async move { now > before }
    })
    .await
    .unwrap_or_else(|e| panic!("the outage was not noticed: {e}\n{}", cp.logs()));
    let dump = web.config_dump().await.unwrap();
    assert_eq!(routed_weight(&dump, "orders", "orders-v2"), 30, "{dump:#}");
    let config = cp.api_get("/api/v1/config").await.unwrap();
    assert_eq!(config.status, 200, "{}", config.text());
    assert!(cp.proxies().await.is_ok());

    // Back: changes flow again.
    double.restart();
    double.kubectl_stdin(
        &["apply", "-f", "-"],
        &split_route("orders", "orders", &[("orders", 10), ("orders-v2", 90)]),
    );
    wait_config(
        &web,
        Duration::from_secs(45),
        "the change after the outage",
        |d| routed_weight(d, "orders", "orders-v2") == 90,
    )
    .await;
}
