//! A fresh key pair and a CSR naming exactly our SPIFFE identity.

use rcgen::{CertificateParams, KeyPair, SanType};

#[derive(Debug, thiserror::Error)]
pub enum CsrError {
    #[error("identity `{identity}` cannot go in a certificate: {source}")]
    Identity {
        identity: String,
        source: rcgen::Error,
    },
    #[error("cannot make a key or CSR: {0}")]
    Crypto(#[from] rcgen::Error),
}

pub struct Request {
    pub key_pem: String,
    pub csr_pem: String,
}

/// A new ECDSA P-256 key and a CSR for `identity` signed with it.
pub fn new_request(identity: &str) -> Result<Request, CsrError> {
    let key = KeyPair::generate()?;
    let uri = identity.try_into().map_err(|source| CsrError::Identity {
        identity: identity.to_owned(),
        source,
    })?;
    let mut params = CertificateParams::default();
    params.subject_alt_names = vec![SanType::URI(uri)];
    let csr = params.serialize_request(&key)?;
    Ok(Request {
        key_pem: key.serialize_pem(),
        csr_pem: csr.pem()?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_request_has_its_own_key_and_names_the_identity() {
        let a = new_request("spiffe://cluster.local/ns/shop/sa/orders").unwrap();
        let b = new_request("spiffe://cluster.local/ns/shop/sa/orders").unwrap();
        assert_ne!(a.key_pem, b.key_pem);
        assert!(a.csr_pem.starts_with("-----BEGIN CERTIFICATE REQUEST-----"));
        assert!(a.key_pem.contains("PRIVATE KEY"));
    }
}
