//! Load balancing: power-of-two-choices over a peak-EWMA latency estimate.

mod ewma;
mod p2c;

pub use ewma::PeakEwma;
pub use p2c::pick;
