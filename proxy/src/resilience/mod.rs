//! What the outbound path does when an attempt fails or takes too long: which
//! failures are retried and how long to wait between attempts ([`retry`]), how
//! many retries a cluster may add ([`budget`]), and the deadlines a request carries
//! ([`deadline`]).

pub mod budget;
pub mod deadline;
pub mod retry;

pub use budget::{BudgetConfig, RetryBudget};
pub use retry::{RetryOn, RetryPolicy};
