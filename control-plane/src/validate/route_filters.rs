//! Decoding an HTTPRoute rule's `filters`: header modifiers and request mirrors.
//! Other filter types are reported as not supported yet.

use serde_yaml_ng::Mapping;

use super::decode::{field, get, index, Decoder};
use super::httproute::backend_ref;
use super::names;
use crate::resources::{HeaderModifier, Mirror, ObjectKey, RuleFilters};

const FILTER: &[&str] = &[
    "type",
    "requestHeaderModifier",
    "responseHeaderModifier",
    "requestMirror",
];
const FILTER_TYPES: &[&str] = &[
    "RequestHeaderModifier",
    "ResponseHeaderModifier",
    "RequestMirror",
];
const FILTER_TYPES_UNSUPPORTED: &[&str] =
    &["RequestRedirect", "URLRewrite", "CORS", "ExtensionRef"];
const MODIFIER: &[&str] = &["set", "add", "remove"];
const MIRROR: &[&str] = &["backendRef", "percent", "fraction"];

pub fn decode(rule: &Mapping, path: &str, route: &ObjectKey, d: &mut Decoder) -> RuleFilters {
    let mut out = RuleFilters::default();
    let list_path = field(path, "filters");
    for (i, v) in d.sequence(rule, path, "filters").iter().enumerate() {
        let p = index(&list_path, i);
        let Some(m) = d.mapping(v, &p) else { continue };
        d.known_fields(m, &p, FILTER, &[]);
        let Some(kind) = d.required_string(m, &p, "type") else {
            continue;
        };
        match kind.as_str() {
            "RequestHeaderModifier" => {
                let key = "requestHeaderModifier";
                if let Some(h) = modifier(m, &p, key, d) {
                    merge(&mut out.request_headers, h);
                }
            }
            "ResponseHeaderModifier" => {
                if let Some(h) = modifier(m, &p, "responseHeaderModifier", d) {
                    merge(&mut out.response_headers, h);
                }
            }
            "RequestMirror" => {
                if let Some(mirror) = mirror(m, &p, route, d) {
                    out.mirrors.push(mirror);
                }
            }
            other if FILTER_TYPES_UNSUPPORTED.contains(&other) => d.error(
                field(&p, "type"),
                format!("{other} is not supported by Remora yet"),
            ),
            other => d.error(
                field(&p, "type"),
                format!(
                    "\"{other}\" is not a filter type (use one of: {})",
                    FILTER_TYPES.join(", ")
                ),
            ),
        }
    }
    out
}

fn merge(into: &mut HeaderModifier, from: HeaderModifier) {
    into.set.extend(from.set);
    into.add.extend(from.add);
    into.remove.extend(from.remove);
}

fn modifier(filter: &Mapping, path: &str, key: &str, d: &mut Decoder) -> Option<HeaderModifier> {
    let p = field(path, key);
    let Some(v) = get(filter, key) else {
        d.error(p, "required for this filter type");
        return None;
    };
    let m = d.mapping(v, &p)?;
    d.known_fields(m, &p, MODIFIER, &[]);
    let pairs = |list: &str, d: &mut Decoder| {
        let lp = field(&p, list);
        let mut out = Vec::new();
        for (i, v) in d.sequence(m, &p, list).iter().enumerate() {
            let ip = index(&lp, i);
            let Some(h) = d.mapping(v, &ip) else { continue };
            d.known_fields(h, &ip, &["name", "value"], &[]);
            let name = d.required_string(h, &ip, "name");
            let value = d.string(h, &ip, "value").unwrap_or_default();
            if let Some(n) = &name {
                if let Err(message) = names::header_name(n) {
                    d.error(field(&ip, "name"), message);
                    continue;
                }
            }
            if value.contains(['\r', '\n']) {
                d.error(field(&ip, "value"), "must not contain line breaks");
                continue;
            }
            if let Some(n) = name {
                out.push((n.to_ascii_lowercase(), value));
            }
        }
        out
    };
    let set = pairs("set", d);
    let add = pairs("add", d);
    let remove_path = field(&p, "remove");
    let mut remove = Vec::new();
    for (i, v) in d.sequence(m, &p, "remove").iter().enumerate() {
        match v.as_str() {
            Some(n) if names::header_name(n).is_ok() => remove.push(n.to_ascii_lowercase()),
            _ => d.error(index(&remove_path, i), "must be a header name"),
        }
    }
    Some(HeaderModifier { set, add, remove })
}

fn mirror(filter: &Mapping, path: &str, route: &ObjectKey, d: &mut Decoder) -> Option<Mirror> {
    let p = field(path, "requestMirror");
    let Some(v) = get(filter, "requestMirror") else {
        d.error(p, "required for this filter type");
        return None;
    };
    let m = d.mapping(v, &p)?;
    d.known_fields(m, &p, MIRROR, &[]);
    let backend = match get(m, "backendRef") {
        None => {
            d.error(field(&p, "backendRef"), "required");
            None
        }
        Some(v) => backend_ref(v, &field(&p, "backendRef"), route, d),
    };
    let share = match (get(m, "percent"), get(m, "fraction")) {
        (None, None) => 1_000_000,
        (Some(_), None) => d
            .integer(m, &p, "percent", 0..=100)
            .map_or(1_000_000, |n| n as u32 * 10_000),
        (None, Some(_)) => {
            let fp = field(&p, "fraction");
            let f = d.mapping(get(m, "fraction")?, &fp)?;
            let num = d
                .integer(f, &fp, "numerator", 0..=u64::from(u32::MAX))
                .unwrap_or(0);
            let den = d
                .integer(f, &fp, "denominator", 1..=u64::from(u32::MAX))
                .unwrap_or(100);
            if num > den {
                d.error(fp, "numerator must not exceed denominator");
                return None;
            }
            (num * 1_000_000 / den) as u32
        }
        (Some(_), Some(_)) => {
            d.error(&p, "give percent or fraction, not both");
            return None;
        }
    };
    Some(Mirror {
        backend: backend?,
        share,
    })
}
