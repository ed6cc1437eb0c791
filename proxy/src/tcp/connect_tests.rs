//! The connect step on real loopback sockets: a refused endpoint is passed over
//! for a live one, its failures go to outlier detection, a pinned endpoint is
//! the only one tried, a cluster with nothing to connect to says so, and a
//! peer proxy is told the app port (the target port, when there is one).

use std::sync::Arc;
use std::time::Duration;

use tokio::io::AsyncReadExt;
use tokio::net::TcpListener;

use super::connect::{connect, ConnectError};
use crate::balance::Balancer;
use crate::resilience::BudgetConfig;
use crate::upstream::{Cluster, Endpoint, OutlierConfig, Protocol, Transport, WeightedEndpoint};

fn plain(addr: std::net::SocketAddr) -> WeightedEndpoint {
    WeightedEndpoint {
        // Unmeshed: a plain TCP connection, no header.
        endpoint: Arc::new(Endpoint::new(addr, Transport::PlainH1)),
        weight: 1,
    }
}

fn cluster(endpoints: Vec<WeightedEndpoint>) -> Cluster {
    // Round robin: each connection's first pick moves on, so both endpoints
    // are tried whatever the draw.
    let balancer = Balancer::RoundRobin(crate::balance::RoundRobin::new(&endpoints));
    Cluster {
        name: "redis".into(),
        destination: ("redis".into(), "default".into()),
        destination_identity: String::new(),
        protocol: Protocol::Http1,
        endpoints,
        retry_budget: BudgetConfig::DEFAULT,
        balancer,
        outlier: Some(OutlierConfig {
            consecutive_failures: 2,
            base_ejection_time: Duration::from_secs(30),
            max_ejection_time: Duration::from_secs(300),
            max_ejection_percent: 50,
        }),
        limits: crate::upstream::Limits::default(),
        concurrency: None,
        fault: None,
        target_port: None,
        state: Arc::default(),
    }
}

/// An address nothing listens on (a listener bound, then closed).
async fn refused() -> std::net::SocketAddr {
    TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap()
        .local_addr()
        .unwrap()
}

#[tokio::test]
async fn a_refused_endpoint_is_passed_over_and_then_ejected() {
    let live = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let live_addr = live.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = live.accept().await {
            tokio::spawn(async move {
                let _ = s.read(&mut [0u8; 8]).await;
            });
        }
    });
    let dead = plain(refused().await);
    let dead_endpoint = dead.endpoint.clone();
    let c = cluster(vec![dead, plain(live_addr)]);
    for _ in 0..4 {
        let connected = connect(&c, 6379, None).await.unwrap();
        assert_eq!(connected.endpoint, live_addr);
        assert!(connected.peer_identity.is_none());
    }
    let now = tokio::time::Instant::now();
    assert!(
        dead_endpoint.outlier().is_ejected(now),
        "two refusals eject"
    );
    assert_eq!(
        c.state
            .stats
            .ejections
            .load(std::sync::atomic::Ordering::Relaxed),
        1
    );
}

#[tokio::test]
async fn a_pinned_endpoint_is_the_only_one_tried() {
    let live = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let dead = plain(refused().await);
    let pinned = dead.endpoint.clone();
    let c = cluster(vec![dead, plain(live.local_addr().unwrap())]);
    let err = connect(&c, 6379, Some(&pinned)).await.err().unwrap();
    assert!(matches!(err, ConnectError::Io { .. }), "{err}");
}

#[tokio::test]
async fn an_empty_cluster_says_it_has_no_endpoint() {
    let c = cluster(vec![]);
    let err = connect(&c, 6379, None).await.err().unwrap();
    assert!(matches!(err, ConnectError::NoEndpoint(_)), "{err}");
}

#[tokio::test]
async fn every_endpoint_refusing_is_the_last_error() {
    let c = cluster(vec![plain(refused().await), plain(refused().await)]);
    let err = connect(&c, 6379, None).await.err().unwrap();
    assert!(matches!(err, ConnectError::Io { .. }), "{err}");
}

#[tokio::test]
async fn over_max_connections_a_connection_is_refused_until_one_ends() {
    let live = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let live_addr = live.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = live.accept().await {
            tokio::spawn(async move {
                let _ = s.read(&mut [0u8; 8]).await;
            });
        }
    });
    let mut c = cluster(vec![plain(live_addr)]);
    c.limits.max_connections = Some(2);
    let first = connect(&c, 6379, None).await.unwrap();
    let _second = connect(&c, 6379, None).await.unwrap();
    let err = connect(&c, 6379, None).await.err().unwrap();
    assert!(matches!(err, ConnectError::Overflow { .. }), "{err}");
    assert_eq!(
        err.to_string(),
        "overflow: redis.default: maxConnections (2) reached"
    );
    let n = |c: &std::sync::atomic::AtomicU64| c.load(std::sync::atomic::Ordering::Relaxed);
    assert_eq!(n(&c.state.stats.overflow_max_connections), 1);
    assert_eq!(
        n(&c.state.stats.ejections),
        0,
        "a refusal is not the endpoint's failure"
    );
    drop(first);
    assert!(
        connect(&c, 6379, None).await.is_ok(),
        "its place is free again"
    );
}

#[tokio::test]
async fn a_peer_proxy_is_told_the_target_port_when_the_cluster_has_one() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (told, mut heard) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            let told = told.clone();
            tokio::spawn(async move {
                let port = super::header::read(&mut s, Duration::from_secs(5)).await;
                let _ = told.send(port.ok());
            });
        }
    });
    // A meshed endpoint reached without a certificate: plaintext, header first.
    let peer = WeightedEndpoint {
        endpoint: Arc::new(Endpoint::new(addr, Transport::MeshH2)),
        weight: 1,
    };
    let mut c = cluster(vec![peer]);
    let _service_port = connect(&c, 6379, None).await.unwrap();
    assert_eq!(heard.recv().await, Some(Some(6379)), "no target: the port");
    c.target_port = Some(crate::upstream::TargetPort::new(16379));
    let _target_port = connect(&c, 6379, None).await.unwrap();
    assert_eq!(heard.recv().await, Some(Some(16379)));
}
