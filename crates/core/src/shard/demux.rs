//! Datagrams in: demultiplexed by source address, and new addresses learned from STUN.
//!
//! A datagram from a known address goes to its participant (one hash map lookup). From an
//! unknown address only a STUN request whose USERNAME names a local ICE ufrag (another hash map)
//! is taken, once that participant's peer confirms it; the address is then learned, up to
//! `max_addrs_per_participant` per participant (the oldest goes first). An address is known per
//! transport: a TCP connection's remote address is not the same remote as a UDP one's.

use std::net::SocketAddr;
use std::time::Instant;

use super::Shard;
use crate::peer::{Received, Transport};
use crate::stun;

impl Shard {
    /// A datagram in: to the participant whose address it came from, or, from a new address,
    /// to the participant its STUN request names.
    pub(super) fn datagram(
        &mut self,
        now: Instant,
        source: (Transport, SocketAddr),
        destination: SocketAddr,
        data: &[u8],
    ) {
        self.stats.rx_datagrams += 1;
        let destination = self.presented_destination(destination);
        let key = match self.by_addr.get(&source) {
            Some(&k) => k,
            None => match self.learn(now, source, destination, data) {
                Some(k) => k,
                None => return,
            },
        };
        let p = &mut self.participants[key];
        match p.peer.handle_datagram(now, source, destination, data) {
            Received::Taken => {}
            Received::Moved => self.stats.ice_moves += 1,
            Received::Malformed => self.stats.drop_malformed += 1,
            Received::Rejected => self.stats.drop_rejected += 1,
            Received::Replayed => self.stats.drop_replayed += 1,
            Received::Unmapped => self.stats.drop_unknown_layer += 1,
        }
        self.poll_now(key, now);
    }

    /// A datagram from an address we do not know: only a STUN request naming a local ufrag, and
    /// taken by that peer, teaches us the address.
    fn learn(
        &mut self,
        now: Instant,
        source: (Transport, SocketAddr),
        destination: SocketAddr,
        data: &[u8],
    ) -> Option<usize> {
        let Some(ufrag) = stun::local_ufrag(data) else {
            if stun::is_stun(data) {
                self.stats.drop_unknown_ufrag += 1;
            } else {
                self.stats.drop_unknown_source += 1;
            }
            return None;
        };
        let Some(&key) = self.by_ufrag.get(ufrag) else {
            self.stats.drop_unknown_ufrag += 1;
            return None;
        };
        let p = &mut self.participants[key];
        if !p.peer.accepts(now, source, destination, data) {
            self.stats.drop_unknown_ufrag += 1;
            return None;
        }
        if p.addrs.len() >= self.config.max_addrs_per_participant {
            let old = p.addrs.remove(0);
            self.by_addr.remove(&old);
        }
        p.addrs.push(source);
        self.by_addr.insert(source, key);
        Some(key)
    }

    /// Where str0m must think a datagram was sent: to the announced IP of its family (the
    /// peer's local candidate) and the port it arrived on, which a 1:1 NAT keeps. The announced
    /// addresses carry no port of their own (0).
    fn presented_destination(&self, destination: SocketAddr) -> SocketAddr {
        self.config
            .announced
            .iter()
            .find(|a| a.is_ipv4() == destination.is_ipv4())
            .map_or(destination, |a| SocketAddr::new(a.ip(), destination.port()))
    }
}
