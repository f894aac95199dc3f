//! Sessions are counted by the type of the remote candidate they connect on: the one the
//! client signalled at the address the shard sends to (in its offer or trickled), and
//! peer-reflexive when it signalled none there (a NAT mapping learned from its checks).

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use ringcast_core::{ShardId, ShardStats};
use ringcast_sim::{ClientId, PublisherConfig, Sim, SimConfig};

fn sim(seed: u64) -> (Sim, ClientId) {
    common::init_log();
    let mut sim = Sim::new(SimConfig {
        seed,
        ..SimConfig::default()
    });
    let publisher = sim.add_publisher("paths", PublisherConfig::default());
    (sim, publisher)
}

/// (host, srflx, prflx, relay, udp, tcp) connected on shard 0.
fn connected(sim: &Sim) -> (u64, u64, u64, u64, u64, u64) {
    let s: ShardStats = sim.shard(ShardId(0)).stats();
    (
        s.connected_host,
        s.connected_srflx,
        s.connected_prflx,
        s.connected_relay,
        s.connected_udp,
        s.connected_tcp,
    )
}

#[test]
fn clients_reached_at_their_signalled_host_candidates_count_as_host() {
    let (mut sim, publisher) = sim(61);
    let viewer = sim.add_viewer("paths");
    sim.connect(&[publisher, viewer], Duration::from_secs(5));
    assert_eq!(connected(&sim), (2, 0, 0, 0, 2, 0));
}

#[test]
fn a_viewer_whose_offer_signals_its_address_as_relayed_counts_as_relay() {
    let (mut sim, publisher) = sim(62);
    let viewer = sim.add_viewer_signalled_as("paths", "relay");
    let other = sim.add_viewer_signalled_as("paths", "srflx");
    sim.connect(&[publisher, viewer, other], Duration::from_secs(5));
    assert_eq!(connected(&sim), (1, 1, 0, 1, 3, 0));
}

#[test]
fn a_viewer_that_trickles_its_relayed_candidate_counts_as_relay() {
    let (mut sim, publisher) = sim(63);
    let viewer = sim.add_viewer_without_candidates("paths");
    sim.trickle(viewer, "relay")
        .expect("the session is on its shard");
    sim.connect(&[publisher, viewer], Duration::from_secs(5));
    assert_eq!(connected(&sim), (1, 0, 0, 1, 2, 0));
}

#[test]
fn a_viewer_reached_at_an_address_it_never_signalled_counts_as_prflx() {
    let (mut sim, publisher) = sim(64);
    let viewer = sim.add_viewer("paths");
    // Behind a NAT: its offer names its own address, the shard sees only the mapping.
    sim.rebind(viewer, SocketAddr::from(([198, 51, 100, 1], 40_000)));
    let unsignalled = sim.add_viewer_without_candidates("paths");
    sim.connect(&[publisher, viewer, unsignalled], Duration::from_secs(5));
    assert_eq!(connected(&sim), (1, 0, 2, 0, 3, 0));
}
