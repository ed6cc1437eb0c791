//! AdmissionReview samples in, answers out. `testdata/pod-create.json` is
//! written by hand after the v1 schema (a ReplicaSet's pod, as the API server
//! sends it: `generateName`, no name, the service-account volume already
//! added); `testdata/gke-pod-create.json` is a review captured from a GKE
//! cluster (kept by kube-rs as its own test sample).
//!
//! The rule every injecting case checks: the answer's patch applied to the
//! object equals `inject::inject` of the object, so the webhook and
//! `remora inject` make the same pod.

use serde_json::{json, Value};

use super::review::{answer, encode, Answer, BadReview, Outcome, Policy, Skip};
use crate::inject::{self, InjectSettings, ProxyResources};

fn policy() -> Policy {
    Policy {
        settings: InjectSettings {
            image: "remora-proxy:test".into(),
            version: "test".into(),
            proxy_uid: 1337,
            resources: ProxyResources::default(),
            trust_bundle: None,
            control_plane: "remora.remora-system.svc:7700".into(),
            control_plane_namespace: "remora-system".into(),
        },
        own_namespace: "remora-system".into(),
    }
}

fn sample(name: &str) -> Value {
    let path = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("src/webhook/testdata")
        .join(name);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap()
}

fn review(sample: &Value) -> Answer {
    answer(&serde_json::to_vec(sample).unwrap(), &policy()).unwrap()
}

/// The answer as the API server reads it.
fn response(answer: &Answer) -> Value {
    let json: Value = serde_json::from_slice(&encode(&answer.review).unwrap()).unwrap();
    assert_eq!(json["apiVersion"], "admission.k8s.io/v1");
    assert_eq!(json["kind"], "AdmissionReview");
    json["response"].clone()
}

/// The patch of `response` (base64 of a JSON array, as the schema says).
fn patch_of(response: &Value) -> json_patch::Patch {
    let encoded = response["patch"].clone();
    let bytes: k8s_openapi::ByteString = serde_json::from_value(encoded).unwrap();
    serde_json::from_slice(&bytes.0).unwrap()
}

/// What `remora inject` makes of `object`, as JSON.
fn injected_by_cli(object: &Value) -> Value {
    let yaml = serde_yaml_ng::to_value(object).unwrap();
    serde_json::to_value(inject::inject(yaml, &policy().settings).unwrap()).unwrap()
}

fn set(sample: &mut Value, pointer: &str, value: Value) {
    let (parent, key) = pointer.rsplit_once('/').unwrap();
    let parent = sample
        .pointer_mut(parent)
        .unwrap_or_else(|| panic!("{parent}"));
    parent
        .as_object_mut()
        .unwrap()
        .insert(key.replace("~1", "/"), value);
}

fn assert_unchanged(sample: &Value, skip: Skip) {
    let answer = review(sample);
    assert_eq!(answer.outcome, Outcome::Unchanged(skip));
    let response = response(&answer);
    assert_eq!(response["uid"], sample["request"]["uid"]);
    assert_eq!(response["allowed"], true);
    assert!(response.get("patch").is_none(), "{response}");
    assert!(response.get("patchType").is_none(), "{response}");
}

#[test]
fn the_patch_applied_to_the_pod_is_what_remora_inject_makes() {
    for name in ["pod-create.json", "gke-pod-create.json"] {
        let sample = sample(name);
        let answer = review(&sample);
        assert_eq!(answer.outcome, Outcome::Injected, "{name}");
        let response = response(&answer);
        assert_eq!(response["uid"], sample["request"]["uid"], "{name}");
        assert_eq!(response["allowed"], true, "{name}");
        assert_eq!(response["patchType"], "JSONPatch", "{name}");

        let object = sample["request"]["object"].clone();
        let mut patched = object.clone();
        json_patch::patch(&mut patched, &patch_of(&response)).unwrap();
        assert_eq!(patched, injected_by_cli(&object), "{name}");
        let inits = patched["spec"]["initContainers"].as_array().unwrap();
        assert_eq!(inits[0]["name"], inject::INIT_NAME, "{name}");
        assert_eq!(inits[1]["name"], inject::PROXY_NAME, "{name}");
        assert_eq!(patched["metadata"]["annotations"][inject::INJECTED], "test");
    }
}

#[test]
fn the_pod_is_named_by_namespace_and_generate_name() {
    let answer = review(&sample("pod-create.json"));
    assert_eq!(answer.namespace, "shop");
    assert_eq!(answer.name, "orders-7d9c8b6f5d-");
}

#[test]
fn a_pod_that_opted_out_is_admitted_unchanged() {
    let mut sample = sample("pod-create.json");
    set(
        &mut sample,
        "/request/object/metadata/annotations/remora.io~1inject",
        json!("disabled"),
    );
    assert_unchanged(&sample, Skip::OptedOut);
}

#[test]
fn the_control_planes_own_namespace_is_never_injected() {
    let mut sample = sample("pod-create.json");
    set(&mut sample, "/request/namespace", json!("remora-system"));
    set(
        &mut sample,
        "/request/object/metadata/namespace",
        json!("remora-system"),
    );
    assert_unchanged(&sample, Skip::OwnNamespace);
}

#[test]
fn a_pod_is_never_injected_twice() {
    let mut sample = sample("pod-create.json");
    let injected = injected_by_cli(&sample["request"]["object"]);
    set(&mut sample, "/request/object", injected);
    assert_unchanged(&sample, Skip::AlreadyInjected);
}

#[test]
fn a_pod_on_the_host_network_is_admitted_unchanged() {
    let mut sample = sample("pod-create.json");
    set(&mut sample, "/request/object/spec/hostNetwork", json!(true));
    assert_unchanged(&sample, Skip::HostNetwork);
}

#[test]
fn only_pods_being_created_are_changed() {
    let mut service = sample("pod-create.json");
    set(
        &mut service,
        "/request/kind",
        json!({"group": "", "version": "v1", "kind": "Service"}),
    );
    set(
        &mut service,
        "/request/resource",
        json!({"group": "", "version": "v1", "resource": "services"}),
    );
    set(
        &mut service,
        "/request/object",
        json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "orders"}, "spec": {}}),
    );
    assert_unchanged(&service, Skip::NotPodCreate);

    let mut delete = sample("pod-create.json");
    let pod = delete["request"]["object"].clone();
    set(&mut delete, "/request/operation", json!("DELETE"));
    set(&mut delete, "/request/oldObject", pod);
    set(&mut delete, "/request/object", Value::Null);
    set(
        &mut delete,
        "/request/options",
        json!({"kind": "DeleteOptions", "apiVersion": "meta.k8s.io/v1"}),
    );
    assert_unchanged(&delete, Skip::NotPodCreate);

    let mut update = sample("pod-create.json");
    let pod = update["request"]["object"].clone();
    set(&mut update, "/request/operation", json!("UPDATE"));
    set(&mut update, "/request/oldObject", pod);
    assert_unchanged(&update, Skip::NotPodCreate);

    let mut subresource = sample("pod-create.json");
    set(
        &mut subresource,
        "/request/subResource",
        json!("ephemeralcontainers"),
    );
    assert_unchanged(&subresource, Skip::NotPodCreate);
}

#[test]
fn a_pod_with_a_bad_annotation_is_refused_with_the_inject_message() {
    let mut sample = sample("pod-create.json");
    set(
        &mut sample,
        "/request/object/metadata/annotations/remora.io~1skip-inbound-ports",
        json!("22,ssh"),
    );
    let answer = review(&sample);
    let Outcome::Refused(message) = &answer.outcome else {
        panic!("{:?}", answer.outcome);
    };
    assert!(
        message.contains("remora.io/skip-inbound-ports"),
        "{message}"
    );
    assert!(message.contains("`ssh`"), "{message}");
    // The same words as `remora inject`.
    let yaml = serde_yaml_ng::to_value(&sample["request"]["object"]).unwrap();
    let cli = inject::inject(yaml, &policy().settings).unwrap_err();
    assert_eq!(message, &cli.to_string());

    let response = response(&answer);
    assert_eq!(response["uid"], sample["request"]["uid"]);
    assert_eq!(response["allowed"], false);
    assert_eq!(response["status"]["message"], json!(message));
    assert!(response.get("patch").is_none());
}

#[test]
fn an_object_without_its_type_is_injected_as_the_pod_it_is() {
    let mut sample = sample("pod-create.json");
    let object = sample
        .pointer_mut("/request/object")
        .unwrap()
        .as_object_mut()
        .unwrap();
    object.remove("kind");
    object.remove("apiVersion");
    let answer = review(&sample);
    assert_eq!(answer.outcome, Outcome::Injected);
    let patch = patch_of(&response(&answer));
    assert!(
        patch
            .0
            .iter()
            .all(|op| !op.path().to_string().starts_with("/kind")),
        "{patch:?}"
    );
}

#[test]
fn what_is_not_a_review_is_an_error_naming_what_is_wrong() {
    let bad = |body: &[u8]| answer(body, &policy()).unwrap_err();
    assert!(matches!(bad(b"not json"), BadReview::NotJson(_)));
    assert!(matches!(bad(b"\"a review\""), BadReview::Shape(_)));
    let mut old = sample("pod-create.json");
    set(&mut old, "/apiVersion", json!("admission.k8s.io/v1beta1"));
    let error = bad(&serde_json::to_vec(&old).unwrap());
    assert!(matches!(error, BadReview::Version { .. }), "{error}");
    assert!(
        error.to_string().contains("admissionReviewVersions"),
        "{error}"
    );
    let empty = json!({"kind": "AdmissionReview", "apiVersion": "admission.k8s.io/v1"});
    assert_eq!(
        bad(&serde_json::to_vec(&empty).unwrap()),
        BadReview::NoRequest
    );
}

#[test]
fn the_webhook_is_off_unless_given_an_address_and_injects_what_remora_inject_does() {
    use clap::Parser;
    let options = |args: &[&str]| {
        let cli = crate::cli::Cli::try_parse_from(args).unwrap();
        let crate::cli::Command::Control(args) = cli.command else {
            panic!("not control");
        };
        crate::ControlOptions::from(args)
    };
    let base = ["remora", "control", "--config-dir", "config"];
    assert_eq!(options(&base).webhook, None);

    let mut args = base.to_vec();
    args.extend(["--webhook-addr", "0.0.0.0:8443", "--namespace", "mesh"]);
    let webhook = options(&args).webhook.unwrap();
    assert_eq!(
        webhook.hosts().unwrap(),
        vec!["remora-webhook.mesh.svc".parse().unwrap()]
    );
    let mut expected = crate::cli::inject_settings(None);
    expected.control_plane = "remora.mesh.svc:7700".into();
    expected.control_plane_namespace = "mesh".into();
    assert_eq!(webhook.settings, expected);

    args.extend([
        "--webhook-server-name",
        "127.0.0.1,hook.example",
        "--proxy-image",
        "r/proxy:1",
    ]);
    let webhook = options(&args).webhook.unwrap();
    assert_eq!(
        webhook.hosts().unwrap(),
        vec![
            "127.0.0.1".parse().unwrap(),
            "hook.example".parse().unwrap()
        ]
    );
    assert_eq!(webhook.settings.image, "r/proxy:1");
}
