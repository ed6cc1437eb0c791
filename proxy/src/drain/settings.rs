//! Bootstrap `drain`: how long callers get to learn this proxy is leaving, and
//! the hard cap on the whole drain.

use std::time::Duration;

use serde::Deserialize;

/// Long enough for the control plane's push to reach every caller (it is sent
/// at once; this covers a busy control plane and a request that picked this
/// proxy just before the change arrived).
pub const DEFAULT_PROPAGATION: Duration = Duration::from_secs(2);
/// Kubernetes' default termination grace period: past it the pod is killed
/// anyway.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
/// The longest hard cap a bootstrap may ask for.
pub const MAX_TIMEOUT: Duration = Duration::from_secs(3600);

/// How the proxy drains.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Settings {
    /// How long inbound keeps accepting after the control plane is told.
    pub propagation: Duration,
    /// From the signal to the exit, at most.
    pub timeout: Duration,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            propagation: DEFAULT_PROPAGATION,
            timeout: DEFAULT_TIMEOUT,
        }
    }
}

/// Bootstrap `drain`, every field optional.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSettings {
    propagation_ms: Option<u64>,
    timeout_ms: Option<u64>,
}

/// A field of bootstrap `drain` that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct SettingsError {
    pub field: &'static str,
    pub message: String,
}

impl RawSettings {
    pub fn resolve(self) -> Result<Settings, SettingsError> {
        let timeout = self
            .timeout_ms
            .map_or(DEFAULT_TIMEOUT, Duration::from_millis);
        if timeout > MAX_TIMEOUT {
            return Err(SettingsError {
                field: "timeout_ms",
                message: format!(
                    "{} is over the longest hard cap ({} ms)",
                    timeout.as_millis(),
                    MAX_TIMEOUT.as_millis()
                ),
            });
        }
        let propagation = match self.propagation_ms {
            Some(ms) => Duration::from_millis(ms),
            // A short cap shortens the default window with it.
            None => DEFAULT_PROPAGATION.min(timeout),
        };
        if propagation > timeout {
            return Err(SettingsError {
                field: "propagation_ms",
                message: format!(
                    "{} is longer than timeout_ms ({}): the hard cap must leave the window and the requests in flight time to finish",
                    propagation.as_millis(),
                    timeout.as_millis()
                ),
            });
        }
        Ok(Settings {
            propagation,
            timeout,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resolve(yaml: &str) -> Result<Settings, SettingsError> {
        serde_yaml_ng::from_str::<RawSettings>(yaml)
            .unwrap()
            .resolve()
    }

    #[test]
    fn defaults_are_a_two_second_window_and_a_thirty_second_cap() {
        let s = RawSettings::default().resolve().unwrap();
        assert_eq!(s, Settings::default());
        assert_eq!(s.propagation, Duration::from_secs(2));
        assert_eq!(s.timeout, Duration::from_secs(30));
    }

    #[test]
    fn fields_are_checked_and_named() {
        let s = resolve("propagation_ms: 500\ntimeout_ms: 10000\n").unwrap();
        assert_eq!(s.propagation, Duration::from_millis(500));
        assert_eq!(s.timeout, Duration::from_secs(10));
        let e = resolve("propagation_ms: 5000\ntimeout_ms: 3000\n").unwrap_err();
        assert_eq!(e.field, "propagation_ms");
        let e = resolve("timeout_ms: 99999999999\n").unwrap_err();
        assert_eq!(e.field, "timeout_ms");
        // A cap under the default window shortens the window.
        let s = resolve("timeout_ms: 1000\n").unwrap();
        assert_eq!(s.propagation, Duration::from_secs(1));
        assert!(serde_yaml_ng::from_str::<RawSettings>("propagation: 1\n").is_err());
    }
}
