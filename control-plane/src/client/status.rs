//! `remora status`: every proxy, the version it ACKed of each type, whether it
//! holds the config in force, its last NACK, its certificate's expiry. Exits 1
//! when any proxy is behind, NACKing, or warned about, so a deploy script can
//! stop there.

use super::table;
use super::views::{ProxyDoc, StatusDoc};
use super::{Api, ClientError, Exit, Output};

/// The types, in the order they are shown.
const LABELS: [&str; 4] = ["CDS", "EDS", "LDS", "RDS"];

/// The status, parsed and as the API sent it.
pub async fn fetch(api: &Api) -> Result<(StatusDoc, serde_json::Value), ClientError> {
    let reply = api.get("/api/v1/status").await?;
    let doc: StatusDoc = reply.json(&api.addr)?;
    let raw: serde_json::Value = reply.json(&api.addr)?;
    Ok((doc, raw))
}

/// Prints the status (only `namespace`'s proxies when given).
pub async fn run(api: &Api, output: Output, namespace: Option<&str>) -> Result<Exit, ClientError> {
    let (mut doc, mut raw) = fetch(api).await?;
    if let Some(ns) = namespace {
        doc.proxies.retain(|p| p.namespace == ns);
        if let Some(list) = raw.get_mut("proxies").and_then(|p| p.as_array_mut()) {
            list.retain(|p| p.get("namespace").and_then(|n| n.as_str()) == Some(ns));
        }
    }
    match output {
        Output::Table => print!("{}", render(&doc)),
        Output::Json => println!("{}", super::get::pretty_json(&raw)),
        Output::Yaml => print!("{}", super::get::yaml(&raw)),
    }
    let attention = doc.proxies.iter().any(ProxyDoc::needs_attention);
    Ok(if attention { Exit::Failed } else { Exit::Ok })
}

/// The table, then a line per thing that needs attention, then a summary.
pub fn render(doc: &StatusDoc) -> String {
    let rows: Vec<Vec<String>> = doc
        .proxies
        .iter()
        .map(|p| {
            let mut row = vec![
                p.node_id.clone(),
                p.service_name(),
                p.identity.clone().unwrap_or_else(|| "-".to_owned()),
                p.inbound_address.clone().unwrap_or_else(|| "-".to_owned()),
            ];
            row.extend(LABELS.iter().map(|l| version_cell(p, l)));
            row.push(if p.current { "yes" } else { "no" }.to_owned());
            row.push(certificate_cell(p));
            row
        })
        .collect();
    let mut header = vec!["PROXY", "SERVICE", "IDENTITY", "ADDRESS"];
    header.extend(LABELS);
    header.extend(["CURRENT", "CERT EXPIRES"]);
    let mut out = if doc.proxies.is_empty() {
        "no proxy is connected\n".to_owned()
    } else {
        table::render(&header, &rows)
    };
    for p in &doc.proxies {
        for problem in &p.problems {
            out.push_str(&format!("{}: {}\n", shown(&p.node_id), shown(problem)));
        }
        for warning in p.warning_texts() {
            out.push_str(&format!(
                "{}: warning: {}\n",
                shown(&p.node_id),
                shown(&warning)
            ));
        }
    }
    let behind = doc.proxies.iter().filter(|p| !p.current).count();
    let nacking = doc.proxies.iter().filter(|p| p.nacking).count();
    out.push_str(&format!(
        "generation {}: {} proxies, {behind} not current, {nacking} NACKing",
        doc.generation,
        doc.proxies.len()
    ));
    if doc.config_errors > 0 {
        out.push_str(&format!(
            "; {} problems in the config files (GET /api/v1/config)",
            doc.config_errors
        ));
    }
    out.push('\n');
    out
}

fn shown(text: &str) -> String {
    crate::escape::escape_control(text).into_owned()
}

/// The ACKed version (short), `NACK`, `behind`, or `-` when not subscribed.
fn version_cell(p: &ProxyDoc, label: &str) -> String {
    let Some(x) = p.xds.get(label) else {
        return "-".to_owned();
    };
    if x.nack.is_some() {
        return "NACK".to_owned();
    }
    let acked = x
        .acked_version
        .as_deref()
        .map_or_else(|| "-".to_owned(), |v| v.chars().take(8).collect());
    if x.in_sync {
        acked
    } else {
        format!("{acked} (behind)")
    }
}

fn certificate_cell(p: &ProxyDoc) -> String {
    match &p.certificate {
        None => "-".to_owned(),
        Some(c) if c.expires_in_seconds <= 0 => "expired".to_owned(),
        Some(c) if c.running_out => format!("{} (not renewed)", duration(c.expires_in_seconds)),
        Some(c) => duration(c.expires_in_seconds),
    }
}

/// `1d2h`, `23h59m`, `4m10s`, `9s`.
pub fn duration(secs: i64) -> String {
    let s = secs.max(0);
    let (d, h, m) = (s / 86_400, s % 86_400 / 3600, s % 3600 / 60);
    match (d, h, m) {
        (0, 0, 0) => format!("{s}s"),
        (0, 0, m) => format!("{m}m{}s", s % 60),
        (0, h, m) => format!("{h}h{m}m"),
        (d, h, _) => format!("{d}d{h}h"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn doc(json: serde_json::Value) -> StatusDoc {
        serde_json::from_value(json).unwrap()
    }

    fn proxy(current: bool, nack: Option<&str>) -> serde_json::Value {
        serde_json::json!({
            "node_id": "web-1",
            "service": "web",
            "namespace": "default",
            "inbound_address": "127.0.0.1:7002",
            "identity": "spiffe://cluster.local/ns/default/sa/web",
            "transport": "mtls",
            "generation": 4,
            "current": current,
            "nacking": nack.is_some(),
            "xds": {
                "CDS": {"acked_version": "0123456789abcdef", "sent_version": "0123456789abcdef", "in_sync": true, "nack": null},
                "LDS": {"acked_version": "aaaa", "sent_version": "bbbb", "in_sync": false,
                        "nack": nack.map(|m| serde_json::json!({"version": "bbbb", "nonce": "n", "message": m}))}
            },
            "certificate": {"not_after": "2030-01-01T00:00:00Z", "expires_in_seconds": 86_399, "running_out": false},
            "problems": nack.map(|m| vec![format!("LDS NACK: {m}")]).unwrap_or_default()
        })
    }

    #[test]
    fn the_table_labels_each_type_and_says_what_needs_attention() {
        let d = doc(
            serde_json::json!({"generation": 4, "proxies": [proxy(false, Some("bad listener"))]}),
        );
        let text = render(&d);
        let header = text.lines().next().unwrap();
        for column in [
            "PROXY",
            "SERVICE",
            "IDENTITY",
            "CDS",
            "EDS",
            "LDS",
            "RDS",
            "CURRENT",
            "CERT EXPIRES",
        ] {
            assert!(header.contains(column), "{text}");
        }
        let row = text.lines().nth(1).unwrap();
        assert!(
            row.contains("01234567") && row.contains("NACK") && row.contains("23h59m"),
            "{text}"
        );
        assert!(text.contains("web-1: LDS NACK: bad listener"), "{text}");
        assert!(d.proxies[0].needs_attention());
    }

    #[test]
    fn a_warning_needs_attention_too() {
        let mut p = proxy(true, None);
        p["warnings"] = serde_json::json!([
            "proxy names Service \"nosuch\", which the control plane does not know"
        ]);
        let d = doc(serde_json::json!({"generation": 4, "proxies": [p]}));
        assert!(d.proxies[0].needs_attention());
        assert!(render(&d).contains("web-1: warning: proxy names Service"));
        let fine = doc(serde_json::json!({"generation": 4, "proxies": [proxy(true, None)]}));
        assert!(!fine.proxies[0].needs_attention());
    }

    #[test]
    fn durations_are_short() {
        assert_eq!(duration(9), "9s");
        assert_eq!(duration(250), "4m10s");
        assert_eq!(duration(86_399), "23h59m");
        assert_eq!(duration(93_600), "1d2h");
    }
}
