//! Kubernetes name rules. Service names become DNS labels (`orders.default.svc...`),
//! so they are checked strictly: a bad name would otherwise surface as an xDS NACK.

const MAX_LABEL: usize = 63;
const MAX_SUBDOMAIN: usize = 253;

/// RFC 1035 label (Service names): lower-case letters, digits and `-`, starting
/// with a letter, ending with a letter or digit, at most 63 characters.
pub fn dns1035_label(name: &str) -> Result<(), String> {
    label(name)?;
    if !name.starts_with(|c: char| c.is_ascii_lowercase()) {
        return Err(format!("\"{name}\" must start with a lower-case letter"));
    }
    Ok(())
}

/// RFC 1123 label (namespaces): like a 1035 label but may start with a digit.
pub fn dns1123_label(name: &str) -> Result<(), String> {
    label(name)
}

/// RFC 1123 subdomain (most other names): dot-separated labels, at most 253
/// characters.
pub fn dns1123_subdomain(name: &str) -> Result<(), String> {
    if name.len() > MAX_SUBDOMAIN {
        return Err(format!("must be at most {MAX_SUBDOMAIN} characters"));
    }
    name.split('.')
        .try_for_each(label)
        .map_err(|_| format!("\"{name}\" must be lower-case letters, digits, '-' and '.', starting and ending with a letter or digit"))
}

fn label(name: &str) -> Result<(), String> {
    let well_formed = !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !name.starts_with('-')
        && !name.ends_with('-');
    if !well_formed {
        return Err(format!(
            "\"{name}\" must be lower-case letters, digits and '-', starting and ending with a letter or digit"
        ));
    }
    if name.len() > MAX_LABEL {
        return Err(format!("\"{name}\" must be at most {MAX_LABEL} characters"));
    }
    Ok(())
}

/// A container port's name, as a Service's `targetPort` may give it (Kubernetes'
/// IANA_SVC_NAME): at most 15 lower-case letters, digits and `-`, with at least
/// one letter, not starting or ending with `-`, no `--`.
pub fn port_name(name: &str) -> Result<(), String> {
    let well_formed = (1..=15).contains(&name.len())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && name.chars().any(|c| c.is_ascii_lowercase())
        && !name.starts_with('-')
        && !name.ends_with('-')
        && !name.contains("--");
    if well_formed {
        return Ok(());
    }
    Err(format!(
        "\"{name}\" is neither a port number nor a port name (at most 15 lower-case letters, \
         digits and '-', with a letter, no '-' at either end or twice in a row)"
    ))
}

/// An HTTP header name (RFC 9110 token).
pub fn header_name(name: &str) -> Result<(), String> {
    let token = |c: char| c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~".contains(c);
    if name.is_empty() || !name.chars().all(token) {
        return Err(format!("\"{name}\" is not a valid HTTP header name"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn service_names_are_dns_labels() {
        assert!(dns1035_label("orders-v1").is_ok());
        assert!(dns1035_label("1orders").is_err());
        assert!(dns1035_label("Orders").is_err());
        assert!(dns1035_label("orders.v1").is_err());
        assert!(dns1035_label("orders-").is_err());
        assert!(dns1035_label(&"a".repeat(64)).is_err());
        assert!(dns1123_label("1team").is_ok());
    }

    #[test]
    fn route_names_may_have_dots() {
        assert!(dns1123_subdomain("orders.split").is_ok());
        assert!(dns1123_subdomain("orders..split").is_err());
        assert!(dns1123_subdomain("Orders").is_err());
    }

    #[test]
    fn port_names_are_short_with_a_letter() {
        for good in ["http", "redis", "h2c", "metrics-9090", "a"] {
            assert!(port_name(good).is_ok(), "{good}");
        }
        for bad in [
            "8080",
            "",
            "-http",
            "http-",
            "ht--tp",
            "HTTP",
            "a-very-long-name",
            "ht_tp",
        ] {
            assert!(port_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn header_names_are_tokens() {
        assert!(header_name("x-user").is_ok());
        assert!(header_name("x user").is_err());
        assert!(header_name("").is_err());
    }
}
