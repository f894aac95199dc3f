//! The load generator against the real `ringcast` binary on loopback, and against fake servers
//! that refuse, stall or answer garbage.
//!
//! The server binary is not a dependency of this package (cargo gives tests only their own
//! package's binaries): build it first, `cargo build -p ringcast` (scripts/test does).

mod common;

use common::ringcast_binary;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, UdpSocket};
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

struct Server {
    child: Child,
    url: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_tcp_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A server on free ports. The ports are picked free, but another test may take one before
/// the server binds it: a server that exits at once is started again on other ports.
fn start_ringcast() -> Server {
    for _ in 0..5 {
        if let Some(server) = try_start_ringcast() {
            return server;
        }
    }
    panic!("ringcast exited at start five times (ports taken meanwhile?)");
}

fn try_start_ringcast() -> Option<Server> {
    let shards = 2u16;
    let base = loop {
        let p = UdpSocket::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        // Free on TCP too: the shards' ICE-TCP listeners take the same numbers, and other
        // tests' HTTP clients use ports of this range for their connections.
        let free = |port: u16| {
            UdpSocket::bind(("127.0.0.1", port)).is_ok()
                && TcpListener::bind(("127.0.0.1", port)).is_ok()
        };
        if p < 65000 && (0..shards).all(|i| free(p + i)) {
            break p;
        }
    };
    let http = free_tcp_port();
    let mut command = Command::new(ringcast_binary());
    // The server refuses unknown RINGCAST_* keys: pass only ours.
    for (k, _) in std::env::vars().filter(|(k, _)| k.starts_with("RINGCAST_")) {
        command.env_remove(k);
    }
    let child = command
        .env("RINGCAST_HTTP_LISTEN", format!("127.0.0.1:{http}"))
        .env("RINGCAST_MEDIA_BIND", "127.0.0.1")
        .env("RINGCAST_MEDIA_PORT_BASE", base.to_string())
        .env("RINGCAST_MEDIA_SHARDS", shards.to_string())
        .env("RINGCAST_MEDIA_PIN_THREADS", "false")
        .env("RINGCAST_LOG_LEVEL", "warn")
        .env("RINGCAST_MEDIA_ENGINE", common::test_engine())
        .stdout(Stdio::null())
        .spawn()
        .expect("ringcast starts");
    let server = Server {
        child,
        url: format!("http://127.0.0.1:{http}"),
    };
    let mut server = server;
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        if std::net::TcpStream::connect(("127.0.0.1", http)).is_ok() {
            return Some(server);
        }
        if server.child.try_wait().is_ok_and(|status| status.is_some()) {
            return None;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("ringcast did not listen on {}", server.url);
}

fn loadtest(args: &[&str]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_ringcast-loadtest"));
    command.args(args).stdin(Stdio::null());
    let output = command.output().expect("ringcast-loadtest runs");
    eprintln!(
        "--- stdout\n{}--- stderr\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

fn json_of(path: &std::path::Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(path).expect("json written")).expect("valid json")
}

fn temp(name: &str) -> PathBuf {
    std::env::temp_dir().join(format!("ringcast-loadtest-{}-{name}", std::process::id()))
}

#[test]
fn small_broadcast_fills_every_field() {
    let server = start_ringcast();
    let pid = server.child.id().to_string();
    let json = temp("broadcast.json");
    let report = temp("broadcast.html");
    let output = loadtest(&[
        "broadcast",
        "--url",
        &server.url,
        "--streams",
        "1",
        "--viewers",
        "20",
        "--duration",
        "3s",
        "--warmup",
        "1s",
        "--threads",
        "1",
        "--join-rate",
        "100/s",
        "--verify-fraction",
        "0.25",
        "--server-pid",
        &pid,
        "--max-loss",
        "0%",
        "--min-connected",
        "100%",
        "--json",
        json.to_str().unwrap(),
        "--report",
        report.to_str().unwrap(),
    ]);
    assert!(output.status.success(), "exit {:?}", output.status);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.contains("latency ms"), "summary table on stdout");
    let s = json_of(&json);
    let _ = std::fs::remove_file(&json);
    assert!(
        std::fs::metadata(&report).is_ok_and(|m| m.len() > 0),
        "report written"
    );
    let _ = std::fs::remove_file(&report);

    assert_eq!(s["viewers"]["requested"], 20);
    assert_eq!(s["viewers"]["connected"], 20);
    assert_eq!(s["viewers"]["failed"], 0);
    assert_eq!(s["publishers"]["connected"], 1);
    assert_eq!(s["full_viewers"], 5);
    assert_eq!(s["loss_pct"].as_f64(), Some(0.0));
    assert_eq!(s["corrupt"], 0);
    assert_eq!(s["duplicates"], 0);
    for field in ["p50", "p95", "p99", "max"] {
        assert!(s["join_ms"][field].as_f64().unwrap() > 0.0, "join {field}");
        assert!(
            s["latency_ms"][field].as_f64().unwrap() > 0.0,
            "latency {field}"
        );
    }
    assert_eq!(s["join_ms"]["count"], 20);
    assert!(s["measured_s"].as_f64().unwrap() >= 2.9);
    assert!(s["duration_s"].as_f64().unwrap() > s["measured_s"].as_f64().unwrap());
    assert!(s["packets_sent"].as_u64().unwrap() > 500);
    // Every viewer gets every packet: received = 20 x sent, give or take the packets in
    // flight at the window's edges.
    let (sent, received) = (
        s["packets_sent"].as_f64().unwrap(),
        s["packets_received"].as_f64().unwrap(),
    );
    assert!(
        (received / sent / 20.0 - 1.0).abs() < 0.05,
        "sent {sent} received {received}"
    );
    let kbps = s["bitrate_per_viewer_kbps"].as_f64().unwrap();
    assert!((2000.0..3200.0).contains(&kbps), "bitrate {kbps}");
    assert!(s["loadtest_cpu_pct"].as_f64().unwrap() > 0.0);
    assert_eq!(s["loadtest_threads"], 1);
    assert!(
        s["errors"].as_object().unwrap().is_empty(),
        "{}",
        s["errors"]
    );
    assert!(s["started_at"].as_str().unwrap().ends_with('Z'));
    assert!(
        s["scenario"]
            .as_str()
            .unwrap()
            .starts_with("broadcast 1x20")
    );
    let server = &s["server"];
    assert_eq!(
        server["pid"].as_u64(),
        Some(u64::from(pid.parse::<u32>().unwrap()))
    );
    for field in [
        "cpu_s",
        "cpu_pct",
        "cpu_us_per_packet",
        "cpu_ms_per_viewer_s",
        "rss_kib_per_participant",
    ] {
        assert!(server[field].as_f64().unwrap() > 0.0, "server {field}");
    }
    assert_eq!(server["forwarded_packets"], s["packets_received"]);
    assert!(server["rss_kib"].as_u64().unwrap() > 0);
    assert!(s["timeline"].as_array().unwrap().len() >= 4);
    assert!(!s["latency_histogram"].as_array().unwrap().is_empty());
    assert!(!s["join_cdf"].as_array().unwrap().is_empty());
    assert!(s["threshold_failures"].as_array().unwrap().is_empty());
}

/// A short broadcast against ringcast with `extra` options: its JSON summary.
fn short_broadcast(server: &Server, name: &str, extra: &[&str]) -> Value {
    let json = temp(name);
    let mut args = vec![
        "broadcast",
        "--url",
        &server.url,
        "--viewers",
        "6",
        "--duration",
        "2s",
        "--warmup",
        "1s",
        "--threads",
        "1",
        "--verify-fraction",
        "0.5",
        "--json",
        json.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    let output = loadtest(&args);
    assert!(output.status.success(), "exit {:?}", output.status);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.contains("first frame ms"), "{stdout}");
    let s = json_of(&json);
    let _ = std::fs::remove_file(&json);
    s
}

#[test]
fn every_viewer_of_a_pli_ignoring_publisher_gets_a_first_frame() {
    let server = start_ringcast();
    let s = short_broadcast(
        &server,
        "ignore-pli.json",
        &["--ignore-pli", "--keyframe-interval", "1s"],
    );
    assert!(
        s["scenario"].as_str().unwrap().contains("ignoring PLI"),
        "{}",
        s["scenario"]
    );
    assert_eq!(s["viewers"]["connected"], 6, "{}", s["errors"]);
    // Every viewer, light ones too, saw a complete keyframe.
    let first = &s["first_frame_ms"];
    assert_eq!(first["count"], 6, "{first}");
    assert_eq!(first["missing"], 0);
    for field in ["p10", "p50", "p90", "p95", "p99", "max"] {
        assert!(first[field].as_f64().unwrap() > 0.0, "first frame {field}");
    }
    assert!(first["p10"].as_f64() <= first["max"].as_f64());
    // Each viewer's first frame comes no sooner than its first packet.
    assert!(first["p50"].as_f64().unwrap() >= s["join_ms"]["p50"].as_f64().unwrap());
    assert_eq!(first["cdf"].as_array().unwrap().last().unwrap()[1], 1.0);
    assert_eq!(s["corrupt"], 0);
}

#[test]
fn a_simulcast_publisher_is_accepted() {
    let server = start_ringcast();
    let s = short_broadcast(&server, "simulcast.json", &["--layers", "3"]);
    assert!(
        s["scenario"]
            .as_str()
            .unwrap()
            .contains("simulcast 3 layers"),
        "{}",
        s["scenario"]
    );
    assert_eq!(s["publishers"]["connected"], 1, "{}", s["errors"]);
    assert_eq!(s["viewers"]["connected"], 6, "{}", s["errors"]);
    assert!(s["packets_sent"].as_u64().unwrap() > 0);
    assert_eq!(s["corrupt"], 0);
    // Each viewer gets one layer's video, starting on a complete keyframe: more than the
    // audio alone (~50 kbit/s) and less than all three layers interleaved.
    assert_eq!(s["first_frame_ms"]["count"], 6, "{}", s["first_frame_ms"]);
    let kbps = s["bitrate_per_viewer_kbps"].as_f64().unwrap();
    assert!(kbps > 150.0, "{kbps} kbit/s per viewer");
}

#[test]
fn viewers_asking_for_layers_get_them() {
    let server = start_ringcast();
    let s = short_broadcast(
        &server,
        "simulcast-mixed.json",
        &["--layers", "3", "--viewer-layer", "mixed"],
    );
    assert_eq!(s["viewers"]["connected"], 6, "{}", s["errors"]);
    assert_eq!(s["first_frame_ms"]["count"], 6, "{}", s["first_frame_ms"]);
    assert_eq!(s["corrupt"], 0);
}

#[test]
fn injected_loss_is_reported() {
    let server = start_ringcast();
    let json = temp("loss.json");
    let output = loadtest(&[
        "ramp",
        "--url",
        &server.url,
        "--rate",
        "100/s",
        "--up-to",
        "10",
        "--duration",
        "3s",
        "--warmup",
        "1s",
        "--threads",
        "1",
        "--codec",
        "h264",
        "--simulate-loss",
        "5%",
        "--max-loss",
        "1%",
        "--json",
        json.to_str().unwrap(),
    ]);
    // The loss is above --max-loss: exit 1 with the reason.
    assert_eq!(output.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&output.stderr).contains("--max-loss"));
    let s = json_of(&json);
    let _ = std::fs::remove_file(&json);
    assert_eq!(s["viewers"]["connected"], 10);
    let loss = s["loss_pct"].as_f64().unwrap();
    assert!((4.5..=5.5).contains(&loss), "loss {loss}% for 5% injected");
    assert_eq!(s["threshold_failures"].as_array().unwrap().len(), 1);
}

#[test]
fn short_soak_reports_rss_loss_and_a_clean_gauge_table() {
    let server = start_ringcast();
    let pid = server.child.id().to_string();
    let json = temp("soak.json");
    let output = loadtest(&[
        "soak",
        "--server",
        &server.url,
        "--server-pid",
        &pid,
        "--cycles",
        "20",
        "--warmup-cycles",
        "4",
        "--concurrency",
        "4",
        "--viewers",
        "2",
        "--hold",
        "300ms",
        "--bitrate",
        "500kbps",
        "--threads",
        "1",
        "--settle",
        "20s",
        // 24 cycles are too few for the allocator to settle: the RSS is reported, not judged.
        "--max-rss-growth",
        "100%",
        "--json",
        json.to_str().unwrap(),
    ]);
    assert!(output.status.success(), "exit {:?}", output.status);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.contains("server RSS"), "table on stdout");
    assert!(stdout.contains("all back at their start value"), "{stdout}");
    let s = json_of(&json);
    let _ = std::fs::remove_file(&json);

    let cycles = &s["cycles"];
    assert_eq!(cycles["requested"], 20);
    assert_eq!(cycles["warmup"], 4);
    assert_eq!(cycles["publishers"], 12, "every other cycle publishes");
    assert_eq!(cycles["viewers"], 12);
    assert_eq!(cycles["connected"], 24, "{}", cycles["failures_by_reason"]);
    assert_eq!(cycles["failed"], 0);
    assert_eq!(cycles["deleted"], 24);
    assert!(cycles["failures_by_reason"].as_object().unwrap().is_empty());
    assert_eq!(cycles["viewer_join_ms"]["count"], 12);

    let rss = &s["rss"];
    for field in ["before_warmup_kib", "start_kib", "end_kib"] {
        assert!(rss[field].as_u64().unwrap() > 0, "rss {field}");
    }
    let ratio = rss["end_kib"].as_f64().unwrap() / rss["start_kib"].as_f64().unwrap();
    assert!((rss["ratio"].as_f64().unwrap() - ratio).abs() < 1e-9);
    assert_eq!(rss["back"], true);

    let running = &s["running_stream"];
    assert_eq!(running["viewers"], 2);
    assert!(running["packets_received"].as_u64().unwrap() > 100);
    assert!(running["loss_pct"].as_f64().is_some());
    assert_eq!(running["corrupt"], 0);
    assert!(running["latency_ms"]["count"].as_u64().unwrap() > 0);
    assert!(running["errors"].as_object().unwrap().is_empty());

    // Every gauge the server has (per shard, and per stream) was compared and came back; the
    // totals were left alone.
    let gauges: Vec<&str> = s["gauges"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g["name"].as_str().unwrap())
        .collect();
    for name in ["shard 0.participants", "shard 1.publishers", "streams"] {
        assert!(gauges.contains(&name), "{name} in {gauges:?}");
    }
    assert!(gauges.iter().any(|g| g.ends_with("-live.viewers")));
    assert!(s["gauges_not_back"].as_array().unwrap().is_empty());
    let totals = s["totals_not_compared"].as_array().unwrap();
    assert!(totals.iter().any(|t| t == "shard 0.rtp_forwarded"));
    assert!(totals.iter().any(|t| t == "shard 0.io.rx_datagrams"));
    assert!(s["failures"].as_array().unwrap().is_empty());
}

/// A fake HTTP server answering every request with `response` after `delay`.
fn fake_server(response: &'static str, delay: Duration) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { return };
            std::thread::spawn(move || {
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut length = 0usize;
                loop {
                    let mut line = String::new();
                    if reader.read_line(&mut line).unwrap_or(0) == 0 {
                        return;
                    }
                    if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                        length = v.trim().parse().unwrap_or(0);
                    }
                    if line == "\r\n" {
                        break;
                    }
                }
                let mut body = vec![0; length];
                let _ = reader.read_exact(&mut body);
                std::thread::sleep(delay);
                let _ = stream.write_all(response.as_bytes());
            });
        }
    });
    url
}

fn run_against(url: &str, extra: &[&str]) -> (Output, Value) {
    let json = temp(&format!("fault-{}.json", url.rsplit(':').next().unwrap()));
    let mut args = vec![
        "broadcast",
        "--url",
        url,
        "--viewers",
        "2",
        "--duration",
        "500ms",
        "--warmup",
        "0s",
        "--threads",
        "1",
        "--json",
        json.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    let output = loadtest(&args);
    let s = json_of(&json);
    let _ = std::fs::remove_file(&json);
    (output, s)
}

#[test]
fn faults_are_counted_by_cause() {
    // Refused.
    let url = fake_server(
        "HTTP/1.1 503 Service Unavailable\r\nRetry-After: 1\r\nContent-Length: 4\r\nConnection: close\r\n\r\nfull",
        Duration::ZERO,
    );
    let (output, s) = run_against(&url, &["--min-connected", "100%"]);
    assert_eq!(output.status.code(), Some(1), "thresholds fail");
    assert_eq!(s["errors"]["http 503"], 3, "{}", s["errors"]);
    assert_eq!(s["publishers"]["failed"], 1);
    assert_eq!(s["viewers"]["failed"], 2);

    // Garbage SDP.
    let url = fake_server(
        "HTTP/1.1 201 Created\r\nLocation: /whip/x/1\r\nContent-Type: application/sdp\r\nContent-Length: 9\r\nConnection: close\r\n\r\nnot a sdp",
        Duration::ZERO,
    );
    let (output, s) = run_against(&url, &[]);
    assert!(output.status.success());
    assert_eq!(s["errors"]["sdp"], 3, "{}", s["errors"]);

    // Stalled.
    let url = fake_server("", Duration::from_secs(30));
    let (output, s) = run_against(&url, &["--http-timeout", "300ms"]);
    assert!(output.status.success());
    assert_eq!(s["errors"]["timeout"], 3, "{}", s["errors"]);

    // Nobody listening.
    let port = free_tcp_port();
    let (_, s) = run_against(&format!("http://127.0.0.1:{port}"), &[]);
    assert_eq!(s["errors"]["http connection refused"], 3, "{}", s["errors"]);
    assert!(String::from_utf8_lossy(&output.stdout).contains("errors"));
}

#[test]
fn a_layer_request_without_the_link_is_a_counted_failure() {
    // A server whose 201s have no layer link (and no usable SDP): viewers asking for a layer
    // fail with the cause, before any SDP is read.
    let url = fake_server(
        "HTTP/1.1 201 Created\r\nLocation: /whep/x/1\r\nContent-Type: application/sdp\r\nContent-Length: 9\r\nConnection: close\r\n\r\nnot a sdp",
        Duration::ZERO,
    );
    let (output, s) = run_against(&url, &["--layers", "2", "--viewer-layer", "mixed"]);
    assert!(output.status.success());
    assert_eq!(s["errors"]["whep no layer link"], 2, "{}", s["errors"]);
    assert_eq!(s["errors"]["sdp"], 1, "the publisher: {}", s["errors"]);
    assert_eq!(s["viewers"]["failed"], 2);
}

/// A fake WHIP/WHEP server whose 201s carry a layer link (and no usable SDP), that answers
/// layer requests with 204 and records each request as (method and path, body).
fn fake_layer_server() -> (String, std::sync::mpsc::Receiver<(String, String)>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let (seen, requests) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { return };
            let seen = seen.clone();
            std::thread::spawn(move || {
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut request = String::new();
                let _ = reader.read_line(&mut request);
                let mut length = 0usize;
                loop {
                    let mut line = String::new();
                    if reader.read_line(&mut line).unwrap_or(0) == 0 {
                        return;
                    }
                    if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                        length = v.trim().parse().unwrap_or(0);
                    }
                    if line == "\r\n" {
                        break;
                    }
                }
                let mut body = vec![0; length];
                let _ = reader.read_exact(&mut body);
                let target = request
                    .split_whitespace()
                    .take(2)
                    .collect::<Vec<_>>()
                    .join(" ");
                let response = if target.ends_with("/layer") {
                    "HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n".to_string()
                } else {
                    let n = target.len();
                    format!(
                        "HTTP/1.1 201 Created\r\nLocation: /session/{n}\r\n\
                         Link: </session/{n}/sse>; rel=\"urn:ietf:params:whep:ext:core:server-sent-events\"\r\n\
                         Link: </session/{n}/layer>; rel=\"urn:ietf:params:whep:ext:core:layer\"\r\n\
                         Content-Type: application/sdp\r\nContent-Length: 9\r\n\
                         Connection: close\r\n\r\nnot a sdp"
                    )
                };
                let _ = seen.send((target, String::from_utf8_lossy(&body).into_owned()));
                let _ = stream.write_all(response.as_bytes());
            });
        }
    });
    (url, requests)
}

#[test]
fn viewers_ask_for_their_layer_at_the_link() {
    let (url, requests) = fake_layer_server();
    let (output, s) = run_against(&url, &["--layers", "2", "--viewer-layer", "mixed"]);
    assert!(output.status.success());
    let requests: Vec<(String, String)> = requests.try_iter().collect();
    let mut asked: Vec<String> = requests
        .iter()
        .filter(|(target, _)| target.starts_with("POST /session/") && target.ends_with("/layer"))
        .map(|(_, body)| {
            let json: Value = serde_json::from_str(body).expect("a JSON layer request");
            assert!(!json["mediaId"].as_str().unwrap().is_empty(), "{body}");
            json["encodingId"].as_str().unwrap().to_string()
        })
        .collect();
    asked.sort();
    // Two viewers, spread over the two layers; the publisher asks for nothing.
    assert_eq!(asked, ["0", "1"], "{requests:?}");
    // The sessions were closed once their SDP turned out unusable.
    let deleted = requests
        .iter()
        .filter(|(t, _)| t.starts_with("DELETE /session/"));
    assert_eq!(deleted.count(), 2, "{requests:?}");
    assert_eq!(s["errors"]["sdp"], 3, "{}", s["errors"]);
}

#[test]
fn invalid_options_get_a_clear_message() {
    let output = loadtest(&["broadcast", "--bitrate", "fast"]);
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("--bitrate") && stderr.contains("2500kbps"),
        "{stderr}"
    );
    let output = loadtest(&[
        "broadcast",
        "--url",
        "http://10.9.8.7:8080",
        "--viewers",
        "1",
    ]);
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("--source-range"));
}
