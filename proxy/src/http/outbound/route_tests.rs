//! The route layer alone: which cluster a request reaches, under which
//! authority, and the answers when there is none.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use http::{Request, StatusCode};
use tower::Layer;

use super::fake_tests::{cluster, App};
use super::route::{Answer, RouteLayer};
use super::service::Serve;
use crate::http::DefaultAuthority;
use crate::snapshot::{
    self, PathMatch, RouteAction, RouteMatch, RoutePolicy, RouteTable, Target, VirtualHost,
    WeightedClusters,
};
use crate::upstream::RequestBody;

/// `orders` (and `orders:80`) with one route, `/api`, to `target`.
fn table(target: Target) -> RouteTable {
    let route = snapshot::Route {
        name: "orders-api".into(),
        matcher: RouteMatch {
            path: PathMatch::Prefix("/api".into()),
            method: None,
            headers: vec![],
        },
        action: RouteAction::Split(WeightedClusters {
            targets: vec![(1, target)],
            total: 1,
        }),
        policy: RoutePolicy::default(),
        hops: vec![None],
    };
    RouteTable {
        name: "outbound".into(),
        virtual_hosts: vec![Arc::new(VirtualHost {
            name: "orders".into(),
            routes: vec![route],
        })],
        exact: HashMap::from([(Box::from("orders"), 0)]),
        suffixes: vec![],
        any: None,
    }
}

fn to_orders() -> RouteTable {
    table(Target::Cluster(Arc::new(cluster(vec![]))))
}

async fn send(table: &RouteTable, app: &App, req: Request<RequestBody>) -> Answer {
    RouteLayer.layer(app).call((table, req)).await
}

fn get(uri: &str, host: Option<&str>) -> Request<RequestBody> {
    let mut req = Request::builder().uri(uri);
    if let Some(host) = host {
        req = req.header("host", host);
    }
    req.body(RequestBody::Empty).unwrap()
}

#[tokio::test]
async fn a_request_goes_to_the_cluster_of_its_authority() {
    let (routes, app) = (to_orders(), App::answering(200, Duration::ZERO));
    let (response, _) = send(&routes, &app, get("http://orders/api/1", None)).await;
    assert_eq!(response.status(), StatusCode::OK);
    let (response, _) = send(&routes, &app, get("/api/2", Some("orders:80"))).await;
    assert_eq!(response.status(), StatusCode::OK);
    let seen: Vec<_> = app
        .seen()
        .into_iter()
        .map(|s| (s.authority, s.cluster))
        .collect();
    assert_eq!(
        seen,
        [
            ("orders".to_owned(), "orders".to_owned()),
            ("orders:80".to_owned(), "orders".to_owned())
        ]
    );
}

#[tokio::test]
async fn a_transparent_connection_falls_back_to_the_service_it_dialled() {
    let (routes, app) = (to_orders(), App::answering(200, Duration::ZERO));
    let mut req = get("/api", Some("10.96.0.7"));
    req.extensions_mut()
        .insert(DefaultAuthority(Arc::from("orders")));
    let (response, _) = send(&routes, &app, req).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(app.seen()[0].authority, "orders");
}

#[tokio::test]
async fn no_service_no_route_and_no_cluster_each_have_their_answer() {
    let (routes, app) = (to_orders(), App::answering(200, Duration::ZERO));
    let cases = [
        (get("/api", None), StatusCode::BAD_REQUEST, "missing host"),
        (
            get("/api", Some("billing")),
            StatusCode::NOT_FOUND,
            "unknown service",
        ),
        (
            get("/other", Some("orders")),
            StatusCode::NOT_FOUND,
            "no route matched",
        ),
    ];
    for (req, status, reason) in cases {
        let (response, hop) = send(&routes, &app, req).await;
        assert_eq!(response.status(), status);
        assert_eq!(response.headers()["remora-error"], reason);
        assert!(hop.is_none());
    }
    let gone = table(Target::Missing("gone".into()));
    let (response, _) = send(&gone, &app, get("/api", Some("orders"))).await;
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(response.headers()["remora-error"], "cluster not found");
    assert!(app.seen().is_empty(), "nothing reached the layers below");
}
