//! Instant start from the keyframe cache: viewers joining a publisher that ignores every
//! keyframe request (OBS, FFmpeg) and sends a keyframe every 4 s start at once from the cached
//! keyframe instead of waiting up to 4 s; what they get is the publisher's packets from that
//! keyframe on, byte-exact and continuous, and they catch up with live.

mod common;

use std::time::Duration;

use ringcast_core::control::Limits;
use ringcast_core::{ShardConfig, TrackKind};
use ringcast_sim::{
    ClientId, PublisherConfig, Received, Sent, Sim, SimConfig, VideoCodec, check, media,
};

/// A PLI-ignoring publisher and five viewers joining 0.7 s apart, spread over `shards`
/// shards (so some are fed through a relay and start from that shard's cache).
fn run(
    gop_cache_bytes: usize,
    codec: VideoCodec,
    shards: u16,
) -> (Sim, ClientId, Vec<(ClientId, Duration)>) {
    common::init_log();
    let mut sim = Sim::new(SimConfig {
        seed: 21,
        shards,
        limits: Limits {
            affinity: 1,
            max: 100,
        },
        shard: ShardConfig {
            gop_cache_bytes,
            ..ShardConfig::default()
        },
        ..SimConfig::default()
    });
    let stream = "obs";
    let publisher = sim.add_publisher(
        stream,
        PublisherConfig {
            codec,
            keyframe_interval: Duration::from_secs(4),
            honor_keyframe_requests: false,
            ..PublisherConfig::video_2500kbps()
        },
    );
    sim.connect(&[publisher], Duration::from_secs(2));
    // Viewers join at several points of the keyframe interval; each is timed from its join to
    // its first complete keyframe.
    let mut viewers = Vec::new();
    for _ in 0..5 {
        sim.run_for(Duration::from_millis(700));
        let joined = sim.now();
        let v = sim.add_viewer(stream);
        viewers.push((v, joined));
    }
    sim.run_for(Duration::from_secs(6));
    let first_frames = viewers
        .iter()
        .map(|&(v, joined)| {
            let got = sim.client(v).received(TrackKind::Video);
            let first = got.first().expect("video");
            assert!(
                media::starts_keyframe(codec, &first.payload),
                "{v:?}: the first video packet does not start a keyframe"
            );
            let end = got
                .iter()
                .find(|r| r.marker)
                .expect("the first frame completes");
            (v, end.at - joined)
        })
        .collect();
    (sim, publisher, first_frames)
}

#[test]
fn joiners_start_from_the_cache_at_once_and_get_every_packet_from_the_keyframe_on() {
    for (codec, shards) in [
        (VideoCodec::Vp8, 1),
        (VideoCodec::H264, 1),
        (VideoCodec::Vp8, 3),
    ] {
        let (sim, publisher, first_frames) = run(4 << 20, codec, shards);
        let sent = sim.client(publisher).sent(TrackKind::Video);
        for &(v, waited) in &first_frames {
            // Join, ICE + DTLS over a 1 ms link, then the cached keyframe at once.
            assert!(
                waited <= Duration::from_millis(300),
                "{codec:?} {v:?}: first frame after {waited:?}"
            );
            let got = sim.client(v).received(TrackKind::Video);
            // Byte-exact from the cached keyframe on, sequence numbers continuous, one SSRC;
            // the replayed frames are re-timed (closer together than sent) but move forward,
            // and once caught up the steps are the sender's again.
            let start =
                replayed_exactly(sent, got).unwrap_or_else(|e| panic!("{codec:?} {v:?}: {e}"));
            assert!(
                sent[start].keyframe,
                "{codec:?} {v:?}: started on no keyframe"
            );
            let tail = got.len() - 100;
            check::exact(&sent[start + tail..], &got[tail..])
                .unwrap_or_else(|e| panic!("{codec:?} {v:?} live tail: {e}"));
            // Caught up: the last packets arrive as live ones do (within a few ms).
            let last = got.last().unwrap();
            let origin = sent.iter().find(|s| s.payload == last.payload).unwrap();
            assert!(
                last.at - origin.at <= Duration::from_millis(20),
                "{codec:?} {v:?}: still {:?} behind live",
                last.at - origin.at
            );
        }
        let p = sim.client(publisher).publisher();
        assert!(
            p.keyframes.iter().all(|(_, asked)| !asked),
            "the publisher answers no request"
        );
        let replays: u64 = (0..shards)
            .map(|s| sim.shard(ringcast_core::ShardId(s)).stats().gop_replays)
            .sum();
        assert_eq!(replays, first_frames.len() as u64, "{codec:?}");
    }
}

/// Like [`check::exact`], but timestamps need only move forward from frame to frame.
fn replayed_exactly(sent: &[Sent], got: &[Received]) -> Result<usize, String> {
    let first = got.first().ok_or("nothing received")?;
    let start = sent
        .iter()
        .position(|s| s.payload == first.payload)
        .ok_or("first payload was never sent")?;
    if got.len() != sent.len() - start {
        return Err(format!(
            "received {} packets, {} sent from the first one received on",
            got.len(),
            sent.len() - start
        ));
    }
    for (i, (r, s)) in got.iter().zip(&sent[start..]).enumerate() {
        if r.payload != s.payload || r.marker != s.marker {
            return Err(format!("packet {i}: payload or marker differs"));
        }
        if r.seq != first.seq + i as u64 || r.ssrc != first.ssrc {
            return Err(format!("packet {i}: seq {} ssrc {}", r.seq, r.ssrc));
        }
        if i > 0 {
            let step = r.ts.wrapping_sub(got[i - 1].ts) as i32;
            let sent_step = s.ts.wrapping_sub(sent[start + i - 1].ts);
            if (sent_step == 0) != (step == 0) || step < 0 {
                return Err(format!(
                    "packet {i}: timestamp step {step}, sent {sent_step}"
                ));
            }
        }
    }
    Ok(start)
}

#[test]
fn without_the_cache_joiners_wait_for_the_publishers_next_keyframe() {
    let (_sim, _publisher, first_frames) = run(0, VideoCodec::Vp8, 1);
    let waits: Vec<Duration> = first_frames.iter().map(|f| f.1).collect();
    // Joins 0.7 s apart over a 4 s interval: most wait for more than a second.
    let long = waits
        .iter()
        .filter(|w| **w > Duration::from_secs(1))
        .count();
    assert!(long >= 3, "{waits:?}");
}
