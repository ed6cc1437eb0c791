//! The leave signal. When the proxy drains, the node's metadata says
//! `draining: true` and the stream sends it at once: the last request for
//! Clusters again (same version, nonce and, after a NACK, the same error), now
//! carrying the node. The control plane reads a node on any request, withdraws
//! this proxy's endpoint (only its own: the stream is authenticated as this
//! node) and pushes the change; repeating the last request changes nothing
//! else in the protocol. A stream opened later says it in its first request.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

use remora_proto::type_url;
use remora_proto::xds::envoy::service::discovery::v3::DiscoveryRequest;

use super::{TypeState, XdsClient};
use crate::drain::{Drain, Phase};
use crate::xds::node;

/// Resolves when the drain begins; never without a drain.
pub(super) async fn begun(drain: Option<Arc<Drain>>) {
    match drain {
        Some(d) => {
            d.reached(Phase::Leaving).await;
        }
        None => std::future::pending().await,
    }
}

impl XdsClient {
    /// Marks the node as leaving if the drain has begun; returns whether it has.
    pub(super) fn mark_if_leaving(&mut self) -> bool {
        let leaving = self.drain.as_ref().is_some_and(|d| d.is_draining());
        if leaving {
            node::mark_draining(&mut self.node);
        }
        leaving
    }

    /// The leave request for this stream (see the module doc).
    pub(super) fn leave_request(
        &mut self,
        types: &HashMap<&'static str, TypeState>,
    ) -> DiscoveryRequest {
        node::mark_draining(&mut self.node);
        // A NACKed response stays NACKed: the repeat must not read as an ACK.
        let nack = self
            .status
            .view()
            .types
            .get(type_url::CLUSTER)
            .and_then(|s| s.last_nack.clone());
        DiscoveryRequest {
            node: Some(self.node.clone()),
            ..self.request(type_url::CLUSTER, types, nack)
        }
    }

    pub(super) fn leave_sent(&self) {
        let elapsed_ms = self.drain.as_ref().map_or(0, |d| d.elapsed_ms());
        tracing::info!(
            control_plane = %self.control_plane,
            elapsed_ms,
            "drain: leave sent to the control plane"
        );
    }

    /// While leaving, logs once that this proxy's own address is in no cluster
    /// of its config any more: the control plane withdrew it and pushed the
    /// change, which callers get the same way.
    pub(super) fn observe_withdrawal(&mut self) {
        let Some(drain) = self.drain.as_ref().filter(|d| d.is_draining()) else {
            return;
        };
        if self.withdrawn {
            return;
        }
        let Some(own) =
            node::field(&self.node, "inbound_address").and_then(|a| a.parse::<SocketAddr>().ok())
        else {
            return;
        };
        let snapshot = self.snapshot.load();
        let listed = snapshot
            .clusters
            .values()
            .any(|c| c.endpoints.iter().any(|e| e.endpoint.addr() == own));
        if !listed {
            self.withdrawn = true;
            tracing::info!(
                elapsed_ms = drain.elapsed_ms(),
                address = %own,
                "drain: this proxy's endpoint is withdrawn (the control plane's push reached it)"
            );
        }
    }
}
