//! A shard's stats are running totals, not a scan per call: through joins, media (keyframe
//! caches filling, overflowing, reset by a new publisher session, relay copies on the other
//! shard), room members and leaves in any order, `Shard::stats` equals a full recount at every
//! step.

mod common;

use std::time::Duration;

use ringcast_core::control::Limits;
use ringcast_core::{ShardConfig, ShardId, ShardStats};
use ringcast_sim::{ClientId, MemberConfig, PublisherConfig, Sim, SimConfig};

const SHARDS: u16 = 2;

/// What the checks saw at least once, so that the test is known to cover it.
#[derive(Default)]
struct Seen {
    /// Most publishers on the shards at once.
    publishers: u64,
    /// Per shard, whether its keyframe caches held bytes.
    cached: [bool; SHARDS as usize],
    /// Keyframe caches emptied for outgrowing their bound.
    overflows: u64,
}

/// Every shard's stats equal the recount.
fn check(sim: &Sim, seen: &mut Seen) {
    let mut publishers = 0;
    for s in 0..SHARDS {
        let shard = sim.shard(ShardId(s));
        let stats: ShardStats = shard.stats();
        assert_eq!(
            stats,
            shard.recount_stats(),
            "shard {s} at {:?}",
            sim.elapsed()
        );
        publishers += stats.publishers;
        seen.cached[usize::from(s)] |= stats.gop_cache_bytes > 0;
        seen.overflows = seen.overflows.max(stats.gop_overflows);
    }
    seen.publishers = seen.publishers.max(publishers);
}

/// Run for `d` in 50 ms steps, checking after each.
fn run_checking(sim: &mut Sim, d: Duration, seen: &mut Seen) {
    let step = Duration::from_millis(50);
    let mut ran = Duration::ZERO;
    while ran < d {
        sim.run_for(step);
        ran += step;
        check(sim, seen);
    }
}

fn remove(sim: &mut Sim, id: ClientId, seen: &mut Seen) {
    sim.remove(id).expect("removed");
    check(sim, seen);
    run_checking(sim, Duration::from_millis(200), seen);
}

#[test]
fn stats_equal_a_recount_through_joins_media_and_leaves() {
    let seen = joins_media_and_leaves(ShardConfig::default());
    assert_eq!(seen.overflows, 0);
}

#[test]
fn stats_equal_a_recount_with_caches_that_overflow() {
    let seen = joins_media_and_leaves(ShardConfig {
        gop_cache_bytes: 48 * 1024,
        ..ShardConfig::default()
    });
    assert!(seen.overflows > 0, "the caches overflowed");
}

/// Publishers, viewers and room members on two shards with `shard`'s settings join, stream and
/// leave, the stats checked against a recount all along; they end at zero.
fn joins_media_and_leaves(shard: ShardConfig) -> Seen {
    common::init_log();
    let mut sim = Sim::new(SimConfig {
        seed: 13,
        shards: SHARDS,
        shard,
        limits: Limits {
            affinity: 3,
            max: 100,
        },
        ..SimConfig::default()
    });
    let mut seen = Seen::default();

    // Two streams with viewers on both shards (shard 0 takes three before they spill).
    let a = sim.add_publisher("a", PublisherConfig::default());
    let a_viewers: Vec<_> = (0..4).map(|_| sim.add_viewer("a")).collect();
    let b = sim.add_publisher("b", PublisherConfig::default());
    let b_viewers: Vec<_> = (0..3).map(|_| sim.add_viewer("b")).collect();
    check(&sim, &mut seen);
    let mut all = vec![a, b];
    all.extend(&a_viewers);
    all.extend(&b_viewers);
    sim.connect(&all, Duration::from_secs(2));
    run_checking(&mut sim, Duration::from_secs(2), &mut seen);

    // Stream a's publisher goes and another takes over: its caches start again, here and in
    // the relay copies.
    sim.set_media(a, false);
    run_checking(&mut sim, Duration::from_millis(100), &mut seen);
    remove(&mut sim, a, &mut seen);
    let a2 = sim.add_publisher("a", PublisherConfig::default());
    check(&sim, &mut seen);
    sim.connect(&[a2], Duration::from_secs(2));
    run_checking(&mut sim, Duration::from_secs(1), &mut seen);

    // A room over both shards, its members publishing and receiving.
    let members: Vec<_> = (0..4)
        .map(|i| sim.join_room("r", &format!("m{i}"), MemberConfig::slots(3, 3)))
        .collect();
    check(&sim, &mut seen);
    sim.connect_members(&members, Duration::from_secs(3));
    run_checking(&mut sim, Duration::from_secs(2), &mut seen);

    // Everyone leaves, in a mixed order.
    remove(&mut sim, a2, &mut seen);
    remove(&mut sim, members[1], &mut seen);
    for &v in &a_viewers {
        remove(&mut sim, v, &mut seen);
    }
    remove(&mut sim, b_viewers[0], &mut seen);
    remove(&mut sim, members[0], &mut seen);
    remove(&mut sim, b, &mut seen);
    for &m in &members[2..] {
        remove(&mut sim, m, &mut seen);
    }
    for &v in &b_viewers[1..] {
        remove(&mut sim, v, &mut seen);
    }
    run_checking(&mut sim, Duration::from_secs(1), &mut seen);

    assert!(seen.publishers >= 2, "two publishers at once");
    assert_eq!(
        seen.cached, [true; SHARDS as usize],
        "caches on both shards"
    );
    for s in 0..SHARDS {
        let stats = sim.shard(ShardId(s)).stats();
        assert_eq!(
            (
                stats.participants,
                stats.publishers,
                stats.streams,
                stats.rooms,
                stats.gop_cache_bytes
            ),
            (0, 0, 0, 0, 0),
            "shard {s}"
        );
    }
    seen
}
