//! Splitting a file into its YAML documents before parsing, so that one document
//! the parser cannot read does not hide the others: serde_yaml_ng reads a stream
//! with one libyaml parser, which cannot go on after a syntax error.
//!
//! A document starts at a line that begins with `---` followed by a space, a tab
//! or the end of the line: exactly where libyaml sees a document start (such a
//! line is never inside a block scalar, whose lines are indented, nor a plain
//! scalar, which it ends; inside a quoted scalar it is a libyaml error anyway).
//! The marker line stays at the head of its piece, so `--- |` and `--- !tag`
//! parse as they would in the whole stream. Lines before the first marker that
//! hold only comments, blank lines or directives (`%YAML`) go with the first
//! document, as in the stream; anything else there is a document of its own.
//!
//! Not handled: a document started after a `...` end marker without a `---`
//! stays in the piece before it (the piece is then parsed as a stream of
//! several documents), and a directive between documents stays with the
//! document before it (where libyaml refuses it).

use super::scan::{break_len, is_document_marker};

/// One document's text and where it is in its file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Piece<'a> {
    pub text: &'a str,
    /// 1-based line of the file on which `text` starts.
    pub first_line: usize,
    /// The byte offset in the file's text at which `text` starts.
    pub start: usize,
}

/// The documents of `text`, in order (at least one, maybe empty).
pub fn documents(text: &str) -> Vec<Piece<'_>> {
    let s = text.as_bytes();
    // (byte offset, line) of each piece's start.
    let mut starts = vec![(0, 1)];
    // Whether the first piece holds a document yet (content, or the first marker).
    let mut in_document = false;
    let mut pos = 0;
    let mut line = 1;
    loop {
        if s.get(pos) == Some(&b'-') && is_document_marker(s, pos) {
            if in_document {
                starts.push((pos, line));
            }
            in_document = true;
        } else if !in_document && holds_content(line_at(s, pos)) {
            in_document = true;
        }
        match next_line(s, pos) {
            Some(next) => {
                pos = next;
                line += 1;
            }
            None => break,
        }
    }
    let mut pieces = Vec::with_capacity(starts.len());
    for (i, &(start, first_line)) in starts.iter().enumerate() {
        let end = starts.get(i + 1).map_or(text.len(), |&(next, _)| next);
        // Every start is at a line start, after an ASCII line break or a
        // multi-byte one taken whole, so the slice is on character boundaries.
        if let Some(piece) = text.get(start..end) {
            pieces.push(Piece {
                text: piece,
                first_line,
                start,
            });
        }
    }
    pieces
}

/// The bytes of the line that starts at `pos`, without its break.
fn line_at(s: &[u8], pos: usize) -> &[u8] {
    let mut end = pos;
    while end < s.len() && break_len(s, end).is_none() {
        end += 1;
    }
    &s[pos..end]
}

/// The start of the line after the one at `pos`, if there is one.
fn next_line(s: &[u8], pos: usize) -> Option<usize> {
    let mut at = pos;
    while at < s.len() {
        if let Some(n) = break_len(s, at) {
            return Some(at + n);
        }
        at += 1;
    }
    None
}

/// Whether a line before the first marker is part of a document (not blank, a
/// comment or a directive).
fn holds_content(line: &[u8]) -> bool {
    let first = line.iter().copied().find(|&b| b != b' ' && b != b'\t');
    !matches!(first, None | Some(b'#')) && !line.starts_with(b"%")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn texts(text: &str) -> Vec<(&str, usize)> {
        documents(text)
            .into_iter()
            .map(|p| (p.text, p.first_line))
            .collect()
    }

    #[test]
    fn splits_at_markers_and_keeps_them_with_their_document() {
        assert_eq!(
            texts("a: 1\n---\nb: 2\n--- # c\nc: 3\n"),
            [("a: 1\n", 1), ("---\nb: 2\n", 2), ("--- # c\nc: 3\n", 4)]
        );
    }

    #[test]
    fn a_leading_marker_starts_the_first_document() {
        assert_eq!(
            texts("# head\n%YAML 1.2\n---\na: 1\n---\nb: 2"),
            [("# head\n%YAML 1.2\n---\na: 1\n", 1), ("---\nb: 2", 5)]
        );
    }

    #[test]
    fn lines_that_only_look_like_markers_do_not_split() {
        assert_eq!(
            texts("a: |\n  ---\nb: ---\n----\n---x\n"),
            [("a: |\n  ---\nb: ---\n----\n---x\n", 1)]
        );
    }

    #[test]
    fn windows_line_ends_and_empty_text() {
        assert_eq!(
            texts("a: 1\r\n---\r\nb: 2\r\n"),
            [("a: 1\r\n", 1), ("---\r\nb: 2\r\n", 2)]
        );
        assert_eq!(texts(""), [("", 1)]);
    }
}
