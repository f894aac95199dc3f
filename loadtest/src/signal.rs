//! Signalling: build a peer's `Rtc`, negotiate it with the server, hand it to a worker.
//!
//! Two targets behind one [`Signaller`]: plain RFC 9725 / WHEP over HTTP/1.1 (ureq, no TLS), so
//! any server that speaks them can be loaded, and Janus's VideoRoom over its HTTP API
//! ([`crate::janus`]). Runs on the signalling threads, never on a media worker: building an
//! `Rtc` and the HTTP round trips take milliseconds.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use str0m::change::{SdpAnswer, SdpPendingOffer};
use str0m::format::Codec;
use str0m::media::{Direction, MediaKind, Mid, Pt};
use str0m::{Candidate, Rtc, RtcConfig};

use crate::janus::Janus;
use crate::media::VideoCodec;

/// The signalling the server speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Target {
    /// WHIP to publish, WHEP to play (ringcast, or any server that speaks them).
    Whip,
    /// Janus's VideoRoom plugin over Janus's HTTP API; one room per stream.
    Janus,
}

/// What every session of a run is negotiated with.
#[derive(Debug, Clone, Copy)]
pub struct Negotiation {
    /// Video codec.
    pub codec: VideoCodec,
    /// Whether publishers send (and viewers ask for) video; audio is always there.
    pub video: bool,
}

/// Opens and closes sessions with one server; shared by the signalling threads.
#[derive(Debug)]
pub enum Signaller {
    /// WHIP/WHEP at `base`.
    Whip {
        /// The server's base URL.
        base: String,
        /// Codecs and media.
        negotiation: Negotiation,
    },
    /// Janus VideoRoom.
    Janus(Janus),
}

impl Signaller {
    /// A signaller for `target` at `base`.
    pub fn new(target: Target, base: &str, negotiation: Negotiation, timeout: Duration) -> Self {
        match target {
            Target::Whip => Signaller::Whip {
                base: base.to_string(),
                negotiation,
            },
            Target::Janus => Signaller::Janus(Janus::new(base, negotiation, timeout)),
        }
    }

    /// Open one session; on failure, the cause as it goes into the errors table.
    pub fn join(&self, agent: &ureq::Agent, job: Job) -> Result<Joined, String> {
        match self {
            Signaller::Whip { base, negotiation } => join(agent, base, *negotiation, job),
            Signaller::Janus(janus) => janus.join(agent, job),
        }
    }

    /// Close a session `join` opened; errors are ignored (the server may be gone).
    pub fn leave(&self, agent: &ureq::Agent, location: &str) {
        match self {
            Signaller::Whip { .. } => leave(agent, location),
            Signaller::Janus(janus) => janus.leave(agent, location),
        }
    }

    /// After the last `leave`: release what the run set up on the server (Janus: the rooms
    /// it created) and stop background work (keepalives).
    pub fn finish(&self) {
        if let Signaller::Janus(janus) = self {
            janus.finish();
        }
    }
}

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
    /// The session's URL, for [`Signaller::leave`].
    pub location: String,
}

/// An HTTP client for signalling.
pub fn agent(timeout: Duration) -> ureq::Agent {
    ureq::Agent::config_builder()
        .timeout_global(Some(timeout))
        .http_status_as_error(false)
        .build()
        .new_agent()
}

/// Open one WHIP/WHEP session; on failure, the cause as it goes into the errors table.
fn join(
    agent: &ureq::Agent,
    base: &str,
    negotiation: Negotiation,
    job: Job,
) -> Result<Joined, String> {
    let mut rtc = new_rtc(negotiation.codec, job.local)?;
    let (direction, path) = match &job.role {
        Role::Publisher { stream, .. } => (Direction::SendOnly, format!("/whip/{stream}")),
        Role::Viewer { stream, .. } => (Direction::RecvOnly, format!("/whep/{stream}")),
    };
    let (audio, video, offer, pending) = offer(&mut rtc, direction, negotiation.video)?;

    let posted = Instant::now();
    let url = format!("{}{path}", base.trim_end_matches('/'));
    let mut response = agent
        .post(&url)
        .header("Content-Type", "application/sdp")
        .send(offer.to_sdp_string())
        .map_err(|e| http_cause(&e))?;
    let status = response.status().as_u16();
    if status != 201 && status != 200 {
        return Err(format!("http {status}"));
    }
    let location = response
        .headers()
        .get("location")
        .and_then(|l| l.to_str().ok())
        .map(|l| absolute(base, l))
        .ok_or("http no location")?;
    let body = response
        .body_mut()
        .read_to_string()
        .map_err(|e| http_cause(&e))?;
    let body = reachable_candidates_only(&body, base);
    let answer = SdpAnswer::from_sdp_string(&body).map_err(|_| "sdp".to_string())?;
    rtc.sdp_api()
        .accept_answer(pending, answer)
        .map_err(|_| "sdp".to_string())?;

    let pts = match job.role {
        Role::Publisher { .. } => Some(publisher_pts(&rtc, audio, video, negotiation)?),
        Role::Viewer { .. } => None,
    };
    Ok(Joined {
        job,
        rtc,
        mids: [audio, video],
        pts,
        posted,
        location,
    })
}

/// A str0m peer in RTP mode with Opus and `codec`, and one host candidate at `local`.
pub(crate) fn new_rtc(codec: VideoCodec, local: SocketAddr) -> Result<Rtc, String> {
    let mut config = RtcConfig::new()
        .set_rtp_mode(true)
        .clear_codecs()
        .enable_opus(true, false);
    config = match codec {
        VideoCodec::Vp8 => config.enable_vp8(true),
        VideoCodec::H264 => config.enable_h264(true),
    };
    let mut rtc = config.build(Instant::now());
    let candidate = Candidate::host(local, "udp").map_err(|e| format!("candidate: {e}"))?;
    rtc.add_local_candidate(candidate);
    Ok(rtc)
}

/// An offer with an audio and (when `video`) a video m-line in `direction`: the audio mid,
/// the video mid (the audio one again without video), the offer and its pending state.
pub(crate) fn offer(
    rtc: &mut Rtc,
    direction: Direction,
    video: bool,
) -> Result<(Mid, Mid, str0m::change::SdpOffer, SdpPendingOffer), String> {
    let mut api = rtc.sdp_api();
    let audio = api.add_media(MediaKind::Audio, direction, None, None, None);
    let video = if video {
        api.add_media(MediaKind::Video, direction, None, None, None)
    } else {
        audio
    };
    let (offer, pending) = api.apply().ok_or("sdp: no offer")?;
    Ok((audio, video, offer, pending))
}

/// The payload types a publisher sends with, from the accepted answer.
pub(crate) fn publisher_pts(
    rtc: &Rtc,
    audio: Mid,
    video: Mid,
    negotiation: Negotiation,
) -> Result<[Pt; 2], String> {
    let opus = payload_type(rtc, audio, Codec::Opus).ok_or("sdp: no opus")?;
    if !negotiation.video {
        return Ok([opus, opus]);
    }
    let video =
        payload_type(rtc, video, codec_of(negotiation.codec)).ok_or("sdp: no video codec")?;
    Ok([opus, video])
}

/// DELETE a session; errors are ignored (the server may be gone).
fn leave(agent: &ureq::Agent, location: &str) {
    let _ = agent.delete(location).call();
}

/// Whether the URL's host is a loopback address or `localhost`.
pub fn loopback_url(url: &str) -> bool {
    host_of(url).is_some_and(|h| {
        h == "localhost"
            || h.parse::<std::net::IpAddr>()
                .is_ok_and(|ip| ip.is_loopback())
    })
}

/// The host part of an http URL, without brackets and port.
pub fn host_of(url: &str) -> Option<String> {
    let rest = url.strip_prefix("http://")?;
    let authority = rest.split('/').next()?;
    let host = if let Some(v6) = authority.strip_prefix('[') {
        v6.split(']').next()?
    } else {
        authority.rsplit_once(':').map_or(authority, |(h, _)| h)
    };
    (!host.is_empty()).then(|| host.to_string())
}

fn codec_of(codec: VideoCodec) -> Codec {
    match codec {
        VideoCodec::Vp8 => Codec::Vp8,
        VideoCodec::H264 => Codec::H264,
    }
}

/// The payload type of `codec` that the remote side accepted on `mid`.
fn payload_type(rtc: &Rtc, mid: Mid, codec: Codec) -> Option<Pt> {
    let remote = rtc.media(mid)?.remote_pts().to_vec();
    rtc.codec_config()
        .params()
        .iter()
        .find(|p| p.spec().codec == codec && remote.contains(&p.pt()))
        .map(|p| p.pt())
}

fn absolute(base: &str, location: &str) -> String {
    if location.starts_with("http://") || location.starts_with("https://") {
        location.to_string()
    } else {
        let origin = base
            .strip_prefix("http://")
            .and_then(|r| r.split('/').next())
            .map_or(base.to_string(), |a| format!("http://{a}"));
        format!("{origin}/{}", location.trim_start_matches('/'))
    }
}

/// Keep the ICE candidates the swarm can reach: loopback ones for a loopback target, else
/// those on the target's own address (when it advertises it; otherwise all).
pub(crate) fn reachable_candidates_only(sdp: &str, base: &str) -> String {
    let candidate_ip = |line: &str| {
        line.strip_prefix("a=candidate:")?
            .split_whitespace()
            .nth(4)?
            .parse::<std::net::IpAddr>()
            .ok()
    };
    let keep: Box<dyn Fn(std::net::IpAddr) -> bool> = if loopback_url(base) {
        Box::new(|ip: std::net::IpAddr| ip.is_loopback())
    } else {
        let target = host_of(base).and_then(|h| h.parse::<std::net::IpAddr>().ok());
        let advertised = sdp
            .lines()
            .filter_map(candidate_ip)
            .any(|ip| Some(ip) == target);
        Box::new(move |ip| !advertised || Some(ip) == target)
    };
    let mut out = String::with_capacity(sdp.len());
    for line in sdp.split_inclusive('\n') {
        if candidate_ip(line).is_none_or(&keep) {
            out.push_str(line);
        }
    }
    out
}

pub(crate) fn http_cause(error: &ureq::Error) -> String {
    match error {
        ureq::Error::Timeout(_) => "timeout".into(),
        ureq::Error::Io(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
            "http connection refused".into()
        }
        ureq::Error::Io(e) if e.kind() == std::io::ErrorKind::TimedOut => "timeout".into(),
        ureq::Error::Io(_) => "http io".into(),
        ureq::Error::ConnectionFailed => "http connection refused".into(),
        _ => "http protocol".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        assert!(loopback_url("http://127.0.0.1:8080"));
        assert!(loopback_url("http://localhost:8080/"));
        assert!(loopback_url("http://[::1]:8080"));
        assert!(!loopback_url("http://10.1.2.3:8080"));
        assert_eq!(host_of("http://example.org"), Some("example.org".into()));
        assert_eq!(
            absolute("http://127.0.0.1:8080/", "/whep/a/b"),
            "http://127.0.0.1:8080/whep/a/b"
        );
        assert_eq!(absolute("http://h:1", "http://x/y"), "http://x/y");
    }

    #[test]
    fn keeps_loopback_candidates() {
        let sdp = "v=0\r\na=candidate:1 1 udp 2130706431 127.0.0.1 50000 typ host\r\n\
                   a=candidate:2 1 udp 2130706431 10.0.0.5 50000 typ host\r\na=end\r\n";
        let kept = reachable_candidates_only(sdp, "http://127.0.0.1:8080");
        assert!(kept.contains("127.0.0.1"));
        assert!(!kept.contains("10.0.0.5"));
        assert!(kept.ends_with("a=end\r\n"));
        // A target elsewhere: only its own address, when it advertises it.
        let kept = reachable_candidates_only(sdp, "http://10.0.0.5:8080");
        assert!(!kept.contains("127.0.0.1") && kept.contains("10.0.0.5"));
        let kept = reachable_candidates_only(sdp, "http://10.9.9.9:8080");
        assert!(kept.contains("127.0.0.1") && kept.contains("10.0.0.5"));
    }
}
