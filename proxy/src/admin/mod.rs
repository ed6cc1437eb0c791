//! The admin listener: liveness, readiness and a dump of the active config.
//!
//! - `metrics`: `/metrics` in Prometheus text.
//! - `app_health`: `/app-health/...`, the app's own kubelet probes, run by
//!   the proxy.
//! - `grpc_health`: the gRPC health check a `grpc` probe makes of the app.
//! - `exposure`: what callers off loopback may ask, and how many
//!   connections each may hold.

mod app_health;
mod exposure;
mod grpc_health;
mod metrics;

pub use exposure::{AdminConnections, MAX_CONNECTIONS_PER_REMOTE_IP, REMOTE_HEADER_READ_TIMEOUT};

use std::sync::Arc;

use arc_swap::ArcSwap;
use bytes::Bytes;
use http::{header, HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::{Either, Full};
use hyper::body::Incoming;
use serde_json::json;

use crate::bootstrap::probes::APP_HEALTH_PREFIX;
use crate::bootstrap::{AppProbe, AppProbes};
use crate::http::{InboundStats, ResponseBody};
use crate::identity::CertStore;
use crate::snapshot::{RouteAction, Snapshot, Target};
use crate::upstream::Transport;
use crate::xds::XdsStatus;

pub struct Admin {
    pub node_id: String,
    pub snapshot: Arc<ArcSwap<Snapshot>>,
    pub status: Arc<XdsStatus>,
    /// The workload certificate, when this proxy has an identity.
    pub certificate: Option<CertStore>,
    pub inbound: Arc<InboundStats>,
    pub metrics: Arc<crate::telemetry::Metrics>,
    /// Protocol detection outcomes by port.
    pub detect: Arc<crate::detect::DetectStats>,
    /// Notified by `POST /shutdown`.
    pub shutdown: Arc<tokio::sync::Notify>,
    /// Where the drain stands: `/ready` answers 503 from the leave on.
    pub drain: Arc<crate::drain::Drain>,
    pub log_filter: Option<LogFilter>,
    /// Bootstrap `state_dir`: whether the config in force came from it.
    pub state: Option<Arc<crate::state::ConfigState>>,
    /// The app's kubelet probes, by their `/app-health/...` path.
    pub app_probes: AppProbes,
}

/// Sets the log filter (`level,target=level`, as `RUST_LOG`); the error says why
/// a filter is not valid.
pub type LogFilter = Arc<dyn Fn(&str) -> Result<(), String> + Send + Sync>;

/// Whether the caller is on this machine (see [`exposure`]): decided by the
/// connection's peer address, never by a header, so it holds when the admin
/// listens on the pod's IP for the kubelet's probes.
fn is_local(req: &Request<Incoming>) -> bool {
    exposure::is_local_peer(req.extensions().get::<crate::http::Remote>().map(|r| r.0))
}

/// What a request gets: an answer now, or the app's probe run first.
/// (Boxed: a response is several times a probe's size.)
enum Answer {
    Now(Box<Response<ResponseBody>>),
    Probe(AppProbe),
}

impl Admin {
    fn route(&self, req: &Request<Incoming>) -> Answer {
        let path = req.uri().path();
        if !is_local(req) && !exposure::allowed_remotely(req.method(), path) {
            return Answer::Now(Box::new(text(
                StatusCode::FORBIDDEN,
                "from outside the pod only GET /ready, /live, /metrics and /app-health/... \
                 answer; ask from inside it (kubectl exec, or kubectl port-forward)\n",
            )));
        }
        if path.starts_with(APP_HEALTH_PREFIX) {
            return match (req.method(), self.app_probes.get(path)) {
                (&Method::GET, Some(probe)) => Answer::Probe(probe.clone()),
                _ => Answer::Now(Box::new(text(
                    StatusCode::NOT_FOUND,
                    "no app probe here (injection lists them in REMORA_APP_PROBES)\n",
                ))),
            };
        }
        Answer::Now(Box::new(self.answer(req)))
    }

    fn answer(&self, req: &Request<Incoming>) -> Response<ResponseBody> {
        match (req.method(), req.uri().path()) {
            (&Method::GET, "/") => text(StatusCode::OK, index(&self.node_id)),
            (&Method::GET, "/live") => text(StatusCode::OK, "live\n"),
            (&Method::GET, "/ready") => {
                let certified = self.certificate.as_ref().is_none_or(|c| c.load().is_some());
                if self.drain.is_draining() {
                    // Kubernetes and load balancers stop sending here too.
                    text(StatusCode::SERVICE_UNAVAILABLE, "draining\n")
                } else if !certified {
                    text(
                        StatusCode::SERVICE_UNAVAILABLE,
                        "waiting for a certificate\n",
                    )
                } else if self.snapshot.load().is_ready() {
                    match self.status.service_warning() {
                        // Ready (the app's outbound calls work), but say why no
                        // traffic comes in.
                        Some(warning) => text(
                            StatusCode::OK,
                            format!("{}warning: {warning}\n", self.ready_text()),
                        ),
                        None => text(StatusCode::OK, self.ready_text()),
                    }
                } else if let Some(error) = self.status.last_error() {
                    // Say why: a refused proxy otherwise looks like a slow one.
                    text(
                        StatusCode::SERVICE_UNAVAILABLE,
                        format!("waiting for configuration: {error}\n"),
                    )
                } else {
                    text(
                        StatusCode::SERVICE_UNAVAILABLE,
                        "waiting for configuration\n",
                    )
                }
            }
            (&Method::GET, "/config_dump") => {
                // Pretty: it is read by people with curl more than by scripts.
                let body = pretty(&self.config_dump());
                let mut r = text(StatusCode::OK, "");
                *r.body_mut() = Either::Right(Full::new(Bytes::from(body)));
                r.headers_mut().insert(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("application/json"),
                );
                r
            }
            (&Method::POST, "/shutdown") | (&Method::POST, "/logging") if !is_local(req) => {
                text(StatusCode::FORBIDDEN, "only from localhost\n")
            }
            (&Method::POST, "/shutdown") => {
                tracing::info!("shutdown asked on the admin port");
                self.shutdown.notify_one();
                text(
                    StatusCode::OK,
                    "shutting down: leaving the mesh, draining, then exiting\n",
                )
            }
            (&Method::POST, "/logging") => {
                let level = req
                    .uri()
                    .query()
                    .and_then(|q| q.split('&').find_map(|p| p.strip_prefix("level=")))
                    .unwrap_or_default();
                match (&self.log_filter, level) {
                    (_, "") => text(
                        StatusCode::BAD_REQUEST,
                        "give ?level=<filter>, e.g. ?level=debug\n",
                    ),
                    (None, _) => text(
                        StatusCode::NOT_IMPLEMENTED,
                        "the log filter cannot be changed\n",
                    ),
                    (Some(set), level) => match set(level) {
                        Ok(()) => {
                            tracing::info!(filter = level, "log filter changed on the admin port");
                            text(StatusCode::OK, "log filter changed\n")
                        }
                        Err(e) => {
                            let mut r = text(StatusCode::BAD_REQUEST, "");
                            *r.body_mut() = Either::Right(Full::new(Bytes::from(format!("{e}\n"))));
                            r
                        }
                    },
                }
            }
            (&Method::GET, "/metrics") => {
                let snapshot = self.snapshot.load();
                let body = metrics::render(&metrics::Sources {
                    metrics: &self.metrics,
                    snapshot: &snapshot,
                    inbound: &self.inbound,
                    xds: &self.status,
                    certificate: self.certificate.as_ref(),
                    detect: &self.detect,
                });
                let mut r = text(StatusCode::OK, "");
                *r.body_mut() = Either::Right(Full::new(Bytes::from(body)));
                r.headers_mut().insert(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
                );
                r
            }
            _ => text(StatusCode::NOT_FOUND, "not found\n"),
        }
    }

    /// Ready, and whether the config is the control plane's or was restored
    /// from the state dir (then still serving while the control plane is away).
    fn ready_text(&self) -> &'static str {
        let from_state =
            self.state.as_ref().and_then(|s| s.source()) == Some(crate::state::Source::StateDir);
        match (from_state, self.status.view().connected) {
            (false, _) => "ready\n",
            (true, false) => "ready (config from state dir, not connected to the control plane)\n",
            (true, true) => "ready (config from state dir, waiting for the control plane)\n",
        }
    }

    /// Where the config in force came from: the state dir until the control
    /// plane's first response is accepted, then the control plane; `None`
    /// before any config.
    fn config_source(&self) -> Option<crate::state::Source> {
        match self.state.as_ref().and_then(|s| s.source()) {
            Some(source) => Some(source),
            None => {
                let answered = self.status.view().types.values().any(|t| t.updates > 0);
                answered.then_some(crate::state::Source::ControlPlane)
            }
        }
    }

    fn config_dump(&self) -> serde_json::Value {
        let snapshot = self.snapshot.load();
        let mut clusters: Vec<_> = snapshot
            .clusters
            .values()
            .map(|c| {
                let endpoints: Vec<_> = c
                    .endpoints
                    .iter()
                    .map(|e| {
                        json!({
                            "address": e.endpoint.addr().to_string(),
                            "weight": e.weight,
                            "meshed": e.endpoint.transport() == Transport::MeshH2,
                            "transport": format!("{:?}", e.endpoint.transport()),
                            "in_flight": e.endpoint.in_flight(),
                            "latency_ewma_ms": e.endpoint.ewma().get() / 1e6,
                            "ejected": e.endpoint.outlier().is_ejected(tokio::time::Instant::now()),
                        })
                    })
                    .collect();
                let (window_requests, window_retries) = c
                    .state
                    .budget
                    .totals(&c.retry_budget, tokio::time::Instant::now());
                json!({
                    "name": &*c.name,
                    "protocol": format!("{:?}", c.protocol),
                    "target_port": c.target_port.as_ref().map(|t| t.port),
                    "endpoints": endpoints,
                    "stats": c.state.stats.to_json(),
                    "circuit_breakers": c.breakers_json(),
                    "retry_budget": {
                        "ratio": c.retry_budget.ratio,
                        "min_per_second": c.retry_budget.min_per_second,
                        "window_seconds": c.retry_budget.window.as_secs_f64(),
                        "requests_in_window": window_requests,
                        "retries_in_window": window_retries,
                    },
                })
            })
            .collect();
        clusters.sort_by(|a, b| a["name"].as_str().cmp(&b["name"].as_str()));
        let routes = snapshot.outbound.as_ref().map(|t| {
            let hosts: Vec<_> = t
                .virtual_hosts
                .iter()
                .map(|vh| {
                    let routes: Vec<_> = vh
                        .routes
                        .iter()
                        .map(|r| {
                            let RouteAction::Split(split) = &r.action;
                            let mut previous = 0;
                            let targets: Vec<_> = split
                                .targets
                                .iter()
                                .map(|(cumulative, target)| {
                                    let weight = cumulative - previous;
                                    previous = *cumulative;
                                    let (name, known) = match target {
                                        Target::Cluster(c) => (c.name.to_string(), true),
                                        Target::Missing(n) => (n.to_string(), false),
                                    };
                                    json!({"cluster": name, "weight": weight, "known": known})
                                })
                                .collect();
                            json!({"name": &*r.name, "targets": targets})
                        })
                        .collect();
                    json!({"name": vh.name, "routes": routes})
                })
                .collect();
            json!({"name": t.name, "virtual_hosts": hosts})
        });
        let certificate = self.certificate.as_ref().map(|store| match &*store.load() {
            Some(c) => json!({
                "identity": c.identity,
                "generation": c.generation,
                "not_after_unix": c.not_after
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_secs())
                    .unwrap_or(0),
            }),
            None => json!(null),
        });
        let mut inbound = self.inbound.to_json();
        let (listener, mode, policies) = match &snapshot.inbound {
            Some(p) => {
                let names = |a: &crate::authz::Authorization| {
                    let deny: Vec<&str> = a.deny.iter().map(|p| &*p.name).collect();
                    let allow: Option<Vec<&str>> = a
                        .allow
                        .as_ref()
                        .map(|l| l.iter().map(|p| &*p.name).collect());
                    json!({"deny": deny, "allow": allow})
                };
                let plaintext = p.plaintext.as_ref().map(names);
                (
                    json!(p.name),
                    p.mode(),
                    json!({"mtls": names(&p.mtls), "plaintext": plaintext}),
                )
            }
            None => (json!(null), "STRICT", json!(null)),
        };
        // Without a certificate there is no mTLS: inbound is plaintext.
        let mode = if self.certificate.is_none() {
            "PLAINTEXT"
        } else {
            mode
        };
        inbound["listener"] = listener;
        inbound["tls_mode"] = json!(mode);
        inbound["authorization"] = policies;
        let mut tcp_ports: Vec<_> = snapshot
            .inbound
            .iter()
            .flat_map(|p| p.tcp.iter())
            .map(|(port, t)| {
                json!({
                    "port": port,
                    "plaintext": t.plaintext.is_some(),
                    "idle_timeout_ms": t.idle_timeout.as_millis() as u64,
                })
            })
            .collect();
        tcp_ports.sort_by_key(|p| p["port"].as_u64());
        inbound["tcp_ports"] = json!(tcp_ports);
        let http_ports: Vec<u16> = snapshot
            .inbound
            .iter()
            .flat_map(|p| p.http_ports.iter().copied())
            .collect();
        inbound["http_ports"] = json!(http_ports);
        json!({
            "node_id": self.node_id,
            "source": self.config_source(),
            "state": self.state.as_ref().map(|s| s.view()),
            "draining": self.drain.is_draining(),
            "certificate": certificate,
            "inbound": inbound,
            "ready": snapshot.is_ready(),
            "xds": self.status.view(),
            "versions": snapshot.versions,
            "clusters": clusters,
            "routes": routes,
            "destinations": destinations(&snapshot.destinations),
        })
    }
}

/// The Service ports connections can be for: by cluster IP, by name.
fn destinations(d: &crate::snapshot::Destinations) -> serde_json::Value {
    use crate::snapshot::Carry;
    let mut by_name: Vec<_> = d
        .by_name
        .iter()
        .map(|(name, dest)| {
            let carry = match &dest.carry {
                Carry::Opaque {
                    cluster,
                    idle_timeout,
                } => json!({"opaque": {"cluster": &**cluster, "idle_timeout_ms": idle_timeout.as_millis() as u64}}),
                Carry::Http { authority } => json!({"http": {"authority": &**authority}}),
            };
            json!({"name": name, "app_protocol": dest.app_protocol, "carry": carry})
        })
        .collect();
    by_name.sort_by(|a, b| a["name"].as_str().cmp(&b["name"].as_str()));
    let mut by_address: Vec<_> = d
        .by_address
        .iter()
        .map(|(addr, dest)| {
            json!({
                "address": addr.to_string(),
                "name": crate::snapshot::Destinations::key(&dest.service, &dest.namespace, dest.port),
            })
        })
        .collect();
    by_address.sort_by(|a, b| a["address"].as_str().cmp(&b["address"].as_str()));
    json!({"by_name": by_name, "by_address": by_address, "endpoints": d.by_endpoint.len()})
}

impl crate::http::server::Handler for Admin {
    fn handle(
        self: Arc<Self>,
        req: Request<Incoming>,
    ) -> impl std::future::Future<Output = Response<ResponseBody>> + Send + 'static {
        let answer = self.route(&req);
        async move {
            match answer {
                Answer::Now(response) => *response,
                Answer::Probe(probe) => app_health::run(probe).await,
            }
        }
    }
}

/// What the admin port serves, for `GET /`.
const ENDPOINTS: &[(&str, &str)] = &[
    ("GET  /live", "the process is up"),
    (
        "GET  /ready",
        "200 once it has its certificate (with a token) and config; else why not",
    ),
    (
        "GET  /config_dump",
        "the config in force: clusters, routes, certificate, inbound, xDS (JSON)",
    ),
    ("GET  /metrics", "Prometheus text"),
    (
        "GET  /app-health/<container>/<probe>",
        "the app's kubelet probe, run by the proxy (in a pod)",
    ),
    ("POST /shutdown", "drain and stop (from localhost only)"),
    (
        "POST /logging?level=debug",
        "change the log filter (from localhost only)",
    ),
];

/// The index page: which proxy this is and what its admin port serves.
fn index(node_id: &str) -> String {
    let mut page = format!("remora-proxy {node_id}: admin endpoints\n\n");
    let width = ENDPOINTS.iter().map(|(e, _)| e.len()).max().unwrap_or(0);
    for (endpoint, what) in ENDPOINTS {
        page.push_str(&format!("{endpoint:<width$}  {what}\n"));
    }
    page
}

fn pretty(value: &serde_json::Value) -> String {
    let mut text = serde_json::to_string_pretty(value).unwrap_or_else(|_| value.to_string());
    text.push('\n');
    text
}

fn text(status: StatusCode, body: impl Into<Bytes>) -> Response<ResponseBody> {
    let mut r = Response::new(Either::Right(Full::new(body.into())));
    *r.status_mut() = status;
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_index_lists_every_endpoint() {
        let page = index("web-1");
        assert!(
            page.starts_with("remora-proxy web-1: admin endpoints"),
            "{page}"
        );
        for path in [
            "/live",
            "/ready",
            "/config_dump",
            "/metrics",
            "/shutdown",
            "/logging",
            "/app-health/",
        ] {
            assert!(page.contains(path), "{path} missing:\n{page}");
        }
    }

    #[test]
    fn config_dump_is_pretty() {
        let text = pretty(&json!({"clusters": [{"name": "orders"}]}));
        assert!(text.contains("\n  \"clusters\": ["), "{text}");
        assert!(text.ends_with("}\n"));
    }
}
