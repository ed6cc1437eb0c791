//! Fixtures shared by the end-to-end tests: config files and convergence checks.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::time::Duration;

use remora_tests::harness::{wait_for, Proxy};

/// How long a proxy may take to apply a config change; the issue asks for 2 s.
pub const CONVERGE: Duration = Duration::from_secs(2);

/// Writes a config file atomically (write, then rename), as an editor or
/// `kubectl`-like tool would, so the watcher never sees half a file.
pub fn write_config(dir: &Path, name: &str, text: &str) {
    std::fs::create_dir_all(dir).unwrap();
    let tmp = dir.join(format!(".{name}.tmp"));
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, dir.join(name)).unwrap();
}

pub fn service(name: &str, port: u16, app_protocol: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Service\nmetadata: {{name: {name}, namespace: default}}\n\
         spec:\n  ports: [{{port: {port}, appProtocol: {app_protocol}}}]\n"
    )
}

pub fn services(list: &[(&str, u16, &str)]) -> String {
    list.iter()
        .map(|(n, p, a)| service(n, *p, a))
        .collect::<Vec<_>>()
        .join("---\n")
}

/// An HTTPRoute on Service `parent` splitting between `(backend, weight)`s.
pub fn split_route(name: &str, parent: &str, backends: &[(&str, u32)]) -> String {
    let refs: String = backends
        .iter()
        .map(|(b, w)| format!("    - {{name: {b}, port: 80, weight: {w}}}\n"))
        .collect();
    format!(
        "apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\n\
         metadata: {{name: {name}, namespace: default}}\n\
         spec:\n  parentRefs: [{{group: \"\", kind: Service, name: {parent}, port: 80}}]\n\
         \x20 rules:\n  - backendRefs:\n{refs}"
    )
}

/// The weight `proxy` currently routes to clusters of `service`, summed over the
/// routes of virtual hosts whose name contains `/<vhost>:`.
pub fn routed_weight(dump: &serde_json::Value, vhost: &str, service: &str) -> u64 {
    let vhost = format!("/{vhost}:");
    let cluster = format!("{service}.");
    dump["routes"]["virtual_hosts"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|vh| vh["name"].as_str().is_some_and(|n| n.contains(&vhost)))
        .flat_map(|vh| vh["routes"].as_array().into_iter().flatten())
        .flat_map(|r| r["targets"].as_array().into_iter().flatten())
        .filter(|t| t["cluster"].as_str().is_some_and(|c| c.contains(&cluster)))
        .filter_map(|t| t["weight"].as_u64())
        .sum()
}

/// How many endpoints `proxy` holds for clusters of `service`.
pub fn endpoint_count(dump: &serde_json::Value, service: &str) -> usize {
    let cluster = format!("|{service}.");
    dump["clusters"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|c| c["name"].as_str().is_some_and(|n| n.contains(&cluster)))
        .map(|c| c["endpoints"].as_array().map_or(0, Vec::len))
        .sum()
}

/// Waits until `proxy`'s config satisfies `check`, failing with its config dump.
pub async fn wait_config(
    proxy: &Proxy,
    timeout: Duration,
    what: &str,
    check: impl Fn(&serde_json::Value) -> bool,
) {
    let ok = wait_for(timeout, || async {
        proxy
            .config_dump()
            .await
            .map(|d| check(&d))
            .unwrap_or(false)
    })
    .await;
    if ok.is_err() {
        let dump = proxy.config_dump().await.ok();
        panic!(
            "proxy {} never got {what} within {timeout:?}; config dump: {dump:#?}\nlogs:\n{}",
            proxy.spec.service,
            proxy.logs()
        );
    }
}

/// Waits until `proxy` routes `vhost` by exactly these weights, with endpoints for
/// every backend that has weight.
pub async fn wait_split(proxy: &Proxy, timeout: Duration, vhost: &str, split: &[(&str, u32)]) {
    wait_config(proxy, timeout, &format!("the split {split:?}"), |d| {
        let total: u64 = split.iter().map(|(s, _)| routed_weight(d, vhost, s)).sum();
        let wanted: u64 = split.iter().map(|(_, w)| u64::from(*w)).sum();
        total > 0
            && split.iter().all(|(s, w)| {
                routed_weight(d, vhost, s) * wanted == u64::from(*w) * total
                    && (*w == 0 || endpoint_count(d, s) > 0)
            })
    })
    .await;
}

pub fn config_dir(root: &Path) -> PathBuf {
    root.join("config")
}
