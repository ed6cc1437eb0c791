//! One child process: its output kept in a log file, killed when dropped.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::Duration;

use anyhow::{anyhow, Context, Result};
use serde::de::DeserializeOwned;
use tempfile::TempDir;

use super::wait::POLL_INTERVAL;

/// How many trailing log lines an error message or a panic report shows.
const LOG_TAIL_LINES: usize = 200;

/// A running child process started by the harness.
///
/// Its stdout and stderr go to `<dir>/<label>.log`; [`Process::logs`] reads them.
/// Dropping it kills the process (SIGKILL) and reaps it; if the thread is panicking
/// (a failed assertion) the tail of the log is printed, so a failing test shows what
/// the process said.
pub struct Process {
    label: String,
    child: Child,
    log_path: PathBuf,
    dir: TempDir,
}

impl Process {
    /// Spawn `command` with its output sent to a log file in `dir`, which the process
    /// keeps (and removes on drop). `label` names it in logs and errors.
    pub fn spawn(label: &str, mut command: Command, dir: TempDir) -> Result<Self> {
        let log_path = dir.path().join(format!("{}.log", label.replace(' ', "-")));
        let log = File::create(&log_path)
            .with_context(|| format!("cannot create {}", log_path.display()))?;
        let log_err = log
            .try_clone()
            .context("cannot clone the log file handle")?;
        if std::env::var_os("RUST_LOG").is_none() {
            command.env("RUST_LOG", "info");
        }
        command
            .stdin(Stdio::null())
            .stdout(Stdio::from(log))
            .stderr(Stdio::from(log_err));
        let child = command
            .spawn()
            .with_context(|| format!("cannot start {label} ({command:?})"))?;
        tracing::debug!(label, pid = child.id(), "started");
        Ok(Self {
            label: label.to_owned(),
            child,
            log_path,
            dir,
        })
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The process's private temporary folder (log, addresses file, bootstrap).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Everything the process wrote to stdout and stderr so far.
    pub fn logs(&self) -> String {
        std::fs::read_to_string(&self.log_path)
            .unwrap_or_else(|e| format!("(cannot read {}: {e})", self.log_path.display()))
    }

    /// The last lines of [`Process::logs`], for error messages.
    pub fn logs_tail(&self) -> String {
        tail(&self.logs(), LOG_TAIL_LINES)
    }

    /// The exit status if the process has exited, without waiting.
    pub fn exit_status(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// Asks the process to stop (SIGTERM) and waits up to `timeout` for it to
    /// exit; kills it (SIGKILL) if it has not. Returns how it exited.
    pub fn terminate(&mut self, timeout: std::time::Duration) -> Option<ExitStatus> {
        if let Some(status) = self.exit_status() {
            return Some(status);
        }
        let _ = std::process::Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = std::time::Instant::now() + timeout;
        while std::time::Instant::now() < deadline {
            if let Some(status) = self.exit_status() {
                return Some(status);
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        self.kill();
        None
    }

    /// Kill the process (SIGKILL) and reap it. Killing a dead process does nothing.
    pub fn kill(&mut self) {
        if self.exit_status().is_some() {
            return;
        }
        if let Err(e) = self.child.kill() {
            tracing::warn!(label = %self.label, error = %e, "cannot kill");
        }
        let _ = self.child.wait();
        tracing::debug!(label = %self.label, pid = self.child.id(), "killed");
    }

    /// Poll `file` until it holds JSON of type `T` (the addresses a process writes
    /// once it has bound). Fails early if the process exits, and after `timeout`;
    /// both errors carry the process's log.
    pub async fn wait_addresses<T: DeserializeOwned>(
        &mut self,
        file: &Path,
        timeout: Duration,
    ) -> Result<T> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if let Some(parsed) = read_json::<T>(file) {
                return Ok(parsed);
            }
            if let Some(status) = self.exit_status() {
                return Err(anyhow!(
                    "{} (pid {}) exited with {status} before writing {}; its output:\n{}",
                    self.label,
                    self.pid(),
                    file.display(),
                    self.logs_tail()
                ));
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(anyhow!(
                    "{} (pid {}) did not write {} within {timeout:?}; its output:\n{}",
                    self.label,
                    self.pid(),
                    file.display(),
                    self.logs_tail()
                ));
            }
            tokio::time::sleep(POLL_INTERVAL).await;
        }
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        self.kill();
        if std::thread::panicking() {
            eprintln!(
                "----- {} (pid {}) output -----\n{}\n----- end of {} -----",
                self.label,
                self.pid(),
                self.logs_tail(),
                self.label
            );
        }
    }
}

/// `None` while the file is missing or half written.
fn read_json<T: DeserializeOwned>(file: &Path) -> Option<T> {
    let text = std::fs::read_to_string(file).ok()?;
    serde_json::from_str(&text).ok()
}

/// The last `lines` lines of `text`.
fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    let start = all.len().saturating_sub(lines);
    let mut out = String::new();
    if start > 0 {
        out.push_str(&format!("... ({start} earlier lines)\n"));
    }
    out.push_str(&all[start..].join("\n"));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tail_keeps_the_last_lines_and_says_how_many_were_cut() {
        assert_eq!(tail("a\nb\nc\n", 2), "... (1 earlier lines)\nb\nc");
        assert_eq!(tail("a\nb", 5), "a\nb");
        assert_eq!(tail("", 5), "");
    }

    #[test]
    fn half_written_json_is_not_read() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("addresses.json");
        assert!(read_json::<serde_json::Value>(&file).is_none());
        std::fs::write(&file, "{\"xds\": \"127.0.0.1:1\"").unwrap();
        assert!(read_json::<serde_json::Value>(&file).is_none());
        std::fs::write(&file, "{\"xds\": \"127.0.0.1:1\"}").unwrap();
        assert!(read_json::<serde_json::Value>(&file).is_some());
    }

    #[tokio::test]
    async fn a_process_that_exits_early_is_reported_with_its_output() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("never.json");
        let mut cmd = Command::new("sh");
        cmd.args(["-c", "echo 'cannot bind: boom' >&2; exit 3"]);
        let mut p = Process::spawn("fake", cmd, dir).unwrap();
        let err = p
            .wait_addresses::<serde_json::Value>(&file, Duration::from_secs(5))
            .await
            .unwrap_err()
            .to_string();
        assert!(err.contains("exited"), "{err}");
        assert!(err.contains("cannot bind: boom"), "{err}");
    }

    #[tokio::test]
    async fn addresses_are_read_once_written() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("addresses.json");
        let mut cmd = Command::new("sh");
        cmd.arg("-c").arg(format!(
            "sleep 0.1; echo '{{\"api\": \"127.0.0.1:9\"}}' > {}; exec sleep 30",
            file.display()
        ));
        let mut p = Process::spawn("fake", cmd, dir).unwrap();
        let v: serde_json::Value = p
            .wait_addresses(&file, Duration::from_secs(5))
            .await
            .unwrap();
        assert_eq!(v["api"], "127.0.0.1:9");
        p.kill();
        assert!(p.exit_status().is_some());
    }
}
