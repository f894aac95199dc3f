//! Simulcast: a publisher sends three layers (rids q, h, f: 320x180 at ~150 kbit/s, 640x360 at
//! ~600 kbit/s, 1280x720 at ~2.5 Mbit/s); each viewer gets one layer at a time on one SSRC,
//! byte-exact, with continuous sequence numbers and timestamps, switching only on keyframes.

mod common;

use std::time::Duration;

use ringcast_core::{ShardConfig, ShardId, TrackKind};
use ringcast_sim::{
    ClientId, LinkConfig, PublisherConfig, Received, Sent, Sim, SimConfig, SimLayer, Tag,
    VideoCodec, check,
};

const STREAM: &str = "simulcast";

fn sim(seed: u64, shard: ShardConfig) -> Sim {
    common::init_log();
    Sim::new(SimConfig {
        seed,
        shard,
        ..SimConfig::default()
    })
}

/// The index of `rid` among the simulcast_3 layers (q, h, f).
fn layer(rid: &str) -> usize {
    PublisherConfig::simulcast_3()
        .layer_index(rid)
        .expect("a layer of simulcast_3")
}

/// The viewer's video by layer; every packet byte-exact, numbering continuous on one SSRC,
/// starts and switches on keyframes, timestamps forward. Timestamp steps may differ from the
/// sender's: frames replayed from the keyframe cache are re-timed.
fn trace(sim: &Sim, publisher: ClientId, viewer: ClientId) -> check::LayerTrace {
    let layers = sim.client(publisher).sent_layers();
    trace_of(
        &layers,
        sim.client(viewer).received(TrackKind::Video),
        viewer,
    )
}

/// [`trace`] against some of the publisher's layers.
fn trace_of(layers: &[&[Sent]], received: &[Received], viewer: ClientId) -> check::LayerTrace {
    let t = check::layer_trace(layers, received);
    let bad: Vec<&String> = t
        .problems
        .iter()
        .filter(|p| !p.contains("timestamp step"))
        .collect();
    assert!(
        !t.layers.is_empty() && bad.is_empty(),
        "viewer {viewer:?}: {} problems: {:?}",
        bad.len(),
        &bad[..bad.len().min(5)]
    );
    t
}

/// The layer of the last video packet a viewer got (cheap enough to ask after every step).
fn on_layer(sim: &Sim, viewer: ClientId) -> Option<usize> {
    let last = sim.client(viewer).received(TrackKind::Video).last()?;
    Tag::parse(&last.payload).map(|t| usize::from(t.layer))
}

/// Pin `viewer` to `rid` and run until its packets come from that layer (within `max`), then
/// half a second more.
fn move_to(sim: &mut Sim, viewer: ClientId, rid: &str, max: Duration) {
    sim.set_layer(viewer, Some(rid)).expect("pinned");
    let target = layer(rid);
    assert!(
        sim.run_until_true(max, |s| on_layer(s, viewer) == Some(target)),
        "viewer {viewer:?} never moved to {rid}"
    );
    sim.run_for(Duration::from_millis(500));
}

/// The VP8 picture numbers a viewer got are one continuous numbering; returns its frames.
fn numbering(sim: &Sim, viewer: ClientId) -> usize {
    check::vp8_numbering(sim.client(viewer).received(TrackKind::Video))
        .unwrap_or_else(|e| panic!("viewer {viewer:?}: VP8 numbering: {e}"))
}

#[test]
fn layers_are_ordered_by_resolution_and_pinned_viewers_get_theirs_byte_exact() {
    let mut sim = sim(31, ShardConfig::default());
    let publisher = sim.add_publisher(STREAM, PublisherConfig::simulcast_3());
    sim.connect(&[publisher], Duration::from_secs(2));
    sim.run_for(Duration::from_secs(2));
    let layers = sim.stream_layers(publisher);
    let rids: Vec<&str> = layers.iter().map(|l| l.rid.as_str()).collect();
    assert_eq!(
        rids,
        ["f", "h", "q"],
        "best first, whatever the names: {layers:?}"
    );
    assert_eq!(layers[0].resolution, Some((1280, 720)));
    assert!(
        layers.iter().all(|l| l.active && l.bitrate_bps > 0),
        "{layers:?}"
    );
    assert!(layers[0].bitrate_bps > layers[1].bitrate_bps);

    let viewers: Vec<(ClientId, &str)> = ["q", "h", "f"]
        .into_iter()
        .map(|rid| (sim.add_viewer(STREAM), rid))
        .collect();
    for &(v, rid) in &viewers {
        sim.set_layer(v, Some(rid)).expect("pinned");
    }
    let ids: Vec<ClientId> = viewers.iter().map(|v| v.0).collect();
    sim.connect(&ids, Duration::from_secs(2));
    sim.run_for(Duration::from_secs(5));
    for &(v, rid) in &viewers {
        let t = trace(&sim, publisher, v);
        assert_eq!(t.switches.len(), 1, "{rid}: {:?}", t.switches);
        assert_eq!(t.last_layer(), Some(layer(rid)), "{rid}");
        // Audio is complete and exact for everyone.
        check::exact(
            sim.client(publisher).sent(TrackKind::Audio),
            sim.client(v).received(TrackKind::Audio),
        )
        .unwrap_or_else(|e| panic!("{rid} audio: {e}"));
    }
    assert!(sim.set_layer(viewers[0].0, Some("nope")).is_err());
}

#[test]
fn pinned_switches_happen_on_keyframes_with_continuous_numbering() {
    // The publisher answers keyframe requests: each switch is asked for and made on the
    // target layer's next keyframe.
    let mut sim = sim(32, ShardConfig::default());
    let publisher = sim.add_publisher(
        STREAM,
        PublisherConfig {
            keyframe_interval: Duration::from_secs(10),
            ..PublisherConfig::simulcast_3()
        },
    );
    let viewer = sim.add_viewer(STREAM);
    sim.connect(&[publisher, viewer], Duration::from_secs(2));
    sim.run_for(Duration::from_secs(2));
    for rid in ["q", "f", "h", "q", "f"] {
        sim.set_layer(viewer, Some(rid)).expect("pinned");
        sim.run_for(Duration::from_millis(1500));
        let t = trace(&sim, publisher, viewer);
        assert_eq!(
            t.last_layer(),
            Some(layer(rid)),
            "pinned to {rid}: {:?}",
            t.switches
        );
    }
    let t = trace(&sim, publisher, viewer);
    assert!(t.moves().count() >= 4, "{:?}", t.switches);
    let stats = sim.shard(ShardId(0)).stats();
    assert!(stats.layer_switches >= 4, "{stats:?}");
}

/// What a viewer got in sequence order, each packet once: on a lossy link retransmissions
/// arrive late, after packets that follow them.
fn by_seq(sim: &Sim, viewer: ClientId) -> Vec<Received> {
    let mut got = sim.client(viewer).received(TrackKind::Video).to_vec();
    got.sort_by_key(|r| r.seq);
    got.dedup_by_key(|r| r.seq);
    got
}

#[test]
fn a_viewer_whose_downlink_degrades_moves_down_and_later_up() {
    let mut sim = sim(33, ShardConfig::default());
    let publisher = sim.add_publisher(STREAM, PublisherConfig::simulcast_3());
    sim.connect(&[publisher], Duration::from_secs(2));
    sim.run_for(Duration::from_secs(2));
    let viewer = sim.add_viewer(STREAM);
    let steady = sim.add_viewer(STREAM);
    sim.connect(&[viewer, steady], Duration::from_secs(2));
    // A fast link: up to the top layer within seconds (the estimate starts at 1 Mbit/s).
    sim.run_for(Duration::from_secs(12));
    let t = trace(&sim, publisher, viewer);
    assert_eq!(t.last_layer(), Some(layer("f")), "{:?}", t.switches);
    // The viewer's downlink drops to 400 kbit/s: down to the small layer.
    let degraded = sim.now();
    sim.set_down_link(
        viewer,
        LinkConfig::limited(400_000, Duration::from_millis(20)),
    );
    sim.run_for(Duration::from_secs(10));
    let t = check::layer_trace(&sim.client(publisher).sent_layers(), &by_seq(&sim, viewer));
    assert_eq!(t.last_layer(), Some(layer("q")), "{:?}", t.switches);
    let down = t
        .moves()
        .find(|s| s.at > degraded && s.to == layer("q"))
        .expect("moved down");
    eprintln!("down to q {:?} after the link degraded", down.at - degraded);
    assert!(
        down.at - degraded <= Duration::from_secs(5),
        "{:?}",
        down.at - degraded
    );
    // The link recovers: back up, with hysteresis.
    let recovered = sim.now();
    sim.set_down_link(viewer, LinkConfig::default());
    sim.run_for(Duration::from_secs(20));
    let t = check::layer_trace(&sim.client(publisher).sent_layers(), &by_seq(&sim, viewer));
    let up = t
        .moves()
        .find(|s| s.at > recovered && s.to == layer("f"))
        .expect("moved up again");
    eprintln!("up to f {:?} after the link recovered", up.at - recovered);
    // Every switch on a keyframe, numbering continuous; losses on the shaped link aside.
    let bad: Vec<&String> = t
        .problems
        .iter()
        .filter(|p| p.contains("keyframe") || p.contains("ssrc") || p.contains("forward"))
        .collect();
    assert!(bad.is_empty(), "{bad:?}");
    // The other viewer was never disturbed: top layer, exact.
    let t = trace(&sim, publisher, steady);
    assert_eq!(t.last_layer(), Some(layer("f")));
}

#[test]
fn joiners_start_from_the_cache_of_their_layer_with_every_pli_ignored() {
    let mut sim = sim(34, ShardConfig::default());
    let publisher = sim.add_publisher(
        STREAM,
        PublisherConfig {
            keyframe_interval: Duration::from_secs(4),
            honor_keyframe_requests: false,
            ..PublisherConfig::simulcast_3()
        },
    );
    sim.connect(&[publisher], Duration::from_secs(2));
    sim.run_for(Duration::from_secs(2));
    let mut viewers = Vec::new();
    for rid in ["q", "h", "f", "q", "h", "f"] {
        sim.run_for(Duration::from_millis(500));
        let v = sim.add_viewer(STREAM);
        sim.set_layer(v, Some(rid)).expect("pinned");
        viewers.push((v, rid));
    }
    sim.run_for(Duration::from_secs(3));
    for &(v, rid) in &viewers {
        let waited = sim
            .time_to_first_frame(v, VideoCodec::Vp8)
            .unwrap_or_else(|| panic!("{rid}: no complete keyframe"));
        assert!(waited <= Duration::from_millis(300), "{rid}: {waited:?}");
        let received = sim.client(v).received(TrackKind::Video);
        let t = check::layer_trace(&sim.client(publisher).sent_layers(), received);
        assert_eq!(t.switches.len(), 1, "{rid}: {:?}", t.switches);
        assert_eq!(t.last_layer(), Some(layer(rid)));
        // Replayed frames are re-timed; nothing else may be wrong.
        let bad: Vec<&String> = t
            .problems
            .iter()
            .filter(|p| !p.contains("timestamp step"))
            .collect();
        assert!(bad.is_empty(), "{rid}: {bad:?}");
    }
    assert!(
        sim.client(publisher)
            .publisher()
            .keyframes
            .iter()
            .all(|k| !k.1)
    );
}

#[test]
fn bad_layers_are_counted_and_contained() {
    // A layer the offer did not announce, and an announced one that never sends a keyframe.
    let mut sim = sim(35, ShardConfig::default());
    let mut config = PublisherConfig::simulcast_3();
    config.layers.push(SimLayer {
        announced: false,
        ..SimLayer::new("x", 0.5, (960, 540))
    });
    config.layers[layer("f")].keyframes = false;
    let publisher = sim.add_publisher(STREAM, config);
    let viewer = sim.add_viewer(STREAM);
    let pinned = sim.add_viewer(STREAM);
    sim.connect(&[publisher, viewer, pinned], Duration::from_secs(2));
    sim.run_for(Duration::from_secs(2));
    sim.set_layer(pinned, Some("h")).expect("pinned");
    sim.run_for(Duration::from_secs(2));
    sim.set_layer(pinned, Some("f")).expect("f is announced");
    sim.run_for(Duration::from_secs(4));
    let stats = sim.shard(ShardId(0)).stats();
    assert!(stats.drop_unknown_layer > 0, "{stats:?}");
    // The unannounced layer never reaches a viewer, the keyframeless one is never chosen; the
    // viewer pinned to it stays where it was, with a picture.
    let layers = sim.client(publisher).sent_layers();
    let t = trace_of(
        &layers[..3],
        sim.client(viewer).received(TrackKind::Video),
        viewer,
    );
    assert_eq!(t.last_layer(), Some(layer("h")), "{:?}", t.switches);
    let t = trace_of(
        &layers[..3],
        sim.client(pinned).received(TrackKind::Video),
        pinned,
    );
    assert_eq!(t.last_layer(), Some(layer("h")), "{:?}", t.switches);
}

#[test]
fn a_playing_viewer_keeps_its_layer_until_the_new_ones_keyframe() {
    // The publisher ignores keyframe requests (keyframes every 2 s): a pinned move waits for
    // the next keyframe of the new layer, and the viewer plays its old layer until then, with
    // no gap; it is not replayed from the cache.
    let mut sim = sim(36, ShardConfig::default());
    let publisher = sim.add_publisher(
        STREAM,
        PublisherConfig {
            keyframe_interval: Duration::from_secs(2),
            honor_keyframe_requests: false,
            ..PublisherConfig::simulcast_3()
        },
    );
    let viewer = sim.add_viewer(STREAM);
    sim.set_layer(viewer, Some("q")).expect("pinned");
    sim.connect(&[publisher, viewer], Duration::from_secs(2));
    sim.run_for(Duration::from_secs(3));
    let replays = sim.shard(ShardId(0)).stats().gop_replays;
    let asked = sim.now();
    sim.set_layer(viewer, Some("f")).expect("pinned");
    sim.run_for(Duration::from_millis(2300));
    let t = trace(&sim, publisher, viewer);
    let moved = t.moves().last().expect("moved");
    assert_eq!((moved.from, moved.to), (Some(layer("q")), layer("f")));
    assert!(
        moved.at - asked <= Duration::from_millis(2100),
        "{:?}",
        moved.at - asked
    );
    // Until the move, q went on arriving: nothing missing (trace checks the numbering).
    let last_q = sim.client(viewer).received(TrackKind::Video)[moved.index - 1].at;
    assert!(moved.at - last_q <= Duration::from_millis(50));
    assert_eq!(
        sim.shard(ShardId(0)).stats().gop_replays,
        replays,
        "no replay for a move"
    );
}

#[test]
fn a_move_whose_keyframe_request_the_publisher_ignored_is_asked_for_again() {
    // Like Chromium, the publisher ignores a keyframe request within 300 ms of the last one it
    // honored, for any layer; its own keyframes come only every 30 s. Viewer 1 moves to h; 200
    // ms later viewer 2 asks for f, and that request is dropped. Viewer 2 must still move: the
    // shard asks again while a viewer waits, once the keyframe interval allows.
    let mut sim = sim(38, ShardConfig::default());
    let publisher = sim.add_publisher(
        STREAM,
        PublisherConfig {
            keyframe_interval: Duration::from_secs(30),
            keyframe_request_gap: Duration::from_millis(300),
            ..PublisherConfig::simulcast_3()
        },
    );
    let viewers = [sim.add_viewer(STREAM), sim.add_viewer(STREAM)];
    for v in viewers {
        sim.set_layer(v, Some("q")).expect("pinned");
    }
    let mut all = viewers.to_vec();
    all.push(publisher);
    sim.connect(&all, Duration::from_secs(2));
    sim.run_for(Duration::from_secs(3));
    sim.set_layer(viewers[0], Some("h")).expect("pinned");
    sim.run_for(Duration::from_millis(200));
    let asked = sim.now();
    sim.set_layer(viewers[1], Some("f")).expect("pinned");
    sim.run_for(Duration::from_secs(2));
    let requests = &sim.client(publisher).publisher().layers[layer("f")].keyframe_requests;
    assert!(requests.len() >= 2, "f was asked for once: {requests:?}");
    let t = trace(&sim, publisher, viewers[1]);
    let moved = t.moves().last().expect("viewer 2 moved");
    assert_eq!((moved.from, moved.to), (Some(layer("q")), layer("f")));
    let took = moved.at - asked;
    eprintln!("viewer 2 moved to f {took:?} after asking");
    // Asked again one keyframe interval (1 s) after the first request, answered a frame later.
    assert!(took <= Duration::from_millis(1200), "{took:?}");
    let t = trace(&sim, publisher, viewers[0]);
    assert_eq!(t.last_layer(), Some(layer("h")));
}

#[test]
fn an_obs_shaped_h264_publisher_that_ignores_pli_starts_viewers_from_the_cache() {
    // OBS 32.1: rids 0, 1, 2 (0 the full size, then 2/3 and 1/3 of it), H264, keyframes every
    // 2 s, every keyframe request ignored.
    let mut sim = sim(37, ShardConfig::default());
    let publisher = sim.add_publisher(
        STREAM,
        PublisherConfig {
            codec: VideoCodec::H264,
            keyframe_interval: Duration::from_secs(2),
            honor_keyframe_requests: false,
            ..PublisherConfig::simulcast_obs(3)
        },
    );
    sim.connect(&[publisher], Duration::from_secs(2));
    sim.run_for(Duration::from_millis(2500));
    let layers = sim.stream_layers(publisher);
    let rids: Vec<&str> = layers.iter().map(|l| l.rid.as_str()).collect();
    assert_eq!(rids, ["0", "1", "2"], "{layers:?}");
    assert_eq!(layers[0].resolution, Some((1280, 720)), "from the H264 SPS");
    let viewer = sim.add_viewer(STREAM);
    sim.run_for(Duration::from_secs(2));
    let waited = sim
        .time_to_first_frame(viewer, VideoCodec::H264)
        .expect("a first frame");
    assert!(waited <= Duration::from_millis(300), "{waited:?}");
    trace(&sim, publisher, viewer);
}

#[test]
fn vp8_picture_numbers_continue_across_every_pinned_move() {
    // Each layer numbers its VP8 pictures (PictureID, TL0PICIDX, KEYIDX) from its own start, as
    // a browser's encoder does. A viewer moved q -> f -> h -> q gets one continuous numbering
    // (the shard rewrites it from the first move on), every payload byte-exact otherwise.
    let mut sim = sim(39, ShardConfig::default());
    let publisher = sim.add_publisher(
        STREAM,
        PublisherConfig {
            vp8_picture_ids: true,
            ..PublisherConfig::simulcast_3()
        },
    );
    let viewer = sim.add_viewer(STREAM);
    sim.set_layer(viewer, Some("q")).expect("pinned");
    sim.connect(&[publisher, viewer], Duration::from_secs(2));
    sim.run_for(Duration::from_secs(1));
    for rid in ["f", "h", "q"] {
        move_to(&mut sim, viewer, rid, Duration::from_secs(3));
    }
    let t = trace(&sim, publisher, viewer);
    let moves: Vec<(Option<usize>, usize)> = t.switches.iter().map(|s| (s.from, s.to)).collect();
    let (q, h, f) = (layer("q"), layer("h"), layer("f"));
    assert_eq!(moves, [(None, q), (Some(q), f), (Some(f), h), (Some(h), q)]);
    let frames = numbering(&sim, viewer);
    assert!(frames > 60, "{frames} frames");
}

#[test]
fn vp8_picture_numbers_continue_from_the_cache_replay_into_live_and_a_move() {
    // The publisher ignores keyframe requests (keyframes every 2 s): a viewer pinned to h
    // joins mid-interval and starts from h's cached keyframe, replayed, then goes live, then
    // moves to f on f's next keyframe. One continuous numbering throughout.
    let mut sim = sim(40, ShardConfig::default());
    let publisher = sim.add_publisher(
        STREAM,
        PublisherConfig {
            keyframe_interval: Duration::from_secs(2),
            honor_keyframe_requests: false,
            vp8_picture_ids: true,
            ..PublisherConfig::simulcast_3()
        },
    );
    sim.connect(&[publisher], Duration::from_secs(2));
    sim.run_for(Duration::from_millis(2700));
    let replays = sim.shard(ShardId(0)).stats().gop_replays;
    let viewer = sim.add_viewer(STREAM);
    sim.set_layer(viewer, Some("h")).expect("pinned");
    sim.run_for(Duration::from_millis(800));
    let waited = sim
        .time_to_first_frame(viewer, VideoCodec::Vp8)
        .expect("a first frame");
    assert!(waited <= Duration::from_millis(300), "{waited:?}");
    assert!(
        sim.shard(ShardId(0)).stats().gop_replays > replays,
        "started from the cache"
    );
    let live = numbering(&sim, viewer);
    move_to(&mut sim, viewer, "f", Duration::from_secs(3));
    let t = trace(&sim, publisher, viewer);
    let moves: Vec<(Option<usize>, usize)> = t.switches.iter().map(|s| (s.from, s.to)).collect();
    assert_eq!(moves, [(None, layer("h")), (Some(layer("h")), layer("f"))]);
    assert!(numbering(&sim, viewer) > live);
}
