//! TEMPORARY stand-in (replaced by the real cache before commit).
use crate::peer::RtpIn;
use crate::sdp::CodecName;
use std::time::{Duration, Instant};
/// Limits.
#[derive(Debug, Clone, Copy)]
pub struct GopLimits {
    /// Bytes.
    pub max_bytes: usize,
    /// Age.
    pub max_age: Duration,
}
/// Cache.
#[derive(Debug)]
pub struct GopCache {
    codec: CodecName,
    packets: Vec<RtpIn>,
}
impl GopCache {
    /// New.
    pub fn new(codec: CodecName, _limits: GopLimits) -> Self {
        GopCache {
            codec,
            packets: Vec::new(),
        }
    }
    /// Push.
    pub fn push(&mut self, packet: &RtpIn, _now: Instant) {
        if crate::keyframe::starts_keyframe(self.codec, &packet.payload)
            && self.packets.first().is_none_or(|p| p.ts != packet.ts)
        {
            self.packets.clear();
        }
        if !self.packets.is_empty() || crate::keyframe::starts_keyframe(self.codec, &packet.payload)
        {
            self.packets.push(packet.clone());
        }
    }
    /// Replay.
    pub fn replay(&self, _now: Instant) -> impl Iterator<Item = &RtpIn> {
        self.packets.iter()
    }
}
