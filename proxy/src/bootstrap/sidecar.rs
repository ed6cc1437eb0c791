//! What the bootstrap says about carrying any protocol: the `upstreams` that
//! map a local port to a Service port (explicit mode, as Consul Connect does),
//! protocol detection (`detect`), and what transparent mode does with a
//! connection to an address outside the mesh (`transparent`).

use std::net::SocketAddr;
use std::time::Duration;

use serde::Deserialize;

/// How long the proxy waits for a client's first bytes on a port whose protocol
/// is not declared. Short: a server-first protocol (MySQL, SMTP, NATS) on such a
/// port waits this long before it is carried as opaque TCP.
pub const DEFAULT_DETECT_TIMEOUT: Duration = Duration::from_millis(500);

/// The longest detection timeout accepted: more only stalls server-first clients.
const MAX_DETECT_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Upstream {
    pub service: String,
    pub namespace: String,
    pub port: u16,
    /// Where the app connects to reach it.
    pub listen: SocketAddr,
}

#[derive(Debug, Clone)]
pub struct Sidecar {
    pub upstreams: Vec<Upstream>,
    pub detect_timeout: Duration,
    /// Ports carried as opaque TCP without detection when nothing declares them
    /// (`None`: the documented default list).
    pub opaque_ports: Option<Vec<u16>>,
    /// Transparent mode: a connection to an address that is no Service's is
    /// passed through to it (`true`, the default) or refused.
    pub passthrough: bool,
    /// Where the app listens for each of its Service's TCP ports, when not on
    /// the app's address at that port (`app_ports: {6379: 127.0.0.1:16379}`).
    pub app_ports: std::collections::BTreeMap<u16, SocketAddr>,
}

impl Default for Sidecar {
    fn default() -> Self {
        Self {
            upstreams: Vec::new(),
            detect_timeout: DEFAULT_DETECT_TIMEOUT,
            opaque_ports: None,
            passthrough: true,
            app_ports: Default::default(),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawUpstream {
    service: String,
    namespace: Option<String>,
    port: u16,
    listen: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawDetect {
    pub timeout_ms: Option<u64>,
    pub opaque_ports: Option<Vec<u16>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawTransparent {
    passthrough: Option<bool>,
}

/// The field a value was wrong in, and why.
pub(super) type FieldError = (String, String);

/// The bootstrap's sections about carrying any protocol, as written.
#[derive(Debug, Default)]
pub(super) struct RawSidecar {
    pub upstreams: Option<Vec<RawUpstream>>,
    pub detect: Option<RawDetect>,
    pub transparent: Option<RawTransparent>,
    pub app_ports: Option<std::collections::BTreeMap<u16, String>>,
}

pub(super) fn resolve(raw: RawSidecar, own_namespace: &str) -> Result<Sidecar, FieldError> {
    let RawSidecar {
        upstreams,
        detect,
        transparent,
        app_ports: raw_app_ports,
    } = raw;
    let mut app_ports = std::collections::BTreeMap::new();
    for (port, addr) in raw_app_ports.unwrap_or_default() {
        let field = format!("app_ports.{port}");
        if port == 0 {
            return Err((field, "ports are 1-65535".into()));
        }
        let addr = super::socket_addr(&addr).map_err(|e| (field, e))?;
        app_ports.insert(port, addr);
    }
    let mut out = Vec::new();
    for (i, u) in upstreams.unwrap_or_default().into_iter().enumerate() {
        let field = |name: &str| format!("upstreams[{i}].{name}");
        if !super::is_dns_label(&u.service) {
            return Err((
                field("service"),
                format!("`{}` is not a valid service name", u.service),
            ));
        }
        let namespace = u.namespace.unwrap_or_else(|| own_namespace.to_owned());
        if !super::is_dns_label(&namespace) {
            return Err((
                field("namespace"),
                format!("`{namespace}` is not a valid namespace"),
            ));
        }
        if u.port == 0 {
            return Err((field("port"), "must be 1-65535".into()));
        }
        let listen = super::socket_addr(&u.listen).map_err(|e| (field("listen"), e))?;
        if out
            .iter()
            .any(|o: &Upstream| o.listen == listen && listen.port() != 0)
        {
            return Err((
                field("listen"),
                format!("{listen} is already used by another upstream"),
            ));
        }
        out.push(Upstream {
            service: u.service,
            namespace,
            port: u.port,
            listen,
        });
    }
    let detect = detect.unwrap_or_default();
    let detect_timeout = match detect.timeout_ms {
        None => DEFAULT_DETECT_TIMEOUT,
        Some(0) => return Err(("detect.timeout_ms".into(), "must be at least 1".into())),
        Some(ms) if Duration::from_millis(ms) > MAX_DETECT_TIMEOUT => {
            return Err((
                "detect.timeout_ms".into(),
                format!("{ms} is more than {} ms", MAX_DETECT_TIMEOUT.as_millis()),
            ))
        }
        Some(ms) => Duration::from_millis(ms),
    };
    if detect.opaque_ports.as_ref().is_some_and(|p| p.contains(&0)) {
        return Err(("detect.opaque_ports".into(), "ports are 1-65535".into()));
    }
    Ok(Sidecar {
        upstreams: out,
        detect_timeout,
        opaque_ports: detect.opaque_ports,
        passthrough: transparent.unwrap_or_default().passthrough.unwrap_or(true),
        app_ports,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn upstream(service: &str, port: u16, listen: &str) -> RawUpstream {
        RawUpstream {
            service: service.into(),
            namespace: None,
            port,
            listen: listen.into(),
        }
    }

    #[test]
    fn upstreams_default_to_the_proxys_namespace() {
        let raw = RawSidecar {
            upstreams: Some(vec![upstream("redis", 6379, "127.0.0.1:16379")]),
            ..Default::default()
        };
        let s = resolve(raw, "shop").unwrap();
        assert_eq!(s.upstreams[0].namespace, "shop");
        assert_eq!(s.detect_timeout, DEFAULT_DETECT_TIMEOUT);
        assert!(s.passthrough);
    }

    #[test]
    fn bad_values_name_their_field() {
        let err = |upstreams, detect| {
            let raw = RawSidecar {
                upstreams,
                detect,
                ..Default::default()
            };
            resolve(raw, "default").unwrap_err().0
        };
        assert_eq!(
            err(Some(vec![upstream("Redis", 1, "127.0.0.1:1")]), None),
            "upstreams[0].service"
        );
        assert_eq!(
            err(Some(vec![upstream("redis", 0, "127.0.0.1:1")]), None),
            "upstreams[0].port"
        );
        assert_eq!(
            err(Some(vec![upstream("redis", 1, "localhost")]), None),
            "upstreams[0].listen"
        );
        assert_eq!(
            err(
                Some(vec![
                    upstream("a", 1, "127.0.0.1:9"),
                    upstream("b", 1, "127.0.0.1:9")
                ]),
                None
            ),
            "upstreams[1].listen"
        );
        let detect = |ms| {
            Some(RawDetect {
                timeout_ms: Some(ms),
                opaque_ports: None,
            })
        };
        assert_eq!(err(None, detect(0)), "detect.timeout_ms");
        assert_eq!(err(None, detect(60_000)), "detect.timeout_ms");
        let ports = RawSidecar {
            app_ports: Some([(6379, "redis".to_owned())].into()),
            ..Default::default()
        };
        assert_eq!(resolve(ports, "default").unwrap_err().0, "app_ports.6379");
    }
}
