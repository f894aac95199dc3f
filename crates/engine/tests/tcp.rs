//! ICE over TCP on a real shard over loopback: a str0m client whose one candidate is TCP
//! connects through the shard's listener (RFC 4571 frames), and bad connections (garbage, too
//! many, idle, too slow to read) are closed and counted while the others stay open.
#![allow(
    clippy::disallowed_methods,
    reason = "a real-socket test runs on wall-clock time"
)]

mod common;

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use ringcast_core::{Command, Reply, ShardConfig, ShardStats};
use ringcast_engine::{EngineKind, EngineOptions, ShardHandle, Shards, ShardsConfig, TcpConfig};
use str0m::media::MediaKind;
use str0m::net::{Protocol, Receive, TcpType};
use str0m::{Candidate, Event, Rtc, RtcConfig};

fn shard(tcp: TcpConfig) -> Shards {
    Shards::start(ShardsConfig {
        binds: vec!["127.0.0.1:0".parse().unwrap()],
        pin_threads: false,
        shard: ShardConfig::default(),
        kind: EngineKind::Epoll,
        engine: EngineOptions::default(),
        mailbox: 16,
        tcp: Some(tcp),
    })
    .unwrap()
    .0
}

fn stats(handle: &ShardHandle) -> ShardStats {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    match runtime.block_on(handle.call(Command::Stats)).unwrap() {
        Reply::Stats(s) => *s,
        other => panic!("{other:?}"),
    }
}

/// Wait up to 10 s for `done` on the shard's stats.
fn wait_for(handle: &ShardHandle, done: impl Fn(&ShardStats) -> bool) -> ShardStats {
    let give_up = Instant::now() + Duration::from_secs(10);
    loop {
        let s = stats(handle);
        if done(&s) || Instant::now() > give_up {
            return s;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Whether the server closed `stream` within 10 s (reading what it sends meanwhile).
fn closed_by_server(stream: &mut TcpStream) -> bool {
    stream
        .set_read_timeout(Some(Duration::from_millis(50)))
        .unwrap();
    let give_up = Instant::now() + Duration::from_secs(10);
    let mut buf = [0u8; 4096];
    while Instant::now() < give_up {
        match stream.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => {}
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(_) => return true,
        }
    }
    false
}

fn still_open(stream: &mut TcpStream) -> bool {
    stream.set_nonblocking(true).unwrap();
    let mut buf = [0u8; 64];
    let open = matches!(stream.read(&mut buf), Err(e) if e.kind() == ErrorKind::WouldBlock);
    stream.set_nonblocking(false).unwrap();
    open
}

/// A str0m publisher whose one candidate is an active TCP one, placed on the shard, its
/// connection to the shard's TCP port opened.
fn tcp_publisher(handle: &ShardHandle) -> (Rtc, TcpStream) {
    let tcp_addr = handle.tcp_addr().expect("the shard listens on TCP");
    assert_eq!(tcp_addr.port(), handle.local_addr().port());
    let stream = TcpStream::connect(tcp_addr).unwrap();
    let local = stream.local_addr().unwrap();
    let mut client = RtcConfig::new()
        .set_rtp_mode(true)
        .clear_codecs()
        .enable_opus(true, false)
        .build(Instant::now());
    let candidate = Candidate::builder()
        .tcp()
        .host(local)
        .tcptype(TcpType::Active)
        .build()
        .unwrap();
    client.add_local_candidate(candidate);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    common::add_publisher(
        &runtime,
        handle,
        &mut client,
        MediaKind::Audio,
        vec![tcp_addr],
    );
    (client, stream)
}

/// Drive the client over its connection (RFC 4571 frames) until it connects or 10 s passed.
fn drive_until_connected(client: &mut Rtc, stream: &mut TcpStream) -> bool {
    let local = stream.local_addr().unwrap();
    stream
        .set_read_timeout(Some(Duration::from_millis(5)))
        .unwrap();
    let give_up = Instant::now() + Duration::from_secs(10);
    let mut pending: Vec<u8> = Vec::new();
    let mut buf = [0u8; 4096];
    while Instant::now() < give_up {
        loop {
            match client.poll_output() {
                Ok(str0m::Output::Timeout(_)) | Err(_) => break,
                Ok(str0m::Output::Transmit(t)) => {
                    assert_eq!(t.proto, Protocol::Tcp);
                    let mut frame = (t.contents.len() as u16).to_be_bytes().to_vec();
                    frame.extend_from_slice(&t.contents);
                    if stream.write_all(&frame).is_err() {
                        return false;
                    }
                }
                Ok(str0m::Output::Event(Event::Connected)) => return true,
                Ok(str0m::Output::Event(_)) => {}
            }
        }
        match stream.read(&mut buf) {
            Ok(0) => return false,
            Ok(n) => pending.extend_from_slice(&buf[..n]),
            Err(_) => {}
        }
        let source = stream.peer_addr().unwrap();
        while pending.len() >= 2 {
            let len = usize::from(u16::from_be_bytes([pending[0], pending[1]]));
            if pending.len() < 2 + len {
                break;
            }
            let frame: Vec<u8> = pending.drain(..2 + len).skip(2).collect();
            let input = Receive::new(Protocol::Tcp, source, local, &frame).unwrap();
            let _ = client.handle_input(str0m::Input::Receive(Instant::now(), input));
        }
        let _ = client.handle_input(str0m::Input::Timeout(Instant::now()));
    }
    false
}

#[test]
fn a_client_with_only_a_tcp_candidate_connects_over_the_shards_tcp_port() {
    let shards = shard(TcpConfig::default());
    let handle = shards.handles()[0].clone();
    let (mut client, mut stream) = tcp_publisher(&handle);
    assert!(drive_until_connected(&mut client, &mut stream));
    let s = wait_for(&handle, |s| s.connected_tcp == 1);
    assert_eq!(
        (
            s.connected_tcp,
            s.connected_udp,
            s.tcp_accepted,
            s.tcp_connections
        ),
        (1, 0, 1, 1)
    );
    shards.stop();
}

#[test]
fn garbage_and_empty_frames_close_only_their_connection() {
    let shards = shard(TcpConfig::default());
    let handle = shards.handles()[0].clone();
    let tcp = handle.tcp_addr().unwrap();
    let mut good = TcpStream::connect(tcp).unwrap();
    let mut garbage = TcpStream::connect(tcp).unwrap();
    garbage.write_all(&[0, 4, 0xff, 0xff, 0xff, 0xff]).unwrap();
    let mut empty = TcpStream::connect(tcp).unwrap();
    empty.write_all(&[0, 0]).unwrap();
    // A first frame that is RTP-like but not STUN: a TCP ICE connection starts with a check.
    let mut not_stun_first = TcpStream::connect(tcp).unwrap();
    not_stun_first
        .write_all(&[0, 12, 0x80, 0x60, 0, 1])
        .unwrap();
    not_stun_first.write_all(&[0; 8]).unwrap();
    assert!(closed_by_server(&mut garbage));
    assert!(closed_by_server(&mut empty));
    assert!(closed_by_server(&mut not_stun_first));
    let s = wait_for(&handle, |s| s.tcp_closed_malformed == 3);
    assert_eq!((s.tcp_closed_malformed, s.tcp_connections), (3, 1));
    assert!(still_open(&mut good));
    shards.stop();
}

#[test]
fn connections_past_the_per_ip_bound_are_refused_and_the_others_stay() {
    let shards = shard(TcpConfig {
        max_per_ip: 2,
        ..TcpConfig::default()
    });
    let handle = shards.handles()[0].clone();
    let tcp = handle.tcp_addr().unwrap();
    let mut first = TcpStream::connect(tcp).unwrap();
    let mut second = TcpStream::connect(tcp).unwrap();
    let s = wait_for(&handle, |s| s.tcp_accepted == 2);
    assert_eq!(s.tcp_accepted, 2);
    let mut third = TcpStream::connect(tcp).unwrap();
    assert!(closed_by_server(&mut third));
    let s = wait_for(&handle, |s| s.tcp_refused == 1);
    assert_eq!((s.tcp_refused, s.tcp_connections), (1, 2));
    assert!(still_open(&mut first) && still_open(&mut second));
    shards.stop();
}

#[test]
fn idle_and_half_open_connections_are_closed() {
    let shards = shard(TcpConfig {
        idle_timeout: Duration::from_secs(1),
        ..TcpConfig::default()
    });
    let handle = shards.handles()[0].clone();
    let tcp = handle.tcp_addr().unwrap();
    let mut silent = TcpStream::connect(tcp).unwrap();
    // Half a frame, the rest never comes.
    let mut half = TcpStream::connect(tcp).unwrap();
    half.write_all(&[0, 100, 0, 1]).unwrap();
    assert!(closed_by_server(&mut silent));
    assert!(closed_by_server(&mut half));
    let s = wait_for(&handle, |s| s.tcp_closed_idle == 2);
    assert_eq!((s.tcp_closed_idle, s.tcp_connections), (2, 0));
    shards.stop();
}

#[test]
fn a_connection_whose_unsent_frames_outgrow_the_bound_is_closed() {
    // A bound below one STUN response: the shard's first answer on the connection already
    // outgrows it, as a reader that stopped reading would let frames pile up.
    let shards = shard(TcpConfig {
        max_write_buffer: 16,
        ..TcpConfig::default()
    });
    let handle = shards.handles()[0].clone();
    let (mut client, mut stream) = tcp_publisher(&handle);
    assert!(!drive_until_connected(&mut client, &mut stream));
    let s = wait_for(&handle, |s| s.tcp_closed_slow == 1);
    assert_eq!(
        (s.tcp_closed_slow, s.tcp_connections, s.connected_tcp),
        (1, 0, 0)
    );
    shards.stop();
}
