//! Policies as translated: inbound listeners (the TLS mode as filter chains,
//! authorization as RBAC filters that encode the same way every time), and the
//! timeouts, retries and budgets of routes and clusters.

use prost::Message;
use remora_proto::type_url;
use remora_proto::xds::envoy::config::listener::v3::{filter, Listener};
use remora_proto::xds::envoy::config::rbac::v3::{permission, principal, rbac::Action};
use remora_proto::xds::envoy::extensions::filters::http::rbac::v3::Rbac as RbacFilter;
use remora_proto::xds::envoy::extensions::filters::network::http_connection_manager::v3::{
    http_filter, HttpConnectionManager,
};

use super::translate;
use crate::source::{parse, Loaded};
use crate::store::Store;
use crate::validate::validate_loaded;

const SERVICES: &str = "
apiVersion: v1
kind: Service
metadata: {name: orders, namespace: shop}
spec: {ports: [{port: 80}]}
---
apiVersion: v1
kind: Service
metadata: {name: web, namespace: shop}
spec: {ports: [{port: 80}]}
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: orders-admin, namespace: shop}
spec:
  parentRefs: [{kind: Service, name: orders}]
  rules: [{matches: [{path: {value: /admin}, method: POST}], backendRefs: [{name: orders}]}]
";

fn store(policies: &str) -> Store {
    let mut loaded = Loaded::default();
    for (file, text) in [("a.yaml", SERVICES), ("b.yaml", policies)] {
        loaded.documents.extend(parse(file, text).documents);
    }
    let outcome = validate_loaded(&loaded);
    assert!(outcome.problems.is_empty(), "{:?}", outcome.problems);
    outcome.store
}

fn inbound(store: &Store, service: &str) -> Listener {
    let r = translate(store, &[], "shop", "example.org");
    let any = &r.listeners[&format!("inbound|{service}.shop.svc.cluster.local")];
    assert_eq!(any.type_url, type_url::LISTENER);
    Listener::decode(any.value.as_slice()).unwrap()
}

fn rbac_filters(l: &Listener, chain: usize) -> Vec<RbacFilter> {
    let Some(filter::ConfigType::TypedConfig(any)) = &l.filter_chains[chain].filters[0].config_type
    else {
        panic!("no HCM")
    };
    let hcm = HttpConnectionManager::decode(any.value.as_slice()).unwrap();
    let last = hcm.http_filters.last().unwrap();
    assert!(
        matches!(&last.config_type, Some(http_filter::ConfigType::TypedConfig(a)) if a.type_url == type_url::ROUTER)
    );
    hcm.http_filters[..hcm.http_filters.len() - 1]
        .iter()
        .map(|f| match &f.config_type {
            Some(http_filter::ConfigType::TypedConfig(a)) => {
                assert_eq!(a.type_url, type_url::RBAC);
                RbacFilter::decode(a.value.as_slice()).unwrap()
            }
            _ => panic!("no typed config"),
        })
        .collect()
}

#[test]
fn strict_by_default_permissive_by_policy() {
    let s = store(
        "
apiVersion: policy.remora.dev/v1alpha1
kind: MeshTLS
metadata: {name: web, namespace: shop}
spec: {targetRef: {kind: Service, name: web}, mode: PERMISSIVE}
",
    );
    let orders = inbound(&s, "orders");
    let protocols: Vec<_> = orders
        .filter_chains
        .iter()
        .map(|c| {
            c.filter_chain_match
                .as_ref()
                .unwrap()
                .transport_protocol
                .as_str()
        })
        .collect();
    assert_eq!(protocols, ["tls"]);
    assert!(orders.filter_chains[0].transport_socket.is_some());
    let web = inbound(&s, "web");
    let protocols: Vec<_> = web
        .filter_chains
        .iter()
        .map(|c| {
            c.filter_chain_match
                .as_ref()
                .unwrap()
                .transport_protocol
                .as_str()
        })
        .collect();
    assert_eq!(protocols, ["tls", "raw_buffer"]);
    assert!(web.filter_chains[1].transport_socket.is_none());
    assert!(
        rbac_filters(&web, 0).is_empty(),
        "no policy, no RBAC filter"
    );
}

#[test]
fn policies_become_deny_then_allow_filters() {
    let s = store(
        "
apiVersion: policy.remora.dev/v1alpha1
kind: AuthorizationPolicy
metadata: {name: readers, namespace: shop}
spec:
  targetRef: {kind: Service, name: orders}
  action: ALLOW
  rules: [{from: {namespaces: [shop]}, to: {methods: [GET]}}]
---
apiVersion: policy.remora.dev/v1alpha1
kind: AuthorizationPolicy
metadata: {name: no-ops, namespace: shop}
spec:
  targetRef: {kind: Service, name: orders}
  action: DENY
  rules: [{from: {identities: ['spiffe://example.org/ns/ops/*']}}]
",
    );
    let filters = rbac_filters(&inbound(&s, "orders"), 0);
    let actions: Vec<_> = filters
        .iter()
        .map(|f| f.rules.as_ref().unwrap().action)
        .collect();
    assert_eq!(actions, [Action::Deny as i32, Action::Allow as i32]);
    let allow = &filters[1].rules.as_ref().unwrap().policies["shop/readers/rules[0]"];
    let Some(principal::Identifier::Authenticated(a)) = &allow.principals[0].identifier else {
        panic!("{allow:?}")
    };
    assert_eq!(
        format!("{:?}", a.principal_name.as_ref().unwrap().match_pattern),
        "Some(Prefix(\"spiffe://example.org/ns/shop/sa/\"))",
        "a namespace is every service account in it, in the mesh's trust domain"
    );
    assert!(
        rbac_filters(&inbound(&s, "web"), 0).is_empty(),
        "web has no policy"
    );
}

#[test]
fn an_allow_policy_on_a_route_leaves_other_requests_alone() {
    let s = store(
        "
apiVersion: policy.remora.dev/v1alpha1
kind: AuthorizationPolicy
metadata: {name: admins, namespace: shop}
spec:
  targetRef: {kind: HTTPRoute, name: orders-admin}
  action: ALLOW
  rules: [{from: {namespaces: [ops]}}]
",
    );
    let filters = rbac_filters(&inbound(&s, "orders"), 0);
    assert_eq!(filters.len(), 1);
    let policies = &filters[0].rules.as_ref().unwrap().policies;
    let untargeted = &policies[super::authorization::UNTARGETED];
    assert!(matches!(
        untargeted.permissions[0].rule,
        Some(permission::Rule::NotRule(_))
    ));
    let admins = &policies["shop/admins/rules[0]"];
    // (route matches) and (rule's requests): `/admin` exact or `/admin/...`, POST.
    let Some(permission::Rule::AndRules(and)) = &admins.permissions[0].rule else {
        panic!("{admins:?}")
    };
    let text = format!("{and:?}");
    assert!(
        text.contains("Exact(\"/admin\")")
            && text.contains("Prefix(\"/admin/\")")
            && text.contains("POST"),
        "{text}"
    );
}

#[test]
fn equal_policies_encode_to_equal_bytes() {
    let policies = "
apiVersion: policy.remora.dev/v1alpha1
kind: AuthorizationPolicy
metadata: {name: many, namespace: shop}
spec:
  targetRef: {kind: Service, name: orders}
  action: ALLOW
  rules: [{from: {namespaces: [a]}}, {from: {namespaces: [b]}}, {from: {namespaces: [c]}}, {from: {namespaces: [d]}}]
";
    let a = translate(&store(policies), &[], "shop", "cluster.local");
    for _ in 0..10 {
        assert_eq!(translate(&store(policies), &[], "shop", "cluster.local"), a);
    }
}

mod resilience {
    use remora_proto::xds::envoy::config::cluster::v3::Cluster;
    use remora_proto::xds::envoy::config::route::v3::{route::Action, RouteConfiguration};

    use super::*;

    fn routes(store: &Store) -> RouteConfiguration {
        let r = translate(store, &[], "shop", "cluster.local");
        RouteConfiguration::decode(r.routes["outbound"].value.as_slice()).unwrap()
    }

    fn action(
        rc: &RouteConfiguration,
        vhost: &str,
        route: usize,
    ) -> remora_proto::xds::envoy::config::route::v3::RouteAction {
        let vh = rc.virtual_hosts.iter().find(|v| v.name == vhost).unwrap();
        match &vh.routes[route].action {
            Some(Action::Route(a)) => a.clone(),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn rules_then_route_policies_then_service_policies() {
        let s = store(
            "
apiVersion: policy.remora.dev/v1alpha1
kind: TrafficPolicy
metadata: {name: orders, namespace: shop}
spec:
  targetRef: {kind: Service, name: orders}
  timeouts: {request: 5s, perTry: 1s, connect: 250ms}
  retry:
    on: [5xx]
    grpcCodes: [UNAVAILABLE]
    attempts: 3
    budget: {percent: 30, minRetriesPerSecond: 5}
  outlierDetection: {consecutiveFailures: 4, baseEjectionTime: 2s, maxEjectionPercent: 50}
  connectionLimits: {maxRequests: 100, maxConnections: 20}
---
apiVersion: policy.remora.dev/v1alpha1
kind: TrafficPolicy
metadata: {name: web, namespace: shop}
spec:
  targetRef: {kind: Service, name: web}
  timeouts: {request: 7s}
",
        );
        let rc = routes(&s);
        // orders has the orders-admin HTTPRoute (no timeouts or retry of its own).
        let a = action(&rc, "shop/orders:80", 0);
        assert_eq!(a.timeout.unwrap().seconds, 5);
        let retry = a.retry_policy.unwrap();
        assert_eq!(retry.retry_on, "5xx,unavailable");
        assert_eq!(retry.num_retries.unwrap().value, 3);
        assert_eq!(retry.per_try_timeout.unwrap().seconds, 1);
        assert!(a
            .max_stream_duration
            .unwrap()
            .grpc_timeout_header_max
            .is_some());
        // web has no route: its default route takes its policy's timeout.
        let a = action(&rc, "shop/web:80", 0);
        assert_eq!(a.timeout.unwrap().seconds, 7);
        assert!(a.retry_policy.is_none());

        let r = translate(&s, &[], "shop", "cluster.local");
        let c = Cluster::decode(
            r.clusters["outbound|80||orders.shop.svc.cluster.local"]
                .value
                .as_slice(),
        )
        .unwrap();
        assert_eq!(c.connect_timeout.unwrap().nanos, 250_000_000);
        let budget = c.circuit_breakers.as_ref().unwrap().thresholds[0]
            .retry_budget
            .unwrap();
        assert_eq!(budget.budget_percent.unwrap().value, 30.0);
        assert_eq!(budget.min_retry_concurrency.unwrap().value, 5);
        assert_eq!(budget.budget_interval.unwrap().seconds, 10);
        let t = &c.circuit_breakers.as_ref().unwrap().thresholds[0];
        assert_eq!(t.max_requests.unwrap().value, 100);
        assert_eq!(t.max_connections.unwrap().value, 20);
        let o = c.outlier_detection.unwrap();
        assert_eq!(o.consecutive_5xx.unwrap().value, 4);
        assert_eq!(o.base_ejection_time.unwrap().seconds, 2);
        assert_eq!(o.max_ejection_percent.unwrap().value, 50);
    }

    #[test]
    fn a_rule_of_its_own_wins() {
        let s = store(
            "
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: web, namespace: shop}
spec:
  parentRefs: [{kind: Service, name: web}]
  rules:
  - backendRefs: [{name: web}]
    timeouts: {request: 2s, backendRequest: 500ms}
    retry: {codes: [503, 504], attempts: 1, backoff: 50ms}
---
apiVersion: policy.remora.dev/v1alpha1
kind: TrafficPolicy
metadata: {name: web, namespace: shop}
spec:
  targetRef: {kind: Service, name: web}
  timeouts: {request: 9s}
  retry: {on: [5xx], attempts: 5}
",
        );
        let a = action(&routes(&s), "shop/web:80", 0);
        assert_eq!(a.timeout.unwrap().seconds, 2);
        let retry = a.retry_policy.unwrap();
        assert_eq!(
            retry.retry_on,
            "connect-failure,refused-stream,reset,retriable-status-codes"
        );
        assert_eq!(retry.retriable_status_codes, [503, 504]);
        assert_eq!(retry.num_retries.unwrap().value, 1);
        assert_eq!(retry.per_try_timeout.unwrap().nanos, 500_000_000);
        let backoff = retry.retry_back_off.unwrap();
        assert_eq!(backoff.base_interval.unwrap().nanos, 50_000_000);
        assert_eq!(backoff.max_interval.unwrap().nanos, 500_000_000);
    }
}

mod filters {
    use remora_proto::xds::envoy::config::route::v3::RouteConfiguration;
    use remora_proto::xds::envoy::extensions::filters::http::fault::v3::HttpFault;
    use remora_proto::xds::envoy::extensions::filters::http::local_ratelimit::v3::LocalRateLimit;

    use super::*;

    const POLICY: &str = "
apiVersion: policy.remora.dev/v1alpha1
kind: TrafficPolicy
metadata: {name: orders, namespace: shop}
spec:
  targetRef: {kind: Service, name: orders}
  faults:
    abort: {status: 503, percent: 12.5}
    delay: {duration: 100ms, percent: 50}
    headers: [{name: x-chaos, value: 'on'}]
  rateLimit:
    inbound: {requestsPerSecond: 100, burst: 20}
    outbound: {requestsPerSecond: 10}
";

    fn hcm_filters(any: &remora_proto::xds::google::protobuf::Any) -> Vec<(String, Vec<u8>)> {
        let l = Listener::decode(any.value.as_slice()).unwrap();
        let Some(filter::ConfigType::TypedConfig(hcm)) = &l.filter_chains[0].filters[0].config_type
        else {
            panic!("no HCM")
        };
        HttpConnectionManager::decode(hcm.value.as_slice())
            .unwrap()
            .http_filters
            .into_iter()
            .map(|f| match f.config_type {
                Some(http_filter::ConfigType::TypedConfig(a)) => (a.type_url, a.value),
                _ => panic!("untyped filter"),
            })
            .collect()
    }

    #[test]
    fn faults_and_rate_limits_become_envoy_filters() {
        let s = store(POLICY);
        let r = translate(&s, &[], "shop", "cluster.local");
        let outbound = hcm_filters(&r.listeners["outbound"]);
        let types: Vec<_> = outbound
            .iter()
            .map(|(t, _)| t.rsplit('.').next().unwrap().to_owned())
            .collect();
        assert_eq!(types, ["HTTPFault", "LocalRateLimit", "Router"]);
        let fault = HttpFault::decode(outbound[0].1.as_slice()).unwrap();
        assert_eq!(
            fault.upstream_cluster,
            "outbound|80||orders.shop.svc.cluster.local"
        );
        assert_eq!(fault.abort.unwrap().percentage.unwrap().numerator, 125_000);
        assert_eq!(fault.headers[0].name, "x-chaos");

        let rc = RouteConfiguration::decode(r.routes["outbound"].value.as_slice()).unwrap();
        let orders = rc
            .virtual_hosts
            .iter()
            .find(|v| v.name == "shop/orders:80")
            .unwrap();
        let per_route =
            &orders.routes[0].typed_per_filter_config["envoy.filters.http.local_ratelimit"];
        let limit = LocalRateLimit::decode(per_route.value.as_slice()).unwrap();
        let bucket = limit.token_bucket.unwrap();
        assert_eq!(
            (bucket.max_tokens, bucket.tokens_per_fill.unwrap().value),
            (10, 10)
        );
        // gRPC clients get the routes without it: a caller's proxy enforces
        // the limit, and gRPC rejects config for a filter it does not know.
        let grpc = RouteConfiguration::decode(
            r.routes["orders.shop.svc.cluster.local:80"]
                .value
                .as_slice(),
        )
        .unwrap();
        assert!(grpc.virtual_hosts[0]
            .routes
            .iter()
            .all(|route| route.typed_per_filter_config.is_empty()));

        let inbound = hcm_filters(&r.listeners["inbound|orders.shop.svc.cluster.local"]);
        let limit = LocalRateLimit::decode(inbound[0].1.as_slice()).unwrap();
        assert_eq!(limit.token_bucket.unwrap().max_tokens, 20);
        assert_eq!(limit.stat_prefix, "inbound|orders.shop.svc.cluster.local");
    }
}
