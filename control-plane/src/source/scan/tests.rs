//! The scanner against the YAML that could fool it: text that looks like
//! structure, and structure that looks like text.

use super::*;

/// The depth the tests use (the one `limits` applies).
const LIMIT: usize = 64;

fn depth_error(text: &str) -> Option<(usize, usize)> {
    first_too_deep(text, LIMIT).map(|at| (at.line, at.column))
}

#[test]
fn block_indentation_counts_as_depth() {
    let mut deep = String::new();
    for level in 0..=LIMIT {
        deep.push_str(&" ".repeat(level));
        deep.push_str("a:\n");
    }
    deep.push_str(&" ".repeat(LIMIT + 1));
    deep.push_str("b: 1\n");
    assert!(depth_error(&deep).is_some());
}

#[test]
fn brackets_in_text_are_not_counted() {
    let many = "[".repeat(200);
    for text in [
        format!("a: '{many}'\n"),
        format!("a: \"{many}\"\n"),
        format!("a: \"x\\\"{many}\"\n"),
        format!("a: 'it''s {many}'\n"),
        format!("a: 1 # {many}\n"),
        format!("# {many}\n"),
        format!("a: |\n  {many}\n  more\nb: 1\n"),
        format!("- key: >-\n    {many}\n  other: 1\n"),
        format!("a: b{many}\n"),
        format!("a: plain\n  continued {many}\n"),
        format!("a: \"spans\n  lines {many}\"\n"),
        format!("a: !!str '{many}'\n"),
        format!("a: &anchor \"{many}\"\nb: *anchor\n"),
    ] {
        assert_eq!(depth_error(&text), None, "{text}");
    }
}

#[test]
fn a_quote_inside_a_plain_scalar_does_not_hide_brackets() {
    // `it's` is plain text, not the start of a quoted scalar: the brackets on
    // the next line are a flow collection.
    let text = format!(
        "a: it's\nb: {}{}\n",
        "[".repeat(LIMIT + 1),
        "]".repeat(LIMIT + 1)
    );
    assert_eq!(depth_error(&text).map(|(line, _)| line), Some(2));
}

#[test]
fn text_after_a_block_scalar_is_read_again() {
    // The key at column 2 ends the block scalar (whose lines are deeper).
    let text = format!("- key: |\n    text\n  other: {}\n", "[".repeat(LIMIT + 1));
    assert_eq!(depth_error(&text).map(|(line, _)| line), Some(3));
}

#[test]
fn ordinary_resources_pass() {
    let text = "
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: orders, namespace: default}
spec:
  parentRefs: [{group: '', kind: Service, name: orders, port: 80}]
  rules:
  - matches: [{headers: [{name: X-Canary, value: 'true'}]}]
    backendRefs:
    - {name: orders-v1, port: 80, weight: 90}
    - name: orders-v2
      port: 80
      weight: 10
";
    assert_eq!(depth_error(text), None);
}
