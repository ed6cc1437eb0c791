//! Find the Remora binaries built by the same `cargo` invocation as the tests.

use std::path::{Path, PathBuf};

use anyhow::{anyhow, Context, Result};

/// Environment variable naming the folder that holds the binaries; overrides the
/// lookup next to the running test executable.
pub const BIN_DIR_ENV: &str = "REMORA_BIN_DIR";

/// The path of binary `name` (`remora`, `remora-proxy`, `remora-load`).
///
/// Looks in `$REMORA_BIN_DIR` if set, otherwise in the profile folder of the running
/// executable: a test runs as `target/debug/deps/foo-HASH`, so the binaries are in
/// `target/debug/`. The error says how to build what is missing.
pub fn bin_path(name: &str) -> Result<PathBuf> {
    let (dir, origin) = match std::env::var_os(BIN_DIR_ENV) {
        Some(dir) => (PathBuf::from(dir), format!("${BIN_DIR_ENV}")),
        None => {
            let exe = std::env::current_exe().context("cannot find the running executable")?;
            let dir = profile_dir(&exe)
                .ok_or_else(|| anyhow!("cannot find the target folder from {}", exe.display()))?;
            (dir, format!("next to {}", exe.display()))
        }
    };
    let path = dir.join(format!("{name}{}", std::env::consts::EXE_SUFFIX));
    if path.is_file() {
        Ok(path)
    } else {
        Err(anyhow!(
            "binary `{name}` not found at {} (looked {origin}): run `cargo build --bins` \
             first (`cargo build --release --bins` for release tests), or set \
             {BIN_DIR_ENV} to the folder that holds it",
            path.display()
        ))
    }
}

/// The cargo profile folder (`target/debug`) for an executable: its own folder, or
/// the parent when it runs from `deps/` (tests, benches).
fn profile_dir(exe: &Path) -> Option<PathBuf> {
    let dir = exe.parent()?;
    if dir.file_name().is_some_and(|n| n == "deps") {
        dir.parent().map(Path::to_path_buf)
    } else {
        Some(dir.to_path_buf())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_executables_in_deps_find_the_profile_folder() {
        let dir = profile_dir(Path::new("/w/target/debug/deps/e2e-0123abcd")).unwrap();
        assert_eq!(dir, Path::new("/w/target/debug"));
    }

    #[test]
    fn binaries_find_their_own_folder() {
        let dir = profile_dir(Path::new("/w/target/release/remora-load")).unwrap();
        assert_eq!(dir, Path::new("/w/target/release"));
    }

    #[test]
    fn a_missing_binary_says_how_to_build_it() {
        let err = bin_path("no-such-remora-binary").unwrap_err().to_string();
        assert!(err.contains("no-such-remora-binary"), "{err}");
        assert!(err.contains("cargo build --bins"), "{err}");
    }
}
