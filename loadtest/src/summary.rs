//! What a run measured: the figures of the final table, the JSON file and the HTML report.
//! Everything here is plain data (serde); the swarm fills it, the outputs read it.

use std::collections::{BTreeMap, BTreeSet};

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
    /// Datagrams the kernel dropped at the load generator's own media sockets in the measured
    /// window (mostly for full receive buffers: the generator did not read fast enough). They
    /// count in `loss_pct` although the server sent them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub generator_socket_drops: Option<u64>,
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
    /// The `rooms` scenario's figures (group calls); None for the other scenarios.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rooms: Option<RoomsFigures>,
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

impl Summary {
    /// The line under the generator's own figures when the kernel dropped datagrams at its
    /// media sockets: that loss is the generator's, not the server's.
    pub fn write_socket_drops(&self, t: &mut String) {
        use std::fmt::Write as _;
        if let Some(drops) = self.generator_socket_drops.filter(|&d| d > 0) {
            let _ = writeln!(
                t,
                "              its sockets dropped {drops} datagrams (mostly full receive buffers): \
                 counted as loss, but the server sent them"
            );
        }
    }

    /// The last lines of a text report: the errors counted, and the thresholds that failed.
    pub fn write_errors(&self, t: &mut String) {
        use std::fmt::Write as _;
        if self.errors.is_empty() {
            let _ = writeln!(t, "errors        none");
        } else {
            let list: Vec<String> = self
                .errors
                .iter()
                .map(|(k, v)| format!("{k}: {v}"))
                .collect();
            let _ = writeln!(t, "errors        {}", list.join(", "));
        }
        for f in &self.threshold_failures {
            let _ = writeln!(t, "FAILED        {f}");
        }
    }
}

impl ServerFigures {
    /// The server's figures over a measured window of `measured_s` seconds, in which it used
    /// `cpu` and its clients received `forwarded` packets; `viewers` were connected and
    /// `participants` placed; its RSS was `rss_before` before the first join and `rss_after` at
    /// the end.
    #[allow(clippy::too_many_arguments)]
    pub fn over_window(
        pid: u32,
        cpu: std::time::Duration,
        measured_s: f64,
        forwarded: u64,
        viewers: usize,
        participants: usize,
        rss_before: Option<u64>,
        rss_after: Option<u64>,
    ) -> Self {
        let cpu_s = cpu.as_secs_f64();
        let rss_kib = rss_after.unwrap_or(0);
        ServerFigures {
            pid,
            cpu_s,
            cpu_pct: cpu_s / measured_s.max(1e-9) * 100.0,
            forwarded_packets: forwarded,
            cpu_us_per_packet: if forwarded > 0 {
                cpu_s * 1e6 / forwarded as f64
            } else {
                0.0
            },
            cpu_ms_per_viewer_s: cpu_s * 1e3 / measured_s.max(1e-9) / viewers.max(1) as f64,
            rss_kib,
            rss_kib_per_participant: rss_kib.saturating_sub(rss_before.unwrap_or(0)) as f64
                / participants.max(1) as f64,
        }
    }
}

/// The load generator's own CPU over the measured window, percent of one core, and a warning
/// when it used most of the `threads` cores it runs on (then it, not the server, may be the
/// bottleneck).
pub fn generator_load(
    cpu: std::time::Duration,
    measured_s: f64,
    threads: usize,
) -> (f64, Option<String>) {
    let pct = cpu.as_secs_f64() / measured_s.max(1e-9) * 100.0;
    let cores = threads.min(std::thread::available_parallelism().map_or(1, |n| n.get()));
    let warning = (pct > 85.0 * cores as f64).then(|| {
        format!(
            "the load generator used {pct:.0}% CPU of its {cores} core(s): it, not the \
             server, may be the bottleneck; its figures are suspect (add --threads or machines)"
        )
    });
    (pct, warning)
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

/// What one participant received (its receiving session; on Janus the subscriber's).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ParticipantReport {
    /// Its room.
    pub room: String,
    /// Its place in the room (joining order).
    pub position: usize,
    /// Its probe id in this run.
    pub id: u32,
    /// The server's id for it (ringcast: `X-Ringcast-Participant`).
    pub participant: Option<String>,
    /// Checked every payload.
    pub full: bool,
    /// Signalling start → first media packet on any slot, ms.
    pub join_ms: Option<f64>,
    /// Signalling start → first complete keyframe on any video slot, ms.
    pub first_frame_ms: Option<f64>,
    /// Loss over all its slots in the measured window, percent.
    pub loss_pct: f64,
    /// Its one-way latency median in the window, ms (checked payloads only).
    pub latency_p50_ms: Option<f64>,
    /// Its largest one-way latency in the window, ms.
    pub latency_max_ms: Option<f64>,
    /// Its video slots.
    pub video: KindReport,
    /// Its audio slots.
    pub audio: KindReport,
    /// Data channel messages by type.
    pub messages: BTreeMap<String, u64>,
    /// The `ringcast` data channel opened.
    pub channel_open: bool,
}

/// What the slots of one kind received in the measured window.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct KindReport {
    /// Slots of this kind.
    pub slots: usize,
    /// Slots that received anything during the run.
    pub filled: usize,
    /// Packets received.
    pub packets: u64,
    /// Bytes received (payload + RTP header).
    pub bytes: u64,
    /// Packets expected from the slots' sequence numbers.
    pub expected: u64,
    /// Packets received twice.
    pub duplicates: u64,
    /// Loss, percent of expected.
    pub loss_pct: f64,
    /// Packets of its own media it got back (whole run; never, unless the server errs).
    pub own_packets: u64,
    /// Payloads that failed the check (whole run).
    pub corrupt: u64,
    /// Probe ids of the publishers seen on these slots (checked payloads only).
    pub sources: BTreeSet<u32>,
}

/// What the participants of a `rooms` run received: per kind of slot, per participant (their
/// distributions) and on the data channel. The generic fields of [`Summary`] hold the rest:
/// publishers and viewers are the participants' publishing and receiving sessions, join and
/// first frame times count only participants who found someone in their room.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RoomsFigures {
    /// Rooms.
    pub rooms: usize,
    /// Participants per room.
    pub participants_per_room: usize,
    /// Video slots per participant.
    pub video_slots: usize,
    /// Audio slots per participant.
    pub audio_slots: usize,
    /// The video slots, all participants together (measured window).
    pub video: SlotFigures,
    /// The audio slots.
    pub audio: SlotFigures,
    /// Loss per participant, percent (its distribution over the participants).
    pub loss_per_participant_pct: Percentiles,
    /// Latency median per participant, ms (participants that checked payloads).
    pub latency_p50_per_participant_ms: Percentiles,
    /// Data channel messages by type, all participants together.
    pub messages: BTreeMap<String, u64>,
    /// Participants whose `ringcast` data channel opened.
    pub channel_open: usize,
    /// Participants that got a `welcome`.
    pub with_welcome: usize,
    /// Participants that got a `slots`.
    pub with_slots: usize,
    /// Packets of their own media participants got back (must be 0).
    pub own_packets: u64,
    /// Every participant's report.
    pub participants: Vec<ParticipantReport>,
}

/// One kind of slot over all participants, in the measured window.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct SlotFigures {
    /// Packets received.
    pub packets: u64,
    /// Bytes received.
    pub bytes: u64,
    /// Loss, percent of expected.
    pub loss_pct: f64,
    /// Slots that received anything, per participant (distribution).
    pub filled_per_participant: Percentiles,
    /// Packets per second per participant (distribution).
    pub pps_per_participant: Percentiles,
    /// kbit/s per participant (distribution).
    pub kbps_per_participant: Percentiles,
}
