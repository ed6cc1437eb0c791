//! The `remora` command line. Each subcommand's arguments are a struct here; the
//! binary (`main.rs`) only dispatches.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{ArgGroup, Args, Parser, Subcommand};

pub use crate::client::Output;
use crate::client::{get::Target, Api, ApiAddr, ClientError};
use crate::control::{ControlOptions, DEFAULT_API_ADDR, DEFAULT_XDS_ADDR};

/// What every command that talks to the control plane exits with.
pub const EXIT_CODES: &str = "Exit codes: 0 ok; 1 refused or not as asked (invalid config, not found, a NACK, a proxy behind); 2 usage; 3 the control plane cannot be reached.";

#[derive(Debug, Parser)]
#[command(
    name = "remora",
    version,
    about = "Remora service mesh: control plane and operator CLI",
    after_help = EXIT_CODES
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
// Parsed once per process: the size of the largest variant does not matter.
#[allow(clippy::large_enum_variant)]
pub enum Command {
    /// Run the control plane, reading resources from a directory of YAML files.
    Control(ControlArgs),
    /// Validate resources offline: print every problem, exit 1 if there is any.
    /// With --kubernetes: what is wrong with an installation in a cluster.
    Check(CheckArgs),
    /// Create or change resources through the control plane: it validates them
    /// against everything it holds, then stores all of them or none.
    Apply(ApplyArgs),
    /// Delete resources named in files, or by KIND NAME.
    Delete(DeleteArgs),
    /// List resources in force (services, httproutes, meshtls,
    /// authorizationpolicies, trafficpolicies), proxies, or endpoints.
    Get(GetArgs),
    /// Every proxy: the config version it ACKed per type, whether it is current,
    /// its last NACK, its certificate. Exits 1 when one needs attention.
    Status(StatusArgs),
    /// Run a whole mesh on loopback: web -> orders v1/v2, moving the split step by step.
    Demo(DemoArgs),
    /// Bootstrap tokens that let a proxy obtain its workload certificate.
    #[command(subcommand)]
    Token(TokenCommand),
    /// Workload certificates as files, for clients without a Remora proxy
    /// (proxyless gRPC).
    #[command(subcommand, visible_alias = "cert")]
    Certificate(CertificateCommand),
    /// Print the trust bundle (PEM) proxies verify peers against.
    TrustBundle(DataArgs),
    /// Per-hop golden signals (SRC -> DST: success rate, requests per second,
    /// p50/p95/p99 latency, mesh overhead), from the control plane.
    Stat(StatArgs),
    /// Add the remora-proxy sidecar to the pods of Kubernetes manifests (or take
    /// it out), printing the manifests on standard output.
    Inject(InjectArgs),
    /// Print the manifests that install Remora on a cluster (what `kubectl
    /// kustomize deploy/base` renders).
    Install(InstallArgs),
}

/// Where the control plane's API is, and the admin token to show it.
#[derive(Debug, Clone, Args)]
pub struct ApiArgs {
    /// The control plane's API: HOST:PORT or http://HOST:PORT.
    #[arg(
        long,
        value_name = "ADDR",
        env = "REMORA_API_ADDR",
        default_value = "127.0.0.1:7780"
    )]
    pub api: ApiAddr,
    /// A file holding an admin token (remora token create --admin). Writes
    /// (apply, delete) always need one; reads when the API is off loopback or
    /// runs with --api-token-required.
    #[arg(long, value_name = "FILE", env = "REMORA_API_TOKEN_FILE")]
    pub token_file: Option<PathBuf>,
}

impl ApiArgs {
    /// The API with the token read from its file.
    pub fn client(&self) -> Result<Api, ClientError> {
        let token = crate::client::read_token(self.token_file.as_deref())?;
        Ok(Api::new(self.api.clone(), token))
    }
}

#[derive(Debug, Args)]
#[command(after_help = concat!(
    "Examples:\n",
    "  remora stat\n",
    "  remora stat orders -n shop --window 1m\n",
    "  remora stat --watch --api http://127.0.0.1:7780\n",
    "\n",
    "Exit codes: 0 ok; 1 refused; 2 usage; 3 the control plane cannot be reached."
))]
pub struct StatArgs {
    /// Only edges to or from this service.
    pub service: Option<String>,
    /// Only edges to or from this namespace.
    #[arg(short, long)]
    pub namespace: Option<String>,
    #[command(flatten)]
    pub api: ApiArgs,
    /// The window the figures cover: e.g. 10s, 1m (at most 10m).
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    pub window: std::time::Duration,
    /// Refresh every two seconds until interrupted.
    #[arg(short, long)]
    pub watch: bool,
    /// `table` for people, `json` or `yaml` for scripts.
    #[arg(short, long, value_enum, default_value_t = Output::Table)]
    pub output: Output,
}

#[derive(Debug, Args)]
#[command(after_help = concat!(
    "Examples:\n",
    "  remora apply -f orders.yaml\n",
    "  remora apply -f config/ --wait --timeout 30s\n",
    "  cat split.yaml | remora apply -f - -n shop\n",
    "  remora apply -f split.yaml --dry-run\n",
    "\n",
    "Writes need an admin token, on loopback too:\n",
    "  remora token create --admin > admin.token && export REMORA_API_TOKEN_FILE=admin.token\n",
    "\n",
    "Each resource prints as `service/orders created`, `configured` or `unchanged`; every\n",
    "problem names its file, resource and field, and then nothing is changed.\n",
    "\n",
    "Exit codes: 0 ok; 1 invalid, or (--wait) a proxy NACKed or is still behind at the\n",
    "timeout; 2 usage; 3 the control plane cannot be reached."
))]
pub struct ApplyArgs {
    /// A YAML file, a directory of them, or - for standard input (repeat for more).
    #[arg(
        short = 'f',
        long = "filename",
        visible_alias = "file",
        value_name = "FILE|DIR|-",
        required = true
    )]
    pub files: Vec<PathBuf>,
    /// Put resources without metadata.namespace in this namespace (the others
    /// must already be in it).
    #[arg(short, long)]
    pub namespace: Option<String>,
    /// Validate against everything the control plane holds; change nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Then wait until every connected proxy has ACKed the new config; name
    /// each proxy that NACKed it (with its message) and exit 1.
    #[arg(long)]
    pub wait: bool,
    /// How long --wait waits at most.
    #[arg(long, default_value = "60s", value_parser = parse_duration)]
    pub timeout: std::time::Duration,
    /// `table` prints a line per resource; `json` or `yaml` the API's answer.
    #[arg(short, long, value_enum, default_value_t = Output::Table)]
    pub output: Output,
    #[command(flatten)]
    pub api: ApiArgs,
}

#[derive(Debug, Args)]
#[command(
    group(ArgGroup::new("what").required(true).args(["kind", "files"])),
    after_help = concat!(
        "Examples:\n",
        "  remora delete -f split.yaml\n",
        "  remora delete httproute orders-split\n",
        "  remora delete service/orders -n shop --dry-run\n",
        "\n",
        "A delete that would leave another resource broken (a route to a deleted\n",
        "Service) is refused, naming it.\n",
        "\n",
        "Exit codes: 0 ok; 1 not found or refused; 2 usage; 3 the control plane cannot be reached."
    )
)]
pub struct DeleteArgs {
    /// The kind (service, httproute, meshtls, authorizationpolicy,
    /// trafficpolicy, or a short name: svc, route, authz, tp), or KIND/NAME.
    #[arg(value_name = "KIND", conflicts_with = "files")]
    pub kind: Option<String>,
    /// The resource's name.
    #[arg(value_name = "NAME")]
    pub name: Option<String>,
    /// The resources defined in a YAML file, a directory of them, or - (stdin).
    #[arg(
        short = 'f',
        long = "filename",
        visible_alias = "file",
        value_name = "FILE|DIR|-"
    )]
    pub files: Vec<PathBuf>,
    /// The namespace (default: `default`, or each document's own).
    #[arg(short, long)]
    pub namespace: Option<String>,
    /// Check what would be deleted; change nothing.
    #[arg(long)]
    pub dry_run: bool,
    #[arg(short, long, value_enum, default_value_t = Output::Table)]
    pub output: Output,
    #[command(flatten)]
    pub api: ApiArgs,
}

impl DeleteArgs {
    /// What to delete: the files, or the one resource named.
    pub fn what(&self) -> Result<crate::client::apply::What, String> {
        use crate::client::apply::What;
        if !self.files.is_empty() {
            return Ok(What::Files(self.files.clone()));
        }
        let kind = self.kind.as_deref().unwrap_or_default();
        let (kind, name) = match (kind.split_once('/'), &self.name) {
            (None, Some(name)) => (kind, name.as_str()),
            (Some((kind, name)), None) => (kind, name),
            _ => {
                return Err(
                    "give KIND NAME (or KIND/NAME), e.g. `remora delete service orders`".to_owned(),
                )
            }
        };
        let kind = crate::api::kinds::parse(kind)
            .ok_or_else(|| format!("unknown kind `{kind}`: give {}", crate::api::kinds::KNOWN))?;
        Ok(What::Named {
            kind,
            name: name.to_owned(),
        })
    }
}

#[derive(Debug, Args)]
#[command(after_help = concat!(
    "Examples:\n",
    "  remora get services\n",
    "  remora get httproute orders-split -o yaml > split.yaml\n",
    "  remora get proxies -n shop\n",
    "  remora get endpoints orders        # EJECTED: which proxies' outlier detection ejected it\n",
    "\n",
    "Exit codes: 0 ok; 1 NAME not found; 2 usage; 3 the control plane cannot be reached."
))]
pub struct GetArgs {
    /// What to list: services (svc), httproutes (route), meshtls,
    /// authorizationpolicies (authz), trafficpolicies (tp), proxies, endpoints.
    #[arg(value_name = "KIND", value_parser = Target::parse)]
    pub kind: Target,
    /// Only the one of this name (endpoints: of this Service; proxies: this
    /// node id or Service).
    pub name: Option<String>,
    /// Only this namespace (default: all).
    #[arg(short, long)]
    pub namespace: Option<String>,
    /// `table` for people; `json` or `yaml` (the documents as written, which
    /// `remora apply -f` takes back) for scripts.
    #[arg(short, long, value_enum, default_value_t = Output::Table)]
    pub output: Output,
    #[command(flatten)]
    pub api: ApiArgs,
}

#[derive(Debug, Args)]
#[command(after_help = concat!(
    "Examples:\n",
    "  remora status\n",
    "  remora status -o json | jq '.proxies[] | select(.current | not)'\n",
    "  remora apply -f config/ --wait && remora status && ./deploy-next.sh\n",
    "\n",
    "A proxy is current when it has ACKed the last version sent of every type and\n",
    "that version was computed from the latest config.\n",
    "\n",
    "Exit codes: 0 every proxy current, no NACK, no warning; 1 otherwise; 2 usage;\n",
    "3 the control plane cannot be reached."
))]
pub struct StatusArgs {
    /// Only this namespace's proxies.
    #[arg(short, long)]
    pub namespace: Option<String>,
    #[arg(short, long, value_enum, default_value_t = Output::Table)]
    pub output: Output,
    #[command(flatten)]
    pub api: ApiArgs,
}

#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Mint a token granting one identity; prints it (only its hash is stored).
    Create(TokenCreateArgs),
}

#[derive(Debug, Args)]
pub struct DataArgs {
    /// Where the CA and the token hashes live (default $REMORA_DATA_DIR or ~/.remora).
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// The SPIFFE trust domain.
    #[arg(long, default_value = crate::control::DEFAULT_TRUST_DOMAIN)]
    pub trust_domain: String,
}

#[derive(Debug, Args)]
#[command(
    after_help = "Examples:\n  remora token create --namespace default --service-account orders > orders.token\n  remora token create --admin --ttl 7d > admin.token   # for the HTTP API (--token-file)"
)]
pub struct TokenCreateArgs {
    #[command(flatten)]
    pub data: DataArgs,
    /// The workload's namespace (with --service-account).
    #[arg(long, required_unless_present = "admin", conflicts_with = "admin")]
    pub namespace: Option<String>,
    /// The workload's service account: the token grants
    /// spiffe://<trust-domain>/ns/<namespace>/sa/<service-account>.
    #[arg(long, required_unless_present = "admin", conflicts_with = "admin")]
    pub service_account: Option<String>,
    /// An admin token instead: it reads the control plane's HTTP API (needed
    /// when the API listens on anything but loopback) and grants no identity.
    #[arg(long)]
    pub admin: bool,
    /// How long the token is valid: e.g. 90s, 30m, 24h, 7d.
    #[arg(long, default_value = "24h", value_parser = parse_duration)]
    pub ttl: std::time::Duration,
}

#[derive(Debug, Subcommand)]
pub enum CertificateCommand {
    /// Sign a certificate for one identity with the CA in the data directory,
    /// and write cert.pem, key.pem (a key made here, mode 0600) and ca.pem.
    Create(CertificateCreateArgs),
}

#[derive(Debug, Args)]
#[command(after_help = concat!(
    "Examples:\n",
    "  remora certificate create --namespace default --service-account orders-client --out-dir certs/\n",
    "  remora certificate create --namespace shop --service-account web --out-dir /etc/grpc-xds --ttl 7d\n",
    "\n",
    "cert.pem holds the certificate and its chain, ca.pem the trust bundle (the\n",
    "control plane's certificate chains to it). A gRPC xDS bootstrap names them in\n",
    "its `tls` channel credentials; gRPC reads them again every refresh_interval\n",
    "(10m by default), so renewing is running this again before the certificate\n",
    "expires: the files are replaced whole.\n",
    "\n",
    "Exit codes: 0 written; 1 no CA in the data directory, an invalid identity, or\n",
    "a file that cannot be written; 2 usage."
))]
pub struct CertificateCreateArgs {
    #[command(flatten)]
    pub data: DataArgs,
    /// The workload's namespace.
    #[arg(long)]
    pub namespace: String,
    /// The workload's service account: the certificate proves
    /// spiffe://<trust-domain>/ns/<namespace>/sa/<service-account>.
    #[arg(long)]
    pub service_account: String,
    /// Where to write cert.pem, key.pem and ca.pem (made if missing; files
    /// already there are replaced).
    #[arg(long, value_name = "DIR")]
    pub out_dir: PathBuf,
    /// How long the certificate is valid: e.g. 1h, 24h, 7d (1m to 365d).
    #[arg(long, default_value = "24h", value_parser = parse_certificate_ttl)]
    pub ttl: std::time::Duration,
    /// Sign with an operator's CA (as `remora control --ca-cert`) instead of
    /// the one in the data directory. Needs --ca-key.
    #[arg(long, value_name = "FILE", requires = "ca_key")]
    pub ca_cert: Option<PathBuf>,
    /// The private key (PEM) of --ca-cert.
    #[arg(long, value_name = "FILE", requires = "ca_cert")]
    pub ca_key: Option<PathBuf>,
    /// The root(s) to write as ca.pem when --ca-cert is an intermediate.
    #[arg(long, value_name = "FILE", requires = "ca_cert")]
    pub ca_bundle: Option<PathBuf>,
}

impl CertificateCreateArgs {
    /// The operator's CA files, when given.
    pub fn ca_files(&self) -> Option<crate::ca::CaFiles> {
        match (&self.ca_cert, &self.ca_key) {
            (Some(cert), Some(key)) => Some(crate::ca::CaFiles {
                cert: cert.clone(),
                key: key.clone(),
                bundle: self.ca_bundle.clone(),
            }),
            _ => None,
        }
    }
}

pub use crate::duration::parse_duration;

/// A workload certificate's lifetime: short-lived is the point, but a gRPC
/// client's certificate is renewed by hand or by a cron job, so up to a year.
pub fn parse_certificate_ttl(s: &str) -> Result<std::time::Duration, String> {
    const MIN: std::time::Duration = std::time::Duration::from_secs(60);
    const MAX: std::time::Duration = std::time::Duration::from_secs(365 * 86_400);
    let ttl = parse_duration(s)?;
    if !(MIN..=MAX).contains(&ttl) {
        return Err(format!("`{s}`: a certificate lives from 1m to 365d"));
    }
    Ok(ttl)
}

/// `--xds-server-name`: a DNS name or an IP address.
pub fn parse_host_name(s: &str) -> Result<crate::ca::HostName, String> {
    s.trim()
        .parse()
        .map_err(|e: crate::ca::InvalidHostName| e.to_string())
}

#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Keep the mesh (and its traffic) running after the last step, until Ctrl-C.
    #[arg(long)]
    pub forever: bool,
    /// The share of traffic for orders-v2 at each step, in percent.
    #[arg(long, value_delimiter = ',', default_value = "0,25,50,75,100",
          value_parser = clap::value_parser!(u32).range(0..=100))]
    pub steps: Vec<u32>,
    /// Seconds of traffic at each step, once the proxies have applied the split.
    #[arg(long, default_value_t = 2.0)]
    pub step_seconds: f64,
    /// Requests per second.
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub rate: u32,
    /// Where the `remora` and `remora-proxy` binaries are (default: next to this one).
    #[arg(long, value_name = "DIR")]
    pub bin_dir: Option<PathBuf>,
}

impl From<DemoArgs> for crate::demo::DemoOptions {
    fn from(a: DemoArgs) -> Self {
        crate::demo::DemoOptions {
            steps: a.steps,
            step_duration: std::time::Duration::from_secs_f64(a.step_seconds.clamp(0.1, 3600.0)),
            rate: a.rate,
            forever: a.forever,
            bin_dir: a.bin_dir,
        }
    }
}

#[derive(Debug, Args)]
pub struct ControlArgs {
    /// Directory of Service / HTTPRoute YAML files (watched for changes).
    #[arg(
        long,
        value_name = "DIR",
        env = "REMORA_CONFIG_DIR",
        required_unless_present = "kubernetes",
        conflicts_with = "kubernetes"
    )]
    pub config_dir: Option<PathBuf>,
    /// Read Services, HTTPRoutes and Remora's policies from a Kubernetes
    /// cluster (in-cluster config, else the kubeconfig) instead of a directory;
    /// problems are written back as the objects' status.
    #[arg(long)]
    pub kubernetes: bool,
    /// The kubeconfig to reach the cluster with (default: in-cluster config,
    /// else ~/.kube/config).
    #[arg(long, value_name = "FILE", env = "KUBECONFIG")]
    pub kubeconfig: Option<PathBuf>,
    /// The kubeconfig context (default: its current context).
    #[arg(long, value_name = "NAME", requires = "kubernetes")]
    pub context: Option<String>,
    /// The control plane's own namespace in the cluster.
    #[arg(long, value_name = "NS", env = "POD_NAMESPACE",
          default_value = crate::kubernetes::DEFAULT_NAMESPACE)]
    pub namespace: String,
    /// Listen address for xDS (gRPC ADS).
    #[arg(long, value_name = "ADDR", default_value_t = DEFAULT_XDS_ADDR, env = "REMORA_XDS_ADDR")]
    pub xds_addr: SocketAddr,
    /// Listen address for the HTTP API.
    #[arg(long, value_name = "ADDR", default_value_t = DEFAULT_API_ADDR, env = "REMORA_API_ADDR")]
    pub api_addr: SocketAddr,
    /// Once listening, write the bound addresses here as JSON ({"xds": ..., "api": ...}).
    #[arg(long, value_name = "FILE")]
    pub addresses_file: Option<PathBuf>,
    /// Seconds after start during which reconnecting proxies keep the endpoints
    /// they have, while the other proxies re-register (0 turns it off).
    #[arg(long, value_name = "SECONDS", default_value_t = crate::xds::DEFAULT_RECONNECT_GRACE.as_secs(),
          value_parser = clap::value_parser!(u64).range(0..=3600))]
    pub reconnect_grace: u64,
    #[command(flatten)]
    pub data: DataArgs,
    /// An operator's CA certificate (PEM) to sign with, instead of the CA the
    /// control plane makes in its data directory. Needs --ca-key.
    #[arg(long, value_name = "FILE", requires = "ca_key")]
    pub ca_cert: Option<PathBuf>,
    /// The private key (PEM) of --ca-cert.
    #[arg(long, value_name = "FILE", requires = "ca_cert")]
    pub ca_key: Option<PathBuf>,
    /// The root(s) proxies should trust when --ca-cert is an intermediate.
    #[arg(long, value_name = "FILE", requires = "ca_cert")]
    pub ca_bundle: Option<PathBuf>,
    /// Lifetime of workload certificates: e.g. 24h, 20s.
    #[arg(long, default_value = "24h", value_parser = parse_duration)]
    pub cert_ttl: std::time::Duration,
    /// Also serve proxies WITHOUT a client certificate (xDS and telemetry). For
    /// local experiments only: anyone who reaches the xDS port can then read the
    /// config of the namespace it names. Such proxies may serve only Services
    /// annotated remora.io/allow-unauthenticated-endpoints: "true".
    #[arg(long)]
    pub allow_plaintext_proxies: bool,
    /// Require an admin token (remora token create --admin) on the HTTP API
    /// even when it listens on loopback; elsewhere it is always required.
    #[arg(long)]
    pub api_token_required: bool,
    /// Open xDS connections at most; more are closed at once.
    #[arg(long, default_value_t = crate::control::DEFAULT_MAX_XDS_CONNECTIONS,
          value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..=1_000_000))]
    pub max_xds_connections: usize,
    /// A DNS name or IP address clients dial the xDS port by, added to the
    /// control plane's certificate (which always names localhost and the
    /// address it is bound to, or 127.0.0.1 and ::1 when that is 0.0.0.0).
    /// gRPC's xDS client checks the host of its bootstrap's `server_uri`
    /// against these. Repeat it, or separate names with commas.
    #[arg(long = "xds-server-name", value_name = "NAME", env = "REMORA_XDS_SERVER_NAMES",
          value_delimiter = ',', value_parser = parse_host_name)]
    pub xds_server_names: Vec<crate::ca::HostName>,
    /// Serve the mutating admission webhook (HTTPS, POST /inject) on this
    /// address, e.g. 0.0.0.0:8443 (remora install's). Off unless given.
    #[arg(long, value_name = "ADDR", env = "REMORA_WEBHOOK_ADDR")]
    pub webhook_addr: Option<SocketAddr>,
    /// A DNS name or IP the API server dials the webhook by, for its
    /// certificate (default: remora-webhook.<namespace>.svc). Repeat it, or
    /// separate names with commas.
    #[arg(long = "webhook-server-name", value_name = "NAME", value_delimiter = ',',
          value_parser = parse_host_name, requires = "webhook_addr")]
    pub webhook_server_names: Vec<crate::ca::HostName>,
    /// The proxy image the webhook injects (default: remora-proxy:VERSION,
    /// as remora inject).
    #[arg(long, value_name = "IMAGE", env = "REMORA_PROXY_IMAGE")]
    pub proxy_image: Option<String>,
}

/// What both `remora inject` and the webhook inject: this build's defaults,
/// with the operator's image if given, so the two make the same pod.
pub fn inject_settings(proxy_image: Option<String>) -> crate::inject::InjectSettings {
    let mut settings = crate::inject::InjectSettings::new(env!("CARGO_PKG_VERSION"));
    if let Some(image) = proxy_image {
        settings.image = image;
    }
    settings
}

impl From<ControlArgs> for ControlOptions {
    fn from(a: ControlArgs) -> Self {
        // Injected proxies reach the control plane by its Service in its own
        // namespace (deploy/: Service `remora`, xDS port 7700).
        let mut settings = inject_settings(a.proxy_image);
        settings.control_plane = format!("remora.{}.svc:7700", a.namespace);
        settings.control_plane_namespace = a.namespace.clone();
        ControlOptions {
            config_dir: a.config_dir.unwrap_or_default(),
            kubernetes: a.kubernetes.then(|| crate::kubernetes::KubernetesOptions {
                kubeconfig: a.kubeconfig,
                context: a.context,
                namespace: a.namespace.clone(),
            }),
            xds_addr: a.xds_addr,
            api_addr: a.api_addr,
            addresses_file: a.addresses_file,
            reconnect_grace: std::time::Duration::from_secs(a.reconnect_grace),
            data_dir: a
                .data
                .data_dir
                .unwrap_or_else(crate::control::default_data_dir),
            trust_domain: a.data.trust_domain,
            ca_files: match (a.ca_cert, a.ca_key) {
                (Some(cert), Some(key)) => Some(crate::ca::CaFiles {
                    cert,
                    key,
                    bundle: a.ca_bundle,
                }),
                _ => None,
            },
            leaf_ttl: a.cert_ttl,
            allow_plaintext_proxies: a.allow_plaintext_proxies,
            api_token_required: a.api_token_required,
            max_xds_connections: a.max_xds_connections,
            xds_server_names: a.xds_server_names,
            webhook: a.webhook_addr.map(|addr| crate::webhook::WebhookOptions {
                addr,
                server_names: a.webhook_server_names,
                namespace: a.namespace,
                settings,
            }),
        }
    }
}

#[derive(Debug, Args)]
#[command(after_help = concat!(
    "Examples:\n",
    "  kubectl -n remora-system exec deploy/remora -- \\\n",
    "      remora trust-bundle --data-dir /var/lib/remora > bundle.pem\n",
    "  remora inject --trust-bundle bundle.pem -f deployment.yaml | kubectl apply -f -\n",
    "  kubectl get deploy -n shop -o yaml | remora inject --trust-bundle bundle.pem -f - \\\n",
    "      | kubectl apply -f -\n",
    "  remora inject --uninject -f injected.yaml\n",
    "\n",
    "Pods, Deployments, StatefulSets, DaemonSets, ReplicaSets, Jobs, CronJobs and Lists\n",
    "are rewritten; other kinds pass through. Pod template annotations: remora.io/inject:\n",
    "disabled, remora.io/sidecar-mode: classic, remora.io/skip-inbound-ports,\n",
    "remora.io/skip-outbound-ports, remora.io/skip-outbound-cidrs, remora.io/opaque-ports,\n",
    "remora.io/proxy-{cpu,memory}-{request,limit}, remora.io/service (the Service the\n",
    "proxy serves; else the label app.kubernetes.io/name, else app, else the workload's name).\n",
    "\n",
    "Exit codes: 0 ok; 1 a document could not be rewritten (nothing is printed); 2 usage."
))]
pub struct InjectArgs {
    /// A YAML file of one or more documents, or - for standard input.
    #[arg(
        short = 'f',
        long = "filename",
        visible_alias = "file",
        value_name = "FILE|-"
    )]
    pub file: PathBuf,
    /// Take the sidecar out instead.
    #[arg(long)]
    pub uninject: bool,
    /// The proxy's image (default: remora-proxy:VERSION).
    #[arg(long, value_name = "IMAGE")]
    pub proxy_image: Option<String>,
    /// The mesh's trust bundle (PEM), given to every proxy so its first
    /// certificate request, which carries the pod's token, goes over TLS to a
    /// control plane it verified: the proxy refuses to start without it.
    /// Print it with `remora trust-bundle --data-dir DIR` where the control
    /// plane runs (in a cluster: `kubectl -n remora-system exec deploy/remora
    /// -- remora trust-bundle --data-dir /var/lib/remora > bundle.pem`).
    /// Required unless --uninject.
    #[arg(long, value_name = "FILE", required_unless_present = "uninject")]
    pub trust_bundle: Option<PathBuf>,
    /// Where the proxies reach the control plane (host:port).
    #[arg(long, value_name = "HOST:PORT", default_value = crate::inject::DEFAULT_CONTROL_PLANE)]
    pub control_plane: String,
    /// The control plane's namespace (remora install --namespace): proxies
    /// verify the control plane's certificate by its identity there.
    #[arg(long, value_name = "NAMESPACE", default_value = crate::ca::CONTROL_PLANE_NAMESPACE)]
    pub control_plane_namespace: String,
}

#[derive(Debug, Args)]
#[command(after_help = concat!(
    "Examples:\n",
    "  remora check -f config/\n",
    "  remora check --kubernetes\n",
    "  remora check --kubernetes --context prod --namespace remora-system\n",
    "\n",
    "--kubernetes prints one line per item (OK, WARN or FAIL with the reason): Remora's\n",
    "CRDs and HTTPRoute's, the control plane's Deployment, Services and endpoints, the\n",
    "injector's webhook, and every pod that should have a proxy and does not.\n",
    "\n",
    "Exit codes: 0 ok (warnings allowed); 1 a problem; 2 usage; 3 (--kubernetes) the API\n",
    "server cannot be reached."
))]
pub struct CheckArgs {
    /// A YAML file, or a directory of them.
    #[arg(
        short = 'f',
        long = "file",
        value_name = "FILE_OR_DIR",
        required_unless_present = "kubernetes",
        conflicts_with = "kubernetes"
    )]
    pub path: Option<PathBuf>,
    /// Check an installation in a cluster instead (in-cluster config or a
    /// kubeconfig, as kubectl finds it).
    #[arg(long)]
    pub kubernetes: bool,
    /// With --kubernetes: the kubeconfig (default $KUBECONFIG or ~/.kube/config).
    #[arg(
        long,
        value_name = "FILE",
        requires = "kubernetes",
        conflicts_with = "path"
    )]
    pub kubeconfig: Option<PathBuf>,
    /// With --kubernetes: the kubeconfig context (default its current one).
    #[arg(
        long,
        value_name = "NAME",
        requires = "kubernetes",
        conflicts_with = "path"
    )]
    pub context: Option<String>,
    /// With --kubernetes: the control plane's namespace.
    #[arg(short, long, default_value = crate::kubernetes::DEFAULT_NAMESPACE)]
    pub namespace: String,
}

#[derive(Debug, Args)]
#[command(after_help = concat!(
    "Examples:\n",
    "  remora install | kubectl apply -f -\n",
    "  remora install --namespace mesh --image registry.example.com/remora:0.1.0 > remora.yaml\n",
    "\n",
    "Prints the CRDs, the control plane's namespace, ServiceAccount, RBAC, Deployment and\n",
    "Services, and the injector's MutatingWebhookConfiguration. The Gateway API's CRDs\n",
    "(HTTPRoute) are not included: install them from the Gateway API's release.\n",
    "\n",
    "Exit codes: 0 printed; 1 an invalid namespace or image; 2 usage."
))]
pub struct InstallArgs {
    /// The control plane's namespace (never injected).
    #[arg(short, long, default_value = crate::kubernetes::DEFAULT_NAMESPACE)]
    pub namespace: String,
    /// The control plane's image (default: remora:VERSION).
    #[arg(long, value_name = "IMAGE")]
    pub image: Option<String>,
    /// The image the injector gives pods (default: remora-proxy:VERSION).
    #[arg(long, value_name = "IMAGE")]
    pub proxy_image: Option<String>,
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    #[test]
    fn the_command_line_is_well_formed() {
        Cli::command().debug_assert();
    }

    #[test]
    fn every_api_command_takes_the_url_the_demo_prints() {
        for args in [
            &["remora", "stat", "--api", "http://127.0.0.1:7780"][..],
            &["remora", "status", "--api", "http://127.0.0.1:7780/"],
            &["remora", "get", "svc", "--api", "127.0.0.1:7780"],
            &[
                "remora",
                "apply",
                "-f",
                "a.yaml",
                "--api",
                "http://127.0.0.1:7780",
            ],
            &[
                "remora",
                "delete",
                "svc",
                "orders",
                "--api",
                "http://127.0.0.1:7780",
            ],
        ] {
            Cli::try_parse_from(args).unwrap_or_else(|e| panic!("{args:?}: {e}"));
        }
        assert!(Cli::try_parse_from(["remora", "status", "--api", "https://x:1"]).is_err());
    }

    #[test]
    fn apply_takes_files_wait_and_a_timeout() {
        let cli = Cli::try_parse_from([
            "remora",
            "apply",
            "-f",
            "a.yaml",
            "-f",
            "dir",
            "--wait",
            "--timeout",
            "30s",
            "-n",
            "shop",
        ])
        .unwrap();
        let Command::Apply(args) = cli.command else {
            panic!("not apply");
        };
        assert_eq!(args.files.len(), 2);
        assert!(args.wait && !args.dry_run);
        assert_eq!(args.timeout, std::time::Duration::from_secs(30));
        assert_eq!(args.namespace.as_deref(), Some("shop"));
        assert!(
            Cli::try_parse_from(["remora", "apply"]).is_err(),
            "-f is required"
        );
    }

    #[test]
    fn delete_takes_kind_and_name_or_files() {
        let what = |args: &[&str]| {
            let cli = Cli::try_parse_from(args).unwrap();
            let Command::Delete(d) = cli.command else {
                panic!("not delete");
            };
            d.what()
        };
        use crate::client::apply::What;
        assert!(matches!(
            what(&["remora", "delete", "svc", "orders"]),
            Ok(What::Named { .. })
        ));
        assert!(matches!(
            what(&["remora", "delete", "service/orders"]),
            Ok(What::Named { .. })
        ));
        assert!(matches!(
            what(&["remora", "delete", "-f", "a.yaml"]),
            Ok(What::Files(_))
        ));
        assert!(what(&["remora", "delete", "svc"]).is_err());
        assert!(what(&["remora", "delete", "pods", "x"]).is_err());
        assert!(Cli::try_parse_from(["remora", "delete"]).is_err());
    }

    #[test]
    fn help_says_the_exit_codes_and_gives_examples() {
        let mut cli = Cli::command();
        for verb in ["apply", "delete", "get", "status", "stat"] {
            let sub = cli.find_subcommand_mut(verb).unwrap();
            let help = sub.render_long_help().to_string();
            assert!(help.contains("Examples:"), "{verb}: {help}");
            assert!(help.contains("Exit codes"), "{verb}: {help}");
        }
    }

    #[test]
    fn xds_server_names_repeat_or_take_commas_and_are_checked() {
        let parse = |extra: &[&str]| {
            let mut args = vec!["remora", "control", "--config-dir", "cfg"];
            args.extend_from_slice(extra);
            Cli::try_parse_from(args).map(|cli| match cli.command {
                Command::Control(a) => ControlOptions::from(a).xds_server_names,
                _ => panic!("not control"),
            })
        };
        let names = parse(&[
            "--xds-server-name",
            "xds.example.com,10.0.0.7",
            "--xds-server-name",
            "::1",
        ])
        .unwrap();
        let expected: Vec<crate::ca::HostName> = ["xds.example.com", "10.0.0.7", "::1"]
            .iter()
            .map(|n| n.parse().unwrap())
            .collect();
        assert_eq!(names, expected);
        let err = parse(&["--xds-server-name", "*.example.com"])
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("*.example.com") && err.contains("wildcards"),
            "{err}"
        );
    }

    #[test]
    fn certificate_create_needs_an_identity_and_a_directory() {
        let cli = Cli::try_parse_from([
            "remora",
            "certificate",
            "create",
            "--namespace",
            "default",
            "--service-account",
            "orders-client",
            "--out-dir",
            "certs",
        ])
        .unwrap();
        let Command::Certificate(CertificateCommand::Create(args)) = cli.command else {
            panic!("not certificate create");
        };
        assert_eq!(args.ttl, std::time::Duration::from_secs(24 * 3600));
        assert_eq!(args.ca_files(), None);
        for ttl in ["0s", "30s", "366d", "99999999999999d"] {
            assert!(parse_certificate_ttl(ttl).is_err(), "{ttl}");
        }
        assert!(parse_certificate_ttl("7d").is_ok());
        assert!(
            Cli::try_parse_from(["remora", "cert", "create", "--namespace", "default"]).is_err()
        );
    }

    #[test]
    fn control_defaults_to_loopback_ports() {
        let cli = Cli::try_parse_from(["remora", "control", "--config-dir", "cfg"]).unwrap();
        let Command::Control(args) = cli.command else {
            panic!("not control");
        };
        let options = ControlOptions::from(args);
        assert_eq!(options, ControlOptions::new("cfg"));
    }

    #[test]
    fn control_reads_a_directory_or_a_cluster_never_both() {
        let parse = |args: &[&str]| {
            let mut all = vec!["remora", "control"];
            all.extend_from_slice(args);
            Cli::try_parse_from(all).map(|cli| match cli.command {
                Command::Control(a) => ControlOptions::from(a),
                _ => panic!("not control"),
            })
        };
        let options = parse(&[
            "--kubernetes",
            "--kubeconfig",
            "kc.yaml",
            "--context",
            "test",
            "--namespace",
            "mesh",
        ])
        .unwrap();
        assert_eq!(
            options.kubernetes,
            Some(crate::kubernetes::KubernetesOptions {
                kubeconfig: Some("kc.yaml".into()),
                context: Some("test".into()),
                namespace: "mesh".into(),
            })
        );
        assert!(parse(&["--kubernetes", "--config-dir", "cfg"]).is_err());
        assert_eq!(parse(&["--config-dir", "cfg"]).unwrap().kubernetes, None);
    }

    #[test]
    fn check_takes_a_file_or_kubernetes_and_install_its_flags() {
        let check = |args: &[&str]| {
            let mut all = vec!["remora", "check"];
            all.extend_from_slice(args);
            Cli::try_parse_from(all).map(|cli| match cli.command {
                Command::Check(a) => a,
                _ => panic!("not check"),
            })
        };
        assert_eq!(
            check(&["-f", "cfg"]).unwrap().path,
            Some(PathBuf::from("cfg"))
        );
        let k = check(&["--kubernetes", "--context", "prod"]).unwrap();
        assert!(k.kubernetes && k.path.is_none());
        assert_eq!(k.namespace, crate::kubernetes::DEFAULT_NAMESPACE);
        assert!(check(&[]).is_err(), "a file or --kubernetes");
        assert!(check(&["-f", "cfg", "--kubernetes"]).is_err());
        assert!(check(&["-f", "cfg", "--context", "prod"]).is_err());

        let cli = Cli::try_parse_from(["remora", "install", "-n", "mesh", "--image", "r/remora:1"])
            .unwrap();
        let Command::Install(args) = cli.command else {
            panic!("not install");
        };
        assert_eq!(args.namespace, "mesh");
        assert_eq!(args.image.as_deref(), Some("r/remora:1"));
        assert_eq!(args.proxy_image, None);
    }
}
