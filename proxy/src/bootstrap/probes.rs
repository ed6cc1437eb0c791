//! The app's own kubelet probes, which the proxy runs on the kubelet's
//! behalf (`REMORA_APP_PROBES`, written by injection).
//!
//! Under STRICT mTLS the kubelet's plaintext probe of an app port would be
//! redirected to the inbound listener and refused, so injection points each
//! probe at the admin port (`/app-health/<container>/<livez|readyz|startupz>`)
//! and hands the original here, keyed by that path:
//!
//! ```json
//! {"/app-health/app/livez": {"httpGet": {"path": "/healthz", "port": 8080,
//!   "httpHeaders": [{"name": "x-probe", "value": "1"}]}, "timeoutSeconds": 2},
//!  "/app-health/app/readyz": {"tcpSocket": {"port": 8080}},
//!  "/app-health/app/startupz": {"grpc": {"port": 9090, "service": "orders"}}}
//! ```
//!
//! Ports are numbers (injection resolved named ones); other fields an entry
//! carries for injection's own use (`portName`) are ignored. Only HTTP
//! (`scheme` absent or `HTTP`) and no `host`: the proxy probes the app on
//! 127.0.0.1. A `grpc` probe's `service` is optional, `""` (the server as a
//! whole) when absent, as for the kubelet.

use std::collections::BTreeMap;
use std::time::Duration;

use http::{HeaderName, HeaderValue};
use serde::Deserialize;

/// The variable injection writes them to.
pub const APP_PROBES: &str = "REMORA_APP_PROBES";

/// Where every admin path of an app probe starts.
pub const APP_HEALTH_PREFIX: &str = "/app-health/";

/// The kubelet's default probe timeout.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(1);

/// The longest a probe may take: a probe that hangs must not hold an admin
/// connection for longer.
pub const MAX_TIMEOUT: Duration = Duration::from_secs(10);

/// The app's probes by admin path.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AppProbes(BTreeMap<String, AppProbe>);

impl AppProbes {
    /// The probe served at `path`, if injection put one there.
    pub fn get(&self, path: &str) -> Option<&AppProbe> {
        self.0.get(path)
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }
}

/// One probe of the app, as the proxy runs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppProbe {
    pub action: ProbeAction,
    /// The kubelet's `timeoutSeconds`, at most [`MAX_TIMEOUT`].
    pub timeout: Duration,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProbeAction {
    /// `GET http://127.0.0.1:<port><path>` with the headers: the app's
    /// status is the answer.
    Http {
        port: u16,
        path: String,
        headers: Vec<(HeaderName, HeaderValue)>,
    },
    /// A TCP connect to 127.0.0.1:<port>.
    Tcp { port: u16 },
    /// The standard gRPC health check (`grpc.health.v1.Health/Check`) of
    /// `service` over h2c at 127.0.0.1:<port>: only SERVING succeeds.
    Grpc { port: u16, service: String },
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawProbe {
    http_get: Option<RawHttpGet>,
    tcp_socket: Option<RawTcpSocket>,
    grpc: Option<RawGrpc>,
    timeout_seconds: Option<u64>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RawHttpGet {
    port: u16,
    path: Option<String>,
    scheme: Option<String>,
    host: Option<String>,
    http_headers: Option<Vec<RawHeader>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTcpSocket {
    port: u16,
    host: Option<String>,
}

/// Kubernetes' `GRPCAction`: a number for a port (no named ports), and no
/// host or scheme to refuse.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawGrpc {
    port: u16,
    service: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHeader {
    name: String,
    value: String,
}

/// Reads `REMORA_APP_PROBES`; the error says which path and field is wrong.
pub fn parse(text: &str) -> Result<AppProbes, String> {
    let raw: BTreeMap<String, RawProbe> =
        serde_json::from_str(text).map_err(|e| format!("is not the JSON injection writes: {e}"))?;
    let mut out = BTreeMap::new();
    for (path, probe) in raw {
        let probe = one(&path, probe).map_err(|e| format!("`{path}`: {e}"))?;
        out.insert(path, probe);
    }
    Ok(AppProbes(out))
}

fn one(path: &str, raw: RawProbe) -> Result<AppProbe, String> {
    if !path.starts_with(APP_HEALTH_PREFIX) || path.contains(['?', '#']) {
        return Err(format!("the path must start with {APP_HEALTH_PREFIX}"));
    }
    let blank = |host: &Option<String>| host.as_deref().is_none_or(|h| h.trim().is_empty());
    let action = match (raw.http_get, raw.tcp_socket, raw.grpc) {
        (Some(get), None, None) => {
            if !get
                .scheme
                .as_deref()
                .is_none_or(|s| s.eq_ignore_ascii_case("HTTP"))
            {
                return Err("httpGet.scheme: only HTTP probes are run by the proxy".into());
            }
            if !blank(&get.host) {
                return Err("httpGet.host: the proxy probes the app on 127.0.0.1".into());
            }
            let mut headers = Vec::new();
            for h in get.http_headers.unwrap_or_default() {
                let name = HeaderName::from_bytes(h.name.as_bytes()).map_err(|_| {
                    format!("httpGet.httpHeaders: `{}` is not a header name", h.name)
                })?;
                let value = HeaderValue::from_str(&h.value).map_err(|_| {
                    format!(
                        "httpGet.httpHeaders: the value of `{}` is not valid",
                        h.name
                    )
                })?;
                headers.push((name, value));
            }
            let path = match get.path.unwrap_or_default() {
                p if p.is_empty() => "/".to_owned(),
                p if p.starts_with('/') => p,
                p => format!("/{p}"),
            };
            if path.parse::<http::uri::PathAndQuery>().is_err() {
                return Err(format!("httpGet.path: `{path}` is not a request path"));
            }
            ProbeAction::Http {
                port: nonzero(get.port, "httpGet.port")?,
                path,
                headers,
            }
        }
        (None, Some(tcp), None) => {
            if !blank(&tcp.host) {
                return Err("tcpSocket.host: the proxy probes the app on 127.0.0.1".into());
            }
            ProbeAction::Tcp {
                port: nonzero(tcp.port, "tcpSocket.port")?,
            }
        }
        (None, None, Some(grpc)) => ProbeAction::Grpc {
            port: nonzero(grpc.port, "grpc.port")?,
            service: grpc.service.unwrap_or_default(),
        },
        _ => return Err("give one of httpGet, tcpSocket or grpc".into()),
    };
    let timeout = raw
        .timeout_seconds
        .filter(|s| *s > 0)
        .map_or(DEFAULT_TIMEOUT, Duration::from_secs)
        .min(MAX_TIMEOUT);
    Ok(AppProbe { action, timeout })
}

fn nonzero(port: u16, field: &str) -> Result<u16, String> {
    match port {
        0 => Err(format!("{field}: ports are 1-65535")),
        p => Ok(p),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_injection_writes_is_read() {
        let probes = parse(
            r#"{"/app-health/app/livez":{"httpGet":{"path":"/healthz","port":8080,"httpHeaders":[{"name":"X-Probe","value":"live"}]},"timeoutSeconds":2,"portName":"http"},"/app-health/app/readyz":{"tcpSocket":{"port":8080}},"/app-health/app/startupz":{"httpGet":{"path":"started","port":8080,"scheme":"HTTP"},"timeoutSeconds":600}}"#,
        )
        .unwrap();
        assert_eq!(probes.len(), 3);
        let live = probes.get("/app-health/app/livez").unwrap();
        assert_eq!(
            live.action,
            ProbeAction::Http {
                port: 8080,
                path: "/healthz".into(),
                headers: vec![(
                    HeaderName::from_static("x-probe"),
                    HeaderValue::from_static("live")
                )],
            }
        );
        assert_eq!(live.timeout, Duration::from_secs(2));
        let ready = probes.get("/app-health/app/readyz").unwrap();
        assert_eq!(ready.action, ProbeAction::Tcp { port: 8080 });
        assert_eq!(ready.timeout, DEFAULT_TIMEOUT, "the kubelet's default");
        let startup = probes.get("/app-health/app/startupz").unwrap();
        assert!(matches!(&startup.action, ProbeAction::Http { path, .. } if path == "/started"));
        assert_eq!(startup.timeout, MAX_TIMEOUT, "capped");
        assert!(probes.get("/app-health/app/other").is_none());
    }

    #[test]
    fn a_grpc_probe_is_read_with_its_service_or_the_whole_server() {
        let probes = parse(
            r#"{"/app-health/app/livez":{"grpc":{"port":9090,"service":"orders"},"timeoutSeconds":3},"/app-health/app/readyz":{"grpc":{"port":9090}}}"#,
        )
        .unwrap();
        let live = probes.get("/app-health/app/livez").unwrap();
        assert_eq!(
            live.action,
            ProbeAction::Grpc {
                port: 9090,
                service: "orders".into()
            }
        );
        assert_eq!(live.timeout, Duration::from_secs(3));
        let ready = probes.get("/app-health/app/readyz").unwrap();
        assert_eq!(
            ready.action,
            ProbeAction::Grpc {
                port: 9090,
                service: String::new()
            },
            "no service: the server as a whole"
        );
        assert_eq!(ready.timeout, DEFAULT_TIMEOUT, "the kubelet's default");
    }

    #[test]
    fn a_grpc_probe_without_a_usable_port_or_service_is_refused() {
        for (grpc, expected) in [
            (r#"{"service":"x"}"#, "missing field `port`"),
            (r#"{"port":0}"#, "grpc.port: ports are 1-65535"),
            (r#"{"port":70000}"#, "is not the JSON"),
            (r#"{"port":"grpc"}"#, "is not the JSON"),
            (r#"{"port":9090,"service":5}"#, "is not the JSON"),
            (r#"{"port":9090,"host":"10.0.0.1"}"#, "unknown field `host`"),
            (r#"9090"#, "is not the JSON"),
        ] {
            let text = format!(r#"{{"/app-health/a/livez":{{"grpc":{grpc}}}}}"#);
            let err = parse(&text).unwrap_err();
            assert!(err.contains(expected), "{text}: {err}");
        }
        let both = r#"{"/app-health/a/livez":{"grpc":{"port":1},"tcpSocket":{"port":1}}}"#;
        assert!(parse(both).unwrap_err().contains("give one of"));
    }

    #[test]
    fn what_the_proxy_cannot_run_is_refused_naming_the_path() {
        for (text, expected) in [
            ("[]", "is not the JSON"),
            (r#"{"/live":{"tcpSocket":{"port":1}}}"#, "`/live`: the path"),
            (r#"{"/app-health/a/livez":{}}"#, "give one of"),
            (
                r#"{"/app-health/a/livez":{"httpGet":{"port":443,"scheme":"HTTPS"}}}"#,
                "scheme",
            ),
            (
                r#"{"/app-health/a/livez":{"httpGet":{"port":80,"host":"10.0.0.1"}}}"#,
                "host",
            ),
            (
                r#"{"/app-health/a/livez":{"tcpSocket":{"port":0}}}"#,
                "1-65535",
            ),
            (
                r#"{"/app-health/a/livez":{"tcpSocket":{"port":"http"}}}"#,
                "is not the JSON",
            ),
            (
                r#"{"/app-health/a/livez":{"httpGet":{"port":80,"httpHeaders":[{"name":"bad name","value":"x"}]}}}"#,
                "not a header name",
            ),
        ] {
            let err = parse(text).unwrap_err();
            assert!(err.contains(expected), "{text}: {err}");
        }
    }
}
