//! One participant connection: a str0m [`Rtc`] in RTP mode, ICE-lite, behind our own type so
//! str0m's API churn stays in this file.
//!
//! A [`Peer`] is built off the shard threads (building an `Rtc` and answering an offer costs
//! about a millisecond of CPU) by [`Peer::publisher`] or [`Peer::subscriber`], then moved into
//! its shard, which drives it with `handle_*` calls and drains [`Peer::poll`] until
//! [`PeerEvent::Timeout`] after every one of them — str0m's contract — except after a packet
//! str0m sent at once ([`Peer::send_rtp`]), which leaves the peer as idle as it found it.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use str0m::bwe::{Bitrate, BweKind};
use str0m::change::SdpOffer;
use str0m::channel::ChannelId;
use str0m::config::DtlsCert;
use str0m::format::{Codec, FormatParams, PayloadParams};
use str0m::media::{Frequency, KeyframeRequestKind, MediaKind, Mid, Pt, Rid};
use str0m::net::{Protocol, Receive, TcpType};
use str0m::rtp::{Extension, ExtensionMap, ExtensionValues, RtpWrite, SeqNo, Ssrc, Vp8Patch};
use str0m::{
    Candidate, Event, IceConnectionState, IceCreds, Input, Output, Rtc, RtcConfig, SendRtp,
};

use crate::buffers::DatagramBuffers;
use crate::ids::TrackKind;
use crate::layers::MAX_LAYERS;
use crate::sdp::{CodecName, Direction, OfferSummary, OfferedCodec};
use crate::stun;

mod moves;
mod path;

pub use path::{CandidateType, Path, Transport};

/// How long a viewer's sent packets stay available for retransmission (NACK → RTX), at most:
/// libwebrtc keeps a sent packet for max(1 s, 3 × RTT), and a NACK arriving later than a second
/// asks for a packet the player has given up on. On a congested path the queue adds to the
/// round trip, so shorter is worse where it matters: with 500 ms, a viewer whose downlink
/// dropped to 400 kbit/s in the sim lost the start of a keyframe for good.
const RTX_HISTORY: Duration = Duration::from_secs(1);

/// Most packets kept for retransmission per stream, which bounds the history's memory: str0m
/// keeps it in a ring of ~430-byte slots (a whole `RtpPacket` each; the payload is shared),
/// grown whole up to this many slots, whatever the packets' sizes, so 1 s of a 2.5 Mbit/s
/// stream held ~290 KiB per viewer (heaptrack; str0m's default cap is 1,024), the largest share
/// of a viewer's memory. 256 slots (~110 KiB, `crates/sim/tests/viewer_memory.rs`) hold the
/// whole second up to ~2.5 Mbit/s. 128 or 192 were not enough: in
/// the sim, a simulcast viewer whose downlink dropped from the top layer to 400 kbit/s NACKed
/// the start of the middle layer's keyframe after more than that many packets had left (the
/// queue of the slow link is in the round trip) and switched without it. The cap also holds
/// when a joining viewer's keyframe replay sends a second of cached packets at once.
const RTX_HISTORY_PACKETS: usize = 256;

const RTX_RATIO_CAP: f32 = 0.15;

/// The bandwidth a viewer of a simulcast stream is assumed to have until its estimator knows
/// better: enough for a middle layer (a browser's 640×360 is ~500 kbit/s); the estimator
/// probes up from there within seconds.
pub const INITIAL_ESTIMATE_BPS: u64 = 1_000_000;

/// What every peer of a process shares: the DTLS certificate (one per process, ECDSA, generated
/// once) and the addresses a shard advertises.
#[derive(Clone)]
pub struct PeerSetup {
    /// The process's DTLS certificate.
    pub cert: DtlsCert,
    /// Candidate addresses of the shard the peer is placed on.
    pub candidates: Vec<SocketAddr>,
    /// Addresses of the shard's TCP listeners (RFC 6544 passive candidates, for clients whose
    /// networks drop UDP); answered after the UDP ones, at a lower priority. Empty: UDP only.
    pub tcp_candidates: Vec<SocketAddr>,
    /// The peer's local ICE credentials (minted by the control plane; the ufrag carries the
    /// shard so it can be demultiplexed without a lookup elsewhere).
    pub ice: IceCreds,
}

impl std::fmt::Debug for PeerSetup {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PeerSetup")
            .field("candidates", &self.candidates)
            .field("tcp_candidates", &self.tcp_candidates)
            .field("ufrag", &self.ice.ufrag)
            .finish_non_exhaustive()
    }
}

/// Generate the process's DTLS certificate (ECDSA P-256: aiortc accepts only ECDSA).
pub fn generate_certificate() -> Option<DtlsCert> {
    str0m::crypto::from_feature_flags()
        .dtls_provider
        .generate_certificate()
}

/// The codec a publisher sends on one track, as negotiated.
#[derive(Debug, Clone)]
pub struct TrackCodec {
    /// Which codec.
    pub name: CodecName,
    /// The publisher's payload parameters (PT, RTX PT, fmtp).
    pub params: PayloadParams,
    /// The codec as it was offered (for messages).
    pub offered: OfferedCodec,
}

/// The tracks a publisher sends, one codec per kind (indexed by [`TrackKind::index`]).
#[derive(Debug, Clone, Default)]
pub struct Published {
    /// Audio and video.
    pub tracks: [Option<TrackCodec>; 2],
    /// The video's simulcast layers by rid, as the offer announced them (at most
    /// [`crate::layers::MAX_LAYERS`]); empty when it sends one video stream.
    pub layers: Vec<String>,
}

impl Published {
    /// The first track whose codec differs from `before` in a way a viewer negotiated for
    /// `before` cannot follow (another codec, or another H264 profile / VP9 profile), as
    /// "video: VP8/90000 -> H264/90000 (...)".
    pub fn changed_from(&self, before: &Published) -> Option<String> {
        TrackKind::ALL.iter().find_map(|kind| {
            let (now, was) = (
                self.tracks[kind.index()].as_ref()?,
                before.tracks[kind.index()].as_ref()?,
            );
            (now.name != was.name || !compatible(&was.offered, &now.offered))
                .then(|| format!("{kind}: {} -> {}", was.offered, now.offered))
        })
    }
}

/// Why a peer could not be set up from an offer. Each maps to one HTTP status.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SetupError {
    /// The offer is not valid SDP (400).
    #[error("unparsable SDP offer: {0}")]
    BadSdp(String),
    /// Nothing in the offer can be forwarded (422).
    #[error("nothing to forward: {0}")]
    NothingToForward(String),
    /// A viewer cannot receive the codec the publisher sends (422).
    #[error("the stream's {kind} is {codec}, which this viewer's offer does not accept")]
    CodecMismatch {
        /// Audio or video.
        kind: TrackKind,
        /// The publisher's codec.
        codec: String,
    },
    /// A room member's offer is laid out in a way rooms do not take (422): more than one
    /// sending section of a kind, more slots than allowed.
    #[error("{0}")]
    Layout(String),
}

/// The label of the data channel a room member opens for the room's messages.
pub const ROOM_CHANNEL: &str = "ringcast";

/// What a room member's offer holds, as answered.
#[derive(Debug, Clone, Default)]
pub struct Membership {
    /// What it publishes (its sending sections).
    pub published: Published,
    /// The codec of each kind its connection was built with: the room's, or, for a kind the
    /// room has none of yet, the one it offered first (which becomes the room's).
    pub codecs: [Option<TrackCodec>; 2],
    /// Its slots (`recvonly` sections), in offer order.
    pub slots: Vec<SlotSpec>,
    /// The offer has a data channel section (`m=application`).
    pub data_channel: bool,
}

/// One slot of a room member: a receive-only section the server fills with someone's media.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlotSpec {
    /// Its `a=mid`.
    pub mid: String,
    /// Audio or video.
    pub kind: TrackKind,
    /// Its index among the peer's answered sections ([`Peer::send_rtp`]).
    pub section: usize,
}

/// What became of a datagram fed to a peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Received {
    /// str0m took it.
    Taken,
    /// str0m took it: a nominating check from a new address in place of the last one (a NAT
    /// rebinding), and media now goes there.
    Moved,
    /// Not STUN, DTLS, RTP or RTCP.
    Malformed,
    /// str0m refused it (bad DTLS, SRTP authentication, a state that does not take it).
    Rejected,
    /// An RTP packet whose SSRC and sequence number this peer already delivered: a replay
    /// (or a network duplicate), dropped before decryption.
    Replayed,
    /// An RTP packet on an SSRC that maps to no announced stream (a simulcast rid the offer did
    /// not announce, or an SSRC nobody declared): str0m drops it.
    Unmapped,
}

/// What [`Peer::send_rtp`] did with a forwarded packet.
#[derive(Debug)]
pub enum Forwarded {
    /// It left at once: queue this datagram for the engine.
    Sent(Datagram),
    /// It waits in str0m's queue: poll the peer ([`Peer::poll`]).
    Queued,
    /// The peer sends nothing on that section.
    Not,
}

/// A datagram a peer sends.
#[derive(Debug)]
pub struct Datagram {
    /// Over which transport (a TCP one goes on the connection from `destination`).
    pub transport: Transport,
    /// Where to.
    pub destination: SocketAddr,
    /// From which local address.
    pub source: SocketAddr,
    /// The bytes.
    pub contents: Vec<u8>,
}

impl From<str0m::net::Transmit> for Datagram {
    fn from(t: str0m::net::Transmit) -> Self {
        Datagram {
            transport: path::transport(t.proto),
            destination: t.destination,
            source: t.source,
            contents: t.contents.into(),
        }
    }
}

/// What draining a peer yields.
#[derive(Debug)]
pub enum PeerEvent {
    /// Send this datagram.
    Transmit(Datagram),
    /// A media packet from the remote (publishers only).
    Rtp(RtpIn),
    /// The remote wants a keyframe on what it receives in section `section` (subscribers and
    /// room members).
    KeyframeRequest {
        /// The kind of that section.
        kind: TrackKind,
        /// The section's index ([`Peer::send_rtp`]).
        section: usize,
    },
    /// The remote opened the room's data channel ([`ROOM_CHANNEL`]).
    ChannelOpen,
    /// A message on the room's data channel.
    ChannelMessage {
        /// Sent as binary (the room's messages are text).
        binary: bool,
        /// The bytes.
        data: Vec<u8>,
    },
    /// How many bits per second the path to this viewer carries, from str0m's estimator (TWCC
    /// feedback) or the viewer's REMB (subscribers of simulcast streams only).
    Estimate(u64),
    /// ICE and DTLS are up; media flows, on this path (`None` if nothing went out on the
    /// nominated pair before, which DTLS makes impossible).
    Connected(Option<Path>),
    /// The connection is gone (consent/DTLS timeout, DTLS close).
    Disconnected,
    /// Drained: call again at this instant (or on input).
    Timeout(Instant),
}

/// A received RTP packet, reduced to what forwarding needs.
#[derive(Debug, Clone)]
pub struct RtpIn {
    /// Audio or video.
    pub kind: TrackKind,
    /// The sender's SSRC.
    pub ssrc: u32,
    /// Payload type.
    pub pt: u8,
    /// Extended sequence number.
    pub seq: u64,
    /// RTP timestamp.
    pub ts: u32,
    /// Marker bit.
    pub marker: bool,
    /// The simulcast layer it belongs to: the index of its rid in [`Published::layers`]
    /// (0 without simulcast, and for audio).
    pub layer: u8,
    /// The payload (shared by every subscriber it is forwarded to).
    pub payload: Arc<[u8]>,
    /// Header extensions worth forwarding.
    pub ext: ForwardedExt,
}

/// One packet as it goes out to a subscriber: numbered for its output stream.
#[derive(Debug, Clone)]
pub struct OutRtp {
    /// Extended sequence number on the output stream.
    pub seq: u64,
    /// RTP timestamp on the output stream.
    pub ts: u32,
    /// Marker bit.
    pub marker: bool,
    /// The payload (shared with every other subscriber).
    pub payload: Arc<[u8]>,
    /// Header extensions worth forwarding.
    pub ext: ForwardedExt,
    /// VP8 descriptor numbers to rewrite as str0m serialises it ([`crate::rewrite::Vp8Ids`]).
    pub vp8: Option<Vp8Patch>,
}

/// The header extension values that travel with a forwarded packet.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ForwardedExt {
    /// ssrc-audio-level.
    pub audio_level: Option<i8>,
    /// Voice activity flag of ssrc-audio-level.
    pub voice_activity: Option<bool>,
    /// urn:3gpp:video-orientation, as its raw byte.
    pub video_orientation: Option<u8>,
}

#[derive(Debug, Clone, Copy)]
struct Slot {
    mid: Mid,
    kind: TrackKind,
    /// The remote sends on this section (a publisher's or member's track).
    remote_sends: bool,
    /// For subscribers: the outgoing stream and the viewer's PT for the publisher's codec.
    tx: Option<(Ssrc, Pt)>,
}

/// One participant connection.
pub struct Peer {
    rtc: Rtc,
    ufrag: String,
    slots: Vec<Slot>,
    /// A publisher's simulcast rids ([`Published::layers`]); a packet's layer is its rid's index.
    layers: Vec<String>,
    /// Incoming SSRCs resolved so far (a publisher sends one per layer and kind, plus RTX).
    rx: RxSsrcs,
    connected: bool,
    replays: ReplayWindows,
    /// A room member's data channel, once open.
    channel: Option<ChannelId>,
    /// Where the remote nominates from, to follow it when it moves.
    moves: moves::Moves,
    /// The candidates the remote signalled, to type its path when it connects.
    signalled: path::Signalled,
    /// Where the last datagram other than STUN went: the nominated pair's remote.
    sending_to: Option<(SocketAddr, Protocol)>,
}

impl std::fmt::Debug for Peer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Peer")
            .field("ufrag", &self.ufrag)
            .field("connected", &self.connected)
            .finish_non_exhaustive()
    }
}

impl Peer {
    /// Build a publisher (WHIP) from its offer: the answer accepts the first forwardable codec of
    /// each kind it sends, nothing else.
    pub fn publisher(
        setup: &PeerSetup,
        offer: &str,
        now: Instant,
    ) -> Result<(Peer, String, Published), SetupError> {
        let summary = OfferSummary::scan(offer).map_err(|e| SetupError::BadSdp(e.to_string()))?;
        let sdp = SdpOffer::from_sdp_string(offer)
            .map_err(|e| SetupError::BadSdp(one_line(&e.to_string())))?;
        let mut published = Published::default();
        let mut config = base_config(setup);
        for kind in TrackKind::ALL {
            if let Some(c) = summary.publish_codec(kind) {
                let params = add_codec(&mut config, c);
                published.tracks[kind.index()] = Some(TrackCodec {
                    name: c.name,
                    params,
                    offered: c.clone(),
                });
            }
        }
        if published.tracks[TrackKind::Video.index()].is_some() {
            published.layers = summary
                .media
                .iter()
                .find(|m| m.kind == Some(TrackKind::Video) && !m.disabled && m.direction.sends())
                .map(|m| m.send_rids.iter().take(MAX_LAYERS).cloned().collect())
                .unwrap_or_default();
        }
        if published.tracks.iter().all(Option::is_none) {
            let offered: Vec<String> = summary
                .media
                .iter()
                .flat_map(|m| m.other_codecs.iter().cloned())
                .collect();
            return Err(SetupError::NothingToForward(if offered.is_empty() {
                "the offer sends no audio or video".into()
            } else {
                format!(
                    "offered codecs {} are not forwarded (opus, H264 packetization-mode=1, VP8, VP9, AV1 are)",
                    offered.join(", ")
                )
            }));
        }
        let (mut peer, answer) = Peer::answer(config, setup, (sdp, offer), now)?;
        peer.resolve_slots(&summary, None);
        peer.layers = published.layers.clone();
        Ok((peer, answer, published))
    }

    /// Build a subscriber (WHEP) from its offer, for a stream publishing `published`.
    pub fn subscriber(
        setup: &PeerSetup,
        offer: &str,
        published: &Published,
        now: Instant,
    ) -> Result<(Peer, String), SetupError> {
        let summary = OfferSummary::scan(offer).map_err(|e| SetupError::BadSdp(e.to_string()))?;
        let sdp = SdpOffer::from_sdp_string(offer)
            .map_err(|e| SetupError::BadSdp(one_line(&e.to_string())))?;
        // A viewer that wants a kind the stream has must accept its codec.
        let mut config = base_config(setup);
        let mut wanted = 0;
        for kind in TrackKind::ALL {
            let Some(track) = &published.tracks[kind.index()] else {
                continue;
            };
            let mut sections = summary.receiving(kind).peekable();
            if sections.peek().is_none() {
                continue;
            }
            let accepts = sections.any(|m| {
                m.codecs
                    .iter()
                    .any(|c| c.name == track.name && compatible(&track.offered, c))
            });
            if !accepts {
                return Err(SetupError::CodecMismatch {
                    kind,
                    codec: track.offered.to_string(),
                });
            }
            add_params(&mut config, track.params);
            wanted += 1;
        }
        if wanted == 0 {
            return Err(SetupError::NothingToForward(
                "the offer receives neither audio nor video that the stream has".into(),
            ));
        }
        if published.layers.len() > 1 {
            // Which layer a viewer gets follows what its path carries.
            config = config.enable_bwe(Some(Bitrate::bps(INITIAL_ESTIMATE_BPS)));
        } else {
            // Nothing here uses an estimate, so the viewer's transport-wide feedback would be
            // parsed for nothing, and str0m's record of the last 1,000 sent packets for it
            // (~90 KiB per viewer) kept for nothing.
            config = without_transport_cc(config);
        }
        let (mut peer, answer) = Peer::answer(config, setup, (sdp, offer), now)?;
        peer.resolve_slots(&summary, Some(published));
        if peer.slots.iter().all(|s| s.tx.is_none()) {
            return Err(SetupError::NothingToForward(
                "no media section of the offer could be answered".into(),
            ));
        }
        Ok((peer, answer))
    }

    /// Build a room member from its offer: its sending sections publish (at most one per kind,
    /// the video possibly simulcast), its `recvonly` sections are slots (at most `max_slots`
    /// per kind), its `m=application` carries the room's data channel. `room` holds the room's
    /// codec per kind so far: the offer must accept it on every section of that kind; a kind
    /// the room has none of yet takes the offer's first forwardable codec.
    pub fn member(
        setup: &PeerSetup,
        offer: &str,
        room: &[Option<TrackCodec>; 2],
        max_slots: usize,
        now: Instant,
    ) -> Result<(Peer, String, Membership), SetupError> {
        let summary = OfferSummary::scan(offer).map_err(|e| SetupError::BadSdp(e.to_string()))?;
        let sdp = SdpOffer::from_sdp_string(offer)
            .map_err(|e| SetupError::BadSdp(one_line(&e.to_string())))?;
        let mut membership = Membership {
            data_channel: summary
                .media
                .iter()
                .any(|m| m.kind.is_none() && !m.disabled),
            ..Membership::default()
        };
        let mut config = base_config(setup);
        for kind in TrackKind::ALL {
            let sections: Vec<_> = summary
                .media
                .iter()
                .filter(|m| m.kind == Some(kind) && !m.disabled)
                .collect();
            let sending = sections.iter().filter(|m| m.direction.sends()).count();
            if sending > 1 {
                return Err(SetupError::Layout(format!(
                    "{sending} {kind} sections send: a member publishes at most one {kind} track"
                )));
            }
            let slots = sections
                .iter()
                .filter(|m| m.direction == Direction::RecvOnly)
                .count();
            if slots > max_slots {
                return Err(SetupError::Layout(format!(
                    "{slots} {kind} slots (recvonly sections): at most {max_slots}"
                )));
            }
            if sections.is_empty() {
                continue;
            }
            // The codec: the room's, which every section of the kind must accept; else the
            // offer's first forwardable one (its sending section's preference first).
            let wanted = match &room[kind.index()] {
                Some(track) => track.offered.clone(),
                None => sections
                    .iter()
                    .find(|m| m.direction.sends())
                    .into_iter()
                    .chain(sections.iter())
                    .find_map(|m| m.codecs.first())
                    .cloned()
                    .ok_or_else(|| {
                        SetupError::NothingToForward(format!(
                            "no {kind} codec of the offer is forwarded \
                             (opus, H264 packetization-mode=1, VP8, VP9, AV1 are)"
                        ))
                    })?,
            };
            let mut ours = None;
            for m in &sections {
                let found = m
                    .codecs
                    .iter()
                    .find(|c| c.name == wanted.name && compatible(&wanted, c));
                match found {
                    Some(c) => {
                        if ours.is_none() {
                            ours = Some(c.clone());
                        }
                    }
                    None => {
                        return Err(SetupError::CodecMismatch {
                            kind,
                            codec: wanted.to_string(),
                        });
                    }
                }
            }
            let Some(offered) = ours else { continue };
            let params = add_codec(&mut config, &offered);
            let track = TrackCodec {
                name: offered.name,
                params,
                offered,
            };
            if sending == 1 {
                membership.published.tracks[kind.index()] = Some(track.clone());
            }
            membership.codecs[kind.index()] = Some(track);
        }
        if membership.published.tracks[TrackKind::Video.index()].is_some() {
            membership.published.layers = summary
                .media
                .iter()
                .find(|m| m.kind == Some(TrackKind::Video) && !m.disabled && m.direction.sends())
                .map(|m| m.send_rids.iter().take(MAX_LAYERS).cloned().collect())
                .unwrap_or_default();
        }
        if membership.codecs.iter().all(Option::is_none) && !membership.data_channel {
            return Err(SetupError::NothingToForward(
                "the offer has no audio, video or data channel section".into(),
            ));
        }
        let (mut peer, answer) = Peer::answer(config, setup, (sdp, offer), now)?;
        let receives = Published {
            tracks: membership.codecs.clone(),
            layers: Vec::new(),
        };
        peer.resolve_slots(&summary, Some(&receives));
        peer.layers = membership.published.layers.clone();
        for (section, slot) in peer.slots.iter().enumerate() {
            let offered = summary
                .media
                .iter()
                .find(|m| m.mid.as_deref() == Some(&*slot.mid));
            if offered.is_some_and(|m| m.direction == Direction::RecvOnly) && slot.tx.is_some() {
                membership.slots.push(SlotSpec {
                    mid: slot.mid.to_string(),
                    kind: slot.kind,
                    section,
                });
            }
        }
        Ok((peer, answer, membership))
    }

    /// Answer `offer` (parsed from `offer_text`, whose candidates are remembered).
    fn answer(
        config: RtcConfig,
        setup: &PeerSetup,
        (offer, offer_text): (SdpOffer, &str),
        now: Instant,
    ) -> Result<(Peer, String), SetupError> {
        let mut signalled = path::Signalled::default();
        signalled.add_sdp(offer_text);
        let mut rtc = config.build(now);
        for addr in &setup.candidates {
            if let Ok(c) = Candidate::host(*addr, "udp") {
                rtc.add_local_candidate(c);
            }
        }
        // Host TCP candidates rank below host UDP ones (type preference 90 against 126), so a
        // client that can reach both uses UDP.
        for addr in &setup.tcp_candidates {
            let tcp = Candidate::builder()
                .tcp()
                .host(*addr)
                .tcptype(TcpType::Passive)
                .build();
            if let Ok(c) = tcp {
                rtc.add_local_candidate(c);
            }
        }
        let answer = rtc
            .sdp_api()
            .accept_offer(offer)
            .map_err(|e| SetupError::BadSdp(one_line(&e.to_string())))?;
        let mut answer = answer.to_sdp_string();
        if !answer.contains("a=end-of-candidates") {
            answer = add_end_of_candidates(&answer);
        }
        let peer = Peer {
            rtc,
            ufrag: setup.ice.ufrag.clone(),
            slots: Vec::new(),
            layers: Vec::new(),
            rx: RxSsrcs::default(),
            connected: false,
            replays: ReplayWindows::default(),
            channel: None,
            moves: moves::Moves::default(),
            signalled,
            sending_to: None,
        };
        Ok((peer, answer))
    }

    /// Note each answered media section; for subscribers, the outgoing stream and PT of each.
    fn resolve_slots(&mut self, summary: &OfferSummary, published: Option<&Published>) {
        for section in &summary.media {
            let Some(mid) = section.mid.as_deref().map(Mid::from) else {
                continue;
            };
            let Some(media) = self.rtc.media(mid) else {
                continue;
            };
            let kind = match media.kind() {
                MediaKind::Audio => TrackKind::Audio,
                MediaKind::Video => TrackKind::Video,
            };
            let tx = published.and_then(|p| {
                let track = p.tracks[kind.index()].as_ref()?;
                let pt = self.rtc.codec_config().match_params(track.params)?.pt();
                let remote_ok = self
                    .rtc
                    .media(mid)
                    .is_some_and(|m| m.remote_pts().contains(&pt));
                if !remote_ok {
                    return None;
                }
                let mut api = self.rtc.direct_api();
                let stream = api.stream_tx_by_mid(mid, None)?;
                stream.set_rtx_cache(RTX_HISTORY_PACKETS, RTX_HISTORY, Some(RTX_RATIO_CAP));
                Some((stream.ssrc(), pt))
            });
            let remote_sends = section.direction.sends();
            self.slots.push(Slot {
                mid,
                kind,
                remote_sends,
                tx,
            });
        }
    }

    /// This peer's local ICE ufrag.
    pub fn ufrag(&self) -> &str {
        &self.ufrag
    }

    /// Kinds this subscriber receives.
    pub fn receives(&self, kind: TrackKind) -> bool {
        self.slots.iter().any(|s| s.kind == kind && s.tx.is_some())
    }

    /// The first section this subscriber receives `kind` on ([`Peer::send_rtp`]).
    pub fn section_for(&self, kind: TrackKind) -> Option<usize> {
        self.slots
            .iter()
            .position(|s| s.kind == kind && s.tx.is_some())
    }

    /// Remember candidates the remote trickled (`candidate:...` values), to type its path.
    /// ICE-lite needs nothing else from them: the remote's checks reach the server.
    pub fn add_candidates(&mut self, candidates: &[String]) {
        for c in candidates {
            self.signalled.add(c);
        }
    }

    /// Has ICE + DTLS completed?
    pub fn is_connected(&self) -> bool {
        self.connected
    }

    /// Would this datagram (from an unknown address) be taken by this peer? Used once per new
    /// remote address, after the STUN username pointed here.
    pub fn accepts(
        &self,
        now: Instant,
        (transport, source): (Transport, SocketAddr),
        destination: SocketAddr,
        data: &[u8],
    ) -> bool {
        receive_input(now, (transport, source), destination, data)
            .is_some_and(|input| self.rtc.accepts(&input))
    }

    /// Feed a datagram (over TCP: one RFC 4571 frame's contents).
    pub fn handle_datagram(
        &mut self,
        now: Instant,
        (transport, source): (Transport, SocketAddr),
        destination: SocketAddr,
        data: &[u8],
    ) -> Received {
        if self.replays.seen(data) {
            return Received::Replayed;
        }
        let Some(input) = receive_input(now, (transport, source), destination, data) else {
            return Received::Malformed;
        };
        // Only UDP paths move with a NAT rebinding (a new TCP connection is a new check).
        let moved = match stun::nomination_priority(data) {
            Some(priority) if transport == Transport::Udp && self.rtc.accepts(&input) => {
                self.moves.nominating(&mut self.rtc, source, priority)
            }
            _ => None,
        };
        match self.rtc.handle_input(input) {
            Ok(()) if moved.is_some() => Received::Moved,
            Ok(()) if self.is_unmapped_rtp(data) => Received::Unmapped,
            Ok(()) => Received::Taken,
            Err(_) => Received::Rejected,
        }
    }

    /// Is `data` an RTP packet on an SSRC str0m mapped to no stream? Looked up in str0m once
    /// per SSRC this peer has not resolved yet (main and RTX alike).
    fn is_unmapped_rtp(&mut self, data: &[u8]) -> bool {
        let Some(ssrc) = rtp_ssrc(data) else {
            return false;
        };
        if self.rx.find(ssrc).is_some() {
            return false;
        }
        let mut api = self.rtc.direct_api();
        match api.stream_rx(&Ssrc::from(ssrc)) {
            Some(_) => false,
            // An RTX SSRC is known through its main stream.
            None => !self.rx.is_rtx(ssrc),
        }
    }

    /// Let time pass.
    pub fn handle_timeout(&mut self, now: Instant) {
        // A timeout never fails for a live Rtc; an error here means it is dead, which poll reports.
        let _ = self.rtc.handle_input(Input::Timeout(now));
    }

    /// Drain one output. Call until [`PeerEvent::Timeout`]. An RTP packet comes out in a buffer
    /// of `buffers`; the one not used is handed back when the poll ends.
    pub(crate) fn poll(&mut self, buffers: &mut DatagramBuffers) -> PeerEvent {
        if self.rtc.wants_datagram_buffer() {
            self.rtc.give_datagram_buffer(buffers.take());
        }
        loop {
            let out = match self.rtc.poll_output() {
                Ok(o) => o,
                Err(_) => {
                    self.return_buffer(buffers);
                    return PeerEvent::Disconnected;
                }
            };
            match out {
                Output::Timeout(t) => {
                    self.return_buffer(buffers);
                    if !self.rtc.is_alive() {
                        return PeerEvent::Disconnected;
                    }
                    return PeerEvent::Timeout(t);
                }
                Output::Transmit(t) => {
                    if !stun::is_stun(&t.contents) {
                        self.sending_to = Some((t.destination, t.proto));
                    }
                    return PeerEvent::Transmit(Datagram::from(t));
                }
                Output::Event(e) => {
                    if let Some(ev) = self.event(e) {
                        return ev;
                    }
                }
            }
        }
    }

    /// The poll is over: its unused spare buffer goes back to the pool.
    fn return_buffer(&mut self, buffers: &mut DatagramBuffers) {
        if let Some(buffer) = self.rtc.take_datagram_buffer() {
            buffers.give(buffer);
        }
    }

    fn event(&mut self, e: Event) -> Option<PeerEvent> {
        match e {
            Event::Connected => {
                self.connected = true;
                let path = self
                    .sending_to
                    .map(|(remote, proto)| self.signalled.path(remote, proto));
                Some(PeerEvent::Connected(path))
            }
            // Before the peer ever connected, ICE "disconnected" only means that str0m's ICE-lite
            // agent dropped the candidate pairs the offer's candidates formed (15 s after they
            // were formed without a check); an offer without candidates forms none and never
            // gets there. The shard's connect timeout ends every unconnected session alike, and
            // a late check still forms a new pair. Once connected it is ICE consent lost.
            Event::IceConnectionStateChange(IceConnectionState::Disconnected) if self.connected => {
                Some(PeerEvent::Disconnected)
            }
            Event::Closed => Some(PeerEvent::Disconnected),
            Event::RtpPacket(p) => {
                let ssrc = *p.header.ssrc;
                // Authenticated by str0m: only now does it count as seen.
                self.replays.mark(ssrc, p.header.sequence_number);
                let (kind, layer) = self.rx_track(p.header.ssrc)?;
                let ext = &p.header.ext_vals;
                Some(PeerEvent::Rtp(RtpIn {
                    kind,
                    ssrc,
                    pt: *p.header.payload_type,
                    seq: *p.seq_no,
                    ts: p.header.timestamp,
                    marker: p.header.marker,
                    layer,
                    payload: p.payload,
                    ext: ForwardedExt {
                        audio_level: ext.audio_level,
                        voice_activity: ext.voice_activity,
                        video_orientation: ext.video_orientation.map(|o| o as u8),
                    },
                }))
            }
            Event::KeyframeRequest(r) => {
                let section = self.slots.iter().position(|s| s.mid == r.mid)?;
                Some(PeerEvent::KeyframeRequest {
                    kind: self.slots[section].kind,
                    section,
                })
            }
            Event::ChannelOpen(id, label) => {
                if label != ROOM_CHANNEL || self.channel.is_some() {
                    return None;
                }
                self.channel = Some(id);
                Some(PeerEvent::ChannelOpen)
            }
            Event::ChannelData(d) if Some(d.id) == self.channel => {
                Some(PeerEvent::ChannelMessage {
                    binary: d.binary,
                    data: d.data,
                })
            }
            Event::ChannelClose(id) if Some(id) == self.channel => {
                self.channel = None;
                None
            }
            Event::EgressBitrateEstimate(
                BweKind::Twcc { estimate, .. } | BweKind::Remb { estimate, .. },
            ) => Some(PeerEvent::Estimate(estimate.as_u64())),
            _ => None,
        }
    }

    /// The track and layer of an incoming (main) SSRC: from the cache, else from str0m's
    /// stream (its mid and rid) once.
    fn rx_track(&mut self, ssrc: Ssrc) -> Option<(TrackKind, u8)> {
        if let Some(found) = self.rx.find(*ssrc) {
            return Some(found);
        }
        let mut api = self.rtc.direct_api();
        let stream = api.stream_rx(&ssrc)?;
        let (mid, rid, rtx) = (stream.mid(), stream.rid(), stream.rtx());
        let kind = self.slots.iter().find(|s| s.mid == mid)?.kind;
        let layer = match rid {
            Some(rid) => self.layers.iter().position(|l| *l == *rid)? as u8,
            None => 0,
        };
        self.rx.insert(*ssrc, rtx.map(|r| *r), kind, layer);
        Some((kind, layer))
    }

    /// Send one forwarded packet on the stream of section `section` ([`Peer::section_for`],
    /// [`SlotSpec::section`]) at `now`: at once where str0m can ([`Forwarded::Sent`], its
    /// datagram protected into a buffer from `buffer`), else queued for [`Peer::poll`]; queued
    /// too when the peer needs a buffer and `buffer` has none.
    pub(crate) fn send_rtp(
        &mut self,
        section: usize,
        packet: OutRtp,
        now: Instant,
        buffer: impl FnOnce() -> Option<Vec<u8>>,
    ) -> Forwarded {
        let Some((ssrc, pt)) = self.slots.get(section).and_then(|s| s.tx) else {
            return Forwarded::Not;
        };
        let ext_vals = ExtensionValues {
            audio_level: packet.ext.audio_level,
            voice_activity: packet.ext.voice_activity,
            video_orientation: packet.ext.video_orientation.map(Into::into),
            ..Default::default()
        };
        let mut write = RtpWrite::new(pt, SeqNo::from(packet.seq), packet.ts, now, packet.payload)
            .marker(packet.marker)
            .ext_vals(ext_vals)
            .nackable(true);
        if let Some(patch) = packet.vp8 {
            write = write.vp8_patch(patch);
        }
        let lent = !self.rtc.wants_datagram_buffer()
            || buffer().map(|b| self.rtc.give_datagram_buffer(b)).is_some();
        let sent = if lent {
            self.rtc.send_rtp(ssrc, write, now)
        } else {
            // No buffer to send it in now: queued, it goes out in the drain, in a buffer of
            // the fan-out before it, which the engine has given back by then.
            self.rtc.queue_rtp(ssrc, write)
        };
        match sent {
            SendRtp::Sent(t) => {
                self.sending_to = Some((t.destination, t.proto));
                Forwarded::Sent(Datagram::from(t))
            }
            SendRtp::Queued => Forwarded::Queued,
            SendRtp::NoStream => Forwarded::Not,
        }
    }

    /// Ask this publisher for a keyframe on its `kind` track, simulcast layer `layer` (PLI).
    pub fn request_keyframe(&mut self, kind: TrackKind, layer: u8) {
        let Some(mid) = self
            .slots
            .iter()
            .find(|s| s.kind == kind && s.remote_sends)
            .map(|s| s.mid)
        else {
            return;
        };
        let rid = match kind {
            TrackKind::Video => self
                .layers
                .get(usize::from(layer))
                .map(|r| Rid::from(r.as_str())),
            TrackKind::Audio => None,
        };
        if let Some(rx) = self.rtc.direct_api().stream_rx_by_mid(mid, rid) {
            rx.request_keyframe(KeyframeRequestKind::Pli);
        }
    }

    /// Send a text message on the room's data channel. False when it is not open, or its
    /// buffer is over `max_buffered` bytes (a member that does not read its messages).
    pub fn send_message(&mut self, text: &str, max_buffered: usize) -> bool {
        let Some(id) = self.channel else {
            return false;
        };
        let Some(mut channel) = self.rtc.channel(id) else {
            return false;
        };
        if channel.buffered_amount() > max_buffered {
            return false;
        }
        channel.write(false, text.as_bytes()).unwrap_or(false)
    }

    /// Tell this viewer's bandwidth estimator what to sustain (`minimum`, filled with padding
    /// when media sends less) and what to probe towards (`desired`), in bits per second.
    pub fn set_bitrate_targets(&mut self, minimum: u64, desired: u64) {
        self.rtc
            .bwe()
            .set_bitrate(Bitrate::bps(minimum), Bitrate::bps(desired));
    }

    /// ICE restart (WHIP/WHEP PATCH with new remote credentials): switch to `local`.
    pub fn ice_restart(&mut self, remote: IceCreds, local: IceCreds) {
        let mut api = self.rtc.direct_api();
        api.set_remote_ice_credentials(remote);
        self.ufrag = local.ufrag.clone();
        api.set_local_ice_credentials(local);
    }

    /// Close the connection (sends RTCP BYE and a DTLS close_notify where it can; drain
    /// [`Peer::poll`] to get them out).
    pub fn close(&mut self) {
        // `disconnect` would go inert at once and send nothing.
        if self.rtc.close().is_err() {
            self.rtc.disconnect();
        }
    }
}

/// A received datagram as str0m input; `None` when it is not STUN, DTLS, RTP or RTCP.
fn receive_input<'a>(
    now: Instant,
    (transport, source): (Transport, SocketAddr),
    destination: SocketAddr,
    data: &'a [u8],
) -> Option<Input<'a>> {
    Some(Input::Receive(
        now,
        Receive {
            proto: match transport {
                Transport::Udp => Protocol::Udp,
                Transport::Tcp => Protocol::Tcp,
            },
            source,
            destination,
            contents: data.try_into().ok()?,
        },
    ))
}

fn base_config(setup: &PeerSetup) -> RtcConfig {
    RtcConfig::new()
        .set_ice_lite(true)
        .set_rtp_mode(true)
        .set_dtls_cert(setup.cert.clone())
        .set_local_ice_credentials(setup.ice.clone())
        .set_stats_interval(None)
        .clear_codecs()
}

/// `config` without the transport-wide sequence number extension (transport-cc), which only
/// bandwidth estimation reads.
fn without_transport_cc(mut config: RtcConfig) -> RtcConfig {
    let mut exts = ExtensionMap::empty();
    for (id, ext) in config.extension_map().iter() {
        if *ext != Extension::TransportSequenceNumber {
            exts.set(id, ext.clone());
        }
    }
    config.set_extension_map(exts)
}

fn codec_of(name: CodecName) -> Codec {
    match name {
        CodecName::Opus => Codec::Opus,
        CodecName::H264 => Codec::H264,
        CodecName::Vp8 => Codec::Vp8,
        CodecName::Vp9 => Codec::Vp9,
        CodecName::Av1 => Codec::Av1,
    }
}

fn add_codec(config: &mut RtcConfig, c: &OfferedCodec) -> PayloadParams {
    let (clock, channels) = match c.name {
        CodecName::Opus => (Frequency::FORTY_EIGHT_KHZ, Some(c.channels.unwrap_or(2))),
        _ => (Frequency::NINETY_KHZ, None),
    };
    config.codec_config().add_config(
        Pt::from(c.pt),
        c.rtx.map(Pt::from),
        codec_of(c.name),
        clock,
        channels,
        FormatParams::parse_line(&c.fmtp),
    );
    *config
        .codec_config()
        .params()
        .last()
        .expect("a codec was just added")
}

fn add_params(config: &mut RtcConfig, p: PayloadParams) {
    let spec = p.spec();
    config.codec_config().add_config(
        p.pt(),
        p.resend(),
        spec.codec,
        spec.clock_rate,
        spec.channels,
        spec.format,
    );
}

/// Can a viewer that offers `offered` decode what the publisher sends as `track`?
fn compatible(track: &OfferedCodec, offered: &OfferedCodec) -> bool {
    use crate::sdp::fmtp_value;
    match track.name {
        CodecName::H264 => {
            // Same profile (the first two bytes of profile-level-id, constrained baseline and
            // baseline decode each other's streams as browsers treat them); levels are
            // asymmetric in practice (level-asymmetry-allowed).
            let profile = |f: &str| {
                fmtp_value(f, "profile-level-id")
                    .and_then(|p| u32::from_str_radix(p, 16).ok())
                    .map(|p| p >> 16)
                    .unwrap_or(0x42)
            };
            let (a, b) = (profile(&track.fmtp), profile(&offered.fmtp));
            a == b || (a == 0x42 && b == 0x42)
        }
        CodecName::Vp9 => {
            let id = |f: &str| fmtp_value(f, "profile-id").unwrap_or("0").to_string();
            id(&track.fmtp) == id(&offered.fmtp)
        }
        _ => true,
    }
}

/// A parser's message on one line, without the memory addresses combine puts in it.
fn one_line(message: &str) -> String {
    message
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && *l != "sdp line")
        .map(|l| match l.find(" at PointerOffset(") {
            Some(i) => &l[..i],
            None => l,
        })
        .collect::<Vec<_>>()
        .join("; ")
}

fn add_end_of_candidates(answer: &str) -> String {
    // After each media section's candidates (str0m writes them per section).
    let mut out = String::with_capacity(answer.len() + 64);
    let mut in_media = false;
    for line in answer.split_inclusive('\n') {
        if line.starts_with("m=") && in_media {
            out.push_str("a=end-of-candidates\r\n");
        }
        if line.starts_with("m=") {
            in_media = true;
        }
        out.push_str(line);
    }
    if in_media {
        out.push_str("a=end-of-candidates\r\n");
    }
    out
}

/// The SSRCs of an RTP datagram's sender, if `data` is RTP (not RTCP).
fn rtp_ssrc(data: &[u8]) -> Option<u32> {
    if data.len() < 12 || data[0] >> 6 != 2 || (64..96).contains(&(data[1] & 0x7f)) {
        return None;
    }
    Some(u32::from_be_bytes([data[8], data[9], data[10], data[11]]))
}

/// Incoming SSRCs a publisher's peer resolved: (main SSRC, its RTX SSRC, kind, layer). A
/// publisher sends at most audio plus [`MAX_LAYERS`] video layers; the oldest entry goes when
/// it is full (a publisher that changes SSRC).
#[derive(Debug, Default, Clone, Copy)]
struct RxSsrcs {
    entries: [Option<RxSsrc>; MAX_LAYERS + 1],
    next: usize,
}

#[derive(Debug, Clone, Copy)]
struct RxSsrc {
    ssrc: u32,
    rtx: Option<u32>,
    kind: TrackKind,
    layer: u8,
}

impl RxSsrcs {
    fn find(&self, ssrc: u32) -> Option<(TrackKind, u8)> {
        self.entries
            .iter()
            .flatten()
            .find(|e| e.ssrc == ssrc)
            .map(|e| (e.kind, e.layer))
    }

    fn is_rtx(&self, ssrc: u32) -> bool {
        self.entries.iter().flatten().any(|e| e.rtx == Some(ssrc))
    }

    fn insert(&mut self, ssrc: u32, rtx: Option<u32>, kind: TrackKind, layer: u8) {
        self.entries[self.next] = Some(RxSsrc {
            ssrc,
            rtx,
            kind,
            layer,
        });
        self.next = (self.next + 1) % self.entries.len();
    }
}

/// Sequence numbers of the RTP packets a publisher delivered (after SRTP authentication), per
/// SSRC, so a replayed SRTP packet is recognised from its clear header and counted instead of
/// being silently dropped inside str0m. A forged header cannot poison it: only authenticated
/// packets are marked.
#[derive(Debug, Default, Clone, Copy)]
struct ReplayWindows {
    /// (ssrc, highest sequence number, bit i set = highest - i was delivered).
    windows: [(u32, u16, u64); 4],
    next: usize,
}

impl ReplayWindows {
    fn mark(&mut self, ssrc: u32, seq: u16) {
        let i = match self.windows.iter().position(|w| w.0 == ssrc && w.2 != 0) {
            Some(i) => i,
            None => {
                let i = self.next;
                self.next = (self.next + 1) % self.windows.len();
                self.windows[i] = (ssrc, seq, 1);
                return;
            }
        };
        let (_, max, bits) = &mut self.windows[i];
        let ahead = seq.wrapping_sub(*max);
        if ahead != 0 && ahead < 0x8000 {
            *bits = if ahead >= 64 { 0 } else { *bits << ahead };
            *bits |= 1;
            *max = seq;
        } else {
            let behind = max.wrapping_sub(seq);
            if behind < 64 {
                *bits |= 1 << behind;
            }
        }
    }

    /// Is `data` an RTP packet (not RTCP) already delivered?
    fn seen(&self, data: &[u8]) -> bool {
        if data.len() < 12 || data[0] >> 6 != 2 || (64..96).contains(&(data[1] & 0x7f)) {
            return false;
        }
        let seq = u16::from_be_bytes([data[2], data[3]]);
        let ssrc = u32::from_be_bytes([data[8], data[9], data[10], data[11]]);
        self.windows.iter().any(|&(s, max, bits)| {
            let behind = max.wrapping_sub(seq);
            s == ssrc && bits != 0 && behind < 64 && bits & (1 << behind) != 0
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rtp(ssrc: u32, seq: u16) -> Vec<u8> {
        let mut p = vec![0x80, 96];
        p.extend_from_slice(&seq.to_be_bytes());
        p.extend_from_slice(&[0; 4]);
        p.extend_from_slice(&ssrc.to_be_bytes());
        p.extend_from_slice(&[1, 2, 3]);
        p
    }

    #[test]
    fn certificate_is_ecdsa_p256() {
        // aiortc accepts only ECDSA certificates.
        let cert = generate_certificate().expect("a certificate");
        let ec_public_key = [0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01];
        let prime256v1 = [0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];
        let has = |needle: &[u8]| cert.certificate.windows(needle.len()).any(|w| w == needle);
        assert!(has(&ec_public_key) && has(&prime256v1));
    }

    fn test_setup() -> PeerSetup {
        PeerSetup {
            cert: generate_certificate().expect("a certificate"),
            candidates: vec!["192.0.2.1:5000".parse().unwrap()],
            tcp_candidates: Vec::new(),
            ice: IceCreds {
                ufrag: "h0s1".into(),
                pass: "testpasswordtestpassword".into(),
            },
        }
    }

    /// A browser-shaped member offer (str0m as the browser): audio and video sent, `video`
    /// and `audio` receive-only slots, a data channel.
    #[allow(
        clippy::disallowed_methods,
        reason = "a test picks its own base instant"
    )]
    fn member_offer(h264: bool, video: usize, audio: usize) -> String {
        use str0m::media::Direction as Dir;
        let mut config = RtcConfig::new().clear_codecs().enable_opus(true, false);
        config = if h264 {
            config.enable_h264(true)
        } else {
            config.enable_vp8(true)
        };
        let mut client = config.build(Instant::now());
        let mut api = client.sdp_api();
        api.add_media(MediaKind::Audio, Dir::SendOnly, None, None, None);
        api.add_media(MediaKind::Video, Dir::SendOnly, None, None, None);
        for _ in 0..video {
            api.add_media(MediaKind::Video, Dir::RecvOnly, None, None, None);
        }
        for _ in 0..audio {
            api.add_media(MediaKind::Audio, Dir::RecvOnly, None, None, None);
        }
        api.add_channel(ROOM_CHANNEL.into());
        let (offer, _) = api.apply().expect("an offer");
        offer.to_sdp_string()
    }

    #[test]
    #[allow(
        clippy::disallowed_methods,
        reason = "a test picks its own base instant"
    )]
    fn a_member_offer_publishes_its_sending_sections_and_takes_its_recvonly_ones_as_slots() {
        let offer = member_offer(false, 3, 2);
        let (_peer, answer, m) =
            Peer::member(&test_setup(), &offer, &[None, None], 16, Instant::now())
                .expect("answered");
        assert!(m.data_channel);
        assert!(answer.contains("m=application"), "{answer}");
        assert!(m.published.tracks.iter().all(Option::is_some));
        let kinds: Vec<TrackKind> = m.slots.iter().map(|s| s.kind).collect();
        use TrackKind::{Audio, Video};
        assert_eq!(kinds, [Video, Video, Video, Audio, Audio]);
        // Slots are sections 2.. (after the two sending ones), each with its own mid.
        assert_eq!(m.slots[0].section, 2);
        let room = m.codecs.clone();
        assert_eq!(room[1].as_ref().map(|c| c.name), Some(CodecName::Vp8));

        // A later member must take the room's codec: one offering only H264 is refused.
        let h264 = member_offer(true, 1, 1);
        let e = Peer::member(&test_setup(), &h264, &room, 16, Instant::now()).unwrap_err();
        assert!(
            matches!(e, SetupError::CodecMismatch { kind: Video, .. }),
            "{e}"
        );
        // Too many slots.
        let many = member_offer(false, 5, 1);
        let e = Peer::member(&test_setup(), &many, &room, 4, Instant::now()).unwrap_err();
        assert_eq!(
            e.to_string(),
            "5 video slots (recvonly sections): at most 4"
        );
    }

    #[test]
    #[allow(
        clippy::disallowed_methods,
        reason = "a test picks its own base instant"
    )]
    fn obs_simulcast_offer_is_answered_with_its_rids_in_the_same_count() {
        // OBS 32.1 fails the session unless the answer lists exactly the rids it sent.
        let offer = include_str!("../../../tests/fixtures/sdp/obs32-simulcast-whip.sdp");
        let setup = PeerSetup {
            cert: generate_certificate().expect("a certificate"),
            candidates: vec!["192.0.2.1:5000".parse().unwrap()],
            tcp_candidates: Vec::new(),
            ice: IceCreds {
                ufrag: "h0s1".into(),
                pass: "testpasswordtestpassword".into(),
            },
        };
        let (_peer, answer, published) =
            Peer::publisher(&setup, offer, Instant::now()).expect("answered");
        assert_eq!(published.layers, ["0", "1", "2"]);
        let lines: Vec<&str> = answer.lines().collect();
        let rids: Vec<&str> = lines
            .iter()
            .filter_map(|l| l.strip_prefix("a=rid:"))
            .collect();
        assert_eq!(rids, ["0 recv", "1 recv", "2 recv"], "{answer}");
        let simulcast: Vec<&str> = lines
            .iter()
            .filter_map(|l| l.strip_prefix("a=simulcast:"))
            .collect();
        assert_eq!(simulcast, ["recv 0;1;2"], "{answer}");
    }

    #[test]
    #[allow(
        clippy::disallowed_methods,
        reason = "a test picks its own base instant"
    )]
    fn an_answer_carries_a_passive_tcp_candidate_after_the_udp_one_at_a_lower_priority() {
        let setup = PeerSetup {
            tcp_candidates: vec!["192.0.2.1:5000".parse().unwrap()],
            ..test_setup()
        };
        let (_peer, answer, _) = Peer::member(
            &setup,
            &member_offer(false, 1, 0),
            &[None, None],
            16,
            Instant::now(),
        )
        .expect("answered");
        let first_section = answer.split("m=").nth(1).expect("a media section");
        let candidates: Vec<Candidate> = first_section
            .lines()
            .filter_map(|l| l.strip_prefix("a="))
            .filter(|l| l.starts_with("candidate:"))
            .map(|l| Candidate::from_sdp_string(l).expect("a candidate"))
            .collect();
        assert_eq!(candidates.len(), 2, "{answer}");
        let (udp, tcp) = (&candidates[0], &candidates[1]);
        assert_eq!(udp.proto(), Protocol::Udp);
        assert_eq!(tcp.proto(), Protocol::Tcp);
        assert_eq!(tcp.tcptype(), Some(TcpType::Passive));
        assert_eq!(tcp.addr(), udp.addr());
        assert!(tcp.prio() < udp.prio());

        // Without TCP addresses the answer is UDP only, as before.
        let (_peer, answer, _) = Peer::member(
            &test_setup(),
            &member_offer(false, 1, 0),
            &[None, None],
            16,
            Instant::now(),
        )
        .expect("answered");
        assert!(!answer.contains(" tcp "), "{answer}");
    }

    #[test]
    fn replay_window() {
        let mut w = ReplayWindows::default();
        assert!(!w.seen(&rtp(7, 10)));
        w.mark(7, 10);
        assert!(w.seen(&rtp(7, 10)));
        assert!(!w.seen(&rtp(7, 11)), "not delivered yet");
        assert!(!w.seen(&rtp(8, 10)), "other SSRC");
        w.mark(7, 12);
        w.mark(7, 11); // late, filled in
        assert!(w.seen(&rtp(7, 11)) && w.seen(&rtp(7, 12)) && w.seen(&rtp(7, 10)));
        w.mark(7, 200); // jump: the old window is gone, unknown packets pass to str0m
        assert!(!w.seen(&rtp(7, 12)) && w.seen(&rtp(7, 200)));
        w.mark(7, 5); // wrapped behind by more than the window: ignored
        assert!(!w.seen(&rtp(7, 5)));
        // Wrap-around of the 16-bit sequence number.
        w.mark(9, 65535);
        w.mark(9, 0);
        assert!(w.seen(&rtp(9, 65535)) && w.seen(&rtp(9, 0)));
        // RTCP (PT 200 → 72 with the marker bit cleared) and short packets never match.
        let mut rtcp = rtp(7, 200);
        rtcp[1] = 200;
        assert!(!w.seen(&rtcp));
        assert!(!w.seen(&[0x80, 96, 0]));
    }
}
