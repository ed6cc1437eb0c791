//! `metadata.filter_metadata["remora"]`: what Remora tells the proxy about a cluster
//! or an endpoint.

use std::collections::HashMap;

use remora_proto::xds::envoy::config::core::v3::Metadata;
use remora_proto::xds::google::protobuf::{value::Kind, ListValue, Struct, Value};

use super::names::METADATA_KEY;

pub fn remora<const N: usize>(fields: [(&str, Value); N]) -> Metadata {
    let fields = fields.into_iter().map(|(k, v)| (k.to_owned(), v)).collect();
    Metadata {
        filter_metadata: HashMap::from([(METADATA_KEY.to_owned(), Struct { fields })]),
        ..Default::default()
    }
}

pub fn string(s: &str) -> Value {
    Value {
        kind: Some(Kind::StringValue(s.to_owned())),
    }
}

pub fn number(n: f64) -> Value {
    Value {
        kind: Some(Kind::NumberValue(n)),
    }
}

pub fn boolean(b: bool) -> Value {
    Value {
        kind: Some(Kind::BoolValue(b)),
    }
}

pub fn numbers(ns: impl IntoIterator<Item = f64>) -> Value {
    Value {
        kind: Some(Kind::ListValue(ListValue {
            values: ns.into_iter().map(number).collect(),
        })),
    }
}
