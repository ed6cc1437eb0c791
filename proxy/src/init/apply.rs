//! Runs `iptables-restore` and `iptables-save` (or their `ip6tables` twins), and
//! checks that the kernel holds what was written.
//!
//! Each family is one `iptables-restore --noflush` with the whole text on stdin:
//! one transaction, so a rule the kernel refuses leaves the table as it was.
//! `iptables-save -t nat` is read before (how many jumps exist already) and after
//! (each of our chains must hold exactly our rules). When the IPv6 rules fail
//! after the IPv4 ones went in, the IPv4 ones are taken out again, so a failed
//! init leaves no half-redirected namespace behind.
//!
//! Not for: deciding the rules ([`super::rules`]) or reading `iptables-save`'s
//! text ([`super::saved`]); this file only does the I/O.

use std::io::{self, Write};
use std::process::{Command, ExitStatus, Stdio};

use super::rules::{remove_text, Family, RuleSet, CHAINS, JUMPS};
use super::saved::{same_rule, Saved};

/// A command that could not run, failed, or left the table other than intended.
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    #[error("cannot run `{command}`: {source}{hint}")]
    Spawn {
        command: String,
        source: io::Error,
        hint: &'static str,
    },
    #[error("`{command}` failed ({status}): {stderr}{hint}")]
    Failed {
        command: String,
        status: ExitStatus,
        stderr: String,
        hint: &'static str,
    },
    #[error("after `{restore}`, `{save}` shows chain {chain} as:\n{found}\ninstead of:\n{wanted}")]
    Mismatch {
        restore: &'static str,
        save: &'static str,
        chain: &'static str,
        found: String,
        wanted: String,
    },
    #[error("after `{restore}`, `{save}` shows `{jump}` {count} times instead of once")]
    Jumps {
        restore: &'static str,
        save: &'static str,
        jump: String,
        count: usize,
    },
    #[error("after `{restore}`, `{save}` still shows {}", .leftovers.join(", "))]
    Leftovers {
        restore: &'static str,
        save: &'static str,
        leftovers: Vec<String>,
    },
    #[error("{error}; the {installed} rules installed before it were removed again")]
    RolledBack {
        error: Box<ApplyError>,
        installed: &'static str,
    },
    #[error("{error}; removing the {installed} rules installed before it failed too: {undo}")]
    NotRolledBack {
        error: Box<ApplyError>,
        installed: &'static str,
        undo: Box<ApplyError>,
    },
}

const RESTORE_ARGS: [&str; 1] = ["--noflush"];
const SAVE_ARGS: [&str; 2] = ["-t", "nat"];

/// Installs each family's rules in turn; on a failure, the families already
/// installed are removed again.
pub fn install(sets: &[RuleSet]) -> Result<(), ApplyError> {
    for (i, set) in sets.iter().enumerate() {
        let Err(error) = install_one(set) else {
            continue;
        };
        let done: Vec<Family> = sets[..i].iter().map(|set| set.family).collect();
        let Some(&installed) = done.first() else {
            return Err(error);
        };
        let installed = installed.name();
        let error = Box::new(error);
        return Err(match remove(&done) {
            Ok(()) => ApplyError::RolledBack { error, installed },
            Err(undo) => ApplyError::NotRolledBack {
                error,
                installed,
                undo: Box::new(undo),
            },
        });
    }
    Ok(())
}

/// Deletes the jumps and our chains for each family; nothing to delete is fine.
pub fn remove(families: &[Family]) -> Result<(), ApplyError> {
    for &family in families {
        let before = save(family)?;
        restore(family, &remove_text(before.jump_counts()))?;
        let leftovers = save(family)?.leftovers();
        if !leftovers.is_empty() {
            return Err(ApplyError::Leftovers {
                restore: family.restore_command(),
                save: family.save_command(),
                leftovers,
            });
        }
    }
    Ok(())
}

fn install_one(set: &RuleSet) -> Result<(), ApplyError> {
    let family = set.family;
    let before = save(family)?;
    restore(family, &set.install_text(before.jump_counts()))?;
    let after = save(family)?;
    for chain in CHAINS {
        let wanted = set.chain(chain);
        let found = after.chain(chain);
        let same =
            wanted.len() == found.len() && wanted.iter().zip(&found).all(|(w, f)| same_rule(w, f));
        if !same {
            return Err(ApplyError::Mismatch {
                restore: family.restore_command(),
                save: family.save_command(),
                chain,
                found: listing(&found),
                wanted: listing(&wanted),
            });
        }
    }
    for (jump, count) in JUMPS.iter().zip(after.jump_counts().0) {
        if count != 1 {
            return Err(ApplyError::Jumps {
                restore: family.restore_command(),
                save: family.save_command(),
                jump: jump.rule(),
                count,
            });
        }
    }
    Ok(())
}

fn listing(rules: &[&str]) -> String {
    if rules.is_empty() {
        return "  (no rules)".to_owned();
    }
    rules
        .iter()
        .map(|rule| format!("  {rule}"))
        .collect::<Vec<_>>()
        .join("\n")
}

fn save(family: Family) -> Result<Saved, ApplyError> {
    let text = run(family, family.save_command(), &SAVE_ARGS, None)?;
    Ok(Saved::parse(&text))
}

fn restore(family: Family, text: &str) -> Result<(), ApplyError> {
    run(family, family.restore_command(), &RESTORE_ARGS, Some(text)).map(drop)
}

/// Runs `program args`, feeding it `stdin`; its stdout, or an error with its
/// stderr.
fn run(
    family: Family,
    program: &'static str,
    args: &[&str],
    stdin: Option<&str>,
) -> Result<String, ApplyError> {
    let command = std::iter::once(program)
        .chain(args.iter().copied())
        .collect::<Vec<_>>()
        .join(" ");
    let spawn_error = |source: io::Error| ApplyError::Spawn {
        hint: spawn_hint(family, &source),
        command: command.clone(),
        source,
    };
    let mut child = Command::new(program)
        .args(args)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(spawn_error)?;
    // Closing stdin (the pipe drops at the end of the match) is iptables-restore's
    // end of input.
    let written = match (stdin, child.stdin.take()) {
        (Some(text), Some(mut pipe)) => pipe.write_all(text.as_bytes()),
        _ => Ok(()),
    };
    let output = child.wait_with_output().map_err(spawn_error)?;
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr).trim().to_owned();
        return Err(ApplyError::Failed {
            hint: failure_hint(family, &stderr),
            stderr: if stderr.is_empty() {
                "(no output)".to_owned()
            } else {
                stderr
            },
            command: command.clone(),
            status: output.status,
        });
    }
    written.map_err(spawn_error)?;
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

fn spawn_hint(family: Family, error: &io::Error) -> &'static str {
    match (error.kind(), family) {
        (io::ErrorKind::NotFound, Family::V4) => {
            " (is iptables installed? init needs iptables-restore and iptables-save on the PATH)"
        }
        (io::ErrorKind::NotFound, Family::V6) => {
            " (is iptables installed? init needs ip6tables-restore and ip6tables-save on the \
             PATH, or --ipv6 false)"
        }
        _ => "",
    }
}

/// A guess at the cause, from the usual messages (the error shows stderr as is).
fn failure_hint(family: Family, stderr: &str) -> &'static str {
    let stderr = stderr.to_ascii_lowercase();
    if stderr.contains("permission denied") || stderr.contains("not permitted") {
        " (init needs the NET_ADMIN and NET_RAW capabilities)"
    } else if family == Family::V6
        && (stderr.contains("address family not supported")
            || stderr.contains("table does not exist"))
    {
        " (no IPv6 here? run with --ipv6 false)"
    } else {
        ""
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_program_says_which_and_what_to_install() {
        let error = run(
            Family::V6,
            "remora-no-such-iptables-restore",
            &RESTORE_ARGS,
            Some("*nat\n"),
        )
        .unwrap_err()
        .to_string();
        assert!(
            error.starts_with("cannot run `remora-no-such-iptables-restore --noflush`: "),
            "{error}"
        );
        assert!(error.contains("--ipv6 false"), "{error}");
    }

    #[test]
    fn a_failing_program_shows_its_stderr() {
        // `sh -c` stands in for iptables-restore refusing its input.
        let error = run(
            Family::V4,
            "sh",
            &["-c", "cat >/dev/null; echo 'iptables-restore: Permission denied (you must be root)' >&2; exit 2"],
            Some("*nat\nCOMMIT\n"),
        )
        .unwrap_err()
        .to_string();
        assert!(error.starts_with("`sh -c "), "{error}");
        assert!(
            error.contains("(exit status: 2): iptables-restore: Permission denied"),
            "{error}"
        );
        assert!(
            error.ends_with("(init needs the NET_ADMIN and NET_RAW capabilities)"),
            "{error}"
        );
    }

    #[test]
    fn a_program_s_stdout_is_returned() {
        let out = run(Family::V4, "cat", &[], Some("*nat\nCOMMIT\n")).unwrap();
        assert_eq!(out, "*nat\nCOMMIT\n");
    }
}
