//! Who may read and write the API. Its views show the mesh's topology (every
//! proxy's address and identity, the config, the traffic), so when the API
//! listens on anything but loopback, or when told to, a read needs an admin
//! bearer token (`remora token create --admin`; only its hash is stored). `/live`,
//! the trust bundle (public by nature) and the dashboard's page (it holds no
//! data; it sends the token from the URL's `#token=` to the API) stay open.
//!
//! A write (apply, delete) changes what every proxy does, so it always needs an
//! admin token, on loopback too: being on the machine is not enough to change
//! the mesh.

use http::{header, HeaderMap, StatusCode};

use crate::identity::{TokenError, TokenStore};

/// The API's access rule.
#[derive(Debug, Clone)]
pub struct Access {
    tokens: TokenStore,
    reads: Reads,
}

/// Who may read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reads {
    /// Loopback only: whoever can reach it is on this machine.
    Open,
    /// Every read but the open paths needs an admin token.
    AdminToken,
}

/// Paths anyone may read.
pub fn is_open(path: &str) -> bool {
    matches!(path, "/live" | "/" | "/dashboard" | "/api/v1/trust-bundle")
}

/// A refusal: the status (401 or 403) and a body that says what to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refused {
    pub status: StatusCode,
    pub message: String,
}

const HOW: &str = "create one with `remora token create --admin` and send `Authorization: Bearer <token>` (remora --token-file FILE, or REMORA_API_TOKEN_FILE)";

impl Access {
    /// Admin tokens are checked against `tokens`; reads follow `reads`.
    pub fn new(tokens: TokenStore, reads: Reads) -> Self {
        Access { tokens, reads }
    }

    /// Whether a read of `path` is allowed.
    pub fn check(&self, path: &str, headers: &HeaderMap) -> Result<(), Refused> {
        if self.reads == Reads::Open || is_open(path) {
            return Ok(());
        }
        self.admin(headers, "this API needs an admin token")
    }

    /// Whether a write is allowed: always with an admin token only.
    pub fn check_write(&self, headers: &HeaderMap) -> Result<(), Refused> {
        self.admin(
            headers,
            "writes (apply, delete) need an admin token, on loopback too",
        )
    }

    fn admin(&self, headers: &HeaderMap, missing: &str) -> Result<(), Refused> {
        let unauthorized = |message: String| Refused {
            status: StatusCode::UNAUTHORIZED,
            message,
        };
        let Some(value) = headers.get(header::AUTHORIZATION) else {
            return Err(unauthorized(format!("{missing}: {HOW}")));
        };
        let token = value
            .to_str()
            .ok()
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::trim)
            .filter(|t| !t.is_empty());
        let Some(token) = token else {
            return Err(unauthorized(
                "the Authorization header must be `Bearer <admin token>`".to_owned(),
            ));
        };
        match self.tokens.verify_admin(token) {
            Ok(()) => Ok(()),
            Err(TokenError::Unknown | TokenError::Expired) => {
                Err(unauthorized("unknown or expired token".to_owned()))
            }
            Err(e @ (TokenError::NotAdmin | TokenError::AdminForWorkload)) => Err(Refused {
                status: StatusCode::FORBIDDEN,
                message: e.to_string(),
            }),
            Err(e @ TokenError::Store { .. }) => {
                tracing::error!(error = %e, "cannot read the token store");
                Err(Refused {
                    status: StatusCode::SERVICE_UNAVAILABLE,
                    message: "cannot check the token now".to_owned(),
                })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::Grant;
    use std::time::Duration;

    fn bearer(token: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(
            header::AUTHORIZATION,
            format!("Bearer {token}").parse().unwrap(),
        );
        h
    }

    /// A token store with an admin token and a workload token for default/web.
    fn tokens() -> (tempfile::TempDir, TokenStore, String, String) {
        let dir = tempfile::tempdir().unwrap();
        let tokens = TokenStore::new(dir.path());
        let admin = tokens.create_admin(Duration::from_secs(60)).unwrap();
        let workload = tokens
            .create(
                Grant {
                    namespace: "default".into(),
                    service_account: "web".into(),
                },
                Duration::from_secs(60),
            )
            .unwrap();
        (dir, tokens, admin, workload)
    }

    #[test]
    fn reads_need_an_admin_token_and_say_how_to_get_one() {
        let (_dir, tokens, admin, workload) = tokens();
        let open = Access::new(tokens.clone(), Reads::Open);
        let access = Access::new(tokens, Reads::AdminToken);
        let e = access
            .check("/api/v1/proxies", &HeaderMap::new())
            .unwrap_err();
        assert_eq!(e.status, StatusCode::UNAUTHORIZED);
        assert!(e.message.contains("remora token create --admin"), "{e:?}");
        let e = access
            .check("/api/v1/proxies", &bearer("rmt_guess"))
            .unwrap_err();
        assert_eq!(e.status, StatusCode::UNAUTHORIZED);
        let e = access
            .check("/api/v1/config", &bearer(&workload))
            .unwrap_err();
        assert_eq!(e.status, StatusCode::FORBIDDEN);
        access.check("/api/v1/config", &bearer(&admin)).unwrap();
        for path in ["/live", "/", "/api/v1/trust-bundle"] {
            access.check(path, &HeaderMap::new()).unwrap();
        }
        open.check("/api/v1/proxies", &HeaderMap::new()).unwrap();
    }

    #[test]
    fn writes_need_an_admin_token_even_where_reads_are_open() {
        let (_dir, tokens, admin, workload) = tokens();
        let open = Access::new(tokens, Reads::Open);
        let e = open.check_write(&HeaderMap::new()).unwrap_err();
        assert_eq!(e.status, StatusCode::UNAUTHORIZED);
        assert!(e.message.contains("on loopback too"), "{e:?}");
        assert!(e.message.contains("remora token create --admin"), "{e:?}");
        let e = open.check_write(&bearer(&workload)).unwrap_err();
        assert_eq!(e.status, StatusCode::FORBIDDEN);
        open.check_write(&bearer(&admin)).unwrap();
    }
}
