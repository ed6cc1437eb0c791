//! `Service` (core/v1 subset) plus Remora's static `endpoints` extension.

use std::net::IpAddr;

use super::ObjectKey;

/// A Service: a name other services call, its ports, and (file mode) static
/// endpoints for backends that run no proxy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Service {
    pub key: ObjectKey,
    /// In the order written; the first HTTP port owns the port-less host names.
    pub ports: Vec<ServicePort>,
    pub endpoints: Vec<StaticEndpoint>,
    /// How the static endpoints are reached: plaintext (`None`) or ordinary TLS.
    pub tls: Option<OriginTls>,
    /// Which proxies may register as its endpoints.
    pub authority: EndpointAuthority,
    /// `spec.clusterIP`: the virtual address callers connect to, which a
    /// transparent proxy routes by (`None`: headless or not given). No two
    /// Services share one.
    pub cluster_ip: Option<IpAddr>,
}

/// Who may serve a Service (its `remora.io/*` annotations). A proxy registers
/// as an endpoint only when its client certificate proves one of these service
/// accounts, in the Service's namespace. In Kubernetes mode only an explicit
/// `remora.io/service-accounts` applies, to the pods the Service selects (see
/// [`crate::authority`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EndpointAuthority {
    /// `remora.io/service-accounts` (comma-separated); by default the one named
    /// like the Service.
    pub service_accounts: Vec<String>,
    /// `remora.io/service-accounts` was written (not the default). In a
    /// cluster the default does not apply (the selector is the authority), an
    /// explicit list does: a selected pod must run as one of its accounts.
    pub explicit: bool,
    /// `remora.io/allow-unauthenticated-endpoints: "true"`: proxies without a
    /// certificate may serve it, and callers send to them in plaintext.
    pub allow_unauthenticated: bool,
    /// `remora.io/allow-any-inbound-address: "true"`: an endpoint may announce
    /// an address that is not the one its xDS connection comes from (behind NAT,
    /// or a proxy that is reached through a load balancer).
    pub allow_any_address: bool,
}

impl EndpointAuthority {
    pub const SERVICE_ACCOUNTS: &'static str = "remora.io/service-accounts";
    pub const ALLOW_UNAUTHENTICATED: &'static str = "remora.io/allow-unauthenticated-endpoints";
    pub const ALLOW_ANY_ADDRESS: &'static str = "remora.io/allow-any-inbound-address";

    /// The default: only the service account named like the Service.
    pub fn named_like(service: &str) -> Self {
        EndpointAuthority {
            service_accounts: vec![service.to_owned()],
            explicit: false,
            allow_unauthenticated: false,
            allow_any_address: false,
        }
    }

    pub fn allows_account(&self, account: &str) -> bool {
        self.service_accounts.iter().any(|a| a == account)
    }
}

/// Ordinary (server-authenticated) TLS to a Service's static endpoints.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OriginTls {
    /// Sent as SNI and `Host`, and the DNS name the certificate must carry.
    pub server_name: String,
    /// PEM roots to verify with; `None`: the proxy's system bundle.
    pub ca_certificates: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServicePort {
    pub name: Option<String>,
    pub port: u16,
    pub protocol: AppProtocol,
    /// `targetPort`: where the Service's workloads serve this port. `None`
    /// (file mode without `targetPort`, or a name the cluster did not
    /// resolve): HTTP goes to the proxy's `app`, opaque TCP to the port itself.
    pub target_port: Option<u16>,
}

impl ServicePort {
    /// The app port behind this Service port: `targetPort`, else the port.
    pub fn target(&self) -> u16 {
        self.target_port.unwrap_or(self.port)
    }
}

/// What a port speaks (`spec.ports[].appProtocol`): HTTP, routed by request, or
/// an opaque byte stream, balanced per connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AppProtocol {
    /// `http` (also the default): HTTP/1.1 to the backend.
    Http,
    /// `kubernetes.io/h2c`: HTTP/2 without TLS.
    H2c,
    /// `grpc`: HTTP/2.
    Grpc,
    /// Bytes proxied as they are, one connection to one endpoint.
    Opaque(OpaqueProtocol),
}

/// The opaque protocols `appProtocol` names. All are carried the same way, as
/// TCP; the name is kept so what the user wrote shows in config and telemetry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpaqueProtocol {
    Tcp,
    Mysql,
    Postgresql,
    Redis,
    Nats,
    Amqp,
    Mqtt,
    Kafka,
    Smtp,
}

impl OpaqueProtocol {
    pub fn as_str(self) -> &'static str {
        match self {
            OpaqueProtocol::Tcp => "tcp",
            OpaqueProtocol::Mysql => "mysql",
            OpaqueProtocol::Postgresql => "postgresql",
            OpaqueProtocol::Redis => "redis",
            OpaqueProtocol::Nats => "nats",
            OpaqueProtocol::Amqp => "amqp",
            OpaqueProtocol::Mqtt => "mqtt",
            OpaqueProtocol::Kafka => "kafka",
            OpaqueProtocol::Smtp => "smtp",
        }
    }
}

impl AppProtocol {
    /// Every value `appProtocol` accepts, HTTP ones first.
    pub const ALL: [AppProtocol; 12] = [
        AppProtocol::Http,
        AppProtocol::H2c,
        AppProtocol::Grpc,
        AppProtocol::Opaque(OpaqueProtocol::Tcp),
        AppProtocol::Opaque(OpaqueProtocol::Mysql),
        AppProtocol::Opaque(OpaqueProtocol::Postgresql),
        AppProtocol::Opaque(OpaqueProtocol::Redis),
        AppProtocol::Opaque(OpaqueProtocol::Nats),
        AppProtocol::Opaque(OpaqueProtocol::Amqp),
        AppProtocol::Opaque(OpaqueProtocol::Mqtt),
        AppProtocol::Opaque(OpaqueProtocol::Kafka),
        AppProtocol::Opaque(OpaqueProtocol::Smtp),
    ];

    pub fn parse(value: &str) -> Option<AppProtocol> {
        Self::ALL.into_iter().find(|p| p.as_str() == value)
    }

    /// As written in `appProtocol`.
    pub fn as_str(self) -> &'static str {
        match self {
            AppProtocol::Http => "http",
            AppProtocol::H2c => "kubernetes.io/h2c",
            AppProtocol::Grpc => "grpc",
            AppProtocol::Opaque(p) => p.as_str(),
        }
    }

    pub fn is_http2(self) -> bool {
        matches!(self, AppProtocol::H2c | AppProtocol::Grpc)
    }

    /// Not HTTP: no routes, no HTTP filters; proxied per connection.
    pub fn is_opaque(self) -> bool {
        matches!(self, AppProtocol::Opaque(_))
    }
}

/// A backend that runs no proxy: `address:port` serves the Service's `service_port`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StaticEndpoint {
    pub address: IpAddr,
    pub port: u16,
    pub service_port: u16,
}

impl Service {
    /// The port a reference means: the given number, or the only port when none is
    /// given. `None` when the port does not exist or the choice is ambiguous.
    pub fn resolve_port(&self, port: Option<u16>) -> Option<&ServicePort> {
        match port {
            Some(p) => self.ports.iter().find(|sp| sp.port == p),
            None if self.ports.len() == 1 => self.ports.first(),
            None => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_app_protocol_parses_back_from_its_name() {
        for protocol in AppProtocol::ALL {
            assert_eq!(AppProtocol::parse(protocol.as_str()), Some(protocol));
        }
        assert_eq!(AppProtocol::parse("HTTP"), None, "names are case-sensitive");
    }

    #[test]
    fn opaque_protocols_are_neither_http1_nor_http2() {
        let redis = AppProtocol::parse("redis").unwrap();
        assert!(redis.is_opaque() && !redis.is_http2());
        assert!(AppProtocol::Grpc.is_http2() && !AppProtocol::Grpc.is_opaque());
        assert!(!AppProtocol::Http.is_http2() && !AppProtocol::Http.is_opaque());
    }
}
