//! Request -> response for each API path.

use bytes::Bytes;
use http::{header, Method, Request, Response, StatusCode};
use http_body_util::Full;
use serde::Serialize;

use super::views::{ConfigView, ProxyView, RefusalsView};
use super::writes::{self, Verb};
use super::ApiState;
use crate::Chain;

pub type Body = Full<Bytes>;

/// Every request: writes read their body, everything else is answered from
/// the headers alone.
pub async fn respond<B>(state: &ApiState, req: Request<B>) -> Response<Body>
where
    B: hyper::body::Body,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let verb = match req.uri().path() {
        "/api/v1/apply" => Verb::Apply,
        "/api/v1/delete" => Verb::Delete,
        _ => return handle(state, &req),
    };
    if req.method() != Method::POST {
        return text(StatusCode::METHOD_NOT_ALLOWED, "only POST is allowed\n");
    }
    if let Err(refused) = state.access.check_write(req.headers()) {
        return refusal(refused);
    }
    let (parts, body) = req.into_parts();
    let query = match writes::Query::parse(parts.uri.query().unwrap_or_default()) {
        Ok(query) => query,
        Err(message) => return error(StatusCode::BAD_REQUEST, &message),
    };
    let body = match super::body::read(&parts.headers, body).await {
        Ok(body) => body,
        Err(e) => return error(e.status(), &e.to_string()),
    };
    let change = match writes::change(verb, &query, &parts.headers, &body) {
        Ok(change) => change,
        Err(bad) if bad.problems.is_empty() => return error(bad.status, &bad.message),
        Err(bad) => {
            let answer = writes::Answer {
                dry_run: query.dry_run,
                problems: bad.problems,
                ..Default::default()
            };
            let mut response = json(&writes::AnswerView::from(&answer));
            *response.status_mut() = StatusCode::UNPROCESSABLE_ENTITY;
            return response;
        }
    };
    match state.writes.send(change, query.dry_run).await {
        Ok(answer) => {
            let mut response = json(&writes::AnswerView::from(&answer));
            if !answer.problems.is_empty() {
                *response.status_mut() = StatusCode::UNPROCESSABLE_ENTITY;
            }
            response
        }
        Err(e @ (writes::WriteError::Stopped | writes::WriteError::Busy)) => {
            error(StatusCode::SERVICE_UNAVAILABLE, &e.to_string())
        }
        // A source that takes no writes (Kubernetes): the client's mistake.
        Err(writes::WriteError::Source(e @ crate::Error::ReadOnly(_))) => {
            error(StatusCode::CONFLICT, &e.to_string())
        }
        Err(e) => {
            tracing::error!(error = %Chain(&e), "write failed");
            error(StatusCode::INTERNAL_SERVER_ERROR, &Chain(&e).to_string())
        }
    }
}

fn refusal(refused: super::auth::Refused) -> Response<Body> {
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
    response
}

/// `{"error": message}` with `status`.
fn error(status: StatusCode, message: &str) -> Response<Body> {
    let mut response = json(&serde_json::json!({ "error": message }));
    *response.status_mut() = status;
    response
}

pub fn handle<B>(state: &ApiState, req: &Request<B>) -> Response<Body> {
    let path = req.uri().path();
    if let Err(refused) = state.access.check(path, req.headers()) {
        return refusal(refused);
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
            | "/api/v1/resources"
            | "/api/v1/endpoints"
            | "/api/v1/status"
    );
    if known && req.method() != Method::GET {
        return text(StatusCode::METHOD_NOT_ALLOWED, "only GET is allowed\n");
    }
    let query = req.uri().query().unwrap_or_default();
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
        "/api/v1/resources" => match super::resources::Filter::parse(query, true) {
            Ok(filter) => {
                let snapshot = state.snapshots.borrow().clone();
                json(&super::resources::resources(&snapshot, &filter))
            }
            Err(message) => error(StatusCode::BAD_REQUEST, &message),
        },
        "/api/v1/endpoints" => match super::resources::Filter::parse(query, false) {
            Ok(filter) => {
                let snapshot = state.snapshots.borrow().clone();
                let nodes = state.traffic.nodes();
                let now = crate::traffic::store::now_ms();
                json(&super::resources::endpoints(
                    &snapshot, &nodes, now, &filter,
                ))
            }
            Err(message) => error(StatusCode::BAD_REQUEST, &message),
        },
        "/api/v1/status" => {
            // The proxies first: a snapshot read after them is at least as new
            // as the one they were measured against.
            let proxies = state.registry.proxies();
            let snapshot = state.snapshots.borrow().clone();
            json(&super::status::status(
                &snapshot,
                &proxies,
                &state.certificates,
                std::time::SystemTime::now(),
            ))
        }
        "/api/v1/stat" => match stat_query(query) {
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
            Err(message) => error(StatusCode::BAD_REQUEST, &message),
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
        state_with(
            crate::identity::TokenStore::new(std::path::Path::new("/nonexistent")),
            super::super::writes::channel().0,
        )
    }

    fn state_with(
        tokens: crate::identity::TokenStore,
        writes: super::super::writes::Writes,
    ) -> ApiState {
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
            access: super::super::auth::Access::new(tokens, super::super::auth::Reads::Open),
            writes,
            certificates: Arc::default(),
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

    /// A state whose writes are answered by `answer`, and an admin and a
    /// workload token for it.
    fn writable(
        answer: super::super::writes::Answer,
    ) -> (ApiState, String, String, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let tokens = crate::identity::TokenStore::new(dir.path());
        let admin = tokens
            .create_admin(std::time::Duration::from_secs(60))
            .unwrap();
        let workload = tokens
            .create(
                crate::identity::Grant {
                    namespace: "default".into(),
                    service_account: "web".into(),
                },
                std::time::Duration::from_secs(60),
            )
            .unwrap();
        let (writes, mut requests) = super::super::writes::channel();
        tokio::spawn(async move {
            while let Some(request) = requests.recv().await {
                let _ = request.reply.send(Ok(answer.clone()));
            }
        });
        (state_with(tokens, writes), admin, workload, dir)
    }

    async fn post(
        state: &ApiState,
        path: &str,
        token: Option<&str>,
        body: Vec<u8>,
    ) -> (StatusCode, serde_json::Value) {
        let mut req = Request::post(path);
        if let Some(token) = token {
            req = req.header(header::AUTHORIZATION, format!("Bearer {token}"));
        }
        let response = respond(state, req.body(Full::new(Bytes::from(body))).unwrap()).await;
        let status = response.status();
        let body = http_body_util::BodyExt::collect(response.into_body())
            .await
            .unwrap()
            .to_bytes();
        let value = serde_json::from_slice(&body)
            .unwrap_or_else(|_| serde_json::Value::String(String::from_utf8_lossy(&body).into()));
        (status, value)
    }

    const SERVICE: &[u8] =
        b"apiVersion: v1\nkind: Service\nmetadata: {name: orders}\nspec: {ports: [{port: 80}]}\n";

    #[tokio::test]
    async fn a_write_needs_an_admin_token_even_on_loopback() {
        let (state, admin, workload, _dir) = writable(Default::default());
        let (status, body) = post(&state, "/api/v1/apply", None, SERVICE.to_vec()).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
        assert!(
            body.to_string().contains("remora token create --admin"),
            "{body}"
        );
        let (status, _) = post(&state, "/api/v1/delete", Some(&workload), SERVICE.to_vec()).await;
        assert_eq!(status, StatusCode::FORBIDDEN);
        let (status, body) = post(&state, "/api/v1/apply", Some(&admin), SERVICE.to_vec()).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        // Reads stay open on loopback.
        assert_eq!(get(&state, "/api/v1/status").0, StatusCode::OK);
    }

    #[tokio::test]
    async fn a_write_body_over_the_limit_is_413() {
        let (state, admin, _, _dir) = writable(Default::default());
        let big = vec![b'#'; super::super::body::MAX_BODY_BYTES + 1];
        let (status, _) = post(&state, "/api/v1/apply", Some(&admin), big).await;
        assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    }

    #[tokio::test]
    async fn problems_are_422_with_file_resource_and_field() {
        let answer = super::super::writes::Answer {
            generation: 4,
            problems: vec![Problem {
                kind: Some("Service".into()),
                namespace: Some("default".into()),
                name: Some("orders".into()),
                field: Some("spec.ports[0].port".into()),
                document: Some(1),
                ..Problem::in_file("orders.yaml", "must be 1 to 65535")
            }],
            ..Default::default()
        };
        let (state, admin, _, _dir) = writable(answer);
        let (status, body) = post(
            &state,
            "/api/v1/apply?file=orders.yaml",
            Some(&admin),
            SERVICE.to_vec(),
        )
        .await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
        assert_eq!(body["problems"][0]["file"], "orders.yaml");
        assert_eq!(body["problems"][0]["field"], "spec.ports[0].port");
        // Documents that cannot be read never reach the source.
        let (status, body) = post(
            &state,
            "/api/v1/apply?file=bad.yaml",
            Some(&admin),
            b"kind: Service\nmetadata: {name: [\n".to_vec(),
        )
        .await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
        assert_eq!(body["problems"][0]["file"], "bad.yaml");
    }

    #[tokio::test]
    async fn writes_are_post_only_and_reads_get_only() {
        let (state, admin, _, _dir) = writable(Default::default());
        let req = Request::get("/api/v1/apply")
            .header(header::AUTHORIZATION, format!("Bearer {admin}"))
            .body(Full::new(Bytes::new()))
            .unwrap();
        assert_eq!(
            respond(&state, req).await.status(),
            StatusCode::METHOD_NOT_ALLOWED
        );
        let (status, _) = post(&state, "/api/v1/status", Some(&admin), Vec::new()).await;
        assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
    }
}
