//! The Node this proxy presents: its id, the metadata through which it registers
//! as an endpoint of its service, and the flag through which it leaves.

use std::net::SocketAddr;

use remora_proto::xds::envoy::config::core::v3::Node;
use remora_proto::xds::google::protobuf::{value::Kind, Struct, Value};

use crate::bootstrap::Bootstrap;

/// The metadata field that says this proxy is leaving the mesh (a bool): the
/// control plane withdraws its endpoint at once. See [`crate::drain`].
pub const DRAINING: &str = "draining";

pub fn node(bootstrap: &Bootstrap, inbound: SocketAddr) -> Node {
    let text = |s: String| Value {
        kind: Some(Kind::StringValue(s)),
    };
    let fields = [
        ("service", text(bootstrap.service.clone())),
        ("namespace", text(bootstrap.namespace.clone())),
        ("inbound_address", text(inbound.to_string())),
        // Only a proxy that will hold a certificate serves with an identity.
        (
            "identity",
            text(if bootstrap.token.is_some() {
                bootstrap.identity()
            } else {
                String::new()
            }),
        ),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    Node {
        id: bootstrap.node_id.clone(),
        cluster: bootstrap.service.clone(),
        metadata: Some(Struct { fields }),
        user_agent_name: "remora-proxy".to_owned(),
        ..Default::default()
    }
}

/// Says in `node` that its proxy is leaving; every request that carries the
/// node from now on (the leave request, and the first one after a reconnect)
/// tells the control plane.
pub fn mark_draining(node: &mut Node) {
    node.metadata
        .get_or_insert_with(Struct::default)
        .fields
        .insert(
            DRAINING.to_owned(),
            Value {
                kind: Some(Kind::BoolValue(true)),
            },
        );
}

/// A string field of the node's metadata.
pub fn field<'a>(node: &'a Node, key: &str) -> Option<&'a str> {
    node.metadata
        .as_ref()?
        .fields
        .get(key)
        .and_then(|v| match &v.kind {
            Some(Kind::StringValue(s)) => Some(s.as_str()),
            _ => None,
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_leaving_node_says_so_and_keeps_the_rest() {
        let b = Bootstrap::parse(
            std::path::Path::new("b.yaml"),
            "service: orders\nnamespace: shop\napp: 127.0.0.1:1\nnode_id: orders-1\n",
        )
        .unwrap();
        let mut n = node(&b, "127.0.0.1:7002".parse().unwrap());
        assert_eq!(field(&n, "service"), Some("orders"));
        assert_eq!(field(&n, "inbound_address"), Some("127.0.0.1:7002"));
        assert!(!n.metadata.as_ref().unwrap().fields.contains_key(DRAINING));
        mark_draining(&mut n);
        let flag = &n.metadata.as_ref().unwrap().fields[DRAINING];
        assert_eq!(flag.kind, Some(Kind::BoolValue(true)));
        assert_eq!(field(&n, "namespace"), Some("shop"));
        assert_eq!(n.id, "orders-1");
    }
}
