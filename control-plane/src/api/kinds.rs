//! The names a kind goes by on the command line and in queries, as `kubectl`
//! takes them: the kind itself, its plural, a short name, any case.

use crate::resources::Kind;

/// What [`parse`] takes, for messages.
pub const KNOWN: &str = "services (svc), httproutes (route), meshtls, authorizationpolicies (authz), trafficpolicies (tp)";

/// The kind `name` means.
pub fn parse(name: &str) -> Option<Kind> {
    let lower = name.to_ascii_lowercase();
    let kind = match lower.as_str() {
        "service" | "services" | "svc" => Kind::Service,
        "httproute" | "httproutes" | "route" | "routes" => Kind::HttpRoute,
        "meshtls" | "meshtlses" => Kind::MeshTls,
        "authorizationpolicy" | "authorizationpolicies" | "authz" => Kind::AuthorizationPolicy,
        "trafficpolicy" | "trafficpolicies" | "tp" => Kind::TrafficPolicy,
        _ => return None,
    };
    Some(kind)
}

/// How `get` names a kind in its output: `service/orders`.
pub fn short(kind: Kind) -> &'static str {
    match kind {
        Kind::Service => "service",
        Kind::HttpRoute => "httproute",
        Kind::MeshTls => "meshtls",
        Kind::AuthorizationPolicy => "authorizationpolicy",
        Kind::TrafficPolicy => "trafficpolicy",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_parses_from_its_own_names() {
        for kind in Kind::ALL {
            assert_eq!(parse(kind.as_str()), Some(kind));
            assert_eq!(parse(short(kind)), Some(kind));
        }
        assert_eq!(parse("svc"), Some(Kind::Service));
        assert_eq!(parse("HTTPRoutes"), Some(Kind::HttpRoute));
        assert_eq!(parse("pods"), None);
    }
}
