//! Which pods should have a proxy and don't: pods of a namespace labelled
//! `remora.io/inject=enabled`, and pods labelled so themselves, that have no
//! `remora-proxy` container (native sidecar or classic). Such a pod started
//! before injection was enabled, or while the webhook was bypassed; a restart
//! gives it the proxy.
//!
//! Labels, not annotations: they are what the webhook's selectors see. A pod
//! annotated `remora.io/inject: disabled`, one on the host's network (the
//! injector leaves both alone) and one that has finished or is being deleted
//! are not counted.

use std::collections::BTreeSet;

use k8s_openapi::api::core::v1::{Namespace, Pod};
use kube::api::ListParams;
use kube::{Api, Client, ResourceExt};

use super::{call, refusal, CheckError, Report};
use crate::inject::{INJECT, PROXY_NAME};

const ENABLED: &str = "enabled";

pub(super) async fn without_proxy(
    client: &Client,
    control_namespace: &str,
    report: &mut Report,
) -> Result<(), CheckError> {
    let selector = format!("{INJECT}={ENABLED}");
    let mut pods = Vec::new();

    let namespaces: Api<Namespace> = Api::all(client.clone());
    let opted_in = match call(
        "list namespaces",
        namespaces.list(&ListParams::default().labels(&selector)),
    )
    .await?
    {
        Ok(list) => list.items,
        Err(e) => {
            report.fail("pods", refusal(&e));
            return Ok(());
        }
    };
    for namespace in opted_in
        .iter()
        .filter(|n| labelled(n.labels()))
        .map(|n| n.name_any())
        .filter(|n| n != control_namespace)
    {
        let api: Api<Pod> = Api::namespaced(client.clone(), &namespace);
        match call("list pods", api.list(&ListParams::default())).await? {
            Ok(list) => pods.extend(list.items),
            Err(e) => report.fail(format!("pods of {namespace}"), refusal(&e)),
        }
    }
    let all: Api<Pod> = Api::all(client.clone());
    match call(
        "list labelled pods",
        all.list(&ListParams::default().labels(&selector)),
    )
    .await?
    {
        Ok(list) => pods.extend(list.items.into_iter().filter(|p| labelled(p.labels()))),
        Err(e) => report.fail("labelled pods", refusal(&e)),
    }

    let mut seen = BTreeSet::new();
    let mut checked = 0;
    let mut missing = 0;
    for pod in &pods {
        let namespace = pod.namespace().unwrap_or_default();
        if namespace == control_namespace
            || !seen.insert((namespace.clone(), pod.name_any()))
            || !should_have_proxy(pod)
        {
            continue;
        }
        checked += 1;
        if !has_proxy(pod) {
            missing += 1;
            report.fail(
                format!("pod {namespace}/{}{}", pod.name_any(), owner(pod)),
                format!("should have a proxy and has no {PROXY_NAME} container: it started before injection was enabled; restart it (kubectl -n {namespace} rollout restart deployment/NAME, or delete the pod)"),
            );
        }
    }
    if missing == 0 {
        report.ok(
            "pods",
            format!("all {checked} pod(s) that should have a proxy have one"),
        );
    }
    Ok(())
}

fn labelled(labels: &std::collections::BTreeMap<String, String>) -> bool {
    labels.get(INJECT).is_some_and(|v| v == ENABLED)
}

/// Whether the injector would have given `pod` a proxy.
pub(super) fn should_have_proxy(pod: &Pod) -> bool {
    let disabled = pod
        .annotations()
        .get(INJECT)
        .is_some_and(|v| v == "disabled")
        || pod.labels().get(INJECT).is_some_and(|v| v == "disabled");
    let host_network = pod
        .spec
        .as_ref()
        .and_then(|s| s.host_network)
        .unwrap_or(false);
    let finished = pod
        .status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .is_some_and(|p| p == "Succeeded" || p == "Failed");
    let terminating = pod.metadata.deletion_timestamp.is_some();
    !disabled && !host_network && !finished && !terminating
}

/// A `remora-proxy` container, or init container (the native sidecar).
pub(super) fn has_proxy(pod: &Pod) -> bool {
    pod.spec.as_ref().is_some_and(|spec| {
        spec.containers
            .iter()
            .chain(spec.init_containers.iter().flatten())
            .any(|c| c.name == PROXY_NAME)
    })
}

/// ` (ReplicaSet orders-5d8f)`, or nothing for a bare pod.
fn owner(pod: &Pod) -> String {
    pod.owner_references()
        .first()
        .map(|o| format!(" ({} {})", o.kind, o.name))
        .unwrap_or_default()
}
