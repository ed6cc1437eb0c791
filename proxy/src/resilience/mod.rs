//! What the request path does to stay up: which failures are retried and how long
//! to wait between attempts ([`retry`]), how many retries a cluster may add
//! ([`budget`]), the deadlines a request carries ([`deadline`]), the faults it
//! injects on purpose ([`fault`]) and the local rate limits ([`rate_limit`]).

pub mod budget;
pub mod deadline;
pub mod fault;
pub mod rate_limit;
pub mod retry;

pub use budget::{BudgetConfig, RetryBudget};
pub use retry::{RetryOn, RetryPolicy};
