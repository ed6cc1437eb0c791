//! The gRPC test app: `remora.demo.v1.Echo`, naming itself as the backend.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use anyhow::{Context, Result};
use futures::Stream;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Request, Response};
use remora_proto::demo::echo_client::EchoClient;
use remora_proto::demo::echo_server::{Echo, EchoServer};
use remora_proto::demo::{EchoReply, EchoRequest};
use tonic::codegen::Service;
use tonic::transport::{Channel, Endpoint};
use tonic::Status;

use super::server::ConnectionState;
use super::AppState;

/// The `Echo` implementation: `Say` answers the message with this backend's name;
/// `SayMany` answers `count` times with `sequence` 0, 1, ... `count - 1`.
#[derive(Debug, Clone)]
pub(crate) struct EchoApp {
    state: Arc<AppState>,
}

impl EchoApp {
    /// Counts the call and misbehaves as the app is told to.
    async fn start(&self) -> Result<(), Status> {
        self.state.requests.fetch_add(1, Ordering::Relaxed);
        let delay = self.state.delay_ms.load(Ordering::Relaxed);
        if delay > 0 {
            tokio::time::sleep(std::time::Duration::from_millis(delay)).await;
        }
        if self.state.fails() {
            let code =
                tonic::Code::from_i32(self.state.fail_grpc_code.load(Ordering::Relaxed) as i32);
            return Err(Status::new(
                code,
                format!("{} failed on purpose", self.state.name),
            ));
        }
        Ok(())
    }
}

type ReplyStream = Pin<Box<dyn Stream<Item = Result<EchoReply, Status>> + Send + 'static>>;

#[tonic::async_trait]
impl Echo for EchoApp {
    async fn say(
        &self,
        request: tonic::Request<EchoRequest>,
    ) -> Result<tonic::Response<EchoReply>, Status> {
        self.start().await?;
        Ok(tonic::Response::new(EchoReply {
            message: request.into_inner().message,
            backend: self.state.name.to_string(),
            sequence: 0,
        }))
    }

    type SayManyStream = ReplyStream;

    async fn say_many(
        &self,
        request: tonic::Request<EchoRequest>,
    ) -> Result<tonic::Response<Self::SayManyStream>, Status> {
        self.start().await?;
        let EchoRequest { message, count } = request.into_inner();
        let backend = self.state.name.to_string();
        let replies = (0..count).map(move |sequence| {
            Ok(EchoReply {
                message: message.clone(),
                backend: backend.clone(),
                sequence,
            })
        });
        Ok(tonic::Response::new(Box::pin(futures::stream::iter(
            replies,
        ))))
    }
}

/// The Echo server as a hyper service (so it runs on the shared accept loop).
pub(crate) fn service(
    state: Arc<AppState>,
    connection: Arc<ConnectionState>,
) -> impl hyper::service::Service<
    Request<Incoming>,
    Response = Response<tonic::body::Body>,
    Error = Infallible,
    Future = impl Send,
> + Clone
       + Send
       + Sync
       + 'static {
    let server_state = state.clone();
    let server = EchoServer::new(EchoApp { state });
    service_fn(move |request: Request<Incoming>| {
        connection.count(&server_state);
        let mut server = server.clone();
        async move { server.call(request).await }
    })
}

/// An Echo client connected to `addr` that sends `authority` as `:authority` (a
/// service name when `addr` is a proxy's outbound listener; the app's own address
/// when calling it directly).
pub async fn echo_client(addr: SocketAddr, authority: &str) -> Result<EchoClient<Channel>> {
    let origin = format!("http://{authority}")
        .parse()
        .with_context(|| format!("invalid authority `{authority}`"))?;
    let channel = Endpoint::from_shared(format!("http://{addr}"))
        .context("invalid address")?
        .origin(origin)
        .connect()
        .await
        .with_context(|| format!("cannot connect to {addr}"))?;
    Ok(EchoClient::new(channel))
}
