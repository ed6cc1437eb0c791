//! The valid resources currently in force, keyed by namespace and name.
//!
//! A `Store` only ever holds resources that passed [`crate::validate`]: every
//! reference in it resolves. It is immutable once built; a change builds a new one.
//! It also remembers the file each resource was read from, so the next load can
//! keep a resource where it was in force (see `validate`'s rule for duplicates),
//! and the document it was read from, as the user wrote it (`remora get`).

use std::collections::BTreeMap;
use std::sync::Arc;

use serde_yaml_ng::Value;

use crate::resources::{
    AuthorizationPolicy, HttpRoute, Kind, MeshTls, ObjectKey, PolicyTarget, Service, TlsMode,
    TrafficPolicy,
};

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Store {
    services: BTreeMap<ObjectKey, Service>,
    routes: BTreeMap<ObjectKey, HttpRoute>,
    mesh_tls: BTreeMap<ObjectKey, MeshTls>,
    authorizations: BTreeMap<ObjectKey, AuthorizationPolicy>,
    traffic: BTreeMap<ObjectKey, TrafficPolicy>,
    origins: Origins,
    documents: Documents,
}

/// The file each resource was read from, by kind and key.
pub type Origins = BTreeMap<(Kind, ObjectKey), String>;

/// The document each resource in force was read from (for a resource whose
/// last valid version stays in force, that version's document).
pub type Documents = BTreeMap<(Kind, ObjectKey), Arc<Value>>;

/// Everything a `Store` is built from.
#[derive(Debug, Clone, Default)]
pub struct Contents {
    pub services: Vec<Service>,
    pub routes: Vec<HttpRoute>,
    pub mesh_tls: Vec<MeshTls>,
    pub authorizations: Vec<AuthorizationPolicy>,
    pub traffic: Vec<TrafficPolicy>,
    /// Where the resources were read from (none for resources made in code).
    pub origins: Origins,
    /// The documents they were read from (set by [`Store::with_documents`]).
    pub documents: Documents,
}

impl Store {
    pub fn new(
        services: impl IntoIterator<Item = Service>,
        routes: impl IntoIterator<Item = HttpRoute>,
    ) -> Self {
        Self::from_contents(Contents {
            services: services.into_iter().collect(),
            routes: routes.into_iter().collect(),
            ..Default::default()
        })
    }

    pub fn from_contents(c: Contents) -> Self {
        Store {
            services: c.services.into_iter().map(|s| (s.key.clone(), s)).collect(),
            routes: c.routes.into_iter().map(|r| (r.key.clone(), r)).collect(),
            mesh_tls: c.mesh_tls.into_iter().map(|p| (p.key.clone(), p)).collect(),
            authorizations: c
                .authorizations
                .into_iter()
                .map(|p| (p.key.clone(), p))
                .collect(),
            traffic: c.traffic.into_iter().map(|p| (p.key.clone(), p)).collect(),
            origins: c.origins,
            documents: c.documents,
        }
    }

    /// The same resources, with the documents they were read from.
    pub fn with_documents(mut self, documents: Documents) -> Self {
        self.documents = documents;
        self
    }

    /// The document a resource in force was read from.
    pub fn document(&self, kind: Kind, key: &ObjectKey) -> Option<&Arc<Value>> {
        self.documents.get(&(kind, key.clone()))
    }

    /// Where each resource in force was read from.
    pub fn origins(&self) -> &Origins {
        &self.origins
    }

    /// Every resource in force, by kind, then namespace and name.
    pub fn ids(&self) -> Vec<(Kind, &ObjectKey)> {
        let mut ids: Vec<(Kind, &ObjectKey)> = Vec::new();
        ids.extend(self.services.keys().map(|k| (Kind::Service, k)));
        ids.extend(self.routes.keys().map(|k| (Kind::HttpRoute, k)));
        ids.extend(self.mesh_tls.keys().map(|k| (Kind::MeshTls, k)));
        ids.extend(
            self.authorizations
                .keys()
                .map(|k| (Kind::AuthorizationPolicy, k)),
        );
        ids.extend(self.traffic.keys().map(|k| (Kind::TrafficPolicy, k)));
        ids.sort();
        ids
    }

    /// The file a resource in force was read from.
    pub fn origin(&self, kind: Kind, key: &ObjectKey) -> Option<&str> {
        self.origins.get(&(kind, key.clone())).map(String::as_str)
    }

    pub fn service(&self, key: &ObjectKey) -> Option<&Service> {
        self.services.get(key)
    }

    /// Every Service, ordered by namespace and name.
    pub fn services(&self) -> impl Iterator<Item = &Service> {
        self.services.values()
    }

    pub fn route(&self, key: &ObjectKey) -> Option<&HttpRoute> {
        self.routes.get(key)
    }

    /// Every HTTPRoute, ordered by namespace and name.
    pub fn routes(&self) -> impl Iterator<Item = &HttpRoute> {
        self.routes.values()
    }

    pub fn mesh_tls(&self) -> impl Iterator<Item = &MeshTls> {
        self.mesh_tls.values()
    }

    pub fn authorizations(&self) -> impl Iterator<Item = &AuthorizationPolicy> {
        self.authorizations.values()
    }

    pub fn traffic_policies(&self) -> impl Iterator<Item = &TrafficPolicy> {
        self.traffic.values()
    }

    /// The TrafficPolicy of a target (validation allows one per target).
    pub fn traffic_policy(&self, target: &PolicyTarget) -> Option<&TrafficPolicy> {
        self.traffic.values().find(|p| p.target == *target)
    }

    /// The TLS mode of a Service: its own MeshTLS, else its namespace's, else
    /// STRICT. (Validation allows one policy per target.)
    pub fn tls_mode(&self, service: &ObjectKey) -> TlsMode {
        let in_namespace = || {
            self.mesh_tls
                .values()
                .filter(|p| p.key.namespace == service.namespace)
        };
        in_namespace()
            .find(|p| p.target == PolicyTarget::Service(service.clone()))
            .or_else(|| in_namespace().find(|p| p.target == PolicyTarget::Namespace))
            .map(|p| p.mode)
            .unwrap_or_default()
    }

    /// How many resources of each kind are in force.
    pub fn counts(&self) -> BTreeMap<Kind, usize> {
        BTreeMap::from([
            (Kind::Service, self.services.len()),
            (Kind::HttpRoute, self.routes.len()),
            (Kind::MeshTls, self.mesh_tls.len()),
            (Kind::AuthorizationPolicy, self.authorizations.len()),
            (Kind::TrafficPolicy, self.traffic.len()),
        ])
    }

    /// The contents, to rebuild a changed store from.
    pub fn contents(&self) -> Contents {
        Contents {
            services: self.services.values().cloned().collect(),
            routes: self.routes.values().cloned().collect(),
            mesh_tls: self.mesh_tls.values().cloned().collect(),
            authorizations: self.authorizations.values().cloned().collect(),
            traffic: self.traffic.values().cloned().collect(),
            origins: self.origins.clone(),
            documents: self.documents.clone(),
        }
    }
}
