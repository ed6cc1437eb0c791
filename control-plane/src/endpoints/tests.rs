use std::sync::{Arc, Mutex};

use super::*;
use crate::authority::Refusal;
use crate::resources::{EndpointAuthority, ObjectKey, Service};
use crate::store::Store;
use crate::translate::{MeshEndpoint, Origin};

fn endpoint(node_id: &str, address: &str) -> MeshEndpoint {
    MeshEndpoint {
        service: ObjectKey::new("default", "orders"),
        address: address.parse().unwrap(),
        node_id: node_id.to_owned(),
        identity: None,
        peer: Some("127.0.0.1:40000".parse().unwrap()),
        origin: Origin::Registered,
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

/// A pod the cluster says serves orders, with the pod's identity.
fn fed(pod: &str, address: &str, account: &str) -> MeshEndpoint {
    MeshEndpoint {
        service: ObjectKey::new("default", "orders"),
        address: address.parse().unwrap(),
        node_id: pod.to_owned(),
        identity: Some(format!("spiffe://cluster.local/ns/default/sa/{account}")),
        peer: None,
        origin: Origin::Cluster,
    }
}

#[test]
fn the_feed_is_replaced_whole_and_published_with_the_registrations() {
    let (d, published) = discovery();
    let _a = d.register(endpoint("a", "127.0.0.1:7002"), false);
    d.replace_feed(vec![
        fed("pod/default/b", "10.0.0.2:7002", "orders"),
        fed("pod/default/c", "10.0.0.3:7002", "orders"),
    ]);
    assert_eq!(last(&published), ["pod/default/b", "pod/default/c", "a"]);
    d.replace_feed(vec![fed("pod/default/c", "10.0.0.3:7002", "orders")]);
    assert_eq!(last(&published), ["pod/default/c", "a"], "b is gone");
    d.replace_feed(Vec::new());
    assert_eq!(last(&published), ["a"]);
}

#[test]
fn an_unchanged_feed_publishes_nothing() {
    let (d, published) = discovery();
    d.replace_feed(vec![
        fed("pod/default/c", "10.0.0.3:7002", "orders"),
        fed("pod/default/b", "10.0.0.2:7002", "orders"),
    ]);
    let before = published.lock().unwrap().len();
    // The same set in another order.
    d.replace_feed(vec![
        fed("pod/default/b", "10.0.0.2:7002", "orders"),
        fed("pod/default/c", "10.0.0.3:7002", "orders"),
    ]);
    assert_eq!(published.lock().unwrap().len(), before);
}

#[test]
fn the_cluster_decides_an_address_both_give() {
    let (d, published) = discovery();
    let _a = d.register(endpoint("a", "10.0.0.2:7002"), false);
    d.replace_feed(vec![fed("pod/default/b", "10.0.0.2:7002", "orders")]);
    assert_eq!(last(&published), ["pod/default/b"]);
}

#[test]
fn a_leaving_proxy_withdraws_its_own_pod_only_while_it_is_connected() {
    let (d, published) = discovery();
    d.replace_feed(vec![
        fed("pod/default/b", "10.0.0.2:7002", "orders"),
        fed("pod/default/c", "10.0.0.3:7002", "orders"),
    ]);
    let ip = "10.0.0.2".parse().unwrap();
    let leaving = d.withdraw(ip, "spiffe://cluster.local/ns/default/sa/orders".into());
    assert_eq!(last(&published), ["pod/default/c"], "withdrawn at once");
    // The cluster's next change does not bring it back.
    d.replace_feed(vec![
        fed("pod/default/b", "10.0.0.2:7002", "orders"),
        fed("pod/default/c", "10.0.0.3:7002", "orders"),
        fed("pod/default/d", "10.0.0.4:7002", "orders"),
    ]);
    assert_eq!(last(&published), ["pod/default/c", "pod/default/d"]);
    drop(leaving);
    assert_eq!(
        last(&published),
        ["pod/default/b", "pod/default/c", "pod/default/d"],
        "its stream ended: the cluster's word again"
    );
}

#[test]
fn a_leaving_proxy_cannot_withdraw_another_identitys_pod() {
    let (d, published) = discovery();
    d.replace_feed(vec![fed("pod/default/b", "10.0.0.2:7002", "orders")]);
    // Same IP (another container of the pod, or a reused address), another
    // identity: nothing is withdrawn.
    let ip = "10.0.0.2".parse().unwrap();
    let _other = d.withdraw(ip, "spiffe://cluster.local/ns/default/sa/web".into());
    assert_eq!(last(&published), ["pod/default/b"]);
    // The right identity from another IP: nothing either.
    let elsewhere = "10.0.0.9".parse().unwrap();
    let _far = d.withdraw(
        elsewhere,
        "spiffe://cluster.local/ns/default/sa/orders".into(),
    );
    assert_eq!(last(&published), ["pod/default/b"]);
    // An IPv4-mapped address is the IPv4 one.
    let mapped = "::ffff:10.0.0.2".parse().unwrap();
    let _it = d.withdraw(mapped, "spiffe://cluster.local/ns/default/sa/orders".into());
    assert!(last(&published).is_empty());
}

#[test]
fn a_dual_stack_pods_proxy_leaving_from_its_other_ip_withdraws_its_pod() {
    let (d, published) = discovery();
    let v4 = "10.0.0.2".parse().unwrap();
    let v6 = "fd00::2".parse().unwrap();
    d.replace_feed(Feed {
        endpoints: vec![
            fed("pod/default/b", "10.0.0.2:7002", "orders"),
            fed("pod/default/c", "10.0.0.3:7002", "orders"),
        ],
        aliases: [(v6, v4)].into_iter().collect(),
    });
    // Its xDS connection comes over IPv6; its endpoint is at its IPv4.
    let _leaving = d.withdraw(v6, "spiffe://cluster.local/ns/default/sa/orders".into());
    assert_eq!(last(&published), ["pod/default/c"]);
}

#[test]
fn a_proxy_leaving_on_two_streams_is_back_only_when_both_end() {
    let (d, published) = discovery();
    d.replace_feed(vec![
        fed("pod/default/b", "10.0.0.2:7002", "orders"),
        fed("pod/default/c", "10.0.0.3:7002", "orders"),
    ]);
    let ip: std::net::IpAddr = "10.0.0.2".parse().unwrap();
    let id = || "spiffe://cluster.local/ns/default/sa/orders".to_owned();
    let first = d.withdraw(ip, id());
    let publishes = published.lock().unwrap().len();
    // It reconnected while leaving: a second stream withdraws it too.
    let second = d.withdraw(ip, id());
    assert_eq!(
        published.lock().unwrap().len(),
        publishes,
        "nothing changed: nothing published"
    );
    drop(first);
    assert_eq!(published.lock().unwrap().len(), publishes);
    assert_eq!(
        d.endpoints().len(),
        1,
        "still withdrawn by its other stream"
    );
    drop(second);
    assert_eq!(last(&published), ["pod/default/b", "pod/default/c"]);
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
