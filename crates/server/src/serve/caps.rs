//! Connection caps: at most so many connections in total and per client address (IPv6: per
//! /64). A connection holds a [`Permit`] for its life; dropping it gives the slot back.
//!
//! At the total cap a new connection is not refused while an idle one (no request in flight)
//! is open: of a few connections picked at random, the one idle the longest is told to close
//! and its slot goes to the newcomer. Many clients each under the per-client cap can thus not
//! fill the server with idle connections and lock everyone else out until they time out.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv6Addr};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use rand::Rng;
use ringcast_http::Refusals;
use tokio::sync::Notify;

/// Connections looked at for an idle one when the total cap is reached.
const EVICTION_SAMPLE: usize = 8;

/// In [`Tenant::state`]: told to close.
const EVICTED: usize = 1 << (usize::BITS - 1);

/// Counts open connections against the two caps.
#[derive(Debug, Clone)]
pub(super) struct Caps {
    inner: Arc<Inner>,
}

/// Why a connection was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Refusal {
    /// `http.max_connections` connections are open and none of those sampled is idle.
    Total,
    /// `http.max_connections_per_client` connections from this client are open.
    PerClient,
}

/// One admitted connection's slot.
#[derive(Debug)]
pub(super) struct Permit {
    inner: Arc<Inner>,
    slot: usize,
    tenant: Arc<Tenant>,
}

/// What the caps know of an admitted connection, shared with it: its requests in flight, since
/// when it is idle, and the call to close when its slot is given to a newcomer.
#[derive(Debug)]
pub(super) struct Tenant {
    /// Requests in flight, with [`EVICTED`] set once told to close.
    state: AtomicUsize,
    /// Milliseconds from `base` to the end of its last request (or its accept).
    quiet_since_ms: AtomicU64,
    base: Instant,
    evict: Notify,
}

#[derive(Debug)]
struct Inner {
    max_total: usize,
    max_per_client: usize,
    open: Mutex<Open>,
    refused: AtomicU64,
    refusals: Arc<Refusals>,
    base: Instant,
}

#[derive(Debug, Default)]
struct Open {
    total: usize,
    per_client: HashMap<IpAddr, usize>,
    /// Every admitted connection not yet dropped, evicted ones included; `None` is free.
    slots: Vec<Option<Slot>>,
    free: Vec<usize>,
}

#[derive(Debug)]
struct Slot {
    client: IpAddr,
    tenant: Arc<Tenant>,
    /// Still in `total` and `per_client` (an evicted connection gave its slot back already).
    counted: bool,
}

impl Caps {
    /// Caps of `max_total` and `max_per_client`; refusals and evictions are counted in
    /// `refusals` too.
    pub(super) fn new(max_total: usize, max_per_client: usize, refusals: Arc<Refusals>) -> Caps {
        Caps {
            inner: Arc::new(Inner {
                max_total,
                max_per_client,
                open: Mutex::new(Open::default()),
                refused: AtomicU64::new(0),
                refusals,
                base: Instant::now(),
            }),
        }
    }

    /// A slot for a connection from `ip`, or why there is none. At the total cap an idle
    /// connection is told to close to make room. Each refusal is counted.
    pub(super) fn admit(&self, ip: IpAddr) -> Result<Permit, Refusal> {
        let client = client_key(ip);
        let mut open = self.inner.open.lock().unwrap_or_else(|e| e.into_inner());
        let refusal =
            if open.per_client.get(&client).copied().unwrap_or(0) >= self.inner.max_per_client {
                Some(Refusal::PerClient)
            } else if open.total < self.inner.max_total {
                None
            } else if open.evict_one_idle() {
                self.inner
                    .refusals
                    .count(|c| c.refused_idle_connections_closed += 1);
                None
            } else {
                Some(Refusal::Total)
            };
        if let Some(refusal) = refusal {
            self.inner.refused.fetch_add(1, Ordering::Relaxed);
            self.inner.refusals.count(|c| match refusal {
                Refusal::Total => c.refused_connections += 1,
                Refusal::PerClient => c.refused_connections_per_client += 1,
            });
            return Err(refusal);
        }
        open.total += 1;
        *open.per_client.entry(client).or_insert(0) += 1;
        let tenant = Arc::new(Tenant {
            state: AtomicUsize::new(0),
            quiet_since_ms: AtomicU64::new(self.inner.since_base()),
            base: self.inner.base,
            evict: Notify::new(),
        });
        let entry = Slot {
            client,
            tenant: tenant.clone(),
            counted: true,
        };
        let slot = match open.free.pop() {
            Some(i) => {
                open.slots[i] = Some(entry);
                i
            }
            None => {
                open.slots.push(Some(entry));
                open.slots.len() - 1
            }
        };
        Ok(Permit {
            inner: self.inner.clone(),
            slot,
            tenant,
        })
    }

    /// Connections refused so far.
    pub(super) fn refused(&self) -> u64 {
        self.inner.refused.load(Ordering::Relaxed)
    }

    /// Connections open now (those told to close not counted).
    pub(super) fn open(&self) -> usize {
        self.inner
            .open
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .total
    }
}

impl Permit {
    /// The connection's side of its slot.
    pub(super) fn tenant(&self) -> Arc<Tenant> {
        self.tenant.clone()
    }
}

impl Tenant {
    /// A request is in flight.
    pub(super) fn request_started(&self) {
        self.state.fetch_add(1, Ordering::AcqRel);
    }

    /// A request was answered.
    pub(super) fn request_ended(&self) {
        let before = self.state.fetch_sub(1, Ordering::AcqRel);
        if before & !EVICTED == 1 {
            let now = u64::try_from(self.base.elapsed().as_millis()).unwrap_or(u64::MAX);
            self.quiet_since_ms.store(now, Ordering::Relaxed);
        }
    }

    /// Requests in flight now.
    pub(super) fn in_flight(&self) -> usize {
        self.state.load(Ordering::Acquire) & !EVICTED
    }

    /// Resolves once the connection was told to close to make room for another.
    pub(super) async fn evicted(&self) {
        self.evict.notified().await;
    }

    /// Told to close, if it has no request in flight now.
    fn try_evict(&self) -> bool {
        let evicted = self
            .state
            .compare_exchange(0, EVICTED, Ordering::AcqRel, Ordering::Acquire)
            .is_ok();
        if evicted {
            self.evict.notify_one();
        }
        evicted
    }
}

impl Inner {
    fn since_base(&self) -> u64 {
        u64::try_from(self.base.elapsed().as_millis()).unwrap_or(u64::MAX)
    }
}

impl Open {
    /// Tell the longest idle of a few connections picked at random (all of them, when there
    /// are no more than a sample) to close, and give its slot back; false when none of them
    /// is idle.
    fn evict_one_idle(&mut self) -> bool {
        let n = self.slots.len();
        let mut rng = rand::rng();
        let picked: Vec<usize> = if n <= EVICTION_SAMPLE {
            (0..n).collect()
        } else {
            (0..EVICTION_SAMPLE)
                .map(|_| rng.random_range(0..n))
                .collect()
        };
        let mut oldest: Option<(u64, usize)> = None;
        for i in picked {
            let Some(slot) = &self.slots[i] else { continue };
            if !slot.counted || slot.tenant.state.load(Ordering::Acquire) != 0 {
                continue;
            }
            let since = slot.tenant.quiet_since_ms.load(Ordering::Relaxed);
            if oldest.is_none_or(|(s, _)| since < s) {
                oldest = Some((since, i));
            }
        }
        let Some((_, i)) = oldest else { return false };
        let slot = self.slots[i].as_mut().expect("sampled slot is taken");
        if !slot.tenant.try_evict() {
            // A request started since it was looked at.
            return false;
        }
        slot.counted = false;
        let client = slot.client;
        self.uncount(client);
        true
    }

    fn uncount(&mut self, client: IpAddr) {
        self.total -= 1;
        if let Some(n) = self.per_client.get_mut(&client) {
            *n -= 1;
            if *n == 0 {
                self.per_client.remove(&client);
            }
        }
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        let mut open = self.inner.open.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(slot) = open.slots[self.slot].take() {
            if slot.counted {
                open.uncount(slot.client);
            }
            open.free.push(self.slot);
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
        let refusals = Arc::new(Refusals::default());
        let caps = Caps::new(3, 2, refusals.clone());
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let b: IpAddr = "192.0.2.2".parse().unwrap();
        let a1 = busy(caps.admit(a).unwrap());
        let _a2 = busy(caps.admit(a).unwrap());
        assert_eq!(caps.admit(a).unwrap_err(), Refusal::PerClient);
        let _b1 = busy(caps.admit(b).unwrap());
        assert_eq!(caps.admit(b).unwrap_err(), Refusal::Total);
        assert_eq!(caps.refused(), 2);
        let counted = refusals.snapshot();
        assert_eq!(counted.refused_connections_per_client, 1);
        assert_eq!(counted.refused_connections, 1);
        drop(a1);
        assert_eq!(caps.open(), 2);
        let _a3 = caps.admit(a).unwrap();
    }

    /// `permit` with a request in flight.
    fn busy(permit: Permit) -> Permit {
        permit.tenant().request_started();
        permit
    }

    #[test]
    fn at_the_total_cap_an_idle_connection_makes_room_and_a_busy_one_does_not() {
        let refusals = Arc::new(Refusals::default());
        let caps = Caps::new(2, 2, refusals.clone());
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let b: IpAddr = "192.0.2.2".parse().unwrap();
        let c: IpAddr = "192.0.2.3".parse().unwrap();
        let busy_a = busy(caps.admit(a).unwrap());
        let idle_b = caps.admit(b).unwrap();
        let new_c = caps.admit(c).expect("the idle connection makes room");
        assert_eq!(idle_b.tenant.state.load(Ordering::Acquire), EVICTED);
        assert_eq!(busy_a.tenant().in_flight(), 1);
        assert_eq!(caps.open(), 2);
        assert_eq!(refusals.snapshot().refused_idle_connections_closed, 1);
        // The evicted one's drop gives nothing back twice.
        drop(idle_b);
        assert_eq!(caps.open(), 2);
        busy_a.tenant().request_started();
        new_c.tenant().request_started();
        assert_eq!(caps.admit(b).unwrap_err(), Refusal::Total);
        // An answered request makes a connection idle again.
        new_c.tenant().request_ended();
        let _b = caps.admit(b).unwrap();
        assert_eq!(new_c.tenant().state.load(Ordering::Acquire), EVICTED);
    }

    #[test]
    fn an_ipv6_client_is_its_64_and_a_mapped_ipv4_is_the_ipv4() {
        let caps = Caps::new(10, 1, Arc::default());
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
