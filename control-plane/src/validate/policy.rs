//! Decoding Remora's policy kinds: `MeshTLS` and `AuthorizationPolicy`
//! (`policy.remora.dev/v1alpha1`). References (does the target exist?) are checked
//! in [`super::refs`].

use serde_yaml_ng::{Mapping, Value};

use super::decode::{field, index, Decoder};
use super::names;
use crate::resources::{
    AuthorizationAction, AuthorizationPolicy, AuthorizationRule, Caller, MeshTls, ObjectKey,
    Pattern, PolicyTarget, TlsMode,
};

const MESH_TLS_SPEC: &[&str] = &["targetRef", "mode"];
const AUTHORIZATION_SPEC: &[&str] = &["targetRef", "action", "rules"];
const TARGET_REF: &[&str] = &["group", "kind", "name"];
const RULE: &[&str] = &["from", "to"];
const FROM: &[&str] = &["identities", "namespaces"];
const TO: &[&str] = &["paths", "methods"];
const METHODS: &[&str] = &[
    "GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH",
];
const GATEWAY_GROUP: &str = "gateway.networking.k8s.io";

pub fn decode_mesh_tls(spec: &Mapping, key: ObjectKey, d: &mut Decoder) -> Option<MeshTls> {
    d.known_fields(spec, "spec", MESH_TLS_SPEC, &[]);
    let target = match spec.get("targetRef").filter(|v| !v.is_null()) {
        None => Some(PolicyTarget::Namespace),
        Some(v) => target_ref(v, &key, false, d),
    };
    let mode = d.required_string(spec, "spec", "mode").and_then(|m| {
        let mode = TlsMode::parse(&m);
        if mode.is_none() {
            d.error(
                "spec.mode",
                format!("\"{m}\" is not a mode (use STRICT or PERMISSIVE)"),
            );
        }
        mode
    });
    Some(MeshTls {
        key,
        target: target?,
        mode: mode?,
    })
}

pub fn decode_authorization(
    spec: &Mapping,
    key: ObjectKey,
    d: &mut Decoder,
) -> Option<AuthorizationPolicy> {
    d.known_fields(spec, "spec", AUTHORIZATION_SPEC, &[]);
    let target = required_target_ref(spec, &key, d);
    let action = d.required_string(spec, "spec", "action").and_then(|a| {
        let action = match a.as_str() {
            "ALLOW" => Some(AuthorizationAction::Allow),
            "DENY" => Some(AuthorizationAction::Deny),
            _ => None,
        };
        if action.is_none() {
            d.error(
                "spec.action",
                format!("\"{a}\" is not an action (use ALLOW or DENY)"),
            );
        }
        action
    });
    let rules = d
        .required_sequence(spec, "spec", "rules")
        .iter()
        .enumerate()
        .filter_map(|(i, v)| rule(v, &index("spec.rules", i), d))
        .collect();
    Some(AuthorizationPolicy {
        key,
        target: target?,
        action: action?,
        rules,
    })
}

/// `spec.targetRef` of a policy that must name a Service or an HTTPRoute.
pub(super) fn required_target_ref(
    spec: &Mapping,
    policy: &ObjectKey,
    d: &mut Decoder,
) -> Option<PolicyTarget> {
    match spec.get("targetRef").filter(|v| !v.is_null()) {
        None => {
            d.error(
                "spec.targetRef",
                "required: the Service or HTTPRoute this policy applies to",
            );
            None
        }
        Some(v) => target_ref(v, policy, true, d),
    }
}

pub(super) fn target_ref(
    v: &Value,
    policy: &ObjectKey,
    routes_allowed: bool,
    d: &mut Decoder,
) -> Option<PolicyTarget> {
    let path = "spec.targetRef";
    let m = d.mapping(v, path)?;
    d.known_fields(m, path, TARGET_REF, &[]);
    let group = d.string(m, path, "group");
    let name = d.required_string(m, path, "name");
    let kind = d.required_string(m, path, "kind")?;
    let expected_group = match kind.as_str() {
        "Service" => "core",
        "HTTPRoute" if routes_allowed => GATEWAY_GROUP,
        _ => {
            let accepted = if routes_allowed {
                "Service or HTTPRoute"
            } else {
                "Service (leave targetRef out for the whole namespace)"
            };
            d.error(
                field(path, "kind"),
                format!("\"{kind}\" cannot be a target (use {accepted})"),
            );
            return None;
        }
    };
    if let Some(group) = group.filter(|g| g != expected_group) {
        d.error(
            field(path, "group"),
            format!("\"{group}\" is not the group of {kind} (\"{expected_group}\")"),
        );
    }
    let key = ObjectKey::new(policy.namespace.clone(), name?);
    Some(if kind == "Service" {
        PolicyTarget::Service(key)
    } else {
        PolicyTarget::HttpRoute(key)
    })
}

fn rule(v: &Value, path: &str, d: &mut Decoder) -> Option<AuthorizationRule> {
    let m = d.mapping(v, path)?;
    d.known_fields(m, path, RULE, &[]);
    let mut rule = AuthorizationRule::default();
    if let Some(from) = m.get("from").filter(|v| !v.is_null()) {
        let from_path = field(path, "from");
        if let Some(from) = d.mapping(from, &from_path) {
            d.known_fields(from, &from_path, FROM, &[]);
            let before = d.errors.len();
            rule.from = callers(from, &from_path, d);
            if rule.from.is_empty() && d.errors.len() == before {
                d.error(
                    from_path,
                    "lists no caller (leave `from` out to match any caller)",
                );
            }
        }
    }
    if let Some(to) = m.get("to").filter(|v| !v.is_null()) {
        let to_path = field(path, "to");
        if let Some(to) = d.mapping(to, &to_path) {
            d.known_fields(to, &to_path, TO, &[]);
            rule.paths = strings(to, &to_path, "paths", d)
                .into_iter()
                .filter_map(|(p, value)| path_pattern(&p, &value, d))
                .collect();
            rule.methods = strings(to, &to_path, "methods", d)
                .into_iter()
                .filter_map(|(p, value)| {
                    let known = METHODS.contains(&value.as_str());
                    if !known {
                        d.error(
                            p,
                            format!(
                                "\"{value}\" is not a method (use one of: {})",
                                METHODS.join(", ")
                            ),
                        );
                    }
                    known.then_some(value)
                })
                .collect();
        }
    }
    Some(rule)
}

fn callers(from: &Mapping, path: &str, d: &mut Decoder) -> Vec<Caller> {
    let mut out = Vec::new();
    for (p, value) in strings(from, path, "identities", d) {
        match Pattern::parse(&value) {
            Some(Pattern::Exact(id)) if !id.starts_with("spiffe://") => d.error(
                p,
                format!("\"{id}\" is not a SPIFFE id (spiffe://<trust-domain>/ns/<namespace>/sa/<service-account>)"),
            ),
            Some(pattern) => out.push(Caller::Identity(pattern)),
            None => d.error(
                p,
                format!("\"{value}\": `*` may appear once, at the start or the end"),
            ),
        }
    }
    for (p, value) in strings(from, path, "namespaces", d) {
        if value != "*" {
            if let Err(message) = names::dns1123_label(&value) {
                d.error(p, message);
                continue;
            }
        }
        out.push(Caller::Namespace(value));
    }
    out
}

fn path_pattern(p: &str, value: &str, d: &mut Decoder) -> Option<Pattern> {
    let pattern = Pattern::parse(value);
    let ok = match &pattern {
        Some(Pattern::Any) => true,
        Some(Pattern::Exact(v)) | Some(Pattern::Prefix(v)) => v.starts_with('/'),
        Some(Pattern::Suffix(_)) => true,
        None => false,
    };
    if !ok {
        d.error(
            p,
            format!("\"{value}\" must be a path starting with `/`, with at most one `*` at the start or the end"),
        );
        return None;
    }
    pattern
}

/// A list of non-empty strings, each with its field path.
fn strings(m: &Mapping, parent: &str, key: &str, d: &mut Decoder) -> Vec<(String, String)> {
    let list_path = field(parent, key);
    let mut out = Vec::new();
    for (i, v) in d.sequence(m, parent, key).iter().enumerate() {
        let p = index(&list_path, i);
        match v.as_str() {
            Some(s) if !s.is_empty() => out.push((p, s.to_owned())),
            _ => d.error(p, "must be a non-empty string"),
        }
    }
    out
}
