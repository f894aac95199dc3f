//! Simulated clients: plain str0m [`Rtc`]s in RTP mode with full ICE, as a browser or OBS would
//! be — no ringcast code. A [`Client`] is a publisher (sendonly audio + video, writing synthetic
//! media) or a viewer (recvonly audio + video, recording every packet it gets).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use ringcast_core::{SessionId, ShardId, StreamId, TrackKind, Transport};
use str0m::change::{SdpAnswer, SdpOffer, SdpPendingOffer};
use str0m::config::DtlsCert;
use str0m::format::Codec;
use str0m::media::{
    Direction, KeyframeRequestKind, MediaKind, Mid, Pt, Rid, Simulcast, SimulcastLayer,
};
use str0m::net::{Protocol, Receive, TcpType};
use str0m::rtp::{ExtensionValues, RtpWrite, Ssrc};
use str0m::{Candidate, Event, IceConnectionState, Input, Output, Rtc, RtcConfig};

use crate::media::{self, VideoCodec};
use crate::member::{Member, MemberConfig};
use crate::net::Link;

/// Index of a client in its [`crate::Sim`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ClientId(pub usize);

/// How a simulated publisher behaves.
#[derive(Debug, Clone)]
pub struct PublisherConfig {
    /// The only video codec its offer has.
    pub codec: VideoCodec,
    /// Send audio.
    pub audio: bool,
    /// Send video.
    pub video: bool,
    /// A keyframe this often (and on every keyframe request).
    pub keyframe_interval: Duration,
    /// Answer keyframe requests (PLI/FIR) with a keyframe at the next frame (OBS does not).
    pub honor_keyframe_requests: bool,
    /// A keyframe request that comes within this long of the last one honored, for any layer,
    /// is ignored, as Chromium's encoder does within 300 ms (zero: every one is honored).
    pub keyframe_request_gap: Duration,
    /// Start writing media as soon as it is connected (otherwise [`crate::Sim::set_media`]).
    pub start_on_connect: bool,
    /// Time between video frames.
    pub frame_interval: Duration,
    /// Size of a keyframe, bytes (split into packets of at most [`media::MAX_PAYLOAD`]).
    pub keyframe_size: usize,
    /// Size range of a delta frame, bytes.
    pub delta_size: (usize, usize),
    /// Simulcast layers, in the order the offer lists them (empty: one plain video stream).
    /// Each layer's frames are the sizes above times its [`SimLayer::scale`].
    pub layers: Vec<SimLayer>,
    /// VP8 payload descriptors carry picture numbers (15-bit PictureID, TL0PICIDX, KEYIDX), as
    /// a browser's encoder writes them: each layer numbers its own frames from its own seeded
    /// random start, so a viewer moved between layers or publishers sees them jump unless the
    /// SFU rewrites them. Off: one-byte descriptors.
    pub vp8_picture_ids: bool,
}

/// One simulcast layer of a simulated publisher: its own SSRC, sequence numbers and
/// timestamps, and the rid header extension on its packets, as a browser sends.
#[derive(Debug, Clone, PartialEq)]
pub struct SimLayer {
    /// Its rid (`a=rid:<rid> send`).
    pub rid: String,
    /// Its frame sizes relative to [`PublisherConfig::keyframe_size`] and
    /// [`PublisherConfig::delta_size`].
    pub scale: f64,
    /// Width and height written into its keyframes (VP8 frame header, H264 SPS).
    pub resolution: (u16, u16),
    /// In the offer's `a=rid` and `a=simulcast` lines. An unannounced layer is sent anyway,
    /// on an SSRC of its own with its rid: a publisher that sends a rid it did not announce.
    pub announced: bool,
    /// Sends keyframes. A layer without them never does, not even when asked: a layer nobody
    /// can start decoding.
    pub keyframes: bool,
}

impl SimLayer {
    /// An announced layer with keyframes.
    pub fn new(rid: &str, scale: f64, resolution: (u16, u16)) -> Self {
        SimLayer {
            rid: rid.to_string(),
            scale,
            resolution,
            announced: true,
            keyframes: true,
        }
    }
}

impl Default for PublisherConfig {
    fn default() -> Self {
        PublisherConfig {
            codec: VideoCodec::Vp8,
            audio: true,
            video: true,
            keyframe_interval: Duration::from_secs(2),
            honor_keyframe_requests: true,
            keyframe_request_gap: Duration::ZERO,
            start_on_connect: true,
            frame_interval: Duration::from_millis(33),
            keyframe_size: 5000,
            delta_size: (400, 1800),
            layers: Vec::new(),
            vp8_picture_ids: false,
        }
    }
}

impl PublisherConfig {
    /// Video of about 2.5 Mbit/s at 30 fps (frames of ~10 KB, 9 full-size packets each),
    /// keyframes of 30 KB: the load the benchmarks measure.
    pub fn video_2500kbps() -> Self {
        PublisherConfig {
            delta_size: (9_000, 11_000),
            keyframe_size: 30_000,
            ..PublisherConfig::default()
        }
    }

    /// Three VP8 layers as a browser sends them (`sendEncodings` q, h, f, smallest first):
    /// about 150 kbit/s at 320x180, 600 kbit/s at 640x360 and 2.5 Mbit/s at 1280x720, at 30
    /// fps, keyframes on all three together.
    pub fn simulcast_3() -> Self {
        PublisherConfig {
            layers: vec![
                SimLayer::new("q", 0.06, (320, 180)),
                SimLayer::new("h", 0.24, (640, 360)),
                SimLayer::new("f", 1.0, (1280, 720)),
            ],
            ..PublisherConfig::video_2500kbps()
        }
    }

    /// `n` layers as OBS 32.1 sends them: rids `0` (1280x720, ~2.5 Mbit/s) to `n-1`, layer
    /// `i` at (n-i)/n of the size (and about its square of the bitrate), biggest first.
    pub fn simulcast_obs(n: u16) -> Self {
        let n = n.max(1);
        PublisherConfig {
            layers: (0..n)
                .map(|i| {
                    let f = f64::from(n - i) / f64::from(n);
                    let size = (1280 * (n - i) / n, 720 * (n - i) / n);
                    SimLayer::new(&i.to_string(), f * f, size)
                })
                .collect(),
            ..PublisherConfig::video_2500kbps()
        }
    }

    /// The index in [`PublisherConfig::layers`] of the layer named `rid`.
    pub fn layer_index(&self, rid: &str) -> Option<usize> {
        self.layers.iter().position(|l| l.rid == rid)
    }
}

/// One packet a publisher wrote.
#[derive(Debug, Clone)]
pub struct Sent {
    /// When.
    pub at: Instant,
    /// Its (extended) sequence number.
    pub seq: u64,
    /// RTP timestamp.
    pub ts: u32,
    /// Marker bit.
    pub marker: bool,
    /// First packet of a keyframe.
    pub keyframe: bool,
    /// The payload.
    pub payload: Arc<[u8]>,
}

/// One packet a viewer received (`Event::RtpPacket`).
#[derive(Debug, Clone)]
pub struct Received {
    /// When.
    pub at: Instant,
    /// Extended sequence number (str0m unwraps the 16-bit one).
    pub seq: u64,
    /// RTP timestamp.
    pub ts: u32,
    /// SSRC.
    pub ssrc: u32,
    /// Payload type.
    pub pt: u8,
    /// Marker bit.
    pub marker: bool,
    /// The payload.
    pub payload: Arc<[u8]>,
}

/// What a publisher keeps per simulcast layer.
#[derive(Debug)]
pub struct SendLayer {
    /// Its rid.
    pub rid: String,
    /// The SSRC it is sent on (`None` until the answer gave it a send stream).
    pub ssrc: Option<u32>,
    seq: u64,
    ts: u32,
    keyframe_wanted: bool,
    /// The VP8 picture numbers of its last frame (with [`PublisherConfig::vp8_picture_ids`]).
    vp8: Option<media::Vp8Picture>,
    /// Every packet written on it.
    pub sent: Vec<Sent>,
    /// When keyframe requests for it arrived.
    pub keyframe_requests: Vec<Instant>,
    /// When its keyframes were sent and whether a request for it caused them.
    pub keyframes: Vec<(Instant, bool)>,
}

/// What a publisher keeps.
#[derive(Debug)]
pub struct Publisher {
    /// Its settings.
    pub config: PublisherConfig,
    /// Unique per publisher client; in every payload's [`media::Tag`].
    pub generation: u32,
    mids: [Option<Mid>; 2],
    pts: [Option<Pt>; 2],
    seq: [u64; 2],
    ts: [u32; 2],
    frame: u32,
    audio_number: u32,
    next_frame_at: Option<Instant>,
    next_audio_at: Option<Instant>,
    last_keyframe_at: Option<Instant>,
    keyframe_wanted: bool,
    /// The VP8 picture numbers of the last frame without simulcast (with
    /// [`PublisherConfig::vp8_picture_ids`]).
    vp8: Option<media::Vp8Picture>,
    /// When the last keyframe request that was honored arrived.
    last_honored_request: Option<Instant>,
    /// The RFC 6464 audio level (0 loud .. 127 silence) written on its audio packets; none
    /// without the header extension.
    pub(crate) audio_level: Option<u8>,
    rng: StdRng,
    /// Writing media.
    pub sending: bool,
    /// Every packet written, per kind ([`TrackKind::index`]); with simulcast, the video of
    /// every layer in the order written (each layer alone: [`Publisher::layers`]).
    pub sent: [Vec<Sent>; 2],
    /// Simulcast layers, as [`PublisherConfig::layers`] (empty without simulcast).
    pub layers: Vec<SendLayer>,
    /// When keyframe requests arrived (`Event::KeyframeRequest`).
    pub keyframe_requests: Vec<Instant>,
    /// When keyframes were sent (on any layer) and whether a request caused them.
    pub keyframes: Vec<(Instant, bool)>,
}

/// What a viewer keeps.
#[derive(Debug)]
pub struct Viewer {
    mids: [Option<Mid>; 2],
    /// Every packet received, per kind ([`TrackKind::index`]), in arrival order.
    pub received: [Vec<Received>; 2],
    /// Packets whose SSRC matched neither media section.
    pub unknown: u64,
}

/// A publisher, a viewer or a room member.
#[derive(Debug)]
pub enum Role {
    /// Sends.
    Publisher(Box<Publisher>),
    /// Receives.
    Viewer(Box<Viewer>),
    /// Sends, receives on slots, talks over the room's data channel.
    Member(Box<Member>),
}

/// One simulated client: a str0m `Rtc`, its address, its links and what it did.
pub struct Client {
    /// Its index.
    pub id: ClientId,
    /// Its (simulated) address: where its `Rtc` sends from.
    pub addr: SocketAddr,
    /// What its network carries: UDP, or only TCP (its UDP is dropped both ways).
    pub transport: Transport,
    /// Where the shards see it send from: `addr`, or its NAT's mapping (see
    /// [`crate::Sim::rebind`]).
    pub public: SocketAddr,
    /// The shard it talks to.
    pub shard: ShardId,
    /// Its address on that shard.
    pub shard_addr: SocketAddr,
    /// Its session.
    pub session: SessionId,
    /// The stream it publishes or plays (a member: its own).
    pub stream: StreamId,
    /// A room member's participant id.
    pub participant: Option<String>,
    pub(crate) rtc: Rtc,
    /// Client → shard.
    pub up: Link,
    /// Shard → client.
    pub down: Link,
    pub(crate) deadline: Option<Instant>,
    pub(crate) wake: crate::Wake,
    /// When it was added.
    pub added_at: Instant,
    /// When str0m said `Event::Connected`.
    pub connected_at: Option<Instant>,
    /// ICE connection states it went through, with times.
    pub ice_states: Vec<(Instant, IceConnectionState)>,
    /// Cut off the network and frozen (see [`crate::Sim::vanish`]).
    pub detached: bool,
    /// Closed (removed, or its `Rtc` died).
    pub closed: bool,
    /// When str0m said `Event::Closed`: the shard closed the DTLS connection.
    pub remote_closed_at: Option<Instant>,
    /// Errors str0m returned while handling input.
    pub errors: Vec<String>,
    /// The last datagrams it sent, newest last (only while capturing).
    pub captured: Vec<Vec<u8>>,
    pub(crate) capture: usize,
    /// Publisher or viewer state.
    pub role: Role,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("id", &self.id)
            .field("addr", &self.addr)
            .field("session", &self.session)
            .field("connected_at", &self.connected_at)
            .finish_non_exhaustive()
    }
}

pub(crate) struct Built {
    pub rtc: Rtc,
    pub offer: SdpOffer,
    pub pending: SdpPendingOffer,
    /// The sending (publisher, member) or receiving (viewer) section of each kind.
    pub mids: [Option<Mid>; 2],
    /// A member's receive-only sections, in offer order.
    pub slots: Vec<(Mid, TrackKind)>,
}

/// What a new client is, with what it needs to start.
pub(crate) enum Spec {
    /// A viewer.
    Viewer,
    /// A publisher: its settings, its generation ([`Publisher::generation`]), its seed.
    Publisher(PublisherConfig, u32, u64),
    /// A room member: its settings, its generation, its seed.
    Member(Box<MemberConfig>, u32, u64),
}

/// Build a client `Rtc` and its offer: sendonly (publisher, only `codec` for video) or recvonly
/// (viewer, opus + VP8 + H264), over UDP.
#[cfg(test)]
pub(crate) fn build(
    now: Instant,
    cert: &DtlsCert,
    addr: SocketAddr,
    publish: Option<&PublisherConfig>,
) -> Built {
    build_on(now, cert, (Transport::Udp, addr), publish)
}

/// Like [`build`], with the client's one host candidate on `transport` (over TCP: an active
/// one, RFC 6544, as a browser whose network drops UDP offers).
pub(crate) fn build_on(
    now: Instant,
    cert: &DtlsCert,
    (transport, addr): (Transport, SocketAddr),
    publish: Option<&PublisherConfig>,
) -> Built {
    let mut config = RtcConfig::new()
        .set_rtp_mode(true)
        .set_dtls_cert(cert.clone())
        .set_stats_interval(None)
        .clear_codecs()
        .enable_opus(true, false);
    config = match publish.map(|p| p.codec) {
        Some(VideoCodec::Vp8) => config.enable_vp8(true),
        Some(VideoCodec::H264) => config.enable_h264(true),
        None => config.enable_vp8(true).enable_h264(true),
    };
    let mut rtc = config.build(now);
    let candidate = match transport {
        Transport::Udp => Candidate::host(addr, "udp"),
        Transport::Tcp => Candidate::builder()
            .tcp()
            .host(addr)
            .tcptype(TcpType::Active)
            .build(),
    };
    rtc.add_local_candidate(candidate.expect("host candidate"));
    let dir = if publish.is_some() {
        Direction::SendOnly
    } else {
        Direction::RecvOnly
    };
    let mut api = rtc.sdp_api();
    let mut mids = [None, None];
    let (audio, video) = publish.map_or((true, true), |p| (p.audio, p.video));
    if audio {
        mids[0] = Some(api.add_media(
            MediaKind::Audio,
            dir,
            Some("sim".into()),
            Some("a".into()),
            None,
        ));
    }
    if video {
        mids[1] = Some(api.add_media(
            MediaKind::Video,
            dir,
            Some("sim".into()),
            Some("v".into()),
            publish.and_then(simulcast),
        ));
    }
    let (offer, pending) = api.apply().expect("an offer");
    Built {
        rtc,
        offer,
        pending,
        mids,
        slots: Vec::new(),
    }
}

/// The send layers a publisher announces (`None` without simulcast).
pub(crate) fn simulcast(config: &PublisherConfig) -> Option<Simulcast> {
    let mut simulcast = Simulcast::new();
    for layer in config.layers.iter().filter(|l| l.announced) {
        simulcast.add_send_layer(SimulcastLayer::new(&layer.rid));
    }
    (!simulcast.send.is_empty()).then_some(simulcast)
}

impl Client {
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        id: ClientId,
        built: Built,
        answer: &str,
        addr: SocketAddr,
        shard: ShardId,
        shard_addr: SocketAddr,
        session: SessionId,
        stream: StreamId,
        up: Link,
        down: Link,
        now: Instant,
        spec: Spec,
    ) -> Client {
        let Built {
            mut rtc,
            pending,
            mids,
            slots,
            ..
        } = built;
        let answer = SdpAnswer::from_sdp_string(answer).expect("the shard's answer parses");
        rtc.sdp_api()
            .accept_answer(pending, answer)
            .expect("the shard's answer is accepted");
        let role = match spec {
            Spec::Publisher(config, generation, seed) => Role::Publisher(Box::new(Publisher::new(
                &mut rtc, mids, config, generation, seed,
            ))),
            Spec::Member(config, generation, seed) => {
                let MemberConfig {
                    send, audio_level, ..
                } = *config;
                let mut send = Publisher::new(&mut rtc, mids, send, generation, seed);
                send.audio_level = Some(audio_level);
                Role::Member(Box::new(Member::new(send, &slots)))
            }
            Spec::Viewer => Role::Viewer(Box::new(Viewer {
                mids,
                received: [Vec::new(), Vec::new()],
                unknown: 0,
            })),
        };
        Client {
            id,
            addr,
            transport: Transport::Udp,
            public: addr,
            shard,
            shard_addr,
            session,
            stream,
            participant: None,
            rtc,
            up,
            down,
            deadline: Some(now),
            wake: crate::Wake::default(),
            added_at: now,
            connected_at: None,
            ice_states: Vec::new(),
            detached: false,
            closed: false,
            remote_closed_at: None,
            errors: Vec::new(),
            captured: Vec::new(),
            capture: 0,
            role,
        }
    }

    /// The str0m `Rtc` (for inspection).
    pub fn rtc(&self) -> &Rtc {
        &self.rtc
    }

    /// Is it connected (ICE + DTLS)?
    pub fn is_connected(&self) -> bool {
        self.connected_at.is_some() && !self.closed
    }

    /// The publisher state (a member's sending side); panics for a viewer.
    pub fn publisher(&self) -> &Publisher {
        self.sender()
            .unwrap_or_else(|| panic!("client {:?} is a viewer", self.id))
    }

    pub(crate) fn publisher_mut(&mut self) -> &mut Publisher {
        let id = self.id;
        self.sender_mut()
            .unwrap_or_else(|| panic!("client {id:?} is a viewer"))
    }

    fn sender(&self) -> Option<&Publisher> {
        match &self.role {
            Role::Publisher(p) => Some(p),
            Role::Member(m) => Some(&m.send),
            Role::Viewer(_) => None,
        }
    }

    fn sender_mut(&mut self) -> Option<&mut Publisher> {
        match &mut self.role {
            Role::Publisher(p) => Some(p),
            Role::Member(m) => Some(&mut m.send),
            Role::Viewer(_) => None,
        }
    }

    /// The viewer state; panics for a publisher or a member.
    pub fn viewer(&self) -> &Viewer {
        match &self.role {
            Role::Viewer(v) => v,
            _ => panic!("client {:?} is not a viewer", self.id),
        }
    }

    /// The room member state; panics for a publisher or a viewer.
    pub fn member(&self) -> &Member {
        match &self.role {
            Role::Member(m) => m,
            _ => panic!("client {:?} is not a room member", self.id),
        }
    }

    pub(crate) fn member_mut(&mut self) -> &mut Member {
        let id = self.id;
        match &mut self.role {
            Role::Member(m) => m,
            _ => panic!("client {id:?} is not a room member"),
        }
    }

    /// What a publisher sent of `kind`.
    pub fn sent(&self, kind: TrackKind) -> &[Sent] {
        &self.publisher().sent[kind.index()]
    }

    /// What a simulcast publisher sent on each layer, in [`PublisherConfig::layers`] order
    /// (without simulcast: its one video stream) — what [`crate::check::layered`] takes.
    pub fn sent_layers(&self) -> Vec<&[Sent]> {
        let p = self.publisher();
        if p.layers.is_empty() {
            vec![&p.sent[TrackKind::Video.index()]]
        } else {
            p.layers.iter().map(|l| l.sent.as_slice()).collect()
        }
    }

    /// What a viewer received of `kind`.
    pub fn received(&self, kind: TrackKind) -> &[Received] {
        &self.viewer().received[kind.index()]
    }

    /// Feed a datagram.
    pub(crate) fn handle_datagram(&mut self, now: Instant, source: SocketAddr, data: &[u8]) {
        let proto = match self.transport {
            Transport::Udp => Protocol::Udp,
            Transport::Tcp => Protocol::Tcp,
        };
        let Ok(receive) = Receive::new(proto, source, self.addr, data) else {
            self.errors
                .push(format!("unparsable datagram from {source}"));
            return;
        };
        if let Err(e) = self.rtc.handle_input(Input::Receive(now, receive)) {
            self.errors.push(e.to_string());
        }
    }

    /// Let time pass.
    pub(crate) fn handle_timeout(&mut self, now: Instant) {
        self.wake.fed(now);
        if let Err(e) = self.rtc.handle_input(Input::Timeout(now)) {
            self.errors.push(e.to_string());
        }
    }

    /// One output of the `Rtc`: a datagram to send, an event (already recorded), or the end of
    /// the drain (its deadline noted; a dead `Rtc` marks the client closed).
    pub(crate) fn poll(&mut self, now: Instant) -> Polled {
        match self.rtc.poll_output() {
            Ok(Output::Transmit(t)) => {
                let contents: Vec<u8> = t.contents.to_vec();
                if self.capture > 0 {
                    if self.captured.len() == self.capture {
                        self.captured.remove(0);
                    }
                    self.captured.push(contents.clone());
                }
                Polled::Transmit(t.destination, contents)
            }
            Ok(Output::Timeout(t)) => {
                let t = self.wake.next(t);
                if !self.rtc.is_alive() {
                    self.closed = true;
                    self.deadline = None;
                } else {
                    self.deadline = Some(t);
                }
                Polled::Timeout
            }
            Ok(Output::Event(e)) => {
                self.event(now, e);
                Polled::Event
            }
            Err(e) => {
                self.errors.push(e.to_string());
                self.closed = true;
                self.deadline = None;
                Polled::Timeout
            }
        }
    }

    fn event(&mut self, now: Instant, e: Event) {
        match e {
            Event::Connected => {
                self.connected_at = Some(now);
                if let Some(p) = self.sender_mut()
                    && p.config.start_on_connect
                {
                    p.start(now);
                }
            }
            Event::IceConnectionStateChange(s) => self.ice_states.push((now, s)),
            Event::Closed => self.remote_closed_at = Some(now),
            Event::KeyframeRequest(request) => {
                if let Some(p) = self.sender_mut() {
                    p.keyframe_requests.push(now);
                    let honor = p.config.honor_keyframe_requests
                        && p.last_honored_request.is_none_or(|at| {
                            now.saturating_duration_since(at) >= p.config.keyframe_request_gap
                        });
                    if honor {
                        p.last_honored_request = Some(now);
                        p.keyframe_wanted = true;
                    }
                    // A request names its layer by rid; one without asks all of them.
                    for layer in &mut p.layers {
                        if request.rid.is_none_or(|r| *r == *layer.rid) {
                            layer.keyframe_requests.push(now);
                            layer.keyframe_wanted |= honor;
                        }
                    }
                }
            }
            Event::RtpPacket(packet) => {
                let mid = self
                    .rtc
                    .direct_api()
                    .stream_rx(&packet.header.ssrc)
                    .map(|s| s.mid());
                if let Role::Viewer(v) = &mut self.role {
                    let kind = TrackKind::ALL
                        .into_iter()
                        .find(|k| mid.is_some() && v.mids[k.index()] == mid);
                    let Some(kind) = kind else {
                        v.unknown += 1;
                        return;
                    };
                    v.received[kind.index()].push(Received {
                        at: now,
                        seq: *packet.seq_no,
                        ts: packet.header.timestamp,
                        ssrc: *packet.header.ssrc,
                        pt: *packet.header.payload_type,
                        marker: packet.header.marker,
                        payload: packet.payload,
                    });
                } else if let Role::Member(m) = &mut self.role {
                    m.receive(now, mid, packet);
                }
            }
            Event::ChannelOpen(id, label) => {
                if let Role::Member(m) = &mut self.role {
                    m.channel_opened(now, id, &label);
                }
            }
            Event::ChannelData(data) => {
                if let Role::Member(m) = &mut self.role {
                    m.channel_data(now, data);
                }
            }
            Event::ChannelClose(id) => {
                if let Role::Member(m) = &mut self.role {
                    m.channel_closed(now, id);
                }
            }
            _ => {}
        }
    }

    /// Ask the shard for a keyframe on this viewer's video (PLI). `false` if there is no
    /// receive stream yet.
    pub(crate) fn request_keyframe(&mut self) -> bool {
        let Role::Viewer(v) = &self.role else {
            return false;
        };
        let Some(mid) = v.mids[TrackKind::Video.index()] else {
            return false;
        };
        match self.rtc.direct_api().stream_rx_by_mid(mid, None) {
            Some(rx) => {
                rx.request_keyframe(KeyframeRequestKind::Pli);
                true
            }
            None => false,
        }
    }

    /// When this publisher next writes media.
    pub(crate) fn next_media_at(&self) -> Option<Instant> {
        if self.detached || self.closed {
            return None;
        }
        match self.sender() {
            Some(p) if p.sending => match (p.next_audio_at, p.next_frame_at) {
                (Some(a), Some(v)) => Some(a.min(v)),
                (a, v) => a.or(v),
            },
            _ => None,
        }
    }

    /// Write whatever media is due at `now`: an audio packet, or a whole video frame at once
    /// (as an encoder hands it over), calling `drain` after each packet written.
    pub(crate) fn write_due_media(&mut self, now: Instant, drain: &mut dyn FnMut(&mut Client)) {
        loop {
            let Some(p) = self.sender_mut() else {
                return;
            };
            let Some(packets) = p.due_packets(now) else {
                return;
            };
            for w in packets {
                if let Some(tx) = self.rtc.direct_api().stream_tx_by_mid(w.mid, w.rid) {
                    let mut write = RtpWrite::new(w.pt, w.seq.into(), w.ts, now, w.payload.clone())
                        .marker(w.marker)
                        .nackable(true);
                    if let Some(level) = w.audio_level {
                        write = write.ext_vals(ExtensionValues {
                            audio_level: Some(-(level.min(127) as i8)),
                            voice_activity: Some(level < VOICE_BELOW),
                            ..ExtensionValues::default()
                        });
                    }
                    tx.write_rtp(write);
                }
                drain(self);
            }
        }
    }
}

pub(crate) enum Polled {
    Transmit(SocketAddr, Vec<u8>),
    Event,
    Timeout,
}

pub(crate) struct Write {
    mid: Mid,
    rid: Option<Rid>,
    pt: Pt,
    seq: u64,
    ts: u32,
    marker: bool,
    payload: Arc<[u8]>,
    /// The audio level extension's value (audio of members only).
    audio_level: Option<u8>,
}

/// Audio quieter than this (in -dBov) is written without the voice activity flag.
const VOICE_BELOW: u8 = 60;

/// The publisher's simulcast layers with their send streams: announced ones got theirs from
/// the answer, an unannounced one is declared here on an SSRC of its own (no RTX).
fn send_layers(
    rtc: &mut Rtc,
    mid: Option<Mid>,
    config: &PublisherConfig,
    rng: &mut StdRng,
) -> Vec<SendLayer> {
    let Some(mid) = mid else {
        return Vec::new();
    };
    config
        .layers
        .iter()
        .map(|layer| {
            let rid = Rid::from(layer.rid.as_str());
            let ssrc = if layer.announced {
                rtc.direct_api()
                    .stream_tx_by_mid(mid, Some(rid))
                    .map(|tx| *tx.ssrc())
            } else {
                let ssrc: u32 = rng.random_range(1..=u32::MAX);
                rtc.direct_api()
                    .declare_stream_tx(Ssrc::from(ssrc), None, mid, Some(rid));
                Some(ssrc)
            };
            SendLayer {
                rid: layer.rid.clone(),
                ssrc,
                seq: rng.random_range(0..30_000),
                ts: rng.random(),
                keyframe_wanted: false,
                vp8: None,
                sent: Vec::new(),
                keyframe_requests: Vec::new(),
                keyframes: Vec::new(),
            }
        })
        .collect()
}

/// A stream's first VP8 picture numbers: anywhere, like a real encoder's.
fn random_picture(rng: &mut StdRng) -> media::Vp8Picture {
    media::Vp8Picture {
        picture_id: rng.random_range(0..0x8000),
        tl0_pic_idx: rng.random(),
        key_idx: rng.random_range(0..32),
    }
}

impl Publisher {
    /// The sending side of a client whose answer was accepted: payload types from the
    /// answer, sequence numbers and timestamps starting anywhere, its simulcast layers.
    pub(crate) fn new(
        rtc: &mut Rtc,
        mids: [Option<Mid>; 2],
        config: PublisherConfig,
        generation: u32,
        seed: u64,
    ) -> Publisher {
        let mut rng = StdRng::seed_from_u64(seed);
        let mut pts = [None, None];
        for kind in TrackKind::ALL {
            let Some(mid) = mids[kind.index()] else {
                continue;
            };
            let want = match kind {
                TrackKind::Audio => Codec::Opus,
                TrackKind::Video => match config.codec {
                    VideoCodec::Vp8 => Codec::Vp8,
                    VideoCodec::H264 => Codec::H264,
                },
            };
            let remote: Vec<Pt> = rtc
                .media(mid)
                .map(|m| m.remote_pts().to_vec())
                .unwrap_or_default();
            pts[kind.index()] = rtc
                .codec_config()
                .params()
                .iter()
                .find(|p| p.spec().codec == want && remote.contains(&p.pt()))
                .map(|p| p.pt());
        }
        // Start sequence numbers and timestamps anywhere, like a real sender.
        let seq = [rng.random_range(0..30_000), rng.random_range(0..30_000)];
        let ts = [rng.random(), rng.random()];
        let mut layers = send_layers(rtc, mids[1], &config, &mut rng);
        // Drawn only when asked for, so a run without them draws the same sizes as before.
        let mut vp8 = None;
        if config.vp8_picture_ids && config.codec == VideoCodec::Vp8 {
            vp8 = Some(random_picture(&mut rng));
            for layer in &mut layers {
                layer.vp8 = Some(random_picture(&mut rng));
            }
        }
        Publisher {
            generation,
            mids,
            pts,
            seq,
            ts,
            layers,
            frame: 0,
            audio_number: 0,
            next_frame_at: None,
            next_audio_at: None,
            last_keyframe_at: None,
            last_honored_request: None,
            keyframe_wanted: false,
            vp8,
            audio_level: None,
            rng,
            sending: false,
            sent: [Vec::new(), Vec::new()],
            keyframe_requests: Vec::new(),
            keyframes: Vec::new(),
            config,
        }
    }

    /// Start writing media now (a keyframe first).
    pub(crate) fn start(&mut self, now: Instant) {
        if self.sending {
            return;
        }
        self.sending = true;
        self.keyframe_wanted = true;
        for layer in &mut self.layers {
            layer.keyframe_wanted = true;
        }
        if self.mids[0].is_some() && self.pts[0].is_some() {
            self.next_audio_at = Some(now);
        }
        if self.mids[1].is_some() && self.pts[1].is_some() {
            self.next_frame_at = Some(now);
        }
    }

    /// Stop writing media.
    pub(crate) fn stop(&mut self) {
        self.sending = false;
        self.next_audio_at = None;
        self.next_frame_at = None;
    }

    /// The negotiated payload type of `kind` (what it writes with).
    pub fn pt(&self, kind: TrackKind) -> Option<Pt> {
        self.pts[kind.index()]
    }

    /// The next batch of packets due at `now`: one audio packet or one video frame.
    fn due_packets(&mut self, now: Instant) -> Option<Vec<Write>> {
        if !self.sending {
            return None;
        }
        if let Some(at) = self.next_audio_at.filter(|at| *at <= now) {
            self.next_audio_at = Some(at + Duration::from_millis(20));
            let size = self.rng.random_range(60..=160);
            let payload: Arc<[u8]> =
                media::audio_payload(self.generation, self.audio_number, size).into();
            self.audio_number += 1;
            let w = self.record(now, TrackKind::Audio, 960, true, false, payload);
            return Some(vec![w]);
        }
        if let Some(at) = self.next_frame_at.filter(|at| *at <= now) {
            let interval = self.config.frame_interval;
            self.next_frame_at = Some(at + interval);
            let periodic = self
                .last_keyframe_at
                .is_none_or(|k| now.saturating_duration_since(k) >= self.config.keyframe_interval);
            if !self.layers.is_empty() {
                return Some(self.layer_frames(now, periodic));
            }
            let keyframe = periodic || self.keyframe_wanted;
            if keyframe {
                self.keyframes
                    .push((now, self.keyframe_wanted && !periodic));
                self.last_keyframe_at = Some(now);
                self.keyframe_wanted = false;
            }
            let size = if keyframe {
                self.config.keyframe_size
            } else {
                let (lo, hi) = self.config.delta_size;
                self.rng.random_range(lo..=hi.max(lo))
            };
            self.vp8 = self.vp8.map(|p| p.next(keyframe));
            let payloads = media::layer_frame(
                self.config.codec,
                &media::FrameSpec {
                    source: self.generation,
                    layer: 0,
                    frame: self.frame,
                    keyframe,
                    size,
                    resolution: media::DEFAULT_RESOLUTION,
                    picture: self.vp8,
                },
            );
            self.frame += 1;
            let n = payloads.len();
            let ts_step = (interval.as_micros() * 9 / 100) as u32;
            let writes = payloads
                .into_iter()
                .enumerate()
                .map(|(i, p)| {
                    let step = if i + 1 == n { ts_step } else { 0 };
                    self.record(
                        now,
                        TrackKind::Video,
                        step,
                        i + 1 == n,
                        keyframe && i == 0,
                        p.into(),
                    )
                })
                .collect();
            return Some(writes);
        }
        None
    }

    /// One frame on every simulcast layer: the same frame number on all, keyframes together
    /// when periodic, on one layer alone when it was asked for one.
    fn layer_frames(&mut self, now: Instant, periodic: bool) -> Vec<Write> {
        let (lo, hi) = self.config.delta_size;
        let delta = self.rng.random_range(lo..=hi.max(lo));
        let ts_step = (self.config.frame_interval.as_micros() * 9 / 100) as u32;
        let frame = self.frame;
        self.frame += 1;
        if periodic {
            self.last_keyframe_at = Some(now);
        }
        self.keyframe_wanted = false;
        let mut writes = Vec::new();
        let mut asked = None;
        for i in 0..self.layers.len() {
            let config = &self.config.layers[i];
            let layer = &mut self.layers[i];
            let keyframe = config.keyframes && (periodic || layer.keyframe_wanted);
            if keyframe {
                let by_request = layer.keyframe_wanted && !periodic;
                layer.keyframes.push((now, by_request));
                layer.keyframe_wanted = false;
                asked = Some(asked.unwrap_or(false) || by_request);
            }
            layer.vp8 = layer.vp8.map(|p| p.next(keyframe));
            let base = if keyframe {
                self.config.keyframe_size
            } else {
                delta
            };
            let spec = media::FrameSpec {
                source: self.generation,
                layer: i as u8,
                frame,
                keyframe,
                size: ((base as f64 * config.scale).round() as usize).max(1),
                resolution: config.resolution,
                picture: layer.vp8,
            };
            let payloads = media::layer_frame(self.config.codec, &spec);
            let n = payloads.len();
            for (j, p) in payloads.into_iter().enumerate() {
                let step = if j + 1 == n { ts_step } else { 0 };
                writes.push(self.record_layer(i, now, step, j + 1 == n, keyframe && j == 0, p));
            }
        }
        if let Some(asked) = asked {
            self.keyframes.push((now, asked));
        }
        writes
    }

    /// Note a packet of simulcast layer `i` as sent (on the layer and with all video) and
    /// advance the layer's sequence number and timestamp.
    fn record_layer(
        &mut self,
        i: usize,
        now: Instant,
        ts_step: u32,
        marker: bool,
        keyframe: bool,
        payload: Vec<u8>,
    ) -> Write {
        let payload: Arc<[u8]> = payload.into();
        let layer = &mut self.layers[i];
        let (seq, ts) = (layer.seq, layer.ts);
        layer.seq += 1;
        layer.ts = ts.wrapping_add(ts_step);
        let sent = Sent {
            at: now,
            seq,
            ts,
            marker,
            keyframe,
            payload: payload.clone(),
        };
        layer.sent.push(sent.clone());
        self.sent[TrackKind::Video.index()].push(sent);
        Write {
            mid: self.mids[1].expect("a video section"),
            rid: Some(Rid::from(self.layers[i].rid.as_str())),
            pt: self.pts[1].expect("negotiated"),
            seq,
            ts,
            marker,
            payload,
            audio_level: None,
        }
    }

    /// Note a packet as sent and advance the sequence number (and the timestamp by `ts_step`
    /// after it).
    fn record(
        &mut self,
        now: Instant,
        kind: TrackKind,
        ts_step: u32,
        marker: bool,
        keyframe: bool,
        payload: Arc<[u8]>,
    ) -> Write {
        let k = kind.index();
        let seq = self.seq[k];
        let ts = self.ts[k];
        self.seq[k] += 1;
        self.ts[k] = ts.wrapping_add(ts_step);
        self.sent[k].push(Sent {
            at: now,
            seq,
            ts,
            marker,
            keyframe,
            payload: payload.clone(),
        });
        Write {
            mid: self.mids[k].expect("a media section"),
            rid: None,
            pt: self.pts[k].expect("negotiated"),
            seq,
            ts,
            marker,
            payload,
            audio_level: self.audio_level.filter(|_| kind == TrackKind::Audio),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use str0m::media::{KeyframeRequest, KeyframeRequestKind};

    use super::*;
    use crate::{Sim, SimConfig, Tag};

    /// The bad-input publisher: three layers, `x` unannounced, `h` without keyframes.
    fn unruly() -> PublisherConfig {
        let mut config = PublisherConfig::simulcast_3();
        config.layers[1].keyframes = false;
        config.layers.push(SimLayer {
            announced: false,
            ..SimLayer::new("x", 0.1, (160, 90))
        });
        config
    }

    #[test]
    fn a_simulcast_offer_announces_its_layers_as_a_browser_does() {
        let cert = ringcast_core::generate_certificate().unwrap();
        let addr = "10.0.0.1:4000".parse().unwrap();
        let built = build(Instant::now(), &cert, addr, Some(&unruly()));
        let sdp = built.offer.to_sdp_string();
        let video = &sdp[sdp.find("m=video").expect("a video section")..];
        for line in [
            "a=rid:q send",
            "a=rid:h send",
            "a=rid:f send",
            "a=simulcast:send q;h;f",
            "urn:ietf:params:rtp-hdrext:sdes:rtp-stream-id",
            "urn:ietf:params:rtp-hdrext:sdes:repaired-rtp-stream-id",
        ] {
            assert!(video.contains(line), "no {line} in\n{video}");
        }
        assert!(!video.contains("a=rid:x"), "{video}");
        assert_eq!(sdp.matches("m=video").count(), 1);
        // OBS's shape: rids 0..n, biggest first.
        let obs = PublisherConfig::simulcast_obs(3);
        let sizes: Vec<(u16, u16)> = obs.layers.iter().map(|l| l.resolution).collect();
        assert_eq!(sizes, [(1280, 720), (853, 480), (426, 240)]);
        let sdp = build(Instant::now(), &cert, addr, Some(&obs))
            .offer
            .to_sdp_string();
        assert!(sdp.contains("a=simulcast:send 0;1;2"), "{sdp}");
        // Without layers: no simulcast at all.
        let plain = build(
            Instant::now(),
            &cert,
            addr,
            Some(&PublisherConfig::default()),
        );
        let plain = plain.offer.to_sdp_string();
        assert!(!plain.contains("a=rid:") && !plain.contains("a=simulcast"));
    }

    #[test]
    fn each_layer_goes_on_its_own_ssrc_with_keyframes_together_and_on_request_alone() {
        let mut sim = Sim::new(SimConfig {
            seed: 4,
            ..SimConfig::default()
        });
        let p = sim.add_publisher("sc", unruly());
        sim.connect(&[p], Duration::from_secs(2));
        sim.run_for(Duration::from_secs(3));
        let publisher = sim.client(p).publisher();
        let ssrcs: Vec<u32> = publisher.layers.iter().map(|l| l.ssrc.unwrap()).collect();
        let mut distinct = ssrcs.clone();
        distinct.sort_unstable();
        distinct.dedup();
        assert_eq!(distinct.len(), 4, "{ssrcs:?}");
        // Every layer wrote each frame (same frame numbers), sized by its scale.
        let frames = |l: &SendLayer| {
            l.sent
                .iter()
                .filter(|s| s.marker)
                .map(|s| Tag::parse(&s.payload).unwrap().frame)
                .collect::<Vec<_>>()
        };
        let f0 = frames(&publisher.layers[0]);
        assert!(f0.len() > 80, "{}", f0.len());
        assert!(publisher.layers.iter().all(|l| frames(l) == f0));
        let bytes = |l: &SendLayer| l.sent.iter().map(|s| s.payload.len()).sum::<usize>();
        assert!(bytes(&publisher.layers[0]) * 3 < bytes(&publisher.layers[1]));
        assert!(bytes(&publisher.layers[1]) * 3 < bytes(&publisher.layers[2]));
        // Periodic keyframes at the same instants on q and f, never on h.
        let key_times = |l: &SendLayer| l.keyframes.iter().map(|k| k.0).collect::<Vec<_>>();
        assert_eq!(key_times(&publisher.layers[0]).len(), 2);
        assert_eq!(
            key_times(&publisher.layers[0]),
            key_times(&publisher.layers[2])
        );
        assert!(publisher.layers[1].keyframes.is_empty());
        assert!(publisher.layers[1].sent.iter().all(|s| !s.keyframe));
        let res = |l: usize| {
            publisher.layers[l]
                .sent
                .iter()
                .find_map(|s| media::vp8_resolution(&s.payload))
        };
        assert_eq!(res(2), Some((1280, 720)));
        assert_eq!(res(1), None);

        // A request for f is answered on f alone; one for h (no keyframes) on none.
        let mid = publisher.mids[1].unwrap();
        let before: Vec<usize> = publisher.layers.iter().map(|l| l.keyframes.len()).collect();
        for rid in ["f", "h"] {
            let now = sim.now();
            sim.client_mut(p).event(
                now,
                Event::KeyframeRequest(KeyframeRequest {
                    mid,
                    rid: Some(rid.into()),
                    kind: KeyframeRequestKind::Pli,
                }),
            );
        }
        sim.run_for(Duration::from_millis(100));
        let publisher = sim.client(p).publisher();
        let after: Vec<usize> = publisher.layers.iter().map(|l| l.keyframes.len()).collect();
        assert_eq!(after, [before[0], 0, before[2] + 1, before[3]]);
        assert!(publisher.layers[2].keyframes.last().unwrap().1);
        assert_eq!(publisher.layers[1].keyframe_requests.len(), 1);
        assert_eq!(publisher.layers[2].keyframe_requests.len(), 1);
    }
}
