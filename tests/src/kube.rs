//! The Kubernetes API server double (`tests/scripts/kube_apiserver.py`) as a child
//! process, with the real `kubectl` pointed at it.
//!
//! No API server can run where the tests run; the double speaks the wire format
//! (discovery, CRUD, status subresources, list and watch with resourceVersion,
//! bookmarks and 410 Gone, TokenReview, mutating admission webhooks) from memory.
//! Each [`KubeDouble`] has its own temporary folder with a kubeconfig, kubectl's
//! `HOME` and discovery cache (so nothing leaks between tests), the double's log and
//! its state file (so [`KubeDouble::restart`] keeps the objects).
//!
//! The methods are for tests: they panic with the double's log when something
//! outside the test's control fails (the process does not start, a request cannot
//! be sent), and return what the API answered otherwise.
//!
//! Not for: anything beyond loopback; the double has no authentication.

use std::fs::File;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tempfile::TempDir;

/// How long the double has to write its port file.
const START_TIMEOUT: Duration = Duration::from_secs(10);
/// How long [`KubeDouble::stop`] waits for the state to be saved after SIGTERM.
const STOP_TIMEOUT: Duration = Duration::from_secs(5);
/// How long one request to the double may take (a watch ends by its own
/// `timeoutSeconds`, which must be shorter).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
const POLL: Duration = Duration::from_millis(20);

/// What went wrong starting or talking to the double.
#[derive(Debug, thiserror::Error)]
pub enum KubeDoubleError {
    #[error("cannot run {program}: {source}")]
    Spawn {
        program: String,
        source: std::io::Error,
    },
    #[error("the Kubernetes API double exited ({status}) before listening; its log:\n{log}")]
    Exited { status: String, log: String },
    #[error("the Kubernetes API double did not listen within {timeout:?}; its log:\n{log}")]
    NotListening { timeout: Duration, log: String },
    #[error("{what}: {source}")]
    Io {
        what: String,
        source: std::io::Error,
    },
    #[error("{method} {path}: malformed answer: {message}")]
    Http {
        method: String,
        path: String,
        message: String,
    },
}

/// A running Kubernetes API server double on 127.0.0.1, killed when dropped.
pub struct KubeDouble {
    dir: TempDir,
    port: u16,
    kubeconfig: PathBuf,
    args: Vec<String>,
    child: Mutex<Option<Child>>,
}

/// The double's script, next to this crate's sources.
fn script_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("scripts/kube_apiserver.py")
}

impl KubeDouble {
    /// Start the double on 127.0.0.1, port 0, and return once it listens.
    pub fn start() -> KubeDouble {
        Self::start_with(&[])
    }

    /// Like [`KubeDouble::start`] with more flags for the script, e.g.
    /// `["--preload-services", "1000", "--preload-pods", "5000"]` (namespace `bench`).
    pub fn start_with(args: &[&str]) -> KubeDouble {
        match Self::try_start_with(args) {
            Ok(double) => double,
            Err(e) => panic!("cannot start the Kubernetes API double: {e}"),
        }
    }

    /// Like [`KubeDouble::start_with`], returning the error instead of panicking.
    pub fn try_start_with(args: &[&str]) -> Result<KubeDouble, KubeDoubleError> {
        let dir = tempfile::Builder::new()
            .prefix("kube-double")
            .tempdir()
            .map_err(|source| KubeDoubleError::Io {
                what: "cannot create a temporary folder".to_owned(),
                source,
            })?;
        let args: Vec<String> = args.iter().map(|a| (*a).to_owned()).collect();
        let (child, port) = spawn(dir.path(), 0, &args)?;
        let kubeconfig = dir.path().join("kubeconfig");
        write_kubeconfig(&kubeconfig, port)?;
        tracing::debug!(port, pid = child.id(), "Kubernetes API double started");
        Ok(KubeDouble {
            dir,
            port,
            kubeconfig,
            args,
            child: Mutex::new(Some(child)),
        })
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The port it listens on (the same after [`KubeDouble::restart`]).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// A kubeconfig pointing at the double (context `double`, namespace `default`).
    pub fn kubeconfig(&self) -> &Path {
        &self.kubeconfig
    }

    /// Everything the double logged so far (requests, webhook failures).
    pub fn logs(&self) -> String {
        read_log(self.dir.path())
    }

    /// Run the real `kubectl` against the double, with its own `HOME` and cache.
    pub fn kubectl(&self, args: &[&str]) -> Output {
        self.kubectl_with_input(args, None)
    }

    /// `kubectl` that must succeed: its stdout, or a panic with its stderr.
    pub fn kubectl_ok(&self, args: &[&str]) -> String {
        let out = self.kubectl(args);
        self.expect_success(args, &out)
    }

    /// `kubectl` with `input` on stdin (`["apply", "-f", "-"]`) that must succeed.
    pub fn kubectl_stdin(&self, args: &[&str], input: &str) -> String {
        let out = self.kubectl_with_input(args, Some(input));
        self.expect_success(args, &out)
    }

    fn kubectl_with_input(&self, args: &[&str], input: Option<&str>) -> Output {
        let home = self.dir.path().join("home");
        let mut command = Command::new("kubectl");
        command
            .arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .arg("--cache-dir")
            .arg(home.join("cache"))
            .args(args)
            .env("HOME", &home)
            .env_remove("KUBECONFIG")
            .stdin(if input.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = match command.spawn() {
            Ok(child) => child,
            Err(e) => panic!(
                "cannot run kubectl (Debian's kubernetes-client; scripts/test installs it): {e}"
            ),
        };
        if let (Some(text), Some(mut stdin)) = (input, child.stdin.take()) {
            if let Err(e) = stdin.write_all(text.as_bytes()) {
                panic!("cannot write kubectl's stdin for {args:?}: {e}");
            }
        }
        match child.wait_with_output() {
            Ok(out) => out,
            Err(e) => panic!("kubectl {args:?} did not finish: {e}"),
        }
    }

    fn expect_success(&self, args: &[&str], out: &Output) -> String {
        if !out.status.success() {
            panic!(
                "kubectl {args:?} failed ({}):\nstderr: {}\nstdout: {}\ndouble's log tail:\n{}",
                out.status,
                String::from_utf8_lossy(&out.stderr),
                String::from_utf8_lossy(&out.stdout),
                tail(&self.logs(), 40)
            );
        }
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// `GET path` (an API path with its query, e.g. `/api/v1/namespaces`): the JSON
    /// body, which is a `Status` object when the API answered an error.
    pub fn get_json(&self, path: &str) -> Value {
        self.request("GET", path, None).1
    }

    /// One request to the double: the status code and the JSON body.
    pub fn request(&self, method: &str, path: &str, body: Option<&Value>) -> (u16, Value) {
        match http_request(self.port, method, path, body) {
            Ok((status, text)) => match serde_json::from_str(&text) {
                Ok(value) => (status, value),
                Err(e) => panic!("{method} {path}: answer {status} is not JSON ({e}): {text}"),
            },
            Err(e) => panic!("{e}\ndouble's log tail:\n{}", tail(&self.logs(), 40)),
        }
    }

    /// A watch request (`path` with `watch=1` and a `timeoutSeconds`, so that it
    /// ends): every event the double sent, in order.
    pub fn watch_events(&self, path: &str) -> Vec<Value> {
        match http_request(self.port, "GET", path, None) {
            Ok((_, text)) => text
                .lines()
                .filter(|line| line.starts_with('{'))
                .filter_map(|line| serde_json::from_str(line).ok())
                .collect(),
            Err(e) => panic!("{e}\ndouble's log tail:\n{}", tail(&self.logs(), 40)),
        }
    }

    /// Register `token`: TokenReview then authenticates it as
    /// `system:serviceaccount:NAMESPACE:SERVICE_ACCOUNT` for `audiences`.
    pub fn add_token(
        &self,
        token: &str,
        namespace: &str,
        service_account: &str,
        audiences: &[&str],
    ) {
        let body = json!({
            "token": token,
            "namespace": namespace,
            "serviceAccount": service_account,
            "audiences": audiences,
        });
        let (status, answer) = self.request("POST", "/_double/tokens", Some(&body));
        assert_eq!(status, 200, "cannot register a token: {answer}");
    }

    /// Every resourceVersion issued so far becomes too old: watches and lists from
    /// them get 410 Gone. Returns the first resourceVersion still valid.
    pub fn compact(&self) -> String {
        let (status, answer) = self.request("POST", "/_double/compact", None);
        assert_eq!(status, 200, "cannot compact: {answer}");
        answer["resourceVersion"]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }

    /// Every admission webhook call: `configuration`, `webhook`, `url`, `request`
    /// (the AdmissionReview sent) and `response` or `error`.
    pub fn webhook_calls(&self) -> Vec<Value> {
        as_list(self.get_json("/_double/webhook-calls"))
    }

    /// Every API request so far: `method`, `path`, `query` (raw), `params`,
    /// `accept`, `contentType`. Tests check with it how a client listed and watched.
    pub fn requests(&self) -> Vec<Value> {
        as_list(self.get_json("/_double/requests"))
    }

    /// Stop answering: the process saves its objects and exits, the port closes.
    pub fn stop(&self) {
        let mut child = self.lock();
        if let Some(mut running) = child.take() {
            terminate(&mut running);
            tracing::debug!(port = self.port, "Kubernetes API double stopped");
        }
    }

    /// Answer again on the same port with the same objects (stopping first if
    /// running). Every resourceVersion from before is gone (410), so clients relist.
    pub fn restart(&self) {
        self.stop();
        let mut child = self.lock();
        let deadline = Instant::now() + START_TIMEOUT;
        // The port was just released; a start that loses a race for it is retried.
        loop {
            match spawn(self.dir.path(), self.port, &self.args) {
                Ok((running, _)) => {
                    *child = Some(running);
                    return;
                }
                Err(e) if Instant::now() < deadline => {
                    tracing::debug!(error = %e, "Kubernetes API double restart retried");
                    std::thread::sleep(POLL * 5);
                }
                Err(e) => panic!("cannot restart the Kubernetes API double: {e}"),
            }
        }
    }

    fn lock(&self) -> MutexGuard<'_, Option<Child>> {
        self.child
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl Drop for KubeDouble {
    fn drop(&mut self) {
        let mut child = self.lock();
        if let Some(mut running) = child.take() {
            let _ = running.kill();
            let _ = running.wait();
        }
        if std::thread::panicking() {
            eprintln!(
                "----- Kubernetes API double log -----\n{}\n----- end -----",
                tail(&read_log(self.dir.path()), 200)
            );
        }
    }
}

/// Start the script on `port` (0: any) and wait for its port file.
fn spawn(dir: &Path, port: u16, args: &[String]) -> Result<(Child, u16), KubeDoubleError> {
    let port_file = dir.join("port");
    let _ = std::fs::remove_file(&port_file);
    let log_path = dir.join("kube-double.log");
    let log = File::options()
        .create(true)
        .append(true)
        .open(&log_path)
        .map_err(|source| KubeDoubleError::Io {
            what: format!("cannot open {}", log_path.display()),
            source,
        })?;
    let log_err = log.try_clone().map_err(|source| KubeDoubleError::Io {
        what: "cannot clone the log file handle".to_owned(),
        source,
    })?;
    let mut child = Command::new("python3")
        .arg(script_path())
        .arg("--port")
        .arg(port.to_string())
        .arg("--port-file")
        .arg(&port_file)
        .arg("--state-file")
        .arg(dir.join("state.json"))
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::from(log))
        .stderr(Stdio::from(log_err))
        .spawn()
        .map_err(|source| KubeDoubleError::Spawn {
            program: "python3".to_owned(),
            source,
        })?;
    let deadline = Instant::now() + START_TIMEOUT;
    loop {
        if let Some(bound) = std::fs::read_to_string(&port_file)
            .ok()
            .and_then(|text| text.trim().parse::<u16>().ok())
        {
            return Ok((child, bound));
        }
        if let Ok(Some(status)) = child.try_wait() {
            return Err(KubeDoubleError::Exited {
                status: status.to_string(),
                log: tail(&read_log(dir), 40),
            });
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            return Err(KubeDoubleError::NotListening {
                timeout: START_TIMEOUT,
                log: tail(&read_log(dir), 40),
            });
        }
        std::thread::sleep(POLL);
    }
}

/// SIGTERM (the double saves its state), then SIGKILL if it lingers.
fn terminate(child: &mut Child) {
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let deadline = Instant::now() + STOP_TIMEOUT;
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(POLL);
    }
    let _ = child.kill();
    let _ = child.wait();
}

fn write_kubeconfig(path: &Path, port: u16) -> Result<(), KubeDoubleError> {
    let text = format!(
        "apiVersion: v1
kind: Config
clusters:
- name: double
  cluster:
    server: http://127.0.0.1:{port}
users:
- name: double
  user:
    token: double-admin
contexts:
- name: double
  context:
    cluster: double
    user: double
    namespace: default
current-context: double
"
    );
    std::fs::write(path, text).map_err(|source| KubeDoubleError::Io {
        what: format!("cannot write {}", path.display()),
        source,
    })
}

/// One HTTP/1.1 request on its own connection; the double closes it after the
/// answer (`Connection: close`), so the body is everything after the headers.
/// Watch bodies stay chunked; [`KubeDouble::watch_events`] reads their lines.
fn http_request(
    port: u16,
    method: &str,
    path: &str,
    body: Option<&Value>,
) -> Result<(u16, String), KubeDoubleError> {
    let io = |what: &str| {
        let what = format!("{method} {path}: {what}");
        move |source: std::io::Error| KubeDoubleError::Io { what, source }
    };
    let payload = body.map(Value::to_string).unwrap_or_default();
    let mut stream = TcpStream::connect(("127.0.0.1", port)).map_err(io("cannot connect"))?;
    stream
        .set_read_timeout(Some(REQUEST_TIMEOUT))
        .map_err(io("cannot set a timeout"))?;
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nAccept: application/json\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{payload}",
        payload.len()
    );
    stream
        .write_all(request.as_bytes())
        .map_err(io("cannot send"))?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).map_err(io("cannot read"))?;
    let text = String::from_utf8_lossy(&raw).into_owned();
    let malformed = |message: &str| KubeDoubleError::Http {
        method: method.to_owned(),
        path: path.to_owned(),
        message: format!("{message}: {}", tail(&text, 5)),
    };
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| malformed("no end of headers"))?;
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse::<u16>().ok())
        .ok_or_else(|| malformed("no status code"))?;
    Ok((status, body.to_owned()))
}

fn as_list(value: Value) -> Vec<Value> {
    match value {
        Value::Array(items) => items,
        other => vec![other],
    }
}

fn read_log(dir: &Path) -> String {
    std::fs::read_to_string(dir.join("kube-double.log")).unwrap_or_default()
}

fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}
