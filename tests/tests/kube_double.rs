//! The Kubernetes API server double speaks the real wire format: the real
//! `kubectl` creates, reads, patches and deletes through it, and raw list and watch
//! requests show resourceVersions, bookmarks and 410 Gone as a client sees them.
//! The other Kubernetes tests build on it, so it is checked on its own here.
//!
//! Needs python3, kubectl (Debian's kubernetes-client) and openssl (the webhook
//! unit tests); scripts/test installs them.

use remora_tests::kube::KubeDouble;
use serde_json::{json, Value};

const SHOP: &str = "apiVersion: v1
kind: Namespace
metadata:
  name: shop
  labels: {remora.io/inject: enabled}
---
apiVersion: v1
kind: Service
metadata: {name: web, namespace: shop}
spec:
  selector: {app: web}
  ports: [{name: http, port: 80, targetPort: 8080}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: web-abcde
  namespace: shop
  labels: {kubernetes.io/service-name: web}
addressType: IPv4
ports: [{name: http, port: 8080, protocol: TCP}]
endpoints:
- addresses: [10.1.0.7]
  conditions: {ready: true, serving: true, terminating: false}
  targetRef: {kind: Pod, namespace: shop, name: web-1}
---
apiVersion: v1
kind: Pod
metadata:
  name: web-1
  namespace: shop
  labels: {app: web}
spec:
  serviceAccountName: web
  containers: [{name: app, image: example.com/web:1}]
";

/// Through `kubectl create -f` (JSON on the wire): `kubectl create configmap` sends
/// protobuf, which the double does not decode.
fn create_configmap(kube: &KubeDouble, name: &str) {
    let manifest = format!("{{\"apiVersion\":\"v1\",\"kind\":\"ConfigMap\",\"metadata\":{{\"name\":\"{name}\"}},\"data\":{{\"a\":\"1\"}}}}");
    kube.kubectl_stdin(&["create", "-f", "-"], &manifest);
}

fn names(list: &Value) -> Vec<String> {
    list["items"]
        .as_array()
        .map(|items| {
            items
                .iter()
                .filter_map(|i| i["metadata"]["name"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

fn resource_version(value: &Value) -> String {
    value["metadata"]["resourceVersion"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

fn event_types(events: &[Value]) -> Vec<String> {
    events
        .iter()
        .filter_map(|e| e["type"].as_str().map(str::to_owned))
        .collect()
}

#[test]
fn kubectl_applies_reads_patches_status_and_deletes() {
    let kube = KubeDouble::start();
    let applied = kube.kubectl_stdin(&["apply", "-f", "-"], SHOP);
    assert!(applied.contains("pod/web-1 created"), "{applied}");
    assert!(
        applied.contains("endpointslice.discovery.k8s.io/web-abcde created"),
        "{applied}"
    );
    // Applying again changes nothing.
    let again = kube.kubectl_stdin(&["apply", "-f", "-"], SHOP);
    assert!(again.contains("pod/web-1 unchanged"), "{again}");

    let pods: Value =
        serde_json::from_str(&kube.kubectl_ok(&["get", "pods", "-n", "shop", "-o", "json"]))
            .unwrap();
    assert_eq!(names(&pods), ["web-1"]);
    assert_eq!(pods["items"][0]["kind"], "Pod");
    assert_eq!(pods["items"][0]["spec"]["serviceAccountName"], "web");
    assert_eq!(pods["items"][0]["status"]["phase"], "Pending");
    let table = kube.kubectl_ok(&["get", "pods", "-A"]);
    assert!(table.contains("shop") && table.contains("web-1"), "{table}");
    let yaml = kube.kubectl_ok(&[
        "get",
        "endpointslice",
        "web-abcde",
        "-n",
        "shop",
        "-o",
        "yaml",
    ]);
    assert!(yaml.contains("kubernetes.io/service-name: web"), "{yaml}");

    kube.kubectl_ok(&[
        "patch",
        "pod",
        "web-1",
        "-n",
        "shop",
        "--subresource=status",
        "--type=merge",
        "-p",
        r#"{"status":{"phase":"Running","podIP":"10.1.0.7"}}"#,
    ]);
    // A write to the main resource leaves the status alone.
    kube.kubectl_ok(&[
        "patch",
        "pod",
        "web-1",
        "-n",
        "shop",
        "--type=merge",
        "-p",
        r#"{"metadata":{"labels":{"version":"2"}},"status":{"phase":"Failed"}}"#,
    ]);
    let status = kube.kubectl_ok(&[
        "get",
        "pod",
        "web-1",
        "-n",
        "shop",
        "-o",
        "jsonpath={.status.phase} {.status.podIP} {.metadata.labels.version}",
    ]);
    assert_eq!(status, "Running 10.1.0.7 2");

    let deleted = kube.kubectl_ok(&["delete", "pod", "web-1", "-n", "shop"]);
    assert!(deleted.contains("deleted"), "{deleted}");
    let gone = kube.get_json("/api/v1/namespaces/shop/pods/web-1");
    assert_eq!(gone["kind"], "Status");
    assert_eq!(gone["code"], 404);
    assert_eq!(gone["reason"], "NotFound");
}

#[test]
fn status_subresource_and_generation_for_httproutes() {
    let kube = KubeDouble::start();
    kube.kubectl_stdin(
        &["apply", "-f", "-"],
        "apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: r, namespace: default}
spec:
  parentRefs: [{name: web, kind: Service, group: \"\"}]
  rules: [{backendRefs: [{name: web, port: 80}]}]
",
    );
    let created =
        kube.get_json("/apis/gateway.networking.k8s.io/v1/namespaces/default/httproutes/r");
    assert_eq!(created["metadata"]["generation"], 1);
    kube.kubectl_ok(&[
        "patch",
        "httproute",
        "r",
        "--subresource=status",
        "--type=merge",
        "-p",
        r#"{"status":{"parents":[{"parentRef":{"name":"web"},"controllerName":"remora.dev/control","conditions":[{"type":"ResolvedRefs","status":"False","reason":"BackendNotFound","message":"no"}]}]}}"#,
    ]);
    let after_status =
        kube.get_json("/apis/gateway.networking.k8s.io/v1/namespaces/default/httproutes/r");
    assert_eq!(
        after_status["metadata"]["generation"], 1,
        "status is not spec"
    );
    assert_eq!(
        after_status["status"]["parents"][0]["conditions"][0]["type"],
        "ResolvedRefs"
    );
    kube.kubectl_ok(&[
        "patch",
        "httproute",
        "r",
        "--type=json",
        "-p",
        r#"[{"op":"replace","path":"/spec/rules/0/backendRefs/0/port","value":81}]"#,
    ]);
    let after_spec =
        kube.get_json("/apis/gateway.networking.k8s.io/v1/namespaces/default/httproutes/r");
    assert_eq!(after_spec["metadata"]["generation"], 2);
    assert_eq!(after_spec["status"], after_status["status"]);
}

#[test]
fn watch_from_a_resource_version_replays_changes_and_sends_bookmarks() {
    let kube = KubeDouble::start();
    let list = kube.get_json("/api/v1/namespaces/default/configmaps");
    assert_eq!(list["kind"], "ConfigMapList");
    let from = resource_version(&list);
    create_configmap(&kube, "settings");
    kube.kubectl_ok(&["label", "configmap", "settings", "tier=front"]);
    create_configmap(&kube, "other");
    kube.kubectl_ok(&["delete", "configmap", "settings"]);

    let events = kube.watch_events(&format!(
        "/api/v1/namespaces/default/configmaps?watch=1&resourceVersion={from}\
         &allowWatchBookmarks=true&timeoutSeconds=3"
    ));
    let types = event_types(&events);
    assert_eq!(
        types[..4],
        ["ADDED", "MODIFIED", "ADDED", "DELETED"],
        "{events:?}"
    );
    assert!(types[4..].iter().all(|t| t == "BOOKMARK"), "{events:?}");
    assert!(types.len() > 4, "no bookmark within the watch: {events:?}");
    assert_eq!(events[1]["object"]["metadata"]["labels"]["tier"], "front");
    let bookmark = &events[4]["object"];
    assert_eq!(bookmark["kind"], "ConfigMap");
    assert_eq!(
        resource_version(bookmark),
        resource_version(&events[3]["object"]),
        "the bookmark is at the last change"
    );

    // A label selector turns a change that leaves the selection into DELETED.
    let selected = kube.watch_events(&format!(
        "/api/v1/namespaces/default/configmaps?watch=true&resourceVersion={from}\
         &labelSelector=tier%3Dfront&timeoutSeconds=1"
    ));
    assert_eq!(event_types(&selected), ["ADDED", "DELETED"]);

    let recorded = kube.requests();
    assert!(
        recorded.iter().any(|r| r["params"]["watch"] == "1"
            && r["params"]["resourceVersion"] == from.as_str()
            && r["params"]["allowWatchBookmarks"] == "true"),
        "the watch is recorded with its resourceVersion: {recorded:?}"
    );
}

#[test]
fn compaction_and_restart_make_old_resource_versions_gone() {
    let kube = KubeDouble::start();
    create_configmap(&kube, "before");
    let old = resource_version(&kube.get_json("/api/v1/configmaps"));
    let valid = kube.compact();

    let events = kube.watch_events(&format!(
        "/api/v1/configmaps?watch=1&resourceVersion={old}&timeoutSeconds=1"
    ));
    assert_eq!(event_types(&events), ["ERROR"]);
    assert_eq!(events[0]["object"]["code"], 410);
    assert_eq!(events[0]["object"]["reason"], "Expired");
    let (status, listed) = kube.request(
        "GET",
        &format!("/api/v1/configmaps?resourceVersion={old}"),
        None,
    );
    assert_eq!((status, listed["code"].clone()), (410, json!(410)));

    // A relist gives a version to watch from again.
    let relisted = resource_version(&kube.get_json("/api/v1/configmaps"));
    assert_eq!(relisted, valid);
    let events = kube.watch_events(&format!(
        "/api/v1/configmaps?watch=1&resourceVersion={relisted}&timeoutSeconds=1"
    ));
    assert!(
        !event_types(&events).contains(&"ERROR".to_owned()),
        "{events:?}"
    );

    kube.restart();
    let kept = kube.kubectl_ok(&["get", "configmap", "before", "-o", "name"]);
    assert_eq!(kept.trim(), "configmap/before");
    let events = kube.watch_events(&format!(
        "/api/v1/configmaps?watch=1&resourceVersion={relisted}&timeoutSeconds=1"
    ));
    assert_eq!(
        event_types(&events),
        ["ERROR"],
        "versions from before a restart are gone"
    );

    kube.stop();
    assert!(
        std::net::TcpStream::connect(("127.0.0.1", kube.port())).is_err(),
        "a stopped double does not answer"
    );
    kube.restart();
    assert_eq!(kube.get_json("/version")["major"], "1");
}

#[test]
fn lists_are_paginated_with_continue_tokens() {
    let kube = KubeDouble::start();
    for i in 0..5 {
        create_configmap(&kube, &format!("c{i}"));
    }
    let first = kube.get_json("/api/v1/namespaces/default/configmaps?limit=2");
    assert_eq!(names(&first), ["c0", "c1"]);
    assert_eq!(first["metadata"]["remainingItemCount"], 3);
    let token = first["metadata"]["continue"].as_str().unwrap().to_owned();
    kube.kubectl_ok(&["delete", "configmap", "c2"]);
    let second = kube.get_json(&format!(
        "/api/v1/namespaces/default/configmaps?limit=2&continue={token}"
    ));
    assert_eq!(
        names(&second),
        ["c2", "c3"],
        "a paginated list is one snapshot"
    );
    assert_eq!(resource_version(&second), resource_version(&first));
    let chunked = kube.kubectl_ok(&["get", "configmaps", "--chunk-size=1", "-o", "name"]);
    assert_eq!(chunked.lines().count(), 4, "{chunked}");
}

#[test]
fn token_review_authenticates_registered_service_account_tokens() {
    let kube = KubeDouble::start();
    kube.add_token("proxy-token", "shop", "web", &["remora"]);
    let review = |token: &str, audiences: &[&str]| {
        let body = json!({
            "apiVersion": "authentication.k8s.io/v1",
            "kind": "TokenReview",
            "spec": {"token": token, "audiences": audiences},
        });
        let (status, answer) = kube.request(
            "POST",
            "/apis/authentication.k8s.io/v1/tokenreviews",
            Some(&body),
        );
        assert_eq!(status, 201, "{answer}");
        answer["status"].clone()
    };
    let ok = review("proxy-token", &["remora", "other"]);
    assert_eq!(ok["authenticated"], true);
    assert_eq!(ok["user"]["username"], "system:serviceaccount:shop:web");
    assert_eq!(ok["audiences"], json!(["remora"]));
    assert!(ok["user"]["groups"]
        .as_array()
        .unwrap()
        .contains(&json!("system:serviceaccounts:shop")));
    let wrong_audience = review("proxy-token", &["other"]);
    assert_eq!(wrong_audience["authenticated"], false);
    let unknown = review("forged", &[]);
    assert_eq!(unknown["authenticated"], false);
    assert!(unknown["error"].is_string());
}

#[test]
fn preload_makes_a_cluster_of_services_and_running_pods() {
    let kube = KubeDouble::start_with(&["--preload-services", "10", "--preload-pods", "50"]);
    let pods = kube.get_json("/api/v1/namespaces/bench/pods?labelSelector=app%3Dsvc-3");
    assert_eq!(names(&pods).len(), 5);
    assert!(pods["items"]
        .as_array()
        .unwrap()
        .iter()
        .all(|p| p["status"]["phase"] == "Running"
            && p["spec"]["serviceAccountName"] == "svc-3"
            && p["metadata"]["annotations"]["remora.io/injected"].is_string()));
    let slices = kube.get_json(
        "/apis/discovery.k8s.io/v1/namespaces/bench/endpointslices?labelSelector=kubernetes.io%2Fservice-name%3Dsvc-3",
    );
    assert_eq!(slices["items"][0]["endpoints"].as_array().unwrap().len(), 5);
    let all = kube.kubectl_ok(&["get", "pods", "-n", "bench", "--chunk-size=7", "-o", "name"]);
    assert_eq!(all.lines().count(), 50);
    let services = kube.kubectl_ok(&["get", "services", "-n", "bench", "-o", "name"]);
    assert_eq!(services.lines().count(), 10);
}

/// The double's own unit tests: patches, selectors, and admission webhooks called
/// over TLS (a Pod create calls the matching webhook, verifying it with caBundle,
/// and applies its JSONPatch; denial, failure and Ignore policies).
#[test]
fn python_unit_tests_pass() {
    let scripts = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("scripts");
    let out = std::process::Command::new("python3")
        .args(["-m", "unittest", "discover", "-s"])
        .arg(&scripts)
        .args(["-p", "test_kube_apiserver.py"])
        .output()
        .expect("python3");
    assert!(
        out.status.success(),
        "python unit tests failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
