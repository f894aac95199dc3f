//! Simulated room members: what a browser tab on `/room/{room}` is, without a browser. One
//! str0m `Rtc` in RTP mode whose offer publishes one audio (opus, with the RFC 6464 audio
//! level header extension, at a level the test sets) and one video track, reserves receive
//! slots (`recvonly` sections, video first, then audio), and opens the `ringcast` data
//! channel. It records every packet per slot and every message on the channel, and sends
//! what a test tells it to.

use std::net::SocketAddr;
use std::time::Instant;

use ringcast_core::TrackKind;
use serde_json::Value;
use str0m::channel::{ChannelData, ChannelId};
use str0m::config::DtlsCert;
use str0m::media::{Direction, MediaKind, Mid};
use str0m::rtp::RtpPacket;
use str0m::{Candidate, Rtc, RtcConfig};

use crate::client::{self, Built, Publisher, PublisherConfig, Received};
use crate::media::VideoCodec;

/// The label of the room's data channel (ROOMS-SPEC: `pc.createDataChannel("ringcast")`).
pub const CHANNEL_LABEL: &str = "ringcast";

/// The audio level of silence (RFC 6464: 127 is -127 dBov).
pub const SILENCE: u8 = 127;

/// How a simulated room member behaves.
#[derive(Debug, Clone)]
pub struct MemberConfig {
    /// What it publishes and how: [`PublisherConfig::audio`] and [`PublisherConfig::video`]
    /// say whether its offer has the sending sections, the rest shapes its media (codec,
    /// keyframes, simulcast layers). Its receive slots offer the same codecs.
    pub send: PublisherConfig,
    /// Receive-only video sections (video slots).
    pub video_slots: usize,
    /// Receive-only audio sections (audio slots).
    pub audio_slots: usize,
    /// The audio level its audio packets carry at first, 0 (loud) .. 127 (silence); see
    /// [`crate::Sim::set_audio_level`].
    pub audio_level: u8,
    /// Its offer opens the `ringcast` data channel.
    pub data_channel: bool,
}

impl Default for MemberConfig {
    /// Audio and VP8 video, 5 video and 3 audio slots (the issue's target shape), silent, with
    /// the data channel.
    fn default() -> Self {
        MemberConfig {
            send: PublisherConfig::default(),
            video_slots: 5,
            audio_slots: 3,
            audio_level: SILENCE,
            data_channel: true,
        }
    }
}

impl MemberConfig {
    /// A member with `video` video slots and `audio` audio slots, otherwise the default.
    pub fn slots(video: usize, audio: usize) -> Self {
        MemberConfig {
            video_slots: video,
            audio_slots: audio,
            ..MemberConfig::default()
        }
    }
}

/// One receive slot and what arrived on it.
#[derive(Debug)]
pub struct SlotRx {
    /// Its `a=mid`.
    pub mid: String,
    /// Audio or video.
    pub kind: TrackKind,
    /// Every packet received on it, in arrival order.
    pub received: Vec<Received>,
}

/// One message received on the data channel.
#[derive(Debug, Clone)]
pub struct Message {
    /// When.
    pub at: Instant,
    /// The parsed JSON.
    pub json: Value,
}

impl Message {
    /// Its `type`.
    pub fn kind(&self) -> Option<&str> {
        self.json.get("type").and_then(Value::as_str)
    }
}

/// A `slots` message read: per slot, in offer order, its mid, kind and participant id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlotState {
    /// The slot's mid.
    pub mid: String,
    /// `"audio"` or `"video"`.
    pub kind: String,
    /// Whose media it carries, if anyone's.
    pub participant: Option<String>,
}

/// What a room member keeps.
#[derive(Debug)]
pub struct Member {
    /// Its sending side (as a publisher's).
    pub send: Publisher,
    /// Its slots in offer order: video slots, then audio slots.
    pub slots: Vec<SlotRx>,
    channel: Option<ChannelId>,
    /// When the data channel opened.
    pub channel_open_at: Option<Instant>,
    /// When the data channel closed.
    pub channel_closed_at: Option<Instant>,
    /// Every JSON text message received on the channel, in order.
    pub messages: Vec<Message>,
    /// Channel messages that were binary, or not JSON text (the server should send none).
    pub unreadable: Vec<Vec<u8>>,
    /// Packets whose SSRC matched no slot.
    pub unknown: u64,
    /// Messages it wrote on the channel.
    pub written: u64,
}

impl Member {
    pub(crate) fn new(send: Publisher, slots: &[(Mid, TrackKind)]) -> Member {
        Member {
            send,
            slots: slots
                .iter()
                .map(|(mid, kind)| SlotRx {
                    mid: mid.to_string(),
                    kind: *kind,
                    received: Vec::new(),
                })
                .collect(),
            channel: None,
            channel_open_at: None,
            channel_closed_at: None,
            messages: Vec::new(),
            unreadable: Vec::new(),
            unknown: 0,
            written: 0,
        }
    }

    /// Is the data channel open?
    pub fn channel_is_open(&self) -> bool {
        self.channel.is_some()
    }

    /// The slot with this mid.
    pub fn slot(&self, mid: &str) -> Option<&SlotRx> {
        self.slots.iter().find(|s| s.mid == mid)
    }

    /// Its slots of `kind`, in offer order.
    pub fn slots_of(&self, kind: TrackKind) -> impl Iterator<Item = &SlotRx> {
        self.slots.iter().filter(move |s| s.kind == kind)
    }

    /// The messages of type `kind`, in order.
    pub fn messages_of<'a>(&'a self, kind: &'a str) -> impl Iterator<Item = &'a Message> {
        self.messages.iter().filter(move |m| m.kind() == Some(kind))
    }

    /// The last message of type `kind`.
    pub fn last_of(&self, kind: &str) -> Option<&Message> {
        self.messages.iter().rev().find(|m| m.kind() == Some(kind))
    }

    /// The `welcome` message, if it came.
    pub fn welcome(&self) -> Option<&Message> {
        self.messages_of("welcome").next()
    }

    /// Its own participant id, from the `welcome`.
    pub fn participant(&self) -> Option<String> {
        self.welcome()?
            .json
            .get("participant")?
            .as_str()
            .map(str::to_string)
    }

    /// The slots as the last `slots` message told them (empty before one came).
    pub fn slot_states(&self) -> Vec<SlotState> {
        self.last_of("slots")
            .map(|m| read_slots(&m.json))
            .unwrap_or_default()
    }

    /// The speakers as the last `speakers` message told them, loudest first.
    pub fn speakers(&self) -> Vec<String> {
        self.last_of("speakers")
            .and_then(|m| m.json.get("participants"))
            .map(ids)
            .unwrap_or_default()
    }

    /// Who is in the room as its messages tell it: the welcome's participants, then every
    /// `join` and `leave` in order (sorted; itself left out).
    pub fn roster(&self) -> Vec<String> {
        let mut in_room: Vec<String> = Vec::new();
        for m in &self.messages {
            match m.kind() {
                Some("welcome") => {
                    in_room = m
                        .json
                        .get("participants")
                        .and_then(Value::as_array)
                        .map(|a| {
                            a.iter()
                                .filter_map(|p| p.get("id")?.as_str().map(str::to_string))
                                .collect()
                        })
                        .unwrap_or_default();
                }
                Some("join") => {
                    if let Some(id) = m.json.get("participant").and_then(Value::as_str)
                        && !in_room.iter().any(|x| x == id)
                    {
                        in_room.push(id.to_string());
                    }
                }
                Some("leave") => {
                    if let Some(id) = m.json.get("participant").and_then(Value::as_str) {
                        in_room.retain(|x| x != id);
                    }
                }
                _ => {}
            }
        }
        in_room.sort();
        in_room
    }

    /// Write a text message on the data channel. `false` while it is not open or str0m
    /// refuses it.
    pub(crate) fn write(&mut self, rtc: &mut Rtc, binary: bool, bytes: &[u8]) -> bool {
        let Some(mut channel) = self.channel.and_then(|id| rtc.channel(id)) else {
            return false;
        };
        let ok = channel.write(binary, bytes).unwrap_or(false);
        if ok {
            self.written += 1;
        }
        ok
    }

    pub(crate) fn receive(&mut self, now: Instant, mid: Option<Mid>, packet: RtpPacket) {
        let slot = mid.and_then(|mid| self.slots.iter_mut().find(|s| *s.mid == *mid));
        let Some(slot) = slot else {
            self.unknown += 1;
            return;
        };
        slot.received.push(Received {
            at: now,
            seq: *packet.seq_no,
            ts: packet.header.timestamp,
            ssrc: *packet.header.ssrc,
            pt: *packet.header.payload_type,
            marker: packet.header.marker,
            payload: packet.payload,
        });
    }

    pub(crate) fn channel_opened(&mut self, now: Instant, id: ChannelId, label: &str) {
        if label == CHANNEL_LABEL && self.channel.is_none() {
            self.channel = Some(id);
            self.channel_open_at = Some(now);
        }
    }

    pub(crate) fn channel_data(&mut self, now: Instant, data: ChannelData) {
        if Some(data.id) != self.channel {
            return;
        }
        let json = (!data.binary)
            .then(|| serde_json::from_slice::<Value>(&data.data).ok())
            .flatten();
        match json {
            Some(json) => self.messages.push(Message { at: now, json }),
            None => self.unreadable.push(data.data),
        }
    }

    pub(crate) fn channel_closed(&mut self, now: Instant, id: ChannelId) {
        if Some(id) == self.channel {
            self.channel = None;
            self.channel_closed_at = Some(now);
        }
    }
}

/// The slots of a `slots` message.
pub fn read_slots(json: &Value) -> Vec<SlotState> {
    json.get("slots")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .map(|s| SlotState {
                    mid: s.get("mid").and_then(Value::as_str).unwrap_or("").into(),
                    kind: s.get("kind").and_then(Value::as_str).unwrap_or("").into(),
                    participant: s
                        .get("participant")
                        .and_then(Value::as_str)
                        .map(str::to_string),
                })
                .collect()
        })
        .unwrap_or_default()
}

/// The strings of a JSON array (of participant ids).
fn ids(v: &Value) -> Vec<String> {
    v.as_array()
        .map(|a| {
            a.iter()
                .filter_map(|x| x.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

/// Build a member's `Rtc` and offer: sendonly audio and video as its config says, then its
/// video slots, then its audio slots (recvonly), then the data channel.
pub(crate) fn build(
    now: Instant,
    cert: &DtlsCert,
    addr: SocketAddr,
    config: &MemberConfig,
) -> Built {
    let send = &config.send;
    let mut rtc_config = RtcConfig::new()
        .set_rtp_mode(true)
        .set_dtls_cert(cert.clone())
        .set_stats_interval(None)
        .clear_codecs()
        .enable_opus(true, false);
    rtc_config = match send.codec {
        VideoCodec::Vp8 => rtc_config.enable_vp8(true),
        VideoCodec::H264 => rtc_config.enable_h264(true),
    };
    let mut rtc = rtc_config.build(now);
    rtc.add_local_candidate(Candidate::host(addr, "udp").expect("host candidate"));
    let mut api = rtc.sdp_api();
    let mut mids = [None, None];
    if send.audio {
        mids[0] = Some(api.add_media(
            MediaKind::Audio,
            Direction::SendOnly,
            Some("sim".into()),
            Some("a".into()),
            None,
        ));
    }
    if send.video {
        mids[1] = Some(api.add_media(
            MediaKind::Video,
            Direction::SendOnly,
            Some("sim".into()),
            Some("v".into()),
            client::simulcast(send),
        ));
    }
    let mut slots = Vec::new();
    for (kind, n) in [
        (TrackKind::Video, config.video_slots),
        (TrackKind::Audio, config.audio_slots),
    ] {
        let media = match kind {
            TrackKind::Audio => MediaKind::Audio,
            TrackKind::Video => MediaKind::Video,
        };
        for _ in 0..n {
            let mid = api.add_media(media, Direction::RecvOnly, None, None, None);
            slots.push((mid, kind));
        }
    }
    if config.data_channel {
        api.add_channel(CHANNEL_LABEL.into());
    }
    let (offer, pending) = api.apply().expect("an offer");
    Built {
        rtc,
        offer,
        pending,
        mids,
        slots,
    }
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use super::*;

    fn sections(sdp: &str) -> Vec<&str> {
        sdp.split("\r\nm=").skip(1).collect()
    }

    #[test]
    fn a_member_offer_publishes_reserves_slots_and_opens_the_channel() {
        let cert = ringcast_core::generate_certificate().unwrap();
        let addr = "10.0.0.1:4000".parse().unwrap();
        let built = build(Instant::now(), &cert, addr, &MemberConfig::slots(4, 2));
        let sdp = built.offer.to_sdp_string();
        let m = sections(&sdp);
        assert_eq!(m.len(), 2 + 4 + 2 + 1, "{sdp}");
        assert!(
            m[0].starts_with("audio") && m[0].contains("a=sendonly"),
            "{}",
            m[0]
        );
        assert!(m[0].contains("opus/48000/2"));
        assert!(m[0].contains("urn:ietf:params:rtp-hdrext:ssrc-audio-level"));
        assert!(m[1].starts_with("video") && m[1].contains("a=sendonly"));
        assert!(m[1].contains("VP8/90000"));
        for v in &m[2..6] {
            assert!(v.starts_with("video") && v.contains("a=recvonly"), "{v}");
        }
        for a in &m[6..8] {
            assert!(a.starts_with("audio") && a.contains("a=recvonly"), "{a}");
        }
        assert!(m[8].starts_with("application") && m[8].contains("webrtc-datachannel"));
        assert_eq!(built.slots.len(), 6);
        assert_eq!(built.slots[0].1, TrackKind::Video);
        assert_eq!(built.slots[5].1, TrackKind::Audio);
        for (mid, _) in &built.slots {
            assert!(sdp.contains(&format!("a=mid:{mid}\r\n")));
        }
        // Simulcast on the sending video; a member that only listens has no send section.
        let simulcast = MemberConfig {
            send: PublisherConfig::simulcast_3(),
            ..MemberConfig::default()
        };
        let sdp = build(Instant::now(), &cert, addr, &simulcast)
            .offer
            .to_sdp_string();
        assert!(sections(&sdp)[1].contains("a=simulcast:send q;h;f"));
        let listener = MemberConfig {
            send: PublisherConfig {
                audio: false,
                video: false,
                ..PublisherConfig::default()
            },
            data_channel: false,
            ..MemberConfig::slots(1, 1)
        };
        let sdp = build(Instant::now(), &cert, addr, &listener)
            .offer
            .to_sdp_string();
        assert_eq!(sections(&sdp).len(), 2);
        assert!(!sdp.contains("sendonly") && !sdp.contains("m=application"));
    }

    #[test]
    fn the_roster_follows_welcome_join_and_leave() {
        let cert = ringcast_core::generate_certificate().unwrap();
        let addr: SocketAddr = "10.0.0.1:4000".parse().unwrap();
        let mut built = build(Instant::now(), &cert, addr, &MemberConfig::default());
        let send = Publisher::new(
            &mut built.rtc,
            [None, None],
            PublisherConfig::default(),
            1,
            1,
        );
        let mut m = Member::new(send, &built.slots);
        let at = Instant::now();
        for json in [
            r#"{"type":"welcome","participant":"3","room":"r","participants":[{"id":"1","name":"a","audio":true,"video":true},{"id":"2","name":"b","audio":true,"video":false}]}"#,
            r#"{"type":"join","participant":"4","name":"d","audio":true,"video":true}"#,
            r#"{"type":"leave","participant":"1"}"#,
            r#"{"type":"speakers","participants":["4","2"]}"#,
            r#"{"type":"slots","slots":[{"mid":"x","kind":"video","participant":"4"},{"mid":"y","kind":"audio","participant":null}]}"#,
        ] {
            m.messages.push(Message {
                at,
                json: serde_json::from_str(json).unwrap(),
            });
        }
        assert_eq!(m.participant().as_deref(), Some("3"));
        assert_eq!(m.roster(), ["2", "4"]);
        assert_eq!(m.speakers(), ["4", "2"]);
        let slots = m.slot_states();
        assert_eq!(slots.len(), 2);
        assert_eq!(slots[0].participant.as_deref(), Some("4"));
        assert_eq!(slots[1].participant, None);
        assert_eq!(m.messages_of("join").count(), 1);
    }
}
