//! Text from outside (names in config files, node metadata, messages) made safe
//! to print or log: control characters and bidirectional overrides become
//! visible escapes, so no input can forge a log line or repaint a terminal.

use std::borrow::Cow;
use std::fmt::Write;

/// `s` with `\n`, `\r`, `\t`, other control characters (`\u{1b}`, ...) and the
/// Unicode bidirectional controls written as escapes; borrowed when there is none.
pub fn escape(s: &str) -> Cow<'_, str> {
    if !s.chars().any(needs_escape) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        match c {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if needs_escape(c) => {
                let _ = write!(out, "\\u{{{:x}}}", c as u32);
            }
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

fn needs_escape(c: char) -> bool {
    c.is_control() || matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_become_visible() {
        assert!(matches!(escape("orders-v1"), Cow::Borrowed("orders-v1")));
        assert_eq!(
            escape("a\nFAKE LOG LINE\u{1b}[31m\r\t"),
            "a\\nFAKE LOG LINE\\u{1b}[31m\\r\\t"
        );
        assert_eq!(escape("x\u{202e}y\u{7f}"), "x\\u{202e}y\\u{7f}");
        assert_eq!(escape("café"), "café");
    }
}
