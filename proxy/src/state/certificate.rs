//! The workload certificate and its private key in the state directory (mode
//! 0600), so a restarted proxy speaks mTLS before the control plane answers.
//! Whether a saved certificate is still good is the identity module's call.

use serde::{Deserialize, Serialize};

use super::StateDir;

/// The file's name in the state directory.
pub const CERTIFICATE_FILE: &str = "certificate.json";
/// The key is a credential: this user alone reads it.
const FILE_MODE: u32 = 0o600;
/// A proxy reads only its own format.
const FORMAT: u32 = 1;

/// A certificate as kept: PEM, as the identity service issued it.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SavedCertificate {
    pub format: u32,
    pub identity: String,
    /// PKCS#8 PEM.
    pub key_pem: String,
    pub leaf_pem: String,
    pub chain_pem: String,
    pub trust_bundle_pem: String,
}

impl SavedCertificate {
    pub fn new(
        identity: &str,
        key_pem: &str,
        leaf_pem: &str,
        chain_pem: &str,
        trust_bundle_pem: &str,
    ) -> Self {
        SavedCertificate {
            format: FORMAT,
            identity: identity.to_owned(),
            key_pem: key_pem.to_owned(),
            leaf_pem: leaf_pem.to_owned(),
            chain_pem: chain_pem.to_owned(),
            trust_bundle_pem: trust_bundle_pem.to_owned(),
        }
    }
}

impl std::fmt::Debug for SavedCertificate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the key, not even in a debug log.
        f.debug_struct("SavedCertificate")
            .field("identity", &self.identity)
            .finish_non_exhaustive()
    }
}

/// Why the saved certificate cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum CertificateFileError {
    #[error("{path}: cannot read: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Parse { path: String, message: String },
    #[error("{path}: written in format {found}; this proxy reads format {FORMAT}")]
    Format { path: String, found: u32 },
    #[error("{path}: cannot write: {source}")]
    Write {
        path: String,
        source: std::io::Error,
    },
}

impl StateDir {
    /// Replaces the saved certificate, atomically, with mode 0600.
    pub fn save_certificate(&self, saved: &SavedCertificate) -> Result<(), CertificateFileError> {
        let path = self.file(CERTIFICATE_FILE).display().to_string();
        let json = serde_json::to_vec(saved).map_err(|e| CertificateFileError::Parse {
            path: path.clone(),
            message: e.to_string(),
        })?;
        self.write_atomic(CERTIFICATE_FILE, &json, FILE_MODE)
            .map_err(|source| CertificateFileError::Write { path, source })
    }

    /// The saved certificate, or `None` when there is none.
    pub fn load_certificate(&self) -> Result<Option<SavedCertificate>, CertificateFileError> {
        let path = self.file(CERTIFICATE_FILE).display().to_string();
        let Some(bytes) =
            self.read(CERTIFICATE_FILE)
                .map_err(|source| CertificateFileError::Read {
                    path: path.clone(),
                    source,
                })?
        else {
            return Ok(None);
        };
        // The format first, so a newer file is named as such, not as garbage.
        #[derive(Deserialize)]
        struct Format {
            format: u32,
        }
        let parse = |e: serde_json::Error| CertificateFileError::Parse {
            path: path.clone(),
            message: e.to_string(),
        };
        let format: Format = serde_json::from_slice(&bytes).map_err(parse)?;
        if format.format != FORMAT {
            return Err(CertificateFileError::Format {
                path: path.clone(),
                found: format.format,
            });
        }
        serde_json::from_slice(&bytes).map(Some).map_err(parse)
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    #[test]
    fn a_certificate_reads_back_with_its_key_private() {
        let root = tempfile::tempdir().unwrap();
        let dir = StateDir::open(&root.path().join("state")).unwrap();
        assert!(dir.load_certificate().unwrap().is_none());
        let saved = SavedCertificate::new("spiffe://td/ns/a/sa/b", "KEY", "LEAF", "", "ROOTS");
        dir.save_certificate(&saved).unwrap();
        assert_eq!(dir.load_certificate().unwrap(), Some(saved.clone()));
        let mode = std::fs::metadata(dir.file(CERTIFICATE_FILE))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        assert!(!format!("{saved:?}").contains("KEY"));
    }

    #[test]
    fn a_damaged_or_foreign_file_is_an_error_naming_it() {
        let root = tempfile::tempdir().unwrap();
        let dir = StateDir::open(&root.path().join("state")).unwrap();
        std::fs::write(dir.file(CERTIFICATE_FILE), "{\"format\": 1, \"ident").unwrap();
        let err = dir.load_certificate().unwrap_err().to_string();
        assert!(err.contains("certificate.json"), "{err}");
        std::fs::write(dir.file(CERTIFICATE_FILE), "{\"format\": 2}").unwrap();
        let err = dir.load_certificate().unwrap_err().to_string();
        assert!(err.contains("format 2"), "{err}");
    }
}
