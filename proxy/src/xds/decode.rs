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
        _ => into.endpoints.extend(decode_all(
            resources,
            type_url,
            "ClusterLoadAssignment",
            |c: &ClusterLoadAssignment| &c.cluster_name,
        )?),
    }
    Ok(())
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
