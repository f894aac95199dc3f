//! A session of the swarm, the same for WHIP/WHEP and Janus: the job to open it, what it is,
//! and what the server accepted (handed from a signalling thread to a media worker).

use std::net::SocketAddr;
use std::time::Instant;

use str0m::Rtc;
use str0m::media::{Mid, Pt};

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
}
