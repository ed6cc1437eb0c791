//! The demo's mesh: the config files, the control plane, the apps and their proxies.

use std::ffi::OsStr;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use tempfile::TempDir;
use tokio::time::Instant;

use super::app::App;
use super::process::{binary, ControlAddresses, Process, ProxyAddresses};
use super::traffic::{get_json, get_status};
use super::{DemoError, DemoOptions};
use crate::identity::{Grant, TokenStore};

const SERVICES: &str = "\
# The demo's services. `web` calls `orders`; `orders` is split between two versions,
# each a Service of its own, by the HTTPRoute in route.yaml.
apiVersion: v1
kind: Service
metadata: {name: web, namespace: default}
spec:
  ports: [{port: 80, appProtocol: http}]
---
apiVersion: v1
kind: Service
metadata: {name: orders, namespace: default}
spec:
  ports: [{port: 80, appProtocol: http}]
---
apiVersion: v1
kind: Service
metadata: {name: orders-v1, namespace: default}
spec:
  ports: [{port: 80, appProtocol: http}]
---
apiVersion: v1
kind: Service
metadata: {name: orders-v2, namespace: default}
spec:
  ports: [{port: 80, appProtocol: http}]
";

fn route(v1: u32, v2: u32) -> String {
    format!(
        "\
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {{name: orders-split, namespace: default}}
spec:
  parentRefs: [{{group: \"\", kind: Service, name: orders, port: 80}}]
  rules:
  - backendRefs:
    - {{name: orders-v1, port: 80, weight: {v1}}}
    - {{name: orders-v2, port: 80, weight: {v2}}}
"
    )
}

pub struct RunningProxy {
    pub service: &'static str,
    pub app: SocketAddr,
    pub addresses: ProxyAddresses,
    pub process: Process,
    _app: App,
}

pub struct Mesh {
    dir: TempDir,
    pub xds: SocketAddr,
    pub api: SocketAddr,
    control: Process,
    pub proxies: Vec<RunningProxy>,
}

impl Mesh {
    pub async fn start(options: &DemoOptions) -> Result<Mesh, DemoError> {
        let dir = tempfile::Builder::new()
            .prefix("remora-demo-")
            .tempdir()
            .map_err(|source| DemoError::Config {
                path: std::env::temp_dir(),
                source,
            })?;
        let config = dir.path().join("config");
        let first = options.steps.first().copied().unwrap_or(0).min(100);
        write(&config.join("services.yaml"), SERVICES)?;
        write(&config.join("route.yaml"), &route(100 - first, first))?;

        let bin_dir = options.bin_dir.as_deref();
        let remora = binary(bin_dir, "remora")?;
        let proxy_bin = binary(bin_dir, "remora-proxy")?;
        let addresses = dir.path().join("control.json");
        let data_dir = dir.path().join("data");
        let (control, cp): (Process, ControlAddresses) = Process::start(
            "the control plane",
            &remora,
            &[
                OsStr::new("control"),
                OsStr::new("--config-dir"),
                config.as_os_str(),
                OsStr::new("--data-dir"),
                data_dir.as_os_str(),
                OsStr::new("--xds-addr"),
                OsStr::new("127.0.0.1:0"),
                OsStr::new("--api-addr"),
                OsStr::new("127.0.0.1:0"),
                OsStr::new("--addresses-file"),
                addresses.as_os_str(),
            ],
            &addresses,
            &dir.path().join("control.log"),
        )
        .await?;

        let mut mesh = Mesh {
            dir,
            xds: cp.xds,
            api: cp.api,
            control,
            proxies: Vec::new(),
        };
        let tokens = TokenStore::new(&data_dir);
        for service in ["web", "orders-v1", "orders-v2"] {
            let app = App::start(service).await.map_err(DemoError::App)?;
            // Each proxy gets a bootstrap token, so the mesh runs mTLS.
            let grant = Grant {
                namespace: "default".to_owned(),
                service_account: service.to_owned(),
            };
            let token = tokens
                .create(grant, Duration::from_secs(3600))
                .map_err(DemoError::Token)?;
            let token_file = mesh.dir.path().join(format!("{service}.token"));
            write(&token_file, &token)?;
            let bootstrap = mesh.dir.path().join(format!("{service}.yaml"));
            write(
                &bootstrap,
                &format!(
                    "node_id: {service}-demo\nservice: {service}\nnamespace: default\n\
                     control_plane: {}\napp: {}\noutbound: 127.0.0.1:0\ninbound: 127.0.0.1:0\n\
                     admin: 127.0.0.1:0\ntoken_file: {}\n",
                    mesh.xds,
                    app.addr,
                    token_file.display()
                ),
            )?;
            let addresses = mesh.dir.path().join(format!("{service}.json"));
            let (process, proxy): (Process, ProxyAddresses) = Process::start(
                service,
                &proxy_bin,
                &[
                    OsStr::new("--bootstrap"),
                    bootstrap.as_os_str(),
                    OsStr::new("--addresses-file"),
                    addresses.as_os_str(),
                ],
                &addresses,
                &mesh.dir.path().join(format!("{service}.log")),
            )
            .await?;
            mesh.proxies.push(RunningProxy {
                service,
                app: app.addr,
                addresses: proxy,
                process,
                _app: app,
            });
        }
        for p in &mesh.proxies {
            mesh.wait_ready(p).await?;
        }
        let v2 = first;
        mesh.wait_for_split(100 - v2, v2).await?;
        Ok(mesh)
    }

    /// Waits until a proxy holds its certificate and its config.
    async fn wait_ready(&self, proxy: &RunningProxy) -> Result<(), DemoError> {
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if get_status(proxy.addresses.admin, "/ready").await == Some(200) {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Err(DemoError::Converge(format!(
            "{}'s proxy is not ready (certificate and config); logs are in {}",
            proxy.service,
            self.dir.path().display()
        )))
    }

    /// Process ids of everything the demo started, for the curious (and for tests
    /// that check nothing is left behind).
    pub fn pids(&self) -> Vec<u32> {
        std::iter::once(self.control.pid())
            .chain(self.proxies.iter().map(|p| p.process.pid()))
            .collect()
    }

    pub fn config_dir(&self) -> std::path::PathBuf {
        self.dir.path().join("config")
    }

    /// Where the demo's traffic enters: web's outbound listener.
    pub fn entry(&self) -> SocketAddr {
        self.proxies[0].addresses.outbound
    }

    /// Rewrites the HTTPRoute and waits until web's proxy routes by it; returns how
    /// long that took.
    pub async fn set_split(&self, v1: u32, v2: u32) -> Result<Duration, DemoError> {
        let started = Instant::now();
        write(&self.config_dir().join("route.yaml"), &route(v1, v2))?;
        self.wait_for_split(v1, v2).await?;
        Ok(started.elapsed())
    }

    async fn wait_for_split(&self, v1: u32, v2: u32) -> Result<(), DemoError> {
        let admin = self.proxies[0].addresses.admin;
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut last = String::from("no answer from web's proxy");
        while Instant::now() < deadline {
            match get_json(admin, "/config_dump").await {
                Ok(dump) => {
                    if split_applied(&dump, v1, v2) {
                        return Ok(());
                    }
                    last = format!("web's proxy does not route {v1}/{v2} yet");
                }
                Err(e) => last = e,
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Err(DemoError::Converge(format!(
            "{last}; logs are in {}",
            self.dir.path().display()
        )))
    }

    pub async fn stop(self) {
        for p in self.proxies {
            p.process.stop().await;
        }
        self.control.stop().await;
    }
}

/// True when the dump routes `orders` v1/v2 by these weights and both versions have
/// the endpoints they need.
fn split_applied(dump: &serde_json::Value, v1: u32, v2: u32) -> bool {
    let weight_of = |version: &str| -> u64 {
        dump["routes"]["virtual_hosts"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|vh| vh["name"].as_str().is_some_and(|n| n.contains("/orders:")))
            .flat_map(|vh| vh["routes"].as_array().into_iter().flatten())
            .flat_map(|r| r["targets"].as_array().into_iter().flatten())
            .filter(|t| {
                t["cluster"]
                    .as_str()
                    .is_some_and(|c| c.contains(&format!("{version}.")))
            })
            .filter_map(|t| t["weight"].as_u64())
            .sum()
    };
    let has_endpoints = |version: &str| {
        dump["clusters"].as_array().into_iter().flatten().any(|c| {
            c["name"]
                .as_str()
                .is_some_and(|n| n.contains(&format!("{version}.")))
                && c["endpoints"].as_array().is_some_and(|e| !e.is_empty())
        })
    };
    let (w1, w2) = (weight_of("orders-v1"), weight_of("orders-v2"));
    w1 * u64::from(v2) == w2 * u64::from(v1)
        && (w1 + w2) > 0
        && (v1 == 0 || has_endpoints("orders-v1"))
        && (v2 == 0 || has_endpoints("orders-v2"))
}

fn write(path: &Path, text: &str) -> Result<(), DemoError> {
    let err = |source| DemoError::Config {
        path: path.to_owned(),
        source,
    };
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(err)?;
    }
    // Write then rename, so the watcher never reads half a file.
    let tmp = path.with_extension("tmp~");
    std::fs::write(&tmp, text).map_err(err)?;
    std::fs::rename(&tmp, path).map_err(err)
}
