//! What a token may be before it is reviewed, and what a review's status
//! grants: pure, so every refusal is a unit test.

use k8s_openapi::api::authentication::v1::TokenReviewStatus;

use super::{ServiceAccount, AUDIENCE};

/// The longest token reviewed. A projected service-account token is about
/// 1 KiB; the API server reads bearer tokens of a few KiB at most.
pub const MAX_TOKEN_BYTES: usize = 8 * 1024;
/// What the API server adds to the review of a token bound to a pod (a
/// projected token, or the one the kubelet mounts).
pub const POD_UID: &str = "authentication.kubernetes.io/pod-uid";
const SERVICE_ACCOUNT_PREFIX: &str = "system:serviceaccount:";

/// Why a token gets no certificate. Cloned into the cache of refusals.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("the token is not a service-account token: {0}")]
    Malformed(&'static str),
    #[error("the service-account token is not authenticated: {0}")]
    NotAuthenticated(String),
    #[error("the service-account token is not for the audience `remora` (it is for: {0}); project it with `audience: remora`")]
    WrongAudience(String),
    #[error(
        "the token belongs to `{0}`, not a service account (system:serviceaccount:NAMESPACE:NAME)"
    )]
    NotServiceAccount(String),
    #[error("the token of `{0}` is not bound to a pod (its review has no authentication.kubernetes.io/pod-uid); use the pod's projected service-account token")]
    NotPodBound(String),
}

/// Refuses, before any review, what cannot be a service-account token: one
/// over [`MAX_TOKEN_BYTES`], or anything but a JWT (three non-empty
/// base64url parts separated by dots). Asking the API server about it would
/// only cost it work.
pub fn check_shape(token: &str) -> Result<(), Refusal> {
    if token.len() > MAX_TOKEN_BYTES {
        return Err(Refusal::Malformed("it is over 8 KiB"));
    }
    let base64url = |part: &str| {
        !part.is_empty()
            && part
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    };
    let parts: Vec<&str> = token.split('.').collect();
    if parts.len() != 3 || !parts.iter().all(|p| base64url(p)) {
        return Err(Refusal::Malformed(
            "a service-account token is a JWT: three base64url parts separated by dots",
        ));
    }
    Ok(())
}

/// What a review's status grants.
pub fn account_of(status: Option<&TokenReviewStatus>) -> Result<ServiceAccount, Refusal> {
    let Some(status) = status else {
        return Err(Refusal::NotAuthenticated(
            "the API server's review has no status".into(),
        ));
    };
    if status.authenticated != Some(true) {
        let why = status
            .error
            .clone()
            .filter(|e| !e.is_empty())
            .unwrap_or_else(|| "unknown or expired token".into());
        return Err(Refusal::NotAuthenticated(why));
    }
    // An API server that ignores `spec.audiences` answers without them: that
    // is no proof the token was made for this control plane.
    let audiences = status.audiences.clone().unwrap_or_default();
    if !audiences.iter().any(|a| a == AUDIENCE) {
        let listed = match audiences.is_empty() {
            true => "no audience listed".to_owned(),
            false => audiences.join(", "),
        };
        return Err(Refusal::WrongAudience(listed));
    }
    let user = status.user.as_ref();
    let username = user.and_then(|u| u.username.clone()).unwrap_or_default();
    let Some(account) = service_account(&username) else {
        return Err(Refusal::NotServiceAccount(username));
    };
    // Another authenticator (a webhook, OIDC with a prefix) may map its users
    // to names under `system:serviceaccount:`; only the service-account
    // authenticator says which pod a token is bound to.
    let bound = user
        .and_then(|u| u.extra.as_ref())
        .and_then(|extra| extra.get(POD_UID))
        .is_some_and(|uids| uids.iter().any(|uid| !uid.is_empty()));
    if !bound {
        return Err(Refusal::NotPodBound(username));
    }
    Ok(account)
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
