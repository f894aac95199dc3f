//! One shard: the participants placed on one core, their demultiplexing, timers and forwarding.
//!
//! See the crate documentation for the input/output contract.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use slab::Slab;
use str0m::IceCreds;

use crate::ids::{SessionId, ShardId, StreamId, TrackKind};
use crate::keyframe::starts_keyframe;
use crate::peer::{Peer, PeerEvent, Published, Received, RtpIn};
use crate::rewrite::{Rewriter, Source};
use crate::sdp::CodecName;
pub use crate::stats::ShardStats;
use crate::stun;

/// Settings of one shard.
#[derive(Debug, Clone)]
pub struct ShardConfig {
    /// This shard.
    pub id: ShardId,
    /// Most participants this shard takes; more get [`CommandError::ShardFull`].
    pub max_participants: usize,
    /// Keyframe requests to one publisher track are merged into at most one per interval.
    pub keyframe_interval: Duration,
    /// Addresses announced instead of the local ones (NAT 1:1). When set, received datagrams
    /// are presented to str0m as addressed to the announced address of their family, and
    /// transmits leave from whatever local address the kernel picks.
    pub announced: Vec<SocketAddr>,
    /// Most remote addresses learned for one participant (ICE candidates it checks from).
    pub max_addrs_per_participant: usize,
    /// A participant not connected (ICE + DTLS) this long after it was placed is removed.
    pub connect_timeout: Duration,
}

impl Default for ShardConfig {
    fn default() -> Self {
        ShardConfig {
            id: ShardId(0),
            max_participants: 2000,
            keyframe_interval: Duration::from_secs(1),
            announced: Vec::new(),
            max_addrs_per_participant: 8,
            connect_timeout: Duration::from_secs(30),
        }
    }
}

/// What a shard is fed.
#[derive(Debug)]
pub enum Input<'a> {
    /// A datagram arrived on the shard's socket.
    Datagram {
        /// Arrival time.
        now: Instant,
        /// Remote address.
        source: SocketAddr,
        /// Local address it was sent to.
        destination: SocketAddr,
        /// The bytes.
        contents: &'a [u8],
    },
    /// Time passed (at or after the deadline [`Shard::poll_output`] gave).
    Timeout(Instant),
    /// A command from the control plane; answered by one [`Output::Reply`] with its token.
    Command(Instant, u64, Command),
    /// A message from another shard.
    Relay(Instant, Relay),
}

/// Control-plane commands.
#[derive(Debug)]
pub enum Command {
    /// Place a publisher (a WHIP session).
    AddPublisher {
        /// Its session.
        session: SessionId,
        /// The stream it publishes.
        stream: StreamId,
        /// The connection, built from its offer.
        peer: Box<Peer>,
        /// What it sends.
        published: Published,
        /// Other shards with viewers of this stream (bit per shard).
        relay_to: u64,
    },
    /// Place a subscriber (a WHEP session).
    AddSubscriber {
        /// Its session.
        session: SessionId,
        /// The stream it plays.
        stream: StreamId,
        /// The connection, built from its offer.
        peer: Box<Peer>,
        /// What the stream's publisher sends.
        published: Published,
        /// Where the publisher is (for keyframe requests).
        publisher_shard: Option<ShardId>,
    },
    /// Remove a session and free everything it holds.
    Remove {
        /// The session.
        session: SessionId,
    },
    /// ICE restart: new remote credentials, and the local ones to switch to.
    IceRestart {
        /// The session.
        session: SessionId,
        /// From the client's PATCH.
        remote: IceCreds,
        /// Newly minted.
        local: IceCreds,
    },
    /// Another shard does (or no longer does) have viewers of `stream`.
    RelayInterest {
        /// The stream.
        stream: StreamId,
        /// The shard with viewers.
        shard: ShardId,
        /// Has viewers now.
        want: bool,
    },
    /// Report counters.
    Stats,
}

/// Answers to commands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// Done.
    Done,
    /// Counters.
    Stats(Box<ShardStats>),
}

/// Why a command failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CommandError {
    /// The shard holds its maximum of participants.
    #[error("shard is full")]
    ShardFull,
    /// No such session on this shard.
    #[error("no such session")]
    UnknownSession,
    /// The session id is already in use.
    #[error("session already exists")]
    Duplicate,
}

/// Messages between shards.
#[derive(Debug, Clone)]
pub enum Relay {
    /// A publisher's packet for viewers on the receiving shard (sent once per shard).
    Rtp {
        /// The stream.
        stream: StreamId,
        /// The publisher session (changes on restart).
        epoch: u64,
        /// The shard the publisher is on.
        origin: ShardId,
        /// The packet.
        packet: RtpIn,
    },
    /// Viewers on the sending shard want a keyframe.
    KeyframeRequest {
        /// The stream.
        stream: StreamId,
        /// Which track.
        kind: TrackKind,
    },
}

/// A datagram to send.
#[derive(Debug)]
#[must_use]
pub struct Transmit {
    /// Where to.
    pub destination: SocketAddr,
    /// Which local address to send from (`None`: let the kernel choose).
    pub source: Option<SocketAddr>,
    /// The bytes.
    pub contents: Vec<u8>,
}

/// Things that happened that the control plane must learn about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ShardEvent {
    /// A session ended on its own (ICE consent or DTLS timeout, close): it is already freed.
    SessionClosed {
        /// The session.
        session: SessionId,
    },
    /// A session's ICE and DTLS completed.
    SessionConnected {
        /// The session.
        session: SessionId,
    },
}

/// What a shard yields; drain with [`Shard::poll_output`] until [`Output::Timeout`].
#[derive(Debug)]
#[must_use]
pub enum Output {
    /// Send a datagram.
    Transmit(Transmit),
    /// Send a message to another shard.
    Relay {
        /// The receiving shard.
        to: ShardId,
        /// The message.
        message: Relay,
    },
    /// The answer to a command.
    Reply {
        /// The command's token.
        token: u64,
        /// The answer.
        result: Result<Reply, CommandError>,
    },
    /// Something the control plane must learn.
    Event(ShardEvent),
    /// Nothing more now: feed [`Input::Timeout`] at this instant (`None`: no deadline), or any
    /// other input before.
    Timeout(Option<Instant>),
}

/// A shard: the sans-IO core of one core's worth of participants.
pub struct Shard {
    config: ShardConfig,
    participants: Slab<Participant>,
    sessions: HashMap<SessionId, usize>,
    by_addr: HashMap<SocketAddr, usize>,
    by_ufrag: HashMap<String, usize>,
    streams: HashMap<StreamId, StreamEntry>,
    timers: BinaryHeap<Reverse<(Instant, usize, SessionId)>>,
    out: VecDeque<Output>,
    stats: ShardStats,
}

impl std::fmt::Debug for Shard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shard")
            .field("id", &self.config.id)
            .field("participants", &self.participants.len())
            .finish_non_exhaustive()
    }
}

struct Participant {
    session: SessionId,
    peer: Peer,
    addrs: Vec<SocketAddr>,
    scheduled: Option<Instant>,
    /// Until connected: when it is given up (a client that got its answer and never came).
    connect_by: Option<Instant>,
    role: Role,
}

enum Role {
    Publisher {
        stream: StreamId,
    },
    Subscriber {
        stream: StreamId,
        tracks: [Option<SubTrack>; 2],
    },
}

struct SubTrack {
    codec: CodecName,
    rewriter: Rewriter,
    waiting_keyframe: bool,
}

#[derive(Default)]
struct StreamEntry {
    publisher: Option<usize>,
    /// The current publisher's session id; relayed packets carry it.
    epoch: u64,
    origin: Option<ShardId>,
    subscribers: Vec<usize>,
    relay_to: u64,
    keyframes: [KeyframeThrottle; 2],
    /// The publisher's codec per kind (to see its keyframes go by).
    codecs: [Option<CodecName>; 2],
}

impl StreamEntry {
    fn is_unused(&self) -> bool {
        self.publisher.is_none() && self.subscribers.is_empty() && self.relay_to == 0
    }
}

/// Merges keyframe requests: at most one per interval; one asked for inside the interval is
/// sent when it ends (checked as the publisher's packets arrive).
#[derive(Default, Clone, Copy)]
struct KeyframeThrottle {
    last: Option<Instant>,
    pending: bool,
}

impl KeyframeThrottle {
    fn ask(&mut self, now: Instant, interval: Duration) -> bool {
        match self.last {
            Some(last) if now.saturating_duration_since(last) < interval => {
                self.pending = true;
                false
            }
            _ => {
                self.last = Some(now);
                self.pending = false;
                true
            }
        }
    }

    fn due(&mut self, now: Instant, interval: Duration) -> bool {
        self.pending && self.ask(now, interval)
    }
}

impl Shard {
    /// A new, empty shard.
    pub fn new(config: ShardConfig) -> Self {
        Shard {
            config,
            participants: Slab::new(),
            sessions: HashMap::new(),
            by_addr: HashMap::new(),
            by_ufrag: HashMap::new(),
            streams: HashMap::new(),
            timers: BinaryHeap::new(),
            out: VecDeque::new(),
            stats: ShardStats::default(),
        }
    }

    /// This shard's id.
    pub fn id(&self) -> ShardId {
        self.config.id
    }

    /// Counters (participant counts are current).
    pub fn stats(&self) -> ShardStats {
        let mut s = self.stats.clone();
        s.participants = self.participants.len() as u64;
        s.publishers = self
            .participants
            .iter()
            .filter(|(_, p)| matches!(p.role, Role::Publisher { .. }))
            .count() as u64;
        s.streams = self.streams.len() as u64;
        s
    }

    /// Sizes of every map the shard keeps (participants, sessions, addresses, ufrags, streams,
    /// timers): all zero once everyone has left and the timers ran.
    pub fn map_sizes(&self) -> [usize; 6] {
        [
            self.participants.len(),
            self.sessions.len(),
            self.by_addr.len(),
            self.by_ufrag.len(),
            self.streams.len(),
            self.timers.len(),
        ]
    }

    /// Feed one input. Then drain [`Shard::poll_output`] until it returns [`Output::Timeout`].
    pub fn handle_input(&mut self, input: Input<'_>) {
        match input {
            Input::Datagram {
                now,
                source,
                destination,
                contents,
            } => self.datagram(now, source, destination, contents),
            Input::Timeout(now) => self.timeout(now),
            Input::Command(now, token, cmd) => {
                let result = self.command(now, cmd);
                self.out.push_back(Output::Reply { token, result });
            }
            Input::Relay(now, relay) => self.relay(now, relay),
        }
    }

    /// Next output. Ends each drain with [`Output::Timeout`].
    pub fn poll_output(&mut self) -> Output {
        if let Some(o) = self.out.pop_front() {
            return o;
        }
        // Lazily drop timer entries of participants that are gone or rescheduled.
        while let Some(Reverse((at, key, session))) = self.timers.peek().copied() {
            match self.participants.get(key) {
                Some(p) if p.session == session && p.scheduled == Some(at) => {
                    return Output::Timeout(Some(at));
                }
                _ => {
                    self.timers.pop();
                }
            }
        }
        Output::Timeout(None)
    }

    fn datagram(&mut self, now: Instant, source: SocketAddr, destination: SocketAddr, data: &[u8]) {
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
            Received::Malformed => self.stats.drop_malformed += 1,
            Received::Rejected => self.stats.drop_rejected += 1,
            Received::Replayed => self.stats.drop_replayed += 1,
        }
        self.drain(key, now);
    }

    /// A datagram from an address we do not know: only a STUN request naming a local ufrag, and
    /// taken by that peer, teaches us the address.
    fn learn(
        &mut self,
        now: Instant,
        source: SocketAddr,
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

    fn presented_destination(&self, destination: SocketAddr) -> SocketAddr {
        if self.config.announced.is_empty() {
            return destination;
        }
        self.config
            .announced
            .iter()
            .find(|a| a.is_ipv4() == destination.is_ipv4())
            .copied()
            .unwrap_or(destination)
    }

    fn timeout(&mut self, now: Instant) {
        while let Some(Reverse((at, key, session))) = self.timers.peek().copied() {
            if at > now {
                break;
            }
            self.timers.pop();
            let Some(p) = self.participants.get_mut(key) else {
                continue;
            };
            if p.session != session || p.scheduled != Some(at) {
                continue;
            }
            p.scheduled = None;
            p.peer.handle_timeout(now);
            self.drain(key, now);
        }
    }

    /// Drain one participant's peer; route what comes out.
    fn drain(&mut self, key: usize, now: Instant) {
        loop {
            let Some(p) = self.participants.get_mut(key) else {
                return;
            };
            match p.peer.poll() {
                PeerEvent::Timeout(at) => {
                    if p.connect_by.is_some_and(|by| now >= by) {
                        let session = p.session;
                        self.remove(key, now);
                        self.out
                            .push_back(Output::Event(ShardEvent::SessionClosed { session }));
                        return;
                    }
                    let at = p.connect_by.map_or(at, |by| at.min(by));
                    if p.scheduled.is_none_or(|s| at < s) {
                        p.scheduled = Some(at);
                        self.timers.push(Reverse((at, key, p.session)));
                    }
                    return;
                }
                PeerEvent::Transmit {
                    destination,
                    source,
                    contents,
                } => self.transmit(destination, source, contents),
                PeerEvent::Rtp(packet) => {
                    if let Role::Publisher { stream } = p.role {
                        let epoch = p.session.0;
                        self.publish(now, stream, epoch, packet);
                    }
                }
                PeerEvent::KeyframeRequest(kind) => {
                    if let Role::Subscriber { stream, .. } = p.role {
                        self.request_keyframe(now, stream, kind);
                    }
                }
                PeerEvent::Connected => {
                    p.connect_by = None;
                    let session = p.session;
                    // A viewer gets media from now on; it starts on a keyframe asked for now.
                    let viewer_of = match &p.role {
                        Role::Subscriber { stream, tracks }
                            if tracks[TrackKind::Video.index()].is_some() =>
                        {
                            Some(*stream)
                        }
                        _ => None,
                    };
                    self.out
                        .push_back(Output::Event(ShardEvent::SessionConnected { session }));
                    if let Some(stream) = viewer_of {
                        self.request_keyframe(now, stream, TrackKind::Video);
                    }
                }
                PeerEvent::Disconnected => {
                    let session = p.session;
                    self.remove(key, now);
                    self.out
                        .push_back(Output::Event(ShardEvent::SessionClosed { session }));
                    return;
                }
            }
        }
    }

    /// Queue a datagram a peer produced. With announced addresses the local source is the
    /// kernel's choice (str0m's source is the announced address, not a local one).
    fn transmit(&mut self, destination: SocketAddr, source: SocketAddr, contents: Vec<u8>) {
        self.stats.tx_datagrams += 1;
        let source = self.config.announced.is_empty().then_some(source);
        self.out.push_back(Output::Transmit(Transmit {
            destination,
            source,
            contents,
        }));
    }

    /// A packet from a local publisher: relay it once to each other shard with viewers, then fan
    /// it out here.
    fn publish(&mut self, now: Instant, stream: StreamId, epoch: u64, packet: RtpIn) {
        self.stats.rtp_in += 1;
        let Some(entry) = self.streams.get_mut(&stream) else {
            return;
        };
        let mut mask = entry.relay_to & !(1u64 << self.config.id.0);
        while mask != 0 {
            let shard = mask.trailing_zeros() as u16;
            mask &= mask - 1;
            self.stats.relayed += 1;
            self.out.push_back(Output::Relay {
                to: ShardId(shard),
                message: Relay::Rtp {
                    stream,
                    epoch,
                    origin: self.config.id,
                    packet: packet.clone(),
                },
            });
        }
        // A keyframe going by answers every request merged so far: none is left pending.
        let k = packet.kind.index();
        if entry.codecs[k].is_some_and(|c| starts_keyframe(c, &packet.payload)) {
            entry.keyframes[k].pending = false;
        }
        // A merged keyframe request that waited out the interval goes now.
        if entry.keyframes[k].due(now, self.config.keyframe_interval)
            && let Some(pk) = entry.publisher
        {
            self.stats.keyframe_requests += 1;
            self.participants[pk].peer.request_keyframe(packet.kind);
            self.drain(pk, now);
        }
        self.fan_out(now, stream, epoch, &packet);
    }

    /// Forward one packet to every local subscriber of the stream.
    fn fan_out(&mut self, now: Instant, stream: StreamId, epoch: u64, packet: &RtpIn) {
        let Some(entry) = self.streams.get_mut(&stream) else {
            self.stats.drop_no_route += 1;
            return;
        };
        let subscribers = std::mem::take(&mut entry.subscribers);
        let kind = packet.kind;
        let source = Source {
            epoch,
            ssrc: packet.ssrc,
        };
        let mut want_keyframe = false;
        for &key in &subscribers {
            let Some(p) = self.participants.get_mut(key) else {
                continue;
            };
            // Not before ICE and DTLS are up: str0m would queue it and flush it, stale, at
            // connect, and the keyframe would be spent on a viewer that cannot see it yet.
            if !p.peer.is_connected() {
                continue;
            }
            let Role::Subscriber { tracks, .. } = &mut p.role else {
                continue;
            };
            let Some(track) = tracks[kind.index()].as_mut() else {
                continue;
            };
            if !track.rewriter.follows(source) && kind == TrackKind::Video {
                track.waiting_keyframe = true;
            }
            if track.waiting_keyframe {
                if !starts_keyframe(track.codec, &packet.payload) {
                    want_keyframe = true;
                    continue;
                }
                track.waiting_keyframe = false;
            }
            let Some((seq, ts)) = track.rewriter.rewrite(source, packet.seq, packet.ts, now) else {
                continue;
            };
            if p.peer.write_rtp(
                kind,
                seq,
                ts,
                packet.marker,
                packet.payload.clone(),
                packet.ext,
                now,
            ) {
                self.stats.rtp_forwarded += 1;
                self.drain(key, now);
            }
        }
        if let Some(entry) = self.streams.get_mut(&stream) {
            entry.subscribers = subscribers;
        }
        if want_keyframe {
            self.request_keyframe(now, stream, kind);
        }
    }

    /// A keyframe is wanted on `stream`'s `kind` track: ask the publisher (throttled), locally
    /// or through its shard.
    fn request_keyframe(&mut self, now: Instant, stream: StreamId, kind: TrackKind) {
        let interval = self.config.keyframe_interval;
        let Some(entry) = self.streams.get_mut(&stream) else {
            return;
        };
        if !entry.keyframes[kind.index()].ask(now, interval) {
            return;
        }
        if let Some(pk) = entry.publisher {
            self.stats.keyframe_requests += 1;
            self.participants[pk].peer.request_keyframe(kind);
            self.drain(pk, now);
        } else if let Some(origin) = entry.origin.filter(|o| *o != self.config.id) {
            self.stats.relayed += 1;
            self.out.push_back(Output::Relay {
                to: origin,
                message: Relay::KeyframeRequest { stream, kind },
            });
        }
    }

    fn relay(&mut self, now: Instant, relay: Relay) {
        match relay {
            Relay::Rtp {
                stream,
                epoch,
                origin,
                packet,
            } => {
                self.stats.rtp_in += 1;
                match self.streams.get_mut(&stream) {
                    Some(entry) => entry.origin = Some(origin),
                    None => {
                        self.stats.drop_no_route += 1;
                        return;
                    }
                }
                self.fan_out(now, stream, epoch, &packet);
            }
            Relay::KeyframeRequest { stream, kind } => {
                if self
                    .streams
                    .get(&stream)
                    .is_some_and(|e| e.publisher.is_some())
                {
                    self.request_keyframe(now, stream, kind);
                }
            }
        }
    }

    fn command(&mut self, now: Instant, cmd: Command) -> Result<Reply, CommandError> {
        match cmd {
            Command::AddPublisher {
                session,
                stream,
                peer,
                published,
                relay_to,
            } => {
                let key = self.insert(now, session, *peer, Role::Publisher { stream })?;
                let entry = self.streams.entry(stream).or_default();
                if let Some(old) = entry.publisher.replace(key) {
                    // The control plane allows one publisher per stream; a replaced one goes,
                    // and the control plane hears of it like of any other end.
                    let session = self.participants[old].session;
                    self.remove_from_stream(old);
                    self.remove(old, now);
                    self.out
                        .push_back(Output::Event(ShardEvent::SessionClosed { session }));
                }
                let entry = self.streams.entry(stream).or_default();
                entry.publisher = Some(key);
                entry.epoch = session.0;
                entry.origin = Some(self.config.id);
                entry.relay_to |= relay_to;
                entry.keyframes = Default::default();
                entry.codecs = published
                    .tracks
                    .each_ref()
                    .map(|t| t.as_ref().map(|t| t.name));
                self.drain(key, now);
                Ok(Reply::Done)
            }
            Command::AddSubscriber {
                session,
                stream,
                peer,
                published,
                publisher_shard,
            } => {
                let mut tracks: [Option<SubTrack>; 2] = [None, None];
                for kind in TrackKind::ALL {
                    if let Some(t) = &published.tracks[kind.index()]
                        && peer.receives(kind)
                    {
                        let seed =
                            session.0.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> (kind.index() * 16);
                        tracks[kind.index()] = Some(SubTrack {
                            codec: t.name,
                            rewriter: Rewriter::new(
                                t.params.spec().clock_rate.get(),
                                (seed as u16) & 0x7fff,
                                (seed >> 32) as u32,
                            ),
                            waiting_keyframe: kind == TrackKind::Video,
                        });
                    }
                }
                let key = self.insert(now, session, *peer, Role::Subscriber { stream, tracks })?;
                let entry = self.streams.entry(stream).or_default();
                entry.subscribers.push(key);
                if entry.origin.is_none() {
                    entry.origin = publisher_shard;
                }
                // Its keyframe is requested once it is connected (see PeerEvent::Connected):
                // one sent now would be spent before it can see it.
                self.drain(key, now);
                Ok(Reply::Done)
            }
            Command::Remove { session } => {
                let key = *self
                    .sessions
                    .get(&session)
                    .ok_or(CommandError::UnknownSession)?;
                self.remove(key, now);
                Ok(Reply::Done)
            }
            Command::IceRestart {
                session,
                remote,
                local,
            } => {
                let key = *self
                    .sessions
                    .get(&session)
                    .ok_or(CommandError::UnknownSession)?;
                let p = &mut self.participants[key];
                self.by_ufrag.remove(p.peer.ufrag());
                self.by_ufrag.insert(local.ufrag.clone(), key);
                p.peer.ice_restart(remote, local);
                self.drain(key, now);
                Ok(Reply::Done)
            }
            Command::RelayInterest {
                stream,
                shard,
                want,
            } => {
                let bit = 1u64 << (shard.0 % 64);
                if want {
                    // Only the publisher's shard relays; elsewhere the interest is moot (the
                    // control plane passes it again with the next AddPublisher).
                    if let Some(entry) = self.streams.get_mut(&stream)
                        && entry.publisher.is_some()
                    {
                        entry.relay_to |= bit;
                    }
                } else if let Some(entry) = self.streams.get_mut(&stream) {
                    entry.relay_to &= !bit;
                    if entry.is_unused() {
                        self.streams.remove(&stream);
                    }
                }
                Ok(Reply::Done)
            }
            Command::Stats => Ok(Reply::Stats(Box::new(self.stats()))),
        }
    }

    fn insert(
        &mut self,
        now: Instant,
        session: SessionId,
        peer: Peer,
        role: Role,
    ) -> Result<usize, CommandError> {
        if self.participants.len() >= self.config.max_participants {
            return Err(CommandError::ShardFull);
        }
        if self.sessions.contains_key(&session) || self.by_ufrag.contains_key(peer.ufrag()) {
            return Err(CommandError::Duplicate);
        }
        let ufrag = peer.ufrag().to_string();
        let key = self.participants.insert(Participant {
            session,
            peer,
            addrs: Vec::new(),
            scheduled: None,
            connect_by: Some(now + self.config.connect_timeout),
            role,
        });
        self.sessions.insert(session, key);
        self.by_ufrag.insert(ufrag, key);
        Ok(key)
    }

    /// Take a participant out of its stream's lists.
    fn remove_from_stream(&mut self, key: usize) {
        let Some(p) = self.participants.get(key) else {
            return;
        };
        let (stream, publisher) = match p.role {
            Role::Publisher { stream } => (stream, true),
            Role::Subscriber { stream, .. } => (stream, false),
        };
        let Some(entry) = self.streams.get_mut(&stream) else {
            return;
        };
        if publisher {
            if entry.publisher == Some(key) {
                entry.publisher = None;
                // The next publisher, wherever it lands, is told where viewers are.
                entry.relay_to = 0;
            }
        } else if let Some(i) = entry.subscribers.iter().position(|&k| k == key) {
            entry.subscribers.swap_remove(i);
        }
        if entry.is_unused() {
            self.streams.remove(&stream);
        }
    }

    /// Free everything a participant holds, at once. Its DTLS close goes out first.
    fn remove(&mut self, key: usize, now: Instant) {
        if !self.participants.contains(key) {
            return;
        }
        self.remove_from_stream(key);
        let mut p = self.participants.remove(key);
        p.peer.close();
        // Flush the close_notify; nothing else of it matters now.
        loop {
            match p.peer.poll() {
                PeerEvent::Transmit {
                    destination,
                    source,
                    contents,
                } => self.transmit(destination, source, contents),
                PeerEvent::Timeout(_) | PeerEvent::Disconnected => break,
                _ => {}
            }
        }
        let _ = now;
        self.sessions.remove(&p.session);
        self.by_ufrag.remove(p.peer.ufrag());
        for a in &p.addrs {
            if self.by_addr.get(a) == Some(&key) {
                self.by_addr.remove(a);
            }
        }
        // Drop this participant's timer entries now so an idle shard's maps end empty.
        if p.scheduled.is_some() {
            self.timers
                .retain(|Reverse((_, k, s))| !(*k == key && *s == p.session));
        }
    }
}
