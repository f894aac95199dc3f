//! Commands from the control plane, and placing and removing participants.
//!
//! Every command is answered by one [`Reply`] or [`CommandError`]. A participant is placed with
//! everything that indexes it (session, ICE ufrag, stream) and removed with all of it at once,
//! its RTCP BYE and DTLS close flushed first; [`Command::Farewell`] removes them all so.

use std::time::Instant;

use str0m::IceCreds;

use super::rooms::{NewMember, RoomInfo, RoomMember};
use super::routing::{SubRef, SubTrack};
use super::{Output, Participant, Role, Shard, ShardEvent, ShardStats};
use crate::ids::{RoomId, SessionId, ShardId, StreamId, TrackKind};
use crate::layers::LayerInfo;
use crate::peer::{Membership, Peer, PeerEvent, Published};
use crate::rewrite::Rewriter;

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
        published: Box<Published>,
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
        published: Box<Published>,
        /// Where the publisher is (for keyframe requests).
        publisher_shard: Option<ShardId>,
    },
    /// Place a room member: it publishes its stream and receives in its slots.
    AddMember {
        /// Its session.
        session: SessionId,
        /// The room.
        room: RoomId,
        /// The room's name (for its messages).
        room_name: String,
        /// The member as the room knows it.
        member: RoomMember,
        /// The connection, built from its offer.
        peer: Box<Peer>,
        /// What its offer publishes and receives.
        membership: Box<Membership>,
        /// The room's members on other shards.
        others: Vec<RoomMember>,
        /// The shards hosting the room, this one included (bit per shard).
        shards: u64,
    },
    /// A member of a room on another shard joined (`present`) or left; `shards` hosts the room
    /// now. A shard hosting none of the room's members ignores a member it does not know.
    RoomMember {
        /// The room.
        room: RoomId,
        /// The room's name.
        room_name: String,
        /// The member.
        member: RoomMember,
        /// In the room, or gone.
        present: bool,
        /// The shards hosting the room (bit per shard).
        shards: u64,
    },
    /// Report a room's members and their slots. Answered by [`Reply::Room`].
    RoomInfo {
        /// The room.
        room: RoomId,
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
    /// Candidates the client trickled (PATCH): remembered to type the path it connects on.
    Trickle {
        /// The session.
        session: SessionId,
        /// `candidate:...` values.
        candidates: Vec<String>,
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
    /// Pin a viewer to one video layer of its stream, by rid (`None`: back to the layer its
    /// bandwidth estimate chooses). The switch happens on the layer's next keyframe.
    SetLayer {
        /// The viewer's session.
        session: SessionId,
        /// The layer, as the publisher named it.
        rid: Option<String>,
    },
    /// Report the video layers of a stream as this shard sees them, best first. Answered by
    /// [`Reply::Layers`].
    StreamLayers {
        /// The stream.
        stream: StreamId,
    },
    /// Report counters.
    Stats,
    /// The server is stopping: tell every peer its session is over (an RTCP BYE for each
    /// stream it sends and a DTLS close_notify, both queued before the reply) and remove every
    /// participant. Each session is reported closed ([`ShardEvent::SessionClosed`]) like any
    /// other end. Answered by [`Reply::Farewell`].
    Farewell,
}

/// Answers to commands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// Done.
    Done,
    /// Counters.
    Stats(Box<ShardStats>),
    /// A stream's video layers, best first (empty: no video publisher here).
    Layers(Vec<LayerInfo>),
    /// A room (`None`: no member of it here).
    Room(Option<Box<RoomInfo>>),
    /// Every participant was told goodbye and removed.
    Farewell {
        /// How many there were.
        sessions: usize,
    },
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
    /// The stream's publisher sends no layer of that name, or the session is not a viewer.
    #[error("no such layer")]
    UnknownLayer,
}

impl Shard {
    /// Carry out a command; its answer.
    pub(super) fn command(&mut self, now: Instant, cmd: Command) -> Result<Reply, CommandError> {
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
                    self.remove_from_stream(old, now);
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
                entry.layers.reset(&published.layers);
                entry.clear_gops(&mut self.stats.gop_cache_bytes);
                entry.gop_epoch = session.0;
                self.enqueue(key);
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
                        && let Some(section) = peer.section_for(kind)
                    {
                        let rewriter = seeded_rewriter(session, kind.index(), t);
                        tracks[kind.index()] =
                            Some(SubTrack::new(kind, section, Some(stream), rewriter));
                    }
                }
                let kinds = tracks.each_ref().map(Option::is_some);
                let key = self.insert(now, session, *peer, Role::Subscriber { stream, tracks })?;
                let entry = self.streams.entry(stream).or_default();
                for kind in TrackKind::ALL {
                    if !kinds[kind.index()] {
                        continue;
                    }
                    let sub = SubRef {
                        key,
                        track: kind.index() as u8,
                    };
                    match kind {
                        TrackKind::Audio => entry.audio.push(sub),
                        TrackKind::Video => entry.video[0].on.push(sub),
                    }
                }
                if entry.origin.is_none() {
                    entry.origin = publisher_shard;
                }
                if entry.publisher.is_none() {
                    if entry.layers.count() == 0 {
                        entry.layers.reset(&published.layers);
                        entry.clear_gops(&mut self.stats.gop_cache_bytes);
                        entry.gop_epoch = session.0;
                    }
                    for kind in TrackKind::ALL {
                        entry.codecs[kind.index()] = entry.codecs[kind.index()]
                            .or(published.tracks[kind.index()].as_ref().map(|t| t.name));
                    }
                }
                // Its first layer, from what is known now; its keyframe is requested once it is
                // connected (see PeerEvent::Connected): one sent now would be spent before it
                // can see it.
                self.choose_layer(now, key);
                self.enqueue(key);
                Ok(Reply::Done)
            }
            Command::AddMember {
                session,
                room,
                room_name,
                member,
                peer,
                membership,
                others,
                shards,
            } => {
                let new = NewMember {
                    session,
                    room,
                    room_name,
                    me: member,
                    membership: *membership,
                    others,
                    shards,
                };
                let key = self.add_member(now, new, *peer)?;
                self.enqueue(key);
                Ok(Reply::Done)
            }
            Command::RoomMember {
                room,
                room_name,
                member,
                present,
                shards,
            } => {
                self.room_member(now, room, room_name, member, present, shards);
                Ok(Reply::Done)
            }
            Command::RoomInfo { room } => Ok(Reply::Room(self.room_info(room).map(Box::new))),
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
                self.enqueue(key);
                Ok(Reply::Done)
            }
            Command::Trickle {
                session,
                candidates,
            } => {
                let key = *self
                    .sessions
                    .get(&session)
                    .ok_or(CommandError::UnknownSession)?;
                self.participants[key].peer.add_candidates(&candidates);
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
                        let new = entry.relay_to & bit == 0;
                        entry.relay_to |= bit;
                        // A shard that starts getting the stream gets the cached keyframes
                        // first, so its first viewer starts from its own cache too.
                        if new && shard != self.config.id {
                            self.relay_cached(now, stream, shard);
                        }
                    }
                } else if let Some(entry) = self.streams.get_mut(&stream) {
                    entry.relay_to &= !bit;
                    if entry.is_unused() {
                        self.remove_stream(stream);
                    }
                }
                Ok(Reply::Done)
            }
            Command::SetLayer { session, rid } => self.set_layer(now, session, rid.as_deref()),
            Command::StreamLayers { stream } => Ok(Reply::Layers(
                self.streams
                    .get(&stream)
                    .map(|e| e.layers.info(now))
                    .unwrap_or_default(),
            )),
            Command::Stats => Ok(Reply::Stats(Box::new(self.stats()))),
            Command::Farewell => Ok(Reply::Farewell {
                sessions: self.farewell(now),
            }),
        }
    }

    /// Pin a viewer to the layer named `rid`, or unpin it (`None`).
    fn set_layer(
        &mut self,
        now: Instant,
        session: SessionId,
        rid: Option<&str>,
    ) -> Result<Reply, CommandError> {
        let key = *self
            .sessions
            .get(&session)
            .ok_or(CommandError::UnknownSession)?;
        let Role::Subscriber { stream, tracks } = &mut self.participants[key].role else {
            return Err(CommandError::UnknownLayer);
        };
        let (Some(entry), Some(track)) = (
            self.streams.get(stream),
            tracks[TrackKind::Video.index()].as_mut(),
        ) else {
            return Err(CommandError::UnknownLayer);
        };
        track.pinned = match rid {
            Some(rid) => Some(
                entry
                    .layers
                    .index_of(rid)
                    .ok_or(CommandError::UnknownLayer)?,
            ),
            None => None,
        };
        self.choose_layer(now, key);
        Ok(Reply::Done)
    }

    /// Remove every participant, each peer's close flushed; how many there were.
    fn farewell(&mut self, now: Instant) -> usize {
        // Every timer goes with them: drop the heap at once rather than entry by entry.
        self.timers.clear();
        let keys: Vec<usize> = self.participants.iter().map(|(key, _)| key).collect();
        for &key in &keys {
            let session = self.participants[key].session;
            self.remove(key, now);
            self.out
                .push_back(Output::Event(ShardEvent::SessionClosed { session }));
        }
        keys.len()
    }

    /// Place a participant: indexed by session and ufrag, its connect deadline set.
    pub(super) fn insert(
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
        if matches!(role, Role::Publisher { .. }) {
            self.stats.publishers += 1;
        }
        let key = self.participants.insert(Participant {
            session,
            peer,
            addrs: Vec::new(),
            queued: false,
            connect_by: Some(now + self.config.connect_timeout),
            replay_at: None,
            role,
        });
        self.sessions.insert(session, key);
        self.by_ufrag.insert(ufrag, key);
        Ok(key)
    }

    /// Take a participant out of its stream's lists (a room member out of its room first).
    pub(super) fn remove_from_stream(&mut self, key: usize, now: Instant) {
        let Some(p) = self.participants.get(key) else {
            return;
        };
        let stream = match &p.role {
            Role::Publisher { stream } => *stream,
            Role::Subscriber { .. } => {
                self.unlist_all(key);
                return;
            }
            Role::Member(m) => {
                let stream = m.stream;
                self.leave_room(now, key);
                self.unlist_all(key);
                stream
            }
        };
        let Some(entry) = self.streams.get_mut(&stream) else {
            return;
        };
        if entry.publisher == Some(key) {
            entry.publisher = None;
            // The next publisher, wherever it lands, is told where viewers are.
            entry.relay_to = 0;
        }
        if entry.is_unused() {
            self.remove_stream(stream);
        }
    }

    /// Take every subscribing track of participant `key` off the lists it is on.
    pub(super) fn unlist_all(&mut self, key: usize) {
        let count = match self.participants.get(key).map(|p| &p.role) {
            Some(Role::Subscriber { tracks, .. }) => tracks.len(),
            Some(Role::Member(m)) => m.slots.len(),
            _ => 0,
        };
        for track in 0..count {
            self.unlist(SubRef {
                key,
                track: track as u8,
            });
        }
    }

    /// Take one subscribing track off the lists of the stream it shows and of the one it moves
    /// to; a stream left unused goes.
    pub(super) fn unlist(&mut self, sub: SubRef) {
        let Some(track) = self
            .participants
            .get_mut(sub.key)
            .and_then(|p| super::routing::sub_track(&mut p.role, sub.track))
        else {
            return;
        };
        let (stream, next) = (track.stream.take(), track.next.take());
        let (layer, target) = (track.layer, track.target.take());
        track.replay = None;
        for (s, current) in [(stream, true), (next, false)] {
            let Some(s) = s else { continue };
            let Some(entry) = self.streams.get_mut(&s) else {
                continue;
            };
            match track.kind {
                TrackKind::Audio => super::routing::unlist(&mut entry.audio, sub),
                TrackKind::Video => {
                    if current {
                        super::routing::unlist(&mut entry.video[usize::from(layer)].on, sub);
                    }
                    // Switching within its stream (a viewer's layer) or to another (a slot's
                    // source): listed as switching on the target layer of one of them.
                    if let Some(t) = target {
                        super::routing::unlist(&mut entry.video[usize::from(t)].switching, sub);
                    }
                }
            }
            if entry.is_unused() {
                super::routing::remove_stream(
                    &mut self.streams,
                    &mut self.stats.gop_cache_bytes,
                    s,
                );
            }
        }
    }

    /// Free everything a participant holds, at once. Its DTLS close goes out first.
    pub(super) fn remove(&mut self, key: usize, now: Instant) {
        if !self.participants.contains(key) {
            return;
        }
        self.remove_from_stream(key, now);
        let mut p = self.participants.remove(key);
        if matches!(p.role, Role::Publisher { .. }) {
            self.stats.publishers -= 1;
        }
        p.peer.close();
        // Flush the close_notify; nothing else of it matters now.
        loop {
            match p.peer.poll(&mut self.buffers) {
                PeerEvent::Transmit(datagram) => self.transmit(datagram),
                PeerEvent::Timeout(_) | PeerEvent::Disconnected => break,
                _ => {}
            }
        }
        self.sessions.remove(&p.session);
        self.by_ufrag.remove(p.peer.ufrag());
        for a in &p.addrs {
            if self.by_addr.get(a) == Some(&key) {
                self.by_addr.remove(a);
            }
        }
        // Its timer entry is skipped from now on (and gone once nobody waits).
        self.timers.cancel(key);
    }
}

/// A subscriber track's rewriter, its first sequence number and timestamp drawn from its
/// session and track index (RFC 3550 wants them random; a session id is).
pub(super) fn seeded_rewriter(
    session: SessionId,
    track: usize,
    codec: &crate::peer::TrackCodec,
) -> Rewriter {
    let seed = session.0.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> ((track % 4) * 16);
    Rewriter::new(
        codec.params.spec().clock_rate.get(),
        (seed as u16) & 0x7fff,
        (seed >> 32) as u32,
    )
}
