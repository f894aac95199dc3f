//! Assertions on what viewers received compared with what publishers sent, matched by the
//! [`Tag`] every synthetic payload carries. Payloads are compared byte for byte, except for the
//! picture numbers in a VP8 payload descriptor, which an SFU rewrites to keep them continuous
//! across a change of source ([`same_payload`], and [`vp8_numbering`] for the numbers).

use std::collections::{HashMap, HashSet};
use std::time::Instant;

use ringcast_core::TrackKind;

use crate::client::{Received, Sent};
use crate::media::{self, Tag, VideoCodec};

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

/// Is `received` the `sent` payload? Byte for byte, except that in a video payload whose VP8
/// descriptor carries a PictureID, TL0PICIDX or KEYIDX those numbers may differ (the rest of
/// the descriptor, its flags included, may not). An H264 payload never qualifies: its first
/// byte's forbidden zero bit is where VP8 has X.
pub fn same_payload(sent: &[u8], received: &[u8]) -> bool {
    if sent == received {
        return true;
    }
    let video = Tag::parse(sent).is_some_and(|t| t.track() == TrackKind::Video);
    video
        && media::vp8_without_numbers(sent)
            .is_some_and(|s| media::vp8_without_numbers(received).is_some_and(|r| r == s))
}

/// The VP8 picture numbers a viewer received, in arrival order, are one continuous stream, as
/// if one encoder had numbered them, whatever layers and publishers they came from: every
/// packet carries PictureID, TL0PICIDX and KEYIDX; each packet that starts a frame (S set, PID
/// 0) has PictureID one more (modulo its width) and TL0PICIDX one more (every frame of the sim
/// is on temporal layer 0) than the frame before, and the same KEYIDX unless it starts a
/// keyframe; the other packets of a frame repeat its numbers. Returns the frames counted, or
/// the first violation: its packet index and the numbers.
pub fn vp8_numbering(received: &[Received]) -> Result<usize, String> {
    let mut prev: Option<media::Vp8Picture> = None;
    let mut frames = 0;
    for (k, r) in received.iter().enumerate() {
        let d = media::vp8_descriptor(&r.payload)
            .ok_or_else(|| format!("packet {k}: no VP8 payload descriptor"))?;
        let now = d
            .picture()
            .ok_or_else(|| format!("packet {k}: no PictureID, TL0PICIDX and KEYIDX"))?;
        let new_frame = d.start && d.partition == 0;
        if let Some(p) = prev {
            let keyframe = media::starts_keyframe(VideoCodec::Vp8, &r.payload);
            let expected = if new_frame {
                media::Vp8Picture {
                    picture_id: p.picture_id.wrapping_add(1) & d.picture_id_mask(),
                    tl0_pic_idx: p.tl0_pic_idx.wrapping_add(1),
                    key_idx: if keyframe { now.key_idx } else { p.key_idx },
                }
            } else {
                p
            };
            if now != expected {
                return Err(format!(
                    "packet {k}{}: {} after {}, {} expected",
                    if keyframe {
                        " (keyframe)"
                    } else if new_frame {
                        " (frame start)"
                    } else {
                        ""
                    },
                    numbers(now),
                    numbers(p),
                    numbers(expected),
                ));
            }
        }
        frames += usize::from(new_frame);
        prev = Some(now);
    }
    Ok(frames)
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
        if !same_payload(&sent[i].payload, &r.payload) || sent[i].marker != r.marker {
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
        if !same_payload(&s.payload, &r.payload) {
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

/// A viewer's video told apart by simulcast layer: see [`layer_trace`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LayerTrace {
    /// For each received packet, the layer (index in the lists given) it came from; `None`
    /// for a payload that matches no sent packet.
    pub layers: Vec<Option<usize>>,
    /// Where the viewer started and moved from one layer to another.
    pub switches: Vec<Switch>,
    /// Everything wrong, in order: corrupt or unknown payloads, sequence numbers that are not
    /// +1, a changed SSRC, gaps or reordering within a layer, timestamps that do not move as
    /// the sender's did (or go back across a switch), a start or switch that is not on a
    /// packet starting a keyframe.
    pub problems: Vec<String>,
}

/// A viewer starting on a layer or moving to another.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Switch {
    /// When its first packet on the new layer arrived.
    pub at: Instant,
    /// Index of that packet in what the viewer received.
    pub index: usize,
    /// The layer before (`None`: the start).
    pub from: Option<usize>,
    /// The layer after.
    pub to: usize,
}

impl LayerTrace {
    /// The layer of the last packet received.
    pub fn last_layer(&self) -> Option<usize> {
        self.layers.iter().rev().flatten().next().copied()
    }

    /// Switches between layers, the start left out.
    pub fn moves(&self) -> impl Iterator<Item = &Switch> {
        self.switches.iter().filter(|s| s.from.is_some())
    }
}

/// Tell for each packet a viewer received which layer of `layers` (each one layer's sent
/// packets, as [`crate::Client::sent_layers`]; several publishers' layers may be given
/// together) it came from, list where it started and switched, and note every problem.
pub fn layer_trace(layers: &[&[Sent]], received: &[Received]) -> LayerTrace {
    trace(layers, received, true)
}

/// [`layer_trace`] for a room member's slot: `sources` are what each member that may show in
/// it sent of the slot's kind (or each of their layers), and a switch from one to another
/// must start a keyframe when `keyframes` (video slots), and may start at any packet when not
/// (audio slots switch at packet boundaries). Everything else is checked as for layers: one
/// SSRC, sequence numbers +1 each across switches, byte-exact payloads, no gap within a
/// source, timestamps as the sender's within a source and forward across a switch.
pub fn slot_trace(sources: &[&[Sent]], received: &[Received], keyframes: bool) -> LayerTrace {
    trace(sources, received, keyframes)
}

/// [`slot_trace`], as a result: the trace, or its problems.
pub fn slot(
    sources: &[&[Sent]],
    received: &[Received],
    keyframes: bool,
) -> Result<LayerTrace, String> {
    if received.is_empty() {
        return Err("nothing received".into());
    }
    result(slot_trace(sources, received, keyframes))
}

fn trace(layers: &[&[Sent]], received: &[Received], keyframes: bool) -> LayerTrace {
    let by_tag: HashMap<Tag, (usize, usize)> = layers
        .iter()
        .enumerate()
        .flat_map(|(l, sent)| {
            sent.iter()
                .enumerate()
                .filter_map(move |(i, s)| Tag::parse(&s.payload).map(|t| (t, (l, i))))
        })
        .collect();
    let mut t = LayerTrace::default();
    // The layer and index in it of the previous packet that matched one.
    let mut prev: Option<(usize, usize, &Received)> = None;
    for (k, r) in received.iter().enumerate() {
        let first = &received[0];
        if r.seq != first.seq + k as u64 {
            t.problems.push(format!(
                "packet {k}: seq {} after {} (+{k} expected)",
                r.seq, first.seq
            ));
        }
        if r.ssrc != first.ssrc {
            t.problems
                .push(format!("packet {k}: ssrc {} -> {}", first.ssrc, r.ssrc));
        }
        let Some(&(l, i)) = Tag::parse(&r.payload).and_then(|tag| by_tag.get(&tag)) else {
            t.problems
                .push(format!("packet {k}: payload matches nothing sent"));
            t.layers.push(None);
            continue;
        };
        t.layers.push(Some(l));
        let s = &layers[l][i];
        if !same_payload(&s.payload, &r.payload) || s.marker != r.marker {
            t.problems.push(format!(
                "packet {k} (layer {l}, #{i}): payload or marker differs from the sent one"
            ));
        }
        match prev {
            Some((pl, pi, p)) if pl == l => {
                if i != pi + 1 {
                    t.problems.push(format!(
                        "packet {k}: layer {l} #{i} follows #{pi} (gap or reordering)"
                    ));
                } else if r.ts.wrapping_sub(p.ts) != s.ts.wrapping_sub(layers[l][pi].ts) {
                    t.problems.push(format!(
                        "packet {k}: timestamp step {} != sent step {}",
                        r.ts.wrapping_sub(p.ts),
                        s.ts.wrapping_sub(layers[l][pi].ts)
                    ));
                }
            }
            _ => {
                let from = prev.map(|(pl, _, _)| pl);
                t.switches.push(Switch {
                    at: r.at,
                    index: k,
                    from,
                    to: l,
                });
                if keyframes && !s.keyframe {
                    t.problems.push(format!(
                        "packet {k}: {} layer {l} on #{i}, which does not start a keyframe",
                        if from.is_some() {
                            "switch to"
                        } else {
                            "start on"
                        }
                    ));
                }
                if let Some((_, _, p)) = prev
                    && (r.ts.wrapping_sub(p.ts) as i32) <= 0
                {
                    t.problems.push(format!(
                        "packet {k}: timestamp did not move forward across a switch"
                    ));
                }
            }
        }
        prev = Some((l, i, r));
    }
    t
}

/// The strict check for a clean network with simulcast (or without: one layer): every packet
/// byte-exact to its layer's sent one, sequence numbers +1 each on one SSRC across every
/// switch, no gap within a layer, timestamps as the sender's within a layer and forward
/// across switches, the start and every switch on a packet starting a keyframe. Returns the
/// trace, or its problems.
pub fn layered(layers: &[&[Sent]], received: &[Received]) -> Result<LayerTrace, String> {
    if received.is_empty() {
        return Err("nothing received".into());
    }
    result(layer_trace(layers, received))
}

fn result(t: LayerTrace) -> Result<LayerTrace, String> {
    if t.problems.is_empty() {
        Ok(t)
    } else {
        let n = t.problems.len();
        let shown: Vec<&str> = t.problems.iter().take(5).map(String::as_str).collect();
        Err(format!("{n} problems: {}", shown.join("; ")))
    }
}

/// When the first complete keyframe arrived: the first packet that starts a keyframe of
/// `codec` and every other packet of its frame (by their tags) received, at the arrival of
/// the last of them. `None` if there is none yet.
pub fn first_frame(received: &[Received], codec: VideoCodec) -> Option<Instant> {
    let start = received
        .iter()
        .position(|r| media::starts_keyframe(codec, &r.payload))?;
    let head = Tag::parse(&received[start].payload)?;
    let mut got = HashSet::new();
    let mut last = received[start].at;
    for r in &received[start..] {
        let Some(tag) = Tag::parse(&r.payload) else {
            continue;
        };
        if (tag.source, tag.layer, tag.frame) == (head.source, head.layer, head.frame) {
            got.insert(tag.index);
            last = last.max(r.at);
            if got.len() == usize::from(head.count) {
                return Some(last);
            }
        }
    }
    None
}

/// Picture numbers as an error message names them.
fn numbers(p: media::Vp8Picture) -> String {
    format!(
        "PictureID {} TL0PICIDX {} KEYIDX {}",
        p.picture_id, p.tl0_pic_idx, p.key_idx
    )
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

    /// Two layers of VP8 frames (a keyframe every `gop` frames, both layers together), each
    /// with its own sequence numbers and timestamps.
    fn two_layers(frames: u32, gop: u32) -> [Vec<Sent>; 2] {
        layers_numbered(frames, gop, [None, None])
    }

    /// [`two_layers`], each layer's VP8 descriptors numbered from `pictures` on (or not).
    fn layers_numbered(
        frames: u32,
        gop: u32,
        pictures: [Option<media::Vp8Picture>; 2],
    ) -> [Vec<Sent>; 2] {
        let at = Instant::now();
        let mut out = [Vec::new(), Vec::new()];
        for (layer, sent) in out.iter_mut().enumerate() {
            let mut seq = 1000 * (layer as u64 + 1);
            let mut picture = pictures[layer];
            for frame in 0..frames {
                let keyframe = frame % gop == 0;
                if frame > 0 {
                    picture = picture.map(|p| p.next(keyframe));
                }
                let spec = media::FrameSpec {
                    source: 1,
                    layer: layer as u8,
                    frame,
                    keyframe,
                    size: 1500 * (layer + 1),
                    resolution: (320 * (layer as u16 + 1), 180 * (layer as u16 + 1)),
                    picture,
                };
                let packets = media::layer_frame(VideoCodec::Vp8, &spec);
                let n = packets.len();
                for (i, p) in packets.into_iter().enumerate() {
                    sent.push(Sent {
                        at,
                        seq,
                        ts: 7_000_000 * layer as u32 + 3000 * frame,
                        marker: i + 1 == n,
                        keyframe: spec.keyframe && i == 0,
                        payload: p.into(),
                    });
                    seq += 1;
                }
            }
        }
        out
    }

    /// What an SFU forwards: `layer_at(frame)` picks the layer of each frame; sequence
    /// numbers renumbered from 1, timestamps from layer 0's clock.
    fn forward(layers: &[Vec<Sent>; 2], layer_at: impl Fn(u32) -> usize) -> Vec<Received> {
        let mut out = Vec::new();
        let mut frame = 0;
        loop {
            let l = layer_at(frame);
            let packets: Vec<&Sent> = layers[l]
                .iter()
                .filter(|s| Tag::parse(&s.payload).unwrap().frame == frame)
                .collect();
            if packets.is_empty() {
                return out;
            }
            for s in packets {
                out.push(Received {
                    at: s.at,
                    seq: 1 + out.len() as u64,
                    ts: 3000 * frame,
                    ssrc: 5,
                    pt: 96,
                    marker: s.marker,
                    payload: s.payload.clone(),
                });
            }
            frame += 1;
        }
    }

    #[test]
    fn layered_follows_switches_on_keyframes() {
        let layers = two_layers(30, 10);
        let lists: Vec<&[Sent]> = layers.iter().map(Vec::as_slice).collect();
        // Layer 0, up to layer 1 on the keyframe at frame 10, down again at 20.
        let got = forward(&layers, |f| usize::from((10..20).contains(&f)));
        let t = layered(&lists, &got).unwrap();
        let moves: Vec<(Option<usize>, usize)> =
            t.switches.iter().map(|s| (s.from, s.to)).collect();
        assert_eq!(moves, [(None, 0), (Some(0), 1), (Some(1), 0)]);
        assert_eq!(t.moves().count(), 2);
        assert_eq!(t.last_layer(), Some(0));
        assert!(t.switches.iter().all(|s| starts_keyframe(&got[s.index])));
        assert_eq!(first_frame(&got, VideoCodec::Vp8), Some(got[0].at));
        assert_eq!(
            media::vp8_resolution(&got[t.switches[1].index].payload),
            Some((640, 360))
        );
    }

    fn starts_keyframe(r: &Received) -> bool {
        media::starts_keyframe(VideoCodec::Vp8, &r.payload)
    }

    #[test]
    fn layered_catches_every_kind_of_damage() {
        let layers = two_layers(30, 10);
        let lists: Vec<&[Sent]> = layers.iter().map(Vec::as_slice).collect();
        let good = forward(&layers, |f| usize::from(f >= 10));
        assert!(layered(&lists, &good).is_ok());
        // A switch between keyframes.
        let early = forward(&layers, |f| usize::from(f >= 5));
        let e = layered(&lists, &early).unwrap_err();
        assert!(e.contains("does not start a keyframe"), "{e}");
        // A start between keyframes.
        assert!(
            layered(&lists, &good[3..])
                .unwrap_err()
                .contains("start on")
        );
        // A sequence number gap at the switch.
        let mut gap = good.clone();
        let at = layer_trace(&lists, &gap).switches[1].index;
        for r in &mut gap[at..] {
            r.seq += 1;
        }
        assert!(layered(&lists, &gap).unwrap_err().contains("seq"));
        // A packet lost within a layer, sequence numbers closed up over it.
        let mut lost = good.clone();
        lost.remove(4);
        for (k, r) in lost.iter_mut().enumerate() {
            r.seq = 1 + k as u64;
        }
        assert!(layered(&lists, &lost).unwrap_err().contains("gap"));
        // A flipped byte.
        let mut bad = good.clone();
        let mut bytes = bad[7].payload.to_vec();
        bytes[2] ^= 1;
        bad[7].payload = bytes.into();
        assert!(layered(&lists, &bad).is_err());
        // A timestamp going back across the switch.
        let mut back = good.clone();
        let at = layer_trace(&lists, &back).switches[1].index;
        for r in &mut back[at..] {
            r.ts = r.ts.wrapping_sub(3000 * 11);
        }
        assert!(layered(&lists, &back).unwrap_err().contains("forward"));
        // A second SSRC.
        let mut ssrc = good.clone();
        ssrc[9].ssrc += 1;
        assert!(layered(&lists, &ssrc).unwrap_err().contains("ssrc"));
        assert!(layered(&lists, &[]).is_err());
    }

    #[test]
    fn first_frame_waits_for_the_whole_keyframe() {
        let layers = two_layers(3, 10);
        let mut got = forward(&layers, |_| 1);
        let base = got[0].at;
        for (k, r) in got.iter_mut().enumerate() {
            r.at = base + std::time::Duration::from_millis(k as u64);
        }
        let count = usize::from(Tag::parse(&got[0].payload).unwrap().count);
        assert!(count > 1);
        assert_eq!(first_frame(&got, VideoCodec::Vp8), Some(got[count - 1].at));
        // Missing its last packet: no frame yet (the delta frames after do not count).
        let mut partial = got.clone();
        partial.remove(count - 1);
        assert_eq!(first_frame(&partial, VideoCodec::Vp8), None);
        // Deltas before the first keyframe are skipped.
        assert_eq!(first_frame(&got[1..], VideoCodec::Vp8), None);
    }

    fn picture(picture_id: u16, tl0_pic_idx: u8, key_idx: u8) -> media::Vp8Picture {
        media::Vp8Picture {
            picture_id,
            tl0_pic_idx,
            key_idx,
        }
    }

    /// Write `p` into a sim VP8 payload's six-byte descriptor.
    fn write_numbers(r: &mut Received, p: media::Vp8Picture) {
        let mut bytes = r.payload.to_vec();
        bytes[2] = 0x80 | (p.picture_id >> 8) as u8;
        bytes[3] = p.picture_id as u8;
        bytes[4] = p.tl0_pic_idx;
        bytes[5] = (bytes[5] & 0xe0) | p.key_idx;
        r.payload = bytes.into();
    }

    /// What an SFU that keeps VP8 numbers continuous sends: from `start` on, one more per
    /// frame, KEYIDX one more per keyframe.
    fn renumber(got: &[Received], start: media::Vp8Picture) -> Vec<Received> {
        let mut out = got.to_vec();
        let mut p = start;
        for (k, r) in out.iter_mut().enumerate() {
            let d = media::vp8_descriptor(&r.payload).unwrap();
            if k > 0 && d.start {
                p = p.next(starts_keyframe(r));
            }
            write_numbers(r, p);
        }
        out
    }

    #[test]
    fn vp8_numbering_follows_an_sfu_that_renumbers_and_catches_every_jump() {
        let layers = layers_numbered(
            30,
            10,
            [Some(picture(100, 10, 3)), Some(picture(32_000, 200, 30))],
        );
        let lists: Vec<&[Sent]> = layers.iter().map(Vec::as_slice).collect();
        // Up to layer 1 at frame 10, down again at 20, forwarded as they were numbered: byte
        // exact, and the numbers jump at the first switch.
        let got = forward(&layers, |f| usize::from((10..20).contains(&f)));
        let t = layered(&lists, &got).unwrap();
        let up = t.switches[1].index;
        let e = vp8_numbering(&got).unwrap_err();
        assert!(
            e.starts_with(&format!("packet {up} (keyframe): PictureID 32010 ")),
            "{e}"
        );
        assert!(
            e.contains("after PictureID 109 TL0PICIDX 19 KEYIDX 3, PictureID 110 TL0PICIDX 20 "),
            "{e}"
        );
        // On one layer alone they are continuous as sent.
        let alone = forward(&layers, |_| 1);
        assert_eq!(vp8_numbering(&alone), Ok(30));
        // Renumbered to continue across both switches (15-bit and KEYIDX wrapping on the way):
        // continuous, and still byte-exact but for the numbers.
        let fixed = renumber(&got, picture(0x7ffe, 254, 30));
        assert_eq!(vp8_numbering(&fixed), Ok(30));
        assert!(layered(&lists, &fixed).is_ok());
        assert_eq!(
            exact(&layers[1], &renumber(&alone, picture(5, 5, 5))),
            Ok(0)
        );
        let sent: Vec<Sent> = layers[1].clone();
        assert_eq!(
            coverage(&sent, &renumber(&alone, picture(5, 5, 5))).corrupt,
            0
        );

        // Every kind of break in the numbers is named with its packet.
        let frame_start = |got: &[Received], from: usize, key: bool| {
            (from..got.len())
                .find(|&k| {
                    media::vp8_descriptor(&got[k].payload).unwrap().start
                        && starts_keyframe(&got[k]) == key
                })
                .unwrap()
        };
        let k = frame_start(&fixed, 3, false);
        let p = media::vp8_descriptor(&fixed[k].payload)
            .unwrap()
            .picture()
            .unwrap();
        for (what, bad) in [
            (
                "a skipped PictureID",
                picture((p.picture_id + 1) & 0x7fff, p.tl0_pic_idx, p.key_idx),
            ),
            (
                "a TL0PICIDX not one more",
                picture(p.picture_id, p.tl0_pic_idx.wrapping_add(1), p.key_idx),
            ),
            (
                "KEYIDX moved on a delta frame",
                picture(p.picture_id, p.tl0_pic_idx, (p.key_idx + 1) & 0x1f),
            ),
        ] {
            let mut broken = fixed.clone();
            write_numbers(&mut broken[k], bad);
            let e = vp8_numbering(&broken).unwrap_err();
            assert!(
                e.starts_with(&format!("packet {k} (frame start): {}", numbers(bad))),
                "{what}: {e}"
            );
        }
        // A packet in the middle of a frame with other numbers than its frame's.
        let mut broken = fixed.clone();
        write_numbers(
            &mut broken[k + 1],
            picture(p.picture_id, p.tl0_pic_idx, p.key_idx ^ 1),
        );
        assert!(!media::vp8_descriptor(&broken[k + 1].payload).unwrap().start);
        let e = vp8_numbering(&broken).unwrap_err();
        assert!(e.starts_with(&format!("packet {}: ", k + 1)), "{e}");
        // A keyframe may move KEYIDX on, anywhere.
        let key = frame_start(&fixed, 1, true);
        let mut moved = fixed.clone();
        for r in &mut moved[key..] {
            let q = media::vp8_descriptor(&r.payload)
                .unwrap()
                .picture()
                .unwrap();
            write_numbers(
                r,
                picture(q.picture_id, q.tl0_pic_idx, (q.key_idx + 7) & 0x1f),
            );
        }
        assert_eq!(vp8_numbering(&moved), Ok(30));
        // A payload without the numbers.
        let plain = forward(&two_layers(3, 10), |_| 0);
        assert_eq!(
            vp8_numbering(&plain),
            Err("packet 0: no PictureID, TL0PICIDX and KEYIDX".into())
        );
    }

    #[test]
    fn payloads_may_differ_only_in_vp8_picture_numbers() {
        let layers = layers_numbered(12, 10, [Some(picture(100, 10, 3)), None]);
        let lists: Vec<&[Sent]> = layers.iter().map(Vec::as_slice).collect();
        let good = renumber(&forward(&layers, |_| 0), picture(7, 7, 7));
        assert!(layered(&lists, &good).is_ok());
        assert_eq!(exact(&layers[0], &good), Ok(0));
        // Any other descriptor bit: the flags, the M bit, TID and Y, S.
        for (byte, bit) in [
            (1, 0x10),
            (1, 0x01),
            (2, 0x80),
            (5, 0x80),
            (5, 0x20),
            (0, 0x10),
        ] {
            let mut bad = good.clone();
            let mut bytes = bad[4].payload.to_vec();
            bytes[byte] ^= bit;
            bad[4].payload = bytes.into();
            assert!(exact(&layers[0], &bad).is_err(), "byte {byte} bit {bit:#x}");
            assert!(layered(&lists, &bad).is_err(), "byte {byte} bit {bit:#x}");
            assert_eq!(coverage(&layers[0], &bad).corrupt, 1);
        }
        // The same byte positions of a payload without the numbers, and of audio, are compared.
        let plain = forward(&two_layers(2, 10), |_| 0);
        let mut bytes = plain[0].payload.to_vec();
        bytes[3] ^= 1;
        assert!(!same_payload(&plain[0].payload, &bytes));
        let audio = audio_payload(1, 1, 80);
        let mut bytes = audio.clone();
        bytes[3] ^= 1;
        assert!(audio[0] & 0x80 != 0 && !same_payload(&audio, &bytes));
    }
}
