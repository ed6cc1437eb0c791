//! What the admin endpoint reports about the xDS stream. Written by the client,
//! read rarely; never touched by the request path.

use std::collections::BTreeMap;
use std::sync::Mutex;

use serde::Serialize;

#[derive(Debug, Default, Clone, Serialize)]
pub struct TypeStatus {
    pub version: String,
    pub last_nack: Option<String>,
    /// Responses accepted and rejected.
    pub updates: u64,
    pub nacks: u64,
    /// When the last response was accepted (seconds since the Unix epoch).
    pub last_update_unix: f64,
}

#[derive(Debug, Default)]
pub struct XdsStatus {
    inner: Mutex<StatusInner>,
}

#[derive(Debug, Default, Clone, Serialize)]
pub struct StatusInner {
    pub connected: bool,
    pub types: BTreeMap<&'static str, TypeStatus>,
    /// Why the last stream failed (e.g. the control plane refused this proxy),
    /// until a response is accepted.
    pub last_error: Option<String>,
    /// Why this proxy gets no traffic although it has config: the control plane
    /// sent no inbound listener for its Service (it does not know the Service).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub service_warning: Option<String>,
}

impl XdsStatus {
    pub fn set_connected(&self, connected: bool) {
        self.lock().connected = connected;
    }

    pub fn failed(&self, error: String) {
        self.lock().last_error = Some(error);
    }

    /// Why the last stream failed, until a response is accepted.
    pub fn last_error(&self) -> Option<String> {
        self.lock().last_error.clone()
    }

    pub fn accepted(&self, type_url: &'static str, version: &str) {
        let mut inner = self.lock();
        inner.last_error = None;
        let entry = inner.types.entry(type_url).or_default();
        entry.version = version.to_owned();
        entry.last_nack = None;
        entry.updates += 1;
        entry.last_update_unix = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64());
    }

    pub fn rejected(&self, type_url: &'static str, message: &str) {
        let mut inner = self.lock();
        let entry = inner.types.entry(type_url).or_default();
        entry.last_nack = Some(message.to_owned());
        entry.nacks += 1;
    }

    /// Sets the Service warning; returns the one it replaces.
    pub fn set_service_warning(&self, warning: Option<String>) -> Option<String> {
        std::mem::replace(&mut self.lock().service_warning, warning)
    }

    pub fn service_warning(&self) -> Option<String> {
        self.lock().service_warning.clone()
    }

    pub fn view(&self) -> StatusInner {
        self.lock().clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, StatusInner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }
}
