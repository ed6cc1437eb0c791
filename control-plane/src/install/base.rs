//! The files of `deploy/base`, built into the binary, and the order the
//! kustomization lists them in.

use serde::Deserialize;

use super::InstallError;

/// The kustomization: its `resources` give the order of the documents.
pub(super) const KUSTOMIZATION: &str = include_str!("../../../deploy/base/kustomization.yaml");

/// Every file the kustomization may list, by its name there.
pub(super) const FILES: &[(&str, &str)] = &[
    (
        "namespace.yaml",
        include_str!("../../../deploy/base/namespace.yaml"),
    ),
    ("crds.yaml", include_str!("../../../deploy/base/crds.yaml")),
    (
        "serviceaccount.yaml",
        include_str!("../../../deploy/base/serviceaccount.yaml"),
    ),
    ("rbac.yaml", include_str!("../../../deploy/base/rbac.yaml")),
    (
        "service.yaml",
        include_str!("../../../deploy/base/service.yaml"),
    ),
    (
        "deployment.yaml",
        include_str!("../../../deploy/base/deployment.yaml"),
    ),
    (
        "webhook.yaml",
        include_str!("../../../deploy/base/webhook.yaml"),
    ),
];

/// The namespace the base files are written for (`namespace:` of the
/// kustomization, and written out in every file as kustomize would set it).
pub(super) const BASE_NAMESPACE: &str = "remora-system";

#[derive(Deserialize)]
struct Kustomization {
    namespace: String,
    resources: Vec<String>,
}

/// The files' texts in the kustomization's order.
pub(super) fn in_order() -> Result<Vec<(&'static str, &'static str)>, InstallError> {
    let kustomization: Kustomization =
        serde_yaml_ng::from_str(KUSTOMIZATION).map_err(|e| InstallError::Kustomization {
            message: e.to_string(),
        })?;
    if kustomization.namespace != BASE_NAMESPACE {
        return Err(InstallError::Kustomization {
            message: format!(
                "namespace is {}, the files are written for {BASE_NAMESPACE}",
                kustomization.namespace
            ),
        });
    }
    kustomization
        .resources
        .iter()
        .map(|name| {
            FILES
                .iter()
                .find(|(file, _)| file == name)
                .copied()
                .ok_or_else(|| InstallError::NotEmbedded { file: name.clone() })
        })
        .collect()
}
