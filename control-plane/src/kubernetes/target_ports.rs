//! A Service port's `targetPort` in a cluster, made what the validator reads
//! in a file before the Service is validated: a number, or nothing.
//!
//! - absent: the port itself (Kubernetes' rule);
//! - a number: as it is;
//! - a name (`redis`): the number the Service's EndpointSlices give the port.
//!   The EndpointSlice controller resolves the name against each pod's
//!   `containerPorts` and lists the number under the Service port's name
//!   (`""` for an unnamed port), so the slices already hold the answer.
//!
//! A name no slice lists yet (no pod serves it), or that slices give several
//! numbers (pods serving it on different ports, as during a rollout that
//! changes it), is dropped: HTTP to that port then goes to the proxy's `app`
//! and opaque TCP to the Service port, as in a file without `targetPort`, and
//! a warning names the Service and the port, once per change ([`Warned`]; only at debug when no
//! slice lists the port at all, as for a Service no pod serves yet).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex, PoisonError};

use serde_yaml_ng::Value;

use super::cache::Kinds;
use super::compact::ObjectRef;
use super::kinds::Watched;

/// The numbers a Service's ports resolved to, by port name (`""` for an
/// unnamed port), over all its slices.
pub type SlicePorts = BTreeMap<String, BTreeSet<u16>>;

/// An EndpointSlice as a reload takes it from the caches: its namespace
/// (shared by the slices of one namespace) and its compact document
/// (`compact::slice_ports`), so only reference counts are touched under the
/// caches' lock.
pub type PickedSlice = (Arc<str>, Arc<serde_yaml_ng::Value>);

/// The slices of `kinds`, in namespace order. Cheap: meant to run under the
/// caches' lock.
pub fn picked_slices(kinds: &Kinds) -> Vec<PickedSlice> {
    let mut namespace: Arc<str> = Arc::from("");
    let mut out = Vec::new();
    for (at, slice) in kinds.get(&Watched::EndpointSlice).into_iter().flatten() {
        let Ok(document) = &slice.document else {
            continue;
        };
        if *namespace != *at.namespace {
            namespace = Arc::from(at.namespace.as_str());
        }
        out.push((namespace.clone(), document.clone()));
    }
    out
}

/// Every Service's [`SlicePorts`], from its slices; outside the lock.
pub fn slice_ports(slices: &[PickedSlice]) -> BTreeMap<ObjectRef, SlicePorts> {
    let mut out: BTreeMap<ObjectRef, SlicePorts> = BTreeMap::new();
    for (namespace, slice) in slices {
        let Some(service) = slice["service"].as_str() else {
            continue;
        };
        let service = ObjectRef {
            namespace: namespace.to_string(),
            name: service.to_owned(),
        };
        let ports = out.entry(service).or_default();
        for p in slice["ports"].as_sequence().into_iter().flatten() {
            let number = p["port"]
                .as_u64()
                .and_then(|n| u16::try_from(n).ok())
                .filter(|n| *n != 0);
            if let (Some(name), Some(number)) = (p["name"].as_str(), number) {
                ports.entry(name.to_owned()).or_default().insert(number);
            }
        }
    }
    out
}

/// A named `targetPort` left unresolved.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Unresolved {
    pub service: ObjectRef,
    /// The Service port: its name, or its number when it has none.
    pub port: String,
    /// The name `targetPort` gives.
    pub target: String,
    /// The numbers the slices list for the port: none, or more than one.
    pub found: Vec<u16>,
}

impl Unresolved {
    fn reason(&self) -> String {
        match self.found.as_slice() {
            [] => "no EndpointSlice of the Service lists the port yet (no ready pod names it)"
                .to_owned(),
            several => format!(
                "the Service's pods serve it on different ports ({})",
                several
                    .iter()
                    .map(u16::to_string)
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        }
    }
}

/// What a port's `targetPort` is before it is resolved.
enum Written {
    Absent,
    Name(String),
    /// A number, or a value validation reports.
    Other,
}

/// Makes the `targetPort` of each port of `document` (Service `service`'s) a
/// number or nothing, as the module doc says, from the numbers its slices
/// give (`ports`); returns the names left unresolved.
pub fn resolve(document: &mut Value, service: &ObjectRef, ports: &SlicePorts) -> Vec<Unresolved> {
    let mut out = Vec::new();
    let list = document
        .get_mut("spec")
        .and_then(|s| s.get_mut("ports"))
        .and_then(Value::as_sequence_mut);
    for entry in list.into_iter().flatten() {
        // Anything malformed is left for validation to report.
        let Some(m) = entry.as_mapping_mut() else {
            continue;
        };
        let port = m.get("port").filter(|p| p.is_number()).cloned();
        let written = match m.get("targetPort") {
            None | Some(Value::Null) => Written::Absent,
            Some(Value::String(s)) if s.is_empty() => Written::Absent,
            Some(Value::String(s)) => Written::Name(s.clone()),
            Some(_) => Written::Other,
        };
        let target = match written {
            Written::Other => continue,
            Written::Absent => {
                if let Some(port) = port {
                    m.insert(Value::from("targetPort"), port);
                }
                continue;
            }
            Written::Name(target) => target,
        };
        let name = m
            .get("name")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        let found: Vec<u16> = ports
            .get(&name)
            .map(|numbers| numbers.iter().copied().collect())
            .unwrap_or_default();
        if let [number] = found.as_slice() {
            m.insert(Value::from("targetPort"), Value::from(*number));
            continue;
        }
        m.shift_remove("targetPort");
        let port = if name.is_empty() {
            port.as_ref()
                .and_then(Value::as_u64)
                .map(|p| p.to_string())
                .unwrap_or_default()
        } else {
            name
        };
        out.push(Unresolved {
            service: service.clone(),
            port,
            target,
            found,
        });
    }
    out
}

/// The unresolved target ports already told about: a reload follows every
/// change in the cluster, and a port still unresolved is not logged again.
#[derive(Debug, Default)]
pub struct Warned(Mutex<BTreeSet<Unresolved>>);

impl Warned {
    /// Logs what `now` holds that the last load's did not, forgets what it no
    /// longer holds (so a port unresolved again later is told again), and
    /// returns what was logged.
    pub fn observe(&self, now: BTreeSet<Unresolved>) -> Vec<Unresolved> {
        let mut told = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        let new: Vec<Unresolved> = now.difference(&told).cloned().collect();
        for u in &new {
            // A Service no pod serves yet (or scaled to zero) is ordinary in
            // a cluster, and every Service of it is resolved: only pods that
            // disagree are worth a warning.
            if u.found.is_empty() {
                tracing::debug!(
                    service = %u.service,
                    port = %u.port,
                    target_port = %u.target,
                    reason = %u.reason(),
                    "a named targetPort is not resolved yet"
                );
            } else {
                tracing::warn!(
                    service = %u.service,
                    port = %u.port,
                    target_port = %u.target,
                    reason = %u.reason(),
                    "a named targetPort is not resolved: HTTP to this port goes to the proxy's app, opaque TCP to the Service port"
                );
            }
        }
        *told = now;
        new
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn orders() -> ObjectRef {
        ObjectRef {
            namespace: "shop".into(),
            name: "orders".into(),
        }
    }

    fn service(ports: &str) -> Value {
        serde_yaml_ng::from_str(&format!("spec:\n  ports: {ports}\n")).unwrap()
    }

    fn targets(document: &Value) -> Vec<Option<u64>> {
        document["spec"]["ports"]
            .as_sequence()
            .unwrap()
            .iter()
            .map(|p| p.get("targetPort").and_then(Value::as_u64))
            .collect()
    }

    fn slices(list: &[(&str, &[u16])]) -> SlicePorts {
        list.iter()
            .map(|(name, numbers)| (name.to_string(), numbers.iter().copied().collect()))
            .collect()
    }

    #[test]
    fn a_number_stays_an_absent_one_is_the_port_and_a_name_is_what_the_slices_say() {
        let mut doc = service(
            "[{name: api, port: 80, targetPort: 8080}, {name: admin, port: 81}, \
             {name: redis, port: 6379, targetPort: redis}, {port: 9000, targetPort: ''}]",
        );
        let unresolved = resolve(
            &mut doc,
            &orders(),
            &slices(&[("redis", &[16379][..]), ("api", &[1][..])]),
        );
        assert!(unresolved.is_empty(), "{unresolved:?}");
        assert_eq!(
            targets(&doc),
            [Some(8080), Some(81), Some(16379), Some(9000)],
            "a number is kept even when the slices say otherwise"
        );
    }

    #[test]
    fn a_name_no_slice_lists_or_several_numbers_leave_no_target() {
        let mut doc = service(
            "[{name: metrics, port: 9090, targetPort: metrics}, \
             {port: 6379, targetPort: redis}, {name: web, port: 80, targetPort: http}]",
        );
        let unresolved = resolve(
            &mut doc,
            &orders(),
            &slices(&[("web", &[8080, 8081][..]), ("", &[][..])]),
        );
        assert_eq!(targets(&doc), [None, None, None]);
        let told: Vec<String> = unresolved
            .iter()
            .map(|u| format!("{} {} {:?}", u.port, u.target, u.found))
            .collect();
        assert_eq!(
            told,
            [
                "metrics metrics []",
                "6379 redis []",
                "web http [8080, 8081]"
            ]
        );
        assert!(unresolved[2].reason().contains("8080, 8081"));
    }

    #[test]
    fn an_unresolved_port_is_told_once_until_it_resolves() {
        let warned = Warned::default();
        let redis = Unresolved {
            service: orders(),
            port: "redis".into(),
            target: "redis".into(),
            found: Vec::new(),
        };
        let now = BTreeSet::from([redis.clone()]);
        assert_eq!(warned.observe(now.clone()), std::slice::from_ref(&redis));
        assert!(
            warned.observe(now.clone()).is_empty(),
            "reloaded, nothing new"
        );
        assert!(warned.observe(BTreeSet::new()).is_empty(), "resolved");
        assert_eq!(warned.observe(now), [redis], "unresolved again: told again");
    }
}
