//! A most-significant-bit-first reader over a byte slice, for the few header fields
//! [`super::resolution`] needs. Every read past the end is `None`, never a panic.

/// Reads bits from the front of a byte slice.
#[derive(Debug, Clone)]
pub(super) struct Bits<'a> {
    data: &'a [u8],
    /// Position in bits from the start of `data`.
    at: usize,
}

impl<'a> Bits<'a> {
    pub(super) fn new(data: &'a [u8]) -> Self {
        Bits { data, at: 0 }
    }

    /// One bit.
    pub(super) fn bit(&mut self) -> Option<bool> {
        let byte = *self.data.get(self.at / 8)?;
        let bit = (byte >> (7 - self.at % 8)) & 1;
        self.at += 1;
        Some(bit == 1)
    }

    /// `n` bits (at most 32) as an unsigned number, most significant first.
    pub(super) fn bits(&mut self, n: u32) -> Option<u32> {
        debug_assert!(n <= 32);
        let mut value = 0u64;
        for _ in 0..n {
            value = (value << 1) | u64::from(self.bit()?);
        }
        u32::try_from(value).ok()
    }

    /// Skip `n` bits.
    pub(super) fn skip(&mut self, n: u32) -> Option<()> {
        let at = self.at.checked_add(n as usize)?;
        if at > self.data.len() * 8 {
            return None;
        }
        self.at = at;
        Some(())
    }

    /// An unsigned exp-Golomb number, ue(v) of H.264 (also AV1's uvlc()). `None` past 32 bits.
    pub(super) fn ue(&mut self) -> Option<u32> {
        let mut zeros = 0;
        while !self.bit()? {
            zeros += 1;
            if zeros > 31 {
                return None;
            }
        }
        let rest = u64::from(self.bits(zeros)?);
        u32::try_from((1u64 << zeros) - 1 + rest).ok()
    }

    /// A signed exp-Golomb number, se(v) of H.264.
    pub(super) fn se(&mut self) -> Option<i32> {
        let k = i64::from(self.ue()?);
        let v = if k % 2 == 1 { (k + 1) / 2 } else { -(k / 2) };
        i32::try_from(v).ok()
    }
}

/// H.264 RBSP from a NAL unit's bytes: every emulation prevention byte (the 03 of 00 00 03)
/// removed.
pub(super) fn unescape(nal: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(nal.len());
    let mut zeros = 0;
    for &b in nal {
        if zeros >= 2 && b == 3 {
            zeros = 0;
            continue;
        }
        zeros = if b == 0 { zeros + 1 } else { 0 };
        out.push(b);
    }
    out
}

/// A LEB128 number (AV1 sizes) at the front of `p`: the value and how many bytes it took.
pub(super) fn leb128(p: &[u8]) -> Option<(u64, usize)> {
    let mut value = 0u64;
    for (i, &b) in p.iter().enumerate().take(8) {
        value |= u64::from(b & 0x7f) << (7 * i);
        if b & 0x80 == 0 {
            return Some((value, i + 1));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exp_golomb() {
        // 1 | 010 | 011 | 00100 | 00101 -> 0, 1, 2, 3, 4 (se: 0, 1, -1, 2, -2).
        let data = [0b1010_0110, 0b0100_0010, 0b1000_0000];
        let mut b = Bits::new(&data);
        assert_eq!(
            [b.ue(), b.ue(), b.ue(), b.ue(), b.ue()],
            [Some(0), Some(1), Some(2), Some(3), Some(4)]
        );
        let mut b = Bits::new(&data);
        assert_eq!(
            [b.se(), b.se(), b.se(), b.se(), b.se()],
            [Some(0), Some(1), Some(-1), Some(2), Some(-2)]
        );
        // 32 leading zeros: too long, not a panic.
        assert_eq!(Bits::new(&[0, 0, 0, 0, 0x80]).ue(), None);
        // 31 leading zeros then all ones: the largest value that fits.
        assert_eq!(
            Bits::new(&[0, 0, 0, 1, 0xff, 0xff, 0xff, 0xff]).ue(),
            Some(u32::MAX - 1)
        );
        assert_eq!(Bits::new(&[0x00]).ue(), None);
    }

    #[test]
    fn reads_past_the_end_are_none() {
        let mut b = Bits::new(&[0xa5]);
        assert_eq!(b.bits(4), Some(0xa));
        assert_eq!(b.bits(5), None);
        let mut b = Bits::new(&[0xa5]);
        assert_eq!(b.skip(8), Some(()));
        assert_eq!(b.bit(), None);
        assert_eq!(Bits::new(&[]).skip(1), None);
        assert_eq!(Bits::new(&[1, 2, 3, 4]).bits(32), Some(0x0102_0304));
    }

    #[test]
    fn emulation_prevention_and_leb128() {
        assert_eq!(
            unescape(&[0, 0, 3, 1, 0, 0, 3, 0, 0, 3]),
            [0, 0, 1, 0, 0, 0, 0]
        );
        assert_eq!(unescape(&[0, 3, 0, 0, 0, 3]), [0, 3, 0, 0, 0]);
        assert_eq!(leb128(&[0x05]), Some((5, 1)));
        assert_eq!(leb128(&[0x80, 0x01]), Some((128, 2)));
        assert_eq!(leb128(&[0x80]), None);
        assert_eq!(leb128(&[0xff; 9]), None);
    }
}
