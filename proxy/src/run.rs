//! Assembles the proxy: binds the listeners, starts the xDS client and serves until
//! shutdown, then drains (see [`crate::drain`]): the control plane is told first,
//! inbound closes after the propagation window, outbound and admin last.

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use tokio::net::TcpListener;

use crate::accept::inbound::InboundConnections;
use crate::accept::outbound::OutboundConnections;
use crate::accept::upstreams::UpstreamConnections;
use crate::accept::{serve, Context, DetectSettings};
use crate::admin::{Admin, AdminConnections};
use crate::bootstrap::Bootstrap;
use crate::detect::{DetectStats, OpaquePorts};
use crate::drain::{Drain, Phase};
use crate::http::{HttpServer, Inbound, InboundStats, ListenerLimits, MeshAccept, Outbound};
use crate::identity::{self, CertStore, IdentityConfig};
use crate::snapshot::Snapshot;
use crate::telemetry::access_log::AccessLog;
use crate::telemetry::tcp::{ADMIN, TCP};
use crate::telemetry::Metrics;
use crate::tls::TlsContext;
use crate::upstream::EndpointRegistry;
use crate::xds::{node, XdsClient, XdsStatus};

/// How long the admin listener's connections (probes, scrapes) get at the end.
const ADMIN_DRAIN: Duration = Duration::from_secs(1);
/// How long the last spans may take to reach the collector at shutdown.
const SPAN_FLUSH_TIMEOUT: Duration = Duration::from_secs(2);

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("cannot bind the {listener} listener on {addr}: {source}")]
    Bind {
        listener: &'static str,
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("cannot write the addresses file {path}: {source}")]
    AddressesFile {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("app address {0} cannot be used as an authority")]
    AppAddress(SocketAddr),
    #[error("cannot open the access log {destination}: {source}")]
    AccessLog {
        destination: String,
        source: std::io::Error,
    },
    #[error(transparent)]
    StateDir(#[from] crate::state::StateError),
}

pub struct Options {
    pub bootstrap: Bootstrap,
    /// Where to write the bound addresses as JSON once listening.
    pub addresses_file: Option<PathBuf>,
    /// Changes the log filter (`POST /logging` on the admin port); `None` when
    /// the logger cannot be changed.
    pub log_filter: Option<crate::admin::LogFilter>,
}

pub async fn run(options: Options, shutdown: impl Future<Output = ()>) -> Result<(), RunError> {
    let b = &options.bootstrap;
    let outbound = bind("outbound", b.outbound).await?;
    let inbound = bind("inbound", b.inbound).await?;
    let admin = bind("admin", b.admin).await?;
    let mut upstream_listeners = Vec::with_capacity(b.sidecar.upstreams.len());
    for u in &b.sidecar.upstreams {
        upstream_listeners.push((u.clone(), bind("upstream", u.listen).await?));
    }
    let local = |l: &TcpListener, name, addr| {
        l.local_addr().map_err(|source| RunError::Bind {
            listener: name,
            addr,
            source,
        })
    };
    let outbound_addr = local(&outbound, "outbound", b.outbound)?;
    let inbound_addr = local(&inbound, "inbound", b.inbound)?;
    let admin_addr = local(&admin, "admin", b.admin)?;
    let advertised = b.advertised_inbound(inbound_addr);
    tracing::info!(outbound = %outbound_addr, inbound = %inbound_addr, admin = %admin_addr, %advertised, service = %b.service, namespace = %b.namespace, "listening");
    let mut upstream_addrs = Vec::with_capacity(upstream_listeners.len());
    for (u, l) in &upstream_listeners {
        let addr = local(l, "upstream", u.listen)?;
        tracing::info!(listen = %addr, service = %u.service, namespace = %u.namespace, port = u.port, "upstream listening");
        upstream_addrs.push(addr);
    }
    let own_listeners = crate::http::target_port::OwnListeners::new(
        [outbound_addr, inbound_addr, admin_addr]
            .into_iter()
            .chain(upstream_addrs.iter().copied()),
    );
    if let Some(path) = &options.addresses_file {
        write_addresses(
            path,
            outbound_addr,
            inbound_addr,
            admin_addr,
            &upstream_addrs,
        )?;
    }

    let snapshot = Arc::new(ArcSwap::from_pointee(Snapshot::default()));
    let status = Arc::new(XdsStatus::default());
    let control_plane_identity =
        crate::tls::control_plane_identity(&b.trust_domain, &b.control_plane_namespace);
    // Bootstrap `state_dir`: the last accepted config and the certificate are
    // kept there and used at start, before the control plane answers.
    let state_dir = match &b.state_dir {
        Some(path) => Some(crate::state::StateDir::open(path)?),
        None => None,
    };
    // With a token the proxy gets a certificate: proxies talk mTLS to each other
    // and to the control plane, and inbound follows the mesh TLS mode.
    let certificate = b.token.clone().map(|token| {
        let store: CertStore = Default::default();
        let tls = TlsContext::new(store.clone());
        let config = IdentityConfig {
            control_plane: b.control_plane,
            identity: b.identity(),
            token,
            control_plane_identity: control_plane_identity.clone(),
            tls: tls.clone(),
            trust_bundle: b.trust_bundle.clone(),
            state: state_dir.clone(),
        };
        // Before anything handshakes: a saved certificate still good serves at once.
        identity::restore(&config, &store);
        (
            store.clone(),
            tls,
            tokio::spawn(identity::run(config, store)),
        )
    });
    let tls = certificate.as_ref().map(|(_, tls, _)| tls.clone());
    let mut metrics = Metrics::new(&b.service, &b.namespace);
    metrics.off = !b.metrics;
    let access_log = AccessLog::start(&b.access_log).map_err(|source| RunError::AccessLog {
        destination: format!("{:?}", b.access_log),
        source,
    })?;
    metrics.access_log = access_log.enabled().then_some(access_log);
    let exporter = b.tracing.as_ref().map(|settings| {
        tracing::info!(collector = %settings.collector, sample_rate = settings.sample_rate, "exporting spans");
        let (tracer, exporter) = crate::telemetry::trace::Collector {
            service: b.service.clone(),
            namespace: b.namespace.clone(),
            node_id: b.node_id.clone(),
        }
        .start(settings);
        metrics.tracer = Some(tracer);
        exporter
    });
    let metrics = Arc::new(metrics);
    let registry = Arc::new(EndpointRegistry::with_metrics(tls.clone(), metrics.clone()));
    let config_state = state_dir.map(|dir| {
        let owner = crate::state::Owner {
            service: b.service.clone(),
            namespace: b.namespace.clone(),
            identity: b.identity(),
        };
        crate::state::ConfigState::start(dir, owner, b.node_id.clone())
    });
    let drain = Arc::new(Drain::default());
    let xds = XdsClient::new(
        b.control_plane,
        node(b, advertised),
        registry,
        snapshot.clone(),
        status.clone(),
    )
    .with_mtls(tls.clone(), control_plane_identity.clone())
    .with_state(config_state.clone())
    .with_drain(drain.clone());
    let xds = tokio::spawn(xds.run());
    let reports = (b.metrics && !b.report_interval.is_zero()).then(|| {
        tokio::spawn(
            crate::telemetry::report::Reporter {
                control_plane: b.control_plane,
                mtls: tls.clone().map(|t| (t, control_plane_identity.clone())),
                metrics: metrics.clone(),
                node_id: b.node_id.clone(),
                every: b.report_interval,
                ejected: {
                    let snapshot = snapshot.clone();
                    Arc::new(move || {
                        snapshot
                            .load()
                            .ejected_endpoints(tokio::time::Instant::now())
                    })
                },
            }
            .run(),
        )
    });

    // Inbound stops accepting when the propagation window is over; outbound
    // (the app may still be finishing requests that call other services) and
    // admin once inbound has drained. Each resolves with the drain's deadline.
    let stop_at = |phase: Phase| {
        let drain = drain.clone();
        async move { drain.reached(phase).await }
    };
    let stats = Arc::new(InboundStats::default());
    let inbound_handler = Inbound::new(b.app, snapshot.clone(), stats.clone(), metrics.clone())
        .map_err(|_| RunError::AppAddress(b.app))?
        .with_limits(b.limits)
        .with_app_ports(b.sidecar.app_ports.clone())
        .with_own_listeners(own_listeners.clone());
    let data_limits = ListenerLimits::data(&b.limits);
    tracing::info!(
        max_connections = b.limits.max_connections,
        admin_max_connections = b.limits.admin_max_connections,
        idle_timeout = ?b.limits.idle_timeout,
        max_request_header_bytes = b.limits.max_request_header_bytes,
        max_request_body_bytes = ?b.limits.max_request_body_bytes,
        open_files = ?crate::limits::open_files_limit(),
        "limits"
    );
    let mesh = tls.clone().map(|tls| {
        Arc::new(MeshAccept {
            tls,
            snapshot: snapshot.clone(),
            stats: stats.clone(),
        })
    });
    let detect_stats = Arc::new(DetectStats::default());
    let context = Arc::new(Context {
        snapshot: snapshot.clone(),
        metrics: metrics.clone(),
        detect: DetectSettings {
            timeout: b.sidecar.detect_timeout,
            opaque_ports: b
                .sidecar
                .opaque_ports
                .clone()
                .map(OpaquePorts::new)
                .unwrap_or_default(),
            stats: detect_stats.clone(),
        },
        passthrough: b.sidecar.passthrough,
        passthrough_idle: crate::compile::DEFAULT_TCP_IDLE_TIMEOUT,
        connect_timeout: crate::upstream::DEFAULT_CONNECT_TIMEOUT,
        app_ip: b.app.ip(),
        app_ports: b.sidecar.app_ports.clone(),
        own_listeners,
        inbound_stats: stats.clone(),
    });
    // `POST /shutdown` on the admin port stops the proxy like SIGTERM does.
    let admin_shutdown = Arc::new(tokio::sync::Notify::new());
    let admin_handler = Admin {
        drain: drain.clone(),
        shutdown: admin_shutdown.clone(),
        log_filter: options.log_filter.clone(),
        node_id: b.node_id.clone(),
        snapshot: snapshot.clone(),
        status,
        certificate: certificate.as_ref().map(|(store, _, _)| store.clone()),
        inbound: stats,
        metrics: metrics.clone(),
        detect: detect_stats,
        state: config_state,
        app_probes: b.app_probes.clone(),
    };
    let outbound_http = Arc::new(
        HttpServer::new(
            Arc::new(Outbound::new(snapshot, metrics.clone()).with_limits(b.limits)),
            data_limits,
        )
        .with_drain(drain.clone(), Phase::Exiting),
    );
    let outbound_connections = Arc::new(OutboundConnections {
        context: context.clone(),
        http: outbound_http.clone(),
    });
    let inbound_connections = Arc::new(InboundConnections {
        context: context.clone(),
        // Clients outside the mesh (HTTP/1) learn from the leave on that each
        // connection ends after its response; mesh callers (HTTP/2) get GOAWAY
        // when inbound closes, by when they no longer pick this proxy.
        http: HttpServer::new(Arc::new(inbound_handler), data_limits)
            .with_drain(drain.clone(), Phase::Leaving),
        mesh,
    });
    // Callers off loopback (the kubelet, other pods) get the probe paths
    // only, a few connections each.
    let admin_connections = Arc::new(AdminConnections::new(
        admin_handler,
        ListenerLimits::admin(&b.limits),
    ));
    let upstream_servers =
        futures::future::join_all(upstream_listeners.into_iter().map(|(upstream, listener)| {
            let connections = Arc::new(UpstreamConnections::new(
                context.clone(),
                outbound_http.clone(),
                upstream,
            ));
            serve(
                listener,
                connections,
                &TCP.outbound_src,
                data_limits,
                stop_at(Phase::Exiting),
            )
        }));
    // Transparent mode redirects IPv6 too: the same listeners on [::1] and [::].
    let outbound_v6 = crate::accept::listener::ipv6_twin(outbound_addr).map(|l| {
        serve(
            l,
            outbound_connections.clone(),
            &TCP.outbound_src,
            data_limits,
            stop_at(Phase::Exiting),
        )
    });
    let inbound_v6 = crate::accept::listener::ipv6_twin(inbound_addr).map(|l| {
        serve(
            l,
            inbound_connections.clone(),
            &TCP.inbound_src,
            data_limits,
            stop_at(Phase::ClosingInbound),
        )
    });
    // The connections still open when the inbound listeners gave up.
    let inbound_served = async {
        let (v4, v6) = tokio::join!(
            serve(
                inbound,
                inbound_connections,
                &TCP.inbound_src,
                data_limits,
                stop_at(Phase::ClosingInbound),
            ),
            async {
                match inbound_v6 {
                    Some(f) => f.await,
                    None => 0,
                }
            },
        );
        v4 + v6
    };
    let admin_stop = {
        let drain = drain.clone();
        async move {
            let deadline = drain.reached(Phase::Exiting).await;
            deadline.min(tokio::time::Instant::now() + ADMIN_DRAIN)
        }
    };
    let rest_served = async {
        tokio::join!(
            serve(
                outbound,
                outbound_connections,
                &TCP.outbound_src,
                data_limits,
                stop_at(Phase::Exiting),
            ),
            async {
                if let Some(f) = outbound_v6 {
                    f.await;
                }
            },
            upstream_servers,
            // `/ready` answers 503 `draining` until the very end.
            serve(
                admin,
                admin_connections,
                &ADMIN,
                ListenerLimits::admin(&b.limits),
                admin_stop,
            ),
        );
    };
    let trigger = async {
        tokio::select! {
            () = shutdown => tracing::info!("drain: signal received"),
            () = admin_shutdown.notified() => {}
        }
    };
    tokio::join!(
        crate::drain::sequence(&drain, b.drain, trigger, inbound_served),
        rest_served,
    );
    tracing::info!(
        elapsed_ms = drain.elapsed_ms(),
        "drain: outbound and admin closed"
    );
    // The requests are answered: what they logged and traced goes out before
    // the process does.
    if let Some(exporter) = exporter {
        exporter.flush(SPAN_FLUSH_TIMEOUT).await;
    }
    if let Some(log) = &metrics.access_log {
        let log = log.clone();
        let _ = tokio::task::spawn_blocking(move || log.close()).await;
    }
    xds.abort();
    if let Some(reports) = reports {
        reports.abort();
    }
    if let Some((_, _, renewal)) = certificate {
        renewal.abort();
    }
    tracing::info!(elapsed_ms = drain.elapsed_ms(), "drain: exit");
    Ok(())
}

async fn bind(listener: &'static str, addr: SocketAddr) -> Result<TcpListener, RunError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| RunError::Bind {
            listener,
            addr,
            source,
        })
}

fn write_addresses(
    path: &std::path::Path,
    outbound: SocketAddr,
    inbound: SocketAddr,
    admin: SocketAddr,
    upstreams: &[SocketAddr],
) -> Result<(), RunError> {
    let json = serde_json::json!({
        "outbound": outbound.to_string(),
        "inbound": inbound.to_string(),
        "admin": admin.to_string(),
        "upstreams": upstreams.iter().map(|a| a.to_string()).collect::<Vec<_>>(),
    });
    let tmp = path.with_extension("tmp");
    let err = |source| RunError::AddressesFile {
        path: path.to_owned(),
        source,
    };
    std::fs::write(&tmp, json.to_string()).map_err(err)?;
    std::fs::rename(&tmp, path).map_err(err)
}
