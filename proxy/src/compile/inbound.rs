//! The inbound listener -> [`InboundPolicy`]: which transports its filter chains
//! accept (an mTLS chain always; a plaintext one when PERMISSIVE), the
//! authorization each chain's RBAC filters describe, and the app ports behind
//! the Service's HTTP ports (the HTTP chains' `metadata.remora.http_ports`).

use std::collections::hash_map::Entry;
use std::collections::{BTreeSet, HashMap};

use remora_proto::prost::Message;
use remora_proto::type_url;
use remora_proto::xds::envoy::config::core::v3::transport_socket;
use remora_proto::xds::envoy::config::listener::v3::{FilterChain, Listener};
use remora_proto::xds::envoy::config::rbac::v3::{
    permission, principal, rbac::Action, Permission as XdsPermission, Principal as XdsPrincipal,
    Rbac as XdsRbac,
};
use remora_proto::xds::envoy::extensions::filters::http::rbac::v3::Rbac as RbacFilter;
use remora_proto::xds::envoy::extensions::filters::network::http_connection_manager::v3::http_filter;
use remora_proto::xds::envoy::extensions::transport_sockets::tls::v3::DownstreamTlsContext;
use remora_proto::xds::envoy::r#type::matcher::v3::{
    path_matcher, string_matcher::MatchPattern, StringMatcher,
};
use remora_proto::xds::google::protobuf::value::Kind;

use super::listener::http_connection_manager;
use super::metadata;
use super::route::{header_match, method_match};
use super::CompileError;
use crate::authz::{Authorization, Permission, Policy, Principal, StringMatch};
use crate::resilience::rate_limit::Limiter;
use crate::snapshot::{InboundPolicy, TcpPort};
use crate::upstream::EndpointRegistry;

/// `filter_chain_match.transport_protocol` values.
const TLS: &str = "tls";
const RAW_BUFFER: &str = "raw_buffer";
/// How deep `and`/`or`/`not` may nest: deeper trees are refused, not recursed into.
const MAX_DEPTH: usize = 16;

type Field = (String, String);

pub fn compile(l: &Listener, registry: &EndpointRegistry) -> Result<InboundPolicy, CompileError> {
    let err = |(field, message): Field| CompileError::new("Listener", &l.name, field, message);
    let mut mtls = None;
    let mut plaintext = None;
    let mut rate_limit = None;
    let mut tcp = HashMap::<u16, TcpPort>::new();
    let mut http_ports = BTreeSet::new();
    for (i, chain) in l.filter_chains.iter().enumerate() {
        let path = format!("filter_chains[{i}]");
        let is_tls = transport(chain, &path).map_err(err)?;
        if super::tcp::is_tcp(chain) {
            let (port, authorization, idle_timeout) =
                super::tcp::inbound(chain, &path).map_err(err)?;
            let entry = tcp.entry(port);
            let duplicate = match (entry, is_tls) {
                (Entry::Vacant(v), true) => {
                    v.insert(TcpPort {
                        mtls: authorization,
                        plaintext: None,
                        idle_timeout,
                    });
                    false
                }
                (Entry::Occupied(mut o), false) => {
                    o.get_mut().plaintext.replace(authorization).is_some()
                }
                (Entry::Occupied(_), true) => true,
                (Entry::Vacant(_), false) => {
                    return Err(err((
                        path,
                        format!("a plaintext TCP chain for port {port} before its mTLS chain"),
                    )))
                }
            };
            if duplicate {
                return Err(err((path, format!("a second TCP chain for port {port}"))));
            }
            continue;
        }
        http_ports.extend(chain_http_ports(chain, &path).map_err(err)?);
        let (authorization, limit) = authorization(l, i, registry)?;
        // Every chain carries the same limit (one bucket, by its stat_prefix).
        rate_limit = rate_limit.or(limit);
        let slot = if is_tls { &mut mtls } else { &mut plaintext };
        if slot.replace(authorization).is_some() {
            let kind = if is_tls { "mTLS" } else { "plaintext" };
            return Err(err((path, format!("a second {kind} filter chain"))));
        }
    }
    let mtls = mtls.ok_or_else(|| {
        err((
            "filter_chains".into(),
            "no mTLS filter chain (a plaintext-only inbound listener is not supported)".into(),
        ))
    })?;
    Ok(InboundPolicy {
        name: l.name.clone(),
        mtls,
        plaintext,
        rate_limit,
        tcp,
        http_ports,
    })
}

/// An HTTP chain's `metadata.remora.http_ports`: whole numbers from 1 to 65535
/// (absent: none). A bad one rejects the listener: a wrong port would let a
/// peer reach another app port.
fn chain_http_ports(chain: &FilterChain, path: &str) -> Result<BTreeSet<u16>, Field> {
    let field = format!("{path}.metadata.filter_metadata.remora.http_ports");
    let Some(value) = metadata::remora(chain.metadata.as_ref(), "http_ports") else {
        return Ok(BTreeSet::new());
    };
    let Some(Kind::ListValue(list)) = &value.kind else {
        return Err((field, "must be a list of ports".into()));
    };
    list.values
        .iter()
        .enumerate()
        .map(|(i, v)| {
            metadata::port(v).ok_or_else(|| {
                (
                    format!("{field}[{i}]"),
                    "is not a port (a whole number from 1 to 65535)".into(),
                )
            })
        })
        .collect()
}

/// Whether the chain takes TLS connections; its TLS settings must be mesh mTLS.
fn transport(chain: &FilterChain, path: &str) -> Result<bool, Field> {
    let protocol = chain
        .filter_chain_match
        .as_ref()
        .map(|m| m.transport_protocol.as_str())
        .unwrap_or_default();
    let is_tls = match protocol {
        TLS => true,
        RAW_BUFFER => false,
        "" => chain.transport_socket.is_some(),
        other => {
            return Err((
                format!("{path}.filter_chain_match.transport_protocol"),
                format!("`{other}` is not supported (tls or raw_buffer)"),
            ))
        }
    };
    match (&chain.transport_socket, is_tls) {
        (None, true) => Err((
            format!("{path}.transport_socket"),
            "a TLS filter chain needs a TLS transport socket".into(),
        )),
        (Some(_), false) => Err((
            format!("{path}.transport_socket"),
            "a raw_buffer filter chain cannot have a transport socket".into(),
        )),
        (Some(socket), true) => {
            let field = format!("{path}.transport_socket.typed_config");
            let any = match &socket.config_type {
                Some(transport_socket::ConfigType::TypedConfig(any)) => any,
                _ => return Err((field, "missing".into())),
            };
            if any.type_url != type_url::DOWNSTREAM_TLS_CONTEXT {
                return Err((
                    field,
                    format!(
                        "expected {}, got {}",
                        type_url::DOWNSTREAM_TLS_CONTEXT,
                        any.type_url
                    ),
                ));
            }
            let tls = DownstreamTlsContext::decode(any.value.as_slice())
                .map_err(|e| (field.clone(), format!("cannot decode: {e}")))?;
            if !tls.require_client_certificate.is_some_and(|r| r.value) {
                return Err((
                    format!("{field}.require_client_certificate"),
                    "must be true: mesh peers authenticate with their certificates".into(),
                ));
            }
            Ok(true)
        }
        (None, false) => Ok(false),
    }
}

/// The RBAC filters of chain `chain`'s HTTP connection manager, in order; the
/// router must come last.
fn authorization(
    l: &Listener,
    chain: usize,
    registry: &EndpointRegistry,
) -> Result<(Authorization, Option<Limiter>), CompileError> {
    let (hcm, hcm_field) = http_connection_manager(l, chain)?;
    let err =
        |field: String, message: String| CompileError::new("Listener", &l.name, field, message);
    let mut out = Authorization::default();
    let mut limit = None;
    let count = hcm.http_filters.len();
    for (i, f) in hcm.http_filters.iter().enumerate() {
        let field = format!("{hcm_field}.http_filters[{i}]");
        let any = match &f.config_type {
            Some(http_filter::ConfigType::TypedConfig(any)) => any,
            _ => return Err(err(field, "typed_config is required".into())),
        };
        match any.type_url.as_str() {
            type_url::ROUTER if i + 1 == count => {}
            type_url::ROUTER => {
                return Err(err(
                    field,
                    "the router filter must be the last filter".into(),
                ))
            }
            type_url::RBAC => {
                let filter = RbacFilter::decode(any.value.as_slice())
                    .map_err(|e| err(field.clone(), format!("cannot decode: {e}")))?;
                let matcher = filter.matcher.is_some() || filter.shadow_matcher.is_some();
                rbac(matcher, filter.rules, &mut out)
                    .map_err(|(f, m)| err(format!("{field}.typed_config.{f}"), m))?;
            }
            super::filters::LOCAL_RATE_LIMIT => {
                limit = super::filters::rate_limit(any, &format!("{field}.typed_config"), registry)
                    .map_err(|(f, m)| err(f, m))?;
            }
            _ if f.is_optional => {}
            other => {
                return Err(err(
                    field,
                    format!("unsupported HTTP filter `{}` ({other})", f.name),
                ))
            }
        }
    }
    if !hcm.http_filters.last().is_some_and(|f| matches!(&f.config_type, Some(http_filter::ConfigType::TypedConfig(a)) if a.type_url == type_url::ROUTER)) {
        return Err(err(
            format!("{hcm_field}.http_filters"),
            "the filter chain must end with the router filter".into(),
        ));
    }
    Ok((out, limit))
}

/// An RBAC filter's rules (HTTP or network filter alike) into `out`; `matcher`
/// when the filter uses the matcher API instead, which is refused.
pub(super) fn rbac(
    matcher: bool,
    rules: Option<XdsRbac>,
    out: &mut Authorization,
) -> Result<(), Field> {
    if matcher {
        return Err((
            "matcher".into(),
            "matcher-based RBAC is not supported (use rules)".into(),
        ));
    }
    // Envoy: a filter without rules does nothing.
    let Some(XdsRbac {
        action, policies, ..
    }) = rules
    else {
        return Ok(());
    };
    let mut names: Vec<&String> = policies.keys().collect();
    names.sort();
    let mut compiled = Vec::with_capacity(names.len());
    for name in names {
        let p = &policies[name];
        let path = format!("rules.policies[{name}]");
        if p.condition.is_some() || p.checked_condition.is_some() {
            return Err((
                format!("{path}.condition"),
                "conditions are not supported".into(),
            ));
        }
        let permissions = p
            .permissions
            .iter()
            .enumerate()
            .map(|(i, x)| permission(x, &format!("{path}.permissions[{i}]"), 0))
            .collect::<Result<_, _>>()?;
        let principals = p
            .principals
            .iter()
            .enumerate()
            .map(|(i, x)| principal(x, &format!("{path}.principals[{i}]"), 0))
            .collect::<Result<_, _>>()?;
        compiled.push(Policy {
            name: name.as_str().into(),
            permissions,
            principals,
        });
    }
    match Action::try_from(action) {
        Ok(Action::Deny) => out.deny.extend(compiled),
        Ok(Action::Allow) => out.allow.get_or_insert_with(Vec::new).extend(compiled),
        _ => {
            return Err((
                "rules.action".into(),
                "only ALLOW and DENY are supported".into(),
            ))
        }
    }
    Ok(())
}

fn permission(p: &XdsPermission, path: &str, depth: usize) -> Result<Permission, Field> {
    use permission::Rule;
    if depth > MAX_DEPTH {
        return Err((path.into(), format!("nested more than {MAX_DEPTH} levels")));
    }
    let set = |rules: &[XdsPermission], what: &str| {
        rules
            .iter()
            .enumerate()
            .map(|(i, r)| permission(r, &format!("{path}.{what}.rules[{i}]"), depth + 1))
            .collect::<Result<Vec<_>, _>>()
    };
    Ok(match &p.rule {
        Some(Rule::Any(true)) => Permission::Any,
        Some(Rule::AndRules(s)) => Permission::And(set(&s.rules, "and_rules")?),
        Some(Rule::OrRules(s)) => Permission::Or(set(&s.rules, "or_rules")?),
        Some(Rule::NotRule(r)) => Permission::Not(Box::new(permission(
            r,
            &format!("{path}.not_rule"),
            depth + 1,
        )?)),
        Some(Rule::UrlPath(m)) => match &m.rule {
            Some(path_matcher::Rule::Path(s)) => {
                Permission::Path(string_match(s, &format!("{path}.url_path.path"))?)
            }
            None => return Err((format!("{path}.url_path"), "missing path".into())),
        },
        Some(Rule::Header(h)) if h.name == ":method" => {
            Permission::Method(method_match(h, &format!("{path}.header"))?)
        }
        Some(Rule::Header(h)) if h.name.starts_with(':') => {
            return Err((
                format!("{path}.header.name"),
                format!("`{}` is not supported (use url_path for the path)", h.name),
            ))
        }
        Some(Rule::Header(h)) => Permission::Header(header_match(h, &format!("{path}.header"))?),
        _ => {
            return Err((
                path.into(),
                "only any, and_rules, or_rules, not_rule, url_path and header are supported".into(),
            ))
        }
    })
}

fn principal(p: &XdsPrincipal, path: &str, depth: usize) -> Result<Principal, Field> {
    use principal::Identifier;
    if depth > MAX_DEPTH {
        return Err((path.into(), format!("nested more than {MAX_DEPTH} levels")));
    }
    let set = |ids: &[XdsPrincipal], what: &str| {
        ids.iter()
            .enumerate()
            .map(|(i, r)| principal(r, &format!("{path}.{what}.ids[{i}]"), depth + 1))
            .collect::<Result<Vec<_>, _>>()
    };
    Ok(match &p.identifier {
        Some(Identifier::Any(true)) => Principal::Any,
        Some(Identifier::Authenticated(a)) => Principal::Authenticated(
            a.principal_name
                .as_ref()
                .map(|s| string_match(s, &format!("{path}.authenticated.principal_name")))
                .transpose()?,
        ),
        Some(Identifier::AndIds(s)) => Principal::And(set(&s.ids, "and_ids")?),
        Some(Identifier::OrIds(s)) => Principal::Or(set(&s.ids, "or_ids")?),
        Some(Identifier::NotId(p)) => Principal::Not(Box::new(principal(
            p,
            &format!("{path}.not_id"),
            depth + 1,
        )?)),
        _ => {
            return Err((
                path.into(),
                "only any, authenticated, and_ids, or_ids and not_id are supported".into(),
            ))
        }
    })
}

fn string_match(s: &StringMatcher, path: &str) -> Result<StringMatch, Field> {
    if s.ignore_case {
        return Err((format!("{path}.ignore_case"), "not supported".into()));
    }
    Ok(match &s.match_pattern {
        Some(MatchPattern::Exact(v)) => StringMatch::Exact(v.clone()),
        Some(MatchPattern::Prefix(v)) => StringMatch::Prefix(v.clone()),
        Some(MatchPattern::Suffix(v)) => StringMatch::Suffix(v.clone()),
        Some(MatchPattern::Contains(v)) => StringMatch::Contains(v.clone()),
        _ => {
            return Err((
                path.into(),
                "only exact, prefix, suffix and contains are supported".into(),
            ))
        }
    })
}
