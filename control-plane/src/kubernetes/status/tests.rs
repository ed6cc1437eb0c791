//! Status computation: conditions from problems, kept times, other
//! controllers left alone, nothing written when nothing changed.

use super::*;

const NOW: &str = "2025-01-02T03:04:05Z";
const LATER: &str = "2025-01-02T09:09:09Z";

fn route(status: Option<Value>) -> Compact {
    route_to(
        json!([{"kind": "Service", "name": "orders", "port": 80}]),
        status,
    )
}

fn route_to(parent_refs: Value, status: Option<Value>) -> Compact {
    Compact::new(
        json!({
            "apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute",
            "metadata": {"name": "split", "namespace": "shop", "generation": 4},
            "spec": {"parentRefs": parent_refs},
        }),
        Some(4),
        status,
    )
}

fn at() -> ObjectRef {
    ObjectRef {
        namespace: "shop".into(),
        name: "split".into(),
    }
}

fn bad_backend() -> Problem {
    Problem {
        kind: Some("HTTPRoute".into()),
        namespace: Some("shop".into()),
        name: Some("split".into()),
        document: Some(1),
        field: Some("spec.rules[0].backendRefs[0].name".into()),
        ..Problem::in_file("HTTPRoute shop/split", "Service \"nowhere\" does not exist")
    }
}

fn kinds_with(kind: Watched, object: Compact) -> Kinds {
    let mut kinds = Kinds::new();
    kinds.entry(kind).or_default().insert(at(), object);
    kinds
}

fn condition_of<'a>(parents: &'a Value, kind: &str) -> &'a Value {
    parents[0]["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == kind)
        .unwrap()
}

#[test]
fn the_message_is_what_check_prints_without_the_file() {
    assert_eq!(
        message(&bad_backend()),
        "HTTPRoute shop/split: spec.rules[0].backendRefs[0].name: Service \"nowhere\" does not exist"
    );
}

#[test]
fn a_bad_backend_is_resolved_refs_false_with_the_message() {
    let writes = plan(
        &kinds_with(Watched::HttpRoute, route(None)),
        &[bad_backend()],
        NOW,
    );
    let [write] = writes.as_slice() else {
        panic!("{writes:?}")
    };
    let parents = &write.patch["status"]["parents"];
    assert_eq!(parents[0]["controllerName"], CONTROLLER_NAME);
    assert_eq!(parents[0]["parentRef"]["name"], "orders");
    let resolved = condition_of(parents, "ResolvedRefs");
    assert_eq!(resolved["status"], "False");
    assert_eq!(resolved["reason"], "BackendNotFound");
    assert_eq!(resolved["message"], message(&bad_backend()));
    assert_eq!(resolved["observedGeneration"], 4);
    assert_eq!(resolved["lastTransitionTime"], NOW);
    assert_eq!(condition_of(parents, "Accepted")["status"], "True");
    assert_eq!(write.status, *parents);
}

#[test]
fn a_status_already_in_place_is_not_written_again() {
    let first = route_parents(&route(None), &[&bad_backend()], NOW);
    let writes = plan(
        &kinds_with(Watched::HttpRoute, route(Some(first))),
        &[bad_backend()],
        LATER,
    );
    assert!(writes.is_empty(), "{writes:?}");
}

#[test]
fn a_fix_flips_the_condition_and_moves_only_its_time() {
    let before = route_parents(&route(None), &[&bad_backend()], NOW);
    let after = route_parents(&route(Some(before)), &[], LATER);
    let resolved = condition_of(&after, "ResolvedRefs");
    assert_eq!(
        (resolved["status"].as_str(), resolved["reason"].as_str()),
        (Some("True"), Some("ResolvedRefs"))
    );
    assert_eq!(resolved["lastTransitionTime"], LATER);
    assert_eq!(condition_of(&after, "Accepted")["lastTransitionTime"], NOW);
}

#[test]
fn other_controllers_entries_are_kept() {
    let theirs = json!({"controllerName": "example.com/gateway", "parentRef": {"name": "gw"}});
    let parents = route_parents(&route(Some(json!([theirs.clone()]))), &[], NOW);
    assert_eq!(parents[0], theirs);
    assert_eq!(parents[1]["controllerName"], CONTROLLER_NAME);
    assert_eq!(parents.as_array().map(Vec::len), Some(2));
}

#[test]
fn a_problem_with_the_route_itself_is_accepted_false() {
    let invalid = Problem {
        field: Some("spec.rules[0].timeouts.request".into()),
        message: "is not a duration".into(),
        ..bad_backend()
    };
    let parents = route_parents(&route(None), &[&invalid], NOW);
    let accepted = condition_of(&parents, "Accepted");
    assert_eq!(
        (accepted["status"].as_str(), accepted["reason"].as_str()),
        (Some("False"), Some("Invalid"))
    );
    assert_eq!(condition_of(&parents, "ResolvedRefs")["status"], "True");
}

#[test]
fn a_policy_with_a_problem_is_not_accepted() {
    let policy = Compact::new(
        json!({"kind": "TrafficPolicy", "metadata": {"name": "split"}}),
        Some(2),
        None,
    );
    let problem = Problem {
        kind: Some("TrafficPolicy".into()),
        field: Some("spec.loadBalancer".into()),
        message: "unknown field".into(),
        ..Problem::in_file("TrafficPolicy shop/split", "")
    };
    let writes = plan(
        &kinds_with(Watched::TrafficPolicy, policy.clone()),
        &[problem],
        NOW,
    );
    let [write] = writes.as_slice() else {
        panic!("{writes:?}")
    };
    let accepted = &write.patch["status"]["conditions"][0];
    assert_eq!(accepted["type"], "Accepted");
    assert_eq!(accepted["status"], "False");
    assert_eq!(accepted["reason"], "Invalid");
    assert!(
        accepted["message"]
            .as_str()
            .is_some_and(|m| m.contains("spec.loadBalancer: unknown field")),
        "{accepted}"
    );

    // Fixed: Accepted=True once, then nothing more.
    let fixed = kinds_with(
        Watched::TrafficPolicy,
        Compact {
            status: Some(write.status.clone()),
            ..policy
        },
    );
    let writes = plan(&fixed, &[], LATER);
    assert_eq!(writes[0].status[0]["status"], "True");
    let settled = kinds_with(
        Watched::TrafficPolicy,
        Compact {
            status: Some(writes[0].status.clone()),
            ..fixed[&Watched::TrafficPolicy][&at()].clone()
        },
    );
    assert!(plan(&settled, &[], LATER).is_empty());
}

fn ours(parents: &Value) -> Vec<&Value> {
    parents
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["controllerName"] == CONTROLLER_NAME)
        .collect()
}

#[test]
fn only_a_service_parent_gets_our_entry() {
    let mixed = route_to(
        json!([
            {"group": "gateway.networking.k8s.io", "kind": "Gateway", "name": "public"},
            {"group": "", "kind": "Service", "name": "orders", "port": 81},
        ]),
        None,
    );
    // The mesh validated a document with the Service parent only: its
    // problems number it 0.
    let bad_port = Problem {
        field: Some("spec.parentRefs[0].port".into()),
        message: "Service \"orders\" has no port 81 (it has 80)".into(),
        ..bad_backend()
    };
    let writes = plan(&kinds_with(Watched::HttpRoute, mixed), &[bad_port], NOW);
    let [write] = writes.as_slice() else {
        panic!("{writes:?}")
    };
    let parents = &write.status;
    let mine = ours(parents);
    let [entry] = mine.as_slice() else {
        panic!("{parents:#}")
    };
    assert_eq!(entry["parentRef"]["kind"], "Service");
    assert_eq!(entry["parentRef"]["name"], "orders");
    let accepted = condition_of(parents, "Accepted");
    assert_eq!(accepted["status"], "False");
    // Named as the object numbers it.
    assert!(
        accepted["message"]
            .as_str()
            .is_some_and(|m| m.contains("spec.parentRefs[1].port")),
        "{accepted}"
    );
}

#[test]
fn a_route_of_a_gateway_only_gets_no_status() {
    // `kind` omitted is a Gateway.
    let gateway_only = route_to(json!([{"name": "public"}]), None);
    assert!(plan(&kinds_with(Watched::HttpRoute, gateway_only), &[], NOW).is_empty());

    // The Gateway controller's entry stays as it is: nothing to write.
    let theirs =
        json!([{"controllerName": "example.com/gateway", "parentRef": {"name": "public"}}]);
    let with_theirs = route_to(json!([{"name": "public"}]), Some(theirs));
    assert!(plan(&kinds_with(Watched::HttpRoute, with_theirs), &[], NOW).is_empty());
}

#[test]
fn an_entry_of_ours_on_a_route_no_longer_the_meshs_is_taken_back() {
    let before = route_parents(&route(None), &[], NOW);
    let moved = route_to(json!([{"name": "public"}]), Some(before));
    let writes = plan(&kinds_with(Watched::HttpRoute, moved), &[], LATER);
    let [write] = writes.as_slice() else {
        panic!("{writes:?}")
    };
    assert_eq!(write.status, json!([]));
}

#[test]
fn the_write_names_the_resource_version_it_was_planned_from() {
    let mut planned = route(None);
    planned.resource_version = Some("41".into());
    let writes = plan(&kinds_with(Watched::HttpRoute, planned), &[], NOW);
    assert_eq!(writes[0].patch["metadata"]["resourceVersion"], "41");
    // Without one (never from the API server), no precondition.
    let writes = plan(&kinds_with(Watched::HttpRoute, route(None)), &[], NOW);
    assert!(writes[0].patch.get("metadata").is_none());
}

#[test]
fn a_long_message_is_cut_to_the_apis_limit_on_a_character_boundary() {
    assert_eq!(truncated("short".into()), "short");
    // 3-byte characters: the limit falls inside one.
    let long = "é€".repeat(MAX_MESSAGE);
    let cut = truncated(long.clone());
    assert!(cut.len() <= MAX_MESSAGE, "{}", cut.len());
    assert!(cut.ends_with('…'));
    assert!(long.starts_with(cut.trim_end_matches('…')));

    let huge = Problem {
        message: "x".repeat(MAX_MESSAGE * 2),
        ..bad_backend()
    };
    let parents = route_parents(&route(None), &[&huge], NOW);
    let message = condition_of(&parents, "ResolvedRefs")["message"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(message.len() <= MAX_MESSAGE && message.ends_with('…'));
}

#[test]
fn parents_are_at_most_the_apis_limit_and_other_controllers_keep_theirs() {
    let theirs: Vec<Value> = (0..MAX_PARENTS - 1)
        .map(|i| json!({"controllerName": "example.com/gateway", "parentRef": {"name": format!("gw-{i}")}}))
        .collect();
    let refs: Vec<Value> = (0..3)
        .map(|i| json!({"kind": "Service", "name": format!("svc-{i}")}))
        .collect();
    let parents = route_parents(
        &route_to(Value::Array(refs), Some(Value::Array(theirs.clone()))),
        &[],
        NOW,
    );
    let parents = parents.as_array().unwrap();
    assert_eq!(parents.len(), MAX_PARENTS);
    assert_eq!(parents[..MAX_PARENTS - 1], theirs[..]);
    assert_eq!(parents[MAX_PARENTS - 1]["parentRef"]["name"], "svc-0");
}
