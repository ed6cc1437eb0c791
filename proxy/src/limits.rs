//! How much one client may take: request header and body sizes, connections per
//! listener, and how long a connection may sit idle. Bootstrap `limits`; the
//! defaults fit a sidecar and keep one misbehaving client from hurting others.
//!
//! Not here: enforcing them (`http::limits` per request, `http::server` per
//! connection).

use std::time::Duration;

use serde::Deserialize;

/// The defaults, and what bootstrap `limits` may set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// The request line and headers together, counted as HTTP/2 does (name +
    /// value + 32 per field): over it, 431 from the proxy the request entered.
    pub max_request_header_bytes: usize,
    /// A request whose `content-length` is over it gets 413; `None`: no limit.
    /// (A chunked body is not counted yet.)
    pub max_request_body_bytes: Option<u64>,
    /// Open connections per data listener (outbound, inbound); over it, new
    /// connections are closed at once and counted.
    pub max_connections: usize,
    /// Open connections on the admin listener, kept apart so `/ready` answers
    /// while the data listeners are full.
    pub admin_max_connections: usize,
    /// A connection with no request in flight and no bytes moving for this long
    /// is closed (HTTP/2: GOAWAY first).
    pub idle_timeout: Duration,
}

/// 32 KiB: above what browsers and gRPC send, and under what the peer proxy's
/// HTTP/2 server accepts (see `http::server`), so a request that passes here
/// never breaks the shared connection between proxies.
pub const DEFAULT_MAX_REQUEST_HEADER_BYTES: usize = 32 * 1024;
/// Envoy's default for downstream connections is an hour; five minutes outlives
/// common client pools (Go: 90 s) while freeing what a hostile client holds.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(300);
pub const DEFAULT_ADMIN_MAX_CONNECTIONS: usize = 64;
/// File descriptors kept out of the data listeners' share: upstream
/// connections to unmeshed endpoints and the app, the control plane, logs.
const RESERVED_DESCRIPTORS: usize = 512;
/// When the descriptor limit cannot be read.
const FALLBACK_MAX_CONNECTIONS: usize = 4096;

impl Default for Limits {
    /// The defaults without reading the process's descriptor limit (see
    /// [`RawLimits::resolve`], which does).
    fn default() -> Self {
        Self::for_open_files(None)
    }
}

impl Limits {
    /// The defaults for a process that may open `open_files` descriptors.
    pub fn for_open_files(open_files: Option<u64>) -> Self {
        Limits {
            max_request_header_bytes: DEFAULT_MAX_REQUEST_HEADER_BYTES,
            max_request_body_bytes: None,
            max_connections: default_max_connections(open_files),
            admin_max_connections: DEFAULT_ADMIN_MAX_CONNECTIONS,
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
        }
    }
}

/// Bootstrap `limits`, every field optional.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLimits {
    max_request_header_bytes: Option<u64>,
    max_request_body_bytes: Option<u64>,
    max_connections: Option<u64>,
    admin_max_connections: Option<u64>,
    idle_timeout_ms: Option<u64>,
}

/// A field of bootstrap `limits` out of its range.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{value} is out of range ({min} to {max})")]
pub struct OutOfRange {
    pub field: &'static str,
    pub value: u64,
    pub min: u64,
    pub max: u64,
}

impl RawLimits {
    /// The limits this bootstrap asks for, the rest sized for this process (its
    /// descriptor limit is read once, here).
    pub fn resolve(self) -> Result<Limits, OutOfRange> {
        let d = Limits::for_open_files(open_files_limit());
        let check = |field, value: Option<u64>, min: u64, max: u64| match value {
            Some(v) if !(min..=max).contains(&v) => Err(OutOfRange {
                field,
                value: v,
                min,
                max,
            }),
            v => Ok(v),
        };
        let header = check(
            "max_request_header_bytes",
            self.max_request_header_bytes,
            1024,
            1 << 20,
        )?;
        let body = check(
            "max_request_body_bytes",
            self.max_request_body_bytes,
            0,
            u64::MAX,
        )?;
        let connections = check("max_connections", self.max_connections, 1, 1 << 20)?;
        let admin = check("admin_max_connections", self.admin_max_connections, 1, 4096)?;
        let idle = check("idle_timeout_ms", self.idle_timeout_ms, 100, 86_400_000)?;
        Ok(Limits {
            max_request_header_bytes: header.map_or(d.max_request_header_bytes, |v| v as usize),
            // 0 means no limit, like an absent field.
            max_request_body_bytes: body.filter(|v| *v > 0),
            max_connections: connections.map_or(d.max_connections, |v| v as usize),
            admin_max_connections: admin.map_or(d.admin_max_connections, |v| v as usize),
            idle_timeout: idle.map_or(d.idle_timeout, Duration::from_millis),
        })
    }
}

/// Each data listener gets a quarter of the descriptors left after the reserve:
/// each accepted connection may need a second descriptor upstream, and both
/// listeners full together must still leave the admin listener room.
fn default_max_connections(open_files: Option<u64>) -> usize {
    match open_files {
        Some(n) => (usize::try_from(n)
            .unwrap_or(usize::MAX)
            .saturating_sub(RESERVED_DESCRIPTORS)
            / 4)
        .max(16),
        None => FALLBACK_MAX_CONNECTIONS,
    }
}

/// The soft `RLIMIT_NOFILE`, read from `/proc/self/limits` (Linux) so no unsafe
/// call is needed; `None` elsewhere or when unlimited.
pub fn open_files_limit() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/self/limits").ok()?;
    parse_open_files(&text)
}

fn parse_open_files(limits: &str) -> Option<u64> {
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line.trim_start_matches("Max open files")
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_connection_limit_leaves_room_for_upstreams_and_admin() {
        assert_eq!(default_max_connections(Some(20_000)), (20_000 - 512) / 4);
        assert_eq!(default_max_connections(Some(100)), 16);
        assert_eq!(default_max_connections(None), FALLBACK_MAX_CONNECTIONS);
    }

    #[test]
    fn reads_the_soft_open_files_limit() {
        let text = "Limit                     Soft Limit           Hard Limit           Units\n\
                    Max processes             unlimited            unlimited            processes\n\
                    Max open files            20000                40000                files\n";
        assert_eq!(parse_open_files(text), Some(20_000));
        assert_eq!(
            parse_open_files("Max open files  unlimited unlimited files"),
            None
        );
    }

    #[test]
    fn bootstrap_limits_are_checked_and_name_the_field() {
        let raw: RawLimits = serde_yaml_ng::from_str("idle_timeout_ms: 5\n").unwrap();
        let e = raw.resolve().unwrap_err();
        assert_eq!(e.field, "idle_timeout_ms");
        let raw: RawLimits = serde_yaml_ng::from_str(
            "max_connections: 10\nidle_timeout_ms: 1000\nmax_request_body_bytes: 0\n",
        )
        .unwrap();
        let l = raw.resolve().unwrap();
        assert_eq!(l.max_connections, 10);
        assert_eq!(l.idle_timeout, Duration::from_secs(1));
        assert_eq!(l.max_request_body_bytes, None);
        assert_eq!(l.max_request_header_bytes, DEFAULT_MAX_REQUEST_HEADER_BYTES);
    }
}
