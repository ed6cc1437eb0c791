//! `metadata.filter_metadata["remora"]`: where the control plane writes what
//! only Remora proxies read (a cluster's service, identity, target port; an
//! inbound chain's HTTP ports).

use remora_proto::xds::envoy::config::core::v3::Metadata;
use remora_proto::xds::google::protobuf::value::Kind;
use remora_proto::xds::google::protobuf::Value;

/// The `remora` field `key` of `metadata`, if written.
pub fn remora<'a>(metadata: Option<&'a Metadata>, key: &str) -> Option<&'a Value> {
    metadata?.filter_metadata.get("remora")?.fields.get(key)
}

/// `value` as a port: a whole number from 1 to 65535 (JSON numbers are
/// doubles on the wire).
pub fn port(value: &Value) -> Option<u16> {
    match value.kind {
        Some(Kind::NumberValue(n)) if n.fract() == 0.0 && (1.0..=65535.0).contains(&n) => {
            Some(n as u16)
        }
        _ => None,
    }
}
