//! One shard: the participants placed on one core, their demultiplexing, timers and forwarding.
//!
//! See the crate documentation for the input/output contract. This module holds the [`Shard`]
//! type, its inputs and outputs and the work queue that polls participants' peers; the rest is
//! split by job:
//!
//! - `demux`: a datagram in, to the participant it belongs to (by address, or by ICE ufrag for
//!   a new address, which is then learned);
//! - `timers`: the deadline heap, timeouts, and giving up on participants that never connect;
//! - `routing`: a publisher's packets to local subscribers and to other shards, relays from
//!   other shards, keyframe requests and their throttle;
//! - `commands`: the control plane's commands, and placing and removing participants.
//!
//! # Polling peers: one flat work queue
//!
//! Whatever changes a participant's peer (a datagram or a timeout for it, a command, a packet
//! str0m queued on it, a keyframe asked of it) only marks the participant: its key goes to the
//! back of `ready` unless its `queued` flag says it is there already. The next drain (the calls of
//! [`Shard::poll_output`] up to its timeout) pops keys from the front and polls each peer until
//! it gives its deadline, routing each event as it comes; it polls the next peer only once the
//! outputs before it are taken, so a drain's datagrams never wait all at once (and their
//! buffers come back for the next peer's, see `buffers`). Routing changes other peers and marks
//! them; it never polls them, though it sends through them: a forwarded packet mostly needs no
//! poll, because str0m sends it at once
//! (`Rtc::send_rtp`, ringcast's str0m patch) when the subscriber's peer is idle and the stream
//! has nothing queued, and its datagram goes to `transmits`, which a driver takes after each
//! input ([`Shard::take_transmit`]), so a fan-out's buffers come back before the next one's;
//! only a packet str0m queued marks its subscriber. A driver may feed several inputs before it
//! drains (the engine feeds a whole receive batch of datagrams): a peer they all touched is
//! polled once for all of them. The exception is the peer a datagram is for: it is polled at
//! once (`poll_now`), because str0m keeps only one received RTP packet until polled. A long
//! batch, or one whose packets go to many viewers, is drained part way ([`Shard::drain_due`]),
//! so what waits in str0m's send queues stays bounded. So:
//!
//! - no peer is polled while another is being polled, and none twice at once: a participant is
//!   in `ready` at most once, and its flag stays set while it is polled, so work routing gives
//!   it meanwhile (a keyframe request to a publisher whose own packet asked for it) is picked
//!   up by the same poll, which runs until the deadline;
//! - one peer's outputs leave in the order str0m gives them; datagrams already made leave
//!   before other outputs (relays, events, replies), and a command's reply comes before what
//!   the peers it changed send when polled;
//! - the work per drain is the participants its inputs touched, no scan; the queue is kept
//!   between drains, so marking allocates nothing once it has grown;
//! - a key whose participant left before its turn is skipped. Keys are not reused before the
//!   drain (the only insertion is a command's, and drivers drain after each command).

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use slab::Slab;

use crate::buffers::{DATAGRAM_BUFFERS, DATAGRAM_CAPACITY, DatagramBuffers};
use crate::ids::{RoomId, SessionId, ShardId, StreamId, TrackKind};
use crate::peer::{Datagram, Forwarded, Peer, PeerEvent, Transport};

mod commands;
mod demux;
mod layers;
mod replay;
mod rooms;
mod routing;
mod timers;

pub use crate::stats::ShardStats;
pub use commands::{Command, CommandError, Reply};
pub use rooms::{MemberInfo, RoomInfo, RoomMember, SlotInfo};
pub use routing::Relay;

use rooms::{Member, RoomEntry};
use routing::{StreamEntry, SubRef, SubTrack};
use timers::Timers;

/// Most datagrams of a receive batch fed to a shard before it is drained
/// ([`Shard::drain_due`]; one `recvmmsg` batch).
pub const DRAIN_EVERY: u32 = 32;

/// Packets routing may queue on subscribers' peers ([`Shard::undrained_packets`]) before the
/// shard is drained, once [`DRAIN_AT_LEAST`] datagrams were fed. With 32 datagrams between
/// drains, a publisher's keyframe burst to 200 viewers was 6,400 packets queued at once, each
/// viewer's copies waiting in str0m's send queue and then in a GSO group buffer together.
pub const DRAIN_PACKETS: u64 = 1024;

/// Datagrams fed before [`DRAIN_PACKETS`] may end a batch early: a viewer's GSO group keeps at
/// least this many of a burst's packets (~10 KB, within a group buffer's first 16 KiB), since
/// sending a frame in smaller pieces costs more per packet.
pub const DRAIN_AT_LEAST: u32 = 8;

/// Most times one poll of a peer feeds it the current time again because its next deadline
/// has already come (a paced burst); the rest waits for the next timeout.
const MAX_DUE_AGAIN: u32 = 64;

/// Settings of one shard.
#[derive(Debug, Clone)]
pub struct ShardConfig {
    /// This shard.
    pub id: ShardId,
    /// Most participants this shard takes; more get [`CommandError::ShardFull`].
    pub max_participants: usize,
    /// Keyframe requests to one publisher track are merged into at most one per interval.
    pub keyframe_interval: Duration,
    /// Bytes of the keyframe cache per publisher video layer; 0 turns it off.
    pub gop_cache_bytes: usize,
    /// A cached keyframe older than this is dropped.
    pub gop_cache_max_age: Duration,
    /// Addresses announced instead of the local ones (NAT 1:1). When set, received datagrams
    /// are presented to str0m as addressed to the announced IP of their family and the port
    /// they arrived on (an announced address's own port is ignored), and transmits leave from
    /// whatever local address the kernel picks.
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
            gop_cache_bytes: crate::gop::DEFAULT_GOP_CACHE_BYTES,
            gop_cache_max_age: Duration::from_secs(10),
            announced: Vec::new(),
            max_addrs_per_participant: 8,
            connect_timeout: Duration::from_secs(30),
        }
    }
}

impl ShardConfig {
    /// Transmits leave from the local address the kernel picks, not from the one a datagram
    /// arrived on: str0m's sources are announced addresses, not local ones.
    fn kernel_picks_source(&self) -> bool {
        !self.announced.is_empty()
    }
}

/// What a shard is fed.
#[derive(Debug)]
pub enum Input<'a> {
    /// A datagram arrived on the shard's socket, or a frame on one of its TCP connections
    /// (RFC 4571: the contents of one length-prefixed frame).
    Datagram {
        /// Arrival time.
        now: Instant,
        /// UDP, or the TCP connection from `source`.
        transport: Transport,
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

/// A datagram to send.
#[derive(Debug)]
#[must_use]
pub struct Transmit {
    /// UDP, or the TCP connection from `destination` (sent as one RFC 4571 frame).
    pub transport: Transport,
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
    /// A session ended on its own (ICE consent or DTLS timeout, close, never connected) or by
    /// [`Command::Farewell`]: it is already freed.
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
    by_addr: HashMap<(Transport, SocketAddr), usize>,
    by_ufrag: HashMap<String, usize>,
    streams: HashMap<StreamId, StreamEntry>,
    timers: Timers,
    out: VecDeque<Output>,
    /// Datagrams to send, taken before `out` ([`Shard::take_transmit`]).
    transmits: VecDeque<Transmit>,
    /// Participants whose peer the next [`Shard::poll_output`] polls (see the module docs);
    /// empty after a drain.
    ready: VecDeque<usize>,
    /// The time of the last input not yet followed by a poll of `ready`: when its peers are
    /// polled.
    poll_at: Option<Instant>,
    /// [`Shard::queued_packets`] when `ready` was last polled ([`Shard::undrained_packets`]).
    forwarded_at_drain: u64,
    /// Room slots that moved to another source during one fan-out, to take off the old
    /// source's list after it (kept to reuse its allocation).
    moved: Vec<(SubRef, StreamId, u8)>,
    rooms: HashMap<RoomId, RoomEntry>,
    /// Sent datagrams' buffers, for the next RTP packets ([`Shard::give_datagram_buffer`]).
    buffers: DatagramBuffers,
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
    /// Remote addresses learned from its checks, with their transport.
    addrs: Vec<(Transport, SocketAddr)>,
    /// In `ready`, or being polled.
    queued: bool,
    /// Until connected: when it is given up (a client that got its answer and never came).
    connect_by: Option<Instant>,
    /// When its replay from the keyframe cache sends its next frame.
    replay_at: Option<Instant>,
    role: Role,
}

#[allow(
    clippy::large_enum_variant,
    reason = "participants live in one slab; boxing a viewer's tracks would cost a pointer chase per forwarded packet"
)]
enum Role {
    Publisher {
        stream: StreamId,
    },
    Subscriber {
        stream: StreamId,
        tracks: [Option<SubTrack>; 2],
    },
    /// A room member: publishes `Member::stream`, receives in its slots.
    Member(Member),
}

impl Participant {
    /// Put `key` (this participant's) into `ready` unless it is there or being polled.
    fn mark_ready(&mut self, key: usize, ready: &mut VecDeque<usize>) {
        if !self.queued {
            self.queued = true;
            ready.push_back(key);
        }
    }
}

impl Input<'_> {
    /// The time this input carries.
    fn now(&self) -> Instant {
        match self {
            Input::Datagram { now, .. }
            | Input::Timeout(now)
            | Input::Command(now, ..)
            | Input::Relay(now, _) => *now,
        }
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
            timers: Timers::default(),
            out: VecDeque::new(),
            transmits: VecDeque::new(),
            ready: VecDeque::new(),
            poll_at: None,
            forwarded_at_drain: 0,
            moved: Vec::new(),
            rooms: HashMap::new(),
            buffers: DatagramBuffers::default(),
            stats: ShardStats::default(),
        }
    }

    /// Give back the buffer of a datagram this shard transmitted, once it is sent (or copied):
    /// a later RTP packet is built in it instead of a new allocation. At most
    /// [`crate::DATAGRAM_BUFFERS`] are kept; the rest are freed.
    pub fn give_datagram_buffer(&mut self, buffer: Vec<u8>) {
        self.buffers.give(buffer);
    }

    /// How many more buffers [`Shard::give_datagram_buffer`] would keep.
    pub fn datagram_buffers_wanted(&self) -> usize {
        self.buffers.wanted()
    }

    /// This shard's id.
    pub fn id(&self) -> ShardId {
        self.config.id
    }

    /// Counters (participant counts are current). O(1), whatever the participants: `publishers`
    /// and `gop_cache_bytes` are running totals kept as participants come and go and as the
    /// keyframe caches change; the other gauges are map sizes.
    pub fn stats(&self) -> ShardStats {
        let mut s = self.stats.clone();
        s.participants = self.participants.len() as u64;
        s.rooms = self.rooms.len() as u64;
        s.streams = self.streams.len() as u64;
        s
    }

    /// [`Shard::stats`] with its running totals recounted by walking every participant and
    /// keyframe cache: for tests, to check the totals against.
    pub fn recount_stats(&self) -> ShardStats {
        let mut s = self.stats();
        s.publishers = self
            .participants
            .iter()
            .filter(|(_, p)| matches!(p.role, Role::Publisher { .. }))
            .count() as u64;
        s.gop_cache_bytes = self.streams.values().map(StreamEntry::gop_bytes).sum();
        s
    }

    /// Sizes of every map the shard keeps (participants, sessions, addresses, ufrags, streams,
    /// timers, rooms): all zero once everyone has left and the timers ran.
    pub fn map_sizes(&self) -> [usize; 7] {
        [
            self.participants.len(),
            self.sessions.len(),
            self.by_addr.len(),
            self.by_ufrag.len(),
            self.streams.len(),
            self.timers.len(),
            self.rooms.len(),
        ]
    }

    /// Feed one input, or several in a row (a receive batch of datagrams). Then drain
    /// [`Shard::poll_output`] until it returns [`Output::Timeout`]: the peers the inputs
    /// touched are polled there, each once. Drain after each command.
    pub fn handle_input(&mut self, input: Input<'_>) {
        let now = input.now();
        match input {
            Input::Datagram {
                now,
                transport,
                source,
                destination,
                contents,
            } => self.datagram(now, (transport, source), destination, contents),
            Input::Timeout(now) => self.timeout(now),
            Input::Command(now, token, cmd) => {
                let result = self.command(now, cmd);
                self.out.push_back(Output::Reply { token, result });
            }
            Input::Relay(now, relay) => self.relay(now, relay),
        }
        self.poll_at = Some(now);
    }

    /// Next output. Ends each drain with [`Output::Timeout`]. A drain polls the marked peers
    /// one at a time, each when the outputs before it are taken.
    pub fn poll_output(&mut self) -> Output {
        loop {
            if let Some(t) = self.transmits.pop_front() {
                return Output::Transmit(t);
            }
            if let Some(o) = self.out.pop_front() {
                return o;
            }
            let Some(now) = self.poll_at else {
                return Output::Timeout(self.next_deadline());
            };
            match self.ready.pop_front() {
                Some(key) => self.poll_peer(key, now),
                None => {
                    self.poll_at = None;
                    self.forwarded_at_drain = self.queued_packets();
                }
            }
        }
    }

    /// The next output if it is a datagram already made, without polling any peer. Routing
    /// sends most forwarded packets at once ([`str0m::Rtc::send_rtp`]), each in a buffer of
    /// the shard's pool: a driver takes them after each input, so that a packet's fan-out is
    /// in the transmit queue, and its buffers back in the pool, before the next packet's.
    pub fn take_transmit(&mut self) -> Option<Transmit> {
        self.transmits.pop_front()
    }

    /// Packets routing has queued on subscribers' peers since the last drain: what the next
    /// drain sends (a publisher packet counts once per subscriber). Those sent at once are
    /// not among them.
    pub fn undrained_packets(&self) -> u64 {
        self.queued_packets()
            .saturating_sub(self.forwarded_at_drain)
    }

    /// Forwarded packets that str0m queued rather than sent at once, ever.
    fn queued_packets(&self) -> u64 {
        self.stats.rtp_forwarded - self.stats.rtp_forwarded_at_once
    }

    /// Whether a receive batch should be drained now, `fed` datagrams into it, rather than at
    /// its end (the engines and the sim ask after each datagram): after [`DRAIN_EVERY`]
    /// datagrams, or after [`DRAIN_AT_LEAST`] once [`DRAIN_PACKETS`] packets wait. So one
    /// drain's output, and the peers' send queues, stay bounded however many subscribers a
    /// packet has.
    pub fn drain_due(&self, fed: u32) -> bool {
        fed >= DRAIN_EVERY || (fed >= DRAIN_AT_LEAST && self.undrained_packets() >= DRAIN_PACKETS)
    }

    /// Mark a participant whose peer changed: it is polled by the next drain.
    fn enqueue(&mut self, key: usize) {
        if let Some(p) = self.participants.get_mut(key) {
            p.mark_ready(key, &mut self.ready);
        }
    }

    /// Poll a participant's peer now, before the next input: one that was handed a datagram.
    /// str0m holds a single received RTP packet until it is polled (the next one replaces
    /// it), so a publisher's packets cannot wait for the drain; what they route to others
    /// marks those, and they wait. A participant also in `ready` stays there, flagged.
    fn poll_now(&mut self, key: usize, now: Instant) {
        let Some(p) = self.participants.get_mut(key) else {
            return;
        };
        let in_ready = std::mem::replace(&mut p.queued, true);
        self.poll_peer(key, now);
        if in_ready && let Some(p) = self.participants.get_mut(key) {
            p.queued = true;
        }
    }

    /// Poll one participant's peer until its deadline; route what comes out.
    fn poll_peer(&mut self, key: usize, now: Instant) {
        let mut due_again = 0;
        loop {
            let Some(p) = self.participants.get_mut(key) else {
                return;
            };
            match p.peer.poll(&mut self.buffers) {
                // Already due: str0m's pacer (on with the bandwidth estimator) releases one
                // packet per timeout. Draining its burst now keeps a frame's packets to this
                // viewer together (one GSO send) instead of one per pass of the engine.
                PeerEvent::Timeout(at) if at <= now && due_again < MAX_DUE_AGAIN => {
                    due_again += 1;
                    p.peer.handle_timeout(now);
                }
                PeerEvent::Timeout(at) => {
                    p.queued = false;
                    self.schedule(key, at, now);
                    return;
                }
                PeerEvent::Transmit(datagram) => self.transmit(datagram),
                PeerEvent::Rtp(packet) => {
                    let stream = match &p.role {
                        Role::Publisher { stream } => *stream,
                        Role::Member(m) => m.stream,
                        Role::Subscriber { .. } => continue,
                    };
                    let epoch = p.session.0;
                    self.publish(now, stream, epoch, packet);
                }
                PeerEvent::KeyframeRequest { kind, section } => {
                    if kind == TrackKind::Video {
                        self.viewer_wants_keyframe(now, key, Some(section));
                    }
                }
                PeerEvent::ChannelOpen => self.member_channel_open(now, key),
                PeerEvent::ChannelMessage { binary, data } => {
                    self.member_message(now, key, binary, &data);
                }
                PeerEvent::Estimate(bps) => {
                    tracing::debug!(viewer = key, bps, "estimate");
                    if let Some(track) = routing::video_track(p) {
                        track.choice.estimate(bps, now);
                        self.choose_layer(now, key);
                    }
                }
                PeerEvent::Connected(path) => {
                    p.connect_by = None;
                    if let Some(path) = path {
                        self.stats.count_connected(path);
                    }
                    let session = p.session;
                    let viewer = routing::video_track(p).is_some();
                    let member = matches!(p.role, Role::Member(_));
                    self.out
                        .push_back(Output::Event(ShardEvent::SessionConnected { session }));
                    // A viewer gets media from now on: its layer is chosen with what is known
                    // now, and it starts from the layer's cached keyframe, or on a keyframe
                    // asked for now.
                    if viewer {
                        self.choose_layer(now, key);
                        if !self.start_cached(key, now) {
                            self.viewer_wants_keyframe(now, key, None);
                        }
                    }
                    if member {
                        self.member_connected(now, key);
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
    fn transmit(&mut self, datagram: Datagram) {
        let announced = self.config.kernel_picks_source();
        queue_transmit(&mut self.transmits, &mut self.stats, announced, datagram);
    }
}

/// Where one routing pass sends forwarded packets (the parts of the shard it needs, borrowed
/// apart from the participants it walks).
pub(super) struct Sends<'a> {
    /// The pass's time.
    pub(super) now: Instant,
    transmits: &'a mut VecDeque<Transmit>,
    buffers: &'a mut DatagramBuffers,
    stats: &'a mut ShardStats,
    announced: bool,
}

impl<'a> Sends<'a> {
    pub(super) fn new(
        now: Instant,
        transmits: &'a mut VecDeque<Transmit>,
        buffers: &'a mut DatagramBuffers,
        stats: &'a mut ShardStats,
        config: &ShardConfig,
    ) -> Self {
        Sends {
            now,
            transmits,
            buffers,
            stats,
            announced: config.kernel_picks_source(),
        }
    }

    /// A buffer for str0m to protect a packet in: a spare one, or a new one while fewer than
    /// half of [`DATAGRAM_BUFFERS`] datagrams wait for the driver; `None` beyond, and the
    /// packet waits for the drain. The pool grows to what a fan-out needs (the drain's polls
    /// add what it queued), and a fan-out wider than the pool, whose buffers other peers may
    /// hold meanwhile (the publisher being polled), queues its rest instead of making new
    /// buffers that the full pool would then drop.
    pub(super) fn buffer(&mut self) -> Option<Vec<u8>> {
        self.buffers.spare().or_else(|| {
            (self.transmits.len() < DATAGRAM_BUFFERS / 2)
                .then(|| Vec::with_capacity(DATAGRAM_CAPACITY))
        })
    }

    /// Count a forwarded packet and queue its datagram if it left at once; true if it waits in
    /// the peer instead, which must then be polled.
    pub(super) fn forwarded(&mut self, forwarded: Forwarded) -> bool {
        match forwarded {
            Forwarded::Sent(datagram) => {
                self.stats.rtp_forwarded += 1;
                self.stats.rtp_forwarded_at_once += 1;
                queue_transmit(self.transmits, self.stats, self.announced, datagram);
                false
            }
            Forwarded::Queued => {
                self.stats.rtp_forwarded += 1;
                true
            }
            Forwarded::Not => false,
        }
    }
}

/// Queue a peer's datagram for the engine. With announced addresses the engine picks the
/// source (`announced`), else it sends from the address the peer's pair uses.
fn queue_transmit(
    transmits: &mut VecDeque<Transmit>,
    stats: &mut ShardStats,
    announced: bool,
    datagram: Datagram,
) {
    let Datagram {
        transport,
        destination,
        source,
        contents,
    } = datagram;
    stats.tx_datagrams += 1;
    transmits.push_back(Transmit {
        transport,
        destination,
        source: (!announced).then_some(source),
        contents,
    });
}

#[cfg(test)]
#[allow(
    clippy::disallowed_methods,
    reason = "a test picks its own base instant"
)]
mod tests {
    use str0m::media::{Direction, MediaKind};
    use str0m::{Candidate, IceCreds, RtcConfig};

    use super::*;
    use crate::peer::{PeerSetup, Published, generate_certificate};

    const SHARD_ADDR: &str = "192.0.2.1:5000";

    /// A publisher's peer, answering the VP8 offer of a str0m client that never connects.
    fn publisher(now: Instant) -> (Peer, Published) {
        let cert = generate_certificate().expect("a certificate");
        let mut client = RtcConfig::new()
            .set_rtp_mode(true)
            .set_dtls_cert(cert.clone())
            .clear_codecs()
            .enable_vp8(true)
            .build(now);
        let client_addr: SocketAddr = "198.51.100.7:40000".parse().unwrap();
        client.add_local_candidate(Candidate::host(client_addr, "udp").unwrap());
        let mut api = client.sdp_api();
        api.add_media(MediaKind::Video, Direction::SendOnly, None, None, None);
        let (offer, _) = api.apply().expect("an offer");
        let setup = PeerSetup {
            cert,
            candidates: vec![SHARD_ADDR.parse().unwrap()],
            tcp_candidates: Vec::new(),
            ice: IceCreds {
                ufrag: "h0s1".into(),
                pass: "testpasswordtestpassword".into(),
            },
        };
        let (peer, _answer, published) =
            Peer::publisher(&setup, &offer.to_sdp_string(), now).expect("a publisher");
        (peer, published)
    }

    /// Drain the shard: what it yielded before the timeout, and the deadline.
    fn drain(shard: &mut Shard) -> (Vec<Output>, Option<Instant>) {
        let mut outputs = Vec::new();
        loop {
            match shard.poll_output() {
                Output::Timeout(at) => return (outputs, at),
                o => outputs.push(o),
            }
        }
    }

    #[test]
    fn each_input_polls_the_peers_it_changed_before_it_ends() {
        let start = Instant::now();
        let connect_timeout = Duration::from_secs(2);
        let mut shard = Shard::new(ShardConfig {
            connect_timeout,
            ..ShardConfig::default()
        });
        let (peer, published) = publisher(start);
        shard.handle_input(Input::Command(
            start,
            7,
            Command::AddPublisher {
                session: SessionId(1),
                stream: StreamId(1),
                peer: Box::new(peer),
                published: Box::new(published),
                relay_to: 0,
            },
        ));
        let (outputs, deadline) = drain(&mut shard);
        assert!(matches!(
            outputs.as_slice(),
            [Output::Reply {
                token: 7,
                result: Ok(Reply::Done)
            }]
        ));
        // The new peer was polled within the command's input: its deadline is in the heap.
        let deadline = deadline.expect("the placed peer's deadline");
        assert!(deadline <= start + connect_timeout);
        assert_eq!(shard.map_sizes(), [1, 1, 0, 1, 1, 1, 0]);

        // Timeouts poll it again each time; once its connect deadline passed it is given up.
        let mut next = Some(deadline);
        let mut closed = Vec::new();
        for _ in 0..10_000 {
            let Some(at) = next else { break };
            shard.handle_input(Input::Timeout(at));
            let (outputs, deadline) = drain(&mut shard);
            closed.extend(outputs.into_iter().filter_map(|o| match o {
                Output::Event(ShardEvent::SessionClosed { session }) => Some((session, at)),
                _ => None,
            }));
            next = deadline;
        }
        assert_eq!(closed, [(SessionId(1), start + connect_timeout)]);
        assert_eq!(shard.map_sizes(), [0; 7], "everything freed, no timer left");
    }
}
