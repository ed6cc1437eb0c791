//! The mesh's certificate authority: a root (or an operator's intermediate) that
//! signs short-lived SPIFFE certificates for proxies from their CSRs.
//!
//! - [`spiffe`]: workload identities.
//! - [`host`]: DNS names and IP addresses a server certificate is valid for.
//! - [`files`]: the CA's key and certificate on disk (created once, mode 0600).
//! - [`CertificateAuthority::sign`]: CSR + the identity a token grants -> leaf.
//! - [`CertificateAuthority::issue`]: a leaf with a key made here (the control
//!   plane's own certificate; `remora certificate create`).
//! - [`workload`]: such a leaf written as the files a gRPC client reads.
//! - [`serving`]: the control plane's own serving certificates (xDS port,
//!   admission webhook), renewed in memory.
//!
//! Not here: who may ask for which identity (tokens), or the gRPC service.

mod files;
mod host;
pub mod serving;
mod spiffe;
pub mod workload;

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use rcgen::{
    BasicConstraints, CertificateParams, CertificateSigningRequestParams, DistinguishedName,
    DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose, PublicKeyData,
    SanType,
};

pub use files::{CaFiles, CA_CERT_FILE, CA_KEY_FILE};
pub use host::{HostName, InvalidHostName};
pub use serving::{
    control_plane_identity, ServingCert, ServingError, CONTROL_PLANE_ACCOUNT,
    CONTROL_PLANE_NAMESPACE,
};
pub use spiffe::{InvalidSpiffeId, SpiffeId};

/// Default leaf lifetime.
pub const DEFAULT_LEAF_TTL: Duration = Duration::from_secs(24 * 3600);
/// Lifetime of a root the control plane makes itself.
const ROOT_TTL: Duration = Duration::from_secs(10 * 365 * 24 * 3600);
/// Leaves start a little in the past: clocks across machines disagree.
const BACKDATE: Duration = Duration::from_secs(60);

#[derive(Debug, thiserror::Error)]
pub enum CaError {
    /// The cause is the `source`, not repeated here: a chain prints it once.
    #[error("CA file {path}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    /// Asked for the CA of a data directory that has none (a mistyped
    /// `--data-dir`): nothing is made there.
    #[error(
        "no CA in {dir}: ca.crt is missing (give the --data-dir the control plane runs with; `remora control` makes the CA on first start)"
    )]
    Missing { dir: PathBuf },
    #[error("CA file {path}: {message}")]
    Invalid { path: PathBuf, message: String },
    #[error("certificate signing request: {0}")]
    Csr(String),
    #[error("cannot sign: {0}")]
    Sign(rcgen::Error),
    #[error(transparent)]
    Identity(#[from] InvalidSpiffeId),
}

pub struct CertificateAuthority {
    issuer: Issuer<'static, KeyPair>,
    /// The CA certificate (PEM); for an intermediate, followed by its chain.
    chain_pem: String,
    /// What proxies must trust (the root(s), PEM).
    trust_bundle_pem: String,
    trust_domain: String,
}

impl std::fmt::Debug for CertificateAuthority {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the key.
        f.debug_struct("CertificateAuthority")
            .field("trust_domain", &self.trust_domain)
            .finish_non_exhaustive()
    }
}

/// A signed leaf certificate.
#[derive(Debug, Clone)]
pub struct Signed {
    pub leaf_pem: String,
    /// Intermediates up to (not including) the root, PEM; empty for a root CA.
    pub chain_pem: String,
    pub not_after: SystemTime,
}

/// A signed leaf and the key it was made for, made here.
#[derive(Clone)]
pub struct Issued {
    pub signed: Signed,
    /// The private key, PKCS#8 PEM.
    pub key_pem: String,
}

impl std::fmt::Debug for Issued {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the key.
        f.debug_struct("Issued")
            .field("signed", &self.signed)
            .finish_non_exhaustive()
    }
}

impl CertificateAuthority {
    /// Uses `files` if given, else the CA in `data_dir`, creating it on first use.
    pub fn load_or_create(
        data_dir: &Path,
        files: Option<&CaFiles>,
        trust_domain: &str,
    ) -> Result<Self, CaError> {
        let loaded = match files {
            Some(f) => f.load()?,
            None => files::load_or_create_root(data_dir, || root(trust_domain))?,
        };
        Self::from_loaded(loaded, trust_domain)
    }

    /// Uses `files` if given, else the CA in `data_dir`, which must exist: a
    /// wrong `--data-dir` is an error naming it, never a new CA whose
    /// certificates nobody trusts.
    pub fn load_existing(
        data_dir: &Path,
        files: Option<&CaFiles>,
        trust_domain: &str,
    ) -> Result<Self, CaError> {
        let loaded = match files {
            Some(f) => f.load()?,
            None => files::load_existing_root(data_dir)?,
        };
        Self::from_loaded(loaded, trust_domain)
    }

    fn from_loaded(loaded: files::Loaded, trust_domain: &str) -> Result<Self, CaError> {
        let issuer = Issuer::from_ca_cert_pem(&loaded.cert_pem, loaded.key).map_err(|e| {
            CaError::Invalid {
                path: loaded.cert_path.clone(),
                message: format!("not a usable CA certificate: {e}"),
            }
        })?;
        Ok(CertificateAuthority {
            issuer,
            chain_pem: loaded.cert_pem.clone(),
            trust_bundle_pem: loaded.bundle_pem,
            trust_domain: trust_domain.to_owned(),
        })
    }

    /// The trust bundle of the CA the control plane made in `data_dir`,
    /// without making one: a data directory without a CA is an error, so a
    /// wrong `--data-dir` never hands out the roots of a CA nobody runs.
    pub fn existing_trust_bundle(data_dir: &Path) -> Result<String, CaError> {
        files::existing_root_pem(data_dir)
    }

    pub fn trust_domain(&self) -> &str {
        &self.trust_domain
    }

    /// The PEM roots proxies verify peers against.
    pub fn trust_bundle_pem(&self) -> &str {
        &self.trust_bundle_pem
    }

    /// Signs a leaf for `identity` with the CSR's public key. The CSR's signature
    /// is checked (the requester holds the key); everything else in it is ignored:
    /// the CA alone decides the name, lifetime and usages.
    pub fn sign(
        &self,
        csr_pem: &str,
        identity: &SpiffeId,
        ttl: Duration,
    ) -> Result<Signed, CaError> {
        self.check_domain(identity)?;
        let csr = CertificateSigningRequestParams::from_pem(csr_pem)
            .map_err(|e| CaError::Csr(format!("not a valid PEM CSR: {e}")))?;
        let requested: Vec<String> = csr
            .params
            .subject_alt_names
            .iter()
            .filter_map(|san| match san {
                SanType::URI(uri) => Some(uri.as_str().to_owned()),
                _ => None,
            })
            .collect();
        if requested != [identity.to_string()] {
            return Err(CaError::Csr(format!(
                "the CSR must name exactly the URI {identity}, it names {requested:?}"
            )));
        }
        self.leaf(&csr.public_key, identity, &[], ttl)
    }

    /// Makes a key here and signs a leaf for it: `identity` as its one URI SAN
    /// (what mesh peers check), and `hosts` as DNS and IP SANs, for clients
    /// that check a server by the name they dialled (gRPC's TLS).
    pub fn issue(
        &self,
        identity: &SpiffeId,
        hosts: &[HostName],
        ttl: Duration,
    ) -> Result<Issued, CaError> {
        self.check_domain(identity)?;
        let key = KeyPair::generate().map_err(CaError::Sign)?;
        let signed = self.leaf(&key, identity, hosts, ttl)?;
        Ok(Issued {
            signed,
            key_pem: key.serialize_pem(),
        })
    }

    fn check_domain(&self, identity: &SpiffeId) -> Result<(), CaError> {
        if identity.trust_domain != self.trust_domain {
            return Err(CaError::Csr(format!(
                "identity {identity} is outside trust domain {}",
                self.trust_domain
            )));
        }
        Ok(())
    }

    /// The CA alone decides the names, lifetime and usages of a leaf.
    fn leaf(
        &self,
        public_key: &impl PublicKeyData,
        identity: &SpiffeId,
        hosts: &[HostName],
        ttl: Duration,
    ) -> Result<Signed, CaError> {
        let now = SystemTime::now();
        let not_after = now + ttl;
        let mut params = CertificateParams::default();
        params.not_before = (now - BACKDATE).into();
        params.not_after = not_after.into();
        params.subject_alt_names =
            vec![SanType::URI(identity.to_string().try_into().map_err(
                |e| CaError::Csr(format!("identity is not ASCII: {e}")),
            )?)];
        for host in hosts {
            params
                .subject_alt_names
                .push(host.san().map_err(CaError::Sign)?);
        }
        params.distinguished_name = DistinguishedName::new();
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        params.is_ca = IsCa::ExplicitNoCa;
        params.use_authority_key_identifier_extension = true;
        let leaf = params
            .signed_by(public_key, &self.issuer)
            .map_err(CaError::Sign)?;
        Ok(Signed {
            leaf_pem: leaf.pem(),
            chain_pem: self.intermediates_pem(),
            not_after,
        })
    }

    /// The CA certificate when it is an intermediate (the root is in the bundle).
    fn intermediates_pem(&self) -> String {
        if self.chain_pem == self.trust_bundle_pem {
            String::new()
        } else {
            self.chain_pem.clone()
        }
    }
}

/// A new self-signed root for `trust_domain`, with its key.
fn root(trust_domain: &str) -> Result<(String, KeyPair), rcgen::Error> {
    let key = KeyPair::generate()?;
    let mut params = CertificateParams::default();
    let now = SystemTime::now();
    params.not_before = (now - BACKDATE).into();
    params.not_after = (now + ROOT_TTL).into();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, "Remora");
    dn.push(
        DnType::CommonName,
        format!("Remora root CA for {trust_domain}"),
    );
    params.distinguished_name = dn;
    let cert = params.self_signed(&key)?;
    Ok((cert.pem(), key))
}

#[cfg(test)]
mod tests;
