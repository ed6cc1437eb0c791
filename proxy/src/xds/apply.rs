//! One response applied to the accepted resources: decoded, pruned to what is
//! subscribed, and compiled, reusing what the accepted resources compiled into
//! wherever the bytes are the same (an endpoint update recompiles only the
//! clusters whose assignment changed). Used for every response from the
//! control plane and for the config restored from the state dir, so both are
//! checked alike.

use remora_proto::type_url;
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
    // Only listeners and clusters decide the subscriptions: an endpoint or
    // route update keeps the ones worked out when they last changed.
    let subs = match (t, accepted.memo.subscriptions()) {
        (type_url::ENDPOINT | type_url::ROUTE, Some(subs)) => subs.clone(),
        _ => candidate.subscriptions()?,
    };
    candidate
        .routes
        .retain(|name, _| subs.routes.contains(name));
    candidate
        .endpoints
        .retain(|name, _| subs.endpoints.contains(name));
    let (snapshot, memo) = compile::compile_from(Some(accepted), &candidate, registry)?;
    candidate.memo = memo.with_subscriptions(subs);
    Ok((candidate, snapshot))
}
