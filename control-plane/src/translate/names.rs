//! The names of the xDS resources, derived from a Service's namespace, name and port
//! (see docs/architecture.md). The proxy and gRPC clients look resources up by these.

use crate::resources::ObjectKey;

/// The trust domain, also the cluster DNS suffix (`*.svc.cluster.local`).
pub const CLUSTER_DOMAIN: &str = "cluster.local";
/// The listener a Remora proxy serves its application's outbound traffic on, and the
/// RouteConfiguration it uses.
pub const OUTBOUND: &str = "outbound";
/// Key of Remora's entry in `metadata.filter_metadata`.
pub const METADATA_KEY: &str = "remora";

/// `orders.default.svc.cluster.local`
pub fn fqdn(service: &ObjectKey) -> String {
    format!(
        "{}.{}.svc.{CLUSTER_DOMAIN}",
        service.name, service.namespace
    )
}

/// `outbound|80||orders.default.svc.cluster.local` (also the EDS service name).
pub fn cluster(service: &ObjectKey, port: u16) -> String {
    format!("outbound|{port}||{}", fqdn(service))
}

/// `orders.default.svc.cluster.local:80`: the `Host` / `:authority` a proxy gives
/// a request that arrived for the Service's cluster IP (one of [`domains`]).
pub fn authority(service: &ObjectKey, port: u16) -> String {
    format!("{}:{port}", fqdn(service))
}

/// `tcp|6379||redis.default.svc.cluster.local`: the outbound listener's filter
/// chain for an opaque Service port.
pub fn outbound_tcp_chain(service: &ObjectKey, port: u16) -> String {
    format!("tcp|{port}||{}", fqdn(service))
}

/// `http|80||orders.default.svc.cluster.local`: the outbound listener's filter
/// chain for connections to an HTTP port's cluster IP.
pub fn outbound_http_chain(service: &ObjectKey, port: u16) -> String {
    format!("http|{port}||{}", fqdn(service))
}

/// `tcp|6379`: the inbound listener's filter chain for mesh mTLS connections to
/// an opaque port.
pub fn inbound_tcp_chain(port: u16) -> String {
    format!("tcp|{port}")
}

/// `tcp|6379|plaintext`: its PERMISSIVE twin for plaintext connections.
pub fn inbound_plaintext_tcp_chain(port: u16) -> String {
    format!("tcp|{port}|plaintext")
}

/// `inbound|6379|`: the cluster an inbound TCP proxy sends to, the proxy's own
/// application on that port (the proxy resolves it from its bootstrap).
pub fn inbound_cluster(port: u16) -> String {
    format!("inbound|{port}|")
}

/// `inbound|orders.default.svc.cluster.local`: the listener the Service's proxies
/// accept mesh traffic on.
pub fn inbound(service: &ObjectKey) -> String {
    format!("inbound|{}", fqdn(service))
}

/// The (empty) route table of every inbound listener: a proxy forwards to its app.
pub const INBOUND_ROUTES: &str = "inbound";

/// `orders.default.svc.cluster.local:80`: the listener a gRPC xDS client asks for.
pub fn listener(service: &ObjectKey, port: u16) -> String {
    format!("{}:{port}", fqdn(service))
}

/// `default/orders:80`
pub fn virtual_host(service: &ObjectKey, port: u16) -> String {
    format!("{service}:{port}")
}

/// The host names (`Host` / `:authority`) a Service port answers to, as seen from a
/// proxy in `client_namespace`. Port-less names belong to the Service's first HTTP port;
/// the short name only resolves within the Service's own namespace.
pub fn domains(
    service: &ObjectKey,
    port: u16,
    first_port: bool,
    client_namespace: &str,
) -> Vec<String> {
    let mut hosts = vec![
        fqdn(service),
        format!("{}.{}.svc", service.name, service.namespace),
        format!("{}.{}", service.name, service.namespace),
    ];
    if service.namespace == client_namespace {
        hosts.push(service.name.clone());
    }
    let mut out = Vec::with_capacity(hosts.len() * 2);
    for host in hosts {
        out.push(format!("{host}:{port}"));
        if first_port {
            out.push(host);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_the_contract() {
        let orders = ObjectKey::new("default", "orders");
        assert_eq!(
            cluster(&orders, 80),
            "outbound|80||orders.default.svc.cluster.local"
        );
        assert_eq!(listener(&orders, 80), "orders.default.svc.cluster.local:80");
        assert_eq!(virtual_host(&orders, 80), "default/orders:80");
        assert_eq!(
            outbound_tcp_chain(&orders, 6379),
            "tcp|6379||orders.default.svc.cluster.local"
        );
        assert_eq!(
            outbound_http_chain(&orders, 80),
            "http|80||orders.default.svc.cluster.local"
        );
        assert_eq!(inbound_tcp_chain(6379), "tcp|6379");
        assert_eq!(inbound_plaintext_tcp_chain(6379), "tcp|6379|plaintext");
        assert_eq!(inbound_cluster(6379), "inbound|6379|");
    }

    #[test]
    fn the_cluster_ip_authority_is_a_domain_of_every_port_from_every_namespace() {
        let orders = ObjectKey::new("default", "orders");
        for (port, first) in [(80, true), (9090, false)] {
            for client in ["default", "shop"] {
                let hosts = domains(&orders, port, first, client);
                assert!(hosts.contains(&authority(&orders, port)), "{hosts:?}");
            }
        }
    }

    #[test]
    fn short_names_only_in_the_same_namespace_and_bare_names_only_for_the_first_port() {
        let orders = ObjectKey::new("default", "orders");
        assert_eq!(
            domains(&orders, 80, true, "default"),
            [
                "orders.default.svc.cluster.local:80",
                "orders.default.svc.cluster.local",
                "orders.default.svc:80",
                "orders.default.svc",
                "orders.default:80",
                "orders.default",
                "orders:80",
                "orders",
            ]
        );
        assert_eq!(
            domains(&orders, 9090, false, "shop"),
            [
                "orders.default.svc.cluster.local:9090",
                "orders.default.svc:9090",
                "orders.default:9090",
            ]
        );
    }
}
