//! The coordinator: starts the media workers and the signalling threads, paces the joins,
//! prints a progress line each second, measures the window after warm-up and assembles the
//! [`Summary`].

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Sender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use ringcast_net::{EngineOptions, Notifier};

use crate::http;
use crate::negotiation::{Negotiation, SlotCounts};
use crate::procfs::{self, Process};
use crate::session::{Job, Role};
use crate::signal::{Signaller, Target};
use crate::stats;
use crate::summary::{Counts, ServerFigures, Summary, Tick, generator_load};
use crate::tally::{Tally, Totals};
use crate::whep_layer::ViewerLayer;
use crate::worker::{Command, MediaPlan, Worker};

/// Everything a run needs to know.
#[derive(Debug, Clone)]
pub struct Plan {
    /// Human description, e.g. "broadcast 1x20 vp8 2500kbps".
    pub scenario: String,
    /// Server base URL (Janus: its HTTP API, e.g. `http://10.213.5.2:8088/janus`).
    pub url: String,
    /// The signalling the server speaks.
    pub target: Target,
    /// Streams (one publisher each).
    pub streams: usize,
    /// Viewers per stream.
    pub viewers_per_stream: usize,
    /// Viewer joins per second.
    pub join_rate: f64,
    /// Excluded from the measured window, after the last join.
    pub warmup: Duration,
    /// The measured window.
    pub duration: Duration,
    /// Fraction of viewers that verify payloads.
    pub verify_fraction: f64,
    /// Media worker threads.
    pub threads: usize,
    /// Signalling threads.
    pub signal_threads: usize,
    /// HTTP timeout per request.
    pub http_timeout: Duration,
    /// Server process to measure.
    pub server_pid: Option<u32>,
    /// Where session source addresses come from (None: 127.64.0.0/10, for loopback targets).
    pub source_range: Option<(Ipv4Addr, u8)>,
    /// Stream name prefix (unique per run).
    pub stream_prefix: String,
    /// Media parameters.
    pub media: MediaPlan,
    /// The simulcast layer viewers ask for.
    pub viewer_layer: ViewerLayer,
}

/// A snapshot at the start of the measured window.
#[derive(Debug, Clone, Copy)]
struct Mark {
    at: Instant,
    totals: Totals,
    server_cpu: Option<Duration>,
    self_cpu: Duration,
    /// What the kernel had dropped at the workers' sockets.
    socket_drops: Option<u64>,
}

/// A running media worker thread.
pub struct WorkerHandle {
    /// Where its commands go (wake it with `notifier` after each).
    pub mailbox: Sender<Command>,
    /// Wakes its engine.
    pub notifier: Notifier,
    /// The thread.
    pub thread: JoinHandle<()>,
    /// Its UDP port (on every session address).
    pub port: u16,
}

impl WorkerHandle {
    /// Send a command and wake the worker; false when the worker is gone.
    pub fn send(&self, command: Command) -> bool {
        let sent = self.mailbox.send(command).is_ok();
        self.notifier.notify();
        sent
    }
}

/// How the media threads take their datagrams (a flag of every mode).
#[derive(Debug, Clone, clap::Args)]
pub struct RxPolling {
    /// Media threads take the datagrams that arrived every this many microseconds, instead
    /// of being woken by each one (0). On the server's own host this keeps the server from
    /// paying for waking the load generator, which it never pays for a client on another
    /// machine; a datagram may wait up to this long, and the latency figures include it.
    #[arg(long, default_value_t = 250, value_parser = clap::value_parser!(u32).range(0..=100_000))]
    pub rx_poll_us: u32,
}

/// Start media worker `index` (its counters are `tally.workers[index]`) on its own socket.
pub fn spawn_worker(
    index: usize,
    tally: Arc<Tally>,
    media: Arc<MediaPlan>,
) -> anyhow::Result<WorkerHandle> {
    let notifier = Notifier::new()?;
    // The server's GSO bursts cross loopback whole to a GRO socket: one receive each.
    // One socket takes what the server sends to all of this thread's viewers (~87,000
    // datagrams a second for each of two threads at 1 -> 1,000, 1 Mbit/s): 32 MiB rides out
    // the scheduling delays where the server and the generator share the cores (granted above
    // `net.core.rmem_max` only with CAP_NET_ADMIN).
    let options = EngineOptions {
        gro: true,
        recv_buffer: 32 << 20,
        epoll_poll_rx_us: media.rx_poll_us,
        ..EngineOptions::default()
    };
    let mut engine = ringcast_net::bind_epoll(
        SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 0),
        &notifier,
        &options,
    )?;
    let port = engine.local_addr().port();
    let (mailbox, inbox) = mpsc::channel();
    let mut worker = Worker::new(index, tally, media, inbox);
    let thread = std::thread::Builder::new()
        .name(format!("media-{index}"))
        .spawn(move || {
            if let Err(error) = engine.run(&mut worker) {
                tracing::error!(%error, "media worker {index} stopped");
            }
        })?;
    Ok(WorkerHandle {
        mailbox,
        notifier,
        thread,
        port,
    })
}

/// The session address range for a run against `url`: `source_range` if given, else the
/// loopback one for a loopback target; an error naming `--source-range` otherwise.
pub fn address_range(
    source_range: Option<(Ipv4Addr, u8)>,
    url: &str,
) -> anyhow::Result<(Ipv4Addr, u8)> {
    match (source_range, http::loopback_url(url)) {
        (Some(r), _) => Ok(r),
        (None, true) => Ok(LOOPBACK_RANGE),
        (None, false) => anyhow::bail!(
            "the target {url} is not on loopback: give each session a source address with \
             --source-range NET (an IPv4 network routed here as local, e.g. `ip route add local \
             10.214.0.0/16 dev lo`); sessions are told apart by their addresses on one UDP \
             socket per worker thread"
        ),
    }
}

/// Session source addresses when none are configured: on loopback, local without setup.
pub const LOOPBACK_RANGE: (Ipv4Addr, u8) = (Ipv4Addr::new(127, 64, 0, 0), 10);

/// The source address of the `index`-th session in `range`: the network's addresses from .1
/// up, skipping those ending in .0 and .255; `None` once the range is used up.
pub fn session_ip(range: (Ipv4Addr, u8), index: usize) -> Option<Ipv4Addr> {
    let (net, len) = range;
    let last = (index % 254) as u32 + 1;
    let offset = (index / 254) as u32 * 256 + last;
    let size = 1u64 << (32 - u32::from(len));
    (u64::from(offset) < size - 1).then(|| Ipv4Addr::from(u32::from(net) + offset))
}

/// Run the plan; `interrupted` ends it early (Ctrl-C) with the summary so far.
pub fn run(plan: &Plan, interrupted: &AtomicBool) -> anyhow::Result<Summary> {
    let range = address_range(plan.source_range, &plan.url)?;
    let sessions = plan.streams * (1 + plan.viewers_per_stream);
    if session_ip(range, sessions.saturating_sub(1)).is_none() {
        anyhow::bail!(
            "--source-range {}/{} has too few addresses for {sessions} sessions",
            range.0,
            range.1
        );
    }
    let started_at = ringcast_loadtest::clock::rfc3339_now();
    let t0 = Instant::now();
    let self_cpu0 = Process::Current.cpu().unwrap_or_default();
    let server = plan.server_pid.map(Process::Pid);
    let server_rss0 = server.and_then(|s| s.rss_kib());
    if let (Some(pid), None) = (plan.server_pid, server_rss0) {
        anyhow::bail!("--server-pid {pid}: no such process (cannot read /proc/{pid})");
    }

    let tally = Arc::new(Tally::new(plan.threads));
    let media = Arc::new(plan.media.clone());
    let mut workers = Vec::with_capacity(plan.threads);
    for index in 0..plan.threads {
        workers.push(spawn_worker(index, tally.clone(), media.clone())?);
    }
    let routes: Arc<Vec<(Sender<Command>, Notifier)>> = Arc::new(
        workers
            .iter()
            .map(|w| (w.mailbox.clone(), w.notifier.clone()))
            .collect(),
    );

    let rids: Vec<String> = plan.media.layers.iter().map(|l| l.rid.clone()).collect();
    // Signalling threads take jobs from one queue.
    let signaller = Arc::new(Signaller::new(
        plan.target,
        &plan.url,
        Negotiation {
            codec: plan.media.codec,
            video: plan.media.video,
            layers: rids.clone(),
            slots: SlotCounts::default(),
        },
        plan.http_timeout,
    ));
    let (jobs, job_queue) = mpsc::channel::<Job>();
    let job_queue = Arc::new(Mutex::new(job_queue));
    let signallers: Vec<JoinHandle<()>> = (0..plan.signal_threads.max(1))
        .map(|i| {
            let (queue, tally, routes) = (job_queue.clone(), tally.clone(), routes.clone());
            let (signaller, timeout) = (signaller.clone(), plan.http_timeout);
            std::thread::Builder::new()
                .name(format!("signal-{i}"))
                .spawn(move || signal_loop(&queue, &tally, &routes, &signaller, timeout))
                .expect("spawn signalling thread")
        })
        .collect();

    let mut next_session = 0usize;
    let mut new_job = |role: Role| {
        let worker = next_session % workers.len();
        let ip = session_ip(range, next_session).expect("the range was checked for every session");
        let local = SocketAddr::new(IpAddr::V4(ip), workers[worker].port);
        next_session += 1;
        Job {
            role,
            worker,
            local,
        }
    };

    let mut progress = Progress::new(t0);
    let mut timeline = Vec::new();
    let tick = |progress: &mut Progress,
                timeline: &mut Vec<Tick>,
                measured: Option<&mut Histogram<u64>>| {
        let t = progress.tick(&tally, plan.streams * plan.viewers_per_stream, measured);
        timeline.push(t);
    };
    let mut measured_latency = stats::histogram();
    let ports: Vec<u16> = workers.iter().map(|w| w.port).collect();
    let mut mark = Mark {
        at: t0,
        totals: Totals::default(),
        server_cpu: server.and_then(|s| s.cpu()),
        self_cpu: self_cpu0,
        socket_drops: procfs::udp_drops(&ports),
    };
    let mut measuring = false;

    // Publishers first; viewers once they are up (WHEP before WHIP gets 409).
    for s in 0..plan.streams {
        let role = Role::Publisher {
            stream: format!("{}-{s}", plan.stream_prefix),
            id: s as u32 + 1,
        };
        let _ = jobs.send(new_job(role));
    }
    let publishers_up = t0 + Duration::from_secs(10);
    while !interrupted.load(Ordering::Relaxed) && Instant::now() < publishers_up {
        let done = tally.publishers_connected.load(Ordering::Relaxed)
            + tally.publishers_failed.load(Ordering::Relaxed);
        if done >= plan.streams {
            break;
        }
        progress.maybe(|p| tick(p, &mut timeline, None));
        std::thread::sleep(Duration::from_millis(5));
    }
    // Publishers that did not get through by now have failed.
    let viewers_total = plan.streams * plan.viewers_per_stream;
    let joins_start = Instant::now();
    let mut joined = 0usize;
    let mut end: Option<Instant> = None;
    let mut measure_at: Option<Instant> = None;
    loop {
        if interrupted.load(Ordering::Relaxed) {
            eprintln!("interrupted: summary so far");
            break;
        }
        let now = Instant::now();
        while joined < viewers_total
            && now >= joins_start + Duration::from_secs_f64(joined as f64 / plan.join_rate)
        {
            let stream = format!("{}-{}", plan.stream_prefix, joined % plan.streams);
            let full = ((joined + 1) as f64 * plan.verify_fraction).floor()
                > (joined as f64 * plan.verify_fraction).floor();
            let layer = plan.viewer_layer.pick(joined / plan.streams, &rids);
            let _ = jobs.send(new_job(Role::Viewer {
                stream,
                full,
                layer,
            }));
            joined += 1;
        }
        if joined == viewers_total && measure_at.is_none() {
            measure_at = Some(now + plan.warmup);
        }
        if let Some(at) = measure_at
            && !measuring
            && now >= at
        {
            measuring = true;
            let _ = tally.take_latency();
            mark = Mark {
                at: now,
                totals: tally.totals(),
                server_cpu: server.and_then(|s| s.cpu()),
                self_cpu: Process::Current.cpu().unwrap_or_default(),
                socket_drops: procfs::udp_drops(&ports),
            };
            end = Some(now + plan.duration);
        }
        if end.is_some_and(|e| now >= e) {
            break;
        }
        progress.maybe(|p| {
            tick(p, &mut timeline, measuring.then_some(&mut measured_latency));
        });
        std::thread::sleep(Duration::from_millis(2));
    }
    let window_end = Instant::now();
    let totals = tally.totals();
    let server_cpu1 = server.and_then(|s| s.cpu());
    let server_rss1 = server.and_then(|s| s.rss_kib());
    let self_cpu1 = Process::Current.cpu().unwrap_or_default();
    let generator_socket_drops = procfs::udp_drops_since(&ports, mark.socket_drops);
    // The last partial second goes into the measured latency too; interrupted before the
    // window opened, everything so far counts.
    let _ = measured_latency.add(tally.take_latency());
    if !measuring {
        let _ = measured_latency.add(&progress.all_latency);
    }

    // Stop the swarm: signalling first (no new sessions), then the workers, then leave.
    drop(jobs);
    for w in &workers {
        let _ = w.mailbox.send(Command::Stop);
        w.notifier.notify();
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
    leave_all(&signaller, &locations, plan.signal_threads.max(1));
    signaller.finish();
    // Signalling threads blocked on a stalled server finish with their timeout; don't wait.
    drop(signallers);

    let window = Totals::since(totals, mark.totals);
    let measured_s = window_end.saturating_duration_since(mark.at).as_secs_f64();
    let joins_ms = tally.joins_ms.lock().map(|j| j.clone()).unwrap_or_default();
    let first_frames_ms = tally
        .first_frames_ms
        .lock()
        .map(|f| f.clone())
        .unwrap_or_default();
    let viewers = Counts {
        requested: viewers_total,
        connected: tally.viewers_connected.load(Ordering::Relaxed),
        failed: tally.viewers_failed.load(Ordering::Relaxed),
    };
    let publishers = Counts {
        requested: plan.streams,
        connected: tally.publishers_connected.load(Ordering::Relaxed),
        failed: tally.publishers_failed.load(Ordering::Relaxed),
    };
    // Over the measured window (joins and warm-up excluded), like the server's figures.
    let (loadtest_cpu_pct, bottleneck_warning) = generator_load(
        self_cpu1.saturating_sub(mark.self_cpu),
        measured_s,
        plan.threads,
    );
    let server = match (plan.server_pid, mark.server_cpu, server_cpu1) {
        (Some(pid), Some(c0), Some(c1)) => Some(ServerFigures::over_window(
            pid,
            c1.saturating_sub(c0),
            measured_s,
            window.received,
            viewers.connected,
            viewers.connected + publishers.connected,
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
    let errors = tally.errors.lock().map(|e| e.clone()).unwrap_or_default();
    Ok(Summary {
        scenario: plan.scenario.clone(),
        target: plan.url.clone(),
        started_at,
        measured_s,
        duration_s: elapsed.as_secs_f64(),
        publishers,
        viewers,
        full_viewers: ((viewers_total as f64) * plan.verify_fraction).floor() as usize,
        join_ms: stats::percentiles_of(&joins_ms),
        first_frame_ms: stats::first_frames(
            &first_frames_ms,
            if plan.media.video {
                viewers.connected
            } else {
                0
            },
        ),
        latency_ms: stats::percentiles_ms(&measured_latency),
        packets_sent: window.sent,
        packets_received: window.received,
        loss_pct: stats::loss_pct(window.expected, window.received),
        duplicates: window.duplicates,
        reorders: window.reorders,
        corrupt: window.corrupt,
        bitrate_per_viewer_kbps: window.bytes as f64 * 8.0
            / 1000.0
            / measured_s.max(1e-9)
            / viewers.connected.max(1) as f64,
        errors,
        loadtest_cpu_pct,
        loadtest_threads: plan.threads,
        bottleneck_warning,
        generator_socket_drops,
        server,
        timeline,
        latency_histogram: stats::buckets_ms(&measured_latency, 50),
        join_cdf: stats::cdf(&joins_ms, 100),
        threshold_failures: Vec::new(),
        rooms: None,
    })
}

/// A signalling thread: open sessions until the job queue closes.
pub fn signal_loop(
    queue: &Mutex<mpsc::Receiver<Job>>,
    tally: &Tally,
    routes: &[(Sender<Command>, Notifier)],
    signaller: &Signaller,
    timeout: Duration,
) {
    let agent = http::agent(timeout);
    loop {
        let job = match queue.lock() {
            Ok(queue) => match queue.recv() {
                Ok(job) => job,
                Err(_) => return,
            },
            Err(_) => return,
        };
        let (publisher, viewer) = match &job.role {
            Role::Publisher { .. } => (true, false),
            Role::Viewer { .. } => (false, true),
            Role::Member(m) => (m.part.publishes(), m.part.receives()),
        };
        let worker = job.worker;
        match signaller.join(&agent, job) {
            Ok(joined) => {
                if let Ok(mut l) = tally.locations.lock() {
                    l.push(joined.location.clone());
                }
                let (mailbox, notifier) = &routes[worker];
                if mailbox.send(Command::Add(Box::new(joined))).is_err() {
                    return;
                }
                notifier.notify();
            }
            Err(cause) => {
                tally.fail(publisher, &cause);
                if publisher && viewer {
                    // A participant refused neither publishes nor receives.
                    tally.viewers_failed.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
    }
}

/// Close every session, a few at a time, giving up after a few seconds in all.
pub fn leave_all(signaller: &Signaller, locations: &[String], threads: usize) {
    if locations.is_empty() {
        return;
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    let chunk = locations.len().div_ceil(threads.clamp(1, 8));
    std::thread::scope(|scope| {
        for part in locations.chunks(chunk) {
            scope.spawn(move || {
                let agent = http::agent(Duration::from_secs(1));
                for location in part {
                    if Instant::now() > deadline {
                        return;
                    }
                    let _ = signaller.leave(&agent, location); // the server may be gone
                }
            });
        }
    });
}

/// The one-line-per-second progress report.
struct Progress {
    t0: Instant,
    next: Instant,
    last: Totals,
    last_at: Instant,
    all_latency: Histogram<u64>,
}

impl Progress {
    fn new(t0: Instant) -> Self {
        Progress {
            t0,
            next: t0 + Duration::from_secs(1),
            last: Totals::default(),
            last_at: t0,
            all_latency: stats::histogram(),
        }
    }

    fn maybe(&mut self, f: impl FnOnce(&mut Self)) {
        if Instant::now() >= self.next {
            self.next += Duration::from_secs(1);
            f(self);
        }
    }

    fn tick(
        &mut self,
        tally: &Tally,
        viewers: usize,
        measured: Option<&mut Histogram<u64>>,
    ) -> Tick {
        let now = Instant::now();
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
        } else {
            let _ = self.all_latency.add(&latency);
        }
        let tick = Tick {
            t_s: now.saturating_duration_since(self.t0).as_secs_f64(),
            connected: tally.active.load(Ordering::Relaxed),
            failed: tally.viewers_failed.load(Ordering::Relaxed)
                + tally.publishers_failed.load(Ordering::Relaxed),
            pps_out: d.sent as f64 / dt,
            pps_in: d.received as f64 / dt,
            loss_pct: stats::loss_pct(d.expected, d.received),
            p99_ms,
        };
        eprintln!(
            "[{:>5.1}s] viewers {}/{} connected, {} failed | publishers {}/{} | pps out {:.0} in {:.0} | loss {:.2}% | p99 {:.1} ms",
            tick.t_s,
            tally.viewers_connected.load(Ordering::Relaxed),
            viewers,
            tally.viewers_failed.load(Ordering::Relaxed),
            tally.publishers_connected.load(Ordering::Relaxed),
            tally.publishers_connected.load(Ordering::Relaxed)
                + tally.publishers_failed.load(Ordering::Relaxed),
            tick.pps_out,
            tick.pps_in,
            tick.loss_pct,
            tick.p99_ms,
        );
        tick
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn session_addresses_are_unique_loopback() {
        let mut seen = std::collections::HashSet::new();
        for i in 0..200_000 {
            let ip = session_ip(LOOPBACK_RANGE, i).unwrap();
            assert!(ip.is_loopback());
            assert!(ip.octets()[3] != 0 && ip.octets()[3] != 255);
            assert!(seen.insert(ip), "{ip} twice");
        }
    }

    #[test]
    fn session_addresses_stay_in_their_range() {
        let range = ("10.214.0.0".parse().unwrap(), 24);
        assert_eq!(session_ip(range, 0), Some("10.214.0.1".parse().unwrap()));
        assert_eq!(
            session_ip(range, 253),
            Some("10.214.0.254".parse().unwrap())
        );
        assert_eq!(session_ip(range, 254), None);
    }
}
