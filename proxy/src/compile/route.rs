//! RouteConfiguration -> a route table whose actions point at compiled clusters.

use std::collections::HashMap;
use std::sync::Arc;

use http::{HeaderName, HeaderValue, Method};
use remora_proto::xds::envoy::config::route::v3::{
    header_matcher::HeaderMatchSpecifier, route, route_action::ClusterSpecifier,
    route_match::PathSpecifier, HeaderMatcher, RouteConfiguration, VirtualHost as XdsVirtualHost,
};
use remora_proto::xds::envoy::r#type::matcher::v3::string_matcher::MatchPattern;

use super::CompileError;
use crate::snapshot::{
    HeaderMatch, HeaderMods, HeaderValueMatch, PathMatch, Route, RouteAction, RouteMatch,
    RouteTable, Target, VirtualHost, WeightedClusters,
};
use crate::upstream::{Cluster, EndpointRegistry};

type Clusters = HashMap<Arc<str>, Arc<Cluster>>;

/// Compiles every virtual host of `rc`.
pub fn compile(
    rc: &RouteConfiguration,
    clusters: &Clusters,
    registry: &EndpointRegistry,
) -> Result<RouteTable, CompileError> {
    let err =
        |field: String, m: String| CompileError::new("RouteConfiguration", &rc.name, field, m);
    let mut table = RouteTable {
        name: rc.name.clone(),
        virtual_hosts: Vec::with_capacity(rc.virtual_hosts.len()),
        exact: HashMap::new(),
        suffixes: Vec::new(),
        any: None,
    };
    for (i, vh) in rc.virtual_hosts.iter().enumerate() {
        for (d, domain) in vh.domains.iter().enumerate() {
            let field = format!("virtual_hosts[{i}].domains[{d}]");
            let domain = domain.to_ascii_lowercase();
            let duplicate = if domain == "*" {
                table.any.replace(i).is_some()
            } else if let Some(suffix) = domain.strip_prefix('*') {
                if suffix.contains('*') {
                    return Err(err(
                        field,
                        format!("`{domain}`: only a leading `*` is supported"),
                    ));
                }
                let dup = table.suffixes.iter().any(|(s, _)| **s == *suffix);
                table.suffixes.push((suffix.into(), i));
                dup
            } else if domain.contains('*') || domain.is_empty() {
                return Err(err(field, format!("`{domain}` is not a valid domain")));
            } else {
                table.exact.insert(domain.clone().into(), i).is_some()
            };
            if duplicate {
                return Err(err(
                    field,
                    format!("domain `{domain}` appears in more than one virtual host"),
                ));
            }
        }
        table
            .virtual_hosts
            .push(Arc::new(virtual_host(&rc.name, i, vh, clusters, registry)?));
    }
    // Longest suffix wins, as in Envoy.
    table.suffixes.sort_by_key(|s| std::cmp::Reverse(s.0.len()));
    Ok(table)
}

/// `previous` (what the same RouteConfiguration compiled into) against
/// `clusters`: a virtual host whose every target is still the same cluster
/// object (or still missing) is shared as it is; the others are compiled again
/// from the configuration, which `decode` gives, decoded only if one is. An
/// endpoint update thus recompiles only the virtual hosts that send to the
/// cluster it changed. The domains are the same as before, since the bytes are.
pub fn refresh(
    previous: &RouteTable,
    decode: &dyn Fn() -> Result<RouteConfiguration, CompileError>,
    clusters: &Clusters,
    registry: &EndpointRegistry,
) -> Result<RouteTable, CompileError> {
    let mut decoded: Option<RouteConfiguration> = None;
    let mut virtual_hosts = Vec::with_capacity(previous.virtual_hosts.len());
    for (i, vh) in previous.virtual_hosts.iter().enumerate() {
        if points_at(vh, clusters) {
            virtual_hosts.push(vh.clone());
            continue;
        }
        let rc = match decoded.take() {
            Some(rc) => rc,
            None => decode()?,
        };
        let xvh = rc.virtual_hosts.get(i).ok_or_else(|| {
            CompileError::new(
                "RouteConfiguration",
                &previous.name,
                format!("virtual_hosts[{i}]"),
                "missing from a configuration that compiled with it",
            )
        })?;
        virtual_hosts.push(Arc::new(virtual_host(
            &previous.name,
            i,
            xvh,
            clusters,
            registry,
        )?));
        decoded = Some(rc);
    }
    Ok(RouteTable {
        name: previous.name.clone(),
        virtual_hosts,
        exact: previous.exact.clone(),
        suffixes: previous.suffixes.clone(),
        any: previous.any,
    })
}

/// The same table, sharing its virtual hosts: what a later compile starts from.
pub fn share(table: &RouteTable) -> RouteTable {
    RouteTable {
        name: table.name.clone(),
        virtual_hosts: table.virtual_hosts.clone(),
        exact: table.exact.clone(),
        suffixes: table.suffixes.clone(),
        any: table.any,
    }
}

/// Whether every target of `vh` (split and mirrors) resolves in `clusters` to
/// the object it points at: then compiling it again would give the same.
fn points_at(vh: &VirtualHost, clusters: &Clusters) -> bool {
    vh.routes.iter().all(|r| {
        let RouteAction::Split(split) = &r.action;
        split
            .targets
            .iter()
            .map(|(_, t)| t)
            .chain(r.policy.mirrors.iter().map(|(t, _)| t))
            .all(|t| match t {
                Target::Cluster(c) => clusters
                    .get(&*c.name)
                    .is_some_and(|now| Arc::ptr_eq(now, c)),
                Target::Missing(name) => !clusters.contains_key(&**name),
            })
    })
}

/// One virtual host's routes, resolved against `clusters`.
fn virtual_host(
    rc_name: &str,
    i: usize,
    vh: &XdsVirtualHost,
    clusters: &Clusters,
    registry: &EndpointRegistry,
) -> Result<VirtualHost, CompileError> {
    let err = |field: String, m: String| CompileError::new("RouteConfiguration", rc_name, field, m);
    let mut routes = Vec::with_capacity(vh.routes.len());
    for (r, xr) in vh.routes.iter().enumerate() {
        let field = format!("virtual_hosts[{i}].routes[{r}]");
        let matcher = route_match(xr.r#match.as_ref(), &field).map_err(|(f, m)| err(f, m))?;
        let action = action(xr.action.as_ref(), clusters, &field).map_err(|(f, m)| err(f, m))?;
        let mut policy = match &xr.action {
            Some(route::Action::Route(a)) => {
                super::policy::compile(a, &format!("{field}.route")).map_err(|(f, m)| err(f, m))?
            }
            _ => Default::default(),
        };
        policy.request_headers = header_mods(
            &xr.request_headers_to_add,
            &xr.request_headers_to_remove,
            &format!("{field}.request_headers_to_add"),
        )
        .map_err(|(f, m)| err(f, m))?;
        policy.response_headers = header_mods(
            &xr.response_headers_to_add,
            &xr.response_headers_to_remove,
            &format!("{field}.response_headers_to_add"),
        )
        .map_err(|(f, m)| err(f, m))?;
        if let Some(route::Action::Route(a)) = &xr.action {
            for (i, m) in a.request_mirror_policies.iter().enumerate() {
                let f = format!("{field}.route.request_mirror_policies[{i}]");
                if m.cluster.is_empty() {
                    return Err(err(
                        f,
                        "a cluster is required (cluster_header is not supported)".into(),
                    ));
                }
                let share = match m.runtime_fraction.as_ref().and_then(|r| r.default_value) {
                    None => 1_000_000,
                    Some(p) => {
                        let scale = match p.denominator {
                            0 => 10_000,
                            1 => 100,
                            _ => 1,
                        };
                        p.numerator.saturating_mul(scale).min(1_000_000)
                    }
                };
                let target = match clusters.get(m.cluster.as_str()) {
                    Some(c) => Target::Cluster(c.clone()),
                    None => Target::Missing(m.cluster.as_str().into()),
                };
                policy.mirrors.push((target, share));
            }
        }
        for (name, config) in &xr.typed_per_filter_config {
            let f = format!("{field}.typed_per_filter_config[{name}]");
            if name != super::filters::RATE_LIMIT_FILTER {
                return Err(err(
                    f,
                    "only envoy.filters.http.local_ratelimit is supported".into(),
                ));
            }
            policy.rate_limit =
                super::filters::rate_limit(config, &f, registry).map_err(|(f, m)| err(f, m))?;
        }
        let name = if xr.name.is_empty() {
            format!("{}/{r}", vh.name)
        } else {
            xr.name.clone()
        };
        let RouteAction::Split(split) = &action;
        let (parent, parent_namespace) = parent_service(&vh.name);
        let hops = split
            .targets
            .iter()
            .map(|(_, target)| match target {
                _ if registry.metrics().off => None,
                Target::Cluster(c) => Some(registry.metrics().hop(vec![
                    ("direction", "outbound".to_owned()),
                    ("source_service", registry.metrics().service.clone()),
                    ("source_namespace", registry.metrics().namespace.clone()),
                    ("destination_service", c.destination.0.clone()),
                    ("destination_namespace", c.destination.1.clone()),
                    ("destination_identity", c.destination_identity.clone()),
                    ("route", name.clone()),
                    ("backend", c.name.to_string()),
                    ("parent_service", parent.to_owned()),
                    ("parent_namespace", parent_namespace.to_owned()),
                ])),
                Target::Missing(_) => None,
            })
            .collect();
        routes.push(Route {
            name: name.into(),
            matcher,
            action,
            policy,
            hops,
        });
    }
    Ok(VirtualHost {
        name: vh.name.clone(),
        routes,
    })
}

type FieldError = (String, String);

/// The Service a virtual host stands for, `(name, namespace)`, from the name
/// Remora's control plane gives it (`<namespace>/<service>:<port>`): the
/// Service the app called, which a route may send to other Services (its
/// backends). Empty for a name of another shape.
pub(crate) fn parent_service(virtual_host: &str) -> (&str, &str) {
    let parsed = virtual_host.split_once('/').and_then(|(namespace, rest)| {
        let (service, port) = rest.rsplit_once(':')?;
        let valid = !namespace.is_empty() && !service.is_empty() && port.parse::<u16>().is_ok();
        valid.then_some((service, namespace))
    });
    parsed.unwrap_or(("", ""))
}

fn route_match(
    m: Option<&remora_proto::xds::envoy::config::route::v3::RouteMatch>,
    field: &str,
) -> Result<RouteMatch, FieldError> {
    let field = format!("{field}.match");
    let m = m.ok_or_else(|| (field.clone(), "missing".to_owned()))?;
    if m.case_sensitive.is_some_and(|c| !c.value) {
        return Err((
            format!("{field}.case_sensitive"),
            "case-insensitive paths are not supported".into(),
        ));
    }
    if !m.query_parameters.is_empty() {
        return Err((
            format!("{field}.query_parameters"),
            "query parameter matches are not supported yet".into(),
        ));
    }
    let path = match &m.path_specifier {
        Some(PathSpecifier::Prefix(p)) => PathMatch::Prefix(p.clone()),
        Some(PathSpecifier::Path(p)) => PathMatch::Exact(p.clone()),
        Some(PathSpecifier::PathSeparatedPrefix(p)) => {
            PathMatch::SegmentPrefix(p.trim_end_matches('/').to_owned())
        }
        Some(_) => {
            return Err((
                format!("{field}.path_specifier"),
                "only prefix, path and path_separated_prefix are supported".into(),
            ))
        }
        None => return Err((format!("{field}.path_specifier"), "missing".into())),
    };
    let mut method = None;
    let mut headers = Vec::with_capacity(m.headers.len());
    for (h, hm) in m.headers.iter().enumerate() {
        let hfield = format!("{field}.headers[{h}]");
        if hm.name == ":method" {
            method = Some(method_match(hm, &hfield)?);
            continue;
        }
        headers.push(header_match(hm, &hfield)?);
    }
    Ok(RouteMatch {
        path,
        method,
        headers,
    })
}

fn header_mods(
    add: &[remora_proto::xds::envoy::config::core::v3::HeaderValueOption],
    remove: &[String],
    field: &str,
) -> Result<HeaderMods, FieldError> {
    use remora_proto::xds::envoy::config::core::v3::header_value_option::HeaderAppendAction;
    let mut mods = HeaderMods::default();
    for (i, option) in add.iter().enumerate() {
        let f = format!("{field}[{i}]");
        let header = option
            .header
            .as_ref()
            .ok_or_else(|| (f.clone(), "missing header".to_owned()))?;
        let name = HeaderName::from_bytes(header.key.as_bytes()).map_err(|_| {
            (
                format!("{f}.header.key"),
                format!("`{}` is not a header name", header.key),
            )
        })?;
        let value = header_value(&header.value, &format!("{f}.header.value"))?;
        match HeaderAppendAction::try_from(option.append_action) {
            Ok(HeaderAppendAction::OverwriteIfExistsOrAdd) => mods.set.push((name, value)),
            Ok(HeaderAppendAction::AppendIfExistsOrAdd) => mods.add.push((name, value)),
            _ => {
                return Err((
                    format!("{f}.append_action"),
                    "only APPEND_IF_EXISTS_OR_ADD and OVERWRITE_IF_EXISTS_OR_ADD are supported"
                        .into(),
                ))
            }
        }
    }
    let remove_field = field.replace("_to_add", "_to_remove");
    for (i, name) in remove.iter().enumerate() {
        mods.remove
            .push(HeaderName::from_bytes(name.as_bytes()).map_err(|_| {
                (
                    format!("{remove_field}[{i}]"),
                    format!("`{name}` is not a header name"),
                )
            })?);
    }
    Ok(mods)
}

fn exact_value(hm: &HeaderMatcher) -> Option<&str> {
    #[allow(deprecated)]
    match &hm.header_match_specifier {
        Some(HeaderMatchSpecifier::ExactMatch(v)) => Some(v),
        Some(HeaderMatchSpecifier::StringMatch(s)) if !s.ignore_case => match &s.match_pattern {
            Some(MatchPattern::Exact(v)) => Some(v),
            _ => None,
        },
        _ => None,
    }
}

pub(super) fn method_match(hm: &HeaderMatcher, field: &str) -> Result<Method, FieldError> {
    let value = exact_value(hm)
        .filter(|_| !hm.invert_match)
        .ok_or_else(|| {
            (
                field.to_owned(),
                "`:method` supports exact matches only".to_owned(),
            )
        })?;
    Method::from_bytes(value.as_bytes())
        .map_err(|_| (field.to_owned(), format!("`{value}` is not an HTTP method")))
}

pub(super) fn header_match(hm: &HeaderMatcher, field: &str) -> Result<HeaderMatch, FieldError> {
    let name = HeaderName::from_bytes(hm.name.as_bytes()).map_err(|_| {
        (
            format!("{field}.name"),
            format!("`{}` is not a header name", hm.name),
        )
    })?;
    #[allow(deprecated)]
    let value = match &hm.header_match_specifier {
        Some(HeaderMatchSpecifier::PresentMatch(true)) => HeaderValueMatch::Present,
        Some(HeaderMatchSpecifier::PrefixMatch(p)) => HeaderValueMatch::Prefix(p.clone()),
        Some(HeaderMatchSpecifier::StringMatch(s)) if !s.ignore_case => match &s.match_pattern {
            Some(MatchPattern::Exact(v)) => HeaderValueMatch::Exact(header_value(v, field)?),
            Some(MatchPattern::Prefix(p)) => HeaderValueMatch::Prefix(p.clone()),
            _ => {
                return Err((
                    format!("{field}.string_match"),
                    "only exact and prefix are supported".into(),
                ))
            }
        },
        Some(HeaderMatchSpecifier::ExactMatch(v)) => {
            HeaderValueMatch::Exact(header_value(v, field)?)
        }
        _ => {
            return Err((
                field.to_owned(),
                "only exact, prefix and present matches are supported".into(),
            ))
        }
    };
    Ok(HeaderMatch {
        name,
        value,
        invert: hm.invert_match,
    })
}

fn header_value(v: &str, field: &str) -> Result<HeaderValue, FieldError> {
    HeaderValue::from_str(v).map_err(|_| {
        (
            field.to_owned(),
            format!("`{v}` is not a valid header value"),
        )
    })
}

fn action(
    a: Option<&route::Action>,
    clusters: &Clusters,
    field: &str,
) -> Result<RouteAction, FieldError> {
    let target = |name: &str| match clusters.get(name) {
        Some(c) => Target::Cluster(c.clone()),
        None => Target::Missing(name.into()),
    };
    let route = match a {
        Some(route::Action::Route(r)) => r,
        Some(_) => {
            return Err((
                format!("{field}.action"),
                "only `route` actions are supported".into(),
            ))
        }
        None => return Err((format!("{field}.action"), "missing".into())),
    };
    let field = format!("{field}.route");
    match &route.cluster_specifier {
        Some(ClusterSpecifier::Cluster(name)) if !name.is_empty() => {
            Ok(RouteAction::Split(WeightedClusters {
                targets: vec![(1, target(name))],
                total: 1,
            }))
        }
        Some(ClusterSpecifier::WeightedClusters(wc)) => {
            let mut total: u32 = 0;
            let mut targets = Vec::with_capacity(wc.clusters.len());
            for (i, cw) in wc.clusters.iter().enumerate() {
                if cw.name.is_empty() {
                    return Err((
                        format!("{field}.weighted_clusters.clusters[{i}].name"),
                        "empty".into(),
                    ));
                }
                let weight = cw.weight.map(|w| w.value).unwrap_or(0);
                if weight == 0 {
                    continue;
                }
                total = total.checked_add(weight).ok_or_else(|| {
                    (
                        format!("{field}.weighted_clusters"),
                        "weights overflow".to_owned(),
                    )
                })?;
                targets.push((total, target(&cw.name)));
            }
            if total == 0 {
                return Err((
                    format!("{field}.weighted_clusters"),
                    "the weights add up to zero".into(),
                ));
            }
            Ok(RouteAction::Split(WeightedClusters { targets, total }))
        }
        _ => Err((
            format!("{field}.cluster_specifier"),
            "a cluster or weighted_clusters is required".into(),
        )),
    }
}

#[cfg(test)]
mod parent_tests {
    use super::parent_service;

    #[test]
    fn a_virtual_host_names_the_service_the_app_called() {
        assert_eq!(parent_service("default/orders:80"), ("orders", "default"));
        assert_eq!(parent_service("shop/orders-v1:8080"), ("orders-v1", "shop"));
        for other in [
            "orders",
            "default/orders",
            "/orders:80",
            "default/:80",
            "a/b:x",
        ] {
            assert_eq!(parent_service(other), ("", ""), "{other}");
        }
    }
}
