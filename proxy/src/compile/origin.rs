//! A cluster's `transport_socket` -> ordinary TLS to its unmeshed endpoints.

use std::sync::Arc;

use remora_proto::prost::Message;
use remora_proto::type_url;
use remora_proto::xds::envoy::config::cluster::v3::Cluster as XdsCluster;
use remora_proto::xds::envoy::config::core::v3::{data_source, transport_socket};
use remora_proto::xds::envoy::extensions::transport_sockets::tls::v3::{
    common_tls_context::ValidationContextType, subject_alt_name_matcher::SanType,
    UpstreamTlsContext,
};
use remora_proto::xds::envoy::r#type::matcher::v3::string_matcher::MatchPattern;

use super::CompileError;
use crate::upstream::{OriginClient, OriginTls, Protocol};

/// The cluster's `transport_socket`: ordinary TLS to its unmeshed endpoints, which
/// must verify the server by the DNS name sent as SNI.
pub fn origin_tls(
    c: &XdsCluster,
    protocol: Protocol,
) -> Result<Option<Arc<OriginClient>>, CompileError> {
    let Some(socket) = &c.transport_socket else {
        return Ok(None);
    };
    let err = |f: &str, m: String| {
        CompileError::new("Cluster", &c.name, format!("transport_socket{f}"), m)
    };
    let any = match &socket.config_type {
        Some(transport_socket::ConfigType::TypedConfig(any)) => any,
        _ => return Err(err(".typed_config", "missing".into())),
    };
    if any.type_url != type_url::UPSTREAM_TLS_CONTEXT {
        return Err(err(
            ".typed_config",
            format!(
                "expected {}, got {}",
                type_url::UPSTREAM_TLS_CONTEXT,
                any.type_url
            ),
        ));
    }
    let tls = UpstreamTlsContext::decode(any.value.as_slice())
        .map_err(|e| err(".typed_config", format!("cannot decode: {e}")))?;
    let field = ".typed_config.common_tls_context.validation_context";
    let validation = match tls
        .common_tls_context
        .and_then(|c| c.validation_context_type)
    {
        Some(ValidationContextType::ValidationContext(v)) => v,
        _ => {
            return Err(err(
                field,
                "required: a server outside the mesh must be verified".into(),
            ))
        }
    };
    if tls.sni.is_empty() {
        return Err(err(
            ".typed_config.sni",
            "required: the server's DNS name".into(),
        ));
    }
    // The name verified is the SNI: the SAN matcher may only repeat it.
    for (i, m) in validation.match_typed_subject_alt_names.iter().enumerate() {
        let exact = match m.matcher.as_ref().and_then(|m| m.match_pattern.as_ref()) {
            Some(MatchPattern::Exact(name)) => Some(name),
            _ => None,
        };
        if m.san_type != SanType::Dns as i32 || exact != Some(&tls.sni) {
            return Err(err(
                &format!("{field}.match_typed_subject_alt_names[{i}]"),
                format!(
                    "only an exact DNS match on the SNI (`{}`) is supported",
                    tls.sni
                ),
            ));
        }
    }
    let ca_pem = match validation.trusted_ca.and_then(|d| d.specifier) {
        Some(data_source::Specifier::InlineString(pem)) => Some(pem),
        Some(data_source::Specifier::InlineBytes(bytes)) => Some(
            String::from_utf8(bytes)
                .map_err(|_| err(&format!("{field}.trusted_ca"), "not PEM text".into()))?,
        ),
        Some(_) => {
            return Err(err(
                &format!("{field}.trusted_ca"),
                "only inline_string and inline_bytes are supported".into(),
            ))
        }
        None if validation.system_root_certs.is_some() => None,
        None => {
            return Err(err(
                field,
                "trusted_ca or system_root_certs is required: a server outside the mesh must be verified".into(),
            ))
        }
    };
    let alpn: &'static [u8] = match protocol {
        Protocol::Http1 => b"http/1.1",
        Protocol::Http2 => b"h2",
    };
    let origin = OriginTls {
        server_name: tls.sni.clone(),
        ca_pem,
        alpn,
    };
    OriginClient::new(origin)
        .map(|o| Some(Arc::new(o)))
        .map_err(|m| err(field, m))
}
