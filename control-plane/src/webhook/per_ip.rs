//! Open connections counted per client address, so that one address (a
//! scanner, a client that opens connections and never finishes its
//! handshake) holds at most a few of the listener's slots and the API
//! server always finds one free.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

/// At most `max` open connections per address.
#[derive(Debug)]
pub struct PerIp {
    max: usize,
    open: Arc<Mutex<HashMap<IpAddr, usize>>>,
    refused: AtomicU64,
}

/// One connection of an address, counted until dropped.
#[derive(Debug)]
pub struct IpSlot {
    ip: IpAddr,
    open: Arc<Mutex<HashMap<IpAddr, usize>>>,
}

impl PerIp {
    pub fn new(max: usize) -> Self {
        Self {
            max,
            open: Arc::default(),
            refused: AtomicU64::new(0),
        }
    }

    /// A slot for a new connection from `ip`, or `None` (counted) when that
    /// address has `max` open already.
    pub fn take(&self, ip: IpAddr) -> Option<IpSlot> {
        let mut open = self.open.lock().unwrap_or_else(PoisonError::into_inner);
        let count = open.entry(ip).or_insert(0);
        if *count >= self.max {
            self.refused.fetch_add(1, Ordering::Relaxed);
            return None;
        }
        *count += 1;
        Some(IpSlot {
            ip,
            open: self.open.clone(),
        })
    }

    pub fn max(&self) -> usize {
        self.max
    }

    /// Connections closed at once for this limit, since start.
    pub fn refused(&self) -> u64 {
        self.refused.load(Ordering::Relaxed)
    }

    /// Addresses with an open connection: the map never keeps the others.
    #[cfg(test)]
    fn addresses(&self) -> usize {
        self.open
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }
}

impl Drop for IpSlot {
    fn drop(&mut self) {
        let mut open = self.open.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(count) = open.get_mut(&self.ip) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                open.remove(&self.ip);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_address_gets_max_connections_and_others_are_not_affected() {
        let limit = PerIp::new(2);
        let one: IpAddr = "10.0.0.1".parse().unwrap();
        let two: IpAddr = "10.0.0.2".parse().unwrap();
        let a = limit.take(one).unwrap();
        let _b = limit.take(one).unwrap();
        assert!(limit.take(one).is_none(), "a third from the same address");
        assert_eq!(limit.refused(), 1);
        let _c = limit.take(two).expect("another address is not affected");

        // A closed connection gives its address a slot back.
        drop(a);
        let _d = limit.take(one).unwrap();
        assert!(limit.take(one).is_none());
    }

    #[test]
    fn an_address_without_connections_is_forgotten() {
        let limit = PerIp::new(8);
        for i in 0..100u8 {
            let ip = IpAddr::from([10, 0, 0, i]);
            let slot = limit.take(ip).unwrap();
            drop(slot);
        }
        assert_eq!(limit.addresses(), 0);
    }
}
