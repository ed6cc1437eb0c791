//! One resource type on one stream: what the client asked for, what it was last
//! sent, and what it ACKed or NACKed.

use std::collections::BTreeSet;

use super::registry::{Nack, TypeStatus};
use crate::translate::{ResourceMap, ResourceType};
use remora_proto::xds::google::protobuf::Any;

/// The resource names a client asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Subscription {
    /// Everything of the type: `resource_names` containing `*`, or, for Listener
    /// and Cluster, empty while the client has never named anything (xDS's
    /// legacy wildcard, what Remora proxies use for Clusters).
    Wildcard,
    /// Only these: what gRPC's xDS client and Remora proxies ask for Listeners,
    /// routes and endpoints.
    Names(BTreeSet<String>),
}

impl Subscription {
    /// `previous`: the subscription so far on this stream. A client that named
    /// resources and then sends no name unsubscribes from all of them (as gRPC
    /// does when it stops watching every resource of a type but keeps the
    /// stream for others); only a client that never named any is in legacy
    /// wildcard mode.
    pub fn from_request(t: ResourceType, names: &[String], previous: Option<&Self>) -> Self {
        let legacy_wildcard = t.is_full_set()
            && names.is_empty()
            && matches!(previous, None | Some(Subscription::Wildcard));
        if legacy_wildcard || names.iter().any(|n| n == "*") {
            Subscription::Wildcard
        } else {
            Subscription::Names(names.iter().cloned().collect())
        }
    }

    /// The subscribed resources that exist, by reference and in name order
    /// (what [`Subscription::select`] copies): enough to tell whether
    /// anything changed without copying a thousand resources to find out.
    pub fn selected<'a>(
        &'a self,
        all: &'a ResourceMap,
    ) -> Box<dyn Iterator<Item = (&'a String, &'a Any)> + 'a> {
        match self {
            Subscription::Wildcard => Box::new(all.iter()),
            Subscription::Names(names) => {
                Box::new(names.iter().filter_map(|n| all.get_key_value(n)))
            }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn names(list: &[&str]) -> Vec<String> {
        list.iter().map(|n| (*n).to_owned()).collect()
    }

    const LDS: ResourceType = ResourceType::Listener;

    #[test]
    fn an_empty_list_is_the_wildcard_only_before_anything_was_named() {
        let first = Subscription::from_request(LDS, &[], None);
        assert_eq!(first, Subscription::Wildcard);
        // Still legacy wildcard: the client never named anything.
        assert_eq!(
            Subscription::from_request(LDS, &[], Some(&first)),
            Subscription::Wildcard
        );
        let named = Subscription::from_request(LDS, &names(&["orders:80"]), Some(&first));
        assert_eq!(named, Subscription::Names(["orders:80".to_owned()].into()));
        // gRPC closing its last channel: nothing, not everything.
        assert_eq!(
            Subscription::from_request(LDS, &[], Some(&named)),
            Subscription::Names(BTreeSet::new())
        );
        assert_eq!(
            Subscription::from_request(LDS, &names(&["*"]), Some(&named)),
            Subscription::Wildcard
        );
    }

    #[test]
    fn routes_and_endpoints_are_only_ever_named() {
        for t in [ResourceType::Route, ResourceType::Endpoint] {
            assert_eq!(
                Subscription::from_request(t, &[], None),
                Subscription::Names(BTreeSet::new())
            );
        }
    }
}
