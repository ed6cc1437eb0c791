//! One HTTP/1.1 exchange with the control plane's API per call (hyper's client
//! connection, no pool: a CLI makes a handful of requests), with the admin
//! token when there is one, and a deadline.

use std::time::Duration;

use bytes::Bytes;
use http::{header, Method, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use serde::de::DeserializeOwned;

use super::{ApiAddr, ClientError};

/// How long one exchange may take (an apply validates and writes files).
pub const TIMEOUT: Duration = Duration::from_secs(30);

/// The API, and the token to show it.
#[derive(Debug, Clone)]
pub struct Api {
    pub addr: ApiAddr,
    token: Option<String>,
}

/// An answer: its status and body.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: StatusCode,
    pub body: Bytes,
}

impl Api {
    pub fn new(addr: ApiAddr, token: Option<String>) -> Self {
        Api { addr, token }
    }

    /// `GET path` (with its query); a status other than 2xx is an error.
    pub async fn get(&self, path: &str) -> Result<Reply, ClientError> {
        self.send(Method::GET, path, None).await?.ok(&self.addr)
    }

    /// `GET path`, decoded from JSON.
    pub async fn get_json<T: DeserializeOwned>(&self, path: &str) -> Result<T, ClientError> {
        self.get(path).await?.json(&self.addr)
    }

    /// `POST path` with a body of `content_type`; any status is returned.
    pub async fn post(
        &self,
        path: &str,
        content_type: &'static str,
        body: Bytes,
    ) -> Result<Reply, ClientError> {
        self.send(Method::POST, path, Some((content_type, body)))
            .await
    }

    async fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<(&'static str, Bytes)>,
    ) -> Result<Reply, ClientError> {
        let api = self.addr.to_string();
        tokio::time::timeout(TIMEOUT, self.exchange(method, path, body))
            .await
            .map_err(|_| ClientError::Timeout {
                api,
                timeout: TIMEOUT,
            })?
    }

    async fn exchange(
        &self,
        method: Method,
        path: &str,
        body: Option<(&'static str, Bytes)>,
    ) -> Result<Reply, ClientError> {
        let api = || self.addr.to_string();
        let stream = tokio::net::TcpStream::connect((self.addr.host(), self.addr.port()))
            .await
            .map_err(|source| ClientError::Connect { api: api(), source })?;
        let broken = |source| ClientError::Http { api: api(), source };
        let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(broken)?;
        tokio::spawn(async move {
            if let Err(error) = connection.await {
                tracing::debug!(%error, "API connection ended");
            }
        });
        let mut request = http::Request::builder()
            .method(method)
            .uri(path)
            .header(header::HOST, self.addr.authority());
        if let Some(token) = &self.token {
            request = request.header(header::AUTHORIZATION, format!("Bearer {token}"));
        }
        let bytes = match body {
            Some((content_type, bytes)) => {
                request = request.header(header::CONTENT_TYPE, content_type);
                bytes
            }
            None => Bytes::new(),
        };
        let request = request
            .body(Full::new(bytes))
            .map_err(|e| ClientError::Input(format!("cannot make the request {path}: {e}")))?;
        let response = sender.send_request(request).await.map_err(broken)?;
        let status = response.status();
        let body = response
            .into_body()
            .collect()
            .await
            .map_err(broken)?
            .to_bytes();
        Ok(Reply { status, body })
    }
}

impl Reply {
    /// This reply if it is a success, else an error with what the API said.
    pub fn ok(self, api: &ApiAddr) -> Result<Reply, ClientError> {
        if self.status.is_success() {
            return Ok(self);
        }
        Err(ClientError::Status {
            api: api.to_string(),
            status: self.status,
            message: self.message(),
        })
    }

    /// The body decoded from JSON.
    pub fn json<T: DeserializeOwned>(&self, api: &ApiAddr) -> Result<T, ClientError> {
        serde_json::from_slice(&self.body).map_err(|source| ClientError::Decode {
            api: api.to_string(),
            source,
        })
    }

    /// What an error reply says: its JSON `error`, or its text.
    pub fn message(&self) -> String {
        let text = String::from_utf8_lossy(&self.body);
        serde_json::from_str::<serde_json::Value>(&text)
            .ok()
            .and_then(|v| v.get("error").and_then(|e| e.as_str()).map(str::to_owned))
            .unwrap_or_else(|| text.trim().to_owned())
    }
}
