//! Service-account tokens checked by the API server: a proxy in a pod presents
//! its projected token (audience `remora`), and the control plane asks the API
//! server who it is with a `TokenReview`, instead of keeping tokens of its own.
//!
//! A token is good for a certificate when the review says it is authenticated,
//! for the audience `remora` (a token made for another service cannot be
//! replayed here), for a service account (`system:serviceaccount:NS:SA`,
//! never a person or a node), and bound to a pod (the review names the pod's
//! uid: another authenticator may map its users to service-account names,
//! only the service-account authenticator binds tokens to pods).
//!
//! Whoever reaches the xDS port may call Certify without a certificate, so a
//! review must cost the API server little and be hard to multiply:
//! - a token over 8 KiB or not shaped as a JWT is refused before any review;
//! - at most [`Limits::concurrent`] reviews are in flight; a call waits at
//!   most [`Limits::permit_wait`] for its turn, and a review gets
//!   [`Limits::timeout`]: past either it is answered "try again"
//!   (UNAVAILABLE, which the proxy retries with backoff);
//! - answers are kept by the token's SHA-256 (the token itself is not kept):
//!   an accepted token for a minute, so a restart storm of proxies asks the
//!   API server once per pod; a refused one for ten seconds, so a caller
//!   repeating a bad token costs one review per ten seconds, while a token
//!   that becomes valid (or a fixed RBAC rule) works soon after. The cost: a
//!   token revoked by deleting its pod still gets certificates for up to a
//!   minute.

mod cache;
mod judge;

use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use k8s_openapi::api::authentication::v1::{TokenReview, TokenReviewSpec, TokenReviewStatus};
use kube::api::PostParams;
use tokio::sync::Semaphore;
use tokio::time::Instant;

use cache::{cache_key, ReviewCache};
pub use judge::{account_of, check_shape, service_account, Refusal, MAX_TOKEN_BYTES, POD_UID};

/// The audience proxies' tokens are projected for (injection's
/// `serviceAccountToken.audience`).
pub const AUDIENCE: &str = "remora";

/// Who a token belongs to: a namespace's service account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceAccount {
    pub namespace: String,
    pub name: String,
}

/// Why a token gets no certificate now.
#[derive(Debug, thiserror::Error)]
pub enum ReviewError {
    /// The token itself was refused.
    #[error(transparent)]
    Refused(#[from] Refusal),
    #[error("cannot review the token with the Kubernetes API: {0}")]
    Api(#[source] kube::Error),
    #[error("the Kubernetes API did not review the token within {0:?}")]
    TimedOut(Duration),
    #[error("too many token reviews in flight; try again")]
    Busy,
}

impl ReviewError {
    /// Whether the token itself was refused (rather than not reviewed now).
    pub fn is_refusal(&self) -> bool {
        matches!(self, ReviewError::Refused(_))
    }
}

/// How much reviewing the API server is asked to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Reviews in flight at once, at most.
    pub concurrent: usize,
    /// How long a call waits for one of them.
    pub permit_wait: Duration,
    /// How long one review may take.
    pub timeout: Duration,
    /// How long an accepted token is used again without a review.
    pub accepted_for: Duration,
    /// How long a refused token is refused again without a review.
    pub refused_for: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            concurrent: 32,
            permit_wait: Duration::from_secs(5),
            timeout: Duration::from_secs(5),
            accepted_for: Duration::from_secs(60),
            refused_for: Duration::from_secs(10),
        }
    }
}

/// Where reviews are sent: the API server, or a test's stand-in.
pub trait ReviewApi: Send + Sync + 'static {
    /// The status of the review of `token` for [`AUDIENCE`].
    fn review(
        &self,
        token: &str,
    ) -> BoxFuture<'static, Result<Option<TokenReviewStatus>, kube::Error>>;
}

/// `POST /apis/authentication.k8s.io/v1/tokenreviews`.
struct KubeApi(kube::Client);

impl ReviewApi for KubeApi {
    fn review(
        &self,
        token: &str,
    ) -> BoxFuture<'static, Result<Option<TokenReviewStatus>, kube::Error>> {
        let api = kube::Api::<TokenReview>::all(self.0.clone());
        let review = TokenReview {
            spec: TokenReviewSpec {
                audiences: Some(vec![AUDIENCE.to_owned()]),
                token: Some(token.to_owned()),
            },
            ..Default::default()
        };
        Box::pin(async move {
            api.create(&PostParams::default(), &review)
                .await
                .map(|answered| answered.status)
        })
    }
}

/// Reviews tokens with the API server, within [`Limits`], keeping answers
/// briefly.
pub struct TokenReviewer {
    api: Arc<dyn ReviewApi>,
    limits: Limits,
    permits: Semaphore,
    accepted: ReviewCache<ServiceAccount>,
    refused: ReviewCache<Refusal>,
}

impl TokenReviewer {
    /// Reviews with the cluster's API server, within the default limits.
    pub fn new(client: kube::Client) -> Self {
        Self::with_api(Arc::new(KubeApi(client)), Limits::default())
    }

    pub fn with_api(api: Arc<dyn ReviewApi>, limits: Limits) -> Self {
        Self {
            api,
            limits,
            permits: Semaphore::new(limits.concurrent),
            accepted: ReviewCache::new(limits.accepted_for),
            refused: ReviewCache::new(limits.refused_for),
        }
    }

    /// The service account `token` belongs to, or why it gets nothing now.
    pub async fn review(&self, token: &str) -> Result<ServiceAccount, ReviewError> {
        check_shape(token)?;
        let key = cache_key(token);
        if let Some(known) = self.known(&key) {
            return known;
        }
        let permit = tokio::time::timeout(self.limits.permit_wait, self.permits.acquire()).await;
        // The semaphore is never closed: an error is as good as a timeout.
        let Ok(Ok(_permit)) = permit else {
            return Err(ReviewError::Busy);
        };
        // Another call may have reviewed the same token while this one waited.
        if let Some(known) = self.known(&key) {
            return known;
        }
        let status = match tokio::time::timeout(self.limits.timeout, self.api.review(token)).await {
            Err(_) => return Err(ReviewError::TimedOut(self.limits.timeout)),
            Ok(Err(error)) => return Err(ReviewError::Api(error)),
            Ok(Ok(status)) => status,
        };
        let now = Instant::now();
        match account_of(status.as_ref()) {
            Ok(account) => {
                self.accepted.put(key, account.clone(), now);
                Ok(account)
            }
            Err(refusal) => {
                self.refused.put(key, refusal.clone(), now);
                Err(refusal.into())
            }
        }
    }

    /// A kept answer for the token of `key`, if any.
    fn known(&self, key: &[u8; 32]) -> Option<Result<ServiceAccount, ReviewError>> {
        let now = Instant::now();
        if let Some(account) = self.accepted.get(key, now) {
            return Some(Ok(account));
        }
        self.refused
            .get(key, now)
            .map(|refusal| Err(refusal.into()))
    }
}

#[cfg(test)]
mod tests;
