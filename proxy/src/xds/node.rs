//! The Node this proxy presents: its id, and the metadata through which it registers
//! as an endpoint of its service.

use std::net::SocketAddr;

use remora_proto::xds::envoy::config::core::v3::Node;
use remora_proto::xds::google::protobuf::{value::Kind, Struct, Value};

use crate::bootstrap::Bootstrap;

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
