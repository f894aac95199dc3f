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
use ringcast_core::Transport;

/// How one direction of a link treats datagrams.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LinkConfig {
    /// Probability (0..=1) that a datagram is lost (on the wire, after the queue).
    pub loss: f64,
    /// One-way delay.
    pub delay: Duration,
    /// Extra random delay, uniform in `0..=jitter` (datagrams may then be reordered).
    pub jitter: Duration,
    /// Bottleneck rate in bits per second; `None` for unlimited. A datagram leaves after the
    /// one before it has, taking `size * 8 / rate` to serialize, so delay grows as the queue
    /// fills.
    pub rate_bps: Option<u64>,
    /// How much may wait in front of the bottleneck; a datagram that would exceed it is
    /// dropped (tail drop, counted in [`Link::overflowed`]). Only with a `rate_bps`.
    pub queue: QueueLimit,
}

/// The size of a link's queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QueueLimit {
    /// A datagram may wait at most this long before it starts to leave.
    Time(Duration),
    /// At most this many bytes may wait (the datagram itself included).
    Bytes(usize),
}

impl Default for LinkConfig {
    /// A clean, unlimited 1 ms link.
    fn default() -> Self {
        LinkConfig {
            loss: 0.0,
            delay: Duration::from_millis(1),
            jitter: Duration::ZERO,
            rate_bps: None,
            queue: QueueLimit::Time(Duration::from_millis(200)),
        }
    }
}

impl LinkConfig {
    /// A link with this loss probability and delay, no jitter.
    pub fn lossy(loss: f64, delay: Duration) -> Self {
        LinkConfig {
            loss,
            delay,
            ..LinkConfig::default()
        }
    }

    /// A clean link of `rate_bps` with this delay and a queue of 200 ms.
    pub fn limited(rate_bps: u64, delay: Duration) -> Self {
        LinkConfig {
            delay,
            rate_bps: Some(rate_bps),
            ..LinkConfig::default()
        }
    }
}

/// One direction of a client's link: its settings, its random generator and counters.
#[derive(Debug)]
pub struct Link {
    /// Current settings (may be changed at any time; what is queued still leaves at the old
    /// pace, before anything sent after the change).
    pub config: LinkConfig,
    rng: StdRng,
    /// When the bottleneck has finished sending what is queued.
    busy_until: Option<Instant>,
    /// Datagrams offered to this link.
    pub sent: u64,
    /// Datagrams it lost at random ([`LinkConfig::loss`]).
    pub lost: u64,
    /// Datagrams dropped because the queue was full ([`LinkConfig::queue`]).
    pub overflowed: u64,
    /// Bytes that went through its queue (lost on the wire afterwards or not).
    pub bytes: u64,
    /// The longest a datagram waited in the queue.
    pub max_queue_delay: Duration,
}

impl Link {
    /// A link seeded with `seed`.
    pub fn new(config: LinkConfig, seed: u64) -> Self {
        Link {
            config,
            rng: StdRng::seed_from_u64(seed),
            busy_until: None,
            sent: 0,
            lost: 0,
            overflowed: 0,
            bytes: 0,
            max_queue_delay: Duration::ZERO,
        }
    }

    /// When a datagram of `size` bytes sent now arrives, or `None` if it is dropped or lost.
    pub fn admit(&mut self, now: Instant, size: usize) -> Option<Instant> {
        self.sent += 1;
        // Always draw both numbers so the pattern does not depend on the settings' history.
        let lose: f64 = self.rng.random();
        let jitter: f64 = self.rng.random();
        let departs = match self.config.rate_bps {
            // What a limit queued before still leaves first.
            None => self.busy_until.map_or(now, |b| b.max(now)),
            Some(rate) => {
                let start = self.busy_until.map_or(now, |b| b.max(now));
                let wait = start - now;
                let full = match self.config.queue {
                    QueueLimit::Time(limit) => wait > limit,
                    QueueLimit::Bytes(limit) => queued_bytes(wait, rate) + size > limit,
                };
                if full {
                    self.overflowed += 1;
                    return None;
                }
                self.max_queue_delay = self.max_queue_delay.max(wait);
                let departs = start + serialization(size, rate);
                self.busy_until = Some(departs);
                departs
            }
        };
        self.bytes += size as u64;
        if lose < self.config.loss {
            self.lost += 1;
            return None;
        }
        Some(departs + self.config.delay + self.config.jitter.mul_f64(jitter))
    }
}

/// Time to put `size` bytes on a link of `rate` bits/s (at least a nanosecond per byte for
/// absurd rates, never zero for a rate of zero).
fn serialization(size: usize, rate: u64) -> Duration {
    let bits = size as u128 * 8;
    let nanos = bits * 1_000_000_000 / u128::from(rate.max(1));
    Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX))
}

/// Bytes a link of `rate` bits/s still has to send when it is busy for `wait`.
fn queued_bytes(wait: Duration, rate: u64) -> usize {
    usize::try_from(wait.as_nanos() * u128::from(rate) / 8_000_000_000).unwrap_or(usize::MAX)
}

/// A datagram in flight.
#[derive(Debug, Clone)]
pub struct Datagram {
    /// When it arrives.
    pub at: Instant,
    /// UDP, or a frame on the TCP connection between `source` and `destination`.
    pub transport: Transport,
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

    /// Where the next datagram goes, if it has arrived by `now`.
    pub fn next_due_destination(&self, now: Instant) -> Option<SocketAddr> {
        let Reverse(q) = self.queue.peek()?;
        (q.datagram.at <= now).then_some(q.datagram.destination)
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

#[cfg(test)]
mod tests {
    use super::*;

    const MBIT: u64 = 1_000_000;

    /// Offer `size`-byte datagrams every `every` for `for_`; returns (send, arrival) pairs of
    /// those that arrive.
    fn offer(
        link: &mut Link,
        start: Instant,
        size: usize,
        every: Duration,
        for_: Duration,
    ) -> Vec<(Instant, Instant)> {
        let mut out = Vec::new();
        let mut t = start;
        while t < start + for_ {
            if let Some(at) = link.admit(t, size) {
                out.push((t, at));
            }
            t += every;
        }
        out
    }

    #[test]
    fn an_unlimited_link_only_delays() {
        let mut link = Link::new(LinkConfig::default(), 1);
        let t = Instant::now();
        for _ in 0..1000 {
            assert_eq!(link.admit(t, 1200), Some(t + Duration::from_millis(1)));
        }
        assert_eq!((link.sent, link.lost, link.overflowed), (1000, 0, 0));
    }

    #[test]
    fn a_saturated_link_carries_its_rate_with_bounded_delay_and_drops_the_rest() {
        let delay = Duration::from_millis(20);
        let mut link = Link::new(LinkConfig::limited(MBIT, delay), 7);
        let start = Instant::now();
        let ten = Duration::from_secs(10);
        // 1200 bytes every 4.8 ms: 2 Mbit/s offered to a 1 Mbit/s link.
        let got = offer(&mut link, start, 1200, Duration::from_micros(4800), ten);
        let arrived = got
            .iter()
            .filter(|(_, at)| *at <= start + ten + delay)
            .count();
        let bits = arrived as f64 * 1200.0 * 8.0;
        let rate = bits / ten.as_secs_f64();
        assert!(
            (rate - MBIT as f64).abs() < MBIT as f64 * 0.03,
            "carried {rate} bit/s"
        );
        assert!(link.overflowed > 0 && link.overflowed as usize == 2084 - got.len());
        let one = serialization(1200, MBIT);
        let worst = got.iter().map(|(t, at)| *at - *t).max().unwrap();
        assert!(
            worst <= Duration::from_millis(200) + one + delay,
            "{worst:?}"
        );
        // The queue did fill: it was not dropping early.
        assert!(worst >= Duration::from_millis(190), "{worst:?}");
        assert!(link.max_queue_delay <= Duration::from_millis(200));
        // In order: a datagram never overtakes the one before it.
        assert!(got.windows(2).all(|w| w[0].1 <= w[1].1));
    }

    #[test]
    fn below_its_rate_a_link_adds_only_serialization() {
        let delay = Duration::from_millis(5);
        let mut link = Link::new(LinkConfig::limited(MBIT, delay), 3);
        let start = Instant::now();
        // 1200 bytes every 20 ms: 480 kbit/s.
        let got = offer(
            &mut link,
            start,
            1200,
            Duration::from_millis(20),
            Duration::from_secs(10),
        );
        assert_eq!(got.len(), 500);
        assert_eq!(link.overflowed, 0);
        let one = serialization(1200, MBIT);
        assert_eq!(one, Duration::from_micros(9600));
        assert!(got.iter().all(|(t, at)| *at - *t == one + delay));
    }

    #[test]
    fn a_byte_limited_queue_tail_drops_a_burst() {
        let mut link = Link::new(
            LinkConfig {
                queue: QueueLimit::Bytes(10_000),
                ..LinkConfig::limited(MBIT, Duration::ZERO)
            },
            5,
        );
        let t = Instant::now();
        let admitted: Vec<bool> = (0..20).map(|_| link.admit(t, 1000).is_some()).collect();
        // Ten fit (the last one fills the queue to exactly 10 000 bytes), the rest do not.
        assert_eq!(admitted.iter().filter(|a| **a).count(), 10);
        assert!(admitted[..10].iter().all(|a| *a));
        assert_eq!(link.overflowed, 10);
        // Once the queue drained, datagrams go through again.
        assert!(link.admit(t + Duration::from_millis(80), 1000).is_some());
    }

    #[test]
    fn lifting_the_limit_lets_the_queue_drain_first() {
        let mut link = Link::new(LinkConfig::limited(MBIT, Duration::ZERO), 2);
        let t = Instant::now();
        let queued: Vec<Instant> = (0..10).filter_map(|_| link.admit(t, 1250)).collect();
        assert_eq!(queued.last(), Some(&(t + Duration::from_millis(100))));
        link.config = LinkConfig {
            delay: Duration::ZERO,
            ..LinkConfig::default()
        };
        // Behind the queue while it drains, at once after.
        assert_eq!(link.admit(t, 1250), Some(t + Duration::from_millis(100)));
        let later = t + Duration::from_millis(150);
        assert_eq!(link.admit(later, 1250), Some(later));
    }

    #[test]
    fn the_same_seed_gives_the_same_pattern() {
        let config = LinkConfig {
            loss: 0.1,
            jitter: Duration::from_millis(10),
            ..LinkConfig::limited(MBIT, Duration::from_millis(10))
        };
        let start = Instant::now();
        let run = |seed| {
            let mut link = Link::new(config, seed);
            offer(
                &mut link,
                start,
                1000,
                Duration::from_millis(5),
                Duration::from_secs(2),
            )
        };
        assert_eq!(run(9), run(9));
        assert_ne!(run(9), run(10));
    }
}
