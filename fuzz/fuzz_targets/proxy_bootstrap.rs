//! The proxy's bootstrap file: YAML text -> a `Bootstrap`, or an error naming the
//! field. No file is read: the trust bundle a bootstrap names is given its own
//! path as contents, so the PEM check sees fuzzed text too.
#![no_main]

use std::net::SocketAddr;
use std::path::Path;

use libfuzzer_sys::fuzz_target;
use remora_proxy::bootstrap::Bootstrap;

fuzz_target!(|data: &[u8]| {
    // Read with `read_to_string`: only UTF-8 reaches the parser.
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let parsed = Bootstrap::parse_with(
        Path::new("bootstrap.yaml"),
        text,
        |file: &Path| -> std::io::Result<String> { Ok(file.to_string_lossy().into_owned()) },
    );
    match parsed {
        Ok(bootstrap) => {
            let _ = bootstrap.identity();
            let bound = SocketAddr::from(([0, 0, 0, 0], 7002));
            let _ = bootstrap.advertised_inbound(bound);
            let _ = bootstrap.advertised_inbound(bootstrap.inbound);
        }
        Err(e) => {
            let _ = e.to_string();
        }
    }
});
