//! The identity service of a real control plane: a token minted by `remora token
//! create` gets a certificate for exactly its identity, which the real openssl
//! verifies against the trust bundle; anything else gets a clear gRPC status.

mod support;

use std::process::Command;

use rcgen::{CertificateParams, KeyPair, SanType};
use remora_proto::identity::identity_client::IdentityClient;
use remora_proto::identity::CertifyRequest;
use support::*;

const ORDERS: &str = "spiffe://cluster.local/ns/shop/sa/orders";
const PAYMENTS: &str = "spiffe://cluster.local/ns/shop/sa/payments";

fn csr(uri: &str) -> String {
    let key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::default();
    params.subject_alt_names = vec![SanType::URI(uri.try_into().unwrap())];
    params.serialize_request(&key).unwrap().pem().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_gets_a_certificate_for_its_identity_and_nothing_else() {
    let (root, cp) = control_plane_with(&[("orders", 80, "http")], &[]).await;
    let data_dir = cp.data_dir();
    let token = mint_token(&data_dir, "shop", "orders");
    let mut client = IdentityClient::connect(format!("http://{}", cp.xds_addr))
        .await
        .unwrap();
    let request = |identity: &str, csr_pem: String, token: &str| CertifyRequest {
        identity: identity.into(),
        csr_pem,
        token: token.into(),
    };

    let issued = client
        .certify(request(ORDERS, csr(ORDERS), &token))
        .await
        .unwrap()
        .into_inner();
    let bundle = cp.api_get("/api/v1/trust-bundle").await.unwrap().text();
    assert_eq!(bundle, issued.trust_bundle_pem);
    std::fs::write(root.path().join("bundle.pem"), &bundle).unwrap();
    std::fs::write(root.path().join("leaf.pem"), &issued.leaf_pem).unwrap();
    let verify = Command::new("openssl")
        .args(["verify", "-purpose", "sslserver", "-CAfile"])
        .arg(root.path().join("bundle.pem"))
        .arg(root.path().join("leaf.pem"))
        .output()
        .expect("openssl (scripts/test installs it)");
    assert!(
        verify.status.success(),
        "{}",
        String::from_utf8_lossy(&verify.stderr)
    );
    let san = Command::new("openssl")
        .args(["x509", "-noout", "-ext", "subjectAltName", "-in"])
        .arg(root.path().join("leaf.pem"))
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&san.stdout).contains(&format!("URI:{ORDERS}")));

    // A token for orders cannot get a certificate for payments.
    let denied = client
        .certify(request(PAYMENTS, csr(PAYMENTS), &token))
        .await
        .unwrap_err();
    assert_eq!(denied.code(), tonic::Code::PermissionDenied);
    assert!(
        denied.message().contains(ORDERS) && denied.message().contains(PAYMENTS),
        "{denied:?}"
    );
    // Nor by naming orders while the CSR asks for payments.
    let mismatched = client
        .certify(request(ORDERS, csr(PAYMENTS), &token))
        .await
        .unwrap_err();
    assert_eq!(mismatched.code(), tonic::Code::InvalidArgument);
    assert!(
        mismatched.message().contains("must name exactly the URI"),
        "{mismatched:?}"
    );
    // A malformed CSR, an unknown token and a malformed identity.
    let malformed = client
        .certify(request(
            ORDERS,
            "-----BEGIN CERTIFICATE REQUEST-----\nnope\n".into(),
            &token,
        ))
        .await
        .unwrap_err();
    assert_eq!(malformed.code(), tonic::Code::InvalidArgument);
    assert!(malformed.message().contains("CSR"), "{malformed:?}");
    let unknown = client
        .certify(request(ORDERS, csr(ORDERS), "rmt_not-a-token"))
        .await
        .unwrap_err();
    assert_eq!(unknown.code(), tonic::Code::Unauthenticated);
    let bad_id = client
        .certify(request(
            "spiffe://cluster.local/orders",
            csr(ORDERS),
            &token,
        ))
        .await
        .unwrap_err();
    assert_eq!(bad_id.code(), tonic::Code::InvalidArgument);
}
