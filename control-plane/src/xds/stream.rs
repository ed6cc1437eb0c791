//! The state-of-the-world ADS protocol for one stream, as a state machine with no
//! I/O: a request or a config change in, the responses to send out.
//!
//! - Each response has a fresh nonce and, as its version, the hash of the
//!   resources in it. A response is only sent when its version differs from the
//!   last one sent for the type, so an ACKed or NACKed version is never resent and
//!   an unchanged set never goes out twice.
//! - A request whose nonce is not the latest sent for its type is stale and ignored.
//! - Listener and Cluster responses hold the whole subscribed set (a missing one is
//!   deleted); routes and endpoints only the subscribed names that exist.
//! - A change goes out make before break: Clusters (old and new), endpoints,
//!   Listeners, routes, then the Clusters without the removed ones.
//! - Endpoints can be held back (see [`StreamState::hold_endpoints`]): a restarted
//!   control plane does not yet know the proxies that have not reconnected, and
//!   an early answer would take their endpoints away from a proxy that still has
//!   them.

use std::collections::BTreeMap;

use remora_proto::xds::envoy::service::discovery::v3::{DiscoveryRequest, DiscoveryResponse};

use super::registry::{Nack, TypeStatus};
use super::subscription::{Sent, Subscription, TypeState};
use super::version;
use crate::escape::escape_control as escape;
use crate::translate::{ResourceMap, ResourceType, Resources};

#[derive(Debug)]
pub struct StreamState {
    node_id: String,
    nonce_prefix: String,
    next_nonce: u64,
    types: BTreeMap<ResourceType, TypeState>,
    endpoints_held: bool,
}

impl StreamState {
    /// `nonce_prefix` must differ between streams (nonces are unique per response).
    pub fn new(node_id: impl Into<String>, nonce_prefix: impl Into<String>) -> Self {
        StreamState {
            node_id: node_id.into(),
            nonce_prefix: nonce_prefix.into(),
            next_nonce: 0,
            types: BTreeMap::new(),
            endpoints_held: false,
        }
    }

    /// Sends no endpoints until [`StreamState::release_endpoints`]; the proxy keeps
    /// the ones it has. Requests are still tracked (subscriptions, ACKs).
    pub fn hold_endpoints(&mut self) {
        self.endpoints_held = true;
    }

    /// Ends the hold and returns what is now due, as a change would.
    pub fn release_endpoints(&mut self, all: &Resources) -> Vec<DiscoveryResponse> {
        self.endpoints_held = false;
        self.on_change(all)
    }

    fn held(&self, t: ResourceType) -> bool {
        self.endpoints_held && t == ResourceType::Endpoint
    }

    pub fn status(&self) -> BTreeMap<ResourceType, TypeStatus> {
        self.types.iter().map(|(t, s)| (*t, s.status())).collect()
    }

    pub fn on_request(
        &mut self,
        req: &DiscoveryRequest,
        all: &Resources,
    ) -> Vec<DiscoveryResponse> {
        let node_id = self.node_id.as_str();
        let Some(t) = ResourceType::from_type_url(&req.type_url) else {
            tracing::warn!(node_id = %escape(node_id), type_url = %escape(&req.type_url), "request for an unknown resource type ignored");
            return Vec::new();
        };
        let previous = self.types.get(&t).map(|s| &s.subscription);
        let subscription = Subscription::from_request(t, &req.resource_names, previous);
        let initial = req.response_nonce.is_empty();
        let held = self.held(t);
        let state = self
            .types
            .entry(t)
            .or_insert_with(|| TypeState::new(subscription.clone()));

        if !initial {
            let Some(sent) = state
                .sent
                .as_ref()
                .filter(|s| s.nonce == req.response_nonce)
            else {
                tracing::debug!(node_id = %escape(node_id), type_url = %escape(&req.type_url), nonce = %escape(&req.response_nonce), "stale nonce ignored");
                return Vec::new();
            };
            match &req.error_detail {
                Some(error) => {
                    tracing::warn!(node_id = %escape(node_id), type_url = %req.type_url, version = %sent.version, nonce = %sent.nonce, error = %escape(&error.message), "proxy rejected config (NACK)");
                    state.last_nack = Some(Nack {
                        version: sent.version.clone(),
                        nonce: sent.nonce.clone(),
                        message: error.message.clone(),
                    });
                }
                None => {
                    tracing::debug!(node_id = %escape(node_id), type_url = %req.type_url, version = %sent.version, "ACK");
                    state.acked = Some(sent.version.clone());
                    state.last_nack = None;
                }
            }
        }

        let changed = state.subscription != subscription;
        state.subscription = subscription;
        // Versions first, from references: the copy is made only to send.
        let version = version::of(state.subscription.selected(all.get(t)));
        let send = match &state.sent {
            // The first request for a type is always answered, except when a
            // named type has nothing to say (nothing subscribed exists yet).
            None => t.is_full_set() || state.subscription.selected(all.get(t)).next().is_some(),
            Some(sent) => {
                (changed && sent.version != version) || (initial && req.version_info != version)
            }
        };
        if !send || held {
            return Vec::new();
        }
        let current = state.subscription.select(all.get(t));
        vec![self.respond(t, current, version)]
    }

    /// The resources changed: push every type whose version changed, make before
    /// break.
    pub fn on_change(&mut self, all: &Resources) -> Vec<DiscoveryResponse> {
        let mut out = Vec::new();
        let mut clusters_after = None;
        for t in ResourceType::PUSH_ORDER {
            if self.held(t) {
                continue;
            }
            let Some(state) = self.types.get(&t) else {
                continue; // never asked for
            };
            // Most changes touch one type (an endpoint moved): the others are
            // found unchanged from references, without copying them.
            let version = version::of(state.subscription.selected(all.get(t)));
            match &state.sent {
                None if !t.is_full_set()
                    && state.subscription.selected(all.get(t)).next().is_none() =>
                {
                    continue
                }
                Some(sent) if sent.version == version => continue,
                _ => {}
            }
            let current = state.subscription.select(all.get(t));
            if let (ResourceType::Cluster, Some(sent)) = (t, &state.sent) {
                // Keep the clusters being removed until routes stop using them.
                let mut union = sent.resources.clone();
                union.extend(current.clone());
                if union.len() > current.len() {
                    let union_version = version::of(&union);
                    if union_version != sent.version {
                        out.push(self.respond(t, union, union_version));
                    }
                    clusters_after = Some(current);
                    continue;
                }
            }
            out.push(self.respond(t, current, version));
        }
        if let Some(current) = clusters_after {
            let version = version::of(&current);
            out.push(self.respond(ResourceType::Cluster, current, version));
        }
        out
    }

    /// `version` is `version::of(&resources)`, which the caller has already
    /// worked out.
    fn respond(
        &mut self,
        t: ResourceType,
        resources: ResourceMap,
        version: String,
    ) -> DiscoveryResponse {
        let nonce = format!("{}-{}", self.nonce_prefix, self.next_nonce);
        self.next_nonce += 1;
        tracing::debug!(node_id = %escape(&self.node_id), type_url = t.type_url(), %version, %nonce, count = resources.len(), "sending");
        let response = DiscoveryResponse {
            version_info: version.clone(),
            resources: resources.values().cloned().collect(),
            type_url: t.type_url().to_owned(),
            nonce: nonce.clone(),
            ..Default::default()
        };
        if let Some(state) = self.types.get_mut(&t) {
            state.sent = Some(Sent {
                version,
                nonce,
                resources,
            });
        }
        response
    }
}

#[cfg(test)]
mod tests;
