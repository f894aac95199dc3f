//! Sequence number and timestamp rewriting: each subscription presents one continuous RTP
//! stream to its viewer, whatever the source does (a first packet mid-stream, a publisher that
//! leaves and comes back with new SSRC, sequence numbers and timestamps, a simulcast layer
//! move). For VP8 the payload descriptor's own picture numbering is kept continuous too
//! ([`Vp8Ids`]).

use std::time::Instant;

use str0m::rtp::{Vp8Descriptor, Vp8Patch, Vp8PatchError};

/// Where a forwarded packet came from: a publisher session (its epoch) and its SSRC. A change of
/// source re-bases the rewriter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Source {
    /// The publisher's session (changes on a publisher restart).
    pub epoch: u64,
    /// The publisher's SSRC for this track.
    pub ssrc: u32,
}

/// Rewrites one source's (extended) sequence numbers and timestamps into one output stream.
#[derive(Debug, Clone)]
pub struct Rewriter {
    clock_rate: u32,
    mapping: Option<Mapping>,
    last_seq: u64,
    last_ts: u32,
    last_at: Option<Instant>,
}

#[derive(Debug, Clone, Copy)]
struct Mapping {
    source: Source,
    /// First input sequence number of this mapping; anything older is dropped.
    first_in: u64,
    seq_offset: u64,
    ts_offset: u32,
    /// Input timestamp of the latest frame mapped.
    last_in_ts: u32,
}

impl Rewriter {
    /// A rewriter whose output starts at `initial_seq` + 1 and `initial_ts`, for a codec with
    /// `clock_rate` Hz.
    pub fn new(clock_rate: u32, initial_seq: u16, initial_ts: u32) -> Self {
        Rewriter {
            clock_rate,
            mapping: None,
            last_seq: u64::from(initial_seq),
            last_ts: initial_ts,
            last_at: None,
        }
    }

    /// The codec's clock rate, Hz.
    pub fn clock_rate(&self) -> u32 {
        self.clock_rate
    }

    /// Has this rewriter forwarded anything yet?
    pub fn has_started(&self) -> bool {
        self.mapping.is_some()
    }

    /// Has this rewriter forwarded anything from `source` yet?
    pub fn follows(&self, source: Source) -> bool {
        self.mapping.is_some_and(|m| m.source == source)
    }

    /// Map one packet. `None` when the packet is older than where this mapping began (it was sent
    /// before the viewer's stream started on this source, so its place is taken).
    pub fn rewrite(
        &mut self,
        source: Source,
        seq: u64,
        ts: u32,
        now: Instant,
    ) -> Option<(u64, u32)> {
        let m = match self.mapping {
            Some(m) if m.source == source => m,
            _ => {
                // Re-base: continue one past the last output sequence number, and advance the
                // timestamp by the wall time since the last output packet (at least one tick)
                // so the viewer's jitter buffer sees time move forward.
                let next_seq = self.last_seq + 1;
                let next_ts = self.ts_after_last(now);
                let m = Mapping {
                    source,
                    first_in: seq,
                    seq_offset: next_seq.wrapping_sub(seq),
                    ts_offset: next_ts.wrapping_sub(ts),
                    last_in_ts: ts,
                };
                self.mapping = Some(m);
                m
            }
        };
        if seq < m.first_in {
            return None;
        }
        let out_seq = seq.wrapping_add(m.seq_offset);
        let out_ts = ts.wrapping_add(m.ts_offset);
        if out_seq > self.last_seq || self.last_at.is_none() {
            self.last_seq = out_seq;
            self.last_ts = out_ts;
            self.last_at = Some(now);
            if let Some(m) = self.mapping.as_mut() {
                m.last_in_ts = ts;
            }
        }
        Some((out_seq, out_ts))
    }

    /// Map one packet replayed faster than it was recorded (a cached keyframe and what
    /// followed it, sent to catch a viewer up): sequence numbers as [`Rewriter::rewrite`] maps
    /// them, but each new frame's timestamp is re-timed to the wall time since the previous
    /// output packet, so the viewer's jitter buffer sees timestamps advance with arrivals and
    /// plays the frames as fast as they come. Live packets after the replay continue from the
    /// last re-timed frame with their own spacing.
    pub fn rewrite_retimed(
        &mut self,
        source: Source,
        seq: u64,
        ts: u32,
        now: Instant,
    ) -> Option<(u64, u32)> {
        if self
            .mapping
            .is_some_and(|m| m.source == source && ts != m.last_in_ts && seq >= m.first_in)
        {
            let out_ts = self.ts_after_last(now);
            if let Some(m) = self.mapping.as_mut() {
                m.ts_offset = out_ts.wrapping_sub(ts);
            }
        }
        self.rewrite(source, seq, ts, now)
    }

    /// The last output timestamp advanced by the wall time since it went out (at least one
    /// tick, so the viewer's jitter buffer sees time move forward); the last one itself before
    /// anything went out.
    fn ts_after_last(&self, now: Instant) -> u32 {
        let Some(at) = self.last_at else {
            return self.last_ts;
        };
        let ms = now.saturating_duration_since(at).as_millis() as u64;
        let advance =
            ((ms * u64::from(self.clock_rate)) / 1000).clamp(1, u64::from(u32::MAX / 2)) as u32;
        self.last_ts.wrapping_add(advance)
    }
}

/// VP8 payload descriptor numbers (PictureID, TL0PICIDX, KEYIDX) kept continuous on one output
/// stream. Each simulcast layer, and each publisher session, numbers its own pictures; a viewer
/// moved from one to another would see them jump, and Chromium's VP8 reference finder then
/// holds back the new source's frames: in the simulcast browser test a viewer moved up a layer
/// decoded a few frames after the move's keyframe and then none for seconds, every packet
/// received. When the source changes (on its keyframe, as [`Rewriter`] re-bases) the new
/// numbers continue one past the last ones sent; the offsets go out as a str0m [`Vp8Patch`],
/// which str0m applies while it serialises the packet (no copy of the shared payload). A
/// viewer that never changed source gets no patch at all.
#[derive(Debug, Clone, Default)]
pub struct Vp8Ids {
    mapping: Option<Vp8Mapping>,
    /// The latest numbers sent: 15-bit PictureID, TL0PICIDX, KEYIDX.
    last: Option<(u16, u8, u8)>,
}

#[derive(Debug, Clone, Copy)]
struct Vp8Mapping {
    source: Source,
    picture_id: u16,
    tl0_pic_idx: u8,
    key_idx: u8,
}

const PICTURE_ID_MASK: u16 = 0x7fff;
const SHORT_PICTURE_ID_MASK: u16 = 0x7f;
const KEY_IDX_MASK: u8 = 0x1f;

impl Vp8Ids {
    /// The patch that keeps the numbers of a VP8 payload from `source`, whose descriptor is
    /// `d` (parsed once per packet, for all its viewers), continuous; `None` when it needs none
    /// (no change of source yet, or nothing to renumber).
    pub fn patch(&mut self, source: Source, d: &Vp8Descriptor) -> Option<Vp8Patch> {
        let (picture_id, tl0, key_idx) = (d.picture_id(), d.tl0_pic_idx(), d.key_idx());
        let m = match self.mapping {
            Some(m) if m.source == source => m,
            _ => {
                let m = match self.last {
                    None => Vp8Mapping {
                        source,
                        picture_id: 0,
                        tl0_pic_idx: 0,
                        key_idx: 0,
                    },
                    Some((last_pid, last_tl0, last_key)) => Vp8Mapping {
                        source,
                        picture_id: picture_id.map_or(0, |p| {
                            last_pid.wrapping_add(1).wrapping_sub(p) & PICTURE_ID_MASK
                        }),
                        tl0_pic_idx: tl0.map_or(0, |t| last_tl0.wrapping_add(1).wrapping_sub(t)),
                        key_idx: key_idx.map_or(0, |k| {
                            last_key.wrapping_add(1).wrapping_sub(k) & KEY_IDX_MASK
                        }),
                    },
                };
                self.mapping = Some(m);
                m
            }
        };
        let out_pid = picture_id.map(|p| p.wrapping_add(m.picture_id) & PICTURE_ID_MASK);
        let out_tl0 = tl0.map(|t| t.wrapping_add(m.tl0_pic_idx));
        let out_key = key_idx.map(|k| k.wrapping_add(m.key_idx) & KEY_IDX_MASK);
        // Only a newer picture moves the numbers on (a retransmission or a late packet of an
        // older one does not).
        let (last_pid, last_tl0, last_key) = self.last.unwrap_or_default();
        let newer = match (self.last, out_pid) {
            (None, _) | (_, None) => true,
            (Some(_), Some(p)) => {
                let ahead = p.wrapping_sub(last_pid) & PICTURE_ID_MASK;
                ahead != 0 && ahead < 0x4000
            }
        };
        if newer {
            self.last = Some((
                out_pid.unwrap_or(last_pid),
                out_tl0.unwrap_or(last_tl0),
                out_key.unwrap_or(last_key),
            ));
        }
        if m.picture_id == 0 && m.tl0_pic_idx == 0 && m.key_idx == 0 {
            return None;
        }
        let build = |pid: Option<u16>| {
            let mut b = d.patch();
            if let Some(p) = pid {
                b = b.picture_id(p);
            }
            if let Some(t) = out_tl0 {
                b = b.tl0_pic_idx(t);
            }
            if let Some(k) = out_key {
                b = b.key_idx(k);
            }
            b.build()
        };
        match build(out_pid) {
            // A 7-bit PictureID keeps its width: the numbers continue modulo 128.
            Err(Vp8PatchError::PictureIdTooLarge) => {
                build(out_pid.map(|p| p & SHORT_PICTURE_ID_MASK)).ok()
            }
            built => built.ok(),
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
    use std::time::Duration;

    #[test]
    fn continuous_across_restart() {
        let t0 = Instant::now();
        let mut r = Rewriter::new(90_000, 1000, 5000);
        let a = Source { epoch: 1, ssrc: 11 };
        assert_eq!(r.rewrite(a, 70_000, 100, t0), Some((1001, 5000)));
        assert_eq!(r.rewrite(a, 70_001, 3100, t0), Some((1002, 8000)));
        // Older than the start of the mapping: dropped.
        assert_eq!(r.rewrite(a, 69_999, 0, t0), None);
        // Publisher restarts 1 s later with new numbers.
        let b = Source { epoch: 2, ssrc: 22 };
        let t1 = t0 + Duration::from_secs(1);
        assert_eq!(r.rewrite(b, 5, 777, t1), Some((1003, 8000 + 90_000)));
        assert_eq!(r.rewrite(b, 6, 777 + 3000, t1), Some((1004, 8000 + 93_000)));
        assert!(r.follows(b) && !r.follows(a));
    }

    #[test]
    fn retransmission_keeps_its_place() {
        let t0 = Instant::now();
        let mut r = Rewriter::new(48_000, 0, 0);
        let a = Source { epoch: 1, ssrc: 1 };
        assert_eq!(r.rewrite(a, 10, 0, t0), Some((1, 0)));
        assert_eq!(r.rewrite(a, 12, 1920, t0), Some((3, 1920)));
        // 11 arrives late (repaired upstream) and fills its gap.
        assert_eq!(r.rewrite(a, 11, 960, t0), Some((2, 960)));
        assert_eq!(r.rewrite(a, 13, 2880, t0), Some((4, 2880)));
    }

    #[test]
    fn retimed_replay_then_live() {
        let t0 = Instant::now();
        let ms = |n: u64| t0 + Duration::from_millis(n);
        let mut r = Rewriter::new(90_000, 0, 1000);
        let a = Source { epoch: 1, ssrc: 1 };
        // A cached keyframe (two packets, ts 0) and two delta frames 33 ms apart, replayed
        // 10 ms apart: timestamps advance by 10 ms (900 ticks) per frame.
        assert_eq!(r.rewrite_retimed(a, 100, 0, ms(0)), Some((1, 1000)));
        assert_eq!(r.rewrite_retimed(a, 101, 0, ms(0)), Some((2, 1000)));
        assert_eq!(r.rewrite_retimed(a, 102, 3000, ms(10)), Some((3, 1900)));
        assert_eq!(r.rewrite_retimed(a, 103, 6000, ms(20)), Some((4, 2800)));
        // Live again: the next frame keeps its own 33 ms spacing from the last one.
        assert_eq!(r.rewrite(a, 104, 9000, ms(30)), Some((5, 5800)));
        assert_eq!(r.rewrite(a, 105, 12000, ms(63)), Some((6, 8800)));
    }

    #[test]
    fn timestamps_wrap() {
        let t0 = Instant::now();
        let mut r = Rewriter::new(90_000, 0, u32::MAX - 10);
        let a = Source { epoch: 1, ssrc: 1 };
        assert_eq!(r.rewrite(a, 1, 0, t0), Some((1, u32::MAX - 10)));
        assert_eq!(r.rewrite(a, 2, 20, t0), Some((2, 9)));
    }

    /// A VP8 payload with a 15-bit PictureID, TL0PICIDX and KEYIDX (RFC 7741), then a
    /// one-byte stand-in for the VP8 frame.
    fn vp8(picture_id: u16, tl0: u8, key_idx: u8) -> Vec<u8> {
        vec![
            0x90,
            0xf0,
            0x80 | (picture_id >> 8) as u8,
            picture_id as u8,
            tl0,
            key_idx & 0x1f,
            0x00,
        ]
    }

    fn d(payload: &[u8]) -> Vp8Descriptor {
        Vp8Descriptor::parse(payload).unwrap()
    }

    fn expected(payload: &[u8], picture_id: u16, tl0: u8, key_idx: u8) -> Option<Vp8Patch> {
        Vp8Descriptor::parse(payload)
            .unwrap()
            .patch()
            .picture_id(picture_id)
            .tl0_pic_idx(tl0)
            .key_idx(key_idx)
            .build()
            .ok()
    }

    #[test]
    fn vp8_numbers_continue_across_a_change_of_source() {
        let mut ids = Vp8Ids::default();
        let a = Source { epoch: 1, ssrc: 1 };
        let b = Source { epoch: 1, ssrc: 2 };
        // The first source goes out as it is.
        assert_eq!(ids.patch(a, &d(&vp8(30_000, 200, 3))), None);
        assert_eq!(ids.patch(a, &d(&vp8(30_001, 200, 3))), None);
        // A late packet of an older picture does not move the numbers on.
        assert_eq!(ids.patch(a, &d(&vp8(29_999, 199, 3))), None);
        // Another layer numbers its pictures far behind (and wrapping): its keyframe continues
        // one past the last picture sent, and so do the pictures after it.
        let p = vp8(12, 7, 30);
        assert_eq!(ids.patch(b, &d(&p)), expected(&p, 30_002, 201, 4));
        let p = vp8(13, 7, 30);
        assert_eq!(ids.patch(b, &d(&p)), expected(&p, 30_003, 201, 4));
        let p = vp8(14, 8, 30);
        assert_eq!(ids.patch(b, &d(&p)), expected(&p, 30_004, 202, 4));
        // Back to the first source: again one past the last sent, and 15-bit wrapping.
        let mut ids = Vp8Ids::default();
        assert_eq!(ids.patch(a, &d(&vp8(0x7fff, 255, 31))), None);
        let p = vp8(500, 40, 2);
        assert_eq!(ids.patch(b, &d(&p)), expected(&p, 0, 0, 0));
    }

    #[test]
    fn vp8_payloads_without_numbers_get_no_patch() {
        let mut ids = Vp8Ids::default();
        let a = Source { epoch: 1, ssrc: 1 };
        let b = Source { epoch: 2, ssrc: 1 };
        // A one-byte descriptor (no extensions) has nothing to renumber.
        assert_eq!(ids.patch(a, &d(&[0x10, 0x00])), None);
        assert_eq!(ids.patch(b, &d(&[0x10, 0x00])), None);
    }
}
