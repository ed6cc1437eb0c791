//! Request -> response for each API path.

use bytes::Bytes;
use http::{header, Method, Request, Response, StatusCode};
use http_body_util::Full;
use serde::Serialize;

use super::views::{ConfigView, ProxyView, RefusalsView};
use super::ApiState;

pub type Body = Full<Bytes>;

pub fn handle<B>(state: &ApiState, req: &Request<B>) -> Response<Body> {
    let path = req.uri().path();
    if let Err(refused) = state.access.check(path, req.headers()) {
        let mut response = Response::new(Full::new(Bytes::from(refused.message + "\n")));
        *response.status_mut() = refused.status;
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            header::HeaderValue::from_static("text/plain; charset=utf-8"),
        );
        if refused.status == StatusCode::UNAUTHORIZED {
            headers.insert(
                header::WWW_AUTHENTICATE,
                header::HeaderValue::from_static("Bearer realm=\"remora\""),
            );
        }
        return response;
    }
    let known = matches!(
        path,
        "/live"
            | "/"
            | "/dashboard"
            | "/api/v1/proxies"
            | "/api/v1/config"
            | "/api/v1/trust-bundle"
            | "/api/v1/stat"
            | "/api/v1/refusals"
    );
    if known && req.method() != Method::GET {
        return text(StatusCode::METHOD_NOT_ALLOWED, "only GET is allowed\n");
    }
    match path {
        "/live" => text(StatusCode::OK, "ok\n"),
        "/" | "/dashboard" => {
            let mut response = Response::new(Full::new(Bytes::from_static(DASHBOARD.as_bytes())));
            response.headers_mut().insert(
                header::CONTENT_TYPE,
                header::HeaderValue::from_static("text/html; charset=utf-8"),
            );
            response
        }
        "/api/v1/proxies" => {
            let proxies: Vec<ProxyView> = state
                .registry
                .proxies()
                .iter()
                .map(ProxyView::from)
                .collect();
            json(&proxies)
        }
        "/api/v1/refusals" => json(&RefusalsView::from(&state.registry.refusals)),
        "/api/v1/config" => {
            let snapshot = state.snapshots.borrow().clone();
            json(&ConfigView::from(&snapshot))
        }
        "/api/v1/stat" => match stat_query(req.uri().query().unwrap_or_default()) {
            Ok((filter, window)) => {
                let nodes = state.traffic.nodes();
                let store = state.snapshots.borrow().store.clone();
                let defined = store.services().map(|s| crate::traffic::ServiceRef {
                    service: s.key.name.clone(),
                    namespace: s.key.namespace.clone(),
                });
                if let Some(message) = crate::traffic::unknown_service(&filter, defined, &nodes) {
                    let mut response = json(&serde_json::json!({ "error": message }));
                    *response.status_mut() = StatusCode::NOT_FOUND;
                    return response;
                }
                let now = crate::traffic::store::now_ms();
                let window_ms = window.as_millis() as u64;
                json(&crate::traffic::edges(&nodes, now, window_ms, &filter))
            }
            Err(message) => {
                let mut response = json(&serde_json::json!({ "error": message }));
                *response.status_mut() = StatusCode::BAD_REQUEST;
                response
            }
        },
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

/// The dashboard: one self-contained page (inline CSS and script, no CDN) that
/// polls `/api/v1/stat` and `/api/v1/proxies`.
const DASHBOARD: &str = include_str!("dashboard.html");

/// The default window of `/api/v1/stat`, and the longest.
pub const DEFAULT_STAT_WINDOW: std::time::Duration = std::time::Duration::from_secs(30);
const MAX_STAT_WINDOW_MS: u64 = crate::traffic::store::KEEP_MS;

/// `namespace=..&service=..&window=10s`.
fn stat_query(query: &str) -> Result<(crate::traffic::Filter, std::time::Duration), String> {
    let mut filter = crate::traffic::Filter::default();
    let mut window = DEFAULT_STAT_WINDOW;
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        match k {
            "namespace" if !v.is_empty() => filter.namespace = Some(v.to_owned()),
            "service" if !v.is_empty() => filter.service = Some(v.to_owned()),
            "window" => {
                window = crate::duration::parse_duration(v)?;
                if window.is_zero() || window.as_millis() as u64 > MAX_STAT_WINDOW_MS {
                    return Err(format!(
                        "window `{v}`: give 1s to {}m",
                        MAX_STAT_WINDOW_MS / 60_000
                    ));
                }
            }
            "namespace" | "service" => {}
            other => {
                return Err(format!(
                    "unknown parameter `{other}` (namespace, service, window)"
                ))
            }
        }
    }
    Ok((filter, window))
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
            traffic: Arc::default(),
            access: super::super::auth::Access::Open,
        }
    }

    #[test]
    fn stat_takes_a_filter_and_a_window() {
        let (status, body) = get(&state(), "/api/v1/stat?namespace=shop&window=10s");
        assert_eq!(status, StatusCode::OK);
        assert_eq!(body["window_seconds"], 10.0);
        assert_eq!(body["edges"].as_array().map(Vec::len), Some(0));
        let (status, body) = get(&state(), "/api/v1/stat?window=forever");
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert!(
            body["error"].as_str().unwrap().contains("forever"),
            "{body}"
        );
        let (status, _) = get(&state(), "/api/v1/stat?colour=blue");
        assert_eq!(status, StatusCode::BAD_REQUEST);
        let (status, body) = get(&state(), "/api/v1/stat?service=nosuch");
        assert_eq!(status, StatusCode::NOT_FOUND);
        assert!(
            body["error"]
                .as_str()
                .unwrap()
                .contains("unknown service `nosuch`"),
            "{body}"
        );
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
