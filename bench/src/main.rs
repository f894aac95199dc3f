//! `ringcast-bench`: the scenario benchmark. Runs the same load scenarios against several server
//! variants, one after another in one run, each server in the same network namespace (so every
//! one takes the same kernel path), driving `ringcast-loadtest --json --server-pid` and
//! collecting server CPU per forwarded packet, forwarded packets/s, loss, latency, join time and
//! memory per viewer, with CPU ratios against `ringcast-epoll-gso` and `janus`.
//!
//! ```sh
//! cargo build --release -p ringcast -p ringcast-loadtest -p ringcast-bench
//! sudo target/release/ringcast-bench                      # every scenario × every variant
//! sudo target/release/ringcast-bench --smoke              # CI: 1 x 10 for 3 s, fails on error
//! ```
//!
//! Needs root (network namespaces, autogroup priority), iproute2, `setsid` (util-linux) and, for
//! the `janus` variant, the Debian package `janus`. Writes `results.json`, `results.md` and
//! `report.html` to `--out` and prints the markdown tables.
//!
//! Priority: instead of asking the caller to wrap the run in `setsid` and
//! `echo -20 > /proc/$$/autogroup` (the house rule for benchmarks), the runner starts each
//! server and each loadtest with `setsid` and sets *their* autogroups to nice -20: both then
//! win over anything else on the machine (builds, editors) and share the CPU fairly with each
//! other, whatever session the runner itself was started from.
#![forbid(unsafe_code)]

mod flood;
mod results;
mod servers;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{ExitCode, Stdio};
use std::time::{Duration, Instant};

use clap::Parser;
use ringcast_loadtest::summary::Summary;
use ringcast_loadtest::testbed::{Testbed, janus_binary};

use crate::results::{Cell, Figures, Flood, Machine, Results, ScenarioInfo};
use crate::servers::{Binaries, Running, ServerSettings, VARIANTS, Variant};

/// Scenarios run by default.
const SCENARIOS: [&str; 5] = [
    "video-1x50",
    "video-1x200",
    "video-1x500",
    "audio-1x200",
    "streams-10x20",
];

/// The scenarios of `--rooms-figures`: group calls at the issue's target size beside the
/// broadcast their CPU per forwarded packet is held against.
const ROOMS_FIGURES: [&str; 2] = ["video-1x200", "rooms-50x6"];

/// Receive slots of a participant in the rooms scenarios (ringcast's default page asks for
/// as many; Janus subscribers subscribe to as many feeds).
const ROOM_VIDEO_SLOTS: u32 = 5;
const ROOM_AUDIO_SLOTS: u32 = 3;

/// The scenarios of `--simulcast-figures`.
const SIMULCAST_FIGURES: [&str; 6] = [
    "video-1x1",
    "simulcast-1x1",
    "video-1x200",
    "simulcast-1x200",
    "ttff-1x40",
    "ttff-nocache-1x40",
];

/// Simulcast layers of the simulcast scenarios.
const SIMULCAST_LAYERS: u32 = 3;

/// Keyframe interval of the PLI-ignoring publisher of the ttff scenarios.
const TTFF_KEYFRAME_INTERVAL: Duration = Duration::from_secs(4);

/// Scenario benchmark: the same load against ringcast's engine/GSO variants and Janus.
#[derive(Debug, Parser)]
#[command(name = "ringcast-bench", version, about, long_about = None)]
struct Cli {
    /// Scenarios, comma-separated: video-1xN, audio-1xN (audio only), streams-SxV (S streams
    /// of V viewers, video), rooms-RxP (group calls: R rooms of P participants, each publishing
    /// audio and video and receiving on 5 video and 3 audio slots; on Janus each subscribes to
    /// the feeds it would see), simulcast-1xN (3 simulcast layers, viewers spread over them),
    /// ttff-1xN and ttff-nocache-1xN (a publisher that ignores PLI, keyframes every 4 s,
    /// viewers joining over one keyframe interval; the server's keyframe cache on, or off with
    /// RINGCAST_MEDIA_GOP_CACHE_BYTES=0).
    #[arg(long, value_delimiter = ',', default_values_t = SCENARIOS.map(String::from))]
    scenarios: Vec<String>,
    /// The simulcast figures instead of --scenarios: CPU per forwarded packet simulcast
    /// against plain at 1 and 200 viewers, and time to first frame with the keyframe cache on
    /// and off (scenarios SIMULCAST_FIGURES).
    #[arg(long)]
    simulcast_figures: bool,
    /// The group call figures instead of --scenarios: rooms-50x6 (50 rooms × 6 participants,
    /// 5 video + 3 audio slots) beside video-1x200, the broadcast figure CPU per forwarded
    /// packet in rooms is held against (scenarios ROOMS_FIGURES).
    #[arg(long)]
    rooms_figures: bool,
    /// Server variants, comma-separated: ringcast-{epoll,uring}-{gso,nogso}, janus, or
    /// `ringcast` (the build's default engine and GSO).
    #[arg(long, value_delimiter = ',', default_values_t = VARIANTS.map(String::from))]
    variants: Vec<String>,
    /// Measured window per run: 10s, 500ms, 1m.
    #[arg(long, default_value = "10s", value_parser = duration)]
    duration: Duration,
    /// Warm-up after the last join, not measured.
    #[arg(long, default_value = "2s", value_parser = duration)]
    warmup: Duration,
    /// Runs per scenario × variant; the report gives medians.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=100))]
    repeat: u32,
    /// Output directory (default target/bench/<date>).
    #[arg(long)]
    out: Option<PathBuf>,
    /// CI: 1 stream x 10 viewers of video, then 2 rooms x 3 participants, for 3 s each against
    /// every variant asked for; exit 1 on any error (a server that does not start, failed sessions, counted errors).
    #[arg(long)]
    smoke: bool,
    /// Spray random datagrams at the server's UDP ports during an extra, flooded run of each
    /// cell; the report sets its loss beside the clean one and shows the server's drop counters.
    #[arg(long)]
    garbage_flood: bool,
    /// Garbage datagrams per second.
    #[arg(long, default_value_t = 10_000, value_parser = clap::value_parser!(u32).range(100..=1_000_000))]
    garbage_rate: u32,
    /// ringcast shards (RINGCAST_MEDIA_SHARDS).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=64))]
    shards: u32,
    /// Janus event_loops (default: one per core, see the loadtest's JanusConfig).
    #[arg(long)]
    janus_event_loops: Option<usize>,
    /// Viewer joins per second.
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    join_rate: u32,
    /// Media threads of the load generator.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=256))]
    loadtest_threads: u32,
    /// Leave the priority of the servers and loadtests alone (they inherit this program's,
    /// e.g. under `nice -n 19` on a machine shared with others) instead of raising their
    /// autogroups to nice -20.
    #[arg(long)]
    keep_priority: bool,
    /// Where `ringcast` and `ringcast-loadtest` are (default: beside this program).
    #[arg(long)]
    bin_dir: Option<PathBuf>,
}

/// One load scenario.
#[derive(Debug, Clone, PartialEq)]
struct Scenario {
    name: String,
    streams: u32,
    viewers: u32,
    audio_only: bool,
    /// Publishers send [`SIMULCAST_LAYERS`] layers; viewers ask for them in turn.
    simulcast: bool,
    /// Time to first frame: a PLI-ignoring publisher; `Some(false)`: the server's keyframe
    /// cache off.
    ttff: Option<bool>,
    /// Group calls: `streams` rooms of `viewers` participants (`ringcast-loadtest rooms`).
    rooms: bool,
}

impl Scenario {
    fn parse(name: &str) -> Option<Scenario> {
        let (kind, shape) = name.split_once('-')?;
        let (kind, shape) = match shape.strip_prefix("nocache-") {
            Some(rest) if kind == "ttff" => ("ttff-nocache", rest),
            _ => (kind, shape),
        };
        let (streams, viewers) = shape.split_once('x')?;
        let (streams, viewers): (u32, u32) = (streams.parse().ok()?, viewers.parse().ok()?);
        let (audio_only, simulcast, ttff) = match kind {
            "video" | "streams" | "rooms" => (false, false, None),
            "audio" => (true, false, None),
            "simulcast" => (false, true, None),
            "ttff" => (false, false, Some(true)),
            "ttff-nocache" => (false, false, Some(false)),
            _ => return None,
        };
        let rooms = kind == "rooms";
        let many = kind == "streams" || rooms;
        if streams == 0 || viewers == 0 || (!many && streams != 1) || (rooms && viewers < 2) {
            return None;
        }
        Some(Scenario {
            name: name.to_string(),
            streams,
            viewers,
            audio_only,
            simulcast,
            ttff,
            rooms,
        })
    }

    /// The loadtest's subcommand and the options that shape this scenario's load.
    fn loadtest_shape(&self) -> Vec<String> {
        if self.rooms {
            return [
                "rooms".to_string(),
                "--rooms".into(),
                self.streams.to_string(),
                "--participants".into(),
                self.viewers.to_string(),
                "--video-slots".into(),
                ROOM_VIDEO_SLOTS.to_string(),
                "--audio-slots".into(),
                ROOM_AUDIO_SLOTS.to_string(),
            ]
            .to_vec();
        }
        [
            "broadcast".to_string(),
            "--streams".into(),
            self.streams.to_string(),
            "--viewers".into(),
            self.viewers.to_string(),
        ]
        .to_vec()
    }

    /// Sessions the loadtest opens: Janus's participants need two (publish, subscribe).
    fn sessions(&self, janus: bool) -> u32 {
        if self.rooms && janus {
            2 * self.streams * self.viewers
        } else {
            self.streams * self.viewers
        }
    }

    /// The loadtest's options for what sets this scenario apart.
    fn loadtest_args(&self) -> Vec<String> {
        let mut args = Vec::new();
        if self.audio_only {
            args.push("--audio-only".to_string());
        }
        if self.simulcast {
            args.extend(["--layers".to_string(), SIMULCAST_LAYERS.to_string()]);
            args.extend(["--viewer-layer".to_string(), "mixed".to_string()]);
        }
        if self.ttff.is_some() {
            args.push("--ignore-pli".to_string());
            let interval = format!("{}ms", TTFF_KEYFRAME_INTERVAL.as_millis());
            args.extend(["--keyframe-interval".to_string(), interval]);
        }
        args
    }

    /// The server's environment for this scenario: the keyframe cache off for ttff-nocache.
    fn server_env(&self) -> Vec<(&'static str, &'static str)> {
        match self.ttff {
            Some(false) => vec![("RINGCAST_MEDIA_GOP_CACHE_BYTES", "0")],
            _ => Vec::new(),
        }
    }

    /// Viewer joins per second: `rate`, or for ttff as many as spread the joins over one
    /// keyframe interval (so their waits sample every phase of it).
    fn join_rate(&self, rate: u32) -> f64 {
        match self.ttff {
            Some(_) => (f64::from(self.streams * self.viewers)
                / TTFF_KEYFRAME_INTERVAL.as_secs_f64())
            .min(f64::from(rate)),
            None => f64::from(rate),
        }
    }

    fn description(&self) -> String {
        if self.rooms {
            return format!(
                "{} room{} × {} participants, each publishing VP8 500 kbit/s + Opus (RFC 6464 \
                 levels, one loud speaker per room in turn) and receiving {ROOM_VIDEO_SLOTS} video \
                 + {ROOM_AUDIO_SLOTS} audio slots; Janus: each publishes, then subscribes to the \
                 same feeds (the others' video up to {ROOM_VIDEO_SLOTS}, audio up to \
                 {ROOM_AUDIO_SLOTS}); \"viewers\" are the participants receiving",
                self.streams,
                if self.streams == 1 { "" } else { "s" },
                self.viewers
            );
        }
        let media = if self.audio_only {
            "Opus-size audio only (~50 packets/s)".to_string()
        } else if self.simulcast {
            format!(
                "VP8 {SIMULCAST_LAYERS} simulcast layers (2.5 Mbit/s 720p, ~0.8 360p, ~0.25 \
                 180p) + Opus, viewers spread over the layers"
            )
        } else if let Some(cache) = self.ttff {
            format!(
                "VP8 2.5 Mbit/s + Opus from a publisher that ignores PLI, keyframes every {} s, \
                 joins spread over one interval, keyframe cache {}",
                TTFF_KEYFRAME_INTERVAL.as_secs(),
                if cache { "on" } else { "off" }
            )
        } else {
            "VP8 2.5 Mbit/s + Opus".to_string()
        };
        format!(
            "{} stream{} × {} viewers, {media}",
            self.streams,
            if self.streams == 1 { "" } else { "s" },
            self.viewers
        )
    }
}

/// What every run of the benchmark needs.
struct Context {
    cli: Cli,
    bed: Testbed,
    binaries: Binaries,
    settings: ServerSettings,
    raw: PathBuf,
    priority_refused: bool,
}

fn main() -> ExitCode {
    let mut cli = Cli::parse();
    if cli.simulcast_figures {
        cli.scenarios = SIMULCAST_FIGURES.map(String::from).to_vec();
    }
    if cli.rooms_figures {
        cli.scenarios = ROOMS_FIGURES.map(String::from).to_vec();
    }
    if cli.smoke {
        cli.scenarios = vec!["video-1x10".into(), "rooms-2x3".into()];
        cli.duration = Duration::from_secs(3);
        cli.warmup = Duration::from_secs(1);
        cli.repeat = 1;
    }
    match run(cli) {
        Ok(code) => code,
        Err(message) => {
            eprintln!("error: {message}");
            ExitCode::from(2)
        }
    }
}

fn run(cli: Cli) -> Result<ExitCode, String> {
    let scenarios: Vec<Scenario> = cli
        .scenarios
        .iter()
        .map(|s| {
            Scenario::parse(s).ok_or_else(|| {
                format!(
                    "--scenarios: `{s}` is not video-1xN, audio-1xN, streams-SxV, rooms-RxP \
                     (P at least 2), simulcast-1xN, ttff-1xN or ttff-nocache-1xN"
                )
            })
        })
        .collect::<Result<_, _>>()?;
    let variants: Vec<(String, Variant)> = cli
        .variants
        .iter()
        .map(|v| {
            Variant::parse(v).map(|p| (v.clone(), p)).ok_or_else(|| {
                format!(
                    "--variants: unknown `{v}` (known: {}, ringcast)",
                    VARIANTS.join(", ")
                )
            })
        })
        .collect::<Result<_, _>>()?;
    let bin_dir = match &cli.bin_dir {
        Some(dir) => dir.clone(),
        None => std::env::current_exe()
            .ok()
            .and_then(|p| p.parent().map(Path::to_path_buf))
            .ok_or("cannot find this program's directory: give --bin-dir")?,
    };
    let binaries = Binaries {
        ringcast: bin_dir.join("ringcast"),
        loadtest: bin_dir.join("ringcast-loadtest"),
        janus: janus_binary(),
    };
    for path in [&binaries.ringcast, &binaries.loadtest] {
        if !path.exists() {
            return Err(format!(
                "{} is missing: cargo build --release -p ringcast -p ringcast-loadtest",
                path.display()
            ));
        }
    }
    let date = ringcast_loadtest::clock::rfc3339_now();
    let out = cli.out.clone().unwrap_or_else(|| {
        PathBuf::from("target/bench").join(date.replace(':', "-").trim_end_matches('Z'))
    });
    let raw = out.join("raw");
    std::fs::create_dir_all(&raw).map_err(|e| format!("{}: {e}", raw.display()))?;
    let bed = Testbed::create(&format!("b{}", std::process::id() % 1_000_000))?;
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let settings = ServerSettings {
        shards: cli.shards,
        janus_event_loops: cli.janus_event_loops.unwrap_or(cores).max(1),
        dir: out.clone(),
    };
    let mut ctx = Context {
        cli,
        bed,
        binaries,
        settings,
        raw,
        priority_refused: false,
    };

    let mut cells = Vec::new();
    let total = scenarios.len() * variants.len();
    for scenario in &scenarios {
        for (name, variant) in &variants {
            eprintln!(
                "== [{}/{total}] {} x {name}",
                cells.len() + 1,
                scenario.name
            );
            let cell = run_cell(&mut ctx, scenario, name, *variant);
            match (&cell.failed, cell.median) {
                (Some(why), _) => eprintln!("   failed: {why}"),
                (None, Some(m)) => eprintln!(
                    "   {:.2} us/packet, {:.0} packets/s, loss {:.2} %, {:.0}/{:.0} viewers",
                    m.cpu_us_per_packet,
                    m.forwarded_pps,
                    m.loss_pct,
                    m.viewers_connected,
                    m.viewers_requested
                ),
                (None, None) => {}
            }
            cells.push(cell);
        }
    }
    results::fill_ratios(&mut cells);

    let cli = &ctx.cli;
    let mut settings = format!(
        "ringcast {} shard{} (unpinned), Janus event_loops = {}, loadtest with {} media thread{}, \
         joins at {}/s, {} s warm-up + {} s measured, {}",
        cli.shards,
        if cli.shards == 1 { "" } else { "s" },
        ctx.settings.janus_event_loops,
        cli.loadtest_threads,
        if cli.loadtest_threads == 1 { "" } else { "s" },
        cli.join_rate,
        cli.warmup.as_secs_f64(),
        cli.duration.as_secs_f64(),
        if cli.repeat == 1 {
            "one run each".to_string()
        } else {
            format!("median of {} runs", cli.repeat)
        },
    );
    settings.push_str(if cli.keep_priority {
        ", server and loadtest at the runner's own priority (--keep-priority)"
    } else if ctx.priority_refused {
        ", normal priority (autogroup refused)"
    } else {
        ", server and loadtest at autogroup nice -20"
    });
    if cli.garbage_flood {
        settings.push_str(&format!(
            ", garbage flood {} datagrams/s in an extra run",
            cli.garbage_rate
        ));
    }
    let results = Results {
        machine: machine(date),
        settings,
        scenarios: scenarios
            .iter()
            .map(|s| ScenarioInfo {
                name: s.name.clone(),
                description: s.description(),
            })
            .collect(),
        variants: variants.iter().map(|(n, _)| n.clone()).collect(),
        cells,
    };
    let markdown = results::markdown(&results);
    let json = serde_json::to_string_pretty(&results).map_err(|e| e.to_string())?;
    for (name, text) in [
        ("results.json", json + "\n"),
        ("results.md", markdown.clone()),
        ("report.html", results::html(&results)),
    ] {
        let path = out.join(name);
        std::fs::write(&path, text).map_err(|e| format!("{}: {e}", path.display()))?;
    }
    println!("{markdown}");
    eprintln!("results in {}", out.display());
    let errors: Vec<String> = results
        .cells
        .iter()
        .filter(|c| c.has_errors())
        .map(|c| format!("{} x {}", c.scenario, c.variant))
        .collect();
    if !errors.is_empty() {
        eprintln!("cells with errors: {}", errors.join(", "));
        if cli.smoke {
            return Ok(ExitCode::from(1));
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Every run of one scenario against one variant.
fn run_cell(ctx: &mut Context, scenario: &Scenario, name: &str, variant: Variant) -> Cell {
    let mut cell = Cell {
        scenario: scenario.name.clone(),
        variant: name.to_string(),
        ..Cell::default()
    };
    let mut flood = Flood::default();
    let mut flooded_runs = Vec::new();
    for repeat in 0..ctx.cli.repeat {
        let passes: &[bool] = if ctx.cli.garbage_flood {
            &[false, true]
        } else {
            &[false]
        };
        for &flooded in passes {
            let tag = format!(
                "{}-{name}-{repeat}{}",
                scenario.name,
                if flooded { "-flood" } else { "" }
            );
            match one_run(ctx, scenario, variant, &tag, flooded) {
                Ok((summary, sent, drops)) => {
                    let figures = Figures::from_summary(&summary);
                    for (cause, n) in summary.errors {
                        *cell.errors.entry(cause).or_default() += n;
                    }
                    cell.warnings.extend(summary.bottleneck_warning);
                    if flooded {
                        flood.sent += sent;
                        for (cause, n) in drops {
                            *flood.drops.entry(cause).or_default() += n;
                        }
                        flooded_runs.push(figures);
                    } else {
                        cell.generator_socket_drops += summary.generator_socket_drops.unwrap_or(0);
                        cell.runs.push(figures);
                    }
                }
                Err(why) => {
                    cell.failed = Some(why);
                    return cell;
                }
            }
        }
    }
    cell.median = Figures::median(&cell.runs);
    if ctx.cli.garbage_flood {
        flood.loss_pct_clean = cell.median.map_or(0.0, |m| m.loss_pct);
        flood.flooded = Figures::median(&flooded_runs);
        flood.loss_pct_flooded = flood.flooded.map_or(0.0, |m| m.loss_pct);
        cell.flood = Some(flood);
    }
    cell
}

/// Start the server, run the loadtest (flooded or not), stop the server. Returns the summary,
/// the garbage sent and the growth of the server's drop counters.
fn one_run(
    ctx: &mut Context,
    scenario: &Scenario,
    variant: Variant,
    tag: &str,
    flooded: bool,
) -> Result<(Summary, u64, BTreeMap<String, u64>), String> {
    let server_log = ctx.raw.join(format!("{tag}.server.log"));
    let server = servers::start(
        variant,
        &ctx.bed,
        &ctx.binaries,
        &ctx.settings,
        &scenario.server_env(),
        &server_log,
    )?;
    if !ctx.cli.keep_priority && !servers::raise_priority(server.pid) {
        ctx.priority_refused = true;
    }
    let drops_before = server.stats_url.as_deref().and_then(servers::drops);
    let garbage = if flooded {
        Some(flood::Flood::start(
            ctx.bed.server_ip,
            server.pid,
            &servers::flood_sources(&ctx.bed),
            ctx.cli.garbage_rate,
        )?)
    } else {
        None
    };
    let summary = run_loadtest(ctx, scenario, &server, tag);
    let sent = garbage.map_or(0, flood::Flood::stop);
    let drops_after = server.stats_url.as_deref().and_then(servers::drops);
    let drops = match (drops_before, drops_after) {
        (Some(before), Some(after)) => after
            .into_iter()
            .map(|(k, v)| {
                let was = before.get(&k).copied().unwrap_or(0);
                (k, v.saturating_sub(was))
            })
            .collect(),
        _ => BTreeMap::new(),
    };
    drop(server);
    Ok((summary?, sent, drops))
}

/// One `ringcast-loadtest broadcast` (or `rooms`) run against `server`.
fn run_loadtest(
    ctx: &mut Context,
    scenario: &Scenario,
    server: &Running,
    tag: &str,
) -> Result<Summary, String> {
    let cli = &ctx.cli;
    let json = ctx.raw.join(format!("{tag}.json"));
    let stdout = ctx.raw.join(format!("{tag}.txt"));
    let stderr = ctx.raw.join(format!("{tag}.log"));
    let ms = |d: Duration| format!("{}ms", d.as_millis());
    let mut command = std::process::Command::new("setsid");
    command
        .arg(&ctx.binaries.loadtest)
        .args(scenario.loadtest_shape())
        .args(["--url", &server.url, "--target", server.target])
        .args([
            "--join-rate",
            &format!("{}/s", scenario.join_rate(cli.join_rate)),
        ])
        .args(["--duration", &ms(cli.duration), "--warmup", &ms(cli.warmup)])
        .args(["--threads", &cli.loadtest_threads.to_string()])
        .args(["--source-range", &ctx.bed.source_range_arg()])
        .args(["--server-pid", &server.pid.to_string()])
        .args(scenario.loadtest_args())
        .arg("--json")
        .arg(&json);
    let open = |p: &Path| std::fs::File::create(p).map_err(|e| format!("{}: {e}", p.display()));
    let mut child = command
        .stdin(Stdio::null())
        .stdout(open(&stdout)?)
        .stderr(open(&stderr)?)
        .spawn()
        .map_err(|e| format!("loadtest: cannot start: {e}"))?;
    if !cli.keep_priority && !servers::raise_priority(child.id()) {
        ctx.priority_refused = true;
    }
    let joins = Duration::from_secs_f64(
        f64::from(scenario.sessions(server.target == "janus")) / scenario.join_rate(cli.join_rate),
    );
    let deadline = Instant::now() + joins + cli.warmup + cli.duration + Duration::from_secs(60);
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if Instant::now() > deadline => {
                let _ = child.kill();
                let _ = child.wait();
                return Err("loadtest: did not finish in time (killed)".into());
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(100)),
            Err(e) => return Err(format!("loadtest: {e}")),
        }
    };
    let text = std::fs::read_to_string(&json).map_err(|_| {
        let why = servers::error_line(&std::fs::read_to_string(&stderr).unwrap_or_default());
        format!("loadtest ({status}): {why}")
    })?;
    serde_json::from_str(&text).map_err(|e| format!("loadtest JSON {}: {e}", json.display()))
}

/// CPU model, cores, kernel.
fn machine(date: String) -> Machine {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let cpu = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .and_then(|l| l.split_once(':'))
        .map_or("unknown CPU".into(), |(_, v)| v.trim().to_string());
    Machine {
        date,
        cpu,
        cores: std::thread::available_parallelism().map_or(1, |n| n.get()),
        kernel: std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .map_or("unknown".into(), |k| k.trim().to_string()),
    }
}

/// `10s`, `500ms`, `2m`.
fn duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let (number, unit) = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .map_or((text, "s"), |i| text.split_at(i));
    let value: f64 = number
        .parse()
        .map_err(|_| format!("`{text}`: expected e.g. 10s, 500ms, 2m"))?;
    let seconds = match unit {
        "ms" => value / 1000.0,
        "s" => value,
        "m" => value * 60.0,
        _ => return Err(format!("`{text}`: unit ms, s or m")),
    };
    if !(seconds.is_finite() && seconds > 0.0 && seconds <= 86_400.0) {
        return Err(format!("`{text}`: between 1ms and 24h"));
    }
    Ok(Duration::from_secs_f64(seconds))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scenarios_parse() {
        let s = Scenario::parse("video-1x200").unwrap();
        assert_eq!((s.streams, s.viewers, s.audio_only), (1, 200, false));
        assert!(Scenario::parse("audio-1x200").unwrap().audio_only);
        let streams = Scenario::parse("streams-10x20").unwrap();
        assert_eq!(
            (streams.streams, streams.viewers, streams.rooms),
            (10, 20, false)
        );
        assert!(streams.description().starts_with("10 streams × 20 viewers"));
        assert_eq!(
            streams.loadtest_shape(),
            ["broadcast", "--streams", "10", "--viewers", "20"]
        );
        assert_eq!(streams.sessions(true), 200);
        let rooms = Scenario::parse("rooms-50x6").unwrap();
        assert!(rooms.rooms && !rooms.audio_only);
        assert_eq!(
            rooms.loadtest_shape(),
            [
                "rooms",
                "--rooms",
                "50",
                "--participants",
                "6",
                "--video-slots",
                "5",
                "--audio-slots",
                "3"
            ]
        );
        assert!(rooms.loadtest_args().is_empty());
        // Janus: a publisher and a subscriber per participant.
        assert_eq!((rooms.sessions(false), rooms.sessions(true)), (300, 600));
        assert!(rooms.description().starts_with("50 rooms × 6 participants"));
        for bad in [
            "video-2x5",
            "video-1x0",
            "rooms-0x5",
            "rooms-3x1",
            "streams-0x5",
            "x-1x1",
            "video",
            "video-1x",
        ] {
            assert_eq!(Scenario::parse(bad), None, "{bad}");
        }
        for name in SCENARIOS
            .iter()
            .chain(&SIMULCAST_FIGURES)
            .chain(&ROOMS_FIGURES)
        {
            assert!(Scenario::parse(name).is_some(), "{name}");
        }
        // The plain scenarios pass the loadtest nothing new.
        assert!(
            Scenario::parse("video-1x200")
                .unwrap()
                .loadtest_args()
                .is_empty()
        );
        assert_eq!(
            Scenario::parse("audio-1x5").unwrap().loadtest_args(),
            ["--audio-only"]
        );
        assert!(
            Scenario::parse("video-1x5")
                .unwrap()
                .server_env()
                .is_empty()
        );
    }

    #[test]
    fn simulcast_and_first_frame_scenarios() {
        let s = Scenario::parse("simulcast-1x200").unwrap();
        assert!(s.simulcast && s.ttff.is_none());
        assert_eq!(
            s.loadtest_args(),
            ["--layers", "3", "--viewer-layer", "mixed"]
        );
        assert_eq!(s.join_rate(100), 100.0);
        assert!(s.description().contains("3 simulcast layers"));
        let on = Scenario::parse("ttff-1x40").unwrap();
        let off = Scenario::parse("ttff-nocache-1x40").unwrap();
        assert_eq!((on.ttff, off.ttff), (Some(true), Some(false)));
        assert_eq!(off.viewers, 40);
        for s in [&on, &off] {
            assert_eq!(
                s.loadtest_args(),
                ["--ignore-pli", "--keyframe-interval", "4000ms"]
            );
            // 40 joins over one 4 s keyframe interval.
            assert_eq!(s.join_rate(100), 10.0);
        }
        assert!(on.server_env().is_empty());
        assert_eq!(off.server_env(), [("RINGCAST_MEDIA_GOP_CACHE_BYTES", "0")]);
        assert!(off.description().contains("cache off"));
        for bad in [
            "simulcast-2x5",
            "ttff-nocache-2x5",
            "video-nocache-1x5",
            "ttff-cache-1x5",
        ] {
            assert_eq!(Scenario::parse(bad), None, "{bad}");
        }
        let cli = Cli::try_parse_from(["x", "--simulcast-figures"]).unwrap();
        assert!(cli.simulcast_figures);
        let cli = Cli::try_parse_from(["x", "--rooms-figures", "--keep-priority"]).unwrap();
        assert!(cli.rooms_figures && cli.keep_priority);
    }

    #[test]
    fn cli_and_durations() {
        assert_eq!(duration("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(duration("3"), Ok(Duration::from_secs(3)));
        for bad in ["", "ten", "0s", "5h", "-1s", "NaNs"] {
            assert!(duration(bad).is_err(), "{bad}");
        }
        let cli = Cli::try_parse_from(["x", "--variants", "janus,ringcast", "--smoke"]).unwrap();
        assert_eq!(cli.variants, ["janus", "ringcast"]);
        assert_eq!(cli.scenarios.len(), SCENARIOS.len());
        assert!(Cli::try_parse_from(["x", "--repeat", "0"]).is_err());
    }
}
