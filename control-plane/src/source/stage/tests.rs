//! Planning changes to a directory: replace where defined, new files for new
//! resources, cut deleted documents out, never overwrite a file edited meanwhile.

use std::path::Path;

use super::*;
use crate::source::{incoming, load};

const ORDERS: &str =
    "apiVersion: v1\nkind: Service\nmetadata: {name: orders}\nspec: {ports: [{port: 80}]}\n";
const ORDERS_81: &str =
    "apiVersion: v1\nkind: Service\nmetadata: {name: orders}\nspec: {ports: [{port: 81}]}\n";
const WEB: &str =
    "apiVersion: v1\nkind: Service\nmetadata: {name: web}\nspec: {ports: [{port: 80}]}\n";

fn apply(dir: &Path, text: &str) -> Staged {
    let (docs, problems) = incoming("client.yaml", text, None);
    assert!(problems.is_empty(), "{problems:?}");
    let held = load(dir).unwrap();
    stage(dir, &held, &Store::default(), &Change::Apply(docs)).unwrap()
}

fn delete(dir: &Path, ids: Vec<ResourceId>) -> Staged {
    let held = load(dir).unwrap();
    stage(dir, &held, &Store::default(), &Change::Delete(ids)).unwrap()
}

fn orders() -> ResourceId {
    ResourceId::new(
        Kind::Service,
        crate::resources::ObjectKey::new("default", "orders"),
    )
}

fn contents(staged: &Staged, file: &Path) -> Option<Option<String>> {
    let location = file.display().to_string();
    staged
        .writes
        .iter()
        .find(|w| w.location == location)
        .map(|w| w.contents.clone())
}

#[test]
fn a_new_resource_gets_a_file_of_its_own() {
    let dir = tempfile::tempdir().unwrap();
    let staged = apply(dir.path(), ORDERS);
    let file = dir.path().join("service-default-orders.yaml");
    assert_eq!(contents(&staged, &file), Some(Some(ORDERS.to_owned())));
    assert_eq!(staged.results[0].action, Action::Created);
    assert_eq!(staged.loaded.documents.len(), 1);
    assert_eq!(
        staged.placements,
        [Placement {
            file: file.display().to_string(),
            document: 1,
            client_file: "client.yaml".into(),
            client_document: 1,
        }]
    );
    assert!(!file.exists(), "staging writes nothing");
}

#[test]
fn a_taken_file_name_gets_a_number() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("service-default-orders.yaml"), WEB).unwrap();
    let staged = apply(dir.path(), ORDERS);
    let file = dir.path().join("service-default-orders-2.yaml");
    assert_eq!(contents(&staged, &file), Some(Some(ORDERS.to_owned())));
}

#[test]
fn a_resource_is_replaced_where_it_is_defined_and_the_rest_of_the_file_kept() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("mesh.yaml");
    let web2 = WEB.replacen("name: web}", "name: web2}", 1);
    let text = format!("# the mesh\n{web2}---\n# orders, by hand\n{ORDERS}---\n{WEB}");
    std::fs::write(&file, &text).unwrap();
    let staged = apply(dir.path(), ORDERS_81);
    assert_eq!(staged.results[0].action, Action::Configured);
    let written = contents(&staged, &file).flatten().unwrap();
    assert_eq!(
        written,
        format!("# the mesh\n{web2}---\n{ORDERS_81}---\n{WEB}")
    );
    // Read back, the document keeps its index.
    assert_eq!(staged.placements[0].document, 2);
    assert_eq!(staged.loaded.documents.len(), 3);
    assert_eq!(staged.writes.len(), 1, "no new file");
}

#[test]
fn an_equal_resource_is_unchanged_and_not_written() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("orders.yaml"), ORDERS).unwrap();
    // The same values, written differently.
    let staged = apply(
        dir.path(),
        "apiVersion: v1\nkind: Service\nmetadata:\n  name: orders\nspec:\n  ports:\n  - port: 80\n",
    );
    assert_eq!(staged.results[0].action, Action::Unchanged);
    assert!(staged.writes.is_empty());
}

#[test]
fn the_same_resource_twice_in_one_request_is_a_problem() {
    let dir = tempfile::tempdir().unwrap();
    let staged = apply(dir.path(), &format!("{ORDERS}---\n{ORDERS_81}"));
    let [problem] = staged.problems.as_slice() else {
        panic!("{:?}", staged.problems)
    };
    assert_eq!(
        (problem.file.as_str(), problem.document),
        ("client.yaml", Some(2))
    );
    assert!(
        problem.message.contains("duplicate in this request"),
        "{problem}"
    );
}

#[test]
fn a_deleted_resource_is_cut_out_and_an_empty_file_removed() {
    let dir = tempfile::tempdir().unwrap();
    let both = dir.path().join("both.yaml");
    let alone = dir.path().join("alone.yaml");
    std::fs::write(&both, format!("{ORDERS}---\n{WEB}")).unwrap();
    let staged = delete(dir.path(), vec![orders()]);
    assert_eq!(contents(&staged, &both), Some(Some(format!("---\n{WEB}"))));
    assert_eq!(staged.results[0].action, Action::Deleted);

    std::fs::write(&both, WEB).unwrap();
    std::fs::write(&alone, ORDERS).unwrap();
    let staged = delete(dir.path(), vec![orders()]);
    assert_eq!(contents(&staged, &alone), Some(None), "removed");
    assert_eq!(staged.loaded.documents.len(), 1);
}

#[test]
fn deleting_what_does_not_exist_is_a_problem() {
    let dir = tempfile::tempdir().unwrap();
    let staged = delete(dir.path(), vec![orders()]);
    assert!(staged.writes.is_empty());
    assert!(
        staged.problems[0].message.contains("not found"),
        "{:?}",
        staged.problems
    );
}

#[test]
fn a_file_edited_meanwhile_is_not_overwritten() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("orders.yaml");
    std::fs::write(&file, ORDERS).unwrap();
    let held = load(dir.path()).unwrap();
    std::fs::write(&file, format!("{ORDERS}---\n{WEB}")).unwrap();
    let (docs, _) = incoming("client.yaml", ORDERS_81, None);
    let staged = stage(dir.path(), &held, &Store::default(), &Change::Apply(docs)).unwrap();
    assert!(staged.writes.is_empty());
    assert!(
        staged.problems[0].message.contains("changed while"),
        "{:?}",
        staged.problems
    );
}

#[test]
fn a_file_whose_text_cannot_be_split_safely_is_left_alone() {
    let dir = tempfile::tempdir().unwrap();
    // A document after a `...` end marker without `---` is a syntax error for
    // the YAML parser: `orders` is not held from that file, so applying it
    // makes a new file and never rewrites the odd one.
    std::fs::write(dir.path().join("odd.yaml"), format!("{WEB}...\n{ORDERS}")).unwrap();
    let staged = apply(dir.path(), ORDERS_81);
    assert!(
        staged
            .writes
            .iter()
            .all(|w| !w.location.ends_with("odd.yaml")),
        "{:?}",
        staged.writes
    );
}
