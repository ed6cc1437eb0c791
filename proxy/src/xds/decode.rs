//! Decodes a response's resources into the typed maps, checking names and types.

use std::collections::BTreeMap;

use remora_proto::prost::Message;
use remora_proto::type_url;
use remora_proto::xds::envoy::config::{
    cluster::v3::Cluster, endpoint::v3::ClusterLoadAssignment, listener::v3::Listener,
    route::v3::RouteConfiguration,
};
use remora_proto::xds::google::protobuf::Any;

use crate::compile::{CompileError, Resources};

/// The type URLs we consume, as static strings.
pub fn known_type(url: &str) -> Option<&'static str> {
    [
        type_url::LISTENER,
        type_url::ROUTE,
        type_url::CLUSTER,
        type_url::ENDPOINT,
    ]
    .into_iter()
    .find(|t| *t == url)
}

/// Applies a response of one type to a copy of the accepted resources: Listener and
/// Cluster responses replace the whole set, Route and Endpoint responses update the
/// resources they carry.
pub fn apply(
    into: &mut Resources,
    type_url: &'static str,
    resources: &[Any],
) -> Result<(), CompileError> {
    match type_url {
        type_url::LISTENER => {
            into.listeners = decode_all(resources, type_url, "Listener", |l: &Listener| &l.name)?
        }
        type_url::CLUSTER => {
            into.clusters = decode_all(resources, type_url, "Cluster", |c: &Cluster| &c.name)?
        }
        type_url::ROUTE => into.routes.extend(decode_all(
            resources,
            type_url,
            "RouteConfiguration",
            |r: &RouteConfiguration| &r.name,
        )?),
        _ => {
            let changed = decode_changed(resources, type_url, &into.endpoints)?;
            into.endpoints.extend(changed);
        }
    }
    Ok(())
}

/// The assignments of an endpoint response that differ from `held`, decoded
/// and checked as `decode_all` does. An endpoint response carries every
/// assignment the proxy holds though one changed: one whose bytes are those
/// already held (decoded when they arrived) is only read for its name.
fn decode_changed(
    resources: &[Any],
    type_url: &str,
    held: &BTreeMap<String, Any>,
) -> Result<BTreeMap<String, Any>, CompileError> {
    let kind = "ClusterLoadAssignment";
    let mut seen = std::collections::HashSet::with_capacity(resources.len());
    let mut out = BTreeMap::new();
    for (i, any) in resources.iter().enumerate() {
        if any.type_url != type_url {
            return Err(CompileError::new(
                kind,
                format!("resources[{i}]"),
                "type_url",
                format!("expected {type_url}, got {}", any.type_url),
            ));
        }
        let kept = cluster_name(&any.value).filter(|n| held.get(n) == Some(any));
        let n = match kept {
            Some(n) => n,
            None => {
                let value = ClusterLoadAssignment::decode(any.value.as_slice()).map_err(|e| {
                    CompileError::new(
                        kind,
                        format!("resources[{i}]"),
                        "",
                        format!("cannot decode: {e}"),
                    )
                })?;
                if value.cluster_name.is_empty() {
                    return Err(CompileError::new(
                        kind,
                        format!("resources[{i}]"),
                        "name",
                        "empty",
                    ));
                }
                out.insert(value.cluster_name.clone(), any.clone());
                value.cluster_name
            }
        };
        if !seen.insert(n.clone()) {
            return Err(CompileError::new(
                kind,
                n,
                "name",
                "sent twice in one response",
            ));
        }
    }
    Ok(out)
}

/// A ClusterLoadAssignment's `cluster_name` (field 1) read from its encoding
/// without decoding the rest; `None` when the bytes do not parse. The last
/// occurrence wins, as when decoding.
fn cluster_name(mut buf: &[u8]) -> Option<String> {
    use remora_proto::prost::encoding::{
        decode_key, decode_varint, skip_field, DecodeContext, WireType,
    };
    let mut name = None;
    while !buf.is_empty() {
        let (tag, wire_type) = decode_key(&mut buf).ok()?;
        if tag == 1 && wire_type == WireType::LengthDelimited {
            let len = usize::try_from(decode_varint(&mut buf).ok()?).ok()?;
            let value = buf.get(..len)?;
            name = Some(std::str::from_utf8(value).ok()?.to_owned());
            buf = &buf[len..];
        } else {
            skip_field(wire_type, tag, &mut buf, DecodeContext::default()).ok()?;
        }
    }
    name
}

fn decode_all<T: Message + Default>(
    resources: &[Any],
    type_url: &str,
    kind: &'static str,
    name: impl Fn(&T) -> &String,
) -> Result<BTreeMap<String, Any>, CompileError> {
    let mut out = BTreeMap::new();
    for (i, any) in resources.iter().enumerate() {
        let position = format!("resources[{i}]");
        if any.type_url != type_url {
            return Err(CompileError::new(
                kind,
                position,
                "type_url",
                format!("expected {type_url}, got {}", any.type_url),
            ));
        }
        let value = T::decode(any.value.as_slice()).map_err(|e| {
            CompileError::new(kind, position.clone(), "", format!("cannot decode: {e}"))
        })?;
        let n = name(&value).clone();
        if n.is_empty() {
            return Err(CompileError::new(kind, position, "name", "empty"));
        }
        if out.insert(n.clone(), any.clone()).is_some() {
            return Err(CompileError::new(
                kind,
                n,
                "name",
                "sent twice in one response",
            ));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use remora_proto::prost::Message;
    use remora_proto::xds::envoy::config::endpoint::v3::{
        ClusterLoadAssignment, LocalityLbEndpoints,
    };

    use super::cluster_name;

    #[test]
    fn the_name_is_read_without_decoding_the_rest() {
        let cla = ClusterLoadAssignment {
            cluster_name: "outbound|80||orders.default.svc.cluster.local".into(),
            endpoints: vec![LocalityLbEndpoints::default(); 3],
            ..Default::default()
        };
        assert_eq!(
            cluster_name(&cla.encode_to_vec()).as_deref(),
            Some("outbound|80||orders.default.svc.cluster.local")
        );
        assert_eq!(cluster_name(&[0x0a, 0x05, b'a']), None, "cut short");
    }
}
