//! A workload certificate as files, for clients that read theirs from disk
//! rather than asking the control plane (a proxyless gRPC client's bootstrap
//! names them in its `tls` channel credentials).
//!
//! Each file is replaced whole (written beside it, then renamed), so a reader
//! that watches them, as gRPC does, sees the old file or the new one, never
//! half of one; rewriting them is how the certificate is renewed.

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use tempfile::NamedTempFile;

use super::{CaError, Issued};

/// The leaf, then the intermediates up to the root.
pub const CERT_FILE: &str = "cert.pem";
/// The private key (mode 0600).
pub const KEY_FILE: &str = "key.pem";
/// The trust bundle: the roots the control plane's certificate (and every
/// mesh peer's) chains to.
pub const BUNDLE_FILE: &str = "ca.pem";

/// Where [`write`] put each file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkloadFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub bundle: PathBuf,
}

/// Writes `issued` and the trust bundle into `dir` (made if missing),
/// replacing files already there. The paths returned are absolute, as a
/// bootstrap needs them.
pub fn write(
    dir: &Path,
    issued: &Issued,
    trust_bundle_pem: &str,
) -> Result<WorkloadFiles, CaError> {
    let io = |path: &Path| {
        let path = path.to_owned();
        move |source| CaError::Io { path, source }
    };
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    let dir = std::fs::canonicalize(dir).map_err(io(dir))?;
    let files = WorkloadFiles {
        cert: dir.join(CERT_FILE),
        key: dir.join(KEY_FILE),
        bundle: dir.join(BUNDLE_FILE),
    };
    let chain = format!("{}{}", issued.signed.leaf_pem, issued.signed.chain_pem);
    // All three are written first, then renamed one right after the other:
    // gRPC does not check that the key and certificate it reads match, so the
    // moment when the new key sits beside the old certificate is kept to one
    // rename.
    let staged = [
        stage(&files.key, &issued.key_pem, 0o600)?,
        stage(&files.cert, &chain, 0o644)?,
        stage(&files.bundle, trust_bundle_pem, 0o644)?,
    ];
    for (tmp, path) in staged {
        tmp.persist(&path).map_err(|e| CaError::Io {
            path: path.clone(),
            source: e.error,
        })?;
    }
    Ok(files)
}

/// `text` in a new file beside `path`, with `mode`, synced: ready to be
/// renamed over `path`.
fn stage(path: &Path, text: &str, mode: u32) -> Result<(NamedTempFile, PathBuf), CaError> {
    let err = |source| CaError::Io {
        path: path.to_owned(),
        source,
    };
    let dir = path.parent().unwrap_or(Path::new("."));
    // Made with mode 0600: the key is never readable by others, not even
    // before its mode is set.
    let mut tmp = NamedTempFile::new_in(dir).map_err(err)?;
    tmp.write_all(text.as_bytes()).map_err(err)?;
    tmp.as_file()
        .set_permissions(std::fs::Permissions::from_mode(mode))
        .map_err(err)?;
    tmp.as_file().sync_all().map_err(err)?;
    Ok((tmp, path.to_owned()))
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::super::{CertificateAuthority, SpiffeId};
    use super::*;

    #[test]
    fn writes_the_chain_a_private_key_and_the_bundle_and_replaces_them() {
        let dir = tempfile::tempdir().unwrap();
        let ca =
            CertificateAuthority::load_or_create(&dir.path().join("data"), None, "cluster.local")
                .unwrap();
        let id = SpiffeId::new("cluster.local", "default", "orders-client").unwrap();
        let out = dir.path().join("certs");
        let first = ca.issue(&id, &[], Duration::from_secs(3600)).unwrap();
        let files = write(&out, &first, ca.trust_bundle_pem()).unwrap();
        assert!(files.cert.is_absolute());
        assert_eq!(
            files.key,
            std::fs::canonicalize(&out).unwrap().join(KEY_FILE)
        );
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&files.key), 0o600);
        assert_eq!(mode(&files.cert), 0o644);
        assert_eq!(std::fs::read_to_string(&files.key).unwrap(), first.key_pem);
        assert_eq!(
            std::fs::read_to_string(&files.cert).unwrap(),
            first.signed.leaf_pem
        );
        assert_eq!(
            std::fs::read_to_string(&files.bundle).unwrap(),
            ca.trust_bundle_pem()
        );

        // Renewal: the same files, new contents, nothing else left behind.
        let second = ca.issue(&id, &[], Duration::from_secs(3600)).unwrap();
        let again = write(&out, &second, ca.trust_bundle_pem()).unwrap();
        assert_eq!(again, files);
        assert_eq!(std::fs::read_to_string(&files.key).unwrap(), second.key_pem);
        assert_ne!(first.key_pem, second.key_pem);
        assert_eq!(mode(&files.key), 0o600);
        assert_eq!(std::fs::read_dir(&out).unwrap().count(), 3);
    }
}
