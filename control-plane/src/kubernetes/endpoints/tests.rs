//! The facts read from real API objects, and the endpoints computed from them.

use std::collections::BTreeMap;
use std::net::IpAddr;

use super::compute::{compute, Cluster, Computed, Reason};
use super::facts::{self, Conditions, Inbound, PodFacts, ServiceFacts, SliceEndpoint, SliceFacts};
use crate::resources::ObjectKey;
use crate::translate::Origin;

const TD: &str = "cluster.local";

fn key(name: &str) -> ObjectKey {
    ObjectKey::new("shop", name)
}

fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

/// An injected pod labelled `app: APP`, account `sa`, at `ip`, inbound 7002.
fn pod(app: &str, sa: &str, ip: &str) -> PodFacts {
    PodFacts {
        inbound: Inbound::Port(7002),
        labels: labels(&[("app", app), ("pod-template-hash", "abc")]),
        service_account: sa.to_owned(),
        ips: vec![ip.parse().unwrap()],
        finished: false,
        deleting: false,
    }
}

fn ready() -> Conditions {
    Conditions::default()
}

fn terminating(serving: bool) -> Conditions {
    Conditions {
        ready: false,
        serving,
        terminating: true,
    }
}

fn endpoint(pod: &str, ip: &str, conditions: Conditions) -> SliceEndpoint {
    SliceEndpoint {
        address: Some(ip.parse().unwrap()),
        pod: Some(key(pod)),
        conditions,
    }
}

/// A cluster in namespace shop: Service orders selecting `app: orders`.
#[derive(Default)]
struct World {
    pods: BTreeMap<ObjectKey, PodFacts>,
    services: BTreeMap<ObjectKey, ServiceFacts>,
    slices: BTreeMap<ObjectKey, SliceFacts>,
}

impl World {
    fn orders() -> Self {
        let mut w = World::default();
        w.services.insert(
            key("orders"),
            ServiceFacts {
                selector: Some(labels(&[("app", "orders")])),
                ..Default::default()
            },
        );
        w
    }

    fn pod(mut self, name: &str, facts: PodFacts) -> Self {
        self.pods.insert(key(name), facts);
        self
    }

    fn slice(mut self, name: &str, service: &str, endpoints: Vec<SliceEndpoint>) -> Self {
        self.slices.insert(
            key(name),
            SliceFacts {
                service: Some(service.to_owned()),
                endpoints,
            },
        );
        self
    }

    fn compute(&self) -> Computed {
        compute(
            Cluster {
                pods: &self.pods,
                services: &self.services,
                slices: &self.slices,
            },
            TD,
        )
    }

    /// (node_id, address, identity) of every endpoint.
    fn endpoints(&self) -> Vec<(String, String, String)> {
        self.compute()
            .endpoints
            .into_iter()
            .map(|e| {
                assert_eq!(e.origin, Origin::Cluster);
                assert_eq!(e.peer, None);
                (
                    e.node_id,
                    e.address.to_string(),
                    e.identity.unwrap_or_default(),
                )
            })
            .collect()
    }

    /// (pod, reason) of every skipped endpoint.
    fn skipped(&self) -> Vec<(String, Reason)> {
        self.compute()
            .skipped
            .into_iter()
            .map(|s| (s.endpoint, s.reason))
            .collect()
    }
}

fn ep(pod: &str, address: &str, sa: &str) -> (String, String, String) {
    (
        format!("pod/shop/{pod}"),
        address.to_owned(),
        format!("spiffe://cluster.local/ns/shop/sa/{sa}"),
    )
}

#[test]
fn a_selected_injected_pod_serves_at_its_ip_on_the_proxys_inbound_port() {
    let mut canary = pod("orders", "orders-canary", "10.0.0.3");
    canary.inbound = Inbound::Port(7102);
    let w = World::orders()
        .pod("orders-a", pod("orders", "orders", "10.0.0.2"))
        .pod("orders-b", canary)
        .slice(
            "orders-x1",
            "orders",
            vec![
                endpoint("orders-a", "10.0.0.2", ready()),
                endpoint("orders-b", "10.0.0.3", ready()),
            ],
        );
    assert_eq!(
        w.endpoints(),
        [
            ep("orders-a", "10.0.0.2:7002", "orders"),
            // Its own account: identity is the pod's, whatever the Service's name.
            ep("orders-b", "10.0.0.3:7102", "orders-canary"),
        ]
    );
    assert!(w.skipped().is_empty());
}

#[test]
fn the_endpoints_belong_to_the_service_the_slice_names() {
    let w = World::orders()
        .pod("orders-a", pod("orders", "orders", "10.0.0.2"))
        .slice(
            "orders-x1",
            "orders",
            vec![endpoint("orders-a", "10.0.0.2", ready())],
        );
    let e = &w.compute().endpoints[0];
    assert_eq!(e.service, key("orders"));
}

#[test]
fn a_pod_the_selector_does_not_select_is_no_endpoint() {
    let w = World::orders()
        .pod("orders-a", pod("orders", "orders", "10.0.0.2"))
        .pod("intruder", pod("web", "orders", "10.0.0.9"))
        .slice(
            "orders-x1",
            "orders",
            vec![
                endpoint("orders-a", "10.0.0.2", ready()),
                endpoint("intruder", "10.0.0.9", ready()),
            ],
        );
    assert_eq!(w.endpoints(), [ep("orders-a", "10.0.0.2:7002", "orders")]);
    assert_eq!(
        w.skipped(),
        [("shop/intruder".to_owned(), Reason::NotSelected)]
    );
}

#[test]
fn every_label_of_the_selector_must_match() {
    let mut w = World::orders().pod("orders-a", pod("orders", "orders", "10.0.0.2"));
    w.services.insert(
        key("orders"),
        ServiceFacts {
            selector: Some(labels(&[("app", "orders"), ("tier", "backend")])),
            ..Default::default()
        },
    );
    let w = w.slice(
        "orders-x1",
        "orders",
        vec![endpoint("orders-a", "10.0.0.2", ready())],
    );
    assert!(w.endpoints().is_empty());
    let mut p = pod("orders", "orders", "10.0.0.2");
    p.labels.insert("tier".into(), "backend".into());
    let w = w.pod("orders-a", p);
    assert_eq!(w.endpoints().len(), 1);
}

#[test]
fn a_service_without_a_selector_has_no_endpoints() {
    for selector in [None, Some(BTreeMap::new())] {
        let mut w = World::orders().pod("orders-a", pod("orders", "orders", "10.0.0.2"));
        w.services.insert(
            key("orders"),
            ServiceFacts {
                selector,
                ..Default::default()
            },
        );
        let w = w.slice(
            "orders-x1",
            "orders",
            vec![endpoint("orders-a", "10.0.0.2", ready())],
        );
        assert!(w.endpoints().is_empty());
        assert_eq!(
            w.skipped(),
            [("shop/orders-a".to_owned(), Reason::NoSelector)]
        );
    }
}

#[test]
fn a_pod_without_a_proxy_is_no_endpoint() {
    let mut plain = pod("orders", "orders", "10.0.0.2");
    plain.inbound = Inbound::NotInjected;
    let w = World::orders()
        .pod("orders-a", plain)
        .pod("orders-b", pod("orders", "orders", "10.0.0.3"))
        .slice(
            "orders-x1",
            "orders",
            vec![
                endpoint("orders-a", "10.0.0.2", ready()),
                endpoint("orders-b", "10.0.0.3", ready()),
            ],
        );
    assert_eq!(w.endpoints(), [ep("orders-b", "10.0.0.3:7002", "orders")]);
    // orders has a pod with a proxy: the one without is worth telling.
    assert_eq!(
        w.skipped(),
        [("shop/orders-a".to_owned(), Reason::NotInjected)]
    );
}

#[test]
fn a_service_outside_the_mesh_is_not_told_about() {
    // No pod of it has a proxy (most of a cluster), or its endpoints name no
    // pod (default/kubernetes): no endpoints, and nothing to warn about.
    let mut plain = pod("orders", "orders", "10.0.0.2");
    plain.inbound = Inbound::NotInjected;
    let no_target = SliceEndpoint {
        pod: None,
        ..endpoint("x", "10.0.0.7", ready())
    };
    let w = World::orders().pod("orders-a", plain).slice(
        "orders-x1",
        "orders",
        vec![endpoint("orders-a", "10.0.0.2", ready()), no_target],
    );
    assert!(w.endpoints().is_empty());
    assert!(w.skipped().is_empty(), "{:?}", w.skipped());
}

#[test]
fn a_bad_inbound_port_annotation_is_no_endpoint_and_says_the_value() {
    let mut bad = pod("orders", "orders", "10.0.0.2");
    bad.inbound = Inbound::Invalid("http".into());
    let w = World::orders().pod("orders-a", bad).slice(
        "orders-x1",
        "orders",
        vec![endpoint("orders-a", "10.0.0.2", ready())],
    );
    assert!(w.endpoints().is_empty());
    let skipped = w.skipped();
    assert_eq!(skipped[0].1, Reason::InvalidInboundPort("http".into()));
    let message = skipped[0].1.to_string();
    assert!(message.contains("remora.io/inbound-port"), "{message}");
    assert!(message.contains("`http`"), "{message}");
}

#[test]
fn an_address_that_is_not_the_pods_is_no_endpoint() {
    // A slice (written by anyone with slice rights) claiming a selected pod
    // for someone else's address.
    let w = World::orders()
        .pod("orders-a", pod("orders", "orders", "10.0.0.2"))
        .slice(
            "orders-x1",
            "orders",
            vec![endpoint("orders-a", "10.0.0.66", ready())],
        );
    assert!(w.endpoints().is_empty());
    let ip: IpAddr = "10.0.0.66".parse().unwrap();
    assert_eq!(
        w.skipped(),
        [("shop/orders-a".to_owned(), Reason::AddressNotPods(ip))]
    );
}

#[test]
fn any_of_a_dual_stack_pods_ips_is_its_address() {
    let mut dual = pod("orders", "orders", "10.0.0.2");
    dual.ips.push("fd00::2".parse().unwrap());
    let w = World::orders().pod("orders-a", dual).slice(
        "orders-v6",
        "orders",
        vec![endpoint("orders-a", "fd00::2", ready())],
    );
    assert_eq!(w.endpoints(), [ep("orders-a", "[fd00::2]:7002", "orders")]);
}

#[test]
fn a_dual_stack_pod_in_a_slice_per_family_is_one_endpoint_at_its_first_ips_family() {
    let mut v4_first = pod("orders", "orders", "10.0.0.2");
    v4_first.ips.push("fd00::2".parse().unwrap());
    let mut v6_first = pod("orders", "orders", "fd00::3");
    v6_first.ips.push("10.0.0.3".parse().unwrap());
    let w = World::orders()
        .pod("orders-a", v4_first)
        .pod("orders-b", v6_first)
        // The v6 slice sorts first: the order of slices decides nothing.
        .slice(
            "orders-a6",
            "orders",
            vec![
                endpoint("orders-a", "fd00::2", ready()),
                endpoint("orders-b", "fd00::3", ready()),
            ],
        )
        .slice(
            "orders-b4",
            "orders",
            vec![
                endpoint("orders-a", "10.0.0.2", ready()),
                endpoint("orders-b", "10.0.0.3", ready()),
            ],
        );
    assert_eq!(
        w.endpoints(),
        [
            ep("orders-a", "10.0.0.2:7002", "orders"),
            ep("orders-b", "[fd00::3]:7002", "orders"),
        ]
    );
    // Either IP finds the pod's endpoint (a leaving proxy connects from one).
    let ip = |s: &str| s.parse::<IpAddr>().unwrap();
    assert_eq!(
        w.compute().aliases,
        BTreeMap::from([
            (ip("10.0.0.3"), ip("fd00::3")),
            (ip("fd00::2"), ip("10.0.0.2")),
        ])
    );
}

#[test]
fn a_service_that_lists_its_accounts_is_served_only_by_pods_running_as_one() {
    // Anyone who may create pods in shop can label one `app: orders`.
    let mut w = World::orders()
        .pod("orders-a", pod("orders", "orders", "10.0.0.2"))
        .pod("intruder", pod("orders", "intruder", "10.0.0.9"));
    w.services.insert(
        key("orders"),
        ServiceFacts {
            selector: Some(labels(&[("app", "orders")])),
            service_accounts: Some(vec!["orders".into()]),
        },
    );
    let w = w.slice(
        "orders-x1",
        "orders",
        vec![
            endpoint("orders-a", "10.0.0.2", ready()),
            endpoint("intruder", "10.0.0.9", ready()),
        ],
    );
    assert_eq!(w.endpoints(), [ep("orders-a", "10.0.0.2:7002", "orders")]);
    let skipped = w.skipped();
    assert_eq!(
        skipped,
        [(
            "shop/intruder".to_owned(),
            Reason::AccountNotListed {
                account: "intruder".into(),
                listed: vec!["orders".into()],
            }
        )]
    );
    // What the warning says names the account and the annotation.
    let message = skipped[0].1.to_string();
    assert!(message.contains("intruder"), "{message}");
    assert!(message.contains("remora.io/service-accounts"), "{message}");
    assert!(skipped[0].1.is_warning());
}

#[test]
fn without_the_accounts_annotation_any_selected_pods_account_serves() {
    let w = World::orders()
        .pod("orders-a", pod("orders", "orders-canary", "10.0.0.2"))
        .slice(
            "orders-x1",
            "orders",
            vec![endpoint("orders-a", "10.0.0.2", ready())],
        );
    assert_eq!(
        w.endpoints(),
        [ep("orders-a", "10.0.0.2:7002", "orders-canary")]
    );
}

#[test]
fn a_target_that_is_no_pod_of_the_services_namespace_is_no_endpoint() {
    let mut w = World::orders().pod("orders-a", pod("orders", "orders", "10.0.0.2"));
    w.pods.insert(
        ObjectKey::new("other", "orders-a"),
        pod("orders", "orders", "10.0.0.2"),
    );
    let elsewhere = SliceEndpoint {
        pod: Some(ObjectKey::new("other", "orders-a")),
        ..endpoint("orders-a", "10.0.0.2", ready())
    };
    let no_target = SliceEndpoint {
        pod: None,
        ..endpoint("orders-a", "10.0.0.7", ready())
    };
    let w = w.slice(
        "orders-x1",
        "orders",
        vec![
            elsewhere,
            no_target,
            endpoint("orders-a", "10.0.0.2", ready()),
        ],
    );
    assert_eq!(w.endpoints(), [ep("orders-a", "10.0.0.2:7002", "orders")]);
    assert_eq!(
        w.skipped(),
        [
            ("10.0.0.7".to_owned(), Reason::NoPod),
            ("other/orders-a".to_owned(), Reason::OtherNamespace),
        ]
    );
}

#[test]
fn a_pod_not_known_yet_or_finished_is_no_endpoint_and_no_warning() {
    let mut done = pod("orders", "orders", "10.0.0.3");
    done.finished = true;
    let w = World::orders().pod("orders-b", done).slice(
        "orders-x1",
        "orders",
        vec![
            endpoint("orders-a", "10.0.0.2", ready()),
            endpoint("orders-b", "10.0.0.3", ready()),
        ],
    );
    assert!(w.endpoints().is_empty());
    let skipped = w.skipped();
    assert_eq!(
        skipped,
        [
            ("shop/orders-a".to_owned(), Reason::UnknownPod),
            ("shop/orders-b".to_owned(), Reason::Finished),
        ]
    );
    assert!(skipped.iter().all(|(_, r)| !r.is_warning()));
    assert!(Reason::NotSelected.is_warning());
}

#[test]
fn a_slice_of_an_unknown_service_or_without_its_label_gives_nothing() {
    let mut w = World::orders()
        .pod("orders-a", pod("orders", "orders", "10.0.0.2"))
        .slice(
            "ghost-x1",
            "ghost",
            vec![endpoint("orders-a", "10.0.0.2", ready())],
        );
    w.slices.insert(
        key("unlabelled"),
        SliceFacts {
            service: None,
            endpoints: vec![endpoint("orders-a", "10.0.0.2", ready())],
        },
    );
    assert!(w.endpoints().is_empty());
    assert!(w.skipped().is_empty());
}

#[test]
fn terminating_endpoints_get_no_new_requests_while_others_are_ready() {
    let w = World::orders()
        .pod("orders-a", pod("orders", "orders", "10.0.0.2"))
        .pod("orders-b", pod("orders", "orders", "10.0.0.3"))
        .pod("orders-c", pod("orders", "orders", "10.0.0.4"))
        .slice(
            "orders-x1",
            "orders",
            vec![
                endpoint("orders-a", "10.0.0.2", ready()),
                endpoint("orders-b", "10.0.0.3", terminating(true)),
                endpoint("orders-c", "10.0.0.4", terminating(false)),
            ],
        );
    assert_eq!(w.endpoints(), [ep("orders-a", "10.0.0.2:7002", "orders")]);
}

#[test]
fn with_no_ready_endpoint_the_serving_terminating_ones_are_used() {
    let w = World::orders()
        .pod("orders-b", pod("orders", "orders", "10.0.0.3"))
        .pod("orders-c", pod("orders", "orders", "10.0.0.4"))
        .pod("orders-d", pod("orders", "orders", "10.0.0.5"))
        .slice(
            "orders-x1",
            "orders",
            vec![
                endpoint("orders-b", "10.0.0.3", terminating(true)),
                // Not serving any more: never.
                endpoint("orders-c", "10.0.0.4", terminating(false)),
                // Starting: not ready, not terminating.
                endpoint(
                    "orders-d",
                    "10.0.0.5",
                    Conditions {
                        ready: false,
                        serving: false,
                        terminating: false,
                    },
                ),
            ],
        );
    assert_eq!(w.endpoints(), [ep("orders-b", "10.0.0.3:7002", "orders")]);
}

#[test]
fn the_fallback_is_per_service() {
    let mut w = World::orders()
        .pod("orders-b", pod("orders", "orders", "10.0.0.3"))
        .pod("web-a", pod("web", "web", "10.0.0.8"))
        .pod("web-b", pod("web", "web", "10.0.0.9"));
    w.services.insert(
        key("web"),
        ServiceFacts {
            selector: Some(labels(&[("app", "web")])),
            ..Default::default()
        },
    );
    let w = w
        .slice(
            "orders-x1",
            "orders",
            vec![endpoint("orders-b", "10.0.0.3", terminating(true))],
        )
        .slice(
            "web-x1",
            "web",
            vec![
                endpoint("web-a", "10.0.0.8", ready()),
                endpoint("web-b", "10.0.0.9", terminating(true)),
            ],
        );
    // orders has no ready endpoint: its terminating one still serves; web
    // has one: its terminating one gets nothing new.
    assert_eq!(
        w.endpoints(),
        [
            ep("orders-b", "10.0.0.3:7002", "orders"),
            ep("web-a", "10.0.0.8:7002", "web"),
        ]
    );
}

#[test]
fn a_pod_being_deleted_is_terminating_before_its_slice_says_so() {
    let mut leaving = pod("orders", "orders", "10.0.0.3");
    leaving.deleting = true;
    let w = World::orders()
        .pod("orders-a", pod("orders", "orders", "10.0.0.2"))
        .pod("orders-b", leaving.clone())
        .slice(
            "orders-x1",
            "orders",
            vec![
                endpoint("orders-a", "10.0.0.2", ready()),
                endpoint("orders-b", "10.0.0.3", ready()),
            ],
        );
    assert_eq!(w.endpoints(), [ep("orders-a", "10.0.0.2:7002", "orders")]);
    // Alone, it still serves (as serving and terminating).
    let alone = World::orders().pod("orders-b", leaving).slice(
        "orders-x1",
        "orders",
        vec![endpoint("orders-b", "10.0.0.3", ready())],
    );
    assert_eq!(alone.endpoints().len(), 1);
}

#[test]
fn a_pod_in_two_slices_is_one_endpoint() {
    let w = World::orders()
        .pod("orders-a", pod("orders", "orders", "10.0.0.2"))
        .slice(
            "orders-x1",
            "orders",
            vec![endpoint("orders-a", "10.0.0.2", ready())],
        )
        .slice(
            "orders-x2",
            "orders",
            vec![endpoint("orders-a", "10.0.0.2", ready())],
        );
    assert_eq!(w.endpoints().len(), 1);
}

#[test]
fn an_account_that_makes_no_spiffe_id_is_no_endpoint() {
    let w = World::orders()
        .pod("orders-a", pod("orders", "Not_A_Name", "10.0.0.2"))
        .slice(
            "orders-x1",
            "orders",
            vec![endpoint("orders-a", "10.0.0.2", ready())],
        );
    assert!(w.endpoints().is_empty());
    assert!(matches!(w.skipped()[0].1, Reason::InvalidIdentity(_)));
}

// The facts, read from objects as the API server sends them.

fn from_json<T: serde::de::DeserializeOwned>(json: serde_json::Value) -> T {
    serde_json::from_value(json).unwrap()
}

#[test]
fn a_pods_facts_are_its_labels_account_ips_phase_and_proxy() {
    let p: k8s_openapi::api::core::v1::Pod = from_json(serde_json::json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {
            "name": "orders-a", "namespace": "shop",
            "labels": {"app": "orders"},
            "annotations": {"remora.io/injected": "0.1.0", "remora.io/inbound-port": "7102"},
            "deletionTimestamp": "2026-01-01T00:00:00Z"
        },
        "spec": {"serviceAccountName": "orders-canary", "containers": [{"name": "app"}]},
        "status": {"phase": "Running", "podIP": "10.0.0.2",
                   "podIPs": [{"ip": "10.0.0.2"}, {"ip": "fd00::2"}]}
    }));
    let (k, f) = facts::pod(&p).unwrap();
    assert_eq!(k, key("orders-a"));
    assert_eq!(f.inbound, Inbound::Port(7102));
    assert_eq!(f.labels, labels(&[("app", "orders")]));
    assert_eq!(f.service_account, "orders-canary");
    assert_eq!(
        f.ips,
        [
            "10.0.0.2".parse::<IpAddr>().unwrap(),
            "fd00::2".parse().unwrap()
        ]
    );
    assert!(!f.finished);
    assert!(f.deleting);
}

#[test]
fn a_pod_without_a_proxy_keeps_nothing_but_its_name() {
    let p: k8s_openapi::api::core::v1::Pod = from_json(serde_json::json!({
        "metadata": {"name": "db-0", "namespace": "shop", "labels": {"app": "db"}},
        "spec": {"containers": [{"name": "db"}]},
        "status": {"podIP": "10.0.0.5"}
    }));
    let (_, f) = facts::pod(&p).unwrap();
    assert_eq!(f.inbound, Inbound::NotInjected);
    assert!(f.labels.is_empty() && f.ips.is_empty());
}

#[test]
fn a_pods_defaults_are_the_default_account_and_port_and_only_podip() {
    let p: k8s_openapi::api::core::v1::Pod = from_json(serde_json::json!({
        "metadata": {"name": "orders-a", "namespace": "shop",
                     "annotations": {"remora.io/injected": "true"}},
        "spec": {"containers": [{"name": "app"}]},
        "status": {"podIP": "10.0.0.2", "phase": "Succeeded"}
    }));
    let (_, f) = facts::pod(&p).unwrap();
    assert_eq!(f.inbound, Inbound::Port(facts::DEFAULT_INBOUND_PORT));
    assert_eq!(f.service_account, "default");
    assert_eq!(f.ips, ["10.0.0.2".parse::<IpAddr>().unwrap()]);
    assert!(f.finished);
    assert!(!f.deleting);
    let bad: k8s_openapi::api::core::v1::Pod = from_json(serde_json::json!({
        "metadata": {"name": "b", "namespace": "shop",
                     "annotations": {"remora.io/injected": "true", "remora.io/inbound-port": "0"}}
    }));
    assert_eq!(
        facts::pod(&bad).unwrap().1.inbound,
        Inbound::Invalid("0".into())
    );
}

#[test]
fn a_slices_facts_are_its_service_and_endpoints_with_the_apis_defaults() {
    let s: k8s_openapi::api::discovery::v1::EndpointSlice = from_json(serde_json::json!({
        "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
        "metadata": {"name": "orders-x1", "namespace": "shop",
                     "labels": {"kubernetes.io/service-name": "orders"}},
        "addressType": "IPv4",
        "endpoints": [
            {"addresses": ["10.0.0.2"], "targetRef": {"kind": "Pod", "name": "orders-a"}},
            {"addresses": ["10.0.0.3"],
             "conditions": {"ready": false, "serving": true, "terminating": true},
             "targetRef": {"kind": "Pod", "name": "orders-b", "namespace": "shop"}},
            {"addresses": ["10.0.0.4"], "targetRef": {"kind": "Node", "name": "n1"}}
        ],
        "ports": [{"port": 8080}]
    }));
    let (k, f) = facts::slice(&s).unwrap();
    assert_eq!(k, key("orders-x1"));
    assert_eq!(f.service.as_deref(), Some("orders"));
    assert_eq!(
        f.endpoints,
        [
            endpoint("orders-a", "10.0.0.2", ready()),
            endpoint("orders-b", "10.0.0.3", terminating(true)),
            SliceEndpoint {
                pod: None,
                ..endpoint("x", "10.0.0.4", ready())
            },
        ]
    );
}

#[test]
fn a_services_facts_are_its_selector() {
    let s: k8s_openapi::api::core::v1::Service = from_json(serde_json::json!({
        "metadata": {"name": "orders", "namespace": "shop"},
        "spec": {"selector": {"app": "orders"}, "ports": [{"port": 80}]}
    }));
    let (k, f) = facts::service(&s).unwrap();
    assert_eq!(k, key("orders"));
    assert_eq!(f.selector, Some(labels(&[("app", "orders")])));
    assert_eq!(f.service_accounts, None, "no annotation: any account");
    let annotated: k8s_openapi::api::core::v1::Service = from_json(serde_json::json!({
        "metadata": {"name": "orders", "namespace": "shop",
                     "annotations": {"remora.io/service-accounts": "orders, orders-v2,"}},
        "spec": {"selector": {"app": "orders"}, "ports": [{"port": 80}]}
    }));
    let (_, f) = facts::service(&annotated).unwrap();
    assert_eq!(
        f.service_accounts,
        Some(vec!["orders".to_owned(), "orders-v2".to_owned()])
    );
}
