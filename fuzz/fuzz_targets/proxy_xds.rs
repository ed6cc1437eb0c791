//! The proxy's xDS client: a stream of ADS responses, each decoded and compiled
//! into a snapshot exactly as the client applies it (a rejection is a NACK and
//! the accepted resources stay). Nothing may panic, and a compiled snapshot must
//! be usable: every route can pick a target, every cluster an endpoint.
//!
//! Input: records `[kind] [length: u16 little-endian] [length bytes]`, each an
//! encoded resource. `kind & 3` is its type, in the order the control plane
//! pushes them: 0 Cluster, 1 ClusterLoadAssignment, 2 Listener,
//! 3 RouteConfiguration. Records of one type in a row make one response;
//! `kind & 0x80` starts a new response of the same type; `kind & 0x40` makes
//! that response an empty one (the record's bytes are skipped).
#![no_main]

use http::{HeaderMap, Method};
use libfuzzer_sys::fuzz_target;
use remora_proto::type_url;
use remora_proto::xds::google::protobuf::Any;
use remora_proxy::balance;
use remora_proxy::compile::Resources;
use remora_proxy::fuzzing::apply_response;
use remora_proxy::snapshot::{Route, RouteAction, Snapshot};
use remora_proxy::upstream::EndpointRegistry;

const MAX_RESPONSES: usize = 16;
const MAX_RECORDS: usize = 64;

/// Requests routed through each compiled route table.
const AUTHORITIES: [&str; 7] = [
    "orders",
    "orders:80",
    "ORDERS.default.svc.cluster.local:80",
    "orders.shop",
    "api.example.com:443",
    "[::1]:80",
    "",
];
const PATHS: [&str; 5] = ["/", "/api", "/api/v1", "/apis?x=1", ""];

fuzz_target!(|data: &[u8]| {
    let registry = EndpointRegistry::default();
    let mut accepted = Resources::default();
    for (i, (t, resources)) in responses(data).into_iter().enumerate() {
        match apply_response(&accepted, t, &i.to_string(), &resources, &registry) {
            Ok((next, snapshot)) => {
                check(&snapshot);
                // The client subscribes from what it accepted.
                if let Err(e) = next.subscriptions() {
                    panic!("accepted resources whose subscriptions fail: {e}");
                }
                accepted = next;
            }
            Err(e) => {
                let _ = e.to_string();
            }
        }
    }
});

/// The responses the input describes (see the top of the file).
fn responses(mut data: &[u8]) -> Vec<(&'static str, Vec<Any>)> {
    let mut out: Vec<(&'static str, Vec<Any>)> = Vec::new();
    for _ in 0..MAX_RECORDS {
        if data.len() < 3 {
            break;
        }
        let kind = data[0];
        let length = usize::from(u16::from_le_bytes([data[1], data[2]]));
        let rest = &data[3..];
        let (value, tail) = rest.split_at(length.min(rest.len()));
        data = tail;
        let t = type_url::PUSH_ORDER[usize::from(kind & 3)];
        let continues = kind & 0xc0 == 0 && out.last().is_some_and(|(last, _)| *last == t);
        if continues {
            if let Some((_, resources)) = out.last_mut() {
                resources.push(any(t, value));
            }
            continue;
        }
        if out.len() == MAX_RESPONSES {
            break;
        }
        let resources = if kind & 0x40 != 0 {
            Vec::new()
        } else {
            vec![any(t, value)]
        };
        out.push((t, resources));
    }
    out
}

fn any(type_url: &str, value: &[u8]) -> Any {
    Any {
        type_url: type_url.to_owned(),
        value: value.to_vec(),
    }
}

/// What the request path does with a snapshot, minus the network.
fn check(snapshot: &Snapshot) {
    let _ = snapshot.is_ready();
    if let Some(inbound) = &snapshot.inbound {
        let _ = inbound.mode();
    }
    for cluster in snapshot.clusters.values() {
        for hash in [None, Some(0), Some(u64::MAX / 2), Some(u64::MAX)] {
            let _ = balance::pick(cluster, hash);
        }
    }
    let Some(table) = &snapshot.outbound else {
        return;
    };
    for host in &table.virtual_hosts {
        for route in &host.routes {
            check_split(route);
        }
    }
    let headers = HeaderMap::new();
    for authority in AUTHORITIES {
        let Some(host) = table.virtual_host(authority) else {
            continue;
        };
        for path in PATHS {
            let _ = host.route(&Method::GET, path, &headers);
        }
    }
}

/// The outbound handler draws from `0..total` when a split has several targets:
/// every draw must land on one.
fn check_split(route: &Route) {
    let RouteAction::Split(split) = &route.action;
    assert!(
        !split.targets.is_empty() && split.total > 0,
        "route {} compiled with no weight to split",
        route.name
    );
    assert_eq!(
        split.targets.last().map(|(cumulative, _)| *cumulative),
        Some(split.total),
        "route {}: the cumulative weights do not end at the total",
        route.name
    );
    assert!(split.pick_index(0).is_some() && split.pick_index(split.total - 1).is_some());
}
