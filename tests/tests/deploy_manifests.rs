//! The manifests that install Remora, checked without a cluster:
//!
//! - `kubectl kustomize` renders `deploy/base` and `deploy/overlays/example`;
//! - `remora install` prints the same objects as the base renders (compared as
//!   YAML values keyed by kind, namespace and name);
//! - every object of those renders, of `remora install` and of `remora inject`
//!   on each injection test input validates against the Kubernetes 1.33
//!   schemas with `kubernetes-validate` (strict: unknown fields are errors);
//!   only Remora's and the Gateway API's kinds may lack a schema there;
//! - samples of each Remora kind validate against the CRDs' own
//!   `openAPIV3Schema` (with `jsonschema`, unknown fields refused as the API
//!   server's strict field validation does), and known-bad ones do not, so the
//!   schemas are checked to have teeth, not just to parse.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use remora_tests::harness::{bin_path, run_with_stdin};
use serde::Deserialize;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ is inside the repository")
        .to_owned()
}

fn run(command: &mut Command, stdin: &str) -> Output {
    run_with_stdin(command, stdin)
}

fn stdout(command: &mut Command, stdin: &str) -> String {
    let out = run(command, stdin);
    assert!(
        out.status.success(),
        "{command:?}: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn remora(args: &[&str]) -> String {
    stdout(Command::new(bin_path("remora").unwrap()).args(args), "")
}

fn kustomize(dir: &str) -> String {
    stdout(
        Command::new("kubectl")
            .arg("kustomize")
            .arg(repo().join(dir)),
        "",
    )
}

/// The documents of a YAML stream, by `Kind namespace/name`.
fn objects(text: &str) -> BTreeMap<String, serde_json::Value> {
    let mut out = BTreeMap::new();
    for document in serde_yaml_ng::Deserializer::from_str(text) {
        let value = serde_json::Value::deserialize(document).unwrap();
        if value.is_null() {
            continue;
        }
        let key = format!(
            "{} {}/{}",
            value["kind"].as_str().unwrap_or_default(),
            value["metadata"]["namespace"].as_str().unwrap_or_default(),
            value["metadata"]["name"].as_str().unwrap_or_default()
        );
        assert!(out.insert(key.clone(), value).is_none(), "{key} twice");
    }
    out
}

/// Validates every document of each file with kubernetes-validate's Python
/// API (its CLI cannot look inside a `List`): a document without a schema
/// fails unless its group is one of ours or the Gateway API's.
const KUBERNETES_VALIDATE: &str = r#"
import sys, yaml
try:
    import kubernetes_validate as kv
except ImportError:
    sys.exit("kubernetes-validate is missing: python3 -m pip install kubernetes-validate (scripts/test does)")
CUSTOM = ("policy.remora.dev/", "gateway.networking.k8s.io/")
failed = checked = 0
for path in sys.argv[1:]:
    with open(path) as f:
        docs = [d for d in yaml.safe_load_all(f) if d]
    while docs:
        doc = docs.pop(0)
        if doc.get("kind") == "List":
            docs.extend(doc.get("items") or [])
            continue
        name = "%s %s/%s in %s" % (doc.get("kind"), doc["metadata"].get("namespace", ""), doc["metadata"].get("name"), path)
        try:
            kv.validate(doc, "1.33", strict=True)
            checked += 1
        except kv.SchemaNotFoundError as e:
            if not str(doc.get("apiVersion", "")).startswith(CUSTOM):
                print("NO SCHEMA", name, e); failed += 1
        except kv.ValidationError as e:
            print("INVALID", name, ":", e); failed += 1
print("validated", checked)
sys.exit(1 if failed or not checked else 0)
"#;

fn kubernetes_validate(label: &str, texts: &[String]) {
    let dir = tempfile::tempdir().unwrap();
    let mut command = Command::new("python3");
    command.arg("-c").arg(KUBERNETES_VALIDATE);
    for (i, text) in texts.iter().enumerate() {
        let path = dir.path().join(format!("{label}-{i}.yaml"));
        std::fs::write(&path, text).unwrap();
        command.arg(path);
    }
    let out = run(&mut command, "");
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{label}:\n{report}");
}

#[test]
fn the_base_and_the_example_overlay_render_and_validate() {
    let base = kustomize("deploy/base");
    let overlay = kustomize("deploy/overlays/example");
    let base_objects = objects(&base);
    for kind in [
        "Namespace /remora-system",
        "CustomResourceDefinition /meshtlses.policy.remora.dev",
        "CustomResourceDefinition /authorizationpolicies.policy.remora.dev",
        "CustomResourceDefinition /trafficpolicies.policy.remora.dev",
        "ServiceAccount remora-system/remora",
        "ClusterRole /remora",
        "ClusterRoleBinding /remora",
        "Role remora-system/remora-ca",
        "RoleBinding remora-system/remora-ca",
        "Service remora-system/remora",
        "Service remora-system/remora-webhook",
        "Deployment remora-system/remora",
        "MutatingWebhookConfiguration /remora-injector",
    ] {
        assert!(base_objects.contains_key(kind), "{kind} missing: {base}");
    }
    let overlay_objects = objects(&overlay);
    let deployment = &overlay_objects["Deployment remora-system/remora"];
    let container = &deployment["spec"]["template"]["spec"]["containers"][0];
    assert_ne!(
        container["image"],
        base_objects["Deployment remora-system/remora"]["spec"]["template"]["spec"]["containers"]
            [0]["image"],
        "the overlay changes the image"
    );
    let args = container["args"].to_string();
    assert!(
        args.contains("--ca-cert") && args.contains("--ca-key"),
        "{args}"
    );
    assert_eq!(deployment["spec"]["replicas"], 1);
    kubernetes_validate("kustomize", &[base, overlay]);
}

#[test]
fn remora_install_prints_what_kustomize_renders_from_the_base() {
    let installed = remora(&["install"]);
    let rendered = kustomize("deploy/base");
    let (installed, rendered) = (objects(&installed), objects(&rendered));
    assert_eq!(
        installed.keys().collect::<Vec<_>>(),
        rendered.keys().collect::<Vec<_>>()
    );
    for (key, value) in &installed {
        assert_eq!(value, &rendered[key], "{key}");
    }
}

#[test]
fn remora_install_and_inject_output_validates_against_the_kubernetes_schemas() {
    let mut texts = vec![
        remora(&["install"]),
        remora(&[
            "install",
            "--namespace",
            "mesh",
            "--image",
            "registry.example.com/remora:1.0",
        ]),
    ];
    let testdata = repo().join("control-plane/src/inject/testdata");
    let mut inputs: Vec<_> = std::fs::read_dir(&testdata)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_string_lossy().ends_with(".in.yaml"))
        .collect();
    inputs.sort();
    assert!(inputs.len() >= 5, "inputs in {}", testdata.display());
    // `remora inject` requires one; only its presence matters here.
    let bundle_file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(
        bundle_file.path(),
        "-----BEGIN CERTIFICATE-----\nMA==\n-----END CERTIFICATE-----\n",
    )
    .unwrap();
    let bundle = bundle_file.path().to_str().unwrap().to_owned();
    for input in &inputs {
        texts.push(remora(&[
            "inject",
            "--trust-bundle",
            &bundle,
            "-f",
            input.to_str().unwrap(),
        ]));
    }
    kubernetes_validate("generated", &texts);
}

/// Checks samples against the CRDs' schemas with jsonschema. The API server
/// prunes or (with strict field validation, kubectl's default) refuses
/// unknown fields; `additionalProperties: false` on every object schema with
/// properties stands for that here. Prints `ok`/`refused` per sample.
const CRD_SCHEMA: &str = r#"
import json, sys, yaml
import jsonschema
crds = {}
for doc in yaml.safe_load_all(open(sys.argv[1])):
    if doc and doc["kind"] == "CustomResourceDefinition":
        for version in doc["spec"]["versions"]:
            crds[(doc["spec"]["group"] + "/" + version["name"], doc["spec"]["names"]["kind"])] = version["schema"]["openAPIV3Schema"]
def strict(schema):
    if isinstance(schema, dict):
        if "properties" in schema and not schema.get("x-kubernetes-preserve-unknown-fields"):
            schema.setdefault("additionalProperties", False)
        for value in schema.values():
            strict(value)
    elif isinstance(schema, list):
        for value in schema:
            strict(value)
    return schema
for key in crds:
    jsonschema.Draft7Validator.check_schema(crds[key])
    crds[key] = strict(crds[key])
results = []
for path in sys.argv[2:]:
    for doc in yaml.safe_load_all(open(path)):
        if not doc or (doc["apiVersion"], doc["kind"]) not in crds:
            continue
        errors = list(jsonschema.Draft7Validator(crds[(doc["apiVersion"], doc["kind"])]).iter_errors(doc))
        results.append([doc["kind"], doc["metadata"]["name"], "refused" if errors else "ok", [e.message for e in errors]])
print(json.dumps(results))
"#;

/// `(kind, name, "ok" | "refused", messages)` for every Remora document.
fn against_crd_schemas(samples: &[&Path]) -> Vec<(String, String, String, Vec<String>)> {
    let dir = tempfile::tempdir().unwrap();
    let crds = dir.path().join("crds.yaml");
    std::fs::write(&crds, remora(&["install"])).unwrap();
    let out = stdout(
        Command::new("python3")
            .arg("-c")
            .arg(CRD_SCHEMA)
            .arg(&crds)
            .args(samples),
        "",
    );
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"))
}

const BAD: &str = r#"apiVersion: policy.remora.dev/v1alpha1
kind: MeshTLS
metadata: {name: bad-mode, namespace: shop}
spec: {mode: LAX}
---
apiVersion: policy.remora.dev/v1alpha1
kind: AuthorizationPolicy
metadata: {name: no-rules, namespace: shop}
spec:
  targetRef: {kind: Service, name: orders}
  action: ALLOW
  rules: []
---
apiVersion: policy.remora.dev/v1alpha1
kind: TrafficPolicy
metadata: {name: unknown-field, namespace: shop}
spec:
  targetRef: {kind: Service, name: orders}
  retries: {attempts: 2}
---
apiVersion: policy.remora.dev/v1alpha1
kind: TrafficPolicy
metadata: {name: bad-duration, namespace: shop}
spec:
  targetRef: {kind: Service, name: orders}
  timeouts: {request: 10 seconds}
---
apiVersion: policy.remora.dev/v1alpha1
kind: TrafficPolicy
metadata: {name: too-many-attempts, namespace: shop}
spec:
  targetRef: {kind: HTTPRoute, group: gateway.networking.k8s.io, name: orders}
  retry: {attempts: 11, on: [5xx]}
"#;

/// Every field the control plane reads, in each kind. `"on"` is quoted: kubectl
/// reads YAML 1.1, where a bare `on` key is the boolean true.
const GOOD: &str = r#"apiVersion: policy.remora.dev/v1alpha1
kind: MeshTLS
metadata: {name: shop, namespace: shop}
spec: {mode: STRICT}
---
apiVersion: policy.remora.dev/v1alpha1
kind: MeshTLS
metadata: {name: orders-permissive, namespace: shop}
spec:
  targetRef: {kind: Service, name: orders}
  mode: PERMISSIVE
---
apiVersion: policy.remora.dev/v1alpha1
kind: AuthorizationPolicy
metadata: {name: orders-readers, namespace: shop}
spec:
  targetRef: {kind: Service, name: orders}
  action: ALLOW
  rules:
  - from:
      identities:
      - spiffe://cluster.local/ns/shop/sa/web
      - spiffe://cluster.local/ns/ops/*
      namespaces: [monitoring]
    to:
      paths: [/orders, "/api/*"]
      methods: [GET, HEAD]
  - {}
---
apiVersion: policy.remora.dev/v1alpha1
kind: AuthorizationPolicy
metadata: {name: no-admin, namespace: shop}
spec:
  targetRef: {kind: HTTPRoute, group: gateway.networking.k8s.io, name: orders}
  action: DENY
  rules:
  - to: {paths: [/admin]}
---
apiVersion: policy.remora.dev/v1alpha1
kind: TrafficPolicy
metadata: {name: orders, namespace: shop}
spec:
  targetRef: {kind: Service, name: orders}
  timeouts: {request: 10s, perTry: 2s, connect: 500ms, idle: 60s, streamIdle: 30s}
  retry:
    attempts: 2
    "on": [connect-failure, reset, 5xx, gateway-error]
    codes: [409]
    grpcCodes: [UNAVAILABLE]
    backoff: {base: 25ms, max: 250ms}
    budget: {percent: 20, minRetriesPerSecond: 3}
  outlierDetection:
    consecutiveFailures: 5
    baseEjectionTime: 30s
    maxEjectionTime: 300s
    maxEjectionPercent: 10
  loadBalancer:
    type: ConsistentHash
    consistentHash:
      cookie: {name: session, ttl: 1h, path: /}
      minimumRingSize: 1024
  faults:
    abort: {status: 503, percent: 12.5}
    delay: {duration: 100ms, percent: 5}
    headers: [{name: x-chaos, value: "on"}]
  rateLimit:
    inbound: {requestsPerSecond: 100, burst: 100}
    outbound: {requestsPerSecond: 50}
  connectionLimits: {maxRequests: 100, maxConnections: 100, maxPendingRequests: 10}
---
apiVersion: policy.remora.dev/v1alpha1
kind: TrafficPolicy
metadata: {name: orders-route, namespace: shop}
spec:
  targetRef: {kind: HTTPRoute, group: gateway.networking.k8s.io, name: orders}
  timeouts: {request: 5s}
  retry: {attempts: 3, "on": [5xx]}
---
apiVersion: policy.remora.dev/v1alpha1
kind: TrafficPolicy
metadata: {name: web, namespace: shop}
spec:
  targetRef: {kind: Service, name: web}
  loadBalancer: {type: ConsistentHash, consistentHash: {header: x-user}}
  faults:
    abort: {grpcStatus: 14, percent: 1}
"#;

/// What the samples refer to, so `remora check` finds them whole.
const REFERENCED: &str = r#"apiVersion: v1
kind: Service
metadata: {name: orders, namespace: shop}
spec: {ports: [{port: 80}]}
---
apiVersion: v1
kind: Service
metadata: {name: web, namespace: shop}
spec: {ports: [{port: 80}]}
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: orders, namespace: shop}
spec:
  parentRefs: [{kind: Service, group: "", name: orders, port: 80}]
  rules: [{backendRefs: [{name: orders, port: 80}]}]
"#;

#[test]
fn every_remora_kind_validates_against_its_crd_schema_and_mistakes_do_not() {
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("good.yaml");
    std::fs::write(&good, GOOD).unwrap();
    std::fs::write(dir.path().join("referenced.yaml"), REFERENCED).unwrap();
    // The samples are valid for the control plane itself, too.
    let out = run(
        Command::new(bin_path("remora").unwrap())
            .args(["check", "-f"])
            .arg(dir.path()),
        "",
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let results = against_crd_schemas(&[good.as_path()]);
    assert_eq!(results.len(), 7, "{results:?}");
    for (kind, name, verdict, messages) in &results {
        assert_eq!(verdict, "ok", "{kind} {name}: {messages:?}");
    }

    let bad = dir.path().join("bad.yaml");
    std::fs::write(&bad, BAD).unwrap();
    let results = against_crd_schemas(&[bad.as_path()]);
    assert_eq!(results.len(), 5, "{results:?}");
    for (kind, name, verdict, _) in &results {
        assert_eq!(verdict, "refused", "{kind} {name} should be refused");
    }
}
