//! The simulcast harness itself, against today's shard: a three-layer publisher is answered
//! with its layers, a viewer can be pinned by rid (and not to a rid nobody sends), every
//! packet a viewer gets is told apart by layer, and a viewer's down link can be narrowed.
//! What the shard does with the layers is for the simulcast scenarios.

mod common;

use std::time::Duration;

use ringcast_core::{CommandError, TrackKind};
use ringcast_sim::{LinkConfig, PublisherConfig, Sim, SimConfig, VideoCodec, check};

#[test]
fn a_simulcast_publisher_is_answered_with_its_layers_and_viewers_can_pin_one() {
    common::init_log();
    let mut sim = Sim::new(SimConfig {
        seed: 21,
        ..SimConfig::default()
    });
    let (publisher, viewers) = sim.add_broadcast(
        "sc",
        PublisherConfig::simulcast_3(),
        1,
        Duration::from_secs(2),
    );
    let viewer = viewers[0];
    sim.run_for(Duration::from_secs(2));

    let mut rids: Vec<String> = sim
        .stream_layers(viewer)
        .into_iter()
        .map(|l| l.rid)
        .collect();
    rids.sort();
    assert_eq!(rids, ["f", "h", "q"]);
    assert_eq!(sim.set_layer(viewer, Some("h")), Ok(()));
    assert_eq!(sim.set_layer(viewer, None), Ok(()));
    assert_eq!(
        sim.set_layer(viewer, Some("nope")),
        Err(CommandError::UnknownLayer)
    );
    assert_eq!(
        sim.set_layer(publisher, Some("h")),
        Err(CommandError::UnknownLayer)
    );

    // Whatever the shard forwards, each packet is one of a layer's, byte for byte.
    let p = sim.client(publisher);
    let layers = p.sent_layers();
    assert_eq!(layers.len(), 3);
    let got = sim.client(viewer).received(TrackKind::Video);
    assert!(!got.is_empty());
    let trace = check::layer_trace(&layers, got);
    assert!(trace.layers.iter().all(Option::is_some));
    assert!(!trace.switches.is_empty());
    // Time to first frame is measured from the join to a whole keyframe.
    let added = sim.client(viewer).added_at;
    assert_eq!(
        sim.time_to_first_frame(viewer, VideoCodec::Vp8),
        check::first_frame(got, VideoCodec::Vp8).map(|at| at - added)
    );
}

#[test]
fn a_viewers_down_link_can_be_narrowed_while_it_plays() {
    common::init_log();
    let mut sim = Sim::new(SimConfig {
        seed: 22,
        ..SimConfig::default()
    });
    let (_, viewers) = sim.add_broadcast(
        "narrow",
        PublisherConfig::video_2500kbps(),
        1,
        Duration::from_secs(2),
    );
    let viewer = viewers[0];
    sim.run_for(Duration::from_secs(1));
    let rate = 500_000;
    sim.set_down_link(viewer, LinkConfig::limited(rate, Duration::from_millis(10)));
    let from = sim.client(viewer).down.bytes;
    sim.run_for(Duration::from_secs(4));
    let c = sim.client(viewer);
    // 2.5 Mbit/s into 500 kbit/s: the queue overflows, and what passes is what the link
    // carries (plus at most its 200 ms queue).
    assert!(c.down.overflowed > 0);
    let carried = (c.down.bytes - from) * 8;
    assert!(carried <= rate * 4 + rate / 5 + 12_000, "{carried}");
    assert!(c.down.max_queue_delay <= Duration::from_millis(200));
    // The up link stayed unlimited.
    assert_eq!(c.up.config.rate_bps, None);
}
