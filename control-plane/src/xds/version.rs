//! Versions: a hash of the resources in a response. Equal resources give equal
//! versions, also in the next process (FNV-1a over canonical bytes, no random seed),
//! so a restarted control plane does not make every proxy reload.

use remora_proto::xds::google::protobuf::Any;

const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
const PRIME: u64 = 0x0000_0100_0000_01b3;

struct Fnv(u64);

impl Fnv {
    fn write(&mut self, bytes: &[u8]) {
        // Length first, so ("ab", "c") and ("a", "bc") differ.
        for b in (bytes.len() as u64).to_le_bytes().iter().chain(bytes) {
            self.0 ^= u64::from(*b);
            self.0 = self.0.wrapping_mul(PRIME);
        }
    }
}

/// The version of a set of named resources (given in name order).
pub fn of<'a>(resources: impl IntoIterator<Item = (&'a String, &'a Any)>) -> String {
    let mut h = Fnv(OFFSET);
    for (name, any) in resources {
        h.write(name.as_bytes());
        h.write(any.type_url.as_bytes());
        h.write(&any.value);
    }
    format!("{:016x}", h.0)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    fn any(value: &[u8]) -> Any {
        Any {
            type_url: "type.googleapis.com/x".into(),
            value: value.to_vec(),
        }
    }

    #[test]
    fn is_stable_across_processes() {
        // A fixed input has a fixed version: nothing random goes into it. If this
        // changes, every proxy reloads after an upgrade; change it deliberately.
        let set = BTreeMap::from([("a".to_owned(), any(b"1")), ("b".to_owned(), any(b"2"))]);
        assert_eq!(of(&set), "6311cd47c672b2e3");
        assert_eq!(of(&BTreeMap::new()), "cbf29ce484222325");
    }

    #[test]
    fn changes_with_names_and_contents() {
        let base = BTreeMap::from([("a".to_owned(), any(b"1"))]);
        let renamed = BTreeMap::from([("b".to_owned(), any(b"1"))]);
        let changed = BTreeMap::from([("a".to_owned(), any(b"2"))]);
        let shifted = BTreeMap::from([("a1".to_owned(), any(b""))]);
        let versions = [
            of(&base),
            of(&renamed),
            of(&changed),
            of(&shifted),
            of(&BTreeMap::new()),
        ];
        for (i, a) in versions.iter().enumerate() {
            for b in &versions[i + 1..] {
                assert_ne!(a, b);
            }
        }
    }
}
