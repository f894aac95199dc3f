//! What we need to know about an SDP offer before str0m sees it: which media sections it has,
//! their direction, and which codec a publisher will send (the first one it lists that we can
//! forward). Plus the `application/trickle-ice-sdpfrag` bodies of PATCH requests.
//!
//! This is a tolerant line scanner, not a validator: str0m parses the offer for real afterwards
//! and its error is what a client sees for a malformed offer.

use std::fmt;

use crate::ids::TrackKind;

/// A codec we forward, as offered by a publisher.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OfferedCodec {
    /// Payload type in the offer.
    pub pt: u8,
    /// RTX payload type for it (`apt=`), if offered.
    pub rtx: Option<u8>,
    /// Which codec.
    pub name: CodecName,
    /// Clock rate.
    pub clock_rate: u32,
    /// Audio channels.
    pub channels: Option<u8>,
    /// The `a=fmtp` parameters, verbatim (may be empty).
    pub fmtp: String,
}

/// The codecs ringcast forwards.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CodecName {
    /// Opus audio.
    Opus,
    /// H.264 with packetization-mode 1.
    H264,
    /// VP8.
    Vp8,
    /// VP9.
    Vp9,
    /// AV1.
    Av1,
}

impl CodecName {
    fn parse(name: &str) -> Option<CodecName> {
        Some(match name.to_ascii_lowercase().as_str() {
            "opus" => CodecName::Opus,
            "h264" => CodecName::H264,
            "vp8" => CodecName::Vp8,
            "vp9" => CodecName::Vp9,
            "av1" | "av1x" => CodecName::Av1,
            _ => return None,
        })
    }

    /// Audio or video.
    pub fn kind(self) -> TrackKind {
        match self {
            CodecName::Opus => TrackKind::Audio,
            _ => TrackKind::Video,
        }
    }
}

impl fmt::Display for CodecName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            CodecName::Opus => "opus",
            CodecName::H264 => "H264",
            CodecName::Vp8 => "VP8",
            CodecName::Vp9 => "VP9",
            CodecName::Av1 => "AV1",
        })
    }
}

impl fmt::Display for OfferedCodec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.name, self.clock_rate)?;
        if !self.fmtp.is_empty() {
            write!(f, " ({})", self.fmtp)?;
        }
        Ok(())
    }
}

/// Direction of a media section, from the offerer's point of view.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// `a=sendrecv` (the default).
    SendRecv,
    /// `a=sendonly`.
    SendOnly,
    /// `a=recvonly`.
    RecvOnly,
    /// `a=inactive`.
    Inactive,
}

impl Direction {
    /// The offerer sends media on this section.
    pub fn sends(self) -> bool {
        matches!(self, Direction::SendRecv | Direction::SendOnly)
    }
    /// The offerer receives media on this section.
    pub fn receives(self) -> bool {
        matches!(self, Direction::SendRecv | Direction::RecvOnly)
    }
}

/// One `m=` section of an offer.
#[derive(Debug, Clone)]
pub struct MediaSection {
    /// Audio or video; `None` for anything else (application, text, …).
    pub kind: Option<TrackKind>,
    /// Its direction.
    pub direction: Direction,
    /// The port is 0 (rejected/disabled section).
    pub disabled: bool,
    /// Codecs we forward, in the offerer's order of preference.
    pub codecs: Vec<OfferedCodec>,
    /// Codec names offered that we do not forward (for error messages).
    pub other_codecs: Vec<String>,
    /// `a=mid`.
    pub mid: Option<String>,
}

/// What we read from an offer.
#[derive(Debug, Clone, Default)]
pub struct OfferSummary {
    /// Media sections in order.
    pub media: Vec<MediaSection>,
    /// Number of `a=candidate` lines (0 for OBS and FFmpeg).
    pub candidates: usize,
}

/// Why an offer could not even be scanned.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SdpError {
    /// The body is empty.
    #[error("empty SDP offer")]
    Empty,
    /// The body is not SDP.
    #[error("not an SDP offer: {0}")]
    NotSdp(&'static str),
}

impl OfferSummary {
    /// Scan an offer.
    pub fn scan(sdp: &str) -> Result<OfferSummary, SdpError> {
        if sdp.trim().is_empty() {
            return Err(SdpError::Empty);
        }
        if !sdp.trim_start().starts_with("v=0") {
            return Err(SdpError::NotSdp("it must start with \"v=0\""));
        }
        let mut summary = OfferSummary::default();
        let mut session_dir = Direction::SendRecv;
        // Per-section raw state, turned into MediaSection when the section ends.
        let mut cur: Option<RawSection> = None;
        for line in sdp.lines() {
            let line = line.trim_end_matches('\r');
            if let Some(rest) = line.strip_prefix("m=") {
                if let Some(raw) = cur.take() {
                    summary.media.push(raw.finish());
                }
                cur = Some(RawSection::new(rest, session_dir));
                continue;
            }
            let Some(attr) = line.strip_prefix("a=") else {
                continue;
            };
            let (name, value) = attr.split_once(':').unwrap_or((attr, ""));
            if name == "candidate" {
                summary.candidates += 1;
            }
            let dir = match name {
                "sendrecv" => Some(Direction::SendRecv),
                "sendonly" => Some(Direction::SendOnly),
                "recvonly" => Some(Direction::RecvOnly),
                "inactive" => Some(Direction::Inactive),
                _ => None,
            };
            match cur.as_mut() {
                None => {
                    if let Some(d) = dir {
                        session_dir = d;
                    }
                }
                Some(raw) => {
                    if let Some(d) = dir {
                        raw.direction = d;
                    }
                    raw.attribute(name, value);
                }
            }
        }
        if let Some(raw) = cur.take() {
            summary.media.push(raw.finish());
        }
        Ok(summary)
    }

    /// The codec a publisher will send for `kind`: the first forwardable codec of the first
    /// enabled section of that kind in which it sends.
    pub fn publish_codec(&self, kind: TrackKind) -> Option<&OfferedCodec> {
        self.media
            .iter()
            .filter(|m| m.kind == Some(kind) && !m.disabled && m.direction.sends())
            .find_map(|m| m.codecs.first())
    }

    /// Sections of `kind` in which the offerer wants to receive.
    pub fn receiving(&self, kind: TrackKind) -> impl Iterator<Item = &MediaSection> {
        self.media
            .iter()
            .filter(move |m| m.kind == Some(kind) && !m.disabled && m.direction.receives())
    }
}

struct RawSection {
    kind: Option<TrackKind>,
    direction: Direction,
    disabled: bool,
    pts: Vec<u8>,
    rtpmap: Vec<(u8, String, u32, Option<u8>)>,
    fmtp: Vec<(u8, String)>,
    mid: Option<String>,
}

impl RawSection {
    fn new(mline: &str, direction: Direction) -> Self {
        let mut parts = mline.split_whitespace();
        let kind = match parts.next() {
            Some("audio") => Some(TrackKind::Audio),
            Some("video") => Some(TrackKind::Video),
            _ => None,
        };
        let disabled = parts.next().is_some_and(|p| p == "0");
        let _proto = parts.next();
        let pts = parts.filter_map(|p| p.parse().ok()).collect();
        RawSection {
            kind,
            direction,
            disabled,
            pts,
            rtpmap: Vec::new(),
            fmtp: Vec::new(),
            mid: None,
        }
    }

    fn attribute(&mut self, name: &str, value: &str) {
        if name == "mid" {
            self.mid = Some(value.trim().to_string());
            return;
        }
        let Some((pt, rest)) = value.split_once(' ') else {
            return;
        };
        let Ok(pt) = pt.parse::<u8>() else {
            return;
        };
        match name {
            "rtpmap" => {
                let mut it = rest.trim().split('/');
                let codec = it.next().unwrap_or("").to_string();
                let clock = it.next().and_then(|c| c.parse().ok()).unwrap_or(0);
                let channels = it.next().and_then(|c| c.parse().ok());
                self.rtpmap.push((pt, codec, clock, channels));
            }
            "fmtp" => self.fmtp.push((pt, rest.trim().to_string())),
            _ => {}
        }
    }

    fn fmtp_of(&self, pt: u8) -> &str {
        self.fmtp
            .iter()
            .find(|(p, _)| *p == pt)
            .map(|(_, f)| f.as_str())
            .unwrap_or("")
    }

    fn finish(self) -> MediaSection {
        let mut codecs = Vec::new();
        let mut other_codecs = Vec::new();
        for &pt in &self.pts {
            let Some((_, name, clock, channels)) = self.rtpmap.iter().find(|r| r.0 == pt) else {
                continue;
            };
            let fmtp = self.fmtp_of(pt);
            match CodecName::parse(name) {
                Some(codec) if Some(codec.kind()) == self.kind && forwardable(codec, fmtp) => {
                    let rtx = self.fmtp.iter().find_map(|(rtx_pt, f)| {
                        let is_rtx = self
                            .rtpmap
                            .iter()
                            .any(|r| r.0 == *rtx_pt && r.1.eq_ignore_ascii_case("rtx"));
                        let apt = fmtp_value(f, "apt").and_then(|a| a.parse::<u8>().ok());
                        (is_rtx && apt == Some(pt)).then_some(*rtx_pt)
                    });
                    codecs.push(OfferedCodec {
                        pt,
                        rtx,
                        name: codec,
                        clock_rate: *clock,
                        channels: *channels,
                        fmtp: fmtp.to_string(),
                    });
                }
                _ => {
                    let n = name.to_string();
                    let skip = [
                        "rtx",
                        "red",
                        "ulpfec",
                        "flexfec-03",
                        "cn",
                        "telephone-event",
                    ];
                    if !skip.iter().any(|s| n.eq_ignore_ascii_case(s)) && !other_codecs.contains(&n)
                    {
                        other_codecs.push(n);
                    }
                }
            }
        }
        MediaSection {
            kind: self.kind,
            direction: self.direction,
            disabled: self.disabled,
            codecs,
            other_codecs,
            mid: self.mid,
        }
    }
}

/// H264 is forwarded only with packetization-mode 1 (FU-A/STAP-A), what Chromium, OBS and
/// FFmpeg send; everything else we list is forwarded as offered.
fn forwardable(codec: CodecName, fmtp: &str) -> bool {
    match codec {
        CodecName::H264 => fmtp_value(fmtp, "packetization-mode") == Some("1"),
        _ => true,
    }
}

/// The value of `key` in an fmtp parameter list `a=1;b=2`.
pub fn fmtp_value<'a>(fmtp: &'a str, key: &str) -> Option<&'a str> {
    fmtp.split(';').find_map(|kv| {
        let (k, v) = kv.split_once('=')?;
        k.trim().eq_ignore_ascii_case(key).then(|| v.trim())
    })
}

/// A trickle-ICE / ICE-restart fragment (RFC 8840), as sent in a WHIP/WHEP PATCH.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SdpFragment {
    /// `a=ice-ufrag` (the remote side's; new on an ICE restart).
    pub ufrag: Option<String>,
    /// `a=ice-pwd`.
    pub pwd: Option<String>,
    /// The `a=candidate` values.
    pub candidates: Vec<String>,
    /// `a=end-of-candidates` was present.
    pub end_of_candidates: bool,
}

impl SdpFragment {
    /// Parse a fragment. Unknown lines are ignored (RFC 8840 allows `m=`/`a=mid` lines).
    pub fn parse(body: &str) -> Result<SdpFragment, SdpError> {
        let mut frag = SdpFragment::default();
        let mut any = false;
        for line in body.lines() {
            let line = line.trim();
            if line.is_empty() {
                continue;
            }
            any = true;
            if let Some(v) = line.strip_prefix("a=ice-ufrag:") {
                frag.ufrag = Some(v.trim().to_string());
            } else if let Some(v) = line.strip_prefix("a=ice-pwd:") {
                frag.pwd = Some(v.trim().to_string());
            } else if let Some(v) = line.strip_prefix("a=candidate:") {
                frag.candidates.push(format!("candidate:{}", v.trim()));
            } else if line == "a=end-of-candidates" {
                frag.end_of_candidates = true;
            } else if !(line.starts_with("a=") || line.starts_with("m=") || line.starts_with("c="))
            {
                return Err(SdpError::NotSdp(
                    "a fragment holds only a=, m= and c= lines",
                ));
            }
        }
        if !any {
            return Err(SdpError::Empty);
        }
        Ok(frag)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CHROMIUM: &str = include_str!("../../../tests/fixtures/sdp/chromium-whip.sdp");
    const FFMPEG: &str = include_str!("../../../tests/fixtures/sdp/ffmpeg9-whip.sdp");

    #[test]
    fn chromium_offer_picks_first_codecs() {
        let s = OfferSummary::scan(CHROMIUM).unwrap();
        assert_eq!(s.media.len(), 2);
        let a = s.publish_codec(TrackKind::Audio).unwrap();
        assert_eq!(
            (a.name, a.pt, a.clock_rate, a.channels),
            (CodecName::Opus, 111, 48000, Some(2))
        );
        let v = s.publish_codec(TrackKind::Video).unwrap();
        assert_eq!((v.name, v.pt, v.rtx), (CodecName::Vp8, 96, Some(97)));
        // H264 packetization-mode=0 is not forwardable.
        let video = &s.media[1];
        assert!(
            video
                .codecs
                .iter()
                .all(|c| c.name != CodecName::H264 || c.fmtp.contains("packetization-mode=1"))
        );
        assert!(s.candidates > 0);
    }

    #[test]
    fn ffmpeg_offer_has_no_candidates_and_h264() {
        let s = OfferSummary::scan(FFMPEG).unwrap();
        assert_eq!(s.candidates, 0);
        let v = s.publish_codec(TrackKind::Video).unwrap();
        assert_eq!((v.name, v.pt, v.rtx), (CodecName::H264, 106, Some(105)));
        assert_eq!(fmtp_value(&v.fmtp, "profile-level-id"), Some("42001e"));
    }

    #[test]
    fn uppercase_opus_and_session_direction() {
        let sdp =
            "v=0\r\na=sendonly\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=rtpmap:111 OPUS/48000/2\r\n";
        let s = OfferSummary::scan(sdp).unwrap();
        assert_eq!(s.media[0].direction, Direction::SendOnly);
        assert_eq!(
            s.publish_codec(TrackKind::Audio).unwrap().name,
            CodecName::Opus
        );
    }

    #[test]
    fn garbage_is_rejected() {
        assert_eq!(OfferSummary::scan("  \n").unwrap_err(), SdpError::Empty);
        assert!(OfferSummary::scan("hello").is_err());
        // Bytes that are not lines at all never panic.
        let _ = OfferSummary::scan("v=0\nm=\na=rtpmap:\na=rtpmap:999 x\na=fmtp:1");
    }

    #[test]
    fn only_unforwardable_codecs() {
        let sdp = "v=0\nm=audio 9 RTP/SAVPF 0\na=rtpmap:0 PCMU/8000\na=sendonly\n";
        let s = OfferSummary::scan(sdp).unwrap();
        assert!(s.publish_codec(TrackKind::Audio).is_none());
        assert_eq!(s.media[0].other_codecs, vec!["PCMU".to_string()]);
    }

    #[test]
    fn sdpfrag() {
        let f = SdpFragment::parse(
            "a=ice-ufrag:abcd\r\na=ice-pwd:secretsecretsecret\r\nm=audio 9 UDP/TLS/RTP/SAVPF 0\r\na=mid:0\r\na=candidate:1 1 udp 1 127.0.0.1 5000 typ host\r\na=end-of-candidates\r\n",
        )
        .unwrap();
        assert_eq!(f.ufrag.as_deref(), Some("abcd"));
        assert_eq!(f.candidates.len(), 1);
        assert!(f.end_of_candidates);
        assert!(SdpFragment::parse("").is_err());
        assert!(SdpFragment::parse("garbage line").is_err());
    }
}
