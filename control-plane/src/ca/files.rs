//! The CA's key and certificate on disk. The key is written once with mode 0600
//! and never leaves the data directory.

use std::fs::OpenOptions;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use rcgen::KeyPair;

use super::CaError;

pub const CA_CERT_FILE: &str = "ca.crt";
pub const CA_KEY_FILE: &str = "ca.key";

/// An operator's CA (`--ca-cert`, `--ca-key`, optional `--ca-bundle` with the root
/// when the CA is an intermediate).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub bundle: Option<PathBuf>,
}

pub struct Loaded {
    pub cert_path: PathBuf,
    pub cert_pem: String,
    pub key: KeyPair,
    pub bundle_pem: String,
}

impl CaFiles {
    pub fn load(&self) -> Result<Loaded, CaError> {
        let cert_pem = read(&self.cert)?;
        let key = parse_key(&self.key, &read(&self.key)?)?;
        let bundle_pem = match &self.bundle {
            Some(b) => read(b)?,
            None => cert_pem.clone(),
        };
        Ok(Loaded {
            cert_path: self.cert.clone(),
            cert_pem,
            key,
            bundle_pem,
        })
    }
}

/// The root in `dir`, or a new one made by `make` and saved there.
pub fn load_or_create_root(
    dir: &Path,
    make: impl FnOnce() -> Result<(String, KeyPair), rcgen::Error>,
) -> Result<Loaded, CaError> {
    let cert_path = dir.join(CA_CERT_FILE);
    let key_path = dir.join(CA_KEY_FILE);
    if cert_path.exists() || key_path.exists() {
        return load_root(cert_path, &key_path);
    }
    let io = |path: &Path| {
        let path = path.to_owned();
        move |source| CaError::Io { path, source }
    };
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    let (cert_pem, key) = make().map_err(CaError::Sign)?;
    write_private(&key_path, &key.serialize_pem())?;
    write_private(&cert_path, &cert_pem)?;
    tracing::info!(cert = %cert_path.display(), "created a new root CA");
    Ok(Loaded {
        cert_path,
        bundle_pem: cert_pem.clone(),
        cert_pem,
        key,
    })
}

/// The root in `dir`, which must be there: signing outside the control plane
/// (`remora certificate create`) never makes a CA.
pub fn load_existing_root(dir: &Path) -> Result<Loaded, CaError> {
    let cert_path = dir.join(CA_CERT_FILE);
    if !cert_path.exists() {
        return Err(CaError::Missing {
            dir: dir.to_owned(),
        });
    }
    load_root(cert_path, &dir.join(CA_KEY_FILE))
}

fn load_root(cert_path: PathBuf, key_path: &Path) -> Result<Loaded, CaError> {
    let cert_pem = read(&cert_path)?;
    let key = parse_key(key_path, &read(key_path)?)?;
    check_private(key_path)?;
    Ok(Loaded {
        cert_path,
        bundle_pem: cert_pem.clone(),
        cert_pem,
        key,
    })
}

/// The certificate of the root in `dir`, which must be there.
pub fn existing_root_pem(dir: &Path) -> Result<String, CaError> {
    let cert_path = dir.join(CA_CERT_FILE);
    if !cert_path.exists() {
        return Err(CaError::Missing {
            dir: dir.to_owned(),
        });
    }
    let pem = read(&cert_path)?;
    if !pem.contains("-----BEGIN CERTIFICATE-----") {
        return Err(CaError::Invalid {
            path: cert_path,
            message: "holds no PEM certificate".into(),
        });
    }
    Ok(pem)
}

fn read(path: &Path) -> Result<String, CaError> {
    std::fs::read_to_string(path).map_err(|source| CaError::Io {
        path: path.to_owned(),
        source,
    })
}

fn parse_key(path: &Path, pem: &str) -> Result<KeyPair, CaError> {
    KeyPair::from_pem(pem).map_err(|e| CaError::Invalid {
        path: path.to_owned(),
        message: format!("not a PEM private key: {e}"),
    })
}

/// Refuses a key that others can read or anyone else can write: it signs every
/// identity in the mesh. Group read is allowed: the kubelet mounts a Secret's
/// files group-readable for the pod's fsGroup whatever `defaultMode` says.
fn check_private(path: &Path) -> Result<(), CaError> {
    let meta = std::fs::metadata(path).map_err(|source| CaError::Io {
        path: path.to_owned(),
        source,
    })?;
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o037 != 0 {
        return Err(CaError::Invalid {
            path: path.to_owned(),
            message: format!(
                "mode {mode:o} lets others read or change the CA key; it must be 0600 (or 0640 for a Secret mounted with an fsGroup)"
            ),
        });
    }
    Ok(())
}

fn write_private(path: &Path, text: &str) -> Result<(), CaError> {
    let err = |source| CaError::Io {
        path: path.to_owned(),
        source,
    };
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(err)?;
    file.write_all(text.as_bytes()).map_err(err)?;
    file.sync_all().map_err(err)
}
