//! Fixtures for tests against the Kubernetes API server double: what a
//! cluster's own parts would write (the kubelet's pod status, the
//! EndpointSlice controller's slices, an operator's `remora install`), and
//! reading back what Remora wrote (a route's status, the webhook's CA bundle).
//! Everything goes through the real `kubectl`.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use remora_tests::harness::{bin_path, wait_for_some};
use remora_tests::kube::KubeDouble;
use serde_json::Value;

/// The Gateway API controller name Remora writes in a route's status.
pub const CONTROLLER_NAME: &str = "remora.dev/mesh";

/// Namespace `name`, labelled `remora.io/inject: enabled` when `opted_in`.
/// Applied: `kubectl create namespace` sends protobuf, which the double does
/// not read.
pub fn namespace(double: &KubeDouble, name: &str, opted_in: bool) {
    let labels = if opted_in {
        "\n  labels: {remora.io/inject: enabled}"
    } else {
        ""
    };
    double.kubectl_stdin(
        &["apply", "-f", "-"],
        &format!("apiVersion: v1\nkind: Namespace\nmetadata:\n  name: {name}{labels}\n"),
    );
}

/// What the kubelet reports once pod `name` runs at `ip` (the status
/// subresource).
pub fn pod_running(double: &KubeDouble, namespace: &str, name: &str, ip: IpAddr) {
    double.kubectl_ok(&[
        "patch",
        "pod",
        name,
        "-n",
        namespace,
        "--subresource=status",
        "--type=merge",
        "-p",
        &format!(r#"{{"status":{{"phase":"Running","podIP":"{ip}","podIPs":[{{"ip":"{ip}"}}]}}}}"#),
    ]);
}

/// The EndpointSlice `name` of Service `service` as the EndpointSlice
/// controller writes it: each pod's address with the pod as `targetRef`,
/// ready, and the Service's target port `port` (named `http`).
pub fn endpoint_slice(
    namespace: &str,
    name: &str,
    service: &str,
    port: u16,
    pods: &[(&str, IpAddr)],
) -> String {
    let endpoints: String = pods
        .iter()
        .map(|(pod, ip)| {
            format!(
                "- addresses: [\"{ip}\"]\n  conditions: {{ready: true, serving: true, terminating: false}}\n  \
                 targetRef: {{kind: Pod, name: {pod}, namespace: {namespace}}}\n"
            )
        })
        .collect();
    format!(
        "apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata:\n  name: {name}\n  \
         namespace: {namespace}\n  labels: {{kubernetes.io/service-name: {service}}}\n\
         addressType: IPv4\nports: [{{name: http, port: {port}, protocol: TCP}}]\n\
         endpoints:\n{endpoints}"
    )
}

/// The conditions of an endpoint of an EndpointSlice.
#[derive(Debug, Clone, Copy)]
pub struct Conditions {
    pub ready: bool,
    pub serving: bool,
    pub terminating: bool,
}

/// The EndpointSlice controller's update of endpoint `index` of `slice`
/// (e.g. its pod started terminating).
pub fn set_endpoint_conditions(
    double: &KubeDouble,
    namespace: &str,
    slice: &str,
    index: usize,
    c: Conditions,
) {
    let patch = serde_json::json!([{
        "op": "replace",
        "path": format!("/endpoints/{index}/conditions"),
        "value": {"ready": c.ready, "serving": c.serving, "terminating": c.terminating},
    }]);
    double.kubectl_ok(&[
        "patch",
        "endpointslice",
        slice,
        "-n",
        namespace,
        "--type=json",
        "-p",
        &patch.to_string(),
    ]);
}

/// The condition `kind` of Remora's entry in HTTPRoute `route`'s status.
pub fn route_condition(
    double: &KubeDouble,
    namespace: &str,
    route: &str,
    kind: &str,
) -> Option<Value> {
    let text = double.kubectl_ok(&["get", "httproute", route, "-n", namespace, "-o", "json"]);
    let route: Value = serde_json::from_str(&text).ok()?;
    route["status"]["parents"]
        .as_array()?
        .iter()
        .find(|p| p["controllerName"] == CONTROLLER_NAME)?["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == kind)
        .cloned()
}

/// Waits until HTTPRoute `route` has condition `kind` with `status`; the
/// condition.
pub async fn wait_route_condition(
    double: &KubeDouble,
    namespace: &str,
    route: &str,
    kind: &str,
    status: &str,
    timeout: Duration,
) -> Value {
    wait_for_some(timeout, || async {
        route_condition(double, namespace, route, kind).filter(|c| c["status"] == status)
    })
    .await
    .unwrap_or_else(|e| {
        panic!(
            "{namespace}/{route}: {kind} never {status}: {e}; now {:?}",
            route_condition(double, namespace, route, kind)
        )
    })
}

/// The MutatingWebhookConfiguration `remora install` makes.
pub const WEBHOOK_CONFIGURATION: &str = "remora-injector";

/// Waits until every webhook of `remora-injector` carries a `caBundle`
/// (the control plane writes it); the bundles as written (base64).
pub async fn wait_ca_bundles(double: &KubeDouble, timeout: Duration) -> Vec<String> {
    let bundles = || {
        let out = double.kubectl(&[
            "get",
            "mutatingwebhookconfiguration",
            WEBHOOK_CONFIGURATION,
            "-o",
            "json",
        ]);
        let config: Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
        let hooks = config["webhooks"].as_array().cloned().unwrap_or_default();
        let found: Vec<String> = hooks
            .iter()
            .filter_map(|h| h["clientConfig"]["caBundle"].as_str().map(str::to_owned))
            .collect();
        (!hooks.is_empty() && found.len() == hooks.len()).then_some(found)
    };
    wait_for_some(timeout, || {
        let found = bundles();
        async move { found }
    })
    .await
    .unwrap_or_else(|e| {
        panic!(
            "{WEBHOOK_CONFIGURATION} never got its caBundle: {e}\n{}",
            String::from_utf8_lossy(
                &double
                    .kubectl(&[
                        "get",
                        "mutatingwebhookconfiguration",
                        WEBHOOK_CONFIGURATION,
                        "-o",
                        "yaml"
                    ])
                    .stdout
            )
        )
    })
}

/// The way `remora install`'s webhooks reach the control plane: through the
/// Service `remora-webhook`, which the double cannot route to.
const WEBHOOK_SERVICE: &str = "      service:\n        name: remora-webhook\n        \
     namespace: remora-system\n        path: /inject\n        port: 443\n";

/// `remora install | kubectl apply -f -`, with one change: the injector's
/// webhooks call `webhook` by URL, where the API server would go through the
/// Service `remora-webhook` (the double has no Service network). Everything
/// else (CRDs, RBAC, the webhooks' selectors and rules) is as installed.
pub fn install(double: &KubeDouble, webhook: SocketAddr) {
    let out = std::process::Command::new(bin_path("remora").unwrap())
        .arg("install")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "remora install: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let manifests = String::from_utf8(out.stdout).unwrap();
    let by_url = format!("      url: https://{webhook}/inject\n");
    let pointed = manifests.replace(WEBHOOK_SERVICE, &by_url);
    assert!(
        pointed.contains(&by_url) && !pointed.contains("name: remora-webhook\n        namespace"),
        "the webhooks' clientConfig in remora install changed shape:\n{manifests}"
    );
    double.kubectl_stdin(&["apply", "-f", "-"], &pointed);
}

/// One RBAC rule of a ClusterRole (`namespace: None`) or a Role.
#[derive(Debug)]
struct Rule {
    namespace: Option<String>,
    groups: Vec<String>,
    resources: Vec<String>,
    names: Vec<String>,
    verbs: Vec<String>,
}

/// The rules of every ClusterRole and Role in `remora install`'s output.
fn installed_rules() -> Vec<Rule> {
    let out = std::process::Command::new(bin_path("remora").unwrap())
        .arg("install")
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    let strings = |v: &serde_yaml_ng::Value| -> Vec<String> {
        v.as_sequence()
            .into_iter()
            .flatten()
            .filter_map(|s| s.as_str().map(str::to_owned))
            .collect()
    };
    let mut rules = Vec::new();
    for doc in serde_yaml_ng::Deserializer::from_str(&text) {
        let doc = <serde_yaml_ng::Value as serde::Deserialize>::deserialize(doc).unwrap();
        let kind = doc["kind"].as_str().unwrap_or_default();
        if kind != "ClusterRole" && kind != "Role" {
            continue;
        }
        let namespace =
            (kind == "Role").then(|| doc["metadata"]["namespace"].as_str().unwrap().to_owned());
        for rule in doc["rules"].as_sequence().into_iter().flatten() {
            rules.push(Rule {
                namespace: namespace.clone(),
                groups: strings(&rule["apiGroups"]),
                resources: strings(&rule["resources"]),
                names: strings(&rule["resourceNames"]),
                verbs: strings(&rule["verbs"]),
            });
        }
    }
    rules
}

/// What RBAC sees of one API request: verb, group, resource (with its
/// subresource), namespace and name.
fn authorization_of(request: &Value) -> (String, String, String, Option<String>, Option<String>) {
    let method = request["method"].as_str().unwrap_or_default();
    let path = request["path"].as_str().unwrap_or_default();
    let params = &request["params"];
    let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
    // /api/v1/... or /apis/GROUP/VERSION/...
    let (group, rest) = match parts.as_slice() {
        ["api", _version, rest @ ..] => (String::new(), rest),
        ["apis", group, _version, rest @ ..] => ((*group).to_owned(), rest),
        _ => panic!("not an API path: {path}"),
    };
    let (namespace, rest) = match rest {
        ["namespaces", ns, rest @ ..] if !rest.is_empty() => (Some((*ns).to_owned()), rest),
        rest => (None, rest),
    };
    let (resource, name, sub) = match rest {
        [resource] => (*resource, None, None),
        [resource, name] => (*resource, Some((*name).to_owned()), None),
        [resource, name, sub] => (*resource, Some((*name).to_owned()), Some(*sub)),
        _ => panic!("unexpected API path: {path}"),
    };
    let resource = match sub {
        Some(sub) => format!("{resource}/{sub}"),
        None => resource.to_owned(),
    };
    let watch = matches!(params["watch"].as_str(), Some("1" | "true"));
    // A list or watch narrowed to one name is authorized against resourceNames.
    let by_field = params["fieldSelector"]
        .as_str()
        .and_then(|f| f.strip_prefix("metadata.name="))
        .map(str::to_owned);
    let (verb, name) = match (method, name) {
        ("GET", _) if watch => ("watch", by_field),
        ("GET", None) => ("list", by_field),
        ("GET", Some(name)) => ("get", Some(name)),
        ("POST", _) => ("create", None),
        ("PATCH", name) => ("patch", name),
        ("PUT", name) => ("update", name),
        ("DELETE", name) => ("delete", name),
        (other, _) => panic!("unexpected method {other} on {path}"),
    };
    (verb.to_owned(), group, resource, namespace, name)
}

/// Every request the control plane made to the double (its `User-Agent` says
/// `remora-control/`) is one the RBAC of `remora install` allows: the
/// ClusterRole and Role are exactly what the code needs, no less (a request
/// they refuse would fail in a cluster), checked against real requests.
pub fn assert_control_plane_requests_allowed(double: &KubeDouble) {
    let rules = installed_rules();
    let requests: Vec<Value> = double
        .requests()
        .into_iter()
        .filter(|r| {
            r["userAgent"]
                .as_str()
                .is_some_and(|a| a.starts_with("remora-control/"))
        })
        .collect();
    assert!(
        !requests.is_empty(),
        "no request from the control plane was recorded"
    );
    for request in &requests {
        let (verb, group, resource, namespace, name) = authorization_of(request);
        let allows = |rule: &Rule| {
            // A Role's rules hold in its own namespace only.
            let in_scope = rule.namespace.is_none() || rule.namespace == namespace;
            let named =
                rule.names.is_empty() || name.as_ref().is_some_and(|n| rule.names.contains(n));
            in_scope
                && named
                && rule.groups.iter().any(|g| *g == group || g == "*")
                && rule.resources.iter().any(|r| *r == resource || r == "*")
                && rule.verbs.iter().any(|v| *v == verb || v == "*")
        };
        let allowed = rules.iter().any(allows);
        assert!(
            allowed,
            "remora install's RBAC does not allow the control plane's {verb} on \
             {group}/{resource} (namespace {namespace:?}, name {name:?}): {request}"
        );
    }
}

/// `127.0.0.<last>`: a pod's IP on loopback.
pub fn ip(last: u8) -> IpAddr {
    IpAddr::from([127, 0, 0, last])
}

/// Sets `name` in a pod's environment, replacing what it had.
pub fn set(env: &mut Vec<(String, String)>, name: &str, value: &str) {
    env.retain(|(k, _)| k != name);
    env.push((name.to_owned(), value.to_owned()));
}
