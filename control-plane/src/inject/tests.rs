//! Golden files: `testdata/<case>.in.yaml` injected must equal
//! `testdata/<case>.out.yaml` (compared as YAML values, so key order and
//! quoting do not matter). After a deliberate change to what is injected, run
//!
//!     REMORA_UPDATE_GOLDEN=1 cargo test -p remora-control inject::tests
//!
//! to rewrite the `.out.yaml` files, and review their diff.
//!
//! Every case is also injected twice (same result) and uninjected (the input
//! back, for cases whose input had no sidecar).

use std::path::PathBuf;

use serde::Deserialize;
use serde_yaml_ng::Value;

use super::*;

const CASES: &[&str] = &[
    "deployment",
    "pod",
    "cronjob",
    "list",
    "multi-doc",
    "already-injected",
    "disabled",
    "classic",
    "annotations",
    "probes",
];

/// Inputs that already carry a sidecar: uninjecting them gives no "input back".
const ALREADY_INJECTED: &[&str] = &["already-injected"];

fn settings() -> InjectSettings {
    InjectSettings {
        image: "remora-proxy:test".into(),
        version: "test".into(),
        proxy_uid: 1337,
        resources: ProxyResources::default(),
        trust_bundle: None,
        control_plane: DEFAULT_CONTROL_PLANE.into(),
        control_plane_namespace: "remora-system".into(),
    }
}

/// The proxy container's `env` of the (only) pod template in `doc`, as
/// `name -> value` (`valueFrom` ones as `fieldRef:PATH`).
fn proxy_env(doc: &Value) -> Vec<(String, String)> {
    let spec = &doc["spec"]["template"]["spec"];
    let proxy = spec["initContainers"]
        .as_sequence()
        .into_iter()
        .chain(spec["containers"].as_sequence())
        .flatten()
        .find(|c| c["name"].as_str() == Some(PROXY_NAME))
        .expect("a proxy container");
    proxy["env"]
        .as_sequence()
        .expect("env")
        .iter()
        .map(|e| {
            let name = e["name"].as_str().unwrap_or_default().to_owned();
            let value = match e["value"].as_str() {
                Some(v) => v.to_owned(),
                None => format!(
                    "fieldRef:{}",
                    e["valueFrom"]["fieldRef"]["fieldPath"]
                        .as_str()
                        .unwrap_or_default()
                ),
            };
            (name, value)
        })
        .collect()
}

fn env_value(doc: &Value, name: &str) -> Option<String> {
    proxy_env(doc)
        .into_iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v)
}

fn deployment(labels: &str, annotations: &str) -> Value {
    let text = format!(
        "apiVersion: apps/v1
kind: Deployment
metadata: {{name: orders-v2, namespace: shop}}
spec:
  template:
    metadata: {{labels: {{{labels}}}, annotations: {{{annotations}}}}}
    spec: {{containers: [{{name: app, ports: [{{containerPort: 9090}}]}}]}}
"
    );
    documents(&text).remove(0)
}

fn path(case: &str, suffix: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("src/inject/testdata")
        .join(format!("{case}.{suffix}.yaml"))
}

fn documents(text: &str) -> Vec<Value> {
    serde_yaml_ng::Deserializer::from_str(text)
        .map(|d| Value::deserialize(d).unwrap())
        .filter(|v| !v.is_null())
        .collect()
}

fn read(case: &str, suffix: &str) -> String {
    let path = path(case, suffix);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[test]
fn golden_files() {
    let update = std::env::var_os("REMORA_UPDATE_GOLDEN").is_some_and(|v| v == "1");
    for case in CASES {
        let input = read(case, "in");
        let out = rewrite(&input, Direction::Inject, &settings())
            .unwrap_or_else(|e| panic!("{case}: {e}"));
        if update {
            std::fs::write(path(case, "out"), &out).unwrap();
            continue;
        }
        assert_eq!(
            documents(&out),
            documents(&read(case, "out")),
            "{case}: inject(in) differs from {case}.out.yaml; got:\n{out}"
        );
    }
}

#[test]
fn injecting_twice_equals_injecting_once() {
    for case in CASES {
        for doc in documents(&read(case, "in")) {
            let once = inject(doc, &settings()).unwrap();
            let twice = inject(once.clone(), &settings()).unwrap();
            assert_eq!(once, twice, "{case}");
        }
    }
}

#[test]
fn uninject_gives_back_what_was_injected() {
    for case in CASES {
        for doc in documents(&read(case, "in")) {
            let injected = inject(doc.clone(), &settings()).unwrap();
            let back = uninject(injected).unwrap();
            if ALREADY_INJECTED.contains(case) {
                // The sidecar is gone, and uninjecting again changes nothing.
                assert_eq!(uninject(back.clone()).unwrap(), back, "{case}");
                assert_eq!(uninject(doc).unwrap(), back, "{case}");
            } else {
                assert_eq!(back, doc, "{case}");
            }
        }
    }
}

#[test]
fn a_new_version_replaces_the_old_sidecar() {
    let doc = documents(&read("deployment", "in")).remove(0);
    let old = inject(doc.clone(), &InjectSettings::new("0.1.0")).unwrap();
    let new = inject(old, &settings()).unwrap();
    assert_eq!(new, inject(doc, &settings()).unwrap());
}

#[test]
fn the_service_name_comes_from_the_annotation_then_the_labels_then_the_name() {
    let service = |labels: &str, annotations: &str| {
        let doc = inject(deployment(labels, annotations), &settings()).unwrap();
        env_value(&doc, "REMORA_SERVICE").unwrap()
    };
    let both = "app.kubernetes.io/name: orders-api, app: orders";
    assert_eq!(service(both, "remora.io/service: orders"), "orders");
    assert_eq!(service(both, ""), "orders-api");
    assert_eq!(service("app: orders", ""), "orders");
    assert_eq!(service("tier: web", ""), "orders-v2", "the workload's name");
}

#[test]
fn the_proxy_gets_its_bootstrap_from_the_environment() {
    let mut with_bundle = settings();
    with_bundle.trust_bundle = Some("-----BEGIN CERTIFICATE-----\n...".into());
    with_bundle.control_plane = "remora.mesh.svc:7700".into();
    let doc = inject(deployment("app: orders", ""), &with_bundle).unwrap();
    let env = proxy_env(&doc);
    let names: Vec<&str> = env.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        [
            "REMORA_BOOTSTRAP_FROM_ENV",
            "REMORA_SERVICE",
            "REMORA_CONTROL_PLANE",
            "REMORA_TRUST_BUNDLE",
            "REMORA_APP",
            "POD_NAME",
            "POD_NAMESPACE",
            "POD_IP",
            "SERVICE_ACCOUNT",
        ]
    );
    assert_eq!(
        env_value(&doc, "REMORA_CONTROL_PLANE").unwrap(),
        "remora.mesh.svc:7700"
    );
    assert_eq!(env_value(&doc, "REMORA_APP").unwrap(), "127.0.0.1:9090");
    assert!(env_value(&doc, "REMORA_TRUST_BUNDLE")
        .unwrap()
        .starts_with("-----BEGIN CERTIFICATE-----"));
    // The token the proxy presents: projected for the control plane only.
    let spec = &doc["spec"]["template"]["spec"];
    let token = spec["volumes"]
        .as_sequence()
        .unwrap()
        .iter()
        .find(|v| v["name"].as_str() == Some(TOKEN_VOLUME))
        .expect("the token volume");
    let projected = &token["projected"]["sources"][0]["serviceAccountToken"];
    assert_eq!(projected["audience"].as_str(), Some(TOKEN_AUDIENCE));
    assert_eq!(projected["path"].as_str(), Some("token"));
}

#[test]
fn the_apps_own_volumes_stay_and_only_the_token_volume_goes() {
    let doc = documents(
        "apiVersion: v1\nkind: Pod\nmetadata: {name: web}\n\
         spec: {containers: [{name: web}], volumes: [{name: data, emptyDir: {}}]}\n",
    )
    .remove(0);
    let injected = inject(doc.clone(), &settings()).unwrap();
    let volumes = injected["spec"]["volumes"].as_sequence().unwrap();
    assert_eq!(volumes.len(), 2);
    assert_eq!(volumes[0]["name"].as_str(), Some("data"));
    assert_eq!(volumes[1]["name"].as_str(), Some(TOKEN_VOLUME));
    assert_eq!(inject(injected.clone(), &settings()).unwrap(), injected);
    assert_eq!(uninject(injected).unwrap(), doc);
}

#[test]
fn other_kinds_pass_through_unchanged() {
    let text = "\
apiVersion: v1
kind: Service
metadata: {name: orders}
spec: {ports: [{port: 80}]}
---
apiVersion: example.com/v1
kind: Deployment
metadata: {name: not-apps}
spec: {template: {spec: {containers: [{name: app}]}}}
";
    for doc in documents(text) {
        assert_eq!(inject(doc.clone(), &settings()).unwrap(), doc);
    }
}

#[test]
fn a_pod_on_the_host_network_gets_no_sidecar() {
    let doc = documents(
        "apiVersion: v1\nkind: Pod\nmetadata: {name: agent}\n\
         spec: {hostNetwork: true, containers: [{name: agent}]}\n",
    )
    .remove(0);
    assert_eq!(inject(doc.clone(), &settings()).unwrap(), doc);
}

#[test]
fn a_wrong_annotation_names_the_object_and_the_annotation() {
    let text = "\
apiVersion: v1
kind: Service
metadata: {name: fine}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: orders, namespace: shop}
spec:
  template:
    metadata:
      annotations: {remora.io/skip-inbound-ports: \"22,ssh\"}
    spec: {containers: [{name: app}]}
";
    let error = rewrite(text, Direction::Inject, &settings()).unwrap_err();
    let message = error.to_string();
    assert!(
        message.starts_with("document 2: Deployment shop/orders: "),
        "{message}"
    );
    assert!(
        message.contains("remora.io/skip-inbound-ports"),
        "{message}"
    );
    assert!(message.contains("`ssh`"), "{message}");
}

#[test]
fn a_list_item_error_names_the_item() {
    let text = "\
apiVersion: v1
kind: List
items:
- apiVersion: v1
  kind: Pod
  metadata: {name: ok}
  spec: {containers: [{name: app}]}
- apiVersion: v1
  kind: Pod
  metadata: {name: bad, annotations: {remora.io/sidecar-mode: old}}
  spec: {containers: [{name: app}]}
";
    let error = rewrite(text, Direction::Inject, &settings()).unwrap_err();
    assert_eq!(
        error.to_string(),
        "document 1: items[1]: Pod bad: annotation `remora.io/sidecar-mode`: `old` \
         is not `native` or `classic`"
    );
}

#[test]
fn a_workload_without_a_pod_template_is_an_error_naming_the_field() {
    let doc =
        documents("apiVersion: batch/v1\nkind: CronJob\nmetadata: {name: nightly}\nspec: {}\n")
            .remove(0);
    let error = inject(doc, &settings()).unwrap_err();
    assert_eq!(
        error.to_string(),
        "CronJob nightly: field `spec.jobTemplate`: is missing (a pod template is expected here)"
    );
}

#[test]
fn a_service_name_from_a_label_or_the_name_must_be_a_dns_label() {
    let error = |labels: &str| {
        inject(deployment(labels, ""), &settings())
            .unwrap_err()
            .to_string()
    };
    assert_eq!(
        error("app: Orders"),
        "Deployment shop/orders-v2: the Service name `Orders` (from label `app`) is not a \
         lowercase DNS label (a-z, 0-9, -, at most 63): set the annotation `remora.io/service` \
         to the Service's name"
    );
    let message = error("app.kubernetes.io/name: orders.v1, app: orders");
    assert!(
        message.contains("`orders.v1` (from label `app.kubernetes.io/name`)"),
        "{message}"
    );
    // The annotation wins over a bad label.
    let doc = inject(
        deployment("app: Orders", "remora.io/service: orders"),
        &settings(),
    )
    .unwrap();
    assert_eq!(env_value(&doc, "REMORA_SERVICE").unwrap(), "orders");
    // No label: the workload's own name.
    let doc = documents(
        "apiVersion: v1\nkind: Pod\nmetadata: {name: web.v1}\nspec: {containers: [{name: web}]}\n",
    )
    .remove(0);
    let message = inject(doc, &settings()).unwrap_err().to_string();
    assert!(
        message.contains("`web.v1` (from the workload's name)"),
        "{message}"
    );
}

#[test]
fn classic_mode_refuses_app_init_containers_naming_them() {
    let text = "\
apiVersion: apps/v1
kind: Deployment
metadata: {name: old, namespace: shop}
spec:
  template:
    metadata:
      labels: {app: old}
      annotations: {remora.io/sidecar-mode: classic}
    spec:
      initContainers: [{name: migrate}, {name: warm-cache}]
      containers: [{name: app}]
";
    let doc = documents(text).remove(0);
    let message = inject(doc.clone(), &settings()).unwrap_err().to_string();
    assert!(
        message.starts_with(
            "Deployment shop/old: field `spec.template.spec.initContainers`: `migrate`, `warm-cache`: "
        ),
        "{message}"
    );
    assert!(message.contains("native mode"), "{message}");
    // Native mode starts the proxy before them: fine.
    let native = serde_yaml_ng::to_string(&doc).unwrap().replace(
        "remora.io/sidecar-mode: classic",
        "remora.io/sidecar-mode: native",
    );
    assert!(inject(documents(&native).remove(0), &settings()).is_ok());
}

#[test]
fn the_apps_probes_go_to_the_proxy_which_is_told_the_originals() {
    let doc = documents(&read("probes", "in")).remove(0);
    let injected = inject(doc.clone(), &settings()).unwrap();
    let app = &injected["spec"]["template"]["spec"]["containers"][0];
    for (probe, path) in [
        ("livenessProbe", "/app-health/app/livez"),
        ("readinessProbe", "/app-health/app/readyz"),
        ("startupProbe", "/app-health/app/startupz"),
    ] {
        assert_eq!(
            app[probe]["httpGet"]["path"].as_str(),
            Some(path),
            "{probe}"
        );
        assert_eq!(
            app[probe]["httpGet"]["port"].as_u64(),
            Some(u64::from(ADMIN_PORT))
        );
    }
    let probes: serde_json::Value =
        serde_json::from_str(&env_value(&injected, APP_PROBES_ENV).unwrap()).unwrap();
    assert_eq!(
        probes["/app-health/app/livez"]["httpGet"]["port"], 8080,
        "the named port resolved"
    );
    assert_eq!(probes["/app-health/app/readyz"]["tcpSocket"]["port"], 8080);
    // The other container's gRPC probe goes to the proxy too...
    let metrics = &injected["spec"]["template"]["spec"]["containers"][1];
    let original = &doc["spec"]["template"]["spec"]["containers"][1];
    assert_eq!(
        metrics["readinessProbe"]["httpGet"]["path"].as_str(),
        Some("/app-health/metrics/readyz")
    );
    assert_eq!(
        probes["/app-health/metrics/readyz"],
        serde_json::json!({"grpc": {"port": 9090}}),
        "no timeoutSeconds: the proxy's default is the kubelet's, 1"
    );
    // ...while its exec and HTTPS probes stay with the kubelet.
    assert_eq!(metrics["livenessProbe"], original["livenessProbe"]);
    assert_eq!(metrics["startupProbe"], original["startupProbe"]);
    assert_eq!(uninject(injected).unwrap(), doc);
}
