//! The pod template's annotations that change what is injected, read and
//! checked. A wrong value is an error naming the annotation, never ignored: a
//! port meant to be skipped and silently redirected breaks the app in ways that
//! are hard to trace back here.

use std::net::IpAddr;

use serde_yaml_ng::{Mapping, Value};

use super::ProxyResources;

/// `enabled` or `disabled` (a disabled pod gets no sidecar).
pub const INJECT: &str = "remora.io/inject";
/// `native` (the default: an init container with `restartPolicy: Always`,
/// Kubernetes 1.29+) or `classic` (a regular container, for older clusters).
pub const SIDECAR_MODE: &str = "remora.io/sidecar-mode";
/// Ports, comma-separated: passed to `remora-proxy init`.
pub const SKIP_INBOUND_PORTS: &str = "remora.io/skip-inbound-ports";
pub const SKIP_OUTBOUND_PORTS: &str = "remora.io/skip-outbound-ports";
/// CIDRs, comma-separated: passed to `remora-proxy init`.
pub const SKIP_OUTBOUND_CIDRS: &str = "remora.io/skip-outbound-cidrs";
/// Ports carried as opaque TCP without protocol detection, comma-separated.
pub const OPAQUE_PORTS: &str = "remora.io/opaque-ports";
/// Kubernetes quantities replacing the default requests and limits.
pub const PROXY_CPU_REQUEST: &str = "remora.io/proxy-cpu-request";
pub const PROXY_CPU_LIMIT: &str = "remora.io/proxy-cpu-limit";
pub const PROXY_MEMORY_REQUEST: &str = "remora.io/proxy-memory-request";
pub const PROXY_MEMORY_LIMIT: &str = "remora.io/proxy-memory-limit";
/// The Service the pod's proxy serves (a DNS label). Without it: the pod's
/// label `app.kubernetes.io/name`, else `app`, else the workload's name.
pub const SERVICE: &str = "remora.io/service";
/// Written by injection: the version that injected the pod.
pub const INJECTED: &str = "remora.io/injected";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Mode {
    Native,
    Classic,
}

/// What the annotations ask for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct PodOptions {
    pub mode: Mode,
    pub skip_inbound_ports: Vec<u16>,
    pub skip_outbound_ports: Vec<u16>,
    /// As written (trimmed), once checked: `remora-proxy init` normalises them.
    pub skip_outbound_cidrs: Vec<String>,
    pub opaque_ports: Vec<u16>,
    pub resources: ProxyResources,
    /// `remora.io/service`, checked.
    pub service: Option<String>,
}

/// An annotation whose value is wrong, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct AnnotationError {
    pub annotation: &'static str,
    pub value: String,
    pub reason: String,
}

/// Reads the annotations; `None` when the pod opted out (`remora.io/inject:
/// disabled`).
pub(super) fn read(
    annotations: Option<&Mapping>,
    defaults: &ProxyResources,
) -> Result<Option<PodOptions>, AnnotationError> {
    let value = |key: &'static str| get(annotations, key);
    match value(INJECT)? {
        None | Some("enabled") => {}
        Some("disabled") => return Ok(None),
        Some(other) => return Err(wrong(INJECT, other, "is not `enabled` or `disabled`")),
    }
    let mode = match value(SIDECAR_MODE)? {
        None | Some("native") => Mode::Native,
        Some("classic") => Mode::Classic,
        Some(other) => return Err(wrong(SIDECAR_MODE, other, "is not `native` or `classic`")),
    };
    let port_list = |key: &'static str| value(key).and_then(|v| ports(key, v.unwrap_or("")));
    let quantity =
        |key: &'static str, default: &Option<String>| -> Result<Option<String>, AnnotationError> {
            match value(key)? {
                None => Ok(default.clone()),
                Some(v) if is_quantity(v.trim()) => Ok(Some(v.trim().to_owned())),
                Some(v) => Err(wrong(
                    key,
                    v,
                    "is not a Kubernetes quantity (e.g. 100m, 0.5, 64Mi, 1Gi)",
                )),
            }
        };
    let service = match value(SERVICE)?.map(str::trim) {
        None => None,
        Some(name) if is_dns_label(name) => Some(name.to_owned()),
        Some(name) => {
            return Err(wrong(
                SERVICE,
                name,
                "is not a Service name (a lowercase DNS label: a-z, 0-9, -)",
            ))
        }
    };
    Ok(Some(PodOptions {
        service,
        mode,
        skip_inbound_ports: port_list(SKIP_INBOUND_PORTS)?,
        skip_outbound_ports: port_list(SKIP_OUTBOUND_PORTS)?,
        skip_outbound_cidrs: cidrs(value(SKIP_OUTBOUND_CIDRS)?.unwrap_or(""))?,
        opaque_ports: port_list(OPAQUE_PORTS)?,
        resources: ProxyResources {
            cpu_request: quantity(PROXY_CPU_REQUEST, &defaults.cpu_request)?,
            cpu_limit: quantity(PROXY_CPU_LIMIT, &defaults.cpu_limit)?,
            memory_request: quantity(PROXY_MEMORY_REQUEST, &defaults.memory_request)?,
            memory_limit: quantity(PROXY_MEMORY_LIMIT, &defaults.memory_limit)?,
        },
    }))
}

/// The annotation's text; Kubernetes takes only strings (`"22"`, not `22`).
fn get<'a>(
    annotations: Option<&'a Mapping>,
    key: &'static str,
) -> Result<Option<&'a str>, AnnotationError> {
    match annotations.and_then(|a| a.get(key)) {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.as_str())),
        Some(other) => {
            let text = serde_yaml_ng::to_string(other).unwrap_or_default();
            Err(wrong(
                key,
                text.trim(),
                "is not a string (annotation values are strings: quote it)",
            ))
        }
    }
}

fn wrong(annotation: &'static str, value: &str, reason: &str) -> AnnotationError {
    AnnotationError {
        annotation,
        value: value.to_owned(),
        reason: reason.to_owned(),
    }
}

/// Comma-separated items; blanks (a trailing comma) are ignored.
fn items(list: &str) -> impl Iterator<Item = &str> {
    list.split(',').map(str::trim).filter(|i| !i.is_empty())
}

fn ports(key: &'static str, list: &str) -> Result<Vec<u16>, AnnotationError> {
    let mut out = Vec::new();
    for item in items(list) {
        match item.parse::<u16>() {
            Ok(port) if port != 0 => {
                if !out.contains(&port) {
                    out.push(port);
                }
            }
            _ => {
                return Err(wrong(
                    key,
                    list,
                    &format!("has `{item}`, which is not a port (1-65535)"),
                ))
            }
        }
    }
    Ok(out)
}

fn cidrs(list: &str) -> Result<Vec<String>, AnnotationError> {
    let mut out: Vec<String> = Vec::new();
    for item in items(list) {
        if let Err(reason) = check_cidr(item) {
            return Err(wrong(
                SKIP_OUTBOUND_CIDRS,
                list,
                &format!("has `{item}`, which is not a CIDR (e.g. 10.0.0.0/8): {reason}"),
            ));
        }
        if !out.iter().any(|c| c == item) {
            out.push(item.to_owned());
        }
    }
    Ok(out)
}

/// `address/prefix` or a bare address, as `remora-proxy init` accepts them.
fn check_cidr(text: &str) -> Result<(), String> {
    let (addr, prefix) = match text.split_once('/') {
        Some((addr, prefix)) => (addr, Some(prefix)),
        None => (text, None),
    };
    let addr: IpAddr = addr
        .parse()
        .map_err(|_| format!("`{addr}` is not an IP address"))?;
    let max = if addr.is_ipv4() { 32 } else { 128 };
    match prefix.map(str::parse::<u8>) {
        None => Ok(()),
        Some(Ok(p)) if p <= max => Ok(()),
        Some(_) => Err(format!("the prefix is not a number from 0 to {max}")),
    }
}

/// What Kubernetes accepts as a Service's name (RFC 1035 label, at most 63).
pub(super) fn is_dns_label(text: &str) -> bool {
    !text.is_empty()
        && text.len() <= 63
        && text
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && text.starts_with(|c: char| c.is_ascii_lowercase())
        && !text.ends_with('-')
}

/// A Kubernetes resource quantity in its usual forms: a decimal number with an
/// optional suffix (`m`, `k`, `M`, `G`, ..., `Ki`, `Mi`, `Gi`, ...).
/// Exponent forms (`1e3`) are rare and refused.
pub(super) fn is_quantity(text: &str) -> bool {
    const SUFFIXES: &[&str] = &[
        "Ki", "Mi", "Gi", "Ti", "Pi", "Ei", "m", "k", "M", "G", "T", "P", "E", "",
    ];
    SUFFIXES.iter().any(|suffix| {
        text.strip_suffix(suffix).is_some_and(|number| {
            let (whole, fraction) = number.split_once('.').unwrap_or((number, "0"));
            !whole.is_empty()
                && !fraction.is_empty()
                && whole.bytes().all(|b| b.is_ascii_digit())
                && fraction.bytes().all(|b| b.is_ascii_digit())
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn annotations(pairs: &[(&str, &str)]) -> Mapping {
        pairs
            .iter()
            .map(|(k, v)| (Value::from(*k), Value::from(*v)))
            .collect()
    }

    #[test]
    fn no_annotations_mean_a_native_sidecar_with_the_default_resources() {
        let options = read(None, &ProxyResources::default()).unwrap().unwrap();
        assert_eq!(options.mode, Mode::Native);
        assert_eq!(options.resources, ProxyResources::default());
        assert!(options.skip_inbound_ports.is_empty());
    }

    #[test]
    fn disabled_means_no_sidecar_and_other_annotations_are_not_read() {
        let a = annotations(&[(INJECT, "disabled"), (SKIP_INBOUND_PORTS, "x")]);
        assert_eq!(read(Some(&a), &ProxyResources::default()), Ok(None));
    }

    #[test]
    fn lists_are_trimmed_and_repeats_dropped() {
        let a = annotations(&[
            (SKIP_INBOUND_PORTS, " 22, 9100,22,"),
            (SKIP_OUTBOUND_CIDRS, "169.254.169.254/32, fd00::/8"),
        ]);
        let options = read(Some(&a), &ProxyResources::default()).unwrap().unwrap();
        assert_eq!(options.skip_inbound_ports, vec![22, 9100]);
        assert_eq!(
            options.skip_outbound_cidrs,
            vec!["169.254.169.254/32".to_owned(), "fd00::/8".to_owned()]
        );
    }

    #[test]
    fn a_wrong_value_names_the_annotation_and_the_item() {
        let cases = [
            (INJECT, "yes"),
            (SIDECAR_MODE, "sidecar"),
            (SKIP_INBOUND_PORTS, "22,ssh"),
            (SKIP_OUTBOUND_PORTS, "0"),
            (OPAQUE_PORTS, "70000"),
            (SKIP_OUTBOUND_CIDRS, "10.0.0.0/33"),
            (SKIP_OUTBOUND_CIDRS, "db.internal"),
            (PROXY_MEMORY_LIMIT, "64MB"),
            (SERVICE, "Orders"),
            (SERVICE, "orders.shop"),
        ];
        for (key, value) in cases {
            let a = annotations(&[(key, value)]);
            let error = read(Some(&a), &ProxyResources::default()).unwrap_err();
            assert_eq!(error.annotation, key, "{key}: {value}");
            assert_eq!(error.value, value);
        }
    }

    #[test]
    fn a_number_where_a_string_belongs_is_refused() {
        let mut a = Mapping::new();
        a.insert(SKIP_INBOUND_PORTS.into(), Value::from(22_i64));
        let error = read(Some(&a), &ProxyResources::default()).unwrap_err();
        assert!(error.reason.contains("quote it"), "{error:?}");
    }

    #[test]
    fn quantities_in_their_usual_forms() {
        for ok in ["10m", "0.5", "1", "64Mi", "1Gi", "100k", "1.5G"] {
            assert!(is_quantity(ok), "{ok}");
        }
        for bad in ["", "Mi", "64MB", "-1", "1.", ".5", "1e3", "ten"] {
            assert!(!is_quantity(bad), "{bad}");
        }
    }
}
