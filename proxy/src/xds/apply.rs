//! One response applied to the accepted resources: decoded, pruned to what is
//! subscribed, and compiled as a whole. Used for every response from the control
//! plane and for the config restored from the state dir, so both are checked
//! alike.

use remora_proto::xds::google::protobuf::Any;

use super::decode;
use crate::compile::{self, Resources};
use crate::snapshot::Snapshot;
use crate::upstream::EndpointRegistry;

/// Applies one response of type `t` to a copy of the `accepted` resources, drops
/// the routes and endpoints nothing subscribes to any more, and compiles the
/// result: the resources and snapshot to keep, or why the response is rejected
/// (the accepted resources stay in force). Pure apart from the registry.
pub(crate) fn apply_response(
    accepted: &Resources,
    t: &'static str,
    version: &str,
    resources: &[Any],
    registry: &EndpointRegistry,
) -> Result<(Resources, Snapshot), compile::CompileError> {
    let mut candidate = accepted.clone();
    decode::apply(&mut candidate, t, resources)?;
    candidate.versions.insert(t, version.to_owned());
    let subs = candidate.subscriptions()?;
    candidate
        .routes
        .retain(|name, _| subs.routes.contains(name));
    candidate
        .endpoints
        .retain(|name, _| subs.endpoints.contains(name));
    let snapshot = compile::compile(&candidate, registry)?;
    Ok((candidate, snapshot))
}
