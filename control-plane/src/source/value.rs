//! Reading a YAML document into a `serde_yaml_ng::Value` as the crate's own
//! `Value` does, except for integers that do not fit in 64 bits.
//!
//! serde_yaml_ng hands those (up to 128 bits) to the visitor as `u128`/`i128`, and
//! its `Value` refuses them, which fails the whole document as if it were a YAML
//! syntax error, naming neither the resource nor the field. Here they are kept as
//! their decimal digits (a string, as YAML already reads integers too long even for
//! 128 bits), and the decoder reports a string of digits that does not fit where a
//! number is expected as out of range, on its field.

use std::fmt;

use serde::de::{self, Deserialize, Deserializer, EnumAccess, MapAccess, SeqAccess, VariantAccess};
use serde_yaml_ng::value::{Tag, TaggedValue};
use serde_yaml_ng::{Mapping, Value};

/// A `Value` read with integers too large for 64 bits kept as digits.
#[derive(Debug, Clone, PartialEq)]
pub struct Lenient(pub Value);

impl<'de> Deserialize<'de> for Lenient {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(LenientVisitor).map(Lenient)
    }
}

struct LenientVisitor;

impl<'de> de::Visitor<'de> for LenientVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any YAML value")
    }

    fn visit_bool<E: de::Error>(self, b: bool) -> Result<Value, E> {
        Ok(Value::Bool(b))
    }

    fn visit_i64<E: de::Error>(self, n: i64) -> Result<Value, E> {
        Ok(Value::Number(n.into()))
    }

    fn visit_u64<E: de::Error>(self, n: u64) -> Result<Value, E> {
        Ok(Value::Number(n.into()))
    }

    fn visit_i128<E: de::Error>(self, n: i128) -> Result<Value, E> {
        Ok(match i64::try_from(n) {
            Ok(n) => Value::Number(n.into()),
            Err(_) => Value::String(n.to_string()),
        })
    }

    fn visit_u128<E: de::Error>(self, n: u128) -> Result<Value, E> {
        Ok(match u64::try_from(n) {
            Ok(n) => Value::Number(n.into()),
            Err(_) => Value::String(n.to_string()),
        })
    }

    fn visit_f64<E: de::Error>(self, n: f64) -> Result<Value, E> {
        Ok(Value::Number(n.into()))
    }

    fn visit_str<E: de::Error>(self, s: &str) -> Result<Value, E> {
        Ok(Value::String(s.to_owned()))
    }

    fn visit_string<E: de::Error>(self, s: String) -> Result<Value, E> {
        Ok(Value::String(s))
    }

    fn visit_unit<E: de::Error>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_none<E: de::Error>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_some<D: Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        Lenient::deserialize(deserializer).map(|l| l.0)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::new();
        while let Some(Lenient(item)) = seq.next_element()? {
            items.push(item);
        }
        Ok(Value::Sequence(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut mapping = Mapping::new();
        while let Some(Lenient(key)) = map.next_key()? {
            // A key written twice is an error, as in serde_yaml_ng's `Mapping`.
            if mapping.contains_key(&key) {
                return Err(de::Error::custom(duplicate_key_message(&key)));
            }
            let Lenient(value) = map.next_value()?;
            mapping.insert(key, value);
        }
        Ok(Value::Mapping(mapping))
    }

    /// A tagged value (`!Tag value`), as serde_yaml_ng presents it.
    fn visit_enum<A: EnumAccess<'de>>(self, data: A) -> Result<Value, A::Error> {
        let (tag, contents): (String, _) = data.variant()?;
        if tag.is_empty() {
            return Err(de::Error::custom("empty YAML tag is not allowed"));
        }
        let Lenient(value) = contents.newtype_variant()?;
        Ok(Value::Tagged(Box::new(TaggedValue {
            tag: Tag::new(tag),
            value,
        })))
    }
}

fn duplicate_key_message(key: &Value) -> String {
    match key {
        Value::String(s) => format!("duplicate entry with key {s:?}"),
        Value::Number(n) => format!("duplicate entry with key {n}"),
        Value::Bool(b) => format!("duplicate entry with key `{b}`"),
        Value::Null => "duplicate entry with null key".to_owned(),
        _ => "duplicate entry in YAML map".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(yaml: &str) -> Result<Value, serde_yaml_ng::Error> {
        serde_yaml_ng::from_str::<Lenient>(yaml).map(|l| l.0)
    }

    #[test]
    fn reads_like_serde_yaml_ng() {
        let yaml = "a: [1, -2, 2.5, true, ~, x]\nb: {c: !Tag 1}\n'3': &x y\nd: *x\n";
        let plain: Value = serde_yaml_ng::from_str(yaml).unwrap();
        assert_eq!(read(yaml).unwrap(), plain);
    }

    #[test]
    fn integers_beyond_64_bits_are_kept_as_digits() {
        let v = read("w: 99999999999999999999\nn: -99999999999999999999\n").unwrap();
        assert_eq!(v["w"], Value::String("99999999999999999999".into()));
        assert_eq!(v["n"], Value::String("-99999999999999999999".into()));
        let max = read("ok: 18446744073709551615").unwrap();
        assert_eq!(max["ok"].as_u64(), Some(u64::MAX));
        assert!(serde_yaml_ng::from_str::<Value>("w: 99999999999999999999").is_err());
    }

    #[test]
    fn duplicate_keys_are_still_an_error() {
        let err = read("a: 1\na: 2\n").unwrap_err().to_string();
        assert!(err.contains("duplicate entry with key \"a\""), "{err}");
    }
}
