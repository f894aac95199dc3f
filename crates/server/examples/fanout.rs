//! Fan-out measurement: the `ringcast` binary on loopback, 1 WHIP publisher (VP8 ~0.8 Mbit/s +
//! Opus) → N WHEP viewers (str0m clients, one thread each). Reports the join time (POST → first
//! media packet) and the server's CPU time per forwarded packet over a window after warm-up,
//! from `/proc/<pid>/stat` and the server's own `rtp_forwarded` counter.
//!
//! ```sh
//! cargo build --release -p ringcast --bins --examples
//! target/release/examples/fanout 50 10 1   # viewers, seconds measured, shards
//! ```
//!
//! The clients run on the same machine and compete with the server for CPU; the server's CPU
//! time is its own, but read the absolute figures as an upper bound.

#[path = "../tests/common/mod.rs"]
mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use common::{SentLog, client, run_publisher, run_viewer, start_server_with};

fn arg(i: usize, default: usize) -> usize {
    std::env::args()
        .nth(i)
        .and_then(|a| a.parse().ok())
        .unwrap_or(default)
}

/// utime + stime of a process, in seconds (USER_HZ = 100 on Linux).
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("proc stat");
    // Fields after the command name (which may contain spaces) start after the last ')'.
    let rest = &stat[stat.rfind(')').unwrap() + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap();
    ticks as f64 / 100.0
}

fn forwarded(http: &str) -> u64 {
    let stats = ureq::get(format!("{http}/api/stats"))
        .call()
        .unwrap()
        .body_mut()
        .read_to_string()
        .unwrap();
    stats
        .split("\"rtp_forwarded\":")
        .skip(1)
        .map(|s| {
            s.split([',', '}'])
                .next()
                .unwrap()
                .trim()
                .parse::<u64>()
                .unwrap()
        })
        .sum()
}

fn main() {
    let viewers = arg(1, 50);
    let seconds = arg(2, 10) as u64;
    let shards = arg(3, 1);
    let server = start_server_with(
        shards,
        &[("RINGCAST_MEDIA_MAX_PARTICIPANTS_PER_SHARD", "5000")],
    );
    let pid = server.child.id();
    let stop = Arc::new(AtomicBool::new(false));
    let sent: SentLog = Arc::default();
    let (publisher, _) = client(&server.http, "/whip/bench", true);
    let publisher = {
        let (stop, sent, http) = (stop.clone(), sent.clone(), server.http.clone());
        std::thread::spawn(move || run_publisher(http, publisher, stop, sent))
    };
    std::thread::sleep(Duration::from_millis(500));
    let run = Duration::from_secs(seconds + 3 + viewers as u64 / 10);
    let handles: Vec<_> = (0..viewers)
        .map(|_| {
            let (c, posted) = client(&server.http, "/whep/bench", false);
            std::thread::spawn(move || run_viewer(c, posted, usize::MAX, run))
        })
        .collect();
    // Warm-up: let everyone connect and the first keyframe settle.
    std::thread::sleep(Duration::from_secs(2));
    let (cpu0, fwd0, t0) = (cpu_seconds(pid), forwarded(&server.http), Instant::now());
    std::thread::sleep(Duration::from_secs(seconds));
    let (cpu1, fwd1, t1) = (cpu_seconds(pid), forwarded(&server.http), Instant::now());
    let mut joins: Vec<Duration> = handles.into_iter().map(|h| h.join().unwrap().1).collect();
    stop.store(true, Ordering::Relaxed);
    publisher.join().unwrap();
    joins.sort();
    let pct = |p: f64| joins[((joins.len() - 1) as f64 * p).round() as usize];
    let window = (t1 - t0).as_secs_f64();
    let packets = (fwd1 - fwd0) as f64;
    println!("viewers {viewers}, shards {shards}, window {window:.1} s");
    println!(
        "join time POST -> first media packet: p50 {:.1} ms, p95 {:.1} ms, max {:.1} ms",
        pct(0.5).as_secs_f64() * 1e3,
        pct(0.95).as_secs_f64() * 1e3,
        joins[joins.len() - 1].as_secs_f64() * 1e3
    );
    println!(
        "forwarded {:.0} packets/s; server CPU {:.1} % of one core; {:.2} us CPU per forwarded packet",
        packets / window,
        (cpu1 - cpu0) / window * 100.0,
        (cpu1 - cpu0) / packets * 1e6
    );
}
