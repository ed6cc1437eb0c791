//! Bootstrap tokens (file mode): `remora token create` mints a random token that
//! grants one identity until it expires. Only its SHA-256 is stored (`tokens.json`
//! in the data directory, mode 0600), so the file does not hold usable secrets.

use std::fs::OpenOptions;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use ring::digest::{digest, SHA256};
use ring::rand::{SecureRandom, SystemRandom};
use serde::{Deserialize, Serialize};

pub const TOKENS_FILE: &str = "tokens.json";
/// Every bootstrap token starts with it: anything else is not looked up here.
pub(super) const PREFIX: &str = "rmt_";

/// What a token grants: one namespace and service account.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Grant {
    pub namespace: String,
    pub service_account: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Stored {
    sha256: String,
    #[serde(flatten)]
    grant: Grant,
    expires_unix: u64,
    /// An admin token (`remora token create --admin`) reads the HTTP API and
    /// grants no workload identity.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    admin: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("unknown token")]
    Unknown,
    #[error("token expired")]
    Expired,
    #[error("an admin token grants no workload identity")]
    AdminForWorkload,
    #[error("a workload's bootstrap token does not grant the API: create one with `remora token create --admin`")]
    NotAdmin,
    #[error("token store {path}: {message}")]
    Store { path: PathBuf, message: String },
}

#[derive(Debug, Clone)]
pub struct TokenStore {
    path: PathBuf,
}

impl TokenStore {
    pub fn new(data_dir: &Path) -> Self {
        Self {
            path: data_dir.join(TOKENS_FILE),
        }
    }

    /// Mints a token for `grant`, valid for `ttl`.
    pub fn create(&self, grant: Grant, ttl: Duration) -> Result<String, TokenError> {
        self.mint(grant, ttl, false)
    }

    /// Mints an admin token (the HTTP API), valid for `ttl`.
    pub fn create_admin(&self, ttl: Duration) -> Result<String, TokenError> {
        let none = Grant {
            namespace: String::new(),
            service_account: String::new(),
        };
        self.mint(none, ttl, true)
    }

    fn mint(&self, grant: Grant, ttl: Duration, admin: bool) -> Result<String, TokenError> {
        let mut secret = [0u8; 32];
        SystemRandom::new()
            .fill(&mut secret)
            .map_err(|_| self.error("no system randomness"))?;
        let token = format!("{PREFIX}{}", hex(&secret));
        let mut all = self.load()?;
        let now = unix_now();
        all.retain(|t| t.expires_unix > now);
        all.push(Stored {
            sha256: hash(&token),
            grant,
            expires_unix: now.saturating_add(ttl.as_secs()),
            admin,
        });
        self.save(&all)?;
        Ok(token)
    }

    /// The grant of a valid token. Read from disk each time: tokens are minted by
    /// another process, and certificates are rare.
    pub fn verify(&self, token: &str) -> Result<Grant, TokenError> {
        let stored = self.valid(token)?;
        if stored.admin {
            return Err(TokenError::AdminForWorkload);
        }
        Ok(stored.grant)
    }

    /// Whether `token` is a valid admin token.
    pub fn verify_admin(&self, token: &str) -> Result<(), TokenError> {
        match self.valid(token)?.admin {
            true => Ok(()),
            false => Err(TokenError::NotAdmin),
        }
    }

    fn valid(&self, token: &str) -> Result<Stored, TokenError> {
        let wanted = hash(token);
        let stored = self
            .load()?
            .into_iter()
            .find(|t| t.sha256 == wanted)
            .ok_or(TokenError::Unknown)?;
        if stored.expires_unix <= unix_now() {
            return Err(TokenError::Expired);
        }
        Ok(stored)
    }

    fn load(&self) -> Result<Vec<Stored>, TokenError> {
        match std::fs::read_to_string(&self.path) {
            Ok(text) => {
                serde_json::from_str(&text).map_err(|e| self.error(&format!("not valid: {e}")))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
            Err(e) => Err(self.error(&e.to_string())),
        }
    }

    fn save(&self, all: &[Stored]) -> Result<(), TokenError> {
        let err = |e: std::io::Error| self.error(&e.to_string());
        if let Some(dir) = self.path.parent() {
            std::fs::create_dir_all(dir).map_err(err)?;
        }
        let tmp = self.path.with_extension("json.tmp");
        let _ = std::fs::remove_file(&tmp);
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)
            .map_err(err)?;
        let text = serde_json::to_string_pretty(all).map_err(|e| self.error(&e.to_string()))?;
        file.write_all(text.as_bytes()).map_err(err)?;
        file.sync_all().map_err(err)?;
        std::fs::rename(&tmp, &self.path).map_err(err)
    }

    fn error(&self, message: &str) -> TokenError {
        TokenError::Store {
            path: self.path.clone(),
            message: message.to_owned(),
        }
    }
}

fn hash(token: &str) -> String {
    hex(digest(&SHA256, token.as_bytes()).as_ref())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grant() -> Grant {
        Grant {
            namespace: "shop".into(),
            service_account: "orders".into(),
        }
    }

    #[test]
    fn a_minted_token_grants_its_identity_and_only_its_hash_is_stored() {
        let dir = tempfile::tempdir().unwrap();
        let store = TokenStore::new(dir.path());
        let token = store.create(grant(), Duration::from_secs(3600)).unwrap();
        assert!(token.starts_with(PREFIX));
        assert_eq!(store.verify(&token).unwrap(), grant());
        let file = std::fs::read_to_string(dir.path().join(TOKENS_FILE)).unwrap();
        assert!(!file.contains(&token), "the token itself is not stored");
        assert!(matches!(
            store.verify("rmt_guess"),
            Err(TokenError::Unknown)
        ));
    }

    #[test]
    fn an_expired_token_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let store = TokenStore::new(dir.path());
        let token = store.create(grant(), Duration::ZERO).unwrap();
        assert!(matches!(store.verify(&token), Err(TokenError::Expired)));
    }

    #[test]
    fn an_admin_token_reads_the_api_and_grants_no_identity() {
        let dir = tempfile::tempdir().unwrap();
        let store = TokenStore::new(dir.path());
        let admin = store.create_admin(Duration::from_secs(3600)).unwrap();
        let workload = store.create(grant(), Duration::from_secs(3600)).unwrap();
        store.verify_admin(&admin).unwrap();
        assert!(matches!(
            store.verify(&admin),
            Err(TokenError::AdminForWorkload)
        ));
        assert!(matches!(
            store.verify_admin(&workload),
            Err(TokenError::NotAdmin)
        ));
        assert!(matches!(
            store.verify_admin("rmt_guess"),
            Err(TokenError::Unknown)
        ));
    }
}
