//! The control plane's flows over several shards: affine placement, the relay it keeps exact
//! as viewers and publishers come and go, a restart with another codec, and refusals that leave
//! nothing behind. The same `Control` serves HTTP.

mod common;

use std::time::Duration;

use ringcast_core::control::{Limits, Refusal};
use ringcast_core::{ShardId, TrackKind};
use ringcast_sim::{ClientId, PublisherConfig, Sim, SimConfig, VideoCodec, check};

fn sim(seed: u64, shards: u16, affinity: usize, max: usize) -> Sim {
    common::init_log();
    Sim::new(SimConfig {
        seed,
        shards,
        limits: Limits { affinity, max },
        ..SimConfig::default()
    })
}

fn shards_of(sim: &Sim, ids: &[ClientId]) -> Vec<u16> {
    ids.iter().map(|id| sim.client(*id).shard.0).collect()
}

#[test]
fn viewers_join_the_publishers_shard_then_spill_and_one_copy_crosses() {
    let mut sim = sim(31, 3, 4, 100);
    let (publisher, viewers) =
        sim.add_broadcast("s", PublisherConfig::default(), 6, Duration::from_secs(2));
    assert_eq!(sim.client(publisher).shard, ShardId(0));
    // Shard 0 fills to its affinity limit; the rest go to one other shard, the one that
    // already gets the stream's copy, not spread over the two idle ones.
    assert_eq!(shards_of(&sim, &viewers), [0, 0, 0, 1, 1, 1]);
    let view = sim.control().stream("s").expect("the stream");
    assert_eq!(view.viewers_per_shard, [3, 3, 0]);

    sim.run_for(Duration::from_secs(2));
    let (s0, s1, s2) = (
        sim.shard(ShardId(0)).stats(),
        sim.shard(ShardId(1)).stats(),
        sim.shard(ShardId(2)).stats(),
    );
    assert!(s0.rtp_in > 0);
    assert_eq!(
        s1.rtp_in, s0.rtp_in,
        "one copy of each packet crosses to shard 1"
    );
    assert_eq!(s0.relayed, s0.rtp_in, "and to no other shard");
    assert_eq!(s2.rtp_in, 0);

    // The viewers of shard 1 leave: the publisher's shard stops relaying there.
    for &v in &viewers[3..] {
        sim.remove(v).expect("removed");
    }
    let relayed = sim.shard(ShardId(0)).stats().relayed;
    sim.run_for(Duration::from_secs(1));
    let s0 = sim.shard(ShardId(0)).stats();
    assert_eq!(
        s0.relayed, relayed,
        "still relaying to a shard without viewers"
    );
    assert_eq!(sim.shard(ShardId(1)).stats().drop_no_route, 0);
    for &v in &viewers[..3] {
        assert!(sim.client(v).is_connected());
    }
}

#[test]
fn a_returning_publisher_relays_only_where_viewers_are() {
    let mut sim = sim(37, 2, 2, 100);
    let first = sim.add_publisher("r", PublisherConfig::default());
    let stay = sim.add_viewer("r");
    let go = sim.add_viewer("r");
    sim.connect(&[first, stay, go], Duration::from_secs(2));
    assert_eq!(shards_of(&sim, &[first, stay, go]), [0, 0, 1]);
    sim.run_for(Duration::from_secs(1));

    // The publisher leaves; then, while the stream has none, the viewer on shard 1 leaves.
    sim.remove(first).expect("removed");
    sim.run_for(Duration::from_millis(200));
    sim.remove(go).expect("removed");
    sim.run_for(Duration::from_millis(200));
    let relayed = sim.shard(ShardId(0)).stats().relayed;

    // The next publisher goes where the stream's remaining viewer is, and relays nowhere.
    let second = sim.add_publisher("r", PublisherConfig::default());
    assert_eq!(sim.client(second).shard, ShardId(0));
    sim.connect(&[second], Duration::from_secs(2));
    sim.run_for(Duration::from_secs(1));
    sim.set_media(second, false);
    sim.run_for(Duration::from_millis(200));
    assert_eq!(sim.shard(ShardId(0)).stats().relayed, relayed);
    assert_eq!(sim.shard(ShardId(1)).stats().drop_no_route, 0);
    assert!(
        !sim.client(stay).received(TrackKind::Video).is_empty(),
        "the remaining viewer sees the new publisher"
    );
    let sent = sim.client(second).sent(TrackKind::Audio);
    let got = sim.client(stay).received(TrackKind::Audio);
    let tail = &got[got.len() - sent.len().min(got.len())..];
    check::exact(sent, tail).expect("the new publisher's audio, whole");
}

#[test]
fn a_restart_with_another_codec_ends_the_viewers_of_the_old_one() {
    let mut sim = sim(41, 2, 3, 100);
    let (first, viewers) =
        sim.add_broadcast("c", PublisherConfig::default(), 4, Duration::from_secs(2));
    assert_eq!(shards_of(&sim, &viewers), [0, 0, 1, 1]);
    sim.run_for(Duration::from_millis(500));
    sim.remove(first).expect("removed");
    let second = sim.add_publisher(
        "c",
        PublisherConfig {
            codec: VideoCodec::H264,
            ..PublisherConfig::default()
        },
    );
    sim.run_for(Duration::from_millis(500));
    // Their players reconnect and negotiate H264; the old sessions are gone everywhere.
    assert!(sim.control().viewers_of("c").is_empty());
    assert_eq!(sim.control().participants(), 1);
    for &v in &viewers {
        let session = sim.client(v).session;
        assert!(sim.control().session(session).is_none());
        assert!(
            !sim.client(v).rtc().is_alive(),
            "viewer {v:?} was not told its session ended"
        );
    }
    assert_eq!(sim.shard(ShardId(1)).stats().participants, 0);
    assert!(sim.control().session(sim.client(second).session).is_some());
}

#[test]
fn refusals_leave_nothing_behind() {
    let mut sim = sim(43, 2, 1, 2);
    assert_eq!(
        sim.try_add_viewer("x"),
        Err(Refusal::NoPublisher("x".into()))
    );
    assert_eq!(sim.control().streams().count(), 0);
    let publisher = sim.add_publisher("x", PublisherConfig::default());
    let viewers: Vec<_> = (0..3).map(|_| sim.add_viewer("x")).collect();
    assert_eq!(sim.control().load(), &[2, 2]);
    assert_eq!(sim.try_add_viewer("x"), Err(Refusal::Full));
    assert_eq!(
        sim.try_add_publisher("y", PublisherConfig::default()),
        Err(Refusal::Full)
    );
    assert!(
        sim.control().stream("y").is_none(),
        "a refused publisher left its stream"
    );
    assert_eq!(sim.control().load(), &[2, 2]);
    let mut all = viewers.clone();
    all.push(publisher);
    sim.connect(&all, Duration::from_secs(2));
    for id in all {
        sim.remove(id).expect("removed");
    }
    assert_eq!(sim.control().load(), &[0, 0]);
    assert_eq!(sim.control().streams().count(), 0);
}
