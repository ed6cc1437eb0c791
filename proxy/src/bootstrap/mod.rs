//! The bootstrap: who this proxy is, where its control plane is and where it
//! listens. Everything else arrives over xDS.
//!
//! It is read from a YAML file (`--bootstrap FILE`) or, in a Kubernetes pod,
//! from environment variables ([`env`]: `REMORA_BOOTSTRAP_FROM_ENV=1`); both go
//! through the same checks and defaults, and an error names the field or the
//! variable.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};

use serde::Deserialize;

pub mod env;
pub mod probes;
mod sidecar;
pub use probes::{AppProbe, AppProbes, ProbeAction};
pub use sidecar::{Sidecar, Upstream, DEFAULT_DETECT_TIMEOUT};

use crate::identity::TokenSource;
use crate::telemetry::access_log::Destination;

/// Errors reading a bootstrap file; each names the file and, where it can, the field.
#[derive(Debug, thiserror::Error)]
pub enum BootstrapError {
    #[error("bootstrap {path}: cannot read: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("bootstrap {path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("bootstrap {path}: field `{field}`: {message}")]
    Field {
        path: PathBuf,
        field: &'static str,
        message: String,
    },
    #[error("bootstrap {path}: field `{field}`: {message}")]
    Sidecar {
        path: PathBuf,
        field: String,
        message: String,
    },
    /// A bootstrap from the environment: the variable that is wrong.
    #[error("bootstrap from the environment: {variable}: {message}")]
    Variable {
        variable: &'static str,
        message: String,
    },
}

/// The parsed bootstrap, with defaults from DESIGN.md applied.
#[derive(Debug, Clone)]
pub struct Bootstrap {
    pub node_id: String,
    pub service: String,
    pub namespace: String,
    pub control_plane: SocketAddr,
    /// The local application: the inbound listener forwards here.
    pub app: SocketAddr,
    pub outbound: SocketAddr,
    pub inbound: SocketAddr,
    pub admin: SocketAddr,
    /// Where other proxies reach the inbound listener; `None` means derive it from
    /// the bound inbound address.
    pub advertise: Option<SocketAddr>,
    /// The workload identity this proxy asks certificates for.
    pub trust_domain: String,
    /// The control plane's namespace: the proxy verifies the control plane's
    /// certificate as `spiffe://<trust_domain>/ns/<this>/sa/remora-control`.
    pub control_plane_namespace: String,
    pub service_account: String,
    /// The bootstrap token that grants the identity; without one the proxy runs
    /// without a certificate (plaintext only, until mTLS is required).
    pub token: Option<TokenSource>,
    /// The mesh's trust bundle (PEM, from `remora trust-bundle`) and its file:
    /// with it, even the first certificate request (which carries the token)
    /// goes over TLS to a verified control plane.
    pub trust_bundle: Option<crate::tls::TrustBundle>,
    /// Where access log lines go (`access_log`: `stdout`, the default; `off`; or
    /// a file path).
    pub access_log: Destination,
    /// Where spans go and how many new traces are sampled (`tracing`); `None`:
    /// no spans, headers pass through untouched.
    pub tracing: Option<crate::telemetry::trace::Settings>,
    /// How often the hops' counters go to the control plane
    /// (`report_interval_ms`; 0: never).
    pub report_interval: std::time::Duration,
    /// Bootstrap `metrics`: `on` (the default) or `off` (no per-hop series and
    /// no reports; for measuring what they cost).
    pub metrics: bool,
    /// Bootstrap `limits`: sizes, connections, idle time.
    pub limits: crate::limits::Limits,
    /// Bootstrap `upstreams`, `detect` and `transparent`: carrying any protocol.
    pub sidecar: Sidecar,
    /// Bootstrap `state_dir`: where the last accepted config (and, with a
    /// token, the certificate and key) survive a restart; `None`: nothing kept.
    /// A relative path is taken from the bootstrap file's folder.
    pub state_dir: Option<PathBuf>,
    /// Bootstrap `drain`: the propagation window and the hard cap of a drain.
    pub drain: crate::drain::Settings,
    /// The app's kubelet probes the admin port runs (`REMORA_APP_PROBES`, a
    /// pod's only); empty from a file.
    pub app_probes: AppProbes,
}

/// Bootstrap `tracing`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTracing {
    collector: String,
    sample_rate: Option<f64>,
}

/// How often a proxy reports its traffic to the control plane, by default.
pub const DEFAULT_REPORT_INTERVAL_MS: u64 = 2000;

/// The share of new traces sampled when `tracing.sample_rate` is not given.
pub const DEFAULT_SAMPLE_RATE: f64 = 0.01;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBootstrap {
    node_id: Option<String>,
    service: Option<String>,
    namespace: Option<String>,
    control_plane: Option<String>,
    app: Option<String>,
    outbound: Option<String>,
    inbound: Option<String>,
    admin: Option<String>,
    advertise: Option<String>,
    trust_domain: Option<String>,
    control_plane_namespace: Option<String>,
    service_account: Option<String>,
    token: Option<String>,
    token_file: Option<PathBuf>,
    trust_bundle_file: Option<PathBuf>,
    access_log: Option<String>,
    tracing: Option<RawTracing>,
    report_interval_ms: Option<u64>,
    metrics: Option<String>,
    limits: Option<crate::limits::RawLimits>,
    upstreams: Option<Vec<sidecar::RawUpstream>>,
    detect: Option<sidecar::RawDetect>,
    transparent: Option<sidecar::RawTransparent>,
    app_ports: Option<std::collections::BTreeMap<u16, String>>,
    state_dir: Option<PathBuf>,
    drain: Option<crate::drain::RawSettings>,
}

impl Bootstrap {
    pub fn load(path: &Path) -> Result<Self, BootstrapError> {
        let text = std::fs::read_to_string(path).map_err(|source| BootstrapError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::parse(path, &text)
    }

    pub fn parse(path: &Path, text: &str) -> Result<Self, BootstrapError> {
        Self::parse_with(path, text, read_from_disk)
    }

    /// [`Bootstrap::parse`], with the files the bootstrap names (the trust
    /// bundle) read by `read_file`: the fuzz target reads none from disk.
    #[doc(hidden)]
    pub fn parse_with(
        path: &Path,
        text: &str,
        read_file: impl Fn(&Path) -> std::io::Result<String>,
    ) -> Result<Self, BootstrapError> {
        let raw: RawBootstrap =
            serde_yaml_ng::from_str(text).map_err(|e| BootstrapError::Parse {
                path: path.to_owned(),
                message: e.to_string(),
            })?;
        resolve(raw, &Origin::File(path), read_file)
    }

    /// The address peers dial, given where the inbound listener actually bound.
    /// `spiffe://<trust-domain>/ns/<namespace>/sa/<service-account>`
    pub fn identity(&self) -> String {
        format!(
            "spiffe://{}/ns/{}/sa/{}",
            self.trust_domain, self.namespace, self.service_account
        )
    }

    pub fn advertised_inbound(&self, bound: SocketAddr) -> SocketAddr {
        if let Some(a) = self.advertise {
            // An address without a port (the pod's IP, with the inbound
            // listener on port 0) takes the bound one.
            if a.port() == 0 {
                return SocketAddr::new(a.ip(), bound.port());
            }
            return a;
        }
        if bound.ip().is_unspecified() {
            SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), bound.port())
        } else {
            bound
        }
    }
}

/// Where a bootstrap came from: errors name the file's field, or the
/// environment variable that set it; relative paths are taken from the file's
/// folder, or from the working directory.
enum Origin<'a> {
    File(&'a Path),
    Env(env::Names),
}

impl Origin<'_> {
    fn field_error(&self, field: &'static str, message: String) -> BootstrapError {
        match self {
            Origin::File(path) => BootstrapError::Field {
                path: path.to_path_buf(),
                field,
                message,
            },
            Origin::Env(names) => BootstrapError::Variable {
                variable: names.variable(field),
                message,
            },
        }
    }

    fn sidecar_error(&self, field: String, message: String) -> BootstrapError {
        match self {
            Origin::File(path) => BootstrapError::Sidecar {
                path: path.to_path_buf(),
                field,
                message,
            },
            Origin::Env(names) => BootstrapError::Variable {
                variable: names.variable(&field),
                message,
            },
        }
    }

    /// Files a bootstrap file names are found beside it, wherever the proxy runs.
    fn beside(&self, file: PathBuf) -> PathBuf {
        match self {
            Origin::File(path) => beside_bootstrap(path, file),
            Origin::Env(_) => file,
        }
    }
}

/// The checks and defaults shared by the file and the environment.
fn resolve(
    raw: RawBootstrap,
    origin: &Origin<'_>,
    read_file: impl Fn(&Path) -> std::io::Result<String>,
) -> Result<Bootstrap, BootstrapError> {
    let field_error = |field: &'static str, message: String| origin.field_error(field, message);
    let addr = |field: &'static str, value: Option<String>, default: SocketAddr| match value {
        None => Ok(default),
        Some(v) => socket_addr(&v).map_err(|e| field_error(field, e)),
    };
    let beside = |file: PathBuf| origin.beside(file);
    let service = match raw.service {
        Some(s) if is_dns_label(&s) => s,
        Some(s) => {
            return Err(field_error(
                "service",
                format!("`{s}` is not a valid service name (lowercase DNS label)"),
            ))
        }
        None => return Err(field_error("service", "is required".into())),
    };
    let namespace = match raw.namespace {
        Some(ns) if is_dns_label(&ns) => ns,
        Some(ns) => {
            return Err(field_error(
                "namespace",
                format!("`{ns}` is not a valid namespace (lowercase DNS label)"),
            ))
        }
        None => "default".to_owned(),
    };
    let loopback = |port| SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port);
    let app = match raw.app {
        Some(v) => addr("app", Some(v), loopback(0))?,
        None => return Err(field_error("app", "is required".into())),
    };
    let trust_domain = raw
        .trust_domain
        .unwrap_or_else(|| "cluster.local".to_owned());
    let service_account = raw.service_account.unwrap_or_else(|| service.clone());
    let control_plane_namespace = raw
        .control_plane_namespace
        .unwrap_or_else(|| "remora-system".to_owned());
    if !is_dns_label(&control_plane_namespace) {
        return Err(field_error(
            "control_plane_namespace",
            format!("`{control_plane_namespace}` is not a namespace name"),
        ));
    }
    let identity = format!("spiffe://{trust_domain}/ns/{namespace}/sa/{service_account}");
    if !is_dns_label(&service_account)
        || trust_domain.is_empty()
        || !trust_domain
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b))
    {
        return Err(field_error(
            "service_account",
            format!("`{identity}` is not a valid SPIFFE workload identity"),
        ));
    }
    let token = match (raw.token, raw.token_file) {
        (Some(_), Some(_)) => {
            return Err(field_error(
                "token",
                "give `token` or `token_file`, not both".into(),
            ))
        }
        (Some(t), None) => Some(TokenSource::Inline(t)),
        (None, Some(f)) => Some(TokenSource::File(beside(f))),
        (None, None) => None,
    };
    let trust_bundle = raw
        .trust_bundle_file
        .map(beside)
        .map(|file| {
            let pem = read_file(file.as_path()).map_err(|e| {
                field_error(
                    "trust_bundle_file",
                    format!("cannot read {}: {e}", file.display()),
                )
            })?;
            match crate::tls::count_certificates(&pem) {
                Ok(0) => Err(field_error(
                    "trust_bundle_file",
                    format!("{} holds no PEM certificate", file.display()),
                )),
                Ok(_) => Ok(crate::tls::TrustBundle { pem, file }),
                Err(e) => Err(field_error(
                    "trust_bundle_file",
                    format!("{}: {e}", file.display()),
                )),
            }
        })
        .transpose()?;
    let access_log = match raw.access_log.as_deref() {
        None | Some("stdout") => Destination::Stdout,
        Some("off") => Destination::Off,
        Some("") => {
            return Err(field_error(
                "access_log",
                "give stdout, off or a file path".into(),
            ))
        }
        Some(path) => Destination::File(PathBuf::from(path)),
    };
    let tracing = raw
        .tracing
        .map(|t| {
            let collector = t
                .collector
                .parse::<http::Uri>()
                .ok()
                .filter(|u| matches!(u.scheme_str(), Some("http")) && u.authority().is_some())
                .ok_or_else(|| {
                    field_error(
                        "tracing.collector",
                        format!(
                            "`{}` is not an http://host:port address of an OTLP/gRPC collector",
                            t.collector
                        ),
                    )
                })?;
            let sample_rate = t.sample_rate.unwrap_or(DEFAULT_SAMPLE_RATE);
            if !(0.0..=1.0).contains(&sample_rate) {
                return Err(field_error(
                    "tracing.sample_rate",
                    format!("{sample_rate} is not a share between 0 and 1"),
                ));
            }
            Ok(crate::telemetry::trace::Settings {
                collector,
                sample_rate,
            })
        })
        .transpose()?;
    let metrics = match raw.metrics.as_deref() {
        None | Some("on") => true,
        Some("off") => false,
        Some(other) => return Err(field_error("metrics", format!("`{other}`: give on or off"))),
    };
    let limits = raw
        .limits
        .unwrap_or_default()
        .resolve()
        .map_err(|e| field_error("limits", format!("{}: {e}", e.field)))?;
    let drain = raw
        .drain
        .unwrap_or_default()
        .resolve()
        .map_err(|e| field_error("drain", format!("{}: {e}", e.field)))?;
    let raw_sidecar = sidecar::RawSidecar {
        upstreams: raw.upstreams,
        detect: raw.detect,
        transparent: raw.transparent,
        app_ports: raw.app_ports,
    };
    let sidecar = sidecar::resolve(raw_sidecar, &namespace)
        .map_err(|(field, message)| origin.sidecar_error(field, message))?;
    let state_dir = match raw.state_dir {
        Some(dir) if dir.as_os_str().is_empty() => {
            return Err(field_error(
                "state_dir",
                "give a folder, or leave the field out".into(),
            ))
        }
        Some(dir) => Some(origin.beside(dir)),
        None => None,
    };
    Ok(Bootstrap {
        app_probes: AppProbes::default(),
        state_dir,
        drain,
        sidecar,
        limits,
        metrics,
        report_interval: std::time::Duration::from_millis(
            raw.report_interval_ms.unwrap_or(DEFAULT_REPORT_INTERVAL_MS),
        ),
        tracing,
        access_log,
        trust_bundle,
        trust_domain,
        control_plane_namespace,
        service_account,
        token,
        node_id: raw
            .node_id
            .unwrap_or_else(|| format!("{service}-{}", std::process::id())),
        control_plane: addr("control_plane", raw.control_plane, loopback(7700))?,
        app,
        outbound: addr("outbound", raw.outbound, loopback(7001))?,
        inbound: addr(
            "inbound",
            raw.inbound,
            SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 7002),
        )?,
        admin: addr("admin", raw.admin, loopback(7900))?,
        advertise: raw
            .advertise
            .map(|v| addr("advertise", Some(v), loopback(0)))
            .transpose()?,
        service,
        namespace,
    })
}

/// `ip:port`, or `localhost:port` (as 127.0.0.1: apps listen on IPv4
/// loopback far more often than on `::1`, whichever a resolver lists first).
fn socket_addr(value: &str) -> Result<SocketAddr, String> {
    if let Some(port) = value.strip_prefix("localhost:") {
        return port
            .parse::<u16>()
            .map(|port| SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port))
            .map_err(|e| format!("`{value}`: the port: {e}"));
    }
    value
        .parse::<SocketAddr>()
        .map_err(|e| format!("`{value}` is not an ip:port or localhost:port address: {e}"))
}

/// A file the bootstrap at `bootstrap` names: a relative path is relative to
/// the bootstrap's folder, not to wherever the proxy was started.
fn beside_bootstrap(bootstrap: &Path, file: PathBuf) -> PathBuf {
    match bootstrap.parent() {
        Some(folder) if file.is_relative() => folder.join(file),
        _ => file,
    }
}

fn read_from_disk(path: &Path) -> std::io::Result<String> {
    std::fs::read_to_string(path)
}

fn is_dns_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Bootstrap, BootstrapError> {
        Bootstrap::parse(Path::new("b.yaml"), text)
    }

    #[test]
    fn defaults_come_from_the_design() {
        let b = parse("service: orders\napp: 127.0.0.1:8080\n").unwrap();
        assert_eq!(b.namespace, "default");
        assert_eq!(b.control_plane, "127.0.0.1:7700".parse().unwrap());
        assert_eq!(b.outbound, "127.0.0.1:7001".parse().unwrap());
        assert_eq!(b.inbound, "0.0.0.0:7002".parse().unwrap());
        assert_eq!(b.admin, "127.0.0.1:7900".parse().unwrap());
        assert!(b.node_id.starts_with("orders-"));
        assert_eq!(
            b.advertised_inbound("0.0.0.0:7002".parse().unwrap()),
            "127.0.0.1:7002".parse().unwrap()
        );
    }

    #[test]
    fn errors_name_the_field() {
        let err = parse("service: orders\napp: nowhere\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("field `app`"), "{err}");
        let err = parse("app: 127.0.0.1:1\n").unwrap_err().to_string();
        assert!(err.contains("field `service`: is required"), "{err}");
        let err = parse("service: Orders\napp: 127.0.0.1:1\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("field `service`"), "{err}");
        let err = parse("service: a\napp: 127.0.0.1:1\nlistner: x\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("unknown field `listner`"), "{err}");
    }

    #[test]
    fn tracing_names_its_collector_and_rate() {
        let b = parse("service: a\napp: 127.0.0.1:1\n").unwrap();
        assert_eq!(b.tracing, None, "off unless configured");
        let b =
            parse("service: a\napp: 127.0.0.1:1\ntracing:\n  collector: http://127.0.0.1:4317\n")
                .unwrap();
        let t = b.tracing.unwrap();
        assert_eq!(t.collector, "http://127.0.0.1:4317");
        assert_eq!(t.sample_rate, DEFAULT_SAMPLE_RATE);
        let err = parse("service: a\napp: 127.0.0.1:1\ntracing:\n  collector: 127.0.0.1:4317\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("field `tracing.collector`"), "{err}");
        let err = parse(
            "service: a\napp: 127.0.0.1:1\ntracing:\n  collector: http://c:4317\n  sample_rate: 2\n",
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("field `tracing.sample_rate`"), "{err}");
    }

    #[test]
    fn a_state_dir_is_optional_and_relative_to_the_bootstrap() {
        let b = parse("service: a\napp: 127.0.0.1:1\n").unwrap();
        assert_eq!(b.state_dir, None, "off unless configured");
        let at = |text: &str| {
            Bootstrap::parse(Path::new("/etc/remora/b.yaml"), text).map(|b| b.state_dir)
        };
        assert_eq!(
            at("service: a\napp: 127.0.0.1:1\nstate_dir: /run/remora\n").unwrap(),
            Some(PathBuf::from("/run/remora"))
        );
        assert_eq!(
            at("service: a\napp: 127.0.0.1:1\nstate_dir: state\n").unwrap(),
            Some(PathBuf::from("/etc/remora/state"))
        );
        let err = at("service: a\napp: 127.0.0.1:1\nstate_dir: \"\"\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("field `state_dir`"), "{err}");
    }

    #[test]
    fn drain_has_defaults_and_names_its_fields() {
        let b = parse("service: a\napp: 127.0.0.1:1\n").unwrap();
        assert_eq!(b.drain, crate::drain::Settings::default());
        let b =
            parse("service: a\napp: 127.0.0.1:1\ndrain: {propagation_ms: 500, timeout_ms: 5000}\n")
                .unwrap();
        assert_eq!(b.drain.propagation, std::time::Duration::from_millis(500));
        assert_eq!(b.drain.timeout, std::time::Duration::from_secs(5));
        let err = parse(
            "service: a\napp: 127.0.0.1:1\ndrain: {propagation_ms: 9000, timeout_ms: 5000}\n",
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("field `drain`: propagation_ms"), "{err}");
    }

    #[test]
    fn app_may_be_localhost() {
        let b = parse("service: a\napp: localhost:8080\nadmin: localhost:7901\n").unwrap();
        assert_eq!(b.app, "127.0.0.1:8080".parse().unwrap());
        assert_eq!(b.admin, "127.0.0.1:7901".parse().unwrap());
        let b = parse("service: a\napp: \"[::1]:8080\"\n").unwrap();
        assert_eq!(b.app, "[::1]:8080".parse().unwrap());
        for bad in [
            "localhost",
            "localhost:http",
            "localhost:70000",
            "example.com:80",
        ] {
            let err = parse(&format!("service: a\napp: \"{bad}\"\n"))
                .unwrap_err()
                .to_string();
            assert!(err.contains("field `app`"), "{bad}: {err}");
        }
    }

    #[test]
    fn relative_files_are_found_beside_the_bootstrap() {
        let dir = tempfile::tempdir().unwrap();
        let pem = "-----BEGIN CERTIFICATE-----\nMA==\n-----END CERTIFICATE-----\n";
        let text = "service: a\napp: 127.0.0.1:1\ntoken_file: a.token\ntrust_bundle_file: ca.pem\n";
        let seen = std::cell::RefCell::new(Vec::new());
        let b = Bootstrap::parse_with(&dir.path().join("a.yaml"), text, |file: &Path| {
            seen.borrow_mut().push(file.to_owned());
            Ok(pem.to_owned())
        })
        .unwrap();
        assert_eq!(seen.into_inner(), [dir.path().join("ca.pem")]);
        assert_eq!(b.trust_bundle.unwrap().file, dir.path().join("ca.pem"));
        match b.token {
            Some(TokenSource::File(f)) => assert_eq!(f, dir.path().join("a.token")),
            other => panic!("{other:?}"),
        }
        // Absolute paths stay as they are.
        let text = "service: a\napp: 127.0.0.1:1\ntoken_file: /run/secrets/token\n";
        let b = Bootstrap::parse_with(&dir.path().join("a.yaml"), text, |_: &Path| {
            Ok(String::new())
        })
        .unwrap();
        match b.token {
            Some(TokenSource::File(f)) => assert_eq!(f, Path::new("/run/secrets/token")),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_trust_bundle_must_hold_certificates() {
        let dir = tempfile::tempdir().unwrap();
        let bundle = dir.path().join("bundle.pem");
        let text = format!(
            "service: a\napp: 127.0.0.1:1\ntrust_bundle_file: {}\n",
            bundle.display()
        );
        let err = parse(&text).unwrap_err().to_string();
        assert!(
            err.contains("field `trust_bundle_file`: cannot read"),
            "{err}"
        );
        std::fs::write(&bundle, "not a certificate\n").unwrap();
        let err = parse(&text).unwrap_err().to_string();
        assert!(err.contains("holds no PEM certificate"), "{err}");
        std::fs::write(
            &bundle,
            "-----BEGIN CERTIFICATE-----\n!!!\n-----END CERTIFICATE-----\n",
        )
        .unwrap();
        assert!(parse(&text).is_err());
    }
}
