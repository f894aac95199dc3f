//! The `rooms` scenario: R rooms × P participants in group calls. On ringcast each participant
//! is one str0m peer whose offer publishes audio and video (its RFC 6464 audio level loud on
//! its turn, the turn passing round the room every `--speaker-turn`), reserves S video and A
//! audio slots and opens the `ringcast` data channel ([`crate::room_join`]); on Janus's
//! VideoRoom each participant publishes, and once everyone has, subscribes to the feeds it
//! would see on ringcast (the others' video up to S, their audio up to A) in a second peer
//! connection ([`crate::janus`]).
//!
//! Participants join round-robin over the rooms (everyone's first, then everyone's second, …)
//! at `--join-rate`. Each reports what it received per kind of slot in the measured window
//! (packets, bytes, loss from the gaps in each slot's sequence numbers, which the server keeps
//! continuous across source switches), its join time (signalling start → first packet on a
//! slot) and time to its first remote frame (→ first complete keyframe on a video slot), its
//! latency (payload probes, on the `--verify-fraction` that decrypt everything), and the data
//! channel's messages by type. Join and first-frame times count only participants who found
//! someone publishing in their room: on ringcast the first of each room waits for the second.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Sender};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use clap::Args;
use ringcast_loadtest::clock::unix_seconds;
use ringcast_loadtest::summary::{
    Counts, ParticipantReport, Percentiles, RoomsFigures, ServerFigures, SlotFigures, Summary,
    Tick, generator_load,
};
use ringcast_net::Notifier;

use crate::media::{self, VideoCodec};
use crate::negotiation::{Negotiation, SlotCounts};
use crate::procfs::{self, Process};
use crate::session::{Job, Member, Part, Role};
use crate::signal::{Signaller, Target};
use crate::stats;
use crate::swarm::{self, session_ip};
use crate::tally::{Tally, Totals};
use crate::units;
use crate::worker::{Command, MediaPlan};

/// Most participants in one room.
const MAX_PARTICIPANTS: u32 = 64;

/// `ringcast-loadtest rooms`: R rooms × P participants.
#[derive(Debug, Args)]
pub struct RoomsArgs {
    /// Rooms.
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    rooms: u32,
    #[command(flatten)]
    rx_polling: swarm::RxPolling,
    /// Participants per room (each publishes audio and video and receives on its slots).
    #[arg(long, default_value_t = 6, value_parser = clap::value_parser!(u32).range(2..=MAX_PARTICIPANTS as i64))]
    participants: u32,
    /// Video receive slots per participant (recvonly video m-lines).
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u32).range(0..=16))]
    video_slots: u32,
    /// Audio receive slots per participant (recvonly audio m-lines).
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(0..=16))]
    audio_slots: u32,
    /// Server base URL (rooms at /rooms/<room>); with --target janus the Janus HTTP API, e.g.
    /// http://10.213.5.2:8088/janus.
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    url: String,
    /// The server: ringcast (POST /rooms/<room>, one peer connection per participant; `whip`
    /// is a synonym) or janus (VideoRoom, a publisher and a subscriber per participant).
    #[arg(long, value_enum, default_value_t = RoomsTarget::Ringcast)]
    target: RoomsTarget,
    /// Participant joins per second, e.g. 50/s.
    #[arg(long, default_value = "50/s", value_parser = units::rate)]
    join_rate: f64,
    /// Measured window, after the last join and the warm-up: 10s, 500ms, 2m.
    #[arg(long, default_value = "10s", value_parser = units::duration)]
    duration: Duration,
    /// Excluded from the measurement, after the last join.
    #[arg(long, default_value = "2s", value_parser = units::duration)]
    warmup: Duration,
    /// Video codec.
    #[arg(long, value_enum, default_value_t = VideoCodec::Vp8)]
    codec: VideoCodec,
    /// Video bitrate per participant: a group call's camera, 500kbps.
    #[arg(long, default_value = "500kbps", value_parser = units::bitrate)]
    bitrate: u64,
    /// Video frames per second.
    #[arg(long, default_value = "30", value_parser = units::fps)]
    fps: u32,
    /// Time between keyframes (participants also answer PLI with one).
    #[arg(long, default_value = "2s", value_parser = units::duration)]
    keyframe_interval: Duration,
    /// How long each participant's turn as its room's loud speaker lasts.
    #[arg(long, default_value = "3s", value_parser = units::duration)]
    speaker_turn: Duration,
    /// Fraction of participants that decrypt and check every packet and measure latency (the
    /// rest count headers once they have a picture).
    #[arg(long, default_value = "0.2", value_parser = units::fraction)]
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
    /// Room name prefix (rooms are <prefix>-0, <prefix>-1, ...); default: unique per run.
    #[arg(long)]
    room_prefix: Option<String>,
    /// Source addresses for the sessions when the target is not on loopback (as for
    /// broadcast).
    #[arg(long, value_parser = units::ipv4_net)]
    source_range: Option<(std::net::Ipv4Addr, u8)>,
    /// Write the summary as JSON (with every participant's report).
    #[arg(long)]
    json: Option<PathBuf>,
    /// The server's pid: its CPU per forwarded packet and memory per participant, from /proc.
    #[arg(long)]
    server_pid: Option<u32>,
    /// Fail (exit 1) when loss is above this: 0.5%.
    #[arg(long, value_parser = units::percent)]
    max_loss: Option<f64>,
    /// Fail when fewer participants than this received media: 100%.
    #[arg(long, value_parser = units::percent)]
    min_connected: Option<f64>,
}

/// The server a `rooms` run loads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum RoomsTarget {
    /// ringcast's rooms over plain HTTP.
    #[value(alias = "whip")]
    Ringcast,
    /// Janus's VideoRoom over its HTTP API.
    Janus,
}

/// Everything a `rooms` run needs to know.
#[derive(Debug, Clone)]
struct Plan {
    scenario: String,
    url: String,
    target: RoomsTarget,
    rooms: usize,
    per_room: usize,
    slots: SlotCounts,
    join_rate: f64,
    warmup: Duration,
    duration: Duration,
    verify_fraction: f64,
    threads: usize,
    signal_threads: usize,
    http_timeout: Duration,
    server_pid: Option<u32>,
    source_range: Option<(std::net::Ipv4Addr, u8)>,
    prefix: String,
    media: MediaPlan,
}

/// Run `ringcast-loadtest rooms`: the table on stdout, the JSON if asked; exit 1 on a failed
/// threshold, 2 on an error, 130 when interrupted.
pub fn main(args: &RoomsArgs, interrupted: &AtomicBool) -> ExitCode {
    let plan = match plan_of(args) {
        Ok(plan) => plan,
        Err(message) => {
            eprintln!("error: {message}");
            return ExitCode::from(2);
        }
    };
    let mut summary = match run(&plan, interrupted) {
        Ok(s) => s,
        Err(error) => {
            eprintln!("error: {error:#}");
            return ExitCode::from(2);
        }
    };
    summary.threshold_failures = thresholds(&summary, args);
    print!("{}", table(&summary));
    if let Some(warning) = &summary.bottleneck_warning {
        eprintln!("\n!!! WARNING: {warning}\n");
    }
    if let Some(path) = &args.json
        && let Err(error) = crate::write_json(path, &summary)
    {
        eprintln!("error: cannot write {}: {error}", path.display());
        return ExitCode::from(2);
    }
    crate::verdict("threshold failed", &summary.threshold_failures, interrupted)
}

fn plan_of(args: &RoomsArgs) -> Result<Plan, String> {
    if !args.url.starts_with("http://") {
        return Err(format!(
            "--url {:?}: expected an http:// URL (no TLS), e.g. http://127.0.0.1:8080",
            args.url
        ));
    }
    if crate::http::host_of(&args.url).is_none() {
        return Err(format!("--url {:?}: no host", args.url));
    }
    if args.keyframe_interval < Duration::from_millis(100) {
        return Err("--keyframe-interval: at least 100ms".into());
    }
    if args.speaker_turn < Duration::from_millis(100) {
        return Err("--speaker-turn: at least 100ms".into());
    }
    if args.video_slots + args.audio_slots == 0 {
        return Err("--video-slots and --audio-slots: a participant needs a slot".into());
    }
    let threads = args.threads.map_or_else(
        || std::thread::available_parallelism().map_or(1, |n| n.get()),
        |t| t as usize,
    );
    let keyframe_every =
        (args.keyframe_interval.as_secs_f64() * f64::from(args.fps)).round() as u32;
    let codec = match args.codec {
        VideoCodec::Vp8 => "vp8",
        VideoCodec::H264 => "h264",
    };
    let via = match args.target {
        RoomsTarget::Ringcast => "",
        RoomsTarget::Janus => " via janus videoroom",
    };
    Ok(Plan {
        scenario: format!(
            "rooms {}x{} ({} video + {} audio slots) {codec} {}kbps {}fps{via}",
            args.rooms,
            args.participants,
            args.video_slots,
            args.audio_slots,
            args.bitrate / 1000,
            args.fps
        ),
        url: args.url.trim_end_matches('/').to_string(),
        target: args.target,
        rooms: args.rooms as usize,
        per_room: args.participants as usize,
        slots: SlotCounts {
            video: args.video_slots as usize,
            audio: args.audio_slots as usize,
        },
        join_rate: args.join_rate,
        warmup: args.warmup,
        duration: args.duration,
        verify_fraction: args.verify_fraction,
        threads,
        signal_threads: args.signal_threads as usize,
        http_timeout: args.http_timeout,
        server_pid: args.server_pid,
        source_range: args.source_range,
        prefix: args
            .room_prefix
            .clone()
            .unwrap_or_else(|| format!("lt{}-{}", std::process::id(), unix_seconds() % 100_000)),
        media: MediaPlan {
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
            speaker_turn: args.speaker_turn,
            rx_poll_us: args.rx_polling.rx_poll_us,
        },
    })
}

/// The participants of the run in joining order: every room's first, then every room's
/// second, …; `full` spread evenly at `verify_fraction`.
fn members(plan: &Plan, part: Part) -> Vec<Member> {
    let total = plan.rooms * plan.per_room;
    (0..total)
        .map(|i| {
            let (position, room) = (i / plan.rooms, i % plan.rooms);
            let f = plan.verify_fraction;
            Member {
                room: format!("{}-{room}", plan.prefix),
                room_index: room,
                position,
                of: plan.per_room,
                id: (room * plan.per_room + position + 1) as u32,
                full: ((i + 1) as f64 * f).floor() > (i as f64 * f).floor(),
                part,
            }
        })
        .collect()
}

/// Run the plan; `interrupted` ends it early (Ctrl-C) with the summary so far.
fn run(plan: &Plan, interrupted: &AtomicBool) -> anyhow::Result<Summary> {
    let range = swarm::address_range(plan.source_range, &plan.url)?;
    let participants = plan.rooms * plan.per_room;
    let phases: &[Part] = match plan.target {
        RoomsTarget::Ringcast => &[Part::Both],
        RoomsTarget::Janus => &[Part::Publish, Part::Subscribe],
    };
    let sessions = participants * phases.len();
    if session_ip(range, sessions.saturating_sub(1)).is_none() {
        anyhow::bail!(
            "--source-range {}/{} has too few addresses for {sessions} sessions",
            range.0,
            range.1
        );
    }
    let started_at = ringcast_loadtest::clock::rfc3339_now();
    let t0 = Instant::now();
    let server = plan.server_pid.map(Process::Pid);
    let server_rss0 = server.and_then(|s| s.rss_kib());
    if let (Some(pid), None) = (plan.server_pid, server_rss0) {
        anyhow::bail!("--server-pid {pid}: no such process (cannot read /proc/{pid})");
    }

    let tally = Arc::new(Tally::new(plan.threads));
    let media = Arc::new(plan.media.clone());
    let mut workers = Vec::with_capacity(plan.threads);
    for index in 0..plan.threads {
        workers.push(swarm::spawn_worker(index, tally.clone(), media.clone())?);
    }
    let routes: Arc<Vec<(Sender<Command>, Notifier)>> = Arc::new(
        workers
            .iter()
            .map(|w| (w.mailbox.clone(), w.notifier.clone()))
            .collect(),
    );
    let target = match plan.target {
        RoomsTarget::Ringcast => Target::Whip,
        RoomsTarget::Janus => Target::Janus,
    };
    let signaller = Arc::new(Signaller::new(
        target,
        &plan.url,
        Negotiation {
            codec: plan.media.codec,
            video: true,
            layers: Vec::new(),
            slots: plan.slots,
        },
        plan.http_timeout,
    ));
    let (jobs, job_queue) = mpsc::channel::<Job>();
    let job_queue = Arc::new(Mutex::new(job_queue));
    let signallers: Vec<_> = (0..plan.signal_threads.max(1))
        .map(|i| {
            let (queue, tally, routes) = (job_queue.clone(), tally.clone(), routes.clone());
            let (signaller, timeout) = (signaller.clone(), plan.http_timeout);
            std::thread::Builder::new()
                .name(format!("signal-{i}"))
                .spawn(move || swarm::signal_loop(&queue, &tally, &routes, &signaller, timeout))
                .expect("spawn signalling thread")
        })
        .collect();

    let mut progress = Progress::new(t0, participants);
    let mut next_session = 0usize;
    for &part in phases {
        let members = members(plan, part);
        let phase_start = Instant::now();
        let mut joined = 0usize;
        while joined < members.len() && !interrupted.load(Ordering::Relaxed) {
            let now = Instant::now();
            while joined < members.len()
                && now >= phase_start + Duration::from_secs_f64(joined as f64 / plan.join_rate)
            {
                let worker = next_session % workers.len();
                let ip = session_ip(range, next_session).expect("the range was checked");
                next_session += 1;
                let _ = jobs.send(Job {
                    role: Role::Member(members[joined].clone()),
                    worker,
                    local: SocketAddr::new(IpAddr::V4(ip), workers[worker].port),
                });
                joined += 1;
            }
            progress.maybe(&tally, None);
            std::thread::sleep(Duration::from_millis(2));
        }
        if part == Part::Publish {
            // Janus: everyone publishes before anyone subscribes (a subscription is to the
            // feeds there are); publishers that did not get through by then have failed.
            let deadline = Instant::now() + plan.media.connect_timeout;
            while !interrupted.load(Ordering::Relaxed) && Instant::now() < deadline {
                let done = tally.publishers_connected.load(Ordering::Relaxed)
                    + tally.publishers_failed.load(Ordering::Relaxed);
                if done >= participants {
                    break;
                }
                progress.maybe(&tally, None);
                std::thread::sleep(Duration::from_millis(5));
            }
        }
    }

    // Warm-up, then the measured window.
    let warm_until = Instant::now() + plan.warmup;
    while !interrupted.load(Ordering::Relaxed) && Instant::now() < warm_until {
        progress.maybe(&tally, None);
        std::thread::sleep(Duration::from_millis(2));
    }
    for w in &workers {
        w.send(Command::OpenWindow);
    }
    let _ = tally.take_latency();
    let mark_at = Instant::now();
    let mark_totals = tally.totals();
    let mark_server = server.and_then(|s| s.cpu());
    let mark_self = Process::Current.cpu().unwrap_or_default();
    let ports: Vec<u16> = workers.iter().map(|w| w.port).collect();
    let mark_socket_drops = procfs::udp_drops(&ports);
    let mut latency = stats::histogram();
    let end = mark_at + plan.duration;
    while Instant::now() < end {
        if interrupted.load(Ordering::Relaxed) {
            eprintln!("interrupted: summary so far");
            break;
        }
        progress.maybe(&tally, Some(&mut latency));
        std::thread::sleep(Duration::from_millis(2));
    }
    let window_end = Instant::now();
    let totals = tally.totals();
    let server_cpu1 = server.and_then(|s| s.cpu());
    let server_rss1 = server.and_then(|s| s.rss_kib());
    let self_cpu1 = Process::Current.cpu().unwrap_or_default();
    let generator_socket_drops = procfs::udp_drops_since(&ports, mark_socket_drops);
    let _ = latency.add(tally.take_latency());

    // Stop: no new sessions, the workers hand in the reports, then everyone leaves.
    drop(jobs);
    for w in &workers {
        w.send(Command::Stop);
    }
    for w in workers {
        let _ = w.thread.join();
    }
    let elapsed = t0.elapsed();
    let locations = tally
        .locations
        .lock()
        .map(|l| l.clone())
        .unwrap_or_default();
    swarm::leave_all(&signaller, &locations, plan.signal_threads.max(1));
    signaller.finish();
    drop(signallers);

    let window = Totals::since(totals, mark_totals);
    let measured_s = window_end.saturating_duration_since(mark_at).as_secs_f64();
    let mut reports = tally.members.lock().map(|r| r.clone()).unwrap_or_default();
    reports.sort_by(|a, b| (&a.room, a.position).cmp(&(&b.room, b.position)));
    // On ringcast the first of a room waits for the second to join: its times say nothing.
    let timed: Vec<&ParticipantReport> = reports
        .iter()
        .filter(|r| plan.target == RoomsTarget::Janus || r.position > 0)
        .collect();
    let joins_ms: Vec<f64> = timed.iter().filter_map(|r| r.join_ms).collect();
    let first_frames_ms: Vec<f64> = timed.iter().filter_map(|r| r.first_frame_ms).collect();
    let timed_receiving = timed.iter().filter(|r| r.join_ms.is_some()).count();
    let viewers = Counts {
        requested: participants,
        connected: tally.viewers_connected.load(Ordering::Relaxed),
        failed: tally.viewers_failed.load(Ordering::Relaxed),
    };
    let publishers = Counts {
        requested: participants,
        connected: tally.publishers_connected.load(Ordering::Relaxed),
        failed: tally.publishers_failed.load(Ordering::Relaxed),
    };
    let (loadtest_cpu_pct, bottleneck_warning) = generator_load(
        self_cpu1.saturating_sub(mark_self),
        measured_s,
        plan.threads,
    );
    let server = match (plan.server_pid, mark_server, server_cpu1) {
        (Some(pid), Some(c0), Some(c1)) => Some(ServerFigures::over_window(
            pid,
            c1.saturating_sub(c0),
            measured_s,
            window.received,
            viewers.connected,
            participants,
            server_rss0,
            server_rss1,
        )),
        (Some(pid), _, _) => {
            tally.error("server gone");
            Some(ServerFigures {
                pid,
                ..ServerFigures::default()
            })
        }
        _ => None,
    };
    let rooms = rooms_figures(plan, reports, measured_s);
    let bytes = rooms.video.bytes + rooms.audio.bytes;
    let errors = tally.errors.lock().map(|e| e.clone()).unwrap_or_default();
    Ok(Summary {
        scenario: plan.scenario.clone(),
        target: plan.url.clone(),
        started_at,
        measured_s,
        duration_s: elapsed.as_secs_f64(),
        publishers,
        viewers,
        full_viewers: rooms.participants.iter().filter(|r| r.full).count(),
        join_ms: stats::percentiles_of(&joins_ms),
        first_frame_ms: stats::first_frames(&first_frames_ms, timed_receiving),
        latency_ms: stats::percentiles_ms(&latency),
        packets_sent: window.sent,
        packets_received: window.received,
        loss_pct: stats::loss_pct(window.expected, window.received),
        duplicates: window.duplicates,
        reorders: window.reorders,
        corrupt: window.corrupt,
        bitrate_per_viewer_kbps: bytes as f64 * 8.0
            / 1000.0
            / measured_s.max(1e-9)
            / viewers.connected.max(1) as f64,
        errors,
        loadtest_cpu_pct,
        loadtest_threads: plan.threads,
        bottleneck_warning,
        generator_socket_drops,
        server,
        timeline: progress.timeline,
        latency_histogram: stats::buckets_ms(&latency, 50),
        join_cdf: stats::cdf(&joins_ms, 100),
        threshold_failures: Vec::new(),
        rooms: Some(rooms),
    })
}

/// The rooms' figures from every participant's report.
fn rooms_figures(plan: &Plan, reports: Vec<ParticipantReport>, measured_s: f64) -> RoomsFigures {
    let seconds = measured_s.max(1e-9);
    let kind = |pick: fn(&ParticipantReport) -> &ringcast_loadtest::summary::KindReport| {
        let (mut packets, mut bytes, mut expected) = (0, 0, 0);
        let (mut filled, mut pps, mut kbps) = (Vec::new(), Vec::new(), Vec::new());
        for r in &reports {
            let k = pick(r);
            packets += k.packets;
            bytes += k.bytes;
            expected += k.expected;
            filled.push(k.filled as f64);
            pps.push(k.packets as f64 / seconds);
            kbps.push(k.bytes as f64 * 8.0 / 1000.0 / seconds);
        }
        SlotFigures {
            packets,
            bytes,
            loss_pct: stats::loss_pct(expected, packets),
            filled_per_participant: stats::percentiles_of(&filled),
            pps_per_participant: stats::percentiles_of(&pps),
            kbps_per_participant: stats::percentiles_of(&kbps),
        }
    };
    let mut messages = BTreeMap::new();
    for r in &reports {
        for (kind, n) in &r.messages {
            *messages.entry(kind.clone()).or_default() += n;
        }
    }
    let got = |kind: &str| {
        reports
            .iter()
            .filter(|r| r.messages.contains_key(kind))
            .count()
    };
    let losses: Vec<f64> = reports.iter().map(|r| r.loss_pct).collect();
    let latencies: Vec<f64> = reports.iter().filter_map(|r| r.latency_p50_ms).collect();
    RoomsFigures {
        rooms: plan.rooms,
        participants_per_room: plan.per_room,
        video_slots: plan.slots.video,
        audio_slots: plan.slots.audio,
        video: kind(|r| &r.video),
        audio: kind(|r| &r.audio),
        loss_per_participant_pct: stats::percentiles_of(&losses),
        latency_p50_per_participant_ms: stats::percentiles_of(&latencies),
        messages,
        channel_open: reports.iter().filter(|r| r.channel_open).count(),
        with_welcome: got("welcome"),
        with_slots: got("slots"),
        own_packets: reports
            .iter()
            .map(|r| r.video.own_packets + r.audio.own_packets)
            .sum(),
        participants: reports,
    }
}

/// Threshold checks: one line per failure.
fn thresholds(s: &Summary, args: &RoomsArgs) -> Vec<String> {
    let mut out = Vec::new();
    if let Some(max) = args.max_loss
        && s.loss_pct > max
    {
        out.push(format!("loss {:.3}% > --max-loss {max}%", s.loss_pct));
    }
    if let Some(min) = args.min_connected {
        let pct = s.viewers.connected as f64 * 100.0 / s.viewers.requested.max(1) as f64;
        if pct < min {
            out.push(format!(
                "{} of {} participants received media ({pct:.1}%) < --min-connected {min}%",
                s.viewers.connected, s.viewers.requested
            ));
        }
    }
    out
}

/// The one-line-per-second progress report and the timeline.
struct Progress {
    t0: Instant,
    next: Instant,
    last: Totals,
    last_at: Instant,
    participants: usize,
    timeline: Vec<Tick>,
}

impl Progress {
    fn new(t0: Instant, participants: usize) -> Self {
        Progress {
            t0,
            next: t0 + Duration::from_secs(1),
            last: Totals::default(),
            last_at: t0,
            participants,
            timeline: Vec::new(),
        }
    }

    /// Once a second: a line on stderr and a tick; the latency samples go to `measured` in
    /// the window (else they are dropped).
    fn maybe(&mut self, tally: &Tally, measured: Option<&mut hdrhistogram::Histogram<u64>>) {
        let now = Instant::now();
        if now < self.next {
            return;
        }
        self.next += Duration::from_secs(1);
        let totals = tally.totals();
        let d = totals.since(self.last);
        let dt = now
            .saturating_duration_since(self.last_at)
            .as_secs_f64()
            .max(1e-9);
        self.last = totals;
        self.last_at = now;
        let latency = tally.take_latency();
        let p99_ms = if latency.is_empty() {
            0.0
        } else {
            latency.value_at_quantile(0.99) as f64 / 1000.0
        };
        if let Some(m) = measured {
            let _ = m.add(&latency);
        }
        let failed = tally.viewers_failed.load(Ordering::Relaxed)
            + tally.publishers_failed.load(Ordering::Relaxed);
        let tick = Tick {
            t_s: now.saturating_duration_since(self.t0).as_secs_f64(),
            connected: tally.active.load(Ordering::Relaxed),
            failed,
            pps_out: d.sent as f64 / dt,
            pps_in: d.received as f64 / dt,
            loss_pct: stats::loss_pct(d.expected, d.received),
            p99_ms,
        };
        eprintln!(
            "[{:>5.1}s] participants {}/{} publishing, {} receiving, {failed} failed | pps out {:.0} in {:.0} | loss {:.2}% | p99 {:.1} ms",
            tick.t_s,
            tally.publishers_connected.load(Ordering::Relaxed),
            self.participants,
            tally.viewers_connected.load(Ordering::Relaxed),
            tick.pps_out,
            tick.pps_in,
            tick.loss_pct,
            tick.p99_ms,
        );
        self.timeline.push(tick);
    }
}

/// The final summary as a text table.
fn table(s: &Summary) -> String {
    use std::fmt::Write as _;
    let mut t = String::new();
    let p = |x: &Percentiles| {
        format!(
            "p50 {:>8.2}  p95 {:>8.2}  p99 {:>8.2}  max {:>8.2}  (n={})",
            x.p50, x.p95, x.p99, x.max, x.count
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
        "participants  {:>6} requested {:>6} publishing {:>6} receiving {:>6} failed   ({} checking payloads)",
        s.viewers.requested,
        s.publishers.connected,
        s.viewers.connected,
        s.publishers.failed.max(s.viewers.failed),
        s.full_viewers
    );
    let _ = writeln!(t, "join ms       {}", p(&s.join_ms));
    let f = &s.first_frame_ms;
    let _ = writeln!(
        t,
        "first remote frame ms  p50 {:>8.2}  p95 {:>8.2}  p99 {:>8.2}  max {:>8.2}  (n={}, {} without)",
        f.p50, f.p95, f.p99, f.max, f.count, f.missing
    );
    let _ = writeln!(t, "latency ms    {}", p(&s.latency_ms));
    let _ = writeln!(
        t,
        "packets       sent {}  received {}  loss {:.3}%  duplicates {}  reorders {}  corrupt {}",
        s.packets_sent, s.packets_received, s.loss_pct, s.duplicates, s.reorders, s.corrupt
    );
    if let Some(r) = &s.rooms {
        for (name, k, slots) in [
            ("video slots", &r.video, r.video_slots),
            ("audio slots", &r.audio, r.audio_slots),
        ] {
            let _ = writeln!(
                t,
                "{name}   {:.0}/{slots} filled (median)  per participant: pkt/s p50 {:.0} p95 {:.0}, \
                 kbit/s p50 {:.0}  |  {} packets, loss {:.3}%",
                k.filled_per_participant.p50,
                k.pps_per_participant.p50,
                k.pps_per_participant.p95,
                k.kbps_per_participant.p50,
                k.packets,
                k.loss_pct
            );
        }
        let l = &r.loss_per_participant_pct;
        let _ = writeln!(
            t,
            "loss per participant %  p50 {:.3}  p95 {:.3}  max {:.3}",
            l.p50, l.p95, l.max
        );
        let m: Vec<String> = r.messages.iter().map(|(k, v)| format!("{k} {v}")).collect();
        let _ = writeln!(
            t,
            "data channel  open {}/{n}, welcome {}/{n}, slots {}/{n}; messages: {}",
            r.channel_open,
            r.with_welcome,
            r.with_slots,
            if m.is_empty() {
                "none".to_string()
            } else {
                m.join(", ")
            },
            n = r.participants.len()
        );
        let _ = writeln!(t, "own media     {} packets came back", r.own_packets);
    }
    let _ = writeln!(
        t,
        "loadtest      {:.0}% CPU of one core in the window, {} media threads{}",
        s.loadtest_cpu_pct,
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
             RSS {} KiB ({:.0} KiB per participant)",
            sv.pid,
            sv.cpu_s,
            sv.cpu_pct,
            sv.cpu_us_per_packet,
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
    use clap::Parser;

    #[derive(Debug, Parser)]
    struct Cli {
        #[command(flatten)]
        rooms: RoomsArgs,
    }

    fn plan(args: &[&str]) -> Result<Plan, String> {
        let argv = std::iter::once("rooms").chain(args.iter().copied());
        let cli = Cli::try_parse_from(argv).map_err(|e| e.to_string())?;
        plan_of(&cli.rooms)
    }

    #[test]
    fn options_and_defaults() {
        let p = plan(&[]).unwrap();
        assert_eq!((p.rooms, p.per_room), (2, 6));
        assert_eq!(p.slots, SlotCounts { video: 5, audio: 3 });
        assert_eq!(p.target, RoomsTarget::Ringcast);
        assert!(
            p.scenario
                .starts_with("rooms 2x6 (5 video + 3 audio slots) vp8 500kbps")
        );
        let p = plan(&[
            "--rooms",
            "50",
            "--participants",
            "6",
            "--video-slots",
            "4",
            "--audio-slots",
            "2",
            "--duration",
            "30s",
            "--target",
            "whip",
        ])
        .unwrap();
        assert_eq!((p.rooms, p.slots.video, p.slots.audio), (50, 4, 2));
        assert_eq!(
            p.target,
            RoomsTarget::Ringcast,
            "the bench's `whip` means ringcast"
        );
        assert!(
            plan(&["--target", "janus"])
                .unwrap()
                .scenario
                .ends_with("via janus videoroom")
        );
        for (args, why) in [
            (&["--participants", "1"][..], "participants"),
            (&["--video-slots", "17"], "video-slots"),
            (
                &["--video-slots", "0", "--audio-slots", "0"],
                "needs a slot",
            ),
            (&["--url", "https://x"], "http://"),
            (&["--speaker-turn", "10ms"], "speaker-turn"),
        ] {
            let error = plan(args).expect_err(&format!("{args:?} accepted"));
            assert!(error.contains(why), "{args:?}: {error}");
        }
    }

    #[test]
    fn participants_join_round_robin_with_unique_ids() {
        let p = plan(&[
            "--rooms",
            "3",
            "--participants",
            "4",
            "--verify-fraction",
            "0.5",
        ])
        .unwrap();
        let members = members(&p, Part::Both);
        assert_eq!(members.len(), 12);
        // Every room's first, then every room's second.
        let order: Vec<(usize, usize)> =
            members.iter().map(|m| (m.room_index, m.position)).collect();
        assert_eq!(&order[..4], &[(0, 0), (1, 0), (2, 0), (0, 1)]);
        let ids: std::collections::BTreeSet<u32> = members.iter().map(|m| m.id).collect();
        assert_eq!(ids.len(), 12);
        assert!(!ids.contains(&0));
        assert_eq!(members.iter().filter(|m| m.full).count(), 6);
        assert!(
            members
                .iter()
                .all(|m| m.of == 4 && m.room.ends_with(&format!("-{}", m.room_index)))
        );
    }

    #[test]
    fn figures_add_up_over_participants() {
        let p = plan(&["--rooms", "1", "--participants", "2"]).unwrap();
        let report = |position: usize, packets: u64, expected: u64| {
            let mut r = ParticipantReport {
                room: "r".into(),
                position,
                id: position as u32 + 1,
                loss_pct: stats::loss_pct(expected, packets),
                channel_open: true,
                ..ParticipantReport::default()
            };
            r.video.packets = packets;
            r.video.expected = expected;
            r.video.bytes = packets * 1000;
            r.video.filled = 1;
            r.messages.insert("welcome".into(), 1);
            r
        };
        let figures = rooms_figures(&p, vec![report(0, 90, 100), report(1, 100, 100)], 2.0);
        assert_eq!(figures.video.packets, 190);
        assert!((figures.video.loss_pct - 5.0).abs() < 1e-9);
        assert_eq!(figures.video.pps_per_participant.max, 50.0);
        assert_eq!(figures.loss_per_participant_pct.max, 10.0);
        assert_eq!(
            (
                figures.with_welcome,
                figures.with_slots,
                figures.channel_open
            ),
            (2, 0, 2)
        );
        assert_eq!(figures.messages["welcome"], 2);
    }
}
