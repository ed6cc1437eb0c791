//! Durations as the CLI and the API take them: `90s`, `30m`, `24h`, `7d`.
//! (Resource fields use the Gateway API's format instead: `validate::decode`.)

/// `90s`, `30m`, `24h`, `7d` (a bare number is seconds).
pub fn parse_duration(s: &str) -> Result<std::time::Duration, String> {
    let (number, unit) = match s.find(|c: char| !c.is_ascii_digit()) {
        Some(i) => s.split_at(i),
        None => (s, "s"),
    };
    let n: u64 = number
        .parse()
        .map_err(|_| format!("`{s}` is not a duration like 90s, 30m, 24h or 7d"))?;
    let seconds = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => return Err(format!("`{s}`: unknown unit `{unit}` (use s, m, h or d)")),
    };
    Ok(std::time::Duration::from_secs(n.saturating_mul(seconds)))
}
/// `90s`, `30m`, `24h`, `7d`: the largest unit that divides `d` (the inverse of
/// [`parse_duration`] for whole seconds).
pub fn format_duration(d: std::time::Duration) -> String {
    let s = d.as_secs();
    match s {
        _ if s >= 86_400 && s.is_multiple_of(86_400) => format!("{}d", s / 86_400),
        _ if s >= 3600 && s.is_multiple_of(3600) => format!("{}h", s / 3600),
        _ if s >= 60 && s.is_multiple_of(60) => format!("{}m", s / 60),
        _ => format!("{s}s"),
    }
}
