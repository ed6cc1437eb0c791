//! References between resources: every Service an HTTPRoute names (as parent or
//! backend) must be valid and have the HTTP port it names (an opaque TCP port has
//! no requests to route); every policy's target must exist.

use std::collections::{BTreeMap, BTreeSet};

use super::decode::{field, index, FieldError};
use crate::resources::{HttpRoute, ObjectKey, PolicyTarget, Service, ServicePort};

/// The Services a route may refer to.
pub struct Services<'a> {
    /// Services that passed validation.
    pub valid: BTreeMap<&'a ObjectKey, &'a Service>,
    /// Every Service written anywhere, valid or not (for a better message).
    pub declared: BTreeSet<&'a ObjectKey>,
}

impl Services<'_> {
    fn lookup(&self, from: &ObjectKey, key: &ObjectKey) -> Result<&Service, String> {
        let shown = if key.namespace == from.namespace {
            key.name.clone()
        } else {
            key.to_string()
        };
        match self.valid.get(key) {
            Some(service) => Ok(service),
            None if self.declared.contains(key) => Err(format!(
                "Service \"{shown}\" is invalid (see its own errors)"
            )),
            None => Err(format!("Service \"{shown}\" does not exist")),
        }
    }
}

fn ports_list(service: &Service) -> String {
    let ports: Vec<String> = service.ports.iter().map(|p| p.port.to_string()).collect();
    ports.join(", ")
}

fn opaque_port(service: &Service, port: &ServicePort) -> String {
    format!(
        "port {} of Service \"{}\" is opaque TCP (appProtocol: {}): an HTTPRoute \
         routes HTTP ports only",
        port.port,
        service.key.name,
        port.protocol.as_str()
    )
}

/// Every broken reference of `route`, with its field path. The route must have
/// decoded cleanly (its lists line up with the YAML's).
pub fn check_route(route: &HttpRoute, services: &Services<'_>) -> Vec<FieldError> {
    let mut errors = Vec::new();
    let mut error = |field: String, message: String| errors.push(FieldError { field, message });

    for (i, parent) in route.parents.iter().enumerate() {
        let path = index("spec.parentRefs", i);
        match services.lookup(&route.key, &parent.service) {
            Err(message) => error(field(&path, "name"), message),
            Ok(service) => match parent.port {
                Some(port) => match service.resolve_port(Some(port)) {
                    None => error(
                        field(&path, "port"),
                        format!(
                            "Service \"{}\" has no port {port} (it has {})",
                            service.key.name,
                            ports_list(service)
                        ),
                    ),
                    Some(p) if p.protocol.is_opaque() => {
                        error(field(&path, "port"), opaque_port(service, p))
                    }
                    Some(_) => {}
                },
                None if service.ports.iter().all(|p| p.protocol.is_opaque()) => error(
                    field(&path, "name"),
                    format!(
                        "Service \"{}\" has no HTTP port (its ports are opaque TCP)",
                        service.key.name
                    ),
                ),
                None => {}
            },
        }
    }

    for (r, rule) in route.rules.iter().enumerate() {
        let mirrors = rule.filters.mirrors.iter().enumerate().map(|(i, m)| {
            (
                format!("spec.rules[{r}].filters[{i}].requestMirror.backendRef"),
                &m.backend,
            )
        });
        let backends = rule
            .backends
            .iter()
            .enumerate()
            .map(|(b, backend)| (index(&format!("spec.rules[{r}].backendRefs"), b), backend));
        for (path, backend) in backends.chain(mirrors) {
            let service = match services.lookup(&route.key, &backend.service) {
                Ok(service) => service,
                Err(message) => {
                    error(field(&path, "name"), message);
                    continue;
                }
            };
            if let Some(p) = service.resolve_port(backend.port) {
                if p.protocol.is_opaque() {
                    error(field(&path, "port"), opaque_port(service, p));
                }
            } else {
                let message = match backend.port {
                    Some(port) => format!(
                        "Service \"{}\" has no port {port} (it has {})",
                        service.key.name,
                        ports_list(service)
                    ),
                    None => format!(
                        "required: Service \"{}\" has several ports ({})",
                        service.key.name,
                        ports_list(service)
                    ),
                };
                error(field(&path, "port"), message);
            }
        }
    }
    errors
}

/// The HTTPRoutes a policy may target: those that passed validation.
pub type Routes<'a> = BTreeMap<&'a ObjectKey, &'a HttpRoute>;

/// A policy's `spec.targetRef` must name a valid Service, or a valid HTTPRoute
/// attached to a Service of the policy's namespace.
pub fn check_target(
    target: &PolicyTarget,
    services: &Services<'_>,
    routes: &Routes<'_>,
) -> Option<FieldError> {
    let error = |message: String| {
        Some(FieldError {
            field: "spec.targetRef.name".into(),
            message,
        })
    };
    match target {
        PolicyTarget::Namespace => None,
        PolicyTarget::Service(key) => services.lookup(key, key).err().and_then(error),
        PolicyTarget::HttpRoute(key) => match routes.get(key) {
            None => error(format!(
                "HTTPRoute \"{}\" does not exist or is invalid",
                key.name
            )),
            Some(route)
                if !route
                    .parents
                    .iter()
                    .any(|p| p.service.namespace == key.namespace) =>
            {
                error(format!(
                    "HTTPRoute \"{}\" is attached to no Service in namespace \"{}\"",
                    key.name, key.namespace
                ))
            }
            Some(_) => None,
        },
    }
}
