//! Which path a connected session took: the type of its nominated pair's remote candidate and
//! the transport, for the counters that tell an operator how many clients need TURN.
//!
//! ringcast is ICE-lite and str0m does not expose the nominated pair, but every datagram it
//! sends after ICE (DTLS, SRTP) goes to that pair's remote address. That address is matched
//! against the candidates the client signalled, in its offer and trickled PATCH fragments (they
//! carry `typ`); an address it never signalled was learned from its checks: peer-reflexive.

use std::net::SocketAddr;

use str0m::net::Protocol;
use str0m::{Candidate, CandidateKind};

/// Most distinct signalled candidates remembered per session: as many as one offer may hold
/// ([`crate::sdp::MAX_CANDIDATES`]); trickles beyond that are not typed (they count as prflx).
const MAX_SIGNALLED: usize = crate::sdp::MAX_CANDIDATES;

/// The port an active TCP candidate signals (RFC 6544 §4.5: "the discard port").
const ACTIVE_TCP_PORT: u16 = 9;

/// The type of the remote candidate a session's media flows to (RFC 8445 §5.1.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CandidateType {
    /// An address of one of the client's interfaces.
    Host,
    /// The client's NAT mapping, learned from a STUN server and signalled.
    Srflx,
    /// An address the client never signalled: its NAT mapping as learned from its checks.
    Prflx,
    /// A TURN server's relayed address.
    Relay,
}

/// The transport between ringcast and the remote candidate (a TURN relay's own leg to the
/// client may be TCP or TLS while this one is UDP).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Transport {
    /// UDP.
    Udp,
    /// TCP (RFC 6544).
    Tcp,
}

/// The path of a connected session.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Path {
    /// What the remote candidate is.
    pub candidate: CandidateType,
    /// How ringcast reaches it.
    pub transport: Transport,
}

/// The candidates a client signalled, to type the address its media flows to.
#[derive(Debug, Default)]
pub(super) struct Signalled {
    candidates: Vec<(SocketAddr, Transport, CandidateType)>,
}

impl Signalled {
    /// Remember each `a=candidate` line of `sdp` (an offer) that parses; mDNS (`.local`)
    /// host candidates do not (their address is a name), so their pairs count as
    /// peer-reflexive.
    pub(super) fn add_sdp(&mut self, sdp: &str) {
        for line in sdp.lines() {
            if let Some(value) = line.trim().strip_prefix("a=") {
                self.add(value);
            }
        }
    }

    /// Remember one candidate attribute value (`candidate:...`), if it parses.
    pub(super) fn add(&mut self, candidate: &str) {
        if !candidate.starts_with("candidate:") || self.candidates.len() >= MAX_SIGNALLED {
            return;
        }
        let Ok(c) = Candidate::from_sdp_string(candidate) else {
            return;
        };
        let kind = match c.kind() {
            CandidateKind::Host => CandidateType::Host,
            CandidateKind::ServerReflexive => CandidateType::Srflx,
            CandidateKind::PeerReflexive => CandidateType::Prflx,
            CandidateKind::Relayed => CandidateType::Relay,
        };
        let (addr, transport) = (c.addr(), transport(c.proto()));
        // Browsers repeat each candidate in every media section.
        if !self
            .candidates
            .iter()
            .any(|&(a, t, _)| a == addr && t == transport)
        {
            self.candidates.push((addr, transport, kind));
        }
    }

    /// The path to `remote` over `proto`.
    pub(super) fn path(&self, remote: SocketAddr, proto: Protocol) -> Path {
        let transport = transport(proto);
        // An active TCP candidate (RFC 6544 §4.5) signals port 9: its connections come from
        // ephemeral ports of that address.
        let candidate = self
            .candidates
            .iter()
            .find(|&&(addr, t, _)| {
                t == transport
                    && (addr == remote
                        || (t == Transport::Tcp
                            && addr.port() == ACTIVE_TCP_PORT
                            && addr.ip() == remote.ip()))
            })
            .map_or(CandidateType::Prflx, |&(_, _, kind)| kind);
        Path {
            candidate,
            transport,
        }
    }
}

pub(super) fn transport(proto: Protocol) -> Transport {
    match proto {
        Protocol::Udp => Transport::Udp,
        Protocol::Tcp | Protocol::SslTcp | Protocol::Tls => Transport::Tcp,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn a_remote_takes_the_type_it_was_signalled_with_and_is_prflx_otherwise() {
        let mut s = Signalled::default();
        s.add_sdp(
            "v=0\r\n\
             a=candidate:1 1 udp 2122260223 192.168.1.5 50000 typ host\r\n\
             a=candidate:2 1 udp 1686052607 203.0.113.7 61000 typ srflx raddr 192.168.1.5 rport 50000\r\n\
             a=candidate:3 1 udp 2122260223 0f3b2c1a-1111-2222-3333-444455556666.local 50001 typ host\r\n",
        );
        s.add(
            "candidate:4 1 udp 41885439 198.51.100.9 3478 typ relay raddr 203.0.113.7 rport 61000",
        );
        let path = |a: &str| s.path(addr(a), Protocol::Udp).candidate;
        assert_eq!(path("192.168.1.5:50000"), CandidateType::Host);
        assert_eq!(path("203.0.113.7:61000"), CandidateType::Srflx);
        assert_eq!(path("198.51.100.9:3478"), CandidateType::Relay);
        assert_eq!(path("203.0.113.7:61001"), CandidateType::Prflx);
        // Signalled over UDP, reached over TCP: another candidate.
        let tcp = s.path(addr("192.168.1.5:50000"), Protocol::Tcp);
        assert_eq!(
            (tcp.candidate, tcp.transport),
            (CandidateType::Prflx, Transport::Tcp)
        );
    }

    #[test]
    fn what_is_remembered_is_bounded() {
        let mut s = Signalled::default();
        for port in 0..(MAX_SIGNALLED as u16 + 10) {
            s.add(&format!(
                "candidate:{port} 1 udp 1 198.51.100.9 {} typ relay",
                10_000 + port
            ));
        }
        assert_eq!(s.candidates.len(), MAX_SIGNALLED);
    }

    #[test]
    fn an_active_tcp_candidate_types_connections_from_any_port_of_its_address() {
        let mut s = Signalled::default();
        s.add("candidate:1 1 tcp 1518280447 192.168.1.5 9 typ host tcptype active");
        let from = |a: &str| s.path(addr(a), Protocol::Tcp).candidate;
        assert_eq!(from("192.168.1.5:41422"), CandidateType::Host);
        assert_eq!(from("192.168.1.6:41422"), CandidateType::Prflx);
        // Over UDP from that address it is another path, never signalled.
        assert_eq!(
            s.path(addr("192.168.1.5:41422"), Protocol::Udp).candidate,
            CandidateType::Prflx
        );
    }
}
