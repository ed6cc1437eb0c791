//! Certify through the gRPC trait, with a CA in a temporary directory: who
//! gets a certificate, and with which status code the others are refused.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};

use futures::future::BoxFuture;
use k8s_openapi::api::authentication::v1::{TokenReviewStatus, UserInfo};
use rcgen::{CertificateParams, KeyPair, SanType};
use tonic::Code;

use super::*;
use crate::kubernetes::tokenreview::{Limits, ReviewApi, POD_UID};

const TTL: Duration = Duration::from_secs(3600);

/// The control plane runs in namespace `mesh`.
fn control_plane() -> SpiffeId {
    SpiffeId::new("cluster.local", "mesh", "remora-control").unwrap()
}

fn service(dir: &std::path::Path) -> IdentityService {
    let ca = CertificateAuthority::load_or_create(dir, None, "cluster.local").unwrap();
    IdentityService::new(Arc::new(ca), TokenStore::new(dir), TTL, control_plane())
}

fn csr_for(identity: &str) -> String {
    let key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::default();
    params.subject_alt_names = vec![SanType::URI(identity.try_into().unwrap())];
    params.serialize_request(&key).unwrap().pem().unwrap()
}

async fn certify(
    service: &IdentityService,
    identity: &str,
    token: &str,
) -> Result<CertifyResponse, Status> {
    let request = CertifyRequest {
        identity: identity.to_owned(),
        csr_pem: csr_for(identity),
        token: token.to_owned(),
    };
    service
        .certify(Request::new(request))
        .await
        .map(Response::into_inner)
}

fn mint(dir: &std::path::Path, namespace: &str, account: &str) -> String {
    let grant = Grant {
        namespace: namespace.into(),
        service_account: account.into(),
    };
    TokenStore::new(dir).create(grant, TTL).unwrap()
}

/// The API server: every token is `mesh`'s `remora-control`, bound to a
/// pod; or it never answers. Counts the reviews asked.
struct Api {
    answer: Option<TokenReviewStatus>,
    calls: AtomicUsize,
}

impl ReviewApi for Api {
    fn review(
        &self,
        _token: &str,
    ) -> BoxFuture<'static, Result<Option<TokenReviewStatus>, kube::Error>> {
        type Answer = Result<Option<TokenReviewStatus>, kube::Error>;
        self.calls.fetch_add(1, Ordering::SeqCst);
        match self.answer.clone() {
            Some(answer) => Box::pin(futures::future::ready::<Answer>(Ok(Some(answer)))),
            None => Box::pin(futures::future::pending::<Answer>()),
        }
    }
}

fn control_plane_token_review() -> TokenReviewStatus {
    TokenReviewStatus {
        authenticated: Some(true),
        audiences: Some(vec!["remora".into()]),
        user: Some(UserInfo {
            username: Some("system:serviceaccount:mesh:remora-control".into()),
            extra: Some(BTreeMap::from([(
                POD_UID.to_owned(),
                vec!["0d9c8b7a-6f5e-4d3c-2b1a-098f7e6d5c4b".to_owned()],
            )])),
            ..Default::default()
        }),
        error: None,
    }
}

const JWT: &str = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ4In0.c2ln";

#[tokio::test]
async fn the_control_planes_own_identity_is_never_issued_whatever_the_token() {
    let dir = tempfile::tempdir().unwrap();
    let service = service(dir.path());
    let own = control_plane().to_string();
    let token = mint(dir.path(), "mesh", "remora-control");
    let refused = certify(&service, &own, &token).await.unwrap_err();
    assert_eq!(refused.code(), Code::PermissionDenied, "{refused:?}");
    assert!(
        refused
            .message()
            .contains("the control plane's own identity"),
        "{refused:?}"
    );

    // The same account elsewhere, and a workload, are issued as before.
    let elsewhere = "spiffe://cluster.local/ns/remora-system/sa/remora-control";
    let token = mint(dir.path(), "remora-system", "remora-control");
    assert!(!certify(&service, elsewhere, &token)
        .await
        .unwrap()
        .leaf_pem
        .is_empty());
    let orders = "spiffe://cluster.local/ns/shop/sa/orders";
    let token = mint(dir.path(), "shop", "orders");
    assert!(!certify(&service, orders, &token)
        .await
        .unwrap()
        .leaf_pem
        .is_empty());
}

#[tokio::test]
async fn a_service_account_token_of_the_control_plane_gets_nothing_either() {
    let dir = tempfile::tempdir().unwrap();
    let api = Arc::new(Api {
        answer: Some(control_plane_token_review()),
        calls: AtomicUsize::new(0),
    });
    let reviewer = TokenReviewer::with_api(api.clone(), Limits::default());
    let service = service(dir.path()).with_token_review(Arc::new(reviewer));
    let refused = certify(&service, &control_plane().to_string(), JWT)
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::PermissionDenied, "{refused:?}");
    assert_eq!(api.calls.load(Ordering::SeqCst), 0, "refused before review");
}

#[tokio::test(start_paused = true)]
async fn a_review_not_answered_in_time_is_unavailable_and_a_non_token_unauthenticated() {
    let dir = tempfile::tempdir().unwrap();
    let api = Arc::new(Api {
        answer: None,
        calls: AtomicUsize::new(0),
    });
    let reviewer = TokenReviewer::with_api(api.clone(), Limits::default());
    let service = service(dir.path()).with_token_review(Arc::new(reviewer));
    let orders = "spiffe://cluster.local/ns/shop/sa/orders";

    let slow = certify(&service, orders, JWT).await.unwrap_err();
    assert_eq!(slow.code(), Code::Unavailable, "{slow:?}");

    let not_a_token = certify(&service, orders, "hello").await.unwrap_err();
    assert_eq!(not_a_token.code(), Code::Unauthenticated, "{not_a_token:?}");
    assert!(
        not_a_token.message().contains("three base64url parts"),
        "{not_a_token:?}"
    );
    assert_eq!(api.calls.load(Ordering::SeqCst), 1);
}
