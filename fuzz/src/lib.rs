//! What the fuzz targets share: the control plane's pipeline from a YAML file's
//! text to the xDS resources each proxy namespace is sent.

use std::collections::BTreeSet;
use std::net::SocketAddr;

use remora_control::check::Report;
use remora_control::source;
use remora_control::store::Store;
use remora_control::translate::{self, MeshEndpoint, Resources};
use remora_control::validate;

/// Splits an input into the config loaded first and the reloads after it: a line
/// `#reload` (a YAML comment, so every part is still a YAML file).
pub const RELOAD: &str = "\n#reload\n";

/// The trust domain the control plane issues identities in (its default).
pub const TRUST_DOMAIN: &str = "cluster.local";

/// Loads and reloads per input.
const MAX_CONFIGS: usize = 4;
/// Proxy namespaces translated for, per config.
const MAX_NAMESPACES: usize = 4;
/// Services that get a connected proxy (a meshed endpoint).
const MAX_MESHED: usize = 8;

/// One translation: the config in force, the connected proxies, and what a proxy
/// in `namespace` is sent.
pub struct Translated<'a> {
    pub store: &'a Store,
    pub endpoints: &'a [MeshEndpoint],
    pub namespace: &'a str,
    pub resources: &'a Resources,
}

/// Runs the control plane over `text` as the contents of its config file, as
/// `remora check` and `remora control` do: each config (the first, then each
/// reload, see [`RELOAD`]) is split into documents, validated and reported; on a
/// reload the last good version of each rejected resource stays in force; the
/// config in force is translated for every proxy namespace (twice: translation
/// must be deterministic, since a hash of its output is the xDS version), and
/// `each` sees every translation.
pub fn control_plane(text: &str, mut each: impl FnMut(&Translated<'_>)) {
    let mut previous = Store::default();
    for (i, config) in text.split(RELOAD).take(MAX_CONFIGS).enumerate() {
        let loaded = source::parse(&format!("config-{i}.yaml"), config);
        let mut outcome = validate::validate_loaded(&loaded);
        // What `remora check` prints.
        let report = Report {
            valid: outcome.store.counts(),
            problems: outcome.problems.clone(),
        };
        let _ = report.is_ok();
        let _ = report.summary();
        for problem in &report.problems {
            let _ = problem.to_string();
        }
        // What `remora control` keeps in force.
        validate::retain_last_good(&previous, &mut outcome);
        for problem in &outcome.problems {
            let _ = problem.to_string();
        }
        let store = outcome.store;
        let endpoints = meshed_endpoints(&store);
        for namespace in namespaces(&store) {
            let resources = translate::translate(&store, &endpoints, &namespace, TRUST_DOMAIN);
            let again = translate::translate(&store, &endpoints, &namespace, TRUST_DOMAIN);
            assert!(
                resources == again,
                "translating the same config twice for namespace {namespace} gave different resources"
            );
            each(&Translated {
                store: &store,
                endpoints: &endpoints,
                namespace: &namespace,
                resources: &resources,
            });
        }
        previous = store;
    }
}

/// Every other Service has a connected proxy (the rest are served by their static
/// endpoints, or by none), sorted as the control plane keeps them.
fn meshed_endpoints(store: &Store) -> Vec<MeshEndpoint> {
    let mut endpoints: Vec<MeshEndpoint> = store
        .services()
        .step_by(2)
        .take(MAX_MESHED)
        .enumerate()
        .map(|(i, s)| MeshEndpoint {
            service: s.key.clone(),
            address: SocketAddr::from(([127, 0, 0, 1], 20_000 + i as u16)),
            node_id: format!("{}-{i}", s.key.name),
            // An identity the Service admits (endpoint authority), from the
            // address it announces.
            identity: Some(format!(
                "spiffe://{TRUST_DOMAIN}/ns/{}/sa/{}",
                s.key.namespace,
                s.authority
                    .service_accounts
                    .first()
                    .unwrap_or(&s.key.name)
            )),
            peer: Some(SocketAddr::from(([127, 0, 0, 1], 40_000))),
            origin: translate::Origin::Registered,
        })
        .collect();
    endpoints.sort();
    endpoints
}

/// The namespaces of the Services and HTTPRoutes, and `default`.
fn namespaces(store: &Store) -> Vec<String> {
    let mut namespaces: BTreeSet<String> = store
        .services()
        .map(|s| s.key.namespace.clone())
        .chain(store.routes().map(|r| r.key.namespace.clone()))
        .collect();
    namespaces.insert("default".to_owned());
    namespaces.into_iter().take(MAX_NAMESPACES).collect()
}
