//! Datagram buffers handed back after their send, for str0m to protect the next RTP packets
//! in: with them, a forwarded packet costs no allocation.
//!
//! A shard keeps one pool. The I/O layer gives a datagram's buffer back once it is sent (or
//! copied into a GSO batch) with [`crate::Shard::give_datagram_buffer`]. A peer being polled,
//! or sent a forwarded packet, holds one of them in its `Rtc` (`Rtc::give_datagram_buffer`, part
//! of ringcast's str0m patch), in which its next RTP packet comes out; a poll hands it back,
//! unused, when it ends, and a packet str0m queued leaves it there until the peer's poll. A
//! fan-out takes a buffer per packet it sends at once, before the driver gives them back: up
//! to [`DATAGRAM_BUFFERS`] at a time, new ones while the pool is growing to that; the packets
//! past them are queued for the drain, which sends them in buffers given back by then. Every
//! buffer the pool hands out or keeps has room for an Ethernet-sized datagram, so none grows when
//! a packet is put in it; smaller buffers (str0m's own, for RTCP, STUN and DTLS) are freed when
//! given back.

/// Most buffers a pool keeps (384 KiB). A drain polls one peer at a time and an engine gives a
/// buffer back as soon as it copied it into a GSO batch, so a few circulate in steady state;
/// the rest are for one peer's burst (a viewer's keyframe replay at its join) and for datagrams
/// an engine without GSO still holds. Beyond, buffers are allocated and freed as str0m would.
pub const DATAGRAM_BUFFERS: usize = 256;

/// The capacity of a pool's buffers: an Ethernet MTU's datagram and SRTP's tag (the allocator's
/// size class for 1,500 bytes).
pub const DATAGRAM_CAPACITY: usize = 1536;

/// A shard's spare datagram buffers.
#[derive(Debug, Default)]
pub(crate) struct DatagramBuffers {
    spare: Vec<Vec<u8>>,
}

impl DatagramBuffers {
    /// Keep `buffer` for a later packet, unless [`DATAGRAM_BUFFERS`] are kept already or it
    /// is smaller than [`DATAGRAM_CAPACITY`].
    pub(crate) fn give(&mut self, mut buffer: Vec<u8>) {
        if self.spare.len() < DATAGRAM_BUFFERS && buffer.capacity() >= DATAGRAM_CAPACITY {
            buffer.clear();
            self.spare.push(buffer);
        }
    }

    /// A spare buffer, if one is kept.
    pub(crate) fn spare(&mut self) -> Option<Vec<u8>> {
        self.spare.pop()
    }

    /// A spare buffer, or a new one when none is kept.
    pub(crate) fn take(&mut self) -> Vec<u8> {
        self.spare()
            .unwrap_or_else(|| Vec::with_capacity(DATAGRAM_CAPACITY))
    }

    /// How many more buffers [`DatagramBuffers::give`] would keep.
    pub(crate) fn wanted(&self) -> usize {
        DATAGRAM_BUFFERS - self.spare.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pool_keeps_full_sized_buffers_up_to_its_bound() {
        let mut pool = DatagramBuffers::default();
        let fresh = pool.take();
        assert!(fresh.is_empty() && fresh.capacity() >= DATAGRAM_CAPACITY);
        pool.give(vec![1; 200]);
        assert_eq!(pool.wanted(), DATAGRAM_BUFFERS, "a small buffer is freed");
        let kept = vec![1; DATAGRAM_CAPACITY];
        let address = kept.as_ptr();
        pool.give(kept);
        for _ in 1..DATAGRAM_BUFFERS + 5 {
            pool.give(vec![2; DATAGRAM_CAPACITY + 10]);
        }
        assert_eq!(pool.wanted(), 0);
        for _ in 1..DATAGRAM_BUFFERS {
            pool.take();
        }
        let buffer = pool.take();
        assert!(buffer.is_empty());
        assert_eq!(buffer.as_ptr(), address, "the first kept is the last out");
        assert_eq!(pool.wanted(), DATAGRAM_BUFFERS);
    }
}
