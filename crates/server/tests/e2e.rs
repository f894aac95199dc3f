//! The `ringcast` binary on loopback with real clients over HTTP + UDP: a str0m WHIP publisher
//! and str0m WHEP viewers; every viewer gets the publisher's payloads byte-exact and in order.
//! Prints the join time (POST → first media packet) of each viewer.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use common::{Seen, SentLog, client, run_publisher, run_viewer, start_server};
use ringcast_sim::media::{Tag, VideoCodec};

/// Every payload a viewer got is one the publisher sent, byte-exact; video starts on a
/// keyframe and its sequence numbers are continuous.
fn check_viewer(i: usize, seen: &Seen, sent: &SentLog, want: usize) {
    let sent = sent.lock().unwrap();
    let video: Vec<_> = seen.rtp.iter().filter(|r| r.0 == 1).collect();
    assert!(
        video.len() >= want,
        "viewer {i}: {} video packets",
        video.len()
    );
    for (kind, _, payload, _) in &seen.rtp {
        let tag = Tag::parse(payload).unwrap_or_else(|| panic!("viewer {i}: untagged payload"));
        assert_eq!(tag.kind as usize, *kind);
        let expected = sent.get(&(tag.kind, tag.frame, tag.index)).expect("sent");
        assert_eq!(expected, payload, "viewer {i}: payload differs");
    }
    assert!(
        ringcast_sim::media::starts_keyframe(VideoCodec::Vp8, &video[0].2),
        "viewer {i}: first video packet is a keyframe start"
    );
    let mut seqs: Vec<u64> = video.iter().map(|r| r.1).collect();
    seqs.sort_unstable();
    seqs.dedup();
    let span = seqs.last().unwrap() - seqs.first().unwrap() + 1;
    assert_eq!(
        span as usize,
        seqs.len(),
        "viewer {i}: video sequence numbers have a gap"
    );
    // Frames arrive in order (loopback, no loss).
    let frames: Vec<u32> = video
        .iter()
        .map(|r| Tag::parse(&r.2).unwrap().frame)
        .collect();
    assert!(
        frames.windows(2).all(|w| w[0] <= w[1]),
        "viewer {i}: frames out of order"
    );
}

fn broadcast(shards: usize, viewers: usize) {
    let server = start_server(shards);
    let stop = Arc::new(AtomicBool::new(false));
    let sent: SentLog = Arc::default();
    let (publisher, _) = client(&server.http, "/whip/e2e", true);
    let publisher = {
        let (stop, sent, http) = (stop.clone(), sent.clone(), server.http.clone());
        std::thread::spawn(move || run_publisher(http, publisher, stop, sent))
    };
    // Viewers join once the stream is live.
    let deadline = Instant::now() + Duration::from_secs(10);
    let want = 150;
    let mut handles = Vec::new();
    for _ in 0..viewers {
        let (c, posted) = loop {
            let socket_probe = ureq::get(format!("{}/api/streams", server.http))
                .call()
                .unwrap()
                .body_mut()
                .read_to_string()
                .unwrap();
            if socket_probe.contains("\"live\":true") {
                break client(&server.http, "/whep/e2e", false);
            }
            assert!(Instant::now() < deadline, "stream never went live");
            std::thread::sleep(Duration::from_millis(20));
        };
        handles.push(std::thread::spawn(move || {
            run_viewer(c, posted, want, Duration::from_secs(20))
        }));
    }
    let results: Vec<(Seen, Duration)> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    stop.store(true, Ordering::Relaxed);
    let pub_seen = publisher.join().unwrap();
    let mut joins: Vec<Duration> = results.iter().map(|r| r.1).collect();
    joins.sort();
    eprintln!(
        "join time (POST → first media packet) over {viewers} viewers on {shards} shard(s): min {:?} median {:?} max {:?}; publisher saw {} keyframe requests",
        joins[0],
        joins[joins.len() / 2],
        joins[joins.len() - 1],
        pub_seen.keyframe_requests
    );
    for (i, (seen, _)) in results.iter().enumerate() {
        check_viewer(i, seen, &sent, want);
    }
    let stats = ureq::get(format!("{}/api/stats", server.http))
        .call()
        .unwrap()
        .body_mut()
        .read_to_string()
        .unwrap();
    if shards > 1 {
        assert!(stats.contains("\"relayed\":"), "{stats}");
        let relayed: u64 = stats
            .split("\"relayed\":")
            .skip(1)
            .map(|s| {
                s.split([',', '}'])
                    .next()
                    .unwrap()
                    .trim()
                    .parse::<u64>()
                    .unwrap()
            })
            .sum();
        assert!(
            relayed > 0,
            "publisher's shard relayed to the other: {stats}"
        );
    }
}

#[test]
fn whip_to_ten_whep_viewers() {
    broadcast(1, 10);
}

#[test]
fn two_shards_publisher_on_one_viewers_on_both() {
    broadcast(2, 6);
}
