//! The keyframe (GOP) cache: for one publisher video layer, the packets from its latest keyframe
//! on, so that a viewer who joins (or switches to this layer) starts at once instead of waiting
//! for the publisher's next keyframe. Publishers that ignore PLI (OBS, FFmpeg) send keyframes
//! only at their encoder's interval, often every 2–4 s.
//!
//! The cache holds [`RtpIn`] clones: the payload is shared with the forwarding path (an `Arc`),
//! never copied, and nothing here is an SRTP datagram (str0m re-encrypts per viewer).
//!
//! # What it costs
//!
//! [`GopCache::bytes`] counts each cached packet as its payload plus [`PACKET_OVERHEAD`] (the
//! `RtpIn` slot and the payload's reference counts; 64 bytes on 64-bit targets when this was
//! written), so a flood of tiny packets is bounded as well as a few large ones. One 2.5 Mbit/s
//! layer with a 4 s keyframe interval holds, just before its next keyframe, 1.25 MB of payload
//! in about 1,100 packets of ~1,150 bytes: ~70 KB of overhead, ~1.32 MB in all (half that on
//! average over the interval), plus up to one spare `RtpIn` slot per packet in the queue's
//! capacity. A three-layer simulcast publisher (2.5 + 0.6 + 0.15 Mbit/s) costs ~1.8 MB at most.
//! [`GopLimits`] caps it: past `max_bytes` or `max_age` the cache empties itself and stays
//! empty until the next keyframe ([`GopCache::overflows`] counts each time).

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::keyframe::{self, h264_nal_type, h264_nal_units};
use crate::peer::RtpIn;
use crate::sdp::CodecName;

/// Default bound on one layer's cache, in bytes as [`GopCache::bytes`] counts them (for the
/// `[media] gop_cache_bytes` key): 4 MiB holds a 5 Mbit/s layer with keyframes every 6 s.
pub const DEFAULT_GOP_CACHE_BYTES: usize = 4 * 1024 * 1024;

/// Default bound on the age of the cached keyframe (for the `[media] gop_cache_max_age_ms`
/// key): 6 s covers the 2–4 s keyframe intervals of OBS and FFmpeg with room to spare. A
/// longer GOP is not cached at its end; a viewer then waits for the next keyframe.
pub const DEFAULT_GOP_CACHE_MAX_AGE: Duration = Duration::from_secs(6);

/// What one cached packet costs besides its payload bytes: its `RtpIn` and the two reference
/// counts in front of the shared payload.
pub const PACKET_OVERHEAD: usize = size_of::<RtpIn>() + 2 * size_of::<usize>();

// The module doc's memory figures assume a small `RtpIn`; revisit them if it grows.
const _: () = assert!(PACKET_OVERHEAD <= 96);

/// How far (in packets, from the newest) a late packet (a retransmission, a reordering) is still
/// put in its place; anything later is dropped and leaves a gap. 512 packets are more than half
/// a second of an 8 Mbit/s layer, more than a NACK round trip.
const REORDER_WINDOW: usize = 512;

/// The bounds of one layer's cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GopLimits {
    /// Most bytes held (payload plus [`PACKET_OVERHEAD`] per packet, plus the H264 parameter
    /// sets kept).
    pub max_bytes: usize,
    /// Oldest keyframe kept, by the arrival of its first packet.
    pub max_age: Duration,
}

impl Default for GopLimits {
    fn default() -> Self {
        GopLimits {
            max_bytes: DEFAULT_GOP_CACHE_BYTES,
            max_age: DEFAULT_GOP_CACHE_MAX_AGE,
        }
    }
}

/// The packets of one publisher video layer from its latest keyframe on. See the module doc.
#[derive(Debug)]
pub struct GopCache {
    codec: CodecName,
    limits: GopLimits,
    /// The current GOP; `None` until a keyframe (and after an overflow, until the next one).
    gop: Option<Gop>,
    /// The GOP's packets by extended sequence number, the keyframe's first packet first. Empty
    /// exactly when `gop` is `None`.
    packets: VecDeque<RtpIn>,
    /// Bytes held by `packets`, as counted by [`cost`].
    packet_bytes: usize,
    /// H264: the latest SPS and PPS seen (whole NAL units), for keyframes without them.
    sps: Option<Arc<[u8]>>,
    pps: Option<Arc<[u8]>>,
    resolution: Option<(u32, u32)>,
    overflows: u64,
}

/// What a viewer starting on this layer is sent first: see [`GopCache::replay`].
#[derive(Debug, Clone, Default)]
pub struct Replay {
    /// In sequence order: for H264 the SPS and PPS first when the keyframe's access unit lacks
    /// them (with the keyframe's timestamp, numbered just before it), then the keyframe and
    /// every packet after it that a decoder can use.
    pub packets: Vec<RtpIn>,
    /// Frames (distinct timestamps) in `packets`, the keyframe included.
    pub frames: usize,
    /// RTP timestamp ticks from the keyframe to the last frame in `packets`: how far behind live
    /// a viewer starts (at 90 kHz for video).
    pub ts_span: u32,
    /// The replay ends with the newest packet this layer received, so the live packets that
    /// follow continue it without a hole (its last frame may still be arriving). `false` when a
    /// gap in sequence numbers cut it short: it then ends with the last whole frame before the
    /// gap, and the live packets after that frame would reach the decoder without their
    /// references until the gap is filled or the next keyframe comes.
    pub reaches_newest: bool,
}

impl Replay {
    /// Nothing to replay.
    pub fn is_empty(&self) -> bool {
        self.packets.is_empty()
    }
}

#[derive(Debug, Clone)]
struct Gop {
    /// RTP timestamp of the keyframe.
    ts: u32,
    /// When the packet that started it arrived.
    since: Instant,
    /// H264: the keyframe's access unit carries an SPS / a PPS itself.
    has_sps: bool,
    has_pps: bool,
    /// H264: the latest parameter sets when the GOP began, replayed in front of a keyframe
    /// without its own.
    sps: Option<Arc<[u8]>>,
    pps: Option<Arc<[u8]>>,
}

impl GopCache {
    /// An empty cache for one layer of `codec`.
    pub fn new(codec: CodecName, limits: GopLimits) -> Self {
        GopCache {
            codec,
            limits,
            gop: None,
            packets: VecDeque::new(),
            packet_bytes: 0,
            sps: None,
            pps: None,
            resolution: None,
            overflows: 0,
        }
    }

    /// A packet of this layer arrived. Packets come in arrival order, with retransmissions and
    /// reordering: the cache keeps them sorted by extended sequence number and ignores
    /// duplicates.
    ///
    /// A packet that starts a keyframe with a timestamp other than the cached keyframe's (and a
    /// higher sequence number) begins a new GOP: every older packet is dropped. Packets before
    /// the first keyframe, and packets older than the cached keyframe, are not kept. When the
    /// bytes would pass `max_bytes`, or the keyframe is older than `max_age`, the cache empties
    /// and stays empty until the next keyframe.
    pub fn push(&mut self, packet: &RtpIn, now: Instant) {
        let starts = keyframe::starts_keyframe(self.codec, &packet.payload);
        if self.codec == CodecName::H264 {
            self.note_parameter_sets(&packet.payload);
            if self.bytes() > self.limits.max_bytes {
                self.overflow();
            }
        }
        if starts && let Some(size) = keyframe::resolution(self.codec, &packet.payload) {
            self.resolution = Some(size);
        }
        if self
            .gop
            .as_ref()
            .is_some_and(|g| now.saturating_duration_since(g.since) > self.limits.max_age)
        {
            self.overflow();
        }
        let (Some(gop), Some(first)) = (&self.gop, self.packets.front()) else {
            if starts {
                self.begin(packet, now);
            }
            return;
        };
        let first_seq = first.seq;
        if packet.seq < first_seq {
            // The keyframe's true first packet, late: it becomes the start.
            if starts && packet.ts == gop.ts && self.fits(packet) {
                self.packet_bytes += cost(packet);
                self.packets.push_front(packet.clone());
                self.note_keyframe_unit(packet);
            }
            return;
        }
        if starts && packet.ts != gop.ts && packet.seq > first_seq {
            self.begin(packet, now);
            return;
        }
        self.insert(packet);
    }

    /// What a viewer starting on this layer should be sent, at `now`: the keyframe and what
    /// follows it, in sequence order, from the keyframe's first packet up to the newest packet
    /// if no sequence number is missing in between, else up to the last whole frame before the
    /// first gap (see [`Replay::reaches_newest`]). Empty when nothing is cached, the keyframe is
    /// older than `max_age`, or a gap falls inside the keyframe. For H264 without parameter sets
    /// in the keyframe's access unit, the latest SPS and PPS seen come first (omitted if the
    /// keyframe's sequence number leaves no room before it, which only a stream starting at 0 or
    /// 1 does).
    pub fn replay(&self, now: Instant) -> Replay {
        let Some(gop) = &self.gop else {
            return Replay::default();
        };
        if now.saturating_duration_since(gop.since) > self.limits.max_age {
            return Replay::default();
        }
        let packets = &self.packets;
        if packets.is_empty() {
            return Replay::default();
        }
        let run = 1 + packets
            .iter()
            .zip(packets.iter().skip(1))
            .take_while(|(a, b)| a.seq.checked_add(1) == Some(b.seq))
            .count();
        let reaches_newest = run == packets.len();
        let cut = if reaches_newest {
            run
        } else {
            (0..run)
                .rev()
                .find(|&i| packets[i].marker || (i + 1 < run && packets[i + 1].ts != packets[i].ts))
                .map_or(0, |i| i + 1)
        };
        let Some(first) = packets.front().filter(|_| cut > 0) else {
            return Replay::default();
        };
        let mut out = Vec::with_capacity(cut + 2);
        let missing = [
            gop.sps.as_ref().filter(|_| !gop.has_sps),
            gop.pps.as_ref().filter(|_| !gop.has_pps),
        ];
        let missing: Vec<&Arc<[u8]>> = missing.into_iter().flatten().collect();
        if let Some(base) = first.seq.checked_sub(missing.len() as u64) {
            for (seq, nal) in (base..).zip(missing) {
                out.push(RtpIn {
                    seq,
                    marker: false,
                    payload: Arc::clone(nal),
                    ..first.clone()
                });
            }
        }
        out.extend(packets.range(..cut).cloned());
        let frames = 1 + packets
            .range(..cut)
            .zip(packets.range(1..cut))
            .filter(|(a, b)| a.ts != b.ts)
            .count();
        Replay {
            ts_span: packets[cut - 1].ts.wrapping_sub(first.ts),
            packets: out,
            frames,
            reaches_newest,
        }
    }

    /// Bytes held: each cached packet's payload plus [`PACKET_OVERHEAD`], and the H264
    /// parameter sets kept. Never more than `max_bytes`.
    pub fn bytes(&self) -> usize {
        let params = |p: &Option<Arc<[u8]>>| p.as_ref().map_or(0, |p| p.len());
        self.packet_bytes + params(&self.sps) + params(&self.pps)
    }

    /// Times the cache emptied itself because a bound was reached (bytes or age); for a metric.
    pub fn overflows(&self) -> u64 {
        self.overflows
    }

    /// The picture size of the latest keyframe that carried one (H264: of the latest SPS), kept
    /// across overflows; `None` before any.
    pub fn resolution(&self) -> Option<(u32, u32)> {
        self.resolution
    }

    /// Drop everything: call it when the publisher restarts or this layer's source changes (a
    /// new SSRC, new sequence numbers, new parameter sets).
    pub fn clear(&mut self) {
        self.gop = None;
        self.packets = VecDeque::new();
        self.packet_bytes = 0;
        self.sps = None;
        self.pps = None;
        self.resolution = None;
    }

    /// Start a new GOP at `packet` (a keyframe's first packet): drop every older packet, keep
    /// newer ones that arrived before it.
    fn begin(&mut self, packet: &RtpIn, now: Instant) {
        while self.packets.front().is_some_and(|p| p.seq < packet.seq) {
            if let Some(old) = self.packets.pop_front() {
                self.packet_bytes -= cost(&old);
            }
        }
        if self.packets.front().is_some_and(|p| p.seq == packet.seq) || !self.fits(packet) {
            return;
        }
        self.packet_bytes += cost(packet);
        self.packets.push_front(packet.clone());
        let mut gop = Gop {
            ts: packet.ts,
            since: now,
            has_sps: false,
            has_pps: false,
            sps: self.sps.clone(),
            pps: self.pps.clone(),
        };
        // This packet, and any of its access unit that came in before it.
        for p in self.packets.iter().filter(|p| p.ts == packet.ts) {
            gop.note_unit(self.codec, &p.payload);
        }
        self.gop = Some(gop);
    }

    /// Put `packet` (not older than the keyframe) in its place.
    fn insert(&mut self, packet: &RtpIn) {
        let at = match self.packets.back() {
            Some(last) if packet.seq > last.seq => self.packets.len(),
            _ => match self.packets.binary_search_by_key(&packet.seq, |p| p.seq) {
                Ok(_) => return, // a duplicate
                Err(at) => at,
            },
        };
        if self.packets.len() - at > REORDER_WINDOW || !self.fits(packet) {
            return;
        }
        self.packet_bytes += cost(packet);
        self.packets.insert(at, packet.clone());
        if self.gop.as_ref().is_some_and(|g| g.ts == packet.ts) {
            self.note_keyframe_unit(packet);
        }
    }

    /// Would `packet` fit in the byte bound? If not, the cache overflows.
    fn fits(&mut self, packet: &RtpIn) -> bool {
        if self.bytes() + cost(packet) <= self.limits.max_bytes {
            return true;
        }
        self.overflow();
        false
    }

    /// A bound was reached: empty until the next keyframe. The queue's allocation goes too, so a
    /// flood that grew it does not stay behind while [`GopCache::bytes`] says 0.
    fn overflow(&mut self) {
        self.overflows += 1;
        self.gop = None;
        self.packets = VecDeque::new();
        self.packet_bytes = 0;
    }

    /// H264: keep the latest SPS and PPS (single NAL units or inside a STAP-A).
    fn note_parameter_sets(&mut self, payload: &[u8]) {
        if !matches!(h264_nal_type(payload), Some(7 | 8 | 24)) {
            return;
        }
        for nal in h264_nal_units(payload) {
            match h264_nal_type(nal) {
                Some(7) => self.sps = Some(Arc::from(nal)),
                Some(8) => self.pps = Some(Arc::from(nal)),
                _ => {}
            }
        }
    }

    /// `packet` is part of the keyframe's access unit: note what it carries.
    fn note_keyframe_unit(&mut self, packet: &RtpIn) {
        if let Some(gop) = &mut self.gop {
            gop.note_unit(self.codec, &packet.payload);
        }
    }
}

impl Gop {
    /// A payload of the keyframe's access unit: H264 parameter sets in it count as the
    /// keyframe's own.
    fn note_unit(&mut self, codec: CodecName, payload: &[u8]) {
        if codec != CodecName::H264 {
            return;
        }
        for nal in h264_nal_units(payload) {
            match h264_nal_type(nal) {
                Some(7) => self.has_sps = true,
                Some(8) => self.has_pps = true,
                _ => {}
            }
        }
    }
}

/// What `packet` costs in the cache.
fn cost(packet: &RtpIn) -> usize {
    packet.payload.len() + PACKET_OVERHEAD
}

#[cfg(test)]
#[allow(
    clippy::disallowed_methods,
    reason = "a test picks its own base instant"
)]
mod tests {
    use super::*;
    use crate::TrackKind;
    use crate::peer::ForwardedExt;

    fn packet(seq: u64, ts: u32, marker: bool, payload: &[u8]) -> RtpIn {
        RtpIn {
            kind: TrackKind::Video,
            ssrc: 0x1234,
            pt: 96,
            seq,
            ts,
            marker,
            layer: 0,
            payload: Arc::from(payload),
            ext: ForwardedExt::default(),
        }
    }

    /// VP8: the first packet of a keyframe, of a delta frame, and any later packet of a frame
    /// (the byte after the marker makes payloads tell apart).
    fn key(seq: u64, ts: u32, marker: bool) -> RtpIn {
        packet(seq, ts, marker, &[0x10, 0x00, seq as u8])
    }
    fn delta(seq: u64, ts: u32, marker: bool) -> RtpIn {
        packet(seq, ts, marker, &[0x10, 0x01, seq as u8])
    }
    fn more(seq: u64, ts: u32, marker: bool) -> RtpIn {
        packet(seq, ts, marker, &[0x00, 0xaa, seq as u8])
    }

    fn seqs(r: &Replay) -> Vec<u64> {
        r.packets.iter().map(|p| p.seq).collect()
    }

    fn vp8() -> GopCache {
        GopCache::new(CodecName::Vp8, GopLimits::default())
    }

    /// Keyframe at 10 (ts 0, packets 10–12), delta frames at 13–14 (ts 3000) and 15 (ts 6000).
    fn push_gop(c: &mut GopCache, now: Instant) {
        for p in [
            key(10, 0, false),
            more(11, 0, false),
            more(12, 0, true),
            delta(13, 3000, false),
            more(14, 3000, true),
            delta(15, 6000, true),
        ] {
            c.push(&p, now);
        }
    }

    #[test]
    fn a_keyframe_starts_a_gop_and_drops_what_came_before() {
        let now = Instant::now();
        let mut c = vp8();
        // Nothing before the first keyframe is kept.
        c.push(&delta(8, 0xffff_0000, true), now);
        c.push(&more(9, 0xffff_0000, true), now);
        assert!(c.replay(now).is_empty());
        assert_eq!(c.bytes(), 0);

        push_gop(&mut c, now);
        let r = c.replay(now);
        assert_eq!(seqs(&r), [10, 11, 12, 13, 14, 15]);
        assert_eq!((r.frames, r.ts_span, r.reaches_newest), (3, 6000, true));
        assert_eq!(r.packets[2].payload[..], [0x00, 0xaa, 12]);
        assert_eq!(c.bytes(), 6 * (3 + PACKET_OVERHEAD));

        // The next keyframe (new timestamp) replaces the GOP; its later packets follow it.
        c.push(&key(16, 9000, false), now);
        c.push(&more(17, 9000, true), now);
        c.push(&delta(18, 12000, true), now);
        let r = c.replay(now);
        assert_eq!(seqs(&r), [16, 17, 18]);
        assert_eq!((r.frames, r.ts_span), (2, 3000));
        assert_eq!(c.bytes(), 3 * (3 + PACKET_OVERHEAD));

        // A later packet of the same keyframe that also looks like a start (same timestamp)
        // does not restart it; an old keyframe's retransmission is ignored.
        c.push(&key(19, 9000, false), now);
        c.push(&key(12, 0, true), now);
        assert_eq!(seqs(&c.replay(now)), [16, 17, 18, 19]);
        assert_eq!(c.overflows(), 0);
    }

    #[test]
    fn bounded_by_bytes_empty_until_the_next_keyframe() {
        let now = Instant::now();
        let limits = GopLimits {
            max_bytes: 4 * (3 + PACKET_OVERHEAD),
            ..GopLimits::default()
        };
        let mut c = GopCache::new(CodecName::Vp8, limits);
        push_gop(&mut c, now); // six packets do not fit in four
        assert!(c.bytes() <= limits.max_bytes);
        assert_eq!(c.overflows(), 1);
        assert!(c.replay(now).is_empty());
        assert_eq!(c.bytes(), 0);
        // Delta frames after the overflow are not kept.
        c.push(&delta(16, 9000, true), now);
        assert_eq!((c.bytes(), c.replay(now).is_empty()), (0, true));
        // The next keyframe starts over.
        c.push(&key(17, 12000, true), now);
        c.push(&delta(18, 15000, true), now);
        assert_eq!(seqs(&c.replay(now)), [17, 18]);

        // A flood of tiny packets is bounded by their count as well.
        let mut c = GopCache::new(
            CodecName::Vp8,
            GopLimits {
                max_bytes: 64 * 1024,
                ..limits
            },
        );
        c.push(&key(1, 0, true), now);
        for seq in 2..100_000 {
            c.push(&packet(seq, seq as u32, true, &[]), now);
            assert!(c.bytes() <= 64 * 1024);
        }
        assert_eq!(c.overflows(), 1);
        // Its queue's allocation went with it.
        assert_eq!(c.packets.capacity(), 0);
    }

    #[test]
    fn bounded_by_age_empty_until_the_next_keyframe() {
        let t0 = Instant::now();
        let max_age = Duration::from_secs(2);
        let mut c = GopCache::new(
            CodecName::Vp8,
            GopLimits {
                max_age,
                ..GopLimits::default()
            },
        );
        push_gop(&mut c, t0);
        let late = t0 + max_age + Duration::from_millis(1);
        assert_eq!(c.replay(t0 + max_age).packets.len(), 6);
        // Too old to start a viewer on, even before another packet arrives.
        assert!(c.replay(late).is_empty());
        c.push(&delta(16, 9000, true), late);
        assert_eq!((c.bytes(), c.overflows()), (0, 1));
        assert!(c.replay(late).is_empty());
        c.push(&key(17, 12000, true), late);
        assert_eq!(seqs(&c.replay(late)), [17]);
    }

    #[test]
    fn reordered_and_duplicate_packets_are_sorted_and_kept_once() {
        let now = Instant::now();
        let mut c = vp8();
        for p in [
            key(10, 0, false),
            more(12, 0, true),
            more(11, 0, false),
            delta(13, 3000, false),
            more(11, 0, false),
            delta(15, 6000, true),
            more(14, 3000, true),
            delta(15, 6000, true),
        ] {
            c.push(&p, now);
        }
        let r = c.replay(now);
        assert_eq!(seqs(&r), [10, 11, 12, 13, 14, 15]);
        assert_eq!(c.bytes(), 6 * (3 + PACKET_OVERHEAD));

        // The next keyframe's second packet before its first: the first starts the GOP and
        // keeps the second, which came in earlier.
        c.push(&more(17, 9000, true), now);
        c.push(&key(16, 9000, false), now);
        assert_eq!(seqs(&c.replay(now)), [16, 17]);

        // A late packet further back than the reorder window is dropped.
        let mut c = vp8();
        c.push(&key(1, 0, true), now);
        for seq in 3..(3 + REORDER_WINDOW as u64 + 1) {
            c.push(&delta(seq, seq as u32, true), now);
        }
        c.push(&delta(2, 2, true), now);
        assert_eq!(c.replay(now).packets.len(), 1);
    }

    #[test]
    fn a_keyframe_whose_first_packet_comes_late_starts_from_it() {
        // H264: STAP-A (SPS, PPS) is the keyframe's first packet, the IDR's FU-A start (also
        // a keyframe start) arrives before it.
        let now = Instant::now();
        let mut c = GopCache::new(CodecName::H264, GopLimits::default());
        let stap = [0x78, 0, 2, 0x67, 0x42, 0, 2, 0x68, 0xce];
        c.push(&packet(21, 0, false, &[0x7c, 0x85, 1]), now);
        c.push(&packet(22, 0, true, &[0x7c, 0x45, 2]), now);
        c.push(&packet(20, 0, false, &stap), now);
        let r = c.replay(now);
        assert_eq!(seqs(&r), [20, 21, 22]);
        assert_eq!(r.frames, 1);
    }

    #[test]
    fn a_gap_cuts_the_replay_at_the_last_whole_frame() {
        let now = Instant::now();
        let mut c = vp8();
        for p in [
            key(10, 0, false),
            more(11, 0, false),
            more(12, 0, true),
            delta(13, 3000, false),
            more(14, 3000, true),
            delta(15, 6000, false),
            // 16 lost
            more(17, 6000, true),
            delta(18, 9000, true),
        ] {
            c.push(&p, now);
        }
        let r = c.replay(now);
        assert_eq!(seqs(&r), [10, 11, 12, 13, 14]);
        assert_eq!((r.frames, r.ts_span, r.reaches_newest), (2, 3000, false));
        // A frame without a marker ends where the next timestamp begins.
        let mut c = vp8();
        for p in [
            key(10, 0, false),
            delta(11, 3000, false),
            more(13, 3000, true),
        ] {
            c.push(&p, now);
        }
        assert_eq!(seqs(&c.replay(now)), [10]);
        // The retransmission fills the gap: everything up to the newest.
        c.push(&more(12, 3000, false), now);
        let r = c.replay(now);
        assert_eq!((seqs(&r), r.reaches_newest), (vec![10, 11, 12, 13], true));
    }

    #[test]
    fn an_incomplete_keyframe_replays_nothing() {
        let now = Instant::now();
        let mut c = vp8();
        for p in [
            key(10, 0, false),
            // 11 lost
            more(12, 0, true),
            delta(13, 3000, true),
        ] {
            c.push(&p, now);
        }
        assert!(c.replay(now).is_empty());
        // A keyframe still arriving, with nothing missing so far, replays what came: the rest
        // follows live.
        let mut c = vp8();
        c.push(&key(10, 0, false), now);
        c.push(&more(11, 0, false), now);
        let r = c.replay(now);
        assert_eq!(
            (seqs(&r), r.reaches_newest, r.frames),
            (vec![10, 11], true, 1)
        );
    }

    /// H264 payloads: a single-NAL SPS and PPS, a STAP-A of both, an IDR in three FU-A
    /// fragments, a non-IDR slice.
    const SPS: &[u8] = &[
        0x67, 0x42, 0xe0, 0x1f, 0xf4, 0x02, 0x80, 0x2d, 0xc8, // 1280x720 baseline
    ];
    const PPS: &[u8] = &[0x68, 0xce, 0x06, 0xe2];

    fn stap(nals: &[&[u8]]) -> Vec<u8> {
        let mut out = vec![0x78];
        for nal in nals {
            out.extend_from_slice(&(nal.len() as u16).to_be_bytes());
            out.extend_from_slice(nal);
        }
        out
    }

    fn idr(c: &mut GopCache, seq: u64, ts: u32, now: Instant) {
        c.push(&packet(seq, ts, false, &[0x7c, 0x85, 0xb8]), now);
        c.push(&packet(seq + 1, ts, false, &[0x7c, 0x05, 0x11]), now);
        c.push(&packet(seq + 2, ts, true, &[0x7c, 0x45, 0x22]), now);
    }

    #[test]
    fn h264_parameter_sets_come_before_a_keyframe_without_them() {
        let now = Instant::now();
        let mut c = GopCache::new(CodecName::H264, GopLimits::default());
        // Parameter sets once at the start (their own timestamp), then IDR-only keyframes.
        c.push(&packet(100, 0, false, SPS), now);
        c.push(&packet(101, 0, false, PPS), now);
        idr(&mut c, 102, 3000, now);
        c.push(&packet(105, 6000, true, &[0x41, 0x9a]), now);
        let r = c.replay(now);
        assert_eq!(seqs(&r), [100, 101, 102, 103, 104, 105]);
        idr(&mut c, 106, 9000, now);
        c.push(&packet(109, 12000, true, &[0x41, 0x9b]), now);
        let r = c.replay(now);
        assert_eq!(seqs(&r), [104, 105, 106, 107, 108, 109]);
        assert_eq!(r.packets[0].payload[..], *SPS);
        assert_eq!(r.packets[1].payload[..], *PPS);
        for p in &r.packets[..2] {
            assert_eq!((p.ts, p.marker, p.ssrc, p.pt), (9000, false, 0x1234, 96));
        }
        assert_eq!(r.packets[2].payload[..], [0x7c, 0x85, 0xb8]);
        assert_eq!((r.frames, r.ts_span), (2, 3000));
        assert_eq!(c.resolution(), Some((1280, 720)));

        // A keyframe that carries its own (a STAP-A in front) gets nothing added.
        c.push(&packet(110, 15000, false, &stap(&[SPS, PPS])), now);
        idr(&mut c, 111, 15000, now);
        assert_eq!(seqs(&c.replay(now)), [110, 111, 112, 113]);
        // Only the PPS in the unit: the SPS is added alone, just before it.
        c.push(&packet(114, 18000, false, &stap(&[PPS])), now);
        idr(&mut c, 115, 18000, now);
        let r = c.replay(now);
        assert_eq!(seqs(&r), [113, 114, 115, 116, 117]);
        assert_eq!(r.packets[0].payload[..], *SPS);
        // Never seen any: the keyframe alone.
        let mut c = GopCache::new(CodecName::H264, GopLimits::default());
        idr(&mut c, 5, 0, now);
        assert_eq!(seqs(&c.replay(now)), [5, 6, 7]);
    }

    #[test]
    fn default_limits_hold_a_four_second_gop_at_2_5_mbits() {
        // 30 frames/s, 2.5 Mbit/s in 1,150-byte packets, a keyframe every 4 s: the figures of
        // the module doc.
        let t0 = Instant::now();
        let mut c = vp8();
        let mut seq = 0;
        let per_frame = 2_500_000 / 8 / 30;
        let mut payload_bytes = 0;
        let mut packets = 0;
        for frame in 0..120u32 {
            let at = t0 + Duration::from_millis(u64::from(frame) * 1000 / 30);
            let mut left = per_frame;
            let mut first = true;
            while left > 0 {
                let n = left.min(1150);
                left -= n;
                let mut payload = vec![0u8; n];
                payload[0] = if first { 0x10 } else { 0x00 };
                payload[1] = u8::from(frame != 0);
                c.push(&packet(seq, frame * 3000, left == 0, &payload), at);
                seq += 1;
                first = false;
                payload_bytes += n;
                packets += 1;
            }
        }
        let end = t0 + Duration::from_secs(4);
        let r = c.replay(end);
        assert_eq!(
            (r.frames, r.packets.len(), c.overflows()),
            (120, packets, 0)
        );
        assert_eq!(c.bytes(), payload_bytes + packets * PACKET_OVERHEAD);
        assert!(c.bytes() < DEFAULT_GOP_CACHE_BYTES / 3, "{}", c.bytes());
    }

    #[test]
    fn clear_drops_everything() {
        let now = Instant::now();
        let mut c = GopCache::new(CodecName::H264, GopLimits::default());
        c.push(&packet(1, 0, false, &stap(&[SPS, PPS])), now);
        idr(&mut c, 2, 0, now);
        assert!(!c.replay(now).is_empty());
        c.clear();
        assert_eq!((c.bytes(), c.resolution()), (0, None));
        idr(&mut c, 10, 3000, now);
        // No parameter sets remembered from before the restart.
        assert_eq!(seqs(&c.replay(now)), [10, 11, 12]);
    }
}
