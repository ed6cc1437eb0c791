//! The API server must trust the webhook's certificate: the
//! MutatingWebhookConfiguration `remora-injector` carries the mesh CA's trust
//! bundle in each webhook's `clientConfig.caBundle`. The manifests cannot
//! know it (the CA is made on first start), so the control plane writes it:
//! it watches that one configuration and patches every webhook whose bundle
//! differs, at start, when the configuration is (re)created, and whenever
//! someone changes it. A missing configuration is a warning: the control
//! plane works without injection.

use futures::StreamExt;
use k8s_openapi::api::admissionregistration::v1::MutatingWebhookConfiguration;
use k8s_openapi::ByteString;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::watcher::Event;
use kube::runtime::{watcher, WatchStreamExt};
use tokio::sync::watch;

use crate::signal::stopped;

/// The configuration `remora install` creates.
pub const WEBHOOK_CONFIGURATION: &str = "remora-injector";

/// The JSONPatch that sets `bundle` (PEM) as the `caBundle` of every webhook
/// of `config` that has another (or none); `None` when all are right.
pub fn bundle_patch(
    config: &MutatingWebhookConfiguration,
    bundle: &str,
) -> Option<json_patch::Patch> {
    // `caBundle` is base64 on the wire; k8s-openapi's ByteString writes it so.
    let value = serde_json::to_value(ByteString(bundle.as_bytes().to_vec())).ok()?;
    let ops: Vec<json_patch::PatchOperation> = config
        .webhooks
        .iter()
        .flatten()
        .enumerate()
        .filter(|(_, webhook)| {
            webhook
                .client_config
                .ca_bundle
                .as_ref()
                .map(|b| b.0.as_slice())
                != Some(bundle.as_bytes())
        })
        .map(|(index, _)| {
            json_patch::PatchOperation::Add(json_patch::AddOperation {
                path: json_patch::jsonptr::PointerBuf::from_tokens([
                    "webhooks".to_owned(),
                    index.to_string(),
                    "clientConfig".to_owned(),
                    "caBundle".to_owned(),
                ]),
                value: value.clone(),
            })
        })
        .collect();
    (!ops.is_empty()).then_some(json_patch::Patch(ops))
}

/// Keeps `remora-injector`'s bundles equal to `bundle` until `shutdown`.
pub(super) async fn keep(
    client: kube::Client,
    bundle: String,
    mut shutdown: watch::Receiver<bool>,
) {
    let api: Api<MutatingWebhookConfiguration> = Api::all(client);
    // A field selector keeps the watch to the one object; the name is
    // checked again below in case a server ignores the selector.
    let config =
        watcher::Config::default().fields(&format!("metadata.name={WEBHOOK_CONFIGURATION}"));
    let mut events = watcher(api.clone(), config).default_backoff().boxed();
    let mut seen = false;
    let mut listing = false;
    loop {
        let event = tokio::select! {
            event = events.next() => event,
            _ = stopped(&mut shutdown) => return,
        };
        let config = match event {
            None => return,
            Some(Err(error)) => {
                tracing::warn!(%error, configuration = WEBHOOK_CONFIGURATION, "cannot watch the webhook configuration; retrying");
                continue;
            }
            Some(Ok(Event::Init)) => {
                (listing, seen) = (true, false);
                continue;
            }
            Some(Ok(Event::InitDone)) => {
                if listing && !seen {
                    tracing::warn!(configuration = WEBHOOK_CONFIGURATION, "MutatingWebhookConfiguration not found: pods are not injected until it exists (remora install creates it); its caBundle is written when it appears");
                }
                listing = false;
                continue;
            }
            Some(Ok(Event::Delete(_))) => {
                tracing::warn!(
                    configuration = WEBHOOK_CONFIGURATION,
                    "MutatingWebhookConfiguration deleted: pods are not injected"
                );
                continue;
            }
            Some(Ok(Event::Apply(config) | Event::InitApply(config))) => config,
        };
        if config.metadata.name.as_deref() != Some(WEBHOOK_CONFIGURATION) {
            continue;
        }
        seen = true;
        let Some(patch) = bundle_patch(&config, &bundle) else {
            continue;
        };
        let webhooks = patch.0.len();
        match api
            .patch(
                WEBHOOK_CONFIGURATION,
                &PatchParams::default(),
                &Patch::Json::<()>(patch),
            )
            .await
        {
            Ok(_) => tracing::info!(
                configuration = WEBHOOK_CONFIGURATION,
                webhooks,
                "caBundle set to the mesh CA's trust bundle"
            ),
            // The watch sees the configuration again on its next change or
            // relist, and tries again then.
            Err(error) => {
                tracing::warn!(configuration = WEBHOOK_CONFIGURATION, %error, "cannot set the caBundle")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn base64(pem: &str) -> serde_json::Value {
        serde_json::to_value(ByteString(pem.as_bytes().to_vec())).unwrap()
    }

    fn config(bundles: &[Option<&str>]) -> MutatingWebhookConfiguration {
        let webhooks: Vec<serde_json::Value> = bundles
            .iter()
            .enumerate()
            .map(|(i, bundle)| {
                let mut client = json!({"url": "https://127.0.0.1:8443/inject"});
                if let Some(pem) = bundle {
                    client["caBundle"] = base64(pem);
                }
                json!({
                    "name": format!("inject{i}.remora.io"),
                    "admissionReviewVersions": ["v1"],
                    "sideEffects": "None",
                    "clientConfig": client,
                })
            })
            .collect();
        serde_json::from_value(json!({
            "apiVersion": "admissionregistration.k8s.io/v1",
            "kind": "MutatingWebhookConfiguration",
            "metadata": {"name": WEBHOOK_CONFIGURATION},
            "webhooks": webhooks,
        }))
        .unwrap()
    }

    #[test]
    fn every_webhook_without_the_bundle_is_patched_and_then_none() {
        let before = config(&[None, Some("PEM"), Some("OLD")]);
        let patch = bundle_patch(&before, "PEM").unwrap();
        assert_eq!(
            serde_json::to_value(&patch).unwrap(),
            json!([
                {"op": "add", "path": "/webhooks/0/clientConfig/caBundle", "value": base64("PEM")},
                {"op": "add", "path": "/webhooks/2/clientConfig/caBundle", "value": base64("PEM")},
            ])
        );
        let mut after = serde_json::to_value(&before).unwrap();
        json_patch::patch(&mut after, &patch).unwrap();
        let after: MutatingWebhookConfiguration = serde_json::from_value(after).unwrap();
        assert!(bundle_patch(&after, "PEM").is_none(), "nothing left to do");
        assert!(bundle_patch(&config(&[]), "PEM").is_none());
    }
}
