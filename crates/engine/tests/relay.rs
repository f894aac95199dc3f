//! Relays between real shard threads: a burst of relayed packets from one shard's drain wakes
//! the receiving shard once, and every packet of it arrives.
#![allow(
    clippy::disallowed_methods,
    reason = "a real-socket test runs on wall-clock time"
)]

mod common;

use std::net::{SocketAddr, UdpSocket};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ringcast_core::{Command, Reply, ShardConfig, ShardId, ShardStats, StreamId};
use ringcast_engine::{EngineKind, EngineOptions, ShardHandle, Shards, ShardsConfig};
use str0m::format::Codec;
use str0m::media::MediaKind;
use str0m::net::{Protocol, Receive};
use str0m::rtp::RtpWrite;
use str0m::{Candidate, Event, Rtc, RtcConfig};

/// Packets in the keyframe the publisher sends: the burst the cache relays at once.
const BURST: u64 = 40;

#[test]
fn a_burst_of_relays_wakes_the_other_shard_once() {
    let (shards, _events) = Shards::start(ShardsConfig {
        binds: vec!["127.0.0.1:0".parse().unwrap(); 2],
        pin_threads: false,
        shard: ShardConfig::default(),
        kind: EngineKind::Epoll,
        engine: EngineOptions::default(),
        mailbox: 256,
        tcp: None,
    })
    .unwrap();
    let origin = shards.handles()[0].clone();
    let other = shards.handles()[1].clone();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();

    // A VP8 publisher on shard 0, connected over loopback.
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    socket
        .set_read_timeout(Some(Duration::from_millis(5)))
        .unwrap();
    let local = socket.local_addr().unwrap();
    let mut client = RtcConfig::new()
        .set_rtp_mode(true)
        .clear_codecs()
        .enable_vp8(true)
        .build(Instant::now());
    client.add_local_candidate(Candidate::host(local, "udp").unwrap());
    let mid = common::add_publisher(&runtime, &origin, &mut client, MediaKind::Video, Vec::new());
    let stream = StreamId(1);
    assert!(
        drive(&mut client, &socket, local, Duration::from_secs(10), |e| {
            matches!(e, Event::Connected)
        }),
        "the publisher connects"
    );

    // One keyframe of BURST packets (VP8 descriptor S=1 PID=0, then a keyframe header), which
    // shard 0 keeps in its keyframe cache.
    let pt = client
        .codec_config()
        .params()
        .iter()
        .find(|p| p.spec().codec == Codec::Vp8)
        .map(|p| p.pt())
        .expect("VP8 negotiated");
    let now = Instant::now();
    for i in 0..BURST {
        let payload: Arc<[u8]> = match i {
            0 => [
                &[0x10u8, 0x00, 0x00, 0x00, 0x9d, 0x01, 0x2a][..],
                &[0xab; 1000],
            ]
            .concat(),
            _ => [&[0x00u8][..], &[0xab; 1000]].concat(),
        }
        .into();
        let write = RtpWrite::new(pt, (1000 + i).into(), 90_000, now, payload)
            .marker(i == BURST - 1)
            .nackable(true);
        client
            .direct_api()
            .stream_tx_by_mid(mid, None)
            .expect("the video's send stream")
            .write_rtp(write);
    }
    drive(
        &mut client,
        &socket,
        local,
        Duration::from_millis(200),
        |_| false,
    );
    let s = wait_for(&runtime, &origin, |s| s.rtp_in == BURST);
    assert_eq!(s.rtp_in, BURST, "shard 0 got the keyframe");
    assert_eq!(other.relay_wakes(), 0, "nothing relayed yet");

    // Shard 1 starts getting the stream: shard 0 relays its cached keyframe, all of it in the
    // drain of this one command.
    runtime
        .block_on(origin.call(Command::RelayInterest {
            stream,
            shard: ShardId(1),
            want: true,
        }))
        .unwrap();
    let s = wait_for(&runtime, &other, |s| s.rtp_in == BURST);
    assert_eq!(s.rtp_in, BURST, "every relayed packet reached shard 1");
    // Shard 0 answers this after it finished the drain that relayed (and woke shard 1).
    let _ = stats(&runtime, &origin);
    assert_eq!(other.relay_drops(), 0);
    assert_eq!(other.relay_wakes(), 1, "one wake-up for the whole burst");
    assert_eq!(origin.relay_wakes(), 0);
    shards.stop();
}

fn stats(runtime: &tokio::runtime::Runtime, handle: &ShardHandle) -> ShardStats {
    match runtime.block_on(handle.call(Command::Stats)).unwrap() {
        Reply::Stats(s) => *s,
        other => panic!("{other:?}"),
    }
}

/// Wait up to 10 s for `done` on the shard's stats.
fn wait_for(
    runtime: &tokio::runtime::Runtime,
    handle: &ShardHandle,
    done: impl Fn(&ShardStats) -> bool,
) -> ShardStats {
    let give_up = Instant::now() + Duration::from_secs(10);
    loop {
        let s = stats(runtime, handle);
        if done(&s) || Instant::now() > give_up {
            return s;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Drive the client for up to `patience`, or until `until` says so on one of its events.
fn drive(
    client: &mut Rtc,
    socket: &UdpSocket,
    local: SocketAddr,
    patience: Duration,
    until: impl Fn(&Event) -> bool,
) -> bool {
    let give_up = Instant::now() + patience;
    let mut buf = [0u8; 2000];
    while Instant::now() < give_up {
        loop {
            match client.poll_output() {
                Ok(str0m::Output::Timeout(_)) | Err(_) => break,
                Ok(str0m::Output::Transmit(t)) => {
                    let _ = socket.send_to(&t.contents, t.destination);
                }
                Ok(str0m::Output::Event(e)) if until(&e) => return true,
                Ok(str0m::Output::Event(_)) => {}
            }
        }
        let input = match socket.recv_from(&mut buf) {
            Ok((n, source)) => str0m::Input::Receive(
                Instant::now(),
                Receive::new(Protocol::Udp, source, local, &buf[..n]).unwrap(),
            ),
            Err(_) => str0m::Input::Timeout(Instant::now()),
        };
        let _ = client.handle_input(input);
    }
    false
}
