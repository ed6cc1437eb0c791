//! The API's JSON as the client reads it: only the fields it uses, and every
//! field it can do without defaulted, so a newer control plane still answers
//! an older CLI.

use std::collections::BTreeMap;

use serde::Deserialize;

use crate::problem::Problem;

/// The answer to an apply or a delete.
#[derive(Debug, Clone, Deserialize)]
pub struct AnswerDoc {
    #[serde(default)]
    pub dry_run: bool,
    #[serde(default)]
    pub generation: u64,
    #[serde(default)]
    pub results: Vec<ResultDoc>,
    #[serde(default)]
    pub problems: Vec<Problem>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct ResultDoc {
    pub kind: String,
    pub namespace: String,
    pub name: String,
    pub action: String,
}

/// `GET /api/v1/status`
#[derive(Debug, Clone, Deserialize)]
pub struct StatusDoc {
    pub generation: u64,
    #[serde(default)]
    pub config_errors: usize,
    #[serde(default)]
    pub proxies: Vec<ProxyDoc>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct ProxyDoc {
    pub node_id: String,
    pub service: Option<String>,
    pub namespace: String,
    pub inbound_address: Option<String>,
    pub identity: Option<String>,
    #[serde(default)]
    pub transport: String,
    /// Served without a client certificate.
    #[serde(default)]
    pub warning: Option<String>,
    /// Anything else the control plane warns about (e.g. a Service it does not
    /// know); strings, or objects with a `message`.
    #[serde(default)]
    pub warnings: Vec<serde_json::Value>,
    #[serde(default)]
    pub generation: u64,
    #[serde(default)]
    pub current: bool,
    #[serde(default)]
    pub nacking: bool,
    /// By label: CDS, EDS, LDS, RDS.
    #[serde(default)]
    pub xds: BTreeMap<String, XdsDoc>,
    pub certificate: Option<CertificateDoc>,
    #[serde(default)]
    pub problems: Vec<String>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct XdsDoc {
    pub acked_version: Option<String>,
    pub sent_version: Option<String>,
    #[serde(default)]
    pub in_sync: bool,
    pub nack: Option<NackDoc>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct NackDoc {
    pub message: String,
}

#[derive(Debug, Clone, Deserialize)]
pub struct CertificateDoc {
    pub expires_in_seconds: i64,
    #[serde(default)]
    pub running_out: bool,
}

impl ProxyDoc {
    /// Every warning, as text.
    pub fn warning_texts(&self) -> Vec<String> {
        let mut out: Vec<String> = self.warning.iter().cloned().collect();
        for w in &self.warnings {
            let text = match w {
                serde_json::Value::String(s) => s.clone(),
                other => other
                    .get("message")
                    .and_then(|m| m.as_str())
                    .map_or_else(|| other.to_string(), str::to_owned),
            };
            out.push(text);
        }
        out
    }

    /// `default/web`, or `default/-` for a proxy that serves nothing.
    pub fn service_name(&self) -> String {
        format!(
            "{}/{}",
            self.namespace,
            self.service.as_deref().unwrap_or("-")
        )
    }

    /// Whether it needs attention: behind, NACKing, a problem or a warning.
    pub fn needs_attention(&self) -> bool {
        !self.current
            || self.nacking
            || !self.problems.is_empty()
            || !self.warning_texts().is_empty()
    }
}

/// `GET /api/v1/resources`
#[derive(Debug, Clone, Deserialize)]
pub struct ResourcesDoc {
    #[serde(default)]
    pub items: Vec<ResourceDoc>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct ResourceDoc {
    pub namespace: String,
    pub name: String,
    pub location: Option<String>,
    #[serde(default)]
    pub document: serde_json::Value,
}

/// `GET /api/v1/endpoints`
#[derive(Debug, Clone, Deserialize)]
pub struct EndpointsDoc {
    #[serde(default)]
    pub endpoints: Vec<EndpointDoc>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct EndpointDoc {
    pub namespace: String,
    pub service: String,
    pub address: String,
    pub source: String,
    pub node_id: Option<String>,
    #[serde(default)]
    pub ejected_by: Vec<String>,
}
