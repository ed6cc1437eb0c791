use k8s_openapi::api::authentication::v1::UserInfo;

use super::*;

fn status(authenticated: bool, username: &str, audiences: &[&str]) -> TokenReviewStatus {
    TokenReviewStatus {
        authenticated: Some(authenticated),
        audiences: Some(audiences.iter().map(|a| (*a).to_owned()).collect()),
        user: Some(UserInfo {
            username: Some(username.to_owned()),
            ..Default::default()
        }),
        error: None,
    }
}

fn orders() -> ServiceAccount {
    ServiceAccount {
        namespace: "shop".into(),
        name: "orders".into(),
    }
}

#[test]
fn a_service_accounts_token_for_remora_grants_that_account() {
    let s = status(true, "system:serviceaccount:shop:orders", &["remora"]);
    assert_eq!(account_of(Some(&s)).unwrap(), orders());
    let s = status(
        true,
        "system:serviceaccount:shop:orders",
        &["other", "remora"],
    );
    assert_eq!(account_of(Some(&s)).unwrap(), orders());
}

#[test]
fn each_refusal_says_why() {
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
    ];
    for (s, expected) in cases {
        let error = account_of(Some(&s)).unwrap_err();
        assert!(error.is_refusal());
        let message = error.to_string();
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

#[tokio::test(start_paused = true)]
async fn a_positive_review_is_used_again_for_a_minute_only() {
    let cache = ReviewCache::default();
    let key = cache_key("jwt-abc");
    let start = Instant::now();
    assert_eq!(cache.get(&key, start), None);
    cache.put(key, orders(), start);
    assert_eq!(
        cache.get(&key, start + Duration::from_secs(59)),
        Some(orders())
    );
    assert_eq!(cache.get(&key, start + CACHE_TTL), None, "expired");
    assert_eq!(cache.get(&cache_key("jwt-other"), start), None);
}

#[tokio::test(start_paused = true)]
async fn the_cache_is_bounded() {
    let cache = ReviewCache::default();
    let start = Instant::now();
    for i in 0..CACHE_MAX {
        cache.put(cache_key(&format!("t{i}")), orders(), start);
    }
    assert_eq!(cache.len(), CACHE_MAX);
    // Full of live entries: it starts over rather than grow.
    cache.put(cache_key("one more"), orders(), start);
    assert_eq!(cache.len(), 1);
    // Full of expired ones: only they go.
    let cache = ReviewCache::default();
    for i in 0..CACHE_MAX {
        cache.put(cache_key(&format!("u{i}")), orders(), start);
    }
    let later = start + CACHE_TTL;
    cache.put(cache_key("fresh"), orders(), later);
    assert_eq!(cache.len(), 1);
    assert_eq!(cache.get(&cache_key("fresh"), later), Some(orders()));
}
