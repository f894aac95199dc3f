//! After everyone leaves, a shard holds nothing: every map it keeps is empty once its timers
//! ran, whatever the order of leaving, and whether sessions were removed or timed out.

mod common;

use std::time::Duration;

use ringcast_core::ShardId;
use ringcast_core::control::Limits;
use ringcast_sim::{ClientId, PublisherConfig, Sim, SimConfig};

/// A publisher on shard 0 and viewers on shards 0 and 1 (shard 0 takes four participants
/// before viewers spill), streaming.
fn busy() -> (Sim, ClientId, Vec<ClientId>) {
    common::init_log();
    let mut sim = Sim::new(SimConfig {
        seed: 21,
        shards: 2,
        limits: Limits {
            affinity: 4,
            max: 100,
        },
        ..SimConfig::default()
    });
    let stream = "s3";
    let publisher = sim.add_publisher(stream, PublisherConfig::default());
    let viewers: Vec<_> = (0..6).map(|_| sim.add_viewer(stream)).collect();
    let mut all = viewers.clone();
    all.push(publisher);
    sim.connect(&all, Duration::from_secs(2));
    sim.run_for(Duration::from_secs(1));
    for &v in &viewers {
        assert!(
            !sim.client(v)
                .received(ringcast_core::TrackKind::Video)
                .is_empty()
        );
    }
    let on = |s: u16| {
        viewers
            .iter()
            .filter(|v| sim.client(**v).shard == ShardId(s))
            .count()
    };
    assert_eq!((on(0), on(1)), (3, 3));
    (sim, publisher, viewers)
}

fn assert_empty(sim: &mut Sim) {
    // Let timers run (and anything in flight arrive).
    sim.run_for(Duration::from_secs(5));
    for shard in [ShardId(0), ShardId(1)] {
        assert_eq!(
            sim.shard(shard).map_sizes(),
            [0; 7],
            "shard {shard:?}: [participants, sessions, addrs, ufrags, streams, timers, rooms]"
        );
        let stats = sim.shard(shard).stats();
        assert_eq!(
            (stats.participants, stats.publishers, stats.streams),
            (0, 0, 0)
        );
    }
    // The control plane let go of everything too.
    assert_eq!(sim.control().load(), &[0, 0]);
    assert_eq!(sim.control().streams().count(), 0);
}

#[test]
fn viewers_leave_then_publisher() {
    let (mut sim, publisher, viewers) = busy();
    for v in viewers {
        sim.remove(v).expect("removed");
        sim.run_for(Duration::from_millis(50));
    }
    sim.remove(publisher).expect("removed");
    assert_empty(&mut sim);
}

#[test]
fn publisher_leaves_then_viewers() {
    let (mut sim, publisher, viewers) = busy();
    sim.remove(publisher).expect("removed");
    sim.run_for(Duration::from_millis(500));
    for v in viewers {
        sim.remove(v).expect("removed");
    }
    assert_empty(&mut sim);
}

#[test]
fn everyone_times_out() {
    let (mut sim, publisher, viewers) = busy();
    sim.vanish(publisher);
    for &v in &viewers {
        sim.vanish(v);
    }
    // str0m's ICE-lite timeout is 15 s after the last binding request.
    sim.run_for(Duration::from_secs(20));
    let closed = sim
        .events()
        .iter()
        .filter(|e| matches!(e.event, ringcast_core::ShardEvent::SessionClosed { .. }))
        .count();
    assert_eq!(closed, viewers.len() + 1);
    assert_empty(&mut sim);
}

#[test]
fn removing_twice_is_an_error_not_a_panic() {
    let (mut sim, publisher, _) = busy();
    sim.remove(publisher).expect("removed");
    let again = sim.command(
        ShardId(0),
        ringcast_core::Command::Remove {
            session: sim.client(publisher).session,
        },
    );
    assert_eq!(again, Err(ringcast_core::CommandError::UnknownSession));
}

#[test]
fn a_session_removed_by_the_server_tells_its_client() {
    // Removal the client did not ask for (the control plane kicks it): the shard's close goes
    // out, so the client's str0m closes at once instead of timing out ICE ~20 s later.
    let (mut sim, _publisher, viewers) = busy();
    let v = viewers[0];
    let session = sim.client(v).session;
    let shard = sim.client(v).shard;
    sim.command(shard, ringcast_core::Command::Remove { session })
        .expect("removed");
    sim.run_for(Duration::from_millis(100));
    let c = sim.client(v);
    assert!(
        !c.rtc().is_alive(),
        "the viewer's client was not told it was removed"
    );
}

#[test]
fn a_session_that_never_connects_is_closed_by_the_shard() {
    // A WHEP client that got its answer and never sent a packet (it crashed, or its HTTP
    // request was abandoned): the shard must not hold it forever.
    common::init_log();
    let mut sim = Sim::new(SimConfig {
        seed: 5,
        ..SimConfig::default()
    });
    let stream = "s9";
    let publisher = sim.add_publisher(stream, PublisherConfig::default());
    sim.connect(&[publisher], Duration::from_secs(2));
    let ghost = sim.add_viewer(stream);
    sim.vanish(ghost);
    let session = sim.client(ghost).session;
    let start = sim.now();
    let closed = sim.run_until_true(Duration::from_secs(120), |s| {
        s.events()
            .iter()
            .any(|e| e.event == ringcast_core::ShardEvent::SessionClosed { session })
    });
    eprintln!(
        "never-connected session closed after {:?}",
        sim.now() - start
    );
    assert!(closed, "the shard kept a session that never connected");
    // ShardConfig::connect_timeout, 30 s by default.
    assert!(sim.now() - start <= Duration::from_secs(31));
}
