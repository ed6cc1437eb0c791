//! The CA's Secret: where the control plane keeps the CA it makes, so that
//! a restarted control plane is still trusted by the proxies.

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Secret;
use kube::{Api, Client};

use super::install::DEPLOYMENT;
use super::{call, refusal, CheckError, Report};
use crate::kubernetes::ca_secret::{parse, SECRET_NAME};

/// OK when the Secret holds a CA the control plane accepts; FAIL when it
/// would refuse to start with it; WARN when it is not there yet. Not looked
/// at when the Deployment gives an operator's CA.
pub(super) async fn secret(
    client: &Client,
    namespace: &str,
    report: &mut Report,
) -> Result<(), CheckError> {
    let name = format!("{namespace}/{SECRET_NAME}");
    let subject = format!("secret {name}");
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), namespace);
    // The Deployment's own item says when it cannot be read.
    if let Ok(Some(deployment)) =
        call("get the Deployment", deployments.get_opt(DEPLOYMENT)).await?
    {
        if gives_ca_cert(&deployment) {
            report.ok(
                subject,
                "not used: the Deployment gives an operator's CA (--ca-cert)",
            );
            return Ok(());
        }
    }
    let secrets: Api<Secret> = Api::namespaced(client.clone(), namespace);
    match call("get the CA's Secret", secrets.get_opt(SECRET_NAME)).await? {
        Ok(Some(found)) => match parse(&found, &name) {
            Ok(_) => report.ok(subject, "holds the control plane's CA (ca.crt, ca.key)"),
            Err(e) => report.fail(
                subject,
                format!("the control plane will not start: {}", crate::Chain(&e)),
            ),
        },
        Ok(None) => report.warn(
            subject,
            "not found: made by the control plane at first start (it keeps its CA there, so proxies trust it after a restart)",
        ),
        Err(e) => report.fail(subject, refusal(&e)),
    }
    Ok(())
}

/// Whether a container of the Deployment runs with `--ca-cert`.
pub(super) fn gives_ca_cert(deployment: &Deployment) -> bool {
    deployment
        .spec
        .iter()
        .flat_map(|spec| spec.template.spec.iter())
        .flat_map(|pod| pod.containers.iter())
        .flat_map(|c| c.command.iter().flatten().chain(c.args.iter().flatten()))
        .any(|arg| arg == "--ca-cert" || arg.starts_with("--ca-cert="))
}
