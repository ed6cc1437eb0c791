//! A listener's connection slots: a connection holds one while it is open, and
//! one accepted when none is free is closed at once, so a client that hoards
//! connections cannot take the process's file descriptors from everyone else.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

#[derive(Debug)]
pub struct Slots {
    free: Arc<Semaphore>,
    max: usize,
    refused: AtomicU64,
}

/// Held for as long as its connection is open.
#[derive(Debug)]
pub struct Slot(#[allow(dead_code)] OwnedSemaphorePermit);

impl Slots {
    pub fn new(max: usize) -> Self {
        Self {
            free: Arc::new(Semaphore::new(max)),
            max,
            refused: AtomicU64::new(0),
        }
    }

    /// A slot for a new connection, or `None` (counted) when all are taken.
    pub fn take(&self) -> Option<Slot> {
        match Arc::clone(&self.free).try_acquire_owned() {
            Ok(permit) => Some(Slot(permit)),
            Err(_) => {
                self.refused.fetch_add(1, Relaxed);
                None
            }
        }
    }

    pub fn max(&self) -> usize {
        self.max
    }

    /// Connections closed at once for want of a slot, since start.
    pub fn refused(&self) -> u64 {
        self.refused.load(Relaxed)
    }

    /// Connections holding a slot now.
    pub fn open(&self) -> usize {
        self.max - self.free.available_permits()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_listener_refuses_and_counts_until_a_slot_is_freed() {
        let slots = Slots::new(2);
        let a = slots.take().unwrap();
        let _b = slots.take().unwrap();
        assert!(slots.take().is_none());
        assert!(slots.take().is_none());
        assert_eq!((slots.open(), slots.refused()), (2, 2));
        drop(a);
        assert!(slots.take().is_some());
    }
}
