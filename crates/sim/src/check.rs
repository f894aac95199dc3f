//! Assertions on what viewers received compared with what publishers sent, matched by the
//! [`Tag`] every synthetic payload carries.

use std::collections::{HashMap, HashSet};

use crate::client::{Received, Sent};
use crate::media::Tag;

/// How one viewer's packets of one kind compare with what was sent.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Coverage {
    /// Index in `sent` of the earliest packet the viewer got.
    pub first: usize,
    /// Packets sent from `first` on.
    pub expected: usize,
    /// Distinct packets received.
    pub received: usize,
    /// Expected packets never received.
    pub missing: usize,
    /// Their indices in `sent`.
    pub missing_indices: Vec<usize>,
    /// Packets received more than once.
    pub duplicates: usize,
    /// Received payloads that match no sent one, or differ from it.
    pub corrupt: usize,
    /// Packets whose sequence number is not the sent one shifted by the same offset as the
    /// first packet's (only counted among packets of one publisher).
    pub misnumbered: usize,
}

impl Coverage {
    /// Missing packets as a fraction of those expected.
    pub fn loss(&self) -> f64 {
        if self.expected == 0 {
            return 0.0;
        }
        self.missing as f64 / self.expected as f64
    }
}

fn index(sent: &[Sent]) -> HashMap<Tag, usize> {
    sent.iter()
        .enumerate()
        .filter_map(|(i, s)| Tag::parse(&s.payload).map(|t| (t, i)))
        .collect()
}

/// Compare, tolerating loss and reordering: what was missed, duplicated, corrupted.
pub fn coverage(sent: &[Sent], received: &[Received]) -> Coverage {
    let by_tag = index(sent);
    let mut seen = HashSet::new();
    let mut c = Coverage {
        first: usize::MAX,
        ..Coverage::default()
    };
    let mut offsets: HashMap<u32, u64> = HashMap::new();
    for r in received {
        let Some((tag, &i)) = Tag::parse(&r.payload).and_then(|t| by_tag.get(&t).map(|i| (t, i)))
        else {
            c.corrupt += 1;
            continue;
        };
        if sent[i].payload != r.payload || sent[i].marker != r.marker {
            c.corrupt += 1;
        }
        let offset = r.seq.wrapping_sub(sent[i].seq);
        if *offsets.entry(tag.source).or_insert(offset) != offset {
            c.misnumbered += 1;
        }
        if !seen.insert(i) {
            c.duplicates += 1;
        }
        c.first = c.first.min(i);
    }
    if c.first == usize::MAX {
        return Coverage::default();
    }
    c.received = seen.len();
    c.expected = sent.len() - c.first;
    c.missing_indices = (c.first..sent.len())
        .filter(|i| !seen.contains(i))
        .collect();
    c.missing = c.missing_indices.len();
    c
}

/// Packets of `sent[window]` the viewer never received (for residual loss in steady state:
/// the first packet of a stream and the last ones before it stops cannot be repaired by NACK,
/// since no later packet reveals the gap).
pub fn missing_in(sent: &[Sent], received: &[Received], window: std::ops::Range<usize>) -> usize {
    let by_tag = index(&sent[window.clone()]);
    let got: HashSet<usize> = received
        .iter()
        .filter_map(|r| Tag::parse(&r.payload).and_then(|t| by_tag.get(&t).copied()))
        .collect();
    window.len() - got.len()
}

/// The strict check for a clean network: the viewer got every packet sent from its first one
/// on, byte-exact, in order, with sequence numbers +1 each, one SSRC, and timestamps that move
/// as the sender's did (between packets of one publisher). Returns the index in `sent` of the
/// first packet received.
pub fn exact(sent: &[Sent], received: &[Received]) -> Result<usize, String> {
    let first = received.first().ok_or("nothing received")?;
    let by_tag = index(sent);
    let tag0 = Tag::parse(&first.payload).ok_or("first payload has no tag")?;
    let start = *by_tag.get(&tag0).ok_or("first payload was never sent")?;
    if received.len() != sent.len() - start {
        return Err(format!(
            "received {} packets, {} were sent from the first one received (index {start}) on",
            received.len(),
            sent.len() - start
        ));
    }
    for (i, r) in received.iter().enumerate() {
        let s = &sent[start + i];
        if s.payload != r.payload {
            let got = Tag::parse(&r.payload);
            return Err(format!(
                "packet {i}: payload differs (expected {:?}, got {got:?})",
                Tag::parse(&s.payload)
            ));
        }
        if s.marker != r.marker {
            return Err(format!("packet {i}: marker {} != {}", r.marker, s.marker));
        }
        if r.seq != first.seq + i as u64 {
            return Err(format!(
                "packet {i}: seq {} after {} (+{i} expected)",
                r.seq, first.seq
            ));
        }
        if r.ssrc != first.ssrc {
            return Err(format!(
                "packet {i}: ssrc changed {} -> {}",
                first.ssrc, r.ssrc
            ));
        }
        if i > 0 {
            let (p, ps) = (&received[i - 1], &sent[start + i - 1]);
            let same_source = Tag::parse(&p.payload).map(|t| t.source)
                == Tag::parse(&r.payload).map(|t| t.source);
            if same_source && r.ts.wrapping_sub(p.ts) != s.ts.wrapping_sub(ps.ts) {
                return Err(format!(
                    "packet {i}: timestamp step {} != sent step {}",
                    r.ts.wrapping_sub(p.ts),
                    s.ts.wrapping_sub(ps.ts)
                ));
            }
            if !same_source && (r.ts.wrapping_sub(p.ts) as i32) <= 0 {
                return Err(format!(
                    "packet {i}: timestamp went back across a source switch"
                ));
            }
        }
    }
    Ok(start)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Instant;

    use super::*;
    use crate::media::audio_payload;

    fn stream(n: u32) -> (Vec<Sent>, Vec<Received>) {
        let at = Instant::now();
        let sent: Vec<Sent> = (0..n)
            .map(|i| Sent {
                at,
                seq: 100 + u64::from(i),
                ts: 960 * i,
                marker: true,
                keyframe: false,
                payload: Arc::from(audio_payload(1, i, 80)),
            })
            .collect();
        let received = sent
            .iter()
            .map(|s| Received {
                at,
                seq: s.seq + 5000,
                ts: s.ts.wrapping_add(77),
                ssrc: 9,
                pt: 111,
                marker: s.marker,
                payload: s.payload.clone(),
            })
            .collect();
        (sent, received)
    }

    #[test]
    fn exact_accepts_a_clean_suffix() {
        let (sent, received) = stream(10);
        assert_eq!(exact(&sent, &received), Ok(0));
        assert_eq!(exact(&sent, &received[3..]), Ok(3));
        let c = coverage(&sent, &received[3..]);
        assert_eq!(
            (c.first, c.expected, c.missing, c.corrupt, c.misnumbered),
            (3, 7, 0, 0, 0)
        );
    }

    #[test]
    fn exact_catches_every_kind_of_damage() {
        let (sent, received) = stream(10);
        // A gap.
        let mut gap = received.clone();
        gap.remove(4);
        assert!(exact(&sent, &gap).is_err());
        assert_eq!(coverage(&sent, &gap).missing, 1);
        assert_eq!(missing_in(&sent, &gap, 2..8), 1);
        // A missing tail.
        assert!(exact(&sent, &received[..9]).is_err());
        // Reordered.
        let mut swapped = received.clone();
        swapped.swap(2, 3);
        assert!(exact(&sent, &swapped).is_err());
        // A duplicate.
        let mut dup = received.clone();
        dup.insert(5, dup[4].clone());
        assert!(exact(&sent, &dup).is_err());
        assert_eq!(coverage(&sent, &dup).duplicates, 1);
        // A flipped byte.
        let mut bad = received.clone();
        let mut bytes = bad[6].payload.to_vec();
        bytes[3] ^= 1;
        bad[6].payload = bytes.into();
        assert!(exact(&sent, &bad).is_err());
        assert_eq!(coverage(&sent, &bad).corrupt, 1);
        // A sequence number off by one.
        let mut renumbered = received.clone();
        renumbered[7].seq += 1;
        assert!(exact(&sent, &renumbered).is_err());
        assert_eq!(coverage(&sent, &renumbered).misnumbered, 1);
        // A timestamp that moved differently from the sender's.
        let mut ts = received.clone();
        ts[8].ts += 1;
        assert!(exact(&sent, &ts).is_err());
        // Nothing at all.
        assert!(exact(&sent, &[]).is_err());
    }
}
