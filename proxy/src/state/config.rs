//! The config file: the xDS resources of the last ACKed response of each type,
//! as the control plane sent them (encoded `Any`s and their version), with who
//! they were for.
//!
//! ```text
//! "remora-proxy-state\n"   magic
//! u32 LE                   format (1)
//! u64 LE                   payload length
//! [u8; 32]                 SHA-256 of the payload
//! payload:
//!   u32 LE + JSON          header: owner, node id, when it was saved
//!   DiscoveryResponse*     one per type, length-delimited (type_url,
//!                          version_info, resources)
//! ```
//!
//! The length and the checksum catch a file cut short or damaged (a disk error,
//! a copy gone wrong): such a file is refused whole, never half-used.

use remora_proto::prost::Message;
use remora_proto::xds::envoy::service::discovery::v3::DiscoveryResponse;
use remora_proto::xds::google::protobuf::Any;
use serde::{Deserialize, Serialize};

/// The file's name in the state directory.
pub const CONFIG_FILE: &str = "config.state";

const MAGIC: &[u8] = b"remora-proxy-state\n";
/// The layout above. A proxy reads only its own format: after an upgrade that
/// changes it, the first start waits for the control plane as without state.
const FORMAT: u32 = 1;
const DIGEST_LEN: usize = 32;
const PREFIX_LEN: usize = MAGIC.len() + 4 + 8 + DIGEST_LEN;

/// Who a config was computed for. The control plane computes a proxy's config
/// from its service, namespace and identity; the node id is not part of it (it
/// defaults to `<service>-<pid>`, new at every start).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Owner {
    pub service: String,
    pub namespace: String,
    /// `spiffe://<trust-domain>/ns/<namespace>/sa/<service-account>`
    pub identity: String,
}

impl std::fmt::Display for Owner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{} ({})", self.service, self.namespace, self.identity)
    }
}

/// One type's accepted resources.
#[derive(Debug, Clone, PartialEq)]
pub struct SavedType {
    pub type_url: String,
    pub version: String,
    pub resources: Vec<Any>,
}

/// A config as kept in the state directory.
#[derive(Debug, Clone, PartialEq)]
pub struct SavedConfig {
    pub owner: Owner,
    /// The node id of the proxy that saved it (for the record).
    pub node_id: String,
    /// When it was saved, in seconds since the Unix epoch.
    pub saved_unix: u64,
    pub types: Vec<SavedType>,
}

#[derive(Debug, Serialize, Deserialize)]
struct Header {
    owner: Owner,
    node_id: String,
    saved_unix: u64,
}

/// Why a config file cannot be used.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConfigFileError {
    #[error("not a proxy state file (it does not start with the state file's magic)")]
    NotAStateFile,
    #[error("written in format {0}; this proxy reads format {FORMAT}")]
    Format(u32),
    #[error("cut short or padded: the payload is {found} bytes, the header says {expected}")]
    Length { expected: u64, found: u64 },
    #[error("damaged: the checksum does not match")]
    Checksum,
    #[error("header: {0}")]
    Header(String),
    #[error("resources: {0}")]
    Resources(String),
}

/// The file's bytes.
pub fn encode(config: &SavedConfig) -> Vec<u8> {
    let header = Header {
        owner: config.owner.clone(),
        node_id: config.node_id.clone(),
        saved_unix: config.saved_unix,
    };
    // A struct of strings and a number always serializes.
    let header = serde_json::to_vec(&header).unwrap_or_default();
    let mut payload = Vec::with_capacity(4 + header.len());
    payload.extend_from_slice(&(header.len() as u32).to_le_bytes());
    payload.extend_from_slice(&header);
    for t in &config.types {
        let response = DiscoveryResponse {
            version_info: t.version.clone(),
            resources: t.resources.clone(),
            type_url: t.type_url.clone(),
            ..Default::default()
        };
        payload.extend_from_slice(&response.encode_length_delimited_to_vec());
    }
    let digest = ring::digest::digest(&ring::digest::SHA256, &payload);
    let mut out = Vec::with_capacity(PREFIX_LEN + payload.len());
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&FORMAT.to_le_bytes());
    out.extend_from_slice(&(payload.len() as u64).to_le_bytes());
    out.extend_from_slice(digest.as_ref());
    out.extend_from_slice(&payload);
    out
}

/// Reads a file's bytes back, checking each layer before trusting the next.
pub fn decode(bytes: &[u8]) -> Result<SavedConfig, ConfigFileError> {
    let rest = bytes
        .strip_prefix(MAGIC)
        .ok_or(ConfigFileError::NotAStateFile)?;
    let (format, rest) = take::<4>(rest).ok_or(ConfigFileError::NotAStateFile)?;
    let format = u32::from_le_bytes(format);
    if format != FORMAT {
        return Err(ConfigFileError::Format(format));
    }
    let (length, rest) = take::<8>(rest).ok_or(ConfigFileError::NotAStateFile)?;
    let expected = u64::from_le_bytes(length);
    let (digest, payload) = take::<DIGEST_LEN>(rest).ok_or(ConfigFileError::NotAStateFile)?;
    if payload.len() as u64 != expected {
        return Err(ConfigFileError::Length {
            expected,
            found: payload.len() as u64,
        });
    }
    if ring::digest::digest(&ring::digest::SHA256, payload).as_ref() != digest.as_slice() {
        return Err(ConfigFileError::Checksum);
    }
    let (header_len, rest) =
        take::<4>(payload).ok_or_else(|| ConfigFileError::Header("missing".into()))?;
    let header_len = u32::from_le_bytes(header_len) as usize;
    if header_len > rest.len() {
        return Err(ConfigFileError::Header(format!(
            "{header_len} bytes long, the payload has {}",
            rest.len()
        )));
    }
    let (header, mut body) = rest.split_at(header_len);
    let header: Header =
        serde_json::from_slice(header).map_err(|e| ConfigFileError::Header(e.to_string()))?;
    let mut types = Vec::new();
    while !body.is_empty() {
        let response = DiscoveryResponse::decode_length_delimited(&mut body)
            .map_err(|e| ConfigFileError::Resources(e.to_string()))?;
        types.push(SavedType {
            type_url: response.type_url,
            version: response.version_info,
            resources: response.resources,
        });
    }
    Ok(SavedConfig {
        owner: header.owner,
        node_id: header.node_id,
        saved_unix: header.saved_unix,
        types,
    })
}

/// The first `N` bytes as an array, and the rest.
fn take<const N: usize>(bytes: &[u8]) -> Option<([u8; N], &[u8])> {
    let (head, rest) = bytes.split_at_checked(N)?;
    Some((head.try_into().ok()?, rest))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> SavedConfig {
        let any = |type_url: &str, value: &[u8]| Any {
            type_url: type_url.into(),
            value: value.to_vec(),
        };
        SavedConfig {
            owner: Owner {
                service: "orders".into(),
                namespace: "shop".into(),
                identity: "spiffe://cluster.local/ns/shop/sa/orders".into(),
            },
            node_id: "orders-41".into(),
            saved_unix: 1_700_000_000,
            types: vec![
                SavedType {
                    type_url: "type.googleapis.com/envoy.config.cluster.v3.Cluster".into(),
                    version: "c1".into(),
                    resources: vec![any("t/c", b"one"), any("t/c", b"two")],
                },
                SavedType {
                    type_url: "type.googleapis.com/envoy.config.route.v3.RouteConfiguration".into(),
                    version: "r1".into(),
                    resources: vec![],
                },
            ],
        }
    }

    #[test]
    fn a_config_reads_back_as_it_was_written() {
        let config = sample();
        assert_eq!(decode(&encode(&config)), Ok(config));
    }

    #[test]
    fn a_file_cut_anywhere_is_refused() {
        let bytes = encode(&sample());
        for len in 0..bytes.len() {
            let err = decode(&bytes[..len]).unwrap_err();
            if len >= PREFIX_LEN {
                assert!(
                    matches!(err, ConfigFileError::Length { .. }),
                    "cut at {len}: {err}"
                );
            }
        }
        let mut padded = bytes.clone();
        padded.push(0);
        assert!(matches!(
            decode(&padded),
            Err(ConfigFileError::Length { .. })
        ));
    }

    #[test]
    fn a_changed_byte_anywhere_is_caught() {
        let bytes = encode(&sample());
        for i in 0..bytes.len() {
            let mut damaged = bytes.clone();
            damaged[i] ^= 0x20;
            let result = decode(&damaged);
            assert!(result.is_err(), "byte {i} changed went unnoticed");
            if i >= PREFIX_LEN {
                assert_eq!(result, Err(ConfigFileError::Checksum), "byte {i}");
            }
        }
    }

    #[test]
    fn another_format_is_named() {
        let mut bytes = encode(&sample());
        bytes[MAGIC.len()..MAGIC.len() + 4].copy_from_slice(&7u32.to_le_bytes());
        let err = decode(&bytes).unwrap_err();
        assert_eq!(err, ConfigFileError::Format(7));
        assert_eq!(
            err.to_string(),
            "written in format 7; this proxy reads format 1"
        );
        assert_eq!(
            decode(b"{\"not\": \"ours\"}"),
            Err(ConfigFileError::NotAStateFile)
        );
    }
}
