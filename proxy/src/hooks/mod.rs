//! `remora-proxy wait` and `remora-proxy drain`: the classic sidecar's
//! lifecycle hooks, run by the kubelet inside the proxy's container (`exec`),
//! so the image needs no shell and no `wget`.
//!
//! - `wait` (postStart): polls the admin port's `/ready` until it answers 200;
//!   Kubernetes starts the next container only when the hook returns, so the
//!   app never starts before its proxy can carry its traffic.
//! - `drain` (preStop): `POST /shutdown` (the same drain as SIGTERM), then
//!   waits until `/live` stops answering: the proxy has left the mesh, finished
//!   its connections and exited.
//!
//! Plain HTTP/1.1 over a blocking `TcpStream`: one request at a time to a
//! loopback address, with no runtime to start. Not a general HTTP client.

mod http;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use clap::Args;

pub use http::{get, post, Answer};

/// How often `/ready` and `/live` are asked.
const POLL: Duration = Duration::from_millis(200);

/// Wait until the proxy is ready (the classic sidecar's postStart hook)
///
/// Polls GET /ready on the admin port until it answers 200. Exits 0 then, or 1
/// at the timeout with the last answer (why the proxy is not ready).
#[derive(Args, Clone, Debug)]
#[command(verbatim_doc_comment)]
pub struct WaitArgs {
    /// The proxy's admin address.
    #[arg(long, default_value = "127.0.0.1:7900")]
    pub admin: SocketAddr,
    /// Give up after this long: 500ms, 30s, 2m (a bare number is seconds).
    #[arg(long, default_value = "120s", value_parser = parse_duration)]
    pub timeout: Duration,
}

/// Drain the proxy and wait until it has exited (the preStop hook)
///
/// POST /shutdown on the admin port (leave the mesh, finish the connections,
/// exit), then wait until GET /live no longer answers. Exits 0 once the proxy
/// is gone (also when it was not running), or 1 at the timeout.
#[derive(Args, Clone, Debug)]
#[command(verbatim_doc_comment)]
pub struct DrainArgs {
    /// The proxy's admin address.
    #[arg(long, default_value = "127.0.0.1:7900")]
    pub admin: SocketAddr,
    /// Give up after this long: 500ms, 30s, 2m (a bare number is seconds).
    #[arg(long, default_value = "60s", value_parser = parse_duration)]
    pub timeout: Duration,
}

#[derive(Debug, thiserror::Error)]
pub enum HookError {
    #[error("the proxy at {admin} is not ready after {timeout:?}; last answer: {last}")]
    NotReady {
        admin: SocketAddr,
        timeout: Duration,
        last: String,
    },
    #[error("the proxy at {admin} refused to shut down: {answer}")]
    Refused { admin: SocketAddr, answer: String },
    #[error("the proxy at {admin} still answers /live after {timeout:?}")]
    StillRunning {
        admin: SocketAddr,
        timeout: Duration,
    },
}

/// Returns once `/ready` answers 200.
pub fn wait(args: &WaitArgs) -> Result<(), HookError> {
    let deadline = Instant::now() + args.timeout;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let last = match get(args.admin, "/ready", left.min(http::REQUEST_TIMEOUT)) {
            Ok(answer) if answer.status == 200 => return Ok(()),
            Ok(answer) => answer.to_string(),
            Err(error) => format!("cannot reach the admin port: {error}"),
        };
        if Instant::now() + POLL >= deadline {
            return Err(HookError::NotReady {
                admin: args.admin,
                timeout: args.timeout,
                last,
            });
        }
        std::thread::sleep(POLL);
    }
}

/// Asks the proxy to drain and returns once it no longer answers.
pub fn drain(args: &DrainArgs) -> Result<(), HookError> {
    let deadline = Instant::now() + args.timeout;
    match post(args.admin, "/shutdown", http::REQUEST_TIMEOUT) {
        Ok(answer) if answer.status == 200 => {}
        Ok(answer) => {
            return Err(HookError::Refused {
                admin: args.admin,
                answer: answer.to_string(),
            })
        }
        // Nothing listens: the proxy is gone already.
        Err(error) if error.kind() == std::io::ErrorKind::ConnectionRefused => return Ok(()),
        // Anything else (a reset as it closes): find out from /live below.
        Err(_) => {}
    }
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if get(args.admin, "/live", left.min(http::REQUEST_TIMEOUT)).is_err() {
            return Ok(());
        }
        if Instant::now() + POLL >= deadline {
            return Err(HookError::StillRunning {
                admin: args.admin,
                timeout: args.timeout,
            });
        }
        std::thread::sleep(POLL);
    }
}

/// `500ms`, `30s`, `2m`, or a bare number of seconds.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: u64 = number
        .parse()
        .map_err(|_| format!("`{text}` is not a duration (e.g. 500ms, 30s, 2m)"))?;
    match unit {
        "ms" => Ok(Duration::from_millis(number)),
        "" | "s" => Ok(Duration::from_secs(number)),
        "m" => Ok(Duration::from_secs(number.saturating_mul(60))),
        _ => Err(format!(
            "`{text}`: the unit `{unit}` is not ms, s or m (e.g. 500ms, 30s, 2m)"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_in_their_usual_units() {
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("30"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        for bad in ["", "s", "1h", "-1s", "1.5s"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn draining_a_proxy_that_is_not_running_succeeds() {
        // A port nothing listens on: bind, note the port, close.
        let admin = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .unwrap();
        let args = DrainArgs {
            admin,
            timeout: Duration::from_secs(1),
        };
        drain(&args).unwrap();
    }
}
