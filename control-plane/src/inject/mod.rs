//! Sidecar injection: a Kubernetes manifest in, the same manifest with
//! `remora-proxy` added to every pod it describes out.
//!
//! One pure function, [`inject`], with its inverse [`uninject`]: no I/O, no
//! cluster, so the CLI (`remora inject`) and, later, the admission webhook give
//! the same answer for the same object. Injecting removes any earlier injection
//! first, so injecting twice equals injecting once, and a newer version
//! replaces an older one.
//!
//! - `walk`: where the pod templates are in each kind (Pod, Deployment,
//!   StatefulSet, DaemonSet, ReplicaSet, ReplicationController, Job, CronJob,
//!   `List`s); any other kind passes through unchanged.
//! - `annotations`: the pod template's `remora.io/*` annotations, checked.
//! - `sidecar`: the containers and annotations added, and taking them out.
//! - `probes`: the app's kubelet probes pointed at the proxy's admin port
//!   (STRICT mTLS would refuse the kubelet), and back.
//! - `documents`: multi-document YAML text in and out, for the CLI.
//!
//! The proxy in the pod reads its bootstrap from environment variables
//! (`REMORA_BOOTSTRAP_FROM_ENV`): the Service name is written literally (see
//! [`SERVICE`]), the pod's name, namespace, IP and service account come from
//! the downward API, and it proves its identity with a projected
//! service-account token (audience `remora`) mounted from the `remora-token`
//! volume.
// An error names the object and the annotation or field in full; it is
// made once per bad manifest, off any hot path, so its size does not matter.
#![allow(clippy::result_large_err)]

mod annotations;
mod documents;
mod probes;
mod sidecar;
mod walk;

#[cfg(test)]
mod tests;

use std::fmt;

use serde_yaml_ng::{Mapping, Value};

pub use annotations::{
    INJECT, INJECTED, OPAQUE_PORTS, PROXY_CPU_LIMIT, PROXY_CPU_REQUEST, PROXY_MEMORY_LIMIT,
    PROXY_MEMORY_REQUEST, SERVICE, SIDECAR_MODE, SKIP_INBOUND_PORTS, SKIP_OUTBOUND_CIDRS,
    SKIP_OUTBOUND_PORTS,
};
pub use documents::{rewrite, Direction, DocumentError};
pub use probes::APP_PROBES_ENV;
pub use sidecar::{ADMIN_PORT, INIT_NAME, PROXY_NAME, TOKEN_AUDIENCE, TOKEN_VOLUME};

/// What injection needs to know that is not in the manifest.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InjectSettings {
    /// The proxy's image (it also runs `remora-proxy init`).
    pub image: String,
    /// Written in the `remora.io/injected` annotation.
    pub version: String,
    /// The uid the proxy runs as: the iptables rules never redirect its own
    /// connections.
    pub proxy_uid: u32,
    /// The proxy's requests and limits when no annotation overrides them.
    pub resources: ProxyResources,
    /// The mesh's trust bundle (PEM), written as `REMORA_TRUST_BUNDLE`: the
    /// proxy's first certificate request (which carries its token) then goes
    /// over TLS to a control plane it verified. The proxy refuses to start
    /// without one, so `remora inject` requires it and the webhook always
    /// sets it; `None` only serves uninjecting and tests.
    pub trust_bundle: Option<String>,
    /// Where proxies reach the control plane (`REMORA_CONTROL_PLANE`):
    /// `host:port`, resolved by the proxy at start.
    pub control_plane: String,
    /// The control plane's namespace, part of the SPIFFE id proxies verify it
    /// by; written as `REMORA_CONTROL_PLANE_NAMESPACE` when it is not the
    /// default `remora-system`.
    pub control_plane_namespace: String,
}

/// The control plane's Service as `remora install` creates it.
pub const DEFAULT_CONTROL_PLANE: &str = "remora.remora-system.svc:7700";

impl InjectSettings {
    /// The defaults for this build: image `remora-proxy:VERSION`, uid 1337.
    pub fn new(version: &str) -> Self {
        Self {
            image: format!("remora-proxy:{version}"),
            version: version.to_owned(),
            proxy_uid: 1337,
            resources: ProxyResources::default(),
            trust_bundle: None,
            control_plane: DEFAULT_CONTROL_PLANE.to_owned(),
            control_plane_namespace: crate::ca::CONTROL_PLANE_NAMESPACE.to_owned(),
        }
    }
}

/// Kubernetes quantities (`10m`, `64Mi`); `None` leaves that one unset.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProxyResources {
    pub cpu_request: Option<String>,
    pub cpu_limit: Option<String>,
    pub memory_request: Option<String>,
    pub memory_limit: Option<String>,
}

impl Default for ProxyResources {
    /// A sidecar is small: 10m CPU and 32Mi requested, 64Mi at most, and no CPU
    /// limit (throttling a proxy adds latency to every request of the app).
    fn default() -> Self {
        Self {
            cpu_request: Some("10m".into()),
            cpu_limit: None,
            memory_request: Some("32Mi".into()),
            memory_limit: Some("64Mi".into()),
        }
    }
}

/// Which object an error is about: `Deployment shop/orders`, or the item of a
/// `List`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ObjectRef {
    pub kind: String,
    pub namespace: Option<String>,
    pub name: String,
    /// The index in the enclosing `List`'s `items`.
    pub item: Option<usize>,
}

impl fmt::Display for ObjectRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(item) = self.item {
            write!(f, "items[{item}]: ")?;
        }
        match &self.namespace {
            Some(ns) => write!(f, "{} {ns}/{}", self.kind, self.name),
            None => write!(f, "{} {}", self.kind, self.name),
        }
    }
}

/// Why an object could not be injected.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum InjectError {
    #[error("{object}: annotation `{annotation}`: `{value}` {reason}")]
    Annotation {
        object: ObjectRef,
        annotation: &'static str,
        value: String,
        reason: String,
    },
    #[error("{object}: field `{field}`: {message}")]
    Field {
        object: ObjectRef,
        field: String,
        message: String,
    },
    /// The Service name taken from a label or the workload's name is not one
    /// the proxy accepts: caught here, or the proxy would exit at start and
    /// a native sidecar's pod would never start.
    #[error(
        "{object}: the Service name `{value}` (from {from}) is not a lowercase DNS label \
         (a-z, 0-9, -, at most 63): set the annotation `remora.io/service` to the Service's name"
    )]
    ServiceName {
        object: ObjectRef,
        /// `label `app``, or `the workload's name`.
        from: String,
        value: String,
    },
}

/// `doc` with the sidecar added to every pod template in it; other kinds as
/// they were. Pods annotated `remora.io/inject: disabled` and pods on the
/// host's network get no sidecar (and lose one they had).
pub fn inject(mut doc: Value, settings: &InjectSettings) -> Result<Value, InjectError> {
    walk::each_pod_template(
        &mut doc,
        &mut |site: &walk::Site, template: &mut Mapping| sidecar::inject(site, template, settings),
    )?;
    Ok(doc)
}

/// `doc` without what [`inject`] added: `uninject(inject(x)) == x` for a
/// manifest that had no sidecar.
pub fn uninject(mut doc: Value) -> Result<Value, InjectError> {
    walk::each_pod_template(&mut doc, &mut sidecar::uninject)?;
    Ok(doc)
}
