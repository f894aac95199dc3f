//! Is this RTP payload the first packet of a keyframe? Read from the codec's payload descriptor
//! only, never decoding media. Used to start a new subscriber (or a restarted publisher) on a
//! keyframe so its decoder never sees a delta frame without its reference. [`resolution`] reads
//! the picture size from the first packet of a keyframe (SPS, VP8/VP9 frame header, AV1
//! sequence header), so layers can be ordered by what they carry.

mod bits;

use crate::sdp::CodecName;
use bits::Bits;

/// True when `payload` (an RTP payload of `codec`) starts a keyframe.
pub fn starts_keyframe(codec: CodecName, payload: &[u8]) -> bool {
    match codec {
        CodecName::Opus => true,
        CodecName::H264 => h264(payload),
        CodecName::Vp8 => vp8(payload),
        CodecName::Vp9 => vp9(payload),
        CodecName::Av1 => av1(payload),
    }
}

/// The picture size, width × height in pixels, from the first RTP payload of a keyframe (a
/// payload [`starts_keyframe`] is true for). `None` when this payload does not carry it (audio, a
/// delta frame, an H264 keyframe without an SPS in this packet) or is malformed or truncated:
/// it never panics, whatever the bytes.
///
/// - H264: the SPS (single NAL, in a STAP-A, or at the start of an FU-A), cropped.
/// - VP8: the keyframe header after the start code 9d 01 2a (the scale bits are ignored).
/// - VP9: the largest spatial layer of the payload descriptor's scalability structure when it
///   has one, else the uncompressed header of the keyframe.
/// - AV1: the sequence header OBU's maximum frame size.
pub fn resolution(codec: CodecName, payload: &[u8]) -> Option<(u32, u32)> {
    let (width, height) = match codec {
        CodecName::Opus => return None,
        CodecName::H264 => h264_resolution(payload)?,
        CodecName::Vp8 => vp8_resolution(payload)?,
        CodecName::Vp9 => vp9_resolution(payload)?,
        CodecName::Av1 => av1_resolution(payload)?,
    };
    (width > 0 && height > 0).then_some((width, height))
}

/// H264 (RFC 6184): an IDR slice (5) or SPS (7) as a single NAL, inside a STAP-A (24), or at
/// the start of an FU-A (28).
fn h264(p: &[u8]) -> bool {
    let Some(&first) = p.first() else {
        return false;
    };
    let key = |t: u8| t == 5 || t == 7;
    match first & 0x1f {
        24 => {
            // STAP-A: [hdr][size16][nal]...
            let mut i = 1;
            while i + 2 < p.len() {
                let size = u16::from_be_bytes([p[i], p[i + 1]]) as usize;
                if key(p[i + 2] & 0x1f) {
                    return true;
                }
                i += 2 + size;
            }
            false
        }
        28 => p.len() >= 2 && p[1] & 0x80 != 0 && key(p[1] & 0x1f),
        t => key(t),
    }
}

/// VP8 (RFC 7741): start of partition 0 (S=1, PID=0) and the frame header's P bit is 0.
fn vp8(p: &[u8]) -> bool {
    vp8_header(p).is_some_and(|i| p.get(i).is_some_and(|h| h & 0x01 == 0))
}

/// The length of a VP8 payload descriptor that starts partition 0 (S=1, PID=0): where the VP8
/// frame header begins. `None` for any other packet.
fn vp8_header(p: &[u8]) -> Option<usize> {
    let b0 = *p.first()?;
    let start = b0 & 0x10 != 0 && b0 & 0x07 == 0;
    if !start {
        return None;
    }
    let mut i = 1;
    if b0 & 0x80 != 0 {
        // X: extension byte with I, L, T, K flags.
        let x = *p.get(i)?;
        i += 1;
        if x & 0x80 != 0 {
            // I: PictureID, 7 or 15 bits.
            let pid = *p.get(i)?;
            i += if pid & 0x80 != 0 { 2 } else { 1 };
        }
        if x & 0x40 != 0 {
            i += 1; // L: TL0PICIDX
        }
        if x & 0x30 != 0 {
            i += 1; // T/K: TID/KEYIDX
        }
    }
    Some(i)
}

/// VP9 (RFC 9628 flexible/non-flexible descriptor): B (start of frame) set and P (inter-picture
/// predicted) clear, in the lowest spatial layer.
fn vp9(p: &[u8]) -> bool {
    let Some(&b0) = p.first() else {
        return false;
    };
    let p_bit = b0 & 0x40 != 0;
    let b_bit = b0 & 0x08 != 0;
    if p_bit || !b_bit {
        return false;
    }
    // With layer indices present, only spatial layer 0 starts a keyframe.
    if b0 & 0x20 != 0 {
        let mut i = 1;
        if b0 & 0x80 != 0 {
            let Some(&pid) = p.get(i) else { return false };
            i += if pid & 0x80 != 0 { 2 } else { 1 };
        }
        let Some(&layers) = p.get(i) else {
            return false;
        };
        return (layers >> 1) & 0x07 == 0;
    }
    true
}

/// AV1 (RTP payload format for AV1): the N bit of the aggregation header marks the first packet
/// of a coded video sequence, which begins with a keyframe.
fn av1(p: &[u8]) -> bool {
    p.first().is_some_and(|h| h & 0x08 != 0)
}

/// The whole NAL units an H264 payload carries (RFC 6184): the payload itself when it is a
/// single NAL unit (types 1–23), each unit of a STAP-A (24); nothing for a fragment (FU-A) or
/// any other type. A truncated STAP-A yields the units before the cut.
pub(crate) fn h264_nal_units(p: &[u8]) -> impl Iterator<Item = &[u8]> + '_ {
    let kind = p.first().map_or(0, |h| h & 0x1f);
    let mut single = (1..=23).contains(&kind).then_some(p);
    let mut rest = if kind == 24 { &p[1..] } else { &[][..] };
    std::iter::from_fn(move || {
        if let Some(nal) = single.take() {
            return Some(nal);
        }
        let size = usize::from(u16::from_be_bytes([*rest.first()?, *rest.get(1)?]));
        let nal = rest.get(2..2 + size)?;
        rest = &rest[2 + size..];
        Some(nal)
    })
}

/// The NAL unit type (the low five bits of its first byte).
pub(crate) fn h264_nal_type(nal: &[u8]) -> Option<u8> {
    nal.first().map(|h| h & 0x1f)
}

/// H264: the size from the SPS this payload carries, whole or as the first fragment of an FU-A.
fn h264_resolution(p: &[u8]) -> Option<(u32, u32)> {
    if h264_nal_type(p)? == 28 {
        let fu = *p.get(1)?;
        if fu & 0x80 == 0 || fu & 0x1f != 7 {
            return None;
        }
        return sps_resolution(&bits::unescape(p.get(2..)?));
    }
    let sps = h264_nal_units(p).find(|nal| h264_nal_type(nal) == Some(7))?;
    sps_resolution(&bits::unescape(&sps[1..]))
}

/// The cropped picture size of an H264 sequence parameter set (ITU-T H.264 7.3.2.1.1), from its
/// RBSP after the NAL header byte. Stops at frame_cropping: the VUI is not needed.
fn sps_resolution(rbsp: &[u8]) -> Option<(u32, u32)> {
    let mut b = Bits::new(rbsp);
    let profile_idc = b.bits(8)?;
    b.skip(16)?; // constraint_set flags, level_idc
    b.ue()?; // seq_parameter_set_id
    let mut chroma_format_idc = 1;
    let mut separate_colour_plane = false;
    if matches!(
        profile_idc,
        100 | 110 | 122 | 244 | 44 | 83 | 86 | 118 | 128 | 138 | 139 | 134 | 135
    ) {
        chroma_format_idc = b.ue()?;
        if chroma_format_idc == 3 {
            separate_colour_plane = b.bit()?;
        }
        b.ue()?; // bit_depth_luma_minus8
        b.ue()?; // bit_depth_chroma_minus8
        b.skip(1)?; // qpprime_y_zero_transform_bypass_flag
        if b.bit()? {
            // seq_scaling_matrix_present_flag: 8 lists (12 for 4:4:4), 4x4 then 8x8.
            let lists = if chroma_format_idc == 3 { 12 } else { 8 };
            for i in 0..lists {
                if b.bit()? {
                    skip_scaling_list(&mut b, if i < 6 { 16 } else { 64 })?;
                }
            }
        }
    }
    b.ue()?; // log2_max_frame_num_minus4
    match b.ue()? {
        // pic_order_cnt_type
        0 => {
            b.ue()?; // log2_max_pic_order_cnt_lsb_minus4
        }
        1 => {
            b.skip(1)?; // delta_pic_order_always_zero_flag
            b.se()?; // offset_for_non_ref_pic
            b.se()?; // offset_for_top_to_bottom_field
            let cycle = b.ue()?; // num_ref_frames_in_pic_order_cnt_cycle, at most 255
            if cycle > 255 {
                return None;
            }
            for _ in 0..cycle {
                b.se()?; // offset_for_ref_frame
            }
        }
        _ => {}
    }
    b.ue()?; // max_num_ref_frames
    b.skip(1)?; // gaps_in_frame_num_value_allowed_flag
    let width_mbs = u64::from(b.ue()?) + 1;
    let height_map_units = u64::from(b.ue()?) + 1;
    let frame_mbs_only = b.bit()?;
    if !frame_mbs_only {
        b.skip(1)?; // mb_adaptive_frame_field_flag
    }
    b.skip(1)?; // direct_8x8_inference_flag
    let mut crop = [0u64; 4]; // left, right, top, bottom
    if b.bit()? {
        for c in &mut crop {
            *c = u64::from(b.ue()?);
        }
    }
    let fields = if frame_mbs_only { 1 } else { 2 };
    // Crop units (7-19..7-22): ChromaArrayType is 0 with separate colour planes.
    let chroma_array_type = if separate_colour_plane {
        0
    } else {
        chroma_format_idc
    };
    let (unit_x, unit_y) = match chroma_array_type {
        0 | 3 => (1, fields),
        1 => (2, 2 * fields),
        2 => (2, fields),
        _ => return None,
    };
    let width = (width_mbs * 16).checked_sub(unit_x * (crop[0] + crop[1]))?;
    let height = (height_map_units * 16 * fields).checked_sub(unit_y * (crop[2] + crop[3]))?;
    Some((u32::try_from(width).ok()?, u32::try_from(height).ok()?))
}

/// Reads past one scaling_list() of an SPS (7.3.2.1.1.1).
fn skip_scaling_list(b: &mut Bits, size: usize) -> Option<()> {
    let (mut last, mut next) = (8i64, 8i64);
    for _ in 0..size {
        if next != 0 {
            let delta = i64::from(b.se()?);
            next = (last + delta).rem_euclid(256);
        }
        if next != 0 {
            last = next;
        }
    }
    Some(())
}

/// VP8: the keyframe header (RFC 6386 9.1) after the payload descriptor: a 3-byte frame tag,
/// the start code 9d 01 2a, then 14-bit width and height, little-endian, under 2 scale bits.
fn vp8_resolution(p: &[u8]) -> Option<(u32, u32)> {
    let h = p.get(vp8_header(p)?..)?;
    if h.len() < 10 || h[0] & 0x01 != 0 || h[3..6] != [0x9d, 0x01, 0x2a] {
        return None;
    }
    let width = u16::from_le_bytes([h[6], h[7]]) & 0x3fff;
    let height = u16::from_le_bytes([h[8], h[9]]) & 0x3fff;
    Some((u32::from(width), u32::from(height)))
}

/// VP9 (RFC 9628): the descriptor's scalability structure (largest layer), or the keyframe's
/// uncompressed header after the descriptor.
fn vp9_resolution(p: &[u8]) -> Option<(u32, u32)> {
    let b0 = *p.first()?;
    let [i_bit, p_bit, l_bit, f_bit, b_bit, v_bit] =
        [0x80, 0x40, 0x20, 0x10, 0x08, 0x02].map(|m| b0 & m != 0);
    if p_bit || !b_bit {
        return None;
    }
    let mut i = 1;
    if i_bit {
        let pid = *p.get(i)?;
        i += if pid & 0x80 != 0 { 2 } else { 1 };
    }
    if l_bit {
        // TID/U/SID/D, then TL0PICIDX in non-flexible mode. (No P_DIFF: P is clear.)
        i += if f_bit { 1 } else { 2 };
    }
    if v_bit {
        let ss = *p.get(i)?;
        i += 1;
        let spatial_layers = usize::from(ss >> 5) + 1;
        if ss & 0x10 != 0 {
            // Y: WIDTH and HEIGHT (16 bits each) per spatial layer.
            let mut largest: Option<(u32, u32)> = None;
            for _ in 0..spatial_layers {
                let size = p.get(i..i + 4)?;
                i += 4;
                let width = u32::from(u16::from_be_bytes([size[0], size[1]]));
                let height = u32::from(u16::from_be_bytes([size[2], size[3]]));
                let area = |(w, h): (u32, u32)| u64::from(w) * u64::from(h);
                if largest.is_none_or(|l| area((width, height)) > area(l)) {
                    largest = Some((width, height));
                }
            }
            return largest;
        }
        if ss & 0x08 != 0 {
            // G: N_G pictures, each a T/U/R byte and R P_DIFF bytes.
            let pictures = *p.get(i)?;
            i += 1;
            for _ in 0..pictures {
                let picture = *p.get(i)?;
                i += 1 + usize::from((picture >> 2) & 0x03);
            }
        }
    }
    vp9_frame_size(p.get(i..)?)
}

/// The frame size of a VP9 keyframe's uncompressed header (VP9 bitstream spec 6.2).
fn vp9_frame_size(header: &[u8]) -> Option<(u32, u32)> {
    let mut b = Bits::new(header);
    if b.bits(2)? != 2 {
        return None; // frame_marker
    }
    let low = u32::from(b.bit()?);
    let profile = (u32::from(b.bit()?) << 1) | low;
    if profile == 3 {
        b.skip(1)?; // reserved_zero
    }
    if b.bit()? || b.bit()? {
        return None; // show_existing_frame, or frame_type is a non-key frame
    }
    b.skip(2)?; // show_frame, error_resilient_mode
    if b.bits(24)? != 0x49_83_42 {
        return None; // frame_sync_code
    }
    // color_config()
    if profile >= 2 {
        b.skip(1)?; // ten_or_twelve_bit
    }
    let color_space = b.bits(3)?;
    let odd_profile = profile == 1 || profile == 3;
    if color_space != 7 {
        // color_range, then subsampling_x, subsampling_y, reserved_zero in profiles 1 and 3
        b.skip(if odd_profile { 4 } else { 1 })?;
    } else if odd_profile {
        b.skip(1)?; // CS_RGB: reserved_zero
    }
    let width = b.bits(16)? + 1;
    let height = b.bits(16)? + 1;
    Some((width, height))
}

/// AV1: the maximum frame size of a sequence header OBU in this payload (RTP payload format for
/// AV1, 4.4: aggregation header, then OBU elements, each LEB128-sized except a last one when W
/// counts them). An element continued from the previous packet (Z) is skipped.
fn av1_resolution(p: &[u8]) -> Option<(u32, u32)> {
    let aggregation = *p.first()?;
    let continued = aggregation & 0x80 != 0;
    let count = (aggregation >> 4) & 0x03;
    let mut rest = &p[1..];
    let mut element = 0u8;
    while !rest.is_empty() {
        element = element.saturating_add(1);
        let obu = if count != 0 && element == count {
            std::mem::take(&mut rest)
        } else {
            let (len, n) = bits::leb128(rest)?;
            let end = n.checked_add(usize::try_from(len).ok()?)?;
            let obu = rest.get(n..end)?;
            rest = &rest[end..];
            obu
        };
        if element == 1 && continued {
            continue;
        }
        if let Some(size) = av1_sequence_header(obu) {
            return Some(size);
        }
    }
    None
}

/// The maximum frame size of an AV1 sequence header OBU (AV1 spec 5.5), `None` for any other
/// OBU.
fn av1_sequence_header(obu: &[u8]) -> Option<(u32, u32)> {
    let header = *obu.first()?;
    if (header >> 3) & 0x0f != 1 {
        return None; // not OBU_SEQUENCE_HEADER
    }
    let mut i = 1;
    if header & 0x04 != 0 {
        i += 1; // obu_extension_header
    }
    if header & 0x02 != 0 {
        i += bits::leb128(obu.get(i..)?)?.1; // obu_size
    }
    let mut b = Bits::new(obu.get(i..)?);
    b.skip(4)?; // seq_profile, still_picture
    if b.bit()? {
        // reduced_still_picture_header
        b.skip(5)?; // seq_level_idx[0]
    } else {
        let mut decoder_model = false;
        let mut buffer_delay_bits = 0;
        if b.bit()? {
            // timing_info(): num_units_in_display_tick, time_scale, equal_picture_interval
            b.skip(64)?;
            if b.bit()? {
                b.ue()?; // num_ticks_per_picture_minus_1, uvlc()
            }
            decoder_model = b.bit()?;
            if decoder_model {
                // decoder_model_info()
                buffer_delay_bits = b.bits(5)? + 1;
                b.skip(32 + 5 + 5)?;
            }
        }
        let initial_display_delay = b.bit()?;
        let operating_points = b.bits(5)? + 1;
        for _ in 0..operating_points {
            b.skip(12)?; // operating_point_idc
            if b.bits(5)? > 7 {
                b.skip(1)?; // seq_tier
            }
            if decoder_model && b.bit()? {
                // operating_parameters_info(): two delays and low_delay_mode_flag
                b.skip(2 * buffer_delay_bits + 1)?;
            }
            if initial_display_delay && b.bit()? {
                b.skip(4)?; // initial_display_delay_minus_1
            }
        }
    }
    let width_bits = b.bits(4)? + 1;
    let height_bits = b.bits(4)? + 1;
    let width = b.bits(width_bits)? + 1;
    let height = b.bits(height_bits)? + 1;
    Some((width, height))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn h264_forms() {
        assert!(starts_keyframe(CodecName::H264, &[0x65, 1, 2])); // IDR
        assert!(starts_keyframe(CodecName::H264, &[0x67, 1, 2])); // SPS
        assert!(!starts_keyframe(CodecName::H264, &[0x41, 1, 2])); // non-IDR
        assert!(starts_keyframe(CodecName::H264, &[0x7c, 0x85, 0])); // FU-A start, IDR
        assert!(!starts_keyframe(CodecName::H264, &[0x7c, 0x05, 0])); // FU-A middle
        // STAP-A with SPS first.
        assert!(starts_keyframe(
            CodecName::H264,
            &[0x78, 0, 2, 0x67, 0x42, 0, 1, 0x68]
        ));
        assert!(!starts_keyframe(CodecName::H264, &[]));
        assert!(!starts_keyframe(CodecName::H264, &[0x78, 0xff, 0xff]));
    }

    #[test]
    fn vp8_forms() {
        assert!(starts_keyframe(CodecName::Vp8, &[0x10, 0x00])); // S=1, P=0
        assert!(!starts_keyframe(CodecName::Vp8, &[0x10, 0x01])); // inter frame
        assert!(!starts_keyframe(CodecName::Vp8, &[0x00, 0x00])); // not a start
        // X, I with 15-bit picture id, then key frame header.
        assert!(starts_keyframe(
            CodecName::Vp8,
            &[0x90, 0x80, 0x81, 0x23, 0x00]
        ));
        assert!(!starts_keyframe(CodecName::Vp8, &[0x90, 0x80]));
    }

    #[test]
    fn vp9_and_av1() {
        assert!(starts_keyframe(CodecName::Vp9, &[0x08]));
        assert!(!starts_keyframe(CodecName::Vp9, &[0x48]));
        assert!(starts_keyframe(CodecName::Av1, &[0x18]));
        assert!(!starts_keyframe(CodecName::Av1, &[0x10]));
        assert!(!starts_keyframe(CodecName::Av1, &[]));
    }

    /// Writes bits most significant first, for headers built field by field.
    #[derive(Default)]
    struct BitWriter {
        bytes: Vec<u8>,
        bits: usize,
    }

    impl BitWriter {
        fn put(&mut self, n: u32, value: u64) -> &mut Self {
            for i in (0..n).rev() {
                if self.bits.is_multiple_of(8) {
                    self.bytes.push(0);
                }
                if (value >> i) & 1 == 1 {
                    *self.bytes.last_mut().unwrap() |= 0x80 >> (self.bits % 8);
                }
                self.bits += 1;
            }
            self
        }

        /// ue(v)
        fn ue(&mut self, value: u64) -> &mut Self {
            let v = value + 1;
            let len = 64 - v.leading_zeros();
            self.put(len - 1, 0).put(len, v)
        }

        /// The bytes, closed with an RBSP stop bit.
        fn rbsp(&mut self) -> Vec<u8> {
            self.put(1, 1);
            self.bytes.clone()
        }
    }

    /// x264, 1920x1080 High: 68 macroblock rows (1088) cropped by 8 lines.
    const SPS_X264_1080P: &[u8] = &[
        0x67, 0x64, 0x00, 0x28, 0xac, 0xd9, 0x40, 0x78, 0x02, 0x27, 0xe5, 0xc0, 0x44, 0x00, 0x00,
        0x03, 0x00, 0x04, 0x00, 0x00, 0x03, 0x00, 0xf0, 0x3c, 0x60, 0xc6, 0x58,
    ];
    /// FFmpeg (libx264, High 4:2:2), 1280x720: emulation prevention bytes, no cropping.
    const SPS_HIGH422_720P: &[u8] = &[
        0x67, 0x7a, 0x00, 0x1f, 0xbc, 0xd9, 0x40, 0x50, 0x05, 0xba, 0x10, 0x00, 0x00, 0x03, 0x00,
        0xc0, 0x00, 0x00, 0x2a, 0xe0, 0xf1, 0x83, 0x19, 0x60,
    ];
    /// FFmpeg (libx264, High 4:2:2), 640x360: 368 lines cropped to 360.
    const SPS_HIGH422_360P: &[u8] = &[
        0x67, 0x7a, 0x00, 0x1e, 0xbc, 0xd9, 0x40, 0xa0, 0x2f, 0xf8, 0x98, 0x40, 0x00, 0x00, 0x03,
        0x01, 0x80, 0x00, 0x00, 0x56, 0x83, 0xc5, 0x8b, 0x65, 0x80,
    ];

    /// A Constrained Baseline SPS (profile 42e01f, as Chrome's OpenH264 sends), frame cropping
    /// in 4:2:0 units.
    fn sps_baseline(width_mbs: u64, height_mbs: u64, crop_bottom: u64) -> Vec<u8> {
        let mut w = BitWriter::default();
        w.put(8, 0x67).put(8, 66).put(8, 0xe0).put(8, 31);
        w.ue(0).ue(0).ue(2).ue(1).put(1, 0); // sps id, log2_max_frame_num, poc type 2, refs, gaps
        w.ue(width_mbs - 1).ue(height_mbs - 1).put(1, 1).put(1, 1); // frame_mbs_only, direct_8x8
        if crop_bottom > 0 {
            w.put(1, 1).ue(0).ue(0).ue(0).ue(crop_bottom);
        } else {
            w.put(1, 0);
        }
        w.put(1, 0).rbsp() // no VUI
    }

    /// An interlaced High 4:2:0 SPS with scaling lists and pic_order_cnt_type 1.
    fn sps_interlaced_high() -> Vec<u8> {
        let mut w = BitWriter::default();
        w.put(8, 0x67).put(8, 100).put(8, 0).put(8, 40);
        w.ue(0).ue(1).ue(0).ue(0).put(1, 0); // sps id, 4:2:0, 8-bit, 8-bit, no bypass
        w.put(1, 1); // seq_scaling_matrix_present_flag
        for i in 0..8 {
            if i == 0 || i == 6 {
                w.put(1, 1);
                // delta_scale: +1 then -9 (next_scale 0: the rest of the list is implied).
                w.ue(1).ue(18);
            } else {
                w.put(1, 0);
            }
        }
        w.ue(0).ue(1).put(1, 0).ue(1).ue(2).ue(2).ue(3).ue(4); // poc type 1, a cycle of 2
        w.ue(4).put(1, 0); // refs, gaps
        w.ue(119).ue(33).put(1, 0).put(1, 1).put(1, 1); // 120 x 34 map units, field pairs
        w.put(1, 1).ue(0).ue(0).ue(0).ue(2); // crop 2 units of 4 lines at the bottom
        w.put(1, 0).rbsp()
    }

    #[test]
    fn h264_sizes_from_real_and_built_sps() {
        let h264 = |p: &[u8]| resolution(CodecName::H264, p);
        assert_eq!(h264(SPS_X264_1080P), Some((1920, 1080)));
        assert_eq!(h264(SPS_HIGH422_720P), Some((1280, 720)));
        assert_eq!(h264(SPS_HIGH422_360P), Some((640, 360)));
        assert_eq!(h264(&sps_baseline(80, 45, 0)), Some((1280, 720)));
        assert_eq!(h264(&sps_baseline(120, 68, 4)), Some((1920, 1080)));
        assert_eq!(h264(&sps_baseline(20, 12, 3)), Some((320, 186)));
        assert_eq!(h264(&sps_interlaced_high()), Some((1920, 1080)));
        // Cropping more than the picture is malformed.
        assert_eq!(h264(&sps_baseline(1, 1, 9)), None);
        // Not an SPS: IDR, PPS, a delta slice.
        assert_eq!(h264(&[0x65, 0x88, 0x84]), None);
        assert_eq!(h264(&[0x68, 0xeb, 0xe3, 0xcb, 0x22, 0xc0]), None);
        assert_eq!(h264(&[0x41, 0x9a]), None);
    }

    #[test]
    fn h264_sps_in_stap_a_and_fu_a() {
        let sps = SPS_X264_1080P;
        let pps = [0x68, 0xeb, 0xe3, 0xcb, 0x22, 0xc0];
        let mut stap = vec![0x78];
        for nal in [sps, &pps[..]] {
            stap.extend_from_slice(&(nal.len() as u16).to_be_bytes());
            stap.extend_from_slice(nal);
        }
        assert_eq!(resolution(CodecName::H264, &stap), Some((1920, 1080)));
        // PPS first, then the SPS.
        let mut stap = vec![0x78, 0, 6];
        stap.extend_from_slice(&pps);
        stap.extend_from_slice(&(sps.len() as u16).to_be_bytes());
        stap.extend_from_slice(sps);
        assert_eq!(resolution(CodecName::H264, &stap), Some((1920, 1080)));
        // An FU-A start fragment of the SPS: indicator, header (S, type 7), the rest.
        let mut fu = vec![0x7c, 0x87];
        fu.extend_from_slice(&sps[1..]);
        assert_eq!(resolution(CodecName::H264, &fu), Some((1920, 1080)));
        fu[1] = 0x07; // a middle fragment
        assert_eq!(resolution(CodecName::H264, &fu), None);
    }

    /// VP8 keyframe of 320x180 behind a descriptor with X, I (15-bit), L, T/K.
    const VP8_KEY_320X180: &[u8] = &[
        0x90, 0xe0, 0x80, 0x2a, 0x05, 0x20, // descriptor
        0xb0, 0x03, 0x00, // frame tag: key frame, version 0, shown
        0x9d, 0x01, 0x2a, // start code
        0x40, 0x01, 0xb4, 0x00, // 320, 180
        0x00, 0x47, 0x08, 0x85,
    ];

    #[test]
    fn vp8_sizes() {
        assert_eq!(
            resolution(CodecName::Vp8, VP8_KEY_320X180),
            Some((320, 180))
        );
        // The plain one-byte descriptor, and scale bits set above the 14-bit sizes.
        let mut p = vec![0x10];
        p.extend_from_slice(&VP8_KEY_320X180[6..]);
        p[8] |= 0x40;
        p[10] |= 0xc0;
        assert_eq!(resolution(CodecName::Vp8, &p), Some((320, 180)));
        // An inter frame, a bad start code, a packet that does not start partition 0.
        let mut inter = p.clone();
        inter[1] |= 0x01;
        assert_eq!(resolution(CodecName::Vp8, &inter), None);
        let mut bad = p.clone();
        bad[4] = 0x9c;
        assert_eq!(resolution(CodecName::Vp8, &bad), None);
        let mut middle = p.clone();
        middle[0] = 0x00;
        assert_eq!(resolution(CodecName::Vp8, &middle), None);
    }

    /// A VP9 keyframe's uncompressed header, 640x360, profile 0 (as libvpx writes it).
    const VP9_HEADER_640X360: &[u8] = &[0x82, 0x49, 0x83, 0x42, 0x00, 0x27, 0xf0, 0x16, 0x70];

    fn vp9_header(profile: u64, color_space: u64, width: u64, height: u64) -> Vec<u8> {
        let mut w = BitWriter::default();
        w.put(2, 2).put(1, profile & 1).put(1, profile >> 1);
        if profile == 3 {
            w.put(1, 0);
        }
        w.put(4, 0b0010).put(24, 0x49_83_42); // key frame, shown; sync code
        if profile >= 2 {
            w.put(1, 1);
        }
        w.put(3, color_space);
        let odd = profile == 1 || profile == 3;
        match (color_space == 7, odd) {
            (false, true) => w.put(4, 0b0100),
            (false, false) => w.put(1, 0),
            (true, true) => w.put(1, 0),
            (true, false) => w.put(0, 0),
        };
        w.put(16, width - 1).put(16, height - 1).put(8, 0);
        w.bytes.clone()
    }

    #[test]
    fn vp9_sizes() {
        let vp9 = |p: &[u8]| resolution(CodecName::Vp9, p);
        let mut p = vec![0x08]; // B only
        p.extend_from_slice(VP9_HEADER_640X360);
        assert_eq!(vp9(&p), Some((640, 360)));
        assert_eq!(p[1..], vp9_header(0, 0, 640, 360)[..9]);
        for profile in 0..4 {
            for color_space in [1, 7] {
                let mut p = vec![0x88, 0x17]; // I (7-bit picture id), B
                p.extend(vp9_header(profile, color_space, 1920, 1080));
                assert_eq!(vp9(&p), Some((1920, 1080)), "profile {profile}");
            }
        }
        // An inter frame (P set), and a frame that does not begin here (B clear).
        p[0] = 0x48;
        assert_eq!(vp9(&p), None);
        p[0] = 0x00;
        assert_eq!(vp9(&p), None);
        // A header whose frame_type says non-key.
        assert_eq!(vp9(&[0x08, 0x86, 0x49, 0x83, 0x42, 0, 0, 0, 0, 0]), None);
    }

    #[test]
    fn vp9_scalability_structure_gives_the_largest_layer() {
        // I (15-bit), L (non-flexible: layer byte and TL0PICIDX), B, V; SS with N_S = 3, Y, G.
        let mut p = vec![0xaa, 0x85, 0x12, 0x00, 0x07, 0x58];
        for (w, h) in [(320u16, 180u16), (1280, 720), (640, 360)] {
            p.extend_from_slice(&w.to_be_bytes());
            p.extend_from_slice(&h.to_be_bytes());
        }
        p.extend_from_slice(&[0x01, 0x04, 0x01]); // N_G = 1: T0, R = 1, one P_DIFF
        p.extend_from_slice(&vp9_header(0, 1, 320, 180));
        assert_eq!(resolution(CodecName::Vp9, &p), Some((1280, 720)));
        // Without Y the sizes are not in the structure: the header after it says 320x180.
        let mut p = vec![0xaa, 0x85, 0x12, 0x00, 0x07, 0x48, 0x01, 0x04, 0x01];
        p.extend_from_slice(&vp9_header(0, 1, 320, 180));
        assert_eq!(resolution(CodecName::Vp9, &p), Some((320, 180)));
        // Flexible mode (F) has no TL0PICIDX.
        let mut p = vec![0xba, 0x85, 0x12, 0x00, 0x10];
        p.extend_from_slice(&[0x05, 0x00, 0x00, 0xb4]);
        assert_eq!(resolution(CodecName::Vp9, &p), Some((1280, 180)));
    }

    /// A real AV1 RTP payload (a hardware encoder's sequence header with timing info), 1920x1080.
    const AV1_SEQ_1080P: &[u8] = &[
        0x10, 0x08, 0x04, 0x00, 0x00, 0x00, 0x04, 0x00, 0x00, 0x00, 0x63, 0x40, 0x00, 0x08, 0x42,
        0xab, 0xbf, 0xc3, 0x70, 0x08, 0x74, 0x40, 0x40, 0x40, 0x49, 0x00, 0x00, 0x00, 0x00,
    ];

    /// A sequence header OBU, as libaom writes for real-time (no timing info), or with a
    /// decoder model and two operating points.
    fn av1_sequence_header_obu(width: u64, height: u64, decoder_model: bool) -> Vec<u8> {
        let mut w = BitWriter::default();
        w.put(8, 0x08); // OBU_SEQUENCE_HEADER, no extension, no size field
        w.put(3, 0).put(1, 0).put(1, 0); // profile 0, not still, not reduced
        if decoder_model {
            w.put(1, 1).put(32, 1).put(32, 30).put(1, 1).ue(0); // timing_info
            w.put(1, 1).put(5, 9).put(32, 1).put(5, 20).put(5, 9); // decoder_model_info
            w.put(1, 1).put(5, 1); // initial display delay, 2 operating points
            for level in [9, 4] {
                w.put(12, 0x101).put(5, level);
                if level > 7 {
                    w.put(1, 0);
                }
                w.put(1, 1).put(10, 5).put(10, 6).put(1, 0); // operating_parameters_info
                w.put(1, 1).put(4, 3);
            }
        } else {
            w.put(1, 0)
                .put(1, 0)
                .put(5, 0)
                .put(12, 0)
                .put(5, 8)
                .put(1, 0);
        }
        let bits_w = 64 - (width - 1).leading_zeros().min(63);
        let bits_h = 64 - (height - 1).leading_zeros().min(63);
        w.put(4, u64::from(bits_w - 1))
            .put(4, u64::from(bits_h - 1));
        w.put(bits_w, width - 1).put(bits_h, height - 1);
        w.put(8, 0x00).rbsp()
    }

    #[test]
    fn av1_sizes() {
        let av1 = |p: &[u8]| resolution(CodecName::Av1, p);
        assert_eq!(av1(AV1_SEQ_1080P), Some((1920, 1080)));
        // N, W = 2: a LEB128-sized sequence header, then a frame OBU without a size.
        let obu = av1_sequence_header_obu(1280, 720, false);
        let mut p = vec![0x28, obu.len() as u8];
        p.extend_from_slice(&obu);
        p.extend_from_slice(&[0x30, 0x10, 0x00]);
        assert_eq!(av1(&p), Some((1280, 720)));
        // W = 0: every element sized.
        p[0] = 0x08;
        assert_eq!(av1(&p[..2 + obu.len()]), Some((1280, 720)));
        let obu = av1_sequence_header_obu(640, 360, true);
        let mut p = vec![0x18];
        p.extend_from_slice(&obu);
        assert_eq!(av1(&p), Some((640, 360)));
        // An OBU with an extension header and its own size field.
        let mut ext = vec![obu[0] | 0x06, 0x00, (obu.len() - 1) as u8];
        ext.extend_from_slice(&obu[1..]);
        assert_eq!(av1(&[&[0x18][..], &ext].concat()), Some((640, 360)));
        // Z: the first element continues an OBU of the previous packet and is skipped, even
        // when its bytes look like a sequence header.
        let tail = av1_sequence_header_obu(320, 180, false);
        let mut p = vec![0xa0, tail.len() as u8];
        p.extend_from_slice(&tail);
        p.extend_from_slice(&obu);
        assert_eq!(av1(&p), Some((640, 360)));
        p[0] = 0x20;
        assert_eq!(av1(&p), Some((320, 180)));
        // A size past the end.
        assert_eq!(av1(&[0x00, 0x7f, 0x08, 0x00]), None);
        // A frame OBU only.
        assert_eq!(av1(&[0x18, 0x32, 0x10, 0x00]), None);
        assert_eq!(resolution(CodecName::Opus, &[0x08]), None);
    }

    /// Every fixture of this file, for the robustness tests.
    fn fixtures() -> Vec<(CodecName, Vec<u8>)> {
        let mut vp9 = vec![0x08];
        vp9.extend_from_slice(VP9_HEADER_640X360);
        vec![
            (CodecName::H264, SPS_X264_1080P.to_vec()),
            (CodecName::H264, SPS_HIGH422_360P.to_vec()),
            (CodecName::H264, sps_interlaced_high()),
            (CodecName::Vp8, VP8_KEY_320X180.to_vec()),
            (CodecName::Vp9, vp9),
            (CodecName::Av1, AV1_SEQ_1080P.to_vec()),
            (
                CodecName::Av1,
                [&[0x18][..], &av1_sequence_header_obu(640, 360, true)].concat(),
            ),
        ]
    }

    #[test]
    fn every_prefix_of_every_fixture_is_safe() {
        for (codec, bytes) in fixtures() {
            assert!(
                resolution(codec, &bytes).is_some(),
                "{codec:?} {bytes:02x?}"
            );
            for len in 0..bytes.len() {
                let _ = resolution(codec, &bytes[..len]);
                let _ = starts_keyframe(codec, &bytes[..len]);
            }
        }
    }

    #[test]
    fn random_and_mutated_bytes_are_safe() {
        // xorshift64*: the same bytes every run.
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = move || {
            state ^= state >> 12;
            state ^= state << 25;
            state ^= state >> 27;
            state.wrapping_mul(0x2545_f491_4f6c_dd1d)
        };
        let codecs = [
            CodecName::H264,
            CodecName::Vp8,
            CodecName::Vp9,
            CodecName::Av1,
            CodecName::Opus,
        ];
        let mut buf = Vec::new();
        for _ in 0..20_000 {
            buf.clear();
            let len = (next() % 64) as usize;
            buf.extend((0..len).map(|_| next() as u8));
            for codec in codecs {
                let _ = resolution(codec, &buf);
                let _ = starts_keyframe(codec, &buf);
            }
        }
        for (codec, bytes) in fixtures() {
            for _ in 0..5_000 {
                let mut m = bytes.clone();
                for _ in 0..1 + next() % 3 {
                    let i = (next() as usize) % m.len();
                    m[i] = next() as u8;
                }
                let _ = resolution(codec, &m);
            }
        }
    }
}
