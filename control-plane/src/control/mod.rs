//! Running the control plane: bind the xDS and API listeners, load and watch the
//! config source (a directory of YAML files, or a Kubernetes cluster), serve
//! until shut down.
//!
//! [`run_control`] does it all; [`ControlPlane`] splits binding from serving for
//! callers that need the bound addresses first (the demo runs it in-process).

mod addresses;
mod config;
mod transport;

pub use transport::{TransportError, CONTROL_PLANE_ACCOUNT, CONTROL_PLANE_NAMESPACE};

use std::future::Future;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::api::{self, ApiState};
use crate::signal::stopped;
use crate::source::{DirSource, Source};
use crate::xds::{AdsServer, Registry, Snapshot};
use crate::Error;

pub const DEFAULT_XDS_ADDR: SocketAddr =
    SocketAddr::new(std::net::IpAddr::V4(Ipv4Addr::LOCALHOST), 7700);
pub const DEFAULT_API_ADDR: SocketAddr =
    SocketAddr::new(std::net::IpAddr::V4(Ipv4Addr::LOCALHOST), 7780);

/// How often an idle ADS connection is probed, and how long a probe may go
/// unanswered: a proxy that vanished without closing its connection stops being an
/// endpoint after at most the sum.
const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(15);
const KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ControlOptions {
    /// The directory of `*.yaml` / `*.yml` resources (file source); not read
    /// when `kubernetes` is set.
    pub config_dir: PathBuf,
    /// Read resources from a Kubernetes cluster instead of `config_dir`.
    pub kubernetes: Option<crate::kubernetes::KubernetesOptions>,
    /// gRPC (ADS) listen address; port 0 picks a free port.
    pub xds_addr: SocketAddr,
    /// HTTP API listen address; port 0 picks a free port.
    pub api_addr: SocketAddr,
    /// Where to write `{"xds": ..., "api": ...}` once bound.
    pub addresses_file: Option<PathBuf>,
    /// For this long after start, proxies that reconnect keep their endpoints
    /// (see [`crate::xds::DEFAULT_RECONNECT_GRACE`]).
    pub reconnect_grace: std::time::Duration,
    /// Where the CA key and certificate and the token hashes live.
    pub data_dir: PathBuf,
    /// The SPIFFE trust domain of the mesh.
    pub trust_domain: String,
    /// An operator's CA instead of the one made in `data_dir`.
    pub ca_files: Option<crate::ca::CaFiles>,
    /// Lifetime of issued workload certificates.
    pub leaf_ttl: std::time::Duration,
    /// Serve xDS and telemetry to proxies without a client certificate (local
    /// experiments only; off by default).
    pub allow_plaintext_proxies: bool,
    /// Require an admin token on the HTTP API even on loopback (it is always
    /// required elsewhere).
    pub api_token_required: bool,
    /// Open xDS connections at most (proxies, each with one or two).
    pub max_xds_connections: usize,
    /// More DNS names or IPs the xDS serving certificate is valid for, beyond
    /// `localhost` and the bound address: the names gRPC clients dial.
    pub xds_server_names: Vec<crate::ca::HostName>,
    /// The mutating admission webhook (HTTPS), when `--webhook-addr` is given.
    pub webhook: Option<crate::webhook::WebhookOptions>,
}

/// Enough for thousands of proxies, and under the descriptors a process gets.
pub const DEFAULT_MAX_XDS_CONNECTIONS: usize = 8192;

/// The mesh's trust domain unless told otherwise.
pub const DEFAULT_TRUST_DOMAIN: &str = "cluster.local";

/// `$REMORA_DATA_DIR`, else `~/.remora`, else `./remora-data`.
pub fn default_data_dir() -> PathBuf {
    std::env::var_os("REMORA_DATA_DIR")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".remora")))
        .unwrap_or_else(|| PathBuf::from("remora-data"))
}

impl ControlOptions {
    /// Default addresses (127.0.0.1:7700 and 127.0.0.1:7780), no addresses file.
    pub fn new(config_dir: impl Into<PathBuf>) -> Self {
        ControlOptions {
            config_dir: config_dir.into(),
            kubernetes: None,
            xds_addr: DEFAULT_XDS_ADDR,
            api_addr: DEFAULT_API_ADDR,
            addresses_file: None,
            reconnect_grace: crate::xds::DEFAULT_RECONNECT_GRACE,
            data_dir: default_data_dir(),
            trust_domain: DEFAULT_TRUST_DOMAIN.to_owned(),
            ca_files: None,
            leaf_ttl: crate::ca::DEFAULT_LEAF_TTL,
            allow_plaintext_proxies: false,
            api_token_required: false,
            max_xds_connections: DEFAULT_MAX_XDS_CONNECTIONS,
            xds_server_names: Vec::new(),
            webhook: None,
        }
    }
}

/// A bound control plane, config loaded, not serving yet (connections wait in the
/// listen backlog).
pub struct ControlPlane {
    options: ControlOptions,
    ca: std::sync::Arc<crate::ca::CertificateAuthority>,
    /// Where resources are read from and API writes go. Nothing past `bind`
    /// knows which kind of source it is.
    source: std::sync::Arc<dyn Source>,
    /// The cluster's API client in Kubernetes mode.
    kube: Option<kube::Client>,
    snapshots: watch::Sender<Snapshot>,
    xds: TcpListener,
    api: TcpListener,
    xds_addr: SocketAddr,
    api_addr: SocketAddr,
    /// The webhook's listener and its bound address, when it is served.
    webhook: Option<(TcpListener, SocketAddr)>,
    /// The connected proxies and endpoint discovery.
    registry: std::sync::Arc<Registry>,
    /// Kubernetes: the endpoint watch, started at bind so its first lists run
    /// while the rest starts.
    cluster_endpoints: Option<crate::kubernetes::endpoints::EndpointWatch>,
    /// Stops every task (sent by `serve`; dropped with an unserved plane).
    stop: watch::Sender<bool>,
}

impl std::fmt::Debug for ControlPlane {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ControlPlane")
            .field("source", &self.source.describe())
            .field("kubernetes", &self.kube.is_some())
            .field("xds_addr", &self.xds_addr)
            .field("api_addr", &self.api_addr)
            .finish_non_exhaustive()
    }
}

impl ControlPlane {
    /// Loads the config directory (it must exist), or in Kubernetes mode
    /// waits for the cluster's first lists, and binds both listeners.
    pub async fn bind(options: ControlOptions) -> Result<Self, Error> {
        let (source, kube) = match &options.kubernetes {
            Some(cluster) => {
                let client = crate::kubernetes::connect(cluster).await?;
                let source: std::sync::Arc<dyn Source> = std::sync::Arc::new(
                    crate::kubernetes::KubeSource::start(client.clone()).await?,
                );
                (source, Some(client))
            }
            None => {
                let source: std::sync::Arc<dyn Source> =
                    std::sync::Arc::new(DirSource::open(&options.config_dir)?);
                (source, None)
            }
        };
        let snapshots = config::first_load(source.as_ref()).await?;
        let (stop, stop_rx) = watch::channel(false);
        // In Kubernetes the cluster says who serves: proxies are listed but
        // register no endpoint, and EndpointSlices feed endpoint discovery.
        // The xDS server holds endpoints back until the first feed is done.
        let registry = match &kube {
            Some(_) => Registry::without_self_registration(snapshots.clone()),
            None => Registry::new(snapshots.clone()),
        };
        let cluster_endpoints = kube.clone().map(|client| {
            crate::kubernetes::endpoints::spawn(
                client,
                registry.discovery().clone(),
                options.trust_domain.clone(),
                stop_rx,
            )
        });

        let bind = |addr: SocketAddr| async move {
            let listener = TcpListener::bind(addr)
                .await
                .map_err(|source| Error::Bind { addr, source })?;
            let local = listener
                .local_addr()
                .map_err(|source| Error::Bind { addr, source })?;
            Ok::<_, Error>((listener, local))
        };
        let (xds, xds_addr) = bind(options.xds_addr).await?;
        let (api, api_addr) = bind(options.api_addr).await?;
        let webhook = match &options.webhook {
            Some(webhook) => Some(bind(webhook.addr).await?),
            None => None,
        };
        let ca = match (&kube, &options.kubernetes, &options.ca_files) {
            // In a cluster the data dir is an emptyDir: the CA made there is
            // kept in a Secret, or proxies would not trust a restarted pod.
            (Some(client), Some(cluster), None) => crate::kubernetes::ca_secret::load_or_create(
                client,
                &cluster.namespace,
                &options.data_dir,
                &options.trust_domain,
            )
            .await
            .map_err(crate::kubernetes::KubeError::from)?,
            _ => crate::ca::CertificateAuthority::load_or_create(
                &options.data_dir,
                options.ca_files.as_ref(),
                &options.trust_domain,
            )?,
        };
        Ok(ControlPlane {
            ca: std::sync::Arc::new(ca),
            options,
            source,
            kube,
            snapshots,
            xds,
            api,
            xds_addr,
            api_addr,
            webhook,
            registry,
            cluster_endpoints,
            stop,
        })
    }

    /// The bound webhook address, when the webhook is served.
    pub fn webhook_addr(&self) -> Option<SocketAddr> {
        self.webhook.as_ref().map(|(_, addr)| *addr)
    }

    /// The bound xDS address (the real port when bound to port 0).
    pub fn xds_addr(&self) -> SocketAddr {
        self.xds_addr
    }

    /// The bound API address.
    pub fn api_addr(&self) -> SocketAddr {
        self.api_addr
    }

    /// Serves xDS and the API, and reloads the config on changes, until `shutdown`
    /// resolves. Open ADS streams are ended with UNAVAILABLE.
    pub async fn serve(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), Error> {
        let stop_tx = self.stop;
        let stop_rx = stop_tx.subscribe();
        let trigger = {
            let stop_tx = stop_tx.clone();
            tokio::spawn(async move {
                shutdown.await;
                let _ = stop_tx.send(true);
            })
        };
        tracing::info!(
            xds = %self.xds_addr,
            api = %self.api_addr,
            source = %self.source.describe(),
            kubernetes = self.kube.is_some(),
            "control plane serving"
        );
        if self.options.allow_plaintext_proxies {
            tracing::warn!(
                xds = %self.xds_addr,
                "--allow-plaintext-proxies: proxies WITHOUT a client certificate are served; anyone who reaches the xDS port can read the config of the namespace it names and report telemetry as a plaintext proxy. For local experiments only"
            );
        }

        let registry = self.registry;
        let cluster_endpoints = self.cluster_endpoints;
        let traffic = std::sync::Arc::new(crate::traffic::TrafficStore::default());
        let certificates = std::sync::Arc::new(crate::identity::IssuedCertificates::default());
        let (writes, write_requests) = api::writes::channel();
        let tokens = crate::identity::TokenStore::new(&self.options.data_dir);
        let api_state = ApiState {
            traffic: traffic.clone(),
            registry: registry.clone(),
            snapshots: self.snapshots.subscribe(),
            trust_bundle: bytes::Bytes::from(self.ca.trust_bundle_pem().to_owned()),
            access: if self.options.api_token_required || !self.api_addr.ip().is_loopback() {
                tracing::info!(api = %self.api_addr, "the API needs an admin token (remora token create --admin)");
                api::auth::Access::new(tokens, api::auth::Reads::AdminToken)
            } else {
                api::auth::Access::new(tokens, api::auth::Reads::Open)
            },
            writes,
            certificates: certificates.clone(),
        };
        // Who the control plane is: what its xDS and webhook certificates
        // carry, and what no proxy is ever issued.
        let own_identity = transport::control_plane_identity(&self.options)?;
        let mut identity = crate::identity::IdentityService::new(
            self.ca.clone(),
            crate::identity::TokenStore::new(&self.options.data_dir),
            self.options.leaf_ttl,
            own_identity.clone(),
        )
        .recording(certificates);
        // In a cluster, pods prove who they are with their service-account
        // token; bootstrap tokens keep working for VMs joining the mesh.
        if let Some(client) = &self.kube {
            identity = identity.with_token_review(std::sync::Arc::new(
                crate::kubernetes::tokenreview::TokenReviewer::new(client.clone()),
            ));
        }
        let api = tokio::spawn(api::serve(self.api, api_state, stop_rx.clone()));
        let webhook = match (self.webhook, &self.options.webhook) {
            (Some((listener, _)), Some(options)) => Some(crate::webhook::spawn(
                listener,
                options,
                own_identity.clone(),
                self.ca.clone(),
                self.options.leaf_ttl,
                self.kube.clone(),
                stop_rx.clone(),
            )?),
            _ => None,
        };
        let reload = tokio::spawn(config::run(
            self.source,
            self.snapshots.clone(),
            write_requests,
            stop_rx.clone(),
        ));
        let ads = AdsServer::new(
            self.snapshots.subscribe(),
            registry.clone(),
            stop_rx.clone(),
            self.options.reconnect_grace,
            &self.options.trust_domain,
        )
        .allow_plaintext(self.options.allow_plaintext_proxies)
        .hold_endpoints_until(cluster_endpoints.as_ref().map(|w| w.ready()));
        let hosts = transport::serving_hosts(self.xds_addr, &self.options.xds_server_names);
        tracing::info!(
            names = %hosts.iter().map(ToString::to_string).collect::<Vec<_>>().join(", "),
            "xDS certificate: the control plane's SPIFFE id, and these names for clients that check host names (gRPC)"
        );
        let tls = std::sync::Arc::new(transport::XdsTls::new(
            self.ca.clone(),
            own_identity,
            self.options.leaf_ttl,
            hosts,
        )?);
        let mut stop = stop_rx.clone();
        let served = tonic::transport::Server::builder()
            .http2_keepalive_interval(Some(KEEPALIVE_INTERVAL))
            .http2_keepalive_timeout(Some(KEEPALIVE_TIMEOUT))
            .add_service(ads.into_service())
            .add_service(identity.into_service())
            .add_service(crate::traffic::TelemetryService::new(traffic, registry).into_service())
            .serve_with_incoming_shutdown(
                transport::incoming(self.xds, tls, self.options.max_xds_connections),
                async move { stopped(&mut stop).await },
            )
            .await;

        // However xDS ended, stop the rest.
        let _ = stop_tx.send(true);
        trigger.abort();
        let _ = api.await;
        let _ = reload.await;
        if let Some(webhook) = webhook {
            let _ = webhook.await;
        }
        if let Some(endpoints) = cluster_endpoints {
            endpoints.stopped().await;
        }
        tracing::info!("control plane stopped");
        served.map_err(Error::from)
    }
}

/// Binds, writes the addresses file if asked, and serves until `shutdown`
/// resolves.
pub async fn run_control(
    options: ControlOptions,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), Error> {
    let addresses_file = options.addresses_file.clone();
    let plane = ControlPlane::bind(options).await?;
    if let Some(path) = &addresses_file {
        addresses::write(
            path,
            plane.xds_addr(),
            plane.api_addr(),
            plane.webhook_addr(),
        )
        .map_err(|source| Error::AddressesFile {
            path: path.clone(),
            source,
        })?;
    }
    plane.serve(shutdown).await
}

#[cfg(test)]
mod tests;
