//! The admission limits of the control plane (issue 9, finding 1: one client filled the
//! server): sessions and creations per client, viewers per stream, unconnected sessions in
//! total with a share kept for token holders, a bounded map of clients, and refusals that
//! reserve nothing. Time is the sim's virtual clock, so buckets refill without waiting.

mod common;

use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use ringcast_core::control::{AdmissionLimits, ClientKey, Limits, Rate, Refusal, Requester};
use ringcast_core::{ShardConfig, TrackKind};
use ringcast_sim::{ClientId, PublisherConfig, Sim, SimConfig};

fn sim(admission: AdmissionLimits, max: usize) -> Sim {
    common::init_log();
    Sim::new(SimConfig {
        seed: 91,
        shards: 1,
        limits: Limits { affinity: max, max },
        shard: ShardConfig {
            connect_timeout: Duration::from_secs(3),
            ..ShardConfig::default()
        },
        admission,
        ..SimConfig::default()
    })
}

/// A request from 198.51.100.`n`, with or without a token.
fn from(n: u8, token: bool) -> Requester {
    Requester::new(IpAddr::V4(Ipv4Addr::new(198, 51, 100, n)), token)
}

fn key(n: u8) -> ClientKey {
    from(n, false).client
}

/// A live stream `s` whose publisher (a token holder) is connected.
fn live(sim: &mut Sim) -> ClientId {
    let p = sim
        .try_add_publisher_from("s", PublisherConfig::default(), from(200, true))
        .expect("the publisher");
    sim.connect(&[p], Duration::from_secs(2));
    p
}

#[test]
fn one_client_holds_at_most_its_sessions_and_an_ipv6_client_is_its_64() {
    let mut sim = sim(
        AdmissionLimits {
            sessions_per_client: 3,
            ..AdmissionLimits::NONE
        },
        100,
    );
    live(&mut sim);
    let mine: Vec<ClientId> = (0..3)
        .map(|_| sim.try_add_viewer_from("s", from(1, false)).unwrap())
        .collect();
    assert_eq!(
        sim.try_add_viewer_from("s", from(1, false)).unwrap_err(),
        Refusal::ClientSessions(3)
    );
    assert_eq!(sim.control().client_sessions(key(1)), 3);
    // Another client is not affected.
    sim.try_add_viewer_from("s", from(2, false)).unwrap();
    // One of the first client's sessions ends: it may start one again.
    sim.remove(mine[0]).unwrap();
    assert_eq!(sim.control().client_sessions(key(1)), 2);
    sim.try_add_viewer_from("s", from(1, false)).unwrap();

    // Addresses of one /64 are one client; the next /64 is another.
    let v6 = |s: &str| Requester::new(s.parse().unwrap(), false);
    for a in ["2001:db8:0:1::1", "2001:db8:0:1::2", "2001:db8:0:1:ffff::9"] {
        sim.try_add_viewer_from("s", v6(a)).unwrap();
    }
    assert_eq!(
        sim.try_add_viewer_from("s", v6("2001:db8:0:1:abcd::1"))
            .unwrap_err(),
        Refusal::ClientSessions(3)
    );
    sim.try_add_viewer_from("s", v6("2001:db8:0:2::1")).unwrap();
}

#[test]
fn creations_per_client_follow_a_token_bucket_that_refills_with_time() {
    let mut sim = sim(
        AdmissionLimits {
            creation_rate: Some(Rate {
                per_second: 0.5,
                burst: 2,
            }),
            ..AdmissionLimits::NONE
        },
        100,
    );
    live(&mut sim);
    let client = from(1, false);
    sim.try_add_viewer_from("s", client).unwrap();
    sim.try_add_viewer_from("s", client).unwrap();
    // The burst is spent: one token comes back every two seconds.
    assert_eq!(
        sim.try_add_viewer_from("s", client).unwrap_err(),
        Refusal::ClientRate(2)
    );
    // Another client has its own bucket.
    sim.try_add_viewer_from("s", from(2, false)).unwrap();
    sim.run_for(Duration::from_secs(1));
    // A refused request took no token: half of one is back, the wait is one second more.
    assert_eq!(
        sim.try_add_viewer_from("s", client).unwrap_err(),
        Refusal::ClientRate(1)
    );
    sim.run_for(Duration::from_secs(1));
    sim.try_add_viewer_from("s", client).unwrap();
    assert_eq!(
        sim.try_add_viewer_from("s", client).unwrap_err(),
        Refusal::ClientRate(2)
    );
    // Long idle: the bucket is full again, not fuller.
    sim.run_for(Duration::from_secs(60));
    sim.try_add_viewer_from("s", client).unwrap();
    sim.try_add_viewer_from("s", client).unwrap();
    assert!(matches!(
        sim.try_add_viewer_from("s", client),
        Err(Refusal::ClientRate(_))
    ));
}

#[test]
fn a_stream_takes_at_most_its_viewers() {
    let mut sim = sim(
        AdmissionLimits {
            viewers_per_stream: 3,
            ..AdmissionLimits::NONE
        },
        100,
    );
    live(&mut sim);
    let viewers: Vec<ClientId> = (1..=3)
        .map(|n| sim.try_add_viewer_from("s", from(n, true)).unwrap())
        .collect();
    // Even a token holder: the limit is the stream's.
    assert_eq!(
        sim.try_add_viewer_from("s", from(4, true)).unwrap_err(),
        Refusal::StreamFull("s".into(), 3)
    );
    // Another stream has its own.
    sim.try_add_publisher_from("t", PublisherConfig::default(), from(5, false))
        .unwrap();
    sim.run_for(Duration::from_secs(1));
    sim.try_add_viewer_from("t", from(6, false)).unwrap();
    sim.remove(viewers[0]).unwrap();
    sim.try_add_viewer_from("s", from(4, false)).unwrap();
}

#[test]
fn a_pending_flood_does_not_push_out_connected_sessions_or_token_holders() {
    // Ten unconnected sessions at most, the last four for token holders.
    let mut sim = sim(
        AdmissionLimits {
            pending_sessions: 10,
            token_reserve: 4,
            ..AdmissionLimits::NONE
        },
        100,
    );
    let publisher = live(&mut sim);
    let viewers: Vec<ClientId> = (1..=4)
        .map(|n| sim.try_add_viewer_from("s", from(n, false)).unwrap())
        .collect();
    sim.connect(&viewers, Duration::from_secs(2));
    assert_eq!(
        sim.control().unconnected(),
        0,
        "connected sessions count no more"
    );

    // The flood: sessions from many addresses that never connect.
    let mut flood = Vec::new();
    let refusal = loop {
        match sim.try_add_viewer_from("s", from(100 + flood.len() as u8, false)) {
            Ok(id) => {
                sim.vanish(id);
                flood.push(id);
            }
            Err(r) => break r,
        }
    };
    assert_eq!(refusal, Refusal::Pending);
    assert_eq!(flood.len(), 6, "the flood gets the share open to all");
    assert_eq!(sim.control().unconnected(), 6);
    // A token holder still gets in, and connects.
    let holder = sim.try_add_viewer_from("s", from(50, true)).unwrap();
    sim.connect(&[holder], Duration::from_secs(2));
    // The connected viewers kept their sessions and their media all along.
    let before: Vec<usize> = viewers
        .iter()
        .map(|v| sim.client(*v).received(TrackKind::Video).len())
        .collect();
    sim.run_for(Duration::from_secs(1));
    for (v, n) in viewers.iter().zip(before) {
        assert!(sim.control().session(sim.client(*v).session).is_some());
        assert!(sim.client(*v).received(TrackKind::Video).len() > n);
    }
    assert!(!sim.client(holder).received(TrackKind::Video).is_empty());
    assert!(sim.client(publisher).is_connected());

    // The flood times out (3 s here): its slots come back.
    sim.run_for(Duration::from_secs(4));
    assert_eq!(sim.control().unconnected(), 0);
    assert_eq!(sim.control().load(), &[6]);
    sim.try_add_viewer_from("s", from(51, false)).unwrap();
}

#[test]
fn token_holders_keep_the_last_seats_of_each_shard() {
    // Eight seats; ceil(2 / 1 shard) = 2 of them only for token holders.
    let mut sim = sim(
        AdmissionLimits {
            token_reserve: 2,
            ..AdmissionLimits::NONE
        },
        8,
    );
    live(&mut sim);
    for n in 1..=5 {
        sim.try_add_viewer_from("s", from(n, false)).unwrap();
    }
    assert_eq!(
        sim.try_add_viewer_from("s", from(6, false)).unwrap_err(),
        Refusal::Full
    );
    sim.try_add_viewer_from("s", from(7, true)).unwrap();
    sim.try_add_viewer_from("s", from(8, true)).unwrap();
    assert_eq!(
        sim.try_add_viewer_from("s", from(9, true)).unwrap_err(),
        Refusal::Full
    );
    assert_eq!(sim.control().load(), &[8]);
}

#[test]
fn refused_requests_leave_nothing_reserved() {
    let mut sim = sim(
        AdmissionLimits {
            sessions_per_client: 2,
            creation_rate: Some(Rate {
                per_second: 1.0,
                burst: 3,
            }),
            viewers_per_stream: 4,
            pending_sessions: 6,
            token_reserve: 1,
            tracked_clients: 5,
        },
        100,
    );
    live(&mut sim);
    let mut refusals = Vec::new();
    let mut attempt = |sim: &mut Sim, stream: &str, who: Requester| -> Option<ClientId> {
        let held = |sim: &Sim| {
            (
                sim.control().participants(),
                sim.control().unconnected(),
                sim.control().client_sessions(who.client),
                sim.control().tracked_clients(),
                sim.control().streams().count(),
            )
        };
        let before = held(sim);
        match sim.try_add_viewer_from(stream, who) {
            Ok(id) => Some(id),
            Err(r) => {
                assert_eq!(before, held(sim), "{r} left something reserved");
                refusals.push(r);
                None
            }
        }
    };
    // Sessions per client: two, not three.
    let first = attempt(&mut sim, "s", from(1, false)).unwrap();
    attempt(&mut sim, "s", from(1, false)).unwrap();
    assert!(attempt(&mut sim, "s", from(1, false)).is_none());
    // Viewers per stream: four, not five.
    attempt(&mut sim, "s", from(2, false)).unwrap();
    attempt(&mut sim, "s", from(3, false)).unwrap();
    assert!(attempt(&mut sim, "s", from(4, false)).is_none());
    // No publisher: a refused viewer does not make the stream.
    assert!(attempt(&mut sim, "nobody", from(5, false)).is_none());
    // Unconnected sessions: four viewers, and a publisher of another stream make five, all
    // that is open to requests without a token; the sixth is a token holder's.
    sim.try_add_publisher_from("t", PublisherConfig::default(), from(6, false))
        .unwrap();
    assert_eq!(sim.control().unconnected(), 5);
    assert!(attempt(&mut sim, "t", from(6, false)).is_none());
    attempt(&mut sim, "t", from(6, true)).unwrap();
    // Tracked clients: 200 (the first publisher), 1, 2, 3 and 6; not 7.
    assert!(attempt(&mut sim, "t", from(7, true)).is_none());
    // Creations: client 1 spent two of its three tokens; one more, then none left.
    sim.remove(first).unwrap();
    let again = attempt(&mut sim, "s", from(1, true)).unwrap();
    sim.remove(again).unwrap();
    assert!(attempt(&mut sim, "s", from(1, true)).is_none());
    assert_eq!(
        refusals,
        [
            Refusal::ClientSessions(2),
            Refusal::StreamFull("s".into(), 4),
            Refusal::NoPublisher("nobody".into()),
            Refusal::Pending,
            Refusal::TooManyClients,
            Refusal::ClientRate(1),
        ]
    );

    // Everyone leaves: nothing is held, and the next sweep forgets every client.
    for id in (0..sim.clients().len()).map(ClientId) {
        let _ = sim.remove(id);
    }
    sim.run_for(Duration::from_secs(10));
    assert_eq!(sim.control().participants(), 0);
    assert_eq!(sim.control().unconnected(), 0);
    assert_eq!(sim.control().streams().count(), 0);
    for n in [1, 2, 3, 6, 200] {
        assert_eq!(sim.control().client_sessions(key(n)), 0);
    }
    sim.try_add_publisher_from("u", PublisherConfig::default(), from(9, false))
        .unwrap();
    assert_eq!(sim.control().tracked_clients(), 1);
}

#[test]
fn the_map_of_clients_is_bounded_and_forgets_empty_entries() {
    let mut sim = sim(
        AdmissionLimits {
            creation_rate: Some(Rate {
                per_second: 1.0,
                burst: 2,
            }),
            tracked_clients: 3,
            ..AdmissionLimits::NONE
        },
        100,
    );
    let p = live(&mut sim);
    let a = sim.try_add_viewer_from("s", from(1, false)).unwrap();
    let b = sim.try_add_viewer_from("s", from(2, false)).unwrap();
    assert_eq!(sim.control().tracked_clients(), 3);
    assert_eq!(
        sim.try_add_viewer_from("s", from(3, false)).unwrap_err(),
        Refusal::TooManyClients
    );
    // Their sessions end; their buckets (one token short) are full again a second later: the
    // entries go then, not before.
    sim.remove(a).unwrap();
    sim.remove(b).unwrap();
    sim.run_for(Duration::from_millis(500));
    assert_eq!(
        sim.try_add_viewer_from("s", from(3, false)).unwrap_err(),
        Refusal::TooManyClients,
        "a bucket not yet full is still kept"
    );
    sim.run_for(Duration::from_secs(2));
    sim.try_add_viewer_from("s", from(3, false)).unwrap();
    assert_eq!(
        sim.control().tracked_clients(),
        2,
        "the publisher's and 3's"
    );
    sim.remove(p).unwrap();
}
