//! Access logs: one JSON line per request, written when its response ends (so the
//! bytes sent are known), on by default to stdout (`access_log` in the bootstrap:
//! `stdout`, `off`, or a file path).
//!
//! Lines are appended to a shared buffer that a writer thread takes every 10 ms:
//! the request path never waits on the disk or a pipe and never wakes a thread.
//! When the buffer is full (a stalled writer), lines are dropped and counted.
//! [`AccessLog::close`] writes what is left when the proxy stops.

use std::io::Write;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use serde::Serialize;

/// Bytes waiting for the writer at most.
const BUFFER: usize = 4 * 1024 * 1024;
/// How often the writer takes what was logged.
const FLUSH_EVERY: Duration = Duration::from_millis(10);

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Destination {
    Off,
    Stdout,
    File(PathBuf),
}

#[derive(Debug)]
pub struct AccessLog {
    /// `None` when off.
    pending: Option<Arc<Mutex<Vec<u8>>>>,
    pub dropped: AtomicU64,
    /// Tells the writer to write what is left and stop; and the writer, to wait for.
    closing: Arc<std::sync::atomic::AtomicBool>,
    writer: Mutex<Option<std::thread::JoinHandle<()>>>,
}

impl AccessLog {
    /// Starts the writer (none for `Off`); a file that cannot be opened is an error.
    pub fn start(to: &Destination) -> std::io::Result<Arc<Self>> {
        let mut out: Box<dyn Write + Send> = match to {
            Destination::Off => {
                return Ok(Arc::new(Self {
                    pending: None,
                    dropped: AtomicU64::new(0),
                    closing: Arc::default(),
                    writer: Mutex::new(None),
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
        let pending = Arc::new(Mutex::new(Vec::with_capacity(64 * 1024)));
        let shared = Arc::downgrade(&pending);
        let closing = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let stop = closing.clone();
        let writer = std::thread::Builder::new()
            .name("access-log".into())
            .spawn(move || {
                let mut batch = Vec::with_capacity(64 * 1024);
                // Ends when the log is closed or dropped (the proxy is stopping),
                // after one last round for what was written before.
                while let Some(pending) = shared.upgrade() {
                    let last = stop.load(Relaxed);
                    std::mem::swap(
                        &mut *pending.lock().unwrap_or_else(PoisonError::into_inner),
                        &mut batch,
                    );
                    drop(pending);
                    if !batch.is_empty() {
                        let _ = out.write_all(&batch);
                        let _ = out.flush();
                        batch.clear();
                    }
                    if last {
                        return;
                    }
                    std::thread::sleep(FLUSH_EVERY);
                }
            })?;
        Ok(Arc::new(Self {
            pending: Some(pending),
            dropped: AtomicU64::new(0),
            closing,
            writer: Mutex::new(Some(writer)),
        }))
    }

    /// Writes every line logged so far and stops the writer; lines logged later
    /// are not written. Blocks for at most one flush interval and the write.
    pub fn close(&self) {
        self.closing.store(true, Relaxed);
        let writer = self
            .writer
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(writer) = writer {
            let _ = writer.join();
        }
    }

    pub fn enabled(&self) -> bool {
        self.pending.is_some()
    }

    /// Appends one line: a request's [`Entry`] or a connection's [`TcpEntry`].
    pub fn write<E: Serialize>(&self, entry: &E) {
        let Some(pending) = &self.pending else { return };
        let mut buf = pending.lock().unwrap_or_else(PoisonError::into_inner);
        if buf.len() >= BUFFER {
            self.dropped.fetch_add(1, Relaxed);
            return;
        }
        if serde_json::to_writer(&mut *buf, entry).is_ok() {
            buf.push(b'\n');
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

/// One opaque TCP connection, as logged when it ends.
#[derive(Debug, Clone, Default, Serialize)]
pub struct TcpEntry {
    pub start_unix_ms: u64,
    pub duration_ms: f64,
    pub direction: &'static str,
    /// Always `tcp`: tells these lines from requests'.
    pub protocol: &'static str,
    /// What detection saw (`opaque`, `tls`, `timeout`, or `declared` when the
    /// port skipped it) and why the connection was carried as opaque TCP.
    pub detected: &'static str,
    pub opaque_reason: &'static str,
    /// The Service port it went to (`redis.default:6379`), or empty.
    pub destination: String,
    pub app_protocol: String,
    /// The address the client dialled (transparent mode), or empty.
    pub original_destination: String,
    /// The server name of a TLS client hello, when the app spoke TLS.
    pub sni: String,
    pub endpoint: String,
    /// The verified identity of the caller (inbound) or of the server (outbound).
    pub peer_identity: String,
    pub bytes_sent: u64,
    pub bytes_received: u64,
    /// How it ended: `closed`, `idle_timeout`, `client_reset`, `server_reset`,
    /// `denied`, `no_destination`, `connect_failed`.
    pub end: &'static str,
    pub error: String,
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
