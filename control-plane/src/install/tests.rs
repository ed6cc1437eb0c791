use serde::Deserialize;
use serde_yaml_ng::Value;

use super::*;

const VERSION: &str = env!("CARGO_PKG_VERSION");

fn documents(text: &str) -> Vec<Value> {
    serde_yaml_ng::Deserializer::from_str(text)
        .map(|d| Value::deserialize(d).unwrap())
        .filter(|v| !v.is_null())
        .collect()
}

fn str_at<'v>(v: &'v Value, path: &[&str]) -> Option<&'v str> {
    path.iter().try_fold(v, |v, key| v.get(*key))?.as_str()
}

fn one<'v>(docs: &'v [Value], kind: &str, name: &str) -> &'v Value {
    docs.iter()
        .find(|d| {
            str_at(d, &["kind"]) == Some(kind) && str_at(d, &["metadata", "name"]) == Some(name)
        })
        .unwrap_or_else(|| panic!("no {kind} {name}"))
}

const CLUSTER_SCOPED: &[&str] = &[
    "Namespace",
    "CustomResourceDefinition",
    "ClusterRole",
    "ClusterRoleBinding",
    "MutatingWebhookConfiguration",
];

#[test]
fn every_namespaced_object_is_in_the_namespace_as_kustomize_sets_it() {
    let docs = documents(&render(&InstallOptions::new(VERSION)).unwrap());
    let kinds: Vec<_> = docs.iter().map(|d| str_at(d, &["kind"]).unwrap()).collect();
    assert_eq!(
        kinds,
        [
            "Namespace",
            "CustomResourceDefinition",
            "CustomResourceDefinition",
            "CustomResourceDefinition",
            "ServiceAccount",
            "ClusterRole",
            "ClusterRoleBinding",
            "Role",
            "RoleBinding",
            "Service",
            "Service",
            "Deployment",
            "MutatingWebhookConfiguration",
        ],
        "the kustomization's order"
    );
    for doc in &docs {
        let kind = str_at(doc, &["kind"]).unwrap();
        let namespace = str_at(doc, &["metadata", "namespace"]);
        if CLUSTER_SCOPED.contains(&kind) {
            assert_eq!(namespace, None, "{kind} is cluster-scoped");
        } else {
            assert_eq!(namespace, Some("remora-system"), "{kind}");
        }
    }
}

#[test]
fn the_base_is_written_for_this_version() {
    let text = render(&InstallOptions::new(VERSION)).unwrap();
    let deployment = base::FILES
        .iter()
        .find(|(name, _)| *name == "deployment.yaml")
        .unwrap()
        .1;
    // `remora install` with no flags must print deploy/base as it is.
    assert!(deployment.contains(&format!("image: remora:{VERSION}\n")));
    assert!(deployment.contains(&format!("value: remora-proxy:{VERSION}\n")));
    let unchanged: Vec<_> = base::in_order()
        .unwrap()
        .iter()
        .map(|(_, text)| *text)
        .collect();
    assert_eq!(text, unchanged.join("---\n"));
}

#[test]
fn every_file_of_the_kustomization_is_built_in_and_listed() {
    let listed: Vec<_> = base::in_order().unwrap().iter().map(|(n, _)| *n).collect();
    let built_in: Vec<_> = base::FILES.iter().map(|(n, _)| *n).collect();
    assert_eq!(listed, built_in);
}

#[test]
fn the_namespace_flag_moves_everything_that_names_it() {
    let options = InstallOptions {
        namespace: "mesh".into(),
        ..InstallOptions::new(VERSION)
    };
    let text = render(&options).unwrap();
    assert!(!text.contains("remora-system"), "{text}");
    let docs = documents(&text);
    one(&docs, "Namespace", "mesh");
    let binding = one(&docs, "ClusterRoleBinding", "remora");
    assert_eq!(
        binding["subjects"][0]["namespace"].as_str(),
        Some("mesh"),
        "the role binding's subject"
    );
    // The CA's Secret is read and made in the control plane's namespace.
    let role = one(&docs, "Role", "remora-ca");
    assert_eq!(str_at(role, &["metadata", "namespace"]), Some("mesh"));
    let ca_binding = one(&docs, "RoleBinding", "remora-ca");
    assert_eq!(str_at(ca_binding, &["metadata", "namespace"]), Some("mesh"));
    assert_eq!(
        ca_binding["subjects"][0]["namespace"].as_str(),
        Some("mesh"),
        "the CA role binding's subject"
    );
    let deployment = one(&docs, "Deployment", "remora");
    let args = &deployment["spec"]["template"]["spec"]["containers"][0]["args"];
    let args: Vec<_> = args
        .as_sequence()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert!(
        args.contains(&"--xds-server-name=remora.mesh.svc"),
        "{args:?}"
    );
    let webhook = one(&docs, "MutatingWebhookConfiguration", "remora-injector");
    for hook in webhook["webhooks"].as_sequence().unwrap() {
        assert_eq!(
            str_at(hook, &["clientConfig", "service", "namespace"]),
            Some("mesh")
        );
        let exclusion = hook["namespaceSelector"]["matchExpressions"]
            .as_sequence()
            .unwrap()
            .iter()
            .find(|e| e["key"].as_str() == Some("kubernetes.io/metadata.name"))
            .unwrap();
        assert_eq!(exclusion["operator"].as_str(), Some("NotIn"));
        assert_eq!(exclusion["values"][0].as_str(), Some("mesh"));
    }
}

#[test]
fn the_control_plane_may_read_only_its_ca_secret_and_no_secret_cluster_wide() {
    let docs = documents(&render(&InstallOptions::new(VERSION)).unwrap());
    let cluster_role = one(&docs, "ClusterRole", "remora");
    for rule in cluster_role["rules"].as_sequence().unwrap() {
        let resources = rule["resources"].as_sequence().unwrap();
        assert!(
            !resources.iter().any(|r| r.as_str() == Some("secrets")),
            "{rule:?}"
        );
    }
    let role = one(&docs, "Role", "remora-ca");
    let rules = role["rules"].as_sequence().unwrap();
    let get = rules
        .iter()
        .find(|r| r["verbs"][0].as_str() == Some("get"))
        .unwrap();
    assert_eq!(get["resourceNames"][0].as_str(), Some("remora-ca"));
    assert_eq!(get["verbs"].as_sequence().unwrap().len(), 1);
    for rule in rules {
        assert_eq!(rule["resources"][0].as_str(), Some("secrets"), "{rule:?}");
        let verbs: Vec<_> = rule["verbs"]
            .as_sequence()
            .unwrap()
            .iter()
            .filter_map(Value::as_str)
            .collect();
        assert!(verbs == ["get"] || verbs == ["create"], "{verbs:?}");
    }
    let binding = one(&docs, "RoleBinding", "remora-ca");
    assert_eq!(str_at(binding, &["roleRef", "kind"]), Some("Role"));
    assert_eq!(str_at(binding, &["roleRef", "name"]), Some("remora-ca"));
    assert_eq!(binding["subjects"][0]["name"].as_str(), Some("remora"));
}

#[test]
fn the_image_flags_set_both_images() {
    let options = InstallOptions {
        image: "registry.example.com/remora@sha256:abc".into(),
        proxy_image: "registry.example.com/remora-proxy:1.2".into(),
        ..InstallOptions::new(VERSION)
    };
    let docs = documents(&render(&options).unwrap());
    let container =
        &one(&docs, "Deployment", "remora")["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(
        container["image"].as_str(),
        Some("registry.example.com/remora@sha256:abc")
    );
    let proxy = container["env"]
        .as_sequence()
        .unwrap()
        .iter()
        .find(|e| e["name"].as_str() == Some("REMORA_PROXY_IMAGE"))
        .unwrap();
    assert_eq!(
        proxy["value"].as_str(),
        Some("registry.example.com/remora-proxy:1.2")
    );
}

#[test]
fn options_that_would_write_yaml_of_their_own_are_refused() {
    let long = "a".repeat(64);
    for namespace in [
        "",
        "Shop",
        "shop_1",
        "-shop",
        "a\nkind: Secret",
        long.as_str(),
    ] {
        let options = InstallOptions {
            namespace: namespace.to_owned(),
            ..InstallOptions::new(VERSION)
        };
        assert!(
            matches!(render(&options), Err(InstallError::Namespace { .. })),
            "{namespace:?}"
        );
    }
    for image in ["", "remora: 1", "remora\n  command: [sh]", "#x", "a b"] {
        let options = InstallOptions {
            image: image.to_owned(),
            ..InstallOptions::new(VERSION)
        };
        assert!(
            matches!(
                render(&options),
                Err(InstallError::Image {
                    flag: "--image",
                    ..
                })
            ),
            "{image:?}"
        );
    }
}
