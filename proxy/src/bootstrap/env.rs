//! The bootstrap from environment variables, for a proxy injected into a
//! Kubernetes pod: the downward API gives the pod's name, namespace, IP and
//! service account, injection writes the rest, and no file has to be mounted.
//! Selected with `REMORA_BOOTSTRAP_FROM_ENV=1` (and no `--bootstrap`).
//!
//! The variables fill in the same fields a bootstrap file has and go through
//! the same checks; an error names the variable. The differences from a file's
//! defaults are the pod's: the admin listener is on `0.0.0.0:7900` (`[::]:7900`
//! when the pod's IP is IPv6: the kubelet probes it from the node; callers
//! off loopback get only the probe and metrics paths, see the admin module),
//! the control plane is the `remora` Service, the proxy always presents its
//! projected service-account token, and a trust bundle is required: the
//! token must not cross the network before the control plane is verified.
//! The app's own probes, which the proxy runs for the kubelet, come in
//! `REMORA_APP_PROBES` (see [`super::probes`]).

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};

use super::{resolve, Bootstrap, BootstrapError, Origin, RawBootstrap};

/// Set to `1` (or `true`) to read the bootstrap from the environment.
pub const FROM_ENV: &str = "REMORA_BOOTSTRAP_FROM_ENV";
/// The control plane's Service, as `remora install` creates it.
pub const DEFAULT_CONTROL_PLANE: &str = "remora.remora-system.svc:7700";
/// Where injection mounts the projected service-account token (audience
/// `remora`), which the kubelet rotates: it is read again for every
/// certificate request.
pub const DEFAULT_TOKEN_FILE: &str = "/var/run/secrets/remora/token";
/// Where the app serves HTTP when `REMORA_APP` does not say.
pub const DEFAULT_APP: &str = "127.0.0.1:8080";
/// The admin listener in a pod: reachable by the kubelet's probes.
pub const DEFAULT_ADMIN: &str = "0.0.0.0:7900";
/// The admin listener in a pod whose IP is IPv6: the kubelet probes that
/// address, which `0.0.0.0` does not accept (`[::]` takes IPv4 too where the
/// host allows dual-stack sockets, Linux's default).
pub const DEFAULT_ADMIN_IPV6: &str = "[::]:7900";

/// Every variable read, and what it sets (for `--help` and the docs).
pub const VARIABLES: &[(&str, &str)] = &[
    ("REMORA_SERVICE", "the Service this proxy serves (required)"),
    ("POD_NAMESPACE", "the namespace (default: default)"),
    ("POD_NAME", "the node id is POD_NAME.POD_NAMESPACE"),
    ("POD_IP", "peers reach the inbound listener at POD_IP"),
    ("SERVICE_ACCOUNT", "the service account in the identity (default: the Service)"),
    ("REMORA_CONTROL_PLANE", "host:port or ip:port, resolved once at start (default: remora.remora-system.svc:7700)"),
    ("REMORA_TOKEN_FILE", "the projected token, read at every certificate request (default: /var/run/secrets/remora/token)"),
    ("REMORA_TRUST_BUNDLE", "the mesh's trust bundle, PEM text (this or the file is required)"),
    ("REMORA_TRUST_BUNDLE_FILE", "the mesh's trust bundle, a PEM file"),
    ("REMORA_TRUST_DOMAIN", "the SPIFFE trust domain (default: cluster.local)"),
    ("REMORA_CONTROL_PLANE_NAMESPACE", "the control plane's namespace, in the identity its certificate must prove (default: remora-system)"),
    ("REMORA_APP", "where the app serves HTTP (default: 127.0.0.1:8080)"),
    ("REMORA_APP_PORTS", "PORT=ip:port,...: where the app listens for a TCP port of its Service"),
    ("REMORA_OPAQUE_PORTS", "ports carried as opaque TCP without detection, comma-separated"),
    ("REMORA_INBOUND", "the inbound listener (default: 0.0.0.0:7002)"),
    ("REMORA_OUTBOUND", "the outbound listener (default: 127.0.0.1:7001)"),
    ("REMORA_ADMIN", "the admin listener (default: 0.0.0.0:7900, [::]:7900 when POD_IP is IPv6)"),
    ("REMORA_APP_PROBES", "the app's kubelet probes the proxy runs at /app-health/... (JSON, written by injection)"),
    ("REMORA_STATE_DIR", "keep the last config and certificate here"),
    ("REMORA_ACCESS_LOG", "stdout (default), off, or a file"),
    ("REMORA_METRICS", "on (default) or off"),
];

/// The value `REMORA_TRUST_BUNDLE`'s text is known by where a file name
/// would be shown.
const INLINE_BUNDLE: &str = "$REMORA_TRUST_BUNDLE";

/// Which variable a bootstrap field came from, to name it in errors.
pub(crate) struct Names {
    /// `REMORA_TRUST_BUNDLE` or `REMORA_TRUST_BUNDLE_FILE`, whichever was set.
    trust_bundle: &'static str,
}

impl Names {
    pub(crate) fn variable(&self, field: &str) -> &'static str {
        match field.split(['.', '[']).next().unwrap_or(field) {
            "service" => "REMORA_SERVICE",
            "namespace" => "POD_NAMESPACE",
            "node_id" => "POD_NAME",
            "advertise" => "POD_IP",
            "service_account" => "SERVICE_ACCOUNT",
            "control_plane" => "REMORA_CONTROL_PLANE",
            "token" | "token_file" => "REMORA_TOKEN_FILE",
            "trust_bundle_file" => self.trust_bundle,
            "trust_domain" => "REMORA_TRUST_DOMAIN",
            "control_plane_namespace" => "REMORA_CONTROL_PLANE_NAMESPACE",
            "app" => "REMORA_APP",
            "app_ports" => "REMORA_APP_PORTS",
            "detect" => "REMORA_OPAQUE_PORTS",
            "inbound" => "REMORA_INBOUND",
            "outbound" => "REMORA_OUTBOUND",
            "admin" => "REMORA_ADMIN",
            "state_dir" => "REMORA_STATE_DIR",
            "access_log" => "REMORA_ACCESS_LOG",
            "metrics" => "REMORA_METRICS",
            "app_probes" => super::probes::APP_PROBES,
            // Fields no variable sets cannot be wrong; name the switch.
            _ => FROM_ENV,
        }
    }
}

impl Bootstrap {
    /// The bootstrap from the variables `var` returns (the process's
    /// environment: `|name| std::env::var(name).ok()`). Files are read from
    /// disk and the control plane's name is resolved by the system resolver.
    pub fn from_env(var: impl Fn(&str) -> Option<String>) -> Result<Self, BootstrapError> {
        Self::from_env_with(
            var,
            |path: &Path| std::fs::read_to_string(path),
            |host_port: &str| {
                std::net::ToSocketAddrs::to_socket_addrs(host_port).map(|found| found.collect())
            },
        )
    }

    /// [`Bootstrap::from_env`] with the files read by `read_file` and host
    /// names resolved by `lookup`: tests touch neither disk nor DNS.
    pub fn from_env_with(
        var: impl Fn(&str) -> Option<String>,
        read_file: impl Fn(&Path) -> std::io::Result<String>,
        lookup: impl Fn(&str) -> std::io::Result<Vec<SocketAddr>>,
    ) -> Result<Self, BootstrapError> {
        // Kubernetes writes an empty string for a field it does not know yet.
        let get = |name: &str| {
            var(name)
                .map(|v| v.trim().to_owned())
                .filter(|v| !v.is_empty())
        };
        let namespace = get("POD_NAMESPACE");
        let node_id = get("POD_NAME")
            .map(|pod| format!("{pod}.{}", namespace.as_deref().unwrap_or("default")));
        let pod_ip = get("POD_IP")
            .map(|ip| {
                ip.parse::<IpAddr>()
                    .map_err(|e| wrong("POD_IP", format!("`{ip}` is not an IP address: {e}")))
            })
            .transpose()?;
        // Port 0: the port the inbound listener binds.
        let advertise = pod_ip.map(|ip| SocketAddr::new(ip, 0).to_string());
        let default_admin = match pod_ip {
            Some(IpAddr::V6(_)) => DEFAULT_ADMIN_IPV6,
            _ => DEFAULT_ADMIN,
        };
        let control_plane = control_plane(
            get("REMORA_CONTROL_PLANE")
                .as_deref()
                .unwrap_or(DEFAULT_CONTROL_PLANE),
            &lookup,
        )?;
        let (trust_bundle, names) =
            match (get("REMORA_TRUST_BUNDLE"), get("REMORA_TRUST_BUNDLE_FILE")) {
                (Some(_), Some(_)) => {
                    return Err(wrong(
                        "REMORA_TRUST_BUNDLE",
                        "give REMORA_TRUST_BUNDLE or REMORA_TRUST_BUNDLE_FILE, not both".into(),
                    ))
                }
                // Without it the first certificate request, which carries the
                // token, would go in plaintext to whoever answers at the
                // control plane's address.
                (None, None) => {
                    return Err(wrong(
                        "REMORA_TRUST_BUNDLE",
                        "REMORA_TRUST_BUNDLE or REMORA_TRUST_BUNDLE_FILE is required: the pod's \
                         token must not cross the network before the control plane is verified \
                         (`remora inject --trust-bundle FILE` writes it)"
                            .into(),
                    ))
                }
                (Some(pem), None) => (
                    Some(pem),
                    Names {
                        trust_bundle: "REMORA_TRUST_BUNDLE",
                    },
                ),
                (None, Some(_)) => (
                    None,
                    Names {
                        trust_bundle: "REMORA_TRUST_BUNDLE_FILE",
                    },
                ),
            };
        let trust_bundle_file = match (&trust_bundle, get("REMORA_TRUST_BUNDLE_FILE")) {
            (Some(_), _) => Some(PathBuf::from(INLINE_BUNDLE)),
            (None, file) => file.map(PathBuf::from),
        };
        let raw = RawBootstrap {
            node_id,
            service: get("REMORA_SERVICE"),
            namespace,
            control_plane: Some(control_plane),
            app: Some(get("REMORA_APP").unwrap_or_else(|| DEFAULT_APP.to_owned())),
            outbound: get("REMORA_OUTBOUND"),
            inbound: get("REMORA_INBOUND"),
            admin: Some(get("REMORA_ADMIN").unwrap_or_else(|| default_admin.to_owned())),
            advertise,
            trust_domain: get("REMORA_TRUST_DOMAIN"),
            control_plane_namespace: get("REMORA_CONTROL_PLANE_NAMESPACE"),
            service_account: get("SERVICE_ACCOUNT"),
            token_file: Some(PathBuf::from(
                get("REMORA_TOKEN_FILE").unwrap_or_else(|| DEFAULT_TOKEN_FILE.to_owned()),
            )),
            trust_bundle_file,
            access_log: get("REMORA_ACCESS_LOG"),
            metrics: get("REMORA_METRICS"),
            app_ports: get("REMORA_APP_PORTS")
                .map(|list| app_ports(&list))
                .transpose()?,
            detect: get("REMORA_OPAQUE_PORTS")
                .map(|list| {
                    ports(&list).map(|ports| super::sidecar::RawDetect {
                        timeout_ms: None,
                        opaque_ports: Some(ports),
                    })
                })
                .transpose()?,
            state_dir: get("REMORA_STATE_DIR").map(PathBuf::from),
            ..RawBootstrap::default()
        };
        let app_probes = get(super::probes::APP_PROBES)
            .map(|text| super::probes::parse(&text))
            .transpose()
            .map_err(|message| wrong(super::probes::APP_PROBES, message))?
            .unwrap_or_default();
        // The inline bundle is "read" from its variable; other files from disk.
        let read = |path: &Path| match &trust_bundle {
            Some(pem) if path == Path::new(INLINE_BUNDLE) => Ok(pem.clone()),
            _ => read_file(path),
        };
        let mut bootstrap = resolve(raw, &Origin::Env(names), read)?;
        // Not a bootstrap file's field: only injection knows the pod's probes.
        bootstrap.app_probes = app_probes;
        Ok(bootstrap)
    }
}

fn wrong(variable: &'static str, message: String) -> BootstrapError {
    BootstrapError::Variable { variable, message }
}

/// `ip:port` as it is; `host:port` resolved now, once: the control plane's
/// Service keeps its cluster IP for its lifetime.
fn control_plane(
    value: &str,
    lookup: &impl Fn(&str) -> std::io::Result<Vec<SocketAddr>>,
) -> Result<String, BootstrapError> {
    if let Ok(addr) = super::socket_addr(value) {
        return Ok(addr.to_string());
    }
    let variable = "REMORA_CONTROL_PLANE";
    let port_ok = value
        .rsplit_once(':')
        .is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok());
    if !port_ok {
        return Err(wrong(
            variable,
            format!("`{value}` is not a host:port or ip:port address"),
        ));
    }
    let found =
        lookup(value).map_err(|e| wrong(variable, format!("cannot resolve `{value}`: {e}")))?;
    // IPv4 first: a cluster's Services are most often IPv4 (or dual-stack).
    found
        .iter()
        .find(|a| a.is_ipv4())
        .or_else(|| found.first())
        .map(ToString::to_string)
        .ok_or_else(|| wrong(variable, format!("`{value}` resolves to no address")))
}

/// `3306,5432` (blanks ignored).
fn ports(list: &str) -> Result<Vec<u16>, BootstrapError> {
    list.split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(|p| {
            p.parse::<u16>().map_err(|_| {
                wrong(
                    "REMORA_OPAQUE_PORTS",
                    format!("`{p}` in `{list}` is not a port (1-65535)"),
                )
            })
        })
        .collect()
}

/// `6379=127.0.0.1:16379,...`: the addresses are checked with the file's rules.
fn app_ports(list: &str) -> Result<BTreeMap<u16, String>, BootstrapError> {
    let mut out = BTreeMap::new();
    for item in list.split(',').map(str::trim).filter(|i| !i.is_empty()) {
        let bad = |why: &str| {
            wrong(
                "REMORA_APP_PORTS",
                format!("`{item}` {why} (give PORT=ip:port, comma-separated)"),
            )
        };
        let (port, addr) = item.split_once('=').ok_or_else(|| bad("has no `=`"))?;
        let port = port
            .trim()
            .parse::<u16>()
            .map_err(|_| bad("does not start with a port"))?;
        out.insert(port, addr.trim().to_owned());
    }
    Ok(out)
}

#[cfg(test)]
mod tests;
