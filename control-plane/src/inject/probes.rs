//! The app's own kubelet probes, pointed at the proxy's admin port.
//!
//! The kubelet probes an app container at the pod's IP; iptables redirects
//! that to the proxy's inbound listener, which under STRICT mTLS refuses the
//! kubelet's plaintext, and the app restarts for ever. So, as Istio does,
//! each `httpGet` (scheme HTTP), `tcpSocket` and `grpc` liveness, readiness
//! and startup probe of an app container becomes an `httpGet` on the admin
//! port at `/app-health/<container>/<livez|readyz|startupz>`, keeping every
//! other field (periods, thresholds, timeout, `httpHeaders`). The originals
//! go to the proxy as JSON in `REMORA_APP_PROBES`, keyed by that path, with
//! named ports resolved to numbers:
//!
//! ```json
//! {"/app-health/app/livez": {"httpGet": {"path": "/healthz", "port": 8080}, "timeoutSeconds": 2},
//!  "/app-health/app/readyz": {"tcpSocket": {"port": 8080}, "portName": "http"},
//!  "/app-health/app/startupz": {"grpc": {"port": 9090, "service": "orders"}}}
//! ```
//!
//! The proxy probes the app on 127.0.0.1 from its own uid, which the
//! iptables rules never redirect; a `grpc` probe becomes the standard gRPC
//! health check, as the kubelet makes it. `timeoutSeconds` is copied only
//! when the probe has one: the proxy applies the kubelet's default (1) too.
//! `portName` (the name the original used) and the original's own fields
//! are what [`restore`] puts back, so uninjecting gives the manifest back
//! exactly.
//!
//! Left as they are: `exec` probes, HTTPS, a `host` other than the pod's, a
//! named port the container does not declare, and a `grpc` probe whose port
//! is not a number or whose `service` is not a string (Kubernetes allows
//! neither; the proxy would refuse them).

use serde_yaml_ng::{Mapping, Value};

use super::sidecar::ADMIN_PORT;

/// The proxy's variable holding the original probes.
pub const APP_PROBES_ENV: &str = "REMORA_APP_PROBES";

/// The probe handlers the proxy can run for the kubelet.
const ACTIONS: [&str; 3] = ["httpGet", "tcpSocket", "grpc"];

/// The probe fields, and the last part of their admin path.
const KINDS: [(&str, &str); 3] = [
    ("livenessProbe", "livez"),
    ("readinessProbe", "readyz"),
    ("startupProbe", "startupz"),
];

/// The admin path a container's probe is served at.
fn admin_path(container: &str, suffix: &str) -> String {
    format!("/app-health/{container}/{suffix}")
}

/// Rewrites the probes of `containers` (the app's) and returns the originals
/// by admin path, in container then probe order; empty when nothing was
/// rewritten.
pub(super) fn rewrite(containers: &mut [Value]) -> Mapping {
    let mut originals = Mapping::new();
    for container in containers.iter_mut() {
        let Some(container) = container.as_mapping_mut() else {
            continue;
        };
        let Some(name) = container
            .get("name")
            .and_then(Value::as_str)
            .map(str::to_owned)
        else {
            continue;
        };
        let ports = container.get("ports").cloned();
        for (field, suffix) in KINDS {
            let Some(probe) = container.get_mut(field).and_then(Value::as_mapping_mut) else {
                continue;
            };
            let path = admin_path(&name, suffix);
            if let Some(original) = rewrite_probe(probe, &path, ports.as_ref()) {
                originals.insert(path.into(), Value::Mapping(original));
            }
        }
    }
    originals
}

/// Points `probe` at the admin port and returns its entry for
/// `REMORA_APP_PROBES`; `None` (the probe untouched) when it is not one the
/// proxy can run for the kubelet.
fn rewrite_probe(probe: &mut Mapping, path: &str, ports: Option<&Value>) -> Option<Mapping> {
    let (key, action) = ACTIONS
        .into_iter()
        .find_map(|key| probe.get(key).map(|a| (key, a)))?;
    let action = action.as_mapping()?;
    // Another host is not the app beside the proxy.
    if action.get("host").is_some_and(|h| !is_blank(h)) {
        return None;
    }
    // The kubelet's default scheme is HTTP; HTTPS is left to the kubelet.
    if key == "httpGet"
        && action
            .get("scheme")
            .is_some_and(|s| s.as_str() != Some("HTTP"))
    {
        return None;
    }
    if key == "grpc" && !is_plain_grpc(action) {
        return None;
    }
    let written = action.get("port")?;
    let (port, port_name) = match written {
        Value::Number(n) => (n.as_u64().filter(|p| (1..=65535).contains(p))?, None),
        // Kubernetes' grpc probe has no named ports.
        Value::String(name) if key != "grpc" => (named_port(ports, name)?, Some(name.clone())),
        _ => return None,
    };
    let mut original = action.clone();
    original.insert("port".into(), port.into());
    let mut entry = Mapping::new();
    entry.insert(key.into(), Value::Mapping(original));
    if let Some(timeout) = probe.get("timeoutSeconds") {
        entry.insert("timeoutSeconds".into(), timeout.clone());
    }
    if let Some(name) = port_name {
        entry.insert("portName".into(), name.into());
    }
    let mut target = Mapping::new();
    target.insert("path".into(), path.into());
    target.insert("port".into(), i64::from(ADMIN_PORT).into());
    // The kubelet sends them on to the admin port; the proxy sends the
    // original's to the app.
    if let Some(headers) = action.get("httpHeaders") {
        target.insert("httpHeaders".into(), headers.clone());
    }
    replace_key(probe, key, "httpGet", Value::Mapping(target));
    Some(entry)
}

/// Puts back the probes [`rewrite`] changed in `containers`, from
/// `originals` (`REMORA_APP_PROBES`); a probe that no longer points at its
/// admin path (edited since) is left as it is.
pub(super) fn restore(containers: &mut [Value], originals: &Mapping) {
    for container in containers.iter_mut() {
        let Some(container) = container.as_mapping_mut() else {
            continue;
        };
        let Some(name) = container
            .get("name")
            .and_then(Value::as_str)
            .map(str::to_owned)
        else {
            continue;
        };
        for (field, suffix) in KINDS {
            let Some(probe) = container.get_mut(field).and_then(Value::as_mapping_mut) else {
                continue;
            };
            let path = admin_path(&name, suffix);
            let ours = probe.get("httpGet").is_some_and(|h| {
                h.get("path").and_then(Value::as_str) == Some(path.as_str())
                    && h.get("port").and_then(Value::as_u64) == Some(u64::from(ADMIN_PORT))
            });
            let Some(entry) = originals.get(path.as_str()).and_then(Value::as_mapping) else {
                continue;
            };
            if !ours {
                continue;
            }
            let Some((key, action)) = ACTIONS
                .into_iter()
                .find_map(|key| entry.get(key).map(|a| (key, a)))
            else {
                continue;
            };
            let mut action = action.clone();
            if let (Some(port_name), Some(a)) = (entry.get("portName"), action.as_mapping_mut()) {
                a.insert("port".into(), port_name.clone());
            }
            replace_key(probe, "httpGet", key, action);
        }
    }
}

/// `REMORA_APP_PROBES`'s value: compact JSON in the mapping's own order, so
/// the same pod always gets the same text.
pub(super) fn to_json(originals: &Mapping) -> String {
    // A mapping of string keys, strings, numbers, booleans and lists of
    // them: always representable as JSON.
    serde_json::to_string(originals).unwrap_or_default()
}

/// The mapping `REMORA_APP_PROBES` holds; the error says why it is not one.
pub(super) fn from_json(text: &str) -> Result<Mapping, String> {
    match serde_json::from_str::<Value>(text) {
        Ok(Value::Mapping(m)) => Ok(m),
        Ok(_) => Err("is not a JSON object".into()),
        Err(e) => Err(format!("is not JSON: {e}")),
    }
}

/// The `containerPort` of the container's port called `name`.
fn named_port(ports: Option<&Value>, name: &str) -> Option<u64> {
    ports?
        .as_sequence()?
        .iter()
        .find(|p| p.get("name").and_then(Value::as_str) == Some(name))?
        .get("containerPort")?
        .as_u64()
        .filter(|p| (1..=65535).contains(p))
}

/// Whether a `grpc` action has only Kubernetes' `GRPCAction` fields, its
/// `service` a name (or nothing: the server as a whole). The proxy refuses
/// anything else, and a proxy that refuses its probes does not start.
fn is_plain_grpc(action: &Mapping) -> bool {
    let known = action
        .keys()
        .all(|k| matches!(k.as_str(), Some("port" | "service")));
    let service = action
        .get("service")
        .is_none_or(|s| s.is_null() || s.is_string());
    known && service
}

fn is_blank(value: &Value) -> bool {
    match value {
        Value::Null => true,
        Value::String(s) => s.trim().is_empty(),
        _ => false,
    }
}

/// `map` with the entry `old` replaced by `new: value` at the same place, so
/// a manifest reads the same after a round trip.
fn replace_key(map: &mut Mapping, old: &str, new: &str, value: Value) {
    let mut value = Some(value);
    *map = std::mem::take(map)
        .into_iter()
        .filter_map(|(k, v)| {
            if k.as_str() == Some(old) {
                value.take().map(|value| (Value::from(new), value))
            } else if k.as_str() == Some(new) {
                // Only when old != new: a stale duplicate would win over ours.
                None
            } else {
                Some((k, v))
            }
        })
        .collect();
}

#[cfg(test)]
mod tests {
    use super::*;

    fn containers(yaml: &str) -> Vec<Value> {
        match serde_yaml_ng::from_str::<Value>(yaml).unwrap() {
            Value::Sequence(s) => s,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn http_and_tcp_probes_point_at_the_admin_port_and_come_back() {
        let original = containers(
            "
- name: app
  ports: [{name: http, containerPort: 8080}]
  livenessProbe:
    httpGet: {path: /healthz, port: http, httpHeaders: [{name: x-probe, value: live}]}
    timeoutSeconds: 2
    periodSeconds: 7
  readinessProbe:
    tcpSocket: {port: 8080}
    failureThreshold: 5
  startupProbe:
    exec: {command: [cat, /tmp/ready]}
",
        );
        let mut rewritten = original.clone();
        let originals = rewrite(&mut rewritten);
        let app = &rewritten[0];
        assert_eq!(
            app["livenessProbe"]["httpGet"]["path"].as_str(),
            Some("/app-health/app/livez")
        );
        assert_eq!(app["livenessProbe"]["httpGet"]["port"].as_u64(), Some(7900));
        assert_eq!(
            app["livenessProbe"]["httpGet"]["httpHeaders"][0]["value"].as_str(),
            Some("live")
        );
        assert_eq!(app["livenessProbe"]["periodSeconds"].as_u64(), Some(7));
        assert_eq!(
            app["readinessProbe"]["httpGet"]["path"].as_str(),
            Some("/app-health/app/readyz")
        );
        assert!(app["readinessProbe"].get("tcpSocket").is_none());
        assert_eq!(app["readinessProbe"]["failureThreshold"].as_u64(), Some(5));
        assert_eq!(app["startupProbe"], original[0]["startupProbe"], "exec");
        assert_eq!(
            to_json(&originals),
            r#"{"/app-health/app/livez":{"httpGet":{"path":"/healthz","port":8080,"httpHeaders":[{"name":"x-probe","value":"live"}]},"timeoutSeconds":2,"portName":"http"},"/app-health/app/readyz":{"tcpSocket":{"port":8080}}}"#
        );
        let parsed = from_json(&to_json(&originals)).unwrap();
        assert_eq!(parsed, originals);
        restore(&mut rewritten, &parsed);
        assert_eq!(rewritten, original);
    }

    #[test]
    fn grpc_probes_point_at_the_admin_port_and_come_back() {
        let original = containers(
            "
- name: app
  livenessProbe:
    grpc: {port: 9090, service: orders}
    timeoutSeconds: 3
    periodSeconds: 7
  readinessProbe:
    grpc: {port: 9090}
    failureThreshold: 5
  startupProbe:
    grpc: {port: 9090, service: null}
",
        );
        let mut rewritten = original.clone();
        let originals = rewrite(&mut rewritten);
        let app = &rewritten[0];
        for (field, path) in [
            ("livenessProbe", "/app-health/app/livez"),
            ("readinessProbe", "/app-health/app/readyz"),
            ("startupProbe", "/app-health/app/startupz"),
        ] {
            assert_eq!(app[field]["httpGet"]["path"].as_str(), Some(path));
            assert_eq!(app[field]["httpGet"]["port"].as_u64(), Some(7900));
            assert!(app[field].get("grpc").is_none(), "{field}");
        }
        assert_eq!(app["livenessProbe"]["timeoutSeconds"].as_u64(), Some(3));
        assert_eq!(app["livenessProbe"]["periodSeconds"].as_u64(), Some(7));
        assert_eq!(app["readinessProbe"]["failureThreshold"].as_u64(), Some(5));
        // No timeoutSeconds: the proxy applies the kubelet's default of 1.
        assert_eq!(
            to_json(&originals),
            r#"{"/app-health/app/livez":{"grpc":{"port":9090,"service":"orders"},"timeoutSeconds":3},"/app-health/app/readyz":{"grpc":{"port":9090}},"/app-health/app/startupz":{"grpc":{"port":9090,"service":null}}}"#
        );
        let parsed = from_json(&to_json(&originals)).unwrap();
        assert_eq!(parsed, originals);
        restore(&mut rewritten, &parsed);
        assert_eq!(rewritten, original);
    }

    #[test]
    fn probes_the_proxy_cannot_run_are_left_alone() {
        let original = containers(
            "
- name: app
  ports: [{name: grpc, containerPort: 9090}]
  livenessProbe: {httpGet: {path: /, port: 8443, scheme: HTTPS}}
  readinessProbe: {httpGet: {path: /, port: 8080, host: 10.0.0.9}}
  startupProbe: {grpc: {port: grpc}}
- name: side
  livenessProbe: {httpGet: {path: /, port: metrics}}
  readinessProbe: {tcpSocket: {port: 0}}
  startupProbe: {grpc: {port: 9090, service: 7}}
- name: third
  livenessProbe: {grpc: {port: 9090, host: 10.0.0.9}}
  readinessProbe: {grpc: {port: 9090, tls: true}}
  startupProbe: {grpc: {port: 0}}
",
        );
        let mut rewritten = original.clone();
        assert!(rewrite(&mut rewritten).is_empty());
        assert_eq!(rewritten, original);
    }

    #[test]
    fn a_probe_changed_since_injection_is_not_restored() {
        let mut c = containers("- {name: app, livenessProbe: {httpGet: {path: /h, port: 8080}}}");
        let originals = rewrite(&mut c);
        c[0]["livenessProbe"]["httpGet"]["path"] = "/other".into();
        let edited = c.clone();
        restore(&mut c, &originals);
        assert_eq!(c, edited);
    }

    #[test]
    fn the_variable_must_hold_a_json_object() {
        assert!(from_json("[1]").unwrap_err().contains("object"));
        assert!(from_json("{").unwrap_err().contains("not JSON"));
    }
}
