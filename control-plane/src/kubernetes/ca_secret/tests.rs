use std::os::unix::fs::PermissionsExt;

use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair};

use super::*;

const SECRET: &str = "remora-system/remora-ca";

/// A self-signed CA, as PEM.
fn ca() -> CaPem {
    let key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::default();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let cert = params.self_signed(&key).unwrap();
    CaPem {
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
    }
}

fn secret_with(data: &[(&str, &str)]) -> Secret {
    Secret {
        data: Some(
            data.iter()
                .map(|(k, v)| ((*k).to_owned(), ByteString(v.as_bytes().to_vec())))
                .collect(),
        ),
        ..Secret::default()
    }
}

fn invalid_key(result: Result<CaPem, CaSecretError>) -> (&'static str, String) {
    match &result {
        Err(e @ CaSecretError::InvalidKey { key, .. }) => (*key, e.to_string()),
        other => panic!("expected an invalid key, got {other:?}"),
    }
}

#[test]
fn a_matching_certificate_and_key_are_the_ca() {
    let pem = ca();
    let secret = secret_with(&[
        ("ca.crt", pem.cert_pem.as_str()),
        ("ca.key", pem.key_pem.as_str()),
    ]);
    assert_eq!(parse(&secret, SECRET).unwrap(), pem);
}

#[test]
fn the_secret_made_here_parses_back_with_its_labels_and_type() {
    let pem = ca();
    let secret = new_secret("remora-system", &pem);
    assert_eq!(secret.metadata.name.as_deref(), Some("remora-ca"));
    assert_eq!(secret.metadata.namespace.as_deref(), Some("remora-system"));
    assert_eq!(secret.type_.as_deref(), Some("Opaque"));
    let labels = secret.metadata.labels.clone().unwrap_or_default();
    assert_eq!(
        labels.get("app.kubernetes.io/part-of").map(String::as_str),
        Some("remora")
    );
    assert_eq!(parse(&secret, SECRET).unwrap(), pem);
    // On the wire the data is base64, as the API server expects.
    let json = serde_json::to_value(&secret).unwrap();
    assert_eq!(json["kind"], "Secret");
    assert!(json["data"]["ca.key"]
        .as_str()
        .is_some_and(|v| !v.contains("BEGIN")));
}

#[test]
fn a_missing_data_key_is_named_with_the_secret() {
    let pem = ca();
    for (data, missing) in [
        (vec![("ca.key", pem.key_pem.as_str())], "ca.crt"),
        (vec![("ca.crt", pem.cert_pem.as_str())], "ca.key"),
    ] {
        match &parse(&secret_with(&data), SECRET) {
            Err(e @ CaSecretError::MissingKey { key, .. }) => {
                assert_eq!(*key, missing);
                let message = e.to_string();
                assert!(message.contains(SECRET), "{message}");
                assert!(message.contains(missing), "{message}");
            }
            other => panic!("expected {missing} missing, got {other:?}"),
        }
    }
    assert!(matches!(
        parse(&Secret::default(), SECRET),
        Err(CaSecretError::MissingKey { .. })
    ));
}

#[test]
fn a_key_that_is_not_a_private_key_is_named() {
    let pem = ca();
    let secret = secret_with(&[("ca.crt", pem.cert_pem.as_str()), ("ca.key", "not a key")]);
    let (key, message) = invalid_key(parse(&secret, SECRET));
    assert_eq!(key, "ca.key");
    assert!(message.contains(SECRET), "{message}");
    assert!(message.contains("not a PEM private key"), "{message}");
}

#[test]
fn a_certificate_that_does_not_parse_is_named() {
    let pem = ca();
    for bad in ["", "junk", pem.key_pem.as_str()] {
        let secret = secret_with(&[("ca.crt", bad), ("ca.key", pem.key_pem.as_str())]);
        let (key, message) = invalid_key(parse(&secret, SECRET));
        assert_eq!(key, "ca.crt", "{bad:?}: {message}");
    }
    let not_utf8 = Secret {
        data: Some(
            [
                ("ca.crt".to_owned(), ByteString(vec![0xff, 0xfe])),
                ("ca.key".to_owned(), ByteString(pem.key_pem.into_bytes())),
            ]
            .into_iter()
            .collect(),
        ),
        ..Secret::default()
    };
    assert_eq!(invalid_key(parse(&not_utf8, SECRET)).0, "ca.crt");
}

#[test]
fn the_key_of_another_certificate_is_refused() {
    let (one, other) = (ca(), ca());
    let secret = secret_with(&[
        ("ca.crt", one.cert_pem.as_str()),
        ("ca.key", other.key_pem.as_str()),
    ]);
    let (key, message) = invalid_key(parse(&secret, SECRET));
    assert_eq!(key, "ca.key");
    assert!(
        message.contains("not the key of the certificate"),
        "{message}"
    );
}

#[test]
fn the_secret_replaces_the_data_directory_ca_with_a_private_key() {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("data");
    // A CA made in the data directory before (a pod's emptyDir, say).
    CertificateAuthority::load_or_create(&data_dir, None, "cluster.local").unwrap();
    let pem = ca();
    write_data_dir(&data_dir, SECRET, &pem).unwrap();
    let loaded = CertificateAuthority::load_or_create(&data_dir, None, "cluster.local").unwrap();
    assert_eq!(loaded.trust_bundle_pem(), pem.cert_pem);
    let mode = std::fs::metadata(data_dir.join("ca.key"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    assert_eq!(read_data_dir(&data_dir, SECRET).unwrap(), pem);
    // Nothing is left beside the two files.
    let names: Vec<_> = std::fs::read_dir(&data_dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(names.len(), 2, "{names:?}");
}
