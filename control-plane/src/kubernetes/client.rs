//! Connecting to the API server: the pod's service account when the control
//! plane runs in the cluster, else a kubeconfig (`--kubeconfig`, `$KUBECONFIG`,
//! `~/.kube/config`), as `kubectl` finds it.

use std::path::PathBuf;

/// How `remora control --kubernetes` reaches the cluster.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KubernetesOptions {
    /// A kubeconfig file; `None`: in-cluster config, else the usual kubeconfig.
    pub kubeconfig: Option<PathBuf>,
    /// The kubeconfig context; `None`: its current context.
    pub context: Option<String>,
    /// The control plane's own namespace: never injected, holds its Service.
    pub namespace: String,
}

/// The namespace `remora install` puts the control plane in.
pub const DEFAULT_NAMESPACE: &str = "remora-system";

#[derive(Debug, thiserror::Error)]
pub enum KubeError {
    #[error("cannot read the kubeconfig {path}")]
    Kubeconfig {
        path: PathBuf,
        source: kube::config::KubeconfigError,
    },
    #[error("cannot read the kubeconfig ($KUBECONFIG or ~/.kube/config)")]
    DefaultKubeconfig(#[source] kube::config::KubeconfigError),
    #[error("no Kubernetes configuration: not in a cluster and no kubeconfig found")]
    NoConfig(#[source] kube::config::InferConfigError),
    #[error("cannot make a Kubernetes client")]
    Client(#[source] kube::Error),
    #[error("the API server refuses to {verb} {resource} ({kind}): HTTP {code}: {message}; check the control plane's RBAC (it needs list and watch on {resource})")]
    Refused {
        kind: &'static str,
        resource: &'static str,
        verb: &'static str,
        code: u16,
        message: String,
    },
    #[error(transparent)]
    CaSecret(#[from] super::ca_secret::CaSecretError),
}

/// A client for the cluster `options` names, as the control plane.
pub async fn connect(options: &KubernetesOptions) -> Result<kube::Client, KubeError> {
    connect_as(
        options,
        concat!("remora-control/", env!("CARGO_PKG_VERSION")),
    )
    .await
}

/// A client for the cluster `options` names that says it is `agent`
/// (`User-Agent`), so the API server's audit log tells the control plane from
/// `remora check`.
pub async fn connect_as(
    options: &KubernetesOptions,
    agent: &'static str,
) -> Result<kube::Client, KubeError> {
    let config_options = kube::config::KubeConfigOptions {
        context: options.context.clone(),
        ..Default::default()
    };
    let config = match &options.kubeconfig {
        Some(path) => {
            let kubeconfig = kube::config::Kubeconfig::read_from(path).map_err(|source| {
                KubeError::Kubeconfig {
                    path: path.clone(),
                    source,
                }
            })?;
            kube::Config::from_custom_kubeconfig(kubeconfig, &config_options)
                .await
                .map_err(|source| KubeError::Kubeconfig {
                    path: path.clone(),
                    source,
                })?
        }
        // A context names a kubeconfig entry: read $KUBECONFIG or ~/.kube/config.
        None if options.context.is_some() => kube::Config::from_kubeconfig(&config_options)
            .await
            .map_err(KubeError::DefaultKubeconfig)?,
        None => kube::Config::infer().await.map_err(KubeError::NoConfig)?,
    };
    let mut config = config;
    config.headers.push((
        http::header::USER_AGENT,
        http::HeaderValue::from_static(agent),
    ));
    kube::Client::try_from(config).map_err(KubeError::Client)
}
