//! Decoding a Service's `spec`: ports, `clusterIP` and Remora's static endpoints.
//!
//! Kubernetes fields that do not matter to the mesh (`selector`, `type`,
//! `clusterIPs`, `nodePort`, ...) are accepted and ignored, so a cluster's manifests can be
//! used unchanged. That no two Services share a cluster IP is checked across
//! Services (`cluster_ip.rs`).

use std::collections::BTreeMap;
use std::net::IpAddr;

use serde_yaml_ng::{Mapping, Value};

use super::decode::{field, get, index, Decoder};
use super::names;
use crate::resources::{
    AppProtocol, EndpointAuthority, ObjectKey, OriginTls, Service, ServicePort, StaticEndpoint,
};

const ENDPOINT_FIELDS: &[&str] = &["address", "port", "servicePort"];

/// `top` is the whole document: the endpoint authority is in its annotations.
pub fn decode(top: &Mapping, spec: &Mapping, key: ObjectKey, d: &mut Decoder) -> Option<Service> {
    let ports = ports(spec, d);
    let endpoints = endpoints(spec, &ports, d);
    let tls = tls(spec, d);
    let authority = authority(top, &key.name, d);
    let cluster_ip = cluster_ip(spec, d);
    Some(Service {
        key,
        ports,
        endpoints,
        tls,
        authority,
        cluster_ip,
    })
}

/// `spec.clusterIP`: an IPv4 or IPv6 address; absent, empty or `None` (a headless
/// Service, as Kubernetes writes it) is no cluster IP. An IPv4-mapped IPv6
/// address is kept as IPv4, the form a connection's original destination has.
fn cluster_ip(spec: &Mapping, d: &mut Decoder) -> Option<IpAddr> {
    let text = d.string(spec, "spec", "clusterIP")?;
    if text == "None" {
        return None;
    }
    let problem = match text.parse::<IpAddr>().map(crate::authority::canonical) {
        Err(_) => "is not an IP address (an IPv4 or IPv6 address, or None for a headless Service)",
        Ok(ip) if ip.is_unspecified() => {
            "is the unspecified address, which no connection is sent to"
        }
        Ok(ip) if ip.is_multicast() => "is a multicast address, which cannot be a Service's",
        Ok(ip) => return Some(ip),
    };
    d.error("spec.clusterIP", format!("\"{text}\" {problem}"));
    None
}

/// `metadata.annotations` `remora.io/*`: who may serve the Service (see
/// [`EndpointAuthority`]). Other annotations are the user's business.
fn authority(top: &Mapping, service: &str, d: &mut Decoder) -> EndpointAuthority {
    let mut out = EndpointAuthority::named_like(service);
    let Some(annotations) = get(top, "metadata")
        .and_then(|m| m.as_mapping())
        .and_then(|m| get(m, "annotations"))
    else {
        return out;
    };
    let Some(annotations) = d.mapping(annotations, "metadata.annotations") else {
        return out;
    };
    let path = "metadata.annotations";
    if let Some(list) = d.string(annotations, path, EndpointAuthority::SERVICE_ACCOUNTS) {
        let at = field(path, EndpointAuthority::SERVICE_ACCOUNTS);
        let mut accounts = Vec::new();
        for account in list.split(',').map(str::trim).filter(|a| !a.is_empty()) {
            match names::dns1123_subdomain(account) {
                Ok(()) => accounts.push(account.to_owned()),
                Err(message) => d.error(&at, format!("\"{account}\": {message}")),
            }
        }
        if accounts.is_empty() {
            d.error(&at, "lists no service account");
        }
        out.service_accounts = accounts;
        out.explicit = true;
    }
    out.allow_unauthenticated = flag(
        annotations,
        path,
        EndpointAuthority::ALLOW_UNAUTHENTICATED,
        d,
    );
    out.allow_any_address = flag(annotations, path, EndpointAuthority::ALLOW_ANY_ADDRESS, d);
    out
}

/// An annotation that is `"true"` or `"false"` (annotations are strings).
fn flag(annotations: &Mapping, parent: &str, key: &str, d: &mut Decoder) -> bool {
    match d.string(annotations, parent, key).as_deref() {
        None | Some("false") => false,
        Some("true") => true,
        Some(other) => {
            d.error(
                field(parent, key),
                format!("\"{other}\" is not \"true\" or \"false\""),
            );
            false
        }
    }
}

const TLS_FIELDS: &[&str] = &["serverName", "caCertificates"];

/// `spec.tls` (Remora extension): ordinary TLS to the static endpoints.
fn tls(spec: &Mapping, d: &mut Decoder) -> Option<OriginTls> {
    let value = get(spec, "tls")?;
    let m = d.mapping(value, "spec.tls")?;
    d.known_fields(m, "spec.tls", TLS_FIELDS, &[]);
    let server_name = d
        .required_string(m, "spec.tls", "serverName")
        .and_then(|name| {
            let name = name.to_ascii_lowercase();
            match names::dns1123_subdomain(&name) {
                Ok(()) => Some(name),
                Err(message) => {
                    d.error("spec.tls.serverName", message);
                    None
                }
            }
        });
    let ca_certificates = d.string(m, "spec.tls", "caCertificates").and_then(|pem| {
        match pem_certificates(&pem) {
            Ok(0) => d.error("spec.tls.caCertificates", "holds no PEM certificate"),
            Ok(_) => return Some(pem),
            Err(message) => d.error("spec.tls.caCertificates", message),
        }
        None
    });
    Some(OriginTls {
        server_name: server_name?,
        ca_certificates,
    })
}

/// How many certificates a PEM text holds, each checked to parse as X.509.
fn pem_certificates(pem: &str) -> Result<usize, String> {
    let mut count = 0;
    for item in x509_parser::pem::Pem::iter_from_buffer(pem.as_bytes()) {
        let item = item.map_err(|e| format!("not valid PEM: {e}"))?;
        if item.label != "CERTIFICATE" {
            return Err(format!(
                "holds a {} where certificates are expected",
                item.label
            ));
        }
        item.parse_x509()
            .map_err(|e| format!("certificate {} is not valid X.509: {e}", count + 1))?;
        count += 1;
    }
    Ok(count)
}

fn ports(spec: &Mapping, d: &mut Decoder) -> Vec<ServicePort> {
    let mut out = Vec::new();
    let mut seen_numbers = BTreeMap::new();
    let mut seen_names = BTreeMap::new();
    let mut at = Vec::new();
    for (i, item) in d
        .required_sequence(spec, "spec", "ports")
        .iter()
        .enumerate()
    {
        let path = index("spec.ports", i);
        let Some(m) = d.mapping(item, &path) else {
            continue;
        };
        let name = d.string(m, &path, "name");
        if let Some(name) = &name {
            if let Err(message) = names::dns1123_label(name) {
                d.error(field(&path, "name"), message);
            }
            if let Some(first) = seen_names.insert(name.clone(), i) {
                d.error(
                    field(&path, "name"),
                    format!("\"{name}\" is already the name of spec.ports[{first}]"),
                );
            }
        }
        let port = d.required_port(m, &path, "port");
        if let Some(port) = port {
            if let Some(first) = seen_numbers.insert(port, i) {
                d.error(
                    field(&path, "port"),
                    format!("port {port} is already listed in spec.ports[{first}]"),
                );
            }
        }
        let protocol = match d.string(m, &path, "appProtocol") {
            None => Some(AppProtocol::Http),
            Some(value) => {
                let parsed = AppProtocol::parse(&value);
                if parsed.is_none() {
                    d.error(field(&path, "appProtocol"), unsupported_protocol(&value));
                }
                parsed
            }
        };
        if let Some(transport) = d.string(m, &path, "protocol") {
            if transport != "TCP" {
                d.error(
                    field(&path, "protocol"),
                    format!("\"{transport}\" is not supported (only TCP)"),
                );
            }
        }
        let target_port = target_port(m, &path, d);
        if let (Some(port), Some(protocol)) = (port, protocol) {
            out.push(ServicePort {
                name,
                port,
                protocol,
                target_port,
            });
            at.push(i);
        }
    }
    one_protocol_per_app_port(&out, &at, d);
    out
}

/// An app port is served as HTTP or as opaque TCP, never both: a peer could
/// otherwise open opaque TCP to an HTTP port and speak HTTP past the routes'
/// authorization, and a redirected connection to it would be taken as TCP.
/// `at[k]` is the index in `spec.ports` of `ports[k]`.
fn one_protocol_per_app_port(ports: &[ServicePort], at: &[usize], d: &mut Decoder) {
    let http: BTreeMap<u16, usize> = ports
        .iter()
        .zip(at)
        .filter(|(p, _)| !matches!(p.protocol, AppProtocol::Opaque(_)))
        .filter_map(|(p, i)| p.target_port.map(|t| (t, *i)))
        .collect();
    for (p, i) in ports.iter().zip(at) {
        if !matches!(p.protocol, AppProtocol::Opaque(_)) {
            continue;
        }
        let app_port = p.target();
        if let Some(first) = http.get(&app_port) {
            let path = index("spec.ports", *i);
            let which = if p.target_port.is_some() {
                "targetPort"
            } else {
                "port"
            };
            d.error(
                field(&path, which),
                format!(
                    "app port {app_port} is already the target of the HTTP port spec.ports[{first}]: \
                     a port is served as HTTP or as opaque TCP, not both"
                ),
            );
        }
    }
}

/// `targetPort`: a number, or (as Kubernetes allows) a container port's name.
/// A cluster resolves a name from the Service's EndpointSlices before
/// validation (`kubernetes::target_ports`). In a file nothing can: a name
/// means no target (HTTP to the proxy's `app`, opaque TCP to the Service port),
/// so that a cluster's manifest still reads unchanged.
fn target_port(m: &Mapping, path: &str, d: &mut Decoder) -> Option<u16> {
    if let Some(Value::String(name)) = get(m, "targetPort") {
        if let Err(message) = names::port_name(name) {
            d.error(field(path, "targetPort"), message);
        }
        return None;
    }
    d.port(m, path, "targetPort")
}

/// Names what is accepted, HTTP and opaque TCP apart, so the user sees that
/// an unlisted TCP protocol can be declared as `tcp`.
fn unsupported_protocol(value: &str) -> String {
    let names = |opaque: bool| {
        AppProtocol::ALL
            .into_iter()
            .filter(|p| p.is_opaque() == opaque)
            .map(AppProtocol::as_str)
            .collect::<Vec<_>>()
            .join(", ")
    };
    format!(
        "\"{value}\" is not supported (HTTP: {}; opaque TCP: {})",
        names(false),
        names(true)
    )
}

fn endpoints(spec: &Mapping, ports: &[ServicePort], d: &mut Decoder) -> Vec<StaticEndpoint> {
    let mut out = Vec::new();
    for (i, item) in d.sequence(spec, "spec", "endpoints").iter().enumerate() {
        let path = index("spec.endpoints", i);
        let Some(m) = d.mapping(item, &path) else {
            continue;
        };
        d.known_fields(m, &path, ENDPOINT_FIELDS, &[]);
        let address = d.required_string(m, &path, "address").and_then(|a| {
            let parsed = a.parse::<IpAddr>().ok();
            if parsed.is_none() {
                d.error(
                    field(&path, "address"),
                    format!("\"{a}\" is not an IP address"),
                );
            }
            parsed
        });
        let port = d.required_port(m, &path, "port");
        let service_port = match d.port(m, &path, "servicePort") {
            Some(p) if ports.iter().any(|sp| sp.port == p) => Some(p),
            Some(p) => {
                d.error(
                    field(&path, "servicePort"),
                    format!("the Service has no port {p}"),
                );
                None
            }
            None => match ports {
                [only] => Some(only.port),
                [] => None,
                _ => {
                    d.error(
                        field(&path, "servicePort"),
                        "required: the Service has several ports",
                    );
                    None
                }
            },
        };
        if let (Some(address), Some(port), Some(service_port)) = (address, port, service_port) {
            out.push(StaticEndpoint {
                address,
                port,
                service_port,
            });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use crate::resources::{EndpointAuthority, ObjectKey};
    use crate::source::parse;

    fn authority(annotations: &str) -> EndpointAuthority {
        let text = format!(
            "apiVersion: v1\nkind: Service\nmetadata: {{name: orders, namespace: shop{annotations}}}\nspec:\n  ports: [{{port: 80}}]\n"
        );
        let outcome = crate::validate::validate_loaded(&parse("orders.yaml", &text));
        assert!(outcome.problems.is_empty(), "{:?}", outcome.problems);
        outcome
            .store
            .service(&ObjectKey::new("shop", "orders"))
            .expect("the Service is valid")
            .authority
            .clone()
    }

    #[test]
    fn the_accounts_annotation_is_explicit_and_the_default_is_not() {
        let default = authority("");
        assert_eq!(default.service_accounts, ["orders"]);
        assert!(
            !default.explicit,
            "named like the Service: a file-mode default"
        );
        let written = authority(", annotations: {remora.io/service-accounts: 'orders, orders-v2'}");
        assert_eq!(written.service_accounts, ["orders", "orders-v2"]);
        assert!(written.explicit);
    }
}
