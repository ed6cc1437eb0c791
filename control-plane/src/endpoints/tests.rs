use std::sync::{Arc, Mutex};

use super::*;
use crate::authority::Refusal;
use crate::resources::{EndpointAuthority, ObjectKey, Service};
use crate::store::Store;
use crate::translate::MeshEndpoint;

fn endpoint(node_id: &str, address: &str) -> MeshEndpoint {
    MeshEndpoint {
        service: ObjectKey::new("default", "orders"),
        address: address.parse().unwrap(),
        node_id: node_id.to_owned(),
        identity: None,
        peer: Some("127.0.0.1:40000".parse().unwrap()),
    }
}

/// The endpoint sets a discovery published, newest last.
type Published = Arc<Mutex<Vec<Vec<String>>>>;

/// A discovery whose published sets are kept, newest last.
fn discovery() -> (Arc<Discovery>, Published) {
    let published = Arc::new(Mutex::new(Vec::new()));
    let sink = published.clone();
    let discovery = Discovery::new(move |set: Vec<MeshEndpoint>| {
        let ids = set.into_iter().map(|e| e.node_id).collect();
        sink.lock().unwrap().push(ids);
    });
    (discovery, published)
}

fn last(published: &Mutex<Vec<Vec<String>>>) -> Vec<String> {
    published
        .lock()
        .unwrap()
        .last()
        .cloned()
        .unwrap_or_default()
}

#[test]
fn a_registration_is_an_endpoint_until_dropped() {
    let (d, published) = discovery();
    let a = d.register(endpoint("a", "127.0.0.1:7002"), false);
    let b = d.register(endpoint("b", "127.0.0.1:7003"), false);
    assert_eq!(last(&published), ["a", "b"]);
    drop(a);
    assert_eq!(last(&published), ["b"]);
    assert_eq!(d.endpoints().len(), 1);
    drop(b);
    assert!(last(&published).is_empty());
}

#[test]
fn a_draining_registration_is_withdrawn_at_once_and_only_once() {
    let (d, published) = discovery();
    let a = d.register(endpoint("a", "127.0.0.1:7002"), false);
    let _b = d.register(endpoint("b", "127.0.0.1:7003"), false);
    let before = published.lock().unwrap().len();
    assert!(a.drain(), "it was serving");
    assert_eq!(last(&published), ["b"], "published with the drain itself");
    assert_eq!(published.lock().unwrap().len(), before + 1);
    assert!(!a.drain(), "a second leave changes nothing");
    // Its stream ends later: still out.
    drop(a);
    assert_eq!(last(&published), ["b"]);
}

#[test]
fn a_proxy_that_reconnects_while_draining_never_comes_back() {
    let (d, published) = discovery();
    let _again = d.register(endpoint("a", "127.0.0.1:7002"), true);
    assert!(last(&published).is_empty());
    assert!(d.endpoints().is_empty());
}

#[test]
fn the_newest_registration_of_an_address_decides() {
    let (d, published) = discovery();
    let old = d.register(endpoint("a", "127.0.0.1:7002"), false);
    // The same proxy reconnects (its old stream is not gone yet) and leaves.
    let new = d.register(endpoint("a-again", "127.0.0.1:7002"), false);
    assert_eq!(last(&published), ["a-again"]);
    new.drain();
    assert!(
        last(&published).is_empty(),
        "the old stream does not bring a leaving proxy back"
    );
    drop(new);
    assert_eq!(last(&published), ["a"], "as before the reconnect");
    drop(old);
}

fn store(authority: EndpointAuthority) -> Store {
    let orders = Service {
        key: ObjectKey::new("default", "orders"),
        ports: Vec::new(),
        endpoints: Vec::new(),
        tls: None,
        authority,
        cluster_ip: None,
    };
    Store::new([orders], Vec::<crate::resources::HttpRoute>::new())
}

#[test]
fn admission_is_endpoint_authority_against_the_service_in_force() {
    let mut open = EndpointAuthority::named_like("orders");
    open.allow_unauthenticated = true;
    let e = endpoint("a", "127.0.0.1:7002");
    assert_eq!(
        admit(&store(open), "cluster.local", &e),
        Ok(Admission::Admitted)
    );
    let strict = store(EndpointAuthority::named_like("orders"));
    assert!(matches!(
        admit(&strict, "cluster.local", &e),
        Err(Refusal::Unauthenticated { .. })
    ));
}

#[test]
fn a_service_not_defined_admits_for_later_and_says_so() {
    let mut e = endpoint("a", "127.0.0.1:7002");
    e.service = ObjectKey::new("default", "nosuch");
    assert_eq!(
        admit(
            &store(EndpointAuthority::named_like("orders")),
            "cluster.local",
            &e
        ),
        Ok(Admission::UnknownService)
    );
}
