//! The installation: what `remora install` creates, and whether it works.

use k8s_openapi::api::admissionregistration::v1::{MutatingWebhook, MutatingWebhookConfiguration};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Namespace, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::ListParams;
use kube::{Api, Client};

use super::{call, refusal, CheckError, Report};

/// Remora's own kinds, and the version the control plane reads.
pub(super) const CRDS: [&str; 3] = [
    "meshtlses.policy.remora.dev",
    "authorizationpolicies.policy.remora.dev",
    "trafficpolicies.policy.remora.dev",
];
const CRD_VERSION: &str = "v1alpha1";
/// HTTPRoute comes with the Gateway API, which `remora install` does not ship.
pub(super) const HTTPROUTE_CRD: &str = "httproutes.gateway.networking.k8s.io";
const GATEWAY_API_INSTALL: &str = "kubectl apply --server-side -f https://github.com/kubernetes-sigs/gateway-api/releases/download/v1.3.0/standard-install.yaml";
const INSTALL: &str = "remora install | kubectl apply -f -";

/// The names `remora install` gives.
pub(super) const DEPLOYMENT: &str = "remora";
pub(super) const SERVICES: [&str; 2] = ["remora", "remora-webhook"];
pub(super) const WEBHOOK_CONFIGURATION: &str = "remora-injector";
const WEBHOOK_SERVICE: &str = "remora-webhook";

pub(super) async fn crds(client: &Client, report: &mut Report) -> Result<(), CheckError> {
    let api: Api<CustomResourceDefinition> = Api::all(client.clone());
    for name in CRDS {
        let subject = format!("CRD {name}");
        match call(&format!("get CRD {name}"), api.get_opt(name)).await? {
            Ok(Some(crd)) if serves(&crd, CRD_VERSION) => {
                report.ok(subject, format!("installed, serves {CRD_VERSION}"))
            }
            Ok(Some(_)) => report.fail(
                subject,
                format!("does not serve {CRD_VERSION}, which this control plane reads: {INSTALL}"),
            ),
            Ok(None) => report.fail(subject, format!("not installed: {INSTALL}")),
            Err(e) => report.fail(subject, refusal(&e)),
        }
    }
    let subject = format!("CRD {HTTPROUTE_CRD}");
    match call("get the HTTPRoute CRD", api.get_opt(HTTPROUTE_CRD)).await? {
        Ok(Some(crd)) if serves(&crd, "v1") => report.ok(subject, "installed, serves v1"),
        Ok(Some(_)) => report.warn(
            subject,
            format!("does not serve v1: install a newer Gateway API: {GATEWAY_API_INSTALL}"),
        ),
        Ok(None) => report.warn(
            subject,
            format!("not installed: no HTTPRoute can be used until the Gateway API is: {GATEWAY_API_INSTALL}"),
        ),
        Err(e) => report.fail(subject, refusal(&e)),
    }
    Ok(())
}

fn serves(crd: &CustomResourceDefinition, version: &str) -> bool {
    crd.spec
        .versions
        .iter()
        .any(|v| v.name == version && v.served)
}

/// The namespace, the Deployment's available replicas, the Services and
/// their ready endpoints.
pub(super) async fn control_plane(
    client: &Client,
    namespace: &str,
    report: &mut Report,
) -> Result<(), CheckError> {
    let subject = format!("namespace {namespace}");
    let namespaces: Api<Namespace> = Api::all(client.clone());
    match call("get the namespace", namespaces.get_opt(namespace)).await? {
        Ok(Some(_)) => report.ok(subject, "exists"),
        Ok(None) => {
            report.fail(
                subject,
                format!("not found: {INSTALL} (or give --namespace)"),
            );
            return Ok(());
        }
        Err(e) => report.fail(subject, refusal(&e)),
    }

    let subject = format!("deployment {namespace}/{DEPLOYMENT}");
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), namespace);
    match call("get the Deployment", deployments.get_opt(DEPLOYMENT)).await? {
        Ok(Some(deployment)) => {
            let wanted = deployment.spec.and_then(|s| s.replicas).unwrap_or(1);
            let available = deployment
                .status
                .and_then(|s| s.available_replicas)
                .unwrap_or(0);
            if available > 0 {
                report.ok(subject, format!("{available}/{wanted} replicas available"));
            } else {
                report.fail(
                    subject,
                    format!("{available}/{wanted} replicas available: kubectl -n {namespace} describe deployment {DEPLOYMENT}"),
                );
            }
        }
        Ok(None) => report.fail(subject, format!("not found: {INSTALL}")),
        Err(e) => report.fail(subject, refusal(&e)),
    }

    let services: Api<Service> = Api::namespaced(client.clone(), namespace);
    let slices: Api<EndpointSlice> = Api::namespaced(client.clone(), namespace);
    for name in SERVICES {
        let subject = format!("service {namespace}/{name}");
        match call("get a Service", services.get_opt(name)).await? {
            Ok(Some(_)) => {}
            Ok(None) => {
                report.fail(subject, format!("not found: {INSTALL}"));
                continue;
            }
            Err(e) => {
                report.fail(subject, refusal(&e));
                continue;
            }
        }
        let selector = format!("kubernetes.io/service-name={name}");
        let listed = call(
            "list EndpointSlices",
            slices.list(&ListParams::default().labels(&selector)),
        )
        .await?;
        match listed {
            Ok(list) => {
                let ready = ready_endpoints(&list.items, name);
                if ready > 0 {
                    report.ok(subject, format!("{ready} ready endpoint(s)"));
                } else {
                    report.fail(
                        subject,
                        "no ready endpoint: the control plane's pod is not running or not ready",
                    );
                }
            }
            Err(e) => report.fail(subject, refusal(&e)),
        }
    }
    Ok(())
}

/// Endpoints of `service`'s slices that are ready (an unknown readiness
/// counts as ready, as the API says consumers should take it).
fn ready_endpoints(slices: &[EndpointSlice], service: &str) -> usize {
    slices
        .iter()
        .filter(|s| {
            s.metadata
                .labels
                .as_ref()
                .and_then(|l| l.get("kubernetes.io/service-name"))
                .is_some_and(|n| n == service)
        })
        .flat_map(|s| &s.endpoints)
        .filter(|e| e.conditions.as_ref().and_then(|c| c.ready) != Some(false))
        .count()
}

/// The injector's configuration: present, each webhook calling this
/// namespace's service with a caBundle, and its failure policy.
pub(super) async fn webhook(
    client: &Client,
    namespace: &str,
    report: &mut Report,
) -> Result<(), CheckError> {
    let api: Api<MutatingWebhookConfiguration> = Api::all(client.clone());
    let subject = format!("mutatingwebhookconfiguration {WEBHOOK_CONFIGURATION}");
    let configuration = match call(
        "get the MutatingWebhookConfiguration",
        api.get_opt(WEBHOOK_CONFIGURATION),
    )
    .await?
    {
        Ok(Some(c)) => c,
        Ok(None) => {
            report.fail(
                subject,
                format!("not found: no pod is injected at admission: {INSTALL}"),
            );
            return Ok(());
        }
        Err(e) => {
            report.fail(subject, refusal(&e));
            return Ok(());
        }
    };
    let hooks = configuration.webhooks.unwrap_or_default();
    if hooks.is_empty() {
        report.fail(subject, format!("has no webhook: {INSTALL}"));
    }
    for hook in &hooks {
        judge_webhook(hook, namespace, report);
    }
    Ok(())
}

pub(super) fn judge_webhook(hook: &MutatingWebhook, namespace: &str, report: &mut Report) {
    let subject = format!("webhook {}", hook.name);
    let config = &hook.client_config;
    let service = config
        .service
        .as_ref()
        .map(|s| format!("{}/{}", s.namespace, s.name));
    let expected = format!("{namespace}/{WEBHOOK_SERVICE}");
    if service.as_deref() != Some(expected.as_str()) {
        report.fail(
            subject,
            format!(
                "calls {} instead of the service {expected}",
                service.or_else(|| config.url.clone()).unwrap_or_default()
            ),
        );
        return;
    }
    if config.ca_bundle.as_ref().is_none_or(|b| b.0.is_empty()) {
        report.fail(
            subject,
            format!("no caBundle: the control plane writes it when it starts (is it running? kubectl -n {namespace} logs deploy/{DEPLOYMENT})"),
        );
        return;
    }
    match hook.failure_policy.as_deref().unwrap_or("Fail") {
        "Fail" => report.ok(subject, format!("caBundle set, failurePolicy Fail, calls {expected}")),
        other => report.warn(
            subject,
            format!("failurePolicy {other}: pods that should be injected start without a proxy while the webhook is down"),
        ),
    }
}
