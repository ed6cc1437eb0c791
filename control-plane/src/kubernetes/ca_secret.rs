//! The CA the control plane makes, kept in a Secret of its own namespace
//! (`remora-ca`) so that it outlives the pod.
//!
//! Injected proxies carry the CA's certificate inline (the webhook writes it
//! into each pod at creation), and the data directory of a pod is an
//! emptyDir: a control plane that made a new CA at every start would leave
//! every running proxy unable to verify it. So, in Kubernetes mode without an
//! operator's CA (`--ca-cert`/`--ca-key`):
//!
//! - the Secret exists: its `ca.crt` and `ca.key` become the data directory's
//!   CA files (written atomically, the key 0600) and are loaded from there;
//! - it does not: the CA of the data directory (made now if there is none)
//!   is stored in a new Secret;
//! - another replica created it first (409): its CA replaces the one made
//!   here, which nothing has used yet.
//!
//! A Secret that lacks a key or holds one that does not parse stops the
//! start, naming the Secret and the key: it is never overwritten, since
//! every proxy in the cluster may trust what it holds.
//!
//! Not here: the CA itself ([`crate::ca`]).

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::ByteString;
use kube::api::PostParams;
use kube::Api;
use rcgen::{KeyPair, PublicKeyData};

use crate::ca::{CaError, CertificateAuthority, CA_CERT_FILE, CA_KEY_FILE};

/// The Secret's name, in the control plane's namespace.
pub const SECRET_NAME: &str = "remora-ca";
/// Its data keys: the same names as the files of the data directory.
pub const CERT_KEY: &str = CA_CERT_FILE;
pub const KEY_KEY: &str = CA_KEY_FILE;

#[derive(Debug, thiserror::Error)]
pub enum CaSecretError {
    #[error("cannot read the Secret {secret} (the control plane's Role needs get on it)")]
    Get {
        secret: String,
        #[source]
        source: kube::Error,
    },
    #[error("cannot create the Secret {secret} (the control plane's Role needs create on secrets in its namespace)")]
    Create {
        secret: String,
        #[source]
        source: kube::Error,
    },
    #[error("the Secret {secret} was created by another replica, then could not be found")]
    Vanished { secret: String },
    #[error("the Secret {secret} has no data key {key}: fix it, or delete it to make a new CA (every proxy then needs a restart)")]
    MissingKey { secret: String, key: &'static str },
    #[error("the Secret {secret}, data key {key}: {message}: fix it, or delete it to make a new CA (every proxy then needs a restart)")]
    InvalidKey {
        secret: String,
        key: &'static str,
        message: String,
    },
    #[error("cannot write {path} (the CA of the Secret {secret})")]
    Write {
        secret: String,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot read {path} (the CA to keep in the Secret {secret})")]
    Read {
        secret: String,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the CA kept in the Secret {secret}")]
    Load {
        secret: String,
        #[source]
        source: CaError,
    },
}

/// A CA's certificate and key as PEM text, checked to parse and to match.
#[derive(Clone, PartialEq, Eq)]
pub struct CaPem {
    pub cert_pem: String,
    pub key_pem: String,
}

impl std::fmt::Debug for CaPem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the key.
        f.debug_struct("CaPem")
            .field("cert_pem", &self.cert_pem)
            .finish_non_exhaustive()
    }
}

/// The CA of the Secret `remora-ca` in `namespace`, or the data directory's
/// (made if needed) stored there when there is none.
pub async fn load_or_create(
    client: &kube::Client,
    namespace: &str,
    data_dir: &Path,
    trust_domain: &str,
) -> Result<CertificateAuthority, CaSecretError> {
    let secret = format!("{namespace}/{SECRET_NAME}");
    let api: Api<Secret> = Api::namespaced(client.clone(), namespace);
    let get = |found: Result<Option<Secret>, kube::Error>| {
        found.map_err(|source| CaSecretError::Get {
            secret: secret.clone(),
            source,
        })
    };
    if let Some(found) = get(api.get_opt(SECRET_NAME).await)? {
        let ca = load_from(&found, &secret, data_dir, trust_domain)?;
        tracing::info!(%secret, "using the CA kept in the Secret");
        return Ok(ca);
    }
    // None yet: the data directory's CA (made now on a first start) is kept.
    let ca =
        CertificateAuthority::load_or_create(data_dir, None, trust_domain).map_err(|source| {
            CaSecretError::Load {
                secret: secret.clone(),
                source,
            }
        })?;
    let pem = read_data_dir(data_dir, &secret)?;
    match api
        .create(&PostParams::default(), &new_secret(namespace, &pem))
        .await
    {
        Ok(_) => {
            tracing::info!(%secret, "kept the control plane's CA in a new Secret");
            Ok(ca)
        }
        Err(kube::Error::Api(status)) if status.is_already_exists() || status.code == 409 => {
            // Another replica won the race: its CA is the one proxies get.
            let found =
                get(api.get_opt(SECRET_NAME).await)?.ok_or_else(|| CaSecretError::Vanished {
                    secret: secret.clone(),
                })?;
            let ca = load_from(&found, &secret, data_dir, trust_domain)?;
            tracing::warn!(%secret, "another replica created the Secret first; using its CA");
            Ok(ca)
        }
        Err(source) => Err(CaSecretError::Create {
            secret: secret.clone(),
            source,
        }),
    }
}

/// The Secret's CA written as the data directory's files, then loaded.
fn load_from(
    found: &Secret,
    secret: &str,
    data_dir: &Path,
    trust_domain: &str,
) -> Result<CertificateAuthority, CaSecretError> {
    let pem = parse(found, secret)?;
    write_data_dir(data_dir, secret, &pem)?;
    CertificateAuthority::load_or_create(data_dir, None, trust_domain).map_err(|source| {
        CaSecretError::Load {
            secret: secret.to_owned(),
            source,
        }
    })
}

/// The CA in `found` (`secret` names it in errors): both keys present, the
/// key a PEM private key, the certificate a PEM certificate of that key.
pub fn parse(found: &Secret, secret: &str) -> Result<CaPem, CaSecretError> {
    let text = |key: &'static str| -> Result<String, CaSecretError> {
        let bytes = found
            .data
            .as_ref()
            .and_then(|data| data.get(key))
            .ok_or_else(|| CaSecretError::MissingKey {
                secret: secret.to_owned(),
                key,
            })?;
        String::from_utf8(bytes.0.clone()).map_err(|_| CaSecretError::InvalidKey {
            secret: secret.to_owned(),
            key,
            message: "not UTF-8 text (PEM expected)".to_owned(),
        })
    };
    let invalid = |key: &'static str, message: String| CaSecretError::InvalidKey {
        secret: secret.to_owned(),
        key,
        message,
    };
    let cert_pem = text(CERT_KEY)?;
    let key_pem = text(KEY_KEY)?;
    let key = KeyPair::from_pem(&key_pem)
        .map_err(|e| invalid(KEY_KEY, format!("not a PEM private key: {e}")))?;
    let public_key = certificate_public_key(&cert_pem).map_err(|m| invalid(CERT_KEY, m))?;
    if public_key != key.der_bytes() {
        return Err(invalid(
            KEY_KEY,
            format!("is not the key of the certificate in {CERT_KEY}"),
        ));
    }
    Ok(CaPem { cert_pem, key_pem })
}

/// The public key of the first certificate of `pem`.
fn certificate_public_key(pem: &str) -> Result<Vec<u8>, String> {
    let first = x509_parser::pem::Pem::iter_from_buffer(pem.as_bytes())
        .next()
        .ok_or_else(|| "holds no PEM certificate".to_owned())?
        .map_err(|e| format!("not valid PEM: {e}"))?;
    if first.label != "CERTIFICATE" {
        return Err(format!(
            "holds a {} where a certificate is expected",
            first.label
        ));
    }
    let cert = first
        .parse_x509()
        .map_err(|e| format!("not a valid X.509 certificate: {e}"))?;
    Ok(cert.public_key().subject_public_key.data.to_vec())
}

/// The Secret `remora install`'s Role lets the control plane create.
pub fn new_secret(namespace: &str, pem: &CaPem) -> Secret {
    let data = [
        (
            CERT_KEY.to_owned(),
            ByteString(pem.cert_pem.clone().into_bytes()),
        ),
        (
            KEY_KEY.to_owned(),
            ByteString(pem.key_pem.clone().into_bytes()),
        ),
    ];
    let labels = [
        ("app.kubernetes.io/name", "remora"),
        ("app.kubernetes.io/part-of", "remora"),
    ];
    Secret {
        metadata: ObjectMeta {
            name: Some(SECRET_NAME.to_owned()),
            namespace: Some(namespace.to_owned()),
            labels: Some(
                labels
                    .into_iter()
                    .map(|(k, v)| (k.to_owned(), v.to_owned()))
                    .collect(),
            ),
            ..ObjectMeta::default()
        },
        type_: Some("Opaque".to_owned()),
        data: Some(data.into_iter().collect()),
        ..Secret::default()
    }
}

/// The data directory's CA files, as made (or found) by the CA.
fn read_data_dir(data_dir: &Path, secret: &str) -> Result<CaPem, CaSecretError> {
    let read = |name: &str| {
        let path = data_dir.join(name);
        std::fs::read_to_string(&path).map_err(|source| CaSecretError::Read {
            secret: secret.to_owned(),
            path,
            source,
        })
    };
    Ok(CaPem {
        cert_pem: read(CA_CERT_FILE)?,
        key_pem: read(CA_KEY_FILE)?,
    })
}

/// Replaces the data directory's CA files with `pem`, each atomically (a
/// temporary file renamed over it), both mode 0600.
fn write_data_dir(data_dir: &Path, secret: &str, pem: &CaPem) -> Result<(), CaSecretError> {
    let error = |path: &Path| {
        let path = path.to_owned();
        let secret = secret.to_owned();
        move |source| CaSecretError::Write {
            secret,
            path,
            source,
        }
    };
    std::fs::create_dir_all(data_dir).map_err(error(data_dir))?;
    for (name, text) in [(CA_KEY_FILE, &pem.key_pem), (CA_CERT_FILE, &pem.cert_pem)] {
        let path = data_dir.join(name);
        write_atomic(&path, text).map_err(error(&path))?;
    }
    Ok(())
}

fn write_atomic(path: &Path, text: &str) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or_else(|| Path::new("."));
    let mut file = tempfile::NamedTempFile::new_in(dir)?;
    file.as_file()
        .set_permissions(std::fs::Permissions::from_mode(0o600))?;
    file.write_all(text.as_bytes())?;
    file.as_file().sync_all()?;
    file.persist(path).map_err(|e| e.error)?;
    Ok(())
}

#[cfg(test)]
mod tests;
