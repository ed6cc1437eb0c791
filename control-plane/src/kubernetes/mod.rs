//! Kubernetes: the control plane as a cluster's mesh. A source that watches the
//! cluster's Services, EndpointSlices, Pods (what the mesh needs of them),
//! Namespaces, HTTPRoutes and Remora's CRDs and turns them into the same
//! documents and endpoints as the file mode; status written back; proxies'
//! service-account tokens checked with TokenReview.
//!
//! Not here: what the documents mean ([`crate::validate`]), sidecar injection
//! ([`crate::inject`]).

mod client; // the API client: in-cluster config, or a kubeconfig
pub mod tokenreview; // proxies' service-account tokens, checked by the API server

pub use client::{connect, KubeError, KubernetesOptions, DEFAULT_NAMESPACE};
