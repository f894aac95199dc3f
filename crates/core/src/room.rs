//! Rooms (group calls), the parts that need no shard: the data channel protocol, loudness from
//! RFC 6464 audio levels, who is speaking (with hysteresis), placing sources in slots so that
//! they stay where they are, and the rate limit on relayed app messages.
//!
//! A member's connection carries its own audio and video, a fixed number of receive-only
//! **slots** per kind, and a data channel labelled [`crate::peer::ROOM_CHANNEL`]. The shard
//! decides which member each slot shows (audio: the loudest speakers; video: what the member
//! subscribed to, else the most recent speakers) and says so over the channel, as JSON text,
//! one object per message:
//!
//! - server → member: [`ServerMessage`] (`welcome`, `join`, `leave`, `slots`, `speakers`,
//!   `message`, `error`);
//! - member → server: [`ClientMessage`] (`subscribe`, `layer`, `message`).

use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::ids::TrackKind;

/// Largest message a member may send on the data channel, in bytes.
pub const MAX_MESSAGE_BYTES: usize = 16 * 1024;

/// Messages a member may send per second, sustained ...
pub const MESSAGE_RATE: f64 = 20.0;
/// ... and in a burst.
pub const MESSAGE_BURST: f64 = 40.0;

/// Most participants a `subscribe` may name (more are ignored with an error).
pub const MAX_SUBSCRIBE: usize = 64;

/// Most per-participant layer choices a member keeps (the oldest goes first).
pub const MAX_LAYER_PREFS: usize = 64;

/// How often speakers are ranked again.
pub const RANK_INTERVAL: Duration = Duration::from_millis(300);

/// A member counts as speaking while its loudness is above this (in dB over silence: 127 −
/// the RFC 6464 level, so 60 means −67 dBov, above a quiet room's noise floor) ...
const SPEAKING_ON: f32 = 60.0;
/// ... and stops below this (hysteresis).
const SPEAKING_OFF: f32 = 50.0;
/// A speaker already in a slot keeps it unless another is this much louder (dB).
const SLOT_MARGIN: f32 = 6.0;
/// Weight of a new window in the smoothed loudness.
const SMOOTHING: f32 = 0.5;

/// A member as others see it (in `welcome`, `join` and the admin API).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MemberView {
    /// Its participant id.
    pub id: String,
    /// Its display name.
    pub name: String,
    /// It publishes audio.
    pub audio: bool,
    /// It publishes video.
    pub video: bool,
}

/// One slot as the member is told.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SlotView {
    /// The slot's `a=mid`.
    pub mid: String,
    /// `audio` or `video`.
    pub kind: &'static str,
    /// The participant it shows, if any.
    pub participant: Option<String>,
}

/// What the server tells a member.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum ServerMessage<'a> {
    /// The channel is open: who the member is, and who else is in the room.
    Welcome {
        /// The member's own participant id.
        participant: &'a str,
        /// The room's name.
        room: &'a str,
        /// The others, in join order.
        participants: Vec<MemberView>,
    },
    /// Someone joined.
    Join {
        /// Its id.
        participant: &'a str,
        /// Its name.
        name: &'a str,
        /// It publishes audio.
        audio: bool,
        /// It publishes video.
        video: bool,
    },
    /// Someone left.
    Leave {
        /// Its id.
        participant: &'a str,
    },
    /// Every slot of the member and what it shows, in offer order.
    Slots {
        /// The slots.
        slots: Vec<SlotView>,
    },
    /// Who speaks, loudest first.
    Speakers {
        /// Participant ids.
        participants: Vec<&'a str>,
    },
    /// App data from another member.
    Message {
        /// The sender's id.
        from: &'a str,
        /// What it sent.
        data: &'a serde_json::Value,
    },
    /// A message of the member was refused.
    Error {
        /// Why.
        error: &'a str,
    },
}

impl ServerMessage<'_> {
    /// As JSON text.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("room messages serialize")
    }
}

/// What a member asks of the server.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase", deny_unknown_fields)]
pub enum ClientMessage {
    /// Fill the video slots with these participants, most wanted first.
    Subscribe {
        /// Participant ids.
        video: Vec<String>,
    },
    /// Which simulcast layer to receive of one participant.
    Layer {
        /// Its id.
        participant: String,
        /// A layer by name.
        #[serde(default)]
        rid: Option<String>,
        /// The best layer no taller than this.
        #[serde(default, rename = "maxHeight")]
        max_height: Option<u32>,
    },
    /// App data for one member (`to`) or every other one (`to: null`).
    Message {
        /// The receiver.
        #[serde(default)]
        to: Option<String>,
        /// Anything.
        data: serde_json::Value,
    },
}

impl ClientMessage {
    /// Read one message off the channel; the error says why it is refused.
    pub fn parse(binary: bool, data: &[u8]) -> Result<ClientMessage, String> {
        if data.len() > MAX_MESSAGE_BYTES {
            return Err(format!(
                "message of {} bytes: at most {MAX_MESSAGE_BYTES}",
                data.len()
            ));
        }
        if binary {
            return Err("binary message: the room's messages are JSON text".into());
        }
        serde_json::from_slice(data).map_err(|e| format!("bad message: {e}"))
    }
}

/// A member's choice of layer for one participant's video.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LayerPref {
    /// This rid.
    Rid(String),
    /// The best layer at most this tall.
    MaxHeight(u32),
}

/// `kind` as the protocol writes it.
pub fn kind_name(kind: TrackKind) -> &'static str {
    match kind {
        TrackKind::Audio => "audio",
        TrackKind::Video => "video",
    }
}

/// One member's loudness, from the audio levels of its packets.
#[derive(Debug, Clone, Default)]
pub struct Loudness {
    sum: u32,
    packets: u32,
    smoothed: f32,
    speaking: bool,
}

impl Loudness {
    /// A packet's RFC 6464 level (0 loudest, 127 silence). str0m reads the extension as
    /// negative dBov (−level, its `ExtensionValues::audio_level`): either sign is the level.
    pub fn packet(&mut self, level: i8) {
        self.sum += 127 - u32::from(level.unsigned_abs().min(127));
        self.packets += 1;
    }

    /// Close the window: the smoothed loudness (dB above silence) and whether the member is
    /// speaking (above [`SPEAKING_ON`], until below [`SPEAKING_OFF`]). A window without packets
    /// counts as silence.
    pub fn rank(&mut self) -> (f32, bool) {
        let window = if self.packets == 0 {
            0.0
        } else {
            self.sum as f32 / self.packets as f32
        };
        self.sum = 0;
        self.packets = 0;
        self.smoothed += SMOOTHING * (window - self.smoothed);
        if self.speaking {
            self.speaking = self.smoothed >= SPEAKING_OFF;
        } else {
            self.speaking = self.smoothed >= SPEAKING_ON;
        }
        (self.smoothed, self.speaking)
    }

    /// Speaking as of the last [`Loudness::rank`].
    pub fn speaking(&self) -> bool {
        self.speaking
    }

    /// Smoothed loudness as of the last [`Loudness::rank`].
    pub fn level(&self) -> f32 {
        self.smoothed
    }
}

/// Which of `candidates` (each with its loudness) the `slots` audio slots should carry, given
/// what they carry now: speakers first, loudest first, where one already in a slot counts
/// [`SLOT_MARGIN`] louder; with nobody speaking, a slot keeps what it has.
pub fn loudest<T: Copy + Eq>(
    candidates: &[(T, f32, bool)],
    current: &[Option<T>],
    slots: usize,
) -> Vec<T> {
    let mut ranked: Vec<(T, f32)> = candidates
        .iter()
        .map(|&(who, level, speaking)| {
            let held = current.contains(&Some(who));
            let score = match (speaking, held) {
                (true, true) => 1000.0 + level + SLOT_MARGIN,
                (true, false) => 1000.0 + level,
                // Silent, but holding a slot: kept before anyone silent who holds none.
                (false, true) => 500.0 + level,
                (false, false) => level,
            };
            (who, score)
        })
        .collect();
    ranked.sort_by(|a, b| b.1.total_cmp(&a.1));
    ranked.into_iter().take(slots).map(|(who, _)| who).collect()
}

/// Place `wanted` (at most as many as slots) in slots, each already shown staying where it is,
/// the others filling the free slots in order.
pub fn place_stable<T: Copy + Eq>(current: &[Option<T>], wanted: &[T]) -> Vec<Option<T>> {
    let wanted = &wanted[..wanted.len().min(current.len())];
    let mut placed: Vec<Option<T>> = current
        .iter()
        .map(|c| c.filter(|c| wanted.contains(c)))
        .collect();
    let mut free = (0..placed.len())
        .filter(|&i| placed[i].is_none())
        .collect::<Vec<_>>();
    free.reverse();
    for w in wanted {
        if !placed.contains(&Some(*w))
            && let Some(i) = free.pop()
        {
            placed[i] = Some(*w);
        }
    }
    placed
}

/// A token bucket: `rate` per second, `burst` at most.
#[derive(Debug, Clone)]
pub struct MessageRate {
    tokens: f64,
    at: Option<Instant>,
}

impl Default for MessageRate {
    fn default() -> Self {
        MessageRate {
            tokens: MESSAGE_BURST,
            at: None,
        }
    }
}

impl MessageRate {
    /// May one more message go now?
    pub fn take(&mut self, now: Instant) -> bool {
        if let Some(at) = self.at {
            let earned = now.saturating_duration_since(at).as_secs_f64() * MESSAGE_RATE;
            self.tokens = (self.tokens + earned).min(MESSAGE_BURST);
        }
        self.at = Some(now);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
#[allow(
    clippy::disallowed_methods,
    reason = "a test picks its own base instant"
)]
mod tests {
    use super::*;

    #[test]
    fn client_messages_parse_and_bad_ones_say_why() {
        assert_eq!(
            ClientMessage::parse(false, br#"{"type":"subscribe","video":["3","7"]}"#),
            Ok(ClientMessage::Subscribe {
                video: vec!["3".into(), "7".into()]
            })
        );
        assert_eq!(
            ClientMessage::parse(
                false,
                br#"{"type":"layer","participant":"3","maxHeight":360}"#
            ),
            Ok(ClientMessage::Layer {
                participant: "3".into(),
                rid: None,
                max_height: Some(360)
            })
        );
        assert!(matches!(
            ClientMessage::parse(false, br#"{"type":"message","to":null,"data":{"t":1}}"#),
            Ok(ClientMessage::Message { to: None, .. })
        ));
        let unknown = ClientMessage::parse(false, br#"{"type":"dance"}"#).unwrap_err();
        assert!(unknown.contains("unknown variant"), "{unknown}");
        assert!(
            ClientMessage::parse(false, b"{")
                .unwrap_err()
                .starts_with("bad message")
        );
        assert!(
            ClientMessage::parse(true, b"{}")
                .unwrap_err()
                .contains("binary")
        );
        let big = vec![b' '; MAX_MESSAGE_BYTES + 1];
        assert!(
            ClientMessage::parse(false, &big)
                .unwrap_err()
                .contains("at most")
        );
        // Deeply nested data is refused by the parser's depth limit, not by the stack.
        let deep = format!(
            r#"{{"type":"message","data":{}{}}}"#,
            "[".repeat(5000),
            "]".repeat(5000)
        );
        assert!(ClientMessage::parse(false, deep.as_bytes()).is_err());
    }

    #[test]
    fn server_messages_are_tagged_json() {
        let m = ServerMessage::Slots {
            slots: vec![SlotView {
                mid: "2".into(),
                kind: "video",
                participant: None,
            }],
        };
        assert_eq!(
            m.to_json(),
            r#"{"type":"slots","slots":[{"mid":"2","kind":"video","participant":null}]}"#
        );
        assert_eq!(
            ServerMessage::Leave { participant: "9" }.to_json(),
            r#"{"type":"leave","participant":"9"}"#
        );
    }

    #[test]
    fn speaking_has_hysteresis() {
        let mut l = Loudness::default();
        for _ in 0..10 {
            for _ in 0..10 {
                l.packet(30); // 97 dB above silence
            }
            l.rank();
        }
        assert!(l.speaking());
        // Dropping to 55 (between off and on) keeps it speaking; below 50 it stops.
        for _ in 0..20 {
            l.packet(127 - 55);
            l.rank();
        }
        assert!(l.speaking());
        for _ in 0..20 {
            l.packet(127 - 40);
            l.rank();
        }
        assert!(!l.speaking());
        // No packets at all: silence.
        for _ in 0..20 {
            l.rank();
        }
        assert!(l.level() < 1.0);
    }

    #[test]
    fn str0m_s_negative_levels_read_as_rfc_6464_levels() {
        // str0m hands the extension over as -level: -30 is as loud as 30, -127 is silence.
        let (mut neg, mut pos, mut quiet) =
            (Loudness::default(), Loudness::default(), Loudness::default());
        for _ in 0..10 {
            neg.packet(-30);
            pos.packet(30);
            quiet.packet(-127);
            assert_eq!(neg.rank(), pos.rank());
            quiet.rank();
        }
        assert!(neg.speaking());
        assert!(!quiet.speaking() && quiet.level() < 1.0);
    }

    #[test]
    fn a_slot_holder_keeps_its_slot_unless_clearly_outspoken() {
        let current = [Some(1), Some(2)];
        // 3 speaks a little louder than 2: 2 keeps its slot.
        let c = [(1, 90.0, true), (2, 80.0, true), (3, 84.0, true)];
        assert_eq!(loudest(&c, &current, 2), vec![1, 2]);
        // Clearly louder: 3 takes it.
        let c = [(1, 90.0, true), (2, 70.0, true), (3, 84.0, true)];
        assert_eq!(loudest(&c, &current, 2), vec![1, 3]);
        // Nobody speaks: the slots keep what they have.
        let c = [(1, 0.0, false), (2, 0.0, false), (3, 5.0, false)];
        let mut kept = loudest(&c, &current, 2);
        kept.sort();
        assert_eq!(kept, vec![1, 2]);
    }

    #[test]
    fn placing_keeps_what_is_shown_where_it_is() {
        assert_eq!(
            place_stable(&[Some(1), Some(2), None], &[3, 2]),
            vec![Some(3), Some(2), None]
        );
        assert_eq!(
            place_stable(&[None, None], &[5, 6, 7]),
            vec![Some(5), Some(6)]
        );
        assert_eq!(place_stable::<u8>(&[Some(1)], &[]), vec![None]);
    }

    #[test]
    fn message_rate_allows_a_burst_then_the_rate() {
        let start = Instant::now();
        let mut r = MessageRate::default();
        let burst = (0..100).filter(|_| r.take(start)).count();
        assert_eq!(burst, MESSAGE_BURST as usize);
        let later = start + Duration::from_secs(1);
        let more = (0..100).filter(|_| r.take(later)).count();
        assert_eq!(more, MESSAGE_RATE as usize);
    }
}
