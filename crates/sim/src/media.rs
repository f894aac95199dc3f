//! Synthetic media: RTP payloads that are valid enough for an SFU (VP8 payload descriptors,
//! H264 FU-A / STAP-A, an Opus TOC byte) and carry a [`Tag`] saying which packet they are, so a
//! viewer can check byte-exact delivery and order without decoding anything.
//!
//! Every payload ends with its tag; everything before it is the codec's header followed by
//! filler bytes that are a function of the tag (so a corrupted byte anywhere is noticed by
//! comparing with what the publisher sent).

use ringcast_core::TrackKind;

/// Largest RTP payload the synthetic packetizers produce.
pub const MAX_PAYLOAD: usize = 1100;

/// The video codec a simulated publisher sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VideoCodec {
    /// VP8 (RFC 7741 payload descriptor: one byte, or with picture numbers, see
    /// [`FrameSpec::picture`]).
    Vp8,
    /// H264 packetization-mode 1 (single NAL, STAP-A for SPS+PPS, FU-A).
    H264,
}

/// Which packet a synthetic payload is: its publisher, track, frame (or audio packet) number
/// and index within the frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Tag {
    /// The publisher generation (unique per simulated publisher client).
    pub source: u32,
    /// 0 audio, 1 video (as [`TrackKind::index`]).
    pub kind: u8,
    /// The simulcast layer (index in the publisher's layer list; 0 without simulcast).
    pub layer: u8,
    /// Frame number (video) or packet number (audio) of this publisher.
    pub frame: u32,
    /// Packet index within the frame.
    pub index: u16,
    /// Packets in the frame.
    pub count: u16,
}

const MAGIC: [u8; 2] = *b"RC";

impl Tag {
    /// Encoded length, at the end of every payload.
    pub const LEN: usize = 16;

    /// Read the tag at the end of a synthetic payload.
    pub fn parse(payload: &[u8]) -> Option<Tag> {
        let t = payload.get(payload.len().checked_sub(Tag::LEN)?..)?;
        if t[0..2] != MAGIC {
            return None;
        }
        Some(Tag {
            source: u32::from_be_bytes([t[2], t[3], t[4], t[5]]),
            kind: t[6],
            layer: t[7],
            frame: u32::from_be_bytes([t[8], t[9], t[10], t[11]]),
            index: u16::from_be_bytes([t[12], t[13]]),
            count: u16::from_be_bytes([t[14], t[15]]),
        })
    }

    fn write(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&MAGIC);
        out.extend_from_slice(&self.source.to_be_bytes());
        out.push(self.kind);
        out.push(self.layer);
        out.extend_from_slice(&self.frame.to_be_bytes());
        out.extend_from_slice(&self.index.to_be_bytes());
        out.extend_from_slice(&self.count.to_be_bytes());
    }

    /// Track kind of the tagged packet.
    pub fn track(&self) -> TrackKind {
        if self.kind == 0 {
            TrackKind::Audio
        } else {
            TrackKind::Video
        }
    }

    fn filler(&self, out: &mut Vec<u8>, n: usize) {
        let seed = self
            .frame
            .wrapping_mul(31)
            .wrapping_add(u32::from(self.index).wrapping_mul(7))
            .wrapping_add(self.source)
            .wrapping_add(u32::from(self.layer) << 24);
        out.extend((0..n).map(|i| (seed.wrapping_add(i as u32 * 13) >> 1) as u8));
    }
}

/// One synthetic audio payload of `size` bytes (at least 1 + [`Tag::LEN`]): an Opus TOC byte
/// (config 31, mono, one frame), filler, the tag.
pub fn audio_payload(source: u32, number: u32, size: usize) -> Vec<u8> {
    let tag = Tag {
        source,
        kind: 0,
        layer: 0,
        frame: number,
        index: 0,
        count: 1,
    };
    let size = size.max(1 + Tag::LEN);
    let mut p = Vec::with_capacity(size);
    p.push(0xf8);
    tag.filler(&mut p, size - 1 - Tag::LEN);
    tag.write(&mut p);
    p
}

/// The resolution written into keyframes by [`video_frame`].
pub const DEFAULT_RESOLUTION: (u16, u16) = (640, 360);

/// One video frame to packetize: whose, which layer, which frame, how big.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameSpec {
    /// The publisher generation ([`Tag::source`]).
    pub source: u32,
    /// The simulcast layer ([`Tag::layer`]).
    pub layer: u8,
    /// Frame number.
    pub frame: u32,
    /// A keyframe (VP8 key frame, H264 IDR with SPS and PPS before it).
    pub keyframe: bool,
    /// About this many bytes.
    pub size: usize,
    /// Width and height written into a VP8 keyframe header (14 bits each) or an H264 SPS.
    pub resolution: (u16, u16),
    /// VP8 picture numbers for every packet's payload descriptor (its extension with I, a
    /// 15-bit PictureID, L, T and K); `None`: a one-byte descriptor. H264 has none.
    pub picture: Option<Vp8Picture>,
}

/// The picture numbers an RFC 7741 payload descriptor carries in its extension. An encoder
/// numbers each stream (simulcast layer, session) on its own, so they jump wherever an SFU
/// moves a viewer from one stream to another unless it rewrites them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Vp8Picture {
    /// PictureID (15 bits as the sim writes it; 7 bits in a short one).
    pub picture_id: u16,
    /// TL0PICIDX: the index of the latest picture on temporal layer 0.
    pub tl0_pic_idx: u8,
    /// KEYIDX (5 bits): moves on with each keyframe.
    pub key_idx: u8,
}

impl Vp8Picture {
    /// The numbers of the next frame of the same stream: PictureID and TL0PICIDX one more (the
    /// sim has one temporal layer, every frame is on layer 0), KEYIDX one more if the frame is a
    /// keyframe.
    pub fn next(self, keyframe: bool) -> Vp8Picture {
        Vp8Picture {
            picture_id: self.picture_id.wrapping_add(1) & LONG_PICTURE_ID,
            tl0_pic_idx: self.tl0_pic_idx.wrapping_add(1),
            key_idx: self.key_idx.wrapping_add(u8::from(keyframe)) & KEY_IDX,
        }
    }
}

/// An RFC 7741 payload descriptor as the sim reads one: where the VP8 payload begins and the
/// numbers it carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Vp8Descriptor {
    /// Its length in bytes: the VP8 payload (a frame header, on the first packet) follows.
    pub len: usize,
    /// S: the packet starts a partition.
    pub start: bool,
    /// PID: the partition index.
    pub partition: u8,
    /// PictureID (I), 7 or 15 bits as [`Vp8Descriptor::long_picture_id`] says.
    pub picture_id: Option<u16>,
    /// The PictureID has 15 bits (M set), not 7.
    pub long_picture_id: bool,
    /// TL0PICIDX (L).
    pub tl0_pic_idx: Option<u8>,
    /// KEYIDX (K).
    pub key_idx: Option<u8>,
}

impl Vp8Descriptor {
    /// The picture numbers, when it carries all three.
    pub fn picture(&self) -> Option<Vp8Picture> {
        Some(Vp8Picture {
            picture_id: self.picture_id?,
            tl0_pic_idx: self.tl0_pic_idx?,
            key_idx: self.key_idx?,
        })
    }

    /// The PictureID's modulus less one: its mask.
    pub fn picture_id_mask(&self) -> u16 {
        if self.long_picture_id {
            LONG_PICTURE_ID
        } else {
            0x7f
        }
    }
}

const LONG_PICTURE_ID: u16 = 0x7fff;
const KEY_IDX: u8 = 0x1f;

/// Read the RFC 7741 payload descriptor at the start of a VP8 payload (its length parsed from
/// the X, I, M, L, T and K bits, not assumed); `None` if the payload is shorter than it says.
pub fn vp8_descriptor(payload: &[u8]) -> Option<Vp8Descriptor> {
    vp8_fields(payload).map(|(d, _)| d)
}

/// `payload` with the bits of its descriptor's PictureID, TL0PICIDX and KEYIDX cleared (flags,
/// the M bit and everything else kept), for comparing a payload an SFU renumbered with the one
/// sent; `None` when it has no descriptor with any of them.
pub fn vp8_without_numbers(payload: &[u8]) -> Option<Vec<u8>> {
    let (_, at) = vp8_fields(payload)?;
    if at == FieldsAt::default() {
        return None;
    }
    let mut out = payload.to_vec();
    if let Some(i) = at.picture_id {
        if out[i] & 0x80 != 0 {
            out[i] &= 0x80;
            out[i + 1] = 0;
        } else {
            out[i] = 0;
        }
    }
    if let Some(i) = at.tl0_pic_idx {
        out[i] = 0;
    }
    if let Some(i) = at.key_idx {
        out[i] &= !KEY_IDX;
    }
    Some(out)
}

/// The RTP payloads of one video frame of about `size` bytes, each at most [`MAX_PAYLOAD`];
/// the marker bit belongs on the last one. Layer 0, keyframes of [`DEFAULT_RESOLUTION`].
pub fn video_frame(
    codec: VideoCodec,
    source: u32,
    frame: u32,
    keyframe: bool,
    size: usize,
) -> Vec<Vec<u8>> {
    layer_frame(
        codec,
        &FrameSpec {
            source,
            layer: 0,
            frame,
            keyframe,
            size,
            resolution: DEFAULT_RESOLUTION,
            picture: None,
        },
    )
}

/// The RTP payloads of one frame as `spec` says, each at most [`MAX_PAYLOAD`]; the marker bit
/// belongs on the last one.
pub fn layer_frame(codec: VideoCodec, spec: &FrameSpec) -> Vec<Vec<u8>> {
    match codec {
        VideoCodec::Vp8 => vp8_frame(spec),
        VideoCodec::H264 => h264_frame(spec),
    }
}

/// Width and height in a VP8 keyframe's header at the start of this synthetic payload (RFC
/// 7741 descriptor, then RFC 6386 §9.1), `None` if it does not start a keyframe.
pub fn vp8_resolution(payload: &[u8]) -> Option<(u16, u16)> {
    if !starts_keyframe(VideoCodec::Vp8, payload) {
        return None;
    }
    let at = vp8_descriptor(payload)?.len;
    let h = payload.get(at..at + 10)?;
    if h[3..6] != [0x9d, 0x01, 0x2a] {
        return None;
    }
    let w = u16::from_le_bytes([h[6], h[7]]) & 0x3fff;
    let ht = u16::from_le_bytes([h[8], h[9]]) & 0x3fff;
    Some((w, ht))
}

/// Split `size` body bytes into chunks so that each payload (with `overhead` bytes of headers
/// and the tag) fits in [`MAX_PAYLOAD`].
fn chunks(size: usize, overhead: usize) -> Vec<usize> {
    let per = MAX_PAYLOAD - overhead - Tag::LEN;
    let n = size.div_ceil(per).max(1);
    let base = size / n;
    (0..n)
        .map(|i| {
            if i + 1 == n {
                size - base * (n - 1)
            } else {
                base
            }
        })
        .collect()
}

/// VP8 (RFC 7741): a descriptor (S on the first packet, PID 0; with the extension when the
/// spec has picture numbers, the same on every packet of the frame), then on the first packet
/// the VP8 frame header (P bit clear for keyframes, plus the keyframe start code and
/// dimensions).
fn vp8_frame(spec: &FrameSpec) -> Vec<Vec<u8>> {
    let descriptor = |start: bool| {
        let s = if start { 0x10 } else { 0x00 };
        match spec.picture {
            None => vec![s],
            Some(p) => {
                let pid = p.picture_id & LONG_PICTURE_ID;
                vec![
                    0x80 | s,
                    0xf0, // I, L, T, K
                    0x80 | (pid >> 8) as u8,
                    pid as u8,
                    p.tl0_pic_idx,
                    p.key_idx & KEY_IDX, // TID 0, Y 0
                ]
            }
        }
    };
    let sizes = chunks(spec.size, descriptor(true).len() + 10);
    let keyframe = spec.keyframe;
    let count = sizes.len() as u16;
    sizes
        .iter()
        .enumerate()
        .map(|(i, &body)| {
            let tag = Tag {
                source: spec.source,
                kind: 1,
                layer: spec.layer,
                frame: spec.frame,
                index: i as u16,
                count,
            };
            let mut p = descriptor(i == 0);
            p.reserve(body + 10 + Tag::LEN);
            if i == 0 {
                // Frame tag: P (bit 0), version 0, show_frame (bit 4), partition size.
                p.push(if keyframe { 0x10 } else { 0x11 });
                p.extend_from_slice(&[0x02, 0x00]);
                if keyframe {
                    p.extend_from_slice(&[0x9d, 0x01, 0x2a]);
                    // 14 bits of size, 2 of scaling (none).
                    let (w, h) = spec.resolution;
                    p.extend_from_slice(&(w & 0x3fff).to_le_bytes());
                    p.extend_from_slice(&(h & 0x3fff).to_le_bytes());
                }
            }
            tag.filler(&mut p, body);
            tag.write(&mut p);
            p
        })
        .collect()
}

/// H264 packetization-mode 1: a keyframe starts with a STAP-A holding SPS and PPS, then the IDR
/// slice; a slice that does not fit one packet goes as FU-A fragments.
fn h264_frame(spec: &FrameSpec) -> Vec<Vec<u8>> {
    let keyframe = spec.keyframe;
    let nal_type: u8 = if keyframe { 5 } else { 1 };
    let nri: u8 = if keyframe { 3 << 5 } else { 2 << 5 };
    let sizes = chunks(spec.size, 2);
    let slices = sizes.len();
    let count = (slices + usize::from(keyframe)) as u16;
    let mut out = Vec::with_capacity(count as usize);
    let tag_at = |index: usize| Tag {
        source: spec.source,
        kind: 1,
        layer: spec.layer,
        frame: spec.frame,
        index: index as u16,
        count,
    };
    if keyframe {
        // STAP-A: [hdr][len][SPS][len][PPS + tag]. The tag ends the PPS NAL unit so the
        // aggregate stays well formed.
        let tag = tag_at(0);
        let sps = h264_sps(spec.resolution);
        let sps = sps.as_slice();
        let mut pps = vec![0x68, 0xce, 0x3c, 0x80];
        tag.write(&mut pps);
        let mut p = vec![0x78];
        p.extend_from_slice(&(sps.len() as u16).to_be_bytes());
        p.extend_from_slice(sps);
        p.extend_from_slice(&(pps.len() as u16).to_be_bytes());
        p.extend_from_slice(&pps);
        out.push(p);
    }
    for (i, &body) in sizes.iter().enumerate() {
        let tag = tag_at(out.len());
        let mut p = Vec::with_capacity(body + 2 + Tag::LEN);
        if slices == 1 {
            p.push(nri | nal_type);
        } else {
            p.push(nri | 28);
            let mut fu = nal_type;
            if i == 0 {
                fu |= 0x80;
            }
            if i + 1 == slices {
                fu |= 0x40;
            }
            p.push(fu);
        }
        tag.filler(&mut p, body);
        tag.write(&mut p);
        out.push(p);
    }
    out
}

/// An H264 sequence parameter set NAL unit (type 7, Constrained Baseline, level 3.1, 4:2:0,
/// progressive, no VUI) of this width and height: the picture in whole macroblocks, cropped
/// right and bottom to the size (in steps of 2 pixels).
pub fn h264_sps((width, height): (u16, u16)) -> Vec<u8> {
    let mbs_w = u32::from(width).div_ceil(16).max(1);
    let mbs_h = u32::from(height).div_ceil(16).max(1);
    let crop_right = (mbs_w * 16).saturating_sub(u32::from(width)) / 2;
    let crop_bottom = (mbs_h * 16).saturating_sub(u32::from(height)) / 2;
    let mut b = Bits::default();
    b.u(8, 66); // profile_idc: Baseline
    b.u(8, 0xe0); // constraint_set0..2
    b.u(8, 31); // level_idc
    b.ue(0); // seq_parameter_set_id
    b.ue(0); // log2_max_frame_num_minus4
    b.ue(2); // pic_order_cnt_type
    b.ue(1); // max_num_ref_frames
    b.u(1, 0); // gaps_in_frame_num_value_allowed_flag
    b.ue(mbs_w - 1);
    b.ue(mbs_h - 1); // pic_height_in_map_units_minus1 (frame_mbs_only)
    b.u(1, 1); // frame_mbs_only_flag
    b.u(1, 1); // direct_8x8_inference_flag
    if crop_right > 0 || crop_bottom > 0 {
        b.u(1, 1);
        b.ue(0);
        b.ue(crop_right);
        b.ue(0);
        b.ue(crop_bottom);
    } else {
        b.u(1, 0);
    }
    b.u(1, 0); // vui_parameters_present_flag
    b.u(1, 1); // rbsp_stop_one_bit, then zeros to the byte
    let mut nal = vec![0x67];
    let mut zeros = 0;
    for byte in b.into_bytes() {
        // Emulation prevention: no 00 00 0x (x <= 3) inside a NAL unit.
        if zeros >= 2 && byte <= 3 {
            nal.push(3);
            zeros = 0;
        }
        nal.push(byte);
        zeros = if byte == 0 { zeros + 1 } else { 0 };
    }
    nal
}

/// A big-endian bit writer for [`h264_sps`].
#[derive(Default)]
struct Bits {
    bytes: Vec<u8>,
    used: u32,
}

impl Bits {
    /// The low `n` bits of `v`.
    fn u(&mut self, n: u32, v: u32) {
        for i in (0..n).rev() {
            if self.used.is_multiple_of(8) {
                self.bytes.push(0);
            }
            if v >> i & 1 == 1 {
                let last = self.bytes.len() - 1;
                self.bytes[last] |= 0x80 >> (self.used % 8);
            }
            self.used += 1;
        }
    }

    /// Unsigned exp-Golomb.
    fn ue(&mut self, v: u32) {
        let x = v + 1;
        let len = 32 - x.leading_zeros();
        self.u(len - 1, 0);
        self.u(len, x);
    }

    fn into_bytes(self) -> Vec<u8> {
        self.bytes
    }
}

/// Does this synthetic video payload start a keyframe? (The sim's own reading, independent of
/// the core's, used by assertions.)
pub fn starts_keyframe(codec: VideoCodec, payload: &[u8]) -> bool {
    match codec {
        VideoCodec::Vp8 => vp8_descriptor(payload).is_some_and(|d| {
            d.start && d.partition == 0 && payload.get(d.len).is_some_and(|h| h & 0x01 == 0)
        }),
        VideoCodec::H264 => payload.first().is_some_and(|b| b & 0x1f == 24),
    }
}

/// Where a descriptor's numbers are: the first PictureID byte, TL0PICIDX, the TID/Y/KEYIDX
/// byte (when K is set).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct FieldsAt {
    picture_id: Option<usize>,
    tl0_pic_idx: Option<usize>,
    key_idx: Option<usize>,
}

fn vp8_fields(payload: &[u8]) -> Option<(Vp8Descriptor, FieldsAt)> {
    let b0 = *payload.first()?;
    let mut d = Vp8Descriptor {
        len: 1,
        start: b0 & 0x10 != 0,
        partition: b0 & 0x07,
        picture_id: None,
        long_picture_id: false,
        tl0_pic_idx: None,
        key_idx: None,
    };
    let mut at = FieldsAt::default();
    if b0 & 0x80 != 0 {
        let x = *payload.get(1)?;
        let mut i = 2;
        if x & 0x80 != 0 {
            let m = *payload.get(i)?;
            at.picture_id = Some(i);
            if m & 0x80 != 0 {
                let low = *payload.get(i + 1)?;
                d.picture_id = Some(u16::from_be_bytes([m & 0x7f, low]));
                d.long_picture_id = true;
                i += 2;
            } else {
                d.picture_id = Some(u16::from(m));
                i += 1;
            }
        }
        if x & 0x40 != 0 {
            d.tl0_pic_idx = Some(*payload.get(i)?);
            at.tl0_pic_idx = Some(i);
            i += 1;
        }
        if x & 0x30 != 0 {
            let tk = *payload.get(i)?;
            if x & 0x10 != 0 {
                d.key_idx = Some(tk & KEY_IDX);
                at.key_idx = Some(i);
            }
            i += 1;
        }
        d.len = i;
    }
    Some((d, at))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_round_trip_and_sizes_fit() {
        for codec in [VideoCodec::Vp8, VideoCodec::H264] {
            for (key, size) in [(true, 6000), (false, 300), (false, 2500)] {
                let frame = video_frame(codec, 7, 42, key, size);
                assert!(!frame.is_empty());
                for (i, p) in frame.iter().enumerate() {
                    assert!(p.len() <= MAX_PAYLOAD, "{codec:?} {}", p.len());
                    let tag = Tag::parse(p).unwrap();
                    assert_eq!((tag.source, tag.kind, tag.frame), (7, 1, 42));
                    assert_eq!(tag.index as usize, i);
                    assert_eq!(tag.count as usize, frame.len());
                    assert_eq!(starts_keyframe(codec, p), key && i == 0, "{codec:?} {i}");
                }
            }
        }
        let a = audio_payload(3, 9, 100);
        assert_eq!(a.len(), 100);
        assert_eq!(Tag::parse(&a).unwrap().frame, 9);
    }

    #[test]
    fn layers_are_tagged_and_keyframes_carry_their_resolution() {
        for (layer, resolution) in [(0u8, (320u16, 180u16)), (2, (1280, 720)), (3, (16383, 1))] {
            let spec = FrameSpec {
                source: 4,
                layer,
                frame: 9,
                keyframe: true,
                size: 3000,
                resolution,
                picture: None,
            };
            let frame = layer_frame(VideoCodec::Vp8, &spec);
            assert_eq!(vp8_resolution(&frame[0]), Some(resolution));
            assert!(frame.iter().all(|p| Tag::parse(p).unwrap().layer == layer));
            assert_eq!(vp8_resolution(&frame[1]), None);
            let delta = layer_frame(
                VideoCodec::Vp8,
                &FrameSpec {
                    keyframe: false,
                    ..spec
                },
            );
            assert_eq!(vp8_resolution(&delta[0]), None);
        }
        // The same frame on two layers: different bytes, so a viewer can tell them apart.
        let spec = FrameSpec {
            source: 1,
            layer: 0,
            frame: 1,
            keyframe: false,
            size: 500,
            resolution: DEFAULT_RESOLUTION,
            picture: None,
        };
        let a = layer_frame(VideoCodec::H264, &spec);
        let b = layer_frame(VideoCodec::H264, &FrameSpec { layer: 1, ..spec });
        assert_ne!(a, b);
        assert_eq!(video_frame(VideoCodec::H264, 1, 1, false, 500), a);
    }

    #[test]
    fn vp8_picture_numbers_ride_in_every_packets_descriptor() {
        let picture = Vp8Picture {
            picture_id: 0x7fff,
            tl0_pic_idx: 255,
            key_idx: 31,
        };
        let spec = FrameSpec {
            source: 2,
            layer: 1,
            frame: 5,
            keyframe: true,
            size: 4000,
            resolution: (1280, 720),
            picture: Some(picture),
        };
        let frame = layer_frame(VideoCodec::Vp8, &spec);
        assert!(frame.len() > 1);
        for (i, p) in frame.iter().enumerate() {
            assert!(p.len() <= MAX_PAYLOAD, "{}", p.len());
            let d = vp8_descriptor(p).unwrap();
            assert_eq!((d.len, d.start, d.partition), (6, i == 0, 0));
            assert_eq!(d.picture(), Some(picture));
            assert_eq!(d.picture_id_mask(), 0x7fff);
            assert_eq!(Tag::parse(p).unwrap().index as usize, i);
            assert_eq!(starts_keyframe(VideoCodec::Vp8, p), i == 0);
        }
        assert_eq!(vp8_resolution(&frame[0]), Some((1280, 720)));
        let delta = layer_frame(
            VideoCodec::Vp8,
            &FrameSpec {
                keyframe: false,
                ..spec
            },
        );
        assert!(!starts_keyframe(VideoCodec::Vp8, &delta[0]));
        assert_eq!(vp8_resolution(&delta[0]), None);
        // Numbers wrap: PictureID at 15 bits, KEYIDX at 5, and KEYIDX moves on keyframes only.
        assert_eq!(
            picture.next(true),
            Vp8Picture {
                picture_id: 0,
                tl0_pic_idx: 0,
                key_idx: 0,
            }
        );
        assert_eq!(picture.next(false).key_idx, 31);

        // Masking clears exactly the numbers: two pictures' packets differ only there.
        let other = layer_frame(
            VideoCodec::Vp8,
            &FrameSpec {
                picture: Some(Vp8Picture {
                    picture_id: 0x1234,
                    tl0_pic_idx: 7,
                    key_idx: 2,
                }),
                ..spec
            },
        );
        assert_ne!(frame[0], other[0]);
        let masked = vp8_without_numbers(&frame[0]).unwrap();
        assert_eq!(Some(masked.clone()), vp8_without_numbers(&other[0]));
        assert_eq!(masked[..6], [0x90, 0xf0, 0x80, 0x00, 0x00, 0x00]);
        assert_eq!(masked[6..], frame[0][6..]);
        // A short PictureID and a descriptor without numbers.
        assert_eq!(
            vp8_without_numbers(&[0x90, 0x80, 0x42, 0x00]),
            Some(vec![0x90, 0x80, 0x00, 0x00])
        );
        let short = vp8_descriptor(&[0x90, 0x80, 0x42, 0x00]).unwrap();
        assert_eq!((short.len, short.picture_id), (3, Some(0x42)));
        assert_eq!((short.picture(), short.picture_id_mask()), (None, 0x7f));
        let plain = video_frame(VideoCodec::Vp8, 1, 1, true, 500);
        assert_eq!(vp8_descriptor(&plain[0]).unwrap().len, 1);
        assert_eq!(vp8_without_numbers(&plain[0]), None);
        // Truncated descriptors.
        assert_eq!(vp8_descriptor(&[0x90, 0xf0, 0x80]), None);
        assert_eq!(vp8_descriptor(&[]), None);
    }

    struct Reader {
        rbsp: Vec<u8>,
        at: usize,
    }

    impl Reader {
        fn bit(&mut self) -> u32 {
            let v = u32::from(self.rbsp[self.at / 8] >> (7 - self.at % 8) & 1);
            self.at += 1;
            v
        }

        fn ue(&mut self) -> u32 {
            let mut n = 0;
            while self.bit() == 0 {
                n += 1;
            }
            let mut v = 1;
            for _ in 0..n {
                v = v << 1 | self.bit();
            }
            v - 1
        }
    }

    /// Width and height from an SPS as [`h264_sps`] writes it (the fields it uses only).
    fn sps_size(nal: &[u8]) -> (u32, u32) {
        let mut rbsp = Vec::new();
        let mut zeros = 0;
        for &b in &nal[1..] {
            if zeros >= 2 && b == 3 {
                zeros = 0;
                continue;
            }
            rbsp.push(b);
            zeros = if b == 0 { zeros + 1 } else { 0 };
        }
        let mut r = Reader { rbsp, at: 24 };
        let head: Vec<u32> = (0..4).map(|_| r.ue()).collect();
        assert_eq!(head, [0, 0, 2, 1]);
        assert_eq!(r.bit(), 0);
        let (w, h) = (r.ue() + 1, r.ue() + 1);
        assert_eq!((r.bit(), r.bit()), (1, 1));
        let (mut right, mut bottom) = (0, 0);
        if r.bit() == 1 {
            let crop: Vec<u32> = (0..4).map(|_| r.ue()).collect();
            (right, bottom) = (crop[1], crop[3]);
        }
        (w * 16 - right * 2, h * 16 - bottom * 2)
    }

    #[test]
    fn h264_keyframes_carry_their_resolution_in_the_sps() {
        for (w, h) in [
            (640u16, 360u16),
            (1280, 720),
            (320, 180),
            (1920, 1080),
            (16, 16),
        ] {
            let sps = h264_sps((w, h));
            assert_eq!(sps[..4], [0x67, 66, 0xe0, 31]);
            assert_eq!(sps_size(&sps), (u32::from(w), u32::from(h)), "{w}x{h}");
            assert!(
                sps.windows(3)
                    .all(|x| !(x[0] == 0 && x[1] == 0 && x[2] <= 2))
            );
        }
        // The STAP-A of a keyframe carries it.
        let spec = FrameSpec {
            source: 1,
            layer: 2,
            frame: 0,
            keyframe: true,
            size: 2000,
            resolution: (1280, 720),
            picture: None,
        };
        let stap = &layer_frame(VideoCodec::H264, &spec)[0];
        let len = usize::from(u16::from_be_bytes([stap[1], stap[2]]));
        assert_eq!(sps_size(&stap[3..3 + len]), (1280, 720));
    }
}
