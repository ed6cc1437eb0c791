use std::sync::Arc;
use std::time::{Duration, SystemTime};

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DistinguishedName, DnType,
    ExtendedKeyUsagePurpose, IsCa, KeyPair, KeyUsagePurpose, SanType,
};

use super::*;
use crate::identity::TokenSource;
use crate::tls::TlsContext;

const ORDERS: &str = "spiffe://cluster.local/ns/default/sa/orders";

struct Ca {
    pem: String,
    issuer: CertifiedIssuer<'static, KeyPair>,
}

fn ca() -> Ca {
    let mut params = CertificateParams::default();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name = DistinguishedName::new();
    params
        .distinguished_name
        .push(DnType::CommonName, "test mesh root");
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let issuer = CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap();
    Ca {
        pem: issuer.pem(),
        issuer,
    }
}

/// A leaf for `identity` signed by `ca`, valid from `from` to `until` (seconds
/// from now), saved as the identity module saves one.
fn leaf(ca: &Ca, identity: &str, from: i64, until: i64) -> SavedCertificate {
    let key = KeyPair::generate().unwrap();
    let at = |offset: i64| {
        let now = SystemTime::now();
        let d = Duration::from_secs(offset.unsigned_abs());
        if offset < 0 {
            now - d
        } else {
            now + d
        }
    };
    let mut params = CertificateParams::default();
    params.not_before = at(from).into();
    params.not_after = at(until).into();
    // As the mesh CA issues them: no subject, the identity in the URI SAN.
    params.distinguished_name = DistinguishedName::new();
    params.subject_alt_names = vec![SanType::URI(identity.try_into().unwrap())];
    params.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ];
    params.is_ca = IsCa::ExplicitNoCa;
    let cert = params.signed_by(&key, &*ca.issuer).unwrap();
    SavedCertificate::new(identity, &key.serialize_pem(), &cert.pem(), "", &ca.pem)
}

fn config(dir: &Arc<StateDir>, trust_bundle: Option<&str>) -> IdentityConfig {
    IdentityConfig {
        control_plane: "127.0.0.1:1".parse().unwrap(),
        identity: ORDERS.into(),
        token: TokenSource::Inline("t".into()),
        control_plane_identity: "spiffe://cluster.local/ns/remora-system/sa/remora-control".into(),
        tls: TlsContext::new(CertStore::default()),
        trust_bundle: trust_bundle.map(|pem| crate::tls::TrustBundle {
            pem: pem.to_owned(),
            file: "ca.pem".into(),
        }),
        state: Some(dir.clone()),
    }
}

fn state_dir() -> (tempfile::TempDir, Arc<StateDir>) {
    let root = tempfile::tempdir().unwrap();
    let dir = StateDir::open(&root.path().join("state")).unwrap();
    (root, dir)
}

#[test]
fn a_good_certificate_is_restored_and_serves_tls() {
    let (_root, dir) = state_dir();
    let ca = ca();
    dir.save_certificate(&leaf(&ca, ORDERS, -60, 3600)).unwrap();
    let store = CertStore::default();
    assert!(restore(&config(&dir, Some(&ca.pem)), &store));
    let certified = store.load_full().expect("restored");
    assert_eq!(certified.identity, ORDERS);
    assert_eq!(certified.generation, 1);
    let left = certified
        .not_after
        .duration_since(SystemTime::now())
        .unwrap();
    assert!(left > Duration::from_secs(3000), "{left:?}");
    // The TLS configs build from it: mTLS works before the control plane answers.
    let tls = TlsContext::new(store);
    assert!(tls.server_config().is_some());
    assert!(tls.client_config(ORDERS).is_some());
}

#[test]
fn without_a_bootstrap_trust_bundle_the_saved_one_is_checked() {
    let (_root, dir) = state_dir();
    let ca = ca();
    dir.save_certificate(&leaf(&ca, ORDERS, -60, 3600)).unwrap();
    let store = CertStore::default();
    assert!(restore(&config(&dir, None), &store));
}

#[test]
fn nothing_saved_is_nothing_restored() {
    let (_root, dir) = state_dir();
    let store = CertStore::default();
    assert!(!restore(&config(&dir, None), &store));
    assert!(store.load().is_none());
}

#[test]
fn an_expired_certificate_is_ignored() {
    let (_root, dir) = state_dir();
    let ca = ca();
    dir.save_certificate(&leaf(&ca, ORDERS, -7200, -60))
        .unwrap();
    let store = CertStore::default();
    let config = config(&dir, Some(&ca.pem));
    let err = check(&dir, &config).unwrap_err();
    assert!(
        matches!(
            err,
            Unusable::Chain {
                error: webpki::Error::CertExpired { .. },
                ..
            }
        ),
        "{err}"
    );
    assert!(!restore(&config, &store));
    assert!(store.load().is_none());
}

#[test]
fn a_certificate_of_another_identity_is_ignored() {
    let (_root, dir) = state_dir();
    let ca = ca();
    let web = "spiffe://cluster.local/ns/default/sa/web";
    dir.save_certificate(&leaf(&ca, web, -60, 3600)).unwrap();
    let config = config(&dir, Some(&ca.pem));
    let err = check(&dir, &config).unwrap_err().to_string();
    assert!(
        err.contains("issued for spiffe://cluster.local/ns/default/sa/web"),
        "{err}"
    );
    // Saved under our name, but the certificate says otherwise.
    let mut lying = leaf(&ca, web, -60, 3600);
    lying.identity = ORDERS.into();
    dir.save_certificate(&lying).unwrap();
    let err = check(&dir, &config).unwrap_err().to_string();
    assert!(err.contains("its certificate names"), "{err}");
    assert!(!restore(&config, &CertStore::default()));
}

#[test]
fn a_certificate_from_another_ca_is_ignored() {
    let (_root, dir) = state_dir();
    let (ours, theirs) = (ca(), ca());
    dir.save_certificate(&leaf(&theirs, ORDERS, -60, 3600))
        .unwrap();
    let config = config(&dir, Some(&ours.pem));
    let err = check(&dir, &config).unwrap_err().to_string();
    assert!(err.contains("bootstrap's trust bundle"), "{err}");
    assert!(!restore(&config, &CertStore::default()));
}

#[test]
fn a_certificate_with_another_key_is_ignored() {
    let (_root, dir) = state_dir();
    let ca = ca();
    let mut saved = leaf(&ca, ORDERS, -60, 3600);
    saved.key_pem = KeyPair::generate().unwrap().serialize_pem();
    dir.save_certificate(&saved).unwrap();
    let err = check(&dir, &config(&dir, Some(&ca.pem)))
        .unwrap_err()
        .to_string();
    assert!(err.contains("key does not go with it"), "{err}");
}

#[test]
fn a_restored_certificate_is_renewed_at_the_usual_share_of_its_life() {
    let ca = ca();
    // Issued an hour ago for ten hours: renewal at 70% is six hours from now.
    let saved = leaf(&ca, ORDERS, -3600, 9 * 3600);
    let (_, not_after) = validity(&saved.leaf_pem).unwrap();
    let certified = Certified {
        identity: ORDERS.into(),
        key_pem: saved.key_pem,
        leaf_pem: saved.leaf_pem,
        chain_pem: String::new(),
        trust_bundle_pem: ca.pem.clone(),
        not_after,
        generation: 1,
    };
    let wait = renewal_wait(&certified, 0.5);
    let six_hours = Duration::from_secs(6 * 3600);
    assert!(
        wait <= six_hours && wait > six_hours - Duration::from_secs(60),
        "{wait:?}"
    );
}
