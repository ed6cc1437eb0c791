//! README's walk through, run as written: the `sh` blocks between
//! `<!-- walkthrough: begin -->` and `<!-- walkthrough: end -->` markers (any
//! number of marked regions; blocks elsewhere are not run), in order, in one
//! bash shell with `set -e`, so every command must exit 0.
//!
//! The conventions README follows so that this works: a command left running
//! ends with `&` (everything the script starts is in one process group, which
//! the test kills by its id at the end); a command that needs something to be
//! up waits for it itself (`curl --retry`, an `until` loop), as a person typing
//! would; the binaries are found through `export PATH=$PWD/target/release:$PATH`,
//! for which the test makes `target/release` a link to the binaries it built.
//!
//! README uses the default, fixed ports, so the script runs in a network
//! namespace of its own (root, `ip`): parallel tests cannot take its ports.
//! Without root it prints a loud SKIPPED block and passes, unless
//! `REMORA_TESTS_REQUIRE_NETNS=1`. Needs python3, curl, redis-server and
//! redis-cli (scripts/test installs them).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use remora_tests::harness::bin_path;

const README: &str = include_str!("../../README.md");
const BEGIN: &str = "<!-- walkthrough: begin";
const END: &str = "<!-- walkthrough: end -->";
const REQUIRE_ENV: &str = "REMORA_TESTS_REQUIRE_NETNS";
/// The whole walk through, waits included, takes well under a minute.
const TIMEOUT: Duration = Duration::from_secs(240);

/// The repository's root.
fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ is inside the repository")
        .to_owned()
}

/// The marked regions of `readme`, in order.
fn regions(readme: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut rest = readme;
    while let Some(start) = rest.find(BEGIN) {
        let after = &rest[start..];
        let body_start = after.find("-->").map_or(after.len(), |i| i + 3);
        let end = after
            .find(END)
            .unwrap_or_else(|| panic!("a walkthrough region has no `{END}`"));
        assert!(body_start <= end, "a malformed `{BEGIN}` marker");
        out.push(&after[body_start..end]);
        rest = &after[end + END.len()..];
    }
    out
}

/// The fenced blocks of `text` whose info string starts with `lang`, each with
/// the line before its opening fence.
fn blocks<'a>(text: &'a str, lang: &str) -> Vec<(&'a str, String)> {
    let mut out = Vec::new();
    let mut lines = text.lines();
    let mut previous = "";
    while let Some(line) = lines.next() {
        let info = line.strip_prefix("```");
        if info.is_some_and(|i| i.split_whitespace().next() == Some(lang)) {
            let mut body = String::new();
            for l in lines.by_ref() {
                if l.starts_with("```") {
                    break;
                }
                body.push_str(l);
                body.push('\n');
            }
            out.push((previous, body));
        } else if info.is_some() {
            // Another language's block: skip to its end.
            for l in lines.by_ref() {
                if l.starts_with("```") {
                    break;
                }
            }
        }
        previous = line;
    }
    out
}

/// The walk through's commands: every `sh` block of the marked regions.
fn walkthrough(readme: &str) -> Vec<String> {
    regions(readme)
        .into_iter()
        .flat_map(|r| blocks(r, "sh"))
        .map(|(_, body)| body)
        .collect()
}

#[test]
fn the_walkthrough_is_marked_and_its_files_are_what_readme_shows() {
    let script = walkthrough(README).concat();
    assert!(
        script.contains("remora control") && script.contains("remora-proxy --bootstrap"),
        "the marked regions hold the walk through:\n{script}"
    );
    // The binaries come from PATH, set once at the start.
    let exports = script
        .lines()
        .filter(|l| l.contains("target/release"))
        .collect::<Vec<_>>();
    assert!(
        exports.len() == 1 && exports[0].starts_with("export PATH=$PWD/target/release:$PATH"),
        "only the PATH line names target/release: {exports:?}"
    );
    assert!(
        !README.contains("HTTP_PROXY"),
        "curl reads the lowercase http_proxy"
    );
    // Every bootstrap the walk through starts a proxy with exists.
    let walk = repo().join("examples/walkthrough");
    for word in script.split_whitespace().collect::<Vec<_>>().windows(2) {
        if word[0] == "--bootstrap" {
            assert!(walk.join(word[1]).is_file(), "no {}", word[1]);
        }
    }
    // A file README shows (`<!-- file: PATH -->` before its block) says that.
    let mut shown = 0;
    for (before, body) in blocks(README, "yaml") {
        let Some(path) = before
            .strip_prefix("<!-- file: ")
            .and_then(|p| p.strip_suffix(" -->"))
        else {
            continue;
        };
        let text = std::fs::read_to_string(repo().join(path))
            .unwrap_or_else(|e| panic!("README shows {path}: {e}"));
        assert!(
            text.contains(&body),
            "README shows {path} as\n{body}\nbut it holds\n{text}"
        );
        shown += 1;
    }
    assert!(
        shown >= 2,
        "README shows the bootstrap files it talks about"
    );
}

/// A network namespace of our own, deleted on drop.
struct Netns {
    name: String,
}

impl Netns {
    fn create() -> Result<Netns, String> {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let name = format!(
            "remora-readme-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        let out = Command::new("ip")
            .args(["netns", "add", &name])
            .output()
            .map_err(|e| format!("cannot run `ip`: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "`ip netns add` failed (not root?): {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        let ns = Netns { name };
        let up = Command::new("ip")
            .args(["netns", "exec", &ns.name, "ip", "link", "set", "lo", "up"])
            .status()
            .map_err(|e| format!("cannot run `ip`: {e}"))?;
        if !up.success() {
            return Err("cannot bring up loopback in the namespace".into());
        }
        Ok(ns)
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "delete", &self.name])
            .status();
    }
}

fn skip(why: &str) {
    if std::env::var_os(REQUIRE_ENV).is_some() {
        panic!("{REQUIRE_ENV} is set but {why}");
    }
    let bar = "!".repeat(78);
    let _ = writeln!(
        std::io::stderr(),
        "\n{bar}\n!! SKIPPED: {why}.\n!! README's walk through was NOT run \
         (run as root with iproute2).\n{bar}\n"
    );
}

/// Made by following the walk through, so not copied from a checkout where
/// someone did.
fn is_made_by_the_walkthrough(name: &str) -> bool {
    name == "data"
        || name == "ca.pem"
        || name == "proxies.json"
        || name.ends_with(".token")
        || name.ends_with(".log")
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let name = entry.file_name();
        if is_made_by_the_walkthrough(&name.to_string_lossy()) {
            continue;
        }
        let target = to.join(&name);
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

/// Sends `signal` to every process of the group `pgid` (the script and all it
/// left running).
fn signal_group(pgid: u32, signal: &str) {
    let _ = Command::new("kill")
        .args([signal, "--", &format!("-{pgid}")])
        .stderr(Stdio::null())
        .status();
}

/// The last lines of every log the walk through wrote, for a failure report.
fn logs(dir: &Path) -> String {
    let mut out = String::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return out;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.extension().is_some_and(|e| e == "log") {
            let text = std::fs::read_to_string(&path).unwrap_or_default();
            let lines: Vec<&str> = text.lines().collect();
            let tail = lines[lines.len().saturating_sub(30)..].join("\n");
            out.push_str(&format!("--- {}\n{tail}\n", path.display()));
        }
    }
    out
}

#[test]
fn the_walkthrough_runs_as_written() {
    let ns = match Netns::create() {
        Ok(ns) => ns,
        Err(why) => return skip(&why),
    };
    let root = tempfile::tempdir().unwrap();
    // `export PATH=$PWD/target/release:$PATH` finds the binaries this test runs.
    let bin_dir = bin_path("remora")
        .unwrap()
        .parent()
        .expect("a binary is in a folder")
        .to_owned();
    std::fs::create_dir_all(root.path().join("target")).unwrap();
    std::os::unix::fs::symlink(&bin_dir, root.path().join("target/release")).unwrap();
    let walk = root.path().join("examples/walkthrough");
    copy_dir(&repo().join("examples/walkthrough"), &walk);

    let script = format!(
        "set -e\ncd '{}'\n{}",
        root.path().display(),
        walkthrough(README).concat()
    );
    let script_path = root.path().join("walkthrough.sh");
    std::fs::write(&script_path, &script).unwrap();
    let (stdout_path, stderr_path) = (root.path().join("stdout"), root.path().join("stderr"));
    let mut child = {
        use std::os::unix::process::CommandExt;
        Command::new("ip")
            .args(["netns", "exec", &ns.name, "bash"])
            .arg(&script_path)
            .current_dir(root.path())
            .env("HOME", root.path())
            .env_remove("REMORA_DATA_DIR")
            .env_remove("REMORA_API_ADDR")
            .env_remove("REMORA_API_TOKEN_FILE")
            .env_remove("http_proxy")
            .env_remove("HTTP_PROXY")
            .env_remove("no_proxy")
            .env_remove("NO_PROXY")
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&stdout_path).unwrap())
            .stderr(std::fs::File::create(&stderr_path).unwrap())
            // Its own process group: whatever it leaves running is stopped by
            // the group's id.
            .process_group(0)
            .spawn()
            .unwrap()
    };
    let pgid = child.id();
    let deadline = Instant::now() + TIMEOUT;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break Some(status);
        }
        if Instant::now() > deadline {
            break None;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    signal_group(pgid, "-TERM");
    std::thread::sleep(Duration::from_secs(1));
    signal_group(pgid, "-KILL");
    let _ = child.wait();

    let stdout = std::fs::read_to_string(&stdout_path).unwrap_or_default();
    let stderr = std::fs::read_to_string(&stderr_path).unwrap_or_default();
    let report = format!(
        "stdout:\n{stdout}\nstderr:\n{stderr}\nlogs:\n{}",
        logs(&walk)
    );
    match status {
        None => panic!("the walk through did not finish within {TIMEOUT:?}\n{report}"),
        Some(s) => assert!(s.success(), "the walk through failed ({s})\n{report}"),
    }
    for expected in [
        "mesh: ok",                          // remora check
        "orders v",                          // the first request, v1 or v2
        "ready",                             // web's /ready
        "orders v2",                         // after the split moved
        "\"weight\": 100",                   // the weights in web's config dump
        "SRC -> DST",                        // remora stat
        "OK",                                // redis-cli SET, through the mesh
        "remora_tcp_hop_",                   // TCP hop metrics
        "REMORA_INBOUND",                    // remora-proxy init --dry-run
        "httproute/orders-split configured", // remora apply --wait
        "config from state dir",             // web's /ready, restarted without a control plane
    ] {
        assert!(stdout.contains(expected), "no `{expected}` in\n{report}");
    }
    // The rolling update under load lost no request.
    assert!(!stdout.contains("LOST request"), "{report}");
}
