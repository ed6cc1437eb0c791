//! MeshTLS and AuthorizationPolicy: decoding, targets, conflicts, and keeping the
//! last valid version.

use super::*;
use crate::resources::{AuthorizationAction, Caller, Pattern, PolicyTarget, TlsMode};
use crate::source::parse;

const SERVICES: &str = "
apiVersion: v1
kind: Service
metadata: {name: orders, namespace: shop}
spec: {ports: [{port: 80}]}
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: orders-admin, namespace: shop}
spec:
  parentRefs: [{kind: Service, name: orders}]
  rules: [{matches: [{path: {value: /admin}}], backendRefs: [{name: orders}]}]
";

fn run(files: &[(&str, &str)]) -> Outcome {
    let mut loaded = Loaded::default();
    for (file, text) in files {
        let l = parse(file, text);
        loaded.documents.extend(l.documents);
        loaded.problems.extend(l.problems);
    }
    validate_loaded(&loaded)
}

fn messages(outcome: &Outcome) -> Vec<String> {
    outcome.problems.iter().map(|p| p.to_string()).collect()
}

fn key(name: &str) -> ObjectKey {
    ObjectKey::new("shop", name)
}

#[test]
fn mesh_tls_by_namespace_and_by_service() {
    let policies = "
apiVersion: policy.remora.dev/v1alpha1
kind: MeshTLS
metadata: {name: shop-default, namespace: shop}
spec: {mode: PERMISSIVE}
---
apiVersion: policy.remora.dev/v1alpha1
kind: MeshTLS
metadata: {name: orders-strict, namespace: shop}
spec:
  targetRef: {kind: Service, name: orders}
  mode: STRICT
";
    let outcome = run(&[("a.yaml", SERVICES), ("b.yaml", policies)]);
    assert!(outcome.problems.is_empty(), "{:?}", messages(&outcome));
    assert_eq!(outcome.store.tls_mode(&key("orders")), TlsMode::Strict);
    assert_eq!(
        outcome.store.tls_mode(&key("payments")),
        TlsMode::Permissive
    );
    assert_eq!(
        outcome.store.tls_mode(&ObjectKey::new("other", "x")),
        TlsMode::Strict
    );
}

#[test]
fn mesh_tls_problems_name_the_field() {
    let policies = "
apiVersion: policy.remora.dev/v1alpha1
kind: MeshTLS
metadata: {name: a, namespace: shop}
spec: {mode: OFF}
---
apiVersion: policy.remora.dev/v1alpha1
kind: MeshTLS
metadata: {name: b, namespace: shop}
spec:
  targetRef: {kind: HTTPRoute, name: orders-admin}
  mode: STRICT
---
apiVersion: policy.remora.dev/v1alpha1
kind: MeshTLS
metadata: {name: c, namespace: shop}
spec:
  targetRef: {kind: Service, name: nope}
  mode: STRICT
---
apiVersion: policy.remora.dev/v1alpha1
kind: MeshTLS
metadata: {name: d1, namespace: shop}
spec: {targetRef: {kind: Service, name: orders}, mode: STRICT}
---
apiVersion: policy.remora.dev/v1alpha1
kind: MeshTLS
metadata: {name: d2, namespace: shop}
spec: {targetRef: {kind: Service, name: orders}, mode: PERMISSIVE}
";
    let outcome = run(&[("a.yaml", SERVICES), ("b.yaml", policies)]);
    assert_eq!(
        messages(&outcome),
        [
            "b.yaml: MeshTLS shop/a: spec.mode: \"OFF\" is not a mode (use STRICT or PERMISSIVE)",
            "b.yaml: MeshTLS shop/b: spec.targetRef.kind: \"HTTPRoute\" cannot be a target (use Service (leave targetRef out for the whole namespace))",
            "b.yaml: MeshTLS shop/c: spec.targetRef.name: Service \"nope\" does not exist",
            "b.yaml: MeshTLS shop/d2: spec.targetRef: Service \"orders\" already has a MeshTLS policy (shop/d1)",
        ]
    );
    assert_eq!(outcome.store.tls_mode(&key("orders")), TlsMode::Strict);
}

#[test]
fn authorization_policy_decodes_callers_and_requests() {
    let policy = "
apiVersion: policy.remora.dev/v1alpha1
kind: AuthorizationPolicy
metadata: {name: readers, namespace: shop}
spec:
  targetRef: {kind: Service, name: orders}
  action: ALLOW
  rules:
  - from:
      identities: ['spiffe://cluster.local/ns/shop/sa/web', 'spiffe://cluster.local/ns/ops/*', '*']
      namespaces: [monitoring]
    to:
      paths: [/orders, '/api/*']
      methods: [GET, HEAD]
  - {}
";
    let outcome = run(&[("a.yaml", SERVICES), ("b.yaml", policy)]);
    assert!(outcome.problems.is_empty(), "{:?}", messages(&outcome));
    let p = outcome.store.authorizations().next().unwrap();
    assert_eq!(p.target, PolicyTarget::Service(key("orders")));
    assert_eq!(p.action, AuthorizationAction::Allow);
    assert_eq!(
        p.rules[0].from,
        [
            Caller::Identity(Pattern::Exact(
                "spiffe://cluster.local/ns/shop/sa/web".into()
            )),
            Caller::Identity(Pattern::Prefix("spiffe://cluster.local/ns/ops/".into())),
            Caller::Identity(Pattern::Any),
            Caller::Namespace("monitoring".into()),
        ]
    );
    assert_eq!(
        p.rules[0].paths,
        [
            Pattern::Exact("/orders".into()),
            Pattern::Prefix("/api/".into())
        ]
    );
    assert_eq!(p.rules[0].methods, ["GET", "HEAD"]);
    assert_eq!(p.rules[1], Default::default());
}

#[test]
fn authorization_policy_problems_name_the_field() {
    let policy = "
apiVersion: policy.remora.dev/v1alpha1
kind: AuthorizationPolicy
metadata: {name: bad, namespace: shop}
spec:
  targetRef: {kind: Deployment, name: orders}
  action: MAYBE
  rules:
  - from: {identities: [web, 'spiffe://a/*/b/*'], namespaces: [Bad_NS]}
    to: {paths: [admin], methods: [FETCH]}
---
apiVersion: policy.remora.dev/v1alpha1
kind: AuthorizationPolicy
metadata: {name: no-route, namespace: shop}
spec:
  targetRef: {group: gateway.networking.k8s.io, kind: HTTPRoute, name: missing}
  action: DENY
  rules: [{}]
---
apiVersion: policy.remora.dev/v1alpha1
kind: AuthorizationPolicy
metadata: {name: no-rules, namespace: shop}
spec:
  targetRef: {kind: Service, name: orders}
  action: DENY
";
    let outcome = run(&[("a.yaml", SERVICES), ("b.yaml", policy)]);
    let fields: Vec<_> = outcome
        .problems
        .iter()
        .map(|p| {
            format!(
                "{} {}",
                p.name.as_deref().unwrap_or(""),
                p.field.as_deref().unwrap_or("")
            )
        })
        .collect();
    assert_eq!(
        fields,
        [
            "bad spec.targetRef.kind",
            "bad spec.action",
            "bad spec.rules[0].from.identities[0]",
            "bad spec.rules[0].from.identities[1]",
            "bad spec.rules[0].from.namespaces[0]",
            "bad spec.rules[0].to.paths[0]",
            "bad spec.rules[0].to.methods[0]",
            "no-route spec.targetRef.name",
            "no-rules spec.rules",
        ],
        "{:#?}",
        messages(&outcome)
    );
    assert_eq!(outcome.store.authorizations().count(), 0);
}

#[test]
fn a_route_target_must_attach_to_a_service_of_the_namespace() {
    let policy = "
apiVersion: policy.remora.dev/v1alpha1
kind: AuthorizationPolicy
metadata: {name: admins, namespace: shop}
spec:
  targetRef: {kind: HTTPRoute, name: orders-admin}
  action: ALLOW
  rules: [{from: {namespaces: [ops]}}]
";
    let outcome = run(&[("a.yaml", SERVICES), ("b.yaml", policy)]);
    assert!(outcome.problems.is_empty(), "{:?}", messages(&outcome));
    let p = outcome.store.authorizations().next().unwrap();
    assert_eq!(p.target, PolicyTarget::HttpRoute(key("orders-admin")));
}

#[test]
fn a_broken_edit_keeps_the_last_valid_policy() {
    let good = "
apiVersion: policy.remora.dev/v1alpha1
kind: AuthorizationPolicy
metadata: {name: deny-ops, namespace: shop}
spec:
  targetRef: {kind: Service, name: orders}
  action: DENY
  rules: [{from: {namespaces: [ops]}}]
";
    let first = run(&[("a.yaml", SERVICES), ("b.yaml", good)]);
    assert_eq!(first.store.authorizations().count(), 1);
    let broken = good.replace("action: DENY", "action: DENNY");
    let mut second = run(&[("a.yaml", SERVICES), ("b.yaml", &broken)]);
    retain_last_good(&first.store, &mut second);
    assert_eq!(
        second.store.authorizations().count(),
        1,
        "the DENY stays in force"
    );
    assert!(messages(&second)[0].ends_with("the last valid version stays in force"));
    // Without its Service, it goes.
    let mut third = run(&[("b.yaml", &broken)]);
    retain_last_good(&first.store, &mut third);
    assert_eq!(third.store.authorizations().count(), 0);
}

#[test]
fn traffic_policy_problems_name_the_field() {
    let policy = "
apiVersion: policy.remora.dev/v1alpha1
kind: TrafficPolicy
metadata: {name: bad, namespace: shop}
spec:
  targetRef: {kind: HTTPRoute, name: orders-admin}
  timeouts: {request: 1s, perTry: 2s, connect: 1s}
  outlierDetection: {consecutiveFailures: 0}
  connectionLimits: {maxRequests: 0}
  retry:
    on: [sometimes]
    codes: [200]
    grpcCodes: [NOT_FOUND]
    backoff: {base: 10ms, max: 1ms}
    budget: {percent: 150}
---
apiVersion: policy.remora.dev/v1alpha1
kind: TrafficPolicy
metadata: {name: good, namespace: shop}
spec:
  targetRef: {kind: Service, name: orders}
  timeouts: {request: 10s}
  retry: {grpcCodes: [UNAVAILABLE], budget: {percent: 25}}
---
apiVersion: policy.remora.dev/v1alpha1
kind: TrafficPolicy
metadata: {name: second, namespace: shop}
spec:
  targetRef: {kind: Service, name: orders}
";
    let outcome = run(&[("a.yaml", SERVICES), ("b.yaml", policy)]);
    let fields: Vec<_> = outcome
        .problems
        .iter()
        .map(|p| {
            format!(
                "{} {}",
                p.name.as_deref().unwrap_or(""),
                p.field.as_deref().unwrap_or("")
            )
        })
        .collect();
    assert_eq!(
        fields,
        [
            "bad spec.timeouts.perTry",
            "bad spec.retry.on[0]",
            "bad spec.retry.codes[0]",
            "bad spec.retry.grpcCodes[0]",
            "bad spec.retry.backoff.max",
            "bad spec.retry.budget.percent",
            "bad spec.outlierDetection.consecutiveFailures",
            "bad spec.connectionLimits.maxRequests",
            "bad spec.outlierDetection",
            "bad spec.timeouts.connect",
            "bad spec.retry.budget",
            "second spec.targetRef",
        ],
        "{:#?}",
        messages(&outcome)
    );
    let good = outcome.store.traffic_policies().next().unwrap();
    let retry = good.retry.as_ref().unwrap();
    assert_eq!(retry.attempts, 2);
    assert_eq!(retry.on, ["connect-failure", "reset"]);
    assert_eq!(retry.grpc_codes, ["unavailable"]);
    assert_eq!(
        retry.budget.map(|b| (b.percent, b.min_per_second)),
        Some((25, 3))
    );
}

#[test]
fn httproute_timeouts_and_retry_are_read() {
    let route = "
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: orders-admin, namespace: shop}
spec:
  parentRefs: [{kind: Service, name: orders}]
  rules:
  - backendRefs: [{name: orders}]
    timeouts: {request: 1s, backendRequest: 250ms}
    retry: {codes: [503], attempts: 3, backoff: 100ms}
  - backendRefs: [{name: orders}]
    timeouts: {request: 1s, backendRequest: 2s}
    retry: {codes: [200], backoff: 1x}
";
    let services = SERVICES.split("---").next().unwrap();
    let outcome = run(&[("a.yaml", services), ("b.yaml", route)]);
    let fields: Vec<_> = outcome
        .problems
        .iter()
        .map(|p| p.field.clone().unwrap_or_default())
        .collect();
    assert_eq!(
        fields,
        [
            "spec.rules[1].timeouts.backendRequest",
            "spec.rules[1].retry.codes[0]",
            "spec.rules[1].retry.backoff",
        ]
    );
}

#[test]
fn faults_and_rate_limits_are_checked() {
    let policy = "
apiVersion: policy.remora.dev/v1alpha1
kind: TrafficPolicy
metadata: {name: bad, namespace: shop}
spec:
  targetRef: {kind: Service, name: orders}
  faults:
    abort: {status: 503, grpcStatus: 14, percent: 150}
    delay: {percent: 5}
  rateLimit:
    inbound: {burst: 5}
---
apiVersion: policy.remora.dev/v1alpha1
kind: TrafficPolicy
metadata: {name: on-route, namespace: shop}
spec:
  targetRef: {kind: HTTPRoute, name: orders-admin}
  faults: {delay: {duration: 1s, percent: 1}}
";
    let outcome = run(&[("a.yaml", SERVICES), ("b.yaml", policy)]);
    let fields: Vec<_> = outcome
        .problems
        .iter()
        .map(|p| {
            format!(
                "{} {}",
                p.name.as_deref().unwrap_or(""),
                p.field.as_deref().unwrap_or("")
            )
        })
        .collect();
    assert_eq!(
        fields,
        [
            "bad spec.faults.abort.percent",
            "bad spec.faults.abort",
            "bad spec.faults.delay.duration",
            "bad spec.rateLimit.inbound.requestsPerSecond",
            "on-route spec.faults",
        ],
        "{:#?}",
        messages(&outcome)
    );
}
