//! Statistics the viewers keep: sequence accounting (loss, reordering, duplicates across the
//! 16-bit wrap of RTP sequence numbers) and percentiles of hdrhistograms.

use hdrhistogram::Histogram;

use crate::summary::{FirstFrames, Percentiles};

/// Sequence numbers remembered for duplicate detection.
const WINDOW: i64 = 1024;

/// Loss, reordering and duplicates of one RTP stream, from its 16-bit sequence numbers.
///
/// Expected packets are the span from the lowest to the highest (extended) sequence number
/// seen; lost = expected - received. A packet older than the highest is a reorder unless it was
/// already seen (a duplicate, not counted as received).
#[derive(Debug, Clone)]
pub struct SeqTracker {
    /// Lowest and highest extended sequence numbers seen.
    base: i64,
    highest: i64,
    /// Which of the last `WINDOW` sequence numbers arrived.
    seen: [u64; (WINDOW / 64) as usize],
    started: bool,
}

/// What one packet did to the counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SeqDelta {
    /// Growth of the expected count.
    pub expected: u64,
    /// 1 if the packet counts as received.
    pub received: u64,
    /// 1 if it came after a later one.
    pub reordered: u64,
    /// 1 if it was seen before.
    pub duplicate: u64,
}

impl Default for SeqTracker {
    fn default() -> Self {
        Self::new()
    }
}

impl SeqTracker {
    /// A tracker that has seen nothing.
    pub fn new() -> Self {
        SeqTracker {
            base: 0,
            highest: 0,
            seen: [0; (WINDOW / 64) as usize],
            started: false,
        }
    }

    /// Account one packet with RTP sequence number `seq`.
    pub fn on_packet(&mut self, seq: u16) -> SeqDelta {
        if !self.started {
            self.started = true;
            self.base = i64::from(seq);
            self.highest = self.base;
            self.mark(self.base);
            return SeqDelta {
                expected: 1,
                received: 1,
                ..SeqDelta::default()
            };
        }
        let delta = i64::from(seq.wrapping_sub(self.highest as u16) as i16);
        let ext = self.highest + delta;
        if ext > self.highest {
            for skipped in (self.highest + 1).max(ext - WINDOW + 1)..ext {
                self.unmark(skipped);
            }
            self.highest = ext;
            self.mark(ext);
            return SeqDelta {
                expected: delta as u64,
                received: 1,
                ..SeqDelta::default()
            };
        }
        if ext == self.highest
            || (self.highest - ext < WINDOW && ext >= self.base && self.is_marked(ext))
        {
            return SeqDelta {
                duplicate: 1,
                ..SeqDelta::default()
            };
        }
        let mut out = SeqDelta {
            received: 1,
            reordered: 1,
            ..SeqDelta::default()
        };
        if ext < self.base {
            out.expected = (self.base - ext) as u64;
            self.base = ext;
        }
        if self.highest - ext < WINDOW {
            self.mark(ext);
        }
        out
    }

    /// Packets expected so far (highest - lowest + 1).
    #[cfg(test)]
    pub fn expected(&self) -> u64 {
        if self.started {
            (self.highest - self.base + 1) as u64
        } else {
            0
        }
    }

    fn slot(ext: i64) -> (usize, u64) {
        let i = ext.rem_euclid(WINDOW) as usize;
        (i / 64, 1 << (i % 64))
    }

    fn mark(&mut self, ext: i64) {
        let (word, bit) = Self::slot(ext);
        self.seen[word] |= bit;
    }

    fn unmark(&mut self, ext: i64) {
        let (word, bit) = Self::slot(ext);
        self.seen[word] &= !bit;
    }

    fn is_marked(&self, ext: i64) -> bool {
        let (word, bit) = Self::slot(ext);
        self.seen[word] & bit != 0
    }
}

/// Loss in percent of expected; 0 when nothing was expected.
pub fn loss_pct(expected: u64, received: u64) -> f64 {
    if expected == 0 {
        0.0
    } else {
        expected.saturating_sub(received) as f64 * 100.0 / expected as f64
    }
}

/// A histogram for values in microseconds, 1 µs .. 1 h, 3 significant digits.
pub fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 3_600_000_000, 3).expect("valid histogram bounds")
}

/// Percentiles of a histogram of microseconds, in milliseconds.
pub fn percentiles_ms(h: &Histogram<u64>) -> Percentiles {
    if h.is_empty() {
        return Percentiles::default();
    }
    let ms = |us: u64| us as f64 / 1000.0;
    Percentiles {
        count: h.len(),
        p50: ms(h.value_at_quantile(0.50)),
        p95: ms(h.value_at_quantile(0.95)),
        p99: ms(h.value_at_quantile(0.99)),
        p999: ms(h.value_at_quantile(0.999)),
        max: ms(h.max()),
    }
}

/// Up to `buckets` (upper bound ms, count) pairs covering the histogram, for plotting.
pub fn buckets_ms(h: &Histogram<u64>, buckets: usize) -> Vec<(f64, u64)> {
    if h.is_empty() || buckets == 0 {
        return Vec::new();
    }
    let (low, high) = (h.min(), h.max());
    let step = ((high - low) / buckets as u64).max(1);
    h.iter_linear(step)
        .filter(|v| v.count_since_last_iteration() > 0 || v.value_iterated_to() <= high)
        .map(|v| {
            (
                v.value_iterated_to() as f64 / 1000.0,
                v.count_since_last_iteration(),
            )
        })
        .skip_while(|&(_, c)| c == 0)
        .collect()
}

/// The empirical CDF of `samples_ms` as (ms, fraction) points, at most `points` of them.
pub fn cdf(samples_ms: &[f64], points: usize) -> Vec<(f64, f64)> {
    let mut sorted = samples_ms.to_vec();
    sorted.sort_by(f64::total_cmp);
    let n = sorted.len();
    if n == 0 || points == 0 {
        return Vec::new();
    }
    let step = n.div_ceil(points).max(1);
    let mut out: Vec<(f64, f64)> = (0..n)
        .step_by(step)
        .map(|i| (sorted[i], (i + 1) as f64 / n as f64))
        .collect();
    if out.last().is_some_and(|&(_, f)| f < 1.0) {
        out.push((sorted[n - 1], 1.0));
    }
    out
}

/// Times to first frame (ms) of the viewers that got one, of `expected` viewers that should
/// have: percentiles (nearest rank), the CDF and how many are missing.
pub fn first_frames(samples_ms: &[f64], expected: usize) -> FirstFrames {
    let mut sorted = samples_ms.to_vec();
    sorted.sort_by(f64::total_cmp);
    let n = sorted.len();
    let missing = expected.saturating_sub(n) as u64;
    if n == 0 {
        return FirstFrames {
            missing,
            ..FirstFrames::default()
        };
    }
    let at = |q: f64| nearest_rank(&sorted, q);
    FirstFrames {
        count: n as u64,
        missing,
        p10: at(0.10),
        p50: at(0.50),
        p90: at(0.90),
        p95: at(0.95),
        p99: at(0.99),
        max: sorted[n - 1],
        cdf: cdf(&sorted, 100),
    }
}

/// The `q` quantile of sorted, non-empty `sorted` by nearest rank.
fn nearest_rank(sorted: &[f64], q: f64) -> f64 {
    let n = sorted.len();
    sorted[((q * n as f64).ceil() as usize).clamp(1, n) - 1]
}

/// Percentiles of plain samples (nearest rank), in their unit.
pub fn percentiles_of(samples: &[f64]) -> Percentiles {
    let mut sorted = samples.to_vec();
    sorted.sort_by(f64::total_cmp);
    let n = sorted.len();
    if n == 0 {
        return Percentiles::default();
    }
    let at = |q: f64| nearest_rank(&sorted, q);
    Percentiles {
        count: n as u64,
        p50: at(0.50),
        p95: at(0.95),
        p99: at(0.99),
        p999: at(0.999),
        max: sorted[n - 1],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(seqs: &[u16]) -> (SeqDelta, SeqTracker) {
        let mut t = SeqTracker::new();
        let mut total = SeqDelta::default();
        for &s in seqs {
            let d = t.on_packet(s);
            total.expected += d.expected;
            total.received += d.received;
            total.reordered += d.reordered;
            total.duplicate += d.duplicate;
        }
        assert_eq!(total.expected, t.expected());
        (total, t)
    }

    #[test]
    fn in_order_no_loss() {
        let seqs: Vec<u16> = (100..200).collect();
        let (d, _) = run(&seqs);
        assert_eq!(
            (d.expected, d.received, d.reordered, d.duplicate),
            (100, 100, 0, 0)
        );
    }

    #[test]
    fn gaps_are_loss_across_the_wrap() {
        // 65530 .. 65535, 0 .. 9 without 65534 and 3: 16 expected, 14 received.
        let seqs: Vec<u16> = (65530u16..=65535)
            .chain(0..10)
            .filter(|&s| s != 65534 && s != 3)
            .collect();
        let (d, _) = run(&seqs);
        assert_eq!(d.expected, 16);
        assert_eq!(d.received, 14);
        assert!((loss_pct(d.expected, d.received) - 12.5).abs() < 1e-9);
        assert_eq!(d.reordered + d.duplicate, 0);
    }

    #[test]
    fn reorders_and_duplicates_across_the_wrap() {
        let (d, _) = run(&[65534, 0, 65535, 1, 1, 65535, 2]);
        assert_eq!(d.expected, 5);
        assert_eq!(d.received, 5);
        assert_eq!(d.reordered, 1);
        assert_eq!(d.duplicate, 2);
    }

    #[test]
    fn reorder_before_the_first_extends_the_span() {
        let (d, _) = run(&[10, 11, 9, 12]);
        assert_eq!((d.expected, d.received, d.reordered), (4, 4, 1));
    }

    #[test]
    fn many_wraps() {
        let mut t = SeqTracker::new();
        let mut received = 0;
        for i in 0..200_000u32 {
            if i % 10 != 0 {
                t.on_packet(i as u16);
                received += 1;
            }
        }
        // First received is 1, last 199_999.
        assert_eq!(t.expected(), 199_999);
        assert_eq!(t.expected() - received, 19_999);
    }

    #[test]
    fn percentiles() {
        let mut h = histogram();
        for v in 1..=1000u64 {
            h.record(v * 1000).unwrap();
        }
        let p = percentiles_ms(&h);
        assert_eq!(p.count, 1000);
        assert!((p.p50 - 500.0).abs() < 1.0, "{p:?}");
        assert!((p.p99 - 990.0).abs() < 1.5, "{p:?}");
        assert!((p.max - 1000.0).abs() < 1.5, "{p:?}");
        assert_eq!(percentiles_ms(&histogram()), Percentiles::default());

        let samples: Vec<f64> = (1..=100).map(f64::from).collect();
        let p = percentiles_of(&samples);
        assert_eq!((p.p50, p.p95, p.p99, p.max), (50.0, 95.0, 99.0, 100.0));
        assert_eq!(percentiles_of(&[]), Percentiles::default());

        let c = cdf(&samples, 10);
        assert_eq!(c.last(), Some(&(100.0, 1.0)));
        assert!(c.windows(2).all(|w| w[0].0 <= w[1].0 && w[0].1 <= w[1].1));
        let b = buckets_ms(&h, 20);
        assert_eq!(b.iter().map(|b| b.1).sum::<u64>(), 1000);
    }

    #[test]
    fn first_frames_cdf() {
        // 1..=200 ms, shuffled; 10 more viewers connected without a first frame.
        let samples: Vec<f64> = (1..=200).map(|i| f64::from((i * 37) % 200 + 1)).collect();
        let f = first_frames(&samples, 210);
        assert_eq!((f.count, f.missing), (200, 10));
        assert_eq!(
            (f.p10, f.p50, f.p90, f.p95, f.p99, f.max),
            (20.0, 100.0, 180.0, 190.0, 198.0, 200.0)
        );
        assert_eq!(f.cdf.first(), Some(&(1.0, 0.005)));
        assert_eq!(f.cdf.last(), Some(&(200.0, 1.0)));
        assert!(f.cdf.len() <= 101);
        assert!(
            f.cdf
                .windows(2)
                .all(|w| w[0].0 <= w[1].0 && w[0].1 < w[1].1)
        );
        // One sample is every percentile; none leaves only the missing count.
        let one = first_frames(&[42.0], 1);
        assert_eq!(
            (one.p10, one.p99, one.max, one.missing),
            (42.0, 42.0, 42.0, 0)
        );
        let none = first_frames(&[], 3);
        assert_eq!((none.count, none.missing, none.p50), (0, 3, 0.0));
        assert!(none.cdf.is_empty());
    }
}
