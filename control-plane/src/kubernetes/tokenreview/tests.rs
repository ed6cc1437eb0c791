use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};

use k8s_openapi::api::authentication::v1::UserInfo;

use super::cache::CACHE_MAX;
use super::*;

/// A review's status; an authenticated one is bound to a pod, as the API
/// server says of a projected token.
fn status(authenticated: bool, username: &str, audiences: &[&str]) -> TokenReviewStatus {
    let extra = BTreeMap::from([(
        POD_UID.to_owned(),
        vec!["6b0a3f1e-2c4d-4e5f-8a9b-0c1d2e3f4a5b".to_owned()],
    )]);
    TokenReviewStatus {
        authenticated: Some(authenticated),
        audiences: Some(audiences.iter().map(|a| (*a).to_owned()).collect()),
        user: Some(UserInfo {
            username: Some(username.to_owned()),
            extra: authenticated.then_some(extra),
            ..Default::default()
        }),
        error: None,
    }
}

fn good() -> TokenReviewStatus {
    status(true, "system:serviceaccount:shop:orders", &["remora"])
}

fn orders() -> ServiceAccount {
    ServiceAccount {
        namespace: "shop".into(),
        name: "orders".into(),
    }
}

/// A token of a JWT's shape.
fn jwt(name: &str) -> String {
    format!("eyJhbGciOiJSUzI1NiJ9.{name}.c2lnbmF0dXJl")
}

/// The API server: answers every review with `answer`, or never (`None`);
/// counts the reviews asked.
struct FakeApi {
    answer: Option<TokenReviewStatus>,
    calls: AtomicUsize,
}

impl FakeApi {
    fn answering(answer: TokenReviewStatus) -> Arc<Self> {
        Arc::new(Self {
            answer: Some(answer),
            calls: AtomicUsize::new(0),
        })
    }

    fn never() -> Arc<Self> {
        Arc::new(Self {
            answer: None,
            calls: AtomicUsize::new(0),
        })
    }

    fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }
}

impl ReviewApi for FakeApi {
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

#[test]
fn a_pod_bound_service_account_token_for_remora_grants_that_account() {
    assert_eq!(account_of(Some(&good())).unwrap(), orders());
    let s = status(
        true,
        "system:serviceaccount:shop:orders",
        &["other", "remora"],
    );
    assert_eq!(account_of(Some(&s)).unwrap(), orders());
}

#[test]
fn each_refusal_says_why() {
    let mut unbound = good();
    if let Some(user) = unbound.user.as_mut() {
        user.extra = Some(BTreeMap::from([(
            "example.com/team".to_owned(),
            vec!["shop".to_owned()],
        )]));
    }
    let cases = [
        (
            status(false, "", &[]),
            "not authenticated: unknown or expired token",
        ),
        (
            status(true, "system:serviceaccount:shop:orders", &["vault"]),
            "not for the audience `remora` (it is for: vault)",
        ),
        (
            status(true, "system:serviceaccount:shop:orders", &[]),
            "(it is for: no audience listed)",
        ),
        (
            status(true, "jane@example.com", &["remora"]),
            "belongs to `jane@example.com`, not a service account",
        ),
        (
            status(true, "system:node:worker-1", &["remora"]),
            "not a service account",
        ),
        // Another authenticator naming its user like a service account.
        (
            unbound,
            "the token of `system:serviceaccount:shop:orders` is not bound to a pod",
        ),
    ];
    for (s, expected) in cases {
        let message = account_of(Some(&s)).unwrap_err().to_string();
        assert!(message.contains(expected), "{message}");
    }
    let mut s = status(false, "", &[]);
    s.error = Some("token has expired".into());
    let message = account_of(Some(&s)).unwrap_err().to_string();
    assert!(
        message.ends_with("not authenticated: token has expired"),
        "{message}"
    );
    assert!(account_of(None).is_err());
}

#[test]
fn only_a_well_formed_service_account_username_is_one() {
    assert_eq!(
        service_account("system:serviceaccount:shop:orders"),
        Some(orders())
    );
    for bad in [
        "system:serviceaccount:shop",
        "system:serviceaccount::orders",
        "system:serviceaccount:shop:",
        "system:serviceaccount:Shop:orders",
        "system:serviceaccount:shop:orders:extra",
        "system:serviceaccounts:shop",
        "serviceaccount:shop:orders",
        "",
    ] {
        assert_eq!(service_account(bad), None, "{bad}");
    }
}

#[tokio::test]
async fn what_is_not_a_jwt_or_too_long_is_refused_without_a_review() {
    let api = FakeApi::answering(good());
    let reviewer = TokenReviewer::with_api(api.clone(), Limits::default());
    let long = format!("{}.b.c", "a".repeat(MAX_TOKEN_BYTES));
    for bad in [
        "",
        "jwt-abc",
        "a.b",
        "a.b.c.d",
        "a..c",
        "a.b.",
        "a.b.c=",
        "a.b.c\n",
        "a b.c.d",
        "a.b/c.d",
        long.as_str(),
    ] {
        let error = reviewer.review(bad).await.unwrap_err();
        assert!(
            matches!(error, ReviewError::Refused(Refusal::Malformed(_))),
            "{bad:?}: {error}"
        );
        assert!(error.is_refusal());
    }
    assert!(long.len() > MAX_TOKEN_BYTES);
    assert_eq!(api.calls(), 0, "nothing was sent to the API server");

    assert_eq!(reviewer.review(&jwt("abc")).await.unwrap(), orders());
    assert_eq!(api.calls(), 1);
    let real = "eyJhbGciOiJSUzI1NiIsImtpZCI6IjEifQ.eyJhdWQiOlsicmVtb3JhIl19.dGVzdC1zaWc_-w";
    assert!(check_shape(real).is_ok());
}

#[tokio::test(start_paused = true)]
async fn an_accepted_token_is_used_again_for_a_minute_without_a_review() {
    let api = FakeApi::answering(good());
    let reviewer = TokenReviewer::with_api(api.clone(), Limits::default());
    for _ in 0..3 {
        assert_eq!(reviewer.review(&jwt("abc")).await.unwrap(), orders());
    }
    assert_eq!(api.calls(), 1);
    tokio::time::advance(Duration::from_secs(59)).await;
    reviewer.review(&jwt("abc")).await.unwrap();
    assert_eq!(api.calls(), 1);
    tokio::time::advance(Duration::from_secs(1)).await;
    reviewer.review(&jwt("abc")).await.unwrap();
    assert_eq!(api.calls(), 2, "reviewed again after a minute");
}

#[tokio::test(start_paused = true)]
async fn a_refused_token_is_refused_again_for_ten_seconds_without_a_review() {
    let api = FakeApi::answering(status(false, "", &[]));
    let reviewer = TokenReviewer::with_api(api.clone(), Limits::default());
    for _ in 0..5 {
        let error = reviewer.review(&jwt("forged")).await.unwrap_err();
        assert!(error.is_refusal(), "{error}");
        assert!(error.to_string().contains("not authenticated"), "{error}");
    }
    assert_eq!(api.calls(), 1, "one review for all five");
    tokio::time::advance(Duration::from_secs(9)).await;
    reviewer.review(&jwt("forged")).await.unwrap_err();
    assert_eq!(api.calls(), 1);
    tokio::time::advance(Duration::from_secs(1)).await;
    reviewer.review(&jwt("forged")).await.unwrap_err();
    assert_eq!(api.calls(), 2, "reviewed again after ten seconds");
    reviewer.review(&jwt("other")).await.unwrap_err();
    assert_eq!(api.calls(), 3, "another token is reviewed");
}

#[tokio::test(start_paused = true)]
async fn a_review_that_takes_too_long_is_not_a_refusal() {
    let api = FakeApi::never();
    let reviewer = TokenReviewer::with_api(api.clone(), Limits::default());
    let error = reviewer.review(&jwt("abc")).await.unwrap_err();
    assert!(
        matches!(error, ReviewError::TimedOut(t) if t == Duration::from_secs(5)),
        "{error}"
    );
    assert!(!error.is_refusal(), "the proxy tries again");
    // Nothing was learnt: the next call asks again.
    let _ = reviewer.review(&jwt("abc")).await;
    assert_eq!(api.calls(), 2);
}

#[tokio::test(start_paused = true)]
async fn at_most_the_limit_of_reviews_are_in_flight_and_waiting_is_bounded() {
    let api = FakeApi::never();
    let limits = Limits {
        concurrent: 2,
        permit_wait: Duration::from_secs(1),
        timeout: Duration::from_secs(60),
        ..Limits::default()
    };
    let reviewer = Arc::new(TokenReviewer::with_api(api.clone(), limits));
    let spawn = |token: String| {
        let reviewer = reviewer.clone();
        tokio::spawn(async move { reviewer.review(&token).await })
    };
    let first = spawn(jwt("one"));
    let second = spawn(jwt("two"));
    while api.calls() < 2 {
        tokio::task::yield_now().await;
    }
    let third = reviewer.review(&jwt("three")).await.unwrap_err();
    assert!(matches!(third, ReviewError::Busy), "{third}");
    assert!(!third.is_refusal(), "the proxy tries again");
    assert_eq!(api.calls(), 2, "the third was never sent");
    for task in [first, second] {
        let error = task.await.unwrap().unwrap_err();
        assert!(matches!(error, ReviewError::TimedOut(_)), "{error}");
    }
    // The permits are back.
    let _ = reviewer.review(&jwt("four")).await;
    assert_eq!(api.calls(), 3);
}

#[tokio::test(start_paused = true)]
async fn a_cache_expires_and_is_bounded() {
    let cache = ReviewCache::new(Duration::from_secs(60));
    let key = cache_key("jwt-abc");
    let start = Instant::now();
    assert_eq!(cache.get(&key, start), None);
    cache.put(key, orders(), start);
    assert_eq!(
        cache.get(&key, start + Duration::from_secs(59)),
        Some(orders())
    );
    assert_eq!(
        cache.get(&key, start + Duration::from_secs(60)),
        None,
        "expired"
    );
    assert_eq!(cache.get(&cache_key("jwt-other"), start), None);

    let cache = ReviewCache::new(Duration::from_secs(60));
    for i in 0..CACHE_MAX {
        cache.put(cache_key(&format!("t{i}")), orders(), start);
    }
    assert_eq!(cache.len(), CACHE_MAX);
    // Full of live entries: it starts over rather than grow.
    cache.put(cache_key("one more"), orders(), start);
    assert_eq!(cache.len(), 1);
    // Full of expired ones: only they go.
    let cache = ReviewCache::new(Duration::from_secs(10));
    for i in 0..CACHE_MAX {
        cache.put(cache_key(&format!("u{i}")), orders(), start);
    }
    let later = start + Duration::from_secs(10);
    cache.put(cache_key("fresh"), orders(), later);
    assert_eq!(cache.len(), 1);
    assert_eq!(cache.get(&cache_key("fresh"), later), Some(orders()));
}
