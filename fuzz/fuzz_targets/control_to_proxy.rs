//! The control plane and the proxy agree: whatever config the control plane
//! accepts, each proxy accepts what it is sent for it. The pipeline of
//! `control_yaml`, then, for the proxy of each Service of the namespace (and one
//! that fronts none), the resources it subscribes to (the outbound and its
//! inbound listener, every cluster, the routes and endpoints those name) are
//! compiled by the proxy: a rejection (a NACK in production) is a failure.
#![no_main]

use std::collections::BTreeMap;

use libfuzzer_sys::fuzz_target;
use remora_fuzz::{control_plane, Translated};
use remora_proto::xds::google::protobuf::Any;
use remora_proxy::compile::{self, inbound_listener, OUTBOUND_LISTENER};
use remora_proxy::upstream::EndpointRegistry;

/// Proxies checked per namespace, besides the one that fronts no Service.
const MAX_PROXIES: usize = 3;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    control_plane(text, |t| {
        let services: Vec<String> = t
            .store
            .services()
            .filter(|s| s.key.namespace == t.namespace)
            .take(MAX_PROXIES)
            .map(|s| s.key.name.clone())
            .collect();
        for service in services.iter().map(|s| Some(s.as_str())).chain([None]) {
            proxy_accepts(t, service);
        }
    });
});

/// What the proxy of `service` in `t.namespace` holds once its subscriptions are
/// answered, compiled as the proxy compiles it.
fn proxy_accepts(t: &Translated<'_>, service: Option<&str>) {
    let who = format!(
        "the proxy of {}/{}",
        t.namespace,
        service.unwrap_or("(no Service)")
    );
    let mut listeners = vec![OUTBOUND_LISTENER.to_owned()];
    if let Some(service) = service {
        listeners.push(inbound_listener(service, t.namespace));
    }
    let mut held = compile::Resources {
        listeners: subscribed(&t.resources.listeners, &listeners),
        clusters: t.resources.clusters.clone(),
        ..Default::default()
    };
    let subscriptions = held
        .subscriptions()
        .unwrap_or_else(|e| panic!("{who} cannot read what it was sent: {e}"));
    held.routes = subscribed(&t.resources.routes, &subscriptions.routes);
    held.endpoints = subscribed(&t.resources.endpoints, &subscriptions.endpoints);
    let registry = EndpointRegistry::default();
    if let Err(e) = compile::compile(&held, &registry) {
        panic!("{who} rejects (NACKs) what the control plane sent it: {e}");
    }
}

/// The subscribed resources that exist, as the control plane answers a
/// subscription by name.
fn subscribed(all: &BTreeMap<String, Any>, names: &[String]) -> BTreeMap<String, Any> {
    names
        .iter()
        .filter_map(|name| all.get(name).map(|any| (name.clone(), any.clone())))
        .collect()
}
