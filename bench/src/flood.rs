//! `--garbage-flood`: a thread that sprays random datagrams at the server's UDP ports while a
//! scenario runs, from addresses of the test bed's source range (never elsewhere), so the
//! report can show that loss stays where it was and the server's drop counters move.
//!
//! The ports are those bound in the server's namespace (its `/proc/<pid>/net/udp`, read again
//! every second: Janus opens one per PeerConnection). A quarter of the datagrams start like
//! STUN, a quarter like DTLS, a quarter like RTP/RTCP (RFC 7983's first-byte ranges), the rest
//! anything, so every demultiplexing path of the server sees garbage.

use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rand::Rng;

use crate::servers;

/// A running flood.
#[derive(Debug)]
pub struct Flood {
    stop: Arc<AtomicBool>,
    sent: Arc<AtomicU64>,
    thread: Option<JoinHandle<()>>,
}

impl Flood {
    /// Start spraying `rate` datagrams/s at `server`'s ports (process `pid`) from `sources`.
    pub fn start(
        server: Ipv4Addr,
        pid: u32,
        sources: &[Ipv4Addr],
        rate: u32,
    ) -> Result<Flood, String> {
        let sockets = sources
            .iter()
            .map(|ip| UdpSocket::bind((*ip, 0)).map_err(|e| format!("garbage source {ip}: {e}")))
            .collect::<Result<Vec<_>, _>>()?;
        let stop = Arc::new(AtomicBool::new(false));
        let sent = Arc::new(AtomicU64::new(0));
        let thread = {
            let (stop, sent) = (stop.clone(), sent.clone());
            std::thread::Builder::new()
                .name("garbage-flood".into())
                .spawn(move || spray(&sockets, server, pid, rate, &stop, &sent))
                .map_err(|e| format!("garbage thread: {e}"))?
        };
        Ok(Flood {
            stop,
            sent,
            thread: Some(thread),
        })
    }

    /// Stop; the datagrams sent.
    pub fn stop(mut self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
        self.sent.load(Ordering::Relaxed)
    }
}

impl Drop for Flood {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

fn spray(
    sockets: &[UdpSocket],
    server: Ipv4Addr,
    pid: u32,
    rate: u32,
    stop: &AtomicBool,
    sent: &AtomicU64,
) {
    const TICK: Duration = Duration::from_millis(10);
    let per_tick = (rate / 100).max(1);
    let mut rng = rand::rng();
    let mut ports = Vec::new();
    let mut refresh = Instant::now();
    let mut next = Instant::now();
    let mut buffer = vec![0u8; 1200];
    while !stop.load(Ordering::Relaxed) {
        if Instant::now() >= refresh {
            ports = servers::udp_ports(pid);
            refresh = Instant::now() + Duration::from_secs(1);
        }
        if !ports.is_empty() && !sockets.is_empty() {
            for _ in 0..per_tick {
                let len = rng.random_range(1..=buffer.len());
                rng.fill(&mut buffer[..len]);
                buffer[0] = match rng.random_range(0..4u8) {
                    0 => rng.random_range(0..=3),
                    1 => rng.random_range(20..=63),
                    2 => rng.random_range(128..=191),
                    _ => buffer[0],
                };
                let port = ports[rng.random_range(0..ports.len())];
                let socket = &sockets[rng.random_range(0..sockets.len())];
                if socket
                    .send_to(&buffer[..len], SocketAddr::from((server, port)))
                    .is_ok()
                {
                    sent.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
        next += TICK;
        let now = Instant::now();
        if next > now {
            std::thread::sleep(next - now);
        } else {
            next = now;
        }
    }
}
