//! What we need to know about an SDP offer before str0m sees it: which media sections it has,
//! their direction, and which codec a publisher will send (the first one it lists that we can
//! forward). Plus the `application/trickle-ice-sdpfrag` bodies of PATCH requests.
//!
//! This is a tolerant line scanner, not a validator: str0m parses the offer for real afterwards
//! and its error is what a client sees for a malformed offer.
//!
//! Before anything else, [`check_limits`] bounds what one request can make the server build:
//! an offer of hundreds of media sections is accepted by str0m and answered section by section
//! (a 65 KB offer with 617 audio sections cost a 321 KB answer and ~690 KB of memory, a normal
//! session ~48 KB). [`OfferSummary::scan`] and [`SdpFragment::parse`] run it first, so no `Rtc`
//! is built for an offer over a limit.

use std::fmt;
use std::ops::RangeInclusive;

use crate::ids::TrackKind;

/// Most media sections (`m=` lines) in one offer or fragment. A browser offers audio, video
/// and data (3), OBS simulcast 2; a room member up to 2 + 2 × 16 slots + data; a few hundred
/// are an attack.
pub const MAX_MEDIA_SECTIONS: usize = 40;
/// Longest line, in bytes. The longest real ones (an H264 or AV1 `a=fmtp`, a SHA-512
/// `a=fingerprint`, a candidate with its extensions) stay under 256.
pub const MAX_LINE_BYTES: usize = 1024;
/// Most `a=candidate` lines in one media section: browsers repeat each host candidate (UDP and
/// TCP, per interface and address family) in every section, 8 on a host with two interfaces.
pub const MAX_CANDIDATES_PER_SECTION: usize = 64;
/// Most `a=candidate` lines in one offer or fragment, all sections together.
pub const MAX_CANDIDATES: usize = 256;
/// Length of `a=ice-ufrag` in characters (RFC 8839 §5.4).
pub const ICE_UFRAG_CHARS: RangeInclusive<usize> = 4..=256;
/// Length of `a=ice-pwd` in characters (RFC 8839 §5.4).
pub const ICE_PWD_CHARS: RangeInclusive<usize> = 22..=256;

/// Check `body` (an offer or a trickle fragment) against the limits above: a cheap pass over
/// its lines, without parsing it. The error names the limit.
pub fn check_limits(body: &str) -> Result<(), SdpError> {
    let mut sections = 0;
    let mut in_section = 0;
    let mut candidates = 0;
    for line in body.lines() {
        if line.len() > MAX_LINE_BYTES {
            return Err(SdpError::LineTooLong);
        }
        let line = line.trim();
        if line.starts_with("m=") {
            sections += 1;
            in_section = 0;
            if sections > MAX_MEDIA_SECTIONS {
                return Err(SdpError::TooManyMediaSections);
            }
        } else if line.starts_with("a=candidate:") {
            in_section += 1;
            candidates += 1;
            if in_section > MAX_CANDIDATES_PER_SECTION {
                return Err(SdpError::TooManyCandidatesInSection);
            }
            if candidates > MAX_CANDIDATES {
                return Err(SdpError::TooManyCandidates);
            }
        } else if let Some(ufrag) = line.strip_prefix("a=ice-ufrag:") {
            let len = ufrag.trim().chars().count();
            if !ICE_UFRAG_CHARS.contains(&len) {
                return Err(SdpError::IceUfragLength(len));
            }
        } else if let Some(pwd) = line.strip_prefix("a=ice-pwd:") {
            let len = pwd.trim().chars().count();
            if !ICE_PWD_CHARS.contains(&len) {
                return Err(SdpError::IcePwdLength(len));
            }
        }
    }
    Ok(())
}

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
    /// The simulcast layers the offerer sends (RFC 8853), by rid: in `a=simulcast:send` order
    /// (first alternative of each, paused ones too), or the `a=rid:… send` lines in their order
    /// when there is no `a=simulcast`. Empty: one stream, no simulcast.
    pub send_rids: Vec<String>,
}

/// What we read from an offer.
#[derive(Debug, Clone, Default)]
pub struct OfferSummary {
    /// Media sections in order.
    pub media: Vec<MediaSection>,
    /// Number of `a=candidate` lines (0 for OBS and FFmpeg).
    pub candidates: usize,
}

/// Why an offer or a fragment is refused before it is parsed: not SDP, or over a limit.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SdpError {
    /// The body is empty.
    #[error("empty SDP offer")]
    Empty,
    /// The body is not SDP.
    #[error("not an SDP offer: {0}")]
    NotSdp(&'static str),
    /// More `m=` lines than [`MAX_MEDIA_SECTIONS`].
    #[error("more than {MAX_MEDIA_SECTIONS} media sections (m= lines)")]
    TooManyMediaSections,
    /// A line longer than [`MAX_LINE_BYTES`].
    #[error("a line longer than {MAX_LINE_BYTES} bytes")]
    LineTooLong,
    /// More `a=candidate` lines in one section than [`MAX_CANDIDATES_PER_SECTION`].
    #[error("more than {MAX_CANDIDATES_PER_SECTION} a=candidate lines in one media section")]
    TooManyCandidatesInSection,
    /// More `a=candidate` lines than [`MAX_CANDIDATES`].
    #[error("more than {MAX_CANDIDATES} a=candidate lines")]
    TooManyCandidates,
    /// An `a=ice-ufrag` outside [`ICE_UFRAG_CHARS`].
    #[error("a=ice-ufrag of {0} characters (RFC 8839: 4 to 256)")]
    IceUfragLength(usize),
    /// An `a=ice-pwd` outside [`ICE_PWD_CHARS`].
    #[error("a=ice-pwd of {0} characters (RFC 8839: 22 to 256)")]
    IcePwdLength(usize),
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
        check_limits(sdp)?;
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
    rid_send: Vec<String>,
    simulcast_send: Option<Vec<String>>,
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
            rid_send: Vec::new(),
            simulcast_send: None,
        }
    }

    fn attribute(&mut self, name: &str, value: &str) {
        match name {
            "mid" => {
                self.mid = Some(value.trim().to_string());
                return;
            }
            "rid" => {
                // a=rid:<id> send [pt=…;max-width=…]
                let mut it = value.split_whitespace();
                if let (Some(id), Some("send")) = (it.next(), it.next())
                    && !self.rid_send.iter().any(|r| r == id)
                {
                    self.rid_send.push(id.to_string());
                }
                return;
            }
            "simulcast" => {
                self.simulcast_send = simulcast_send_list(value);
                return;
            }
            _ => {}
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
            send_rids: self.simulcast_send.unwrap_or(self.rid_send),
        }
    }
}

/// The send list of an `a=simulcast` value (`send 0;1;2`, `recv a send ~h,h2;l`): the first
/// alternative of each stream, without its paused mark. `None` when it sends nothing.
fn simulcast_send_list(value: &str) -> Option<Vec<String>> {
    let mut words = value.split_whitespace();
    while let Some(word) = words.next() {
        let list = words.next()?;
        if word == "send" {
            let rids: Vec<String> = list
                .split(';')
                .filter_map(|alts| alts.split(',').next())
                .map(|r| r.trim_start_matches('~').to_string())
                .filter(|r| !r.is_empty())
                .collect();
            return (!rids.is_empty()).then_some(rids);
        }
    }
    None
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
        check_limits(body)?;
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
    const OBS: &str = include_str!("../../../tests/fixtures/sdp/obs32-simulcast-whip.sdp");

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
    fn simulcast_send_rids() {
        let s = OfferSummary::scan(OBS).unwrap();
        assert_eq!(s.media[1].send_rids, ["0", "1", "2"]);
        assert!(s.media[0].send_rids.is_empty());
        let s = OfferSummary::scan(CHROMIUM).unwrap();
        assert!(s.media.iter().all(|m| m.send_rids.is_empty()));
        // a=simulcast decides the order; alternatives and paused marks are read through.
        let sdp = "v=0\nm=video 9 UDP/TLS/RTP/SAVPF 96\na=rid:l send\na=rid:h send\n\
                   a=rid:x recv\na=simulcast:recv x send ~h,h2;l\n";
        assert_eq!(
            OfferSummary::scan(sdp).unwrap().media[0].send_rids,
            ["h", "l"]
        );
        // Without a=simulcast, the a=rid send lines in order, each once.
        let sdp = "v=0\nm=video 9 UDP/TLS/RTP/SAVPF 96\na=rid:q send\na=rid:f send pt=96\n\
                   a=rid:q send\n";
        assert_eq!(
            OfferSummary::scan(sdp).unwrap().media[0].send_rids,
            ["q", "f"]
        );
        let _ = OfferSummary::scan("v=0\nm=video 9 x 96\na=simulcast:send\na=simulcast:\na=rid:\n");
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
            "a=ice-ufrag:abcd\r\na=ice-pwd:secretsecretsecretsecret\r\nm=audio 9 UDP/TLS/RTP/SAVPF 0\r\na=mid:0\r\na=candidate:1 1 udp 1 127.0.0.1 5000 typ host\r\na=end-of-candidates\r\n",
        )
        .unwrap();
        assert_eq!(f.ufrag.as_deref(), Some("abcd"));
        assert_eq!(f.candidates.len(), 1);
        assert!(f.end_of_candidates);
        assert!(SdpFragment::parse("").is_err());
        assert!(SdpFragment::parse("garbage line").is_err());
    }

    /// An offer of `sections` audio sections, each with `candidates` candidates and the ICE
    /// credentials `ufrag`/`pwd`.
    fn offer(sections: usize, candidates: usize, ufrag: &str, pwd: &str) -> String {
        let mut sdp = String::from("v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\n");
        for i in 0..sections {
            sdp.push_str(&format!(
                "m=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=mid:{i}\r\na=ice-ufrag:{ufrag}\r\n\
                 a=ice-pwd:{pwd}\r\na=rtpmap:111 opus/48000/2\r\na=sendonly\r\n"
            ));
            for c in 0..candidates {
                sdp.push_str(&format!(
                    "a=candidate:{c} 1 udp 2122194687 192.0.2.{} 5000 typ host\r\n",
                    c % 250
                ));
            }
        }
        sdp
    }

    const UFRAG: &str = "G9kJ";
    const PWD: &str = "KdyA3BSWPORo2Z58uviIWq9T";

    #[test]
    fn offers_at_the_limits_are_scanned() {
        let s = OfferSummary::scan(&offer(MAX_MEDIA_SECTIONS, 4, UFRAG, PWD)).unwrap();
        assert_eq!(s.media.len(), MAX_MEDIA_SECTIONS);
        let s = OfferSummary::scan(&offer(4, MAX_CANDIDATES_PER_SECTION, UFRAG, PWD)).unwrap();
        assert_eq!(s.candidates, MAX_CANDIDATES);
        let longest = "u".repeat(*ICE_UFRAG_CHARS.end());
        assert!(OfferSummary::scan(&offer(1, 1, &longest, &"p".repeat(22))).is_ok());
        assert!(OfferSummary::scan(&offer(1, 1, "abcd", &"p".repeat(256))).is_ok());
        for fixture in [CHROMIUM, FFMPEG, OBS] {
            assert_eq!(check_limits(fixture), Ok(()));
        }
    }

    #[test]
    fn too_many_media_sections_are_refused() {
        let e = OfferSummary::scan(&offer(MAX_MEDIA_SECTIONS + 1, 0, UFRAG, PWD)).unwrap_err();
        assert_eq!(e, SdpError::TooManyMediaSections);
        assert!(e.to_string().contains("more than 40 media sections"), "{e}");
        // Finding 5 of issue 9: 617 audio sections in 65 KB.
        let big = offer(617, 0, UFRAG, PWD);
        assert_eq!(
            OfferSummary::scan(&big).unwrap_err(),
            SdpError::TooManyMediaSections
        );
    }

    #[test]
    fn a_long_line_is_refused() {
        let long = format!("a=fmtp:111 x={}\r\n", "1".repeat(MAX_LINE_BYTES));
        let sdp = offer(1, 0, UFRAG, PWD) + &long;
        let e = OfferSummary::scan(&sdp).unwrap_err();
        assert_eq!(e, SdpError::LineTooLong);
        assert!(e.to_string().contains("1024 bytes"), "{e}");
        // A body that is one long line.
        let e = OfferSummary::scan(&format!("v=0 {}", "x".repeat(60_000))).unwrap_err();
        assert_eq!(e, SdpError::LineTooLong);
    }

    #[test]
    fn too_many_candidates_are_refused() {
        let e = OfferSummary::scan(&offer(1, MAX_CANDIDATES_PER_SECTION + 1, UFRAG, PWD));
        assert_eq!(e.unwrap_err(), SdpError::TooManyCandidatesInSection);
        let e = OfferSummary::scan(&offer(5, MAX_CANDIDATES_PER_SECTION, UFRAG, PWD));
        assert_eq!(e.unwrap_err(), SdpError::TooManyCandidates);
        assert!(
            SdpError::TooManyCandidates
                .to_string()
                .contains("more than 256 a=candidate")
        );
    }

    #[test]
    fn ice_credentials_outside_rfc_8839_lengths_are_refused() {
        let cases = [
            ("abc", PWD, SdpError::IceUfragLength(3)),
            (&*"u".repeat(257), PWD, SdpError::IceUfragLength(257)),
            (UFRAG, &*"p".repeat(21), SdpError::IcePwdLength(21)),
            (UFRAG, &*"p".repeat(257), SdpError::IcePwdLength(257)),
        ];
        for (ufrag, pwd, error) in cases {
            assert_eq!(
                OfferSummary::scan(&offer(1, 0, ufrag, pwd)).unwrap_err(),
                error
            );
        }
        assert!(
            SdpError::IcePwdLength(21)
                .to_string()
                .contains("a=ice-pwd of 21 characters")
        );
    }

    #[test]
    fn fragments_have_the_same_limits() {
        let frag = |ufrag: &str, pwd: &str, sections: usize, candidates: usize| {
            let mut f = format!("a=ice-ufrag:{ufrag}\r\na=ice-pwd:{pwd}\r\n");
            for i in 0..sections {
                f.push_str(&format!("m=audio 9 UDP/TLS/RTP/SAVPF 0\r\na=mid:{i}\r\n"));
                for c in 0..candidates {
                    f.push_str(&format!(
                        "a=candidate:{c} 1 udp 1 192.0.2.1 5000 typ host\r\n"
                    ));
                }
            }
            SdpFragment::parse(&f)
        };
        assert!(frag(UFRAG, PWD, 1, 2).is_ok());
        assert_eq!(frag("ab", PWD, 1, 1), Err(SdpError::IceUfragLength(2)));
        assert_eq!(frag(UFRAG, "short", 1, 1), Err(SdpError::IcePwdLength(5)));
        assert_eq!(
            frag(UFRAG, PWD, MAX_MEDIA_SECTIONS + 1, 0),
            Err(SdpError::TooManyMediaSections)
        );
        assert_eq!(
            frag(UFRAG, PWD, 1, MAX_CANDIDATES_PER_SECTION + 1),
            Err(SdpError::TooManyCandidatesInSection)
        );
        assert_eq!(
            frag(UFRAG, PWD, 5, MAX_CANDIDATES_PER_SECTION),
            Err(SdpError::TooManyCandidates)
        );
        let long = format!("a=candidate:{}\r\n", "1".repeat(MAX_LINE_BYTES));
        assert_eq!(SdpFragment::parse(&long), Err(SdpError::LineTooLong));
    }
}
