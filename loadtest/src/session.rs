//! A session of the swarm, the same for WHIP/WHEP and Janus: the job to open it, what it is,
//! and what the server accepted (handed from a signalling thread to a media worker).

use std::net::SocketAddr;
use std::time::Instant;

use str0m::Rtc;
use str0m::media::{MediaKind, Mid, Pt};

/// What a session is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Role {
    /// Sends media over WHIP.
    Publisher {
        /// Stream name.
        stream: String,
        /// Publisher id carried in every probe.
        id: u32,
    },
    /// Receives over WHEP.
    Viewer {
        /// Stream name.
        stream: String,
        /// Checks payloads and latency (else counts headers only).
        full: bool,
        /// The simulcast layer (rid) it asks for with the WHEP layer extension; None: the
        /// server's choice.
        layer: Option<String>,
    },
    /// A participant of a group call (the `rooms` scenario): publishes audio and video and
    /// receives on slots.
    Member(Member),
}

/// Who a group call participant is and what one of its sessions does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    /// The room's name.
    pub room: String,
    /// The room's number in the run (0-based).
    pub room_index: usize,
    /// Its place in the room (0-based, in joining order).
    pub position: usize,
    /// Participants per room.
    pub of: usize,
    /// Its number in the run, carried in every probe it publishes (unique, from 1).
    pub id: u32,
    /// Checks payloads and latency on every slot (else counts headers once it has a picture).
    pub full: bool,
    /// What this session does.
    pub part: Part,
}

/// What a participant's session does: on ringcast one peer connection does both; Janus's
/// VideoRoom needs one to publish and one to subscribe.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Part {
    /// Publishes and receives (ringcast rooms: one peer connection with slots).
    Both,
    /// Publishes only (Janus publisher handle).
    Publish,
    /// Receives only (Janus subscriber handle, its m-lines as slots).
    Subscribe,
}

impl Part {
    /// Whether the session sends media.
    pub fn publishes(self) -> bool {
        matches!(self, Part::Both | Part::Publish)
    }

    /// Whether the session receives media on slots.
    pub fn receives(self) -> bool {
        matches!(self, Part::Both | Part::Subscribe)
    }
}

/// A receive slot of a participant's session: a recvonly m-line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Slot {
    /// Its media id.
    pub mid: Mid,
    /// Audio or video.
    pub kind: MediaKind,
}

/// One session to open.
#[derive(Debug, Clone)]
pub struct Job {
    /// What it is.
    pub role: Role,
    /// The worker thread that will own it.
    pub worker: usize,
    /// Its local address (unique per session).
    pub local: SocketAddr,
}

/// A session the server accepted: its `Rtc` with the answer applied.
#[derive(Debug)]
pub struct Joined {
    /// The job it came from.
    pub job: Job,
    /// The peer connection.
    pub rtc: Rtc,
    /// Audio and video media ids (audio-only runs: the audio one twice).
    pub mids: [Mid; 2],
    /// Payload types to send with (publishers): audio, video (audio-only runs: audio twice).
    pub pts: Option<[Pt; 2]>,
    /// When signalling began (WHIP/WHEP: the offer's POST; Janus: the session's creation).
    pub posted: Instant,
    /// The session's URL, for [`crate::signal::Signaller::leave`].
    pub location: String,
    /// Its receive slots (group call participants; empty otherwise).
    pub slots: Vec<Slot>,
    /// The server's id of the participant (ringcast rooms: `X-Ringcast-Participant`).
    pub participant: Option<String>,
}
