//! The operator's side of the HTTP API: what `remora apply`, `delete`, `get`,
//! `status` and `stat` send and how they print the answers. The command line
//! (`cli`) parses; this module talks to the control plane and formats.
//!
//! Exit codes scripts can trust ([`Exit`]): 0 ok, 1 refused (invalid config,
//! not found, a NACK, a proxy behind), 2 usage (clap's), 3 the control plane
//! cannot be reached.

mod addr; //    `127.0.0.1:7780` or `http://127.0.0.1:7780`
pub mod apply; // apply and delete, and `--wait`
mod files; //   `-f FILE|DIR|-`
pub mod get; //  get KIND [NAME]
mod http; //    one HTTP/1.1 exchange per call
pub mod status; // status, and the proxies' state `--wait` reads
mod table; //   aligned columns
mod views; //   the API's JSON, as the client reads it

pub use self::addr::ApiAddr;
pub use self::http::{Api, Reply, TIMEOUT};

use std::path::PathBuf;
use std::process::ExitCode;

/// How results are printed: `table` for people, `json` or `yaml` for scripts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Output {
    Table,
    Json,
    Yaml,
}

/// What the process exits with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    Ok = 0,
    /// Refused or not as asked: invalid config, not found, a NACK, a proxy
    /// behind, an expired token.
    Failed = 1,
    /// The command line was wrong (clap exits with it too).
    Usage = 2,
    /// No answer from the control plane.
    Unreachable = 3,
}

impl From<Exit> for ExitCode {
    fn from(e: Exit) -> Self {
        ExitCode::from(e as u8)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("cannot reach the control plane API at {api}")]
    Connect { api: String, source: std::io::Error },
    #[error("the control plane API at {api} did not answer within {timeout:?}")]
    Timeout {
        api: String,
        timeout: std::time::Duration,
    },
    #[error("the exchange with the control plane API at {api} broke off")]
    Http { api: String, source: hyper::Error },
    #[error("the control plane API at {api} answered {status}: {message}")]
    Status {
        api: String,
        status: ::http::StatusCode,
        message: String,
    },
    #[error("the control plane API at {api} answered something this remora does not read")]
    Decode {
        api: String,
        source: serde_json::Error,
    },
    #[error("cannot read {path}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{0}")]
    Input(String),
}

impl ClientError {
    /// The exit code this error means.
    pub fn exit(&self) -> Exit {
        match self {
            ClientError::Connect { .. }
            | ClientError::Timeout { .. }
            | ClientError::Http { .. } => Exit::Unreachable,
            ClientError::Input(_) => Exit::Usage,
            _ => Exit::Failed,
        }
    }
}

/// The admin token in `path` (trimmed), if a file is given.
pub fn read_token(path: Option<&std::path::Path>) -> Result<Option<String>, ClientError> {
    let Some(path) = path else {
        return Ok(None);
    };
    let token = std::fs::read_to_string(path).map_err(|source| ClientError::Read {
        path: path.to_owned(),
        source,
    })?;
    let token = token.trim();
    if token.is_empty() {
        return Err(ClientError::Input(format!(
            "{} holds no token",
            path.display()
        )));
    }
    Ok(Some(token.to_owned()))
}
