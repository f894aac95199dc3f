//! The publisher of a stream goes away and a new one (new session, new client, new SSRCs,
//! sequence numbers and timestamps) takes over while viewers stay connected: they see one
//! continuous stream.

mod common;

use std::time::Duration;

use ringcast_core::control::Refusal;
use ringcast_core::{ShardEvent, ShardId, TrackKind};
use ringcast_sim::{ClientId, PublisherConfig, Received, Sim, SimConfig, Tag, check};
use str0m::IceConnectionState;

const VIEWERS: usize = 5;

fn start() -> (Sim, ClientId, Vec<ClientId>, &'static str) {
    start_with(false, PublisherConfig::default())
}

/// A publisher (as `config` says) and its viewers, streaming; `replace_publisher` as the
/// control plane is set.
fn start_with(
    replace_publisher: bool,
    config: PublisherConfig,
) -> (Sim, ClientId, Vec<ClientId>, &'static str) {
    common::init_log();
    let mut sim = Sim::new(SimConfig {
        seed: 3,
        replace_publisher,
        ..SimConfig::default()
    });
    let stream = "s77";
    let first = sim.add_publisher(stream, config);
    let viewers: Vec<_> = (0..VIEWERS).map(|_| sim.add_viewer(stream)).collect();
    let mut all = viewers.clone();
    all.push(first);
    sim.connect(&all, Duration::from_secs(2));
    sim.run_for(Duration::from_secs(2));
    (sim, first, viewers, stream)
}

/// Viewers kept their one connection throughout.
fn assert_never_reconnected(sim: &Sim, viewers: &[ClientId]) {
    for &v in viewers {
        let c = sim.client(v);
        assert!(c.is_connected(), "viewer {v:?} lost its connection");
        assert!(
            !c.ice_states
                .iter()
                .any(|(_, s)| *s == IceConnectionState::Disconnected),
            "viewer {v:?}: {:?}",
            c.ice_states
        );
        assert!(c.errors.is_empty(), "viewer {v:?}: {:?}", c.errors);
    }
    assert!(
        !sim.events()
            .iter()
            .any(|e| matches!(e.event, ShardEvent::SessionClosed { session }
            if viewers.iter().any(|v| sim.client(*v).session == session))),
        "a viewer session was closed"
    );
}

/// One continuous stream across the switch: sequence numbers +1 each, one SSRC, timestamps
/// moving forward; each publisher's part byte-exact against what it sent.
fn assert_continuous(
    sim: &Sim,
    viewer: ClientId,
    kind: TrackKind,
    old: ClientId,
    new: ClientId,
    old_complete: bool,
) {
    let got = sim.client(viewer).received(kind);
    let (old_gen, new_gen) = (
        sim.client(old).publisher().generation,
        sim.client(new).publisher().generation,
    );
    let source = |r: &Received| Tag::parse(&r.payload).map(|t| t.source);
    let switch = got
        .iter()
        .position(|r| source(r) == Some(new_gen))
        .expect("packets of the new publisher");
    let (before, after) = got.split_at(switch);
    assert!(before.iter().all(|r| source(r) == Some(old_gen)));
    assert!(
        after.iter().all(|r| source(r) == Some(new_gen)),
        "{viewer:?} {kind}: old packets after the switch"
    );
    for w in got.windows(2) {
        assert_eq!(w[1].seq, w[0].seq + 1, "{viewer:?} {kind}: sequence gap");
        assert_eq!(w[1].ssrc, w[0].ssrc, "{viewer:?} {kind}: SSRC changed");
    }
    let step = got[switch].ts.wrapping_sub(got[switch - 1].ts) as i32;
    assert!(
        step > 0,
        "{viewer:?} {kind}: timestamp went back ({step}) at the switch"
    );
    // The old publisher's part: exact up to where it stopped (all it sent when it left
    // cleanly; a vanished one's last packets died on the wire).
    let old_sent = sim.client(old).sent(kind);
    let tag = Tag::parse(&before[0].payload).unwrap();
    let from = old_sent
        .iter()
        .position(|s| Tag::parse(&s.payload) == Some(tag))
        .unwrap();
    let upto = if old_complete {
        old_sent.len()
    } else {
        (from + before.len()).min(old_sent.len())
    };
    check::exact(&old_sent[..upto], before)
        .unwrap_or_else(|e| panic!("{viewer:?} {kind} before the switch: {e}"));
    let start = check::exact(sim.client(new).sent(kind), after)
        .unwrap_or_else(|e| panic!("{viewer:?} {kind} after the switch: {e}"));
    assert_eq!(
        start, 0,
        "{viewer:?} {kind}: missed the new publisher's start"
    );
}

#[test]
fn publisher_leaves_and_another_takes_over() {
    let (mut sim, first, viewers, stream) = start();
    // The first publisher stops and leaves (WHIP DELETE).
    sim.set_media(first, false);
    sim.run_for(Duration::from_millis(100));
    sim.remove(first).expect("removed");
    sim.run_for(Duration::from_millis(500));

    let second = sim.add_publisher(stream, PublisherConfig::default());
    sim.connect(&[second], Duration::from_secs(2));
    sim.run_for(Duration::from_secs(2));
    sim.set_media(second, false);
    sim.run_for(Duration::from_millis(200));

    assert_never_reconnected(&sim, &viewers);
    for &v in &viewers {
        for kind in TrackKind::ALL {
            assert_continuous(&sim, v, kind, first, second, true);
        }
    }
}

#[test]
fn publisher_vanishes_times_out_and_another_takes_over() {
    let (mut sim, first, viewers, stream) = start();
    let session = sim.client(first).session;
    // The first publisher's network dies mid-stream: no DELETE, no DTLS close.
    let vanished = sim.now();
    sim.vanish(first);
    let closed = sim.run_until_true(Duration::from_secs(60), |s| {
        s.events()
            .iter()
            .any(|e| e.event == ShardEvent::SessionClosed { session })
    });
    assert!(
        closed,
        "the shard never closed the vanished publisher's session"
    );
    let after = sim.now() - vanished;
    eprintln!("vanished publisher closed by the shard after {after:?}");
    // str0m's ICE-lite agent drops a candidate pair 15 s after its last binding request and
    // then reports Disconnected; its timer runs at least every 3 s.
    assert!(
        after >= Duration::from_secs(10) && after <= Duration::from_secs(25),
        "{after:?}"
    );
    assert_eq!(sim.shard(ShardId(0)).stats().publishers, 0);

    let second = sim.add_publisher(stream, PublisherConfig::default());
    sim.connect(&[second], Duration::from_secs(2));
    sim.run_for(Duration::from_secs(2));
    sim.set_media(second, false);
    sim.run_for(Duration::from_millis(200));

    assert_never_reconnected(&sim, &viewers);
    for &v in &viewers {
        for kind in TrackKind::ALL {
            assert_continuous(&sim, v, kind, first, second, false);
        }
    }
}

#[test]
fn a_second_publisher_is_refused_unless_replacing_is_on() {
    let (mut sim, first, _viewers, stream) = start();
    assert_eq!(
        sim.try_add_publisher(stream, PublisherConfig::default()),
        Err(Refusal::PublisherExists(stream.to_string()))
    );
    sim.run_for(Duration::from_millis(200));
    assert!(
        sim.client(first).is_connected(),
        "the live publisher was disturbed"
    );
    assert_eq!(
        sim.control().participants(),
        VIEWERS + 1,
        "the refusal left a reservation"
    );
}

#[test]
fn a_second_publisher_replaces_the_first() {
    // With replace_publisher, a publisher for a stream that has one takes its shard; the shard
    // drops the old one (and tells its client), viewers switch over without a gap, and the
    // control plane forgets the old session.
    let (mut sim, first, viewers, stream) = start_with(true, PublisherConfig::default());
    let old_session = sim.client(first).session;
    sim.set_media(first, false);
    sim.run_for(Duration::from_millis(100));
    let second = sim.add_publisher(stream, PublisherConfig::default());
    sim.connect(&[second], Duration::from_secs(2));
    sim.run_for(Duration::from_secs(1));
    sim.set_media(second, false);
    sim.run_for(Duration::from_millis(200));
    assert!(
        !sim.client(first).rtc().is_alive(),
        "the replaced publisher's client was not told"
    );
    assert_eq!(sim.shard(ShardId(0)).stats().publishers, 1);
    assert!(sim.control().session(old_session).is_none());
    assert_eq!(sim.control().participants(), VIEWERS + 1);
    assert_never_reconnected(&sim, &viewers);
    for &v in &viewers {
        for kind in TrackKind::ALL {
            assert_continuous(&sim, v, kind, first, second, true);
        }
    }
}

#[test]
fn vp8_picture_numbers_continue_across_a_publisher_restart() {
    // Each publisher session numbers its VP8 pictures (PictureID, TL0PICIDX, KEYIDX) from its
    // own start. Viewers of a stream whose publisher leaves and comes back as a new session see
    // one continuous numbering (the shard rewrites the new session's), every payload
    // byte-exact otherwise.
    let config = PublisherConfig {
        vp8_picture_ids: true,
        ..PublisherConfig::default()
    };
    let (mut sim, first, viewers, stream) = start_with(false, config.clone());
    sim.set_media(first, false);
    sim.run_for(Duration::from_millis(100));
    sim.remove(first).expect("removed");
    sim.run_for(Duration::from_millis(500));

    let second = sim.add_publisher(stream, config);
    sim.connect(&[second], Duration::from_secs(2));
    sim.run_for(Duration::from_secs(2));
    sim.set_media(second, false);
    sim.run_for(Duration::from_millis(200));

    assert_never_reconnected(&sim, &viewers);
    for &v in &viewers {
        for kind in TrackKind::ALL {
            assert_continuous(&sim, v, kind, first, second, true);
        }
        let frames = check::vp8_numbering(sim.client(v).received(TrackKind::Video))
            .unwrap_or_else(|e| panic!("viewer {v:?}: VP8 numbering: {e}"));
        assert!(frames > 100, "{frames} frames");
    }
}
