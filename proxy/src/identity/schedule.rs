//! When to renew: at about 70% of the certificate's lifetime, jittered so a fleet
//! started together does not renew together, and never later than its expiry.

use std::time::{Duration, SystemTime};

/// The share of the lifetime after which a certificate is renewed.
const RENEW_AT: f64 = 0.7;
/// Jitter around `RENEW_AT`, as a share of the lifetime (±5%).
const JITTER: f64 = 0.05;

/// How long to wait before renewing a certificate valid from `issued` to
/// `not_after`, seen at `now`. `draw` is uniform in [0, 1).
pub fn renew_after(
    issued: SystemTime,
    not_after: SystemTime,
    now: SystemTime,
    draw: f64,
) -> Duration {
    let lifetime = not_after.duration_since(issued).unwrap_or_default();
    let share = RENEW_AT + JITTER * (2.0 * draw - 1.0);
    let at = issued + lifetime.mul_f64(share.clamp(0.0, 1.0));
    at.duration_since(now).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renews_at_seventy_percent_give_or_take_five() {
        let issued = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        let day = Duration::from_secs(24 * 3600);
        let at = |draw| renew_after(issued, issued + day, issued, draw);
        assert_eq!(at(0.5), day.mul_f64(0.7));
        assert_eq!(at(0.0), day.mul_f64(0.65));
        assert!(at(0.999) <= day.mul_f64(0.75));
        // Already past the renewal point: renew now.
        assert_eq!(
            renew_after(issued, issued + day, issued + day, 0.5),
            Duration::ZERO
        );
    }
}
