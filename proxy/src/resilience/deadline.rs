//! gRPC's `grpc-timeout` header: a client's deadline, honoured by the proxy and
//! passed on to the next hop as what is left of it.

use std::time::Duration;

use http::{HeaderName, HeaderValue};

/// The header a gRPC client's deadline travels in.
pub const GRPC_TIMEOUT: HeaderName = HeaderName::from_static("grpc-timeout");

/// Parses `grpc-timeout` (`<up to 8 digits><H|M|S|m|u|n>`).
pub fn parse_grpc_timeout(value: &HeaderValue) -> Option<Duration> {
    let text = value.to_str().ok()?;
    if text.len() < 2 || text.len() > 9 {
        return None;
    }
    let (digits, unit) = text.split_at(text.len() - 1);
    // Digits only (the gRPC spec): `u64::from_str` would also take a `+`.
    if !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let n: u64 = digits.parse().ok()?;
    Some(match unit {
        "H" => Duration::from_secs(n.checked_mul(3600)?),
        "M" => Duration::from_secs(n.checked_mul(60)?),
        "S" => Duration::from_secs(n),
        "m" => Duration::from_millis(n),
        "u" => Duration::from_micros(n),
        "n" => Duration::from_nanos(n),
        _ => return None,
    })
}

/// Formats a remaining deadline for `grpc-timeout`, in the finest unit that fits
/// in 8 digits (rounding up, so the next hop never gets less than is left).
pub fn format_grpc_timeout(left: Duration) -> HeaderValue {
    const MAX: u128 = 99_999_999;
    let nanos = left.as_nanos();
    let (n, unit) = [
        (1, "n"),
        (1_000, "u"),
        (1_000_000, "m"),
        (1_000_000_000, "S"),
        (60_000_000_000, "M"),
        (3_600_000_000_000, "H"),
    ]
    .into_iter()
    .map(|(per, unit)| (nanos.div_ceil(per), unit))
    .find(|(n, _)| *n <= MAX)
    .unwrap_or((MAX, "H"));
    HeaderValue::from_str(&format!("{n}{unit}")).unwrap_or(HeaderValue::from_static("99999999H"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips() {
        let v = |s: &'static str| HeaderValue::from_static(s);
        assert_eq!(
            parse_grpc_timeout(&v("100m")),
            Some(Duration::from_millis(100))
        );
        assert_eq!(parse_grpc_timeout(&v("2S")), Some(Duration::from_secs(2)));
        assert_eq!(
            parse_grpc_timeout(&v("1H")),
            Some(Duration::from_secs(3600))
        );
        assert_eq!(parse_grpc_timeout(&v("123456789m")), None, "9 digits");
        assert_eq!(parse_grpc_timeout(&v("+5S")), None, "digits only");
        assert_eq!(parse_grpc_timeout(&v("10x")), None);
        assert_eq!(format_grpc_timeout(Duration::from_millis(100)), "100000u");
        assert_eq!(format_grpc_timeout(Duration::from_secs(1000)), "1000000m");
        let left = Duration::from_micros(1_234_567);
        assert!(parse_grpc_timeout(&format_grpc_timeout(left)).unwrap() >= left);
    }
}
