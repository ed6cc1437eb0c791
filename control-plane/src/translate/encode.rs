//! Packing resources into `Any` with canonical bytes: equal resources always give
//! equal bytes, in this process and the next, so a hash of the bytes is a version.
//!
//! prost encodes fields in tag order and repeated fields in order, which is
//! canonical, except for maps: envoy-types generates `HashMap`s, whose iteration
//! order differs between instances. The only multi-entry maps Remora writes are the
//! `fields` of `metadata.filter_metadata["remora"]` (on clusters, endpoints and
//! listeners' filter chains), so metadata is left out of the main encoding and
//! appended as a mirror message with sorted (`BTreeMap`) maps.
//! Protobuf parsers accept fields in any order; the decoded message is unchanged.

use std::collections::BTreeMap;

use prost::{Message, Name};
use remora_proto::xds::envoy::config::cluster::v3::Cluster;
use remora_proto::xds::envoy::config::core::v3::Metadata;
use remora_proto::xds::envoy::config::endpoint::v3::ClusterLoadAssignment;
use remora_proto::xds::envoy::config::listener::v3::Listener;
use remora_proto::xds::google::protobuf::{Any, Value};

/// `envoy.config.cluster.v3.Cluster.metadata`
const CLUSTER_METADATA: u32 = 25;
/// `envoy.config.endpoint.v3.ClusterLoadAssignment.endpoints`
const ASSIGNMENT_ENDPOINTS: u32 = 2;
/// `envoy.config.endpoint.v3.LocalityLbEndpoints.lb_endpoints`
const LOCALITY_LB_ENDPOINTS: u32 = 2;
/// `envoy.config.endpoint.v3.LbEndpoint.metadata`
const LB_ENDPOINT_METADATA: u32 = 3;
/// `envoy.config.listener.v3.Listener.filter_chains`
const LISTENER_FILTER_CHAINS: u32 = 3;
/// `envoy.config.listener.v3.FilterChain.metadata`
const FILTER_CHAIN_METADATA: u32 = 5;

/// Wire-compatible with `envoy.config.core.v3.Metadata` (filter_metadata only).
#[derive(Clone, PartialEq, prost::Message)]
struct SortedMetadata {
    #[prost(btree_map = "string, message", tag = "1")]
    filter_metadata: BTreeMap<String, SortedStruct>,
}

/// Wire-compatible with `google.protobuf.Struct`; values must not hold a nested
/// `Struct` with more than one field (Remora's never do).
#[derive(Clone, PartialEq, prost::Message)]
struct SortedStruct {
    #[prost(btree_map = "string, message", tag = "1")]
    fields: BTreeMap<String, Value>,
}

impl From<&Metadata> for SortedMetadata {
    fn from(m: &Metadata) -> Self {
        SortedMetadata {
            filter_metadata: m
                .filter_metadata
                .iter()
                .map(|(k, s)| {
                    let fields = s
                        .fields
                        .iter()
                        .map(|(k, v)| (k.clone(), v.clone()))
                        .collect();
                    (k.clone(), SortedStruct { fields })
                })
                .collect(),
        }
    }
}

fn append_metadata(buf: &mut Vec<u8>, tag: u32, metadata: Option<&Metadata>) {
    if let Some(m) = metadata {
        prost::encoding::message::encode(tag, &SortedMetadata::from(m), buf);
    }
}

/// A message with no multi-entry map.
pub fn message<M: Message + Name>(m: &M) -> Any {
    Any {
        type_url: M::type_url(),
        value: m.encode_to_vec(),
    }
}

pub fn cluster(c: &Cluster) -> Any {
    let mut rest = c.clone();
    let metadata = rest.metadata.take();
    let mut value = rest.encode_to_vec();
    append_metadata(&mut value, CLUSTER_METADATA, metadata.as_ref());
    Any {
        type_url: Cluster::type_url(),
        value,
    }
}

pub fn assignment(cla: &ClusterLoadAssignment) -> Any {
    let mut rest = cla.clone();
    let localities = std::mem::take(&mut rest.endpoints);
    let mut value = rest.encode_to_vec();
    for mut locality in localities {
        let lb_endpoints = std::mem::take(&mut locality.lb_endpoints);
        let mut locality_bytes = locality.encode_to_vec();
        for mut lb in lb_endpoints {
            let metadata = lb.metadata.take();
            let mut lb_bytes = lb.encode_to_vec();
            append_metadata(&mut lb_bytes, LB_ENDPOINT_METADATA, metadata.as_ref());
            prost::encoding::bytes::encode(LOCALITY_LB_ENDPOINTS, &lb_bytes, &mut locality_bytes);
        }
        prost::encoding::bytes::encode(ASSIGNMENT_ENDPOINTS, &locality_bytes, &mut value);
    }
    Any {
        type_url: ClusterLoadAssignment::type_url(),
        value,
    }
}

/// A listener whose filter chains may carry metadata.
pub fn listener(l: &Listener) -> Any {
    // Without chain metadata, the plain encoding: the same bytes, and so the
    // same version, as before chains had metadata (no reload after an upgrade).
    if l.filter_chains.iter().all(|c| c.metadata.is_none()) {
        return message(l);
    }
    let mut rest = l.clone();
    let chains = std::mem::take(&mut rest.filter_chains);
    let mut value = rest.encode_to_vec();
    for mut chain in chains {
        let metadata = chain.metadata.take();
        let mut chain_bytes = chain.encode_to_vec();
        append_metadata(&mut chain_bytes, FILTER_CHAIN_METADATA, metadata.as_ref());
        prost::encoding::bytes::encode(LISTENER_FILTER_CHAINS, &chain_bytes, &mut value);
    }
    Any {
        type_url: Listener::type_url(),
        value,
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use remora_proto::xds::envoy::config::endpoint::v3::{LbEndpoint, LocalityLbEndpoints};
    use remora_proto::xds::envoy::config::listener::v3::FilterChain;
    use remora_proto::xds::google::protobuf::{value::Kind, Struct};

    use super::*;

    fn metadata(n: usize) -> Metadata {
        // A fresh HashMap per call: iteration orders differ between instances.
        let fields: HashMap<String, Value> = (0..n)
            .map(|i| {
                let v = Value {
                    kind: Some(Kind::NumberValue(i as f64)),
                };
                (format!("field{i}"), v)
            })
            .collect();
        Metadata {
            filter_metadata: HashMap::from([("remora".to_owned(), Struct { fields })]),
            ..Default::default()
        }
    }

    #[test]
    fn equal_clusters_encode_to_equal_bytes_and_decode_unchanged() {
        let make = || Cluster {
            name: "c".into(),
            metadata: Some(metadata(12)),
            ..Default::default()
        };
        let first = cluster(&make());
        for _ in 0..20 {
            assert_eq!(cluster(&make()), first);
        }
        assert_eq!(Cluster::decode(first.value.as_slice()).unwrap(), make());
    }

    #[test]
    fn equal_assignments_encode_to_equal_bytes_and_decode_unchanged() {
        let make = || ClusterLoadAssignment {
            cluster_name: "c".into(),
            endpoints: vec![LocalityLbEndpoints {
                lb_endpoints: (0..3)
                    .map(|_| LbEndpoint {
                        metadata: Some(metadata(8)),
                        health_status: 1,
                        ..Default::default()
                    })
                    .collect(),
                ..Default::default()
            }],
            ..Default::default()
        };
        let first = assignment(&make());
        for _ in 0..20 {
            assert_eq!(assignment(&make()), first);
        }
        assert_eq!(
            ClusterLoadAssignment::decode(first.value.as_slice()).unwrap(),
            make()
        );
    }

    #[test]
    fn equal_listeners_encode_to_equal_bytes_and_decode_unchanged() {
        let make = || Listener {
            name: "l".into(),
            filter_chains: (0..3)
                .map(|i| FilterChain {
                    name: format!("chain{i}"),
                    metadata: (i > 0).then(|| metadata(6)),
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        };
        let first = listener(&make());
        for _ in 0..20 {
            assert_eq!(listener(&make()), first);
        }
        assert_eq!(Listener::decode(first.value.as_slice()).unwrap(), make());
    }
}
