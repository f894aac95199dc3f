//! A stream's video layers on one shard: which rid each layer index is, what each carries
//! (bitrate measured over a window, resolution from its keyframes), and their order, best
//! first. Every shard with viewers of the stream measures the packets it sees (the publisher's
//! shard relays all of them), so all shards agree without talking.

use std::time::{Duration, Instant};

use crate::layers::{Candidate, LayerInfo, MAX_LAYERS};

/// How long a bitrate measurement window lasts.
const WINDOW: Duration = Duration::from_secs(1);

/// A layer with no packet for this long is inactive (an encoder that stopped sending it).
const INACTIVE_AFTER: Duration = Duration::from_secs(2);

/// One layer's measurements.
#[derive(Debug, Clone, Copy, Default)]
struct Layer {
    bytes: u64,
    window_start: Option<Instant>,
    bitrate_bps: u64,
    resolution: Option<(u32, u32)>,
    last_packet: Option<Instant>,
    /// A keyframe arrived since the publisher started: a viewer moved here gets a picture.
    keyframes: bool,
}

/// A stream's layers as a viewer's choice sees them, best first, without allocating.
#[derive(Debug, Clone, Copy)]
pub(super) struct Candidates {
    items: [Candidate; MAX_LAYERS],
    len: usize,
}

impl Candidates {
    pub(super) fn as_slice(&self) -> &[Candidate] {
        &self.items[..self.len]
    }
}

/// The layers of one stream's video.
#[derive(Debug, Clone, Default)]
pub(super) struct StreamLayers {
    rids: Vec<String>,
    layers: [Layer; MAX_LAYERS],
    /// Layer indexes, best first; recomputed when a measurement changes the order.
    order: Vec<u8>,
}

impl StreamLayers {
    /// Layers named `rids` (empty: one layer without a name).
    pub(super) fn new(rids: &[String]) -> Self {
        let count = rids.len().clamp(1, MAX_LAYERS);
        StreamLayers {
            rids: rids.iter().take(MAX_LAYERS).cloned().collect(),
            layers: Default::default(),
            order: (0..count as u8).collect(),
        }
    }

    /// The publisher (a new one, after a restart) announces `rids`: measurements restart.
    pub(super) fn reset(&mut self, rids: &[String]) {
        *self = StreamLayers::new(rids);
    }

    /// How many layers.
    pub(super) fn count(&self) -> usize {
        self.order.len()
    }

    /// The index of the layer named `rid`.
    pub(super) fn index_of(&self, rid: &str) -> Option<u8> {
        self.rids.iter().position(|r| r == rid).map(|i| i as u8)
    }

    /// A packet of `bytes` arrived on layer `index`.
    pub(super) fn packet(&mut self, index: u8, bytes: usize, now: Instant) {
        let Some(layer) = self.layers.get_mut(usize::from(index)) else {
            return;
        };
        layer.last_packet = Some(now);
        layer.bytes += bytes as u64;
        let start = *layer.window_start.get_or_insert(now);
        let elapsed = now.saturating_duration_since(start);
        if elapsed >= WINDOW {
            layer.bitrate_bps = layer.bytes * 8 * 1000 / (elapsed.as_millis() as u64).max(1);
            layer.bytes = 0;
            layer.window_start = Some(now);
            self.rank();
        }
    }

    /// A keyframe started on layer `index`.
    pub(super) fn keyframe(&mut self, index: u8, now: Instant) {
        if let Some(layer) = self.layers.get_mut(usize::from(index)) {
            layer.keyframes = true;
            layer.last_packet = Some(now);
        }
    }

    /// Layer `index`'s latest keyframe is `width` × `height`. True when it had another
    /// resolution before (a publisher that changed it mid-stream).
    pub(super) fn resolution(&mut self, index: u8, width: u32, height: u32) -> bool {
        let Some(layer) = self.layers.get_mut(usize::from(index)) else {
            return false;
        };
        if layer.resolution == Some((width, height)) {
            return false;
        }
        let changed = layer.resolution.is_some();
        layer.resolution = Some((width, height));
        self.rank();
        changed
    }

    /// The layers best first, as a viewer's choice sees them: usable when active and a
    /// keyframe came.
    pub(super) fn candidates(&self, now: Instant) -> Candidates {
        let mut out = Candidates {
            items: [Candidate {
                index: 0,
                bitrate_bps: 0,
                usable: false,
            }; MAX_LAYERS],
            len: 0,
        };
        for &i in &self.order {
            let l = &self.layers[usize::from(i)];
            out.items[out.len] = Candidate {
                index: i,
                bitrate_bps: l.bitrate_bps,
                usable: l.keyframes && self.is_active(i, now),
            };
            out.len += 1;
        }
        out
    }

    /// The best usable layer at most `max_height` tall; else the smallest usable one; else the
    /// smallest announced (0 without simulcast).
    pub(super) fn best_within(&self, max_height: u32, now: Instant) -> u8 {
        let usable = |i: u8| {
            let l = &self.layers[usize::from(i)];
            l.keyframes && self.is_active(i, now)
        };
        let fits = self.order.iter().copied().find(|&i| {
            usable(i)
                && self.layers[usize::from(i)]
                    .resolution
                    .is_some_and(|(_, h)| h <= max_height)
        });
        fits.or_else(|| self.order.iter().rev().copied().find(|&i| usable(i)))
            .or_else(|| self.order.last().copied())
            .unwrap_or(0)
    }

    /// Layer indexes, best first.
    #[cfg(test)]
    pub(super) fn order(&self) -> &[u8] {
        &self.order
    }

    /// Layer `index`'s measured bitrate (0 before the first window ends).
    #[cfg(test)]
    pub(super) fn bitrate(&self, index: u8) -> u64 {
        self.layers
            .get(usize::from(index))
            .map_or(0, |l| l.bitrate_bps)
    }

    /// Has layer `index` carried packets lately?
    pub(super) fn is_active(&self, index: u8, now: Instant) -> bool {
        self.layers
            .get(usize::from(index))
            .and_then(|l| l.last_packet)
            .is_some_and(|at| now.saturating_duration_since(at) < INACTIVE_AFTER)
    }

    /// What a viewer or the control plane sees, best first.
    pub(super) fn info(&self, now: Instant) -> Vec<LayerInfo> {
        self.order
            .iter()
            .map(|&i| {
                let l = &self.layers[usize::from(i)];
                LayerInfo {
                    rid: self.rids.get(usize::from(i)).cloned().unwrap_or_default(),
                    resolution: l.resolution,
                    bitrate_bps: l.bitrate_bps,
                    active: self.is_active(i, now),
                }
            })
            .collect()
    }

    /// Order by pixels where every active layer's resolution is known, else by bitrate; ties
    /// keep the announced order.
    fn rank(&mut self) {
        let layers = &self.layers;
        let by_pixels = self.order.iter().all(|&i| {
            let l = &layers[usize::from(i)];
            l.resolution.is_some() || l.last_packet.is_none()
        });
        self.order.sort_by_key(|&i| {
            let l = &layers[usize::from(i)];
            let size = if by_pixels {
                l.resolution.map_or(0, |(w, h)| u64::from(w) * u64::from(h))
            } else {
                l.bitrate_bps
            };
            (std::cmp::Reverse(size), i)
        });
    }
}

#[cfg(test)]
#[allow(
    clippy::disallowed_methods,
    reason = "a test picks its own base instant"
)]
mod tests {
    use super::*;

    fn rids(names: &[&str]) -> Vec<String> {
        names.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn ordered_by_what_they_carry_not_by_name() {
        let t0 = Instant::now();
        // Browser naming: q is the smallest, f the biggest; announced q, h, f.
        let mut l = StreamLayers::new(&rids(&["q", "h", "f"]));
        assert_eq!(l.count(), 3);
        assert_eq!(l.index_of("f"), Some(2));
        for ms in 0..=1000u64 {
            let now = t0 + Duration::from_millis(ms);
            l.packet(0, 20, now);
            l.packet(1, 80, now);
            l.packet(2, 300, now);
        }
        assert_eq!(
            l.order(),
            [2, 1, 0],
            "by bitrate while resolutions are unknown"
        );
        assert!((2_300_000..2_500_000).contains(&l.bitrate(2)));
        // Resolutions known for all: they decide, whatever the bitrates.
        l.resolution(0, 1280, 720);
        l.resolution(1, 640, 360);
        assert_eq!(l.order(), [2, 1, 0], "one resolution still unknown");
        l.resolution(2, 320, 180);
        assert_eq!(l.order(), [0, 1, 2]);
        let info = l.info(t0 + Duration::from_millis(1000));
        assert_eq!(info[0].rid, "q");
        assert_eq!(info[0].resolution, Some((1280, 720)));
        assert!(info.iter().all(|i| i.active));
        assert!(
            l.info(t0 + Duration::from_secs(5))
                .iter()
                .all(|i| !i.active)
        );
    }

    #[test]
    fn one_unnamed_layer_without_simulcast() {
        let l = StreamLayers::new(&[]);
        assert_eq!((l.count(), l.order()), (1, &[0u8][..]));
        assert_eq!(l.index_of(""), None);
        assert_eq!(l.info(Instant::now())[0].rid, "");
    }
}
