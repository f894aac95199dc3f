//! ICE over TCP (RFC 6544): with `media.tcp` the shards answer a passive TCP candidate after the
//! UDP one. Clients whose networks drop UDP connect on it and get media as over UDP; clients
//! that can use UDP still do (the TCP candidate ranks lower).

mod common;

use std::time::Duration;

use ringcast_core::{ShardId, ShardStats, TrackKind};
use ringcast_sim::{PublisherConfig, Sim, SimConfig, check};

fn sim(seed: u64) -> Sim {
    common::init_log();
    Sim::new(SimConfig {
        seed,
        tcp: true,
        ..SimConfig::default()
    })
}

#[test]
fn a_publisher_and_a_viewer_whose_networks_drop_udp_connect_over_tcp_and_get_every_packet() {
    let mut sim = sim(71);
    let publisher = sim.add_publisher_over_tcp(
        "tcp",
        PublisherConfig {
            start_on_connect: false,
            ..PublisherConfig::default()
        },
    );
    let viewer = sim.add_viewer_over_tcp("tcp");
    let udp_viewer = sim.add_viewer("tcp");
    sim.connect(&[publisher, viewer, udp_viewer], Duration::from_secs(5));
    let s: ShardStats = sim.shard(ShardId(0)).stats();
    assert_eq!(
        (s.connected_host, s.connected_udp, s.connected_tcp),
        (3, 1, 2)
    );

    sim.set_media(publisher, true);
    sim.run_for(Duration::from_secs(2));
    sim.set_media(publisher, false);
    sim.run_for(Duration::from_millis(300));
    let p = sim.client(publisher);
    for kind in TrackKind::ALL {
        let sent = p.sent(kind);
        assert!(sent.len() > 50, "{kind}: only {} sent", sent.len());
        for v in [viewer, udp_viewer] {
            let got = sim.client(v).received(kind);
            let start =
                check::exact(sent, got).unwrap_or_else(|e| panic!("viewer {v:?} {kind}: {e}"));
            assert_eq!(start, 0, "viewer {v:?} {kind} missed the beginning");
        }
    }
    for c in sim.clients() {
        assert!(c.errors.is_empty(), "{:?}: {:?}", c.id, c.errors);
    }
}

#[test]
fn without_tcp_candidates_a_client_whose_network_drops_udp_never_connects() {
    let mut sim = Sim::new(SimConfig {
        seed: 72,
        ..SimConfig::default()
    });
    let publisher = sim.add_publisher_over_tcp("tcp", PublisherConfig::default());
    let connected = sim.run_until_true(Duration::from_secs(5), |sim| {
        sim.shard(ShardId(0)).stats().connected_udp + sim.shard(ShardId(0)).stats().connected_tcp
            > 0
    });
    assert!(!connected);
    assert!(!sim.client(publisher).is_connected());
}
