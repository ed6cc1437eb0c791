//! Limits on a config file, checked on its bytes before the YAML parser sees
//! them: its size, and how deep each document nests (measured by `scan` in one
//! linear pass, since libyaml takes seconds on 120 KB of nested brackets and the
//! whole document is parsed before serde's own recursion limit can act).

use super::scan;

/// The largest file read, in bytes.
pub const MAX_FILE_BYTES: u64 = 4 * 1024 * 1024;
/// The deepest nesting accepted in a document (flow brackets plus block
/// indentation levels); real resources need about 10.
pub const MAX_DEPTH: usize = 64;

/// A limit a file or document goes over.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LimitError {
    #[error("the file is {size} bytes, over the size limit of {limit} bytes")]
    TooLarge { size: u64, limit: u64 },
    #[error("nested more than {limit} levels deep (the depth limit); not parsed")]
    TooDeep {
        /// 1-based, within the text checked.
        line: usize,
        column: usize,
        limit: usize,
    },
}

/// Refuses a file larger than [`MAX_FILE_BYTES`].
pub fn check_size(size: u64) -> Result<(), LimitError> {
    if size > MAX_FILE_BYTES {
        return Err(LimitError::TooLarge {
            size,
            limit: MAX_FILE_BYTES,
        });
    }
    Ok(())
}

/// Refuses a YAML text that nests deeper than [`MAX_DEPTH`], naming the line
/// where it first does. Linear in the length of `text`.
pub fn check_depth(text: &str) -> Result<(), LimitError> {
    match scan::first_too_deep(text, MAX_DEPTH) {
        None => Ok(()),
        Some(at) => Err(LimitError::TooDeep {
            line: at.line,
            column: at.column,
            limit: MAX_DEPTH,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn depth_error(text: &str) -> Option<(usize, usize)> {
        match check_depth(text) {
            Ok(()) => None,
            Err(LimitError::TooDeep { line, column, .. }) => Some((line, column)),
            Err(other) => panic!("unexpected {other}"),
        }
    }

    #[test]
    fn a_file_nested_60000_deep_is_refused_quickly() {
        let depth = 60_000;
        let brackets = format!("{}{}\n", "[".repeat(depth), "]".repeat(depth));
        assert_eq!(depth_error(&brackets), Some((1, MAX_DEPTH + 1)));
        let mappings = format!("{}1{}\n", "{a: ".repeat(depth), "}".repeat(depth));
        assert!(depth_error(&mappings).is_some());
        let sequences = format!("{}x\n", "- ".repeat(depth));
        assert!(depth_error(&sequences).is_some());
    }

    #[test]
    fn a_file_nested_100000_deep_is_refused_too() {
        let depth = 100_000;
        let nested = format!("{}{}", "[".repeat(depth), "]".repeat(depth));
        let text = format!("a: b\nc:\n  d: {nested}\n");
        let (line, _) = depth_error(&text).expect("refused");
        assert_eq!(line, 3);
    }

    #[test]
    fn the_limit_itself_is_allowed() {
        let at_limit = format!("{}{}", "[".repeat(MAX_DEPTH), "]".repeat(MAX_DEPTH));
        assert_eq!(depth_error(&at_limit), None);
        let over = format!("[{at_limit}]\n");
        assert!(depth_error(&over).is_some());
    }

    #[test]
    fn sizes_over_the_limit_are_refused() {
        assert!(check_size(MAX_FILE_BYTES).is_ok());
        let err = check_size(MAX_FILE_BYTES + 1).unwrap_err();
        assert!(err.to_string().contains("size limit"), "{err}");
    }
}
