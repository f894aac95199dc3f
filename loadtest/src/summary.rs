//! What a run measured: the figures of the final table, the JSON file and the HTML report.
//! Everything here is plain data (serde); the swarm fills it, the outputs read it.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// The whole result of one run.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    /// Scenario name and its parameters, e.g. "broadcast 1x200 vp8 2500kbps".
    pub scenario: String,
    /// The server's base URL.
    pub target: String,
    /// Wall-clock start, RFC 3339 (UTC).
    pub started_at: String,
    /// Length of the measured window (after warm-up), seconds.
    pub measured_s: f64,
    /// Whole run, seconds.
    pub duration_s: f64,
    /// Publishers requested / connected / failed.
    pub publishers: Counts,
    /// Viewers requested / connected / failed.
    pub viewers: Counts,
    /// Viewers that verified payloads (full) vs. only counted headers (light).
    pub full_viewers: usize,
    /// Join time, POST → first media packet at the viewer, milliseconds.
    pub join_ms: Percentiles,
    /// Time to first frame, POST → the viewer's first complete keyframe, milliseconds.
    #[serde(default)]
    pub first_frame_ms: FirstFrames,
    /// One-way latency publisher → viewer (same host), milliseconds, full viewers only.
    pub latency_ms: Percentiles,
    /// Media packets the publishers sent (measured window).
    pub packets_sent: u64,
    /// Media packets the viewers received (measured window).
    pub packets_received: u64,
    /// Packets the viewers expected but never got, percent of expected.
    pub loss_pct: f64,
    /// Packets received twice.
    pub duplicates: u64,
    /// Packets received after a later one.
    pub reorders: u64,
    /// Payloads that failed verification (full viewers).
    pub corrupt: u64,
    /// Mean received bitrate per connected viewer, kbit/s.
    pub bitrate_per_viewer_kbps: f64,
    /// Failures by cause: "http 409", "http 503", "ice failed", "dtls failed", "timeout",
    /// "sdp", "io", ...
    pub errors: BTreeMap<String, u64>,
    /// The load generator's own CPU, percent of one core, and whether it was the bottleneck.
    pub loadtest_cpu_pct: f64,
    /// Cores the load generator used.
    pub loadtest_threads: usize,
    /// Set when the load generator itself was (close to) saturated: its figures are suspect.
    pub bottleneck_warning: Option<String>,
    /// Server-side figures, with `--server-pid`.
    pub server: Option<ServerFigures>,
    /// One entry per second.
    pub timeline: Vec<Tick>,
    /// Latency histogram: (upper bound ms, count) buckets.
    pub latency_histogram: Vec<(f64, u64)>,
    /// Join-time CDF: (ms, fraction of connected viewers joined by then).
    pub join_cdf: Vec<(f64, f64)>,
    /// Why the run failed its thresholds, if it did.
    pub threshold_failures: Vec<String>,
}

/// Requested, connected, failed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counts {
    /// Asked for.
    pub requested: usize,
    /// Got media flowing.
    pub connected: usize,
    /// Gave up (see `errors`).
    pub failed: usize,
}

/// Percentiles of a distribution, in its unit; all zero when it has no samples.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Percentiles {
    /// Samples.
    pub count: u64,
    /// Median.
    pub p50: f64,
    /// 95th percentile.
    pub p95: f64,
    /// 99th percentile.
    pub p99: f64,
    /// 99.9th percentile.
    pub p999: f64,
    /// Largest.
    pub max: f64,
}

/// Time to first frame over the viewers: its CDF as percentiles and points, in milliseconds.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct FirstFrames {
    /// Viewers that got a complete keyframe.
    pub count: u64,
    /// Connected viewers (of a run with video) that never got one.
    pub missing: u64,
    /// 10th percentile.
    pub p10: f64,
    /// Median.
    pub p50: f64,
    /// 90th percentile.
    pub p90: f64,
    /// 95th percentile.
    pub p95: f64,
    /// 99th percentile.
    pub p99: f64,
    /// Largest.
    pub max: f64,
    /// The CDF: (ms, fraction of these viewers with a first frame by then).
    pub cdf: Vec<(f64, f64)>,
}

/// The server's cost, from `/proc/<pid>` over the measured window.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct ServerFigures {
    /// Its pid.
    pub pid: u32,
    /// CPU seconds (user + system) in the window.
    pub cpu_s: f64,
    /// Its CPU, percent of one core.
    pub cpu_pct: f64,
    /// Packets it forwarded in the window (as the viewers received them).
    pub forwarded_packets: u64,
    /// CPU microseconds per forwarded packet.
    pub cpu_us_per_packet: f64,
    /// CPU milliseconds per second per connected viewer.
    pub cpu_ms_per_viewer_s: f64,
    /// Resident memory at the end, KiB.
    pub rss_kib: u64,
    /// Resident memory growth from before the first join to the end, per participant, KiB.
    pub rss_kib_per_participant: f64,
}

/// One second of the run.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Tick {
    /// Seconds since start.
    pub t_s: f64,
    /// Sessions with media flowing.
    pub connected: usize,
    /// Sessions failed so far.
    pub failed: usize,
    /// Media packets/s sent by publishers.
    pub pps_out: f64,
    /// Media packets/s received by viewers.
    pub pps_in: f64,
    /// Loss in this second, percent.
    pub loss_pct: f64,
    /// p99 latency in this second, ms.
    pub p99_ms: f64,
}
