//! The server variants: what each is, how it starts in the test bed's namespace, when it is
//! ready, what it counts.
//!
//! Every server starts as `setsid ip netns exec <ns> <server>`: `setsid` and `ip netns exec`
//! both exec, so the child's pid is the server's (checked), and the server gets a session, so
//! an autogroup, of its own, whose nice value the runner sets to -20 (see `raise_priority`).

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use ringcast_loadtest::testbed::{JanusConfig, Testbed};
use serde_json::Value;

/// Every variant the runner knows, in its default order.
pub const VARIANTS: [&str; 5] = [
    "ringcast-epoll-gso",
    "ringcast-epoll-nogso",
    "ringcast-uring-gso",
    "ringcast-uring-nogso",
    "janus",
];

/// ringcast's HTTP port in the namespace.
const RINGCAST_HTTP: u16 = 8080;

/// One server variant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Variant {
    /// ringcast with `media.engine` and `media.gso` set.
    Ringcast {
        /// "epoll" or "uring".
        engine: &'static str,
        /// GSO on or off.
        gso: bool,
    },
    /// ringcast as this build configures it by default (no engine or GSO override): what the
    /// runner's own test uses, on any branch.
    RingcastDefaults,
    /// Janus VideoRoom (Debian package).
    Janus,
}

impl Variant {
    /// The variant of a name (`ringcast-epoll-gso`, …, `ringcast`, `janus`).
    pub fn parse(name: &str) -> Option<Variant> {
        Some(match name {
            "ringcast" => Variant::RingcastDefaults,
            "janus" => Variant::Janus,
            _ => {
                let rest = name.strip_prefix("ringcast-")?;
                let (engine, gso) = rest.split_once('-')?;
                let engine = match engine {
                    "epoll" => "epoll",
                    "uring" => "uring",
                    _ => return None,
                };
                let gso = match gso {
                    "gso" => true,
                    "nogso" => false,
                    _ => return None,
                };
                Variant::Ringcast { engine, gso }
            }
        })
    }
}

/// The programs the runner drives.
#[derive(Debug, Clone)]
pub struct Binaries {
    /// `ringcast`.
    pub ringcast: PathBuf,
    /// `ringcast-loadtest`.
    pub loadtest: PathBuf,
    /// `janus`, or why there is none.
    pub janus: Result<PathBuf, String>,
}

/// How servers are set up.
#[derive(Debug, Clone)]
pub struct ServerSettings {
    /// ringcast's `media.shards`.
    pub shards: u32,
    /// Janus's `event_loops`.
    pub janus_event_loops: usize,
    /// Where configs and logs go.
    pub dir: PathBuf,
}

/// A started server; killed on drop.
#[derive(Debug)]
pub struct Running {
    child: Child,
    /// Its pid (for `--server-pid`).
    pub pid: u32,
    /// `--url` for the loadtest.
    pub url: String,
    /// `--target` for the loadtest.
    pub target: &'static str,
    /// ringcast's `/api/stats` (None for Janus).
    pub stats_url: Option<String>,
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Start `variant` in `bed`'s namespace and wait until it answers HTTP; on failure, why (its
/// error line, for the report's "failed: …"). ringcast also gets `env` (a scenario's settings;
/// Janus has none of these).
pub fn start(
    variant: Variant,
    bed: &Testbed,
    binaries: &Binaries,
    settings: &ServerSettings,
    env: &[(&str, &str)],
    log: &Path,
) -> Result<Running, String> {
    let ip = bed.server_ip;
    let (mut command, ready_url, url, target, stats_url) = match variant {
        Variant::Janus => {
            let janus = binaries.janus.clone()?;
            let mut config = JanusConfig::for_testbed(bed);
            config.event_loops = settings.janus_event_loops;
            let dir = settings.dir.join("janus-config");
            let main = config.write(&dir)?;
            let mut command = in_namespace(bed, &janus);
            command.arg("-C").arg(main).arg("-F").arg(&dir);
            let url = config.url();
            (command, format!("{url}/info"), url, "janus", None)
        }
        Variant::Ringcast { .. } | Variant::RingcastDefaults => {
            let mut command = in_namespace(bed, &binaries.ringcast);
            // The server refuses unknown RINGCAST_* keys: pass only ours.
            for (k, _) in std::env::vars().filter(|(k, _)| k.starts_with("RINGCAST_")) {
                command.env_remove(k);
            }
            command
                .env("RINGCAST_HTTP_LISTEN", format!("{ip}:{RINGCAST_HTTP}"))
                .env("RINGCAST_MEDIA_BIND", ip.to_string())
                .env("RINGCAST_MEDIA_SHARDS", settings.shards.to_string())
                // Unpinned, like Janus's threads: the same scheduler freedom for both.
                .env("RINGCAST_MEDIA_PIN_THREADS", "false")
                .env("RINGCAST_LOG_LEVEL", "warn")
                .env("RUST_BACKTRACE", "0");
            // Every session of the load generator comes from one address: lift the
            // per-client admission limits (`[limits]`), which would refuse it.
            for key in [
                "SESSIONS_PER_CLIENT",
                "CREATIONS_PER_SECOND",
                "CREATION_BURST",
                "VIEWERS_PER_STREAM",
                "PENDING_SESSIONS",
            ] {
                command.env(format!("RINGCAST_LIMITS_{key}"), "1000000");
            }
            if let Variant::Ringcast { engine, gso } = variant {
                command
                    .env("RINGCAST_MEDIA_ENGINE", engine)
                    .env("RINGCAST_MEDIA_GSO", gso.to_string());
            }
            command.envs(env.iter().copied());
            let url = format!("http://{ip}:{RINGCAST_HTTP}");
            (
                command,
                format!("{url}/healthz"),
                url.clone(),
                "whip",
                Some(format!("{url}/api/stats")),
            )
        }
    };
    let log_file = std::fs::File::create(log).map_err(|e| format!("{}: {e}", log.display()))?;
    let err_file = log_file
        .try_clone()
        .map_err(|e| format!("{}: {e}", log.display()))?;
    let child = command
        .stdin(Stdio::null())
        .stdout(log_file)
        .stderr(err_file)
        .spawn()
        .map_err(|e| format!("cannot start: {e}"))?;
    let pid = child.id();
    let mut running = Running {
        child,
        pid,
        url,
        target,
        stats_url,
    };
    let agent = agent(Duration::from_millis(500));
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Ok(Some(status)) = running.child.try_wait() {
            let line = error_line(&std::fs::read_to_string(log).unwrap_or_default());
            return Err(if line.is_empty() {
                format!("exited ({status}) before answering")
            } else {
                line
            });
        }
        if let Ok(response) = agent.get(&ready_url).call()
            && response.status().as_u16() == 200
        {
            break;
        }
        if Instant::now() > deadline {
            return Err(format!("no answer on {ready_url} within 20 s"));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
    if comm.trim() == "setsid" || comm.trim() == "ip" {
        return Err(format!("pid {pid} is `{}`, not the server", comm.trim()));
    }
    Ok(running)
}

/// `program` run as `setsid ip netns exec <ns> program`.
pub fn in_namespace(bed: &Testbed, program: &Path) -> Command {
    let mut command = Command::new("setsid");
    command
        .args(["ip", "netns", "exec", &bed.namespace])
        .arg(program);
    command
}

/// Set the autogroup of `pid` (a session leader) to nice -20, as the house rules do for
/// benchmarks with `setsid` + `echo -20 > /proc/$$/autogroup`; false when the kernel or our
/// rights refuse.
pub fn raise_priority(pid: u32) -> bool {
    std::fs::write(format!("/proc/{pid}/autogroup"), "-20").is_ok()
}

/// The server's drop counters by cause, summed over its shards (ringcast's `/api/stats`).
pub fn drops(stats_url: &str) -> Option<BTreeMap<String, u64>> {
    let text = agent(Duration::from_secs(2))
        .get(stats_url)
        .call()
        .ok()?
        .body_mut()
        .read_to_string()
        .ok()?;
    drops_of(&serde_json::from_str(&text).ok()?)
}

/// Sum `shards[].drops` of an `/api/stats` document.
pub fn drops_of(stats: &Value) -> Option<BTreeMap<String, u64>> {
    let mut out = BTreeMap::new();
    for shard in stats.get("shards")?.as_array()? {
        for (cause, n) in shard.get("drops")?.as_object()? {
            *out.entry(cause.clone()).or_default() += n.as_u64().unwrap_or(0);
        }
    }
    Some(out)
}

/// The UDP ports bound in the network namespace of `pid` (its `/proc/<pid>/net/udp`).
pub fn udp_ports(pid: u32) -> Vec<u16> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/net/udp")).unwrap_or_default();
    udp_ports_of(&text)
}

/// The local ports of a `/proc/net/udp` table.
pub fn udp_ports_of(table: &str) -> Vec<u16> {
    let mut ports: Vec<u16> = table
        .lines()
        .skip(1)
        .filter_map(|line| line.split_whitespace().nth(1))
        .filter_map(|local| local.rsplit_once(':'))
        .filter_map(|(_, port)| u16::from_str_radix(port, 16).ok())
        .filter(|p| *p != 0)
        .collect();
    ports.sort_unstable();
    ports.dedup();
    ports
}

/// The line that says why a process failed: the first that names an error, else the last.
pub fn error_line(output: &str) -> String {
    let lines: Vec<&str> = output
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    lines
        .iter()
        .find(|l| {
            let lower = l.to_ascii_lowercase();
            lower.starts_with("error") || lower.contains("[err]") || lower.contains("fatal")
        })
        .or(lines.last())
        .map_or(String::new(), |l| l.chars().take(300).collect())
}

/// Addresses the garbage flood sends from: the top of the source range, far from the
/// sessions' addresses (which count up from its start).
pub fn flood_sources(bed: &Testbed) -> Vec<Ipv4Addr> {
    let (net, len) = bed.source_range;
    let size = 1u32 << (32 - u32::from(len));
    let top = u32::from(net) + size - 256;
    (201..=216).map(|i| Ipv4Addr::from(top + i)).collect()
}

fn agent(timeout: Duration) -> ureq::Agent {
    ureq::Agent::config_builder()
        .timeout_global(Some(timeout))
        .http_status_as_error(false)
        .build()
        .new_agent()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn variant_names() {
        assert_eq!(
            Variant::parse("ringcast-uring-nogso"),
            Some(Variant::Ringcast {
                engine: "uring",
                gso: false
            })
        );
        for name in VARIANTS {
            assert!(Variant::parse(name).is_some(), "{name}");
        }
        assert_eq!(Variant::parse("ringcast"), Some(Variant::RingcastDefaults));
        for bad in [
            "",
            "ringcast-",
            "ringcast-kqueue-gso",
            "ringcast-epoll",
            "mediasoup",
        ] {
            assert_eq!(Variant::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn proc_tables_and_error_lines() {
        let table = "  sl  local_address rem_address   st tx_queue rx_queue\n\
                     \x20  1: 0200D50A:C350 00000000:0000 07 00000000:00000000\n\
                     \x20  2: 0200D50A:C351 00000000:0000 07 00000000:00000000\n\
                     \x20  3: garbage\n";
        assert_eq!(udp_ports_of(table), vec![50000, 50001]);
        assert!(udp_ports_of("").is_empty());
        let stderr = "  starting\nError: environment RINGCAST_MEDIA_GSO: unknown key `media.gso`\n\
                      Stack backtrace:\n   0: x\n";
        assert_eq!(
            error_line(stderr),
            "Error: environment RINGCAST_MEDIA_GSO: unknown key `media.gso`"
        );
        assert_eq!(error_line("a\nlast words\n\n"), "last words");
        assert_eq!(error_line(""), "");
        let stats: Value = serde_json::from_str(
            r#"{"shards":[{"drops":{"malformed":2,"unknown_source":5}},
                          {"drops":{"malformed":1,"unknown_source":0}}]}"#,
        )
        .unwrap();
        let d = drops_of(&stats).unwrap();
        assert_eq!((d["malformed"], d["unknown_source"]), (3, 5));
        assert_eq!(drops_of(&Value::Null), None);
    }
}
