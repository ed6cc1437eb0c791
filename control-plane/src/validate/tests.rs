use super::*;
use crate::resources::{AppProtocol, PathMatch};
use crate::source::parse;

const SERVICES: &str = "
apiVersion: v1
kind: Service
metadata: {name: orders}
spec:
  ports: [{name: http, port: 80}]
---
apiVersion: v1
kind: Service
metadata: {name: orders-v1}
spec:
  ports: [{port: 80}]
---
apiVersion: v1
kind: Service
metadata: {name: orders-v2}
spec:
  ports: [{port: 80, appProtocol: kubernetes.io/h2c}, {port: 9090, appProtocol: grpc}]
";

const ROUTE: &str = "
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: orders}
spec:
  parentRefs: [{group: '', kind: Service, name: orders, port: 80}]
  rules:
  - matches: [{headers: [{name: X-Canary, value: 'true'}]}]
    backendRefs: [{name: orders-v2, port: 80}]
  - backendRefs:
    - {name: orders-v1, port: 80, weight: 90}
    - {name: orders-v2, port: 80, weight: 10}
";

fn load(files: &[(&str, &str)]) -> Loaded {
    let mut loaded = Loaded::default();
    for (file, text) in files {
        let l = parse(file, text);
        loaded.documents.extend(l.documents);
        loaded.problems.extend(l.problems);
    }
    loaded
}

fn run(files: &[(&str, &str)]) -> Outcome {
    validate_loaded(&load(files))
}

/// A reload with `previous` in force, as the control plane does it.
fn reload(files: &[(&str, &str)], previous: &Outcome) -> Outcome {
    let mut outcome = validate_after(&load(files), &previous.store);
    retain_last_good(&previous.store, &mut outcome);
    outcome
}

fn messages(outcome: &Outcome) -> Vec<String> {
    outcome.problems.iter().map(|p| p.to_string()).collect()
}

fn route_with_rules(rules: &str) -> String {
    format!(
        "
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {{name: orders}}
spec:
  parentRefs: [{{kind: Service, name: orders}}]
  rules:
{rules}"
    )
}

fn service_with_ports(ports: &str) -> String {
    format!("apiVersion: v1\nkind: Service\nmetadata: {{name: svc}}\nspec:\n  ports: {ports}\n")
}

#[test]
fn a_valid_config_has_no_problems() {
    let outcome = run(&[("svc.yaml", SERVICES), ("routes.yaml", ROUTE)]);
    assert_eq!(messages(&outcome), Vec::<String>::new());
    assert_eq!(outcome.store.services().count(), 3);
    let route = outcome.store.routes().next().unwrap();
    assert_eq!(route.key, ObjectKey::new("default", "orders"));
    assert_eq!(route.rules[0].matches[0].headers[0].name, "x-canary");
    assert_eq!(
        route.rules[0].matches[0].path,
        PathMatch::Prefix("/".into())
    );
    assert_eq!(route.rules[1].backends[0].weight, 90);
    let v2 = outcome
        .store
        .service(&ObjectKey::new("default", "orders-v2"))
        .unwrap();
    assert_eq!(v2.ports[1].protocol, AppProtocol::Grpc);
}

#[test]
fn backend_to_a_missing_service_names_file_route_and_field() {
    let rules = "  - backendRefs: [{name: orders, port: 80}, {name: orders-v3, port: 80}]\n";
    let outcome = run(&[
        ("config/svc.yaml", SERVICES),
        ("config/routes.yaml", &route_with_rules(rules)),
    ]);
    assert_eq!(
        messages(&outcome),
        ["config/routes.yaml: HTTPRoute default/orders: spec.rules[0].backendRefs[1].name: Service \"orders-v3\" does not exist"]
    );
    assert_eq!(
        outcome.store.routes().count(),
        0,
        "an invalid route is left out"
    );
    assert_eq!(outcome.store.services().count(), 3, "its neighbours stay");
}

#[test]
fn backend_to_a_missing_port() {
    let outcome = run(&[
        ("s.yaml", SERVICES),
        (
            "r.yaml",
            &route_with_rules("  - backendRefs: [{name: orders, port: 8080}]\n"),
        ),
    ]);
    assert_eq!(
        messages(&outcome),
        ["r.yaml: HTTPRoute default/orders: spec.rules[0].backendRefs[0].port: Service \"orders\" has no port 8080 (it has 80)"]
    );
}

#[test]
fn backend_port_is_required_when_the_service_has_several() {
    let outcome = run(&[
        ("s.yaml", SERVICES),
        (
            "r.yaml",
            &route_with_rules("  - backendRefs: [{name: orders-v2}]\n"),
        ),
    ]);
    assert_eq!(
        messages(&outcome),
        ["r.yaml: HTTPRoute default/orders: spec.rules[0].backendRefs[0].port: required: Service \"orders-v2\" has several ports (80, 9090)"]
    );
}

#[test]
fn backend_port_defaults_to_the_only_port() {
    let outcome = run(&[
        ("s.yaml", SERVICES),
        (
            "r.yaml",
            &route_with_rules("  - backendRefs: [{name: orders-v1}]\n"),
        ),
    ]);
    assert!(outcome.problems.is_empty(), "{:?}", messages(&outcome));
}

#[test]
fn all_zero_weights_in_a_rule_are_rejected() {
    let rules = "  - backendRefs: [{name: orders-v1, weight: 0}, {name: orders, weight: 0}]\n";
    let outcome = run(&[("s.yaml", SERVICES), ("r.yaml", &route_with_rules(rules))]);
    assert_eq!(
        messages(&outcome),
        ["r.yaml: HTTPRoute default/orders: spec.rules[0].backendRefs: every weight is 0: the rule would send no traffic"]
    );
}

#[test]
fn some_zero_weights_are_fine() {
    let rules = "  - backendRefs: [{name: orders-v1, weight: 0}, {name: orders, weight: 1}]\n";
    let outcome = run(&[("s.yaml", SERVICES), ("r.yaml", &route_with_rules(rules))]);
    assert!(outcome.problems.is_empty(), "{:?}", messages(&outcome));
}

#[test]
fn parent_ref_to_a_missing_service_or_port() {
    let route = "
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: r, namespace: shop}
spec:
  parentRefs:
  - {kind: Service, name: nope}
  - {kind: Service, name: orders, namespace: default, port: 81}
  rules: [{backendRefs: [{name: orders, namespace: default}]}]
";
    let outcome = run(&[("s.yaml", SERVICES), ("r.yaml", route)]);
    assert_eq!(
        messages(&outcome),
        [
            "r.yaml: HTTPRoute shop/r: spec.parentRefs[0].name: Service \"nope\" does not exist",
            "r.yaml: HTTPRoute shop/r: spec.parentRefs[1].port: Service \"orders\" has no port 81 (it has 80)",
        ]
    );
}

#[test]
fn a_reference_to_an_invalid_service_says_so() {
    let bad =
        "apiVersion: v1\nkind: Service\nmetadata: {name: orders}\nspec: {ports: [{port: 0}]}\n";
    let outcome = run(&[
        (
            "r.yaml",
            &route_with_rules("  - backendRefs: [{name: orders}]\n"),
        ),
        ("s.yaml", bad),
    ]);
    assert_eq!(
        messages(&outcome),
        [
            "r.yaml: HTTPRoute default/orders: spec.parentRefs[0].name: Service \"orders\" is invalid (see its own errors)",
            "r.yaml: HTTPRoute default/orders: spec.rules[0].backendRefs[0].name: Service \"orders\" is invalid (see its own errors)",
            "s.yaml: Service default/orders: spec.ports[0].port: 0 is out of range (1 to 65535)",
        ]
    );
}

#[test]
fn unknown_kind_and_api_version() {
    let text = "
apiVersion: v1
kind: Deployment
metadata: {name: web}
---
apiVersion: networking.istio.io/v1
kind: HTTPRoute
metadata: {name: r}
spec:
  parentRefs: [{kind: Service, name: orders}]
  rules: [{backendRefs: [{name: orders}]}]
";
    let outcome = run(&[("s.yaml", SERVICES), ("x.yaml", text)]);
    assert_eq!(
        messages(&outcome),
        [
            "x.yaml: Deployment default/web: kind: unknown kind \"Deployment\" (Remora reads Service, HTTPRoute, MeshTLS, AuthorizationPolicy, TrafficPolicy)",
            "x.yaml: HTTPRoute default/r: apiVersion: \"networking.istio.io/v1\" is not supported for HTTPRoute (use gateway.networking.k8s.io/v1)",
        ]
    );
}

#[test]
fn missing_kind_and_missing_name() {
    let text = "apiVersion: v1\nmetadata: {name: a}\n---\napiVersion: v1\nkind: Service\nmetadata: {}\nspec: {ports: [{port: 80}]}\n";
    let outcome = run(&[("x.yaml", text)]);
    assert_eq!(
        messages(&outcome),
        [
            "x.yaml: document 1: kind: required",
            "x.yaml: Service in document 2: metadata.name: required",
        ]
    );
    assert_eq!(outcome.store.services().count(), 0);
}

#[test]
fn a_duplicate_keeps_the_first_definition() {
    let svc = |port: u16| {
        format!("apiVersion: v1\nkind: Service\nmetadata: {{name: web}}\nspec: {{ports: [{{port: {port}}}]}}\n")
    };
    let outcome = run(&[("a.yaml", &svc(80)), ("b.yaml", &svc(81))]);
    assert_eq!(
        messages(&outcome),
        ["b.yaml: Service default/web: metadata.name: duplicate: Service default/web is already defined in a.yaml (document 1)"]
    );
    let web = outcome
        .store
        .service(&ObjectKey::new("default", "web"))
        .unwrap();
    assert_eq!(web.ports[0].port, 80);
}

fn web(port: u16) -> String {
    format!("apiVersion: v1\nkind: Service\nmetadata: {{name: web}}\nspec: {{ports: [{{port: {port}}}]}}\n")
}

fn web_port(outcome: &Outcome) -> Option<u16> {
    let web = outcome.store.service(&ObjectKey::new("default", "web"))?;
    Some(web.ports[0].port)
}

#[test]
fn duplicates_on_a_first_load_keep_the_first_by_file_name_whatever_the_order() {
    let outcome = run(&[("b.yaml", &web(81)), ("a.yaml", &web(80))]);
    assert_eq!(
        messages(&outcome),
        ["b.yaml: Service default/web: metadata.name: duplicate: Service default/web is already defined in a.yaml (document 1)"]
    );
    assert_eq!(web_port(&outcome), Some(80));
}

#[test]
fn the_resource_already_accepted_keeps_its_place() {
    let first = run(&[("web.yaml", &web(80))]);
    assert!(first.problems.is_empty(), "{:?}", messages(&first));
    // A newcomer whose file sorts first redefines it: the one in force stays.
    let second = reload(&[("0-new.yaml", &web(81)), ("web.yaml", &web(80))], &first);
    assert_eq!(
        messages(&second),
        ["0-new.yaml: Service default/web: metadata.name: duplicate: Service default/web is already defined in web.yaml (document 1), the definition in force"]
    );
    assert_eq!(web_port(&second), Some(80));
    let key = ObjectKey::new("default", "web");
    assert_eq!(second.store.origin(Kind::Service, &key), Some("web.yaml"));
    // It stays on every reload, even when its own file is edited...
    let third = reload(&[("0-new.yaml", &web(81)), ("web.yaml", &web(82))], &second);
    assert_eq!(web_port(&third), Some(82));
    // ...and the newcomer takes over only once the original is gone.
    let fourth = reload(&[("0-new.yaml", &web(81))], &third);
    assert!(fourth.problems.is_empty(), "{:?}", messages(&fourth));
    assert_eq!(web_port(&fourth), Some(81));
    assert_eq!(fourth.store.origin(Kind::Service, &key), Some("0-new.yaml"));
}

#[test]
fn a_newcomer_waits_while_the_file_in_force_cannot_be_read() {
    let first = run(&[("web.yaml", &web(80))]);
    let broken = "apiVersion: v1\nkind: Service\nmetadata: {name: web\n";
    let second = reload(&[("0-new.yaml", &web(81)), ("web.yaml", broken)], &first);
    let newcomer = second
        .problems
        .iter()
        .find(|p| p.file == "0-new.yaml")
        .map(ToString::to_string)
        .unwrap_or_default();
    assert!(
        newcomer.contains("duplicate: Service default/web is in force from web.yaml, which has a document that cannot be read"),
        "{:?}",
        messages(&second)
    );
    assert_eq!(web_port(&second), Some(80), "the last valid version stays");
}

#[test]
fn an_out_of_range_weight_names_the_field() {
    let text = "
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: orders-split}
spec:
  parentRefs: [{kind: Service, name: orders}]
  rules:
  - backendRefs:
    - {name: orders-v1, port: 80, weight: 1}
    - {name: orders-v2, port: 80, weight: 99999999999999999999}
---
apiVersion: v1
kind: Service
metadata: {name: big}
spec: {ports: [{port: -99999999999999999999}]}
---
apiVersion: v1
kind: Service
metadata: {name: after}
spec: {ports: [{port: 80}]}
";
    let outcome = run(&[("s.yaml", SERVICES), ("route.yaml", text)]);
    assert_eq!(
        messages(&outcome),
        [
            "route.yaml: HTTPRoute default/orders-split: spec.rules[0].backendRefs[1].weight: 99999999999999999999 is out of range (0 to 1000000)",
            "route.yaml: Service default/big: spec.ports[0].port: -99999999999999999999 is out of range (1 to 65535)",
        ]
    );
    let after = ObjectKey::new("default", "after");
    assert!(
        outcome.store.service(&after).is_some(),
        "the rest of the file loads"
    );
}

#[test]
fn control_characters_in_names_are_escaped_when_printed() {
    let text = "apiVersion: v1\nkind: Service\nmetadata: {name: \"a\\nFAKE LOG LINE\\u001b[31m\"}\nspec: {ports: [{port: 80}]}\n";
    let outcome = run(&[("x.yaml", text)]);
    let [problem] = outcome.problems.as_slice() else {
        panic!("{:?}", messages(&outcome));
    };
    assert_eq!(problem.name.as_deref(), Some("a\nFAKE LOG LINE\u{1b}[31m"));
    let shown = problem.to_string();
    assert!(!shown.contains(['\n', '\u{1b}']), "{shown:?}");
    assert!(
        shown.starts_with("x.yaml: Service default/a\\nFAKE LOG LINE\\u{1b}[31m: metadata.name: \"a\\nFAKE LOG LINE\\u{1b}[31m\" must be"),
        "{shown}"
    );
}

#[test]
fn same_name_in_other_namespace_or_kind_is_not_a_duplicate() {
    let text = "
apiVersion: v1
kind: Service
metadata: {name: orders, namespace: shop}
spec: {ports: [{port: 80}]}
";
    let outcome = run(&[("s.yaml", SERVICES), ("shop.yaml", text), ("r.yaml", ROUTE)]);
    assert!(outcome.problems.is_empty(), "{:?}", messages(&outcome));
    assert_eq!(outcome.store.services().count(), 4);
}

#[test]
fn bad_paths_are_rejected() {
    let rules = "
  - matches:
    - path: {type: PathPrefix, value: orders}
    - path: {type: Exact, value: '/a?b'}
    - path: {type: Regex, value: /x}
    backendRefs: [{name: orders}]
";
    let outcome = run(&[("s.yaml", SERVICES), ("r.yaml", &route_with_rules(rules))]);
    assert_eq!(
        messages(&outcome),
        [
            "r.yaml: HTTPRoute default/orders: spec.rules[0].matches[0].path.value: \"orders\" must start with /",
            "r.yaml: HTTPRoute default/orders: spec.rules[0].matches[1].path.value: \"/a?b\" must not contain '?', '#' or spaces",
            "r.yaml: HTTPRoute default/orders: spec.rules[0].matches[2].path.type: \"Regex\" is not a path match type (use Exact or PathPrefix)",
        ]
    );
}

#[test]
fn path_prefix_ignores_a_trailing_slash() {
    let rules = "  - matches: [{path: {value: /api/}}, {path: {type: Exact, value: /x/}}]\n    backendRefs: [{name: orders}]\n";
    let outcome = run(&[("s.yaml", SERVICES), ("r.yaml", &route_with_rules(rules))]);
    let route = outcome.store.routes().next().unwrap();
    assert_eq!(
        route.rules[0].matches[0].path,
        PathMatch::Prefix("/api".into())
    );
    assert_eq!(
        route.rules[0].matches[1].path,
        PathMatch::Exact("/x/".into())
    );
}

#[test]
fn bad_app_protocol_and_port_out_of_range() {
    let outcome = run(&[(
        "s.yaml",
        &service_with_ports("[{port: 80, appProtocol: http2}, {port: 70000}, {port: '80'}]"),
    )]);
    assert_eq!(
        messages(&outcome),
        [
            "s.yaml: Service default/svc: spec.ports[0].appProtocol: \"http2\" is not supported (HTTP: http, kubernetes.io/h2c, grpc; opaque TCP: tcp, mysql, postgresql, redis, nats, amqp, mqtt, kafka, smtp)",
            "s.yaml: Service default/svc: spec.ports[1].port: 70000 is out of range (1 to 65535)",
            "s.yaml: Service default/svc: spec.ports[2].port: must be a number, not a string",
        ]
    );
}

#[test]
fn a_target_port_is_a_number_or_a_port_name_and_errors_name_the_field() {
    let outcome = run(&[(
        "s.yaml",
        &service_with_ports(
            "[{port: 80, targetPort: 8080}, {port: 81, targetPort: 0}, {port: 82, targetPort: '8080'}]",
        ),
    )]);
    assert_eq!(
        messages(&outcome),
        [
            "s.yaml: Service default/svc: spec.ports[1].targetPort: 0 is out of range (1 to 65535)",
            "s.yaml: Service default/svc: spec.ports[2].targetPort: \"8080\" is neither a port number nor a port name (at most 15 lower-case letters, digits and '-', with a letter, no '-' at either end or twice in a row)",
        ]
    );

    let outcome = run(&[(
        "s.yaml",
        &service_with_ports(
            "[{port: 80, targetPort: 8080}, {port: 81}, {port: 6379, targetPort: redis, appProtocol: redis}]",
        ),
    )]);
    assert_eq!(messages(&outcome), Vec::<String>::new());
    let svc = outcome
        .store
        .service(&ObjectKey::new("default", "svc"))
        .unwrap();
    assert_eq!(svc.ports[0].target_port, Some(8080));
    assert_eq!(svc.ports[0].target(), 8080);
    assert_eq!(
        svc.ports[1].target_port, None,
        "a file without it: today's behaviour"
    );
    assert_eq!(svc.ports[1].target(), 81);
    assert_eq!(
        svc.ports[2].target_port, None,
        "a name: only a cluster resolves it, and a cluster's manifest still reads"
    );
}

#[test]
fn an_app_port_is_either_http_or_opaque_tcp() {
    let outcome = run(&[(
        "s.yaml",
        &service_with_ports(
            "[{port: 80, targetPort: 8080}, {port: 8080, appProtocol: tcp}, \
             {port: 6379, targetPort: 8080, appProtocol: redis}, {port: 81, targetPort: 9090}, \
             {port: 9091, targetPort: 9091, appProtocol: tcp}]",
        ),
    )]);
    assert_eq!(
        messages(&outcome),
        [
            "s.yaml: Service default/svc: spec.ports[1].port: app port 8080 is already the target of the HTTP port spec.ports[0]: a port is served as HTTP or as opaque TCP, not both",
            "s.yaml: Service default/svc: spec.ports[2].targetPort: app port 8080 is already the target of the HTTP port spec.ports[0]: a port is served as HTTP or as opaque TCP, not both",
        ]
    );
}

#[test]
fn duplicate_ports_and_no_ports() {
    let outcome = run(&[
        ("a.yaml", &service_with_ports("[{port: 80}, {port: 80}]")),
        ("b.yaml", &service_with_ports("[]").replace("svc", "other")),
    ]);
    assert_eq!(
        messages(&outcome),
        [
            "a.yaml: Service default/svc: spec.ports[1].port: port 80 is already listed in spec.ports[0]",
            "b.yaml: Service default/other: spec.ports: at least one entry is required",
        ]
    );
}

#[test]
fn every_problem_of_a_resource_is_reported() {
    let text = "
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: Bad_Name}
spec:
  parentRefs: [{kind: Gateway, name: gw}]
  rules:
  - matches: [{method: FETCH, queryParams: [{name: a, value: b}]}]
    filters: [{type: URLRewrite}]
    backendRefs: [{name: orders, weight: -1}]
";
    let outcome = run(&[("s.yaml", SERVICES), ("r.yaml", text)]);
    let fields: Vec<_> = outcome
        .problems
        .iter()
        .map(|p| p.field.clone().unwrap_or_default())
        .collect();
    assert_eq!(
        fields,
        [
            "metadata.name",
            "spec.parentRefs[0].kind",
            "spec.rules[0].matches[0].queryParams",
            "spec.rules[0].matches[0].method",
            "spec.rules[0].backendRefs[0].weight",
            "spec.rules[0].filters[0].type",
        ],
        "{:#?}",
        messages(&outcome)
    );
}

#[test]
fn yaml_syntax_errors_name_the_line_and_keep_other_files() {
    let outcome = run(&[
        ("bad.yaml", "kind: Service\n  name: [x\n"),
        ("s.yaml", SERVICES),
    ]);
    let [problem] = outcome.problems.as_slice() else {
        panic!("{:?}", messages(&outcome));
    };
    assert_eq!(problem.file, "bad.yaml");
    assert!(problem.line.is_some(), "{problem}");
    assert_eq!(outcome.store.services().count(), 3);
}

#[test]
fn static_endpoints() {
    let text = "
apiVersion: v1
kind: Service
metadata: {name: legacy}
spec:
  ports: [{port: 80}, {port: 81}]
  endpoints:
  - {address: 127.0.0.1, port: 9000, servicePort: 80}
  - {address: localhost, port: 9001, servicePort: 82}
  - {address: 127.0.0.1, port: 9002, adress: x}
";
    let outcome = run(&[("s.yaml", text)]);
    assert_eq!(
        messages(&outcome),
        [
            "s.yaml: Service default/legacy: spec.endpoints[1].address: \"localhost\" is not an IP address",
            "s.yaml: Service default/legacy: spec.endpoints[1].servicePort: the Service has no port 82",
            "s.yaml: Service default/legacy: spec.endpoints[2].adress: unknown field (expected one of: address, port, servicePort)",
            "s.yaml: Service default/legacy: spec.endpoints[2].servicePort: required: the Service has several ports",
        ]
    );
}

#[test]
fn static_endpoint_port_defaults_to_the_only_service_port() {
    let text = "
apiVersion: v1
kind: Service
metadata: {name: legacy, namespace: old}
spec:
  selector: {app: legacy}
  type: ClusterIP
  ports: [{port: 80, targetPort: 8080, protocol: TCP}]
  endpoints: [{address: 10.0.0.1, port: 8080}]
";
    let outcome = run(&[("s.yaml", text)]);
    assert!(outcome.problems.is_empty(), "{:?}", messages(&outcome));
    let svc = outcome
        .store
        .service(&ObjectKey::new("old", "legacy"))
        .unwrap();
    assert_eq!(svc.endpoints[0].service_port, 80);
}

#[test]
fn a_cross_namespace_reference_shows_the_namespace() {
    let text = "
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: r, namespace: shop}
spec:
  parentRefs: [{kind: Service, name: orders, namespace: default}]
  rules: [{backendRefs: [{name: gone, namespace: default}]}]
";
    let outcome = run(&[("s.yaml", SERVICES), ("r.yaml", text)]);
    assert_eq!(
        messages(&outcome),
        ["r.yaml: HTTPRoute shop/r: spec.rules[0].backendRefs[0].name: Service \"default/gone\" does not exist"]
    );
}

#[test]
fn a_document_that_is_not_a_mapping() {
    let outcome = run(&[("x.yaml", "- a\n- b\n")]);
    assert_eq!(
        messages(&outcome),
        ["x.yaml: document 1: a resource must be a mapping with apiVersion, kind, metadata and spec"]
    );
}

mod last_good {
    use super::*;

    fn route_names(outcome: &Outcome) -> Vec<String> {
        outcome.store.routes().map(|r| r.key.name.clone()).collect()
    }

    #[test]
    fn an_invalid_edit_keeps_the_last_valid_version() {
        let good = run(&[("services.yaml", SERVICES), ("route.yaml", ROUTE)]);
        assert!(good.problems.is_empty(), "{:?}", messages(&good));
        let broken_route = ROUTE.replace("name: orders-v1, port: 80", "name: orders-v3, port: 80");
        let mut broken = run(&[("services.yaml", SERVICES), ("route.yaml", &broken_route)]);
        assert!(route_names(&broken).is_empty());
        retain_last_good(&good.store, &mut broken);
        assert_eq!(route_names(&broken), ["orders"]);
        let route = broken.store.routes().next().unwrap();
        assert_eq!(
            route,
            good.store.routes().next().unwrap(),
            "the old version, not the new"
        );
        let text = messages(&broken).join("\n");
        assert!(text.contains("orders-v3"), "{text}");
        assert!(
            text.contains("the last valid version stays in force"),
            "{text}"
        );
    }

    #[test]
    fn a_deleted_resource_goes_and_an_unparsable_file_keeps_everything() {
        let good = run(&[("services.yaml", SERVICES), ("route.yaml", ROUTE)]);
        let mut deleted = run(&[("services.yaml", SERVICES)]);
        retain_last_good(&good.store, &mut deleted);
        assert!(
            route_names(&deleted).is_empty(),
            "a deleted route is deleted"
        );

        let mut unparsable = run(&[
            ("services.yaml", SERVICES),
            ("route.yaml", "kind: [unclosed"),
        ]);
        retain_last_good(&good.store, &mut unparsable);
        assert_eq!(route_names(&unparsable), ["orders"]);
    }

    #[test]
    fn a_kept_route_must_still_resolve() {
        let good = run(&[("services.yaml", SERVICES), ("route.yaml", ROUTE)]);
        // orders-v1 is deleted and the route broken in the same edit: the old route
        // would point at a Service that is gone, so it is not kept.
        let services =
            SERVICES.replace("metadata: {name: orders-v1}", "metadata: {name: orders-v9}");
        let broken_route = ROUTE.replace("weight: 90", "weight: -1");
        let mut outcome = run(&[("services.yaml", &services), ("route.yaml", &broken_route)]);
        retain_last_good(&good.store, &mut outcome);
        assert!(route_names(&outcome).is_empty());
    }
}
