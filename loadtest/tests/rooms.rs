//! `ringcast-loadtest rooms` against the real `ringcast` binary on loopback: two rooms of three
//! participants, each one peer connection that publishes and receives on 5 video and 3 audio
//! slots with the `ringcast` data channel.
//!
//! The server binary is not a dependency of this package: build it first, `cargo build -p
//! ringcast` (scripts/test does).

mod common;

use std::collections::BTreeSet;
use std::net::{TcpListener, UdpSocket};
use std::process::{Child, Command, Stdio};
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

fn start_ringcast() -> Server {
    // Free on TCP too: the shard's ICE-TCP listener takes the same number, and other tests'
    // HTTP clients use ports of this range for their connections.
    let media = loop {
        let p = UdpSocket::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        if TcpListener::bind(("127.0.0.1", p)).is_ok() {
            break p;
        }
    };
    let http = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut command = Command::new(common::ringcast_binary());
    // The server refuses unknown RINGCAST_* keys: pass only ours.
    for (k, _) in std::env::vars().filter(|(k, _)| k.starts_with("RINGCAST_")) {
        command.env_remove(k);
    }
    let child = command
        .env("RINGCAST_HTTP_LISTEN", format!("127.0.0.1:{http}"))
        .env("RINGCAST_MEDIA_BIND", "127.0.0.1")
        .env("RINGCAST_MEDIA_PORT_BASE", media.to_string())
        .env("RINGCAST_MEDIA_SHARDS", "1")
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
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        if std::net::TcpStream::connect(("127.0.0.1", http)).is_ok() {
            return server;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("ringcast did not listen on {}", server.url);
}

#[test]
fn two_rooms_of_three_receive_each_other_on_their_slots() {
    let server = start_ringcast();
    let json = std::env::temp_dir().join(format!("ringcast-rooms-{}.json", std::process::id()));
    let output = Command::new(env!("CARGO_BIN_EXE_ringcast-loadtest"))
        .args(["rooms", "--url", &server.url])
        .args(["--rooms", "2", "--participants", "3"])
        .args(["--duration", "3s", "--warmup", "2s", "--join-rate", "20/s"])
        // Every participant checks every payload (who sent it, latency); turns of 1 s so that
        // everyone is the loud speaker during the run.
        .args([
            "--verify-fraction",
            "1",
            "--speaker-turn",
            "1s",
            "--threads",
            "1",
        ])
        .args(["--server-pid", &server.child.id().to_string()])
        .args(["--max-loss", "0%", "--min-connected", "100%"])
        .arg("--json")
        .arg(&json)
        .stdin(Stdio::null())
        .output()
        .expect("ringcast-loadtest runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    eprintln!(
        "--- stdout\n{stdout}--- stderr\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(output.status.success(), "the run passed its thresholds");
    assert!(stdout.contains("video slots") && stdout.contains("data channel"));
    let summary: Value = serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    let _ = std::fs::remove_file(&json);
    assert_eq!(summary["errors"], serde_json::json!({}), "no errors");
    assert_eq!(summary["publishers"]["connected"], 6);
    assert_eq!(summary["viewers"]["connected"], 6);
    assert_eq!(summary["loss_pct"], 0.0);
    assert!(summary["server"]["cpu_us_per_packet"].as_f64().unwrap() > 0.0);
    let rooms = &summary["rooms"];
    let participants = rooms["participants"].as_array().unwrap();
    assert_eq!(participants.len(), 6);
    let ids = |v: &Value| -> BTreeSet<u64> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|id| id.as_u64().unwrap())
            .collect()
    };
    for p in participants {
        let (room, id) = (p["room"].as_str().unwrap(), p["id"].as_u64().unwrap());
        let others: BTreeSet<u64> = participants
            .iter()
            .filter(|o| o["room"] == room && o["id"] != id)
            .map(|o| o["id"].as_u64().unwrap())
            .collect();
        assert_eq!(others.len(), 2);
        let (video, audio) = (&p["video"], &p["audio"]);
        // The two others' video, each on a slot of its own; nothing lost, nothing of its own.
        assert_eq!(ids(&video["sources"]), others, "{p}");
        assert_eq!(video["filled"], 2, "{p}");
        assert!(video["packets"].as_u64().unwrap() > 0, "{p}");
        assert_eq!(video["loss_pct"], 0.0, "{p}");
        assert!(audio["packets"].as_u64().unwrap() > 0, "{p}");
        assert_eq!(audio["loss_pct"], 0.0, "{p}");
        let heard = ids(&audio["sources"]);
        assert!(!heard.is_empty() && heard.is_subset(&others), "{p}");
        for kind in [video, audio] {
            assert_eq!(kind["own_packets"], 0, "{p}");
            assert_eq!(kind["corrupt"], 0, "{p}");
        }
        assert!(p["first_frame_ms"].as_f64().is_some(), "{p}");
        assert!(p["latency_p50_ms"].as_f64().is_some(), "{p}");
        assert!(p["participant"].as_str().is_some(), "{p}");
        assert_eq!(p["channel_open"], true, "{p}");
        assert!(p["messages"]["welcome"].as_u64().unwrap() >= 1, "{p}");
        assert!(p["messages"]["slots"].as_u64().unwrap() >= 1, "{p}");
        assert!(p["messages"].get("invalid").is_none(), "{p}");
    }
    assert_eq!(rooms["with_welcome"], 6);
    assert_eq!(rooms["own_packets"], 0);
    // The first of each room waited for the second: only the 4 others are timed.
    assert_eq!(summary["first_frame_ms"]["count"], 4);
}
