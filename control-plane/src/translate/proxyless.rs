//! What gRPC's own xDS client (proxyless gRPC, gRFC A27) reads besides Clusters
//! and ClusterLoadAssignments. Given the target `xds:///orders.default.svc.cluster.local:80`
//! it asks for the Listener of that name, follows its `api_listener` to a
//! RouteConfiguration, picks the virtual host whose domains hold the target's
//! name, and from its routes the Clusters.
//!
//! Per HTTP Service port:
//! - a RouteConfiguration named like the port's authority
//!   (`orders.default.svc.cluster.local:80`) with the port's one virtual host,
//!   as Remora proxies of the same namespace get it, less what gRPC would NACK
//!   or cannot do (see [`for_grpc`]);
//! - a Listener for each `host:port` name a client may put in its target: the
//!   virtual host's domains with a port (`orders.default.svc.cluster.local:80`,
//!   `orders.default.svc:80`, `orders.default:80`, and `orders:80` in the
//!   Service's namespace), each an `api_listener` whose HTTP connection manager
//!   takes that RouteConfiguration over RDS. A name with a port is never one of
//!   the listener names Remora gives its proxies (`outbound`, `inbound|...`).
//!   Port-less names are left out: every copy costs each stream's view of its
//!   namespace, and a gRPC target names a port.
//!
//! Remora proxies never ask for these names, and a client asks for them by name
//! only, so they cost the proxies nothing on the wire.

use remora_proto::xds::envoy::config::listener::v3::{ApiListener, Listener};
use remora_proto::xds::envoy::config::route::v3::{route::Action, RouteConfiguration, VirtualHost};
use std::sync::Arc;

use super::route::PortHost;
use super::{encode, listener, names, Resources};

/// Adds the Listeners and the RouteConfiguration of one HTTP Service port.
pub fn add(host: &PortHost<'_>, out: &mut Resources) {
    let routes = names::listener(&host.service.key, host.port.port);
    for name in host.virtual_host.domains.iter().filter(|d| is_listener(d)) {
        Arc::make_mut(&mut out.listeners)
            .insert(name.clone(), encode::listener(&api_listener(name, &routes)));
    }
    let config = RouteConfiguration {
        name: routes.clone(),
        virtual_hosts: vec![for_grpc(host.virtual_host.clone())],
        ..Default::default()
    };
    Arc::make_mut(&mut out.routes).insert(routes, encode::message(&config));
}

/// A `host:port` domain.
fn is_listener(domain: &str) -> bool {
    domain.contains(':')
}

fn api_listener(name: &str, routes: &str) -> Listener {
    Listener {
        name: name.to_owned(),
        api_listener: Some(ApiListener {
            api_listener: Some(encode::message(&listener::http_connection_manager(
                name, routes,
            ))),
        }),
        ..Default::default()
    }
}

/// The virtual host Remora proxies get, made acceptable to gRPC (which rejects
/// the whole RouteConfiguration for one bad route):
/// - no `typed_per_filter_config`: it only holds outbound rate limits, which a
///   caller's proxy enforces (a proxyless client has none), and gRPC rejects
///   config for a filter it does not know;
/// - no retry policy with `num_retries: 0` (what a per-try timeout alone
///   gives): gRPC rejects it, and has no per-try timeout.
///
/// Header changes, mirrors and HTTP timeouts stay: gRPC ignores them. What
/// else gRPC would reject never gets here: validation refuses a split whose
/// weights are all 0 and lower-cases header names (gRPC's metadata keys are).
pub fn for_grpc(mut host: VirtualHost) -> VirtualHost {
    for route in &mut host.routes {
        route.typed_per_filter_config.clear();
        let Some(Action::Route(action)) = &mut route.action else {
            continue;
        };
        if action
            .retry_policy
            .as_ref()
            .is_some_and(|p| p.num_retries.is_some_and(|n| n.value == 0))
        {
            action.retry_policy = None;
        }
    }
    host
}

#[cfg(test)]
mod tests {
    use super::*;
    use remora_proto::xds::envoy::config::route::v3::{
        route_action::ClusterSpecifier, weighted_cluster::ClusterWeight, RetryPolicy, Route,
        RouteAction, RouteMatch, WeightedCluster,
    };
    use remora_proto::xds::google::protobuf::{Any, UInt32Value};

    fn route(action: RouteAction) -> Route {
        Route {
            r#match: Some(RouteMatch::default()),
            action: Some(Action::Route(action)),
            typed_per_filter_config: [(
                "envoy.filters.http.local_ratelimit".to_owned(),
                Any::default(),
            )]
            .into(),
            ..Default::default()
        }
    }

    fn split(weights: &[u32]) -> Option<ClusterSpecifier> {
        Some(ClusterSpecifier::WeightedClusters(WeightedCluster {
            clusters: weights
                .iter()
                .enumerate()
                .map(|(i, w)| ClusterWeight {
                    name: format!("c{i}"),
                    weight: Some(UInt32Value { value: *w }),
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        }))
    }

    fn retries(n: u32) -> Option<RetryPolicy> {
        Some(RetryPolicy {
            num_retries: Some(UInt32Value { value: n }),
            ..Default::default()
        })
    }

    #[test]
    fn what_grpc_rejects_is_left_out() {
        let host = VirtualHost {
            routes: vec![
                route(RouteAction {
                    cluster_specifier: split(&[0, 100]),
                    retry_policy: retries(0),
                    ..Default::default()
                }),
                route(RouteAction {
                    cluster_specifier: split(&[80, 20]),
                    retry_policy: retries(2),
                    ..Default::default()
                }),
            ],
            ..Default::default()
        };
        let host = for_grpc(host);
        for r in &host.routes {
            assert!(r.typed_per_filter_config.is_empty());
        }
        let action = |i: usize| match &host.routes[i].action {
            Some(Action::Route(a)) => Some(a.clone()),
            _ => None,
        };
        let zero_and_hundred = action(0).unwrap();
        assert_eq!(zero_and_hundred.retry_policy, None);
        assert_eq!(
            zero_and_hundred.cluster_specifier,
            split(&[0, 100]),
            "a zero weight stays: gRPC skips it"
        );
        assert_eq!(action(1).unwrap().retry_policy, retries(2));
    }

    #[test]
    fn every_domain_with_a_port_is_a_listener() {
        assert!(is_listener("orders.default.svc.cluster.local:80"));
        assert!(is_listener("orders:80"));
        assert!(!is_listener("orders.default"));
        assert!(!is_listener("orders"));
        assert!(!is_listener("outbound"));
    }
}
