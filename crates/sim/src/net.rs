//! The in-memory network: datagrams between simulated addresses, each delayed and maybe lost by
//! the link it travels on, delivered in time order (ties in the order they were sent).
//!
//! Every client has two [`Link`]s, up (client → shard) and down (shard → client), each with its
//! own [`LinkConfig`] and its own seeded random generator, so the loss pattern of one link does
//! not depend on how much traffic the others carry.

use std::cmp::{Ordering, Reverse};
use std::collections::BinaryHeap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// How one direction of a link treats datagrams.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LinkConfig {
    /// Probability (0..=1) that a datagram is lost.
    pub loss: f64,
    /// One-way delay.
    pub delay: Duration,
    /// Extra random delay, uniform in `0..=jitter` (datagrams may then be reordered).
    pub jitter: Duration,
}

impl Default for LinkConfig {
    /// A clean 1 ms link.
    fn default() -> Self {
        LinkConfig {
            loss: 0.0,
            delay: Duration::from_millis(1),
            jitter: Duration::ZERO,
        }
    }
}

impl LinkConfig {
    /// A link with this loss probability and delay, no jitter.
    pub fn lossy(loss: f64, delay: Duration) -> Self {
        LinkConfig {
            loss,
            delay,
            jitter: Duration::ZERO,
        }
    }
}

/// One direction of a client's link: its settings, its random generator and counters.
#[derive(Debug)]
pub struct Link {
    /// Current settings (may be changed at any time).
    pub config: LinkConfig,
    rng: StdRng,
    /// Datagrams offered to this link.
    pub sent: u64,
    /// Datagrams it lost.
    pub lost: u64,
}

impl Link {
    /// A link seeded with `seed`.
    pub fn new(config: LinkConfig, seed: u64) -> Self {
        Link {
            config,
            rng: StdRng::seed_from_u64(seed),
            sent: 0,
            lost: 0,
        }
    }

    /// When a datagram sent now arrives, or `None` if it is lost.
    pub fn admit(&mut self, now: Instant) -> Option<Instant> {
        self.sent += 1;
        // Always draw both numbers so the pattern does not depend on the settings' history.
        let lose: f64 = self.rng.random();
        let jitter: f64 = self.rng.random();
        if lose < self.config.loss {
            self.lost += 1;
            return None;
        }
        Some(now + self.config.delay + self.config.jitter.mul_f64(jitter))
    }
}

/// A datagram in flight.
#[derive(Debug, Clone)]
pub struct Datagram {
    /// When it arrives.
    pub at: Instant,
    /// Sender.
    pub source: SocketAddr,
    /// Receiver.
    pub destination: SocketAddr,
    /// The bytes.
    pub contents: Vec<u8>,
}

struct Queued {
    order: u64,
    datagram: Datagram,
}

impl PartialEq for Queued {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}
impl Eq for Queued {}
impl PartialOrd for Queued {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Queued {
    fn cmp(&self, other: &Self) -> Ordering {
        (self.datagram.at, self.order).cmp(&(other.datagram.at, other.order))
    }
}

/// Datagrams in flight, in arrival order.
#[derive(Default)]
pub struct Network {
    queue: BinaryHeap<Reverse<Queued>>,
    order: u64,
    /// Datagrams delivered so far.
    pub delivered: u64,
}

impl std::fmt::Debug for Network {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Network")
            .field("in_flight", &self.queue.len())
            .field("delivered", &self.delivered)
            .finish()
    }
}

impl Network {
    /// Put a datagram on the wire; it arrives at `datagram.at`.
    pub fn push(&mut self, datagram: Datagram) {
        self.order += 1;
        self.queue.push(Reverse(Queued {
            order: self.order,
            datagram,
        }));
    }

    /// Arrival time of the next datagram.
    pub fn next_at(&self) -> Option<Instant> {
        self.queue.peek().map(|Reverse(q)| q.datagram.at)
    }

    /// Take the next datagram if it has arrived by `now`.
    pub fn pop_due(&mut self, now: Instant) -> Option<Datagram> {
        if self.next_at()? > now {
            return None;
        }
        self.delivered += 1;
        self.queue.pop().map(|Reverse(q)| q.datagram)
    }

    /// Datagrams in flight.
    pub fn in_flight(&self) -> usize {
        self.queue.len()
    }
}
