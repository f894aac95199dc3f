//! Connection caps: at most so many connections in total and per client address (IPv6: per
//! /64). A connection holds a [`Permit`] for its life; dropping it gives the slot back.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv6Addr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// Counts open connections against the two caps.
#[derive(Debug, Clone)]
pub(super) struct Caps {
    inner: Arc<Inner>,
}

/// Why a connection was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Refusal {
    /// `http.max_connections` connections are open.
    Total,
    /// `http.max_connections_per_client` connections from this client are open.
    PerClient,
}

/// One admitted connection's slot.
#[derive(Debug)]
pub(super) struct Permit {
    inner: Arc<Inner>,
    client: IpAddr,
}

#[derive(Debug)]
struct Inner {
    max_total: usize,
    max_per_client: usize,
    open: Mutex<Open>,
    refused: AtomicU64,
}

#[derive(Debug, Default)]
struct Open {
    total: usize,
    per_client: HashMap<IpAddr, usize>,
}

impl Caps {
    pub(super) fn new(max_total: usize, max_per_client: usize) -> Caps {
        Caps {
            inner: Arc::new(Inner {
                max_total,
                max_per_client,
                open: Mutex::new(Open::default()),
                refused: AtomicU64::new(0),
            }),
        }
    }

    /// A slot for a connection from `ip`, or why there is none. Each refusal is counted.
    pub(super) fn admit(&self, ip: IpAddr) -> Result<Permit, Refusal> {
        let client = client_key(ip);
        let mut open = self.inner.open.lock().unwrap_or_else(|e| e.into_inner());
        let refusal = if open.total >= self.inner.max_total {
            Some(Refusal::Total)
        } else if open.per_client.get(&client).copied().unwrap_or(0) >= self.inner.max_per_client {
            Some(Refusal::PerClient)
        } else {
            None
        };
        if let Some(refusal) = refusal {
            self.inner.refused.fetch_add(1, Ordering::Relaxed);
            return Err(refusal);
        }
        open.total += 1;
        *open.per_client.entry(client).or_insert(0) += 1;
        Ok(Permit {
            inner: self.inner.clone(),
            client,
        })
    }

    /// Connections refused so far.
    pub(super) fn refused(&self) -> u64 {
        self.inner.refused.load(Ordering::Relaxed)
    }

    /// Connections open now.
    pub(super) fn open(&self) -> usize {
        self.inner
            .open
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .total
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        let mut open = self.inner.open.lock().unwrap_or_else(|e| e.into_inner());
        open.total -= 1;
        if let Some(n) = open.per_client.get_mut(&self.client) {
            *n -= 1;
            if *n == 0 {
                open.per_client.remove(&self.client);
            }
        }
    }
}

/// The address a cap counts: an IPv4 address (IPv4-mapped IPv6 included) as is, an IPv6 one
/// as its /64 (one host usually holds a whole /64).
fn client_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(v4) => IpAddr::V4(v4),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(Ipv6Addr::from(u128::from(v6) & !((1u128 << 64) - 1))),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caps_count_per_client_and_in_total_and_give_slots_back() {
        let caps = Caps::new(3, 2);
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let b: IpAddr = "192.0.2.2".parse().unwrap();
        let a1 = caps.admit(a).unwrap();
        let _a2 = caps.admit(a).unwrap();
        assert_eq!(caps.admit(a).unwrap_err(), Refusal::PerClient);
        let _b1 = caps.admit(b).unwrap();
        assert_eq!(caps.admit(b).unwrap_err(), Refusal::Total);
        assert_eq!(caps.refused(), 2);
        drop(a1);
        assert_eq!(caps.open(), 2);
        let _a3 = caps.admit(a).unwrap();
    }

    #[test]
    fn an_ipv6_client_is_its_64_and_a_mapped_ipv4_is_the_ipv4() {
        let caps = Caps::new(10, 1);
        let _x = caps.admit("2001:db8:1:2::1".parse().unwrap()).unwrap();
        assert_eq!(
            caps.admit("2001:db8:1:2:ffff::9".parse().unwrap())
                .unwrap_err(),
            Refusal::PerClient
        );
        let _y = caps.admit("2001:db8:1:3::1".parse().unwrap()).unwrap();
        let _v4 = caps.admit("192.0.2.1".parse().unwrap()).unwrap();
        assert_eq!(
            caps.admit("::ffff:192.0.2.1".parse().unwrap()).unwrap_err(),
            Refusal::PerClient
        );
    }
}
