use std::collections::HashMap;

use super::*;
use crate::identity::TokenSource;

const PEM: &str = "-----BEGIN CERTIFICATE-----\nMA==\n-----END CERTIFICATE-----\n";

/// A pod's environment as injection writes it.
fn pod() -> HashMap<&'static str, String> {
    [
        ("REMORA_SERVICE", "orders"),
        ("POD_NAMESPACE", "shop"),
        ("POD_NAME", "orders-7f9c-x2"),
        ("POD_IP", "10.1.2.3"),
        ("SERVICE_ACCOUNT", "orders-sa"),
        ("REMORA_CONTROL_PLANE", "10.96.0.20:7700"),
        ("REMORA_TRUST_BUNDLE", PEM),
    ]
    .into_iter()
    .map(|(k, v)| (k, v.to_owned()))
    .collect()
}

fn build(env: &HashMap<&'static str, String>) -> Result<Bootstrap, BootstrapError> {
    Bootstrap::from_env_with(
        |name| env.get(name).cloned(),
        |path: &Path| Err(std::io::Error::other(format!("no file {}", path.display()))),
        |name: &str| Err(std::io::Error::other(format!("no DNS for {name}"))),
    )
}

fn error(env: &HashMap<&'static str, String>) -> String {
    build(env).unwrap_err().to_string()
}

#[test]
fn a_pods_variables_make_the_bootstrap() {
    let b = build(&pod()).unwrap();
    assert_eq!(b.service, "orders");
    assert_eq!(b.namespace, "shop");
    assert_eq!(b.node_id, "orders-7f9c-x2.shop");
    assert_eq!(b.identity(), "spiffe://cluster.local/ns/shop/sa/orders-sa");
    assert_eq!(b.control_plane, "10.96.0.20:7700".parse().unwrap());
    assert_eq!(
        b.admin,
        "0.0.0.0:7900".parse().unwrap(),
        "the kubelet probes it"
    );
    assert_eq!(b.inbound, "0.0.0.0:7002".parse().unwrap());
    assert_eq!(b.outbound, "127.0.0.1:7001".parse().unwrap());
    assert_eq!(b.app, DEFAULT_APP.parse().unwrap());
    assert_eq!(
        b.advertised_inbound("0.0.0.0:7002".parse().unwrap()),
        "10.1.2.3:7002".parse().unwrap(),
        "peers reach the pod's IP at the inbound port"
    );
    match b.token {
        Some(TokenSource::File(f)) => assert_eq!(f, Path::new(DEFAULT_TOKEN_FILE)),
        other => panic!("the projected token file is the default: {other:?}"),
    }
    assert_eq!(b.trust_bundle.unwrap().pem.trim(), PEM.trim());
    assert!(b.sidecar.passthrough);
    assert!(b.app_probes.is_empty());
}

#[test]
fn the_listeners_and_the_app_can_be_moved() {
    let mut env = pod();
    env.insert("POD_IP", "127.0.0.1".into());
    env.insert("REMORA_INBOUND", "127.0.0.1:0".into());
    env.insert("REMORA_OUTBOUND", "127.0.0.1:0".into());
    env.insert("REMORA_ADMIN", "127.0.0.1:0".into());
    env.insert("REMORA_APP", "localhost:9090".into());
    env.insert(
        "REMORA_APP_PORTS",
        "6379=127.0.0.1:16379, 5432=127.0.0.1:15432".into(),
    );
    env.insert("REMORA_OPAQUE_PORTS", "3306, 6379,".into());
    env.insert("REMORA_TOKEN_FILE", "/tmp/t".into());
    env.insert("REMORA_STATE_DIR", "state".into());
    let b = build(&env).unwrap();
    assert_eq!(b.admin, "127.0.0.1:0".parse().unwrap());
    assert_eq!(b.app, "127.0.0.1:9090".parse().unwrap());
    assert_eq!(
        b.advertised_inbound("127.0.0.1:41234".parse().unwrap()),
        "127.0.0.1:41234".parse().unwrap(),
        "an inbound on port 0 is advertised at the port it bound"
    );
    assert_eq!(
        b.sidecar.app_ports.get(&6379),
        Some(&"127.0.0.1:16379".parse().unwrap())
    );
    assert_eq!(b.sidecar.opaque_ports, Some(vec![3306, 6379]));
    assert_eq!(
        b.state_dir,
        Some(PathBuf::from("state")),
        "not moved beside a file"
    );
    match b.token {
        Some(TokenSource::File(f)) => assert_eq!(f, Path::new("/tmp/t")),
        other => panic!("{other:?}"),
    }
}

#[test]
fn the_control_plane_by_name_is_resolved_once() {
    let mut env = pod();
    env.remove("REMORA_CONTROL_PLANE");
    let asked = std::cell::RefCell::new(Vec::new());
    let b = Bootstrap::from_env_with(
        |name| env.get(name).cloned(),
        |_: &Path| Ok(String::new()),
        |name: &str| {
            asked.borrow_mut().push(name.to_owned());
            Ok(vec![
                "[fd00::20]:7700".parse().unwrap(),
                "10.96.0.20:7700".parse().unwrap(),
            ])
        },
    )
    .unwrap();
    assert_eq!(asked.into_inner(), [DEFAULT_CONTROL_PLANE]);
    assert_eq!(
        b.control_plane,
        "10.96.0.20:7700".parse().unwrap(),
        "IPv4 first"
    );
    let err = error(&env);
    assert!(
        err.contains("REMORA_CONTROL_PLANE: cannot resolve `remora.remora-system.svc:7700`"),
        "{err}"
    );
}

#[test]
fn a_trust_bundle_is_required() {
    let mut env = pod();
    env.remove("REMORA_TRUST_BUNDLE");
    assert_eq!(
        error(&env),
        "bootstrap from the environment: REMORA_TRUST_BUNDLE: REMORA_TRUST_BUNDLE or \
         REMORA_TRUST_BUNDLE_FILE is required: the pod's token must not cross the network \
         before the control plane is verified (`remora inject --trust-bundle FILE` writes it)"
    );
    env.insert("REMORA_TRUST_BUNDLE", " \n".into());
    assert!(error(&env).contains("is required"), "blank is unset");
}

#[test]
fn a_trust_bundle_comes_inline_or_from_a_file_not_both() {
    let mut env = pod();
    let b = build(&env).unwrap();
    assert_eq!(b.trust_bundle.unwrap().pem.trim(), PEM.trim());
    env.insert("REMORA_TRUST_BUNDLE_FILE", "/etc/remora/ca.pem".into());
    let err = error(&env);
    assert!(err.contains("not both"), "{err}");
    env.remove("REMORA_TRUST_BUNDLE");
    let err = error(&env);
    assert!(
        err.starts_with("bootstrap from the environment: REMORA_TRUST_BUNDLE_FILE: cannot read /etc/remora/ca.pem"),
        "{err}"
    );
    env.remove("REMORA_TRUST_BUNDLE_FILE");
    env.insert("REMORA_TRUST_BUNDLE", "not a certificate".into());
    let err = error(&env);
    assert!(err.contains("REMORA_TRUST_BUNDLE: "), "{err}");
}

#[test]
fn every_bad_variable_is_named() {
    let cases = [
        ("REMORA_SERVICE", "Orders"),
        ("POD_NAMESPACE", "Shop"),
        ("POD_IP", "10.1.2"),
        ("SERVICE_ACCOUNT", "orders_sa"),
        ("REMORA_CONTROL_PLANE", "remora"),
        ("REMORA_APP", "nowhere"),
        ("REMORA_APP_PORTS", "6379"),
        ("REMORA_APP_PORTS", "redis=127.0.0.1:1"),
        ("REMORA_APP_PORTS", "6379=redis"),
        ("REMORA_OPAQUE_PORTS", "3306,mysql"),
        ("REMORA_OPAQUE_PORTS", "0"),
        ("REMORA_INBOUND", "7002"),
        ("REMORA_OUTBOUND", "localhost"),
        ("REMORA_ADMIN", "0.0.0.0"),
        ("REMORA_METRICS", "maybe"),
        ("REMORA_APP_PROBES", "{\"/live\": {}}"),
    ];
    for (variable, value) in cases {
        let mut env = pod();
        env.insert(variable, value.into());
        let err = error(&env);
        assert!(
            err.starts_with(&format!("bootstrap from the environment: {variable}: ")),
            "{variable}={value}: {err}"
        );
    }
}

#[test]
fn the_service_is_required_and_blanks_are_unset() {
    let mut env = pod();
    env.remove("REMORA_SERVICE");
    assert_eq!(
        error(&env),
        "bootstrap from the environment: REMORA_SERVICE: is required"
    );
    env.insert("REMORA_SERVICE", "  ".into());
    assert!(error(&env).contains("REMORA_SERVICE: is required"));
    // A pod IP Kubernetes did not fill in yet: advertise the bound address.
    let mut env = pod();
    env.insert("POD_IP", String::new());
    let b = build(&env).unwrap();
    assert_eq!(b.advertise, None);
}

#[test]
fn without_the_pods_name_and_account_the_files_defaults_apply() {
    let mut env = pod();
    env.remove("POD_NAME");
    env.remove("SERVICE_ACCOUNT");
    env.remove("POD_NAMESPACE");
    let b = build(&env).unwrap();
    assert!(b.node_id.starts_with("orders-"), "{}", b.node_id);
    assert_eq!(b.identity(), "spiffe://cluster.local/ns/default/sa/orders");
}

#[test]
fn every_variable_read_is_documented_and_every_documented_one_is_read() {
    // Every variable set, so no early return skips one.
    let mut env = pod();
    env.insert(
        "REMORA_APP_PROBES",
        r#"{"/app-health/app/livez":{"tcpSocket":{"port":8080}}}"#.into(),
    );
    let asked = std::cell::RefCell::new(std::collections::BTreeSet::new());
    let b = Bootstrap::from_env_with(
        |name| {
            asked.borrow_mut().insert(name.to_owned());
            env.get(name).cloned()
        },
        |path: &Path| Err(std::io::Error::other(format!("no file {}", path.display()))),
        |name: &str| Err(std::io::Error::other(format!("no DNS for {name}"))),
    )
    .unwrap();
    assert_eq!(b.app_probes.len(), 1);
    let documented: std::collections::BTreeSet<String> = VARIABLES
        .iter()
        .map(|(name, _)| (*name).to_owned())
        .collect();
    assert_eq!(asked.into_inner(), documented);
}

#[test]
fn an_ipv6_pod_gets_its_admin_listener_on_ipv6() {
    let mut env = pod();
    env.insert("POD_IP", "fd00::3".into());
    let b = build(&env).unwrap();
    assert_eq!(b.admin, DEFAULT_ADMIN_IPV6.parse().unwrap());
    assert_eq!(
        b.advertised_inbound("0.0.0.0:7002".parse().unwrap()),
        "[fd00::3]:7002".parse().unwrap()
    );
    // Inbound and outbound stay on IPv4 and get their IPv6 twins when bound
    // (`accept::listener::ipv6_twin`), as from a file.
    assert_eq!(b.inbound, "0.0.0.0:7002".parse().unwrap());
    assert_eq!(b.outbound, "127.0.0.1:7001".parse().unwrap());
    env.insert("REMORA_ADMIN", "127.0.0.1:7901".into());
    assert_eq!(
        build(&env).unwrap().admin,
        "127.0.0.1:7901".parse().unwrap()
    );
}

#[test]
fn the_apps_probes_are_read_and_a_bad_one_is_named() {
    let mut env = pod();
    env.insert(
        "REMORA_APP_PROBES",
        r#"{"/app-health/app/livez":{"httpGet":{"path":"/healthz","port":8080},"timeoutSeconds":3}}"#.into(),
    );
    let b = build(&env).unwrap();
    let probe = b.app_probes.get("/app-health/app/livez").unwrap();
    assert_eq!(probe.timeout, std::time::Duration::from_secs(3));
    env.insert(
        "REMORA_APP_PROBES",
        r#"{"/app-health/app/livez":{"httpGet":{"port":443,"scheme":"HTTPS"}}}"#.into(),
    );
    let err = error(&env);
    assert!(
        err.starts_with(
            "bootstrap from the environment: REMORA_APP_PROBES: `/app-health/app/livez`: "
        ),
        "{err}"
    );
}
