//! A Service's balancer -> the Cluster's `load_balancing_policy` list.
//!
//! Each xDS client walks the list and takes the first policy it knows, so one
//! Cluster serves every kind of client: Remora's proxy takes Remora's own
//! peak-EWMA policy (`remora.lb.v1.PeakEwma`), gRPC's xDS client, which knows
//! none of Remora's types nor (in C-core) least request, falls back to round
//! robin. Every list ends with round robin, which every xDS client supports.
//!
//! | balancer | list |
//! | --- | --- |
//! | peak-EWMA (default) | `PeakEwma`, `LeastRequest` (2 choices), `RoundRobin` |
//! | least request | `LeastRequest` (2 choices), `RoundRobin` |
//! | round robin | `RoundRobin` |
//! | consistent hash | `RingHash` (`minimum_ring_size` when set), `RoundRobin` |
//!
//! The old `lb_policy` enum stays beside the list for Remora proxies that
//! predate it (see `cluster.rs`); a client that knows the list ignores it.

use prost::Message;
use remora_proto::type_url;
use remora_proto::xds::envoy::config::cluster::v3::{load_balancing_policy, LoadBalancingPolicy};
use remora_proto::xds::envoy::config::core::v3::TypedExtensionConfig;
use remora_proto::xds::envoy::extensions::load_balancing_policies::{
    least_request::v3::LeastRequest, ring_hash::v3::RingHash, round_robin::v3::RoundRobin,
};
use remora_proto::xds::google::protobuf::{Any, UInt32Value, UInt64Value};

use super::encode;
use crate::resources::LoadBalancer;

/// The names of the list's entries (`typed_extension_config.name`): clients
/// choose by type, the names are for people reading the config.
pub const PEAK_EWMA: &str = "remora.load_balancing_policies.peak_ewma";
pub const LEAST_REQUEST: &str = "envoy.load_balancing_policies.least_request";
pub const ROUND_ROBIN: &str = "envoy.load_balancing_policies.round_robin";
pub const RING_HASH: &str = "envoy.load_balancing_policies.ring_hash";

/// How many endpoints least request compares (Remora's P2C compares two).
const CHOICES: u32 = 2;

pub fn load_balancing_policy(balancer: &LoadBalancer) -> LoadBalancingPolicy {
    let least_request = || {
        policy(
            LEAST_REQUEST,
            encode::message(&LeastRequest {
                choice_count: Some(UInt32Value { value: CHOICES }),
                ..Default::default()
            }),
        )
    };
    let round_robin = || policy(ROUND_ROBIN, encode::message(&RoundRobin::default()));
    let policies = match balancer {
        LoadBalancer::PeakEwma => vec![peak_ewma(), least_request(), round_robin()],
        LoadBalancer::LeastRequest => vec![least_request(), round_robin()],
        LoadBalancer::RoundRobin => vec![round_robin()],
        LoadBalancer::ConsistentHash {
            minimum_ring_size, ..
        } => vec![
            policy(
                RING_HASH,
                encode::message(&RingHash {
                    minimum_ring_size: minimum_ring_size.map(|n| UInt64Value { value: n.into() }),
                    ..Default::default()
                }),
            ),
            round_robin(),
        ],
    };
    LoadBalancingPolicy { policies }
}

fn peak_ewma() -> load_balancing_policy::Policy {
    policy(
        PEAK_EWMA,
        Any {
            type_url: type_url::PEAK_EWMA.to_owned(),
            value: remora_proto::lb::PeakEwma {}.encode_to_vec(),
        },
    )
}

fn policy(name: &str, typed_config: Any) -> load_balancing_policy::Policy {
    load_balancing_policy::Policy {
        typed_extension_config: Some(TypedExtensionConfig {
            name: name.to_owned(),
            typed_config: Some(typed_config),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::HashKey;

    fn types(balancer: &LoadBalancer) -> Vec<String> {
        load_balancing_policy(balancer)
            .policies
            .into_iter()
            .map(|p| {
                let config = p.typed_extension_config.unwrap();
                config.typed_config.unwrap().type_url
            })
            .collect()
    }

    const ROUND_ROBIN_TYPE: &str =
        "type.googleapis.com/envoy.extensions.load_balancing_policies.round_robin.v3.RoundRobin";
    const LEAST_REQUEST_TYPE: &str =
        "type.googleapis.com/envoy.extensions.load_balancing_policies.least_request.v3.LeastRequest";
    const RING_HASH_TYPE: &str =
        "type.googleapis.com/envoy.extensions.load_balancing_policies.ring_hash.v3.RingHash";

    #[test]
    fn remoras_own_policy_comes_first_and_round_robin_last() {
        assert_eq!(
            types(&LoadBalancer::PeakEwma),
            [type_url::PEAK_EWMA, LEAST_REQUEST_TYPE, ROUND_ROBIN_TYPE]
        );
        assert_eq!(
            types(&LoadBalancer::LeastRequest),
            [LEAST_REQUEST_TYPE, ROUND_ROBIN_TYPE]
        );
        assert_eq!(types(&LoadBalancer::RoundRobin), [ROUND_ROBIN_TYPE]);
    }

    #[test]
    fn least_request_compares_two_endpoints() {
        let list = load_balancing_policy(&LoadBalancer::LeastRequest);
        let any = list.policies[0]
            .typed_extension_config
            .as_ref()
            .and_then(|c| c.typed_config.as_ref())
            .unwrap();
        let config = LeastRequest::decode(any.value.as_slice()).unwrap();
        assert_eq!(config.choice_count, Some(UInt32Value { value: 2 }));
    }

    #[test]
    fn consistent_hashing_is_a_ring_hash_with_the_policys_ring_size() {
        let balancer = |minimum_ring_size| LoadBalancer::ConsistentHash {
            key: HashKey::Header("x-user".into()),
            minimum_ring_size,
        };
        assert_eq!(
            types(&balancer(Some(4096))),
            [RING_HASH_TYPE, ROUND_ROBIN_TYPE]
        );
        let ring = |b: &LoadBalancer| {
            let list = load_balancing_policy(b);
            let any = list.policies[0]
                .typed_extension_config
                .clone()
                .and_then(|c| c.typed_config)
                .unwrap();
            RingHash::decode(any.value.as_slice()).unwrap()
        };
        let r = ring(&balancer(Some(4096)));
        assert_eq!(r.minimum_ring_size, Some(UInt64Value { value: 4096 }));
        // gRPC accepts DEFAULT_HASH (0) and XX_HASH only.
        assert_eq!(r.hash_function, 0);
        assert_eq!(ring(&balancer(None)).minimum_ring_size, None);
    }
}
