//! Opaque TCP ports and cluster IPs: which `appProtocol` values are opaque, what a
//! `clusterIP` may be, one Service per cluster IP, and HTTPRoutes kept off TCP
//! ports.

use std::net::IpAddr;

use super::*;
use crate::resources::{AppProtocol, OpaqueProtocol};
use crate::source::parse;

fn load(files: &[(&str, &str)]) -> Loaded {
    let mut loaded = Loaded::default();
    for (file, text) in files {
        let l = parse(file, text);
        loaded.documents.extend(l.documents);
        loaded.problems.extend(l.problems);
    }
    loaded
}

fn run(files: &[(&str, &str)]) -> Outcome {
    validate_loaded(&load(files))
}

/// A reload with `previous` in force, as the control plane does it.
fn reload(files: &[(&str, &str)], previous: &Outcome) -> Outcome {
    let mut outcome = validate_after(&load(files), &previous.store);
    retain_last_good(&previous.store, &mut outcome);
    outcome
}

fn messages(outcome: &Outcome) -> Vec<String> {
    outcome.problems.iter().map(|p| p.to_string()).collect()
}

/// A Service `name` in `default` with `spec` written inline.
fn service(name: &str, spec: &str) -> String {
    format!("apiVersion: v1\nkind: Service\nmetadata: {{name: {name}}}\nspec: {spec}\n")
}

fn redis_at(ip: &str) -> String {
    service(
        "redis",
        &format!("{{clusterIP: '{ip}', ports: [{{port: 6379, appProtocol: redis}}]}}"),
    )
}

fn ip(text: &str) -> Option<IpAddr> {
    Some(text.parse().unwrap())
}

fn cluster_ip(outcome: &Outcome, name: &str) -> Option<IpAddr> {
    outcome
        .store
        .service(&ObjectKey::new("default", name))
        .and_then(|s| s.cluster_ip)
}

#[test]
fn opaque_app_protocols_are_accepted_and_keep_their_name() {
    let text = service(
        "data",
        "{ports: [{port: 6379, appProtocol: redis}, {port: 9000, appProtocol: tcp}, {port: 80}]}",
    );
    let outcome = run(&[("s.yaml", &text)]);
    assert!(outcome.problems.is_empty(), "{:?}", messages(&outcome));
    let data = outcome
        .store
        .service(&ObjectKey::new("default", "data"))
        .unwrap();
    let protocols: Vec<_> = data.ports.iter().map(|p| p.protocol).collect();
    assert_eq!(
        protocols,
        [
            AppProtocol::Opaque(OpaqueProtocol::Redis),
            AppProtocol::Opaque(OpaqueProtocol::Tcp),
            AppProtocol::Http,
        ]
    );
    assert_eq!(protocols[0].as_str(), "redis");
    assert!(protocols[0].is_opaque() && !protocols[2].is_opaque());
}

#[test]
fn cluster_ip_is_an_address_and_none_means_headless() {
    let ports = "ports: [{port: 80}]";
    let outcome = run(&[(
        "s.yaml",
        &[
            service("v4", &format!("{{clusterIP: 10.96.0.10, {ports}}}")),
            service("v6", &format!("{{clusterIP: 'fd00::10', {ports}}}")),
            service(
                "mapped",
                &format!("{{clusterIP: '::ffff:10.96.0.11', {ports}}}"),
            ),
            service("headless", &format!("{{clusterIP: None, {ports}}}")),
            service("unset", &format!("{{{ports}}}")),
            service("garbage", &format!("{{clusterIP: 10.96.0.300, {ports}}}")),
            service("unspecified", &format!("{{clusterIP: 0.0.0.0, {ports}}}")),
        ]
        .join("---\n"),
    )]);
    assert_eq!(
        messages(&outcome),
        [
            "s.yaml: Service default/garbage: spec.clusterIP: \"10.96.0.300\" is not an IP address (an IPv4 or IPv6 address, or None for a headless Service)",
            "s.yaml: Service default/unspecified: spec.clusterIP: \"0.0.0.0\" is the unspecified address, which no connection is sent to",
        ]
    );
    assert_eq!(cluster_ip(&outcome, "v4"), ip("10.96.0.10"));
    assert_eq!(cluster_ip(&outcome, "v6"), ip("fd00::10"));
    assert_eq!(
        cluster_ip(&outcome, "mapped"),
        ip("10.96.0.11"),
        "an IPv4-mapped address is the IPv4 address a connection is sent to"
    );
    assert_eq!(cluster_ip(&outcome, "headless"), None);
    assert_eq!(cluster_ip(&outcome, "unset"), None);
}

#[test]
fn two_services_at_one_cluster_ip_keep_the_first_in_name_order() {
    let cache = service(
        "cache",
        "{clusterIP: 10.96.0.10, ports: [{port: 6379, appProtocol: redis}]}",
    );
    let outcome = run(&[("a.yaml", &redis_at("10.96.0.10")), ("b.yaml", &cache)]);
    assert_eq!(
        messages(&outcome),
        ["a.yaml: Service default/redis: spec.clusterIP: 10.96.0.10 is already the clusterIP of Service default/cache"]
    );
    assert_eq!(cluster_ip(&outcome, "cache"), ip("10.96.0.10"));
    assert!(cluster_ip(&outcome, "redis").is_none());
}

#[test]
fn the_service_in_force_keeps_its_cluster_ip() {
    let first = run(&[("redis.yaml", &redis_at("10.96.0.10"))]);
    assert!(first.problems.is_empty(), "{:?}", messages(&first));
    // A newcomer that sorts first asks for the same address: it waits.
    let cache = service(
        "cache",
        "{clusterIP: 10.96.0.10, ports: [{port: 11211, appProtocol: tcp}]}",
    );
    let second = reload(
        &[
            ("cache.yaml", &cache),
            ("redis.yaml", &redis_at("10.96.0.10")),
        ],
        &first,
    );
    assert_eq!(
        messages(&second),
        ["cache.yaml: Service default/cache: spec.clusterIP: 10.96.0.10 is already the clusterIP of Service default/redis"]
    );
    // Also while the Service in force is broken: its last valid version stays,
    // with its address.
    let broken = service(
        "redis",
        "{clusterIP: 10.96.0.10, ports: [{port: 0, appProtocol: redis}]}",
    );
    let third = reload(&[("cache.yaml", &cache), ("redis.yaml", &broken)], &second);
    assert_eq!(cluster_ip(&third, "redis"), ip("10.96.0.10"));
    assert!(
        cluster_ip(&third, "cache").is_none(),
        "{:?}",
        messages(&third)
    );
    // Once it moves, the address is free.
    let fourth = reload(
        &[
            ("cache.yaml", &cache),
            ("redis.yaml", &redis_at("10.96.0.12")),
        ],
        &third,
    );
    assert!(fourth.problems.is_empty(), "{:?}", messages(&fourth));
    assert_eq!(cluster_ip(&fourth, "cache"), ip("10.96.0.10"));
}

#[test]
fn an_httproute_cannot_attach_to_or_send_to_an_opaque_port() {
    let route = "
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: r}
spec:
  parentRefs: [{kind: Service, name: redis, port: 6379}, {kind: Service, name: redis}]
  rules: [{backendRefs: [{name: redis}]}]
";
    let outcome = run(&[("s.yaml", &redis_at("10.96.0.10")), ("r.yaml", route)]);
    assert_eq!(
        messages(&outcome),
        [
            "r.yaml: HTTPRoute default/r: spec.parentRefs[0].port: port 6379 of Service \"redis\" is opaque TCP (appProtocol: redis): an HTTPRoute routes HTTP ports only",
            "r.yaml: HTTPRoute default/r: spec.parentRefs[1].name: Service \"redis\" has no HTTP port (its ports are opaque TCP)",
            "r.yaml: HTTPRoute default/r: spec.rules[0].backendRefs[0].port: port 6379 of Service \"redis\" is opaque TCP (appProtocol: redis): an HTTPRoute routes HTTP ports only",
        ]
    );
}
