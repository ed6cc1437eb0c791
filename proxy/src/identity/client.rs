//! The renewal loop: obtain a certificate, keep it in the store, renew it at about
//! 70% of its lifetime, retry failures with jittered backoff. The old certificate
//! stays in use until the new one is in hand.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use remora_proto::identity::identity_client::IdentityClient;
use remora_proto::identity::CertifyRequest;

use super::{new_request, renew_after, CertStore, Certified, CsrError};
use crate::backoff::Backoff;
use crate::tls::{server_auth_config, TlsContext};

/// Where the bootstrap token comes from. A file is read again for every request,
/// so a token that is rotated on disk (a projected Kubernetes token) keeps working.
#[derive(Clone)]
pub enum TokenSource {
    Inline(String),
    File(PathBuf),
}

impl std::fmt::Debug for TokenSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            // A token is a credential: never in logs.
            TokenSource::Inline(_) => f.write_str("Inline(<redacted>)"),
            TokenSource::File(path) => f.debug_tuple("File").field(path).finish(),
        }
    }
}

#[derive(Clone)]
pub struct IdentityConfig {
    pub control_plane: SocketAddr,
    /// `spiffe://<trust-domain>/ns/<namespace>/sa/<service-account>`
    pub identity: String,
    pub token: TokenSource,
    /// The SPIFFE id the control plane must present.
    pub control_plane_identity: String,
    /// Renewals go over mTLS with the current certificate.
    pub tls: Arc<TlsContext>,
    /// The bootstrap's trust bundle: the first request goes over TLS too.
    pub trust_bundle: Option<crate::tls::TrustBundle>,
    /// Bootstrap `state_dir`: each certificate is saved there, and the saved
    /// one is used at start while it is good (see [`super::restore`]).
    pub state: Option<Arc<crate::state::StateDir>>,
}

#[derive(Debug, thiserror::Error)]
enum ObtainError {
    #[error("cannot read the token file {path}: {source}")]
    Token {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Csr(#[from] CsrError),
    #[error("the bootstrap trust bundle: {0}")]
    TrustBundle(#[from] crate::tls::TlsError),
    #[error("cannot reach the identity service: {}", crate::tls::causes(.0))]
    Connect(#[from] tonic::transport::Error),
    /// The handshake failed on the control plane's certificate: most often a
    /// trust bundle from another control plane (another `--data-dir`).
    #[error("the control plane's certificate did not verify against {trusted}: {reason}{hint}")]
    Untrusted {
        trusted: String,
        reason: rustls::Error,
        hint: &'static str,
    },
    #[error("the identity service refused: {}: {}", .0.code(), .0.message())]
    Refused(#[from] tonic::Status),
}

/// Runs until the task is dropped.
pub async fn run(config: IdentityConfig, store: CertStore) {
    let mut backoff = Backoff::new(Duration::from_millis(200), Duration::from_secs(10));
    let mut generation = 0;
    // A certificate restored from the state dir serves until its renewal time,
    // as one obtained here would.
    if let Some(restored) = store.load_full() {
        generation = restored.generation;
        let wait = super::restore::renewal_wait(&restored, rand::random());
        tracing::info!(identity = %config.identity, renew_in = ?wait, "renewing the restored certificate at the usual time");
        tokio::time::sleep(wait).await;
    }
    loop {
        match obtain(&config, generation + 1).await {
            Ok(certified) => {
                backoff.reset();
                generation = certified.generation;
                let issued = SystemTime::now();
                let not_after = certified.not_after;
                tracing::info!(identity = %config.identity, generation, expires_in = ?not_after.duration_since(issued).unwrap_or_default(), "certificate obtained");
                if let Some(dir) = &config.state {
                    super::restore::save(dir, &certified);
                }
                store.store(Some(Arc::new(certified)));
                let wait = renew_after(issued, not_after, SystemTime::now(), rand::random());
                tokio::time::sleep(wait).await;
            }
            Err(error) => {
                let delay = backoff.next_delay();
                tracing::warn!(identity = %config.identity, %error, ?delay, "cannot obtain a certificate; retrying");
                tokio::time::sleep(delay).await;
            }
        }
    }
}

async fn obtain(config: &IdentityConfig, generation: u64) -> Result<Certified, ObtainError> {
    let token = match &config.token {
        TokenSource::Inline(t) => t.clone(),
        TokenSource::File(path) => std::fs::read_to_string(path)
            .map_err(|source| ObtainError::Token {
                path: path.clone(),
                source,
            })?
            .trim()
            .to_owned(),
    };
    let request = new_request(&config.identity)?;
    // With a certificate, mTLS; before the first, TLS if the bootstrap gave the
    // trust bundle to verify the control plane with.
    // And what the control plane's certificate is checked against, for an
    // error that says so.
    let (tls, trusted, hint) = match config.tls.client_config(&config.control_plane_identity) {
        Some(mtls) => (
            Some(mtls),
            "the trust bundle that came with this proxy's certificate".to_owned(),
            "",
        ),
        None => match &config.trust_bundle {
            Some(bundle) => (
                Some(server_auth_config(
                    &bundle.pem,
                    &config.control_plane_identity,
                )?),
                format!("trust_bundle_file {}", bundle.file.display()),
                " (give the proxy what `remora trust-bundle --data-dir DIR` prints for this control plane's data directory)",
            ),
            None => {
                tracing::warn!("requesting the first certificate in plaintext: the bootstrap has no trust_bundle_file, so the token crosses the network unencrypted");
                (None, String::new(), "")
            }
        },
    };
    let endpoint =
        tonic::transport::Endpoint::from_shared(format!("http://{}", config.control_plane))?
            .connect_timeout(Duration::from_secs(2))
            .timeout(Duration::from_secs(10));
    let channel = crate::tls::connect(endpoint, config.control_plane, tls)
        .await
        .map_err(|e| {
            let untrusted = crate::tls::handshake_failure(&e).cloned();
            match untrusted {
                Some(reason) => ObtainError::Untrusted {
                    trusted,
                    reason,
                    hint,
                },
                None => ObtainError::Connect(e),
            }
        })?;
    let response = IdentityClient::new(channel)
        .certify(CertifyRequest {
            identity: config.identity.clone(),
            csr_pem: request.csr_pem,
            token,
        })
        .await?
        .into_inner();
    Ok(Certified {
        identity: config.identity.clone(),
        key_pem: request.key_pem,
        leaf_pem: response.leaf_pem,
        chain_pem: response.chain_pem,
        trust_bundle_pem: response.trust_bundle_pem,
        not_after: UNIX_EPOCH + Duration::from_secs(response.not_after_unix.max(0) as u64),
        generation,
    })
}
