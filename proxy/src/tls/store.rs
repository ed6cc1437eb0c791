//! The proxy's current workload certificate, swapped in whole on renewal.

use std::sync::Arc;
use std::time::SystemTime;

use arc_swap::ArcSwapOption;

/// A certificate this proxy holds, with its key.
pub struct Certified {
    pub identity: String,
    /// PKCS#8 PEM of the private key: in memory, and in the state dir (mode
    /// 0600) when the bootstrap has `state_dir`.
    pub key_pem: String,
    pub leaf_pem: String,
    pub chain_pem: String,
    pub trust_bundle_pem: String,
    pub not_after: SystemTime,
    /// How many certificates this process has obtained (1 = the first).
    pub generation: u64,
}

impl std::fmt::Debug for Certified {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Certified")
            .field("identity", &self.identity)
            .field("not_after", &self.not_after)
            .field("generation", &self.generation)
            .finish_non_exhaustive()
    }
}

/// The current certificate, swapped in whole on renewal; readers never wait.
pub type CertStore = Arc<ArcSwapOption<Certified>>;
