//! `remora apply` and `remora delete`: the files go to the control plane in one
//! request, which stores all of them or none; each resource's fate is printed
//! as `kubectl` prints it (`service/orders created`), every problem with its
//! file, resource and field. `--wait` then polls `/api/v1/status` until every
//! connected proxy has ACKed the generation the change produced.

use std::path::PathBuf;
use std::time::Duration;

use bytes::Bytes;
use tokio::time::Instant;

use super::views::{AnswerDoc, ProxyDoc};
use super::{files, Api, ClientError, Exit, Output};
use crate::api::kinds;
use crate::api::query::encode;
use crate::resources::Kind;

/// How often `--wait` asks.
const POLL: Duration = Duration::from_millis(100);

/// What to send.
#[derive(Debug, Clone)]
pub enum What {
    /// `-f FILE|DIR|-` (several allowed).
    Files(Vec<PathBuf>),
    /// `KIND NAME` (delete only).
    Named { kind: Kind, name: String },
}

#[derive(Debug, Clone)]
pub struct Request {
    pub what: What,
    pub namespace: Option<String>,
    pub dry_run: bool,
    /// `--wait`: for how long at most.
    pub wait: Option<Duration>,
    pub output: Output,
}

/// Apply (`delete: false`) or delete; prints the outcome and returns the exit.
pub async fn run(api: &Api, delete: bool, request: Request) -> Result<Exit, ClientError> {
    let mut query = Vec::new();
    if request.dry_run {
        query.push("dryRun=true".to_owned());
    }
    if let Some(ns) = &request.namespace {
        query.push(format!("namespace={}", encode(ns)));
    }
    let body = match &request.what {
        What::Files(paths) => {
            let files: Vec<serde_json::Value> = files::read(paths)?
                .into_iter()
                .map(|(name, content)| serde_json::json!({"name": name, "content": content}))
                .collect();
            Bytes::from(serde_json::json!({ "files": files }).to_string())
        }
        What::Named { kind, name } => {
            query.push(format!("kind={}", encode(kind.as_str())));
            query.push(format!("name={}", encode(name)));
            Bytes::new()
        }
    };
    let verb = if delete { "delete" } else { "apply" };
    let path = format!("/api/v1/{verb}?{}", query.join("&"));
    let reply = api.post(&path, "application/json", body).await?;
    // 422 carries the problems; any other failure is the API's to explain.
    let reply = if reply.status == http::StatusCode::UNPROCESSABLE_ENTITY {
        reply
    } else {
        reply.ok(&api.addr)?
    };
    let raw: serde_json::Value = reply.json(&api.addr)?;
    let answer: AnswerDoc = reply.json(&api.addr)?;
    if !answer.problems.is_empty() {
        if request.output == Output::Json {
            println!("{}", super::get::pretty_json(&raw));
        }
        print_problems(&answer);
        return Ok(Exit::Failed);
    }
    match request.output {
        Output::Table => print!("{}", results(&answer, delete)),
        Output::Json => println!("{}", super::get::pretty_json(&raw)),
        Output::Yaml => print!("{}", super::get::yaml(&raw)),
    }
    match request.wait {
        Some(_) if answer.dry_run => {
            eprintln!("--dry-run: nothing to wait for");
            Ok(Exit::Ok)
        }
        Some(timeout) => wait(api, answer.generation, timeout).await,
        None => Ok(Exit::Ok),
    }
}

/// `service/orders created`, one line per resource.
fn results(answer: &AnswerDoc, delete: bool) -> String {
    let mut out = String::new();
    for r in &answer.results {
        let kind: &str = match Kind::from_name(&r.kind) {
            Some(k) => kinds::short(k),
            None => &r.kind,
        };
        let name = crate::escape::escape_control(&r.name);
        let namespace = match r.namespace.as_str() {
            crate::resources::DEFAULT_NAMESPACE => String::new(),
            ns => format!(" -n {}", crate::escape::escape_control(ns)),
        };
        let dry = if answer.dry_run { " (dry run)" } else { "" };
        if delete {
            out.push_str(&format!("{kind} \"{name}\"{namespace} deleted{dry}\n"));
        } else {
            out.push_str(&format!("{kind}/{name}{namespace} {}{dry}\n", r.action));
        }
    }
    out
}

/// Every problem, to stderr, as `remora check` prints them.
fn print_problems(answer: &AnswerDoc) {
    for p in &answer.problems {
        eprintln!("{p}");
    }
    let n = answer.problems.len();
    let s = if n == 1 { "" } else { "s" };
    eprintln!("remora: {n} problem{s}; nothing was changed");
}

/// Where one proxy stands against a generation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Standing {
    /// It holds the generation (or a newer one).
    Holds,
    /// It rejected what it was sent: the type and the proxy's message.
    Nacked { label: String, message: String },
    /// Not yet: why.
    Pending(String),
}

/// Where `p` stands against `generation`.
pub fn standing(p: &ProxyDoc, generation: u64) -> Standing {
    if p.generation < generation {
        return Standing::Pending(format!(
            "its config is not yet computed from generation {generation}"
        ));
    }
    if let Some((label, nack)) = p
        .xds
        .iter()
        .find_map(|(label, x)| x.nack.as_ref().map(|n| (label, n)))
    {
        return Standing::Nacked {
            label: label.clone(),
            message: nack.message.clone(),
        };
    }
    if let Some((label, x)) = p.xds.iter().find(|(_, x)| !x.in_sync) {
        return Standing::Pending(format!(
            "{label} version {} sent, not ACKed yet",
            x.sent_version.as_deref().unwrap_or("-")
        ));
    }
    Standing::Holds
}

/// Polls the status until every connected proxy holds `generation` (0), or
/// one NACKed it (1, naming each with its message), or `timeout` passes (1,
/// naming each proxy still behind).
pub async fn wait(api: &Api, generation: u64, timeout: Duration) -> Result<Exit, ClientError> {
    let started = Instant::now();
    let deadline = started + timeout;
    loop {
        let (status, _) = super::status::fetch(api).await?;
        let standings: Vec<(&ProxyDoc, Standing)> = status
            .proxies
            .iter()
            .map(|p| (p, standing(p, generation)))
            .collect();
        let pending = standings
            .iter()
            .filter(|(_, s)| matches!(s, Standing::Pending(_)))
            .count();
        let timed_out = Instant::now() >= deadline;
        if pending == 0 || timed_out {
            let mut failed = false;
            for (p, s) in &standings {
                let who = format!(
                    "proxy {} ({})",
                    crate::escape::escape_control(&p.node_id),
                    p.service_name()
                );
                match s {
                    Standing::Holds => {}
                    Standing::Nacked { label, message } => {
                        failed = true;
                        eprintln!(
                            "{who} rejected {label} (NACK): {}",
                            crate::escape::escape_control(message)
                        );
                    }
                    Standing::Pending(why) => {
                        failed = true;
                        eprintln!("{who} is behind: {why}");
                    }
                }
            }
            let took = started.elapsed();
            if timed_out && pending > 0 {
                eprintln!(
                    "remora: timed out after {timeout:?}: {pending} proxies do not hold generation {generation} yet"
                );
            }
            if failed {
                return Ok(Exit::Failed);
            }
            println!(
                "{} proxies hold generation {generation} (waited {:.1}s)",
                standings.len(),
                took.as_secs_f64()
            );
            return Ok(Exit::Ok);
        }
        tokio::time::sleep(POLL.min(deadline.saturating_duration_since(Instant::now()))).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn proxy(generation: u64, xds: serde_json::Value) -> ProxyDoc {
        serde_json::from_value(serde_json::json!({
            "node_id": "web-1", "service": "web", "namespace": "default",
            "inbound_address": null, "identity": null, "certificate": null,
            "generation": generation, "xds": xds
        }))
        .unwrap()
    }

    fn synced(version: &str) -> serde_json::Value {
        serde_json::json!({"acked_version": version, "sent_version": version, "in_sync": true, "nack": null})
    }

    #[test]
    fn a_proxy_holds_a_generation_once_computed_from_it_and_acked() {
        let xds = serde_json::json!({"CDS": synced("a"), "LDS": synced("b")});
        assert!(matches!(
            standing(&proxy(4, xds.clone()), 5),
            Standing::Pending(_)
        ));
        assert_eq!(standing(&proxy(5, xds.clone()), 5), Standing::Holds);
        assert_eq!(standing(&proxy(6, xds), 5), Standing::Holds);
        let behind = serde_json::json!({"CDS": {"acked_version": "a", "sent_version": "b", "in_sync": false, "nack": null}});
        let Standing::Pending(why) = standing(&proxy(5, behind), 5) else {
            panic!("not pending")
        };
        assert!(why.contains("CDS version b"), "{why}");
    }

    #[test]
    fn a_nack_of_what_was_sent_is_reported_with_its_message() {
        let xds = serde_json::json!({"CDS": {"acked_version": "a", "sent_version": "b", "in_sync": false,
            "nack": {"version": "b", "nonce": "n", "message": "cluster x: lb_policy not supported"}}});
        assert_eq!(
            standing(&proxy(5, xds), 5),
            Standing::Nacked {
                label: "CDS".into(),
                message: "cluster x: lb_policy not supported".into()
            }
        );
    }

    #[test]
    fn results_print_as_kubectl_does() {
        let answer: AnswerDoc = serde_json::from_value(serde_json::json!({
            "dry_run": false, "generation": 3, "problems": [],
            "results": [
                {"kind": "Service", "namespace": "default", "name": "orders", "action": "created", "location": "x"},
                {"kind": "HTTPRoute", "namespace": "shop", "name": "split", "action": "unchanged", "location": "y"}
            ]
        }))
        .unwrap();
        assert_eq!(
            results(&answer, false),
            "service/orders created\nhttproute/split -n shop unchanged\n"
        );
        assert_eq!(
            results(&answer, true),
            "service \"orders\" deleted\nhttproute \"split\" -n shop deleted\n"
        );
    }
}
