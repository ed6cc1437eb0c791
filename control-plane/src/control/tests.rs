//! The control plane in-process, as the demo runs it.

use std::time::Duration;

use remora_proto::type_url;
use remora_proto::xds::envoy::service::discovery::v3::aggregated_discovery_service_client::AggregatedDiscoveryServiceClient;
use remora_proto::xds::envoy::service::discovery::v3::DiscoveryRequest;
use tokio::sync::{mpsc, oneshot};
use tokio_stream::wrappers::ReceiverStream;

use super::*;

const SERVICE: &str =
    "apiVersion: v1\nkind: Service\nmetadata: {name: orders}\nspec: {ports: [{port: 80}]}\n";

#[tokio::test]
async fn serves_until_shutdown_and_ends_open_streams() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("orders.yaml"), SERVICE).unwrap();
    let options = ControlOptions {
        xds_addr: "127.0.0.1:0".parse().unwrap(),
        api_addr: "127.0.0.1:0".parse().unwrap(),
        data_dir: dir.path().join("data"),
        allow_plaintext_proxies: true,
        ..ControlOptions::new(dir.path())
    };
    let plane = ControlPlane::bind(options).await.unwrap();
    let xds = plane.xds_addr();
    assert_ne!(xds.port(), 0);
    let (stop, stopped) = oneshot::channel::<()>();
    let serving = tokio::spawn(plane.serve(async move {
        let _ = stopped.await;
    }));

    let mut client = AggregatedDiscoveryServiceClient::connect(format!("http://{xds}"))
        .await
        .unwrap();
    let (tx, rx) = mpsc::channel(4);
    tx.send(DiscoveryRequest {
        type_url: type_url::CLUSTER.into(),
        ..Default::default()
    })
    .await
    .unwrap();
    let mut responses = client
        .stream_aggregated_resources(ReceiverStream::new(rx))
        .await
        .unwrap()
        .into_inner();
    let first = responses.message().await.unwrap().unwrap();
    assert_eq!(first.resources.len(), 1);

    stop.send(()).unwrap();
    let ended = tokio::time::timeout(Duration::from_secs(5), responses.message())
        .await
        .expect("the stream ends on shutdown");
    assert!(
        matches!(&ended, Err(s) if s.code() == tonic::Code::Unavailable)
            || matches!(ended, Ok(None)),
        "{ended:?}"
    );
    tokio::time::timeout(Duration::from_secs(5), serving)
        .await
        .expect("serve returns after shutdown")
        .unwrap()
        .unwrap();
}

#[tokio::test]
async fn a_missing_config_directory_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let err = ControlPlane::bind(ControlOptions::new(dir.path().join("nope")))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::ReadConfig { .. }), "{err}");
}
