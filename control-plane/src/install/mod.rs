//! `remora install`: the manifests that install Remora on a cluster, the same
//! as `kubectl kustomize deploy/base` renders (like `linkerd install`).
//!
//! The files of `deploy/base` are built into the binary and printed in the
//! kustomization's order, as written (comments included), so what an operator
//! reads in the repository is what the command prints. The base already
//! carries `namespace: remora-system` on every namespaced object, as the
//! kustomization's namespace transformer would set it; the options change
//! only what they name:
//!
//! - `namespace`: the namespace object, every `metadata.namespace`, the
//!   webhook's service reference and its exclusion of the control plane's own
//!   namespace, the xDS server name in the control plane's certificate and the
//!   role binding's subject: every `remora-system` in the files.
//! - `image` / `proxy_image`: the control plane's container image, and the
//!   image the injector puts in pods.
//!
//! Both are checked first (a label; an image reference without spaces or YAML
//! punctuation), so no option can add YAML of its own to the output.
//!
//! Not here: applying the manifests (`remora install | kubectl apply -f -`),
//! checking an installation (`remora check --kubernetes`).

mod base;

#[cfg(test)]
mod tests;

/// What `remora install` may change in the base.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InstallOptions {
    /// Where the control plane runs (and which namespace is never injected).
    pub namespace: String,
    /// The control plane's image.
    pub image: String,
    /// The sidecar's image, given to the injector.
    pub proxy_image: String,
}

impl InstallOptions {
    /// The defaults for this build: `remora-system`, `remora:VERSION` and
    /// `remora-proxy:VERSION`: what `deploy/base` holds.
    pub fn new(version: &str) -> Self {
        Self {
            namespace: base::BASE_NAMESPACE.to_owned(),
            image: format!("remora:{version}"),
            proxy_image: format!("remora-proxy:{version}"),
        }
    }
}

#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum InstallError {
    #[error("--namespace `{namespace}`: {reason}")]
    Namespace { namespace: String, reason: String },
    #[error("{flag} `{image}`: not an image reference (letters, digits and . _ - / : @ only, starting with a letter or digit)")]
    Image { flag: &'static str, image: String },
    #[error("deploy/base/kustomization.yaml (built in): {message}")]
    Kustomization { message: String },
    #[error("deploy/base/kustomization.yaml lists {file}, which is not built into this binary")]
    NotEmbedded { file: String },
    #[error("deploy/base: expected exactly one {what}, found {found}")]
    Marker { what: &'static str, found: usize },
}

/// The manifests, one YAML stream, documents in the kustomization's order.
pub fn render(options: &InstallOptions) -> Result<String, InstallError> {
    check_namespace(&options.namespace)?;
    check_image("--image", &options.image)?;
    check_image("--proxy-image", &options.proxy_image)?;
    let mut images = 0;
    let mut proxy_images = 0;
    let mut out = String::new();
    for (_, text) in base::in_order()? {
        if !out.is_empty() {
            out.push_str("---\n");
        }
        let text = text.replace(base::BASE_NAMESPACE, &options.namespace);
        let mut previous = "";
        for line in text.lines() {
            let trimmed = line.trim_start();
            let indent = &line[..line.len() - trimmed.len()];
            if trimmed.starts_with("image: remora:") {
                images += 1;
                out.push_str(&format!("{indent}image: {}\n", options.image));
            } else if previous.trim() == "- name: REMORA_PROXY_IMAGE"
                && trimmed.starts_with("value: ")
            {
                proxy_images += 1;
                out.push_str(&format!("{indent}value: {}\n", options.proxy_image));
            } else {
                out.push_str(line);
                out.push('\n');
            }
            previous = line;
        }
    }
    for (what, found) in [
        ("`image: remora:...` line", images),
        ("REMORA_PROXY_IMAGE value", proxy_images),
    ] {
        if found != 1 {
            return Err(InstallError::Marker { what, found });
        }
    }
    Ok(out)
}

/// A DNS-1123 label, as Kubernetes requires of a namespace.
fn check_namespace(namespace: &str) -> Result<(), InstallError> {
    let reason = if namespace.is_empty() || namespace.len() > 63 {
        Some("must be 1 to 63 characters")
    } else if !namespace
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    {
        Some("may hold only lower-case letters, digits and -")
    } else if namespace.starts_with('-') || namespace.ends_with('-') {
        Some("must start and end with a letter or digit")
    } else {
        None
    };
    match reason {
        None => Ok(()),
        Some(reason) => Err(InstallError::Namespace {
            namespace: namespace.to_owned(),
            reason: reason.to_owned(),
        }),
    }
}

fn check_image(flag: &'static str, image: &str) -> Result<(), InstallError> {
    let ok = image.len() <= 512
        && image.starts_with(|c: char| c.is_ascii_alphanumeric())
        && image
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-/:@".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(InstallError::Image {
            flag,
            image: image.to_owned(),
        })
    }
}
