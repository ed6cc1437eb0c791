//! `remora check --kubernetes` against the API server double, driven by the
//! real kubectl: an empty cluster names the missing CRDs; an installation made
//! with `remora install | kubectl apply -f -` is checked item by item, and the
//! pods that should have a proxy and don't are named; an API server that
//! cannot be reached is exit 3.

use std::process::{Command, Output};

use remora_tests::harness::{bin_path, run_with_stdin};
use remora_tests::kube::KubeDouble;

fn remora(args: &[&str], stdin: &str) -> Output {
    run_with_stdin(Command::new(bin_path("remora").unwrap()).args(args), stdin)
}

/// `remora check --kubernetes` against the double: (exit code, stdout).
fn check(kube: &KubeDouble) -> (i32, String) {
    let kubeconfig = kube.kubeconfig().to_str().unwrap().to_owned();
    let out = remora(&["check", "--kubernetes", "--kubeconfig", &kubeconfig], "");
    let stdout = String::from_utf8(out.stdout).unwrap();
    let code = out.status.code().expect("exited, not killed");
    if code != 0 && code != 1 {
        eprintln!("stderr: {}", String::from_utf8_lossy(&out.stderr));
    }
    (code, stdout)
}

fn stdout_of(out: Output) -> String {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// The line about `subject`, e.g. `pod shop/plain`.
fn line<'t>(report: &'t str, subject: &str) -> Option<&'t str> {
    report
        .lines()
        .find(|l| l.get(6..).is_some_and(|rest| rest.starts_with(subject)))
}

#[test]
fn an_empty_cluster_fails_naming_the_missing_crds() {
    let kube = KubeDouble::start();
    let (code, report) = check(&kube);
    assert_eq!(code, 1, "{report}");
    for crd in [
        "meshtlses.policy.remora.dev",
        "authorizationpolicies.policy.remora.dev",
        "trafficpolicies.policy.remora.dev",
    ] {
        let found = line(&report, &format!("CRD {crd}")).unwrap_or_else(|| panic!("{report}"));
        assert!(
            found.starts_with("FAIL") && found.contains("not installed"),
            "{found}"
        );
        assert!(
            found.contains("remora install | kubectl apply -f -"),
            "{found}"
        );
    }
    let namespace = line(&report, "namespace remora-system").unwrap();
    assert!(namespace.starts_with("FAIL"), "{namespace}");
    let webhook = line(&report, "mutatingwebhookconfiguration remora-injector").unwrap();
    assert!(webhook.starts_with("FAIL"), "{webhook}");
}

const SHOP: &str = r#"apiVersion: v1
kind: Namespace
metadata:
  name: shop
  labels: {remora.io/inject: enabled}
---
apiVersion: v1
kind: Pod
metadata:
  name: plain
  namespace: shop
  ownerReferences:
  - {apiVersion: apps/v1, kind: ReplicaSet, name: plain-5d8f, uid: 6f1e8a52-3c1d-4b7e-9a51-2d1b7c3f0a11}
spec:
  containers: [{name: app, image: example/app:1}]
---
apiVersion: v1
kind: Pod
metadata:
  name: labelled
  namespace: default
  labels: {remora.io/inject: enabled}
spec:
  containers: [{name: app, image: example/app:1}]
---
apiVersion: v1
kind: Pod
metadata: {name: not-opted-in, namespace: default}
spec:
  containers: [{name: app, image: example/app:1}]
"#;

const INJECTED: &str = r#"apiVersion: v1
kind: Pod
metadata: {name: injected, namespace: shop}
spec:
  containers: [{name: app, image: example/app:1}]
"#;

/// What the control plane itself would add once running: the webhook's CA,
/// the Services' endpoints, the Deployment's available replica.
const CA_BUNDLE: &str = "LS0tLS1CRUdJTiBDRVJUSUZJQ0FURS0tLS0tCg==";

fn endpoint_slice(service: &str) -> String {
    format!(
        r#"apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: {service}-abcde
  namespace: remora-system
  labels: {{kubernetes.io/service-name: {service}}}
addressType: IPv4
endpoints:
- addresses: [10.0.0.5]
  conditions: {{ready: true}}
ports:
- {{name: api, port: 7780, protocol: TCP}}
"#
    )
}

#[test]
fn an_installation_is_checked_and_pods_without_a_proxy_are_named() {
    let kube = KubeDouble::start();
    // The pods first: once the webhook is installed, creating a pod in an
    // opted-in namespace would call it, and no injector runs here.
    kube.kubectl_stdin(&["apply", "-f", "-"], SHOP);
    let bundle = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(
        bundle.path(),
        "-----BEGIN CERTIFICATE-----\nMA==\n-----END CERTIFICATE-----\n",
    )
    .unwrap();
    let bundle_path = bundle.path().display().to_string();
    let injected = stdout_of(remora(
        &["inject", "--trust-bundle", &bundle_path, "-f", "-"],
        INJECTED,
    ));
    kube.kubectl_stdin(&["apply", "-f", "-"], &injected);

    let install = stdout_of(remora(&["install"], ""));
    let with_ca = install.replace(
        "    clientConfig:\n",
        &format!("    clientConfig:\n      caBundle: {CA_BUNDLE}\n"),
    );
    assert_ne!(with_ca, install, "the webhooks' clientConfig was found");
    kube.kubectl_stdin(&["apply", "-f", "-"], &with_ca);
    for service in ["remora", "remora-webhook"] {
        kube.kubectl_stdin(&["apply", "-f", "-"], &endpoint_slice(service));
    }

    // Installed, but the control plane has not started.
    let (code, report) = check(&kube);
    assert_eq!(code, 1, "{report}");
    let deployment = line(&report, "deployment remora-system/remora").unwrap();
    assert!(
        deployment.starts_with("FAIL") && deployment.contains("0/1"),
        "{deployment}"
    );

    kube.kubectl_ok(&[
        "patch",
        "deployment",
        "remora",
        "-n",
        "remora-system",
        "--subresource=status",
        "--type=merge",
        "-p",
        r#"{"status":{"replicas":1,"readyReplicas":1,"availableReplicas":1}}"#,
    ]);
    let (code, report) = check(&kube);
    assert_eq!(code, 1, "{report}");
    for subject in [
        "CRD meshtlses.policy.remora.dev",
        "CRD authorizationpolicies.policy.remora.dev",
        "CRD trafficpolicies.policy.remora.dev",
        "namespace remora-system",
        "deployment remora-system/remora",
        "service remora-system/remora",
        "service remora-system/remora-webhook",
        "webhook inject.remora.dev",
        "webhook inject-pod.remora.dev",
    ] {
        let found = line(&report, subject).unwrap_or_else(|| panic!("{subject}: {report}"));
        assert!(found.starts_with("OK"), "{found}");
    }
    let plain = line(&report, "pod shop/plain").unwrap_or_else(|| panic!("{report}"));
    assert!(plain.starts_with("FAIL"), "{plain}");
    assert!(
        plain.contains("(ReplicaSet plain-5d8f)"),
        "the owner: {plain}"
    );
    assert!(plain.contains("remora-proxy"), "{plain}");
    let labelled = line(&report, "pod default/labelled").unwrap_or_else(|| panic!("{report}"));
    assert!(labelled.starts_with("FAIL"), "{labelled}");
    assert!(!report.contains("shop/injected"), "has its proxy: {report}");
    assert!(!report.contains("not-opted-in"), "not opted in: {report}");

    // The two pods replaced by injected ones (here: gone), nothing is wrong.
    kube.kubectl_ok(&["delete", "pod", "plain", "-n", "shop"]);
    kube.kubectl_ok(&["delete", "pod", "labelled", "-n", "default"]);
    let (code, report) = check(&kube);
    let pods = line(&report, "pods").unwrap_or_else(|| panic!("{report}"));
    assert!(
        pods.starts_with("OK") && pods.contains("all 1 pod"),
        "{pods}"
    );
    assert_eq!(code, 0, "{report}");
}

#[test]
fn an_api_server_that_cannot_be_reached_is_exit_3() {
    let kube = KubeDouble::start();
    kube.stop();
    let (code, report) = check(&kube);
    assert_eq!(code, 3, "{report}");
}
