//! The control plane as a state machine: streams, sessions, placement and the
//! create / replace / leave / timeout flows, with no sockets, threads, clock or randomness.
//!
//! The HTTP control plane (`ringcast-http`) drives it over real shards and the simulation
//! (`ringcast-sim`) over simulated ones: both call the same flows, so a simulated scenario runs
//! the code that serves HTTP. It is to the shards what quinn-proto's `Endpoint` is to its
//! connections: it decides, and hands out [`Command`]s for the driver to deliver.
//!
//! # Driving it
//!
//! A join is three calls with the expensive work of the driver between them:
//!
//! 1. [`Control::admit`] checks the admission limits for the [`Requester`] (see
//!    [Admission limits](#admission-limits)), reserves a shard (and, for a publisher, the
//!    stream) and says what the peer must be built for ([`Admission`]). Nothing is built yet,
//!    so a refusal costs nothing.
//! 2. The driver builds the participant's [`Peer`] from the offer (about 1 ms of CPU, off the
//!    shard threads) and hands it to [`Control::place`], which gives back the command that adds
//!    it to its shard. A failed build goes to [`Control::abandon`].
//! 3. The driver delivers the command and reports the shard's answer to [`Control::placed`],
//!    which records the session (or undoes the reservation) and settles what follows from it.
//!
//! Sessions end through [`Control::leave`] (the client's DELETE) or [`Control::closed`] (the
//! shard ended one on its own: ICE consent or DTLS timeout, a client that never connected, a
//! replaced publisher). The shard's word that a session connected (ICE and DTLS) goes to
//! [`Control::connected`].
//!
//! After every call, the driver takes [`Control::poll_command`] until it returns `None` and
//! delivers each command to its shard, in order; their answers need no reply to the control
//! plane. A driver that shares one `Control` between tasks drains it under the same lock as the
//! call, so each caller delivers its own flow's commands.
//!
//! # What it keeps consistent
//!
//! - One publisher per stream, or a replacement when [`ControlConfig::replace_publisher`] is
//!   set; a publisher whose codec differs from the last one's ends the viewers that negotiated
//!   the old one (they reconnect and negotiate the new one).
//! - The relay between shards: a publisher's shard relays a stream once to each other shard
//!   that holds placed viewers of it, and to no other. The control plane tracks which shards it
//!   told, and says so again when a publisher (re)appears, wherever it lands.
//! - Every reservation (shard load, pending publisher, pending viewer, the client's session
//!   count, the unconnected count) is released exactly once: by [`Control::placed`],
//!   [`Control::abandon`], [`Control::leave`], [`Control::closed`] or, for the unconnected
//!   count, [`Control::connected`].
//!
//! # Admission limits
//!
//! [`AdmissionLimits`] bound what one client and everyone together can hold, checked in this
//! order, all before anything is reserved:
//!
//! 1. sessions of the client ([`Refusal::ClientSessions`]), and its creation rate
//!    ([`Refusal::ClientRate`]), and room to track a new client ([`Refusal::TooManyClients`]);
//!    see [`admission`];
//! 2. unconnected sessions in total ([`Refusal::Pending`]): a session is unconnected from its
//!    admission until its shard reports ICE and DTLS done ([`Control::connected`]) or it ends;
//! 3. viewers of the stream ([`Refusal::StreamFull`]);
//! 4. a shard with a seat ([`Refusal::Full`]).
//!
//! The rule that keeps a flood from pushing out the others: connected sessions are never
//! ended to make room, and a request without a valid token may not take the last
//! [`AdmissionLimits::token_reserve`] unconnected slots, nor the last `ceil(token_reserve /
//! shards)` seats of a shard. A flood of sessions that never connect therefore holds at most
//! `pending_sessions - token_reserve` seats, and a token holder (a stream's publisher, a
//! paying viewer) still gets in while it lasts.

pub mod admission;
pub mod placement;
mod rooms;

use std::collections::{HashMap, VecDeque};
use std::time::Instant;

use str0m::IceCreds;

use crate::ids::{SessionId, ShardId, StreamId};
use crate::peer::{Peer, PeerSetup, Published, SetupError};
use crate::shard::{Command, CommandError};

pub use admission::{AdmissionLimits, ClientKey, Rate, Requester};
pub use placement::Limits;
pub use rooms::RoomView;

use admission::Clients;

/// Settings of the control plane.
#[derive(Debug, Clone)]
pub struct ControlConfig {
    /// Number of shards (1 to 64).
    pub shards: u16,
    /// Placement limits per shard.
    pub limits: Limits,
    /// A publisher for a stream that has a live one replaces it instead of being refused.
    pub replace_publisher: bool,
    /// Per-client and total limits on new sessions.
    pub admission: AdmissionLimits,
    /// Most members of one room ([`Refusal::RoomFull`]).
    pub max_room_members: u32,
}

impl Default for ControlConfig {
    fn default() -> Self {
        ControlConfig {
            shards: 1,
            limits: Limits {
                affinity: 100,
                max: 1000,
            },
            replace_publisher: false,
            admission: AdmissionLimits::NONE,
            max_room_members: 100,
        }
    }
}

/// Publisher (WHIP), viewer (WHEP) or room member.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Sends a stream.
    Publisher,
    /// Plays a stream.
    Viewer,
    /// In a room: publishes its own media, receives others' in its slots.
    Member,
}

/// Why a flow was refused. Each maps to one HTTP status.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// The stream has a publisher, or one is being set up (409).
    #[error("stream {0} already has a publisher")]
    PublisherExists(String),
    /// A viewer came before the publisher (409 with `Retry-After`).
    #[error("stream {0} has no publisher yet")]
    NoPublisher(String),
    /// Every shard holds its maximum, or what it keeps for token holders (503 with
    /// `Retry-After`).
    #[error("every shard is full")]
    Full,
    /// The client holds [`AdmissionLimits::sessions_per_client`] sessions (429).
    #[error("this address holds its limit of {0} sessions")]
    ClientSessions(u32),
    /// The client started sessions faster than [`AdmissionLimits::creation_rate`] allows (429);
    /// the next one is possible in this many seconds.
    #[error("too many new sessions from this address: the next one in {0} s")]
    ClientRate(u32),
    /// Too many different clients are tracked at once (503).
    #[error("too many clients at once")]
    TooManyClients,
    /// [`AdmissionLimits::pending_sessions`] sessions (or, without a token, the share of them
    /// open to everyone) are still connecting (503).
    #[error("too many sessions are still connecting")]
    Pending,
    /// The stream has [`AdmissionLimits::viewers_per_stream`] viewers (503).
    #[error("stream {0} has its limit of {1} viewers")]
    StreamFull(String, u32),
    /// The room has [`ControlConfig::max_room_members`] members, or its shard is full (503).
    #[error("room {0} has its limit of {1} members")]
    RoomFull(String, u32),
    /// No such session (404).
    #[error("no such session")]
    UnknownSession,
    /// The session id is already taken (the driver mints another).
    #[error("session id already in use")]
    DuplicateSession,
    /// The publisher changed codec while this viewer was being set up for the old one (409):
    /// it should try again.
    #[error("the stream's codec changed while this viewer was being set up")]
    CodecChanged,
    /// The shard refused the participant.
    #[error(transparent)]
    Shard(#[from] CommandError),
}

/// A command for one shard.
#[derive(Debug)]
#[must_use]
pub struct ShardCommand {
    /// The shard.
    pub shard: ShardId,
    /// The command.
    pub command: Command,
}

/// A join that got a shard: build its peer for [`Admission::shard`], then [`Control::place`]
/// it, or [`Control::abandon`] it.
#[derive(Debug)]
#[must_use = "an admission holds a reservation until placed or abandoned"]
pub struct Admission {
    ticket: u64,
    /// Publisher or viewer.
    pub role: Role,
    /// The stream.
    pub stream: StreamId,
    /// The shard it will live on: its candidates go in the answer.
    pub shard: ShardId,
    /// For a viewer: what the publisher sends, which its peer must be built to receive. For a
    /// room member: the room's codecs so far (`tracks`), which its peer must be built with.
    pub published: Option<Published>,
}

/// A built participant, ready for its shard.
#[derive(Debug)]
#[allow(
    clippy::large_enum_variant,
    reason = "made once per join and moved once"
)]
pub enum Built {
    /// A publisher and what its offer sends.
    Publisher(Box<Peer>, Published),
    /// A viewer.
    Viewer(Box<Peer>),
    /// A room member and what its offer holds.
    Member(Box<Peer>, Box<crate::peer::Membership>),
}

impl Built {
    /// Build the participant an admission is for from its client's offer: a publisher when
    /// `receives` is `None`, else a viewer of what `receives` says the publisher sends
    /// ([`Admission::published`]). About 1 ms of CPU. Returns the SDP answer with it.
    pub fn from_offer(
        setup: &PeerSetup,
        offer: &str,
        receives: Option<&Published>,
        now: Instant,
    ) -> Result<(Built, String), SetupError> {
        match receives {
            None => Peer::publisher(setup, offer, now).map(|(peer, answer, published)| {
                (Built::Publisher(Box::new(peer), published), answer)
            }),
            Some(published) => Peer::subscriber(setup, offer, published, now)
                .map(|(peer, answer)| (Built::Viewer(Box::new(peer)), answer)),
        }
    }
}

/// A participant on its way to its shard: deliver the command [`Control::place`] gave with it,
/// then report the answer to [`Control::placed`].
#[derive(Debug)]
#[must_use = "a placing holds a reservation until its answer is reported"]
pub struct Placing {
    ticket: u64,
    /// The session it will be.
    pub session: SessionId,
    /// Its shard.
    pub shard: ShardId,
}

/// A participant placed: its session is recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Joined {
    /// The session.
    pub session: SessionId,
    /// Its shard.
    pub shard: ShardId,
    /// For a publisher that changed the stream's codec: what changed ("video: VP8 -> H264"),
    /// and how many viewers were ended for it.
    pub codec_change: Option<(String, usize)>,
}

/// One session as the control plane knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionView<'a> {
    /// The stream's name.
    pub stream: &'a str,
    /// Publisher or viewer.
    pub role: Role,
    /// Its shard.
    pub shard: ShardId,
    /// Its entity tag (changes on ICE restart).
    pub etag: &'a str,
    /// A viewer's video section, once its driver recorded it ([`Control::set_video`]).
    pub video: Option<&'a VideoSection>,
    /// A room member's participant id.
    pub member: Option<StreamId>,
}

/// Where a viewer's video is in its offer, for the WHEP layer extension, which names it by mid
/// (or, as its draft words it, by m-line index).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VideoSection {
    /// Its `a=mid`.
    pub mid: String,
    /// Its m-line index in the offer (0-based).
    pub index: usize,
}

/// One stream as the control plane knows it.
#[derive(Debug, Clone)]
pub struct StreamView<'a> {
    /// Its name.
    pub name: &'a str,
    /// Its id.
    pub id: StreamId,
    /// A publisher is placed.
    pub live: bool,
    /// Its publisher's shard.
    pub publisher_shard: Option<ShardId>,
    /// Placed viewers.
    pub viewers: u32,
    /// Placed viewers per shard.
    pub viewers_per_shard: Vec<u32>,
    /// What the (last) publisher sends.
    pub published: Option<&'a Published>,
}

/// The control plane's state: streams, sessions, shard loads.
#[derive(Debug)]
pub struct Control {
    config: ControlConfig,
    streams: HashMap<String, Stream>,
    sessions: HashMap<SessionId, Session>,
    pending: HashMap<u64, Pending>,
    load: Vec<usize>,
    clients: Clients,
    /// Sessions admitted and not yet connected (or ended).
    unconnected: u32,
    next_stream: u64,
    next_ticket: u64,
    commands: VecDeque<ShardCommand>,
    rooms: HashMap<String, rooms::Room>,
}

#[derive(Debug)]
struct Stream {
    id: StreamId,
    publisher: Option<(SessionId, ShardId)>,
    publisher_pending: bool,
    published: Option<Published>,
    /// Per shard.
    shards: Vec<StreamShard>,
}

/// A stream's viewers on one shard, and whether the publisher's shard was told to relay there.
#[derive(Debug, Default, Clone, Copy)]
struct StreamShard {
    placed: u32,
    pending: u32,
    relayed: bool,
}

#[derive(Debug)]
struct Session {
    stream: String,
    role: Role,
    shard: ShardId,
    etag: String,
    from: Requester,
    /// ICE and DTLS done: no longer counted as unconnected.
    connected: bool,
    video: Option<VideoSection>,
    /// A room member's own stream (its participant id).
    member: Option<StreamId>,
}

#[derive(Debug)]
struct Pending {
    role: Role,
    stream: String,
    shard: ShardId,
    /// A viewer: what it was built to receive. A publisher: what it sends (after `place`).
    published: Option<Published>,
    /// A publisher: the relay mask its `AddPublisher` carried.
    relay_to: u64,
    session: Option<SessionId>,
    from: Requester,
    /// A room member: its own stream and its display name.
    member: Option<(StreamId, String)>,
}

impl Control {
    /// No streams, no sessions, `config.shards` empty shards.
    pub fn new(config: ControlConfig) -> Control {
        assert!((1..=64).contains(&config.shards), "1 to 64 shards");
        let load = vec![0; usize::from(config.shards)];
        Control {
            config,
            streams: HashMap::new(),
            sessions: HashMap::new(),
            pending: HashMap::new(),
            load,
            clients: Clients::default(),
            unconnected: 0,
            next_stream: 1,
            next_ticket: 1,
            commands: VecDeque::new(),
            rooms: HashMap::new(),
        }
    }

    // ---- getters ----

    /// Participants per shard, placed or being placed.
    pub fn load(&self) -> &[usize] {
        &self.load
    }

    /// Participants on every shard, placed or being placed.
    pub fn participants(&self) -> usize {
        self.load.iter().sum()
    }

    /// Sessions admitted and not yet connected (nor ended).
    pub fn unconnected(&self) -> u32 {
        self.unconnected
    }

    /// Sessions a client holds, placed or being placed.
    pub fn client_sessions(&self, client: ClientKey) -> u32 {
        self.clients.sessions(client)
    }

    /// Clients whose state is kept (sessions, or a creation bucket not yet full again).
    pub fn tracked_clients(&self) -> usize {
        self.clients.len()
    }

    /// A session.
    pub fn session(&self, id: SessionId) -> Option<SessionView<'_>> {
        self.sessions.get(&id).map(|s| SessionView {
            stream: &s.stream,
            role: s.role,
            shard: s.shard,
            etag: &s.etag,
            video: s.video.as_ref(),
            member: s.member,
        })
    }

    /// A stream by name.
    pub fn stream(&self, name: &str) -> Option<StreamView<'_>> {
        self.streams.get_key_value(name).map(|(n, s)| s.view(n))
    }

    /// Every stream with a publisher, viewers, or a join under way.
    pub fn streams(&self) -> impl Iterator<Item = StreamView<'_>> {
        self.streams.iter().map(|(n, s)| s.view(n))
    }

    /// The viewer sessions of a stream, with their shards.
    pub fn viewers_of(&self, name: &str) -> Vec<(SessionId, ShardId)> {
        let mut v: Vec<_> = self
            .sessions
            .iter()
            .filter(|(_, s)| s.stream == name && s.role == Role::Viewer)
            .map(|(id, s)| (*id, s.shard))
            .collect();
        v.sort();
        v
    }

    /// The next command to deliver, in order; `None` when all are out.
    pub fn poll_command(&mut self) -> Option<ShardCommand> {
        self.commands.pop_front()
    }

    // ---- joins ----

    /// Step 1 of a join: check the admission limits for `from` at `now`, then reserve a shard
    /// (and the stream, for a publisher). A refusal reserves nothing.
    pub fn admit(
        &mut self,
        role: Role,
        stream: &str,
        from: Requester,
        now: Instant,
    ) -> Result<Admission, Refusal> {
        self.check_admission(from, now)?;
        let admission = match role {
            Role::Publisher => self.admit_publisher(stream, from),
            Role::Viewer => self.admit_viewer(stream, from),
            Role::Member => self.admit_to_room(stream, None, from),
        }?;
        self.admitted(from, now);
        Ok(admission)
    }

    /// The limits every join is checked against first ([`Control::admit`]).
    fn check_admission(&mut self, from: Requester, now: Instant) -> Result<(), Refusal> {
        let limits = self.config.admission;
        self.clients.check(from.client, &limits, now)?;
        let open = if from.token {
            limits.pending_sessions
        } else {
            limits.pending_sessions.saturating_sub(limits.token_reserve)
        };
        if self.unconnected >= open {
            return Err(Refusal::Pending);
        }
        Ok(())
    }

    /// A join was admitted: it counts against its client and as unconnected.
    fn admitted(&mut self, from: Requester, now: Instant) {
        self.clients.take(from.client, &self.config.admission, now);
        self.unconnected += 1;
    }

    /// Step 2 of a join: the peer is built; here is the command that adds it to its shard.
    pub fn place(
        &mut self,
        admission: Admission,
        session: SessionId,
        built: Built,
    ) -> Result<(Placing, ShardCommand), Refusal> {
        let ticket = admission.ticket;
        if self.sessions.contains_key(&session)
            || self.pending.values().any(|p| p.session == Some(session))
        {
            self.abandon(admission);
            return Err(Refusal::DuplicateSession);
        }
        let Some(p) = self.pending.get_mut(&ticket) else {
            return Err(Refusal::UnknownSession);
        };
        p.session = Some(session);
        let shard = p.shard;
        let built = match built {
            Built::Member(peer, membership) => {
                return self.place_member(ticket, session, peer, membership);
            }
            other => other,
        };
        let Some(p) = self.pending.get_mut(&ticket) else {
            return Err(Refusal::UnknownSession);
        };
        let stream = self
            .streams
            .get(&p.stream)
            .expect("a pending join holds its stream");
        let command = match built {
            Built::Publisher(peer, published) => {
                let relay_to = stream.viewer_mask(shard);
                p.relay_to = relay_to;
                p.published = Some(published.clone());
                Command::AddPublisher {
                    session,
                    stream: stream.id,
                    peer,
                    published: Box::new(published),
                    relay_to,
                }
            }
            Built::Viewer(peer) => Command::AddSubscriber {
                session,
                stream: stream.id,
                peer,
                published: Box::new(p.published.clone().unwrap_or_default()),
                publisher_shard: stream.publisher.map(|(_, s)| s),
            },
            Built::Member(..) => unreachable!("members are placed by place_member"),
        };
        Ok((
            Placing {
                ticket,
                session,
                shard,
            },
            ShardCommand { shard, command },
        ))
    }

    /// Step 3 of a join: the shard's answer to the command [`Control::place`] gave. `etag` is
    /// the new session's entity tag.
    pub fn placed(
        &mut self,
        placing: Placing,
        answer: Result<(), CommandError>,
        etag: String,
    ) -> Result<Joined, Refusal> {
        let Some(p) = self.pending.remove(&placing.ticket) else {
            return Err(Refusal::UnknownSession);
        };
        if let Err(e) = answer {
            self.release(p);
            return Err(Refusal::Shard(e));
        }
        let session = placing.session;
        match p.role {
            Role::Publisher => Ok(self.publisher_placed(p, session, etag)),
            Role::Viewer => self.viewer_placed(p, session, etag),
            Role::Member => Ok(self.member_placed(p, session, etag)),
        }
    }

    /// A join that will not be placed (its peer could not be built, or its command could not
    /// be delivered): release what [`Control::admit`] reserved.
    pub fn abandon(&mut self, admission: Admission) {
        self.release_ticket(admission.ticket);
    }

    /// Like [`Control::abandon`], after [`Control::place`]: the command was never delivered.
    pub fn abandon_placing(&mut self, placing: Placing) {
        self.release_ticket(placing.ticket);
    }

    // ---- sessions ----

    /// The client leaves (DELETE): its shard is told to remove it, and the session is
    /// forgotten.
    pub fn leave(&mut self, session: SessionId) -> Result<(), Refusal> {
        let shard = self
            .sessions
            .get(&session)
            .ok_or(Refusal::UnknownSession)?
            .shard;
        self.commands.push_back(ShardCommand {
            shard,
            command: Command::Remove { session },
        });
        self.forget(session);
        Ok(())
    }

    /// The shard ended a session on its own (timeout, close, replacement): forget it. A session
    /// the control plane no longer knows is ignored.
    pub fn closed(&mut self, session: SessionId) {
        self.forget(session);
    }

    /// The shard reports the session connected (ICE and DTLS done): it no longer counts against
    /// [`AdmissionLimits::pending_sessions`]. Unknown or already connected sessions are ignored.
    pub fn connected(&mut self, session: SessionId) {
        if let Some(s) = self.sessions.get_mut(&session)
            && !s.connected
        {
            s.connected = true;
            self.unconnected = self.unconnected.saturating_sub(1);
        }
    }

    /// An ICE restart: the command that gives the session's shard the new credentials. Record
    /// the new entity tag with [`Control::set_etag`] once the shard took it.
    pub fn ice_restart(
        &mut self,
        session: SessionId,
        remote: IceCreds,
        local: IceCreds,
    ) -> Result<ShardCommand, Refusal> {
        let s = self.sessions.get(&session).ok_or(Refusal::UnknownSession)?;
        Ok(ShardCommand {
            shard: s.shard,
            command: Command::IceRestart {
                session,
                remote,
                local,
            },
        })
    }

    /// Trickled candidates: the command that gives them to the session's shard.
    pub fn trickle(
        &mut self,
        session: SessionId,
        candidates: Vec<String>,
    ) -> Result<ShardCommand, Refusal> {
        let s = self.sessions.get(&session).ok_or(Refusal::UnknownSession)?;
        Ok(ShardCommand {
            shard: s.shard,
            command: Command::Trickle {
                session,
                candidates,
            },
        })
    }

    /// Set a session's entity tag.
    pub fn set_etag(&mut self, session: SessionId, etag: String) {
        if let Some(s) = self.sessions.get_mut(&session) {
            s.etag = etag;
        }
    }

    /// Record a viewer's video section (the WHEP layer extension's `mediaId`).
    pub fn set_video(&mut self, session: SessionId, video: VideoSection) {
        if let Some(s) = self.sessions.get_mut(&session) {
            s.video = Some(video);
        }
    }

    // ---- the flows ----

    fn admit_publisher(&mut self, name: &str, from: Requester) -> Result<Admission, Refusal> {
        let replace = self.config.replace_publisher;
        let stream = self.stream_entry(name);
        if stream.publisher_pending || (stream.publisher.is_some() && !replace) {
            return Err(Refusal::PublisherExists(name.to_string()));
        }
        // A replacement takes its predecessor's shard, where the shard itself swaps them
        // without a gap; a restart goes where most of its waiting viewers are.
        let prefer = stream
            .publisher
            .map(|(_, s)| s)
            .or_else(|| stream.busiest_shard());
        let id = stream.id;
        let limits = self.placement_limits(from);
        let Some(shard) = placement::publisher(&self.load, limits, prefer) else {
            self.drop_if_unused(name);
            return Err(Refusal::Full);
        };
        let stream = self.streams.get_mut(name).expect("just made");
        stream.publisher_pending = true;
        Ok(self.reserve(Role::Publisher, name, id, shard, None, from))
    }

    fn admit_viewer(&mut self, name: &str, from: Requester) -> Result<Admission, Refusal> {
        let no_publisher = || Refusal::NoPublisher(name.to_string());
        let stream = self.streams.get(name).ok_or_else(no_publisher)?;
        let (Some((_, home)), Some(published)) = (stream.publisher, &stream.published) else {
            return Err(no_publisher());
        };
        let viewers: Vec<u32> = stream.shards.iter().map(|s| s.placed + s.pending).collect();
        let limit = self.config.admission.viewers_per_stream;
        if viewers.iter().sum::<u32>() >= limit {
            return Err(Refusal::StreamFull(name.to_string(), limit));
        }
        let limits = self.placement_limits(from);
        let shard =
            placement::viewer(&self.load, limits, Some(home), &viewers).ok_or(Refusal::Full)?;
        let (id, published) = (stream.id, published.clone());
        let stream = self.streams.get_mut(name).expect("looked up");
        stream.shards[usize::from(shard.0)].pending += 1;
        Ok(self.reserve(Role::Viewer, name, id, shard, Some(published), from))
    }

    /// The shard limits a request works with: without a token, each shard's last
    /// `ceil(token_reserve / shards)` seats are not for it.
    fn placement_limits(&self, from: Requester) -> Limits {
        let limits = self.config.limits;
        if from.token {
            return limits;
        }
        let kept = self
            .config
            .admission
            .token_reserve
            .div_ceil(u32::from(self.config.shards));
        let max = limits.max.saturating_sub(kept as usize);
        Limits {
            affinity: limits.affinity.min(max),
            max,
        }
    }

    fn reserve(
        &mut self,
        role: Role,
        name: &str,
        id: StreamId,
        shard: ShardId,
        published: Option<Published>,
        from: Requester,
    ) -> Admission {
        self.load[usize::from(shard.0)] += 1;
        let ticket = self.next_ticket;
        self.next_ticket += 1;
        self.pending.insert(
            ticket,
            Pending {
                role,
                stream: name.to_string(),
                shard,
                published: published.clone(),
                relay_to: 0,
                session: None,
                from,
                member: None,
            },
        );
        Admission {
            ticket,
            role,
            stream: id,
            shard,
            published,
        }
    }

    fn release_ticket(&mut self, ticket: u64) {
        if let Some(p) = self.pending.remove(&ticket) {
            self.release(p);
        }
    }

    /// Undo a reservation.
    fn release(&mut self, p: Pending) {
        self.unload(p.shard);
        self.clients.release(p.from.client, &self.config.admission);
        self.unconnected = self.unconnected.saturating_sub(1);
        if p.role == Role::Member {
            self.member_gone(&p.stream, p.member.as_ref().map(|(id, _)| *id));
            return;
        }
        if let Some(stream) = self.streams.get_mut(&p.stream) {
            match p.role {
                Role::Publisher => stream.publisher_pending = false,
                Role::Viewer => {
                    let s = &mut stream.shards[usize::from(p.shard.0)];
                    s.pending = s.pending.saturating_sub(1);
                }
                Role::Member => {}
            }
        }
        self.drop_if_unused(&p.stream);
    }

    fn publisher_placed(&mut self, p: Pending, session: SessionId, etag: String) -> Joined {
        let stream = self
            .streams
            .get_mut(&p.stream)
            .expect("a pending join holds its stream");
        let published = p.published.expect("placed publishers carry what they send");
        stream.publisher_pending = false;
        let previous = stream.publisher.replace((session, p.shard));
        let before = stream.published.replace(published.clone());
        let id = stream.id;
        // The relay: exactly the shards with placed viewers, other than the publisher's own.
        // Its AddPublisher carried the mask as it was then; viewers that came or went since
        // are settled now.
        for (i, s) in stream.shards.iter_mut().enumerate() {
            let bit = 1u64 << i;
            let want = s.placed > 0 && i != usize::from(p.shard.0);
            s.relayed = want;
            if want != (p.relay_to & bit != 0) {
                self.commands.push_back(ShardCommand {
                    shard: p.shard,
                    command: Command::RelayInterest {
                        stream: id,
                        shard: ShardId(i as u16),
                        want,
                    },
                });
            }
        }
        self.sessions.insert(
            session,
            Session {
                stream: p.stream.clone(),
                role: Role::Publisher,
                shard: p.shard,
                etag,
                from: p.from,
                connected: false,
                video: None,
                member: None,
            },
        );
        // A replaced publisher on its own shard was swapped out by that shard (which reports
        // it closed); one elsewhere is removed here. Either way it is forgotten now.
        if let Some((old, old_shard)) = previous {
            if old_shard != p.shard {
                self.commands.push_back(ShardCommand {
                    shard: old_shard,
                    command: Command::Remove { session: old },
                });
            }
            self.forget(old);
        }
        // Viewers negotiated the old codec: they cannot follow. Their sessions end so their
        // players reconnect and negotiate the new one (viewers of an unchanged codec stay).
        let codec_change = before
            .and_then(|b| published.changed_from(&b))
            .map(|change| {
                let viewers = self.viewers_of(&p.stream);
                for &(viewer, _) in &viewers {
                    let _ = self.leave(viewer);
                }
                (change, viewers.len())
            });
        Joined {
            session,
            shard: p.shard,
            codec_change,
        }
    }

    fn viewer_placed(
        &mut self,
        p: Pending,
        session: SessionId,
        etag: String,
    ) -> Result<Joined, Refusal> {
        let stream = self
            .streams
            .get_mut(&p.stream)
            .expect("a pending join holds its stream");
        let here = usize::from(p.shard.0);
        let s = &mut stream.shards[here];
        s.pending = s.pending.saturating_sub(1);
        s.placed += 1;
        self.sessions.insert(
            session,
            Session {
                stream: p.stream.clone(),
                role: Role::Viewer,
                shard: p.shard,
                etag,
                from: p.from,
                connected: false,
                video: None,
                member: None,
            },
        );
        // The publisher changed codec while this viewer was built for the old one.
        if let (Some(now), Some(was)) = (&stream.published, &p.published)
            && now.changed_from(was).is_some()
        {
            let _ = self.leave(session);
            return Err(Refusal::CodecChanged);
        }
        if let Some((_, home)) = stream.publisher
            && home != p.shard
            && !stream.shards[here].relayed
        {
            stream.shards[here].relayed = true;
            self.commands.push_back(ShardCommand {
                shard: home,
                command: Command::RelayInterest {
                    stream: stream.id,
                    shard: p.shard,
                    want: true,
                },
            });
        }
        Ok(Joined {
            session,
            shard: p.shard,
            codec_change: None,
        })
    }

    /// A session is over: release its shard and its place in its stream.
    fn forget(&mut self, session: SessionId) {
        let Some(rec) = self.sessions.remove(&session) else {
            return;
        };
        self.unload(rec.shard);
        self.clients
            .release(rec.from.client, &self.config.admission);
        if !rec.connected {
            self.unconnected = self.unconnected.saturating_sub(1);
        }
        if rec.role == Role::Member {
            self.member_gone(&rec.stream, rec.member);
            return;
        }
        let Some(stream) = self.streams.get_mut(&rec.stream) else {
            return;
        };
        match rec.role {
            Role::Publisher => {
                if stream.publisher.map(|(s, _)| s) == Some(session) {
                    stream.publisher = None;
                    // Its shard stopped relaying with it; the next publisher is told afresh.
                    for s in &mut stream.shards {
                        s.relayed = false;
                    }
                }
            }
            Role::Viewer => {
                let s = &mut stream.shards[usize::from(rec.shard.0)];
                s.placed = s.placed.saturating_sub(1);
                if s.placed == 0 && s.relayed {
                    s.relayed = false;
                    if let Some((_, home)) = stream.publisher {
                        self.commands.push_back(ShardCommand {
                            shard: home,
                            command: Command::RelayInterest {
                                stream: stream.id,
                                shard: rec.shard,
                                want: false,
                            },
                        });
                    }
                }
            }
            Role::Member => {}
        }
        self.drop_if_unused(&rec.stream);
    }

    // ---- helpers ----

    fn stream_entry(&mut self, name: &str) -> &mut Stream {
        let shards = usize::from(self.config.shards);
        let next = &mut self.next_stream;
        self.streams.entry(name.to_string()).or_insert_with(|| {
            let id = StreamId(*next);
            *next += 1;
            Stream {
                id,
                publisher: None,
                publisher_pending: false,
                published: None,
                shards: vec![StreamShard::default(); shards],
            }
        })
    }

    fn drop_if_unused(&mut self, name: &str) {
        if self.streams.get(name).is_some_and(Stream::is_unused) {
            self.streams.remove(name);
        }
    }

    fn unload(&mut self, shard: ShardId) {
        if let Some(n) = self.load.get_mut(usize::from(shard.0)) {
            *n = n.saturating_sub(1);
        }
    }
}

impl Stream {
    fn is_unused(&self) -> bool {
        self.publisher.is_none()
            && !self.publisher_pending
            && self.shards.iter().all(|s| s.placed == 0 && s.pending == 0)
    }

    /// Shards other than `except` with placed viewers, one bit each.
    fn viewer_mask(&self, except: ShardId) -> u64 {
        self.shards
            .iter()
            .enumerate()
            .filter(|(i, s)| s.placed > 0 && *i != usize::from(except.0))
            .fold(0, |m, (i, _)| m | 1 << i)
    }

    /// The shard holding most of this stream's viewers, if any has one.
    fn busiest_shard(&self) -> Option<ShardId> {
        self.shards
            .iter()
            .enumerate()
            .filter(|(_, s)| s.placed > 0)
            .max_by_key(|(i, s)| (s.placed, std::cmp::Reverse(*i)))
            .map(|(i, _)| ShardId(i as u16))
    }

    fn view<'a>(&'a self, name: &'a str) -> StreamView<'a> {
        let viewers_per_shard: Vec<u32> = self.shards.iter().map(|s| s.placed).collect();
        StreamView {
            name,
            id: self.id,
            live: self.publisher.is_some(),
            publisher_shard: self.publisher.map(|(_, s)| s),
            viewers: viewers_per_shard.iter().sum(),
            viewers_per_shard,
            published: self.published.as_ref(),
        }
    }
}
