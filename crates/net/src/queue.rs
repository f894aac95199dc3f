//! The transmit queue a driver fills during a turn and an engine drains in batched sends.
//!
//! A [`TxQueue`] is a FIFO of [`Transmit`]s. Its storage is kept between turns, so pushing does
//! not allocate in steady state. The queue takes ownership of each datagram's `Vec<u8>`; once
//! the engine has sent (or dropped) a datagram its buffer goes back to a small pool, and
//! [`TxQueue::buffer`] hands it out again, so a driver that builds its datagrams in buffers
//! from [`TxQueue::buffer`] allocates nothing per packet either.
//!
//! # Segmentation offload (GSO)
//!
//! When the engine allows it ([`TxQueue::set_max_segments`] > 1), the queue merges datagrams
//! as they are pushed: a datagram for a destination (and source address) that already has a
//! queued, not yet sent transmit whose datagrams all have the same size, and that is no larger
//! than them, is appended to that transmit's buffer instead of being queued on its own. The
//! merged transmit carries [`Transmit::segment_size`] and leaves in one `sendmsg` with
//! `UDP_SEGMENT`; the kernel cuts it back into datagrams of that size (the last may be
//! shorter). A shorter datagram closes its group, as does reaching the segment or byte limit.
//! So a video frame's packets to one viewer, fanned out packet by packet across all viewers
//! during one engine turn, leave as one send per viewer. Datagrams to one destination keep
//! their order; datagrams to different destinations may leave in another order than they were
//! pushed (a merged group goes out at the position of its first datagram).
//!
//! Merging costs one hash lookup per push and one copy of the datagram into the group's
//! buffer. Group buffers (up to [`MAX_GSO_BYTES`]) come from a second pool, so steady state
//! allocates nothing here either.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;

use rustc_hash::FxBuildHasher;

/// Most bytes a queue holds; a datagram pushed beyond it is dropped and counted
/// ([`TxQueue::dropped`]). A shard drains a receive batch into the queue and the engine sends
/// it the same turn, so the queue holds a few MB at most while the socket keeps up (1,000
/// viewers of a 2.5 Mbit/s stream make ~1.3 MB per publisher packet batch); past that the
/// shard is overloaded, and queueing more only added seconds of latency and GBs of memory
/// (1 → 1,000 viewers at 1 Mbit/s on a 2-vCPU VM: 5 GB RSS, 6 s latency p50).
pub const MAX_QUEUED_BYTES: usize = 64 * 1024 * 1024;

/// Queued bytes at which an engine stops taking received datagrams for the turn
/// ([`TxQueue::turn_is_full`]): it sends what is queued and takes the rest the next turn. So a
/// burst that goes to many viewers leaves a few MB at a time instead of being held whole: a
/// publisher's keyframe burst to 200 viewers, taken 256 datagrams a turn, held ~15 MB of group
/// buffers, ~80 KiB of the server's memory per viewer. 4 MiB rather than 2: at 1 → 500
/// viewers at 1 Mbit/s, near a core's capacity, latency p50 was 23–27 ms in three runs with 4
/// MiB against 14–590 ms in eight with 2 MiB, for ~10 KiB more per viewer at 1 → 200.
pub const TURN_BYTES: usize = 4 * 1024 * 1024;

/// Most spent buffers kept for reuse; beyond this they are freed.
const POOL_LIMIT: usize = 1024;

/// Most spent group (GSO) buffers kept for reuse.
const GROUP_POOL_LIMIT: usize = 256;

/// Buffers with more capacity than this go to the group pool when recycled.
const SMALL_BUFFER: usize = 4096;

/// Capacity a new group buffer starts with: a video frame's packets to one viewer (~10 KB at
/// 2.5 Mbit/s) fit, larger groups grow it. Allocating [`MAX_GSO_BYTES`] up front made every
/// pooled group buffer up to 64 KB of resident memory once a burst had touched it: with one
/// open group per viewer, that was the largest share of the server's memory per viewer.
const GROUP_BUFFER_START: usize = 16 * 1024;

/// Most capacity a recycled group buffer keeps. A group of a delta frame's packets to one viewer
/// fits and keeps its room, so steady traffic allocates nothing; one that a keyframe grew to
/// 64 KB is shrunk back: kept whole, the group pool held ~50 KiB per viewer at 1 -> 200.
const GROUP_BUFFER_KEPT: usize = 2 * GROUP_BUFFER_START;

/// Most bytes in one merged transmit: under the 65,507-byte UDP payload limit of IPv4.
pub const MAX_GSO_BYTES: usize = 64_000;

/// Most datagrams in one merged transmit (the kernel's `UDP_MAX_SEGMENTS` is 64 on older
/// kernels, 128 on newer ones).
pub const MAX_GSO_SEGMENTS: usize = 64;

/// One datagram, or several equal-size datagrams to one destination, to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transmit {
    /// Where to send it.
    pub destination: SocketAddr,
    /// The local address to send it from (`IP_PKTINFO`/`IPV6_PKTINFO` on a socket bound to a
    /// wildcard address): normally the `destination` the peer's datagram was received on, so
    /// replies leave from the address the peer used. `None`, or an unspecified address, lets
    /// the kernel choose. Ignored on sockets bound to a concrete address.
    pub source: Option<SocketAddr>,
    /// `None`: `contents` is one datagram. `Some(size)`: `contents` is several datagrams of
    /// `size` bytes each, back to back, the last possibly shorter (set by [`TxQueue`] when it
    /// merges; drivers push `None`).
    pub segment_size: Option<u16>,
    /// The datagram's payload (or the datagrams', back to back).
    pub contents: Vec<u8>,
}

impl Transmit {
    /// One datagram from `source` (see the field) to `destination`.
    pub fn new(destination: SocketAddr, source: Option<SocketAddr>, contents: Vec<u8>) -> Self {
        Transmit {
            destination,
            source,
            segment_size: None,
            contents,
        }
    }

    /// How many datagrams this transmit is.
    pub fn segments(&self) -> usize {
        match self.segment_size {
            Some(size) if size > 0 => self.contents.len().div_ceil(usize::from(size)).max(1),
            _ => 1,
        }
    }

    /// The datagrams this transmit is, in order.
    pub fn datagrams(&self) -> impl Iterator<Item = &[u8]> + '_ {
        let size = match self.segment_size {
            Some(size) if size > 0 => usize::from(size),
            _ => self.contents.len().max(1),
        };
        let empty = self.contents.is_empty();
        self.contents.chunks(size).chain(empty.then_some(&[][..]))
    }
}

/// A FIFO of [`Transmit`]s, filled by the driver and drained by the engine.
#[derive(Debug)]
pub struct TxQueue {
    transmits: VecDeque<Transmit>,
    pool: Vec<Vec<u8>>,
    group_pool: Vec<Vec<u8>>,
    /// Most datagrams per merged transmit; 1 turns merging off.
    max_segments: usize,
    /// Per (destination, source): the push number of its open group's transmit.
    open: HashMap<(SocketAddr, Option<SocketAddr>), u64, FxBuildHasher>,
    /// Transmits consumed so far: the push number of the front transmit.
    consumed: u64,
    /// Bytes of the queued transmits.
    bytes: usize,
    /// Datagrams dropped because the queue held [`MAX_QUEUED_BYTES`].
    dropped: u64,
}

impl Default for TxQueue {
    fn default() -> Self {
        Self::new()
    }
}

impl TxQueue {
    /// An empty queue (merging off until [`TxQueue::set_max_segments`]).
    pub fn new() -> Self {
        Self::with_capacity(0)
    }

    /// An empty queue with room for `capacity` transmits before it grows.
    pub fn with_capacity(capacity: usize) -> Self {
        Self {
            transmits: VecDeque::with_capacity(capacity),
            pool: Vec::with_capacity(capacity.min(POOL_LIMIT)),
            group_pool: Vec::new(),
            max_segments: 1,
            open: HashMap::default(),
            consumed: 0,
            bytes: 0,
            dropped: 0,
        }
    }

    /// Merge up to `segments` datagrams per transmit from now on (clamped to
    /// 1..=[`MAX_GSO_SEGMENTS`]; 1 turns merging off). Engines set this from their GSO support.
    pub fn set_max_segments(&mut self, segments: usize) {
        self.max_segments = segments.clamp(1, MAX_GSO_SEGMENTS);
        if self.max_segments == 1 {
            self.open.clear();
        }
    }

    /// The current merge limit (1: off).
    pub fn max_segments(&self) -> usize {
        self.max_segments
    }

    /// Queue a transmit; it is sent after the current driver call returns. Transmits to one
    /// destination keep their order; it may be merged into an earlier one (see the module).
    pub fn push(&mut self, transmit: Transmit) {
        if self.bytes + transmit.contents.len() > MAX_QUEUED_BYTES {
            self.dropped += transmit.segments() as u64;
            self.recycle(transmit.contents);
            return;
        }
        self.bytes += transmit.contents.len();
        if self.max_segments > 1 && transmit.segment_size.is_none() {
            self.push_merging(transmit);
        } else {
            self.transmits.push_back(transmit);
        }
    }

    fn push_merging(&mut self, transmit: Transmit) {
        let len = transmit.contents.len();
        if len == 0 || len > usize::from(u16::MAX) {
            self.transmits.push_back(transmit);
            return;
        }
        let key = (transmit.destination, transmit.source);
        let next = self.consumed + self.transmits.len() as u64;
        // One hash lookup: the destination's open group, or this transmit becomes it.
        let open = self.open.entry(key).or_insert(next);
        if *open != next {
            let group = (*open >= self.consumed)
                .then(|| self.transmits.get_mut((*open - self.consumed) as usize))
                .flatten();
            if let Some(group) = group
                && let Some(displaced) = append(
                    group,
                    &transmit.contents,
                    self.max_segments,
                    &mut self.group_pool,
                )
            {
                if let Some(single) = displaced {
                    self.recycle(single);
                }
                self.recycle(transmit.contents);
                return;
            }
            *open = next;
        }
        self.transmits.push_back(transmit);
    }

    /// An empty buffer to build a datagram in, reused from a datagram already sent when there
    /// is one (its capacity is kept), else a new one.
    pub fn buffer(&mut self) -> Vec<u8> {
        self.pool.pop().unwrap_or_default()
    }

    /// A buffer of a datagram already sent, if one is kept (for a producer that builds its
    /// datagrams in buffers of its own pool).
    pub fn spare_buffer(&mut self) -> Option<Vec<u8>> {
        self.pool.pop()
    }

    /// Give a buffer back for reuse by [`TxQueue::buffer`] (or for merged transmits).
    pub fn recycle(&mut self, mut buffer: Vec<u8>) {
        if buffer.capacity() > SMALL_BUFFER {
            if self.group_pool.len() < GROUP_POOL_LIMIT {
                buffer.clear();
                buffer.shrink_to(GROUP_BUFFER_KEPT);
                self.group_pool.push(buffer);
            }
        } else if self.pool.len() < POOL_LIMIT && buffer.capacity() > 0 {
            buffer.clear();
            self.pool.push(buffer);
        }
    }

    /// Whether the queue holds [`TURN_BYTES`] or more: the engine takes no more received
    /// datagrams this turn.
    pub fn turn_is_full(&self) -> bool {
        self.bytes >= TURN_BYTES
    }

    /// Datagrams dropped so far because the queue held [`MAX_QUEUED_BYTES`] (engines report
    /// it as [`crate::EngineCounters::tx_queue_full`]).
    pub fn dropped(&self) -> u64 {
        self.dropped
    }

    /// Bytes queued.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Number of queued transmits (a merged transmit counts once).
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

    /// Remove the oldest transmit and hand it over (an engine that keeps buffers alive until
    /// an asynchronous send completes gives them back with [`TxQueue::recycle`]).
    pub fn pop_front(&mut self) -> Option<Transmit> {
        let transmit = self.transmits.pop_front()?;
        self.bytes -= transmit.contents.len();
        self.consumed += 1;
        if self.transmits.is_empty() {
            self.open.clear();
        }
        Some(transmit)
    }

    /// Remove the oldest `count` transmits (all of them if fewer are queued), recycling their
    /// buffers. Engines call this for what they sent or dropped.
    pub fn consume(&mut self, count: usize) {
        for _ in 0..count.min(self.transmits.len()) {
            if let Some(transmit) = self.pop_front() {
                self.recycle(transmit.contents);
            }
        }
    }

    /// Remove and return every queued transmit, oldest first.
    pub fn drain(&mut self) -> impl Iterator<Item = Transmit> + '_ {
        self.consumed += self.transmits.len() as u64;
        self.bytes = 0;
        self.open.clear();
        self.transmits.drain(..)
    }

    /// Drop every queued transmit, recycling their buffers.
    pub fn clear(&mut self) {
        self.consume(self.transmits.len());
    }

    /// Turn merging off and split every queued merged transmit back into single datagrams,
    /// in order (for an engine whose kernel refused a segmented send).
    pub fn unmerge(&mut self) {
        self.set_max_segments(1);
        if self.transmits.iter().all(|t| t.segment_size.is_none()) {
            return;
        }
        let merged = std::mem::take(&mut self.transmits);
        for transmit in merged {
            if transmit.segment_size.is_none() {
                self.transmits.push_back(transmit);
                continue;
            }
            for datagram in transmit.datagrams() {
                let mut contents = self.buffer();
                contents.extend_from_slice(datagram);
                self.transmits.push_back(Transmit::new(
                    transmit.destination,
                    transmit.source,
                    contents,
                ));
            }
            self.recycle(transmit.contents);
        }
    }
}

/// Append `data` to the merged transmit `group` if it may follow (the group is not closed
/// by a shorter datagram, `data` is no larger than its segments, and the segment and byte
/// limits allow). `None`: it may not. `Some(displaced)`: appended; a group that was one
/// datagram moved into a group buffer from `group_pool`, and its own buffer is `displaced`.
fn append(
    group: &mut Transmit,
    data: &[u8],
    max_segments: usize,
    group_pool: &mut Vec<Vec<u8>>,
) -> Option<Option<Vec<u8>>> {
    let size = group.segment_size.map_or(group.contents.len(), usize::from);
    let closed = !group.contents.len().is_multiple_of(size);
    let count = group.contents.len() / size;
    if closed
        || data.len() > size
        || count >= max_segments
        || group.contents.len() + data.len() > MAX_GSO_BYTES
    {
        return None;
    }
    let displaced = if group.segment_size.is_none() {
        let mut buffer = group_pool
            .pop()
            .unwrap_or_else(|| Vec::with_capacity(GROUP_BUFFER_START));
        buffer.extend_from_slice(&group.contents);
        group.segment_size = Some(size as u16);
        Some(std::mem::replace(&mut group.contents, buffer))
    } else {
        None
    };
    group.contents.extend_from_slice(data);
    Some(displaced)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(port: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], port))
    }

    fn transmit(byte: u8) -> Transmit {
        Transmit::new(addr(9), None, vec![byte; 10])
    }

    fn sized(port: u16, byte: u8, len: usize) -> Transmit {
        Transmit::new(addr(port), None, vec![byte; len])
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
        queue.push(Transmit::new(addr(9), None, buffer));
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
    fn a_group_a_keyframe_grew_is_shrunk_when_recycled() {
        let mut queue = TxQueue::new();
        queue.set_max_segments(MAX_GSO_SEGMENTS);
        // A keyframe's 50 packets to one viewer: one group, grown past its start size.
        for _ in 0..50 {
            queue.push(sized(9, 1, 1200));
        }
        assert_eq!(queue.len(), 1);
        assert!(queue.get(0).expect("the group").contents.capacity() > GROUP_BUFFER_START);
        queue.consume(1);
        // The next group starts in the recycled buffer, shrunk.
        queue.push(sized(9, 2, 1200));
        queue.push(sized(9, 2, 1200));
        let group = queue.get(0).expect("the next group");
        assert_eq!(group.segment_size, Some(1200));
        assert_eq!(group.contents.capacity(), GROUP_BUFFER_KEPT);
    }

    #[test]
    fn merged_datagrams_buffers_are_spare_at_once() {
        let mut queue = TxQueue::new();
        queue.set_max_segments(8);
        let first = vec![1; 100];
        let second = vec![2; 100];
        let pointers = [first.as_ptr(), second.as_ptr()];
        queue.push(Transmit::new(addr(9), None, first));
        assert!(queue.spare_buffer().is_none());
        queue.push(Transmit::new(addr(9), None, second));
        // Both were copied into one GSO batch: their buffers are free before the send.
        let spare = [queue.spare_buffer(), queue.spare_buffer()].map(|b| b.expect("a spare"));
        let mut spare_pointers = spare.each_ref().map(|b| b.as_ptr());
        spare_pointers.sort();
        let mut pointers = pointers;
        pointers.sort();
        assert_eq!(spare_pointers, pointers);
        assert!(queue.spare_buffer().is_none());
        assert_eq!(queue.len(), 1);
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

    #[test]
    fn merging_is_off_by_default() {
        let mut queue = TxQueue::new();
        for byte in 0..3 {
            queue.push(sized(1, byte, 100));
        }
        assert_eq!(queue.len(), 3);
        assert!(queue.iter().all(|t| t.segment_size.is_none()));
    }

    #[test]
    fn a_frame_fanned_out_to_viewers_merges_per_viewer() {
        let mut queue = TxQueue::new();
        queue.set_max_segments(64);
        // Packet-major order, as a shard fans out: p0 to viewers 1..=3, then p1, p2 (shorter).
        for (packet, len) in [(0u8, 1200), (1, 1200), (2, 700)] {
            for viewer in 1..=3 {
                queue.push(sized(viewer, packet, len));
            }
        }
        assert_eq!(queue.len(), 3);
        for (i, t) in queue.iter().enumerate() {
            assert_eq!(t.destination, addr(i as u16 + 1));
            assert_eq!(t.segment_size, Some(1200));
            assert_eq!(t.segments(), 3);
            let datagrams: Vec<&[u8]> = t.datagrams().collect();
            assert_eq!(datagrams.len(), 3);
            assert_eq!(datagrams[0], &[0u8; 1200][..]);
            assert_eq!(datagrams[1], &[1u8; 1200][..]);
            assert_eq!(datagrams[2], &[2u8; 700][..]);
        }
        // The shorter datagram closed each group: the next frame starts new transmits.
        queue.push(sized(1, 3, 1200));
        queue.push(sized(1, 4, 1200));
        assert_eq!(queue.len(), 4);
        assert_eq!(queue.get(3).unwrap().segments(), 2);
    }

    #[test]
    fn larger_datagrams_sources_and_limits_start_new_groups() {
        let mut queue = TxQueue::new();
        queue.set_max_segments(4);
        queue.push(sized(1, 0, 500));
        queue.push(sized(1, 1, 600)); // larger: cannot follow 500-byte segments
        queue.push(Transmit::new(addr(1), Some(addr(2)), vec![2; 600])); // other source
        assert_eq!(queue.len(), 3);
        for byte in 3..10 {
            queue.push(sized(1, byte, 600));
        }
        // 600-byte group: 1, 3, 4, 5 (full at 4), then 6, 7, 8, 9.
        let sizes: Vec<usize> = queue.iter().map(Transmit::segments).collect();
        assert_eq!(sizes, [1, 4, 1, 4]);
        assert_eq!(queue.get(1).unwrap().contents[600 * 3], 5);

        let mut queue = TxQueue::new();
        queue.set_max_segments(64);
        for byte in 0..60 {
            queue.push(sized(1, byte, 1200));
        }
        // 64,000 bytes at most: 53 segments of 1200, then a new group.
        let sizes: Vec<usize> = queue.iter().map(Transmit::segments).collect();
        assert_eq!(sizes, [53, 7]);
        assert!(queue.iter().all(|t| t.contents.len() <= MAX_GSO_BYTES));
    }

    #[test]
    fn sent_groups_are_not_appended_to() {
        let mut queue = TxQueue::new();
        queue.set_max_segments(64);
        queue.push(sized(1, 0, 100));
        queue.push(sized(2, 0, 100));
        queue.consume(1);
        queue.push(sized(1, 1, 100)); // its group left: a new transmit
        queue.push(sized(2, 1, 100)); // still queued: merged
        let view: Vec<(u16, usize)> = queue
            .iter()
            .map(|t| (t.destination.port(), t.segments()))
            .collect();
        assert_eq!(view, [(2, 2), (1, 1)]);
        let front = queue.pop_front().unwrap();
        assert_eq!(front.contents.len(), 200);
        queue.recycle(front.contents);
        // The group buffer went to the group pool and is used by the next merge.
        queue.push(sized(1, 2, 100));
        assert_eq!(queue.get(0).unwrap().segments(), 2);
        assert!(queue.group_pool.is_empty());
    }

    #[test]
    fn unmerge_restores_single_datagrams_in_order() {
        let mut queue = TxQueue::new();
        queue.set_max_segments(8);
        for packet in 0..3u8 {
            for viewer in 1..=2 {
                queue.push(sized(viewer, packet, 50));
            }
        }
        queue.push(Transmit::new(addr(3), None, Vec::new()));
        assert_eq!(queue.len(), 3);
        queue.unmerge();
        assert_eq!(queue.max_segments(), 1);
        let view: Vec<(u16, u8, usize)> = queue
            .iter()
            .map(|t| {
                (
                    t.destination.port(),
                    t.contents[..].first().copied().unwrap_or(9),
                    t.contents.len(),
                )
            })
            .collect();
        assert_eq!(
            view,
            [
                (1, 0, 50),
                (1, 1, 50),
                (1, 2, 50),
                (2, 0, 50),
                (2, 1, 50),
                (2, 2, 50),
                (3, 9, 0)
            ]
        );
        assert!(queue.iter().all(|t| t.segment_size.is_none()));
    }

    #[test]
    fn a_full_queue_drops_and_counts_what_is_pushed_beyond_its_bytes() {
        let mut queue = TxQueue::new();
        queue.set_max_segments(1);
        let size = 60_000;
        let fit = MAX_QUEUED_BYTES / size;
        for port in 0..fit {
            queue.push(sized(port as u16, 1, size));
        }
        assert_eq!(queue.len(), fit);
        assert_eq!(queue.bytes(), fit * size);
        queue.push(sized(1, 2, size));
        queue.push(sized(2, 3, size));
        assert_eq!(queue.len(), fit, "nothing past the limit is queued");
        assert_eq!(queue.dropped(), 2);
        // Sending makes room again.
        queue.consume(1);
        assert_eq!(queue.bytes(), (fit - 1) * size);
        queue.push(sized(3, 4, size));
        assert_eq!(queue.len(), fit);
        assert_eq!(queue.dropped(), 2);
        let _ = queue.drain().count();
        assert_eq!(queue.bytes(), 0);
    }
}
