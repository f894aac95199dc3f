//! A server on another host: ringcast in one network namespace, the swarm in another, joined
//! by a veth pair. The swarm's sessions take their source addresses from `--source-range`, a
//! network routed as local in the swarm's namespace. Needs root and iproute2 (`ip netns`),
//! which `scripts/test` installs; all traffic stays inside the two namespaces this test makes.

mod common;

use common::ringcast_binary;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

struct Namespaces {
    server: String,
    client: String,
    child: Option<Child>,
}

impl Drop for Namespaces {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        // Deleting a namespace removes its end of the veth pair, and so the pair.
        for ns in [&self.server, &self.client] {
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
    }
}

fn ip(args: &[&str]) {
    let out = Command::new("ip")
        .args(args)
        .output()
        .expect("`ip` (iproute2) is installed: scripts/test installs it");
    assert!(
        out.status.success(),
        "ip {}: {} (this test needs root to make network namespaces)",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr).trim()
    );
}

#[test]
fn swarm_loads_a_server_in_another_namespace() {
    let id = std::process::id() % 100_000;
    let octet = (id % 200 + 20).to_string();
    let mut ns = Namespaces {
        server: format!("rc-srv-{id}"),
        client: format!("rc-cli-{id}"),
        child: None,
    };
    let (s, c) = (ns.server.clone(), ns.client.clone());
    let (veth_c, veth_s) = (format!("rcc{id}"), format!("rcs{id}"));
    let server_ip = format!("10.213.{octet}.2");
    let client_ip = format!("10.213.{octet}.1");
    ip(&["netns", "add", &s]);
    ip(&["netns", "add", &c]);
    ip(&[
        "link", "add", &veth_c, "type", "veth", "peer", "name", &veth_s,
    ]);
    ip(&["link", "set", &veth_c, "netns", &c]);
    ip(&["link", "set", &veth_s, "netns", &s]);
    ip(&[
        "-n",
        &c,
        "addr",
        "add",
        &format!("{client_ip}/24"),
        "dev",
        &veth_c,
    ]);
    ip(&[
        "-n",
        &s,
        "addr",
        "add",
        &format!("{server_ip}/24"),
        "dev",
        &veth_s,
    ]);
    for (n, dev) in [(&c, &veth_c), (&s, &veth_s)] {
        ip(&["-n", n, "link", "set", dev, "up"]);
        ip(&["-n", n, "link", "set", "lo", "up"]);
    }
    // The swarm's session addresses are local in its namespace, and routed back to it.
    ip(&[
        "-n",
        &c,
        "route",
        "add",
        "local",
        "10.214.0.0/16",
        "dev",
        "lo",
    ]);
    ip(&["-n", &s, "route", "add", "10.214.0.0/16", "via", &client_ip]);

    let mut server = Command::new("ip");
    server.args(["netns", "exec", &s]).arg(ringcast_binary());
    for (k, _) in std::env::vars().filter(|(k, _)| k.starts_with("RINGCAST_")) {
        server.env_remove(k);
    }
    ns.child = Some(
        server
            .env("RINGCAST_HTTP_LISTEN", format!("{server_ip}:8080"))
            .env("RINGCAST_MEDIA_BIND", &server_ip)
            .env("RINGCAST_MEDIA_SHARDS", "2")
            .env("RINGCAST_MEDIA_PIN_THREADS", "false")
            .env("RINGCAST_LOG_LEVEL", "warn")
            .env("RINGCAST_MEDIA_ENGINE", common::test_engine())
            .stdout(Stdio::null())
            .spawn()
            .expect("ringcast starts in its namespace"),
    );
    let url = format!("http://{server_ip}:8080");
    let json = std::env::temp_dir().join(format!("ringcast-netns-{id}.json"));
    let deadline = Instant::now() + Duration::from_secs(20);
    let output = loop {
        let out = Command::new("ip")
            .args(["netns", "exec", &c])
            .arg(env!("CARGO_BIN_EXE_ringcast-loadtest"))
            .args([
                "broadcast",
                "--url",
                &url,
                "--source-range",
                "10.214.0.0/16",
            ])
            .args([
                "--viewers",
                "10",
                "--duration",
                "2s",
                "--warmup",
                "1s",
                "--threads",
                "1",
            ])
            .args(["--min-connected", "100%", "--max-loss", "0.5%", "--json"])
            .arg(&json)
            .stdin(Stdio::null())
            .output()
            .expect("ringcast-loadtest runs");
        let refused = String::from_utf8_lossy(&out.stdout).contains("connection refused");
        if !refused || Instant::now() > deadline {
            break out;
        }
        // The server was still starting.
        std::thread::sleep(Duration::from_millis(200));
    };
    let stdout = String::from_utf8_lossy(&output.stdout);
    eprintln!("{stdout}\n{}", String::from_utf8_lossy(&output.stderr));
    assert!(output.status.success(), "the swarm met its thresholds");
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).expect("json")).expect("valid json");
    assert_eq!(summary["viewers"]["connected"], 10);
    assert_eq!(summary["publishers"]["connected"], 1);
    assert!(summary["packets_received"].as_u64().unwrap() > 0);
    let _ = std::fs::remove_file(json);
}
