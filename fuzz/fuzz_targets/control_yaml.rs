//! The control plane's config files: YAML text -> documents -> validated
//! resources (and the problems `remora check` prints) -> the last good version
//! kept on reload -> the xDS resources of every proxy namespace. Nothing may
//! panic, and translation must be deterministic. Split the input with a line
//! `#reload` to load it again with other contents.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // Config files are read with `read_to_string`: only UTF-8 reaches the parser.
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    remora_fuzz::control_plane(text, |_| {});
});
