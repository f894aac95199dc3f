//! Identifiers handed between the control plane and the shards.

use std::fmt;

/// One WHIP/WHEP resource (a participant connection), minted by the control plane. Unique in the
/// process for its lifetime; never reused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SessionId(pub u64);

/// A published stream (what a WHIP publisher feeds and WHEP viewers play), interned by the
/// control plane from its name. Stays the same across publisher restarts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct StreamId(pub u64);

/// A room (a group call), interned by the control plane from its name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RoomId(pub u64);

/// Index of a shard (one per core).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ShardId(pub u16);

/// Audio or video; each stream has at most one track of each kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TrackKind {
    /// An audio track.
    Audio,
    /// A video track.
    Video,
}

impl TrackKind {
    /// Index into per-kind arrays.
    pub fn index(self) -> usize {
        match self {
            TrackKind::Audio => 0,
            TrackKind::Video => 1,
        }
    }

    /// Both kinds, audio first.
    pub const ALL: [TrackKind; 2] = [TrackKind::Audio, TrackKind::Video];
}

impl fmt::Display for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016x}", self.0)
    }
}

impl SessionId {
    /// How logs name the session: its first four hex digits, enough to follow one session
    /// through a log. The whole id is in the session's URL, the only thing guarding the
    /// session of a stream without tokens, so it is never logged.
    pub fn short(self) -> ShortSessionId {
        ShortSessionId(self)
    }
}

/// A session id as logs show it (see [`SessionId::short`]); `Debug` shows the same.
#[derive(Clone, Copy)]
pub struct ShortSessionId(SessionId);

impl fmt::Debug for ShortSessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl fmt::Display for ShortSessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:04x}", self.0.0 >> 48)
    }
}

impl fmt::Display for TrackKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            TrackKind::Audio => "audio",
            TrackKind::Video => "video",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn logs_show_four_hex_digits_of_a_session() {
        let id = SessionId(0x8123_4567_89ab_cdef);
        assert_eq!(id.to_string(), "8123456789abcdef");
        assert_eq!(id.short().to_string(), "8123");
    }
}
