//! The ADS stream: subscribe, apply each response as one atomic update, ACK or NACK,
//! and reconnect with backoff. The last good snapshot stays published throughout.
//! When the proxy drains, the stream tells the control plane it is leaving
//! (`leave`), and it warns when the config has nothing for its own Service
//! (`own_service`).

mod leave;
mod own_service;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use remora_proto::type_url;
use remora_proto::xds::envoy::config::core::v3::Node;
use remora_proto::xds::envoy::service::discovery::v3::{
    aggregated_discovery_service_client::AggregatedDiscoveryServiceClient, DiscoveryRequest,
    DiscoveryResponse,
};
use remora_proto::xds::google::protobuf::value::Kind;
use remora_proto::xds::google::rpc::Status;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

use super::apply::apply_response;
use super::{decode, Backoff, XdsStatus};
use crate::compile::{self, Resources, Subscriptions, OUTBOUND_LISTENER};
use crate::drain::Drain;
use crate::snapshot::Snapshot;
use crate::state::ConfigState;
use crate::tls::TlsContext;
use crate::upstream::EndpointRegistry;

pub struct XdsClient {
    control_plane: SocketAddr,
    node: Node,
    registry: Arc<EndpointRegistry>,
    snapshot: Arc<ArcSwap<Snapshot>>,
    status: Arc<XdsStatus>,
    /// The listeners this proxy subscribes to, by name.
    listeners: Vec<String>,
    /// With a workload certificate, the stream runs over mTLS to a control plane
    /// that presents this identity.
    mtls: Option<(Arc<TlsContext>, String)>,
    /// The accepted resources; survives reconnects.
    accepted: Resources,
    /// Bootstrap `state_dir`: where accepted resources survive a restart.
    state: Option<Arc<ConfigState>>,
    /// Set while the proxy drains: the stream says it is leaving.
    drain: Option<Arc<Drain>>,
    /// This proxy's endpoint was seen gone from the config (logged once).
    withdrawn: bool,
}

#[derive(Debug, thiserror::Error)]
enum StreamError {
    #[error("connect: {}", crate::tls::causes(.0))]
    Connect(#[from] tonic::transport::Error),
    #[error("stream: {0}")]
    Status(#[from] tonic::Status),
    #[error("the control plane closed the stream")]
    Closed,
}

/// Per-stream protocol state for one type.
#[derive(Default)]
struct TypeState {
    nonce: String,
    subscribed: Vec<String>,
}

impl XdsClient {
    pub fn new(
        control_plane: SocketAddr,
        node: Node,
        registry: Arc<EndpointRegistry>,
        snapshot: Arc<ArcSwap<Snapshot>>,
        status: Arc<XdsStatus>,
    ) -> Self {
        let metadata = |key: &str| {
            node.metadata
                .as_ref()
                .and_then(|m| m.fields.get(key))
                .and_then(|v| match &v.kind {
                    Some(Kind::StringValue(s)) => Some(s.clone()),
                    _ => None,
                })
                .unwrap_or_default()
        };
        let listeners = vec![
            OUTBOUND_LISTENER.to_owned(),
            compile::inbound_listener(&metadata("service"), &metadata("namespace")),
        ];
        Self {
            listeners,
            mtls: None,
            control_plane,
            node,
            registry,
            snapshot,
            status,
            accepted: Resources::default(),
            state: None,
            drain: None,
            withdrawn: false,
        }
    }

    /// Tells the control plane when `drain` begins (see [`crate::drain`]).
    pub fn with_drain(mut self, drain: Arc<Drain>) -> Self {
        self.drain = Some(drain);
        self
    }

    /// Keeps every accepted config in `state` and starts from the one saved
    /// there, compiled as a response is: the proxy serves it until the control
    /// plane answers (a saved config that is damaged, another proxy's, or does
    /// not compile is logged and left out).
    pub fn with_state(mut self, state: Option<Arc<ConfigState>>) -> Self {
        if let Some(state) = &state {
            if let Some(saved) = state.load() {
                match super::restore::from_saved(&saved, &self.registry) {
                    Ok(Some((accepted, snapshot))) => {
                        self.snapshot.store(Arc::new(snapshot));
                        self.accepted = accepted;
                        state.restored(&saved);
                    }
                    Ok(None) => {}
                    Err(error) => state.restore_failed(&error),
                }
            }
        }
        self.state = state;
        self
    }

    /// Runs the stream over mTLS (once `tls` holds a certificate), verifying that
    /// the control plane presents `control_plane`.
    pub fn with_mtls(mut self, tls: Option<Arc<TlsContext>>, control_plane: String) -> Self {
        self.mtls = tls.map(|t| (t, control_plane));
        self
    }

    /// The client config for the next connection: `None` for plaintext; waits for
    /// the first certificate when the proxy has an identity.
    async fn transport(&self) -> Option<Arc<rustls::ClientConfig>> {
        let (tls, control_plane) = self.mtls.as_ref()?;
        let mut waited = false;
        loop {
            if let Some(config) = tls.client_config(control_plane) {
                return Some(config);
            }
            if !waited {
                tracing::info!(
                    "waiting for the workload certificate before connecting to the control plane"
                );
                waited = true;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Runs until the task is dropped.
    pub async fn run(mut self) {
        let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(5));
        loop {
            let mut received = false;
            let result = self.stream(&mut received).await;
            self.status.set_connected(false);
            if received {
                backoff.reset();
            }
            let delay = backoff.next_delay();
            match result {
                Ok(()) | Err(StreamError::Closed) => {
                    tracing::info!(control_plane = %self.control_plane, ?delay, "xDS stream closed; reconnecting")
                }
                Err(error) => {
                    tracing::warn!(control_plane = %self.control_plane, %error, ?delay, "xDS stream failed; serving the last good config");
                    self.status.failed(error.to_string());
                }
            }
            tokio::time::sleep(delay).await;
        }
    }

    async fn stream(&mut self, received: &mut bool) -> Result<(), StreamError> {
        let endpoint =
            tonic::transport::Endpoint::from_shared(format!("http://{}", self.control_plane))?
                .connect_timeout(Duration::from_secs(2))
                .tcp_nodelay(true)
                .http2_keep_alive_interval(Duration::from_secs(10))
                .keep_alive_timeout(Duration::from_secs(5));
        let tls = self.transport().await;
        let channel = crate::tls::connect(endpoint, self.control_plane, tls).await?;
        let mut client = AggregatedDiscoveryServiceClient::new(channel)
            .max_decoding_message_size(64 * 1024 * 1024);
        let (tx, rx) = mpsc::channel::<DiscoveryRequest>(16);
        let mut types: HashMap<&'static str, TypeState> = HashMap::new();
        // A proxy that reconnects while it leaves says so in its first request.
        let mut left = self.mark_if_leaving();

        // Resume with what we hold: versions let the server skip what we already have.
        let subs = self.accepted.current_subscriptions().unwrap_or_default();
        // Clusters: all of them (wildcard). Listeners: only ours (outbound and
        // this service's inbound) by name; the control plane also serves one API
        // listener per service for gRPC clients and the other services' inbound.
        let initial = [
            (type_url::CLUSTER, Vec::new()),
            (type_url::ENDPOINT, subs.endpoints.clone()),
            (type_url::LISTENER, self.listeners.clone()),
            (type_url::ROUTE, subs.routes.clone()),
        ];
        let mut first = true;
        for (t, names) in initial {
            if t != type_url::CLUSTER && names.is_empty() {
                continue;
            }
            types.entry(t).or_default().subscribed = names.clone();
            let req = DiscoveryRequest {
                version_info: self.accepted.versions.get(t).cloned().unwrap_or_default(),
                node: first.then(|| self.node.clone()),
                resource_names: names,
                type_url: t.to_owned(),
                ..Default::default()
            };
            first = false;
            let _ = tx.send(req).await;
        }

        let mut responses = client
            .stream_aggregated_resources(ReceiverStream::new(rx))
            .await?
            .into_inner();
        self.status.set_connected(true);
        tracing::info!(control_plane = %self.control_plane, "xDS stream open");

        loop {
            let response = tokio::select! {
                response = responses.message() => response?,
                () = leave::begun(self.drain.clone()), if !left => {
                    left = true;
                    let leave = self.leave_request(&types);
                    if tx.send(leave).await.is_err() {
                        return Err(StreamError::Closed);
                    }
                    self.leave_sent();
                    continue;
                }
            };
            let Some(response) = response else {
                break;
            };
            *received = true;
            for req in self.on_response(response, &mut types) {
                if tx.send(req).await.is_err() {
                    return Err(StreamError::Closed);
                }
            }
            self.observe_own_service();
            self.observe_withdrawal();
        }
        Err(StreamError::Closed)
    }

    /// Applies one response and returns what to send: the ACK or NACK, then any
    /// subscription changes it caused.
    fn on_response(
        &mut self,
        response: DiscoveryResponse,
        types: &mut HashMap<&'static str, TypeState>,
    ) -> Vec<DiscoveryRequest> {
        let Some(t) = decode::known_type(&response.type_url) else {
            tracing::warn!(type_url = %response.type_url, "ignoring a response of a type we did not ask for");
            return vec![DiscoveryRequest {
                type_url: response.type_url,
                response_nonce: response.nonce,
                error_detail: Some(Status {
                    code: tonic::Code::InvalidArgument as i32,
                    message: "unsupported type".into(),
                    details: vec![],
                }),
                ..Default::default()
            }];
        };
        types.entry(t).or_default().nonce = response.nonce.clone();
        let mut out = Vec::with_capacity(3);
        match self.apply(t, &response) {
            Ok(()) => {
                tracing::info!(type_url = t, version = %response.version_info, resources = response.resources.len(), "xDS update accepted");
                self.status.accepted(t, &response.version_info);
                if let Some(state) = &self.state {
                    state.accepted(super::restore::to_saved(&self.accepted));
                }
                out.push(self.request(t, types, None));
                if let Ok(subs) = self.accepted.current_subscriptions() {
                    out.extend(self.resubscribe(subs, types));
                }
            }
            Err(error) => {
                let message = error.to_string();
                tracing::warn!(type_url = t, version = %response.version_info, %message, "xDS update rejected; keeping the previous config");
                self.status.rejected(t, &message);
                out.push(self.request(t, types, Some(message)));
            }
        }
        out
    }

    fn apply(
        &mut self,
        t: &'static str,
        response: &DiscoveryResponse,
    ) -> Result<(), compile::CompileError> {
        let (candidate, snapshot) = apply_response(
            &self.accepted,
            t,
            &response.version_info,
            &response.resources,
            &self.registry,
        )?;
        self.snapshot.store(Arc::new(snapshot));
        self.accepted = candidate;
        Ok(())
    }

    fn request(
        &self,
        t: &'static str,
        types: &HashMap<&'static str, TypeState>,
        nack: Option<String>,
    ) -> DiscoveryRequest {
        let state = types.get(t);
        DiscoveryRequest {
            version_info: self.accepted.versions.get(t).cloned().unwrap_or_default(),
            resource_names: state.map(|s| s.subscribed.clone()).unwrap_or_default(),
            type_url: t.to_owned(),
            response_nonce: state.map(|s| s.nonce.clone()).unwrap_or_default(),
            error_detail: nack.map(|message| Status {
                code: tonic::Code::InvalidArgument as i32,
                message,
                details: vec![],
            }),
            ..Default::default()
        }
    }

    fn resubscribe(
        &self,
        subs: Subscriptions,
        types: &mut HashMap<&'static str, TypeState>,
    ) -> Vec<DiscoveryRequest> {
        let mut out = Vec::new();
        for (t, names) in [
            (type_url::ENDPOINT, subs.endpoints),
            (type_url::ROUTE, subs.routes),
        ] {
            let state = types.entry(t).or_default();
            if state.subscribed != names {
                state.subscribed = names;
                out.push(self.request(t, types, None));
            }
        }
        out
    }
}
