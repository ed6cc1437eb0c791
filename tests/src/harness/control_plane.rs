//! `remora control` as a child process.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{anyhow, Context, Result};
use serde::Deserialize;

use super::http::{self, HttpReply};
use super::{bin_path, Process, START_TIMEOUT};

/// How many times [`ControlPlane::start_on`] tries again when the process exits
/// before binding (a port just released by a killed predecessor).
const START_ATTEMPTS: u32 = 3;

/// Most tests exercise routing, not trust, with proxies that have no token: the
/// harness lets them in unless a test asks for [`ControlPlane::start_secure`].
const ALLOW_PLAINTEXT: &str = "--allow-plaintext-proxies";

/// A running control plane serving the file source in `config_dir`.
///
/// Killed when dropped; [`ControlPlane::start_on`] starts a new one on the same
/// ports (a restart as proxies see it).
pub struct ControlPlane {
    /// xDS (ADS) gRPC address: give it to proxies as `control_plane`.
    pub xds_addr: SocketAddr,
    /// HTTP API address (`/api/v1/...`).
    pub api_addr: SocketAddr,
    /// The admission webhook's HTTPS address, when started with
    /// `--webhook-addr`.
    pub webhook_addr: Option<SocketAddr>,
    /// The config directory it watches.
    pub config_dir: PathBuf,
    process: Process,
}

/// How to start the process, beyond its flags.
#[derive(Debug, Default, Clone)]
struct LaunchOptions {
    /// A command the binary runs under (`ip netns exec NAME`).
    wrapper: Vec<String>,
    /// Where xDS listens; loopback when `None`.
    xds_ip: Option<std::net::IpAddr>,
    /// Read a Kubernetes cluster through this kubeconfig instead of the
    /// config directory (`--kubernetes --kubeconfig FILE`).
    kubeconfig: Option<PathBuf>,
}

/// What `remora control --addresses-file` writes once it has bound.
#[derive(Debug, Deserialize)]
struct Addresses {
    xds: SocketAddr,
    api: SocketAddr,
    /// Only when the webhook is served.
    #[serde(default)]
    webhook: Option<SocketAddr>,
}

impl ControlPlane {
    /// Start `remora control` on `config_dir` with both listeners on 127.0.0.1:0,
    /// and return once it has bound (its addresses file is written).
    pub async fn start(config_dir: impl AsRef<Path>) -> Result<Self> {
        Self::start_on(config_dir, 0, 0).await
    }

    /// Like [`ControlPlane::start`], with more `remora control` flags.
    pub async fn start_with(config_dir: impl AsRef<Path>, args: &[&str]) -> Result<Self> {
        let mut args: Vec<String> = args.iter().map(|a| (*a).to_owned()).collect();
        args.push(ALLOW_PLAINTEXT.to_owned());
        match Self::launch(config_dir.as_ref(), 0, 0, &args).await {
            Ok(cp) => Ok(cp),
            Err(LaunchError::Exited(e) | LaunchError::Other(e)) => Err(e),
        }
    }

    /// As an operator runs it: proxies must present a client certificate (no
    /// `--allow-plaintext-proxies`), with `args` added.
    pub async fn start_secure(config_dir: impl AsRef<Path>, args: &[&str]) -> Result<Self> {
        let args: Vec<String> = args.iter().map(|a| (*a).to_owned()).collect();
        match Self::launch(config_dir.as_ref(), 0, 0, &args).await {
            Ok(cp) => Ok(cp),
            Err(LaunchError::Exited(e) | LaunchError::Other(e)) => Err(e),
        }
    }

    /// As [`ControlPlane::start_secure`], run with `wrapper` before the binary
    /// (e.g. `ip netns exec NAME`) and xDS on `xds_ip` (the API stays on
    /// loopback): for proxies in network namespaces.
    pub async fn start_wrapped(
        config_dir: impl AsRef<Path>,
        wrapper: &[String],
        xds_ip: std::net::IpAddr,
    ) -> Result<Self> {
        let options = LaunchOptions {
            wrapper: wrapper.to_vec(),
            xds_ip: Some(xds_ip),
            kubeconfig: None,
        };
        match Self::launch_with(config_dir.as_ref(), 0, 0, &[], options).await {
            Ok(cp) => Ok(cp),
            Err(LaunchError::Exited(e) | LaunchError::Other(e)) => Err(e),
        }
    }

    /// `remora control --kubernetes --kubeconfig KUBECONFIG` with `args` (and
    /// `--allow-plaintext-proxies`). `config_dir` is not read: its parent
    /// holds the data dir, as for the file source. Returns once the first
    /// lists are done and it has bound.
    pub async fn start_kubernetes(
        config_dir: impl AsRef<Path>,
        kubeconfig: &Path,
        args: &[&str],
    ) -> Result<Self> {
        let mut args: Vec<String> = args.iter().map(|a| (*a).to_owned()).collect();
        args.push(ALLOW_PLAINTEXT.to_owned());
        Self::kubernetes(config_dir.as_ref(), kubeconfig, args).await
    }

    /// As it runs in a cluster: `remora control --kubernetes --kubeconfig
    /// KUBECONFIG` with `args`, every proxy presenting a client certificate
    /// (no `--allow-plaintext-proxies`).
    pub async fn start_kubernetes_secure(
        config_dir: impl AsRef<Path>,
        kubeconfig: &Path,
        args: &[&str],
    ) -> Result<Self> {
        let args: Vec<String> = args.iter().map(|a| (*a).to_owned()).collect();
        Self::kubernetes(config_dir.as_ref(), kubeconfig, args).await
    }

    async fn kubernetes(config_dir: &Path, kubeconfig: &Path, args: Vec<String>) -> Result<Self> {
        let options = LaunchOptions {
            kubeconfig: Some(kubeconfig.to_path_buf()),
            ..LaunchOptions::default()
        };
        Self::launch_retrying(config_dir, 0, 0, &args, options).await
    }

    /// As [`ControlPlane::start_kubernetes`], on the given loopback ports (0 =
    /// any): a restart where the proxies expect it.
    pub async fn start_kubernetes_on(
        config_dir: impl AsRef<Path>,
        kubeconfig: &Path,
        xds_port: u16,
        api_port: u16,
        args: &[&str],
    ) -> Result<Self> {
        let mut args: Vec<String> = args.iter().map(|a| (*a).to_owned()).collect();
        args.push(ALLOW_PLAINTEXT.to_owned());
        let options = LaunchOptions {
            kubeconfig: Some(kubeconfig.to_path_buf()),
            ..LaunchOptions::default()
        };
        Self::launch_retrying(config_dir.as_ref(), xds_port, api_port, &args, options).await
    }

    /// Where this control plane keeps its CA and token hashes.
    pub fn data_dir(&self) -> std::path::PathBuf {
        data_dir_for(&self.config_dir)
    }

    /// Start on the given loopback ports (0 = any), e.g. the ports of a control
    /// plane that was killed, to restart it where the proxies expect it.
    pub async fn start_on(
        config_dir: impl AsRef<Path>,
        xds_port: u16,
        api_port: u16,
    ) -> Result<Self> {
        let plaintext = [ALLOW_PLAINTEXT.to_owned()];
        Self::launch_retrying(
            config_dir.as_ref(),
            xds_port,
            api_port,
            &plaintext,
            LaunchOptions::default(),
        )
        .await
    }

    /// Launches; on fixed ports, tries again while the process exits at start
    /// (a port just released by a killed predecessor).
    async fn launch_retrying(
        config_dir: &Path,
        xds_port: u16,
        api_port: u16,
        args: &[String],
        options: LaunchOptions,
    ) -> Result<Self> {
        let mut attempt = 1;
        loop {
            match Self::launch_with(config_dir, xds_port, api_port, args, options.clone()).await {
                Ok(cp) => return Ok(cp),
                Err(LaunchError::Exited(e))
                    if attempt < START_ATTEMPTS && (xds_port, api_port) != (0, 0) =>
                {
                    tracing::warn!(attempt, error = %e, "control plane exited at start; trying again");
                    attempt += 1;
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                Err(LaunchError::Exited(e) | LaunchError::Other(e)) => return Err(e),
            }
        }
    }

    async fn launch(
        config_dir: &Path,
        xds_port: u16,
        api_port: u16,
        extra: &[String],
    ) -> Result<Self, LaunchError> {
        Self::launch_with(
            config_dir,
            xds_port,
            api_port,
            extra,
            LaunchOptions::default(),
        )
        .await
    }

    async fn launch_with(
        config_dir: &Path,
        xds_port: u16,
        api_port: u16,
        extra: &[String],
        options: LaunchOptions,
    ) -> Result<Self, LaunchError> {
        let bin = bin_path("remora")?;
        let dir = tempfile::Builder::new()
            .prefix("remora-control-")
            .tempdir()
            .context("cannot create a temporary folder")?;
        let addresses_file = dir.path().join("addresses.json");
        let data_dir = data_dir_for(config_dir);
        let mut command = match options.wrapper.split_first() {
            None => Command::new(bin),
            Some((first, rest)) => {
                let mut c = Command::new(first);
                c.args(rest).arg(bin);
                c
            }
        };
        let xds_ip = options
            .xds_ip
            .unwrap_or(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST));
        command.arg("control");
        match &options.kubeconfig {
            // Its own namespace is the one `remora install` makes, whatever
            // the test runner's environment says.
            Some(kubeconfig) => command
                .env_remove("POD_NAMESPACE")
                .arg("--kubernetes")
                .arg("--kubeconfig")
                .arg(kubeconfig),
            None => command.arg("--config-dir").arg(config_dir),
        };
        command
            .arg("--data-dir")
            .arg(&data_dir)
            .arg("--xds-addr")
            .arg(SocketAddr::new(xds_ip, xds_port).to_string())
            .arg("--api-addr")
            .arg(format!("127.0.0.1:{api_port}"))
            .arg("--addresses-file")
            .arg(&addresses_file)
            .args(extra);
        let mut process = Process::spawn("remora control", command, dir)?;
        match process
            .wait_addresses::<Addresses>(&addresses_file, START_TIMEOUT)
            .await
        {
            Ok(addresses) => {
                tracing::info!(xds = %addresses.xds, api = %addresses.api, pid = process.pid(), "control plane up");
                Ok(Self {
                    xds_addr: addresses.xds,
                    api_addr: addresses.api,
                    webhook_addr: addresses.webhook,
                    config_dir: config_dir.to_path_buf(),
                    process,
                })
            }
            Err(e) if process.exit_status().is_some() => Err(LaunchError::Exited(e)),
            Err(e) => Err(LaunchError::Other(e)),
        }
    }

    /// Stops it as an operator would (SIGTERM), waiting up to 10 s for it to
    /// exit; how it exited (`None`: it had to be killed).
    pub fn terminate(&mut self) -> Option<std::process::ExitStatus> {
        self.process.terminate(std::time::Duration::from_secs(10))
    }

    /// Kill the process (SIGKILL) and reap it. Proxies keep their last config.
    pub fn kill(&mut self) {
        self.process.kill();
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.process.pid()
    }

    /// Everything the control plane logged so far.
    pub fn logs(&self) -> String {
        self.process.logs()
    }

    /// `GET` a path on the HTTP API.
    pub async fn api_get(&self, path: &str) -> Result<HttpReply> {
        http::get(self.api_addr, path).await
    }

    /// The connected proxies, as `GET /api/v1/proxies` returns them.
    pub async fn proxies(&self) -> Result<serde_json::Value> {
        let reply = self.api_get("/api/v1/proxies").await?;
        if reply.status != 200 {
            return Err(anyhow!(
                "GET /api/v1/proxies answered {}: {}",
                reply.status,
                reply.text()
            ));
        }
        reply.json()
    }
}

enum LaunchError {
    /// The process exited before binding: worth another try on fixed ports.
    Exited(anyhow::Error),
    Other(anyhow::Error),
}

impl From<anyhow::Error> for LaunchError {
    fn from(e: anyhow::Error) -> Self {
        LaunchError::Other(e)
    }
}

/// Beside the config, so a restarted control plane keeps its CA and tokens.
fn data_dir_for(config_dir: &Path) -> std::path::PathBuf {
    config_dir.parent().map_or_else(
        || config_dir.join(".remora-data"),
        |p| p.join("remora-data"),
    )
}
