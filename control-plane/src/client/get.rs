//! `remora get KIND [NAME]`: the resources in force (as their documents were
//! written), the connected proxies, or every Service's endpoints with the ones
//! proxies have ejected marked. A table for people, JSON or YAML for scripts.

use serde_json::Value;

use super::table;
use super::views::{EndpointsDoc, ResourceDoc, ResourcesDoc};
use super::{Api, ClientError, Exit, Output};
use crate::api::kinds;
use crate::api::query::encode;
use crate::resources::Kind;

/// What `get` lists.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    Resources(Kind),
    Proxies,
    Endpoints,
}

impl Target {
    /// `svc`, `httproutes`, `proxies`, `endpoints`, ...
    pub fn parse(name: &str) -> Result<Target, String> {
        match name.to_ascii_lowercase().as_str() {
            "proxies" | "proxy" | "px" => Ok(Target::Proxies),
            "endpoints" | "endpoint" | "ep" => Ok(Target::Endpoints),
            _ => kinds::parse(name).map(Target::Resources).ok_or_else(|| {
                format!(
                    "unknown kind `{name}`: give {}, proxies or endpoints",
                    kinds::KNOWN
                )
            }),
        }
    }
}

/// Prints what `target` names; `Exit::Failed` when a NAME was given and there
/// is no such thing.
pub async fn run(
    api: &Api,
    target: Target,
    name: Option<&str>,
    namespace: Option<&str>,
    output: Output,
) -> Result<Exit, ClientError> {
    let mut query = Vec::new();
    if let Some(ns) = namespace {
        query.push(format!("namespace={}", encode(ns)));
    }
    let found = match target {
        Target::Resources(kind) => {
            query.push(format!("kind={}", encode(kind.as_str())));
            if let Some(name) = name {
                query.push(format!("name={}", encode(name)));
            }
            let raw: Value = api
                .get_json(&format!("/api/v1/resources?{}", query.join("&")))
                .await?;
            let doc: ResourcesDoc =
                serde_json::from_value(raw.clone()).map_err(|source| ClientError::Decode {
                    api: api.addr.to_string(),
                    source,
                })?;
            match output {
                Output::Table if !doc.items.is_empty() => {
                    print!("{}", resources_table(kind, &doc.items))
                }
                Output::Table => {}
                Output::Json => println!("{}", pretty_json(&raw["items"])),
                Output::Yaml => {
                    let documents: Vec<&Value> = doc.items.iter().map(|i| &i.document).collect();
                    print!("{}", yaml_stream(&documents));
                }
            }
            !doc.items.is_empty()
        }
        Target::Proxies => {
            let (mut doc, raw) = super::status::fetch(api).await?;
            let keep = |node: &str, service: Option<&str>, ns: &str| {
                name.is_none_or(|n| n == node || Some(n) == service)
                    && namespace.is_none_or(|want| want == ns)
            };
            doc.proxies
                .retain(|p| keep(&p.node_id, p.service.as_deref(), &p.namespace));
            let raw: Vec<Value> = raw["proxies"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|p| {
                    keep(
                        p["node_id"].as_str().unwrap_or_default(),
                        p["service"].as_str(),
                        p["namespace"].as_str().unwrap_or_default(),
                    )
                })
                .cloned()
                .collect();
            match output {
                Output::Table if !doc.proxies.is_empty() => {
                    let rows: Vec<Vec<String>> = doc
                        .proxies
                        .iter()
                        .map(|p| {
                            vec![
                                p.node_id.clone(),
                                p.service_name(),
                                p.inbound_address.clone().unwrap_or_else(|| "-".to_owned()),
                                p.identity.clone().unwrap_or_else(|| "-".to_owned()),
                                p.transport.clone(),
                                if p.current { "yes" } else { "no" }.to_owned(),
                            ]
                        })
                        .collect();
                    let header = [
                        "PROXY",
                        "SERVICE",
                        "ADDRESS",
                        "IDENTITY",
                        "TRANSPORT",
                        "CURRENT",
                    ];
                    print!("{}", table::render(&header, &rows));
                }
                Output::Table => {}
                Output::Json => println!("{}", pretty_json(&Value::Array(raw.clone()))),
                Output::Yaml => print!("{}", yaml(&Value::Array(raw.clone()))),
            }
            !raw.is_empty()
        }
        Target::Endpoints => {
            if let Some(service) = name {
                query.push(format!("service={}", encode(service)));
            }
            let raw: Value = api
                .get_json(&format!("/api/v1/endpoints?{}", query.join("&")))
                .await?;
            let doc: EndpointsDoc =
                serde_json::from_value(raw.clone()).map_err(|source| ClientError::Decode {
                    api: api.addr.to_string(),
                    source,
                })?;
            match output {
                Output::Table if !doc.endpoints.is_empty() => {
                    let rows: Vec<Vec<String>> = doc
                        .endpoints
                        .iter()
                        .map(|e| {
                            vec![
                                e.namespace.clone(),
                                e.service.clone(),
                                e.address.clone(),
                                e.source.clone(),
                                e.node_id.clone().unwrap_or_else(|| "-".to_owned()),
                                if e.ejected_by.is_empty() {
                                    "-".to_owned()
                                } else {
                                    format!("yes (by {})", e.ejected_by.join(", "))
                                },
                            ]
                        })
                        .collect();
                    let header = [
                        "NAMESPACE",
                        "SERVICE",
                        "ADDRESS",
                        "SOURCE",
                        "PROXY",
                        "EJECTED",
                    ];
                    print!("{}", table::render(&header, &rows));
                }
                Output::Table => {}
                Output::Json => println!("{}", pretty_json(&raw["endpoints"])),
                Output::Yaml => print!("{}", yaml(&raw["endpoints"])),
            }
            !doc.endpoints.is_empty()
        }
    };
    if found {
        return Ok(Exit::Ok);
    }
    let what = match target {
        Target::Resources(kind) => kinds::short(kind),
        Target::Proxies => "proxy",
        Target::Endpoints => "endpoints of service",
    };
    match name {
        Some(name) => {
            eprintln!(
                "remora: {what} \"{}\" not found",
                crate::escape::escape_control(name)
            );
            Ok(Exit::Failed)
        }
        None => {
            if output == Output::Table {
                eprintln!("no {what} found");
            }
            Ok(Exit::Ok)
        }
    }
}

/// A kind's own columns, and how a resource fills them.
type Columns = (&'static [&'static str], fn(&Value) -> Vec<String>);

/// NAMESPACE NAME, what matters for the kind, and the file it is kept in.
fn resources_table(kind: Kind, items: &[ResourceDoc]) -> String {
    let (columns, cells): Columns = match kind {
        Kind::Service => (&["PORTS", "CLUSTER-IP"], |d| {
            vec![service_ports(d), text(&d["spec"]["clusterIP"])]
        }),
        Kind::HttpRoute => (&["PARENTS", "BACKENDS"], |d| {
            vec![route_parents(d), route_backends(d)]
        }),
        Kind::MeshTls => (&["TARGET", "MODE"], |d| {
            vec![target(d), text(&d["spec"]["mode"])]
        }),
        Kind::AuthorizationPolicy => (&["TARGET", "ACTION"], |d| {
            vec![target(d), text(&d["spec"]["action"])]
        }),
        Kind::TrafficPolicy => (&["TARGET"], |d| vec![target(d)]),
    };
    let mut header = vec!["NAMESPACE", "NAME"];
    header.extend(columns);
    header.push("FILE");
    let rows: Vec<Vec<String>> = items
        .iter()
        .map(|i| {
            let mut row = vec![i.namespace.clone(), i.name.clone()];
            row.extend(cells(&i.document));
            let file = i.location.as_deref().map(|l| {
                std::path::Path::new(l)
                    .file_name()
                    .map_or_else(|| l.to_owned(), |f| f.to_string_lossy().into_owned())
            });
            row.push(file.unwrap_or_else(|| "-".to_owned()));
            row
        })
        .collect();
    table::render(&header, &rows)
}

/// A scalar as text, `-` when absent.
fn text(v: &Value) -> String {
    match v {
        Value::Null => "-".to_owned(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// `80/http,9090/grpc`
fn service_ports(d: &Value) -> String {
    let ports: Vec<String> = d["spec"]["ports"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|p| {
            let protocol = p["appProtocol"].as_str().unwrap_or("http");
            format!("{}/{protocol}", text(&p["port"]))
        })
        .collect();
    if ports.is_empty() {
        "-".to_owned()
    } else {
        ports.join(",")
    }
}

fn route_parents(d: &Value) -> String {
    let parents: Vec<String> = d["spec"]["parentRefs"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|p| text(&p["name"]))
        .collect();
    parents.join(",")
}

/// `orders-v1:90,orders-v2:10`
fn route_backends(d: &Value) -> String {
    let backends: Vec<String> = d["spec"]["rules"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|r| r["backendRefs"].as_array().into_iter().flatten())
        .map(|b| match &b["weight"] {
            Value::Null => text(&b["name"]),
            w => format!("{}:{w}", text(&b["name"])),
        })
        .collect();
    backends.join(",")
}

/// `Service/orders`, `HTTPRoute/split`, or `namespace`.
fn target(d: &Value) -> String {
    let t = &d["spec"]["targetRef"];
    match (t["kind"].as_str(), t["name"].as_str()) {
        (Some(kind), Some(name)) => format!("{kind}/{name}"),
        (Some(kind), None) => kind.to_owned(),
        _ => "namespace".to_owned(),
    }
}

/// Indented JSON.
pub fn pretty_json(v: &Value) -> String {
    serde_json::to_string_pretty(v).unwrap_or_else(|_| v.to_string())
}

/// One YAML document.
pub fn yaml(v: &Value) -> String {
    serde_yaml_ng::to_string(v).unwrap_or_else(|_| format!("{}\n", pretty_json(v)))
}

/// YAML documents separated by `---`, as `apply -f` reads them back.
fn yaml_stream(documents: &[&Value]) -> String {
    documents
        .iter()
        .map(|d| yaml(d))
        .collect::<Vec<_>>()
        .join("---\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_proxies_and_endpoints_parse_by_any_name() {
        assert_eq!(Target::parse("svc"), Ok(Target::Resources(Kind::Service)));
        assert_eq!(
            Target::parse("httproutes"),
            Ok(Target::Resources(Kind::HttpRoute))
        );
        assert_eq!(Target::parse("proxies"), Ok(Target::Proxies));
        assert_eq!(Target::parse("endpoints"), Ok(Target::Endpoints));
        assert!(Target::parse("pods").is_err());
    }

    #[test]
    fn a_service_row_shows_its_ports_and_file() {
        let item = ResourceDoc {
            namespace: "default".into(),
            name: "orders".into(),
            location: Some("/etc/remora/service-default-orders.yaml".into()),
            document: serde_json::json!({"spec": {"ports": [{"port": 80}, {"port": 9090, "appProtocol": "grpc"}]}}),
        };
        let text = resources_table(Kind::Service, &[item]);
        assert!(text.contains("80/http,9090/grpc"), "{text}");
        assert!(text.contains("service-default-orders.yaml"), "{text}");
        assert!(!text.contains("/etc/remora"), "{text}");
    }

    #[test]
    fn a_route_row_shows_its_split() {
        let d = serde_json::json!({"spec": {"parentRefs": [{"name": "orders"}], "rules": [{"backendRefs": [
            {"name": "orders-v1", "weight": 90}, {"name": "orders-v2", "weight": 10}]}]}});
        assert_eq!(route_parents(&d), "orders");
        assert_eq!(route_backends(&d), "orders-v1:90,orders-v2:10");
    }
}
