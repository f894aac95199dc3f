//! How sessions end: one connect timeout for every session that never connects, whatever its
//! offer carries; and a farewell that tells every live peer at once when the server stops.

mod common;

use std::time::{Duration, Instant};

use ringcast_core::{Command, Reply, SessionId, ShardEvent, ShardId};
use ringcast_sim::{ClientId, PublisherConfig, Sim, SimConfig};

/// How long after `start` the shard reported `session` closed, if it did.
fn closed_after(sim: &Sim, session: SessionId, start: Instant) -> Option<Duration> {
    sim.events()
        .iter()
        .find(|e| e.event == ShardEvent::SessionClosed { session })
        .map(|e| e.at - start)
}

#[test]
fn sessions_that_never_connect_end_at_the_connect_timeout_with_or_without_candidates() {
    // str0m's ICE-lite agent drops a candidate pair 15 s after it was formed without a check;
    // an offer with candidates forms pairs at once, one without forms none. Both must end at
    // the configured connect timeout, not one at 15 s and the other at 30 s.
    common::init_log();
    let connect_timeout = Duration::from_secs(30);
    let mut sim = Sim::new(SimConfig {
        seed: 7,
        ..SimConfig::default()
    });
    assert_eq!(sim.shard(ShardId(0)).map_sizes()[0], 0);
    let start = sim.now();
    let with = sim.add_publisher("with-candidates", PublisherConfig::default());
    let without = sim.add_publisher_without_candidates("without", PublisherConfig::default());
    let viewer_with = sim.add_viewer("with-candidates");
    let viewer_without = sim.add_viewer_without_candidates("without");
    let ghosts = [with, without, viewer_with, viewer_without];
    for &c in &ghosts {
        sim.vanish(c);
    }
    let session = |sim: &Sim, c: ClientId| sim.client(c).session;

    sim.run_for(Duration::from_secs(20));
    for &c in &ghosts {
        assert_eq!(
            closed_after(&sim, session(&sim, c), start),
            None,
            "client {c:?} was dropped before the connect timeout"
        );
    }
    sim.run_for(Duration::from_secs(15));
    for &c in &ghosts {
        assert_eq!(
            closed_after(&sim, session(&sim, c), start),
            Some(connect_timeout),
            "client {c:?}"
        );
    }
    assert_eq!(sim.shard(ShardId(0)).map_sizes(), [0; 7]);
    assert_eq!(sim.control().load(), &[0]);
}

#[test]
fn a_connected_session_that_loses_connectivity_still_ends_by_ice_consent() {
    // Only sessions that never connected wait for the connect timeout; one that connected and
    // went silent ends when ICE gives up (15 s after the last check), as before.
    common::init_log();
    let mut sim = Sim::new(SimConfig {
        seed: 8,
        ..SimConfig::default()
    });
    let (publisher, viewers) =
        sim.add_broadcast("s", PublisherConfig::default(), 1, Duration::from_secs(2));
    sim.run_for(Duration::from_secs(1));
    let gone = sim.now();
    sim.vanish(viewers[0]);
    sim.run_for(Duration::from_secs(25));
    let after =
        closed_after(&sim, sim.client(viewers[0]).session, gone).expect("the silent viewer ended");
    assert!(
        after < Duration::from_secs(20),
        "ended {after:?} after going silent"
    );
    assert_eq!(
        closed_after(&sim, sim.client(publisher).session, gone),
        None
    );
}

#[test]
fn a_farewell_tells_every_live_peer_and_empties_the_shards() {
    // Two shards, a publisher and viewers on both, and one viewer that never connected. The
    // server stops: each shard's farewell sends every connected peer its DTLS close_notify
    // (str0m's client reports `Event::Closed` at once, a browser closes its transport), and
    // each shard ends empty.
    common::init_log();
    let mut sim = Sim::new(SimConfig {
        seed: 9,
        shards: 2,
        limits: ringcast_core::control::Limits {
            affinity: 3,
            max: 100,
        },
        ..SimConfig::default()
    });
    let (publisher, viewers) = sim.add_broadcast(
        "live",
        PublisherConfig::default(),
        4,
        Duration::from_secs(2),
    );
    sim.run_for(Duration::from_millis(500));
    let ghost = sim.add_viewer("live");
    sim.vanish(ghost);
    let mut live = viewers.clone();
    live.push(publisher);
    assert!(
        [ShardId(0), ShardId(1)]
            .iter()
            .all(|&s| live.iter().any(|&c| sim.client(c).shard == s)),
        "peers on both shards"
    );
    for &c in &live {
        assert!(sim.client(c).rtc().is_alive());
    }

    let told: usize = [ShardId(0), ShardId(1)]
        .into_iter()
        .map(|s| match sim.command(s, Command::Farewell) {
            Ok(Reply::Farewell { sessions }) => sessions,
            other => panic!("shard {s:?} answered {other:?}"),
        })
        .sum();
    assert_eq!(
        told,
        live.len() + 1,
        "every session, the unconnected one too"
    );
    let farewell = sim.now();
    // Nothing else runs on the shards now; their datagrams reach the clients within the
    // links' delay.
    sim.run_for(Duration::from_millis(200));
    for &c in &live {
        let client = sim.client(c);
        assert!(
            client
                .remote_closed_at
                .is_some_and(|at| at - farewell < Duration::from_millis(200)),
            "client {c:?} was not told: {:?}",
            client.errors
        );
        assert!(!client.rtc().is_alive(), "client {c:?}");
    }
    for s in [ShardId(0), ShardId(1)] {
        assert_eq!(
            sim.shard(s).map_sizes(),
            [0; 7],
            "shard {s:?}: [participants, sessions, addrs, ufrags, streams, timers, rooms]"
        );
    }
    // Each session was reported closed, so the control plane let go of them too.
    for c in live.iter().chain([&ghost]) {
        assert!(closed_after(&sim, sim.client(*c).session, farewell).is_some());
    }
    assert_eq!(sim.control().load(), &[0, 0]);
    assert_eq!(sim.control().streams().count(), 0);
}
