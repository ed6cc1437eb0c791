//! How `remora stat` writes its views: a table or JSON, once or (`--watch`)
//! again every few seconds.
//!
//! Under `--watch` a terminal is cleared before each table so it redraws in
//! place; a file or a pipe gets the tables one after another, with no control
//! codes in them. A reader that goes away (`remora stat --watch | head`) is the
//! end of the command, not an error: [`reader_gone`] tells it.

use std::io::{self, Write};

use super::{table, StatView};

/// Clears a terminal and puts the cursor home.
const CLEAR: &str = "\x1b[2J\x1b[H";

#[derive(Debug, Clone, Copy)]
pub struct Screen {
    json: bool,
    watch: bool,
    /// Whether the output is a terminal (only one is cleared).
    terminal: bool,
}

impl Screen {
    /// For standard output.
    pub fn stdout(json: bool, watch: bool) -> Self {
        Self::new(json, watch, io::IsTerminal::is_terminal(&io::stdout()))
    }

    pub fn new(json: bool, watch: bool, terminal: bool) -> Self {
        Self {
            json,
            watch,
            terminal,
        }
    }

    /// Writes one view and flushes it.
    pub fn show(&self, out: &mut impl Write, view: &StatView) -> io::Result<()> {
        match (self.json, self.watch) {
            (false, false) => out.write_all(table::render(view).as_bytes())?,
            (false, true) if self.terminal => {
                write!(out, "{CLEAR}{}", table::render(view))?;
            }
            // Tables one after another, a blank line between them.
            (false, true) => writeln!(out, "{}", table::render(view))?,
            (true, false) => writeln!(out, "{}", to_json(view, true)?)?,
            // One document per line, for a script reading a stream.
            (true, true) => writeln!(out, "{}", to_json(view, false)?)?,
        }
        out.flush()
    }
}

fn to_json(view: &StatView, pretty: bool) -> io::Result<String> {
    let text = if pretty {
        serde_json::to_string_pretty(view)
    } else {
        serde_json::to_string(view)
    };
    text.map_err(io::Error::other)
}

/// Whether writing failed because the reader went away (a closed pipe):
/// the command is done, quietly.
pub fn reader_gone(error: &io::Error) -> bool {
    error.kind() == io::ErrorKind::BrokenPipe
}

#[cfg(test)]
mod tests {
    use super::*;

    fn view() -> StatView {
        StatView {
            window_seconds: 30.0,
            edges: Vec::new(),
            parents: Vec::new(),
        }
    }

    fn shown(screen: Screen) -> String {
        let mut out = Vec::new();
        screen.show(&mut out, &view()).unwrap();
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn only_a_terminal_is_cleared() {
        assert!(shown(Screen::new(false, true, true)).starts_with(CLEAR));
        let file = shown(Screen::new(false, true, false));
        assert!(!file.contains('\x1b'), "{file:?}");
        assert!(file.starts_with("SRC -> DST"), "{file}");
        assert!(!shown(Screen::new(false, false, true)).contains('\x1b'));
    }

    #[test]
    fn watched_json_is_one_document_per_line() {
        let text = shown(Screen::new(true, true, false));
        assert_eq!(text.lines().count(), 1, "{text}");
        let parsed: StatView = serde_json::from_str(text.trim()).unwrap();
        assert_eq!(parsed.window_seconds, 30.0);
    }

    /// A writer whose reader has gone.
    struct ClosedPipe;

    impl Write for ClosedPipe {
        fn write(&mut self, _: &[u8]) -> io::Result<usize> {
            Err(io::ErrorKind::BrokenPipe.into())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_closed_pipe_is_an_end_not_a_panic() {
        let error = Screen::new(false, true, false)
            .show(&mut ClosedPipe, &view())
            .unwrap_err();
        assert!(reader_gone(&error));
    }
}
