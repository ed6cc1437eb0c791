use std::os::unix::fs::PermissionsExt;
use std::process::Command;

use rcgen::{CertificateParams, KeyPair, SanType};

use super::*;

fn csr_for(uris: &[&str]) -> String {
    let key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::default();
    params.subject_alt_names = uris
        .iter()
        .map(|u| SanType::URI((*u).try_into().unwrap()))
        .collect();
    params.serialize_request(&key).unwrap().pem().unwrap()
}

fn orders() -> SpiffeId {
    SpiffeId::new("cluster.local", "shop", "orders").unwrap()
}

/// Checks a leaf with the real openssl: chain to the bundle, and its URI SAN.
fn openssl_verify(dir: &std::path::Path, bundle: &str, leaf: &str) -> (bool, String) {
    std::fs::write(dir.join("bundle.pem"), bundle).unwrap();
    std::fs::write(dir.join("leaf.pem"), leaf).unwrap();
    let verify = Command::new("openssl")
        .args(["verify", "-purpose", "sslclient", "-CAfile"])
        .arg(dir.join("bundle.pem"))
        .arg(dir.join("leaf.pem"))
        .output()
        .expect("openssl must be installed (scripts/test installs it)");
    let text = Command::new("openssl")
        .args(["x509", "-noout", "-ext", "subjectAltName", "-in"])
        .arg(dir.join("leaf.pem"))
        .output()
        .unwrap();
    (
        verify.status.success(),
        String::from_utf8_lossy(&text.stdout).into_owned(),
    )
}

#[test]
fn a_root_is_created_once_with_a_private_key_and_reused() {
    let dir = tempfile::tempdir().unwrap();
    let first = CertificateAuthority::load_or_create(dir.path(), None, "cluster.local").unwrap();
    let mode = std::fs::metadata(dir.path().join(CA_KEY_FILE))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    let again = CertificateAuthority::load_or_create(dir.path(), None, "cluster.local").unwrap();
    assert_eq!(first.trust_bundle_pem(), again.trust_bundle_pem());
    assert!(first
        .trust_bundle_pem()
        .starts_with("-----BEGIN CERTIFICATE-----"));
}

#[test]
fn the_trust_bundle_of_a_data_directory_without_a_ca_is_an_error_and_makes_none() {
    let dir = tempfile::tempdir().unwrap();
    let err = CertificateAuthority::existing_trust_bundle(dir.path()).unwrap_err();
    assert!(matches!(err, CaError::Missing { .. }), "{err:?}");
    let text = err.to_string();
    assert!(text.contains(&dir.path().display().to_string()), "{text}");
    assert!(
        std::fs::read_dir(dir.path()).unwrap().next().is_none(),
        "nothing was made"
    );
    let ca = CertificateAuthority::load_or_create(dir.path(), None, "cluster.local").unwrap();
    assert_eq!(
        CertificateAuthority::existing_trust_bundle(dir.path()).unwrap(),
        ca.trust_bundle_pem()
    );
}

#[test]
fn a_readable_key_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    CertificateAuthority::load_or_create(dir.path(), None, "cluster.local").unwrap();
    let key = dir.path().join(CA_KEY_FILE);
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    let err = CertificateAuthority::load_or_create(dir.path(), None, "cluster.local")
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("ca.key") && err.contains("0600"), "{err}");
}

#[test]
fn a_group_readable_key_is_taken_as_a_secret_mounted_with_an_fs_group_gives_it() {
    let dir = tempfile::tempdir().unwrap();
    CertificateAuthority::load_or_create(dir.path(), None, "cluster.local").unwrap();
    let key = dir.path().join(CA_KEY_FILE);
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o440)).unwrap();
    CertificateAuthority::load_or_create(dir.path(), None, "cluster.local").unwrap();
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o660)).unwrap();
    assert!(CertificateAuthority::load_or_create(dir.path(), None, "cluster.local").is_err());
}

#[test]
fn a_csr_for_the_granted_identity_gets_a_leaf_that_chains_to_the_root() {
    let dir = tempfile::tempdir().unwrap();
    let ca = CertificateAuthority::load_or_create(dir.path(), None, "cluster.local").unwrap();
    let csr = csr_for(&["spiffe://cluster.local/ns/shop/sa/orders"]);
    let signed = ca.sign(&csr, &orders(), DEFAULT_LEAF_TTL).unwrap();
    let lifetime = signed.not_after.duration_since(SystemTime::now()).unwrap();
    assert!(lifetime > Duration::from_secs(23 * 3600) && lifetime <= DEFAULT_LEAF_TTL);
    assert!(
        signed.chain_pem.is_empty(),
        "a root CA has no intermediates"
    );
    let (ok, san) = openssl_verify(dir.path(), ca.trust_bundle_pem(), &signed.leaf_pem);
    assert!(ok, "openssl does not verify the leaf against the bundle");
    assert!(
        san.contains("URI:spiffe://cluster.local/ns/shop/sa/orders"),
        "{san}"
    );
}

#[test]
fn another_identity_or_a_broken_csr_is_refused_with_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    let ca = CertificateAuthority::load_or_create(dir.path(), None, "cluster.local").unwrap();
    let err = ca
        .sign(
            &csr_for(&["spiffe://cluster.local/ns/shop/sa/payments"]),
            &orders(),
            DEFAULT_LEAF_TTL,
        )
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("must name exactly the URI spiffe://cluster.local/ns/shop/sa/orders"),
        "{err}"
    );
    let two = csr_for(&[
        "spiffe://cluster.local/ns/shop/sa/orders",
        "spiffe://cluster.local/ns/shop/sa/payments",
    ]);
    assert!(ca.sign(&two, &orders(), DEFAULT_LEAF_TTL).is_err());
    let err = ca
        .sign("not a csr", &orders(), DEFAULT_LEAF_TTL)
        .unwrap_err()
        .to_string();
    assert!(err.contains("not a valid PEM CSR"), "{err}");
    let other_domain = SpiffeId::new("example.org", "shop", "orders").unwrap();
    let err = ca
        .sign(
            &csr_for(&["spiffe://example.org/ns/shop/sa/orders"]),
            &other_domain,
            DEFAULT_LEAF_TTL,
        )
        .unwrap_err()
        .to_string();
    assert!(err.contains("outside trust domain cluster.local"), "{err}");
}

#[test]
fn an_operator_intermediate_signs_and_its_chain_is_returned() {
    let dir = tempfile::tempdir().unwrap();
    // The operator's own root, and an intermediate it signed for the mesh.
    let root_key = KeyPair::generate().unwrap();
    let mut root_params = CertificateParams::default();
    root_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    root_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    root_params
        .distinguished_name
        .push(DnType::CommonName, "operator root");
    let root_cert = root_params.self_signed(&root_key).unwrap();
    let root_issuer = Issuer::new(root_params, root_key);
    let mid_key = KeyPair::generate().unwrap();
    let mut mid_params = CertificateParams::default();
    mid_params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    mid_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    mid_params
        .distinguished_name
        .push(DnType::CommonName, "mesh intermediate");
    let mid_cert = mid_params.signed_by(&mid_key, &root_issuer).unwrap();
    let files = CaFiles {
        cert: dir.path().join("mid.crt"),
        key: dir.path().join("mid.key"),
        bundle: Some(dir.path().join("root.crt")),
    };
    std::fs::write(&files.cert, mid_cert.pem()).unwrap();
    std::fs::write(&files.key, mid_key.serialize_pem()).unwrap();
    std::fs::write(files.bundle.as_ref().unwrap(), root_cert.pem()).unwrap();

    let ca =
        CertificateAuthority::load_or_create(dir.path(), Some(&files), "cluster.local").unwrap();
    assert_eq!(ca.trust_bundle_pem(), root_cert.pem());
    let signed = ca
        .sign(
            &csr_for(&["spiffe://cluster.local/ns/shop/sa/orders"]),
            &orders(),
            DEFAULT_LEAF_TTL,
        )
        .unwrap();
    assert_eq!(signed.chain_pem, mid_cert.pem());
    let full = format!("{}{}", signed.leaf_pem, signed.chain_pem);
    std::fs::write(dir.path().join("untrusted.pem"), &signed.chain_pem).unwrap();
    std::fs::write(dir.path().join("root.pem"), ca.trust_bundle_pem()).unwrap();
    std::fs::write(dir.path().join("leaf.pem"), &full).unwrap();
    let verify = Command::new("openssl")
        .args(["verify", "-CAfile"])
        .arg(dir.path().join("root.pem"))
        .arg("-untrusted")
        .arg(dir.path().join("untrusted.pem"))
        .arg(dir.path().join("leaf.pem"))
        .output()
        .unwrap();
    assert!(
        verify.status.success(),
        "{}",
        String::from_utf8_lossy(&verify.stderr)
    );
}

#[test]
fn an_issued_leaf_has_a_key_made_here_the_identity_and_the_host_names() {
    let dir = tempfile::tempdir().unwrap();
    let ca = CertificateAuthority::load_or_create(dir.path(), None, "cluster.local").unwrap();
    let hosts: Vec<HostName> = ["localhost", "127.0.0.1", "::1", "xds.example.com"]
        .iter()
        .map(|h| h.parse().unwrap())
        .collect();
    let issued = ca.issue(&orders(), &hosts, DEFAULT_LEAF_TTL).unwrap();
    let (ok, san) = openssl_verify(dir.path(), ca.trust_bundle_pem(), &issued.signed.leaf_pem);
    assert!(ok, "openssl does not verify the leaf against the bundle");
    for name in [
        "URI:spiffe://cluster.local/ns/shop/sa/orders",
        "DNS:localhost",
        "IP Address:127.0.0.1",
        "IP Address:0:0:0:0:0:0:0:1",
        "DNS:xds.example.com",
    ] {
        assert!(san.contains(name), "{name} missing from {san}");
    }
    // The key is the certificate's.
    std::fs::write(dir.path().join("key.pem"), &issued.key_pem).unwrap();
    let public = |args: &[&str]| {
        let out = Command::new("openssl").args(args).output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    let leaf = dir.path().join("leaf.pem");
    let key = dir.path().join("key.pem");
    assert_eq!(
        public(&["x509", "-noout", "-pubkey", "-in", leaf.to_str().unwrap()]),
        public(&["pkey", "-pubout", "-in", key.to_str().unwrap()])
    );
    assert!(
        !format!("{issued:?}").contains("PRIVATE KEY"),
        "never the key"
    );
    let outside = SpiffeId::new("example.org", "shop", "orders").unwrap();
    assert!(ca.issue(&outside, &[], DEFAULT_LEAF_TTL).is_err());
    // A proxy's CSR still gets its identity alone, whatever hosts others get.
    let signed = ca
        .sign(
            &csr_for(&["spiffe://cluster.local/ns/shop/sa/orders"]),
            &orders(),
            DEFAULT_LEAF_TTL,
        )
        .unwrap();
    let (_, san) = openssl_verify(dir.path(), ca.trust_bundle_pem(), &signed.leaf_pem);
    assert!(
        !san.contains("DNS:") && !san.contains("IP Address:"),
        "{san}"
    );
}

#[test]
fn loading_an_existing_ca_refuses_a_data_directory_without_one_and_makes_none() {
    let dir = tempfile::tempdir().unwrap();
    let err = CertificateAuthority::load_existing(dir.path(), None, "cluster.local").unwrap_err();
    assert!(matches!(err, CaError::Missing { .. }), "{err:?}");
    assert!(
        std::fs::read_dir(dir.path()).unwrap().next().is_none(),
        "nothing was made"
    );
    let made = CertificateAuthority::load_or_create(dir.path(), None, "cluster.local").unwrap();
    let found = CertificateAuthority::load_existing(dir.path(), None, "cluster.local").unwrap();
    assert_eq!(found.trust_bundle_pem(), made.trust_bundle_pem());
}
