//! Is this RTP payload the first packet of a keyframe? Read from the codec's payload descriptor
//! only, never decoding media. Used to start a new subscriber (or a restarted publisher) on a
//! keyframe so its decoder never sees a delta frame without its reference.

use crate::sdp::CodecName;

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
    let Some(&b0) = p.first() else {
        return false;
    };
    let start = b0 & 0x10 != 0 && b0 & 0x07 == 0;
    if !start {
        return false;
    }
    let mut i = 1;
    if b0 & 0x80 != 0 {
        // X: extension byte with I, L, T, K flags.
        let Some(&x) = p.get(i) else { return false };
        i += 1;
        if x & 0x80 != 0 {
            // I: PictureID, 7 or 15 bits.
            let Some(&pid) = p.get(i) else { return false };
            i += if pid & 0x80 != 0 { 2 } else { 1 };
        }
        if x & 0x40 != 0 {
            i += 1; // L: TL0PICIDX
        }
        if x & 0x30 != 0 {
            i += 1; // T/K: TID/KEYIDX
        }
    }
    p.get(i).is_some_and(|h| h & 0x01 == 0)
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
}
