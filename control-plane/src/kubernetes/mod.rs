//! Kubernetes: the control plane as a cluster's mesh. A source that watches the
//! cluster's Services, EndpointSlices, Pods (what the mesh needs of them),
//! Namespaces, HTTPRoutes and Remora's CRDs and turns them into the same
//! documents and endpoints as the file mode; status written back; proxies'
//! service-account tokens checked with TokenReview.
//!
//! Not here: what the documents mean ([`crate::validate`]), sidecar injection
//! ([`crate::inject`]).

pub mod ca_secret; //  the CA the control plane makes, kept in a Secret so it outlives the pod
mod cache; //          the compact objects of each watched kind; relists swap a kind whole
mod client; //         the API client: in-cluster config, or a kubeconfig
mod compact; //        an API object -> the little the mesh keeps of it
mod documents; //      the caches -> documents, as if read from files
pub mod endpoints; //  EndpointSlices + Pods + Service selectors -> mesh endpoints
mod kinds; //          the watched kinds: API group, version, plural
mod source; //         `KubeSource`: the cluster as a `Source`
mod status; //         problems -> HTTPRoute and CRD status (pure)
mod target_ports; //   a Service port's targetPort -> a number (names from EndpointSlices)
pub mod tokenreview; // proxies' service-account tokens, checked by the API server
mod watch; //          one watch per kind (list, watch, bookmarks, 410 relist, backoff)
mod writer; //         the status writer task: patches the status subresource

pub use client::{connect, connect_as, KubeError, KubernetesOptions, DEFAULT_NAMESPACE};
pub use kinds::CONTROLLER_NAME;
pub use source::KubeSource;
