//! The kinds the Kubernetes source watches: where each lives in the API, and
//! whether Remora writes its status.

use kube::api::{ApiResource, GroupVersionKind};

/// One watched kind. Every one is read as a `DynamicObject` (one code path for
/// core kinds, the Gateway API and Remora's CRDs) and compacted on arrival.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Watched {
    Namespace,
    Service,
    /// Only its ports: what a Service's named `targetPort` resolves to.
    EndpointSlice,
    HttpRoute,
    MeshTls,
    AuthorizationPolicy,
    TrafficPolicy,
}

/// The controller name Remora writes in `HTTPRoute.status.parents[]`.
pub const CONTROLLER_NAME: &str = "remora.dev/mesh";

/// The label that names an EndpointSlice's Service.
pub const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";

impl Watched {
    pub const ALL: [Watched; 7] = [
        Watched::Namespace,
        Watched::Service,
        Watched::EndpointSlice,
        Watched::HttpRoute,
        Watched::MeshTls,
        Watched::AuthorizationPolicy,
        Watched::TrafficPolicy,
    ];

    /// The kind as the API names it (`HTTPRoute`).
    pub fn kind(self) -> &'static str {
        match self {
            Watched::Namespace => "Namespace",
            Watched::Service => "Service",
            Watched::EndpointSlice => "EndpointSlice",
            Watched::HttpRoute => "HTTPRoute",
            Watched::MeshTls => "MeshTLS",
            Watched::AuthorizationPolicy => "AuthorizationPolicy",
            Watched::TrafficPolicy => "TrafficPolicy",
        }
    }

    fn group_version(self) -> (&'static str, &'static str) {
        match self {
            Watched::Namespace | Watched::Service => ("", "v1"),
            Watched::EndpointSlice => ("discovery.k8s.io", "v1"),
            Watched::HttpRoute => ("gateway.networking.k8s.io", "v1"),
            Watched::MeshTls | Watched::AuthorizationPolicy | Watched::TrafficPolicy => {
                ("policy.remora.dev", "v1alpha1")
            }
        }
    }

    /// The resource name in URLs (`httproutes`).
    pub fn plural(self) -> &'static str {
        match self {
            Watched::Namespace => "namespaces",
            Watched::Service => "services",
            Watched::EndpointSlice => "endpointslices",
            Watched::HttpRoute => "httproutes",
            Watched::MeshTls => "meshtlses",
            Watched::AuthorizationPolicy => "authorizationpolicies",
            Watched::TrafficPolicy => "trafficpolicies",
        }
    }

    /// `v1`, `gateway.networking.k8s.io/v1`.
    pub fn api_version(self) -> String {
        match self.group_version() {
            ("", version) => version.to_owned(),
            (group, version) => format!("{group}/{version}"),
        }
    }

    pub fn api_resource(self) -> ApiResource {
        let (group, version) = self.group_version();
        ApiResource::from_gvk_with_plural(
            &GroupVersionKind::gvk(group, version, self.kind()),
            self.plural(),
        )
    }

    /// Whether a missing kind is expected (a CRD not installed yet): the
    /// others are served meanwhile.
    pub fn is_custom(self) -> bool {
        !matches!(
            self,
            Watched::Namespace | Watched::Service | Watched::EndpointSlice
        )
    }

    /// Whether Remora writes this kind's status.
    pub fn has_status(self) -> bool {
        self.is_custom()
    }

    /// Whether the mesh reads objects of this kind as documents (Namespaces
    /// only decide which Services count, EndpointSlices what their named
    /// target ports are).
    pub fn is_document(self) -> bool {
        !matches!(self, Watched::Namespace | Watched::EndpointSlice)
    }
}

impl std::fmt::Display for Watched {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.kind())
    }
}
