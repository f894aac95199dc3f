//! Simulcast layers (RFC 8853): what a publisher's video layers carry, as viewers and the
//! control plane see them.
//!
//! A publisher announces its layers by rid in its offer ([`crate::Published::layers`]); their
//! order there means nothing (OBS's rid `0` is its biggest, a browser's `q` its smallest).
//! The shard orders them by what they carry: resolution read from their keyframes, else their
//! measured bitrate.

use std::time::{Duration, Instant};

/// At most this many layers per publisher (OBS sends 1–4, browsers 1–3); rids past it are
/// not answered.
pub const MAX_LAYERS: usize = 4;

/// One video layer of a stream, as [`crate::Command::StreamLayers`] reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LayerInfo {
    /// The rid the publisher announced (empty for a publisher without simulcast).
    pub rid: String,
    /// Width and height read from the layer's latest keyframe, when its codec tells.
    pub resolution: Option<(u32, u32)>,
    /// Bits per second over the last measurement window.
    pub bitrate_bps: u64,
    /// Packets arrived on it lately (a layer the encoder dropped, or never sent, is not).
    pub active: bool,
}

/// Bits per second kept for audio and RTCP out of a viewer's estimate.
const AUDIO_ALLOWANCE_BPS: u64 = 64_000;
/// Video gets this share (percent) of what is left: the estimate is a guess, a queue builds
/// before it drops.
const VIDEO_SHARE_PERCENT: u64 = 90;
/// Going up needs this much more (percent) than the layer's bitrate, ...
const UP_MARGIN_PERCENT: u64 = 115;
/// ... held this long, ...
const UP_AFTER: Duration = Duration::from_secs(1);
/// ... or this long after an estimate that jumped to more than [`JUMP_FACTOR`] times the one
/// before, ...
///
/// str0m reports the mean of its distinct estimates over the last 3 s. One probe on a path with
/// a token-bucket shaper can measure several times the path's rate, and that outlier lifts the
/// reported mean for 3 s while the path carries no more than before (seen in the Chromium
/// simulcast test: 423 kbit/s, then 1.67 Mbit/s for a 400 kbit/s link). A mean that more than
/// doubles in one report is such an outlier's mark: going up waits until it has left str0m's
/// window. (Holding every move up that long kept a viewer on a loaded machine from ever going
/// up while its publisher's top layer was still ramping up.)
const UP_AFTER_JUMP: Duration = Duration::from_millis(3500);
/// See [`UP_AFTER_JUMP`].
const JUMP_FACTOR: u64 = 2;
/// ... and not this soon after going down.
const UP_HOLD_AFTER_DOWN: Duration = Duration::from_secs(4);

/// A layer as a viewer's choice sees it (given best first).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Candidate {
    /// The layer's index (its rid's place in the offer).
    pub index: u8,
    /// Its measured bitrate (0: not measured yet).
    pub bitrate_bps: u64,
    /// Active and has sent a keyframe: a viewer switched to it gets a picture.
    pub usable: bool,
}

/// One viewer's choice of layer from its bandwidth estimate: the best layer that fits, down at
/// once when the current one no longer fits, up only after the estimate held a better one's
/// bitrate with margin for a while, and not soon after going down.
#[derive(Debug, Clone, Default)]
pub struct LayerChoice {
    estimate: Option<u64>,
    /// When the estimate last jumped ([`UP_AFTER_JUMP`]).
    jumped_at: Option<Instant>,
    last_down: Option<Instant>,
    up_since: Option<Instant>,
}

impl LayerChoice {
    /// The viewer's path carries `bps` (from its estimator), as reported at `now`.
    pub fn estimate(&mut self, bps: u64, now: Instant) {
        if self
            .estimate
            .is_some_and(|last| bps > last.saturating_mul(JUMP_FACTOR))
        {
            self.jumped_at = Some(now);
        }
        self.estimate = Some(bps);
    }

    /// The latest estimate, or the assumed one before any.
    pub fn bandwidth(&self) -> u64 {
        self.estimate.unwrap_or(crate::peer::INITIAL_ESTIMATE_BPS)
    }

    /// The layer to be on, given the layers best first and the one the viewer is on.
    /// `current` stays when no layer is usable.
    pub fn choose(
        &mut self,
        candidates: &[Candidate],
        current: Option<u8>,
        now: Instant,
    ) -> Option<u8> {
        let mut buf = [Candidate {
            index: 0,
            bitrate_bps: 0,
            usable: false,
        }; MAX_LAYERS];
        let mut n = 0;
        for c in candidates.iter().filter(|c| c.usable).take(MAX_LAYERS) {
            buf[n] = *c;
            n += 1;
        }
        let usable = &buf[..n];
        let Some(smallest) = usable.last() else {
            return current;
        };
        let budget =
            self.bandwidth().saturating_sub(AUDIO_ALLOWANCE_BPS) * VIDEO_SHARE_PERCENT / 100;
        let fit = usable
            .iter()
            .position(|c| c.bitrate_bps <= budget)
            .unwrap_or(usable.len() - 1);
        let Some(at) = current.and_then(|c| usable.iter().position(|u| u.index == c)) else {
            // Nothing yet, or the current layer stopped: the best that fits, now.
            self.up_since = None;
            return Some(usable.get(fit).unwrap_or(smallest).index);
        };
        if fit > at {
            self.last_down = Some(now);
            self.up_since = None;
            return Some(usable[fit].index);
        }
        let up = (fit..at).find(|&i| usable[i].bitrate_bps * UP_MARGIN_PERCENT / 100 <= budget);
        let held_down = self
            .last_down
            .is_some_and(|d| now.saturating_duration_since(d) < UP_HOLD_AFTER_DOWN);
        // The estimate's hold counts from when it first fits, also while going up is held back
        // after a move down: the two waits overlap.
        let Some(i) = up else {
            self.up_since = None;
            return current;
        };
        let since = *self.up_since.get_or_insert(now);
        let after_jump = self
            .jumped_at
            .is_some_and(|j| now.saturating_duration_since(j) < UP_AFTER_JUMP);
        if held_down || after_jump || now.saturating_duration_since(since) < UP_AFTER {
            return current;
        }
        self.up_since = None;
        Some(usable[i].index)
    }

    /// What the viewer's estimator should sustain and probe towards, bits per second. It probes
    /// towards what going up to the best layer takes. Once the estimate is within reach of the
    /// next better layer (two thirds of what going up to it takes), padding fills the path up
    /// to that, so the estimate can grow past what the current layer sends; further away (a
    /// path that cannot carry it) it would only crowd out the media.
    pub fn targets(&self, candidates: &[Candidate], current: Option<u8>) -> (u64, u64) {
        let mut usable = candidates.iter().filter(|c| c.usable);
        let best = usable.clone().next().map_or(0, |c| c.bitrate_bps);
        let next_up = current
            .and_then(|c| usable.clone().position(|u| u.index == c))
            .and_then(|at| at.checked_sub(1))
            .and_then(|i| usable.nth(i))
            .map_or(0, |c| c.bitrate_bps);
        let minimum = match up_needs(next_up) {
            need if self.bandwidth() * 3 >= need * 2 => need,
            _ => 0,
        };
        (minimum, up_needs(best))
    }
}

/// The estimate on which a viewer goes up to a layer of `bitrate` (0 for none).
fn up_needs(bitrate: u64) -> u64 {
    if bitrate == 0 {
        return 0;
    }
    bitrate * UP_MARGIN_PERCENT / VIDEO_SHARE_PERCENT + AUDIO_ALLOWANCE_BPS
}

#[cfg(test)]
#[allow(
    clippy::disallowed_methods,
    reason = "a test picks its own base instant"
)]
mod tests {
    use super::*;

    /// Three layers best first: index 2 = 2.5 Mbit/s, 1 = 600 kbit/s, 0 = 150 kbit/s.
    fn three() -> Vec<Candidate> {
        [(2, 2_500_000), (1, 600_000), (0, 150_000)]
            .map(|(index, bitrate_bps)| Candidate {
                index,
                bitrate_bps,
                usable: true,
            })
            .to_vec()
    }

    #[test]
    fn best_that_fits_then_down_at_once_and_up_with_hysteresis() {
        let t0 = Instant::now();
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        let layers = three();
        let mut c = LayerChoice::default();
        // Before any estimate: the assumed 1 Mbit/s fits the middle layer.
        assert_eq!(c.choose(&layers, None, t0), Some(1));
        c.estimate(5_000_000, t0);
        // Up only after the estimate held for a second.
        assert_eq!(c.choose(&layers, Some(1), at(0)), Some(1));
        assert_eq!(c.choose(&layers, Some(1), at(500)), Some(1));
        assert_eq!(c.choose(&layers, Some(1), at(1000)), Some(2));
        // Congestion: down at once, to what fits.
        c.estimate(400_000, at(1100));
        assert_eq!(c.choose(&layers, Some(2), at(1100)), Some(0));
        // Recovers at once, in a jump (more than twice the last estimate): the hold counts from
        // now, going up waits 4 s after going down and 3.5 s after the jump.
        c.estimate(5_000_000, at(2200));
        assert_eq!(c.choose(&layers, Some(0), at(2200)), Some(0));
        assert_eq!(
            c.choose(&layers, Some(0), at(5100)),
            Some(0),
            "4 s after going down, 2.9 s after the jump"
        );
        assert_eq!(c.choose(&layers, Some(0), at(5700)), Some(2));
        // A probe's outlier in str0m's mean: a jump that falls back within 3 s moves nothing.
        c.estimate(400_000, at(5800));
        assert_eq!(c.choose(&layers, Some(2), at(5800)), Some(0));
        c.estimate(1_700_000, at(12_000));
        assert_eq!(c.choose(&layers, Some(0), at(12_000)), Some(0));
        assert_eq!(c.choose(&layers, Some(0), at(14_900)), Some(0));
        c.estimate(400_000, at(15_000));
        assert_eq!(c.choose(&layers, Some(0), at(15_000)), Some(0));
        // A rise in steps (none more than twice the last) goes up after a second.
        c.estimate(600_000, at(20_000));
        c.estimate(1_000_000, at(20_100));
        assert_eq!(c.choose(&layers, Some(0), at(20_100)), Some(0));
        assert_eq!(c.choose(&layers, Some(0), at(21_100)), Some(1));
        // An estimate just above a layer's bitrate is not enough to go up to it.
        let mut c = LayerChoice::default();
        c.estimate(64_000 + 600_000 * 100 / 90 + 10_000, t0);
        assert_eq!(c.choose(&layers, Some(0), at(20_000)), Some(0));
        assert_eq!(c.choose(&layers, Some(0), at(30_000)), Some(0));
    }

    #[test]
    fn unusable_layers_are_never_chosen_and_leaving_one_is_immediate() {
        let t0 = Instant::now();
        let mut layers = three();
        layers[0].usable = false; // top layer without keyframes
        let mut c = LayerChoice::default();
        c.estimate(10_000_000, t0);
        assert_eq!(c.choose(&layers, None, t0), Some(1));
        assert_eq!(
            c.choose(&layers, Some(2), t0),
            Some(1),
            "off an unusable layer now"
        );
        let none: Vec<Candidate> = layers
            .iter()
            .map(|l| Candidate {
                usable: false,
                ..*l
            })
            .collect();
        assert_eq!(
            c.choose(&none, Some(2), t0),
            Some(2),
            "nothing usable: stay"
        );
        assert_eq!(c.choose(&none, None, t0), None);
        // The smallest when nothing fits.
        c.estimate(50_000, t0);
        assert_eq!(c.choose(&three(), Some(1), t0), Some(0));
    }

    #[test]
    fn targets_probe_towards_the_best_and_pad_towards_the_next_layer_within_reach() {
        let layers = three();
        let need = |b: u64| b * 115 / 90 + 64_000;
        let mut c = LayerChoice::default();
        // At the assumed 1 Mbit/s the middle layer (766 kbit/s to go up to it) is within reach.
        assert_eq!(
            c.targets(&layers, Some(0)),
            (need(600_000), need(2_500_000))
        );
        // On a 400 kbit/s path it is not: no padding, only probes.
        c.estimate(400_000, Instant::now());
        assert_eq!(c.targets(&layers, Some(0)), (0, need(2_500_000)));
        // Staying on the best layer is within what the estimator is steered to.
        c.estimate(need(2_500_000), Instant::now());
        assert_eq!(c.choose(&layers, Some(2), Instant::now()), Some(2));
        assert_eq!(c.targets(&layers, Some(2)), (0, need(2_500_000)));
        assert_eq!(c.targets(&[], None), (0, 0));
    }
}
