//! The certificate kept in the state directory (bootstrap `state_dir`): saved
//! after each issuance, put back at start when it is still good, so mTLS works
//! before the control plane answers. Renewal then goes on as usual.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, UnixTime};
use rustls::RootCertStore;
use x509_parser::prelude::FromDer;

use super::{CertStore, Certified, IdentityConfig};
use crate::state::{SavedCertificate, StateDir};

/// Why a saved certificate is not used.
#[derive(Debug, thiserror::Error)]
enum Unusable {
    #[error("{0}")]
    File(#[from] crate::state::CertificateFileError),
    #[error("it was issued for {saved}, this proxy is {expected}")]
    Identity { saved: String, expected: String },
    #[error("its certificate names {named}, this proxy is {expected}")]
    Named { named: String, expected: String },
    #[error("its PEM does not parse: {0}")]
    Pem(String),
    #[error("it does not verify against the {roots}: {error}")]
    Chain {
        roots: &'static str,
        error: webpki::Error,
    },
    #[error("its key does not go with it: {0}")]
    Key(rustls::Error),
}

/// Puts the certificate saved in `dir` into `store` if it is still good for
/// this proxy: issued for its identity, valid now, chaining to the bootstrap's
/// trust bundle (or, without one, to the bundle saved with it), with the key
/// that goes with it. Anything else is ignored with a warning: the proxy then
/// asks for a certificate as it would without state. Returns whether it did.
pub fn restore(config: &IdentityConfig, store: &CertStore) -> bool {
    let Some(dir) = &config.state else {
        return false;
    };
    match check(dir, config) {
        Ok(None) => false,
        Ok(Some(certified)) => {
            let expires_in = certified
                .not_after
                .duration_since(SystemTime::now())
                .unwrap_or_default();
            tracing::info!(identity = %certified.identity, ?expires_in, "certificate restored from the state dir");
            store.store(Some(std::sync::Arc::new(certified)));
            true
        }
        Err(error) => {
            tracing::warn!(identity = %config.identity, dir = %dir.path().display(), %error, "ignoring the certificate in the state dir: asking the control plane for one");
            false
        }
    }
}

fn check(dir: &StateDir, config: &IdentityConfig) -> Result<Option<Certified>, Unusable> {
    let Some(saved) = dir.load_certificate()? else {
        return Ok(None);
    };
    if saved.identity != config.identity {
        return Err(Unusable::Identity {
            saved: saved.identity,
            expected: config.identity.clone(),
        });
    }
    let pem = |e: rustls::pki_types::pem::Error| Unusable::Pem(e.to_string());
    let mut chain: Vec<CertificateDer<'static>> =
        CertificateDer::pem_slice_iter(saved.leaf_pem.as_bytes())
            .collect::<Result<_, _>>()
            .map_err(pem)?;
    let Some(leaf) = chain.first().cloned() else {
        return Err(Unusable::Pem("no certificate in leaf_pem".into()));
    };
    let named = crate::tls::spiffe_id(&leaf).unwrap_or_else(|| "no SPIFFE id".to_owned());
    if named != config.identity {
        return Err(Unusable::Named {
            named,
            expected: config.identity.clone(),
        });
    }
    let intermediates: Vec<CertificateDer<'static>> =
        CertificateDer::pem_slice_iter(saved.chain_pem.as_bytes())
            .collect::<Result<_, _>>()
            .map_err(pem)?;
    let (roots_pem, roots) = match &config.trust_bundle {
        Some(bundle) => (bundle.pem.as_str(), "bootstrap's trust bundle"),
        None => (
            saved.trust_bundle_pem.as_str(),
            "trust bundle saved with it",
        ),
    };
    let mut anchors = RootCertStore::empty();
    for c in CertificateDer::pem_slice_iter(roots_pem.as_bytes()) {
        anchors
            .add(c.map_err(pem)?)
            .map_err(|e| Unusable::Pem(e.to_string()))?;
    }
    let provider = rustls::crypto::ring::default_provider();
    // Validity (not before, not after) is checked here too: an expired
    // certificate fails as `CertExpired`.
    let chain_error = |error| Unusable::Chain { roots, error };
    let cert = webpki::EndEntityCert::try_from(&leaf).map_err(chain_error)?;
    cert.verify_for_usage(
        provider.signature_verification_algorithms.all,
        &anchors.roots,
        &intermediates,
        UnixTime::now(),
        webpki::KeyUsage::server_auth(),
        None,
        None,
    )
    .map_err(chain_error)?;
    let key = PrivateKeyDer::from_pem_slice(saved.key_pem.as_bytes()).map_err(pem)?;
    chain.extend(intermediates);
    rustls::sign::CertifiedKey::from_der(chain, key, &provider).map_err(Unusable::Key)?;
    let (_, not_after) = validity(&saved.leaf_pem)
        .ok_or_else(|| Unusable::Pem("cannot read the certificate's validity".into()))?;
    Ok(Some(Certified {
        identity: saved.identity,
        key_pem: saved.key_pem,
        leaf_pem: saved.leaf_pem,
        chain_pem: saved.chain_pem,
        trust_bundle_pem: saved.trust_bundle_pem,
        not_after,
        generation: 1,
    }))
}

/// Saves a newly issued certificate, off the runtime's threads. A failure is
/// logged: the proxy works on, and a restart asks the control plane again.
pub fn save(dir: &std::sync::Arc<StateDir>, certified: &Certified) {
    let saved = SavedCertificate::new(
        &certified.identity,
        &certified.key_pem,
        &certified.leaf_pem,
        &certified.chain_pem,
        &certified.trust_bundle_pem,
    );
    let dir = dir.clone();
    tokio::task::spawn_blocking(move || match dir.save_certificate(&saved) {
        Ok(()) => {
            tracing::debug!(dir = %dir.path().display(), "certificate saved to the state dir")
        }
        Err(error) => {
            tracing::warn!(%error, "cannot save the certificate to the state dir: a restart without the control plane will have none")
        }
    });
}

/// How long the certificate in the store at start (a restored one) serves
/// before it is renewed: the usual share of its lifetime, counted from when it
/// was issued.
pub fn renewal_wait(certified: &Certified, draw: f64) -> Duration {
    let issued = validity(&certified.leaf_pem)
        .map(|(not_before, _)| not_before)
        .unwrap_or(UNIX_EPOCH);
    super::renew_after(issued, certified.not_after, SystemTime::now(), draw)
}

/// The leaf's not-before and not-after.
fn validity(leaf_pem: &str) -> Option<(SystemTime, SystemTime)> {
    let der = CertificateDer::pem_slice_iter(leaf_pem.as_bytes())
        .next()?
        .ok()?;
    let (_, cert) = x509_parser::certificate::X509Certificate::from_der(&der).ok()?;
    let at = |t: i64| UNIX_EPOCH + Duration::from_secs(t.max(0) as u64);
    let v = cert.validity();
    Some((at(v.not_before.timestamp()), at(v.not_after.timestamp())))
}

#[cfg(test)]
#[path = "restore_tests.rs"]
mod tests;
