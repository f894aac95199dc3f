//! The transmit queue a driver fills during a turn and an engine drains in batched sends.
//!
//! A [`TxQueue`] is a FIFO of [`Transmit`]s. Its storage is kept between turns, so pushing does
//! not allocate in steady state. The queue takes ownership of each datagram's `Vec<u8>`; once
//! the engine has sent (or dropped) a datagram its buffer goes back to a small pool, and
//! [`TxQueue::buffer`] hands it out again, so a driver that builds its datagrams in buffers
//! from [`TxQueue::buffer`] allocates nothing per packet either.
//!
//! Generic segmentation offload (several equal-size datagrams to one destination in one
//! `sendmsg` with `UDP_SEGMENT`) is not done yet; when it comes, a transmit will carry a
//! segment size, as `quinn_udp::Transmit` does.

use std::collections::VecDeque;
use std::net::SocketAddr;

/// Most spent buffers kept for reuse; beyond this they are freed.
const POOL_LIMIT: usize = 1024;

/// One datagram to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transmit {
    /// Where to send it.
    pub destination: SocketAddr,
    /// The local address to send it from (`IP_PKTINFO`/`IPV6_PKTINFO` on a socket bound to a
    /// wildcard address): normally the `destination` the peer's datagram was received on, so
    /// replies leave from the address the peer used. `None`, or an unspecified address, lets
    /// the kernel choose. Ignored on sockets bound to a concrete address.
    pub source: Option<SocketAddr>,
    /// The datagram's payload.
    pub contents: Vec<u8>,
}

/// A FIFO of [`Transmit`]s, filled by the driver and drained by the engine.
#[derive(Debug, Default)]
pub struct TxQueue {
    transmits: VecDeque<Transmit>,
    pool: Vec<Vec<u8>>,
}

impl TxQueue {
    /// An empty queue.
    pub fn new() -> Self {
        Self::default()
    }

    /// An empty queue with room for `capacity` transmits before it grows.
    pub fn with_capacity(capacity: usize) -> Self {
        Self {
            transmits: VecDeque::with_capacity(capacity),
            pool: Vec::with_capacity(capacity.min(POOL_LIMIT)),
        }
    }

    /// Queue a datagram; it is sent after the current driver call returns, in order.
    pub fn push(&mut self, transmit: Transmit) {
        self.transmits.push_back(transmit);
    }

    /// An empty buffer to build a datagram in, reused from a datagram already sent when there
    /// is one (its capacity is kept), else a new one.
    pub fn buffer(&mut self) -> Vec<u8> {
        self.pool.pop().unwrap_or_default()
    }

    /// Give a buffer back for reuse by [`TxQueue::buffer`].
    pub fn recycle(&mut self, mut buffer: Vec<u8>) {
        if self.pool.len() < POOL_LIMIT && buffer.capacity() > 0 {
            buffer.clear();
            self.pool.push(buffer);
        }
    }

    /// Number of queued transmits.
    pub fn len(&self) -> usize {
        self.transmits.len()
    }

    /// Whether nothing is queued.
    pub fn is_empty(&self) -> bool {
        self.transmits.is_empty()
    }

    /// The queued transmits, oldest first.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = &Transmit> + '_ {
        self.transmits.iter()
    }

    /// The transmit at position `index` (0 is the oldest).
    pub fn get(&self, index: usize) -> Option<&Transmit> {
        self.transmits.get(index)
    }

    /// Remove the oldest `count` transmits (all of them if fewer are queued), recycling their
    /// buffers. Engines call this for what they sent or dropped.
    pub fn consume(&mut self, count: usize) {
        for _ in 0..count.min(self.transmits.len()) {
            if let Some(transmit) = self.transmits.pop_front() {
                self.recycle(transmit.contents);
            }
        }
    }

    /// Remove and return every queued transmit, oldest first.
    pub fn drain(&mut self) -> impl Iterator<Item = Transmit> + '_ {
        self.transmits.drain(..)
    }

    /// Drop every queued transmit, recycling their buffers.
    pub fn clear(&mut self) {
        self.consume(self.transmits.len());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn transmit(byte: u8) -> Transmit {
        Transmit {
            destination: "127.0.0.1:9".parse().unwrap(),
            source: None,
            contents: vec![byte; 10],
        }
    }

    #[test]
    fn fifo_order() {
        let mut queue = TxQueue::new();
        assert!(queue.is_empty());
        for byte in 0..5 {
            queue.push(transmit(byte));
        }
        assert_eq!(queue.len(), 5);
        assert_eq!(queue.get(0).unwrap().contents[0], 0);
        queue.consume(2);
        let rest: Vec<u8> = queue.iter().map(|t| t.contents[0]).collect();
        assert_eq!(rest, [2, 3, 4]);
        let drained: Vec<u8> = queue.drain().map(|t| t.contents[0]).collect();
        assert_eq!(drained, [2, 3, 4]);
        assert!(queue.is_empty());
    }

    #[test]
    fn consumed_buffers_are_reused() {
        let mut queue = TxQueue::with_capacity(4);
        let mut buffer = queue.buffer();
        buffer.extend_from_slice(&[7; 100]);
        let pointer = buffer.as_ptr();
        queue.push(Transmit {
            destination: "127.0.0.1:9".parse().unwrap(),
            source: None,
            contents: buffer,
        });
        queue.consume(10);
        assert!(queue.is_empty());
        let again = queue.buffer();
        assert!(again.is_empty());
        assert!(again.capacity() >= 100);
        assert_eq!(again.as_ptr(), pointer);
        // Pool empty now: a fresh buffer.
        assert_eq!(queue.buffer().capacity(), 0);
    }

    #[test]
    fn clear_recycles() {
        let mut queue = TxQueue::new();
        queue.push(transmit(1));
        queue.push(transmit(2));
        queue.clear();
        assert!(queue.is_empty());
        assert!(queue.buffer().capacity() >= 10);
        assert!(queue.buffer().capacity() >= 10);
    }
}
