//! `POST /api/v1/apply` and `POST /api/v1/delete`: the API's writes.
//!
//! The body is YAML (one or more documents; `?file=NAME` names it in problems),
//! or JSON holding several named files, `{"files": [{"name": "orders.yaml",
//! "content": "..."}]}`, applied together. `?dryRun=true` validates only;
//! `?namespace=NS` puts documents without one in NS. Delete takes the same body,
//! or `?kind=KIND&namespace=NS&name=NAME`.
//!
//! The writes themselves are made by whoever holds the other end of [`Writes`]
//! (the control plane's config task, one at a time): the API only parses and
//! answers. Answers are JSON: 200 with what happened to each resource and the
//! snapshot generation that holds the change, or 422 with every problem (and
//! nothing changed).

use bytes::Bytes;
use http::{header, HeaderMap, StatusCode};
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, oneshot};

use super::kinds;
use crate::problem::Problem;
use crate::resources::{ObjectKey, DEFAULT_NAMESPACE};
use crate::source::{self, Applied, Change, ResourceId};

/// Writes waiting for the config task at most; more are answered 503.
const QUEUE: usize = 16;

/// The API's end of the channel to whoever makes writes.
#[derive(Debug, Clone)]
pub struct Writes {
    tx: mpsc::Sender<WriteRequest>,
}

/// One write, and where its answer goes.
#[derive(Debug)]
pub struct WriteRequest {
    pub change: Change,
    pub dry_run: bool,
    pub reply: oneshot::Sender<Result<Answer, WriteError>>,
}

/// What became of a write.
#[derive(Debug, Clone, Default)]
pub struct Answer {
    pub dry_run: bool,
    /// The snapshot generation that holds the change: proxies that have ACKed
    /// it (or later) hold it. The current one when nothing changed.
    pub generation: u64,
    pub results: Vec<Applied>,
    /// When not empty, the write was refused and nothing changed.
    pub problems: Vec<Problem>,
}

#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    #[error("the control plane is shutting down")]
    Stopped,
    #[error("too many writes waiting; try again")]
    Busy,
    #[error("the config source failed")]
    Source(#[from] crate::Error),
    #[error("validation failed: {0}")]
    Validation(String),
}

/// A channel for writes: the API holds the [`Writes`], the config task reads
/// the requests.
pub fn channel() -> (Writes, mpsc::Receiver<WriteRequest>) {
    let (tx, rx) = mpsc::channel(QUEUE);
    (Writes { tx }, rx)
}

impl Writes {
    pub async fn send(&self, change: Change, dry_run: bool) -> Result<Answer, WriteError> {
        let (reply, answer) = oneshot::channel();
        let request = WriteRequest {
            change,
            dry_run,
            reply,
        };
        self.tx.try_send(request).map_err(|e| match e {
            mpsc::error::TrySendError::Full(_) => WriteError::Busy,
            mpsc::error::TrySendError::Closed(_) => WriteError::Stopped,
        })?;
        answer.await.map_err(|_| WriteError::Stopped)?
    }
}

/// Apply or delete.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verb {
    Apply,
    Delete,
}

/// A write's query: `dryRun`, `namespace`, `file`, and for delete `kind`, `name`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Query {
    pub dry_run: bool,
    pub namespace: Option<String>,
    pub file: Option<String>,
    pub kind: Option<String>,
    pub name: Option<String>,
}

impl Query {
    pub fn parse(query: &str) -> Result<Query, String> {
        let mut q = Query::default();
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            let v = super::query::decode(v);
            match k {
                "dryRun" => {
                    q.dry_run = match v.as_str() {
                        "" | "true" | "All" => true,
                        "false" => false,
                        other => return Err(format!("dryRun `{other}`: give true or false")),
                    }
                }
                "namespace" if !v.is_empty() => q.namespace = Some(v),
                "file" if !v.is_empty() => q.file = Some(v),
                "kind" if !v.is_empty() => q.kind = Some(v),
                "name" if !v.is_empty() => q.name = Some(v),
                "namespace" | "file" | "kind" | "name" => {}
                other => {
                    return Err(format!(
                        "unknown parameter `{other}` (dryRun, namespace, file, kind, name)"
                    ))
                }
            }
        }
        Ok(q)
    }
}

/// `{"files": [{"name": ..., "content": ...}]}`
#[derive(Debug, Deserialize)]
struct Files {
    files: Vec<NamedFile>,
}

#[derive(Debug, Deserialize)]
struct NamedFile {
    name: String,
    content: String,
}

/// A request that cannot be made: the status and what to say.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadRequest {
    pub status: StatusCode,
    pub message: String,
    pub problems: Vec<Problem>,
}

impl BadRequest {
    fn new(message: impl Into<String>) -> Self {
        BadRequest {
            status: StatusCode::BAD_REQUEST,
            message: message.into(),
            problems: Vec::new(),
        }
    }

    fn problems(problems: Vec<Problem>) -> Self {
        BadRequest {
            status: StatusCode::UNPROCESSABLE_ENTITY,
            message: "the request's documents cannot be read".to_owned(),
            problems,
        }
    }
}

/// The change a request asks for: its documents read (with the client's file
/// names), or the resource named in the query (delete).
pub fn change(
    verb: Verb,
    query: &Query,
    headers: &HeaderMap,
    body: &Bytes,
) -> Result<Change, BadRequest> {
    if verb == Verb::Delete {
        if let Some(kind) = &query.kind {
            let Some(name) = &query.name else {
                return Err(BadRequest::new("delete by kind needs name= too"));
            };
            let kind = kinds::parse(kind).ok_or_else(|| {
                BadRequest::new(format!("unknown kind `{kind}` ({})", kinds::KNOWN))
            })?;
            let namespace = query.namespace.as_deref().unwrap_or(DEFAULT_NAMESPACE);
            let id = ResourceId::new(kind, ObjectKey::new(namespace, name.as_str()));
            return Ok(Change::Delete(vec![id]));
        }
    }
    let files = files(query, headers, body)?;
    let mut incoming = Vec::new();
    let mut problems = Vec::new();
    for (name, text) in &files {
        let (docs, mut p) = source::incoming(name, text, query.namespace.as_deref());
        incoming.extend(docs);
        problems.append(&mut p);
    }
    if !problems.is_empty() {
        return Err(BadRequest::problems(problems));
    }
    if incoming.is_empty() {
        return Err(BadRequest::new("the request holds no resource"));
    }
    Ok(match verb {
        Verb::Apply => Change::Apply(incoming),
        Verb::Delete => Change::Delete(incoming.into_iter().map(|i| i.id).collect()),
    })
}

/// The files of a request: JSON with named files, or one YAML text.
fn files(
    query: &Query,
    headers: &HeaderMap,
    body: &Bytes,
) -> Result<Vec<(String, String)>, BadRequest> {
    let json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if json {
        let files: Files = serde_json::from_slice(body).map_err(|e| {
            BadRequest::new(format!(
                "the JSON body is not {{\"files\": [{{\"name\", \"content\"}}]}}: {e}"
            ))
        })?;
        return Ok(files
            .files
            .into_iter()
            .map(|f| (f.name, f.content))
            .collect());
    }
    let text = std::str::from_utf8(body)
        .map_err(|e| BadRequest::new(format!("the body is not UTF-8: {e}")))?;
    let name = query
        .file
        .clone()
        .unwrap_or_else(|| source::REQUEST.to_owned());
    Ok(vec![(name, text.to_owned())])
}

/// The answer's JSON.
#[derive(Debug, Serialize)]
pub struct AnswerView<'a> {
    pub dry_run: bool,
    pub generation: u64,
    pub results: Vec<ResultView<'a>>,
    pub problems: &'a [Problem],
}

#[derive(Debug, Serialize)]
pub struct ResultView<'a> {
    pub kind: &'static str,
    pub namespace: &'a str,
    pub name: &'a str,
    pub action: &'static str,
    pub location: &'a str,
}

impl<'a> From<&'a Answer> for AnswerView<'a> {
    fn from(a: &'a Answer) -> Self {
        AnswerView {
            dry_run: a.dry_run,
            generation: a.generation,
            results: a
                .results
                .iter()
                .map(|r| ResultView {
                    kind: r.id.kind.as_str(),
                    namespace: &r.id.key.namespace,
                    name: &r.id.key.name,
                    action: r.action.as_str(),
                    location: &r.location,
                })
                .collect(),
            problems: &a.problems,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn json_headers() -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::CONTENT_TYPE, "application/json".parse().unwrap());
        h
    }

    #[test]
    fn the_query_says_dry_run_namespace_and_what_to_delete() {
        let q = Query::parse("dryRun=true&namespace=shop&kind=svc&name=orders").unwrap();
        assert!(q.dry_run);
        assert_eq!(q.namespace.as_deref(), Some("shop"));
        let Change::Delete(ids) =
            change(Verb::Delete, &q, &HeaderMap::new(), &Bytes::new()).unwrap()
        else {
            panic!("not a delete")
        };
        assert_eq!(ids[0].to_string(), "Service shop/orders");
        assert!(Query::parse("dryRun=maybe").is_err());
        assert!(Query::parse("colour=blue").is_err());
    }

    #[test]
    fn json_bodies_name_each_file() {
        let body = Bytes::from(
            serde_json::json!({"files": [
                {"name": "a.yaml", "content": "kind: Service\nmetadata: {name: a}\nspec: {}\n"},
                {"name": "b.yaml", "content": "kind: Service\nmetadata: {name: b}\nspec: {}\n"},
            ]})
            .to_string(),
        );
        let Change::Apply(docs) =
            change(Verb::Apply, &Query::default(), &json_headers(), &body).unwrap()
        else {
            panic!("not an apply")
        };
        let files: Vec<_> = docs.iter().map(|d| d.document.file.as_str()).collect();
        assert_eq!(files, ["a.yaml", "b.yaml"]);
    }

    #[test]
    fn unreadable_documents_are_problems_with_the_clients_file_name() {
        let q = Query::parse("file=orders.yaml").unwrap();
        let body = Bytes::from_static(b"kind: Service\nmetadata: {name: [\n");
        let err = change(Verb::Apply, &q, &HeaderMap::new(), &body).unwrap_err();
        assert_eq!(err.status, StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(err.problems[0].file, "orders.yaml");
        let empty = change(
            Verb::Apply,
            &q,
            &HeaderMap::new(),
            &Bytes::from_static(b"# nothing\n"),
        )
        .unwrap_err();
        assert_eq!(empty.status, StatusCode::BAD_REQUEST);
    }
}
