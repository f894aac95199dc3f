//! Negotiating a session's str0m peer, the same for WHIP/WHEP and Janus: what every session is
//! negotiated with, the `Rtc` and its offer, the server's SDP trimmed to the candidates the swarm
//! can reach, and the payload types the answer settled.

use std::net::SocketAddr;
use std::time::Instant;

use str0m::change::{SdpOffer, SdpPendingOffer};
use str0m::format::Codec;
use str0m::media::{Direction, MediaKind, Mid, Pt, Simulcast, SimulcastLayer};
use str0m::{Candidate, Rtc, RtcConfig};

use crate::http::{host_of, loopback_url};
use crate::media::VideoCodec;
use crate::members::CHANNEL_LABEL;
use crate::session::Slot;

/// What every session of a run is negotiated with.
#[derive(Debug, Clone)]
pub struct Negotiation {
    /// Video codec.
    pub codec: VideoCodec,
    /// Whether publishers send (and viewers ask for) video; audio is always there.
    pub video: bool,
    /// The rids of the simulcast layers publishers send, best first (empty: no simulcast).
    pub layers: Vec<String>,
    /// Group call participants: recvonly video and audio m-lines (slots) in their offers.
    pub slots: SlotCounts,
}

/// How many receive slots of each kind a group call participant asks for.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SlotCounts {
    /// Video slots.
    pub video: usize,
    /// Audio slots.
    pub audio: usize,
}

/// A group call participant's offer (ringcast rooms): a sendonly audio and video m-line that
/// publish, `slots.video` recvonly video and `slots.audio` recvonly audio m-lines (its slots, in
/// that order) and the `ringcast` data channel. Returns the audio and video mids, the slots,
/// the offer and its pending state.
pub(crate) fn member_offer(
    rtc: &mut Rtc,
    slots: SlotCounts,
) -> Result<(Mid, Mid, Vec<Slot>, SdpOffer, SdpPendingOffer), String> {
    let mut api = rtc.sdp_api();
    let audio = api.add_media(MediaKind::Audio, Direction::SendOnly, None, None, None);
    let video = api.add_media(MediaKind::Video, Direction::SendOnly, None, None, None);
    let kinds = std::iter::repeat_n(MediaKind::Video, slots.video)
        .chain(std::iter::repeat_n(MediaKind::Audio, slots.audio));
    let slots = kinds
        .map(|kind| Slot {
            mid: api.add_media(kind, Direction::RecvOnly, None, None, None),
            kind,
        })
        .collect();
    api.add_channel(CHANNEL_LABEL.into());
    let (offer, pending) = api.apply().ok_or("sdp: no offer")?;
    Ok((audio, video, slots, offer, pending))
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
/// the video mid (the audio one again without video), the offer and its pending state. With
/// `simulcast` rids, the video m-line sends them as simulcast layers (RFC 8853: `a=rid:<rid>
/// send` each, `a=simulcast:send <rid>;<rid>…`, one SSRC per layer), as a browser offers them.
pub(crate) fn offer(
    rtc: &mut Rtc,
    direction: Direction,
    video: bool,
    simulcast: &[String],
) -> Result<(Mid, Mid, SdpOffer, SdpPendingOffer), String> {
    let mut api = rtc.sdp_api();
    let audio = api.add_media(MediaKind::Audio, direction, None, None, None);
    let video = if video {
        let layers = (!simulcast.is_empty()).then(|| {
            let mut s = Simulcast::new();
            for rid in simulcast {
                s.add_send_layer(SimulcastLayer::new(rid));
            }
            s
        });
        api.add_media(MediaKind::Video, direction, None, None, layers)
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
    negotiation: &Negotiation,
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

    #[test]
    fn a_simulcast_offer_has_the_shape_browsers_send() {
        let local = "127.0.0.1:40000".parse().unwrap();
        let rids: Vec<String> = ["0", "1", "2"].map(String::from).to_vec();
        let mut rtc = new_rtc(VideoCodec::Vp8, local).unwrap();
        let (_, video, simulcast, _) = offer(&mut rtc, Direction::SendOnly, true, &rids).unwrap();
        let sdp = simulcast.to_sdp_string();
        let section = sdp.split("m=video").nth(1).expect("a video section");
        for rid in &rids {
            assert!(section.contains(&format!("a=rid:{rid} send")), "{sdp}");
        }
        assert!(section.contains("a=simulcast:send 0;1;2"), "{sdp}");
        assert!(
            section.contains("urn:ietf:params:rtp-hdrext:sdes:rtp-stream-id"),
            "{sdp}"
        );
        assert_eq!(sdp.matches("m=video").count(), 1);
        // One SSRC per layer (str0m adds an RTX one to each).
        let ssrcs: std::collections::HashSet<&str> = section
            .lines()
            .filter_map(|l| l.strip_prefix("a=ssrc:")?.split_whitespace().next())
            .collect();
        assert_eq!(ssrcs.len(), 6, "{sdp}");
        // The server's scanner reads the layers from it.
        let summary = ringcast_core::sdp::OfferSummary::scan(&sdp).unwrap();
        let scanned = summary
            .media
            .iter()
            .find(|m| m.mid.as_deref() == Some(&*video.to_string()))
            .unwrap();
        assert_eq!(scanned.send_rids, rids);
        // Without layers: no simulcast at all, as before.
        let mut rtc = new_rtc(VideoCodec::Vp8, local).unwrap();
        let (_, _, plain, _) = offer(&mut rtc, Direction::SendOnly, true, &[]).unwrap();
        let plain = plain.to_sdp_string();
        assert!(!plain.contains("a=simulcast") && !plain.contains("a=rid:"));
    }
}
