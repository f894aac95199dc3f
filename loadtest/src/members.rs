//! A group call participant's side of the media (the `rooms` scenario): its voice level
//! ([`Speaking`], RFC 6464 on every audio packet it sends) and what it receives
//! ([`SlotReceiver`]: per-slot sequence accounting, time to its first remote frame, latency and
//! payload checks, the senders seen on each slot, and the `ringcast` data channel's messages).

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use ringcast_loadtest::summary::{KindReport, ParticipantReport as Report};
use str0m::channel::ChannelId;
use str0m::media::{MediaKind, Mid};
use str0m::rtp::Ssrc;

use crate::first_frame::FirstFrame;
use crate::media::{self, VideoCodec};
use crate::session::{Member, Slot};
use crate::stats::{self, SeqDelta, SeqTracker};

/// The data channel label of ringcast rooms.
pub const CHANNEL_LABEL: &str = "ringcast";

/// Audio level of the participant whose turn it is, dBov (RFC 6464: 0 loudest, -127 silence).
const LOUD_DBOV: i8 = -20;
/// The loudest of the others.
const MURMUR_DBOV: i8 = -45;
/// The quietest of the others; they sit between [`MURMUR_DBOV`] and this, in an order that
/// turns too.
const QUIET_DBOV: i8 = -90;

/// A participant's voice: loud during its turn, quieter otherwise; the turn passes round the
/// room every `turn`, so every room's loudest speaker changes (and so the audio slots move).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Speaking {
    /// Its place in the room.
    pub position: usize,
    /// Participants in the room.
    pub of: usize,
    /// How long each turn lasts.
    pub turn: Duration,
}

impl Speaking {
    /// The audio level (dBov, negative) and voice activity flag to send at `now`.
    pub fn level(&self, now: Instant) -> (i8, bool) {
        let turn_ns = self.turn.as_nanos().max(1) as u64;
        let of = self.of.max(1);
        let turn = (media::nanos_since_anchor(now) / turn_ns) as usize % of;
        if turn == self.position % of {
            return (LOUD_DBOV, true);
        }
        // 1 ..= of-1: how far behind the speaker this one is in the rotation.
        let behind = (self.position + of - turn) % of;
        let step = (i32::from(MURMUR_DBOV) - i32::from(QUIET_DBOV)) / of.max(2) as i32;
        let level = i32::from(MURMUR_DBOV) - step * (behind as i32 - 1);
        (level.clamp(i32::from(QUIET_DBOV), -1) as i8, false)
    }
}

/// What a participant's session receives, slot by slot.
#[derive(Debug)]
pub struct SlotReceiver {
    /// Decrypts and checks every packet (else only until its first complete keyframe).
    full: bool,
    /// Its own probe id (what it publishes with): seeing it on a slot is a server bug.
    own: u32,
    codec: VideoCodec,
    slots: Vec<SlotState>,
    channel: Option<ChannelId>,
    messages: BTreeMap<String, u64>,
    first_packet: Option<Instant>,
    first_frame: Option<Instant>,
    /// Last media packet on any slot.
    pub last_media: Option<Instant>,
    latency: Option<Histogram<u64>>,
}

/// One slot's state.
#[derive(Debug)]
struct SlotState {
    mid: Mid,
    kind: MediaKind,
    ssrc: Option<Ssrc>,
    seq: SeqTracker,
    counts: SlotCounts,
    /// The counts when the measured window opened.
    at_window: Option<SlotCounts>,
    first_frame: FirstFrame,
    /// Publishers seen on it (checked payloads only).
    sources: BTreeSet<u32>,
}

/// Cumulative counts of one slot.
#[derive(Debug, Default, Clone, Copy)]
struct SlotCounts {
    packets: u64,
    bytes: u64,
    expected: u64,
    duplicates: u64,
    own: u64,
    corrupt: u64,
}

/// What one received packet did, for the worker's run-wide counters.
#[derive(Debug, Default, Clone, Copy)]
pub struct PacketEffect {
    /// Sequence accounting.
    pub seq: SeqDelta,
    /// The payload was checked and failed.
    pub corrupt: bool,
    /// One-way latency, µs (checked payloads).
    pub latency_us: Option<u64>,
}

/// One received packet as the worker hands it over.
#[derive(Debug, Clone, Copy)]
pub struct Received<'a> {
    /// When it arrived.
    pub arrived: Instant,
    /// Its RTP sequence number.
    pub seq: u16,
    /// Its RTP timestamp.
    pub timestamp: u32,
    /// Its marker bit.
    pub marker: bool,
    /// Payload length.
    pub payload_len: usize,
    /// The decrypted payload (None: counted from the clear header only).
    pub payload: Option<&'a [u8]>,
}

impl SlotReceiver {
    /// A receiver of `slots` for the participant `member`.
    pub fn new(slots: &[Slot], member: &Member, codec: VideoCodec) -> Self {
        SlotReceiver {
            full: member.full,
            own: member.id,
            codec,
            slots: slots
                .iter()
                .map(|s| SlotState {
                    mid: s.mid,
                    kind: s.kind,
                    ssrc: None,
                    seq: SeqTracker::new(),
                    counts: SlotCounts::default(),
                    at_window: None,
                    first_frame: FirstFrame::new(),
                    sources: BTreeSet::new(),
                })
                .collect(),
            channel: None,
            messages: BTreeMap::new(),
            first_packet: None,
            first_frame: None,
            last_media: None,
            latency: member.full.then(stats::histogram),
        }
    }

    /// Whether RTP on slots it knows can be counted from the clear header (light participants
    /// once they have a picture): str0m need not decrypt it.
    pub fn counts_headers_only(&self) -> bool {
        !self.full && self.first_frame.is_some()
    }

    /// The slot receiving `ssrc`, if known.
    pub fn slot_of(&self, ssrc: Ssrc) -> Option<usize> {
        self.slots.iter().position(|s| s.ssrc == Some(ssrc))
    }

    /// The slot of `mid` now receives `ssrc` (learnt from str0m's stream for it); None when
    /// `mid` is none of the slots.
    pub fn learn(&mut self, ssrc: Ssrc, mid: Mid) -> Option<usize> {
        let index = self.slots.iter().position(|s| s.mid == mid)?;
        let slot = &mut self.slots[index];
        if slot.ssrc != Some(ssrc) {
            if slot.ssrc.is_some() {
                // A slot's SSRC stays put across source switches: a new one is a new stream.
                slot.seq = SeqTracker::new();
            }
            slot.ssrc = Some(ssrc);
        }
        Some(index)
    }

    /// Account one packet on slot `index`; `posted` is when the session's signalling began.
    pub fn on_packet(&mut self, index: usize, packet: Received<'_>) -> PacketEffect {
        let Some(slot) = self.slots.get_mut(index) else {
            return PacketEffect::default();
        };
        self.first_packet.get_or_insert(packet.arrived);
        self.last_media = Some(packet.arrived);
        let seq = slot.seq.on_packet(packet.seq);
        let c = &mut slot.counts;
        c.expected += seq.expected;
        c.packets += seq.received;
        c.duplicates += seq.duplicate;
        c.bytes += packet.payload_len as u64 + 12;
        let mut effect = PacketEffect {
            seq,
            ..PacketEffect::default()
        };
        let Some(payload) = packet.payload else {
            return effect;
        };
        if slot.kind == MediaKind::Video
            && self.first_frame.is_none()
            && slot.first_frame.on_packet(
                packet.seq,
                packet.timestamp,
                packet.marker,
                media::is_keyframe(self.codec, payload),
            )
        {
            self.first_frame = Some(packet.arrived);
        }
        match media::verify(payload) {
            Some(probe) => {
                if probe.publisher == self.own {
                    slot.counts.own += 1;
                }
                slot.sources.insert(probe.publisher);
                let arrived = media::nanos_since_anchor(packet.arrived);
                let us = (arrived.saturating_sub(probe.sent_ns) / 1000).max(1);
                if let Some(h) = &mut self.latency {
                    let _ = h.record(us);
                }
                effect.latency_us = Some(us);
            }
            None if self.full => {
                slot.counts.corrupt += 1;
                effect.corrupt = true;
            }
            None => {}
        }
        effect
    }

    /// A data channel opened: the one labelled `ringcast` is the room's.
    pub fn on_channel_open(&mut self, id: ChannelId, label: &str) {
        if label == CHANNEL_LABEL {
            self.channel = Some(id);
        }
    }

    /// A message on a data channel: counted by its `type` when it is the room's channel.
    pub fn on_channel_data(&mut self, id: ChannelId, data: &[u8]) {
        if self.channel != Some(id) {
            return;
        }
        *self.messages.entry(message_type(data)).or_default() += 1;
    }

    /// The measured window opens: counts from here on are the window's.
    pub fn open_window(&mut self) {
        for slot in &mut self.slots {
            slot.at_window = Some(slot.counts);
        }
        if let Some(h) = &mut self.latency {
            h.reset();
        }
    }

    /// The report of this receiver: `posted` is when the participant's signalling began.
    pub fn report(&self, member: &Member, posted: Instant, participant: Option<String>) -> Report {
        let ms =
            |t: Option<Instant>| t.map(|t| t.saturating_duration_since(posted).as_secs_f64() * 1e3);
        let kind = |kind: MediaKind| {
            let mut k = KindReport::default();
            for slot in self.slots.iter().filter(|s| s.kind == kind) {
                let base = slot.at_window.unwrap_or_default();
                k.slots += 1;
                k.filled += usize::from(slot.counts.packets > 0);
                k.packets += slot.counts.packets - base.packets;
                k.bytes += slot.counts.bytes - base.bytes;
                k.expected += slot.counts.expected - base.expected;
                k.duplicates += slot.counts.duplicates - base.duplicates;
                k.own_packets += slot.counts.own;
                k.corrupt += slot.counts.corrupt;
                k.sources.extend(slot.sources.iter().copied());
            }
            k.loss_pct = stats::loss_pct(k.expected, k.packets);
            k
        };
        let video = kind(MediaKind::Video);
        let audio = kind(MediaKind::Audio);
        let latency = self.latency.as_ref().filter(|h| !h.is_empty());
        Report {
            room: member.room.clone(),
            position: member.position,
            id: member.id,
            participant,
            full: self.full,
            join_ms: ms(self.first_packet),
            first_frame_ms: ms(self.first_frame),
            loss_pct: stats::loss_pct(
                video.expected + audio.expected,
                video.packets + audio.packets,
            ),
            latency_p50_ms: latency.map(|h| h.value_at_quantile(0.5) as f64 / 1e3),
            latency_max_ms: latency.map(|h| h.max() as f64 / 1e3),
            video,
            audio,
            messages: self.messages.clone(),
            channel_open: self.channel.is_some(),
        }
    }
}

/// The `type` of a data channel message, `invalid` when it is no JSON object with a string
/// `type`.
pub fn message_type(data: &[u8]) -> String {
    serde_json::from_slice::<serde_json::Value>(data)
        .ok()
        .and_then(|v| v.get("type")?.as_str().map(str::to_string))
        .filter(|t| t.len() <= 32 && t.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_'))
        .unwrap_or_else(|| "invalid".into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::{PLAIN_DIMS, Packetizer};
    use crate::session::Part;

    fn member(full: bool) -> Member {
        Member {
            room: "r".into(),
            room_index: 0,
            position: 1,
            of: 3,
            id: 2,
            full,
            part: Part::Both,
        }
    }

    #[test]
    fn one_speaker_per_room_at_a_time_and_it_turns() {
        let turn = Duration::from_millis(10);
        let start = media::anchor() + Duration::from_secs(1);
        let room: Vec<Speaking> = (0..6)
            .map(|position| Speaking {
                position,
                of: 6,
                turn,
            })
            .collect();
        let mut loudest = Vec::new();
        for step in 0..12u32 {
            let at = start + turn * step + turn / 2;
            let levels: Vec<(i8, bool)> = room.iter().map(|s| s.level(at)).collect();
            let speaking: Vec<usize> = (0..6).filter(|&i| levels[i].1).collect();
            assert_eq!(speaking.len(), 1, "{levels:?}");
            let speaker = speaking[0];
            assert_eq!(levels[speaker].0, LOUD_DBOV);
            for (i, (level, _)) in levels.iter().enumerate() {
                assert!((QUIET_DBOV..=-1).contains(level), "{level}");
                if i != speaker {
                    assert!(*level < LOUD_DBOV, "{levels:?}");
                }
            }
            loudest.push(speaker);
        }
        // Every participant gets a turn, one after the other.
        assert!(
            loudest.windows(2).all(|w| w[1] == (w[0] + 1) % 6),
            "{loudest:?}"
        );
    }

    #[test]
    fn slots_count_loss_sources_and_messages() {
        let slots = [
            Slot {
                mid: Mid::from("2"),
                kind: MediaKind::Video,
            },
            Slot {
                mid: Mid::from("3"),
                kind: MediaKind::Audio,
            },
        ];
        let mut rx = SlotReceiver::new(&slots, &member(true), VideoCodec::Vp8);
        assert_eq!(rx.learn(Ssrc::from(77), Mid::from("2")), Some(0));
        assert_eq!(rx.learn(Ssrc::from(78), Mid::from("9")), None);
        assert_eq!(rx.slot_of(Ssrc::from(77)), Some(0));
        let t0 = Instant::now();
        let mut source = Packetizer::new(5);
        let frame = source.video(VideoCodec::Vp8, true, 3000, PLAIN_DIMS, 0);
        let n = frame.len();
        // seq 10.. with one packet of the keyframe lost: no first frame; the next keyframe is.
        for (i, payload) in frame.iter().enumerate().filter(|(i, _)| *i != 1) {
            rx.on_packet(
                0,
                Received {
                    arrived: t0,
                    seq: 10 + i as u16,
                    timestamp: 1,
                    marker: i + 1 == n,
                    payload_len: payload.len(),
                    payload: Some(payload),
                },
            );
        }
        assert!(rx.first_frame.is_none());
        let frame = source.video(VideoCodec::Vp8, true, 100, PLAIN_DIMS, 0);
        let later = t0 + Duration::from_millis(40);
        let effect = rx.on_packet(
            0,
            Received {
                arrived: later,
                seq: 10 + n as u16,
                timestamp: 2,
                marker: true,
                payload_len: frame[0].len(),
                payload: Some(&frame[0]),
            },
        );
        assert!(effect.latency_us.is_some() && !effect.corrupt);
        assert!(
            !rx.counts_headers_only(),
            "a full receiver checks everything"
        );
        let mut own = Packetizer::new(2);
        let mine = own.audio(80, 0);
        rx.on_packet(
            1,
            Received {
                arrived: later,
                seq: 1,
                timestamp: 0,
                marker: false,
                payload_len: mine.len(),
                payload: Some(&mine),
            },
        );
        // A real channel id (str0m makes them only itself).
        let channel = str0m::Rtc::new(Instant::now())
            .sdp_api()
            .add_channel(CHANNEL_LABEL.into());
        rx.on_channel_data(channel, br#"{"type":"welcome"}"#); // before the channel opened
        rx.on_channel_open(channel, CHANNEL_LABEL);
        for message in [
            &br#"{"type":"welcome","participant":"1"}"#[..],
            br#"{"type":"slots","slots":[]}"#,
            br#"{"type":"slots","slots":[]}"#,
            b"not json",
            br#"{"type":7}"#,
        ] {
            rx.on_channel_data(channel, message);
        }
        let report = rx.report(&member(true), t0, Some("4".into()));
        assert_eq!(report.first_frame_ms, Some(40.0));
        assert_eq!(report.join_ms, Some(0.0));
        assert_eq!(report.video.expected, n as u64 + 1);
        assert_eq!(report.video.packets, n as u64);
        assert_eq!((report.video.slots, report.video.filled), (1, 1));
        assert_eq!(report.video.sources, BTreeSet::from([5]));
        assert_eq!(report.audio.own_packets, 1);
        assert!(report.loss_pct > 0.0);
        assert_eq!(report.messages["welcome"], 1);
        assert_eq!(report.messages["slots"], 2);
        assert_eq!(report.messages["invalid"], 2);
        assert!(report.channel_open && report.latency_p50_ms.is_some());
        // The window: what came before it is not its loss.
        rx.open_window();
        let report = rx.report(&member(true), t0, None);
        assert_eq!((report.video.packets, report.video.expected), (0, 0));
        assert_eq!(report.loss_pct, 0.0);
    }

    #[test]
    fn a_light_receiver_counts_headers_once_it_has_a_picture() {
        let slots = [Slot {
            mid: Mid::from("2"),
            kind: MediaKind::Video,
        }];
        let mut rx = SlotReceiver::new(&slots, &member(false), VideoCodec::Vp8);
        assert!(!rx.counts_headers_only());
        let frame = Packetizer::new(5).video(VideoCodec::Vp8, true, 100, PLAIN_DIMS, 0);
        rx.on_packet(
            0,
            Received {
                arrived: Instant::now(),
                seq: 1,
                timestamp: 1,
                marker: true,
                payload_len: frame[0].len(),
                payload: Some(&frame[0]),
            },
        );
        assert!(rx.counts_headers_only());
        let effect = rx.on_packet(
            0,
            Received {
                arrived: Instant::now(),
                seq: 2,
                timestamp: 2,
                marker: true,
                payload_len: 500,
                payload: None,
            },
        );
        assert_eq!((effect.seq.received, effect.seq.expected), (1, 1));
    }
}
