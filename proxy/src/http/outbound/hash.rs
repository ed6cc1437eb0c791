//! The request's key for consistent hashing (the route's `hash_policy`): a
//! header, or a cookie. Read once per request, so every attempt of it lands on
//! the same point of the ring; a missing cookie with a `ttl` is made up here
//! and set on the answer, so the client's next requests carry it.
//!
//! Not here: the ring itself (`crate::balance::ring`) and the pick (`super::balance`).

use std::future::Future;

use futures::future::FutureExt;
use http::{header, HeaderMap, HeaderValue, Response};

use super::service::{Routed, Serve};
use crate::balance::hash_key as hash_key_bytes;
use crate::http::ResponseBody;
use crate::snapshot::HashPolicy;

pub struct HashLayer;

impl<S> tower::Layer<S> for HashLayer {
    type Service = Hash<S>;

    fn layer(&self, inner: S) -> Hash<S> {
        Hash { inner }
    }
}

pub struct Hash<S> {
    inner: S,
}

impl<'a, S> Serve<Routed<'a>> for Hash<S>
where
    S: for<'r> Serve<Routed<'r>, Response = Response<ResponseBody>>,
{
    type Response = Response<ResponseBody>;

    fn call(&self, mut routed: Routed<'a>) -> impl Future<Output = Response<ResponseBody>> + Send {
        let (hash, new_cookie) = hash_key(routed.policy.hash.as_ref(), routed.req.headers());
        routed.hash = hash;
        self.inner.call(routed).map(move |mut response| {
            if let Some(cookie) = new_cookie {
                response.headers_mut().append(header::SET_COOKIE, cookie);
            }
            response
        })
    }
}

/// The request's key for consistent hashing, and the cookie to set when the key
/// is a cookie the request did not have yet.
pub(crate) fn hash_key(
    policy: Option<&HashPolicy>,
    headers: &HeaderMap,
) -> (Option<u64>, Option<HeaderValue>) {
    match policy {
        None => (None, None),
        Some(HashPolicy::Header(name)) => (
            headers.get(name).map(|v| hash_key_bytes(v.as_bytes())),
            None,
        ),
        Some(HashPolicy::Cookie { name, ttl, path }) => {
            let found = headers
                .get_all(header::COOKIE)
                .iter()
                .filter_map(|v| v.to_str().ok())
                .flat_map(|v| v.split(';'))
                .filter_map(|pair| pair.trim().split_once('='))
                .find(|(n, _)| n == name)
                .map(|(_, value)| value.to_owned());
            match (found, ttl) {
                (Some(value), _) => (Some(hash_key_bytes(value.as_bytes())), None),
                (None, Some(ttl)) => {
                    let value = format!("{:016x}", rand::random::<u64>());
                    let cookie = format!(
                        "{name}={value}; Max-Age={}; Path={path}; HttpOnly",
                        ttl.as_secs()
                    );
                    (
                        Some(hash_key_bytes(value.as_bytes())),
                        HeaderValue::from_str(&cookie).ok(),
                    )
                }
                (None, None) => (None, None),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn a_header_key_is_read_and_a_missing_cookie_is_made_up() {
        let mut headers = HeaderMap::new();
        headers.insert("x-user", HeaderValue::from_static("ada"));
        let by_header = HashPolicy::Header(http::HeaderName::from_static("x-user"));
        let (key, cookie) = hash_key(Some(&by_header), &headers);
        assert_eq!(key, Some(hash_key_bytes(b"ada")));
        assert!(cookie.is_none());

        let by_cookie = HashPolicy::Cookie {
            name: "session".into(),
            ttl: Some(Duration::from_secs(60)),
            path: "/".into(),
        };
        let (key, cookie) = hash_key(Some(&by_cookie), &headers);
        let cookie = cookie.expect("a new cookie");
        let value = cookie.to_str().unwrap();
        assert!(value.starts_with("session=") && value.ends_with("; Max-Age=60; Path=/; HttpOnly"));
        let made = &value["session=".len()..value.find(';').unwrap()];
        assert_eq!(key, Some(hash_key_bytes(made.as_bytes())));

        headers.insert(header::COOKIE, HeaderValue::from_static("a=1; session=abc"));
        let (key, cookie) = hash_key(Some(&by_cookie), &headers);
        assert_eq!(key, Some(hash_key_bytes(b"abc")));
        assert!(cookie.is_none(), "the client has one already");
    }

    #[tokio::test]
    async fn the_key_goes_down_and_a_new_cookie_comes_back() {
        use super::super::fake_tests::{cluster, orders, request, App};
        use crate::snapshot::RoutePolicy;
        use tower::Layer;

        let app = App::answering(200, Duration::ZERO);
        let policy = RoutePolicy {
            hash: Some(HashPolicy::Cookie {
                name: "session".into(),
                ttl: Some(Duration::from_secs(60)),
                path: "/".into(),
            }),
            ..Default::default()
        };
        let cluster = cluster(vec![]);
        let hash = HashLayer.layer(&app);
        let response = hash
            .call(Routed::new(request(), orders(), &policy, &cluster))
            .await;
        let cookie = response.headers()[header::SET_COOKIE].to_str().unwrap();
        let made = &cookie["session=".len()..cookie.find(';').unwrap()];
        assert_eq!(app.seen()[0].hash, Some(hash_key_bytes(made.as_bytes())));
    }
}
