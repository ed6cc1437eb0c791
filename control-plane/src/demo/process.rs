//! Child processes of the demo: the control plane and the proxies. Each is killed
//! by its own handle (never by name) when the demo ends.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use serde::Deserialize;
use tokio::process::{Child, Command};

#[derive(Debug, thiserror::Error)]
pub enum ProcessError {
    #[error("cannot find `{name}` in {dir} (build it with `cargo build --bins`)")]
    MissingBinary { name: String, dir: PathBuf },
    #[error("cannot start {name}")]
    Spawn {
        name: String,
        source: std::io::Error,
    },
    #[error("{name} exited before it was listening ({status}); its log: {log}")]
    Exited {
        name: String,
        status: std::process::ExitStatus,
        log: PathBuf,
    },
    #[error("{name} did not report its addresses within {timeout:?}; its log: {log}")]
    Timeout {
        name: String,
        timeout: Duration,
        log: PathBuf,
    },
}

pub struct Process {
    child: Child,
}

impl Process {
    /// Starts `bin args...` with stderr to `log`, and waits for it to write its
    /// addresses (JSON) to `addresses`.
    pub async fn start<T: for<'de> Deserialize<'de>>(
        name: &str,
        bin: &Path,
        args: &[&std::ffi::OsStr],
        addresses: &Path,
        log: &Path,
    ) -> Result<(Process, T), ProcessError> {
        let spawn_err = |source| ProcessError::Spawn {
            name: name.to_owned(),
            source,
        };
        let log_file = std::fs::File::create(log).map_err(spawn_err)?;
        let child = Command::new(bin)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log_file)
            .kill_on_drop(true)
            .spawn()
            .map_err(spawn_err)?;
        let mut process = Process { child };
        let timeout = Duration::from_secs(10);
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if let Ok(text) = std::fs::read_to_string(addresses) {
                if let Ok(parsed) = serde_json::from_str(&text) {
                    return Ok((process, parsed));
                }
            }
            if let Ok(Some(status)) = process.child.try_wait() {
                return Err(ProcessError::Exited {
                    name: name.to_owned(),
                    status,
                    log: log.to_owned(),
                });
            }
            if tokio::time::Instant::now() > deadline {
                return Err(ProcessError::Timeout {
                    name: name.to_owned(),
                    timeout,
                    log: log.to_owned(),
                });
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id().unwrap_or(0)
    }

    pub async fn stop(mut self) {
        let _ = self.child.kill().await;
    }
}

/// Where our binaries are: `--bin-dir`, else next to the running executable.
pub fn binary(dir: Option<&Path>, name: &str) -> Result<PathBuf, ProcessError> {
    let dir = match dir {
        Some(d) => d.to_owned(),
        None => std::env::current_exe()
            .ok()
            .and_then(|p| p.parent().map(Path::to_owned))
            .unwrap_or_else(|| PathBuf::from(".")),
    };
    let path = dir.join(name);
    if path.is_file() {
        Ok(path)
    } else {
        Err(ProcessError::MissingBinary {
            name: name.to_owned(),
            dir,
        })
    }
}

#[derive(Debug, Deserialize)]
pub struct ControlAddresses {
    pub xds: SocketAddr,
    pub api: SocketAddr,
}

#[derive(Debug, Clone, Deserialize)]
pub struct ProxyAddresses {
    pub outbound: SocketAddr,
    pub inbound: SocketAddr,
    pub admin: SocketAddr,
}
