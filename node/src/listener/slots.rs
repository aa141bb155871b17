//! Connection slots: a cap on open connections per listener and per client
//! address, held for a connection's whole life (handshake included).

use std::collections::HashMap;
use std::net::{IpAddr, Ipv6Addr};
use std::sync::{Arc, Mutex};

/// Why a new connection gets no slot.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    /// The listener holds `max_connections` already.
    #[error("the listener is at its connection cap ({0})")]
    ListenerFull(usize),
    /// The client address holds `max_connections_per_ip` already.
    #[error("the client address is at its connection cap ({0})")]
    AddressFull(usize),
}

/// Counts of open connections, overall and per client address.
#[derive(Debug)]
pub struct Slots {
    max_total: usize,
    max_per_address: usize,
    open: Mutex<Open>,
}

#[derive(Debug, Default)]
struct Open {
    total: usize,
    per_address: HashMap<IpAddr, usize>,
}

/// One open connection's place; frees it when dropped.
#[derive(Debug)]
pub struct Slot {
    slots: Arc<Slots>,
    address: IpAddr,
}

impl Slots {
    /// Caps of `max_total` connections, `max_per_address` of them from one
    /// client address.
    pub fn new(max_total: usize, max_per_address: usize) -> Arc<Self> {
        Arc::new(Self {
            max_total,
            max_per_address,
            open: Mutex::new(Open::default()),
        })
    }

    /// Takes a slot for a connection from `peer`, or says which cap is full.
    pub fn acquire(self: &Arc<Self>, peer: IpAddr) -> Result<Slot, Refused> {
        let address = client_address(peer);
        let mut open = self.lock();
        if open.total >= self.max_total {
            return Err(Refused::ListenerFull(self.max_total));
        }
        let count = open.per_address.entry(address).or_insert(0);
        if *count >= self.max_per_address {
            return Err(Refused::AddressFull(self.max_per_address));
        }
        *count += 1;
        open.total += 1;
        Ok(Slot {
            slots: self.clone(),
            address,
        })
    }

    /// Open connections now.
    pub fn open(&self) -> usize {
        self.lock().total
    }

    fn release(&self, address: IpAddr) {
        let mut open = self.lock();
        open.total = open.total.saturating_sub(1);
        if let Some(count) = open.per_address.get_mut(&address) {
            *count -= 1;
            if *count == 0 {
                // Forget the address so the map only holds connected clients.
                open.per_address.remove(&address);
            }
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Open> {
        // The counts stay consistent under a panic elsewhere (each update is
        // a single step), so a poisoned lock is still usable.
        self.open.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.slots.release(self.address);
    }
}

/// The address a per-client cap counts: IPv4 as is (IPv4-mapped IPv6 too),
/// IPv6 by its /64, which is what one host or site usually gets.
fn client_address(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let prefix = u128::from(v6) & !((1u128 << 64) - 1);
                IpAddr::V6(Ipv6Addr::from(prefix))
            }
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn per_address_cap_leaves_room_for_other_clients() {
        let slots = Slots::new(10, 3);
        let held: Vec<Slot> = (0..3)
            .map(|_| slots.acquire(ip("10.0.0.1")).unwrap())
            .collect();
        assert_eq!(
            slots.acquire(ip("10.0.0.1")).unwrap_err(),
            Refused::AddressFull(3)
        );
        let other = slots.acquire(ip("10.0.0.2")).unwrap();
        assert_eq!(slots.open(), 4);
        drop(held);
        drop(other);
        assert_eq!(slots.open(), 0);
        assert!(slots.lock().per_address.is_empty());
        slots.acquire(ip("10.0.0.1")).unwrap();
    }

    #[test]
    fn listener_cap_counts_every_address() {
        let slots = Slots::new(2, 2);
        let _a = slots.acquire(ip("10.0.0.1")).unwrap();
        let b = slots.acquire(ip("10.0.0.2")).unwrap();
        assert_eq!(
            slots.acquire(ip("10.0.0.3")).unwrap_err(),
            Refused::ListenerFull(2)
        );
        drop(b);
        slots.acquire(ip("10.0.0.3")).unwrap();
    }

    #[test]
    fn ipv6_clients_share_their_64_and_mapped_ipv4_is_ipv4() {
        let slots = Slots::new(10, 1);
        let _a = slots.acquire(ip("2001:db8:1:2::1")).unwrap();
        assert!(slots.acquire(ip("2001:db8:1:2:ffff::9")).is_err());
        let _b = slots.acquire(ip("2001:db8:1:3::1")).unwrap();
        let _c = slots.acquire(ip("192.0.2.7")).unwrap();
        assert!(slots.acquire(ip("::ffff:192.0.2.7")).is_err());
    }
}
