//! A remote that moves: its nominating checks come from a new address (its NAT rebound: the
//! mapping was flushed or expired and its datagrams now leave from another port; or it
//! switched networks), and media must follow at once, without a new offer.
//!
//! str0m's ICE-lite agent learns the new address from the check as a peer-reflexive candidate
//! and nominates its pair, but goes on sending on the old pair while that has the same
//! priority, which after a rebinding it does (the same local candidate of the remote checks,
//! with the same PRIORITY, from a new mapped port), until the old pair times out 15 s after its
//! last check. So when an authentic nominating check comes from a new address with the same
//! PRIORITY as the last one, the old address's peer-reflexive candidate is invalidated, which
//! drops its pairs and lets str0m send on the new one. A nomination of another priority is
//! left to str0m, which keeps the highest nominated pair (RFC 8445), so a client nominating
//! several pairs at once (aggressive nomination) is not bounced between them. Should the remote
//! come back to an address it left (the NAT maps it there again), that candidate is added again
//! before str0m sees the check, which it would otherwise ignore for good.

use std::net::SocketAddr;

use str0m::{Candidate, Rtc};

/// How many left addresses are remembered (to take the remote back there).
const MAX_LEFT: usize = 4;

/// Where the remote nominates from, and where it nominated from before.
#[derive(Debug, Default)]
pub(super) struct Moves {
    /// The source and PRIORITY of the last authentic nominating check.
    nominated_from: Option<(SocketAddr, u32)>,
    /// Addresses it moved away from whose candidates were invalidated, oldest first.
    left: Vec<SocketAddr>,
}

impl Moves {
    /// Before `rtc` handles an authentic binding request with USE-CANDIDATE and PRIORITY
    /// `priority` from `source`: make `source` usable if it was left, and leave the previous
    /// address if it differs and had the same priority. Returns the address left, if any.
    pub(super) fn nominating(
        &mut self,
        rtc: &mut Rtc,
        source: SocketAddr,
        priority: u32,
    ) -> Option<SocketAddr> {
        if let Some(i) = self.left.iter().position(|&a| a == source) {
            self.left.remove(i);
            if let Some(c) = peer_reflexive(source, priority) {
                rtc.add_remote_candidate(c);
            }
        }
        let (previous, previous_priority) = self.nominated_from.replace((source, priority))?;
        if previous == source || previous_priority != priority {
            return None;
        }
        // A candidate the remote signalled (host, srflx) is not ours to drop: only the
        // addresses learned from checks are. Those it signalled keep str0m's own rules.
        let invalidated =
            peer_reflexive(previous, 0).is_some_and(|c| rtc.direct_api().invalidate_candidate(&c));
        if !invalidated {
            return None;
        }
        if self.left.len() >= MAX_LEFT {
            self.left.remove(0);
        }
        self.left.push(previous);
        Some(previous)
    }
}

/// A peer-reflexive UDP candidate at `addr`, as str0m's agent makes one from a check (its
/// invalidation matches on address, base, kind and protocol, not on the priority).
fn peer_reflexive(addr: SocketAddr, priority: u32) -> Option<Candidate> {
    Candidate::from_sdp_string(&format!(
        "candidate:moved 1 udp {priority} {} {} typ prflx",
        addr.ip(),
        addr.port()
    ))
    .ok()
}
