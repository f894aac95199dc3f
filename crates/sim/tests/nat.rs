//! Clients behind NATs: the shard only ever sees their NAT's mapping (a peer-reflexive address
//! learned from their checks), and when the NAT rebinds mid-stream (its mapping flushed: the
//! client's datagrams now come from another port) media keeps flowing both ways within a few
//! seconds, without a new offer. And a shard behind a 1:1 NAT, reached only through the address
//! it announces.

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use ringcast_core::{ShardConfig, ShardId, TrackKind};
use ringcast_sim::{ClientId, PublisherConfig, Sim, SimConfig};

/// How long the media may stop around a rebinding: the client's next check from its new
/// address (str0m, like browsers, checks its selected pair every few seconds) plus a margin.
const MAX_GAP: Duration = Duration::from_secs(4);

/// A NAT's public address for a client: 198.51.100.1:`port`.
fn mapped(port: u16) -> SocketAddr {
    SocketAddr::from(([198, 51, 100, 1], port))
}

/// The longest time between two video packets `viewer` received after `from`, up to `until`.
fn longest_video_gap(sim: &Sim, viewer: ClientId, from: Instant, until: Instant) -> Duration {
    let mut last = from;
    let mut gap = Duration::ZERO;
    for r in sim.client(viewer).received(TrackKind::Video) {
        if r.at <= from {
            continue;
        }
        gap = gap.max(r.at - last);
        last = r.at;
    }
    gap.max(until - last)
}

/// A publisher and a viewer, each behind its own NAT from the start, connected and playing.
fn natted_broadcast(seed: u64) -> (Sim, ClientId, ClientId) {
    let mut sim = Sim::new(SimConfig {
        seed,
        ..SimConfig::default()
    });
    let publisher = sim.add_publisher("nat", PublisherConfig::default());
    let viewer = sim.add_viewer("nat");
    // Before either sent anything: their offers name their own addresses, which the shard
    // cannot reach; it sees them only from their mappings.
    sim.rebind(publisher, mapped(30_000));
    sim.rebind(viewer, mapped(31_000));
    sim.connect(&[publisher, viewer], Duration::from_secs(5));
    sim.run_for(Duration::from_secs(3));
    assert!(
        !sim.client(viewer).received(TrackKind::Video).is_empty(),
        "the viewer behind a NAT gets no video"
    );
    (sim, publisher, viewer)
}

#[test]
fn a_viewer_keeps_playing_when_its_nat_rebinds() {
    common::init_log();
    let (mut sim, _publisher, viewer) = natted_broadcast(41);
    let moved = sim.now();
    sim.rebind(viewer, mapped(47_123));
    sim.run_for(Duration::from_secs(10));
    let gap = longest_video_gap(&sim, viewer, moved, sim.now());
    assert!(
        gap <= MAX_GAP,
        "the viewer got no video for {gap:?} after its NAT rebound (at most {MAX_GAP:?})"
    );
    assert!(sim.client(viewer).is_connected(), "the viewer disconnected");
    assert_eq!(sim.shard(ShardId(0)).stats().ice_moves, 1);
}

#[test]
fn a_publisher_keeps_sending_when_its_nat_rebinds() {
    common::init_log();
    let (mut sim, publisher, viewer) = natted_broadcast(42);
    let moved = sim.now();
    sim.rebind(publisher, mapped(52_001));
    sim.run_for(Duration::from_secs(10));
    let gap = longest_video_gap(&sim, viewer, moved, sim.now());
    assert!(
        gap <= MAX_GAP,
        "the viewer got no video for {gap:?} after the publisher's NAT rebound (at most {MAX_GAP:?})"
    );
    assert!(sim.client(publisher).is_connected());
}

#[test]
fn a_viewer_survives_rebinding_back_to_an_earlier_mapping() {
    // A -> B -> A: the address the shard moved away from must be usable again.
    common::init_log();
    let (mut sim, _publisher, viewer) = natted_broadcast(43);
    let start = sim.now();
    sim.rebind(viewer, mapped(47_124));
    sim.run_for(Duration::from_secs(6));
    sim.rebind(viewer, mapped(31_000));
    sim.run_for(Duration::from_secs(10));
    let gap = longest_video_gap(&sim, viewer, start, sim.now());
    assert!(
        gap <= MAX_GAP,
        "the viewer got no video for {gap:?} around two rebindings (at most {MAX_GAP:?})"
    );
    assert_eq!(sim.shard(ShardId(0)).stats().ice_moves, 2);
}

#[test]
fn a_shard_behind_a_one_to_one_nat_is_reached_through_its_announced_address() {
    // `media.announce`: the answers name 203.0.113.7 and the shard's port; the NAT hands the
    // shard datagrams addressed to its own 10.99.0.0:5000, which it presents to str0m as
    // addressed to the announced address and port.
    common::init_log();
    let announced = SocketAddr::from(([203, 0, 113, 7], 0));
    let mut sim = Sim::new(SimConfig {
        seed: 44,
        shard: ShardConfig {
            announced: vec![announced],
            ..ShardConfig::default()
        },
        ..SimConfig::default()
    });
    let (_publisher, viewers) =
        sim.add_broadcast("nat", PublisherConfig::default(), 1, Duration::from_secs(5));
    let shard = sim.client(viewers[0]).shard_addr;
    assert_eq!(shard, SocketAddr::from(([203, 0, 113, 7], 5000)));
    sim.run_for(Duration::from_secs(3));
    assert!(
        !sim.client(viewers[0]).received(TrackKind::Video).is_empty(),
        "the viewer of a shard behind a 1:1 NAT gets no video"
    );
}
