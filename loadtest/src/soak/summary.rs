//! What a soak measured: plain data for `--json`, and the table printed at the end.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::Serialize;

use ringcast_loadtest::summary::Percentiles;

use super::gauges::Gauge;

/// The whole result of one soak.
#[derive(Debug, Clone, Default, Serialize)]
pub struct SoakSummary {
    /// What ran, e.g. "soak 10000 cycles x8 vp8 2500kbps".
    pub scenario: String,
    /// The server's base URL.
    pub target: String,
    /// Wall-clock start, RFC 3339 (UTC).
    pub started_at: String,
    /// Whole run, seconds.
    pub duration_s: f64,
    /// The join/leave cycles.
    pub cycles: Cycles,
    /// The long-running stream and its steady viewers.
    pub running_stream: RunningStream,
    /// The server's resident memory.
    pub rss: Rss,
    /// Every gauge of `/api/stats` and `/api/streams`, at the start (before the first cycle)
    /// and at the end (after the last session left and the settle period).
    pub gauges: Vec<Gauge>,
    /// The gauges whose end value is not their start value.
    pub gauges_not_back: Vec<Gauge>,
    /// The numbers taken for totals (they may grow; not compared).
    pub totals_not_compared: Vec<String>,
    /// Why the soak failed (exit 1); empty when it passed.
    pub failures: Vec<String>,
}

/// The join/leave cycles; the counts and failures include the warm-up cycles.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Cycles {
    /// Cycles measured (after the warm-up).
    pub requested: usize,
    /// Cycles run before the start figures were taken.
    pub warmup: usize,
    /// Sessions in flight at once.
    pub concurrency: usize,
    /// How long each connected session kept its media, seconds.
    pub hold_s: f64,
    /// Cycles that were WHIP publishers (of a stream of their own).
    pub publishers: usize,
    /// Cycles that were WHEP viewers of the running stream.
    pub viewers: usize,
    /// Sessions that got media flowing (viewers: media arrived; publishers: DTLS up).
    pub connected: usize,
    /// Sessions that did not.
    pub failed: usize,
    /// Sessions whose DELETE the server answered with a success.
    pub deleted: usize,
    /// Failures by cause: refused joins ("http 429", "http 503"), "ice failed", "dtls failed",
    /// "no media", DELETEs refused ("delete: http 404"), losses after connecting.
    pub failures_by_reason: BTreeMap<String, u64>,
    /// Viewer cycles' join time, POST → first media packet, milliseconds.
    pub viewer_join_ms: Percentiles,
    /// Cycles per second over the measured cycles.
    pub rate_per_s: f64,
}

/// The long-running stream, as its steady viewers saw it the whole time.
#[derive(Debug, Clone, Default, Serialize)]
pub struct RunningStream {
    /// Its name.
    pub stream: String,
    /// Steady viewers that connected (all verify payloads and measure latency).
    pub viewers: usize,
    /// Media packets its publisher sent.
    pub packets_sent: u64,
    /// Media packets the steady viewers expected (all of them together).
    pub packets_expected: u64,
    /// Media packets they received.
    pub packets_received: u64,
    /// Lost, percent of expected.
    pub loss_pct: f64,
    /// Received twice.
    pub duplicates: u64,
    /// Received after a later one.
    pub reorders: u64,
    /// Failed payload verification.
    pub corrupt: u64,
    /// One-way latency publisher → steady viewers, milliseconds.
    pub latency_ms: Percentiles,
    /// What went wrong with the publisher or a steady viewer ("media stalled", ...).
    pub errors: BTreeMap<String, u64>,
}

/// The server's resident memory, KiB.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Rss {
    /// With the running stream up, before the warm-up cycles.
    pub before_warmup_kib: u64,
    /// At the start: after the warm-up cycles and the settle period.
    pub start_kib: u64,
    /// At the end: after the last cycle and the settle period.
    pub end_kib: u64,
    /// end / start.
    pub ratio: f64,
    /// The allowed growth, percent.
    pub max_growth_pct: f64,
    /// Whether the end is within the allowed growth of the start.
    pub back: bool,
    /// Each second of the cycles: a leak grows with the cycles, an allocator settling flattens.
    pub timeline: Vec<RssSample>,
}

/// The server's RSS at one moment of the cycles.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct RssSample {
    /// Seconds since the start.
    pub t_s: f64,
    /// Cycles done by then (warm-up included).
    pub cycles: usize,
    /// Resident memory, KiB.
    pub rss_kib: u64,
}

impl SoakSummary {
    /// The summary as the text table printed at the end.
    pub fn table(&self) -> String {
        let mut t = String::new();
        let p = |x: &Percentiles| {
            format!(
                "p50 {:>7.2}  p95 {:>7.2}  p99 {:>7.2}  p99.9 {:>7.2}  max {:>7.2}  (n={})",
                x.p50, x.p95, x.p99, x.p999, x.max, x.count
            )
        };
        let c = &self.cycles;
        let s = &self.running_stream;
        let _ = writeln!(
            t,
            "\n== ringcast-loadtest: {} -> {}",
            self.scenario, self.target
        );
        let _ = writeln!(
            t,
            "started {}, ran {:.1} s",
            self.started_at, self.duration_s
        );
        let _ = writeln!(
            t,
            "cycles        {} (+{} warm-up), {} at once, {:.1} s media each, {:.1}/s: {} publishers, \
             {} viewers",
            c.requested, c.warmup, c.concurrency, c.hold_s, c.rate_per_s, c.publishers, c.viewers
        );
        let _ = writeln!(
            t,
            "              {} connected, {} failed, {} deleted",
            c.connected, c.failed, c.deleted
        );
        let _ = writeln!(t, "cycle join ms {}", p(&c.viewer_join_ms));
        let _ = writeln!(t, "failures      {}", by_reason(&c.failures_by_reason));
        let _ = writeln!(
            t,
            "running       {} with {} steady viewers: sent {}, expected {}, received {}, \
             loss {:.3}%, duplicates {}, reorders {}, corrupt {}",
            s.stream,
            s.viewers,
            s.packets_sent,
            s.packets_expected,
            s.packets_received,
            s.loss_pct,
            s.duplicates,
            s.reorders,
            s.corrupt
        );
        let _ = writeln!(t, "latency ms    {}", p(&s.latency_ms));
        let _ = writeln!(t, "running errs  {}", by_reason(&s.errors));
        let r = &self.rss;
        let _ = writeln!(
            t,
            "server RSS    {} KiB before warm-up, {} KiB at start, {} KiB at end: x{:.4} ({})",
            r.before_warmup_kib,
            r.start_kib,
            r.end_kib,
            r.ratio,
            if r.back {
                format!("back within {}%", r.max_growth_pct)
            } else {
                format!("NOT back within {}%", r.max_growth_pct)
            }
        );
        let _ = writeln!(t, "RSS by cycle  {}", rss_by_quarter(c, &r.timeline));
        let _ = writeln!(
            t,
            "gauges        {} compared ({} totals not compared): {}",
            self.gauges.len(),
            self.totals_not_compared.len(),
            if self.gauges_not_back.is_empty() {
                "all back at their start value".to_string()
            } else {
                format!("{} NOT back", self.gauges_not_back.len())
            }
        );
        if !self.gauges_not_back.is_empty() {
            let width = self
                .gauges_not_back
                .iter()
                .map(|g| g.name.len())
                .max()
                .unwrap_or(0);
            let _ = writeln!(t, "  {:<width$}  {:>10}  {:>10}", "gauge", "start", "end");
            let v = |x: Option<u64>| x.map_or_else(|| "absent".to_string(), |x| x.to_string());
            for g in &self.gauges_not_back {
                let _ = writeln!(
                    t,
                    "  {:<width$}  {:>10}  {:>10}",
                    g.name,
                    v(g.start),
                    v(g.end)
                );
            }
        }
        for f in &self.failures {
            let _ = writeln!(t, "FAILED        {f}");
        }
        t
    }
}

/// The RSS after each quarter of the measured cycles, from the timeline: "2500: 28100 KiB, ...".
fn rss_by_quarter(c: &Cycles, timeline: &[RssSample]) -> String {
    let quarters: Vec<String> = (1..=4)
        .filter_map(|q| {
            let at = c.warmup + c.requested * q / 4;
            let sample = timeline.iter().find(|s| s.cycles >= at)?;
            Some(format!(
                "{}: {} KiB",
                sample.cycles - c.warmup,
                sample.rss_kib
            ))
        })
        .collect();
    if quarters.is_empty() {
        "too short to tell".to_string()
    } else {
        quarters.join(", ")
    }
}

fn by_reason(map: &BTreeMap<String, u64>) -> String {
    if map.is_empty() {
        return "none".to_string();
    }
    map.iter()
        .map(|(k, v)| format!("{k}: {v}"))
        .collect::<Vec<_>>()
        .join(", ")
}
