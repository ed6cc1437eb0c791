//! `remora stat`'s side of `/api/v1/stat`: one GET to the control plane's API.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;

use super::{Filter, StatView};

/// Why `remora stat` got no view. The cause of each is its `source`, not
/// repeated in the message: `{:#}` prints the whole chain once.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error("cannot reach the control plane API at {api}")]
    Connect {
        api: SocketAddr,
        source: std::io::Error,
    },
    #[error("control plane API at {api}")]
    Http {
        api: SocketAddr,
        source: hyper::Error,
    },
    #[error("control plane API at {api} did not answer within {0:?}", TIMEOUT)]
    Timeout { api: SocketAddr },
    /// The query named a service the control plane does not know.
    #[error("{message}")]
    Unknown { message: String },
    #[error("control plane API at {api} answered {status}: {body}")]
    Status {
        api: SocketAddr,
        status: http::StatusCode,
        body: String,
    },
    #[error("control plane API at {api} answered something that is not a stat view")]
    Decode {
        api: SocketAddr,
        source: serde_json::Error,
    },
}

const TIMEOUT: Duration = Duration::from_secs(5);

/// `token`: an admin token, for an API that needs one.
pub async fn fetch(
    api: SocketAddr,
    token: Option<&str>,
    filter: &Filter,
    window: Duration,
) -> Result<StatView, FetchError> {
    tokio::time::timeout(TIMEOUT, get(api, token, filter, window))
        .await
        .map_err(|_| FetchError::Timeout { api })?
}

async fn get(
    api: SocketAddr,
    token: Option<&str>,
    filter: &Filter,
    window: Duration,
) -> Result<StatView, FetchError> {
    let mut query = format!("window={}s", window.as_secs().max(1));
    for (k, v) in [
        ("namespace", &filter.namespace),
        ("service", &filter.service),
    ] {
        if let Some(v) = v {
            query.push_str(&format!("&{k}={v}"));
        }
    }
    let stream = tokio::net::TcpStream::connect(api)
        .await
        .map_err(|source| FetchError::Connect { api, source })?;
    let http = |source| FetchError::Http { api, source };
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(http)?;
    tokio::spawn(connection);
    let mut request = http::Request::get(format!("/api/v1/stat?{query}"))
        .header(http::header::HOST, api.to_string());
    if let Some(token) = token {
        request = request.header(http::header::AUTHORIZATION, format!("Bearer {token}"));
    }
    let request = request
        .body(Empty::<Bytes>::new())
        .map_err(|e| FetchError::Status {
            api,
            status: http::StatusCode::BAD_REQUEST,
            body: e.to_string(),
        })?;
    let response = sender.send_request(request).await.map_err(http)?;
    let status = response.status();
    let body = response
        .into_body()
        .collect()
        .await
        .map_err(http)?
        .to_bytes();
    if !status.is_success() {
        // The API's errors are `{"error": "..."}`: the message alone is the
        // answer a user reads.
        let message = serde_json::from_slice::<serde_json::Value>(&body)
            .ok()
            .and_then(|v| v["error"].as_str().map(str::to_owned));
        return Err(match message {
            Some(message) if status == http::StatusCode::NOT_FOUND => {
                FetchError::Unknown { message }
            }
            Some(body) => FetchError::Status { api, status, body },
            None => FetchError::Status {
                api,
                status,
                body: String::from_utf8_lossy(&body).trim().to_owned(),
            },
        });
    }
    serde_json::from_slice(&body).map_err(|source| FetchError::Decode { api, source })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::Chain;

    #[test]
    fn a_refused_connection_is_said_once() {
        let api: SocketAddr = "127.0.0.1:7780".parse().unwrap();
        let error = FetchError::Connect {
            api,
            source: std::io::Error::from(std::io::ErrorKind::ConnectionRefused),
        };
        let text = Chain(&error).to_string();
        assert_eq!(text.matches("refused").count(), 1, "{text}");
        assert!(text.starts_with("cannot reach the control plane API at 127.0.0.1:7780: "));
    }
}
