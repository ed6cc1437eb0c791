use k8s_openapi::api::admissionregistration::v1::MutatingWebhook;
use k8s_openapi::api::core::v1::Pod;

use super::install::judge_webhook;
use super::pods::{has_proxy, should_have_proxy};
use super::*;

fn pod(value: serde_json::Value) -> Pod {
    serde_json::from_value(value).unwrap()
}

#[test]
fn a_native_or_classic_sidecar_is_a_proxy() {
    let plain = pod(serde_json::json!({
        "metadata": {"name": "a", "namespace": "shop"},
        "spec": {"containers": [{"name": "app"}]}
    }));
    let native = pod(serde_json::json!({
        "metadata": {"name": "a", "namespace": "shop"},
        "spec": {
            "initContainers": [{"name": "remora-init"}, {"name": "remora-proxy", "restartPolicy": "Always"}],
            "containers": [{"name": "app"}]
        }
    }));
    let classic = pod(serde_json::json!({
        "metadata": {"name": "a", "namespace": "shop"},
        "spec": {"containers": [{"name": "remora-proxy"}, {"name": "app"}]}
    }));
    assert!(!has_proxy(&plain));
    assert!(has_proxy(&native));
    assert!(has_proxy(&classic));
}

#[test]
fn pods_the_injector_leaves_alone_are_not_counted() {
    let base = serde_json::json!({
        "metadata": {"name": "a", "namespace": "shop"},
        "spec": {"containers": [{"name": "app"}]}
    });
    assert!(should_have_proxy(&pod(base.clone())));
    let mut disabled = base.clone();
    disabled["metadata"]["annotations"] = serde_json::json!({"remora.io/inject": "disabled"});
    assert!(!should_have_proxy(&pod(disabled)));
    let mut host = base.clone();
    host["spec"]["hostNetwork"] = true.into();
    assert!(!should_have_proxy(&pod(host)));
    let mut done = base.clone();
    done["status"] = serde_json::json!({"phase": "Succeeded"});
    assert!(!should_have_proxy(&pod(done)));
    let mut leaving = base;
    leaving["metadata"]["deletionTimestamp"] = "2025-01-01T00:00:00Z".into();
    assert!(!should_have_proxy(&pod(leaving)));
}

fn hook(value: serde_json::Value) -> MutatingWebhook {
    serde_json::from_value(value).unwrap()
}

#[test]
fn a_webhook_needs_its_ca_bundle_and_this_namespace_service() {
    let good = serde_json::json!({
        "name": "inject.remora.dev",
        "clientConfig": {
            "service": {"name": "remora-webhook", "namespace": "remora-system", "path": "/inject", "port": 443},
            "caBundle": "LS0tLS1CRUdJTg=="
        },
        "failurePolicy": "Fail",
        "sideEffects": "None",
        "admissionReviewVersions": ["v1"]
    });
    let mut report = Report::default();
    judge_webhook(&hook(good.clone()), "remora-system", &mut report);
    assert_eq!(report.items[0].verdict, Verdict::Ok, "{report}");

    let mut no_ca = good.clone();
    no_ca["clientConfig"]
        .as_object_mut()
        .unwrap()
        .remove("caBundle");
    let mut report = Report::default();
    judge_webhook(&hook(no_ca), "remora-system", &mut report);
    assert_eq!(report.items[0].verdict, Verdict::Fail);
    assert!(report.items[0].detail.contains("no caBundle"), "{report}");

    let mut report = Report::default();
    judge_webhook(&hook(good.clone()), "mesh", &mut report);
    assert_eq!(
        report.items[0].verdict,
        Verdict::Fail,
        "another namespace's service"
    );

    let mut ignore = good;
    ignore["failurePolicy"] = "Ignore".into();
    let mut report = Report::default();
    judge_webhook(&hook(ignore), "remora-system", &mut report);
    assert_eq!(report.items[0].verdict, Verdict::Warn);
    assert_eq!(report.exit(), crate::client::Exit::Ok, "a warning passes");
}

#[test]
fn the_report_fails_on_a_fail_and_says_how_many() {
    let mut report = Report::default();
    report.ok("CRD a", "installed");
    report.warn("CRD b", "not installed");
    assert_eq!(report.exit(), crate::client::Exit::Ok);
    assert!(report.to_string().ends_with("kubernetes: ok (1 warning)\n"));
    report.fail("pod shop/web", "no proxy");
    assert_eq!(report.exit(), crate::client::Exit::Failed);
    let text = report.to_string();
    assert!(text.contains("FAIL  pod shop/web: no proxy\n"), "{text}");
    assert!(
        text.ends_with("kubernetes: 1 problem, 1 warning\n"),
        "{text}"
    );
}

fn deployment(args: serde_json::Value) -> k8s_openapi::api::apps::v1::Deployment {
    serde_json::from_value(serde_json::json!({
        "metadata": {"name": "remora", "namespace": "remora-system"},
        "spec": {
            "selector": {"matchLabels": {"app.kubernetes.io/name": "remora"}},
            "template": {"spec": {"containers": [
                {"name": "remora", "command": ["remora"], "args": args}
            ]}}
        }
    }))
    .unwrap()
}

#[test]
fn an_operator_ca_is_seen_in_the_deployment_args_either_way() {
    use super::ca_secret::gives_ca_cert;
    assert!(!gives_ca_cert(&deployment(serde_json::json!([
        "control",
        "--kubernetes"
    ]))));
    assert!(gives_ca_cert(&deployment(serde_json::json!([
        "control",
        "--ca-cert=/etc/remora/ca/tls.crt"
    ]))));
    assert!(gives_ca_cert(&deployment(serde_json::json!([
        "control",
        "--ca-cert",
        "/etc/ca.crt"
    ]))));
    // --ca-bundle alone is not a CA.
    assert!(!gives_ca_cert(&deployment(serde_json::json!([
        "--ca-bundle=/x"
    ]))));
}
