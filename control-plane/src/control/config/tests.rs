//! Writes through the config task on a real directory: all or nothing, the
//! answer names the generation that holds the change, and reading back the
//! files it wrote publishes nothing new.

use std::path::Path;

use super::*;
use crate::source::{incoming, DirSource};

const ORDERS: &str =
    "apiVersion: v1\nkind: Service\nmetadata: {name: orders}\nspec: {ports: [{port: 80}]}\n";
const ROUTE_TO_NOWHERE: &str = "apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {name: split}\nspec:\n  parentRefs: [{kind: Service, name: orders, port: 80}]\n  rules:\n  - backendRefs: [{name: orders-v3, port: 80}]\n";
const ROUTE: &str = "apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {name: split}\nspec:\n  parentRefs: [{kind: Service, name: orders, port: 80}]\n  rules:\n  - backendRefs: [{name: orders, port: 80}]\n";

struct Fixture {
    dir: tempfile::TempDir,
    source: DirSource,
    tx: watch::Sender<Snapshot>,
}

impl Fixture {
    async fn new(files: &[(&str, &str)]) -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        for (name, text) in files {
            std::fs::write(dir.path().join(name), text).unwrap();
        }
        let source = DirSource::open(dir.path()).unwrap();
        let tx = first_load(&source).await.unwrap();
        Fixture { dir, source, tx }
    }

    async fn apply(&self, file: &str, text: &str, dry_run: bool) -> Answer {
        let (docs, problems) = incoming(file, text, None);
        assert!(problems.is_empty(), "{problems:?}");
        write(&self.source, &self.tx, Change::Apply(docs), dry_run)
            .await
            .unwrap()
    }

    fn files(&self) -> Vec<(String, String)> {
        let mut files: Vec<(String, String)> = std::fs::read_dir(self.dir.path())
            .unwrap()
            .map(|e| e.unwrap().path())
            .map(|p| {
                let name = p.file_name().unwrap().to_string_lossy().into_owned();
                (name, std::fs::read_to_string(&p).unwrap())
            })
            .collect();
        files.sort();
        files
    }

    fn generation(&self) -> u64 {
        self.tx.borrow().generation
    }

    fn path(&self, name: &str) -> std::path::PathBuf {
        self.dir.path().join(name)
    }
}

fn service_count(tx: &watch::Sender<Snapshot>) -> usize {
    tx.borrow().store.services().count()
}

#[tokio::test]
async fn an_apply_is_written_published_and_answered_with_its_generation() {
    let f = Fixture::new(&[]).await;
    let before = f.generation();
    let answer = f.apply("orders.yaml", ORDERS, false).await;
    assert!(answer.problems.is_empty(), "{:?}", answer.problems);
    assert_eq!(answer.results[0].action, crate::source::Action::Created);
    assert!(answer.generation > before);
    assert_eq!(answer.generation, f.generation());
    assert_eq!(service_count(&f.tx), 1);
    assert_eq!(
        std::fs::read_to_string(f.path("service-default-orders.yaml")).unwrap(),
        ORDERS
    );
    // The store keeps the document as written, for `remora get`.
    let key = ObjectKey::new("default", "orders");
    let document = f.tx.borrow().store.document(Kind::Service, &key).cloned();
    assert_eq!(
        document
            .as_deref()
            .and_then(|d| d["metadata"]["name"].as_str()),
        Some("orders")
    );

    // Reading the written files again (the watcher's reload) publishes nothing new.
    reload(&f.source, &f.tx).await;
    assert_eq!(f.generation(), answer.generation);
}

#[tokio::test]
async fn an_invalid_apply_changes_nothing_and_names_file_resource_and_field() {
    let f = Fixture::new(&[("orders.yaml", ORDERS)]).await;
    let files = f.files();
    let generation = f.generation();
    let answer = f.apply("route.yaml", ROUTE_TO_NOWHERE, false).await;
    let [problem] = answer.problems.as_slice() else {
        panic!("{:?}", answer.problems)
    };
    assert_eq!(problem.file, "route.yaml");
    assert_eq!(problem.name.as_deref(), Some("split"));
    assert_eq!(
        problem.field.as_deref(),
        Some("spec.rules[0].backendRefs[0].name")
    );
    assert_eq!(f.files(), files, "the directory is unchanged");
    assert_eq!(f.generation(), generation, "the config is unchanged");
}

#[tokio::test]
async fn a_dry_run_validates_and_writes_nothing() {
    let f = Fixture::new(&[("orders.yaml", ORDERS)]).await;
    let files = f.files();
    let answer = f.apply("route.yaml", ROUTE, true).await;
    assert!(answer.problems.is_empty(), "{:?}", answer.problems);
    assert!(answer.dry_run);
    assert_eq!(answer.results[0].action, crate::source::Action::Created);
    assert_eq!(f.files(), files);
}

#[tokio::test]
async fn applying_again_is_unchanged_and_a_change_is_configured_in_place() {
    let f = Fixture::new(&[("orders.yaml", ORDERS)]).await;
    let answer = f.apply("mine.yaml", ORDERS, false).await;
    assert_eq!(answer.results[0].action, crate::source::Action::Unchanged);
    let changed = ORDERS.replace("port: 80", "port: 81");
    let answer = f.apply("mine.yaml", &changed, false).await;
    assert_eq!(answer.results[0].action, crate::source::Action::Configured);
    assert_eq!(f.files(), [("orders.yaml".to_owned(), changed)]);
}

#[tokio::test]
async fn a_delete_that_would_break_a_route_is_refused_and_a_clean_one_removes_the_file() {
    let f = Fixture::new(&[("orders.yaml", ORDERS), ("route.yaml", ROUTE)]).await;
    let files = f.files();
    let orders = ResourceId::new(Kind::Service, ObjectKey::new("default", "orders"));
    let route = ResourceId::new(Kind::HttpRoute, ObjectKey::new("default", "split"));
    let answer = write(&f.source, &f.tx, Change::Delete(vec![orders]), false)
        .await
        .unwrap();
    assert!(
        answer
            .problems
            .iter()
            .any(|p| p.name.as_deref() == Some("split")),
        "{:?}",
        answer.problems
    );
    assert_eq!(f.files(), files);

    let answer = write(&f.source, &f.tx, Change::Delete(vec![route]), false)
        .await
        .unwrap();
    assert!(answer.problems.is_empty(), "{:?}", answer.problems);
    assert_eq!(f.files(), [("orders.yaml".to_owned(), ORDERS.to_owned())]);
    assert_eq!(f.tx.borrow().store.routes().count(), 0);
}

#[tokio::test]
async fn a_broken_file_elsewhere_does_not_block_an_apply() {
    let f = Fixture::new(&[("broken.yaml", "kind: Service\nmetadata: {name: [\n")]).await;
    let answer = f.apply("orders.yaml", ORDERS, false).await;
    assert!(answer.problems.is_empty(), "{:?}", answer.problems);
    assert!(Path::new(&f.path("service-default-orders.yaml")).exists());
}
