//! Viewers joining a running stream whose publisher sends a keyframe only every 10 s, with the
//! keyframe cache off: only a keyframe request (PLI) can start them, and requests from viewers
//! joining together are merged. (`gop_cache.rs` has the same joins with the cache.)

mod common;

use std::time::{Duration, Instant};

use ringcast_core::{ShardConfig, TrackKind};
use ringcast_sim::{
    ClientId, LinkConfig, PublisherConfig, Sim, SimConfig, Tag, VideoCodec, check, media,
};

fn setup(codec: VideoCodec) -> (Sim, ClientId, &'static str) {
    common::init_log();
    let mut sim = Sim::new(SimConfig {
        seed: 11,
        shard: ShardConfig {
            gop_cache_bytes: 0,
            ..ShardConfig::default()
        },
        ..SimConfig::default()
    });
    let stream = "s5";
    let publisher = sim.add_publisher(
        stream,
        PublisherConfig {
            codec,
            keyframe_interval: Duration::from_secs(10),
            ..PublisherConfig::default()
        },
    );
    // One early viewer, so the stream is being forwarded when the late ones come.
    let early = sim.add_viewer(stream);
    sim.connect(&[publisher, early], Duration::from_secs(2));
    sim.run_for(Duration::from_secs(2));
    assert!(!sim.client(early).received(TrackKind::Video).is_empty());
    (sim, publisher, stream)
}

/// Time from `since` to the viewer's first video packet, which must start a keyframe.
fn first_video(sim: &Sim, viewer: ClientId, codec: VideoCodec, since: Instant) -> Duration {
    let got = sim.client(viewer).received(TrackKind::Video);
    let first = got
        .first()
        .unwrap_or_else(|| panic!("viewer {viewer:?} got no video"));
    assert!(
        media::starts_keyframe(codec, &first.payload),
        "viewer {viewer:?}: first video packet does not start a keyframe"
    );
    first.at - since
}

#[test]
fn late_joiner_gets_a_keyframe_within_a_second() {
    for codec in [VideoCodec::Vp8, VideoCodec::H264] {
        let (mut sim, publisher, stream) = setup(codec);
        let requests_before = sim.client(publisher).publisher().keyframe_requests.len();
        let joined = sim.now();
        let late = sim.add_viewer(stream);
        let got_video = sim.run_until_true(Duration::from_secs(1), |s| {
            !s.client(late).received(TrackKind::Video).is_empty()
        });
        assert!(got_video, "{codec:?}: no video within 1 s of joining");
        let waited = first_video(&sim, late, codec, joined);
        assert!(
            waited <= Duration::from_secs(1),
            "{codec:?}: waited {waited:?}"
        );
        let p = sim.client(publisher).publisher();
        assert!(
            p.keyframe_requests.len() > requests_before,
            "{codec:?}: publisher saw no keyframe request"
        );
        assert!(
            p.keyframes.iter().any(|(_, asked)| *asked),
            "{codec:?}: no keyframe was sent on request"
        );

        // From there on it gets everything, in order, and nothing before its keyframe.
        sim.set_media(publisher, false);
        sim.run_for(Duration::from_millis(200));
        let start = check::exact(
            sim.client(publisher).sent(TrackKind::Video),
            sim.client(late).received(TrackKind::Video),
        )
        .unwrap_or_else(|e| panic!("{codec:?}: {e}"));
        assert!(sim.client(publisher).sent(TrackKind::Video)[start].keyframe);
        eprintln!("{codec:?}: late joiner's first video after {waited:?}");
    }
}

#[test]
fn joiners_within_a_second_share_keyframe_requests() {
    let codec = VideoCodec::Vp8;
    let (mut sim, publisher, stream) = setup(codec);
    let before = sim.client(publisher).publisher().keyframe_requests.len();
    let t0 = sim.now();
    let mut joined = Vec::new();
    for _ in 0..6 {
        let at = sim.now();
        joined.push((sim.add_viewer(stream), at));
        sim.run_for(Duration::from_millis(150));
    }
    sim.run_until(t0 + Duration::from_secs(3));
    let p = sim.client(publisher).publisher();
    let requests: Vec<Duration> = p.keyframe_requests[before..]
        .iter()
        .map(|t| *t - t0)
        .collect();
    eprintln!("keyframe requests at {requests:?}");
    // Six joins over 0.9 s: merged to one request per second (the interval), so at most 3 in
    // the 3 s since the first join (the first at once, then at most one per second).
    assert!(!requests.is_empty());
    for w in requests.windows(2) {
        assert!(
            w[1] - w[0] >= Duration::from_millis(990),
            "requests {requests:?} closer than 1 s"
        );
    }
    assert!(requests.len() <= 3, "{requests:?}");
    // Everyone started on a keyframe, at most one interval (plus a frame and the round trip)
    // after joining.
    for (v, at) in joined {
        let waited = first_video(&sim, v, codec, at);
        assert!(
            waited <= Duration::from_millis(1100),
            "viewer {v:?} waited {waited:?}"
        );
    }
}

#[test]
fn a_lone_joiner_costs_one_keyframe() {
    // With a 30 ms publisher link, delta frames keep arriving between the request and the
    // keyframe; they must not leave a second (merged) request behind.
    let (mut sim, publisher, stream) = setup(VideoCodec::Vp8);
    sim.set_link(publisher, LinkConfig::lossy(0.0, Duration::from_millis(30)));
    sim.run_for(Duration::from_secs(1));
    let before = sim.client(publisher).publisher().keyframes.len();
    let joined = sim.now();
    let late = sim.add_viewer(stream);
    sim.run_for(Duration::from_secs(3));
    let p = sim.client(publisher).publisher();
    let keyframes: Vec<_> = p.keyframes[before..]
        .iter()
        .map(|(t, asked)| (*t - joined, *asked))
        .collect();
    assert_eq!(
        keyframes.len(),
        1,
        "keyframes after the join: {keyframes:?}"
    );
    let waited = first_video(&sim, late, VideoCodec::Vp8, joined);
    assert!(waited <= Duration::from_millis(200), "{waited:?}");
}

#[test]
fn a_slowly_connecting_joiner_starts_fresh_on_a_keyframe() {
    // The viewer's network is down for its first second, so ICE and DTLS finish only after
    // retransmits. Media written to it before then would be flushed, stale, when it connects,
    // and a keyframe spent on it before then would be wasted.
    for loss in [0.0, 0.05] {
        let (mut sim, publisher, stream) = setup(VideoCodec::Vp8);
        let late = sim.add_viewer(stream);
        sim.set_link(late, LinkConfig::lossy(1.0, Duration::from_millis(20)));
        sim.run_for(Duration::from_secs(1));
        sim.set_link(late, LinkConfig::lossy(loss, Duration::from_millis(20)));
        sim.connect(&[late], Duration::from_secs(20));
        let connected = sim.client(late).connected_at.unwrap();
        sim.run_for(Duration::from_secs(2));
        let got = sim.client(late).received(TrackKind::Video);
        let first = got.first().expect("video");
        let sent = sim.client(publisher).sent(TrackKind::Video);
        let origin = sent
            .iter()
            .find(|s| s.payload == first.payload)
            .expect("sent");
        assert!(
            origin.at + Duration::from_millis(100) >= connected,
            "loss {loss}: first video was sent {:?} before the viewer connected",
            connected - origin.at
        );
        // It belongs to a keyframe (at 5% loss the keyframe's very first packet may be lost,
        // and nothing reveals a lost first packet: the viewer's own PLI would have to).
        let tag = Tag::parse(&first.payload).unwrap();
        let frame_start = sent
            .iter()
            .find(|s| Tag::parse(&s.payload).is_some_and(|t| t.frame == tag.frame && t.index == 0))
            .unwrap();
        assert!(
            frame_start.keyframe,
            "loss {loss}: first video is not part of a keyframe"
        );
        if loss == 0.0 {
            assert!(media::starts_keyframe(VideoCodec::Vp8, &first.payload));
        }
        assert!(
            first.at - connected <= Duration::from_secs(1),
            "loss {loss}"
        );
    }
}
