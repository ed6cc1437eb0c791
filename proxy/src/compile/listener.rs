//! Listener -> where its routes come from. We accept one HTTP connection manager whose
//! filter chain ends with the router.

use remora_proto::prost::Message;
use remora_proto::type_url;
use remora_proto::xds::envoy::config::listener::v3::{filter, Listener};
use remora_proto::xds::envoy::config::route::v3::RouteConfiguration;
use remora_proto::xds::envoy::extensions::filters::network::http_connection_manager::v3::{
    http_connection_manager::RouteSpecifier, http_filter, HttpConnectionManager,
};

use super::CompileError;

const HCM_FILTER: &str = "envoy.filters.network.http_connection_manager";

pub enum RouteSource {
    Rds(String),
    Inline(Box<RouteConfiguration>),
}

pub fn route_source(l: &Listener) -> Result<RouteSource, CompileError> {
    let err = |field: String, msg: String| CompileError::new("Listener", &l.name, field, msg);
    let hcm_any = if let Some(api) = &l.api_listener {
        (
            api.api_listener.as_ref(),
            "api_listener.api_listener".to_owned(),
        )
    } else {
        let chain = l
            .filter_chains
            .first()
            .ok_or_else(|| err("filter_chains".into(), "no filter chain".into()))?;
        let f = chain
            .filters
            .iter()
            .position(|f| f.name == HCM_FILTER)
            .ok_or_else(|| {
                err(
                    "filter_chains[0].filters".into(),
                    format!("no {HCM_FILTER} filter"),
                )
            })?;
        let any = match &chain.filters[f].config_type {
            Some(filter::ConfigType::TypedConfig(any)) => Some(any),
            _ => None,
        };
        (any, format!("filter_chains[0].filters[{f}].typed_config"))
    };
    let (any, field) = hcm_any;
    let any = any.ok_or_else(|| err(field.clone(), "missing".into()))?;
    if any.type_url != type_url::HTTP_CONNECTION_MANAGER {
        return Err(err(
            field,
            format!(
                "expected {}, got {}",
                type_url::HTTP_CONNECTION_MANAGER,
                any.type_url
            ),
        ));
    }
    let hcm = HttpConnectionManager::decode(any.value.as_slice())
        .map_err(|e| err(field.clone(), format!("cannot decode: {e}")))?;

    for (i, f) in hcm.http_filters.iter().enumerate() {
        let last = i + 1 == hcm.http_filters.len();
        let is_router = match &f.config_type {
            Some(http_filter::ConfigType::TypedConfig(any)) => any.type_url == type_url::ROUTER,
            _ => f.name == "envoy.filters.http.router",
        };
        if is_router != last && !f.is_optional {
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
