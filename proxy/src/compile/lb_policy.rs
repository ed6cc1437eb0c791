//! A cluster's balancer from its `load_balancing_policy` list: the first policy
//! Remora knows, as every xDS client does, so the control plane can put
//! Remora's own policy first and standard ones after it for other clients
//! (gRPC). A cluster without the list (an older control plane) is read from
//! its `lb_policy` enum (`cluster_policy::balancer`).
//!
//! Known, by `typed_config` type:
//! - `remora.lb.v1.PeakEwma`: P2C over peak-EWMA latency x requests in flight;
//! - Envoy's `LeastRequest`: P2C over requests in flight (Remora always
//!   compares two, whatever `choice_count` says);
//! - Envoy's `RoundRobin`: weighted round robin;
//! - Envoy's `RingHash` and `Maglev`: the hash ring (`minimum_ring_size`
//!   honoured for `RingHash`).
//!
//! Unknown types are passed over; a list with none Remora knows is rejected.

use remora_proto::prost::{Message, Name};
use remora_proto::type_url;
use remora_proto::xds::envoy::config::cluster::v3::Cluster as XdsCluster;
use remora_proto::xds::envoy::extensions::load_balancing_policies::{
    least_request::v3::LeastRequest, maglev::v3::Maglev, ring_hash::v3::RingHash,
    round_robin::v3::RoundRobin as RoundRobinConfig,
};
use remora_proto::xds::google::protobuf::Any;

use super::{cluster_policy, CompileError};
use crate::balance::ring::MAX_RING_SIZE;
use crate::balance::{Balancer, Ring, RoundRobin};
use crate::upstream::WeightedEndpoint;

/// The list when the cluster has one with entries, else `lb_policy`.
pub fn balancer(c: &XdsCluster, endpoints: &[WeightedEndpoint]) -> Result<Balancer, CompileError> {
    let Some(list) = c
        .load_balancing_policy
        .as_ref()
        .filter(|l| !l.policies.is_empty())
    else {
        return cluster_policy::balancer(c, endpoints);
    };
    for (i, policy) in list.policies.iter().enumerate() {
        let Some(config) = policy
            .typed_extension_config
            .as_ref()
            .and_then(|t| t.typed_config.as_ref())
        else {
            continue;
        };
        let field =
            format!("load_balancing_policy.policies[{i}].typed_extension_config.typed_config");
        if let Some(balancer) = known(c, config, &field, endpoints)? {
            return Ok(balancer);
        }
    }
    let offered: Vec<&str> = list
        .policies
        .iter()
        .filter_map(|p| p.typed_extension_config.as_ref()?.typed_config.as_ref())
        .map(|a| a.type_url.as_str())
        .collect();
    Err(CompileError::new(
        "Cluster",
        &c.name,
        "load_balancing_policy.policies",
        format!(
            "no policy Remora supports (remora.lb.v1.PeakEwma, Envoy's LeastRequest, RoundRobin, RingHash, Maglev); offered: {offered:?}"
        ),
    ))
}

/// The balancer for one entry, `None` for a type Remora does not know.
fn known(
    c: &XdsCluster,
    config: &Any,
    field: &str,
    endpoints: &[WeightedEndpoint],
) -> Result<Option<Balancer>, CompileError> {
    let err = |m: String| CompileError::new("Cluster", &c.name, field, m);
    let url = config.type_url.as_str();
    let balancer = if url == type_url::PEAK_EWMA {
        decode::<remora_proto::lb::PeakEwma>(config).map_err(err)?;
        Balancer::PeakEwma
    } else if url == LeastRequest::type_url() {
        decode::<LeastRequest>(config).map_err(err)?;
        Balancer::LeastRequest
    } else if url == RoundRobinConfig::type_url() {
        decode::<RoundRobinConfig>(config).map_err(err)?;
        Balancer::RoundRobin(RoundRobin::new(endpoints))
    } else if url == RingHash::type_url() {
        let ring = decode::<RingHash>(config).map_err(err)?;
        let minimum = ring.minimum_ring_size.map(|s| s.value);
        if minimum.is_some_and(|m| m > MAX_RING_SIZE as u64) {
            return Err(CompileError::new(
                "Cluster",
                &c.name,
                format!("{field}.minimum_ring_size"),
                format!("at most {MAX_RING_SIZE}"),
            ));
        }
        Balancer::RingHash(Ring::new(endpoints, minimum.map(|m| m as usize)))
    } else if url == Maglev::type_url() {
        decode::<Maglev>(config).map_err(err)?;
        Balancer::RingHash(Ring::new(endpoints, None))
    } else {
        return Ok(None);
    };
    Ok(Some(balancer))
}

fn decode<M: Message + Default>(any: &Any) -> Result<M, String> {
    M::decode(any.value.as_slice()).map_err(|e| format!("cannot decode {}: {e}", any.type_url))
}

#[cfg(test)]
mod tests {
    use super::*;
    use remora_proto::xds::envoy::config::cluster::v3::cluster::LbPolicy;
    use remora_proto::xds::envoy::config::cluster::v3::{
        load_balancing_policy::Policy, LoadBalancingPolicy,
    };
    use remora_proto::xds::envoy::config::core::v3::TypedExtensionConfig;
    use remora_proto::xds::google::protobuf::UInt64Value;

    fn any<M: Message + Name>(m: &M) -> Any {
        Any {
            type_url: M::type_url(),
            value: m.encode_to_vec(),
        }
    }

    fn peak_ewma() -> Any {
        Any {
            type_url: type_url::PEAK_EWMA.to_owned(),
            value: Vec::new(),
        }
    }

    /// A cluster with this list, and `lb_policy` set to something else so a
    /// test sees which one was read.
    fn cluster(list: Vec<Any>) -> XdsCluster {
        XdsCluster {
            name: "orders".into(),
            lb_policy: LbPolicy::RoundRobin as i32,
            load_balancing_policy: Some(LoadBalancingPolicy {
                policies: list
                    .into_iter()
                    .map(|typed_config| Policy {
                        typed_extension_config: Some(TypedExtensionConfig {
                            name: "p".into(),
                            typed_config: Some(typed_config),
                        }),
                    })
                    .collect(),
            }),
            ..Default::default()
        }
    }

    fn pick(list: Vec<Any>) -> Result<Balancer, CompileError> {
        balancer(&cluster(list), &[])
    }

    /// What gRPC does not know but Remora does not either.
    fn unknown() -> Any {
        Any {
            type_url: "type.googleapis.com/example.lb.v1.Magic".into(),
            value: vec![1, 2, 3],
        }
    }

    #[test]
    fn the_first_known_policy_wins() {
        let list = vec![
            unknown(),
            peak_ewma(),
            any(&LeastRequest::default()),
            any(&RoundRobinConfig::default()),
        ];
        assert!(matches!(pick(list), Ok(Balancer::PeakEwma)));
        let list = vec![any(&LeastRequest::default()), peak_ewma()];
        assert!(matches!(pick(list), Ok(Balancer::LeastRequest)));
        let list = vec![unknown(), any(&RoundRobinConfig::default())];
        assert!(matches!(pick(list), Ok(Balancer::RoundRobin(_))));
        let ring = RingHash {
            minimum_ring_size: Some(UInt64Value { value: 4096 }),
            ..Default::default()
        };
        assert!(matches!(
            pick(vec![any(&ring), any(&RoundRobinConfig::default())]),
            Ok(Balancer::RingHash(_))
        ));
        assert!(matches!(
            pick(vec![any(&Maglev::default())]),
            Ok(Balancer::RingHash(_))
        ));
    }

    #[test]
    fn without_a_list_lb_policy_decides() {
        let mut c = cluster(Vec::new());
        assert!(matches!(balancer(&c, &[]), Ok(Balancer::RoundRobin(_))));
        c.load_balancing_policy = None;
        c.lb_policy = LbPolicy::LeastRequest as i32;
        assert!(matches!(balancer(&c, &[]), Ok(Balancer::LeastRequest)));
    }

    #[test]
    fn a_list_of_unknown_policies_is_rejected_naming_them() {
        let e = pick(vec![unknown()]).unwrap_err();
        assert_eq!(e.field, "load_balancing_policy.policies");
        assert!(e.message.contains("example.lb.v1.Magic"), "{e}");
    }

    #[test]
    fn a_known_policy_that_does_not_decode_or_asks_too_much_is_rejected() {
        let garbage = Any {
            type_url: RingHash::type_url(),
            value: vec![0xff, 0xff, 0xff],
        };
        let e = pick(vec![garbage]).unwrap_err();
        assert_eq!(
            e.field,
            "load_balancing_policy.policies[0].typed_extension_config.typed_config"
        );
        let huge = RingHash {
            minimum_ring_size: Some(UInt64Value {
                value: MAX_RING_SIZE as u64 + 1,
            }),
            ..Default::default()
        };
        let e = pick(vec![any(&huge)]).unwrap_err();
        assert!(e.field.ends_with("typed_config.minimum_ring_size"), "{e}");
    }
}
