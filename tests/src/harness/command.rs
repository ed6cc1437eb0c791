//! One-shot commands fed on stdin (`remora inject -f -`, `kubectl apply -f -`).

use std::io::Write;
use std::process::{Command, Output, Stdio};

/// Runs `command` with `stdin` as its input and waits for it: its status,
/// stdout and stderr. Panics (naming the command) when it cannot be started.
pub fn run_with_stdin(command: &mut Command, stdin: &str) -> Output {
    let mut child = command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{command:?}: {e}"));
    if let Some(mut input) = child.stdin.take() {
        // A command that exits without reading all its input is its own answer.
        let _ = input.write_all(stdin.as_bytes());
    }
    child
        .wait_with_output()
        .unwrap_or_else(|e| panic!("{command:?}: {e}"))
}
