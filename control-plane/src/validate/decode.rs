//! A small reader over `serde_yaml_ng::Value` that records every problem with its
//! field path and keeps going, so a user sees all that is wrong at once.

use std::ops::RangeInclusive;
use std::time::Duration;

use serde_yaml_ng::{Mapping, Value};

/// A problem inside one resource.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    pub field: String,
    pub message: String,
}

/// `parent.key` (or `key` at the top).
pub fn field(parent: &str, key: &str) -> String {
    if parent.is_empty() {
        key.to_owned()
    } else {
        format!("{parent}.{key}")
    }
}

/// `parent[i]`.
pub fn index(parent: &str, i: usize) -> String {
    format!("{parent}[{i}]")
}

/// The value of `key`, treating an explicit `null` as absent.
pub fn get<'v>(m: &'v Mapping, key: &str) -> Option<&'v Value> {
    m.get(key).filter(|v| !v.is_null())
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Sequence(_) => "a list",
        Value::Mapping(_) => "a mapping",
        Value::Tagged(_) => "a tagged value",
    }
}

/// What a value is, read as a whole number.
enum WholeNumber {
    /// A whole number that fits in 64 bits (signed or not).
    Fits(i128),
    /// A whole number that does not, as written (or as YAML rounded it).
    TooLarge(String),
    Fraction,
    NotNumber(&'static str),
}

fn whole_number(value: &Value) -> WholeNumber {
    match value {
        Value::Number(n) => {
            if let Some(i) = n.as_i64() {
                return WholeNumber::Fits(i.into());
            }
            if let Some(u) = n.as_u64() {
                return WholeNumber::Fits(u.into());
            }
            // A float: integers past 2^64 but within 10^308 are read as floats.
            match n.as_f64() {
                Some(f) if f.is_finite() && f.fract() == 0.0 && f.abs() >= 9.0e18 => {
                    WholeNumber::TooLarge(n.to_string())
                }
                _ => WholeNumber::Fraction,
            }
        }
        Value::String(s) if is_huge_integer(s) => WholeNumber::TooLarge(s.clone()),
        other => WholeNumber::NotNumber(type_name(other)),
    }
}

/// Decimal digits (with an optional sign) that do not fit in 64 bits: YAML keeps
/// those as strings. Smaller ones in a string (`'80'`) are a string, not a number.
fn is_huge_integer(s: &str) -> bool {
    let digits = s.strip_prefix(['-', '+']).unwrap_or(s);
    !digits.is_empty()
        && digits.bytes().all(|b| b.is_ascii_digit())
        && s.parse::<i64>().is_err()
        && s.parse::<u64>().is_err()
}

#[derive(Debug, Default)]
pub struct Decoder {
    pub errors: Vec<FieldError>,
}

impl Decoder {
    pub fn error(&mut self, field: impl Into<String>, message: impl Into<String>) {
        self.errors.push(FieldError {
            field: field.into(),
            message: message.into(),
        });
    }

    pub fn is_clean(&self) -> bool {
        self.errors.is_empty()
    }

    pub fn mapping<'v>(&mut self, value: &'v Value, path: &str) -> Option<&'v Mapping> {
        match value {
            Value::Mapping(m) => Some(m),
            other => {
                self.error(path, format!("must be a mapping, not {}", type_name(other)));
                None
            }
        }
    }

    /// A mapping that must be present.
    pub fn required_mapping<'v>(
        &mut self,
        m: &'v Mapping,
        parent: &str,
        key: &str,
    ) -> Option<&'v Mapping> {
        let path = field(parent, key);
        match get(m, key) {
            None => {
                self.error(path, "required");
                None
            }
            Some(v) => self.mapping(v, &path),
        }
    }

    /// An optional string; an empty string counts as absent.
    pub fn string(&mut self, m: &Mapping, parent: &str, key: &str) -> Option<String> {
        match get(m, key)? {
            Value::String(s) if s.is_empty() => None,
            Value::String(s) => Some(s.clone()),
            other => {
                let message = format!("must be a string, not {}", type_name(other));
                self.error(field(parent, key), message);
                None
            }
        }
    }

    pub fn required_string(&mut self, m: &Mapping, parent: &str, key: &str) -> Option<String> {
        let before = self.errors.len();
        let value = self.string(m, parent, key);
        if value.is_none() && self.errors.len() == before {
            self.error(field(parent, key), "required");
        }
        value
    }

    /// An optional integer within `range`. A whole number too large for 64 bits
    /// (which YAML reads as a float, or as digits: see `source::value`) is out of
    /// range like any other, on its field.
    pub fn integer(
        &mut self,
        m: &Mapping,
        parent: &str,
        key: &str,
        range: RangeInclusive<u64>,
    ) -> Option<u64> {
        let value = get(m, key)?;
        let out_of_range = |n: &dyn std::fmt::Display| {
            format!("{n} is out of range ({} to {})", range.start(), range.end())
        };
        let message = match whole_number(value) {
            WholeNumber::Fits(n) => match u64::try_from(n) {
                Ok(n) if range.contains(&n) => return Some(n),
                _ => out_of_range(&n),
            },
            WholeNumber::TooLarge(text) => out_of_range(&text),
            WholeNumber::Fraction => "must be a whole number".to_owned(),
            WholeNumber::NotNumber(other) => format!("must be a number, not {other}"),
        };
        self.error(field(parent, key), message);
        None
    }

    /// An optional port number (1 to 65535).
    pub fn port(&mut self, m: &Mapping, parent: &str, key: &str) -> Option<u16> {
        self.integer(m, parent, key, 1..=65535)
            .and_then(|p| u16::try_from(p).ok())
    }

    pub fn required_port(&mut self, m: &Mapping, parent: &str, key: &str) -> Option<u16> {
        if get(m, key).is_none() {
            self.error(field(parent, key), "required");
            return None;
        }
        self.port(m, parent, key)
    }

    /// An optional duration in the Gateway API's format (`10s`, `500ms`, `1h30m`:
    /// up to four groups of 1-5 digits with `h`, `m`, `s` or `ms`).
    pub fn duration(&mut self, m: &Mapping, parent: &str, key: &str) -> Option<Duration> {
        let text = self.string(m, parent, key)?;
        match parse_duration(&text) {
            Some(d) => Some(d),
            None => {
                self.error(
                    field(parent, key),
                    format!("\"{text}\" is not a duration (like 10s, 500ms or 1m30s)"),
                );
                None
            }
        }
    }

    /// An optional list (absent is empty).
    pub fn sequence<'v>(&mut self, m: &'v Mapping, parent: &str, key: &str) -> &'v [Value] {
        match get(m, key) {
            None => &[],
            Some(Value::Sequence(items)) => items,
            Some(other) => {
                let message = format!("must be a list, not {}", type_name(other));
                self.error(field(parent, key), message);
                &[]
            }
        }
    }

    /// A list that must have at least one item.
    pub fn required_sequence<'v>(
        &mut self,
        m: &'v Mapping,
        parent: &str,
        key: &str,
    ) -> &'v [Value] {
        let before = self.errors.len();
        let items = self.sequence(m, parent, key);
        if items.is_empty() && self.errors.len() == before {
            self.error(field(parent, key), "at least one entry is required");
        }
        items
    }

    /// Reports keys of `m` that are not in `known`, and those in `unsupported`
    /// (valid in the upstream API, not implemented by Remora yet).
    pub fn known_fields(
        &mut self,
        m: &Mapping,
        parent: &str,
        known: &[&str],
        unsupported: &[&str],
    ) {
        for key in m.keys() {
            let Some(key) = key.as_str() else {
                self.error(parent, "field names must be strings");
                continue;
            };
            if unsupported.contains(&key) {
                self.error(field(parent, key), "not supported by Remora yet");
            } else if !known.contains(&key) {
                let message = format!("unknown field (expected one of: {})", known.join(", "));
                self.error(field(parent, key), message);
            }
        }
    }
}

/// Gateway API durations (GEP-2257): `^([0-9]{1,5}(h|m|s|ms)){1,4}$`.
pub fn parse_duration(text: &str) -> Option<Duration> {
    let mut rest = text;
    let mut total = Duration::ZERO;
    let mut groups = 0;
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if !(1..=5).contains(&digits) {
            return None;
        }
        let n: u64 = rest[..digits].parse().ok()?;
        rest = &rest[digits..];
        let (unit, len) = if rest.starts_with("ms") {
            (Duration::from_millis(1), 2)
        } else if rest.starts_with('h') {
            (Duration::from_secs(3600), 1)
        } else if rest.starts_with('m') {
            (Duration::from_secs(60), 1)
        } else if rest.starts_with('s') {
            (Duration::from_secs(1), 1)
        } else {
            return None;
        };
        rest = &rest[len..];
        total += unit * u32::try_from(n).ok()?;
        groups += 1;
    }
    (1..=4).contains(&groups).then_some(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_follow_the_gateway_api() {
        assert_eq!(parse_duration("10s"), Some(Duration::from_secs(10)));
        assert_eq!(parse_duration("500ms"), Some(Duration::from_millis(500)));
        assert_eq!(parse_duration("1h30m"), Some(Duration::from_secs(5400)));
        assert_eq!(parse_duration("0s"), Some(Duration::ZERO));
        for bad in [
            "",
            "10",
            "s",
            "1.5s",
            "123456s",
            "1s2s3s4s5s",
            "-1s",
            "10 s",
        ] {
            assert_eq!(parse_duration(bad), None, "{bad}");
        }
    }

    fn mapping(yaml: &str) -> Mapping {
        serde_yaml_ng::from_str(yaml).unwrap()
    }

    #[test]
    fn reports_wrong_types_with_their_path() {
        let m = mapping("name: 3\nport: x\nlist: {a: 1}\n");
        let mut d = Decoder::default();
        assert_eq!(d.string(&m, "spec", "name"), None);
        assert_eq!(d.port(&m, "spec", "port"), None);
        assert!(d.sequence(&m, "spec", "list").is_empty());
        let fields: Vec<_> = d.errors.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(fields, ["spec.name", "spec.port", "spec.list"]);
    }

    #[test]
    fn ports_must_be_in_range() {
        let m = mapping("a: 0\nb: 65536\nc: 65535\nd: -1\n");
        let mut d = Decoder::default();
        assert_eq!(d.port(&m, "", "a"), None);
        assert_eq!(d.port(&m, "", "b"), None);
        assert_eq!(d.port(&m, "", "c"), Some(65535));
        assert_eq!(d.port(&m, "", "d"), None);
        assert_eq!(d.errors.len(), 3);
        assert_eq!(d.errors[0].message, "0 is out of range (1 to 65535)");
    }

    #[test]
    fn whole_numbers_too_large_for_64_bits_are_out_of_range() {
        let m = mapping(
            "a: '99999999999999999999'\nb: 1.0e30\nc: '-99999999999999999999'\nd: 2.5\ne: '80'\n",
        );
        let mut d = Decoder::default();
        for key in ["a", "b", "c", "d", "e"] {
            assert_eq!(d.integer(&m, "spec", key, 0..=1_000_000), None);
        }
        let messages: Vec<_> = d.errors.iter().map(|e| e.message.as_str()).collect();
        assert_eq!(
            messages,
            [
                "99999999999999999999 is out of range (0 to 1000000)",
                "1e30 is out of range (0 to 1000000)",
                "-99999999999999999999 is out of range (0 to 1000000)",
                "must be a whole number",
                "must be a number, not a string",
            ]
        );
    }

    #[test]
    fn required_fields_report_once() {
        let m = mapping("x: 1\n");
        let mut d = Decoder::default();
        assert_eq!(d.required_string(&m, "metadata", "name"), None);
        assert_eq!(d.required_port(&m, "spec", "port"), None);
        assert_eq!(
            d.errors,
            [
                FieldError {
                    field: "metadata.name".into(),
                    message: "required".into()
                },
                FieldError {
                    field: "spec.port".into(),
                    message: "required".into()
                },
            ]
        );
    }
}
