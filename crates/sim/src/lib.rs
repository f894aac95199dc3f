//! Deterministic simulation of ringcast: one or more [`Shard`]s, many str0m clients, an
//! in-memory network and a virtual clock, in one thread.
//!
//! # How it runs
//!
//! A [`Sim`] owns everything. Its clock starts at an instant captured once and only moves when
//! the sim runs ([`Sim::run_for`], [`Sim::run_until`]): it jumps to the earliest of
//!
//! - the next datagram's arrival on the [`net::Network`],
//! - a shard's deadline (the last [`Output::Timeout`] it gave),
//! - a client's deadline (the last `Output::Timeout` of its str0m `Rtc`),
//! - a publisher's next media write (an audio packet every 20 ms, a video frame every 33 ms),
//!
//! handles that one thing and drains whoever it touched until their next deadline — the
//! sans-IO contract of both str0m and ringcast-core. Nothing waits on a real clock, so seconds
//! of media take milliseconds.
//!
//! # What it plays
//!
//! The control plane is ringcast-core's [`Control`], the same state machine the HTTP server
//! drives: [`Sim::add_publisher`] and [`Sim::add_viewer`] run its join flow (admit, build the
//! participant's peer from a str0m client's offer, place it on the shard the control plane
//! chose), [`Sim::remove`] its leave flow, and sessions the shards close on their own go to
//! [`Control::closed`]. Every command the control plane hands out is delivered to its shard at
//! once, in order. Relay messages between shards are handed over synchronously, in the same
//! step.
//!
//! # Rooms
//!
//! [`Sim::join_room`] runs the room join (`POST /rooms/{room}`): the control plane admits the
//! member, its peer is built with `Peer::member` from a [`member`] client's offer (sendonly
//! audio with the RFC 6464 audio level, sendonly video, receive slots, the `ringcast` data
//! channel) and placed. A member records what arrives on each slot and every message on the
//! channel; tests send messages ([`Sim::send_message`]), set loudness
//! ([`Sim::set_audio_level`]), read the room as the admin API does ([`Sim::room_info`]) and
//! check slots with [`check::slot`]. Every payload's [`Tag`] names its sender
//! ([`Sim::source_of`]).
//!
//! # Links and publishers
//!
//! Each client's up and down [`net::Link`] has a delay, jitter, random loss and, optionally, a
//! bottleneck rate with a bounded queue ([`LinkConfig::rate_bps`], [`QueueLimit`]): datagrams
//! serialize behind each other, so delay grows as the queue fills and a full queue drops —
//! what a congestion controller (str0m's TWCC/delay-based estimate) reacts to. Links can be
//! changed while the sim runs ([`Sim::set_link`], [`Sim::set_down_link`]). A publisher sends
//! one video stream or simulcast layers ([`PublisherConfig::layers`], as a browser does); what
//! a viewer got is told apart by layer with [`check::layered`].
//!
//! # Determinism
//!
//! Loss, jitter and media sizes come from generators seeded from [`SimConfig::seed`], one per
//! link and per publisher, and the event order is fixed (ties: network, shards, clients,
//! media). On clean links a run repeats exactly in time. str0m's own randomness is not seeded:
//! keys, certificates, SSRCs and ICE transaction ids change bytes on the wire only, but DTLS
//! retransmission timers carry random jitter (dimpl seeds it only under str0m's internal
//! `_internal_test_exports` feature), so when handshake datagrams are lost, connection times
//! — and from there which datagrams the seeded loss hits — vary from run to run. Scenarios
//! with loss therefore assert statistical outcomes with margin, not exact traces.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod check;
pub mod client;
pub mod media;
pub mod member;
pub mod net;
mod room;

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::net::{Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use ringcast_core::control::{
    AdmissionLimits, Built, Limits, Refusal, Requester, Role as ControlRole,
};
use ringcast_core::{
    Command, CommandError, Control, ControlConfig, IceCreds, Input, LayerInfo, Output, PeerSetup,
    Relay, Reply, SessionId, Shard, ShardConfig, ShardEvent, ShardId, StreamId, Transport,
    generate_certificate,
};
use str0m::config::DtlsCert;

pub use client::{Client, ClientId, PublisherConfig, Received, Role, SendLayer, Sent, SimLayer};
pub use media::{Tag, VideoCodec};
pub use member::{Member, MemberConfig, Message, SlotRx, SlotState};
pub use net::{Datagram, Link, LinkConfig, Network, QueueLimit};
pub use room::JoinError;

use client::{Polled, Spec};

/// Settings of a simulation.
#[derive(Debug, Clone)]
pub struct SimConfig {
    /// Seeds every random generator of the sim.
    pub seed: u64,
    /// Number of shards.
    pub shards: u16,
    /// Settings for every shard (`id` is set per shard).
    pub shard: ShardConfig,
    /// Link settings of new clients (both directions).
    pub link: LinkConfig,
    /// The control plane's placement limits per shard.
    pub limits: Limits,
    /// A second publisher of a live stream replaces the first instead of being refused.
    pub replace_publisher: bool,
    /// The control plane's admission limits; none by default.
    pub admission: AdmissionLimits,
    /// Most slots per kind of a room member (`rooms.max_slots`).
    pub max_slots: usize,
    /// Most members of one room (`rooms.max_members`).
    pub max_room_members: u32,
    /// The shards answer a passive TCP candidate after the UDP one (`media.tcp`).
    pub tcp: bool,
}

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig {
            seed: 1,
            shards: 1,
            shard: ShardConfig::default(),
            link: LinkConfig::default(),
            limits: ControlConfig::default().limits,
            replace_publisher: false,
            admission: AdmissionLimits::NONE,
            max_slots: 16,
            max_room_members: ControlConfig::default().max_room_members,
            tcp: false,
        }
    }
}

/// Something a shard told the control plane.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SimEvent {
    /// When.
    pub at: Instant,
    /// Which shard.
    pub shard: ShardId,
    /// What.
    pub event: ShardEvent,
}

/// Where the sim is, as told to the hook of [`Sim::set_shard_scope`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ShardScope {
    /// Inside a shard, handling a datagram from this address.
    Datagram(SocketAddr),
    /// Inside a shard, handling a message from another shard ([`Relay`]).
    Relay,
    /// Inside a shard, giving an output (`Shard::poll_output`): the drain, in which the peers
    /// that inputs marked are polled, so the forwarded packets are encrypted and sent there.
    Drain,
    /// Inside a shard, handling another input (a timeout, a command).
    Other,
    /// Out of the shards again: in the sim, a client, the network.
    Outside,
}

/// One shard and what the sim knows about it.
struct Node {
    shard: Shard,
    addr: SocketAddr,
    /// Where clients reach it: `addr`, or with announced addresses ([`ShardConfig::announced`])
    /// the announced IP and `addr`'s port, which a 1:1 NAT in front of the shard maps to `addr`.
    public: SocketAddr,
    deadline: Option<Instant>,
    wake: Wake,
}

/// The simulation: shards, clients, network and clock.
pub struct Sim {
    config: SimConfig,
    start: Instant,
    now: Instant,
    server_cert: DtlsCert,
    client_cert: DtlsCert,
    nodes: Vec<Node>,
    clients: Vec<Client>,
    client_addrs: HashMap<SocketAddr, ClientId>,
    control: Control,
    closed: Vec<SessionId>,
    shard_addrs: HashMap<SocketAddr, usize>,
    client_timers: BinaryHeap<Reverse<(Instant, usize)>>,
    /// Real (not virtual) time spent inside the shards on datagrams and timeouts, relays
    /// included: what the shards cost, without the clients.
    shard_busy: Duration,
    /// The shard fed a receive batch not drained yet, and the datagrams fed since its last
    /// drain (see `step`).
    undrained: Option<(usize, u32)>,
    publishers: Vec<ClientId>,
    net: Network,
    next_session: u64,
    next_token: u64,
    next_generation: u32,
    /// Which client each publisher generation ([`media::Tag::source`]) belongs to.
    generations: HashMap<u32, ClientId>,
    events: Vec<SimEvent>,
    replies: Vec<(u64, Result<Reply, CommandError>)>,
    /// Datagrams addressed to nobody the sim knows (dropped).
    pub undeliverable: u64,
    /// Steps taken (events handled).
    pub steps: u64,
    /// Receive batches drained before their end because [`Shard::drain_due`] said so (many
    /// packets waiting), as the engines do.
    pub early_drains: u64,
    /// Told when the sim enters and leaves a shard's code (see [`Sim::set_shard_scope`]).
    shard_scope: Option<fn(ShardScope)>,
}

impl std::fmt::Debug for Sim {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sim")
            .field("elapsed", &self.elapsed())
            .field("shards", &self.nodes.len())
            .field("clients", &self.clients.len())
            .finish_non_exhaustive()
    }
}

/// Whether a joining client's offer carries its ICE candidates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Candidates {
    InOffer,
    /// In the offer: one active TCP host candidate, and the client's network drops UDP.
    OverTcp,
    Withheld,
    /// In the offer, signalled as of this type (`relay`, `srflx`) instead of `host`.
    Typed(&'static str),
}

enum Next {
    Deliver,
    Shard(usize),
    Client(usize),
    Media(ClientId),
}

impl Sim {
    /// A sim with `config.shards` empty shards at `10.99.0.<shard>:5000`; with announced
    /// addresses, behind a 1:1 NAT of the first one (see [`ShardConfig::announced`]), a single
    /// shard then.
    pub fn new(config: SimConfig) -> Sim {
        // The one reading of the real clock: everything after is virtual.
        let start = Instant::now();
        let server_cert = generate_certificate().expect("a DTLS certificate");
        let client_cert = generate_certificate().expect("a DTLS certificate");
        let mut nodes = Vec::new();
        let mut shard_addrs = HashMap::new();
        for i in 0..config.shards {
            let addr = shard_addr(ShardId(i));
            let public = config
                .shard
                .announced
                .first()
                .map_or(addr, |a| SocketAddr::new(a.ip(), addr.port()));
            let clash = shard_addrs.insert(public, nodes.len());
            assert!(
                clash.is_none(),
                "the sim's 1:1 NAT maps one announced address to one shard"
            );
            nodes.push(Node {
                shard: Shard::new(ShardConfig {
                    id: ShardId(i),
                    ..config.shard.clone()
                }),
                addr,
                public,
                deadline: None,
                wake: Wake::default(),
            });
        }
        let control = Control::new(ControlConfig {
            shards: config.shards,
            limits: config.limits,
            replace_publisher: config.replace_publisher,
            admission: config.admission,
            max_room_members: config.max_room_members,
        });
        Sim {
            config,
            start,
            now: start,
            server_cert,
            client_cert,
            nodes,
            clients: Vec::new(),
            client_addrs: HashMap::new(),
            control,
            closed: Vec::new(),
            shard_addrs,
            client_timers: BinaryHeap::new(),
            publishers: Vec::new(),
            net: Network::default(),
            next_session: 1,
            next_token: 1,
            next_generation: 1,
            generations: HashMap::new(),
            events: Vec::new(),
            replies: Vec::new(),
            undeliverable: 0,
            shard_busy: Duration::ZERO,
            undrained: None,
            steps: 0,
            early_drains: 0,
            shard_scope: None,
        }
    }

    // ---- getters ----

    /// Virtual now.
    pub fn now(&self) -> Instant {
        self.now
    }

    /// Virtual time since the start.
    pub fn elapsed(&self) -> Duration {
        self.now - self.start
    }

    /// A shard.
    pub fn shard(&self, id: ShardId) -> &Shard {
        &self.nodes[usize::from(id.0)].shard
    }

    /// A shard's address.
    pub fn shard_addr(&self, id: ShardId) -> SocketAddr {
        self.nodes[usize::from(id.0)].addr
    }

    /// A client.
    pub fn client(&self, id: ClientId) -> &Client {
        &self.clients[id.0]
    }

    /// A client, mutably (to change its links, for instance).
    pub fn client_mut(&mut self, id: ClientId) -> &mut Client {
        &mut self.clients[id.0]
    }

    /// Every client.
    pub fn clients(&self) -> &[Client] {
        &self.clients
    }

    /// Every event shards reported so far.
    pub fn events(&self) -> &[SimEvent] {
        &self.events
    }

    /// The network.
    pub fn network(&self) -> &Network {
        &self.net
    }

    /// The control plane.
    pub fn control(&self) -> &Control {
        &self.control
    }

    /// The client that sent this synthetic payload (by its [`media::Tag`]).
    pub fn source_of(&self, payload: &[u8]) -> Option<ClientId> {
        let tag = media::Tag::parse(payload)?;
        self.generations.get(&tag.source).copied()
    }

    // ---- control plane ----

    /// A publisher of `stream` joins (a WHIP POST): its client and sendonly offer are built,
    /// and the control plane admits it, places it and tells the shards what follows. It
    /// connects (and, by default, starts sending) as the sim runs. Panics if refused.
    pub fn add_publisher(&mut self, stream: &str, config: PublisherConfig) -> ClientId {
        self.try_add_publisher(stream, config)
            .unwrap_or_else(|r| panic!("publisher of {stream} refused: {r}"))
    }

    /// Like [`Sim::add_publisher`], with the control plane's refusal.
    pub fn try_add_publisher(
        &mut self,
        stream: &str,
        config: PublisherConfig,
    ) -> Result<ClientId, Refusal> {
        self.join(stream, Some(config), Candidates::InOffer, None)
    }

    /// Like [`Sim::add_publisher`], but the offer the server gets carries no ICE candidate (a
    /// client that would trickle them, or lets the server learn its address from its checks).
    /// Panics if refused.
    pub fn add_publisher_without_candidates(
        &mut self,
        stream: &str,
        config: PublisherConfig,
    ) -> ClientId {
        self.join(stream, Some(config), Candidates::Withheld, None)
            .unwrap_or_else(|r| panic!("publisher of {stream} refused: {r}"))
    }

    /// Like [`Sim::try_add_publisher`], asked for by `from` (by default, each client asks from
    /// its own address, without a token).
    pub fn try_add_publisher_from(
        &mut self,
        stream: &str,
        config: PublisherConfig,
        from: Requester,
    ) -> Result<ClientId, Refusal> {
        self.join(stream, Some(config), Candidates::InOffer, Some(from))
    }

    /// A viewer of `stream` joins (a WHEP POST), as [`Sim::add_publisher`]. Panics if refused.
    pub fn add_viewer(&mut self, stream: &str) -> ClientId {
        self.try_add_viewer(stream)
            .unwrap_or_else(|r| panic!("viewer of {stream} refused: {r}"))
    }

    /// Like [`Sim::add_viewer`], with the control plane's refusal.
    pub fn try_add_viewer(&mut self, stream: &str) -> Result<ClientId, Refusal> {
        self.join(stream, None, Candidates::InOffer, None)
    }

    /// Like [`Sim::add_publisher`], from a network that drops UDP: its one candidate is an
    /// active TCP one, and it connects over the shard's TCP candidate ([`SimConfig::tcp`]).
    /// Panics if refused.
    pub fn add_publisher_over_tcp(&mut self, stream: &str, config: PublisherConfig) -> ClientId {
        self.join(stream, Some(config), Candidates::OverTcp, None)
            .unwrap_or_else(|r| panic!("publisher of {stream} refused: {r}"))
    }

    /// Like [`Sim::add_viewer`], from a network that drops UDP (see
    /// [`Sim::add_publisher_over_tcp`]). Panics if refused.
    pub fn add_viewer_over_tcp(&mut self, stream: &str) -> ClientId {
        self.join(stream, None, Candidates::OverTcp, None)
            .unwrap_or_else(|r| panic!("viewer of {stream} refused: {r}"))
    }

    /// Like [`Sim::add_viewer`], with no ICE candidate in the offer the server gets (see
    /// [`Sim::add_publisher_without_candidates`]). Panics if refused.
    pub fn add_viewer_without_candidates(&mut self, stream: &str) -> ClientId {
        self.join(stream, None, Candidates::Withheld, None)
            .unwrap_or_else(|r| panic!("viewer of {stream} refused: {r}"))
    }

    /// Like [`Sim::add_viewer`], with its offer's candidate signalled as `typ` (`relay`,
    /// `srflx`): what a browser's offer says of a TURN relay's address, from which the shard
    /// then gets its datagrams. Panics if refused.
    pub fn add_viewer_signalled_as(&mut self, stream: &str, typ: &'static str) -> ClientId {
        self.join(stream, None, Candidates::Typed(typ), None)
            .unwrap_or_else(|r| panic!("viewer of {stream} refused: {r}"))
    }

    /// The client trickles its address as a candidate of type `typ` (a WHIP/WHEP PATCH),
    /// through the control plane to its shard.
    pub fn trickle(&mut self, id: ClientId, typ: &str) -> Result<(), CommandError> {
        let addr = client_addr(id);
        let candidate = format!(
            "candidate:1 1 udp 41885439 {} {} typ {typ} raddr 0.0.0.0 rport 9",
            addr.ip(),
            addr.port()
        );
        let session = self.clients[id.0].session;
        let command = self
            .control
            .trickle(session, vec![candidate])
            .map_err(|_| CommandError::UnknownSession)?;
        self.command(command.shard, command.command).map(|_| ())
    }

    /// Like [`Sim::try_add_viewer`], asked for by `from`.
    pub fn try_add_viewer_from(
        &mut self,
        stream: &str,
        from: Requester,
    ) -> Result<ClientId, Refusal> {
        self.join(stream, None, Candidates::InOffer, Some(from))
    }

    /// The control plane's join flow, with the sim's client as the peer on the other side.
    /// `from` defaults to the client's own address, without a token.
    fn join(
        &mut self,
        stream: &str,
        publish: Option<PublisherConfig>,
        candidates: Candidates,
        from: Option<Requester>,
    ) -> Result<ClientId, Refusal> {
        let role = match publish {
            Some(_) => ControlRole::Publisher,
            None => ControlRole::Viewer,
        };
        let id = ClientId(self.clients.len());
        let addr = client_addr(id);
        let from = from.unwrap_or(Requester::new(addr.ip(), false));
        let admission = self.control.admit(role, stream, from, self.now)?;
        let (shard, stream_id) = (admission.shard, admission.stream);
        let transport = match candidates {
            Candidates::OverTcp => Transport::Tcp,
            _ => Transport::Udp,
        };
        let built = client::build_on(
            self.now,
            &self.client_cert,
            (transport, addr),
            publish.as_ref(),
        );
        let (session, setup) = self.mint(shard);
        let mut offer = built.offer.to_sdp_string();
        if candidates == Candidates::Withheld {
            offer = offer
                .split_inclusive('\n')
                .filter(|l| !l.starts_with("a=candidate:") && !l.starts_with("a=end-of-candidates"))
                .collect();
        }
        if let Candidates::Typed(typ) = candidates {
            offer = offer.replace(" typ host", &format!(" typ {typ} raddr 0.0.0.0 rport 9"));
        }
        let made = Built::from_offer(&setup, &offer, admission.published.as_ref(), self.now);
        let (made, answer) = match made {
            Ok(m) => m,
            Err(e) => {
                self.control.abandon(admission);
                panic!("the shard cannot answer the sim's offer: {e}");
            }
        };
        let (placing, command) = self.control.place(admission, session, made)?;
        let answered = self.command(command.shard, command.command).map(|_| ());
        let joined = self
            .control
            .placed(placing, answered, format!("\"{session}\""));
        self.deliver_commands();
        joined?;
        let is_publisher = publish.is_some();
        let spec = match publish {
            Some(config) => Spec::Publisher(config, self.new_generation(id), self.seed_for(id, 3)),
            None => Spec::Viewer,
        };
        let mut client = self.new_client(id, built, &answer, shard, session, stream_id, spec);
        client.transport = transport;
        self.clients.push(client);
        self.client_addrs.insert(addr, id);
        if is_publisher {
            self.publishers.push(id);
        }
        self.schedule_client(id);
        Ok(id)
    }

    /// The client leaves (WHIP/WHEP DELETE): the control plane's leave flow. The client's
    /// `Rtc` is closed (its DTLS close_notify goes out).
    pub fn remove(&mut self, id: ClientId) -> Result<(), Refusal> {
        let c = &mut self.clients[id.0];
        let session = c.session;
        let _ = c.rtc.close();
        self.drain_client(id.0);
        let c = &mut self.clients[id.0];
        c.closed = true;
        c.deadline = None;
        let left = self.control.leave(session);
        self.deliver_commands();
        left
    }

    /// Deliver the control plane's commands to their shards, in order.
    fn deliver_commands(&mut self) {
        while let Some(c) = self.control.poll_command() {
            if let Err(e) = self.command(c.shard, c.command) {
                tracing::debug!(shard = c.shard.0, "control command refused: {e}");
            }
        }
    }

    /// Sessions the shards closed on their own since the last call: the control plane's
    /// timeout flow.
    fn handle_closed(&mut self) {
        while let Some(session) = self.closed.pop() {
            self.control.closed(session);
            self.deliver_commands();
        }
    }

    /// Real time the shards spent on datagrams and timeouts so far (not commands).
    pub fn shard_busy(&self) -> Duration {
        self.shard_busy
    }

    /// Send a command to a shard now and return its reply.
    pub fn command(&mut self, shard: ShardId, cmd: Command) -> Result<Reply, CommandError> {
        let token = self.next_token;
        self.next_token += 1;
        let i = usize::from(shard.0);
        self.feed(i, Input::Command(self.now, token, cmd));
        self.drain_shard(i);
        let pos = self
            .replies
            .iter()
            .position(|(t, _)| *t == token)
            .expect("every command is answered in its drain");
        self.replies.remove(pos).1
    }

    /// Start or stop a publisher's media.
    pub fn set_media(&mut self, id: ClientId, on: bool) {
        let now = self.now;
        let p = self.clients[id.0].publisher_mut();
        if on {
            p.start(now);
        } else {
            p.stop();
        }
    }

    /// Pin a viewer to the video layer `rid` of its stream, or let its shard choose again
    /// (`None`), as the WHEP layer POST and DELETE do: [`Command::SetLayer`] to its shard.
    pub fn set_layer(&mut self, viewer: ClientId, rid: Option<&str>) -> Result<(), CommandError> {
        let c = &self.clients[viewer.0];
        let (shard, session) = (c.shard, c.session);
        let rid = rid.map(str::to_string);
        self.command(shard, Command::SetLayer { session, rid })
            .map(|_| ())
    }

    /// The video layers of a client's stream as the client's shard sees them, best first
    /// ([`Command::StreamLayers`]).
    pub fn stream_layers(&mut self, id: ClientId) -> Vec<LayerInfo> {
        let c = &self.clients[id.0];
        let (shard, stream) = (c.shard, c.stream);
        match self.command(shard, Command::StreamLayers { stream }) {
            Ok(Reply::Layers(layers)) => layers,
            other => panic!("StreamLayers answered {other:?}"),
        }
    }

    /// Time from a viewer's join to its first complete keyframe of `codec` (see
    /// [`check::first_frame`]); `None` while it has none.
    pub fn time_to_first_frame(&self, viewer: ClientId, codec: VideoCodec) -> Option<Duration> {
        let c = &self.clients[viewer.0];
        let video = c.received(ringcast_core::TrackKind::Video);
        check::first_frame(video, codec).map(|at| at - c.added_at)
    }

    /// Make a viewer send a PLI for its video (as a browser does on decode errors). `false` if
    /// it has no video receive stream yet.
    pub fn viewer_request_keyframe(&mut self, id: ClientId) -> bool {
        let ok = self.clients[id.0].request_keyframe();
        self.drain_client(id.0);
        ok
    }

    /// The client disappears without a word: nothing it sent is in flight any more, nothing
    /// reaches it, its clock stops. The shard learns only through its timeouts.
    pub fn vanish(&mut self, id: ClientId) {
        self.clients[id.0].detached = true;
        self.clients[id.0].deadline = None;
    }

    /// Keep the last `n` datagrams each sent by this client (see [`Client::captured`]).
    pub fn capture(&mut self, id: ClientId, n: usize) {
        self.clients[id.0].capture = n;
    }

    /// Deliver raw bytes to a shard now, as if they came from `source`.
    pub fn inject(&mut self, source: SocketAddr, shard: ShardId, bytes: &[u8]) {
        let i = usize::from(shard.0);
        let destination = self.nodes[i].addr;
        self.feed(
            i,
            Input::Datagram {
                transport: Transport::Udp,
                now: self.now,
                source,
                destination,
                contents: bytes,
            },
        );
        self.drain_shard(i);
    }

    /// The client's NAT maps it to `public` from now on (a new mapping after its old one
    /// expired or was flushed: a NAT rebinding): what it sends reaches the shards from
    /// `public`, what they send to its previous address is lost, and its `Rtc` is not told.
    pub fn rebind(&mut self, id: ClientId, public: SocketAddr) {
        let c = &mut self.clients[id.0];
        self.client_addrs.remove(&c.public);
        c.public = public;
        self.client_addrs.insert(public, id);
    }

    /// Set both links of a client.
    pub fn set_link(&mut self, id: ClientId, config: LinkConfig) {
        let c = &mut self.clients[id.0];
        c.up.config = config;
        c.down.config = config;
    }

    /// Set a client's down link (shard → client) only, at any time: what is already queued on
    /// it still leaves at the old pace.
    pub fn set_down_link(&mut self, id: ClientId, config: LinkConfig) {
        self.clients[id.0].down.config = config;
    }

    /// Set a client's up link (client → shard) only.
    pub fn set_up_link(&mut self, id: ClientId, config: LinkConfig) {
        self.clients[id.0].up.config = config;
    }

    /// Call `scope` whenever the sim enters a shard's code (`Shard::handle_input`, with what it
    /// handles, and `Shard::poll_output`) and with [`ShardScope::Outside`] when it leaves it,
    /// so that a test can tell what the shards do (allocate, for instance) from what the
    /// clients and the sim around them do, all in one thread — and a publisher's packets, as
    /// they come and as they are relayed, from the rest. Outputs are handled (put on the
    /// network, relayed) outside. Unset, nothing is called.
    pub fn set_shard_scope(&mut self, scope: fn(ShardScope)) {
        self.shard_scope = Some(scope);
    }

    // ---- running ----

    /// Run for `d` of virtual time.
    pub fn run_for(&mut self, d: Duration) {
        self.run_until(self.now + d);
    }

    /// Run until virtual time `end`.
    pub fn run_until(&mut self, end: Instant) {
        while self.step(end) {}
        self.now = self.now.max(end);
    }

    /// Run until `done` holds (checked after every step) or `max` of virtual time passed.
    /// Returns whether `done` held.
    pub fn run_until_true(&mut self, max: Duration, mut done: impl FnMut(&Sim) -> bool) -> bool {
        let end = self.now + max;
        loop {
            if done(self) {
                return true;
            }
            if !self.step(end) {
                self.now = self.now.max(end);
                return done(self);
            }
        }
    }

    /// One publisher and `viewers` viewers of `stream`, placed by the control plane and
    /// connected (within `max` of virtual time, else a panic). Returns the publisher and the
    /// viewers.
    pub fn add_broadcast(
        &mut self,
        stream: &str,
        config: PublisherConfig,
        viewers: usize,
        max: Duration,
    ) -> (ClientId, Vec<ClientId>) {
        let publisher = self.add_publisher(stream, config);
        let ids: Vec<ClientId> = (0..viewers).map(|_| self.add_viewer(stream)).collect();
        let mut all = ids.clone();
        all.push(publisher);
        self.connect(&all, max);
        (publisher, ids)
    }

    /// Run until every client in `ids` is connected; panics after `max`.
    pub fn connect(&mut self, ids: &[ClientId], max: Duration) {
        let ok = self.run_until_true(max, |s| ids.iter().all(|id| s.clients[id.0].is_connected()));
        if !ok {
            let stuck: Vec<_> = ids
                .iter()
                .filter(|id| !self.clients[id.0].is_connected())
                .collect();
            panic!("clients {stuck:?} not connected after {max:?}");
        }
    }

    /// Handle the earliest pending thing if it is due by `end`. `false` when none is.
    pub fn step(&mut self, end: Instant) -> bool {
        let Some((at, next)) = self.next() else {
            return false;
        };
        if at > end {
            return false;
        }
        self.now = self.now.max(at);
        self.steps += 1;
        let now = self.now;
        match next {
            Next::Deliver => {
                let d = self.net.pop_due(now).expect("due");
                self.deliver(d);
                // Like the engines, a shard takes the datagrams that arrive together as one
                // receive batch and is drained once after it.
                if let Some((i, _)) = self.undrained {
                    let next = self.net.next_due_destination(now);
                    if next.and_then(|a| self.shard_addrs.get(&a)) != Some(&i) {
                        self.undrained = None;
                        let started = Instant::now();
                        self.drain_shard(i);
                        self.shard_busy += started.elapsed();
                    }
                }
            }
            Next::Shard(i) => {
                let started = Instant::now();
                let node = &mut self.nodes[i];
                node.wake.fed(now);
                node.deadline = None;
                self.feed(i, Input::Timeout(now));
                self.drain_shard(i);
                self.shard_busy += started.elapsed();
            }
            Next::Client(i) => {
                self.client_timers.pop();
                let c = &mut self.clients[i];
                c.deadline = None;
                c.handle_timeout(now);
                self.drain_client(i);
            }
            Next::Media(id) => {
                self.write_media(id.0);
            }
        }
        self.handle_closed();
        true
    }

    fn next(&mut self) -> Option<(Instant, Next)> {
        let mut best: Option<(Instant, Next)> = self.net.next_at().map(|t| (t, Next::Deliver));
        let consider = |t: Instant, n: Next, best: &mut Option<(Instant, Next)>| {
            if best.as_ref().is_none_or(|(b, _)| t < *b) {
                *best = Some((t, n));
            }
        };
        for (i, node) in self.nodes.iter().enumerate() {
            if let Some(t) = node.deadline {
                consider(t, Next::Shard(i), &mut best);
            }
        }
        // Lazily drop stale client timers.
        while let Some(Reverse((t, i))) = self.client_timers.peek().copied() {
            let c = &self.clients[i];
            if c.deadline == Some(t) && !c.detached && !c.closed {
                consider(t, Next::Client(i), &mut best);
                break;
            }
            self.client_timers.pop();
        }
        for &id in &self.publishers {
            if let Some(t) = self.clients[id.0].next_media_at() {
                consider(t, Next::Media(id), &mut best);
            }
        }
        best
    }

    fn deliver(&mut self, d: Datagram) {
        if self
            .client_addrs
            .get(&d.source)
            .is_some_and(|id| self.clients[id.0].detached)
        {
            return;
        }
        if let Some(&i) = self.shard_addrs.get(&d.destination) {
            let started = Instant::now();
            self.feed(
                i,
                Input::Datagram {
                    transport: d.transport,
                    now: self.now,
                    source: d.source,
                    // Through the 1:1 NAT, if any: to the shard's own address.
                    destination: self.nodes[i].addr,
                    contents: &d.contents,
                },
            );
            // What routing sent at once goes out now, as the engines send it.
            while let Some(t) = self.nodes[i].shard.take_transmit() {
                self.transmit(i, t);
            }
            // Drained by `step` once the receive batch is over, or now when the shard says a
            // drain is due (as the engines ask after each datagram).
            let fed = match self.undrained {
                Some((j, fed)) if j == i => fed + 1,
                _ => 1,
            };
            if self.nodes[i].shard.drain_due(fed) {
                self.undrained = None;
                self.early_drains += 1;
                self.drain_shard(i);
            } else {
                self.undrained = Some((i, fed));
            }
            self.shard_busy += started.elapsed();
        } else if let Some(&id) = self.client_addrs.get(&d.destination) {
            let c = &mut self.clients[id.0];
            if c.detached || c.closed {
                return;
            }
            // A client's network carries one transport; the other is dropped on the way.
            if d.transport != c.transport {
                self.undeliverable += 1;
                return;
            }
            c.handle_datagram(self.now, d.source, &d.contents);
            self.drain_client(id.0);
        } else {
            self.undeliverable += 1;
        }
    }

    /// Drain a shard until its timeout, routing transmits to the network and relays to other
    /// shards (synchronously, draining them in turn).
    fn drain_shard(&mut self, first: usize) {
        let mut relays: VecDeque<(ShardId, Relay)> = VecDeque::new();
        let mut i = first;
        loop {
            loop {
                let node = &mut self.nodes[i];
                if let Some(scope) = self.shard_scope {
                    scope(ShardScope::Drain);
                }
                let output = node.shard.poll_output();
                if let Some(scope) = self.shard_scope {
                    scope(ShardScope::Outside);
                }
                match output {
                    Output::Transmit(t) => self.transmit(i, t),
                    Output::Relay { to, message } => relays.push_back((to, message)),
                    Output::Reply { token, result } => self.replies.push((token, result)),
                    Output::Event(event) => {
                        tracing::debug!(shard = node.shard.id().0, ?event, "shard event");
                        match &event {
                            ShardEvent::SessionClosed { session } => self.closed.push(*session),
                            ShardEvent::SessionConnected { session } => {
                                self.control.connected(*session);
                            }
                        }
                        self.events.push(SimEvent {
                            at: self.now,
                            shard: node.shard.id(),
                            event,
                        });
                    }
                    Output::Timeout(t) => {
                        node.deadline = t.map(|t| node.wake.next(t));
                        break;
                    }
                }
            }
            let Some((to, message)) = relays.pop_front() else {
                return;
            };
            i = usize::from(to.0);
            self.feed(i, Input::Relay(self.now, message));
        }
    }

    /// Send shard `i`'s datagram down to its client. The network carries a copy and the shard
    /// gets the buffer back at once, as an engine copies a datagram into a GSO batch and gives
    /// it back.
    fn transmit(&mut self, i: usize, t: ringcast_core::Transmit) {
        let node = &mut self.nodes[i];
        let contents = t.contents.clone();
        node.shard.give_datagram_buffer(t.contents);
        let source = node.public;
        self.send_down(t.transport, source, t.destination, contents);
    }

    /// Feed shard `i` one input, inside the shard scope.
    fn feed(&mut self, i: usize, input: Input<'_>) {
        if let Some(scope) = self.shard_scope {
            scope(match input {
                Input::Datagram { source, .. } => ShardScope::Datagram(source),
                Input::Relay(..) => ShardScope::Relay,
                Input::Timeout(_) | Input::Command(..) => ShardScope::Other,
            });
        }
        self.nodes[i].shard.handle_input(input);
        if let Some(scope) = self.shard_scope {
            scope(ShardScope::Outside);
        }
    }

    fn send_down(
        &mut self,
        transport: Transport,
        source: SocketAddr,
        destination: SocketAddr,
        contents: Vec<u8>,
    ) {
        let Some(&id) = self.client_addrs.get(&destination) else {
            self.undeliverable += 1;
            return;
        };
        let c = &mut self.clients[id.0];
        if c.detached {
            return;
        }
        if let Some(at) = c.down.admit(self.now, contents.len()) {
            self.net.push(Datagram {
                at,
                transport,
                source,
                destination,
                contents,
            });
        }
    }

    /// Drain a client's `Rtc` until its timeout.
    fn drain_client(&mut self, i: usize) {
        let now = self.now;
        loop {
            let c = &mut self.clients[i];
            match c.poll(now) {
                Polled::Transmit(destination, contents) => {
                    if c.detached {
                        continue;
                    }
                    if let Some(at) = c.up.admit(now, contents.len()) {
                        let source = c.public;
                        self.net.push(Datagram {
                            at,
                            transport: c.transport,
                            source,
                            destination,
                            contents,
                        });
                    }
                }
                Polled::Event => {}
                Polled::Timeout => break,
            }
        }
        self.schedule_client(ClientId(i));
    }

    fn schedule_client(&mut self, id: ClientId) {
        let c = &self.clients[id.0];
        if let Some(t) = c.deadline
            && !c.detached
            && !c.closed
        {
            self.client_timers.push(Reverse((t, id.0)));
        }
    }

    fn write_media(&mut self, i: usize) {
        let now = self.now;
        let mut out: Vec<(SocketAddr, Vec<u8>)> = Vec::new();
        let client = &mut self.clients[i];
        client.write_due_media(now, &mut |c: &mut Client| {
            // Drain after every write; transmits are put on the wire below, in order.
            loop {
                match c.poll(now) {
                    Polled::Transmit(d, bytes) => out.push((d, bytes)),
                    Polled::Event => {}
                    Polled::Timeout => break,
                }
            }
        });
        let c = &mut self.clients[i];
        let source = c.public;
        for (destination, contents) in out {
            if c.detached {
                break;
            }
            if let Some(at) = c.up.admit(now, contents.len()) {
                self.net.push(Datagram {
                    at,
                    transport: c.transport,
                    source,
                    destination,
                    contents,
                });
            }
        }
        self.schedule_client(ClientId(i));
    }

    // ---- helpers ----

    fn mint(&mut self, shard: ShardId) -> (SessionId, PeerSetup) {
        let session = SessionId(self.next_session);
        self.next_session += 1;
        let setup = PeerSetup {
            cert: self.server_cert.clone(),
            candidates: vec![self.nodes[usize::from(shard.0)].public],
            tcp_candidates: match self.config.tcp {
                true => vec![self.nodes[usize::from(shard.0)].public],
                false => Vec::new(),
            },
            ice: IceCreds {
                ufrag: format!("h{}s{}", shard.0, session.0),
                pass: format!("simulatedpassword{:012}", session.0),
            },
        };
        (session, setup)
    }

    /// A new publisher generation ([`media::Tag::source`]), noted as `id`'s.
    fn new_generation(&mut self, id: ClientId) -> u32 {
        let generation = self.next_generation;
        self.next_generation += 1;
        self.generations.insert(generation, id);
        generation
    }

    fn seed_for(&self, id: ClientId, salt: u64) -> u64 {
        self.config
            .seed
            .wrapping_mul(0x9e37_79b9_7f4a_7c15)
            .wrapping_add((id.0 as u64) << 8 | salt)
    }

    #[allow(clippy::too_many_arguments)]
    fn new_client(
        &self,
        id: ClientId,
        built: client::Built,
        answer: &str,
        shard: ShardId,
        session: SessionId,
        stream: StreamId,
        spec: Spec,
    ) -> Client {
        let addr = client_addr(id);
        Client::new(
            id,
            built,
            answer,
            addr,
            shard,
            self.nodes[usize::from(shard.0)].public,
            session,
            stream,
            Link::new(self.config.link, self.seed_for(id, 1)),
            Link::new(self.config.link, self.seed_for(id, 2)),
            self.now,
            spec,
        )
    }
}

/// Timeouts fed to one component at one instant. str0m (and so a shard) answers "already
/// happened" when work is pending, so a component may be woken again at the same instant — a
/// few times, then one millisecond later, so that nothing spins.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct Wake {
    last: Option<Instant>,
    repeats: u32,
}

impl Wake {
    const MAX_REPEATS: u32 = 4;

    /// A timeout was fed at `now`.
    pub(crate) fn fed(&mut self, now: Instant) {
        if self.last == Some(now) {
            self.repeats += 1;
        } else {
            self.last = Some(now);
            self.repeats = 0;
        }
    }

    /// When to feed the next timeout for a reported deadline `t`.
    pub(crate) fn next(&self, t: Instant) -> Instant {
        match self.last {
            Some(last) if t <= last && self.repeats >= Wake::MAX_REPEATS => {
                last + Duration::from_millis(1)
            }
            _ => t,
        }
    }
}

/// The simulated address of shard `id`: `10.99.0.<id>:5000`.
pub fn shard_addr(id: ShardId) -> SocketAddr {
    SocketAddr::from((Ipv4Addr::new(10, 99, 0, id.0 as u8), 5000))
}

/// The simulated address of client `id`: 10.0.x.y:40000+.
pub fn client_addr(id: ClientId) -> SocketAddr {
    let n = id.0 as u32;
    SocketAddr::from((
        Ipv4Addr::new(10, 0, (n / 200) as u8, (n % 200 + 1) as u8),
        40000 + (n % 1000) as u16,
    ))
}
