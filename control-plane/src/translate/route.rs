//! HTTPRoutes -> RouteConfiguration `outbound`: one virtual host per HTTP Service
//! port (an opaque TCP port has no requests to route), routes in Gateway API
//! precedence order.
//!
//! Which HTTPRoutes apply (GAMMA): a route in the Service's own namespace (a
//! producer route) applies to every client; a route in another namespace (a
//! consumer route) only to clients in that namespace. Hence one configuration per
//! client namespace.

use std::cmp::Reverse;
use std::collections::HashMap;

use remora_proto::xds::envoy::config::core::v3::{
    header_value_option::HeaderAppendAction, HeaderValue as XdsHeaderValue, HeaderValueOption,
    RuntimeFractionalPercent,
};
use remora_proto::xds::envoy::config::route::v3::route_action::RequestMirrorPolicy;
use remora_proto::xds::envoy::config::route::v3::{
    header_matcher::HeaderMatchSpecifier, route::Action, route_action::ClusterSpecifier,
    route_match::PathSpecifier, weighted_cluster::ClusterWeight, HeaderMatcher, Route, RouteAction,
    RouteConfiguration, RouteMatch, VirtualHost, WeightedCluster,
};
use remora_proto::xds::envoy::r#type::matcher::v3::{string_matcher::MatchPattern, StringMatcher};
use remora_proto::xds::envoy::r#type::v3::{
    fractional_percent::DenominatorType, FractionalPercent,
};
use remora_proto::xds::google::protobuf::{Any, UInt32Value};

use super::names;
use crate::resources::{self, HttpRoute, ObjectKey, PathMatch, Rule, Service, ServicePort};
use crate::store::Store;

/// The RouteConfiguration `outbound` of Remora proxies.
pub fn outbound(virtual_hosts: Vec<VirtualHost>) -> RouteConfiguration {
    RouteConfiguration {
        name: names::OUTBOUND.to_owned(),
        virtual_hosts,
        ..Default::default()
    }
}

/// One HTTP Service port's virtual host, as clients in one namespace see it.
pub struct PortHost<'a> {
    pub service: &'a Service,
    pub port: &'a ServicePort,
    pub virtual_host: VirtualHost,
}

/// Every HTTP Service port's virtual host, in Service then port order, as seen
/// by clients in `client_namespace`.
pub fn virtual_hosts<'a>(
    store: &'a Store,
    client_namespace: &'a str,
) -> impl Iterator<Item = PortHost<'a>> + 'a {
    store.services().flat_map(move |service| {
        // The port-less names belong to the first HTTP port.
        service
            .ports
            .iter()
            .filter(|port| !port.protocol.is_opaque())
            .enumerate()
            .map(move |(i, port)| PortHost {
                service,
                port,
                virtual_host: virtual_host(store, service, port, i == 0, client_namespace),
            })
    })
}

fn virtual_host(
    store: &Store,
    service: &Service,
    port: &ServicePort,
    first_port: bool,
    client_namespace: &str,
) -> VirtualHost {
    let attached: Vec<&HttpRoute> = store
        .routes()
        .filter(|r| r.attaches_to(&service.key, port.port))
        .filter(|r| r.key.namespace == service.key.namespace || r.key.namespace == client_namespace)
        .collect();
    let routes = if attached.is_empty() {
        vec![default_route(store, service, port)]
    } else {
        ordered(&service.key, &attached)
            .into_iter()
            .flat_map(|entry| entry.to_routes(store))
            .collect()
    };
    VirtualHost {
        name: names::virtual_host(&service.key, port.port),
        domains: names::domains(&service.key, port.port, first_port, client_namespace),
        routes,
        ..Default::default()
    }
}

/// Everything to a Service port's own cluster (a Service without HTTPRoutes).
fn default_route(store: &Store, service: &Service, port: &ServicePort) -> Route {
    Route {
        name: "default".to_owned(),
        r#match: Some(RouteMatch {
            path_specifier: Some(PathSpecifier::Prefix("/".to_owned())),
            ..Default::default()
        }),
        action: Some(Action::Route({
            let mut action = RouteAction {
                cluster_specifier: Some(ClusterSpecifier::Cluster(names::cluster(
                    &service.key,
                    port.port,
                ))),
                ..Default::default()
            };
            super::resilience::apply(&mut action, store, &service.key, None);
            action.hash_policy = super::resilience::hash_policy(store, [&service.key]);
            action
        })),
        typed_per_filter_config: super::filters::route_rate_limit(store, &service.key)
            .map(|config| HashMap::from([(super::filters::RATE_LIMIT_FILTER.to_owned(), config)]))
            .unwrap_or_default(),
        ..Default::default()
    }
}

/// `set` overwrites, `add` appends (Envoy `append_action`).
fn header_options(m: &resources::HeaderModifier) -> Vec<HeaderValueOption> {
    let option = |(name, value): &(String, String), action: HeaderAppendAction| HeaderValueOption {
        header: Some(XdsHeaderValue {
            key: name.clone(),
            value: value.clone(),
            ..Default::default()
        }),
        append_action: action as i32,
        ..Default::default()
    };
    m.set
        .iter()
        .map(|h| option(h, HeaderAppendAction::OverwriteIfExistsOrAdd))
        .chain(
            m.add
                .iter()
                .map(|h| option(h, HeaderAppendAction::AppendIfExistsOrAdd)),
        )
        .collect()
}

/// One match of one rule of one HTTPRoute.
struct Entry<'a> {
    /// The Service the requests are addressed to (the virtual host's).
    service: &'a ObjectKey,
    route: &'a HttpRoute,
    rule_index: usize,
    match_index: usize,
    rule: &'a Rule,
    matched: &'a resources::RouteMatch,
}

/// Gateway API precedence: exact path, then longer prefix, then a method match,
/// then more header matches, then (no creation time in files) namespace/name, then
/// rule order, then match order.
fn ordered<'a>(service: &'a ObjectKey, routes: &[&'a HttpRoute]) -> Vec<Entry<'a>> {
    let mut entries: Vec<Entry<'a>> = routes
        .iter()
        .flat_map(|route| {
            route
                .rules
                .iter()
                .enumerate()
                .flat_map(move |(rule_index, rule)| {
                    rule.matches
                        .iter()
                        .enumerate()
                        .map(move |(match_index, matched)| Entry {
                            service,
                            route,
                            rule_index,
                            match_index,
                            rule,
                            matched,
                        })
                })
        })
        .collect();
    entries.sort_by_key(|e| {
        let (exact, len) = match &e.matched.path {
            PathMatch::Exact(p) => (true, p.len()),
            PathMatch::Prefix(p) => (false, p.len()),
        };
        (
            Reverse(exact),
            Reverse(len),
            Reverse(e.matched.method.is_some()),
            Reverse(e.matched.headers.len()),
            &e.route.key,
            e.rule_index,
            e.match_index,
        )
    });
    entries
}

impl Entry<'_> {
    /// A prefix match is element-wise (`/api` matches `/api` and `/api/x`, not
    /// `/apix`); with only exact and prefix matchers (all gRPC and the proxy
    /// support) that is two routes: exact `/api`, then prefix `/api/`.
    fn to_routes(&self, store: &Store) -> Vec<Route> {
        let Some(action) = self.action(store) else {
            return Vec::new();
        };
        let paths = match &self.matched.path {
            PathMatch::Exact(p) => vec![PathSpecifier::Path(p.clone())],
            PathMatch::Prefix(p) if p == "/" => vec![PathSpecifier::Prefix(p.clone())],
            PathMatch::Prefix(p) => vec![
                PathSpecifier::Path(p.clone()),
                PathSpecifier::Prefix(format!("{p}/")),
            ],
        };
        let name = format!(
            "{}/rules[{}]/matches[{}]",
            self.route.key, self.rule_index, self.match_index
        );
        paths
            .into_iter()
            .map(|path| Route {
                name: name.clone(),
                r#match: Some(RouteMatch {
                    path_specifier: Some(path),
                    headers: self.headers(),
                    ..Default::default()
                }),
                action: Some(Action::Route(action.clone())),
                typed_per_filter_config: self.rate_limit(store),
                request_headers_to_add: header_options(&self.rule.filters.request_headers),
                request_headers_to_remove: self.rule.filters.request_headers.remove.clone(),
                response_headers_to_add: header_options(&self.rule.filters.response_headers),
                response_headers_to_remove: self.rule.filters.response_headers.remove.clone(),
                ..Default::default()
            })
            .collect()
    }

    fn headers(&self) -> Vec<HeaderMatcher> {
        let method = self.matched.method.iter().map(|m| (":method", m.as_str()));
        let headers = self
            .matched
            .headers
            .iter()
            .map(|h| (h.name.as_str(), h.value.as_str()));
        method
            .chain(headers)
            .map(|(name, value)| HeaderMatcher {
                name: name.to_owned(),
                header_match_specifier: Some(HeaderMatchSpecifier::StringMatch(StringMatcher {
                    match_pattern: Some(MatchPattern::Exact(value.to_owned())),
                    ignore_case: false,
                })),
                ..Default::default()
            })
            .collect()
    }

    /// One backend: `cluster`; several: `weighted_clusters` (zero weights kept,
    /// backends naming the same cluster merged, as gRPC requires unique names).
    fn action(&self, store: &Store) -> Option<RouteAction> {
        let mut clusters: Vec<(String, u32)> = Vec::new();
        for backend in &self.rule.backends {
            let Some(port) = store
                .service(&backend.service)
                .and_then(|s| s.resolve_port(backend.port))
            else {
                continue; // validation guarantees this does not happen
            };
            let name = names::cluster(&backend.service, port.port);
            match clusters.iter_mut().find(|(n, _)| *n == name) {
                Some((_, weight)) => *weight = weight.saturating_add(backend.weight),
                None => clusters.push((name, backend.weight)),
            }
        }
        let specifier = match clusters.as_slice() {
            [] => return None,
            [(name, _)] => ClusterSpecifier::Cluster(name.clone()),
            _ => ClusterSpecifier::WeightedClusters(WeightedCluster {
                clusters: clusters
                    .into_iter()
                    .map(|(name, weight)| ClusterWeight {
                        name,
                        weight: Some(UInt32Value { value: weight }),
                        ..Default::default()
                    })
                    .collect(),
                ..Default::default()
            }),
        };
        let mut action = RouteAction {
            cluster_specifier: Some(specifier),
            ..Default::default()
        };
        super::resilience::apply(
            &mut action,
            store,
            self.service,
            Some((&self.route.key, self.rule)),
        );
        action.hash_policy =
            super::resilience::hash_policy(store, self.rule.backends.iter().map(|b| &b.service));
        action.request_mirror_policies = self
            .rule
            .filters
            .mirrors
            .iter()
            .filter_map(|m| {
                let port = store
                    .service(&m.backend.service)?
                    .resolve_port(m.backend.port)?;
                Some(RequestMirrorPolicy {
                    cluster: names::cluster(&m.backend.service, port.port),
                    runtime_fraction: Some(RuntimeFractionalPercent {
                        default_value: Some(FractionalPercent {
                            numerator: m.share,
                            denominator: DenominatorType::Million as i32,
                        }),
                        ..Default::default()
                    }),
                    ..Default::default()
                })
            })
            .collect();
        Some(action)
    }

    /// The outbound rate limit of the first backend whose policy has one (the
    /// route's only per-filter config, so the map encodes the same every time).
    fn rate_limit(&self, store: &Store) -> HashMap<String, Any> {
        self.rule
            .backends
            .iter()
            .find_map(|b| super::filters::route_rate_limit(store, &b.service))
            .map(|config| HashMap::from([(super::filters::RATE_LIMIT_FILTER.to_owned(), config)]))
            .unwrap_or_default()
    }
}
