//! `ringcast-loadtest`: a WHIP/WHEP swarm that measures what operators ask about: join time,
//! one-way latency, loss, bitrate, and the server's CPU per forwarded packet.
//!
//! Publishers and viewers are str0m peers (RTP mode), many per thread, on ringcast-net's epoll
//! engine (one UDP socket per worker thread; each session has its own source address on it, a
//! loopback one or one from `--source-range`, see [`worker`]). Signalling is plain WHIP/WHEP
//! over HTTP, so any server that speaks them can be loaded, or Janus's VideoRoom API
//! (`--target janus`, see [`janus`]).
#![forbid(unsafe_code)]

mod first_frame;
mod http;
mod janus;
mod media;
mod members;
mod negotiation;
mod procfs;
mod report;
mod room_join;
mod rooms;
mod session;
mod signal;
mod soak;
mod stats;
mod swarm;
mod tally;
mod units;
mod whep_layer;
mod worker;

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

use ringcast_loadtest::clock::unix_seconds;
use ringcast_loadtest::summary::{self, Summary};

use crate::media::VideoCodec;
use crate::signal::Target;
use crate::swarm::Plan;
use crate::whep_layer::ViewerLayer;
use crate::worker::MediaPlan;

/// A WHIP/WHEP load generator: publishers and viewers as str0m peers, many per thread.
#[derive(Debug, Parser)]
#[command(name = "ringcast-loadtest", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    scenario: Scenario,
}

#[derive(Debug, Subcommand)]
enum Scenario {
    /// P streams, each with one WHIP publisher and V WHEP viewers.
    Broadcast {
        /// Streams (one publisher each).
        #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=10_000))]
        streams: u32,
        /// Viewers per stream.
        #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u32).range(0..=1_000_000))]
        viewers: u32,
        /// Viewer joins per second, e.g. 50/s.
        #[arg(long, default_value = "50/s", value_parser = units::rate)]
        join_rate: f64,
        #[command(flatten)]
        common: Common,
    },
    /// One stream; viewers join at --rate up to --up-to, then hold for --duration.
    Ramp {
        /// Joins per second, e.g. 20/s.
        #[arg(long, value_parser = units::rate)]
        rate: f64,
        /// Viewers in the end.
        #[arg(long, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
        up_to: u32,
        #[command(flatten)]
        common: Common,
    },
    /// R rooms × P participants in group calls: each publishes audio and video and receives
    /// on S video and A audio slots (ringcast rooms, or Janus VideoRoom with --target janus).
    Rooms(rooms::RoomsArgs),
    /// A long-running stream with steady viewers while --cycles WHIP/WHEP sessions join and
    /// leave; checks that the server's memory and gauges come back (see the README).
    Soak(soak::SoakArgs),
}

#[derive(Debug, Args)]
struct Common {
    /// Server base URL (WHIP at /whip/<stream>, WHEP at /whep/<stream>); with --target janus
    /// the Janus HTTP API, e.g. http://10.213.5.2:8088/janus.
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    url: String,
    /// The server's signalling: whip (WHIP/WHEP) or janus (Janus VideoRoom over HTTP, one
    /// room per stream, created when missing and destroyed at the end if this run created it).
    #[arg(long, value_enum, default_value_t = Target::Whip)]
    target: Target,
    #[command(flatten)]
    rx_polling: swarm::RxPolling,
    /// Publishers send audio only (Opus, 50 packets/s); viewers ask for audio only.
    #[arg(long)]
    audio_only: bool,
    /// Measured window, after the last join and the warm-up: 10s, 500ms, 2m.
    #[arg(long, default_value = "10s", value_parser = units::duration)]
    duration: Duration,
    /// Excluded from the measurement, after the last join.
    #[arg(long, default_value = "2s", value_parser = units::duration)]
    warmup: Duration,
    /// Video codec.
    #[arg(long, value_enum, default_value_t = VideoCodec::Vp8)]
    codec: VideoCodec,
    /// Video bitrate per publisher: 2500kbps, 2.5mbps.
    #[arg(long, default_value = "2500kbps", value_parser = units::bitrate)]
    bitrate: u64,
    /// Video frames per second.
    #[arg(long, default_value = "30", value_parser = units::fps)]
    fps: u32,
    /// Time between keyframes (publishers also answer PLI with one, unless --ignore-pli).
    #[arg(long, default_value = "2s", value_parser = units::duration)]
    keyframe_interval: Duration,
    /// Publishers send this many simulcast layers (1-4) in one m=video, as OBS 32.1 and
    /// browsers do: rid 0 at --bitrate and 1280x720, each next rid half the width and height
    /// at about a third of the bitrate. Without it, one plain video stream (640x360).
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=4))]
    layers: Option<u32>,
    /// Publishers ignore keyframe requests (PLI/FIR), as OBS and FFmpeg do: viewers wait for
    /// the next of every --keyframe-interval's keyframes, or the server's keyframe cache.
    #[arg(long)]
    ignore_pli: bool,
    /// The layer viewers ask for with the WHEP layer extension: a rid, `mixed` (viewer i of a
    /// stream asks for layer i mod --layers) or `auto` (no request: the server chooses).
    #[arg(long, default_value = "auto", value_parser = ViewerLayer::parse)]
    viewer_layer: ViewerLayer,
    /// Fraction of viewers that verify payloads and measure latency (the rest count headers).
    #[arg(long, default_value = "0.1", value_parser = units::fraction)]
    verify_fraction: f64,
    /// Media worker threads (default: one per core).
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=1024))]
    threads: Option<u32>,
    /// Signalling (HTTP) threads.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..=256))]
    signal_threads: u32,
    /// HTTP timeout per request.
    #[arg(long, default_value = "5s", value_parser = units::duration)]
    http_timeout: Duration,
    /// A session without media this long after its POST counts as failed.
    #[arg(long, default_value = "10s", value_parser = units::duration)]
    connect_timeout: Duration,
    /// Stream name prefix (streams are <prefix>-0, <prefix>-1, ...); default: unique per run.
    #[arg(long)]
    stream_prefix: Option<String>,
    /// Source addresses for the sessions when the target is not on loopback: an IPv4 network
    /// routed to this host as local (`ip route add local 10.214.0.0/16 dev lo`), each session
    /// taking its own address. Loopback targets use 127.64.0.0/10 and need nothing.
    #[arg(long, value_parser = units::ipv4_net)]
    source_range: Option<(std::net::Ipv4Addr, u8)>,
    /// Write the summary as JSON.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Write an HTML report with plots.
    #[arg(long)]
    report: Option<PathBuf>,
    /// The server's pid: its CPU per forwarded packet and memory per participant, from /proc.
    #[arg(long)]
    server_pid: Option<u32>,
    /// Fail (exit 1) when loss is above this: 1%.
    #[arg(long, value_parser = units::percent)]
    max_loss: Option<f64>,
    /// Fail when latency p99 is above this many milliseconds.
    #[arg(long, value_parser = clap::value_parser!(f64))]
    max_p99_ms: Option<f64>,
    /// Fail when fewer viewers than this connected: 100%.
    #[arg(long, value_parser = units::percent)]
    min_connected: Option<f64>,
    /// Testing aid: viewers drop this share of incoming RTP datagrams before str0m, with NACK
    /// off, so the reported loss can be checked against it.
    #[arg(long, hide = true, default_value = "0%", value_parser = units::percent)]
    simulate_loss: f64,
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("RINGCAST_LOADTEST_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let interrupted = Arc::new(AtomicBool::new(false));
    if let Scenario::Soak(args) = &cli.scenario {
        watch_ctrl_c(interrupted.clone());
        return soak::main(args, &interrupted);
    }
    if let Scenario::Rooms(args) = &cli.scenario {
        watch_ctrl_c(interrupted.clone());
        return rooms::main(args, &interrupted);
    }
    let (plan, common) = match plan_of(cli.scenario) {
        Ok(p) => p,
        Err(message) => {
            eprintln!("error: {message}");
            return ExitCode::from(2);
        }
    };
    watch_ctrl_c(interrupted.clone());
    let mut summary = match swarm::run(&plan, &interrupted) {
        Ok(s) => s,
        Err(error) => {
            eprintln!("error: {error:#}");
            return ExitCode::from(2);
        }
    };
    summary.threshold_failures = thresholds(&summary, &common);
    print!("{}", table(&summary));
    if let Some(warning) = &summary.bottleneck_warning {
        eprintln!("\n!!! WARNING: {warning}\n");
    }
    if let Some(path) = &common.json
        && let Err(error) = write_json(path, &summary)
    {
        eprintln!("error: cannot write {}: {error}", path.display());
        return ExitCode::from(2);
    }
    if let Some(path) = &common.report
        && let Err(error) = report::write_html(&summary, path)
    {
        eprintln!("error: cannot write {}: {error}", path.display());
        return ExitCode::from(2);
    }
    verdict(
        "threshold failed",
        &summary.threshold_failures,
        &interrupted,
    )
}

/// `value` as pretty JSON in `path`.
fn write_json(path: &std::path::Path, value: &impl serde::Serialize) -> std::io::Result<()> {
    let json = serde_json::to_string_pretty(value).map_err(std::io::Error::other)?;
    std::fs::write(path, json + "\n")
}

/// The exit status of a run: 1 with each failure printed, 130 when interrupted, else success.
fn verdict(label: &str, failures: &[String], interrupted: &AtomicBool) -> ExitCode {
    if !failures.is_empty() {
        for failure in failures {
            eprintln!("{label}: {failure}");
        }
        return ExitCode::from(1);
    }
    if interrupted.load(Ordering::Relaxed) {
        return ExitCode::from(130);
    }
    ExitCode::SUCCESS
}

fn plan_of(scenario: Scenario) -> Result<(Plan, Common), String> {
    let (streams, viewers, join_rate, common, name) = match scenario {
        Scenario::Broadcast {
            streams,
            viewers,
            join_rate,
            common,
        } => (
            streams,
            viewers,
            join_rate,
            common,
            format!("broadcast {streams}x{viewers}"),
        ),
        Scenario::Ramp {
            rate,
            up_to,
            common,
        } => (1, up_to, rate, common, format!("ramp {up_to} at {rate}/s")),
        Scenario::Soak(_) => return Err("soak has no swarm plan".into()),
        Scenario::Rooms(_) => return Err("rooms has its own plan".into()),
    };
    if !common.url.starts_with("http://") {
        return Err(format!(
            "--url {:?}: expected an http:// URL (no TLS), e.g. http://127.0.0.1:8080",
            common.url
        ));
    }
    if http::host_of(&common.url).is_none() {
        return Err(format!("--url {:?}: no host", common.url));
    }
    if common.keyframe_interval < Duration::from_millis(100) {
        return Err("--keyframe-interval: at least 100ms".into());
    }
    let threads = common.threads.map_or_else(
        || std::thread::available_parallelism().map_or(1, |n| n.get()),
        |t| t as usize,
    );
    let keyframe_every =
        (common.keyframe_interval.as_secs_f64() * f64::from(common.fps)).round() as u32;
    let layers = match common.layers {
        None => Vec::new(),
        Some(_) if common.audio_only => {
            return Err("--layers: simulcast is video; drop --audio-only".into());
        }
        Some(_) if common.target == Target::Janus => {
            return Err("--layers: simulcast publishing is for --target whip only".into());
        }
        Some(n) => media::simulcast_layers(n as usize, common.bitrate, common.fps, keyframe_every),
    };
    match &common.viewer_layer {
        ViewerLayer::Auto => {}
        _ if layers.is_empty() => {
            return Err("--viewer-layer: viewers ask for a layer of --layers N simulcast".into());
        }
        ViewerLayer::Mixed => {}
        ViewerLayer::Rid(rid) if layers.iter().any(|l| l.rid == *rid) => {}
        ViewerLayer::Rid(rid) => {
            let rids: Vec<&str> = layers.iter().map(|l| l.rid.as_str()).collect();
            return Err(format!(
                "--viewer-layer {rid}: the publishers send rids {}",
                rids.join(", ")
            ));
        }
    }
    let media = if common.audio_only {
        "audio only".to_string()
    } else {
        format!(
            "{} {}kbps {}fps",
            match common.codec {
                VideoCodec::Vp8 => "vp8",
                VideoCodec::H264 => "h264",
            },
            common.bitrate / 1000,
            common.fps
        )
    };
    let mut extras = String::new();
    if !layers.is_empty() {
        extras.push_str(&format!(" simulcast {} layers", layers.len()));
        if common.viewer_layer != ViewerLayer::Auto {
            let choice = match &common.viewer_layer {
                ViewerLayer::Rid(rid) => rid.as_str(),
                _ => "mixed",
            };
            extras.push_str(&format!(" viewers on {choice}"));
        }
    }
    if common.ignore_pli {
        extras.push_str(&format!(
            " ignoring PLI keyframes every {}ms",
            common.keyframe_interval.as_millis()
        ));
    }
    let via = match common.target {
        Target::Whip => "",
        Target::Janus => " via janus videoroom",
    };
    let scenario = format!("{name} {media}{extras}{via}");
    let plan = Plan {
        scenario,
        url: common.url.trim_end_matches('/').to_string(),
        target: common.target,
        streams: streams as usize,
        viewers_per_stream: viewers as usize,
        join_rate,
        warmup: common.warmup,
        duration: common.duration,
        verify_fraction: common.verify_fraction,
        threads,
        signal_threads: common.signal_threads as usize,
        http_timeout: common.http_timeout,
        server_pid: common.server_pid,
        source_range: common.source_range,
        stream_prefix: common
            .stream_prefix
            .clone()
            .unwrap_or_else(|| format!("lt{}-{}", std::process::id(), unix_seconds() % 100_000)),
        media: MediaPlan {
            codec: common.codec,
            video: !common.audio_only,
            fps: common.fps,
            frame_sizes: media::frame_sizes(common.bitrate, common.fps, keyframe_every),
            layers,
            ignore_pli: common.ignore_pli,
            keyframe_interval: common.keyframe_interval,
            simulate_loss: common.simulate_loss / 100.0,
            connect_timeout: common.connect_timeout,
            stall_after: Duration::from_secs(3),
            speaker_turn: Duration::from_secs(3),
            rx_poll_us: common.rx_polling.rx_poll_us,
        },
        viewer_layer: common.viewer_layer.clone(),
    };
    Ok((plan, common))
}

/// Ctrl-C sets `flag` (the run ends early and prints what it has); a second Ctrl-C exits.
fn watch_ctrl_c(flag: Arc<AtomicBool>) {
    let spawned = std::thread::Builder::new()
        .name("ctrl-c".into())
        .spawn(move || {
            let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            runtime.block_on(async {
                while tokio::signal::ctrl_c().await.is_ok() {
                    if flag.swap(true, Ordering::SeqCst) {
                        std::process::exit(130);
                    }
                }
            });
        });
    if spawned.is_err() {
        tracing::warn!("no Ctrl-C handler: an interrupted run prints no summary");
    }
}

/// Threshold checks: one line per failure.
fn thresholds(s: &Summary, c: &Common) -> Vec<String> {
    let mut out = Vec::new();
    if let Some(max) = c.max_loss
        && s.loss_pct > max
    {
        out.push(format!("loss {:.3}% > --max-loss {max}%", s.loss_pct));
    }
    if let Some(max) = c.max_p99_ms {
        if s.latency_ms.count == 0 {
            out.push("no latency samples (no full viewer got media) for --max-p99-ms".into());
        } else if s.latency_ms.p99 > max {
            out.push(format!(
                "latency p99 {:.2} ms > --max-p99-ms {max} ms",
                s.latency_ms.p99
            ));
        }
    }
    if let Some(min) = c.min_connected {
        let pct = if s.viewers.requested == 0 {
            100.0
        } else {
            s.viewers.connected as f64 * 100.0 / s.viewers.requested as f64
        };
        if pct < min {
            out.push(format!(
                "{} of {} viewers connected ({pct:.1}%) < --min-connected {min}%",
                s.viewers.connected, s.viewers.requested
            ));
        }
    }
    out
}

/// The final summary as a text table.
fn table(s: &Summary) -> String {
    use std::fmt::Write as _;
    let mut t = String::new();
    let p = |x: &summary::Percentiles| {
        format!(
            "p50 {:>8.2}  p95 {:>8.2}  p99 {:>8.2}  p99.9 {:>8.2}  max {:>8.2}  (n={})",
            x.p50, x.p95, x.p99, x.p999, x.max, x.count
        )
    };
    let _ = writeln!(t, "\n== ringcast-loadtest: {} -> {}", s.scenario, s.target);
    let _ = writeln!(
        t,
        "started {}, ran {:.1} s, measured {:.1} s",
        s.started_at, s.duration_s, s.measured_s
    );
    let _ = writeln!(
        t,
        "publishers    {:>6} requested {:>6} connected {:>6} failed",
        s.publishers.requested, s.publishers.connected, s.publishers.failed
    );
    let _ = writeln!(
        t,
        "viewers       {:>6} requested {:>6} connected {:>6} failed   ({} full)",
        s.viewers.requested, s.viewers.connected, s.viewers.failed, s.full_viewers
    );
    let _ = writeln!(t, "join ms       {}", p(&s.join_ms));
    let f = &s.first_frame_ms;
    let _ = writeln!(
        t,
        "first frame ms p10 {:>7.2}  p50 {:>8.2}  p90 {:>8.2}  p95 {:>8.2}  p99 {:>8.2}  \
         max {:>8.2}  (n={}, {} without)",
        f.p10, f.p50, f.p90, f.p95, f.p99, f.max, f.count, f.missing
    );
    let _ = writeln!(t, "latency ms    {}", p(&s.latency_ms));
    let _ = writeln!(
        t,
        "packets       sent {}  received {}  loss {:.3}%  duplicates {}  reorders {}  corrupt {}",
        s.packets_sent, s.packets_received, s.loss_pct, s.duplicates, s.reorders, s.corrupt
    );
    let _ = writeln!(
        t,
        "bitrate       {:.0} kbit/s per viewer",
        s.bitrate_per_viewer_kbps
    );
    let _ = writeln!(
        t,
        "loadtest      {:.0}% CPU of one core in the window ({:.2} us per received packet, \
         {:.3} ms/s per viewer), {} media threads{}",
        s.loadtest_cpu_pct,
        s.loadtest_cpu_pct * 1e4 * s.measured_s / s.packets_received.max(1) as f64,
        s.loadtest_cpu_pct * 10.0 / s.viewers.connected.max(1) as f64,
        s.loadtest_threads,
        if s.bottleneck_warning.is_some() {
            "  ** BOTTLENECK **"
        } else {
            ""
        }
    );
    s.write_socket_drops(&mut t);
    if let Some(sv) = &s.server {
        let _ = writeln!(
            t,
            "server        pid {}: {:.2} CPU s ({:.0}% of a core), {:.3} us per forwarded packet, \
             {:.3} ms/s per viewer, RSS {} KiB ({:.0} KiB per participant)",
            sv.pid,
            sv.cpu_s,
            sv.cpu_pct,
            sv.cpu_us_per_packet,
            sv.cpu_ms_per_viewer_s,
            sv.rss_kib,
            sv.rss_kib_per_participant
        );
    }
    s.write_errors(&mut t);
    t
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cli_rejects_bad_units() {
        let bad = [
            vec!["broadcast", "--bitrate", "fast"],
            vec!["broadcast", "--duration", "ten"],
            vec!["broadcast", "--max-loss", "200%"],
            vec!["broadcast", "--join-rate", "0/s"],
            vec!["ramp", "--rate", "5/s"],
            vec!["broadcast", "--streams", "0"],
            vec!["broadcast", "--codec", "av1"],
            vec!["soak"], // no --server-pid
            vec!["soak", "--server-pid", "1", "--publisher-share", "2"],
            vec!["soak", "--server-pid", "1", "--cycles", "0"],
            vec!["soak", "--server-pid", "1", "--hold", "soon"],
        ];
        for args in bad {
            let argv = std::iter::once("ringcast-loadtest").chain(args.iter().copied());
            assert!(Cli::try_parse_from(argv).is_err(), "{args:?} accepted");
        }
        let ok = Cli::try_parse_from([
            "ringcast-loadtest",
            "broadcast",
            "--streams",
            "2",
            "--viewers",
            "5",
            "--bitrate",
            "2.5mbps",
            "--duration",
            "500ms",
            "--max-loss",
            "1%",
            "--codec",
            "h264",
        ])
        .unwrap();
        let (plan, _) = plan_of(ok.scenario).unwrap();
        assert!(plan.media.frame_sizes.0 > 0);
        assert_eq!(plan.duration, Duration::from_millis(500));
        assert_eq!(plan.streams * plan.viewers_per_stream, 10);
        let url = Cli::try_parse_from([
            "x",
            "ramp",
            "--rate",
            "5/s",
            "--up-to",
            "3",
            "--url",
            "https://a",
        ])
        .unwrap();
        assert!(plan_of(url.scenario).is_err());
        let soak = Cli::try_parse_from([
            "x",
            "soak",
            "--server",
            "http://127.0.0.1:9",
            "--server-pid",
            "1",
            "--cycles",
            "200",
        ])
        .unwrap();
        assert!(matches!(soak.scenario, Scenario::Soak(_)));
    }

    fn plan(args: &[&str]) -> Result<Plan, String> {
        let argv = ["ringcast-loadtest", "broadcast"].iter().chain(args);
        let cli = Cli::try_parse_from(argv).map_err(|e| e.to_string())?;
        plan_of(cli.scenario).map(|(plan, _)| plan)
    }

    #[test]
    fn simulcast_and_layer_options() {
        // Off by default: one plain video stream, no layer requests, PLI answered.
        let p = plan(&[]).unwrap();
        assert!(p.media.layers.is_empty() && !p.media.ignore_pli);
        assert_eq!(p.viewer_layer, ViewerLayer::Auto);

        let p = plan(&["--layers", "3", "--viewer-layer", "mixed", "--ignore-pli"]).unwrap();
        let rids: Vec<&str> = p.media.layers.iter().map(|l| l.rid.as_str()).collect();
        assert_eq!(rids, ["0", "1", "2"]);
        assert_eq!(p.media.layers[0].frame_sizes, p.media.frame_sizes);
        assert!(p.media.ignore_pli);
        assert_eq!(p.viewer_layer, ViewerLayer::Mixed);
        assert!(
            p.scenario.contains("simulcast 3 layers viewers on mixed"),
            "{}",
            p.scenario
        );
        assert!(p.scenario.contains("ignoring PLI"), "{}", p.scenario);
        let p = plan(&["--layers", "2", "--viewer-layer", "1"]).unwrap();
        assert_eq!(p.viewer_layer, ViewerLayer::Rid("1".into()));

        for (args, why) in [
            (&["--layers", "0"][..], "1..=4"),
            (&["--layers", "5"], "1..=4"),
            (&["--viewer-layer", "mixed"], "--layers N"),
            (&["--viewer-layer", "0"], "--layers N"),
            (&["--layers", "3", "--viewer-layer", "7"], "rids 0, 1, 2"),
            (
                &["--layers", "3", "--viewer-layer", "a b"],
                "auto, mixed or a rid",
            ),
            (&["--layers", "2", "--audio-only"], "--audio-only"),
            (&["--layers", "2", "--target", "janus"], "whip only"),
        ] {
            let error = plan(args).expect_err(&format!("{args:?} accepted"));
            assert!(error.contains(why), "{args:?}: {error}");
        }
    }
}
