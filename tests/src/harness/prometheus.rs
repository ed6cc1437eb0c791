//! A real Prometheus server (Debian's `prometheus`) scraping given targets every
//! second, its TSDB in a temporary folder, and its HTTP query API.
//!
//! It listens on 127.0.0.1:0; the port is read back from the kernel's socket
//! table (`/proc/<pid>/fd` -> `/proc/net/tcp`), because Prometheus only logs the
//! address it was given.

use std::net::SocketAddr;
use std::process::Command;
use std::time::Duration;

use anyhow::{anyhow, Context, Result};

use super::http;
use super::process::Process;
use super::wait::wait_for_some;

pub struct PrometheusServer {
    pub addr: SocketAddr,
    process: Process,
}

impl PrometheusServer {
    /// Starts Prometheus scraping `targets`' `/metrics` every second; waits
    /// until it has scraped each of them once.
    pub async fn start(targets: &[SocketAddr]) -> Result<Self> {
        let dir = tempfile::tempdir().context("cannot make a folder for Prometheus")?;
        let list: Vec<String> = targets.iter().map(|t| format!("'{t}'")).collect();
        let config = format!(
            "global: {{scrape_interval: 1s, evaluation_interval: 1s}}\n\
             scrape_configs:\n  - job_name: remora\n    static_configs:\n      - targets: [{}]\n",
            list.join(", ")
        );
        let config_path = dir.path().join("prometheus.yml");
        std::fs::write(&config_path, config).context("cannot write prometheus.yml")?;
        let mut command = Command::new("prometheus");
        command
            .arg(format!("--config.file={}", config_path.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg("--web.listen-address=127.0.0.1:0")
            .arg("--log.level=warn");
        let process = Process::spawn("prometheus", command, dir)
            .context("cannot start prometheus (Debian's package; scripts/test installs it)")?;
        let pid = process.pid();
        let port = wait_for_some(Duration::from_secs(20), || async move {
            listening_ports(pid).into_iter().next()
        })
        .await
        .map_err(|_| anyhow!("prometheus did not listen:\n{}", process.logs_tail()))?;
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let ready = super::wait_for(Duration::from_secs(20), || async move {
            http::get(addr, "/-/ready")
                .await
                .is_ok_and(|r| r.status == 200)
        })
        .await;
        if ready.is_err() {
            return Err(anyhow!(
                "prometheus never became ready:\n{}",
                process.logs_tail()
            ));
        }
        let server = Self { addr, process };
        // Discovery hands targets to the scrapers only after about 5 s: wait for
        // a first successful scrape of every target.
        let n = targets.len();
        let scraping = super::wait_for(Duration::from_secs(30), || async {
            server
                .query("up == 1", None)
                .await
                .is_ok_and(|up| up.len() == n)
        })
        .await;
        if scraping.is_err() {
            return Err(anyhow!(
                "prometheus never scraped all of {targets:?}:\n{}",
                server.process.logs_tail()
            ));
        }
        Ok(server)
    }

    /// An instant query (at `time`, seconds since the Unix epoch, or now): each
    /// series' labels and value.
    pub async fn query(
        &self,
        expr: &str,
        time: Option<f64>,
    ) -> Result<Vec<(serde_json::Value, f64)>> {
        let mut path = format!("/api/v1/query?query={}", percent_encode(expr));
        if let Some(t) = time {
            path.push_str(&format!("&time={t:.3}"));
        }
        let reply = http::get(self.addr, &path).await?;
        let body: serde_json::Value = serde_json::from_slice(&reply.body)
            .with_context(|| format!("prometheus answered {}", reply.text()))?;
        if body["status"] != "success" {
            return Err(anyhow!("query {expr}: {body}"));
        }
        let results = body["data"]["result"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        Ok(results
            .into_iter()
            .filter_map(|r| {
                let value = r["value"][1].as_str()?.parse().ok()?;
                Some((r["metric"].clone(), value))
            })
            .collect())
    }

    /// The single value of a query that aggregates to one series (0 if none).
    pub async fn value(&self, expr: &str, time: Option<f64>) -> Result<f64> {
        Ok(self
            .query(expr, time)
            .await?
            .first()
            .map_or(0.0, |(_, v)| *v))
    }

    pub fn logs(&self) -> String {
        self.process.logs()
    }
}

/// Ports `pid` listens on over IPv4 TCP.
pub fn listening_ports(pid: u32) -> Vec<u16> {
    let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
        return Vec::new();
    };
    let inodes: Vec<String> = fds
        .filter_map(|fd| {
            let target = std::fs::read_link(fd.ok()?.path()).ok()?;
            let text = target.to_string_lossy();
            Some(text.strip_prefix("socket:[")?.strip_suffix(']')?.to_owned())
        })
        .collect();
    let table = std::fs::read_to_string("/proc/net/tcp").unwrap_or_default();
    table
        .lines()
        .skip(1)
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            // local_address, ..., st (0A: LISTEN), ..., inode
            let (local, state, inode) = (fields.get(1)?, fields.get(3)?, fields.get(9)?);
            if *state != "0A" || !inodes.iter().any(|i| i == inode) {
                return None;
            }
            u16::from_str_radix(local.rsplit(':').next()?, 16).ok()
        })
        .collect()
}

fn percent_encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}
