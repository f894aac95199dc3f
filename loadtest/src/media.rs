//! Synthetic media an SFU cannot tell from real: VP8 (RFC 7741 payload descriptor) or H264
//! (packetization-mode 1: STAP-A with SPS+PPS on keyframes, FU-A fragments) video frames and
//! Opus-like audio packets.
//!
//! Every payload ends with a [`Probe`]: which publisher sent it, a per-track sequence number and
//! the send time in nanoseconds since the process-wide [`anchor`], so a full viewer in the same
//! process computes one-way latency. The bytes between the codec header and the probe are a
//! function of the probe ([`filler`]), so a full viewer can check the payload byte for byte.

use std::sync::OnceLock;
use std::time::Instant;

/// Largest RTP payload produced.
pub const MAX_PAYLOAD: usize = 1200;

/// The process-wide time origin of probe send times.
pub fn anchor() -> Instant {
    static ANCHOR: OnceLock<Instant> = OnceLock::new();
    *ANCHOR.get_or_init(Instant::now)
}

/// Nanoseconds from [`anchor`] to `t`.
pub fn nanos_since_anchor(t: Instant) -> u64 {
    t.saturating_duration_since(anchor()).as_nanos() as u64
}

/// The video codec publishers send.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum VideoCodec {
    /// VP8.
    Vp8,
    /// H264, packetization-mode 1.
    H264,
}

/// What a synthetic payload carries at its end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Probe {
    /// The publisher (unique in this run).
    pub publisher: u32,
    /// 0 audio, 1 video.
    pub kind: u8,
    /// Bytes before the filler: the codec header (and, in a STAP-A, the SPS and PPS start).
    pub header_len: u16,
    /// Packet number of this publisher's track.
    pub seq: u32,
    /// Send time, nanoseconds since [`anchor`].
    pub sent_ns: u64,
}

const MAGIC: [u8; 2] = *b"LT";

impl Probe {
    /// Encoded length.
    pub const LEN: usize = 2 + 4 + 1 + 2 + 4 + 8;

    /// Read the probe at the end of a payload.
    pub fn parse(payload: &[u8]) -> Option<Probe> {
        let t = payload.get(payload.len().checked_sub(Probe::LEN)?..)?;
        if t[0..2] != MAGIC {
            return None;
        }
        Some(Probe {
            publisher: u32::from_be_bytes(t[2..6].try_into().ok()?),
            kind: t[6],
            header_len: u16::from_be_bytes(t[7..9].try_into().ok()?),
            seq: u32::from_be_bytes(t[9..13].try_into().ok()?),
            sent_ns: u64::from_be_bytes(t[13..21].try_into().ok()?),
        })
    }

    fn write(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&MAGIC);
        out.extend_from_slice(&self.publisher.to_be_bytes());
        out.push(self.kind);
        out.extend_from_slice(&self.header_len.to_be_bytes());
        out.extend_from_slice(&self.seq.to_be_bytes());
        out.extend_from_slice(&self.sent_ns.to_be_bytes());
    }

    fn seed(&self) -> u32 {
        self.publisher
            .wrapping_mul(0x9e37_79b9)
            .wrapping_add(self.seq.wrapping_mul(31))
            .wrapping_add(u32::from(self.kind))
    }
}

/// The `i`-th filler byte of the payload carrying `probe`.
pub fn filler(probe: &Probe, i: usize) -> u8 {
    (probe.seed().wrapping_add((i as u32).wrapping_mul(13)) >> 3) as u8
}

/// Whether `payload` is intact: its probe parses and the bytes between the header and the
/// probe are the filler the probe implies. Returns the probe when it is.
pub fn verify(payload: &[u8]) -> Option<Probe> {
    let probe = Probe::parse(payload)?;
    let start = usize::from(probe.header_len);
    let end = payload.len() - Probe::LEN;
    if start > end {
        return None;
    }
    payload[start..end]
        .iter()
        .enumerate()
        .all(|(i, &b)| b == filler(&probe, i))
        .then_some(probe)
}

/// Builds one track's payloads, numbering packets.
#[derive(Debug, Clone)]
pub struct Packetizer {
    publisher: u32,
    seq: u32,
}

impl Packetizer {
    /// A packetizer for `publisher`'s track.
    pub fn new(publisher: u32) -> Self {
        Packetizer { publisher, seq: 0 }
    }

    fn payload(&mut self, kind: u8, header: &[u8], body: usize, sent_ns: u64) -> Vec<u8> {
        let probe = self.next_probe(kind, header.len(), sent_ns);
        let mut p = Vec::with_capacity(header.len() + body + Probe::LEN);
        p.extend_from_slice(header);
        p.extend((0..body).map(|i| filler(&probe, i)));
        probe.write(&mut p);
        p
    }

    fn next_probe(&mut self, kind: u8, header_len: usize, sent_ns: u64) -> Probe {
        let probe = Probe {
            publisher: self.publisher,
            kind,
            header_len: header_len as u16,
            seq: self.seq,
            sent_ns,
        };
        self.seq = self.seq.wrapping_add(1);
        probe
    }

    /// One Opus-like audio payload of `size` bytes (clamped to 60 ..= 160): a TOC byte
    /// (config 31 SILK/CELT FB 20 ms, mono, one frame), filler, probe.
    pub fn audio(&mut self, size: usize, sent_ns: u64) -> Vec<u8> {
        let size = size.clamp(60, 160);
        self.payload(0, &[0xf8], size - 1 - Probe::LEN, sent_ns)
    }

    /// The RTP payloads of one video frame of about `size` bytes, each at most
    /// [`MAX_PAYLOAD`]; the marker bit belongs on the last. VP8 keyframes carry `dims`
    /// (width, height) as an encoder writes them.
    pub fn video(
        &mut self,
        codec: VideoCodec,
        keyframe: bool,
        size: usize,
        dims: (u16, u16),
        sent_ns: u64,
    ) -> Vec<Vec<u8>> {
        match codec {
            VideoCodec::Vp8 => self.vp8(keyframe, size, dims, sent_ns),
            VideoCodec::H264 => self.h264(keyframe, size, sent_ns),
        }
    }

    /// VP8: a one-byte descriptor (S on the first packet, partition 0), then on the first
    /// packet the frame tag (P bit clear on keyframes, show_frame) and, on keyframes, the start
    /// code and the 14-bit width and height (scale bits zero), little-endian (RFC 6386 9.1).
    fn vp8(&mut self, keyframe: bool, size: usize, dims: (u16, u16), sent_ns: u64) -> Vec<Vec<u8>> {
        let sizes = chunks(size, 11 + Probe::LEN);
        sizes
            .iter()
            .enumerate()
            .map(|(i, &body)| {
                let mut header = Vec::with_capacity(11);
                if i == 0 {
                    header.push(0x10);
                    header.push(if keyframe { 0x10 } else { 0x11 });
                    header.extend_from_slice(&[0x02, 0x00]);
                    if keyframe {
                        header.extend_from_slice(&[0x9d, 0x01, 0x2a]);
                        header.extend_from_slice(&(dims.0 & 0x3fff).to_le_bytes());
                        header.extend_from_slice(&(dims.1 & 0x3fff).to_le_bytes());
                    }
                } else {
                    header.push(0x00);
                }
                self.payload(1, &header, body, sent_ns)
            })
            .collect()
    }

    /// H264 packetization-mode 1: keyframes start with a STAP-A holding SPS and PPS (the probe
    /// ends the PPS), then the IDR slice; slices that do not fit one packet go as FU-A.
    fn h264(&mut self, keyframe: bool, size: usize, sent_ns: u64) -> Vec<Vec<u8>> {
        let nal_type: u8 = if keyframe { 5 } else { 1 };
        let nri: u8 = if keyframe { 3 << 5 } else { 2 << 5 };
        let mut out = Vec::new();
        if keyframe {
            const SPS: &[u8] = &[0x67, 0x42, 0xe0, 0x1f, 0xda, 0x02, 0x80, 0xbf, 0xe5, 0x84];
            const PPS: &[u8] = &[0x68, 0xce, 0x3c, 0x80];
            let mut header = vec![0x78];
            header.extend_from_slice(&(SPS.len() as u16).to_be_bytes());
            header.extend_from_slice(SPS);
            header.extend_from_slice(&((PPS.len() + Probe::LEN) as u16).to_be_bytes());
            header.extend_from_slice(PPS);
            out.push(self.payload(1, &header, 0, sent_ns));
        }
        let sizes = chunks(size, 2 + Probe::LEN);
        if sizes.len() == 1 {
            out.push(self.payload(1, &[nri | nal_type], sizes[0], sent_ns));
            return out;
        }
        let last = sizes.len() - 1;
        for (i, &body) in sizes.iter().enumerate() {
            let fu_indicator = nri | 28;
            let start = if i == 0 { 0x80 } else { 0 };
            let end = if i == last { 0x40 } else { 0 };
            out.push(self.payload(1, &[fu_indicator, start | end | nal_type], body, sent_ns));
        }
        out
    }
}

/// Whether a video payload starts a keyframe (what an SFU looks at). VP8: the payload
/// descriptor's optional fields (picture id, TL0PICIDX, TID/KEYIDX; RFC 7741 4.2), which an SFU
/// may add or rewrite, are skipped to reach the frame tag.
pub fn is_keyframe(codec: VideoCodec, payload: &[u8]) -> bool {
    match codec {
        VideoCodec::Vp8 => vp8_frame_tag(payload).is_some_and(|tag| tag & 0x01 == 0),
        VideoCodec::H264 => match payload.first().map(|b| b & 0x1f) {
            Some(5 | 7) => true,
            Some(24) => payload.get(3).is_some_and(|b| b & 0x1f == 7),
            Some(28) => payload
                .get(1)
                .is_some_and(|b| b & 0x80 != 0 && b & 0x1f == 5),
            _ => false,
        },
    }
}

/// The first byte of the VP8 frame tag when `payload` starts partition 0 of a frame.
fn vp8_frame_tag(payload: &[u8]) -> Option<u8> {
    payload.get(vp8_tag_offset(payload)?).copied()
}

/// Where the VP8 frame tag starts when `payload` starts partition 0 of a frame.
fn vp8_tag_offset(payload: &[u8]) -> Option<usize> {
    let first = *payload.first()?;
    if first & 0x10 == 0 || first & 0x07 != 0 {
        return None; // not the start of partition 0
    }
    let mut at = 1;
    if first & 0x80 != 0 {
        let x = *payload.get(1)?;
        at = 2;
        if x & 0x80 != 0 {
            // Picture id: 7 bits, or 15 with the M bit.
            at += if payload.get(at)? & 0x80 != 0 { 2 } else { 1 };
        }
        if x & 0x40 != 0 {
            at += 1; // TL0PICIDX
        }
        if x & 0x30 != 0 {
            at += 1; // TID/Y/KEYIDX
        }
    }
    (at < payload.len()).then_some(at)
}

/// Split `size` body bytes into chunks so each payload (with `overhead` bytes of header and
/// probe) fits in [`MAX_PAYLOAD`].
fn chunks(size: usize, overhead: usize) -> Vec<usize> {
    let per = MAX_PAYLOAD - overhead;
    let n = size.div_ceil(per).max(1);
    let (base, extra) = (size / n, size % n);
    (0..n).map(|i| base + usize::from(i < extra)).collect()
}

/// Frame sizes for a video track: delta and keyframe bytes such that the average over one
/// keyframe interval matches `bitrate` (a keyframe is 4 deltas).
pub fn frame_sizes(bitrate_bps: u64, fps: u32, keyframe_every: u32) -> (usize, usize) {
    let per_frame = bitrate_bps as f64 / 8.0 / f64::from(fps);
    let k = f64::from(keyframe_every.max(1));
    let delta = (per_frame * k / (k + 3.0)).max(1.0);
    (delta as usize, (delta * 4.0) as usize)
}

/// The resolution a plain (not simulcast) publisher's VP8 keyframes carry.
pub const PLAIN_DIMS: (u16, u16) = (640, 360);

/// The resolution of a simulcast publisher's top layer; each layer below halves both sides.
pub const TOP_DIMS: (u16, u16) = (1280, 720);

/// Most simulcast layers a publisher sends (what OBS and browsers send at most).
pub const MAX_LAYERS: usize = 4;

/// Each simulcast layer's share of the top layer's bitrate: a quarter of the pixels costs about
/// a third of the bits, as browsers allot it (720p 2.5 Mbit/s, 360p ~0.8, 180p ~0.25).
const LAYER_BITRATE_SHARE: [f64; MAX_LAYERS] = [1.0, 1.0 / 3.0, 1.0 / 10.0, 1.0 / 30.0];

/// One simulcast layer a publisher sends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layer {
    /// Its rid in the offer (`a=rid:<rid> send`) and in the rtp-stream-id extension.
    pub rid: String,
    /// Width and height its VP8 keyframes carry.
    pub dims: (u16, u16),
    /// Its bitrate.
    pub bitrate_bps: u64,
    /// Bytes per delta frame and per keyframe.
    pub frame_sizes: (usize, usize),
}

/// `count` (1 ..= [`MAX_LAYERS`]) simulcast layers, best first, OBS 32.1's naming: rid `0` is
/// the top layer at `bitrate_bps` and [`TOP_DIMS`], each next rid has half the width and height
/// and the bitrate share of [`LAYER_BITRATE_SHARE`].
pub fn simulcast_layers(
    count: usize,
    bitrate_bps: u64,
    fps: u32,
    keyframe_every: u32,
) -> Vec<Layer> {
    (0..count.clamp(1, MAX_LAYERS))
        .map(|i| {
            let bitrate = ((bitrate_bps as f64 * LAYER_BITRATE_SHARE[i]) as u64).max(8_000);
            Layer {
                rid: i.to_string(),
                dims: (TOP_DIMS.0 >> i, TOP_DIMS.1 >> i),
                bitrate_bps: bitrate,
                frame_sizes: frame_sizes(bitrate, fps, keyframe_every),
            }
        })
        .collect()
}

/// The width and height in a VP8 keyframe payload (RFC 6386 9.1), if it is one.
#[cfg(test)]
pub fn vp8_keyframe_dims(payload: &[u8]) -> Option<(u16, u16)> {
    let tag_at = vp8_tag_offset(payload)?;
    let header = payload.get(tag_at..tag_at + 10)?;
    if header[0] & 0x01 != 0 || header[3..6] != [0x9d, 0x01, 0x2a] {
        return None;
    }
    let width = u16::from_le_bytes([header[6], header[7]]) & 0x3fff;
    let height = u16::from_le_bytes([header[8], header[9]]) & 0x3fff;
    Some((width, height))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads_verify_and_fit() {
        for codec in [VideoCodec::Vp8, VideoCodec::H264] {
            let mut p = Packetizer::new(7);
            for (key, size) in [(true, 40_000), (false, 9_000), (false, 100), (true, 10)] {
                let packets = p.video(codec, key, size, PLAIN_DIMS, 123);
                assert_eq!(is_keyframe(codec, &packets[0]), key, "{codec:?} {key}");
                for (i, packet) in packets.iter().enumerate() {
                    assert!(packet.len() <= MAX_PAYLOAD);
                    let probe = verify(packet).expect("intact");
                    assert_eq!((probe.publisher, probe.kind, probe.sent_ns), (7, 1, 123));
                    // H264: the IDR slice after the STAP-A starts a keyframe too.
                    if i > usize::from(codec == VideoCodec::H264 && key) {
                        assert!(!is_keyframe(codec, packet));
                    }
                }
                let body: usize = packets.iter().map(|p| p.len()).sum();
                assert!(body >= size, "{codec:?} {size} -> {body}");
            }
        }
        let mut a = Packetizer::new(3);
        for size in [10, 60, 100, 500] {
            let payload = a.audio(size, 5);
            assert!((60..=160).contains(&payload.len()));
            assert_eq!(payload[0], 0xf8);
            assert_eq!(verify(&payload).unwrap().kind, 0);
        }
        let probe = Probe::parse(&a.audio(80, 9)).unwrap();
        assert_eq!(probe.seq, 4);
    }

    #[test]
    fn corruption_is_noticed() {
        let mut p = Packetizer::new(1);
        let mut payload = p
            .video(VideoCodec::Vp8, false, 1000, PLAIN_DIMS, 1)
            .remove(0);
        assert!(verify(&payload).is_some());
        payload[20] ^= 1;
        assert!(verify(&payload).is_none());
        assert!(verify(b"short").is_none());
    }

    #[test]
    fn frame_sizes_match_the_bitrate() {
        let (delta, key) = frame_sizes(2_500_000, 30, 60);
        let per_interval = delta * 59 + key;
        let expected = 2_500_000 / 8 * 2;
        assert!((per_interval as f64 / expected as f64 - 1.0).abs() < 0.01);
    }

    #[test]
    fn simulcast_layers_scale_like_a_browser() {
        let layers = simulcast_layers(3, 2_500_000, 30, 60);
        let rids: Vec<&str> = layers.iter().map(|l| l.rid.as_str()).collect();
        assert_eq!(rids, ["0", "1", "2"]);
        let dims: Vec<(u16, u16)> = layers.iter().map(|l| l.dims).collect();
        assert_eq!(dims, [(1280, 720), (640, 360), (320, 180)]);
        // Top = the plain bitrate; then ~1/3 and ~1/10 of it for 1/4 and 1/16 of the pixels.
        assert_eq!(layers[0].bitrate_bps, 2_500_000);
        assert_eq!(layers[0].frame_sizes, frame_sizes(2_500_000, 30, 60));
        assert_eq!(layers[1].bitrate_bps, 833_333);
        assert_eq!(layers[2].bitrate_bps, 250_000);
        assert!(
            layers
                .windows(2)
                .all(|w| w[0].frame_sizes.0 > w[1].frame_sizes.0)
        );
        assert_eq!(simulcast_layers(4, 2_500_000, 30, 60)[3].dims, (160, 90));
        // Out of range counts are clamped (the CLI refuses them first).
        assert_eq!(simulcast_layers(9, 1_000_000, 30, 60).len(), MAX_LAYERS);
        assert_eq!(simulcast_layers(0, 1_000_000, 30, 60).len(), 1);
    }

    #[test]
    fn vp8_keyframes_carry_each_layers_resolution() {
        let mut p = Packetizer::new(2);
        for layer in simulcast_layers(4, 2_500_000, 30, 60) {
            let key = p.video(VideoCodec::Vp8, true, layer.frame_sizes.1, layer.dims, 0);
            assert_eq!(vp8_keyframe_dims(&key[0]), Some(layer.dims));
            // Frame tag, start code, 14-bit little-endian width and height after the descriptor.
            assert_eq!(key[0][4..7], [0x9d, 0x01, 0x2a]);
            assert_eq!(key[0][7..9], layer.dims.0.to_le_bytes());
            assert_eq!(key[0][9..11], layer.dims.1.to_le_bytes());
            assert_eq!(vp8_keyframe_dims(&key[1]), None, "a continuation packet");
            let delta = p.video(VideoCodec::Vp8, false, 500, layer.dims, 0);
            assert_eq!(vp8_keyframe_dims(&delta[0]), None);
        }
    }

    #[test]
    fn vp8_keyframes_are_found_behind_an_extended_descriptor() {
        let mut p = Packetizer::new(2);
        let plain = p.video(VideoCodec::Vp8, true, 100, PLAIN_DIMS, 0).remove(0);
        let frame = &plain[1..];
        // X, I with a 15-bit picture id, L, T/K: what an SFU may write before the frame tag.
        let mut extended = vec![0x90, 0xf0, 0x80 | 0x12, 0x34, 0x07, 0x20];
        extended.extend_from_slice(frame);
        assert!(is_keyframe(VideoCodec::Vp8, &extended));
        assert_eq!(vp8_keyframe_dims(&extended), Some(PLAIN_DIMS));
        // A 7-bit picture id only.
        let mut short = vec![0x90, 0x80, 0x12];
        short.extend_from_slice(frame);
        assert!(is_keyframe(VideoCodec::Vp8, &short));
        // A delta frame behind the same descriptor; truncated descriptors are no keyframes.
        let mut delta = extended.clone();
        delta[6] |= 0x01;
        assert!(!is_keyframe(VideoCodec::Vp8, &delta));
        for cut in 0..6 {
            assert!(!is_keyframe(VideoCodec::Vp8, &extended[..cut]), "{cut}");
        }
    }
}
