//! `ringcast-loadtest soak`: does the server give back what sessions took?
//!
//! One long-running stream (a WHIP publisher with VP8 + Opus) and a few steady WHEP viewers of
//! it that verify every payload and measure loss and latency the whole time; meanwhile
//! `--cycles` join/leave cycles, `--concurrency` at once, each a WHIP publisher of a stream of
//! its own or a WHEP viewer of the running stream (`--publisher-share`) that connects, has
//! media for `--hold`, and is DELETEd. The same str0m peers, media workers and signalling as the
//! other scenarios ([`crate::worker`], [`crate::signal`]).
//!
//! Measured: the server's RSS (`/proc/<pid>/status`) after `--warmup-cycles` cycles and again
//! after the last one (each time once its gauges are back, up to `--settle`), and every gauge of
//! `/api/stats` and `/api/streams` before the first cycle and after the last ([`gauges`]). The
//! soak fails (exit 1) when the RSS grew more than `--max-rss-growth`, a gauge is not back at its
//! start value, or the running stream was hurt (an error on a steady session, loss above
//! `--max-loss`).

mod gauges;
mod summary;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::ops::Range;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use clap::Args;
use hdrhistogram::Histogram;

use crate::http;
use crate::media::{self, VideoCodec};
use crate::negotiation::Negotiation;
use crate::procfs::Process;
use crate::session::{Job, Role};
use crate::signal::{Signaller, Target};
use crate::stats;
use crate::swarm::{self, WorkerHandle};
use crate::tally::{Tally, Totals};
use crate::units;
use crate::worker::{Command, MediaPlan};

use gauges::{Admin, Declared, Snapshot};
use summary::{Cycles, Rss, RssSample, RunningStream, SoakSummary};

/// The options of `ringcast-loadtest soak`.
#[derive(Debug, Args)]
pub struct SoakArgs {
    /// Server base URL (WHIP at /whip/<stream>, WHEP at /whep/<stream>).
    #[arg(
        long,
        visible_alias = "server",
        default_value = "http://127.0.0.1:8080"
    )]
    url: String,
    #[command(flatten)]
    rx_polling: swarm::RxPolling,
    /// The server's pid: its resident memory comes from /proc/<pid>/status.
    #[arg(long)]
    server_pid: u32,
    /// Join/leave cycles measured.
    #[arg(long, default_value_t = 10_000, value_parser = clap::value_parser!(u32).range(1..=10_000_000))]
    cycles: u32,
    /// Cycles in flight at once.
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u32).range(1..=1_000))]
    concurrency: u32,
    /// Cycles before the start RSS is taken, so that the server's allocator has grown to what
    /// --concurrency sessions need (growth after that is what the soak looks for).
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u32).range(0..=1_000_000))]
    warmup_cycles: u32,
    /// Steady viewers of the running stream (each verifies payloads and measures latency).
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..=100))]
    viewers: u32,
    /// Share of the cycles that are WHIP publishers of a stream of their own (the others are
    /// WHEP viewers of the running stream): 0.5 alternates.
    #[arg(long, default_value = "0.5", value_parser = units::fraction)]
    publisher_share: f64,
    /// How long a cycling session keeps its media once connected: 1s, 300ms.
    #[arg(long, default_value = "1s", value_parser = units::duration)]
    hold: Duration,
    /// Longest wait for the server's gauges to come back after the warm-up and after the last
    /// cycle (a session the server still holds goes at its connect timeout, 30 s by default).
    #[arg(long, default_value = "35s", value_parser = units::duration)]
    settle: Duration,
    /// Fail when the server's RSS at the end is more than this above the start.
    #[arg(long, default_value = "5%", value_parser = units::percent)]
    max_rss_growth: f64,
    /// Fail when the running stream's loss is above this: 0.1%.
    #[arg(long, value_parser = units::percent)]
    max_loss: Option<f64>,
    /// Base URL of the server's /api and /metrics when they have a listener of their own
    /// (http.admin_listen); default: --url.
    #[arg(long)]
    admin_url: Option<String>,
    /// Bearer token for /api and /metrics (http.admin_token).
    #[arg(long, env = "RINGCAST_LOADTEST_ADMIN_TOKEN", hide_env_values = true)]
    admin_token: Option<String>,
    /// Video codec.
    #[arg(long, value_enum, default_value_t = VideoCodec::Vp8)]
    codec: VideoCodec,
    /// Video bitrate per publisher: 2500kbps, 2.5mbps.
    #[arg(long, default_value = "2500kbps", value_parser = units::bitrate)]
    bitrate: u64,
    /// Video frames per second.
    #[arg(long, default_value = "30", value_parser = units::fps)]
    fps: u32,
    /// Time between keyframes (publishers also answer PLI with one).
    #[arg(long, default_value = "2s", value_parser = units::duration)]
    keyframe_interval: Duration,
    /// Media threads for the cycling sessions (the running stream has one of its own).
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u32).range(1..=1024))]
    threads: u32,
    /// HTTP timeout per request.
    #[arg(long, default_value = "5s", value_parser = units::duration)]
    http_timeout: Duration,
    /// A session without media this long after its POST counts as failed.
    #[arg(long, default_value = "10s", value_parser = units::duration)]
    connect_timeout: Duration,
    /// Stream name prefix (the running stream is <prefix>-live, cycling publishers
    /// <prefix>-c<n>); default: unique per run.
    #[arg(long)]
    stream_prefix: Option<String>,
    /// Source addresses for the sessions when the target is not on loopback (see broadcast).
    #[arg(long, value_parser = units::ipv4_net)]
    source_range: Option<(Ipv4Addr, u8)>,
    /// Write the summary as JSON.
    #[arg(long)]
    json: Option<PathBuf>,
}

/// Run a soak, print its table (and JSON): exit 0 when it passed, 1 when it failed, 2 when it
/// could not run, 130 when interrupted.
pub fn main(args: &SoakArgs, interrupted: &AtomicBool) -> ExitCode {
    let summary = match run(args, interrupted) {
        Ok(s) => s,
        Err(error) => {
            eprintln!("error: {error:#}");
            return ExitCode::from(2);
        }
    };
    print!("{}", summary.table());
    if let Some(path) = &args.json
        && let Err(error) = crate::write_json(path, &summary)
    {
        eprintln!("error: cannot write {}: {error}", path.display());
        return ExitCode::from(2);
    }
    crate::verdict("soak failed", &summary.failures, interrupted)
}

/// Time for the RSS to follow the last frees before it is read.
const RSS_SETTLE: Duration = Duration::from_secs(1);
/// Between two reads of the server's gauges while waiting for them to come back.
const SETTLE_POLL: Duration = Duration::from_millis(250);

fn run(args: &SoakArgs, interrupted: &AtomicBool) -> anyhow::Result<SoakSummary> {
    if !args.url.starts_with("http://") {
        anyhow::bail!(
            "--url {:?}: expected an http:// URL (no TLS), e.g. http://127.0.0.1:8080",
            args.url
        );
    }
    if args.keyframe_interval < Duration::from_millis(100) {
        anyhow::bail!("--keyframe-interval: at least 100ms");
    }
    let range = swarm::address_range(args.source_range, &args.url)?;
    let sessions = (1 + args.viewers + args.warmup_cycles) as usize + args.cycles as usize;
    if swarm::session_ip(range, sessions - 1).is_none() {
        anyhow::bail!(
            "--source-range {}/{} has too few addresses for {sessions} sessions",
            range.0,
            range.1
        );
    }
    let server = Process::Pid(args.server_pid);
    if server.rss_kib().is_none() {
        anyhow::bail!(
            "--server-pid {}: no such process (cannot read /proc/{})",
            args.server_pid,
            args.server_pid
        );
    }
    let admin = Admin {
        base: args
            .admin_url
            .clone()
            .unwrap_or_else(|| args.url.clone())
            .trim_end_matches('/')
            .to_string(),
        token: args.admin_token.clone(),
    };
    let agent = http::agent(args.http_timeout);
    admin
        .snapshot(&agent)
        .map_err(|e| anyhow::anyhow!("the server's admin API: {e}"))?;
    let declared = admin.declared(&agent).unwrap_or_else(|error| {
        eprintln!("warning: {error}: gauges are told from totals by their names only");
        Declared::default()
    });

    let rig = Rig::start(args, range)?;
    let result = soak(&rig, args, &admin, &declared, server, interrupted);
    rig.stop();
    result
}

/// The running parts: the media workers, the signalling, the session addresses.
struct Rig {
    signaller: Signaller,
    range: (Ipv4Addr, u8),
    next_address: AtomicUsize,
    /// The worker of the running stream's sessions, with its tally.
    steady: WorkerHandle,
    steady_tally: Arc<Tally>,
    /// The workers of the cycling sessions, with their tally.
    cycling: Vec<WorkerHandle>,
    cycle_tally: Arc<Tally>,
    /// The running stream's sessions, to leave at the end.
    steady_locations: Mutex<Vec<String>>,
    live: String,
    prefix: String,
    /// How long to wait for a worker to say whether a session connected.
    connect_wait: Duration,
    hold: Duration,
    publisher_share: f64,
    http_timeout: Duration,
    publishers: AtomicUsize,
    viewers: AtomicUsize,
    deleted: AtomicUsize,
}

impl Rig {
    fn start(args: &SoakArgs, range: (Ipv4Addr, u8)) -> anyhow::Result<Self> {
        let keyframe_every =
            (args.keyframe_interval.as_secs_f64() * f64::from(args.fps)).round() as u32;
        let media = Arc::new(MediaPlan {
            codec: args.codec,
            video: true,
            fps: args.fps,
            frame_sizes: media::frame_sizes(args.bitrate, args.fps, keyframe_every),
            layers: Vec::new(),
            ignore_pli: false,
            keyframe_interval: args.keyframe_interval,
            simulate_loss: 0.0,
            connect_timeout: args.connect_timeout,
            stall_after: Duration::from_secs(3),
            speaker_turn: Duration::from_secs(3),
            rx_poll_us: args.rx_polling.rx_poll_us,
        });
        let steady_tally = Arc::new(Tally::new(1));
        let cycle_tally = Arc::new(Tally::new(args.threads as usize));
        let steady = swarm::spawn_worker(0, steady_tally.clone(), media.clone())?;
        let cycling = (0..args.threads as usize)
            .map(|i| swarm::spawn_worker(i, cycle_tally.clone(), media.clone()))
            .collect::<anyhow::Result<Vec<_>>>()?;
        let prefix = args.stream_prefix.clone().unwrap_or_else(|| {
            format!(
                "soak{}-{}",
                std::process::id(),
                ringcast_loadtest::clock::unix_seconds() % 100_000
            )
        });
        Ok(Rig {
            signaller: Signaller::new(
                Target::Whip,
                &args.url,
                Negotiation {
                    codec: args.codec,
                    video: true,
                    layers: Vec::new(),
                    slots: Default::default(),
                },
                args.http_timeout,
            ),
            range,
            next_address: AtomicUsize::new(0),
            steady,
            steady_tally,
            cycling,
            cycle_tally,
            steady_locations: Mutex::default(),
            live: format!("{prefix}-live"),
            prefix,
            // The worker gives up at the connect timeout, on its next sweep (every 500 ms).
            connect_wait: args.connect_timeout + Duration::from_secs(2),
            hold: args.hold,
            publisher_share: args.publisher_share,
            http_timeout: args.http_timeout,
            publishers: AtomicUsize::new(0),
            viewers: AtomicUsize::new(0),
            deleted: AtomicUsize::new(0),
        })
    }

    /// A fresh local address on a worker's port (the range was checked for every session).
    fn address(&self, port: u16) -> SocketAddr {
        let index = self.next_address.fetch_add(1, Ordering::Relaxed);
        let ip = swarm::session_ip(self.range, index).unwrap_or(self.range.0);
        SocketAddr::new(IpAddr::V4(ip), port)
    }

    /// Open a session of the running stream and wait until it has media flowing.
    fn open_steady(&self, agent: &ureq::Agent, role: Role) -> anyhow::Result<()> {
        let what = match &role {
            Role::Publisher { stream, .. } => format!("the publisher of {stream}"),
            Role::Viewer { stream, .. } => format!("a steady viewer of {stream}"),
            Role::Member(m) => format!("participant {} of {}", m.position, m.room),
        };
        let job = Job {
            role,
            worker: 0,
            local: self.address(self.steady.port),
        };
        let joined = self
            .signaller
            .join(agent, job)
            .map_err(|cause| anyhow::anyhow!("{what}: {cause}"))?;
        if let Ok(mut l) = self.steady_locations.lock() {
            l.push(joined.location.clone());
        }
        let (tell, outcome) = mpsc::channel();
        self.steady.send(Command::Watch(Box::new(joined), tell));
        match outcome.recv_timeout(self.connect_wait) {
            Ok(Ok(())) => Ok(()),
            Ok(Err(cause)) => anyhow::bail!("{what} did not connect: {cause}"),
            Err(_) => anyhow::bail!("{what} did not connect"),
        }
    }

    /// Cycle `index`: join, have media for the hold time, leave. What happens is counted in
    /// the cycle tally.
    fn cycle(&self, agent: &ureq::Agent, index: usize) {
        // Spread evenly: cycle i is a publisher when the count of publishers steps at i.
        let share = self.publisher_share;
        let publisher = ((index + 1) as f64 * share).floor() > (index as f64 * share).floor();
        let role = if publisher {
            self.publishers.fetch_add(1, Ordering::Relaxed);
            Role::Publisher {
                stream: format!("{}-c{index}", self.prefix),
                id: 1_000 + index as u32,
            }
        } else {
            self.viewers.fetch_add(1, Ordering::Relaxed);
            Role::Viewer {
                stream: self.live.clone(),
                full: false,
                layer: None,
            }
        };
        let worker = index % self.cycling.len();
        let handle = &self.cycling[worker];
        let job = Job {
            role,
            worker,
            local: self.address(handle.port),
        };
        let joined = match self.signaller.join(agent, job) {
            Ok(joined) => joined,
            Err(cause) => {
                self.cycle_tally.fail(publisher, &cause);
                return;
            }
        };
        let location = joined.location.clone();
        let ip = joined.job.local.ip();
        let (tell, outcome) = mpsc::channel();
        if !handle.send(Command::Watch(Box::new(joined), tell)) {
            return;
        }
        match outcome.recv_timeout(self.connect_wait) {
            Ok(Ok(())) => std::thread::sleep(self.hold),
            Ok(Err(_)) => {} // the worker counted it
            Err(_) => self.cycle_tally.fail(publisher, "worker gave no outcome"),
        }
        handle.send(Command::Remove(ip));
        match self.signaller.leave(agent, &location) {
            Ok(()) => {
                self.deleted.fetch_add(1, Ordering::Relaxed);
            }
            Err(cause) => self.cycle_tally.error(&format!("delete: {cause}")),
        }
    }

    /// Run the cycles `indexes`, `concurrency` at once, with a progress line each second.
    fn cycles(
        &self,
        indexes: Range<usize>,
        concurrency: usize,
        done: &AtomicUsize,
        progress: &mut Progress,
        interrupted: &AtomicBool,
    ) {
        let next = AtomicUsize::new(indexes.start);
        let exited = AtomicUsize::new(0);
        std::thread::scope(|scope| {
            for _ in 0..concurrency {
                scope.spawn(|| {
                    let agent = http::agent(self.http_timeout);
                    while !interrupted.load(Ordering::Relaxed) {
                        let index = next.fetch_add(1, Ordering::Relaxed);
                        if index >= indexes.end {
                            break;
                        }
                        self.cycle(&agent, index);
                        done.fetch_add(1, Ordering::Relaxed);
                    }
                    exited.fetch_add(1, Ordering::Relaxed);
                });
            }
            while exited.load(Ordering::Relaxed) < concurrency {
                progress.maybe(self, done.load(Ordering::Relaxed));
                std::thread::sleep(Duration::from_millis(20));
            }
        });
        progress.tick(self, done.load(Ordering::Relaxed));
    }

    /// Stop the workers, then leave the running stream (viewers first, its publisher last).
    fn stop(self) {
        for w in std::iter::once(&self.steady).chain(&self.cycling) {
            w.send(Command::Stop);
        }
        for w in std::iter::once(self.steady).chain(self.cycling) {
            let _ = w.thread.join();
        }
        let mut locations = self
            .steady_locations
            .lock()
            .map(|l| l.clone())
            .unwrap_or_default();
        locations.reverse();
        let agent = http::agent(self.http_timeout);
        for location in &locations {
            let _ = self.signaller.leave(&agent, location);
        }
    }
}

/// The soak itself, on a started rig.
fn soak(
    rig: &Rig,
    args: &SoakArgs,
    admin: &Admin,
    declared: &Declared,
    server: Process,
    interrupted: &AtomicBool,
) -> anyhow::Result<SoakSummary> {
    let started_at = ringcast_loadtest::clock::rfc3339_now();
    let t0 = Instant::now();
    let agent = http::agent(args.http_timeout);
    rig.open_steady(
        &agent,
        Role::Publisher {
            stream: rig.live.clone(),
            id: 1,
        },
    )?;
    for _ in 0..args.viewers {
        rig.open_steady(
            &agent,
            Role::Viewer {
                stream: rig.live.clone(),
                full: true,
                layer: None,
            },
        )?;
    }
    // Let the joins' placement and keyframes pass before the gauges' start values.
    std::thread::sleep(Duration::from_secs(1));
    let baseline = admin
        .snapshot(&agent)
        .map_err(|e| anyhow::anyhow!("the server's admin API: {e}"))?;
    let rss_before_warmup = server.rss_kib().context("the server is gone")?;

    let concurrency = args.concurrency as usize;
    let warmup = args.warmup_cycles as usize;
    let total = warmup + args.cycles as usize;
    let mut progress = Progress::new(t0, total, server);
    let done = AtomicUsize::new(0);
    if warmup > 0 {
        eprintln!("warm-up: {warmup} cycles");
        rig.cycles(0..warmup, concurrency, &done, &mut progress, interrupted);
        settle(admin, &agent, declared, &baseline, args.settle, interrupted)?;
    }
    std::thread::sleep(RSS_SETTLE);
    let rss_start = server.rss_kib().context("the server is gone")?;
    eprintln!("start: server RSS {rss_start} KiB; {} cycles", args.cycles);
    let cycles_t0 = Instant::now();
    rig.cycles(
        warmup..total,
        concurrency,
        &done,
        &mut progress,
        interrupted,
    );
    let cycles_s = cycles_t0.elapsed().as_secs_f64();
    let end = settle(admin, &agent, declared, &baseline, args.settle, interrupted)?;
    std::thread::sleep(RSS_SETTLE);
    let rss_end = server.rss_kib().context("the server is gone")?;
    let done = done.load(Ordering::Relaxed);

    let steady = rig.steady_tally.totals();
    let _ = progress.latency.add(rig.steady_tally.take_latency());
    let cycle_totals = |t: &Tally| {
        (
            t.publishers_connected.load(Ordering::Relaxed)
                + t.viewers_connected.load(Ordering::Relaxed),
            t.publishers_failed.load(Ordering::Relaxed) + t.viewers_failed.load(Ordering::Relaxed),
        )
    };
    let (connected, failed) = cycle_totals(&rig.cycle_tally);
    let joins_ms = rig
        .cycle_tally
        .joins_ms
        .lock()
        .map(|j| j.clone())
        .unwrap_or_default();
    let all_gauges = gauges::gauges(declared, &baseline, &end);
    let gauges_not_back: Vec<_> = all_gauges
        .iter()
        .filter(|g| g.start != g.end)
        .cloned()
        .collect();
    let ratio = rss_end as f64 / rss_start.max(1) as f64;
    let running = RunningStream {
        stream: rig.live.clone(),
        viewers: rig.steady_tally.viewers_connected.load(Ordering::Relaxed),
        packets_sent: steady.sent,
        packets_expected: steady.expected,
        packets_received: steady.received,
        loss_pct: stats::loss_pct(steady.expected, steady.received),
        duplicates: steady.duplicates,
        reorders: steady.reorders,
        corrupt: steady.corrupt,
        latency_ms: stats::percentiles_ms(&progress.latency),
        errors: rig
            .steady_tally
            .errors
            .lock()
            .map(|e| e.clone())
            .unwrap_or_default(),
    };
    let mut summary = SoakSummary {
        scenario: format!(
            "soak {} cycles x{concurrency}, {:.0}% publishers, {} steady viewers, {} {}kbps {}fps",
            args.cycles,
            args.publisher_share * 100.0,
            args.viewers,
            match args.codec {
                VideoCodec::Vp8 => "vp8",
                VideoCodec::H264 => "h264",
            },
            args.bitrate / 1000,
            args.fps
        ),
        target: args.url.clone(),
        started_at,
        duration_s: t0.elapsed().as_secs_f64(),
        cycles: Cycles {
            requested: args.cycles as usize,
            warmup,
            concurrency,
            hold_s: args.hold.as_secs_f64(),
            publishers: rig.publishers.load(Ordering::Relaxed),
            viewers: rig.viewers.load(Ordering::Relaxed),
            connected,
            failed,
            deleted: rig.deleted.load(Ordering::Relaxed),
            failures_by_reason: rig
                .cycle_tally
                .errors
                .lock()
                .map(|e| e.clone())
                .unwrap_or_default(),
            viewer_join_ms: stats::percentiles_of(&joins_ms),
            rate_per_s: done.saturating_sub(warmup) as f64 / cycles_s.max(1e-9),
        },
        running_stream: running,
        rss: Rss {
            before_warmup_kib: rss_before_warmup,
            start_kib: rss_start,
            end_kib: rss_end,
            ratio,
            max_growth_pct: args.max_rss_growth,
            back: ratio <= 1.0 + args.max_rss_growth / 100.0,
            timeline: std::mem::take(&mut progress.rss),
        },
        gauges: all_gauges,
        gauges_not_back,
        totals_not_compared: gauges::totals(declared, &end),
        failures: Vec::new(),
    };
    summary.failures = failures(&summary, args.max_loss);
    if interrupted.load(Ordering::Relaxed) {
        eprintln!("interrupted after {done} of {total} cycles: summary so far");
    }
    Ok(summary)
}

/// Why a soak failed, one line each.
fn failures(s: &SoakSummary, max_loss: Option<f64>) -> Vec<String> {
    let mut out = Vec::new();
    if !s.rss.back {
        out.push(format!(
            "the server's RSS grew {:.1}% ({} KiB at start, {} KiB at end), more than \
             --max-rss-growth {}%",
            (s.rss.ratio - 1.0) * 100.0,
            s.rss.start_kib,
            s.rss.end_kib,
            s.rss.max_growth_pct
        ));
    }
    if !s.gauges_not_back.is_empty() {
        let names: Vec<&str> = s.gauges_not_back.iter().map(|g| g.name.as_str()).collect();
        out.push(format!(
            "{} gauge(s) not back at their start value: {}",
            names.len(),
            names.join(", ")
        ));
    }
    let r = &s.running_stream;
    if !r.errors.is_empty() {
        let list: Vec<String> = r.errors.iter().map(|(k, v)| format!("{k}: {v}")).collect();
        out.push(format!("the running stream was hurt: {}", list.join(", ")));
    }
    if r.packets_received == 0 {
        out.push("the steady viewers received no media".to_string());
    }
    if let Some(max) = max_loss
        && r.loss_pct > max
    {
        out.push(format!(
            "the running stream's loss {:.3}% > --max-loss {max}%",
            r.loss_pct
        ));
    }
    out
}

/// Wait until every gauge is back at its `baseline` value, or `max` has passed; the last
/// snapshot read.
fn settle(
    admin: &Admin,
    agent: &ureq::Agent,
    declared: &Declared,
    baseline: &Snapshot,
    max: Duration,
    interrupted: &AtomicBool,
) -> anyhow::Result<Snapshot> {
    let deadline = Instant::now() + max;
    let mut said = false;
    loop {
        let now = admin
            .snapshot(agent)
            .map_err(|e| anyhow::anyhow!("the server's admin API: {e}"))?;
        if gauges::back(declared, baseline, &now)
            || Instant::now() >= deadline
            || interrupted.load(Ordering::Relaxed)
        {
            return Ok(now);
        }
        if !said {
            said = true;
            eprintln!(
                "settling: waiting up to {:.0} s for the server's gauges to come back",
                max.as_secs_f64()
            );
        }
        std::thread::sleep(SETTLE_POLL);
    }
}

/// The one-line-per-second progress report, and the running stream's latency samples.
struct Progress {
    t0: Instant,
    next: Instant,
    total: usize,
    last: Totals,
    latency: Histogram<u64>,
    server: Process,
    /// The server's RSS each second.
    rss: Vec<RssSample>,
}

impl Progress {
    fn new(t0: Instant, total: usize, server: Process) -> Self {
        Progress {
            t0,
            next: t0 + Duration::from_secs(1),
            total,
            last: Totals::default(),
            latency: stats::histogram(),
            server,
            rss: Vec::new(),
        }
    }

    fn maybe(&mut self, rig: &Rig, done: usize) {
        if Instant::now() >= self.next {
            self.tick(rig, done);
        }
    }

    fn tick(&mut self, rig: &Rig, done: usize) {
        let now = Instant::now();
        self.next = now + Duration::from_secs(1);
        let totals = rig.steady_tally.totals();
        let d = totals.since(self.last);
        self.last = totals;
        let second = rig.steady_tally.take_latency();
        let _ = self.latency.add(&second);
        let p99 = if second.is_empty() {
            0.0
        } else {
            second.value_at_quantile(0.99) as f64 / 1000.0
        };
        let t = &rig.cycle_tally;
        let connected = t.publishers_connected.load(Ordering::Relaxed)
            + t.viewers_connected.load(Ordering::Relaxed);
        let failed =
            t.publishers_failed.load(Ordering::Relaxed) + t.viewers_failed.load(Ordering::Relaxed);
        let t_s = now.saturating_duration_since(self.t0).as_secs_f64();
        let rss_kib = self.server.rss_kib().unwrap_or(0);
        self.rss.push(RssSample {
            t_s,
            cycles: done,
            rss_kib,
        });
        eprintln!(
            "[{:>6.1}s] cycles {}/{}, {} connected, {} failed, {} with media now | running \
             stream loss {:.2}% p99 {:.1} ms | server RSS {rss_kib} KiB",
            t_s,
            done,
            self.total,
            connected,
            failed,
            t.active.load(Ordering::Relaxed),
            stats::loss_pct(d.expected, d.received),
            p99,
        );
    }
}
