//! The valid resources currently in force, keyed by namespace and name.
//!
//! A `Store` only ever holds resources that passed [`crate::validate`]: every
//! reference in it resolves. It is immutable once built; a change builds a new one.

use std::collections::BTreeMap;

use crate::resources::{HttpRoute, Kind, ObjectKey, Service};

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Store {
    services: BTreeMap<ObjectKey, Service>,
    routes: BTreeMap<ObjectKey, HttpRoute>,
}

impl Store {
    pub fn new(
        services: impl IntoIterator<Item = Service>,
        routes: impl IntoIterator<Item = HttpRoute>,
    ) -> Self {
        Store {
            services: services.into_iter().map(|s| (s.key.clone(), s)).collect(),
            routes: routes.into_iter().map(|r| (r.key.clone(), r)).collect(),
        }
    }

    pub fn service(&self, key: &ObjectKey) -> Option<&Service> {
        self.services.get(key)
    }

    /// Every Service, ordered by namespace and name.
    pub fn services(&self) -> impl Iterator<Item = &Service> {
        self.services.values()
    }

    /// Every HTTPRoute, ordered by namespace and name.
    pub fn routes(&self) -> impl Iterator<Item = &HttpRoute> {
        self.routes.values()
    }

    /// How many resources of each kind are in force.
    pub fn counts(&self) -> BTreeMap<Kind, usize> {
        BTreeMap::from([
            (Kind::Service, self.services.len()),
            (Kind::HttpRoute, self.routes.len()),
        ])
    }
}
