//! Which address of the app an inbound HTTP request goes to. The inbound
//! listener serves every port of its Service; each Service port maps to an app
//! port (its `targetPort`), which the caller's proxy names in
//! `remora-target-port`. Pure, so each rule is a test:
//!
//! - A verified mesh peer (mTLS) may name a port. It must be one of the
//!   Service's HTTP target ports (`http_ports`), else the request is refused
//!   ([`NotAnHttpPort`], answered 404): a peer reaches the ports its Service
//!   declares, never any other port of the app's host. Without the header (an
//!   older peer, a Service without targets): the bootstrap's `app`.
//! - Anyone else (plaintext while PERMISSIVE, or any caller of a proxy without
//!   a certificate) proves nothing, so the header is ignored. A redirected
//!   connection (transparent mode) goes to its original destination port when
//!   that is an HTTP target port; anything else to `app`.
//!
//! An app port is reached where the bootstrap's `app_ports` says, else at the
//! app's IP: the rule opaque TCP follows.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;

use http::HeaderValue;

/// Where the app listens: the bootstrap's `app` (requests that name no port),
/// and its `app_ports` (a port served elsewhere than at the app's IP).
#[derive(Debug, Clone)]
pub struct AppAddresses {
    pub app: SocketAddr,
    pub app_ports: BTreeMap<u16, SocketAddr>,
    /// The proxy's own listeners, which no target may name.
    pub own: OwnListeners,
}

impl AppAddresses {
    /// Where the app serves `port`.
    pub fn port(&self, port: u16) -> SocketAddr {
        self.app_ports
            .get(&port)
            .copied()
            .unwrap_or(SocketAddr::new(self.app.ip(), port))
    }
}

/// The addresses the proxy itself listens on. A Service whose `targetPort`
/// (or opaque port) is one of them would hand a peer the proxy's admin port
/// as a loopback caller (`/shutdown`, `/config_dump`), or its outbound
/// listener to call other Services as this workload, so no peer's request is
/// ever forwarded to one.
#[derive(Debug, Clone, Default)]
pub struct OwnListeners(Vec<SocketAddr>);

impl OwnListeners {
    pub fn new(addresses: impl IntoIterator<Item = SocketAddr>) -> Self {
        Self(addresses.into_iter().collect())
    }

    /// Whether connecting to `addr` could reach one of the listeners: the same
    /// port, and a listener on every address, on `addr`'s, or both on loopback.
    pub fn contains(&self, addr: SocketAddr) -> bool {
        self.0.iter().any(|own| {
            own.port() == addr.port()
                && (own.ip().is_unspecified()
                    || own.ip() == addr.ip()
                    || (own.ip().is_loopback() && addr.ip().is_loopback()))
        })
    }
}

/// Who sent a request, as far as its connection proves it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Caller {
    /// A mesh peer that proved its identity over mTLS.
    Verified,
    /// Anyone else; `original_port`: the port a redirected connection was for.
    Unverified { original_port: Option<u16> },
}

/// A verified peer asked for a port that is not one of the Service's HTTP
/// ports.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("port {port} is not an HTTP port of this Service")]
pub struct NotAnHttpPort {
    /// As the peer wrote it, cut to `SHOWN` bytes.
    pub port: String,
}

/// How much of a hostile value a refusal repeats.
const SHOWN: usize = 16;

/// The app address of a request from `caller` that carried `target` (its
/// `remora-target-port`), for a Service whose HTTP ports are served on the app
/// ports `http_ports`.
pub fn app_for(
    target: Option<&HeaderValue>,
    caller: Caller,
    http_ports: &BTreeSet<u16>,
    apps: &AppAddresses,
) -> Result<SocketAddr, NotAnHttpPort> {
    match caller {
        Caller::Verified => {
            let Some(value) = target else {
                return Ok(apps.app);
            };
            std::str::from_utf8(value.as_bytes())
                .ok()
                .and_then(|text| text.parse::<u16>().ok())
                .filter(|port| http_ports.contains(port))
                .map(|port| apps.port(port))
                .filter(|addr| !apps.own.contains(*addr))
                .ok_or_else(|| NotAnHttpPort { port: shown(value) })
        }
        Caller::Unverified { original_port } => Ok(original_port
            .filter(|port| http_ports.contains(port))
            .map(|port| apps.port(port))
            .filter(|addr| !apps.own.contains(*addr))
            .unwrap_or(apps.app)),
    }
}

/// `value` as a refusal repeats it: at most `SHOWN` bytes, lossily.
fn shown(value: &HeaderValue) -> String {
    let bytes = value.as_bytes();
    let mut text = String::from_utf8_lossy(&bytes[..bytes.len().min(SHOWN)]).into_owned();
    if bytes.len() > SHOWN {
        text.push_str("...");
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn apps() -> AppAddresses {
        AppAddresses {
            app: ([127, 0, 0, 1], 3000).into(),
            app_ports: BTreeMap::from([(9090, ([127, 0, 0, 1], 19090).into())]),
            own: OwnListeners::new([([0, 0, 0, 0], 7900).into(), ([127, 0, 0, 1], 7001).into()]),
        }
    }

    #[test]
    fn no_target_reaches_the_proxys_own_listeners() {
        let mut http_ports = ports();
        http_ports.extend([7900, 7001]);
        for port in ["7900", "7001"] {
            let to = app_for(Some(&header(port)), Caller::Verified, &http_ports, &apps());
            assert_eq!(
                to,
                Err(NotAnHttpPort { port: port.into() }),
                "a Service naming {port} does not open the proxy to its peers"
            );
        }
        let redirected = Caller::Unverified {
            original_port: Some(7900),
        };
        assert_eq!(
            app_for(None, redirected, &http_ports, &apps()),
            Ok(apps().app)
        );
        let own = apps().own;
        assert!(
            own.contains(([10, 0, 0, 5], 7900).into()),
            "0.0.0.0 is every address"
        );
        assert!(own.contains(([127, 0, 0, 1], 7001).into()));
        assert!(
            !own.contains(([10, 0, 0, 5], 7001).into()),
            "7001 is on loopback only"
        );
        assert!(!own.contains(([127, 0, 0, 1], 8080).into()));
    }

    fn ports() -> BTreeSet<u16> {
        BTreeSet::from([8080, 9090])
    }

    fn header(value: &str) -> HeaderValue {
        HeaderValue::from_str(value).unwrap()
    }

    fn addr(port: u16) -> SocketAddr {
        ([127, 0, 0, 1], port).into()
    }

    #[test]
    fn a_verified_peer_reaches_an_http_target_port_at_the_app_or_where_app_ports_says() {
        let to = |port: &str| app_for(Some(&header(port)), Caller::Verified, &ports(), &apps());
        assert_eq!(to("8080"), Ok(addr(8080)), "the app's IP at the port");
        assert_eq!(to("9090"), Ok(addr(19090)), "app_ports maps it");
    }

    #[test]
    fn without_the_header_a_request_goes_to_app() {
        let apps = apps();
        for caller in [
            Caller::Verified,
            Caller::Unverified {
                original_port: None,
            },
        ] {
            assert_eq!(app_for(None, caller, &ports(), &apps), Ok(apps.app));
        }
        assert_eq!(
            app_for(None, Caller::Verified, &BTreeSet::new(), &apps),
            Ok(apps.app),
            "a Service without targets"
        );
    }

    #[test]
    fn a_port_the_service_does_not_serve_over_http_is_refused_with_the_reason() {
        let to = |port: &str| app_for(Some(&header(port)), Caller::Verified, &ports(), &apps());
        for (asked, shown) in [
            ("22", "22"),
            ("0", "0"),
            ("http", "http"),
            ("65536", "65536"),
            ("80800000000000000000", "8080000000000000..."),
        ] {
            let refused = to(asked).unwrap_err();
            assert_eq!(refused.port, shown);
            assert_eq!(
                refused.to_string(),
                format!("port {shown} is not an HTTP port of this Service")
            );
        }
        let none = app_for(
            Some(&header("8080")),
            Caller::Verified,
            &BTreeSet::new(),
            &apps(),
        );
        assert!(none.is_err(), "a Service without targets names no port");
    }

    #[test]
    fn an_unverified_caller_is_not_believed_and_goes_by_its_original_destination() {
        let apps = apps();
        let plaintext = |original_port| Caller::Unverified { original_port };
        let lie = header("9090");
        assert_eq!(
            app_for(Some(&lie), plaintext(None), &ports(), &apps),
            Ok(apps.app),
            "the header is ignored"
        );
        assert_eq!(
            app_for(Some(&header("22")), plaintext(None), &ports(), &apps),
            Ok(apps.app),
            "nor refused: it proves nothing either way"
        );
        assert_eq!(
            app_for(Some(&lie), plaintext(Some(8080)), &ports(), &apps),
            Ok(addr(8080)),
            "a redirected connection to an HTTP target port"
        );
        assert_eq!(
            app_for(None, plaintext(Some(22)), &ports(), &apps),
            Ok(apps.app),
            "to another port: app, as before"
        );
    }
}
