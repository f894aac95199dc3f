//! Who may start a session: the per-client limits of [`Control::admit`](super::Control::admit).
//!
//! A client is an address: an IPv4 address, or the /64 of an IPv6 address (one host usually
//! holds a whole /64, so counting addresses would let it take 2^64 of them). Each client gets
//!
//! - at most [`AdmissionLimits::sessions_per_client`] sessions at once, placed or being set up;
//! - a token bucket of new sessions ([`AdmissionLimits::creation_rate`]): a burst, then a steady
//!   rate. A refused request takes no token.
//!
//! The state of each client lives in one bounded map: an entry with no session left and a full
//! bucket says nothing a fresh entry would not, and is dropped at the next sweep (at most once a
//! second, on an admission); at most [`AdmissionLimits::tracked_clients`] entries exist, and a
//! new client past that is refused until a sweep makes room.

use std::collections::HashMap;
use std::fmt;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use super::Refusal;

/// The client a request counts against: an IPv4 address, or the /64 of an IPv6 address (an
/// IPv4-mapped IPv6 address is its IPv4 address).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ClientKey(IpAddr);

impl ClientKey {
    /// The client of a request from `ip`.
    pub fn of(ip: IpAddr) -> ClientKey {
        match ip {
            IpAddr::V4(v4) => ClientKey(IpAddr::V4(v4)),
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => ClientKey(IpAddr::V4(v4)),
                None => ClientKey(IpAddr::V6((u128::from(v6) & !u128::from(u64::MAX)).into())),
            },
        }
    }
}

impl fmt::Display for ClientKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            IpAddr::V4(v4) => write!(f, "{v4}"),
            IpAddr::V6(v6) => write!(f, "{v6}/64"),
        }
    }
}

/// Who asks for a session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Requester {
    /// The client it counts against.
    pub client: ClientKey,
    /// It carried the valid token of a token-protected stream: it may use the share of the
    /// pending budget and of the shards' seats kept for token holders
    /// ([`AdmissionLimits::token_reserve`]).
    pub token: bool,
}

impl Requester {
    /// A request from `ip`, with a valid token or not.
    pub fn new(ip: IpAddr, token: bool) -> Requester {
        Requester {
            client: ClientKey::of(ip),
            token,
        }
    }
}

/// New sessions a client may start: `burst` at once, then `per_second`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rate {
    /// Tokens back per second; above 0.
    pub per_second: f64,
    /// Tokens in a full bucket; at least 1.
    pub burst: u32,
}

/// The admission limits. [`Default`] is [`AdmissionLimits::NONE`]; the server's defaults are in
/// `config/ringcast.toml` (`[limits]`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AdmissionLimits {
    /// Sessions (placed or being set up) of one client at once (429).
    pub sessions_per_client: u32,
    /// New sessions per client over time (429 with the seconds until the next one).
    pub creation_rate: Option<Rate>,
    /// Viewers of one stream, placed or being set up (503).
    pub viewers_per_stream: u32,
    /// Sessions not yet connected (ICE and DTLS), in total (503).
    pub pending_sessions: u32,
    /// What only requests with a valid token may use: the last `token_reserve` of the
    /// `pending_sessions`, and the last `ceil(token_reserve / shards)` seats of each shard. A
    /// flood of requests without a token leaves these free.
    pub token_reserve: u32,
    /// Clients tracked at once (503 for a new one past it).
    pub tracked_clients: usize,
}

impl AdmissionLimits {
    /// No limit but the shards' capacity.
    pub const NONE: AdmissionLimits = AdmissionLimits {
        sessions_per_client: u32::MAX,
        creation_rate: None,
        viewers_per_stream: u32::MAX,
        pending_sessions: u32::MAX,
        token_reserve: 0,
        tracked_clients: usize::MAX,
    };
}

impl Default for AdmissionLimits {
    fn default() -> Self {
        AdmissionLimits::NONE
    }
}

/// The per-client state: session counts and creation buckets, in a bounded map.
#[derive(Debug, Default)]
pub(super) struct Clients {
    map: HashMap<ClientKey, ClientState>,
    next_sweep: Option<Instant>,
}

#[derive(Debug, Clone, Copy)]
struct ClientState {
    sessions: u32,
    /// Bucket tokens as of `at`.
    tokens: f64,
    at: Instant,
}

/// How often the map is swept of entries with nothing left in them.
const SWEEP_EVERY: Duration = Duration::from_secs(1);

impl Clients {
    /// May `client` start a session now? Checks its sessions, its bucket, and room for it in
    /// the map; changes nothing but a sweep.
    pub(super) fn check(
        &mut self,
        client: ClientKey,
        limits: &AdmissionLimits,
        now: Instant,
    ) -> Result<(), Refusal> {
        if self.next_sweep.is_none_or(|t| now >= t) {
            self.sweep(limits, now);
            self.next_sweep = Some(now + SWEEP_EVERY);
        }
        let Some(state) = self.map.get(&client) else {
            return if self.map.len() >= limits.tracked_clients {
                Err(Refusal::TooManyClients)
            } else {
                Ok(())
            };
        };
        if state.sessions >= limits.sessions_per_client {
            return Err(Refusal::ClientSessions(limits.sessions_per_client));
        }
        if let Some(rate) = limits.creation_rate {
            let tokens = state.tokens_at(rate, now);
            if tokens < 1.0 {
                let secs = ((1.0 - tokens) / rate.per_second).ceil().max(1.0);
                return Err(Refusal::ClientRate(secs.min(f64::from(u32::MAX)) as u32));
            }
        }
        Ok(())
    }

    /// `client` was admitted: one more session, one token less.
    pub(super) fn take(&mut self, client: ClientKey, limits: &AdmissionLimits, now: Instant) {
        let full = limits.creation_rate.map_or(0.0, |r| f64::from(r.burst));
        let state = self.map.entry(client).or_insert(ClientState {
            sessions: 0,
            tokens: full,
            at: now,
        });
        if let Some(rate) = limits.creation_rate {
            state.tokens = state.tokens_at(rate, now) - 1.0;
            state.at = now.max(state.at);
        }
        state.sessions += 1;
    }

    /// One of `client`'s sessions is over (or was never placed).
    pub(super) fn release(&mut self, client: ClientKey, limits: &AdmissionLimits) {
        if let Some(state) = self.map.get_mut(&client) {
            state.sessions = state.sessions.saturating_sub(1);
            // Without a bucket, an entry with no session says nothing.
            if state.sessions == 0 && limits.creation_rate.is_none() {
                self.map.remove(&client);
            }
        }
    }

    /// Sessions `client` holds.
    pub(super) fn sessions(&self, client: ClientKey) -> u32 {
        self.map.get(&client).map_or(0, |s| s.sessions)
    }

    /// Clients tracked.
    pub(super) fn len(&self) -> usize {
        self.map.len()
    }

    /// Drop the entries with no session and a full bucket.
    fn sweep(&mut self, limits: &AdmissionLimits, now: Instant) {
        self.map.retain(|_, s| {
            s.sessions > 0
                || limits
                    .creation_rate
                    .is_some_and(|r| s.tokens_at(r, now) < f64::from(r.burst))
        });
    }
}

impl ClientState {
    fn tokens_at(&self, rate: Rate, now: Instant) -> f64 {
        let elapsed = now.saturating_duration_since(self.at).as_secs_f64();
        (self.tokens + elapsed * rate.per_second).min(f64::from(rate.burst))
    }
}

#[cfg(test)]
mod tests {
    use std::net::{Ipv4Addr, Ipv6Addr};

    use super::*;

    #[test]
    fn an_ipv6_client_is_its_64_and_a_mapped_ipv4_is_its_address() {
        let a = ClientKey::of("2001:db8:1:2:aaaa::1".parse().unwrap());
        let b = ClientKey::of("2001:db8:1:2:ffff:1:2:3".parse().unwrap());
        let c = ClientKey::of("2001:db8:1:3::1".parse().unwrap());
        assert_eq!(a, b);
        assert_ne!(a, c);
        assert_eq!(a.to_string(), "2001:db8:1:2::/64");
        let mapped = ClientKey::of(IpAddr::V6(Ipv4Addr::new(192, 0, 2, 7).to_ipv6_mapped()));
        assert_eq!(mapped, ClientKey::of(Ipv4Addr::new(192, 0, 2, 7).into()));
        assert_ne!(
            ClientKey::of(Ipv4Addr::new(192, 0, 2, 7).into()),
            ClientKey::of(Ipv4Addr::new(192, 0, 2, 8).into())
        );
        assert_eq!(
            ClientKey::of(Ipv6Addr::LOCALHOST.into()).to_string(),
            "::/64"
        );
    }
}
