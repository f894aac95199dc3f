//! The load generator against Janus (Debian package `janus`, VideoRoom plugin over its HTTP
//! API): Janus in its own network namespace, since it never offers a loopback candidate, the
//! swarm in the root namespace with its sessions on a routed `--source-range`.
//!
//! Needs root, iproute2 and the `janus` package, which `scripts/test` installs; without the
//! janus binary this test fails and names the package. All traffic stays on the veth pair the
//! test makes.

use std::io::Read;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use ringcast_loadtest::testbed::{JanusConfig, Testbed, janus_binary};

struct Janus {
    child: Child,
    log: std::path::PathBuf,
}

impl Drop for Janus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Janus {
    fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }
}

/// Whether the HTTP API answers `GET /janus/info`.
fn answers(config: &JanusConfig) -> bool {
    let Ok(mut stream) = std::net::TcpStream::connect_timeout(
        &(config.ip, config.http_port).into(),
        Duration::from_millis(200),
    ) else {
        return false;
    };
    use std::io::Write;
    let request = format!("GET /janus/info HTTP/1.0\r\nHost: {}\r\n\r\n", config.ip);
    let _ = stream.set_read_timeout(Some(Duration::from_secs(1)));
    let mut reply = String::new();
    stream.write_all(request.as_bytes()).is_ok()
        && stream.read_to_string(&mut reply).is_ok()
        && reply.starts_with("HTTP/1.")
        && reply.contains(" 200 ")
}

#[test]
fn swarm_loads_janus_videoroom() {
    let janus = janus_binary().unwrap_or_else(|message| panic!("{message}"));
    let tag = format!("j{}", std::process::id() % 1_000_000);
    let bed = Testbed::create(&tag).unwrap_or_else(|message| panic!("{message}"));
    let config = JanusConfig::for_testbed(&bed);
    let dir = std::env::temp_dir().join(format!("ringcast-janus-{tag}"));
    let main = config
        .write(&dir)
        .unwrap_or_else(|message| panic!("{message}"));
    let log = dir.join("janus.log");
    let child = bed
        .command(&janus)
        .arg("-C")
        .arg(&main)
        .arg("-F")
        .arg(&dir)
        .stdout(std::fs::File::create(&log).expect("log file"))
        .stderr(Stdio::null())
        .stdin(Stdio::null())
        .spawn()
        .expect("janus starts in its namespace");
    let mut server = Janus { child, log };
    let deadline = Instant::now() + Duration::from_secs(20);
    while !answers(&config) {
        if let Ok(Some(status)) = server.child.try_wait() {
            panic!("janus exited ({status}):\n{}", server.log_tail());
        }
        assert!(
            Instant::now() < deadline,
            "janus did not answer on {}:\n{}",
            config.url(),
            server.log_tail()
        );
        std::thread::sleep(Duration::from_millis(100));
    }

    let json = dir.join("run.json");
    let output = Command::new(env!("CARGO_BIN_EXE_ringcast-loadtest"))
        .args(["broadcast", "--target", "janus", "--url", &config.url()])
        .args(["--source-range", &bed.source_range_arg()])
        .args(["--viewers", "10", "--verify-fraction", "0.3"])
        .args(["--duration", "3s", "--warmup", "1s", "--threads", "1"])
        .args(["--min-connected", "100%", "--max-loss", "1%", "--json"])
        .arg(&json)
        .arg("--server-pid")
        .arg(server.child.id().to_string())
        .stdin(Stdio::null())
        .output()
        .expect("ringcast-loadtest runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    eprintln!("{stdout}\n{}", String::from_utf8_lossy(&output.stderr));
    assert!(
        output.status.success(),
        "the swarm met its thresholds against Janus; Janus's log:\n{}",
        server.log_tail()
    );
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).expect("json")).expect("valid json");
    assert_eq!(summary["publishers"]["connected"], 1);
    assert_eq!(summary["viewers"]["connected"], 10);
    let loss = summary["loss_pct"].as_f64().unwrap();
    assert!((0.0..=1.0).contains(&loss), "loss {loss}%");
    assert!(summary["packets_received"].as_u64().unwrap() > 0);
    // Full viewers decrypted and checked payloads, byte for byte, through Janus's rewriting.
    assert!(summary["latency_ms"]["count"].as_u64().unwrap() > 0);
    assert_eq!(summary["corrupt"], 0);
    assert!(summary["server"]["cpu_us_per_packet"].as_f64().unwrap() > 0.0);
    // The room the run created is gone.
    let rooms = janus_rooms(&config.url());
    assert!(
        !rooms.iter().any(|d| d.starts_with("lt")),
        "rooms left behind: {rooms:?}"
    );
    drop(server);
    let _ = std::fs::remove_dir_all(dir);
}

/// The descriptions of the VideoRoom rooms Janus has now.
fn janus_rooms(url: &str) -> Vec<String> {
    use serde_json::{Value, json};
    let agent = ureq::Agent::new_with_defaults();
    let post = |url: &str, body: Value| -> Value {
        let text = agent
            .post(url)
            .send(body.to_string())
            .expect("janus answers")
            .body_mut()
            .read_to_string()
            .expect("a body");
        serde_json::from_str(&text).expect("JSON")
    };
    let session = post(url, json!({"janus": "create", "transaction": "a"}))["data"]["id"].clone();
    let session_url = format!("{url}/{session}");
    let attach = json!({"janus": "attach", "plugin": "janus.plugin.videoroom", "transaction": "b"});
    let handle = post(&session_url, attach)["data"]["id"].clone();
    let list = json!({"janus": "message", "body": {"request": "list"}, "transaction": "c"});
    let reply = post(&format!("{session_url}/{handle}"), list);
    let _ = post(
        &session_url,
        json!({"janus": "destroy", "transaction": "d"}),
    );
    reply["plugindata"]["data"]["list"]
        .as_array()
        .expect("a room list")
        .iter()
        .filter_map(|r| r["description"].as_str().map(str::to_string))
        .collect()
}
