//! Viewers on several shards: the control plane keeps a stream's viewers on its publisher's
//! shard until that shard reaches its affinity limit, then spills them. The publisher's shard
//! relays each packet once to each other shard with viewers, which fans it out; keyframe
//! requests travel back.

mod common;

use std::time::Duration;

use ringcast_core::control::Limits;
use ringcast_core::{ShardConfig, ShardId, TrackKind};
use ringcast_sim::{PublisherConfig, Sim, SimConfig, check, media};

#[test]
fn viewers_on_both_shards_get_everything() {
    common::init_log();
    // Shard 0 takes the publisher and four viewers; the next viewers spill to shard 1.
    let mut sim = Sim::new(SimConfig {
        seed: 13,
        shards: 2,
        limits: Limits {
            affinity: 5,
            max: 100,
        },
        // The late viewer must start on a keyframe requested through shard 0, not from the
        // cache (gop_cache.rs starts viewers on several shards from it).
        shard: ShardConfig {
            gop_cache_bytes: 0,
            ..ShardConfig::default()
        },
        ..SimConfig::default()
    });
    let stream = "s2";
    let publisher = sim.add_publisher(
        stream,
        PublisherConfig {
            start_on_connect: false,
            keyframe_interval: Duration::from_secs(10),
            ..PublisherConfig::default()
        },
    );
    let viewers: Vec<_> = (0..8).map(|_| sim.add_viewer(stream)).collect();
    let mut all = viewers.clone();
    all.push(publisher);
    sim.connect(&all, Duration::from_secs(2));
    sim.set_media(publisher, true);
    sim.run_for(Duration::from_secs(2));

    // A viewer on shard 1 asks for a keyframe (PLI): shard 1 relays the request to shard 0,
    // which asks the publisher.
    let shards: Vec<u16> = viewers.iter().map(|v| sim.client(*v).shard.0).collect();
    assert_eq!(shards, [0, 0, 0, 0, 1, 1, 1, 1]);
    let remote = viewers[4];
    let before = sim.client(publisher).publisher().keyframe_requests.len();
    let asked = sim.now();
    assert!(sim.viewer_request_keyframe(remote));
    let reached = sim.run_until_true(Duration::from_millis(200), |s| {
        s.client(publisher).publisher().keyframe_requests.len() > before
    });
    assert!(
        reached,
        "the keyframe request from shard 1 did not reach the publisher"
    );
    let took = sim.client(publisher).publisher().keyframe_requests[before] - asked;
    eprintln!("keyframe request from shard 1 reached the publisher after {took:?}");
    // Nothing was asked for in the last second, so nothing holds it back: two 1 ms hops.
    assert!(took <= Duration::from_millis(10), "{took:?}");

    // A second PLI within the keyframe interval is merged on shard 1 and goes once the interval
    // is over: shard 1 sees the stream only as relayed packets, and those must release it too.
    sim.run_for(Duration::from_millis(300));
    let before = sim.client(publisher).publisher().keyframe_requests.len();
    assert!(sim.viewer_request_keyframe(remote));
    let reached = sim.run_until_true(Duration::from_millis(1200), |s| {
        s.client(publisher).publisher().keyframe_requests.len() > before
    });
    assert!(
        reached,
        "a keyframe request merged on shard 1 never reached the publisher"
    );
    let went = sim.client(publisher).publisher().keyframe_requests[before] - asked;
    eprintln!("merged keyframe request from shard 1 reached the publisher after {went:?}");
    let interval = ShardConfig::default().keyframe_interval;
    assert!(
        went >= interval && went <= interval + Duration::from_millis(100),
        "{went:?}"
    );

    // A late viewer on shard 1 starts on a keyframe requested through shard 0.
    sim.run_for(Duration::from_millis(1500));
    let joined = sim.now();
    let late = sim.add_viewer(stream);
    assert_eq!(sim.client(late).shard, ShardId(1), "the late viewer spills");
    let got = sim.run_until_true(Duration::from_secs(1), |s| {
        !s.client(late).received(TrackKind::Video).is_empty()
    });
    assert!(got, "late viewer on shard 1 got no video within 1 s");
    let first = &sim.client(late).received(TrackKind::Video)[0];
    assert!(media::starts_keyframe(
        media::VideoCodec::Vp8,
        &first.payload
    ));
    eprintln!(
        "late viewer on shard 1: first video after {:?}",
        first.at - joined
    );

    sim.run_for(Duration::from_secs(1));
    sim.set_media(publisher, false);
    sim.run_for(Duration::from_millis(200));

    for kind in TrackKind::ALL {
        let sent = sim.client(publisher).sent(kind);
        for &v in &viewers {
            let start = check::exact(sent, sim.client(v).received(kind)).unwrap_or_else(|e| {
                panic!("viewer {v:?} on {:?} {kind}: {e}", sim.client(v).shard)
            });
            assert_eq!(start, 0, "viewer {v:?} {kind}");
        }
        check::exact(sent, sim.client(late).received(kind))
            .unwrap_or_else(|e| panic!("late viewer {kind}: {e}"));
    }
    let (s0, s1) = (sim.shard(ShardId(0)).stats(), sim.shard(ShardId(1)).stats());
    // Every publisher packet crossed once, however many viewers shard 1 has.
    assert_eq!(s1.rtp_in, s0.rtp_in, "{s0:?}\n{s1:?}");
    assert!(s0.relayed >= s0.rtp_in);
    assert_eq!(s1.drop_no_route, 0);
}

#[test]
fn all_viewers_on_other_shards() {
    // One participant per shard: the publisher's shard holds no viewer and relays to three.
    common::init_log();
    let mut sim = Sim::new(SimConfig {
        seed: 17,
        shards: 4,
        limits: Limits {
            affinity: 1,
            max: 1,
        },
        // Started on keyframes the publisher sends, not from the cache (see gop_cache.rs).
        shard: ShardConfig {
            gop_cache_bytes: 0,
            ..ShardConfig::default()
        },
        ..SimConfig::default()
    });
    let stream = "s4";
    let publisher = sim.add_publisher(stream, PublisherConfig::default());
    sim.connect(&[publisher], Duration::from_secs(2));
    sim.run_for(Duration::from_millis(500));
    // Viewers arrive on shard 1 after media started: their first video is a keyframe.
    let viewers: Vec<_> = (0..3).map(|_| sim.add_viewer(stream)).collect();
    sim.connect(&viewers, Duration::from_secs(2));
    sim.run_for(Duration::from_secs(2));
    sim.set_media(publisher, false);
    sim.run_for(Duration::from_millis(200));
    for kind in TrackKind::ALL {
        let sent = sim.client(publisher).sent(kind);
        for &v in &viewers {
            let start = check::exact(sent, sim.client(v).received(kind))
                .unwrap_or_else(|e| panic!("viewer {v:?} {kind}: {e}"));
            if kind == TrackKind::Video {
                assert!(sent[start].keyframe);
            }
        }
    }
    let mut shards: Vec<u16> = viewers.iter().map(|v| sim.client(*v).shard.0).collect();
    shards.sort();
    assert_eq!(shards, [1, 2, 3]);
    assert_eq!(sim.shard(ShardId(0)).stats().rtp_forwarded, 0);
}
