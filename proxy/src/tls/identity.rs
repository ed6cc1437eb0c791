//! The SPIFFE id in a certificate: its one URI SAN.

use rustls::pki_types::CertificateDer;
use x509_parser::extensions::GeneralName;
use x509_parser::prelude::FromDer;

/// The certificate's SPIFFE id, if it has exactly one `spiffe://` URI SAN.
pub fn spiffe_id(cert: &CertificateDer<'_>) -> Option<String> {
    let (_, parsed) = x509_parser::certificate::X509Certificate::from_der(cert).ok()?;
    let san = parsed.subject_alternative_name().ok()??;
    let mut uris = san.value.general_names.iter().filter_map(|n| match n {
        GeneralName::URI(u) if u.starts_with("spiffe://") => Some(*u),
        _ => None,
    });
    let first = uris.next()?;
    uris.next().is_none().then(|| first.to_owned())
}

/// The identity of the peer of an established TLS connection.
pub fn peer_identity(conn: &rustls::CommonState) -> Option<String> {
    conn.peer_certificates()?.first().and_then(spiffe_id)
}
