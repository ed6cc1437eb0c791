//! The writer's rounds, with paused time and a fake API server: a failed
//! round is planned again after a backoff, a 409 from the newer object.

use std::sync::Mutex;

use serde_json::{json, Value};
use tokio::time::Instant;

use super::*;
use crate::kubernetes::compact::{Compact, ObjectRef};
use crate::kubernetes::kinds::{Watched, CONTROLLER_NAME};

type Seen = Arc<Mutex<Vec<(Instant, StatusWrite)>>>;

fn at() -> ObjectRef {
    ObjectRef {
        namespace: "shop".into(),
        name: "split".into(),
    }
}

fn route(version: &str, status: Option<Value>) -> Compact {
    let mut route = Compact::new(
        json!({
            "apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute",
            "metadata": {"name": "split", "namespace": "shop", "generation": 1},
            "spec": {"parentRefs": [{"group": "", "kind": "Service", "name": "orders"}]},
        }),
        Some(1),
        status,
    );
    route.resource_version = Some(version.into());
    route
}

fn no_problems() -> Option<Arc<[Problem]>> {
    Some(Arc::from(Vec::<Problem>::new()))
}

/// Waits (in paused time) until `n` writes were tried.
async fn tried(seen: &Seen, n: usize) {
    while seen.lock().unwrap().len() < n {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn gaps(seen: &Seen) -> Vec<Duration> {
    let seen = seen.lock().unwrap();
    seen.windows(2).map(|w| w[1].0 - w[0].0).collect()
}

/// Where the writer's problems come from.
type Problems = watch::Sender<Option<Arc<[Problem]>>>;

/// A writer task whose API server answers with `answer(attempt, write)`.
fn writer(
    caches: &Arc<Caches>,
    mut answer: impl FnMut(usize, &StatusWrite) -> Outcome + Send + 'static,
) -> (Problems, Seen, JoinHandle<()>) {
    let (tx, rx) = watch::channel(None);
    let seen: Seen = Arc::default();
    let log = Arc::clone(&seen);
    let task = tokio::spawn(run(Arc::clone(caches), rx, move |w: StatusWrite| {
        let mut log = log.lock().unwrap();
        let outcome = answer(log.len(), &w);
        log.push((Instant::now(), w));
        std::future::ready(outcome)
    }));
    (tx, seen, task)
}

#[tokio::test(start_paused = true)]
async fn a_failed_round_is_planned_again_after_a_doubling_backoff_without_a_change() {
    let caches = Arc::new(Caches::default());
    caches.apply(Watched::HttpRoute, at(), route("1", None));
    let (tx, seen, task) = writer(&caches, |attempt, _| {
        if attempt < 7 {
            Outcome::Failed
        } else {
            Outcome::Written(Some("2".into()))
        }
    });
    tx.send_replace(no_problems());
    tried(&seen, 8).await;
    let secs = |s| Duration::from_secs(s);
    assert_eq!(
        gaps(&seen),
        [
            secs(1),
            secs(2),
            secs(4),
            secs(8),
            secs(16),
            secs(30),
            secs(30)
        ]
    );

    // Written: nothing more to do, no more rounds.
    tokio::time::sleep(Duration::from_secs(300)).await;
    assert_eq!(seen.lock().unwrap().len(), 8);
    let status = caches.read(|k| k[&Watched::HttpRoute][&at()].clone());
    assert_eq!(status.resource_version.as_deref(), Some("2"));
    assert!(status.status.is_some());
    task.abort();
}

#[tokio::test(start_paused = true)]
async fn new_problems_are_a_round_at_once_even_during_a_backoff() {
    let caches = Arc::new(Caches::default());
    caches.apply(Watched::HttpRoute, at(), route("1", None));
    let (tx, seen, task) = writer(&caches, |attempt, _| {
        if attempt == 0 {
            Outcome::Failed
        } else {
            Outcome::Written(None)
        }
    });
    tx.send_replace(no_problems());
    tried(&seen, 1).await;
    tx.send_replace(no_problems());
    tried(&seen, 2).await;
    assert!(gaps(&seen)[0] < FIRST_RETRY, "{:?}", gaps(&seen));
    task.abort();
}

#[tokio::test(start_paused = true)]
async fn a_conflict_is_planned_again_from_the_newer_object_keeping_others_entries() {
    let caches = Arc::new(Caches::default());
    caches.apply(Watched::HttpRoute, at(), route("1", None));
    let theirs = json!({"controllerName": "example.com/gateway", "parentRef": {"name": "gw"}});
    let watcher = Arc::clone(&caches);
    let newer = theirs.clone();
    let (tx, seen, task) = writer(&caches, move |attempt, _| {
        if attempt == 0 {
            // Another controller wrote meanwhile; the watch brings its write.
            let object = route("2", Some(json!([newer.clone()])));
            watcher.apply(Watched::HttpRoute, at(), object);
            Outcome::Conflict
        } else {
            Outcome::Written(Some("3".into()))
        }
    });
    tx.send_replace(no_problems());
    tried(&seen, 2).await;
    let seen = seen.lock().unwrap();
    let (first, second) = (&seen[0].1, &seen[1].1);
    assert_eq!(first.patch["metadata"]["resourceVersion"], "1");
    assert_eq!(second.patch["metadata"]["resourceVersion"], "2");
    let parents = second.patch["status"]["parents"].as_array().unwrap();
    assert_eq!(parents[0], theirs);
    assert_eq!(parents[1]["controllerName"], CONTROLLER_NAME);
    task.abort();
}
