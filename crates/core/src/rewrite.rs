//! Sequence number and timestamp rewriting: each subscription presents one continuous RTP
//! stream to its viewer, whatever the source does (a first packet mid-stream, a publisher that
//! leaves and comes back with new SSRC, sequence numbers and timestamps).

use std::time::Instant;

/// Where a forwarded packet came from: a publisher session (its epoch) and its SSRC. A change of
/// source re-bases the rewriter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Source {
    /// The publisher's session (changes on a publisher restart).
    pub epoch: u64,
    /// The publisher's SSRC for this track.
    pub ssrc: u32,
}

/// Rewrites one source's (extended) sequence numbers and timestamps into one output stream.
#[derive(Debug, Clone)]
pub struct Rewriter {
    clock_rate: u32,
    mapping: Option<Mapping>,
    last_seq: u64,
    last_ts: u32,
    last_at: Option<Instant>,
}

#[derive(Debug, Clone, Copy)]
struct Mapping {
    source: Source,
    /// First input sequence number of this mapping; anything older is dropped.
    first_in: u64,
    seq_offset: u64,
    ts_offset: u32,
    /// Input timestamp of the latest frame mapped.
    last_in_ts: u32,
}

impl Rewriter {
    /// A rewriter whose output starts at `initial_seq` + 1 and `initial_ts`, for a codec with
    /// `clock_rate` Hz.
    pub fn new(clock_rate: u32, initial_seq: u16, initial_ts: u32) -> Self {
        Rewriter {
            clock_rate,
            mapping: None,
            last_seq: u64::from(initial_seq),
            last_ts: initial_ts,
            last_at: None,
        }
    }

    /// The codec's clock rate, Hz.
    pub fn clock_rate(&self) -> u32 {
        self.clock_rate
    }

    /// Has this rewriter forwarded anything yet?
    pub fn has_started(&self) -> bool {
        self.mapping.is_some()
    }

    /// Has this rewriter forwarded anything from `source` yet?
    pub fn follows(&self, source: Source) -> bool {
        self.mapping.is_some_and(|m| m.source == source)
    }

    /// Map one packet. `None` when the packet is older than where this mapping began (it was sent
    /// before the viewer's stream started on this source, so its place is taken).
    pub fn rewrite(
        &mut self,
        source: Source,
        seq: u64,
        ts: u32,
        now: Instant,
    ) -> Option<(u64, u32)> {
        let m = match self.mapping {
            Some(m) if m.source == source => m,
            _ => {
                // Re-base: continue one past the last output sequence number, and advance the
                // timestamp by the wall time since the last output packet (at least one tick)
                // so the viewer's jitter buffer sees time move forward.
                let next_seq = self.last_seq + 1;
                let next_ts = self.ts_after_last(now);
                let m = Mapping {
                    source,
                    first_in: seq,
                    seq_offset: next_seq.wrapping_sub(seq),
                    ts_offset: next_ts.wrapping_sub(ts),
                    last_in_ts: ts,
                };
                self.mapping = Some(m);
                m
            }
        };
        if seq < m.first_in {
            return None;
        }
        let out_seq = seq.wrapping_add(m.seq_offset);
        let out_ts = ts.wrapping_add(m.ts_offset);
        if out_seq > self.last_seq || self.last_at.is_none() {
            self.last_seq = out_seq;
            self.last_ts = out_ts;
            self.last_at = Some(now);
            if let Some(m) = self.mapping.as_mut() {
                m.last_in_ts = ts;
            }
        }
        Some((out_seq, out_ts))
    }

    /// Map one packet replayed faster than it was recorded (a cached keyframe and what
    /// followed it, sent to catch a viewer up): sequence numbers as [`Rewriter::rewrite`] maps
    /// them, but each new frame's timestamp is re-timed to the wall time since the previous
    /// output packet, so the viewer's jitter buffer sees timestamps advance with arrivals and
    /// plays the frames as fast as they come. Live packets after the replay continue from the
    /// last re-timed frame with their own spacing.
    pub fn rewrite_retimed(
        &mut self,
        source: Source,
        seq: u64,
        ts: u32,
        now: Instant,
    ) -> Option<(u64, u32)> {
        if self
            .mapping
            .is_some_and(|m| m.source == source && ts != m.last_in_ts && seq >= m.first_in)
        {
            let out_ts = self.ts_after_last(now);
            if let Some(m) = self.mapping.as_mut() {
                m.ts_offset = out_ts.wrapping_sub(ts);
            }
        }
        self.rewrite(source, seq, ts, now)
    }

    /// The last output timestamp advanced by the wall time since it went out (at least one
    /// tick, so the viewer's jitter buffer sees time move forward); the last one itself before
    /// anything went out.
    fn ts_after_last(&self, now: Instant) -> u32 {
        let Some(at) = self.last_at else {
            return self.last_ts;
        };
        let ms = now.saturating_duration_since(at).as_millis() as u64;
        let advance =
            ((ms * u64::from(self.clock_rate)) / 1000).clamp(1, u64::from(u32::MAX / 2)) as u32;
        self.last_ts.wrapping_add(advance)
    }
}

#[cfg(test)]
#[allow(
    clippy::disallowed_methods,
    reason = "a test picks its own base instant"
)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn continuous_across_restart() {
        let t0 = Instant::now();
        let mut r = Rewriter::new(90_000, 1000, 5000);
        let a = Source { epoch: 1, ssrc: 11 };
        assert_eq!(r.rewrite(a, 70_000, 100, t0), Some((1001, 5000)));
        assert_eq!(r.rewrite(a, 70_001, 3100, t0), Some((1002, 8000)));
        // Older than the start of the mapping: dropped.
        assert_eq!(r.rewrite(a, 69_999, 0, t0), None);
        // Publisher restarts 1 s later with new numbers.
        let b = Source { epoch: 2, ssrc: 22 };
        let t1 = t0 + Duration::from_secs(1);
        assert_eq!(r.rewrite(b, 5, 777, t1), Some((1003, 8000 + 90_000)));
        assert_eq!(r.rewrite(b, 6, 777 + 3000, t1), Some((1004, 8000 + 93_000)));
        assert!(r.follows(b) && !r.follows(a));
    }

    #[test]
    fn retransmission_keeps_its_place() {
        let t0 = Instant::now();
        let mut r = Rewriter::new(48_000, 0, 0);
        let a = Source { epoch: 1, ssrc: 1 };
        assert_eq!(r.rewrite(a, 10, 0, t0), Some((1, 0)));
        assert_eq!(r.rewrite(a, 12, 1920, t0), Some((3, 1920)));
        // 11 arrives late (repaired upstream) and fills its gap.
        assert_eq!(r.rewrite(a, 11, 960, t0), Some((2, 960)));
        assert_eq!(r.rewrite(a, 13, 2880, t0), Some((4, 2880)));
    }

    #[test]
    fn retimed_replay_then_live() {
        let t0 = Instant::now();
        let ms = |n: u64| t0 + Duration::from_millis(n);
        let mut r = Rewriter::new(90_000, 0, 1000);
        let a = Source { epoch: 1, ssrc: 1 };
        // A cached keyframe (two packets, ts 0) and two delta frames 33 ms apart, replayed
        // 10 ms apart: timestamps advance by 10 ms (900 ticks) per frame.
        assert_eq!(r.rewrite_retimed(a, 100, 0, ms(0)), Some((1, 1000)));
        assert_eq!(r.rewrite_retimed(a, 101, 0, ms(0)), Some((2, 1000)));
        assert_eq!(r.rewrite_retimed(a, 102, 3000, ms(10)), Some((3, 1900)));
        assert_eq!(r.rewrite_retimed(a, 103, 6000, ms(20)), Some((4, 2800)));
        // Live again: the next frame keeps its own 33 ms spacing from the last one.
        assert_eq!(r.rewrite(a, 104, 9000, ms(30)), Some((5, 5800)));
        assert_eq!(r.rewrite(a, 105, 12000, ms(63)), Some((6, 8800)));
    }

    #[test]
    fn timestamps_wrap() {
        let t0 = Instant::now();
        let mut r = Rewriter::new(90_000, 0, u32::MAX - 10);
        let a = Source { epoch: 1, ssrc: 1 };
        assert_eq!(r.rewrite(a, 1, 0, t0), Some((1, u32::MAX - 10)));
        assert_eq!(r.rewrite(a, 2, 20, t0), Some((2, 9)));
    }
}
