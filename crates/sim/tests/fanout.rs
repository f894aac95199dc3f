//! One publisher (Opus + VP8) to 100 viewers on one shard, clean network: every viewer gets
//! every packet byte-exact, in order, with sequence numbers +1 each.

mod common;

use std::time::{Duration, Instant};

use ringcast_core::{ShardId, TrackKind};
use ringcast_sim::{ClientId, PublisherConfig, Sim, SimConfig, VideoCodec, check};

const VIEWERS: usize = 100;

#[test]
fn one_publisher_to_100_viewers() {
    common::init_log();
    let wall = Instant::now();
    let mut sim = Sim::new(SimConfig {
        seed: 7,
        ..SimConfig::default()
    });
    let stream = "s1";
    let publisher = sim.add_publisher(
        stream,
        PublisherConfig {
            start_on_connect: false,
            ..PublisherConfig::default()
        },
    );
    let viewers: Vec<_> = (0..VIEWERS).map(|_| sim.add_viewer(stream)).collect();
    let mut all = viewers.clone();
    all.push(publisher);
    sim.connect(&all, Duration::from_secs(5));
    let connected = sim.elapsed();

    sim.set_media(publisher, true);
    sim.run_for(Duration::from_secs(3));
    sim.set_media(publisher, false);
    sim.run_for(Duration::from_millis(300));

    let p = sim.client(publisher);
    for kind in TrackKind::ALL {
        let sent = p.sent(kind);
        assert!(sent.len() > 100, "{kind}: only {} sent", sent.len());
        for &v in &viewers {
            let got = sim.client(v).received(kind);
            let start =
                check::exact(sent, got).unwrap_or_else(|e| panic!("viewer {v:?} {kind}: {e}"));
            assert_eq!(start, 0, "viewer {v:?} {kind} missed the beginning");
        }
    }
    for c in sim.clients() {
        assert!(c.errors.is_empty(), "{:?}: {:?}", c.id, c.errors);
    }
    let stats = sim.shard(ShardId(0)).stats();
    eprintln!(
        "fanout: connected at {connected:?}, {} steps, {:?} wall, stats {stats:?}",
        sim.steps,
        wall.elapsed()
    );
    // Most packets leave as they are forwarded, without a poll of the viewer's peer; the rest
    // wait for one: a stream's first packets, and those that meet a timer due or other output.
    assert!(
        stats.rtp_forwarded_at_once * 10 >= stats.rtp_forwarded * 9,
        "{} of {} forwarded packets left at once",
        stats.rtp_forwarded_at_once,
        stats.rtp_forwarded
    );
}

/// A sim with one publisher (`config`; media on once all are connected) and `viewers` viewers of
/// its stream, after `media` of streaming and 300 ms for the last packets to land.
fn streamed(
    seed: u64,
    config: PublisherConfig,
    viewers: usize,
    media: Duration,
) -> (Sim, ClientId, Vec<ClientId>) {
    let mut sim = Sim::new(SimConfig {
        seed,
        ..SimConfig::default()
    });
    let stream = "s";
    let publisher = sim.add_publisher(
        stream,
        PublisherConfig {
            start_on_connect: false,
            ..config
        },
    );
    let viewers: Vec<_> = (0..viewers).map(|_| sim.add_viewer(stream)).collect();
    let mut all = viewers.clone();
    all.push(publisher);
    sim.connect(&all, Duration::from_secs(5));
    sim.set_media(publisher, true);
    sim.run_for(media);
    sim.set_media(publisher, false);
    sim.run_for(Duration::from_millis(300));
    (sim, publisher, viewers)
}

/// Every viewer got every `kind` packet the publisher sent, byte-exact, in order, from the
/// first.
fn assert_all_received(sim: &Sim, publisher: ClientId, viewers: &[ClientId], kind: TrackKind) {
    let sent = sim.client(publisher).sent(kind);
    for &v in viewers {
        let start = check::exact(sent, sim.client(v).received(kind))
            .unwrap_or_else(|e| panic!("viewer {v:?} {kind}: {e}"));
        assert_eq!(start, 0, "viewer {v:?} {kind} missed the beginning");
    }
}

#[test]
fn h264_to_10_viewers() {
    common::init_log();
    let config = PublisherConfig {
        codec: VideoCodec::H264,
        ..PublisherConfig::default()
    };
    let (sim, publisher, viewers) = streamed(8, config, 10, Duration::from_secs(3));
    for kind in TrackKind::ALL {
        assert_all_received(&sim, publisher, &viewers, kind);
    }
}

/// A frame's packets arrive together; to 150 viewers they are more packets than a drain may
/// leave waiting in str0m ([`ringcast_core::DRAIN_PACKETS`]). Most do not wait there (85 % in
/// this run): each leaves as it is forwarded, and the engines take them after each datagram;
/// the rest (a viewer with a timer due or output of its own) wait for the drain. Every viewer
/// still gets every packet, in order.
#[test]
fn bursts_to_150_viewers_leave_at_once_and_arrive_whole() {
    common::init_log();
    let config = PublisherConfig::video_2500kbps();
    let (sim, publisher, viewers) = streamed(9, config, 150, Duration::from_secs(2));

    let stats = sim.shard(ShardId(0)).stats();
    assert!(
        stats.rtp_forwarded_at_once * 4 >= stats.rtp_forwarded * 3,
        "{} of {} forwarded packets left at once ({} receive batches drained early)",
        stats.rtp_forwarded_at_once,
        stats.rtp_forwarded,
        sim.early_drains
    );
    let sent = sim.client(publisher).sent(TrackKind::Video);
    assert!(sent.len() > 400, "only {} video packets sent", sent.len());
    assert_all_received(&sim, publisher, &viewers, TrackKind::Video);
    for c in sim.clients() {
        assert!(c.errors.is_empty(), "{:?}: {:?}", c.id, c.errors);
    }
}
