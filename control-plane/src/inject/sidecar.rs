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
//! - Pod annotations: `prometheus.io/*` for scraping the admin port's
//!   `/metrics`, and `remora.io/injected: VERSION`.
//!
//! The classic hooks run `/bin/sh` and `wget` inside the proxy's image (there is
//! no `remora-proxy wait` command yet).

use serde_yaml_ng::{Mapping, Value};

use super::annotations::{self, Mode, PodOptions, INJECTED};
use super::walk::Site;
use super::{InjectSettings, ProxyResources};

/// The init container that installs the iptables rules.
pub const INIT_NAME: &str = "remora-init";
/// The proxy's container (an init container in native mode).
pub const PROXY_NAME: &str = "remora-proxy";
/// The proxy's admin port (the proxy's default): probes, `/metrics`, drain.
pub const ADMIN_PORT: u16 = 7900;

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
    let proxy = proxy_container(settings, &options);
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
        // Only what injection created: an app's own (empty) list stays.
        if spec
            .get("initContainers")
            .and_then(Value::as_sequence)
            .is_some_and(Vec::is_empty)
        {
            spec.shift_remove("initContainers");
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

/// The proxy's container, native or classic.
fn proxy_container(settings: &InjectSettings, options: &PodOptions) -> Value {
    let mut env = vec![
        field_env("POD_NAME", "metadata.name"),
        field_env("POD_NAMESPACE", "metadata.namespace"),
        field_env("POD_IP", "status.podIP"),
        field_env("SERVICE_ACCOUNT", "spec.serviceAccountName"),
    ];
    if !options.opaque_ports.is_empty() {
        env.push(map([
            ("name", "REMORA_OPAQUE_PORTS".into()),
            ("value", join(&options.opaque_ports).into()),
        ]));
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
    let admin = format!("http://127.0.0.1:{ADMIN_PORT}");
    let wait_ready = format!("until wget -q -O /dev/null {admin}/ready; do sleep 1; done");
    let drain = format!(
        "wget -q -O /dev/null --post-data= {admin}/shutdown; \
         while wget -q -O /dev/null {admin}/live; do sleep 1; done"
    );
    let exec = |script: String| {
        map([(
            "exec",
            map([(
                "command",
                vec![Value::from("/bin/sh"), "-c".into(), script.into()].into(),
            )]),
        )])
    };
    map([("postStart", exec(wait_ready)), ("preStop", exec(drain))])
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
