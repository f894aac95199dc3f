//! Hostile and broken datagrams thrown at a shard with a live publisher and viewers: nothing
//! panics, each kind of junk is counted, and the viewers keep receiving everything.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use ringcast_core::{ShardId, ShardStats, TrackKind};
use ringcast_sim::{ClientId, PublisherConfig, Sim, SimConfig, check};

/// A STUN binding request with this USERNAME and a made-up MESSAGE-INTEGRITY.
fn stun_request(username: &str) -> Vec<u8> {
    let mut attrs = Vec::new();
    attrs.extend_from_slice(&0x0006u16.to_be_bytes());
    attrs.extend_from_slice(&(username.len() as u16).to_be_bytes());
    attrs.extend_from_slice(username.as_bytes());
    while attrs.len() % 4 != 0 {
        attrs.push(0);
    }
    // MESSAGE-INTEGRITY (0x0008), 20 bytes of junk.
    attrs.extend_from_slice(&[0x00, 0x08, 0x00, 0x14]);
    attrs.extend_from_slice(&[0xab; 20]);
    let mut m = vec![0x00, 0x01];
    m.extend_from_slice(&(attrs.len() as u16).to_be_bytes());
    m.extend_from_slice(&[0x21, 0x12, 0xa4, 0x42]);
    m.extend_from_slice(&[0x5a; 12]);
    m.extend_from_slice(&attrs);
    m
}

/// A plaintext (epoch 0) DTLS 1.2 fatal alert (handshake_failure), as an off-path attacker
/// spoofing a peer's address could send.
fn dtls_fatal_alert() -> Vec<u8> {
    let mut r = vec![21, 0xfe, 0xfd, 0, 0];
    r.extend_from_slice(&[0, 0, 0, 0, 0, 9]); // sequence number
    r.extend_from_slice(&2u16.to_be_bytes());
    r.extend_from_slice(&[2, 40]);
    r
}

fn random_bytes(rng: &mut StdRng, first: Option<u8>) -> Vec<u8> {
    let len = rng.random_range(0..1400);
    let mut v: Vec<u8> = (0..len).map(|_| rng.random()).collect();
    if let (Some(b), Some(x)) = (first, v.first_mut()) {
        *x = b;
    }
    v
}

fn stranger(rng: &mut StdRng) -> SocketAddr {
    SocketAddr::from((
        [203, 0, 113, rng.random_range(1..255)],
        rng.random_range(1024..65535),
    ))
}

/// Increases of [unknown_source, unknown_ufrag, malformed, rejected, replayed, rx].
fn delta(after: &ShardStats, before: &ShardStats) -> [u64; 6] {
    [
        after.drop_unknown_source - before.drop_unknown_source,
        after.drop_unknown_ufrag - before.drop_unknown_ufrag,
        after.drop_malformed - before.drop_malformed,
        after.drop_rejected - before.drop_rejected,
        after.drop_replayed - before.drop_replayed,
        after.rx_datagrams - before.rx_datagrams,
    ]
}

struct World {
    sim: Sim,
    publisher: ClientId,
    viewers: Vec<ClientId>,
    shard: ShardId,
}

fn world(seed: u64) -> World {
    common::init_log();
    let mut sim = Sim::new(SimConfig {
        seed,
        ..SimConfig::default()
    });
    let shard = ShardId(0);
    let stream = "s66";
    let publisher = sim.add_publisher(stream, PublisherConfig::default());
    sim.capture(publisher, 32);
    let viewers: Vec<_> = (0..4).map(|_| sim.add_viewer(stream)).collect();
    let mut all = viewers.clone();
    all.push(publisher);
    sim.connect(&all, Duration::from_secs(2));
    sim.run_for(Duration::from_secs(1));
    World {
        sim,
        publisher,
        viewers,
        shard,
    }
}

/// Run on, stop the publisher, and check every viewer got everything, exactly once, in order.
fn assert_viewers_whole(w: &mut World) {
    w.sim.run_for(Duration::from_secs(1));
    w.sim.set_media(w.publisher, false);
    w.sim.run_for(Duration::from_millis(200));
    let p = w.sim.client(w.publisher);
    assert!(p.is_connected(), "the publisher was knocked off");
    for kind in TrackKind::ALL {
        for &v in &w.viewers {
            let start = check::exact(p.sent(kind), w.sim.client(v).received(kind))
                .unwrap_or_else(|e| panic!("viewer {v:?} {kind}: {e}"));
            assert_eq!(start, 0);
        }
    }
}

#[test]
fn junk_from_strangers_is_counted_and_harmless() {
    let mut w = world(31);
    let mut rng = StdRng::seed_from_u64(99);
    let before = w.sim.shard(w.shard).stats();
    let publisher_ufrag = format!("h0s{}", w.sim.client(w.publisher).session.0);
    let mut sent = 0;
    // Interleaved with live media: 100 ms of virtual time, junk every millisecond.
    for i in 0..100 {
        let junk = match i % 5 {
            0 => random_bytes(&mut rng, None),
            // Truncated STUN, DTLS and RTP headers.
            1 => stun_request(&publisher_ufrag)[..rng.random_range(0..24)].to_vec(),
            2 => vec![22, 0xfe, 0xfd, 0, 1][..rng.random_range(0..5)].to_vec(),
            3 => random_bytes(&mut rng, Some(0x80))[..]
                .iter()
                .take(rng.random_range(0..12))
                .copied()
                .collect(),
            _ => random_bytes(&mut rng, Some(0x16)),
        };
        let from = stranger(&mut rng);
        w.sim.inject(from, w.shard, &junk);
        sent += 1;
        w.sim.run_for(Duration::from_millis(1));
    }
    let d = delta(&w.sim.shard(w.shard).stats(), &before);
    assert!(
        d[0] + d[1] >= sent,
        "junk from strangers not all counted as unknown: {d:?}"
    );
    assert!(d[0] > 0, "{d:?}");

    // STUN naming no ufrag here, and STUN naming a real ufrag with a forged integrity.
    let b = w.sim.shard(w.shard).stats();
    w.sim
        .inject(stranger(&mut rng), w.shard, &stun_request("nosuchufrag:x"));
    w.sim.inject(
        stranger(&mut rng),
        w.shard,
        &stun_request(&format!("{publisher_ufrag}:x")),
    );
    let d = delta(&w.sim.shard(w.shard).stats(), &b);
    assert_eq!(
        d[1], 2,
        "unknown/forged STUN not counted as unknown ufrag: {d:?}"
    );
    // The forger's address was not learned: its RTP is still from an unknown source.
    let b = w.sim.shard(w.shard).stats();
    let forger = SocketAddr::from(([203, 0, 113, 7], 4444));
    w.sim.inject(
        forger,
        w.shard,
        &stun_request(&format!("{publisher_ufrag}:x")),
    );
    w.sim
        .inject(forger, w.shard, &random_bytes(&mut rng, Some(0x80)));
    let d = delta(&w.sim.shard(w.shard).stats(), &b);
    assert_eq!((d[0], d[1]), (1, 1), "{d:?}");

    assert_viewers_whole(&mut w);
}

#[test]
fn junk_and_replays_from_a_known_address_are_harmless() {
    let mut w = world(37);
    let mut rng = StdRng::seed_from_u64(7);
    let addr = w.sim.client(w.publisher).addr;
    // A real SRTP packet from the publisher (RTP, not RTCP: PT outside 64..96).
    let replay = w
        .sim
        .client(w.publisher)
        .captured
        .iter()
        .rev()
        .find(|d| d.len() > 100 && (128..192).contains(&d[0]) && !(64..96).contains(&(d[1] & 0x7f)))
        .expect("a captured SRTP packet")
        .clone();
    let before = w.sim.shard(w.shard).stats();
    for i in 0..100 {
        let junk = match i % 6 {
            // Not STUN, DTLS, RTP or RTCP.
            0 => {
                let first = rng.random_range(64..128);
                random_bytes(&mut rng, Some(first))
            }
            // STUN-looking junk that does not parse.
            1 => {
                let mut j = random_bytes(&mut rng, Some(0));
                j.resize(j.len().max(24), 0);
                j
            }
            // Truncated RTP / RTCP.
            2 => vec![0x80, 0x60, 0x00, 0x01, 0, 0][..rng.random_range(0..6)].to_vec(),
            3 => random_bytes(&mut rng, Some(0x80)),
            // DTLS junk.
            4 => random_bytes(&mut rng, Some(23)),
            // The replayed SRTP packet.
            _ => replay.clone(),
        };
        w.sim.inject(addr, w.shard, &junk);
        w.sim.run_for(Duration::from_millis(1));
    }
    let d = delta(&w.sim.shard(w.shard).stats(), &before);
    eprintln!(
        "known-address junk: [unknown_source, unknown_ufrag, malformed, rejected, replayed, rx] += {d:?}"
    );
    // Which of the two depends on how far str0m got with a datagram before refusing it.
    assert!(
        d[2] + d[3] > 0,
        "nothing counted as malformed or rejected: {d:?}"
    );
    // Every sixth datagram was the replayed SRTP packet.
    assert!(d[4] >= 16, "replays not counted: {d:?}");
    assert_eq!(
        (d[0], d[1]),
        (0, 0),
        "the known address was forgotten: {d:?}"
    );
    // check::exact in here also proves the replayed packet reached no viewer twice.
    assert_viewers_whole(&mut w);
}

#[test]
fn spoofed_dtls_alert_does_not_kill_the_publisher() {
    let mut w = world(41);
    let addr = w.sim.client(w.publisher).addr;
    w.sim.inject(addr, w.shard, &dtls_fatal_alert());
    w.sim.run_for(Duration::from_millis(100));
    let closed: Vec<_> = w
        .sim
        .events()
        .iter()
        .filter(|e| matches!(e.event, ringcast_core::ShardEvent::SessionClosed { .. }))
        .collect();
    assert!(
        closed.is_empty(),
        "a spoofed plaintext DTLS alert closed a session: {closed:?}"
    );
    assert_viewers_whole(&mut w);
}

#[test]
fn a_flood_of_random_datagrams_never_panics() {
    let mut w = world(43);
    let mut rng = StdRng::seed_from_u64(1234);
    let known: Vec<SocketAddr> = std::iter::once(w.publisher)
        .chain(w.viewers.iter().copied())
        .map(|c| w.sim.client(c).addr)
        .collect();
    for i in 0..2000 {
        let first = match i % 4 {
            0 => None,
            1 => Some(rng.random_range(0..4)),
            2 => Some(rng.random_range(20..64)),
            _ => Some(rng.random_range(128..192)),
        };
        let junk = random_bytes(&mut rng, first);
        let from = if i % 2 == 0 {
            known[i % known.len()]
        } else {
            stranger(&mut rng)
        };
        w.sim.inject(from, w.shard, &junk);
        if i % 20 == 0 {
            w.sim.run_for(Duration::from_millis(1));
        }
    }
    assert_viewers_whole(&mut w);
}
