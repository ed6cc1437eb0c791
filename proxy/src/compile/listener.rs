//! Listener -> where its routes come from. We accept one HTTP connection manager whose
//! filter chain ends with the router.

use remora_proto::prost::Message;
use remora_proto::type_url;
use remora_proto::xds::envoy::config::listener::v3::{filter, Listener};
use remora_proto::xds::envoy::config::route::v3::RouteConfiguration;
use remora_proto::xds::envoy::extensions::filters::network::http_connection_manager::v3::{
    http_connection_manager::RouteSpecifier, http_filter, HttpConnectionManager,
};
use remora_proto::xds::google::protobuf::Any;

use std::sync::Arc;

use super::{filters, CompileError};
use crate::resilience::fault::Fault;

const HCM_FILTER: &str = "envoy.filters.network.http_connection_manager";

pub enum RouteSource {
    Rds(String),
    Inline(Box<RouteConfiguration>),
}

/// Fault filters by the cluster they are restricted to ("" for every cluster).
pub type Faults = std::collections::HashMap<Arc<str>, Arc<Fault>>;

/// The fault filters of the listener's HTTP connection manager.
pub fn faults(l: &Listener) -> Result<Faults, CompileError> {
    let (hcm, field) = http_connection_manager(l, 0)?;
    let mut out = Faults::new();
    for (i, f) in hcm.http_filters.iter().enumerate() {
        if let Some(http_filter::ConfigType::TypedConfig(any)) = &f.config_type {
            if any.type_url == filters::FAULT {
                let (cluster, fault) =
                    filters::fault(any, &format!("{field}.http_filters[{i}].typed_config"))
                        .map_err(|(f, m)| CompileError::new("Listener", &l.name, f, m))?;
                out.insert(cluster.into(), fault);
            }
        }
    }
    Ok(out)
}

pub fn route_source(l: &Listener) -> Result<RouteSource, CompileError> {
    let err = |field: String, msg: String| CompileError::new("Listener", &l.name, field, msg);
    let (hcm, field) = if let Some(api) = &l.api_listener {
        let field = "api_listener.api_listener".to_owned();
        let any = api
            .api_listener
            .as_ref()
            .ok_or_else(|| err(field.clone(), "missing".into()))?;
        (decode_hcm(l, any, &field)?, field)
    } else {
        http_connection_manager(l, 0)?
    };
    for (i, f) in hcm.http_filters.iter().enumerate() {
        let last = i + 1 == hcm.http_filters.len();
        let (is_router, is_supported) = match &f.config_type {
            Some(http_filter::ConfigType::TypedConfig(any)) => (
                any.type_url == type_url::ROUTER,
                any.type_url == filters::FAULT || any.type_url == filters::LOCAL_RATE_LIMIT,
            ),
            _ => (f.name == "envoy.filters.http.router", false),
        };
        if is_router != last && !f.is_optional && !is_supported {
            let msg = if is_router {
                "the router filter must be the last filter".to_owned()
            } else {
                format!("unsupported HTTP filter `{}`", f.name)
            };
            return Err(err(format!("{field}.http_filters[{i}]"), msg));
        }
    }
    if hcm.http_filters.is_empty() {
        return Err(err(
            format!("{field}.http_filters"),
            "the filter chain must end with the router filter".into(),
        ));
    }
    match hcm.route_specifier {
        Some(RouteSpecifier::Rds(rds)) if !rds.route_config_name.is_empty() => {
            Ok(RouteSource::Rds(rds.route_config_name))
        }
        Some(RouteSpecifier::Rds(_)) => Err(err(
            format!("{field}.rds.route_config_name"),
            "empty".into(),
        )),
        Some(RouteSpecifier::RouteConfig(rc)) => Ok(RouteSource::Inline(Box::new(rc))),
        Some(_) => Err(err(
            format!("{field}.scoped_routes"),
            "scoped routes are not supported".into(),
        )),
        None => Err(err(
            format!("{field}.route_specifier"),
            "neither rds nor route_config is set".into(),
        )),
    }
}

/// The HTTP connection manager of filter chain `chain`, and its field path.
pub fn http_connection_manager(
    l: &Listener,
    chain: usize,
) -> Result<(HttpConnectionManager, String), CompileError> {
    let err = |field: String, msg: String| CompileError::new("Listener", &l.name, field, msg);
    let c = l
        .filter_chains
        .get(chain)
        .ok_or_else(|| err("filter_chains".into(), "no filter chain".into()))?;
    let f = c
        .filters
        .iter()
        .position(|f| f.name == HCM_FILTER)
        .ok_or_else(|| {
            err(
                format!("filter_chains[{chain}].filters"),
                format!("no {HCM_FILTER} filter"),
            )
        })?;
    let field = format!("filter_chains[{chain}].filters[{f}].typed_config");
    let any = match &c.filters[f].config_type {
        Some(filter::ConfigType::TypedConfig(any)) => any,
        _ => return Err(err(field, "missing".into())),
    };
    Ok((decode_hcm(l, any, &field)?, field))
}

fn decode_hcm(l: &Listener, any: &Any, field: &str) -> Result<HttpConnectionManager, CompileError> {
    let err = |msg: String| CompileError::new("Listener", &l.name, field, msg);
    if any.type_url != type_url::HTTP_CONNECTION_MANAGER {
        return Err(err(format!(
            "expected {}, got {}",
            type_url::HTTP_CONNECTION_MANAGER,
            any.type_url
        )));
    }
    HttpConnectionManager::decode(any.value.as_slice())
        .map_err(|e| err(format!("cannot decode: {e}")))
}
