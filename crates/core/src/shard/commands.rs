//! Commands from the control plane, and placing and removing participants.
//!
//! Every command is answered by one [`Reply`] or [`CommandError`]. A participant is placed with
//! everything that indexes it (session, ICE ufrag, stream) and removed with all of it at once,
//! its RTCP BYE and DTLS close flushed first; [`Command::Farewell`] removes them all so.

use std::time::Instant;

use str0m::IceCreds;

use super::routing::SubTrack;
use super::{Output, Participant, Role, Shard, ShardEvent, ShardStats};
use crate::ids::{SessionId, ShardId, StreamId, TrackKind};
use crate::layers::LayerInfo;
use crate::peer::{Peer, PeerEvent, Published};
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
                entry.layers.reset(&published.layers);
                entry.gops = Default::default();
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
                        && peer.receives(kind)
                    {
                        let seed =
                            session.0.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> (kind.index() * 16);
                        let rewriter = Rewriter::new(
                            t.params.spec().clock_rate.get(),
                            (seed as u16) & 0x7fff,
                            (seed >> 32) as u32,
                        );
                        tracks[kind.index()] = Some(SubTrack::new(kind, rewriter));
                    }
                }
                let video = tracks[TrackKind::Video.index()].is_some();
                let key = self.insert(now, session, *peer, Role::Subscriber { stream, tracks })?;
                let entry = self.streams.entry(stream).or_default();
                entry.subscribers.push(key);
                if video {
                    entry.video[0].on.push(key);
                }
                if entry.origin.is_none() {
                    entry.origin = publisher_shard;
                }
                if entry.publisher.is_none() {
                    if entry.layers.count() == 0 {
                        entry.layers.reset(&published.layers);
                        entry.gops = Default::default();
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
                        self.streams.remove(&stream);
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
        let keys: Vec<usize> = self
            .participants
            .iter_mut()
            .map(|(key, p)| {
                p.scheduled = None;
                key
            })
            .collect();
        for &key in &keys {
            let session = self.participants[key].session;
            self.remove(key, now);
            self.out
                .push_back(Output::Event(ShardEvent::SessionClosed { session }));
        }
        keys.len()
    }

    /// Place a participant: indexed by session and ufrag, its connect deadline set.
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
            queued: false,
            connect_by: Some(now + self.config.connect_timeout),
            replay_at: None,
            role,
        });
        self.sessions.insert(session, key);
        self.by_ufrag.insert(ufrag, key);
        Ok(key)
    }

    /// Take a participant out of its stream's lists.
    pub(super) fn remove_from_stream(&mut self, key: usize) {
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
        if let Role::Subscriber { tracks, .. } = &p.role
            && let Some(track) = &tracks[TrackKind::Video.index()]
        {
            entry.unlist_video(key, track);
        }
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
    pub(super) fn remove(&mut self, key: usize, now: Instant) {
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
            self.unschedule(key, p.session);
        }
    }
}
