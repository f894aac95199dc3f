//! The control plane's only shared state: which streams exist, who publishes them, which
//! sessions live on which shard. Behind one `parking_lot` mutex, never touched by the data
//! path, held only for map operations (never across an await).

use std::collections::HashMap;

use ringcast_core::{Published, SessionId, ShardId, StreamId};

/// Publisher or viewer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// WHIP.
    Publisher,
    /// WHEP.
    Viewer,
}

/// One session (WHIP or WHEP resource).
#[derive(Debug, Clone)]
pub struct SessionRec {
    /// The stream's name.
    pub stream: String,
    /// Publisher or viewer.
    pub role: Role,
    /// Where it lives.
    pub shard: ShardId,
    /// Current entity tag (changes on ICE restart).
    pub etag: String,
}

/// One stream.
#[derive(Debug)]
pub struct StreamRec {
    /// Interned id.
    pub id: StreamId,
    /// The live publisher, once placed, with its shard.
    pub publisher: Option<(SessionId, ShardId)>,
    /// A publisher is being set up (reserves the stream against a second one).
    pub publisher_pending: bool,
    /// What the (last) publisher sends.
    pub published: Option<Published>,
    /// Viewers per shard.
    pub viewers: Vec<u32>,
}

impl StreamRec {
    /// Total viewers.
    pub fn viewer_count(&self) -> u32 {
        self.viewers.iter().sum()
    }

    /// Bit mask of shards with viewers, except `except`.
    pub fn viewer_mask(&self, except: ShardId) -> u64 {
        self.viewers
            .iter()
            .enumerate()
            .filter(|(i, n)| **n > 0 && *i != usize::from(except.0))
            .fold(0, |m, (i, _)| m | (1 << i))
    }

    fn is_unused(&self) -> bool {
        self.publisher.is_none() && !self.publisher_pending && self.viewer_count() == 0
    }
}

/// Streams and sessions.
#[derive(Debug)]
pub struct Registry {
    streams: HashMap<String, StreamRec>,
    sessions: HashMap<SessionId, SessionRec>,
    load: Vec<usize>,
    next_stream: u64,
}

impl Registry {
    /// Empty, for `shards` shards.
    pub fn new(shards: usize) -> Self {
        Registry {
            streams: HashMap::new(),
            sessions: HashMap::new(),
            load: vec![0; shards],
            next_stream: 1,
        }
    }

    /// A stream by name.
    pub fn stream(&self, name: &str) -> Option<&StreamRec> {
        self.streams.get(name)
    }

    /// All streams.
    pub fn streams(&self) -> impl Iterator<Item = (&String, &StreamRec)> {
        self.streams.iter()
    }

    /// A session.
    pub fn session(&self, id: SessionId) -> Option<&SessionRec> {
        self.sessions.get(&id)
    }

    /// Participants per shard (placed or being placed).
    pub fn load(&self) -> &[usize] {
        &self.load
    }

    /// Reserve a stream for a new publisher. `None` if it already has one.
    pub fn reserve_publisher(&mut self, name: &str) -> Option<StreamId> {
        let shards = self.load.len();
        let next = &mut self.next_stream;
        let rec = self.streams.entry(name.to_string()).or_insert_with(|| {
            let id = StreamId(*next);
            *next += 1;
            StreamRec {
                id,
                publisher: None,
                publisher_pending: false,
                published: None,
                viewers: vec![0; shards],
            }
        });
        if rec.publisher.is_some() || rec.publisher_pending {
            return None;
        }
        rec.publisher_pending = true;
        Some(rec.id)
    }

    /// The least loaded shard below `limit`, reserved for one more participant.
    pub fn place(&mut self, limit: usize) -> Option<ShardId> {
        let (i, n) = self.load.iter().enumerate().min_by_key(|(_, n)| **n)?;
        if *n >= limit {
            return None;
        }
        self.load[i] += 1;
        Some(ShardId(i as u16))
    }

    /// Give back a placement that did not happen.
    pub fn unplace(&mut self, shard: ShardId) {
        if let Some(n) = self.load.get_mut(usize::from(shard.0)) {
            *n = n.saturating_sub(1);
        }
    }

    /// A reservation failed: release it.
    pub fn cancel_publisher(&mut self, name: &str) {
        if let Some(rec) = self.streams.get_mut(name) {
            rec.publisher_pending = false;
            if rec.is_unused() {
                self.streams.remove(name);
            }
        }
    }

    /// The publisher is placed.
    pub fn publisher_placed(
        &mut self,
        name: &str,
        session: SessionId,
        shard: ShardId,
        published: Published,
        etag: String,
    ) {
        if let Some(rec) = self.streams.get_mut(name) {
            rec.publisher_pending = false;
            rec.publisher = Some((session, shard));
            rec.published = Some(published);
        }
        self.sessions.insert(
            session,
            SessionRec {
                stream: name.to_string(),
                role: Role::Publisher,
                shard,
                etag,
            },
        );
    }

    /// A viewer is placed. Returns the publisher's shard if this is the first viewer on a
    /// shard other than the publisher's (which must now relay to it).
    pub fn viewer_placed(
        &mut self,
        name: &str,
        session: SessionId,
        shard: ShardId,
        etag: String,
    ) -> Option<ShardId> {
        self.sessions.insert(
            session,
            SessionRec {
                stream: name.to_string(),
                role: Role::Viewer,
                shard,
                etag,
            },
        );
        let rec = self.streams.get_mut(name)?;
        let slot = rec.viewers.get_mut(usize::from(shard.0))?;
        *slot += 1;
        match rec.publisher {
            Some((_, ps)) if ps != shard && *slot == 1 => Some(ps),
            _ => None,
        }
    }

    /// The viewers of a stream, with their shards.
    pub fn viewers_of(&self, name: &str) -> Vec<(SessionId, ShardId)> {
        self.sessions
            .iter()
            .filter(|(_, s)| s.stream == name && s.role == Role::Viewer)
            .map(|(id, s)| (*id, s.shard))
            .collect()
    }

    /// Set a session's entity tag.
    pub fn set_etag(&mut self, session: SessionId, etag: String) {
        if let Some(s) = self.sessions.get_mut(&session) {
            s.etag = etag;
        }
    }

    /// A session is gone. Returns what the caller must tell shards: for a viewer that was the
    /// last on its shard, the publisher's shard that can stop relaying there.
    pub fn session_gone(&mut self, session: SessionId) -> Option<Gone> {
        let rec = self.sessions.remove(&session)?;
        self.unplace(rec.shard);
        let stream = self.streams.get_mut(&rec.stream)?;
        let mut stop_relay = None;
        match rec.role {
            Role::Publisher => {
                if stream.publisher.map(|p| p.0) == Some(session) {
                    stream.publisher = None;
                }
            }
            Role::Viewer => {
                if let Some(n) = stream.viewers.get_mut(usize::from(rec.shard.0)) {
                    *n = n.saturating_sub(1);
                    if *n == 0
                        && let Some((_, ps)) = stream.publisher
                        && ps != rec.shard
                    {
                        stop_relay = Some(ps);
                    }
                }
            }
        }
        let gone = Gone {
            stream: stream.id,
            viewer_shard: rec.shard,
            stop_relay_from: stop_relay,
        };
        if stream.is_unused() {
            self.streams.remove(&rec.stream);
        }
        Some(gone)
    }
}

/// What followed from a session's end.
#[derive(Debug, Clone, Copy)]
pub struct Gone {
    /// Its stream.
    pub stream: StreamId,
    /// The shard it was on.
    pub viewer_shard: ShardId,
    /// Publisher's shard that no longer needs to relay to `viewer_shard`.
    pub stop_relay_from: Option<ShardId>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_publisher_per_stream_and_relay_bookkeeping() {
        let mut r = Registry::new(2);
        let id = r.reserve_publisher("a").unwrap();
        assert!(r.reserve_publisher("a").is_none());
        let s0 = r.place(10).unwrap();
        r.publisher_placed("a", SessionId(1), s0, Published::default(), "e".into());
        assert!(r.reserve_publisher("a").is_none());
        let s1 = r.place(10).unwrap();
        assert_ne!(s0, s1);
        assert_eq!(r.viewer_placed("a", SessionId(2), s1, "e".into()), Some(s0));
        assert_eq!(r.stream("a").unwrap().viewer_mask(s0), 1 << s1.0);
        let g = r.session_gone(SessionId(2)).unwrap();
        assert_eq!(g.stream, id);
        assert_eq!(g.stop_relay_from, Some(s0));
        r.session_gone(SessionId(1)).unwrap();
        assert!(r.stream("a").is_none());
        assert_eq!(r.load(), &[0, 0]);
    }

    #[test]
    fn placement_respects_limit() {
        let mut r = Registry::new(2);
        assert!(r.place(1).is_some());
        assert!(r.place(1).is_some());
        assert!(r.place(1).is_none());
        r.unplace(ShardId(0));
        assert_eq!(r.place(1), Some(ShardId(0)));
    }
}
