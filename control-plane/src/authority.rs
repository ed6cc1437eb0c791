//! Endpoint authority: which proxies may serve a Service.
//!
//! A proxy becomes an endpoint of a Service only when its client certificate
//! proves a service account the Service names (file mode: the
//! `remora.io/service-accounts` annotation, by default the account named like the
//! Service), in the Service's namespace and the mesh's trust domain. A proxy
//! without a certificate may serve only a Service that allows unauthenticated
//! endpoints, and the address it announces must be the one its xDS connection
//! comes from unless the Service allows any address.
//!
//! The xDS server refuses a registration that fails this check; translation
//! applies it again to every endpoint, so a Service whose annotations change
//! loses the endpoints it no longer admits at once.
//!
//! In Kubernetes the cluster vouches instead ([`Origin::Cluster`]): an
//! EndpointSlice endpoint whose pod the Service selects, with the pod's service
//! account as identity (`kubernetes::endpoints` checks that). The Service's
//! selector is its authority there, as it is for kube-proxy, so such an
//! endpoint needs no certificate of its own or xDS peer address, and the
//! default "the account named like the Service" does not apply (it is a
//! file-mode default). But a selector only says which labels a pod carries,
//! and anyone who may create pods in the namespace can carry them: a Service
//! that names its accounts explicitly (`remora.io/service-accounts`) is served
//! only by pods running as one of them.

use std::net::{IpAddr, SocketAddr};

use crate::ca::SpiffeId;
use crate::resources::{EndpointAuthority, Service};

/// Why a proxy may not serve a Service.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error(
        "identity {identity} may not serve Service {service}: it admits {admitted} (annotation {annotation})",
        annotation = EndpointAuthority::SERVICE_ACCOUNTS
    )]
    Identity {
        identity: String,
        service: String,
        admitted: String,
    },
    #[error(
        "a proxy without a client certificate may not serve Service {service}: it does not allow unauthenticated endpoints (annotation {annotation})",
        annotation = EndpointAuthority::ALLOW_UNAUTHENTICATED
    )]
    Unauthenticated { service: String },
    #[error(
        "inbound_address {address} is not an address of the registering peer {peer}: Service {service} requires its endpoints to announce their own address (annotation {annotation})",
        annotation = EndpointAuthority::ALLOW_ANY_ADDRESS
    )]
    Address {
        address: SocketAddr,
        peer: String,
        service: String,
    },
}

/// Who vouches for an endpoint.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Origin {
    /// A proxy registered itself: its certificate and xDS peer address are
    /// the proof, checked against the Service's annotations.
    #[default]
    Registered,
    /// The cluster's own facts: an EndpointSlice endpoint whose pod the
    /// Service selects, its identity the pod's service account.
    Cluster,
}

/// What a registering proxy offers as proof.
#[derive(Debug, Clone, Copy)]
pub struct Claim<'a> {
    /// The SPIFFE id its client certificate proves; `None` without one.
    pub identity: Option<&'a str>,
    pub address: SocketAddr,
    /// Where its xDS connection comes from.
    pub peer: Option<SocketAddr>,
    /// Who vouches for it.
    pub origin: Origin,
}

/// Whether `claim` may serve `service` in `trust_domain`.
pub fn check(service: &Service, trust_domain: &str, claim: Claim<'_>) -> Result<(), Refusal> {
    let authority = &service.authority;
    let name = || service.key.to_string();
    if claim.origin == Origin::Cluster {
        // The selector check already happened where the cluster's facts are
        // (the pod is the Service's, in its namespace), and nothing a proxy
        // says about itself is involved: only explicit accounts are checked,
        // against the pod's.
        if !authority.explicit {
            return Ok(());
        }
        let identity = claim.identity.unwrap_or("(none)");
        return identity_admitted(service, trust_domain, identity);
    }
    match claim.identity {
        None if !authority.allow_unauthenticated => {
            return Err(Refusal::Unauthenticated { service: name() })
        }
        None => {}
        Some(identity) => identity_admitted(service, trust_domain, identity)?,
    }
    if !authority.allow_any_address && !address_is_peers(claim.address, claim.peer) {
        return Err(Refusal::Address {
            address: claim.address,
            peer: claim
                .peer
                .map_or("(unknown)".to_owned(), |p| p.ip().to_string()),
            service: name(),
        });
    }
    Ok(())
}

/// Whether `identity` is one of the accounts `service` admits, in its
/// namespace and `trust_domain`.
fn identity_admitted(service: &Service, trust_domain: &str, identity: &str) -> Result<(), Refusal> {
    let authority = &service.authority;
    let admitted = identity.parse::<SpiffeId>().is_ok_and(|id| {
        id.trust_domain == trust_domain
            && id.namespace == service.key.namespace
            && authority.allows_account(&id.service_account)
    });
    if admitted {
        return Ok(());
    }
    let accounts = authority
        .service_accounts
        .iter()
        .map(|a| {
            format!(
                "spiffe://{trust_domain}/ns/{}/sa/{a}",
                service.key.namespace
            )
        })
        .collect::<Vec<_>>()
        .join(", ");
    Err(Refusal::Identity {
        identity: identity.to_owned(),
        service: service.key.to_string(),
        admitted: accounts,
    })
}

/// Whether `announced` can be the registering peer's own inbound address: the
/// same IP as the connection (IPv4-mapped IPv6 counts as IPv4), a real port, and
/// not an address nobody can be reached at.
pub fn address_is_peers(announced: SocketAddr, peer: Option<SocketAddr>) -> bool {
    let Some(peer) = peer else {
        return false;
    };
    let ip = canonical(announced.ip());
    announced.port() != 0
        && !ip.is_unspecified()
        && !ip.is_multicast()
        && ip == canonical(peer.ip())
}

/// The address as a connection carries it: an IPv4-mapped IPv6 address is its
/// IPv4 address.
pub fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::ObjectKey;

    fn orders(authority: EndpointAuthority) -> Service {
        Service {
            key: ObjectKey::new("shop", "orders"),
            ports: Vec::new(),
            endpoints: Vec::new(),
            tls: None,
            authority,
            cluster_ip: None,
        }
    }

    fn claim(identity: Option<&str>) -> Claim<'_> {
        Claim {
            identity,
            address: "10.0.0.7:7002".parse().unwrap(),
            peer: Some("10.0.0.7:41000".parse().unwrap()),
            origin: Origin::Registered,
        }
    }

    const TD: &str = "cluster.local";

    #[test]
    fn by_default_only_the_account_named_like_the_service_may_serve_it() {
        let s = orders(EndpointAuthority::named_like("orders"));
        check(
            &s,
            TD,
            claim(Some("spiffe://cluster.local/ns/shop/sa/orders")),
        )
        .unwrap();
        for impostor in [
            "spiffe://cluster.local/ns/shop/sa/web",
            "spiffe://cluster.local/ns/other/sa/orders",
            "spiffe://elsewhere.example/ns/shop/sa/orders",
            "not a spiffe id",
        ] {
            let e = check(&s, TD, claim(Some(impostor))).unwrap_err();
            let message = e.to_string();
            assert!(message.contains(impostor), "{message}");
            assert!(message.contains("shop/orders"), "{message}");
            assert!(
                message.contains("spiffe://cluster.local/ns/shop/sa/orders"),
                "{message}"
            );
        }
    }

    #[test]
    fn the_annotation_lists_the_accounts() {
        let mut a = EndpointAuthority::named_like("orders");
        a.service_accounts = vec!["orders-v1".into(), "orders-v2".into()];
        let s = orders(a);
        check(
            &s,
            TD,
            claim(Some("spiffe://cluster.local/ns/shop/sa/orders-v2")),
        )
        .unwrap();
        check(
            &s,
            TD,
            claim(Some("spiffe://cluster.local/ns/shop/sa/orders")),
        )
        .unwrap_err();
    }

    #[test]
    fn no_certificate_serves_only_what_allows_it() {
        let mut a = EndpointAuthority::named_like("orders");
        let e = check(&orders(a.clone()), TD, claim(None)).unwrap_err();
        assert!(matches!(e, Refusal::Unauthenticated { .. }), "{e}");
        a.allow_unauthenticated = true;
        check(&orders(a), TD, claim(None)).unwrap();
    }

    #[test]
    fn an_address_not_the_peers_is_refused_unless_allowed() {
        let mut a = EndpointAuthority::named_like("orders");
        let mut c = claim(Some("spiffe://cluster.local/ns/shop/sa/orders"));
        c.peer = Some("10.0.0.8:41000".parse().unwrap());
        let e = check(&orders(a.clone()), TD, c).unwrap_err();
        assert!(matches!(e, Refusal::Address { .. }), "{e}");
        assert!(e.to_string().contains("10.0.0.8"), "{e}");
        a.allow_any_address = true;
        check(&orders(a), TD, c).unwrap();
    }

    #[test]
    fn the_cluster_vouches_without_the_annotation_or_a_peer() {
        // An account the annotation does not name, no xDS peer, no address
        // of the peer's: a selected pod's endpoint all the same.
        let strict = orders(EndpointAuthority::named_like("orders"));
        let c = Claim {
            identity: Some("spiffe://cluster.local/ns/shop/sa/orders-canary"),
            address: "10.0.0.9:7002".parse().unwrap(),
            peer: None,
            origin: Origin::Cluster,
        };
        check(&strict, TD, c).unwrap();
        // The same claim made by a proxy about itself is refused.
        let registered = Claim {
            origin: Origin::Registered,
            ..c
        };
        let e = check(&strict, TD, registered).unwrap_err();
        assert!(matches!(e, Refusal::Identity { .. }), "{e}");
    }

    #[test]
    fn in_a_cluster_explicit_accounts_bind_the_selected_pods() {
        // `remora.io/service-accounts: orders`, written: a pod the selector
        // picks but running as another account (anyone who may create pods
        // can label one `app: orders`) does not serve.
        let mut a = EndpointAuthority::named_like("orders");
        a.explicit = true;
        let s = orders(a);
        fn pod(identity: &str) -> Claim<'_> {
            Claim {
                identity: Some(identity),
                address: "10.0.0.9:7002".parse().unwrap(),
                peer: None,
                origin: Origin::Cluster,
            }
        }
        check(&s, TD, pod("spiffe://cluster.local/ns/shop/sa/orders")).unwrap();
        let e = check(&s, TD, pod("spiffe://cluster.local/ns/shop/sa/intruder")).unwrap_err();
        assert!(matches!(e, Refusal::Identity { .. }), "{e}");
        let message = e.to_string();
        assert!(message.contains("sa/intruder"), "{message}");
        assert!(message.contains("shop/orders"), "{message}");
        // Still no certificate or peer address needed from the cluster's pod.
        let none = Claim {
            identity: None,
            ..pod("x")
        };
        assert!(check(&s, TD, none).is_err(), "a pod without an identity");
    }

    #[test]
    fn an_address_is_the_peers_when_the_ip_is_the_connections() {
        let peer = Some("127.0.0.1:40000".parse().unwrap());
        assert!(address_is_peers("127.0.0.1:7002".parse().unwrap(), peer));
        assert!(!address_is_peers("127.0.0.1:0".parse().unwrap(), peer));
        assert!(!address_is_peers("127.0.0.2:7002".parse().unwrap(), peer));
        assert!(!address_is_peers("0.0.0.0:7002".parse().unwrap(), peer));
        assert!(!address_is_peers("127.0.0.1:7002".parse().unwrap(), None));
        let mapped = Some("[::ffff:10.1.2.3]:5000".parse().unwrap());
        assert!(address_is_peers("10.1.2.3:7002".parse().unwrap(), mapped));
    }
}
