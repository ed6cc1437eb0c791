//! Access logs: one JSON line per request, written when its response ends (so the
//! bytes sent are known), on by default to stdout (`access_log` in the bootstrap:
//! `stdout`, `off`, or a file path).
//!
//! Lines go through a bounded channel to a writer thread: a slow disk or a full
//! pipe never blocks the request path; when the channel is full, lines are dropped
//! and counted.

use std::io::Write;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::mpsc::{sync_channel, SyncSender, TrySendError};
use std::sync::Arc;

use serde::Serialize;

/// Lines waiting for the writer at most.
const QUEUE: usize = 4096;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Destination {
    Off,
    Stdout,
    File(PathBuf),
}

#[derive(Debug)]
pub struct AccessLog {
    tx: Option<SyncSender<String>>,
    pub dropped: AtomicU64,
}

impl AccessLog {
    /// Starts the writer (none for `Off`); a file that cannot be opened is an error.
    pub fn start(to: &Destination) -> std::io::Result<Arc<Self>> {
        let mut out: Box<dyn Write + Send> = match to {
            Destination::Off => {
                return Ok(Arc::new(Self {
                    tx: None,
                    dropped: AtomicU64::new(0),
                }))
            }
            Destination::Stdout => Box::new(std::io::stdout()),
            Destination::File(path) => Box::new(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)?,
            ),
        };
        let (tx, rx) = sync_channel::<String>(QUEUE);
        std::thread::Builder::new()
            .name("access-log".into())
            .spawn(move || {
                let mut buf = std::io::BufWriter::new(&mut out);
                while let Ok(line) = rx.recv() {
                    let _ = buf.write_all(line.as_bytes());
                    // Flush when nothing else is waiting, so lines appear promptly.
                    let mut more = rx.try_recv();
                    while let Ok(line) = more {
                        let _ = buf.write_all(line.as_bytes());
                        more = rx.try_recv();
                    }
                    let _ = buf.flush();
                }
            })?;
        Ok(Arc::new(Self {
            tx: Some(tx),
            dropped: AtomicU64::new(0),
        }))
    }

    pub fn enabled(&self) -> bool {
        self.tx.is_some()
    }

    pub fn write(&self, entry: &Entry) {
        let Some(tx) = &self.tx else { return };
        let Ok(mut line) = serde_json::to_string(entry) else {
            return;
        };
        line.push('\n');
        if let Err(TrySendError::Full(_)) = tx.try_send(line) {
            self.dropped.fetch_add(1, Relaxed);
        }
    }
}

/// One request, as logged.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Entry {
    /// Milliseconds since the Unix epoch when the request arrived.
    pub start_unix_ms: u64,
    pub duration_ms: f64,
    /// Time spent waiting on the upstream (or the app, inbound), over every attempt.
    pub upstream_ms: f64,
    pub direction: &'static str,
    pub request_id: String,
    /// Empty until traces are built.
    pub trace_id: String,
    pub method: String,
    pub authority: String,
    pub path: String,
    pub route: String,
    pub backend: String,
    pub endpoint: String,
    pub status: u16,
    pub grpc_status: Option<u32>,
    /// The verified identity of the caller (inbound).
    pub peer_identity: String,
    pub retries: u32,
    pub flags: Flags,
    pub bytes_received: u64,
    pub bytes_sent: u64,
}

#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct Flags {
    pub retried: bool,
    pub timed_out: bool,
    pub ejected: bool,
    pub rate_limited: bool,
    pub fault_injected: bool,
    pub overflow: bool,
}
