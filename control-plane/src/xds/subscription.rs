//! One resource type on one stream: what the client asked for, what it was last
//! sent, and what it ACKed or NACKed.

use std::collections::BTreeSet;

use super::registry::{Nack, TypeStatus};
use crate::translate::{ResourceMap, ResourceType};

/// The resource names a client asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Subscription {
    /// Everything of the type (`resource_names` empty for Listener and Cluster, or
    /// containing `*`).
    Wildcard,
    Names(BTreeSet<String>),
}

impl Subscription {
    pub fn from_request(t: ResourceType, names: &[String]) -> Self {
        if names.iter().any(|n| n == "*") || (t.is_full_set() && names.is_empty()) {
            Subscription::Wildcard
        } else {
            Subscription::Names(names.iter().cloned().collect())
        }
    }

    /// The subscribed resources that exist.
    pub fn select(&self, all: &ResourceMap) -> ResourceMap {
        match self {
            Subscription::Wildcard => all.clone(),
            Subscription::Names(names) => names
                .iter()
                .filter_map(|n| Some((n.clone(), all.get(n)?.clone())))
                .collect(),
        }
    }
}

/// The last response sent for a type.
#[derive(Debug, Clone)]
pub struct Sent {
    pub version: String,
    pub nonce: String,
    pub resources: ResourceMap,
}

#[derive(Debug, Clone)]
pub struct TypeState {
    pub subscription: Subscription,
    pub sent: Option<Sent>,
    pub acked: Option<String>,
    pub last_nack: Option<Nack>,
}

impl TypeState {
    pub fn new(subscription: Subscription) -> Self {
        TypeState {
            subscription,
            sent: None,
            acked: None,
            last_nack: None,
        }
    }

    pub fn status(&self) -> TypeStatus {
        TypeStatus {
            sent_version: self.sent.as_ref().map(|s| s.version.clone()),
            acked_version: self.acked.clone(),
            last_nack: self.last_nack.clone(),
        }
    }
}
