//! `--addresses-file`: the bound addresses as JSON, for whoever started us with
//! port 0 (tests, the demo). `webhook` only when the webhook is served.

use std::io::Write;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::Path;

/// Writes `{"xds": "127.0.0.1:PORT", "api": "127.0.0.1:PORT"}` (and
/// `"webhook"` when given) atomically (a
/// temporary file in the same directory, then a rename), so a reader never sees a
/// partial file. An unspecified IP (0.0.0.0, ::) is written as loopback, an address
/// one can connect to.
pub fn write(
    path: &Path,
    xds: SocketAddr,
    api: SocketAddr,
    webhook: Option<SocketAddr>,
) -> std::io::Result<()> {
    let mut body = serde_json::json!({
        "xds": connectable(xds).to_string(),
        "api": connectable(api).to_string(),
    });
    if let (Some(webhook), Some(fields)) = (webhook, body.as_object_mut()) {
        fields.insert("webhook".into(), connectable(webhook).to_string().into());
    }
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let mut tmp = tempfile::NamedTempFile::new_in(dir)?;
    tmp.write_all(body.to_string().as_bytes())?;
    tmp.as_file().sync_all()?;
    tmp.persist(path).map_err(|e| e.error)?;
    Ok(())
}

fn connectable(addr: SocketAddr) -> SocketAddr {
    match addr.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => {
            SocketAddr::new(Ipv4Addr::LOCALHOST.into(), addr.port())
        }
        IpAddr::V6(ip) if ip.is_unspecified() => {
            SocketAddr::new(Ipv6Addr::LOCALHOST.into(), addr.port())
        }
        _ => addr,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_connectable_addresses_as_json() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("addresses.json");
        write(
            &path,
            "0.0.0.0:7700".parse().unwrap(),
            "127.0.0.1:7780".parse().unwrap(),
            None,
        )
        .unwrap();
        let json: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"xds": "127.0.0.1:7700", "api": "127.0.0.1:7780"})
        );
        assert_eq!(
            std::fs::read_dir(dir.path()).unwrap().count(),
            1,
            "no temporary file left"
        );
    }

    #[test]
    fn the_webhook_address_is_written_when_it_is_served() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("addresses.json");
        write(
            &path,
            "127.0.0.1:7700".parse().unwrap(),
            "127.0.0.1:7780".parse().unwrap(),
            Some("0.0.0.0:8443".parse().unwrap()),
        )
        .unwrap();
        let json: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        assert_eq!(json["webhook"], "127.0.0.1:8443");
    }
}
