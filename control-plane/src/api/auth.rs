//! Who may read the API. Its views show the mesh's topology (every proxy's
//! address and identity, the config, the traffic), so when the API listens on
//! anything but loopback, or when told to, a request needs an admin bearer token
//! (`remora token create --admin`; only its hash is stored). `/live`, the trust
//! bundle (public by nature) and the dashboard's page (it holds no data; it
//! sends the token from the URL's `#token=` to the API) stay open.

use http::{header, HeaderMap, StatusCode};

use crate::identity::{TokenError, TokenStore};

/// The API's access rule.
#[derive(Debug, Clone)]
pub enum Access {
    /// Loopback only: whoever can reach it is on this machine.
    Open,
    /// Every request but the open paths needs an admin token.
    AdminToken(TokenStore),
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

impl Access {
    pub fn check(&self, path: &str, headers: &HeaderMap) -> Result<(), Refused> {
        let Access::AdminToken(tokens) = self else {
            return Ok(());
        };
        if is_open(path) {
            return Ok(());
        }
        let unauthorized = |message: &str| Refused {
            status: StatusCode::UNAUTHORIZED,
            message: message.to_owned(),
        };
        let Some(value) = headers.get(header::AUTHORIZATION) else {
            return Err(unauthorized(
                "this API needs an admin token: create one with `remora token create --admin` and send `Authorization: Bearer <token>` (remora stat --token-file FILE)",
            ));
        };
        let token = value
            .to_str()
            .ok()
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::trim)
            .filter(|t| !t.is_empty());
        let Some(token) = token else {
            return Err(unauthorized(
                "the Authorization header must be `Bearer <admin token>`",
            ));
        };
        match tokens.verify_admin(token) {
            Ok(()) => Ok(()),
            Err(TokenError::Unknown | TokenError::Expired) => {
                Err(unauthorized("unknown or expired token"))
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

    #[test]
    fn reads_need_an_admin_token_and_say_how_to_get_one() {
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
        let access = Access::AdminToken(tokens);
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
        for open in ["/live", "/", "/api/v1/trust-bundle"] {
            access.check(open, &HeaderMap::new()).unwrap();
        }
        Access::Open
            .check("/api/v1/proxies", &HeaderMap::new())
            .unwrap();
    }
}
