use super::*;

const WEB: &str = "spiffe://cluster.local/ns/shop/sa/web";
const OPS: &str = "spiffe://cluster.local/ns/ops/sa/admin";

fn policy(name: &str, principals: Vec<Principal>, permissions: Vec<Permission>) -> Policy {
    Policy {
        name: name.into(),
        permissions,
        principals,
    }
}

fn identity(id: &str) -> Principal {
    Principal::Authenticated(Some(StringMatch::Exact(id.into())))
}

fn check(a: &Authorization, peer: Option<&str>, method: &str, path: &str) -> Result<(), Denied> {
    let method = Method::from_bytes(method.as_bytes()).unwrap();
    let headers = HeaderMap::new();
    a.check(&Request {
        peer,
        method: &method,
        path,
        headers: &headers,
    })
}

#[test]
fn without_policies_everything_passes() {
    let a = Authorization::default();
    assert!(a.is_empty());
    assert_eq!(check(&a, None, "GET", "/"), Ok(()));
}

#[test]
fn allow_needs_a_matching_policy_and_deny_wins() {
    let a = Authorization {
        deny: vec![policy(
            "no-admin",
            vec![Principal::Any],
            vec![Permission::Path(StringMatch::Prefix("/admin".into()))],
        )],
        allow: Some(vec![policy(
            "web-gets",
            vec![identity(WEB)],
            vec![Permission::Method(Method::GET)],
        )]),
    };
    assert_eq!(check(&a, Some(WEB), "GET", "/orders"), Ok(()));
    assert_eq!(
        check(&a, Some(WEB), "POST", "/orders"),
        Err(Denied::NotAllowed)
    );
    assert_eq!(
        check(&a, Some(OPS), "GET", "/orders"),
        Err(Denied::NotAllowed)
    );
    assert_eq!(check(&a, None, "GET", "/orders"), Err(Denied::NotAllowed));
    assert_eq!(
        check(&a, Some(WEB), "GET", "/admin/x"),
        Err(Denied::By("no-admin".into()))
    );
}

#[test]
fn authenticated_without_a_name_is_any_mesh_peer_but_not_plaintext() {
    let a = Authorization {
        deny: vec![],
        allow: Some(vec![policy(
            "mesh",
            vec![Principal::Authenticated(None)],
            vec![Permission::Any],
        )]),
    };
    assert_eq!(check(&a, Some(OPS), "GET", "/"), Ok(()));
    assert_eq!(check(&a, None, "GET", "/"), Err(Denied::NotAllowed));
}

#[test]
fn combinators_nest() {
    let namespace = |ns: &str| {
        Principal::Authenticated(Some(StringMatch::Prefix(format!(
            "spiffe://cluster.local/ns/{ns}/sa/"
        ))))
    };
    let a = Authorization {
        deny: vec![policy(
            "not-shop-writes",
            vec![Principal::Not(Box::new(namespace("shop")))],
            vec![Permission::And(vec![
                Permission::Not(Box::new(Permission::Method(Method::GET))),
                Permission::Or(vec![
                    Permission::Path(StringMatch::Exact("/orders".into())),
                    Permission::Path(StringMatch::Suffix(".json".into())),
                ]),
            ])],
        )],
        allow: None,
    };
    assert_eq!(check(&a, Some(WEB), "POST", "/orders"), Ok(()));
    assert_eq!(check(&a, Some(OPS), "GET", "/orders"), Ok(()));
    assert!(check(&a, Some(OPS), "POST", "/orders").is_err());
    assert!(check(&a, Some(OPS), "PUT", "/x/y.json").is_err());
    assert!(check(&a, None, "DELETE", "/orders").is_err());
    assert_eq!(check(&a, Some(OPS), "PUT", "/x/y.jsonl"), Ok(()));
}

#[test]
fn connections_are_checked_by_caller_alone() {
    let a = Authorization {
        deny: vec![policy(
            "no-ops",
            vec![Principal::Authenticated(Some(StringMatch::Exact(
                OPS.into(),
            )))],
            vec![Permission::Any],
        )],
        allow: Some(vec![
            policy(
                "web-reads",
                vec![Principal::Authenticated(Some(StringMatch::Exact(
                    WEB.into(),
                )))],
                vec![Permission::Method(Method::GET)],
            ),
            policy(
                "mesh",
                vec![Principal::Authenticated(None)],
                vec![Permission::Not(Box::new(Permission::Path(
                    StringMatch::Exact("/admin".into()),
                )))],
            ),
        ]),
    };
    // A DENY on the caller alone denies the connection.
    assert_eq!(
        a.check_connection(Some(OPS)),
        Err(Denied::By("no-ops".into()))
    );
    // `not path` is true for a connection (it has no path): allowed.
    assert_eq!(a.check_connection(Some(WEB)), Ok(()));
    assert_eq!(a.check_connection(None), Err(Denied::NotAllowed));
    let only_methods = Authorization {
        deny: vec![],
        allow: Some(vec![policy(
            "web-reads",
            vec![Principal::Any],
            vec![Permission::Method(Method::GET)],
        )]),
    };
    // An ALLOW that needs a method cannot match a connection.
    assert_eq!(
        only_methods.check_connection(Some(WEB)),
        Err(Denied::NotAllowed)
    );
}
