//! Request mirroring (HTTPRoute `RequestMirror`, Envoy `request_mirror_policies`):
//! once the real request has its answer, a copy goes to each mirror cluster in a
//! task of its own, with `-shadow` appended to the authority, and its answer is
//! dropped. A mirror never delays or fails the real request: it starts after it,
//! owns nothing the real request needs, and gives up after a few seconds. A body is
//! mirrored only if it ended within the replay limit: it is recorded as it streams
//! (the retry layer replays the same recording).
//!
//! Below the concurrency limit: a request the cluster refused is not mirrored.
//! Above the timeout: a request that timed out is mirrored as any other.

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::future::{Either, FutureExt};
use http::uri::Authority;
use http::{Request, Response};
use http_body::Body;
use http_body_util::BodyExt;

use super::endpoint::{send_to, shape};
use super::service::{Routed, Serve};
use crate::http::ResponseBody;
use crate::resilience::fault::Share;
use crate::resilience::retry::REPLAY_LIMIT;
use crate::snapshot::{RoutePolicy, Target};
use crate::upstream::{Cluster, ClusterStats, Recorded, RequestBody};

/// How long a mirrored request may take before it is dropped.
const MIRROR_TIMEOUT: Duration = Duration::from_secs(5);

pub struct MirrorLayer;

impl<S> tower::Layer<S> for MirrorLayer {
    type Service = Mirror<S>;

    fn layer(&self, inner: S) -> Mirror<S> {
        Mirror { inner }
    }
}

pub struct Mirror<S> {
    inner: S,
}

impl<'a, S> Serve<Routed<'a>> for Mirror<S>
where
    S: for<'r> Serve<Routed<'r>, Response = Response<ResponseBody>>,
{
    type Response = Response<ResponseBody>;

    fn call(&self, mut routed: Routed<'a>) -> impl Future<Output = Response<ResponseBody>> + Send {
        let mirrors = draw(routed.policy);
        if mirrors.is_empty() {
            return Either::Left(self.inner.call(routed));
        }
        let req = &routed.req;
        let mut head = Request::new(());
        *head.method_mut() = req.method().clone();
        *head.uri_mut() = req.uri().clone();
        *head.version_mut() = req.version();
        *head.headers_mut() = req.headers().clone();
        let head = head.into_parts().0;
        let recorded = Recorded::new(REPLAY_LIMIT);
        let empty = req.body().is_end_stream();
        if !empty {
            let recording = recorded.clone();
            routed.req = routed.req.map(|body| match body {
                RequestBody::Streaming(body) => RequestBody::Recording(body, recording),
                other => other,
            });
        }
        let authority = routed.authority.clone();
        Either::Right(self.inner.call(routed).map(move |response| {
            spawn(mirrors, head, recorded, empty, authority);
            response
        }))
    }
}

/// The clusters this request is copied to, each drawn with its share.
fn draw(policy: &RoutePolicy) -> Vec<Arc<Cluster>> {
    policy
        .mirrors
        .iter()
        .filter(|(_, share)| rand::random_range(0..Share::MILLION) < *share)
        .filter_map(|(target, _)| match target {
            Target::Cluster(c) => Some(c.clone()),
            Target::Missing(_) => None,
        })
        .collect()
}

fn spawn(
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
        let target = cluster.target_port.as_ref();
        if shape(&endpoint, &mut parts, &shadow, head.version, target).is_err() {
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
