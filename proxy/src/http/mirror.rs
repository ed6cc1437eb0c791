//! Request mirroring (HTTPRoute `RequestMirror`, Envoy `request_mirror_policies`):
//! once the real request has its answer, a copy goes to each mirror cluster in a
//! task of its own, with `-shadow` appended to the authority, and its answer is
//! dropped. A mirror never delays or fails the real request: it starts after it,
//! owns nothing the real request needs, and gives up after a few seconds. A body is
//! mirrored only if it ended within the replay limit.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use http::uri::Authority;
use http::Request;
use http_body_util::BodyExt;

use super::outbound::{send_to, shape};
use crate::upstream::{Cluster, ClusterStats, Recorded, RequestBody};

/// How long a mirrored request may take before it is dropped.
const MIRROR_TIMEOUT: Duration = Duration::from_secs(5);

pub fn spawn(
    mirrors: Vec<Arc<Cluster>>,
    head: http::request::Parts,
    recorded: Arc<Mutex<Recorded>>,
    empty: bool,
    authority: Authority,
) {
    let body = if empty {
        Some(None)
    } else {
        Recorded::replay(&recorded).map(Some)
    };
    let Some(body) = body else {
        for cluster in &mirrors {
            ClusterStats::count(&cluster.state.stats.mirror_skipped);
        }
        tracing::debug!("not mirrored: the body was too large or still streaming");
        return;
    };
    let shadow = Authority::try_from(format!("{}-shadow", authority.host()))
        .unwrap_or_else(|_| authority.clone());
    for cluster in mirrors {
        let Some(chosen) = cluster.pick(None) else {
            continue;
        };
        let endpoint = chosen.endpoint.clone();
        let mut req = Request::new(match &body {
            None => RequestBody::empty(),
            Some(replay) => RequestBody::Replay(replay.clone()),
        });
        *req.method_mut() = head.method.clone();
        *req.uri_mut() = head.uri.clone();
        *req.version_mut() = head.version;
        *req.headers_mut() = head.headers.clone();
        let (mut parts, body) = req.into_parts();
        if shape(&endpoint, &mut parts, &shadow, head.version).is_err() {
            continue;
        }
        ClusterStats::count(&cluster.state.stats.mirrored);
        let version = head.version;
        tokio::spawn(async move {
            let sent = send_to(&endpoint, Request::from_parts(parts, body), version);
            match tokio::time::timeout(MIRROR_TIMEOUT, sent).await {
                Ok(Ok(response)) => {
                    // Read the answer to the end so the connection can be reused.
                    let _ = response.into_body().collect().await;
                }
                Ok(Err(error)) => tracing::debug!(cluster = %cluster.name, %error, "mirror failed"),
                Err(_) => tracing::debug!(cluster = %cluster.name, "mirror timed out"),
            }
        });
    }
}
