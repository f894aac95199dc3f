//! CPU time per forwarded datagram, epoll vs io_uring, GSO off vs on, side by side in one run.
//!
//! A generator thread sends `--rate` datagrams per second of `--size` bytes to the engine in
//! bursts of `--burst` (a video frame's packets arrive back to back); the engine's driver
//! forwards each datagram to `--fanout` sink sockets on loopback (never read: they drop what
//! overflows, as a lossy viewer would). The engine thread's CPU time (and that of any io_uring
//! worker or SQPOLL thread of the process) is read from `/proc/.../schedstat` (nanoseconds on
//! CPU) before and after; divided by the datagrams the engine sent, it is the cost per
//! forwarded datagram. Each configuration runs `--reps` times, interleaved; the median is
//! reported.
//!
//! ```text
//! cargo run --release -p ringcast-net --example engine_pps -- --fanout 8 --rate 20000
//! ```
//!
//! On loopback the receiving half of every datagram (the sink's socket) is processed in the
//! sender's context and counts in its CPU time, for both engines alike.

use std::net::{SocketAddr, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use ringcast_net::{
    Driver, EngineCounters, EngineKind, EngineOptions, Notifier, Transmit, Turn, TxQueue,
};

struct Args {
    fanout: usize,
    rate: u64,
    burst: usize,
    size: usize,
    seconds: f64,
    reps: usize,
    zero_copy: bool,
}

fn args() -> Args {
    let mut args = Args {
        fanout: 8,
        rate: 20_000,
        burst: 8,
        size: 1200,
        seconds: 2.0,
        reps: 3,
        zero_copy: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().unwrap_or_else(|| panic!("{flag} needs a value"));
        match flag.as_str() {
            "--fanout" => args.fanout = value().parse().expect("--fanout N"),
            "--rate" => args.rate = value().parse().expect("--rate PPS"),
            "--burst" => args.burst = value().parse().expect("--burst N"),
            "--size" => args.size = value().parse().expect("--size BYTES"),
            "--seconds" => args.seconds = value().parse().expect("--seconds S"),
            "--reps" => args.reps = value().parse().expect("--reps N"),
            "--zero-copy" => args.zero_copy = true,
            "--help" | "-h" => {
                println!(
                    "engine_pps [--fanout 8] [--rate 20000] [--burst 8] [--size 1200] \
                     [--seconds 2] [--reps 3] [--zero-copy]"
                );
                std::process::exit(0);
            }
            other => panic!("unknown argument {other} (try --help)"),
        }
    }
    args
}

#[derive(Clone, Copy)]
struct Config {
    kind: EngineKind,
    gso: bool,
    zero_copy: bool,
}

impl Config {
    fn name(&self) -> String {
        format!(
            "{}{} gso={}",
            self.kind.name(),
            if self.zero_copy { "+zc" } else { "" },
            if self.gso { "on " } else { "off" }
        )
    }
}

/// One run's figures.
#[derive(Clone, Copy)]
struct Sample {
    generated: u64,
    counters: EngineCounters,
    /// Engine thread plus io_uring helper threads, nanoseconds on CPU.
    cpu_ns: u64,
    helper_ns: u64,
}

impl Sample {
    fn ns_per_datagram(&self) -> f64 {
        self.cpu_ns as f64 / self.counters.tx_datagrams.max(1) as f64
    }

    /// Share of the generated datagrams the engine did not receive.
    fn loss(&self) -> f64 {
        1.0 - self.counters.rx_datagrams as f64 / self.generated.max(1) as f64
    }
}

/// A run that lost more than this is repeated: the engine was starved of CPU (another
/// process on its core), which makes its batches larger and its cost per datagram smaller.
const MAX_LOSS: f64 = 0.01;

/// Times a lossy run is repeated before it is kept anyway (and marked).
const ATTEMPTS: usize = 5;

/// Forwards each datagram to every sink.
struct Forward {
    sinks: Vec<SocketAddr>,
    stop: Arc<AtomicBool>,
    cpu_start: Option<u64>,
    cpu_end: u64,
}

impl Driver for Forward {
    fn on_datagram(
        &mut self,
        _now: Instant,
        _source: SocketAddr,
        _destination: SocketAddr,
        data: &[u8],
        tx: &mut TxQueue,
    ) {
        for &sink in &self.sinks {
            let mut contents = tx.buffer();
            contents.extend_from_slice(data);
            tx.push(Transmit::new(sink, None, contents));
        }
    }

    fn on_turn(&mut self, _now: Instant, _tx: &mut TxQueue) -> Turn {
        if self.cpu_start.is_none() {
            self.cpu_start = Some(thread_cpu_ns());
        }
        if self.stop.load(Ordering::SeqCst) {
            self.cpu_end = thread_cpu_ns();
            Turn::Stop
        } else {
            Turn::Wait(None)
        }
    }
}

/// Nanoseconds this thread has spent on a CPU.
fn thread_cpu_ns() -> u64 {
    schedstat("/proc/thread-self/schedstat").expect("/proc/thread-self/schedstat")
}

fn schedstat(path: &str) -> Option<u64> {
    std::fs::read_to_string(path)
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// Nanoseconds on CPU of this process's io_uring helper threads (io-wq workers `iou-wrk-*`,
/// SQPOLL threads `iou-sqp-*`), alive now.
fn helper_cpu_ns() -> u64 {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return 0;
    };
    tasks
        .flatten()
        .filter(|task| {
            std::fs::read_to_string(task.path().join("comm"))
                .is_ok_and(|comm| comm.starts_with("iou-"))
        })
        .filter_map(|task| schedstat(&task.path().join("schedstat").to_string_lossy()))
        .sum()
}

fn run_once(config: Config, args: &Args) -> Sample {
    let sinks: Vec<UdpSocket> = (0..args.fanout)
        .map(|_| UdpSocket::bind("127.0.0.1:0").unwrap())
        .collect();
    let notifier = Notifier::new().unwrap();
    let options = EngineOptions {
        gso: config.gso,
        uring_zero_copy: config.zero_copy,
        ..EngineOptions::default()
    };
    let mut engine = ringcast_net::bind(
        config.kind,
        "127.0.0.1:0".parse().unwrap(),
        &notifier,
        &options,
    )
    .unwrap_or_else(|e| panic!("{}: {e}", config.name()));
    let server = engine.local_addr();
    let stop = Arc::new(AtomicBool::new(false));
    let mut driver = Forward {
        sinks: sinks.iter().map(|s| s.local_addr().unwrap()).collect(),
        stop: stop.clone(),
        cpu_start: None,
        cpu_end: 0,
    };
    let helpers_before = helper_cpu_ns();
    let engine_thread = thread::spawn(move || {
        let _ = ringcast_net::pin_current_thread(0);
        engine.run(&mut driver).unwrap();
        (engine.counters(), driver)
    });

    // The generator, on the other core.
    let generated = thread::spawn({
        let rate = args.rate;
        let burst = args.burst.max(1);
        let size = args.size;
        let seconds = args.seconds;
        move || {
            let _ = ringcast_net::pin_current_thread(1);
            let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
            let datagram = vec![0x5a; size];
            let total = (rate as f64 * seconds) as u64;
            let interval = Duration::from_secs_f64(burst as f64 / rate as f64);
            let start = Instant::now();
            let mut sent = 0u64;
            let mut next = start;
            while sent < total {
                for _ in 0..burst {
                    if socket.send_to(&datagram, server).is_ok() {
                        sent += 1;
                    }
                }
                next += interval;
                let now = Instant::now();
                if next > now {
                    thread::sleep(next - now);
                }
            }
            sent
        }
    })
    .join()
    .unwrap();
    thread::sleep(Duration::from_millis(100));
    stop.store(true, Ordering::SeqCst);
    notifier.notify();
    let (counters, driver) = engine_thread.join().unwrap();
    let helper_ns = helper_cpu_ns().saturating_sub(helpers_before);
    let engine_ns = driver.cpu_end - driver.cpu_start.unwrap_or(driver.cpu_end);
    drop(sinks);
    Sample {
        generated,
        counters,
        cpu_ns: engine_ns + helper_ns,
        helper_ns,
    }
}

fn main() {
    let args = args();
    if let Err(why) = ringcast_net::probe(EngineKind::Uring) {
        eprintln!("io_uring cannot run here ({why}): measuring epoll only");
    }
    let mut configs = Vec::new();
    for kind in [EngineKind::Epoll, EngineKind::Uring] {
        if ringcast_net::probe(kind).is_err() {
            continue;
        }
        for gso in [false, true] {
            configs.push(Config {
                kind,
                gso,
                zero_copy: false,
            });
            if kind == EngineKind::Uring && args.zero_copy {
                configs.push(Config {
                    kind,
                    gso,
                    zero_copy: true,
                });
            }
        }
    }
    println!(
        "fan-out 1 -> {}, {} datagrams/s in of {} B, bursts of {}, {} s per run, median of {}",
        args.fanout, args.rate, args.size, args.burst, args.seconds, args.reps
    );
    println!("load average before: {}", load_average());
    let mut samples: Vec<Vec<Sample>> = vec![Vec::new(); configs.len()];
    for rep in 0..args.reps {
        for (i, config) in configs.iter().enumerate() {
            let mut sample = run_once(*config, &args);
            for _ in 1..ATTEMPTS {
                if sample.loss() <= MAX_LOSS {
                    break;
                }
                eprintln!(
                    "rep {rep} {:<18} lost {:.1}% (starved of CPU?): again",
                    config.name(),
                    100.0 * sample.loss()
                );
                sample = run_once(*config, &args);
            }
            eprintln!(
                "rep {rep} {:<18} {:>7.0} ns/datagram  out {:>8}  gso sends {:>7}  syscalls {:>7}  rx {:>7}/{:<7} helpers {:.1} ms",
                config.name(),
                sample.ns_per_datagram(),
                sample.counters.tx_datagrams,
                sample.counters.tx_gso_sends,
                sample.counters.syscalls,
                sample.counters.rx_datagrams,
                sample.generated,
                sample.helper_ns as f64 / 1e6,
            );
            samples[i].push(sample);
        }
    }
    println!(
        "{:<18} {:>14} {:>12} {:>12} {:>14} {:>10} {:>9}",
        "engine", "ns CPU/out dg", "out dg", "gso sends", "syscalls/in dg", "rx loss", "vs epoll"
    );
    let baseline = median(&samples[0]).ns_per_datagram();
    for (config, runs) in configs.iter().zip(&samples) {
        let sample = median(runs);
        println!(
            "{:<18} {:>14.0} {:>12} {:>12} {:>14.3} {:>9.2}% {:>8.2}x",
            config.name(),
            sample.ns_per_datagram(),
            sample.counters.tx_datagrams,
            sample.counters.tx_gso_sends,
            sample.counters.syscalls as f64 / sample.counters.rx_datagrams.max(1) as f64,
            100.0 * sample.loss(),
            sample.ns_per_datagram() / baseline,
        );
    }
    println!("load average after: {}", load_average());
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

/// The run with the median CPU time per datagram.
fn median(runs: &[Sample]) -> Sample {
    let mut sorted = runs.to_vec();
    sorted.sort_by(|a, b| a.ns_per_datagram().total_cmp(&b.ns_per_datagram()));
    sorted[sorted.len() / 2]
}
