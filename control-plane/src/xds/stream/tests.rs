use remora_proto::xds::google::protobuf::Any;
use remora_proto::xds::google::rpc;

use super::*;

const CDS: ResourceType = ResourceType::Cluster;
const EDS: ResourceType = ResourceType::Endpoint;
const LDS: ResourceType = ResourceType::Listener;
const RDS: ResourceType = ResourceType::Route;

fn any(t: ResourceType, content: &str) -> Any {
    Any {
        type_url: t.type_url().into(),
        value: content.as_bytes().to_vec(),
    }
}

fn map(t: ResourceType, items: &[(&str, &str)]) -> ResourceMap {
    items
        .iter()
        .map(|(name, content)| ((*name).to_owned(), any(t, content)))
        .collect()
}

fn resources(clusters: &[(&str, &str)], endpoints: &[(&str, &str)]) -> Resources {
    Resources {
        clusters: map(CDS, clusters).into(),
        endpoints: map(EDS, endpoints).into(),
        listeners: map(LDS, &[("outbound", "l1")]).into(),
        routes: map(RDS, &[("outbound", "r1")]).into(),
    }
}

fn base() -> Resources {
    resources(&[("a", "a1"), ("b", "b1")], &[("a", "ea1"), ("b", "eb1")])
}

fn request(t: ResourceType, names: &[&str], version: &str, nonce: &str) -> DiscoveryRequest {
    DiscoveryRequest {
        type_url: t.type_url().into(),
        resource_names: names.iter().map(|n| (*n).to_owned()).collect(),
        version_info: version.into(),
        response_nonce: nonce.into(),
        ..Default::default()
    }
}

fn ack(t: ResourceType, names: &[&str], r: &DiscoveryResponse) -> DiscoveryRequest {
    request(t, names, &r.version_info, &r.nonce)
}

fn nack(t: ResourceType, names: &[&str], r: &DiscoveryResponse, message: &str) -> DiscoveryRequest {
    DiscoveryRequest {
        error_detail: Some(rpc::Status {
            code: 3,
            message: message.into(),
            details: Vec::new(),
        }),
        ..request(t, names, "", &r.nonce)
    }
}

fn one(mut responses: Vec<DiscoveryResponse>) -> DiscoveryResponse {
    assert_eq!(
        responses.len(),
        1,
        "expected one response, got {responses:#?}"
    );
    responses.remove(0)
}

/// The resource contents in a response, as strings.
fn contents(r: &DiscoveryResponse) -> Vec<String> {
    r.resources
        .iter()
        .map(|a| String::from_utf8_lossy(&a.value).into_owned())
        .collect()
}

fn summary(responses: &[DiscoveryResponse]) -> Vec<(ResourceType, Vec<String>)> {
    responses
        .iter()
        .map(|r| {
            (
                ResourceType::from_type_url(&r.type_url).unwrap(),
                contents(r),
            )
        })
        .collect()
}

/// A stream that has received and ACKed everything: CDS and LDS wildcard, EDS for
/// a and b, RDS outbound.
fn synced(all: &Resources) -> StreamState {
    let mut s = StreamState::new("node", "s");
    for (t, names) in [
        (CDS, vec![]),
        (LDS, vec![]),
        (EDS, vec!["a", "b"]),
        (RDS, vec!["outbound"]),
    ] {
        let r = one(s.on_request(&request(t, &names, "", ""), all));
        assert!(s.on_request(&ack(t, &names, &r), all).is_empty());
    }
    s
}

#[test]
fn the_first_request_gets_the_full_set_with_a_version_and_a_nonce() {
    let mut s = StreamState::new("node", "s");
    let r = one(s.on_request(&request(CDS, &[], "", ""), &base()));
    assert_eq!(r.type_url, CDS.type_url());
    assert_eq!(contents(&r), ["a1", "b1"]);
    assert!(!r.version_info.is_empty());
    assert!(!r.nonce.is_empty());
    assert_eq!(
        s.status()[&CDS].sent_version.as_deref(),
        Some(r.version_info.as_str())
    );
    assert_eq!(s.status()[&CDS].acked_version, None);
}

#[test]
fn an_ack_is_recorded_and_nothing_is_resent() {
    let mut s = StreamState::new("node", "s");
    let r = one(s.on_request(&request(CDS, &[], "", ""), &base()));
    assert!(s.on_request(&ack(CDS, &[], &r), &base()).is_empty());
    assert_eq!(
        s.status()[&CDS].acked_version.as_deref(),
        Some(r.version_info.as_str())
    );
}

#[test]
fn a_nack_is_recorded_and_the_version_is_not_resent() {
    let mut s = synced(&base());
    let changed = resources(&[("a", "a2"), ("b", "b1")], &[("a", "ea1"), ("b", "eb1")]);
    let bad = one(s.on_change(&changed));
    let status = s.status()[&CDS].clone();
    let acked = status.acked_version.clone();
    assert!(s
        .on_request(&nack(CDS, &[], &bad, "cluster a: bad"), &changed)
        .is_empty());
    let status = s.status()[&CDS].clone();
    assert_eq!(
        status.acked_version, acked,
        "a NACK does not change the ACKed version"
    );
    assert_eq!(
        status.last_nack,
        Some(Nack {
            version: bad.version_info.clone(),
            nonce: bad.nonce.clone(),
            message: "cluster a: bad".into(),
        })
    );
    // The same resources again: nothing to send.
    assert!(s.on_change(&changed).is_empty());
    // A fix goes out, and its ACK clears the NACK.
    let fixed = resources(&[("a", "a3"), ("b", "b1")], &[("a", "ea1"), ("b", "eb1")]);
    let good = one(s.on_change(&fixed));
    assert!(s.on_request(&ack(CDS, &[], &good), &fixed).is_empty());
    assert_eq!(s.status()[&CDS].last_nack, None);
    assert_eq!(
        s.status()[&CDS].acked_version.as_deref(),
        Some(good.version_info.as_str())
    );
}

#[test]
fn a_stale_nonce_is_ignored() {
    let mut s = synced(&base());
    let endpoints = [("a", "ea1"), ("b", "eb1")];
    let first = one(s.on_change(&resources(&[("a", "a2"), ("b", "b1")], &endpoints)));
    let all = resources(&[("a", "a3"), ("b", "b1")], &endpoints);
    let second = one(s.on_change(&all));
    // The client answers the first response after the second was sent.
    assert!(s
        .on_request(&nack(CDS, &[], &first, "old"), &all)
        .is_empty());
    assert!(s.on_request(&ack(CDS, &[], &first), &all).is_empty());
    let status = s.status()[&CDS].clone();
    assert_eq!(status.last_nack, None);
    assert_ne!(
        status.acked_version.as_deref(),
        Some(first.version_info.as_str())
    );
    assert!(s.on_request(&ack(CDS, &[], &second), &all).is_empty());
    assert_eq!(
        s.status()[&CDS].acked_version.as_deref(),
        Some(second.version_info.as_str())
    );
}

#[test]
fn named_types_send_only_the_subscribed_names() {
    let mut s = StreamState::new("node", "s");
    let r = one(s.on_request(&request(EDS, &["b"], "", ""), &base()));
    assert_eq!(contents(&r), ["eb1"]);
    // Changing the subscription answers with the new set.
    let r2 = one(s.on_request(
        &request(EDS, &["a", "b"], &r.version_info, &r.nonce),
        &base(),
    ));
    assert_eq!(contents(&r2), ["ea1", "eb1"]);
    let r3 = one(s.on_request(&request(EDS, &["a"], &r2.version_info, &r2.nonce), &base()));
    assert_eq!(contents(&r3), ["ea1"]);
}

#[test]
fn a_named_resource_that_does_not_exist_yet_is_sent_when_it_appears() {
    let mut s = StreamState::new("node", "s");
    assert!(s
        .on_request(&request(EDS, &["c"], "", ""), &base())
        .is_empty());
    let with_c = resources(&[("a", "a1")], &[("c", "ec1")]);
    assert_eq!(contents(&one(s.on_change(&with_c))), ["ec1"]);
}

#[test]
fn listeners_and_clusters_by_name_answer_even_when_missing() {
    // gRPC learns that a listener does not exist from a response without it.
    let mut s = StreamState::new("node", "s");
    let r = one(s.on_request(&request(LDS, &["nope:80"], "", ""), &base()));
    assert!(r.resources.is_empty());
    let r = one(s.on_request(&request(CDS, &["a"], "", ""), &base()));
    assert_eq!(contents(&r), ["a1"]);
}

#[test]
fn naming_nothing_after_names_unsubscribes_rather_than_asks_for_all() {
    let mut s = StreamState::new("node", "s");
    let r = one(s.on_request(&request(CDS, &["a"], "", ""), &base()));
    let r = one(s.on_request(&ack(CDS, &[], &r), &base()));
    assert!(r.resources.is_empty(), "{:?}", contents(&r));
    // A client that never named a Cluster still gets them all.
    let mut proxy = StreamState::new("proxy", "p");
    let r = one(proxy.on_request(&request(CDS, &[], "", ""), &base()));
    assert!(proxy.on_request(&ack(CDS, &[], &r), &base()).is_empty());
    assert_eq!(contents(&r), ["a1", "b1"]);
}

#[test]
fn unchanged_resources_are_not_resent() {
    let mut s = synced(&base());
    assert!(s.on_change(&base()).is_empty());
}

#[test]
fn only_changed_types_are_pushed() {
    let mut s = synced(&base());
    let all = resources(&[("a", "a1"), ("b", "b1")], &[("a", "ea2"), ("b", "eb1")]);
    assert_eq!(
        summary(&s.on_change(&all)),
        [(EDS, vec!["ea2".into(), "eb1".into()])]
    );
}

#[test]
fn a_change_is_pushed_make_before_break() {
    let mut s = synced(&base());
    // b is removed and c added; routes and listeners change too.
    let mut all = resources(&[("a", "a1"), ("c", "c1")], &[("a", "ea1"), ("c", "ec1")]);
    all.listeners = map(LDS, &[("outbound", "l2")]).into();
    all.routes = map(RDS, &[("outbound", "r2")]).into();
    assert_eq!(
        summary(&s.on_change(&all)),
        [
            (CDS, vec!["a1".into(), "b1".into(), "c1".into()]),
            // Only a is subscribed and existing; b's assignment is gone.
            (EDS, vec!["ea1".into()]),
            (LDS, vec!["l2".into()]),
            (RDS, vec!["r2".into()]),
            (CDS, vec!["a1".into(), "c1".into()]),
        ]
    );
}

#[test]
fn a_removal_alone_sends_clusters_once() {
    let mut s = synced(&base());
    let all = resources(&[("a", "a1")], &[("a", "ea1"), ("b", "eb1")]);
    assert_eq!(summary(&s.on_change(&all)), [(CDS, vec!["a1".into()])]);
}

#[test]
fn a_removed_route_config_that_is_still_subscribed_is_omitted() {
    let mut s = synced(&base());
    let mut all = base();
    all.routes = Default::default();
    let r = one(s.on_change(&all));
    assert_eq!(r.type_url, RDS.type_url());
    assert!(r.resources.is_empty());
}

#[test]
fn nonces_are_unique_and_versions_depend_only_on_resources() {
    let mut one_stream = StreamState::new("a", "s1");
    let mut other = StreamState::new("b", "s2");
    let r1 = one(one_stream.on_request(&request(CDS, &[], "", ""), &base()));
    let r2 = one(other.on_request(&request(CDS, &[], "", ""), &base()));
    assert_eq!(r1.version_info, r2.version_info);
    assert_ne!(r1.nonce, r2.nonce);
    let r3 = one(one_stream.on_request(&request(LDS, &[], "", ""), &base()));
    assert_ne!(r1.nonce, r3.nonce);
}

#[test]
fn a_new_stream_answers_even_if_the_client_has_the_version() {
    let mut s = StreamState::new("node", "s");
    let r = one(s.on_request(&request(CDS, &[], "", ""), &base()));
    let mut reconnected = StreamState::new("node", "t");
    let again = one(reconnected.on_request(&request(CDS, &[], &r.version_info, ""), &base()));
    assert_eq!(again.version_info, r.version_info);
    // But a repeated initial request on the same stream is not answered twice.
    assert!(reconnected
        .on_request(&request(CDS, &[], &r.version_info, ""), &base())
        .is_empty());
}

#[test]
fn unknown_types_are_ignored() {
    let mut s = StreamState::new("node", "s");
    let req = DiscoveryRequest {
        type_url: "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret".into(),
        ..Default::default()
    };
    assert!(s.on_request(&req, &base()).is_empty());
    assert!(s.status().is_empty());
}

#[test]
fn types_never_requested_are_never_pushed() {
    let mut s = StreamState::new("node", "s");
    let r = one(s.on_request(&request(CDS, &[], "", ""), &base()));
    s.on_request(&ack(CDS, &[], &r), &base());
    let mut all = base();
    all.routes = map(RDS, &[("outbound", "r2")]).into();
    assert!(s.on_change(&all).is_empty());
}

#[test]
fn held_endpoints_are_sent_only_on_release() {
    let mut s = StreamState::new("p", "n");
    s.hold_endpoints();
    let cds = one(s.on_request(&request(CDS, &[], "old", ""), &base()));
    assert_eq!(contents(&cds), ["a1", "b1"]);
    // A reconnecting proxy asks for its endpoints: nothing until the hold ends,
    // so it keeps the ones it has.
    assert!(s
        .on_request(&request(EDS, &["a"], "old", ""), &base())
        .is_empty());
    // Changes to other types still flow; endpoint changes wait.
    let changed = resources(&[("a", "a2"), ("b", "b1")], &[("a", "ea2"), ("b", "eb1")]);
    let pushed = s.on_change(&changed);
    assert_eq!(summary(&pushed), [(CDS, vec!["a2".into(), "b1".into()])]);
    let released = one(s.release_endpoints(&changed));
    assert_eq!(released.type_url, EDS.type_url());
    assert_eq!(contents(&released), ["ea2"]);
}
