//! Negotiating a session's str0m peer, the same for WHIP/WHEP and Janus: what every session is
//! negotiated with, the `Rtc` and its offer, the server's SDP trimmed to the candidates the swarm
//! can reach, and the payload types the answer settled.

use std::net::SocketAddr;
use std::time::Instant;

use str0m::change::{SdpOffer, SdpPendingOffer};
use str0m::format::Codec;
use str0m::media::{Direction, MediaKind, Mid, Pt};
use str0m::{Candidate, Rtc, RtcConfig};

use crate::http::{host_of, loopback_url};
use crate::media::VideoCodec;

/// What every session of a run is negotiated with.
#[derive(Debug, Clone, Copy)]
pub struct Negotiation {
    /// Video codec.
    pub codec: VideoCodec,
    /// Whether publishers send (and viewers ask for) video; audio is always there.
    pub video: bool,
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
) -> Result<(Mid, Mid, SdpOffer, SdpPendingOffer), String> {
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

#[cfg(test)]
mod tests {
    use super::*;

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
