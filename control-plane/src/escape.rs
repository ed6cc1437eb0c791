//! Text from outside (config files, node metadata, reports) made safe to print: a name, a file name or a value a
//! user wrote may hold a newline (a forged log line), an escape sequence (a
//! terminal that changes colour or clears itself) or a bidi override (text that
//! reads in another order than it is). At every place such text is printed or
//! logged it goes through [`escape_control`], which turns those characters into
//! visible escapes and leaves everything else as it is.
//!
//! Not for JSON: serde_json escapes control characters itself.

use std::borrow::Cow;
use std::fmt::Write as _;

/// `s` with every control character (C0 such as `\n` and ESC, DEL, C1 such as
/// NEL), the bidi controls (U+202A..U+202E, U+2066..U+2069, U+200E, U+200F,
/// U+061C) and the Unicode line and paragraph separators written as escapes:
/// `\n`, `\r`, `\t`, otherwise `\u{1b}`. Borrowed when there is nothing to escape,
/// which is almost always.
pub fn escape_control(s: &str) -> Cow<'_, str> {
    if !s.chars().any(must_escape) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 16);
    for c in s.chars() {
        match c {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if must_escape(c) => {
                // Writing to a String cannot fail.
                let _ = write!(out, "\\u{{{:x}}}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

fn must_escape(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{202A}'..='\u{202E}'
                | '\u{2066}'..='\u{2069}'
                | '\u{200E}'
                | '\u{200F}'
                | '\u{061C}'
                | '\u{2028}'
                | '\u{2029}'
        )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_text_is_borrowed_unchanged() {
        let name = "orders-v1.default: Service \"x\" (ünïcödé)";
        assert!(matches!(escape_control(name), Cow::Borrowed(n) if n == name));
    }

    #[test]
    fn newlines_and_escape_codes_become_visible() {
        assert_eq!(
            escape_control("a\nFAKE LOG LINE\u{1b}[31m\r\t\u{7f}\u{85}"),
            "a\\nFAKE LOG LINE\\u{1b}[31m\\r\\t\\u{7f}\\u{85}"
        );
    }

    #[test]
    fn bidi_overrides_and_line_separators_become_visible() {
        assert_eq!(
            escape_control("a\u{202e}b\u{2066}c\u{2028}d"),
            "a\\u{202e}b\\u{2066}c\\u{2028}d"
        );
    }
}
