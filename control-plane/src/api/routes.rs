//! Request -> response for each API path.

use bytes::Bytes;
use http::{header, Method, Request, Response, StatusCode};
use http_body_util::Full;
use serde::Serialize;

use super::views::{ConfigView, ProxyView};
use super::ApiState;

pub type Body = Full<Bytes>;

pub fn handle<B>(state: &ApiState, req: &Request<B>) -> Response<Body> {
    let path = req.uri().path();
    let known = matches!(
        path,
        "/live" | "/api/v1/proxies" | "/api/v1/config" | "/api/v1/trust-bundle"
    );
    if known && req.method() != Method::GET {
        return text(StatusCode::METHOD_NOT_ALLOWED, "only GET is allowed\n");
    }
    match path {
        "/live" => text(StatusCode::OK, "ok\n"),
        "/api/v1/proxies" => {
            let proxies: Vec<ProxyView> = state
                .registry
                .proxies()
                .iter()
                .map(ProxyView::from)
                .collect();
            json(&proxies)
        }
        "/api/v1/config" => {
            let snapshot = state.snapshots.borrow().clone();
            json(&ConfigView::from(&snapshot))
        }
        "/api/v1/trust-bundle" => {
            let mut response = Response::new(Full::new(state.trust_bundle.clone()));
            response.headers_mut().insert(
                header::CONTENT_TYPE,
                header::HeaderValue::from_static("application/x-pem-file"),
            );
            response
        }
        _ => text(StatusCode::NOT_FOUND, "not found\n"),
    }
}

fn text(status: StatusCode, body: &'static str) -> Response<Body> {
    let mut response = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

fn json<T: Serialize>(value: &T) -> Response<Body> {
    match serde_json::to_vec_pretty(value) {
        Ok(mut body) => {
            body.push(b'\n');
            let mut response = Response::new(Full::new(Bytes::from(body)));
            response.headers_mut().insert(
                header::CONTENT_TYPE,
                header::HeaderValue::from_static("application/json"),
            );
            response
        }
        Err(error) => {
            tracing::error!(%error, "cannot serialize API response");
            text(StatusCode::INTERNAL_SERVER_ERROR, "internal error\n")
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use tokio::sync::watch;

    use super::*;
    use crate::problem::Problem;
    use crate::xds::{publish_config, Registry, Snapshot};

    fn state() -> ApiState {
        let (tx, rx) = watch::channel(Snapshot::default());
        publish_config(
            &tx,
            Default::default(),
            vec![Problem::in_file("a.yaml", "broken")],
        );
        ApiState {
            registry: Registry::new(tx),
            snapshots: rx,
            trust_bundle: Bytes::from_static(b"-----BEGIN CERTIFICATE-----\n"),
        }
    }

    fn get(state: &ApiState, path: &str) -> (StatusCode, serde_json::Value) {
        let req = Request::get(path).body(()).unwrap();
        let response = handle(state, &req);
        let status = response.status();
        let body =
            futures::executor::block_on(http_body_util::BodyExt::collect(response.into_body()))
                .unwrap()
                .to_bytes();
        let value = serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null);
        (status, value)
    }

    #[test]
    fn config_lists_counts_and_errors() {
        let (status, body) = get(&state(), "/api/v1/config");
        assert_eq!(status, StatusCode::OK);
        assert_eq!(body["resources"]["Service"], 0);
        assert_eq!(body["resources"]["HTTPRoute"], 0);
        assert_eq!(body["errors"][0]["file"], "a.yaml");
        assert_eq!(body["errors"][0]["message"], "broken");
    }

    #[test]
    fn proxies_is_a_list() {
        let state = state();
        let _conn = Arc::clone(&state.registry).connect(crate::xds::ProxyIdentity::from_node(None));
        let (status, body) = get(&state, "/api/v1/proxies");
        assert_eq!(status, StatusCode::OK);
        assert_eq!(body.as_array().map(Vec::len), Some(1));
        assert_eq!(body[0]["namespace"], "default");
    }

    #[test]
    fn live_and_unknown_paths() {
        let state = state();
        assert_eq!(get(&state, "/live").0, StatusCode::OK);
        assert_eq!(get(&state, "/nope").0, StatusCode::NOT_FOUND);
        let post = Request::post("/api/v1/config").body(()).unwrap();
        assert_eq!(
            handle(&state, &post).status(),
            StatusCode::METHOD_NOT_ALLOWED
        );
    }
}
