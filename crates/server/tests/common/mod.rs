//! Real clients for the `ringcast` binary on loopback: the server as a child process, a str0m
//! WHIP publisher sending synthetic VP8 + Opus (valid payload descriptors, tagged payloads) and
//! str0m WHEP viewers, each on its own UDP socket. Shared by the e2e tests and the fan-out
//! benchmark example.
#![allow(dead_code, reason = "each user takes what it needs")]

use std::collections::HashMap;
use std::net::{SocketAddr, UdpSocket};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ringcast_sim::media::{Tag, VideoCodec, audio_payload, video_frame};
use str0m::change::{SdpAnswer, SdpPendingOffer};
use str0m::format::Codec;
use str0m::media::{Direction, MediaKind, Mid, Pt};
use str0m::net::{Protocol, Receive};
use str0m::rtp::{RtpWrite, SeqNo};
use str0m::{Candidate, Event, Input, Output, Rtc, RtcConfig};

pub struct Server {
    pub child: Child,
    pub http: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The I/O engine the servers under test run: `TEST_ENGINE` (`uring`, `epoll`; `scripts/test`
/// runs the suite once with each), else `auto`. A server that cannot run the engine asked
/// for refuses to start, so the test fails rather than testing the other engine.
pub fn test_engine() -> String {
    std::env::var("TEST_ENGINE").unwrap_or_else(|_| "auto".into())
}

pub fn start_server(shards: usize) -> Server {
    start_server_with(shards, &[])
}

/// Start the binary with `shards` shards and extra `RINGCAST_*` variables.
pub fn start_server_with(shards: usize, env: &[(&str, &str)]) -> Server {
    start_server_under(&[], shards, env)
}

/// Start the binary under a wrapper command (`strace ...`; empty: none).
pub fn start_server_under(wrapper: &[&str], shards: usize, env: &[(&str, &str)]) -> Server {
    start_server_probed(wrapper, shards, env, |http| {
        ureq::get(format!("{http}/healthz")).call().is_ok()
    })
}

/// Start the binary with `shards` shards and extra `RINGCAST_*` variables; ready once
/// `probe(http://host:port)` says so (HTTPS: the listener accepts).
pub fn start_server_ready(
    shards: usize,
    env: &[(&str, &str)],
    probe: impl Fn(&str) -> bool,
) -> Server {
    start_server_probed(&[], shards, env, probe)
}

fn start_server_probed(
    wrapper: &[&str],
    shards: usize,
    env: &[(&str, &str)],
    probe: impl Fn(&str) -> bool,
) -> Server {
    let http_port = free_port();
    // A base port with `shards` ports above it free for UDP and for TCP (ICE over TCP listens
    // on each shard's port number).
    let base = loop {
        let s = UdpSocket::bind("127.0.0.1:0").unwrap();
        let p = s.local_addr().unwrap().port();
        drop(s);
        let free = |port: u16| {
            UdpSocket::bind(("127.0.0.1", port)).is_ok()
                && std::net::TcpListener::bind(("127.0.0.1", port)).is_ok()
        };
        if p < 65000
            && !(p..p + shards as u16).contains(&http_port)
            && (0..shards as u16).all(|i| free(p + i))
        {
            break p;
        }
    };
    let mut command = match wrapper.split_first() {
        Some((program, args)) => {
            let mut command = Command::new(program);
            command.args(args).arg(binary());
            command
        }
        None => Command::new(binary()),
    };
    // The server reads every RINGCAST_* variable as a config key: only the test's own count.
    for (k, _) in std::env::vars().filter(|(k, _)| k.starts_with("RINGCAST_")) {
        command.env_remove(k);
    }
    let child = command
        .env("RINGCAST_HTTP_LISTEN", format!("127.0.0.1:{http_port}"))
        .env("RINGCAST_MEDIA_BIND", "127.0.0.1")
        .env("RINGCAST_MEDIA_PORT_BASE", base.to_string())
        .env("RINGCAST_MEDIA_SHARDS", shards.to_string())
        .env("RINGCAST_MEDIA_PIN_THREADS", "false")
        .env("RINGCAST_LOG_LEVEL", "warn")
        .env("RINGCAST_MEDIA_ENGINE", test_engine())
        .envs(env.iter().copied())
        .stdout(Stdio::null())
        .spawn()
        .expect("ringcast starts");
    // The guard kills and reaps the child on every path, panics included.
    let server = Server {
        child,
        http: format!("http://127.0.0.1:{http_port}"),
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        if probe(&server.http) {
            return server;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("ringcast did not get ready");
}

/// The `ringcast` binary: cargo names it for tests; an example finds it beside its own
/// directory (target/<profile>/examples/..).
fn binary() -> std::path::PathBuf {
    if let Some(p) = option_env!("CARGO_BIN_EXE_ringcast") {
        return p.into();
    }
    let exe = std::env::current_exe().expect("current exe");
    exe.parent()
        .and_then(|d| d.parent())
        .map(|d| d.join("ringcast"))
        .expect("target directory")
}

/// A str0m client on its own UDP socket.
pub struct Client {
    rtc: Rtc,
    socket: UdpSocket,
    local: SocketAddr,
    mids: [Option<Mid>; 2],
    location: String,
    /// Send every n-th datagram twice (a replay the server must drop); 0 = never.
    pub replay_every: usize,
    sent_datagrams: usize,
}

pub fn client(http: &str, path: &str, publish: bool) -> (Client, Instant) {
    client_at(http, path, publish, "127.0.0.1:0")
}

/// [`client`] on a UDP socket bound at `bind` (`[::1]:0`: an IPv6 client).
pub fn client_at(http: &str, path: &str, publish: bool, bind: &str) -> (Client, Instant) {
    let socket = UdpSocket::bind(bind).unwrap();
    let local = socket.local_addr().unwrap();
    let mut config = RtcConfig::new()
        .set_rtp_mode(true)
        .clear_codecs()
        .enable_opus(true, false);
    config = config.enable_vp8(true);
    let mut rtc = config.build(Instant::now());
    rtc.add_local_candidate(Candidate::host(local, "udp").unwrap());
    let dir = if publish {
        Direction::SendOnly
    } else {
        Direction::RecvOnly
    };
    let mut api = rtc.sdp_api();
    let a = api.add_media(MediaKind::Audio, dir, None, None, None);
    let v = api.add_media(MediaKind::Video, dir, None, None, None);
    let (offer, pending): (_, SdpPendingOffer) = api.apply().unwrap();
    let posted = Instant::now();
    let mut res = ureq::post(format!("{http}{path}"))
        .header("Content-Type", "application/sdp")
        .send(offer.to_sdp_string())
        .expect("201");
    assert_eq!(res.status(), 201);
    let location = res
        .headers()
        .get("location")
        .unwrap()
        .to_str()
        .unwrap()
        .to_string();
    let answer = res.body_mut().read_to_string().unwrap();
    rtc.sdp_api()
        .accept_answer(pending, SdpAnswer::from_sdp_string(&answer).unwrap())
        .unwrap();
    socket
        .set_read_timeout(Some(Duration::from_millis(2)))
        .unwrap();
    (
        Client {
            rtc,
            socket,
            local,
            mids: [Some(a), Some(v)],
            location,
            replay_every: 0,
            sent_datagrams: 0,
        },
        posted,
    )
}

/// What a client's drain produced that the test cares about.
#[derive(Default)]
pub struct Seen {
    pub connected: bool,
    /// The server closed the connection (DTLS close_notify: `Event::Closed`).
    pub closed: bool,
    pub keyframe_requests: usize,
    /// (kind index, extended sequence number, payload, arrival).
    pub rtp: Vec<(usize, u64, Vec<u8>, Instant)>,
}

impl Client {
    /// Send one datagram (twice when it is due for a replay).
    fn send(&mut self, contents: &[u8], destination: SocketAddr) {
        let _ = self.socket.send_to(contents, destination);
        self.sent_datagrams += 1;
        if self.replay_every > 0 && self.sent_datagrams.is_multiple_of(self.replay_every) {
            let _ = self.socket.send_to(contents, destination);
        }
    }

    /// Drain outputs; then read at most one datagram (or time out briefly) and feed it.
    pub fn step(&mut self, seen: &mut Seen) -> Option<Instant> {
        let deadline = loop {
            match self.rtc.poll_output().expect("poll") {
                Output::Timeout(t) => break t,
                Output::Transmit(t) => self.send(&t.contents, t.destination),
                Output::Event(e) => match e {
                    Event::Connected => seen.connected = true,
                    Event::Closed => seen.closed = true,
                    Event::KeyframeRequest(_) => seen.keyframe_requests += 1,
                    Event::RtpPacket(p) => {
                        let kind = Tag::parse(&p.payload).map_or(1, |t| usize::from(t.kind));
                        seen.rtp
                            .push((kind, *p.seq_no, p.payload.to_vec(), Instant::now()));
                    }
                    _ => {}
                },
            }
        };
        let mut buf = [0u8; 2000];
        let now = Instant::now();
        if deadline <= now {
            self.rtc.handle_input(Input::Timeout(now)).unwrap();
            return Some(deadline);
        }
        if let Ok((n, source)) = self.socket.recv_from(&mut buf) {
            let input = Input::Receive(
                Instant::now(),
                Receive {
                    proto: Protocol::Udp,
                    source,
                    destination: self.local,
                    contents: buf[..n].try_into().unwrap(),
                },
            );
            self.rtc.handle_input(input).unwrap();
        } else {
            self.rtc
                .handle_input(Input::Timeout(Instant::now()))
                .unwrap();
        }
        Some(deadline)
    }

    fn pt(&self, kind: usize, codec: Codec) -> Pt {
        let mid = self.mids[kind].unwrap();
        let remote = self.rtc.media(mid).unwrap().remote_pts().to_vec();
        self.rtc
            .codec_config()
            .params()
            .iter()
            .find(|p| p.spec().codec == codec && remote.contains(&p.pt()))
            .unwrap()
            .pt()
    }
}

pub type SentLog = Arc<Mutex<HashMap<(u8, u32, u16), Vec<u8>>>>;

/// Publish synthetic VP8 + Opus until `stop`; a keyframe every 2 s and on PLI.
pub fn run_publisher(http: String, mut c: Client, stop: Arc<AtomicBool>, sent: SentLog) -> Seen {
    let mut seen = Seen::default();
    let start = Instant::now();
    while !seen.connected {
        c.step(&mut seen);
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "publisher did not connect"
        );
    }
    let (apt, vpt) = (c.pt(0, Codec::Opus), c.pt(1, Codec::Vp8));
    let mut seq = [1000u64, 20_000u64];
    let mut frame = 0u32;
    let mut audio = 0u32;
    let t0 = Instant::now();
    let mut next_video = t0;
    let mut next_audio = t0;
    let mut last_key = None::<Instant>;
    let mut handled_requests = 0;
    while !stop.load(Ordering::Relaxed) {
        c.step(&mut seen);
        let now = Instant::now();
        if now >= next_audio {
            let payload = audio_payload(1, audio, 60 + (audio as usize * 7) % 100);
            sent.lock().unwrap().insert((0, audio, 0), payload.clone());
            let ts = audio.wrapping_mul(960);
            write(&mut c, 0, apt, seq[0], ts, true, payload, now);
            seq[0] += 1;
            audio += 1;
            next_audio += Duration::from_millis(20);
        }
        if now >= next_video {
            let key = last_key.is_none_or(|k| now - k > Duration::from_secs(2))
                || seen.keyframe_requests > handled_requests;
            handled_requests = seen.keyframe_requests;
            if key {
                last_key = Some(now);
            }
            let size = if key { 12_000 } else { 3_000 };
            let packets = video_frame(VideoCodec::Vp8, 1, frame, key, size);
            let n = packets.len();
            for (i, p) in packets.into_iter().enumerate() {
                sent.lock().unwrap().insert((1, frame, i as u16), p.clone());
                write(
                    &mut c,
                    1,
                    vpt,
                    seq[1],
                    frame.wrapping_mul(3000),
                    i + 1 == n,
                    p,
                    now,
                );
                seq[1] += 1;
            }
            frame += 1;
            next_video += Duration::from_millis(33);
        }
    }
    let _ = ureq::delete(format!("{http}{}", c.location)).call();
    seen
}

#[allow(clippy::too_many_arguments)]
pub fn write(
    c: &mut Client,
    kind: usize,
    pt: Pt,
    seq: u64,
    ts: u32,
    marker: bool,
    payload: Vec<u8>,
    now: Instant,
) {
    let mid = c.mids[kind].unwrap();
    let mut api = c.rtc.direct_api();
    let stream = api.stream_tx_by_mid(mid, None).expect("send stream");
    stream.write_rtp(
        RtpWrite::new(pt, SeqNo::from(seq), ts, now, payload)
            .marker(marker)
            .nackable(true),
    );
    // Drain after each write (str0m's contract).
    loop {
        match c.rtc.poll_output().unwrap() {
            Output::Timeout(_) => break,
            Output::Transmit(t) => {
                c.send(&t.contents, t.destination);
            }
            Output::Event(_) => {}
        }
    }
}

/// Play until `want` video packets arrived or `max` passed. Returns what it saw and the join
/// time (POST → first media packet).
pub fn run_viewer(mut c: Client, posted: Instant, want: usize, max: Duration) -> (Seen, Duration) {
    let mut seen = Seen::default();
    let start = Instant::now();
    let mut video = 0;
    while video < want && start.elapsed() < max {
        let before = seen.rtp.len();
        c.step(&mut seen);
        video += seen.rtp[before..].iter().filter(|r| r.0 == 1).count();
    }
    let first = seen
        .rtp
        .first()
        .map(|r| r.3 - posted)
        .unwrap_or(Duration::MAX);
    (seen, first)
}
