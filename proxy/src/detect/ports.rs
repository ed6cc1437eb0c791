//! Which ports skip detection. On a server-first protocol the client sends
//! nothing until the server speaks, so detection would hold every connection for
//! its whole timeout; on a declared port the answer is already known. Both are
//! carried without reading a byte.
//!
//! A port is declared through its Service's `appProtocol`; the rest fall back to
//! a list of well-known opaque ports, which an operator may replace.

use std::fmt;

/// Server-first and binary protocols whose clients speak first rarely or never
/// in a way we can detect: carried as opaque TCP without waiting.
pub const DEFAULT_OPAQUE_PORTS: &[u16] = &[
    25,    // SMTP (server-first greeting)
    587,   // SMTP submission (server-first)
    3306,  // MySQL (server-first handshake)
    4222,  // NATS (server-first INFO)
    5432,  // PostgreSQL (binary startup, then often its own TLS)
    6379,  // Redis (RESP)
    27017, // MongoDB (binary wire protocol)
    9092,  // Kafka (binary)
    1883,  // MQTT (binary)
    5672,  // AMQP (binary)
    11211, // memcached
    4369,  // Erlang port mapper (epmd: RabbitMQ clustering)
    8883,  // MQTT over TLS
    5671,  // AMQP over TLS
    9042,  // Cassandra CQL (binary)
    2181,  // ZooKeeper (binary)
    3307,  // MySQL, second instance or a proxy in front of it (server-first)
];

/// What a port is declared as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Declared {
    Http1,
    H2,
    Opaque,
}

/// `appProtocol` values we know, compared without case as IANA service names
/// are.
const APP_PROTOCOLS: &[(&str, Declared)] = &[
    ("http", Declared::Http1),
    ("kubernetes.io/h2c", Declared::H2),
    ("grpc", Declared::H2),
    ("tcp", Declared::Opaque),
    ("mysql", Declared::Opaque),
    ("postgresql", Declared::Opaque),
    ("redis", Declared::Opaque),
    ("nats", Declared::Opaque),
    ("amqp", Declared::Opaque),
    ("mqtt", Declared::Opaque),
    ("kafka", Declared::Opaque),
    ("smtp", Declared::Opaque),
];

/// What a Service port's `appProtocol` declares, or `None` for a value we do not
/// know (the port is then detected).
pub fn from_app_protocol(app_protocol: &str) -> Option<Declared> {
    APP_PROTOCOLS
        .iter()
        .find(|(name, _)| name.eq_ignore_ascii_case(app_protocol))
        .map(|&(_, declared)| declared)
}

/// A set of ports with O(1) lookup on the accept path: one bit per port.
#[derive(Clone, PartialEq, Eq)]
pub struct OpaquePorts {
    bits: Box<[u64; 1024]>,
}

impl OpaquePorts {
    pub fn new(ports: impl IntoIterator<Item = u16>) -> Self {
        let mut set = Self {
            bits: Box::new([0; 1024]),
        };
        for port in ports {
            set.insert(port);
        }
        set
    }

    pub fn insert(&mut self, port: u16) {
        let (word, bit) = Self::position(port);
        self.bits[word] |= bit;
    }

    pub fn contains(&self, port: u16) -> bool {
        let (word, bit) = Self::position(port);
        self.bits[word] & bit != 0
    }

    pub fn iter(&self) -> impl Iterator<Item = u16> + '_ {
        (0..=u16::MAX).filter(|&port| self.contains(port))
    }

    /// The word (always < 1024: a u16 shifted right by 6) and the bit in it.
    fn position(port: u16) -> (usize, u64) {
        (usize::from(port >> 6), 1 << (port & 63))
    }
}

impl Default for OpaquePorts {
    fn default() -> Self {
        Self::new(DEFAULT_OPAQUE_PORTS.iter().copied())
    }
}

impl FromIterator<u16> for OpaquePorts {
    fn from_iter<I: IntoIterator<Item = u16>>(ports: I) -> Self {
        Self::new(ports)
    }
}

/// The ports, not 1024 words of bits.
impl fmt::Debug for OpaquePorts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set().entries(self.iter()).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_set_holds_exactly_the_default_ports() {
        let set = OpaquePorts::default();
        for &port in DEFAULT_OPAQUE_PORTS {
            assert!(set.contains(port), "{port}");
        }
        assert_eq!(set.iter().count(), DEFAULT_OPAQUE_PORTS.len());
        assert!(!set.contains(80));
        assert!(!set.contains(8080));
    }

    #[test]
    fn the_lowest_and_highest_ports_fit() {
        let set: OpaquePorts = [0, 63, 64, u16::MAX].into_iter().collect();
        assert_eq!(set.iter().collect::<Vec<_>>(), [0, 63, 64, u16::MAX]);
        assert!(!set.contains(1));
        assert!(!set.contains(u16::MAX - 1));
        assert_eq!(format!("{set:?}"), "{0, 63, 64, 65535}");
    }

    #[test]
    fn app_protocols_map_to_what_they_declare() {
        assert_eq!(from_app_protocol("http"), Some(Declared::Http1));
        assert_eq!(from_app_protocol("HTTP"), Some(Declared::Http1));
        assert_eq!(from_app_protocol("kubernetes.io/h2c"), Some(Declared::H2));
        assert_eq!(from_app_protocol("grpc"), Some(Declared::H2));
        for opaque in [
            "tcp",
            "mysql",
            "postgresql",
            "redis",
            "nats",
            "amqp",
            "mqtt",
            "kafka",
            "smtp",
        ] {
            assert_eq!(
                from_app_protocol(opaque),
                Some(Declared::Opaque),
                "{opaque}"
            );
        }
        assert_eq!(from_app_protocol("https"), None);
        assert_eq!(from_app_protocol(""), None);
    }
}
