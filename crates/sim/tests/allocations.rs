//! No allocation per forwarded packet on the shard's path: one publisher (Opus + VP8 at
//! 2.5 Mbit/s) to 50 viewers, on one shard and across two, counted by a counting allocator
//! while the sim is inside a shard forwarding the publisher's packets ([`Sim::set_shard_scope`]:
//! its datagrams, their relays to the other shard, and the drains, where the viewers' peers
//! are polled and the packets encrypted and sent).
//!
//! # The budget
//!
//! None per forwarded packet, and 2.5 per packet received from the publisher (0.05 per
//! forwarded packet with 50 viewers). Every one of them is str0m 0.25's:
//!
//! - 2.0 per received packet: its decrypted payload (`Session::handle_rtp_receive`) and a
//!   `String` that `Mid::from(&str)` collects while parsing its mid header extension;
//! - 0.5 per received packet of slack for what is not per packet: the publisher's RTCP (sender
//!   reports) and the feedback str0m sends it, and the viewers' own RTCP and ICE work that the
//!   drains meet. It is under 1, so that one more allocation per received packet (once per
//!   fan-out) fails the test, as does one more per forwarded packet (routing, rewriting,
//!   writing to the peer, polling it, encrypting, queueing the transmit, relaying).
//!
//! A forwarded packet is encrypted into a buffer of the shard's pool (`Rtc::give_datagram_buffer`,
//! from ringcast's str0m patch), which the sim gives back as soon as it takes the datagram, as
//! the engines do once they copied it into a GSO batch. Without the pool, str0m's
//! `SrtpContext::protect_rtp` would return each packet in a new `Vec`: 1.0 per forwarded packet.
//!
//! The viewers' own datagrams (their RTCP) are counted apart and only printed: str0m allocates
//! several times for each RTCP packet it receives (unprotect, decrypt, parse).
//!
//! Set `RINGCAST_ALLOC_TRACE=<n>` to capture the backtraces of the first `n` allocations of the
//! measured window and print each distinct one with its count: where they come from.

// For the counting allocator below, the one unsafe item here.
#![allow(unsafe_code)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::backtrace::Backtrace;
use std::cell::Cell;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use ringcast_core::control::Limits;
use ringcast_core::{DATAGRAM_BUFFERS, ShardId, ShardStats, TrackKind};
use ringcast_sim::{ClientId, PublisherConfig, ShardScope, Sim, SimConfig};

const VIEWERS: usize = 50;

/// Allocations per RTP packet a shard forwards: none, its buffer comes from the shard's pool.
const PER_FORWARDED: f64 = 0.0;
/// str0m's allocations per RTP packet it receives from the publisher (the decrypted payload,
/// the mid's `String`).
const PER_RECEIVED: f64 = 2.0;
/// Slack per received packet, for what is not per packet (see the module docs).
const SLACK_PER_RECEIVED: f64 = 0.5;

#[test]
fn a_forwarded_packet_costs_the_shard_no_allocation() {
    let mut sim = Sim::new(SimConfig {
        seed: 13,
        ..SimConfig::default()
    });
    let (publisher, viewers) = broadcast(&mut sim, VIEWERS);
    measure(&mut sim, 1, publisher, &viewers);
}

/// A packet to more viewers than the shard keeps spare buffers ([`DATAGRAM_BUFFERS`]): those
/// past the pool wait for the drain, which sends them in the buffers given back meanwhile.
#[test]
fn a_fan_out_wider_than_the_buffer_pool_costs_no_allocation() {
    let mut sim = Sim::new(SimConfig {
        seed: 15,
        limits: Limits {
            affinity: 400,
            max: 400,
        },
        ..SimConfig::default()
    });
    let (publisher, viewers) = broadcast(&mut sim, DATAGRAM_BUFFERS + 44);
    measure(&mut sim, 1, publisher, &viewers);
}

#[test]
fn a_relayed_packet_costs_the_other_shard_no_allocation() {
    // The publisher and 25 viewers on shard 0, 25 viewers on shard 1.
    let mut sim = Sim::new(SimConfig {
        seed: 14,
        shards: 2,
        limits: Limits {
            affinity: VIEWERS / 2 + 1,
            max: 100,
        },
        ..SimConfig::default()
    });
    let (publisher, viewers) = broadcast(&mut sim, VIEWERS);
    let on_1 = viewers
        .iter()
        .filter(|v| sim.client(**v).shard == ShardId(1))
        .count();
    assert_eq!(on_1, VIEWERS / 2);
    measure(&mut sim, 2, publisher, &viewers);
}

/// The publisher and `count` viewers, connected, media running.
fn broadcast(sim: &mut Sim, count: usize) -> (ClientId, Vec<ClientId>) {
    sim.set_shard_scope(shard_scope);
    let (publisher, viewers) = sim.add_broadcast(
        "s1",
        PublisherConfig {
            vp8_picture_ids: true,
            ..PublisherConfig::video_2500kbps()
        },
        count,
        Duration::from_secs(5),
    );
    PUBLISHER.set(Some(sim.client(publisher).public));
    (publisher, viewers)
}

/// Warm up, count over 3 s, check the budget (the publisher is on shard 0 of `shards`).
fn measure(sim: &mut Sim, shards: u16, publisher: ClientId, viewers: &[ClientId]) {
    let wall = Instant::now();
    // Warm up: history buffers, queues and maps grow to their steady size first.
    sim.run_for(Duration::from_secs(2));

    let trace = std::env::var("RINGCAST_ALLOC_TRACE")
        .ok()
        .and_then(|n| n.trim().parse::<usize>().ok())
        .unwrap_or(0);
    let before = stats(sim, shards);
    let (forwarding_before, other_before) = allocations();
    TRACE_LEFT.set(trace);
    sim.run_for(Duration::from_secs(3));
    TRACE_LEFT.set(0);
    let (forwarding, other) = allocations();
    let (forwarding, other) = (forwarding - forwarding_before, other - other_before);
    let after = stats(sim, shards);

    let sent = after.tx_datagrams - before.tx_datagrams;
    let forwarded = after.rtp_forwarded - before.rtp_forwarded;
    let received = after.publisher_rtp_in - before.publisher_rtp_in;
    let per_forwarded = forwarding as f64 / forwarded as f64;
    let budget =
        PER_FORWARDED + (PER_RECEIVED + SLACK_PER_RECEIVED) * received as f64 / forwarded as f64;
    eprintln!(
        "{shards} shard(s): {forwarding} allocations in the shards over 3 s handling the \
         publisher's packets, {received} received and {forwarded} forwarded: \
         {per_forwarded:.4} per forwarded packet (budget {budget:.4}); {other} in the rest of \
         their work (the viewers' RTCP, timers); {:.4} per datagram sent ({sent}) in all. {:?} \
         wall",
        (forwarding + other) as f64 / sent as f64,
        wall.elapsed()
    );
    if trace > 0 {
        print_traces();
    }

    // The media really ran: every viewer got its packets, every one in the window.
    for c in sim.clients() {
        assert!(c.errors.is_empty(), "{:?}: {:?}", c.id, c.errors);
    }
    for kind in TrackKind::ALL {
        let sent = sim.client(publisher).sent(kind).len();
        assert!(sent > 200, "{kind}: only {sent} sent");
        for &v in viewers {
            let got = sim.client(v).received(kind).len();
            assert!(got + 20 > sent, "viewer {v:?} {kind}: {got} of {sent}");
        }
    }
    assert!(received > 1000, "only {received} packets received");
    assert_eq!(
        forwarded,
        received * viewers.len() as u64,
        "every packet received in the window went to every viewer in it"
    );
    assert!(
        per_forwarded <= budget,
        "{shards} shard(s): {per_forwarded:.4} allocations per forwarded packet, over the budget of \
         {budget:.4}: something on the shard's path allocates per packet \
         (RINGCAST_ALLOC_TRACE=100000 shows where)"
    );
}

/// The counters the budget needs.
struct Counted {
    /// Datagrams the shards sent.
    tx_datagrams: u64,
    /// RTP packets the shards forwarded to viewers.
    rtp_forwarded: u64,
    /// RTP packets the publisher's shard (0) received from it.
    publisher_rtp_in: u64,
}

fn stats(sim: &Sim, shards: u16) -> Counted {
    let all: Vec<ShardStats> = (0..shards).map(|i| sim.shard(ShardId(i)).stats()).collect();
    Counted {
        tx_datagrams: all.iter().map(|s| s.tx_datagrams).sum(),
        rtp_forwarded: all.iter().map(|s| s.rtp_forwarded).sum(),
        publisher_rtp_in: all[0].rtp_in,
    }
}

/// Which shard work an allocation is counted for.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Work {
    /// Not in a shard.
    Outside = 0,
    /// The publisher's packets: its datagrams, their relays to the other shard, and the drains
    /// that send them.
    Forwarding = 1,
    /// The rest of the shards' work: the viewers' datagrams (RTCP), timers.
    Other = 2,
}

/// Counts the allocations made while the thread is inside a shard, by [`Work`].
struct CountingAllocator;

thread_local! {
    /// What the shard is doing (set by the sim's shard scope).
    static WORK: Cell<Work> = const { Cell::new(Work::Outside) };
    /// The publisher's address: its datagrams are [`Work::Forwarding`].
    static PUBLISHER: Cell<Option<SocketAddr>> = const { Cell::new(None) };
    /// Allocations, by [`Work`].
    static ALLOCATIONS: [Cell<u64>; 3] = const { [const { Cell::new(0) }; 3] };
    /// Backtraces still to capture (`RINGCAST_ALLOC_TRACE`).
    static TRACE_LEFT: Cell<usize> = const { Cell::new(0) };
    /// Capturing a backtrace, which allocates itself: not counted, not captured.
    static CAPTURING: Cell<bool> = const { Cell::new(false) };
}

/// The captured backtraces with the work they were counted for (a static, so that storing
/// one needs no thread-local destructor).
static TRACES: Mutex<Vec<(Work, Backtrace)>> = Mutex::new(Vec::new());

fn count_allocation() {
    // `try_with`: the thread's locals may be gone while it exits; const-initialized cells
    // without destructors never allocate.
    let work = WORK.try_with(Cell::get).unwrap_or(Work::Outside);
    let capturing = CAPTURING.try_with(Cell::get).unwrap_or(true);
    if work == Work::Outside || capturing {
        return;
    }
    let _ = ALLOCATIONS.try_with(|n| n[work as usize].set(n[work as usize].get() + 1));
    let left = TRACE_LEFT.try_with(Cell::get).unwrap_or(0);
    if left > 0 {
        TRACE_LEFT.set(left - 1);
        CAPTURING.set(true);
        let trace = Backtrace::force_capture();
        TRACES.lock().expect("not poisoned").push((work, trace));
        CAPTURING.set(false);
    }
}

// SAFETY: every method forwards to the system allocator with the caller's arguments, which
// upholds GlobalAlloc's contract; the counting touches only thread-local cells (and, when
// tracing, captures a backtrace with counting switched off).
unsafe impl GlobalAlloc for CountingAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count_allocation();
        // SAFETY: forwarded as received.
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        count_allocation();
        // SAFETY: forwarded as received.
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count_allocation();
        // SAFETY: forwarded as received.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded as received.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOCATOR: CountingAllocator = CountingAllocator;

fn shard_scope(scope: ShardScope) {
    WORK.set(match scope {
        ShardScope::Datagram(source) if PUBLISHER.get() == Some(source) => Work::Forwarding,
        ShardScope::Relay | ShardScope::Drain => Work::Forwarding,
        ShardScope::Datagram(_) | ShardScope::Other => Work::Other,
        ShardScope::Outside => Work::Outside,
    });
}

/// Allocations so far: (forwarding, other).
fn allocations() -> (u64, u64) {
    ALLOCATIONS.with(|n| {
        (
            n[Work::Forwarding as usize].get(),
            n[Work::Other as usize].get(),
        )
    })
}

/// Print each distinct captured backtrace (its frames in ringcast and str0m, innermost first)
/// with its count, the most frequent first.
fn print_traces() {
    let traces = std::mem::take(&mut *TRACES.lock().expect("not poisoned"));
    let mut by_site: HashMap<String, usize> = HashMap::new();
    for (work, trace) in &traces {
        let text = trace.to_string();
        let frames: Vec<&str> = text
            .lines()
            .map(str::trim)
            .filter(|l| l.contains("ringcast") || l.contains("str0m") || l.contains("at /"))
            .filter(|l| !l.contains("allocations::") && !l.contains("/rustc/"))
            .take_while(|l| !l.contains("ringcast_sim::"))
            .collect();
        let work = match work {
            Work::Forwarding => "forwarding",
            _ => "other",
        };
        *by_site
            .entry(format!("{work}:\n{}", frames.join("\n")))
            .or_default() += 1;
    }
    let mut sites: Vec<(String, usize)> = by_site.into_iter().collect();
    sites.sort_by_key(|s| std::cmp::Reverse(s.1));
    eprintln!(
        "{} allocations traced, {} distinct backtraces:",
        traces.len(),
        sites.len()
    );
    for (site, n) in sites {
        eprintln!("---- {n} x {site}");
    }
}
