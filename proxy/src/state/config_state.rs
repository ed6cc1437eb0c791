//! The config side of the state directory at run time: the saved config to
//! start from (checked: whole, and this proxy's), where the config in force came
//! from, and the writer that keeps the last accepted config on disk.
//!
//! Not for: compiling. The xDS client turns a saved config back into a snapshot
//! with the code that applies a response from the control plane.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::Serialize;
use tokio::sync::watch;

use super::config::{self, Owner, SavedConfig, SavedType, CONFIG_FILE};
use super::StateDir;

/// The config file holds endpoints and policies: this user's business alone.
const FILE_MODE: u32 = 0o600;

/// Where the config in force came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Source {
    /// Restored at start; the control plane has not answered yet.
    StateDir,
    /// The control plane sent it (a response was accepted).
    ControlPlane,
}

/// A saved config's versions (by type URL) and when it was saved.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Stamp {
    pub versions: BTreeMap<String, String>,
    pub saved_unix: u64,
}

impl Stamp {
    fn of(saved: &SavedConfig) -> Self {
        Stamp {
            versions: saved
                .types
                .iter()
                .map(|t| (t.type_url.clone(), t.version.clone()))
                .collect(),
            saved_unix: saved.saved_unix,
        }
    }
}

/// What `/config_dump` shows of the state directory.
#[derive(Debug, Clone, Serialize)]
pub struct StateView {
    pub dir: PathBuf,
    /// `None` until there is a config.
    pub source: Option<Source>,
    /// The config this proxy started from, when it restored one.
    pub restored: Option<Stamp>,
    /// What the state directory holds now (the last write).
    pub saved: Option<Stamp>,
    /// Why the saved config was not used at start, if it was not.
    pub load_error: Option<String>,
    /// Why the last write failed; cleared by the next that succeeds.
    pub write_error: Option<String>,
}

pub struct ConfigState {
    dir: Arc<StateDir>,
    owner: Owner,
    node_id: String,
    /// The latest accepted config, for the writer: the last value wins, so a
    /// burst of updates costs one write.
    pending: watch::Sender<Option<Arc<SavedConfig>>>,
    view: Arc<Mutex<StateView>>,
}

impl ConfigState {
    /// Starts the writer on the current runtime; it ends when this is dropped.
    pub fn start(dir: Arc<StateDir>, owner: Owner, node_id: String) -> Arc<Self> {
        let (pending, rx) = watch::channel(None);
        let view = Arc::new(Mutex::new(StateView {
            dir: dir.path().to_owned(),
            source: None,
            restored: None,
            saved: None,
            load_error: None,
            write_error: None,
        }));
        tokio::spawn(write_loop(dir.clone(), view.clone(), rx));
        Arc::new(ConfigState {
            dir,
            owner,
            node_id,
            pending,
            view,
        })
    }

    /// The config saved before this start, if it is there, whole, and was saved
    /// for this proxy (same service, namespace and identity). Anything else is
    /// logged and ignored: the proxy then starts as it would without state.
    pub fn load(&self) -> Option<SavedConfig> {
        let path = self.dir.file(CONFIG_FILE);
        let bytes = match self.dir.read(CONFIG_FILE) {
            Ok(Some(bytes)) => bytes,
            Ok(None) => {
                tracing::info!(path = %path.display(), "no saved config in the state dir: waiting for the control plane");
                return None;
            }
            Err(e) => {
                self.unusable(format!("{}: cannot read: {e}", path.display()));
                return None;
            }
        };
        let saved = match config::decode(&bytes) {
            Ok(saved) => saved,
            Err(e) => {
                self.unusable(format!("{}: {e}", path.display()));
                return None;
            }
        };
        if saved.owner != self.owner {
            self.unusable(format!(
                "{}: saved for {}, this proxy is {}",
                path.display(),
                saved.owner,
                self.owner
            ));
            return None;
        }
        Some(saved)
    }

    /// The saved config compiled and is in force until the control plane answers.
    pub fn restored(&self, saved: &SavedConfig) {
        let stamp = Stamp::of(saved);
        let age_seconds = now_unix().saturating_sub(saved.saved_unix);
        tracing::info!(
            dir = %self.dir.path().display(),
            versions = ?stamp.versions,
            saved_by = %saved.node_id,
            age_seconds,
            "serving the config from the state dir until the control plane answers"
        );
        let mut view = self.lock();
        view.source = Some(Source::StateDir);
        view.restored = Some(stamp);
    }

    /// The saved config does not compile (a proxy of another version may have
    /// written it): ignored.
    pub fn restore_failed(&self, error: &dyn std::fmt::Display) {
        let path = self.dir.file(CONFIG_FILE);
        self.unusable(format!("{}: does not compile: {error}", path.display()));
    }

    fn unusable(&self, reason: String) {
        tracing::warn!(%reason, "ignoring the config in the state dir: starting without it, waiting for the control plane");
        self.lock().load_error = Some(reason);
    }

    /// A response was accepted: from now on the config is the control plane's,
    /// and `types` (every type's accepted resources) is what to keep.
    pub fn accepted(&self, types: Vec<SavedType>) {
        {
            let mut view = self.lock();
            if view.source == Some(Source::StateDir) {
                tracing::info!(
                    "the control plane answered: its config replaces the one from the state dir"
                );
            }
            view.source = Some(Source::ControlPlane);
        }
        let saved = SavedConfig {
            owner: self.owner.clone(),
            node_id: self.node_id.clone(),
            saved_unix: now_unix(),
            types,
        };
        self.pending.send_replace(Some(Arc::new(saved)));
    }

    /// Where the config in force came from; `None` before there is one.
    pub fn source(&self) -> Option<Source> {
        self.lock().source
    }

    pub fn view(&self) -> StateView {
        self.lock().clone()
    }

    fn lock(&self) -> MutexGuard<'_, StateView> {
        lock(&self.view)
    }
}

fn lock(view: &Mutex<StateView>) -> MutexGuard<'_, StateView> {
    view.lock().unwrap_or_else(|p| p.into_inner())
}

fn now_unix() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Writes each accepted config, the latest first: encoding and the disk flushes
/// run on the blocking pool, never on the thread that serves requests.
async fn write_loop(
    dir: Arc<StateDir>,
    view: Arc<Mutex<StateView>>,
    mut pending: watch::Receiver<Option<Arc<SavedConfig>>>,
) {
    while pending.changed().await.is_ok() {
        let Some(saved) = pending.borrow_and_update().as_ref().cloned() else {
            continue;
        };
        let (d, s) = (dir.clone(), saved.clone());
        let written = tokio::task::spawn_blocking(move || {
            d.write_atomic(CONFIG_FILE, &config::encode(&s), FILE_MODE)
        })
        .await;
        let error = match written {
            Ok(Ok(())) => None,
            Ok(Err(e)) => Some(e.to_string()),
            Err(e) => Some(e.to_string()),
        };
        let mut view = lock(&view);
        match error {
            None => {
                tracing::debug!(dir = %dir.path().display(), "config saved to the state dir");
                view.saved = Some(Stamp::of(&saved));
                view.write_error = None;
            }
            Some(error) => {
                tracing::warn!(path = %dir.file(CONFIG_FILE).display(), %error, "cannot save the config to the state dir: a restart without the control plane would start from an older one");
                view.write_error = Some(error);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;
    use std::time::Duration;

    use remora_proto::xds::google::protobuf::Any;

    use super::*;

    fn owner(service: &str) -> Owner {
        Owner {
            service: service.into(),
            namespace: "default".into(),
            identity: format!("spiffe://cluster.local/ns/default/sa/{service}"),
        }
    }

    fn types(version: &str) -> Vec<SavedType> {
        vec![SavedType {
            type_url: "type.googleapis.com/envoy.config.cluster.v3.Cluster".into(),
            version: version.into(),
            resources: vec![Any {
                type_url: "type.googleapis.com/envoy.config.cluster.v3.Cluster".into(),
                value: version.as_bytes().to_vec(),
            }],
        }]
    }

    async fn saved(state: &ConfigState, version: &str) {
        for _ in 0..500 {
            let view = state.view();
            if let Some(stamp) = &view.saved {
                if stamp.versions.values().any(|v| v == version) {
                    return;
                }
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("version {version} never saved: {:?}", state.view());
    }

    #[tokio::test]
    async fn an_accepted_config_is_there_after_a_restart() {
        let root = tempfile::tempdir().unwrap();
        let dir = StateDir::open(&root.path().join("state")).unwrap();
        let first = ConfigState::start(dir.clone(), owner("orders"), "orders-1".into());
        assert_eq!(first.load(), None, "nothing saved yet");
        assert_eq!(first.view().load_error, None, "no file is no error");
        first.accepted(types("v1"));
        first.accepted(types("v2"));
        saved(&first, "v2").await;
        assert_eq!(first.source(), Some(Source::ControlPlane));
        let mode = std::fs::metadata(dir.file(CONFIG_FILE))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);

        // The next start, with another node id (the default one has the pid).
        let second = ConfigState::start(dir, owner("orders"), "orders-2".into());
        let restored = second.load().expect("the saved config");
        assert_eq!(restored.types, types("v2"));
        assert_eq!(restored.node_id, "orders-1");
        assert_eq!(second.source(), None);
        second.restored(&restored);
        assert_eq!(second.source(), Some(Source::StateDir));
        let view = second.view();
        assert_eq!(view.restored.unwrap().versions.len(), 1);
        second.accepted(types("v3"));
        assert_eq!(second.source(), Some(Source::ControlPlane));
    }

    #[tokio::test]
    async fn a_config_saved_for_another_proxy_is_not_used() {
        let root = tempfile::tempdir().unwrap();
        let dir = StateDir::open(&root.path().join("state")).unwrap();
        let orders = ConfigState::start(dir.clone(), owner("orders"), "orders-1".into());
        orders.accepted(types("v1"));
        saved(&orders, "v1").await;

        let web = ConfigState::start(dir.clone(), owner("web"), "web-1".into());
        assert_eq!(web.load(), None);
        let error = web.view().load_error.unwrap();
        assert!(error.contains("saved for orders.default"), "{error}");
        assert!(error.contains("this proxy is web.default"), "{error}");

        let mut other_account = owner("orders");
        other_account.identity = "spiffe://cluster.local/ns/default/sa/admin".into();
        let impostor = ConfigState::start(dir, other_account, "orders-2".into());
        assert_eq!(impostor.load(), None);
    }

    #[tokio::test]
    async fn a_damaged_config_is_not_used_and_says_why() {
        let root = tempfile::tempdir().unwrap();
        let dir = StateDir::open(&root.path().join("state")).unwrap();
        let first = ConfigState::start(dir.clone(), owner("orders"), "orders-1".into());
        first.accepted(types("v1"));
        saved(&first, "v1").await;
        let path = dir.file(CONFIG_FILE);
        let bytes = std::fs::read(&path).unwrap();
        std::fs::write(&path, &bytes[..bytes.len() - 3]).unwrap();

        let second = ConfigState::start(dir, owner("orders"), "orders-2".into());
        assert_eq!(second.load(), None);
        let error = second.view().load_error.unwrap();
        assert!(error.contains("cut short"), "{error}");
        assert!(error.contains("config.state"), "{error}");
        // It starts as without state, and the next accepted config is saved.
        second.accepted(types("v2"));
        saved(&second, "v2").await;
        assert_eq!(second.load().unwrap().types, types("v2"));
    }
}
