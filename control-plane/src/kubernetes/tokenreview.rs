//! Service-account tokens checked by the API server: a proxy in a pod presents
//! its projected token (audience `remora`), and the control plane asks the API
//! server who it is with a `TokenReview`, instead of keeping tokens of its own.
//!
//! A token is good for a certificate when the review says it is authenticated,
//! for the audience `remora` (a token made for another service cannot be
//! replayed here), and for a service account (`system:serviceaccount:NS:SA`),
//! never a person or a node.
//!
//! Positive reviews are kept for a minute, keyed by the token's SHA-256 (the
//! token itself is not kept), so a restart storm of proxies asks the API server
//! once per pod; refusals are never kept, so a token that becomes valid (or a
//! fixed RBAC rule) works at the proxy's next try. The cost: a token revoked by
//! deleting its pod still gets certificates for up to a minute.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use k8s_openapi::api::authentication::v1::{TokenReview, TokenReviewSpec, TokenReviewStatus};
use kube::api::PostParams;
use ring::digest::{digest, SHA256};
use tokio::time::Instant;

/// The audience proxies' tokens are projected for (injection's
/// `serviceAccountToken.audience`).
pub const AUDIENCE: &str = "remora";
/// How long a positive review is used again.
const CACHE_TTL: Duration = Duration::from_secs(60);
/// The most reviews kept: one per pod of a large mesh.
const CACHE_MAX: usize = 10_000;
const SERVICE_ACCOUNT_PREFIX: &str = "system:serviceaccount:";

/// Who a token belongs to: a namespace's service account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceAccount {
    pub namespace: String,
    pub name: String,
}

/// Why a token gets no certificate.
#[derive(Debug, thiserror::Error)]
pub enum ReviewError {
    #[error("the service-account token is not authenticated: {0}")]
    NotAuthenticated(String),
    #[error("the service-account token is not for the audience `remora` (it is for: {0}); project it with `audience: remora`")]
    WrongAudience(String),
    #[error(
        "the token belongs to `{0}`, not a service account (system:serviceaccount:NAMESPACE:NAME)"
    )]
    NotServiceAccount(String),
    #[error("cannot review the token with the Kubernetes API: {0}")]
    Api(#[source] kube::Error),
}

impl ReviewError {
    /// Whether the token itself was refused (rather than the API unreachable).
    pub fn is_refusal(&self) -> bool {
        !matches!(self, ReviewError::Api(_))
    }
}

/// Reviews tokens with the API server, keeping positive answers briefly.
pub struct TokenReviewer {
    client: kube::Client,
    cache: ReviewCache,
}

impl TokenReviewer {
    pub fn new(client: kube::Client) -> Self {
        Self {
            client,
            cache: ReviewCache::default(),
        }
    }

    /// The service account `token` belongs to, or why it gets nothing.
    pub async fn review(&self, token: &str) -> Result<ServiceAccount, ReviewError> {
        let key = cache_key(token);
        if let Some(account) = self.cache.get(&key, Instant::now()) {
            return Ok(account);
        }
        let review = TokenReview {
            spec: TokenReviewSpec {
                audiences: Some(vec![AUDIENCE.to_owned()]),
                token: Some(token.to_owned()),
            },
            ..Default::default()
        };
        let answered = kube::Api::<TokenReview>::all(self.client.clone())
            .create(&PostParams::default(), &review)
            .await
            .map_err(ReviewError::Api)?;
        let account = account_of(answered.status.as_ref())?;
        self.cache.put(key, account.clone(), Instant::now());
        Ok(account)
    }
}

/// What a review's status grants: pure, so every refusal is tested.
pub fn account_of(status: Option<&TokenReviewStatus>) -> Result<ServiceAccount, ReviewError> {
    let Some(status) = status else {
        return Err(ReviewError::NotAuthenticated(
            "the API server's review has no status".into(),
        ));
    };
    if status.authenticated != Some(true) {
        let why = status
            .error
            .clone()
            .filter(|e| !e.is_empty())
            .unwrap_or_else(|| "unknown or expired token".into());
        return Err(ReviewError::NotAuthenticated(why));
    }
    // An API server that ignores `spec.audiences` answers without them: that
    // is no proof the token was made for this control plane.
    let audiences = status.audiences.clone().unwrap_or_default();
    if !audiences.iter().any(|a| a == AUDIENCE) {
        let listed = match audiences.is_empty() {
            true => "no audience listed".to_owned(),
            false => audiences.join(", "),
        };
        return Err(ReviewError::WrongAudience(listed));
    }
    let username = status
        .user
        .as_ref()
        .and_then(|u| u.username.clone())
        .unwrap_or_default();
    service_account(&username).ok_or(ReviewError::NotServiceAccount(username))
}

/// `system:serviceaccount:NS:NAME` -> the account; anything else -> `None`.
pub fn service_account(username: &str) -> Option<ServiceAccount> {
    let (namespace, name) = username
        .strip_prefix(SERVICE_ACCOUNT_PREFIX)?
        .split_once(':')?;
    let label = |s: &str| {
        !s.is_empty()
            && s.len() <= 253
            && s.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"-.".contains(&b))
    };
    (label(namespace) && label(name)).then(|| ServiceAccount {
        namespace: namespace.to_owned(),
        name: name.to_owned(),
    })
}

fn cache_key(token: &str) -> [u8; 32] {
    let mut key = [0u8; 32];
    key.copy_from_slice(digest(&SHA256, token.as_bytes()).as_ref());
    key
}

/// Positive reviews by token hash, each good for [`CACHE_TTL`]; at most
/// [`CACHE_MAX`], the expired dropped first and then everything (a full
/// cache only costs reviews again).
#[derive(Default)]
struct ReviewCache {
    entries: Mutex<HashMap<[u8; 32], (ServiceAccount, Instant)>>,
}

impl ReviewCache {
    fn get(&self, key: &[u8; 32], now: Instant) -> Option<ServiceAccount> {
        let entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        entries
            .get(key)
            .filter(|(_, until)| now < *until)
            .map(|(account, _)| account.clone())
    }

    fn put(&self, key: [u8; 32], account: ServiceAccount, now: Instant) {
        let mut entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        if entries.len() >= CACHE_MAX {
            entries.retain(|_, (_, until)| now < *until);
            if entries.len() >= CACHE_MAX {
                entries.clear();
            }
        }
        entries.insert(key, (account, now + CACHE_TTL));
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.entries
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }
}

#[cfg(test)]
mod tests;
