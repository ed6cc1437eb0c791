//! AuthorizationPolicy -> Envoy RBAC filters for a Service's inbound listener:
//! one DENY filter, then one ALLOW filter, as Envoy evaluates them (a request passes
//! if no DENY policy matches it and, when an ALLOW filter exists, an ALLOW policy
//! does). HTTP filters for its HTTP chains, network filters for its opaque TCP
//! ports, from one translation ([`Traffic`] says which).
//!
//! An ALLOW policy restricts only what it targets: one that targets an HTTPRoute
//! leaves requests outside that route alone. That becomes a synthetic ALLOW policy
//! matching any request no ALLOW policy's target covers.
//!
//! A TCP connection has no path, method or header (Istio's semantics): a policy
//! that targets an HTTPRoute does not apply to it; an ALLOW rule that needs HTTP
//! attributes can never match it and is left out (an ALLOW policy with no rule
//! left allows no connection); a DENY rule that names them denies on its callers
//! alone, so that TCP is denied more, never less, than HTTP.

use std::collections::BTreeMap;

use prost::Message;
use remora_proto::xds::envoy::config::rbac::v3::{
    permission, principal, rbac::Action, Permission, Policy, Principal,
};
use remora_proto::xds::envoy::config::route::v3::{
    header_matcher::HeaderMatchSpecifier, HeaderMatcher,
};
use remora_proto::xds::envoy::r#type::matcher::v3::{
    path_matcher, string_matcher::MatchPattern, PathMatcher, StringMatcher,
};
use remora_proto::xds::google::protobuf::Any;

use crate::resources::{
    AuthorizationAction, AuthorizationPolicy, AuthorizationRule, Caller, HttpRoute, PathMatch,
    Pattern, PolicyTarget, Service,
};
use crate::store::Store;

pub const RBAC_FILTER: &str = "envoy.filters.http.rbac";
pub const RBAC_TYPE_URL: &str = remora_proto::type_url::RBAC;
pub const NETWORK_RBAC_FILTER: &str = "envoy.filters.network.rbac";
pub const NETWORK_RBAC_TYPE_URL: &str = remora_proto::type_url::NETWORK_RBAC;
/// The synthetic ALLOW policy for requests no ALLOW policy targets.
pub const UNTARGETED: &str = "remora:requests-no-allow-policy-targets";

/// Wire-compatible with `envoy.extensions.filters.http.rbac.v3.RBAC` (`rules`
/// only), with a sorted map so equal policies always encode to equal bytes.
#[derive(Clone, PartialEq, prost::Message)]
struct HttpRbac {
    #[prost(message, optional, tag = "1")]
    rules: Option<SortedRbac>,
}

/// Wire-compatible with `envoy.extensions.filters.network.rbac.v3.RBAC` (`rules`,
/// `stat_prefix`), sorted like [`HttpRbac`].
#[derive(Clone, PartialEq, prost::Message)]
struct NetworkRbac {
    #[prost(message, optional, tag = "1")]
    rules: Option<SortedRbac>,
    #[prost(string, tag = "3")]
    stat_prefix: String,
}

/// Wire-compatible with `envoy.config.rbac.v3.RBAC` (`action`, `policies`).
#[derive(Clone, PartialEq, prost::Message)]
struct SortedRbac {
    #[prost(int32, tag = "1")]
    action: i32,
    #[prost(btree_map = "string, message", tag = "2")]
    policies: BTreeMap<String, Policy>,
}

/// What the RBAC rules are enforced on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Traffic {
    /// HTTP requests: every attribute a rule names applies.
    Http,
    /// Opaque TCP connections: only callers (see the module doc).
    Tcp,
}

/// The HTTP RBAC filter configs for `service`, DENY first; none without policies.
pub fn filters(store: &Store, service: &Service, trust_domain: &str) -> Vec<Any> {
    rule_sets(store, service, trust_domain, Traffic::Http)
        .into_iter()
        .map(|rules| Any {
            type_url: RBAC_TYPE_URL.to_owned(),
            value: HttpRbac { rules: Some(rules) }.encode_to_vec(),
        })
        .collect()
}

/// The network RBAC filter configs for `service`'s opaque TCP ports, DENY first;
/// none without policies that apply to connections.
pub fn network_filters(
    store: &Store,
    service: &Service,
    trust_domain: &str,
    stat_prefix: &str,
) -> Vec<Any> {
    rule_sets(store, service, trust_domain, Traffic::Tcp)
        .into_iter()
        .map(|rules| Any {
            type_url: NETWORK_RBAC_TYPE_URL.to_owned(),
            value: NetworkRbac {
                rules: Some(rules),
                stat_prefix: stat_prefix.to_owned(),
            }
            .encode_to_vec(),
        })
        .collect()
}

/// The DENY rule set, then the ALLOW one, of the policies that apply to
/// `service`'s `traffic`; an action no policy has gets no set.
fn rule_sets(
    store: &Store,
    service: &Service,
    trust_domain: &str,
    traffic: Traffic,
) -> Vec<SortedRbac> {
    let applicable: Vec<(&AuthorizationPolicy, Permission)> = store
        .authorizations()
        .filter_map(|p| target(store, service, p, traffic).map(|t| (p, t)))
        .collect();
    let mut out = Vec::new();
    for action in [AuthorizationAction::Deny, AuthorizationAction::Allow] {
        let of_action: Vec<_> = applicable
            .iter()
            .filter(|(p, _)| p.action == action)
            .collect();
        if of_action.is_empty() {
            continue;
        }
        let mut policies = BTreeMap::new();
        for (policy, target) in &of_action {
            for (i, rule) in policy.rules.iter().enumerate() {
                let Some(matched) = requests(rule, action, traffic) else {
                    continue;
                };
                policies.insert(
                    format!("{}/rules[{i}]", policy.key),
                    Policy {
                        permissions: vec![and(vec![target.clone(), matched])],
                        principals: principals(rule, trust_domain),
                        ..Default::default()
                    },
                );
            }
        }
        let whole_service = of_action
            .iter()
            .any(|(p, _)| matches!(p.target, PolicyTarget::Service(_)));
        if action == AuthorizationAction::Allow && !whole_service {
            let targets = of_action.iter().map(|(_, t)| t.clone()).collect();
            policies.insert(
                UNTARGETED.to_owned(),
                Policy {
                    permissions: vec![not(or(targets))],
                    principals: vec![any_principal()],
                    ..Default::default()
                },
            );
        }
        let action = match action {
            AuthorizationAction::Allow => Action::Allow,
            AuthorizationAction::Deny => Action::Deny,
        };
        out.push(SortedRbac {
            action: action as i32,
            policies,
        });
    }
    out
}

/// What part of `service`'s traffic `policy` applies to, if any. A route selects
/// requests, and a TCP connection is none of them.
fn target(
    store: &Store,
    service: &Service,
    policy: &AuthorizationPolicy,
    traffic: Traffic,
) -> Option<Permission> {
    match &policy.target {
        PolicyTarget::Service(key) if *key == service.key => Some(any_permission()),
        PolicyTarget::HttpRoute(key) if traffic == Traffic::Http => {
            let route = store.route(key)?;
            route
                .parents
                .iter()
                .any(|p| p.service == service.key)
                .then(|| route_requests(route))
        }
        _ => None,
    }
}

/// The requests an HTTPRoute's matches select (ports aside: the inbound listener
/// serves every port).
fn route_requests(route: &HttpRoute) -> Permission {
    let matches = route.rules.iter().flat_map(|r| &r.matches).map(|m| {
        let mut all = vec![match &m.path {
            PathMatch::Exact(p) => url_path(MatchPattern::Exact(p.clone())),
            PathMatch::Prefix(p) if p == "/" => any_permission(),
            PathMatch::Prefix(p) => or(vec![
                url_path(MatchPattern::Exact(p.clone())),
                url_path(MatchPattern::Prefix(format!("{p}/"))),
            ]),
        }];
        all.extend(m.method.iter().map(|method| header(":method", method)));
        all.extend(m.headers.iter().map(|h| header(&h.name, &h.value)));
        and(all)
    });
    or(matches.collect())
}

/// What a rule's `to` matches of `traffic`; `None` when the rule can never match
/// it. On TCP only callers count: an ALLOW rule that needs HTTP attributes is left
/// out, and a DENY rule keeps its callers and drops those attributes (deny more,
/// never less).
fn requests(
    rule: &AuthorizationRule,
    action: AuthorizationAction,
    traffic: Traffic,
) -> Option<Permission> {
    match traffic {
        Traffic::Http => Some(to(rule)),
        Traffic::Tcp if rule.needs_http() && action == AuthorizationAction::Allow => None,
        Traffic::Tcp => Some(any_permission()),
    }
}

fn to(rule: &AuthorizationRule) -> Permission {
    let mut all = Vec::new();
    if !rule.paths.is_empty() {
        all.push(or(rule
            .paths
            .iter()
            .map(|p| match p {
                Pattern::Any => any_permission(),
                Pattern::Exact(v) => url_path(MatchPattern::Exact(v.clone())),
                Pattern::Prefix(v) => url_path(MatchPattern::Prefix(v.clone())),
                Pattern::Suffix(v) => url_path(MatchPattern::Suffix(v.clone())),
            })
            .collect()));
    }
    if !rule.methods.is_empty() {
        all.push(or(rule
            .methods
            .iter()
            .map(|m| header(":method", m))
            .collect()));
    }
    and(all)
}

fn principals(rule: &AuthorizationRule, trust_domain: &str) -> Vec<Principal> {
    if rule.from.is_empty() {
        return vec![any_principal()];
    }
    rule.from
        .iter()
        .map(|caller| {
            let name = match caller {
                Caller::Identity(Pattern::Any) => None,
                Caller::Identity(Pattern::Exact(v)) => Some(MatchPattern::Exact(v.clone())),
                Caller::Identity(Pattern::Prefix(v)) => Some(MatchPattern::Prefix(v.clone())),
                Caller::Identity(Pattern::Suffix(v)) => Some(MatchPattern::Suffix(v.clone())),
                Caller::Namespace(ns) if ns == "*" => None,
                Caller::Namespace(ns) => Some(MatchPattern::Prefix(format!(
                    "spiffe://{trust_domain}/ns/{ns}/sa/"
                ))),
            };
            Principal {
                identifier: Some(principal::Identifier::Authenticated(
                    principal::Authenticated {
                        principal_name: name.map(string),
                    },
                )),
            }
        })
        .collect()
}

fn string(pattern: MatchPattern) -> StringMatcher {
    StringMatcher {
        match_pattern: Some(pattern),
        ignore_case: false,
    }
}

fn any_permission() -> Permission {
    Permission {
        rule: Some(permission::Rule::Any(true)),
    }
}

fn any_principal() -> Principal {
    Principal {
        identifier: Some(principal::Identifier::Any(true)),
    }
}

fn url_path(pattern: MatchPattern) -> Permission {
    Permission {
        rule: Some(permission::Rule::UrlPath(PathMatcher {
            rule: Some(path_matcher::Rule::Path(string(pattern))),
        })),
    }
}

fn header(name: &str, value: &str) -> Permission {
    Permission {
        rule: Some(permission::Rule::Header(HeaderMatcher {
            name: name.to_owned(),
            header_match_specifier: Some(HeaderMatchSpecifier::StringMatch(string(
                MatchPattern::Exact(value.to_owned()),
            ))),
            ..Default::default()
        })),
    }
}

/// `and` of nothing is any request; of one, that one.
fn and(mut rules: Vec<Permission>) -> Permission {
    match rules.len() {
        0 => any_permission(),
        1 => rules.remove(0),
        _ => Permission {
            rule: Some(permission::Rule::AndRules(permission::Set { rules })),
        },
    }
}

fn or(mut rules: Vec<Permission>) -> Permission {
    if rules.len() == 1 {
        return rules.remove(0);
    }
    Permission {
        rule: Some(permission::Rule::OrRules(permission::Set { rules })),
    }
}

fn not(rule: Permission) -> Permission {
    Permission {
        rule: Some(permission::Rule::NotRule(Box::new(rule))),
    }
}
