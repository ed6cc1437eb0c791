//! Decoding an HTTPRoute's `spec`: parentRefs (Services), rules, matches and
//! weighted backendRefs. Features of the Gateway API that Remora does not implement
//! yet are reported, never silently ignored: a route that half-applies would send
//! traffic where the user did not ask.

use serde_yaml_ng::Mapping;

use super::decode::{field, get, index, Decoder};
use super::names;
use crate::resources::{
    Backend, HeaderMatch, HttpRoute, ObjectKey, ParentRef, PathMatch, Retry, RouteMatch, Rule,
    Timeouts,
};

const SPEC: &[&str] = &["parentRefs", "hostnames", "rules"];
const PARENT_REF: &[&str] = &["group", "kind", "name", "namespace", "port"];
const PARENT_REF_UNSUPPORTED: &[&str] = &["sectionName"];
const RULE: &[&str] = &[
    "name",
    "matches",
    "backendRefs",
    "timeouts",
    "retry",
    "filters",
];
const RULE_UNSUPPORTED: &[&str] = &["sessionPersistence"];
const TIMEOUTS: &[&str] = &["request", "backendRequest"];
const RETRY: &[&str] = &["codes", "attempts", "backoff"];
/// Retries when a rule's `retry` does not say.
pub const DEFAULT_ATTEMPTS: u32 = 2;
const MATCH: &[&str] = &["path", "headers", "method"];
const MATCH_UNSUPPORTED: &[&str] = &["queryParams"];
const PATH: &[&str] = &["type", "value"];
const HEADER: &[&str] = &["type", "name", "value"];
const BACKEND_REF: &[&str] = &["group", "kind", "name", "namespace", "port", "weight"];
const BACKEND_REF_UNSUPPORTED: &[&str] = &["filters"];
const METHODS: &[&str] = &[
    "GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH",
];
/// The Gateway API's bound on a backendRef weight.
const MAX_WEIGHT: u64 = 1_000_000;

pub fn decode(spec: &Mapping, key: ObjectKey, d: &mut Decoder) -> Option<HttpRoute> {
    d.known_fields(spec, "spec", SPEC, &[]);
    // Hostnames do not apply to routes attached to Services (GAMMA); only the type
    // is checked.
    for (i, h) in d.sequence(spec, "spec", "hostnames").iter().enumerate() {
        if !h.is_string() {
            d.error(index("spec.hostnames", i), "must be a string");
        }
    }
    let parents = d
        .required_sequence(spec, "spec", "parentRefs")
        .iter()
        .enumerate()
        .filter_map(|(i, v)| parent_ref(v, &index("spec.parentRefs", i), &key, d))
        .collect();
    let rules = d
        .required_sequence(spec, "spec", "rules")
        .iter()
        .enumerate()
        .filter_map(|(i, v)| rule(v, &index("spec.rules", i), &key, d))
        .collect();
    Some(HttpRoute {
        key,
        parents,
        rules,
    })
}

/// `group` must be the core group: absent, `""` or `core`.
fn core_group(m: &Mapping, path: &str, what: &str, d: &mut Decoder) {
    if let Some(group) = d.string(m, path, "group") {
        if group != "core" {
            d.error(
                field(path, "group"),
                format!("\"{group}\": {what} must be a Service (group \"\" or \"core\")"),
            );
        }
    }
}

fn namespace(m: &Mapping, path: &str, route: &ObjectKey, d: &mut Decoder) -> String {
    match d.string(m, path, "namespace") {
        None => route.namespace.clone(),
        Some(ns) => {
            if let Err(message) = names::dns1123_label(&ns) {
                d.error(field(path, "namespace"), message);
            }
            ns
        }
    }
}

fn parent_ref(
    v: &serde_yaml_ng::Value,
    path: &str,
    route: &ObjectKey,
    d: &mut Decoder,
) -> Option<ParentRef> {
    let m = d.mapping(v, path)?;
    d.known_fields(m, path, PARENT_REF, PARENT_REF_UNSUPPORTED);
    core_group(m, path, "a parentRef", d);
    match d.string(m, path, "kind") {
        Some(kind) if kind == "Service" => {}
        Some(kind) => d.error(
            field(path, "kind"),
            format!(
                "\"{kind}\" is not supported: Remora routes attach to Services (kind: Service)"
            ),
        ),
        None => d.error(
            field(path, "kind"),
            "required: Remora routes attach to Services (kind: Service)",
        ),
    }
    let name = d.required_string(m, path, "name");
    let namespace = namespace(m, path, route, d);
    let port = d.port(m, path, "port");
    Some(ParentRef {
        service: ObjectKey::new(namespace, name?),
        port,
    })
}

fn rule(v: &serde_yaml_ng::Value, path: &str, route: &ObjectKey, d: &mut Decoder) -> Option<Rule> {
    let m = d.mapping(v, path)?;
    d.known_fields(m, path, RULE, RULE_UNSUPPORTED);
    let matches_path = field(path, "matches");
    let mut matches: Vec<RouteMatch> = d
        .sequence(m, path, "matches")
        .iter()
        .enumerate()
        .filter_map(|(i, v)| route_match(v, &index(&matches_path, i), d))
        .collect();
    // No matches (absent or `[]`) means one match on `PathPrefix /`. (If entries
    // failed to decode, the route is rejected anyway.)
    if matches.is_empty() {
        matches.push(RouteMatch {
            path: PathMatch::Prefix("/".into()),
            headers: Vec::new(),
            method: None,
        });
    }
    let backends_path = field(path, "backendRefs");
    let backends: Vec<Backend> = d
        .required_sequence(m, path, "backendRefs")
        .iter()
        .enumerate()
        .filter_map(|(i, v)| backend_ref(v, &index(&backends_path, i), route, d))
        .collect();
    if !backends.is_empty() && backends.iter().all(|b| b.weight == 0) {
        d.error(
            backends_path,
            "every weight is 0: the rule would send no traffic",
        );
    }
    let timeouts = timeouts(m, path, d);
    let retry = retry(m, path, d);
    let filters = super::route_filters::decode(m, path, route, d);
    Some(Rule {
        matches,
        backends,
        timeouts,
        retry,
        filters,
    })
}

fn timeouts(rule: &Mapping, path: &str, d: &mut Decoder) -> Timeouts {
    let Some(v) = get(rule, "timeouts") else {
        return Timeouts::default();
    };
    let path = field(path, "timeouts");
    let Some(m) = d.mapping(v, &path) else {
        return Timeouts::default();
    };
    d.known_fields(m, &path, TIMEOUTS, &[]);
    let t = Timeouts {
        request: d.duration(m, &path, "request"),
        backend_request: d.duration(m, &path, "backendRequest"),
    };
    if let (Some(request), Some(backend)) = (t.request, t.backend_request) {
        if !request.is_zero() && (backend.is_zero() || backend > request) {
            d.error(
                field(&path, "backendRequest"),
                "must not be longer than request (each attempt is part of the request)",
            );
        }
    }
    t
}

fn retry(rule: &Mapping, path: &str, d: &mut Decoder) -> Option<Retry> {
    let v = get(rule, "retry")?;
    let path = field(path, "retry");
    let m = d.mapping(v, &path)?;
    d.known_fields(m, &path, RETRY, &[]);
    let codes_path = field(&path, "codes");
    let mut codes = Vec::new();
    for (i, c) in d.sequence(m, &path, "codes").iter().enumerate() {
        match c.as_u64().and_then(|c| u16::try_from(c).ok()) {
            Some(code) if (400..=599).contains(&code) => codes.push(code),
            _ => d.error(
                index(&codes_path, i),
                "must be an HTTP status from 400 to 599",
            ),
        }
    }
    let attempts = d
        .integer(m, &path, "attempts", 0..=10)
        .map_or(DEFAULT_ATTEMPTS, |n| n as u32);
    let backoff = d.duration(m, &path, "backoff");
    if backoff.is_some_and(|b| b.is_zero()) {
        d.error(field(&path, "backoff"), "must be greater than zero");
    }
    Some(Retry {
        codes,
        attempts,
        backoff,
    })
}

fn route_match(v: &serde_yaml_ng::Value, path: &str, d: &mut Decoder) -> Option<RouteMatch> {
    let m = d.mapping(v, path)?;
    d.known_fields(m, path, MATCH, MATCH_UNSUPPORTED);
    let path_match = match get(m, "path") {
        None => Some(PathMatch::Prefix("/".into())),
        Some(v) => path_match(v, &field(path, "path"), d),
    };
    let headers_path = field(path, "headers");
    let mut headers: Vec<HeaderMatch> = Vec::new();
    for (i, v) in d.sequence(m, path, "headers").iter().enumerate() {
        let Some(h) = header_match(v, &index(&headers_path, i), d) else {
            continue;
        };
        // The Gateway API considers only the first match on a given header name.
        if !headers.iter().any(|seen| seen.name == h.name) {
            headers.push(h);
        }
    }
    let method = d.string(m, path, "method").and_then(|method| {
        if METHODS.contains(&method.as_str()) {
            Some(method)
        } else {
            d.error(
                field(path, "method"),
                format!(
                    "\"{method}\" is not an HTTP method (use one of: {})",
                    METHODS.join(", ")
                ),
            );
            None
        }
    });
    Some(RouteMatch {
        path: path_match?,
        headers,
        method,
    })
}

fn path_match(v: &serde_yaml_ng::Value, path: &str, d: &mut Decoder) -> Option<PathMatch> {
    let m = d.mapping(v, path)?;
    d.known_fields(m, path, PATH, &[]);
    let value = d.string(m, path, "value").unwrap_or_else(|| "/".into());
    let valid_value = if !value.starts_with('/') {
        d.error(
            field(path, "value"),
            format!("\"{value}\" must start with /"),
        );
        false
    } else if value.contains(['?', '#']) || value.contains(char::is_whitespace) {
        d.error(
            field(path, "value"),
            format!("\"{value}\" must not contain '?', '#' or spaces"),
        );
        false
    } else {
        true
    };
    let kind = d
        .string(m, path, "type")
        .unwrap_or_else(|| "PathPrefix".into());
    let matched = match kind.as_str() {
        "Exact" => PathMatch::Exact(value),
        "PathPrefix" => {
            let trimmed = value.trim_end_matches('/');
            PathMatch::Prefix(if trimmed.is_empty() {
                "/".into()
            } else {
                trimmed.into()
            })
        }
        "RegularExpression" => {
            d.error(
                field(path, "type"),
                "RegularExpression is not supported by Remora yet",
            );
            return None;
        }
        other => {
            d.error(
                field(path, "type"),
                format!("\"{other}\" is not a path match type (use Exact or PathPrefix)"),
            );
            return None;
        }
    };
    valid_value.then_some(matched)
}

fn header_match(v: &serde_yaml_ng::Value, path: &str, d: &mut Decoder) -> Option<HeaderMatch> {
    let m = d.mapping(v, path)?;
    d.known_fields(m, path, HEADER, &[]);
    match d.string(m, path, "type").as_deref() {
        None | Some("Exact") => {}
        Some("RegularExpression") => d.error(
            field(path, "type"),
            "RegularExpression is not supported by Remora yet",
        ),
        Some(other) => d.error(
            field(path, "type"),
            format!("\"{other}\" is not a header match type (use Exact)"),
        ),
    }
    let name =
        d.required_string(m, path, "name")
            .and_then(|name| match names::header_name(&name) {
                Ok(()) => Some(name.to_ascii_lowercase()),
                Err(message) => {
                    d.error(field(path, "name"), message);
                    None
                }
            });
    let value = d.required_string(m, path, "value");
    Some(HeaderMatch {
        name: name?,
        value: value?,
    })
}

pub(super) fn backend_ref(
    v: &serde_yaml_ng::Value,
    path: &str,
    route: &ObjectKey,
    d: &mut Decoder,
) -> Option<Backend> {
    let m = d.mapping(v, path)?;
    d.known_fields(m, path, BACKEND_REF, BACKEND_REF_UNSUPPORTED);
    core_group(m, path, "a backendRef", d);
    if let Some(kind) = d.string(m, path, "kind") {
        if kind != "Service" {
            d.error(
                field(path, "kind"),
                format!("\"{kind}\" is not supported: backends are Services"),
            );
        }
    }
    let name = d.required_string(m, path, "name");
    let namespace = namespace(m, path, route, d);
    let port = d.port(m, path, "port");
    let weight = match get(m, "weight") {
        None => Some(1),
        Some(_) => d
            .integer(m, path, "weight", 0..=MAX_WEIGHT)
            .and_then(|w| u32::try_from(w).ok()),
    };
    Some(Backend {
        service: ObjectKey::new(namespace, name?),
        port,
        weight: weight?,
    })
}
