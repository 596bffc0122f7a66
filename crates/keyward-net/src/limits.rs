//! Deadlines and caps every listener applies to its client connections: the
//! API listener (the front and hyper behind it) and the gateway read them
//! from the one [`Limits`], so no path serves a connection longer or slower
//! than another.
//!
//! - A connection waits at most `idle` for the first byte of its next
//!   request, and a request head must be whole within `head` of that byte.
//! - A body gets `body_grace`, and one more second for every `body_min_rate`
//!   bytes it has delivered ([`Pace`]): a stalled body and a body that
//!   trickles in a byte every few seconds are both cut off soon after the
//!   grace, while a large body at a reasonable rate is not.
//! - [`Connections`] caps the connections open from one client address and,
//!   when the process runs out of file descriptors, asks idle connections to
//!   close ([`Connections::shed`]) so other clients are served again.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::Instant;

/// The deadlines and caps of client connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// How long a connection may wait, with nothing received, for its next
    /// request (from the connect or the end of the previous answer).
    pub idle: Duration,
    /// How long a request head may take from its first byte.
    pub head: Duration,
    /// How long any request body may take before [`Limits::body_min_rate`]
    /// applies.
    pub body_grace: Duration,
    /// Bytes a second a body must keep up, on average, after the grace.
    pub body_min_rate: u64,
    /// Most connections open at once from one client address (IPv6: one
    /// /64); `0` for no cap.
    pub max_connections_per_ip: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            idle: Duration::from_secs(30),
            head: Duration::from_secs(30),
            body_grace: Duration::from_secs(30),
            body_min_rate: 1024,
            max_connections_per_ip: 256,
        }
    }
}

impl Limits {
    /// The one timer hyper has for a request head, which runs from the moment
    /// it waits for one, idle time included: the shorter of the two limits,
    /// so neither is exceeded on connections hyper serves.
    pub fn hyper_head(&self) -> Duration {
        self.idle.min(self.head)
    }
}

/// A body's deadline: `body_grace` from its start, plus a second for every
/// `body_min_rate` bytes received so far.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Pace {
    started: Instant,
    grace: Duration,
    min_rate: u64,
    received: u64,
}

impl Pace {
    pub fn start(limits: &Limits) -> Self {
        Pace {
            started: Instant::now(),
            grace: limits.body_grace,
            min_rate: limits.body_min_rate.max(1),
            received: 0,
        }
    }

    /// Counts `n` more bytes of the body.
    pub fn received(&mut self, n: u64) {
        self.received = self.received.saturating_add(n);
    }

    /// When the body must have arrived in full, at the bytes counted so far.
    pub fn deadline(&self) -> Instant {
        let earned = Duration::from_secs_f64(self.received as f64 / self.min_rate as f64);
        self.started + self.grace.saturating_add(earned)
    }
}

/// Connections open per client address on one listener, and the signal that
/// asks idle connections of every listener to close.
pub struct Connections {
    limits: Limits,
    open: Arc<Mutex<HashMap<IpAddr, usize>>>,
    shed: Shed,
}

/// Asks idle connections to close; shared by the listeners of a process.
#[derive(Clone)]
pub struct Shed {
    signal: Arc<watch::Sender<u64>>,
}

impl Default for Shed {
    fn default() -> Self {
        Shed {
            signal: Arc::new(watch::channel(0).0),
        }
    }
}

impl Shed {
    /// Asks every connection idle now, or idle next, to close.
    pub fn shed(&self) {
        self.signal.send_modify(|generation| *generation += 1);
    }

    /// Resolves once [`Shed::shed`] is called after this was made.
    pub fn asked(&self) -> impl std::future::Future<Output = ()> + Send + 'static {
        let mut receiver = self.signal.subscribe();
        async move {
            if receiver.changed().await.is_err() {
                // The listener is gone; its stop signal ends the connection.
                std::future::pending::<()>().await;
            }
        }
    }
}

impl Connections {
    pub fn new(limits: Limits, shed: Shed) -> Self {
        Connections {
            limits,
            open: Arc::default(),
            shed,
        }
    }

    pub fn shed(&self) -> &Shed {
        &self.shed
    }

    /// A slot for one more connection from `ip`, held while the connection
    /// lives; `None` when that address has its cap of connections open.
    pub fn admit(&self, ip: IpAddr) -> Option<Slot> {
        let address = client_address(ip);
        let mut open = self.open.lock().unwrap_or_else(PoisonError::into_inner);
        let count = open.entry(address).or_insert(0);
        if self.limits.max_connections_per_ip != 0 && *count >= self.limits.max_connections_per_ip {
            return None;
        }
        *count += 1;
        Some(Slot {
            address,
            open: Arc::clone(&self.open),
        })
    }
}

/// The address connections are counted by: IPv4 addresses (IPv4-mapped
/// ones too) as they are, IPv6 by their /64, which one client usually holds
/// whole.
fn client_address(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let bits = u128::from(v6) & !((1u128 << 64) - 1);
                IpAddr::V6(bits.into())
            }
        },
    }
}

/// One connection counted against its address; dropped when it closes.
pub struct Slot {
    address: IpAddr,
    open: Arc<Mutex<HashMap<IpAddr, usize>>>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut open = self.open.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(count) = open.get_mut(&self.address) {
            *count -= 1;
            if *count == 0 {
                open.remove(&self.address);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_body_earns_time_by_the_bytes_it_delivers() {
        let limits = Limits {
            body_grace: Duration::from_secs(2),
            body_min_rate: 100,
            ..Limits::default()
        };
        let mut pace = Pace::start(&limits);
        let start = pace.deadline() - Duration::from_secs(2);
        pace.received(250);
        assert_eq!(pace.deadline() - start, Duration::from_millis(4500));
    }

    #[test]
    fn connections_are_capped_per_address_and_ipv6_per_64() {
        let limits = Limits {
            max_connections_per_ip: 2,
            ..Limits::default()
        };
        let connections = Connections::new(limits, Shed::default());
        let one: IpAddr = "2001:db8::1".parse().unwrap();
        let same_64: IpAddr = "2001:db8::ffff:2".parse().unwrap();
        let other: IpAddr = "2001:db8:0:1::1".parse().unwrap();
        let a = connections.admit(one).unwrap();
        let _b = connections.admit(same_64).unwrap();
        assert!(connections.admit(one).is_none(), "the /64 is full");
        assert!(connections.admit(other).is_some(), "another /64 is not");
        drop(a);
        assert!(
            connections.admit(same_64).is_some(),
            "a closed one frees its slot"
        );
    }
}
