//! How sessions end: one connect timeout for every session that never connects, whatever its
//! offer carries; and a farewell that tells every live peer at once when the server stops.

mod common;

use std::time::{Duration, Instant};

use ringcast_core::{SessionId, ShardEvent, ShardId};
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
    assert_eq!(sim.shard(ShardId(0)).map_sizes(), [0; 6]);
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
