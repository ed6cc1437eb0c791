//! The `remora.identity.v1.Identity` gRPC service: a token's grant must be exactly
//! the identity the CSR asks for.
//!
//! Two kinds of token grant an identity: bootstrap tokens (`rmt_...`, minted
//! by `remora token create`, checked against the data directory: VMs and
//! laptops) and, when the control plane runs with `--kubernetes`, a pod's
//! projected service-account token, checked by the API server (TokenReview,
//! see [`crate::kubernetes::tokenreview`]).
//!
//! Whatever a token says, the control plane's own identity
//! (`spiffe://<trust-domain>/ns/<its namespace>/sa/remora-control`, which
//! proxies check the control plane by) is never issued: a token for that
//! service account must not let a workload pose as the control plane.

use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use remora_proto::identity::identity_server::{Identity, IdentityServer};
use remora_proto::identity::{CertifyRequest, CertifyResponse};
use tonic::{Request, Response, Status};

use super::issued::{Issued, IssuedCertificates};
use super::tokens::{Grant, TokenError, TokenStore, PREFIX};
use crate::ca::{CaError, CertificateAuthority, SpiffeId};
use crate::kubernetes::tokenreview::{Refusal, ReviewError, TokenReviewer};
use crate::xds::XdsPeer;

pub struct IdentityService {
    ca: Arc<CertificateAuthority>,
    tokens: TokenStore,
    leaf_ttl: Duration,
    /// The control plane's own identity: never issued.
    control_plane: SpiffeId,
    /// What was issued to whom, for `remora status`.
    issued: Arc<IssuedCertificates>,
    /// With `--kubernetes`: service-account tokens, reviewed by the API server.
    reviewer: Option<Arc<TokenReviewer>>,
}

impl IdentityService {
    /// Issues certificates from `ca`, valid for `leaf_ttl`, to whoever
    /// `tokens` grant, except `control_plane`'s own identity.
    pub fn new(
        ca: Arc<CertificateAuthority>,
        tokens: TokenStore,
        leaf_ttl: Duration,
        control_plane: SpiffeId,
    ) -> Self {
        Self {
            ca,
            tokens,
            leaf_ttl,
            control_plane,
            issued: Arc::default(),
            reviewer: None,
        }
    }

    /// Also accepts service-account tokens, as `reviewer` judges them.
    pub fn with_token_review(mut self, reviewer: Arc<TokenReviewer>) -> Self {
        self.reviewer = Some(reviewer);
        self
    }

    /// Records every certificate issued in `issued`.
    pub fn recording(mut self, issued: Arc<IssuedCertificates>) -> Self {
        self.issued = issued;
        self
    }

    pub fn into_service(self) -> IdentityServer<Self> {
        IdentityServer::new(self)
    }

    async fn issue(&self, req: &CertifyRequest, peer: &XdsPeer) -> Result<CertifyResponse, Status> {
        let identity: SpiffeId = req
            .identity
            .parse()
            .map_err(|e: crate::ca::InvalidSpiffeId| Status::invalid_argument(e.to_string()))?;
        // Before any token is looked at: no token grants it.
        if identity == self.control_plane {
            tracing::warn!(%identity, remote = ?peer.remote, "certificate refused: the control plane's own identity");
            return Err(Status::permission_denied(format!(
                "{identity} is the control plane's own identity: it is never issued"
            )));
        }
        let grant = self.grant(&req.token, &identity).await?;
        let granted = SpiffeId {
            trust_domain: self.ca.trust_domain().to_owned(),
            namespace: grant.namespace,
            service_account: grant.service_account,
        };
        if granted != identity {
            tracing::warn!(%identity, %granted, "certificate refused: the token grants another identity");
            return Err(Status::permission_denied(format!(
                "the token grants {granted}, not {identity}"
            )));
        }
        let signed = self
            .ca
            .sign(&req.csr_pem, &identity, self.leaf_ttl)
            .map_err(|e| match e {
                CaError::Csr(_) | CaError::Identity(_) => Status::invalid_argument(e.to_string()),
                other => {
                    tracing::error!(error = %other, "signing failed");
                    Status::internal("signing failed")
                }
            })?;
        tracing::info!(%identity, transport = %peer.transport(), "certificate issued");
        self.issued.record(
            &identity.to_string(),
            Issued {
                not_before: signed
                    .not_after
                    .checked_sub(self.leaf_ttl)
                    .unwrap_or(UNIX_EPOCH),
                not_after: signed.not_after,
            },
        );
        Ok(CertifyResponse {
            leaf_pem: signed.leaf_pem,
            chain_pem: signed.chain_pem,
            trust_bundle_pem: self.ca.trust_bundle_pem().to_owned(),
            not_after_unix: signed
                .not_after
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_secs() as i64)
                .unwrap_or(0),
        })
    }
}

impl IdentityService {
    /// What `token` grants: a bootstrap token from the store; any other token,
    /// when running in Kubernetes, from the API server's review.
    async fn grant(&self, token: &str, asked: &SpiffeId) -> Result<Grant, Status> {
        let reviewer = match &self.reviewer {
            Some(reviewer) if !token.starts_with(PREFIX) => reviewer,
            _ => return self.tokens.verify(token).map_err(bootstrap_refusal),
        };
        match reviewer.review(token).await {
            Ok(account) => Ok(Grant {
                namespace: account.namespace,
                service_account: account.name,
            }),
            // Nothing to look up: not worth a warning per call.
            Err(ReviewError::Refused(refusal @ Refusal::Malformed(_))) => {
                tracing::debug!(error = %refusal, identity = %asked, "certificate refused: not a token");
                Err(Status::unauthenticated(refusal.to_string()))
            }
            Err(ReviewError::Refused(refusal)) => {
                tracing::warn!(error = %refusal, identity = %asked, "certificate refused: the service-account token");
                Err(Status::unauthenticated(refusal.to_string()))
            }
            // Not reviewed now (API unreachable, slow or busy): the proxy
            // retries UNAVAILABLE with backoff.
            Err(error) => {
                tracing::warn!(%error, identity = %asked, "cannot review a service-account token");
                Err(Status::unavailable(error.to_string()))
            }
        }
    }
}

fn bootstrap_refusal(e: TokenError) -> Status {
    match e {
        TokenError::Unknown | TokenError::Expired => Status::unauthenticated(e.to_string()),
        TokenError::AdminForWorkload | TokenError::NotAdmin => {
            Status::permission_denied(e.to_string())
        }
        TokenError::Store { .. } => {
            tracing::error!(error = %e, "cannot read the token store");
            Status::internal("token store unavailable")
        }
    }
}

#[tonic::async_trait]
impl Identity for IdentityService {
    async fn certify(
        &self,
        request: Request<CertifyRequest>,
    ) -> Result<Response<CertifyResponse>, Status> {
        let peer = request
            .extensions()
            .get::<XdsPeer>()
            .cloned()
            .unwrap_or_default();
        self.issue(request.get_ref(), &peer)
            .await
            .map(Response::new)
    }
}

#[cfg(test)]
mod tests;
