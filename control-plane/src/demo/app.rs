//! The demo's apps: tiny HTTP servers that say who they are.

use std::convert::Infallible;
use std::net::SocketAddr;

use bytes::Bytes;
use http::{HeaderValue, Response};
use http_body_util::Full;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

pub struct App {
    pub addr: SocketAddr,
    task: JoinHandle<()>,
}

impl App {
    pub async fn start(name: &'static str) -> std::io::Result<App> {
        let listener = TcpListener::bind(("127.0.0.1", 0)).await?;
        let addr = listener.local_addr()?;
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let service = service_fn(move |_req| async move {
                    let mut r =
                        Response::new(Full::new(Bytes::from(format!("hello from {name}\n"))));
                    r.headers_mut()
                        .insert("x-backend", HeaderValue::from_static(name));
                    Ok::<_, Infallible>(r)
                });
                tokio::spawn(async move {
                    let _ = auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Ok(App { addr, task })
    }
}

impl Drop for App {
    fn drop(&mut self) {
        self.task.abort();
    }
}
