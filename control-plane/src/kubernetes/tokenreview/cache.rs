//! Review answers by token hash (the token itself is not kept), each good for
//! a while: the accepted for a minute, the refused for a few seconds.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use ring::digest::{digest, SHA256};
use tokio::time::Instant;

/// The most answers kept per cache: one per pod of a large mesh.
pub const CACHE_MAX: usize = 10_000;

/// A token's cache key: its SHA-256.
pub fn cache_key(token: &str) -> [u8; 32] {
    let mut key = [0u8; 32];
    key.copy_from_slice(digest(&SHA256, token.as_bytes()).as_ref());
    key
}

/// Answers by token hash, each good for `ttl`; at most [`CACHE_MAX`], the
/// expired dropped first and then everything (a full cache only costs
/// reviews again, and stays bounded whatever callers send).
pub struct ReviewCache<T> {
    entries: Mutex<HashMap<[u8; 32], (T, Instant)>>,
    ttl: Duration,
}

impl<T: Clone> ReviewCache<T> {
    pub fn new(ttl: Duration) -> Self {
        Self {
            entries: Mutex::new(HashMap::new()),
            ttl,
        }
    }

    pub fn get(&self, key: &[u8; 32], now: Instant) -> Option<T> {
        let entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        entries
            .get(key)
            .filter(|(_, until)| now < *until)
            .map(|(answer, _)| answer.clone())
    }

    pub fn put(&self, key: [u8; 32], answer: T, now: Instant) {
        let mut entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        if entries.len() >= CACHE_MAX {
            entries.retain(|_, (_, until)| now < *until);
            if entries.len() >= CACHE_MAX {
                entries.clear();
            }
        }
        entries.insert(key, (answer, now + self.ttl));
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.entries
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }
}
