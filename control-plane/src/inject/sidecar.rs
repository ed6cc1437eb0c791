//! What injection adds to a pod template, and taking it out again.
//!
//! - `remora-init`, the first init container: `remora-proxy init` installs the
//!   iptables rules, as root with NET_ADMIN and NET_RAW and no other capability.
//! - `remora-proxy`: in native mode (the default) the second init container,
//!   with `restartPolicy: Always`, so Kubernetes (1.29+) starts it before the
//!   app, holds the app until its startup probe passes, stops it after the app,
//!   and a Job still finishes. In classic mode the first regular container,
//!   whose `postStart` hook holds the next containers until `/ready` answers and
//!   whose `preStop` hook drains it (`POST /shutdown`) and waits for it to exit.
//! - The `remora-token` volume: the pod's service-account token projected
//!   with audience `remora` (an hour, rotated by the kubelet), mounted
//!   read-only into the proxy, which presents it for its certificates.
//! - Pod annotations: `prometheus.io/*` for scraping the admin port's
//!   `/metrics`, and `remora.io/injected: VERSION`.
//!
//! The proxy's bootstrap is its environment (`REMORA_BOOTSTRAP_FROM_ENV=1`):
//! the Service name written here, the control plane and trust bundle from the
//! settings, the app's port from its first container port, the app's own
//! probes it runs for the kubelet (`probes`), and the pod's name, namespace,
//! IP and service account from the downward API.
//!
//! The classic hooks run `remora-proxy wait` and `remora-proxy drain` inside
//! the proxy's image: no shell or `wget` needed.

use serde_yaml_ng::{Mapping, Value};

use super::annotations::{self, Mode, PodOptions, INJECTED, SIDECAR_MODE};
use super::probes::{self, APP_PROBES_ENV};
use super::walk::Site;
use super::{InjectSettings, ProxyResources};

/// The init container that installs the iptables rules.
pub const INIT_NAME: &str = "remora-init";
/// The proxy's container (an init container in native mode).
pub const PROXY_NAME: &str = "remora-proxy";
/// The proxy's admin port (the proxy's default): probes, `/metrics`, drain.
pub const ADMIN_PORT: u16 = 7900;
/// The projected service-account token's volume, and where the proxy finds it
/// (the proxy's default `REMORA_TOKEN_FILE` is `TOKEN_DIR/token`).
pub const TOKEN_VOLUME: &str = "remora-token";
const TOKEN_DIR: &str = "/var/run/secrets/remora";
/// The audience of the proxy's token: the control plane's TokenReview asks for
/// it, so a token made for another audience cannot get a certificate.
pub const TOKEN_AUDIENCE: &str = "remora";
/// How long each projected token lives; the kubelet renews it at 80%.
const TOKEN_SECONDS: i64 = 3600;

const SCRAPE: &str = "prometheus.io/scrape";
const SCRAPE_PORT: &str = "prometheus.io/port";
const SCRAPE_PATH: &str = "prometheus.io/path";

/// Adds the sidecar to `template` (replacing an earlier injection).
pub(super) fn inject(
    site: &Site,
    template: &mut Mapping,
    settings: &InjectSettings,
) -> Result<(), super::InjectError> {
    uninject(site, template)?;
    let found = template
        .get("metadata")
        .and_then(|m| m.get("annotations"))
        .and_then(Value::as_mapping);
    let labels = template
        .get("metadata")
        .and_then(|m| m.get("labels"))
        .and_then(Value::as_mapping)
        .cloned();
    let options = match annotations::read(found, &settings.resources) {
        Ok(Some(options)) => options,
        Ok(None) => return Ok(()),
        Err(e) => {
            return Err(super::InjectError::Annotation {
                object: site.object.clone(),
                annotation: e.annotation,
                value: e.value,
                reason: e.reason,
            })
        }
    };
    let spec = child_map(site, template, "spec", "spec")?;
    // iptables rules in the host's network namespace would capture the node's
    // traffic: pods on the host network are left alone.
    if spec.get("hostNetwork").and_then(Value::as_bool) == Some(true) {
        return Ok(());
    }
    if !spec.get("containers").is_some_and(Value::is_sequence) {
        return Err(site.field_error("spec.containers", "is not a list of containers"));
    }
    let service = match options.service.clone() {
        Some(service) => service,
        None => service_from_labels(site, labels.as_ref())?,
    };
    if options.mode == Mode::Classic {
        refuse_app_init_containers(site, spec)?;
    }
    let app_port = first_container_port(spec);
    // The kubelet's probes of the app would meet STRICT mTLS: they go to the
    // admin port, and the proxy runs them (see `probes`).
    let originals = match spec.get_mut("containers").and_then(Value::as_sequence_mut) {
        Some(containers) => probes::rewrite(containers),
        None => Mapping::new(),
    };
    let pod = Pod {
        service,
        app_port,
        app_probes: (!originals.is_empty()).then(|| probes::to_json(&originals)),
    };
    let proxy = proxy_container(settings, &options, &pod);
    let volumes = child_list(site, spec, "volumes", "spec.volumes")?;
    volumes.push(token_volume());
    let inits = child_list(site, spec, "initContainers", "spec.initContainers")?;
    inits.insert(0, init_container(settings, &options));
    match options.mode {
        Mode::Native => inits.insert(1, proxy),
        Mode::Classic => {
            if let Some(containers) = spec.get_mut("containers").and_then(Value::as_sequence_mut) {
                containers.insert(0, proxy);
            }
        }
    }
    let metadata = child_map(site, template, "metadata", "metadata")?;
    let annotations = child_map(site, metadata, "annotations", "metadata.annotations")?;
    // An app that has its own scrape annotations keeps them.
    if !annotations.contains_key(SCRAPE) {
        for (key, value) in scrape_annotations() {
            annotations.insert(key.into(), value.into());
        }
    }
    annotations.insert(INJECTED.into(), settings.version.as_str().into());
    Ok(())
}

/// Takes out what [`inject`] added; a template without it is left as it was.
pub(super) fn uninject(site: &Site, template: &mut Mapping) -> Result<(), super::InjectError> {
    if let Some(spec) = template.get_mut("spec").and_then(Value::as_mapping_mut) {
        // The app's probes first: their originals are in the proxy's env.
        if let Some(text) = proxy_env(spec, APP_PROBES_ENV) {
            let originals = probes::from_json(&text).map_err(|message| {
                site.field_error(
                    "spec",
                    format!("container `{PROXY_NAME}`, env `{APP_PROBES_ENV}`: {message}"),
                )
            })?;
            if let Some(containers) = spec.get_mut("containers").and_then(Value::as_sequence_mut) {
                probes::restore(containers, &originals);
            }
        }
        let ours = |c: &Value| {
            c.get("name")
                .and_then(Value::as_str)
                .is_some_and(|n| n == INIT_NAME || n == PROXY_NAME)
        };
        for key in ["initContainers", "containers"] {
            if let Some(list) = spec.get_mut(key).and_then(Value::as_sequence_mut) {
                list.retain(|c| !ours(c));
            }
        }
        if let Some(volumes) = spec.get_mut("volumes").and_then(Value::as_sequence_mut) {
            volumes.retain(|v| v.get("name").and_then(Value::as_str) != Some(TOKEN_VOLUME));
        }
        // Lists left empty were made by injection.
        for key in ["initContainers", "volumes"] {
            if spec
                .get(key)
                .and_then(Value::as_sequence)
                .is_some_and(Vec::is_empty)
            {
                spec.shift_remove(key);
            }
        }
    } else if template.get("spec").is_some() {
        return Err(site.field_error("spec", "is not a mapping"));
    }
    if let Some(metadata) = template.get_mut("metadata").and_then(Value::as_mapping_mut) {
        if let Some(annotations) = metadata
            .get_mut("annotations")
            .and_then(Value::as_mapping_mut)
        {
            annotations.shift_remove(INJECTED);
            // Removed only when they are exactly ours.
            let scrape = scrape_annotations();
            if scrape
                .iter()
                .all(|(k, v)| annotations.get(*k).and_then(Value::as_str) == Some(v.as_str()))
            {
                for (key, _) in &scrape {
                    annotations.shift_remove(*key);
                }
            }
            if annotations.is_empty() {
                metadata.shift_remove("annotations");
            }
        }
        if metadata.is_empty() {
            template.shift_remove("metadata");
        }
    }
    Ok(())
}

fn scrape_annotations() -> [(&'static str, String); 3] {
    [
        (SCRAPE, "true".to_owned()),
        (SCRAPE_PORT, ADMIN_PORT.to_string()),
        (SCRAPE_PATH, "/metrics".to_owned()),
    ]
}

/// `remora-proxy init` with the pod's skipped ports and CIDRs.
fn init_container(settings: &InjectSettings, options: &PodOptions) -> Value {
    let mut args: Vec<Value> = vec![
        "init".into(),
        "--proxy-uid".into(),
        settings.proxy_uid.to_string().into(),
    ];
    let lists = [
        ("--skip-inbound-ports", join(&options.skip_inbound_ports)),
        ("--skip-outbound-ports", join(&options.skip_outbound_ports)),
        (
            "--skip-outbound-cidrs",
            options.skip_outbound_cidrs.join(","),
        ),
    ];
    for (flag, list) in lists {
        if !list.is_empty() {
            args.push(flag.into());
            args.push(list.into());
        }
    }
    map([
        ("name", INIT_NAME.into()),
        ("image", settings.image.as_str().into()),
        ("args", args.into()),
        ("resources", resources(&options.resources)),
        (
            "securityContext",
            map([
                ("allowPrivilegeEscalation", false.into()),
                ("privileged", false.into()),
                (
                    "capabilities",
                    map([
                        ("add", vec!["NET_ADMIN", "NET_RAW"].into()),
                        ("drop", vec!["ALL"].into()),
                    ]),
                ),
                ("runAsNonRoot", false.into()),
                ("runAsUser", 0_i64.into()),
            ]),
        ),
    ])
}

/// What the proxy's bootstrap needs from the pod template itself.
struct Pod {
    /// The Service the proxy serves.
    service: String,
    /// The app's first container port: where inbound HTTP goes.
    app_port: Option<u16>,
    /// `REMORA_APP_PROBES`: the app's probes the proxy runs, when any.
    app_probes: Option<String>,
}

/// The value of the variable `name` of an injected proxy's container.
fn proxy_env(spec: &Mapping, name: &str) -> Option<String> {
    ["initContainers", "containers"]
        .into_iter()
        .filter_map(|key| spec.get(key).and_then(Value::as_sequence))
        .flatten()
        .find(|c| c.get("name").and_then(Value::as_str) == Some(PROXY_NAME))?
        .get("env")?
        .as_sequence()?
        .iter()
        .find(|e| e.get("name").and_then(Value::as_str) == Some(name))?
        .get("value")?
        .as_str()
        .map(str::to_owned)
}

/// The Service's name when no `remora.io/service` says: the labels workloads
/// usually carry it in, else the workload's own name. An environment
/// variable's `fieldRef` cannot pick a label by a key chosen per pod, so the
/// name is written literally.
///
/// The name is checked as `remora.io/service` is: `app: Orders` or a
/// workload called `orders.v1` would inject fine and then stop the proxy at
/// start (and, native, the whole pod), far from the cause.
fn service_from_labels(
    site: &Site,
    labels: Option<&Mapping>,
) -> Result<String, super::InjectError> {
    let label = |key: &'static str| {
        labels
            .and_then(|l| l.get(key))
            .and_then(Value::as_str)
            .map(str::trim)
            .filter(|v| !v.is_empty())
            .map(|v| (format!("label `{key}`"), v.to_owned()))
    };
    let (from, name) = label("app.kubernetes.io/name")
        .or_else(|| label("app"))
        .unwrap_or_else(|| {
            // A `generateName` prefix ends in `-`.
            (
                "the workload's name".to_owned(),
                site.object.name.trim_end_matches('-').to_owned(),
            )
        });
    if annotations::is_dns_label(&name) {
        Ok(name)
    } else {
        Err(super::InjectError::ServiceName {
            object: site.object.clone(),
            from,
            value: name,
        })
    }
}

/// Classic mode: the app's own init containers run after `remora-init` has
/// redirected the pod's traffic but before the proxy (a regular container)
/// has started, so every connection they open goes to a port nobody listens
/// on. Refused, naming them, rather than a pod stuck in `Init`.
fn refuse_app_init_containers(site: &Site, spec: &Mapping) -> Result<(), super::InjectError> {
    let names: Vec<String> = spec
        .get("initContainers")
        .and_then(Value::as_sequence)
        .into_iter()
        .flatten()
        .map(|c| {
            c.get("name")
                .and_then(Value::as_str)
                .unwrap_or("(no name)")
                .to_owned()
        })
        .collect();
    if names.is_empty() {
        return Ok(());
    }
    let list = names
        .iter()
        .map(|n| format!("`{n}`"))
        .collect::<Vec<_>>()
        .join(", ");
    Err(site.field_error(
        "spec.initContainers",
        format!(
            "{list}: in classic mode ({SIDECAR_MODE}: classic) the app's init containers run after \
             the traffic redirection and before the proxy, so their connections fail; use the \
             native mode (Kubernetes 1.29+), or move their work into the app's containers"
        ),
    ))
}

/// The first TCP `containerPort` of the app's containers.
fn first_container_port(spec: &Mapping) -> Option<u16> {
    spec.get("containers")?
        .as_sequence()?
        .iter()
        .filter(|c| c.get("name").and_then(Value::as_str) != Some(PROXY_NAME))
        .filter_map(|c| c.get("ports").and_then(Value::as_sequence))
        .flatten()
        .filter(|p| {
            p.get("protocol")
                .and_then(Value::as_str)
                .is_none_or(|proto| proto == "TCP")
        })
        .find_map(|p| p.get("containerPort").and_then(Value::as_u64))
        .and_then(|port| u16::try_from(port).ok())
        .filter(|port| *port != 0)
}

/// The pod's service-account token for audience `remora`, as a file.
fn token_volume() -> Value {
    map([
        ("name", TOKEN_VOLUME.into()),
        (
            "projected",
            map([(
                "sources",
                vec![map([(
                    "serviceAccountToken",
                    map([
                        ("audience", TOKEN_AUDIENCE.into()),
                        ("expirationSeconds", TOKEN_SECONDS.into()),
                        ("path", "token".into()),
                    ]),
                )])]
                .into(),
            )]),
        ),
    ])
}

/// The proxy's container, native or classic.
fn proxy_container(settings: &InjectSettings, options: &PodOptions, pod: &Pod) -> Value {
    let mut env = vec![
        value_env("REMORA_BOOTSTRAP_FROM_ENV", "1"),
        value_env("REMORA_SERVICE", &pod.service),
        value_env("REMORA_CONTROL_PLANE", &settings.control_plane),
    ];
    if settings.control_plane_namespace != crate::ca::CONTROL_PLANE_NAMESPACE {
        env.push(value_env(
            "REMORA_CONTROL_PLANE_NAMESPACE",
            &settings.control_plane_namespace,
        ));
    }
    if let Some(bundle) = &settings.trust_bundle {
        env.push(value_env("REMORA_TRUST_BUNDLE", bundle));
    }
    if let Some(port) = pod.app_port {
        env.push(value_env("REMORA_APP", &format!("127.0.0.1:{port}")));
    }
    env.extend([
        field_env("POD_NAME", "metadata.name"),
        field_env("POD_NAMESPACE", "metadata.namespace"),
        field_env("POD_IP", "status.podIP"),
        field_env("SERVICE_ACCOUNT", "spec.serviceAccountName"),
    ]);
    if !options.opaque_ports.is_empty() {
        env.push(value_env(
            "REMORA_OPAQUE_PORTS",
            &join(&options.opaque_ports),
        ));
    }
    if let Some(probes) = &pod.app_probes {
        env.push(value_env(APP_PROBES_ENV, probes));
    }
    let ready = || {
        map([
            ("path", "/ready".into()),
            ("port", i64::from(ADMIN_PORT).into()),
        ])
    };
    let mut container = Mapping::new();
    let mut set = |key: &str, value: Value| {
        container.insert(key.into(), value);
    };
    set("name", PROXY_NAME.into());
    set("image", settings.image.as_str().into());
    if options.mode == Mode::Native {
        set("restartPolicy", "Always".into());
    }
    set(
        "ports",
        vec![map([
            ("name", "remora-admin".into()),
            ("containerPort", i64::from(ADMIN_PORT).into()),
        ])]
        .into(),
    );
    set("env", env.into());
    set(
        "volumeMounts",
        vec![map([
            ("name", TOKEN_VOLUME.into()),
            ("mountPath", TOKEN_DIR.into()),
            ("readOnly", true.into()),
        ])]
        .into(),
    );
    set("resources", resources(&options.resources));
    set(
        "securityContext",
        map([
            ("allowPrivilegeEscalation", false.into()),
            ("capabilities", map([("drop", vec!["ALL"].into())])),
            ("readOnlyRootFilesystem", true.into()),
            ("runAsNonRoot", true.into()),
            ("runAsUser", i64::from(settings.proxy_uid).into()),
        ]),
    );
    // Up to two minutes to get a certificate and config before the app starts.
    set(
        "startupProbe",
        map([
            ("httpGet", ready()),
            ("periodSeconds", 1_i64.into()),
            ("failureThreshold", 120_i64.into()),
        ]),
    );
    set(
        "readinessProbe",
        map([("httpGet", ready()), ("periodSeconds", 5_i64.into())]),
    );
    if options.mode == Mode::Classic {
        set("lifecycle", classic_hooks());
    }
    Value::Mapping(container)
}

/// Classic mode: hold the app until the proxy is ready; on the way out, drain
/// the proxy and wait until it has exited.
fn classic_hooks() -> Value {
    let exec = |command: &str| {
        map([(
            "exec",
            map([(
                "command",
                vec![Value::from("remora-proxy"), command.into()].into(),
            )]),
        )])
    };
    map([("postStart", exec("wait")), ("preStop", exec("drain"))])
}

fn resources(r: &ProxyResources) -> Value {
    let pick = |cpu: &Option<String>, memory: &Option<String>| {
        let mut m = Mapping::new();
        if let Some(cpu) = cpu {
            m.insert("cpu".into(), cpu.as_str().into());
        }
        if let Some(memory) = memory {
            m.insert("memory".into(), memory.as_str().into());
        }
        m
    };
    let mut out = Mapping::new();
    let requests = pick(&r.cpu_request, &r.memory_request);
    let limits = pick(&r.cpu_limit, &r.memory_limit);
    if !requests.is_empty() {
        out.insert("requests".into(), requests.into());
    }
    if !limits.is_empty() {
        out.insert("limits".into(), limits.into());
    }
    Value::Mapping(out)
}

fn value_env(name: &str, value: &str) -> Value {
    map([("name", name.into()), ("value", value.into())])
}

fn field_env(name: &str, path: &str) -> Value {
    map([
        ("name", name.into()),
        (
            "valueFrom",
            map([("fieldRef", map([("fieldPath", path.into())]))]),
        ),
    ])
}

fn join(ports: &[u16]) -> String {
    ports
        .iter()
        .map(u16::to_string)
        .collect::<Vec<_>>()
        .join(",")
}

fn map<const N: usize>(pairs: [(&str, Value); N]) -> Value {
    Value::Mapping(
        pairs
            .into_iter()
            .map(|(k, v)| (Value::from(k), v))
            .collect(),
    )
}

/// `parent[key]` as a mapping, made when missing.
fn child_map<'a>(
    site: &Site,
    parent: &'a mut Mapping,
    key: &str,
    field: &str,
) -> Result<&'a mut Mapping, super::InjectError> {
    let value = parent
        .entry(key.into())
        .or_insert_with(|| Value::Mapping(Mapping::new()));
    if value.is_null() {
        *value = Value::Mapping(Mapping::new());
    }
    value
        .as_mapping_mut()
        .ok_or_else(|| site.field_error(field, "is not a mapping"))
}

/// `parent[key]` as a list, made when missing.
fn child_list<'a>(
    site: &Site,
    parent: &'a mut Mapping,
    key: &str,
    field: &str,
) -> Result<&'a mut Vec<Value>, super::InjectError> {
    let value = parent
        .entry(key.into())
        .or_insert_with(|| Value::Sequence(Vec::new()));
    if value.is_null() {
        *value = Value::Sequence(Vec::new());
    }
    value
        .as_sequence_mut()
        .ok_or_else(|| site.field_error(field, "is not a list"))
}
