//! `remora-proxy` as a child process, with a generated bootstrap file.

use std::net::SocketAddr;
use std::process::Command;
use std::sync::Mutex;
use std::time::Duration;

use anyhow::{anyhow, Context, Result};
use serde::Deserialize;

use super::http::{self, HttpReply};
use super::{bin_path, wait_for, Process, START_TIMEOUT};

/// Who a proxy is and what it connects to; everything else is on 127.0.0.1:0.
#[derive(Debug, Clone)]
pub struct ProxySpec {
    /// The Service this proxy fronts (bootstrap `service`).
    pub service: String,
    /// Its namespace (bootstrap `namespace`).
    pub namespace: String,
    /// The control plane's xDS address.
    pub control_plane: SocketAddr,
    /// The local application the inbound listener forwards to.
    pub app: SocketAddr,
    /// Bootstrap `node_id`; `None` lets the proxy pick `<service>-<pid>`.
    pub node_id: Option<String>,
    /// Bootstrap `token_file`: with it the proxy obtains a workload certificate.
    pub token_file: Option<std::path::PathBuf>,
    /// Bootstrap `trust_bundle_file`: the first certificate request goes over TLS.
    pub trust_bundle_file: Option<std::path::PathBuf>,
    /// Bootstrap `advertise`: where other proxies are told to reach this one.
    pub advertise: Option<SocketAddr>,
    /// More bootstrap YAML, appended as it is (e.g. `tracing:` or `access_log:`).
    pub extra: String,
    /// A command the proxy runs under (`ip netns exec NAME setpriv ...`); its
    /// files are then made readable by any user.
    pub wrapper: Vec<String>,
    /// Outbound, inbound and admin addresses; all on 127.0.0.1:0 when `None`.
    pub listen: Option<[SocketAddr; 3]>,
}

impl ProxySpec {
    /// A proxy for `service` in namespace `default`.
    pub fn new(service: &str, control_plane: SocketAddr, app: SocketAddr) -> Self {
        Self {
            service: service.to_owned(),
            namespace: "default".to_owned(),
            control_plane,
            app,
            node_id: None,
            token_file: None,
            trust_bundle_file: None,
            advertise: None,
            extra: String::new(),
            wrapper: Vec::new(),
            listen: None,
        }
    }

    /// Run the proxy under `wrapper` (e.g. in a network namespace as another user).
    pub fn wrapper(mut self, wrapper: &[String]) -> Self {
        self.wrapper = wrapper.to_vec();
        self
    }

    /// Listen on these outbound, inbound and admin addresses.
    pub fn listen(mut self, outbound: SocketAddr, inbound: SocketAddr, admin: SocketAddr) -> Self {
        self.listen = Some([outbound, inbound, admin]);
        self
    }

    /// Append `yaml` to the bootstrap file.
    pub fn extra(mut self, yaml: &str) -> Self {
        self.extra.push_str(yaml);
        self
    }

    /// Give the proxy a bootstrap token (in a file), so it gets a certificate.
    pub fn token_file(mut self, path: &std::path::Path) -> Self {
        self.token_file = Some(path.to_owned());
        self
    }

    /// Give the proxy the mesh's trust bundle, to verify the control plane with
    /// from its first request.
    pub fn trust_bundle_file(mut self, path: &std::path::Path) -> Self {
        self.trust_bundle_file = Some(path.to_owned());
        self
    }

    /// Announce `addr` as this proxy's inbound address instead of the bound one.
    pub fn advertise(mut self, addr: SocketAddr) -> Self {
        self.advertise = Some(addr);
        self
    }

    /// Set the namespace.
    pub fn namespace(mut self, namespace: &str) -> Self {
        self.namespace = namespace.to_owned();
        self
    }

    /// Set the node id.
    pub fn node_id(mut self, node_id: &str) -> Self {
        self.node_id = Some(node_id.to_owned());
        self
    }

    /// The bootstrap file for this spec (the format in docs/architecture.md), with
    /// the outbound, inbound and admin listeners on 127.0.0.1:0.
    pub fn bootstrap_yaml(&self) -> String {
        // JSON strings are valid YAML scalars, and quote whatever a test passes.
        let q = |s: &str| serde_json::Value::from(s).to_string();
        let mut yaml = String::new();
        if let Some(id) = &self.node_id {
            yaml.push_str(&format!("node_id: {}\n", q(id)));
        }
        let any = "127.0.0.1:0".parse().unwrap();
        let [outbound, inbound, admin] = self.listen.unwrap_or([any; 3]);
        yaml.push_str(&format!(
            "service: {}\nnamespace: {}\ncontrol_plane: {}\napp: {}\n\
             outbound: {}\ninbound: {}\nadmin: {}\n",
            q(&self.service),
            q(&self.namespace),
            q(&self.control_plane.to_string()),
            q(&self.app.to_string()),
            q(&outbound.to_string()),
            q(&inbound.to_string()),
            q(&admin.to_string()),
        ));
        if let Some(path) = &self.token_file {
            yaml.push_str(&format!("token_file: {}\n", q(&path.to_string_lossy())));
        }
        if let Some(addr) = &self.advertise {
            yaml.push_str(&format!("advertise: {}\n", q(&addr.to_string())));
        }
        if let Some(path) = &self.trust_bundle_file {
            yaml.push_str(&format!(
                "trust_bundle_file: {}\n",
                q(&path.to_string_lossy())
            ));
        }
        yaml.push_str(&self.extra);
        yaml
    }
}

/// What `remora-proxy --addresses-file` writes once it listens.
#[derive(Debug, Deserialize)]
struct Addresses {
    outbound: SocketAddr,
    inbound: SocketAddr,
    admin: SocketAddr,
    #[serde(default)]
    upstreams: Vec<SocketAddr>,
}

/// A running `remora-proxy`. Killed when dropped.
pub struct Proxy {
    /// Where the local app sends requests for other services (`Host` = service).
    pub outbound: SocketAddr,
    /// Where other proxies reach this one.
    pub inbound: SocketAddr,
    /// Admin HTTP: `/ready`, `/config_dump`, `/metrics`, ...
    pub admin: SocketAddr,
    /// The bootstrap's `upstreams` listeners, in order.
    pub upstreams: Vec<SocketAddr>,
    /// What it was started with.
    pub spec: ProxySpec,
    process: Process,
}

impl Proxy {
    /// Write the bootstrap, start the proxy and return once it listens (its
    /// addresses file is written). It may not have config yet: see
    /// [`Proxy::wait_ready`].
    pub async fn start(spec: ProxySpec) -> Result<Self> {
        let bin = bin_path("remora-proxy")?;
        let dir = tempfile::Builder::new()
            .prefix(&format!("remora-proxy-{}-", spec.service))
            .tempdir()
            .context("cannot create a temporary folder")?;
        let bootstrap = dir.path().join("bootstrap.yaml");
        std::fs::write(&bootstrap, spec.bootstrap_yaml())
            .with_context(|| format!("cannot write {}", bootstrap.display()))?;
        let addresses_file = dir.path().join("addresses.json");
        let mut command = match spec.wrapper.split_first() {
            None => Command::new(bin),
            Some((first, rest)) => {
                // Another user must read the bootstrap and write the addresses.
                use std::os::unix::fs::PermissionsExt;
                let open = std::fs::Permissions::from_mode(0o777);
                std::fs::set_permissions(dir.path(), open)
                    .context("cannot open the proxy's folder to its user")?;
                let readable = std::fs::Permissions::from_mode(0o644);
                std::fs::set_permissions(&bootstrap, readable)
                    .context("cannot make the bootstrap readable")?;
                let mut c = Command::new(first);
                c.args(rest).arg(bin);
                c
            }
        };
        command
            .arg("--bootstrap")
            .arg(&bootstrap)
            .arg("--addresses-file")
            .arg(&addresses_file);
        let label = format!("remora-proxy {}", spec.service);
        let mut process = Process::spawn(&label, command, dir)?;
        let addresses: Addresses = process
            .wait_addresses(&addresses_file, START_TIMEOUT)
            .await?;
        tracing::info!(
            service = %spec.service,
            outbound = %addresses.outbound,
            inbound = %addresses.inbound,
            admin = %addresses.admin,
            pid = process.pid(),
            "proxy up"
        );
        Ok(Self {
            outbound: addresses.outbound,
            inbound: addresses.inbound,
            admin: addresses.admin,
            upstreams: addresses.upstreams,
            spec,
            process,
        })
    }

    /// Poll `GET /ready` until it answers 200 (the proxy has config), or fail after
    /// `timeout` with the last answer and the proxy's output.
    pub async fn wait_ready(&self, timeout: Duration) -> Result<()> {
        let last = Mutex::new(String::from("no answer yet"));
        let ready = wait_for(timeout, || async {
            match self.admin_get("/ready").await {
                Ok(reply) if reply.status == 200 => true,
                Ok(reply) => {
                    set(&last, format!("{} {}", reply.status, reply.text()));
                    false
                }
                Err(e) => {
                    set(&last, format!("{e:#}"));
                    false
                }
            }
        })
        .await;
        ready.map_err(|e| {
            anyhow!(
                "proxy {} (admin {}) not ready: {e}; last /ready: {}; its output:\n{}",
                self.spec.service,
                self.admin,
                get(&last),
                self.process.logs_tail()
            )
        })
    }

    /// `GET` a path on the admin listener.
    pub async fn admin_get(&self, path: &str) -> Result<HttpReply> {
        http::get(self.admin, path).await
    }

    /// `POST` to the admin port.
    pub async fn admin_post(&self, path: &str) -> Result<HttpReply> {
        let request = ::http::Request::post(path)
            .body(http_body_util::Full::new(bytes::Bytes::new()))
            .map_err(|e| anyhow::anyhow!("invalid admin path `{path}`: {e}"))?;
        http::send(self.admin, request).await
    }

    /// The process's exit status, once it has exited.
    pub fn exit_status(&mut self) -> Option<std::process::ExitStatus> {
        self.process.exit_status()
    }

    /// `GET /config_dump`, parsed as JSON.
    pub async fn config_dump(&self) -> Result<serde_json::Value> {
        let reply = self.admin_get("/config_dump").await?;
        if reply.status != 200 {
            return Err(anyhow!(
                "/config_dump answered {}: {}",
                reply.status,
                reply.text()
            ));
        }
        reply.json()
    }

    /// Everything the proxy logged so far.
    pub fn logs(&self) -> String {
        self.process.logs()
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.process.pid()
    }

    /// Kill the process (SIGKILL) and reap it. Killing it twice does nothing.
    pub fn kill(&mut self) {
        self.process.kill()
    }
}

fn set(slot: &Mutex<String>, value: String) {
    *slot.lock().unwrap_or_else(|p| p.into_inner()) = value;
}

fn get(slot: &Mutex<String>) -> String {
    slot.lock().unwrap_or_else(|p| p.into_inner()).clone()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bootstrap_names_the_service_and_binds_port_zero() {
        let spec = ProxySpec::new(
            "orders",
            "127.0.0.1:7700".parse().unwrap(),
            "127.0.0.1:8080".parse().unwrap(),
        )
        .namespace("shop")
        .node_id("orders-0");
        let yaml = spec.bootstrap_yaml();
        assert_eq!(
            yaml,
            "node_id: \"orders-0\"\nservice: \"orders\"\nnamespace: \"shop\"\n\
             control_plane: \"127.0.0.1:7700\"\napp: \"127.0.0.1:8080\"\n\
             outbound: \"127.0.0.1:0\"\ninbound: \"127.0.0.1:0\"\nadmin: \"127.0.0.1:0\"\n"
        );
    }
}
