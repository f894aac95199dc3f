//! The `datagram` target: hostile datagrams into a shard with live peers.
//!
//! A [`Fixture`] is a [`Sim`] (ringcast-core's real `Shard` and `Control`, str0m clients on an
//! in-memory network) with one publisher sending audio and video to two viewers, all
//! connected (ICE + DTLS) and each client keeping its last datagrams. An input is a script of
//! records, read until the bytes run out:
//!
//! | first byte | record |
//! |---|---|
//! | `0x00..=0x7f` | a datagram: source = `op & 7`, class = `op >> 3`, then a length (u16 LE, cut to what is left) and that many body bytes |
//! | `0x80..=0xbf` | the sim runs `(op & 0x3f) × 5` ms (media flows, timers fire) |
//! | `0xc0..=0xff` | `op & 3`: 0 a viewer asks for a keyframe, 1 a new viewer joins, 2 the second viewer leaves, 3 the sim runs 1 s |
//!
//! Sources: 0 the publisher's address, 1 and 2 the viewers', 3 the publisher's IP from another
//! port, 4 and 5 unknown IPv4 addresses, 6 an unknown IPv6 address, 7 an IPv4-mapped IPv6
//! address. Classes give the body the first bytes that send it down one path of the demux, so
//! the fuzzer need not find them: 0 raw, 1 STUN (header with the cookie and a correct length,
//! attributes from the body), 2 a STUN binding request whose USERNAME names the ufrag of the
//! source's session (the path that learns a new address), 3 DTLS (record header), 4 RTP,
//! 5 RTCP, 6 a datagram a client really sent (so valid SRTP/STUN/DTLS), with bytes flipped,
//! from whichever source the record names, 7 such a datagram cut short. Other classes are raw.
//!
//! The text format (rather than `arbitrary`) keeps the committed seeds writable by hand and
//! readable with `xxd`; libFuzzer's mutations work on it all the same.

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use ringcast_core::{ShardId, ShardStats};
use ringcast_sim::{ClientId, PublisherConfig, Sim, SimConfig};

/// Most virtual time one input may run the sim for (media costs real CPU per virtual ms).
const MAX_RUN: Duration = Duration::from_secs(2);
/// Virtual time after which a fixture is replaced.
const MAX_AGE: Duration = Duration::from_secs(30);
/// Most clients a script may add (joins beyond it are skipped).
const MAX_CLIENTS: usize = 6;
/// Datagrams each client keeps for classes 6 and 7.
const CAPTURE: usize = 32;

/// Run one input against a fresh fixture (the corpus replay, and a crash reproduced alone).
pub fn run(data: &[u8]) {
    Fixture::live().feed(data);
}

/// A shard with a live stream: one publisher, two viewers, all connected.
pub struct Fixture {
    sim: Sim,
    publisher: ClientId,
    viewers: Vec<ClientId>,
    inputs: u64,
}

impl std::fmt::Debug for Fixture {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Fixture")
            .field("sim", &self.sim)
            .field("inputs", &self.inputs)
            .finish_non_exhaustive()
    }
}

impl Fixture {
    /// Build the sim, connect everyone and let media flow for a moment.
    pub fn live() -> Fixture {
        let mut sim = Sim::new(SimConfig::default());
        let (publisher, viewers) = sim.add_broadcast(
            "live",
            PublisherConfig::default(),
            2,
            Duration::from_secs(5),
        );
        for id in std::iter::once(publisher).chain(viewers.iter().copied()) {
            sim.capture(id, CAPTURE);
        }
        sim.run_for(Duration::from_millis(300));
        Fixture {
            sim,
            publisher,
            viewers,
            inputs: 0,
        }
    }

    /// Worn out: a client of the live stream closed (a script can make that happen), or many
    /// inputs or much media went through (the sim's clients keep every packet they received).
    /// The fuzz binary then builds a new one.
    pub fn spent(&self) -> bool {
        self.inputs >= 2000
            || self.sim.elapsed() >= MAX_AGE
            || std::iter::once(self.publisher)
                .chain(self.viewers.iter().copied())
                .any(|id| !self.sim.client(id).is_connected())
    }

    /// The shard's counters: which path the datagrams took.
    pub fn stats(&self) -> ShardStats {
        self.sim.shard(ShardId(0)).stats()
    }

    /// Run one script (see the module docs). Never panics unless ringcast does.
    pub fn feed(&mut self, mut data: &[u8]) {
        self.inputs += 1;
        let mut ran = Duration::ZERO;
        while let Some((&op, rest)) = data.split_first() {
            data = rest;
            match op {
                0x00..=0x7f => {
                    let len = match data {
                        [a, b, ..] => usize::from(u16::from_le_bytes([*a, *b])),
                        _ => data.len(),
                    };
                    data = data.get(2..).unwrap_or_default();
                    let (body, rest) = data.split_at(len.min(data.len()));
                    data = rest;
                    self.datagram(op & 7, op >> 3, body);
                }
                0x80..=0xbf => {
                    let d = Duration::from_millis(u64::from(op & 0x3f) * 5);
                    ran += d;
                    if ran <= MAX_RUN {
                        self.sim.run_for(d);
                    }
                }
                _ => match op & 3 {
                    0 => {
                        let v = self.viewers[0];
                        self.sim.viewer_request_keyframe(v);
                    }
                    1 if self.sim.clients().len() < MAX_CLIENTS => {
                        if let Ok(v) = self.sim.try_add_viewer("live") {
                            self.sim.capture(v, CAPTURE);
                        }
                    }
                    2 => {
                        if let Some(v) = self.viewers.get(1).copied() {
                            let _ = self.sim.remove(v);
                            self.viewers.truncate(1);
                        }
                    }
                    3 => {
                        ran += Duration::from_secs(1);
                        if ran <= MAX_RUN {
                            self.sim.run_for(Duration::from_secs(1));
                        }
                    }
                    _ => {}
                },
            }
        }
        // Whatever the script left pending (timers, retransmissions) runs out.
        self.sim.run_for(Duration::from_millis(20));
    }

    /// The client whose address a source names (0 publisher, 1 and 2 viewers, else the
    /// publisher).
    fn client_of(&self, source: u8) -> ClientId {
        match source {
            1 => self.viewers[0],
            2 => self.viewers.get(1).copied().unwrap_or(self.viewers[0]),
            _ => self.publisher,
        }
    }

    fn source(&self, source: u8) -> SocketAddr {
        let known = |id: ClientId| self.sim.client(id).addr;
        match source {
            0..=2 => known(self.client_of(source)),
            3 => {
                let a = known(self.publisher);
                SocketAddr::new(a.ip(), a.port().wrapping_add(1))
            }
            4 => SocketAddr::from((Ipv4Addr::new(192, 0, 2, 1), 5000)),
            5 => SocketAddr::from((Ipv4Addr::new(198, 51, 100, 7), 40000)),
            6 => SocketAddr::from((Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1), 40000)),
            _ => {
                let SocketAddr::V4(a) = known(self.publisher) else {
                    return known(self.publisher);
                };
                SocketAddr::from((a.ip().to_ipv6_mapped(), a.port()))
            }
        }
    }

    fn datagram(&mut self, source: u8, class: u8, body: &[u8]) {
        let from = self.source(source);
        let bytes = match class {
            1 => stun(body, &[]),
            2 => {
                let c = self.sim.client(self.client_of(source));
                // The sim mints a session's ufrag as `h<shard>s<session>`.
                let username = format!("h{}s{}:fuzz", c.shard.0, c.session.0);
                stun(body, &attribute(0x0006, username.as_bytes()))
            }
            3 => {
                let (first, rest) = body.split_first().unwrap_or((&0, &[]));
                let mut d = vec![20 + first % 6, 0xfe, 0xfd];
                d.extend_from_slice(rest);
                d
            }
            4 => {
                let (first, rest) = body.split_first().unwrap_or((&0, &[]));
                let mut d = vec![0x80 | (first & 0x3f)];
                d.extend_from_slice(rest);
                d
            }
            5 => {
                let (head, rest) = body.split_at(body.len().min(2));
                let a = head.first().copied().unwrap_or(0);
                let b = head.get(1).copied().unwrap_or(0);
                let mut d = vec![0x80 | (a & 0x1f), 200 + b % 8];
                d.extend_from_slice(rest);
                d
            }
            6 | 7 => match self.captured(body, class == 7) {
                Some(d) => d,
                None => return,
            },
            _ => body.to_vec(),
        };
        self.sim.inject(from, ShardId(0), &bytes);
    }

    /// Class 6 and 7: `body[0]` picks the client, `body[1]` one of its last datagrams; then
    /// class 6 flips bytes (pairs of position, xor mask) and class 7 cuts it at `body[2]`.
    fn captured(&self, body: &[u8], cut: bool) -> Option<Vec<u8>> {
        let (&who, rest) = body.split_first()?;
        let clients = self.sim.clients();
        let client = &clients[usize::from(who) % clients.len()];
        let (&which, rest) = rest.split_first()?;
        let captured = &client.captured;
        let mut d = captured
            .get(usize::from(which) % captured.len().max(1))?
            .clone();
        if cut {
            d.truncate(usize::from(rest.first().copied().unwrap_or(0)));
        } else {
            for pair in rest.chunks_exact(2) {
                if !d.is_empty() {
                    let i = usize::from(pair[0]) % d.len();
                    d[i] ^= pair[1];
                }
            }
        }
        Some(d)
    }
}

/// A STUN message: type from `body[0..2]` (top bits cleared), the magic cookie, a transaction
/// id from `body[2..14]`, then `first` and the rest of `body` as attributes, the length right.
fn stun(body: &[u8], first: &[u8]) -> Vec<u8> {
    let kind = [
        body.first().copied().unwrap_or(0) & 0x3f,
        body.get(1).copied().unwrap_or(1),
    ];
    let mut txid = [0u8; 12];
    for (t, b) in txid.iter_mut().zip(body.iter().skip(2)) {
        *t = *b;
    }
    let attrs: Vec<u8> = first.iter().chain(body.iter().skip(14)).copied().collect();
    let mut d = Vec::with_capacity(20 + attrs.len());
    d.extend_from_slice(&kind);
    d.extend_from_slice(&(attrs.len() as u16).to_be_bytes());
    d.extend_from_slice(&0x2112_a442u32.to_be_bytes());
    d.extend_from_slice(&txid);
    d.extend_from_slice(&attrs);
    d
}

/// One STUN attribute, padded to 4 bytes.
fn attribute(kind: u16, value: &[u8]) -> Vec<u8> {
    let mut a = Vec::with_capacity(4 + value.len() + 3);
    a.extend_from_slice(&kind.to_be_bytes());
    a.extend_from_slice(&(value.len() as u16).to_be_bytes());
    a.extend_from_slice(value);
    while a.len() % 4 != 0 {
        a.push(0);
    }
    a
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A class-6 record: client 0 (the publisher), its datagram `which`, these flips.
    fn replay(source: u8, which: u8, flips: &[u8]) -> Vec<u8> {
        let mut body = vec![0, which];
        body.extend_from_slice(flips);
        let mut d = vec![6 << 3 | source];
        d.extend_from_slice(&(body.len() as u16).to_le_bytes());
        d.extend_from_slice(&body);
        d
    }

    /// The records reach past the demux: the publisher's own datagrams sent again are caught
    /// as replays by its SRTP context, and from an unknown address they are not taken. (With
    /// a changed sequence number they fail SRTP authentication inside str0m, which drops them
    /// without an error, so no counter tells.)
    #[test]
    fn replayed_datagrams_reach_the_peers_srtp() {
        let mut f = Fixture::live();
        let before = f.stats();
        let mut script = Vec::new();
        for which in 0..CAPTURE as u8 {
            script.extend(replay(0, which, &[]));
            script.extend(replay(0, which, &[3, 0x80]));
            script.extend(replay(4, which, &[]));
        }
        f.feed(&script);
        let after = f.stats();
        assert!(after.drop_replayed > before.drop_replayed, "{after:?}");
        assert!(
            after.drop_unknown_source > before.drop_unknown_source,
            "{after:?}"
        );
        assert!(!f.spent(), "the live stream survives replays");
    }
}
