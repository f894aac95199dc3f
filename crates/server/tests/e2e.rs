//! The `ringcast` binary on loopback with real clients over HTTP + UDP: a str0m WHIP publisher
//! and str0m WHEP viewers; every viewer gets the publisher's payloads byte-exact and in order.
//! Prints the join time (POST → first media packet) of each viewer.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use common::{Seen, SentLog, client, client_at, run_publisher, run_viewer, start_server_with};
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

fn get_json(url: String) -> serde_json::Value {
    let body = ureq::get(url)
        .call()
        .unwrap()
        .body_mut()
        .read_to_string()
        .unwrap();
    serde_json::from_str(&body).unwrap()
}

/// Sum one counter over the shards of `/api/stats`.
fn counter(stats: &serde_json::Value, path: &[&str]) -> u64 {
    stats["shards"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| path.iter().fold(s, |v, k| &v[*k]).as_u64().unwrap())
        .sum()
}

/// Garbage at every shard port from a socket the server never saw: random bytes, truncated
/// STUN, STUN naming an unknown ufrag, RTP-looking headers.
fn hostile_sender(ports: Vec<u16>, stop: Arc<AtomicBool>) -> usize {
    let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let mut x: u32 = 0x1234_5678;
    let mut sent = 0;
    while !stop.load(Ordering::Relaxed) {
        for &port in &ports {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            let len = (x % 1400) as usize;
            let random: Vec<u8> = (0..len)
                .map(|i| (x.rotate_left(i as u32 % 32) >> 3) as u8)
                .collect();
            let mut stun = vec![0, 1, 0, 12, 0x21, 0x12, 0xa4, 0x42];
            stun.extend_from_slice(&[9; 12]);
            stun.extend_from_slice(&[0, 6, 0, 8]);
            stun.extend_from_slice(b"nobody:x");
            let truncated = stun[..10].to_vec();
            let mut rtp = vec![0x80, 96, 0, 1, 0, 0, 0, 1, 0xde, 0xad, 0xbe, 0xef];
            rtp.extend_from_slice(&random[..len.min(200)]);
            for d in [&random, &stun, &truncated, &rtp] {
                let _ = socket.send_to(d, ("127.0.0.1", port));
                sent += 1;
            }
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    sent
}

fn broadcast(shards: usize, viewers: usize, hostile: bool) {
    // With more than one shard, the publisher's shard takes three participants before viewers
    // spill, so viewers land on both and the stream is relayed.
    let server = start_server_with(shards, &[("RINGCAST_MEDIA_AFFINITY_LIMIT", "3")]);
    let stop = Arc::new(AtomicBool::new(false));
    let sent: SentLog = Arc::default();
    let (mut publisher, _) = client(&server.http, "/whip/e2e", true);
    if hostile {
        // Every 7th datagram of the publisher is sent twice: SRTP/RTCP replays from a known
        // address.
        publisher.replay_every = 7;
    }
    let publisher = {
        let (stop, sent, http) = (stop.clone(), sent.clone(), server.http.clone());
        std::thread::spawn(move || run_publisher(http, publisher, stop, sent))
    };
    let garbage = hostile.then(|| {
        let stats = get_json(format!("{}/api/stats", server.http));
        let ports: Vec<u16> = stats["shards"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| {
                s["socket"]
                    .as_str()
                    .unwrap()
                    .rsplit(':')
                    .next()
                    .unwrap()
                    .parse()
                    .unwrap()
            })
            .collect();
        let stop = stop.clone();
        std::thread::spawn(move || hostile_sender(ports, stop))
    });
    // Viewers join once the stream is live.
    let deadline = Instant::now() + Duration::from_secs(10);
    let want = 150;
    let mut handles = Vec::new();
    for _ in 0..viewers {
        let (c, posted) = loop {
            let streams = get_json(format!("{}/api/streams", server.http));
            if streams["streams"][0]["live"] == true {
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
    let garbage_sent = garbage.map(|g| g.join().unwrap());
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
    let stats = get_json(format!("{}/api/stats", server.http));
    let engine = common::test_engine();
    if engine != "auto" {
        assert_eq!(
            stats["engine"],
            engine.as_str(),
            "the engine asked for runs"
        );
    }
    let io_sent = counter(&stats, &["io", "tx_datagrams"]);
    assert!(
        io_sent >= counter(&stats, &["tx_datagrams"]) / 2 && io_sent > 0,
        "engine counters published: {stats}"
    );
    if shards > 1 {
        assert!(
            counter(&stats, &["relayed"]) > 0,
            "publisher's shard relayed to the other: {stats}"
        );
    }
    if let Some(n) = garbage_sent {
        let unknown = counter(&stats, &["drops", "unknown_source"]);
        let ufrag = counter(&stats, &["drops", "unknown_ufrag"]);
        let replayed = counter(&stats, &["drops", "replayed"]);
        eprintln!(
            "hostile: sent {n} garbage datagrams; drops unknown_source {unknown}, unknown_ufrag {ufrag}, replayed {replayed}"
        );
        assert!(unknown > 0 && ufrag > 0, "garbage counted: {stats}");
        assert!(replayed > 0, "replays counted: {stats}");
    }
}

#[test]
fn whip_to_ten_whep_viewers() {
    broadcast(1, 10, false);
}

#[test]
fn two_shards_publisher_on_one_viewers_on_both() {
    broadcast(2, 6, false);
}

#[test]
fn garbage_and_replays_change_nothing_but_drop_counters() {
    broadcast(2, 3, true);
}

/// `media.allow_ipv6` with the default bind: the shard's one dual-stack port serves an IPv4
/// publisher (127.0.0.1) and an IPv6 viewer (::1), which gets every payload.
#[test]
fn allow_ipv6_serves_ipv4_and_ipv6_clients_on_one_port() {
    if std::net::UdpSocket::bind("[::1]:0").is_err() {
        eprintln!("skipped: no IPv6 loopback (cannot bind [::1])");
        return;
    }
    let server = start_server_with(
        1,
        &[
            ("RINGCAST_MEDIA_BIND", "0.0.0.0"),
            ("RINGCAST_MEDIA_ALLOW_IPV6", "true"),
            ("RINGCAST_MEDIA_ADVERTISE_LOOPBACK", "true"),
        ],
    );
    let stats = get_json(format!("{}/api/stats", server.http));
    let socket = stats["shards"][0]["socket"].as_str().unwrap().to_string();
    assert!(socket.starts_with("[::]:"), "a dual-stack socket: {stats}");
    let stop = Arc::new(AtomicBool::new(false));
    let sent: SentLog = Arc::default();
    let (publisher, _) = client_at(&server.http, "/whip/six", true, "127.0.0.1:0");
    let publisher = {
        let (stop, sent, http) = (stop.clone(), sent.clone(), server.http.clone());
        std::thread::spawn(move || run_publisher(http, publisher, stop, sent))
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    let (viewer, posted) = loop {
        let streams = get_json(format!("{}/api/streams", server.http));
        if streams["streams"][0]["live"] == true {
            break client_at(&server.http, "/whep/six", false, "[::1]:0");
        }
        assert!(Instant::now() < deadline, "stream never went live");
        std::thread::sleep(Duration::from_millis(20));
    };
    let want = 100;
    let (seen, joined) = run_viewer(viewer, posted, want, Duration::from_secs(20));
    stop.store(true, Ordering::Relaxed);
    publisher.join().unwrap();
    eprintln!("IPv6 viewer joined in {joined:?}");
    check_viewer(0, &seen, &sent, want);
}

#[test]
fn sigterm_tells_a_connected_viewer_at_once() {
    // Finding 3 of "Hostile clients": on SIGTERM live viewers kept a "connected" peer
    // connection that no longer got media. Now each gets the DTLS close before the process
    // exits, and its str0m reports the close at once.
    let mut server = start_server_with(1, &[]);
    let stop = Arc::new(AtomicBool::new(false));
    let sent: SentLog = Arc::default();
    let (publisher, _) = client(&server.http, "/whip/bye", true);
    let publisher = {
        let (stop, sent, http) = (stop.clone(), sent.clone(), server.http.clone());
        std::thread::spawn(move || run_publisher(http, publisher, stop, sent))
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    let (mut viewer, _) = loop {
        let streams = get_json(format!("{}/api/streams", server.http));
        if streams["streams"][0]["live"] == true {
            break client(&server.http, "/whep/bye", false);
        }
        assert!(Instant::now() < deadline, "stream never went live");
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut seen = Seen::default();
    while seen.rtp.len() < 20 {
        viewer.step(&mut seen);
        assert!(Instant::now() < deadline, "the viewer got no media");
    }
    // The publisher leaves; the viewer stays, connected, waiting for the stream to return.
    stop.store(true, Ordering::Relaxed);
    publisher.join().unwrap();
    let quiet = Instant::now();
    while quiet.elapsed() < Duration::from_millis(300) {
        viewer.step(&mut seen);
    }
    assert!(!seen.closed, "the viewer was closed before SIGTERM");

    let term = std::process::Command::new("kill")
        .args(["-TERM", &server.child.id().to_string()])
        .status()
        .expect("kill runs");
    assert!(term.success());
    let signalled = Instant::now();
    while !seen.closed && signalled.elapsed() < Duration::from_secs(10) {
        viewer.step(&mut seen);
    }
    assert!(
        seen.closed,
        "the viewer's peer connection was not closed by the server"
    );
    eprintln!(
        "viewer saw the close {:?} after SIGTERM",
        signalled.elapsed()
    );
    let exited = loop {
        if let Some(status) = server.child.try_wait().unwrap() {
            break status;
        }
        assert!(
            signalled.elapsed() < Duration::from_secs(20),
            "ringcast did not exit"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(exited.success(), "exit status {exited}");
}

/// The status of a GET, with an optional Bearer token; transport errors panic.
fn status_of(url: &str, token: Option<&str>) -> u16 {
    let mut request = ureq::get(url);
    if let Some(t) = token {
        request = request.header("authorization", &format!("Bearer {t}"));
    }
    match request.call() {
        Ok(res) => res.status().as_u16(),
        Err(ureq::Error::StatusCode(code)) => code,
        Err(e) => panic!("GET {url}: {e}"),
    }
}

/// `http.admin_listen` and `http.admin_token` (issue 9, finding 6): the admin surface moves to
/// its own listener, behind its token; the public listener keeps the rest.
#[test]
fn the_admin_surface_on_its_own_listener_and_token() {
    let admin_port = common::free_port();
    let admin_listen = format!("127.0.0.1:{admin_port}");
    let server = start_server_with(
        1,
        &[
            ("RINGCAST_HTTP_ADMIN_LISTEN", &admin_listen),
            ("RINGCAST_HTTP_ADMIN_TOKEN", "adm1n"),
        ],
    );
    let admin = format!("http://{admin_listen}");
    for path in ["/api/streams", "/api/stats", "/metrics"] {
        assert_eq!(
            status_of(&format!("{}{path}", server.http), Some("adm1n")),
            404,
            "public {path}"
        );
        assert_eq!(
            status_of(&format!("{admin}{path}"), None),
            401,
            "admin {path}"
        );
        assert_eq!(
            status_of(&format!("{admin}{path}"), Some("nope")),
            403,
            "admin {path}"
        );
        assert_eq!(
            status_of(&format!("{admin}{path}"), Some("adm1n")),
            200,
            "admin {path}"
        );
    }
    for path in ["/healthz", "/", "/whip/x"] {
        assert_eq!(
            status_of(&format!("{}{path}", server.http), None) / 100,
            2,
            "public {path}"
        );
        assert_eq!(
            status_of(&format!("{admin}{path}"), None),
            404,
            "admin {path}"
        );
    }
}
