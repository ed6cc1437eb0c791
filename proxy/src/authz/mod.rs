//! Authorization of inbound requests: compiled from the RBAC filters of the inbound
//! listener (see `compile::inbound`), evaluated per request against the caller's
//! verified identity without parsing or allocating.
//!
//! Envoy's order: the DENY filter first (any matching policy denies), then the ALLOW
//! filter, if there is one (some policy must match).

#[cfg(test)]
mod tests;

use std::sync::Arc;

use http::{HeaderMap, Method};

use crate::matchers::HeaderMatch;

/// The caller and request an authorization decision is about.
pub struct Request<'a> {
    /// The verified SPIFFE id of the caller; `None` for plaintext.
    pub peer: Option<&'a str>,
    pub method: &'a Method,
    /// Without the query.
    pub path: &'a str,
    pub headers: &'a HeaderMap,
}

#[derive(Debug, Default)]
pub struct Authorization {
    pub deny: Vec<Policy>,
    /// `None`: no ALLOW filter, everything not denied passes.
    pub allow: Option<Vec<Policy>>,
}

/// Why a request was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Denied {
    /// A DENY policy matched; its name.
    By(Arc<str>),
    /// An ALLOW filter exists and no policy in it matched.
    NotAllowed,
}

impl Denied {
    pub fn reason(&self) -> String {
        match self {
            Denied::By(policy) => format!("denied by authorization policy {policy}"),
            Denied::NotAllowed => "no authorization policy allows this caller".to_owned(),
        }
    }
}

impl Authorization {
    pub fn is_empty(&self) -> bool {
        self.deny.is_empty() && self.allow.is_none()
    }

    pub fn check(&self, req: &Request<'_>) -> Result<(), Denied> {
        if let Some(p) = self.deny.iter().find(|p| p.matches(req)) {
            return Err(Denied::By(p.name.clone()));
        }
        match &self.allow {
            Some(allow) if !allow.iter().any(|p| p.matches(req)) => Err(Denied::NotAllowed),
            _ => Ok(()),
        }
    }
}

impl Authorization {
    /// The same decision for an opaque TCP connection: the caller is all that is
    /// known, so a permission about paths, methods or headers matches nothing
    /// (the control plane already dropped such rules from ALLOW policies and such
    /// conditions from DENY ones, so TCP is denied more, never less).
    pub fn check_connection(&self, peer: Option<&str>) -> Result<(), Denied> {
        let matches = |p: &Policy| {
            p.principals.iter().any(|x| x.matches(peer))
                && p.permissions.iter().any(Permission::matches_connection)
        };
        if let Some(p) = self.deny.iter().find(|p| matches(p)) {
            return Err(Denied::By(p.name.clone()));
        }
        match &self.allow {
            Some(allow) if !allow.iter().any(matches) => Err(Denied::NotAllowed),
            _ => Ok(()),
        }
    }
}

/// One RBAC policy: any of its permissions and any of its principals.
#[derive(Debug)]
pub struct Policy {
    pub name: Arc<str>,
    pub permissions: Vec<Permission>,
    pub principals: Vec<Principal>,
}

impl Policy {
    fn matches(&self, req: &Request<'_>) -> bool {
        // The caller first: it is the cheaper test and usually decides.
        self.principals.iter().any(|p| p.matches(req.peer))
            && self.permissions.iter().any(|p| p.matches(req))
    }
}

#[derive(Debug)]
pub enum Permission {
    Any,
    And(Vec<Permission>),
    Or(Vec<Permission>),
    Not(Box<Permission>),
    Path(StringMatch),
    Method(Method),
    Header(HeaderMatch),
}

impl Permission {
    fn matches(&self, req: &Request<'_>) -> bool {
        match self {
            Permission::Any => true,
            Permission::And(all) => all.iter().all(|p| p.matches(req)),
            Permission::Or(any) => any.iter().any(|p| p.matches(req)),
            Permission::Not(p) => !p.matches(req),
            Permission::Path(m) => m.matches(req.path),
            Permission::Method(m) => m == req.method,
            Permission::Header(h) => h.matches(req.headers),
        }
    }

    fn matches_connection(&self) -> bool {
        match self {
            Permission::Any => true,
            Permission::And(all) => all.iter().all(Permission::matches_connection),
            Permission::Or(any) => any.iter().any(Permission::matches_connection),
            Permission::Not(p) => !p.matches_connection(),
            Permission::Path(_) | Permission::Method(_) | Permission::Header(_) => false,
        }
    }
}

#[derive(Debug)]
pub enum Principal {
    Any,
    /// A peer with a verified identity, optionally matching this.
    Authenticated(Option<StringMatch>),
    And(Vec<Principal>),
    Or(Vec<Principal>),
    Not(Box<Principal>),
}

impl Principal {
    fn matches(&self, peer: Option<&str>) -> bool {
        match self {
            Principal::Any => true,
            Principal::Authenticated(m) => {
                peer.is_some_and(|id| m.as_ref().is_none_or(|m| m.matches(id)))
            }
            Principal::And(all) => all.iter().all(|p| p.matches(peer)),
            Principal::Or(any) => any.iter().any(|p| p.matches(peer)),
            Principal::Not(p) => !p.matches(peer),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StringMatch {
    Exact(String),
    Prefix(String),
    Suffix(String),
    Contains(String),
}

impl StringMatch {
    pub fn matches(&self, value: &str) -> bool {
        match self {
            StringMatch::Exact(s) => value == s,
            StringMatch::Prefix(s) => value.starts_with(s.as_str()),
            StringMatch::Suffix(s) => value.ends_with(s.as_str()),
            StringMatch::Contains(s) => value.contains(s.as_str()),
        }
    }
}
